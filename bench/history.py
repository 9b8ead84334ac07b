"""History scenario, in-process: seed through the chat service, time the REST calls.

The servers in the other scenarios are separate processes whose store cannot be seeded
from outside without a test-only endpoint (chatapp has none), so this one builds the app
in the runner's process (threading mode), seeds through `chatapp.chat.service.send_message`
(the code path every sent message takes) and times the REST calls through the Flask test
client: request handling, store queries and JSON, without the network.
"""
import time
from urllib.parse import urlsplit, urlunsplit

SECRET = "bench-secret-key-that-is-long-enough-0123456789abcdef"
# Rate limits stay on, as in production (every send, login and connection is counted), with
# budgets no scenario reaches: its users send, log in and connect far above a person's rate.
LIMITS = {name: "1000000 per minute" for name in (
    "RATELIMIT_REGISTER", "RATELIMIT_LOGIN", "RATELIMIT_ACCOUNT", "RATELIMIT_SEND",
    "RATELIMIT_GROUPS", "RATELIMIT_CONNECT", "RATELIMIT_UPLOADS")}
PASSWORD = "bench-password-0123"
# What MongoDB uses for each timed query (declared in the ensure_indexes of
# chatapp/chat/store.py and chatapp/conversations/store.py).
EXPECTED_INDEXES = {"page": "history", "conversations": "by_member_activity",
                    "unread": "history", "last_messages": "_id_"}


def in_process_app(prefix, **overrides):
    """The app in the runner's process (threading mode, bcrypt at 4, LIMITS), on a
    database of its own that the scenario drops at the end: the in-process scenarios
    (history, flat costs, search, rich page) seed it through the services and time REST
    calls through its test client. Returns (app, database name)."""
    import os

    os.environ.setdefault("secretKey", SECRET)  # read when config is first imported
    from chatapp import create_app
    from config import DevelopmentConfig

    db_name = f"chatapp_{prefix}_{int(time.time())}"
    url = _own_database(os.environ.get("MONGO_DB_URL") or os.environ.get("MONGO_URI"), db_name)
    app = create_app(DevelopmentConfig, JWT_SECRET_KEY=SECRET, BCRYPT_ROUNDS=4,
                     RATELIMIT_ENABLED=True, ASYNC_MODE="threading", LOG_LEVEL="WARNING",
                     SOCKETIO_MESSAGE_QUEUE=None, MONGO_DB_NAME=db_name, MONGO_URI=url,
                     **{**LIMITS, **overrides})
    return app, db_name


def _own_database(url, db_name):
    """`url` naming the database `db_name`: a URL's own database would be the one used,
    and left with the bench's data while `db_name` is dropped (never the operator's)."""
    if not url:
        return None
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{db_name}", parts.query, ""))


def run(n_messages, n_convs, samples):
    from chatapp.extensions import mongo

    app, db_name = in_process_app("bench")
    client = app.test_client()
    try:
        me, peer, others = _seed(app, client, n_messages, n_convs)
        headers = {"Authorization": f"Bearer {me['token']}"}
        page = _time(samples, lambda: client.get(
            f"/api/chat/messages/{me['id']}/{peer['id']}", headers=headers), expect=50)
        # The list is paged (default 100, at most 200 a page): ask for all of them at once.
        convs = _time(samples, lambda: client.get(f"/api/chat/conversations?limit={n_convs}",
                                                  headers=headers), expect=n_convs)
        with app.app_context():
            indexes = _explain_or_say(me, peer) if not mongo.embedded else {
                "store": "embedded (mongomock + the declared indexes' hashes and order: a "
                         "page reads its index's order, as on MongoDB); on MongoDB these "
                         "queries use the indexes named here",
                **EXPECTED_INDEXES}
        return {"seeded": {"messages_in_conversation": n_messages, "conversations": n_convs,
                           "how": "chat service send_message, in-process"},
                "page": page, "conversations": convs, "indexes": indexes}
    finally:
        if not mongo.embedded and mongo.client is not None:
            mongo.client.drop_database(db_name)


def _seed(app, client, n_messages, n_convs):
    from bson import ObjectId

    from chatapp.chat import service

    tag = f"h{int(time.time() * 1000) % 10**8}"
    users = [_register(client, f"{tag}_{i}") for i in range(n_convs + 1)]
    me, peer, others = users[0], users[1], users[2:]
    me_id, peer_id = ObjectId(me["id"]), ObjectId(peer["id"])
    with app.test_request_context():
        for i in range(n_messages):
            a, b = (me_id, peer_id) if i % 2 == 0 else (peer_id, me_id)
            service.send_message(a, {"receiver": b, "content": f"message {i}"})
        for other in others:
            service.send_message(ObjectId(other["id"]), {"receiver": me_id, "content": "hi"})
    return me, peer, others


def _register(client, name):
    email = f"{name}@bench.example"
    r = client.post("/api/user/register", json={"username": name, "email": email,
                                                 "password": PASSWORD})
    assert r.status_code == 201, r.get_json()
    r = client.post("/api/user/login", json={"email": email, "password": PASSWORD})
    assert r.status_code == 200, r.get_json()
    body = r.get_json()
    return {"id": body["userId"], "token": body["token"]}


def _time(samples, call, expect):
    times = []
    for _ in range(samples):
        t = time.perf_counter()
        response = call()
        times.append((time.perf_counter() - t) * 1000)
        assert response.status_code == 200, response.get_json()
        assert len(response.get_json()) == expect, len(response.get_json())
    times.sort()
    pick = lambda q: times[min(len(times) - 1, max(0, -(-q * len(times) // 100) - 1))]  # noqa: E731
    return {"p50": pick(50), "p99": pick(99), "samples": samples}


def _explain_or_say(me, peer):
    try:
        return _explain(me, peer)
    except Exception as exc:  # noqa: BLE001 - a server without explain: say so, keep the figures
        return {"explain_failed": f"{type(exc).__name__}: {exc}"[:300]}


def _explain(me, peer):
    """The index MongoDB picks for each timed query (`explain()`), by name."""
    from bson import ObjectId

    from chatapp.chat import store
    from chatapp.conversations import store as conversation_store

    me_id, peer_id = ObjectId(me["id"]), ObjectId(peer["id"])
    conv = conversation_store.find_direct(conversation_store.pair_key(me_id, peer_id))["_id"]
    m, c = store.messages(), conversation_store.conversations()
    ids = [d["last_message_id"] for d in c.find({"member_ids": me_id}, {"last_message_id": 1})]
    plans = {
        "page": m.find({"conv": conv}).sort("seq", -1).limit(51).explain(),
        "conversations": c.find({"member_ids": me_id}).sort(
            [("last_at", -1), ("_id", -1)]).limit(201).explain(),
        "last_messages": m.find({"_id": {"$in": ids}}).explain(),
        # Each listed conversation's unread count (chatapp/chat/store.py count_unread).
        "unread": m.find({"conv": conv, "seq": {"$gt": 0}, "sender": {"$ne": me_id}}).explain(),
    }
    return {name: sorted(_index_names(plan)) or ["COLLSCAN"] for name, plan in plans.items()}


def _index_names(node):
    found = set()
    if isinstance(node, dict):
        if node.get("stage") in ("IXSCAN", "IDHACK", "EXPRESS_IXSCAN") or "indexName" in node:
            found.add(node.get("indexName", "_id_"))
        for key, value in node.items():
            if key not in ("rejectedPlans",):
                found |= _index_names(value)
    elif isinstance(node, list):
        for value in node:
            found |= _index_names(value)
    return found
