"""Socket.IO events with Flask-SocketIO's test client: auth, delivery, acks, receipts, typing,
presence, token expiry and malformed payloads."""
import json
import time
from datetime import timedelta

import jwt as pyjwt
import pytest
from bson import ObjectId

from chatapp import create_app
from config import TestingConfig

from tests.test_chat_rest import ISO_MS, MESSAGE_KEYS, Marked, history, sent


def received(sc, name=None):
    """Events the test client got since the last call, as (name, first arg)."""
    out = [(e["name"], e["args"][0] if e["args"] else None) for e in sc.get_received()]
    return [e for e in out if name is None or e[0] == name]


def wait_for(predicate, timeout=3.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.02)
    return predicate()


def collect(sc, count, timeout=3.0):
    """Events received until there are `count` of them (or the timeout)."""
    events = []
    deadline = time.monotonic() + timeout
    while len(events) < count and time.monotonic() < deadline:
        events += received(sc)
        time.sleep(0.01)
    return events


def error_ack(code):
    """A check for `{"ok": false, "error": {"code": code, "message", "details"?}}`, exactly."""
    def check(ack):
        assert set(ack) == {"ok", "error"} and ack["ok"] is False, ack
        assert ack["error"]["code"] == code, ack
        assert set(ack["error"]) <= {"code", "message", "details"}, ack
        assert isinstance(ack["error"]["message"], str) and ack["error"]["message"]
        return True
    return check


@pytest.fixture
def pair(auth):
    return auth.user(), auth.user()


# --- connecting ------------------------------------------------------------------------

@pytest.mark.parametrize("how", ["auth", "header", "bearer", "query"])
def test_each_way_to_authenticate_joins_the_users_room(socket_client, client, pair, how):
    alice, bob = pair
    kwargs = {
        "auth": {"auth": {"token": bob.token}},
        "header": {"headers": {"access_token": bob.token}},
        "bearer": {"headers": {"Authorization": f"Bearer {bob.token}"}},
        "query": {"query_string": f"token={bob.token}"},
    }[how]
    sc = socket_client(**kwargs)
    assert sc.is_connected()
    message = sent(client, alice, bob, f"via {how}")
    assert received(sc, "chat message") == [("chat message", message)]


def _refused_tokens(client, auth, app):
    user = auth.user()
    refresh = user.refresh_token
    revoked = auth.user()
    assert client.post("/api/user/logout", headers=revoked.headers).status_code == 200
    with app.app_context():
        from flask_jwt_extended import create_access_token
        expired = create_access_token(identity=user.id, additional_claims={"sid": "s"},
                                      expires_delta=timedelta(seconds=-10))
    return {"missing": None, "garbage": "not.a.jwt", "refresh": refresh, "expired": expired,
            "revoked": revoked.token, "empty": ""}


@pytest.mark.parametrize("where", ["auth", "header", "bearer", "query"])
def test_refused_tokens(socket_client, client, auth, app, where):
    for name, token in _refused_tokens(client, auth, app).items():
        if token is None:
            sc = socket_client(auth={}) if where == "auth" else socket_client(headers={})
        elif where == "auth":
            sc = socket_client(auth={"token": token})
        elif where == "header":
            sc = socket_client(headers={"access_token": token})
        elif where == "bearer":
            sc = socket_client(headers={"Authorization": f"Bearer {token}"})
        else:
            sc = socket_client(query_string=f"token={token}")
        assert not sc.is_connected(), name


def test_auth_token_must_be_a_string(socket_client, pair):
    alice, _ = pair
    assert not socket_client(auth={"token": 12}).is_connected()
    assert not socket_client(auth={"token": {"t": alice.token}}).is_connected()


def test_refused_socket_receives_nothing(socket_client, client, pair):
    alice, bob = pair
    spy = socket_client(auth={"token": "forged"})
    sent(client, alice, bob)
    assert not spy.is_connected() and spy.queue == []


# --- join ---------------------------------------------------------------------------------

def test_join_own_room_ok_others_forbidden_and_nothing_leaks(socket_client, client, pair, auth):
    alice, bob = pair
    eve = auth.user()
    sc = socket_client(eve)
    assert sc.emit("join", eve.id, callback=True) == {"ok": True}
    assert error_ack("forbidden")(sc.emit("join", alice.id, callback=True))
    assert error_ack("validation_error")(sc.emit("join", {"room": alice.id}, callback=True))
    sent(client, bob, alice, "secret")
    sent(client, alice, bob, "secret too")
    assert received(sc) == []


