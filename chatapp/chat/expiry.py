"""Sockets close when their access token expires, whether or not they send anything.

Each process watches the sockets it holds: a heap of (exp, sid) and one background task
that closes each socket at its token's `exp` (within `SWEEP_SECONDS`). An event that
arrives between `exp` and the sweep is still refused `token_expired` by the handler.
Revoked logins close their sockets at revocation (`chatapp.users.service`).
"""
import heapq
import os
import threading
import time

from chatapp.extensions import socketio

SWEEP_SECONDS = 0.5
_heap = []
_lock = threading.Lock()
_started_in = None


def watch(sid, exp):
    """Close socket `sid` (on this process) at `exp` (seconds since the epoch)."""
    _start()
    with _lock:
        heapq.heappush(_heap, (exp, sid))


def _start():
    global _started_in
    if _started_in == os.getpid():
        return
    with _lock:
        if _started_in == os.getpid():
            return
        _heap.clear()  # a forked process does not hold its parent's sockets
        _started_in = os.getpid()
    socketio.start_background_task(_sweep)


def due(now=None):
    """Pop the sockets whose token has expired."""
    now = time.time() if now is None else now
    out = []
    with _lock:
        while _heap and _heap[0][0] <= now:
            out.append(heapq.heappop(_heap)[1])
    return out


def _sweep():
    while True:
        socketio.sleep(SWEEP_SECONDS)
        for sid in due():
            try:
                socketio.server.disconnect(sid, namespace="/")  # gone already: a no-op
            except Exception:  # noqa: BLE001 - one socket's close never stops the sweep
                continue
