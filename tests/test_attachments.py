"""Attachments: upload (streamed multipart into GridFS), download (ranges, ETag, signed URLs),
who may read one, the send interface (`for_send`, `attached`, `detached`, `present`), orphans.

Runs on the embedded store (mongomock with PyMongo's GridFS) and, with TEST_MONGO_URI, on a
database server through PyMongo's GridFS: the same tests, the same answers.
"""
import hashlib
import random
import struct
import threading
import time
import tracemalloc
import uuid
import zlib
from datetime import timedelta
from urllib.parse import quote

import gridfs
import pytest
import requests
from bson import ObjectId
from werkzeug.http import parse_options_header

from chatapp import create_app
from chatapp.attachments import multipart, orphans, service, signing
from chatapp.errors import ValidationError
from chatapp.extensions import mongo, socketio
from config import ConfigError, TestingConfig
from tests.conftest import Auth
from tests.live import http_account

URL = "/api/chat/attachments"
BOUNDARY = b"----chatapp-test-boundary"
MULTIPART = "multipart/form-data; boundary=" + BOUNDARY.decode()
ATTACHMENT_KEYS = {"id", "filename", "content_type", "size", "sha256", "url", "created_at"}
SNAPSHOT_KEYS = {"id", "filename", "content_type", "size", "sha256", "created_at"}
GRIDFS_CHUNK = 255 * 1024


def png_bytes():
    def chunk(kind, data):
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data)))

    header = struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(b"\x00\xff\x00\x00")) + chunk(b"IEND", b""))


PNG = png_bytes()
PDF = b"%PDF-1.4\n1 0 obj\n<< /Type /Catalog >>\nendobj\ntrailer\n<< /Root 1 0 R >>\n%%EOF\n"
TEXT = "Hello, wörld!\nA second line.\n".encode()
RANDOM = random.Random(13).randbytes(5000)


# ------------------------------------------------------------------ helpers


def part(data, filename=b"f.bin", name=b"file", extra=b""):
    """One multipart part: (headers, data); `filename=None` for a plain field."""
    disposition = b'Content-Disposition: form-data; name="' + name + b'"'
    if filename is not None:
        disposition += b'; filename="' + filename + b'"'
    return disposition + extra, data


def body(*parts, boundary=BOUNDARY, close=True):
    out = b""
    for headers, data in parts:
        out += b"--" + boundary + b"\r\n" + headers + b"\r\n\r\n" + data + b"\r\n"
    return out + (b"--" + boundary + b"--\r\n" if close else b"")


def post(client, account, raw, content_type=MULTIPART, **kwargs):
    headers = account.headers if account is not None else {}
    return client.post(URL, data=raw, content_type=content_type, headers=headers, **kwargs)


def upload(client, account, data, filename=b"f.bin", extra=b""):
    response = post(client, account, body(part(data, filename, extra=extra)))
    assert response.status_code == 201, response.get_json()
    return response.get_json()["attachment"]


def download(client, attachment_id, account=None, **headers):
    if account is not None:
        headers.update(account.headers)
    return client.get(f"{URL}/{attachment_id}", headers=headers)


def stored():
    """(files, chunks) in GridFS's collections."""
    return (mongo.db["fs.files"].count_documents({}),
            mongo.db["fs.chunks"].count_documents({}))


def assert_error(response, status, code):
    assert response.status_code == status, (response.status_code, response.get_data()[:300])
    error = response.get_json()["error"]
    assert error["code"] == code and error["message"]
    return error


class Generated:
    """A request body made as it is read (never whole in this process): `size` bytes of
    file between a multipart head and tail. No seek/tell, as a socket."""

    def __init__(self, size, boundary=BOUNDARY):
        self.head = (b"--" + boundary + b"\r\nContent-Disposition: form-data; name=\"file\"; "
                     b"filename=\"big.bin\"\r\n\r\n")
        self.tail = b"\r\n--" + boundary + b"--\r\n"
        self.size, self.sent, self.pattern = size, 0, bytes(range(256)) * 256
        self.length = len(self.head) + size + len(self.tail)
        self.position = 0

    def read(self, n=-1):
        n = self.length - self.position if n is None or n < 0 else n
        out = bytearray()
        while n > 0 and self.position < self.length:
            if self.position < len(self.head):
                piece = self.head[self.position:self.position + n]
            elif self.position < len(self.head) + self.size:
                offset = self.position - len(self.head)
                take = min(n, self.size - offset, len(self.pattern))
                start = offset % 256
                piece = (self.pattern[start:] + self.pattern[:start])[:take]
            else:
                offset = self.position - len(self.head) - self.size
                piece = self.tail[offset:offset + n]
            out += piece
            self.position += len(piece)
            n -= len(piece)
        return bytes(out)

    def digest(self):
        whole, done = hashlib.sha256(), 0
        while done < self.size:
            take = min(len(self.pattern), self.size - done)
            whole.update(self.pattern[:take])
            done += take
        return whole.hexdigest()


