"""Messages over REST (`/api/chat`): send, history, pagination, conversations, read, edit, delete."""
import re
from urllib.parse import parse_qs, urlparse

import pytest
from bson import ObjectId

ISO_MS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
MESSAGE_KEYS = {"id", "_id", "seq", "sender", "receiver", "content", "timestamp",
                "delivered_at", "read_at", "edited_at", "deleted",
                "conversation", "version",  # Part 2: conversations and sync
                "reply_to", "reactions", "attachments"}  # Part 2: rich messages


def send(client, account, receiver, content="hello", **extra):
    receiver_id = receiver if isinstance(receiver, str) else receiver.id
    return client.post("/api/chat/send", headers=account.headers,
                       json={"receiver": receiver_id, "content": content, **extra})


def sent(client, account, receiver, content="hello", **extra):
    response = send(client, account, receiver, content, **extra)
    assert response.status_code == 201, response.get_json()
    return response.get_json()["message"]


def history(client, account, a, b, **params):
    return client.get(f"/api/chat/messages/{a.id}/{b.id}", headers=account.headers,
                      query_string=params)


def next_link(response):
    """The `rel="next"` URL's query arguments, or None when there is no next page."""
    link = response.headers.get("Link")
    if link is None:
        return None
    match = re.fullmatch(r'<([^>]+)>; rel="next"', link)
    assert match, link
    return {k: v[0] for k, v in parse_qs(urlparse(match.group(1)).query).items()}


class Marked(dict):
    """A receipt's answer, compared without its `version` (the marker move's, when it moved;
    tests/test_sync.py checks it)."""

    def __eq__(self, other):
        return isinstance(other, dict) and \
            {k: v for k, v in other.items() if k != "version"} == dict(self)

    __hash__ = None


def assert_error(response, status, code):
    assert response.status_code == status, response.get_json()
    body = response.get_json()
    assert set(body) == {"error"} and body["error"]["code"] == code, body
    assert set(body["error"]) <= {"code", "message", "details"}, body
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    return body["error"]


@pytest.fixture
def pair(auth):
    return auth.user(), auth.user()


# --- send --------------------------------------------------------------------------

def test_send_returns_the_stored_message(client, pair):
    alice, bob = pair
    response = send(client, alice, bob, "hi bob", client_id="c-1")
    assert response.status_code == 201
    message = response.get_json()["message"]
    assert set(message) == MESSAGE_KEYS | {"client_id"}
    assert message["_id"] == message["id"] and ObjectId.is_valid(message["id"])
    assert message["sender"] == alice.id and message["receiver"] == bob.id
    assert message["content"] == "hi bob" and message["client_id"] == "c-1"
    assert ISO_MS.match(message["timestamp"])
    assert message["seq"] >= 1
    assert (message["delivered_at"], message["read_at"], message["edited_at"]) == (None,) * 3
    assert message["deleted"] is False
    assert history(client, bob, alice, bob).get_json() == [message]


def test_send_without_client_id_has_no_client_id_key(client, pair):
    alice, bob = pair
    assert set(sent(client, alice, bob)) == MESSAGE_KEYS


def test_send_requires_a_token(client, pair):
    alice, bob = pair
    response = client.post("/api/chat/send", json={"receiver": bob.id, "content": "x"})
    assert_error(response, 401, "unauthorized")


def test_sender_matching_the_token_is_accepted(client, pair):
    alice, bob = pair
    assert send(client, alice, bob, sender=alice.id).status_code == 201


def test_spoofed_sender_is_forbidden_and_nothing_is_stored(client, pair, auth):
    alice, bob = pair
    carol = auth.user()
    assert_error(send(client, alice, bob, "from carol", sender=carol.id), 403, "forbidden")
    assert_error(send(client, alice, bob, "x", sender="not-an-id"), 403, "forbidden")
    assert history(client, bob, alice, bob).get_json() == []
    assert history(client, carol, carol, bob).get_json() == []
    assert client.get("/api/chat/conversations", headers=bob.headers).get_json() == []


def test_unknown_receiver_is_404(client, pair):
    alice, _ = pair
    assert_error(send(client, alice, str(ObjectId())), 404, "not_found")
    assert client.get(f"/api/chat/messages/{alice.id}", headers=alice.headers).get_json() == []


