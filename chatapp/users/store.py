"""The only code that touches the users, sessions, revoked and sockets collections."""
import re
from datetime import datetime, timezone

from pymongo import ASCENDING, ReturnDocument
from pymongo.errors import DuplicateKeyError

from chatapp.extensions import mongo

PUBLIC_FIELDS = {"password_hash": 0}


def users():
    return mongo.collection("users")


def sessions():
    return mongo.collection("sessions")


def revoked():
    return mongo.collection("revoked")


def sockets():
    return mongo.collection("sockets")


def servers():
    return mongo.collection("servers")


def ensure_indexes():
    """Declared at start-up; idempotent on MongoDB and on the embedded store."""
    users().create_index([("username_lower", ASCENDING)], unique=True, name="username_unique")
    users().create_index([("email", ASCENDING)], unique=True, name="email_unique")
    sessions().create_index([("user_id", ASCENDING)], name="sessions_by_user")
    sessions().create_index("expires_at", expireAfterSeconds=0, name="sessions_ttl")
    revoked().create_index("expires_at", expireAfterSeconds=0, name="revoked_ttl")
    sockets().create_index([("user_id", ASCENDING)], name="sockets_by_user")
    sockets().create_index([("server", ASCENDING)], name="sockets_by_server")
    sockets().create_index([("sid", ASCENDING)], name="sockets_by_login")
    sockets().create_index([("jti", ASCENDING)], name="sockets_by_token")
    sockets().create_index([("address", ASCENDING)], name="sockets_by_address")
    servers().create_index([("seen_at", ASCENDING)], name="servers_by_heartbeat")


def insert_user(doc):
    """Insert a new user; returns None when the username or email is taken (and which)."""
    try:
        users().insert_one(doc)
    except DuplicateKeyError as exc:
        return _taken_field(exc, doc)
    return None


def _taken_field(exc, doc):
    """The unique field that clashed: MongoDB names the index in `keyPattern`; mongomock
    names nothing, so look. (Matching the message text misfires when a value holds a key name.)"""
    pattern = (exc.details or {}).get("keyPattern") or {}
    if "username_lower" in pattern:
        return "username"
    if "email" in pattern:
        return "email"
    taken = users().find_one({"username_lower": doc["username_lower"]}, {"_id": 1})
    return "username" if taken else "email"


def find_user(user_id, with_secret=False):
    return users().find_one({"_id": user_id}, None if with_secret else PUBLIC_FIELDS)


def find_user_by_email(email):
    return users().find_one({"email": email})


def find_user_by_username(username):
    return users().find_one({"username_lower": username.lower()}, PUBLIC_FIELDS)


def find_users(ids):
    return list(users().find({"_id": {"$in": list(ids)}}, PUBLIC_FIELDS))


def list_users(prefix, after, limit):
    """Users ordered by lower-cased username, from the username index."""
    query = {}
    if prefix:
        query["username_lower"] = {"$regex": "^" + re.escape(prefix.lower())}
    if after:
        query.setdefault("username_lower", {})["$gt"] = after
    cursor = users().find(query, PUBLIC_FIELDS).sort("username_lower", ASCENDING).limit(limit)
    return list(cursor)


def claim_presence(user_id, online):
    """Flip the user's announced presence to `online`; True for the one caller that flipped it
    (so each change is announced once, whichever process sees it first)."""
    result = users().update_one({"_id": user_id, "presence_announced": {"$ne": online}},
                                {"$set": {"presence_announced": online}})
    return result.modified_count == 1


def set_last_seen(user_id, when):
    users().update_one({"_id": user_id}, {"$set": {"last_seen": when}})


# --- login sessions and revocation -------------------------------------------------

def create_session(session_id, user_id, refresh_jti, expires_at):
    sessions().insert_one(
        {"_id": session_id, "user_id": user_id, "refresh_jti": refresh_jti,
         "created_at": datetime.now(timezone.utc), "expires_at": expires_at}
    )


def rotate_session(session_id, old_jti, new_jti, expires_at):
    """Atomically move a session's refresh jti on; None when `old_jti` is not current.

    The session lives as long as its newest refresh token (`expires_at`): left at the
    login's expiry, the TTL index would delete it while a rotated token is still valid.
    """
    return sessions().find_one_and_update(
        {"_id": session_id, "refresh_jti": old_jti},
        {"$set": {"refresh_jti": new_jti, "expires_at": expires_at}},
        return_document=ReturnDocument.AFTER,
    )


def user_session_ids(user_id):
    return [doc["_id"] for doc in sessions().find({"user_id": user_id}, {"_id": 1})]


def revoke(token_ids, expires_at):
    """Mark jtis or session ids revoked until `expires_at` (then the TTL index drops them)."""
    for token_id in token_ids:
        revoked().update_one(
            {"_id": token_id}, {"$max": {"expires_at": expires_at}}, upsert=True
        )


def is_revoked(*token_ids):
    return revoked().find_one({"_id": {"$in": list(token_ids)}}, {"_id": 1}) is not None


# --- presence: one document per connected socket, in shared storage ------------------

def add_socket(sid, user_id, server, token_id, session_id, address=None):
    sockets().replace_one(
        {"_id": sid},
        {"_id": sid, "user_id": user_id, "server": server, "jti": token_id, "sid": session_id,
         "address": address, "connected_at": datetime.now(timezone.utc)},
        upsert=True,
    )


def remove_socket(sid):
    sockets().delete_one({"_id": sid})


def socket_ids_of_user(user_id):
    return [doc["_id"] for doc in sockets().find({"user_id": user_id}, {"_id": 1})]


def socket_ids_of_sessions(*token_ids):
    """Sockets opened with any of these login ids (sid) or token ids (jti)."""
    query = {"$or": [{"sid": {"$in": list(token_ids)}}, {"jti": {"$in": list(token_ids)}}]}
    return [doc["_id"] for doc in sockets().find(query, {"_id": 1})]


def count_sockets(user_id):
    return sockets().count_documents({"user_id": user_id})


def count_sockets_from(address):
    return sockets().count_documents({"address": address})


def online_user_ids(user_ids):
    return set(sockets().distinct("user_id", {"user_id": {"$in": list(user_ids)}}))


def remove_server_sockets(server):
    """Forget sockets of a server process that is gone; returns the user ids affected."""
    ids = sockets().distinct("user_id", {"server": server})
    sockets().delete_many({"server": server})
    return ids


# --- server processes' heartbeats (chatapp.chat.heartbeat) ---------------------------

def beat_server(server, when):
    servers().replace_one({"_id": server}, {"_id": server, "seen_at": when}, upsert=True)


def stale_servers(cutoff):
    """Servers holding sockets whose last heartbeat is older than `cutoff` (or missing)."""
    alive = set(servers().distinct("_id", {"seen_at": {"$gte": cutoff}}))
    return [server for server in sockets().distinct("server") if server not in alive]


def server_sockets(server):
    """(socket id, user id) of every socket a server process recorded."""
    return [(doc["_id"], doc["user_id"])
            for doc in sockets().find({"server": server}, {"user_id": 1})]


def forget_server(server):
    servers().delete_one({"_id": server})
