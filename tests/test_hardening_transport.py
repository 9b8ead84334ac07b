"""Hardening at the transport (issue 11: items 1, 3, 12 and 13's oversized header).

Over live servers on 127.0.0.1, `python wsgi.py` (eventlet) and gunicorn with
deploy/gunicorn.conf.py, with short deadlines so that each test takes seconds:
- a connection that has not authenticated is closed after SOCKET_CONNECT_TIMEOUT (a bare
  Engine.IO WebSocket, one whose CONNECT was refused, one whose session ended, a polling
  session), and an address holds at most MAX_PENDING_CONNECTIONS_PER_ADDRESS of them: a
  flood of them no longer takes the server's connection pool (/healthz keeps answering);
- request headers must arrive within REQUEST_HEADER_TIMEOUT, in all (a client dribbling a
  byte at a time is closed as surely as a silent one);
- binary Socket.IO packets close that connection before anything is buffered;
- a chunked JSON body is read under eventlet as under gunicorn (413 beyond MAX_CONTENT_LENGTH);
- headers too large get the contract's envelope (431), not eventlet's bare 400.
"""
import json
import socket
import sys
import time
from pathlib import Path

import pytest
import requests
import websocket

from tests.live import LiveServer, database_env, http_account
from tests.sio_wire import WireClient

pytestmark = pytest.mark.live

GUNICORN = [sys.executable, "-m", "gunicorn", "-c", "deploy/gunicorn.conf.py", "wsgi:app"]
SHORT = {"SOCKET_CONNECT_TIMEOUT": "1", "REQUEST_HEADER_TIMEOUT": "1", "LOG_LEVEL": "WARNING"}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """`python wsgi.py` with one-second deadlines."""
    log = tmp_path_factory.mktemp("eventlet") / "server.log"
    with LiveServer(env={**SHORT, **database_env("transport")}, log_path=log) as live:
        yield live


@pytest.fixture(scope="module")
def gunicorn_server(tmp_path_factory):
    """gunicorn (eventlet worker, deploy/gunicorn.conf.py) with the same deadlines."""
    env = {**SHORT, "ASYNC_MODE": "eventlet", "ACCESS_LOG": "0",
           **database_env("transport_gunicorn")}
    with LiveServer(env=env, command=GUNICORN,
                    log_path=tmp_path_factory.mktemp("gunicorn") / "server.log") as live:
        yield live


def engineio_socket(url):
    """A WebSocket that opens Engine.IO (reads its OPEN packet) and sends nothing more."""
    ws = websocket.create_connection(url.replace("http://", "ws://", 1)
                                     + "/socket.io/?EIO=4&transport=websocket", timeout=5)
    opening = ws.recv()
    assert opening.startswith("0"), opening
    return ws


def seconds_until_closed(ws, limit):
    """Read `ws` (answering pings, as a live client would) until the server closes it: the
    seconds that took, or None if it was still open after `limit`."""
    started = time.monotonic()
    ws.settimeout(0.1)
    while time.monotonic() - started < limit:
        try:
            frame = ws.recv()
        except websocket.WebSocketTimeoutException:
            continue
        except (websocket.WebSocketConnectionClosedException, OSError):
            return time.monotonic() - started
        if frame == "2":
            ws.send("3")
        elif frame in ("", "1"):  # a close frame, or Engine.IO's CLOSE packet
            return time.monotonic() - started
    return None


def tcp_seconds_until_closed(conn, limit, dribble=None):
    """Wait until the server closes the TCP connection `conn` (sending a byte of `dribble`
    every 0.2 s meanwhile, if given): the seconds that took, or None after `limit`."""
    started = time.monotonic()
    conn.settimeout(0.2)
    while time.monotonic() - started < limit:
        try:
            if dribble:
                conn.sendall(dribble[:1])
                dribble = dribble[1:]
            if conn.recv(65536) == b"":
                return time.monotonic() - started
        except socket.timeout:
            continue
        except OSError:  # reset, or a broken pipe while dribbling: closed all the same
            return time.monotonic() - started
    return None


