"""Prometheus metrics of this process, served at `GET /metrics` (prometheus-client).

Each process counts its own and serves its own (scrape every process; deploy/README.md).
Nothing here touches the database: a scrape only reads counters held in memory.

- HTTP requests by method, route template (the Flask rule, never the raw path) and status,
  with a latency histogram; Engine.IO's `/socket.io/` requests are not Flask requests and
  are counted as socket events instead;
- open Socket.IO connections (authenticated, this process) and socket events by name and
  outcome (`ok` or the ack's error code);
- messages stored; database errors (those turned into `unavailable`); Redis errors (the
  Socket.IO message queue, the rate-limit storage); rate-limit refusals.

Only addresses in METRICS_ALLOW see `/metrics`; anyone else gets the 404 any unknown path gets.
"""
import ipaddress
import logging
import time

from flask import Response, current_app, g, request
from prometheus_client import REGISTRY, Counter, Gauge, Histogram
from prometheus_client.exposition import choose_encoder
from werkzeug.exceptions import NotFound

from config import ConfigError

UNMATCHED = "<unmatched>"  # no route: one label for every unknown path (bounded cardinality)

HTTP_REQUESTS = Counter("chatapp_http_requests", "HTTP requests answered, by route template",
                        ["method", "route", "status"])
HTTP_LATENCY = Histogram("chatapp_http_request_duration_seconds",
                         "HTTP request latency, from the first app hook to the response",
                         ["method", "route"])
SOCKETS_OPEN = Gauge("chatapp_sockets_open", "Authenticated Socket.IO connections of this process")
SOCKET_EVENTS = Counter("chatapp_socket_events", "Socket.IO events handled, by outcome",
                        ["event", "outcome"])
MESSAGES_STORED = Counter("chatapp_messages_stored", "Messages stored (retries not counted)",
                          ["conversation_type"])
DATABASE_ERRORS = Counter("chatapp_database_errors",
                          "MongoDB unreachable: requests and events answered `unavailable`",
                          ["error"])
REDIS_ERRORS = Counter("chatapp_redis_errors", "Redis failures seen by this process",
                       ["component"])
RATE_LIMITED = Counter("chatapp_rate_limit_refusals", "Requests and events refused `rate_limited`",
                       ["transport"])


def init_app(app):
    """Parse METRICS_ALLOW (fail fast), time every request, serve /metrics."""
    app.extensions["metrics_allow"] = parse_networks(app.config["METRICS_ALLOW"])
    app.before_request(_start_timer)
    app.after_request(_count_request)
    app.add_url_rule("/metrics", "metrics", metrics_view, methods=["GET"])
    _count_redis_errors_from_logs()


def parse_networks(items):
    """`["127.0.0.1", "10.0.0.0/8", "::1"]` -> networks; a bad entry is a configuration error."""
    networks = []
    for item in items:
        try:
            networks.append(ipaddress.ip_network(item.strip(), strict=False))
        except ValueError:
            raise ConfigError(f"METRICS_ALLOW: {item!r} is not an address or a network "
                              f"like 10.0.0.0/8") from None
    return networks


def allowed(remote_addr):
    """Whether the caller may scrape. Behind a proxy the app does not trust (TRUSTED_PROXIES=0)
    every client would look like the proxy's address, often loopback: a request that carries
    forwarding headers is refused then (Prometheus scrapes each process directly)."""
    if not current_app.config["TRUSTED_PROXIES"] and (
            "X-Forwarded-For" in request.headers or "Forwarded" in request.headers):
        return False
    try:
        address = ipaddress.ip_address((remote_addr or "").split("%")[0])
    except ValueError:
        return False
    if address.version == 6 and address.ipv4_mapped:
        address = address.ipv4_mapped
    return any(address in network for network in current_app.extensions["metrics_allow"])


def metrics_view():
    """Addresses in METRICS_ALLOW: this process's metrics, Prometheus text format; else 404."""
    if not allowed(request.remote_addr):
        raise NotFound()  # the very answer of an unknown path: nothing says it exists
    # The library's content negotiation: OpenMetrics when the scraper asks for it, else text.
    encode, content_type = choose_encoder(request.headers.get("Accept", ""))
    return Response(encode(REGISTRY), content_type=content_type)


def _start_timer():
    g.metrics_started = time.perf_counter()


def _count_request(response):
    started = g.pop("metrics_started", None)
    route = request.url_rule.rule if request.url_rule is not None else UNMATCHED
    HTTP_REQUESTS.labels(request.method, route, str(response.status_code)).inc()
    if started is not None:
        HTTP_LATENCY.labels(request.method, route).observe(time.perf_counter() - started)
    if response.status_code == 429:
        RATE_LIMITED.labels("http").inc()
    return response


def socket_event(event, ack):
    """Count one handled event from its ack (`{"ok": true}` or `{"ok": false, "error": ...}`)."""
    outcome = "ok"
    if isinstance(ack, dict) and ack.get("ok") is False:
        outcome = ack.get("error", {}).get("code", "internal_error")
    SOCKET_EVENTS.labels(event, outcome).inc()
    if outcome == "rate_limited":
        RATE_LIMITED.labels("socket").inc()


def message_stored(group):
    MESSAGES_STORED.labels("group" if group else "direct").inc()


def database_error(exc):
    DATABASE_ERRORS.labels(type(exc).__name__).inc()


def redis_error(component):
    REDIS_ERRORS.labels(component).inc()


class _RedisErrorCounter(logging.Handler):
    """python-socketio's Redis manager and Flask-Limiter report a failing Redis only in their
    logs (the manager retries, the limiter swallows the error): count those records."""

    def __init__(self, component, matches):
        super().__init__(logging.ERROR)
        self.component, self.matches = component, matches

    def emit(self, record):
        if self.matches(record):
            redis_error(self.component)


def _count_redis_errors_from_logs():
    for name, handler in (
        ("socketio.server", _RedisErrorCounter(
            "message_queue", lambda record: hasattr(record, "redis_exception"))),
        ("flask-limiter", _RedisErrorCounter(
            "rate_limit_storage", lambda record: str(record.msg).startswith("Failed to"))),
    ):
        logger = logging.getLogger(name)
        if not any(isinstance(h, _RedisErrorCounter) for h in logger.handlers):
            logger.addHandler(handler)
