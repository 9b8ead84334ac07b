"""Blocking: block, unblock, list, and the checks other domains call.

A block is one-way: the blocker decides. The user blocked
- cannot send the blocker direct messages, REST or socket; the blocker cannot message them
  either while the block stands (unblock first). The pair's direct conversation keeps who
  blocked (`blockers`), so a send's own counter update refuses it at no extra query; a
  pair's first message asks `check_can_message`,
- cannot add the blocker to a group, at creation or later (`blockers_of`, called by
  `chatapp.conversations.members`),
- sees no presence of the blocker (`presence` events, `User.online`/`last_seen`:
  `chatapp.chat.presence`, `chatapp.users.service`),
- and the two exchange no `typing` either way (`chatapp.chat.typing`).
History stays; shared groups keep both members and their messages.
"""
from datetime import datetime, timezone

from chatapp.blocks import store
from chatapp.chat import presence
from chatapp.conversations import service as conversations
from chatapp.conversations import store as conversation_store
from chatapp.errors import Forbidden, NotFound, ValidationError
from chatapp.schemas import iso
from chatapp.users import service as users
from chatapp.users import store as user_store


def block(caller_id, user_id):
    """Block a user (idempotent: blocking again keeps the first block and its time)."""
    doc = _target(caller_id, user_id)
    record, created = store.add(caller_id, user_id, datetime.now(timezone.utc))
    _mark_direct(caller_id, user_id, True)  # also when repeated: it heals a crash between
    if created:
        presence.retell_presence(caller_id, user_id)  # they see the blocker offline from now
    return _state(caller_id, doc, record)


def unblock(caller_id, user_id):
    """End a block (idempotent: unblocking a user not blocked changes nothing)."""
    doc = _target(caller_id, user_id)
    removed = store.remove(caller_id, user_id)
    _mark_direct(caller_id, user_id, False)
    if removed:
        presence.retell_presence(caller_id, user_id)  # their presence view is back
    return _state(caller_id, doc, None)


def list_blocked(caller_id):
    """The users the caller blocked, the most recently blocked first."""
    made = sorted(store.made_by(caller_id), key=lambda b: (b["at"], b["_id"]), reverse=True)
    docs = {d["_id"]: d for d in user_store.find_users([b["blocked"] for b in made])}
    ordered = [docs[b["blocked"]] for b in made if b["blocked"] in docs]
    return {"users": users.public_users(ordered, caller_id)}


def _mark_direct(caller_id, user_id, blocked):
    """The pair's direct conversation (if any) refuses messages while a block stands: each
    direction is its own `$addToSet`/`$pull`, so a block and an unblock at once cannot
    leave the pair wrongly open."""
    conversations.find_direct(caller_id, user_id)  # a 1:1-only database's pair: upgraded first
    conversation_store.set_blocker(conversation_store.pair_key(caller_id, user_id), caller_id,
                                   blocked)


def _target(caller_id, user_id):
    if user_id == caller_id:
        raise ValidationError(details={"user_id": ["You cannot block yourself."]})
    doc = user_store.find_user(user_id)
    if doc is None:
        raise NotFound("user not found")
    return doc


def _state(caller_id, doc, record):
    return {"user": users.public_users([doc], caller_id)[0], "blocked": record is not None,
            "blocked_at": iso(record["at"]) if record else None}


# --- the checks other domains call --------------------------------------------------------

def check_can_message(sender_id, receiver_id):
    """Forbidden (403) when a direct message from sender to receiver must not be sent: the
    receiver blocked the sender, or the sender blocked the receiver (unblock first). One
    query; nothing to check for a note to yourself."""
    if sender_id == receiver_id:
        return
    refuse(sender_id, {doc["blocker"] for doc in store.between(sender_id, receiver_id)})


def refuse(sender_id, blockers):
    """Forbidden when someone of the pair is among `blockers` (a pair's direct conversation
    keeps them: `chatapp.conversations.store.OPEN`)."""
    if not blockers:
        return
    if sender_id in blockers:
        raise Forbidden("you blocked this user: unblock them to send a message")
    raise Forbidden("this user does not accept your messages")


def blocked_either(a, b):
    """Whether one of the two users blocked the other."""
    return a != b and bool(store.between(a, b))


def blockers_of(user_id, among=None):
    """The ids of the users who blocked `user_id` (restricted to `among`, when given)."""
    if among is not None and not among:
        return set()
    return store.blocker_ids(user_id, among)


def blocked_by(user_id):
    """The ids of the users `user_id` blocked."""
    return store.blocked_ids(user_id)


def blocks_involving(user_id):
    """The ids of everyone in a block with `user_id`, whichever blocked whom (one query)."""
    return store.involving(user_id)
