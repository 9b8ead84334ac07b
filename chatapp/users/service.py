"""Accounts: registration, login, token rotation and revocation, profiles.

Both transports call this module: REST views in `routes.py`, the socket connect
handler through `authenticate`.
"""
import base64
import binascii
from datetime import datetime, timezone

from bson import ObjectId
from flask import current_app

from chatapp import realtime, security
from chatapp.errors import (
    Conflict, InvalidCredentials, NotFound, TokenExpired, TokenRevoked, ValidationError,
)
from chatapp.blocks import store as block_store
from chatapp.schemas import iso, parse_object_id
from chatapp.conversations import store as conversation_store
from chatapp.users import emails, store


def public_user(doc, online=False, own=False, presence=True):
    """The contract's `User`: never the password hash; email only on the caller's own record;
    without `presence`, `online`/`last_seen` read `false`/`null`."""
    user_id = str(doc["_id"])
    out = {
        "id": user_id,
        "_id": user_id,
        "username": doc["username"],
        "created_at": iso(doc.get("created_at")),
        "online": bool(online) and presence,
        "last_seen": iso(doc.get("last_seen")) if presence else None,
    }
    if own:
        out["email"] = doc["email"]
    return out


def public_users(docs, viewer_id=None):
    """Public records; `online`/`last_seen` only of the viewer and of users who share a
    direct conversation or a small group with them (those `presence` events reach) and have
    not blocked them, else `false`/`null`."""
    if not docs:
        return []
    visible = presence_visible_to(viewer_id, [d["_id"] for d in docs])
    online = store.online_user_ids(visible) if visible else set()
    return [public_user(d, d["_id"] in online, own=d["_id"] == viewer_id,
                        presence=d["_id"] in visible) for d in docs]


def presence_visible_to(viewer_id, user_ids):
    """Which of `user_ids` the viewer may see online: themself and their presence peers,
    except those who blocked the viewer (one query for all of them)."""
    if viewer_id is None:
        return set()
    peers = conversation_store.shared_with(viewer_id, current_app.config["SMALL_GROUP_MAX"])
    visible = {u for u in user_ids if u == viewer_id or u in peers}
    others = visible - {viewer_id}
    if others:
        visible -= block_store.blocker_ids(viewer_id, among=others)
    return visible


def register(username, email, password):
    now = datetime.now(timezone.utc)
    doc = {
        "_id": ObjectId(),
        "username": username,
        "username_lower": username.lower(),
        "email": email,  # canonical already (chatapp.users.emails, through the schema)
        "password_hash": security.hash_password(password),
        "created_at": now,
        "last_seen": None,
    }
    taken = store.insert_user(doc)
    if taken:
        raise Conflict(f"{taken} is already taken", details={taken: ["already taken"]})
    return public_user(doc, own=True)


def login(email, password):
    """Tokens for valid credentials; unknown email and wrong password fail alike."""
    doc = None
    for form in emails.lookup_forms(email):
        doc = store.find_user_by_email(form)
        if doc is not None:
            break
    ok = security.check_password(password, doc["password_hash"] if doc else None)
    if not doc or not ok:
        raise InvalidCredentials()
    tokens = _start_session(doc["_id"])
    return {
        "message": "login successful",
        **tokens,
        "userId": str(doc["_id"]),
        "user": public_user(doc, store.count_sockets(doc["_id"]) > 0, own=True),
    }


def _start_session(user_id):
    session_id = security.new_token_id()
    refresh_jti = security.new_token_id()
    tokens = security.issue_tokens(user_id, session_id, refresh_jti)
    expires = datetime.now(timezone.utc) + current_app.config["JWT_REFRESH_TOKEN_EXPIRES"]
    store.create_session(session_id, user_id, refresh_jti, expires)
    return tokens


def authenticate(raw_token, token_type="access"):
    """Verified, unrevoked claims of a token; the one check REST and sockets share."""
    claims = security.decode(raw_token, token_type)
    if store.is_revoked(claims["jti"], claims["sid"]):
        raise TokenRevoked()
    return claims


