"""Issue 11, item 7: on the embedded store every query the stores make is served by an index.

A history request used to scan every stored message inside the event loop (a top-level
`$or` no hash served), and a user's conversations were found by scanning every conversation
(`member_ids` is an array, which the hashes skipped). Here each store query runs once over
the data of three users, then again with ten times as much data of other users beside it:
the documents it examines (calls of mongomock's filter on a document) must not change, and
stay within what the users themselves own. Property tests check that the store answers
exactly as mongomock's own scans do, for random writes and queries (`$or`, `$and`, `$in`,
`$all`, ranges, arrays, sorts read in an index's order with ties, skip and limit) over
indexes like the app's (compound, multikey, unique, partial, sparse); that every function of
the stores (messages and their search, the change feed, conversations, blocks, attachments)
answers as on plain mongomock after random writes through the stores; and that TTL indexes
expire the same documents as mongomock's sweep while an access reads only what is due.
"""
import contextlib
import datetime

import mongomock
import mongomock.collection
import pytest
from bson import ObjectId
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mongomock import filtering
from mongomock.store import CollectionStore
from pymongo import ASCENDING, DESCENDING

from chatapp import create_app, embedded, embedded_plan, embedded_text
from chatapp.attachments import store as attachments
from chatapp.blocks import store as blocks
from chatapp.chat import store as messages
from chatapp.conversations import legacy_store as legacy_conversations
from chatapp.conversations import store as conversations
from chatapp.extensions import mongo
from chatapp.search import store as search
from chatapp.sync import store as feed
from chatapp.users import store as users
from config import TestingConfig
from tests.embedded_reference import plain_mongomock

pytestmark = pytest.mark.skip_with_test_mongo_uri(
    "tests the embedded store itself (chatapp/embedded.py over mongomock), never the database "
    "server TEST_MONGO_URI names; the default suite runs it")

T0 = datetime.datetime(2026, 1, 1)


class Examined:
    """Counts the documents mongomock's filter is applied to (each scanned or candidate one)."""

    def __init__(self, monkeypatch):
        self.count = 0
        real = filtering.filter_applies

        def counting(search_filter, document):
            self.count += 1
            return real(search_filter, document)

        monkeypatch.setattr(filtering, "filter_applies", counting)
        monkeypatch.setattr(mongomock.collection, "filter_applies", counting)

    def of(self, call):
        before = self.count
        call()
        return self.count - before


def at(n):
    return T0 + datetime.timedelta(seconds=n)


def conversation(kind, member_ids, n, last):
    ids = sorted(set(member_ids))
    doc = {"_id": ObjectId(), "type": kind, "title": None if kind == "direct" else "g",
           "created_by": ids[0], "created_at": at(0),
           "members": {str(u): conversations.member_entry("member", at(0)) for u in ids},
           "member_ids": ids, "member_count": len(ids), "seq": n, "version": n,
           "last_at": at(last), "last_message_id": None}
    if kind == "direct":
        doc["pair"] = conversations.pair_key(ids[0], ids[-1])
    conversations.insert(doc)
    return doc


def talk(conv, senders, n, start, receivers=None):
    """`n` messages in `conv`, senders taking turns (receivers: the direct peer, or none)."""
    docs = []
    for seq in range(1, n + 1):
        sender = senders[seq % len(senders)]
        receiver = receivers[seq % len(receivers)] if receivers else None
        doc = {"_id": ObjectId(), "conv": conv["_id"], "seq": seq, "version": seq,
               "sender": sender, "receiver": receiver, "content": f"m{seq}",
               "created_at": at(start + seq), "delivered_at": None,
               "read_at": at(start + seq) if seq <= n // 2 else None, "edited_at": None,
               "deleted": False, "client_id": f"{conv['_id']}-{seq}"}
        assert messages.insert_message(doc)
        assert feed.insert(conv["_id"], seq, doc["created_at"], {"kind": "message", "msg": doc["_id"]})
        docs.append(doc)
    return docs


def belongings(user, peer, message, unsent_since):
    """A block of `peer`, a file sent in `message` and one not sent yet; the files' ids."""
    blocks.add(user, peer, at(1))
    files = []
    for sent in (True, False):
        upload = attachments.Upload(ObjectId(), "f.bin")
        upload.write(b"data")
        upload.close({"owner": user, "content_type": "text/plain", "sha256": "x",
                      **({"sent_in": []} if sent else {"unsent_since": unsent_since,
                                                       "sent_in": []})}, at(0))
        if sent:
            attachments.add_link([upload.id], {"conv": message["conv"], "msg": message["_id"]})
        files.append(upload.id)
    return files


def world(others):
    """Alice, bob and carol (a direct pair, alice's notes, a group of three, a group with a
    big membership), then `others` pairs and groups of other users; the store queries'
    arguments."""
    alice, bob, carol = ObjectId(), ObjectId(), ObjectId()
    for user in (alice, bob, carol):
        users.users().insert_one({"_id": user, "username": str(user), "username_lower": str(user),
                                  "email": f"{user}@example.com", "password_hash": "x"})
        users.add_socket(f"s-{user}", user, "server-1", f"jti-{user}", f"sid-{user}")
    pair = conversation("direct", [alice, bob], 30, 100)
    pair_messages = talk(pair, [alice, bob], 30, 0, [bob, alice])
    notes = conversation("direct", [alice], 5, 50)
    talk(notes, [alice], 5, 40, [alice])
    group = conversation("group", [alice, bob, carol], 20, 90)
    talk(group, [alice, bob, carol], 20, 60)
    push_pending(group["_id"], [{"v": 21, "type": "read", "user": carol}])
    files = belongings(alice, carol, pair_messages[15], at(2))
    for n in range(others):
        x, y, z = ObjectId(), ObjectId(), ObjectId()
        users.users().insert_one({"_id": x, "username": str(x), "username_lower": str(x),
                                  "email": f"{x}@example.com", "password_hash": "x"})
        users.add_socket(f"s-{x}", x, "server-1", f"jti-{x}", f"sid-{x}")
        users.revoke([f"jti-old-{x}"], at(10 ** 9))
        theirs = talk(conversation("direct", [x, y], 10, 200 + n), [x, y], 10, 200 + n, [y, x])
        group_of_others = conversation("group", [x, y, z], 10, 300 + n)
        talk(group_of_others, [x, y, z], 10, 300 + n)
        push_pending(group_of_others["_id"], [{"v": 11, "type": "read", "user": z}])
        belongings(x, y, theirs[3], at(10 ** 6))  # not orphans at the sweep's moment yet
    return {"alice": alice, "bob": bob, "carol": carol, "pair": pair,
            "middle": pair_messages[15], "group": group, "files": files}


