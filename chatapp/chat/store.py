"""The only code that touches the messages collection (conversations: `chatapp.conversations`).

Every query here is served by an index declared in `ensure_indexes`.
"""
from pymongo import ASCENDING, DESCENDING, ReturnDocument
from pymongo.errors import DuplicateKeyError

from chatapp.extensions import mongo


def messages():
    return mongo.collection("messages")


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
    # The change feed settling a number whose writer died before recording it.
    m.create_index([("conv", ASCENDING), ("version", ASCENDING)], name="by_version")


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
    """A user's direct messages in every conversation, by (created_at, _id), newest first
    (group messages have no receiver: they are read per conversation)."""
    query = {"$or": [{"sender": user_id, "receiver": {"$ne": None}}, {"receiver": user_id}]}
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


def edit_content(message_id, content, edited_at, version):
    """An edit taken at `version`: applied unless the message is deleted or an edit with a
    higher version is already stored (two edits at once end in version order, whatever
    order they land in); the message after, or None when not applied. Reactions moving the
    message's `version` meanwhile do not stand in an edit's way (`content_version`)."""
    query = {"_id": message_id, "deleted": {"$ne": True},
             "$or": [{"content_version": {"$lt": version}},
                     {"content_version": {"$exists": False}}]}
    return messages().find_one_and_update(
        query, {"$set": {"content": content, "edited_at": edited_at, "content_version": version},
                "$max": {"version": version}},
        return_document=ReturnDocument.AFTER)


def blank(message_id, version):
    """A deletion taken at `version`: applied unless already deleted (a deletion wins over
    any edit or reaction, before or after it); the message after, or None."""
    return messages().find_one_and_update(
        {"_id": message_id, "deleted": {"$ne": True}},
        {"$set": {"content": "", "deleted": True, "reactions": {}, "reaction_keys": [],
                  "content_version": version},
         "$max": {"version": version}},
        return_document=ReturnDocument.AFTER)


def add_reaction(message_id, key, user_id, version, distinct_max):
    """Add a user's reaction unless it is there, the message is deleted, or the message
    already has `distinct_max` other emoji; the message after, or None."""
    query = {"_id": message_id, "deleted": {"$ne": True}, f"reactions.{key}": {"$ne": user_id},
             "$or": [{"reaction_keys": key},
                     {f"reaction_keys.{distinct_max - 1}": {"$exists": False}}]}
    return messages().find_one_and_update(
        query, {"$push": {f"reactions.{key}": user_id}, "$addToSet": {"reaction_keys": key},
                "$max": {"version": version}},
        return_document=ReturnDocument.AFTER)


def remove_reaction(message_id, key, user_id, version, _distinct_max=None):
    """Remove a user's reaction if it is there (and the message is not deleted); an emoji
    nobody uses any more is dropped. The message after, or None."""
    doc = messages().find_one_and_update(
        {"_id": message_id, "deleted": {"$ne": True}, f"reactions.{key}": user_id},
        {"$pull": {f"reactions.{key}": user_id}, "$max": {"version": version}},
        return_document=ReturnDocument.AFTER)
    if doc is not None and not doc["reactions"][key]:
        cleared = messages().find_one_and_update(
            {"_id": message_id, f"reactions.{key}": {"$size": 0}},
            {"$unset": {f"reactions.{key}": ""}, "$pull": {"reaction_keys": key}},
            return_document=ReturnDocument.AFTER)
        doc = cleared or find_message(message_id)
    return doc


def raise_version(message_id, version):
    """A change re-announced at a fresh `version` (its first number was voided)."""
    messages().update_one(_older(message_id, version), {"$set": {"version": version}})


def _older(message_id, version):
    """The message, if its stored version is below `version` (or it predates versions)."""
    return {"_id": message_id,
            "$or": [{"version": {"$lt": version}}, {"version": {"$exists": False}}]}


def find_by_version(conv, version):
    """The message whose latest change took `version` (messages written before versions
    existed count their `seq` as their version)."""
    doc = messages().find_one({"conv": conv, "version": version})
    if doc is None:
        doc = messages().find_one({"conv": conv, "seq": version, "version": {"$exists": False}})
    return doc


def find_messages(ids):
    return {doc["_id"]: doc for doc in messages().find({"_id": {"$in": list(ids)}})}


def count_unread(conv, user_id, read_up_to):
    """The others' messages above a member's read marker (notes to yourself are never unread)."""
    return messages().count_documents(
        {"conv": conv, "seq": {"$gt": read_up_to}, "sender": {"$ne": user_id}})


def count_from_others(conv, user_id, low_seq, high_seq):
    """The others' messages with low_seq < seq <= high_seq (what a marker move covered)."""
    return messages().count_documents(
        {"conv": conv, "seq": {"$gt": low_seq, "$lte": high_seq}, "sender": {"$ne": user_id}})


def newest_in(conv):
    return messages().find_one({"conv": conv}, sort=[("seq", DESCENDING)])


def oldest_in(conv):
    return messages().find_one({"conv": conv}, sort=[("seq", ASCENDING)])


def marked_up_to(conv, receiver, field):
    """The highest seq of the others' messages to `receiver` with `field` set (0: none)."""
    doc = messages().find_one({"conv": conv, "receiver": receiver, "sender": {"$ne": receiver},
                               field: {"$ne": None}}, sort=[("seq", DESCENDING)])
    return doc["seq"] if doc else 0


def move_conversation(old_conv, new_conv):
    """Re-key a conversation's messages (the upgrade of a 1:1-only database)."""
    return messages().update_many({"conv": old_conv}, {"$set": {"conv": new_conv}}).modified_count