def post_stream(client, account, stream, length=None):
    """POST a body read from `stream` (with a Content-Length, or chunked when None)."""
    # In the environ itself: given no data, the test client would make a multipart body of
    # its own (and a boundary to match).
    environ = {"wsgi.input": stream, "CONTENT_TYPE": MULTIPART}
    headers = dict(account.headers)
    if length is None:
        headers["Transfer-Encoding"] = "chunked"
        environ["wsgi.input_terminated"] = True  # as gunicorn, and eventlet through chatapp
    else:
        environ["CONTENT_LENGTH"] = str(length)
    return client.post(URL, headers=headers, environ_overrides=environ)


def direct_message(client, sender, receiver, content="see attached"):
    response = client.post("/api/chat/send", headers=sender.headers,
                           json={"receiver": receiver.id, "content": content})
    assert response.status_code == 201
    return response.get_json()["message"]


def group_message(client, owner, members, content="for the group"):
    group = client.post("/api/chat/groups", headers=owner.headers,
                        json={"title": "crew", "members": [m.id for m in members]})
    assert group.status_code == 201
    conv = group.get_json()["conversation"]["id"]
    sent = client.post(f"/api/chat/conversations/{conv}/messages", headers=owner.headers,
                       json={"content": content})
    assert sent.status_code == 201
    return sent.get_json()["message"]


def attach(app, attachment, message):
    """What the chat service does after storing a message with attachments."""
    with app.app_context():
        service.attached([ObjectId(attachment["id"])], ObjectId(message["conversation"]),
                         ObjectId(message["id"]))


@pytest.fixture
def small_app():
    return create_app(TestingConfig, MAX_ATTACHMENT_BYTES=1000)


# ------------------------------------------------------------------ round trip


@pytest.mark.parametrize("data, content_type, disposition", [
    (PNG, "image/png", "inline"),
    (PDF, "application/pdf", "attachment"),
    (TEXT, "text/plain", "attachment"),
    (RANDOM, "application/octet-stream", "attachment"),
], ids=["png", "pdf", "text", "random"])
def test_upload_and_download_round_trip(client, auth, data, content_type, disposition):
    alice = auth.user()
    # The part's own Content-Type is never believed.
    attachment = upload(client, alice, data, b"upload.dat", extra=b"\r\nContent-Type: image/gif")
    assert set(attachment) == ATTACHMENT_KEYS
    assert attachment["sha256"] == hashlib.sha256(data).hexdigest()
    assert attachment["size"] == len(data)
    assert attachment["content_type"] == content_type
    assert attachment["filename"] == "upload.dat"
    assert attachment["created_at"].endswith("Z")
    assert attachment["url"].startswith(f"{URL}/{attachment['id']}?expires=")

    response = download(client, attachment["id"], alice)
    assert response.status_code == 200
    assert response.data == data
    assert response.mimetype == content_type
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["ETag"] == f'"{attachment["sha256"]}"'
    assert response.headers["Accept-Ranges"] == "bytes"
    assert response.headers["Content-Length"] == str(len(data))
    assert response.headers["Content-Disposition"].split(";")[0] == disposition


def test_text_is_served_as_utf8(client, auth):
    alice = auth.user()
    attachment = upload(client, alice, TEXT, b"notes.txt")
    assert download(client, attachment["id"], alice).headers["Content-Type"] == \
        "text/plain; charset=utf-8"


def test_files_are_gridfs_files(client, auth):
    """Any GridFS reader (here PyMongo's own) reads what was uploaded."""
    if mongo.embedded:
        import mongomock.gridfs

        mongomock.gridfs.enable_gridfs_integration()  # PyMongo's GridFS on mongomock
    alice = auth.user()
    data = random.Random(7).randbytes(GRIDFS_CHUNK * 2 + 100)  # three chunks
    attachment = upload(client, alice, data, b"three.bin")
    file_id = ObjectId(attachment["id"])
    assert gridfs.GridFSBucket(mongo.db).open_download_stream(file_id).read() == data
    doc = mongo.db["fs.files"].find_one({"_id": file_id})
    assert doc["length"] == len(data) and doc["filename"] == "three.bin"
    assert doc["chunkSize"] == GRIDFS_CHUNK
    assert doc["metadata"]["owner"] == ObjectId(alice.id)
    assert doc["metadata"]["sha256"] == attachment["sha256"]
    assert mongo.db["fs.chunks"].count_documents({"files_id": file_id}) == 3


def test_start_up_declares_the_gridfs_indexes(app):
    files = mongo.db["fs.files"].index_information()
    chunks = mongo.db["fs.chunks"].index_information()
    assert {"filename_1_uploadDate_1", "orphans", "by_message"} <= set(files)
    assert chunks["files_id_1_n_1"].get("unique")


def test_hashing_yields_between_chunks(client, auth, monkeypatch):
    """A big upload hands the CPU back (eventlet: to the other sockets) after every piece."""
    calls = []
    monkeypatch.setattr(socketio, "sleep", lambda seconds=0: calls.append(seconds))
    alice = auth.user()
    upload(client, alice, bytes(1024 * 1024))
    assert len(calls) >= (1024 * 1024) // multipart.READ_BYTES


# ------------------------------------------------------------------ filenames


