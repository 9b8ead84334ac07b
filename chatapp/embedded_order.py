"""The order an index of the embedded store keeps (chatapp/embedded_index.py): for each value
of its first field, the documents sorted by its other fields exactly as mongomock's sort
orders them, so a range on the second field is a slice and a sort is a walk (in
chatapp/embedded_plan.py) that a limited cursor stops early.

An entry is (the other fields' sort keys, the document's place in natural order, its id):
`order_key` turns a value into a tuple Python orders as mongomock's BSON comparison does.
A value it cannot order so (an array: mongomock sorts it by its first element while a range
matches any element; values Python cannot compare) makes `add` answer False: the index then
keeps no order, and queries use its hashes alone.
"""
import bisect
import datetime
import uuid

from bson import ObjectId
from mongomock.filtering import _get_compare_type

RANGES = ("$gt", "$gte", "$lt", "$lte")
ALL = ()  # the one list of a one-field index's order


# mongomock's `_get_compare_type` for the exact types an index key holds most (it tries
# isinstance one type after the other)
RANKS = {type(None): 5, bool: 40, int: 10, float: 10, str: 15, bytes: 30, ObjectId: 35,
         datetime.datetime: 45, uuid.UUID: 30}


def order_key(value):
    """Where mongomock's sort (its bson_compare) puts `value`, as a tuple Python orders:
    the BSON type's rank, then the value (binary data: its length first)."""
    rank = RANKS.get(type(value))
    if rank is None:
        rank = _get_compare_type(value)
    if value is None:
        return (rank, 0)
    if isinstance(value, bytes):
        return (rank, len(value), value)
    return (rank, value)


class Order:
    def __init__(self):
        self.lists = {}  # first-field value -> entries, sorted
        self.entries = {}  # doc id -> its entry (the very tuple its lists hold)
        # doc id -> the lists it is filed in, for a document filed under several values (a
        # conversation under each member): a re-key walks them with no hash of a member id
        self.homes = {}

    def add(self, doc_id, place, firsts, trailing):
        """File a document under each of its first-field values; False: cannot be kept.
        `trailing`: (values, from an array) of each other field (embedded_keys.values_of)."""
        if any(from_array for _, from_array in trailing):
            return False
        entry = (tuple(order_key(values[0]) for values, _ in trailing), place, doc_id)
        return self._file(doc_id, entry, firsts)

    def _file(self, doc_id, entry, firsts):
        lists = self.lists
        homes = []
        try:
            for first in firsts:
                entries = lists.get(first)
                if entries is None:
                    entries = lists[first] = [entry]
                elif _below(entries[-1], entry):
                    entries.append(entry)  # the newest (a message, a feed record): last
                else:
                    bisect.insort(entries, entry)
                homes.append(entries)
        except TypeError:  # values Python cannot order together
            return False
        self.entries[doc_id] = entry
        if len(homes) > 1:
            self.homes[doc_id] = homes
        return True

    def move(self, doc_id, place, old_firsts, firsts, trailing):
        """`discard` (when `old_firsts` is not None) then `add`, or nothing when the
        document's entry and lists are the ones it already has; False: cannot be kept."""
        if any(from_array for _, from_array in trailing):
            if old_firsts is not None:
                self.discard(doc_id, old_firsts)
            return False
        entry = (tuple(order_key(values[0]) for values, _ in trailing), place, doc_id)
        if old_firsts is not None:
            old = self.entries.get(doc_id)
            if old is not None and old_firsts is firsts:
                return old == entry or self._replace(doc_id, old, entry, firsts)
            if not self.discard(doc_id, old_firsts):
                return False
        return self._file(doc_id, entry, firsts)

    def _replace(self, doc_id, old, entry, firsts):
        """The same lists, a new entry: in each list where the old one is last and the new
        one still sorts after the one before it (the conversation sent to again), it takes
        the old one's place; elsewhere it is taken out and filed."""
        homes = self.homes.get(doc_id)
        if homes is None:
            homes = [self.lists.setdefault(first, []) for first in firsts]
        try:
            for entries in homes:
                if entries and entries[-1] is old and (len(entries) == 1 or entries[-2] < entry):
                    entries[-1] = entry
                    continue
                i = bisect.bisect_left(entries, old)
                if i < len(entries) and entries[i][2] == doc_id:
                    del entries[i]
                bisect.insort(entries, entry)
        except TypeError:  # values Python cannot order together
            return False
        self.entries[doc_id] = entry
        return True

    def discard(self, doc_id, firsts):
        self.homes.pop(doc_id, None)
        entry = self.entries.pop(doc_id, None)
        if entry is None:
            return True
        try:
            for first in firsts:
                entries = self.lists.get(first, [])
                if entries and entries[-1][2] == doc_id:
                    entries.pop()  # the last one (a conversation sent to again)
                    if not entries:
                        self.lists.pop(first, None)
                    continue
                i = bisect.bisect_left(entries, entry)
                if i < len(entries) and entries[i][2] == doc_id:
                    del entries[i]
                if not entries:
                    self.lists.pop(first, None)
        except TypeError:
            return False
        return True

    def slices(self, firsts, condition):
        """Each first-field value's entries whose second field meets `condition`'s range,
        as a `Span` (read in place, never copied: a page of a long list costs the page): a
        superset (mongomock compares only values of one type; its filter re-checks); None
        when the bounds cannot be compared."""
        out = []
        try:
            for first in firsts:
                entries = self.lists.get(first, [])
                lo, hi = 0, len(entries)
                for op, bound in condition.items():
                    if op in RANGES and _orderable(bound):
                        lo, hi = _narrow(entries, op, order_key(bound), lo, hi)
                out.append(Span(entries, lo, hi))
        except TypeError:
            return None
        return out


