"""Catch-up scenario: a member who was away fetches every change of a conversation.

Against a running chatapp server (bench/run.py starts it as for the other scenarios),
through the public REST API only (`requests`, keep-alive, from the runner's process on the
generator's core):

1. **Seed.** A group of 4 (owner, the reader and two others) gets changes until its
   `version` is `changes`: mostly messages of varied length, edits and deletions by their
   senders, read markers, two renames, a member added, one made admin, one removed. A
   direct conversation (the reader and the owner) gets the same mix without the
   membership and title changes (they do not exist there). Every call's answer is checked
   and a local model of what the conversation must hold is kept.
2. **Catch up.** The reader, from version 0, follows the documented procedure: `GET
   .../changes?since=V` with the default limit (100) until `more` is false, then again with
   `limit=500`; `repeats` times each. Timed: each call (request sent to body read), and
   each whole catch-up (first call to `more: false`, JSON decoding and merging included).
   Also the server's CPU time per whole catch-up (from /proc, mean over the repeats).
3. **Check** (every catch-up, not a speed assertion): every answer holds each message id
   once; the version chain starts at 0, rises and ends at the conversation's version with
   `more: false`; the merged state holds every message id exactly once and equals the
   conversation's history (`GET .../messages`, paged) message for message; contents,
   edits and deletions equal the local model; the events are the ones made (each read,
   rename and membership change, in order), and replaying them gives the conversation's
   title and members.
"""
import random
import time

import requests

PASSWORD = "bench-password-0123"
DEFAULT_LIMIT = 100  # the contract's default for `changes`
BIG_LIMIT = 500  # its maximum
# Shares of the ordinary changes (the rest are messages); the group also gets the
# membership/title changes at fixed points of its run.
EDIT, DELETE, READ = 0.08, 0.04, 0.09


class Api:
    def __init__(self, url):
        self.url, self.http = url, requests.Session()

    def call(self, method, path, token=None, expect=(200,), **kw):
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        r = self.http.request(method, self.url + path, headers=headers, timeout=60, **kw)
        if r.status_code not in expect:
            raise RuntimeError(f"{method} {path}: {r.status_code} {r.text[:300]}")
        return r.json()


def run(url, changes, repeats, server_cpu=lambda: 0.0):
    """`server_cpu()`: the server process's CPU seconds so far (bench/run.py reads /proc)."""
    api = Api(url)
    tag = f"c{int(time.time() * 1000) % 10**9:x}{random.randrange(1 << 16):x}"
    users = [_user(api, f"{tag}_{i}") for i in range(5)]
    owner, reader, c, d, e = users  # e joins the group later; d is removed
    rng = random.Random(12)
    out = {}
    group = api.call("POST", "/api/chat/groups", owner["token"], expect=(201,), json={
        "title": "catch-up bench", "members": [reader["id"], c["id"], d["id"]]})["conversation"]
    t = time.perf_counter()
    model = Seed(api, group["id"], group["version"], [owner, reader, c, d], rng,
                 specials=_specials(owner, c, d, e, changes)).until(changes)
    out["group"] = _measure(api, model, reader, repeats, time.perf_counter() - t, server_cpu)
    # Direct: its first message creates it (version 1).
    first = api.call("POST", "/api/chat/send", reader["token"], expect=(201,), json={
        "receiver": owner["id"], "content": "direct 0"})["message"]
    t = time.perf_counter()
    model = Seed(api, first["conversation"], 0, [reader, owner], rng)
    model.sent(first, reader)
    model.until(changes)
    out["direct"] = _measure(api, model, reader, repeats, time.perf_counter() - t, server_cpu)
    return out


def _user(api, name):
    email = f"{name}@bench.example"
    api.call("POST", "/api/user/register", expect=(201,), json={
        "username": name, "email": email, "password": PASSWORD})
    body = api.call("POST", "/api/user/login", json={"email": email, "password": PASSWORD})
    return {"id": body["userId"], "token": body["token"], "name": name}


