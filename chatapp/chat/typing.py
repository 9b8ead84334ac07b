"""Typing: relayed, never stored, only to users who share a conversation with the typist,
and never between two users one of whom blocked the other (`chatapp.blocks`).

A `typing: true` lapses by itself (`typing: false` is emitted) `TYPING_TIMEOUT` seconds after
the last one; repeats from one socket to one target within `TYPING_REPEAT_SECONDS` are
absorbed (they only extend the lapse), so a flood costs neither emits nor timers: one
lapse task per (socket, target) at most. Per process, keyed by the sending socket.
"""
import itertools
import logging
import threading
import time

from flask import current_app

from chatapp import realtime
from chatapp.blocks import store as block_store
from chatapp.conversations import service as conversations
from chatapp.conversations import store as conversation_store
from chatapp.errors import DB_DOWN_ERRORS
from chatapp.extensions import socketio
from chatapp.users import service as users

TYPING_REPEAT_SECONDS = 1.0
_typing = {}  # (sid, target key) -> {"gen", "until", "relayed"}
_lock = threading.Lock()
_generations = itertools.count(1)
log = logging.getLogger(__name__)


def relay_typing(sender_id, sid, target, typing, timeout):
    """Relay a typing state to a user (`{"receiver": id}`) or a conversation's other members
    (`{"conversation": id}`); not relayed in large groups, nor to someone you share no
    conversation with."""
    relay = _typing_relay(sender_id, target)
    if relay is None:
        return
    key, now = (sid, relay["key"]), time.monotonic()
    with _lock:
        state = _typing.get(key)
        if typing and state is not None and now - state["relayed"] < TYPING_REPEAT_SECONDS:
            state["until"] = now + timeout  # absorbed: still typing
            return
        if typing:
            generation = next(_generations)
            _typing[key] = {"gen": generation, "until": now + timeout, "relayed": now}
        else:
            _typing.pop(key, None)
    _emit_typing(sender_id, relay, typing, skip_sid=sid)
    if typing:
        socketio.start_background_task(_lapse, key, generation, sender_id, relay)


def _typing_relay(sender_id, target):
    """Where a typing state goes: {key, recipients, conversation, group?}; None: nowhere."""
    if "receiver" in target:
        receiver_id = target["receiver"]
        if receiver_id != sender_id:
            users.require_user(receiver_id)
        conv = conversations.find_direct(sender_id, receiver_id)
        if conv is None and not conversation_store.shared(sender_id, receiver_id):
            return None  # strangers: accepted, relayed to nobody
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
    recipients = relay["recipients"]
    if recipients:  # checked at every emit (a block may start while typing lapses): one query
        blocked = block_store.involving(sender_id)
        recipients = [r for r in recipients if r not in blocked]
    if recipients:
        realtime.emit_to_users("typing", payload, recipients, skip_sid=skip_sid)


def _lapse(key, generation, sender_id, relay):
    """Emit `typing: false` once the last repeat is `timeout` old, unless stopped meanwhile."""
    while True:
        with _lock:
            state = _typing.get(key)
            if state is None or state["gen"] != generation:
                return  # stopped, or a newer typing run owns the key
            wait = state["until"] - time.monotonic()
            if wait <= 0:
                _typing.pop(key, None)
                break
        socketio.sleep(wait)
    try:
        if relay.get("group"):  # the group's members now: a removed one hears nothing more
            doc = conversation_store.find_for_member(relay["key"], sender_id)
            if doc is None:
                return
            relay = {**relay, "recipients": [m for m in doc["member_ids"] if m != sender_id]}
        _emit_typing(sender_id, relay, False)  # reads the blocks: the database again
    except DB_DOWN_ERRORS as exc:  # no one to answer in a background task: say it, once
        log.warning("database unavailable, typing lapse of %s not relayed: %s", sender_id, exc)
