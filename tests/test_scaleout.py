"""Scale-out, for real: two gunicorn processes (deploy/gunicorn.conf.py) behind nginx
(deploy/nginx.conf, ports substituted in a temporary copy), sharing Redis (Socket.IO
message queue and rate-limit storage) and one database.

No MongoDB server can be installed here, so the processes share the embedded store
served over MongoDB's wire protocol (tests/mongo_wire.py); the app talks to it with
PyMongo exactly as to MongoDB. Everything started here is stopped by PID (its process
group) at the end of the module, even when a test fails.
"""
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import redis
import requests
import socketio

from tests.live import ROOT, free_port

SYSTEM_PATH = os.environ.get("PATH", "") + os.pathsep + "/usr/sbin:/sbin"
NGINX = shutil.which("nginx", path=SYSTEM_PATH)
REDIS = shutil.which("redis-server", path=SYSTEM_PATH)
PASSWORD = "correct horse battery"
SECRET = "scaleout-test-secret-key-that-is-long-enough-0123456789"
HEARTBEAT, STALE = 1, 4  # seconds: presence of a killed process clears within ~STALE + 2 HEARTBEAT

pytestmark = [
    pytest.mark.live,
    pytest.mark.skipif(NGINX is None or REDIS is None,
                       reason="needs nginx and redis-server on this machine "
                              "(`apt-get install nginx redis-server`; .ci/run installs both)"),
]


class Service:
    """A process started in its own process group, so it is stopped with its children."""

    def __init__(self, name, command, logdir, env=None):
        self.name, self.command, self.env = name, command, env or dict(os.environ)
        self.log_path = logdir / f"{name}.log"
        self.proc = None

    def start(self):
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(self.command, cwd=ROOT, env=self.env, stdout=log,
                                         stderr=subprocess.STDOUT, start_new_session=True)
        return self

    def wait_until(self, ready, timeout=30):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited ({self.proc.returncode}): {self.log()}")
            try:
                if ready():
                    return self
            except Exception:  # noqa: BLE001 - not up yet
                pass
            time.sleep(0.1)
        raise RuntimeError(f"{self.name} not ready in {timeout}s: {self.log()}")

    def log(self):
        return self.log_path.read_text(errors="replace")[-3000:] if self.log_path.exists() else ""

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def kill(self, sig=signal.SIGKILL):
        try:
            os.killpg(self.proc.pid, sig)
        except ProcessLookupError:
            pass

    def stop(self):
        if not self.running():
            self.kill()  # children of a group leader that already exited
            return
        self.kill(signal.SIGTERM)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.kill()
            self.proc.wait(5)


def http_ok(url):
    return lambda: requests.get(url, timeout=2).status_code == 200


