"""A /metrics scrape costs no database round trip and does not stall sockets: a pair keeps
chatting (every message delivered once) while /metrics is scraped in a loop; the relay
latency with and without the scrapes is printed (measured, not asserted)."""
import statistics
import threading
import time

import requests
import socketio

from tests.live import LiveServer, database_env, http_account

MESSAGES = 150
# 300 times a typical Prometheus rate (one scrape per 15 s), for every process at once.
SCRAPES_PER_SECOND = 20


def relay(sender, receiver_id, inbox, got, label):
    """Send MESSAGES one at a time; the round trip to the receiver's socket, in ms."""
    latencies = []
    for i in range(MESSAGES):
        content = f"{label} {i}"
        got.clear()
        started = time.perf_counter()
        ack = sender.call("chat message", {"receiver": receiver_id, "content": content},
                          timeout=10)
        assert ack["ok"] is True, ack
        assert got.wait(10), f"{content} never arrived"
        latencies.append((time.perf_counter() - started) * 1000)
    assert [m for m in inbox if m.startswith(label)] == [f"{label} {i}" for i in range(MESSAGES)]
    return latencies


def test_scraping_under_load_stalls_no_socket():
    with LiveServer(env={**database_env("metrics_load"), "LOG_LEVEL": "WARNING"}) as server:
        alice = http_account(server.url, "loadalice")
        bob = http_account(server.url, "loadbob")
        inbox, got = [], threading.Event()
        a = socketio.Client(reconnection=False)
        b = socketio.Client(reconnection=False)

        def on_message(message):
            inbox.append(message["content"])
            got.set()

        b.on("chat message", on_message)
        for client, who in ((a, alice), (b, bob)):
            client.connect(server.url, auth={"token": who["access_token"]},
                           transports=["websocket"], wait_timeout=10)
        quiet = relay(a, bob["userId"], inbox, got, "quiet")
        stop, scrapes = threading.Event(), []

        def scrape():
            with requests.Session() as session:
                while not stop.is_set() and len(scrapes) < 2000:
                    response = session.get(server.url + "/metrics", timeout=10)
                    assert response.status_code == 200
                    scrapes.append(len(response.content))
                    stop.wait(1 / SCRAPES_PER_SECOND)

        scraper = threading.Thread(target=scrape, daemon=True)
        scraper.start()
        try:
            busy = relay(a, bob["userId"], inbox, got, "busy")
        finally:
            stop.set()
            scraper.join(15)
        a.disconnect()
        b.disconnect()
    assert scrapes, "no scrape answered"
    q = statistics.quantiles(quiet, n=100)
    s = statistics.quantiles(busy, n=100)
    print(f"\nrelay ms without scrapes p50 {q[49]:.2f} p99 {q[98]:.2f}; while /metrics was "
          f"scraped {len(scrapes)} times ({SCRAPES_PER_SECOND}/s, {scrapes[-1]} bytes): "
          f"p50 {s[49]:.2f} p99 {s[98]:.2f}")
