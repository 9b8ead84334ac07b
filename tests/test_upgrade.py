"""A database written by the 1:1-only version keeps working once this version starts on it.

The previous version (commit 51c79bc, the last one before group conversations) keyed a
conversation by its pair: `conversations` documents with `_id: "<low id>:<high id>"` and
`members` an array of the two ids, and each message's `conv` holding that key. Start-up
upgrades such a database in place (chatapp/conversations/upgrade.py).

- Live: the OLD code itself (extracted from git with `git archive 51c79bc`) serves a
  database on the MongoDB wire protocol (tests/mongo_wire.py); four users chat through
  it (1:1 pairs and a note to oneself; read, delivered, edited, deleted messages); it
  stops; two processes of this version start at the same moment on that database. Both
  come up, the log says how many conversations were upgraded, and every old message and
  conversation reads the same through the old routes and the new ones, in both processes.
- In process: the legacy layout is written with the old version's own store module;
  an upgrade cut off at every step resumes to exactly what an uninterrupted one gives,
  a half-upgraded pair is finished before it is read, and a second run changes nothing.
- `python -m chatapp.conversations.upgrade` (the documented command) exits 0.

Every process started here is stopped by PID, every wait is bounded.
"""
import copy
import importlib.util
import io
import os
import re
import subprocess
import sys
import tarfile
import threading
import time
from datetime import datetime, timedelta, timezone
from types import SimpleNamespace

import pytest
import requests
import socketio
from bson import ObjectId

from chatapp.chat import store as message_store
from chatapp.conversations import legacy_store
from chatapp.conversations import store as conversation_store
from chatapp.conversations import upgrade
from chatapp.extensions import mongo

from tests.live import ROOT, LiveServer, http_account
from tests.mongo_wire import WireServer
from tests.test_chat_rest import Marked

OLD_COMMIT = "51c79bc"  # the last version before group conversations
OLD_FIELDS = ("id", "_id", "seq", "sender", "receiver", "content", "timestamp", "read_at",
              "delivered_at", "edited_at", "deleted")
HEX24 = re.compile(r"^[0-9a-f]{24}$")
UPGRADED_LOG = re.compile(r"upgraded (\d+) conversation\(s\)")
SECRET = "upgrade-test-secret-key-that-is-long-enough-0123456789"


# -- the previous version's code ------------------------------------------------------------
@pytest.fixture(scope="module")
def old_code(tmp_path_factory):
    """The previous version's tree (`git archive`), from this repository's history."""
    probe = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--verify", "--quiet",
                            f"{OLD_COMMIT}^{{commit}}"], capture_output=True, timeout=30)
    if probe.returncode != 0:
        pytest.skip(f"commit {OLD_COMMIT} is not in this checkout's history (a shallow clone?)")
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", OLD_COMMIT],
                             capture_output=True, check=True, timeout=60).stdout
    root = tmp_path_factory.mktemp("chatapp-51c79bc")
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(root, filter="data")
    assert not (root / "chatapp" / "conversations").exists()  # really the 1:1-only version
    return root


