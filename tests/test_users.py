"""Accounts over REST (`/api/user`): register, login, me, list, user by id, password hashing."""
import re

import bcrypt
import jwt as pyjwt
import pytest
from bson import ObjectId

from chatapp import security
from chatapp.extensions import mongo
from tests.conftest import PASSWORD

ISO_MS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
HEX24 = re.compile(r"^[0-9a-f]{24}$")
USER_KEYS = {"id", "_id", "username", "created_at", "online", "last_seen"}
LOGIN_KEYS = {"message", "token", "access_token", "refresh_token", "token_type", "expires_in",
              "userId", "user"}


def assert_error(response, status, code):
    assert response.status_code == status, response.get_json()
    body = response.get_json()
    assert set(body) == {"error"}, body
    assert body["error"]["code"] == code, body
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    return body["error"]


def register(client, username="alice", email="alice@example.com", password=PASSWORD, **extra):
    return client.post("/api/user/register",
                       json={"username": username, "email": email, "password": password, **extra})


def login(client, email="alice@example.com", password=PASSWORD, **extra):
    return client.post("/api/user/login", json={"email": email, "password": password, **extra})


# --- register ----------------------------------------------------------------------

def test_register_returns_the_new_user_with_email(client):
    response = register(client, "Alice", "Alice@Example.COM")
    assert response.status_code == 201
    body = response.get_json()
    assert set(body) == {"message", "user"}
    user = body["user"]
    assert set(user) == USER_KEYS | {"email"}
    assert HEX24.match(user["id"]) and user["_id"] == user["id"]
    assert user["username"] == "Alice"
    assert user["email"] == "alice@example.com"
    assert ISO_MS.match(user["created_at"])
    assert user["online"] is False and user["last_seen"] is None


@pytest.mark.parametrize("username", ["abc", "a" * 32, "A.b-c_9", "___"])
def test_register_accepts_usernames_of_the_allowed_alphabet(client, username):
    assert register(client, username, f"{len(username)}x@example.com").status_code == 201


@pytest.mark.parametrize("password", [
    "a" * 8,
    "a" * 72,                   # bcrypt's limit exactly
    "é" * 36,                   # 36 characters, 72 bytes
    "密码密码密码密码密码密码密码密码密码密码密码密码",  # 24 characters, 72 bytes
    "😀" * 18,                  # 18 characters, 72 bytes
    "pässwörd",                 # 8 characters, 10 bytes
])
def test_unicode_passwords_within_72_bytes_register_and_log_in(client, password):
    assert len(password.encode("utf-8")) <= 72
    assert register(client, password=password).status_code == 201
    assert login(client, password=password).status_code == 200
    assert_error(login(client, password=password[:-1] + "x"), 401, "invalid_credentials")


@pytest.mark.parametrize("field, value", [
    ("username", "ab"),                      # too short
    ("username", "a" * 33),                  # too long
    ("username", "ålice"),                   # unicode letter
    ("username", "ａｌｉｃｅ"),                 # full-width letters
    ("username", "Ελένη"),
    ("username", "ali ce"),
    ("username", "alice\n"),                 # trailing newline
    ("username", "ali@ce"),
    ("username", ""),
    ("username", 123),
    ("username", {"$ne": None}),             # operator object, never a query
    ("username", ["alice"]),
    ("username", None),
    ("email", "not-an-email"),
    ("email", "alice@"),
    ("email", ""),
    ("email", {"$ne": None}),
    ("email", {"$regex": ".*"}),
    ("email", ["alice@example.com"]),
    ("email", None),
    ("email", "a" * 250 + "@example.com"),   # over 254 characters
    ("password", "short7!"),                 # 7 bytes
    ("password", "a" * 73),                  # one byte over bcrypt's limit
    ("password", "é" * 36 + "a"),            # 37 characters, 73 bytes
    ("password", "😀" * 18 + "a"),           # 19 characters, 73 bytes
    ("password", "密" * 25),                 # 25 characters, 75 bytes
    ("password", {"$ne": None}),
    ("password", 12345678),
    ("password", None),
])
def test_register_rejects_invalid_fields(client, field, value):
    body = {"username": "alice", "email": "alice@example.com", "password": PASSWORD, field: value}
    error = assert_error(client.post("/api/user/register", json=body), 422, "validation_error")
    assert list(error["details"]) == [field]
    assert all(isinstance(m, str) for m in error["details"][field])
    assert mongo.db.users.count_documents({}) == 0


