"""The change feed: `GET /api/chat/conversations/<conversation>/changes` and its visibility
rule (in-process; the two-process soak with writes finishing out of order is
test_sync_soak.py)."""
import time
from datetime import datetime, timedelta, timezone

import pytest
from bson import ObjectId

from chatapp.chat import store
from chatapp.conversations import store as conversation_store
from chatapp.extensions import mongo
from chatapp.sync import service as sync

from tests.test_chat_rest import ISO_MS, assert_error, sent
from tests.test_groups import add, created, get, posted, remove, set_role

EVENT_KEYS = {"type", "version", "at", "user", "by", "up_to", "title", "role"}


def changes(client, account, conv_id, **params):
    return client.get(f"/api/chat/conversations/{conv_id}/changes", headers=account.headers,
                      query_string=params)


def feed(client, account, conv_id, since=0, **params):
    response = changes(client, account, conv_id, since=since, **params)
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert set(body) == {"messages", "events", "version", "more"}
    for event in body["events"]:
        assert set(event) <= EVENT_KEYS and ISO_MS.match(event["at"]), event
    return body


def catch_up(client, account, conv_id, since=0, limit=100):
    """The documented procedure: call from the held version until `more` is false."""
    messages, events, pages = {}, [], 0
    while True:
        body = feed(client, account, conv_id, since=since, limit=limit)
        assert body["version"] >= since
        for m in body["messages"]:
            messages[m["id"]] = m
        events += body["events"]
        since, pages = body["version"], pages + 1
        if not body["more"]:
            return messages, events, since, pages
        assert pages < 1000


def edit(client, account, message_id, content):
    response = client.patch(f"/api/chat/messages/{message_id}", headers=account.headers,
                            json={"content": content})
    assert response.status_code == 200, response.get_json()
    return response.get_json()["message"]


def delete(client, account, message_id):
    response = client.delete(f"/api/chat/messages/{message_id}", headers=account.headers)
    assert response.status_code == 200, response.get_json()
    return response.get_json()["message"]


def read(client, account, conv_id, **body):
    response = client.post(f"/api/chat/conversations/{conv_id}/read", headers=account.headers,
                           json=body)
    assert response.status_code == 200, response.get_json()


@pytest.fixture
def quick(app):
    """Gaps are not waited for (the visibility tests look at one answer at a time)."""
    app.config["SYNC_GAP_WAIT_MS"] = 0
    return app


def age(app, conv_id, seconds=60):
    """Make every number of a conversation look taken `seconds` ago (past the deadline)."""
    past = datetime.now(timezone.utc) - timedelta(seconds=seconds)
    with app.app_context():
        mongo.db.changes.update_many({"conv": ObjectId(conv_id)}, {"$set": {"at": past}})
        mongo.db.conversations.update_one({"_id": ObjectId(conv_id)},
                                          {"$set": {"version_at": past}})


def take_number(app, conv_id):
    """A writer that took the next version and has not written yet."""
    with app.app_context():
        return conversation_store.take_version(ObjectId(conv_id))["version"]


# --- every change takes a version ----------------------------------------------------------

