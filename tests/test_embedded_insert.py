"""The embedded store's index upkeep on writes (chatapp/embedded_index.py, embedded_order.py):
what an insert or a re-key computes once and shares (the unique checks' keys, a `$type`
partial filter, plain top-level values), what it skips (the prefixes of a key whose leading
fields did not change, an order entry that did not move, the bisection when the new entry is
the last), answers exactly as plain mongomock does, and leaves the hashes and orders exactly
as building them from scratch over the stored documents would.

Inserts in and out of order, equal keys, unique violations (nothing written), deletes then
inserts, multikey arrays re-keyed by in-place counter updates and by mongomock's own.
"""
import datetime
import random

import mongomock
import mongomock.collection
import pytest
from bson import ObjectId
from pymongo import ASCENDING, DESCENDING, ReturnDocument

from chatapp import embedded, embedded_hashes, embedded_index, embedded_keys, embedded_order
from tests.embedded_reference import plain_mongomock

pytestmark = pytest.mark.skip_with_test_mongo_uri(
    "tests the embedded store itself (chatapp/embedded.py over mongomock), never the database "
    "server TEST_MONGO_URI names; the default suite runs it")

T0 = datetime.datetime(2026, 3, 1)
USERS = [ObjectId() for _ in range(5)]
INDEXES = [
    ([("conv", ASCENDING), ("seq", ASCENDING)], {"unique": True, "name": "history"}),
    ([("sender", ASCENDING), ("client_id", ASCENDING)],
     {"unique": True, "partialFilterExpression": {"client_id": {"$type": "string"}},
      "name": "idempotent_send"}),
    ([("sender", ASCENDING), ("at", DESCENDING), ("_id", DESCENDING)], {"name": "by_sender_time"}),
    ([("member_ids", ASCENDING), ("last_at", DESCENDING), ("_id", DESCENDING)],
     {"name": "by_member_activity"}),
    ([("conv", ASCENDING), ("version", ASCENDING)], {"name": "by_version"}),
    ([("at", ASCENDING)], {"name": "at"}),
    ([("tag", ASCENDING)], {"sparse": True, "name": "tag"}),
    ([("nick", ASCENDING)], {"unique": True, "sparse": True, "name": "nick"}),
    ([("box.kind", ASCENDING), ("seq", ASCENDING)], {"name": "dotted"}),
]


def collection(tz_aware=False):
    c = mongomock.MongoClient(tz_aware=tz_aware).db[f"c{ObjectId()}"]
    for keys, options in INDEXES:
        c.create_index(keys, **options)
    return c


def outcome(call):
    try:
        return "ok", call()
    except Exception as exc:  # noqa: BLE001 - both sides must fail alike
        return "error", type(exc).__name__


class Both:
    def __init__(self):
        embedded.install()
        self.hashed = collection()
        with plain_mongomock():
            self.plain = collection()

    def run(self, call):
        got = outcome(lambda: call(self.hashed))
        with plain_mongomock():
            expected = outcome(lambda: call(self.plain))
        assert got == expected
        stored = [list(c._store._documents.values()) for c in (self.hashed, self.plain)]
        assert repr(stored[0]) == repr(stored[1])
        return got

    def answers(self, queries):
        for query in queries:
            self.run(lambda c: [d["_id"] for d in c.find(query)])
            self.run(lambda c: [d["_id"] for d in c.find(query).sort("seq", ASCENDING)])
            self.run(lambda c: [d["_id"] for d in c.find(query).sort(
                [("at", DESCENDING), ("_id", DESCENDING)]).limit(3)])
            self.run(lambda c: [d["_id"] for d in c.find(query).sort(
                [("last_at", DESCENDING), ("_id", DESCENDING)]).limit(4)])
            self.run(lambda c: [d["_id"] for d in c.find(query).sort("at", ASCENDING)])
            self.run(lambda c: c.count_documents(query))
            # find_one's lookup without a cursor (chatapp.embedded._find_one)
            self.run(lambda c: c.find_one(query))
            self.run(lambda c: c.find_one(query, {"seq": 1, "member_ids": 1}))
            self.run(lambda c: c.find_one(query, projection={"at": 0, "box": 0}))


def kept(index, documents):
    """An index's hashes and order, for the stored documents (a deleted document's ids are
    dropped when met, not when mongomock deletes it), places left out (a rebuild numbers them
    afresh; they only order entries whose keys are equal, as natural order does)."""
    prefixes = []
    for n, by_prefix in enumerate(index.prefixes, 1):
        if by_prefix is None:  # not kept yet: what building it now would give (not kept)
            by_prefix = {}
            for doc_id, held in index.keys.items():
                for key in [held] if isinstance(held, tuple) else held:
                    embedded_keys.file_key(by_prefix, key[:n], doc_id)
        held = {key: sorted(str(i) for i in (ids if type(ids) is embedded_keys.Bucket
                                             else [ids]) if i in documents)
                for key, ids in by_prefix.items()}
        prefixes.append({key: ids for key, ids in held.items() if ids})
    keys = {str(i): k for i, k in index.keys.items() if i in documents}
    order = None if index.ordered is None else {
        first: [(entry[0], str(entry[2])) for entry in entries if entry[2] in documents]
        for first, entries in index.ordered.lists.items()}
    return prefixes, keys, {k: v for k, v in (order or {}).items() if v}


