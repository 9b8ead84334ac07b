"""The embedded store's plain counter writes, in place: chatapp.embedded's `find_one_and_update`
and `update_one` when the update only `$inc`s, `$set`s or `$max`es scalars at top-level or
dotted paths through sub-documents (every send's `take_seq`/`bump_direct`, a read marker).

mongomock deep-copied the whole matched document before such an update (to roll it back,
and to tell whether it changed), compared the two whole, re-keyed every index of the
collection, and (`find_one_and_update`) matched the filter twice, then once more by `_id`:
for a 100-member group document, most of a send's time (bench/README.md, change 6). Here
the document is matched once (the same `_iter_documents`, so the same document), the
touched values are checked, then written in place while the old ones are kept to undo; the
document changed when a touched value did (what mongomock's whole-document comparison
finds, as only touched values differ); only the indexes a touched path is part of (its
fields, or the fields its partial filter reads) are re-keyed, and the unique checks run
through chatapp.embedded's own `_ensure_uniques` whenever such an index is unique
(DuplicateKeyError: every touched value is put back). The answer is what mongomock's
`find_one` would answer for the document before or after: a copy of the projected fields
only, its datetimes made timezone-aware as mongomock's cursor makes them.

Anything else (upsert, sort, arrays or sub-documents as values, `$push` and the other
operators, positional or `_id` paths, a path through an array or a scalar, overlapping
paths, a `$inc` on a non-number, a `$max` across types, a projection mongomock would refuse
or one leaving out `_id`, sessions and other options) goes to mongomock's own method.
"""
import datetime

from bson import ObjectId
from mongomock import DuplicateKeyError
from mongomock.collection import Collection
from mongomock.results import UpdateResult
from pymongo import ReturnDocument

from chatapp import embedded_answer, embedded_insert, embedded_ttl
from chatapp.embedded_answer import nested
from chatapp.embedded_hashes import hashes
from chatapp.embedded_index import Index
from chatapp.embedded_keys import id_of

OPERATORS = ("$inc", "$set", "$max")
SCALARS = (str, int, float, bool, ObjectId, datetime.datetime, type(None))
NUMBERS = (int, float)
ORDERED = (int, float, str, datetime.datetime)  # $max values: max() as mongomock calls it
_MISSING = object()
_original = {}  # mongomock's Collection methods replaced here


def install():
    """Patch mongomock's Collection once per process (idempotent; chatapp.embedded.install)."""
    if _original:
        return
    for name in ("find_one_and_update", "update_one"):
        _original[name] = getattr(Collection, name)
    Collection.find_one_and_update = find_one_and_update
    Collection.update_one = update_one


def find_one_and_update(self, filter, update, projection=None, sort=None, upsert=False,
                        return_document=ReturnDocument.BEFORE, **kwargs):
    steps = None
    if sort is None and not upsert and not kwargs and type(filter) is dict \
            and (return_document is ReturnDocument.BEFORE or return_document is ReturnDocument.AFTER) \
            and embedded_answer.projection_ok(projection):
        steps = _steps(update)
    if steps is not None:
        doc = first(self, filter)
        if doc is None:
            return None
        if _valid(doc, steps):
            before = None if return_document is ReturnDocument.AFTER \
                else embedded_answer.project(self, doc, projection)
            _write(self, doc, steps)
            return before if before is not None else embedded_answer.project(self, doc, projection)
    return _original["find_one_and_update"](
        self, filter, update, projection=projection, sort=sort, upsert=upsert,
        return_document=return_document, **kwargs)


def update_one(self, filter, update, upsert=False, bypass_document_validation=False,
               collation=None, array_filters=None, hint=None, session=None, let=None):
    steps = None
    if not (upsert or bypass_document_validation or collation or array_filters or hint
            or session or let) and type(filter) is dict:
        steps = _steps(update)
    if steps is not None:
        doc = first(self, filter)
        if doc is None or _valid(doc, steps):
            changed = doc is not None and _write(self, doc, steps)
            return UpdateResult({
                "connectionId": self.database.client._id, "err": None,
                "n": 0 if doc is None else 1, "nModified": 1 if changed else 0, "ok": 1,
                "upserted": None, "updatedExisting": doc is not None}, acknowledged=True)
    return _original["update_one"](
        self, filter, update, upsert=upsert, bypass_document_validation=bypass_document_validation,
        collation=collation, array_filters=array_filters, hint=hint, session=session, let=let)


def first(self, filter):
    """The stored document mongomock's `find_one(filter)` (and its `_update`) would take."""
    spec = embedded_insert.as_stored(filter)
    return next(iter(self._iter_documents(spec)), None)


