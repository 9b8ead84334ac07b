"""The hashes behind chatapp.embedded: per collection, each declared index's key -> the ids
of the documents holding it, and each document's place in mongomock's natural order.

A key is built as MongoDB builds an index key: a missing field is null, an array is hashed
under each of its elements (a multikey index: `member_ids`; a path through an array of
sub-documents takes each element's field: `metadata.sent_in.msg`), and a value that does not
hash the way MongoDB compares (a sub-document, a nested array) makes the index unusable, so
queries fall back to mongomock's scan. A bool equals (and hashes as) 1
or 0: harmless for candidates, which are always re-checked, but such an index (or one that
held an array) no longer decides unique checks by hash (`Index.exact`). A text index holds
each document's folded terms instead (`TextIndex`, for `$text`: chatapp/embedded_text.py).
"""
import datetime
import itertools
import uuid
from operator import itemgetter

from bson import ObjectId
from mongomock import filtering, helpers

from chatapp import embedded_text, embedded_ttl
from chatapp.embedded_order import ALL, RANGES, Order

KEYABLE = (str, int, float, ObjectId, datetime.datetime, bytes, uuid.UUID, type(None))
# Exact types whose value is its own one key (never NaN, never a bool): a top-level field
# holding one is answered without walking the general path below.
PLAIN_KEYS = frozenset((str, int, ObjectId, datetime.datetime, bytes, uuid.UUID, type(None)))
UNUSABLE = object()
PATH = "path"  # values_of: the path went through an array of sub-documents
MAX_KEYS = 256  # `$in` combinations one lookup may take; beyond, a shorter prefix is used


def keyable(value):
    # A bool equals (and hashes as) 1 or 0: harmless for candidates, which are re-checked,
    # but a unique check must not take True for 1 (see Index.exact). NaN is not even
    # equal to itself, so no hash finds it.
    return isinstance(value, KEYABLE) and value == value


def values_of(doc, field):
    """The values an index holds for `field` of `doc`, and whether they came from an array:
    an array's elements (multikey; `PATH` when the path itself went through an array of
    sub-documents, each element's field taken, as MongoDB fans out), [None] for a missing
    field; UNUSABLE when not hashable (a sub-document, nested arrays, a numeric part)."""
    if "." not in field and isinstance(doc, dict):
        value = doc.get(field)
        if type(value) in PLAIN_KEYS:
            return [value], False  # what the general path answers for it
        if type(value) is list and value and all(type(v) in PLAIN_KEYS for v in value):
            return list(dict.fromkeys(value)), True  # and for an array of them (member_ids)
    values, from_array = [doc], False
    for part in field.split("."):
        found = []
        for value in values:
            if isinstance(value, list):
                if part.isdigit() or not all(isinstance(v, dict) for v in value):
                    return UNUSABLE, True
                found.extend(v.get(part) for v in value)
                from_array = PATH
            else:
                found.append(value.get(part) if isinstance(value, dict) else None)
        values = found
    held = []
    for value in values:
        if isinstance(value, list):
            if not all(keyable(v) and not isinstance(v, list) for v in value):
                return UNUSABLE, True
            held.extend(value or [None])
            from_array = from_array or True
        elif keyable(value):
            held.append(value)
        else:
            return UNUSABLE, from_array
    return list(dict.fromkeys(held)) or [None], from_array


def keys_of(doc, fields):
    """Every key `doc` has in an index on `fields` (several for an array), whether each
    is exact (no array, no boolean), or (UNUSABLE, False)."""
    return combine([values_of(doc, field) for field in fields])


def combine(per_field):
    """`keys_of` from each field's `values_of`."""
    exact, multi = True, 0
    for values, from_array in per_field:
        if values is UNUSABLE:
            return UNUSABLE, False
        exact = exact and not from_array and not isinstance(values[0], bool)
        if len(values) > 1:
            multi += 1
    if multi > 1:
        return UNUSABLE, False  # parallel arrays: MongoDB refuses to index them too
    if not multi:
        return [tuple(values[0] for values, _ in per_field)], exact
    return list(itertools.product(*(values for values, _ in per_field))), exact


