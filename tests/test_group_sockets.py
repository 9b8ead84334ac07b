"""Group conversations in real time (Flask-SocketIO's test client): fan-out, the
`conversation` events, removed members hearing nothing more, typing, receipts, presence,
and the membership races."""
import pytest
from bson import ObjectId

from chatapp import create_app
from chatapp.conversations import members as members_service
from chatapp.conversations import store as conversation_store
from chatapp.extensions import mongo
from config import TestingConfig

from tests.conftest import Auth
from tests.test_chat_rest import Marked, sent
from tests.test_chat_sockets import collect, error_ack, received
from tests.test_groups import add, created, get, posted, remove, set_role


@pytest.fixture
def trio(auth):
    return auth.user(), auth.user(), auth.user()


def names(events):
    return [name for name, _ in events]


def test_conversation_events_reach_every_member(client, socket_client, trio, auth):
    alice, bob, carol = trio
    a, b, c = (socket_client(u) for u in trio)
    conv = created(client, alice, [bob, carol])
    for sc in (a, b, c):
        [(name, event)] = received(sc, "conversation")
        assert event["type"] == "created" and event["by"] == alice.id
        assert event["conversation"]["id"] == conv["id"]
        assert event["version"] == conv["version"]
        assert {m["user"]["id"] for m in event["conversation"]["members"]} == \
            {alice.id, bob.id, carol.id}
    dave = auth.user()
    d = socket_client(dave)
    add(client, alice, conv["id"], [dave])
    for sc in (a, b, c, d):
        [(name, event)] = received(sc, "conversation")
        assert event["type"] == "member_added" and event["user"] == dave.id
        assert event["by"] == alice.id
    client.patch(f"/api/chat/conversations/{conv['id']}", headers=alice.headers,
                 json={"title": "Renamed"})
    set_role(client, alice, conv["id"], bob, "admin")
    for sc in (a, b, c, d):
        events = [e for _, e in received(sc, "conversation")]
        assert [(e["type"], e.get("user")) for e in events] == [("updated", None),
                                                                ("role_changed", bob.id)]
        assert events[0]["conversation"]["title"] == "Renamed"
        assert events[0]["version"] < events[1]["version"]


def test_group_message_fans_out_to_every_socket_but_the_sending_one(client, socket_client,
                                                                    trio, auth):
    alice, bob, carol = trio
    conv = created(client, alice, [bob, carol])
    eve = auth.user()
    a1, a2, b1, c1, e1 = (socket_client(u) for u in (alice, alice, bob, carol, eve))
    for sc in (a1, a2, b1, c1, e1):
        received(sc)
    ack = a1.emit("chat message", {"conversation": conv["id"], "content": "hey",
                                   "client_id": "s-1"}, callback=True)
    assert ack["ok"] is True
    message = ack["message"]
    assert message["conversation"] == conv["id"] and message["receiver"] is None
    assert received(a1) == []
    for sc in (a2, b1, c1):
        assert received(sc) == [("chat message", message)]
    assert received(e1) == []
    retry = a1.emit("chat message", {"conversation": conv["id"], "content": "hey",
                                     "client_id": "s-1"}, callback=True)
    assert retry == {"ok": True, "message": message}
    assert all(received(sc) == [] for sc in (a2, b1, c1))  # a retry delivers nothing new
    # REST sends fan out the same way
    rest = posted(client, bob, conv["id"], "over rest")
    for sc in (a1, a2, b1, c1):
        assert received(sc) == [("chat message", rest)]


@pytest.mark.parametrize("payload", [
    {"content": "x"},
    {"receiver": "RECEIVER", "conversation": "CONV", "content": "x"},
    {"conversation": "nothex", "content": "x"},
    {"conversation": "CONV", "content": "  "},
    {"conversation": "CONV"},
])
def test_socket_send_needs_exactly_one_target(client, socket_client, trio, payload):
    alice, bob, _ = trio
    conv = created(client, alice, [bob])
    payload = {k: {"RECEIVER": bob.id, "CONV": conv["id"]}.get(v, v) for k, v in payload.items()}
    sc, b1 = socket_client(alice), socket_client(bob)
    received(b1)
    assert error_ack("validation_error")(sc.emit("chat message", payload, callback=True))
    assert received(b1) == []


def test_strangers_cannot_send_or_type_into_a_group(client, socket_client, trio, auth):
    alice, bob, _ = trio
    conv = created(client, alice, [bob])
    eve = auth.user()
    e1, b1 = socket_client(eve), socket_client(bob)
    received(b1)
    for event, payload in (("chat message", {"conversation": conv["id"], "content": "x"}),
                           ("typing", {"conversation": conv["id"], "typing": True}),
                           ("read", {"conversation": conv["id"]}),
                           ("delivered", {"conversation": conv["id"], "up_to": conv["id"]})):
        assert error_ack("not_found")(e1.emit(event, payload, callback=True)), event
    assert received(b1) == []


