"""`GET /api/asyncapi.json`: the AsyncAPI 3 document of every Socket.IO event.

Generated, as the OpenAPI document is, from marshmallow schemas by apispec's marshmallow
plugin (the converter flask-smorest uses; its OpenAPI 3.1 output is JSON Schema, which
AsyncAPI 3 schemas are): client events from the very schemas their handlers load
(`chatapp.chat.events`), acks and server events from the output schemas beside them.
The tables below only pair event names with schemas; the descriptions are the handlers'
and the schemas' docstrings. The document describes the server: `receive` operations are
client -> server events (each with its ack as the reply), `send` operations server -> client.

A plain Flask blueprint, not a flask-smorest one: like `/api/openapi.json` itself, the
document is not a REST operation and stays out of the OpenAPI document.
"""
import inspect
from dataclasses import dataclass

from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin, resolver
from flask import Blueprint, current_app, jsonify
from marshmallow import Schema

from chatapp.chat import events
from chatapp.chat.schemas import (
    JOIN_USER_ID, ConnectRefusalSchema, DeliveredEventSchema, ErrorAckSchema,
    HandshakeAuthSchema, MessageAckSchema, MessageSchema, OkAckSchema, PresenceSchema,
    ReadEventSchema, TypingEventSchema, UpdatedAckSchema,
)
from chatapp.conversations.schemas import ConversationEventSchema

ASYNCAPI_VERSION = "3.0.0"
blp = Blueprint("asyncapi", __name__)


@dataclass(frozen=True)
class ClientEvent:
    name: str  # the Socket.IO event name
    handler: object  # its @socketio.on handler (docstring = description)
    payload: object  # the schema (instance) the handler loads, or a field for a bare value
    acks: tuple  # schemas of its ok ack(s); every event may also answer ErrorAck


@dataclass(frozen=True)
class ServerEvent:
    name: str
    payload: type
    description: str = ""  # else the payload schema's docstring


CLIENT_EVENTS = (
    ClientEvent("join", events.on_join, JOIN_USER_ID, (OkAckSchema,)),
    ClientEvent("chat message", events.on_chat_message, events.send_schema, (MessageAckSchema,)),
    ClientEvent("message", events.on_message_envelope, events.envelope_schema,
                (OkAckSchema, MessageAckSchema)),
    ClientEvent("typing", events.on_typing, events.typing_schema, (OkAckSchema,)),
    ClientEvent("delivered", events.on_delivered, events.delivered_schema, (UpdatedAckSchema,)),
    ClientEvent("read", events.on_read, events.read_schema, (UpdatedAckSchema,)),
)
SERVER_EVENTS = (
    ServerEvent("chat message", MessageSchema, "A new message in one of your conversations: "
                "to every socket of every member except the sending one, which gets the ack."),
    ServerEvent("message updated", MessageSchema, "A message was edited: the whole Message, "
                "to every member."),
    ServerEvent("message deleted", MessageSchema, "A message was deleted (content blanked, "
                "`deleted: true`): to every member, once."),
    ServerEvent("typing", TypingEventSchema),
    ServerEvent("delivered", DeliveredEventSchema),
    ServerEvent("read", ReadEventSchema),
    ServerEvent("presence", PresenceSchema),
    ServerEvent("conversation", ConversationEventSchema),
)
ACKS = (OkAckSchema, MessageAckSchema, UpdatedAckSchema, ErrorAckSchema)
SECURITY_SCHEMES = {
    "bearerAuth": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT",
                   "description": "`Authorization: Bearer <access token>` on the handshake"},
    "accessTokenHeader": {"type": "httpApiKey", "in": "header", "name": "access_token",
                          "description": "the original API's header"},
    "tokenQuery": {"type": "httpApiKey", "in": "query", "name": "token",
                   "description": "`?token=<access token>`; prefer `auth: {token}`"},
}


@blp.route("/api/asyncapi.json", methods=["GET"])
def asyncapi_json():
    """Anyone: the AsyncAPI 3 document of the Socket.IO events."""
    document = current_app.extensions.get("chatapp.asyncapi")
    if document is None:
        document = current_app.extensions["chatapp.asyncapi"] = build_document(current_app)
    return jsonify(document)


def build_document(app):
    """The whole document (a dict) for `app`'s configuration."""
    converter = SchemaConverter(app)
    messages, operations = {}, {}
    channel_messages = {"socket": {}, "ack": {}}

    def add(channel, key, payload, description, name=None):
        """A message in components and in `channel`; returns the operations' `$ref` to it."""
        messages[key] = {**({"name": name, "title": name} if name else {}),
                         "payload": payload, "description": description}
        channel_messages[channel][key] = {"$ref": f"#/components/messages/{key}"}
        return {"$ref": f"#/channels/{channel}/messages/{key}"}

    ack_refs = {schema: add("ack", f"ack.{camel(resolver(schema).removesuffix('Ack'))}",
                            converter.ref(schema), doc(schema)) for schema in ACKS}
    for event in CLIENT_EVENTS:
        key = camel(event.name)
        ref = add("socket", f"client.{key}", converter.payload(event.payload),
                  doc(event.handler), event.name)
        acks = [ack_refs[schema] for schema in (*event.acks, ErrorAckSchema)]
        operations[f"receive{key[0].upper()}{key[1:]}"] = operation(
            "receive", event.name, doc(event.handler), [ref], reply=("ack", acks))
    for event in SERVER_EVENTS:
        key, description = camel(event.name), event.description or doc(event.payload)
        ref = add("socket", f"server.{key}", converter.ref(event.payload), description,
                  event.name)
        operations[f"send{key[0].upper()}{key[1:]}"] = operation(
            "send", event.name, description, [ref])
    operations["receiveConnect"] = connect_operation(converter, add)
    return {
        "asyncapi": ASYNCAPI_VERSION,
        "info": info(app),
        "defaultContentType": "application/json",
        "servers": servers(app),
        "channels": channels(channel_messages),
        "operations": operations,
        "components": {"schemas": converter.schemas(), "messages": messages,
                       "securitySchemes": SECURITY_SCHEMES},
    }


