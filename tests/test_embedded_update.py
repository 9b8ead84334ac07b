"""The embedded store's in-place counter writes (chatapp/embedded_update.py) answer, store and
index exactly what mongomock's own `find_one_and_update` / `update_one` do: every operation
runs on two collections of the same content, once through the fast path and once through
mongomock's original method, and the answers, the errors, the stored documents and the
indexes' answers are compared."""
import datetime
import random

import mongomock
import pytest
from bson import ObjectId
from pymongo import ASCENDING, DESCENDING, ReturnDocument

from chatapp import embedded, embedded_answer, embedded_update

pytestmark = pytest.mark.skip_with_test_mongo_uri(
    "tests the embedded store itself (chatapp/embedded_update.py over mongomock), never the "
    "database server TEST_MONGO_URI names; the default suite runs it")

AFTER, BEFORE = ReturnDocument.AFTER, ReturnDocument.BEFORE
USERS = [ObjectId() for _ in range(6)]
T0 = datetime.datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=datetime.timezone.utc)
COUNTER_FIELDS = {"seq": 1, "version": 1, "member_ids": 1, "member_count": 1, "type": 1}


class Pair:
    """Two collections holding the same documents: `fast` through the patched methods,
    `slow` through mongomock's originals (as they were before chatapp.embedded_update)."""

    def __init__(self, tz_aware):
        embedded.install()
        client = mongomock.MongoClient(tz_aware=tz_aware)
        name = f"c{ObjectId()}"
        self.fast, self.slow = client.db[name + "f"], client.db[name + "s"]
        self.fallbacks = 0
        for c in (self.fast, self.slow):
            c.create_index([("member_ids", ASCENDING), ("last_at", DESCENDING), ("_id", DESCENDING)],
                           name="by_member_activity")
            c.create_index([("pair", ASCENDING)], unique=True,
                           partialFilterExpression={"pair": {"$type": "string"}}, name="direct_pair")
            c.create_index([("legacy", ASCENDING)], sparse=True, name="legacy_upgrade")
            c.create_index([("nick", ASCENDING)], unique=True, sparse=True, name="nick")

    def insert(self, doc):
        for c in (self.fast, self.slow):
            c.insert_one(dict(doc))

    def run(self, method, *args, **kwargs):
        """The same call on both; their answers (or errors) must be the same. Returns the
        answer and whether the fast path fell back to mongomock's."""
        before = self.fallbacks
        slow_error = fast_error = slow = fast = None
        try:
            slow = embedded_update._original[method](self.slow, *_copy(args), **_copy(kwargs))
        except Exception as error:  # noqa: BLE001 - compared below
            slow_error = error
        original = embedded_update._original[method]

        def counted(*a, **k):
            self.fallbacks += 1
            return original(*a, **k)

        embedded_update._original[method] = counted
        try:
            fast = getattr(self.fast, method)(*_copy(args), **_copy(kwargs))
        except Exception as error:  # noqa: BLE001
            fast_error = error
        finally:
            embedded_update._original[method] = original
        assert type(fast_error) is type(slow_error), (fast_error, slow_error)
        if method == "update_one" and slow_error is None:
            fast, slow = fast.raw_result, slow.raw_result
        assert repr(fast) == repr(slow)  # same values, key order, types and time zones
        self.check()
        return fast, self.fallbacks > before

    def check(self):
        stored = [repr(list(c._store._documents.values())) for c in (self.fast, self.slow)]
        assert stored[0] == stored[1]
        for query in [{"member_ids": u} for u in USERS[:3]] + [
                {"pair": "a:b"}, {"pair": "c:d"}, {"legacy": True}, {"nick": "n1"},
                {"member_ids": USERS[0], "last_at": {"$gt": T0.replace(tzinfo=None)}}]:
            for c in (self.fast, self.slow):
                scan = [d["_id"] for d in embedded._original["_iter_documents"](c, query)]
                assert sorted(map(str, (d["_id"] for d in c.find(query)))) == sorted(map(str, scan))
            ordered = [list(c.find({"member_ids": query.get("member_ids", USERS[1])},
                                   {"_id": 1}).sort([("last_at", -1), ("_id", -1)]))
                       for c in (self.fast, self.slow)]
            assert ordered[0] == ordered[1]


def _copy(value):
    """Each side gets its own arguments (mongomock mutates a projection)."""
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_copy(v) for v in value)
    return value


def group(doc_id, members, **extra):
    return {"_id": doc_id, "type": "group", "title": "g", "created_at": T0,
            "members": {str(u): {"role": "member", "joined_at": T0, "read_up_to": 0,
                                 "delivered_up_to": 0} for u in members},
            "member_ids": list(members), "member_count": len(members), "seq": 0, "version": 0,
            "pending": [{"v": 1, "kind": "x"}], **extra}


