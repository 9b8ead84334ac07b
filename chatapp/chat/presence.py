"""Presence: who is online, announced to the users who share a conversation with them.

Presence lives in shared storage (one document per socket, `chatapp.users.store`), so
every process agrees on who is online. Announcements are claimed in the user's own
document (`presence_announced`), so two processes connecting or disconnecting one user at
the same instant send one `online` and one `offline`, never two of either; the sockets are
counted again after every claim, so a connect and a disconnect racing on two processes never
leave a user announced online with no socket, nor offline with one (`_settle`); and an
`offline` waits `PRESENCE_DAMPING_SECONDS`, so a user flapping (a phone on a bad network, a
reconnect loop) is announced once, not at every flap. A user's presence never reaches the
users they blocked (`chatapp.blocks`). Typing: `chatapp.chat.typing`.
"""
import logging
import os
import secrets
import socket
from datetime import datetime, timezone

from flask import current_app

from chatapp import realtime
from chatapp.blocks import store as block_store
from chatapp.chat import heartbeat
from chatapp.conversations import store as conversation_store
from chatapp.errors import DB_DOWN_ERRORS, RateLimited
from chatapp.extensions import socketio
from chatapp.schemas import iso
from chatapp.users import service as users
from chatapp.users import store as user_store

# Tags this process's sockets for the heartbeat sweep (chatapp.chat.heartbeat). The random
# part keeps a restarted process that reuses a pid (containers) from reviving a dead one's.
SERVER_ID = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"

log = logging.getLogger(__name__)
# A socket that closed while the database was down is forgotten once it answers again.
FORGET_RETRY_SECONDS, FORGET_RETRY_ATTEMPTS = 2.0, 300
# Each round of _settle past the first follows another process's change of the same user.
SETTLE_ROUNDS = 100


def socket_connected(user_id, sid, claims, address=None):
    """Record the socket within the connection caps (else `rate_limited`); the user's first
    socket turns them online for their peers. A connection refused here, for any reason,
    leaves no record behind (else its user would stay online with no socket)."""
    heartbeat.start()  # this process's heartbeat exists before its first socket is recorded
    user_store.add_socket(sid, user_id, SERVER_ID, claims["jti"], claims["sid"], address)
    try:
        # Counted after the insert: two connects racing for the last place cannot both get it.
        refusal = _over_cap(user_store.count_sockets(user_id), address)
        if refusal:
            raise RateLimited(refusal)
        _settle(user_id)
    except Exception as refused:
        # Another process may have counted this socket meanwhile and announced the user
        # online: withdrawing it settles presence again.
        try:
            socket_disconnected(user_id, sid, closed=False)
        except Exception:  # noqa: BLE001 - the refusal's own reason is the one to answer
            log.warning("could not withdraw refused socket %s", sid, exc_info=True)
        raise refused


def _over_cap(user_count, address):
    per_user = current_app.config["MAX_SOCKETS_PER_USER"]
    per_address = current_app.config["MAX_SOCKETS_PER_ADDRESS"]
    if per_user and user_count > per_user:
        return f"too many connections for this user (at most {per_user})"
    if per_address and address and user_store.count_sockets_from(address) > per_address:
        return f"too many connections from this address (at most {per_address})"
    return None


def socket_disconnected(user_id, sid, closed=True):
    """Forget the socket; the user's last one turns them offline and stamps last_seen
    (`closed=False`: a connection refused, that was never seen, stamps nothing).

    With the database down the record would outlive the socket (the user would stay
    online): retry in the background until it answers.
    """
    try:
        _forget_socket(user_id, sid, closed)
    except DB_DOWN_ERRORS as exc:
        log.warning("database unavailable at disconnect of %s, will retry: %s", sid, exc)
        socketio.start_background_task(_retry_forget, current_app._get_current_object(),
                                       user_id, sid, closed)


def _retry_forget(app, user_id, sid, closed=True):
    for _ in range(FORGET_RETRY_ATTEMPTS):
        socketio.sleep(FORGET_RETRY_SECONDS)
        try:
            with app.app_context():
                return _forget_socket(user_id, sid, closed)
        except DB_DOWN_ERRORS:
            continue
    log.error("gave up forgetting socket %s of user %s: database still unavailable", sid, user_id)


def _forget_socket(user_id, sid, closed=True):
    user_store.remove_socket(sid)
    if user_store.count_sockets(user_id):
        return
    if closed:
        user_store.set_last_seen(user_id, datetime.now(timezone.utc))
    damping = current_app.config["PRESENCE_DAMPING_SECONDS"]
    if damping:
        socketio.start_background_task(_announce_offline_later,
                                       current_app._get_current_object(), user_id, damping)
    else:
        _settle(user_id)


def _announce_offline_later(app, user_id, delay):
    """`offline` only if the user is still without a socket after `delay` seconds."""
    socketio.sleep(delay)
    with app.app_context():
        try:
            _settle(user_id)
        except DB_DOWN_ERRORS as exc:
            log.warning("database unavailable, offline of %s not announced: %s", user_id, exc)


def _settle(user_id):
    """Bring the presence announced for the user (`presence_announced`, in their document) to
    what their sockets say, announcing each change once.

    Whoever flips the claim announces; a flip happens only from the other state, so two
    processes seeing one change at once announce it once. Sockets may come and go between
    the count and the claim (another process, or a connect racing its own disconnect), so
    after a flip the sockets are counted again: a user is never left announced online with
    no socket, nor offline with one. And if the claim was flipped back while this process
    announced, its announcement may reach peers after the other's: it repeats the current one.
    """
    announced = None
    for _ in range(SETTLE_ROUNDS):
        online = user_store.count_sockets(user_id) > 0
        doc = user_store.find_user(user_id)
        if doc is None:
            return
        # Never announced (None: a user whose sockets predate the claim) is neither state.
        if doc.get("presence_announced") == online:
            if announced is not None and announced != online:
                _announce(user_id, online, doc)
            return
        if user_store.claim_presence(user_id, online):
            announced = online
            _announce(user_id, online, doc)
    log.error("presence of %s still moving after %d rounds: left to its next change",
              user_id, SETTLE_ROUNDS)


def _announce(user_id, online, doc=None):
    last_seen = None if online else iso(doc.get("last_seen") if doc else None)
    peers = conversation_store.shared_with(user_id, current_app.config["SMALL_GROUP_MAX"])
    if peers:
        peers -= block_store.blocked_ids(user_id)  # one query, whatever the number of peers
    if peers:
        realtime.emit_to_users("presence", {"user": str(user_id), "online": online,
                                            "last_seen": last_seen}, peers)


def retell_presence(user_id, viewer_id):
    """After `user_id` blocked or unblocked `viewer_id`: tell the viewer's sockets the presence
    they may see now (offline, no `last_seen`, while blocked; the real one again after), so a
    client's view agrees with `User.online` without waiting for the next change. Only to a
    viewer `presence` events reach at all (a shared direct conversation or small group)."""
    if viewer_id not in conversation_store.shared_with(
            user_id, current_app.config["SMALL_GROUP_MAX"]):
        return
    [profile] = users.public_users(user_store.find_users([user_id]), viewer_id)
    online = profile["online"]  # as `_announce` says it: no last_seen while online
    realtime.emit_to_users("presence", {"user": str(user_id), "online": online,
                                        "last_seen": None if online else profile["last_seen"]},
                           [viewer_id])
