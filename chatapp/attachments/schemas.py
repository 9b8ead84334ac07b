"""Attachment response schemas, and the upload's multipart body as OpenAPI describes it."""
from marshmallow import Schema, fields

from chatapp.schemas import OBJECT_ID_PATTERN, Timestamp


class AttachmentSchema(Schema):
    id = fields.String(required=True, metadata={"pattern": OBJECT_ID_PATTERN})
    filename = fields.String(required=True, metadata={
        "description": "as uploaded, as data: control and bidi characters replaced by `_`, "
                       "trimmed, at most 255 code points; never a path"})
    content_type = fields.String(required=True, metadata={
        "description": "sniffed from the bytes (never the client's); "
                       "`application/octet-stream` when unknown", "example": "image/png"})
    size = fields.Integer(required=True, metadata={"description": "bytes"})
    sha256 = fields.String(required=True, metadata={
        "description": "hex SHA-256 of the bytes; also the download's ETag",
        "pattern": "^[0-9a-f]{64}$"})
    url = fields.String(required=True, metadata={
        "description": "signed download path, valid up to ATTACHMENT_URL_SECONDS without an "
                       "Authorization header (for `<img src>`)",
        "example": "/api/chat/attachments/6553f1c2a1b2c3d4e5f60718?expires=1767225600&sig=..."})
    created_at = Timestamp(required=True)


class AttachmentEnvelopeSchema(Schema):
    attachment = fields.Nested(AttachmentSchema, required=True)


UPLOAD_BODY = {
    "required": True,
    "description": "Exactly one part named `file`, with a filename in its Content-Disposition; "
                   "its bytes at most MAX_ATTACHMENT_BYTES (default 10 MiB). Other parts are "
                   "ignored; the part's own Content-Type is not read.",
    "content": {"multipart/form-data": {
        "schema": {"type": "object", "required": ["file"],
                   "properties": {"file": {"type": "string", "format": "binary"}}},
    }},
}
