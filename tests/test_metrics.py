"""GET /metrics: Prometheus text format from prometheus-client, read back with its own parser;
who may see it (METRICS_ALLOW), what it counts, against the test client and a live server."""
import pytest
import requests
import socketio
from prometheus_client.parser import text_string_to_metric_families

from chatapp import create_app
from chatapp.metrics import parse_networks
from config import ConfigError, TestingConfig
from tests.live import LiveServer, database_env, http_account

NOT_FOUND = {"error": {"code": "not_found", "message": (
    "The requested URL was not found on the server. If you entered the URL manually please "
    "check your spelling and try again.")}}


def samples(text):
    """{(sample name, frozenset of labels): value} of a scrape, parsed by the library."""
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def value(scrape, name, **labels):
    return scrape.get((name, frozenset(labels.items())), 0.0)


def test_loopback_scrapes_and_routes_are_templates(client, auth):
    user = auth.user()
    client.get(f"/api/user/{user.id}", headers=user.headers)
    client.get("/no/such/path")
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.content_type.startswith("text/plain")
    scrape = samples(response.text)
    assert value(scrape, "chatapp_http_requests_total", method="GET",
                 route="/api/user/<objectid:user_id>", status="200") >= 1
    assert value(scrape, "chatapp_http_requests_total", method="GET", route="<unmatched>",
                 status="404") >= 1
    assert not any(user.id in str(labels) for _, labels in scrape)  # never the raw path


@pytest.mark.parametrize("address", ["10.1.2.3", "192.168.0.7", "2001:db8::1"])
def test_other_addresses_get_the_unknown_path_404(client, address):
    response = client.get("/metrics", environ_base={"REMOTE_ADDR": address})
    assert response.status_code == 404
    assert response.get_json() == client.get("/no/such/path").get_json() == NOT_FOUND


def test_forwarded_requests_are_refused_without_trusted_proxies(client):
    """Through an untrusted proxy on loopback every client would look like loopback."""
    response = client.get("/metrics", headers={"X-Forwarded-For": "203.0.113.9"})
    assert response.status_code == 404


def test_metrics_allow_takes_networks():
    app = create_app(TestingConfig, METRICS_ALLOW=["10.0.0.0/8", "::1"])
    client = app.test_client()
    assert client.get("/metrics", environ_base={"REMOTE_ADDR": "10.20.30.40"}).status_code == 200
    assert client.get("/metrics", environ_base={"REMOTE_ADDR": "::1"}).status_code == 200
    assert client.get("/metrics").status_code == 404  # 127.0.0.1 is no longer listed


def test_a_bad_metrics_allow_entry_is_a_configuration_error():
    with pytest.raises(ConfigError, match="METRICS_ALLOW"):
        parse_networks(["127.0.0.1", "localhost"])


def test_socket_events_are_counted_by_name_and_outcome(client, auth, socket_client):
    alice, bob = auth.user(), auth.user()
    sc = socket_client(alice)
    sc.emit("chat message", {"receiver": bob.id, "content": "hi"}, callback=True)
    sc.emit("chat message", {"receiver": bob.id}, callback=True)
    sc.emit("no such event", {}, callback=True)
    scrape = samples(client.get("/metrics").text)
    assert value(scrape, "chatapp_socket_events_total", event="chat message", outcome="ok") >= 1
    assert value(scrape, "chatapp_socket_events_total", event="chat message",
                 outcome="validation_error") >= 1
    assert value(scrape, "chatapp_socket_events_total", event="<unknown>",
                 outcome="not_found") >= 1
    assert value(scrape, "chatapp_messages_stored_total", conversation_type="direct") >= 1


@pytest.mark.live
def test_a_live_server_is_scraped_after_traffic():
    """The real eventlet server: REST, a socket, a refused send, then one parsed scrape."""
    env = {"RATELIMIT_ENABLED": "true", "RATELIMIT_SEND": "2 per minute", **database_env("metrics")}
    with LiveServer(env=env) as server:
        alice = http_account(server.url, "metricsalice")
        bob = http_account(server.url, "metricsbob")
        headers = {"Authorization": f"Bearer {alice['access_token']}"}
        sio = socketio.Client(reconnection=False)
        sio.connect(server.url, auth={"token": alice["access_token"]},
                    transports=["websocket"], wait_timeout=5)
        try:
            acks = [sio.call("chat message", {"receiver": bob["userId"], "content": f"m{i}"},
                             timeout=10) for i in range(3)]
            assert [a["ok"] for a in acks] == [True, True, False]
            assert acks[2]["error"]["code"] == "rate_limited"
            sent = requests.post(server.url + "/api/chat/send", headers=headers, timeout=10,
                                 json={"receiver": bob["userId"], "content": "over REST"})
            assert sent.status_code == 429
            response = requests.get(server.url + "/metrics", timeout=10)
        finally:
            sio.disconnect()
    assert response.status_code == 200
    scrape = samples(response.text)
    assert value(scrape, "chatapp_http_requests_total", method="POST",
                 route="/api/user/register", status="201") == 2
    assert value(scrape, "chatapp_http_requests_total", method="POST",
                 route="/api/chat/send", status="429") == 1
    assert value(scrape, "chatapp_http_request_duration_seconds_count", method="POST",
                 route="/api/user/login") == 2
    assert value(scrape, "chatapp_sockets_open") == 1
    assert value(scrape, "chatapp_socket_events_total", event="connect", outcome="ok") == 1
    assert value(scrape, "chatapp_socket_events_total", event="chat message", outcome="ok") == 2
    assert value(scrape, "chatapp_socket_events_total", event="chat message",
                 outcome="rate_limited") == 1
    assert value(scrape, "chatapp_messages_stored_total", conversation_type="direct") == 2
    assert value(scrape, "chatapp_rate_limit_refusals_total", transport="socket") == 1
    assert value(scrape, "chatapp_rate_limit_refusals_total", transport="http") == 1
    families = {f.name for f in text_string_to_metric_families(response.text)}
    assert {"chatapp_database_errors", "chatapp_redis_errors"} <= families
