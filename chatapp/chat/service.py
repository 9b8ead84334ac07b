"""Messages: the one module that sends, edits, deletes, lists and marks them.

REST views (`routes.py`) and socket handlers (`events.py`) both call these
functions with the caller's id from the token; events go out from here, after
the write, through `chatapp.realtime`.
"""
from datetime import datetime, timezone

from bson import ObjectId
from flask import current_app

from chatapp import realtime
from chatapp.chat import store
from chatapp.errors import Conflict, Forbidden, NotFound, ValidationError
from chatapp.schemas import iso, parse_object_id
from chatapp.users import service as users
from chatapp.users import store as user_store

HISTORY_MAX = 200


def now():
    return datetime.now(timezone.utc)


def public_message(doc):
    """The contract's `Message` (keeps the original API's `sender`/`receiver`/`content`)."""
    message_id = str(doc["_id"])
    out = {
        "id": message_id,
        "_id": message_id,
        "seq": doc["seq"],
        "sender": str(doc["sender"]),
        "receiver": str(doc["receiver"]),
        "content": doc["content"],
        "timestamp": iso(doc["created_at"]),
        "delivered_at": iso(doc.get("delivered_at")),
        "read_at": iso(doc.get("read_at")),
        "edited_at": iso(doc.get("edited_at")),
        "deleted": bool(doc.get("deleted", False)),
    }
    if doc.get("client_id") is not None:
        out["client_id"] = doc["client_id"]
    return out


def check_content(content):
    """Stored as sent; 1..MAX_MESSAGE_LENGTH code points once surrounding space is trimmed."""
    limit = current_app.config["MAX_MESSAGE_LENGTH"]
    size = len(content.strip())
    if size == 0:
        raise ValidationError(details={"content": ["Must contain a non-whitespace character."]})
    if size > limit:
        raise ValidationError(details={"content": [f"At most {limit} characters."]})
    return content


def send_message(sender_id, data, origin_sid=None):
    """Store and deliver one message; returns (Message, created). A retry returns the first."""
    claimed = data.get("sender")
    if claimed is not None and claimed != str(sender_id):
        raise Forbidden("sender must be the authenticated user")
    content = check_content(data["content"])
    client_id = data.get("client_id")
    if client_id is not None:
        existing = store.find_by_client_id(sender_id, client_id)
        if existing is not None:
            return public_message(existing), False
    receiver_id = data["receiver"]
    if receiver_id != sender_id:
        users.require_user(receiver_id)
    message_id, created_at = ObjectId(), now()
    conv = store.conversation_key(sender_id, receiver_id)
    doc = {
        "_id": message_id, "conv": conv,
        "seq": store.next_seq(conv, [sender_id, receiver_id], message_id, created_at),
        "sender": sender_id, "receiver": receiver_id, "content": content,
        "created_at": created_at, "delivered_at": None, "read_at": None,
        "edited_at": None, "deleted": False,
    }
    if client_id is not None:
        doc["client_id"] = client_id
    if not store.insert_message(doc):
        # A concurrent retry with the same client_id won the race: answer with its message.
        return public_message(store.find_by_client_id(sender_id, client_id)), False
    message = public_message(doc)
    realtime.emit_to_users("chat message", message, [receiver_id, sender_id], skip_sid=origin_sid)
    return message, True


def _cursor_message(message_id, field, conv=None):
    """The message a cursor names; 422 when unknown or (with `conv`) of another conversation."""
    doc = store.find_message(message_id)
    if doc is None or (conv is not None and doc["conv"] != conv):
        raise ValidationError(details={field: ["Not a message of this conversation."]})
    return doc


def conversation_history(caller_id, a, b, limit=50, before=None, after=None):
    """Messages between `a` and `b`, newest first; the caller must be one of them.

    Returns (messages, next_cursor) where next_cursor is {"before"|"after": id} or None.
    """
    a_id, b_id = parse_object_id(a), parse_object_id(b)
    if a_id is None or b_id is None:
        raise NotFound("user not found")
    if caller_id not in (a_id, b_id):
        raise Forbidden("you can only read your own conversations")
    limit = min(limit, HISTORY_MAX)
    conv = store.conversation_key(a_id, b_id)
    before_seq = _cursor_message(before, "before", conv)["seq"] if before else None
    after_seq = _cursor_message(after, "after", conv)["seq"] if after else None
    page = store.conversation_page(conv, limit + 1, before_seq, after_seq)
    return _page(page, limit, forward=after is not None)


def user_history(caller_id, user_id, limit=50, before=None, after=None):
    """All of a user's messages, both directions, newest first; only your own id."""
    target = parse_object_id(user_id)
    if target is None:
        raise NotFound("user not found")
    if target != caller_id:
        raise Forbidden("you can only read your own messages")
    limit = min(limit, HISTORY_MAX)
    before_doc = _own_cursor(caller_id, before, "before")
    after_doc = _own_cursor(caller_id, after, "after")
    page = store.user_page(caller_id, limit + 1, before_doc, after_doc)
    return _page(page, limit, forward=after is not None)


