"""The sync promise under a soak (contract Part 2, "Sync"): two server processes (gunicorn,
eventlet) sharing one database and Redis, writes that really finish out of order, and
readers following the documented catch-up procedure end up with exactly the server's state.

Each variant starts its own pair of processes with SYNC_TEST_WRITE_DELAY_MS (a random pause
the server takes in each change: between taking a message's version and writing it, and
between writing a membership, marker or title change and recording it) and
SYNC_WRITE_DEADLINE=1:
- `delay150`: writes finish out of order, well within the deadline;
- `delay1500`: some writes outlast the deadline, so readers settle their numbers (record
  what was written at them, else void them) and writers whose number was voided
  re-announce their change at a fresh version (chatapp/sync/service.py `_settle`,
  `_record`).

Writers (threads, over REST and over sockets, on both processes): sends, edits, deletions
(the sender's, and an owner's/admin's moderation), read markers, and, by the owner and an
admin at once, renames, members added and removed, roles changed, churn members leaving,
in three groups and one direct conversation. Readers (members throughout) loop: connect a
socket to either process, apply live message events for a random while, disconnect at a
random moment, catch up with `changes` (random page sizes, sometimes abandoned half way,
as a client that drops again) from the version they hold.

At the end (writers stopped, > SYNC_WRITE_DEADLINE later) each reader catches up once more
and its copy must equal the server's: the messages (ids, content, deleted, edited_at,
version, seq), the members, roles and title replayed from the events since version 0, the
read markers replayed from `read` events; no page ever went below a version the reader
had, no event came out of version order. The database then holds exactly one feed record
per version of each conversation. The database is tests/mongo_wire.py, or a database of
its own on TEST_MONGO_URI's server (tests/live.py database_env).

A third test makes the soak's rarest failure likely: three renames at once in each of 12
groups. Server bugs found here (fixed since) are named in KNOWN_BUGS, which a failure that
shows one of them quotes. Every process started here
(Redis, mongo_wire, the gunicorn processes) is stopped by PID (its process group).
"""
import os
import random
import sys
import threading
import time
import traceback
import uuid
from collections import Counter

import pymongo
import pytest
import redis
import requests
import socketio

from tests.live import database_env, free_port, server_uri
from tests.sync_client import Replica
from tests.test_scaleout import REDIS, Service

pytestmark = [
    pytest.mark.live,
    pytest.mark.skipif(REDIS is None,
                       reason="needs redis-server on this machine (`apt-get install "
                              "redis-server`; .ci/run installs it)"),
]

PASSWORD = "correct horse battery"
SECRET = "sync-soak-secret-key-that-is-long-enough-0123456789"
DEADLINE = 1  # SYNC_WRITE_DEADLINE, seconds
GAP_WAIT_MS = 250
SOAK_SECONDS = float(os.environ.get("SYNC_SOAK_SECONDS", "12"))
TIMEOUT = 20  # every HTTP call and socket ack, seconds
FINAL_CATCH_UP = 30  # seconds a reader's final catch-up may take
OK_STATUSES = {200, 201}
# Refusals a writer can meet by racing the others (removed meanwhile, message deleted, an
# admin meeting another admin, a group changed under five attempts): counted, not errors.
EXPECTED_REFUSALS = {403: "forbidden", 404: "not_found", 409: "conflict"}


# Server bugs this module found (the report is in its commit message; both fixed since):
# a failure that shows one of them names it.
REANNOUNCED = (
    "BUG chatapp/sync/service.py `_record`: a membership, marker or title event whose writer "
    "outlasts SYNC_WRITE_DEADLINE between its write and its record is recorded by a reader "
    "from its `pending` entry; the writer then finds its number taken and, as only a message "
    "record is recognised as its own (`existing.get('msg') == message_id`), announces the "
    "same event again at a fresh version: the event is in the feed twice, the second time "
    "after later changes, so a reader replaying the events in version order can end with an "
    "older title, a removed member, a stale role or a reset read marker. Fix: any record "
    "but a void at the writer's number is its own change (a number is taken by one change "
    "only): `if existing is not None and existing['kind'] != 'void': return version`.")
