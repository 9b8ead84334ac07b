"""The only code that touches the messages and conversations collections.

Every query here is served by an index declared in `ensure_indexes`.
"""
from pymongo import ASCENDING, DESCENDING, ReturnDocument
from pymongo.errors import DuplicateKeyError

from chatapp.extensions import mongo


def messages():
    return mongo.db.messages


def conversations():
    return mongo.db.conversations


def ensure_indexes():
    m = messages()
    m.create_index([("conv", ASCENDING), ("seq", ASCENDING)], unique=True, name="history")
    m.create_index([("sender", ASCENDING), ("client_id", ASCENDING)], unique=True,
                   partialFilterExpression={"client_id": {"$type": "string"}},
                   name="idempotent_send")
    m.create_index([("sender", ASCENDING), ("created_at", DESCENDING), ("_id", DESCENDING)],
                   name="by_sender_time")
    m.create_index([("receiver", ASCENDING), ("created_at", DESCENDING), ("_id", DESCENDING)],
                   name="by_receiver_time")
    m.create_index([("receiver", ASCENDING), ("read_at", ASCENDING), ("sender", ASCENDING)],
                   name="unread")
    conversations().create_index([("members", ASCENDING), ("last_at", DESCENDING)],
                                 name="conversations_by_member")


def conversation_key(a, b):
    """The same key for both directions of a pair (and for a user talking to themself)."""
    low, high = sorted((str(a), str(b)))
    return f"{low}:{high}"


def next_seq(conv, members, message_id, now):
    """Take the next number of a conversation atomically; records it as the latest activity."""
    doc = conversations().find_one_and_update(
        {"_id": conv},
        {"$inc": {"seq": 1}, "$set": {"last_at": now, "last_message_id": message_id},
         "$setOnInsert": {"members": sorted(set(members))}},
        projection={"seq": 1, "_id": 0},
        upsert=True,
        return_document=ReturnDocument.AFTER,
    )
    return doc["seq"]


def insert_message(doc):
    """Insert; returns False when (sender, client_id) already exists (a retry)."""
    try:
        messages().insert_one(doc)
    except DuplicateKeyError:
        if doc.get("client_id") is None:
            raise  # not a retry: (conv, seq) collided, the counter is broken
        return False
    return True


def find_message(message_id):
    return messages().find_one({"_id": message_id})


def find_by_client_id(sender, client_id):
    return messages().find_one({"sender": sender, "client_id": client_id})


def conversation_page(conv, limit, before_seq=None, after_seq=None):
    """Up to `limit` messages of a conversation, newest first (oldest-after-cursor with after)."""
    query = {"conv": conv}
    if after_seq is not None:
        query["seq"] = {"$gt": after_seq}
        page = list(messages().find(query).sort("seq", ASCENDING).limit(limit))
        page.reverse()
        return page
    if before_seq is not None:
        query["seq"] = {"$lt": before_seq}
    return list(messages().find(query).sort("seq", DESCENDING).limit(limit))


def user_page(user_id, limit, before=None, after=None):
    """A user's messages in every conversation, by (created_at, _id), newest first."""
    query = {"$or": [{"sender": user_id}, {"receiver": user_id}]}
    order = DESCENDING
    if before is not None:
        query = {"$and": [query, _position(before, "$lt")]}
    elif after is not None:
        query = {"$and": [query, _position(after, "$gt")]}
        order = ASCENDING
    cursor = messages().find(query).sort([("created_at", order), ("_id", order)]).limit(limit)
    page = list(cursor)
    if order == ASCENDING:
        page.reverse()
    return page


def _position(doc, op):
    t = doc["created_at"]
    return {"$or": [{"created_at": {op: t}}, {"created_at": t, "_id": {op: doc["_id"]}}]}


def newest_unmarked(conv, sender, receiver, field):
    """The newest of `sender`'s messages to `receiver` whose `field` is not set yet."""
    query = {"conv": conv, "sender": sender, "receiver": receiver, field: None}
    return messages().find_one(query, sort=[("seq", DESCENDING)])


def mark(conv, receiver, field, max_seq, when):
    """Set `field` (read_at / delivered_at) on the receiver's unmarked messages up to `max_seq`."""
    query = {"conv": conv, "receiver": receiver, field: None, "seq": {"$lte": max_seq}}
    result = messages().update_many(query, {"$set": {field: when}})
    return result.modified_count


def update_message(message_id, changes):
    return messages().find_one_and_update(
        {"_id": message_id}, {"$set": changes}, return_document=ReturnDocument.AFTER
    )


def user_conversations(user_id, limit):
    return list(conversations().find({"members": user_id})
                .sort("last_at", DESCENDING).limit(limit))


def find_messages(ids):
    return {doc["_id"]: doc for doc in messages().find({"_id": {"$in": list(ids)}})}


def unread_counts(user_id):
    """{sender id: count} of messages to `user_id` not read yet."""
    pipeline = [  # notes to yourself are never unread
        {"$match": {"receiver": user_id, "read_at": None, "sender": {"$ne": user_id}}},
        {"$group": {"_id": "$sender", "n": {"$sum": 1}}},
    ]
    return {row["_id"]: row["n"] for row in messages().aggregate(pipeline)}


def peers_of(user_id):
    """Everyone who shares a conversation with `user_id`."""
    peers = set()
    for doc in conversations().find({"members": user_id}, {"members": 1}):
        peers.update(doc["members"])
    peers.discard(user_id)
    return peers


def newest_in(conv):
    return messages().find_one({"conv": conv}, sort=[("seq", DESCENDING)])
