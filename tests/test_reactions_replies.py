"""Replies (`reply_to` on every send path, a preview that follows the original) and
reactions (PUT/DELETE, idempotent, limits, versions, `message updated`, concurrency)."""
import threading
from urllib.parse import quote

import pytest
from bson import ObjectId

from tests.test_chat_rest import assert_error, send, sent
from tests.test_groups import created, post, posted, remove
from tests.test_sync import delete, edit, feed

THUMBS, HEART = "\U0001f44d", "\u2764\ufe0f"
FAMILY = "\U0001f468\u200d\U0001f469\u200d\U0001f467"  # joined with zero-width joiners


def react(client, account, message_id, emoji, method="PUT"):
    return client.open(f"/api/chat/messages/{message_id}/reactions/{quote(emoji, safe='')}",
                       method=method, headers=account.headers)


def reacted(client, account, message_id, emoji, method="PUT"):
    response = react(client, account, message_id, emoji, method)
    assert response.status_code == 200, response.get_json()
    return response.get_json()["message"]


# --- replies -----------------------------------------------------------------------------

def test_a_reply_on_every_send_path_carries_a_preview(client, auth, socket_client):
    alice, bob = auth.user(), auth.user()
    original = sent(client, alice, bob, "x" * 150)
    assert original["reply_to"] is None and original["reactions"] == {}
    by_rest = sent(client, bob, alice, "answer", reply_to=original["id"])
    assert by_rest["reply_to"] == {"id": original["id"], "sender": alice.id,
                                   "content": "x" * 100, "deleted": False}
    by_path = client.post(f"/api/chat/conversations/{alice.id}/messages", headers=bob.headers,
                          json={"content": "again", "reply_to": original["id"]})
    assert by_path.status_code == 201 and by_path.get_json()["message"]["reply_to"]["id"] == \
        original["id"]
    sock = socket_client(bob)
    ack = sock.emit("chat message", {"receiver": alice.id, "content": "live",
                                     "reply_to": original["id"]}, callback=True)
    assert ack["ok"] and ack["message"]["reply_to"]["id"] == original["id"]
    ack = sock.emit("chat message", {"conversation": original["conversation"],
                                     "content": "live 2", "reply_to": by_rest["id"]},
                    callback=True)
    assert ack["ok"] and ack["message"]["reply_to"]["sender"] == bob.id


def test_the_preview_follows_edits_and_deletion_of_the_original(client, auth):
    alice, bob, carol = auth.user(), auth.user(), auth.user()
    conv = created(client, alice, [bob, carol])
    original = posted(client, alice, conv["id"], "before")
    reply = posted(client, bob, conv["id"], "re", reply_to=original["id"])
    edit(client, alice, original["id"], "after")

    def preview():
        page = client.get(f"/api/chat/conversations/{conv['id']}/messages",
                          headers=carol.headers).get_json()
        return next(m for m in page if m["id"] == reply["id"])["reply_to"]
    assert preview()["content"] == "after"
    delete(client, alice, original["id"])
    assert preview() == {"id": original["id"], "sender": alice.id, "content": "",
                         "deleted": True}


@pytest.mark.parametrize("which", ["other pair", "other group", "unknown", "malformed"])
def test_reply_to_outside_the_conversation_is_422_and_nothing_is_stored(client, auth, which):
    alice, bob, carol = auth.user(), auth.user(), auth.user()
    elsewhere = {
        "other pair": lambda: sent(client, alice, carol, "to carol")["id"],
        "other group": lambda: posted(client, alice, created(client, alice, [carol])["id"])["id"],
        "unknown": lambda: str(ObjectId()), "malformed": lambda: "nope"}[which]()
    conv = created(client, alice, [bob])
    for response in (send(client, alice, bob, "hi", reply_to=elsewhere),
                     post(client, alice, conv["id"], "hi", reply_to=elsewhere)):
        error = assert_error(response, 422, "validation_error")
        assert "reply_to" in error["details"]
    assert client.get(f"/api/chat/messages/{alice.id}/{bob.id}", headers=alice.headers)\
        .get_json() == []
    assert client.get(f"/api/chat/conversations/{conv['id']}/messages",
                      headers=alice.headers).get_json() == []


# --- reactions ---------------------------------------------------------------------------

def test_reactions_are_idempotent_ordered_and_versioned(client, auth, socket_client):
    alice, bob, carol = auth.user(), auth.user(), auth.user()
    conv = created(client, alice, [bob, carol])
    m = posted(client, alice, conv["id"], "react to me")
    ear = socket_client(carol)
    first = reacted(client, bob, m["id"], THUMBS)
    assert first["reactions"] == {THUMBS: [bob.id]} and first["version"] == m["version"] + 1
    again = reacted(client, bob, m["id"], THUMBS)
    assert again == first  # nothing changes: no version, no event
    reacted(client, alice, m["id"], FAMILY)
    both = reacted(client, alice, m["id"], THUMBS)
    assert both["reactions"] == {THUMBS: [bob.id, alice.id], FAMILY: [alice.id]}
    gone = reacted(client, bob, m["id"], THUMBS, "DELETE")
    assert gone["reactions"] == {THUMBS: [alice.id], FAMILY: [alice.id]}
    assert reacted(client, bob, m["id"], THUMBS, "DELETE") == gone
    last = reacted(client, alice, m["id"], FAMILY, "DELETE")
    assert last["reactions"] == {THUMBS: [alice.id]} and last["version"] == m["version"] + 5
    updates = [e["args"][0] for e in ear.get_received() if e["name"] == "message updated"]
    assert [u["version"] for u in updates] == [m["version"] + i for i in range(1, 6)]
    assert updates[-1] == last
    body = feed(client, carol, conv["id"], since=m["version"])
    assert body["messages"] == [last] and body["version"] == last["version"]