QUERIES = {
    # chat/store.py
    "user_page": lambda w: messages.user_page(w["alice"], 20),
    "user_page before": lambda w: messages.user_page(w["alice"], 20, before=w["middle"]),
    "user_page after": lambda w: messages.user_page(w["alice"], 20, after=w["middle"]),
    "conversation_page": lambda w: messages.conversation_page(w["pair"]["_id"], 20),
    "conversation_page before": lambda w: messages.conversation_page(w["pair"]["_id"], 20,
                                                                     before_seq=15),
    "conversation_page after": lambda w: messages.conversation_page(w["pair"]["_id"], 20,
                                                                    after_seq=5),
    "find_message": lambda w: messages.find_message(w["middle"]["_id"]),
    "find_messages": lambda w: messages.find_messages([w["middle"]["_id"], ObjectId()]),
    "find_by_client_id": lambda w: messages.find_by_client_id(w["middle"]["sender"],
                                                              w["middle"]["client_id"]),
    "newest_unmarked": lambda w: messages.newest_unmarked(w["pair"]["_id"], w["bob"],
                                                          w["alice"], "read_at"),
    "mark": lambda w: messages.mark(w["pair"]["_id"], w["alice"], "delivered_at", 20, at(1)),
    "edit_content": lambda w: messages.edit_content(w["middle"]["_id"], "edited", at(2), 99),
    "blank": lambda w: messages.blank(w["middle"]["_id"], 100),
    "count_unread": lambda w: messages.count_unread(w["group"]["_id"], w["alice"], 5),
    "count_from_others": lambda w: messages.count_from_others(w["pair"]["_id"], w["alice"], 2, 9),
    "newest_in": lambda w: messages.newest_in(w["pair"]["_id"]),
    "oldest_in": lambda w: messages.oldest_in(w["pair"]["_id"]),
    "marked_up_to": lambda w: messages.marked_up_to(w["pair"]["_id"], w["alice"], "read_at"),
    "find_by_version": lambda w: messages.find_by_version(w["pair"]["_id"], 12),
    "find_by_version, before versions": lambda w: messages.find_by_version(w["pair"]["_id"], 99),
    "raise_version": lambda w: messages.raise_version(w["middle"]["_id"], 101),
    "add_reaction": lambda w: messages.add_reaction(w["middle"]["_id"], "k", w["bob"], 102, 20),
    "remove_reaction": lambda w: messages.remove_reaction(w["middle"]["_id"], "k", w["bob"], 103),
    # sync/store.py: the change feed
    "changes after": lambda w: feed.after(w["pair"]["_id"], 20, 5),
    "changes find": lambda w: feed.find(w["pair"]["_id"], 7),
    "changes insert": lambda w: feed.insert(w["pair"]["_id"], 104, at(5), {"kind": "void"}),
    # conversations/store.py
    "find": lambda w: conversations.find(w["group"]["_id"]),
    "find_for_member": lambda w: conversations.find_for_member(w["group"]["_id"], w["carol"]),
    "find_direct": lambda w: conversations.find_direct(w["pair"]["pair"]),
    "page_for_member": lambda w: conversations.page_for_member(w["alice"], 20),
    "page_for_member groups": lambda w: conversations.page_for_member(w["alice"], 20, "group"),
    "page_for_member cursor": lambda w: conversations.page_for_member(
        w["alice"], 20, after=(w["group"]["last_at"], w["group"]["_id"])),
    "shared_with": lambda w: conversations.shared_with(w["alice"], 50),
    "shared": lambda w: conversations.shared(w["carol"], w["bob"]),
    "take_seq": lambda w: conversations.take_seq(w["group"]["_id"], w["carol"], ObjectId(), at(3)),
    "take_version": lambda w: conversations.take_version(w["group"]["_id"]),
    "update": lambda w: conversations.update(w["group"]["_id"], {"type": "group"},
                                             {"$set": {"title": "h"}}),
    "pending_entry": lambda w: conversations.pending_entry(w["group"]["_id"], 21),
    "set_blocker": lambda w: conversations.set_blocker(w["pair"]["pair"], w["alice"], True),
    "bump_direct": lambda w: conversations.bump_direct(
        w["pair"]["pair"], {"last_at": at(6)}, {"seq": 1, "version": 1}),
    "half_upgraded": lambda w: legacy_conversations.half_upgraded(),
    "find_legacy": lambda w: legacy_conversations.find_legacy(w["pair"]["pair"]),
    "unused_seqs": lambda w: conversations.unused_seqs(w["group"]["_id"]),
    # search/store.py: a term only alice's pair holds, across all her conversations
    "ids_for_member": lambda w: conversations.ids_for_member(w["alice"]),
    "search page": lambda w: search.page(conversations.ids_for_member(w["alice"]), '"m25"', 20),
    # blocks/store.py
    "blocks add": lambda w: blocks.add(w["bob"], w["carol"], at(3)),
    "blocks find": lambda w: blocks.find(w["alice"], w["carol"]),
    "blocks between": lambda w: blocks.between(w["alice"], w["carol"]),
    "blocks made_by": lambda w: blocks.made_by(w["alice"]),
    "blocked_ids": lambda w: blocks.blocked_ids(w["alice"]),
    "blocker_ids": lambda w: blocks.blocker_ids(w["carol"], [w["alice"], w["bob"]]),
    "blocks involving": lambda w: blocks.involving(w["carol"]),
    "blocks remove": lambda w: blocks.remove(w["bob"], w["carol"]),
    # attachments/store.py: GridFS's fs.files and fs.chunks
    "find_file": lambda w: attachments.find_file(w["files"][0]),
    "find_owned": lambda w: attachments.find_owned(w["files"], w["alice"]),
    "read_chunk": lambda w: attachments.read_chunk(w["files"][0], 0),
    "sent_in_message": lambda w: attachments.sent_in_message(w["middle"]["_id"]),
    "orphans": lambda w: attachments.orphans(at(4), 10),
    "add_link": lambda w: attachments.add_link(w["files"][1:], {"conv": w["pair"]["_id"],
                                                                 "msg": w["middle"]["_id"]}),
    "drop_link": lambda w: attachments.drop_link(w["files"][0], w["middle"]["_id"]),
    "delete_file": lambda w: attachments.delete_file(w["files"][0],
                                                     attachments.unlinked_condition()),
    # users/store.py: users, sockets, revocations
    "find_user": lambda w: users.find_user(w["bob"]),
    "find_user_by_email": lambda w: users.find_user_by_email(f"{w['bob']}@example.com"),
    "find_users": lambda w: users.find_users([w["bob"], w["carol"]]),
    "is_revoked": lambda w: users.is_revoked("jti-x", "sid-x"),
    "socket_ids_of_user": lambda w: users.socket_ids_of_user(w["bob"]),
    "socket_ids_of_sessions": lambda w: users.socket_ids_of_sessions(f"jti-{w['bob']}",
                                                                     f"sid-{w['bob']}"),
    "count_sockets": lambda w: users.count_sockets(w["bob"]),
    "online_user_ids": lambda w: users.online_user_ids([w["bob"], w["carol"]]),
}
# What the three users own: no query may examine more than this many documents.
OWN_MESSAGES = 30 + 5 + 20
OWN_CONVERSATIONS = 3


