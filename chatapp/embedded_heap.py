"""EMBEDDED_FREEZE_EVERY: the embedded store's documents out of the cyclic collector's walk.

The embedded store keeps every document in the server's heap: a message is ~24 objects the
collector tracks (its documents, their ObjectIds, the index keys and order entries that hold
them). CPython's full collection walks every tracked object, and runs each time the objects
that survived into its oldest generation grew by a quarter: on a server that keeps storing,
the pauses grow with the store (bench/README.md, login storm: 50-70 ms with ~4 500 messages
stored, each stalling every socket of the process; the relay's p99 rose +300 %).

Every `EMBEDDED_FREEZE_EVERY` new documents, this collects what is not frozen yet (what came
since the last time: a pause of a few milliseconds, bounded by the setting, not by the
store) and then freezes everything alive (`gc.freeze()`): the stored documents, and the
index entries filed for them, leave the collector's walk for good. Reference counting still
frees a frozen object the moment nothing holds it (a document mongomock drops, a counter
replaced), so the store's memory is what it was. What a freeze would keep for good is a
reference cycle alive at that instant that dies later: socket events' request contexts and
`python wsgi.py`'s connections were such cycles, and no longer are (chatapp/socket_context.py,
chatapp/eventlet_http.py); after a whole login storm (~9 freezes) the frozen heap holds no
more unreachable objects than start-up's own freeze leaves (20). Any other such cycle is kept
at most once per freeze, one freeze per `EMBEDDED_FREEZE_EVERY` stored documents: bounded by
the store's own cap (EMBEDDED_MAX_MESSAGES).

MongoDB (MONGO_DB_URL) keeps nothing in the heap: off there. 0 turns it off.
"""
import gc

_every = [0]
_stored = [0]


def configure(every):
    """Freeze after every `every` new documents (0: never); the process's last app decides."""
    _every[0] = max(0, int(every or 0))
    _stored[0] = 0


def stored():
    """One new document is held by the embedded store."""
    every = _every[0]
    if not every:
        return
    _stored[0] += 1
    if _stored[0] >= every:
        _stored[0] = 0
        gc.collect()  # nothing dead is frozen: only what is alive now leaves the walk
        gc.freeze()
