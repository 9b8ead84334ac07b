"""Reading messages: a conversation's pages (by `seq`) and a user's own (by time).

The newest page and `after=` pages never show a message above a `seq` still being written,
so a client that continues with `after=<newest id it got>` never skips one.
"""
import time
from datetime import datetime, timedelta, timezone

from flask import current_app

from chatapp.chat import store
from chatapp.chat.public import public_messages
from chatapp.conversations import service as conversations
from chatapp.conversations import store as conversation_store
from chatapp.errors import Forbidden, NotFound, ValidationError
from chatapp.schemas import aware, parse_object_id

HISTORY_MAX = 200
GAP_POLL = 0.02  # seconds between reads while a page waits for a seq being written


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
    """The newest page or an `after=` page, never showing a message above a `seq` still
    being written (a concurrent send took it and has not stored it yet), so that a client
    that goes on with `after=<newest id it got>` cannot skip it. A gap is settled when the
    number is marked unused (its send lost a client_id race) or when the message above it is
    older than SYNC_WRITE_DEADLINE (its writer died): skipped. The newest page waits until
    its gaps are settled (a write takes milliseconds; at most the deadline): it is complete.
    An `after=` page waits up to SYNC_GAP_WAIT_MS, then answers what comes before the gap and
    says so (its next link asks again). Returns (newest-first page, whether something was
    held back)."""
    config = current_app.config
    deadline = timedelta(seconds=config["SYNC_WRITE_DEADLINE"])
    wait = config["SYNC_GAP_WAIT_MS"] / 1000 if after_seq is not None \
        else config["SYNC_WRITE_DEADLINE"] + 1
    wait_until = time.monotonic() + wait
    unused = None  # read once a gap is seen (rare): the numbers known never to be written
    while True:
        page = store.conversation_page(conv_id, limit + 1, after_seq=after_seq)
        settled_before = datetime.now(timezone.utc) - deadline
        cut = _open_gap(page, after_seq, settled_before, unused or set())
        if cut is not None:
            unused = conversation_store.unused_seqs(conv_id)
            cut = _open_gap(page, after_seq, settled_before, unused)
        if cut is None:
            return page, False
        if time.monotonic() >= wait_until:
            return [doc for doc in page if doc["seq"] < cut], True
        time.sleep(GAP_POLL)


def _open_gap(page, after_seq, settled_before, unused):
    """The seq of the first message (oldest first) that sits above a gap still open, or
    None."""
    previous = after_seq
    for doc in reversed(page):  # oldest first
        if previous is not None and doc["seq"] != previous + 1 \
                and aware(doc["created_at"]) > settled_before \
                and not unused.issuperset(range(previous + 1, doc["seq"])):
            return doc["seq"]
        previous = doc["seq"]
    return None


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
    return public_messages(page), next_cursor
