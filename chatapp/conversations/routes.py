"""`/api/chat/groups` and `/api/chat/conversations[/<conversation>[/members]]`: thin views
over `chatapp.conversations` (messages of a conversation: `chatapp.chat.routes`)."""
from flask import g
from flask_smorest import Blueprint

from chatapp import limits
from chatapp.auth import auth_required
from chatapp.chat.routes import BEARER, paged_response
from chatapp.conversations import listing, members, service
from chatapp.conversations.schemas import (
    AddMembersSchema, ConversationEntrySchema, ConversationEnvelopeSchema,
    ConversationListQuerySchema, ConversationSchema, CreateGroupSchema, RenameSchema, RoleSchema,
)
from chatapp.errors import Conflict, NotFound
from chatapp.openapi import RATE_LIMIT_STATE_HEADERS, error_doc
from chatapp.schemas import parse_object_id

blp = Blueprint("conversations", __name__, url_prefix="/api/chat",
                description="Conversations: direct and group")
NOT_YOURS = error_doc(404, "`not_found`: not a conversation of yours (strangers and former "
                           "members cannot tell it from one that does not exist)")
DIRECT = error_doc(409, "`conflict`: a direct conversation's membership and title never change",
                   example=Conflict("a direct conversation's membership and title never change",
                                    details={"conversation": ["direct"]}))


def _user_id(value):
    user_id = parse_object_id(value)
    if user_id is None:
        raise NotFound("user not found")
    return user_id


@blp.route("/groups", methods=["POST"])
@auth_required
@blp.arguments(CreateGroupSchema)
@blp.doc(security=BEARER)
@blp.alt_response(201, schema=ConversationEnvelopeSchema, description="Created",
                  headers=RATE_LIMIT_STATE_HEADERS)
@blp.alt_response(403, **error_doc(403, "`forbidden`: a listed user blocked you (nothing "
                                        "created)"))
@blp.alt_response(404, **error_doc(404, "`not_found`: unknown user ids (nothing created)"))
@blp.alt_response(429, **error_doc(429))
@limits.limit_groups
def create_group(body):
    """Token holder: a group with them as owner; every member gets `conversation` created."""
    return {"conversation": members.create_group(g.user_id, body["title"], body["members"])}, 201


@blp.route("/conversations", methods=["GET"])
@auth_required
@blp.arguments(ConversationListQuerySchema, location="query")
@blp.doc(security=BEARER)
@blp.alt_response(200, schema=ConversationEntrySchema(many=True), description=(
    "Most recent activity first. `Link: </api/chat/conversations?cursor=...>; rel=\"next\"` "
    "when more exist."), headers={"Link": {"schema": {"type": "string"},
                                           "description": "next page, when there is one"}})
def list_conversations(query):
    """Token holder: their conversations, direct and group, with last message and unread."""
    entries, cursor = listing.list_entries(g.user_id, query.get("type"), query["limit"],
                                           query.get("cursor"))
    return paged_response(entries, {"cursor": cursor} if cursor else None, replaced=("cursor",))


@blp.route("/conversations/<conversation>", methods=["GET"])
@auth_required
@blp.doc(security=BEARER)
@blp.alt_response(200, schema=ConversationSchema, description="With its members")
@blp.alt_response(404, **NOT_YOURS)
def get_conversation(conversation):
    """A member (`conversation` = its id, or a peer's user id): the Conversation."""
    return service.get_conversation(g.user_id, conversation)


@blp.route("/conversations/<conversation>", methods=["PATCH"])
@auth_required
@blp.arguments(RenameSchema)
@blp.doc(security=BEARER)
@blp.alt_response(200, schema=ConversationEnvelopeSchema, description="Renamed")
@blp.alt_response(403, **error_doc(403, "`forbidden`: not the owner or an admin"))
@blp.alt_response(404, **NOT_YOURS)
@blp.alt_response(409, **DIRECT)
def rename_conversation(body, conversation):
    """A group's owner or admin: change its title; members get `conversation` updated."""
    return {"conversation": members.rename(g.user_id, conversation, body["title"])}


@blp.route("/conversations/<conversation>/members", methods=["POST"])
@auth_required
@blp.arguments(AddMembersSchema)
@blp.doc(security=BEARER)
@blp.alt_response(200, schema=ConversationEnvelopeSchema, description="Members added",
                  headers=RATE_LIMIT_STATE_HEADERS)
@blp.alt_response(403, **error_doc(403, "`forbidden`: not the owner or an admin, or a listed "
                                        "user blocked you (nothing added)"))
@blp.alt_response(404, **error_doc(404, "`not_found`: not a conversation of yours, or unknown "
                                        "user ids (nothing added)"))
@blp.alt_response(409, **DIRECT)
@blp.alt_response(429, **error_doc(429))
@limits.limit_groups
def add_members(body, conversation):
    """A group's owner or admin: add users; every member gets `conversation` member_added."""
    return {"conversation": members.add_members(g.user_id, conversation, body["user_ids"])}


@blp.route("/conversations/<conversation>/members/<user_id>", methods=["DELETE"])
@auth_required
@blp.doc(security=BEARER)
@blp.alt_response(200, schema=ConversationEnvelopeSchema,
                  description="Removed; `conversation` is null when you left")
@blp.alt_response(403, **error_doc(403, "`forbidden`: removing another member without being "
                                        "owner/admin, or an admin removing the owner or an admin"))
@blp.alt_response(404, **NOT_YOURS)
@blp.alt_response(409, **DIRECT)
def remove_member(conversation, user_id):
    """Owner/admin: remove a member; anyone: leave (their own id). `member_removed` goes to
    the remaining members and the removed user."""
    return {"conversation": members.remove_member(g.user_id, conversation, _user_id(user_id))}


@blp.route("/conversations/<conversation>/members/<user_id>", methods=["PATCH"])
@auth_required
@blp.arguments(RoleSchema)
@blp.doc(security=BEARER)
@blp.alt_response(200, schema=ConversationEnvelopeSchema, description="Role changed")
@blp.alt_response(403, **error_doc(403, "`forbidden`: not the owner"))
@blp.alt_response(404, **NOT_YOURS)
@blp.alt_response(409, **DIRECT)
def change_role(body, conversation, user_id):
    """The group's owner: make a member admin or member, or give `owner` (transfer)."""
    return {"conversation": members.change_role(g.user_id, conversation, _user_id(user_id),
                                                body["role"])}
