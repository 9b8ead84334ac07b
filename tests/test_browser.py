"""The chat page at `/` and Swagger UI at `/api/docs`, driven end to end in Debian's headless
Chromium (never a downloaded one), offline: every request to a host other than loopback is
aborted and recorded, and a test fails on any (both pages load everything from chatapp).

Two browser contexts are two people: they register through the page, find each other, chat
both ways, see typing, read receipts, edits, deletions, history paging and presence. Three
more make a group: created from the page, listed beside direct conversations with unread
counts, its members with their role and read marker, messages and markers moving live. Others
(over REST) drive replies and their previews, reactions, attachments (a PNG made in the test,
shown inline; a text file as a download link), search, blocking, and hostile markup in
content, filenames, emoji and the search box, which must stay text. The
page's Socket.IO client is the one `npm ci` in chatapp/vendor puts in chatapp/static/vendor
(`make test` does); without it (its request aborted) two people still chat, over REST.
"""
import ipaddress
import re
import shutil
import struct
import time
import uuid
import zlib
from pathlib import Path
from urllib.parse import quote, urlsplit

import pytest
import requests
from playwright.sync_api import expect, sync_playwright

ROOT = Path(__file__).resolve().parent.parent
CLIENT_PATH = "/static/vendor/socket.io.min.js"  # where the page loads its Socket.IO client
CLIENT_FILE = ROOT / "chatapp" / CLIENT_PATH.lstrip("/")
CHROMIUM = shutil.which("chromium")
PASSWORD = "correct horse battery"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]

pytestmark = [
    pytest.mark.live,
    pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (CI installs it: .ci/run)"),
    pytest.mark.skip_with_test_mongo_uri(
        "the browser tests check the page, on the REST and socket paths the live-server tests "
        "already run against the database server (and take minutes)"),
]


@pytest.fixture(scope="module")
def browser():
    if not CLIENT_FILE.is_file():
        pytest.fail(f"{CLIENT_FILE} is missing: run `make test` or `cd chatapp/vendor && npm ci`")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


def wait_until(page, expression, timeout=10.0):
    """Poll `expression` with page.evaluate. Not wait_for_function: once it has to poll, it
    compiles the string in the page, which the page's CSP (no 'unsafe-eval') refuses."""
    deadline = time.monotonic() + timeout
    while not page.evaluate(expression):
        assert time.monotonic() < deadline, f"timed out waiting for: {expression}"
        page.wait_for_timeout(50)


def on_loopback(url):
    """Whether a request to `url` stays on this machine (data: and blob: URLs never leave it)."""
    parts = urlsplit(url)
    if parts.scheme in ("data", "blob"):
        return True
    try:
        return parts.hostname == "localhost" or ipaddress.ip_address(parts.hostname).is_loopback
    except ValueError:
        return False


class OfflineTab:
    """One browser context as on a machine without internet: requests to any other host than
    loopback are aborted (never answered) and listed in `blocked`; page errors and console
    errors are listed in `problems`."""

    def __init__(self, browser, url, path="/"):
        self.url = url
        self.context = browser.new_context(viewport={"width": 1000, "height": 640})
        self.context.set_default_timeout(10_000)
        self.blocked = []
        self.context.route(lambda target: not on_loopback(target), self.block)
        self.page = self.context.new_page()
        self.problems = []
        self.requests = []  # (method, path) of every request the page made to the server
        self.closed = False
        self.page.on("pageerror", lambda exc: self.problems.append(f"page error: {exc}"))
        self.page.on("console", self.check_console)
        self.page.on("request", self.check_request)
        self.page.on("websocket", lambda ws: on_loopback(ws.url) or self.blocked.append(ws.url))
        self.prepare()
        self.page.goto(url + path)

    def prepare(self):
        """Called before the page loads."""

    def block(self, route):
        self.blocked.append(route.request.url)
        route.abort("internetdisconnected")

    def check_console(self, msg):
        if msg.type == "error":
            self.problems.append(f"console: {msg.text} ({msg.location.get('url')})")

    def check_request(self, request):
        if request.url.startswith(self.url):
            self.requests.append((request.method, urlsplit(request.url).path))
        elif not request.url.startswith("data:"):
            self.problems.append(f"request off-site: {request.url}")

    def close(self):
        if not self.closed:
            self.closed = True
            self.context.close()


class Person(OfflineTab):
    """One person on the chat page. `live=False`: the page's Socket.IO client does not load
    (its request is aborted, as if it were not installed), so the page must work over REST."""

    def __init__(self, browser, url, live=True):
        self.live = live
        super().__init__(browser, url)

    def prepare(self):
        if not self.live:
            self.context.route(f"**{CLIENT_PATH}", lambda route: route.abort())

    def check_console(self, msg):
        """Without the client, the one error expected is its failed load (not a script error)."""
        if (not self.live and msg.location.get("url", "").endswith(CLIENT_PATH)
                and msg.text.startswith("Failed to load resource")):
            return
        super().check_console(msg)

    def check_request(self, request):
        super().check_request(request)
        if not self.live and "/socket.io/" in request.url:
            self.problems.append(f"socket connection tried without the client: {request.url}")

    def register(self, name):
        page = self.page
        page.fill("#auth-form [name=username]", name)
        page.fill("#auth-form [name=email]", f"{name}@example.com")
        page.fill("#auth-form [name=password]", PASSWORD)
        page.click("#auth-form button[name=register]")
        expect(page.locator("#me")).to_have_text(name)
        if self.live:
            assert page.evaluate("typeof io") == "function", self.problems  # chatapp's copy ran
            expect(page.locator("#notice")).to_be_hidden()
            # Polling first, then the upgrade: the CSP (connect-src 'self') allows the WebSocket.
            wait_until(page, "socket?.io.engine?.transport.name === 'websocket'")
        else:
            assert page.evaluate("typeof io") == "undefined"
            expect(page.locator("#notice")).to_contain_text("Live updates are off")
        assert not self.problems and not self.blocked, self.problems + self.blocked
        self.name = name
        self.session = page.evaluate("JSON.parse(sessionStorage.getItem('chatapp'))")

    def conversation(self, peer):
        return self.page.locator("#conversations li.direct", has_text=peer.name)

    def message(self, text, mine):
        return self.page.locator(f"#list li.{'mine' if mine else 'theirs'}", has_text=text)

    def said(self, text, mine):
        """The message whose own text is exactly `text` (not a reply quoting it)."""
        content = self.page.locator(".content", has_text=re.compile(f"^{re.escape(text)}$"))
        return self.page.locator(f"#list li.{'mine' if mine else 'theirs'}").filter(has=content)

    def send(self, text):
        self.page.locator("#text").press_sequentially(text)
        self.page.press("#text", "Enter")
        expect(self.message(text, mine=True)).to_be_visible()

    @property
    def id(self):
        return self.session["me"]["id"]

    def group(self, title):
        return self.page.locator("#conversations li.group", has_text=title)

    def member(self, person):
        """`person`'s entry in the open group's member list."""
        return self.page.locator(f"#members li[data-user='{person.id}']")

    def pick(self, person):
        """In the new-group form: find `person` in the users list and tick them."""
        self.page.fill("#group-find", person.name)
        expect(self.page.locator("#candidates li")).to_have_count(1)  # the filtered list
        self.page.locator(f"#candidates li[data-user='{person.id}'] input").check()