@pytest.mark.parametrize("missing", ["username", "email", "password"])
def test_register_requires_every_field(client, missing):
    body = {"username": "alice", "email": "alice@example.com", "password": PASSWORD}
    del body[missing]
    error = assert_error(client.post("/api/user/register", json=body), 422, "validation_error")
    assert list(error["details"]) == [missing]


def test_register_ignores_and_does_not_store_mass_assignment_fields(client, app):
    chosen_id = str(ObjectId())
    response = register(client, _id=chosen_id, id=chosen_id, password_hash="$2b$04$" + "x" * 53,
                        is_admin=True, admin=True, created_at="2000-01-01T00:00:00.000Z",
                        online=True, last_seen="2000-01-01T00:00:00.000Z", role="admin")
    assert response.status_code == 201
    user = response.get_json()["user"]
    assert user["id"] != chosen_id
    assert user["created_at"] != "2000-01-01T00:00:00.000Z"
    assert user["online"] is False and user["last_seen"] is None
    doc = mongo.db.users.find_one({"email": "alice@example.com"})
    assert set(doc) == {"_id", "username", "username_lower", "email", "password_hash",
                        "created_at", "last_seen"}
    assert str(doc["_id"]) == user["id"] != chosen_id
    assert doc["created_at"].year != 2000 and doc["last_seen"] is None
    assert bcrypt.checkpw(PASSWORD.encode(), doc["password_hash"].encode())
    assert mongo.db.users.count_documents({"_id": ObjectId(chosen_id)}) == 0
    token = login(client).get_json()["token"]
    me = client.get("/api/user/me", headers={"Authorization": f"Bearer {token}"}).get_json()
    assert set(me) == USER_KEYS | {"email"}
    assert me["id"] == user["id"]


@pytest.mark.parametrize("taken", ["alice", "ALICE", "Alice"])
def test_username_is_unique_case_insensitively(client, taken):
    assert register(client, "alice", "first@example.com").status_code == 201
    error = assert_error(register(client, taken, "second@example.com"), 409, "conflict")
    assert error["details"] == {"username": ["already taken"]}


@pytest.mark.parametrize("taken", ["alice@example.com", "ALICE@Example.com"])
def test_email_is_unique_case_insensitively(client, taken):
    assert register(client, "alice", "alice@example.com").status_code == 201
    error = assert_error(register(client, "bob", taken), 409, "conflict")
    assert error["details"] == {"email": ["already taken"]}


def test_conflict_names_email_even_when_the_email_contains_username(client):
    """The clash is told by the index, not by searching the error text for a field name."""
    assert register(client, "carol", "username@example.com").status_code == 201
    error = assert_error(register(client, "dave", "username@example.com"), 409, "conflict")
    assert error["details"] == {"email": ["already taken"]}


@pytest.mark.parametrize("first, second", [
    ("alice@bücher.example", "alice@xn--bcher-kva.example"),     # IDNA: one domain
    ("alice@xn--bcher-kva.example", "Alice@BÜCHER.example"),
    ("alice@example.com", "\uff41\uff4c\uff49\uff43\uff45@example.com"),  # full-width
])
def test_one_mailbox_is_one_account_whatever_its_spelling(client, first, second):
    assert register(client, "alice", first).status_code == 201
    error = assert_error(register(client, "bob", second), 409, "conflict")
    assert error["details"] == {"email": ["already taken"]}
    assert login(client, second).status_code == 200  # and either spelling logs in


@pytest.mark.parametrize("email", [
    '"alice"@example.com', '"a b"@example.com',                  # quoted local parts
    "ali\u200bce@example.com", "alice@example.com\u200b",         # zero-width space
    "al\u00adice@example.com", "alice\u2060@example.com",         # soft hyphen, word joiner
    "alice@[127.0.0.1]",                                            # a domain literal
])
def test_invisible_or_quoted_emails_are_refused(client, email):
    error = assert_error(register(client, "alice", email), 422, "validation_error")
    assert "email" in error["details"]
    assert mongo.db.users.count_documents({}) == 0


