"""Promise 6: graceful shutdown.

SIGTERM to `python wsgi.py` (eventlet) with clients connected and a request in flight:
the request finishes, every socket is closed cleanly (a WebSocket close frame; clients see
a disconnect and python-socketio's client reconnects by itself, here to a new process on
the same port), the process exits 0 within SHUTDOWN_GRACE, and every message acknowledged
before the signal is stored. A real database process (nx-27017) outlives the app, so the
new process can show that nothing acknowledged was lost.
"""
import json
import signal
import socket
import threading
import time
from pathlib import Path

import pytest
import requests
import socketio

from tests.live import LiveServer, free_port
from tests.live import http_account as account
from tests.nx_database import DatabaseProcess
from tests.sio_wire import WireClient

GRACE = 5

pytestmark = [
    pytest.mark.live,
    pytest.mark.skip_with_test_mongo_uri(
        "checks that nothing is lost over a restart against a database process of its own "
        "(nx-27017), independent of TEST_MONGO_URI; it runs the same in the default suite"),
]


class Chatter(threading.Thread):
    """Sends over one socket until it closes; keeps what was acknowledged."""

    def __init__(self, client, receiver):
        super().__init__(daemon=True)
        self.client, self.receiver = client, receiver
        self.acked = []

    def run(self):
        n = 0
        while self.client.connected:
            n += 1
            try:
                ack = self.client.call("chat message", {"receiver": self.receiver, "content": f"m{n}"},
                                       timeout=5)
            except (TimeoutError, OSError, Exception):  # noqa: BLE001 - the socket went away
                break
            if ack is None:
                break  # closed while waiting: not acknowledged
            assert ack["ok"] is True, ack
            self.acked.append(ack["message"])
            time.sleep(0.01)


def half_sent_request(port, path, token, body):
    """A POST whose body is only half sent yet: in flight when the signal arrives."""
    payload = json.dumps(body).encode()
    conn = socket.create_connection(("127.0.0.1", port), timeout=10)
    conn.sendall(b"POST %s HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                 b"Authorization: Bearer %s\r\nContent-Length: %d\r\n\r\n"
                 % (path.encode(), token.encode(), len(payload)) + payload[:10])
    return conn, payload[10:]


def read_response(conn):
    data = b""
    while b"\r\n\r\n" not in data or len(data.split(b"\r\n\r\n", 1)[1]) < content_length(data):
        chunk = conn.recv(65536)
        if not chunk:
            break
        data += chunk
    if not data:
        return None, "no answer: the connection was cut"
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split(b" ")[1]), json.loads(body)


def content_length(data):
    for line in data.split(b"\r\n\r\n", 1)[0].split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            return int(line.split(b":")[1])
    return 0


def test_sigterm_finishes_requests_closes_sockets_exits_0_and_loses_nothing(tmp_path):
    database = DatabaseProcess(tmp_path, free_port())
    database.start()
    env = {"MONGO_DB_URL": database.url, "SHUTDOWN_GRACE": str(GRACE), "LOG_LEVEL": "INFO"}
    first = LiveServer(env=env, log_path=tmp_path / "first.log")
    try:
        first.start()
        database.drop_indexes_nx_cannot_serve()
        url, port = first.url, first.port
        alice, bob = account(url, "alice_sd"), account(url, "bob_sd")

        # Bob on python-socketio's client, which reconnects by itself.
        bob_events = {"connect": 0, "disconnect": [], "messages": []}
        bob_client = socketio.Client(reconnection=True, reconnection_delay=0.2,
                                     reconnection_delay_max=0.5)
        bob_client.on("connect", lambda: bob_events.__setitem__("connect", bob_events["connect"] + 1))
        bob_client.on("disconnect", lambda *reason: bob_events["disconnect"].append(reason))
        bob_client.on("chat message", lambda m: bob_events["messages"].append(m))
        bob_client.connect(url, auth={"token": bob["access_token"]}, transports=["websocket"])
        alice_socket = WireClient(url, alice["access_token"]).connect()
        chatter = Chatter(alice_socket, bob["userId"])
        chatter.start()
        wait(lambda: len(chatter.acked) >= 5)
        conn, rest = half_sent_request(port, "/api/chat/send", alice["access_token"],
                                       {"receiver": bob["userId"], "content": "in flight"})
        time.sleep(0.2)

        signalled = time.monotonic()
        first.proc.send_signal(signal.SIGTERM)
        assert alice_socket.wait_closed(timeout=GRACE), "the socket was not closed"
        assert wait(lambda: bob_events["disconnect"]), "python-socketio saw no disconnect"
        conn.sendall(rest)
        status, body = read_response(conn)
        assert status == 201, body
        in_flight = body["message"]
        code = first.proc.wait(GRACE + 5)
        seconds = time.monotonic() - signalled
        print(f"\nexit status {code} {seconds:.2f}s after SIGTERM; {len(chatter.acked)} socket "
              f"messages acknowledged; python-socketio saw {bob_events['disconnect']}")
        assert code == 0, first.log_text()
        assert seconds < GRACE
        chatter.join(10)
        assert alice_socket.closed_by == "transport"  # a clean close frame, no Engine.IO "do not return"
        with pytest.raises(requests.ConnectionError):
            requests.get(url + "/healthz", timeout=2)

        # A new process on the same port: python-socketio reconnects by itself.
        second = LiveServer(env=env, port=port, log_path=tmp_path / "second.log")
        with second:
            database.drop_indexes_nx_cannot_serve()
            assert wait(lambda: bob_events["connect"] >= 2, timeout=15), "bob did not reconnect"
            stored = [str(m["_id"]) for m in database.stored_messages()]
            acked = [m["id"] for m in chatter.acked] + [in_flight["id"]]
            assert sorted(stored) == sorted(set(stored)), "a message was stored twice"
            assert set(acked) <= set(stored), "an acknowledged message was lost"
            # And the reconnected client receives again.
            again = WireClient(url, alice["access_token"]).connect()
            assert again.call("chat message", {"receiver": bob["userId"], "content": "back"})["ok"]
            assert wait(lambda: "back" in [m["content"] for m in bob_events["messages"]])
            again.close()
            bob_client.disconnect()
        assert "Traceback" not in full_log(first)
        # nx-27017 cannot build a compound index naming `_id` over existing rows: the second
        # start-up logs that once (MongoDB builds it); no other traceback.
        assert full_log(second).count("Traceback") == \
            full_log(second).count("could not create the indexes")
        assert "shutting down: closing 2 socket(s)" in full_log(first)
    finally:
        first.stop()
        database.stop()


def wait(predicate, timeout=10):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


def full_log(server):
    """The server's whole log (LiveServer.log_text() keeps only its tail)."""
    return Path(server.log_path).read_text(errors="replace")
