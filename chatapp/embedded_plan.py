"""Which stored documents a query may match, read from the hashes (chatapp/embedded_hashes.py):
the planner of chatapp.embedded.

`plan` gives id buckets holding every document a filter may match: equalities (`v`, `$eq`,
`$in`, a value of `$all`) on an index's leading fields, narrowed by a range on the next field
where the index keeps its order; a top-level `$or` whose every branch is so narrowed (the
union), `$and` (its narrowest branch); `_id` first. The narrowest lookup (fewest ids) wins.
`in_order` gives the matching documents in a sort's order when an index keeps it (equality on
its first field, the sort on the next ones, all one direction): a limited cursor then examines
only what it shows, as MongoDB walking an index does. Both are supersets re-checked with
mongomock's own filter, so the answers are a scan's.
"""
import heapq

from mongomock import filtering

from chatapp.embedded_hashes import hashes
from chatapp.embedded_keys import keyable

RANGES = ("$gt", "$gte", "$lt", "$lte")
SMALL = 64  # candidates few enough to sort: reading an index's order gains nothing then


def alternatives(condition):
    """The values an equality (`v`, `{"$eq": v}`, `{"$in": [...]}`) allows, or None."""
    if isinstance(condition, dict):
        if "$eq" in condition:
            values = [condition["$eq"]]
        elif isinstance(condition.get("$in"), list):
            values = condition["$in"]
        else:
            return None  # a range, or a sub-document to match whole
    else:
        values = [condition]
    if not all(keyable(v) for v in values):
        return None
    return list(dict.fromkeys(values))


def size(buckets):
    return sum(len(bucket) for bucket in buckets)


def plan(store, filter):
    """Id buckets holding every document `filter` may match (the smallest choice found),
    or None when no index narrows it: then mongomock scans."""
    if not isinstance(filter, dict) or not filter:
        return None
    if "_id" in filter:
        ids = alternatives(filter["_id"])
        if ids is not None and None not in ids:
            return [ids]
    options = [_by_index(store, filter)]
    if isinstance(filter.get("$and"), list):
        options.extend(plan(store, branch) for branch in filter["$and"])
    if isinstance(filter.get("$or"), list) and filter["$or"]:
        branches = [plan(store, branch) for branch in filter["$or"]]
        if all(branch is not None for branch in branches):
            options.append([bucket for branch in branches for bucket in branch])
    options = [option for option in options if option is not None]
    return min(options, key=size) if options else None


def _conditions(filter):
    """Each choice of top-level equalities (field -> allowed values), and the ranges.

    `{"f": {"$all": [a, b]}}` needs every document to hold a (and b): each value alone
    narrows like an equality, one choice per value."""
    allowed, ranges, every = {}, {}, []
    for field, condition in filter.items():
        if field.startswith("$"):
            continue
        values = alternatives(condition)
        if values is not None:
            allowed[field] = values
        elif isinstance(condition, dict):
            if any(op in condition for op in RANGES):
                ranges[field] = condition
            held = condition.get("$all")
            if isinstance(held, list) and held and all(keyable(v) for v in held):
                every.extend((field, value) for value in held[:8])
    choices = [allowed] if allowed or ranges else []  # a range alone: one-field indexes
    choices += [{**allowed, field: [value]} for field, value in every]
    return [(choice, {f: vs[0] for f, vs in choice.items() if len(vs) == 1}) for choice in choices], \
        ranges


def _by_index(store, filter):
    """The narrowest index lookup the top-level conditions of `filter` allow, or None."""
    choices, ranges = _conditions(filter)
    best = None
    for allowed, equal in choices:
        for index in hashes(store).indexes:
            buckets = index.lookup(allowed, equal, ranges)
            if buckets is not None and (best is None or size(buckets) < size(best)):
                best = buckets
    return best


def in_order(store, filter, sort):
    """The documents `filter` matches, in `sort` order, read from an index that keeps it
    (lazily: a caller that stops early examined no more); None when none does, or when the
    candidates are few enough to sort."""
    if isinstance(filter, dict) and "$text" in filter:
        return None  # matched through the text index (chatapp.embedded), then sorted
    items = list(sort.items()) if isinstance(sort, dict) else list(sort)
    if not items or any(not isinstance(k, str) or k.startswith("$") or not isinstance(d, int)
                        for k, d in items):
        return None
    descending = {d < 0 for _, d in items}
    if len(descending) != 1:
        return None  # mixed directions: no index order gives them
    sources = _sources(store, filter, tuple(k for k, _ in items))
    if sources is None:
        return None
    unordered = plan(store, filter)
    if unordered is not None and size(unordered) <= SMALL and size(unordered) < size(sources):
        return None
    return _walk(store, filter, sources, len(items), descending.pop())


def _sources(store, filter, fields):
    """Entry lists, each in `fields` order, holding every document `filter` may match."""
    if not isinstance(filter, dict) or not filter:
        return None
    choices, ranges = _conditions(filter)
    options = [index.in_order(allowed, equal, ranges, fields)
               for allowed, equal in choices for index in hashes(store).indexes]
    if isinstance(filter.get("$and"), list):
        options.extend(_sources(store, branch, fields) for branch in filter["$and"])
    if isinstance(filter.get("$or"), list) and filter["$or"]:
        branches = [_sources(store, branch, fields) for branch in filter["$or"]]
        if all(branch is not None for branch in branches):
            options.append([source for branch in branches for source in branch])
    options = [option for option in options if option is not None]
    return min(options, key=size) if options else None


def _walk(store, filter, sources, n, descending):
    """Merge the sources in order; documents tied on the sort keys come in natural order
    (mongomock's sort is stable over a scan's order); each re-checked by the filter."""
    store._remove_expired_documents()
    documents = store._documents
    streams = [reversed(source) if descending else iter(source) for source in sources]
    merged = heapq.merge(*streams, key=_sort_key, reverse=descending) \
        if len(streams) > 1 else streams[0]
    seen, tied, tied_key, gone = set(), [], None, []
    try:
        for entry in merged:
            key = entry[0][:n]
            if tied and key != tied_key:
                yield from _matching(tied, documents, filter, gone)
                tied = []
            tied_key = key
            if entry[2] not in seen:
                seen.add(entry[2])
                tied.append(entry)
        yield from _matching(tied, documents, filter, gone)
    finally:  # documents mongomock deleted without telling (unless stored again since)
        gone = [doc_id for doc_id in gone if doc_id not in documents]
        if gone:
            hashes(store).forget(gone)


def _sort_key(entry):
    return entry[0]


def _matching(entries, documents, filter, gone):
    for entry in sorted(entries, key=lambda e: e[1]):  # natural order among ties
        doc = documents.get(entry[2])
        if doc is None:
            gone.append(entry[2])
        elif filtering.filter_applies(filter, doc):
            yield doc
