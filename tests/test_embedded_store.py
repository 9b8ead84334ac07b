"""The embedded store's hashed indexes answer exactly as mongomock's full scans do."""
import random

import mongomock
import pytest
from bson import ObjectId
from pymongo import ASCENDING

from chatapp import embedded

pytestmark = pytest.mark.skip_with_test_mongo_uri(
    "tests the embedded store itself (chatapp/embedded.py over mongomock), never the database "
    "server TEST_MONGO_URI names; the default suite runs it")


@pytest.fixture
def coll():
    embedded.install()
    c = mongomock.MongoClient().db[f"c{ObjectId()}"]
    c.create_index([("conv", ASCENDING), ("seq", ASCENDING)], unique=True, name="history")
    c.create_index([("sender", ASCENDING), ("client_id", ASCENDING)], unique=True,
                   partialFilterExpression={"client_id": {"$type": "string"}}, name="idem")
    c.create_index([("user", ASCENDING)], name="by_user")
    return c


def scan(c, query):
    return sorted(str(d["_id"]) for d in embedded._original["_iter_documents"](c, query))


def found(c, query):
    return sorted(str(d["_id"]) for d in c.find(query))


def test_unique_index_refuses_a_duplicate_and_keeps_the_first(coll):
    coll.insert_one({"conv": "a", "seq": 1, "content": "first"})
    with pytest.raises(mongomock.DuplicateKeyError):
        coll.insert_one({"conv": "a", "seq": 1, "content": "second"})
    assert [d["content"] for d in coll.find({"conv": "a", "seq": 1})] == ["first"]
    coll.insert_one({"conv": "a", "seq": 2})


def test_partial_unique_index_applies_only_to_documents_it_covers(coll):
    sender = ObjectId()
    coll.insert_one({"conv": "a", "seq": 1, "sender": sender})
    coll.insert_one({"conv": "a", "seq": 2, "sender": sender})  # no client_id: not covered
    coll.insert_one({"conv": "a", "seq": 3, "sender": sender, "client_id": "x"})
    with pytest.raises(mongomock.DuplicateKeyError):
        coll.insert_one({"conv": "a", "seq": 4, "sender": sender, "client_id": "x"})
    assert coll.find_one({"sender": sender, "client_id": "x"})["seq"] == 3
    assert found(coll, {"sender": sender, "client_id": None}) == scan(coll, {"sender": sender,
                                                                          "client_id": None})


def test_an_update_that_would_duplicate_is_refused_and_rolled_back(coll):
    coll.insert_one({"_id": 1, "conv": "a", "seq": 1})
    coll.insert_one({"_id": 2, "conv": "a", "seq": 2})
    with pytest.raises(mongomock.DuplicateKeyError):
        coll.update_one({"_id": 2}, {"$set": {"seq": 1}})
    assert coll.find_one({"conv": "a", "seq": 2})["_id"] == 2
    coll.update_one({"_id": 2}, {"$set": {"seq": 5}})
    assert coll.find_one({"conv": "a", "seq": 5})["_id"] == 2
    assert coll.find_one({"conv": "a", "seq": 2}) is None
    coll.insert_one({"_id": 3, "conv": "a", "seq": 2})  # the old key is free again


def test_random_operations_answer_as_a_scan_does(coll):
    rng = random.Random(7)
    users = [ObjectId() for _ in range(5)]
    for n in range(400):
        op = rng.random()
        doc_id = rng.randrange(60)
        try:
            if op < 0.5:
                coll.insert_one({"_id": doc_id, "conv": rng.choice("abc"), "seq": rng.randrange(20),
                                 "user": rng.choice(users + [None, "x"]),
                                 **({"client_id": rng.choice("pq")} if rng.random() < 0.3 else {}),
                                 "sender": rng.choice(users)})
            elif op < 0.7:
                coll.update_many({"user": rng.choice(users)}, {"$set": {"user": rng.choice(users)}})
            elif op < 0.8:
                coll.replace_one({"_id": doc_id}, {"conv": "z", "seq": n, "user": rng.choice(users)},
                                 upsert=True)
            elif op < 0.9:
                coll.delete_one({"_id": doc_id})
            else:
                coll.find_one_and_update({"_id": doc_id}, {"$inc": {"seq": 1}})
        except mongomock.DuplicateKeyError:
            pass
        for query in ({"user": rng.choice(users)}, {"conv": rng.choice("abcz"), "seq": rng.randrange(20)},
                      {"_id": doc_id}, {"_id": {"$in": [doc_id, doc_id + 1]}},
                      {"sender": rng.choice(users), "client_id": rng.choice("pq")},
                      {"conv": rng.choice("abcz")}, {"conv": rng.choice("abc"), "seq": {"$lt": 9}},
                      {"conv": rng.choice("abc"), "user": rng.choice(users)}):
            assert found(coll, query) == scan(coll, query), (n, query)
        pipeline = [{"$match": {"conv": rng.choice("abc")}}, {"$group": {"_id": "$user", "n": {"$sum": 1}}}]
        assert sorted(map(str, coll.aggregate(pipeline))) == sorted(
            map(str, embedded._original["aggregate"](coll, pipeline))), n
        keys = [(d["conv"], d["seq"]) for d in coll.find()]
        assert len(keys) == len(set(keys))