def _specials(owner, c, d, e, changes):
    """Membership and title changes at fixed points of the group's run: version -> call."""
    def rename(n):
        return lambda s: s.conversation("PATCH", "", owner, json={"title": f"renamed {n}"},
                                        event=("title_changed", {"title": f"renamed {n}"}))

    def add(s):
        s.conversation("POST", "/members", owner, json={"user_ids": [e["id"]]},
                       event=("member_added", {"user": e["id"], "role": "member"}))
        s.members.append(e)

    def promote(s):
        s.conversation("PATCH", f"/members/{c['id']}", owner, json={"role": "admin"},
                       event=("role_changed", {"user": c["id"], "role": "admin"}))

    def remove(s):
        s.conversation("DELETE", f"/members/{d['id']}", owner,
                       event=("member_removed", {"user": d["id"]}))
        s.members.remove(d)

    at = lambda share: max(1, int(changes * share))  # noqa: E731
    return {at(0.25): rename(1), at(0.4): add, at(0.55): promote, at(0.7): remove,
            at(0.85): rename(2)}


class Seed:
    """Makes changes through the API, one version each, and models the expected state."""

    def __init__(self, api, conv, version, members, rng, specials=None):
        self.api, self.conv, self.version, self.rng = api, conv, version, rng
        self.members = list(members)
        self.specials = dict(specials or {})
        self.messages = {}  # id -> {"content", "deleted", "sender"}
        self.order = []  # message ids in send order
        self.newest_seq, self.newest_id = 0, None
        self.read_seq = {}  # user id -> seq their read marker is at
        self.events = []  # (type, fields) after the start, in version order
        self.start = version  # versions 1..start: creation (checked by type only)
        self.counts = {"message": 0, "edit": 0, "delete": 0, "read": 0, "conversation": 0}

    def until(self, target):
        n = 0
        while self.version < target:
            special = next((v for v in self.specials if v <= self.version + 1), None)
            if special is not None:
                self.specials.pop(special)(self)
                continue
            self.step(n)
            n += 1
        if self.version != target:
            raise RuntimeError(f"seeded to version {self.version}, wanted {target}")
        return self

    def step(self, n):
        roll = self.rng.random()
        live = [m for m in self.order if not self.messages[m]["deleted"]
                and any(u["id"] == self.messages[m]["sender"] for u in self.members)]
        readers = [u for u in self.members if self.read_seq.get(u["id"], 0) < self.newest_seq]
        if roll < EDIT and live:
            self.edit(self.rng.choice(live[-200:]), n)
        elif roll < EDIT + DELETE and live:
            self.delete(self.rng.choice(live[-300:]))
        elif roll < EDIT + DELETE + READ and readers:
            self.read(self.rng.choice(readers))
        else:
            self.send(self.rng.choice(self.members), n)

    def _member(self, user_id):
        return next(u for u in self.members if u["id"] == user_id)

    def send(self, user, n):
        body = {"content": f"message {n} from {user['name']}: "
                           + "lorem ipsum " * self.rng.randint(0, 8)}
        message = self.api.call("POST", f"/api/chat/conversations/{self.conv}/messages",
                                user["token"], expect=(201,), json=body)["message"]
        self.sent(message, user)

    def sent(self, message, user):
        self._advance(message["version"])
        self.messages[message["id"]] = {"content": message["content"], "deleted": False,
                                        "sender": user["id"]}
        self.order.append(message["id"])
        self.newest_seq, self.newest_id = message["seq"], message["id"]
        self.counts["message"] += 1

    def edit(self, message_id, n):
        user = self._member(self.messages[message_id]["sender"])
        content = f"edited {n} by {user['name']}"
        message = self.api.call("PATCH", f"/api/chat/messages/{message_id}", user["token"],
                                json={"content": content})["message"]
        self._advance(message["version"])
        self.messages[message_id]["content"] = content
        self.counts["edit"] += 1

    def delete(self, message_id):
        user = self._member(self.messages[message_id]["sender"])
        message = self.api.call("DELETE", f"/api/chat/messages/{message_id}",
                                user["token"])["message"]
        self._advance(message["version"])
        self.messages[message_id].update(deleted=True, content=message["content"])
        self.counts["delete"] += 1

    def read(self, user):
        # Up to the newest message: the marker moves (it is below), one version.
        self.api.call("POST", f"/api/chat/conversations/{self.conv}/read", user["token"],
                      json={"up_to": self.newest_id})
        self.read_seq[user["id"]] = self.newest_seq
        self.version += 1
        self.events.append(("read", {"user": user["id"], "up_to": self.newest_id}))
        self.counts["read"] += 1

    def conversation(self, method, path, user, event, **kw):
        body = self.api.call(method, f"/api/chat/conversations/{self.conv}{path}",
                             user["token"], **kw)
        self._advance(body["conversation"]["version"])
        self.events.append((event[0], {**event[1], "by": user["id"]}))
        self.counts["conversation"] += 1

    def _advance(self, version):
        if version != self.version + 1:
            raise RuntimeError(f"a change took version {version} after {self.version}: "
                               "the scenario assumes one version per change")
        self.version = version