@pytest.mark.parametrize("sent, stored_as", [
    (b"../../etc/passwd", "../../etc/passwd"),
    (b"<script>alert(1)</script>.html", "<script>alert(1)</script>.html"),
    (b"C:\\\\Windows\\\\evil.txt", "C:\\Windows\\evil.txt"),
    (b'say \\"hi\\".txt', 'say "hi".txt'),
    ("naïve résumé 日本語.pdf".encode(), "naïve résumé 日本語.pdf"),
    ("invoice\u202efdp.exe".encode(), "invoice_fdp.exe"),
    (b"tab\there.txt", "tab_here.txt"),
    (b"   padded.txt  ", "padded.txt"),
    (b"   ", "file"),
    (b"x" * 300 + b".txt", "x" * 251 + ".txt"),
    (b"y" * 300, "y" * 255),
], ids=["traversal", "script", "backslashes", "quotes", "unicode", "bidi", "control", "trimmed",
        "blank", "long-with-extension", "long"])
def test_filenames_are_data_served_back_safely(client, auth, sent, stored_as):
    alice = auth.user()
    attachment = upload(client, alice, TEXT, sent)
    assert attachment["filename"] == stored_as
    header = download(client, attachment["id"], alice).headers["Content-Disposition"]
    assert_safe_disposition(header, stored_as)


def test_filename_star_and_newlines(client, auth):
    """RFC 2231 `filename*` is read; a newline in it is replaced, never reaches a header."""
    alice = auth.user()
    headers = b'Content-Disposition: form-data; name="file"; ' \
              b"filename*=UTF-8''line%0Abreak%20%C3%A9.txt"
    response = post(client, alice, body((headers, TEXT)))
    assert response.status_code == 201, response.get_json()
    attachment = response.get_json()["attachment"]
    assert attachment["filename"] == "line_break é.txt"
    assert_safe_disposition(download(client, attachment["id"], alice)
                            .headers["Content-Disposition"], "line_break é.txt")


def assert_safe_disposition(header, name):
    assert "\r" not in header and "\n" not in header
    assert header.isascii()
    assert f"filename*=UTF-8''{quote(name, safe='!#$&+-.^_`|~')}" in header
    _, options = parse_options_header(header)
    assert options["filename"] == name  # filename* wins, decoded
    fallback = header.split('filename="', 1)[1].split('"', 1)[0]
    assert fallback and not set(fallback) & set('"\\/%') and fallback.isprintable()


# ------------------------------------------------------------------ size limits


def test_exactly_the_limit_is_stored_one_more_byte_is_413(small_app):
    client = small_app.test_client()
    alice = Auth(client).user()
    ok = post(client, alice, body(part(b"a" * 1000)))
    assert ok.status_code == 201 and ok.get_json()["attachment"]["size"] == 1000
    before = stored()
    refused = post(client, alice, body(part(b"a" * 1001)))
    error = assert_error(refused, 413, "payload_too_large")
    assert "1000" in error["message"]
    assert stored() == before


def test_a_large_file_over_several_chunks_is_refused_and_its_chunks_removed(client, auth):
    """The chunks written before the limit was crossed are deleted."""
    alice = auth.user()
    client.application.config["MAX_ATTACHMENT_BYTES"] = 3 * GRIDFS_CHUNK
    refused = post(client, alice, body(part(bytes(3 * GRIDFS_CHUNK + 1))))
    assert_error(refused, 413, "payload_too_large")
    assert stored() == (0, 0)


class Untouchable:
    """An input stream that must not be read."""

    def read(self, *args):
        raise AssertionError("the body was read")


def test_a_huge_declared_length_is_refused_before_reading(small_app):
    client = small_app.test_client()
    alice = Auth(client).user()
    response = post_stream(client, alice, Untouchable(), 10**12)
    assert_error(response, 413, "payload_too_large")
    assert stored() == (0, 0)


def test_a_body_without_length_is_cut_at_the_limit(small_app):
    """Chunked transfer (no Content-Length): counted as it is read, 413 past the limit."""
    client = small_app.test_client()
    alice = Auth(client).user()
    big = Generated(multipart.FRAMING_BYTES + 5000)
    response = post_stream(client, alice, big)
    assert_error(response, 413, "payload_too_large")
    assert stored() == (0, 0)
    fits = Generated(900)
    response = post_stream(client, alice, fits)
    assert response.status_code == 201
    assert response.get_json()["attachment"]["sha256"] == fits.digest()


def test_other_routes_keep_max_content_length(client, auth):
    alice = auth.user()
    response = client.post("/api/chat/send", headers=alice.headers,
                           data=b'{"content": "' + b"a" * 1_100_000 + b'"}',
                           content_type="application/json")
    assert_error(response, 413, "payload_too_large")


# ------------------------------------------------------------------ hostile bodies


