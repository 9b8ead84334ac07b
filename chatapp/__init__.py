"""chatapp: a real-time chat backend (Flask + Flask-SocketIO + MongoDB)."""
import atexit
import logging

from flask import Flask, request

from config import get_config

__all__ = ["create_app"]


def create_app(config=None, **overrides):
    """Build the app. `config`: a config class or its name (default from CHATAPP_ENV)."""
    config_class = get_config(config) if config is None or isinstance(config, str) else config
    config_class.validate()
    app = Flask(__name__)
    app.config.from_object(config_class)
    app.config.update(overrides)
    app.json.sort_keys = False
    configure_logging(app)
    register_observability(app)  # first hooks: they see every request, refused ones too
    # Before init_app: handlers added to an already bound SocketIO reach only that
    # server, so a second create_app() (every test makes one) would lose them.
    register_socket_handlers(app)
    register_extensions(app)
    register_blueprints(app)
    register_error_handlers(app)
    register_request_checks(app)
    register_startup(app)
    register_commands(app)
    return app


def configure_logging(app):
    from chatapp import logs

    logs.configure(app)  # LOG_FORMAT text | json, request ids, ACCESS_LOG
    if getattr(app.config, "GENERATED_SECRET", False) or app.config.get("GENERATED_SECRET"):
        logging.getLogger("chatapp").warning(
            "secretKey is not set: generated a random secret for this run "
            "(tokens stop working on restart). Set secretKey in .env to keep them."
        )


def register_observability(app):
    from chatapp import logs, metrics

    logs.init_app(app)  # X-Request-Id, and the ACCESS_LOG line written once the rest is done
    metrics.init_app(app)  # GET /metrics, request counts and latency (prometheus-client)


def register_extensions(app):
    from chatapp import cors, handshakes, limits, proxy, queue_health, socket_context
    from chatapp.extensions import api, jwt, mongo, socketio
    from chatapp.packets import TextPacket, close_on_malformed_packets

    mongo.init_app(app)
    jwt.init_app(app)
    api.init_app(app, spec_kwargs={"components": {"securitySchemes": {
        "bearerAuth": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}}}})
    cors.init_app(app)  # one origin policy for REST and Socket.IO
    limits.init_app(app)
    queue = app.config["SOCKETIO_MESSAGE_QUEUE"]
    # A Redis queue's outage degrades to this process's sockets, quickly, and heals by itself.
    manager = {"client_manager": queue_health.GuardedRedisManager(queue)} \
        if queue_health.handles(queue) else {}
    socketio.init_app(
        app,
        async_mode=app.config["ASYNC_MODE"],
        message_queue=queue,
        **manager,
        cors_allowed_origins=cors.socketio_origins(app),
        max_http_buffer_size=app.config["SOCKETIO_MAX_HTTP_BUFFER_SIZE"],
        serializer=TextPacket,  # JSON only, no search for bytes in every payload sent
        # Loggers of our own (ERROR and up), not False: given False, python-socketio and
        # python-engineio add a bare StreamHandler of their own, whose lines skip the
        # process's format (LOG_FORMAT=json) and the request id.
        logger=library_logger("socketio.server"),
        engineio_logger=library_logger("engineio.server"),
    )
    # Flask-SocketIO keeps its options for the next init_app (each test app makes one): a
    # manager bound to this server must not be reused by the next.
    socketio.server_options.pop("client_manager", None)
    close_on_malformed_packets(socketio.server)
    socket_context.init_app(app, socketio.sockio_mw)  # events' contexts freed when they end
    handshakes.init_app(app, socketio.server)  # unauthenticated connections: time and number
    proxy.trust_proxies(app)  # outermost, so Socket.IO sees the corrected environ too


def library_logger(name):
    logger = logging.getLogger(name)
    logger.setLevel(logging.ERROR)
    return logger


