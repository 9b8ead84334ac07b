"""Blocking response schemas (the calls take no body: the user is in the path)."""
from marshmallow import Schema, fields

from chatapp.users.schemas import UserSchema


class BlockStateSchema(Schema):
    user = fields.Nested(UserSchema, required=True, metadata={
        "description": "the user blocked or unblocked"})
    blocked = fields.Boolean(required=True, metadata={
        "description": "whether you block this user now"})
    blocked_at = fields.String(required=True, allow_none=True, metadata={
        "format": "date-time", "example": "2026-11-24T10:15:30.123Z",
        "description": "when the block started (blocking again keeps the first time); null "
                       "when not blocked"})


class BlockListSchema(Schema):
    users = fields.List(fields.Nested(UserSchema), required=True, metadata={
        "description": "the users you block, the most recently blocked first"})