HOSTILE = {
    "missing-part": (body(part(b"hello", None, name=b"other")), MULTIPART, 422),
    "other-file-only": (body(part(b"hello", b"a.txt", name=b"upload")), MULTIPART, 422),
    "two-file-parts": (body(part(b"one"), part(b"two")), MULTIPART, 422),
    "file-then-field-named-file": (body(part(b"one"), part(b"two", None)), MULTIPART, 422),
    "field-without-filename": (body(part(b"hello", None)), MULTIPART, 422),
    "empty-file": (body(part(b"")), MULTIPART, 422),
    "no-parts": (b"--" + BOUNDARY + b"--\r\n", MULTIPART, 422),
    "empty-body": (b"", MULTIPART, 422),
    "broken-boundary": (body(part(b"hello"), boundary=b"something-else"), MULTIPART, 422),
    "unterminated": (body(part(b"hello" * 100), close=False), MULTIPART, 422),
    "cut-in-headers": (b"--" + BOUNDARY + b"\r\nContent-Disposition: form-da", MULTIPART, 422),
    "no-disposition": (b"--" + BOUNDARY + b"\r\nX-A: b\r\n\r\nhello\r\n--" + BOUNDARY + b"--\r\n",
                       MULTIPART, 422),
    "headers-not-utf8": (body((b'Content-Disposition: form-data; name="file"; filename="\xff"',
                               b"x")), MULTIPART, 422),
    "endless-headers": (b"--" + BOUNDARY + b"\r\nX: " + b"a" * 200_000, MULTIPART, 422),
    "garbage": (random.Random(3).randbytes(300_000), MULTIPART, 422),
    "too-many-parts": (body(*[part(b"x", None, name=b"f%d" % i) for i in range(40)],
                            part(b"data")), MULTIPART, 422),
    "no-boundary": (body(part(b"hello")), "multipart/form-data", 422),
    "long-boundary": (body(part(b"hello"), boundary=b"b" * 300),
                      "multipart/form-data; boundary=" + "b" * 300, 422),
    "no-content-type": (body(part(b"hello")), None, 415),
    "json": (b'{"file": "hello"}', "application/json", 415),
    "urlencoded": (b"file=hello", "application/x-www-form-urlencoded", 415),
    "mixed": (body(part(b"hello")), "multipart/mixed; boundary=" + BOUNDARY.decode(), 415),
}


@pytest.mark.parametrize("name", list(HOSTILE))
def test_hostile_multipart_bodies_get_the_envelope_and_store_nothing(client, auth, name, caplog):
    raw, content_type, status = HOSTILE[name]
    alice = auth.user()
    response = post(client, alice, raw, content_type=content_type)
    code = {415: "unsupported_media_type", 422: "validation_error"}[status]
    error = assert_error(response, status, code)
    if status == 422:
        assert list(error["details"]) == ["file"]
    assert stored() == (0, 0)
    assert not [r for r in caplog.records if r.levelname in ("ERROR", "CRITICAL")]


def test_an_upload_needs_a_token(client):
    assert_error(post(client, None, body(part(b"hello"))), 401, "unauthorized")
    assert stored() == (0, 0)


def test_extra_fields_beside_the_file_are_ignored(client, auth):
    alice = auth.user()
    response = post(client, alice, body(part(b"caption", None, name=b"caption"),
                                        part(PNG, b"pic.png"), part(b"x", b"x.bin", name=b"y")))
    assert response.status_code == 201
    assert response.get_json()["attachment"]["content_type"] == "image/png"
    assert stored()[0] == 1


# ------------------------------------------------------------------ ranges and ETag


@pytest.fixture
def thousand(client, auth):
    """(client, uploader, attachment, data): 1000 known bytes."""
    alice = auth.user()
    data = bytes(i % 251 for i in range(1000))
    return alice, upload(client, alice, data), data


@pytest.mark.parametrize("header, start, stop", [
    ("bytes=0-9", 0, 10),
    ("bytes=100-199", 100, 200),
    ("bytes=990-", 990, 1000),
    ("bytes=-10", 990, 1000),
    ("bytes=-5000", 0, 1000),  # a suffix longer than the file: all of it
    ("bytes=995-5000", 995, 1000),
    ("bytes=999-999", 999, 1000),
])
def test_ranges(client, thousand, header, start, stop):
    alice, attachment, data = thousand
    response = download(client, attachment["id"], alice, Range=header)
    assert response.status_code == 206
    assert response.data == data[start:stop]
    assert response.headers["Content-Range"] == f"bytes {start}-{stop - 1}/1000"
    assert response.headers["Content-Length"] == str(stop - start)


@pytest.mark.parametrize("header", ["bytes=1000-", "bytes=5000-6000"])
def test_unsatisfiable_range_is_416(client, thousand, header):
    alice, attachment, _ = thousand
    response = download(client, attachment["id"], alice, Range=header)
    assert_error(response, 416, "bad_request")
    assert response.headers["Content-Range"] == "bytes */1000"


@pytest.mark.parametrize("header", ["bytes=0-9,20-29", "bytes=abc", "items=0-9", "bytes=9-2",
                                    "bytes=-0", ""])
def test_ranges_that_are_ignored_get_the_whole_file(client, thousand, header):
    alice, attachment, data = thousand
    response = download(client, attachment["id"], alice, Range=header)
    assert response.status_code == 200 and response.data == data


def test_range_across_chunks(client, auth):
    alice = auth.user()
    data = random.Random(5).randbytes(GRIDFS_CHUNK * 2 + 10)
    attachment = upload(client, alice, data)
    for start, stop in ((GRIDFS_CHUNK - 3, GRIDFS_CHUNK + 3), (10, GRIDFS_CHUNK * 2 + 5),
                        (GRIDFS_CHUNK * 2, GRIDFS_CHUNK * 2 + 10)):
        response = download(client, attachment["id"], alice, Range=f"bytes={start}-{stop - 1}")
        assert response.status_code == 206 and response.data == data[start:stop]


