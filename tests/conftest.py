"""Fixtures: app, client, auth (register + log in), socket clients, a live server.

The suite runs on the embedded store (mongomock). Set TEST_MONGO_URI to run the very
same tests against a real MongoDB: each test starts from an empty database.
"""
import itertools

import pytest

from chatapp import create_app
from chatapp.extensions import mongo, socketio
from config import TestingConfig

from tests.live import LiveServer, database_env, server_uri, suite_database

PASSWORD = "correct horse battery"
_names = itertools.count(1)


def pytest_configure(config):
    config.addinivalue_line("markers", "live: starts a real server process on a loopback port")
    config.addinivalue_line(
        "markers",
        "skip_with_test_mongo_uri(reason): skipped, for that reason, when TEST_MONGO_URI is set")


def pytest_collection_modifyitems(config, items):
    if not server_uri():
        return
    for item in items:
        marker = item.get_closest_marker("skip_with_test_mongo_uri")
        if marker:
            reason = marker.args[0] if marker.args else marker.kwargs["reason"]
            item.add_marker(pytest.mark.skip(reason=f"not with TEST_MONGO_URI: {reason}"))


@pytest.fixture(scope="session")
def _server_client():
    import pymongo

    with pymongo.MongoClient(server_uri(), serverSelectionTimeoutMS=10_000) as client:
        yield client


@pytest.fixture(autouse=True)
def _empty_test_database(request):
    """With TEST_MONGO_URI, every test starts from an emptied database, including the apps a
    test builds itself with create_app (which then declares the indexes on it)."""
    if server_uri():
        request.getfixturevalue("_server_client").drop_database(suite_database())


@pytest.fixture
def app():
    app = create_app(TestingConfig)
    if not mongo.embedded:
        mongo.client.drop_database(mongo.db.name)
        with app.app_context():
            from chatapp.startup import ensure_indexes

            ensure_indexes()
    yield app


@pytest.fixture
def client(app):
    return app.test_client()


class Account:
    """A registered, logged-in user: `token`, `id`, `headers`, `refresh_token`, `email`."""

    def __init__(self, username, email, login_body):
        self.username = username
        self.email = email
        self.password = PASSWORD
        self.token = login_body["access_token"]
        self.refresh_token = login_body["refresh_token"]
        self.id = login_body["userId"]
        self.headers = {"Authorization": f"Bearer {self.token}"}


class Auth:
    """Registers and logs users in through the public API, like a client would."""

    def __init__(self, client):
        self.client = client

    def register(self, username=None, email=None, password=PASSWORD):
        username = username or f"user{next(_names)}"
        email = email or f"{username}@example.com"
        response = self.client.post("/api/user/register",
                                    json={"username": username, "email": email,
                                          "password": password})
        assert response.status_code == 201, response.get_json()
        return username, email

    def login(self, email, password=PASSWORD):
        response = self.client.post("/api/user/login", json={"email": email, "password": password})
        assert response.status_code == 200, response.get_json()
        return response.get_json()

    def user(self, username=None):
        username, email = self.register(username)
        return Account(username, email, self.login(email))


@pytest.fixture
def auth(client):
    return Auth(client)


@pytest.fixture
def socket_client(app, client):
    """Factory: `socket_client(account)` connects with `auth: {token}`; pass auth/headers/query."""
    made = []

    def connect(account=None, auth=None, headers=None, query_string=None):
        if account is not None and auth is None and headers is None and query_string is None:
            auth = {"token": account.token}
        sc = socketio.test_client(app, auth=auth, headers=headers, query_string=query_string,
                                  flask_test_client=client)
        made.append(sc)
        return sc

    yield connect
    for sc in made:
        if sc.is_connected():
            sc.disconnect()


@pytest.fixture(scope="session")
def live_server(tmp_path_factory):
    """One real eventlet server (wsgi.py, embedded store) for the session's live tests."""
    log = tmp_path_factory.mktemp("live") / "server.log"
    server = LiveServer(log_path=log, env=_live_db_env())
    with server:
        yield server


def _live_db_env():
    # A database of its own: the in-process tests empty theirs before each test.
    return database_env("live")