def test_email_is_stored_lower_case(client):
    register(client, "alice", "MiXeD@Example.COM")
    assert mongo.db.users.find_one({"username": "alice"})["email"] == "mixed@example.com"


# --- login -------------------------------------------------------------------------

def test_login_returns_tokens_and_the_original_api_keys(client, app):
    user_id = register(client).get_json()["user"]["id"]
    response = login(client)
    assert response.status_code == 200
    body = response.get_json()
    assert set(body) == LOGIN_KEYS
    assert body["token"] == body["access_token"] != body["refresh_token"]
    assert body["token_type"] == "Bearer"
    assert body["userId"] == user_id == body["user"]["id"]
    assert set(body["user"]) == USER_KEYS | {"email"}
    secret = app.config["JWT_SECRET_KEY"]
    access = pyjwt.decode(body["access_token"], secret, algorithms=["HS256"])
    refresh = pyjwt.decode(body["refresh_token"], secret, algorithms=["HS256"])
    assert pyjwt.get_unverified_header(body["access_token"])["alg"] == "HS256"
    assert access["type"] == "access" and refresh["type"] == "refresh"
    assert access["sub"] == refresh["sub"] == user_id
    assert access["jti"] != refresh["jti"]
    assert body["expires_in"] == access["exp"] - access["iat"] == 3600


@pytest.mark.parametrize("typed", ["ALICE@EXAMPLE.COM", "Alice@Example.com", " alice@example.com "])
def test_login_matches_email_case_insensitively(client, typed):
    register(client, "alice", "Alice@example.com")
    assert login(client, typed).status_code == 200


def test_unknown_email_and_wrong_password_answer_identically(client):
    register(client)
    unknown = login(client, "nobody@example.com")
    wrong = login(client, "alice@example.com", "wrong password")
    too_long = login(client, "alice@example.com", "x" * 100)  # over bcrypt's 72 bytes
    for response in (unknown, wrong, too_long):
        assert_error(response, 401, "invalid_credentials")
    assert unknown.get_data() == wrong.get_data() == too_long.get_data()
    assert unknown.headers.get("Content-Type") == wrong.headers.get("Content-Type")


@pytest.mark.parametrize("email", ["nobody@example.com", "alice@example.com"])
def test_login_runs_one_bcrypt_check_whether_or_not_the_email_exists(client, monkeypatch, email):
    """Unknown email costs a bcrypt check too, so both failures take about the same time."""
    register(client)
    real_checkpw, calls = bcrypt.checkpw, []

    def counting_checkpw(password, hashed):
        calls.append(hashed[:7])
        return real_checkpw(password, hashed)

    monkeypatch.setattr(bcrypt, "checkpw", counting_checkpw)
    assert_error(login(client, email, "wrong password"), 401, "invalid_credentials")
    assert calls == [b"$2b$04$"]


@pytest.mark.parametrize("body, field", [
    ({"email": {"$ne": None}, "password": PASSWORD}, "email"),
    ({"email": {"$gt": ""}, "password": PASSWORD}, "email"),
    ({"email": "alice@example.com", "password": {"$ne": None}}, "password"),
    ({"email": "alice@example.com", "password": {"$gt": ""}}, "password"),
    ({"email": ["alice@example.com"], "password": PASSWORD}, "email"),
    ({"email": "alice@example.com", "password": True}, "password"),
    ({"email": "", "password": PASSWORD}, "email"),
    ({"email": "alice@example.com", "password": ""}, "password"),
    ({"password": PASSWORD}, "email"),
    ({"email": "alice@example.com"}, "password"),
])
def test_login_rejects_operator_objects_and_bad_fields(client, body, field):
    register(client)
    error = assert_error(client.post("/api/user/login", json=body), 422, "validation_error")
    assert list(error["details"]) == [field]


# --- me, list, by id ---------------------------------------------------------------

def test_me_returns_own_record_with_email(client, auth):
    alice = auth.user()
    response = client.get("/api/user/me", headers=alice.headers)
    assert response.status_code == 200
    me = response.get_json()
    assert set(me) == USER_KEYS | {"email"}
    assert (me["id"], me["username"], me["email"]) == (alice.id, alice.username, alice.email)