def examined_per_query(monkeypatch, others):
    app = create_app(TestingConfig)
    if not mongo.embedded:
        pytest.skip("counts what the embedded store examines")
    counter = Examined(monkeypatch)
    with app.app_context():
        w = world(others)
        return {name: counter.of(lambda q=query: q(w)) for name, query in QUERIES.items()}


def test_no_store_query_examines_other_users_data(monkeypatch):
    small = examined_per_query(monkeypatch, others=20)
    large = examined_per_query(monkeypatch, others=200)  # ten times as many other users
    assert {name: large[name] for name in QUERIES if large[name] != small[name]} == {}
    too_many = {name: n for name, n in small.items() if n > OWN_MESSAGES}
    assert too_many == {}, "examined more documents than the users own"
    for name in ("page_for_member", "shared_with", "find_for_member", "shared"):
        assert small[name] <= OWN_CONVERSATIONS, (name, small[name])


def test_a_history_page_examines_only_the_users_own_messages(monkeypatch):
    app = create_app(TestingConfig)
    if not mongo.embedded:
        pytest.skip("counts what the embedded store examines")
    counter = Examined(monkeypatch)
    with app.app_context():
        w = world(others=50)
        page = []
        assert counter.of(lambda: page.extend(messages.user_page(w["alice"], 100))) <= 55
        # her direct messages only (the pair and her notes): no group message, newest first
        assert len(page) == 35 and all(m["receiver"] is not None for m in page)
        times = [(m["created_at"], m["_id"]) for m in page]
        assert times == sorted(times, reverse=True)
        assert conversations.shared_with(w["alice"], 50) == {w["bob"], w["carol"]}
        assert conversations.shared_with(w["alice"], 2) == {w["bob"]}  # the group is too big


# --- the hashes answer as mongomock's scans, whatever the writes and queries ------------

USERS = [ObjectId(f"{n:024x}") for n in range(1, 5)]
INDEXES = [
    ([("conv", ASCENDING), ("seq", ASCENDING)], {"unique": True, "name": "history"}),
    ([("sender", ASCENDING), ("client_id", ASCENDING)],
     {"unique": True, "partialFilterExpression": {"client_id": {"$type": "string"}},
      "name": "idempotent"}),
    ([("sender", ASCENDING), ("at", DESCENDING), ("_id", DESCENDING)], {"name": "by_sender"}),
    ([("receiver", ASCENDING), ("at", DESCENDING)], {"name": "by_receiver"}),
    ([("member_ids", ASCENDING), ("at", DESCENDING), ("_id", DESCENDING)], {"name": "members"}),
    ([("pair", ASCENDING)], {"unique": True, "name": "pair",
                             "partialFilterExpression": {"pair": {"$type": "string"}}}),
    ([("legacy", ASCENDING)], {"sparse": True, "name": "legacy"}),
    ([("token", ASCENDING)], {"unique": True, "sparse": True, "name": "token"}),
    ([("tags.kind", ASCENDING), ("type", ASCENDING)], {"name": "tags"}),
    ([("extra", ASCENDING)], {"name": "extra"}),
    # a path through an array of sub-documents (attachments' metadata.sent_in.msg)
    ([("links.msg", ASCENDING)], {"sparse": True, "name": "links"}),
]
user = st.sampled_from(USERS)
scalar = st.one_of(user, st.none(), st.sampled_from(["a", "b"]), st.integers(0, 3))
FIELDS = {
    "conv": st.sampled_from(["a", "b", "c", None]),
    "seq": st.integers(0, 4),
    "sender": st.one_of(user, st.none()),
    "receiver": st.one_of(user, st.none()),
    "client_id": st.sampled_from(["p", "q", None, 5]),
    "member_ids": st.one_of(st.lists(st.one_of(user, st.none()), max_size=4),
                            st.lists(user, min_size=2, max_size=3), user, st.none()),
    # what no hash can hold (a sub-document, a nested array): that index falls back to scans
    "extra": st.one_of(scalar, st.just([[USERS[0]]]), st.just([{"u": USERS[0]}]),
                       st.just({"u": 1})),
    "type": st.sampled_from(["direct", "group"]),
    "at": st.one_of(st.integers(0, 3), st.integers(0, 3), st.none(),
                    st.sampled_from(["x", 2.0, True, [2, 0], []])),
    "pair": st.sampled_from(["x:y", "y:z", 7, None]),
    "legacy": st.sampled_from([True, False, 1, 1.0, 0, None]),
    "token": st.one_of(st.sampled_from([True, 1, 1.0, "t", None]), st.just([1, 2])),
    "tags": st.one_of(st.fixed_dictionaries({"kind": scalar}), st.just([{"kind": "a"}]),
                      st.just("flat")),
    "links": st.one_of(st.lists(st.one_of(st.fixed_dictionaries({}, optional={"msg": scalar}),
                                          st.just({"msg": [1, "a"]})), max_size=3),
                       st.just([{"msg": 1}, 2]), st.just([[{"msg": 1}]]),
                       st.fixed_dictionaries({"msg": scalar})),
}
# Every document has a seq, spread wide: the unique (conv, seq) index refuses few inserts.
document = st.fixed_dictionaries(
    {"_id": st.integers(1, 12), "seq": st.integers(0, 40)},
    optional={field: values for field, values in FIELDS.items() if field != "seq"})


