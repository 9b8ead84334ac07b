"""`/` serves the chat page: outside the API, pinned to the socket.io-client that tests/js runs."""
import base64
import hashlib
import json
from pathlib import Path

JS_DIR = Path(__file__).resolve().parent / "js"


def test_root_serves_the_chat_page_with_a_policy(client):
    page = client.get("/")
    assert page.status_code == 200 and page.mimetype == "text/html"
    policy = page.headers["Content-Security-Policy"]
    assert "script-src 'self' https://cdn.socket.io" in policy
    assert "connect-src 'self'" in policy and "frame-ancestors 'none'" in policy
    assert page.headers["X-Content-Type-Options"] == "nosniff"
    for asset, mimetype in (("/static/chat.js", "text/javascript"), ("/static/chat.css", "text/css")):
        response = client.get(asset)
        assert response.status_code == 200 and response.mimetype == mimetype
        response.close()
    page.close()


def test_the_page_loads_the_pinned_client_by_hash(client):
    """The CDN tag names the version tests/js pins, with that very file's sha384."""
    lock = json.loads((JS_DIR / "package-lock.json").read_text())
    version = lock["packages"]["node_modules/socket.io-client"]["version"]
    html = client.get("/").get_data(as_text=True)
    assert f'src="https://cdn.socket.io/{version}/socket.io.min.js"' in html
    assert 'crossorigin="anonymous"' in html
    dist = JS_DIR / "node_modules" / "socket.io-client" / "dist" / "socket.io.min.js"
    if dist.is_file():  # installed by `make test` (npm ci)
        digest = base64.b64encode(hashlib.sha384(dist.read_bytes()).digest()).decode()
        assert f'integrity="sha384-{digest}"' in html


def test_the_page_is_not_in_the_api_document(client):
    paths = client.get("/api/openapi.json").get_json()["paths"]
    assert "/" not in paths and not any(p.startswith("/static") for p in paths)


def test_unknown_pages_keep_the_json_error_envelope(client):
    response = client.get("/static/nope.js")
    assert response.status_code == 404
    assert response.get_json()["error"]["code"] == "not_found"
    assert client.post("/", json={}).get_json()["error"]["code"] == "method_not_allowed"
