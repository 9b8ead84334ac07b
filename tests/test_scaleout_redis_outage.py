"""A Redis outage under the scaled-out deployment of tests/test_scaleout.py (issue 12): two
gunicorn processes sharing Redis (the Socket.IO message queue and the rate-limit counters)
and one database. Its `cluster` fixture starts (and stops by PID) a cluster of this
module's own; the Redis server it started is found by its port and its own `INFO` pid,
killed by that PID, and started again on the same port by this module (stopped by PID).

While Redis is down: sends over REST and over a socket are stored and acknowledged within
a few seconds, the receiver's sockets on the sending process get them live, both processes
keep answering. Once Redis is back (same port, nothing restarted in chatapp), an event sent
through one process reaches the sockets of the other again within a bounded time, a
logout-all made during the outage closes the user's socket on the other process, and the
change feed gives the receiver's client on the other process what it missed live.

A frozen Redis (SIGSTOP: it accepts connections and answers nothing) is tested on the
message-queue manager alone (chatapp.queue_health): in the cluster, the rate-limit storage
would hold each request for its own timeout.
"""
import os
import re
import signal
import time
from pathlib import Path

import redis
import requests

from chatapp import queue_health
from tests.live import free_port
from tests.test_scaleout import REDIS, Service, User, cluster, pytestmark  # noqa: F401
from tests.test_scaleout_groups import Socket, call

SEND_BOUND = 3.0  # seconds: a send during the outage is acknowledged within this
RECOVERY_BOUND = 15.0  # seconds after Redis answers again: cross-process delivery is back
# How long Redis stays down before it is started again: long enough for a listener that
# backs off exponentially (1, 2, 4, ... 60 s) to be asleep for longer than RECOVERY_BOUND.
OUTAGE_SECONDS = float(os.environ.get("REDIS_OUTAGE_SECONDS", "35"))


def redis_port(cluster):  # noqa: F811 - the fixture's value
    url = cluster.apps[0].env["SOCKETIO_MESSAGE_QUEUE"]
    return int(re.match(r"redis://127\.0\.0\.1:(\d+)/", url).group(1))


def redis_client(port, timeout=2):
    # From a URL, as the app builds its clients: a refused connection fails at once (built
    # from keywords, redis-py 8 retries it for about 4 s).
    return redis.Redis.from_url(f"redis://127.0.0.1:{port}/0", socket_timeout=timeout,
                                socket_connect_timeout=timeout)


def redis_pid(port):
    """The PID of the redis-server listening on `port`, as it reports it; checked to be a
    child of this test process (the fixture started it) titled with that port, so only the
    cluster's own Redis is ever signalled."""
    pid = int(redis_client(port).info("server")["process_id"])
    stat = Path(f"/proc/{pid}/stat").read_text()
    parent = int(stat.rsplit(")", 1)[1].split()[1])
    title = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode()
    assert parent == os.getpid() and title.endswith(f":{port}"), (parent, title)
    return pid


def redis_answers(port):
    try:
        return redis_client(port, timeout=0.5).ping()
    except redis.RedisError:
        return False


def kill_redis(port):
    pid = redis_pid(port)
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while redis_answers(port) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not redis_answers(port), "redis-server still answers after SIGKILL"


def start_redis(port, logdir):
    service = Service("redis-restarted", [REDIS, "--port", str(port), "--bind", "127.0.0.1",
                                          "--save", "", "--appendonly", "no",
                                          "--dir", str(logdir)], logdir, dict(os.environ))
    service.start()
    return service.wait_until(lambda: redis_answers(port), timeout=15)


def timed(function, *args, **kwargs):
    started = time.monotonic()
    result = function(*args, **kwargs)
    return result, time.monotonic() - started


def rest_send(base, sender, receiver, content):
    response = requests.post(base + "/api/chat/send", headers=sender.headers, timeout=20,
                             json={"receiver": receiver.id, "content": content})
    assert response.status_code == 201, response.text
    return response.json()["message"]


def history_ids(base, viewer, peer):
    messages = call(base, viewer, "GET", f"/api/chat/messages/{viewer.id}/{peer.id}", 200,
                    params={"limit": 200})
    return [m["id"] for m in messages]


def changes_since(base, viewer, conversation, since):
    """Message ids of `GET .../changes?since=` followed until `more` is false (bounded)."""
    ids = []
    for _ in range(50):
        page = call(base, viewer, "GET", f"/api/chat/conversations/{conversation}/changes", 200,
                    params={"since": since, "limit": 100})
        ids += [m["id"] for m in page["messages"]]
        assert page["version"] >= since
        since = page["version"]
        if not page["more"]:
            return ids
    raise AssertionError("changes: still `more` after 50 pages")