def test_every_change_in_a_group_comes_back_in_version_order(client, auth, socket_client):
    alice, bob, carol, dave = auth.user(), auth.user(), auth.user(), auth.user()
    conv = created(client, alice, [bob, carol], title="Trip")
    assert conv["version"] == 4  # three members added, then the title
    m1 = posted(client, alice, conv["id"], "first")
    m2 = posted(client, bob, conv["id"], "second")
    assert (m1["version"], m2["version"]) == (5, 6)
    assert edit(client, alice, m1["id"], "first, edited")["version"] == 7
    read(client, bob, conv["id"])  # 8
    renamed = client.patch(f"/api/chat/conversations/{conv['id']}", headers=alice.headers,
                           json={"title": "Trip 2"})
    assert renamed.get_json()["conversation"]["version"] == 9
    assert add(client, alice, conv["id"], [dave]).status_code == 200  # 10
    assert set_role(client, alice, conv["id"], bob, "admin").status_code == 200  # 11
    assert remove(client, alice, conv["id"], carol).status_code == 200  # 12
    assert delete(client, bob, m2["id"])["version"] == 13
    dave_socket = socket_client(dave)
    ack = dave_socket.emit("delivered", {"conversation": conv["id"], "up_to": m1["id"]},
                           callback=True)
    assert ack["ok"], ack  # 14

    body = feed(client, dave, conv["id"])  # dave joined at 10: he sees everything
    assert (body["version"], body["more"]) == (14, False)
    assert get(client, dave, conv["id"]).get_json()["version"] == 14
    assert [(m["id"], m["version"], m["content"], m["deleted"]) for m in body["messages"]] == [
        (m1["id"], 7, "first, edited", False), (m2["id"], 13, "", True)]
    events = [{k: v for k, v in e.items() if k != "at"} for e in body["events"]]
    assert events == [
        {"type": "member_added", "version": 1, "user": alice.id, "by": alice.id, "role": "owner"},
        {"type": "member_added", "version": 2, "user": bob.id, "by": alice.id, "role": "member"},
        {"type": "member_added", "version": 3, "user": carol.id, "by": alice.id, "role": "member"},
        {"type": "title_changed", "version": 4, "title": "Trip", "by": alice.id},
        {"type": "read", "version": 8, "user": bob.id, "up_to": m2["id"]},
        {"type": "title_changed", "version": 9, "title": "Trip 2", "by": alice.id},
        {"type": "member_added", "version": 10, "user": dave.id, "by": alice.id, "role": "member"},
        {"type": "role_changed", "version": 11, "user": bob.id, "by": alice.id, "role": "admin"},
        {"type": "member_removed", "version": 12, "user": carol.id, "by": alice.id},
        {"type": "delivered", "version": 14, "user": dave.id, "up_to": m1["id"]},
    ]


def test_ownership_passing_on_leave_is_two_changes(client, auth):
    alice, bob = auth.user(), auth.user()
    conv = created(client, alice, [bob])  # 1..3
    assert remove(client, alice, conv["id"], alice).status_code == 200
    events = feed(client, bob, conv["id"], since=3)["events"]
    assert [(e["type"], e["version"], e["user"], e.get("role")) for e in events] == [
        ("member_removed", 4, alice.id, None), ("role_changed", 5, bob.id, "owner")]


def test_a_direct_conversation_by_the_peers_id(client, auth):
    alice, bob = auth.user(), auth.user()
    m1 = sent(client, alice, bob, "hello")
    m2 = sent(client, bob, alice, "hi back")
    read(client, bob, alice.id)
    edit(client, alice, m1["id"], "hello!")
    body = feed(client, bob, alice.id)  # a peer's user id names the direct conversation
    assert body["version"] == 4 and not body["more"]
    assert [m["content"] for m in body["messages"]] == ["hi back", "hello!"]
    assert [(e["type"], e["user"], e["up_to"]) for e in body["events"]] == [
        ("read", bob.id, m1["id"])]
    assert feed(client, alice, m1["conversation"]) == body
    assert m2["conversation"] == m1["conversation"]


# --- paging ------------------------------------------------------------------------------

def test_paging_with_limit_and_more(client, auth):
    alice, bob = auth.user(), auth.user()
    conv = created(client, alice, [bob])  # 3 versions
    ids = [posted(client, alice if i % 2 else bob, conv["id"], f"m{i}")["id"] for i in range(7)]
    first = feed(client, bob, conv["id"], since=0, limit=4)
    assert (first["version"], first["more"]) == (4, True)
    assert [m["content"] for m in first["messages"]] == ["m0"]
    messages, events, version, pages = catch_up(client, bob, conv["id"], limit=3)
    assert (version, pages) == (10, 4) and list(messages) == ids and len(events) == 3
    assert feed(client, bob, conv["id"], since=10) == {"messages": [], "events": [],
                                                        "version": 10, "more": False}
    assert feed(client, bob, conv["id"], since=0, limit=10_000)["version"] == 10  # clamped


def test_a_message_changed_twice_in_one_page_comes_once_at_its_latest(client, auth):
    alice, bob = auth.user(), auth.user()
    conv = created(client, alice, [bob])
    m = posted(client, alice, conv["id"], "v1")
    other = posted(client, bob, conv["id"], "other")
    edit(client, alice, m["id"], "v2")
    body = feed(client, bob, conv["id"], since=3)
    assert [(x["id"], x["content"]) for x in body["messages"]] == [(other["id"], "other"),
                                                                    (m["id"], "v2")]