def test_two_people_chat_in_the_browser(live_server, browser, tmp_path):
    tag = uuid.uuid4().hex[:6]
    alice, bob = Person(browser, live_server.url), Person(browser, live_server.url)
    try:
        alice.register(f"alice_{tag}")
        bob.register(f"bob_{tag}")

        # Alice finds Bob and writes first; Bob sees an unread badge and Alice online. Presence
        # is shown to people who share a conversation: Bob's dot is green once there is one.
        alice.page.fill("#find", bob.name)
        alice.page.locator("#found li", has_text=bob.name).click()
        expect(alice.page.locator("#peer-name")).to_have_text(bob.name)
        alice.send("hello bob")
        expect(alice.page.locator("#peer-dot")).to_have_class("dot online")
        expect(bob.conversation(alice).locator(".badge")).to_have_text("1")
        expect(bob.conversation(alice).locator(".dot")).to_have_class("dot online")

        # Bob opens it: the message is there, the badge goes, Alice gets a read receipt.
        bob.conversation(alice).click()
        expect(bob.message("hello bob", mine=False)).to_be_visible()
        expect(bob.conversation(alice).locator(".badge")).to_have_count(0)
        expect(alice.message("hello bob", mine=True).locator(".status")).to_have_text("read")

        # Bob types: Alice sees it; Bob sends: Alice gets it (and reads it, as it is open).
        bob.page.locator("#text").press_sequentially("hi alice")
        expect(alice.page.locator("#typing")).to_have_text(f"{bob.name} is typing…")
        bob.page.press("#text", "Enter")
        expect(alice.message("hi alice", mine=False)).to_be_visible()
        expect(alice.page.locator("#typing")).to_have_text("")
        expect(bob.message("hi alice", mine=True).locator(".status")).to_have_text("read")
        alice.send("how are you?")
        expect(bob.message("how are you?", mine=False)).to_be_visible()

        # Alice edits, then deletes, her first message: Bob's page follows.
        alice.page.once("dialog", lambda dialog: dialog.accept("hello bob (edited)"))
        alice.message("hello bob", mine=True).get_by_role("button", name="edit").click()
        expect(bob.message("hello bob (edited)", mine=False)).to_contain_text("edited")
        alice.page.once("dialog", lambda dialog: dialog.accept())
        alice.message("hello bob (edited)", mine=True).get_by_role("button", name="delete").click()
        expect(bob.message("message deleted", mine=False)).to_have_count(1)
        expect(bob.page.locator("#list li")).to_have_count(3)
        bob.page.screenshot(path=tmp_path / "bob.png")
        alice.page.screenshot(path=tmp_path / "alice.png")

        # History paging: after 35 more messages the page shows 30 and loads the rest on demand.
        for i in range(35):
            sent = requests.post(f"{live_server.url}/api/chat/send", timeout=10,
                                 headers={"Authorization": f"Bearer {alice.session['token']}"},
                                 json={"receiver": bob.session["me"]["id"], "content": f"bulk {i}"})
            assert sent.status_code == 201, sent.text
        bob.page.reload()
        bob.conversation(alice).click()
        expect(bob.page.locator("#list li")).to_have_count(30)
        bob.page.click("#older")
        expect(bob.page.locator("#list li")).to_have_count(38)
        expect(bob.page.locator("#older")).to_be_hidden()
        expect(bob.page.locator("#list li").first).to_contain_text("message deleted")
        expect(bob.page.locator("#list li").last).to_contain_text("bulk 34")

        # Presence: Alice leaves, Bob sees her go offline.
        alice.close()
        expect(bob.page.locator("#peer-dot")).to_have_class("dot")
        expect(bob.conversation(alice).locator(".dot")).to_have_class("dot")

        assert (tmp_path / "bob.png").stat().st_size > 0
        assert not alice.problems and not bob.problems, alice.problems + bob.problems
        assert not alice.blocked and not bob.blocked, alice.blocked + bob.blocked
    finally:
        for person in (alice, bob):
            person.close()


