"""No token in any log line: `?token=<jwt>` (the Socket.IO handshake of older clients) and
anything shaped like a JWT are masked in what the server process writes.

Access logs write the request line, query string included: eventlet's (`ACCESS_LOG=1`),
gunicorn's (deploy/gunicorn.conf.py), werkzeug's and gevent's under `python wsgi.py`.
`install()` masks at both places a line can come from in this process: every log record
(gunicorn's access and error logs are records of its worker, where wsgi.py runs) and
stdout/stderr (where eventlet's, gevent's and werkzeug's lines, and printed tracebacks, are
written). Only the entry point (wsgi.py) installs it.
"""
import logging
import re
import sys

MASK = "***"
# A query parameter named token (or access_token, refresh_token...), in a URL or a query
# string; its value runs to the next separator.
_TOKEN_PARAMETER = re.compile(r"(?i)((?:^|[?&;\s\"'])[\w.-]*token=)[^&;\s\"']+")
# header.payload.signature, each base64url; the header of every JWT starts with `{"` (eyJ).
_JWT = re.compile(r"eyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*")


def mask_tokens(text):
    return _JWT.sub(MASK, _TOKEN_PARAMETER.sub(r"\1" + MASK, text))


class MaskingStream:
    """A text stream that masks tokens in everything written through it."""

    def __init__(self, stream):
        self._stream = stream

    def write(self, text):
        return self._stream.write(mask_tokens(text) if isinstance(text, str) else text)

    def writelines(self, lines):
        for line in lines:
            self.write(line)

    def __getattr__(self, name):  # flush, fileno, encoding, isatty...
        return getattr(self._stream, name)


def install():
    """Mask tokens in this process's log records and standard streams (idempotent)."""
    for name in ("stdout", "stderr"):
        stream = getattr(sys, name)
        if stream is not None and not isinstance(stream, MaskingStream):
            setattr(sys, name, MaskingStream(stream))
    factory = logging.getLogRecordFactory()
    if getattr(factory, "masks_tokens", False):
        return

    def masking_factory(*args, **kwargs):
        record = factory(*args, **kwargs)
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a bad format is the handler's to report
            return record
        record.msg, record.args = mask_tokens(message), ()
        if record.exc_info and record.exc_info[0] is not None:
            # Formatted (and masked) now; every formatter (text, JSON) then uses exc_text.
            record.exc_text = mask_tokens(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        if record.stack_info:
            record.stack_info = mask_tokens(record.stack_info)
        return record

    masking_factory.masks_tokens = True
    logging.setLogRecordFactory(masking_factory)