@pytest.fixture(params=[True, False], ids=["tz_aware", "naive"])
def pair(request):
    p = Pair(request.param)
    p.insert(group(1, USERS[:4]))
    p.insert(group(2, USERS[2:], pair="a:b", type="direct"))
    p.insert(group(3, USERS[1:3], pair="c:d", type="direct", nick="n0"))
    return p


def send(now):
    return {"$inc": {"seq": 1, "version": 1},
            "$set": {"last_at": now, "last_message_id": ObjectId(), "version_at": now}}


def test_a_send_takes_the_fast_path_and_answers_as_mongomock(pair):
    for n, when in enumerate([AFTER, BEFORE, AFTER]):
        now = T0 + datetime.timedelta(minutes=n, microseconds=n * 1234)
        answer, fell_back = pair.run("find_one_and_update",
                                     {"_id": 1, "member_ids": USERS[0], "blockers.0": {"$exists": False}},
                                     send(now), projection=COUNTER_FIELDS, return_document=when)
        assert not fell_back
        assert set(answer) == {"_id", "seq", "version", "member_ids", "member_count", "type"}
    answer, _ = pair.run("find_one_and_update", {"pair": "a:b"}, send(T0), projection=COUNTER_FIELDS,
                         return_document=AFTER)
    assert answer["seq"] == 1


def test_the_answer_is_a_copy_of_the_projected_fields(pair):
    answer, fell_back = pair.run("find_one_and_update", {"_id": 1}, {"$inc": {"seq": 1}},
                                 projection={"member_ids": 1, "seq": 1}, return_document=AFTER)
    assert not fell_back
    answer["member_ids"].append("mutated")
    answer["seq"] = 99
    pair.check()
    whole, _ = pair.run("find_one_and_update", {"_id": 1}, {"$inc": {"seq": 1}}, return_document=AFTER)
    whole["members"][str(USERS[0])]["read_up_to"] = 99
    pair.check()


@pytest.mark.parametrize("projection", [
    None, {}, {"seq": 1}, {"seq": True, "_id": 1}, {"pending": 0, "unused_seqs": 0},
    {"members": 0}, {f"members.{USERS[0]}": 1, "seq": 1}, {f"members.{USERS[0]}.read_up_to": 0},
    {"_id": 0, "seq": 1}, {"seq": 1, "title": 0}, {"seq": 1, "seq.x": 1}, ["seq", "version"],
    {"pending": {"$elemMatch": {"v": 1}}}, {"seq": 2, "title": 1}])
@pytest.mark.parametrize("when", [AFTER, BEFORE])
def test_projections(pair, projection, when):
    pair.run("find_one_and_update", {"_id": 1}, send(T0), projection=projection, return_document=when)


def test_a_filter_that_matches_nothing_answers_none_and_writes_nothing(pair):
    for query in ({"_id": 9}, {"_id": 1, "member_ids": USERS[5]}, {"pair": "x:y"}):
        answer, fell_back = pair.run("find_one_and_update", query, send(T0), return_document=AFTER)
        assert answer is None and not fell_back
        result, fell_back = pair.run("update_one", query, {"$set": {"title": "t"}})
        assert result["n"] == 0 and not fell_back


def test_max_inc_and_set_through_the_members_map(pair):
    member = f"members.{USERS[1]}"
    for value in (3, 1, 7.5, 7):
        result, fell_back = pair.run("update_one", {"_id": 1}, {"$max": {f"{member}.read_up_to": value}})
        assert not fell_back
    assert pair.fast.find_one({"_id": 1})["members"][str(USERS[1])]["read_up_to"] == 7.5
    for update in ({"$set": {f"{member}.role": "admin"}, "$inc": {"version": 2}},
                   {"$set": {f"{member}.role": "admin"}},  # the same value: not modified
                   {"$set": {f"members.{USERS[5]}.read_up_to": 4}},  # creates the entry
                   {"$inc": {"new.deep.counter": 1}, "$max": {"events_v": 4}},
                   {"$max": {"events_v": 2}}, {"$set": {"seq": 0.0}}, {"$set": {"seq": False}},
                   {"$max": {"title": "zz"}}, {"$max": {"created_at": T0 + datetime.timedelta(days=1)}},
                   {"$max": {"created_at": datetime.datetime(2020, 1, 1)}}):
        _, fell_back = pair.run("update_one", {"_id": 1}, update)
        assert not fell_back, update
        pair.run("find_one_and_update", {"_id": 2}, update, return_document=BEFORE)


