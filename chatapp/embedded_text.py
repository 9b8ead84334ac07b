"""`$text` and text indexes on the embedded store (mongomock has neither), for chatapp.embedded.

A `$text` query is answered with MongoDB's own rules (chatapp/mongo_text.py) over the
documents a text index holds one of the query's terms for (`TextIndex` in
chatapp/embedded_hashes.py, as MongoDB's text index selects them) or the narrower candidates
of the rest of the query. Only the text index chatapp declares is reproduced: language
"none" (no stemming, no stop words), case- and diacritic-insensitive; anything else raises
NotImplementedError rather than answer differently from MongoDB.
"""
from mongomock import OperationFailure, helpers

from chatapp import mongo_text

TEXT_OPTIONS = ("default_language", "language_override", "weights")


def is_text(keys):
    return any(kind == "text" for _, kind in keys)


def text_fields(spec):
    return [field for field, kind in spec["key"] if kind == "text"]


def text_index(store):
    """The collection's text index spec; MongoDB refuses `$text` without one."""
    for spec in store.indexes.values():
        if is_text(spec["key"]):
            return spec
    raise OperationFailure("text index required for $text query", code=27)


def texts_of(doc, fields):
    """The strings a text index reads in `doc`: each field's string, or an array's strings."""
    found = []
    for field in fields:
        value = doc
        for part in field.split("."):
            value = value.get(part) if isinstance(value, dict) else None
        if isinstance(value, str):
            found.append(value)
        elif isinstance(value, list):
            found.extend(v for v in value if isinstance(v, str))
    return found


def terms_of(text):
    """The terms MongoDB's text index holds for a document's text (its index keys), each once
    (a tuple: a set would take 3x the memory, kept for every stored message)."""
    return tuple(dict.fromkeys(mongo_text.terms(text)))


class TextQuery:
    """A `$text` condition against a collection's text index."""

    def __init__(self, spec, search):
        self.fields = text_fields(spec)
        self.override = spec.get("language_override", "language")
        self.search = mongo_text.Search(search)

    def holding(self, collection_hashes):
        """Buckets of the documents holding one of the positive terms: a superset of the
        matches (a document matches only if it holds one)."""
        index = next(i for i in collection_hashes.indexes if hasattr(i, "holding"))
        return index.holding(self.search.terms)

    def matches(self, doc):
        if doc.get(self.override, "none") != "none":
            raise NotImplementedError('$text: only documents in language "none"')
        return self.search.matches(texts_of(doc, self.fields))


def query(store, condition):
    """The TextQuery of a `{"$search": ..., "$language"?, "$caseSensitive"?, ...}` condition."""
    spec = text_index(store)
    if not isinstance(condition, dict) or "$search" not in condition:
        raise OperationFailure("$text requires a $search string", code=2)
    unsupported = {k: v for k, v in condition.items()
                   if k != "$search" and v not in (False, None, "none")}
    if spec.get("default_language", "english") != "none" or unsupported:
        raise NotImplementedError(
            f'$text: only language "none", case and diacritic insensitive (index '
            f"{spec.get('default_language')!r}, query {unsupported})")
    return TextQuery(spec, condition["$search"])


def create_index(original, collection, key_or_list, cache_for, session, kwargs):
    """mongomock's `create_index`, keeping a text index's options (as MongoDB lists them);
    declaring the same text index again is a no-op, with other options a conflict."""
    options = {k: kwargs.pop(k) for k in TEXT_OPTIONS if k in kwargs}
    keys = helpers.create_index_list(key_or_list)
    if not is_text(keys):
        return original(collection, key_or_list, cache_for, session, **kwargs)
    options.setdefault("default_language", "english")
    options.setdefault("language_override", "language")
    options.setdefault("weights", {field: 1 for field, kind in keys if kind == "text"})
    indexes = collection._store.indexes
    name = kwargs.get("name") or helpers.gen_index_name(keys)
    if name in indexes:
        if indexes[name]["key"] == keys and all(
                indexes[name].get(k) == v for k, v in options.items()):
            return name
        raise OperationFailure(f"An index named {name} exists with other options", code=85)
    if any(is_text(spec["key"]) for spec in indexes.values()):
        raise OperationFailure("a collection may have only one text index", code=85)
    name = original(collection, key_or_list, cache_for, session, **kwargs)
    indexes[name] = {**indexes[name], **options}
    return name