def test_if_range(client, thousand):
    alice, attachment, data = thousand
    etag = f'"{attachment["sha256"]}"'
    same = download(client, attachment["id"], alice, Range="bytes=0-1", **{"If-Range": etag})
    assert same.status_code == 206 and same.data == data[:2]
    other = download(client, attachment["id"], alice, Range="bytes=0-1",
                     **{"If-Range": '"something-else"'})
    assert other.status_code == 200 and other.data == data


@pytest.mark.parametrize("held, status", [
    ("{etag}", 304), ("W/{etag}", 304), ('"other", {etag}', 304), ("*", 304),
    ('"other"', 200),
])
def test_etag_and_if_none_match(client, thousand, held, status):
    alice, attachment, data = thousand
    etag = f'"{attachment["sha256"]}"'
    response = download(client, attachment["id"], alice,
                        **{"If-None-Match": held.format(etag=etag)})
    assert response.status_code == status
    assert response.headers["ETag"] == etag
    assert response.data == (b"" if status == 304 else data)


def test_head_answers_headers_only(client, thousand):
    alice, attachment, _ = thousand
    response = client.head(f"{URL}/{attachment['id']}", headers=alice.headers)
    assert response.status_code == 200
    assert response.headers["Content-Length"] == "1000" and response.data == b""


# ------------------------------------------------------------------ who may read


def test_unsent_upload_is_readable_by_its_uploader_only(client, auth):
    alice, bob = auth.user(), auth.user()
    attachment = upload(client, alice, TEXT)
    assert download(client, attachment["id"], alice).status_code == 200
    assert_error(download(client, attachment["id"], bob), 404, "not_found")


@pytest.mark.parametrize("ref", ["0" * 24, "not-an-id", "f" * 23, "%00"])
def test_unknown_and_malformed_ids_are_404(client, auth, ref):
    alice = auth.user()
    upload(client, alice, TEXT)
    assert_error(client.get(f"{URL}/{ref}", headers=alice.headers), 404, "not_found")


def test_download_without_token_or_signature_is_401(client, auth):
    alice = auth.user()
    attachment = upload(client, alice, TEXT)
    assert_error(client.get(f"{URL}/{attachment['id']}"), 401, "unauthorized")


def test_members_of_a_conversation_it_was_sent_in_read_it(app, client, auth):
    alice, bob, stranger = auth.user(), auth.user(), auth.user()
    attachment = upload(client, alice, PNG, b"pic.png")
    message = direct_message(client, alice, bob)
    assert_error(download(client, attachment["id"], bob), 404, "not_found")  # not sent yet
    attach(app, attachment, message)
    assert download(client, attachment["id"], bob).data == PNG
    assert_error(download(client, attachment["id"], stranger), 404, "not_found")
    with app.app_context():
        assert service.can_read(ObjectId(bob.id), attachment["id"])
        assert service.can_read(ObjectId(alice.id), ObjectId(attachment["id"]))
        assert not service.can_read(ObjectId(stranger.id), attachment["id"])
        assert not service.can_read(ObjectId(bob.id), "nope")


def test_a_removed_member_loses_token_access_at_once(app, client, auth):
    alice, bob, carol = auth.user(), auth.user(), auth.user()
    attachment = upload(client, alice, PDF)
    message = group_message(client, alice, [bob, carol])
    attach(app, attachment, message)
    signed_url = attachment["url"]
    assert download(client, attachment["id"], carol).status_code == 200
    removed = client.delete(f"/api/chat/conversations/{message['conversation']}/members/{carol.id}",
                            headers=alice.headers)
    assert removed.status_code == 200
    assert_error(download(client, attachment["id"], carol), 404, "not_found")
    assert download(client, attachment["id"], bob).status_code == 200
    # A URL carol was given keeps working until it expires (documented; no identity in it).
    assert client.get(signed_url).status_code == 200


def test_deleting_the_message_makes_it_unreachable(app, client, auth):
    alice, bob = auth.user(), auth.user()
    attachment = upload(client, alice, PNG)
    message = direct_message(client, alice, bob)
    attach(app, attachment, message)
    assert client.get(attachment["url"]).status_code == 200
    deleted = client.delete(f"/api/chat/messages/{message['id']}", headers=alice.headers)
    assert deleted.status_code == 200
    # Checked at download time, even before the chat service says `detached`:
    assert_error(client.get(attachment["url"]), 404, "not_found")
    assert_error(download(client, attachment["id"], bob), 404, "not_found")
    with app.app_context():
        service.detached(ObjectId(message["id"]))
    assert stored() == (0, 0)  # in no message any more: deleted
    assert_error(download(client, attachment["id"], alice), 404, "not_found")


def test_detaching_one_of_two_messages_keeps_the_other(app, client, auth):
    alice, bob = auth.user(), auth.user()
    attachment = upload(client, alice, PNG)
    first, second = direct_message(client, alice, bob), direct_message(client, alice, bob)
    attach(app, attachment, first)
    attach(app, attachment, second)
    with app.app_context():
        service.detached(ObjectId(first["id"]))
        service.detached(ObjectId(first["id"]))  # twice: nothing more happens
    assert download(client, attachment["id"], bob).data == PNG
    assert client.get(attachment["url"]).status_code == 200