def assert_hashes_as_rebuilt(c):
    """What the writes left in the hashes is what building them from the stored documents
    gives (each index's flags aside, which only ever turn off)."""
    store = c._store
    current = embedded_hashes.hashes(store)
    fresh = embedded_hashes.Hashes(store, current.signature)
    for now, new in zip(current.indexes, fresh.indexes):
        if type(now) is not embedded_index.Index or not now.usable:
            continue
        prefixes, keys, order = kept(now, store._documents)
        fresh_prefixes, fresh_keys, fresh_order = kept(new, store._documents)
        assert keys == fresh_keys, now.fields
        assert prefixes == fresh_prefixes, now.fields
        if now.ordered is not None and new.ordered is not None:
            assert order == fresh_order, now.fields
            entries = {str(i): e[0] for i, e in now.ordered.entries.items()
                       if i in store._documents}
            assert entries == {str(i): e[0] for i, e in new.ordered.entries.items()}, now.fields
            # the lists a document filed under several values keeps at hand are its lists
            lists = {id(entries): first for first, entries in now.ordered.lists.items()}
            for doc_id, homes in now.ordered.homes.items():
                if doc_id in store._documents:
                    firsts = sorted(str(lists[id(home)]) for home in homes)
                    assert firsts == sorted(str(k[0]) for k in now.keys[doc_id]), now.fields
                    assert all(now.ordered.entries[doc_id] in home for home in homes)


def message(rng, n, seqs, in_order):
    conv = rng.choice("abc")
    if in_order:
        seqs[conv] += 1
        seq = seqs[conv]
    else:
        seq = rng.randrange(1, 8)
    doc = {"_id": n if rng.random() < 0.5 else rng.randrange(1, 40), "conv": conv, "seq": seq,
           "version": rng.choice([seq, seq + 1, 3]), "sender": rng.choice(USERS[:3]),
           "at": T0 + datetime.timedelta(seconds=n if in_order else rng.randrange(5)),
           "read_at": None}
    roll = rng.random()
    if roll < 0.5:
        doc["client_id"] = rng.choice(["x", "y", f"c{n}"])
    elif roll < 0.6:
        doc["client_id"] = rng.choice([5, None, ["x"], ["x", 3], {"k": "x"}, True])
    if rng.random() < 0.3:
        doc["member_ids"] = rng.sample(USERS, rng.randrange(0, 4))
        doc["last_at"] = T0 + datetime.timedelta(seconds=rng.randrange(6))
    elif rng.random() < 0.1:
        doc["member_ids"] = rng.choice(USERS)  # a scalar in a multikey index
    if rng.random() < 0.2:
        doc["tag"] = rng.choice(["t", None, 1, 1.0, [1, 2], "u"])
    if rng.random() < 0.15:
        doc["nick"] = rng.choice(["n1", "n2", None])
    if rng.random() < 0.15:
        doc["box"] = rng.choice([{"kind": "k"}, {"kind": 2}, [{"kind": "k"}, {"kind": "j"}],
                                 {"other": 1}])
    if rng.random() < 0.03:
        doc["seq"] = rng.choice([True, 1.0, None])  # a bool: no exact unique hash any more
    return doc