def test_removed_member_gets_nothing_more_from_that_instant(client, socket_client, trio):
    alice, bob, carol = trio
    conv = created(client, alice, [bob, carol])
    cid = conv["id"]
    a1, b1, b2, c1 = (socket_client(u) for u in (alice, bob, bob, carol))
    for sc in (a1, b1, b2, c1):
        received(sc)
    assert remove(client, alice, cid, bob).status_code == 200
    for sc in (b1, b2):  # the removed user is told, on every socket, and that is the last
        [(name, event)] = received(sc)
        assert name == "conversation" and event["type"] == "member_removed"
        assert event["user"] == bob.id and bob.id not in {
            m["user"]["id"] for m in event["conversation"]["members"]}
    posted(client, alice, cid, "after bob left")
    c1.emit("typing", {"conversation": cid, "typing": True}, callback=True)
    c1.emit("read", {"conversation": cid}, callback=True)
    client.patch(f"/api/chat/conversations/{cid}", headers=alice.headers, json={"title": "T"})
    assert collect(c1, 1)  # carol got the message
    assert received(b1) == [] and received(b2) == []
    # and bob's own attempts are refused, nothing stored or relayed
    ack = b1.emit("chat message", {"conversation": cid, "content": "still here?"},
                  callback=True)
    assert error_ack("not_found")(ack)
    assert [m["content"] for m in client.get(f"/api/chat/conversations/{cid}/messages",
                                             headers=alice.headers).get_json()] == \
        ["after bob left"]


def test_typing_in_groups(client, socket_client, trio):
    alice, bob, carol = trio
    cid = created(client, alice, [bob, carol])["id"]
    a1, a2, b1, c1 = (socket_client(u) for u in (alice, alice, bob, carol))
    for sc in (a1, a2, b1, c1):
        received(sc)
    assert a1.emit("typing", {"conversation": cid, "typing": True}, callback=True) == \
        {"ok": True}
    expected = [("typing", {"sender": alice.id, "conversation": cid, "typing": True})]
    for sc in (b1, c1):
        assert received(sc) == expected
    assert received(a1) == [] and received(a2) == []  # as in 1:1: not to the typist's tabs
    assert error_ack("validation_error")(a1.emit(
        "typing", {"conversation": cid, "receiver": bob.id, "typing": True}, callback=True))


def test_direct_typing_keeps_its_shape_and_gains_conversation(client, socket_client, trio):
    alice, bob, _ = trio
    a1, b1 = socket_client(alice), socket_client(bob)
    message = sent(client, alice, bob)
    received(b1)
    a1.emit("typing", {"receiver": bob.id, "typing": False}, callback=True)
    a1.emit("typing", {"conversation": message["conversation"], "typing": False}, callback=True)
    expected = ("typing", {"sender": alice.id, "conversation": message["conversation"],
                           "typing": False})
    assert received(b1) == [expected, expected]


def _small_groups_app(limit):
    app = create_app(TestingConfig, SMALL_GROUP_MAX=limit)
    return app, app.test_client()


def test_large_groups_accept_typing_and_delivered_without_relaying():
    app, client = _small_groups_app(2)
    from chatapp.extensions import socketio

    alice, bob, carol = (Auth(client).user() for _ in range(3))
    cid = created(client, alice, [bob, carol])["id"]  # 3 members > SMALL_GROUP_MAX
    message = posted(client, alice, cid)
    b1, c1 = (socketio.test_client(app, auth={"token": u.token}, flask_test_client=client)
              for u in (bob, carol))
    received(b1), received(c1)
    assert b1.emit("typing", {"conversation": cid, "typing": True}, callback=True) == \
        {"ok": True}
    ack = b1.emit("delivered", {"conversation": cid, "up_to": message["id"]}, callback=True)
    assert ack["ok"] is True
    ack = b1.emit("read", {"conversation": cid, "up_to": message["id"]}, callback=True)
    assert ack == Marked(ok=True, updated=1)
    events = received(c1)
    assert names(events) == ["read"]  # read markers work at every size
    assert events[0][1]["reader"] == bob.id and events[0][1]["up_to"] == message["id"]
    markers = {m["user"]["id"]: (m["delivered_up_to"], m["read_up_to"])
               for m in get(client, alice, cid).get_json()["members"]}
    assert markers[bob.id] == (message["seq"], message["seq"])  # stored all the same
    b1.disconnect(), c1.disconnect()


