"""`/api/user/blocks[/<user_id>]`: thin views over `chatapp.blocks.service`."""
from flask import g
from flask_smorest import Blueprint

from chatapp.auth import auth_required
from chatapp.blocks import service
from chatapp.blocks.schemas import BlockListSchema, BlockStateSchema
from chatapp.errors import NotFound, ValidationError
from chatapp.openapi import error_doc
from chatapp.schemas import parse_object_id

blp = Blueprint("blocks", __name__, url_prefix="/api/user/blocks", description="Blocking")
BEARER = [{"bearerAuth": []}]
UNKNOWN = error_doc(404, "`not_found`: unknown or malformed user id")
YOURSELF = error_doc(422, "`validation_error`: the user is yourself",
                     example=ValidationError(details={"user_id": ["You cannot block yourself."]}))


def _user_id(value):
    user_id = parse_object_id(value)  # the converter let only 24 hex digits through
    if user_id is None:
        raise NotFound("user not found")
    return user_id


@blp.route("", methods=["GET"])
@auth_required
@blp.doc(security=BEARER)
@blp.alt_response(200, schema=BlockListSchema, description="The users you block, the most "
                                                           "recently blocked first")
def list_blocks():
    """Token holder: the users they block, most recent first."""
    return service.list_blocked(g.user_id)


@blp.route("/<objectid:user_id>", methods=["PUT"])
@auth_required
@blp.doc(security=BEARER)
@blp.alt_response(200, schema=BlockStateSchema, description="Blocked (also when already)")
@blp.alt_response(404, **UNKNOWN)
@blp.alt_response(422, **YOURSELF)
def block_user(user_id):
    """Token holder: block a user; they can no longer message you, add you to a group, see
    your presence, or exchange typing with you."""
    return service.block(g.user_id, _user_id(user_id))


@blp.route("/<objectid:user_id>", methods=["DELETE"])
@auth_required
@blp.doc(security=BEARER)
@blp.alt_response(200, schema=BlockStateSchema, description="Not blocked (also when it was not)")
@blp.alt_response(404, **UNKNOWN)
@blp.alt_response(422, **YOURSELF)
def unblock_user(user_id):
    """Token holder: end a block; what it held back works again (history was kept)."""
    return service.unblock(g.user_id, _user_id(user_id))
