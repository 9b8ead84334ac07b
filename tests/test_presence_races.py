"""Presence races between processes: each change of a user's presence is announced once, and a
user is never left announced online with no socket (nor offline with one).

Processes share the database and nothing else, so a process is modelled as a thread with its
own app context on the one store (the shared `sockets` and `users` collections), and the
database as `db_round_trips`: every store call the presence code makes takes a round trip
and is atomic on its own, as one MongoDB operation on one document is; the threads
interleave between calls. A barrier starts the two processes' calls at the same instant.
The interleavings that a barrier cannot force reliably (one process's whole operation landing
between two calls of another) are played out in one thread, with a hook on the store call.
"""
import threading
import time
from datetime import datetime, timedelta, timezone

import pytest
from bson import ObjectId
from pymongo.errors import ServerSelectionTimeoutError

from chatapp import realtime
from chatapp.chat import heartbeat, presence
from chatapp.extensions import mongo
from chatapp.users import store as user_store

from tests.test_chat_rest import sent

ROUND_TRIP = 0.01  # seconds: a database on the local network
STORE_CALLS = ("add_socket", "remove_socket", "count_sockets", "count_sockets_from",
               "find_user", "claim_presence", "set_last_seen", "stale_servers",
               "server_sockets", "forget_server", "beat_server")
DEAD = "gone-host:4242:deadbeef"
LONG_AGO = datetime.now(timezone.utc) - timedelta(hours=1)


@pytest.fixture
def db_round_trips(monkeypatch):
    """Every store call waits a round trip, then runs alone (one database operation)."""
    serial = threading.Lock()

    def round_trip(call):
        def timed(*args, **kwargs):
            time.sleep(ROUND_TRIP)
            with serial:
                return call(*args, **kwargs)
        return timed

    for name in STORE_CALLS:
        monkeypatch.setattr(user_store, name, round_trip(getattr(user_store, name)))


@pytest.fixture
def peers(app, client, auth, socket_client):
    """Alice, and Bob who shares a conversation with her and watches her presence."""
    alice, bob = auth.user(), auth.user()
    sent(client, alice, bob, "we share a conversation")
    watcher = socket_client(bob)
    watcher.get_received()
    return alice, bob, watcher


def presence_of(sock, user):
    return [e["args"][0]["online"] for e in sock.get_received()
            if e["name"] == "presence" and e["args"][0]["user"] == user.id]


def profile(client, viewer, user):
    return client.get(f"/api/user/{user.id}", headers=viewer.headers).get_json()


def announced(app, user):
    """The presence last claimed in the user's document (None if never)."""
    with app.app_context():
        return mongo.db.users.find_one({"_id": ObjectId(user.id)}).get("presence_announced")


def as_processes(app, *calls):
    """Run each call in a thread of its own (a process), all at once; re-raise a failure."""
    failures = []

    def run(call):
        try:
            with app.app_context():
                call()
        except BaseException as exc:  # noqa: BLE001 - reported below
            failures.append(exc)

    threads = [threading.Thread(target=run, args=(call,)) for call in calls]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert not any(thread.is_alive() for thread in threads)
    if failures:
        raise failures[0]


def at_once(monkeypatch, name, match, parties=2):
    """The store calls `name` whose arguments satisfy `match` return in every process at the
    same instant."""
    barrier = threading.Barrier(parties, timeout=10)
    real = getattr(user_store, name)

    def synchronised(*args, **kwargs):
        result = real(*args, **kwargs)
        if match(*args):
            barrier.wait()
        return result

    monkeypatch.setattr(user_store, name, synchronised)


def connect(user, sid):
    presence.socket_connected(ObjectId(user.id), sid, {"jti": f"jti-{sid}", "sid": "login"})


def disconnect(user, sid):
    presence.socket_disconnected(ObjectId(user.id), sid)


