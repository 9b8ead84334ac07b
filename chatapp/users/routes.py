"""`/api/user`: thin views over `chatapp.users.service`."""
from flask import g, request
from flask_smorest import Blueprint

from chatapp import limits
from chatapp.auth import auth_required
from chatapp.errors import InvalidCredentials, Unauthorized
from chatapp.openapi import RATE_LIMIT_STATE_HEADERS, error_doc
from chatapp.schemas import MessageOnlySchema
from chatapp.security import bearer_token
from chatapp.users import service
from chatapp.users.schemas import (
    LoginResponseSchema, LoginSchema, RefreshTokenSchema, RegisterResponseSchema,
    RegisterSchema, TokensSchema, UserListQuerySchema, UserPageSchema, UserSchema,
)

blp = Blueprint("user", __name__, url_prefix="/api/user", description="Accounts and tokens")
BEARER = [{"bearerAuth": []}]


@blp.route("/register", methods=["POST"])
@blp.arguments(RegisterSchema)
@blp.doc(security=[])
@blp.alt_response(201, schema=RegisterResponseSchema, description="Created",
                  headers=RATE_LIMIT_STATE_HEADERS)
@blp.alt_response(409, **error_doc(409, "`conflict`: username or email taken; `details` names it"))
@blp.alt_response(429, **error_doc(429))
@limits.limit_register
def register_user(body):
    """Anyone: create an account; returns the new User."""
    user = service.register(body["username"], body["email"], body["password"])
    return {"message": "user registered", "user": user}, 201


@blp.route("/login", methods=["POST"])
@blp.arguments(LoginSchema)
@blp.doc(security=[])
@blp.alt_response(200, schema=LoginResponseSchema, description="Tokens",
                  headers=RATE_LIMIT_STATE_HEADERS)
@blp.alt_response(401, **error_doc(
    401, "`invalid_credentials`: unknown email or wrong password (one answer for both)",
    example=InvalidCredentials()))
@blp.alt_response(429, **error_doc(429))
@limits.limit_login
def login_user(body):
    """Anyone: exchange email and password for access and refresh tokens."""
    return service.login(body["email"], body["password"])


@blp.route("/refresh", methods=["POST"])
@blp.arguments(RefreshTokenSchema, required=False)  # the token may come in the header
@blp.doc(security=[{"bearerAuth": []}, {}])
@blp.alt_response(200, schema=TokensSchema, description="New tokens; the old refresh token is spent")
@blp.alt_response(401, **error_doc(401, "missing, invalid, expired or revoked refresh token; "
                                   "a rotated one presented again revokes its login"))
def refresh_tokens(body):
    """Holder of a refresh token (header or body): rotate it for new tokens."""
    # The body wins: HTTP clients often attach the access token to every request.
    raw = body.get("refresh_token") or bearer_token(request.headers.get("Authorization"))
    if raw is None:
        raise Unauthorized("a refresh token is required")
    return service.refresh(raw)


@blp.route("/logout", methods=["POST"])
@auth_required
@blp.arguments(RefreshTokenSchema, required=False)
@blp.doc(security=BEARER)
@blp.alt_response(200, schema=MessageOnlySchema, description="Logged out")
def logout_user(body):
    """Token holder: revoke this token and its login (and the refresh token if sent)."""
    service.logout(g.claims, body.get("refresh_token"))
    return {"message": "logged out"}


@blp.route("/logout-all", methods=["POST"])
@blp.doc(security=BEARER)
@blp.alt_response(200, schema=MessageOnlySchema, description="Every login revoked")
@auth_required
def logout_all_devices():
    """Token holder: revoke every token of the user and disconnect their sockets."""
    service.logout_all(g.user_id)
    return {"message": "logged out everywhere"}


@blp.route("/me", methods=["GET"])
@blp.doc(security=BEARER)
@blp.alt_response(200, schema=UserSchema, description="The caller's User, with email")
@auth_required
def get_me():
    """Token holder: their own User record."""
    return service.get_user(g.user_id, g.user_id)


@blp.route("", methods=["GET"])
@auth_required
@blp.arguments(UserListQuerySchema, location="query")
@blp.doc(security=BEARER)
@blp.alt_response(200, schema=UserPageSchema, description="A page of users")
def list_users(query):
    """Token holder: users by username, paginated (`limit`, `cursor`, `q` prefix)."""
    return service.list_users(g.user_id, query["limit"], query.get("cursor"), query.get("q"))


@blp.route("/<objectid:user_id>", methods=["GET"])
@blp.doc(security=BEARER)
@blp.alt_response(200, schema=UserSchema, description="The User")
@blp.alt_response(404, **error_doc(404, "`not_found`: unknown or malformed id"))
@auth_required
def get_user(user_id):
    """Token holder: one user's public record; 404 for unknown or malformed ids."""
    return service.get_user(user_id, g.user_id)