@pytest.mark.parametrize("path", ["/api/user/me", "/api/user", f"/api/user/{ObjectId()}"])
@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer"}, {"Authorization": "Token x"},
                                     {"Authorization": "Bearer not-a-jwt"}])
def test_authenticated_user_routes_refuse_missing_or_bad_tokens(client, path, headers):
    assert_error(client.get(path, headers=headers), 401, "unauthorized")


def test_user_by_id_shows_public_record_without_email(client, auth):
    alice, bob = auth.user(), auth.user()
    response = client.get(f"/api/user/{bob.id}", headers=alice.headers)
    assert response.status_code == 200
    user = response.get_json()
    assert set(user) == USER_KEYS
    assert (user["id"], user["_id"], user["username"]) == (bob.id, bob.id, bob.username)
    own = client.get(f"/api/user/{alice.id}", headers=alice.headers).get_json()
    assert own["email"] == alice.email


def test_user_by_id_shows_online_while_a_socket_is_connected(client, auth, socket_client):
    alice, bob, stranger = auth.user(), auth.user(), auth.user()
    sent = client.post("/api/chat/send", headers=alice.headers,
                       json={"receiver": bob.id, "content": "hi"})  # they share a conversation
    assert sent.status_code == 201
    assert client.get(f"/api/user/{bob.id}", headers=alice.headers).get_json()["online"] is False
    sc = socket_client(bob)
    assert sc.is_connected()
    assert client.get(f"/api/user/{bob.id}", headers=alice.headers).get_json()["online"] is True
    assert client.get(f"/api/user/{bob.id}", headers=bob.headers).get_json()["online"] is True
    # presence is only for those who share a conversation, as `presence` events are
    assert client.get(f"/api/user/{bob.id}", headers=stranger.headers).get_json()["online"] \
        is False


@pytest.mark.parametrize("user_id", [
    str(ObjectId()),               # well-formed, unknown
    "zzz",
    "123",
    "g" * 24,                      # 24 characters, not hex
    "a" * 25,
    "a" * 23,
    "%24ne",
])
def test_user_by_id_is_404_for_unknown_and_malformed_ids(client, auth, user_id):
    alice = auth.user()
    assert_error(client.get(f"/api/user/{user_id}", headers=alice.headers), 404, "not_found")


def list_users(client, account, **params):
    return client.get("/api/user", headers=account.headers, query_string=params)


def test_list_orders_by_username_and_shows_email_only_on_own_record(client, auth):
    names = ["delta", "Alpha", "charlie", "Bravo"]
    accounts = [auth.user(name) for name in names]
    response = list_users(client, accounts[0])
    assert response.status_code == 200
    body = response.get_json()
    assert set(body) == {"users", "next_cursor"}
    assert [u["username"] for u in body["users"]] == ["Alpha", "Bravo", "charlie", "delta"]
    assert body["next_cursor"] is None
    for user in body["users"]:
        own = user["id"] == accounts[0].id
        assert set(user) == USER_KEYS | ({"email"} if own else set())


def test_list_walks_every_page_once_with_the_cursor(client, auth):
    accounts = [auth.user(f"u{i:02d}{'X' if i % 2 else 'y'}") for i in range(7)]
    seen, cursor, pages = [], None, 0
    while True:
        params = {"limit": 3, **({"cursor": cursor} if cursor else {})}
        body = list_users(client, accounts[0], **params).get_json()
        assert len(body["users"]) <= 3
        seen += [u["username"] for u in body["users"]]
        pages += 1
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert pages == 3
    assert seen == sorted((a.username for a in accounts), key=str.lower)


def test_list_clamps_limit_to_100(client, auth):
    viewer = auth.user()
    for i in range(101):
        auth.register(f"bulk{i:03d}")
    body = list_users(client, viewer, limit=1000).get_json()
    assert len(body["users"]) == 100
    assert body["next_cursor"] is not None
    rest = list_users(client, viewer, limit=1000, cursor=body["next_cursor"]).get_json()
    assert len(rest["users"]) == 2 and rest["next_cursor"] is None


