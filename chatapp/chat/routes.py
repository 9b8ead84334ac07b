"""`/api/chat`: thin views over `chatapp.chat.service`."""
from urllib.parse import urlencode

from flask import g, request
from flask_smorest import Blueprint
from werkzeug.routing import PathConverter

from chatapp import limits
from chatapp.auth import auth_required
from chatapp.chat import history, reactions, receipts, service
from chatapp.chat.schemas import (
    ConversationSendSchema, EditMessageSchema, HistoryQuerySchema, MessageEnvelopeSchema,
    MessageSchema, ReadSchema, SendMessageSchema, UpdatedSchema,
)
from chatapp.errors import Conflict
from chatapp.openapi import RATE_LIMIT_STATE_HEADERS, error_doc

blp = Blueprint("chat", __name__, url_prefix="/api/chat", description="Messages")
BEARER = [{"bearerAuth": []}]
HISTORY_DOC = {"description": "Messages, newest first. `Link: <url>; rel=\"next\"` when more exist.",
               "headers": {"Link": {"schema": {"type": "string"},
                                    "description": "next page, when there is one"}}}


@blp.route("/send", methods=["POST"])
@auth_required
@blp.arguments(SendMessageSchema)
@blp.doc(security=BEARER)
@blp.alt_response(201, schema=MessageEnvelopeSchema, description="Stored and delivered",
                  headers=RATE_LIMIT_STATE_HEADERS)
@blp.alt_response(200, schema=MessageEnvelopeSchema, description="A retry: the first message",
                  headers=RATE_LIMIT_STATE_HEADERS)
@blp.alt_response(403, **error_doc(403, "`forbidden`: `sender` is not the token's user, or "
                                        "one of the pair blocked the other"))
@blp.alt_response(404, **error_doc(404, "`not_found`: unknown receiver"))
@blp.alt_response(429, **error_doc(429))
@limits.limit_send
def send_message(body):
    """Token holder: send a message as themself; delivered in real time to both sides."""
    message, created = service.send_message(g.user_id, body)
    return {"message": message}, 201 if created else 200


def paged_response(items, next_cursor, replaced=("before", "after")):
    """A bare array, with `Link: </path?...>; rel="next"` when more exist (a path: never a
    host taken from the request)."""
    headers = {}
    if next_cursor:
        args = {k: v for k, v in request.args.items() if k not in replaced}
        args.update(next_cursor)
        headers["Link"] = f'<{request.path}?{urlencode(args)}>; rel="next"'
    return items, 200, headers



@blp.route("/messages/<id>", methods=["GET"])
@auth_required
@blp.arguments(HistoryQuerySchema, location="query")
@blp.doc(security=BEARER)
@blp.alt_response(200, schema=MessageSchema(many=True), **HISTORY_DOC)
@blp.alt_response(403, **error_doc(403, "`forbidden`: not your own id"))
@blp.alt_response(404, **error_doc(404, "`not_found`: malformed id"))
def list_user_messages(query, id):  # noqa: A002 - one {id} path shared with PATCH/DELETE
    """The user themself (`id` = their user id): their messages in every conversation."""
    return paged_response(*history.user_history(
        g.user_id, id, query["limit"], query.get("before"), query.get("after")))


@blp.route("/messages/<sender_id>/<receiver_id>", methods=["GET"])
@auth_required
@blp.arguments(HistoryQuerySchema, location="query")
@blp.doc(security=BEARER)
@blp.alt_response(200, schema=MessageSchema(many=True), **HISTORY_DOC)
@blp.alt_response(403, **error_doc(403, "`forbidden`: you are neither of the two"))
@blp.alt_response(404, **error_doc(404, "`not_found`: malformed id"))
def list_conversation_messages(query, sender_id, receiver_id):
    """Either participant: the conversation's messages in `seq` order, newest first."""
    return paged_response(*history.conversation_history(
        g.user_id, sender_id, receiver_id, query["limit"], query.get("before"),
        query.get("after")))


@blp.route("/conversations/<conversation>/messages", methods=["GET"])
@auth_required
@blp.arguments(HistoryQuerySchema, location="query")
@blp.doc(security=BEARER)
@blp.alt_response(200, schema=MessageSchema(many=True), **HISTORY_DOC)
@blp.alt_response(404, **error_doc(404, "`not_found`: not a conversation of yours"))
def list_messages_of_conversation(query, conversation):
    """A member: the conversation's messages in `seq` order, newest first."""
    return paged_response(*history.conversation_messages(
        g.user_id, conversation, query["limit"], query.get("before"), query.get("after")))


@blp.route("/conversations/<conversation>/messages", methods=["POST"])
@auth_required
@blp.arguments(ConversationSendSchema)
@blp.doc(security=BEARER)
@blp.alt_response(201, schema=MessageEnvelopeSchema, description="Stored and delivered",
                  headers=RATE_LIMIT_STATE_HEADERS)
@blp.alt_response(200, schema=MessageEnvelopeSchema, description="A retry: the first message",
                  headers=RATE_LIMIT_STATE_HEADERS)
