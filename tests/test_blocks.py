"""Blocking (CONTRACT.md "Blocking"): the three calls, and what a block holds back: direct
messages (both ways), being added to a group (at creation too), presence and
`User.online`/`last_seen` (from the blocker to the blocked), typing (both ways); history and
shared groups stay."""
import time
from datetime import datetime, timezone

import pytest
from bson import ObjectId

from chatapp import create_app
from chatapp.blocks import service as blocks
from chatapp.blocks import store as block_store
from config import TestingConfig

from tests.test_chat_rest import history, send, sent
from tests.test_chat_sockets import collect, error_ack, received
from tests.test_groups import add, create, created, get, listed, posted

USER_KEYS = {"id", "_id", "username", "created_at", "online", "last_seen"}


def block(client, account, target):
    return client.put(f"/api/user/blocks/{_id(target)}", headers=account.headers)


def unblock(client, account, target):
    return client.delete(f"/api/user/blocks/{_id(target)}", headers=account.headers)


def blocked_list(client, account):
    response = client.get("/api/user/blocks", headers=account.headers)
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def _id(target):
    return target if isinstance(target, str) else target.id


def profile(client, viewer, user):
    response = client.get(f"/api/user/{user.id}", headers=viewer.headers)
    assert response.status_code == 200, response.get_json()
    return response.get_json()


@pytest.fixture
def trio(auth):
    return auth.user(), auth.user(), auth.user()


# --- the calls ----------------------------------------------------------------------------

def test_block_answers_the_user_and_is_idempotent(client, trio):
    alice, bob, _ = trio
    first = block(client, alice, bob)
    assert first.status_code == 200, first.get_json()
    body = first.get_json()
    assert set(body) == {"user", "blocked", "blocked_at"}
    assert body["blocked"] is True and body["blocked_at"].endswith("Z")
    assert set(body["user"]) == USER_KEYS and body["user"]["id"] == bob.id
    again = block(client, alice, bob)
    assert again.status_code == 200
    assert again.get_json() == body  # nothing changed, not even the time of the block
    assert [u["id"] for u in blocked_list(client, alice)["users"]] == [bob.id]


def test_unblock_is_idempotent(client, trio):
    alice, bob, _ = trio
    block(client, alice, bob)
    for _ in range(2):
        response = unblock(client, alice, bob)
        assert response.status_code == 200, response.get_json()
        body = response.get_json()
        assert body["blocked"] is False and body["blocked_at"] is None
        assert body["user"]["id"] == bob.id
    assert blocked_list(client, alice) == {"users": []}
    never = unblock(client, alice, trio[2])  # never blocked: 200 all the same
    assert never.status_code == 200 and never.get_json()["blocked"] is False


@pytest.mark.parametrize("method", ["put", "delete"])
@pytest.mark.parametrize("target", ["0" * 24, "f" * 24, "not-an-id", "abc"])
def test_unknown_or_malformed_user_is_404(client, auth, method, target):
    alice = auth.user()
    response = getattr(client, method)(f"/api/user/blocks/{target}", headers=alice.headers)
    assert response.status_code == 404
    assert response.get_json()["error"]["code"] == "not_found"
    assert blocked_list(client, alice) == {"users": []}


@pytest.mark.parametrize("method", ["put", "delete"])
def test_yourself_is_422(client, auth, method):
    alice = auth.user()
    response = getattr(client, method)(f"/api/user/blocks/{alice.id}", headers=alice.headers)
    assert response.status_code == 422
    error = response.get_json()["error"]
    assert error["code"] == "validation_error" and "user_id" in error["details"]
    assert blocked_list(client, alice) == {"users": []}


@pytest.mark.parametrize("method, path", [("get", "/api/user/blocks"),
                                          ("put", "/api/user/blocks/" + "a" * 24),
                                          ("delete", "/api/user/blocks/" + "a" * 24)])
def test_every_call_needs_a_token(client, method, path):
    response = getattr(client, method)(path)
    assert response.status_code == 401
    assert response.get_json()["error"]["code"] == "unauthorized"


def test_list_is_user_objects_most_recently_blocked_first(client, auth, trio):
    alice, bob, carol = trio
    dave = auth.user()
    for user in (bob, carol, dave):
        block(client, alice, user)
    block(client, alice, bob)  # blocking again keeps bob's place: he was blocked first
    body = blocked_list(client, alice)
    assert set(body) == {"users"}
    assert [u["id"] for u in body["users"]] == [dave.id, carol.id, bob.id]
    for user in body["users"]:
        assert set(user) == USER_KEYS  # no email (not the caller's), never a password hash
        assert user["_id"] == user["id"]
    assert "password" not in str(body)
    unblock(client, alice, carol)
    block(client, alice, carol)  # a new block: the most recent now
    assert [u["id"] for u in blocked_list(client, alice)["users"]] == [carol.id, dave.id, bob.id]
    assert blocked_list(client, bob) == {"users": []}  # a block is the blocker's alone