OUT_OF_ORDER = (
    "BUG chatapp/conversations/members.py `_take`/`_write`: a title or membership change "
    "takes its version in one update and writes the change in another, with nothing that "
    "keeps writes in version order; two changes at once can land in the opposite order of "
    "their versions (the document's `pending` list shows the higher version written first), "
    "so the database keeps the lower version's title or membership while readers replaying "
    "the events in version order end with the higher one's. Fix: write in version order "
    "(e.g. condition the write on the last written change being below this one's first "
    "number, `$max` it, void and retry otherwise), or take the number in the write itself.")
KNOWN_BUGS = f"{REANNOUNCED}\n{OUT_OF_ORDER}"
EVENT_DIFFERENCES = ("replayed members/roles", "replayed title", "replayed read markers",
                     "the events about user", "non-member")


def known_bug(difference, audit):
    """A difference in what the events replay to, in a conversation whose feed or document
    shows one of the bugs above."""
    return any(mark in difference for mark in EVENT_DIFFERENCES) and any(
        cid in difference for cid, found in audit["evidence"].items() if any(found.values()))


@pytest.fixture(scope="module")
def infrastructure(tmp_path_factory):
    """Redis and the database (mongo_wire, unless TEST_MONGO_URI names a server), shared by
    the variants; stopped by PID (process group) at the end."""
    tmp = tmp_path_factory.mktemp("sync_soak")
    services = []
    try:
        redis_port = free_port()
        services.append(Service("redis", [REDIS, "--port", str(redis_port), "--bind",
                                          "127.0.0.1", "--save", "", "--appendonly", "no",
                                          "--dir", str(tmp)], tmp).start())
        services[-1].wait_until(lambda: redis.Redis(port=redis_port, socket_timeout=1).ping())
        db_port = None
        if not server_uri():
            db_port = free_port()
            services.append(Service("mongo_wire", [sys.executable, "-m", "tests.mongo_wire",
                                                   "--port", str(db_port)], tmp).start())
            services[-1].wait_until(lambda: b"serving" in (tmp / "mongo_wire.log").read_bytes())
        yield {"tmp": tmp, "redis_port": redis_port, "db_port": db_port}
    finally:
        for service in reversed(services):
            service.stop()


@pytest.fixture(scope="module")
def clusters(infrastructure):
    """`clusters(delay_ms)`: the module's pair of processes for that write delay, started on
    first use (a database of its own), stopped by PID at the end of the module."""
    made = {}

    def get(delay_ms):
        if delay_ms not in made:
            made[delay_ms] = start_cluster(infrastructure, delay_ms, f"sync_soak_{delay_ms}")
        return made[delay_ms]

    try:
        yield get
    finally:
        for cluster in made.values():
            for app in cluster.apps:
                app.stop()


def database(infra, name):
    """MONGO_DB_URL / MONGO_DB_NAME of an empty database for one variant."""
    env = database_env(name)
    if not env:
        env = {"MONGO_DB_URL": f"mongodb://127.0.0.1:{infra['db_port']}/{name}",
               "MONGO_DB_NAME": name}
    return env


class Cluster:
    def __init__(self, apps, urls, db_env):
        self.apps, self.urls, self.db_env = apps, urls, db_env

    def db(self):
        client = pymongo.MongoClient(self.db_env["MONGO_DB_URL"], serverSelectionTimeoutMS=10_000)
        return client, client[self.db_env["MONGO_DB_NAME"]]


def start_cluster(infra, delay_ms, name):
    """Two gunicorn processes (deploy/gunicorn.conf.py, one eventlet worker each) on one
    database and Redis. Development mode: production refuses SYNC_TEST_WRITE_DELAY_MS."""
    db_env = database(infra, name)
    apps = []
    try:
        for index in (1, 2):
            port = free_port()
            env = {**os.environ, "CHATAPP_ENV": "development", "secretKey": SECRET,
                   "ASYNC_MODE": "eventlet", "HOST": "127.0.0.1", "PORT": str(port),
                   **db_env,
                   "SOCKETIO_MESSAGE_QUEUE": f"redis://127.0.0.1:{infra['redis_port']}/0",
                   "RATELIMIT_ENABLED": "false", "BCRYPT_ROUNDS": "4",
                   "SYNC_TEST_WRITE_DELAY_MS": str(delay_ms),
                   "SYNC_WRITE_DEADLINE": str(DEADLINE), "SYNC_GAP_WAIT_MS": str(GAP_WAIT_MS),
                   "LOG_LEVEL": "WARNING", "ACCESS_LOG": "0", "PYTHONUNBUFFERED": "1"}
            env.pop("MONGO_URI", None)
            command = [sys.executable, "-m", "gunicorn", "-c", "deploy/gunicorn.conf.py",
                       "wsgi:app"]
            app = Service(f"{name}_app{index}", command, infra["tmp"], env)
            apps.append(app.start())
            url = f"http://127.0.0.1:{port}"
            app.wait_until(lambda url=url: requests.get(url + "/healthz", timeout=2)
                           .status_code == 200)
        return Cluster(apps, [f"http://127.0.0.1:{a.env['PORT']}" for a in apps], db_env)
    except BaseException:
        for app in apps:
            app.stop()
        raise


