"""Rich messages (issue 13): search, a page of rich messages, a 10 MiB upload and download.

Three scenarios, run by bench/run.py (`search`, `rich_page`, `attachments`; chatapp only):

- `search_run`, in-process as bench/history.py (the app built in the runner's process, the
  Flask test client: routing, auth, store, JSON, no network; with MONGO_DB_URL set, against
  MongoDB, and each query's `explain()` is reported). A store of `n_messages` messages in
  8 conversations: 4 of the caller's (two direct, two groups), 3 they are not in, and a
  group they were removed from after its messages were written. Words: `meeting` in ~10 %
  of the messages, `tomorrow` in ~6 %, `zeppelin` in ~0.04 %, in varied case and
  punctuation (`Meeting,` `MEETING` `Zéppelin`), and near misses (`meetings`, `zeppelins`).
  Some messages holding the rare word are deleted (through the chat service). Timed, each
  `samples` times: `q=meeting` (the first page of thousands), `q=zeppelin` (a few), `q=meeting
  tomorrow` (both words), `q=meeting&conversation=<a group>`, the page after the first one
  (`before=` its last, as its `Link` names), and a page deep into the matches (`before=` the
  2 000th).
  Checked, every answer: exactly the messages a model of the store says, in order (every
  word in each, at least one as a whole word; only the caller's current conversations;
  deleted ones never; newest first), and `Link` exactly when more exist.
  Seeding: a message sent through `chatapp.chat.service.send_message` costs ~1.5 ms here
  (150 s for 100 000), so each conversation's first message and the last `tail` messages go
  through the service, and the bulk between them is written through `chatapp.chat.store`
  (`insert_message`, the document the service writes, at one-second steps over the past
  ~28 hours), the conversations' counters moved on as the service's sends would have. The
  bulk has no change-feed records (search reads none).
- `page_run`, in-process: two groups of 5 members with the same `n_messages` messages; in
  one every message carries an attachment (every fifth two; uploaded through `POST
  /api/chat/attachments`), three reactions from other members (two emoji), and every third
  one is a reply. Timed, alternately: the newest page (`GET
  /api/chat/conversations/<id>/messages`, 50) of each. Checked: both pages hold the same
  messages in the same order; the rich one each message's attachments, reactions and reply
  preview as sent, the plain one none.
- `transfer_run`, against a running server (bench/run.py starts it): a `size`-byte file
  (10 MiB, random bytes) uploaded (`POST /api/chat/attachments`, multipart) and downloaded
  (`GET /api/chat/attachments/<id>`) `repeats` times each, one at a time: MB/s (10^6 bytes
  per second) of each; the downloaded bytes' sha256 must equal the file's (and its ETag and
  the answer's `sha256`), a `Range` request must answer the bytes asked for. Then
  `concurrent` uploads at once: the server's RSS sampled every few ms (and its VmHWM, reset
  first through /proc/PID/clear_refs where allowed), against file size × concurrent uploads.
  On the embedded store the stored files themselves live in the server's heap (GridFS
  chunks in mongomock), so the growth is also given without the bytes stored.
"""
import hashlib
import os
import random
import threading
import time
import unicodedata
from datetime import datetime, timedelta, timezone

from bench.history import _index_names, _register, in_process_app

PAGE = 50
COMMON, SECOND, RARE = "meeting", "tomorrow", "zeppelin"
SHARE = {COMMON: 0.10, SECOND: 0.06}
RARE_EVERY = 2500  # one message in 2 500 holds the rare word (40 in 100 000)
NEAR = {COMMON: ("meetings", 0.01), RARE: ("zeppelins", 0.0004)}  # substrings, not the words
FORMS = {COMMON: ("meeting", "Meeting", "MEETING", "meeting,", "meeting."),
         SECOND: ("tomorrow", "Tomorrow", "tomorrow!", "tomorrow?"),
         RARE: ("zeppelin", "Zeppelin", "Zéppelin", "zeppelin!")}