def leaf():
    values = {field: strategy for field, strategy in FIELDS.items()}
    return st.one_of(
        st.sampled_from(sorted(values)).flatmap(lambda f: values[f].map(lambda v: {f: v})),
        st.sampled_from(sorted(values)).flatmap(
            lambda f: st.lists(values[f], max_size=3).map(lambda vs: {f: {"$in": vs}})),
        st.sampled_from(sorted(values)).flatmap(lambda f: values[f].map(lambda v: {f: {"$ne": v}})),
        st.sampled_from(sorted(values)).flatmap(lambda f: values[f].map(lambda v: {f: {"$eq": v}})),
        user.map(lambda u: {"member_ids": u}),  # the app's shape, made frequent
        scalar.map(lambda v: {"tags.kind": v}),  # through a sub-document, or an array of them
        scalar.map(lambda v: {"links.msg": v}),
        st.lists(user, min_size=1, max_size=2).map(lambda us: {"member_ids": {"$all": us}}),
        st.integers(0, 4).map(lambda n: {"seq": {"$gt": n}}),
        st.tuples(st.sampled_from(["at", "seq", "legacy", "pair", "extra", "token", "links.msg"]),
                  st.sampled_from(["$gt", "$gte", "$lt", "$lte"]),
                  st.one_of(st.integers(0, 4), st.none(), st.just("x"), st.just(1.5))).map(
            lambda t: {t[0]: {t[1]: t[2]}}),
        st.tuples(user, st.integers(0, 3), st.integers(0, 3)).map(  # the app's range shape
            lambda t: {"sender": t[0], "at": {"$gte": t[1], "$lt": t[2] + 1}}),
        st.integers(1, 13).map(lambda n: {"_id": n}),
        st.lists(st.integers(1, 13), max_size=3).map(lambda ns: {"_id": {"$in": ns}}),
    )


def merged(parts):
    out = {}
    for part in parts:
        out.update(part)
    return out


query = st.recursive(
    st.lists(leaf(), min_size=1, max_size=3).map(merged),
    lambda inner: st.one_of(
        st.lists(inner, min_size=1, max_size=3).map(lambda qs: {"$or": qs}),
        st.lists(inner, min_size=1, max_size=3).map(lambda qs: {"$and": qs}),
        st.tuples(leaf(), st.lists(inner, min_size=1, max_size=2)).map(
            lambda t: {**t[0], "$or": t[1]}),
    ),
    max_leaves=6,
)
write = st.one_of(
    st.tuples(st.just("insert"), document),
    st.tuples(st.just("set"), query, st.fixed_dictionaries(
        {}, optional={f: v for f, v in FIELDS.items() if f != "_id"})),
    st.tuples(st.just("push"), st.integers(1, 12), user),
    st.tuples(st.just("pull"), user),
    st.tuples(st.just("replace"), st.integers(1, 12), document),
    st.tuples(st.just("delete"), query),
    st.tuples(st.just("unset"), st.integers(1, 12), st.sampled_from(sorted(FIELDS))),
)


def outcome(call):
    try:
        return "ok", call()
    except Exception as exc:  # noqa: BLE001 - both sides must fail alike
        return "error", type(exc).__name__


def apply(c, op):
    kind = op[0]
    if kind == "insert":
        return c.insert_one(dict(op[1])).inserted_id
    if kind == "set":
        return c.update_many(op[1], {"$set": op[2]} if op[2] else {"$inc": {"n": 1}}).modified_count
    if kind == "push":
        return c.update_one({"_id": op[1], "member_ids": {"$type": "array"}},
                            {"$push": {"member_ids": op[2]}}).modified_count
    if kind == "pull":
        return c.update_many({"member_ids": {"$type": "array"}},
                             {"$pull": {"member_ids": op[1]}}).modified_count
    if kind == "replace":
        body = {k: v for k, v in op[2].items() if k != "_id"}
        return c.replace_one({"_id": op[1]}, body, upsert=True).modified_count
    if kind == "delete":
        return c.delete_many(op[1]).deleted_count
    return c.update_one({"_id": op[1]}, {"$unset": {op[2]: ""}}).modified_count


