"""The OpenAPI document's error vocabulary, generated from the code that produces the errors.

flask-smorest builds the document from the route decorators and marshmallow schemas.
This module makes its error part describe chatapp rather than flask-smorest's defaults:

- every error response uses `chatapp.schemas.ErrorSchema` (`{"error": {code, message,
  details?}}`), with an example body made by the `chatapp.errors` class that raises it;
- errors that come from app-wide code, not from one view, are added to every operation
  they can reach by `ErrorResponsesPlugin`, following that code: the JSON body check
  (`chatapp.register_request_checks`: 400, 413, 415 on methods that take a body),
  `auth_required` (401 where the operation declares bearer security), the database
  (503 on `/api/...`) and the last-resort handler (500 everywhere);
- there is no `default` response: every status an operation can answer is listed, so
  a client (and the schemathesis test) can rely on the list being complete;
- `<objectid:...>` path segments (`ObjectIdConverter`) are documented with their pattern.
"""
import http

from apispec import BasePlugin
from flask_smorest import Api
from flask_smorest.utils import prepare_response
from werkzeug.routing import BaseConverter

from chatapp import errors
from chatapp.schemas import OBJECT_ID_PATTERN, ErrorSchema

BODY_METHODS = ("post", "put", "patch", "delete")
DATABASE_PATH_PREFIX = "/api/"

# status -> the error whose `to_dict()` is the documented example, and when it happens.
ERRORS = {
    400: (errors.InvalidJson(), "`invalid_json`: the body is not JSON or not a JSON object"),
    401: (errors.Unauthorized(), "`unauthorized`, `token_expired` or `token_revoked`: "
          "missing, invalid, expired or revoked access token"),
    403: (errors.Forbidden(), "`forbidden`"),
    404: (errors.NotFound(), "`not_found`"),
    405: (errors.ApiError("The method is not allowed for the requested URL.",
                          code="method_not_allowed"), "`method_not_allowed`"),
    409: (errors.Conflict("username is already taken", details={"username": ["already taken"]}),
          "`conflict`; `details` names the field"),
    413: (errors.ApiError("The data value transmitted exceeds the capacity limit.",
                          code="payload_too_large"),
          "`payload_too_large`: the body is over MAX_CONTENT_LENGTH (1 MiB)"),
    415: (errors.UnsupportedMediaType(), "`unsupported_media_type`: a body that is not "
          "`application/json`"),
    422: (errors.ValidationError(details={"content": ["Missing data for required field."]}),
          "`validation_error`; `details` maps each field to its messages"),
    429: (errors.RateLimited(), "`rate_limited`; `Retry-After` says when to try again"),
    500: (errors.ApiError(), "`internal_error`; never a stack trace"),
    503: (errors.Unavailable(), "`unavailable`: the database is unreachable"),
}
EXTRA_EXAMPLES = {
    401: {name: cls().to_dict() for name, cls in (
        ("unauthorized", errors.Unauthorized), ("token_expired", errors.TokenExpired),
    )},
}
# Sent by rate-limited routes on every answer (when RATELIMIT_ENABLED), and on 429 with Retry-After.
RATE_LIMIT_STATE_HEADERS = {
    "X-RateLimit-Limit": {"description": "requests allowed in the window",
                          "schema": {"type": "integer"}},
    "X-RateLimit-Remaining": {"description": "requests left in the window",
                              "schema": {"type": "integer"}},
    "X-RateLimit-Reset": {"description": "when the window resets (epoch seconds)",
                          "schema": {"type": "integer"}},
}
RATE_LIMIT_HEADERS = {
    "Retry-After": {"description": "seconds until a request may succeed",
                    "schema": {"type": "integer"}},
    **RATE_LIMIT_STATE_HEADERS,
}