DEEP = 2000  # the deep `before=` page starts after this many matches
DELETED_RARE = 3  # messages of the caller's holding the rare word, deleted
REACTIONS = ("👍", "🎉")


# --- shared -----------------------------------------------------------------------------

def _drop(db_name):
    """The scenario's database goes (the embedded one too: the next scenario in this process
    does not carry its heap)."""
    import gc

    from chatapp.extensions import mongo

    if mongo.client is not None:
        mongo.client.drop_database(db_name)
    gc.collect()


def quantiles(times):
    """{p50, p99, samples} of a list of milliseconds (nearest rank)."""
    times = sorted(times)
    pick = lambda q: times[min(len(times) - 1, max(0, -(-q * len(times) // 100) - 1))]  # noqa: E731
    return {"p50": pick(50), "p99": pick(99), "samples": len(times)}


def _timed(call):
    t = time.perf_counter()
    response = call()
    return (time.perf_counter() - t) * 1000, response


# --- search ------------------------------------------------------------------------------

def fold(text):
    """Case and diacritics away (as the text index compares)."""
    return "".join(c for c in unicodedata.normalize("NFD", text.casefold())
                   if not unicodedata.combining(c))


def terms(text):
    return {fold(word.strip(".,!?")) for word in text.split()}


def matches(content, words):
    """The contract's rule, for this bench's contents: every word in the folded content, at
    least one of them as a whole word."""
    folded = fold(content)
    return all(fold(w) in folded for w in words) and bool(terms(content) & {fold(w) for w in words})


class Words:
    """Contents: filler words (consonant-vowel syllables: none holds `ee`, `rr` or `pp`, so
    none contains a searched word), with the searched words and near misses mixed in."""

    def __init__(self, rng):
        self.rng = rng
        self.filler = sorted({"".join(rng.choice("bdfgklmnprstvz") + rng.choice("aeiou")
                                      for _ in range(rng.randint(2, 3))) for _ in range(800)})

    def content(self, rare=False):
        rng = self.rng
        words = [rng.choice(self.filler) for _ in range(rng.randint(4, 12))]
        extra = [rng.choice(FORMS[w]) for w, share in SHARE.items() if rng.random() < share]
        extra += [near for near, share in NEAR.values() if rng.random() < share]
        if rare:
            extra.append(rng.choice(FORMS[RARE]))
        for word in extra:
            words.insert(rng.randrange(len(words) + 1), word)
        return " ".join(words)


def search_run(n_messages, samples, tail=200):
    from chatapp.extensions import mongo

    app, db_name = in_process_app("search")
    client = app.test_client()
    try:
        t = time.perf_counter()
        world = _seed_search(app, client, n_messages, tail)
        seeded = time.perf_counter() - t
        me = world["me"]
        headers = {"Authorization": f"Bearer {me['token']}"}
        common = world["model"].answer([COMMON])
        queries = {
            "common": {"q": COMMON},
            "rare": {"q": RARE},
            "two_words": {"q": f"{COMMON} {SECOND}"},
            "conversation": {"q": COMMON, "conversation": world["group"]},
            "before": {"q": COMMON, "before": str(common[PAGE - 1]["_id"])},
            "before_deep": {"q": COMMON,
                            "before": str(common[min(DEEP, len(common) // 2) - 1]["_id"])},
        }
        out, problems = {}, []
        for name, args in queries.items():
            expected = world["model"].answer(args["q"].split(), args.get("conversation"),
                                             args.get("before"))
            times = []
            for _ in range(samples):
                ms, response = _timed(lambda: client.get("/api/chat/search", query_string=args,
                                                         headers=headers))
                times.append(ms)
                problems += _check_search(name, response, expected, world)
            out[name] = {**quantiles(times), "results": len(expected[:PAGE]),
                         "matching": len(expected)}
        with app.app_context():
            stored = mongo.db.messages.count_documents({})
            indexes = _search_explain(world, queries) if not mongo.embedded else {
                "store": "embedded (mongomock; $text answered by chatapp/embedded_text.py from "
                         "its own term index, then filtered and sorted in Python)",
                "on MongoDB": "the `search` text index (content), then conv/deleted filtered "
                              "and sorted by (created_at, _id)"}
        return {"seeded": {"messages": stored, "seconds": round(seeded, 1),
                           "through_service": world["through_service"],
                           "conversations": world["shape"],
                           "how": "first and last messages through chat service send_message, "
                                  "the bulk through chat.store.insert_message"},
                "queries": out, "all_correct": not problems, "problems": problems[:20],
                "indexes": indexes}
    finally:
        _drop(db_name)


def _check_search(name, response, expected, world):
    if response.status_code != 200:
        return [f"{name}: {response.status_code} {response.get_data(as_text=True)[:200]}"]
    got = response.get_json()
    want = expected[:PAGE]
    problems = []
    words = {"common": [COMMON], "rare": [RARE], "two_words": [COMMON, SECOND],
             "conversation": [COMMON], "before": [COMMON], "before_deep": [COMMON]}[name]
    if not all(matches(m["content"], words) for m in got):
        problems.append(f"{name}: a result without the words")
    if not {m["conversation"] for m in got} <= world["mine"]:
        problems.append(f"{name}: a result from a conversation not the caller's")
    if any(m["deleted"] for m in got):
        problems.append(f"{name}: a deleted message")
    stamps = [(m["timestamp"], m["id"]) for m in got]
    if stamps != sorted(stamps, reverse=True):
        problems.append(f"{name}: not newest first")
    if [m["id"] for m in got] != [str(d["_id"]) for d in want]:
        problems.append(f"{name}: {len(got)} results, not the {len(want)} the model expects "
                        "(or not in its order)")
    link = response.headers.get("Link")
    if (link is not None) != (len(expected) > PAGE) or (
            link is not None and f"before={want[-1]['_id']}" not in link):
        problems.append(f"{name}: Link {link!r} with {len(expected)} matching")
    return problems


class Model:
    """What the store holds: each message's conversation, time, content, deletion."""

    def __init__(self):
        self.docs = {}

    def add(self, doc):
        self.docs[doc["_id"]] = {k: doc[k] for k in ("_id", "conv", "created_at", "content")}
        self.docs[doc["_id"]]["deleted"] = False

    def answer(self, words, conversation=None, before=None):
        from bson import ObjectId

        convs = {ObjectId(conversation)} if conversation else self.mine
        found = [d for d in self.docs.values() if d["conv"] in convs and not d["deleted"]
                 and matches(d["content"], words)]
        found.sort(key=lambda d: (d["created_at"], d["_id"]), reverse=True)
        if before is not None:
            pos = self.docs[ObjectId(before)]
            found = [d for d in found
                     if (d["created_at"], d["_id"]) < (pos["created_at"], pos["_id"])]
        return found


def _seed_search(app, client, n, tail):
    from bson import ObjectId

    from chatapp.chat import service, store

    rng = random.Random(13)
    text = Words(rng)
    tag = f"s{int(time.time() * 1000) % 10**8}"
    names = ["me", "p1", "p2", "p3", "o1", "o2", "o3", "o4"]
    u = {name: _register(client, f"{tag}_{name}") for name in names}
    oid = {name: ObjectId(user["id"]) for name, user in u.items()}

    def group(owner, members, title):
        r = client.post("/api/chat/groups", json={"title": title, "members": [
            u[m]["id"] for m in members]}, headers={"Authorization": f"Bearer {u[owner]['token']}"})
        assert r.status_code == 201, r.get_json()
        return ObjectId(r.get_json()["conversation"]["id"])

    # (members, receiver-or-None); the first member sends the first message.
    shape = {"d_me_p1": (["me", "p1"], True), "d_me_p2": (["p2", "me"], True),
             "g_mine": (["me", "p1", "p2", "p3"], False), "g_p3": (["p3", "me", "o1"], False),
             "d_p1_o1": (["p1", "o1"], True), "d_o2_o3": (["o2", "o3"], True),
             "g_others": (["o1", "o2", "o3", "p2"], False), "g_left": (["o4", "me", "o2"], False)}
    model = Model()
    convs, through_service = {}, 0
    with app.test_request_context():
        for name, (members, direct) in shape.items():
            first = {"content": "hello"}  # sent now, yet the oldest: never a match
            if direct:
                first["receiver"] = oid[members[1]]
            else:
                first["conversation"] = group(members[0], members[1:], name)
            message, _ = service.send_message(oid[members[0]], first)
            convs[name] = ObjectId(message["conversation"])
            model.add(store.find_message(ObjectId(message["id"])))
            through_service += 1
        bulk = n - len(shape) - tail
        _bulk(convs, shape, oid, bulk, text, model)
        names_ = list(shape)
        sent = []
        for i in range(tail):
            name = names_[i % len(names_)]
            members, direct = shape[name]
            sender = members[i // len(names_) % len(members)]
            data = {"content": text.content(rare=i % 50 == 7)}
            if direct:
                data["receiver"] = oid[next(m for m in members if m != sender)]
            else:
                data["conversation"] = convs[name]
            message, _ = service.send_message(oid[sender], data)
            sent.append(ObjectId(message["id"]))
        for doc in store.find_messages(sent).values():  # times as stored
            model.add(doc)
        through_service += tail
        # Deleted by their senders: messages of the caller's holding the rare word.
        mine = {convs[k] for k in ("d_me_p1", "d_me_p2", "g_mine", "g_p3")}
        model.mine = mine
        rare = [d for d in model.answer([RARE])][:DELETED_RARE]
        for d in rare:
            sender = store.find_message(d["_id"])["sender"]
            service.delete_message(sender, str(d["_id"]))
            model.docs[d["_id"]]["deleted"] = True
    # The caller is removed from one group: its messages are no longer theirs to find.
    r = client.delete(f"/api/chat/conversations/{convs['g_left']}/members/{u['me']['id']}",
                      headers={"Authorization": f"Bearer {u['o4']['token']}"})
    assert r.status_code in (200, 204), r.get_json()
    rare_elsewhere = [d for d in model.docs.values() if d["conv"] not in mine
                      and matches(d["content"], [RARE])]
    assert rare_elsewhere, "no rare word outside the caller's conversations"
    return {"me": u["me"], "model": model, "mine": {str(c) for c in mine},
            "group": str(convs["g_mine"]), "convs": convs, "through_service": through_service,
            "shape": {name: {"members": len(m), "messages": sum(
                1 for d in model.docs.values() if d["conv"] == convs[name])}
                for name, (m, _) in shape.items()}}


def _bulk(convs, shape, oid, n, text, model):
    """`n` messages spread at random over the conversations, one second apart, written
    through the store with the documents the service writes; the counters moved on."""
    from chatapp.chat import store
    from chatapp.conversations import store as conversation_store

    rng = text.rng
    names = list(shape)
    counters = {name: conversation_store.find(convs[name]) for name in names}
    seq = {name: c["seq"] for name, c in counters.items()}
    version = {name: c["version"] for name, c in counters.items()}
    last = {}
    start = datetime.now(timezone.utc).replace(microsecond=0) - timedelta(seconds=n + 3600)
    rare_at = max(1, min(RARE_EVERY, n // (2 * len(names))))  # every conversation gets some
    for i in range(n):
        rare = i % rare_at == rare_at // 2
        name = names[(i // rare_at) % len(names)] if rare else rng.choice(names)
        members, direct = shape[name]
        sender = rng.choice(members)
        receiver = oid[next(m for m in members if m != sender)] if direct else None
        at = start + timedelta(seconds=i)
        seq[name] += 1
        version[name] += 1
        doc = {"_id": _id_at(at), "conv": convs[name], "seq": seq[name],
               "version": version[name], "sender": oid[sender], "receiver": receiver,
               "content": text.content(rare=rare), "created_at": at,
               "delivered_at": at if direct else None, "read_at": at if direct else None,
               "edited_at": None, "deleted": False}
        store.insert_message(doc)
        model.add(doc)
        last[name] = doc
    for name, doc in last.items():
        grown = seq[name] - counters[name]["seq"]
        conversation_store.update(convs[name], {}, {
            "$inc": {"seq": grown, "version": grown},
            "$set": {"last_at": doc["created_at"], "last_message_id": doc["_id"]}})


def _id_at(at):
    """An ObjectId whose time is `at`, as the service's, made at the message's time."""
    from bson import ObjectId

    return ObjectId(int(at.timestamp()).to_bytes(4, "big") + ObjectId().binary[4:])


def _search_explain(world, queries):
    """The indexes MongoDB uses for each timed search, by name (`explain()`)."""
    try:
        from bson import ObjectId

        from chatapp.chat import store as message_store
        from chatapp.conversations import store as conversation_store
        from chatapp.extensions import mongo
        from chatapp.search import service as search_service
        from chatapp.search import store

        me = ObjectId(world["me"]["id"])
        out = {}
        for name, args in queries.items():
            convs = [ObjectId(args["conversation"])] if "conversation" in args \
                else conversation_store.ids_for_member(me)
            # The query chatapp/search/store.py `page` makes.
            query = {"$text": {"$search": search_service.search_string(args["q"])},
                     "conv": {"$in": convs}, "deleted": {"$ne": True}}
            if "before" in args:
                doc = message_store.find_message(ObjectId(args["before"]))
                t = doc["created_at"]
                query["$or"] = [{"created_at": {"$lt": t}},
                                {"created_at": t, "_id": {"$lt": doc["_id"]}}]
            plan = mongo.db.messages.find(query).sort(store.NEWEST_FIRST).limit(PAGE + 1) \
                .explain()
            stats = plan.get("executionStats", {})
            out[name] = {"indexes": sorted(_index_names(plan)) or ["COLLSCAN"],
                         "docs_examined": stats.get("totalDocsExamined"),
                         "keys_examined": stats.get("totalKeysExamined")}
        return out
    except Exception as exc:  # noqa: BLE001 - a server without explain: say so, keep the figures
        return {"explain_failed": f"{type(exc).__name__}: {exc}"[:300]}


# --- the newest page of rich messages ----------------------------------------------------

PNG = bytes.fromhex("89504e470d0a1a0a0000000d4948445200000001000000010806000000")


def page_run(n_messages, samples):
    app, db_name = in_process_app("richpage")
    client = app.test_client()
    try:
        t = time.perf_counter()
        world = _seed_page(app, client, n_messages)
        seeded = time.perf_counter() - t
        headers = {"Authorization": f"Bearer {world['me']['token']}"}
        times = {"plain": [], "rich": []}
        problems = []
        for i in range(samples):
            for kind in (("plain", "rich") if i % 2 == 0 else ("rich", "plain")):
                ms, response = _timed(lambda: client.get(
                    f"/api/chat/conversations/{world[kind]}/messages", headers=headers))
                times[kind].append(ms)
                assert response.status_code == 200, response.get_json()
                if i < 2:  # the answers do not change: check the first ones
                    problems += _check_page(kind, response.get_json(), world)
        body = {kind: len(client.get(f"/api/chat/conversations/{world[kind]}/messages",
                                     headers=headers).get_data()) for kind in times}
        return {"seeded": {"messages_per_conversation": n_messages, "seconds": round(seeded, 1),
                           "rich": world["made"],
                           "how": "chat service (send_message, add_reaction), uploads through "
                                  "POST /api/chat/attachments"},
                "plain": quantiles(times["plain"]), "rich": quantiles(times["rich"]),
                "page_bytes": body, "all_correct": not problems, "problems": problems[:20]}
    finally:
        _drop(db_name)


def _seed_page(app, client, n):
    from bson import ObjectId

    from chatapp.chat import reactions, service

    tag = f"r{int(time.time() * 1000) % 10**8}"
    users = [_register(client, f"{tag}_{i}") for i in range(5)]
    ids = [ObjectId(user["id"]) for user in users]
    me = users[0]
    convs = {}
    for kind in ("plain", "rich"):
        r = client.post("/api/chat/groups", json={"title": kind, "members": [
            user["id"] for user in users[1:]]}, headers={"Authorization": f"Bearer {me['token']}"})
        assert r.status_code == 201, r.get_json()
        convs[kind] = r.get_json()["conversation"]["id"]
    expected = {}  # seq -> what the rich message must show
    made = {"attachments": 0, "reactions": 0, "replies": 0}
    for i in range(n):
        s = i % len(users)
        content = f"message {i} of the page bench, a sentence of ordinary length"
        with app.test_request_context():
            service.send_message(ids[s], {"conversation": convs["plain"], "content": content})
        files = [_upload(client, users[s], i, k) for k in range(2 if i % 5 == 0 else 1)]
        data = {"conversation": convs["rich"], "content": content,
                "attachments": [f["id"] for f in files]}
        reply = None
        if i % 3 == 2:
            reply = expected[i - 1 - (i * 7) % min(i, 10)]
            data["reply_to"] = ObjectId(reply["id"])
        with app.test_request_context():
            message, _ = service.send_message(ids[s], data)
            reacted = {}
            for k in range(3):
                who = (s + 1 + k) % len(users)
                emoji = REACTIONS[k % 2]
                reactions.add_reaction(ids[who], message["id"], emoji)
                reacted.setdefault(emoji, []).append(users[who]["id"])
        expected[i] = {"id": message["id"], "content": content, "files": files,
                       "reactions": reacted, "reply": reply}
        made["attachments"] += len(files)
        made["reactions"] += 3
        made["replies"] += reply is not None
    return {"me": me, **convs, "expected": expected, "made": made}


def _upload(client, user, i, k):
    data = PNG + os.urandom(1024) if (i + k) % 2 == 0 else f"notes {i}.{k}\n".encode() * 100
    name = f"file-{i}-{k}.{'png' if (i + k) % 2 == 0 else 'txt'}"
    from io import BytesIO

    r = client.post("/api/chat/attachments", data={"file": (BytesIO(data), name)},
                    headers={"Authorization": f"Bearer {user['token']}"},
                    content_type="multipart/form-data")
    assert r.status_code == 201, r.get_json()
    return r.get_json()["attachment"]


def _check_page(kind, page, world):
    problems = []
    if len(page) != PAGE:
        return [f"{kind}: {len(page)} messages, not {PAGE}"]
    newest = sorted(world["expected"])[-PAGE:][::-1]
    for message, i in zip(page, newest):
        want = world["expected"][i]
        if message["content"] != want["content"]:
            problems.append(f"{kind}: message {i} out of place: seq {message['seq']} "
                            f"{message['content'][:40]!r}")
            continue
        if kind == "plain":
            if message["attachments"] or message["reactions"] or message["reply_to"]:
                problems.append(f"plain: message {i} carries something")
            continue
        shown = [(a["id"], a["sha256"]) for a in message["attachments"]]
        if shown != [(f["id"], f["sha256"]) for f in want["files"]]:
            problems.append(f"rich: message {i} attachments {message['attachments']}")
        if any("sig=" not in a["url"] for a in message["attachments"]):
            problems.append(f"rich: message {i}: an attachment without a signed url")
        if message["reactions"] != want["reactions"]:
            problems.append(f"rich: message {i} reactions {message['reactions']}")
        reply = want["reply"]
        if (reply is None) != (message["reply_to"] is None) or reply is not None and (
                message["reply_to"]["id"] != reply["id"]
                or message["reply_to"]["content"] != reply["content"][:100]):
            problems.append(f"rich: message {i} reply_to {message['reply_to']}")
    return problems


# --- upload and download against a running server ----------------------------------------

def _status_kib(pid, field):
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"no {field}")


class RssSampler:
    """The server's VmRSS, sampled every `every` seconds in a thread, until stopped."""

    def __init__(self, pid, every=0.003):
        self.pid, self.every, self.peak = pid, every, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self):
        self.peak = _status_kib(self.pid, "VmRSS")
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, _status_kib(self.pid, "VmRSS"))

    def _run(self):
        while not self._stop.wait(self.every):
            self.peak = max(self.peak, _status_kib(self.pid, "VmRSS"))


def _reset_hwm(pid):
    """Reset the process's VmHWM to its current RSS (Linux ≥ 4.0, a process of ours)."""
    try:
        with open(f"/proc/{pid}/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def transfer_run(url, pid, size, repeats, concurrent, server_cpu=lambda: 0.0, embedded=True):
    """`pid`: the server's, for /proc; `server_cpu()`: its CPU seconds so far."""
    import requests
    from urllib3 import encode_multipart_formdata

    http = requests.Session()
    tag = f"t{int(time.time() * 1000) % 10**8}{random.randrange(1 << 16):x}"
    email = f"{tag}@bench.example"
    r = http.post(url + "/api/user/register", json={"username": tag, "email": email,
                                                    "password": "bench-password-0123"})
    assert r.status_code == 201, r.text
    token = http.post(url + "/api/user/login", json={
        "email": email, "password": "bench-password-0123"}).json()["token"]
    auth = {"Authorization": f"Bearer {token}"}
    data = os.urandom(size)
    digest = hashlib.sha256(data).hexdigest()
    body, content_type = encode_multipart_formdata({"file": ("bench.bin", data)})
    headers = {**auth, "Content-Type": content_type}
    problems = []

    def upload(session):
        t = time.perf_counter()
        resp = session.post(url + "/api/chat/attachments", data=body, headers=headers, timeout=120)
        seconds = time.perf_counter() - t
        if resp.status_code != 201:
            problems.append(f"upload: {resp.status_code} {resp.text[:200]}")
            return seconds, None
        attachment = resp.json()["attachment"]
        if attachment["sha256"] != digest or attachment["size"] != size:
            problems.append(f"upload: stored {attachment['size']} bytes, sha256 "
                            f"{attachment['sha256']}")
        return seconds, attachment

    up, down, up_cpu, down_cpu, stored = [], [], [], [], []
    rss_single = rss_download = 0
    base = _status_kib(pid, "VmRSS")
    for _ in range(repeats):
        with RssSampler(pid) as sampler:
            cpu = server_cpu()
            seconds, attachment = upload(http)
            up_cpu.append(server_cpu() - cpu)
        rss_single = max(rss_single, sampler.peak - base)
        up.append(seconds)
        if attachment is None:
            break
        stored.append(attachment)
        base = _status_kib(pid, "VmRSS")
        with RssSampler(pid) as sampler:
            cpu = server_cpu()
            t = time.perf_counter()
            resp = http.get(url + f"/api/chat/attachments/{attachment['id']}", headers=auth,
                            stream=True, timeout=120)
            got = bytearray()
            for piece in resp.iter_content(256 * 1024):
                got += piece
            down.append(time.perf_counter() - t)
            down_cpu.append(server_cpu() - cpu)
        rss_download = max(rss_download, sampler.peak - base)
        base = _status_kib(pid, "VmRSS")
        got_digest = hashlib.sha256(got).hexdigest()
        if resp.status_code != 200 or got_digest != digest or len(got) != size or \
                resp.headers.get("ETag") != f'"{digest}"':
            problems.append(f"download: {resp.status_code}, {len(got)} bytes, sha256 "
                            f"{got_digest}, ETag {resp.headers.get('ETag')}")
    if stored:
        a, b = size // 3, size // 3 + 99_999
        resp = http.get(url + f"/api/chat/attachments/{stored[0]['id']}",
                        headers={**auth, "Range": f"bytes={a}-{b}"}, timeout=60)
        if resp.status_code != 206 or resp.content != data[a:b + 1]:
            problems.append(f"range: {resp.status_code}, {len(resp.content)} bytes")
    # `concurrent` uploads at once, each on its own connection.
    sessions = [requests.Session() for _ in range(concurrent)]
    for s in sessions:  # connected before the clock starts
        s.get(url + "/healthz", timeout=10)
    results = [None] * concurrent
    barrier = threading.Barrier(concurrent)

    def one(k):
        barrier.wait()
        results[k] = upload(sessions[k])

    threads = [threading.Thread(target=one, args=(k,)) for k in range(concurrent)]
    before = _status_kib(pid, "VmRSS")
    hwm_reset = _reset_hwm(pid)
    t = time.perf_counter()
    with RssSampler(pid) as sampler:
        for th in threads:
            th.start()
        for th in threads:
            th.join()
    wall = time.perf_counter() - t
    hwm = _status_kib(pid, "VmHWM") if hwm_reset else None
    after = _status_kib(pid, "VmRSS")
    peak = max(sampler.peak, hwm or 0)
    done = [r for r in results if r and r[1] is not None]
    mib = size / 2**20
    stored_kib = size * len(done) // 1024 if embedded else 0
    return {
        "size_bytes": size, "sha256": digest, "repeats": len(up),
        "upload_mb_s": _rates(up, size), "download_mb_s": _rates(down, size),
        "upload_ms": quantiles([s * 1000 for s in up]),
        "download_ms": quantiles([s * 1000 for s in down]),
        # Mean over the transfers (/proc counts CPU in clock ticks, 10 ms).
        "upload_server_cpu_ms_per_mib": round(1000 * sum(up_cpu) / (mib * len(up_cpu)), 1),
        "download_server_cpu_ms_per_mib": round(1000 * sum(down_cpu) / (mib * len(down_cpu)), 1)
        if down_cpu else None,
        "single_upload_rss_growth_mib": round(rss_single / 1024, 1),
        "download_rss_growth_mib": round(rss_download / 1024, 1),
        "concurrent": {
            "uploads": concurrent, "completed": len(done), "seconds": round(wall, 2),
            "aggregate_mb_s": round(size * len(done) / wall / 1e6, 1) if done else None,
            "rss_before_mib": round(before / 1024, 1), "rss_peak_mib": round(peak / 1024, 1),
            "rss_after_mib": round(after / 1024, 1),
            "peak_growth_mib": round((peak - before) / 1024, 1),
            "hwm_reset": hwm_reset, "vmhwm_mib": round(hwm / 1024, 1) if hwm else None,
            "stored_in_process_mib": round(stored_kib / 1024, 1),
            "peak_growth_beyond_stored_mib": round((peak - before - stored_kib) / 1024, 1),
            "bar_mib": round(mib * concurrent, 1),
        },
        "sha256_verified": not problems and len(down) == repeats,
        "all_correct": not problems and len(done) == concurrent,
        "problems": problems[:20],
    }


def _rates(seconds, size):
    """MB/s (10^6 bytes a second) at the median and at the slowest (p99) transfer."""
    if not seconds:
        return {"p50": None, "p99": None}
    q = quantiles(seconds)
    return {"p50": round(size / q["p50"] / 1e6, 1), "p99": round(size / q["p99"] / 1e6, 1)}