def test_group_chat_in_the_browser(live_server, browser, tmp_path):
    """Three people: Ann makes a group with Ben and Cat; messages arrive live in it, beside
    the direct conversations, and everyone's read marker moves on the others' pages."""
    tag = uuid.uuid4().hex[:6]
    ann, ben, cat = (Person(browser, live_server.url) for _ in range(3))
    title = f"Trip <b>{tag}</b>"  # user text is shown as text, never parsed as HTML
    try:
        for person, name in ((ann, "ann"), (ben, "ben"), (cat, "cat")):
            person.register(f"{name}_{tag}")
        # Cat and Ann already have a direct conversation: it stays listed beside the group.
        cat.page.fill("#find", ann.name)
        cat.page.locator("#found li", has_text=ann.name).click()
        cat.send("hi ann, direct")
        expect(ann.conversation(cat).locator(".badge")).to_have_text("1")

        # Ann creates the group, picking Ben and Cat from the users list.
        ann.page.click("#new-group")
        ann.page.fill("#group-form [name=title]", title)
        expect(ann.page.locator("#candidates li").first).to_be_visible()
        ann.pick(ben)
        ann.pick(cat)
        expect(ann.page.locator("#picked")).to_have_text(f"With: {ben.name}, {cat.name}")
        ann.page.screenshot(path=tmp_path / "new-group.png")
        ann.page.click("#group-form button[name=create]")
        expect(ann.page.locator("#group-form")).to_be_hidden()
        expect(ann.page.locator("#peer-name")).to_have_text(title)
        expect(ann.page.locator("#members li")).to_have_count(3)
        expect(ann.member(ann).locator(".role")).to_have_text("owner")
        expect(ann.member(ben).locator(".role")).to_have_text("member")
        expect(ann.member(cat).locator(".read")).to_have_text("nothing read yet")
        expect(ann.group(title)).to_have_count(1)
        expect(ann.conversation(cat)).to_have_count(1)  # the direct one, still listed
        assert ann.page.locator("#conversations b, #peer-name b, #info b").count() == 0

        # Ben and Cat see the new group appear without reloading; Cat opens it.
        expect(ben.group(title)).to_be_visible()
        expect(cat.group(title)).to_be_visible()
        cat.group(title).click()
        expect(cat.page.locator("#peer-name")).to_have_text(title)
        expect(cat.member(ann).locator(".role")).to_have_text("owner")

        # Ann types and sends: Cat (viewing) sees both live, Ben gets an unread badge.
        ann.page.locator("#text").press_sequentially("hello group")
        expect(cat.page.locator("#typing")).to_have_text(f"{ann.name} is typing…")
        ann.page.press("#text", "Enter")
        expect(ann.message("hello group", mine=True)).to_be_visible()
        first = cat.message("hello group", mine=False)
        expect(first).to_be_visible()
        expect(first.locator(".sender")).to_have_text(ann.name)
        expect(cat.page.locator("#typing")).to_have_text("")
        expect(ben.group(title).locator(".badge")).to_have_text("1")
        expect(ben.group(title).locator(".preview")).to_have_text(f"{ann.name}: hello group")
        seq = ann.message("hello group", mine=True).get_attribute("data-seq")

        # Cat had it on screen, so it is read: her marker moves on Ann's page; Ben's does not.
        expect(ann.member(cat).locator(".read")).to_have_text(f"read up to message {seq}")
        expect(ann.member(ben).locator(".read")).to_have_text("nothing read yet")
        expect(ann.message("hello group", mine=True).locator(".seen")).to_have_text(
            f"seen by {cat.name}")

        # The unread count comes from the server too: Ben reloads, the badge is still there.
        ben.page.reload()
        expect(ben.group(title).locator(".badge")).to_have_text("1")
        ben.group(title).click()
        expect(ben.message("hello group", mine=False)).to_be_visible()
        expect(ben.group(title).locator(".badge")).to_have_count(0)
        for page_of in (ann, cat):
            expect(page_of.member(ben).locator(".read")).to_have_text(f"read up to message {seq}")
        expect(ann.message("hello group", mine=True).locator(".seen")).to_contain_text(ben.name)

        # Ben answers with markup: it arrives live for both others, as text.
        reply = '<img src="x"> not an image'
        ben.send(reply)
        for page_of in (ann, cat):
            expect(page_of.message(reply, mine=False)).to_be_visible()
            expect(page_of.message(reply, mine=False).locator(".sender")).to_have_text(ben.name)
            assert page_of.page.locator("#list img").count() == 0
        reply_seq = ben.message(reply, mine=True).get_attribute("data-seq")
        assert int(reply_seq) > int(seq)
        # Both had the group open: both read it, and Ben sees both markers move.
        expect(ben.member(ann).locator(".read")).to_have_text(f"read up to message {reply_seq}")
        expect(ben.member(cat).locator(".read")).to_have_text(f"read up to message {reply_seq}")

        expect(cat.member(cat).locator(".read")).to_have_text(f"read up to message {reply_seq}")

        # The direct conversation keeps working beside the group: Ann opens it, Cat (looking
        # at it too) gets the read receipt.
        cat.conversation(ann).click()
        expect(cat.page.locator("#info")).to_be_hidden()
        expect(cat.message("hi ann, direct", mine=True).locator(".status")).to_have_text("")
        ann.conversation(cat).click()
        expect(ann.page.locator("#info")).to_be_hidden()
        expect(ann.message("hi ann, direct", mine=False)).to_be_visible()
        expect(cat.message("hi ann, direct", mine=True).locator(".status")).to_have_text("read")
        # ...and a group message arriving meanwhile counts as unread there.
        cat.group(title).click()
        cat.send("back to the group")
        expect(ann.group(title).locator(".badge")).to_have_text("1")
        expect(ann.page.locator("#list li")).to_have_count(1)  # not shown in the direct pane
        ann.page.screenshot(path=tmp_path / "ann.png")
        cat.page.screenshot(path=tmp_path / "cat.png")

        # Ann (the owner) removes Ben: Cat's member list follows live; Ben's page drops the group.
        group_id = ann.group(title).get_attribute("data-conversation")
        removed = requests.delete(
            f"{live_server.url}/api/chat/conversations/{group_id}/members/{ben.id}", timeout=10,
            headers={"Authorization": f"Bearer {ann.session['token']}"})
        assert removed.status_code == 200, removed.text
        expect(cat.page.locator("#members li")).to_have_count(2)
        expect(cat.member(ben)).to_have_count(0)
        expect(ben.group(title)).to_have_count(0)
        expect(ben.page.locator("#error")).to_have_text(f"You are no longer in {title}.")
        expect(ben.page.locator("#text")).to_be_disabled()

        problems = ann.problems + ben.problems + cat.problems
        assert not problems, problems
        blocked = ann.blocked + ben.blocked + cat.blocked
        assert not blocked, blocked
    finally:
        for person in (ann, ben, cat):
            person.close()


