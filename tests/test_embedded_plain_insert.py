"""The embedded store's insert of a plain document (chatapp/embedded_insert.py) stores, answers,
raises and leaves the caller's dict exactly as mongomock's own `_insert`, on documents the app
stores and on everything it hands back to mongomock (a string BSON refuses, an integer past 64
bits, keys with `$`, `.` or NUL, bytes, an OrderedDict, a datetime whose zone has no offset);
and the in-place updates' copies of a filter or an update (`as_stored`) and their check of a
`$set` value (`storable`) answer as mongomock's helper and BSON's encoder."""
import datetime
from collections import OrderedDict

import mongomock
import pytest
from bson import BSON, ObjectId, Timestamp
from hypothesis import given, settings
from hypothesis import strategies as st
from mongomock import helpers
from pymongo import ASCENDING

from chatapp import embedded, embedded_insert

pytestmark = pytest.mark.skip_with_test_mongo_uri(
    "tests the embedded store itself (chatapp/embedded_insert.py over mongomock), never the "
    "database server TEST_MONGO_URI names; the default suite runs it")


class NoOffset(datetime.tzinfo):
    def utcoffset(self, dt):
        return None


ZONES = [None, datetime.timezone.utc, datetime.timezone(datetime.timedelta(hours=5, minutes=30)),
         datetime.timezone(-datetime.timedelta(hours=11)), NoOffset()]
DATETIMES = st.builds(lambda d, zone: d.replace(tzinfo=zone),
                      st.datetimes(min_value=datetime.datetime(1, 1, 2),
                                   max_value=datetime.datetime(9999, 12, 30)),
                      st.sampled_from(ZONES[:4]))
# What the app stores...
SCALARS = st.one_of(
    st.text(max_size=6), st.sampled_from(["plain", "héllo", "", "\x00"]),
    st.integers(min_value=-2 ** 63, max_value=2 ** 63 - 1),
    st.sampled_from([2 ** 63 - 1, -2 ** 63]),
    st.floats(), st.booleans(), st.none(), st.builds(ObjectId), DATETIMES)
KEYS = st.sampled_from(["a", "b", "content", "é", "", "_"])
VALUES = st.recursive(SCALARS, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.lists(inner, max_size=3).map(tuple),
    st.dictionaries(KEYS, inner, max_size=3)), max_leaves=8)
# ...and what goes back to mongomock (one per document at most, at the top or nested)
HOSTILE_VALUES = [
    2 ** 63, -2 ** 63 - 1, 2 ** 70, "\ud800", "é\udfff", b"x", bytearray(b"y"),
    OrderedDict(a=1), {"$set": 1}, {"a.b": 1}, {"nul\x00": 1}, {1: "a"}, {"k": {"$x": 1}},
    datetime.datetime(2020, 1, 1, tzinfo=NoOffset()),
    datetime.datetime(1, 1, 1, tzinfo=ZONES[2]),  # before year 1 once made UTC
    datetime.datetime(9999, 12, 31, 23, 59, tzinfo=ZONES[3]),  # after year 9999
    {1, 2}, object()]
HOSTILE = st.sampled_from(HOSTILE_VALUES)
DOCUMENTS = st.builds(
    lambda fields, hostile, where: fields if hostile is None else {
        **fields, where: hostile if where != "nested" else [{"k": [hostile]}]},
    st.dictionaries(KEYS, VALUES, max_size=4),
    st.one_of(st.none(), st.none(), HOSTILE),
    st.sampled_from(["a", "$top", "a.b", "nested", "nul\x00"]))
IDS = st.one_of(st.builds(ObjectId), st.text(max_size=3), st.integers(-5, 5),
                st.just({"k": 1}), st.just([1]))


def shape(value):
    """`value` with every type spelled out (True is not 1, a tuple not a list, an
    OrderedDict not a dict) and key order kept."""
    if isinstance(value, dict):
        return (type(value).__name__, [(k, shape(v)) for k, v in value.items()])
    if isinstance(value, (list, tuple)):
        return (type(value).__name__, [shape(v) for v in value])
    if isinstance(value, datetime.datetime):
        return ("datetime", value.replace(tzinfo=None), str(value.tzinfo))
    return (type(value).__name__, value)


def attempt(collection, insert, doc, generated):
    """What an insert answers and stores, and what it leaves in the caller's dict; an `_id`
    an insert generated is named by its rank in `generated` (two inserts generate two ids)."""
    had_id = "_id" in doc
    try:
        answer = ("ok", insert(collection, doc))
    except Exception as error:  # noqa: BLE001 - the very error is compared
        answer = ("raised", type(error).__name__, str(error))
    if not had_id and "_id" in doc:
        assert isinstance(doc["_id"], ObjectId)
        generated.append(doc["_id"])
    names = {_id: f"<generated _id {n}>" for n, _id in enumerate(generated)}

    def named(value):
        return names.get(value, value) if isinstance(value, ObjectId) else value
    stored = [{**d, "_id": named(d["_id"])} for d in collection._store._documents.values()]
    return (tuple(named(part) for part in answer), shape({**doc, "_id": named(doc["_id"])})
            if "_id" in doc else shape(doc), shape(stored))


def collections():
    embedded.install()
    client = mongomock.MongoClient()
    pair = client.db.fast, client.db.original
    for c in pair:
        c.create_index([("u", ASCENDING)], unique=True, name="u")
        c.create_index([("a", ASCENDING), ("b", ASCENDING)], name="ab")
    return pair


