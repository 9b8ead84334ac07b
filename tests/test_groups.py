"""Group conversations over REST: lifecycle, roles, access, history, receipts, bad input.

Socket behaviour (fan-out, removed members, typing, receipts) is in test_group_sockets.py.
"""
import pytest
from bson import ObjectId

from chatapp import create_app
from config import TestingConfig

from tests.test_chat_rest import ISO_MS, MESSAGE_KEYS, Marked, assert_error, next_link, sent

CONVERSATION_KEYS = {"id", "type", "title", "created_by", "created_at", "member_count",
                     "members", "my_role", "version", "last_message", "unread_count",
                     "read_up_to"}
MEMBER_KEYS = {"user", "role", "joined_at", "read_up_to", "delivered_up_to"}


def create(client, owner, members, title="Team"):
    return client.post("/api/chat/groups", headers=owner.headers,
                       json={"title": title, "members": [m.id for m in members]})


def created(client, owner, members, title="Team"):
    response = create(client, owner, members, title)
    assert response.status_code == 201, response.get_json()
    return response.get_json()["conversation"]


def get(client, account, conv_id):
    return client.get(f"/api/chat/conversations/{conv_id}", headers=account.headers)


def post(client, account, conv_id, content="hi group", **extra):
    return client.post(f"/api/chat/conversations/{conv_id}/messages", headers=account.headers,
                       json={"content": content, **extra})


def posted(client, account, conv_id, content="hi group", **extra):
    response = post(client, account, conv_id, content, **extra)
    assert response.status_code == 201, response.get_json()
    return response.get_json()["message"]


def roles(conversation):
    return {m["user"]["id"]: m["role"] for m in conversation["members"]}


def remove(client, account, conv_id, user):
    return client.delete(f"/api/chat/conversations/{conv_id}/members/{user.id}",
                         headers=account.headers)


def set_role(client, account, conv_id, user, role):
    return client.patch(f"/api/chat/conversations/{conv_id}/members/{user.id}",
                        headers=account.headers, json={"role": role})


def add(client, account, conv_id, users):
    return client.post(f"/api/chat/conversations/{conv_id}/members", headers=account.headers,
                       json={"user_ids": [u.id for u in users]})


def listed(client, account, **params):
    response = client.get("/api/chat/conversations", headers=account.headers,
                          query_string=params)
    assert response.status_code == 200, response.get_json()
    return response.get_json()


@pytest.fixture
def trio(auth):
    return auth.user(), auth.user(), auth.user()


# --- creating ---------------------------------------------------------------------------

def test_create_group(client, trio):
    alice, bob, carol = trio
    conv = created(client, alice, [bob, carol, bob, alice], title="  Trip  ")
    assert set(conv) == CONVERSATION_KEYS
    assert conv["type"] == "group" and conv["title"] == "Trip"  # trimmed
    assert ObjectId.is_valid(conv["id"]) and len(conv["id"]) == 24
    assert conv["created_by"] == alice.id and ISO_MS.match(conv["created_at"])
    assert conv["member_count"] == 3 and conv["my_role"] == "owner"
    assert conv["last_message"] is None and conv["unread_count"] == 0
    assert conv["read_up_to"] == 0 and conv["version"] >= 1
    assert [m["user"]["id"] for m in conv["members"]] == [alice.id, bob.id, carol.id]
    assert roles(conv) == {alice.id: "owner", bob.id: "member", carol.id: "member"}
    for member in conv["members"]:
        assert set(member) == MEMBER_KEYS and member["read_up_to"] == 0
        assert "email" not in member["user"] or member["user"]["id"] == alice.id
        assert "password" not in str(member["user"])
    # every member sees it, the same conversation
    for account in trio:
        seen = get(client, account, conv["id"]).get_json()
        assert seen["id"] == conv["id"] and seen["my_role"] == roles(conv)[account.id]


