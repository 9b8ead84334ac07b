"""The floor: the fastest a chat relay can go on chatapp's stack (Flask-SocketIO on eventlet).

Connect, join the room named by `auth.user` (or `?user=`), relay `chat message` to the
receiver's room and the sender's other sockets, acknowledge. A group is a list of member
rooms (`POST /api/chat/groups` `{members}` remembers it in memory); a `chat message` naming
its `conversation` is emitted once to that list of rooms, every socket but the sending one,
as chatapp's group fan-out is. No auth, no validation, no storage: whatever chatapp does
above this is its cost. Run: `python bench/floor.py PORT`.
"""
import eventlet

eventlet.monkey_patch()

import os  # noqa: E402
import socket  # noqa: E402
import sys  # noqa: E402

from eventlet import wsgi  # noqa: E402

from flask import Flask, request  # noqa: E402
from flask_socketio import SocketIO, join_room  # noqa: E402

app = Flask(__name__)
socketio = SocketIO(app, async_mode="eventlet", logger=False, engineio_logger=False,
                    max_http_buffer_size=1_000_000)


# Group id -> its members' rooms (user ids), sorted and deduplicated as chatapp emits them.
GROUPS = {}


@app.get("/healthz")
def healthz():
    """Anyone: 200 while the process serves (the runner waits on it)."""
    return {"status": "ok"}


@app.post("/api/chat/groups")
def create_group():
    """Anyone: `{members: [userId...]}` -> 201 `{conversation: {id, member_count}}`."""
    rooms = sorted(set(request.get_json()["members"]))
    group_id = os.urandom(12).hex()
    GROUPS[group_id] = rooms
    return {"conversation": {"id": group_id, "member_count": len(rooms)}}, 201


@socketio.on("connect")
def on_connect(auth=None):
    """Anyone: joins the room its `user` names."""
    user = auth.get("user") if isinstance(auth, dict) else None
    join_room(user or request.args.get("user"))


@socketio.on("chat message")
def on_chat_message(data):
    """Relay to the receiver's room and the sender's other sockets, or to every member's
    room of a group (`conversation`), as chatapp does; ack."""
    group = data.get("conversation")
    rooms = GROUPS[group] if group is not None else [data["receiver"], data["sender"]]
    socketio.emit("chat message", data, to=rooms, skip_sid=request.sid)
    return {"ok": True}


if __name__ == "__main__":
    port = int(sys.argv[1]) if len(sys.argv) > 1 else int(os.environ.get("PORT", 8100))
    # As gunicorn does (and wsgi.py): TCP_NODELAY on the listener, inherited by every
    # connection, so small frames are not held back by Nagle's algorithm.
    listener = eventlet.listen(("127.0.0.1", port))
    listener.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    wsgi.server(listener, app, log_output=False,
                max_size=int(os.environ.get("MAX_CONNECTIONS", 10000)))