def type_test(partial):
    """(field, mongomock's `$type` test) when a partial filter is `{field: {"$type": name}}`
    on a top-level field (the app's `idempotent_send`, `direct_pair`); None otherwise."""
    if type(partial) is not dict or len(partial) != 1:
        return None
    (field, condition), = partial.items()
    if not isinstance(field, str) or not field or "." in field or field.startswith("$") \
            or type(condition) is not dict or list(condition) != ["$type"] \
            or type(condition["$type"]) is not str:
        return None
    test = filtering.TYPE_MAP.get(condition["$type"])
    return None if test is None else (field, test)


def id_of(doc):
    _id = doc["_id"]
    return helpers.hashdict(_id) if isinstance(_id, dict) else _id


class Index:
    def __init__(self, spec):
        self.fields = tuple(field for field, _ in spec["key"])
        self.unique = bool(spec.get("unique"))
        self.sparse = bool(spec.get("sparse"))
        self.partial = spec.get("partialFilterExpression")
        self.usable = not any(f.startswith("$") for f in self.fields)
        self.exact = True  # no document ever held an array or a boolean in it
        self.fanned = False  # a document's path went through an array: null is not looked up
        # For each prefix of the key (n first fields): values -> the ids holding them (a
        # `Bucket`, or the one id alone: most keys of a long key are held by one document).
        # The first field's (and a unique index's whole key's) from the start; a longer
        # prefix (None until then) is built when a lookup first binds that many fields, and
        # kept from then on: no query binds `by_member_activity`'s `last_at`, so a send to a
        # group re-files none of its members' entries there, only their order.
        width = len(self.fields)
        self.prefixes = [{} if n == 1 or (self.unique and n == width) else None
                         for n in range(1, width + 1)]
        self.keys = {}  # doc id -> its key (a tuple), or the list of its keys (an array)
        # The documents of each first-field value in the order of the other fields (ranges
        # and sorts on them; a one-field index: all its documents, in that field's order, for
        # ranges on it); None: not kept (values it cannot order).
        self.ordered = Order()
        self.dotted = any("." in f for f in self.fields)
        self.type_test = type_test(self.partial)

    def extract(self, doc, kept=None):
        """What this index reads of `doc`: (keys, exact) as `keys_of`, and each field's
        `values_of` (computed once per write: the unique check, the filing, the order).
        `kept`: fields the write left alone, whose values are read off the keys the
        document holds now instead (a send's re-key of a group: no 100 member ids hashed
        again to drop repeats they cannot have)."""
        held = self.keys.get(id_of(doc)) if kept else None
        if held is None:
            per_field = [values_of(doc, field) for field in self.fields]
        else:
            held = [held] if isinstance(held, tuple) else held
            per_field = [_held_values(held, i) if field in kept else values_of(doc, field)
                         for i, field in enumerate(self.fields)]
        return (*combine(per_field), per_field)

    def covers(self, doc, per_field=None):
        if self.partial is not None and not self._in_partial(doc):
            return False
        if self.sparse:
            if per_field is None:
                per_field = [values_of(doc, f) for f in self.fields]
            if all(values == [None] for values, _ in per_field):
                return False
        return True

    def _in_partial(self, doc):
        test = self.type_test
        if test is not None and isinstance(doc, dict):
            value = doc.get(test[0], filtering.NOTHING)
            if not isinstance(value, (list, tuple)):
                return bool(test[1](value))  # what filter_applies answers for a non-array
        return filtering.filter_applies(self.partial, doc)

    def add(self, doc, place, found=None, kept=None):
        """(Re-)key `doc`. `found`: (keys, exact, per_field, covered or None) already
        computed for this very document (chatapp.embedded's unique checks); `kept`: the
        fields the write left alone (`extract`)."""
        doc_id = id_of(doc)
        if not self.usable:
            self.discard(doc_id)
            return
        keys, exact, per_field, covered = found if found is not None \
            else (*self.extract(doc, kept), None)
        if covered is None:
            covered = self.covers(doc, per_field)
        if not covered or keys is UNUSABLE:
            self.discard(doc_id)
            if covered:
                self.usable = False
            return
        self.exact = self.exact and exact
        if not exact and not self.fanned and self.dotted:
            self.fanned = any(from_array == PATH for _, from_array in per_field)
        old = self.keys.pop(doc_id, None)
        old = None if old is None else [old] if isinstance(old, tuple) else old
        unchanged = self._refile(doc_id, old, keys)
        self.keys[doc_id] = keys[0] if len(keys) == 1 else keys
        if self.ordered is not None:
            trailing = per_field[1:] or per_field
            # each first-field value once (values_of's are distinct), as `_firsts` gives
            firsts = (ALL,) if len(self.fields) == 1 else per_field[0][0]
            # the first field kept its values, in order (a send's re-key): the same lists
            old_firsts = None if old is None else firsts if unchanged else self._firsts(old)
            if not self.ordered.move(doc_id, place, old_firsts, firsts, trailing):
                self.ordered = None

    def _refile(self, doc_id, old, keys):
        """File `keys` under each prefix, `old` (the document's previous keys, or None) taken
        out: only the prefixes from the first field whose values changed (a send re-keys a
        group's `last_at`, not its 100 `member_ids`). Answers how many leading fields kept
        their values."""
        start = 0
        if old is not None and len(old) == len(keys):
            width = len(self.fields)
            # compared as lists: C's loop, and a value kept is the very same object mostly
            while start < width and list(map(itemgetter(start), old)) == \
                    list(map(itemgetter(start), keys)):
                start += 1
        prefixes = self.prefixes
        for n in range(start + 1, len(prefixes) + 1):
            by_prefix = prefixes[n - 1]
            if by_prefix is None:
                continue  # not kept (yet)
            if old is not None:
                for key in old:
                    _unfile(by_prefix, key[:n], doc_id)
            for key in keys:
                _file(by_prefix, key[:n], doc_id)
        return start

    def _firsts(self, keys):
        """The lists of the order a document is filed in: one per first-field value, or
        the one list of a one-field index."""
        return (ALL,) if len(self.fields) == 1 else dict.fromkeys(key[0] for key in keys)

    def discard(self, doc_id):
        keys = self.keys.pop(doc_id, None)
        if keys is None:  # not held (never, or not covered): nothing filed
            if self.ordered is not None:
                self.ordered.entries.pop(doc_id, None)
                self.ordered.homes.pop(doc_id, None)
            return
        keys = [keys] if isinstance(keys, tuple) else keys
        for key in keys:
            for n, by_prefix in enumerate(self.prefixes, 1):
                if by_prefix is not None:
                    _unfile(by_prefix, key[:n], doc_id)
        if self.ordered is not None and not self.ordered.discard(doc_id, self._firsts(keys)):
            self.ordered = None

    def _prefix(self, allowed, equal):
        """How many leading fields `allowed` (field -> values) binds, and their keys; None
        when documents matching them may be missing from this index."""
        if not self.usable:
            return None
        n, combinations = 0, 1
        while n < len(self.fields) and self.fields[n] in allowed \
                and combinations * len(allowed[self.fields[n]]) <= MAX_KEYS:
            combinations *= len(allowed[self.fields[n]])
            n += 1
        if n == 0:
            return None
        used = [allowed[f] for f in self.fields[:n]]
        if self.sparse and all(None in values for values in used):
            return None  # documents matching null may be missing from a sparse index
        if self.fanned and any(None in values for values in used):
            return None  # null through an array of sub-documents: not what its keys say
        keys = list(itertools.product(*used))
        # A partial index holds the matching documents only if these values imply its filter.
        if self.partial is not None and not all(
                filtering.filter_applies(self.partial, {**equal, **dict(zip(self.fields, key))})
                for key in keys):
            return None
        return n, keys

    def lookup(self, allowed, equal, ranges):
        """The buckets (id collections) holding every document whose leading fields take
        values in `allowed`, narrowed by a range on the next field when the order is kept;
        None when this index cannot tell."""
        found = self._prefix(allowed, equal)
        if found is None:
            return self._range(ranges)
        n, keys = found
        if n == 1 and len(self.fields) > 1 and self.ordered is not None \
                and self.fields[1] in ranges:
            sources = self.ordered.slices((key[0] for key in keys), ranges[self.fields[1]])
            if sources is not None:
                return [source.ids() for source in sources]
        return [bucket for bucket in map(self.holders(n).get, keys) if bucket is not None]

    def holders(self, n):
        """A mapping: the first `n` fields' values -> the ids holding them (a collection)."""
        by_prefix = self.prefixes[n - 1]
        if by_prefix is None:  # first asked for: built from every held key, kept from now on
            by_prefix = self.prefixes[n - 1] = {}
            for doc_id, keys in self.keys.items():
                for key in [keys] if isinstance(keys, tuple) else keys:
                    _file(by_prefix, key[:n], doc_id)
        return Holders(by_prefix)

    def _range(self, ranges):
        """A range on a one-field index's field: the ids of a slice of its order; None when
        it may leave out matching documents (a null bound and a sparse index, which does not
        hold the documents missing the field; a partial index)."""
        field = self.fields[0]
        if len(self.fields) > 1 or self.ordered is None or not self.usable \
                or field not in ranges or self.partial is not None:
            return None
        condition = ranges[field]
        if self.sparse and any(condition.get(op, 0) is None for op in RANGES):
            return None
        sources = self.ordered.slices((ALL,), condition)
        return None if sources is None else [source.ids() for source in sources]

    def in_order(self, allowed, equal, ranges, sort_fields):
        """Entry lists, each in the order of `sort_fields`, holding every document whose
        first field takes a value in `allowed`; None when this index does not keep it."""
        if len(self.fields) == 1 or self.ordered is None or self.fields[1:1 + len(sort_fields)] != sort_fields \
                or self.fields[0] not in allowed:
            return None
        found = self._prefix({self.fields[0]: allowed[self.fields[0]]}, equal)
        if found is None:
            return None
        return self.ordered.slices((key[0] for key in found[1]), ranges.get(self.fields[1], {}))


