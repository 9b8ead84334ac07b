"""Entry point: `python wsgi.py` (eventlet server) or `gunicorn -k eventlet -w 1 wsgi:app`.

The async runtime is patched here, first, before anything else is imported.
"""
import os

ASYNC_MODE = os.environ.get("ASYNC_MODE", "eventlet")
if ASYNC_MODE == "eventlet":
    import warnings

    # eventlet warns on every import that it is in bugfix mode (a choice the README explains);
    # on stderr it would bury the one-line configuration errors below.
    warnings.filterwarnings("ignore", message=r"\s*Eventlet is deprecated")
    import eventlet

    eventlet.monkey_patch()
elif ASYNC_MODE == "gevent":
    from gevent import monkey

    monkey.patch_all()

import gc  # noqa: E402
import logging  # noqa: E402
import signal  # noqa: E402
import socket  # noqa: E402
import sys  # noqa: E402

from chatapp import token_masking  # noqa: E402
from config import ConfigError  # noqa: E402

# Access logs write each request line, and an older client's Socket.IO handshake carries
# its JWT as `?token=`: masked in every log line of this process (gunicorn's worker too).
token_masking.install()

try:
    from chatapp import create_app  # noqa: E402
    from chatapp.extensions import socketio  # noqa: E402

    app = create_app()
except ConfigError as exc:
    print(f"chatapp: configuration error: {exc}", file=sys.stderr)
    sys.exit(2)

# What start-up built (modules, the app, schemas: ~100 000 objects) lives as long as the
# process: move it out of the collector's sight so each full collection skips it (about
# 35 ms of every gen-2 pause here, the pauses that make the latency tail; bench/README.md).
gc.freeze()


def main():
    port = app.config["PORT"]
    host = os.environ.get("HOST", "0.0.0.0")
    logging.getLogger("chatapp").info("chatapp listening on http://%s:%s (async mode %s)",
                                      "localhost" if host == "0.0.0.0" else host, port,
                                      app.config["ASYNC_MODE"])
    print(f"chatapp: serving on http://localhost:{port}  (Ctrl-C to stop)", flush=True)
    if app.config["ASYNC_MODE"] == "eventlet":
        serve_eventlet(host, port)
    else:
        socketio.run(app, host=host, port=port, allow_unsafe_werkzeug=True)


def serve_eventlet(host, port):
    """eventlet's WSGI server until SIGTERM (or Ctrl-C), then a graceful stop, exit status 0.

    On the signal: close every Socket.IO connection (clients see it close and reconnect, to
    another process behind the balancer), stop accepting, let in-flight requests finish,
    close MongoDB. Past SHUTDOWN_GRACE seconds, or on a second signal: exit 1.
    """
    import eventlet
    import eventlet.wsgi
    import greenlet

    from chatapp import eventlet_http
    from chatapp.extensions import mongo

    listener = eventlet.listen((host, port))
    # Connections inherit TCP_NODELAY (as under gunicorn): without it Nagle's algorithm holds
    # small Socket.IO frames back for the peer's delayed ACK (bench/README.md).
    listener.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    # The signal only writes to a pipe (set_wakeup_fd): that wakes the hub at once, where a
    # timer scheduled by a Python handler would wait for the hub's current poll to end.
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: None)
    eventlet.spawn(stop_on_signal, wake_r, greenlet.getcurrent())
    # A deadline for each request's headers, the contract's envelope for requests refused
    # before the app (chatapp/eventlet_http.py); debug=False: eventlet's default puts the
    # traceback of an exception escaping the app (Engine.IO raises some) in the 500's body.
    # log: its access lines become records of the app's handler (LOG_FORMAT, one a line).
    eventlet.wsgi.server(listener, app, max_size=int(os.environ.get("MAX_CONNECTIONS", 10000)),
                         log_output=os.environ.get("ACCESS_LOG", "0") == "1", debug=False,
                         log=logging.getLogger("eventlet.wsgi"),
                         protocol=eventlet_http.protocol(app.config["REQUEST_HEADER_TIMEOUT"]))
    mongo.close()
    logging.getLogger("chatapp").info("chatapp stopped")


def stop_on_signal(wake_r, accept_loop):
    import eventlet.hubs

    eventlet.hubs.trampoline(wake_r, read=True)
    os.read(wake_r, 64)
    hub = eventlet.hubs.get_hub()
    hub.schedule_call_global(app.config["SHUTDOWN_GRACE"], give_up)
    close_sockets()
    # eventlet.wsgi.server ends its accept loop on SystemExit, drops idle connections (open
    # WebSockets count as idle, hence closing them first), then waits for running requests.
    hub.schedule_call_global(0, accept_loop.throw, SystemExit())
    eventlet.hubs.trampoline(wake_r, read=True)
    give_up()  # a second signal: stop waiting


def close_sockets():
    """Close every Engine.IO connection of this process: what was queued for it is sent,
    then its transport is closed (a WebSocket close frame). No Engine.IO CLOSE packet: to
    python-socketio's client that means "do not reconnect"; a closed transport makes both
    it and socket.io-client reconnect, to another process behind the balancer."""
    import eventlet

    eio = socketio.server.eio
    clients = list(eio.sockets.values())
    logging.getLogger("chatapp").info("shutting down: closing %d socket(s), finishing requests",
                                      len(clients))
    flushing = eventlet.GreenPool()
    for client in clients:
        client.close(wait=False, abort=True, reason=eio.reason.SERVER_DISCONNECT)
        flushing.spawn(client.queue.join)  # until its writer has taken what was queued
    with eventlet.Timeout(1, False):  # a client that stopped reading does not hold us up
        flushing.waitall()


def give_up():
    logging.getLogger("chatapp").warning("still busy after SHUTDOWN_GRACE: exiting anyway")
    os._exit(1)


if __name__ == "__main__":
    main()