@pytest.mark.parametrize("body, field", [
    ({"title": "", "members": []}, "title"),
    ({"title": "   ", "members": ["MEMBER"]}, "title"),
    ({"title": "x" * 101, "members": ["MEMBER"]}, "title"),
    ({"title": 5, "members": ["MEMBER"]}, "title"),
    ({"members": ["MEMBER"]}, "title"),
    ({"title": "t"}, "members"),
    ({"title": "t", "members": "MEMBER"}, "members"),
    ({"title": "t", "members": [123]}, "members"),
    ({"title": "t", "members": ["nothex"]}, "members"),
    ({"title": "t", "members": [{"$ne": None}]}, "members"),
    ({"title": "t", "members": []}, "members"),
    ({"title": "t", "members": ["SELF"]}, "members"),
])
def test_create_validation(client, trio, body, field):
    alice, bob, _ = trio
    if isinstance(body.get("members"), list):
        names = {"MEMBER": bob.id, "SELF": alice.id}
        body = {**body, "members": [names.get(m, m) if isinstance(m, str) else m
                                    for m in body["members"]]}
    response = client.post("/api/chat/groups", headers=alice.headers, json=body)
    assert_error(response, 422, "validation_error")
    assert any(k.split(".")[0] == field for k in response.get_json()["error"]["details"])
    assert listed(client, alice) == [] and listed(client, bob) == []


def test_title_of_100_characters_is_fine(client, trio):
    alice, bob, _ = trio
    assert created(client, alice, [bob], title="é" * 100)["title"] == "é" * 100


def test_unknown_members_are_404_and_nothing_is_created(client, trio):
    alice, bob, _ = trio
    ghost = str(ObjectId())
    response = client.post("/api/chat/groups", headers=alice.headers,
                           json={"title": "t", "members": [bob.id, ghost]})
    assert_error(response, 404, "not_found")
    assert response.get_json()["error"]["details"] == {"user_ids": [ghost]}
    assert listed(client, alice) == [] and listed(client, bob) == []


def test_member_cap_counts_the_creator(auth):
    app = create_app(TestingConfig, MAX_GROUP_MEMBERS=3)
    client = app.test_client()
    from tests.conftest import Auth

    users = [Auth(client).user() for _ in range(4)]
    owner, others = users[0], users[1:]
    assert_error(create(client, owner, others), 422, "validation_error")
    assert listed(client, owner) == []
    assert created(client, owner, others[:2])["member_count"] == 3


def test_group_needs_auth(client, trio):
    response = client.post("/api/chat/groups", json={"title": "t", "members": [trio[1].id]})
    assert_error(response, 401, "unauthorized")


# --- seeing -----------------------------------------------------------------------------

def test_strangers_get_404_for_everything_in_a_group(client, auth, trio):
    alice, bob, _ = trio
    conv = created(client, alice, [bob])
    message = posted(client, alice, conv["id"])
    eve = auth.user()
    base = f"/api/chat/conversations/{conv['id']}"
    calls = [
        client.get(base, headers=eve.headers),
        client.patch(base, headers=eve.headers, json={"title": "mine"}),
        client.get(f"{base}/messages", headers=eve.headers),
        client.post(f"{base}/messages", headers=eve.headers, json={"content": "x"}),
        client.post(f"{base}/read", headers=eve.headers),
        client.post(f"{base}/members", headers=eve.headers, json={"user_ids": [eve.id]}),
        client.delete(f"{base}/members/{bob.id}", headers=eve.headers),
        client.delete(f"{base}/members/{eve.id}", headers=eve.headers),
        client.patch(f"{base}/members/{eve.id}", headers=eve.headers, json={"role": "owner"}),
        client.patch(f"/api/chat/messages/{message['id']}", headers=eve.headers,
                     json={"content": "x"}),
        client.delete(f"/api/chat/messages/{message['id']}", headers=eve.headers),
    ]
    for response in calls:
        assert_error(response, 404, "not_found")
    assert roles(get(client, alice, conv["id"]).get_json()) == {alice.id: "owner",
                                                                 bob.id: "member"}
    assert [m["content"] for m in listed_messages(client, alice, conv["id"])] == ["hi group"]


