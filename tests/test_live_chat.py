"""End to end against the real eventlet server (`live_server`): python-socketio clients over
the websocket transport, REST with `requests`."""
import itertools
import json
import threading
import time
import uuid
from datetime import datetime, timedelta, timezone

import jwt as pyjwt
import pytest
import requests
import socketio

pytestmark = pytest.mark.live
PASSWORD = "correct horse battery"
_names = itertools.count(1)


class LiveUser:
    def __init__(self, server):
        name = f"live{uuid.uuid4().hex[:8]}{next(_names)}"
        self.base = server.url
        body = {"username": name, "email": f"{name}@example.com", "password": PASSWORD}
        assert requests.post(self.base + "/api/user/register", json=body, timeout=10).ok
        login = requests.post(self.base + "/api/user/login", timeout=10,
                              json={"email": body["email"], "password": PASSWORD}).json()
        self.id, self.token = login["userId"], login["access_token"]
        self.headers = {"Authorization": f"Bearer {self.token}"}

    def get(self, path, **params):
        return requests.get(self.base + path, headers=self.headers, params=params, timeout=10)

    def post(self, path, body=None):
        return requests.post(self.base + path, headers=self.headers, json=body, timeout=10)


class Socket:
    """A python-socketio client that records every event it receives."""

    def __init__(self):
        self.sio = socketio.Client(reconnection=False)
        self.events, self.connect_errors = [], []
        self._lock = threading.Lock()
        self.sio.on("*", self._record)
        self.sio.on("connect_error", self.connect_errors.append)

    def _record(self, event, *args):
        with self._lock:
            self.events.append((event, args[0] if args else None))

    def connect(self, url, **kwargs):
        kwargs.setdefault("transports", ["websocket"])
        self.sio.connect(url, wait_timeout=5, **kwargs)
        return self

    def take(self, name=None):
        with self._lock:
            out, self.events = self.events, []
        return [e for e in out if name is None or e[0] == name]

    def wait_for(self, count, name=None, timeout=5.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if len([e for e in self.events if name is None or e[0] == name]) >= count:
                    break
            time.sleep(0.02)
        return self.take(name)

    def call(self, event, data, timeout=10):
        return self.sio.call(event, data, timeout=timeout)

    def close(self):
        if self.sio.connected:
            self.sio.disconnect()


@pytest.fixture
def sockets():
    """Factory of recording clients; every one is disconnected at the end, even on failure."""
    made = []

    def make():
        made.append(Socket())
        return made[-1]

    yield make
    for s in made:
        try:
            s.close()
        except Exception:  # noqa: BLE001 - best effort teardown
            pass


@pytest.fixture
def users(live_server):
    return lambda n: [LiveUser(live_server) for _ in range(n)]


# --- authentication -------------------------------------------------------------------------

@pytest.mark.parametrize("how", ["auth", "header", "bearer", "query"])
def test_each_way_to_authenticate(live_server, sockets, users, how):
    alice, bob = users(2)
    url, kwargs = live_server.url, {}
    if how == "auth":
        kwargs["auth"] = {"token": bob.token}
    elif how == "header":
        kwargs["headers"] = {"access_token": bob.token}
    elif how == "bearer":
        kwargs["headers"] = {"Authorization": f"Bearer {bob.token}"}
    else:
        url += f"?token={bob.token}"
    b = sockets().connect(url, **kwargs)
    sent = alice.post("/api/chat/send", {"receiver": bob.id, "content": how}).json()["message"]
    assert b.wait_for(1, "chat message") == [("chat message", sent)]


LIVE_SECRET = "live-test-secret-key-that-is-long-enough-0123456789"  # tests/live.py


def _token(sub, secret=LIVE_SECRET, **claims):
    """An access token made like the server's, with some claims overridden."""
    now = datetime.now(timezone.utc)
    payload = {"sub": sub, "type": "access", "jti": uuid.uuid4().hex, "sid": uuid.uuid4().hex,
               "iat": now, "nbf": now, "exp": now + timedelta(hours=1), "fresh": False, **claims}
    return pyjwt.encode(payload, secret, algorithm="HS256")


def test_refused_connections_tell_the_client_why(live_server, sockets, users):
    (user,) = users(1)
    revoked = LiveUser(live_server)
    assert revoked.post("/api/user/logout").status_code == 200
    past = datetime.now(timezone.utc) - timedelta(minutes=5)
    cases = [
        ({}, "unauthorized"),
        ({"auth": {"token": "garbage"}}, "unauthorized"),
        ({"auth": {"token": _token(user.id, secret="x" * 40)}}, "unauthorized"),
        ({"auth": {"token": _token(user.id, type="refresh")}}, "unauthorized"),
        ({"headers": {"access_token": _token(user.id, exp=past, iat=past - timedelta(hours=1),
                                             nbf=past - timedelta(hours=1))}},
         "token_expired"),
        ({"headers": {"Authorization": f"Bearer {revoked.token}"}}, "token_revoked"),
        ({"url": f"?token={revoked.token}"}, "token_revoked"),
    ]
    genuine = sockets().connect(live_server.url, auth={"token": _token(user.id)})
    assert genuine.sio.connected  # the forged tokens below differ only where the case says
    for kwargs, code in cases:
        s = sockets()
        url = live_server.url + kwargs.pop("url", "")
        with pytest.raises(socketio.exceptions.ConnectionError):
            s.connect(url, **kwargs)
        assert s.connect_errors == [{"message": code, "data": {"code": code}}], kwargs
        assert not s.sio.connected


# --- the original API, unchanged --------------------------------------------------------------

def test_original_api_flow(live_server, sockets, users):
    alice, bob = users(2)
    a = sockets().connect(live_server.url, headers={"access_token": alice.token})
    b = sockets().connect(live_server.url, headers={"access_token": bob.token})
    b.sio.emit("message", json.dumps({"event": "join", "data": bob.id}))
    assert a.call("message", json.dumps({"event": "join", "data": alice.id})) == {"ok": True}
    a.sio.emit("message", json.dumps({"event": "chat message", "data": {
        "sender": alice.id, "receiver": bob.id, "content": "hello from 2019"}}))
    [(name, message)] = b.wait_for(1, "chat message")
    assert (message["sender"], message["receiver"], message["content"]) == (
        alice.id, bob.id, "hello from 2019")
    history = bob.get(f"/api/chat/messages/{alice.id}/{bob.id}").json()
    assert history == [message]


# --- delivery ----------------------------------------------------------------------------------

def test_multi_socket_delivery_and_acks(live_server, sockets, users):
    alice, bob = users(2)
    a1, a2 = (sockets().connect(live_server.url, auth={"token": alice.token}) for _ in range(2))
    b1, b2 = (sockets().connect(live_server.url, auth={"token": bob.token}) for _ in range(2))
    ack = a1.call("chat message", {"receiver": bob.id, "content": "to all", "client_id": "x1"})
    assert ack["ok"] is True
    for s in (a2, b1, b2):
        assert s.wait_for(1, "chat message") == [("chat message", ack["message"])]
    assert a1.call("chat message", {"receiver": bob.id, "content": "again",
                                    "client_id": "x1"}) == ack
    self_ack = a1.call("chat message", {"receiver": alice.id, "content": "memo"})
    assert a2.wait_for(1, "chat message") == [("chat message", self_ack["message"])]
    time.sleep(0.3)
    assert a1.take("chat message") == [] and a2.take("chat message") == []
    assert b1.take("chat message") == [] and b2.take("chat message") == []
    error = a1.call("chat message", {"receiver": bob.id, "content": "x", "sender": bob.id})
    assert error["ok"] is False and error["error"]["code"] == "forbidden"


def test_seq_is_unique_and_increasing_under_concurrent_senders(live_server, sockets, users):
    alice, bob = users(2)
    a_socks = [sockets().connect(live_server.url, auth={"token": alice.token}) for _ in range(3)]
    b = sockets().connect(live_server.url, auth={"token": bob.token})
    acks, errors = [], []

    def send_many(sock, sender, receiver, count, prefix):
        try:
            for i in range(count):
                ack = sock.call("chat message", {"receiver": receiver.id,
                                                 "content": f"{prefix}-{i}"}, timeout=20)
                acks.append(ack)
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(repr(exc))

    plan = [(a_socks[0], alice, bob, 34, "a0"), (a_socks[1], alice, bob, 33, "a1"),
            (a_socks[2], alice, bob, 33, "a2"), (b, bob, alice, 40, "b")]
    threads = [threading.Thread(target=send_many, args=p) for p in plan]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors and all(not t.is_alive() for t in threads)
    assert len(acks) == 140 and all(ack["ok"] for ack in acks)
    seqs = [ack["message"]["seq"] for ack in acks]
    assert len(set(seqs)) == 140
    history = bob.get(f"/api/chat/messages/{alice.id}/{bob.id}", limit=200).json()
    assert len(history) == 140
    assert sorted(m["id"] for m in history) == sorted(ack["message"]["id"] for ack in acks)
    stored = [m["seq"] for m in history]
    assert all(x > y for x, y in zip(stored, stored[1:])), "newest first, strictly by seq"
    # every socket got each message from elsewhere exactly once
    from_alice = {ack["message"]["id"] for ack in acks if ack["message"]["sender"] == alice.id}
    got = [m["id"] for _, m in b.wait_for(100, "chat message", timeout=10)]
    assert sorted(got) == sorted(from_alice)
    for i, sock in enumerate(a_socks):
        expected = 140 - plan[i][3]
        got = [m["content"] for _, m in sock.wait_for(expected, "chat message", timeout=10)]
        assert len(got) == len(set(got)) == expected
        assert not any(c.startswith(f"a{i}-") for c in got)


def test_catch_up_after_disconnect(live_server, sockets, users):
    alice, bob = users(2)
    a = sockets().connect(live_server.url, auth={"token": alice.token})
    b = sockets().connect(live_server.url, auth={"token": bob.token})
    for i in range(3):
        a.call("chat message", {"receiver": bob.id, "content": f"seen {i}"})
    seen = b.wait_for(3, "chat message")
    last_seen = seen[-1][1]["id"]
    b.close()
    missed = [a.call("chat message", {"receiver": bob.id, "content": f"missed {i}"})["message"]
              for i in range(4)]
    alice.post("/api/chat/send", {"receiver": bob.id, "content": "missed over rest"})
    edit = requests.patch(f"{live_server.url}/api/chat/messages/{missed[1]['id']}",
                          headers=alice.headers, json={"content": "edited"}, timeout=10)
    assert edit.status_code == 200
    convs = bob.get("/api/chat/conversations").json()
    assert convs[0]["user"]["id"] == alice.id
    assert convs[0]["last_message"]["content"] == "missed over rest"
    catch_up = bob.get(f"/api/chat/messages/{bob.id}/{alice.id}", after=last_seen).json()
    contents = [m["content"] for m in reversed(catch_up)]
    assert contents == ["missed 0", "edited", "missed 2", "missed 3", "missed over rest"]
    b2 = sockets().connect(live_server.url, auth={"token": bob.token})
    ack = a.call("chat message", {"receiver": bob.id, "content": "back online"})
    assert b2.wait_for(1, "chat message") == [("chat message", ack["message"])]


# --- robustness --------------------------------------------------------------------------------

def test_flood_of_malformed_events_leaves_everyone_served(live_server, sockets, users):
    alice, bob = users(2)
    a = sockets().connect(live_server.url, auth={"token": alice.token})
    b = sockets().connect(live_server.url, auth={"token": bob.token})
    bad = [("chat message", None), ("chat message", "x"), ("chat message", [1]),
           ("chat message", {"receiver": bob.id}), ("chat message", {"receiver": 1, "content": 2}),
           ("chat message", {"receiver": bob.id, "content": "y" * 100_000}),
           ("message", "{oops"), ("message", json.dumps({"event": ["x"]})),
           ("typing", {"receiver": bob.id, "typing": "no"}), ("read", 7),
           ("delivered", {"peer": bob.id})]
    for i in range(200):
        event, payload = bad[i % len(bad)]
        ack = a.call(event, payload)
        code = "invalid_json" if payload == "{oops" else "validation_error"
        assert ack["ok"] is False and ack["error"]["code"] == code, (event, ack)
    assert a.sio.connected
    ack = a.call("chat message", {"receiver": bob.id, "content": "still works"})
    assert ack["ok"] is True
    assert b.wait_for(1, "chat message") == [("chat message", ack["message"])]


def test_oversized_packet_closes_only_that_socket(live_server, sockets, users):
    alice, bob = users(2)
    a = sockets().connect(live_server.url, auth={"token": alice.token})
    b = sockets().connect(live_server.url, auth={"token": bob.token})
    a.sio.emit("chat message", {"receiver": bob.id, "content": "z" * 1_100_000})
    deadline = time.monotonic() + 5
    while a.sio.connected and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not a.sio.connected
    assert b.sio.connected
    a2 = sockets().connect(live_server.url, auth={"token": alice.token})
    ack = a2.call("chat message", {"receiver": bob.id, "content": "small"})
    assert ack["ok"] is True
    assert b.wait_for(1, "chat message") == [("chat message", ack["message"])]