def test_message_to_yourself(client, pair):
    alice, _ = pair
    message = sent(client, alice, alice, "note to self")
    assert message["sender"] == message["receiver"] == alice.id
    assert history(client, alice, alice, alice).get_json() == [message]


@pytest.mark.parametrize("body, field", [
    ({"content": "x"}, "receiver"),
    ({"receiver": "nope", "content": "x"}, "receiver"),
    ({"receiver": 12, "content": "x"}, "receiver"),
    ({"receiver": None, "content": "x"}, "receiver"),
    ({"receiver": "{bob}"}, "content"),
    ({"receiver": "{bob}", "content": 5}, "content"),
    ({"receiver": "{bob}", "content": ["x"]}, "content"),
    ({"receiver": "{bob}", "content": None}, "content"),
    ({"receiver": "{bob}", "content": ""}, "content"),
    ({"receiver": "{bob}", "content": "   \n\t\u3000"}, "content"),
    ({"receiver": "{bob}", "content": "\u200b\u200b"}, "content"),       # zero-width spaces
    ({"receiver": "{bob}", "content": " \u3164 \u115f"}, "content"),     # Hangul fillers
    ({"receiver": "{bob}", "content": "\u2800\ufeff\u2060"}, "content"),  # braille blank, BOM
    ({"receiver": "{bob}", "content": "\u0301\u200d"}, "content"),       # a lone combining mark
    ({"receiver": "{bob}", "content": "x", "client_id": ""}, "client_id"),
    ({"receiver": "{bob}", "content": "x", "client_id": "c" * 65}, "client_id"),
    ({"receiver": "{bob}", "content": "x", "client_id": 7}, "client_id"),
])
def test_send_validation(client, pair, body, field):
    alice, bob = pair
    body = {k: (bob.id if v == "{bob}" else v) for k, v in body.items()}
    response = client.post("/api/chat/send", headers=alice.headers, json=body)
    error = assert_error(response, 422, "validation_error")
    assert field in error["details"], error
    assert history(client, alice, alice, bob).get_json() == []


@pytest.mark.parametrize("content", [
    "a",
    "a" * 4000,
    "  " + "a" * 3996,            # surrounding whitespace counts: 3998 code points as sent
    "\U0001F600" * 4000,          # 4000 code points (8000 UTF-16 units)
    "  mixed\tcontent \u00e9\u0301 ",
    "\u200bx\u200b",            # invisible around something visible is fine
    "\U0001F44D",                # an emoji alone is visible
])
def test_content_is_stored_exactly_as_sent(client, pair, content):
    alice, bob = pair
    message = sent(client, alice, bob, content)
    assert message["content"] == content
    assert history(client, bob, alice, bob).get_json()[0]["content"] == content


@pytest.mark.parametrize("content", ["a" * 4001, "\U0001F600" * 4001, " " + "b" * 4001 + " ",
                                     "b" + " " * 4000,  # one character and a lot of spaces
                                     "b" + " " * 1_000_000])
def test_content_over_max_length_is_422(client, pair, content):
    alice, bob = pair
    error = assert_error(send(client, alice, bob, content), 422, "validation_error")
    assert "content" in error["details"]


def test_max_message_length_is_configurable(auth, client, app, pair):
    alice, bob = pair
    app.config["MAX_MESSAGE_LENGTH"] = 5
    assert send(client, alice, bob, "12345").status_code == 201
    assert_error(send(client, alice, bob, "123456"), 422, "validation_error")


def test_unknown_fields_are_not_stored(client, pair):
    alice, bob = pair
    message = sent(client, alice, bob, "x", seq=999, deleted=True, read_at="2020-01-01",
                   conv="a:b", _id=str(ObjectId()))
    assert message["deleted"] is False and message["read_at"] is None
    assert message["seq"] != 999
    assert set(message) == MESSAGE_KEYS


# --- idempotent retries ------------------------------------------------------------