class User:
    def __init__(self, cluster, label):
        self.label = label
        self.name = f"{label}_{uuid.uuid4().hex[:8]}"
        email = f"{self.name}@example.com"
        response = requests.post(cluster.urls[0] + "/api/user/register", timeout=TIMEOUT,
                                 json={"username": self.name, "email": email,
                                       "password": PASSWORD})
        assert response.status_code == 201, response.text
        response = requests.post(cluster.urls[1] + "/api/user/login", timeout=TIMEOUT,
                                 json={"email": email, "password": PASSWORD})
        assert response.status_code == 200, response.text
        body = response.json()
        self.id, self.token = body["userId"], body["access_token"]
        self.headers = {"Authorization": f"Bearer {self.token}"}


def call(base, user, method, path, expect=200, **kwargs):
    response = requests.request(method, base + path, headers=user.headers, timeout=TIMEOUT,
                                **kwargs)
    assert response.status_code == expect, (method, path, response.status_code, response.text)
    return response.json()


class Known:
    """What the writers know: message ids by conversation and by sender."""

    def __init__(self):
        self.lock = threading.Lock()
        self.by_conversation, self.by_sender = {}, {}

    def add(self, message):
        with self.lock:
            self.by_conversation.setdefault(message["conversation"], []).append(message["id"])
            self.by_sender.setdefault(message["sender"], []).append(message["id"])

    def pick(self, conversation=None, sender=None):
        with self.lock:
            pool = (self.by_conversation.get(conversation, []) if sender is None
                    else self.by_sender.get(sender, []))
            return random.choice(pool) if pool else None