# ------------------------------------------------------------------ signed URLs


def test_signed_url_works_without_a_token(client, auth):
    alice = auth.user()
    attachment = upload(client, alice, PNG)
    response = client.get(attachment["url"])
    assert response.status_code == 200 and response.data == PNG
    assert response.headers["Content-Disposition"].startswith("inline")
    max_age = int(response.headers["Cache-Control"].split("max-age=")[1])
    assert 3600 * 0.9 - 5 <= max_age <= 3600


def test_signed_url_lifetime(app):
    with app.app_context():
        now = 1_800_000_000
        for seconds in (3600, 60, 1):
            app.config["ATTACHMENT_URL_SECONDS"] = seconds
            url = signing.signed_url("a" * 24, now)
            expires = int(url.split("expires=")[1].split("&")[0])
            assert now + seconds * 0.9 - 1 <= expires <= now + seconds
            assert signing.verify("a" * 24, str(expires), url.split("sig=")[1], now)


def tampered(url, **changes):
    path, query = url.split("?")
    params = dict(pair.split("=") for pair in query.split("&"))
    params.update(changes)
    return path + "?" + "&".join(f"{k}={v}" for k, v in params.items() if v is not None)


def test_tampered_foreign_and_expired_signed_urls_are_404(app, client, auth):
    alice = auth.user()
    mine, other = upload(client, alice, PNG), upload(client, alice, PDF)
    url = mine["url"]
    sig = url.split("sig=")[1]
    expires = url.split("expires=")[1].split("&")[0]
    flipped = ("0" if sig[0] != "0" else "1") + sig[1:]
    bad = [
        tampered(url, sig=flipped),
        tampered(url, sig=sig.upper()),
        tampered(url, sig=sig[:-1]),
        tampered(url, sig=None),
        tampered(url, expires=None),
        tampered(url, expires=str(int(expires) + 1)),
        tampered(url, expires="abc"),
        tampered(url, expires="-1"),
        tampered(url, sig="%C3%A9" * 32),
        tampered(other["url"]).replace(other["id"], mine["id"]),  # another file's signature
        url.replace(mine["id"], "0" * 24),
    ]
    for candidate in bad:
        assert_error(client.get(candidate), 404, "not_found")
    with app.app_context():  # made an hour ago, expired since
        old = signing.signed_url(mine["id"], time.time() - 3 * 3600)
        assert not signing.verify(mine["id"], old.split("expires=")[1].split("&")[0],
                                  old.split("sig=")[1])
    assert_error(client.get(old), 404, "not_found")
    # A signed-URL request is judged by its signature alone, even with a token beside it.
    assert_error(client.get(tampered(url, sig=flipped), headers=alice.headers), 404, "not_found")


def test_signature_is_bound_to_the_secret(app, client, auth):
    alice = auth.user()
    attachment = upload(client, alice, PNG)
    secret = app.config["JWT_SECRET_KEY"]
    with app.app_context():
        app.config["JWT_SECRET_KEY"] = "another-secret-that-is-long-enough-x"
        forged = signing.signed_url(attachment["id"])
        app.config["JWT_SECRET_KEY"] = secret
    assert forged != attachment["url"]
    assert_error(client.get(forged), 404, "not_found")


# ------------------------------------------------------------------ the send interface


def test_for_send_returns_snapshots_in_order_without_duplicates(app, client, auth):
    alice = auth.user()
    a, b = upload(client, alice, PNG, b"a.png"), upload(client, alice, PDF, b"b.pdf")
    with app.app_context():
        snaps = service.for_send(ObjectId(alice.id), [b["id"], a["id"], ObjectId(b["id"])])
        assert [s["id"] for s in snaps] == [ObjectId(b["id"]), ObjectId(a["id"])]
        assert all(set(s) == SNAPSHOT_KEYS for s in snaps)
        assert snaps[0]["filename"] == "b.pdf" and snaps[0]["content_type"] == "application/pdf"
        presented = service.present(snaps[1])
        assert set(presented) == ATTACHMENT_KEYS
        assert {k: v for k, v in presented.items() if k != "url"} == \
            {k: v for k, v in a.items() if k != "url"}
        assert client.get(presented["url"]).data == PNG
        assert service.for_send(ObjectId(alice.id), []) == []
        assert service.for_send(ObjectId(alice.id), None) == []


def test_for_send_refuses_what_is_not_the_senders(app, client, auth):
    alice, bob = auth.user(), auth.user()
    mine, bobs = upload(client, alice, PNG), upload(client, bob, PNG)
    cases = [
        ([mine["id"], bobs["id"]], [f"Not an upload of yours: {bobs['id']}."]),
        (["0" * 24], [f"Not an upload of yours: {'0' * 24}."]),
        (["nope"], ["Not a valid id (24 hex characters)."]),
        ([12], ["Not a valid id (24 hex characters)."]),
        ("abc", ["Not a valid list."]),
    ]
    with app.app_context():
        for ids, messages in cases:
            with pytest.raises(ValidationError) as raised:
                service.for_send(ObjectId(alice.id), ids)
            assert raised.value.status == 422
            assert raised.value.details == {"attachments": messages}


