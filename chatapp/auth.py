"""Bearer-token authentication for REST views (sockets authenticate at connect)."""
from functools import wraps

from bson import ObjectId
from flask import g, request

from chatapp.errors import Unauthorized
from chatapp.security import bearer_token
from chatapp.users.service import authenticate


def auth_required(view):
    """Require a valid, unrevoked access token; sets `g.user_id` and `g.claims`."""

    @wraps(view)
    def wrapper(*args, **kwargs):
        raw = bearer_token(request.headers.get("Authorization"))
        if raw is None:
            raise Unauthorized("missing Authorization: Bearer token")
        g.claims = authenticate(raw, "access")
        g.user_id = ObjectId(g.claims["sub"])
        return view(*args, **kwargs)

    return wrapper
