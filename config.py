"""chatapp configuration: one class per environment, values from the environment or `.env`.

Both the original Node API's variable names and ours are read (`MONGO_DB_URL` or
`MONGO_URI`, `secretKey` or `JWT_SECRET_KEY`). Production refuses to start without
a secret; development generates one for the run and says so.
"""
import os
import secrets
from datetime import timedelta

from dotenv import load_dotenv

load_dotenv()


class ConfigError(RuntimeError):
    """A setting is missing or invalid; the message tells the operator what to do."""


def env(*names, default=None):
    """The first of `names` set (non-empty) in the environment, else `default`."""
    for name in names:
        value = os.environ.get(name)
        if value not in (None, ""):
            return value
    return default


# Settings that could not be parsed when this module was imported; `Config.validate`
# reports them, so the entry point prints one line instead of an import traceback.
INVALID_SETTINGS = []


def env_int(name, default):
    raw = env(name)
    if raw is None:
        return default
    try:
        return int(raw)
    except ValueError:
        INVALID_SETTINGS.append(f"{name} must be an integer, got {raw!r}")
        return default


def env_bool(name, default):
    raw = env(name)
    if raw is None:
        return default
    return raw.strip().lower() in ("1", "true", "yes", "on")


def env_list(name, default=()):
    raw = env(name)
    if raw is None:
        return list(default)
    return [item.strip() for item in raw.split(",") if item.strip()]


