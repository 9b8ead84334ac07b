"""A real chatapp server (wsgi.py under eventlet, or gunicorn) in a subprocess, stopped by PID."""
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent


PASSWORD = "correct horse battery"


def http_account(url, username, password=PASSWORD, email=None):
    """Register `username` and log in over real HTTP, as a client would; the login body."""
    email = email or f"{username}@example.com"
    response = requests.post(url + "/api/user/register", timeout=10,
                             json={"username": username, "email": email, "password": password})
    assert response.status_code == 201, response.text
    response = requests.post(url + "/api/user/login", timeout=10,
                             json={"email": email, "password": password})
    assert response.status_code == 200, response.text
    return response.json()


def server_uri():
    """TEST_MONGO_URI (the suite runs against that database server), or None (embedded store)."""
    return os.environ.get("TEST_MONGO_URI") or None


def suite_database():
    """The suite's database on TEST_MONGO_URI's server, named as TestingConfig names it: the
    URI's path, else TEST_MONGO_DB_NAME, else chatapp_test."""
    from pymongo.uri_parser import parse_uri

    return (parse_uri(server_uri())["database"]
            or os.environ.get("TEST_MONGO_DB_NAME") or "chatapp_test")


def database_env(suffix):
    """The environment that points a server process at a database of its own on
    TEST_MONGO_URI's server (`<suite database>_<suffix>`, emptied now), or {} on the
    embedded store, where each server process has its own in-memory store anyway."""
    uri = server_uri()
    if not uri:
        return {}
    import urllib.parse

    import pymongo

    name = f"{suite_database()}_{suffix}"
    parts = urllib.parse.urlsplit(uri)
    url = urllib.parse.urlunsplit(parts._replace(path="/" + name))
    with pymongo.MongoClient(url, serverSelectionTimeoutMS=10_000) as client:
        client.drop_database(name)
    return {"MONGO_DB_URL": url, "MONGO_DB_NAME": name}


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LiveServer:
    """`with LiveServer() as server: requests.get(server.url + "/healthz")`."""

    def __init__(self, env=None, port=None, log_path=None, command=None):
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {
            **os.environ,
            "PORT": str(self.port),
            "HOST": "127.0.0.1",
            "CHATAPP_ENV": "development",
            "secretKey": "live-test-secret-key-that-is-long-enough-0123456789",
            "BCRYPT_ROUNDS": "4",
            "RATELIMIT_ENABLED": "false",
            "LOG_LEVEL": "WARNING",
            "PYTHONUNBUFFERED": "1",
            **(env or {}),
        }
        for name in ("MONGO_DB_URL", "MONGO_URI"):
            if name not in (env or {}):
                self.env.pop(name, None)
        self.command = command or [sys.executable, str(ROOT / "wsgi.py")]
        self.log_path = log_path
        self.proc = None

    def start(self, timeout=20):
        self._log = open(self.log_path, "wb") if self.log_path else subprocess.DEVNULL
        self.proc = subprocess.Popen(self.command, cwd=ROOT, env=self.env,
                                     stdout=self._log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}: {self.log_text()}")
            try:
                if requests.get(self.url + "/healthz", timeout=1).status_code == 200:
                    return self
            except requests.RequestException:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"server did not answer /healthz in {timeout}s: {self.log_text()}")

    def log_text(self):
        if self.log_path and Path(self.log_path).exists():
            return Path(self.log_path).read_text(errors="replace")[-4000:]
        return "(no log)"

    def stop(self, sig=signal.SIGTERM, timeout=10):
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait(5)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
        if self._log not in (None, subprocess.DEVNULL):
            self._log.close()