# --- chat message ---------------------------------------------------------------------------

def test_socket_send_ack_and_multi_socket_delivery(socket_client, client, pair, auth):
    alice, bob = pair
    carol = auth.user()
    a1, a2, a3 = socket_client(alice), socket_client(alice), socket_client(alice)
    b1, b2 = socket_client(bob), socket_client(bob)
    c1 = socket_client(carol)
    ack = a1.emit("chat message", {"receiver": bob.id, "content": "hi", "client_id": "k1"},
                  callback=True)
    assert ack["ok"] is True and set(ack) == {"ok", "message"}
    message = ack["message"]
    assert set(message) == MESSAGE_KEYS | {"client_id"}
    assert (message["sender"], message["receiver"], message["content"]) == (alice.id, bob.id, "hi")
    assert ISO_MS.match(message["timestamp"])
    assert received(a1) == []
    for sc in (a2, a3, b1, b2):
        assert received(sc) == [("chat message", message)]
    assert received(c1) == []
    assert history(client, bob, alice, bob).get_json() == [message]


def test_message_to_yourself_reaches_each_other_socket_once(socket_client, pair):
    alice, _ = pair
    a1, a2, a3 = socket_client(alice), socket_client(alice), socket_client(alice)
    ack = a1.emit("chat message", {"receiver": alice.id, "content": "memo"}, callback=True)
    assert ack["ok"] is True
    assert received(a1) == []
    assert received(a2) == [("chat message", ack["message"])]
    assert received(a3) == [("chat message", ack["message"])]


def test_rest_send_is_delivered_to_every_socket_of_both_sides(socket_client, client, pair):
    alice, bob = pair
    a1, a2, b1 = socket_client(alice), socket_client(alice), socket_client(bob)
    message = sent(client, alice, bob, "over rest")
    for sc in (a1, a2, b1):
        assert received(sc) == [("chat message", message)]


def test_socket_retry_gets_the_same_ack_and_delivers_nothing_new(socket_client, client, pair):
    alice, bob = pair
    a1, b1 = socket_client(alice), socket_client(bob)
    payload = {"receiver": bob.id, "content": "once", "client_id": "retry"}
    first = a1.emit("chat message", payload, callback=True)
    again = a1.emit("chat message", payload, callback=True)
    assert first["ok"] is True and again == first
    assert received(b1) == [("chat message", first["message"])]
    # the same client_id over REST is the same message too
    response = client.post("/api/chat/send", headers=alice.headers, json=payload)
    assert response.status_code == 200 and response.get_json()["message"] == first["message"]
    assert received(b1) == []
    assert len(history(client, alice, alice, bob).get_json()) == 1


def test_spoofed_sender_is_forbidden_and_nothing_is_stored(socket_client, client, pair, auth):
    alice, bob = pair
    carol = auth.user()
    a1, b1 = socket_client(alice), socket_client(bob)
    ack = a1.emit("chat message", {"receiver": bob.id, "content": "x", "sender": carol.id},
                  callback=True)
    assert error_ack("forbidden")(ack)
    assert received(b1) == []
    assert history(client, bob, alice, bob).get_json() == []
    ok = a1.emit("chat message", {"receiver": bob.id, "content": "x", "sender": alice.id},
                 callback=True)
    assert ok["ok"] is True


@pytest.mark.parametrize("payload, code", [
    ({"receiver": "{unknown}", "content": "x"}, "not_found"),
    ({"receiver": "nope", "content": "x"}, "validation_error"),
    ({"receiver": "{bob}", "content": "   "}, "validation_error"),
    ({"receiver": "{bob}", "content": "x" * 4001}, "validation_error"),
    ({"receiver": "{bob}"}, "validation_error"),
    ("just a string", "validation_error"),
    (["a", "list"], "validation_error"),
    (None, "validation_error"),
    (42, "validation_error"),
])
def test_chat_message_error_acks(socket_client, client, pair, payload, code):
    alice, bob = pair
    if isinstance(payload, dict):
        unknown = str(ObjectId())
        payload = {k: {"{bob}": bob.id, "{unknown}": unknown}.get(v, v)
                   for k, v in payload.items()}
    a1, b1 = socket_client(alice), socket_client(bob)
    ack = a1.emit("chat message", payload, callback=True)
    assert error_ack(code)(ack)
    if code == "validation_error" and isinstance(payload, dict):
        assert ack["error"]["details"]
    assert received(b1) == []
    assert client.get(f"/api/chat/messages/{alice.id}", headers=alice.headers).get_json() == []