def test_malformed_and_unknown_conversation_ids_are_404(client, trio):
    alice = trio[0]
    for ref in ("nothex", str(ObjectId()), "0" * 24):
        assert_error(get(client, alice, ref), 404, "not_found")
        assert_error(post(client, alice, ref), 404, "not_found")


def listed_messages(client, account, conv_id, **params):
    response = client.get(f"/api/chat/conversations/{conv_id}/messages",
                          headers=account.headers, query_string=params)
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def test_list_has_groups_and_directs_most_recent_first(client, trio):
    alice, bob, carol = trio
    direct = sent(client, alice, bob, "direct")
    group = created(client, alice, [bob, carol], title="G")
    entries = listed(client, alice)
    assert [e["conversation"]["type"] for e in entries] == ["group", "direct"]
    g, d = entries
    assert g["user"] is None and g["last_message"] is None and g["unread_count"] == 0
    assert g["conversation"]["id"] == group["id"] and "members" not in g["conversation"]
    assert d["user"]["id"] == bob.id and d["last_message"] == direct
    assert d["conversation"]["id"] == direct["conversation"]
    assert d["conversation"]["type"] == "direct" and d["conversation"]["title"] is None
    assert d["conversation"]["member_count"] == 2 and d["conversation"]["my_role"] == "member"
    message = posted(client, bob, group["id"], "in group")
    entries = listed(client, alice)
    assert entries[0]["conversation"]["id"] == group["id"]
    assert entries[0]["last_message"] == message and entries[0]["unread_count"] == 1
    assert entries[0]["conversation"]["unread_count"] == 1
    assert [e["conversation"]["type"] for e in listed(client, alice, type="direct")] == ["direct"]
    assert [e["conversation"]["type"] for e in listed(client, alice, type="group")] == ["group"]
    assert_error(client.get("/api/chat/conversations?type=room", headers=alice.headers),
                 422, "validation_error")


def test_list_pages_with_a_path_link(client, auth):
    me = auth.user()
    others = [auth.user() for _ in range(5)]
    for other in others:
        sent(client, other, me)
    seen, params = [], {"limit": 2}
    for _ in range(5):
        response = client.get("/api/chat/conversations", headers=me.headers,
                              query_string=params)
        assert response.status_code == 200
        seen += [e["user"]["id"] for e in response.get_json()]
        link = response.headers.get("Link")
        if link is None:
            break
        assert link.startswith("</api/chat/conversations?")  # a path, no host
        params = next_link(response)
    assert seen == [o.id for o in reversed(others)]
    assert_error(client.get("/api/chat/conversations?cursor=bogus", headers=me.headers),
                 422, "validation_error")


def test_direct_conversation_by_id_or_peer_id_and_it_never_changes(client, trio):
    alice, bob, carol = trio
    message = sent(client, alice, bob)
    by_id = get(client, bob, message["conversation"]).get_json()
    by_peer = get(client, bob, alice.id).get_json()
    assert by_id == by_peer and by_id["type"] == "direct" and by_id["title"] is None
    assert set(roles(by_id).values()) == {"member"} and by_id["created_by"] == alice.id
    assert_error(get(client, carol, message["conversation"]), 404, "not_found")
    assert_error(get(client, carol, alice.id), 404, "not_found")  # no conversation of theirs
    conv_id = message["conversation"]
    for response in (add(client, alice, conv_id, [carol]), remove(client, alice, conv_id, bob),
                     remove(client, alice, conv_id, alice),
                     set_role(client, alice, conv_id, bob, "admin"),
                     client.patch(f"/api/chat/conversations/{conv_id}", headers=alice.headers,
                                  json={"title": "no"})):
        assert_error(response, 409, "conflict")
    assert get(client, bob, conv_id).get_json()["member_count"] == 2
    # the group routes serve direct conversations too, with the same history
    assert listed_messages(client, bob, conv_id) == [message]
    reply = posted(client, bob, alice.id, "via the peer id")
    assert reply["receiver"] == alice.id and reply["conversation"] == conv_id