class RestUser:
    """Someone who is not in a browser: registered and acting over REST from the test."""

    def __init__(self, url, name):
        self.url, self.name = url, name
        email = f"{name}@example.com"
        created = requests.post(f"{url}/api/user/register", timeout=10,
                                json={"username": name, "email": email, "password": PASSWORD})
        assert created.status_code == 201, created.text
        login = requests.post(f"{url}/api/user/login", timeout=10,
                              json={"email": email, "password": PASSWORD})
        assert login.status_code == 200, login.text
        self.token, self.id = login.json()["access_token"], login.json()["userId"]

    def call(self, method, path, body=None, status=200):
        answer = requests.request(method, self.url + path, json=body, timeout=10,
                                  headers={"Authorization": f"Bearer {self.token}"})
        assert answer.status_code == status, answer.text
        return answer.json()

    def send(self, receiver, content, status=201, **extra):
        """A direct message to `receiver` (a user id): the stored Message (201), else the error."""
        answer = self.call("POST", "/api/chat/send",
                           {"receiver": receiver, "content": content, **extra}, status=status)
        return answer["message"] if status == 201 else answer["error"]

    def history(self, peer, limit=20):
        return self.call("GET", f"/api/chat/messages/{self.id}/{peer}?limit={limit}")

    def upload(self, filename, data):
        """POST /api/chat/attachments (multipart, one part `file`): the Attachment."""
        answer = requests.post(f"{self.url}/api/chat/attachments", timeout=10,
                               headers={"Authorization": f"Bearer {self.token}"},
                               files={"file": (filename, data, "application/octet-stream")})
        assert answer.status_code == 201, answer.text
        return answer.json()["attachment"]


# What a browser without network logs by itself (Socket.IO's reconnection attempts failing).
OFFLINE_NOISE = "net::ERR_INTERNET_DISCONNECTED"


def go_offline(person):
    """The person's network goes: the browser is offline and the open connection drops, as when
    a laptop leaves the Wi-Fi. Socket.IO keeps retrying, and the page says it is offline."""
    person.context.set_offline(True)
    person.page.evaluate("socket.io.engine.close()")
    wait_until(person.page, "!socket.connected")
    expect(person.page.locator("#error")).to_contain_text("offline", timeout=15_000)
    person.page.evaluate("document.body.dataset.probe = 'same page'")  # gone if it reloads
    return len(person.requests)


def eventually(check, what, timeout=10.0):
    """Poll `check()` (the server's view, over REST) until it is true, for at most `timeout`."""
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for: {what}"
        time.sleep(0.1)


def come_back(person):
    """The network is back: Socket.IO reconnects by itself, within its reconnection delay (at
    most 5 s); the page's catch-up then runs."""
    person.context.set_offline(False)
    wait_until(person.page, "socket.connected", timeout=20)


def assert_caught_up_in_place(person, before, conversation):
    """Since `before` (go_offline's answer): no reload, the change feed of `conversation` was
    read, and no history was fetched again."""
    assert person.page.evaluate("document.body.dataset.probe") == "same page"
    since_back = person.requests[before:]
    assert ("GET", f"/api/chat/conversations/{conversation}/changes") in since_back, since_back
    assert not [(method, path) for method, path in since_back if method == "GET" and (
        path.startswith("/api/chat/messages/") or path.endswith("/messages"))], since_back
    expect(person.page.locator("#error")).to_have_text("")


def test_a_page_back_online_catches_up_without_a_reload(live_server, browser):
    """Alice's page is open on her conversation with Bob when her network goes. Meanwhile Bob
    (over REST) edits one of his messages, deletes another and sends a new one. Her network
    comes back: Socket.IO reconnects by itself and the page catches up through the change feed
    (`GET /api/chat/conversations/<id>/changes`, the README's procedure): the edit, the deletion
    and the new message appear, with no reload and without refetching the history."""
    tag = uuid.uuid4().hex[:6]
    alice = Person(browser, live_server.url)
    try:
        alice.register(f"alice_{tag}")
        bob = RestUser(live_server.url, f"bob_{tag}")
        sent = {}
        for text in ("keep this", "edit this", "delete this"):
            sent[text] = bob.call("POST", "/api/chat/send", {"receiver": alice.id, "content": text},
                                  status=201)["message"]
        conversation = sent["keep this"]["conversation"]

        # The conversation arrives live; Alice opens it and sees the three messages.
        expect(alice.conversation(bob).locator(".badge")).to_have_text("3")
        alice.conversation(bob).click()
        for text in sent:
            expect(alice.message(text, mine=False)).to_be_visible()
        page = alice.page
        before = go_offline(alice)
        bob.call("PATCH", f"/api/chat/messages/{sent['edit this']['id']}",
                 {"content": "edited while you were away"})
        bob.call("DELETE", f"/api/chat/messages/{sent['delete this']['id']}")
        bob.call("POST", "/api/chat/send", {"receiver": alice.id,
                                            "content": "sent while you were away"}, status=201)
        assert not page.evaluate("socket.connected")
        expect(alice.message("edit this", mine=False)).not_to_contain_text("edited")
        expect(alice.message("delete this", mine=False)).to_be_visible()

        come_back(alice)
        edited = alice.message("edited while you were away", mine=False)
        expect(edited).to_contain_text("edited")
        expect(alice.message("message deleted", mine=False)).to_have_count(1)
        expect(alice.message("delete this", mine=False)).to_have_count(0)
        expect(alice.message("sent while you were away", mine=False)).to_be_visible()
        expect(page.locator("#list li")).to_have_text(
            [re.compile("keep this"), re.compile("edited while you were away"),
             re.compile("message deleted"), re.compile("sent while you were away")])
        assert_caught_up_in_place(alice, before, conversation)
        # The new message, on screen, is read: Bob's history says so.
        eventually(lambda: bob.call("GET", f"/api/chat/messages/{bob.id}/{alice.id}?limit=1")[0][
            "read_at"], "the message caught up marked read")

        problems = [p for p in alice.problems if OFFLINE_NOISE not in p]
        assert not problems, problems
        assert not alice.blocked, alice.blocked
    finally:
        alice.close()


