"""The AsyncAPI document (`GET /api/asyncapi.json`): valid for the official parser, complete for
the events the code handles and emits, and true of what the server really sends.

Completeness is read from the code, not from a list: the handlers registered on the
Socket.IO server, and every event name passed to `emit_to_users(` / `socketio.emit(` in
chatapp/ (an `ast` scan that follows a name through the parameters of the functions that
pass it on). Truth: acks and events received by test clients validate against the
document's payload schemas.
"""
import ast
import json
import shutil
import subprocess
from pathlib import Path

import jsonschema
import pytest
from flask_socketio import ConnectionRefusedError

import chatapp
from chatapp.chat import events
from chatapp.conversations.schemas import EVENT_TYPES
from chatapp.extensions import socketio

JS_DIR = Path(__file__).resolve().parent / "js"
NODE = shutil.which("node")
NOT_CLIENT_EVENTS = {"connect", "disconnect", "*"}  # the handshake, and the unknown-event catch-all


@pytest.fixture
def doc(client):
    response = client.get("/api/asyncapi.json")
    assert response.status_code == 200
    assert response.content_type == "application/json"
    return response.get_json()


def resolve(doc, ref):
    node = doc
    for part in ref["$ref"].removeprefix("#/").split("/"):
        node = node[part]
    return resolve(doc, node) if "$ref" in node else node


def operations(doc, action):
    """{event name: operation} of the `receive` (client -> server) or `send` operations."""
    out = {}
    for operation in doc["operations"].values():
        if operation["action"] == action:
            for message in operation["messages"]:
                out[resolve(doc, message)["name"]] = operation
    return out


def validator(doc, message):
    """A JSON Schema validator of a message's payload (its $refs resolved in the document)."""
    return jsonschema.Draft7Validator({**resolve(doc, message)["payload"],
                                       "components": doc["components"]})


def is_valid(doc, messages, payload):
    return any(validator(doc, m).is_valid(payload) for m in messages)


def run_parser(source):
    if NODE is None:
        pytest.skip("node is not installed (CI installs it: .ci/run)")
    if not (JS_DIR / "node_modules" / "@asyncapi" / "parser").is_dir():
        pytest.fail("tests/js/node_modules is missing: run `make test` or `cd tests/js && npm ci`")
    done = subprocess.run([NODE, "asyncapi.mjs", str(source), "--strict"], cwd=JS_DIR,
                          capture_output=True, text=True, timeout=120)
    output = f"{done.stdout}\n{done.stderr}".strip()
    assert done.returncode == 0, f"the AsyncAPI parser refused the document:\n{output}"
    assert "ok: asyncapi 3.0.0" in done.stdout, output


def test_official_parser_accepts_the_document(doc, tmp_path):
    path = tmp_path / "asyncapi.json"
    path.write_text(json.dumps(doc))
    run_parser(path)


@pytest.mark.live
def test_live_server_serves_a_document_the_parser_accepts(live_server):
    run_parser(live_server.url + "/api/asyncapi.json")


# ---------------------------------------------------------------- complete for the code


def test_every_socketio_handler_is_a_client_operation(app, doc):
    handled = set(socketio.server.handlers["/"]) - NOT_CLIENT_EVENTS
    assert handled == {"join", "chat message", "message", "typing", "delivered", "read"}
    assert set(operations(doc, "receive")) == handled | {"connect"}


class Calls(ast.NodeVisitor):
    """Every call of a module with the function it is made in (None at module level)."""

    def __init__(self):
        self.functions, self.found = [], []

    def visit_FunctionDef(self, node):
        self.functions.append(node)
        self.generic_visit(node)
        self.functions.pop()

    visit_AsyncFunctionDef = visit_FunctionDef

    def visit_Call(self, node):
        self.found.append((self.functions[-1] if self.functions else None, node))
        self.generic_visit(node)


def chatapp_calls():
    visitor = Calls()
    for path in sorted(Path(chatapp.__file__).parent.rglob("*.py")):
        visitor.visit(ast.parse(path.read_text(), filename=str(path)))
    return visitor.found


CALLS = chatapp_calls()


def strings_passed(callee, position, keyword, seen=frozenset()):
    """Every string passed as argument `position` (or `keyword`) to `callee` in chatapp/;
    a name that is a parameter of the calling function is followed to that function's calls."""
    found = set()
    for caller, call in CALLS:
        name = ast.unparse(call.func)
        if name != callee and not name.endswith("." + callee):
            continue
        arg = call.args[position] if len(call.args) > position else next(
            (k.value for k in call.keywords if k.arg == keyword), None)
        params = [a.arg for a in caller.args.args] if caller else []
        if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
            found.add(arg.value)
        elif isinstance(arg, ast.Name) and arg.id in params:
            if (caller.name, arg.id) not in seen:
                found |= strings_passed(caller.name, params.index(arg.id), arg.id,
                                        seen | {(caller.name, arg.id)})
        else:
            pytest.fail(f"cannot tell which event {ast.unparse(call)} emits")
    return found


def test_every_emitted_event_is_a_server_message(doc):
    emitted = strings_passed("emit_to_users", 0, "event") | strings_passed("socketio.emit", 0,
                                                                           "event")
    assert emitted == {"chat message", "message updated", "message deleted", "typing",
                       "delivered", "read", "presence", "conversation"}
    assert set(operations(doc, "send")) == emitted


def test_conversation_event_types_are_the_kinds_emitted():
    assert set(strings_passed("emit_change", 0, "kind")) == set(EVENT_TYPES)


def test_every_client_event_has_its_ok_and_error_acks(doc):
    for name, operation in operations(doc, "receive").items():
        replies = [resolve(doc, m)["payload"]["$ref"] for m in operation["reply"]["messages"]]
        if name == "connect":
            assert replies == ["#/components/schemas/ConnectRefusal"]
            continue
        assert replies[-1] == "#/components/schemas/ErrorAck", name
        assert len(replies) >= 2, name


