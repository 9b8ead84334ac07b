"""A client of the change feed that follows the contract's catch-up procedure (Part 2, Sync),
holding a local copy of its conversations, and the checks a soak makes of it.

    replica = Replica(user_id, token)
    replica.catch_up(base_url)            # GET /api/chat/conversations, then `changes`
    replica.apply_live(event, data)       # optional: socket events between catch-ups
    replica.differences(base_url)         # [] when the copy equals the server's state

The local state of a conversation: its messages by id (each in the state the feed or a
live event last gave it), the events of `changes` in the order they came, and the version
the next `changes` call starts from. Only `changes` moves that version; live events only
update messages (kept when their `version` is above the one held for that message), so
whatever they bring or miss, the next catch-up has to make the copy exact.

Every page is checked as it arrives, and each breach of the feed's ordering promises is
kept in `violations` (a reader thread must not assert: the soak reports them at the end):
a page whose `version` is below the version the reader held, an event at or below a
version already had (or above its page's `version`), a message whose version is at or
below `since` or below one the feed gave it before, a message twice in one page, a
conversation whose `version` in the list went down.
"""
import threading
import time

import requests

TIMEOUT = 20  # seconds, every HTTP call


class ConversationCopy:
    def __init__(self, conversation_id):
        self.id = conversation_id
        self.version = 0  # where the next `changes` call starts
        self.messages = {}  # id -> Message (latest state seen)
        self.feed_versions = {}  # id -> highest version `changes` gave for the message
        self.events = []  # every Event of `changes`, in the order received (version order)
        self.pages = 0
        self.listed_version = 0  # highest `version` seen for it in GET /conversations


