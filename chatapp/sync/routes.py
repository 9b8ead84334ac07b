"""`/api/chat/conversations/<conversation>/changes`: a thin view over `chatapp.sync.service`."""
from flask import g
from flask_smorest import Blueprint

from chatapp.auth import auth_required
from chatapp.chat.routes import BEARER
from chatapp.openapi import error_doc
from chatapp.sync import service
from chatapp.sync.schemas import ChangesQuerySchema, ChangesSchema

blp = Blueprint("sync", __name__, url_prefix="/api/chat",
                description="Sync: catching up on everything that changed")


@blp.route("/conversations/<conversation>/changes", methods=["GET"])
@auth_required
@blp.arguments(ChangesQuerySchema, location="query")
@blp.doc(security=BEARER)
@blp.alt_response(200, schema=ChangesSchema, description=(
    "Everything after `since`, in version order. A version is never answered while a lower "
    "one of the conversation can still appear."))
@blp.alt_response(404, **error_doc(404, "`not_found`: not a conversation of yours"))
@blp.alt_response(422, **error_doc(422, "`validation_error`: `since` above the "
                                        "conversation's version, or a malformed query"))
def list_changes(query, conversation):
    """A member: the messages and events of a conversation after version `since`."""
    return service.changes(g.user_id, conversation, query["since"], query["limit"])
