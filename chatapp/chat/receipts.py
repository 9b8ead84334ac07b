"""Read and delivered receipts: the members' markers, and `read_at`/`delivered_at` in 1:1.

A member's `read_up_to`/`delivered_up_to` (seq numbers) only move forward, each move one
atomic conditional update taking the conversation's next `version`, then recorded in the
change feed (`read`/`delivered` events; a `read` implies delivery up to the same message,
whose marker moves without a version of its own). In a direct
conversation the messages' own `read_at`/`delivered_at` are set too, as the 1:1 API
always did.
"""
from datetime import datetime, timezone

from bson import ObjectId
from flask import current_app

from chatapp import realtime
from chatapp.chat import store
from chatapp.conversations import service as conversations
from chatapp.conversations import store as conversation_store
from chatapp.errors import Conflict, NotFound, ValidationError
from chatapp.schemas import iso, parse_object_id
from chatapp.sync import service as sync
from chatapp.users import service as users

MARKERS = {"read_at": "read_up_to", "delivered_at": "delivered_up_to"}
MOVE_ATTEMPTS = 10


def mark_read(reader_id, ref, up_to=None):
    """Move the reader's read marker (up to a message id, default the newest); tells the
    other members with `read`. `ref`: a conversation id or a peer's user id. Returns
    {"updated": messages marked, "version": the change's version (absent: no move)}."""
    return _mark(reader_id, ref, up_to, "read_at", "read", "reader")


def mark_delivered(receiver_id, ref, up_to):
    """The receiving client has the conversation's messages up to `up_to`; tells the other
    members with `delivered` (direct and small groups only). Returns as `mark_read`."""
    return _mark(receiver_id, ref, up_to, "delivered_at", "delivered", "receiver")


def _conversation(caller_id, ref):
    """The conversation, or None for a known peer you have no messages with yet."""
    try:
        return conversations.member_of(caller_id, ref)
    except NotFound:
        peer_id = ref if isinstance(ref, ObjectId) else parse_object_id(ref)
        if peer_id is None:
            raise
        users.require_user(peer_id)  # a user without a conversation with you: nothing to mark
        return None


def _mark(caller_id, ref, up_to, field, event, who):
    conv = _conversation(caller_id, ref)
    if conv is None:
        if up_to is not None:
            raise ValidationError(details={"up_to": ["Not a message of this conversation."]})
        return {"updated": 0}
    target = _target(conv, caller_id, up_to, field)
    if target is None:
        return {"updated": 0}
    when = datetime.now(timezone.utc)
    updated = 0
    if conv["type"] == "direct":
        updated = store.mark(conv["_id"], caller_id, field, target["seq"], when)
        if field == "read_at":
            store.mark(conv["_id"], caller_id, "delivered_at", target["seq"], when)
    moved, entry = _move_marker(conv, caller_id, MARKERS[field], target["seq"],
                                sync_event=(event, target["_id"]))
    version = None
    if moved is not None:
        version = sync.record_event(conv["_id"], entry)
    if field == "read_at":  # reading implies delivery: the `read` change covers both markers
        _move_marker(conv, caller_id, "delivered_up_to", target["seq"])
    if conv["type"] == "group":
        if moved is None:
            return {"updated": 0}
        previous = moved["members"][str(caller_id)][MARKERS[field]]
        updated = store.count_from_others(conv["_id"], caller_id, previous, target["seq"])
    if updated or (conv["type"] == "group" and moved is not None):
        _tell(conv, caller_id, event, who, target, when, field, version)
    # The reader's own other tabs learn the move from this answer's version (the `read`
    # event goes to the others) or from the change feed.
    return {"updated": updated} if version is None else {"updated": updated, "version": version}


def _target(conv, caller_id, up_to, field):
    """The message a marker moves to: `up_to` (of this conversation, else 422), else the
    newest the caller has to mark."""
    if up_to is not None:
        doc = store.find_message(up_to)
        if doc is None or doc["conv"] != conv["_id"]:
            raise ValidationError(details={"up_to": ["Not a message of this conversation."]})
        return doc
    if conv["type"] == "direct":
        peer = conversations.peer_of(conv, caller_id)
        return store.newest_unmarked(conv["_id"], peer, caller_id, field)
    return store.newest_in(conv["_id"])


def _move_marker(conv, user_id, marker, seq, sync_event=None):
    """Forward only; returns (the document before the move, its feed entry), (None, None)
    when it did not move. With `sync_event` = (type, up_to message id) the move takes the
    conversation's next version first and writes its feed entry with it, in the order of
    the conversation's event numbers (`events_before`): refused when another event with a
    higher number landed first, it voids its number and tries again with a fresh one."""
    path = f"members.{user_id}.{marker}"
    for _ in range(MOVE_ATTEMPTS):
        if conv is None or conv["members"].get(str(user_id), {}).get(marker, 0) >= seq:
            return None, None  # already there (or no longer a member): no version for nothing
        if sync_event is None:
            return conversation_store.update(conv["_id"], {path: {"$lt": seq}},
                                             {"$set": {path: seq}}, before=True), None
        version = conversation_store.take_version(conv["_id"])["version"]
        entry = sync.pending(version, sync_event[0], user=user_id, up_to=sync_event[1])
        changes = {"$set": {path: seq, "events_v": version},
                   "$push": sync.pending_push([entry])}
        sync.writing()  # tests: writes landing out of the order of their numbers
        before = conversation_store.update(
            conv["_id"], {path: {"$lt": seq}, **conversation_store.events_before(version)},
            changes, before=True)
        if before is not None:
            return before, entry
        sync.void(conv["_id"], version)  # nothing was written at it
        conv = conversation_store.find_for_member(conv["_id"], user_id)
    raise Conflict("the conversation changed concurrently, try again")


def _tell(conv, caller_id, event, who, target, when, field, version):
    others = [m for m in conv["member_ids"] if m != caller_id]
    if not others:
        return
    if event == "delivered" and not conversations.small(conv, current_app.config):
        return  # large groups: stored, not relayed
    payload = {who: str(caller_id), "up_to": str(target["_id"]), field: iso(when),
               "conversation": str(conv["_id"])}
    if version is not None:
        payload["version"] = version
    realtime.emit_to_users(event, payload, others)
