"""The async runtimes operators choose with ASYNC_MODE, each serving real clients end to end.

eventlet is the default; gevent is the way forward on gunicorn >= 26 (which dropped the
eventlet worker). Each runtime starts as `python wsgi.py` and, for gevent, also under
gunicorn with deploy/gunicorn.conf.py; two python-socketio clients then exchange a
message (one upgraded from polling to WebSocket, one on WebSocket from the start).
"""
import queue
import sys

import pytest
import requests
import socketio

from tests.live import LiveServer, database_env, http_account

GUNICORN = [sys.executable, "-m", "gunicorn", "-c", "deploy/gunicorn.conf.py", "wsgi:app"]
RUNTIMES = {
    "eventlet-wsgi.py": ("eventlet", None),
    "gevent-wsgi.py": ("gevent", None),
    "gevent-gunicorn": ("gevent", GUNICORN),
}

pytestmark = pytest.mark.live


@pytest.fixture(scope="module", params=list(RUNTIMES))
def server(request, tmp_path_factory):
    mode, command = RUNTIMES[request.param]
    log = tmp_path_factory.mktemp("runtime") / f"{request.param}.log"
    with LiveServer(env={"ASYNC_MODE": mode, "GRACEFUL_TIMEOUT": "5", "ACCESS_LOG": "0",
                         **database_env("runtime")},
                    command=command, log_path=log) as live:
        live.runtime = request.param
        yield live


def account(server, name):
    name = f"{name}_{server.runtime.replace('.', '').replace('-', '_')}"
    body = http_account(server.url, name)
    return body["userId"], body["access_token"]


def connect(server, token, transports, received=None, **kwargs):
    client = socketio.Client(reconnection=False)
    if received is not None:
        client.on("chat message", received.put)
    client.connect(server.url, auth={"token": token}, transports=transports, wait_timeout=10,
                   **kwargs)
    return client


def test_two_clients_exchange_a_message(server):
    alice_id, alice_token = account(server, "alice")
    bob_id, bob_token = account(server, "bob")
    inbox = queue.Queue()
    alice = connect(server, alice_token, ["polling", "websocket"], inbox)
    bob = connect(server, bob_token, ["websocket"])
    try:
        ack = bob.call("chat message", {"receiver": alice_id, "content": f"via {server.runtime}"},
                       timeout=10)
        assert ack["ok"] is True
        assert inbox.get(timeout=10) == ack["message"]
        assert alice.transport() == "websocket"  # upgraded by the time a message arrived
        response = requests.post(server.url + "/api/chat/send", timeout=10,
                                 headers={"Authorization": f"Bearer {bob_token}"},
                                 json={"receiver": alice_id, "content": "and over REST"})
        assert response.status_code == 201
        assert inbox.get(timeout=10) == response.json()["message"]
    finally:
        alice.disconnect()
        bob.disconnect()


def test_a_connection_from_a_foreign_origin_is_refused(server):
    # Over polling: the WebSocket client library adds an Origin header of its own.
    _, token = account(server, "carol")
    with pytest.raises(socketio.exceptions.ConnectionError):
        connect(server, token, ["polling"], headers={"Origin": "https://evil.example"})
    same_origin = connect(server, token, ["polling"], headers={"Origin": server.url})
    same_origin.disconnect()