def test_group_receipts_over_sockets(client, socket_client, trio):
    alice, bob, carol = trio
    cid = created(client, alice, [bob, carol])["id"]
    m1 = posted(client, alice, cid, "one")
    m2 = posted(client, alice, cid, "two")
    a1, b1, c1 = (socket_client(u) for u in trio)
    for sc in (a1, b1, c1):
        received(sc)
    ack = b1.emit("delivered", {"conversation": cid, "up_to": m2["id"]}, callback=True)
    assert ack == Marked(ok=True, updated=2)
    for sc in (a1, c1):
        [(name, event)] = received(sc)
        assert name == "delivered"
        assert set(event) == {"receiver", "conversation", "up_to", "delivered_at", "version"}
        assert event["receiver"] == bob.id and event["up_to"] == m2["id"]
    ack = b1.emit("read", {"conversation": cid, "up_to": m1["id"]}, callback=True)
    assert ack == Marked(ok=True, updated=1)
    [(name, event)] = received(a1)
    assert name == "read" and event["reader"] == bob.id and event["conversation"] == cid
    assert received(b1) == []  # the reader is not told about themself
    assert b1.emit("read", {"conversation": cid, "up_to": m1["id"]}, callback=True) == \
        {"ok": True, "updated": 0}
    assert received(a1) == []  # a marker that did not move tells nobody
    stored = {m["user"]["id"]: m for m in get(client, alice, cid).get_json()["members"]}
    assert (stored[bob.id]["read_up_to"], stored[bob.id]["delivered_up_to"]) == (1, 2)
    assert error_ack("validation_error")(b1.emit(
        "read", {"conversation": cid, "peer": alice.id}, callback=True))


def test_presence_reaches_direct_peers_and_small_groups_only():
    app, client = _small_groups_app(3)
    from chatapp.extensions import socketio

    users = [Auth(client).user() for _ in range(5)]
    alice, bob, carol, dave, erin = users
    created(client, alice, [bob, carol])           # small: 3 members
    created(client, alice, [dave, erin, bob])      # large: 4 members > 3
    watchers = {u.id: socketio.test_client(app, auth={"token": u.token},
                                           flask_test_client=client) for u in users[1:]}
    for sc in watchers.values():
        received(sc)
    sc = socketio.test_client(app, auth={"token": alice.token}, flask_test_client=client)
    got = {uid: names(received(w, "presence")) for uid, w in watchers.items()}
    assert got == {bob.id: ["presence"], carol.id: ["presence"], dave.id: [], erin.id: []}
    for w in (sc, *watchers.values()):
        w.disconnect()


# --- races ------------------------------------------------------------------------------
# Deterministic interleavings: the competing change is made between the service's read of
# the membership and its write, exactly where a concurrent request would land.

def test_send_while_the_sender_is_being_removed_is_refused(client, socket_client, trio,
                                                          monkeypatch):
    alice, bob, carol = trio
    cid = created(client, alice, [bob, carol])["id"]
    c1 = socket_client(carol)
    received(c1)
    from chatapp.chat import service as chat_service

    real_take_seq = chat_service.conversation_store.take_seq

    def removed_first(conversation_id, sender_id, *args):
        # bob was a member when his request came in (validated, counted)... and is removed
        # now, just before his message takes its seq
        monkeypatch.setattr(chat_service.conversation_store, "take_seq", real_take_seq)
        assert remove(client, alice, cid, bob).status_code == 200
        return real_take_seq(conversation_id, sender_id, *args)

    monkeypatch.setattr(chat_service.conversation_store, "take_seq", removed_first)
    response = client.post(f"/api/chat/conversations/{cid}/messages", headers=bob.headers,
                           json={"content": "sneaky"})
    assert response.status_code == 404
    assert client.get(f"/api/chat/conversations/{cid}/messages",
                      headers=alice.headers).get_json() == []
    assert names(received(c1)) == ["conversation"]  # the removal, and no message


def test_concurrent_remove_and_add_of_one_user_stay_consistent(client, trio, auth,
                                                              monkeypatch):
    alice, bob, carol = trio
    dave = auth.user()
    cid = created(client, alice, [bob, carol])["id"]
    assert set_role(client, alice, cid, bob, "admin").status_code == 200
    real_update = conversation_store.update
    fired = []

    def update_after_a_competitor(conversation_id, condition, changes, before=False):
        if not fired:  # alice's removal of carol lands first, between bob's read and write
            fired.append(True)
            assert remove(client, alice, cid, carol).status_code == 200
        return real_update(conversation_id, condition, changes, before)

    monkeypatch.setattr(members_service.store, "update", update_after_a_competitor)
    response = add(client, bob, cid, [carol, dave])  # bob read carol as a member: adds dave
    monkeypatch.setattr(members_service.store, "update", real_update)
    assert response.status_code == 200
    doc = mongo.db.conversations.find_one({"_id": ObjectId(cid)})
    assert doc["member_count"] == len(doc["member_ids"]) == len(doc["members"])
    assert set(doc["members"]) == {str(i) for i in doc["member_ids"]}
    # The outcome of one order: the removal's write landed first, so bob's add (which took
    # its number before) is refused and re-evaluated after it: carol and dave are added.
    assert set(doc["members"]) == {alice.id, bob.id, carol.id, dave.id}
    events = client.get(f"/api/chat/conversations/{cid}/changes?since=0",
                        headers=alice.headers).get_json()["events"]
    assert [(e["type"], e.get("user")) for e in events][-3:] == [
        ("member_removed", carol.id), ("member_added", carol.id), ("member_added", dave.id)]


