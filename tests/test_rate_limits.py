"""Rate limits: register/login per address and per account, sends per user on both transports."""
import threading
import time

import pytest
from limits.storage import storage_from_string

from chatapp import create_app, rate_storage
from chatapp.extensions import limiter, socketio
from config import ConfigError, TestingConfig

PASSWORD = "correct horse battery"
ROOMY = "1000 per minute"


@pytest.fixture
def make_app():
    """`make_app(**limits)`: an app with limits on, every limit roomy unless given."""

    def build(**overrides):
        settings = {"RATELIMIT_ENABLED": True, "RATELIMIT_REGISTER": ROOMY,
                    "RATELIMIT_LOGIN": ROOMY, "RATELIMIT_ACCOUNT": ROOMY, "RATELIMIT_SEND": ROOMY,
                    "RATELIMIT_GROUPS": ROOMY, "RATELIMIT_CONNECT": ROOMY}
        return create_app(TestingConfig, **{**settings, **overrides})

    return build


def register(client, name, address="10.0.0.1", **headers):
    return client.post("/api/user/register", json={
        "username": name, "email": f"{name}@example.com", "password": PASSWORD},
        environ_base={"REMOTE_ADDR": address}, headers=headers)


def login(client, name, password=PASSWORD, address="10.0.0.1", **headers):
    return client.post("/api/user/login", json={"email": f"{name}@example.com",
                                                 "password": password},
                       environ_base={"REMOTE_ADDR": address}, headers=headers)


def account(client, name):
    assert register(client, name).status_code == 201
    body = login(client, name).get_json()
    return {"id": body["userId"], "token": body["access_token"],
            "headers": {"Authorization": f"Bearer {body['access_token']}"}}


def assert_limited(response, limit, message):
    assert response.status_code == 429
    assert response.get_json() == {"error": {"code": "rate_limited", "message": message}}
    assert 0 < int(response.headers["Retry-After"]) <= 60
    assert response.headers["X-RateLimit-Limit"] == str(limit)
    assert response.headers["X-RateLimit-Remaining"] == "0"
    assert int(response.headers["X-RateLimit-Reset"]) >= int(time.time())


def test_failed_logins_are_limited_per_address_and_account(make_app):
    client = make_app(RATELIMIT_ACCOUNT="2 per minute").test_client()
    assert register(client, "alice").status_code == 201
    attacker = "10.6.6.6"
    first = login(client, "alice", password="wrong password!", address=attacker)
    assert first.status_code == 401
    assert first.headers["X-RateLimit-Limit"] == "2"
    assert first.headers["X-RateLimit-Remaining"] == "1"
    assert "Retry-After" not in first.headers  # only a refusal says when to retry
    assert login(client, "alice", password="wrong password!", address=attacker).status_code \
        == 401
    message = "too many failed logins for this account from this address, try again later"
    assert_limited(login(client, "alice", address=attacker), 2, message)  # even the right one
    # The owner, elsewhere, is not locked out by someone else's failures...
    for _ in range(3):  # ...and their own successful logins cost nothing
        assert login(client, "alice", address="10.0.0.1").status_code == 200
    # Another account from the attacker's address is untouched by this pair's budget.
    assert register(client, "bobby").status_code == 201
    assert login(client, "bobby", address=attacker).status_code == 200


def test_login_is_limited_per_address(make_app):
    client = make_app(RATELIMIT_LOGIN="3 per minute").test_client()
    for name in ("carol", "dave1", "erin1", "frank"):
        assert register(client, name, address="10.0.0.2").status_code == 201
    for name in ("carol", "dave1", "erin1"):
        assert login(client, name).status_code == 200
    assert_limited(login(client, "frank"), 3,
                   "too many login attempts from this address, try again later")
    assert login(client, "frank", address="10.0.0.3").status_code == 200


def test_register_is_limited_per_address_and_per_account(make_app):
    client = make_app(RATELIMIT_REGISTER="2 per minute", RATELIMIT_ACCOUNT="2 per minute").test_client()
    assert register(client, "gina1").status_code == 201
    assert register(client, "gina1", address="10.0.0.7").status_code == 409
    assert_limited(register(client, "gina1", address="10.0.0.8"), 2,
                   "too many attempts for this account, try again later")
    assert register(client, "hank1").status_code == 201
    assert_limited(register(client, "ivan1"), 2,
                   "too many registrations from this address, try again later")
    assert register(client, "ivan1", address="10.0.0.9").status_code == 201


def test_invalid_input_is_answered_before_counting(make_app):
    client = make_app(RATELIMIT_ACCOUNT="1 per minute").test_client()
    for _ in range(3):
        response = client.post("/api/user/login", json={"email": "not-an-email"})
        assert response.status_code == 422


def send(client, sender, receiver, content="hi"):
    return client.post("/api/chat/send", json={"receiver": receiver["id"], "content": content},
                       headers=sender["headers"])


