"""Tokens: forged, expired, revoked and wrong-type tokens on REST and at socket connect;
refresh rotation and reuse detection; logout and logout-all."""
import base64
import json
import time
from datetime import datetime, timezone

import jwt as pyjwt
import pytest
import requests
import socketio as socketio_client

from chatapp.extensions import mongo
from config import TestingConfig

SECRET = TestingConfig.JWT_SECRET_KEY


def assert_error(response, status, code):
    assert response.status_code == status, response.get_json()
    body = response.get_json()
    assert set(body) == {"error"} and body["error"]["code"] == code, body
    return body["error"]


def bearer(token):
    return {"Authorization": f"Bearer {token}"}


def b64(data):
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def claims_of(token):
    return pyjwt.decode(token, options={"verify_signature": False})


def alg_none(token):
    return f"{b64({'alg': 'none', 'typ': 'JWT'})}.{b64(claims_of(token))}."


def wrong_signature(token):
    return pyjwt.encode(claims_of(token), "another-secret-of-the-same-length-0123456789",
                        algorithm="HS256")


def tampered_payload(token):
    header, _, signature = token.split(".")
    claims = {**claims_of(token), "sub": "0" * 24}
    return f"{header}.{b64(claims)}.{signature}"


def other_algorithm(token):
    return pyjwt.encode(claims_of(token), SECRET + "-made-long-enough-for-hs512-" + "x" * 20,
                        algorithm="HS512")


def expired(token, secret=SECRET):
    past = int(time.time()) - 3600
    return pyjwt.encode({**claims_of(token), "iat": past - 60, "nbf": past - 60, "exp": past},
                        secret, algorithm="HS256")


FORGERIES = {
    "alg none": (alg_none, "unauthorized"),
    "wrong signature": (wrong_signature, "unauthorized"),
    "tampered payload": (tampered_payload, "unauthorized"),
    "HS512 instead of HS256": (other_algorithm, "unauthorized"),
    "expired exp": (expired, "token_expired"),
}


# --- REST ----------------------------------------------------------------------------

@pytest.mark.parametrize("kind", FORGERIES)
def test_rest_refuses_forged_and_expired_access_tokens(client, auth, kind):
    alice = auth.user()
    forge, code = FORGERIES[kind]
    assert client.get("/api/user/me", headers=alice.headers).status_code == 200
    assert_error(client.get("/api/user/me", headers=bearer(forge(alice.token))), 401, code)


@pytest.mark.parametrize("kind", FORGERIES)
def test_refresh_refuses_forged_and_expired_refresh_tokens(client, auth, kind):
    alice = auth.user()
    forge, code = FORGERIES[kind]
    response = client.post("/api/user/refresh", headers=bearer(forge(alice.refresh_token)))
    assert_error(response, 401, code)
    # The genuine token was not spent by the forgery.
    assert client.post("/api/user/refresh", headers=bearer(alice.refresh_token)).status_code == 200


def test_rest_refuses_a_revoked_access_token(client, auth):
    alice = auth.user()
    assert client.post("/api/user/logout", headers=alice.headers).status_code == 200
    assert_error(client.get("/api/user/me", headers=alice.headers), 401, "token_revoked")


def test_refresh_token_is_not_an_access_token(client, auth):
    alice = auth.user()
    for path in ("/api/user/me", "/api/user", f"/api/user/{alice.id}"):
        assert_error(client.get(path, headers=bearer(alice.refresh_token)), 401, "unauthorized")
    assert_error(client.post("/api/user/logout", headers=bearer(alice.refresh_token)),
                 401, "unauthorized")
    assert_error(client.post("/api/user/logout-all", headers=bearer(alice.refresh_token)),
                 401, "unauthorized")


def test_access_token_is_not_a_refresh_token(client, auth):
    alice = auth.user()
    assert_error(client.post("/api/user/refresh", headers=alice.headers), 401, "unauthorized")
    assert_error(client.post("/api/user/refresh", json={"refresh_token": alice.token}),
                 401, "unauthorized")


def test_refresh_without_a_token_is_401(client):
    assert_error(client.post("/api/user/refresh"), 401, "unauthorized")
    assert_error(client.post("/api/user/refresh", json={}), 401, "unauthorized")


# --- refresh: rotation and reuse detection ------------------------------------------------

def test_refresh_returns_new_tokens_and_rotates(client, auth):
    alice = auth.user()
    response = client.post("/api/user/refresh", headers=bearer(alice.refresh_token))
    assert response.status_code == 200
    tokens = response.get_json()
    assert set(tokens) == {"access_token", "token", "refresh_token", "expires_in"}
    assert tokens["token"] == tokens["access_token"]
    assert tokens["refresh_token"] != alice.refresh_token
    access = claims_of(tokens["access_token"])
    assert tokens["expires_in"] == access["exp"] - access["iat"]
    assert access["sub"] == alice.id and access["type"] == "access"
    assert client.get("/api/user/me", headers=bearer(tokens["access_token"])).status_code == 200
    again = client.post("/api/user/refresh", json={"refresh_token": tokens["refresh_token"]})
    assert again.status_code == 200