def test_unknown_event_is_answered_not_found(socket_client, pair):
    alice, _ = pair
    a1 = socket_client(alice)
    assert error_ack("not_found")(a1.emit("dance", {"x": 1}, callback=True))
    assert error_ack("not_found")(a1.emit("x" * 10_000, callback=True))
    assert a1.is_connected()


def test_event_without_ack_request_still_delivers(socket_client, pair):
    alice, bob = pair
    a1, b1 = socket_client(alice), socket_client(bob)
    assert a1.emit("chat message", {"receiver": bob.id, "content": "fire and forget"}) is None
    [(name, message)] = received(b1)
    assert name == "chat message" and message["content"] == "fire and forget"


# --- the original API's envelope ----------------------------------------------------------------

def test_original_api_flow_with_envelope(socket_client, pair):
    alice, bob = pair
    a1 = socket_client(headers={"access_token": alice.token})
    b1 = socket_client(headers={"access_token": bob.token})
    assert a1.is_connected() and b1.is_connected()
    join = a1.emit("message", json.dumps({"event": "join", "data": alice.id}), callback=True)
    assert join == {"ok": True}
    envelope = {"event": "chat message",
                "data": {"sender": alice.id, "receiver": bob.id, "content": "hello, old API"}}
    ack = a1.emit("message", json.dumps(envelope), callback=True)
    assert ack["ok"] is True
    [(name, message)] = received(b1)
    assert name == "chat message"
    assert (message["sender"], message["receiver"], message["content"]) == (
        alice.id, bob.id, "hello, old API")
    assert message == ack["message"]
    # the envelope as an object (already parsed) works too
    assert a1.emit("message", envelope, callback=True)["ok"] is True
    assert len(received(b1)) == 1


@pytest.mark.parametrize("envelope, code", [
    ("{not json", "invalid_json"),
    ("[" * 50_000 + "]" * 50_000, "invalid_json"),  # deeper than the parser goes
    (json.dumps({"event": "dance", "data": {}}), "validation_error"),
    (json.dumps(["join"]), "validation_error"),
    (json.dumps("join"), "validation_error"),
    (json.dumps({"event": "join", "data": "{bob}"}), "forbidden"),
    (json.dumps({"event": "chat message", "data": "x"}), "validation_error"),
    (json.dumps({"event": "chat message", "data": {"receiver": "{bob}", "content": "x",
                                                   "sender": "{bob}"}}), "forbidden"),
    (12, "validation_error"),
])
def test_envelope_errors(socket_client, client, pair, envelope, code):
    alice, bob = pair
    if isinstance(envelope, str):
        envelope = envelope.replace("{bob}", bob.id)
    a1, b1 = socket_client(alice), socket_client(bob)
    assert error_ack(code)(a1.emit("message", envelope, callback=True))
    assert received(b1) == []
    assert history(client, alice, alice, bob).get_json() == []


# --- receipts --------------------------------------------------------------------------------------

def test_delivered_receipt_is_stored_and_relayed(socket_client, client, pair):
    alice, bob = pair
    a1, b1 = socket_client(alice), socket_client(bob)
    m1 = sent(client, alice, bob, "1")
    m2 = sent(client, alice, bob, "2")
    m3 = sent(client, alice, bob, "3")
    received(a1), received(b1)
    ack = b1.emit("delivered", {"peer": alice.id, "up_to": m2["id"]}, callback=True)
    assert ack == Marked(ok=True, updated=2)
    [(name, receipt)] = received(a1)
    assert name == "delivered"
    assert set(receipt) == {"receiver", "up_to", "delivered_at", "conversation", "version"}
    assert receipt["receiver"] == bob.id and receipt["up_to"] == m2["id"]
    assert ISO_MS.match(receipt["delivered_at"])
    assert received(b1) == []
    stored = {m["id"]: m for m in history(client, alice, alice, bob).get_json()}
    assert stored[m1["id"]]["delivered_at"] == stored[m2["id"]]["delivered_at"] == \
        receipt["delivered_at"]
    assert stored[m3["id"]]["delivered_at"] is None
    assert stored[m1["id"]]["read_at"] is None