def _held_values(held, i):
    """Field `i`'s values in a document's keys `held`, as `values_of` gave them: one value,
    or (the one array field of a multikey key, which varies along the keys) each element.
    An array of one element reads as no array: harmless, its flags were set when filed."""
    if len(held) == 1 or held[0][i] == held[1][i]:
        return [held[0][i]], False
    return [key[i] for key in held], True


class Bucket(dict):
    """The ids holding one key of an index, when more than one does (id -> None, in order)."""

    __slots__ = ()


_NONE = object()


def _file(by_prefix, key, doc_id):
    # One hash of the key when it is new (most keys of a long key: a tuple of ObjectIds,
    # whose hash is Python code): setdefault, not get then set.
    held = by_prefix.setdefault(key, doc_id)
    if held is doc_id:
        return  # filed now (or this very id was already: the same ids either way)
    if type(held) is Bucket:
        held[doc_id] = None
    else:
        by_prefix[key] = Bucket(((held, None), (doc_id, None)))


def _unfile(by_prefix, key, doc_id):
    # One hash of the key when it held this id alone: pop, put back what stays.
    held = by_prefix.pop(key, _NONE)
    if held is _NONE:
        return
    if type(held) is Bucket:
        held.pop(doc_id, None)
        if len(held) > 1:
            by_prefix[key] = held
        elif held:
            by_prefix[key] = next(iter(held))
    elif held != doc_id:
        by_prefix[key] = held  # another document's


