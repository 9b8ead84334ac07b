"""Start-up declares the index behind every query the stores make, idempotently; start-up work
cut short by the process stopping is said as such, not as an error."""
import logging

from chatapp.extensions import mongo
from chatapp.startup import ensure_indexes

EXPECTED = {
    "users": {"username_unique", "email_unique"},
    "sessions": {"sessions_by_user", "sessions_ttl"},
    "revoked": {"revoked_ttl"},
    "sockets": {"sockets_by_user", "sockets_by_server", "sockets_by_login", "sockets_by_token",
                "sockets_by_address"},
    "servers": {"servers_by_heartbeat"},
    "messages": {"history", "idempotent_send", "by_sender_time", "by_receiver_time", "unread",
                 "by_version", "search"},
    "conversations": {"by_member_activity", "direct_pair", "legacy_upgrade"},
    "changes": {"feed"},
    "blocks": {"blocks_pair", "blocks_by_blocked"},
}


def declared(collection):
    return set(mongo.db[collection].index_information()) - {"_id_"}


def test_every_store_index_exists_after_start_up(app):
    for collection, names in EXPECTED.items():
        assert names <= declared(collection), collection


def test_index_creation_is_idempotent(app):
    before = {c: declared(c) for c in EXPECTED}
    with app.app_context():
        ensure_indexes()
        ensure_indexes()
    assert {c: declared(c) for c in EXPECTED} == before


def test_unique_and_ttl_options_are_declared(app):
    info = mongo.db.users.index_information()
    assert info["username_unique"].get("unique") and info["email_unique"].get("unique")
    assert mongo.db.revoked.index_information()["revoked_ttl"]["expireAfterSeconds"] == 0
    sends = mongo.db.messages.index_information()["idempotent_send"]
    assert sends.get("unique")
    assert sends["partialFilterExpression"] == {"client_id": {"$type": "string"}}
    assert mongo.db.messages.index_information()["history"].get("unique")
    pairs = mongo.db.conversations.index_information()["direct_pair"]
    assert pairs.get("unique")  # one direct conversation per pair, whichever process creates it
    assert pairs["partialFilterExpression"] == {"pair": {"$type": "string"}}


def test_a_version_is_recorded_once_per_conversation(app):
    feed = mongo.db.changes.index_information()["feed"]
    assert feed.get("unique") and feed["key"] == [("conv", 1), ("v", 1)]


def test_a_block_is_stored_once_per_pair_and_found_from_either_side(app):
    info = mongo.db.blocks.index_information()
    assert info["blocks_pair"].get("unique")
    assert info["blocks_pair"]["key"] == [("blocker", 1), ("blocked", 1)]  # whom X blocked
    assert info["blocks_by_blocked"]["key"] == [("blocked", 1), ("blocker", 1)]  # who blocked X


def test_start_up_work_cut_short_by_the_process_stopping_is_one_line_not_an_error(
        app, caplog, monkeypatch):
    """wsgi.py closes the client when the server stops; a start-up upgrade still running in
    the background then fails on the closed client: that is the stop, said in one line, and
    the work is left to the next start (an error with a traceback there read as a fault)."""
    from chatapp import startup
    from chatapp.conversations import upgrade

    client = mongo.client
    real_upgrade_all = upgrade.upgrade_all

    def closed_under_it():
        monkeypatch.setattr(mongo, "client", None)  # what Mongo.close() leaves
        monkeypatch.setattr(mongo, "db", None)
        return real_upgrade_all()

    monkeypatch.setattr(upgrade, "upgrade_all", closed_under_it)
    with caplog.at_level(logging.INFO, logger="chatapp.startup"):
        assert startup._try_ensure_indexes(app, client) is True  # done: nothing to retry
    records = [r for r in caplog.records if r.name == "chatapp.startup"]
    assert [r.levelno for r in records] == [logging.INFO], [r.getMessage() for r in records]
    assert "the start-up upgrade stopped" in records[0].getMessage()
    assert records[0].exc_info is None


def test_a_start_up_upgrade_failing_on_a_live_client_is_still_an_error(app, caplog, monkeypatch):
    from chatapp import startup
    from chatapp.conversations import upgrade

    def refused():
        raise RuntimeError("the database refused it")

    monkeypatch.setattr(upgrade, "upgrade_all", refused)
    with caplog.at_level(logging.INFO, logger="chatapp.startup"):
        assert startup._try_ensure_indexes(app, mongo.client) is True  # served on without it
    errors = [r for r in caplog.records
              if r.name == "chatapp.startup" and r.levelno >= logging.ERROR]
    assert len(errors) == 1 and "could not run the start-up upgrade" in errors[0].getMessage()
    assert errors[0].exc_info is not None
