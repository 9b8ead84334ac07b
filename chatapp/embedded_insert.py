"""The embedded store's insert of a plain document, without mongomock's generic passes.

mongomock's `_insert` walks a document four times before storing it: a recursive check of
its keys, a BSON encoding thrown away (to raise what PyMongo would on a value BSON cannot
hold), a comparison of package versions, and a copy that converts its datetimes as MongoDB
stores them (naive UTC, milliseconds). Every send inserts two such documents (the message,
its change-feed record): in the group fan-out profile these passes were about half of the
insert (bench/README.md, change 10).

Here a document made only of what the app stores (a dict of strings, ints within 64 bits,
floats, booleans, None, ObjectIds, datetimes, and lists, tuples or dicts of them, every key a
string with no NUL, `$` or `.`) is copied in one walk, with mongomock's datetime conversion;
it is then filed exactly as mongomock files it (the caller's dict given an `_id` when it has
none, the duplicate `_id` check, the unique checks with their rollback). Anything else (a
string BSON cannot encode, a dict `_id`, a subclass, bytes, an OrderedDict, sessions, many
documents) goes to mongomock's own `_insert`, so its errors are its own.
tests/test_embedded_plain_insert.py compares the two.
"""
import datetime

from bson import ObjectId
from mongomock import DuplicateKeyError, helpers
from mongomock import collection as mongomock_collection
from mongomock.collection import Collection

INT64 = (-2 ** 63, 2 ** 63 - 1)
SCALARS = frozenset((int, float, bool, type(None), ObjectId))
AS_GIVEN = frozenset((str, int, float, bool, type(None), ObjectId))
_original = {}  # mongomock's Collection methods replaced here


class _NotPlain(Exception):
    """Raised inside the copy: the document goes to mongomock's own insert."""


def install():
    """Patch mongomock's Collection once per process (idempotent; chatapp.embedded.install)."""
    if _original:
        return
    _original["_insert"] = Collection._insert
    Collection._insert = _insert


def _insert(self, data, session=None, ordered=True):
    if type(data) is not dict or session:
        return _original["_insert"](self, data, session, ordered)
    # (A datetime past year 9999 once made UTC raises OverflowError from this copy, before the
    # caller's dict is touched, as mongomock's BSON encoding raises it.)
    try:
        stored = {_key(key): _value(value) for key, value in data.items()}
    except _NotPlain:
        return _original["_insert"](self, data, session, ordered)
    object_id = stored.get("_id", _NotPlain)
    if object_id is _NotPlain:  # as PyMongo and mongomock: the caller's dict gets it too
        # (mongomock's own name for it: a test giving it a sequence gets the same ids here)
        object_id = data["_id"] = stored["_id"] = mongomock_collection.ObjectId()
    elif type(object_id) in (list, dict):  # mongomock's own answer (hashdict, or an error)
        return _original["_insert"](self, data, session, ordered)
    collection_store = self._store
    collection_store._remove_expired_documents()  # as its `in` does first
    documents = collection_store._documents
    with collection_store._rwlock.writer():  # one hold of its lock where `in` and `[]=` take two
        if object_id in documents:
            raise DuplicateKeyError("E11000 Duplicate Key Error", 11000)
        documents[object_id] = stored
    try:
        self._ensure_uniques(stored)
    except DuplicateKeyError:
        del collection_store[object_id]  # mongomock's rollback
        raise
    return object_id


def _key(key):
    if type(key) is not str or "\x00" in key or "." in key or key.startswith("$"):
        raise _NotPlain
    return key


def _value(value):
    kind = type(value)
    if kind is str:
        if not value.isascii():
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:  # a lone surrogate: BSON refuses it, so does mongomock
                raise _NotPlain from None
        return value
    if kind in SCALARS:
        if kind is int and not INT64[0] <= value <= INT64[1]:
            raise _NotPlain
        return value
    if kind is datetime.datetime:
        if value.tzinfo and value.utcoffset() is None:
            raise _NotPlain
        return _as_stored_datetime(value)
    if kind is dict:
        return {_key(k): _value(v) for k, v in value.items()}
    if kind is list or kind is tuple:
        return [_value(item) for item in value]
    raise _NotPlain


def _as_stored_datetime(value):
    """mongomock's patch_datetime_awareness_in_document for a datetime: naive UTC, milliseconds."""
    mongo_us = (value.microsecond // 1000) * 1000
    if value.tzinfo:
        return (value - value.utcoffset()).replace(tzinfo=None, microsecond=mongo_us)
    return value.replace(microsecond=mongo_us)


def as_stored(value):
    """mongomock's `patch_datetime_awareness_in_document(value)` (a filter, an update: the
    in-place updates of chatapp/embedded_update.py), the exact types the app passes decided
    here in one call each; anything else (a subclass, a Timestamp...) by mongomock's own."""
    kind = type(value)
    if kind is dict:
        return {k: as_stored(v) for k, v in value.items()}
    if kind in AS_GIVEN:
        return value
    if kind is datetime.datetime:  # (a zone without an offset raises mongomock's TypeError)
        return _as_stored_datetime(value)
    if kind is list or kind is tuple:
        return [as_stored(item) for item in value]
    return helpers.patch_datetime_awareness_in_document(value)


def storable(value):
    """Whether BSON encodes this scalar (an int within 64 bits, a string without a lone
    surrogate): what mongomock's `$set` checks by encoding it."""
    try:
        _value(value)
    except _NotPlain:
        return False
    return True
