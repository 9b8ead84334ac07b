"""The change feed's query and answer (REST through flask-smorest)."""
from marshmallow import Schema, fields, validate

from chatapp.chat.schemas import MessageSchema
from chatapp.schemas import InputSchema, Timestamp

LIMIT_MAX = 500
EVENT_TYPES = ("member_added", "member_removed", "role_changed", "title_changed", "read",
               "delivered")


class ChangesQuerySchema(InputSchema):
    since = fields.Integer(required=True, validate=validate.Range(min=0), metadata={
        "description": "the conversation version the client holds (0: nothing yet); above the "
                       "conversation's version is 422"})
    limit = fields.Integer(load_default=100, validate=validate.Range(min=1), metadata={
        "description": f"at most this many versions (default 100); above {LIMIT_MAX} is "
                       f"clamped to {LIMIT_MAX}"})


class EventSchema(Schema):
    type = fields.String(required=True, validate=validate.OneOf(EVENT_TYPES))
    version = fields.Integer(required=True)
    at = Timestamp(required=True)
    user = fields.String(metadata={"description": "the member added, removed, re-roled, or "
                                                  "whose marker moved"})
    by = fields.String(metadata={"description": "who made a membership or title change"})
    up_to = fields.String(metadata={"description": "read/delivered: the message id the marker "
                                                   "moved to (a `read` covers delivery too)"})
    title = fields.String(metadata={"description": "title_changed: the new title"})
    role = fields.String(metadata={"description": "member_added/role_changed: the role now"})


class ChangesSchema(Schema):
    messages = fields.List(fields.Nested(MessageSchema), required=True, metadata={
        "description": "every message created or changed in these versions, once, in its "
                       "current state, ordered by its latest change"})
    events = fields.List(fields.Nested(EventSchema), required=True, metadata={
        "description": "membership, marker and title changes in these versions, in order"})
    version = fields.Integer(required=True, metadata={
        "description": "where the next call starts (`since`): every version up to it is in "
                       "this answer or an earlier one"})
    more = fields.Boolean(required=True, metadata={
        "description": "true: call again from `version` (more changes, or one still being "
                       "written)"})
