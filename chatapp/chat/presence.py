"""Presence: who is online, announced to the users who share a conversation with them.

Presence lives in shared storage (one document per socket, `chatapp.users.store`), so
every process agrees on who is online. Announcements are claimed in the user's own
document (`presence_announced`), so two processes connecting or disconnecting one user at
the same instant send one `online` and one `offline`, never two of either; and an
`offline` waits `PRESENCE_DAMPING_SECONDS`, so a user flapping (a phone on a bad network, a
reconnect loop) is announced once, not at every flap. Typing: `chatapp.chat.typing`.
"""
import logging
import os
import secrets
import socket
from datetime import datetime, timezone

from flask import current_app

from chatapp import realtime
from chatapp.chat import heartbeat
from chatapp.conversations import store as conversation_store
from chatapp.errors import DB_DOWN_ERRORS, RateLimited
from chatapp.extensions import socketio
from chatapp.schemas import iso
from chatapp.users import store as user_store

# Tags this process's sockets for the heartbeat sweep (chatapp.chat.heartbeat). The random
# part keeps a restarted process that reuses a pid (containers) from reviving a dead one's.
SERVER_ID = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"

log = logging.getLogger(__name__)
# A socket that closed while the database was down is forgotten once it answers again.
FORGET_RETRY_SECONDS, FORGET_RETRY_ATTEMPTS = 2.0, 300


def socket_connected(user_id, sid, claims, address=None):
    """Record the socket within the connection caps (else `rate_limited`); the user's first
    socket turns them online for their peers."""
    heartbeat.start()  # this process's heartbeat exists before its first socket is recorded
    user_store.add_socket(sid, user_id, SERVER_ID, claims["jti"], claims["sid"], address)
    # Counted after the insert: two connects racing for the last place cannot both get it.
    count = user_store.count_sockets(user_id)
    refusal = _over_cap(count, address)
    if refusal:
        user_store.remove_socket(sid)
        raise RateLimited(refusal)
    if user_store.claim_presence(user_id, True):  # only the first socket's process claims it
        _announce(user_id, True, None)


def _over_cap(user_count, address):
    per_user = current_app.config["MAX_SOCKETS_PER_USER"]
    per_address = current_app.config["MAX_SOCKETS_PER_ADDRESS"]
    if per_user and user_count > per_user:
        return f"too many connections for this user (at most {per_user})"
    if per_address and address and user_store.count_sockets_from(address) > per_address:
        return f"too many connections from this address (at most {per_address})"
    return None


def socket_disconnected(user_id, sid):
    """Forget the socket; the user's last one turns them offline and stamps last_seen.

    With the database down the record would outlive the socket (the user would stay
    online): retry in the background until it answers.
    """
    try:
        _forget_socket(user_id, sid)
    except DB_DOWN_ERRORS as exc:
        log.warning("database unavailable at disconnect of %s, will retry: %s", sid, exc)
        socketio.start_background_task(_retry_forget, current_app._get_current_object(),
                                       user_id, sid)


def _retry_forget(app, user_id, sid):
    for _ in range(FORGET_RETRY_ATTEMPTS):
        socketio.sleep(FORGET_RETRY_SECONDS)
        try:
            with app.app_context():
                return _forget_socket(user_id, sid)
        except DB_DOWN_ERRORS:
            continue
    log.error("gave up forgetting socket %s of user %s: database still unavailable", sid, user_id)


def _forget_socket(user_id, sid):
    user_store.remove_socket(sid)
    if user_store.count_sockets(user_id) == 0:
        user_store.set_last_seen(user_id, datetime.now(timezone.utc))
        damping = current_app.config["PRESENCE_DAMPING_SECONDS"]
        if damping:
            socketio.start_background_task(_announce_offline_later,
                                           current_app._get_current_object(), user_id, damping)
        else:
            _announce_offline(user_id)


def _announce_offline_later(app, user_id, delay):
    """`offline` only if the user is still without a socket after `delay` seconds."""
    socketio.sleep(delay)
    with app.app_context():
        try:
            _announce_offline(user_id)
        except DB_DOWN_ERRORS as exc:
            log.warning("database unavailable, offline of %s not announced: %s", user_id, exc)


def _announce_offline(user_id):
    if user_store.count_sockets(user_id) == 0 and user_store.claim_presence(user_id, False):
        seen = user_store.find_user(user_id)
        _announce(user_id, False, iso(seen.get("last_seen") if seen else None))


def _announce(user_id, online, last_seen):
    peers = conversation_store.shared_with(user_id, current_app.config["SMALL_GROUP_MAX"])
    if peers:
        realtime.emit_to_users("presence", {"user": str(user_id), "online": online,
                                            "last_seen": last_seen}, peers)
