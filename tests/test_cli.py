"""Admin commands (Flask's CLI): the same services as the API, never around them."""
import pytest
from bson import ObjectId

from chatapp.extensions import mongo
from tests.conftest import PASSWORD


@pytest.fixture
def runner(app):
    return app.test_cli_runner()


def test_create_user_then_log_in_over_the_api(runner, client):
    result = runner.invoke(args=["create-user", "root_admin", "Root@Example.com",
                                 "--password", PASSWORD])
    assert result.exit_code == 0, result.output
    assert "created user root_admin" in result.output
    login = client.post("/api/user/login", json={"email": "root@example.com",
                                                 "password": PASSWORD})
    assert login.status_code == 200
    stored = mongo.db.users.find_one({"username": "root_admin"})
    assert stored["password_hash"] != PASSWORD.encode() and stored["email"] == "root@example.com"


@pytest.mark.parametrize("args, says", [
    (["create-user", "x", "x@example.com", "--password", PASSWORD], "validation_error"),
    (["create-user", "valid_name", "not-an-email", "--password", PASSWORD], "validation_error"),
    (["create-user", "valid_name", "v@example.com", "--password", "short"], "validation_error"),
])
def test_create_user_refuses_what_the_api_refuses(runner, args, says):
    result = runner.invoke(args=args)
    assert result.exit_code != 0 and says in result.output
    assert mongo.db.users.count_documents({}) == 0


def test_create_user_twice_is_a_conflict(runner):
    args = ["create-user", "dup_user", "dup@example.com", "--password", PASSWORD]
    assert runner.invoke(args=args).exit_code == 0
    result = runner.invoke(args=args)
    assert result.exit_code != 0 and "conflict" in result.output


@pytest.mark.parametrize("how", ["id", "username", "email"])
def test_revoke_tokens_ends_every_login(runner, client, auth, socket_client, how):
    user = auth.user()
    other = auth.user()
    sock = socket_client(user)
    assert sock.is_connected()
    ref = {"id": user.id, "username": user.username.upper(), "email": user.email}[how]
    result = runner.invoke(args=["revoke-tokens", ref])
    assert result.exit_code == 0, result.output
    me = client.get("/api/user/me", headers=user.headers)
    assert me.status_code == 401 and me.get_json()["error"]["code"] == "token_revoked"
    assert not sock.is_connected()
    assert client.get("/api/user/me", headers=other.headers).status_code == 200


def test_revoke_tokens_of_nobody_fails(runner):
    result = runner.invoke(args=["revoke-tokens", str(ObjectId())])
    assert result.exit_code != 0 and "no such user" in result.output


def test_upgrade_db_creates_the_indexes_and_upgrades(runner):
    mongo.db.conversations.drop_indexes()
    result = runner.invoke(args=["upgrade-db"])
    assert result.exit_code == 0, result.output
    assert "direct_pair" in mongo.db.conversations.index_information()
    assert "0 conversation(s) upgraded" in result.output


def test_show_config_masks_secrets(app, runner):
    app.config["MONGO_URI"] = "mongodb://chat:hunter2@db.internal:27017/chatapp"
    result = runner.invoke(args=["show-config"])
    assert result.exit_code == 0, result.output
    assert app.config["JWT_SECRET_KEY"] not in result.output
    assert "JWT_SECRET_KEY = ****" in result.output
    assert "hunter2" not in result.output and "mongodb://chat:****@db.internal" in result.output
    assert "MAX_GROUP_MEMBERS = 256" in result.output