def old_store_module(old_code, db):
    """The old chatapp/chat/store.py, loaded on its own and bound to `db`: what the
    previous version wrote, it writes, with the same code."""
    spec = importlib.util.spec_from_file_location(f"legacy_chat_store_{ObjectId()}",
                                                  old_code / "chatapp" / "chat" / "store.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.mongo = SimpleNamespace(db=db)  # its one handle on the database
    return module


class Legacy:
    """Writes as the previous version's chat service did, through its own store module
    (51c79bc: chatapp/chat/service.py send_message, _mark, edit_message, delete_message)."""

    def __init__(self, old_code, db):
        self.store = old_store_module(old_code, db)
        self.store.ensure_indexes()  # its indexes too (conversations_by_member among them)
        self.clock = datetime(2026, 11, 20, 9, 0, tzinfo=timezone.utc)

    def now(self):
        self.clock += timedelta(seconds=7)
        return self.clock

    def send(self, sender, receiver, content, client_id=None):
        message_id, created_at = ObjectId(), self.now()
        conv = self.store.conversation_key(sender, receiver)
        doc = {
            "_id": message_id, "conv": conv,
            "seq": self.store.next_seq(conv, [sender, receiver], message_id, created_at),
            "sender": sender, "receiver": receiver, "content": content,
            "created_at": created_at, "delivered_at": None, "read_at": None,
            "edited_at": None, "deleted": False,
        }
        if client_id is not None:
            doc["client_id"] = client_id
        assert self.store.insert_message(doc)
        return doc

    def mark(self, caller, peer, field, up_to):
        conv = self.store.conversation_key(caller, peer)
        when = self.now()
        updated = self.store.mark(conv, caller, field, up_to["seq"], when)
        if field == "read_at":
            self.store.mark(conv, caller, "delivered_at", up_to["seq"], when)
        return updated

    def edit(self, doc, content):
        return self.store.update_message(doc["_id"], {"content": content,
                                                      "edited_at": self.now()})

    def delete(self, doc):
        return self.store.update_message(doc["_id"], {"content": "", "deleted": True})


def write_legacy_chat(legacy, a, b, c):
    """Three pairs' worth of 1:1 history: a-b, b-c and a's notes to herself."""
    ab = [legacy.send(a, b, "hi b"), legacy.send(b, a, "hi a", client_id="b-1"),
          legacy.send(a, b, "how are you"), legacy.send(a, b, "typo hree"),
          legacy.send(b, a, "fine"), legacy.send(a, b, "good")]
    bc = [legacy.send(b, c, "c?"), legacy.send(c, b, "yes"), legacy.send(b, c, "lunch"),
          legacy.send(b, c, "oops, wrong chat"), legacy.send(c, b, "ok")]
    notes = [legacy.send(a, a, "note one"), legacy.send(a, a, "note two")]
    legacy.mark(b, a, "read_at", ab[2])  # b read a's first two
    legacy.mark(a, b, "delivered_at", ab[4])  # a's phone has b's two
    legacy.mark(c, b, "read_at", bc[2])  # c read b's first two
    legacy.edit(ab[3], "typo here")
    legacy.delete(bc[3])
    return {"ab": ab, "bc": bc, "notes": notes}


# -- comparing databases ----------------------------------------------------------------------
def dump(db):
    """Both collections, documents in a stable order."""
    return {"conversations": sorted(db.conversations.find(), key=lambda d: str(d["_id"])),
            "messages": sorted(db.messages.find(), key=lambda d: d["_id"])}


def restore(db, snapshot, legacy):
    db.conversations.delete_many({})
    db.messages.delete_many({})
    for name in ("conversations", "messages"):
        if snapshot[name]:
            db[name].insert_many(copy.deepcopy(snapshot[name]))
    # The upgrade drops the old version's index: put it back, as its ensure_indexes declared
    # it (that whole function again would trip mongomock, which re-checks a partial unique
    # index over the documents already stored as if it were not partial).
    legacy.store.conversations().create_index([("members", 1), ("last_at", -1)],
                                              name="conversations_by_member")


def upgraded_state(db):
    """The upgraded database with each new conversation id replaced by its pair key (the
    one thing two upgrades of the same data may choose differently)."""
    state = dump(db)
    pairs = {doc["_id"]: doc.get("pair", doc["_id"]) for doc in state["conversations"]}
    conversations = sorted(({k: v for k, v in doc.items() if k != "_id"}
                            for doc in state["conversations"]), key=lambda d: d["pair"])
    messages = [{**doc, "conv": pairs.get(doc["conv"], doc["conv"])} for doc in state["messages"]]
    return {"conversations": conversations, "messages": messages}


def assert_fully_upgraded(db, legacy_snapshot):
    """Nothing legacy left; every old message is there, unchanged but for its `conv`."""
    state = dump(db)
    assert [d["_id"] for d in state["conversations"] if isinstance(d["_id"], str)] == []
    assert [d["_id"] for d in state["conversations"] if "legacy" in d] == []
    by_pair = {d["pair"]: d for d in state["conversations"]}
    old_convs = {d["_id"]: d for d in legacy_snapshot["conversations"]}
    assert set(by_pair) == set(old_convs)
    for old in legacy_snapshot["messages"]:
        new = next(m for m in state["messages"] if m["_id"] == old["_id"])
        assert new == {**old, "conv": by_pair[old["conv"]]["_id"]}
    assert len(state["messages"]) == len(legacy_snapshot["messages"])
    for pair, doc in by_pair.items():
        assert doc["type"] == "direct" and doc["seq"] == old_convs[pair]["seq"]
        assert sorted(doc["member_ids"]) == sorted(set(old_convs[pair]["members"]))
    assert "conversations_by_member" not in db.conversations.index_information()


# -- in process: interrupted, resumed, repeated -----------------------------------------------
@pytest.fixture
def legacy_db(app, auth, old_code):
    """Three registered users and their 1:1 history written as the previous version did."""
    a, b, c = auth.user(), auth.user(), auth.user()
    with app.app_context():
        db = mongo.db
        legacy = Legacy(old_code, db)
        written = write_legacy_chat(legacy, *(ObjectId(u.id) for u in (a, b, c)))
        snapshot = dump(db)
        assert {d["_id"] for d in snapshot["conversations"]} == {
            conversation_store.pair_key(a.id, b.id), conversation_store.pair_key(b.id, c.id),
            conversation_store.pair_key(a.id, a.id)}
        upgrade.reset()
        yield SimpleNamespace(db=db, legacy=legacy, snapshot=snapshot, users=(a, b, c),
                              written=written)


def uninterrupted(legacy_db):
    restore(legacy_db.db, legacy_db.snapshot, legacy_db.legacy)
    upgrade.reset()
    assert upgrade.upgrade_all() == 3
    state = upgraded_state(legacy_db.db)
    restore(legacy_db.db, legacy_db.snapshot, legacy_db.legacy)
    upgrade.reset()
    return state


def test_an_uninterrupted_upgrade_gives_the_expected_conversations(legacy_db):
    db, (a, b, c), written = legacy_db.db, legacy_db.users, legacy_db.written
    assert upgrade.upgrade_all() == 3
    assert upgrade.done()
    assert_fully_upgraded(db, legacy_db.snapshot)
    ab = conversation_store.find_direct(conversation_store.pair_key(a.id, b.id))
    ab_msgs = written["ab"]
    assert ab["members"][b.id]["read_up_to"] == ab_msgs[2]["seq"]  # b read up to "how are you"
    assert ab["members"][b.id]["delivered_up_to"] == ab_msgs[2]["seq"]  # reading delivers
    assert ab["members"][a.id]["read_up_to"] == 0
    assert ab["members"][a.id]["delivered_up_to"] == ab_msgs[4]["seq"]
    assert ab["created_at"] == ab_msgs[0]["created_at"] and ab["created_by"] == ObjectId(a.id)
    assert ab["last_message_id"] == ab_msgs[-1]["_id"] and ab["version"] == ab["seq"] == 6
    bc = conversation_store.find_direct(conversation_store.pair_key(b.id, c.id))
    assert bc["members"][c.id]["read_up_to"] == written["bc"][2]["seq"]
    notes = conversation_store.find_direct(conversation_store.pair_key(a.id, a.id))
    assert notes["member_ids"] == [ObjectId(a.id)] and notes["member_count"] == 1


def interrupt_after_step_1(legacy_db, monkeypatch):
    """A process stopped after creating one pair's new document (step 1)."""
    a, b, _ = legacy_db.users
    pair = conversation_store.pair_key(a.id, b.id)
    legacy = legacy_store.find_legacy(pair)
    conversation_store.upsert_direct(pair, upgrade._seed(pair, legacy))


def interrupt_halfway_through_the_messages(legacy_db, monkeypatch):
    """Step 1 done and only some of the pair's messages moved (a crash inside step 2)."""
    a, b, _ = legacy_db.users
    pair = conversation_store.pair_key(a.id, b.id)
    doc = conversation_store.upsert_direct(
        pair, upgrade._seed(pair, legacy_store.find_legacy(pair)))
    for message in legacy_db.written["ab"][:3]:
        legacy_db.db.messages.update_one({"_id": message["_id"]}, {"$set": {"conv": doc["_id"]}})


def failing_once(monkeypatch, owner, name, on_call):
    """`owner.name` raises on its `on_call`-th call, then works again."""
    real, calls = getattr(owner, name), []

    def flaky(*args, **kwargs):
        calls.append(args)
        if len(calls) == on_call:
            raise RuntimeError(f"simulated crash in {name}")
        return real(*args, **kwargs)

    monkeypatch.setattr(owner, name, flaky)
    return lambda: monkeypatch.setattr(owner, name, real)


def crash_in(owner, name, on_call):
    def interrupt(legacy_db, monkeypatch):
        heal = failing_once(monkeypatch, owner, name, on_call)
        with pytest.raises(RuntimeError, match="simulated crash"):
            upgrade.upgrade_all()
        assert not upgrade.done()
        heal()
    interrupt.__name__ = f"crash_in_{name}_call_{on_call}"
    return interrupt


INTERRUPTIONS = [
    interrupt_after_step_1,
    interrupt_halfway_through_the_messages,
    crash_in(message_store, "move_conversation", 1),  # step 2 of the first pair
    crash_in(message_store, "move_conversation", 2),  # first pair done, second after step 1
    crash_in(legacy_store, "delete_legacy", 2),  # messages moved, old document left
    crash_in(legacy_store, "finish_upgrade", 3),  # old document gone, still `legacy`
    crash_in(conversation_store, "upsert_direct", 3),  # two pairs done, third not begun
]


@pytest.mark.parametrize("interrupt", INTERRUPTIONS, ids=lambda f: f.__name__)
def test_an_interrupted_upgrade_resumes_to_the_same_result(legacy_db, monkeypatch, interrupt):
    expected = uninterrupted(legacy_db)
    interrupt(legacy_db, monkeypatch)
    upgrade.reset()  # a process starting again on the same database
    upgrade.upgrade_all()
    assert upgraded_state(legacy_db.db) == expected
    assert_fully_upgraded(legacy_db.db, legacy_db.snapshot)


# Each cuts the a-b pair (the first one written, so the first one upgraded) off mid-way.
HALF_UPGRADED_AB = [
    interrupt_after_step_1,
    interrupt_halfway_through_the_messages,
    crash_in(message_store, "move_conversation", 1),
    crash_in(legacy_store, "delete_legacy", 1),
    crash_in(legacy_store, "finish_upgrade", 1),
]


@pytest.mark.parametrize("interrupt", HALF_UPGRADED_AB, ids=lambda f: f.__name__)
def test_a_half_upgraded_pair_is_finished_before_it_is_read(legacy_db, client, monkeypatch,
                                                            interrupt):
    """A process whose start-up upgrade was cut off serves on: each pair it touches is
    upgraded first, so no read ever sees it half-moved."""
    a, b, _ = legacy_db.users
    expected = uninterrupted(legacy_db)
    interrupt(legacy_db, monkeypatch)
    upgrade.reset()  # this process has not seen the whole collection upgraded
    pair = conversation_store.pair_key(a.id, b.id)
    doc = conversation_store.find_direct(pair)
    assert legacy_store.find_legacy(pair) is not None or doc.get("legacy") is True
    response = client.get(f"/api/chat/messages/{a.id}/{b.id}?limit=50", headers=a.headers)
    assert response.status_code == 200
    history = response.get_json()
    assert [m["id"] for m in history] == [str(m["_id"]) for m in reversed(legacy_db.written["ab"])]
    assert len({m["conversation"] for m in history}) == 1
    conversation = client.get(f"/api/chat/conversations/{b.id}", headers=a.headers).get_json()
    assert conversation["id"] == history[0]["conversation"]
    assert conversation["last_message"]["id"] == history[0]["id"]
    doc = conversation_store.find_direct(pair)
    assert "legacy" not in doc and legacy_store.find_legacy(pair) is None
    entries = client.get("/api/chat/conversations", headers=a.headers).get_json()
    assert sorted(e["user"]["id"] for e in entries) == sorted([a.id, b.id])
    assert upgrade.done()  # the listing finished the whole collection first
    assert upgraded_state(legacy_db.db) == expected


def test_running_the_upgrade_again_changes_nothing(legacy_db):
    assert upgrade.upgrade_all() == 3
    once = dump(legacy_db.db)
    upgrade.reset()
    assert upgrade.upgrade_all() == 0
    assert dump(legacy_db.db) == once
    for pair in once["conversations"]:  # and pair by pair, as an access would
        upgrade.upgrade_pair(pair["pair"])
    assert dump(legacy_db.db) == once


# -- the documented command ---------------------------------------------------------------
@pytest.fixture
def wire_db():
    """The embedded store on the MongoDB wire protocol, served from this process."""
    server = WireServer(port=0)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1},
                              daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def wire_database(server, name):
    return server.store.client[name]


