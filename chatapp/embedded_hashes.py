"""The hashes behind chatapp.embedded: per collection, each declared index and each document's
place in mongomock's natural order. An index is chatapp/embedded_index.py's `Index`; a text
index is `TextIndex` here: each document's folded terms, for `$text` (chatapp/embedded_text.py).
"""
import itertools

from chatapp import embedded_heap, embedded_text, embedded_ttl
from chatapp.embedded_index import Index
from chatapp.embedded_keys import id_of


class TextIndex:
    """A text index: each folded term -> the ids of the documents holding it (MongoDB's text
    index keys, chatapp.mongo_text), so a `$text` query examines only the documents that
    hold one of its terms. Never unique, never used for equalities."""

    unique = False
    usable = True
    exact = True

    def __init__(self, spec):
        self.fields = tuple(embedded_text.text_fields(spec))
        self.by_term = {}
        self.keys = {}  # doc id -> (its text, its terms)

    def covers(self, doc):
        return True

    def add(self, doc, place, found=None):
        doc_id = id_of(doc)
        text = " ".join(embedded_text.texts_of(doc, self.fields))
        if doc_id in self.keys and self.keys[doc_id][0] == text:
            return  # re-keyed after a write that left its text alone (a read marker...)
        self.discard(doc_id)
        held = embedded_text.terms_of(text)
        for term in held:
            self.by_term.setdefault(term, {})[doc_id] = None
        self.keys[doc_id] = (text, held)

    def discard(self, doc_id):
        for term in self.keys.pop(doc_id, (None, ()))[1]:
            holders = self.by_term.get(term)
            if holders is not None:
                holders.pop(doc_id, None)
                if not holders:
                    del self.by_term[term]

    def lookup(self, allowed, equal, ranges):
        return None  # a text index answers `$text` only (`holding`)

    def in_order(self, allowed, equal, ranges, sort_fields):
        return None

    def holding(self, terms):
        """The buckets of the documents holding any of `terms`."""
        return [self.by_term[term] for term in terms if term in self.by_term]


def make_index(spec):
    return TextIndex(spec) if embedded_text.is_text(spec["key"]) else Index(spec)


class Hashes:
    """A collection's hashes, and each document's place in mongomock's own (natural) order,
    so candidates are examined in the order a scan meets them (an update_many that stops
    at a duplicate has changed the same documents)."""

    def __init__(self, store, signature):
        self.signature = signature
        self.indexes = [make_index(spec) for name, spec in store.indexes.items()
                        if name != "_id_"]
        self.places = {}
        self.next_place = itertools.count()
        for doc in list(store._documents.values()):
            place = self.places[id_of(doc)] = next(self.next_place)
            for index in self.indexes:
                index.add(doc, place)

    def add(self, store, doc, found=None):
        """`doc` was inserted or changed (mongomock re-checks its unique indexes then).
        `found`: index -> what its unique check computed of `doc` (Index.add)."""
        doc_id = id_of(doc)
        new = doc_id not in self.places
        if new or next(reversed(store._documents)) == doc_id:
            self.places[doc_id] = next(self.next_place)  # new (or re-inserted): last
        place = self.places[doc_id]
        found = found or {}
        for index in self.indexes:
            index.add(doc, place, found.get(index))
        embedded_ttl.written(store, doc)
        if new:
            embedded_heap.stored()  # its pauses do not grow with the store

    def forget(self, doc_ids):
        for doc_id in doc_ids:
            self.places.pop(doc_id, None)
            for index in self.indexes:
                index.discard(doc_id)


def hashes(store):
    """The hashes of `store` (a mongomock CollectionStore), rebuilt when its indexes change."""
    signature = (id(store._documents),  # a new dict: the collection was dropped
                 *((name, id(spec)) for name, spec in store.indexes.items()))
    current = getattr(store, "_chatapp_hashes", None)
    if current is None or current.signature != signature:
        current = store._chatapp_hashes = Hashes(store, signature)
    return current


def live(store, buckets):
    """The stored documents whose ids the buckets hold, each once, in natural order
    (forgetting the ids of documents mongomock deleted without telling)."""
    store._remove_expired_documents()
    documents = store._documents
    collection_hashes = hashes(store)
    ids = dict.fromkeys(itertools.chain.from_iterable(buckets))
    gone = [i for i in ids if i not in documents]
    if gone:
        collection_hashes.forget(gone)
    places = collection_hashes.places
    return [documents[i] for i in sorted((i for i in ids if i in documents),
                                         key=lambda i: places.get(i, -1))]