@pytest.mark.parametrize("params, field", [
    ({"since": 99}, "since"), ({"since": -1}, "since"), ({"since": "x"}, "since"), ({}, "since"),
    ({"since": 0, "limit": 0}, "limit"), ({"since": 0, "limit": "many"}, "limit"),
])
def test_bad_queries_are_422(client, auth, params, field):
    alice, bob = auth.user(), auth.user()
    conv = created(client, alice, [bob])
    error = assert_error(changes(client, alice, conv["id"], **params), 422, "validation_error")
    assert field in error["details"]


def test_strangers_and_former_members_get_404(client, auth):
    alice, bob, eve = auth.user(), auth.user(), auth.user()
    conv = created(client, alice, [bob])
    assert remove(client, alice, conv["id"], bob).status_code == 200
    for who in (bob, eve):
        assert_error(changes(client, who, conv["id"], since=0), 404, "not_found")
    assert_error(changes(client, alice, "not-an-id", since=0), 404, "not_found")
    assert_error(changes(client, alice, str(ObjectId()), since=0), 404, "not_found")
    dm = sent(client, alice, bob)
    assert_error(changes(client, eve, dm["conversation"], since=0), 404, "not_found")
    assert_error(changes(client, eve, alice.id, since=0), 404, "not_found")


def test_no_token_is_401(client):
    assert_error(client.get(f"/api/chat/conversations/{ObjectId()}/changes?since=0"), 401,
                 "unauthorized")


# --- the visibility rule -----------------------------------------------------------------

def test_a_version_above_one_being_written_is_held_back(client, auth, quick):
    alice, bob = auth.user(), auth.user()
    conv = created(client, alice, [bob])
    slow = take_number(quick, conv["id"])  # 4: a writer between its number and its write
    m = posted(client, alice, conv["id"], "after the slow one")
    assert m["version"] == slow + 1
    body = feed(client, bob, conv["id"], since=3)
    assert (body["version"], body["more"], body["messages"]) == (3, True, [])
    with quick.app_context():  # the slow writer finishes
        assert sync.record_event(ObjectId(conv["id"]), sync.pending(
            slow, "title_changed", title="late", by=ObjectId(alice.id))) == slow
    body = feed(client, bob, conv["id"], since=3)
    assert (body["version"], body["more"]) == (slow + 1, False)
    assert [e["version"] for e in body["events"]] == [slow]
    assert [x["id"] for x in body["messages"]] == [m["id"]]


def test_a_gap_past_the_deadline_is_void_and_its_writer_comes_back_above(client, auth, quick):
    alice, bob = auth.user(), auth.user()
    conv = created(client, alice, [bob])
    slow = take_number(quick, conv["id"])
    m = posted(client, alice, conv["id"], "next")
    age(quick, conv["id"])
    body = feed(client, bob, conv["id"], since=3)  # the reader settles `slow` as void
    assert (body["version"], body["more"]) == (slow + 1, False)
    assert [x["id"] for x in body["messages"]] == [m["id"]] and body["events"] == []
    with quick.app_context():  # the slow writer, past the deadline: its number is taken
        again = sync.record_event(ObjectId(conv["id"]), sync.pending(
            slow, "title_changed", title="late", by=ObjectId(alice.id)))
    assert again == slow + 2
    body = feed(client, bob, conv["id"], since=slow + 1)  # nothing skipped: it comes above
    assert [(e["type"], e["version"]) for e in body["events"]] == [("title_changed", again)]


def test_a_message_whose_writer_died_before_recording_it_is_recovered(
        client, auth, quick, monkeypatch):
    alice, bob = auth.user(), auth.user()
    conv = created(client, alice, [bob])
    monkeypatch.setattr(sync, "record_message", lambda conv_id, version, at, msg: version)
    lost = posted(client, alice, conv["id"], "stored, never recorded")
    monkeypatch.undo()
    after = posted(client, bob, conv["id"], "recorded")
    assert feed(client, bob, conv["id"], since=3)["version"] == 3  # young: held back
    age(quick, conv["id"])
    body = feed(client, bob, conv["id"], since=3)
    assert [x["id"] for x in body["messages"]] == [lost["id"], after["id"]]
    assert body["version"] == after["version"]