def test_rest_sends_are_limited_per_user(make_app):
    client = make_app(RATELIMIT_SEND="2 per minute").test_client()
    alice, bob = account(client, "alice"), account(client, "bob12")
    assert [send(client, alice, bob).status_code for _ in range(2)] == [201, 201]
    assert_limited(send(client, alice, bob), 2, "too many messages, slow down")
    assert send(client, bob, alice).status_code == 201


def test_edits_and_deletions_count_against_the_send_budget(make_app):
    client = make_app(RATELIMIT_SEND="3 per minute").test_client()
    alice, bob = account(client, "alice"), account(client, "bob12")
    message = send(client, alice, bob).get_json()["message"]
    url = f"/api/chat/messages/{message['id']}"
    assert client.patch(url, headers=alice["headers"], json={"content": "edit 1"}).status_code \
        == 200
    assert client.delete(url, headers=alice["headers"]).status_code == 200
    assert_limited(client.patch(url, headers=alice["headers"], json={"content": "edit 2"}), 3,
                   "too many messages, slow down")
    assert_limited(client.delete(url, headers=alice["headers"]), 3,
                   "too many messages, slow down")
    assert_limited(send(client, alice, bob), 3, "too many messages, slow down")


def test_group_creations_and_additions_share_one_budget_per_user(make_app):
    client = make_app(RATELIMIT_GROUPS="3 per minute").test_client()
    alice, bob, carol = (account(client, n) for n in ("alice", "bob12", "carol"))

    def create():
        return client.post("/api/chat/groups", headers=alice["headers"],
                           json={"title": "g", "members": [bob["id"]]})

    first = create()
    assert first.status_code == 201 and create().status_code == 201
    group = first.get_json()["conversation"]["id"]
    added = client.post(f"/api/chat/conversations/{group}/members", headers=alice["headers"],
                        json={"user_ids": [carol["id"]]})
    assert added.status_code == 200
    assert_limited(create(), 3, "too many group changes, slow down")
    again = client.post(f"/api/chat/conversations/{group}/members", headers=alice["headers"],
                        json={"user_ids": [carol["id"]]})
    assert_limited(again, 3, "too many group changes, slow down")
    # nothing was created by the refused call; another user has a budget of their own
    listed = client.get("/api/chat/conversations", headers=alice["headers"]).get_json()
    assert len(listed) == 2
    assert client.post("/api/chat/groups", headers=bob["headers"],
                       json={"title": "g", "members": [carol["id"]]}).status_code == 201


def test_socket_connections_are_limited_per_user(make_app):
    app = make_app(RATELIMIT_CONNECT="3 per minute")
    client = app.test_client()
    alice, bob = account(client, "alice"), account(client, "bob12")

    def connect(user):
        return socketio.test_client(app, auth={"token": user["token"]}, flask_test_client=client)

    for _ in range(3):  # a reconnect loop
        sock = connect(alice)
        assert sock.is_connected()
        sock.disconnect()
    refused = connect(alice)
    assert not refused.is_connected()
    sock = connect(bob)  # another user has a budget of their own
    assert sock.is_connected()
    sock.disconnect()


def socket_send(sock, receiver, content="hi"):
    return sock.emit("chat message", {"receiver": receiver["id"], "content": content},
                     callback=True)


def test_socket_sends_share_the_users_budget_with_rest(make_app):
    app = make_app(RATELIMIT_SEND="3 per minute")
    client = app.test_client()
    alice, bob = account(client, "alice"), account(client, "bob12")
    sock = socketio.test_client(app, auth={"token": alice["token"]}, flask_test_client=client)
    try:
        assert send(client, alice, bob).status_code == 201
        assert [socket_send(sock, bob)["ok"] for _ in range(2)] == [True, True]
        ack = socket_send(sock, bob)
        assert ack == {"ok": False, "error": {
            "code": "rate_limited", "message": "too many messages, slow down",
            "details": {"limit": "3 per 1 minute", "retry_after": ack["error"]["details"]["retry_after"]}}}
        assert 0 < ack["error"]["details"]["retry_after"] <= 60
        # The original API's envelope event is the same send, under the same budget.
        envelope = sock.emit("message", '{"event": "chat message", "data": {"receiver": "%s", '
                                        '"content": "hi"}}' % bob["id"], callback=True)
        assert envelope["error"]["code"] == "rate_limited"
        assert_limited(send(client, alice, bob), 3, "too many messages, slow down")
        history = client.get(f"/api/chat/messages/{alice['id']}/{bob['id']}",
                             headers=alice["headers"]).get_json()
        assert len(history) == 3  # refused sends stored nothing
        assert sock.is_connected()
    finally:
        sock.disconnect()