def healthy(base):
    response, took = timed(requests.get, base + "/healthz", timeout=5)
    return response.status_code == 200 and took < SEND_BOUND


def redis_errors(base):
    """This process's `chatapp_redis_errors_total{component="message_queue"}`."""
    text = requests.get(base + "/metrics", timeout=5).text
    found = re.search(r'^chatapp_redis_errors_total\{component="message_queue"\} (\S+)$',
                      text, flags=re.M)
    return float(found.group(1)) if found else 0.0


def test_a_redis_outage_degrades_to_per_process_delivery_and_recovers(cluster, tmp_path):
    port = redis_port(cluster)
    alice, bob, carol = User(cluster), User(cluster), User(cluster)
    sockets, restarted = [], None
    try:
        def connect(base, user, label):
            sockets.append(Socket(base, user, label))
            return sockets[-1]

        alice1 = connect(cluster.p1, alice, "alice@1")
        alice2 = connect(cluster.p2, alice, "alice@2")
        bob1 = connect(cluster.p1, bob, "bob@1")  # the sending socket
        bob2 = connect(cluster.p2, bob, "bob@2")  # the sender's other socket
        carol2 = connect(cluster.p2, carol, "carol@2")  # logs out everywhere during the outage

        # Before: a REST send on process 1 reaches alice's socket on process 2.
        first = rest_send(cluster.p1, bob, alice, "before the outage")
        for sock in (alice1, alice2, bob1, bob2):
            sock.wait_message(first["id"])
        errors_before = redis_errors(cluster.p1)
        held_version = first["version"]  # what alice's client on process 2 holds

        kill_redis(port)
        down_at = time.monotonic()

        # REST on process 1: stored, answered promptly, live on process 1's sockets.
        by_rest, rest_took = timed(rest_send, cluster.p1, bob, alice, "REST while Redis is down")
        assert rest_took < SEND_BOUND, f"REST send took {rest_took:.2f}s with Redis down"
        for sock in (alice1, bob1):
            sock.wait_message(by_rest["id"], timeout=SEND_BOUND)
        # A socket send on process 1: the ack comes promptly, alice@1 gets it live.
        ack, socket_took = timed(bob1.sio.call, "chat message",
                                 {"receiver": alice.id, "content": "socket while Redis is down"},
                                 timeout=20)
        assert ack["ok"] is True, ack
        assert socket_took < SEND_BOUND, f"socket send took {socket_took:.2f}s with Redis down"
        by_socket = ack["message"]
        alice1.wait_message(by_socket["id"], timeout=SEND_BOUND)
        # And the other way: a send through process 2 reaches process 2's sockets.
        from_p2, p2_took = timed(rest_send, cluster.p2, bob, alice, "process 2, Redis down")
        assert p2_took < SEND_BOUND, f"REST send on process 2 took {p2_took:.2f}s"
        for sock in (alice2, bob2):
            sock.wait_message(from_p2["id"], timeout=SEND_BOUND)
        # Stored, in order, readable through either process.
        for base in (cluster.p1, cluster.p2):
            ids = history_ids(base, alice, bob)
            assert ids[:3] == [from_p2["id"], by_socket["id"], by_rest["id"]], base
        assert by_rest["seq"] < by_socket["seq"] < from_p2["seq"]
        # carol logs out of every device through process 1: answered at once; her socket on
        # process 2 cannot be told now (it is, once Redis is back).
        _, logout_took = timed(call, cluster.p1, carol, "POST", "/api/user/logout-all", 200)
        assert logout_took < SEND_BOUND, f"logout-all took {logout_took:.2f}s"
        print(f"\nRedis down: REST send {rest_took * 1000:.0f} ms, socket send "
              f"{socket_took * 1000:.0f} ms, REST on process 2 {p2_took * 1000:.0f} ms")

        # The outage lasts; the processes keep serving and keep sending.
        during = [by_rest, by_socket, from_p2]
        n = 0
        while time.monotonic() - down_at < OUTAGE_SECONDS:
            for base in (cluster.p1, cluster.p2):
                assert healthy(base), base
            message, took = timed(rest_send, cluster.p1, bob, alice, f"still down {n}")
            assert took < SEND_BOUND, f"REST send {n} took {took:.2f}s with Redis down"
            alice1.wait_message(message["id"], timeout=SEND_BOUND)
            during.append(message)
            n += 1
            time.sleep(1)
        for app in cluster.apps:
            assert app.running(), app.log()
        assert redis_errors(cluster.p1) > errors_before  # the metric saw the outage

        # Redis again, on the same port; chatapp is not restarted.
        restarted = start_redis(port, tmp_path)
        back_at = time.monotonic()
        deadline = back_at + RECOVERY_BOUND
        recovered = {}
        n = 0
        while len(recovered) < 2 and time.monotonic() < deadline:
            # Each direction: a message sent through one process, watched for on the other.
            for base, watcher, direction in ((cluster.p1, alice2, "1->2"),
                                             (cluster.p2, alice1, "2->1")):
                if direction in recovered:
                    continue
                message = rest_send(base, bob, alice, f"after the outage {direction} {n}")
                try:
                    watcher.wait_message(message["id"], timeout=0.5)
                except AssertionError:
                    continue
                recovered[direction] = time.monotonic() - back_at
            n += 1
        assert len(recovered) == 2, (
            f"cross-process delivery not back {RECOVERY_BOUND:.0f}s after Redis returned: "
            f"only {recovered}")
        print(f"Redis back: cross-process delivery again after "
              + ", ".join(f"{d} {s:.1f}s" for d, s in sorted(recovered.items())))
        # The logout that Redis could not carry reaches process 2 now: carol's socket closes.
        while carol2.sio.connected and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not carol2.sio.connected, "carol's socket on process 2 stayed open"
        print(f"Redis back: carol's socket on process 2 closed after "
              f"{time.monotonic() - back_at:.1f}s")

        # What alice's socket on process 2 missed live, the change feed gives it, through
        # process 2, from the version it held: every message of the outage, once.
        missed = [m["id"] for m in during if not alice2.messages(m["id"])]
        caught_up = changes_since(cluster.p2, alice, first["conversation"], held_version)
        outage_ids = [m["id"] for m in during]
        assert [i for i in caught_up if i in outage_ids] == outage_ids
        assert len(caught_up) == len(set(caught_up))
        print(f"change feed: {len(missed)} of {len(during)} outage-time messages missed live "
              f"on process 2, all {len(outage_ids)} returned by changes since {held_version}")
    finally:
        for sock in sockets:
            sock.close()
        if restarted is not None:
            restarted.stop()


