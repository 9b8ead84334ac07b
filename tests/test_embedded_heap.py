"""EMBEDDED_FREEZE_EVERY (chatapp/embedded_heap.py): the embedded store's documents leave the
cyclic collector's walk, so a full collection's pause does not grow with the store; nothing
dead is kept by it, and the store answers as before."""
import gc
import weakref

import pytest

from chatapp import create_app, embedded_heap
from chatapp.extensions import mongo
from config import TestingConfig
from tests.conftest import Auth

pytestmark = pytest.mark.skip_with_test_mongo_uri(
    "tests the embedded store's heap (the process's own collector); MongoDB keeps nothing "
    "in it, and the default suite runs it")


@pytest.fixture
def freezing():
    """An app whose embedded store freezes every `every` new documents; everything the test
    froze is given back to the collector afterwards (other tests share the process)."""
    def make(every):
        return create_app(TestingConfig, EMBEDDED_FREEZE_EVERY=every)

    yield make
    embedded_heap.configure(0)
    gc.unfreeze()


def tracked_ids():
    return {id(o) for o in gc.get_objects()}


def test_stored_messages_leave_the_collectors_walk_and_are_served_as_before(freezing):
    app = freezing(25)
    client = app.test_client()
    auth = Auth(client)
    alice, bob = auth.user(), auth.user()
    frozen_before = gc.get_freeze_count()
    for n in range(40):
        r = client.post("/api/chat/send", headers=alice.headers,
                        json={"receiver": bob.id, "content": f"m{n}"})
        assert r.status_code == 201, r.get_json()
    assert gc.get_freeze_count() > frozen_before
    with app.app_context():
        docs = list(mongo.db.messages._store._documents.values())
    # The first messages were stored before the last freeze: out of the collector's walk.
    walked = tracked_ids()
    assert len(docs) == 40 and not any(id(doc) in walked for doc in docs[:5])
    conv = r.get_json()["message"]["conversation"]
    page = client.get(f"/api/chat/conversations/{conv}/messages?limit=100",
                      headers=bob.headers).get_json()
    assert [m["content"] for m in page] == [f"m{n}" for n in reversed(range(40))]


class Cycle:
    pass


def test_nothing_dead_is_frozen(freezing):
    """The freeze collects first: a reference cycle that died before it is freed, not kept
    for good out of the collector's reach."""
    app = freezing(10)
    gc.disable()  # only the freeze's own collection may free it
    try:
        dead = Cycle()
        dead.self = dead
        alive = Cycle()
        alive.self = alive
        dead_ref, alive_ref = weakref.ref(dead), weakref.ref(alive)
        del dead
        frozen_before = gc.get_freeze_count()
        with app.app_context():
            mongo.db.notes.insert_many([{"n": n} for n in range(20)])
        assert gc.get_freeze_count() > frozen_before
        assert dead_ref() is None
        assert alive_ref() is alive and id(alive) not in tracked_ids()
    finally:
        gc.enable()


def test_zero_freezes_nothing(freezing):
    app = freezing(0)
    frozen_before = gc.get_freeze_count()
    with app.app_context():
        mongo.db.notes.insert_many([{"n": n} for n in range(3000)])
        assert gc.get_freeze_count() == frozen_before
        assert all(id(doc) in tracked_ids()
                   for doc in list(mongo.db.notes._store._documents.values())[:3])


def test_served_processes_freeze_and_the_test_process_does_not():
    """`make run` and production freeze the store's heap; the suite's many apps would be
    kept by a freeze, so testing leaves it off (the tests above turn it on)."""
    from config import DevelopmentConfig, ProductionConfig

    assert TestingConfig.EMBEDDED_FREEZE_EVERY == 0
    assert DevelopmentConfig.EMBEDDED_FREEZE_EVERY > 0
    assert ProductionConfig.EMBEDDED_FREEZE_EVERY > 0