def answers(c, q):
    return (
        outcome(lambda: sorted(d["_id"] for d in c.find(q))),
        outcome(lambda: c.count_documents(q)),
        outcome(lambda: [d["_id"] for d in c.find(q).sort([("at", DESCENDING), ("_id", ASCENDING)])
                         .limit(3)]),
        outcome(lambda: sorted(map(repr, c.distinct("type", q)))),
        outcome(lambda: c.find_one(q, sort=[("seq", DESCENDING), ("_id", ASCENDING)])),
        outcome(lambda: [d["_id"] for d in c.find(q, skip=1, limit=2).sort("_id", DESCENDING)]),
        # sorts an index keeps (read in its order, ties in natural order), limited or not
        outcome(lambda: [d["_id"] for d in c.find(q).sort([("at", DESCENDING),
                                                             ("_id", DESCENDING)]).limit(3)]),
        outcome(lambda: [d["_id"] for d in c.find(q).sort("at", ASCENDING).limit(4)]),
        outcome(lambda: [d["_id"] for d in c.find(q).sort("at", DESCENDING)]),
        outcome(lambda: [d["_id"] for d in c.find(q, skip=1).sort("seq", DESCENDING).limit(2)]),
        outcome(lambda: sorted(map(repr, c.aggregate([{"$match": q},
                                                      {"$group": {"_id": "$conv"}}])))),
    )


def collection():
    c = mongomock.MongoClient().db[f"c{ObjectId()}"]
    for keys, options in INDEXES:
        c.create_index(keys, **options)
    return c


@contextlib.contextmanager
def index_order_always(on):
    """With `on`, a sort an index keeps is read in its order even over a handful of
    candidates (the store sorts those instead): the small collections here test that path."""
    small = embedded_plan.SMALL
    embedded_plan.SMALL = -1 if on else small
    try:
        yield
    finally:
        embedded_plan.SMALL = small


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(write, max_size=12), st.lists(query, min_size=1, max_size=6), st.booleans())
def test_hashed_answers_equal_scans(writes, queries, in_index_order):
    embedded.install()
    with index_order_always(in_index_order):
        check_hashed_answers(writes, queries)


def check_hashed_answers(writes, queries):
    hashed = collection()
    with plain_mongomock():
        plain = collection()
    for step, op in enumerate(writes):
        result = outcome(lambda: apply(hashed, op))
        with plain_mongomock():
            assert result == outcome(lambda: apply(plain, op)), writes[:step + 1]
        for q in queries:
            got = answers(hashed, q)
            with plain_mongomock():
                assert got == answers(plain, q), (writes[:step + 1], q)


# --- TTL indexes: expire as mongomock does, looking only at what is due -------------------

def test_an_access_to_revocations_reads_only_the_tokens_due(monkeypatch):
    """Every authenticated request asks `revoked`; mongomock's sweep read every revoked
    token at each ask."""
    app = create_app(TestingConfig)
    if not mongo.embedded:
        pytest.skip("counts what the embedded store examines")
    looked_at = []
    real = CollectionStore._value_meets_expiry
    monkeypatch.setattr(CollectionStore, "_value_meets_expiry",
                        lambda self, *args: looked_at.append(1) or real(self, *args))
    now = datetime.datetime.now(datetime.timezone.utc)
    with app.app_context():
        users.revoke([f"live-{n}" for n in range(500)], now + datetime.timedelta(days=30))
        users.revoke(["spent-1", "spent-2"], now - datetime.timedelta(seconds=1))
        looked_at.clear()
        assert users.is_revoked("live-7") and not users.is_revoked("spent-1", "spent-2")
        assert len(looked_at) <= 2  # the two due, once
        looked_at.clear()
        for n in range(20):
            users.is_revoked(f"live-{n}")
        assert looked_at == []
        assert mongo.db.revoked.count_documents({}) == 500


clock = st.sampled_from([-30, -1, 0, 1, 30, 3600])
expires = st.one_of(clock.map(lambda s: T0 + datetime.timedelta(seconds=s)), st.none(),
                    st.just("soon"), st.lists(clock.map(lambda s: T0 + datetime.timedelta(seconds=s)),
                                              max_size=2))
ttl_step = st.one_of(
    st.tuples(st.just("insert"), st.integers(1, 6), expires),
    st.tuples(st.just("set"), st.integers(1, 6), expires, st.sampled_from(["at", "other"])),
    st.tuples(st.just("delete"), st.integers(1, 6)),
    st.tuples(st.just("wait"), st.sampled_from([1, 2, 40, 4000])),
)


def ttl_apply(c, step):
    if step[0] == "insert":
        return outcome(lambda: c.insert_one({"_id": step[1], "at": step[2]}).inserted_id)
    if step[0] == "set":
        return outcome(lambda: c.update_one({"_id": step[1]}, {"$set": {step[3]: step[2]}},
                                            upsert=True).modified_count)
    if step[0] == "delete":
        return outcome(lambda: c.delete_one({"_id": step[1]}).deleted_count)
    return None


@settings(max_examples=200, deadline=None)
@given(st.lists(ttl_step, max_size=15))
def test_ttl_expiry_equals_mongomocks_sweep(steps):
    embedded.install()
    now = [T0]
    real_utcnow = mongomock.utcnow
    mongomock.utcnow = lambda: now[0]
    try:
        hashed = mongomock.MongoClient().db["ttl"]
        hashed.create_index("at", expireAfterSeconds=0)
        hashed.create_index([("other", ASCENDING)], expireAfterSeconds=10)
        with plain_mongomock():
            plain = mongomock.MongoClient().db["ttl"]
            plain.create_index("at", expireAfterSeconds=0)
            plain.create_index([("other", ASCENDING)], expireAfterSeconds=10)
        for n, step in enumerate(steps):
            if step[0] == "wait":
                now[0] += datetime.timedelta(seconds=step[1])
            got = ttl_apply(hashed, step), sorted(d["_id"] for d in hashed.find())
            with plain_mongomock():
                assert got == (ttl_apply(plain, step), sorted(d["_id"] for d in plain.find())), \
                    steps[:n + 1]
    finally:
        mongomock.utcnow = real_utcnow


# --- every store query, as the stores make it, answers as mongomock's own -------------------
#
# The stores' own functions, over the indexes their own `ensure_indexes` declare, run against
# the embedded store and against plain mongomock side by side: random writes through the
# stores, then every read function of the store; each answer is compared whole (documents,
# projections, order), with the index order forced on (over a handful of documents the
# store would sort them instead) and off. A `$text` search is compared with mongomock's
# answer to the rest of its query, sorted, filtered by MongoDB's text rules
# (chatapp/mongo_text.py), since mongomock has no `$text`.

