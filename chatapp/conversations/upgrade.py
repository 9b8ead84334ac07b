"""Upgrade, in place, a database written by the 1:1-only version.

That version keyed a conversation by its pair (`_id: "<low id>:<high id>"`, `members` an
array of two ids) and stored that key in each message's `conv`. Each pair becomes a direct
conversation with an ObjectId, in steps that are each safe to repeat, so an upgrade cut
off anywhere resumes, and several processes may upgrade at once:

1. find-or-create the new document by its `pair` (unique index), seeded with the old
   counter (so new messages continue the old `seq`), the members' read and delivered
   markers computed from the messages, and `legacy: true`;
2. move the pair's messages to the new id;
3. delete the old document;
4. clear `legacy`.

Every process runs it over the whole collection at start-up (`upgrade_all`), or an
operator runs `python -m chatapp.conversations.upgrade` beforehand. Stop every process of
the 1:1-only version first: one still running would write new messages under the old key. Until a process has
seen the whole collection upgraded, every access to a pair upgrades that pair first, and
a conversation still marked `legacy` is finished before it is read, so nothing is ever
read half-moved.
"""
import logging

from bson import ObjectId

from chatapp.chat import store as message_store
from chatapp.conversations import legacy_store, store

log = logging.getLogger(__name__)
_state = {"done": False}


def done():
    return _state["done"]


def reset():
    """A new database (a new app in tests) has to be looked at again."""
    _state["done"] = False


def upgrade_all():
    """Upgrade every legacy conversation; returns how many this process finished (with
    several processes at work, each pair is counted by the one that finished it)."""
    legacy_store.drop_legacy_index()
    count = 0
    for legacy in legacy_store.legacy_conversations():
        count += upgrade_pair(legacy["_id"], legacy)
    for doc in legacy_store.half_upgraded():
        count += upgrade_pair(doc["pair"])
    if count:
        log.info("upgraded %d conversation(s) written by the 1:1-only version", count)
    _state["done"] = True
    return count


def upgrade_pair_if_needed(pair):
    if not _state["done"]:
        upgrade_pair(pair)


def upgrade_pair(pair, legacy=None):
    """Steps 1-4 for one pair (a no-op when nothing is left to upgrade); True when this
    call finished it."""
    legacy = legacy or legacy_store.find_legacy(pair)
    doc = store.find_direct(pair)
    if legacy is None and (doc is None or not doc.get("legacy")):
        return False
    if doc is None:
        doc = store.upsert_direct(pair, _seed(pair, legacy))
    message_store.move_conversation(pair, doc["_id"])
    legacy_store.delete_legacy(pair)
    return legacy_store.finish_upgrade(doc["_id"])


def _seed(pair, legacy):
    """The new document, from the old one and its messages (read before any is moved)."""
    ids = sorted(set(legacy["members"]))
    first = message_store.oldest_in(pair)
    created_at = first["created_at"] if first else legacy.get("last_at")
    members = {}
    for user in ids:
        entry = store.member_entry("member", created_at,
                                   read_up_to=message_store.marked_up_to(pair, user, "read_at"),
                                   delivered_up_to=message_store.marked_up_to(
                                       pair, user, "delivered_at"))
        members[str(user)] = entry
    return {"_id": ObjectId(), "type": "direct", "title": None,
            "created_by": first["sender"] if first else ids[0], "created_at": created_at,
            "member_ids": ids, "member_count": len(ids), "members": members,
            "seq": legacy.get("seq", 0), "version": legacy.get("seq", 0),
            "last_at": legacy.get("last_at"), "last_message_id": legacy.get("last_message_id"),
            "legacy": True}


def main():
    """`python -m chatapp.conversations.upgrade`: upgrade the database in MONGO_DB_URL."""
    from chatapp import create_app

    logging.basicConfig(level=logging.INFO)
    app = create_app()  # start-up declares the indexes and runs the upgrade
    with app.app_context():
        log.info("upgrade complete: %d conversation(s) left to upgrade", upgrade_all())


if __name__ == "__main__":
    main()