@pytest.mark.parametrize("payload, code", [
    ({"peer": "{alice}"}, "validation_error"),
    ({"up_to": "{m}"}, "validation_error"),
    ({"peer": "nope", "up_to": "{m}"}, "validation_error"),
    ({"peer": "{alice}", "up_to": "nope"}, "validation_error"),
    ({"peer": "{alice}", "up_to": "{other}"}, "validation_error"),
    ({"peer": "{unknown}", "up_to": "{m}"}, "not_found"),
    ("x", "validation_error"),
])
def test_delivered_errors(socket_client, client, pair, auth, payload, code):
    alice, bob = pair
    carol = auth.user()
    m = sent(client, alice, bob)
    other = sent(client, carol, bob)
    if isinstance(payload, dict):
        names = {"{alice}": alice.id, "{m}": m["id"], "{other}": other["id"],
                 "{unknown}": str(ObjectId())}
        payload = {k: names.get(v, v) for k, v in payload.items()}
    a1, b1 = socket_client(alice), socket_client(bob)
    received(a1)  # bob's presence
    assert error_ack(code)(b1.emit("delivered", payload, callback=True))
    assert received(a1) == []
    assert all(msg["delivered_at"] is None
               for msg in history(client, bob, alice, bob).get_json())


def test_read_over_socket_relays_newest_id_marked_and_stores(socket_client, client, pair):
    alice, bob = pair
    a1, a2, b1 = socket_client(alice), socket_client(alice), socket_client(bob)
    m1 = sent(client, alice, bob, "1")
    m2 = sent(client, alice, bob, "2")
    mine = sent(client, bob, alice, "bob's own, newer")
    for sc in (a1, a2, b1):
        received(sc)
    unread = [c["unread_count"] for c in
              client.get("/api/chat/conversations", headers=bob.headers).get_json()]
    assert unread == [2]
    ack = b1.emit("read", {"peer": alice.id}, callback=True)
    assert ack == Marked(ok=True, updated=2)
    for sc in (a1, a2):
        [(name, receipt)] = received(sc)
        assert name == "read" and set(receipt) == {"reader", "up_to", "read_at",
                                                   "conversation", "version"}
        assert receipt["reader"] == bob.id and receipt["up_to"] == m2["id"]
        assert ISO_MS.match(receipt["read_at"])
    assert received(b1) == []
    stored = {m["id"]: m for m in history(client, alice, alice, bob).get_json()}
    assert stored[m1["id"]]["read_at"] == stored[m2["id"]]["read_at"] == receipt["read_at"]
    assert stored[mine["id"]]["read_at"] is None
    unread = [c["unread_count"] for c in
              client.get("/api/chat/conversations", headers=bob.headers).get_json()]
    assert unread == [0]


def test_read_up_to_over_socket_and_rest_read_event(socket_client, client, pair):
    alice, bob = pair
    a1 = socket_client(alice)
    b1 = socket_client(bob)
    m1 = sent(client, alice, bob, "1")
    sent(client, alice, bob, "2")
    received(a1), received(b1)
    assert b1.emit("read", {"peer": alice.id, "up_to": m1["id"]}, callback=True) == Marked(ok=True, updated=1)
    assert [(n, p["up_to"]) for n, p in received(a1)] == [("read", m1["id"])]
    response = client.post(f"/api/chat/conversations/{alice.id}/read", headers=bob.headers)
    assert response.get_json() == Marked(updated=1)
    [(name, receipt)] = received(a1)
    assert name == "read" and receipt["reader"] == bob.id
    assert receipt["up_to"] == history(client, bob, alice, bob).get_json()[0]["id"]
    # nothing left to mark: nothing to tell
    assert b1.emit("read", {"peer": alice.id}, callback=True) == Marked(ok=True, updated=0)
    assert received(a1) == []


@pytest.mark.parametrize("payload, code", [
    ({}, "validation_error"),
    ({"peer": "nope"}, "validation_error"),
    ({"peer": "{alice}", "up_to": "{other}"}, "validation_error"),
    ({"peer": "{unknown}"}, "not_found"),
    (["x"], "validation_error"),
])
def test_read_errors(socket_client, client, pair, auth, payload, code):
    alice, bob = pair
    carol = auth.user()
    sent(client, alice, bob)
    other = sent(client, carol, bob)
    if isinstance(payload, dict):
        names = {"{alice}": alice.id, "{other}": other["id"], "{unknown}": str(ObjectId())}
        payload = {k: names.get(v, v) for k, v in payload.items()}
    a1, b1 = socket_client(alice), socket_client(bob)
    received(a1)  # bob's presence
    assert error_ack(code)(b1.emit("read", payload, callback=True))
    assert received(a1) == []


