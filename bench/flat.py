"""Flat costs (issue 14, targets 4 and 7), in-process: what a page costs in a small and a large store.

For each store size (1 000 and 100 000 messages in the full run) a fresh app and database:
the user `me` has a direct conversation with `peer` holding most of the store, and
`convs - 1` other conversations of one message each, so that the conversation list has
`convs` entries at every size. Then, through the Flask test client (routing, auth, store,
JSON; no network), each call `samples` times:

- `newest`: `GET /api/chat/messages/<me>/<peer>` (the newest 50);
- `after`: the same with `after=` the 50th message from the end (the next 50, forward);
- `changes`: `GET /api/chat/conversations/<id>/changes?since=<version - 100>` (100 changes);
- `search`: `GET /api/chat/search?q=needle` (50 of the 100 messages holding the word: a
  word held by as many messages at every size, since a text search costs its matches on
  MongoDB too);
- `list`: `GET /api/chat/conversations?limit=<convs>`, divided by `convs` (per entry).

The figure is the median CPU time of the calling thread per call (steadier than wall time
on a shared machine; the call runs in this thread), and the ratio large/small, target
`<= 1.5`. Also, on the embedded store, the RSS growth of this process per stored message
while the large store is seeded (a message, its change-feed record and their index entries;
the chat service's writes, in the same process). With MONGO_DB_URL set it runs against that
server (in a database of its own, dropped at the end) and reports the index each call's
main query uses by `explain()`; on the embedded store it names the indexes MongoDB would use.

Seeding: a message stored through the chat service costs ~1.5 ms here, 150 s for 100 000,
so the bulk of the big conversation is written through the stores (`chat.store`,
`sync.store`, `conversations.store`) with the documents the service writes (seq and
version numbers, the feed's records, the counters, read markers up to the bulk's end: its
messages were read), between a first message and the last `tail` messages that go through
`chatapp.chat.service.send_message`, as do the other conversations' messages.
"""
import gc
import time
from datetime import datetime, timedelta, timezone

from bench.history import in_process_app, _register

TARGET = 1.5
PAGE = 50
FEED_BACK = 100  # changes asked for (the endpoint's default limit)
NEEDLES = 100  # messages holding the searched word, at every size
CALLS = ("newest", "after", "changes", "search", "list")
# What MongoDB uses for each timed call's main query (chatapp/chat/store.py, sync/store.py,
# search/store.py, conversations/store.py); with MONGO_DB_URL set, explain() says instead.
EXPECTED_INDEXES = {"newest": ["history"], "after": ["history"], "changes": ["feed"],
                    "search": ["search"], "list": ["by_member_activity"],
                    "list unread count": ["history"]}


def run(sizes, convs, samples, tail=100):
    """{size: {call: median CPU ms}} (list: per entry), the RSS per stored message of the
    largest size, and the ratios largest/smallest."""
    costs, rss, indexes = {}, None, {}
    for size in sorted(sizes):
        costs[size], grown, indexes[size] = _one_store(size, convs, samples, tail)
        rss = grown  # the largest store's (sizes sorted)
    small, large = min(sizes), max(sizes)
    ratios = {call: round(costs[large][call] / costs[small][call], 2)
              if costs[small][call] else None for call in CALLS}
    return {"sizes": sorted(sizes), "convs": convs, "samples": samples, "costs": costs,
            "ratios": ratios, "target": f"ratio <= {TARGET}",
            "met": {call: (r is not None and r <= TARGET) for call, r in ratios.items()},
            "rss_per_message_bytes": rss, "indexes": indexes,
            "seeded": f"{tail} messages and the other conversations through the chat service, "
                      "the rest through the stores (documents as the service writes them)"}


def _one_store(size, convs, samples, tail):
    from chatapp.extensions import mongo

    app, db_name = in_process_app(f"flat_{size}", EMBEDDED_MAX_MESSAGES=0)
    client = app.test_client()
    try:
        world, grown = _seed(app, client, size, convs, tail)
        grown = grown if mongo.embedded else None  # on MongoDB the messages are not here
        with app.app_context():
            stored = mongo.db.messages.count_documents({})
            indexes = EXPECTED_INDEXES if mongo.embedded else _explain(world)
        assert stored == size, (stored, size)
        return _time_calls(client, world, convs, samples), grown, indexes
    finally:
        if mongo.client is not None:
            mongo.client.drop_database(db_name)  # the next size starts from nothing
        gc.collect()


def _seed(app, client, size, convs, tail):
    from bson import ObjectId

    from chatapp.chat import service

    tag = f"f{size}x{int(time.time() * 1000) % 10**7}"
    users = [_register(client, f"{tag}_{i}") for i in range(convs + 1)]
    me, peer, others = users[0], users[1], users[2:]
    a, b = ObjectId(me["id"]), ObjectId(peer["id"])
    bulk = size - 1 - tail - len(others)
    assert bulk >= NEEDLES, f"a store of {size} is too small for {convs} conversations"
    gc.collect()
    rss_before = _rss_bytes()
    with app.test_request_context():
        first, _ = service.send_message(a, {"receiver": b, "content": "first"})
        conv_id = ObjectId(first["conversation"])
        _bulk(conv_id, a, b, bulk)
        sent = [_send(service, a, b, i) for i in range(tail)]
        for other in others:
            service.send_message(ObjectId(other["id"]), {"receiver": a, "content": "hi"})
    gc.collect()
    grown = (_rss_bytes() - rss_before) / size
    return {"me": me, "peer": peer, "conv": str(conv_id), "tail": sent}, round(grown)