class Config:
    ENV_NAME = "base"
    DEBUG = False
    TESTING = False
    PORT = env_int("PORT", 8000)
    LOG_LEVEL = env("LOG_LEVEL", default="INFO").upper()
    # text (one line per record, control characters escaped) | json (one JSON object a line).
    LOG_FORMAT = env("LOG_FORMAT", default="text").lower()
    # One app-level line per HTTP request (method, route, status, duration, user, request id).
    ACCESS_LOG = env_bool("ACCESS_LOG", False)
    # Who may read GET /metrics: addresses and CIDR networks, comma-separated; others get 404.
    METRICS_ALLOW = env_list("METRICS_ALLOW", ["127.0.0.1", "::1"])

    # MongoDB: unset means the embedded in-memory store (mongomock).
    MONGO_URI = env("MONGO_DB_URL", "MONGO_URI")
    MONGO_DB_NAME = env("MONGO_DB_NAME", default="chatapp")
    MONGO_TIMEOUT_MS = env_int("MONGO_TIMEOUT_MS", 2000)
    # The embedded store keeps every message in the server's memory (~6 KB of RSS each, with
    # its feed record and index entries): at this many, new messages are refused (503
    # `unavailable`) rather than let a long demo eat the machine. 0: no cap. MongoDB ignores it.
    EMBEDDED_MAX_MESSAGES = env_int("EMBEDDED_MAX_MESSAGES", 250_000)
    # Every this many new documents the embedded store collects what came since the last time,
    # then moves everything alive out of the collector's walk (gc.freeze), so its pauses stay
    # a few milliseconds instead of growing with the store (chatapp/embedded_heap.py). 0: off.
    EMBEDDED_FREEZE_EVERY = env_int("EMBEDDED_FREEZE_EVERY", 1000)

    # Tokens (flask-jwt-extended). One pinned algorithm.
    JWT_SECRET_KEY = env("secretKey", "JWT_SECRET_KEY", "SECRET_KEY")
    JWT_ALGORITHM = "HS256"
    JWT_DECODE_ALGORITHMS = ["HS256"]
    JWT_TOKEN_LOCATION = ["headers"]
    JWT_ACCESS_TOKEN_EXPIRES = timedelta(seconds=env_int("ACCESS_TOKEN_EXPIRES", 3600))
    JWT_REFRESH_TOKEN_EXPIRES = timedelta(seconds=env_int("REFRESH_TOKEN_EXPIRES", 30 * 24 * 3600))
    JWT_ERROR_MESSAGE_KEY = "message"
    JWT_COOKIE_CSRF_PROTECT = False

    BCRYPT_ROUNDS = env_int("BCRYPT_ROUNDS", 12)
    # Password hashes (login, registration, password change) computed at once per process,
    # off the event loop at low priority; more wait their turn in order of arrival.
    PASSWORD_HASH_THREADS = env_int("PASSWORD_HASH_THREADS", 1)
    MAX_CONTENT_LENGTH = env_int("MAX_CONTENT_LENGTH", 1024 * 1024)
    MAX_MESSAGE_LENGTH = env_int("MAX_MESSAGE_LENGTH", 4000)
    JSON_SORT_KEYS = False

    # Real time. Flask-SocketIO does not read app.config: the factory passes these.
    ASYNC_MODE = env("ASYNC_MODE", default="eventlet")
    SOCKETIO_MESSAGE_QUEUE = env("SOCKETIO_MESSAGE_QUEUE")
    SOCKETIO_MAX_HTTP_BUFFER_SIZE = env_int("SOCKETIO_MAX_HTTP_BUFFER_SIZE", 1_000_000)
    CORS_ORIGINS = env_list("CORS_ORIGINS")
    TYPING_TIMEOUT = 5.0
    # Connection caps, counted over every process (the shared sockets collection); a socket
    # over a cap is refused with `rate_limited`. 0 turns a cap off. The address is the one
    # the app sees: behind a proxy that is the proxy's, hence off by default.
    MAX_SOCKETS_PER_USER = env_int("MAX_SOCKETS_PER_USER", 20)
    MAX_SOCKETS_PER_ADDRESS = env_int("MAX_SOCKETS_PER_ADDRESS", 0)
    # Connections that have not authenticated (chatapp/handshakes.py), counted per process: an
    # Engine.IO connection without a Socket.IO session is closed SOCKET_CONNECT_TIMEOUT seconds
    # after it opened (or its session ended); a handshake from an address already holding
    # MAX_PENDING_CONNECTIONS_PER_ADDRESS of them is refused (429 rate_limited). 0 turns it off.
    SOCKET_CONNECT_TIMEOUT = env_int("SOCKET_CONNECT_TIMEOUT", 10)
    MAX_PENDING_CONNECTIONS_PER_ADDRESS = env_int("MAX_PENDING_CONNECTIONS_PER_ADDRESS", 100)
    # A request's line and headers must arrive within this many seconds of the connection's
    # opening (or of the previous response, on a kept-alive connection), else it is closed:
    # `python wsgi.py` (chatapp/eventlet_http.py) and gunicorn (its keepalive) alike. 0: no limit
    # under `python wsgi.py` (gunicorn's keepalive cannot be 0 here).
    REQUEST_HEADER_TIMEOUT = env_int("REQUEST_HEADER_TIMEOUT", 10)
    # `python wsgi.py` on SIGTERM: stop accepting, close sockets, finish requests, exit 0.
    SHUTDOWN_GRACE = env_int("SHUTDOWN_GRACE", 10)

    # Rate limits (see chatapp/limits.py).
    RATELIMIT_ENABLED = env_bool("RATELIMIT_ENABLED", True)
    RATELIMIT_STORAGE_URI = env("RATELIMIT_STORAGE_URI", default="memory://")
    RATELIMIT_STRATEGY = env("RATELIMIT_STRATEGY", default="fixed-window")
    RATELIMIT_KEY_PREFIX = "chatapp"
    RATELIMIT_HEADERS_ENABLED = True
    # Limit storage down: serve without limits (logged) rather than fail every request.
    RATELIMIT_SWALLOW_ERRORS = True
    # A Redis limit storage that stops answering costs a request at most a second, not
    # redis-py's default 5 s per call (ignored by the in-memory storage).
    RATELIMIT_STORAGE_OPTIONS = {"socket_connect_timeout": 1, "socket_timeout": 1}
    # "N per second|minute|hour|day", several joined by ";". Register and login: per client
    # address; ACCOUNT: registrations per email, failed logins per (address, email); SEND:
    # per user, REST and sockets together.
    RATELIMIT_REGISTER = env("RATELIMIT_REGISTER", default="20 per hour")
    RATELIMIT_LOGIN = env("RATELIMIT_LOGIN", default="30 per minute")
    RATELIMIT_ACCOUNT = env("RATELIMIT_ACCOUNT", default="10 per minute")
    RATELIMIT_SEND = env("RATELIMIT_SEND", default="120 per minute")
    # Per user: group creations and member additions together.
    RATELIMIT_GROUPS = env("RATELIMIT_GROUPS", default="30 per hour")
    # Per user: socket connections (a reconnect loop), over every process.
    RATELIMIT_CONNECT = env("RATELIMIT_CONNECT", default="60 per minute")

    # Groups: members in all, and the size up to which presence, typing and delivered
    # receipts are relayed (read markers work at every size).
    MAX_GROUP_MEMBERS = env_int("MAX_GROUP_MEMBERS", 256)
    SMALL_GROUP_MAX = env_int("SMALL_GROUP_MAX", 50)

    # Attachments (chatapp/attachments): the largest file in bytes (its upload is the one body
    # allowed past MAX_CONTENT_LENGTH); how long a signed download URL (`Attachment.url`) works,
    # seconds; how long an upload never sent in a message is kept, seconds; how often each
    # process sweeps those away, seconds (0: never); uploads per user.
    MAX_ATTACHMENT_BYTES = env_int("MAX_ATTACHMENT_BYTES", 10 * 1024 * 1024)
    ATTACHMENT_URL_SECONDS = env_int("ATTACHMENT_URL_SECONDS", 3600)
    ATTACHMENT_ORPHAN_SECONDS = env_int("ATTACHMENT_ORPHAN_SECONDS", 24 * 3600)
    ATTACHMENT_SWEEP_SECONDS = env_int("ATTACHMENT_SWEEP_SECONDS", 3600)
    RATELIMIT_UPLOADS = env("RATELIMIT_UPLOADS", default="60 per hour")

    # The change feed (chatapp/sync): a version recorded above one still being written is
    # held back; a reader waits up to SYNC_GAP_WAIT_MS for the gap, and a number taken more
    # than SYNC_WRITE_DEADLINE seconds ago and still unrecorded is settled for good (its
    # message if it was written, else void; a slower writer re-announces at a fresh one).
    SYNC_WRITE_DEADLINE = env_int("SYNC_WRITE_DEADLINE", 5)
    SYNC_GAP_WAIT_MS = env_int("SYNC_GAP_WAIT_MS", 1000)
    # Tests only: a random pause of up to this many ms between taking a version and writing
    # it, so writes finish out of order. Production refuses it.
    SYNC_TEST_WRITE_DELAY_MS = env_int("SYNC_TEST_WRITE_DELAY_MS", 0)

    # Proxies in front of the app (nginx alone: 1) whose X-Forwarded-For/-Proto are trusted
    # for the client address and scheme. 0: none (the headers are ignored).
    TRUSTED_PROXIES = env_int("TRUSTED_PROXIES", 0)
    # Presence across processes: each process holding sockets heartbeats; the sockets of a
    # process silent for PRESENCE_STALE_SECONDS (it died) are forgotten. 0 turns it off.
    PRESENCE_HEARTBEAT_SECONDS = env_int("PRESENCE_HEARTBEAT_SECONDS", 10)
    PRESENCE_STALE_SECONDS = env_int("PRESENCE_STALE_SECONDS", 30)
    # A user's last socket closing announces `offline` only if no socket is back this many
    # seconds later (a flapping connection is announced once). 0: at once.
    PRESENCE_DAMPING_SECONDS = env_int("PRESENCE_DAMPING_SECONDS", 3)

    # OpenAPI (flask-smorest).
    API_TITLE = "chatapp"
    API_VERSION = "1.0.0"
    OPENAPI_VERSION = "3.1.0"
    OPENAPI_URL_PREFIX = "/api"
    OPENAPI_JSON_PATH = "openapi.json"
    OPENAPI_SWAGGER_UI_PATH = "docs"
    # Swagger UI's files, served by chatapp itself from the flask-swagger-ui package
    # (chatapp/swagger_ui.py): /api/docs needs no internet access.
    OPENAPI_SWAGGER_UI_URL = "/api/docs/swagger-ui/"

    @classmethod
    def validate(cls):
        """Fail fast on settings the environment cannot run without."""
        if INVALID_SETTINGS:
            raise ConfigError("; ".join(INVALID_SETTINGS))
        if not 1 <= cls.PASSWORD_HASH_THREADS <= 20:
            raise ConfigError(f"PASSWORD_HASH_THREADS must be between 1 and 20 (eventlet's "
                              f"thread pool), got {cls.PASSWORD_HASH_THREADS}")
        if not 4 <= cls.BCRYPT_ROUNDS <= 31:
            raise ConfigError(f"BCRYPT_ROUNDS must be between 4 and 31, got {cls.BCRYPT_ROUNDS}")
        if cls.SYNC_WRITE_DEADLINE < 1:
            raise ConfigError(f"SYNC_WRITE_DEADLINE must be at least 1 second, got "
                              f"{cls.SYNC_WRITE_DEADLINE}")
        if cls.LOG_FORMAT not in ("text", "json"):
            raise ConfigError(f"LOG_FORMAT must be text or json, got {cls.LOG_FORMAT!r}")