def connect_operation(converter, add):
    """The handshake: a CONNECT packet with `auth`, refused with a CONNECT_ERROR."""
    auth = add("socket", "client.connect", converter.ref(HandshakeAuthSchema),
               doc(HandshakeAuthSchema), "connect")
    refusal = add("socket", "server.connectError", converter.ref(ConnectRefusalSchema),
                  doc(ConnectRefusalSchema), "connect_error")
    description = (f"{doc(events.on_connect)} {doc(events.handshake_token)} Accepted: the "
                   "CONNECT answer carries the socket id; refused: the reply.")
    return operation("receive", "connect", description, [auth], reply=("socket", [refusal]))


def operation(action, title, description, messages, reply=None):
    """`reply`: (channel, message refs) of what answers a received event."""
    out = {"action": action, "channel": {"$ref": "#/channels/socket"}, "title": title,
           "description": description, "messages": messages}
    if reply:
        channel, replies = reply
        out["reply"] = {"channel": {"$ref": f"#/channels/{channel}"}, "messages": replies}
    return out


def info(app):
    return {
        "title": f"{app.config['API_TITLE']} real time",
        "version": app.config["API_VERSION"],
        "description": (
            "Socket.IO v5 (socket.io-client 4.x) events of chatapp. Authenticate once, at "
            "connect (`receiveConnect`). Every client event answers through the Socket.IO "
            "acknowledgement when the client asks for one (`emitWithAck`, or a callback): "
            "`{\"ok\": true, ...}` or `{\"ok\": false, \"error\": {\"code\", \"message\", "
            "\"details\"?}}`, the REST error codes. A token that expires while connected: "
            "the next event gets `token_expired` and the socket is closed. The REST API is "
            "described by /api/openapi.json."),
    }


def servers(app):
    return {"chatapp": {
        "host": "{host}", "protocol": "ws", "pathname": "/socket.io",
        "title": "chatapp",
        "description": "Socket.IO v5 (Engine.IO 4): HTTP long-polling upgraded to WebSocket, "
                       "or WebSocket alone; `wss` behind TLS. The token goes in `auth: "
                       "{token}` (the CONNECT packet, see `receiveConnect`) or in one of "
                       "these schemes.",
        "variables": {"host": {"default": f"localhost:{app.config.get('PORT', 8000)}",
                               "description": "where chatapp serves HTTP"}},
        "security": [{"$ref": f"#/components/securitySchemes/{name}"}
                     for name in SECURITY_SCHEMES],
    }}


def channels(channel_messages):
    return {
        "socket": {
            "address": "/", "title": "Socket.IO namespace /",
            "messages": channel_messages["socket"],
            "description": "Every event travels on the default namespace; each socket is in "
                           "its user's room from connect on (a user may have many sockets).",
        },
        "ack": {
            "address": None, "title": "Socket.IO acknowledgement",
            "messages": channel_messages["ack"],
            "description": "The answer to one client event, on the same socket: the "
                           "client's ack callback (or `emitWithAck`'s promise).",
        },
    }


class SchemaConverter:
    """marshmallow -> JSON Schema with apispec's marshmallow plugin, in a spec of its own
    (so the OpenAPI document's components stay REST-only)."""

    def __init__(self, app):
        self.plugin = MarshmallowPlugin()
        self.spec = APISpec(app.config["API_TITLE"], app.config["API_VERSION"],
                            app.config["OPENAPI_VERSION"], plugins=[self.plugin])

    def ref(self, schema):
        """A `$ref` to the component of `schema` (a class or an instance), added once."""
        return self.plugin.converter.resolve_nested_schema(schema)

    def payload(self, payload):
        """A client event's payload: a schema, the envelope (also as JSON text), or a field."""
        if not isinstance(payload, Schema):
            return self.plugin.converter.field2property(payload)
        ref = self.ref(payload)
        if payload is events.envelope_schema:
            return {"oneOf": [{"type": "string", "contentMediaType": "application/json",
                               "description": "the envelope as JSON text (the original API)"},
                              ref]}
        return ref

    def schemas(self):
        """Every component, each `exactly_one` check of a schema as a `oneOf` of `required`."""
        out = self.spec.to_dict()["components"]["schemas"]
        for (cls, *_), name in self.plugin.converter.refs.items():
            names = exactly_one(cls)
            if names:
                out[name]["oneOf"] = [{"required": [n]} for n in names]
        return out


def exactly_one(cls):
    """The field names of a schema class's `chatapp.chat.schemas.exactly_one` check, if any."""
    for attr in dir(cls):
        names = getattr(getattr(cls, attr, None), "exactly_one", None)
        if names:
            return names
    return None


def camel(name):
    """`chat message` -> `chatMessage`, `MessageAck` -> `messageAck`: names as keys."""
    first, *rest = name.split()
    return first[0].lower() + first[1:] + "".join(word.capitalize() for word in rest)


def doc(obj):
    """An object's docstring as one paragraph."""
    return " ".join((inspect.getdoc(obj) or "").split())