def test_a_frozen_redis_holds_a_publish_briefly_then_is_skipped_until_it_answers(tmp_path,
                                                                                  monkeypatch):
    """A Redis that accepts connections but answers nothing (SIGSTOP: a frozen host, a
    partition): the first publish gives up within the manager's timeouts, the next ones do
    not wait at all, and a disconnect request held back is published once Redis answers."""
    monkeypatch.setattr(queue_health, "REPLAY_AFTER", (0,))  # its probe task ends after that
    port = free_port()
    service = Service("redis-frozen", [REDIS, "--port", str(port), "--bind", "127.0.0.1",
                                       "--save", "", "--appendonly", "no",
                                       "--dir", str(tmp_path)], tmp_path, dict(os.environ))
    service.start()
    listener = manager = None
    try:
        service.wait_until(lambda: redis_answers(port), timeout=15)
        manager = queue_health.GuardedRedisManager(f"redis://127.0.0.1:{port}/0",
                                                   write_only=True)
        listener = redis_client(port, timeout=5).pubsub(ignore_subscribe_messages=True)
        listener.subscribe(manager.channel)
        emit = {"method": "emit", "event": "x", "data": [1], "room": "r", "namespace": "/"}
        manager._publish(emit)
        assert not manager.down

        os.kill(service.proc.pid, signal.SIGSTOP)
        try:
            _, first = timed(manager._publish, emit)
            assert manager.down
            _, second = timed(manager._publish, emit)
            manager._publish({"method": "disconnect", "sid": "s1", "namespace": "/",
                              "host_id": "test"})
        finally:
            os.kill(service.proc.pid, signal.SIGCONT)
        bound = queue_health.CONNECT_TIMEOUT + queue_health.REPLY_TIMEOUT
        assert first < bound + 0.5, f"a publish to a frozen Redis took {first:.2f}s"
        assert second < 0.05, f"a publish while down took {second:.3f}s"

        deadline = time.monotonic() + 10
        while manager.down and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not manager.down, "Redis answers again, the manager still thinks it is down"
        disconnects = []
        while not disconnects and time.monotonic() < deadline:
            message = listener.get_message(timeout=0.2)
            if message and b'"disconnect"' in message["data"]:
                disconnects.append(message["data"])
        assert disconnects and b'"s1"' in disconnects[0]
        print(f"\nfrozen Redis: first publish {first:.2f}s, next {second * 1000:.1f} ms")
    finally:
        if listener is not None:
            listener.close()
        if manager is not None and manager._publisher is not None:
            manager._publisher.close()
        service.stop()
