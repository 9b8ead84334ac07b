"""`/`: the browser chat page, a small demo of the API (chatapp/static: HTML, CSS, plain JS).

A plain Flask blueprint, not a flask-smorest one: the page is not part of the REST API
and stays out of the OpenAPI document. The files under /static are served by Flask itself.
"""
from flask import Blueprint, current_app

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
    response = current_app.send_static_file("index.html")
    response.headers["Content-Security-Policy"] = PAGE_POLICY
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "no-referrer"
    return response
