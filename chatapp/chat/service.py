"""Messages: the one module that sends, edits, deletes, lists and marks them.

REST views (`routes.py`) and socket handlers (`events.py`) both call these
functions with the caller's id from the token; events go out from here, after
the write, through `chatapp.realtime`.
"""
import time
import unicodedata
from datetime import datetime, timedelta, timezone

from bson import ObjectId
from flask import current_app

from chatapp import metrics, realtime
from chatapp.chat import store
from chatapp.chat.public import public_message
from chatapp.conversations import service as conversations
from chatapp.conversations import store as conversation_store
from chatapp.errors import Conflict, Forbidden, NotFound, ValidationError
from chatapp.schemas import parse_object_id
from chatapp.sync import service as sync
from chatapp.users import service as users

HISTORY_MAX = 200
GAP_POLL = 0.02  # seconds between reads while a page waits for a seq being written


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
    if not store.insert_message(doc):
        # A concurrent retry with the same client_id won the race: answer with its message;
        # the numbers this attempt took stay unused (a `seq` gap, a void version).
        sync.void(counter["_id"], counter["version"])
        return public_message(store.find_by_client_id(sender_id, client_id)), False
    doc["version"] = sync.record_message(counter["_id"], counter["version"], taken_at,
                                         message_id)
    metrics.message_stored(group=receiver_id is None)
    message = public_message(doc)
    # The members at the moment the seq was taken: one emit to their user rooms.
    realtime.emit_to_users("chat message", message, recipients, skip_sid=origin_sid)
    return message, True


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


def _cursor_message(message_id, field, conv=None):
    """The message a cursor names; 422 when unknown or (with `conv`) of another conversation."""
    doc = store.find_message(message_id)
    if doc is None or conv is False or (conv is not None and doc["conv"] != conv):
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
    conv = conversations.find_direct(a_id, b_id)
    if conv is None:  # no message yet; cursors still have to name a message of the pair
        for field, cursor in (("before", before), ("after", after)):
            if cursor:
                _cursor_message(cursor, field, conv=False)
        return [], None
    return _conversation_page(conv["_id"], limit, before, after)


def conversation_messages(caller_id, ref, limit=50, before=None, after=None):
    """A member: a conversation's messages in `seq` order, newest first (1:1 cursor rules)."""
    conv = conversations.member_of(caller_id, ref)
    return _conversation_page(conv["_id"], limit, before, after)


def _conversation_page(conv_id, limit, before, after):
    limit = min(limit, HISTORY_MAX)
    before_seq = _cursor_message(before, "before", conv_id)["seq"] if before else None
    after_seq = _cursor_message(after, "after", conv_id)["seq"] if after else None
    if before_seq is not None:  # older than a message the client has: nothing held back
        page, held = store.conversation_page(conv_id, limit + 1, before_seq), False
    else:
        page, held = _written_run(conv_id, limit, after_seq)
    if held and after is not None and not page:
        return [], {"after": after}  # only held-back messages: ask again from the same place
    return _page(page, limit, forward=after is not None, held=held)


def _written_run(conv_id, limit, after_seq):
    """The newest page or an `after=` page, holding back the messages above a `seq` still
    being written (a concurrent send took it and has not stored it yet), so that a client
    that goes on with `after=<newest id it got>` cannot skip it. A seq gap is waited for up
    to SYNC_GAP_WAIT_MS; one whose next message is older than SYNC_WRITE_DEADLINE is a
    number that will never be written (its writer died): skipped. Returns (newest-first
    page, whether something was held back)."""
    config = current_app.config
    deadline = timedelta(seconds=config["SYNC_WRITE_DEADLINE"])
    wait_until = time.monotonic() + config["SYNC_GAP_WAIT_MS"] / 1000
    while True:
        page = store.conversation_page(conv_id, limit + 1, after_seq=after_seq)
        cut = _open_gap(page, after_seq, now() - deadline)
        if cut is None:
            return page, False
        if time.monotonic() >= wait_until:
            return [doc for doc in page if doc["seq"] < cut], True
        time.sleep(GAP_POLL)


def _open_gap(page, after_seq, settled_before):
    """The seq of the first message (oldest first) that sits above a young gap, or None."""
    previous = after_seq
    for doc in reversed(page):  # oldest first
        if previous is not None and doc["seq"] != previous + 1 \
                and _aware(doc["created_at"]) > settled_before:
            return doc["seq"]
        previous = doc["seq"]
    return None


def _aware(when):
    return when if when.tzinfo is not None else when.replace(tzinfo=timezone.utc)


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


def _page(page, limit, forward, held=False):
    """Trim the probe row and say where the next page starts (forward: newer, else older;
    `held`: newer messages exist that were held back)."""
    if forward:
        # page is newest first; the probe row (if any) is the newest, at index 0
        probe = len(page) > limit
        more = probe or held
        page = page[1:] if probe else page
        next_cursor = {"after": str(page[0]["_id"])} if more else None
    else:
        more = len(page) > limit
        page = page[:limit]
        next_cursor = {"before": str(page[-1]["_id"])} if more else None
    return [public_message(doc) for doc in page], next_cursor


def edit_message(caller_id, message_id, content):
    """The sender replaces a message's content; every member gets `message updated`."""
    doc, conv = _visible_message(caller_id, message_id)
    if doc["sender"] != caller_id:
        raise Forbidden("only the sender may change a message")
    if doc.get("deleted"):
        raise Conflict("a deleted message cannot be edited", details={"message": ["deleted"]})
    content = check_content(content)
    return _change(doc, conv, "message updated", {"content": content, "edited_at": now()})


def delete_message(caller_id, message_id):
    """The sender, or a group's owner/admin, blanks a message (`deleted: true`); every
    member gets `message deleted`, once."""
    doc, conv = _visible_message(caller_id, message_id)
    if doc["sender"] != caller_id and not (
            conv["type"] == "group"
            and conv["members"][str(caller_id)]["role"] in ("owner", "admin")):
        raise Forbidden("only the sender (or a group's owner or admin) may delete a message")
    if doc.get("deleted"):
        return public_message(doc)  # already deleted: nothing changes, nobody is told again
    return _change(doc, conv, "message deleted", {"content": "", "deleted": True})


def _change(doc, conv, event, changes):
    """Take the conversation's next version, write the change, record it in the feed, then
    tell every member."""
    counter = conversation_store.take_version(conv["_id"])
    at = now()
    changes["version"] = counter["version"]
    sync.writing()
    after = store.update_message(doc["_id"], changes)  # a later concurrent change may win
    if sync.record_message(conv["_id"], counter["version"], at, doc["_id"]) != counter["version"]:
        after = store.find_message(doc["_id"])  # re-announced at a fresh version
    message = public_message(after)
    realtime.emit_to_users(event, message, counter["member_ids"])
    return message


def _visible_message(caller_id, message_id):
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
