"""Messages: the one module that sends, edits, deletes, lists and marks them.

REST views (`routes.py`) and socket handlers (`events.py`) both call these
functions with the caller's id from the token; events go out from here, after
the write, through `chatapp.realtime`.
"""
import unicodedata
from datetime import datetime, timezone

from bson import ObjectId
from flask import current_app

from chatapp import metrics, realtime
from chatapp.attachments import service as attachments
from chatapp.blocks import service as blocks
from chatapp.chat import store
from chatapp.chat.public import public_message
from chatapp.conversations import service as conversations
from chatapp.conversations import store as conversation_store
from chatapp.embedded_capacity import refuse_when_full
from chatapp.errors import Conflict, Forbidden, NotFound, ValidationError
from chatapp.schemas import parse_object_id
from chatapp.sync import service as sync
from chatapp.users import service as users


def now():
    return datetime.now(timezone.utc)


# Letters of no width: blank to a reader, though Unicode files them as letters or symbols.
INVISIBLE = frozenset("\u115f\u1160\u3164\uffa0\u2800\u180e\u17b4\u17b5")
VISIBLE_CATEGORIES = ("L", "N", "P", "S")


def visible(text):
    """True when some character would show: a letter, digit, punctuation or symbol (not
    whitespace, a format or control character, a lone combining mark, or a filler)."""
    return any(unicodedata.category(ch)[0] in VISIBLE_CATEGORIES and ch not in INVISIBLE
               for ch in text)


def check_content(content):
    """Stored exactly as sent: at most MAX_MESSAGE_LENGTH code points as sent (surrounding
    whitespace included), with at least one visible character."""
    limit = current_app.config["MAX_MESSAGE_LENGTH"]
    if len(content) > limit:
        raise ValidationError(details={"content": [f"At most {limit} characters."]})
    if not visible(content):
        raise ValidationError(details={"content": ["Must contain a visible character."]})
    return content


def send_message(sender_id, data, origin_sid=None):
    """Store and deliver one message to a user (`receiver`) or a conversation
    (`conversation`); returns (Message, created). A retry returns the first."""
    claimed = data.get("sender")
    if claimed is not None and claimed != str(sender_id):
        raise Forbidden("sender must be the authenticated user")
    content = check_content(data["content"])
    client_id = data.get("client_id")
    if client_id is not None:
        existing = store.find_by_client_id(sender_id, client_id)
        if existing is not None:
            return public_message(existing), False
    reply_to = _reply_target(sender_id, data)
    files = attachments.for_send(sender_id, data.get("attachments"))  # 422 before any number
    refuse_when_full()  # EMBEDDED_MAX_MESSAGES: 503 before any number is taken
    message_id, created_at = ObjectId(), now()
    counter, receiver_id, recipients = _take_seq(sender_id, data, message_id, created_at)
    taken_at = now()  # no later than the next version's taking: the feed's clock
    sync.writing()
    doc = {
        "_id": message_id, "conv": counter["_id"], "seq": counter["seq"],
        "version": counter["version"], "sender": sender_id, "receiver": receiver_id,
        "content": content, "created_at": created_at, "delivered_at": None, "read_at": None,
        "edited_at": None, "deleted": False,
    }
    if client_id is not None:
        doc["client_id"] = client_id
    if reply_to is not None:
        doc["reply_to"] = reply_to
    if files:
        doc["attachments"] = files
    if not store.insert_message(doc):
        # A concurrent retry with the same client_id won the race: answer with its message;
        # the numbers this attempt took stay unused (a `seq` gap, a void version), said so
        # at once so that no reader waits for them.
        conversation_store.mark_unused_seq(counter["_id"], counter["seq"])
        sync.void(counter["_id"], counter["version"])
        return public_message(store.find_by_client_id(sender_id, client_id)), False
    if files:  # readable by the conversation's members from now on, no longer an orphan
        attachments.attached(files, counter["_id"], message_id)
    doc["version"] = sync.record_message(counter["_id"], counter["version"], taken_at,
                                         message_id)
    metrics.message_stored(group=receiver_id is None)
    message = public_message(doc)
    # The members at the moment the seq was taken: one emit to their user rooms.
    realtime.emit_to_users("chat message", message, recipients, skip_sid=origin_sid)
    return message, True


def _reply_target(sender_id, data):
    """The id of the message a send answers: one of the conversation the send goes to
    (its membership is checked when the seq is taken), else 422."""
    original_id = data.get("reply_to")
    if original_id is None:
        return None
    original = store.find_message(original_id)
    if original is not None:
        if original.get("receiver") is not None:  # direct: the same pair
            peer = data.get("receiver")
            if peer is None:
                ref = data["conversation"]
                peer = ref if isinstance(ref, ObjectId) else parse_object_id(ref)
            if {original["sender"], original["receiver"]} == {sender_id, peer}:
                return original_id
        ref = data.get("conversation")
        conv_id = ref if isinstance(ref, ObjectId) else parse_object_id(ref) if ref else None
        if conv_id is not None and original["conv"] == conv_id:
            return original_id
    if data.get("conversation") is not None:
        # Only a member learns that a message is not of this conversation: anyone else gets
        # the 404 the send itself would answer.
        conversations.member_of(sender_id, data["conversation"])
    raise ValidationError(details={"reply_to": ["Not a message of this conversation."]})


