"""The only code that touches the `changes` collection: one record per version taken.

    {conv, v, at, kind: "message", msg}             a message created or changed
    {conv, v, at, kind: "event", type, user?, by?, up_to?, title?, role?}
    {conv, v, at, kind: "void"}                     a number whose write never came

`(conv, v)` is unique: the insert of a record is the moment its version becomes readable,
and the index is what lets a reader declare a number void while its slow writer cannot
then record it too (that writer takes a fresh number instead). `at` is when the number
was taken, which tells a reader how long a gap below a later record has been open.
"""
from pymongo import ASCENDING
from pymongo.errors import DuplicateKeyError

from chatapp.extensions import mongo


def changes():
    return mongo.collection("changes")


def ensure_indexes():
    changes().create_index([("conv", ASCENDING), ("v", ASCENDING)], unique=True,
                           name="feed")


def insert(conv, version, at, body):
    """Record `version`; False when the number is already recorded (by a reader, void)."""
    try:
        changes().insert_one({"conv": conv, "v": version, "at": at, **body})
    except DuplicateKeyError:
        return False
    return True


def find(conv, version):
    return changes().find_one({"conv": conv, "v": version})


def after(conv, since, limit):
    """Up to `limit` records above `since`, in version order."""
    return list(changes().find({"conv": conv, "v": {"$gt": since}}, {"_id": 0})
                .sort("v", ASCENDING).limit(limit))