class Replica:
    def __init__(self, user_id, token, label=None):
        self.user_id, self.token = user_id, token
        self.label = label or user_id
        self.headers = {"Authorization": f"Bearer {token}"}
        self.http = requests.Session()
        self.lock = threading.Lock()  # live events arrive on python-socketio's threads
        self.conversations = {}
        self.violations = []
        self.stats = {"pages": 0, "catch_ups": 0, "abandoned": 0, "live_applied": 0,
                      "live_ignored": 0, "more_pages": 0}

    # -- REST -----------------------------------------------------------------------------
    def get(self, base, path, **params):
        response = self.http.get(base + path, headers=self.headers, params=params,
                                 timeout=TIMEOUT)
        if response.status_code != 200:
            raise AssertionError(f"{self.label}: GET {path} {params} -> "
                                 f"{response.status_code} {response.text[:300]}")
        return response

    def listed(self, base):
        """GET /api/chat/conversations, every page: {conversation id: version}."""
        found, path, params = {}, "/api/chat/conversations", {"limit": 200}
        while path:
            response = self.get(base, path, **params)
            for entry in response.json():
                found[entry["conversation"]["id"]] = entry["conversation"]["version"]
            path, params = response.links.get("next", {}).get("url"), {}
        return found

    def copy(self, conversation_id):
        with self.lock:
            if conversation_id not in self.conversations:
                self.conversations[conversation_id] = ConversationCopy(conversation_id)
            return self.conversations[conversation_id]

    # -- the catch-up procedure ---------------------------------------------------------
    def catch_up(self, base, limit=100, max_pages=None, deadline=None):
        """The documented procedure: list, then `changes` from the held version until `more`
        is false, for every conversation listed above it. Stops early (as a client that
        disconnects at that moment) after `max_pages` pages or at `deadline` (monotonic);
        returns True when every conversation ended with `more` false."""
        self.stats["catch_ups"] += 1
        pages = 0
        complete = True
        for conversation_id, version in self.listed(base).items():
            conv = self.copy(conversation_id)
            if version < conv.listed_version:
                self.violations.append(f"{conversation_id}: listed version {version} after "
                                       f"{conv.listed_version}")
            conv.listed_version = max(conv.listed_version, version)
            more = version > conv.version
            while more:
                if (max_pages is not None and pages >= max_pages) or (
                        deadline is not None and time.monotonic() > deadline):
                    self.stats["abandoned"] += 1
                    return False
                page = self.get(base, f"/api/chat/conversations/{conversation_id}/changes",
                                since=conv.version, limit=limit).json()
                pages += 1
                self.apply_page(conv, page)
                more = page["more"]
                if more:
                    self.stats["more_pages"] += 1
            complete = complete and not more
        return complete

    def apply_page(self, conv, page):
        since = conv.version
        where = f"{self.label} {conv.id} since={since}"
        self.stats["pages"] += 1
        conv.pages += 1
        if page["version"] < since:
            self.violations.append(f"{where}: page version {page['version']} below the held "
                                   f"{since}")
        last = conv.events[-1]["version"] if conv.events else 0
        for event in page["events"]:
            if not (since < event["version"] <= page["version"]) or event["version"] <= last:
                self.violations.append(f"{where}: event {event} out of order (previous event "
                                       f"at {last}, page version {page['version']})")
            last = event["version"]
        seen = set()
        for message in page["messages"]:
            mid = message["id"]
            if mid in seen:
                self.violations.append(f"{where}: message {mid} twice in one page")
            seen.add(mid)
            if message["version"] <= since:
                self.violations.append(f"{where}: message {mid} at version "
                                       f"{message['version']}, not above since")
            if message["version"] < conv.feed_versions.get(mid, 0):
                self.violations.append(f"{where}: message {mid} went back from version "
                                       f"{conv.feed_versions[mid]} to {message['version']}")
            conv.feed_versions[mid] = max(conv.feed_versions.get(mid, 0), message["version"])
        with self.lock:
            for message in page["messages"]:
                held = conv.messages.get(message["id"])
                if held is None or message["version"] >= held["version"]:
                    conv.messages[message["id"]] = message
            conv.events.extend(page["events"])
            conv.version = max(conv.version, page["version"])

    # -- live events ----------------------------------------------------------------------
    def apply_live(self, event, data):
        """`chat message`, `message updated`, `message deleted`: the message replaces the
        held one when its version is above it. Nothing else is taken from sockets."""
        if not isinstance(data, dict) or "conversation" not in data or "version" not in data:
            self.stats["live_ignored"] += 1
            return
        conv = self.copy(data["conversation"])
        with self.lock:
            held = conv.messages.get(data["id"])
            if held is None or data["version"] > held["version"]:
                conv.messages[data["id"]] = data
                self.stats["live_applied"] += 1
            else:
                self.stats["live_ignored"] += 1

    # -- the comparison ---------------------------------------------------------------------
    def server_history(self, base, conversation_id):
        """Every message of the conversation, walking the history's `Link` pages."""
        found, path, params = [], f"/api/chat/conversations/{conversation_id}/messages", {
            "limit": 200}
        while path:
            response = self.get(base, path, **params)
            found.extend(response.json())
            path, params = response.links.get("next", {}).get("url"), {}
        ids = [m["id"] for m in found]
        assert len(ids) == len(set(ids)), f"history of {conversation_id} repeats a message"
        return {m["id"]: m for m in found}

    def differences(self, base, fields=("content", "deleted", "edited_at", "version", "seq",
                                        "sender", "conversation")):
        """Every way this copy differs from the server's state (a list of sentences)."""
        out = []
        listed = self.listed(base)
        held = set(self.conversations)
        if held != set(listed):
            out.append(f"conversations held {sorted(held)} != listed {sorted(listed)}")
        for conversation_id in sorted(held & set(listed)):
            conv = self.conversations[conversation_id]
            where = f"{self.label} {conversation_id}"
            server = self.get(base, f"/api/chat/conversations/{conversation_id}").json()
            if conv.version != server["version"]:
                out.append(f"{where}: holds version {conv.version}, server at "
                           f"{server['version']}")
            history = self.server_history(base, conversation_id)
            missing = sorted(set(history) - set(conv.messages))
            extra = sorted(set(conv.messages) - set(history))
            if missing:
                out.append(f"{where}: missing messages "
                           f"{[(m, history[m]['seq'], history[m]['version']) for m in missing]}")
            if extra:
                out.append(f"{where}: messages the server does not have {extra}")
            for mid in sorted(set(history) & set(conv.messages)):
                mine, theirs = conv.messages[mid], history[mid]
                wrong = {f: (mine.get(f), theirs.get(f)) for f in fields
                         if mine.get(f) != theirs.get(f)}
                if wrong:
                    out.append(f"{where}: message {mid} (held, server): {wrong}")
            out.extend(self._replay_differences(conv, server, where))
        return out

    def _replay_differences(self, conv, server, where):
        """Members, roles, title and read markers replayed from the events since version 0,
        against GET /api/chat/conversations/<id>."""
        out = []
        seq = {mid: m["seq"] for mid, m in conv.messages.items()}
        members, markers, title = {}, {}, None
        if server["type"] == "direct":  # a pair from its first message: no member events
            members = {m["user"]["id"]: m["role"] for m in server["members"]}
            markers = {user: 0 for user in members}
            title = server["title"]
        for event in conv.events:
            kind, user = event["type"], event.get("user")
            if kind == "member_added":
                members[user] = event.get("role", "member")
                markers[user] = 0  # a new member entry starts with nothing read
            elif kind == "member_removed":
                if members.pop(user, None) is None:
                    out.append(f"{where}: {event} removes a non-member")
                markers.pop(user, None)
            elif kind == "role_changed":
                if user not in members:
                    out.append(f"{where}: {event} re-roles a non-member")
                members[user] = event["role"]
            elif kind == "title_changed":
                title = event["title"]
            elif kind == "read":
                if event["up_to"] not in seq:
                    out.append(f"{where}: {event} reads up to a message never received")
                    continue
                if user not in markers:
                    out.append(f"{where}: {event} by a non-member")
                # Markers only move forward: the highest `up_to` a member read is theirs.
                markers[user] = max(markers.get(user, 0), seq[event["up_to"]])
        server_members = {m["user"]["id"]: m["role"] for m in server["members"]}
        server_markers = {m["user"]["id"]: m["read_up_to"] for m in server["members"]}
        if members != server_members:
            out.append(f"{where}: replayed members/roles {members} != server's {server_members}")
        if title != server["title"]:
            out.append(f"{where}: replayed title {title!r} != server's {server['title']!r}; "
                       f"the last title changes: {self._story(conv, 'title_changed')[-4:]}")
        if markers != server_markers:
            out.append(f"{where}: replayed read markers {markers} != server's {server_markers}")
        for user in sorted(set(members) ^ set(server_members)
                           | {u for u in set(members) & set(server_members)
                              if members[u] != server_members[u]}
                           | {u for u in set(markers) & set(server_markers)
                              if markers[u] != server_markers[u]}
                           | {e.get("user") for e in conv.events if e["type"] == "read"
                              and e.get("user") not in markers and out}):
            out.append(f"{where}: the events about user {user} (last 8): "
                       f"{self._story(conv, user=user, seq=seq)[-8:]}")
        return out

    @staticmethod
    def _story(conv, kind=None, user=None, seq=None):
        """(version, type, role|title|up_to's seq, by) of the events of a kind or a user."""
        return [(e["version"], e["type"], e.get("role") or e.get("title")
                 or (seq or {}).get(e.get("up_to"), e.get("up_to")), (e.get("by") or "")[-4:])
                for e in conv.events
                if (kind is None or e["type"] == kind) and (user is None or e.get("user") == user)]
