"""The only code that touches the conversations collection (and legacy_store.py, for the
upgrade of the 1:1-only version's documents).

A conversation document holds its members as a map keyed by user id (so every change to
one member is a plain dotted `$set`/`$unset`, atomic with the rest of the document) and
`member_ids`, the same ids as an array for the index that lists a user's conversations:

    {_id, type: "direct"|"group", pair?: "<low id>:<high id>", title, created_by,
     created_at, members: {"<user id>": {role, joined_at, read_up_to, delivered_up_to}},
     member_ids: [ObjectId], member_count, seq, version, version_at, last_at,
     last_message_id, pending: [the latest membership/marker/title changes' feed entries],
     events_v: the number of the last of those written (they are written in that order),
     unused_seqs: [the latest `seq` numbers taken by sends that lost a client_id race]}

`seq` numbers the messages, `version` every change (message, marker, membership, title);
`version_at` is when the last version was taken (the change feed, `chatapp.sync`, reads it);
`blockers` (direct only) who of the pair blocked the other (`chatapp.blocks`).
Every query here is served by an index declared in `ensure_indexes`.
"""
from datetime import datetime, timezone

from pymongo import ASCENDING, DESCENDING, ReturnDocument
from pymongo.errors import DuplicateKeyError

from chatapp.extensions import mongo

LIST_FIELDS = ("type", "title", "created_by", "created_at", "member_ids", "member_count",
               "version", "last_at", "last_message_id")


def conversations():
    return mongo.collection("conversations")


def ensure_indexes():
    c = conversations()
    c.create_index([("member_ids", ASCENDING), ("last_at", DESCENDING), ("_id", DESCENDING)],
                   name="by_member_activity")
    c.create_index([("pair", ASCENDING)], unique=True,
                   partialFilterExpression={"pair": {"$type": "string"}}, name="direct_pair")
    c.create_index([("legacy", ASCENDING)], sparse=True, name="legacy_upgrade")


def pair_key(a, b):
    """The same key for both directions of a pair (and for a user talking to themself)."""
    low, high = sorted((str(a), str(b)))
    return f"{low}:{high}"


def member_entry(role, joined_at, read_up_to=0, delivered_up_to=0):
    return {"role": role, "joined_at": joined_at, "read_up_to": read_up_to,
            "delivered_up_to": delivered_up_to}


# The change feed's entries (`pending`, up to 50) are read by `pending_entry` alone, the
# unused seq numbers by `unused_seqs`.
WITHOUT_FEED = {"pending": 0, "unused_seqs": 0}
UNUSED_SEQS_KEPT = 20


def find(conversation_id):
    return conversations().find_one({"_id": conversation_id}, WITHOUT_FEED)


def find_for_member(conversation_id, user_id):
    return conversations().find_one({"_id": conversation_id, "member_ids": user_id},
                                    WITHOUT_FEED)


def find_direct(pair):
    return conversations().find_one({"pair": pair}, WITHOUT_FEED)


def insert(doc):
    conversations().insert_one(doc)


COUNTER_FIELDS = {"seq": 1, "version": 1, "member_ids": 1, "member_count": 1, "type": 1}


def stamped(changes):
    """An update that takes versions also records when (`version_at`)."""
    if "version" in changes.get("$inc", {}):
        changes = {**changes, "$set": {**changes.get("$set", {}), "version_at": now()}}
    return changes


def now():
    return datetime.now(timezone.utc)


# A direct conversation whose pair has a block (`blockers`: who blocked whom) takes no
# message: the send's own counter update refuses it, no extra query on the way.
OPEN = {"blockers.0": {"$exists": False}}


def bump_direct(pair, changes, inc):
    """`changes`/`inc` on the pair's conversation if it exists and has no block (the
    counter fields after)."""
    return conversations().find_one_and_update(
        {"pair": pair, **OPEN}, stamped({"$set": changes, "$inc": inc}), projection=COUNTER_FIELDS,
        return_document=ReturnDocument.AFTER)


def upsert_direct(pair, on_insert, changes=None, inc=None, projection=None):
    """Find-or-create the pair's conversation atomically (the unique `pair` index decides a
    race between processes), applying `changes`/`inc`; returns the document after (only
    the `projection` fields, when given)."""
    update = {"$setOnInsert": on_insert}
    if changes:
        update["$set"] = changes
    if inc:
        update["$inc"] = inc
    update = stamped(update)
    for attempt in range(3):
        try:
            return conversations().find_one_and_update(
                {"pair": pair}, update, upsert=True, projection=projection,
                return_document=ReturnDocument.AFTER)
        except DuplicateKeyError:
            if attempt == 2:
                raise  # MongoDB retries such upserts itself; this covers the embedded store