def test_malformed_socket_sends_are_answered_before_counting(make_app):
    app = make_app(RATELIMIT_SEND="2 per minute")
    client = app.test_client()
    alice, bob = account(client, "alice"), account(client, "bob12")
    sock = socketio.test_client(app, auth={"token": alice["token"]}, flask_test_client=client)
    try:
        for bad in ({"receiver": "nope", "content": "hi"}, {"content": 5}, "not an object") * 2:
            ack = sock.emit("chat message", bad, callback=True)
            assert ack["error"]["code"] == "validation_error"
        assert [socket_send(sock, bob)["ok"] for _ in range(2)] == [True, True]
        assert socket_send(sock, bob)["error"]["code"] == "rate_limited"
    finally:
        sock.disconnect()


def test_disabled_limits_never_refuse_and_send_no_headers(make_app):
    client = make_app(RATELIMIT_ENABLED=False, RATELIMIT_ACCOUNT="1 per minute").test_client()
    assert register(client, "judy1").status_code == 201
    responses = [login(client, "judy1") for _ in range(4)]
    assert [r.status_code for r in responses] == [200] * 4
    assert "X-RateLimit-Limit" not in responses[-1].headers


def test_disabled_limits_never_refuse_a_socket_send(make_app):
    app = make_app(RATELIMIT_ENABLED=False, RATELIMIT_SEND="1 per minute")
    client = app.test_client()
    alice, bob = account(client, "mona1"), account(client, "nick1")
    sock = socketio.test_client(app, auth={"token": alice["token"]}, flask_test_client=client)
    try:
        assert [socket_send(sock, bob)["ok"] for _ in range(3)] == [True] * 3
    finally:
        sock.disconnect()


def test_forwarded_for_is_ignored_unless_proxies_are_trusted(make_app):
    client = make_app(RATELIMIT_LOGIN="2 per minute").test_client()
    assert register(client, "kate1").status_code == 201
    for forged in ("1.1.1.1", "2.2.2.2"):
        assert login(client, "kate1", **{"X-Forwarded-For": forged}).status_code == 200
    assert login(client, "kate1", **{"X-Forwarded-For": "3.3.3.3"}).status_code == 429


def test_behind_a_trusted_proxy_the_forwarded_client_address_is_limited(make_app):
    client = make_app(RATELIMIT_LOGIN="2 per minute", TRUSTED_PROXIES=1).test_client()
    assert register(client, "liam1").status_code == 201
    proxied = {"X-Forwarded-For": "198.51.100.7"}
    assert [login(client, "liam1", **proxied).status_code for _ in range(2)] == [200, 200]
    assert login(client, "liam1", **proxied).status_code == 429
    # Another client behind the same proxy has its own budget; a forged first hop changes nothing.
    assert login(client, "liam1", **{"X-Forwarded-For": "198.51.100.8"}).status_code == 200
    assert login(client, "liam1", **{"X-Forwarded-For": "9.9.9.9, 198.51.100.7"}).status_code == 429


@pytest.mark.parametrize("name", ["RATELIMIT_LOGIN", "RATELIMIT_SEND"])
def test_a_malformed_limit_setting_stops_start_up(name):
    with pytest.raises(ConfigError, match=name):
        create_app(TestingConfig, **{name: "lots"})


def test_memory_counters_start_no_thread_and_windows_still_end(make_app, monkeypatch):
    """memory:// (chatapp/rate_storage.py): counting starts no timer thread (limits' own
    storage started one every 10 ms of traffic: a green thread each under eventlet); a
    window still ends, and the budget comes back."""
    app = make_app(RATELIMIT_SEND="3 per second")
    assert type(limiter.storage) is rate_storage.LoopMemoryStorage
    started = []

    class CountedTimer(threading.Timer):
        def start(self):
            started.append(self)
            super().start()

    monkeypatch.setattr(threading, "Timer", CountedTimer)
    client = app.test_client()
    alice, bob = account(client, "olga1"), account(client, "pete1")
    sock = socketio.test_client(app, auth={"token": alice["token"]}, flask_test_client=client)
    try:
        # The window opens at the first count and lasts a second: four sends take milliseconds.
        assert [socket_send(sock, bob)["ok"] for _ in range(4)] == [True, True, True, False]
        time.sleep(1.05)
        assert socket_send(sock, bob)["ok"] is True
        assert send(client, alice, bob).status_code == 201
        assert started == []
    finally:
        sock.disconnect()


def test_memory_counters_of_users_gone_are_swept(monkeypatch):
    """An expired counter nobody reads again is dropped by the next count's sweep, at most
    once per SWEEP_SECONDS."""
    storage = storage_from_string("memory://")
    assert type(storage) is rate_storage.LoopMemoryStorage
    storage.incr("gone", 0.05)
    time.sleep(0.1)
    storage.incr("here", 60)
    assert "gone" in storage.storage  # within the sweep interval: kept (never counted again)
    monkeypatch.setattr(rate_storage, "SWEEP_SECONDS", 0.0)
    storage.incr("here", 60)
    assert "gone" not in storage.storage and "gone" not in storage.expirations
    assert storage.get("here") == 2