def _steps(update):
    """[(operator, path parts, value, path)] for an update this module can apply, or None."""
    if type(update) is not dict or not update:
        return None
    update = embedded_insert.as_stored(update)  # as mongomock's _update
    steps = []
    for op, fields in update.items():
        if op not in OPERATORS or not isinstance(fields, dict) or not fields:
            return None
        for path, value in fields.items():
            if not isinstance(path, str) or "$" in path or "\0" in path:
                return None
            parts = path.split(".")
            if parts[0] == "_id" or "" in parts or type(value) not in SCALARS \
                    or (type(value) is float and value != value):
                return None
            if op == "$inc" and type(value) not in NUMBERS \
                    or op == "$max" and type(value) not in ORDERED:
                return None
            if op == "$set" and not embedded_insert.storable(value):
                return None  # what mongomock's $set checks, by encoding it
            steps.append((op, parts, value, path))
    if nested([step[3] for step in steps]):
        return None  # one path inside another (or twice): mongomock's order of writes
    return steps


def _valid(doc, steps):
    """Whether every step applies to `doc` as mongomock would apply it (read only)."""
    for op, parts, value, _ in steps:
        node = doc
        for part in parts[:-1]:
            node = node.get(part, _MISSING) if node is not _MISSING else _MISSING
            if node is not _MISSING and not isinstance(node, dict):
                return False  # through an array or a scalar
        old = _MISSING if node is _MISSING else node.get(parts[-1], _MISSING)
        if old is _MISSING or op == "$set":
            continue
        if op == "$inc" and type(old) not in NUMBERS:
            return False
        if op == "$max" and not (type(old) in NUMBERS and type(value) in NUMBERS
                                 or type(old) is type(value) is str
                                 or type(old) is type(value) is datetime.datetime
                                 and old.tzinfo is None and value.tzinfo is None):
            return False
    return True


def _write(self, doc, steps):
    """Apply the steps to the stored `doc` in place, re-key what they touched; whether it
    changed. DuplicateKeyError: `doc` is as it was."""
    undo, changed = [], False
    for op, parts, value, _ in steps:
        node = doc
        for part in parts[:-1]:
            child = node.get(part, _MISSING)
            if child is _MISSING:
                child = node[part] = {}
                undo.append((node, part, _MISSING))
                changed = True
            node = child
        key = parts[-1]
        old = node.get(key, _MISSING)
        if op == "$set":
            new = value
        elif op == "$inc":
            new = (0 if old is _MISSING else old) + value
        else:
            new = max(value if old is _MISSING else old, value)
        node[key] = new
        undo.append((node, key, old))
        changed = changed or old is _MISSING or not (old is new or old == new)
    if changed:
        try:
            _rekey(self, doc, [step[3] for step in steps])
        except DuplicateKeyError:
            for node, key, old in reversed(undo):
                if old is _MISSING:
                    del node[key]
                else:
                    node[key] = old
            raise
    return changed


def _rekey(self, doc, paths):
    store = self._store
    collection_hashes = hashes(store)
    affected = _rekey_plan(collection_hashes, tuple(paths))
    place = collection_hashes.places.get(id_of(doc))
    if place is None or any(index.unique for index, _ in affected):
        self._ensure_uniques(doc)  # every unique check, every index re-keyed (chatapp.embedded)
        return
    for index, kept in affected:
        if kept is None:
            index.add(doc, place)  # a text index
        else:
            index.add(doc, place, kept=kept)
    embedded_ttl.written(store, doc)


PLANS_KEPT = 512  # re-key plans per collection (paths such as `members.<id>.read_up_to` vary)


def _rekey_plan(collection_hashes, paths):
    """[(index, the fields of it writing `paths` leaves alone, None for a text index)] for
    each index those paths may change, made once per set of paths and collection hashes."""
    plans = collection_hashes.__dict__.setdefault("rekey_plans", {})
    usable = tuple(getattr(index, "usable", True) for index in collection_hashes.indexes)
    found = plans.get(paths)
    if found is None or found[0] != usable:  # (an index that turned unusable: made again)
        if len(plans) >= PLANS_KEPT:
            plans.clear()
        found = plans[paths] = (usable, [
            (index, _kept(index, paths) if type(index) is Index else None)
            for index in collection_hashes.indexes if _affected(index, paths)])
    return found[1]


def _kept(index, paths):
    """The fields of `index` that writing `paths` leaves alone."""
    return {f for f in index.fields
            if not any(p == f or f.startswith(p + ".") or p.startswith(f + ".") for p in paths)}


def _affected(index, paths):
    """Whether writing `paths` may change what `index` holds for a document."""
    if type(index) is not Index or not index.usable:
        return True  # a text index (re-keyed only when its text changed), or no keys at all
    fields = list(index.fields)
    if index.partial is not None and not _filter_fields(index.partial, fields):
        return True
    return any(p == f or f.startswith(p + ".") or p.startswith(f + ".")
               for p in paths for f in fields)


def _filter_fields(expression, into):
    """Add the fields a (partial index's) filter reads; False when it cannot tell."""
    if not isinstance(expression, dict):
        return False
    for key, condition in expression.items():
        if key in ("$and", "$or", "$nor") and isinstance(condition, list):
            if not all(_filter_fields(branch, into) for branch in condition):
                return False
        elif key.startswith("$"):
            return False
        else:
            into.append(key)
    return True
