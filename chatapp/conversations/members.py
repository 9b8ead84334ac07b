"""The group lifecycle: create, rename, add, remove, leave, roles, ownership transfer.

Each change is one atomic update of the conversation document whose condition repeats
what was checked (the caller's role, the target's membership, the room under the cap), so
two admins acting at once cannot half-apply or undo each other's check; an update whose
condition no longer holds is re-evaluated from the fresh document. Each change takes
the conversation's next versions first, writes its feed entries with the change (so a
reader can record them if this process dies before it does: `chatapp.sync`), records
them, and emits its `conversation` events after the write.
"""
from bson import ObjectId
from flask import current_app

from chatapp.blocks import service as blocks
from chatapp.conversations import store
from chatapp.conversations.service import emit_change, member_of, now, present
from chatapp.errors import Conflict, Forbidden, NotFound, ValidationError
from chatapp.sync import service as sync
from chatapp.users import store as user_store

MANAGERS = ("owner", "admin")
ATTEMPTS = 10  # re-evaluations when a concurrent change invalidated the condition


def _max_members():
    return current_app.config["MAX_GROUP_MEMBERS"]


def _existing_users(ids):
    """404 naming the unknown ids (nothing is created or added)."""
    found = {doc["_id"] for doc in user_store.find_users(ids)} if ids else set()
    missing = [str(i) for i in ids if i not in found]
    if missing:
        raise NotFound("user not found", details={"user_ids": missing})


def _not_blocking(caller_id, ids, field):
    """403 naming the users who blocked the caller: they cannot be put in a group by them
    (nothing is created or added). One query."""
    refused = blocks.blockers_of(caller_id, among=ids)
    if refused:
        raise Forbidden("some of these users blocked you",
                        details={field: sorted(str(u) for u in refused)})


def create_group(caller_id, title, member_ids):
    """Any user: a group with themself as owner and the listed users as members."""
    others = list(dict.fromkeys(m for m in member_ids if m != caller_id))
    if not others:
        raise ValidationError(details={"members": ["A group needs at least one other member."]})
    if 1 + len(others) > _max_members():
        raise ValidationError(details={"members": [f"At most {_max_members()} members in all."]})
    _existing_users(others)
    _not_blocking(caller_id, others, "members")
    when = now()
    members = {str(caller_id): store.member_entry("owner", when)}
    members.update({str(m): store.member_entry("member", when) for m in others})
    # Versions 1..n: each member added (the creator first, as owner); n+1: the title.
    ids = [caller_id, *others]
    entries = [sync.pending(v, "member_added", user=u, by=caller_id, role=members[str(u)]["role"])
               for v, u in enumerate(ids, start=1)]
    entries.append(sync.pending(len(ids) + 1, "title_changed", title=title, by=caller_id))
    doc = {"_id": ObjectId(), "type": "group", "title": title, "created_by": caller_id,
           "created_at": when, "members": members, "member_ids": ids,
           "member_count": len(ids), "seq": 0, "version": len(entries), "version_at": when,
           "last_at": when, "last_message_id": None, "pending": entries,
           "events_v": len(entries)}
    store.insert(doc)
    versions = [_record(doc, entry) for entry in entries]
    emit_change("created", doc, caller_id, versions[-1])
    return present(doc, caller_id)


def _group(caller_id, ref):
    doc = member_of(caller_id, ref)
    if doc["type"] != "group":
        raise Conflict("a direct conversation's membership and title never change",
                       details={"conversation": ["direct"]})
    return doc


def _role(doc, user_id):
    member = doc["members"].get(str(user_id))
    return member["role"] if member else None


def _manager(doc, caller_id):
    role = _role(doc, caller_id)
    if role not in MANAGERS:
        raise Forbidden("only the group's owner or an admin may do this")
    return role


def _retrying(caller_id, ref, attempt):
    """Run `attempt(doc)` on a fresh read until its conditional update applies."""
    for _ in range(ATTEMPTS):
        doc = _group(caller_id, ref)
        result = attempt(doc)
        if result is not None:
            return result
    raise Conflict("the group changed concurrently, try again")


def rename(caller_id, ref, title):
    """Owner or admin: change the title; members get `conversation` {type: updated}."""
    def attempt(doc):
        role = _manager(doc, caller_id)
        if doc.get("title") == title:
            return present(doc, caller_id)
        entry, = _take(doc, ("title_changed", {"title": title, "by": caller_id}))
        after = _write(doc, {f"members.{caller_id}.role": role}, {"$set": {"title": title}},
                       [entry])
        if after is None:
            return None
        emit_change("updated", after, caller_id, _record(after, entry))
        return present(after, caller_id)
    return _retrying(caller_id, ref, attempt)


