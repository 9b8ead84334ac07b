"""The search query: `q`, `conversation`, `limit`, `before`."""
from marshmallow import fields, validate, validates
from marshmallow import ValidationError as MarshmallowError

from chatapp.schemas import InputSchema, ObjectIdField

Q_MAX = 200


class SearchQuerySchema(InputSchema):
    q = fields.String(required=True, validate=validate.Length(min=1, max=Q_MAX), metadata={
        "description": "1-200 characters with a non-whitespace one: the words (split at "
                       "whitespace) that every message found contains, ignoring case and "
                       "diacritics, at least one of them as a whole word",
        "pattern": r"\S", "example": "tent weekend"})
    conversation = ObjectIdField(metadata={
        "description": "only this conversation (its id, or a direct conversation's peer id)"})
    limit = fields.Integer(load_default=50, validate=validate.Range(min=1), metadata={
        "description": "page size (default 50); above 200 is clamped to 200"})
    before = ObjectIdField(metadata={
        "description": "continue after this message (the last of the previous page)"})

    @validates("q")
    def has_a_word(self, value, **kwargs):
        if not value.replace("\ufeff", " ").strip():
            raise MarshmallowError("Must contain a non-whitespace character.")
