"""The download's HTTP answer: the bytes streamed from GridFS chunk by chunk, with
`Content-Disposition`, `nosniff`, a strong `ETag` (the sha256) and `If-None-Match` (304),
and single byte ranges (206; 416 when unsatisfiable).

Ranges follow RFC 9110: `bytes=a-b`, `bytes=a-` and the suffix `bytes=-n` (the last n bytes,
all of them when n is larger); a malformed header, another unit, several ranges, or an
`If-Range` that does not match this file are ignored (200, the whole file).
"""
from flask import Response
from werkzeug.http import parse_range_header

from chatapp.attachments import content, store
from chatapp.errors import ApiError


class RangeNotSatisfiable(ApiError):
    status, code, message = 416, "bad_request", "range not satisfiable"


def file_response(request, doc, cache_control):
    """The answer to `request` (GET or HEAD) for the file document `doc`."""
    meta = doc["metadata"]
    size, etag = doc["length"], meta["sha256"]
    headers = {
        "ETag": f'"{etag}"',
        "Cache-Control": cache_control,
        "X-Content-Type-Options": "nosniff",
        # Opened directly, the file runs nothing and loads nothing (as GitHub serves raw files).
        "Content-Security-Policy": "default-src 'none'; sandbox",
        "Accept-Ranges": "bytes",
    }
    if request.if_none_match.contains_weak(etag):
        return Response(status=304, headers=headers)
    span = requested_span(request, size, etag)
    start, stop = span or (0, size)
    headers["Content-Disposition"] = content.disposition(doc["filename"], meta["content_type"])
    headers["Content-Length"] = str(stop - start)
    if span is not None:
        headers["Content-Range"] = f"bytes {start}-{stop - 1}/{size}"
    response = Response(stream_bytes(doc["_id"], doc["chunkSize"], start, stop),
                        status=206 if span is not None else 200, headers=headers,
                        content_type=served_type(meta["content_type"]))
    response.direct_passthrough = True  # an iterator of bytes: werkzeug must not buffer it
    return response


def served_type(content_type):
    return f"{content_type}; charset=utf-8" if content_type == content.TEXT else content_type


def requested_span(request, size, etag):
    """(start, stop) of the one byte range asked for, None for the whole file; raises
    RangeNotSatisfiable when the range starts past the end."""
    header = request.headers.get("Range")
    if header is None or not _if_range_holds(request, etag):
        return None
    parsed = parse_range_header(header)
    if parsed is None or parsed.units != "bytes" or len(parsed.ranges) != 1:
        return None
    start, stop = parsed.ranges[0]
    if start < 0:  # a suffix: the last -start bytes
        return max(0, size + start), size
    if start >= size:
        raise RangeNotSatisfiable(f"range not satisfiable: the file has {size} bytes",
                                  headers={"Content-Range": f"bytes */{size}"})
    return start, size if stop is None else min(stop, size)


def _if_range_holds(request, etag):
    """No If-Range, or one naming this file's ETag (a date cannot prove a strong match)."""
    if "If-Range" not in request.headers:
        return True
    return request.if_range.etag == etag


def stream_bytes(file_id, chunk_size, start, stop):
    """Bytes [start, stop) of a GridFS file, one chunk in memory at a time."""
    n, offset = divmod(start, chunk_size)
    remaining = stop - start
    while remaining > 0:
        data = store.read_chunk(file_id, n)
        if data is None:  # deleted while being read: the answer ends short
            return
        piece = data[offset:offset + remaining]
        if not piece:
            return
        remaining -= len(piece)
        yield piece
        n, offset = n + 1, 0
