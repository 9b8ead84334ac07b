"""The embedded store (mongomock) with hashed indexes, so a query examines what MongoDB would.

mongomock answers every query, and checks every unique index on every insert, by scanning
the whole collection: with it, storing a message cost time proportional to the number of
messages already stored, and one user's history request stalled every other client while
it scanned every message (bench/README.md has the profile). MongoDB uses the indexes that
`ensure_indexes` declares; this gives the embedded store the same shape: per collection, a
hash from each declared index's key to the ids holding it, multikey for arrays (and for a
path through an array of sub-documents), and the documents of each first-field value in the
order of the index's other fields (a one-field index: all of them in its field's order;
chatapp/embedded_hashes.py, embedded_index.py, embedded_order.py). They serve

- the unique checks of an insert or update;
- queries (chatapp/embedded_plan.py): equalities (`v`, `$eq`, `$in`, a value of `$all`) on
  an index's leading fields, a range on the next field (or alone, on a one-field index), a
  top-level `$or` whose every branch is so narrowed, `$and`; aggregations that start with a
  `$match`;
- sorts: a sort an index keeps is read in its order, and a limited cursor (`find_one` too:
  limited to one, as MongoDB's) examines and copies only what it returns, where mongomock
  matched, sorted and copied every candidate before cutting.

TTL indexes expire documents through a heap instead of mongomock's sweep of every
document at every access (chatapp/embedded_ttl.py). An update that only `$inc`s, `$set`s or
`$max`es scalars writes the stored document in place and re-keys the indexes it touched,
where mongomock deep-copied the whole document first (chatapp/embedded_update.py). An insert of
a plain document is copied and filed in one walk (chatapp/embedded_insert.py).
Every EMBEDDED_FREEZE_EVERY new documents the stored data leaves the cyclic collector's walk
(chatapp/embedded_heap.py), so its pauses do not grow with the store.

`$text` (which mongomock lacks) is answered with MongoDB's own rules (chatapp/embedded_text.py,
chatapp/mongo_text.py), over the documents holding one of its terms (a text index's hash, as
MongoDB's text index selects them) or the narrower candidates of the rest of the query; a text
index keeps its `default_language`, `language_override` and `weights`, which mongomock drops.

It never answers differently from a scan: candidates are a superset of the matching
documents, re-checked with mongomock's own filter (its plainest equalities decided first:
chatapp/embedded_match.py), in mongomock's own order (ties of a sort
in natural order); a document is re-keyed whenever mongomock re-checks its unique indexes
(after every insert and every update that changed it), ids of deleted documents are dropped
when met, and whatever no hash can hold falls back to mongomock's scan.
tests/test_hardening_store.py compares the two on random writes and queries.
Only `chatapp.db` installs it, and only for the embedded store.
"""
import functools
import itertools
from collections.abc import Mapping

from mongomock import DuplicateKeyError, helpers
from mongomock.collection import Collection, Cursor

from chatapp import (embedded_answer, embedded_insert, embedded_match, embedded_plan,
                     embedded_text, embedded_ttl, embedded_update)
from chatapp.embedded_hashes import hashes, live
from chatapp.embedded_keys import UNUSABLE, id_of, keys_of

_original = {}  # mongomock's Collection methods replaced here
_original_cursor = {}  # and its Cursor's
_NO_FAST_PATH = object()


def install():
    """Patch mongomock's Collection once per process (idempotent)."""
    if _original:
        return
    for name in ("_ensure_uniques", "_iter_documents", "_get_dataset", "aggregate", "find_one",
                 "create_index"):
        _original[name] = getattr(Collection, name)
    Collection._ensure_uniques = _ensure_uniques
    Collection._iter_documents = _iter_documents
    Collection._get_dataset = _get_dataset
    Collection.aggregate = _aggregate
    Collection.find_one = _find_one
    Collection.create_index = _create_index
    _original_cursor["_compute_results"] = Cursor._compute_results
    Cursor._compute_results = _compute_results
    embedded_ttl.install()
    embedded_update.install()  # plain counter writes in place, not through a deep copy
    embedded_insert.install()  # plain documents stored in one walk


def _ensure_uniques(self, new_data):
    """Unique checks through the hashes, then (re-)key the document.

    mongomock calls this after every insert and after every update that changed a document
    (rolling the change back when it raises), so the hashes follow every write.
    """
    store = self._store
    collection_hashes = hashes(store)
    found = {}
    try:
        _check_uniques(self, collection_hashes.indexes, new_data, found)
    except DuplicateKeyError:
        raise  # mongomock rolls the write back: the hashes keep the document's old keys
    except Exception:
        collection_hashes.add(store, new_data)  # anything else leaves mongomock's write done
        raise
    collection_hashes.add(store, new_data, found)


