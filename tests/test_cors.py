"""CORS: one origin policy (CORS_ORIGINS, else same origin) for REST and Socket.IO."""
import pytest

from chatapp import create_app
from config import ConfigError, TestingConfig

FRONTEND = "https://chat.example.com"
EVIL = "https://evil.example"
POLLING = "/socket.io/?EIO=4&transport=polling"


@pytest.fixture
def client():
    return create_app(TestingConfig, CORS_ORIGINS=[FRONTEND, "http://localhost:5173"]).test_client()


def test_a_listed_origin_is_echoed_and_may_read_pagination_and_limit_headers(client):
    response = client.get("/healthz", headers={"Origin": FRONTEND})
    assert response.status_code == 200
    assert response.headers["Access-Control-Allow-Origin"] == FRONTEND
    assert "Link" in response.headers["Access-Control-Expose-Headers"]
    assert "Retry-After" in response.headers["Access-Control-Expose-Headers"]
    assert "Origin" in response.headers["Vary"]
    assert "Access-Control-Allow-Credentials" not in response.headers


def test_an_error_response_to_a_listed_origin_is_readable(client):
    response = client.get("/api/user/me", headers={"Origin": FRONTEND})
    assert response.status_code == 401
    assert response.headers["Access-Control-Allow-Origin"] == FRONTEND


@pytest.mark.parametrize("origin", [EVIL, "https://chat.example.com.evil.example", "null",
                                    "http://chat.example.com"])
def test_other_origins_get_no_cors_headers(client, origin):
    response = client.get("/healthz", headers={"Origin": origin})
    assert response.status_code == 200
    assert "Access-Control-Allow-Origin" not in response.headers


def test_a_preflight_from_a_listed_origin_is_answered(client):
    response = client.options("/api/chat/send", headers={
        "Origin": FRONTEND, "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization, content-type"})
    assert response.status_code == 204
    assert response.headers["Access-Control-Allow-Origin"] == FRONTEND
    assert "POST" in response.headers["Access-Control-Allow-Methods"]
    assert response.headers["Access-Control-Allow-Headers"] == "authorization, content-type"
    assert int(response.headers["Access-Control-Max-Age"]) > 0


def test_a_preflight_from_another_origin_grants_nothing(client):
    response = client.options("/api/chat/send", headers={
        "Origin": EVIL, "Access-Control-Request-Method": "POST"})
    assert response.status_code == 204
    for name in ("Access-Control-Allow-Origin", "Access-Control-Allow-Methods",
                 "Access-Control-Allow-Headers"):
        assert name not in response.headers


def test_by_default_rest_grants_no_cross_origin_access():
    client = create_app(TestingConfig).test_client()
    response = client.get("/healthz", headers={"Origin": FRONTEND})
    assert "Access-Control-Allow-Origin" not in response.headers


@pytest.mark.parametrize("origins", [["*"], [FRONTEND, "*"], ["https://*.example.com"]])
def test_a_wildcard_origin_is_refused_at_start_up(origins):
    with pytest.raises(ConfigError, match="CORS_ORIGINS"):
        create_app(TestingConfig, CORS_ORIGINS=origins)


# Socket.IO: the Engine.IO handshake (a polling GET) goes through the same policy.

def test_socketio_accepts_a_listed_origin(client):
    response = client.get(POLLING, headers={"Origin": FRONTEND})
    assert response.status_code == 200
    assert response.headers["Access-Control-Allow-Origin"] == FRONTEND


def test_socketio_refuses_another_origin(client):
    response = client.get(POLLING, headers={"Origin": EVIL})
    assert response.status_code == 400
    assert "Access-Control-Allow-Origin" not in response.headers


def test_socketio_accepts_the_same_origin_by_default():
    client = create_app(TestingConfig).test_client()
    assert client.get(POLLING, headers={"Origin": "http://localhost"}).status_code == 200
    assert client.get(POLLING, headers={"Origin": FRONTEND}).status_code == 400


def test_socketio_same_origin_check_does_not_trust_forwarded_host():
    client = create_app(TestingConfig).test_client()
    response = client.get(POLLING, headers={"Origin": EVIL, "X-Forwarded-Host": "evil.example",
                                            "X-Forwarded-Proto": "https"})
    assert response.status_code == 400


def test_behind_a_trusted_proxy_the_forwarded_scheme_makes_the_same_origin():
    client = create_app(TestingConfig, TRUSTED_PROXIES=1).test_client()
    tls = {"Origin": "https://localhost", "X-Forwarded-Proto": "https"}
    assert client.get(POLLING, headers=tls).status_code == 200
    untrusted = create_app(TestingConfig).test_client()
    assert untrusted.get(POLLING, headers=tls).status_code == 400