def test_the_upgrade_command_exits_0_against_a_mongo_wire_database(wire_db, old_code):
    name = "chatapp_upgrade_command"
    with wire_db.store.lock:
        legacy = Legacy(old_code, wire_database(wire_db, name))
        a, b = ObjectId(), ObjectId()
        write_legacy_chat(legacy, a, b, ObjectId())
        snapshot = dump(wire_database(wire_db, name))
    env = {**_clean_env(), "MONGO_DB_URL": f"mongodb://127.0.0.1:{wire_db.port}/{name}",
           "CHATAPP_ENV": "development", "secretKey": SECRET, "LOG_LEVEL": "INFO",
           "PYTHONUNBUFFERED": "1"}
    started = time.monotonic()
    run = subprocess.run([sys.executable, "-m", "chatapp.conversations.upgrade"], cwd=ROOT,
                         env=env, capture_output=True, text=True, timeout=60)
    output = run.stdout + run.stderr
    assert run.returncode == 0, output
    assert time.monotonic() - started < 60
    assert UPGRADED_LOG.search(output) and UPGRADED_LOG.search(output).group(1) == "3", output
    assert "upgrade complete: 0 conversation(s) left to upgrade" in output, output
    with wire_db.store.lock:
        db = wire_database(wire_db, name)
        state = dump(db)
        assert [d["_id"] for d in state["conversations"] if isinstance(d["_id"], str)] == []
        assert [d for d in state["conversations"] if "legacy" in d] == []
        by_pair = {d["pair"]: d["_id"] for d in state["conversations"]}
        for old in snapshot["messages"]:
            new = next(m for m in state["messages"] if m["_id"] == old["_id"])
            assert new == {**old, "conv": by_pair[old["conv"]]}
    again = subprocess.run([sys.executable, "-m", "chatapp.conversations.upgrade"], cwd=ROOT,
                           env=env, capture_output=True, text=True, timeout=60)
    assert again.returncode == 0, again.stdout + again.stderr
    assert not UPGRADED_LOG.search(again.stdout + again.stderr)  # nothing left: says nothing
    with wire_db.store.lock:
        assert dump(wire_database(wire_db, name)) == state