def error_doc(status, description=None, example=None):
    """`alt_response` keyword arguments for an error of `status` with a route's own wording.

    `example`: the `ApiError` whose body to show, when the route answers only that one.
    """
    error, default_description = ERRORS[status]
    doc = {"schema": ErrorSchema, "description": description or default_description}
    if example is not None:
        doc["example"] = example.to_dict()
    elif status in EXTRA_EXAMPLES:
        doc["examples"] = {name: {"value": body} for name, body in EXTRA_EXAMPLES[status].items()}
    else:
        doc["example"] = error.to_dict()
    if status == 429:
        doc["headers"] = RATE_LIMIT_HEADERS
    return doc


def component_name(status):
    """flask-smorest names its lazily registered responses after `http.HTTPStatus`."""
    return http.HTTPStatus(status).name


class ErrorResponsesPlugin(BasePlugin):
    """Adds the errors of app-wide code to each operation that code applies to."""

    def path_helper(self, path=None, operations=None, parameters=None, **kwargs):
        # Ids in paths are 404 when malformed (the objectid converter or the service says so).
        for parameter in parameters or ():
            name = parameter.get("name", "") if isinstance(parameter, dict) else ""
            if parameter.get("in") == "path" and (name == "id" or name.endswith("_id")):
                parameter.setdefault("description", "a 24-hex id; a malformed or unknown id "
                                                    "is 404 `not_found`")
        return None

    def operation_helper(self, path=None, operations=None, **kwargs):
        for method, operation in (operations or {}).items():
            if not isinstance(operation, dict):
                continue
            responses = operation.setdefault("responses", {})
            for status in self.app_wide_errors(path, method, operation):
                if status not in responses and str(status) not in responses:
                    responses[status] = component_name(status)

    @staticmethod
    def app_wide_errors(path, method, operation):
        statuses = [500]
        if method.lower() in BODY_METHODS:
            statuses += [400, 413, 415]
        if any(requirement for requirement in operation.get("security", [])):
            statuses.append(401)
        if path.startswith(DATABASE_PATH_PREFIX):
            statuses.append(503)
        return statuses


class ObjectIdConverter(BaseConverter):
    """`<objectid:name>`: a path segment that is a 24-hex id; anything else matches no route (404).

    Where a literal route shares a prefix (`/api/user/register` and `/api/user/<user_id>`),
    this keeps `GET /api/user/register` a 405 instead of a lookup of user "register".
    """

    regex = OBJECT_ID_PATTERN.strip("^$")


class ChatApi(Api):
    """flask-smorest's Api, documenting chatapp's error envelope instead of its own."""

    ERROR_SCHEMA = ErrorSchema
    # No `default` response: it would make every status "documented".
    DEFAULT_ERROR_RESPONSE_NAME = None

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.register_converter(ObjectIdConverter, lambda converter: {
            "type": "string", "pattern": OBJECT_ID_PATTERN})

    def init_app(self, app, *args, **kwargs):
        # Before any blueprint is registered: their rules are compiled against the map.
        app.url_map.converters["objectid"] = ObjectIdConverter
        super().init_app(app, *args, **kwargs)

    def _init_spec(self, *, extra_plugins=None, **kwargs):
        plugins = [*(extra_plugins or ()), ErrorResponsesPlugin()]
        super()._init_spec(extra_plugins=plugins, **kwargs)

    def _register_pagination_header(self):
        """Not used: chatapp pages by cursor (`Link`, `next_cursor`), not flask-smorest's
        X-Pagination, whose schema would otherwise sit unused in the document."""

    def _register_responses(self):
        """One component per HTTP status (as flask-smorest does), with chatapp's bodies."""
        for status in http.HTTPStatus:
            if status in ERRORS:
                response = error_doc(status)
            else:
                response = {"description": status.phrase}
                if status >= 400:
                    response["schema"] = self.ERROR_SCHEMA
            prepare_response(response, self.spec, self.DEFAULT_RESPONSE_CONTENT_TYPE)
            self.spec.components.response(status.name, response, lazy=True)
