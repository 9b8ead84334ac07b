"""Which server processes are alive, so presence stays right when one dies.

Presence is one document per socket, tagged with the process that holds it
(`presence.SERVER_ID`). A process killed, crashed or cut off never runs its disconnect
handlers, so its sockets would keep their users online forever. Each process that
holds sockets therefore writes a heartbeat (`servers` collection) every
PRESENCE_HEARTBEAT_SECONDS and sweeps: the sockets of a process whose heartbeat is
older than PRESENCE_STALE_SECONDS are disconnected in the store, exactly as a normal
disconnect would (last socket: `last_seen` stamped, peers told `online: false`).
PRESENCE_HEARTBEAT_SECONDS=0 turns this off (tests drive `beat` and `sweep` directly).
"""
import logging
import os
import threading
from datetime import datetime, timedelta, timezone

from flask import current_app

from chatapp.extensions import socketio
from chatapp.users import store as user_store

log = logging.getLogger(__name__)
_started_in = None  # the pid whose heartbeat runs: a forked worker starts its own
_lock = threading.Lock()


def server_id():
    from chatapp.chat import presence

    return presence.SERVER_ID


def start():
    """Beat once and start this process's heartbeat task, once; before a socket is recorded."""
    global _started_in
    interval = current_app.config["PRESENCE_HEARTBEAT_SECONDS"]
    if not interval or _started_in == os.getpid():
        return
    with _lock:
        if _started_in == os.getpid():
            return
        beat()
        _started_in = os.getpid()
    socketio.start_background_task(_run, current_app._get_current_object(), interval)


def _run(app, interval):
    while True:
        socketio.sleep(interval)
        with app.app_context():
            try:
                beat()
                sweep()
            except Exception:  # noqa: BLE001 - database down: the next beat tries again
                log.warning("presence heartbeat failed", exc_info=True)


def beat(now=None):
    user_store.beat_server(server_id(), now or datetime.now(timezone.utc))


def sweep(now=None):
    """Forget the sockets of processes whose heartbeat stopped; returns those processes."""
    from chatapp.chat import presence

    now = now or datetime.now(timezone.utc)
    cutoff = now - timedelta(seconds=current_app.config["PRESENCE_STALE_SECONDS"])
    stale = [server for server in user_store.stale_servers(cutoff) if server != server_id()]
    for server in stale:
        log.warning("server %s stopped its heartbeat: forgetting its sockets", server)
        for sid, user_id in user_store.server_sockets(server):
            presence.socket_disconnected(user_id, sid)
        user_store.forget_server(server)
    return stale