C = [ObjectId(f"c0{n:022x}") for n in range(1, 4)]  # conversations
M = [ObjectId(f"a0{n:022x}") for n in range(1, 13)]  # messages
F = [ObjectId(f"f0{n:022x}") for n in range(1, 5)]  # files
few_users = st.sampled_from(USERS[:3])
conv = st.sampled_from(C[:2])
message_id = st.sampled_from(M)
moment = st.integers(0, 3).map(at)
maybe_moment = st.one_of(st.none(), moment)
direction = st.sampled_from([ASCENDING, DESCENDING])
WORDS = ["needle", "Needle hay", "hay stack", "nééd le", "", "needles"]


class Call:
    """One store call, named for hypothesis's report; `reference` answers it on plain
    mongomock when the call itself cannot run there (`$text`)."""

    def __init__(self, name, call, *args, reference=None):
        self.name, self.call, self.args, self.reference = name, call, args, reference

    def run(self, plain):
        if plain and self.reference is not None:
            return outcome(lambda: self.reference(*self.args))
        return outcome(lambda: self.call(*self.args))

    def __repr__(self):
        return f"{self.name}{self.args!r}"


def call(name, function, *strategies, reference=None):
    return st.tuples(*strategies).map(lambda args: Call(name, function, *args,
                                                        reference=reference))


message = st.fixed_dictionaries(
    {"_id": message_id, "conv": conv, "seq": st.integers(0, 12), "sender": few_users,
     "receiver": st.one_of(few_users, st.none()), "content": st.sampled_from(WORDS),
     "created_at": moment, "delivered_at": maybe_moment, "read_at": maybe_moment,
     "edited_at": st.none(), "deleted": st.booleans()},
    optional={"version": st.integers(0, 15), "client_id": st.sampled_from(["p", "q"]),
              "content_version": st.integers(0, 15)})
position = st.tuples(moment, message_id).map(lambda t: {"created_at": t[0], "_id": t[1]})
marker = st.sampled_from(["read_at", "delivered_at"])
emoji = st.sampled_from(["k1", "k2"])


def search_reference(conversation_ids, words, limit, before=None):
    """search.page on plain mongomock: its query without `$text`, sorted, then filtered."""
    spec = {"key": [("content", "text")], "default_language": "none"}
    text = embedded_text.TextQuery(spec, words)
    query = {"conv": {"$in": list(conversation_ids)}, "deleted": {"$ne": True}}
    if before is not None:
        t = before["created_at"]
        query["$or"] = [{"created_at": {"$lt": t}}, {"created_at": t, "_id": {"$lt": before["_id"]}}]
    found = mongo.db.messages.find(query).sort(search.NEWEST_FIRST)
    return [doc for doc in found if text.matches(doc)][:limit]


MESSAGE_WRITES = st.one_of(
    call("insert_message", messages.insert_message, message),
    call("insert_message", messages.insert_message, message),
    call("mark", messages.mark, conv, few_users, marker, st.integers(0, 12), moment),
    call("edit_content", messages.edit_content, message_id, st.sampled_from(WORDS), moment,
         st.integers(0, 15)),
    call("blank", messages.blank, message_id, st.integers(0, 15)),
    call("raise_version", messages.raise_version, message_id, st.integers(0, 15)),
    call("add_reaction", messages.add_reaction, message_id, emoji, few_users,
         st.integers(0, 15), st.integers(1, 2)),
    call("remove_reaction", messages.remove_reaction, message_id, emoji, few_users,
         st.integers(0, 15)),
    call("move_conversation", messages.move_conversation, conv, st.sampled_from(C)),
)
MESSAGE_READS = st.one_of(
    call("conversation_page", messages.conversation_page, conv, st.integers(1, 5)),
    call("conversation_page before", lambda c, n, s: messages.conversation_page(c, n, before_seq=s),
         conv, st.integers(1, 5), st.integers(0, 13)),
    call("conversation_page after", lambda c, n, s: messages.conversation_page(c, n, after_seq=s),
         conv, st.integers(1, 5), st.integers(-1, 12)),
    call("user_page", messages.user_page, few_users, st.integers(1, 6)),
    call("user_page before", lambda u, n, p: messages.user_page(u, n, before=p),
         few_users, st.integers(1, 6), position),
    call("user_page after", lambda u, n, p: messages.user_page(u, n, after=p),
         few_users, st.integers(1, 6), position),
    call("find_message", messages.find_message, message_id),
    call("find_messages", messages.find_messages, st.lists(message_id, max_size=3)),
    call("find_by_client_id", messages.find_by_client_id, few_users, st.sampled_from("pq")),
    call("newest_unmarked", messages.newest_unmarked, conv, few_users, few_users, marker),
    call("find_by_version", messages.find_by_version, conv, st.integers(0, 15)),
    call("count_unread", messages.count_unread, conv, few_users, st.integers(0, 12)),
    call("count_from_others", messages.count_from_others, conv, few_users, st.integers(0, 6),
         st.integers(4, 12)),
    call("newest_in", messages.newest_in, conv),
    call("oldest_in", messages.oldest_in, conv),
    call("marked_up_to", messages.marked_up_to, conv, few_users, marker),
    call("search page", search.page, st.lists(st.sampled_from(C), min_size=1, max_size=3),
         st.sampled_from(['"needle"', '"hay"', '"needle" "hay"', '"needle" "nééd"']),
         st.integers(1, 4), reference=search_reference),
    call("search page before", search.page, st.lists(st.sampled_from(C), min_size=1),
         st.just('"needle"'), st.integers(1, 4), position, reference=search_reference),
)

FEED_WRITES = call("changes insert", feed.insert, conv, st.integers(0, 20), moment,
                   st.sampled_from([{"kind": "void"}, {"kind": "message", "msg": M[0]},
                                    {"kind": "event", "type": "read", "up_to": M[1]}]))
