"""EMBEDDED_MAX_MESSAGES: the embedded store refuses new messages once it holds that many.

The embedded store keeps every message in the server's memory, with its change-feed record
and their index entries (bench/README.md prints the RSS per stored message: ~6 KB), so a
long demo would otherwise grow until the machine runs out. At the cap a send is refused
with 503 `unavailable` and says how to get a store without one; reads, edits, deletions
and everything else go on. MongoDB (MONGO_DB_URL) ignores the setting; 0 turns it off.

The count is the size of the messages collection as mongomock keeps it (a dict of its
documents: reading its length costs nothing, where count_documents would scan). Deleted
messages are blanked, not removed, so they still count. Sends checked at the same instant
may each pass: the store can end a few messages over the cap, never far.
"""
import logging

from flask import current_app

from chatapp.errors import Unavailable
from chatapp.extensions import mongo

log = logging.getLogger(__name__)
_warned = []  # the first refusal of the process is logged, not every one


def refuse_when_full():
    """Raise Unavailable when the embedded store holds EMBEDDED_MAX_MESSAGES messages."""
    cap = current_app.config.get("EMBEDDED_MAX_MESSAGES") or 0
    if cap <= 0 or not mongo.embedded or stored_messages() < cap:
        return
    message = (f"the embedded store is full (EMBEDDED_MAX_MESSAGES={cap}); set MONGO_DB_URL "
               "to use MongoDB")
    if not _warned:
        _warned.append(True)
        log.warning("%s: new messages are refused from now on", message)
    raise Unavailable(message)


def stored_messages():
    """The messages the embedded store holds (the collection's own size, no query)."""
    return len(mongo.collection("messages")._store._documents)
