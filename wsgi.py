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

import logging  # noqa: E402
import sys  # noqa: E402

from config import ConfigError  # noqa: E402

try:
    from chatapp import create_app  # noqa: E402
    from chatapp.extensions import socketio  # noqa: E402

    app = create_app()
except ConfigError as exc:
    print(f"chatapp: configuration error: {exc}", file=sys.stderr)
    sys.exit(2)


def main():
    port = app.config["PORT"]
    host = os.environ.get("HOST", "0.0.0.0")
    logging.getLogger("chatapp").info("chatapp listening on http://%s:%s (async mode %s)",
                                      "localhost" if host == "0.0.0.0" else host, port,
                                      app.config["ASYNC_MODE"])
    print(f"chatapp: serving on http://localhost:{port}  (Ctrl-C to stop)", flush=True)
    kwargs = {"host": host, "port": port, "allow_unsafe_werkzeug": True}
    if app.config["ASYNC_MODE"] == "eventlet":
        kwargs = {"host": host, "port": port, "max_size": int(os.environ.get("MAX_CONNECTIONS", 10000)),
                  "log_output": os.environ.get("ACCESS_LOG", "0") == "1"}
    socketio.run(app, **kwargs)


if __name__ == "__main__":
    main()
