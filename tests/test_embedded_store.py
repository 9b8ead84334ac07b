"""The embedded store's hashed indexes answer exactly as mongomock's full scans do; a full
embedded store (EMBEDDED_MAX_MESSAGES) refuses new messages and keeps serving the rest."""
import os
import random
import subprocess
import sys
from pathlib import Path

import mongomock
import pytest
from bson import ObjectId
from pymongo import ASCENDING

from chatapp import embedded, embedded_capacity
from chatapp.extensions import mongo

ROOT = Path(__file__).resolve().parent.parent
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


# --- EMBEDDED_MAX_MESSAGES: a full embedded store refuses sends, and keeps serving ----------

FULL = {"code": "unavailable", "message": "the embedded store is full "
        "(EMBEDDED_MAX_MESSAGES=4); set MONGO_DB_URL to use MongoDB"}


def stored(app):
    with app.app_context():
        return {name: mongo.db[name].count_documents({}) for name in ("messages", "changes")}


def test_a_full_embedded_store_refuses_new_messages_and_keeps_serving(app, client, auth,
                                                                      socket_client, monkeypatch):
    app.config["EMBEDDED_MAX_MESSAGES"] = 4
    alice, bob, carol = auth.user(), auth.user(), auth.user()
    answers = [client.post("/api/chat/send", headers=alice.headers,
                           json={"receiver": bob.id, "content": f"m{n}", "client_id": f"c{n}"})
               for n in range(6)]
    assert [r.status_code for r in answers] == [201, 201, 201, 201, 503, 503]
    assert answers[4].get_json() == {"error": FULL}
    assert embedded_capacity.stored_messages() == 4
    conv = answers[0].get_json()["message"]["conversation"]
    before = stored(app)
    head = client.get(f"/api/chat/conversations/{conv}", headers=alice.headers).get_json()

    # Every way to send is refused alike, and takes no number: no message, no feed record.
    group = client.post("/api/chat/groups", headers=alice.headers,
                        json={"title": "g", "members": [bob.id, carol.id]})
    assert group.status_code == 201, group.get_json()
    group_id = group.get_json()["conversation"]["id"]
    refused = client.post(f"/api/chat/conversations/{group_id}/messages", headers=alice.headers,
                          json={"content": "to the group"})
    assert (refused.status_code, refused.get_json()) == (503, {"error": FULL})
    ack = socket_client(alice).emit("chat message", {"receiver": carol.id, "content": "hi"},
                                    callback=True)
    assert ack == {"ok": False, "error": FULL}
    assert stored(app)["messages"] == before["messages"] == 4
    assert client.get(f"/api/chat/conversations/{conv}",
                      headers=alice.headers).get_json()["version"] == head["version"]
    # A retry of a stored message still answers with it (it adds nothing).
    retry = client.post("/api/chat/send", headers=alice.headers,
                        json={"receiver": bob.id, "content": "m1", "client_id": "c1"})
    assert retry.status_code == 200
    assert retry.get_json()["message"] == answers[1].get_json()["message"]

    # Reads, edits and deletions go on.
    page = client.get(f"/api/chat/messages/{alice.id}/{bob.id}", headers=bob.headers)
    assert [m["content"] for m in page.get_json()] == ["m3", "m2", "m1", "m0"]
    assert len(client.get("/api/chat/conversations", headers=bob.headers).get_json()) == 2
    changes = client.get(f"/api/chat/conversations/{conv}/changes?since=0", headers=bob.headers)
    assert len(changes.get_json()["messages"]) == 4
    assert len(client.get("/api/chat/search?q=m2", headers=bob.headers).get_json()) == 1
    first = answers[0].get_json()["message"]["id"]
    assert client.patch(f"/api/chat/messages/{first}", headers=alice.headers,
                        json={"content": "edited"}).status_code == 200
    assert client.delete(f"/api/chat/messages/{first}", headers=alice.headers).status_code == 200
    assert client.post(f"/api/chat/conversations/{conv}/read", headers=bob.headers,
                       json={}).status_code == 200
    assert embedded_capacity.stored_messages() == 4  # a deleted message is blanked: it counts

    # Room again (a higher cap, or none): sends go through.
    app.config["EMBEDDED_MAX_MESSAGES"] = 0
    assert client.post("/api/chat/send", headers=alice.headers,
                       json={"receiver": bob.id, "content": "again"}).status_code == 201
    assert embedded_capacity.stored_messages() == 5
    # On MongoDB the setting is ignored (the messages are not in this process).
    app.config["EMBEDDED_MAX_MESSAGES"] = 4
    monkeypatch.setattr(mongo, "embedded", False)
    assert client.post("/api/chat/send", headers=alice.headers,
                       json={"receiver": bob.id, "content": "on MongoDB"}).status_code == 201


@pytest.mark.parametrize("value, expected", [("123", 123), ("0", 0), ("", 250_000)])
def test_the_cap_is_read_from_the_environment(value, expected):
    """Settings are read when `config` is imported: a fresh interpreter each (empty = unset,
    which also shadows a developer's .env)."""
    env = {**os.environ, "EMBEDDED_MAX_MESSAGES": value}
    out = subprocess.run([sys.executable, "-c", "import config; "
                          "print(config.Config.EMBEDDED_MAX_MESSAGES)"],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == str(expected), out.stderr
