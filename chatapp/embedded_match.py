"""The re-check of a candidate (chatapp/embedded.py): mongomock's `filter_applies`, with its
commonest conditions decided first without it.

A top-level equality to an ObjectId or a string (`{"_id": id}`, `{"member_ids": user}`,
`{"conv": id}`) holds when the document's field is that value, or an array holding it:
what mongomock (and MongoDB) answer then. mongomock reaches that answer through its general
path, which for a 100-member group's `member_ids` compared every element in Python (~0.1 ms
per send). Anything else (operators, dotted paths, `$or`, other types, a field that does not
hold the value) is left to mongomock: only what this module can prove true is skipped.
"""
from bson import ObjectId
from mongomock import filtering

PLAIN = (ObjectId, str)  # exact types of the values decided here
_MISSING = object()


def matcher(filter):
    """A test of documents equivalent to `filtering.filter_applies(filter, doc)`."""
    if not isinstance(filter, dict):
        return lambda doc: filtering.filter_applies(filter, doc)
    plain, rest = [], {}
    for field, condition in filter.items():
        if type(condition) in PLAIN and type(field) is str and field[:1] != "$" \
                and "." not in field:
            plain.append((field, condition))
        else:
            rest[field] = condition
    if not plain:
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
        return not rest or filtering.filter_applies(rest, doc)

    return applies