def test_an_admin_demoted_meanwhile_cannot_remove(client, trio, auth, monkeypatch):
    alice, bob, carol = trio
    cid = created(client, alice, [bob, carol])["id"]
    assert set_role(client, alice, cid, bob, "admin").status_code == 200
    real_update = conversation_store.update
    fired = []

    def demote_first(conversation_id, condition, changes, before=False):
        if not fired:
            fired.append(True)
            assert set_role(client, alice, cid, bob, "member").status_code == 200
        return real_update(conversation_id, condition, changes, before)

    monkeypatch.setattr(members_service.store, "update", demote_first)
    response = remove(client, bob, cid, carol)
    monkeypatch.setattr(members_service.store, "update", real_update)
    assert response.status_code == 403
    assert carol.id in {m["user"]["id"] for m in get(client, alice, cid).get_json()["members"]}


def test_two_admins_adding_the_same_user_at_once_add_them_once(client, socket_client, trio,
                                                              auth, monkeypatch):
    alice, bob, carol = trio
    dave = auth.user()
    cid = created(client, alice, [bob, carol])["id"]
    assert set_role(client, alice, cid, bob, "admin").status_code == 200
    d1 = socket_client(dave)
    real_update = conversation_store.update
    fired = []

    def other_admin_first(conversation_id, condition, changes, before=False):
        if not fired:  # both read dave as a newcomer; alice's add lands first
            fired.append(True)
            assert add(client, alice, cid, [dave]).status_code == 200
        return real_update(conversation_id, condition, changes, before)

    monkeypatch.setattr(members_service.store, "update", other_admin_first)
    response = add(client, bob, cid, [dave])
    monkeypatch.setattr(members_service.store, "update", real_update)
    assert response.status_code == 200
    doc = mongo.db.conversations.find_one({"_id": ObjectId(cid)})
    assert doc["member_ids"].count(ObjectId(dave.id)) == 1
    assert doc["member_count"] == len(doc["member_ids"]) == len(doc["members"]) == 4
    added = [e for _, e in received(d1, "conversation") if e["type"] == "member_added"]
    assert len(added) == 1  # announced once


def test_online_and_last_seen_are_shown_only_to_presence_peers():
    """`User.online`/`last_seen` agree with where `presence` goes: the user themself, direct
    peers and small-group peers see them; strangers and large-group peers see false/null."""
    app, client = _small_groups_app(3)
    from chatapp.extensions import socketio

    alice, bob, carol, dave, erin, eve = (Auth(client).user() for _ in range(6))
    sent(client, alice, bob)                       # direct
    created(client, alice, [carol, dave])           # small group: 3 members
    created(client, alice, [dave, erin, eve])       # large group: 4 > 3
    sock = socketio.test_client(app, auth={"token": alice.token}, flask_test_client=client)
    sock.disconnect()  # alice has a last_seen now...
    sock = socketio.test_client(app, auth={"token": alice.token}, flask_test_client=client)
    for viewer, sees in ((alice, True), (bob, True), (carol, True), (dave, True),
                         (erin, False), (eve, False)):
        profile = client.get(f"/api/user/{alice.id}", headers=viewer.headers).get_json()
        assert profile["online"] is sees, viewer.username
        assert (profile["last_seen"] is not None) is sees, viewer.username
        listed = client.get(f"/api/user?q={alice.username}", headers=viewer.headers).get_json()
        assert listed["users"][0]["online"] is sees
    sock.disconnect()


def test_deleting_a_deleted_message_answers_200_and_emits_nothing(client, socket_client, trio):
    alice, bob, _ = trio
    message = sent(client, alice, bob, "oops")
    b1 = socket_client(bob)
    received(b1)
    url = f"/api/chat/messages/{message['id']}"
    first = client.delete(url, headers=alice.headers)
    assert first.status_code == 200
    assert names(received(b1)) == ["message deleted"]
    again = client.delete(url, headers=alice.headers)
    assert again.status_code == 200 and again.get_json() == first.get_json()
    assert received(b1) == []  # nothing new happened: nobody is told again