@pytest.mark.parametrize("change", ["rename", "add", "read", "role"])
def test_an_event_whose_writer_died_before_recording_it_is_recovered(
        client, auth, quick, monkeypatch, change):
    alice, bob, carol = auth.user(), auth.user(), auth.user()
    conv = created(client, alice, [bob])  # 1..3
    m = posted(client, bob, conv["id"], "hi")  # 4
    monkeypatch.setattr(sync, "record_event", lambda conv_id, entry, at=None: entry["v"])
    response = {
        "rename": lambda: client.patch(f"/api/chat/conversations/{conv['id']}",
                                       headers=alice.headers, json={"title": "Renamed"}),
        "add": lambda: add(client, alice, conv["id"], [carol]),
        "read": lambda: client.post(f"/api/chat/conversations/{conv['id']}/read",
                                    headers=alice.headers, json={}),
        "role": lambda: set_role(client, alice, conv["id"], bob, "admin"),
    }[change]()
    assert response.status_code == 200, response.get_json()
    monkeypatch.undo()
    after = posted(client, bob, conv["id"], "after")  # 6
    assert feed(client, alice, conv["id"], since=4)["version"] == 4  # young: held back
    age(quick, conv["id"])
    body = feed(client, alice, conv["id"], since=4)
    expected = {"rename": {"type": "title_changed", "title": "Renamed", "by": alice.id},
                "add": {"type": "member_added", "user": carol.id, "by": alice.id,
                        "role": "member"},
                "read": {"type": "read", "user": alice.id, "up_to": m["id"]},
                "role": {"type": "role_changed", "user": bob.id, "by": alice.id,
                         "role": "admin"}}[change]
    assert [{k: v for k, v in e.items() if k != "at"} for e in body["events"]] == [
        {**expected, "version": 5}]
    assert [x["id"] for x in body["messages"]] == [after["id"]] and body["version"] == 6


def test_a_change_refused_at_its_write_leaves_its_numbers_void(client, auth, quick,
                                                                 monkeypatch):
    """An admin demoted between the check and the write: nothing changes, and the numbers
    the rename took are settled at once as void (no reader waits for them)."""
    from chatapp.conversations import members
    alice, bob, carol = auth.user(), auth.user(), auth.user()
    conv = created(client, alice, [bob, carol])
    assert set_role(client, alice, conv["id"], bob, "admin").status_code == 200  # 5
    real_take = members._take
    demoted = []

    def demote_first(doc, *events):
        if not demoted:
            demoted.append(True)
            assert set_role(client, alice, conv["id"], bob, "member").status_code == 200
        return real_take(doc, *events)
    monkeypatch.setattr(members, "_take", demote_first)
    response = client.patch(f"/api/chat/conversations/{conv['id']}", headers=bob.headers,
                            json={"title": "mine"})
    assert_error(response, 403, "forbidden")
    body = feed(client, carol, conv["id"], since=5)  # 6: demoted, 7: void
    assert (body["version"], body["more"]) == (7, False)
    assert [(e["type"], e["version"], e.get("role")) for e in body["events"]] == [
        ("role_changed", 6, "member")]


def test_a_slow_edit_is_re_announced_and_the_message_carries_the_new_version(
        client, auth, quick, monkeypatch):
    alice, bob = auth.user(), auth.user()
    conv = created(client, alice, [bob])
    m = posted(client, alice, conv["id"], "original")  # 4
    with quick.app_context():
        sync.void(ObjectId(conv["id"]), 5)  # a reader settled 5 while the edit was slow
    edited = edit(client, alice, m["id"], "edited")
    assert edited["version"] == 6 and edited["content"] == "edited"
    body = feed(client, bob, conv["id"], since=4)
    assert [(x["id"], x["version"], x["content"]) for x in body["messages"]] == [
        (m["id"], 6, "edited")] and body["version"] == 6