def _clean_env():
    env = dict(os.environ)
    for key in ("MONGO_URI", "MONGO_DB_URL", "SOCKETIO_MESSAGE_QUEUE", "RATELIMIT_STORAGE_URI"):
        env.pop(key, None)
    return env


# -- live: the old server writes, two new servers upgrade at once ------------------------------
def api(base, account, method, path, expect=200, **kwargs):
    response = requests.request(method, base + path, headers=account["headers"], timeout=10,
                                **kwargs)
    assert response.status_code == expect, (method, path, response.status_code, response.text)
    return response.json()


def as_before(now, before):
    """`now` (a Message, or a list of them) cut down to the fields `before` had."""
    if isinstance(before, list):
        assert len(now) == len(before), (now, before)
        return [as_before(n, b) for n, b in zip(now, before)]
    assert set(OLD_FIELDS) <= set(before) and "conversation" not in before
    return {k: now[k] for k in before if k in now}


class Snapshot:
    """What each user reads through the routes the previous version had."""

    def __init__(self, base, users, pairs):
        self.mine, self.lists, self.histories = {}, {}, {}
        for name, user in users.items():
            self.mine[name] = api(base, user, "GET", f"/api/chat/messages/{user['id']}",
                                  params={"limit": 200})
            self.lists[name] = api(base, user, "GET", "/api/chat/conversations")
        for x, y in pairs:
            for reader in {x, y}:
                self.histories[(x, y, reader)] = api(
                    base, users[reader], "GET",
                    f"/api/chat/messages/{users[x]['id']}/{users[y]['id']}", params={"limit": 200})


