"""Schemas shared by both domains: ids, timestamps, the error envelope, input loading.

The same marshmallow schemas validate REST bodies (through flask-smorest, which
also builds the OpenAPI document from them) and socket payloads (through `load`).
"""
from collections.abc import Mapping
from datetime import timezone

from bson import ObjectId
from bson.errors import InvalidId
from marshmallow import EXCLUDE, Schema, fields, pre_load, validate
from marshmallow import ValidationError as MarshmallowError

from chatapp.errors import ValidationError


class InputSchema(Schema):
    """Request schemas ignore unknown fields: nothing unasked-for is ever stored."""

    class Meta:
        unknown = EXCLUDE

    @pre_load
    def reject_lone_surrogates(self, data, **kwargs):
        """`"\\ud800"` is valid JSON but not text: it cannot be stored or hashed (422, not 500)."""
        if isinstance(data, Mapping):
            declared = {field.data_key or name for name, field in self.load_fields.items()}
            bad = {key: ["Not valid Unicode text (lone surrogate)."] for key in declared
                   if isinstance(data.get(key), str) and not _is_unicode_text(data[key])}
            if bad:
                raise MarshmallowError(bad)
        return data


def _is_unicode_text(value):
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


# What `parse_object_id` accepts (bson takes either case), as documented in OpenAPI.
OBJECT_ID_PATTERN = "^[0-9a-fA-F]{24}$"


class ObjectIdField(fields.String):
    """A 24-hex ObjectId string in, `bson.ObjectId` out."""

    default_error_messages = {"invalid_id": "Not a valid id (24 hex characters)."}

    def __init__(self, **kwargs):
        kwargs.setdefault("metadata", {}).setdefault("pattern", OBJECT_ID_PATTERN)
        super().__init__(**kwargs)

    def _deserialize(self, value, attr, data, **kwargs):
        text = super()._deserialize(value, attr, data, **kwargs)
        parsed = parse_object_id(text)
        if parsed is None:
            raise self.make_error("invalid_id")
        return parsed


def parse_object_id(value):
    """ObjectId for a 24-hex string, else None (so callers decide 404 or 422)."""
    if not isinstance(value, str) or len(value) != 24:
        return None
    try:
        return ObjectId(value)
    except (InvalidId, TypeError):
        return None


def aware(dt):
    """A stored time as UTC-aware (PyMongo answers naive UTC datetimes), or None."""
    if dt is None:
        return None
    return dt if dt.tzinfo is not None else dt.replace(tzinfo=timezone.utc)


def iso(dt):
    """ISO 8601 UTC with milliseconds and Z, or None."""
    if dt is None:
        return None
    dt = aware(dt).astimezone(timezone.utc)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


def load(schema, payload):
    """Validate `payload` (a socket event's data) with `schema`, raising the contract's errors."""
    if not isinstance(payload, dict):
        raise ValidationError("payload must be a JSON object", details={"_schema": ["Not an object."]})
    try:
        return schema.load(payload)
    except MarshmallowError as exc:
        from chatapp.errors import flatten_messages

        raise ValidationError(details=flatten_messages(exc.messages)) from None


def error_codes():
    """Every `code` chatapp.errors can produce (its ApiError classes and HTTP mapping)."""
    from chatapp import errors

    classes, codes = [errors.ApiError], set(errors.HTTP_CODES.values())
    while classes:
        cls = classes.pop()
        codes.add(cls.code)
        classes.extend(cls.__subclasses__())
    return sorted(codes)


class ErrorBodySchema(Schema):
    code = fields.String(required=True, metadata={
        "enum": error_codes(), "example": "validation_error",
        "description": "stable snake_case code; clients branch on it"})
    message = fields.String(required=True, metadata={"description": "human text"})
    details = fields.Dict(metadata={"description": "field -> list of messages, or more context"})


class ErrorSchema(Schema):
    """The one error body: `{"error": {"code", "message", "details"?}}`."""

    error = fields.Nested(ErrorBodySchema, required=True)


class MessageOnlySchema(Schema):
    message = fields.String(required=True)


Timestamp = lambda **kw: fields.String(  # noqa: E731 - a field factory
    metadata={"format": "date-time", "example": "2026-11-24T10:15:30.123Z"}, **kw
)
Length = validate.Length
