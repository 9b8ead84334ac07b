"""Promise 7: clock and token edges, over a live server whose access tokens last 4 seconds.

- a token that expires while its socket is connected: the server closes the socket at
  `exp`, though it sends nothing, and nothing sent after reaches it; reconnecting with that
  token is refused (an event racing the close is answered `token_expired`: test_chat_sockets);
- a refresh during a live socket: the socket keeps working until its own token expires,
  and a new connection with the refreshed token works;
- logout on one device closes that device's sockets only: the other device stays
  connected and keeps receiving; the logged-out token is refused on REST and at connect.
"""
import base64
import json
import time
from pathlib import Path

import pytest
import requests

from tests.live import LiveServer, database_env
from tests.sio_wire import ConnectRefused, WireClient

PASSWORD = "correct horse battery"
LIFETIME = 4  # ACCESS_TOKEN_EXPIRES of this module's server, seconds

pytestmark = pytest.mark.live


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    log = tmp_path_factory.mktemp("tokens") / "server.log"
    env = {"ACCESS_TOKEN_EXPIRES": str(LIFETIME), "LOG_LEVEL": "WARNING", **database_env("tokens")}
    with LiveServer(env=env, log_path=log) as live:
        yield live
    assert "Traceback" not in Path(log).read_text(errors="replace")


def register(url, name):
    email = f"{name}{time.monotonic_ns()}@example.com"
    response = requests.post(url + "/api/user/register", timeout=10, json={
        "username": f"{name}{time.monotonic_ns() % 10**9}", "email": email, "password": PASSWORD})
    assert response.status_code == 201, response.text
    return email


def login(url, email):
    response = requests.post(url + "/api/user/login", timeout=10,
                             json={"email": email, "password": PASSWORD})
    assert response.status_code == 200, response.text
    return response.json()


def expiry(token):
    """The token's `exp` claim (read, not verified: the server verifies)."""
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))["exp"]


def sleep_until(moment):
    time.sleep(max(0.0, moment - time.time()))


def send(client, receiver, content):
    return client.call("chat message", {"receiver": receiver, "content": content})


def test_a_silent_socket_is_closed_when_its_token_expires(server):
    """A stolen token reads nothing past its `exp`: the server closes the socket then, though
    it never sends anything, and a message sent to its user after that never reaches it."""
    url = server.url
    me = login(url, register(url, "expiring"))
    peer = login(url, register(url, "sender"))
    socket = WireClient(url, me["access_token"]).connect()
    peer_socket = WireClient(url, peer["access_token"]).connect()
    assert send(peer_socket, me["userId"], "while valid")["ok"] is True
    assert socket.wait_for(lambda c: len(c.received()) == 1)

    expires = expiry(me["access_token"])
    assert socket.wait_closed(timeout=expires - time.time() + 3), \
        "the server kept a silent socket whose token expired"
    closed_after = time.time() - expires
    assert closed_after > -0.05, "closed before its token expired"
    print(f"\nsilent socket closed {closed_after:.2f}s after its token's exp")
    fresh = login(url, peer["user"]["email"])  # the peer's own token has expired too
    response = requests.post(url + "/api/chat/send", timeout=10, json={
        "receiver": me["userId"], "content": "after expiry"},
        headers={"Authorization": f"Bearer {fresh['access_token']}"})
    assert response.status_code == 201, response.text
    time.sleep(0.5)
    assert [m["content"] for m in socket.received()] == ["while valid"]
    with pytest.raises(ConnectRefused) as refused:
        WireClient(url, me["access_token"]).connect()
    assert refused.value.data == {"message": "token_expired", "data": {"code": "token_expired"}}


def test_refresh_during_a_live_socket(server):
    url = server.url
    first = login(url, register(url, "refresher"))
    me = first["userId"]
    old_socket = WireClient(url, first["access_token"]).connect()
    expires = expiry(first["access_token"])

    sleep_until(expires - 1.5)
    response = requests.post(url + "/api/user/refresh", timeout=10,
                             headers={"Authorization": f"Bearer {first['refresh_token']}"})
    assert response.status_code == 200, response.text
    refreshed = response.json()
    assert expiry(refreshed["access_token"]) > expires
    # The socket opened with the old token works until that token's own expiry, when the
    # server closes it...
    assert send(old_socket, me, "refreshed meanwhile")["ok"] is True
    assert old_socket.wait_closed(timeout=expires - time.time() + 3)
    assert time.time() > expires - 0.05
    # ...and a new connection with the refreshed token carries on.
    assert time.time() < expiry(refreshed["access_token"]) - 0.5, "the machine is too slow for this"
    new_socket = WireClient(url, refreshed["access_token"]).connect()
    ack = send(new_socket, me, "with the new token")
    assert ack["ok"] is True, ack
    new_socket.close()


def test_logout_on_one_device_closes_its_sockets_only(server):
    url = server.url
    email = register(url, "twodevices")
    phone, laptop = login(url, email), login(url, email)
    peer = login(url, register(url, "peer"))
    me = phone["userId"]
    phone_socket = WireClient(url, phone["access_token"]).connect()
    laptop_socket = WireClient(url, laptop["access_token"]).connect()
    peer_socket = WireClient(url, peer["access_token"]).connect()

    response = requests.post(url + "/api/user/logout", timeout=10, json={},
                             headers={"Authorization": f"Bearer {phone['access_token']}"})
    assert response.status_code == 200, response.text
    assert phone_socket.wait_closed(timeout=5), "the logged-out device's socket stayed open"
    assert laptop_socket.connected

    ack = send(peer_socket, me, "to the device still logged in")
    assert ack["ok"] is True, ack
    assert laptop_socket.wait_for(
        lambda c: [m["content"] for m in c.received()] == ["to the device still logged in"])
    assert phone_socket.received() == []

    revoked = requests.get(url + "/api/user/me", timeout=10,
                           headers={"Authorization": f"Bearer {phone['access_token']}"})
    assert revoked.status_code == 401 and revoked.json()["error"]["code"] == "token_revoked"
    with pytest.raises(ConnectRefused) as refused:
        WireClient(url, phone["access_token"]).connect()
    assert refused.value.code == "token_revoked"
    still = requests.get(url + "/api/user/me", timeout=10,
                         headers={"Authorization": f"Bearer {laptop['access_token']}"})
    assert still.status_code == 200
    assert send(laptop_socket, peer["userId"], "laptop still talks")["ok"] is True
    for client in (laptop_socket, peer_socket):
        client.close()