def test_first_sockets_on_two_processes_at_once_announce_online_once(
        app, client, peers, db_round_trips, monkeypatch):
    alice, bob, watcher = peers
    for round_ in range(3):
        with monkeypatch.context() as m:
            # both sockets recorded, then both counted
            at_once(m, "add_socket", lambda sid, user, *_: user == ObjectId(alice.id))
            as_processes(app, lambda: connect(alice, f"a{round_}"),
                         lambda: connect(alice, f"b{round_}"))
        assert presence_of(watcher, alice) == [True]
        assert profile(client, bob, alice)["online"] is True and announced(app, alice) is True
        with app.app_context():
            disconnect(alice, f"a{round_}")
            disconnect(alice, f"b{round_}")
        assert presence_of(watcher, alice) == [False]


def test_last_sockets_on_two_processes_at_once_announce_offline_once(
        app, client, peers, db_round_trips, monkeypatch):
    alice, bob, watcher = peers
    for round_ in range(3):
        with app.app_context():
            connect(alice, f"a{round_}")
            connect(alice, f"b{round_}")
        assert presence_of(watcher, alice) == [True]
        with monkeypatch.context() as m:
            # both sockets removed, then both counted
            at_once(m, "remove_socket", lambda sid: sid in (f"a{round_}", f"b{round_}"))
            as_processes(app, lambda: disconnect(alice, f"a{round_}"),
                         lambda: disconnect(alice, f"b{round_}"))
        assert presence_of(watcher, alice) == [False]
        seen = profile(client, bob, alice)
        assert seen["online"] is False and seen["last_seen"] and announced(app, alice) is False


def test_two_sweepers_announce_a_dead_process_users_offline_once(app, client, auth, peers,
                                                                  db_round_trips, monkeypatch):
    alice, bob, watcher = peers
    carol = auth.user()
    sent(client, carol, bob, "me too")
    with app.app_context():
        for user, sids in ((alice, ("s1", "s2")), (carol, ("s3",))):
            for sid in sids:  # recorded and announced by the process that died
                user_store.add_socket(sid, ObjectId(user.id), DEAD, "jti", "login")
            user_store.claim_presence(ObjectId(user.id), True)
        user_store.beat_server(DEAD, LONG_AGO)
        heartbeat.beat()
    watcher.get_received()

    swept = []
    barrier = threading.Barrier(2, timeout=10)

    def sweeper():
        barrier.wait()  # two live processes sweep at the same instant
        swept.append(heartbeat.sweep())

    as_processes(app, sweeper, sweeper)

    events = [e["args"][0] for e in watcher.get_received() if e["name"] == "presence"]
    assert sorted((e["user"], e["online"]) for e in events) == \
        sorted([(alice.id, False), (carol.id, False)])
    assert all(event["last_seen"] for event in events)
    assert swept == [[DEAD], [DEAD]]  # both did sweep it: the claim, not luck, kept it once
    for user in (alice, carol):
        assert profile(client, bob, user)["online"] is False and announced(app, user) is False
    with app.app_context():
        assert mongo.db.sockets.count_documents({"server": DEAD}) == 0


def on_first(monkeypatch, name, when, meanwhile):
    """Run `meanwhile()` (another process's whole operation) just before the first store call
    `name` whose arguments satisfy `when`."""
    real = getattr(user_store, name)
    pending = [meanwhile]

    def hooked(*args, **kwargs):
        if pending and when(*args):
            pending.pop()()
        return real(*args, **kwargs)

    monkeypatch.setattr(user_store, name, hooked)


def test_a_socket_gone_before_its_connect_claims_does_not_leave_the_user_online(
        app, client, peers, monkeypatch):
    """The connect counted its socket; the socket closed (the client gave up mid-handshake)
    and that disconnect found nothing to announce; then the connect claimed `online`."""
    alice, bob, watcher = peers
    with app.app_context():
        connect(alice, "earlier")  # she has been online before: a known "offline"
        disconnect(alice, "earlier")
        assert presence_of(watcher, alice) == [True, False]
        on_first(monkeypatch, "claim_presence", lambda user, online: online,
                 lambda: disconnect(alice, "s1"))
        connect(alice, "s1")
    # she was online for an instant, and is not left online
    assert presence_of(watcher, alice) == [True, False]
    assert profile(client, bob, alice)["online"] is False and announced(app, alice) is False


