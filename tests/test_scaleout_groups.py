"""Group conversations over the scaled-out deployment of tests/test_scaleout.py: two gunicorn
processes (deploy/gunicorn.conf.py) behind nginx, sharing Redis and one database (the
embedded store on MongoDB's wire protocol). Its `cluster` fixture starts (and stops by
PID) a cluster of this module's own.

A group whose members' sockets are spread over both processes: a message sent through
process 1 reaches every member's sockets on both processes exactly once (not the sending
socket); the owner removes a member over REST on process 1 while that member has sockets
on both processes: each of them gets `conversation` {type: member_removed} and then
nothing more of the group, while the others keep receiving, and the removed member's REST
calls on the group answer 404 on both processes.
"""
import threading
import time
from functools import partial

import pymongo
import requests
import socketio

from tests.test_scaleout import User, cluster, pytestmark  # noqa: F401 - fixture and marks

GROUP_EVENTS = ("chat message", "conversation", "message updated", "message deleted", "read",
                "delivered", "typing")
SETTLE = 1.5  # seconds a socket is given to receive what it must not receive


class Socket:
    """A python-socketio client pinned to one process (connected to its port, not through
    nginx), recording the group's events as they arrive."""

    def __init__(self, base, user, label):
        self.base, self.user, self.label = base, user, label
        self.events = []
        self.cond = threading.Condition()
        self.sio = socketio.Client(reconnection=False)
        for name in GROUP_EVENTS:
            self.sio.on(name, partial(self._record, name))
        self.sio.connect(base, auth={"token": user.token}, transports=["websocket"],
                         wait_timeout=10)

    def _record(self, name, data):
        with self.cond:
            self.events.append((name, data))
            self.cond.notify_all()

    def of(self, name, conversation=None):
        with self.cond:
            found = [data for event, data in self.events if event == name]
        if conversation is not None:
            found = [d for d in found if conversation_of(d) == conversation]
        return found

    def messages(self, message_id):
        return [m for m in self.of("chat message") if m["id"] == message_id]

    def wait_for(self, predicate, timeout=10):
        deadline = time.monotonic() + timeout
        with self.cond:
            while not predicate():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(f"{self.label}: nothing matching within {timeout}s; "
                                         f"got {self.events}")
                self.cond.wait(min(remaining, 0.2))

    def wait_message(self, message_id, timeout=10):
        self.wait_for(lambda: any(e == "chat message" and d["id"] == message_id
                                  for e, d in self.events), timeout)

    def close(self):
        if self.sio.connected:
            self.sio.disconnect()


def conversation_of(data):
    """The conversation id an event is about (`conversation` events carry the whole one)."""
    conversation = data.get("conversation") if isinstance(data, dict) else None
    return conversation.get("id") if isinstance(conversation, dict) else conversation


def assert_pinned(cluster, sock):  # noqa: F811 - the fixture's value
    """The socket's Engine.IO session lives on the process it connected to, and only there:
    the other process does not know its id (a harmless probe: a websocket-transport GET
    without Upgrade is refused by the owner without touching the session)."""
    other = cluster.p2 if sock.base == cluster.p1 else cluster.p1
    sid = sock.sio.eio.sid
    away = requests.get(other + "/socket.io/", timeout=5,
                        params={"EIO": "4", "transport": "polling", "sid": sid})
    assert away.status_code == 400 and "Invalid session" in away.text, (sock.label, away.text)
    home = requests.get(sock.base + "/socket.io/", timeout=5,
                        params={"EIO": "4", "transport": "websocket", "sid": sid})
    assert home.status_code == 400 and "Invalid session" not in home.text, (sock.label,
                                                                             home.text)


def call(base, user, method, path, expect, **kwargs):
    response = requests.request(method, base + path, headers=user.headers, timeout=10, **kwargs)
    assert response.status_code == expect, (method, base, path, response.status_code,
                                            response.text)
    return response.json()