# --- lifecycle --------------------------------------------------------------------------

def test_rename(client, trio):
    alice, bob, carol = trio
    conv = created(client, alice, [bob, carol])
    url = f"/api/chat/conversations/{conv['id']}"
    assert_error(client.patch(url, headers=bob.headers, json={"title": "x"}), 403, "forbidden")
    assert_error(client.patch(url, headers=alice.headers, json={"title": " "}),
                 422, "validation_error")
    response = client.patch(url, headers=alice.headers, json={"title": " New "})
    assert response.status_code == 200
    renamed = response.get_json()["conversation"]
    assert renamed["title"] == "New" and renamed["version"] > conv["version"]
    assert set(renamed) == CONVERSATION_KEYS
    assert set_role(client, alice, conv["id"], bob, "admin").status_code == 200
    response = client.patch(url, headers=bob.headers, json={"title": "By admin"})
    assert response.status_code == 200
    assert get(client, carol, conv["id"]).get_json()["title"] == "By admin"


def test_add_members(client, auth, trio):
    alice, bob, carol = trio
    dave = auth.user()
    conv = created(client, alice, [bob])
    first = posted(client, alice, conv["id"], "before carol joined")
    assert_error(add(client, bob, conv["id"], [carol]), 403, "forbidden")
    ghost = ObjectId()
    response = client.post(f"/api/chat/conversations/{conv['id']}/members",
                           headers=alice.headers, json={"user_ids": [carol.id, str(ghost)]})
    assert_error(response, 404, "not_found")
    assert get(client, alice, conv["id"]).get_json()["member_count"] == 2  # nothing added
    response = add(client, alice, conv["id"], [carol, bob, carol])
    assert response.status_code == 200
    after = response.get_json()["conversation"]
    assert after["member_count"] == 3 and roles(after)[carol.id] == "member"
    assert listed_messages(client, carol, conv["id"]) == [first]  # the whole history
    assert add(client, alice, conv["id"], [bob]).get_json()["conversation"]["version"] == \
        after["version"]  # already a member: nothing changes
    assert set_role(client, alice, conv["id"], carol, "admin").status_code == 200
    assert add(client, carol, conv["id"], [dave]).status_code == 200  # an admin may add
    for body in ({"user_ids": []}, {"user_ids": "x"}, {"user_ids": ["nothex"]}, {}):
        response = client.post(f"/api/chat/conversations/{conv['id']}/members",
                               headers=alice.headers, json=body)
        assert_error(response, 422, "validation_error")


def test_add_over_the_cap_adds_nothing():
    app = create_app(TestingConfig, MAX_GROUP_MEMBERS=3)
    client = app.test_client()
    from tests.conftest import Auth

    owner, a, b, c = [Auth(client).user() for _ in range(4)]
    conv = created(client, owner, [a])
    assert_error(add(client, owner, conv["id"], [b, c]), 422, "validation_error")
    assert get(client, owner, conv["id"]).get_json()["member_count"] == 2
    assert add(client, owner, conv["id"], [b]).status_code == 200


def test_remove_rules(client, auth, trio):
    alice, bob, carol = trio
    dave = auth.user()
    conv = created(client, alice, [bob, carol, dave])
    cid = conv["id"]
    assert_error(remove(client, bob, cid, carol), 403, "forbidden")  # a member
    assert set_role(client, alice, cid, bob, "admin").status_code == 200
    assert set_role(client, alice, cid, carol, "admin").status_code == 200
    assert_error(remove(client, bob, cid, alice), 403, "forbidden")  # admin vs owner
    assert_error(remove(client, bob, cid, carol), 403, "forbidden")  # admin vs admin
    outsider = auth.user()
    assert_error(remove(client, bob, cid, outsider), 404, "not_found")
    response = remove(client, bob, cid, dave)  # admin removes a member
    assert response.status_code == 200
    assert dave.id not in roles(response.get_json()["conversation"])
    assert_error(get(client, dave, cid), 404, "not_found")
    assert_error(post(client, dave, cid), 404, "not_found")
    assert_error(client.get(f"/api/chat/conversations/{cid}/messages", headers=dave.headers),
                 404, "not_found")
    assert [e for e in listed(client, dave) if e["conversation"]["id"] == cid] == []
    response = remove(client, alice, cid, carol)  # the owner removes an admin
    assert response.status_code == 200
    assert roles(response.get_json()["conversation"]) == {alice.id: "owner", bob.id: "admin"}