def test_a_connect_during_a_last_disconnect_does_not_leave_the_user_offline(
        app, client, peers, monkeypatch):
    """Process A's last socket closed and A counted none; process B connected the user
    (already announced online: nothing to say); then A claimed `offline`."""
    alice, bob, watcher = peers
    with app.app_context():
        connect(alice, "on-a")
        assert presence_of(watcher, alice) == [True]
        on_first(monkeypatch, "claim_presence", lambda user, online: not online,
                 lambda: connect(alice, "on-b"))
        disconnect(alice, "on-a")
    assert presence_of(watcher, alice)[-1] is True  # she is online, with B's socket
    assert profile(client, bob, alice)["online"] is True and announced(app, alice) is True
    with app.app_context():
        monkeypatch.undo()
        disconnect(alice, "on-b")  # and her last socket closing is still announced
    assert presence_of(watcher, alice) == [False]


def test_a_refused_socket_counted_by_another_process_does_not_leave_the_user_online(
        app, client, auth, peers, monkeypatch):
    """A's connect is over the per-address cap, but before A withdraws its socket, B's
    disconnect of the user's last other socket counts it and announces nothing."""
    alice, bob, watcher = peers
    app.config["MAX_SOCKETS_PER_ADDRESS"] = 1
    carol = auth.user()
    with app.app_context():
        presence.socket_connected(ObjectId(carol.id), "carol", {"jti": "j", "sid": "l"},
                                  "10.0.0.1")
        connect(alice, "on-b")
        assert presence_of(watcher, alice) == [True]
        on_first(monkeypatch, "count_sockets_from", lambda address: True,
                 lambda: disconnect(alice, "on-b"))
        with pytest.raises(presence.RateLimited):
            presence.socket_connected(ObjectId(alice.id), "on-a", {"jti": "j", "sid": "l"},
                                      "10.0.0.1")
    assert presence_of(watcher, alice) == [False]
    assert profile(client, bob, alice)["online"] is False and announced(app, alice) is False


def test_a_connect_the_database_fails_half_way_leaves_no_socket_behind(
        app, client, peers, monkeypatch):
    """The socket was recorded, then the database failed: the connection is refused
    (`unavailable`), and its record must not keep the user online."""
    alice, bob, watcher = peers
    with app.app_context():  # she has been online before: her presence is a known "offline"
        connect(alice, "earlier")
        disconnect(alice, "earlier")
    assert presence_of(watcher, alice) == [True, False]
    real = user_store.count_sockets
    blips = [ServerSelectionTimeoutError("a blip")]

    def count_after_a_blip(user_id):  # the first call, right after the socket's insert, fails
        if blips:
            raise blips.pop()
        return real(user_id)

    monkeypatch.setattr(user_store, "count_sockets", count_after_a_blip)
    with app.app_context():
        with pytest.raises(ServerSelectionTimeoutError):
            connect(alice, "s1")
    assert profile(client, bob, alice)["online"] is False
    with app.app_context():
        assert mongo.db.sockets.count_documents({"user_id": ObjectId(alice.id)}) == 0
    assert presence_of(watcher, alice) == []


def test_the_last_announcement_to_reach_peers_is_the_current_presence(app, client, peers,
                                                                     monkeypatch):
    """A claimed `offline`; before its event went out, B connected the user, claimed
    `online` and announced it: A's `offline` arrives last, so A repeats `online`."""
    alice, bob, watcher = peers
    real_emit = realtime.emit_to_users
    pending = [lambda: connect(alice, "on-b")]

    def slow_emit(event, data, *args, **kwargs):
        if event == "presence" and data["online"] is False and pending:
            pending.pop()()
        return real_emit(event, data, *args, **kwargs)

    with app.app_context():
        connect(alice, "on-a")
        assert presence_of(watcher, alice) == [True]
        monkeypatch.setattr(realtime, "emit_to_users", slow_emit)
        disconnect(alice, "on-a")
    events = presence_of(watcher, alice)
    assert events[-1] is True, events
    assert profile(client, bob, alice)["online"] is True and announced(app, alice) is True