class Holders:
    """A prefix's map read as buckets: a lone id comes as a one-id tuple."""

    __slots__ = ("by_prefix",)

    def __init__(self, by_prefix):
        self.by_prefix = by_prefix

    def get(self, key, default=None):
        held = self.by_prefix.get(key, _NONE)
        if held is _NONE:
            return default
        return held if type(held) is Bucket else (held,)


class TextIndex:
    """A text index: each folded term -> the ids of the documents holding it (MongoDB's text
    index keys, chatapp.mongo_text), so a `$text` query examines only the documents that
    hold one of its terms. Never unique, never used for equalities."""

    unique = False
    usable = True
    exact = True

    def __init__(self, spec):
        self.fields = tuple(embedded_text.text_fields(spec))
        self.by_term = {}
        self.keys = {}  # doc id -> (its text, its terms)

    def covers(self, doc):
        return True

    def add(self, doc, place, found=None):
        doc_id = id_of(doc)
        text = " ".join(embedded_text.texts_of(doc, self.fields))
        if doc_id in self.keys and self.keys[doc_id][0] == text:
            return  # re-keyed after a write that left its text alone (a read marker...)
        self.discard(doc_id)
        held = embedded_text.terms_of(text)
        for term in held:
            self.by_term.setdefault(term, {})[doc_id] = None
        self.keys[doc_id] = (text, held)

    def discard(self, doc_id):
        for term in self.keys.pop(doc_id, (None, ()))[1]:
            holders = self.by_term.get(term)
            if holders is not None:
                holders.pop(doc_id, None)
                if not holders:
                    del self.by_term[term]

    def lookup(self, allowed, equal, ranges):
        return None  # a text index answers `$text` only (`holding`)

    def in_order(self, allowed, equal, ranges, sort_fields):
        return None

    def holding(self, terms):
        """The buckets of the documents holding any of `terms`."""
        return [self.by_term[term] for term in terms if term in self.by_term]


