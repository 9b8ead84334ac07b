"""Issue 11, items 9 and 10: no token in access logs; security headers on every page and file.

9. An older client authenticates its Socket.IO handshake with `?token=<jwt>`, and access logs
   write the request line: run for real (`python wsgi.py` with ACCESS_LOG=1, gunicorn with
   deploy/gunicorn.conf.py and both its green workers), such handshakes must leave no JWT in
   any line the process writes, while the lines themselves are still there (masked).
10. `/` sent a CSP, nosniff and Referrer-Policy, but the same page at `/static/index.html`,
   its files and `/api/docs` sent none: every HTML response and static file has them now,
   `/api/docs` with a policy allowing exactly what Swagger UI loads.
"""
import base64
import hashlib
import re
import sys

import pytest
import requests
import socketio

from chatapp import create_app
from chatapp.token_masking import mask_tokens
from config import TestingConfig
from tests.live import LiveServer, database_env, http_account

GUNICORN = [sys.executable, "-m", "gunicorn", "-c", "deploy/gunicorn.conf.py", "wsgi:app"]
JWT = re.compile(r"eyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+")


# --- 10: headers on every HTML response and every static file ---------------------------

def directives(policy):
    out = {}
    for part in policy.split(";"):
        name, *values = part.split()
        out[name] = values
    return out


def static_files(app):
    yield "/static/index.html"
    yield "/static/chat.js"
    yield "/static/chat.css"
    docs_assets = app.config.get("OPENAPI_SWAGGER_UI_URL") or ""
    if docs_assets.startswith("/"):  # Swagger UI's files, when chatapp serves them itself
        yield docs_assets.rstrip("/") + "/swagger-ui.css"
        yield docs_assets.rstrip("/") + "/swagger-ui-bundle.js"


def assert_hardened(response):
    policy = directives(response.headers["Content-Security-Policy"])
    assert policy["frame-ancestors"] == ["'none'"]
    assert policy["base-uri"] == ["'none'"]
    assert policy.get("object-src", policy["default-src"]) == ["'none'"]  # no plugins
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Referrer-Policy"] == "no-referrer"
    assert response.headers["X-Frame-Options"] == "DENY"
    return policy


def test_the_page_has_the_same_policy_under_every_url(client, app):
    page = client.get("/")
    assert page.status_code == 200
    assert_hardened(page)
    for path in static_files(app):
        response = client.get(path)
        assert response.status_code == 200, path
        assert_hardened(response)
        assert response.headers["Content-Security-Policy"] == \
            page.headers["Content-Security-Policy"], path
        response.close()
    page.close()


def test_the_docs_page_may_run_only_what_it_loads(client, app):
    response = client.get("/api/docs")
    assert response.status_code == 200 and response.mimetype == "text/html"
    policy = assert_hardened(response)
    html = response.get_data(as_text=True)
    scripts = policy["script-src"]
    assert "'unsafe-inline'" not in scripts and "'unsafe-eval'" not in scripts
    assert "'unsafe-inline'" not in policy["style-src"]
    assert policy["default-src"] == ["'none'"] and policy["connect-src"] == ["'self'"]
    # Each inline script (Swagger UI's configuration) is allowed by its hash, nothing else is.
    inline = re.findall(r"<script>(.*?)</script>", html, re.S)
    assert inline
    hashes = {f"'sha256-{base64.b64encode(hashlib.sha256(s.encode()).digest()).decode()}'"
              for s in inline}
    assert {s for s in scripts if s.startswith("'sha256-")} == hashes
    # Every script and stylesheet the page names comes from the one source allowed.
    assets = app.config["OPENAPI_SWAGGER_UI_URL"]
    allowed = "'self'" if assets.startswith("/") else assets
    assert [s for s in scripts if not s.startswith("'sha256-")] == [allowed]
    assert policy["style-src"] == [allowed]
    for url in re.findall(r'(?:src|href)="([^"]+)"', html):
        assert url.startswith(assets), url


