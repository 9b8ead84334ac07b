"""Operations endpoints, in-process and over real HTTP."""
import pytest
import requests


def test_healthz(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.get_json() == {"status": "ok"}


def test_readyz_pings_the_store(client):
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.get_json()["status"] == "ok"


@pytest.mark.live
def test_live_server_answers_healthz_over_http(live_server):
    response = requests.get(live_server.url + "/healthz", timeout=5)
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}
