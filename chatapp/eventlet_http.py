"""eventlet's HTTP server as `python wsgi.py` runs it: a deadline for request headers, and
the contract's envelope for requests refused before the app sees them.

Imported by wsgi.py's eventlet server only (gunicorn has its own equivalents: its
`keepalive` bounds the wait for each request's headers, deploy/gunicorn.conf.py).

- eventlet waits for a request's line and headers forever: a client that sends half a
  header (or nothing) holds a connection, and a place in the server's pool, for good.
  Here they must arrive within REQUEST_HEADER_TIMEOUT seconds, counted from the
  connection's opening, or from the previous response on a kept-alive connection (so an
  idle kept-alive connection is closed after as long). Past it the connection is closed
  without an answer, as gunicorn does. The app's own time (a long poll, a WebSocket) is not
  counted: the deadline ends when the headers are in.
- A header line over 8 KiB or headers over 64 KiB in all (eventlet: a bodiless 400), more
  than 100 headers or a malformed request line (the standard library: an HTML page), and a
  request line over 8 KiB (eventlet: a bodiless 414) get `{"error": {"code", "message"}}`.
  Oversized headers are 431 `request_header_fields_too_large` (RFC 6585, what the standard
  library sends for too many of them), not 400: the contract's 400 is `invalid_json`, a
  body problem, and the client's fix here is a smaller header (a cookie, a token).
"""
import json
import socket
from http import HTTPStatus

import eventlet
import eventlet.wsgi

from chatapp.errors import ApiError

# status -> (code, message). As in the app's vocabulary, a code is the status's reason
# phrase in snake case (payload_too_large, method_not_allowed...).
ERRORS = {
    400: ("bad_request", "malformed HTTP request"),
    414: ("uri_too_long", "request line too long (at most 8 KiB)"),
    431: ("request_header_fields_too_large",
          "request header too large (at most 8 KiB a line, 64 KiB and 100 headers in all)"),
    505: ("http_version_not_supported", "HTTP version not supported"),
}


class HeadersTimedOut(socket.timeout):
    """The request's headers did not arrive in time: eventlet closes the connection quietly."""


class HttpProtocol(eventlet.wsgi.HttpProtocol):
    """Build with `protocol(header_timeout)`; pass as `eventlet.wsgi.server(protocol=...)`."""

    header_timeout = None
    _deadline = None

    def handle_one_request(self):
        self._deadline = eventlet.Timeout(self.header_timeout, HeadersTimedOut())
        try:
            super().handle_one_request()
        finally:
            self._deadline.cancel()

    def finish(self):
        """The connection is over: let go of its last request's environ. eventlet puts a
        closure over this protocol in it (`eventlet.set_idle`), a reference cycle per
        connection that only the cyclic collector would free; and a connection open when
        the embedded store freezes the heap (chatapp/embedded_heap.py) would be kept for
        good, its buffers with it."""
        try:
            super().finish()
        finally:
            self.__dict__.pop("environ", None)

    def get_environ(self):
        """Called once the headers are in, before the app runs: the deadline is met."""
        self._deadline.cancel()
        return super().get_environ()

    def _read_request_line(self):
        line = super()._read_request_line()
        if len(line) >= self.server.url_length_limit:
            self.send_error(414)
            return ""  # eventlet then closes the connection
        return line

    def parse_request(self):
        try:
            return super().parse_request()
        except (eventlet.wsgi.HeaderLineTooLong, eventlet.wsgi.HeadersTooLarge):
            self.send_error(431)
            return False

    def send_error(self, code, message=None, explain=None):
        """The contract's envelope instead of the standard library's HTML page (which would
        also echo the request line back)."""
        status = HTTPStatus(code)
        error_code, text = ERRORS.get(code, ERRORS[400])
        body = json.dumps(ApiError(text, code=error_code).to_dict()).encode()
        self.close_connection = True
        self.wfile.write(b"HTTP/1.1 %d %s\r\nContent-Type: application/json\r\n"
                         b"Content-Length: %d\r\nConnection: close\r\n\r\n%s"
                         % (code, status.phrase.encode(), len(body), body))
        self.wfile.flush()


def protocol(header_timeout):
    """The protocol class with that deadline, in seconds (0: eventlet's none)."""
    return type("HttpProtocol", (HttpProtocol,), {"header_timeout": header_timeout or None})
