"""Rate limits (Flask-Limiter), shared by every process through RATELIMIT_STORAGE_URI.

- register: per client address and per account (the email in the body); login: every
  attempt per address, and failed ones per (address, account), so someone else's wrong
  guesses never lock an account's owner out;
- group creations and member additions: per user, one budget (`RATELIMIT_GROUPS`);
- socket connections: per user (`RATELIMIT_CONNECT`), refused `rate_limited` at connect;
- message sends, edits and deletions: per user, one budget for REST (`POST /api/chat/send`,
  group sends, `PATCH`/`DELETE /api/chat/messages/<id>`) and sockets (`chat message`), so a
  client cannot double its rate by switching transport or flood its peers with edits.

REST breaches raise Flask-Limiter's 429, which leaves through the one error envelope
(`chatapp.errors`) with `Retry-After` and `X-RateLimit-*`; sockets get the same code in
the ack. Limits are settings (`RATELIMIT_REGISTER`, `RATELIMIT_LOGIN`,
`RATELIMIT_ACCOUNT`, `RATELIMIT_SEND`, `RATELIMIT_GROUPS`); `RATELIMIT_ENABLED=false`
turns all off.
"""
import functools
import logging
import time

from flask import current_app, g, request
from flask_limiter.util import get_remote_address
from limits import parse_many

from chatapp import metrics
from chatapp import rate_storage  # noqa: F401 - memory:// is its storage from now on (see there)
from chatapp.errors import RateLimited
from chatapp.users.emails import lookup_forms
from chatapp.extensions import limiter
from config import ConfigError

log = logging.getLogger(__name__)

SETTINGS = ("RATELIMIT_REGISTER", "RATELIMIT_LOGIN", "RATELIMIT_ACCOUNT", "RATELIMIT_SEND",
            "RATELIMIT_GROUPS", "RATELIMIT_CONNECT")
SEND_SCOPE = "send_message"


def init_app(app):
    for name in SETTINGS:
        try:
            parse_many(app.config[name])
        except ValueError:
            raise ConfigError(f"{name} is not a rate limit like '10 per minute': "
                              f"{app.config[name]!r}") from None
    # Registered first, so it runs after Flask-Limiter's own header injection.
    app.after_request(retry_after_only_when_refused)
    limiter.init_app(app)


def retry_after_only_when_refused(response):
    """Flask-Limiter sends Retry-After with every limited response; it means "wait" only on a 429."""
    if response.status_code != 429:
        response.headers.pop("Retry-After", None)
    return response


def _setting(name):
    return lambda: current_app.config[name]


def account_key():
    """The account a register/login body names (validated before the limit is counted)."""
    body = request.get_json(silent=True) or {}
    email = body.get("email")
    if not isinstance(email, str) or not email.strip():
        return "-"
    return lookup_forms(email)[0]  # one budget for every spelling of one address


def caller_key():
    return str(g.user_id)


def _compose(*decorators):
    def apply(view):
        for decorator in reversed(decorators):
            view = decorator(view)
        return view

    return apply


# Innermost decorators of their views: they run after authentication and validation.
limit_register = _compose(
    limiter.limit(_setting("RATELIMIT_REGISTER"), scope="address",
                  error_message="too many registrations from this address, try again later"),
    limiter.limit(_setting("RATELIMIT_ACCOUNT"), key_func=account_key, scope="account",
                  error_message="too many attempts for this account, try again later"),
)
def address_account_key():
    """The client address and the account it tries: failed logins are counted per pair."""
    return f"{get_remote_address()}|{account_key()}"


# Logins: every attempt per address, and failed ones per (address, account). Not per account
# alone: then anyone who knows an email could lock its owner out with wrong guesses.
limit_login = _compose(
    limiter.limit(_setting("RATELIMIT_LOGIN"), scope="address",
                  error_message="too many login attempts from this address, try again later"),
    limiter.limit(_setting("RATELIMIT_ACCOUNT"), key_func=address_account_key,
                  scope="address_account", deduct_when=lambda response: response.status_code == 401,
                  error_message="too many failed logins for this account from this address, "
                                "try again later"),
)
limit_send = limiter.shared_limit(_setting("RATELIMIT_SEND"), scope=SEND_SCOPE, key_func=caller_key,
                                  error_message="too many messages, slow down")

limit_groups = limiter.shared_limit(_setting("RATELIMIT_GROUPS"), scope="groups",
                                    key_func=caller_key,
                                    error_message="too many group changes, slow down")


@functools.lru_cache(maxsize=64)
def _parsed(limit):
    """A setting's rate limits, parsed once per value (parsing is ~7 us: every socket send)."""
    return tuple(parse_many(limit))


def check_socket_send(user_id):
    """Count one socket send against the user's send budget (the REST one); else RateLimited."""
    _hit_user_limit("RATELIMIT_SEND", SEND_SCOPE, user_id, "too many messages, slow down")


def check_socket_connect(user_id):
    """Count one socket connection of the user (a reconnect loop); else RateLimited."""
    _hit_user_limit("RATELIMIT_CONNECT", "connect", user_id, "too many connections, slow down")


def _hit_user_limit(setting, scope, user_id, message):
    if not (limiter.enabled and limiter.initialized):
        return
    keys = [str(user_id), scope]
    prefix = current_app.config.get("RATELIMIT_KEY_PREFIX")
    if prefix:
        keys.insert(0, prefix)
    try:
        for item in _parsed(current_app.config[setting]):
            if not limiter.limiter.hit(item, *keys):
                reset_at = limiter.limiter.get_window_stats(item, *keys).reset_time
                retry_after = max(1, int(reset_at - time.time() + 0.999))
                raise RateLimited(message, details={"limit": str(item),
                                                    "retry_after": retry_after})
    except RateLimited:
        raise
    except Exception:  # noqa: BLE001 - limit storage down: serve, as REST does (swallow_errors)
        metrics.redis_error("rate_limit_storage")
        _storage_down(scope)


_last_storage_warning = [0.0]
STORAGE_WARNING_EVERY = 60  # seconds: one line (with its traceback) per minute of outage


def _storage_down(scope):
    """Logged once a minute while the storage is down, not once per request."""
    now = time.monotonic()
    if now - _last_storage_warning[0] >= STORAGE_WARNING_EVERY:
        _last_storage_warning[0] = now
        log.warning("rate limit storage unavailable; %s not counted (again at most once a "
                    "minute; chatapp_redis_errors_total counts each)", scope, exc_info=True)
