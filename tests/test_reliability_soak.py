"""Promises 1 and 2: every acknowledged message is stored once and delivered once, in order.

A soak against a live eventlet server: 20 users each send 50 messages to random peers,
over REST and over sockets, some of them retried with the same `client_id` after the
connection was dropped mid-send; meanwhile every user's "phone" (a receiving socket)
disconnects and reconnects at random, catching up through the contract's
`GET /api/chat/conversations` + `.../messages/<me>/<peer>?after=<last id seen>`.

Checked at the end:
- every acknowledged message is in the history exactly once; one message per client_id;
- a phone connected while a message was sent got it exactly once (a phone never gets an
  id twice, across all its connections);
- a phone that was away got every message it missed in the catch-up right after it
  reconnected, exactly the conversation's messages after its cursor, in order;
- per conversation, a phone sees each peer's messages in the order the server
  acknowledged them (seq order), and history holds that same order.

Phones read with tests/sio_wire.py (one reader thread): python-socketio's client
dispatches each packet on a new thread, which would blur the order being checked.
"""
import random
import threading
import time
import uuid
from collections import Counter, defaultdict
from pathlib import Path
from urllib.parse import urljoin

import pytest
import requests

from tests.live import LiveServer, database_env
from tests.sio_wire import WireClient

USERS = 20
MESSAGES_EACH = 50
PASSWORD = "correct horse battery"
# A phone counts as connected for a message when it connected before the send started and
# disconnected at least this long after the ack: the event left the server before the ack,
# this is its time to cross loopback and the client's reader thread.
DELIVERY_MARGIN = 2.0

pytestmark = pytest.mark.live


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    log = tmp_path_factory.mktemp("soak") / "server.log"
    with LiveServer(log_path=log, env={"LOG_LEVEL": "WARNING", **database_env("soak")}) as live:
        yield live


class User:
    def __init__(self, url, name):
        self.url = url
        self.name = name
        email = f"{name}@example.com"
        http = requests.Session()
        response = http.post(url + "/api/user/register", timeout=20,
                             json={"username": name, "email": email, "password": PASSWORD})
        assert response.status_code == 201, response.text
        body = http.post(url + "/api/user/login", timeout=20,
                         json={"email": email, "password": PASSWORD}).json()
        self.id, self.token = body["userId"], body["access_token"]
        self.headers = {"Authorization": f"Bearer {self.token}"}


class Send:
    """One message as its sender saw it: when it started, when it was acknowledged, what."""

    def __init__(self, sender, receiver, client_id, transport):
        self.sender, self.receiver = sender, receiver
        self.client_id, self.transport = client_id, transport
        self.started = time.monotonic()
        self.acked = None
        self.message = None
        self.retried = False


class Sender(threading.Thread):
    """Sends MESSAGES_EACH messages, one at a time (each waits for its ack)."""

    def __init__(self, user, peers, rng):
        super().__init__(daemon=True)
        self.user, self.peers, self.rng = user, peers, rng
        self.http = requests.Session()
        self.socket = None
        self.sends = []
        self.error = None

    def run(self):
        try:
            self.socket = WireClient(self.user.url, self.user.token).connect()
            for _ in range(MESSAGES_EACH):
                self.send_one()
                time.sleep(self.rng.uniform(0, 0.3))  # spread over ~15 s of phones coming and going
            self.socket.close()
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            self.error = exc

    def send_one(self):
        peer = self.rng.choice(self.peers)
        transport = self.rng.choice(["rest", "socket"])
        send = Send(self.user.id, peer.id, uuid.uuid4().hex, transport)
        body = {"receiver": peer.id, "content": f"{self.user.name}->{peer.name} {send.client_id}",
                "client_id": send.client_id}
        drop_first = self.rng.random() < 0.12
        send.retried = drop_first
        if transport == "rest":
            message = self.send_rest(body, drop_first)
        else:
            message = self.send_socket(body, drop_first)
        send.acked = time.monotonic()
        send.message = message
        self.sends.append(send)
        if self.rng.random() < 0.05:  # a plain retry after the ack: the same message, no copy
            again = self.send_rest(body, False, expect=(200,)) if transport == "rest" \
                else self.send_socket(body, False)
            assert again["id"] == message["id"], (again, message)

    def send_rest(self, body, drop_first, expect=(200, 201)):
        if drop_first:
            try:  # the request goes out, the client stops listening at once
                self.http.post(self.user.url + "/api/chat/send", json=body, headers=self.user.headers,
                               timeout=(5, 0.001))
            except requests.RequestException:
                pass
        response = self.http.post(self.user.url + "/api/chat/send", json=body, timeout=20,
                                  headers=self.user.headers)
        assert response.status_code in expect, response.text
        return response.json()["message"]

    def send_socket(self, body, drop_first):
        if drop_first:
            self.socket.emit("chat message", body)  # no ack awaited: the phone loses its network
            self.socket.drop()
            self.socket = WireClient(self.user.url, self.user.token).connect()
        ack = self.socket.call("chat message", body, timeout=20)
        assert ack["ok"] is True, ack
        return ack["message"]


