"""A minimal Socket.IO v5 client on one raw WebSocket, for tests that need exact control.

python-socketio's client hands every incoming packet to a new thread, so its handlers may
see events out of order. This client reads on one thread and records events in arrival
order, and it can misbehave on purpose: stop reading, drop the TCP connection without a
goodbye, send frames of any size or content.
"""
import itertools
import json
import socket
import threading
import time

import websocket


class ConnectRefused(Exception):
    """The server answered the Socket.IO CONNECT with CONNECT_ERROR (`44`)."""

    def __init__(self, data):
        super().__init__(data)
        self.data = data
        self.code = (data.get("data") or {}).get("code") if isinstance(data, dict) else None


class WireClient:
    """`WireClient(url, token).connect()`; `.call(event, data)` -> ack; `.events` in order."""

    def __init__(self, url, token=None, auth=None, read=True, timeout=10, on_event=None,
                 sockopt=()):
        self.url = url.replace("http://", "ws://", 1) + "/socket.io/?EIO=4&transport=websocket"
        self.auth = auth if auth is not None else ({"token": token} if token else None)
        self.read = read
        self.timeout = timeout
        self.on_event = on_event
        self.sockopt = sockopt  # e.g. a tiny SO_RCVBUF for a client that stops reading
        self.events = []  # (name, data, monotonic arrival time), in arrival order
        self.closed_by = None  # "server" (41/1 packet), "transport", or "client"
        self.sid = None
        self._ws = None
        self._ids = itertools.count(1)
        self._acks = {}
        self._send_lock = threading.Lock()
        self._cond = threading.Condition()
        self._reader = None

    # -- connection ---------------------------------------------------------------------
    def connect(self):
        self._ws = websocket.create_connection(self.url, timeout=self.timeout,
                                               enable_multithread=True, sockopt=self.sockopt)
        opening = self._ws.recv()
        if not opening.startswith("0"):
            raise RuntimeError(f"unexpected Engine.IO opening {opening!r}")
        self._send("40" + (json.dumps(self.auth) if self.auth is not None else ""))
        while True:
            packet = self._ws.recv()
            if packet == "2":
                self._send("3")
            elif packet.startswith("42"):  # an event may overtake CONNECT: keep it, in order
                self._handle(packet)
            elif packet.startswith("40"):
                self.sid = json.loads(packet[2:]).get("sid")
                break
            elif packet.startswith("44"):
                self._close_socket()
                raise ConnectRefused(json.loads(packet[2:]))
            else:
                raise RuntimeError(f"unexpected packet before CONNECT {packet[:80]!r}")
        if self.read:
            self._reader = threading.Thread(target=self._read_loop, daemon=True)
            self._reader.start()
        return self

    @property
    def connected(self):
        return self._ws is not None and self._ws.connected and self.closed_by is None

    def close(self):
        """A polite goodbye: Socket.IO DISCONNECT, then the WebSocket close handshake."""
        if self.closed_by is None:
            self.closed_by = "client"
        try:
            self._send("41")
        except Exception:  # noqa: BLE001 - already gone
            pass
        self._close_socket()

    def drop(self):
        """Vanish without a goodbye, as a phone losing its network does."""
        if self.closed_by is None:
            self.closed_by = "client"
        try:
            self._ws.sock.shutdown(socket.SHUT_RDWR)
        except Exception:  # noqa: BLE001
            pass
        self._close_socket()

    def _close_socket(self):
        try:
            self._ws.close(timeout=1)
        except Exception:  # noqa: BLE001
            pass
        with self._cond:
            self._cond.notify_all()

    # -- sending ------------------------------------------------------------------------
    def _send(self, text):
        with self._send_lock:
            self._ws.send(text)

    def send_raw(self, text):
        """Send one WebSocket text frame exactly as given (may be malformed on purpose)."""
        self._send(text)

    def emit(self, event, *args):
        self._send("42" + json.dumps([event, *args], separators=(",", ":")))

    def call(self, event, *args, timeout=10):
        """Emit and wait for the acknowledgement; returns its first argument."""
        ack_id = next(self._ids)
        slot = {"done": threading.Event(), "data": None}
        self._acks[ack_id] = slot
        self._send(f"42{ack_id}" + json.dumps([event, *args], separators=(",", ":")))
        if not slot["done"].wait(timeout):
            self._acks.pop(ack_id, None)
            raise TimeoutError(f"no ack for {event!r} within {timeout}s "
                               f"(closed_by={self.closed_by})")
        data = slot["data"]
        return data[0] if data else None

    # -- receiving ----------------------------------------------------------------------
    def _read_loop(self):
        while True:
            try:
                packet = self._ws.recv()
            except websocket.WebSocketTimeoutException:
                if self.closed_by is not None:
                    break
                continue
            except Exception:  # noqa: BLE001 - closed under us
                break
            if packet in (None, ""):
                break
            if not self._handle(packet):
                break
        if self.closed_by is None:
            self.closed_by = "transport"
        for slot in list(self._acks.values()):
            slot["done"].set()
        with self._cond:
            self._cond.notify_all()

    def _handle(self, packet):
        now = time.monotonic()
        if packet == "2":
            try:
                self._send("3")
            except Exception:  # noqa: BLE001
                return False
        elif packet.startswith("42"):
            name, *args = json.loads(packet[2:])
            data = args[0] if args else None
            with self._cond:
                self.events.append((name, data, now))
                self._cond.notify_all()
            if self.on_event:
                self.on_event(name, data, now)
        elif packet.startswith("43"):
            body = packet[2:]
            digits = len(body) - len(body.lstrip("0123456789"))
            slot = self._acks.pop(int(body[:digits]), None)
            if slot:
                slot["data"] = json.loads(body[digits:])
                slot["done"].set()
        elif packet.startswith("41") or packet.startswith("1"):
            self.closed_by = "server"
            return False
        return True

    def received(self, name="chat message"):
        with self._cond:
            return [data for event, data, _ in self.events if event == name]

    def wait_for(self, predicate, timeout=10):
        """Wait until `predicate(self)` is true; returns its last value."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                value = predicate(self)
                remaining = deadline - time.monotonic()
                if value or remaining <= 0:
                    return value
                self._cond.wait(min(remaining, 0.2))

    def wait_closed(self, timeout=10):
        return self.wait_for(lambda c: c.closed_by is not None, timeout)