@blp.alt_response(403, **error_doc(403, "`forbidden`: a direct conversation where one of the "
                                        "pair blocked the other"))
@blp.alt_response(404, **error_doc(404, "`not_found`: not a conversation of yours"))
@blp.alt_response(429, **error_doc(429))
@limits.limit_send
def send_to_conversation(body, conversation):
    """A member: send to the conversation; delivered to every socket of every member."""
    message, created = service.send_message(g.user_id, {**body, "conversation": conversation})
    return {"message": message}, 201 if created else 200


@blp.route("/conversations/<conversation>/read", methods=["POST"])
@auth_required
@blp.arguments(ReadSchema, required=False)  # no body: mark everything read
@blp.doc(security=BEARER)
@blp.alt_response(200, schema=UpdatedSchema, description="How many messages were marked")
@blp.alt_response(404, **error_doc(404, "`not_found`: not a conversation of yours, or an "
                                        "unknown or malformed peer id"))
def mark_conversation_read(body, conversation):
    """A member (`conversation` = its id, or a peer's user id): move your read marker
    forward; the other members get `read`."""
    return receipts.mark_read(g.user_id, conversation, body.get("up_to"))


@blp.route("/messages/<id>", methods=["PATCH"])
@auth_required
@blp.arguments(EditMessageSchema)
@blp.doc(security=BEARER)
@blp.alt_response(200, schema=MessageEnvelopeSchema, description="The edited Message")
@blp.alt_response(403, **error_doc(403, "`forbidden`: not the sender, or a direct conversation "
                                        "where one of the pair blocked the other"))
@blp.alt_response(404, **error_doc(404, "`not_found`: unknown or malformed message id"))
@blp.alt_response(409, **error_doc(409, "`conflict`: the message is deleted",
                                   example=Conflict("a deleted message cannot be edited",
                                                    details={"message": ["deleted"]})))
@blp.alt_response(429, **error_doc(429, "`rate_limited`: edits count against the send budget"))
@limits.limit_send
def edit_message(body, id):  # noqa: A002
    """The sender (`id` = message id): replace the content; both sides get `message updated`."""
    return {"message": service.edit_message(g.user_id, id, body["content"])}


@blp.route("/messages/<id>", methods=["DELETE"])
@auth_required
@blp.doc(security=BEARER)
@blp.alt_response(200, schema=MessageEnvelopeSchema, description="The blanked Message")
@blp.alt_response(403, **error_doc(403, "`forbidden`: not the sender"))
@blp.alt_response(404, **error_doc(404, "`not_found`: unknown or malformed message id"))
@blp.alt_response(429, **error_doc(429, "`rate_limited`: deletions count against the send "
                                        "budget"))
@limits.limit_send
def delete_message(id):  # noqa: A002
    """The sender (`id` = message id): blank it (`deleted: true`); both sides are told."""
    return {"message": service.delete_message(g.user_id, id)}


class EmojiConverter(PathConverter):
    """Any text as an emoji path segment, `/` (sent as %2F) and line breaks included: the
    emoji check answers 422, not the router 404."""
    regex = r"[\s\S]+?"
    part_isolating = False  # may span `/`


blp.record_once(lambda state: state.app.url_map.converters.setdefault("emoji", EmojiConverter))

REACTION_ERRORS = (
    (403, error_doc(403, "`forbidden`: a direct conversation where one of the pair blocked "
                         "the other")),
    (404, error_doc(404, "`not_found`: not a message of a conversation of yours")),
    (409, error_doc(409, "`conflict`: the message is deleted",
                    example=Conflict("a deleted message takes no reactions",
                                     details={"message": ["deleted"]}))),
    (422, error_doc(422, "`validation_error`: not 1-16 code points without whitespace or "
                         "control characters, or a 21st different emoji")),
    (429, error_doc(429, "`rate_limited`: reactions count against the send budget")),
)


def _reaction_route(view):
    """The shared documentation of both reaction routes."""
    for status, doc in REACTION_ERRORS:
        view = blp.alt_response(status, **doc)(view)
    view = blp.alt_response(200, schema=MessageEnvelopeSchema, description=(
        "The Message; members get `message updated` when it changed"))(view)
    return blp.doc(security=BEARER)(view)


@blp.route("/messages/<id>/reactions/<emoji:emoji>", methods=["PUT"])
@auth_required
@_reaction_route
@limits.limit_send
def add_reaction(id, emoji):  # noqa: A002
    """A member: add your reaction (`emoji` URL-encoded); repeating it changes nothing."""
    return {"message": reactions.add_reaction(g.user_id, id, emoji)}


@blp.route("/messages/<id>/reactions/<emoji:emoji>", methods=["DELETE"])
@auth_required
@_reaction_route
@limits.limit_send
def remove_reaction(id, emoji):  # noqa: A002
    """A member: remove your reaction; removing one you have not made changes nothing."""
    return {"message": reactions.remove_reaction(g.user_id, id, emoji)}
