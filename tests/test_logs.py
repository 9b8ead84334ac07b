"""Log lines: request ids (X-Request-Id), LOG_FORMAT=json read back line by line from a live
server, ACCESS_LOG lines without secrets, and no forged line from hostile input."""
import json
import logging
import sys

import pytest
import requests
import socketio

from chatapp import logs
from tests.live import LiveServer, database_env, http_account

FORGED = "hi\n2026-01-01 00:00:00,000 CRITICAL chatapp: forged \x1b[31mred\x1b[0m\r\u2028x"


@pytest.mark.parametrize("incoming", ["abc-123", "A.b_c-9", "x" * 64])
def test_a_valid_incoming_request_id_is_kept(client, incoming):
    response = client.get("/healthz", headers={"X-Request-Id": incoming})
    assert response.headers["X-Request-Id"] == incoming


@pytest.mark.parametrize("incoming", ["", "x" * 65, "has space", "semi;colon", "é", "a/b"])
def test_an_invalid_request_id_is_replaced(client, incoming):
    response = client.get("/healthz", headers={"X-Request-Id": incoming})
    assert response.headers["X-Request-Id"] not in ("", incoming)
    assert logs.REQUEST_ID.fullmatch(response.headers["X-Request-Id"])


def test_errors_and_unknown_paths_carry_a_request_id(client):
    assert client.get("/no/such/path").headers["X-Request-Id"]
    assert client.post("/api/user/login", data="x", content_type="text/plain").headers[
        "X-Request-Id"]


def record(message, *args, exc=False):
    exc_info = None
    if exc:
        try:
            raise ValueError(FORGED)
        except ValueError:
            exc_info = sys.exc_info()
    made = logging.LogRecord("chatapp.test", logging.WARNING, __file__, 1, message, args, exc_info)
    logs.RequestIdFilter().filter(made)
    return made


@pytest.mark.parametrize("exc", [False, True])
def test_text_format_cannot_be_forged(exc):
    line = logs.TextFormatter(logs.TEXT_FORMAT).format(
        record("user %s said %s", "mallory\nadmin", FORGED, exc=exc))
    first, *rest = line.split("\n")
    assert "\x1b" not in line and "\r" not in line and "\u2028" not in line
    assert "\\x1b[31m" in first and "forged" in first  # escaped, on the record's own line
    assert all(part.startswith("  ") for part in rest)  # traceback lines: never column 0


@pytest.mark.parametrize("exc", [False, True])
def test_json_format_is_one_object_a_line(exc):
    line = logs.json_formatter().format(record("user %s said %s", "mallory", FORGED, exc=exc))
    assert "\n" not in line and "\x1b" not in line and "\u2028" not in line
    body = json.loads(line)
    assert body["message"] == f"user mallory said {FORGED}"
    assert body["level"] == "WARNING" and body["logger"] == "chatapp.test"
    assert "request_id" in body


@pytest.mark.live
def _is_json_object(line):
    try:
        return isinstance(json.loads(line), dict)
    except ValueError:
        return False


def test_a_live_server_logs_json_with_request_ids_and_no_secrets(tmp_path):
    """LOG_FORMAT=json, ACCESS_LOG=1: every line the server logs is one JSON object."""
    env = {"LOG_FORMAT": "json", "ACCESS_LOG": "1", "LOG_LEVEL": "INFO", **database_env("logs")}
    log_path = tmp_path / "server.log"
    with LiveServer(env=env, log_path=log_path) as server:
        alice = http_account(server.url, "logsalice")
        bob = http_account(server.url, "logsbob")
        token = alice["access_token"]
        content = "secret content\n{\"level\": \"CRITICAL\"} \x1b[31m"
        sent = requests.post(server.url + "/api/chat/send", timeout=10,
                             headers={"Authorization": f"Bearer {token}",
                                      "X-Request-Id": "trace-me.42"},
                             json={"receiver": bob["userId"], "content": content})
        assert sent.status_code == 201 and sent.headers["X-Request-Id"] == "trace-me.42"
        sio = socketio.Client(reconnection=False)
        sio.connect(server.url, auth={"token": token}, transports=["polling"], wait_timeout=5)
        assert sio.call("chat message", {"receiver": bob["userId"], "content": content},
                        timeout=10)["ok"]
        sio.disconnect()
    text = log_path.read_text()
    lines = [line for line in text.splitlines()
             if line.strip() and not line.startswith("chatapp: serving on")]  # wsgi.py's print
    not_json = [line for line in lines if not _is_json_object(line)]
    assert not not_json, not_json[:5]  # one JSON object a line
    records = [json.loads(line) for line in lines]
    access = [r for r in records if r["logger"] == "chatapp.access"]
    send = [r for r in access if r["route"] == "/api/chat/send"]
    assert len(send) == 1
    assert send[0]["request_id"] == "trace-me.42" and send[0]["status"] == 201
    assert send[0]["method"] == "POST" and send[0]["user_id"] == alice["userId"]
    assert isinstance(send[0]["duration_ms"], float)
    assert any(r["logger"] == "eventlet.wsgi" for r in records)  # the server's own lines too
    assert {r["route"] for r in access} >= {"/api/user/register", "/api/user/login",
                                            "/healthz"}
    for secret in (token, alice["refresh_token"], "correct horse battery", "secret content"):
        assert secret not in text