def live_user(base, name):
    body = http_account(base, name)
    return {"name": name, "id": body["userId"], "token": body["access_token"],
            "headers": {"Authorization": f"Bearer {body['access_token']}"}}


def send(base, sender, receiver, content, **extra):
    return api(base, sender, "POST", "/api/chat/send", expect=201,
               json={"receiver": receiver["id"], "content": content, **extra})["message"]


def chat_through_the_old_server(base):
    """Four users, three 1:1 conversations (one a note to oneself), receipts, an edit and a
    deletion, every write through the old server's own routes and socket events."""
    users = {name: live_user(base, name) for name in ("alice", "bob", "carol", "dave")}
    alice, bob, carol = users["alice"], users["bob"], users["carol"]
    ab = [send(base, alice, bob, "hi bob"), send(base, bob, alice, "hi alice", client_id="b-1"),
          send(base, alice, bob, "how are you"), send(base, alice, bob, "typo hree"),
          send(base, bob, alice, "fine"), send(base, alice, bob, "good")]
    bc = [send(base, bob, carol, "carol?"), send(base, carol, bob, "yes"),
          send(base, bob, carol, "lunch"), send(base, bob, carol, "oops, wrong chat"),
          send(base, carol, bob, "ok"), send(base, bob, carol, "noon")]
    notes = [send(base, alice, alice, "note one"), send(base, alice, alice, "note two")]
    assert "conversation" not in ab[0], "this is not the previous version"
    # bob read alice's first two; carol read bob's first two (by REST, with up_to)
    assert api(base, bob, "POST", f"/api/chat/conversations/{alice['id']}/read",
               json={"up_to": ab[2]["id"]}) == {"updated": 2}
    assert api(base, carol, "POST", f"/api/chat/conversations/{bob['id']}/read",
               json={"up_to": bc[2]["id"]}) == {"updated": 2}
    # alice's phone confirms delivery of bob's messages (the socket `delivered` event)
    phone = socketio.Client(reconnection=False)
    phone.connect(base, auth={"token": alice["token"]}, transports=["websocket"], wait_timeout=10)
    try:
        ack = phone.call("delivered", {"peer": bob["id"], "up_to": ab[4]["id"]}, timeout=10)
        assert ack == {"ok": True, "updated": 2}, ack
    finally:
        phone.disconnect()
    edited = api(base, alice, "PATCH", f"/api/chat/messages/{ab[3]['id']}",
                 json={"content": "typo here"})["message"]
    assert edited["edited_at"]
    deleted = api(base, bob, "DELETE", f"/api/chat/messages/{bc[3]['id']}")["message"]
    assert deleted["deleted"] is True
    return users, {("alice", "bob"): ab, ("bob", "carol"): bc, ("alice", "alice"): notes}


