"""Message request and response schemas, shared by REST (flask-smorest) and socket events."""
from marshmallow import Schema, fields, validate, validates_schema
from marshmallow import ValidationError as MarshmallowError

from chatapp.attachments.schemas import AttachmentSchema
from chatapp.schemas import (
    ErrorBodySchema, InputSchema, ObjectIdField, Timestamp, error_codes,
)
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
    reply_to = ObjectIdField(metadata={
        "description": "the id of a message of the same conversation this one answers "
                       "(else 422)"})
    attachments = fields.List(ObjectIdField(), validate=validate.Length(max=10), metadata={
        "description": "ids of your own uploads (POST /api/chat/attachments), at most 10, "
                       "else 422"})


class ConversationSendSchema(InputSchema):
    """A send to a conversation (`POST .../conversations/<conversation>/messages`)."""
    content = SendMessageSchema._declared_fields["content"]
    client_id = SendMessageSchema._declared_fields["client_id"]
    reply_to = SendMessageSchema._declared_fields["reply_to"]
    attachments = SendMessageSchema._declared_fields["attachments"]


def exactly_one(*names):
    """A schema check: exactly one of `names` is given (a socket payload names its target)."""
    def check(self, data, **kwargs):
        given = [n for n in names if n in data]
        if len(given) != 1:
            raise MarshmallowError(f"Give exactly one of {' or '.join(names)}.", names[0])
    check.exactly_one = names  # for the AsyncAPI document (chatapp/asyncapi.py)
    return validates_schema(check)


class SocketSendSchema(InputSchema):
    """`chat message`: to a user (`receiver`, the 1:1 shape) or a `conversation`."""
    receiver = ObjectIdField()
    conversation = ObjectIdField(metadata={"description": "a conversation id (or a peer's id)"})
    content = SendMessageSchema._declared_fields["content"]
    client_id = SendMessageSchema._declared_fields["client_id"]
    sender = SendMessageSchema._declared_fields["sender"]
    reply_to = SendMessageSchema._declared_fields["reply_to"]
    attachments = SendMessageSchema._declared_fields["attachments"]
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
    reply_to = fields.Nested(lambda: ReplyPreviewSchema(), required=True, allow_none=True,
                             metadata={"description": "the message this one answers, as it is "
                                                      "now (follows its edits and deletion)"})
    attachments = fields.List(fields.Nested(AttachmentSchema), required=True, metadata={
        "description": "the files sent with it (empty once it is deleted)"})
    reactions = fields.Dict(keys=fields.String(), values=fields.List(fields.String()),
                            required=True, metadata={
                                "description": "emoji -> user ids in the order they reacted",
                                "example": {"\U0001f44d": ["665f1b2c9d1e8a0012345678"]}})


class ReplyPreviewSchema(Schema):
    id = fields.String(required=True)
    sender = fields.String(required=True, allow_none=True)
    content = fields.String(required=True, metadata={
        "description": "the original's first 100 code points; empty once it is deleted"})
    deleted = fields.Boolean(required=True)


class MessageEnvelopeSchema(Schema):
    message = fields.Nested(MessageSchema, required=True)


class UpdatedSchema(Schema):
    updated = fields.Integer(required=True)
    version = fields.Integer(metadata={
        "description": "the conversation version of your marker's move (absent when it did "
                       "not move): your other tabs get no `read` event of your own"})


# --- Socket.IO only: the handshake, the original API's events, acks, server events --------
# Described in the AsyncAPI document (chatapp/asyncapi.py) with the input schemas above.

class HandshakeAuthSchema(Schema):
    """The CONNECT packet's `auth` (socket.io-client's `auth` option). The token may come
    instead as header `access_token` (the original API), `Authorization: Bearer`, or
    query `?token=`."""
    token = fields.String(metadata={"description": "an access token"})


def _refusal_code():
    return fields.String(required=True, metadata={
        "enum": error_codes(), "example": "unauthorized", "description": "the error code"})