def test_refresh_body_token_wins_over_an_access_token_in_the_header(client, auth):
    alice = auth.user()
    response = client.post("/api/user/refresh", headers=alice.headers,
                           json={"refresh_token": alice.refresh_token})
    assert response.status_code == 200


def test_rotated_refresh_token_reused_revokes_the_whole_login(client, auth):
    alice = auth.user()
    other_login = auth.login(alice.email)
    rotated = client.post("/api/user/refresh", headers=bearer(alice.refresh_token)).get_json()
    reuse = client.post("/api/user/refresh", headers=bearer(alice.refresh_token))
    error = assert_error(reuse, 401, "token_revoked")
    assert "revoked" in error["message"]
    # Every token of that login is dead: the new ones and the original access token.
    assert_error(client.post("/api/user/refresh", headers=bearer(rotated["refresh_token"])),
                 401, "token_revoked")
    assert_error(client.get("/api/user/me", headers=bearer(rotated["access_token"])),
                 401, "token_revoked")
    assert_error(client.get("/api/user/me", headers=alice.headers), 401, "token_revoked")
    # Another login of the same user is untouched.
    assert client.get("/api/user/me", headers=bearer(other_login["token"])).status_code == 200
    assert client.post("/api/user/refresh",
                       headers=bearer(other_login["refresh_token"])).status_code == 200


def test_reuse_detection_disconnects_that_logins_sockets(client, auth, socket_client):
    alice = auth.user()
    other = auth.login(alice.email)
    rotated = client.post("/api/user/refresh", headers=bearer(alice.refresh_token)).get_json()
    stolen_session = socket_client(auth={"token": rotated["access_token"]})
    other_session = socket_client(auth={"token": other["token"]})
    assert stolen_session.is_connected() and other_session.is_connected()
    assert_error(client.post("/api/user/refresh", headers=bearer(alice.refresh_token)),
                 401, "token_revoked")
    assert not stolen_session.is_connected()
    assert other_session.is_connected()


def test_rotation_keeps_the_login_alive_as_long_as_its_newest_refresh_token(client, auth):
    alice = auth.user()
    session_id = claims_of(alice.refresh_token)["sid"]
    time.sleep(1.1)  # the new refresh token's exp is a whole second later
    new = client.post("/api/user/refresh", headers=bearer(alice.refresh_token)).get_json()
    session = mongo.db.sessions.find_one({"_id": session_id})
    expires_at = session["expires_at"]
    if expires_at.tzinfo is None:
        expires_at = expires_at.replace(tzinfo=timezone.utc)
    new_exp = datetime.fromtimestamp(claims_of(new["refresh_token"])["exp"], tz=timezone.utc)
    assert expires_at >= new_exp


# --- logout ----------------------------------------------------------------------------

def test_logout_revokes_the_access_token_and_its_refresh_token(client, auth):
    alice = auth.user()
    other = auth.login(alice.email)
    response = client.post("/api/user/logout", headers=alice.headers)
    assert response.status_code == 200
    assert response.get_json() == {"message": "logged out"}
    assert_error(client.get("/api/user/me", headers=alice.headers), 401, "token_revoked")
    assert_error(client.post("/api/user/refresh", headers=bearer(alice.refresh_token)),
                 401, "token_revoked")
    assert_error(client.post("/api/user/logout", headers=alice.headers), 401, "token_revoked")
    assert client.get("/api/user/me", headers=bearer(other["token"])).status_code == 200


def test_logout_with_a_refresh_token_in_the_body_revokes_that_login_too(client, auth):
    alice = auth.user()
    second = auth.login(alice.email)
    response = client.post("/api/user/logout", headers=alice.headers,
                           json={"refresh_token": second["refresh_token"]})
    assert response.status_code == 200
    assert_error(client.post("/api/user/refresh", headers=bearer(second["refresh_token"])),
                 401, "token_revoked")
    assert_error(client.get("/api/user/me", headers=bearer(second["token"])), 401, "token_revoked")


def test_logout_with_an_expired_refresh_token_still_logs_out(client, auth):
    alice = auth.user()
    response = client.post("/api/user/logout", headers=alice.headers,
                           json={"refresh_token": expired(alice.refresh_token)})
    assert response.status_code == 200
    assert_error(client.get("/api/user/me", headers=alice.headers), 401, "token_revoked")


def test_logout_refuses_another_users_refresh_token(client, auth):
    alice, bob = auth.user(), auth.user()
    error = assert_error(client.post("/api/user/logout", headers=alice.headers,
                                     json={"refresh_token": bob.refresh_token}),
                         422, "validation_error")
    assert list(error["details"]) == ["refresh_token"]
    assert client.post("/api/user/refresh", headers=bearer(bob.refresh_token)).status_code == 200


def test_logout_closes_that_logins_sockets_only(client, auth, socket_client):
    alice = auth.user()
    other = auth.login(alice.email)
    this_login, other_login = socket_client(alice), socket_client(auth={"token": other["token"]})
    assert this_login.is_connected() and other_login.is_connected()
    assert client.post("/api/user/logout", headers=alice.headers).status_code == 200
    assert not this_login.is_connected()
    assert other_login.is_connected()