# --- groups --------------------------------------------------------------------------------

def test_a_blocked_user_cannot_create_a_group_with_you(client, socket_client, trio):
    alice, bob, carol = trio
    block(client, bob, alice)
    c1 = socket_client(carol)
    received(c1)
    response = create(client, alice, [carol, bob])
    assert response.status_code == 403
    error = response.get_json()["error"]
    assert error["code"] == "forbidden" and error["details"] == {"members": [bob.id]}
    assert listed(client, alice, type="group") == []  # nothing created
    assert received(c1, "conversation") == []
    created(client, bob, [alice])  # the blocker may still put the blocked user in a group


def test_a_blocked_user_cannot_add_you_to_a_group(client, socket_client, auth, trio):
    alice, bob, carol = trio
    dave = auth.user()
    conv = created(client, alice, [carol])
    block(client, bob, alice)
    b1 = socket_client(bob)
    received(b1)
    for users in ([bob], [dave, bob]):
        response = add(client, alice, conv["id"], users)
        assert response.status_code == 403, response.get_json()
        error = response.get_json()["error"]
        assert error["code"] == "forbidden" and error["details"] == {"user_ids": [bob.id]}
    after = get(client, alice, conv["id"]).get_json()
    assert after["member_count"] == 2 and after["version"] == conv["version"]  # nothing added
    assert {m["user"]["id"] for m in after["members"]} == {alice.id, carol.id}
    assert received(b1, "conversation") == []
    assert get(client, bob, conv["id"]).status_code == 404
    assert add(client, alice, conv["id"], [dave]).status_code == 200  # others still can be


def test_shared_groups_stay_and_their_messages_flow(client, socket_client, auth, trio):
    alice, bob, carol = trio
    conv = created(client, alice, [bob, carol])
    block(client, bob, alice)
    dave = auth.user()
    # bob is a member already: re-adding him is ignored, not refused, and dave gets in
    assert add(client, alice, conv["id"], [bob, dave]).status_code == 200
    members = {m["user"]["id"] for m in get(client, alice, conv["id"]).get_json()["members"]}
    assert members == {alice.id, bob.id, carol.id, dave.id}
    a1, b1 = socket_client(alice), socket_client(bob)
    received(a1), received(b1)
    from_alice = posted(client, alice, conv["id"], "to the group")
    from_bob = posted(client, bob, conv["id"], "me too")
    # (a REST send also reaches the sender's own sockets)
    for sc in (a1, b1):
        assert [e["id"] for _, e in received(sc, "chat message")] == [from_alice["id"],
                                                                      from_bob["id"]]


# --- direct messages (the send check lives in chatapp/chat/service.py) ------------------

def test_history_stays(client, trio):
    alice, bob, _ = trio
    sent(client, alice, bob, "before")
    sent(client, bob, alice, "reply")
    block(client, bob, alice)
    for viewer in (alice, bob):
        response = history(client, viewer, alice, bob)
        assert [m["content"] for m in response.get_json()] == ["reply", "before"]


def test_the_send_check(app, trio):
    """`check_can_message`, as chat/service.py calls it for every direct send."""
    alice, bob, carol = (ObjectId(u.id) for u in trio)
    with app.app_context():
        block_store.add(bob, alice, datetime.now(timezone.utc))  # bob blocks alice
        with pytest.raises(Exception) as refused:
            blocks.check_can_message(alice, bob)
        assert refused.value.status == 403 and refused.value.code == "forbidden"
        with pytest.raises(Exception) as own_block:
            blocks.check_can_message(bob, alice)  # the blocker: unblock first
        assert own_block.value.code == "forbidden"
        blocks.check_can_message(alice, carol)  # others: no error
        blocks.check_can_message(alice, alice)
        assert blocks.blocked_either(alice, bob) and blocks.blocked_either(bob, alice)
        assert not blocks.blocked_either(alice, carol)
        assert blocks.blockers_of(alice) == {bob} and blocks.blocked_by(bob) == {alice}
        assert blocks.blockers_of(alice, among=[carol]) == set()
        assert blocks.blocks_involving(alice) == {bob} == blocks.blocks_involving(alice)


def test_a_blocked_sender_gets_403_over_rest_and_nothing_is_stored(client, socket_client,
                                                                   trio):
    alice, bob, _ = trio
    sent(client, alice, bob, "before")
    block(client, bob, alice)
    b1 = socket_client(bob)
    received(b1)
    response = send(client, alice, bob, "after", client_id="c-after")
    assert response.status_code == 403
    assert response.get_json()["error"]["code"] == "forbidden"
    assert [m["content"] for m in history(client, bob, alice, bob).get_json()] == ["before"]
    assert received(b1, "chat message") == []


