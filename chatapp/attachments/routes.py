"""`/api/chat/attachments`: upload (multipart) and download, thin views over
`chatapp.attachments.service` (the HTTP answer of a download: `download.py`)."""
import time

from flask import current_app, g, request
from flask_smorest import Blueprint
from limits import parse_many

from chatapp import limits
from chatapp.attachments import download, orphans, service
from chatapp.attachments.multipart import FilePart
from chatapp.attachments.schemas import UPLOAD_BODY, AttachmentEnvelopeSchema
from chatapp.auth import auth_required
from chatapp.errors import UnsupportedMediaType, ValidationError
from chatapp.extensions import limiter
from chatapp.openapi import RATE_LIMIT_STATE_HEADERS, error_doc
from config import ConfigError

blp = Blueprint("attachments", __name__, url_prefix="/api/chat",
                description="Attachments: upload, download")
BEARER = [{"bearerAuth": []}]
SIGNED_OR_BEARER = [{"bearerAuth": []}, {}]  # {}: a signed URL, no Authorization header
SETTINGS = ("MAX_ATTACHMENT_BYTES", "ATTACHMENT_URL_SECONDS", "ATTACHMENT_ORPHAN_SECONDS")

limit_uploads = limiter.limit(lambda: current_app.config["RATELIMIT_UPLOADS"],
                              key_func=limits.caller_key, scope="uploads",
                              error_message="too many uploads, slow down")


@blp.record_once
def on_register(state):
    """Fail fast on unusable settings; start this process's orphan sweep."""
    config = state.app.config
    try:
        parse_many(config["RATELIMIT_UPLOADS"])
    except ValueError:
        raise ConfigError(f"RATELIMIT_UPLOADS is not a rate limit like '60 per hour': "
                          f"{config['RATELIMIT_UPLOADS']!r}") from None
    for name in SETTINGS:
        if config[name] < 1:
            raise ConfigError(f"{name} must be a positive integer, got {config[name]}")
    if config["ATTACHMENT_SWEEP_SECONDS"] < 0:
        raise ConfigError("ATTACHMENT_SWEEP_SECONDS must be 0 (never) or more, got "
                          f"{config['ATTACHMENT_SWEEP_SECONDS']}")
    orphans.start_sweeper(state.app)


def reads_own_body(view):
    """The app's JSON-body check (`chatapp.register_request_checks`) leaves this view's body
    alone: it takes multipart/form-data up to MAX_ATTACHMENT_BYTES."""
    view.reads_own_body = True
    return view


@blp.route("/attachments", methods=["POST"])
@reads_own_body
@auth_required
@blp.doc(security=BEARER, requestBody=UPLOAD_BODY)
@blp.alt_response(201, schema=AttachmentEnvelopeSchema, description="Stored",
                  headers=RATE_LIMIT_STATE_HEADERS)
@blp.alt_response(413, **error_doc(413, "`payload_too_large`: the file is over "
                                        "MAX_ATTACHMENT_BYTES (default 10 MiB)"))
@blp.alt_response(415, **error_doc(415, "`unsupported_media_type`: the body is not "
                                        "multipart/form-data",
                                   example=UnsupportedMediaType("request body must be "
                                                                "multipart/form-data")))
@blp.alt_response(422, **error_doc(422, "`validation_error` on `file`: no part named file, "
                                        "two of them, an empty file, or a body that is not "
                                        "valid multipart; nothing is stored",
                                   example=ValidationError(details={"file": [
                                       "Missing data for required field."]})))
@blp.alt_response(429, **error_doc(429))
@limit_uploads
def upload_attachment():
    """Token holder: store one file (part `file`) as their upload → 201 `{"attachment"}`.
    It can then be sent in messages (`attachments: [id]`); unsent, it is deleted after
    ATTACHMENT_ORPHAN_SECONDS."""
    part = FilePart(request, current_app.config["MAX_ATTACHMENT_BYTES"], service.too_large)
    return {"attachment": service.upload(g.user_id, part.filename, part.chunks())}, 201


HEADER = {"schema": {"type": "string"}}
BYTES = {"*/*": {"schema": {"type": "string", "format": "binary"}}}
FILE_HEADERS = {
    "Content-Disposition": {**HEADER, "description": "`inline` for images browsers display, "
                            "else `attachment`; `filename` (ASCII) and `filename*=UTF-8''...`"},
    "ETag": {**HEADER, "description": "the quoted sha256"},
    "X-Content-Type-Options": {**HEADER, "description": "`nosniff`"},
    "Accept-Ranges": {**HEADER, "description": "`bytes`"},
    "Cache-Control": {**HEADER, "description": "`private, no-cache` with a token; `private, "
                      "max-age=<seconds left>` with a signed URL"},
}
DOWNLOAD_PARAMETERS = [
    {"name": "expires", "in": "query", "schema": {"type": "string", "pattern": "^[0-9]{1,12}$"},
     "description": "signed URL (from `Attachment.url`): its expiry, unix seconds"},
    {"name": "sig", "in": "query", "schema": {"type": "string"},
     "description": "signed URL: its signature; a wrong, expired or foreign one is 404"},
    {"name": "Range", "in": "header", "schema": {"type": "string"}, "description": (
        "one byte range: `bytes=0-99`, `bytes=100-`, `bytes=-100` (206); past the end 416; "
        "malformed, other units or several ranges are ignored (200)")},
    {"name": "If-Range", "in": "header", "schema": {"type": "string"},
     "description": "the ETag: the range applies only if the file is that one"},
    {"name": "If-None-Match", "in": "header", "schema": {"type": "string"},
     "description": "the ETag held: 304 when it is this file's"},
]
DOWNLOAD_RESPONSES = {
    "200": {"description": "The bytes, with the type sniffed at upload", "content": BYTES,
            "headers": FILE_HEADERS},
    "206": {"description": "The byte range asked for", "content": BYTES, "headers": {
        **FILE_HEADERS, "Content-Range": {**HEADER, "description": "`bytes a-b/size`"}}},
    "304": {"description": "Not modified: `If-None-Match` named this file's ETag",
            "headers": {"ETag": FILE_HEADERS["ETag"]}},
    "416": {"description": "Range not satisfiable: it starts past the end (`Content-Range: "
                           "bytes */size`)",
            "content": {"application/json": {
                "schema": {"$ref": "#/components/schemas/Error"},
                "example": download.RangeNotSatisfiable(
                    "range not satisfiable: the file has 100 bytes").to_dict()}},
            "headers": {"Content-Range": {**HEADER, "description": "`bytes */size`"}}},
}


@blp.route("/attachments/<attachment_id>", methods=["GET"])
@blp.doc(security=SIGNED_OR_BEARER, parameters=DOWNLOAD_PARAMETERS,
         responses=DOWNLOAD_RESPONSES)
@blp.alt_response(404, **error_doc(404, "`not_found`: unknown or malformed id, not yours to "
                                        "read, or a signed URL that is wrong or expired"))
def download_attachment(attachment_id):
    """Its uploader and the members of a conversation it was sent in (a token), or anyone
    with its signed URL (`Attachment.url`, no token): the bytes."""
    if "sig" in request.args or "expires" in request.args:
        expires, sig = request.args.get("expires"), request.args.get("sig")
        doc = service.signed(attachment_id, expires, sig)
        return download.file_response(request, doc, f"private, max-age={_seconds_left(expires)}")
    return _download_with_token(attachment_id)


@auth_required
def _download_with_token(attachment_id):
    return download.file_response(request, service.readable(g.user_id, attachment_id),
                                  "private, no-cache")


def _seconds_left(expires):
    return max(0, int(expires) - int(time.time()))
