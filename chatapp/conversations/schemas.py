"""Conversation request and response schemas (REST through flask-smorest, and events)."""
from marshmallow import Schema, fields, post_load, validate

from chatapp.chat.schemas import MessageSchema
from chatapp.schemas import InputSchema, ObjectIdField, Timestamp
from chatapp.users.schemas import UserSchema

TITLE_MAX = 100
ROLES = ("owner", "admin", "member")


class Title(fields.String):
    """1-100 characters once trimmed; stored trimmed."""

    def _deserialize(self, value, attr, data, **kwargs):
        text = super()._deserialize(value, attr, data, **kwargs).strip()
        if not text:
            raise self.make_error("blank")
        if len(text) > TITLE_MAX:
            raise self.make_error("too_long")
        return text

    default_error_messages = {"blank": "Must not be blank.",
                              "too_long": f"At most {TITLE_MAX} characters."}


def _title(**kwargs):
    return Title(required=True, metadata={
        "description": f"1 to {TITLE_MAX} characters, trimmed", "example": "Weekend trip",
        "pattern": r"\S", "maxLength": 1000}, **kwargs)


class CreateGroupSchema(InputSchema):
    title = _title()
    members = fields.List(ObjectIdField(), required=True, metadata={
        "description": "user ids besides the creator (duplicates and the creator are ignored); "
                       "at most MAX_GROUP_MEMBERS in all"})


class RenameSchema(InputSchema):
    title = _title()


class AddMembersSchema(InputSchema):
    user_ids = fields.List(ObjectIdField(), required=True, validate=validate.Length(min=1))


class RoleSchema(InputSchema):
    role = fields.String(required=True, validate=validate.OneOf(ROLES))


class ConversationListQuerySchema(InputSchema):
    type = fields.String(validate=validate.OneOf(("direct", "group")),
                         metadata={"description": "only direct or only group conversations"})
    limit = fields.Integer(load_default=100, validate=validate.Range(min=1), metadata={
        "description": "page size (default 100); above 200 is clamped to 200"})
    cursor = fields.String(validate=validate.Length(max=200),
                           metadata={"description": "opaque, from the previous page's Link"})

    @post_load
    def clamp(self, data, **kwargs):
        data["limit"] = min(data["limit"], 200)
        return data


class MemberSchema(Schema):
    user = fields.Nested(UserSchema, required=True)
    role = fields.String(required=True, validate=validate.OneOf(ROLES))
    joined_at = Timestamp(required=True)
    read_up_to = fields.Integer(required=True, metadata={"description": "a seq; 0 = nothing"})
    delivered_up_to = fields.Integer(required=True)


class ConversationSchema(Schema):
    id = fields.String(required=True)
    type = fields.String(required=True, validate=validate.OneOf(("direct", "group")))
    title = fields.String(required=True, allow_none=True)
    created_by = fields.String(required=True)
    created_at = Timestamp(required=True)
    member_count = fields.Integer(required=True)
    members = fields.List(fields.Nested(MemberSchema), metadata={
        "description": "on GET of one conversation and in answers to changes; not in lists"})
    my_role = fields.String(allow_none=True, metadata={
        "description": "the caller's role; absent in `conversation` events (one payload for "
                       "every member: read `members`)"})
    version = fields.Integer(required=True)
    last_message = fields.Nested(MessageSchema, required=True, allow_none=True)
    unread_count = fields.Integer(metadata={"description": "absent in `conversation` events"})
    read_up_to = fields.Integer(metadata={"description": "the caller's read marker (a seq)"})


class ConversationEnvelopeSchema(Schema):
    conversation = fields.Nested(ConversationSchema, required=True, allow_none=True,
                                 metadata={"description": "null after leaving"})


class ConversationEntrySchema(Schema):
    user = fields.Nested(UserSchema, required=True, allow_none=True,
                         metadata={"description": "the peer of a direct conversation; null "
                                                  "for a group"})
    last_message = fields.Nested(MessageSchema, required=True, allow_none=True)
    unread_count = fields.Integer(required=True)
    conversation = fields.Nested(ConversationSchema, required=True)


EVENT_TYPES = ("created", "updated", "member_added", "member_removed", "role_changed")


class ConversationEventSchema(Schema):
    """`conversation`: a group was created or renamed, or its members or roles changed; to
    every member, and to the member just removed."""
    type = fields.String(required=True, validate=validate.OneOf(EVENT_TYPES))
    conversation = fields.Nested(ConversationSchema, required=True)
    user = fields.String(metadata={"description": "the member added, removed or re-roled"})
    by = fields.String(required=True, metadata={"description": "who made the change"})
    version = fields.Integer(required=True, metadata={
        "description": "the conversation version of this change"})