@pytest.mark.parametrize("path", ["/api/user/logout", "/api/user/logout-all"])
def test_logout_routes_need_an_access_token(client, path):
    assert_error(client.post(path), 401, "unauthorized")


def test_logout_all_revokes_every_login_and_disconnects_every_socket(client, auth, socket_client):
    alice, bob = auth.user(), auth.user()
    logins = [{"token": alice.token, "refresh_token": alice.refresh_token},
              auth.login(alice.email), auth.login(alice.email)]
    sockets = [socket_client(auth={"token": login["token"]}) for login in logins]
    bobs_socket = socket_client(bob)
    assert all(s.is_connected() for s in sockets) and bobs_socket.is_connected()

    response = client.post("/api/user/logout-all", headers=bearer(logins[1]["token"]))
    assert response.status_code == 200
    assert response.get_json() == {"message": "logged out everywhere"}
    for login in logins:
        assert_error(client.get("/api/user/me", headers=bearer(login["token"])),
                     401, "token_revoked")
        assert_error(client.post("/api/user/refresh", headers=bearer(login["refresh_token"])),
                     401, "token_revoked")
    assert not any(s.is_connected() for s in sockets)
    assert bobs_socket.is_connected()
    assert client.get("/api/user/me", headers=bob.headers).status_code == 200
    # A fresh login afterwards works.
    fresh = auth.login(alice.email)
    assert client.get("/api/user/me", headers=bearer(fresh["token"])).status_code == 200
    assert socket_client(auth={"token": fresh["token"]}).is_connected()


# --- socket connect (in-process test client: refused = not connected) ---------------------

def test_socket_connects_with_a_valid_access_token(auth, socket_client):
    assert socket_client(auth.user()).is_connected()


@pytest.mark.parametrize("kind", FORGERIES)
def test_socket_connect_refuses_forged_and_expired_tokens(auth, socket_client, kind):
    alice = auth.user()
    forge, _ = FORGERIES[kind]
    assert not socket_client(auth={"token": forge(alice.token)}).is_connected()


@pytest.mark.parametrize("how", ["auth", "access_token header", "authorization header", "query"])
def test_socket_connect_refuses_revoked_and_refresh_tokens_in_every_place(
        client, auth, socket_client, how):
    alice = auth.user()

    def connect(token):
        return socket_client(**{
            "auth": {"auth": {"token": token}},
            "access_token header": {"headers": {"access_token": token}},
            "authorization header": {"headers": {"Authorization": f"Bearer {token}"}},
            "query": {"query_string": f"token={token}"},
        }[how])

    assert not connect(alice.refresh_token).is_connected()
    assert connect(alice.token).is_connected()
    client.post("/api/user/logout", headers=alice.headers)
    assert not connect(alice.token).is_connected()


def test_socket_connect_refuses_a_missing_token(socket_client):
    assert not socket_client(auth={}).is_connected()
    assert not socket_client(auth={"token": ""}).is_connected()


# --- socket connect over a real server: the refusal names the code -------------------------

def live_login(server, name):
    email = f"{name}-{time.monotonic_ns()}@example.com"
    username = f"{name}{time.monotonic_ns() % 10**9}"
    r = requests.post(server.url + "/api/user/register", timeout=10,
                      json={"username": username, "email": email, "password": "password-123"})
    assert r.status_code == 201, r.text
    r = requests.post(server.url + "/api/user/login", timeout=10,
                      json={"email": email, "password": "password-123"})
    assert r.status_code == 200, r.text
    return r.json()


def refusal(server, token):
    """The data of the Socket.IO CONNECT refusal, or "connected"."""
    sio = socketio_client.Client(reconnection=False)
    errors = []
    sio.on("connect_error", lambda data=None: errors.append(data))
    try:
        sio.connect(server.url, auth={"token": token} if token is not None else None,
                    transports=["websocket"], wait_timeout=10)
    except socketio_client.exceptions.ConnectionError:
        return errors[0] if errors else "refused without data"
    sio.disconnect()
    return "connected"


@pytest.mark.live
def test_live_socket_refusals_carry_the_error_code(live_server):
    secret = live_server.env["secretKey"]
    login = live_login(live_server, "sock")
    assert refusal(live_server, login["token"]) == "connected"

    cases = {
        "missing": (None, "unauthorized"),
        "wrong signature": (wrong_signature(login["token"]), "unauthorized"),
        "alg none": (alg_none(login["token"]), "unauthorized"),
        "refresh token": (login["refresh_token"], "unauthorized"),
        "expired": (expired(login["token"], secret), "token_expired"),
    }
    for name, (token, code) in cases.items():
        assert refusal(live_server, token) == {"message": code, "data": {"code": code}}, name

    r = requests.post(live_server.url + "/api/user/logout", timeout=10,
                      headers=bearer(login["token"]))
    assert r.status_code == 200
    assert refusal(live_server, login["token"]) == {
        "message": "token_revoked", "data": {"code": "token_revoked"}}
