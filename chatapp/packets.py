"""Malformed Socket.IO packets: the sender's connection is closed, nobody else notices.

python-socketio decodes each packet before any handler of ours runs, and lets a
decoding error (garbage text, `42{}`, JSON nested deeper than the parser's recursion
limit) escape to Engine.IO, which logs a traceback and keeps the connection. Like the
reference Socket.IO server ("parse error"), close that one connection instead, with a
warning: a hostile client is not a server error.
"""
import logging

log = logging.getLogger(__name__)

DECODING_ERRORS = (ValueError, TypeError, KeyError, IndexError, AttributeError, RecursionError)


def close_on_malformed_packets(server):
    """Wrap the Engine.IO message handler of a python-socketio `server`."""
    handle_message = server.eio.handlers["message"]

    def on_message(eio_sid, data):
        try:
            return handle_message(eio_sid, data)
        except DECODING_ERRORS as exc:
            log.warning("malformed Socket.IO packet (%s): closing that connection",
                        type(exc).__name__)
            server.eio.disconnect(eio_sid)
            return None

    server.eio.on("message", on_message)
