"""The conversation documents the 1:1-only version wrote, for the upgrade (upgrade.py).

Its documents: `_id` is the pair key, `members` an array of ids; a half-upgraded
conversation carries `legacy: true` until its messages have moved.
"""
from pymongo.errors import OperationFailure

from chatapp.conversations.store import conversations

LEGACY_INDEX = "conversations_by_member"  # the 1:1-only version's index


def drop_legacy_index():
    try:
        conversations().drop_index(LEGACY_INDEX)
    except OperationFailure:
        pass  # already gone (or never there)


def legacy_conversations():
    """Documents the 1:1-only version wrote (string `_id`), and half-upgraded ones."""
    yield from conversations().find({"_id": {"$type": "string"}})


def half_upgraded():
    return list(conversations().find({"legacy": True}, {"pair": 1}))


def find_legacy(pair):
    return conversations().find_one({"_id": pair})


def delete_legacy(pair):
    conversations().delete_one({"_id": pair})


def finish_upgrade(conversation_id):
    """Clear `legacy`; True for the one caller that cleared it."""
    result = conversations().update_one({"_id": conversation_id, "legacy": True},
                                        {"$unset": {"legacy": ""}})
    return result.modified_count == 1