FEED_READS = st.one_of(
    call("changes after", feed.after, conv, st.integers(-1, 20), st.integers(1, 6)),
    call("changes find", feed.find, conv, st.integers(0, 20)),
)

CONVERSATION = st.builds(
    lambda i, kind, members, n, last: {
        "_id": C[i], "type": kind, "title": None, "created_by": members[0], "created_at": at(0),
        "members": {str(u): conversations.member_entry("member", at(0), n // 2) for u in members},
        "member_ids": members, "member_count": len(members), "seq": n, "version": n,
        "last_at": last, "last_message_id": M[n % len(M)], "pending": [],
        **({"pair": conversations.pair_key(members[0], members[-1])} if kind == "direct" else {})},
    st.integers(0, 2), st.sampled_from(["direct", "group"]),
    st.lists(few_users, min_size=1, max_size=3, unique=True), st.integers(0, 6), moment)
pending = st.lists(st.integers(0, 12).map(lambda v: {"v": v, "type": "read"}), min_size=1,
                   max_size=3)


def push_pending(conversation_id, entries):
    """A membership or marker change: versions taken with its feed entries kept (`pending`)."""
    from chatapp.sync.service import pending_push  # imported late: the app's import order

    return conversations.update(conversation_id, {}, {"$inc": {"version": len(entries)},
                                                      "$push": pending_push(entries)})


pair = st.tuples(few_users, few_users).map(lambda p: conversations.pair_key(*p))
CONVERSATION_WRITES = st.one_of(
    call("insert", conversations.insert, CONVERSATION),
    call("take_seq", conversations.take_seq, st.sampled_from(C), few_users, message_id, moment),
    call("take_version", conversations.take_version, st.sampled_from(C), st.integers(1, 2)),
    call("update pending", push_pending, st.sampled_from(C), pending),
    call("update members", lambda c, u, add: conversations.update(
        c, {}, {"$addToSet" if add else "$pull": {"member_ids": u}}),
        st.sampled_from(C), few_users, st.booleans()),
    call("set_blocker", conversations.set_blocker, pair, few_users, st.booleans()),
    call("bump_direct", conversations.bump_direct, pair, st.fixed_dictionaries(
        {"last_at": moment, "last_message_id": message_id}), st.just({"seq": 1, "version": 1})),
)
after_position = st.tuples(moment, st.sampled_from(C))
CONVERSATION_READS = st.one_of(
    call("find", conversations.find, st.sampled_from(C)),
    call("find_for_member", conversations.find_for_member, st.sampled_from(C), few_users),
    call("find_direct", conversations.find_direct, pair),
    call("pending_entry", conversations.pending_entry, st.sampled_from(C), st.integers(0, 12)),
    call("page_for_member", conversations.page_for_member, few_users, st.integers(1, 4),
         st.sampled_from([None, "direct", "group"]), st.one_of(st.none(), after_position)),
    call("ids_for_member", conversations.ids_for_member, few_users),
    call("shared_with", conversations.shared_with, few_users, st.integers(1, 3)),
    call("shared", conversations.shared, few_users, few_users),
)

BLOCK_WRITES = st.one_of(
    call("add", blocks.add, few_users, few_users, moment),
    call("remove", blocks.remove, few_users, few_users),
)
BLOCK_READS = st.one_of(
    call("find", blocks.find, few_users, few_users),
    call("between", blocks.between, few_users, few_users),
    call("made_by", blocks.made_by, few_users),
    call("blocked_ids", blocks.blocked_ids, few_users),
    call("blocker_ids", blocks.blocker_ids, few_users,
         st.one_of(st.none(), st.lists(few_users, max_size=2))),
    call("involving", blocks.involving, few_users),
)


def upload(file_id, owner, size, unsent, close):
    """An upload through attachments.Upload (4-byte chunks here), closed or aborted."""
    writing = attachments.Upload(file_id, "f.bin")
    writing.write(bytes(range(size)))
    if not close:
        return writing.abort()
    metadata = {"owner": owner, "content_type": "application/octet-stream", "sha256": "x",
                "sent_in": []}
    if unsent is not None:
        metadata["unsent_since"] = unsent
    return writing.close(metadata, at(0))


link = st.tuples(conv, message_id).map(lambda t: {"conv": t[0], "msg": t[1]})
ATTACHMENT_WRITES = st.one_of(
    call("upload", upload, st.sampled_from(F), few_users, st.integers(0, 10), maybe_moment,
         st.booleans()),
    call("add_link", attachments.add_link, st.lists(st.sampled_from(F), max_size=2), link),
    call("drop_link", attachments.drop_link, st.sampled_from(F), message_id),
    call("delete_file", attachments.delete_file, st.sampled_from(F),
         st.sampled_from([None, attachments.unlinked_condition()])),
)
ATTACHMENT_READS = st.one_of(
    call("find_file", attachments.find_file, st.sampled_from(F)),
    call("find_owned", attachments.find_owned, st.lists(st.sampled_from(F), max_size=3),
         few_users),
    call("read_chunk", attachments.read_chunk, st.sampled_from(F), st.integers(0, 3)),
    call("sent_in_message", attachments.sent_in_message, message_id),
    call("orphans", attachments.orphans, moment, st.integers(1, 3)),
)

STORES = {
    "messages": ([messages.ensure_indexes, search.ensure_indexes], MESSAGE_WRITES,
                 MESSAGE_READS),
    "changes": ([feed.ensure_indexes], FEED_WRITES, FEED_READS),
    "conversations": ([conversations.ensure_indexes], CONVERSATION_WRITES, CONVERSATION_READS),
    "blocks": ([blocks.ensure_indexes], BLOCK_WRITES, BLOCK_READS),
    "attachments": ([attachments.ensure_indexes], ATTACHMENT_WRITES, ATTACHMENT_READS),
}


class Side:
    """A database the stores use while it is entered (mongo.db), with its own sequence of
    ObjectIds for documents inserted without one (the same on both sides)."""

    def __init__(self, plain, declare):
        self.plain, self.count = plain, 0
        with plain_mongomock() if plain else contextlib.nullcontext():
            self.db = mongomock.MongoClient(tz_aware=True).db
        with self:
            for ensure in declare:
                ensure()

    def next_id(self):
        self.count += 1
        return ObjectId(f"ee{self.count:022x}")

    def __enter__(self):
        self.stack = contextlib.ExitStack()
        if self.plain:
            self.stack.enter_context(plain_mongomock())
        self.stack.enter_context(patched(mongo, "db", self.db))
        self.stack.enter_context(patched(mongomock.collection, "ObjectId", self.next_id))
        self.stack.enter_context(patched(conversations, "now", lambda: at(9)))
        self.stack.enter_context(patched(attachments, "CHUNK_SIZE", 4))
        return self

    def __exit__(self, *exc):
        self.stack.close()


@contextlib.contextmanager
def patched(owner, name, value):
    old = getattr(owner, name)
    setattr(owner, name, value)
    try:
        yield
    finally:
        setattr(owner, name, old)


@pytest.mark.parametrize("store", sorted(STORES))
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), in_index_order=st.booleans())
def test_every_store_query_answers_as_mongomock(store, data, in_index_order):
    embedded.install()
    declare, write, read_call = STORES[store]
    writes = data.draw(st.lists(write, min_size=3, max_size=25), label="writes")
    reads = data.draw(st.lists(read_call, min_size=1, max_size=8), label="reads")
    hashed, plain = Side(False, declare), Side(True, declare)
    with index_order_always(in_index_order):
        for step, op in enumerate(writes):
            with hashed:
                done = op.run(False)
            with plain:
                assert done == op.run(True), writes[:step + 1]
        for r in reads:
            with hashed:
                got = r.run(False)
            with plain:
                assert got == r.run(True), r