def register_blueprints(app):
    from chatapp import swagger_ui
    from chatapp.asyncapi import blp as asyncapi_blp
    from chatapp.attachments.routes import blp as attachments_blp
    from chatapp.blocks.routes import blp as blocks_blp
    from chatapp.chat.routes import blp as chat_blp
    from chatapp.conversations.routes import blp as conversations_blp
    from chatapp.extensions import api
    from chatapp.health import blp as health_blp
    from chatapp.search.routes import blp as search_blp
    from chatapp.sync.routes import blp as sync_blp
    from chatapp.users.routes import blp as user_blp
    from chatapp.web import blp as web_blp

    api.register_blueprint(user_blp)
    api.register_blueprint(blocks_blp)
    api.register_blueprint(chat_blp)
    api.register_blueprint(conversations_blp)
    api.register_blueprint(sync_blp)
    api.register_blueprint(attachments_blp)
    api.register_blueprint(search_blp)
    api.register_blueprint(health_blp)
    app.register_blueprint(web_blp)  # the chat page: not an API route, not in the OpenAPI doc
    app.register_blueprint(asyncapi_blp)  # the Socket.IO events' document, beside the OpenAPI one
    swagger_ui.init_app(app)  # Swagger UI's files for /api/docs, from a pinned package


def register_error_handlers(app):
    from chatapp import errors

    errors.register_error_handlers(app)


def register_request_checks(app):
    from werkzeug.exceptions import RequestEntityTooLarge

    from chatapp.errors import InvalidJson, UnsupportedMediaType

    app.wsgi_app = ChunkedInputTerminated(app.wsgi_app)

    @app.before_request
    def require_json_body():
        """A body must be a JSON object: 415 for another media type, 400 when unparseable."""
        if request.method not in ("POST", "PUT", "PATCH", "DELETE"):
            return
        if request.routing_exception is not None:
            return  # no such route or method: 404 / 405, whatever the body
        if getattr(app.view_functions.get(request.endpoint), "reads_own_body", False):
            return  # the multipart upload: its view applies its own type and size rules
        if not request.content_length and "chunked" not in request.headers.get(
            "Transfer-Encoding", ""
        ).lower():
            return
        if not request.is_json:
            raise UnsupportedMediaType()
        try:
            body = request.get_json(silent=True)
        except RecursionError:  # nested deeper than the parser goes: unparseable, not a crash
            body = None
        if stream_cut_at_the_limit():
            raise RequestEntityTooLarge()
        if not isinstance(body, dict):
            raise InvalidJson()


def stream_cut_at_the_limit():
    """A body without Content-Length (chunked) is read up to MAX_CONTENT_LENGTH, and werkzeug
    stops there without a word: 413 if the server's input holds more."""
    limit = request.max_content_length
    return (limit is not None and request.content_length is None
            and len(request.get_data(cache=True)) >= limit
            and request.environ["wsgi.input"].read(1) != b"")


class ChunkedInputTerminated:
    """WSGI: tell werkzeug that eventlet ends a chunked body itself.

    A body sent with `Transfer-Encoding: chunked` has no Content-Length; werkzeug then reads
    it only when the server declares `wsgi.input_terminated` (else it reads nothing: the body
    was "empty", 400 invalid_json). gunicorn and werkzeug's server declare it; eventlet does
    not, though its input stops at the last chunk. Declared here for eventlet's chunked input
    only; MAX_CONTENT_LENGTH still applies (`stream_cut_at_the_limit`: 413 beyond)."""

    def __init__(self, wsgi_app):
        self.wsgi_app = wsgi_app

    def __call__(self, environ, start_response):
        if ("eventlet.input" in environ
                and environ.get("HTTP_TRANSFER_ENCODING", "").lower() == "chunked"):
            environ["wsgi.input_terminated"] = True
        return self.wsgi_app(environ, start_response)


def register_socket_handlers(app):
    # Handlers are registered on the unbound SocketIO at import (chatapp.chat.events).
    import chatapp.chat.events  # noqa: F401


def register_commands(app):
    from chatapp import cli

    cli.register_commands(app)  # `flask --app wsgi upgrade-db | create-user | ...`


def register_startup(app):
    from chatapp.extensions import mongo
    from chatapp.startup import ensure_indexes_or_retry

    ensure_indexes_or_retry(app)  # a database down at start-up must not stop the process
    atexit.register(mongo.close)