class Session:
    """One connection of a phone: when it was up, what arrived live, what catch-up returned."""

    def __init__(self):
        self.connected = None
        self.ended = None
        self.live = []  # (message, arrival time), in arrival order
        self.catchups = []  # (peer id, cursor message or None, [messages in returned order])


class Phone(threading.Thread):
    """The user's receiving socket: connects, drops or closes, reconnects and catches up."""

    def __init__(self, user, rng, stop):
        super().__init__(daemon=True)
        self.user, self.rng, self.stop = user, rng, stop
        self.http = requests.Session()
        self.sessions = []
        self.seen = {}  # message id -> message: everything this phone ever saw
        self.lock = threading.Lock()
        self.client = None
        self.error = None

    def connect(self):
        # The cursors are what the phone saw before this connection: events that arrive live
        # during the catch-up must not move them past a message still to be fetched.
        cursors = self.cursors()
        session = Session()
        self.client = WireClient(self.user.url, self.user.token,
                                 on_event=lambda name, data, at: self.on_event(session, name, data, at))
        self.client.connect()
        session.connected = time.monotonic()
        self.sessions.append(session)
        self.catch_up(session, cursors)

    def on_event(self, session, name, data, at):
        if name == "chat message":
            with self.lock:
                session.live.append((data, at))
                self.seen[data["id"]] = data

    def disconnect(self):
        self.sessions[-1].ended = time.monotonic()
        if self.rng.random() < 0.5:
            self.client.drop()
        else:
            self.client.close()

    def run(self):
        try:
            while not self.stop.is_set():
                self.stop.wait(self.rng.uniform(2.0, 5.0))
                if self.stop.is_set():
                    break
                self.disconnect()
                self.stop.wait(self.rng.uniform(0.3, 1.5))
                self.connect()
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            self.error = exc

    def catch_up(self, session, cursors):
        """The contract's catch-up: which conversations moved, then what came after our cursor."""
        response = self.http.get(self.user.url + "/api/chat/conversations", headers=self.user.headers,
                                 timeout=20)
        assert response.status_code == 200, response.text
        for conversation in response.json():
            peer = conversation["user"]["id"]
            cursor = cursors.get(peer)
            if cursor is not None and conversation["last_message"]["seq"] <= cursor["seq"]:
                continue
            messages = self.fetch_after(peer, cursor)
            session.catchups.append((peer, cursor, messages))
            with self.lock:
                for message in messages:
                    self.seen[message["id"]] = message

    def cursors(self):
        """Per peer, the newest message (highest seq) of the conversation this phone has seen."""
        newest = {}
        with self.lock:
            for m in self.seen.values():
                peer = m["receiver"] if m["sender"] == self.user.id else m["sender"]
                if peer not in newest or m["seq"] > newest[peer]["seq"]:
                    newest[peer] = m
        return newest

    def fetch_after(self, peer, cursor):
        """Every page after the cursor (oldest pages first); each page is newest first."""
        url = f"{self.user.url}/api/chat/messages/{self.user.id}/{peer}"
        params = {"limit": 20, **({"after": cursor["id"]} if cursor else {})}
        pages = []
        while url:
            response = self.http.get(url, params=params, headers=self.user.headers, timeout=20)
            assert response.status_code == 200, response.text
            page = response.json()
            assert [m["seq"] for m in page] == sorted((m["seq"] for m in page), reverse=True)
            pages.append(page)
            url, params = next_url(self.user.url, response), None
        if cursor is None:  # no cursor: the pages walked backwards (newest page first)
            pages.reverse()
        return [m for page in pages for m in reversed(page)]  # oldest first


