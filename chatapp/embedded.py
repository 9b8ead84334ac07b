"""The embedded store (mongomock) with hashed indexes, so its cost per message stays flat.

mongomock answers every query, and checks every unique index on every insert, by scanning
the whole collection: with it, storing a message cost time proportional to the number of
messages already stored (bench/README.md has the profile). MongoDB uses the indexes that
`ensure_indexes` declares; this gives the embedded store the same shape: per collection, a
hash from each declared index's exact key to the ids holding it, used for

- the unique checks of an insert or update, and
- queries with equalities on the leading fields of an index, or on `_id` (`$in` too),
  and aggregations that start with such a `$match`.

It never answers differently from a scan: a candidate found through a hash is re-checked
(its key, or mongomock's own filter), a document is re-keyed whenever mongomock re-checks
its unique indexes (after every insert and every update that changed it), and an index
holding a value that does not hash the way MongoDB compares (arrays, sub-documents,
booleans) falls back to mongomock's scan.
Only `chatapp.db` installs it, and only for the embedded store.
"""
import datetime
import uuid

from bson import ObjectId
from mongomock import DuplicateKeyError, filtering, helpers
from mongomock.collection import Collection

_KEYABLE = (str, int, float, ObjectId, datetime.datetime, bytes, uuid.UUID, type(None))
_UNUSABLE = object()
_original = {}


def install():
    """Patch mongomock's Collection once per process (idempotent)."""
    if _original:
        return
    for name in ("_ensure_uniques", "_iter_documents", "aggregate"):
        _original[name] = getattr(Collection, name)
    Collection._ensure_uniques = _ensure_uniques
    Collection._iter_documents = _iter_documents
    Collection.aggregate = _aggregate


def _keyable(value):
    return isinstance(value, _KEYABLE) and not isinstance(value, bool)


def _key(doc, fields):
    values = []
    for field in fields:
        try:
            value = helpers.get_value_by_dot(doc, field)
        except KeyError:
            value = None
        if not _keyable(value):
            return _UNUSABLE
        values.append(value)
    return tuple(values)


def _doc_id(doc):
    _id = doc["_id"]
    return helpers.hashdict(_id) if isinstance(_id, dict) else _id


class _Index:
    def __init__(self, spec):
        self.fields = tuple(field for field, _ in spec["key"])
        self.unique = bool(spec.get("unique"))
        self.sparse = bool(spec.get("sparse"))
        self.partial = spec.get("partialFilterExpression")
        self.usable = not any(f.startswith("$") for f in self.fields)
        # For each prefix of the key (n first fields): values -> {doc id: None}, in order.
        self.prefixes = [{} for _ in self.fields]
        self.ids = self.prefixes[-1]  # the whole key
        self.keys = {}  # doc id -> key

    def covers(self, doc):
        if self.partial is not None and not filtering.filter_applies(self.partial, doc):
            return False
        if self.sparse and all(_key(doc, (f,)) in (None, (None,)) for f in self.fields):
            return False
        return True

    def add(self, doc):
        doc_id = _doc_id(doc)
        self.discard(doc_id)
        if not self.usable or not self.covers(doc):
            return
        key = _key(doc, self.fields)
        if key is _UNUSABLE:
            self.usable = False
            return
        for n, by_prefix in enumerate(self.prefixes, 1):
            by_prefix.setdefault(key[:n], {})[doc_id] = None
        self.keys[doc_id] = key

    def discard(self, doc_id):
        key = self.keys.pop(doc_id, None)
        if key is None:
            return
        for n, by_prefix in enumerate(self.prefixes, 1):
            holders = by_prefix.get(key[:n])
            if holders is not None:
                holders.pop(doc_id, None)
                if not holders:
                    del by_prefix[key[:n]]


def _indexes(store):
    """The hashes of `store` (a mongomock CollectionStore), rebuilt when its indexes change."""
    signature = tuple((name, id(spec)) for name, spec in store.indexes.items())
    state = getattr(store, "_chatapp_hashes", None)
    if state is None or state[0] != signature:
        indexes = [_Index(spec) for name, spec in store.indexes.items() if name != "_id_"]
        for doc in list(store._documents.values()):
            for index in indexes:
                index.add(doc)
        state = store._chatapp_hashes = (signature, indexes)
    return state[1]


def _live(store, ids):
    store._remove_expired_documents()
    documents = store._documents
    return [documents[i] for i in list(ids) if i in documents]


def _ensure_uniques(self, new_data):
    """Unique checks through the hashes, then (re-)key the document.

    mongomock calls this after every insert and after every update that changed a document
    (rolling the change back when it raises), so the hashes follow every write.
    """
    store = self._store
    indexes = _indexes(store)
    new_id = _doc_id(new_data)
    for index in indexes:
        if not index.unique:
            continue
        key = _key(new_data, index.fields) if index.usable else _UNUSABLE
        if key is _UNUSABLE:
            _original["_ensure_uniques"](self, new_data)  # mongomock's scan decides
            break
        if not index.covers(new_data):
            continue
        others = [i for i in index.ids.get(key, ()) if i != new_id]
        if any(_key(doc, index.fields) == key for doc in _live(store, others)):
            raise DuplicateKeyError("E11000 Duplicate Key Error", 11000)
    for index in indexes:
        index.add(new_data)


def _iter_documents(self, filter):
    candidates = _candidates(self._store, filter)
    if candidates is None:
        return _original["_iter_documents"](self, filter)
    return (doc for doc in candidates if filtering.filter_applies(filter, doc))


def _candidates(store, filter):
    """Documents that may match `filter`, from `_id` or one index's hash; None: scan."""
    if not isinstance(filter, dict) or not filter:
        return None
    if "_id" in filter:
        value = filter["_id"]
        if _keyable(value) and value is not None:
            return _live(store, [value])
        if isinstance(value, dict) and set(value) == {"$in"} and isinstance(value["$in"], list) \
                and all(_keyable(v) and v is not None for v in value["$in"]):
            return _live(store, dict.fromkeys(value["$in"]))
    # Equalities on the leading fields of an index narrow the scan to the documents holding
    # those values; the rest of the filter (ranges, other fields) is checked on each.
    equal = {k: v for k, v in filter.items() if not k.startswith("$") and _keyable(v)}
    best, best_n = None, 0
    for index in _indexes(store):
        if not index.usable or index.sparse:
            continue
        if index.partial is not None and not filtering.filter_applies(index.partial, equal):
            continue  # matching documents may be outside this index
        n = 0
        while n < len(index.fields) and index.fields[n] in equal:
            n += 1
        if n > best_n:
            best, best_n = index, n
    if best is None:
        return None
    key = tuple(equal[f] for f in best.fields[:best_n])
    return _live(store, best.prefixes[best_n - 1].get(key, ()))


def _aggregate(self, pipeline, session=None, **kwargs):
    """A leading `$match` selects through the hashes, as MongoDB's would through an index."""
    if pipeline and isinstance(pipeline[0], dict) and set(pipeline[0]) == {"$match"} \
            and isinstance(pipeline[0]["$match"], dict) and "$expr" not in pipeline[0]["$match"]:
        from mongomock import aggregate

        selected = list(self.find(pipeline[0]["$match"]))
        return aggregate.process_pipeline(selected, self.database, pipeline[1:], session)
    return _original["aggregate"](self, pipeline, session=session, **kwargs)
