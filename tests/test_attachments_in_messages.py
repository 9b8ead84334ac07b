"""Attachments sent in messages, through the real send paths: who may download them, what a
deletion or a removal does, and what a send refuses (tests/test_attachments.py covers the
upload and download routes themselves)."""
from urllib.parse import urlsplit

import pytest
from bson import ObjectId

from chatapp.extensions import mongo

from tests.test_attachments import PDF, PNG, download, stored, upload
from tests.test_chat_rest import assert_error, send
from tests.test_groups import created, post, remove
from tests.test_sync import delete, feed


def sent_with(client, account, target, files, content="files", group=False):
    ids = [f["id"] for f in files]
    response = post(client, account, target, content, attachments=ids) if group else \
        send(client, account, target, content, attachments=ids)
    assert response.status_code == 201, response.get_json()
    return response.get_json()["message"]


def fetch(client, url):
    """A signed URL, without any Authorization header (as `<img src>` does)."""
    parts = urlsplit(url)
    return client.get(parts.path, query_string=parts.query)


def test_a_direct_message_carries_its_attachments_to_the_peer(client, auth, socket_client):
    alice, bob, eve = auth.user(), auth.user(), auth.user()
    image, paper = upload(client, alice, PNG, b"cat.png"), upload(client, alice, PDF, b"a.pdf")
    ear = socket_client(bob)
    message = sent_with(client, alice, bob, [image, paper])
    assert [a["id"] for a in message["attachments"]] == [image["id"], paper["id"]]
    assert message["attachments"][0]["content_type"] == "image/png"
    live = [e["args"][0] for e in ear.get_received() if e["name"] == "chat message"]
    assert [a["id"] for a in live[0]["attachments"]] == [image["id"], paper["id"]]
    got = download(client, image["id"], bob)
    assert got.status_code == 200 and got.data == PNG
    assert fetch(client, message["attachments"][1]["url"]).data == PDF
    assert_error(download(client, image["id"], eve), 404, "not_found")
    history = client.get(f"/api/chat/messages/{alice.id}/{bob.id}", headers=bob.headers)
    assert history.get_json()[0]["attachments"][0]["sha256"] == image["sha256"]


def test_group_members_read_them_a_removed_member_no_longer_does(client, auth, socket_client):
    alice, bob, carol = auth.user(), auth.user(), auth.user()
    conv = created(client, alice, [bob, carol])
    image = upload(client, bob, PNG, b"team.png")
    sock = socket_client(bob)
    ack = sock.emit("chat message", {"conversation": conv["id"], "content": "look",
                                     "attachments": [image["id"]]}, callback=True)
    assert ack["ok"], ack
    for member in (alice, carol):
        assert download(client, image["id"], member).status_code == 200
    assert remove(client, alice, conv["id"], carol).status_code == 200
    assert_error(download(client, image["id"], carol), 404, "not_found")
    assert download(client, image["id"], alice).status_code == 200
    body = feed(client, alice, conv["id"])
    assert [a["id"] for a in body["messages"][0]["attachments"]] == [image["id"]]


def test_deleting_the_message_makes_its_attachments_unreachable(client, auth):
    alice, bob = auth.user(), auth.user()
    image = upload(client, alice, PNG, b"oops.png")
    message = sent_with(client, alice, bob, [image])
    url = message["attachments"][0]["url"]
    assert fetch(client, url).status_code == 200
    deleted = delete(client, alice, message["id"])
    assert deleted["attachments"] == []
    for response in (download(client, image["id"], bob), download(client, image["id"], alice),
                     fetch(client, url)):
        assert_error(response, 404, "not_found")


@pytest.mark.parametrize("which", ["someone else's", "unknown", "malformed", "eleven"])
def test_a_send_naming_files_that_are_not_yours_is_422_and_stores_nothing(client, auth, which):
    alice, bob = auth.user(), auth.user()
    conv = created(client, alice, [bob])
    ids = {"someone else's": lambda: [upload(client, bob, PNG)["id"]],
           "unknown": lambda: [str(ObjectId())], "malformed": lambda: ["nope"],
           "eleven": lambda: [upload(client, alice, PDF, f"{i}.pdf".encode())["id"]
                              for i in range(11)]}[which]()
    files_before = stored()
    for response in (send(client, alice, bob, "x", attachments=ids),
                     post(client, alice, conv["id"], "x", attachments=ids)):
        error = assert_error(response, 422, "validation_error")
        assert any(k.split(".")[0] == "attachments" for k in error["details"]), error
    assert mongo.db.messages.count_documents({}) == 0
    assert stored() == files_before
    assert feed(client, alice, conv["id"])["messages"] == []


def test_a_sent_upload_is_no_orphan(app, client, auth):
    from datetime import datetime, timedelta, timezone

    from chatapp.attachments import orphans
    alice, bob = auth.user(), auth.user()
    kept, dropped = upload(client, alice, PNG, b"sent.png"), upload(client, alice, PDF)
    sent_with(client, alice, bob, [kept])
    with app.app_context():
        orphans.sweep_orphans(datetime.now(timezone.utc) + timedelta(days=2))
    assert download(client, kept["id"], bob).status_code == 200
    assert_error(download(client, dropped["id"], alice), 404, "not_found")