def take_seq(conversation_id, sender_id, message_id, now):
    """The next `seq` and `version` of a conversation the sender is a member of at this
    instant, recorded as its latest activity; None when the sender is not (any more)."""
    return conversations().find_one_and_update(
        {"_id": conversation_id, "member_ids": sender_id, **OPEN},
        {"$inc": {"seq": 1, "version": 1},
         "$set": {"last_at": now, "last_message_id": message_id, "version_at": now}},
        projection=COUNTER_FIELDS,
        return_document=ReturnDocument.AFTER,
    )


def mark_unused_seq(conversation_id, seq):
    """A `seq` no message will ever have (its send lost a client_id race to a copy of
    itself): history pages stop waiting for it. The latest UNUSED_SEQS_KEPT are kept."""
    conversations().update_one({"_id": conversation_id}, {
        "$push": {"unused_seqs": {"$each": [seq], "$slice": -UNUSED_SEQS_KEPT}}})


def unused_seqs(conversation_id):
    doc = conversations().find_one({"_id": conversation_id}, {"unused_seqs": 1})
    return set(doc.get("unused_seqs", ())) if doc else set()


def set_blocker(pair, blocker_id, blocked):
    """Record (or forget) that one of a pair blocked the other, on their direct
    conversation if it exists."""
    op = "$addToSet" if blocked else "$pull"
    conversations().update_one({"pair": pair}, {op: {"blockers": blocker_id}})


def take_version(conversation_id, count=1):
    """The next `count` versions of a conversation (a change that is not a new message):
    the document's `version` after is the last of them."""
    doc = conversations().find_one_and_update(
        {"_id": conversation_id}, stamped({"$inc": {"version": count}}),
        projection={"version": 1, "member_ids": 1, "type": 1},
        return_document=ReturnDocument.AFTER)
    return doc


def events_before(version):
    """The condition that keeps membership, marker and title writes in the order of their
    numbers: nothing at or above `version` was written (nor fenced off) yet."""
    return {"$or": [{"events_v": {"$lt": version}}, {"events_v": {"$exists": False}}]}


def fence_events(conversation_id, version):
    """A reader settling `version`: unless an event was written at it (its entry is here),
    no event write at or below it may happen any more (`events_before`); True when fenced,
    False when the entry exists. One atomic update, so a write and the fence cannot both
    pass."""
    result = conversations().update_one(
        {"_id": conversation_id, "pending.v": {"$ne": version}},
        {"$max": {"events_v": version}})
    return result.matched_count == 1


def pending_entry(conversation_id, version):
    """The change feed's entry for `version` kept in the document (chatapp.sync), or None."""
    doc = conversations().find_one({"_id": conversation_id, "pending.v": version},
                                    {"pending": {"$elemMatch": {"v": version}}})
    return doc["pending"][0] if doc and doc.get("pending") else None


def update(conversation_id, condition, changes, before=False):
    """One atomic change of a conversation under `condition` (e.g. the caller's role at this
    instant); returns the document (after, or before with `before`), None when unmet."""
    query = {"_id": conversation_id, **condition}
    return conversations().find_one_and_update(
        query, stamped(changes), projection=WITHOUT_FEED,
        return_document=ReturnDocument.BEFORE if before else ReturnDocument.AFTER)


def page_for_member(user_id, limit, kind=None, after=None):
    """A user's conversations by latest activity, newest first; `after` = (last_at, _id)."""
    query = {"member_ids": user_id}
    if kind:
        query["type"] = kind
    if after is not None:
        last_at, conv_id = after
        query["$or"] = [{"last_at": {"$lt": last_at}}, {"last_at": last_at, "_id": {"$lt": conv_id}}]
    fields = {f: 1 for f in LIST_FIELDS}
    fields[f"members.{user_id}"] = 1  # the caller's own role and markers, not every member's
    cursor = conversations().find(query, fields).sort(
        [("last_at", DESCENDING), ("_id", DESCENDING)]).limit(limit)
    return list(cursor)


def ids_for_member(user_id):
    """Every conversation `user_id` is a member of now (the `by_member_activity` index)."""
    return [doc["_id"] for doc in conversations().find({"member_ids": user_id}, {"_id": 1})]


def shared_with(user_id, small_group_max):
    """Everyone who shares a direct conversation, or a group of at most `small_group_max`
    members, with `user_id`."""
    peers = set()
    query = {"member_ids": user_id,
             "$or": [{"type": "direct"}, {"member_count": {"$lte": small_group_max}}]}
    for doc in conversations().find(query, {"member_ids": 1}):
        peers.update(doc["member_ids"])
    peers.discard(user_id)
    return peers


def shared(a, b):
    """Whether two users share any conversation."""
    return conversations().find_one({"member_ids": {"$all": [a, b]}}, {"_id": 1}) is not None