# --- edit and delete events --------------------------------------------------------------------------

def test_edit_and_delete_events_reach_both_sides(socket_client, client, pair, auth):
    alice, bob = pair
    eve = auth.user()
    a1, a2, b1, e1 = (socket_client(alice), socket_client(alice), socket_client(bob),
                      socket_client(eve))
    message = sent(client, alice, bob, "draft")
    for sc in (a1, a2, b1):
        received(sc)
    edited = client.patch(f"/api/chat/messages/{message['id']}", headers=alice.headers,
                          json={"content": "final"}).get_json()["message"]
    for sc in (a1, a2, b1):
        assert received(sc) == [("message updated", edited)]
    deleted = client.delete(f"/api/chat/messages/{message['id']}",
                            headers=alice.headers).get_json()["message"]
    assert deleted["content"] == "" and deleted["deleted"] is True
    for sc in (a1, a2, b1):
        assert received(sc) == [("message deleted", deleted)]
    # refused changes emit nothing
    client.patch(f"/api/chat/messages/{message['id']}", headers=bob.headers,
                 json={"content": "x"})
    client.patch(f"/api/chat/messages/{message['id']}", headers=alice.headers,
                 json={"content": "x"})
    for sc in (a1, a2, b1, e1):
        assert received(sc) == []


# --- typing ------------------------------------------------------------------------------------------------

class TestTyping:
    TIMEOUT = 0.6

    @pytest.fixture
    def app(self):
        return create_app(TestingConfig, TYPING_TIMEOUT=self.TIMEOUT)

    @pytest.fixture
    def pair(self, auth, client):
        """Two users who share a conversation (typing goes to nobody else)."""
        alice, bob = auth.user(), auth.user()
        self.conversation = sent(client, alice, bob, "hi")["conversation"]
        return alice, bob

    def typing(self, sender, state):
        return {"sender": sender.id, "conversation": self.conversation, "typing": state}

    def test_typing_is_relayed_not_stored_and_lapses(self, socket_client, client, pair):
        alice, bob = pair
        b1, a1, a2 = socket_client(bob), socket_client(alice), socket_client(alice)
        received(b1), received(a1), received(a2)  # presence: they share a conversation
        ack = a1.emit("typing", {"receiver": bob.id, "typing": True}, callback=True)
        assert ack == {"ok": True}
        events = collect(b1, 2, timeout=3)
        assert events == [("typing", self.typing(alice, True)),
                          ("typing", self.typing(alice, False))]
        assert received(a1) == [] and received(a2) == []
        assert len(history(client, alice, alice, bob).get_json()) == 1  # only the "hi"

    def test_explicit_stop_does_not_lapse_again(self, socket_client, pair):
        alice, bob = pair
        a1, b1 = socket_client(alice), socket_client(bob)
        a1.emit("typing", {"receiver": bob.id, "typing": True}, callback=True)
        a1.emit("typing", {"receiver": bob.id, "typing": False}, callback=True)
        assert [p["typing"] for _, p in received(b1)] == [True, False]
        time.sleep(self.TIMEOUT + 0.4)
        assert received(b1) == []

    def test_repeating_pushes_the_lapse_back_and_is_absorbed(self, socket_client, pair):
        alice, bob = pair
        a1, b1 = socket_client(alice), socket_client(bob)
        a1.emit("typing", {"receiver": bob.id, "typing": True}, callback=True)
        time.sleep(self.TIMEOUT / 3)
        a1.emit("typing", {"receiver": bob.id, "typing": True}, callback=True)
        repeated_at = time.monotonic()
        events = collect(b1, 2, timeout=3)
        lapsed_after = time.monotonic() - repeated_at
        # the repeat within a second is absorbed: one true, and one false after the repeat
        assert [p for _, p in events] == [self.typing(alice, True), self.typing(alice, False)]
        # the first true's timer would have fired TIMEOUT/3 earlier than this
        assert lapsed_after >= self.TIMEOUT - 0.1
        time.sleep(self.TIMEOUT)
        assert received(b1) == []

    def test_a_typing_flood_is_one_relay(self, socket_client, pair):
        alice, bob = pair
        a1, b1 = socket_client(alice), socket_client(bob)
        for _ in range(300):
            assert a1.emit("typing", {"receiver": bob.id, "typing": True}, callback=True) == \
                {"ok": True}
        assert collect(b1, 3, timeout=self.TIMEOUT + 1) == [
            ("typing", self.typing(alice, True)), ("typing", self.typing(alice, False))]
        from chatapp.chat import typing

        assert typing._typing == {}  # the lapse ended: nothing left behind

    def test_typing_to_a_stranger_reaches_nobody(self, socket_client, auth, pair):
        alice, _ = pair
        stranger = auth.user()
        a1, s1 = socket_client(alice), socket_client(stranger)
        ack = a1.emit("typing", {"receiver": stranger.id, "typing": True}, callback=True)
        assert ack == {"ok": True}  # accepted: the typist learns nothing about the stranger
        time.sleep(self.TIMEOUT + 0.3)
        assert received(s1) == []

    def test_typing_to_someone_met_in_a_group_is_relayed(self, socket_client, auth, client,
                                                         pair):
        alice, bob = pair
        carol = auth.user()
        response = client.post("/api/chat/groups", headers=alice.headers,
                               json={"title": "g", "members": [carol.id]})
        assert response.status_code == 201
        a1, c1 = socket_client(alice), socket_client(carol)
        received(c1)
        a1.emit("typing", {"receiver": carol.id, "typing": True}, callback=True)
        assert received(c1)[0] == ("typing", {"sender": alice.id, "typing": True})

    @pytest.mark.parametrize("payload", [
        {"receiver": "{bob}"}, {"receiver": "{bob}", "typing": "yes"},
        {"receiver": "{bob}", "typing": 1}, {"typing": True}, {"receiver": "x", "typing": True},
        "typing", None,
    ])
    def test_typing_validation(self, socket_client, pair, payload):
        alice, bob = pair
        if isinstance(payload, dict):
            payload = {k: bob.id if v == "{bob}" else v for k, v in payload.items()}
        a1, b1 = socket_client(alice), socket_client(bob)
        assert error_ack("validation_error")(a1.emit("typing", payload, callback=True))
        assert received(b1) == []

    def test_typing_to_unknown_user_is_not_found(self, socket_client, pair):
        alice, _ = pair
        a1 = socket_client(alice)
        ack = a1.emit("typing", {"receiver": str(ObjectId()), "typing": True}, callback=True)
        assert error_ack("not_found")(ack)


