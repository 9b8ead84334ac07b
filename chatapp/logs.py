"""Log lines: text (default) or one JSON object a line (LOG_FORMAT=json, python-json-logger),
each record carrying the id of the HTTP request or socket event it was made in.

- Request ids: an incoming `X-Request-Id` of 1-64 `[A-Za-z0-9._-]` is kept, anything else
  replaced by a new one; it is returned as `X-Request-Id`. Every socket event (connect and
  disconnect included) gets a new one. Kept in `flask.g`, read by `RequestIdFilter`.
- ACCESS_LOG=1: one line per HTTP request (logger `chatapp.access`): method, route template,
  status, duration, user id, request id. Never the path's values, the query string, a header
  or a body: so never a token, a password or a message's content.
- Log injection: in text, control characters (newline, ANSI escapes...) of a message are
  escaped and traceback lines indented, so only a record starts a line; JSON escapes them.
"""
import logging
import re
import time
import uuid

from flask import g, has_app_context, request
from pythonjsonlogger.json import JsonFormatter

REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")
HEADER = "X-Request-Id"
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(request_id)s]: %(message)s"
JSON_FIELDS = "%(asctime)s %(levelname)s %(name)s %(message)s"
# C0 and C1 controls (newline, carriage return, ESC...), DEL, and Unicode line separators.
CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")

access_log = logging.getLogger("chatapp.access")


def configure(app):
    """Install the process's log handler on the root logger, unless something else (a test
    runner, an embedding application) configured logging first."""
    level = getattr(logging, app.config["LOG_LEVEL"], logging.INFO)
    root = logging.getLogger()
    ours = [h for h in root.handlers if getattr(h, "chatapp", False)]
    if ours or not root.handlers:
        for handler in ours:  # a second create_app() may choose another format
            root.removeHandler(handler)
        handler = logging.StreamHandler()
        handler.chatapp = True
        handler.setFormatter(json_formatter() if app.config["LOG_FORMAT"] == "json"
                             else TextFormatter(TEXT_FORMAT))
        handler.addFilter(RequestIdFilter())
        root.addHandler(handler)
        root.setLevel(level)
        logging.captureWarnings(True)  # Python's warnings too, in the same format
    logging.getLogger("chatapp").setLevel(level)
    # Asked for explicitly: the access lines are written whatever LOG_LEVEL says.
    access_level = logging.INFO if app.config["ACCESS_LOG"] else logging.NOTSET
    for name in ("chatapp.access", "eventlet.wsgi"):
        logging.getLogger(name).setLevel(access_level)


def json_formatter():
    return JsonFormatter(JSON_FIELDS, rename_fields={"asctime": "time", "levelname": "level",
                                                     "name": "logger"})


def escape(text):
    """`a\\nb\\x1b[31m` stays on one line, visibly: control characters as Python escapes."""
    return CONTROL.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), text)


class TextFormatter(logging.Formatter):
    """One line per record: the message escaped, traceback lines indented (never column 0)."""

    def format(self, record):
        record = logging.makeLogRecord(record.__dict__)  # other handlers see the original
        record.msg, record.args = escape(record.getMessage()), None
        if record.request_id is None:
            record.request_id = "-"
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = indented(record.exc_text)
        if record.stack_info:
            record.stack_info = indented(record.stack_info)
        return super().format(record)


def indented(text):
    return "\n".join("  " + escape(line) for line in text.split("\n"))


class RequestIdFilter(logging.Filter):
    """Adds `request_id` (None outside a request or event) to every record it sees."""

    def filter(self, record):
        if not hasattr(record, "request_id"):
            record.request_id = g.get("request_id") if has_app_context() else None
        return True


def new_request_id():
    return uuid.uuid4().hex


def start_event():
    """A socket event begins: it gets a request id of its own."""
    g.request_id = new_request_id()


def init_app(app):
    app.before_request(_assign_request_id)
    app.after_request(_finish_request)


def _assign_request_id():
    incoming = request.headers.get(HEADER, "")
    g.request_id = incoming if REQUEST_ID.fullmatch(incoming) else new_request_id()
    g.access_started = time.perf_counter()


def _finish_request(response):
    request_id = g.get("request_id") or new_request_id()
    response.headers[HEADER] = request_id
    if access_log.isEnabledFor(logging.INFO):
        route = request.url_rule.rule if request.url_rule is not None else "<unmatched>"
        started = g.get("access_started")
        duration = round((time.perf_counter() - started) * 1000, 1) if started else None
        user_id = g.get("user_id")
        access_log.info("%s %s %s %sms user=%s", request.method, route, response.status_code,
                        duration, user_id or "-", extra={
                            "method": request.method, "route": route,
                            "status": response.status_code, "duration_ms": duration,
                            "user_id": str(user_id) if user_id else None,
                            "request_id": request_id})
    return response
