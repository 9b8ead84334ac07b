"""mongomock as it is, without any of chatapp.embedded*'s patches (its hashes and index
orders, the in-place counter updates, the one-walk insert, the TTL heap): the reference the
embedded-store tests compare the embedded store with."""
import contextlib

import mongomock.collection
from mongomock.store import CollectionStore

from chatapp import embedded, embedded_insert, embedded_ttl, embedded_update


@contextlib.contextmanager
def plain_mongomock():
    classes = [(mongomock.collection.Collection, embedded._original),
               (mongomock.collection.Collection, embedded_update._original),
               (mongomock.collection.Collection, embedded_insert._original),
               (mongomock.collection.Cursor, embedded._original_cursor),
               (CollectionStore, embedded_ttl._original)]
    patched = [(cls, name, getattr(cls, name)) for cls, originals in classes for name in originals]
    for cls, originals in classes:
        for name, original in originals.items():
            setattr(cls, name, original)
    try:
        yield
    finally:
        for cls, name, function in patched:
            setattr(cls, name, function)
