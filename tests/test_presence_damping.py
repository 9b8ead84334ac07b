"""Presence floods and races: a flapping user is announced once, and two processes seeing
the same change at the same instant announce it once (the claim in the user's document)."""
import time

import pytest
from bson import ObjectId

from chatapp import create_app
from chatapp.chat import presence
from chatapp.extensions import socketio
from chatapp.users import store as user_store
from config import TestingConfig

from tests.conftest import Auth
from tests.test_chat_rest import sent

DAMPING = 1


def presence_events(sock):
    return [e["args"][0] for e in sock.get_received() if e["name"] == "presence"]


def connect(app, client, user):
    return socketio.test_client(app, auth={"token": user.token}, flask_test_client=client)


@pytest.fixture
def damped():
    app = create_app(TestingConfig, PRESENCE_DAMPING_SECONDS=DAMPING)
    client = app.test_client()
    alice, bob = Auth(client).user(), Auth(client).user()
    sent(client, alice, bob, "we share a conversation")
    watcher = connect(app, client, bob)
    yield app, client, alice, bob, watcher
    watcher.disconnect()


def test_a_flapping_user_is_announced_once(damped):
    app, client, alice, bob, watcher = damped
    presence_events(watcher)
    for _ in range(10):  # a reconnect loop, faster than the damping
        sock = connect(app, client, alice)
        sock.disconnect()
    sock = connect(app, client, alice)
    time.sleep(DAMPING + 0.5)
    assert [e["online"] for e in presence_events(watcher)] == [True]  # once, and still online
    assert client.get(f"/api/user/{alice.id}", headers=bob.headers).get_json()["online"]
    sock.disconnect()
    assert presence_events(watcher) == []  # not yet: she may be back at once
    time.sleep(DAMPING + 0.5)
    [offline] = presence_events(watcher)
    assert offline["online"] is False and offline["last_seen"]


def test_two_processes_connecting_one_user_at_once_announce_online_once(app, client, auth,
                                                                       monkeypatch):
    alice, bob = auth.user(), auth.user()
    sent(client, alice, bob, "hi")
    watcher = connect(app, client, bob)
    presence_events(watcher)
    real_add = user_store.add_socket

    def add_with_a_twin(sid, user_id, *args, **kwargs):
        real_add(sid, user_id, *args, **kwargs)
        if user_id == ObjectId(alice.id) and not twins:  # another process, the same instant
            twins.append(f"other-{sid}")
            real_add(twins[0], user_id, "other-process", "jti", "login")

    twins = []
    monkeypatch.setattr(presence.user_store, "add_socket", add_with_a_twin)
    sock = connect(app, client, alice)
    with app.app_context():  # the other process's connect, finishing after this one's
        assert not user_store.claim_presence(ObjectId(alice.id), True)
    assert [e["online"] for e in presence_events(watcher)] == [True]
    # and both sockets closing at the same instant: one offline
    with app.app_context():
        user_store.remove_socket(twins[0])
    sock.disconnect()
    with app.app_context():
        presence.socket_disconnected(ObjectId(alice.id), twins[0])  # the other process, late
    assert [e["online"] for e in presence_events(watcher)] == [False]
    watcher.disconnect()
