"""`GET /api/chat/search`: a thin view over `chatapp.search.service`."""
from flask import g
from flask_smorest import Blueprint

from chatapp.auth import auth_required
from chatapp.chat.routes import BEARER, paged_response
from chatapp.chat.schemas import MessageSchema
from chatapp.openapi import error_doc
from chatapp.search import service
from chatapp.search.schemas import SearchQuerySchema

blp = Blueprint("search", __name__, url_prefix="/api/chat", description="Search")


@blp.route("/search", methods=["GET"])
@auth_required
@blp.arguments(SearchQuerySchema, location="query")
@blp.doc(security=BEARER)
@blp.alt_response(200, schema=MessageSchema(many=True), description=(
    "Matching messages the caller can see now (current memberships, never deleted ones), "
    "newest first. `Link: </api/chat/search?...&before=<id>>; rel=\"next\"` when more exist."),
    headers={"Link": {"schema": {"type": "string"}, "description": "next page, when there is one"}})
@blp.alt_response(404, **error_doc(404, "`not_found`: `conversation` is not a conversation of "
                                        "yours"))
@blp.alt_response(422, **error_doc(422, "`validation_error`: `q` empty, blank or over 200 "
                                        "characters, `limit` below 1, a malformed id, or a "
                                        "`before` you cannot see"))
def search_messages(query):
    """Token holder: messages of their conversations whose content has every word of `q`."""
    return paged_response(*service.search_messages(
        g.user_id, query["q"], query.get("conversation"), query["limit"], query.get("before")),
        replaced=("before",))
