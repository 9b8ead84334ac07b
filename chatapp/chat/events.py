"""Socket.IO handlers: thin adapters over the chat service, authenticated once at connect.

Every event answers through the acknowledgement when the client asks for one:
`{"ok": true, ...}` or `{"ok": false, "error": {"code", "message"}}`.
"""
import json
import logging
import time
from functools import wraps

from bson import ObjectId
from flask import current_app, request
from flask_socketio import ConnectionRefusedError, join_room

from chatapp import limits, logs, metrics, realtime
from chatapp.chat import expiry, presence, receipts, service, typing
from chatapp.chat.schemas import (
    DeliveredSchema, EnvelopeSchema, SocketReadSchema, SocketSendSchema, TypingSchema,
)
from chatapp.errors import (
    Forbidden, InvalidJson, NotFound, TokenExpired, Unauthorized, ValidationError, as_api_error,
)
from chatapp.extensions import socketio
from chatapp.schemas import load
from chatapp.security import bearer_token
from chatapp.users.service import authenticate

log = logging.getLogger(__name__)
send_schema, typing_schema = SocketSendSchema(), TypingSchema()
read_schema, delivered_schema = SocketReadSchema(), DeliveredSchema()
envelope_schema = EnvelopeSchema()
# The socket's identity, set once at connect: Flask-SocketIO keeps one environ per connection.
SESSION_KEY = "chatapp.socket"


def handshake_token(auth):
    """The token from `auth.token`, header `access_token`, `Authorization: Bearer`, or `?token=`."""
    if isinstance(auth, dict) and isinstance(auth.get("token"), str):
        return auth["token"]
    return (request.headers.get("access_token")
            or raw_header("access_token")
            or bearer_token(request.headers.get("Authorization"))
            or request.args.get("token"))


def raw_header(name):
    """A header the server left out of the environ: eventlet drops names with `_` (WSGI cannot
    tell `access_token` from `access-token`) but keeps the raw list, so the original API's
    `access_token` header is read from there, by its exact name."""
    for key, value in request.environ.get("headers_raw", ()):
        if key.lower() == name:
            return value
    return None


@socketio.on("connect")
def on_connect(auth=None):
    """Anyone with a valid access token: joins their user's room."""
    logs.start_event()
    try:
        claims = authenticate(handshake_token(auth), "access")
        user_id = ObjectId(claims["sub"])
        limits.check_socket_connect(user_id)
        request.environ[SESSION_KEY] = {"user_id": user_id, "exp": claims["exp"]}
        join_room(realtime.user_room(user_id))
        presence.socket_connected(user_id, request.sid, claims, request.remote_addr)
        expiry.watch(request.sid, claims["exp"])  # closed at exp, even if it never sends
    except Exception as exc:  # noqa: BLE001 - bad token or database down: refuse, never crash
        error = as_api_error(exc)
        metrics.socket_event("connect", error_ack(error))
        raise ConnectionRefusedError(error.code, {"code": error.code}) from None
    metrics.socket_event("connect", {"ok": True})
    metrics.SOCKETS_OPEN.inc()


@socketio.on("disconnect")
def on_disconnect(reason=None):
    """Forget the socket; may turn the user offline."""
    logs.start_event()
    session = request.environ.get(SESSION_KEY)
    if session:
        metrics.SOCKETS_OPEN.dec()
        presence.socket_disconnected(session["user_id"], request.sid)


def socket_event(handler):
    """Give the handler the caller's id; refuse expired tokens; turn errors into error acks."""

    @wraps(handler)
    def wrapper(data=None, *extra):
        logs.start_event()
        ack = _handle(handler, data)
        metrics.socket_event(request.event["message"], ack)  # the name as registered
        return ack

    return wrapper


def _handle(handler, data):
    session = request.environ.get(SESSION_KEY)
    if session is None:
        return error_ack(Unauthorized())
    user_id = session["user_id"]
    if session["exp"] <= time.time():
        socketio.start_background_task(_disconnect_later, request.sid)
        return error_ack(TokenExpired())
    try:
        return handler(user_id, data)
    except Exception as exc:  # noqa: BLE001 - one bad event never hurts the connection
        return error_ack(as_api_error(exc))


def _disconnect_later(sid):
    """Let the error ack leave before the socket is closed."""
    socketio.sleep(0.05)
    socketio.server.disconnect(sid)


def error_ack(error):
    return {"ok": False, **error.to_dict()}


@socketio.on("join")
@socket_event
def on_join(user_id, data):
    """Original API: join your own room (already joined at connect); anyone else's: forbidden."""
    if not isinstance(data, str):
        raise ValidationError("userId must be a string", details={"userId": ["Not a string."]})
    if data != str(user_id):
        raise Forbidden("you can only join your own room")
    return {"ok": True}


@socketio.on("chat message")
@socket_event
def on_chat_message(user_id, data):
    """Token holder: send to a user (`receiver`, as `POST /api/chat/send`) or a member to a
    `conversation`; ack carries the Message."""
    body = load(send_schema, data)  # validated first, as on REST: a bad payload costs no budget
    limits.check_socket_send(user_id)  # the same per-user budget as the REST route
    message, _ = service.send_message(user_id, body, origin_sid=request.sid)
    return {"ok": True, "message": message}


@socketio.on("message")
@socket_event
def on_message_envelope(user_id, data):
    """Original API: `'{"event": "join"|"chat message", "data": ...}'` as a JSON string."""
    if isinstance(data, str):
        try:
            data = json.loads(data)
        except (ValueError, RecursionError):  # nested deeper than the parser goes: unparseable
            raise InvalidJson("message must be a JSON string envelope") from None
    if not isinstance(data, dict) or envelope_schema.validate(data):
        raise ValidationError("envelope must be {event: 'join'|'chat message', data}",
                              details={"event": ["Must be 'join' or 'chat message'."]})
    return ENVELOPE_EVENTS[data["event"]].__wrapped__(user_id, data.get("data"))


@socketio.on("typing")
@socket_event
def on_typing(user_id, data):
    """Token holder: relay a typing state to the receiver, or a member's to the conversation's
    other members (not stored; lapses after 5 s)."""
    body = load(typing_schema, data)
    typing.relay_typing(user_id, request.sid, body, body["typing"],
                        current_app.config["TYPING_TIMEOUT"])
    return {"ok": True}


@socketio.on("delivered")
@socket_event
def on_delivered(user_id, data):
    """Receiver: confirm delivery of a conversation's (or the peer's) messages up to an id;
    relayed to the other members (direct and small groups)."""
    body = load(delivered_schema, data)
    target = body.get("conversation") or body["peer"]
    return {"ok": True, **receipts.mark_delivered(user_id, target, body["up_to"])}


@socketio.on("read")
@socket_event
def on_read(user_id, data):
    """Member: move your read marker in a conversation (or with a peer), as the REST call."""
    body = load(read_schema, data)
    target = body.get("conversation") or body["peer"]
    return {"ok": True, **receipts.mark_read(user_id, target, body.get("up_to"))}


ENVELOPE_EVENTS = {"join": on_join, "chat message": on_chat_message}


@socketio.on("*")
def on_unknown_event(event, *args):
    """Any other event name: a client waiting for an ack gets `not_found` instead of a hang."""
    ack = error_ack(NotFound("unknown event"))
    metrics.socket_event("<unknown>", ack)  # never the client's name: bounded label values
    return ack


@socketio.on_error_default
def on_socket_error(exc):
    """Anything the handlers did not turn into an ack (should not happen): still an ack."""
    return error_ack(as_api_error(exc))
