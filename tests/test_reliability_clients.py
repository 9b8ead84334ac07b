"""Promise 5: slow or stuck clients do not stall the server; connection caps are settings.

Over a live eventlet server: a bystander pair's message latency is measured (and printed,
never time-asserted: speed figures belong to bench/) at rest, while a client that stopped
reading is flooded with messages, and while one user tries to open 200 sockets. The
bystanders' messages must all arrive; the 200-socket user gets MAX_SOCKETS_PER_USER of
them and the rest are refused at connect with `rate_limited`.
"""
import socket
import statistics
import threading
import time
from pathlib import Path

import pytest
import requests

from tests.live import LiveServer, database_env
from tests.live import http_account as account
from tests.sio_wire import ConnectRefused, WireClient

PER_USER_CAP = 20  # the default of MAX_SOCKETS_PER_USER

pytestmark = pytest.mark.live


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    log = tmp_path_factory.mktemp("clients") / "server.log"
    with LiveServer(log_path=log, env={"LOG_LEVEL": "WARNING", **database_env("clients")}) as live:
        yield live


class Bystanders:
    """X sends to Y over sockets; latency = Y's arrival time minus X's send time."""

    def __init__(self, url):
        self.x, self.y = account(url, f"x{time.monotonic_ns()}"), account(url, f"y{time.monotonic_ns()}")
        self.arrivals = {}
        self.y_socket = WireClient(url, self.y["access_token"],
                                   on_event=lambda name, data, at: self.arrivals.setdefault(
                                       data.get("content"), at) if name == "chat message" else None)
        self.y_socket.connect()
        self.x_socket = WireClient(url, self.x["access_token"]).connect()
        self.count = 0

    def measure(self, label, messages=30, pause=0.02):
        sent = {}
        for _ in range(messages):
            self.count += 1
            content = f"{label} {self.count}"
            sent[content] = time.monotonic()
            ack = self.x_socket.call("chat message", {"receiver": self.y["userId"], "content": content},
                                     timeout=30)
            assert ack["ok"] is True, ack
            time.sleep(pause)
        assert self.y_socket.wait_for(lambda _: set(sent) <= set(self.arrivals), timeout=30), \
            f"{label}: bystander messages did not all arrive"
        latencies = sorted((self.arrivals[c] - t) * 1000 for c, t in sent.items())
        print(f"\n{label:>36}: latency ms p50 {statistics.median(latencies):6.1f}  "
              f"p95 {latencies[int(len(latencies) * 0.95) - 1]:6.1f}  max {latencies[-1]:6.1f}")
        return latencies


def test_stuck_reader_and_socket_flood_do_not_stall_other_clients(server):
    url = server.url
    bystanders = Bystanders(url)
    bystanders.measure("at rest")

    # A client that connects and never reads again, with a tiny receive buffer: the server's
    # writes to it block at once. Another user floods it with 4000-character messages.
    stuck_user, flooder = account(url, f"stuck{time.monotonic_ns()}"), account(url, f"flood{time.monotonic_ns()}")
    stuck = WireClient(url, stuck_user["access_token"], read=False,
                       sockopt=((socket.SOL_SOCKET, socket.SO_RCVBUF, 4096),)).connect()
    headers = {"Authorization": f"Bearer {flooder['access_token']}"}
    http = requests.Session()
    started = time.monotonic()
    for n in range(300):
        response = http.post(url + "/api/chat/send", headers=headers, timeout=30,
                             json={"receiver": stuck_user["userId"], "content": f"{n:03d}" + "z" * 3990})
        assert response.status_code == 201, response.text
    print(f"\n300 sends to a client that stopped reading: {time.monotonic() - started:.2f}s")
    bystanders.measure("a client stopped reading")

    # One user tries to open 200 sockets while the bystanders talk.
    hog = account(url, f"hog{time.monotonic_ns()}")
    opened, refused = [], []

    def open_many():
        started = time.monotonic()
        for _ in range(200):
            try:
                opened.append(WireClient(url, hog["access_token"], read=False).connect())
            except ConnectRefused as exc:
                refused.append(exc.code)
        print(f"\n200 connection attempts by one user took {time.monotonic() - started:.2f}s")

    flood = threading.Thread(target=open_many)
    flood.start()
    bystanders.measure("one user opening 200 sockets", messages=40)
    flood.join(120)
    assert not flood.is_alive()
    print(f"200 sockets asked for: {len(opened)} opened, {len(refused)} refused")
    assert len(opened) == PER_USER_CAP
    assert refused == ["rate_limited"] * (200 - PER_USER_CAP)
    bystanders.measure("with 20 idle sockets and the stuck one")

    for client in opened[:5]:
        client.close()
    # The cap counts open sockets, not attempts: room again once some closed.
    again = wait_connect(url, hog["access_token"])
    assert again.connected
    for client in opened[5:] + [again, stuck]:
        client.drop()
    assert "Traceback" not in full_log(server)


def wait_connect(url, token, timeout=10):
    """Connect, retrying while the server has not yet processed earlier closes."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return WireClient(url, token).connect()
        except ConnectRefused:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def test_per_address_cap_counts_every_user_from_that_address(tmp_path):
    env = {"MAX_SOCKETS_PER_USER": "5", "MAX_SOCKETS_PER_ADDRESS": "8", "LOG_LEVEL": "WARNING",
           **database_env("address_cap")}
    with LiveServer(env=env, log_path=tmp_path / "server.log") as live:
        a, b = account(live.url, "capa"), account(live.url, "capb")
        a_sockets = [WireClient(live.url, a["access_token"]).connect() for _ in range(5)]
        with pytest.raises(ConnectRefused) as refused:
            WireClient(live.url, a["access_token"]).connect()
        assert refused.value.data == {"message": "rate_limited", "data": {"code": "rate_limited"}}
        b_sockets = [WireClient(live.url, b["access_token"]).connect() for _ in range(3)]
        with pytest.raises(ConnectRefused) as refused:  # b has 3 of 5, but 127.0.0.1 has 8 of 8
            WireClient(live.url, b["access_token"]).connect()
        assert refused.value.code == "rate_limited"
        a_sockets.pop().close()
        b_sockets.append(wait_connect(live.url, b["access_token"]))
        # Those that were let in work as usual.
        ack = b_sockets[-1].call("chat message", {"receiver": a["userId"], "content": "capped"})
        assert ack["ok"] is True, ack
        assert a_sockets[0].wait_for(lambda c: "capped" in [m["content"] for m in c.received()])
        for client in a_sockets + b_sockets:
            client.close()


def full_log(server):
    """The server's whole log (LiveServer.log_text() keeps only its tail)."""
    return Path(server.log_path).read_text(errors="replace")