def test_a_group_page_back_online_catches_up_members_title_and_leaving(live_server, browser):
    """The group side of the same catch-up: while Ann's page is offline with the group open, Ben
    renames it, adds Cal, edits his message and sends another, and Cal reads it; back online,
    her page shows all of it (title, members, Cal's read marker, messages) without a reload.
    Offline again, Ben removes her: back online, the group is gone from her page."""
    tag = uuid.uuid4().hex[:6]
    ann = Person(browser, live_server.url)
    try:
        ann.register(f"ann_{tag}")
        ben, cal = RestUser(live_server.url, f"ben_{tag}"), RestUser(live_server.url, f"cal_{tag}")
        group = ben.call("POST", "/api/chat/groups", {"title": f"Before {tag}",
                                                      "members": [ann.id]}, status=201)
        group_id = group["conversation"]["id"]
        path = f"/api/chat/conversations/{group_id}"
        first = ben.call("POST", f"{path}/messages", {"content": "first"}, status=201)["message"]
        ann.group(f"Before {tag}").click()
        expect(ann.message("first", mine=False)).to_be_visible()
        expect(ann.page.locator("#members li")).to_have_count(2)

        page = ann.page
        before = go_offline(ann)
        ben.call("PATCH", path, {"title": f"After {tag}"})
        ben.call("POST", f"{path}/members", {"user_ids": [cal.id]})
        ben.call("PATCH", f"/api/chat/messages/{first['id']}", {"content": "first, edited"})
        second = ben.call("POST", f"{path}/messages", {"content": "second"}, status=201)["message"]
        cal.call("POST", f"{path}/read", {})
        expect(page.locator("#peer-name")).to_have_text(f"Before {tag}")

        come_back(ann)
        expect(page.locator("#peer-name")).to_have_text(f"After {tag}")
        expect(page.locator("#group-title")).to_have_text(f"After {tag}")
        expect(ann.group(f"After {tag}")).to_have_count(1)
        expect(ann.message("first, edited", mine=False)).to_contain_text("edited")
        expect(ann.message("second", mine=False)).to_be_visible()
        expect(page.locator("#members li")).to_have_count(3)
        expect(ann.member(cal).locator(".read")).to_have_text(
            f"read up to message {second['seq']}")
        # Ann's page read the new message: her marker moved, on the server too.
        expect(ann.member(ann).locator(".read")).to_have_text(
            f"read up to message {second['seq']}")
        eventually(lambda: {m["user"]["id"]: m["read_up_to"] for m in ben.call("GET", path)[
            "members"]}[ann.id] == second["seq"], "Ann's read marker on the server")
        assert_caught_up_in_place(ann, before, group_id)

        # Removed while offline: the list no longer has the group, so the page lets it go.
        go_offline(ann)
        ben.call("DELETE", f"{path}/members/{ann.id}")
        come_back(ann)
        expect(ann.group(f"After {tag}")).to_have_count(0)
        expect(page.locator("#error")).to_have_text("You are no longer in this group.")
        expect(page.locator("#text")).to_be_disabled()

        problems = [p for p in ann.problems if OFFLINE_NOISE not in p]
        assert not problems, problems
        assert not ann.blocked, ann.blocked
    finally:
        ann.close()


def test_without_the_socket_client_the_page_chats_over_rest(live_server, browser):
    """The page's Socket.IO client is not there (`make run` without npm): it says live updates
    are off, sends over REST and fetches new messages by polling, with no script error."""
    tag = uuid.uuid4().hex[:6]
    ada, bo = (Person(browser, live_server.url, live=False) for _ in range(2))
    try:
        ada.register(f"ada_{tag}")
        bo.register(f"bo_{tag}")

        ada.page.fill("#find", bo.name)
        ada.page.locator("#found li", has_text=bo.name).click()
        ada.send("hello over rest")
        assert ("POST", "/api/chat/send") in ada.requests
        # Bo's page learns of it by polling: an unread badge, then the message.
        expect(bo.conversation(ada).locator(".badge")).to_have_text("1")
        bo.conversation(ada).click()
        expect(bo.message("hello over rest", mine=False)).to_be_visible()
        expect(bo.conversation(ada).locator(".badge")).to_have_count(0)

        # Both have the conversation open: each sees the other's next message arrive.
        bo.send("polled back")
        expect(ada.message("polled back", mine=False)).to_be_visible()
        ada.send("and again")
        expect(bo.message("and again", mine=False)).to_be_visible()
        expect(bo.page.locator("#list li")).to_have_count(3)  # each message once

        # A group, over REST too.
        title = f"Offline {tag}"
        ada.page.click("#new-group")
        ada.page.fill("#group-form [name=title]", title)
        ada.pick(bo)
        ada.page.click("#group-form button[name=create]")
        expect(ada.page.locator("#peer-name")).to_have_text(title)
        ada.send("group over rest")
        group_id = ada.group(title).get_attribute("data-conversation")
        assert ("POST", f"/api/chat/conversations/{group_id}/messages") in ada.requests
        expect(bo.group(title).locator(".badge")).to_have_text("1")
        bo.group(title).click()
        expect(bo.message("group over rest", mine=False)).to_be_visible()
        # Bo has read it (over REST): Ada's member list shows his marker once she polls.
        seq = ada.message("group over rest", mine=True).get_attribute("data-seq")
        expect(ada.member(bo).locator(".read")).to_have_text(f"read up to message {seq}")

        problems = ada.problems + bo.problems
        assert not problems, problems
        blocked = ada.blocked + bo.blocked
        assert not blocked, blocked
    finally:
        for person in (ada, bo):
            person.close()


def test_api_docs_render_offline(live_server, browser):
    """Swagger UI at /api/docs comes from chatapp: it renders every operation with no
    request to another host."""
    tab = OfflineTab(browser, live_server.url, "/api/docs")
    try:
        operations = tab.page.locator(".opblock")
        expect(operations.first).to_be_visible()
        expect(tab.page.locator(".opblock-summary-path", has_text="/api/chat/send")).to_have_count(1)
        assert operations.count() > 20, operations.count()
        assert ("GET", "/api/openapi.json") in tab.requests
        assert not tab.problems, tab.problems
        assert not tab.blocked, tab.blocked
    finally:
        tab.close()


def tiny_png(width=3, height=2, rgb=(47, 111, 222)):
    """A valid PNG of one colour, made here (no file in the repository)."""
    def chunk(kind, data):
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))
    rows = b"".join(b"\x00" + bytes(rgb) * width for _ in range(height))
    return (b"\x89PNG\r\n\x1a\n"
            + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))


def reactions_of(user, peer, message_id):
    """A message's reactions as the server has them (from `user`'s history with `peer`)."""
    return next(m for m in user.history(peer) if m["id"] == message_id)["reactions"]