class Writer(threading.Thread):
    """One user on one process over one transport, doing weighted random operations until
    `stop`; every outcome counted, anything but a success or an expected refusal kept in
    `errors`."""

    def __init__(self, name, user, base, transport, conversations, weights, known, stop,
                 direct_peer=None, churn=(), manager=False, owner=False):
        super().__init__(name=name, daemon=True)
        self.user, self.base, self.transport = user, base, transport
        self.conversations, self.weights = conversations, weights
        self.known, self.stop = known, stop
        self.direct_peer, self.churn = direct_peer, list(churn)
        self.manager, self.owner = manager, owner
        self.http = requests.Session()
        self.sio = None
        self.outcomes = Counter()
        self.errors = []
        self.count = 0

    def run(self):
        try:
            while not self.stop.is_set():
                op = random.choices(list(self.weights), weights=list(self.weights.values()))[0]
                conv = random.choice(self.conversations)
                getattr(self, "op_" + op)(conv)
                time.sleep(random.uniform(0, 0.05))
        except Exception:  # noqa: BLE001 - reported by the test
            self.errors.append(f"{self.name}: {traceback.format_exc()}")
        finally:
            if self.sio is not None and self.sio.connected:
                self.sio.disconnect()

    # -- transports -------------------------------------------------------------------
    def socket(self):
        if self.sio is None or not self.sio.connected:
            self.sio = socketio.Client(reconnection=False)
            self.sio.connect(self.base, auth={"token": self.user.token},
                             transports=["websocket"], wait_timeout=10)
        return self.sio

    def rest(self, op, method, path, body=None):
        response = self.http.request(method, self.base + path, headers=self.user.headers,
                                     json=body, timeout=TIMEOUT)
        return self.outcome(op, response.status_code, response)

    def emit(self, op, event, payload):
        ack = self.socket().call(event, payload, timeout=TIMEOUT)
        if ack.get("ok"):
            return self.outcome(op, 200, None, ack)
        code = ack.get("error", {}).get("code")
        status = {v: k for k, v in EXPECTED_REFUSALS.items()}.get(code, code)
        return self.outcome(op, status, None, ack)

    def outcome(self, op, status, response, ack=None):
        self.outcomes[f"{op} {status}"] += 1
        if status in OK_STATUSES:
            self.count += 1
            return ack if ack is not None else response.json()
        if status not in EXPECTED_REFUSALS:
            text = response.text[:300] if response is not None else ack
            self.errors.append(f"{self.name} {op}: {status} {text}")
        return None

    # -- operations ---------------------------------------------------------------------
    def op_send(self, conv):
        content = f"{self.name} #{self.count} {uuid.uuid4().hex[:6]}"
        client_id = uuid.uuid4().hex
        direct = conv == self.direct_conversation() and random.random() < 0.5
        target = {"receiver": self.direct_peer.id} if direct else {"conversation": conv}
        if self.transport == "socket":
            ack = self.emit("send", "chat message", {**target, "content": content,
                                                     "client_id": client_id})
            message = ack and ack["message"]
        elif direct:
            body = self.rest("send", "POST", "/api/chat/send",
                             {"receiver": self.direct_peer.id, "content": content,
                              "client_id": client_id})
            message = body and body["message"]
        else:
            body = self.rest("send", "POST", f"/api/chat/conversations/{conv}/messages",
                             {"content": content, "client_id": client_id})
            message = body and body["message"]
        if message:
            self.known.add(message)

    def direct_conversation(self):
        return self.conversations[-1] if self.direct_peer is not None else None

    def op_edit(self, conv):
        mid = self.known.pick(sender=self.user.id)
        if mid is not None:
            self.rest("edit", "PATCH", f"/api/chat/messages/{mid}",
                      {"content": f"edited by {self.name} {uuid.uuid4().hex[:6]}"})

    def op_delete(self, conv):
        # Managers moderate anyone's message in a group; everyone else deletes their own.
        mid = (self.known.pick(conversation=conv) if self.manager
               else self.known.pick(sender=self.user.id))
        if mid is not None:
            self.rest("delete", "DELETE", f"/api/chat/messages/{mid}")

    def op_read(self, conv):
        up_to = self.known.pick(conversation=conv) if random.random() < 0.5 else None
        if self.transport == "socket":
            payload = {"conversation": conv, **({"up_to": up_to} if up_to else {})}
            self.emit("read", "read", payload)
        else:
            self.rest("read", "POST", f"/api/chat/conversations/{conv}/read",
                      {"up_to": up_to} if up_to else {})

    def group(self, conv):
        groups = [c for c in self.conversations if c != self.direct_conversation()]
        return conv if conv in groups else random.choice(groups)

    def op_rename(self, conv):
        self.rest("rename", "PATCH", f"/api/chat/conversations/{self.group(conv)}",
                  {"title": f"{self.name} {uuid.uuid4().hex[:6]}"})

    def op_add(self, conv):
        users = random.sample(self.churn, random.randint(1, 2))
        self.rest("add", "POST", f"/api/chat/conversations/{self.group(conv)}/members",
                  {"user_ids": [u.id for u in users]})

    def op_remove(self, conv):
        user = random.choice(self.churn)
        self.rest("remove", "DELETE",
                  f"/api/chat/conversations/{self.group(conv)}/members/{user.id}")

    def op_role(self, conv):
        user = random.choice(self.churn)
        self.rest("role", "PATCH",
                  f"/api/chat/conversations/{self.group(conv)}/members/{user.id}",
                  {"role": random.choice(["admin", "member"])})

    def op_leave(self, conv):
        self.rest("leave", "DELETE",
                  f"/api/chat/conversations/{self.group(conv)}/members/{self.user.id}")


LIVE_EVENTS = ("chat message", "message updated", "message deleted")


