"""Connections that have not authenticated: closed after a while, and capped per address.

An Engine.IO connection (a WebSocket, or a long-polling session) exists from its handshake,
but serves chat only once its Socket.IO CONNECT carries a valid token (chatapp.chat.events).
Until then it is *pending*: it holds a connection, or server memory, with nobody known behind
it, and anyone could open such connections by the hundred and keep them for good by
answering pings. So does a connection whose Socket.IO session ended while its transport
stays open (the client sent a namespace DISCONNECT, or the server closed the socket at its
token's expiry): it is pending again, with a fresh clock.

- A connection still pending SOCKET_CONNECT_TIMEOUT seconds after it became pending is
  closed (one sweep per process; a refused CONNECT does not restart the clock).
- A new handshake from an address that holds MAX_PENDING_CONNECTIONS_PER_ADDRESS pending
  connections is answered 429 `rate_limited` (with Retry-After) before Engine.IO sees it.

Both are counted per process, not in shared storage: a pending connection lives in the
process that accepted it, as its transport does, and behind nginx an address always reaches
the same process. The address is the one the app sees (TRUSTED_PROXIES, chatapp/proxy.py).
Only the default namespace has handlers, so a session there is what authenticated means.
"""
import json
import logging
import threading
import time
from collections import Counter, OrderedDict
from urllib.parse import parse_qs

from chatapp.errors import RateLimited

log = logging.getLogger(__name__)
NAMESPACE = "/"


def init_app(app, server):
    """Watch `server`'s (python-socketio) connections; gate handshakes reaching `app`.
    Call after `socketio.init_app` and before `proxy.trust_proxies` (which must wrap this)."""
    timeout = app.config["SOCKET_CONNECT_TIMEOUT"]
    per_address = app.config["MAX_PENDING_CONNECTIONS_PER_ADDRESS"]
    if not timeout and not per_address:
        return None
    pending = PendingConnections(server, timeout)
    pending.watch()
    if per_address:
        app.wsgi_app = HandshakeGate(app.wsgi_app, pending, per_address, retry_after=timeout or 10)
    return pending


