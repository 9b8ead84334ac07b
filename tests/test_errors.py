"""One error envelope for every error the app can emit: bodies, media types, sizes,
unknown routes and methods, unhandled exceptions, and a database that is down."""
import logging
import socket
import time

import jwt as pyjwt
import pytest
from bson import ObjectId

from chatapp import create_app
from config import TestingConfig

LOGIN = "/api/user/login"
MIB = 1024 * 1024


def assert_envelope(response, status, code):
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == "application/json"
    body = response.get_json()
    assert set(body) == {"error"}, body
    assert set(body["error"]) <= {"code", "message", "details"}
    assert body["error"]["code"] == code, body
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    return body["error"]


@pytest.mark.parametrize("content_type, data", [
    ("text/plain", '{"email": "a@example.com", "password": "x"}'),
    ("application/x-www-form-urlencoded", "email=a%40example.com&password=x"),
    ("multipart/form-data; boundary=xyz", "--xyz--"),
    ("application/xml", "<login/>"),
    (None, '{"email": "a@example.com", "password": "x"}'),
])
def test_a_body_that_is_not_json_is_415(client, content_type, data):
    headers = {"Content-Type": content_type} if content_type else {}
    response = client.post(LOGIN, data=data, headers=headers)
    assert_envelope(response, 415, "unsupported_media_type")


@pytest.mark.parametrize("path", [LOGIN, "/api/user/register", "/api/user/refresh"])
@pytest.mark.parametrize("data", [
    b"{bad json",
    b"{'email': 'single quotes'}",
    b'{"email": "a@example.com",}',
    b"\xff\xfe{}",                      # not UTF-8
    b"[]",
    b'[{"email": "a@example.com"}]',
    b'"a string"',
    b"42",
    b"true",
    b"null",
])
def test_unparseable_or_non_object_json_is_400_invalid_json(client, path, data):
    response = client.post(path, data=data, content_type="application/json")
    assert_envelope(response, 400, "invalid_json")


def test_json_with_a_charset_is_accepted(client):
    response = client.post(LOGIN, data=b'{"email": "a@example.com", "password": "x"}',
                           content_type="application/json; charset=utf-8")
    assert_envelope(response, 401, "invalid_credentials")


def test_an_empty_json_body_is_a_validation_error(client):
    error = assert_envelope(client.post(LOGIN, content_type="application/json"),
                            422, "validation_error")
    assert set(error["details"]) == {"email", "password"}


def padded_login(total_size):
    """A valid login body of exactly `total_size` bytes."""
    head, tail = b'{"email": "a@example.com", "password": "x", "pad": "', b'"}'
    return head + b"p" * (total_size - len(head) - len(tail)) + tail


def test_a_body_of_exactly_1_mib_is_read(client):
    response = client.post(LOGIN, data=padded_login(MIB), content_type="application/json")
    assert_envelope(response, 401, "invalid_credentials")


@pytest.mark.parametrize("size", [MIB + 1, 2 * MIB])
def test_a_body_over_1_mib_is_413(client, size):
    response = client.post(LOGIN, data=padded_login(size), content_type="application/json")
    assert_envelope(response, 413, "payload_too_large")


@pytest.mark.parametrize("path", ["/nope", "/api/nope", "/api/user/me/extra", "/api/chat/nope"])
def test_unknown_routes_are_404_envelopes(client, path):
    assert_envelope(client.get(path), 404, "not_found")


@pytest.mark.parametrize("method, path, allowed", [
    ("put", LOGIN, "POST"),
    ("delete", "/api/user/register", "POST"),
    ("put", "/api/user/me", "GET"),
    ("post", "/healthz", "GET"),
])
def test_wrong_methods_are_405_envelopes_with_allow(client, method, path, allowed):
    response = getattr(client, method)(path)
    assert_envelope(response, 405, "method_not_allowed")
    assert allowed in [m.strip() for m in response.headers["Allow"].split(",")]


def test_an_unhandled_exception_is_a_500_envelope_without_traceback(app, caplog):
    def explode():
        raise RuntimeError("internal detail 7f3a")

    app.add_url_rule("/test-explode", "test_explode", explode)
    with caplog.at_level(logging.ERROR):
        response = app.test_client().get("/test-explode")
    error = assert_envelope(response, 500, "internal_error")
    assert error == {"code": "internal_error", "message": "internal server error"}
    text = response.get_data(as_text=True)
    assert "Traceback" not in text and "7f3a" not in text and "RuntimeError" not in text
    # The traceback goes to the log instead.
    logged = [r for r in caplog.records if r.exc_info and "7f3a" in str(r.exc_info[1])]
    assert logged


def test_errors_raised_by_views_keep_their_status(app):
    from chatapp.errors import Conflict, Forbidden, RateLimited

    def raise_conflict():
        raise Conflict("name taken", details={"name": ["already taken"]})

    def raise_forbidden():
        raise Forbidden()

    def raise_rate_limited():
        raise RateLimited(headers={"Retry-After": "7"})

    for name, view in [("c", raise_conflict), ("f", raise_forbidden), ("r", raise_rate_limited)]:
        app.add_url_rule(f"/test-raise-{name}", f"test_raise_{name}", view)
    client = app.test_client()
    assert assert_envelope(client.get("/test-raise-c"), 409, "conflict") == {
        "code": "conflict", "message": "name taken", "details": {"name": ["already taken"]}}
    assert_envelope(client.get("/test-raise-f"), 403, "forbidden")
    limited = client.get("/test-raise-r")
    assert_envelope(limited, 429, "rate_limited")
    assert limited.headers["Retry-After"] == "7"


# --- MongoDB unreachable ---------------------------------------------------------------

def closed_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def app_without_database():
    """An app whose MongoDB URL points at a closed loopback port, with a short timeout."""
    return create_app(TestingConfig, MONGO_URI=f"mongodb://127.0.0.1:{closed_port()}/x",
                      MONGO_TIMEOUT_MS=300)


def test_database_down_is_503_unavailable_not_a_hang(app_without_database):
    client = app_without_database.test_client()
    claims = {"sub": str(ObjectId()), "type": "access", "jti": "j1", "sid": "s1",
              "iat": int(time.time()), "nbf": int(time.time()), "exp": int(time.time()) + 600}
    token = pyjwt.encode(claims, TestingConfig.JWT_SECRET_KEY, algorithm="HS256")
    calls = [
        lambda: client.get("/readyz"),
        lambda: client.post(LOGIN, json={"email": "a@example.com", "password": "password-1"}),
        lambda: client.post("/api/user/register", json={
            "username": "alice", "email": "a@example.com", "password": "password-1"}),
        lambda: client.get("/api/user/me", headers={"Authorization": f"Bearer {token}"}),
    ]
    for call in calls:
        started = time.monotonic()
        response = call()
        # Not a speed figure: the default server selection waits 30 s; ours gives up fast.
        assert time.monotonic() - started < 10
        error = assert_envelope(response, 503, "unavailable")
        assert "Traceback" not in response.get_data(as_text=True)
        assert set(error) == {"code", "message"}


def test_liveness_does_not_need_the_database(app_without_database):
    response = app_without_database.test_client().get("/healthz")
    assert response.status_code == 200 and response.get_json() == {"status": "ok"}
