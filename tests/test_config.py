"""Configuration from the environment: refusing to start, generated secrets, variable aliases.

Settings are read when `config` is imported, so each case runs in a fresh subprocess.
"""
import json
import os
import subprocess
import sys
import textwrap

import jwt as pyjwt
import pytest
import requests

from tests.live import ROOT, LiveServer, free_port

NO_SECRET = {"secretKey": "", "JWT_SECRET_KEY": "", "SECRET_KEY": ""}  # empty counts as unset
ALIAS_SECRET = "alias-secret-from-JWT_SECRET_KEY-0123456789abcdef"


def clean_env(**overrides):
    env = {k: v for k, v in os.environ.items()
           if k not in ("MONGO_DB_URL", "MONGO_URI", "CHATAPP_ENV", "FLASK_ENV", "PORT",
                        "BCRYPT_ROUNDS", "ASYNC_MODE", "MONGO_TIMEOUT_MS")}
    # Empty values shadow a developer's .env (python-dotenv never overrides the environment).
    env.update({"PYTHONUNBUFFERED": "1", "MONGO_DB_URL": "", "MONGO_URI": "",
                "PORT": str(free_port()), **NO_SECRET})
    env.update(overrides)
    return env


def run_wsgi(**env):
    return subprocess.run([sys.executable, "wsgi.py"], cwd=ROOT, env=clean_env(**env),
                          capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("env, expected", [
    ({"CHATAPP_ENV": "production"}, "secretKey is not set"),
    ({"CHATAPP_ENV": "production", "secretKey": "too-short"}, "secretKey is too short"),
    ({"CHATAPP_ENV": "staging"}, "unknown CHATAPP_ENV 'staging'"),
    ({"CHATAPP_ENV": "production", "secretKey": ALIAS_SECRET, "PORT": "eighty"},
     "PORT must be an integer"),
    ({"CHATAPP_ENV": "production", "secretKey": ALIAS_SECRET, "BCRYPT_ROUNDS": "2"},
     "BCRYPT_ROUNDS must be between 4 and 31"),
    ({"CHATAPP_ENV": "production", "secretKey": ALIAS_SECRET, "PASSWORD_HASH_THREADS": "0"},
     "PASSWORD_HASH_THREADS must be between 1 and 20"),
    ({"CHATAPP_ENV": "production", "secretKey": ALIAS_SECRET, "SYNC_TEST_WRITE_DELAY_MS": "50"},
     "SYNC_TEST_WRITE_DELAY_MS is for tests only"),
    ({"CHATAPP_ENV": "production", "secretKey": ALIAS_SECRET, "SYNC_WRITE_DEADLINE": "0"},
     "SYNC_WRITE_DEADLINE must be at least 1 second"),
])
def test_bad_configuration_exits_non_zero_with_one_actionable_line(env, expected):
    result = run_wsgi(**env)
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("chatapp: configuration error: ")
    assert expected in lines[0]
    assert "Traceback" not in result.stderr and "serving on" not in result.stdout


def test_production_without_secret_says_how_to_set_one():
    line = run_wsgi(CHATAPP_ENV="production").stderr.strip()
    assert "export secretKey (or JWT_SECRET_KEY)" in line
    assert "secrets.token_urlsafe" in line


@pytest.mark.skip_with_test_mongo_uri(
    "checks the start-up warning of the embedded store, which a server without MONGO_DB_URL "
    "uses whatever TEST_MONGO_URI says")
def test_development_without_secret_generates_one_and_says_so(tmp_path):
    log = tmp_path / "server.log"
    with LiveServer(env={**NO_SECRET, "LOG_LEVEL": "INFO"}, log_path=log) as server:
        email = "dev@example.com"
        r = requests.post(server.url + "/api/user/register", timeout=10,
                          json={"username": "dev", "email": email, "password": "password-123"})
        assert r.status_code == 201
        r = requests.post(server.url + "/api/user/login", timeout=10,
                          json={"email": email, "password": "password-123"})
        assert r.status_code == 200
        token = r.json()["token"]
        assert requests.get(server.url + "/api/user/me", timeout=10,
                            headers={"Authorization": f"Bearer {token}"}).status_code == 200
    text = log.read_text()
    assert "generated a random secret" in text
    # The embedded store is announced once, with how to point at MongoDB.
    assert text.count("EMBEDDED IN-MEMORY") == 1 and "MONGO_DB_URL=mongodb://" in text


def run_app_script(script, **env):
    """Run `script` after `app = create_app()` in a fresh interpreter; returns its JSON output."""
    code = "from chatapp import create_app\napp = create_app()\n" + textwrap.dedent(script)
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                            text=True, timeout=60,
                            env=clean_env(ASYNC_MODE="threading", BCRYPT_ROUNDS="4", **env))
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


# Registers and logs in inside the app the environment configures; prints the login body.
LOGIN_SCRIPT = """
        import json
        c = app.test_client()
        body = {"username": "alias", "email": "alias@example.com", "password": "password-123"}
        c.post("/api/user/register", json=body)
        print(json.dumps(c.post("/api/user/login", json=body).get_json()))
    """


def test_jwt_secret_key_alias_signs_tokens_in_production():
    tokens = run_app_script(LOGIN_SCRIPT, CHATAPP_ENV="production", JWT_SECRET_KEY=ALIAS_SECRET)
    claims = pyjwt.decode(tokens["token"], ALIAS_SECRET, algorithms=["HS256"])
    assert claims["type"] == "access"


def test_secret_key_wins_over_its_alias():
    tokens = run_app_script(LOGIN_SCRIPT, CHATAPP_ENV="production", secretKey=ALIAS_SECRET + "-primary",
        JWT_SECRET_KEY=ALIAS_SECRET)
    pyjwt.decode(tokens["token"], ALIAS_SECRET + "-primary", algorithms=["HS256"])


READY_AND_DB = """
    import json
    from chatapp.extensions import mongo
    response = app.test_client().get("/readyz")
    print(json.dumps({"status": response.status_code, "embedded": mongo.embedded,
                      "database": mongo.db.name, "error": response.get_json().get("error")}))
"""


def test_mongo_uri_alias_points_the_app_at_mongodb():
    port = free_port()  # nothing listens there: readiness fails, proving the URL was used
    out = run_app_script(READY_AND_DB, MONGO_URI=f"mongodb://127.0.0.1:{port}/fromalias",
                         MONGO_TIMEOUT_MS="300", CHATAPP_ENV="development")
    assert out["embedded"] is False and out["database"] == "fromalias"
    assert out["status"] == 503 and out["error"]["code"] == "unavailable"


def test_mongo_db_url_wins_over_mongo_uri():
    port = free_port()
    out = run_app_script(READY_AND_DB, MONGO_DB_URL=f"mongodb://127.0.0.1:{port}/primary",
                         MONGO_URI=f"mongodb://127.0.0.1:{port}/alias", MONGO_TIMEOUT_MS="300",
                         CHATAPP_ENV="development")
    assert out["database"] == "primary"


def test_no_mongo_url_means_the_embedded_store():
    out = run_app_script(READY_AND_DB, CHATAPP_ENV="development")
    assert out == {"status": 200, "embedded": True, "database": "chatapp", "error": None}