def test_retry_with_same_client_id_returns_the_first_message(client, pair):
    alice, bob = pair
    first = send(client, alice, bob, "once", client_id="retry-1")
    again = send(client, alice, bob, "once", client_id="retry-1")
    changed = send(client, alice, bob, "different body", client_id="retry-1")
    assert first.status_code == 201
    assert again.status_code == 200 and changed.status_code == 200
    assert again.get_json() == first.get_json() == changed.get_json()
    assert [m["id"] for m in history(client, alice, alice, bob).get_json()] == [
        first.get_json()["message"]["id"]]


def test_client_id_is_scoped_to_its_sender(client, pair):
    alice, bob = pair
    a = send(client, alice, bob, "from alice", client_id="same")
    b = send(client, bob, alice, "from bob", client_id="same")
    assert a.status_code == b.status_code == 201
    assert a.get_json()["message"]["id"] != b.get_json()["message"]["id"]
    assert len(history(client, alice, alice, bob).get_json()) == 2


# --- history -------------------------------------------------------------------------

def test_history_newest_first_in_seq_order_both_directions(client, pair):
    alice, bob = pair
    ids = [sent(client, alice, bob, "1")["id"], sent(client, bob, alice, "2")["id"],
           sent(client, alice, bob, "3")["id"]]
    for reader in (alice, bob):
        for a, b in ((alice, bob), (bob, alice)):
            body = history(client, reader, a, b).get_json()
            assert [m["id"] for m in body] == ids[::-1]
            seqs = [m["seq"] for m in body]
            assert seqs == sorted(seqs, reverse=True) and len(set(seqs)) == 3


def test_history_of_others_is_forbidden(client, pair, auth):
    alice, bob = pair
    sent(client, alice, bob, "private")
    eve = auth.user()
    assert_error(history(client, eve, alice, bob), 403, "forbidden")
    assert_error(client.get(f"/api/chat/messages/{alice.id}", headers=eve.headers),
                 403, "forbidden")
    assert_error(client.get(f"/api/chat/messages/{alice.id}/{bob.id}"), 401, "unauthorized")


@pytest.mark.parametrize("path", ["/api/chat/messages/nope/{me}", "/api/chat/messages/{me}/x1",
                                  "/api/chat/messages/zz"])
def test_history_malformed_path_id_is_404(client, pair, path):
    alice, _ = pair
    response = client.get(path.format(me=alice.id), headers=alice.headers)
    assert_error(response, 404, "not_found")


@pytest.mark.parametrize("params", [
    {"limit": 0}, {"limit": -3}, {"limit": "ten"}, {"limit": ""}, {"before": "nope"},
    {"after": "123"}, {"before": str(ObjectId())}, {"after": str(ObjectId())},
])
def test_history_bad_query_is_422(client, pair, params):
    alice, bob = pair
    sent(client, alice, bob)
    field = next(iter(params))
    error = assert_error(history(client, alice, alice, bob, **params), 422, "validation_error")
    assert field in error["details"], error
    response = client.get(f"/api/chat/messages/{alice.id}", headers=alice.headers,
                          query_string=params)
    assert field in assert_error(response, 422, "validation_error")["details"]


def test_before_and_after_together_is_422(client, pair):
    alice, bob = pair
    first, second = sent(client, alice, bob)["id"], sent(client, alice, bob)["id"]
    response = history(client, alice, alice, bob, before=second, after=first)
    assert assert_error(response, 422, "validation_error")["details"]


def test_notes_to_yourself_are_never_unread(client, pair):
    alice, bob = pair
    sent(client, alice, alice, "memo")
    sent(client, bob, alice, "hi")
    convs = conversations(client, alice)
    assert [(c["user"]["id"], c["unread_count"]) for c in convs] == [(bob.id, 1), (alice.id, 0)]
    assert convs[1]["user"]["email"] == alice.email  # your own record


def test_cursor_from_another_conversation_is_422(client, pair, auth):
    alice, bob = pair
    carol = auth.user()
    other = sent(client, alice, carol, "elsewhere")
    sent(client, alice, bob)
    for key in ("before", "after"):
        error = assert_error(history(client, alice, alice, bob, **{key: other["id"]}),
                             422, "validation_error")
        assert key in error["details"]


def test_cursor_naming_someone_elses_message_is_422_in_user_history(client, pair, auth):
    alice, bob = pair
    carol = auth.user()
    theirs = sent(client, bob, carol, "not alice's")
    response = client.get(f"/api/chat/messages/{alice.id}", headers=alice.headers,
                          query_string={"before": theirs["id"]})
    assert "before" in assert_error(response, 422, "validation_error")["details"]


