"""The re-check of a candidate (chatapp/embedded.py): mongomock's `filter_applies`, with its
commonest conditions decided first without it.

A top-level equality to an ObjectId or a string (`{"_id": id}`, `{"member_ids": user}`,
`{"conv": id}`) holds when the document's field is that value, or an array holding it:
what mongomock (and MongoDB) answer then. mongomock reaches that answer through its general
path, which for a 100-member group's `member_ids` compared every element in Python (~0.1 ms
per send). `{"f.N": {"$exists": bool}}` (N an array index: every send's "no block",
`blockers.0`) is decided when `f` is missing or an empty array (nothing there) or an array
longer than N (its element N is there). Anything else (other operators, other dotted paths,
`$or`, other types, a field that does not hold the value, a shorter array, whose
sub-documents may hold a field "N") is left to mongomock: only what it can prove is skipped.
"""
from bson import ObjectId
from mongomock import filtering

PLAIN = (ObjectId, str)  # exact types of the values decided here
_MISSING = object()


def matcher(filter):
    """A test of documents equivalent to `filtering.filter_applies(filter, doc)`."""
    if not isinstance(filter, dict):
        return lambda doc: filtering.filter_applies(filter, doc)
    plain, exists, rest = [], [], {}
    for field, condition in filter.items():
        if type(field) is not str or field[:1] == "$":
            rest[field] = condition
        elif type(condition) in PLAIN and "." not in field:
            plain.append((field, condition))
        elif _element_exists(field, condition):
            top, index = field.split(".")
            exists.append((top, int(index), condition["$exists"]))
        else:
            rest[field] = condition
    if not plain and not exists:
        return lambda doc: filtering.filter_applies(filter, doc)

    def applies(doc):
        for field, value in plain:
            held = doc.get(field, _MISSING)
            if type(held) is type(value):
                if held == value:
                    continue
                return False  # the field is another value of that type: no match
            if type(held) is list and value in held:
                continue  # an element equal to it (only an ObjectId equals an ObjectId)
            return filtering.filter_applies(filter, doc)  # undecided: mongomock's answer
        for field, index, wanted in exists:
            held = doc.get(field, _MISSING)
            if held is _MISSING:
                there = False
            elif type(held) is list:
                if len(held) > index:
                    there = True
                elif not held:  # no element, no sub-document
                    there = False
                else:
                    return filtering.filter_applies(filter, doc)  # undecided
            else:
                return filtering.filter_applies(filter, doc)  # undecided: mongomock's answer
            if there is not wanted:
                return False
        return not rest or filtering.filter_applies(rest, doc)

    return applies


def _element_exists(field, condition):
    """Whether `field: condition` is `{"f.N": {"$exists": True or False}}`, N an index."""
    if type(condition) is not dict or len(condition) != 1 \
            or type(condition.get("$exists")) is not bool or field.count(".") != 1:
        return False
    top, index = field.split(".")
    return bool(top) and index.isdigit() and index.isascii() and index == str(int(index))