class Reader(threading.Thread):
    """A member throughout, following the catch-up procedure in rounds until `stop`."""

    def __init__(self, user, urls, stop):
        super().__init__(name=f"reader {user.label}", daemon=True)
        self.user, self.urls, self.stop = user, urls, stop
        self.replica = Replica(user.id, user.token, label=user.label)
        self.errors = []
        self.rounds = 0

    def run(self):
        try:
            while not self.stop.is_set():
                self.round()
        except Exception:  # noqa: BLE001 - reported by the test
            self.errors.append(f"{self.name}: {traceback.format_exc()}")

    def round(self):
        self.rounds += 1
        sio = socketio.Client(reconnection=False)
        try:
            if random.random() < 0.7:  # live for a while, then dropped at a random moment
                for name in LIVE_EVENTS:
                    sio.on(name, lambda data, name=name: self.replica.apply_live(name, data))
                sio.connect(random.choice(self.urls), auth={"token": self.user.token},
                            transports=["websocket"], wait_timeout=10)
                self.stop.wait(random.uniform(0.05, 1.2))
                if random.random() < 0.5:  # else it catches up while still connected
                    sio.disconnect()
            # Catch up, sometimes dropping half way through (after a few pages).
            max_pages = random.choice([None, None, 1, 2, 3, random.randint(1, 10)])
            self.replica.catch_up(random.choice(self.urls),
                                  limit=random.choice([1, 2, 5, 20, 100]),
                                  max_pages=max_pages, deadline=time.monotonic() + 4)
        finally:
            if sio.connected:
                sio.disconnect()
        self.stop.wait(random.uniform(0, 0.3))

    def final(self):
        """Writers stopped and settled: catch up until every conversation says `more` false."""
        deadline = time.monotonic() + FINAL_CATCH_UP
        while not self.replica.catch_up(random.choice(self.urls), limit=100, deadline=deadline):
            assert time.monotonic() < deadline, f"{self.name}: final catch-up never ended"


EVENT_KEYS = ("type", "user", "by", "title", "role", "up_to")


def dump_feed(cluster, conversation_ids, path):
    """For a failure's diagnosis: each conversation's feed records and document, as JSON."""
    from bson import ObjectId, json_util

    client, db = cluster.db()
    try:
        out = {cid: {"records": list(db.changes.find({"conv": ObjectId(cid)}, {"_id": 0})
                                     .sort("v", 1)),
                     "conversation": db.conversations.find_one({"_id": ObjectId(cid)})}
               for cid in conversation_ids}
    finally:
        client.close()
    path.write_text(json_util.dumps(out, indent=1))
    return path


def evidence(records, conversation):
    """What the feed and the conversation document show of the bugs above. `pending` (the
    feed entries the server writes with each membership, marker or title change, in the
    order written, the latest ~50) may be absent: then only `repeated` is looked for.
    - `reannounced`: event records at a version without a pending entry of its own, among
      the versions the list still covers (an event announced again at a fresh number);
    - `written_late`: pending entries written after one with a higher version;
    - `repeated`: an event with the body of the previous one about the same subject (the
      title, or a user): no change produces that (a rename to the current title, a second
      removal without an addition, a role or marker set to what it is take no version)."""
    pending = [e["v"] for e in (conversation or {}).get("pending") or []]
    found = {"reannounced": [], "written_late": [], "repeated": []}
    if pending:
        covered, low = set(pending), min(pending)
        found["reannounced"] = sorted(r["v"] for r in records if r["kind"] == "event"
                                      and r["v"] >= low and r["v"] not in covered)
        highest = 0
        for version in pending:
            if version < highest:
                found["written_late"].append(version)
            highest = max(highest, version)
    last = {}
    for record in sorted(records, key=lambda r: r["v"]):
        if record["kind"] != "event" or record["type"] == "delivered":
            continue
        subject = "title" if record["type"] == "title_changed" else str(record.get("user"))
        body = tuple(str(record.get(f)) for f in EVENT_KEYS if f != "by")
        if last.get(subject) == body:
            found["repeated"].append(record["v"])
        last[subject] = body
    return found


def bug_counts(audit):
    return dict(sum((Counter({k: len(v) for k, v in found.items()})
                     for found in audit["evidence"].values()), Counter()))