def full_history(user, peer):
    url = f"{user.url}/api/chat/messages/{user.id}/{peer.id}"
    params, messages = {"limit": 200}, []
    while url:
        response = requests.get(url, params=params, headers=user.headers, timeout=20)
        assert response.status_code == 200, response.text
        messages.extend(response.json())
        url, params = next_url(user.url, response), None
    return sorted(messages, key=lambda m: m["seq"])


def next_url(base, response):
    """The `Link: <path>; rel="next"` of a page (a path, never a host), or None."""
    path = response.links.get("next", {}).get("url")
    return urljoin(base, path) if path else None


def test_soak_every_acknowledged_message_stored_once_delivered_once_in_order(server):
    rng = random.Random(7)
    started = time.monotonic()
    users = [User(server.url, f"soak{n:02d}_{uuid.uuid4().hex[:6]}") for n in range(USERS)]
    stop = threading.Event()
    phones = [Phone(u, random.Random(rng.random()), stop) for u in users]
    for phone in phones:
        phone.connect()
    senders = [Sender(u, [p for p in users if p is not u], random.Random(rng.random()))
               for u in users]
    for thread in phones + senders:
        thread.start()
    for sender in senders:
        sender.join(120)
        assert not sender.is_alive(), "a sender hung"
        assert sender.error is None, repr(sender.error)
    stop.set()
    for phone in phones:
        phone.join(30)
        assert phone.error is None, repr(phone.error)
        if not phone.client.connected:
            phone.connect()  # the last reconnect catches up on whatever it missed
    time.sleep(DELIVERY_MARGIN)
    for phone in phones:
        phone.sessions[-1].ended = time.monotonic()
        phone.client.close()
    soak_seconds = time.monotonic() - started

    sends = [s for sender in senders for s in sender.sends]
    by_id = {s.message["id"]: s for s in sends}
    histories = {}
    for a in users:
        for b in users:
            if a.id < b.id:
                histories[(a.id, b.id)] = histories[(b.id, a.id)] = full_history(a, b)
    stored = {m["id"]: m for pair, h in histories.items() if pair[0] < pair[1] for m in h}
    checks = {"stored once": check_stored_once(sends, by_id, stored),
              "delivered live once": check_delivered_once(phones, by_id),
              "caught up": check_catch_up(phones, by_id, histories),
              "in order": check_order(phones, sends, histories)}
    latencies = sorted(at - by_id[m["id"]].acked for p in phones for s in p.sessions
                       for m, at in s.live if m["receiver"] == p.user.id)
    print(f"\nsoak: {len(sends)} messages ({sum(s.retried for s in sends)} retried after a drop) "
          f"in {soak_seconds:.1f}s; {sum(len(p.sessions) for p in phones)} phone connections, "
          f"{sum(len(s.catchups) for p in phones for s in p.sessions)} catch-ups; checks {checks}; "
          f"live event after its ack: p50 {latencies[len(latencies) // 2] * 1000:+.0f} ms, "
          f"max {latencies[-1] * 1000:+.0f} ms (margin {DELIVERY_MARGIN * 1000:.0f} ms)")
    assert "Traceback" not in full_log(server)


