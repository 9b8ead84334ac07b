"""Reactions: a member adds or removes their emoji on a message of their conversation.

Each user's reaction is one atomic conditional update (`$push` under `$ne`, `$pull`), so
many users reacting at once lose none. A change takes the conversation's next `version`,
is recorded in the change feed and goes to every member as `message updated`; repeating a
change that changes nothing takes no version and emits nothing.
"""
import unicodedata

from chatapp import realtime
from chatapp.chat import store
from chatapp.chat.public import emoji_key, public_message
from chatapp.chat.service import now, refuse_if_blocked, visible, visible_message
from chatapp.conversations import store as conversation_store
from chatapp.errors import Conflict, ValidationError
from chatapp.sync import service as sync

EMOJI_MAX = 16  # code points
DISTINCT_MAX = 20  # distinct emoji per message
REFUSED_CATEGORIES = ("Cc", "Cs", "Co", "Cn", "Zs", "Zl", "Zp")


def check_emoji(emoji):
    """1-16 code points, no whitespace or control character, something visible."""
    if not 1 <= len(emoji) <= EMOJI_MAX:
        raise ValidationError(details={"emoji": [f"1 to {EMOJI_MAX} characters."]})
    if any(ch.isspace() or unicodedata.category(ch) in REFUSED_CATEGORIES for ch in emoji) \
            or not visible(emoji):
        raise ValidationError(details={"emoji": ["No whitespace or control characters."]})
    return emoji


def add_reaction(caller_id, message_id, emoji):
    return _react(caller_id, message_id, check_emoji(emoji), adding=True)


def remove_reaction(caller_id, message_id, emoji):
    return _react(caller_id, message_id, check_emoji(emoji), adding=False)


def _react(caller_id, message_id, emoji, adding):
    doc, conv = visible_message(caller_id, message_id)
    refuse_if_blocked(caller_id, conv)
    key = emoji_key(emoji)
    for _ in range(3):
        if doc.get("deleted"):
            raise Conflict("a deleted message takes no reactions",
                           details={"message": ["deleted"]})
        present = caller_id in ((doc.get("reactions") or {}).get(key) or ())
        if present == adding:
            return public_message(doc)  # nothing changes: no version, no event
        if adding and key not in (doc.get("reaction_keys") or ()) \
                and len(doc.get("reaction_keys") or ()) >= DISTINCT_MAX:
            raise ValidationError(details={"emoji": [
                f"At most {DISTINCT_MAX} different emoji on a message."]})
        counter = conversation_store.take_version(conv["_id"])
        at = now()
        sync.writing()
        change = store.add_reaction if adding else store.remove_reaction
        after = change(doc["_id"], key, caller_id, counter["version"], DISTINCT_MAX)
        if after is None:  # a concurrent change got there first: its number is not used
            sync.void(conv["_id"], counter["version"])
            doc = store.find_message(doc["_id"])
            continue
        if sync.record_message(conv["_id"], counter["version"], at, doc["_id"]) \
                != counter["version"]:
            after = store.find_message(doc["_id"])  # re-announced at a fresh version
        message = public_message(after)
        realtime.emit_to_users("message updated", message, counter["member_ids"])
        return message
    raise Conflict("the message changed concurrently, try again")