def _take_seq(sender_id, data, message_id, when):
    """The next seq of the conversation the send names, taken only while the sender belongs
    to it (one conditional update, which is also the membership check); returns (counter,
    receiver id or None in a group, the members to deliver to: those of that instant)."""
    if data.get("receiver") is not None:
        return _take_direct_seq(sender_id, data["receiver"], message_id, when)
    ref = data["conversation"]
    conv_id = ref if isinstance(ref, ObjectId) else parse_object_id(ref)
    counter = conversation_store.take_seq(conv_id, sender_id, message_id, when) \
        if conv_id is not None else None
    if counter is None:  # a peer's user id names a direct conversation too; else 404
        conv = conversations.member_of(sender_id, ref)
        if conv["type"] == "direct":
            return _take_direct_seq(sender_id, conversations.peer_of(conv, sender_id),
                                    message_id, when)
        counter = conversation_store.take_seq(conv["_id"], sender_id, message_id, when)
        if counter is None:  # removed again meanwhile
            raise NotFound("conversation not found")
    if counter["type"] == "direct":
        peer = conversations.peer_of(counter, sender_id)
        return counter, peer, [peer, sender_id]
    return counter, None, counter["member_ids"]


def _take_direct_seq(sender_id, receiver_id, message_id, when):
    if receiver_id != sender_id:
        users.require_user(receiver_id)
    counter = conversations.take_direct_seq(sender_id, receiver_id, message_id, when)
    # A direct conversation's members never change: the pair itself.
    return counter, receiver_id, [receiver_id, sender_id]


def edit_message(caller_id, message_id, content):
    """The sender replaces a message's content; every member gets `message updated`."""
    doc, conv = visible_message(caller_id, message_id)
    if doc["sender"] != caller_id:
        raise Forbidden("only the sender may change a message")
    refuse_if_blocked(caller_id, conv)
    if doc.get("deleted"):
        raise Conflict("a deleted message cannot be edited", details={"message": ["deleted"]})
    content = check_content(content)
    edited_at = now()
    after = _change(doc, conv, "message updated",
                    lambda version: store.edit_content(doc["_id"], content, edited_at, version))
    if after["deleted"]:  # deleted meanwhile: the deletion wins
        raise Conflict("a deleted message cannot be edited", details={"message": ["deleted"]})
    return after


def delete_message(caller_id, message_id):
    """The sender, or a group's owner/admin, blanks a message (`deleted: true`); every
    member gets `message deleted`, once."""
    doc, conv = visible_message(caller_id, message_id)
    if doc["sender"] != caller_id and not (
            conv["type"] == "group"
            and conv["members"][str(caller_id)]["role"] in ("owner", "admin")):
        raise Forbidden("only the sender (or a group's owner or admin) may delete a message")
    if doc.get("deleted"):
        return public_message(doc)  # already deleted: nothing changes, nobody is told again
    message = _change(doc, conv, "message deleted",
                      lambda version: store.blank(doc["_id"], version))
    if doc.get("attachments"):
        attachments.detached(doc["_id"])  # unreachable through this message from now on
    return message


def _change(doc, conv, event, write):
    """Take the conversation's next version, `write(version)` the change, record it in the
    feed, then tell every member. A write that did not apply (a concurrent deletion, or a
    later edit already stored) uses no version, tells nobody, and answers the message as
    it is."""
    counter = conversation_store.take_version(conv["_id"])
    at = now()
    sync.writing()
    after = write(counter["version"])
    if after is None:
        sync.void(conv["_id"], counter["version"])
        return public_message(store.find_message(doc["_id"]))
    if sync.record_message(conv["_id"], counter["version"], at, doc["_id"]) != counter["version"]:
        after = store.find_message(doc["_id"])  # re-announced at a fresh version
    message = public_message(after)
    realtime.emit_to_users(event, message, counter["member_ids"])
    return message


def refuse_if_blocked(caller_id, conv):
    """403 in a direct conversation where one of the pair blocked the other: edits and
    reactions would reach the blocker as a send does (deleting your own stays allowed)."""
    if conv["type"] == "direct" and conv.get("blockers"):
        blocks.refuse(caller_id, conv["blockers"])


def visible_message(caller_id, message_id):
    """A message and its conversation, if the caller is a member of it now; else 404."""
    oid = parse_object_id(message_id)
    doc = store.find_message(oid) if oid else None
    if doc is None:
        raise NotFound("message not found")
    try:
        conv = conversations.member_of(caller_id, doc["conv"])
    except NotFound:
        raise NotFound("message not found") from None
    return doc, conv