def nginx_config(tmp, nginx_port, app_ports):
    """deploy/nginx.conf with this run's ports, included from a main config living in `tmp`."""
    site = (ROOT / "deploy" / "nginx.conf").read_text()
    upstreams = re.findall(r"^\s*server 127\.0\.0\.1:\d+", site, flags=re.M)
    assert len(upstreams) == len(app_ports), "deploy/nginx.conf should list two app processes"
    for line, port in zip(upstreams, app_ports):
        site = site.replace(line, re.sub(r":\d+", f":{port}", line), 1)
    site, listens = re.subn(r"listen 80;", f"listen 127.0.0.1:{nginx_port};", site)
    assert listens == 1
    site, logs = re.subn(r"access_log \S+ chatapp;", f"access_log {tmp}/nginx-access.log chatapp;",
                         site)
    assert logs == 1
    (tmp / "chatapp.conf").write_text(site)
    temp_paths = "\n".join(f"    {kind}_temp_path {tmp}/{kind}_temp;"
                           for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    (tmp / "nginx.conf").write_text(f"""
daemon off;
master_process off;
pid {tmp}/nginx.pid;
error_log {tmp}/nginx-error.log warn;
events {{ worker_connections 512; }}
http {{
    access_log {tmp}/nginx-access.log;
{temp_paths}
    include {tmp}/chatapp.conf;
}}
""")
    return tmp / "nginx.conf"


class Cluster:
    def __init__(self, apps, nginx_url, app_urls, db_url=None):
        self.apps, self.nginx, self.p1, self.p2 = apps, nginx_url, app_urls[0], app_urls[1]
        self.db_url = db_url  # the shared database, for checks no API call can make
        self.nginx_log = None


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("scaleout")
    services = []

    def start(service, ready, timeout=30):
        services.append(service.start())
        return service.wait_until(ready, timeout)

    try:
        db_port, redis_port, nginx_port = free_port(), free_port(), free_port()
        app_ports = [free_port(), free_port()]
        start(Service("mongo_wire", [sys.executable, "-m", "tests.mongo_wire", "--port",
                                     str(db_port)], tmp),
              lambda: b"serving" in (tmp / "mongo_wire.log").read_bytes())
        start(Service("redis", [REDIS, "--port", str(redis_port), "--bind", "127.0.0.1",
                                "--save", "", "--appendonly", "no", "--dir", str(tmp)], tmp),
              lambda: redis.Redis(port=redis_port, socket_timeout=1).ping())
        apps = []
        for index, port in enumerate(app_ports, 1):
            env = {**os.environ, "CHATAPP_ENV": "production", "secretKey": SECRET,
                   "ASYNC_MODE": "eventlet", "HOST": "127.0.0.1", "PORT": str(port),
                   "MONGO_DB_URL": f"mongodb://127.0.0.1:{db_port}/chatapp_scaleout",
                   "SOCKETIO_MESSAGE_QUEUE": f"redis://127.0.0.1:{redis_port}/0",
                   "RATELIMIT_STORAGE_URI": f"redis://127.0.0.1:{redis_port}/1",
                   "RATELIMIT_SEND": "1000 per minute", "TRUSTED_PROXIES": "1",
                   # Many test users from one address (limits per address are tested elsewhere).
                   "RATELIMIT_REGISTER": "1000 per hour", "RATELIMIT_LOGIN": "1000 per minute",
                   "PRESENCE_HEARTBEAT_SECONDS": str(HEARTBEAT),
                   "PRESENCE_STALE_SECONDS": str(STALE), "BCRYPT_ROUNDS": "4",
                   "LOG_LEVEL": "WARNING", "ACCESS_LOG": "0", "PYTHONUNBUFFERED": "1"}
            env.pop("MONGO_URI", None)
            command = [sys.executable, "-m", "gunicorn", "-c", "deploy/gunicorn.conf.py", "wsgi:app"]
            apps.append(start(Service(f"app{index}", command, tmp, env),
                              http_ok(f"http://127.0.0.1:{port}/healthz")))
        nginx_url = f"http://127.0.0.1:{nginx_port}"
        conf = nginx_config(tmp, nginx_port, app_ports)
        start(Service("nginx", [NGINX, "-p", str(tmp), "-e", str(tmp / "nginx-error.log"),
                                "-c", str(conf)], tmp),
              http_ok(nginx_url + "/healthz"))
        made = Cluster(apps, nginx_url, [f"http://127.0.0.1:{p}" for p in app_ports],
                       f"mongodb://127.0.0.1:{db_port}/chatapp_scaleout")
        made.nginx_log = tmp / "nginx-access.log"
        yield made
    finally:
        for service in reversed(services):
            service.stop()


class User:
    _names = iter(range(1, 10_000))

    def __init__(self, cluster):
        self.cluster = cluster
        self.name = f"scale{next(self._names)}_{os.getpid()}"
        self.email = f"{self.name}@example.com"
        response = requests.post(cluster.p1 + "/api/user/register", timeout=10, json={
            "username": self.name, "email": self.email, "password": PASSWORD})
        assert response.status_code == 201, response.text
        self.login()

    def login(self):
        """Log in through process 2 (registered through process 1: one shared database)."""
        response = requests.post(self.cluster.p2 + "/api/user/login", timeout=10,
                                 json={"email": self.email, "password": PASSWORD})
        assert response.status_code == 200, response.text
        body = response.json()
        self.id, self.token = body["userId"], body["access_token"]
        self.headers = {"Authorization": f"Bearer {self.token}"}

    def profile(self, base_url, viewer):
        response = requests.get(f"{base_url}/api/user/{self.id}", headers=viewer.headers, timeout=10)
        assert response.status_code == 200, response.text
        return response.json()


class Peer:
    """A python-socketio client that records `chat message` and `presence` events."""

    def __init__(self, url, user=None, transports=("websocket",), headers=None):
        self.events = queue.Queue()
        self.closed = threading.Event()
        self.sio = socketio.Client(reconnection=False)
        for name in ("chat message", "presence"):
            self.sio.on(name, lambda data, name=name: self.events.put((name, data)))
        self.sio.on("disconnect", lambda *args: self.closed.set())
        auth = {"token": user.token} if user is not None and headers is None else None
        self.sio.connect(url, auth=auth, headers=headers or {}, transports=list(transports),
                         wait_timeout=10)

    def wait_for(self, name, match=lambda data: True, timeout=10):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                event, data = self.events.get(timeout=max(0.05, deadline - time.monotonic()))
            except queue.Empty:
                break
            if event == name and match(data):
                return data
        raise AssertionError(f"no {name!r} event matching within {timeout}s")

    def drain(self):
        seen = []
        while not self.events.empty():
            seen.append(self.events.get_nowait())
        return seen

    def send(self, receiver, content):
        return self.sio.call("chat message", {"receiver": receiver.id, "content": content},
                             timeout=10)

    def close(self):
        if self.sio.connected:
            self.sio.disconnect()


@pytest.fixture
def peers():
    """`peers(url, user, ...)` connects; every peer is closed at the end of the test."""
    made = []

    def connect(*args, **kwargs):
        made.append(Peer(*args, **kwargs))
        return made[-1]

    yield connect
    for peer in made:
        peer.close()


@pytest.fixture(scope="module")
def alice_bob(cluster):
    alice, bob = User(cluster), User(cluster)
    response = requests.post(cluster.p2 + "/api/chat/send", headers=bob.headers, timeout=10,
                             json={"receiver": alice.id, "content": "hello"})
    assert response.status_code == 201  # now they share a conversation: presence peers
    return alice, bob


def test_a_socket_message_through_process_2_reaches_a_socket_on_process_1(cluster, alice_bob,
                                                                          peers):
    alice, bob = alice_bob
    on_p1 = peers(cluster.p1, alice)
    on_p2 = peers(cluster.p2, bob)
    ack = on_p2.send(alice, "from process 2, by socket")
    assert ack["ok"] is True
    assert on_p1.wait_for("chat message", lambda m: m["id"] == ack["message"]["id"]) == ack["message"]


def test_a_rest_message_through_process_2_reaches_a_socket_on_process_1(cluster, alice_bob, peers):
    alice, bob = alice_bob
    on_p1 = peers(cluster.p1, alice)
    response = requests.post(cluster.p2 + "/api/chat/send", headers=bob.headers, timeout=10,
                             json={"receiver": alice.id, "content": "from process 2, by REST"})
    assert response.status_code == 201
    message = response.json()["message"]
    assert on_p1.wait_for("chat message", lambda m: m["id"] == message["id"]) == message


def test_the_send_budget_is_shared_by_the_processes(cluster, alice_bob):
    alice, bob = alice_bob
    remaining = []
    for base in (cluster.p1, cluster.p2, cluster.p1):
        response = requests.post(base + "/api/chat/send", headers=bob.headers, timeout=10,
                                 json={"receiver": alice.id, "content": "counted once"})
        assert response.status_code == 201
        remaining.append(int(response.headers["X-RateLimit-Remaining"]))
    assert remaining == [remaining[0], remaining[0] - 1, remaining[0] - 2]


def test_through_nginx_a_client_upgrades_to_websocket(cluster, alice_bob, peers):
    alice, bob = alice_bob
    browser_like = peers(cluster.nginx, alice, transports=("polling", "websocket"))
    deadline = time.monotonic() + 10
    while browser_like.sio.transport() != "websocket" and time.monotonic() < deadline:
        time.sleep(0.05)
    assert browser_like.sio.transport() == "websocket"
    ack = peers(cluster.p2, bob).send(alice, "through nginx, upgraded")
    assert browser_like.wait_for("chat message", lambda m: m["id"] == ack["message"]["id"])


def test_through_nginx_an_attachment_of_several_mib_is_uploaded_and_read_elsewhere(
        cluster, alice_bob):
    """deploy/nginx.conf lets the upload route through past the 1m body limit of the
    others; the file, stored by one process, is served by the other to the peer."""
    alice, bob = alice_bob
    data = os.urandom(3 * 1024 * 1024)
    response = requests.post(cluster.nginx + "/api/chat/attachments", headers=bob.headers,
                             files={"file": ("big.bin", data)}, timeout=30)
    assert response.status_code == 201, response.text
    attachment = response.json()["attachment"]
    sent = requests.post(cluster.p1 + "/api/chat/send", headers=bob.headers, timeout=10,
                         json={"receiver": alice.id, "content": "file",
                               "attachments": [attachment["id"]]})
    assert sent.status_code == 201, sent.text
    got = requests.get(cluster.p2 + sent.json()["message"]["attachments"][0]["url"], timeout=30)
    assert got.status_code == 200 and got.content == data
    other_route = requests.post(cluster.nginx + "/api/chat/send", timeout=10,
                                headers={**bob.headers, "Content-Type": "application/json"},
                                data=b"x" * (2 * 1024 * 1024))
    assert other_route.status_code == 413  # the other routes keep nginx's 1m


def test_through_nginx_the_original_access_token_header_is_accepted(cluster, alice_bob, peers):
    alice, _ = alice_bob
    original = peers(cluster.nginx, headers={"access_token": alice.token})
    assert original.sio.call("join", alice.id, timeout=10) == {"ok": True}


def test_through_nginx_a_token_in_the_url_is_masked_in_the_access_log(cluster, alice_bob):
    alice, _ = alice_bob
    response = requests.get(f"{cluster.nginx}/socket.io/?EIO=4&transport=polling&token="
                            f"{alice.token}&t=1", timeout=10)
    assert response.status_code == 200
    log = Path(cluster.nginx_log)
    deadline = time.monotonic() + 5
    while "token=***" not in log.read_text() and time.monotonic() < deadline:
        time.sleep(0.1)
    text = log.read_text()
    assert "token=***&t=1" in text and alice.token not in text


def test_through_nginx_the_polling_transport_alone_works(cluster, alice_bob, peers):
    alice, bob = alice_bob
    polling = peers(cluster.nginx, alice, transports=("polling",))
    on_p2 = peers(cluster.p2, bob)
    for n in range(3):  # many polling requests in one session: all reach the same process
        ack = on_p2.send(alice, f"polled {n}")
        assert polling.wait_for("chat message", lambda m: m["id"] == ack["message"]["id"])
        assert polling.send(bob, f"reply {n}")["ok"] is True
    assert polling.sio.transport() == "polling"


def test_presence_is_online_while_a_socket_is_open_on_either_process(cluster, alice_bob, peers):
    alice, bob = alice_bob
    watcher = peers(cluster.p2, bob)
    first, second = peers(cluster.p1, alice), peers(cluster.p2, alice)
    for base in (cluster.p1, cluster.p2):
        assert alice.profile(base, bob)["online"] is True
    watcher.drain()
    first.close()
    time.sleep(0.5)
    for base in (cluster.p1, cluster.p2):
        assert alice.profile(base, bob)["online"] is True
    assert [e for e in watcher.drain() if e[0] == "presence"] == []
    second.close()
    offline = watcher.wait_for("presence", lambda p: p["user"] == alice.id)
    assert offline["online"] is False and offline["last_seen"]
    for base in (cluster.p1, cluster.p2):
        assert alice.profile(base, bob)["online"] is False


def test_logout_all_through_process_2_closes_sockets_on_process_1(cluster, alice_bob, peers):
    alice, _ = alice_bob
    alice.login()
    on_p1 = peers(cluster.p1, alice)
    response = requests.post(cluster.p2 + "/api/user/logout-all", headers=alice.headers, timeout=10)
    assert response.status_code == 200
    assert on_p1.closed.wait(10), "the socket on process 1 stayed open"
    with pytest.raises(socketio.exceptions.ConnectionError):
        peers(cluster.p1, alice)
    alice.login()


def test_killing_process_1_leaves_process_2_serving_and_clears_its_presence(cluster, alice_bob,
                                                                            peers):
    alice, bob = alice_bob
    watcher = peers(cluster.p2, bob)
    peers(cluster.p1, alice)
    assert alice.profile(cluster.p2, bob)["online"] is True
    watcher.drain()

    cluster.apps[0].kill(signal.SIGKILL)  # gunicorn's arbiter and worker: no disconnect handlers
    cluster.apps[0].proc.wait(5)

    assert requests.get(cluster.p2 + "/healthz", timeout=5).status_code == 200
    ack = watcher.send(alice, "process 1 is gone")
    assert ack["ok"] is True
    # Process 2's heartbeat sweep forgets the dead process's sockets and tells the peers.
    offline = watcher.wait_for("presence", lambda p: p["user"] == alice.id,
                               timeout=STALE + 4 * HEARTBEAT + 5)
    assert offline["online"] is False
    assert alice.profile(cluster.p2, bob)["online"] is False
    # nginx sends every request to the process that is left.
    for _ in range(3):
        assert requests.get(cluster.nginx + "/healthz", timeout=5).status_code == 200
    through_nginx = peers(cluster.nginx, alice)
    ack = watcher.send(alice, "after the failover")
    assert through_nginx.wait_for("chat message", lambda m: m["id"] == ack["message"]["id"])