@pytest.mark.parametrize("emoji", ["", "a" * 17, "two words", "tab\t", "\x07", "\u200d",
                                   "new\nline"])
def test_a_bad_emoji_is_422(client, auth, emoji):
    alice, bob = auth.user(), auth.user()
    m = sent(client, alice, bob)
    response = react(client, bob, m["id"], emoji)
    if emoji == "":  # an empty path segment matches no route
        assert response.status_code in (404, 405)
        return
    assert_error(response, 422, "validation_error")


def test_at_most_twenty_different_emoji(client, auth):
    alice, bob = auth.user(), auth.user()
    m = sent(client, alice, bob)
    for i in range(20):
        reacted(client, bob, m["id"], chr(0x1F600 + i))
    assert_error(react(client, bob, m["id"], "\U0001f680"), 422, "validation_error")
    assert reacted(client, alice, m["id"], chr(0x1F600))["reactions"][chr(0x1F600)] == \
        [bob.id, alice.id]  # an emoji already there still takes more users


def test_strangers_removed_members_and_deleted_messages(client, auth):
    alice, bob, eve = auth.user(), auth.user(), auth.user()
    conv = created(client, alice, [bob])
    m = posted(client, alice, conv["id"])
    assert_error(react(client, eve, m["id"], THUMBS), 404, "not_found")
    assert_error(react(client, eve, str(ObjectId()), THUMBS), 404, "not_found")
    assert remove(client, alice, conv["id"], bob).status_code == 200
    assert_error(react(client, bob, m["id"], THUMBS), 404, "not_found")
    reacted(client, alice, m["id"], HEART)
    deleted = delete(client, alice, m["id"])
    assert deleted["reactions"] == {}
    for method in ("PUT", "DELETE"):
        assert_error(react(client, alice, m["id"], HEART, method), 409, "conflict")


def test_many_users_reacting_at_once_lose_none(app, auth):
    """Threads on one app, as concurrent requests are: every reaction is stored once."""
    client = app.test_client()
    owner = auth.user()
    members = [auth.user() for _ in range(12)]
    conv = created(client, owner, members)
    m = posted(client, owner, conv["id"], "pile on")
    barrier = threading.Barrier(len(members))
    results = []

    def pile(account):
        local = app.test_client()
        barrier.wait(10)
        for emoji in (THUMBS, HEART):
            results.append(local.put(f"/api/chat/messages/{m['id']}/reactions/{quote(emoji)}",
                                     headers=account.headers).status_code)
    threads = [threading.Thread(target=pile, args=(a,)) for a in members]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert results == [200] * (2 * len(members))
    final = client.get(f"/api/chat/conversations/{conv['id']}/messages",
                       headers=owner.headers).get_json()[0]
    assert sorted(final["reactions"][THUMBS]) == sorted(a.id for a in members)
    assert sorted(final["reactions"][HEART]) == sorted(a.id for a in members)
    assert final["version"] == m["version"] + 2 * len(members)


def test_an_emoji_with_a_slash_is_a_reaction_like_any_other(client, auth):
    alice, bob = auth.user(), auth.user()
    m = sent(client, alice, bob)
    shrug = "\u00af\\_(\u30c4)_/\u00af"
    assert reacted(client, bob, m["id"], shrug)["reactions"] == {shrug: [bob.id]}
    assert reacted(client, bob, m["id"], shrug, "DELETE")["reactions"] == {}


def test_in_a_blocked_pair_no_edit_or_reaction_reaches_the_blocker(client, auth,
                                                                   socket_client):
    alice, bob = auth.user(), auth.user()
    theirs, mine = sent(client, bob, alice, "hello"), sent(client, alice, bob, "hi bob")
    assert client.put(f"/api/user/blocks/{bob.id}", headers=alice.headers).status_code == 200
    ear = socket_client(alice)
    ear.get_received()
    assert_error(client.patch(f"/api/chat/messages/{theirs['id']}", headers=bob.headers,
                              json={"content": "buy my stuff"}), 403, "forbidden")
    assert_error(react(client, bob, mine["id"], THUMBS), 403, "forbidden")
    assert_error(react(client, alice, theirs["id"], THUMBS), 403, "forbidden")  # the blocker too
    assert [e["name"] for e in ear.get_received()] == []
    assert delete(client, bob, theirs["id"])["deleted"]  # taking your own words back stays open
    assert client.delete(f"/api/user/blocks/{bob.id}", headers=alice.headers).status_code == 200
    assert reacted(client, bob, mine["id"], THUMBS)["reactions"] == {THUMBS: [bob.id]}


def test_a_stranger_learns_nothing_from_reply_to(client, auth):
    """Sending to a group you are not in is 404 whatever `reply_to` names: a 422 would tell
    whether a message id belongs to that conversation."""
    alice, bob, eve = auth.user(), auth.user(), auth.user()
    conv = created(client, alice, [bob])
    inside = posted(client, alice, conv["id"], "inside")
    elsewhere = sent(client, eve, bob, "eve's own")
    for reply_to in (inside["id"], elsewhere["id"], str(ObjectId())):
        assert_error(post(client, eve, conv["id"], "hi", reply_to=reply_to), 404, "not_found")
    assert client.get(f"/api/chat/conversations/{conv['id']}/messages",
                      headers=alice.headers).get_json()[0]["id"] == inside["id"]
