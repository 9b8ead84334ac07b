"""Message request and response schemas, shared by REST (flask-smorest) and socket events."""
from marshmallow import Schema, fields, validate, validates_schema
from marshmallow import ValidationError as MarshmallowError

from chatapp.schemas import InputSchema, ObjectIdField, Timestamp
from chatapp.users.schemas import UserSchema


class SendMessageSchema(InputSchema):
    receiver = ObjectIdField(required=True, metadata={"example": "665f1b2c9d1e8a0012345678"})
    content = fields.String(required=True, metadata={
        "description": "at most MAX_MESSAGE_LENGTH code points as sent (surrounding "
                       "whitespace included), with a visible character; stored as sent",
        "pattern": r"\S", "example": "hello"})  # pattern: a non-whitespace character somewhere
    client_id = fields.String(validate=validate.Length(min=1, max=64), metadata={
        "description": "idempotency key chosen by the client; a retry returns the first message"})
    sender = fields.String(validate=validate.Length(max=64), metadata={
        "description": "optional, original API; must equal the token's user (else 403)"})


class ConversationSendSchema(InputSchema):
    """A send to a conversation (`POST .../conversations/<conversation>/messages`)."""
    content = SendMessageSchema._declared_fields["content"]
    client_id = SendMessageSchema._declared_fields["client_id"]


def exactly_one(*names):
    """A schema check: exactly one of `names` is given (a socket payload names its target)."""
    def check(self, data, **kwargs):
        given = [n for n in names if n in data]
        if len(given) != 1:
            raise MarshmallowError(f"Give exactly one of {' or '.join(names)}.", names[0])
    return validates_schema(check)


class SocketSendSchema(InputSchema):
    """`chat message`: to a user (`receiver`, the 1:1 shape) or a `conversation`."""
    receiver = ObjectIdField()
    conversation = ObjectIdField(metadata={"description": "a conversation id (or a peer's id)"})
    content = SendMessageSchema._declared_fields["content"]
    client_id = SendMessageSchema._declared_fields["client_id"]
    sender = SendMessageSchema._declared_fields["sender"]
    one_target = exactly_one("receiver", "conversation")


class EditMessageSchema(InputSchema):
    content = fields.String(required=True, metadata={
        "description": "as in SendMessage", "pattern": r"\S", "example": "hello, edited"})


class ReadSchema(InputSchema):
    up_to = ObjectIdField(metadata={"description": "mark up to this message id (default all)"})


class SocketReadSchema(ReadSchema):
    peer = ObjectIdField()
    conversation = ObjectIdField()
    one_target = exactly_one("peer", "conversation")


class DeliveredSchema(InputSchema):
    peer = ObjectIdField()
    conversation = ObjectIdField()
    up_to = ObjectIdField(required=True)
    one_target = exactly_one("peer", "conversation")


class StrictBoolean(fields.Boolean):
    """JSON true/false only: 1, 0 and "true" are not booleans (1 == True in Python)."""

    def _deserialize(self, value, attr, data, **kwargs):
        if not isinstance(value, bool):
            raise self.make_error("invalid")
        return value


class TypingSchema(InputSchema):
    receiver = ObjectIdField()
    conversation = ObjectIdField()
    typing = StrictBoolean(required=True)
    one_target = exactly_one("receiver", "conversation")


class HistoryQuerySchema(InputSchema):
    limit = fields.Integer(load_default=50, validate=validate.Range(min=1), metadata={
        "description": "page size (default 50); above 200 is clamped to 200"})
    before = ObjectIdField(metadata={"description": "messages older than this id"})
    after = ObjectIdField(metadata={"description": "messages newer than this id (catch-up); "
                                                  "not together with `before`"})

    @validates_schema
    def one_cursor(self, data, **kwargs):
        if "before" in data and "after" in data:
            raise MarshmallowError("Use either before or after, not both.", "after")


class MessageSchema(Schema):
    id = fields.String(required=True, metadata={"example": "665f1b2c9d1e8a0012345679"})
    _id = fields.String(required=True, data_key="_id")
    seq = fields.Integer(required=True)
    sender = fields.String(required=True)
    receiver = fields.String(required=True, allow_none=True,
                             metadata={"description": "null in a group"})
    content = fields.String(required=True)
    timestamp = Timestamp(required=True)
    client_id = fields.String()
    delivered_at = Timestamp(required=True, allow_none=True)
    read_at = Timestamp(required=True, allow_none=True)
    edited_at = Timestamp(required=True, allow_none=True)
    deleted = fields.Boolean(required=True)
    conversation = fields.String(required=True, metadata={"description": "its conversation's id"})
    version = fields.Integer(required=True, metadata={
        "description": "the conversation version of the message's latest change"})


class MessageEnvelopeSchema(Schema):
    message = fields.Nested(MessageSchema, required=True)




class UpdatedSchema(Schema):
    updated = fields.Integer(required=True)