def raw_request(port, data, timeout=5):
    """Send bytes as they are; the answer's status and JSON body (the server closes)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as conn:
        conn.sendall(data)
        answer = b""
        while chunk := conn.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    assert b"content-type: application/json" in head.lower(), head
    return status, json.loads(body)


def full_log(server):
    return Path(server.log_path).read_text(errors="replace")


# --- 1. connections that have not authenticated ------------------------------------------------

def test_connections_that_do_not_authenticate_are_closed_after_socket_connect_timeout(server):
    account = http_account(server.url, f"late{time.monotonic_ns()}")
    bare = engineio_socket(server.url)
    refused = engineio_socket(server.url)  # its CONNECT is refused: the clock keeps running
    refused.send('40{"token":"junk"}')
    assert refused.recv().startswith("44")
    left = WireClient(server.url, account["access_token"]).connect()
    left.send_raw("41")  # its session ends, its transport stays: pending again
    polling = requests.get(server.url + "/socket.io/?EIO=4&transport=polling", timeout=5)
    sid = json.loads(polling.text[1:])["sid"]
    staying = WireClient(server.url, account["access_token"]).connect()

    for ws in (bare, refused):
        took = seconds_until_closed(ws, limit=5)
        assert took is not None and took < 2.5, took
    assert left.wait_closed(timeout=3), "a socket whose session ended kept its transport"
    gone = requests.post(server.url + f"/socket.io/?EIO=4&transport=polling&sid={sid}", data="3",
                         timeout=5)
    assert gone.status_code == 400, gone.text  # the polling session is no more

    # An authenticated socket outlives both deadlines (the app's time is not the headers').
    assert staying.connected
    ack = staying.call("chat message", {"receiver": account["userId"], "content": "still here"})
    assert ack["ok"] is True, ack
    staying.close()


def test_one_address_holds_a_bounded_number_of_pending_connections(tmp_path):
    """A pool of 40 connections; one address tries to hold them all with WebSockets that never
    authenticate. Before: it got all 40 and /healthz stopped answering. Now 10, the rest 429."""
    env = {"MAX_CONNECTIONS": "40", "MAX_PENDING_CONNECTIONS_PER_ADDRESS": "10",
           "SOCKET_CONNECT_TIMEOUT": "30", "LOG_LEVEL": "WARNING",
           **database_env("pending_cap")}
    with LiveServer(env=env, log_path=tmp_path / "server.log") as live:
        account = http_account(live.url, f"capped{time.monotonic_ns()}")
        # Authenticated sockets are not pending: more than the cap is fine.
        chatting = [WireClient(live.url, account["access_token"]).connect() for _ in range(12)]
        held, statuses = [], []
        for _ in range(40 - len(chatting)):
            try:
                held.append(engineio_socket(live.url))
            except websocket.WebSocketBadStatusException as exc:
                statuses.append(exc.status_code)
                error = json.loads(exc.resp_body)
                assert error["error"]["code"] == "rate_limited", error
                assert exc.resp_headers.get("retry-after") == "30"
        print(f"\none address, 28 bare WebSockets: {len(held)} held, {len(statuses)} refused")
        assert len(held) == 10 and statuses == [429] * 18
        polling = requests.get(live.url + "/socket.io/?EIO=4&transport=polling", timeout=5)
        assert polling.status_code == 429 and polling.json()["error"]["code"] == "rate_limited"
        assert requests.get(live.url + "/healthz", timeout=3).status_code == 200
        ack = chatting[0].call("chat message", {"receiver": account["userId"], "content": "ok"})
        assert ack["ok"] is True, ack
        # Room again once pending connections close.
        for ws in held[:3]:
            ws.close()
        deadline = time.monotonic() + 5
        while True:
            try:
                chatting.append(WireClient(live.url, account["access_token"]).connect())
                break
            except websocket.WebSocketBadStatusException:
                assert time.monotonic() < deadline, "closed pending connections still counted"
                time.sleep(0.1)
        for client in chatting:
            client.close()
        for ws in held[3:]:
            ws.close()


def test_unauthenticated_websocket_is_closed_under_gunicorn_too(gunicorn_server):
    took = seconds_until_closed(engineio_socket(gunicorn_server.url), limit=5)
    assert took is not None and took < 2.5, took


# --- 1. request headers have a deadline -------------------------------------------------------

@pytest.mark.parametrize("dribble", [None, b"X-Slow: " + b"a" * 100],
                         ids=["half-sent-headers", "a-byte-every-0.2s"])
@pytest.mark.parametrize("which", ["eventlet", "gunicorn"])
def test_request_headers_must_arrive_within_request_header_timeout(request, which, dribble):
    live = request.getfixturevalue("server" if which == "eventlet" else "gunicorn_server")
    silent = socket.create_connection(("127.0.0.1", live.port), timeout=5)  # not even a line
    half = socket.create_connection(("127.0.0.1", live.port), timeout=5)
    half.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")
    took = [tcp_seconds_until_closed(half, limit=5, dribble=dribble),
            tcp_seconds_until_closed(silent, limit=5)]
    assert all(t is not None and t < 3 for t in took), took
    half.close()
    silent.close()
    # A complete request is served as ever.
    assert requests.get(live.url + "/healthz", timeout=5).status_code == 200


# --- 3. binary Socket.IO packets --------------------------------------------------------------

# Engine.IO frames: "4" (MESSAGE) + a Socket.IO packet, "5" BINARY_EVENT / "6" BINARY_ACK with
# its count of attachments; or a binary frame, which can only be an attachment.
BINARY = {
    "binary-event": '451-["chat message",{"_placeholder":true,"num":0}]',
    "binary-event-9999999999-attachments": '459999999999-["chat message",{"_placeholder":true,'
                                           '"num":0}]',
    "binary-ack": '461-7[{"_placeholder":true,"num":0}]',
    "binary-frame": b"x" * 1000,
}


@pytest.mark.parametrize("packet", list(BINARY.values()), ids=list(BINARY))
def test_binary_packet_closes_that_connection_only(server, packet):
    """Closed on the packet's header: before, the header was kept and every binary frame it
    announced buffered until the count was reached."""
    sender, receiver = (http_account(server.url, f"bin{n}{time.monotonic_ns()}") for n in "ab")
    attacker = WireClient(server.url, sender["access_token"]).connect()
    bystander = WireClient(server.url, sender["access_token"]).connect()
    ear = WireClient(server.url, receiver["access_token"]).connect()
    before = len(full_log(server))
    if isinstance(packet, bytes):
        attacker._ws.send_binary(packet)
    else:
        attacker.send_raw(packet)
    assert attacker.wait_closed(timeout=3), "a binary packet's header was kept, its connection too"
    ack = bystander.call("chat message", {"receiver": receiver["userId"], "content": "after"})
    assert ack["ok"] is True, ack
    assert ear.wait_for(lambda c: "after" in [m["content"] for m in c.received()], timeout=5)
    new_log = full_log(server)[before:]
    assert "Traceback" not in new_log and " ERROR " not in new_log, new_log
    for client in (bystander, ear):
        client.close()


# --- 12. chunked request bodies ---------------------------------------------------------------

@pytest.mark.parametrize("which", ["eventlet", "gunicorn"])
def test_chunked_json_body_is_read(request, which):
    live = request.getfixturevalue("server" if which == "eventlet" else "gunicorn_server")
    account = http_account(live.url, f"chunk{which}{time.monotonic_ns()}")
    headers = {"Authorization": f"Bearer {account['access_token']}",
               "Content-Type": "application/json"}

    def chunks():  # a generator: requests sends it with Transfer-Encoding: chunked
        yield b'{"receiver": "%s", ' % account["userId"].encode()
        yield b'"content": "sent in chunks"}'

    sent = requests.post(live.url + "/api/chat/send", data=chunks(), headers=headers, timeout=10)
    assert sent.status_code == 201, sent.text
    assert sent.json()["message"]["content"] == "sent in chunks"

    def too_much():  # MAX_CONTENT_LENGTH (1 MiB) still holds for a chunked body
        yield b'{"receiver": "%s", "content": "' % account["userId"].encode()
        for _ in range(20):
            yield b"y" * 65536
        yield b'"}'

    try:
        refused = requests.post(live.url + "/api/chat/send", data=too_much(), headers=headers,
                                timeout=10)
    except requests.ConnectionError:  # the server may stop reading before the client is done
        return
    assert refused.status_code == 413, refused.text[:300]
    assert refused.json()["error"]["code"] == "payload_too_large"


# --- 13. requests refused before the app sees them ------------------------------------------

REFUSED = {
    "header-line-over-8k": (b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 9000
                            + b"\r\n\r\n", 431, "request_header_fields_too_large"),
    "headers-over-64k": (b"GET /healthz HTTP/1.1\r\nHost: x\r\n"
                         + b"".join(b"X-H%d: %s\r\n" % (n, b"a" * 8000) for n in range(9))
                         + b"\r\n", 431, "request_header_fields_too_large"),
    "over-100-headers": (b"GET /healthz HTTP/1.1\r\nHost: x\r\n"
                         + b"".join(b"X-H%d: a\r\n" % n for n in range(120)) + b"\r\n",
                         431, "request_header_fields_too_large"),
    "request-line-over-8k": (b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414,
                             "uri_too_long"),
    "malformed-request-line": (b"NONSENSE\r\nHost: x\r\n\r\n", 400, "bad_request"),
}


@pytest.mark.parametrize("data, status, code", list(REFUSED.values()), ids=list(REFUSED))
def test_request_refused_before_the_app_gets_the_error_envelope(server, data, status, code):
    got_status, body = raw_request(server.port, data)
    assert (got_status, set(body), body["error"]["code"]) == (status, {"error"}, code), body
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    assert requests.get(server.url + "/healthz", timeout=5).status_code == 200
