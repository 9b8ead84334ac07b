"""The one place that pushes to sockets: rooms are user ids, events go out after writes.

With a Redis message queue (SOCKETIO_MESSAGE_QUEUE=redis://...) create_app gives the
Socket.IO server `chatapp.queue_health.GuardedRedisManager` instead of python-socketio's own:
an emit reaches this process's sockets first and is then published for the other
processes, within a short bound; while Redis is down it is not published at all (this
process's sockets still get it, nothing waits on Redis), and once Redis answers again
publishing and receiving resume by themselves. See chatapp/queue_health.py.
"""
from bson import ObjectId

from chatapp.extensions import socketio


def user_room(user_id):
    return str(user_id)


def user_rooms(user_ids):
    """Each user's room once: an ObjectId's room is its hex (what `str` gives, without a
    Python call per id: a group send names 100 of them)."""
    return list({u.binary.hex() if type(u) is ObjectId else user_room(u) for u in user_ids})


def emit_to_users(event, data, user_ids, skip_sid=None):
    """Emit `event` once to every socket of each user (deduplicated), except `skip_sid`.

    A failing message queue neither raises here nor holds the caller past its short timeouts
    (chatapp.queue_health): a Redis outage costs the other processes' sockets this event
    (clients catch up through `changes` or the history calls), not this send."""
    rooms = user_rooms(user_ids)
    socketio.emit(event, data, to=rooms if len(rooms) > 1 else rooms[0], skip_sid=skip_sid)


def disconnect_sockets(socket_ids):
    """Close sockets by id, on whichever process holds them (through the message queue; a
    request the queue could not carry is sent again once Redis is back)."""
    for sid in socket_ids:
        socketio.server.disconnect(sid, namespace="/")