def start_at_once(servers, timeout=40):
    """Start every server at the same moment; wait (bounded) until each answers /healthz."""
    errors = []

    def start(server):
        try:
            server.start(timeout=timeout)
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=start, args=(s,), daemon=True) for s in servers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout + 15)
    assert not errors, errors
    assert all(s.proc is not None and s.proc.poll() is None for s in servers)


def read_log(server):
    return server.log_path.read_text(errors="replace") if server.log_path.exists() else ""


def expected_marker(history, member_id, field):
    """The seq a member's marker must have: the newest of the others' messages to them with
    `field` set before the upgrade (0: none)."""
    return max((m["seq"] for m in history if m["receiver"] == member_id
                and m["sender"] != member_id and m[field] is not None), default=0)


@pytest.mark.live
def test_a_database_of_the_previous_version_is_upgraded_by_two_processes_starting_at_once(
        old_code, wire_db, tmp_path):
    started = time.monotonic()
    name = "chatapp_upgrade_live"
    db_env = {"MONGO_DB_URL": f"mongodb://127.0.0.1:{wire_db.port}/{name}", "secretKey": SECRET}
    old = LiveServer(env=db_env, command=[sys.executable, str(old_code / "wsgi.py")],
                     log_path=tmp_path / "old.log")
    with old:
        users, pairs = chat_through_the_old_server(old.url)
        before = Snapshot(old.url, users, pairs)
    assert old.proc.returncode is not None
    with wire_db.store.lock:
        legacy = dump(wire_database(wire_db, name))
    assert sorted(d["_id"] for d in legacy["conversations"]) == sorted(
        conversation_store.pair_key(users[x]["id"], users[y]["id"]) for x, y in pairs)
    assert all(isinstance(m["conv"], str) for m in legacy["messages"])
    assert before.lists["dave"] == []

    new = [LiveServer(env={**db_env, "LOG_LEVEL": "INFO"}, log_path=tmp_path / f"new{n}.log")
           for n in (1, 2)]
    try:
        start_at_once(new)
        logs = [read_log(server) for server in new]
        counts = [int(n) for log in logs for n in UPGRADED_LOG.findall(log)]
        assert counts, f"no process logged the upgrade: {logs}"
        assert sum(counts) == len(pairs), counts  # each pair counted by the one that finished it
        for log in logs:
            assert "Traceback" not in log and " ERROR " not in log, log
        with wire_db.store.lock:
            state = dump(wire_database(wire_db, name))
        assert [d["_id"] for d in state["conversations"] if isinstance(d["_id"], str)] == []
        assert [d["_id"] for d in state["conversations"] if "legacy" in d] == []
        assert len(state["conversations"]) == len(pairs)  # one per pair, for all the racing
        assert len(state["messages"]) == len(legacy["messages"])

        conv_ids = {}
        for server in new:
            conv_ids = check_old_data_reads_the_same(server.url, users, pairs, before, conv_ids)
        check_writes_continue_the_old_conversations(new, users, pairs, before, conv_ids)
    finally:
        for server in new:
            server.stop()
            if getattr(server, "_log", None) not in (None, subprocess.DEVNULL):
                server._log.close()
    print(f"\nupgrade live test: {time.monotonic() - started:.1f}s; upgrade logs {counts}")