def test_leaving_and_ownership_passing_to_the_longest_standing_admin(client, auth, trio):
    alice, bob, carol = trio
    dave = auth.user()
    conv = created(client, alice, [bob, carol])
    cid = conv["id"]
    assert add(client, alice, cid, [dave]).status_code == 200
    assert set_role(client, alice, cid, dave, "admin").status_code == 200
    response = remove(client, carol, cid, carol)  # a member leaves
    assert response.status_code == 200 and response.get_json() == {"conversation": None}
    assert_error(get(client, carol, cid), 404, "not_found")
    response = remove(client, alice, cid, alice)  # the owner leaves: dave is the only admin
    assert response.get_json() == {"conversation": None}
    assert roles(get(client, bob, cid).get_json()) == {bob.id: "member", dave.id: "owner"}
    response = remove(client, dave, cid, dave)  # no admin left: the longest-standing member
    assert roles(get(client, bob, cid).get_json()) == {bob.id: "owner"}


def test_roles(client, trio):
    alice, bob, carol = trio
    conv = created(client, alice, [bob, carol])
    cid = conv["id"]
    assert_error(set_role(client, bob, cid, carol, "admin"), 403, "forbidden")
    response = set_role(client, alice, cid, bob, "admin")
    assert response.status_code == 200 and roles(response.get_json()["conversation"])[bob.id] \
        == "admin"
    assert_error(set_role(client, bob, cid, carol, "admin"), 403, "forbidden")  # admins can't
    assert_error(set_role(client, alice, cid, alice, "member"), 409, "conflict")
    for role in ("root", "", None, 1):
        response = client.patch(f"/api/chat/conversations/{cid}/members/{bob.id}",
                                headers=alice.headers, json={"role": role})
        assert_error(response, 422, "validation_error")
    response = set_role(client, alice, cid, carol, "owner")  # transfer
    assert roles(response.get_json()["conversation"]) == {alice.id: "admin", bob.id: "admin",
                                                          carol.id: "owner"}
    assert response.get_json()["conversation"]["my_role"] == "admin"
    assert_error(set_role(client, alice, cid, bob, "member"), 403, "forbidden")
    assert set_role(client, carol, cid, bob, "member").status_code == 200


# --- messages, receipts -----------------------------------------------------------------

def test_group_messages(client, auth, trio):
    alice, bob, carol = trio
    cid = created(client, alice, [bob, carol])["id"]
    message = posted(client, bob, cid, " hello all ", client_id="g-1")
    assert set(message) == MESSAGE_KEYS | {"client_id"}
    assert message["receiver"] is None and message["conversation"] == cid
    assert message["sender"] == bob.id and message["content"] == " hello all "
    assert message["seq"] == 1 and message["read_at"] is None
    retry = post(client, bob, cid, " hello all ", client_id="g-1")
    assert retry.status_code == 200 and retry.get_json()["message"] == message
    for body in ({"content": "   "}, {"content": ""}, {}, {"content": 5},
                 {"content": "x", "client_id": ""}):
        response = client.post(f"/api/chat/conversations/{cid}/messages",
                               headers=alice.headers, json=body)
        assert_error(response, 422, "validation_error")
    assert listed_messages(client, carol, cid) == [message]
    # group messages are not in the 1:1 per-user history, which stays 1:1
    assert client.get(f"/api/chat/messages/{bob.id}", headers=bob.headers).get_json() == []