def write(rng, both, n, seqs, in_order):
    roll = rng.random()
    if roll < 0.55:
        doc = message(rng, n, seqs, in_order)
        return both.run(lambda c: c.insert_one(dict(doc)).inserted_id)
    target = {"_id": rng.randrange(1, 40)}
    if roll < 0.65:
        when = T0 + datetime.timedelta(seconds=rng.randrange(8), microseconds=rng.randrange(999999))
        return both.run(lambda c: c.find_one_and_update(  # the send's counter update
            target, {"$inc": {"seq": 1, "version": 1}, "$set": {"last_at": when}},
            return_document=ReturnDocument.AFTER))
    if roll < 0.7:
        return both.run(lambda c: c.update_one(target, {"$set": {"read_at": T0}}).modified_count)
    if roll < 0.75:
        user = rng.choice(USERS)
        return both.run(lambda c: c.update_one(
            target, {"$push": {"member_ids": user}}).modified_count)
    if roll < 0.8:
        conv, tag = rng.choice("abc"), rng.choice(["t", 2])
        return both.run(lambda c: c.update_many(
            {"conv": conv}, {"$set": {"tag": tag}}).modified_count)
    if roll < 0.85:
        value = rng.choice(["n1", "n2", "x"])
        return both.run(lambda c: c.update_one(target, {"$set": {"nick": value}}).modified_count)
    if roll < 0.95:
        query = rng.choice([target, {"conv": rng.choice("abc")}, {"member_ids": rng.choice(USERS)}])
        return both.run(lambda c: c.delete_many(query).deleted_count)
    doc = message(rng, n, seqs, in_order)
    body = {k: v for k, v in doc.items() if k != "_id"}
    return both.run(lambda c: c.replace_one(target, body, upsert=True).modified_count)


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("in_order", [True, False], ids=["in_order", "out_of_order"])
def test_random_writes_answer_and_index_as_mongomock(seed, in_order):
    rng = random.Random(seed * 2 + in_order)
    both = Both()
    seqs = dict.fromkeys("abc", 0)
    queries = [{"conv": "a"}, {"conv": "b", "seq": {"$gt": 2}}, {"sender": USERS[0]},
               {"sender": USERS[1], "at": {"$gte": T0 + datetime.timedelta(seconds=2)}},
               {"member_ids": USERS[0]}, {"member_ids": USERS[1]}, {"tag": None}, {"tag": 1},
               {"nick": "n1"}, {"sender": USERS[2], "client_id": "x"}, {"client_id": None},
               {"box.kind": "k"}, {"at": {"$lt": T0 + datetime.timedelta(seconds=3)}},
               {"conv": "c", "version": 3},
               # two fields of a three-field index bound: its two-field prefix is built (from
               # the 20th write on) and kept through the writes after
               {"member_ids": USERS[2], "last_at": T0 + datetime.timedelta(seconds=3)},
               {"sender": USERS[0], "at": T0 + datetime.timedelta(seconds=1)}]
    for n in range(1, 161):
        write(rng, both, n, seqs, in_order)
        if n % 20 == 0:
            both.answers(queries)
            assert_hashes_as_rebuilt(both.hashed)
    assert_hashes_as_rebuilt(both.hashed)


def test_a_unique_violation_writes_nothing_and_leaves_the_hashes_alone():
    both = Both()
    for seq in range(1, 6):
        both.run(lambda c: c.insert_one({"_id": seq, "conv": "a", "seq": seq, "sender": USERS[0],
                                         "client_id": f"c{seq}", "at": T0}).inserted_id)
    for dup in ({"_id": 9, "conv": "a", "seq": 3},  # (conv, seq)
                {"_id": 9, "conv": "b", "seq": 1, "sender": USERS[0], "client_id": "c2"},
                {"_id": 5, "conv": "z", "seq": 1}):  # _id
        assert both.run(lambda c: c.insert_one(dict(dup)).inserted_id) == (
            "error", "DuplicateKeyError")
        assert_hashes_as_rebuilt(both.hashed)
    # not covered by the partial index: the same client_id as a number is no duplicate
    both.run(lambda c: c.insert_one({"_id": 10, "conv": "b", "seq": 1, "sender": USERS[0],
                                     "client_id": 2}).inserted_id)
    both.answers([{"conv": "a"}, {"sender": USERS[0], "client_id": "c2"}, {"_id": 9}])
    assert_hashes_as_rebuilt(both.hashed)


def test_deletes_then_inserts_of_the_same_keys():
    both = Both()
    for round_ in range(3):
        for seq in range(1, 5):
            both.run(lambda c: c.insert_one({"_id": seq, "conv": "a", "seq": seq, "at": T0,
                                             "member_ids": USERS[:2], "last_at": T0}).inserted_id)
        both.answers([{"conv": "a"}, {"member_ids": USERS[1]}])
        assert_hashes_as_rebuilt(both.hashed)
        both.run(lambda c: c.delete_many({"seq": {"$gte": 2 + round_ % 2}}).deleted_count)
        both.run(lambda c: c.delete_one({"_id": 1}).deleted_count)
        assert_hashes_as_rebuilt(both.hashed)