# --- presence ------------------------------------------------------------------------------------------------

def test_presence_goes_to_peers_who_share_a_conversation(socket_client, client, pair, auth):
    alice, bob = pair
    stranger = auth.user()
    sent(client, alice, bob, "we talk")
    b1, s1 = socket_client(bob), socket_client(stranger)
    a1 = socket_client(alice)
    assert received(b1) == [("presence", {"user": alice.id, "online": True, "last_seen": None})]
    assert client.get(f"/api/user/{alice.id}", headers=bob.headers).get_json()["online"] is True
    a2 = socket_client(alice)  # a second socket: already online, nothing new
    assert received(b1) == []
    a2.disconnect()
    assert received(b1) == []  # still online through a1
    a1.disconnect()
    [(name, presence)] = received(b1)
    assert name == "presence" and presence["user"] == alice.id and presence["online"] is False
    assert ISO_MS.match(presence["last_seen"])
    profile = client.get(f"/api/user/{alice.id}", headers=bob.headers).get_json()
    assert profile["online"] is False and profile["last_seen"] == presence["last_seen"]
    assert received(s1) == []


# --- token expiry while connected --------------------------------------------------------------------------

class TestTokenExpiry:
    @pytest.fixture
    def app(self):
        return create_app(TestingConfig, JWT_ACCESS_TOKEN_EXPIRES=timedelta(seconds=2))

    def test_next_event_after_expiry_is_refused_and_socket_closed(self, socket_client, auth,
                                                                   monkeypatch):
        """An event that arrives between `exp` and the expiry sweep's close (which has its own
        live test, test_reliability_tokens) is refused: the sweep is held off here."""
        from chatapp.chat import expiry

        monkeypatch.setattr(expiry, "watch", lambda sid, exp: None)
        bob = auth.user()
        b1 = socket_client(bob)
        alice = auth.user()
        a1 = socket_client(alice)
        assert a1.is_connected() and b1.is_connected()
        assert a1.emit("join", alice.id, callback=True) == {"ok": True}
        expires = pyjwt.decode(alice.token, options={"verify_signature": False})["exp"]
        time.sleep(max(0.0, expires - time.time()) + 0.2)
        ack = a1.emit("chat message", {"receiver": bob.id, "content": "late"}, callback=True)
        assert error_ack("token_expired")(ack)
        assert wait_for(lambda: not a1.is_connected(), timeout=3)
        assert b1.is_connected() and received(b1) == []