# --- edge cases of the index order: values of every kind, arrays, deletions ---------------

def read(c, r):
    if r[0] == "count":
        return outcome(lambda: c.count_documents(r[1]))
    cursor = c.find(r[1]).sort(r[2])
    return outcome(lambda: [d["_id"] for d in (cursor.limit(r[3]) if r[3] else cursor)])


AWARE = datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc)
EDGE_DOCUMENTS = [
    # an array where the order is kept: mongomock sorts it by its first element and a range
    # matches any element, so that index's order is no longer used
    [{"at": 3}, {"at": [0, 5]}, {"at": 1}, {"at": []}, {"at": 2}],
    # values of every kind mongomock orders by BSON type, ties among them
    [{"at": "b"}, {"at": None}, {"at": 2}, {"at": 2.0}, {"at": True}, {}, {"at": "a"},
     {"at": b"b"}, {"at": b"aa"}, {"at": ObjectId("0" * 24)}, {"at": AWARE.replace(tzinfo=None)}],
    # aware and naive datetimes (mongomock stores both as naive UTC)
    [{"at": AWARE}, {"at": AWARE.replace(tzinfo=None)}, {"at": AWARE}],
]


@pytest.mark.parametrize("documents", EDGE_DOCUMENTS)
@pytest.mark.parametrize("in_index_order", [True, False])
def test_index_order_edge_cases_answer_as_scans(documents, in_index_order):
    embedded.install()
    sides = []
    for plain in (False, True):
        with plain_mongomock() if plain else contextlib.nullcontext():
            c = mongomock.MongoClient().db[f"e{ObjectId()}"]
            c.create_index([("sender", ASCENDING), ("at", DESCENDING), ("_id", DESCENDING)])
            for n, doc in enumerate(documents * 2):
                c.insert_one({"_id": n, "sender": USERS[n % 2], **doc})
            c.delete_one({"_id": 1})
            c.update_one({"_id": 2}, {"$set": {"sender": USERS[0]}})
            sides.append(c)
    reads = [("sorted", {"sender": USERS[0]}, [("at", d), ("_id", d)], k)
             for d in (ASCENDING, DESCENDING) for k in (0, 1, 3)]
    reads += [("sorted", {"sender": USERS[0], "at": {op: bound}}, [("at", ASCENDING)], 0)
              for op in ("$gt", "$gte", "$lt", "$lte")
              for bound in (1, 2, None, "a", b"a", b"ab", AWARE.replace(tzinfo=None))]
    reads += [("count", {"sender": {"$in": USERS[:2]}, "at": {"$gte": 1, "$lt": 3}})]
    with index_order_always(in_index_order):
        for r in reads:
            got = read(sides[0], r)
            with plain_mongomock():
                assert got == read(sides[1], r), r


@pytest.mark.parametrize("documents", EDGE_DOCUMENTS)
@pytest.mark.parametrize("options", [{}, {"sparse": True}, {"unique": True, "sparse": True}])
def test_ranges_on_a_one_field_index_answer_as_scans(documents, options):
    """A range alone on a one-field index's field is a slice of its order (the attachments'
    orphans: `metadata.unsent_since < t`), null bounds and a sparse index included."""
    embedded.install()
    sides = []
    for plain in (False, True):
        with plain_mongomock() if plain else contextlib.nullcontext():
            c = mongomock.MongoClient().db[f"o{ObjectId()}"]
            c.create_index("at", **options)
            for n, doc in enumerate(documents + [{"at": None}, {}]):
                outcome(lambda: c.insert_one({"_id": n, **doc}))
            c.delete_one({"_id": 1})
            sides.append(c)
    reads = [("sorted", {"at": {op: bound}}, [("_id", ASCENDING)], 0)
             for op in ("$gt", "$gte", "$lt", "$lte")
             for bound in (1, 2, None, "a", b"a", b"ab", AWARE.replace(tzinfo=None))]
    reads += [("count", {"at": {"$gte": 1, "$lt": 3}}), ("count", {"at": {"$lte": None}})]
    for r in reads:
        got = read(sides[0], r)
        with plain_mongomock():
            assert got == read(sides[1], r), r