def test_a_group_re_keyed_by_its_sends_stays_newest_in_every_members_order():
    """A send re-keys the group's `last_at` under each member (the prefixes of `member_ids`
    alone stay), and the group moves to the end of each member's order."""
    both = Both()
    for doc_id in range(1, 5):
        both.run(lambda c: c.insert_one({"_id": doc_id, "member_ids": USERS[doc_id % 2:],
                                         "last_at": T0, "seq": 0}).inserted_id)
    for n in range(1, 30):
        when = T0 + datetime.timedelta(seconds=n // 2)  # equal times too
        doc_id = 1 + n * 7 % 4
        both.run(lambda c: c.find_one_and_update(
            {"_id": doc_id, "member_ids": USERS[2]},
            {"$inc": {"seq": 1}, "$set": {"last_at": when}},
            return_document=ReturnDocument.AFTER))
        both.answers([{"member_ids": u} for u in USERS])
        assert_hashes_as_rebuilt(both.hashed)
    both.run(lambda c: c.update_one({"_id": 2}, {"$pull": {"member_ids": USERS[3]}}).modified_count)
    both.run(lambda c: c.update_one({"_id": 3}, {"$set": {"member_ids": USERS[:1]}}).modified_count)
    both.answers([{"member_ids": u} for u in USERS])
    assert_hashes_as_rebuilt(both.hashed)


def test_a_longer_prefix_is_kept_only_once_a_lookup_binds_it():
    """A send re-keys a group's `last_at`: the (member, last_at[, _id]) prefixes are filed
    only once some query binds that many fields; built then, they are kept on every write
    after, and answer as mongomock does."""
    both = Both()
    for doc_id in range(1, 7):
        both.run(lambda c: c.insert_one({"_id": doc_id, "member_ids": USERS[doc_id % 3:],
                                         "last_at": T0, "seq": 0}).inserted_id)
    index = next(i for i in embedded_hashes.hashes(both.hashed._store).indexes
                 if i.fields == ("member_ids", "last_at", "_id"))
    unique = next(i for i in embedded_hashes.hashes(both.hashed._store).indexes
                  if i.fields == ("conv", "seq"))
    assert unique.prefixes[1] is not None  # a unique index's whole key: its duplicate check

    def send(n):
        when = T0 + datetime.timedelta(seconds=n // 2)
        both.run(lambda c: c.find_one_and_update(
            {"_id": 1 + n % 6}, {"$inc": {"seq": 1}, "$set": {"last_at": when}},
            return_document=ReturnDocument.AFTER))

    for n in range(10):
        send(n)
    both.answers([{"member_ids": u} for u in USERS])
    assert index.prefixes[1] is None and index.prefixes[2] is None
    assert_hashes_as_rebuilt(both.hashed)
    when = T0 + datetime.timedelta(seconds=4)
    both.answers([{"member_ids": USERS[4], "last_at": when}])
    assert index.prefixes[1] is not None and index.prefixes[2] is None
    for n in range(10, 30):
        send(n)
        both.answers([{"member_ids": u, "last_at": T0 + datetime.timedelta(seconds=s)}
                      for u in USERS for s in (4, 9, 14)])
        assert_hashes_as_rebuilt(both.hashed)
    both.run(lambda c: c.update_one({"_id": 2}, {"$pull": {"member_ids": USERS[3]}}).modified_count)
    both.run(lambda c: c.delete_one({"_id": 3}).deleted_count)
    both.answers([{"member_ids": u, "last_at": T0 + datetime.timedelta(seconds=14)} for u in USERS])
    assert_hashes_as_rebuilt(both.hashed)


def test_an_order_entry_goes_last_only_when_it_sorts_last():
    order = embedded_order.Order()
    for doc_id, value in [(1, 5), (2, 7), (3, 6), (4, 7), (5, 1), (6, "s"), (7, 2.5)]:
        assert order.add(doc_id, doc_id, (None,), [([value], False)])
    assert [entry[2] for entry in order.lists[None]] == [5, 7, 1, 3, 2, 4, 6]
    assert order.discard(6, (None,)) and order.discard(3, (None,))
    assert [entry[2] for entry in order.lists[None]] == [5, 7, 1, 2, 4]
    # aware after naive: cannot be ordered together, as before
    assert order.add(8, 8, (None,), [([T0], False)])
    assert not order.add(9, 9, (None,), [([T0.replace(tzinfo=datetime.timezone.utc)], False)])


@pytest.mark.parametrize("value", [
    None, "s", 0, 1, 2 ** 40, 1.5, float("nan"), True, False, T0, ObjectId(), b"b", ["s"], [],
    [1, "s"], [1, 1.0, "s", 1], [T0, None], [True, 1], {"a": 1}, [[1]], [{"a": 1}]])
def test_plain_values_are_keyed_as_the_general_path_keys_them(value):
    general = embedded_keys.values_of({"f": {"f": value}}, "f.f")  # through a sub-document
    assert embedded_keys.values_of({"f": value}, "f") == general
    for type_name in ("string", "int", "long", "number", "bool", "date", "array", "objectId"):
        partial = {"f": {"$type": type_name}}
        index = embedded_index.Index({"key": [("f", 1)], "partialFilterExpression": partial})
        assert index.type_test is not None
        expected = mongomock.filtering.filter_applies(partial, {"f": value})
        assert index.covers({"f": value}) == expected
        assert index.covers({}) == mongomock.filtering.filter_applies(partial, {})
