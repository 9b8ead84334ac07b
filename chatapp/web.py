"""`/`: the browser chat page, a small demo of the API (chatapp/static: HTML, CSS, plain JS).

A plain Flask blueprint, not a flask-smorest one: the page is not part of the REST API
and stays out of the OpenAPI document. The files under /static are served by Flask itself.
Every HTML response and every static file gets a Content-Security-Policy (framing refused),
nosniff and no referrer, whichever URL serves it (`/`, `/static/index.html`, `/api/docs`).
"""
import base64
import hashlib
import re

from flask import Blueprint, current_app, request

blp = Blueprint("web", __name__)

# The page runs only scripts served by chatapp (its own and the pinned Socket.IO client in
# /static/vendor/); it talks only to its own origin (REST and socket).
PAGE_POLICY = "; ".join([
    "default-src 'self'",
    "script-src 'self'",
    "connect-src 'self'",
    "img-src 'self' data:",
    "object-src 'none'",
    "base-uri 'none'",
    "form-action 'none'",
    "frame-ancestors 'none'",
])


@blp.route("/", methods=["GET"])
def chat_page():
    """Anyone: the chat page (it registers and logs in through the API itself)."""
    return current_app.send_static_file("index.html")  # headers: add_security_headers


# Any other HTML (none today; a future page must get its own policy): nothing loads.
LOCKED_POLICY = "default-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
HEADERS = {"X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer",
           "X-Frame-Options": "DENY"}  # X-Frame-Options: browsers without frame-ancestors
DOCS_ENDPOINT = "api-docs.openapi_swagger_ui"  # flask-smorest's /api/docs
_INLINE_SCRIPT = re.compile(r"<script(?![^>]*\bsrc\s*=)[^>]*>(.*?)</script>", re.S | re.I)


@blp.after_app_request
def add_security_headers(response):
    """The policy and headers on every HTML response and every static file of the app."""
    endpoint = request.endpoint or ""
    if endpoint == DOCS_ENDPOINT:
        policy = docs_policy(response)
    elif endpoint in ("web.chat_page", "static") or endpoint.endswith(".static"):
        policy = PAGE_POLICY  # the page itself at /static/index.html, and its files
    elif response.mimetype == "text/html":
        policy = LOCKED_POLICY
    else:
        return response
    response.headers.setdefault("Content-Security-Policy", policy)
    for name, value in HEADERS.items():
        response.headers.setdefault(name, value)
    return response


def docs_policy(response):
    """/api/docs (Swagger UI, rendered by flask-smorest): its script and stylesheet from
    OPENAPI_SWAGGER_UI_URL (a path here: this origin; else that URL's folder), its one
    inline script (the configuration) by hash, images inline in that stylesheet, the OpenAPI
    document and "Try it out" calls to this origin only."""
    url = current_app.config.get("OPENAPI_SWAGGER_UI_URL") or ""
    assets = url if re.fullmatch(r"https?://[^\s;,']+", url) else "'self'"
    hashes = [base64.b64encode(hashlib.sha256(body.encode()).digest()).decode()
              for body in _INLINE_SCRIPT.findall(response.get_data(as_text=True))]
    return "; ".join([
        "default-src 'none'",
        " ".join(["script-src", assets, *(f"'sha256-{h}'" for h in hashes)]),
        f"style-src {assets}",
        "img-src 'self' data:",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
    ])