# --- malformed floods ------------------------------------------------------------------------------------------

def _malformed(bob_id):
    huge = "x" * 200_000
    samples = [
        ("chat message", None), ("chat message", 1), ("chat message", "text"),
        ("chat message", [1, 2]), ("chat message", {}), ("chat message", {"receiver": bob_id}),
        ("chat message", {"content": "no receiver"}),
        ("chat message", {"receiver": 5, "content": "x"}),
        ("chat message", {"receiver": bob_id, "content": 5}),
        ("chat message", {"receiver": bob_id, "content": huge}),
        ("chat message", {"receiver": huge, "content": "x"}),
        ("chat message", {"receiver": bob_id, "content": "x", "client_id": huge}),
        ("chat message", {"receiver": bob_id, "content": "x", "sender": huge}),
        ("chat message", {"receiver": bob_id, "content": {"$gt": ""}}),
        ("chat message", {"receiver": {"$ne": None}, "content": "x"}),
        ("message", "{not json"), ("message", "[]"), ("message", huge),
        ("message", json.dumps({"event": "chat message", "data": None})),
        ("message", json.dumps({"event": "chat message", "data": {"receiver": 1}})),
        ("message", json.dumps({"event": {"x": 1}})), ("message", None), ("message", 3.5),
        ("typing", {"receiver": bob_id, "typing": "true"}), ("typing", []),
        ("delivered", {"peer": bob_id, "up_to": 7}), ("delivered", "x"),
        ("read", {"peer": [bob_id]}), ("read", {"peer": bob_id, "up_to": huge}),
        ("join", None), ("join", 12), ("join", {"userId": bob_id}),
    ]
    return [samples[i % len(samples)] for i in range(200)]


def test_flood_of_malformed_events_then_a_valid_message(socket_client, client, pair):
    alice, bob = pair
    a1, b1 = socket_client(alice), socket_client(bob)
    for event, payload in _malformed(bob.id):
        ack = a1.emit(event, payload, callback=True)
        unparseable = event == "message" and payload in ("{not json", "x" * 200_000)
        assert error_ack("invalid_json" if unparseable else "validation_error")(ack), \
            (event, payload)
    assert a1.is_connected()
    assert received(b1) == [] and received(a1) == []
    ack = a1.emit("chat message", {"receiver": bob.id, "content": "still here"}, callback=True)
    assert ack["ok"] is True
    assert received(b1) == [("chat message", ack["message"])]
    assert history(client, bob, alice, bob).get_json() == [ack["message"]]


@pytest.mark.parametrize("handshake", [{}, {"Upgrade": "websocket", "Connection": "Upgrade"}],
                         ids=["long-polling", "websocket"])
def test_an_events_request_context_is_freed_when_the_event_ends(auth, socket_client, handshake):
    """Every event runs in a request context made from its connection's handshake
    (Flask-SocketIO): nothing cyclic keeps it for the collector once the event is handled
    (chatapp/socket_context.py). (An event answered with an error still leaves one:
    Flask-SocketIO keeps the traceback in a local of the frame it points to.)"""
    import gc

    from flask.ctx import RequestContext

    alice, bob = auth.user(), auth.user()
    sc = socket_client(auth={"token": alice.token}, headers=handshake)
    assert sc.emit("chat message", {"receiver": bob.id, "content": "first"}, callback=True)["ok"]
    gc.collect()
    gc.disable()  # what only the collector would free stays visible
    try:
        before = sum(type(o) is RequestContext for o in gc.get_objects())
        for n in range(20):
            ack = sc.emit("chat message", {"receiver": bob.id, "content": f"m{n}"}, callback=True)
            assert ack["ok"], ack
            assert sc.emit("typing", {"receiver": bob.id, "typing": True}, callback=True)["ok"]
        left = sum(type(o) is RequestContext for o in gc.get_objects())
    finally:
        gc.enable()
    assert left <= before