def feed_audit(cluster, conversation_ids):
    """Per conversation: whether the `changes` collection holds exactly one record for each
    of 1..version, the void versions, the bugs' evidence; in all: versions, record kinds."""
    client, db = cluster.db()
    try:
        from bson import ObjectId

        report = {"versions": 0, "records": Counter(), "broken": [], "voids": {},
                  "evidence": {}}
        for cid in conversation_ids:
            oid = ObjectId(cid)
            conversation = db.conversations.find_one({"_id": oid})
            version = conversation["version"]
            records = list(db.changes.find({"conv": oid}))
            numbers = sorted(r["v"] for r in records)
            if numbers != list(range(1, version + 1)):
                missing = sorted(set(range(1, version + 1)) - set(numbers))
                report["broken"].append(f"{cid}: version {version}, {len(numbers)} records, "
                                        f"missing {missing[:20]}")
            report["versions"] += version
            report["records"].update(r["kind"] for r in records)
            report["voids"][cid] = sorted(r["v"] for r in records if r["kind"] == "void")
            report["evidence"][cid] = evidence(records, conversation)
        return report
    finally:
        client.close()


@pytest.mark.parametrize("delay_ms", [150, 1500], ids=["delay150", "delay1500"])
def test_readers_catching_up_at_random_moments_end_with_the_servers_exact_state(
        infrastructure, clusters, delay_ms):
    started = time.monotonic()
    cluster = clusters(delay_ms)
    stop = threading.Event()
    writers, readers = [], []
    try:
        p1, p2 = cluster.urls
        owner, admin, w1, w2 = (User(cluster, n) for n in ("owner", "admin", "w1", "w2"))
        churn = [User(cluster, f"churn{i}") for i in (1, 2, 3)]
        reader_users = [User(cluster, f"reader{i}") for i in (0, 1, 2)]
        steady = [admin, w1, w2, *reader_users]
        groups, direct, failures = [None] * 3, [], []

        def make_group(index):  # in parallel: each recorded change waits the write delay
            try:
                body = call(p1 if index % 2 else p2, owner, "POST", "/api/chat/groups", 201,
                            json={"title": f"group {index}",
                                  "members": [u.id for u in steady + churn[:index]]})
                groups[index] = body["conversation"]["id"]
                call(p1, owner, "PATCH",
                     f"/api/chat/conversations/{groups[index]}/members/{admin.id}",
                     json={"role": "admin"})
            except Exception:  # noqa: BLE001 - reported below
                failures.append(traceback.format_exc())

        def make_direct():
            try:
                direct.append(call(p2, w1, "POST", "/api/chat/send", 201, json={
                    "receiver": reader_users[0].id, "content": "first"})["message"]["conversation"])
            except Exception:  # noqa: BLE001 - reported below
                failures.append(traceback.format_exc())

        run_all([threading.Thread(target=make_group, args=(i,)) for i in range(3)]
                + [threading.Thread(target=make_direct)])
        assert not failures, failures[0]
        direct = direct[0]
        every = [*groups, direct]
        setup = time.monotonic() - started

        known = Known()
        chat = {"send": 6, "edit": 3, "delete": 1, "read": 2}
        manage = {"send": 2, "edit": 1, "delete": 1, "read": 1, "rename": 3, "add": 3,
                  "remove": 3}
        writers = [
            Writer("owner@1 rest", owner, p1, "rest", groups, {**manage, "role": 1}, known,
                   stop, churn=churn, manager=True, owner=True),
            Writer("owner@2 rest", owner, p2, "rest", groups, {**manage, "role": 1}, known,
                   stop, churn=churn, manager=True, owner=True),
            Writer("admin@2 rest", admin, p2, "rest", groups, manage, known, stop,
                   churn=churn, manager=True),
            Writer("admin@1 rest", admin, p1, "rest", groups, manage, known, stop,
                   churn=churn, manager=True),
            Writer("w1@1 socket", w1, p1, "socket", every, {"send": 6, "read": 2}, known,
                   stop, direct_peer=reader_users[0]),
            Writer("w1@2 rest", w1, p2, "rest", every, chat, known, stop,
                   direct_peer=reader_users[0]),
            Writer("w2@2 socket", w2, p2, "socket", groups, {"send": 6, "read": 2}, known,
                   stop),
            Writer("w2@1 rest", w2, p1, "rest", groups, chat, known, stop),
            Writer("reader0@2 rest (direct)", reader_users[0], p2, "rest", [direct], chat,
                   known, stop, direct_peer=w1),
        ]
        for index, user in enumerate(churn):
            transport = "socket" if index == 1 else "rest"
            weights = ({"send": 6, "read": 2, "leave": 0.3} if transport == "socket"
                       else {**chat, "leave": 0.3})
            writers.append(Writer(f"{user.label}@{index % 2 + 1} {transport}", user,
                                  cluster.urls[index % 2], transport, groups, weights, known,
                                  stop))
        readers = [Reader(user, cluster.urls, stop) for user in reader_users]
        for thread in writers + readers:
            thread.start()
        stop.wait(SOAK_SECONDS)
        stop.set()
        for thread in writers + readers:
            thread.join(TIMEOUT + 10)
        stuck = [t.name for t in writers + readers if t.is_alive()]
        assert not stuck, f"threads still running: {stuck}"
        errors = [e for t in writers + readers for e in t.errors]
        assert not errors, "\n".join(errors[:10])

        # Settled: every write acknowledged; a number left open would be voided after this.
        time.sleep(DEADLINE + 0.5)
        for reader in readers:
            reader.final()
        audit = feed_audit(cluster, every)
        outcomes = sum((w.outcomes for w in writers), Counter())
        messages = sum(len(known.by_conversation.get(c, [])) for c in every)
        stats = sum((Counter(r.replica.stats) for r in readers), Counter())
        print(f"\nsync soak delay {delay_ms} ms: setup {setup:.1f}s, whole "
              f"{time.monotonic() - started:.1f}s; {audit['versions']} versions in "
              f"{len(every)} conversations, records {dict(audit['records'])}, events "
              f"bug evidence {bug_counts(audit)}; "
              f"{messages} messages sent; writer outcomes {dict(sorted(outcomes.items()))}; "
              f"readers: {sum(r.rounds for r in readers)} rounds, {dict(stats)}")

        assert not audit["broken"], audit["broken"]  # every version recorded exactly once
        assert outcomes["send 201"] + outcomes["send 200"] > 50, outcomes
        assert audit["records"]["event"] > 20, audit
        violations = [v for r in readers for v in r.replica.violations]
        assert not violations, "\n".join(violations[:20])
        differences = {r.name: r.replica.differences(random.choice(cluster.urls))
                       for r in readers}
        explained = {name: [d for d in found if known_bug(d, audit)]
                     for name, found in differences.items()}
        for name, found in differences.items():
            unexplained = [d for d in found if d not in explained[name]]
            if unexplained:
                dump = dump_feed(cluster, every, infrastructure["tmp"] / f"feed_{delay_ms}.json")
            assert not unexplained, "\n".join([f"{name} differs from the server:",
                                                *unexplained[:20],
                                                f"void versions: {audit['voids']}",
                                                f"the feed and the documents: {dump}"])
        # An event announced twice is a change that did not happen, whatever readers make of
        # it; writes out of order matter when readers end differently (`explained`).
        shown = {cid[-6:]: {k: v for k, v in found.items() if v}
                 for cid, found in audit["evidence"].items() if any(found.values())}
        twice = {cid: found for cid, found in shown.items()
                 if found.get("reannounced") or found.get("repeated")}
        explained = {name: found for name, found in explained.items() if found}
        assert not twice and not explained, (
            f"{KNOWN_BUGS}\nseen in this run (conversation: versions): {shown}\n"
            f"what readers replay differently: {explained}")
    finally:
        stop.set()
        for thread in writers + readers:
            thread.join(5)