class RefusalDataSchema(Schema):
    code = _refusal_code()


class ConnectRefusalSchema(Schema):
    """A refused connection: the CONNECT_ERROR packet (socket.io-client: a `connect_error`
    with `err.message` and `err.data.code`). Codes: `unauthorized`, `token_expired`,
    `token_revoked` (missing, invalid, expired, revoked token), `rate_limited` (a connection
    cap), `unavailable` (database down)."""
    message = _refusal_code()
    data = fields.Nested(RefusalDataSchema, required=True)


# `join`'s payload is a bare string, not an object.
JOIN_USER_ID = fields.String(required=True, metadata={
    "description": "your own user id (you are in your room from connect on: ok, nothing "
                   "more); anyone else's is `forbidden`", "example": "665f1b2c9d1e8a0012345678"})
ENVELOPE_EVENTS = ("join", "chat message")


class EnvelopeSchema(InputSchema):
    """`message`: the original API's envelope, `{"event", "data"}` sent as a JSON string
    (the object itself is accepted too), dispatched as that event."""
    event = fields.String(required=True, validate=validate.OneOf(ENVELOPE_EVENTS))
    data = fields.Raw(allow_none=True, metadata={  # checked by that event's handler
        "description": "that event's payload: a user id for `join`, a SocketSend object for "
                       "`chat message`"})


class OkAckSchema(Schema):
    """The ack of an event that succeeded."""
    ok = fields.Boolean(required=True, validate=validate.OneOf([True]))


class MessageAckSchema(OkAckSchema):
    """A send's ack: the stored Message (on a `client_id` retry, the first one)."""
    message = fields.Nested(MessageSchema, required=True)


class UpdatedAckSchema(OkAckSchema):
    """A receipt's ack: how many messages it marked."""
    updated = UpdatedSchema._declared_fields["updated"]
    version = UpdatedSchema._declared_fields["version"]


class ErrorAckSchema(Schema):
    """The ack of an event that failed: the REST error body with `ok: false` (an unknown
    event name gets `not_found`)."""
    ok = fields.Boolean(required=True, validate=validate.OneOf([False]))
    error = fields.Nested(ErrorBodySchema, required=True)


class TypingEventSchema(Schema):
    """`typing`: someone who shares a conversation with you started or stopped typing
    (`typing: false` is also sent when a `typing: true` lapses, after 5 s)."""
    sender = fields.String(required=True, metadata={"description": "the typing user's id"})
    conversation = fields.String(metadata={
        "description": "the conversation's id; absent for a pair with no direct "
                       "conversation yet (who share a group)"})
    typing = fields.Boolean(required=True)


class DeliveredEventSchema(Schema):
    """`delivered`: a member's client has the conversation's messages up to `up_to`
    (direct conversations and small groups)."""
    receiver = fields.String(required=True, metadata={"description": "who received them"})
    conversation = fields.String(required=True)
    up_to = fields.String(required=True, metadata={"description": "a message id"})
    delivered_at = Timestamp(required=True)
    version = fields.Integer(metadata={
        "description": "the conversation version of the marker's move; absent when the "
                       "member's marker did not move (only a direct conversation's "
                       "messages were marked)"})


class ReadEventSchema(Schema):
    """`read`: a member read the conversation up to `up_to`."""
    reader = fields.String(required=True, metadata={"description": "who read"})
    conversation = fields.String(required=True)
    up_to = fields.String(required=True, metadata={"description": "a message id"})
    read_at = Timestamp(required=True)
    version = DeliveredEventSchema._declared_fields["version"]


class PresenceSchema(Schema):
    """`presence`: a user who shares a direct conversation or a small group with you came
    online (first socket) or went offline (last socket closed)."""
    user = fields.String(required=True)
    online = fields.Boolean(required=True)
    last_seen = Timestamp(required=True, allow_none=True)  # null when coming online