def refresh(raw_refresh_token):
    """Rotate a login's refresh token; a rotated one presented again revokes the login."""
    claims = authenticate(raw_refresh_token, "refresh")
    new_jti = security.new_token_id()
    if store.rotate_session(claims["sid"], claims["jti"], new_jti, _session_expiry(claims)) is None:
        # Reuse of an already-rotated token: someone holds a copy. End the whole login,
        # sockets included (events do not re-check revocation).
        store.revoke([claims["sid"]], _session_expiry(claims))
        realtime.disconnect_sockets(store.socket_ids_of_sessions(claims["sid"]))
        raise TokenRevoked("refresh token was already used; this login has been revoked")
    tokens = security.issue_tokens(ObjectId(claims["sub"]), claims["sid"], new_jti)
    tokens.pop("token_type")
    return tokens


def _session_expiry(claims):
    return datetime.now(timezone.utc) + current_app.config["JWT_REFRESH_TOKEN_EXPIRES"]


def logout(access_claims, raw_refresh_token=None):
    """Revoke this access token and its login (so its refresh token dies too)."""
    to_revoke = [access_claims["jti"], access_claims["sid"]]
    refresh_claims = _unexpired_refresh_claims(raw_refresh_token)
    if refresh_claims:
        if refresh_claims["sub"] != access_claims["sub"]:
            raise ValidationError(details={"refresh_token": ["belongs to another user"]})
        to_revoke += [refresh_claims["jti"], refresh_claims["sid"]]
    store.revoke(to_revoke, _session_expiry(access_claims))
    realtime.disconnect_sockets(store.socket_ids_of_sessions(access_claims["sid"], *to_revoke))


def _unexpired_refresh_claims(raw):
    """Claims of a refresh token sent to logout; None when absent or already expired."""
    if not raw:
        return None
    try:
        return security.decode(raw, "refresh")
    except TokenExpired:
        return None  # dead already: it must not stop the logout


def logout_all(user_id):
    """Revoke every login the user holds and close all their sockets."""
    session_ids = store.user_session_ids(user_id)
    store.revoke(session_ids, datetime.now(timezone.utc)
                 + current_app.config["JWT_REFRESH_TOKEN_EXPIRES"])
    realtime.disconnect_sockets(store.socket_ids_of_user(user_id))


def get_user(user_id, viewer_id):
    """A user by id; 404 for unknown or malformed ids."""
    oid = user_id if isinstance(user_id, ObjectId) else parse_object_id(user_id)
    doc = store.find_user(oid) if oid else None
    if doc is None:
        raise NotFound("user not found")
    return public_users([doc], viewer_id)[0]


# Users are never deleted, so an id once found stays valid: each process remembers the ids
# it has seen (bounded) and spares every message, typing event and receipt a database read.
_known_users = set()
KNOWN_USERS_MAX = 100_000


def require_user(user_id):
    """404 unless the user exists; for services that need the peer to exist."""
    if user_id in _known_users:
        return
    if store.find_user(user_id) is None:
        raise NotFound("user not found")
    if len(_known_users) >= KNOWN_USERS_MAX:
        _known_users.clear()
    _known_users.add(user_id)


def list_users(viewer_id, limit=50, cursor=None, q=None):
    limit = min(limit, 100)
    after = _decode_cursor(cursor) if cursor else None
    docs = store.list_users(q, after, limit + 1)
    more = len(docs) > limit
    docs = docs[:limit]
    next_cursor = _encode_cursor(docs[-1]["username_lower"]) if more else None
    return {"users": public_users(docs, viewer_id), "next_cursor": next_cursor}


def _encode_cursor(username_lower):
    return base64.urlsafe_b64encode(username_lower.encode()).decode().rstrip("=")


def _decode_cursor(cursor):
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        value = base64.urlsafe_b64decode(padded.encode("ascii")).decode("utf-8")
    except (binascii.Error, UnicodeError, ValueError):
        value = None
    if not value or len(value) > 32:
        raise ValidationError(details={"cursor": ["Not a valid cursor."]})
    return value
