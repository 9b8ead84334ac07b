"""Live state that is never stored as messages: presence and typing.

Presence lives in shared storage (one document per socket, `chatapp.users.store`),
so every server process agrees on who is online.
"""
import itertools
import logging
import os
import secrets
import socket
import threading
from datetime import datetime, timezone

from flask import current_app

from chatapp import realtime
from chatapp.chat import heartbeat
from chatapp.conversations import service as conversations
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

# Typing lapses are per process and per sending socket: a timer generation per key.
_typing = {}
_typing_lock = threading.Lock()
_generations = itertools.count(1)


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
    if count == 1:
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
        when = datetime.now(timezone.utc)
        user_store.set_last_seen(user_id, when)
        _announce(user_id, False, iso(when))


def _announce(user_id, online, last_seen):
    peers = conversation_store.shared_with(user_id, current_app.config["SMALL_GROUP_MAX"])
    if peers:
        realtime.emit_to_users("presence", {"user": str(user_id), "online": online,
                                            "last_seen": last_seen}, peers)


def relay_typing(sender_id, sid, target, typing, timeout):
    """Relay a typing state to a user (`{"receiver": id}`) or a conversation's other members
    (`{"conversation": id}`; not relayed in large groups); `typing: true` lapses after
    `timeout` seconds unless repeated."""
    relay = _typing_relay(sender_id, target)
    if relay is None:
        return
    key = (sid, relay["key"])
    generation = next(_generations)
    with _typing_lock:
        if typing:
            _typing[key] = generation
        else:
            _typing.pop(key, None)
    _emit_typing(sender_id, relay, typing, skip_sid=sid)
    if typing:
        socketio.start_background_task(_lapse, key, generation, sender_id, relay, timeout)


def _typing_relay(sender_id, target):
    """Where a typing state goes: {key, recipients, conversation?, group?}; None: nowhere."""
    if "receiver" in target:
        receiver_id = target["receiver"]
        if receiver_id != sender_id:
            users.require_user(receiver_id)
        conv = conversations.find_direct(sender_id, receiver_id)
        return {"key": receiver_id, "recipients": [receiver_id],
                "conversation": str(conv["_id"]) if conv else None}
    conv = conversations.member_of(sender_id, target["conversation"])
    if not conversations.small(conv, current_app.config):
        return None  # large groups: accepted, not relayed
    return {"key": conv["_id"], "conversation": str(conv["_id"]), "group": conv["type"] == "group",
            "recipients": [m for m in conv["member_ids"] if m != sender_id]
            if conv["type"] == "group" else [conversations.peer_of(conv, sender_id)]}


def _emit_typing(sender_id, relay, typing, skip_sid=None):
    payload = {"sender": str(sender_id), "typing": typing}
    if relay["conversation"] is not None:
        payload = {"sender": str(sender_id), "conversation": relay["conversation"], "typing": typing}
    if relay["recipients"]:
        realtime.emit_to_users("typing", payload, relay["recipients"], skip_sid=skip_sid)


def _lapse(key, generation, sender_id, relay, timeout):
    socketio.sleep(timeout)
    with _typing_lock:
        if _typing.get(key) != generation:
            return  # repeated, stopped or disconnected since
        _typing.pop(key, None)
    if relay.get("group"):  # the group's members now: a removed one hears nothing more
        doc = conversation_store.find_for_member(relay["key"], sender_id)
        if doc is None:
            return
        relay = {**relay, "recipients": [m for m in doc["member_ids"] if m != sender_id]}
    _emit_typing(sender_id, relay, False)
