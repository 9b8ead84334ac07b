"""Passwords (bcrypt, off the event loop) and tokens (HS256 JWTs with jti, iat, exp, type).

This is the only module that knows about eventlet's/gevent's thread pools.
"""
import os
import threading
import uuid
from datetime import datetime, timezone

import bcrypt
import jwt as pyjwt
from flask import current_app
from flask_jwt_extended import create_access_token, create_refresh_token, decode_token
from flask_jwt_extended.exceptions import JWTExtendedException

from chatapp.errors import TokenExpired, Unauthorized

# A valid hash of a random password: login checks it when the email is unknown,
# so both failures cost one bcrypt check and answer alike.
_DUMMY_HASHES = {}


def _offload(fn, *args):
    """Run CPU-heavy `fn` in a native thread when a green runtime serves us."""
    mode = current_app.config.get("ASYNC_MODE")
    if mode == "eventlet":
        from eventlet import patcher, tpool

        if patcher.is_monkey_patched("thread"):
            with _hash_slots(current_app.config["PASSWORD_HASH_THREADS"]):
                return tpool.execute(_at_low_priority, fn, *args)
    elif mode == "gevent":
        import gevent.monkey

        if gevent.monkey.is_module_patched("threading"):
            import gevent

            return gevent.get_hub().threadpool.apply(_at_low_priority, (fn, *args))
    return fn(*args)


_pool_thread = threading.local()
_slots = {}


def _hash_slots(count):
    """A green semaphore (its waiters are served first come, first served): at most `count`
    hashes at once per process, each in a thread of eventlet's pool at low priority. With
    eventlet's 20 threads all hashing during a login storm, the relay's p99 rose 3-10x more
    than with one (bench/README.md, login storm); the likely cause is that a thread ending
    its hash takes the GIL back from the event loop, which then waits until that thread is
    scheduled among the other runnable hashing threads. One at a time also keeps the
    logins in order of arrival."""
    slots = _slots.get(count)
    if slots is None:
        from eventlet.semaphore import Semaphore

        slots = _slots[count] = Semaphore(count)
    return slots


def _at_low_priority(fn, *args):
    """In a pool thread: lower that thread's CPU priority (once), then run `fn`.

    A login costs ~0.3 s of CPU at bcrypt cost 12; at the same priority the hashing
    threads would take the core from the event loop and every socket would wait. At
    nice 19 the loop wins the core whenever it has work; logins queue instead
    (bench/README.md, login storm). Linux applies the niceness to the one thread.
    """
    if not getattr(_pool_thread, "niced", False):
        _pool_thread.niced = True
        try:
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)
        except (AttributeError, OSError):  # not Linux, or not permitted: run at normal priority
            pass
    return fn(*args)


def hash_password(password):
    rounds = current_app.config["BCRYPT_ROUNDS"]
    salt = bcrypt.gensalt(rounds)
    return _offload(bcrypt.hashpw, password.encode("utf-8"), salt).decode("ascii")


def check_password(password, password_hash):
    """True when `password` matches; with `password_hash=None` checks a dummy hash (False).

    A password over bcrypt's 72 bytes cannot match (registration refuses them, and
    bcrypt >= 5 raises on them): it costs one dummy check and fails like any other.
    """
    secret = password.encode("utf-8")
    if password_hash is None or len(secret) > 72:
        _offload(bcrypt.checkpw, secret[:72], _dummy_hash())
        return False
    return _offload(bcrypt.checkpw, secret, password_hash.encode("ascii"))


def _dummy_hash():
    rounds = current_app.config["BCRYPT_ROUNDS"]
    if rounds not in _DUMMY_HASHES:
        _DUMMY_HASHES[rounds] = _offload(bcrypt.hashpw, uuid.uuid4().bytes, bcrypt.gensalt(rounds))
    return _DUMMY_HASHES[rounds]


def new_token_id():
    return uuid.uuid4().hex


def issue_tokens(user_id, session_id, refresh_jti):
    """An access and a refresh token for one login (`sid`); the refresh token's jti is given."""
    claims = {"sid": session_id}
    access = create_access_token(identity=str(user_id), additional_claims=claims)
    refresh = create_refresh_token(
        identity=str(user_id), additional_claims={**claims, "jti": refresh_jti}
    )
    expires = current_app.config["JWT_ACCESS_TOKEN_EXPIRES"]
    return {
        "access_token": access,
        "token": access,
        "refresh_token": refresh,
        "token_type": "Bearer",
        "expires_in": int(expires.total_seconds()),
    }


def decode(raw, expected_type):
    """Verified claims of `raw` (signature, algorithm, exp, type); raises 401 errors.

    Revocation is checked by the caller (`chatapp.users.service.authenticate`).
    """
    if not raw or not isinstance(raw, str):
        raise Unauthorized()
    try:
        claims = decode_token(raw)
    except pyjwt.ExpiredSignatureError:
        raise TokenExpired() from None
    except (pyjwt.InvalidTokenError, JWTExtendedException, ValueError, TypeError):
        raise Unauthorized("invalid token") from None
    if claims.get("type") != expected_type:
        article = "an" if expected_type == "access" else "a"
        raise Unauthorized(f"{article} {expected_type} token is required")
    if not claims.get("jti") or not claims.get("sid") or not claims.get("sub"):
        raise Unauthorized("invalid token")
    return claims


def expires_at(claims):
    return datetime.fromtimestamp(claims["exp"], tz=timezone.utc)


def bearer_token(header_value):
    """The token in an `Authorization: Bearer <token>` value, else None."""
    if not header_value:
        return None
    scheme, _, token = header_value.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()