def make_index(spec):
    return TextIndex(spec) if embedded_text.is_text(spec["key"]) else Index(spec)


class Hashes:
    """A collection's hashes, and each document's place in mongomock's own (natural) order,
    so candidates are examined in the order a scan meets them (an update_many that stops
    at a duplicate has changed the same documents)."""

    def __init__(self, store, signature):
        self.signature = signature
        self.indexes = [make_index(spec) for name, spec in store.indexes.items()
                        if name != "_id_"]
        self.places = {}
        self.next_place = itertools.count()
        for doc in list(store._documents.values()):
            place = self.places[id_of(doc)] = next(self.next_place)
            for index in self.indexes:
                index.add(doc, place)

    def add(self, store, doc, found=None):
        """`doc` was inserted or changed (mongomock re-checks its unique indexes then).
        `found`: index -> what its unique check computed of `doc` (Index.add)."""
        doc_id = id_of(doc)
        if doc_id not in self.places or next(reversed(store._documents)) == doc_id:
            self.places[doc_id] = next(self.next_place)  # new (or re-inserted): last
        place = self.places[doc_id]
        found = found or {}
        for index in self.indexes:
            index.add(doc, place, found.get(index))
        embedded_ttl.written(store, doc)

    def forget(self, doc_ids):
        for doc_id in doc_ids:
            self.places.pop(doc_id, None)
            for index in self.indexes:
                index.discard(doc_id)


def hashes(store):
    """The hashes of `store` (a mongomock CollectionStore), rebuilt when its indexes change."""
    signature = (id(store._documents),  # a new dict: the collection was dropped
                 *((name, id(spec)) for name, spec in store.indexes.items()))
    current = getattr(store, "_chatapp_hashes", None)
    if current is None or current.signature != signature:
        current = store._chatapp_hashes = Hashes(store, signature)
    return current


def live(store, buckets):
    """The stored documents whose ids the buckets hold, each once, in natural order
    (forgetting the ids of documents mongomock deleted without telling)."""
    store._remove_expired_documents()
    documents = store._documents
    collection_hashes = hashes(store)
    ids = dict.fromkeys(itertools.chain.from_iterable(buckets))
    gone = [i for i in ids if i not in documents]
    if gone:
        collection_hashes.forget(gone)
    places = collection_hashes.places
    return [documents[i] for i in sorted((i for i in ids if i in documents),
                                         key=lambda i: places.get(i, -1))]


