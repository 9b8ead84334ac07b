"""One declared index of the embedded store: each prefix of its key -> the ids of the
documents holding it, and the documents' order along its other fields (embedded_order.py).
Keys are built by chatapp/embedded_keys.py; a collection's indexes are kept together by
chatapp/embedded_hashes.py.
"""
import itertools
from operator import itemgetter

from mongomock import filtering

from chatapp.embedded_keys import (PATH, UNUSABLE, Holders, combine, file_key, held_values,
                                   id_of, type_test, unfile_key, values_of)
from chatapp.embedded_order import ALL, RANGES, Order

MAX_KEYS = 256  # `$in` combinations one lookup may take; beyond, a shorter prefix is used


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
            per_field = [held_values(held, i) if field in kept else values_of(doc, field)
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
                    unfile_key(by_prefix, key[:n], doc_id)
            for key in keys:
                file_key(by_prefix, key[:n], doc_id)
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
                    unfile_key(by_prefix, key[:n], doc_id)
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
                    file_key(by_prefix, key[:n], doc_id)
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
