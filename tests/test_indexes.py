"""Start-up declares the index behind every query the stores make, idempotently."""
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
