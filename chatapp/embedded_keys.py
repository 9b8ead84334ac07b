"""What a document holds in an index of the embedded store (chatapp/embedded_index.py), and
the maps that file document ids under those keys.

A key is built as MongoDB builds an index key: a missing field is null, an array is hashed
under each of its elements (a multikey index: `member_ids`; a path through an array of
sub-documents takes each element's field: `metadata.sent_in.msg`), and a value that does not
hash the way MongoDB compares (a sub-document, a nested array) makes the index unusable, so
queries fall back to mongomock's scan. A bool equals (and hashes as) 1 or 0: harmless for
candidates, which are always re-checked, but such an index (or one that held an array) no
longer decides unique checks by hash (`Index.exact`).
"""
import datetime
import itertools
import uuid

from bson import ObjectId
from mongomock import filtering, helpers

KEYABLE = (str, int, float, ObjectId, datetime.datetime, bytes, uuid.UUID, type(None))
# Exact types whose value is its own one key (never NaN, never a bool): a top-level field
# holding one is answered without walking the general path below.
PLAIN_KEYS = frozenset((str, int, ObjectId, datetime.datetime, bytes, uuid.UUID, type(None)))
UNUSABLE = object()
PATH = "path"  # values_of: the path went through an array of sub-documents


def keyable(value):
    # A bool equals (and hashes as) 1 or 0: harmless for candidates, which are re-checked,
    # but a unique check must not take True for 1 (see Index.exact). NaN is not even
    # equal to itself, so no hash finds it.
    return isinstance(value, KEYABLE) and value == value


def values_of(doc, field):
    """The values an index holds for `field` of `doc`, and whether they came from an array:
    an array's elements (multikey; `PATH` when the path itself went through an array of
    sub-documents, each element's field taken, as MongoDB fans out), [None] for a missing
    field; UNUSABLE when not hashable (a sub-document, nested arrays, a numeric part)."""
    if "." not in field and isinstance(doc, dict):
        value = doc.get(field)
        if type(value) in PLAIN_KEYS:
            return [value], False  # what the general path answers for it
        if type(value) is list and value and all(type(v) in PLAIN_KEYS for v in value):
            return list(dict.fromkeys(value)), True  # and for an array of them (member_ids)
    values, from_array = [doc], False
    for part in field.split("."):
        found = []
        for value in values:
            if isinstance(value, list):
                if part.isdigit() or not all(isinstance(v, dict) for v in value):
                    return UNUSABLE, True
                found.extend(v.get(part) for v in value)
                from_array = PATH
            else:
                found.append(value.get(part) if isinstance(value, dict) else None)
        values = found
    held = []
    for value in values:
        if isinstance(value, list):
            if not all(keyable(v) and not isinstance(v, list) for v in value):
                return UNUSABLE, True
            held.extend(value or [None])
            from_array = from_array or True
        elif keyable(value):
            held.append(value)
        else:
            return UNUSABLE, from_array
    return list(dict.fromkeys(held)) or [None], from_array


def keys_of(doc, fields):
    """Every key `doc` has in an index on `fields` (several for an array), whether each
    is exact (no array, no boolean), or (UNUSABLE, False)."""
    return combine([values_of(doc, field) for field in fields])


def combine(per_field):
    """`keys_of` from each field's `values_of`."""
    exact, multi = True, 0
    for values, from_array in per_field:
        if values is UNUSABLE:
            return UNUSABLE, False
        exact = exact and not from_array and not isinstance(values[0], bool)
        if len(values) > 1:
            multi += 1
    if multi > 1:
        return UNUSABLE, False  # parallel arrays: MongoDB refuses to index them too
    if not multi:
        return [tuple(values[0] for values, _ in per_field)], exact
    return list(itertools.product(*(values for values, _ in per_field))), exact


def type_test(partial):
    """(field, mongomock's `$type` test) when a partial filter is `{field: {"$type": name}}`
    on a top-level field (the app's `idempotent_send`, `direct_pair`); None otherwise."""
    if type(partial) is not dict or len(partial) != 1:
        return None
    (field, condition), = partial.items()
    if not isinstance(field, str) or not field or "." in field or field.startswith("$") \
            or type(condition) is not dict or list(condition) != ["$type"] \
            or type(condition["$type"]) is not str:
        return None
    test = filtering.TYPE_MAP.get(condition["$type"])
    return None if test is None else (field, test)


def id_of(doc):
    _id = doc["_id"]
    return helpers.hashdict(_id) if isinstance(_id, dict) else _id


def held_values(held, i):
    """Field `i`'s values in a document's keys `held`, as `values_of` gave them: one value,
    or (the one array field of a multikey key, which varies along the keys) each element.
    An array of one element reads as no array: harmless, its flags were set when filed."""
    if len(held) == 1 or held[0][i] == held[1][i]:
        return [held[0][i]], False
    return [key[i] for key in held], True


class Bucket(dict):
    """The ids holding one key of an index, when more than one does (id -> None, in order)."""

    __slots__ = ()


_NONE = object()


def file_key(by_prefix, key, doc_id):
    # One hash of the key when it is new (most keys of a long key: a tuple of ObjectIds,
    # whose hash is Python code): setdefault, not get then set.
    held = by_prefix.setdefault(key, doc_id)
    if held is doc_id:
        return  # filed now (or this very id was already: the same ids either way)
    if type(held) is Bucket:
        held[doc_id] = None
    else:
        by_prefix[key] = Bucket(((held, None), (doc_id, None)))


def unfile_key(by_prefix, key, doc_id):
    # One hash of the key when it held this id alone: pop, put back what stays.
    held = by_prefix.pop(key, _NONE)
    if held is _NONE:
        return
    if type(held) is Bucket:
        held.pop(doc_id, None)
        if len(held) > 1:
            by_prefix[key] = held
        elif held:
            by_prefix[key] = next(iter(held))
    elif held != doc_id:
        by_prefix[key] = held  # another document's


class Holders:
    """A prefix's map read as buckets: a lone id comes as a one-id tuple."""

    __slots__ = ("by_prefix",)

    def __init__(self, by_prefix):
        self.by_prefix = by_prefix

    def get(self, key, default=None):
        held = self.by_prefix.get(key, _NONE)
        if held is _NONE:
            return default
        return held if type(held) is Bucket else (held,)
