"""`/` serves the chat page: outside the API, every script and stylesheet from chatapp itself,
its Socket.IO client the official one, pinned to the version tests/js runs."""
import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CLIENT_FILE = ROOT / "chatapp" / "static" / "vendor" / "socket.io.min.js"


def pinned_client(lock_dir):
    lock = json.loads((lock_dir / "package-lock.json").read_text())
    return lock["packages"]["node_modules/socket.io-client"]["version"]


def test_root_serves_the_chat_page_with_a_policy(client):
    page = client.get("/")
    assert page.status_code == 200 and page.mimetype == "text/html"
    policy = page.headers["Content-Security-Policy"]
    assert "script-src 'self';" in policy  # no other host
    assert "http" not in policy and "*" not in policy
    assert "connect-src 'self'" in policy and "frame-ancestors 'none'" in policy
    assert page.headers["X-Content-Type-Options"] == "nosniff"
    for asset, mimetype in (("/static/chat.js", "text/javascript"), ("/static/chat.css", "text/css")):
        response = client.get(asset)
        assert response.status_code == 200 and response.mimetype == mimetype
        response.close()
    page.close()


def test_the_page_loads_everything_from_chatapp(client):
    """Every script and stylesheet (and the icon) is a path on this server, never another host."""
    html = client.get("/").get_data(as_text=True)
    urls = re.findall(r'(?:src|href)="([^"]*)"', html)
    assert "/static/vendor/socket.io.min.js" in urls and "/static/chat.js" in urls
    for url in urls:
        assert url.startswith("data:") or (url.startswith("/") and not url.startswith("//")), url


def test_the_page_client_is_the_one_the_js_tests_run():
    """chatapp/vendor pins the socket.io-client version tests/js runs against the server."""
    assert pinned_client(ROOT / "chatapp" / "vendor") == pinned_client(ROOT / "tests" / "js")


def test_the_installed_client_is_served(client):
    """After `npm ci` in chatapp/vendor (make run with npm, make test), the pinned build is served."""
    if not CLIENT_FILE.is_file():
        pytest.skip("chatapp/static/vendor is not installed (make test installs it)")
    response = client.get("/static/vendor/socket.io.min.js")
    assert response.status_code == 200 and response.mimetype == "text/javascript"
    version = pinned_client(ROOT / "chatapp" / "vendor")
    assert f"Socket.IO v{version}\n" in response.get_data(as_text=True)[:100]
    response.close()


def test_the_page_is_not_in_the_api_document(client):
    paths = client.get("/api/openapi.json").get_json()["paths"]
    assert "/" not in paths and not any(p.startswith("/static") for p in paths)


def test_unknown_pages_keep_the_json_error_envelope(client):
    response = client.get("/static/nope.js")
    assert response.status_code == 404
    assert response.get_json()["error"]["code"] == "not_found"
    assert client.post("/", json={}).get_json()["error"]["code"] == "method_not_allowed"