@pytest.fixture
def many(client, pair):
    """250 messages alternating between alice and bob; ids in send (= seq) order."""
    alice, bob = pair
    ids = []
    for i in range(250):
        a, b = (alice, bob) if i % 2 == 0 else (bob, alice)
        ids.append(sent(client, a, b, f"m{i}")["id"])
    return alice, bob, ids


def test_limit_default_clamp_and_link(client, many):
    alice, bob, ids = many
    default = history(client, alice, alice, bob)
    assert [m["id"] for m in default.get_json()] == ids[::-1][:50]
    assert next_link(default)["before"] == ids[-50]
    clamped = history(client, alice, alice, bob, limit=1000)
    assert [m["id"] for m in clamped.get_json()] == ids[::-1][:200]
    assert next_link(clamped)["before"] == ids[-200]
    everything_fits = history(client, alice, alice, bob, limit=1000, before=ids[200])
    assert [m["id"] for m in everything_fits.get_json()] == ids[:200][::-1]
    assert "Link" not in everything_fits.headers


def _walk(client, account, path, start):
    """Follow `Link: rel="next"` from `start`; returns every page's ids and the params used."""
    pages, params = [], dict(start)
    while params is not None:
        response = client.get(path, headers=account.headers, query_string=params)
        assert response.status_code == 200, response.get_json()
        page = [m["id"] for m in response.get_json()]
        assert page, "a Link must never point at an empty page"
        pages.append(page)
        params = next_link(response)
        if params is not None:
            assert ("after" in params) == ("after" in start)
            assert params["limit"] == str(start["limit"])
    return pages


def test_walking_every_page_backward_and_forward(client, many):
    alice, bob, ids = many
    path = f"/api/chat/messages/{alice.id}/{bob.id}"
    backward = _walk(client, bob, path, {"limit": 40})
    assert [len(p) for p in backward] == [40] * 6 + [10]
    assert [i for page in backward for i in page] == ids[::-1]
    # forward from before the first message: `after` the first, then continue newer
    forward = _walk(client, alice, path, {"limit": 40, "after": ids[0]})
    assert all(page == sorted(page, key=ids.index, reverse=True) for page in forward)
    assert sorted((i for page in forward for i in page), key=ids.index) == ids[1:]
    assert [i for page in forward for i in reversed(page)] == ids[1:]


def test_before_and_after_pages(client, many):
    alice, bob, ids = many
    before = history(client, alice, alice, bob, before=ids[100], limit=5).get_json()
    assert [m["id"] for m in before] == ids[95:100][::-1]
    after = history(client, alice, alice, bob, after=ids[100], limit=5)
    assert [m["id"] for m in after.get_json()] == ids[101:106][::-1]
    assert next_link(after)["after"] == ids[105]
    last = history(client, alice, alice, bob, after=ids[-1])
    assert last.get_json() == [] and "Link" not in last.headers


def test_user_history_walks_every_page_both_directions(client, many, auth):
    alice, bob, ids = many
    carol = auth.user()
    extra = [sent(client, carol, alice, "c1")["id"], sent(client, alice, carol, "c2")["id"]]
    sent(client, bob, carol, "not alice's")
    everything = ids + extra
    path = f"/api/chat/messages/{alice.id}"
    backward = _walk(client, alice, path, {"limit": 33})
    assert [i for page in backward for i in page] == everything[::-1]
    forward = _walk(client, alice, path, {"limit": 33, "after": everything[0]})
    assert [i for page in forward for i in reversed(page)] == everything[1:]


# --- GET /messages/<userId> --------------------------------------------------------------

def test_user_messages_own_id_only_both_directions_in_time_order(client, pair, auth):
    alice, bob = pair
    carol = auth.user()
    ids = [sent(client, alice, bob, "1")["id"], sent(client, carol, alice, "2")["id"],
           sent(client, bob, alice, "3")["id"], sent(client, alice, alice, "4")["id"]]
    sent(client, bob, carol, "not alice's")
    response = client.get(f"/api/chat/messages/{alice.id}", headers=alice.headers)
    assert response.status_code == 200
    body = response.get_json()
    assert [m["id"] for m in body] == ids[::-1]
    assert [m["timestamp"] for m in body] == sorted((m["timestamp"] for m in body), reverse=True)
    assert_error(client.get(f"/api/chat/messages/{bob.id}", headers=alice.headers),
                 403, "forbidden")