def test_group_history_pages_like_the_direct_one(client, trio):
    alice, bob, _ = trio
    cid = created(client, alice, [bob])["id"]
    ids = [posted(client, alice if i % 2 else bob, cid, f"m{i}")["id"] for i in range(7)]
    seen, params = [], {"limit": 3}
    while True:
        response = client.get(f"/api/chat/conversations/{cid}/messages", headers=bob.headers,
                              query_string=params)
        assert response.status_code == 200
        seen += [m["id"] for m in response.get_json()]
        if "Link" not in response.headers:
            break
        assert response.headers["Link"].startswith(f"</api/chat/conversations/{cid}/messages?")
        params = next_link(response)
    assert seen == list(reversed(ids))
    newer = listed_messages(client, bob, cid, after=ids[4])
    assert [m["id"] for m in newer] == list(reversed(ids[5:]))
    other = sent(client, alice, bob)
    for cursor in ("before", "after"):
        response = client.get(f"/api/chat/conversations/{cid}/messages", headers=bob.headers,
                              query_string={cursor: other["id"]})
        assert_error(response, 422, "validation_error")


def test_group_read_markers_and_unread_counts(client, trio):
    alice, bob, carol = trio
    cid = created(client, alice, [bob, carol])["id"]
    m1 = posted(client, alice, cid, "one")
    posted(client, bob, cid, "two")
    m3 = posted(client, alice, cid, "three")
    unread = {e["conversation"]["id"]: e["unread_count"] for e in listed(client, carol)}
    assert unread[cid] == 3
    assert {e["conversation"]["id"]: e["unread_count"] for e in listed(client, bob)}[cid] == 2
    read = client.post(f"/api/chat/conversations/{cid}/read", headers=carol.headers,
                       json={"up_to": m1["id"]})
    assert read.status_code == 200 and read.get_json() == Marked(updated=1)
    assert client.post(f"/api/chat/conversations/{cid}/read", headers=carol.headers,
                       json={"up_to": m1["id"]}).get_json() == Marked(updated=0)  # never back
    conv = get(client, alice, cid).get_json()
    markers = {m["user"]["id"]: m["read_up_to"] for m in conv["members"]}
    assert markers == {alice.id: 0, bob.id: 0, carol.id: m1["seq"]}
    assert client.post(f"/api/chat/conversations/{cid}/read",
                       headers=carol.headers).get_json() == Marked(updated=2)
    carol_view = get(client, carol, cid).get_json()
    assert carol_view["read_up_to"] == m3["seq"] and carol_view["unread_count"] == 0
    # read_at stays null in groups: receipts there are the members' markers
    assert all(m["read_at"] is None for m in listed_messages(client, alice, cid))
    other = sent(client, alice, carol)
    response = client.post(f"/api/chat/conversations/{cid}/read", headers=carol.headers,
                           json={"up_to": other["id"]})
    assert_error(response, 422, "validation_error")


def test_moderation_and_edits_in_groups(client, trio):
    alice, bob, carol = trio
    cid = created(client, alice, [bob, carol])["id"]
    message = posted(client, bob, cid, "oops")
    url = f"/api/chat/messages/{message['id']}"
    assert_error(client.patch(url, headers=carol.headers, json={"content": "x"}),
                 403, "forbidden")
    assert_error(client.delete(url, headers=carol.headers), 403, "forbidden")
    edited = client.patch(url, headers=bob.headers, json={"content": "fixed"})
    assert edited.status_code == 200 and edited.get_json()["message"]["content"] == "fixed"
    assert_error(client.patch(url, headers=alice.headers, json={"content": "x"}),
                 403, "forbidden")  # owners moderate by deleting, not rewriting
    deleted = client.delete(url, headers=alice.headers)  # the owner moderates
    assert deleted.status_code == 200
    body = deleted.get_json()["message"]
    assert body["deleted"] is True and body["content"] == ""
    again = client.delete(url, headers=bob.headers)
    assert again.status_code == 200 and again.get_json()["message"] == body