def _check_uniques(self, indexes, new_data, found):
    """Raise DuplicateKeyError as mongomock's checks would; `found` gets, per unique index
    checked through its hashes, what it computed of `new_data` (filed with it next)."""
    store = self._store
    new_id = id_of(new_data)
    for index in indexes:
        if not index.unique:
            continue
        if index.usable:
            keys, exact, per_field = index.extract(new_data)
        else:
            keys, exact, per_field = UNUSABLE, False, None
        if keys is UNUSABLE or not exact or not index.exact:
            _scanning_unique_checks(self, new_data)
            return
        covered = index.covers(new_data, per_field)
        found[index] = (keys, exact, per_field, covered)
        if not covered:
            continue
        others = [i for i in index.holders(len(index.fields)).get(keys[0], ()) if i != new_id]
        if others and any(keys_of(doc, index.fields)[0] == keys
                          for doc in live(store, [others])):
            raise DuplicateKeyError("E11000 Duplicate Key Error", 11000)


def _scanning_unique_checks(self, new_data):
    """mongomock's own checks, by its own scans: the hashes do not hold `new_data` yet."""
    self._iter_documents = functools.partial(_original["_iter_documents"], self)
    try:
        _original["_ensure_uniques"](self, new_data)
    finally:
        del self._iter_documents


def _iter_documents(self, filter):
    text = None
    if isinstance(filter, dict) and "$text" in filter:
        filter = dict(filter)
        text = embedded_text.query(self._store, filter.pop("$text"))
    buckets = embedded_plan.plan(self._store, filter)
    if text is not None:
        holding = text.holding(hashes(self._store))
        if buckets is None or embedded_plan.size(holding) < embedded_plan.size(buckets):
            buckets = holding
    if buckets is None:
        found = _original["_iter_documents"](self, filter)
    else:
        candidates = live(self._store, buckets)
        applies = embedded_match.matcher(filter)
        found = (doc for doc in candidates if applies(doc))
    return found if text is None else (doc for doc in found if text.matches(doc))


def _create_index(self, key_or_list, cache_for=300, session=None, **kwargs):
    return embedded_text.create_index(_original["create_index"], self, key_or_list, cache_for,
                                      session, kwargs)


def _get_dataset(self, spec, sort, fields, as_class):
    """A sort an index keeps is read in its order, not sorted after a full match."""
    if sort:
        ordered = embedded_plan.in_order(self._store, spec, sort)
        if ordered is not None:
            return (self._copy_only_fields(doc, fields, as_class) for doc in ordered)
    return _original["_get_dataset"](self, spec, sort, fields, as_class)


def _aggregate(self, pipeline, session=None, **kwargs):
    """A leading `$match` selects through the hashes, as MongoDB's would through an index."""
    if pipeline and isinstance(pipeline[0], dict) and set(pipeline[0]) == {"$match"} \
            and isinstance(pipeline[0]["$match"], dict) and "$expr" not in pipeline[0]["$match"]:
        from mongomock import aggregate

        selected = list(self.find(pipeline[0]["$match"]))
        return aggregate.process_pipeline(selected, self.database, pipeline[1:], session)
    return _original["aggregate"](self, pipeline, session=session, **kwargs)


def _find_one(self, filter=None, *args, **kwargs):  # noqa: keyword-arg-before-vararg as mongomock
    """mongomock's, through a cursor limited to one (as MongoDB's): one document copied."""
    if filter is None:
        filter = {}
    if not isinstance(filter, Mapping):
        filter = {"_id": filter}
    projection = _plain_projection(args, kwargs)
    if type(filter) is dict and filter and projection is not _NO_FAST_PATH \
            and embedded_answer.projection_ok(projection):
        # No sort, no options (by id, by a unique key, a member check): the first match in
        # natural order, its projected fields copied, as the cursor below answers it, with
        # none of a cursor's making.
        doc = embedded_update.first(self, filter)
        return None if doc is None else embedded_answer.project(self, doc, projection)
    cursor = self.find(filter, *args, **kwargs)
    if cursor._limit is None:
        cursor.limit(1)
    return next(cursor, None)


def _plain_projection(args, kwargs):
    """The projection of a find_one call that passes nothing else (None when it passes
    none); _NO_FAST_PATH for any other argument (a sort, a skip, a session...)."""
    if not kwargs and len(args) <= 1:
        return args[0] if args else None
    if not args and set(kwargs) == {"projection"}:
        return kwargs["projection"]
    return _NO_FAST_PATH


def _compute_results(self, with_limit_and_skip=False):
    """A limited cursor copies only the documents it shows (mongomock copied every match,
    then cut: a one-message `find_one` sorted by seq copied the whole conversation)."""
    if not (with_limit_and_skip and self._limit) or (
            self._results and self._factory_last_generated_results == self._factory):
        return _original_cursor["_compute_results"](self, with_limit_and_skip)
    key = (self._factory, self._skip, self._limit)
    head = getattr(self, "_chatapp_head", None)
    if head is None or head[0] != key:
        rows = list(itertools.islice(self._factory(), self._skip + abs(self._limit)))
        if self.collection.codec_options.tz_aware:
            rows = [helpers.make_datetime_timezone_aware_in_document(x) for x in rows]
        head = self._chatapp_head = (key, rows[self._skip:])
    return head[1]
