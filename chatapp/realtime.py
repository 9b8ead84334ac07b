"""The one place that pushes to sockets: rooms are user ids, events go out after writes.

With a Redis message queue (SOCKETIO_MESSAGE_QUEUE=redis://...) the Socket.IO server gets
`chatapp.queue_health.GuardedRedisManager` instead of python-socketio's own RedisManager:
an emit reaches this process's sockets first and is then published for the other
processes, within a short bound; while Redis is down it is not published at all (this
process's sockets still get it, nothing waits on Redis), and once Redis answers again
publishing and receiving resume by themselves. See chatapp/queue_health.py.
"""
from functools import wraps

from chatapp import queue_health
from chatapp.extensions import socketio


def user_room(user_id):
    return str(user_id)


def emit_to_users(event, data, user_ids, skip_sid=None):
    """Emit `event` once to every socket of each user (deduplicated), except `skip_sid`.

    A failing message queue neither raises here nor holds the caller past its short timeouts
    (chatapp.queue_health): a Redis outage costs the other processes' sockets this event
    (clients catch up through `changes` or the history calls), not this send."""
    rooms = sorted({user_room(u) for u in user_ids})
    socketio.emit(event, data, to=rooms if len(rooms) > 1 else rooms[0], skip_sid=skip_sid)


def disconnect_sockets(socket_ids):
    """Close sockets by id, on whichever process holds them (through the message queue; a
    request the queue could not carry is sent again once Redis is back)."""
    for sid in socket_ids:
        socketio.server.disconnect(sid, namespace="/")


def _with_guarded_queue(init_app):
    """`socketio.init_app` that hands a Redis queue to GuardedRedisManager. The SocketIO
    object is created unbound in chatapp.extensions and bound by create_app; this module is
    imported before that (the socket handlers use it), so every bound server gets it."""

    @wraps(init_app)
    def bind(app, **kwargs):
        url = kwargs.get("message_queue")
        if "client_manager" not in kwargs and queue_health.handles(url):
            kwargs["client_manager"] = queue_health.GuardedRedisManager(
                url, channel=kwargs.pop("channel", "flask-socketio"), write_only=app is None)
        try:
            return init_app(app, **kwargs)
        finally:
            # Flask-SocketIO keeps its options for the next init_app (each test app makes
            # one): a manager bound to this server must not be reused by the next.
            socketio.server_options.pop("client_manager", None)

    bind.guards_the_queue = True
    return bind


if not getattr(socketio.init_app, "guards_the_queue", False):
    socketio.init_app = _with_guarded_queue(socketio.init_app)
