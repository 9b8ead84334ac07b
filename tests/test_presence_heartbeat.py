"""Presence survives a dead process: heartbeats, and the sweep of a silent process's sockets.

The sweep itself runs in a background task of each live process (seen working across real
processes in test_scaleout.py); here it is called directly, on sockets recorded in the
shared store as if by another process.
"""
import time
from datetime import datetime, timedelta, timezone

import pymongo
import pytest
from bson import ObjectId

from chatapp.chat import heartbeat, presence
from chatapp.extensions import mongo
from chatapp.users import store as user_store

DEAD = "gone-host:4242:deadbeef"
LONG_AGO = datetime.now(timezone.utc) - timedelta(hours=1)


@pytest.fixture
def peers(app, auth, client):
    """Alice and Bob share a conversation, so each is told of the other's presence."""
    alice, bob = auth.user(), auth.user()
    response = client.post("/api/chat/send", json={"receiver": alice.id, "content": "hello"},
                           headers=bob.headers)
    assert response.status_code == 201
    return alice, bob


def record_socket(user, server, sid=None):
    """A socket another process recorded in the shared store."""
    user_store.add_socket(sid or f"sid-{ObjectId()}", ObjectId(user.id), server, "jti", "login")


def online(client, viewer, user):
    return client.get(f"/api/user/{user.id}", headers=viewer.headers).get_json()


def presence_events(sock):
    return [e["args"][0] for e in sock.get_received() if e["name"] == "presence"]


def test_the_sockets_of_a_silent_process_are_forgotten_and_peers_told(app, client, peers,
                                                                      socket_client):
    alice, bob = peers
    with app.app_context():
        record_socket(alice, DEAD)
        user_store.beat_server(DEAD, LONG_AGO)
    assert online(client, bob, alice)["online"] is True
    bob_sock = socket_client(bob)
    bob_sock.get_received()

    with app.app_context():
        heartbeat.beat()
        assert heartbeat.sweep() == [DEAD]

    profile = online(client, bob, alice)
    assert profile["online"] is False
    assert profile["last_seen"] is not None
    assert presence_events(bob_sock) == [{"user": alice.id, "online": False,
                                          "last_seen": profile["last_seen"]}]
    assert online(client, alice, bob)["online"] is True  # Bob's socket, on this process, stays
    with app.app_context():
        assert mongo.db.servers.find_one({"_id": DEAD}) is None
        assert heartbeat.sweep() == []


def test_a_user_with_a_socket_on_a_live_process_stays_online(app, client, peers, socket_client):
    alice, bob = peers
    alice_sock = socket_client(alice)
    bob_sock = socket_client(bob)
    with app.app_context():
        record_socket(alice, DEAD)
        user_store.beat_server(DEAD, LONG_AGO)
    bob_sock.get_received()
    with app.app_context():
        assert heartbeat.sweep() == [DEAD]
    assert online(client, bob, alice)["online"] is True
    assert presence_events(bob_sock) == []
    assert alice_sock.is_connected()


def test_a_process_that_beats_in_time_is_not_swept(app, client, peers):
    alice, bob = peers
    alive = "busy-host:7:cafe"
    with app.app_context():
        record_socket(alice, alive)
        user_store.beat_server(alive, datetime.now(timezone.utc) - timedelta(seconds=5))
        assert heartbeat.sweep() == []
    assert online(client, bob, alice)["online"] is True


def test_sockets_of_a_process_that_never_beat_are_swept(app, client, peers):
    alice, bob = peers
    with app.app_context():
        record_socket(alice, "never-beat:1:0")
        assert heartbeat.sweep() == ["never-beat:1:0"]
    assert online(client, bob, alice)["online"] is False


def test_a_process_never_sweeps_its_own_sockets(app, client, peers, socket_client):
    alice, bob = peers
    socket_client(alice)
    with app.app_context():
        user_store.beat_server(presence.SERVER_ID, LONG_AGO)  # e.g. its loop was held up
        assert heartbeat.sweep() == []
    assert online(client, bob, alice)["online"] is True


def test_the_first_socket_starts_the_heartbeat_before_it_is_recorded(app, auth, socket_client,
                                                                     monkeypatch):
    app.config["PRESENCE_HEARTBEAT_SECONDS"] = 3600  # the loop sleeps through the test
    monkeypatch.setattr(heartbeat, "_started_in", None)
    before = datetime.now(timezone.utc)
    socket_client(auth.user())
    with app.app_context():
        doc = mongo.db.servers.find_one({"_id": presence.SERVER_ID})
    assert doc is not None and doc["seen_at"] >= before - timedelta(seconds=1)


def test_a_socket_closed_while_the_database_is_down_is_forgotten_once_it_answers(
        app, client, peers, socket_client, monkeypatch):
    alice, bob = peers
    alice_sock = socket_client(alice)
    bob_sock = socket_client(bob)
    bob_sock.get_received()
    store = mongo.db
    unreachable = pymongo.MongoClient("mongodb://127.0.0.1:9/x", serverSelectionTimeoutMS=100)
    monkeypatch.setattr(presence, "FORGET_RETRY_SECONDS", 0.1)
    monkeypatch.setattr(mongo, "db", unreachable["x"])

    alice_sock.disconnect()  # no traceback, no crash: the record waits for the database
    assert store.sockets.count_documents({"user_id": ObjectId(alice.id)}) == 1

    monkeypatch.setattr(mongo, "db", store)
    deadline = time.monotonic() + 5
    while store.sockets.count_documents({"user_id": ObjectId(alice.id)}) and \
            time.monotonic() < deadline:
        time.sleep(0.05)
    assert store.sockets.count_documents({"user_id": ObjectId(alice.id)}) == 0
    assert online(client, bob, alice)["online"] is False
    assert [e["online"] for e in presence_events(bob_sock)] == [False]
    unreachable.close()