def _own_cursor(caller_id, message_id, field):
    if message_id is None:
        return None
    doc = _cursor_message(message_id, field)
    if caller_id not in (doc["sender"], doc["receiver"]):
        raise ValidationError(details={field: ["Not one of your messages."]})
    return doc


def _page(page, limit, forward):
    """Trim the probe row and say where the next page starts (forward: newer, else older)."""
    if forward:
        # page is newest first; the probe row (if any) is the newest, at index 0
        more = len(page) > limit
        page = page[1:] if more else page
        next_cursor = {"after": str(page[0]["_id"])} if more else None
    else:
        more = len(page) > limit
        page = page[:limit]
        next_cursor = {"before": str(page[-1]["_id"])} if more else None
    return [public_message(doc) for doc in page], next_cursor


def conversations(caller_id, limit=500):
    """One entry per peer: public profile, last message, unread count; most recent first."""
    convs = store.user_conversations(caller_id, limit)
    if not convs:
        return []
    peers = {c["_id"]: _peer(c, caller_id) for c in convs}
    last = store.find_messages(c["last_message_id"] for c in convs)
    unread = store.unread_counts(caller_id)
    profiles = {u["id"]: u for u in users.public_users(
        user_store.find_users(set(peers.values())), caller_id)}
    out = []
    for c in convs:
        doc = last.get(c["last_message_id"]) or store.newest_in(c["_id"])
        peer = peers[c["_id"]]
        if doc is None or str(peer) not in profiles:
            continue  # the counter moved but its message was a lost retry race
        out.append({"user": profiles[str(peer)], "last_message": public_message(doc),
                    "unread_count": unread.get(peer, 0)})
    return out


def _peer(conv, caller_id):
    others = [m for m in conv["members"] if m != caller_id]
    return others[0] if others else caller_id


def mark_read(reader_id, peer, up_to=None):
    """Mark the peer's messages to the reader read (up to a message id); tells the peer."""
    return _mark(reader_id, peer, up_to, "read_at", "read",
                 lambda up, when: {"reader": str(reader_id), "up_to": up, "read_at": when})


def mark_delivered(receiver_id, peer, up_to):
    """The receiving client has the peer's messages up to `up_to`; tells the peer."""
    return _mark(receiver_id, peer, up_to, "delivered_at", "delivered",
                 lambda up, when: {"receiver": str(receiver_id), "up_to": up, "delivered_at": when})


def _mark(caller_id, peer, up_to, field, event, payload):
    peer_id = peer if isinstance(peer, ObjectId) else parse_object_id(peer)
    if peer_id is None:
        raise NotFound("user not found")
    if peer_id != caller_id:
        users.require_user(peer_id)
    conv = store.conversation_key(caller_id, peer_id)
    if up_to is not None:
        target = _cursor_message(up_to, "up_to", conv)
    else:  # everything so far: the event then names the newest message marked
        target = store.newest_unmarked(conv, peer_id, caller_id, field)
    if target is None:
        return 0
    when = now()
    updated = store.mark(conv, caller_id, field, target["seq"], when)
    if field == "read_at":
        store.mark(conv, caller_id, "delivered_at", target["seq"], when)
    if updated:
        realtime.emit_to_users(event, payload(str(target["_id"]), iso(when)), [peer_id])
    return updated


def edit_message(caller_id, message_id, content):
    """The sender replaces a message's content; both sides get `message updated`."""
    doc = _own_message(caller_id, message_id)
    if doc.get("deleted"):
        raise Conflict("a deleted message cannot be edited", details={"message": ["deleted"]})
    doc = store.update_message(doc["_id"], {"content": check_content(content), "edited_at": now()})
    message = public_message(doc)
    realtime.emit_to_users("message updated", message, [doc["sender"], doc["receiver"]])
    return message


def delete_message(caller_id, message_id):
    """The sender blanks a message (`deleted: true`); both sides get `message deleted`."""
    doc = _own_message(caller_id, message_id)
    if not doc.get("deleted"):
        doc = store.update_message(doc["_id"], {"content": "", "deleted": True})
    message = public_message(doc)
    realtime.emit_to_users("message deleted", message, [doc["sender"], doc["receiver"]])
    return message


def _own_message(caller_id, message_id):
    oid = parse_object_id(message_id)
    doc = store.find_message(oid) if oid else None
    if doc is None or caller_id not in (doc["sender"], doc["receiver"]):
        raise NotFound("message not found")
    if doc["sender"] != caller_id:
        raise Forbidden("only the sender may change a message")
    return doc
