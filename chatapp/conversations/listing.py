"""`GET /api/chat/conversations`: the caller's conversations by latest activity, paged.

Each entry keeps the 1:1 API's shape (`user` = the peer, `last_message`, `unread_count`)
and gains `conversation`; a group's `user` is null. Costs per entry: the page is read
through the `by_member_activity` index, the last messages in one query, users in one.
"""
import base64
import binascii
from datetime import datetime, timedelta, timezone

from bson import ObjectId
from bson.errors import InvalidId

from chatapp.chat import store as message_store
from chatapp.chat.public import public_message
from chatapp.conversations import store, upgrade
from chatapp.conversations.service import peer_of, present
from chatapp.errors import ValidationError
from chatapp.users import service as users
from chatapp.users import store as user_store

LIST_MAX = 200


def list_entries(caller_id, kind=None, limit=100, cursor=None):
    """Returns (entries, next_cursor or None)."""
    if not upgrade.done():
        upgrade.upgrade_all()  # a list must not miss a pair another process is upgrading
    limit = min(limit, LIST_MAX)
    docs = store.page_for_member(caller_id, limit + 1, kind, decode_cursor(cursor))
    more = len(docs) > limit
    docs = docs[:limit]
    last = message_store.find_messages(d["last_message_id"] for d in docs
                                       if d.get("last_message_id") is not None)
    peers = {d["_id"]: peer_of(d, caller_id) for d in docs if d["type"] == "direct"}
    profiles = {u["id"]: u for u in users.public_users(
        user_store.find_users(set(peers.values())), caller_id)} if peers else {}
    entries = []
    for doc in docs:
        entry = _entry(doc, caller_id, last, peers, profiles)
        if entry is not None:
            entries.append(entry)
    return entries, (encode_cursor(docs[-1]) if more else None)


def _entry(doc, caller_id, last, peers, profiles):
    message = last.get(doc.get("last_message_id"))
    if message is None and doc.get("last_message_id") is not None:
        message = message_store.newest_in(doc["_id"])  # the counter's message lost a retry race
    if doc["type"] == "direct" and (message is None or str(peers[doc["_id"]]) not in profiles):
        return None  # a direct conversation is listed from its first stored message
    last_message = public_message(message) if message else None
    mine = doc["members"][str(caller_id)]
    unread = message_store.count_unread(doc["_id"], caller_id, mine["read_up_to"])
    conversation = present(doc, caller_id, with_members=False, last=last_message, unread=unread)
    user = profiles[str(peers[doc["_id"]])] if doc["type"] == "direct" else None
    return {"user": user, "last_message": last_message, "unread_count": unread,
            "conversation": conversation}


EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def encode_cursor(doc):
    at = doc["last_at"]
    micros = (at.replace(tzinfo=at.tzinfo or timezone.utc) - EPOCH) // timedelta(microseconds=1)
    raw = f"{micros}.{doc['_id']}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor):
    """(last_at, _id) from an opaque cursor; 422 when it is not one of ours."""
    if cursor is None:
        return None
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        micros, conv_id = raw.split(".")
        return EPOCH + timedelta(microseconds=int(micros)), ObjectId(conv_id)
    except (ValueError, binascii.Error, InvalidId, UnicodeDecodeError, OverflowError, OSError):
        raise ValidationError(details={"cursor": ["Not a valid cursor."]}) from None