def test_a_blocked_sender_gets_forbidden_over_sockets(client, socket_client, trio):
    alice, bob, _ = trio
    block(client, bob, alice)
    a1, b1 = socket_client(alice), socket_client(bob)
    received(b1)
    assert error_ack("forbidden")(a1.emit("chat message", {"receiver": bob.id,
                                                           "content": "after"}, callback=True))
    assert received(b1, "chat message") == []
    assert history(client, bob, alice, bob).get_json() == []


def test_a_blocked_sender_gets_403_in_the_direct_conversation(client, trio):
    alice, bob, _ = trio
    first = sent(client, alice, bob, "before")
    block(client, bob, alice)
    for ref in (bob.id, first["conversation"]):
        response = client.post(f"/api/chat/conversations/{ref}/messages",
                               headers=alice.headers, json={"content": "after"})
        assert response.status_code == 403, response.get_json()
        assert response.get_json()["error"]["code"] == "forbidden"
    assert [m["content"] for m in history(client, bob, alice, bob).get_json()] == ["before"]


def test_the_blocker_cannot_message_the_blocked_user_either(client, trio):
    alice, bob, _ = trio
    block(client, bob, alice)
    response = send(client, bob, alice, "hi")
    assert response.status_code == 403
    unblock(client, bob, alice)
    assert send(client, bob, alice, "hi").status_code == 201
    assert send(client, alice, bob, "hi back").status_code == 201


def test_the_direct_send_403_is_documented(client):
    paths = client.get("/api/openapi.json").get_json()["paths"]
    assert "403" in paths["/api/chat/conversations/{conversation}/messages"]["post"]["responses"]
    assert "blocked" in paths["/api/chat/send"]["post"]["responses"]["403"]["description"]


def test_the_group_creation_403_is_documented(client):
    paths = client.get("/api/openapi.json").get_json()["paths"]
    assert "403" in paths["/api/chat/groups"]["post"]["responses"]


# --- presence ------------------------------------------------------------------------------

def presences(sc, user):
    return [e for _, e in received(sc, "presence") if e["user"] == user.id]


def test_the_blocked_user_sees_no_presence_of_the_blocker(client, socket_client, trio):
    alice, bob, carol = trio
    sent(client, bob, alice)
    sent(client, bob, carol)
    a1, c1 = socket_client(alice), socket_client(carol)
    block(client, bob, alice)
    received(a1), received(c1)
    b1 = socket_client(bob)
    assert presences(a1, bob) == []
    assert [e["online"] for e in presences(c1, bob)] == [True]
    b1.disconnect()
    assert presences(a1, bob) == []
    [offline] = presences(c1, bob)
    assert offline["online"] is False and offline["last_seen"]
    # the blocker still sees the blocked user's presence (the block is one-way)
    b2 = socket_client(bob)
    received(b2)
    a1.disconnect()
    assert [e["online"] for e in presences(b2, alice)] == [False]


def test_blocking_and_unblocking_retell_presence(client, socket_client, trio):
    """A client's view follows `User.online`: blocking shows the blocker offline (no
    last_seen) to the blocked user at once, unblocking shows the real state again."""
    alice, bob, carol = trio
    sent(client, alice, bob)
    a1, b1, c1 = socket_client(alice), socket_client(bob), socket_client(carol)
    received(a1), received(c1)
    block(client, bob, alice)
    assert presences(a1, bob) == [{"user": bob.id, "online": False, "last_seen": None}]
    block(client, bob, alice)  # again: nothing changes, nothing is told
    assert presences(a1, bob) == []
    block(client, bob, carol)  # no conversation shared: carol never had bob's presence
    assert received(c1, "presence") == []
    unblock(client, bob, alice)
    assert presences(a1, bob) == [{"user": bob.id, "online": True, "last_seen": None}]
    unblock(client, bob, alice)
    assert presences(a1, bob) == []
    b1.disconnect()
    [offline] = presences(a1, bob)  # restored: the next change is announced as before
    assert offline["online"] is False and offline["last_seen"]