def test_replies_and_reactions_in_the_browser(live_server, browser):
    """Alice (the page) replies to Bob's message (REST): the composer says what it replies to,
    the reply shows the original's preview, which follows Bob's edit live and his deletion
    through the change feed (her page offline meanwhile). She reacts with a quick emoji (the
    count shows; a second click takes it back) and Bob's reactions arrive live."""
    tag = uuid.uuid4().hex[:6]
    alice = Person(browser, live_server.url)
    try:
        alice.register(f"alice_{tag}")
        page = alice.page
        bob = RestUser(live_server.url, f"bob_{tag}")
        original = bob.send(alice.id, "which day works for you?")
        conversation = original["conversation"]
        expect(alice.conversation(bob).locator(".badge")).to_have_text("1")
        alice.conversation(bob).click()
        theirs = alice.said("which day works for you?", mine=False)
        expect(theirs).to_be_visible()

        # Reply: the composer says to what; the reply, once sent, quotes it.
        expect(page.locator("#replying")).to_be_hidden()
        theirs.get_by_role("button", name="reply").click()
        expect(page.locator("#replying")).to_be_visible()
        expect(page.locator("#replying .label")).to_have_text(
            f"Replying to {bob.name}: which day works for you?")
        page.locator("#text").press_sequentially("friday")
        page.press("#text", "Enter")
        reply = alice.said("friday", mine=True)
        expect(reply.locator(".quote .who")).to_have_text(bob.name)
        expect(reply.locator(".quote .text")).to_have_text("which day works for you?")
        expect(page.locator("#replying")).to_be_hidden()
        stored = bob.history(alice.id, limit=1)[0]
        assert stored["content"] == "friday", stored
        assert stored["reply_to"] == {"id": original["id"], "sender": bob.id,
                                      "content": "which day works for you?", "deleted": False}

        # Bob edits his original over REST: the preview in Alice's reply follows, live.
        bob.call("PATCH", f"/api/chat/messages/{original['id']}",
                 {"content": "which day works for you? (not monday)"})
        expect(reply.locator(".quote .text")).to_have_text("which day works for you? (not monday)")

        # Bob's own reply to hers arrives live with its preview ("you": hers).
        answer = bob.send(alice.id, "friday it is", reply_to=stored["id"])
        bobs_reply = alice.said("friday it is", mine=False)
        expect(bobs_reply.locator(".quote .who")).to_have_text("you")
        expect(bobs_reply.locator(".quote .text")).to_have_text("friday")

        # Offline, Bob deletes the original: back online, the change feed brings the deletion
        # and the preview says so.
        before = go_offline(alice)
        bob.call("DELETE", f"/api/chat/messages/{original['id']}")
        come_back(alice)
        expect(reply.locator(".quote")).to_have_class(re.compile(r"\bdeleted\b"))
        expect(reply.locator(".quote .text")).to_have_text("message deleted")
        assert_caught_up_in_place(alice, before, conversation)
        expect(page.locator("#list li.deleted .reply")).to_have_count(0)  # no reply to it now

        # Reactions: a click on a quick emoji adds Alice's; the count shows, the server has it.
        thumbs = bobs_reply.locator(".reactions button[data-emoji='👍']")
        expect(thumbs.locator(".count")).to_have_text("")
        thumbs.click()
        expect(thumbs.locator(".count")).to_have_text("1")
        expect(thumbs).to_have_attribute("aria-pressed", "true")
        eventually(lambda: reactions_of(bob, alice.id, answer["id"]) == {"👍": [alice.id]},
                   "Alice's reaction stored")
        # Bob's reactions (REST) arrive live: one on the same emoji, one that is not a quick one.
        bob.call("PUT", f"/api/chat/messages/{answer['id']}/reactions/{quote('👍')}")
        bob.call("PUT", f"/api/chat/messages/{answer['id']}/reactions/{quote('🎉')}")
        expect(thumbs.locator(".count")).to_have_text("2")
        party = bobs_reply.locator(".reactions button[data-emoji='🎉']")
        expect(party.locator(".count")).to_have_text("1")
        expect(party).to_have_attribute("aria-pressed", "false")
        # A second click takes hers back.
        thumbs.click()
        expect(thumbs.locator(".count")).to_have_text("1")
        expect(thumbs).to_have_attribute("aria-pressed", "false")
        eventually(lambda: reactions_of(bob, alice.id, answer["id"])
                   == {"👍": [bob.id], "🎉": [bob.id]}, "Alice's reaction removed")
        bob.call("DELETE", f"/api/chat/messages/{answer['id']}/reactions/{quote('🎉')}")
        expect(party).to_have_count(0)  # nobody's any more, and not a quick one

        problems = [p for p in alice.problems if OFFLINE_NOISE not in p]
        assert not problems, problems
        assert not alice.blocked, alice.blocked
    finally:
        alice.close()