def add_members(caller_id, ref, user_ids):
    """Owner or admin: add users (already-members ignored); all or nothing under the cap."""
    user_ids = list(dict.fromkeys(user_ids))
    _existing_users(user_ids)

    def attempt(doc):
        role = _manager(doc, caller_id)
        new = [u for u in user_ids if str(u) not in doc["members"]]
        if not new:
            return present(doc, caller_id)
        _not_blocking(caller_id, new, "user_ids")  # members already in stay, blocked or not
        room = _max_members() - len(new)
        if doc["member_count"] > room:
            raise ValidationError(details={"user_ids": [
                f"At most {_max_members()} members in all ({doc['member_count']} now)."]})
        when = now()
        entries = _take(doc, *[("member_added", {"user": u, "by": caller_id, "role": "member"})
                               for u in new])
        after = _write(
            doc,
            {f"members.{caller_id}.role": role, "member_ids": {"$nin": new},
             "member_count": {"$lte": room}},
            {"$set": {f"members.{u}": store.member_entry("member", when) for u in new},
             "$push": {"member_ids": {"$each": new}},
             "$inc": {"member_count": len(new)}}, entries)
        if after is None:
            return None
        for user, entry in zip(new, entries):
            emit_change("member_added", after, caller_id, _record(after, entry), user=user)
        return present(after, caller_id)
    return _retrying(caller_id, ref, attempt)


def remove_member(caller_id, ref, target_id):
    """Owner/admin removes another member; anyone removes themself (leaves). Returns the
    Conversation, or None when the caller left."""
    def attempt(doc):
        caller_role, target_role = _role(doc, caller_id), _role(doc, target_id)
        if target_id != caller_id:
            _manager(doc, caller_id)
            if target_role is None:
                raise NotFound("not a member of this conversation")
            if caller_role == "admin" and target_role in MANAGERS:
                raise Forbidden("an admin cannot remove the owner or another admin")
        changes = {"$unset": {f"members.{target_id}": ""}, "$pull": {"member_ids": target_id},
                   "$inc": {"member_count": -1}}
        heir = _heir(doc, target_id) if target_role == "owner" else None
        events = [("member_removed", {"user": target_id, "by": caller_id})]
        if heir is not None:
            changes["$set"] = {f"members.{heir}.role": "owner"}
            events.append(("role_changed", {"user": heir, "by": caller_id, "role": "owner"}))
        entries = _take(doc, *events)
        condition = {f"members.{caller_id}.role": caller_role,
                     f"members.{target_id}.role": target_role}
        after = _write(doc, condition, changes, entries)
        if after is None:
            return None
        emit_change("member_removed", after, caller_id, _record(after, entries[0]),
                    user=target_id, extra_to=[target_id])
        if heir is not None:
            emit_change("role_changed", after, caller_id, _record(after, entries[1]), user=heir)
        return {"conversation": None if target_id == caller_id else present(after, caller_id)}
    return _retrying(caller_id, ref, attempt)["conversation"]


def _take(doc, *events):
    """Take one version per (type, fields) event, in order: their feed entries."""
    last = store.take_version(doc["_id"], len(events))["version"]
    first = last - len(events) + 1
    return [sync.pending(first + i, kind, **fields) for i, (kind, fields) in enumerate(events)]


def _write(doc, condition, changes, entries):
    """The change with its feed entries, if `condition` still holds and no event with a
    higher number was written first (events land in the order of their numbers: two renames
    at once end with the later number's title); else its numbers are void (nothing was
    written at them) and None: the caller tries again with fresh ones."""
    push = {**changes.get("$push", {}), **sync.pending_push(entries)}
    changes = {**changes, "$push": push,
               "$set": {**changes.get("$set", {}), "events_v": entries[-1]["v"]}}
    sync.writing()  # tests: writes landing out of the order of their numbers
    after = store.update(doc["_id"], {**condition, **store.events_before(entries[0]["v"])},
                         changes)
    if after is None:
        for entry in entries:
            sync.void(doc["_id"], entry["v"])
    return after


def _record(after, entry):
    """Record a change already written (with its entry) in the change feed: its version."""
    return sync.record_event(after["_id"], entry)


def _heir(doc, leaving_id):
    """The longest-standing admin, else the longest-standing member; None when alone."""
    rest = [(m["role"] != "admin", m["joined_at"], uid) for uid, m in doc["members"].items()
            if uid != str(leaving_id)]
    return ObjectId(min(rest)[2]) if rest else None


def change_role(caller_id, ref, target_id, role):
    """Owner: make a member admin or member; `owner` transfers ownership (the old owner
    becomes admin)."""
    def attempt(doc):
        if _role(doc, caller_id) != "owner":
            raise Forbidden("only the group's owner may change roles")
        current = _role(doc, target_id)
        if current is None:
            raise NotFound("not a member of this conversation")
        if target_id == caller_id:
            if role == "owner":
                return present(doc, caller_id)
            raise Conflict("the owner's role changes only by transferring ownership",
                           details={"role": ["Give `owner` to another member instead."]})
        if current == role:
            return present(doc, caller_id)
        changes = {f"members.{target_id}.role": role}
        events = [("role_changed", {"user": target_id, "by": caller_id, "role": role})]
        if role == "owner":
            changes[f"members.{caller_id}.role"] = "admin"
            events.append(("role_changed", {"user": caller_id, "by": caller_id, "role": "admin"}))
        entries = _take(doc, *events)
        after = _write(doc, {f"members.{caller_id}.role": "owner",
                             f"members.{target_id}.role": current}, {"$set": changes}, entries)
        if after is None:
            return None
        for (_, fields), entry in zip(events, entries):
            emit_change("role_changed", after, caller_id, _record(after, entry),
                        user=fields["user"])
        return present(after, caller_id)
    return _retrying(caller_id, ref, attempt)