def test_fence_events_update(pair):
    for version in (3, 2, 5, 1):
        result, fell_back = pair.run("update_one", {"_id": 1, "pending.v": {"$ne": version}},
                                     {"$max": {"events_v": version}})
        assert result["n"] == (version != 1) and not fell_back


def test_datetimes_are_stored_and_answered_as_mongomock_does(pair):
    naive = datetime.datetime(2026, 5, 6, 7, 8, 9, 999999)
    other_zone = datetime.datetime(2026, 5, 6, 7, 8, 9, 123456,
                                   tzinfo=datetime.timezone(datetime.timedelta(hours=5)))
    for value in (naive, other_zone, T0):
        for when in (AFTER, BEFORE):
            pair.run("find_one_and_update", {"_id": 3}, {"$set": {"last_at": value, "version_at": value}},
                     return_document=when)
    pair.run("find_one_and_update", {"_id": 3, "last_at": {"$lte": T0}}, {"$inc": {"seq": 1}},
             return_document=AFTER)


def test_a_unique_index_violation_raises_and_writes_nothing(pair):
    for update in ({"$set": {"pair": "a:b"}, "$inc": {"seq": 1}},
                   {"$inc": {"seq": 1}, "$set": {"last_at": T0, "pair": "a:b", "fresh.x": 1}},
                   {"$set": {"nick": "n0", "title": "changed"}}):
        with pytest.raises(mongomock.DuplicateKeyError):
            pair.fast.find_one_and_update({"_id": 1}, update)
        pair.run("find_one_and_update", {"_id": 1}, update, return_document=AFTER)
        pair.run("update_one", {"_id": 1}, update)
    pair.run("update_one", {"_id": 1}, {"$set": {"pair": "e:f", "nick": "n1"}})  # free keys
    pair.run("update_one", {"_id": 3}, {"$set": {"pair": 5}})  # not covered by the partial index
    pair.run("update_one", {"_id": 1}, {"$set": {"pair": 5}})
    pair.run("update_one", {"_id": 2}, {"$set": {"pair": "c:d"}})  # taken by _id 3 before


def test_what_it_cannot_prove_falls_back_to_mongomock(pair):
    fallbacks = [
        ("find_one_and_update", ({"_id": 1}, {"$push": {"unused_seqs": {"$each": [3], "$slice": -20}}})),
        ("update_one", ({"_id": 1}, {"$push": {"unused_seqs": 4}})),
        ("update_one", ({"_id": 1}, {"$addToSet": {"blockers": USERS[0]}})),
        ("update_one", ({"_id": 1}, {"$set": {"blockers": [USERS[0]]}})),
        ("update_one", ({"_id": 1}, {"$set": {f"members.{USERS[4]}": {"role": "member"}}})),
        ("update_one", ({"_id": 1}, {"$unset": {f"members.{USERS[4]}": ""}})),
        ("update_one", ({"_id": 1}, {"$inc": {"title": 1}})),  # not a number
        ("update_one", ({"_id": 1}, {"$max": {"title": 3}})),  # across types
        ("update_one", ({"_id": 1}, {"$set": {"title.x": 1}})),  # through a string
        ("update_one", ({"_id": 1}, {"$set": {"pending.0.v": 7}})),  # through an array
        ("update_one", ({"_id": 1}, {"$set": {"pending.$.v": 8}})),
        ("update_one", ({"_id": 1}, {"$set": {"seq": 1}, "$inc": {"seq": 1}})),  # the same path
        ("update_one", ({"_id": 1}, {"$set": {"members": {}}, "$inc": {f"members.{USERS[0]}.x": 1}})),
        ("update_one", ({"_id": 1}, {"$set": {"big": 2 ** 70}})),  # BSON refuses it
        ("update_one", ({"_id": 1}, {"$set": {"_id": 1}})),
        ("update_one", ({"_id": 1}, {"$set": {}})),
        ("update_one", ({"_id": 1}, {"$inc": {"seq": True}})),
        ("update_one", ({"_id": 1}, {"$max": {"seq": None}})),
        ("update_one", ({"_id": 1}, {"$set": {"seq": float("nan")}})),
        ("find_one_and_update", ({"_id": 1}, {"$inc": {"seq": 1}}), {"sort": [("seq", 1)]}),
        ("find_one_and_update", ({"_id": 1}, {"$inc": {"seq": 1}}), {"projection": {"_id": 0, "seq": 1}}),
    ]
    for method, args, *kwargs in fallbacks:
        _, fell_back = pair.run(method, *args, **(kwargs[0] if kwargs else {}))
        assert fell_back, (method, args)