def test_docs_from_another_host_are_allowed_from_that_folder_only():
    cdn = "https://cdn.jsdelivr.net/npm/swagger-ui-dist@5.17.14/"
    app = create_app(TestingConfig, OPENAPI_SWAGGER_UI_URL=cdn)
    policy = directives(app.test_client().get("/api/docs").headers["Content-Security-Policy"])
    assert policy["script-src"][0] == cdn and policy["style-src"] == [cdn]


def test_any_other_html_response_gets_a_locked_policy():
    app = create_app(TestingConfig)
    app.add_url_rule("/an-html-page", "an_html_page", lambda: "<p>hello</p>")
    response = app.test_client().get("/an-html-page")
    assert response.mimetype == "text/html"
    assert assert_hardened(response)["default-src"] == ["'none'"]


def test_api_responses_are_left_alone(client):
    response = client.get("/healthz")
    assert response.mimetype == "application/json"
    assert "Content-Security-Policy" not in response.headers


# --- 9: no token in any log line --------------------------------------------------------

A_JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJl"


@pytest.mark.parametrize("line, expected", [
    (f'127.0.0.1 - - [..] "GET /socket.io/?EIO=4&transport=polling&token={A_JWT} HTTP/1.1" 200',
     '127.0.0.1 - - [..] "GET /socket.io/?EIO=4&transport=polling&token=*** HTTP/1.1" 200'),
    (f"GET /socket.io/?token={A_JWT}&EIO=4", "GET /socket.io/?token=***&EIO=4"),
    (f"EIO=4&access_token=abc&x=1", "EIO=4&access_token=***&x=1"),
    (f"Refresh_Token={A_JWT}", "Refresh_Token=***"),
    (f"/healthz?x={A_JWT}", "/healthz?x=***"),
    ("GET /api/chat/messages/1/2?limit=20&before=3 HTTP/1.1", None),
    ("tokens=3 retokenize", None),
])
def test_tokens_are_masked_in_a_line(line, expected):
    assert mask_tokens(line) == (line if expected is None else expected)


SERVERS = {
    "wsgi.py eventlet": (None, {"ACCESS_LOG": "1"}),
    "wsgi.py eventlet json": (None, {"ACCESS_LOG": "1", "LOG_FORMAT": "json"}),
    "gunicorn eventlet": (GUNICORN, {"ACCESS_LOG": "1", "ASYNC_MODE": "eventlet"}),
    "gunicorn gevent": (GUNICORN, {"ACCESS_LOG": "1", "ASYNC_MODE": "gevent"}),
}


@pytest.mark.live
@pytest.mark.timeout(120)
@pytest.mark.parametrize("server", list(SERVERS))
def test_a_token_in_the_handshake_url_reaches_no_log_line(server, tmp_path):
    command, env = SERVERS[server]
    log = tmp_path / "server.log"
    live = LiveServer(command=command, log_path=log,
                      env={**env, "LOG_LEVEL": "INFO", "GRACEFUL_TIMEOUT": "5",
                           **database_env("tokenlog")})
    with live:
        login = http_account(live.url, "tokenlog_" + re.sub(r"\W", "_", server))
        access, refresh = login["access_token"], login["refresh_token"]
        # The raw Engine.IO handshake an older client sends, a token in another parameter...
        handshake = requests.get(f"{live.url}/socket.io/?EIO=4&transport=polling&token={access}",
                                 timeout=10)
        assert handshake.status_code == 200
        requests.get(f"{live.url}/healthz?refresh_token={refresh}&x={access}", timeout=10)
        # ...and a whole Socket.IO session authenticated that way, upgraded to a WebSocket.
        client = socketio.Client(reconnection=False)
        client.connect(f"{live.url}?token={access}", transports=["polling", "websocket"],
                       wait_timeout=10)
        try:
            assert client.connected and client.get_sid() is not None
        finally:
            client.disconnect()
    text = log.read_text(errors="replace")
    leaked = [line for line in text.splitlines()
              if JWT.search(line) or access in line or refresh in line
              or access.rsplit(".", 1)[1] in line or refresh.rsplit(".", 1)[1] in line]
    assert leaked == []
    # The lines are still written, with the token masked.
    handshakes = [line for line in text.splitlines() if "/socket.io/" in line]
    assert handshakes and any("token=***" in line for line in handshakes), text[-2000:]