def _measure(api, model, reader, repeats, seed_seconds, server_cpu):
    truth = _truth(api, model.conv, reader)
    out = {"conversation": model.conv, "changes": model.version, "made": dict(model.counts),
           "messages": len(model.messages), "events": len(model.events),
           "seed_seconds": round(seed_seconds, 2), "problems": []}
    if truth["version"] != model.version:
        out["problems"].append(f"conversation version {truth['version']} != {model.version}")
    for name, limit in (("default_limit", None), ("limit_500", BIG_LIMIT)):
        calls, totals, pages, by_page = [], [], None, {}
        cpu, busy = server_cpu(), 0.0
        for _ in range(repeats):
            t = time.perf_counter()
            state, pages, timings = _catch_up(api, model.conv, reader, limit)
            totals.append((time.perf_counter() - t) * 1000)
            calls.extend(timings)
            busy += server_cpu() - cpu  # the checks below are not counted
            for i, ms in enumerate(timings):
                by_page.setdefault(i, []).append(ms)
            out["problems"].extend(f"{name}: {p}" for p in _check(state, truth, model, limit))
            cpu = server_cpu()
        out[name] = {"limit": limit or DEFAULT_LIMIT, "calls": len(pages),
                     "pages": [[p["since"], p["version"], p["messages"], p["events"]]
                               for p in pages],
                     "call_ms": _quantiles(calls), "total_ms": _quantiles(totals),
                     "totals_ms": [round(x, 1) for x in totals],
                     # the server's CPU per whole catch-up (mean): steadier than wall time
                     # when other work shares the server's core
                     "server_cpu_ms": 1000 * busy / repeats,
                     # the n-th call's median: does a page cost more further into the feed?
                     "call_p50_ms_by_page": [round(_quantiles(v)["p50"], 1)
                                             for _, v in sorted(by_page.items())],
                     "samples": len(calls), "repeats": repeats}
    out["problems"] = out["problems"][:20]
    out["all_arrived"] = not out["problems"]
    return out


def _catch_up(api, conv, reader, limit):
    """The documented procedure, from version 0: -> (merged state, pages, per-call ms)."""
    headers = {"Authorization": f"Bearer {reader['token']}"}
    since, pages, timings = 0, [], []
    state = {"messages": {}, "events": [], "version": 0, "dupes_in_answer": 0, "chain": True}
    while True:
        params = {"since": since} if limit is None else {"since": since, "limit": limit}
        t = time.perf_counter()
        r = api.http.get(f"{api.url}/api/chat/conversations/{conv}/changes", params=params,
                         headers=headers, timeout=60)
        r.content  # noqa: B018 - the body read is part of the call
        timings.append((time.perf_counter() - t) * 1000)
        if r.status_code != 200:
            raise RuntimeError(f"changes since {since}: {r.status_code} {r.text[:300]}")
        body = r.json()
        ids = [m["id"] for m in body["messages"]]
        state["dupes_in_answer"] += len(ids) - len(set(ids))
        for message in body["messages"]:  # a later answer holds a later state: replace
            state["messages"][message["id"]] = message
        state["events"].extend(body["events"])
        if not body["version"] > since and body["more"]:
            state["chain"] = False  # no progress: the check reports it
            break
        pages.append({"since": since, "version": body["version"],
                      "messages": len(body["messages"]), "events": len(body["events"])})
        since = body["version"]
        if not body["more"]:
            break
    state["version"] = since
    return state, pages, timings