def _send(service, a, b, i):
    sender, receiver = (a, b) if i % 2 == 0 else (b, a)
    return service.send_message(sender, {"receiver": receiver, "content": f"tail {i}"})[0]


def _bulk(conv_id, a, b, n):
    """`n` messages of the pair after its first, read by both, and their feed records, written
    through the stores; then the conversation's counters and read markers, as the service's
    sends and marks would have left them."""
    from chatapp.chat import store
    from chatapp.conversations import store as conversation_store
    from chatapp.sync import store as sync_store

    counter = conversation_store.find(conv_id)
    seq, version = counter["seq"], counter["version"]
    start = datetime.now(timezone.utc) - timedelta(days=1)
    every = n // NEEDLES
    message_id = None
    for i in range(1, n + 1):
        sender, receiver = (a, b) if i % 2 == 0 else (b, a)
        at = start + timedelta(microseconds=500 * i)
        message_id = _id_at(at)
        content = f"message {i} needle" if i % every == 0 and i // every <= NEEDLES \
            else f"message {i} of the bench"
        store.insert_message({
            "_id": message_id, "conv": conv_id, "seq": seq + i, "version": version + i,
            "sender": sender, "receiver": receiver, "content": content, "created_at": at,
            "delivered_at": at, "read_at": at, "edited_at": None, "deleted": False})
        sync_store.insert(conv_id, version + i, at, {"kind": "message", "msg": message_id})
    markers = {f"members.{u}.{m}": seq + n for u in (a, b)
               for m in ("read_up_to", "delivered_up_to")}
    conversation_store.update(conv_id, {}, {
        "$inc": {"seq": n, "version": n},
        "$set": {"last_at": at, "last_message_id": message_id, **markers}})


def _id_at(at):
    """An ObjectId whose time is `at` (as the service's, made at the message's time)."""
    from bson import ObjectId

    raw = ObjectId().binary
    return ObjectId(int(at.timestamp()).to_bytes(4, "big") + raw[4:])


def _time_calls(client, world, convs, samples):
    me, peer = world["me"], world["peer"]
    headers = {"Authorization": f"Bearer {me['token']}"}
    pair = f"/api/chat/messages/{me['id']}/{peer['id']}"
    version = client.get(f"/api/chat/conversations/{world['conv']}",
                         headers=headers).get_json()["version"]
    calls = {
        "newest": (pair, PAGE),
        "after": (f"{pair}?after={world['tail'][-PAGE - 1]['id']}", PAGE),
        "changes": (f"/api/chat/conversations/{world['conv']}/changes?since="
                    f"{version - FEED_BACK}", None),
        "search": ("/api/chat/search?q=needle", PAGE),
        "list": (f"/api/chat/conversations?limit={convs}", convs),
    }
    out = {}
    for name, (url, expect) in calls.items():
        times = []
        for _ in range(samples):
            t = time.thread_time()
            response = client.get(url, headers=headers)
            times.append((time.thread_time() - t) * 1000)
            assert response.status_code == 200, (url, response.get_json())
            body = response.get_json()
            got = len(body["messages"]) if name == "changes" else len(body)
            assert got == (expect or FEED_BACK), (name, got, expect)
        times.sort()
        median = times[len(times) // 2]
        out[name] = round(median / (convs if name == "list" else 1), 3)
    return out


def _explain(world):
    """The indexes MongoDB picks for each call's main query (`explain()`), by name; a server
    without explain is reported, not fatal."""
    from bson import ObjectId

    from bench.history import _index_names
    from chatapp.chat import store
    from chatapp.conversations import store as conversation_store
    from chatapp.sync import store as sync_store

    conv, me = ObjectId(world["conv"]), ObjectId(world["me"]["id"])
    seq = store.find_message(ObjectId(world["tail"][-PAGE - 1]["id"]))["seq"]
    m = store.messages()
    plans = {
        "newest": lambda: m.find({"conv": conv}).sort("seq", -1).limit(PAGE + 1),
        "after": lambda: m.find({"conv": conv, "seq": {"$gt": seq}}).sort("seq", 1).limit(PAGE + 1),
        "changes": lambda: sync_store.changes().find({"conv": conv, "v": {"$gt": 1}}).sort(
            "v", 1).limit(FEED_BACK),
        "search": lambda: m.find({"$text": {"$search": '"needle"'}, "conv": {"$in": [conv]},
                                  "deleted": {"$ne": True}}).sort(
            [("created_at", -1), ("_id", -1)]).limit(PAGE + 1),
        "list": lambda: conversation_store.conversations().find({"member_ids": me}).sort(
            [("last_at", -1), ("_id", -1)]).limit(201),
        "list unread count": lambda: m.find({"conv": conv, "seq": {"$gt": seq},
                                             "sender": {"$ne": me}}),
    }
    out = {}
    for name, cursor in plans.items():
        try:
            out[name] = sorted(_index_names(cursor().explain())) or ["COLLSCAN"]
        except Exception as exc:  # noqa: BLE001 - keep the figures, say why
            out[name] = [f"explain failed: {type(exc).__name__}: {exc}"[:200]]
    return out


def _rss_bytes():
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0
