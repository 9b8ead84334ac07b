"""Malformed Socket.IO packets: the sender's connection is closed, nobody else notices.

python-socketio decodes each packet before any handler of ours runs, and lets a
decoding error (garbage text, `42{}`, JSON nested deeper than the parser's recursion
limit) escape to Engine.IO, which logs a traceback and keeps the connection. It also
dispatches a client's event named `connect` or `disconnect` to those handlers, so a
client could re-run authentication or drop its own presence record (and slip under the
connection caps). The reference server's parser rejects both ("parse error", reserved
event names) and closes that connection: so does this, with a warning, never a traceback.

Binary packets (BINARY_EVENT, BINARY_ACK) are refused the same way. chatapp never uses
them, and python-socketio buffers every binary frame such a packet announces (up to
9 999 999 999 of them, each up to SOCKETIO_MAX_HTTP_BUFFER_SIZE) until the count arrives:
memory without bound for any authenticated client. Refused on their header, before a frame
is buffered; a binary Engine.IO message is refused too (it can only be an attachment).

And none is sent: `TextPacket`, the server's packet class, does not search every payload it
sends for bytes (python-socketio's default walks the whole payload, a Message, on every emit
and every ack; chatapp's payloads are JSON, a bytes value in one would fail to encode).
"""
import logging

from socketio import packet

log = logging.getLogger(__name__)

DECODING_ERRORS = (ValueError, TypeError, KeyError, IndexError, AttributeError, RecursionError)
# The names python-socketio dispatches to its own lifecycle handlers.
RESERVED_EVENTS = frozenset({"connect", "connect_error", "disconnect"})
# A Socket.IO packet's type is its first character.
BINARY_PACKETS = frozenset({str(packet.BINARY_EVENT), str(packet.BINARY_ACK)})


class TextPacket(packet.Packet):
    """A Socket.IO packet that is never binary (see above)."""
    uses_binary_events = False


def close_on_malformed_packets(server):
    """Guard a python-socketio `server`: its Engine.IO message handler (decoding errors,
    binary packets) and its EVENT dispatch (event names)."""
    handle_message = server.eio.handlers["message"]
    handle_event = server._handle_event  # python-socketio 5: every EVENT packet, once decoded

    def on_message(eio_sid, data):
        if not isinstance(data, str) or data[:1] in BINARY_PACKETS:
            return close(server, eio_sid, "binary packet")
        try:
            return handle_message(eio_sid, data)
        except DECODING_ERRORS as exc:
            return close(server, eio_sid, type(exc).__name__)

    def on_event(eio_sid, namespace, ack_id, data):
        if not isinstance(data, list) or not data or not isinstance(data[0], str) \
                or data[0] in RESERVED_EVENTS:
            return close(server, eio_sid, "no event name, or a reserved one")
        return handle_event(eio_sid, namespace, ack_id, data)

    server.eio.on("message", on_message)
    server._handle_event = on_event


def close(server, eio_sid, why):
    log.warning("malformed Socket.IO packet (%s): closing that connection", why)
    server.eio.disconnect(eio_sid)