def _truth(api, conv, reader):
    """The server's state now: the conversation, and its whole history paged newest first."""
    info = api.call("GET", f"/api/chat/conversations/{conv}", reader["token"])
    history, before = {}, None
    while True:
        params = {"limit": 200, **({"before": before} if before else {})}
        page = api.call("GET", f"/api/chat/conversations/{conv}/messages", reader["token"],
                        params=params)
        for message in page:
            if message["id"] in history:
                raise RuntimeError(f"history repeats message {message['id']}")
            history[message["id"]] = message
        if len(page) < 200:
            break
        before = page[-1]["id"]
    return {"version": info["version"], "title": info.get("title"),
            "members": sorted(m["user"]["id"] for m in info["members"]), "history": history}


def _check(state, truth, model, limit):
    problems = []
    if not state["chain"] or state["version"] != truth["version"]:
        problems.append(f"ended at version {state['version']} (chain ok: {state['chain']}), "
                        f"conversation at {truth['version']}")
    if state["dupes_in_answer"]:
        problems.append(f"{state['dupes_in_answer']} message ids repeated within an answer")
    got, history = state["messages"], truth["history"]
    if set(got) != set(history) or set(got) != set(model.messages):
        problems.append(f"ids: caught up {len(got)}, history {len(history)}, sent "
                        f"{len(model.messages)}; missing {len(set(history) - set(got))}, "
                        f"extra {len(set(got) - set(history))}")
    differ = [m for m in got if m in history and got[m] != history[m]]
    if differ:
        keys = sorted(k for k in got[differ[0]] if got[differ[0]][k] != history[differ[0]].get(k))
        problems.append(f"{len(differ)} messages differ from history, e.g. {differ[0]} in {keys}")
    wrong = [m for m, want in model.messages.items() if m in got and (
        got[m]["content"] != want["content"] or got[m]["deleted"] != want["deleted"]
        or got[m]["sender"] != want["sender"])]
    if wrong:
        problems.append(f"{len(wrong)} messages differ from what was sent/edited/deleted")
    events = state["events"]
    versions = [e["version"] for e in events]
    if versions != sorted(set(versions)):
        problems.append("events not in strictly rising version order")
    creation = [e for e in events if e["version"] <= model.start]
    later = [(e["type"], {k: e.get(k) for k in fields}) for e in events
             if e["version"] > model.start for fields in [_fields(e["type"])]]
    expected = [(kind, {k: f.get(k) for k in _fields(kind)}) for kind, f in model.events]
    if later != expected:
        problems.append(f"events after creation: {len(later)} received, {len(expected)} made"
                        f"{'' if len(later) != len(expected) else ' (different)'}")
    # Replaying the events gives the conversation's members and title (a group).
    members, title = set(), None
    for e in events:
        if e["type"] == "member_added":
            members.add(e["user"])
        elif e["type"] == "member_removed":
            members.discard(e["user"])
        elif e["type"] == "title_changed":
            title = e["title"]
    if creation and (sorted(members) != truth["members"] or title != truth["title"]):
        problems.append(f"replayed members/title {sorted(members)}/{title} != "
                        f"{truth['members']}/{truth['title']}")
    return problems


def _fields(kind):
    return {"read": ("user", "up_to"), "title_changed": ("title", "by"),
            "member_added": ("user", "role", "by"), "role_changed": ("user", "role", "by"),
            "member_removed": ("user", "by")}.get(kind, ())


def _quantiles(values):
    s = sorted(values)
    pick = lambda q: s[min(len(s) - 1, max(0, -(-q * len(s) // 100) - 1))]  # noqa: E731
    return {"p50": pick(50), "p99": pick(99), "max": s[-1]} if s else {}