def check_old_data_reads_the_same(base, users, pairs, before, conv_ids):
    """Every old message through the old routes and the new ones: the same old fields, a
    `conversation` (24-hex, one per pair); unread counts and markers as before."""
    # GET /api/chat/messages/<a>/<b>: unchanged but for `conversation` (and `version`)
    for (x, y, reader), old in before.histories.items():
        now = api(base, users[reader], "GET",
                  f"/api/chat/messages/{users[x]['id']}/{users[y]['id']}", params={"limit": 200})
        assert as_before(now, old) == old
        ids = {m["conversation"] for m in now}
        assert len(ids) == 1 and HEX24.match(next(iter(ids))), ids
        conv_ids.setdefault((x, y), ids.pop())
        assert now[0]["conversation"] == conv_ids[(x, y)]  # both processes: the same id
    assert len(set(conv_ids.values())) == len(pairs)
    # GET /api/chat/messages/<me>: every message of the user, unchanged
    for name, user in users.items():
        now = api(base, user, "GET", f"/api/chat/messages/{user['id']}", params={"limit": 200})
        assert as_before(now, before.mine[name]) == before.mine[name]
        for message in now:
            pair = next(p for p, msgs in pairs.items() if message["id"] in {m["id"] for m in msgs})
            assert message["conversation"] == conv_ids[pair]
    # GET /api/chat/conversations: same peers, order, last messages and unread counts
    for name, user in users.items():
        now = api(base, user, "GET", "/api/chat/conversations")
        old = before.lists[name]
        assert [e["user"]["id"] for e in now] == [e["user"]["id"] for e in old]
        assert [e["unread_count"] for e in now] == [e["unread_count"] for e in old]
        assert as_before([e["last_message"] for e in now], [e["last_message"] for e in old]) \
            == [e["last_message"] for e in old]
        for entry in now:
            pair = tuple(sorted((name, next(n for n, u in users.items()
                                            if u["id"] == entry["user"]["id"]))))
            assert entry["conversation"]["id"] == conv_ids[pair]
            assert entry["conversation"]["type"] == "direct"
            assert entry["conversation"]["unread_count"] == entry["unread_count"]
    # GET /api/chat/conversations/<id> and .../messages: the new routes, by id and peer id
    for (x, y), sent in pairs.items():
        history = before.histories[(x, y, x)]
        for reader in {x, y}:
            peer = y if reader == x else x
            conv = api(base, users[reader], "GET", f"/api/chat/conversations/{conv_ids[(x, y)]}")
            by_peer = api(base, users[reader], "GET",
                          f"/api/chat/conversations/{users[peer]['id']}")
            assert by_peer["id"] == conv["id"] == conv_ids[(x, y)]
            assert conv["type"] == "direct" and conv["title"] is None
            assert conv["member_count"] == len({x, y}) and conv["my_role"] == "member"
            assert conv["created_at"] == sent[0]["timestamp"]
            assert as_before(conv["last_message"], history[0]) == history[0]
            old_entry = next((e for e in before.lists[reader]
                              if e["user"]["id"] == users[peer]["id"]), None)
            assert conv["unread_count"] == old_entry["unread_count"]
            members = {m["user"]["id"]: m for m in conv["members"]}
            assert set(members) == {users[x]["id"], users[y]["id"]}
            for member_id, member in members.items():
                assert member["role"] == "member"
                assert member["read_up_to"] == expected_marker(history, member_id, "read_at")
                assert member["delivered_up_to"] == expected_marker(history, member_id,
                                                                    "delivered_at")
            assert conv["read_up_to"] == members[users[reader]["id"]]["read_up_to"]
            messages = api(base, users[reader], "GET",
                           f"/api/chat/conversations/{conv_ids[(x, y)]}/messages",
                           params={"limit": 200})
            assert as_before(messages, history) == history
            assert {m["conversation"] for m in messages} == {conv_ids[(x, y)]}
    # the markers are not zero by accident: the old data had some
    ab = before.histories[("alice", "bob", "alice")]
    assert expected_marker(ab, users["bob"]["id"], "read_at") == 3
    assert expected_marker(ab, users["alice"]["id"], "delivered_at") == 5
    return conv_ids