def test_list_filters_by_case_insensitive_username_prefix(client, auth):
    viewer = auth.user("zed")
    for name in ["Alpha1", "alpine", "ALPS", "beta", "xalp"]:
        auth.register(name)
    body = list_users(client, viewer, q="aLp").get_json()
    assert [u["username"] for u in body["users"]] == ["Alpha1", "alpine", "ALPS"]
    assert list_users(client, viewer, q=".*").get_json()["users"] == []   # literal, not a regex
    assert list_users(client, viewer, q="a.p").get_json()["users"] == []


def test_list_prefix_and_cursor_combine(client, auth):
    viewer = auth.user("zed")
    for name in ["ab1", "ab2", "ab3", "ac1"]:
        auth.register(name)
    first = list_users(client, viewer, q="ab", limit=2).get_json()
    assert [u["username"] for u in first["users"]] == ["ab1", "ab2"]
    second = list_users(client, viewer, q="ab", limit=2, cursor=first["next_cursor"]).get_json()
    assert [u["username"] for u in second["users"]] == ["ab3"]
    assert second["next_cursor"] is None


@pytest.mark.parametrize("params, field", [
    ({"limit": 0}, "limit"),
    ({"limit": -5}, "limit"),
    ({"limit": "ten"}, "limit"),
    ({"cursor": "%%%"}, "cursor"),
    ({"cursor": "abc"}, "cursor"),           # base64 of bytes that are not UTF-8
    ({"cursor": "!"}, "cursor"),
    ({"cursor": "x" * 201}, "cursor"),
    ({"q": "a" * 33}, "q"),
])
def test_list_rejects_bad_query_parameters(client, auth, params, field):
    viewer = auth.user()
    error = assert_error(list_users(client, viewer, **params), 422, "validation_error")
    assert list(error["details"]) == [field]


# --- no password hash ever leaves the server -----------------------------------------

def test_no_response_contains_a_password_hash(client, auth):
    alice, bob = auth.user("alice"), auth.user("bob")
    responses = [
        register(client, "carol", "carol@example.com"),
        login(client, "carol@example.com"),
        login(client, "carol@example.com", "wrong password"),
        client.get("/api/user/me", headers=alice.headers),
        client.get("/api/user", headers=alice.headers),
        client.get("/api/user", headers=alice.headers, query_string={"q": "b"}),
        client.get(f"/api/user/{bob.id}", headers=alice.headers),
        client.get(f"/api/user/{alice.id}", headers=alice.headers),
        client.post("/api/user/refresh", json={"refresh_token": alice.refresh_token}),
        register(client, "alice", "other@example.com"),
        client.post("/api/chat/send", headers=alice.headers,
                    json={"receiver": bob.id, "content": "hi"}),
        client.get("/api/chat/conversations", headers=bob.headers),   # embeds Users
    ]
    assert [r.status_code for r in responses] == [201, 200, 401, 200, 200, 200, 200, 200, 200, 409,
                                                  201, 200]
    for response in responses:
        text = response.get_data(as_text=True)
        assert "$2b$" not in text and "$2a$" not in text
        assert not {"password", "password_hash"} & json_keys(response.get_json())


def json_keys(value):
    if isinstance(value, dict):
        return set(value) | set().union(*(json_keys(v) for v in value.values()))
    if isinstance(value, list):
        return set().union(*(json_keys(v) for v in value))
    return set()


# --- password hashing (bcrypt; inline under TestingConfig, tpool under eventlet) -------

def test_hash_password_uses_bcrypt_with_configured_rounds(app):
    with app.app_context():
        hashed = security.hash_password("pässwörd-123")
        assert hashed.startswith("$2b$04$") and len(hashed) == 60
        assert security.hash_password("pässwörd-123") != hashed   # salted
        assert security.check_password("pässwörd-123", hashed) is True
        assert security.check_password("pässwörd-124", hashed) is False


def test_check_password_without_hash_or_over_72_bytes_is_false(app):
    with app.app_context():
        hashed = security.hash_password("a" * 72)
        assert security.check_password("a" * 72, hashed) is True
        assert security.check_password("a" * 73, hashed) is False   # never truncated to a match
        assert security.check_password("anything", None) is False
