"""The Socket.IO path is a rule of the app's URL map, so each socket event's request context
is freed the moment the event ends.

Flask-SocketIO runs every event handler inside a request context built from its connection's
handshake (path `/socket.io/`). Pushing one matches that path against the URL map: with no
rule for it the match raised NotFound (WebsocketMismatch for a WebSocket handshake), which
Flask keeps on the request with its traceback,
whose frames hold the context: a reference cycle that kept the whole context (~40 objects:
request, headers, app context, the limiter's) alive until the cyclic collector found it,
after every event. More collections, more of each walked; and the events in flight when the
embedded store freezes its heap (chatapp/embedded_heap.py) would be kept for good. With a
rule the match succeeds: a 100-member group send in-process 812 / 791 -> 786 / 741 µs.

The rule's view never runs for the path's requests: the Socket.IO middleware in front of
Flask answers everything under `/socket.io/`. `/socket.io` without the slash reaches Flask
and gets the 404 it always got.
"""
from flask import abort


def init_app(app, middleware):
    path = middleware.engineio_path.strip("/")
    # Two rules: a WebSocket handshake's environ (Upgrade: websocket) matches only a rule
    # marked `websocket` (werkzeug raises WebsocketMismatch on the other), a long-polling
    # one only the other.
    for websocket in (False, True):
        app.add_url_rule(f"/{path}/", endpoint="socketio_path", view_func=_not_here,
                         strict_slashes=False, websocket=websocket)


def _not_here():
    abort(404)
