"""gunicorn settings for one chatapp process: `gunicorn -c deploy/gunicorn.conf.py wsgi:app`.

One worker per process: Socket.IO keeps each connection's state in the process that
accepted it, so scale by running more processes (each with its own PORT) behind nginx
(deploy/nginx.conf, sticky by client address) sharing MongoDB and a Redis message queue.
See deploy/README.md.

Environment: PORT (8000), HOST (127.0.0.1: nginx on the same machine; 0.0.0.0 in a
container), ASYNC_MODE (eventlet | gevent: the worker class follows it; gunicorn 26
removed the eventlet worker, use gevent there), WORKER_CONNECTIONS (10000),
GRACEFUL_TIMEOUT (20 s), REQUEST_HEADER_TIMEOUT (10 s), ACCESS_LOG (1 = stdout, 0 = off,
else a file path), LOG_LEVEL.
"""
import os

_async_mode = os.environ.get("ASYNC_MODE", "eventlet")
_workers_by_mode = {"eventlet": "eventlet", "gevent": "gevent", "threading": "gthread"}
if _async_mode not in _workers_by_mode:
    raise SystemExit(f"chatapp: ASYNC_MODE must be one of {', '.join(_workers_by_mode)}, "
                     f"got {_async_mode!r}")

wsgi_app = "wsgi:app"  # wsgi.py patches for ASYNC_MODE before importing anything else
bind = f"{os.environ.get('HOST', '127.0.0.1')}:{os.environ.get('PORT', '8000')}"
worker_class = _workers_by_mode[_async_mode]
workers = 1  # never more: a second worker would split one client's Socket.IO session
threads = 100 if worker_class == "gthread" else 1  # threading mode: one thread per connection
worker_connections = int(os.environ.get("WORKER_CONNECTIONS", "10000"))
# Each worker builds its own app (one MongoDB client per process, never shared over a fork).
preload_app = False

# A long-polling request or a WebSocket is not a stuck worker: the green workers keep
# notifying the arbiter while they wait, so this only catches a blocked event loop.
timeout = 60
# On SIGTERM: stop accepting, let requests finish (sockets are closed; clients reconnect to
# another process), then exit. Sockets left in the shared store are swept by the others'
# presence heartbeat (PRESENCE_STALE_SECONDS).
graceful_timeout = int(os.environ.get("GRACEFUL_TIMEOUT", "20"))
# The green workers wait for each request's line and headers at most `keepalive` seconds in
# all (from the connection's opening, or the previous response), then close the connection:
# the deadline that keeps half-sent headers from holding connections (REQUEST_HEADER_TIMEOUT,
# as `python wsgi.py` applies it). At 0 they would wait forever, hence at least 1. It is also
# how long an idle kept-alive connection stays open.
keepalive = max(1, int(os.environ.get("REQUEST_HEADER_TIMEOUT", "10")))

# nginx passes the original API's `access_token` header on as `Access-Token` (gunicorn
# drops header names with underscores: `header_map` stays at its safe default).
# X-Forwarded-* are interpreted by the app only with TRUSTED_PROXIES (chatapp/proxy.py).
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1")

proc_name = "chatapp"
loglevel = os.environ.get("LOG_LEVEL", "info").lower()
errorlog = "-"
_access_log = os.environ.get("ACCESS_LOG", "1")
accesslog = None if _access_log in ("0", "") else "-" if _access_log == "1" else _access_log
# client (as nginx forwards it), request, status, bytes, time in ms, user agent. A `token`
# query parameter (an older client's Socket.IO handshake) and any JWT are masked in every
# line: the worker imports wsgi.py, which installs chatapp/token_masking.py.
access_log_format = ('%({x-forwarded-for}i)s %(h)s "%(r)s" %(s)s %(B)s %(M)sms '
                     '"%(a)s"')