RENAME_GROUPS = 12
RENAME_ROUNDS = 3


def poll_changes(base, user, group, done, errors):
    """A member calling `changes` on one group from the version it got last, until `done`:
    each call settles a gap open longer than SYNC_WRITE_DEADLINE."""
    http, since = requests.Session(), 0
    try:
        while not done.is_set():
            response = http.get(f"{base}/api/chat/conversations/{group}/changes",
                                headers=user.headers, params={"since": since}, timeout=TIMEOUT)
            assert response.status_code == 200, response.text
            since = response.json()["version"]
            done.wait(0.05)
    except Exception:  # noqa: BLE001 - reported by the test
        errors.append(traceback.format_exc())


def test_two_renames_at_once_replay_to_the_servers_title(clusters):
    """The case behind the soak's `delay1500` variant, made likely: in each of 12 groups the
    owner renames three times at once (through both processes, each title new) while a
    member keeps calling `changes` on it (settling what outlasts SYNC_WRITE_DEADLINE), for
    three rounds.
    Then a reader catching up from version 0 gets each title change once, and replaying
    `title_changed` in version order ends with the server's title."""
    started = time.monotonic()
    cluster = clusters(1500)
    p1, p2 = cluster.urls
    owner, reader = User(cluster, "owner"), User(cluster, "reader")
    groups, errors = [], []

    def create(index):
        try:
            groups.append(call(cluster.urls[index % 2], owner, "POST", "/api/chat/groups", 201,
                               json={"title": f"race {index}", "members": [reader.id]}
                               )["conversation"]["id"])
        except Exception:  # noqa: BLE001 - reported below
            errors.append(traceback.format_exc())

    run_all([threading.Thread(target=create, args=(i,)) for i in range(RENAME_GROUPS)])
    assert not errors, errors[0]
    titles, mismatched = [], []
    replica = Replica(reader.id, reader.token, label="reader")
    for round_ in range(1, RENAME_ROUNDS + 1):
        done = threading.Event()
        go = threading.Barrier(3 * len(groups))

        def rename(base, group, title):
            try:
                go.wait(10)
                call(base, owner, "PATCH", f"/api/chat/conversations/{group}",
                     json={"title": title})
            except Exception:  # noqa: BLE001 - reported below
                errors.append(traceback.format_exc())

        renames = []
        for group in groups:
            for base, tag in ((p1, "a"), (p2, "b"), (p1, "c")):
                titles.append(f"{tag}{round_} {group}")
                renames.append(threading.Thread(target=rename, args=(base, group, titles[-1])))
        pollers = [threading.Thread(target=poll_changes, args=(
            cluster.urls[i % 2], reader, group, done, errors)) for i, group in enumerate(groups)]
        for thread in pollers:
            thread.start()
        run_all(renames)
        done.set()
        run_all(pollers, start=False)
        assert not errors, errors[0]
        # Settled: the reader catches up; each group's replayed title must be the server's.
        time.sleep(DEADLINE + 0.5)
        assert replica.catch_up(random.choice(cluster.urls),
                                deadline=time.monotonic() + FINAL_CATCH_UP)
        mismatched.extend(f"round {round_}: {d}" for d in replica.differences(p2)
                          if "title" in d)
    announced = Counter(e["title"] for conv in replica.conversations.values()
                        for e in conv.events if e["type"] == "title_changed")
    twice = {title: n for title, n in announced.items() if n > 1}
    print(f"\nrename race: {RENAME_ROUNDS} rounds of {len(titles) // RENAME_ROUNDS} renames "
          f"in {time.monotonic() - started:.1f}s; titles announced twice: {len(twice)}; "
          f"group rounds ending with a replayed title that is not the server's: "
          f"{len(mismatched)}")
    assert not [t for t in titles if announced[t] == 0], "a rename never announced"
    assert not twice, f"title changes announced twice: {twice}"
    assert not mismatched, "\n".join(mismatched[:4] + title_story(cluster, groups, mismatched))


def title_story(cluster, groups, mismatched):
    """For a failure's diagnosis: each group's title records and its `pending` title entries
    in the order the server wrote them."""
    from bson import ObjectId

    client, db = cluster.db()
    try:
        return [f"{group}: feed {[(r['v'], r['kind'], r.get('title')) for r in records]}; "
                f"pending in the order written {[(e['v'], e.get('title')) for e in pending]}"
                for group in groups if any(group in d for d in mismatched)
                for records, pending in [(
                    list(db.changes.find({"conv": ObjectId(group), "v": {"$gt": 2}}).sort("v", 1)),
                    [e for e in db.conversations.find_one({"_id": ObjectId(group)}).get(
                        "pending", []) if e["type"] == "title_changed"])]][:4]
    finally:
        client.close()


def run_all(threads, start=True):
    if start:
        for thread in threads:
            thread.start()
    for thread in threads:
        thread.join(TIMEOUT + 10)
    assert not any(t.is_alive() for t in threads), "threads still running"