def test_search_in_the_browser(live_server, browser):
    """The search box finds messages of Alice's conversations (every word, case and accents
    aside), newest first; a click opens the result's conversation at that message, loading
    older history until it is on screen."""
    tag = uuid.uuid4().hex[:6]
    alice = Person(browser, live_server.url)
    try:
        alice.register(f"alice_{tag}")
        page = alice.page
        bob = RestUser(live_server.url, f"bob_{tag}")
        cal = RestUser(live_server.url, f"cal_{tag}")
        word = f"Café{tag}"  # a word no other test's message has
        hit = bob.send(alice.id, f"the {word} opens at nine")
        for i in range(35):  # the hit is beyond the first page of history
            bob.send(alice.id, f"filler {i}")
        group = cal.call("POST", "/api/chat/groups", {"title": f"Lunch {tag}",
                                                      "members": [alice.id]}, status=201)
        group_id = group["conversation"]["id"]
        cal.call("POST", f"/api/chat/conversations/{group_id}/messages",
                 {"content": f"lunch at the {word.lower().replace('é', 'e')} today?"}, status=201)
        cal.call("POST", f"/api/chat/conversations/{group_id}/messages",
                 {"content": "lunch somewhere else"}, status=201)
        expect(alice.group(f"Lunch {tag}")).to_be_visible()

        page.fill("#search", f"CAFE{tag} LUNCH")  # every word must match: the group one only
        page.press("#search", "Enter")
        expect(page.locator("#results li")).to_have_count(1)
        expect(page.locator("#results li .where")).to_have_text(f"# Lunch {tag}")

        page.fill("#search", f"cafe{tag}")
        page.press("#search", "Enter")
        results = page.locator("#results li")
        expect(results).to_have_text([re.compile(f"Lunch {tag}.*lunch at the cafe{tag}"),
                                      re.compile(f"{bob.name}.*the {word} opens at nine")])
        results.nth(1).click()
        expect(page.locator("#peer-name")).to_have_text(bob.name)
        found = alice.said(f"the {word} opens at nine", mine=False)
        expect(found).to_be_visible()
        expect(found).to_be_in_viewport()
        assert page.locator("#list li").count() > 30  # older pages were loaded to reach it

        results.nth(0).click()
        expect(page.locator("#peer-name")).to_have_text(f"Lunch {tag}")
        expect(alice.said(f"lunch at the cafe{tag} today?", mine=False)).to_be_in_viewport()

        page.fill("#search", f"nothing{tag}")
        page.press("#search", "Enter")
        expect(page.locator("#results li")).to_have_text(["No messages found."])
        page.fill("#search", "")
        expect(page.locator("#results li")).to_have_count(0)
        assert hit["conversation"]

        assert not alice.problems, alice.problems
        assert not alice.blocked, alice.blocked
    finally:
        alice.close()


def test_blocking_in_the_browser(live_server, browser):
    """Alice blocks Bob from their conversation's header: his sends get 403 and hers show the
    server's refusal; unblocking restores both. Bob blocking her: her send shows his refusal."""
    tag = uuid.uuid4().hex[:6]
    alice = Person(browser, live_server.url)
    try:
        alice.register(f"alice_{tag}")
        page = alice.page
        bob = RestUser(live_server.url, f"bob_{tag}")
        bob.send(alice.id, "hi alice")
        expect(alice.conversation(bob).locator(".badge")).to_have_text("1")
        alice.conversation(bob).click()
        expect(alice.said("hi alice", mine=False)).to_be_visible()

        block = page.locator("#block")
        expect(block).to_have_text("Block")
        page.once("dialog", lambda dialog: dialog.accept())  # "Block bob? ..."
        block.click()
        expect(block).to_have_text("Unblock")
        blocks = requests.get(f"{live_server.url}/api/user/blocks", timeout=10,
                              headers={"Authorization": f"Bearer {alice.session['token']}"})
        assert [u["id"] for u in blocks.json()["users"]] == [bob.id], blocks.text
        refused = bob.send(alice.id, "are you there?", status=403)
        assert refused["code"] == "forbidden", refused
        # Her own send is refused too while she blocks him: the page shows the server's reason.
        page.locator("#text").press_sequentially("one more thing")
        page.press("#text", "Enter")
        expect(page.locator("#error")).to_have_text(
            "you blocked this user: unblock them to send a message")
        expect(page.locator("#text")).to_have_value("one more thing")  # kept, to send later
        expect(alice.said("one more thing", mine=True)).to_have_count(0)

        block.click()  # unblocking asks nothing
        expect(block).to_have_text("Block")
        bob.send(alice.id, "back again")
        expect(alice.said("back again", mine=False)).to_be_visible()
        expect(alice.said("are you there?", mine=False)).to_have_count(0)  # never stored

        # Bob blocks her (REST): her send shows his refusal; once he unblocks, it goes.
        bob.call("PUT", f"/api/user/blocks/{alice.id}")
        page.press("#text", "Enter")
        expect(page.locator("#error")).to_have_text("this user does not accept your messages")
        bob.call("DELETE", f"/api/user/blocks/{alice.id}")
        page.press("#text", "Enter")
        expect(alice.said("one more thing", mine=True)).to_be_visible()
        expect(page.locator("#error")).to_have_text("")
        assert [m["content"] for m in bob.history(alice.id, limit=3)] == [
            "one more thing", "back again", "hi alice"]

        assert not alice.problems, alice.problems
        assert not alice.blocked, alice.blocked
    finally:
        alice.close()


def test_attachments_in_the_browser(live_server, browser):
    """Alice picks a PNG (made here) in the composer: it uploads, goes with her message and
    shows inline on her page, from its signed URL; Bob (REST) gets it in the message. His
    text file shows on her page as a download link named by its filename; his PNG inline."""
    tag = uuid.uuid4().hex[:6]
    alice = Person(browser, live_server.url)
    try:
        alice.register(f"alice_{tag}")
        page = alice.page
        bob = RestUser(live_server.url, f"bob_{tag}")
        bob.send(alice.id, "send me the picture")
        alice.conversation(bob).click()
        expect(alice.said("send me the picture", mine=False)).to_be_visible()

        png = tiny_png(3, 2)
        page.set_input_files("#file", files=[{"name": "dot.png", "mimeType": "image/png",
                                              "buffer": png}])
        chip = page.locator("#pending .chip")
        expect(chip.locator(".name")).to_have_text("dot.png")
        expect(chip.locator(".status")).not_to_contain_text("uploading")
        page.locator("#text").press_sequentially("here it is")
        page.press("#text", "Enter")
        mine = alice.said("here it is", mine=True)
        image = mine.locator(".attachments img")
        expect(image).to_have_attribute("alt", "dot.png")
        assert image.get_attribute("src").startswith("/api/chat/attachments/")
        wait_until(page, "[...document.querySelectorAll('#list .attachments img')].some("
                         "(img) => img.complete && img.naturalWidth === 3)")
        expect(page.locator("#pending")).to_be_hidden()
        sent = bob.history(alice.id, limit=1)[0]
        assert sent["content"] == "here it is"
        [attachment] = sent["attachments"]
        assert (attachment["filename"], attachment["content_type"], attachment["size"]) == (
            "dot.png", "image/png", len(png))
        # The signed URL needs no token: the bytes are the PNG.
        fetched = requests.get(live_server.url + attachment["url"], timeout=10)
        assert fetched.status_code == 200 and fetched.content == png

        # Bob sends a text file and a picture: a link named by the file, and an image.
        notes = bob.upload("notes for alice.txt", b"bring a tent\n")
        picture = bob.upload("bob.png", tiny_png(4, 4, (200, 30, 30)))
        bob.send(alice.id, "two files", attachments=[notes["id"], picture["id"]])
        theirs = alice.said("two files", mine=False)
        link = theirs.locator(".attachments a.file")
        expect(link).to_have_text("notes for alice.txt")
        assert link.get_attribute("download") == "notes for alice.txt"
        href = link.get_attribute("href")
        assert href.startswith(f"/api/chat/attachments/{notes['id']}?"), href
        # The link works from the page without a token (a download, never shown as a page).
        status, text, disposition = page.evaluate(
            "async (href) => { const r = await fetch(href, { credentials: 'omit' });"
            " return [r.status, await r.text(), r.headers.get('content-disposition')]; }", href)
        assert (status, text) == (200, "bring a tent\n")
        assert disposition.startswith("attachment;"), disposition
        expect(theirs.locator(".attachments img")).to_have_attribute("alt", "bob.png")
        wait_until(page, "[...document.querySelectorAll('#list .attachments img')].some("
                         "(img) => img.complete && img.naturalWidth === 4)")

        # Bob deletes his message: its files go from Alice's page (and from the server).
        bob.call("DELETE", f"/api/chat/messages/{theirs.get_attribute('data-id')}")
        expect(theirs).to_have_count(0)
        expect(alice.said("message deleted", mine=False)).to_have_count(1)
        expect(page.locator("#list .attachments a.file")).to_have_count(0)
        assert requests.get(live_server.url + href, timeout=10).status_code == 404

        assert not alice.problems, alice.problems
        assert not alice.blocked, alice.blocked
    finally:
        alice.close()