# --- conversations and read ------------------------------------------------------------

def conversations(client, account):
    response = client.get("/api/chat/conversations", headers=account.headers)
    assert response.status_code == 200
    return response.get_json()


def test_conversations_and_unread_counts_before_and_after_read(client, pair, auth):
    alice, bob = pair
    carol = auth.user()
    assert conversations(client, alice) == []
    b1 = sent(client, bob, alice, "b1")
    b2 = sent(client, bob, alice, "b2")
    sent(client, alice, bob, "a1")
    c1 = sent(client, carol, alice, "c1")
    convs = conversations(client, alice)
    assert [c["user"]["id"] for c in convs] == [carol.id, bob.id]
    assert [c["unread_count"] for c in convs] == [1, 2]
    assert convs[0]["last_message"] == c1
    assert convs[1]["last_message"]["content"] == "a1"
    assert convs[1]["user"]["username"] == bob.username
    assert "email" not in convs[1]["user"] and "password_hash" not in convs[1]["user"]
    assert [c["unread_count"] for c in conversations(client, bob)] == [1]

    read = client.post(f"/api/chat/conversations/{bob.id}/read", headers=alice.headers,
                       json={"up_to": b1["id"]})
    assert read.status_code == 200 and read.get_json() == Marked(updated=1)
    assert [c["unread_count"] for c in conversations(client, alice)] == [1, 1]
    read = client.post(f"/api/chat/conversations/{bob.id}/read", headers=alice.headers)
    assert read.get_json() == Marked(updated=1)
    assert [c["unread_count"] for c in conversations(client, alice)] == [1, 0]
    stored = {m["id"]: m for m in history(client, bob, alice, bob).get_json()}
    assert ISO_MS.match(stored[b1["id"]]["read_at"]) and ISO_MS.match(stored[b2["id"]]["read_at"])
    assert stored[b2["id"]]["delivered_at"] is not None  # read implies delivered
    # reading again changes nothing
    again = client.post(f"/api/chat/conversations/{bob.id}/read", headers=alice.headers, json={})
    assert again.get_json() == Marked(updated=0)


def test_conversation_most_recent_activity_first(client, pair, auth):
    alice, bob = pair
    carol = auth.user()
    sent(client, alice, bob)
    sent(client, alice, carol)
    assert [c["user"]["id"] for c in conversations(client, alice)] == [carol.id, bob.id]
    sent(client, bob, alice)
    assert [c["user"]["id"] for c in conversations(client, alice)] == [bob.id, carol.id]


def test_read_errors(client, pair, auth):
    alice, bob = pair
    carol = auth.user()
    other = sent(client, carol, alice, "elsewhere")
    sent(client, bob, alice)
    path = f"/api/chat/conversations/{bob.id}/read"
    error = assert_error(client.post(path, headers=alice.headers, json={"up_to": other["id"]}),
                         422, "validation_error")
    assert "up_to" in error["details"]
    assert "up_to" in assert_error(
        client.post(path, headers=alice.headers, json={"up_to": "nope"}),
        422, "validation_error")["details"]
    assert_error(client.post(f"/api/chat/conversations/{ObjectId()}/read",
                             headers=alice.headers), 404, "not_found")
    assert_error(client.post("/api/chat/conversations/nope/read", headers=alice.headers),
                 404, "not_found")
    assert_error(client.post(path, json={}), 401, "unauthorized")
    assert [c["unread_count"] for c in conversations(client, alice)] == [1, 1]


# --- edit and delete ---------------------------------------------------------------------

