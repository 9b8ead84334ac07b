"""Account request and response schemas."""
from marshmallow import Schema, ValidationError, fields, validate, validates

from chatapp.schemas import InputSchema, Timestamp
from chatapp.users.emails import canonical_email

USERNAME_PATTERN = r"^[A-Za-z0-9_.-]{3,32}$"


class FullMatch(validate.Regexp):
    """A Regexp that must match the whole value: `re.match` with `$` lets "bob\\n" through.

    Still a Regexp, so the OpenAPI document shows the (ECMA-compatible) pattern.
    """

    def __call__(self, value):
        if self.regex.fullmatch(value) is None:
            raise ValidationError(self._format_error(value))
        return value


class CanonicalEmail(fields.String):
    """An email address, loaded in its canonical form (chatapp.users.emails)."""

    def _deserialize(self, value, attr, data, **kwargs):
        text = super()._deserialize(value, attr, data, **kwargs)
        try:
            return canonical_email(text)
        except ValueError as exc:
            raise ValidationError(f"Not a valid email address: {exc}") from None


def _password_bytes(value):
    size = len(value.encode("utf-8"))
    if size < 8:
        raise ValidationError("Password must be at least 8 bytes.")
    if size > 72:
        raise ValidationError("Password must be at most 72 bytes in UTF-8 (bcrypt's limit).")


class RegisterSchema(InputSchema):
    username = fields.String(
        required=True,
        validate=FullMatch(USERNAME_PATTERN, error="3-32 characters of A-Z a-z 0-9 _ . -"),
        metadata={"example": "alice"},
    )
    email = CanonicalEmail(required=True, validate=validate.Length(max=254), metadata={
        "example": "alice@example.com", "format": "email",
        "description": "stored in one canonical form: domain in ASCII (IDNA), local part "
                       "case- and width-folded; quoted local parts and invisible characters "
                       "are refused"})
    # JSON Schema counts code points, not bytes: document the bounds 8-72 bytes imply
    # (a code point is 1-4 bytes), so nothing outside them is ever accepted.
    password = fields.String(required=True, validate=_password_bytes, metadata={
        "example": "correct horse battery", "minLength": 2, "maxLength": 72,
        "description": "8 to 72 bytes in UTF-8 (bcrypt's limit)"})


class LoginSchema(InputSchema):
    email = fields.String(required=True, validate=validate.Length(min=1, max=254),
                          metadata={"example": "alice@example.com"})
    password = fields.String(required=True, validate=validate.Length(min=1, max=1024),
                             metadata={"example": "correct horse battery"})


class RefreshTokenSchema(InputSchema):
    refresh_token = fields.String(validate=validate.Length(min=1, max=4096))


class UserListQuerySchema(InputSchema):
    limit = fields.Integer(load_default=50, validate=validate.Range(min=1),
                           metadata={"description": "page size; above 100 is clamped to 100"})
    cursor = fields.String(validate=validate.Length(min=1, max=200),
                           metadata={"description": "next_cursor of the previous page"})
    q = fields.String(validate=validate.Length(max=32),
                      metadata={"description": "case-insensitive username prefix"})

    @validates("limit")
    def _limit(self, value, **kwargs):
        if value > 1_000_000_000:
            raise ValidationError("Too large.")


class UserSchema(Schema):
    id = fields.String(required=True, metadata={"example": "665f1b2c9d1e8a0012345678"})
    _id = fields.String(required=True, data_key="_id")
    username = fields.String(required=True)
    email = fields.String(metadata={"description": "only on the caller's own record"})
    created_at = Timestamp(required=True)
    online = fields.Boolean(required=True)
    last_seen = Timestamp(allow_none=True, required=True)


class RegisterResponseSchema(Schema):
    message = fields.String(required=True)
    user = fields.Nested(UserSchema, required=True)


class TokensSchema(Schema):
    access_token = fields.String(required=True)
    token = fields.String(required=True, metadata={"description": "same as access_token"})
    refresh_token = fields.String(required=True)
    token_type = fields.String(metadata={"example": "Bearer"})
    expires_in = fields.Integer(required=True)


class LoginResponseSchema(TokensSchema):
    message = fields.String(required=True)
    userId = fields.String(required=True)
    user = fields.Nested(UserSchema, required=True)


class UserPageSchema(Schema):
    users = fields.List(fields.Nested(UserSchema), required=True)
    next_cursor = fields.String(allow_none=True, required=True)