def test_online_and_last_seen_are_hidden_from_the_blocked_user(client, socket_client, trio):
    alice, bob, carol = trio
    sent(client, bob, alice)
    sent(client, bob, carol)
    b1 = socket_client(bob)
    b1.disconnect()
    b1 = socket_client(bob)  # online, with a last_seen
    a1 = socket_client(alice)
    block(client, bob, alice)

    def seen_by(viewer):
        views = [profile(client, viewer, bob)]
        users = client.get(f"/api/user?q={bob.username}", headers=viewer.headers).get_json()
        views.append(users["users"][0])
        [entry] = [e for e in listed(client, viewer) if e["user"]["id"] == bob.id]
        views.append(entry["user"])
        members = get(client, viewer, entry["conversation"]["id"]).get_json()["members"]
        views += [m["user"] for m in members if m["user"]["id"] == bob.id]
        return {(v["online"], v["last_seen"] is not None) for v in views}

    assert seen_by(alice) == {(False, False)}
    assert seen_by(carol) == {(True, True)}
    assert profile(client, bob, alice)["online"] is True  # one-way: bob still sees alice
    unblock(client, bob, alice)
    assert seen_by(alice) == {(True, True)}
    a1.disconnect(), b1.disconnect()


# --- typing --------------------------------------------------------------------------------

def typing_from(sc, user):
    return [e["typing"] for _, e in received(sc, "typing") if e["sender"] == user.id]


def test_no_typing_either_way_in_direct_or_group_conversations(client, socket_client, trio):
    alice, bob, carol = trio
    sent(client, alice, bob)
    group = created(client, alice, [bob, carol])["id"]
    block(client, bob, alice)
    a1, b1, c1 = socket_client(alice), socket_client(bob), socket_client(carol)
    for sc in (a1, b1, c1):
        received(sc)
    for typist, other, sock in ((alice, bob, a1), (bob, alice, b1)):
        for target in ({"receiver": other.id}, {"conversation": group}):
            ack = sock.emit("typing", {**target, "typing": True}, callback=True)
            assert ack == {"ok": True}  # accepted as to a stranger: relayed to nobody
            ack = sock.emit("typing", {**target, "typing": False}, callback=True)
            assert ack == {"ok": True}
    assert typing_from(b1, alice) == [] and typing_from(a1, bob) == []
    got = [(e["sender"], e["typing"]) for _, e in received(c1, "typing")]
    assert got == [(alice.id, True), (alice.id, False), (bob.id, True), (bob.id, False)]
    unblock(client, bob, alice)
    a1.emit("typing", {"receiver": bob.id, "typing": True}, callback=True)
    b1.emit("typing", {"conversation": group, "typing": True}, callback=True)
    assert typing_from(b1, alice) == [True]
    assert typing_from(a1, bob) == [True]


class TestTypingLapse:
    TIMEOUT = 0.5

    @pytest.fixture
    def app(self):
        return create_app(TestingConfig, TYPING_TIMEOUT=self.TIMEOUT)

    def test_a_block_made_while_typing_holds_back_the_lapse_too(self, client, socket_client,
                                                                trio):
        alice, bob, carol = trio
        group = created(client, alice, [bob, carol])["id"]
        a1, b1, c1 = socket_client(alice), socket_client(bob), socket_client(carol)
        for sc in (a1, b1, c1):
            received(sc)
        a1.emit("typing", {"conversation": group, "typing": True}, callback=True)
        assert typing_from(b1, alice) == [True] and typing_from(c1, alice) == [True]
        block(client, bob, alice)
        assert [e["typing"] for _, e in collect(c1, 1, timeout=3)] == [False]
        time.sleep(0.2)
        assert typing_from(b1, alice) == []


# --- costs ---------------------------------------------------------------------------------

class CountingBlocks:
    """The blocks collection, counting the queries made on it."""

    def __init__(self, collection):
        self.collection, self.queries = collection, 0

    def __getattr__(self, name):
        attr = getattr(self.collection, name)
        if name in ("find", "find_one", "aggregate", "count_documents"):
            def counted(*args, **kwargs):
                self.queries += 1
                return attr(*args, **kwargs)
            return counted
        return attr


@pytest.fixture
def counted_blocks(monkeypatch):
    counter = {}
    real = block_store.blocks

    def blocks_collection():
        counter.setdefault("c", CountingBlocks(real()))
        counter["c"].collection = real()
        return counter["c"]

    monkeypatch.setattr(block_store, "blocks", blocks_collection)
    blocks_collection()
    return counter["c"]


def test_fan_outs_make_one_blocks_query_whatever_the_number_of_recipients(
        client, socket_client, auth, counted_blocks):
    alice = auth.user()
    others = [auth.user() for _ in range(6)]
    for other in others:
        sent(client, other, alice)
    group = created(client, alice, others)["id"]
    block(client, others[0], alice)
    watchers = [socket_client(u) for u in others]
    counted_blocks.queries = 0
    a1 = socket_client(alice)  # presence to 6 peers
    assert counted_blocks.queries == 1
    counted_blocks.queries = 0
    a1.emit("typing", {"conversation": group, "typing": False}, callback=True)
    assert counted_blocks.queries == 1
    assert all(typing_from(w, alice) == [False] for w in watchers[1:])
    assert typing_from(watchers[0], alice) == []