class DevelopmentConfig(Config):
    ENV_NAME = "development"
    DEBUG = False  # the reloader would start a second eventlet process

    @classmethod
    def validate(cls):
        super().validate()
        if not cls.JWT_SECRET_KEY:
            cls.JWT_SECRET_KEY = secrets.token_urlsafe(48)
            cls.GENERATED_SECRET = True


class TestingConfig(Config):
    ENV_NAME = "testing"
    TESTING = True
    JWT_SECRET_KEY = "test-secret-key-that-is-long-enough-for-hs256"
    BCRYPT_ROUNDS = 4
    ASYNC_MODE = "threading"
    MONGO_URI = env("TEST_MONGO_URI")
    MONGO_DB_NAME = env("TEST_MONGO_DB_NAME", default="chatapp_test")
    RATELIMIT_ENABLED = False
    RATELIMIT_STORAGE_URI = "memory://"
    SOCKETIO_MESSAGE_QUEUE = None
    TRUSTED_PROXIES = 0
    PRESENCE_HEARTBEAT_SECONDS = 0  # tests call chatapp.chat.heartbeat.beat/sweep themselves
    PRESENCE_DAMPING_SECONDS = 0  # announced at once; the damping has tests of its own
    ATTACHMENT_SWEEP_SECONDS = 0  # tests call chatapp.attachments.orphans.sweep_orphans
    # Many apps share the test process: a freeze would keep each test's app for good. The
    # policy has tests of its own (tests/test_embedded_heap.py); live servers run it.
    EMBEDDED_FREEZE_EVERY = 0


class ProductionConfig(Config):
    ENV_NAME = "production"

    @classmethod
    def validate(cls):
        super().validate()
        if not cls.JWT_SECRET_KEY:
            raise ConfigError(
                "secretKey is not set: export secretKey (or JWT_SECRET_KEY) to a long random "
                "string, e.g. `python -c 'import secrets; print(secrets.token_urlsafe(48))'`"
            )
        if len(cls.JWT_SECRET_KEY) < 32:
            raise ConfigError("secretKey is too short: use at least 32 characters")
        if cls.SYNC_TEST_WRITE_DELAY_MS:
            raise ConfigError("SYNC_TEST_WRITE_DELAY_MS is for tests only: unset it in production")


config_by_name = {
    "development": DevelopmentConfig,
    "testing": TestingConfig,
    "production": ProductionConfig,
}


def get_config(name=None):
    """The config class named by `name`, else by CHATAPP_ENV / FLASK_ENV (default development)."""
    name = name or env("CHATAPP_ENV", "FLASK_ENV", default="development")
    try:
        return config_by_name[name]
    except KeyError:
        raise ConfigError(
            f"unknown CHATAPP_ENV {name!r}: use one of {', '.join(config_by_name)}"
        ) from None
