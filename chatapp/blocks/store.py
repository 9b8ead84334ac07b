"""The only code that touches the blocks collection.

One document per (blocker, blocked) pair, written once when the block starts and deleted
when it ends:

    {_id, blocker: ObjectId, blocked: ObjectId, at: datetime}

The unique (blocker, blocked) index keeps a pair to one document whichever process writes
it, and serves "whom did X block" (a blocker's list, its leading field); (blocked, blocker)
serves "who blocked X". Every query here is served by one of the two (a query with both
fields by either), on MongoDB and on the embedded store (chatapp/embedded.py hashes the
leading fields of each declared index).
"""
from pymongo import ASCENDING
from pymongo.errors import DuplicateKeyError

from chatapp.extensions import mongo


def blocks():
    return mongo.collection("blocks")


def ensure_indexes():
    blocks().create_index([("blocker", ASCENDING), ("blocked", ASCENDING)], unique=True,
                          name="blocks_pair")
    blocks().create_index([("blocked", ASCENDING), ("blocker", ASCENDING)],
                          name="blocks_by_blocked")


def add(blocker, blocked, at):
    """Record the block unless it exists (then its first `at` stays); returns (the
    document, whether this call created it)."""
    try:
        result = blocks().update_one({"blocker": blocker, "blocked": blocked},
                                     {"$setOnInsert": {"at": at}}, upsert=True)
        created = result.upserted_id is not None
    except DuplicateKeyError:
        created = False  # the same block, written by a concurrent request: it exists, as asked
    return find(blocker, blocked), created


def remove(blocker, blocked):
    """End the block; True for the one call that ended it."""
    return blocks().delete_one({"blocker": blocker, "blocked": blocked}).deleted_count == 1


def find(blocker, blocked):
    return blocks().find_one({"blocker": blocker, "blocked": blocked})


def between(a, b):
    """The blocks of a pair, either direction (0, 1 or 2 documents)."""
    return list(blocks().find({"$or": [{"blocker": a, "blocked": b},
                                       {"blocker": b, "blocked": a}]},
                              {"blocker": 1, "blocked": 1}))


def made_by(blocker):
    """Every block `blocker` made: [{_id, blocked, at}], unordered."""
    return list(blocks().find({"blocker": blocker}, {"blocked": 1, "at": 1}))


def blocked_ids(blocker):
    """The ids of the users `blocker` blocked."""
    return {doc["blocked"] for doc in blocks().find({"blocker": blocker}, {"blocked": 1})}


def blocker_ids(blocked, among=None):
    """The ids of the users who blocked `blocked` (only those in `among`, when given)."""
    query = {"blocked": blocked}
    if among is not None:
        query["blocker"] = {"$in": list(among)}
    return {doc["blocker"] for doc in blocks().find(query, {"blocker": 1})}


def involving(user_id):
    """The ids of everyone in a block with `user_id`, whichever blocked whom: one query."""
    peers = set()
    for doc in blocks().find({"$or": [{"blocker": user_id}, {"blocked": user_id}]},
                             {"blocker": 1, "blocked": 1}):
        peers.update((doc["blocker"], doc["blocked"]))
    peers.discard(user_id)
    return peers
