"""Domain errors and the one place they become the contract's JSON envelope.

Services raise `ApiError` subclasses; REST handlers below and the socket error
handler (`chatapp.chat.events`) turn them into the same `{"error": {...}}` body.
"""
import logging

from flask import jsonify
from pymongo.errors import AutoReconnect, ConnectionFailure, ServerSelectionTimeoutError
from werkzeug.exceptions import HTTPException

from chatapp import metrics

log = logging.getLogger(__name__)


class ApiError(Exception):
    status = 500
    code = "internal_error"
    message = "internal server error"

    def __init__(self, message=None, details=None, code=None, headers=None):
        super().__init__(message or self.message)
        self.message = message or self.message
        self.details = details
        if code:
            self.code = code
        self.headers = headers or {}

    def to_dict(self):
        error = {"code": self.code, "message": self.message}
        if self.details:
            error["details"] = self.details
        return {"error": error}


class InvalidJson(ApiError):
    status, code, message = 400, "invalid_json", "request body must be a JSON object"


class ValidationError(ApiError):
    status, code, message = 422, "validation_error", "invalid input"


class Unauthorized(ApiError):
    status, code, message = 401, "unauthorized", "missing or invalid token"


class TokenExpired(Unauthorized):
    code, message = "token_expired", "token has expired"


class TokenRevoked(Unauthorized):
    code, message = "token_revoked", "token has been revoked"


class InvalidCredentials(Unauthorized):
    code, message = "invalid_credentials", "invalid email or password"


class Forbidden(ApiError):
    status, code, message = 403, "forbidden", "you may not do this"


class NotFound(ApiError):
    status, code, message = 404, "not_found", "not found"


class Conflict(ApiError):
    status, code, message = 409, "conflict", "conflict"


class UnsupportedMediaType(ApiError):
    status, code, message = 415, "unsupported_media_type", "request body must be application/json"


class RateLimited(ApiError):
    status, code, message = 429, "rate_limited", "too many requests"


class Unavailable(ApiError):
    status, code, message = 503, "unavailable", "database unavailable, try again shortly"


DB_DOWN_ERRORS = (ServerSelectionTimeoutError, AutoReconnect, ConnectionFailure)

HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "validation_error",
    429: "rate_limited",
    503: "unavailable",
}


def as_api_error(exc):
    """Map any exception to an `ApiError` (unknown ones to 500, logged with traceback)."""
    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, DB_DOWN_ERRORS):
        metrics.database_error(exc)
        log.warning("database unavailable: %s", exc)
        return Unavailable()
    if isinstance(exc, HTTPException):
        return from_http_exception(exc)
    log.exception("unhandled exception", exc_info=exc)
    return ApiError()


def from_http_exception(exc):
    status = exc.code or 500
    data = getattr(exc, "data", None) or {}
    # webargs/flask-smorest put marshmallow messages in exc.data["messages"].
    messages = data.get("messages")
    if status == 422 and messages:
        return ValidationError(details=flatten_messages(messages))
    if status == 400 and data.get("invalid_json"):
        return InvalidJson()
    error = ApiError(
        message=(exc.description if status < 500 else None) or exc.name,
        code=HTTP_CODES.get(status, "internal_error" if status >= 500 else "bad_request"),
    )
    error.status = status
    if status == 405 and getattr(exc, "valid_methods", None):
        error.headers = {"Allow": ", ".join(exc.valid_methods)}
    return error


def flatten_messages(messages):
    """webargs nests messages by location ({"json": {...}}); the contract wants field -> [msgs]."""
    if isinstance(messages, dict) and len(messages) == 1:
        (location, inner), = messages.items()
        if location in ("json", "query", "view_args", "path", "headers") and isinstance(inner, dict):
            messages = inner
    if not isinstance(messages, dict):
        return {"_schema": messages if isinstance(messages, list) else [str(messages)]}
    out = {}
    for field, value in messages.items():
        if isinstance(value, dict):
            for sub, msgs in flatten_messages(value).items():
                out[f"{field}.{sub}"] = msgs
        else:
            out[str(field)] = [str(m) for m in value] if isinstance(value, list) else [str(value)]
    return out


def error_response(error):
    response = jsonify(error.to_dict())
    response.status_code = error.status
    for name, value in error.headers.items():
        response.headers[name] = value
    return response


def register_error_handlers(app):
    """Every error the app can emit leaves through here as the contract's envelope."""

    @app.errorhandler(Exception)
    def handle_any(exc):
        return error_response(as_api_error(exc))

    # flask-smorest registers its own HTTPException handler: override it.
    app.register_error_handler(HTTPException, handle_any)
