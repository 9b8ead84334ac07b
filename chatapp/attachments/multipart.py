"""The upload's body, parsed as it arrives: one `multipart/form-data` part named `file`.

werkzeug's sans-IO `MultipartDecoder` turns the request stream, read 64 KiB at a time, into
events; the file part's bytes are handed on as they come (to GridFS, by the service), so no
upload is ever held whole in memory or spooled to a temporary file. Whatever is not the file
(a preamble, other fields) is read and dropped; the decoder's own buffer, outside file data,
is capped. The whole body is at most the file's limit plus `FRAMING_BYTES`.
"""
from werkzeug.exceptions import ClientDisconnected, RequestEntityTooLarge
from werkzeug.http import parse_options_header
from werkzeug.sansio.multipart import NEED_DATA, Data, Epilogue, Field, File, MultipartDecoder

from chatapp.errors import UnsupportedMediaType, ValidationError

READ_BYTES = 64 * 1024
FRAMING_BYTES = 64 * 1024  # boundaries, part headers, small extra fields
# The decoder's buffer: one read plus what it holds back between reads (a possible boundary
# in file data; a preamble or part headers not yet complete, which this caps).
BUFFER_BYTES = READ_BYTES + 64 * 1024
MAX_PARTS = 16
BOUNDARY_MAX = 200  # RFC 2046 says 70; some clients go a little further
FIELD = "file"


def malformed(message):
    return ValidationError(details={FIELD: [message]})


def body_limit(max_file_bytes):
    return max_file_bytes + FRAMING_BYTES


class FilePart:
    """The one `file` part of a request: `filename`, then `chunks()` (its bytes, after which
    the rest of the body has been read and checked: a second `file` part is refused)."""

    def __init__(self, request, max_file_bytes, too_large):
        """`too_large()`: the error for a body over the limit."""
        mimetype, options = parse_options_header(request.headers.get("Content-Type", ""))
        if mimetype != "multipart/form-data":
            raise UnsupportedMediaType("request body must be multipart/form-data with one "
                                       "part named file")
        boundary = options.get("boundary", "")
        if not boundary or len(boundary) > BOUNDARY_MAX or not boundary.isascii():
            raise malformed("multipart/form-data needs a boundary (1 to 70 characters)")
        self._too_large = too_large
        request.max_content_length = body_limit(max_file_bytes)  # this request only
        if request.content_length is not None and \
                request.content_length > request.max_content_length:
            raise too_large()  # before reading a byte of it
        self._stream = request.stream  # past max_content_length without Content-Length: 413
        self._decoder = MultipartDecoder(boundary.encode("ascii"),
                                         max_form_memory_size=BUFFER_BYTES, max_parts=MAX_PARTS)
        self._events = self._read_events()
        self.filename = self._find_file()

    def chunks(self):
        """The file's bytes as they arrive; then the rest of the body, checked."""
        for event in self._events:
            if isinstance(event, Data):
                if event.data:
                    yield event.data
                if not event.more_data:
                    break
        for event in self._events:
            if isinstance(event, (File, Field)) and event.name == FIELD:
                raise malformed("Exactly one part named file.")

    def _find_file(self):
        for event in self._events:
            if isinstance(event, (File, Field)) and event.name == FIELD:
                if isinstance(event, Field):
                    raise malformed("The file part needs a filename in its Content-Disposition.")
                return event.filename
        raise malformed("Missing data for required field.")

    def _read_events(self):
        """Every event of the body up to its epilogue; a body that breaks off or does not
        parse is a validation error."""
        while True:
            try:
                event = self._decoder.next_event()
                if event is NEED_DATA:
                    self._decoder.receive_data(self._read() or None)
                    continue
            except (ValueError, RequestEntityTooLarge):
                # Boundary not found, part headers not UTF-8 or over the buffer, too many parts.
                raise malformed("Not a valid multipart/form-data body.") from None
            yield event
            if isinstance(event, Epilogue):
                return

    def _read(self):
        try:
            return self._stream.read(READ_BYTES)
        except ClientDisconnected:
            raise malformed("The body ended before its Content-Length.") from None
        except RequestEntityTooLarge:  # a body without Content-Length, past the limit
            raise self._too_large() from None