def test_the_envelope_names_the_events_it_dispatches(doc):
    envelope = doc["components"]["schemas"]["Envelope"]
    assert envelope["properties"]["event"]["enum"] == list(events.ENVELOPE_EVENTS)


def test_error_ack_is_the_rest_error_body(doc):
    schemas = doc["components"]["schemas"]
    assert schemas["ErrorAck"]["properties"]["error"] == {"$ref": "#/components/schemas/ErrorBody"}
    assert schemas["ErrorAck"]["properties"]["ok"]["enum"] == [False]
    assert set(schemas["ErrorBody"]["properties"]) == {"code", "message", "details"}
    assert schemas["ErrorBody"]["required"] == ["code", "message"]


def test_handshake_is_documented(doc):
    connect = operations(doc, "receive")["connect"]
    auth = resolve(doc, connect["messages"][0])["payload"]
    assert resolve(doc, auth)["properties"]["token"]["type"] == "string"
    schemes = doc["components"]["securitySchemes"]
    assert schemes["bearerAuth"]["scheme"] == "bearer"
    assert (schemes["accessTokenHeader"]["in"], schemes["accessTokenHeader"]["name"]) == (
        "header", "access_token")
    assert (schemes["tokenQuery"]["in"], schemes["tokenQuery"]["name"]) == ("query", "token")


# ---------------------------------------------------------------- true of the server


def test_payloads_sent_validate_as_the_handlers_do(doc):
    """The document refuses what the handlers refuse (exactly one target, a bool `typing`)."""
    receive = operations(doc, "receive")
    peer = "665f1b2c9d1e8a0012345678"

    def valid(event, payload):
        return is_valid(doc, receive[event]["messages"], payload)

    assert valid("chat message", {"receiver": peer, "content": "hi"})
    assert valid("chat message", {"conversation": peer, "content": "hi", "client_id": "c"})
    assert not valid("chat message", {"receiver": peer, "conversation": peer, "content": "hi"})
    assert not valid("chat message", {"content": "hi"})
    assert not valid("typing", {"receiver": peer, "typing": 1})
    assert not valid("delivered", {"peer": peer})
    assert valid("message", json.dumps({"event": "join", "data": peer}))
    assert not valid("message", {"event": "leave"})
    assert valid("join", peer) and not valid("join", {"userId": peer})


def test_acks_and_events_of_a_session_match_the_document(doc, client, auth, socket_client):
    alice, bob, carol = auth.user(), auth.user(), auth.user()
    first = client.post("/api/chat/send", headers=alice.headers,
                        json={"receiver": bob.id, "content": "before the sockets"})
    assert first.status_code == 201
    a = socket_client(alice)
    b = socket_client(bob)  # bob comes online: alice, who shares a conversation, is told
    acks = [
        ("join", a.emit("join", alice.id, callback=True)),
        ("join", a.emit("join", bob.id, callback=True)),
        ("chat message", a.emit("chat message", {"receiver": bob.id, "content": "hi"},
                                callback=True)),
        ("chat message", a.emit("chat message", {"content": "nobody"}, callback=True)),
        ("message", a.emit("message", json.dumps(
            {"event": "chat message", "data": {"receiver": bob.id, "content": "old"}}),
            callback=True)),
        ("typing", a.emit("typing", {"receiver": bob.id, "typing": True}, callback=True)),
        ("typing", a.emit("typing", {"receiver": bob.id, "typing": False}, callback=True)),
    ]
    message_id = acks[2][1]["message"]["id"]
    acks += [
        ("delivered", b.emit("delivered", {"peer": alice.id, "up_to": message_id},
                             callback=True)),
        ("read", b.emit("read", {"peer": alice.id}, callback=True)),
    ]
    assert client.patch(f"/api/chat/messages/{message_id}", headers=alice.headers,
                        json={"content": "edited"}).status_code == 200
    assert client.delete(f"/api/chat/messages/{message_id}",
                         headers=alice.headers).status_code == 200
    group = client.post("/api/chat/groups", headers=alice.headers,
                        json={"title": "Docs", "members": [bob.id, carol.id]})
    assert group.status_code == 201
    acks.append(("chat message", a.emit("chat message", {
        "conversation": group.get_json()["conversation"]["id"], "content": "to the group"},
        callback=True)))

    receive = operations(doc, "receive")
    for event, ack in acks:
        assert is_valid(doc, receive[event]["reply"]["messages"], ack), (event, ack)
    assert [ack["ok"] for _, ack in acks].count(False) == 2

    send, seen = operations(doc, "send"), set()
    for sc in (a, b):
        for event in sc.get_received():
            name, payload = event["name"], event["args"][0]
            assert name in send, name
            errors = list(validator(doc, send[name]["messages"][0]).iter_errors(payload))
            assert not errors, (name, payload, [e.message for e in errors])
            seen.add(name)
    assert seen == set(send)  # every server event was checked against a real one


def test_connect_refusal_matches_the_document(app, doc):
    """What python-socketio sends in the CONNECT_ERROR packet when `on_connect` refuses."""
    with app.test_request_context("/socket.io/"):
        with pytest.raises(ConnectionRefusedError) as refused:
            events.on_connect({"token": "not-a-jwt"})
    packet_data = refused.value.error_args
    assert packet_data == {"message": "unauthorized", "data": {"code": "unauthorized"}}
    reply = operations(doc, "receive")["connect"]["reply"]["messages"]
    assert is_valid(doc, reply, packet_data)
    assert not is_valid(doc, reply, {"message": "no such code", "data": {"code": "x"}})