def test_for_send_takes_at_most_ten(app, client, auth):
    alice = auth.user()
    ids = [upload(client, alice, bytes([i]) * 10)["id"] for i in range(11)]
    with app.app_context():
        assert len(service.for_send(ObjectId(alice.id), ids[:10] + ids[:3])) == 10
        with pytest.raises(ValidationError) as raised:
            service.for_send(ObjectId(alice.id), ids)
        assert raised.value.details == {"attachments": ["At most 10 attachments."]}


# ------------------------------------------------------------------ orphans


def test_orphan_sweep_removes_unsent_uploads_after_the_setting(app, client, auth):
    alice, bob = auth.user(), auth.user()
    unsent = upload(client, alice, random.Random(1).randbytes(GRIDFS_CHUNK + 1))
    sent = upload(client, alice, PNG)
    attach(app, sent, direct_message(client, alice, bob))
    with app.app_context():
        now = service.now()
        day = app.config["ATTACHMENT_ORPHAN_SECONDS"]
        assert day == 86400
        assert orphans.sweep_orphans(now + timedelta(seconds=day - 60)) == 0
        assert stored() == (2, 3)
        assert orphans.sweep_orphans(now + timedelta(seconds=day + 60)) == 1
    assert stored() == (1, 1)
    assert_error(download(client, unsent["id"], alice), 404, "not_found")
    assert download(client, sent["id"], bob).data == PNG


def test_orphan_sweep_works_in_batches(app, client, auth, monkeypatch):
    monkeypatch.setattr(orphans, "SWEEP_BATCH", 2)
    alice = auth.user()
    for i in range(5):
        upload(client, alice, bytes([i + 1]) * 5)
    with app.app_context():
        assert orphans.sweep_orphans(service.now() + timedelta(days=2)) == 5
    assert stored() == (0, 0)


class StopSweeping(Exception):
    pass


def test_the_background_sweeper_sweeps_every_interval(app, client, auth, monkeypatch):
    """The loop `start_sweeper` runs: sleep, sweep, again (driven here with a fake sleep)."""
    alice = auth.user()
    upload(client, alice, PNG)
    app.config["ATTACHMENT_ORPHAN_SECONDS"] = 1
    slept, this_thread, real_sleep = [], threading.current_thread(), socketio.sleep

    def sleep(seconds=0):
        if threading.current_thread() is not this_thread:  # another test's background task
            return real_sleep(seconds)
        slept.append(seconds)
        if len(slept) == 2:
            time.sleep(1.1)  # older than ATTACHMENT_ORPHAN_SECONDS by the second round
        if len(slept) == 3:
            raise StopSweeping

    monkeypatch.setattr(socketio, "sleep", sleep)
    with pytest.raises(StopSweeping):
        orphans._sweep_forever(app, 42)
    assert slept == [42, 42, 42]
    assert stored() == (0, 0)


def test_sweeper_is_off_in_tests_and_when_zero(app, monkeypatch):
    started = []
    monkeypatch.setattr(socketio, "start_background_task", lambda *a: started.append(a))
    monkeypatch.setattr(orphans, "_sweeper_in", None)
    orphans.start_sweeper(app)  # TestingConfig: 0
    assert started == []
    app.config["ATTACHMENT_SWEEP_SECONDS"] = 600
    orphans.start_sweeper(app)
    orphans.start_sweeper(app)  # once per process
    assert len(started) == 1 and started[0][1:] == (app, 600)


# ------------------------------------------------------------------ memory


MIB = 1024 * 1024


def test_an_upload_is_never_held_whole_in_memory(client, auth):
    """4 MiB go through while this process's extra memory stays far below the file: what
    stays allocated after (the embedded store keeps the chunks) is not counted."""
    alice = auth.user()
    big = Generated(4 * MIB)
    tracemalloc.start()
    try:
        response = post_stream(client, alice, big, big.length)
        after, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert response.status_code == 201, response.get_json()
    assert response.get_json()["attachment"]["sha256"] == big.digest()
    assert peak - after < 1.5 * MIB, (peak, after)


def test_a_download_is_streamed_chunk_by_chunk(client, auth):
    alice = auth.user()
    big = Generated(4 * MIB)
    response = post_stream(client, alice, big, big.length)
    attachment_id = response.get_json()["attachment"]["id"]
    tracemalloc.start()
    try:
        before, _ = tracemalloc.get_traced_memory()
        streamed = client.get(f"{URL}/{attachment_id}", headers=alice.headers, buffered=False)
        digest, pieces = hashlib.sha256(), 0
        for piece in streamed.response:
            digest.update(piece)
            pieces += 1
        streamed.close()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert digest.hexdigest() == big.digest()
    assert pieces >= (4 * MIB) // GRIDFS_CHUNK
    assert peak - before < 1.5 * MIB, (peak, before)


# ------------------------------------------------------------------ rate limit, settings, doc