def check_writes_continue_the_old_conversations(new, users, pairs, before, conv_ids):
    first, second = new[0].url, new[1].url
    alice, bob, carol = users["alice"], users["bob"], users["carol"]
    # The old read route, through the other process: what was unread gets read
    unread = next(e["unread_count"] for e in before.lists["bob"]
                  if e["user"]["id"] == alice["id"])
    assert unread == 2
    assert api(second, bob, "POST", f"/api/chat/conversations/{alice['id']}/read",
               json={}) == Marked(updated=unread)
    history = api(first, bob, "GET", f"/api/chat/messages/{alice['id']}/{bob['id']}")
    assert all(m["read_at"] for m in history if m["receiver"] == bob["id"])
    conv = api(first, bob, "GET", f"/api/chat/conversations/{conv_ids[('alice', 'bob')]}")
    assert conv["unread_count"] == 0
    newest_from_alice = max(m["seq"] for m in history if m["sender"] == alice["id"])
    assert conv["read_up_to"] == newest_from_alice
    # New messages continue each old conversation's seq, by the old and the new send
    for base, (x, y), how in ((first, ("alice", "bob"), "old"), (second, ("bob", "carol"), "new"),
                              (second, ("alice", "alice"), "new"), (first, ("bob", "carol"), "old")):
        sender, receiver = users[x], users[y]
        old_max = max(m["seq"] for m in api(
            base, sender, "GET", f"/api/chat/messages/{sender['id']}/{receiver['id']}"))
        if how == "old":
            message = send(base, sender, receiver, f"after the upgrade ({how})")
        else:
            message = api(base, sender, "POST",
                          f"/api/chat/conversations/{conv_ids[(x, y)]}/messages", expect=201,
                          json={"content": f"after the upgrade ({how})"})["message"]
        assert message["seq"] == old_max + 1
        assert message["conversation"] == conv_ids[(x, y)]
        assert message["receiver"] == receiver["id"]
        other = second if base == first else first
        newest = api(other, receiver, "GET",
                     f"/api/chat/conversations/{conv_ids[(x, y)]}/messages", params={"limit": 1})
        assert newest[0]["id"] == message["id"]
    # Still one conversation per pair, and the listing shows the new messages
    for name in ("alice", "bob", "carol"):
        entries = api(second, users[name], "GET", "/api/chat/conversations")
        assert sorted(e["conversation"]["id"] for e in entries) == sorted(
            conv_ids[p] for p in pairs if name in p)