def test_upsert_falls_back_to_mongomock(pair):
    for query in ({"_id": 50, "pair": "x:y"}, {"pair": "a:b"}, {"_id": 51}):  # ids: the same on both
        _, fell_back = pair.run("find_one_and_update", query,
                                {"$setOnInsert": {"type": "direct"}, "$inc": {"seq": 1}},
                                upsert=True, projection=COUNTER_FIELDS, return_document=AFTER)
        assert fell_back
        _, fell_back = pair.run("find_one_and_update", query, {"$inc": {"seq": 1}}, upsert=True)
        assert fell_back
        _, fell_back = pair.run("update_one", query, {"$inc": {"version": 1}}, upsert=True)
        assert fell_back


def test_random_writes_keep_both_the_same(pair):
    rng = random.Random(14)
    pairs = ["a:b", "c:d", "e:f", 5, None]
    for n in range(300):
        doc_id = rng.randrange(1, 6)
        query = rng.choice([{"_id": doc_id}, {"_id": doc_id, "member_ids": rng.choice(USERS)},
                            {"pair": rng.choice(pairs)}, {"member_ids": rng.choice(USERS)},
                            {"last_at": {"$gte": T0}}, {}])
        now = T0 + datetime.timedelta(seconds=rng.randrange(-5, 50), microseconds=rng.randrange(10 ** 6))
        update = rng.choice([
            send(now), {"$max": {f"members.{rng.choice(USERS)}.read_up_to": rng.randrange(9)}},
            {"$set": {"pair": rng.choice(pairs)}}, {"$set": {"legacy": rng.choice([True, None])}},
            {"$set": {"nick": rng.choice(["n0", "n1", "n2"])}, "$inc": {"version": 1}},
            {"$push": {"unused_seqs": n}}, {"$inc": {"member_count": rng.choice([1, -1, 0.5])}},
            {"$set": {"member_ids": rng.sample(USERS, 3)}}])
        if rng.random() < 0.2:
            pair.insert(group(10 + n, rng.sample(USERS, 2), last_at=now))
        if rng.random() < 0.5:
            pair.run("update_one", query, update)
        else:
            pair.run("find_one_and_update", query, update,
                     projection=rng.choice([None, COUNTER_FIELDS, {"pending": 0}]),
                     return_document=rng.choice([AFTER, BEFORE]))


@pytest.mark.parametrize("projection", [
    None, {"seq": 1}, {"members": 0}, {f"members.{USERS[0]}": 1, "seq": 1}, {"_id": 0, "seq": 1},
    {"seq": 1, "title": 0}, ["seq", "version"], {"pending": {"$elemMatch": {"v": 1}}}])
def test_find_one_answers_as_mongomock(pair, projection):
    """chatapp.embedded's find_one without a cursor (an equality lookup, a plain projection),
    and the cursor it falls back to otherwise: the same answer, copies, time zones, errors."""
    pair.insert(group(4, USERS[:3], last_at=T0, pending=[{"v": 1}, {"v": 2}]))
    pair.insert({"_id": 5, "member_ids": USERS[:2], "last_at": T0})  # no title
    for query in ({"_id": 1}, {"_id": 9}, {"member_ids": USERS[1]}, {"member_ids": USERS[5]},
                  {"pair": "a:b"}, {"_id": {"$in": [2, 1]}}, {"title": {"$exists": False}},
                  {"member_ids": USERS[0], "last_at": {"$gte": T0.replace(tzinfo=None)}},
                  {"$or": [{"_id": 2}, {"pair": "a:b"}]}, {"_id": {"$bad": 1}}):
        answers = []
        for find_one, c in ((type(pair.fast).find_one, pair.fast),
                            (embedded._original["find_one"], pair.slow)):
            try:
                answer = find_one(c, _copy(query), _copy(projection))
            except Exception as error:  # noqa: BLE001 - compared below
                answer = type(error)
            answers.append(repr(answer))
            if isinstance(answer, dict):
                answer.setdefault("members", {})["x"] = 1  # a copy: the store is untouched
        assert answers[0] == answers[1], query
        pair.check()


def test_nested_paths_as_every_pair_compared():
    """embedded_answer.nested (one path is another, or inside another), against comparing
    every pair as its definition says, on random sets of dotted paths."""
    import itertools

    rng = random.Random(7)
    parts = ["a", "b", "ab", "a1", "members", "x"]
    for _ in range(3000):
        paths = [".".join(rng.choice(parts) for _ in range(rng.randrange(1, 4)))
                 for _ in range(rng.randrange(1, 6))]
        expected = any(a == b or b.startswith(a + ".")
                       for (i, a), (j, b) in itertools.permutations(enumerate(paths), 2))
        assert embedded_answer.nested(paths) == expected, paths