def test_uploads_are_rate_limited_per_user():
    roomy = "1000 per minute"
    app = create_app(TestingConfig, RATELIMIT_ENABLED=True, RATELIMIT_UPLOADS="2 per minute",
                     RATELIMIT_REGISTER=roomy, RATELIMIT_LOGIN=roomy, RATELIMIT_ACCOUNT=roomy)
    client = app.test_client()
    accounts = Auth(client)
    alice, bob = accounts.user(), accounts.user()
    first = post(client, alice, body(part(b"one")))
    assert first.status_code == 201
    assert first.headers["X-RateLimit-Limit"] == "2"
    assert first.headers["X-RateLimit-Remaining"] == "1"
    assert post(client, alice, body(part(b"two"))).status_code == 201
    refused = post(client, alice, body(part(b"three")))
    assert refused.status_code == 429
    assert refused.get_json() == {"error": {"code": "rate_limited",
                                            "message": "too many uploads, slow down"}}
    assert 0 < int(refused.headers["Retry-After"]) <= 60
    assert refused.headers["X-RateLimit-Remaining"] == "0"
    assert stored() == (2, 2)
    assert post(client, bob, body(part(b"bob's"))).status_code == 201  # per user


@pytest.mark.parametrize("overrides", [
    {"RATELIMIT_UPLOADS": "lots"}, {"MAX_ATTACHMENT_BYTES": 0},
    {"ATTACHMENT_URL_SECONDS": 0}, {"ATTACHMENT_ORPHAN_SECONDS": -1},
    {"ATTACHMENT_SWEEP_SECONDS": -5},
])
def test_unusable_settings_stop_the_app(overrides):
    with pytest.raises(ConfigError):
        create_app(TestingConfig, **overrides)


def test_defaults():
    assert TestingConfig.MAX_ATTACHMENT_BYTES == 10 * MIB
    assert TestingConfig.ATTACHMENT_URL_SECONDS == 3600
    assert TestingConfig.ATTACHMENT_ORPHAN_SECONDS == 86400
    assert TestingConfig.RATELIMIT_UPLOADS == "60 per hour"


def test_openapi_documents_upload_and_download(client):
    doc = client.get("/api/openapi.json").get_json()
    upload_op = doc["paths"]["/api/chat/attachments"]["post"]
    schema = upload_op["requestBody"]["content"]["multipart/form-data"]["schema"]
    assert schema["required"] == ["file"]
    assert schema["properties"]["file"] == {"type": "string", "format": "binary"}
    assert {"201", "401", "413", "415", "422", "429"} <= set(upload_op["responses"])
    assert {"X-RateLimit-Limit", "X-RateLimit-Remaining"} <= \
        set(upload_op["responses"]["201"]["headers"])
    get_op = doc["paths"]["/api/chat/attachments/{attachment_id}"]["get"]
    assert {"200", "206", "304", "401", "404", "416"} <= set(get_op["responses"])
    assert {"ETag", "Content-Disposition", "X-Content-Type-Options"} <= \
        set(get_op["responses"]["200"]["headers"])
    assert "Content-Range" in get_op["responses"]["206"]["headers"]
    assert {p["name"] for p in get_op["parameters"]} >= {"expires", "sig", "Range",
                                                         "If-None-Match"}
    assert {} in get_op["security"] and {"bearerAuth": []} in get_op["security"]


# ------------------------------------------------------------------ the real server


@pytest.mark.live
def test_live_upload_streams_through_the_eventlet_server(live_server):
    """Over real HTTP: a 3 MiB upload (with a length, then chunked), read back whole, by range
    and through its signed URL; meanwhile other requests are answered promptly."""
    login = http_account(live_server.url, f"att{uuid.uuid4().hex[:10]}")
    headers = {"Authorization": f"Bearer {login['access_token']}"}
    url = live_server.url + URL
    data = random.Random(11).randbytes(3 * MIB)
    latencies, stop = [], threading.Event()

    def probe():
        while not stop.is_set():
            started = time.monotonic()
            requests.get(live_server.url + "/healthz", timeout=10)
            latencies.append(time.monotonic() - started)

    prober = threading.Thread(target=probe)
    prober.start()
    try:
        sized = requests.post(url, headers=headers, timeout=30,
                              files={"file": ("big.bin", data, "text/plain")})
        raw = body(part(data, b"chunked.bin"))
        chunked = requests.post(url, headers={**headers, "Content-Type": MULTIPART}, timeout=30,
                                data=(raw[i:i + 100_000] for i in range(0, len(raw), 100_000)))
    finally:
        stop.set()
        prober.join()
    for response in (sized, chunked):
        assert response.status_code == 201, response.text
        attachment = response.json()["attachment"]
        assert attachment["sha256"] == hashlib.sha256(data).hexdigest()
        assert attachment["content_type"] == "application/octet-stream"
    assert latencies and max(latencies) < 2, latencies
    whole = requests.get(url + "/" + attachment["id"], headers=headers, timeout=30)
    assert whole.status_code == 200 and whole.content == data
    ranged = requests.get(url + "/" + attachment["id"], timeout=30,
                          headers={**headers, "Range": "bytes=-1000"})
    assert ranged.status_code == 206 and ranged.content == data[-1000:]
    signed = requests.get(live_server.url + attachment["url"], timeout=30)
    assert signed.status_code == 200 and signed.content == data
    assert requests.get(url + "/" + attachment["id"], timeout=10).status_code == 401