def test_edit_by_sender(client, pair):
    alice, bob = pair
    message = sent(client, alice, bob, "typo")
    response = client.patch(f"/api/chat/messages/{message['id']}", headers=alice.headers,
                            json={"content": " fixed "})
    assert response.status_code == 200
    edited = response.get_json()["message"]
    assert edited["content"] == " fixed " and ISO_MS.match(edited["edited_at"])
    assert {k: v for k, v in edited.items() if k not in ("content", "edited_at", "version")} == {
        k: v for k, v in message.items() if k not in ("content", "edited_at", "version")}
    assert edited["version"] > message["version"]  # an edit is a change of the conversation
    assert history(client, bob, alice, bob).get_json() == [edited]


def test_edit_and_delete_permissions(client, pair, auth):
    alice, bob = pair
    eve = auth.user()
    message = sent(client, alice, bob, "mine")
    path = f"/api/chat/messages/{message['id']}"
    for account, status, code in ((bob, 403, "forbidden"), (eve, 404, "not_found")):
        assert_error(client.patch(path, headers=account.headers, json={"content": "x"}),
                     status, code)
        assert_error(client.delete(path, headers=account.headers), status, code)
    for bad in (str(ObjectId()), "nope"):
        assert_error(client.patch(f"/api/chat/messages/{bad}", headers=alice.headers,
                                  json={"content": "x"}), 404, "not_found")
        assert_error(client.delete(f"/api/chat/messages/{bad}", headers=alice.headers),
                     404, "not_found")
    assert history(client, alice, alice, bob).get_json() == [message]


@pytest.mark.parametrize("body", [{}, {"content": ""}, {"content": "  "}, {"content": 3},
                                  {"content": "x" * 4001}])
def test_edit_validation(client, pair, body):
    alice, bob = pair
    message = sent(client, alice, bob, "keep")
    response = client.patch(f"/api/chat/messages/{message['id']}", headers=alice.headers,
                            json=body)
    assert "content" in assert_error(response, 422, "validation_error")["details"]
    assert history(client, alice, alice, bob).get_json() == [message]


def test_delete_blanks_content_and_edit_after_delete_is_409(client, pair):
    alice, bob = pair
    message = sent(client, alice, bob, "regret")
    path = f"/api/chat/messages/{message['id']}"
    response = client.delete(path, headers=alice.headers)
    assert response.status_code == 200
    deleted = response.get_json()["message"]
    assert deleted["content"] == "" and deleted["deleted"] is True
    assert deleted["id"] == message["id"] and deleted["seq"] == message["seq"]
    assert history(client, bob, alice, bob).get_json() == [deleted]
    error = assert_error(client.patch(path, headers=alice.headers, json={"content": "again"}),
                         409, "conflict")
    assert error["details"]
    assert history(client, bob, alice, bob).get_json() == [deleted]


# --- catch-up ------------------------------------------------------------------------------

def test_catch_up_after_returns_exactly_what_was_missed(client, pair):
    alice, bob = pair
    seen = [sent(client, alice, bob, f"seen {i}") for i in range(3)]
    last_seen = seen[-1]["id"]
    missed = [sent(client, alice, bob, "missed 1"), sent(client, bob, alice, "missed 2"),
              sent(client, alice, bob, "missed 3")]
    client.delete(f"/api/chat/messages/{missed[0]['id']}", headers=alice.headers)
    client.patch(f"/api/chat/messages/{missed[2]['id']}", headers=alice.headers,
                 json={"content": "missed 3, edited"})
    convs = conversations(client, bob)
    assert convs[0]["last_message"]["seq"] == missed[-1]["seq"]
    response = history(client, bob, bob, alice, after=last_seen)
    assert "Link" not in response.headers
    body = response.get_json()
    assert [m["id"] for m in body] == [m["id"] for m in missed][::-1]
    assert body[2]["deleted"] is True and body[2]["content"] == ""
    assert body[0]["content"] == "missed 3, edited" and body[0]["edited_at"] is not None


def test_link_is_a_path_never_a_host_from_the_request(client, pair):
    alice, bob = pair
    for i in range(3):
        sent(client, alice, bob, f"m{i}")
    response = client.get(f"/api/chat/messages/{alice.id}/{bob.id}?limit=1",
                          headers={**alice.headers, "Host": "evil.example",
                                   "X-Forwarded-Host": "evil.example"})
    assert response.status_code == 200
    link = response.headers["Link"]
    assert link.startswith(f"</api/chat/messages/{alice.id}/{bob.id}?") and "evil" not in link
