"""The one place that pushes to sockets: rooms are user ids, events go out after writes."""
from chatapp.extensions import socketio


def user_room(user_id):
    return str(user_id)


def emit_to_users(event, data, user_ids, skip_sid=None):
    """Emit `event` once to every socket of each user (deduplicated), except `skip_sid`."""
    rooms = sorted({user_room(u) for u in user_ids})
    socketio.emit(event, data, to=rooms if len(rooms) > 1 else rooms[0], skip_sid=skip_sid)


def disconnect_sockets(socket_ids):
    """Close sockets by id, on whichever process holds them (through the message queue)."""
    for sid in socket_ids:
        socketio.server.disconnect(sid, namespace="/")