class Span:
    """Entries [lo, hi) of a sorted list, read in place. Read it within the query that made
    it: a write in between shifts the list under it."""

    __slots__ = ("entries", "lo", "hi")

    def __init__(self, entries, lo, hi):
        self.entries, self.lo, self.hi = entries, lo, max(lo, hi)

    def __len__(self):
        return self.hi - self.lo

    def __iter__(self):
        entries = self.entries
        return (entries[i] for i in range(self.lo, self.hi))

    def __reversed__(self):
        entries = self.entries
        return (entries[i] for i in range(self.hi - 1, self.lo - 1, -1))

    def ids(self):
        """The ids of its documents, as a bucket (`chatapp.embedded_hashes.live` reads it)."""
        return IdSpan(self)


class IdSpan:
    __slots__ = ("span",)

    def __init__(self, span):
        self.span = span

    def __len__(self):
        return len(self.span)

    def __iter__(self):
        return (entry[2] for entry in self.span)


def _below(last, entry):
    """Whether `entry` sorts after `last` (False when they cannot be compared: then the
    bisection decides, as before)."""
    try:
        return last < entry
    except TypeError:
        return False


def _orderable(value):
    try:
        _get_compare_type(value)
    except NotImplementedError:
        return False
    return not isinstance(value, (dict, list, tuple)) and value == value  # NaN: no slice


def _first(entry):
    return entry[0][0]


def _narrow(entries, op, bound, lo, hi):
    """A range on the first sorted field; values of other types than the bound's are out
    (mongomock's type bracketing)."""
    start = bisect.bisect_left(entries, bound[:1], key=_first)
    end = bisect.bisect_left(entries, (bound[0] + 1,), key=_first)
    if op == "$gt":
        start = bisect.bisect_right(entries, bound, key=_first)
    elif op == "$gte":
        start = bisect.bisect_left(entries, bound, key=_first)
    elif op == "$lt":
        end = bisect.bisect_left(entries, bound, key=_first)
    else:
        end = bisect.bisect_right(entries, bound, key=_first)
    return max(lo, start), min(hi, end)