def test_a_group_spread_over_both_processes_fans_out_once_and_a_removed_member_hears_nothing_more(
        cluster):  # noqa: F811 - the fixture
    started = time.monotonic()
    owner, ann, ben, cat, eve = (User(cluster) for _ in range(5))
    sockets = []
    try:
        def connect(base, user, label):
            sockets.append(Socket(base, user, label))
            return sockets[-1]

        o1 = connect(cluster.p1, owner, "owner@1")  # the sending socket
        o2 = connect(cluster.p2, owner, "owner@2")
        a1 = connect(cluster.p1, ann, "ann@1")
        b2 = connect(cluster.p2, ben, "ben@2")
        c2 = connect(cluster.p2, cat, "cat@2")  # the member removed while on process 2
        c1 = connect(cluster.p1, cat, "cat@1")
        e1 = connect(cluster.p1, eve, "eve@1")  # not in the group
        e2 = connect(cluster.p2, eve, "eve@2")
        for sock in sockets:
            assert_pinned(cluster, sock)
        assert {s.base for s in (o1, a1, c1)} == {cluster.p1}
        assert {s.base for s in (o2, b2, c2)} == {cluster.p2}

        # The group, created over REST on process 1: every member's sockets are told, once.
        conv = call(cluster.p1, owner, "POST", "/api/chat/groups", 201,
                    json={"title": "Spread out", "members": [ann.id, ben.id, cat.id]})
        cid = conv["conversation"]["id"]
        members = (o1, o2, a1, b2, c1, c2)
        for sock in members:
            sock.wait_for(lambda s=sock: s.of("conversation", cid))

        # A message through process 1 (socket): every other socket of every member, on
        # both processes, exactly once; never the sending socket, never a stranger.
        ack = o1.sio.call("chat message", {"conversation": cid, "content": "hello all",
                                           "client_id": "spread-1"}, timeout=10)
        assert ack["ok"] is True, ack
        first = ack["message"]
        assert first["conversation"] == cid and first["receiver"] is None
        for sock in (o2, a1, b2, c1, c2):
            sock.wait_message(first["id"])
        time.sleep(SETTLE)
        for sock in (o2, a1, b2, c1, c2):
            assert sock.messages(first["id"]) == [first], sock.label
        assert o1.messages(first["id"]) == []
        assert e1.events == [] and e2.events == []

        # The owner removes cat over REST on process 1 while cat's sockets are on both.
        answer = call(cluster.p1, owner, "DELETE",
                      f"/api/chat/conversations/{cid}/members/{cat.id}", 200)
        assert cat.id not in {m["user"]["id"] for m in answer["conversation"]["members"]}
        removed_seen = {}
        for sock in (o1, o2, a1, b2, c1, c2):
            sock.wait_for(lambda s=sock: any(e["type"] == "member_removed"
                                             for e in s.of("conversation", cid)))
            [event] = [e for e in sock.of("conversation", cid) if e["type"] == "member_removed"]
            assert event["user"] == cat.id and event["by"] == owner.id
            assert cat.id not in {m["user"]["id"] for m in event["conversation"]["members"]}
            removed_seen[sock.label] = len(sock.events)

        # cat's REST calls on the group: 404 on both processes, nothing stored
        for base in (cluster.p1, cluster.p2):
            path = f"/api/chat/conversations/{cid}"
            assert call(base, cat, "GET", path, 404)["error"]["code"] == "not_found"
            call(base, cat, "GET", path + "/messages", 404)
            call(base, cat, "POST", path + "/messages", 404, json={"content": "still here?"})
            call(base, cat, "POST", path + "/read", 404, json={})
            call(base, cat, "DELETE", f"{path}/members/{cat.id}", 404)
        refused = c2.sio.call("chat message", {"conversation": cid, "content": "hello?"},
                              timeout=10)
        assert refused["ok"] is False and refused["error"]["code"] == "not_found", refused
        assert cid not in {e["conversation"]["id"] for e in call(
            cluster.p2, cat, "GET", "/api/chat/conversations", 200)}

        # Two more messages, one per process and transport: the members get them, cat not.
        ack = a1.sio.call("chat message", {"conversation": cid, "content": "cat left"},
                          timeout=10)
        assert ack["ok"] is True, ack
        second = ack["message"]
        third = call(cluster.p2, ben, "POST", f"/api/chat/conversations/{cid}/messages", 201,
                     json={"content": "indeed"})["message"]
        assert (second["seq"], third["seq"]) == (first["seq"] + 1, first["seq"] + 2)
        for sock in (o1, o2, b2):
            sock.wait_message(second["id"])
        for sock in (o1, o2, a1, b2):
            sock.wait_message(third["id"])
        time.sleep(SETTLE)
        for sock in (o1, o2, b2):
            assert sock.messages(second["id"]) == [second], sock.label
        for sock in (o1, o2, a1, b2):
            assert sock.messages(third["id"]) == [third], sock.label
        assert a1.messages(second["id"]) == []  # the sending socket
        for sock in (c1, c2):
            assert sock.events[removed_seen[sock.label]:] == [], (sock.label, sock.events)
            assert [(e, d.get("type") or d.get("content")) for e, d in sock.events] == [
                ("conversation", "created"), ("chat message", "hello all"),
                ("conversation", "member_removed")], sock.label
        assert e1.events == [] and e2.events == []
        history = call(cluster.p1, owner, "GET", f"/api/chat/conversations/{cid}/messages", 200)
        assert [m["content"] for m in history] == ["indeed", "cat left", "hello all"]
    finally:
        for sock in sockets:
            sock.close()
    print(f"\nscale-out group test: {time.monotonic() - started:.1f}s (cluster already up)")


def test_two_first_messages_racing_in_two_processes_make_one_conversation(cluster):
    """For each of 8 new pairs, both people send their first message at the same moment,
    one through each process: every pair ends with one direct conversation holding both
    messages, with distinct seqs, listed once on each side."""
    pairs = [(User(cluster), User(cluster)) for _ in range(8)]
    start = threading.Barrier(2 * len(pairs))
    answers = {}

    def first_message(base, sender, receiver):
        start.wait(timeout=10)
        response = requests.post(base + "/api/chat/send", headers=sender.headers, timeout=10,
                                 json={"receiver": receiver.id, "content": f"hi {receiver.name}"})
        answers[(sender.id, receiver.id)] = response

    threads = [threading.Thread(target=first_message, args=args) for a, b in pairs
               for args in ((cluster.p1, a, b), (cluster.p2, b, a))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(15)
    stored = pymongo.MongoClient(cluster.db_url, serverSelectionTimeoutMS=5000).get_database()
    for a, b in pairs:
        ab, ba = answers[(a.id, b.id)].json()["message"], answers[(b.id, a.id)].json()["message"]
        assert ab["conversation"] == ba["conversation"], "two conversations for one pair"
        assert {ab["seq"], ba["seq"]} == {1, 2}
        pair = ":".join(sorted((a.id, b.id)))
        assert len(stored["conversations"].find({"pair": pair}).to_list()) == 1, pair
        for viewer, base in ((a, cluster.p1), (b, cluster.p2)):
            listed = requests.get(base + "/api/chat/conversations", headers=viewer.headers,
                                  timeout=10).json()
            assert [e["conversation"]["id"] for e in listed] == [ab["conversation"]]
            assert listed[0]["conversation"]["member_count"] == 2