def original_insert(collection, doc):
    return embedded_insert._original["_insert"](collection, doc)


def fast_insert(collection, doc):
    return collection._insert(doc)


@settings(max_examples=500, deadline=None)
@given(st.lists(st.tuples(DOCUMENTS,
                          st.one_of(st.none(), IDS), st.sampled_from([None, 1, 2])),
                min_size=1, max_size=4))
def test_it_stores_and_answers_as_mongomock(writes):
    fast, original = collections()
    assert mongomock.collection.Collection._insert is embedded_insert._insert
    generated_fast, generated_original = [], []
    for fields, _id, unique in writes:
        doc = dict(fields)
        if _id is not None:
            doc["_id"] = _id
        if unique is not None:
            doc["u"] = unique
        first = attempt(fast, fast_insert, dict(doc), generated_fast)
        second = attempt(original, original_insert, dict(doc), generated_original)
        assert first == second
    # and the indexes hold what mongomock's own writes left: the same answers
    for query in ({"u": 1}, {"u": 2}, {"a": "plain"}, {"a": None, "b": None}):
        assert shape(list(fast.find(query, {"_id": 0}))) == \
            shape(list(original.find(query, {"_id": 0})))


def test_the_app_document_is_copied_in_one_walk_and_stored_as_mongodb_would():
    fast, _ = collections()
    when = datetime.datetime(2026, 12, 4, 23, 59, 59, 123456,
                             tzinfo=datetime.timezone(datetime.timedelta(hours=1)))
    members = [ObjectId(), ObjectId()]
    doc = {"conv": ObjectId(), "seq": 7, "content": "héllo", "created_at": when,
           "attachments": [{"id": ObjectId(), "size": 3, "name": "a.txt"}],
           "member_ids": members, "read_at": None, "deleted": False}
    answer = fast.insert_one(doc)
    assert doc["_id"] == answer.inserted_id  # the caller's dict got its id, as PyMongo's does
    stored = fast._store._documents[answer.inserted_id]
    assert stored["created_at"] == datetime.datetime(2026, 12, 4, 22, 59, 59, 123000)
    assert stored["created_at"].tzinfo is None
    assert stored["member_ids"] == members and stored["member_ids"] is not members
    assert stored["attachments"][0] is not doc["attachments"][0]  # nothing shared with the caller
    doc["attachments"][0]["size"] = 99
    members.append(ObjectId())
    assert fast.find_one({"_id": answer.inserted_id})["attachments"][0]["size"] == 3
    assert len(fast.find_one({"_id": answer.inserted_id})["member_ids"]) == 2


def test_a_duplicate_leaves_nothing_written():
    fast, _ = collections()
    fast.insert_one({"_id": 1, "u": 5, "a": "x"})
    with pytest.raises(mongomock.DuplicateKeyError):
        fast.insert_one({"_id": 2, "u": 5, "a": "y"})
    with pytest.raises(mongomock.DuplicateKeyError):
        fast.insert_one({"_id": 1, "u": 6, "a": "z"})
    assert [d["_id"] for d in fast.find({})] == [1]
    assert fast.find_one({"a": "y"}) is None and fast.find_one({"u": 6}) is None
    fast.insert_one({"_id": 2, "u": 6, "a": "y"})  # the unique key is free again
    assert [d["_id"] for d in fast.find({}, sort=[("u", ASCENDING)])] == [1, 2]


@pytest.mark.parametrize("where", ["a", "nested", "$top"])
@pytest.mark.parametrize("hostile", HOSTILE_VALUES,
                         ids=[f"{type(v).__name__}-{n}" for n, v in enumerate(HOSTILE_VALUES)])
def test_what_goes_back_to_mongomock_answers_as_mongomock(hostile, where):
    fast, original = collections()
    doc = {"a": 1, where: hostile if where != "nested" else [{"k": [hostile]}], "b": "x"}
    assert attempt(fast, fast_insert, dict(doc), []) == \
        attempt(original, original_insert, dict(doc), [])


FILTER_VALUES = st.recursive(
    st.one_of(SCALARS, HOSTILE,
              st.sampled_from([datetime.datetime(2020, 1, 1, tzinfo=NoOffset()), Timestamp(5, 1)])),
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.lists(inner, max_size=3).map(tuple),
        st.dictionaries(st.sampled_from(["a", "$exists", "$set", "blockers.0"]), inner, max_size=3),
        st.dictionaries(KEYS, inner, max_size=2).map(OrderedDict)), max_leaves=8)


@settings(max_examples=500, deadline=None)
@given(FILTER_VALUES)
def test_filters_and_updates_are_made_as_mongomock_makes_them(value):
    """The in-place updates' copy of a filter or an update (embedded_insert.as_stored)."""
    def outcome(make):
        try:
            return shape(make(value))
        except Exception as error:  # noqa: BLE001 - the very error is compared
            return type(error).__name__, str(error)
    assert outcome(embedded_insert.as_stored) == \
        outcome(helpers.patch_datetime_awareness_in_document)


@settings(max_examples=300, deadline=None)
@given(SCALARS | HOSTILE.filter(lambda v: isinstance(v, (int, str))))
def test_a_set_value_is_storable_when_bson_encodes_it(value):
    try:
        BSON.encode({"v": value})
        encodes = True
    except Exception:  # noqa: BLE001 - whatever BSON refuses
        encodes = False
    assert embedded_insert.storable(value) is encodes