# Markup that runs a script wherever it is parsed as HTML: a flag, and a dialog.
PWNED = '<img src=x onerror="window.__pwned=1;alert(1)">'


def test_hostile_text_names_and_emoji_stay_text(live_server, browser):
    """Markup from others (message content, a reply's preview, filenames, reaction emoji) and
    in the search box is shown as text: no element is made of it, no script runs (a flag its
    onerror would set stays unset, and no dialog opens). The page's CSP (script-src 'self')
    would refuse inline handlers anyway, and the console error of such a refusal fails the
    test too; what this checks first is that the page never parses data as HTML."""
    tag = uuid.uuid4().hex[:6]
    alice = Person(browser, live_server.url)
    dialogs = []
    try:
        alice.register(f"alice_{tag}")
        page = alice.page
        page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
        eve = RestUser(live_server.url, f"eve_{tag}")
        content = f"{PWNED} <script>window.__pwned=2</script> {tag}"
        first = eve.send(alice.id, content)
        eve.send(alice.id, PWNED, reply_to=first["id"])
        text_file = eve.upload(f"{PWNED}.txt", b"just text\n")
        image_file = eve.upload(f"{PWNED}.png", tiny_png())
        files = eve.send(alice.id, f"files {tag}", attachments=[text_file["id"], image_file["id"]])
        # Reaction emoji cannot carry whitespace, but a tag name alone, or one with a slash
        # for a separator, goes through: it must stay text.
        for emoji, status in (("<b>", 200), ("<i>x", 200), ("<svg onload=alert(1)>", 422),
                              ("<svg/onload=_=1>", 200)):
            answer = requests.put(f"{live_server.url}/api/chat/messages/{files['id']}/reactions/"
                                  f"{quote(emoji, safe='')}", timeout=10,
                                  headers={"Authorization": f"Bearer {eve.token}"})
            assert answer.status_code == status, (emoji, answer.status_code, answer.text)

        alice.conversation(eve).click()
        expect(alice.said(content, mine=False)).to_be_visible()
        reply = alice.said(PWNED, mine=False)
        expect(reply.locator(".quote .text")).to_have_text(content)
        theirs = alice.said(f"files {tag}", mine=False)
        expect(theirs.locator(".attachments a.file")).to_have_text(f"{PWNED}.txt")
        expect(theirs.locator(".attachments img")).to_have_attribute("alt", f"{PWNED}.png")
        expect(theirs.locator(".reactions button[data-emoji='<b>'] .emoji")).to_have_text("<b>")
        expect(theirs.locator(".reactions button[data-emoji='<i>x'] .count")).to_have_text("1")
        expect(theirs.locator(".reactions button[data-emoji='<svg/onload=_=1>'] .emoji")
               ).to_have_text("<svg/onload=_=1>")
        # Alice's reply quotes it, and she picks a file with such a name herself.
        alice.said(content, mine=False).get_by_role("button", name="reply").click()
        expect(page.locator("#replying .label")).to_have_text(f"Replying to {eve.name}: {content}")
        page.set_input_files("#file", files=[{"name": f"{PWNED}.png", "mimeType": "image/png",
                                              "buffer": tiny_png()}])
        expect(page.locator("#pending .chip .name")).to_have_text(f"{PWNED}.png")
        expect(page.locator("#pending .chip .status")).not_to_contain_text("uploading")
        page.locator("#text").press_sequentially(PWNED)
        page.press("#text", "Enter")
        expect(alice.said(PWNED, mine=True).locator(".attachments img")).to_have_attribute(
            "alt", f"{PWNED}.png")

        # The search box: the query and the results are text.
        page.fill("#search", PWNED)
        page.press("#search", "Enter")
        expect(page.locator("#results li")).to_have_count(3)  # Eve's two, Alice's one
        expect(page.locator("#results li .text").first).to_have_text(PWNED)

        page.wait_for_timeout(500)  # what an onerror would run has had its chance
        assert page.evaluate("window.__pwned") is None
        assert page.evaluate("window._") is None
        assert not dialogs, dialogs
        # No element was made of the markup: the only images are the attachments', from the
        # server's own signed URLs.
        assert page.locator("#list script, #results script, #list b, #list i, #list svg, "
                            "#results img, #replying img, #pending img").count() == 0
        sources = page.eval_on_selector_all("img", "images => images.map((img) => img.getAttribute('src'))")
        assert sources and all(src.startswith("/api/chat/attachments/") for src in sources), sources
        assert not alice.problems, alice.problems
        assert not alice.blocked, alice.blocked
    finally:
        alice.close()
