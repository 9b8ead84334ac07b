"""The answer of chatapp.embedded_update's writes: what mongomock's `find_one(filter,
projection)` answers for the stored document, a copy of the projected fields only, its
datetimes made timezone-aware for a tz-aware client as mongomock's cursor makes them; for
a projection of top-level fields (every send's counter fields), both in one pass."""
import copy
import datetime

from bson import ObjectId
from mongomock import helpers


def nested(paths):
    """Whether one of `paths` is another, or inside another (`a` and `a.b`)."""
    seen = set(paths)
    if len(seen) != len(paths):
        return True
    for path in paths:
        if "." in path:
            parts = path.split(".")
            if any(".".join(parts[:i]) in seen for i in range(1, len(parts))):
                return True
    return False


def projection_ok(projection):
    """A projection mongomock applies without refusing it, that keeps `_id` (then the
    answer is never empty: mongomock answers None for an empty one)."""
    if projection is None:
        return True
    if type(projection) is not dict:
        return False
    values = []
    for key, value in projection.items():
        if not isinstance(key, str) or "$" in key or "" in key.split(".") \
                or type(value) not in (int, bool):
            return False
        if key == "_id":
            if not value:
                return False
        elif key.startswith("_id."):
            return False
        else:
            values.append(value)
    return len(set(values)) <= 1 and not nested(list(projection))


def project(self, doc, projection):
    """What mongomock's `find_one(..., projection)` answers for the stored `doc`: its
    `_copy_only_fields`, then (tz-aware client) `make_datetime_timezone_aware_in_document`;
    for a projection of top-level fields, both in one pass (`_clone`)."""
    aware = self.codec_options.tz_aware
    shape = _top_level(projection)
    if shape is None:
        found = self._copy_only_fields(doc, projection, dict)
        return helpers.make_datetime_timezone_aware_in_document(found) if aware else found
    include, names = shape
    if include is None:
        return {key: _clone(value, aware) for key, value in doc.items()}
    if not include:  # `_id` kept in its place
        return {key: _clone(value, aware) for key, value in doc.items() if key not in names}
    found = {key: _clone(value, aware) for key, value in doc.items() if key in names}
    if "_id" in doc:
        found["_id"] = _clone(doc["_id"], aware)  # last, as mongomock adds it
    return found


def _top_level(projection):
    """(None, None) for the whole document; (include?, top-level names) for a projection of
    top-level fields keeping `_id` (as 1); None for anything else (mongomock's own copy)."""
    if not projection:
        return None, None
    names = set()
    modes = set()
    for key, value in projection.items():
        if "." in key or value not in (0, 1):
            return None
        if key == "_id":
            if value != 1:
                return None
        else:
            names.add(key)
            modes.add(bool(value))
    if len(modes) != 1:
        return None
    return modes.pop(), names


# Immutable: shared, not copied.
SHARED = frozenset((str, int, float, bool, type(None), ObjectId, bytes))


def _clone(value, aware):
    """mongomock's `_copy_field` (new lists and dicts, a copy of anything else) then, for a
    tz-aware client, `make_datetime_timezone_aware_in_document`, in one pass; values that
    cannot change (strings, numbers, ids, datetimes) are shared rather than copied."""
    kind = type(value)
    if kind in SHARED:
        return value
    if isinstance(value, list):
        if SHARED.issuperset(map(type, value)):  # a group's 100 member ids: C's loops only
            return list(value)
        return [item if type(item) in SHARED else _clone(item, aware) for item in value]
    if isinstance(value, dict):
        return {key: _clone(item, aware) for key, item in value.items()}
    if isinstance(value, datetime.datetime):
        return value.replace(tzinfo=helpers.utc) if aware else value
    if isinstance(value, tuple):
        return [_clone(item, aware) for item in value] if aware else value
    return helpers.make_datetime_timezone_aware_in_document(copy.copy(value)) if aware \
        else copy.copy(value)
