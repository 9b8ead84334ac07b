"""The change feed: record each version after its write, serve them in order.

Every change of a conversation takes the next number of its `version` counter, writes,
then records that number here (`record_message`/`record_event`). A message takes its
number with its `seq` and is written with it (`version`); a membership, marker or title
change takes its number first, then writes the change together with its feed entry into
the conversation document (`pending`), so that whatever was written can be recorded. Numbers are taken in order
but writes finish in any order (two processes, two senders), so a reader could see
version 8 recorded while 7 is still being written. **Visibility rule**: `changes` answers
only the unbroken run of recorded versions above `since`. A gap is waited for briefly
(SYNC_GAP_WAIT_MS); once its number has been taken for longer than SYNC_WRITE_DEADLINE
seconds, the reader settles it for good: it records the message written at that number if
there is one (its writer died before recording it), or the event whose entry the
conversation document holds, else a `void` record. Events (which, unlike messages, change
shared state: a title, a member, a marker) are written in the order of their numbers
(`events_v`), and a reader voiding a number fences it off in the same update that checks
no entry was written there, so an event is never written at a number readers have passed:
its writer takes a fresh one instead. The unique
`(conv, v)` index makes that final: a writer slower than the deadline finds its number
taken, takes a fresh one and records the change there (a message's `version` is raised to
it), so a change is never lost and a number, once visible, never gets anything below it.
"""
import random
import time
from datetime import datetime, timedelta, timezone

from flask import current_app

from chatapp.chat import store as message_store
from chatapp.chat.public import public_messages
from chatapp.conversations import service as conversations
from chatapp.conversations import store as conversation_store
from chatapp.errors import ValidationError
from chatapp.schemas import aware, iso
from chatapp.sync import store

FEED_MAX = 500
ATTEMPTS = 5  # fresh numbers tried by a writer whose numbers keep being voided
GAP_POLL = 0.02  # seconds between reads while waiting for a gap to fill
EVENT_FIELDS = ("user", "by", "up_to", "title", "role")
PENDING_KEEP = 50  # events kept in a conversation document after their own


def now():
    return datetime.now(timezone.utc)


def writing():
    """Test-only: a random pause between taking a version and writing it
    (SYNC_TEST_WRITE_DELAY_MS), so that writes really finish out of order. Production
    refuses the setting (config.py)."""
    delay_ms = current_app.config.get("SYNC_TEST_WRITE_DELAY_MS") or 0
    if delay_ms > 0:
        time.sleep(random.uniform(0, delay_ms) / 1000)


def record_message(conv_id, version, at, message_id):
    """A message created or changed at `version` (already written); returns the version
    it is recorded at (a fresh one when a reader voided `version` meanwhile)."""
    return _record(conv_id, version, at, {"kind": "message", "msg": message_id}, message_id)


def pending(version, kind, **fields):
    """The change feed's entry for a membership, marker or title change at `version` (a
    number taken beforehand): written into the conversation document by the change's own
    update (`pending_push`), so a reader can record it if the writer dies before it does."""
    entry = {"v": version, "type": kind}
    entry.update({k: v for k, v in fields.items() if v is not None})
    return entry


def pending_push(entries):
    """The `$push` that keeps `entries` in the conversation document, with the previous
    PENDING_KEEP (a reader settles a number within SYNC_WRITE_DEADLINE of its taking)."""
    return {"pending": {"$each": entries, "$slice": -(PENDING_KEEP + len(entries))}}


def record_event(conv_id, entry, at=None):
    """Record a change already written with its `pending` entry; returns its version."""
    body = {"kind": "event", **{k: v for k, v in entry.items() if k != "v"}}
    return _record(conv_id, entry["v"], at or now(), body)


def void(conv_id, version):
    """A number taken for a write that will not happen (e.g. a retry that lost its race)."""
    store.insert(conv_id, version, now(), {"kind": "void"})


def _record(conv_id, version, at, body, message_id=None):
    for _ in range(ATTEMPTS):
        if store.insert(conv_id, version, at, body):
            return version
        existing = store.find(conv_id, version)
        if existing is not None and existing["kind"] != "void":
            # A number belongs to one change: a reader found this one written (the message,
            # or the entry kept with the event) and recorded it first.
            return version
        # A reader voided the number (this write outlasted SYNC_WRITE_DEADLINE): the change
        # is announced again at a fresh number, above everything readers have seen.
        counter = conversation_store.take_version(conv_id)
        version, at = counter["version"], now()
        if message_id is not None:
            message_store.raise_version(message_id, version)
    raise RuntimeError(f"conversation {conv_id}: could not record a change in "
                       f"{ATTEMPTS} attempts")


def changes(caller_id, ref, since, limit):
    """A member: what changed after `since`, at most `limit` versions, by the rule above."""
    conv = conversations.member_of(caller_id, ref)
    conv_id, current = conv["_id"], conv.get("version", 0)
    if since > current:
        raise ValidationError(details={"since": [
            f"Above this conversation's version ({current})."]})
    limit = min(limit, FEED_MAX)
    visible = _visible(conv_id, since, min(current, since + limit), conv.get("version_at"))
    latest = {}
    events = []
    for record in visible:
        if record["kind"] == "message":
            latest.pop(record["msg"], None)
            latest[record["msg"]] = record["v"]  # a message comes once, at its latest change
        elif record["kind"] == "event":
            events.append(_event(record))
    docs = message_store.find_messages(latest) if latest else {}
    version = visible[-1]["v"] if visible else since
    return {"messages": public_messages([docs[m] for m in latest if m in docs]),
            "events": events, "version": version, "more": version < current}


def _visible(conv_id, since, upto, version_at):
    """The unbroken run of records since+1.. (at most `upto`), settling stale gaps."""
    deadline = timedelta(seconds=current_app.config["SYNC_WRITE_DEADLINE"])
    wait_until = time.monotonic() + current_app.config["SYNC_GAP_WAIT_MS"] / 1000
    visible, expected = [], since + 1
    while expected <= upto:
        later = None
        for record in store.after(conv_id, expected - 1, upto - expected + 1):
            if record["v"] != expected:
                later = record
                break
            visible.append(record)
            expected += 1
        if expected > upto:
            break
        # Version `expected` is not recorded: taken no later than the next recorded one
        # (or than the counter's last move, when nothing above it is recorded yet).
        taken_by = aware(later["at"] if later is not None else version_at)
        if taken_by is None or now() - taken_by > deadline:
            _settle(conv_id, expected, taken_by or now())
        elif time.monotonic() < wait_until:
            time.sleep(GAP_POLL)
        else:
            break  # still being written: the caller comes back (`more`)
    return visible


def _settle(conv_id, version, taken_by):
    """A number open past the deadline: the message or the event written at it (its writer
    died before recording it), else void (its write never happened). Whoever inserts first
    wins; the loser re-reads."""
    doc = message_store.find_by_version(conv_id, version)
    if doc is not None:
        body = {"kind": "message", "msg": doc["_id"]}
    elif conversation_store.fence_events(conv_id, version):
        body = {"kind": "void"}  # no event can be written at it any more
    else:
        entry = conversation_store.pending_entry(conv_id, version)
        body = {"kind": "event", **{k: v for k, v in entry.items() if k != "v"}}
    store.insert(conv_id, version, taken_by, body)


def _event(record):
    out = {"type": record["type"], "version": record["v"], "at": iso(record["at"])}
    for field in EVENT_FIELDS:
        if field in record:
            value = record[field]
            out[field] = value if isinstance(value, (str, int)) else str(value)
    return out
