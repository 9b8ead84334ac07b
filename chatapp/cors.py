"""Cross-origin policy, one for REST and Socket.IO: the origins in CORS_ORIGINS, else same origin.

Browsers send `Origin`; an allowed one is echoed back (never `*`), others get no CORS
headers, so the browser withholds the response. Socket.IO (python-engineio) asks the
same `origin_allowed` through its `cors_allowed_origins` callable and refuses the
connection for any other origin. The same-origin check compares with the request's own
scheme and `Host` (X-Forwarded-Host is not trusted; X-Forwarded-Proto only through
`chatapp.proxy`).
"""
from flask import current_app, request

from config import ConfigError

ALLOW_METHODS = "GET, POST, PATCH, DELETE, OPTIONS"
ALLOW_HEADERS = "Authorization, Content-Type"
# Headers a browser script may read on a cross-origin response (pagination, rate limits).
EXPOSE_HEADERS = "Link, Retry-After, X-RateLimit-Limit, X-RateLimit-Remaining, X-RateLimit-Reset"
PREFLIGHT_MAX_AGE = "600"


def init_app(app):
    origins = app.config["CORS_ORIGINS"]
    if any("*" in origin for origin in origins):
        raise ConfigError("CORS_ORIGINS must list origins (https://chat.example.com); "
                          "a wildcard is not accepted")
    app.config["CORS_ORIGINS"] = [origin.rstrip("/") for origin in origins]
    app.before_request(answer_preflight)
    app.after_request(add_cors_headers)


def origin_allowed(origin, environ, listed):
    """True for a listed origin, or the request's own origin (scheme and Host)."""
    if not origin:
        return False
    if origin in listed:
        return True
    host = environ.get("HTTP_HOST")
    return bool(host) and origin == f"{environ.get('wsgi.url_scheme', 'http')}://{host}"


def socketio_origins(app):
    """For `socketio.init_app(cors_allowed_origins=...)`: the same policy as REST."""
    listed = frozenset(origin.rstrip("/") for origin in app.config["CORS_ORIGINS"])
    return lambda origin, environ: origin_allowed(origin, environ, listed)


def answer_preflight():
    """A CORS preflight (OPTIONS + Access-Control-Request-Method) gets 204, whatever the route."""
    if request.method == "OPTIONS" and "Access-Control-Request-Method" in request.headers:
        response = current_app.response_class(status=204)
        if origin_allowed(request.headers.get("Origin"), request.environ,
                          current_app.config["CORS_ORIGINS"]):
            response.headers["Access-Control-Allow-Methods"] = ALLOW_METHODS
            response.headers["Access-Control-Allow-Headers"] = request.headers.get(
                "Access-Control-Request-Headers", ALLOW_HEADERS)
            response.headers["Access-Control-Max-Age"] = PREFLIGHT_MAX_AGE
        return response
    return None


def add_cors_headers(response):
    origin = request.headers.get("Origin")
    response.vary.add("Origin")
    if origin and origin in current_app.config["CORS_ORIGINS"]:
        response.headers["Access-Control-Allow-Origin"] = origin
        response.headers["Access-Control-Expose-Headers"] = EXPOSE_HEADERS
    return response
