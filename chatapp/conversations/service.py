"""Conversations: the one access check, the `Conversation` shape, finding a pair's direct one.

Every path that reads or writes inside a conversation (REST and sockets, messages,
markers, membership) calls `member_of`, which reads the membership at that instant and
returns the conversation or raises `NotFound`: strangers and former members cannot tell
a conversation they are not in from one that does not exist. Writes that depend on
membership or a role also repeat the condition in their update (see `members.py`), so
nothing changes for someone removed between the read and the write.
"""
from datetime import datetime, timezone

from bson import ObjectId

from chatapp import realtime
from chatapp.blocks import service as blocks
from chatapp.chat import store as message_store
from chatapp.chat.public import public_message
from chatapp.conversations import store, upgrade
from chatapp.errors import NotFound
from chatapp.schemas import iso, parse_object_id
from chatapp.users import service as users
from chatapp.users import store as user_store


def now():
    return datetime.now(timezone.utc)


def member_of(user_id, ref):
    """The conversation `ref` names (its id, or for a direct conversation the peer's user
    id) if `user_id` is one of its members now; else NotFound."""
    conversation_id = ref if isinstance(ref, ObjectId) else parse_object_id(ref)
    if conversation_id is None:
        raise NotFound("conversation not found")
    doc = store.find_for_member(conversation_id, user_id)
    if doc is not None and doc.get("legacy"):
        upgrade.upgrade_pair(doc["pair"])
    if doc is None:  # maybe a peer's user id
        doc = find_direct(user_id, conversation_id)
    if doc is None:
        raise NotFound("conversation not found")
    return doc


def find_direct(a, b):
    """The direct conversation of a pair, or None (it exists from its first message)."""
    pair = store.pair_key(a, b)
    upgrade.upgrade_pair_if_needed(pair)
    doc = store.find_direct(pair)
    if doc is not None and doc.get("legacy"):
        upgrade.upgrade_pair(pair)
    return doc


def take_direct_seq(sender_id, receiver_id, message_id, when):
    """The next seq of the pair's conversation, created atomically with the first message
    (two first messages racing in two processes make one conversation: the unique `pair`
    index lets one upsert insert and turns the other into an update)."""
    pair = store.pair_key(sender_id, receiver_id)
    upgrade.upgrade_pair_if_needed(pair)
    changes, inc = {"last_at": when, "last_message_id": message_id}, {"seq": 1, "version": 1}
    doc = store.bump_direct(pair, changes, inc)  # every message but a pair's first
    if doc is not None:
        return doc
    existing = store.find_direct(pair)
    if existing is not None and existing.get("blockers"):
        blocks.refuse(sender_id, existing["blockers"])
    if existing is None:  # the pair's first message: the blocks are asked once
        blocks.check_can_message(sender_id, receiver_id)
    ids = sorted({sender_id, receiver_id})
    on_insert = {
        "_id": ObjectId(), "type": "direct", "title": None, "created_by": sender_id,
        "created_at": when, "member_ids": ids, "member_count": len(ids),
        "members": {str(u): store.member_entry("member", when) for u in ids},
    }
    return store.upsert_direct(pair, on_insert, changes, inc, projection=store.COUNTER_FIELDS)


def member_ids(doc):
    return list(doc["member_ids"])


def small(doc, app_config):
    """Live extras (presence, typing, delivered relays) are for direct and small groups."""
    return doc["type"] == "direct" or doc["member_count"] <= app_config["SMALL_GROUP_MAX"]


def peer_of(doc, user_id):
    """A direct conversation's other member (yourself, in your notes to yourself)."""
    others = [m for m in doc["member_ids"] if m != user_id]
    return others[0] if others else user_id


def present(doc, viewer_id=None, with_members=True, last=None, unread=None):
    """The contract's `Conversation`. Without a viewer (an event to every member), the
    viewer's own fields (`my_role`, `unread_count`, `read_up_to`) are left out."""
    out = {
        "id": str(doc["_id"]), "type": doc["type"], "title": doc.get("title"),
        "created_by": str(doc["created_by"]), "created_at": iso(doc["created_at"]),
        "member_count": doc["member_count"],
    }
    if with_members:
        out["members"] = present_members(doc, viewer_id)
    mine = doc["members"].get(str(viewer_id)) if viewer_id is not None and "members" in doc \
        else None
    if viewer_id is not None:
        out["my_role"] = mine["role"] if mine else None
    out["version"] = doc.get("version", 0)
    if last is None and doc.get("last_message_id") is not None:
        found = message_store.find_message(doc["last_message_id"]) \
            or message_store.newest_in(doc["_id"])
        last = public_message(found) if found else None
    out["last_message"] = last
    if viewer_id is not None:
        read_up_to = mine["read_up_to"] if mine else 0
        out["unread_count"] = unread if unread is not None else \
            message_store.count_unread(doc["_id"], viewer_id, read_up_to)
        out["read_up_to"] = read_up_to
    return out


def present_members(doc, viewer_id=None):
    """Members in the order they joined, each with their public profile and markers."""
    entries = sorted(doc["members"].items(), key=lambda kv: (kv[1]["joined_at"], kv[0]))
    ids = [ObjectId(uid) for uid, _ in entries]
    profiles = {u["id"]: u for u in users.public_users(user_store.find_users(ids), viewer_id)}
    return [{"user": profiles[uid], "role": m["role"], "joined_at": iso(m["joined_at"]),
             "read_up_to": m["read_up_to"], "delivered_up_to": m["delivered_up_to"]}
            for uid, m in entries if uid in profiles]


def get_conversation(caller_id, ref):
    """A member: the Conversation with its members."""
    return present(member_of(caller_id, ref), caller_id)


def emit_change(kind, doc, by, version, user=None, extra_to=()):
    """`conversation` {type, conversation, user?, by, version} to every member (and to
    `extra_to`, e.g. the member just removed): one emit to their user rooms."""
    event = {"type": kind, "conversation": present(doc), "by": str(by), "version": version}
    if user is not None:
        event = {"type": kind, "conversation": event["conversation"], "user": str(user),
                 "by": str(by), "version": version}
    recipients = set(doc["member_ids"]) | set(extra_to)
    if recipients:
        realtime.emit_to_users("conversation", event, recipients)