def test_the_later_of_two_concurrent_edits_wins_whatever_order_they_land(app, client, auth):
    alice, bob = auth.user(), auth.user()
    m = sent(client, alice, bob, "original")
    with app.app_context():
        oid, when = ObjectId(m["id"]), sync.now()
        assert store.edit_content(oid, "second", when, 3)["content"] == "second"
        assert store.edit_content(oid, "first", when, 2) is None  # lands last, loses
        reacted = store.add_reaction(oid, "aa", ObjectId(alice.id), 4, 20)
        # A reaction with a higher version does not stand in the way of a later edit.
        assert reacted["version"] == 4
        after = store.edit_content(oid, "third", when, 5)
        assert (after["content"], after["version"]) == ("third", 5)


def test_a_deletion_wins_over_any_edit_or_reaction_around_it(app, client, auth):
    alice, bob = auth.user(), auth.user()
    m = sent(client, alice, bob, "original")
    with app.app_context():
        oid, when = ObjectId(m["id"]), sync.now()
        store.add_reaction(oid, "aa", ObjectId(bob.id), 6, 20)  # a later number landed first
        deleted = store.blank(oid, 5)
        assert (deleted["deleted"], deleted["content"], deleted["version"]) == (True, "", 6)
        assert deleted["reactions"] == {}
        assert store.edit_content(oid, "resurrected?", when, 7) is None  # took a higher one
        assert store.find_message(oid)["content"] == ""
        assert store.add_reaction(oid, "bb", ObjectId(bob.id), 8, 20) is None


def test_an_edit_losing_to_a_concurrent_deletion_is_409_and_tells_nobody(
        client, auth, socket_client, monkeypatch):
    alice, bob = auth.user(), auth.user()
    m = sent(client, alice, bob, "original")
    ear = socket_client(bob)
    ear.get_received()
    real_take = conversation_store.take_version

    def deleted_meanwhile(conv_id):  # the deletion lands between the edit's check and write
        monkeypatch.setattr(conversation_store, "take_version", real_take)
        delete(client, alice, m["id"])
        return real_take(conv_id)
    monkeypatch.setattr(conversation_store, "take_version", deleted_meanwhile)
    response = client.patch(f"/api/chat/messages/{m['id']}", headers=alice.headers,
                            json={"content": "too late"})
    assert_error(response, 409, "conflict")
    events = [e["name"] for e in ear.get_received()]
    assert events.count("message deleted") == 1 and "message updated" not in events
    body = feed(client, bob, m["conversation"])
    assert [(x["content"], x["deleted"]) for x in body["messages"]] == [("", True)]
    assert (body["version"], body["more"]) == (3, False)  # the edit's number: void


def test_messages_stored_before_versions_existed_settle_by_their_seq(client, auth, quick):
    alice, bob = auth.user(), auth.user()
    first, second = sent(client, alice, bob, "one"), sent(client, bob, alice, "two")
    conv_id = ObjectId(first["conversation"])
    with quick.app_context():  # as the 1:1-only version left them: no version, no record
        mongo.db.messages.update_many({"conv": conv_id}, {"$unset": {"version": ""}})
        mongo.db.changes.delete_many({"conv": conv_id})
        mongo.db.conversations.update_one({"_id": conv_id}, {"$unset": {"version_at": ""}})
    body = feed(client, bob, str(conv_id))
    assert [(x["id"], x["version"]) for x in body["messages"]] == [(first["id"], 1),
                                                                    (second["id"], 2)]
    assert (body["version"], body["more"]) == (2, False)


def test_a_reader_waits_briefly_for_a_gap_then_says_more(client, auth, app):
    app.config["SYNC_GAP_WAIT_MS"] = 300
    alice, bob = auth.user(), auth.user()
    conv = created(client, alice, [bob])
    take_number(app, conv["id"])
    posted(client, alice, conv["id"])
    started = datetime.now(timezone.utc)
    body = feed(client, bob, conv["id"], since=3)
    waited = (datetime.now(timezone.utc) - started).total_seconds()
    assert body["more"] and body["version"] == 3 and 0.25 <= waited < 5


# --- history pages hold back what sits above a seq being written -------------------------