def check_stored_once(sends, by_id, stored):
    """Every acked message once in history; one message per client_id; nothing else stored."""
    assert len(sends) == USERS * MESSAGES_EACH
    assert len(by_id) == len(sends), "two client_ids were acknowledged with the same message"
    assert set(stored) == set(by_id), "history and acknowledgements differ"
    per_client_id = Counter((m["sender"], m.get("client_id")) for m in stored.values())
    assert max(per_client_id.values()) == 1, "a client_id was stored twice"
    for message_id, send in by_id.items():
        assert stored[message_id]["client_id"] == send.client_id
        assert stored[message_id]["seq"] == send.message["seq"]
    return len(sends)


def check_delivered_once(phones, by_id):
    """Connected for the whole send: received exactly once. Never anything twice."""
    checks = 0
    for phone in phones:
        received = Counter(m["id"] for s in phone.sessions for m, _ in s.live)
        assert max(received.values(), default=1) == 1, f"{phone.user.name} got a message twice"
        for send in by_id.values():
            if send.receiver != phone.user.id:
                continue
            for session in phone.sessions:
                if session.connected <= send.started and send.acked + DELIVERY_MARGIN <= session.ended:
                    live_ids = {m["id"] for m, _ in session.live}
                    assert send.message["id"] in live_ids, \
                        f"{phone.user.name} was connected but missed {send.message['content']}"
                    checks += 1
    assert checks > 100, "too few messages were sent to connected phones to prove anything"
    return checks


def check_catch_up(phones, by_id, histories):
    """Each catch-up returns exactly the conversation after its cursor, in order, and a
    phone that was away gets what it missed in the catch-up right after it reconnects."""
    checks = 0
    for phone in phones:
        me = phone.user.id
        for session in phone.sessions:
            for peer, cursor, messages in session.catchups:
                history = histories[(me, peer)]
                after = [m for m in history if cursor is None or m["seq"] > cursor["seq"]]
                assert [m["id"] for m in messages] == [m["id"] for m in after[:len(messages)]]
                checks += 1
        live = {m["id"] for s in phone.sessions for m, _ in s.live}
        for before, session in zip(phone.sessions, phone.sessions[1:]):
            caught_up = {m["id"] for _, _, messages in session.catchups for m in messages}
            for send in by_id.values():
                # Sent and acknowledged between two connections, and not received live (a
                # socket being closed may still get events until the server lets it go).
                if send.receiver == me and before.ended <= send.started \
                        and send.acked <= session.connected and send.message["id"] not in live:
                    assert send.message["id"] in caught_up, \
                        f"{phone.user.name} missed {send.message['content']} while away, not caught up"
                    checks += 1
        everything = {m["id"] for pair, h in histories.items() if pair[0] == me for m in h}
        assert everything <= set(phone.seen), f"{phone.user.name} never saw some of its messages"
    return checks


def check_order(phones, sends, histories):
    """A phone sees each peer's messages in ack order; history has that same order."""
    acked_order = defaultdict(list)  # (sender, receiver) -> message ids in ack order
    for send in sorted(sends, key=lambda s: s.acked):
        acked_order[(send.sender, send.receiver)].append(send.message)
    checks = 0
    for (sender, receiver), messages in acked_order.items():
        seqs = [m["seq"] for m in messages]
        assert seqs == sorted(set(seqs)), "acks of one sender to one peer went backwards in seq"
        in_history = [m["id"] for m in histories[(sender, receiver)] if m["sender"] == sender]
        assert in_history == [m["id"] for m in messages]
        checks += 1
    for phone in phones:
        for session in phone.sessions:
            arrived = defaultdict(list)  # (sender, receiver) -> ids in arrival order
            for message, _ in session.live:
                arrived[(message["sender"], message["receiver"])].append(message["id"])
            for pair, ids in arrived.items():
                order = [m["id"] for m in acked_order[pair]]
                positions = [order.index(message_id) for message_id in ids]
                assert positions == sorted(positions), \
                    f"{phone.user.name} saw messages of {pair} out of the acknowledged order"
                checks += 1
    return checks


def full_log(server):
    """The server's whole log (LiveServer.log_text() keeps only its tail)."""
    return Path(server.log_path).read_text(errors="replace")