class PendingConnections:
    """This process's Engine.IO connections that have no authenticated Socket.IO session."""

    def __init__(self, server, timeout):
        self.server = server
        self.timeout = timeout  # 0: never closed for it (the cap may still apply)
        self._deadlines = OrderedDict()  # eio sid -> (deadline, address); oldest first
        self._by_address = Counter()
        self._lock = threading.Lock()  # threading mode; under eventlet nothing yields inside
        self._sweeping = False

    def count(self, address):
        return self._by_address.get(address, 0)

    def add(self, eio_sid, address):
        """Pending from now on, unless it already is."""
        with self._lock:
            if eio_sid in self._deadlines:
                return
            self._deadlines[eio_sid] = (time.monotonic() + (self.timeout or float("inf")), address)
            self._by_address[address] += 1
            start = bool(self.timeout) and not self._sweeping  # one sweep, from the first
            self._sweeping = self._sweeping or start
        if start:
            self.server.start_background_task(self._sweep)

    def remove(self, eio_sid):
        with self._lock:
            self._forget(eio_sid)

    def _forget(self, eio_sid):
        entry = self._deadlines.pop(eio_sid, None)
        if entry is not None:
            address = entry[1]
            self._by_address[address] -= 1
            if self._by_address[address] <= 0:
                del self._by_address[address]

    def _expired(self, now):
        """Forget and return the connections whose time is up (the oldest come first)."""
        expired = []
        with self._lock:
            while self._deadlines:
                eio_sid, (deadline, _) = next(iter(self._deadlines.items()))
                if deadline > now:
                    break
                self._forget(eio_sid)
                expired.append(eio_sid)
        return expired

    def _sweep(self):
        interval = max(0.1, min(1.0, self.timeout / 4))
        while True:
            self.server.sleep(interval)
            try:
                for eio_sid in self._expired(time.monotonic()):
                    self._close(eio_sid)
            except Exception:  # noqa: BLE001 - the sweep must outlive any one surprise
                log.exception("closing connections that did not authenticate")

    def _close(self, eio_sid):
        """Close the transport without waiting for the client (a polling client may never
        come back for the CLOSE packet); the WebSocket's writer sends it, then closes."""
        eio = self.server.eio
        socket = eio.sockets.get(eio_sid)
        if socket is None or socket.closed or socket.closing:
            return
        log.debug("closing connection %s: not authenticated within %ss", eio_sid, self.timeout)
        try:
            socket.close(wait=False, reason=eio.reason.SERVER_DISCONNECT)
        except Exception:  # noqa: BLE001 - a transport already torn down: nothing left to close
            log.debug("closing %s failed", eio_sid, exc_info=True)
        eio.sockets.pop(eio_sid, None)

    def _session_open(self, eio_sid):
        manager = self.server.manager
        sid = manager.sid_from_eio_sid(eio_sid, NAMESPACE)
        return sid is not None and manager.is_connected(sid, NAMESPACE)

    def _transport_open(self, eio_sid):
        socket = self.server.eio.sockets.get(eio_sid)
        return socket is not None and not socket.closing and not socket.closed

    def watch(self):
        """Follow each connection: pending at its handshake, not once its Socket.IO CONNECT
        is accepted, pending again if that session ends while the transport stays open,
        forgotten when the transport closes. python-socketio has no hooks for this: its
        handlers are wrapped, as chatapp.packets does."""
        server = self.server
        on_eio_connect = server.eio.handlers["connect"]
        on_eio_disconnect = server.eio.handlers["disconnect"]
        handle_connect = server._handle_connect  # python-socketio 5: every CONNECT packet
        end_session = server.manager.disconnect  # every end of a session, refused ones too

        def eio_connect(eio_sid, environ):
            result = on_eio_connect(eio_sid, environ)
            self.add(eio_sid, environ.get("REMOTE_ADDR"))
            return result

        def eio_disconnect(eio_sid, *reason):
            try:
                return on_eio_disconnect(eio_sid, *reason)
            finally:
                self.remove(eio_sid)

        def socketio_connect(eio_sid, namespace, data):
            result = handle_connect(eio_sid, namespace, data)
            if self._session_open(eio_sid):
                self.remove(eio_sid)
            return result

        def session_ended(sid, namespace=None, **kwargs):
            eio_sid = server.manager.eio_sid_from_sid(sid, namespace or NAMESPACE)
            result = end_session(sid, namespace, **kwargs)
            if eio_sid and self._transport_open(eio_sid) and not self._session_open(eio_sid):
                environ = server.environ.get(eio_sid) or {}
                self.add(eio_sid, environ.get("REMOTE_ADDR"))
            return result

        server.eio.on("connect", eio_connect)
        server.eio.on("disconnect", eio_disconnect)
        server._handle_connect = socketio_connect
        server.manager.disconnect = session_ended


class HandshakeGate:
    """WSGI: a new Engine.IO handshake (a GET without `sid`) from an address already holding
    its share of pending connections is answered 429 before it costs anything."""

    def __init__(self, wsgi_app, pending, per_address, retry_after):
        self.wsgi_app = wsgi_app
        self.pending = pending
        self.per_address = per_address
        self.path = getattr(wsgi_app, "engineio_path", "/socket.io/")
        error = RateLimited(f"too many connections waiting to authenticate from this address "
                            f"(at most {per_address}): authenticate or close them first")
        self.body = json.dumps(error.to_dict()).encode()
        self.headers = [("Content-Type", "application/json"), ("Retry-After", str(retry_after)),
                        ("Content-Length", str(len(self.body)))]

    def __call__(self, environ, start_response):
        if (environ.get("REQUEST_METHOD") == "GET"
                and environ.get("PATH_INFO", "").startswith(self.path)
                and self.pending.count(environ.get("REMOTE_ADDR")) >= self.per_address
                and "sid" not in parse_qs(environ.get("QUERY_STRING", ""))):
            start_response("429 Too Many Requests", list(self.headers))
            return [self.body]
        return self.wsgi_app(environ, start_response)