def history_page(client, account, conv_id, **params):
    response = client.get(f"/api/chat/conversations/{conv_id}/messages",
                          headers=account.headers, query_string=params)
    assert response.status_code == 200, response.get_json()
    return [m["content"] for m in response.get_json()], response.headers.get("Link")


def test_history_holds_back_messages_above_a_seq_being_written(client, auth, quick):
    quick.config["SYNC_WRITE_DEADLINE"] = 1
    alice, bob = auth.user(), auth.user()
    first = sent(client, alice, bob, "one")
    conv_id = first["conversation"]
    with quick.app_context():  # a concurrent send took seq 2 and has not stored it yet
        taken = conversation_store.take_seq(ObjectId(conv_id), ObjectId(alice.id), ObjectId(),
                                            sync.now())
    assert taken["seq"] == 2
    sent(client, bob, alice, "three")
    contents, link = history_page(client, bob, conv_id, after=first["id"])
    assert contents == [] and f"after={first['id']}" in link  # ask again from the same place
    # The newest page is complete: it waits until seq 2 is written or settled (here its
    # writer died: the deadline passes) rather than answer "one" alone, which would hide
    # "three" from a client that reads it once and then listens.
    started = time.monotonic()
    assert history_page(client, bob, conv_id) == (["three", "one"], None)
    assert 0.5 <= time.monotonic() - started < 3
    # The 1:1 routes read the same pages.
    response = client.get(f"/api/chat/messages/{alice.id}/{bob.id}", headers=bob.headers)
    assert [m["content"] for m in response.get_json()] == ["three", "one"]
    assert history_page(client, bob, conv_id, after=first["id"]) == (["three"], None)


def test_a_send_that_lost_its_client_id_race_holds_back_nothing(client, auth, quick,
                                                                  monkeypatch):
    """The retry of a send is stored first (seq 3) while the send itself, which took seq 2,
    is still on its way: the send finds the retry's message and answers it, and says seq 2
    will never be written, so no page waits for it."""
    alice, bob = auth.user(), auth.user()
    first = sent(client, alice, bob, "one")
    conv_id = first["conversation"]
    body = {"receiver": bob.id, "content": "two", "client_id": "c-1"}
    retried = []

    def retry_meanwhile():  # between the send's taking of its numbers and its write
        if not retried:
            retried.append(None)  # the retry itself goes straight through
            retried[0] = client.post("/api/chat/send", json=body, headers=alice.headers)

    monkeypatch.setattr(sync, "writing", retry_meanwhile)
    response = client.post("/api/chat/send", json=body, headers=alice.headers)
    assert retried[0].status_code == 201 and response.status_code == 200
    message = response.get_json()["message"]
    assert message == retried[0].get_json()["message"] and message["seq"] == 3
    started = time.monotonic()
    assert history_page(client, bob, conv_id) == (["two", "one"], None)
    assert history_page(client, bob, conv_id, after=first["id"]) == (["two"], None)
    assert time.monotonic() - started < 1  # nothing waited for seq 2 (the deadline is 5 s)
    body = feed(client, bob, conv_id)  # its version is void, the feed goes on past it
    assert [m["content"] for m in body["messages"]] == ["one", "two"] and not body["more"]


def test_a_read_answers_the_version_of_its_move(client, auth, socket_client):
    """The reader's other tabs get no `read` event of their own: the answer says where the
    marker's move sits in the feed (absent when nothing moved)."""
    alice, bob = auth.user(), auth.user()
    conv = created(client, alice, [bob])
    posted(client, alice, conv["id"])  # 4
    first = client.post(f"/api/chat/conversations/{conv['id']}/read", headers=bob.headers,
                        json={})
    assert first.get_json() == {"updated": 1, "version": 5}
    again = client.post(f"/api/chat/conversations/{conv['id']}/read", headers=bob.headers,
                        json={})
    assert again.get_json() == {"updated": 0}
    m = posted(client, alice, conv["id"])  # 6
    ack = socket_client(bob).emit("delivered", {"conversation": conv["id"], "up_to": m["id"]},
                                  callback=True)
    assert ack == {"ok": True, "updated": 1, "version": 7}
    assert [e["version"] for e in feed(client, alice, conv["id"], since=4)["events"]] == [5, 7]
