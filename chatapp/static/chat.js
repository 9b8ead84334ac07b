// chatapp's demo page: REST for accounts and history, Socket.IO for everything live.
// Plain browser JavaScript, no build step. Whatever comes from the server or from users (message
// text, names, filenames, emoji) only ever goes through textContent and DOM properties, never
// innerHTML; the only URLs set on an element (img.src, a.href) are the server's own relative
// attachment URLs (`ownUrl`).
// Without the Socket.IO client (/static/vendor/, installed by `make run` when npm is present)
// it still works: it sends over REST and runs the catch-up below every few seconds.
// Catching up after a disconnect (the change feed, README "Catching up after a disconnect"):
// the section "catching up" below is the worked example; `catchUp` is where it starts.
"use strict";

const $ = (selector) => document.querySelector(selector);
const el = (tag, props = {}) => Object.assign(document.createElement(tag), props);
const state = JSON.parse(sessionStorage.getItem("chatapp") || "{}"); // {token, refresh, me}
// The conversation list. A direct conversation is keyed by the peer's user id (a chat just
// started has no conversation id yet), a group by its conversation id:
// key -> {kind: "direct", key, user, convId?, last, unread} | {kind: "group", key, conversation, last, unread}
const convs = new Map();
const names = new Map(); // user id -> username: group senders, previews, typing
const shown = new Map(); // message id -> <li> of the open conversation
let socket = null;
let pollRun = 0; // without the Socket.IO client: bumped to start or stop the polling loop
let pollFailed = false; // the last poll's error is on screen
const POLL_MS = 3000;
let peer = null; // the open direct conversation's User
let group = null; // or the open group's Conversation (with `members`)
let view = 0; // bumped on every open: answers for a conversation no longer open are dropped
let loadedView = 0; // the view whose first page of history is on screen
const early = []; // the open conversation's messages from the change feed, before that page
let olderUrl = null; // the open conversation's next (older) history page, from the Link header
let draftId = null; // client_id of the message being sent: a retry never duplicates it
let typingSentAt = 0;
let typingStop = null;
let typingTarget = null; // {receiver} or {conversation} the last `typing: true` went to
const typers = new Set(); // user ids typing in the open group
// The open conversation's messages as last seen (live, history, change feed; shown or not), for
// reply previews: a reply's preview follows its original's edits and deletion.
const known = new Map(); // message id -> {sender, content, deleted, version}
let replyTo = null; // the message the composer answers ({id, sender, content, deleted}), or null
const pending = []; // the composer's attachments: {name, size, done, attachment?, error?}
const blocked = new Set(); // ids of the users this user blocks
const PREVIEW_LENGTH = 100; // code points of an original shown in a reply (as the server's)
const QUICK_REACTIONS = ["👍", "❤️", "😂", "😮", "😢"];
// Shown inline (<img>): the raster images the server serves `inline`; anything else is a link.
const INLINE_IMAGES = new Set(["image/png", "image/apng", "image/jpeg", "image/gif", "image/webp",
  "image/bmp", "image/avif", "image/x-icon"]);
const MAX_ATTACHMENTS = 10; // per message

const me = () => state.me?.id;
const openKey = () => peer?.id ?? group?.id ?? null;
const isGroup = (id) => !!id && convs.get(id)?.kind === "group";

// ---- REST -------------------------------------------------------------------------------
// `body`: an object (sent as JSON) or a FormData (multipart: the attachment upload).
async function api(method, path, body, retry = true) {
  const form = body instanceof FormData;
  const headers = body && !form ? { "Content-Type": "application/json" } : {};
  if (state.token) headers.Authorization = `Bearer ${state.token}`;
  const res = await fetch(path, { method, headers, body: body && (form ? body : JSON.stringify(body)) });
  const data = await res.json().catch(() => null);
  if (res.status === 401 && retry && data?.error?.code === "token_expired" && (await refresh())) {
    return api(method, path, body, false);
  }
  if (!res.ok) {
    const { message = `HTTP ${res.status}`, details, code } = data?.error || {};
    const why = details ? Object.entries(details).map(([k, v]) => `${k}: ${[].concat(v).join(" ")}`) : [];
    throw Object.assign(new Error([message, ...why].join(" — ")), { code });
  }
  return { data, res };
}

// The path of a `Link: <...>; rel="next"` header, or null.
function nextLink(res) {
  const next = /<([^>]+)>;\s*rel="next"/.exec(res.headers.get("Link") || "");
  if (!next) return null;
  const url = new URL(next[1], location.href);
  return url.pathname + url.search;
}

async function refresh() {
  if (!state.refresh) return false;
  const res = await fetch("/api/user/refresh", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ refresh_token: state.refresh }),
  });
  if (!res.ok) return false;
  const data = await res.json();
  Object.assign(state, { token: data.access_token, refresh: data.refresh_token });
  sessionStorage.setItem("chatapp", JSON.stringify(state));
  return true;
}

async function guard(action, where = "#error") {
  $(where).textContent = "";
  try {
    await action();
  } catch (err) {
    $(where).textContent = err.message;
  }
}

// ---- signing in and out -------------------------------------------------------------------
$("#auth-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const form = event.target;
  const email = form.email.value.trim();
  const password = form.password.value;
  try {
    if (event.submitter?.name === "register") {
      await api("POST", "/api/user/register", { username: form.username.value.trim(), email, password });
    }
    const { data } = await api("POST", "/api/user/login", { email, password });
    Object.assign(state, { token: data.access_token, refresh: data.refresh_token, me: data.user });
    sessionStorage.setItem("chatapp", JSON.stringify(state));
    form.reset();
    start();
  } catch (err) {
    $("#auth-error").textContent = err.message;
  }
});

$("#logout").addEventListener("click", async () => {
  await api("POST", "/api/user/logout", { refresh_token: state.refresh }).catch(() => {});
  signOut();
});

function signOut() {
  socket?.off();
  socket?.disconnect();
  socket = null;
  pollRun += 1;
  closePane();
  convs.clear();
  names.clear();
  asked.clear();
  for (const timer of syncTimers.values()) clearTimeout(timer);
  syncTimers.clear();
  held.clear(); // a running catch-up stops at its next answer
  announced.clear();
  blocked.clear();
  clearResults();
  $("#search").value = "";
  for (const key of Object.keys(state)) delete state[key];
  sessionStorage.removeItem("chatapp");
  closeGroupForm();
  $("#conversations").replaceChildren();
  $("#chat").hidden = true;
  $("#auth").hidden = false;
}

function start() {
  $("#auth").hidden = true;
  $("#chat").hidden = false;
  $("#auth-error").textContent = "";
  $("#me").textContent = state.me.username;
  names.set(state.me.id, state.me.username);
  $("#notice").hidden = typeof io === "function";
  guard(loadBlocks);
  if (typeof io !== "function") return startPolling();
  // `auth` as a function: every (re)connect presents the current token.
  socket = io({ auth: (cb) => cb({ token: state.token }) });
  // Every (re)connect: whatever changed while this page was offline, without a reload and
  // without refetching what is on screen (section "catching up").
  socket.on("connect", () => guard(async () => {
    await catchUp();
    if (group) await loadMembers(group.id); // presence is not in the change feed
  }));
  socket.on("connect_error", async (err) => {
    const code = err.data?.code; // set when the server refused the handshake
    if (code === "token_expired" && (await refresh())) return socket.connect();
    if (["unauthorized", "token_expired", "token_revoked"].includes(code)) return signOut();
    $("#error").textContent = `offline (${err.message}), retrying…`;
    // Network errors are retried by the client itself; a refusal (e.g. database down) is not.
    const refused = socket;
    if (!refused.active) setTimeout(() => socket === refused && refused.connect(), 3000);
  });
  socket.on("disconnect", async (reason) => {
    // Typing is not in the change feed: a `typing: false` sent while offline would be missed.
    typers.clear();
    $("#typing").textContent = "";
    // The server closes the socket when the token expires (or on logout-all).
    if (reason === "io server disconnect") (await refresh()) ? socket.connect() : signOut();
  });
  socket.on("chat message", onMessage);
  socket.on("message updated", onChanged);
  socket.on("message deleted", onChanged);
  socket.on("typing", onTyping);
  socket.on("read", onRead);
  // Delivery receipts are not shown here, but they are changes: their versions count.
  socket.on("delivered", ({ conversation, version }) => noteVersion(conversation, version));
  socket.on("presence", onPresence);
  socket.on("conversation", onConversation);
}

// ---- without the Socket.IO client: polling over REST ----------------------------------------
// Every POLL_MS after the last answer: the same catch-up as on a reconnect (the conversation
// list, then the change feed of each conversation that moved), and the open group's members
// (their presence, which the change feed does not carry).
function startPolling() {
  const run = ++pollRun;
  const tick = async () => {
    await pollOnce(run);
    if (run === pollRun) setTimeout(tick, POLL_MS);
  };
  tick();
}

async function pollOnce(run) {
  try {
    await catchUp();
    if (group) await loadMembers(group.id);
    if (pollFailed) $("#error").textContent = "";
    pollFailed = false;
  } catch (err) {
    if (run !== pollRun) return;
    if (["unauthorized", "token_expired", "token_revoked"].includes(err.code)) return signOut();
    pollFailed = true;
    $("#error").textContent = `offline (${err.message}), retrying…`;
  }
}

// ---- conversations --------------------------------------------------------------------------
let listSerial = 0; // bumped when a list fetch starts; entries the page adds itself note it

// The conversation list, every page of it (step 1 of the catch-up). Returns the listed
// Conversations (`version` included); those the page held and the list no longer has are ones
// you left or were removed from: the page forgets them.
async function loadConversations() {
  const serial = ++listSerial;
  const entries = [];
  let url = "/api/chat/conversations?limit=200";
  for (let pages = 0; url && pages < 5; pages += 1) { // at most 1 000 conversations on the page
    const { data, res } = await api("GET", url);
    entries.push(...data);
    url = nextLink(res);
  }
  const complete = !url;
  const before = new Map(convs);
  convs.clear();
  for (const c of entries) {
    // Direct entries have the peer in `user`; groups have `user: null` and a `conversation`.
    const entry = c.user
      ? { kind: "direct", key: c.user.id, user: c.user, convId: c.conversation?.id }
      : { kind: "group", key: c.conversation.id, conversation: c.conversation };
    if (c.user) names.set(c.user.id, c.user.username);
    // The answer may be older than an event applied while it was on its way: keep the later.
    const last = later(before.get(entry.key)?.last, c.last_message);
    convs.set(entry.key, Object.assign(entry, { last, unread: c.unread_count }));
  }
  for (const [key, old] of before) { // added here (a group just created) after the fetch began
    if (!convs.has(key) && old.addedIn >= serial) convs.set(key, old);
  }
  if (peer) {
    const listed = convs.get(peer.id);
    if (listed) showPeerDot(peer.online = listed.user.online);
    convs.set(peer.id, { kind: "direct", key: peer.id, user: peer, last: null, ...listed, unread: 0 });
  }
  const listed = entries.map((c) => c.conversation).filter(Boolean);
  for (const c of listed) meet(c, c.id === group?.id || c.id === convs.get(peer?.id)?.convId);
  if (complete) {
    const ids = new Set([...convs.values()].map((c) => c.convId ?? c.conversation?.id));
    for (const id of held.keys()) if (!ids.has(id)) forget(id);
  }
  if (group && !convs.has(group.id)) closePane("You are no longer in this group.");
  else if (group) convs.get(group.id).unread = 0; // on screen, so read
  renderConversations();
  learnNames(entries.filter((c) => !c.user && c.last_message).map((c) => c.last_message.sender));
  return listed;
}

// The later of two states of a conversation's last message (by seq, then by version).
function later(a, b) {
  if (!a || !b) return a ?? b;
  if (a.seq !== b.seq) return a.seq > b.seq ? a : b;
  return (a.version ?? 0) > (b.version ?? 0) ? a : b;
}

// Usernames of group senders this page has not met yet (for previews and message labels).
const asked = new Set();
function learnNames(ids) {
  const unknown = [...new Set(ids)].filter((id) => !names.has(id) && !asked.has(id)).slice(0, 20);
  if (!unknown.length) return;
  unknown.forEach((id) => asked.add(id));
  guard(async () => {
    const found = await Promise.allSettled(unknown.map((id) => api("GET", `/api/user/${encodeURIComponent(id)}`)));
    for (const result of found) {
      if (result.status === "fulfilled") names.set(result.value.data.id, result.value.data.username);
    }
    renderConversations();
    refreshNames();
  });
}

// Names learnt: group senders' labels and the senders in reply previews.
function refreshNames() {
  for (const span of $("#list").querySelectorAll(".sender")) span.textContent = senderName(span.dataset.user);
  for (const who of $("#list").querySelectorAll(".quote .who")) who.textContent = quoteName(who.dataset.user);
  renderReplying();
}

const dot = (online) => el("span", { className: online ? "dot online" : "dot", title: online ? "online" : "offline" });
const activity = (c) => c.last?.timestamp ?? c.conversation?.created_at ?? "~";

function preview(c) {
  if (!c.last) return c.kind === "group" ? `${c.conversation.member_count} members` : "";
  const files = !c.last.deleted && c.last.attachments?.length ? "📎 " : "";
  const text = c.last.deleted ? "message deleted" : files + c.last.content;
  if (c.kind !== "group") return text;
  const who = c.last.sender === me() ? "you" : names.get(c.last.sender);
  return who ? `${who}: ${text}` : text;
}

function renderConversations() {
  // Most recent first; a chat just started (nothing sent yet) on top.
  const entries = [...convs.values()].sort((a, b) => activity(b).localeCompare(activity(a)));
  $("#conversations").replaceChildren(...entries.map((c) => {
    const li = el("li", { className: `${c.kind}${c.key === openKey() ? " active" : ""}` });
    li.dataset.conversation = c.key;
    if (c.kind === "group") {
      li.append(el("span", { className: "icon", textContent: "#", title: "group" }),
        el("span", { className: "name", textContent: c.conversation.title }));
    } else {
      li.dataset.peer = c.user.id;
      li.append(dot(c.user.online), el("span", { className: "name", textContent: c.user.username }));
    }
    if (c.unread) li.append(el("span", { className: "badge", textContent: c.unread }));
    li.append(el("span", { className: "preview", textContent: preview(c) }));
    li.addEventListener("click", () => guard(() =>
      (c.kind === "group" ? openGroup(c.key) : openConversation(c.user))));
    return li;
  }));
}

let findTimer = null;
$("#find").addEventListener("input", (event) => {
  clearTimeout(findTimer);
  findTimer = setTimeout(() => guard(() => findUsers(event.target.value.trim())), 250);
});

async function findUsers(prefix) {
  if (!prefix) return $("#found").replaceChildren();
  const { data } = await api("GET", `/api/user?limit=10&q=${encodeURIComponent(prefix)}`);
  $("#found").replaceChildren(...data.users.filter((u) => u.id !== me()).map((user) => {
    const li = el("li", { textContent: ` ${user.username}` });
    li.prepend(dot(user.online));
    li.addEventListener("click", () => guard(() => {
      $("#find").value = "";
      $("#found").replaceChildren();
      return openConversation(user);
    }));
    return li;
  }));
}

// ---- catching up: the change feed -----------------------------------------------------------
// Every change in a conversation (a message sent, edited or deleted, a read or delivered marker
// moved, a member added, removed or re-roled, a title changed) takes the next number of that
// conversation's `version`. The page keeps, per conversation, the version it holds: what it
// shows of that conversation reflects every change up to that number. The procedure:
//  1. on every (re)connect, list the conversations, every page (`loadConversations`); one the
//     page held that is no longer listed is one you left or were removed from;
//  2. for each listed conversation whose `version` is above the one held, call
//     GET /api/chat/conversations/<id>/changes?since=<held> until `more` is false, applying the
//     messages (each in its current state: new, edited or deleted; replace by id) and the
//     events (members, roles, title, read and delivered markers), and hold the answer's
//     `version`;
//  3. live events carry `version` too: one that is exactly held + 1 moves the held version on;
//     one further ahead means a change this page has not seen (yet): call `changes`.
// Applying something twice is harmless (a message is replaced by id, unless the page already
// shows a later version of it; markers only move forward), so the page applies every live event
// at once and lets the change feed fill in whatever it missed.
const held = new Map(); // conversation id -> the version this page holds
const announced = new Map(); // conversation id -> the highest version the server has mentioned
const syncs = new Map(); // conversation id -> the catch-up running for it (a Promise)
const syncTimers = new Map(); // conversation id -> a catch-up about to start
const SYNC_PARALLEL = 4; // conversations caught up at once after a reconnect
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// Steps 1 and 2: on every (re)connect, and every POLL_MS without the Socket.IO client.
async function catchUp() {
  const listed = await loadConversations();
  const moved = listed.filter((c) => held.has(c.id) && c.version > held.get(c.id));
  const open = openConversationId();
  moved.sort((a, b) => (b.id === open) - (a.id === open)); // what is on screen first
  const queue = [...moved];
  const worker = async () => { while (queue.length) await sync(queue.shift().id); };
  await Promise.all(Array.from({ length: Math.min(SYNC_PARALLEL, queue.length) }, worker));
}

// The page meets a conversation (in the list, or one it just created): from now on it holds a
// version of it. Of a conversation that is not open the page shows only its list entry, as new as
// the list, so it holds the listed version. The open one may already show messages that came
// before the list knew the conversation (a chat just started): it holds 0, and its first
// catch-up reads its changes from the start.
function meet(c, open) {
  if (!held.has(c.id)) held.set(c.id, open ? 0 : c.version);
  announce(c.id, c.version);
}

function announce(id, version) {
  if (version > (announced.get(id) ?? 0)) announced.set(id, version);
}

// A conversation left or removed from: gone from the list, and closed if it is open.
function forget(id, why = "You are no longer in this conversation.") {
  held.delete(id);
  announced.delete(id);
  const entry = entryOf(id);
  if (!entry) return;
  convs.delete(entry.key);
  if (entry.key === openKey()) closePane(why);
  renderConversations();
}

// The list entry of a conversation id (a direct conversation's entry is keyed by the peer).
const entryOf = (id) => convs.get(id) ?? [...convs.values()].find((c) => c.convId === id);
const openConversationId = () => group?.id ?? convs.get(peer?.id)?.convId ?? null;

// Step 3: a live event about conversation `id`, at `version`, that the page has just applied.
function noteVersion(id, version) {
  if (!id || version == null || !held.has(id)) return; // a conversation the page has not met yet
  announce(id, version);
  if (version === held.get(id) + 1) held.set(id, version);
  else if (version > held.get(id)) syncSoon(id); // a gap: a change missed, or still on its way
}

// A catch-up of one conversation shortly (a straggling live event may fill the gap meanwhile).
function syncSoon(id) {
  if (syncTimers.has(id)) return;
  syncTimers.set(id, setTimeout(() => {
    syncTimers.delete(id);
    if (held.get(id) < (announced.get(id) ?? 0)) guard(() => sync(id));
  }, 500));
}

// Step 2 for one conversation. One at a time per conversation: asking while one runs joins it
// (it goes on until it holds every version announced meanwhile).
function sync(id) {
  if (!syncs.has(id)) syncs.set(id, pull(id).finally(() => syncs.delete(id)));
  return syncs.get(id);
}

async function pull(id) {
  for (;;) {
    const since = held.get(id);
    if (since === undefined) return; // forgotten meanwhile (left, removed, signed out)
    let data;
    try {
      ({ data } = await api("GET",
        `/api/chat/conversations/${encodeURIComponent(id)}/changes?since=${since}&limit=500`));
    } catch (err) {
      if (err.code === "not_found") return forget(id); // removed while the page was offline
      throw err;
    }
    if (!held.has(id)) return;
    applyChanges(id, data);
    held.set(id, Math.max(held.get(id), data.version));
    if (!data.more && (data.version === since || held.get(id) >= (announced.get(id) ?? 0))) return;
    // `more` with no progress: a lower version is still being written (the server waited a
    // moment for it already); ask again shortly.
    if (data.version === since) await sleep(500);
  }
}

// One answer of the change feed, applied to what the page shows: each message (the list's
// preview; the open conversation's history on screen), then each event in version order.
function applyChanges(id, { messages, events }) {
  const entry = entryOf(id);
  if (!entry) return;
  const open = entry.key === openKey();
  for (const m of messages) entry.last = later(entry.last, m);
  if (open) showInPane(messages);
  // A marker's `up_to` is a message id: its seq from the screen, or from this answer.
  const seqs = new Map(messages.map((m) => [m.id, m.seq]));
  const seqOf = (messageId) => (shown.has(messageId) ? +shown.get(messageId).dataset.seq : seqs.get(messageId));
  let membersMoved = false;
  for (const event of events) {
    switch (event.type) {
      case "title_changed":
        if (entry.kind === "group") entry.conversation = { ...entry.conversation, title: event.title };
        if (open && group) {
          group.title = event.title;
          $("#peer-name").textContent = event.title;
          renderMembers();
        }
        break;
      case "member_added":
      case "member_removed":
      case "role_changed":
        membersMoved = true; // the open group's members are read again, once, below
        break;
      case "read": // reading implies delivery up to the same message
        if (event.user === me() && event.up_to === entry.last?.id) entry.unread = 0; // another tab
        if (open && !showRead(event.user, seqOf(event.up_to))) membersMoved = true;
        break;
      default: // "delivered": this page shows no delivery receipts
    }
  }
  if (open && group && membersMoved) guard(() => loadMembers(id));
  renderConversations();
}

// A read marker of the open conversation moved: `reader` has read up to `seq` (undefined: a
// message not on screen, so older than everything shown). False when the page cannot place it.
function showRead(reader, seq) {
  if (group) {
    const member = group.members?.find((m) => m.user.id === reader);
    if (!member || seq === undefined) return false;
    member.read_up_to = Math.max(member.read_up_to, seq);
    renderMembers();
    renderSeen();
  } else if (reader === peer?.id && seq !== undefined) {
    markMineRead(seq);
  }
  return true;
}

// Messages of the open conversation from the change feed: each replaces the one shown, or is
// placed by seq if it falls within the history on screen (older ones come with "Load older", in
// their current state). New messages of the others are then read, as if they had come live.
function showInPane(messages) {
  if (loadedView !== view) return early.push(...messages); // its first page is still on its way
  const oldest = $("#list").firstElementChild;
  const fresh = [];
  for (const m of messages) {
    remember(m); // shown or not, an original's new state reaches the previews of its replies
    const isNew = !shown.has(m.id);
    if (isNew && olderUrl && oldest && m.seq < +oldest.dataset.seq) continue;
    render(m);
    if (isNew) fresh.push(m);
  }
  if (!messages.length) return;
  renderSeen();
  if (!fresh.length) return;
  scrollDown();
  if (group) learnNames(fresh.map((m) => m.sender));
  const theirs = fresh.filter((m) => m.sender !== me() && !m.deleted).sort((a, b) => b.seq - a.seq)[0];
  if (theirs && group) markGroupRead(theirs);
  else if (theirs) sendRead(peer.id, theirs);
}

// ---- creating a group -----------------------------------------------------------------------
const picked = new Map(); // user id -> username, the new group's members besides you
let candidatesTimer = null;

$("#new-group").addEventListener("click", () => {
  if (!$("#group-form").hidden) return closeGroupForm();
  $("#group-form").hidden = false;
  $("#group-form [name=title]").focus();
  guard(() => listCandidates(""), "#group-error");
});

$("#group-form [name=cancel]").addEventListener("click", closeGroupForm);

function closeGroupForm() {
  clearTimeout(candidatesTimer);
  picked.clear();
  $("#group-form").reset();
  $("#group-form").hidden = true;
  $("#candidates").replaceChildren();
  $("#picked").textContent = "";
  $("#group-error").textContent = "";
}

$("#group-find").addEventListener("input", (event) => {
  clearTimeout(candidatesTimer);
  candidatesTimer = setTimeout(
    () => guard(() => listCandidates(event.target.value.trim()), "#group-error"), 250);
});

// The users list (first 50, or those whose username starts with `prefix`), each with a checkbox.
async function listCandidates(prefix) {
  const query = prefix ? `&q=${encodeURIComponent(prefix)}` : "";
  const { data } = await api("GET", `/api/user?limit=50${query}`);
  if ($("#group-form").hidden || $("#group-find").value.trim() !== prefix) return; // stale answer
  $("#candidates").replaceChildren(...data.users.filter((u) => u.id !== me()).map((user) => {
    const box = el("input", { type: "checkbox", checked: picked.has(user.id) });
    box.addEventListener("change", () => {
      if (box.checked) picked.set(user.id, user.username);
      else picked.delete(user.id);
      renderPicked();
    });
    const label = el("label");
    label.append(box, el("span", { textContent: user.username }));
    const li = el("li");
    li.dataset.user = user.id;
    li.append(label);
    return li;
  }));
}

function renderPicked() {
  $("#picked").textContent = picked.size ? `With: ${[...picked.values()].join(", ")}` : "";
}

$("#group-form").addEventListener("submit", (event) => {
  event.preventDefault();
  guard(async () => {
    const title = $("#group-form [name=title]").value.trim();
    if (!title) throw new Error("Give the group a title.");
    if (!picked.size) throw new Error("Pick at least one person for the group.");
    const { data } = await api("POST", "/api/chat/groups", { title, members: [...picked.keys()] });
    const conversation = data.conversation;
    for (const m of conversation.members || []) names.set(m.user.id, m.user.username);
    convs.set(conversation.id, { kind: "group", key: conversation.id, conversation,
      last: conversation.last_message, unread: 0, ...convs.get(conversation.id), addedIn: listSerial });
    meet(conversation, false); // not open yet: what the page shows of it is loaded after this
    closeGroupForm();
    await openGroup(conversation.id);
  }, "#group-error");
});

// ---- the open conversation --------------------------------------------------------------------
function resetPane(title) {
  view += 1;
  stopTyping();
  typers.clear();
  draftId = null; // a retry is only ever to the conversation it was typed in
  $("#peer-name").textContent = title;
  $("#typing").textContent = "";
  $("#list").replaceChildren();
  $("#older").hidden = true;
  olderUrl = null;
  shown.clear();
  known.clear();
  early.length = 0;
  replyTo = null;
  renderReplying();
  pending.length = 0; // uploads never sent are deleted by the server after a while
  renderPending();
  $("#block").hidden = true;
}

function closePane(why = "") {
  resetPane("Pick a conversation");
  peer = group = null;
  $("#peer-dot").hidden = true;
  showInfo(false);
  setComposer(false);
  $("#error").textContent = why;
  renderConversations();
}

function showPeerDot(online) {
  $("#peer-dot").hidden = false;
  $("#peer-dot").className = online ? "dot online" : "dot";
}

function showInfo(visible) {
  $("#info").hidden = !visible;
  $("#chat").classList.toggle("with-info", visible);
}

function enableComposer() {
  setComposer(true);
  $("#text").focus();
}

function setComposer(enabled) {
  for (const control of ["#text", "#send", "#attach"]) $(control).disabled = !enabled;
}

async function openConversation(user) {
  resetPane(user.username);
  peer = user;
  group = null;
  names.set(user.id, user.username);
  convs.set(user.id, { kind: "direct", key: user.id, user, last: null, ...convs.get(user.id), unread: 0 });
  renderConversations();
  showPeerDot(user.online);
  showInfo(false);
  renderBlock();
  guard(loadBlocks); // blocks made or lifted elsewhere (another tab)
  enableComposer();
  await loadPage(`${historyPath()}?limit=30`);
  scrollDown();
  sendRead(user.id); // read receipts: everything shown is read
}

async function openGroup(id) {
  const entry = convs.get(id);
  if (!entry) throw new Error("You are not in this group.");
  resetPane(entry.conversation.title);
  peer = null;
  group = { ...entry.conversation, members: group?.id === id ? group.members : [] };
  entry.unread = 0;
  renderConversations();
  $("#peer-dot").hidden = true;
  renderMembers();
  showInfo(true);
  enableComposer();
  await Promise.all([
    loadMembers(id),
    loadPage(`${historyPath()}?limit=30`),
  ]);
  scrollDown();
  if (group?.id === id) markGroupRead(); // everything shown is read
}

// The open conversation's history: the 1:1 call for a direct one (it answers before the pair's
// first message too), the conversation's for a group.
const historyPath = () => (group ? `/api/chat/conversations/${encodeURIComponent(group.id)}/messages`
  : `/api/chat/messages/${me()}/${peer.id}`);

// Tell the server you have read conversation `key` (a peer's or a group's id) up to message
// `upTo` (default: all): `read` over the socket, else POST .../read.
function sendRead(key, upTo) {
  const body = upTo ? { up_to: upTo.id } : {};
  if (socket) return socket.emit("read", { [isGroup(key) ? "conversation" : "peer"]: key, ...body });
  if (!upTo && !$("#list li.theirs")) return null; // nothing of theirs to mark
  return api("POST", `/api/chat/conversations/${encodeURIComponent(key)}/read`, body)
    .catch((err) => { $("#error").textContent = err.message; });
}

// Tell the server the open group is read (up to a message, default all), and move your own
// marker here: the server's `read` event goes to the other members only.
function markGroupRead(upTo) {
  const sent = sendRead(group.id, upTo);
  const mine = group.members?.find((m) => m.user.id === me());
  const newest = upTo?.seq ?? Math.max(0, ...[...$("#list").children].map((li) => +li.dataset.seq));
  if (mine && newest > mine.read_up_to) {
    mine.read_up_to = newest;
    renderMembers();
  }
  return sent;
}

// The open group's members and their markers, from `GET /api/chat/conversations/<id>`.
async function loadMembers(id) {
  const forView = view;
  const { data } = await api("GET", `/api/chat/conversations/${encodeURIComponent(id)}`);
  if (view === forView && group?.id === id) applyGroup(data);
}

// A newer state of the open group (an answer or a `conversation` event). Read markers only
// ever move forward: a marker a `read` event already moved is never put back.
function applyGroup(c) {
  if (!c.members || (group.version && c.version < group.version)) return;
  const before = new Map((group.members || []).map((m) => [m.user.id, m.read_up_to]));
  const members = c.members.map((m) =>
    ({ ...m, read_up_to: Math.max(m.read_up_to, before.get(m.user.id) ?? 0) }));
  for (const m of members) names.set(m.user.id, m.user.username);
  group = { ...group, ...c, members };
  $("#peer-name").textContent = group.title;
  renderMembers();
  renderSeen();
  renderTypers();
  refreshNames();
}

// A group message's sender: "…" until the members are known, "former member" for one who left.
const senderName = (id) => names.get(id) ?? (group?.members?.length ? "former member" : "…");

function renderMembers() {
  const members = group?.members || [];
  $("#group-title").textContent = group?.title ?? "";
  $("#member-count").textContent = `${group?.member_count ?? members.length} members`;
  $("#members").replaceChildren(...members.map((m) => {
    const li = el("li");
    li.dataset.user = m.user.id;
    const name = m.user.id === me() ? `${m.user.username} (you)` : m.user.username;
    li.append(dot(m.user.online), el("span", { className: "name", textContent: name }),
      el("span", { className: "role", textContent: m.role }),
      el("span", { className: "read", textContent:
        m.read_up_to ? `read up to message ${m.read_up_to}` : "nothing read yet" }));
    return li;
  }));
}

// "seen by …" under the newest shown message each other member has read.
function renderSeen() {
  for (const span of $("#list").querySelectorAll(".seen")) span.remove();
  if (!group?.members) return;
  const items = [...$("#list").children]; // in seq order
  const seenBy = new Map(); // <li> -> usernames
  for (const m of group.members) {
    if (m.user.id === me() || !m.read_up_to) continue;
    let last = null;
    for (const li of items) {
      if (+li.dataset.seq > m.read_up_to) break;
      last = li;
    }
    if (last) seenBy.set(last, [...(seenBy.get(last) || []), m.user.username]);
  }
  for (const [li, who] of seenBy) li.append(el("span", { className: "seen", textContent: `seen by ${who.join(", ")}` }));
}

async function loadPage(url) {
  const forView = view;
  const { data, res } = await api("GET", url);
  if (view !== forView) return; // another conversation was opened meanwhile
  const first = loadedView !== forView;
  loadedView = forView;
  olderUrl = nextLink(res);
  $("#older").hidden = !olderUrl;
  data.forEach(render); // newest first; render() places each by seq
  renderSeen();
  if (first && early.length) showInPane(early.splice(0)); // the change feed's, meanwhile
}

$("#older").addEventListener("click", () => guard(async () => {
  const box = $("#messages");
  const height = box.scrollHeight;
  await loadPage(olderUrl);
  box.scrollTop += box.scrollHeight - height; // keep the reader where they were
}));

function scrollDown() {
  $("#messages").scrollTop = $("#messages").scrollHeight;
}

// Show message `m`: placed by seq when new, else replacing the one shown, unless what is shown
// is already a later version of it (a live event and an answer can cross on their way).
function render(m) {
  let li = shown.get(m.id);
  if (li && m.version != null && +li.dataset.version > m.version) return;
  remember(m);
  // Read receipts in 1:1 (`read_at`) change no version: a receipt shown is kept.
  const wasRead = li?.querySelector(".status")?.textContent === "read";
  if (!li) {
    li = el("li");
    li.dataset.seq = m.seq;
    li.dataset.id = m.id;
    shown.set(m.id, li);
    const next = [...$("#list").children].find((other) => +other.dataset.seq > m.seq);
    $("#list").insertBefore(li, next || null); // conversation order is seq order
  }
  li.dataset.version = m.version ?? 0;
  const mine = m.sender === me();
  const inGroup = m.receiver == null;
  const when = new Date(m.timestamp).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  li.className = `${mine ? "mine" : "theirs"}${m.deleted ? " deleted" : ""}`;
  li.replaceChildren();
  if (inGroup && !mine) {
    const sender = el("span", { className: "sender", textContent: senderName(m.sender) });
    sender.dataset.user = m.sender;
    li.append(sender);
  }
  if (m.reply_to) li.append(quoteOf(m.reply_to));
  li.append(el("span", { className: "content", textContent: m.deleted ? "message deleted" : m.content }));
  if (!m.deleted && m.attachments?.length) li.append(attachmentsOf(m.attachments));
  li.append(el("span", { className: "meta", textContent: when + (m.edited_at && !m.deleted ? " · edited" : "") }));
  if (mine && !inGroup) li.append(el("span", { className: "status", textContent: m.read_at || wasRead ? "read" : "" }));
  if (m.deleted) return; // a deleted message takes no reply, edit or reaction
  const reply = el("button", { type: "button", className: "reply", textContent: "reply", title: "Reply to this message" });
  reply.addEventListener("click", () => startReply(m.id));
  li.append(reply);
  if (mine) {
    const edit = el("button", { type: "button", textContent: "edit", title: "Edit this message" });
    edit.addEventListener("click", () => guard(async () => {
      const current = known.get(m.id)?.content ?? m.content;
      const content = prompt("Edit your message", current);
      if (content === null || content === current) return;
      onChanged((await api("PATCH", `/api/chat/messages/${encodeURIComponent(m.id)}`, { content })).data.message);
    }));
    const remove = el("button", { type: "button", textContent: "delete", title: "Delete this message" });
    remove.addEventListener("click", () => guard(async () => {
      if (!confirm("Delete this message?")) return;
      onChanged((await api("DELETE", `/api/chat/messages/${encodeURIComponent(m.id)}`)).data.message);
    }));
    li.append(edit, remove);
  }
  li.append(reactionsOf(m));
}

// ---- replies ----------------------------------------------------------------------------------
// A reply carries a preview of its original (`reply_to`: {id, sender, content, deleted}), made by
// the server when it answered. The original's later edits and deletion come as `message updated`
// / `message deleted` and through the change feed, about the original only: the page keeps the
// latest state of every message of the open conversation it has seen (`known`) and redraws the
// previews of its replies from it.
function remember(m) {
  const before = known.get(m.id);
  if (before && m.version != null && (before.version ?? 0) > m.version) return;
  const state = { sender: m.sender, content: m.content, deleted: !!m.deleted, version: m.version };
  known.set(m.id, state);
  for (const quote of $("#list").querySelectorAll(".quote")) {
    if (quote.dataset.id === m.id) fillQuote(quote, state);
  }
  if (replyTo?.id === m.id) {
    replyTo = { id: m.id, ...state };
    renderReplying();
  }
}

function quoteOf(preview) {
  const quote = el("div", { className: "quote", title: "The message this replies to" });
  quote.dataset.id = preview.id;
  fillQuote(quote, known.get(preview.id) ?? preview);
  quote.addEventListener("click", () => { // to the original, when it is on screen
    const li = shown.get(quote.dataset.id);
    if (li) flash(li);
  });
  return quote;
}

function fillQuote(quote, original) {
  quote.classList.toggle("deleted", !!original.deleted);
  const who = el("span", { className: "who", textContent: quoteName(original.sender) });
  who.dataset.user = original.sender ?? "";
  quote.replaceChildren(who, el("span", { className: "text", textContent: previewText(original) }));
}

const quoteName = (id) => (!id ? "" : id === me() ? "you" : names.get(id) ?? "…");
const previewText = (m) => (m.deleted ? "message deleted" : [...(m.content ?? "")].slice(0, PREVIEW_LENGTH).join(""));

function startReply(id) {
  const original = known.get(id);
  if (!original || original.deleted) return;
  replyTo = { id, ...original };
  renderReplying();
  $("#text").focus();
}

function renderReplying() {
  $("#replying").hidden = !replyTo;
  $("#replying .label").textContent = replyTo
    ? `Replying to ${quoteName(replyTo.sender)}: ${previewText(replyTo)}` : "";
}

$("#cancel-reply").addEventListener("click", () => {
  replyTo = null;
  renderReplying();
});

// A message briefly highlighted and scrolled to (a search result, a reply's original).
function flash(li) {
  li.scrollIntoView({ block: "center" });
  li.classList.add("hit");
  setTimeout(() => li.classList.remove("hit"), 2500);
}

// ---- reactions -------------------------------------------------------------------------------
// A few quick emoji on every message, then any other emoji someone reacted with, each with its
// count; yours are highlighted. A click adds yours (PUT) or takes it back (DELETE); everyone's
// page follows through `message updated` (and the change feed).
function reactionsOf(m) {
  const reactions = m.reactions || {};
  const emoji = [...QUICK_REACTIONS, ...Object.keys(reactions).filter((e) => !QUICK_REACTIONS.includes(e))];
  const bar = el("div", { className: "reactions" });
  for (const e of emoji) {
    const users = Array.isArray(reactions[e]) ? reactions[e] : [];
    const mineToo = users.includes(me());
    const button = el("button", {
      type: "button",
      className: `reaction${users.length ? " used" : ""}${mineToo ? " mine" : ""}`,
      title: users.length ? users.map((id) => quoteName(id) || "someone").join(", ") : `React with ${e}`,
    });
    button.dataset.emoji = e;
    button.setAttribute("aria-pressed", String(mineToo));
    button.append(el("span", { className: "emoji", textContent: e }),
      el("span", { className: "count", textContent: users.length ? String(users.length) : "" }));
    button.addEventListener("click", () => guard(async () => {
      const path = `/api/chat/messages/${encodeURIComponent(m.id)}/reactions/${encodeURIComponent(e)}`;
      onChanged((await api(mineToo ? "DELETE" : "PUT", path)).data.message);
    }));
    bar.append(button);
  }
  return bar;
}

// ---- attachments -------------------------------------------------------------------------------
// An attachment's URL is the server's signed path (/api/chat/attachments/<id>?expires=&sig=),
// which works without the Authorization header: images go straight into <img src>, other files
// are download links named by their filename (shown as text). Anything but such a path is
// never put into src or href.
function ownUrl(url) {
  if (typeof url !== "string" || !url.startsWith("/") || url.startsWith("//")) return null;
  const parsed = new URL(url, location.origin);
  if (parsed.origin !== location.origin || !parsed.pathname.startsWith("/api/chat/attachments/")) return null;
  return parsed.pathname + parsed.search;
}

function attachmentsOf(attachments) {
  const box = el("div", { className: "attachments" });
  for (const a of attachments) {
    const url = ownUrl(a.url);
    const name = String(a.filename ?? "file");
    if (url && INLINE_IMAGES.has(a.content_type)) {
      const img = el("img", { src: url, alt: name, title: name, loading: "lazy" });
      // A signed URL expires (ATTACHMENT_URL_SECONDS): reopening the conversation renews it.
      img.addEventListener("error", () => img.replaceWith(
        el("span", { className: "file", textContent: `${name} (not available: reopen the conversation)` })));
      const link = el("a", { href: url, target: "_blank", rel: "noopener noreferrer", className: "image" });
      link.append(img);
      box.append(link);
    } else if (url) {
      const link = el("a", { href: url, download: name, className: "file", textContent: name });
      box.append(el("span", { className: "download" }));
      box.lastChild.append(link, el("span", { className: "size", textContent: ` ${size(a.size)}` }));
    } else {
      box.append(el("span", { className: "file", textContent: name }));
    }
  }
  return box;
}

function size(bytes) {
  if (!Number.isFinite(bytes)) return "";
  if (bytes < 1024) return `${bytes} B`;
  if (bytes < 1024 * 1024) return `${(bytes / 1024).toFixed(1)} KiB`;
  return `${(bytes / 1024 / 1024).toFixed(1)} MiB`;
}

// The composer's file picker: each file is uploaded at once (POST /api/chat/attachments,
// multipart); the send then names the uploads (`attachments: [id...]`).
$("#attach").addEventListener("click", () => $("#file").click());

$("#file").addEventListener("change", () => {
  const files = [...$("#file").files];
  $("#file").value = "";
  $("#error").textContent = "";
  for (const file of files) {
    if (pending.length >= MAX_ATTACHMENTS) {
      $("#error").textContent = `At most ${MAX_ATTACHMENTS} files per message.`;
      break;
    }
    const item = { name: file.name, size: file.size, attachment: null, error: null };
    item.done = upload(file)
      .then((attachment) => { item.attachment = attachment; })
      .catch((err) => { item.error = err.message; })
      .finally(renderPending);
    pending.push(item);
  }
  renderPending();
});

async function upload(file) {
  const body = new FormData();
  body.append("file", file, file.name);
  return (await api("POST", "/api/chat/attachments", body)).data.attachment;
}

function renderPending() {
  $("#pending").hidden = !pending.length;
  $("#pending").replaceChildren(...pending.map((item) => {
    const chip = el("span", { className: `chip${item.error ? " failed" : ""}` });
    const status = item.error ? ` (${item.error})` : item.attachment ? ` ${size(item.attachment.size)}` : " (uploading…)";
    const remove = el("button", { type: "button", className: "remove", textContent: "✕", title: "Remove this file" });
    remove.addEventListener("click", () => {
      const at = pending.indexOf(item);
      if (at >= 0) pending.splice(at, 1);
      renderPending();
    });
    chip.append(el("span", { className: "name", textContent: item.name }),
      el("span", { className: "status", textContent: status }), remove);
    return chip;
  }));
}

// ---- search -------------------------------------------------------------------------------------
// GET /api/chat/search: messages of your conversations with every word of the query (the README's
// "Search" says how words match), newest first; "More results" follows the Link header. A click
// opens the result's conversation and scrolls to the message (loading older pages if need be).
let resultsUrl = null; // the next page of results
let searched = ""; // the query the results on screen answer

$("#search-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const q = $("#search").value.trim();
  guard(() => search(q), "#search-error");
});

$("#search").addEventListener("input", () => {
  if (!$("#search").value.trim()) clearResults();
});

$("#more-results").addEventListener("click", () => guard(() => search(searched, resultsUrl), "#search-error"));

function clearResults() {
  searched = "";
  resultsUrl = null;
  $("#results").replaceChildren();
  $("#more-results").hidden = true;
  $("#search-error").textContent = "";
}

async function search(q, url = null) {
  if (!q) return clearResults();
  const { data, res } = await api("GET", url ?? `/api/chat/search?limit=20&q=${encodeURIComponent(q)}`);
  if ($("#search").value.trim() !== q) return; // the query changed meanwhile
  if (!url) $("#results").replaceChildren();
  searched = q;
  resultsUrl = nextLink(res);
  $("#more-results").hidden = !resultsUrl;
  learnNames(data.map((m) => m.sender));
  $("#results").append(...data.map(resultOf));
  if (!$("#results").children.length) $("#results").append(el("li", { className: "none", textContent: "No messages found." }));
}

function resultOf(m) {
  const entry = entryOf(m.conversation);
  const where = entry?.kind === "group" ? `# ${entry.conversation.title}`
    : entry ? entry.user.username : names.get(m.sender === me() ? m.receiver : m.sender) ?? "a conversation";
  const when = new Date(m.timestamp).toLocaleString([], { dateStyle: "short", timeStyle: "short" });
  const li = el("li", { title: "Open this conversation" });
  li.dataset.id = m.id;
  li.dataset.conversation = m.conversation;
  li.append(el("span", { className: "where", textContent: where }),
    el("span", { className: "meta", textContent: `${quoteName(m.sender) || "someone"} · ${when}` }),
    el("span", { className: "text", textContent: m.content }));
  li.addEventListener("click", () => guard(() => openResult(m)));
  return li;
}

async function openResult(m) {
  const entry = entryOf(m.conversation);
  if (entry?.kind === "group") await openGroup(entry.key);
  else if (entry) await openConversation(entry.user);
  else if (m.receiver != null) { // a direct conversation beyond the list on the page
    const peerId = m.sender === me() ? m.receiver : m.sender;
    await openConversation((await api("GET", `/api/user/${encodeURIComponent(peerId)}`)).data);
  } else {
    throw new Error("You are no longer in that conversation.");
  }
  const forView = view;
  for (let pages = 0; !shown.has(m.id) && olderUrl && pages < 20 && view === forView; pages += 1) {
    await loadPage(olderUrl);
  }
  if (view === forView && shown.has(m.id)) flash(shown.get(m.id));
}

// ---- blocking ---------------------------------------------------------------------------------
// The open direct conversation's header has Block / Unblock (PUT / DELETE /api/user/blocks/<id>).
// While a block stands, neither of the two can message the other: the server answers a send
// 403, whose message the page shows.
async function loadBlocks() {
  const { data } = await api("GET", "/api/user/blocks");
  blocked.clear();
  for (const user of data.users) blocked.add(user.id);
  renderBlock();
}

function renderBlock() {
  const button = $("#block");
  button.hidden = !peer || peer.id === me();
  if (button.hidden) return;
  const on = blocked.has(peer.id);
  button.textContent = on ? "Unblock" : "Block";
  button.title = on ? `Let ${peer.username} message you again`
    : `Stop direct messages between you and ${peer.username}`;
  button.setAttribute("aria-pressed", String(on));
}

$("#block").addEventListener("click", () => guard(async () => {
  const user = peer;
  if (!user) return;
  const on = blocked.has(user.id);
  if (!on && !confirm(`Block ${user.username}? Neither of you can send the other direct messages `
    + "until you unblock; your history stays.")) return;
  const { data } = await api(on ? "DELETE" : "PUT", `/api/user/blocks/${encodeURIComponent(user.id)}`);
  if (data.blocked) blocked.add(user.id);
  else blocked.delete(user.id);
  renderBlock();
}));

// ---- sending and typing ---------------------------------------------------------------------
const target = () => (group ? { conversation: group.id } : peer ? { receiver: peer.id } : null);

$("#composer").addEventListener("submit", (event) => {
  event.preventDefault();
  guard(async () => {
    const input = $("#text");
    const to = target();
    if (!to) return;
    const files = pending.slice();
    if (!input.value.trim()) {
      if (files.length) throw new Error("Write a few words to go with the file.");
      return;
    }
    if (files.some((item) => !item.attachment && !item.error)) await Promise.all(files.map((item) => item.done));
    if (files.some((item) => item.error)) throw new Error("A file did not upload: remove it, then send again.");
    stopTyping();
    draftId ||= `${Date.now().toString(36)}-${Math.random().toString(36).slice(2)}`;
    const forView = view;
    const body = { content: input.value, client_id: draftId };
    if (replyTo) body.reply_to = replyTo.id;
    if (files.length) body.attachments = files.map((item) => item.attachment.id);
    const message = await send(to, body);
    draftId = null;
    input.value = "";
    if (forView === view) { // else the pane was reset meanwhile
      replyTo = null;
      renderReplying();
      pending.splice(0, pending.length, ...pending.filter((item) => !files.includes(item)));
      renderPending();
    }
    onMessage(message); // the sending socket gets the ack, not the event
  });
});

// One message out, over the socket (its ack) or else over REST. A retry with the same
// client_id is answered with the first message: never a duplicate.
async function send(to, body) {
  if (!socket) {
    const path = to.conversation
      ? `/api/chat/conversations/${encodeURIComponent(to.conversation)}/messages` : "/api/chat/send";
    return (await api("POST", path, to.conversation ? body : { ...to, ...body })).data.message;
  }
  const ack = await socket.timeout(5000).emitWithAck("chat message", { ...to, ...body });
  if (!ack.ok) throw new Error(ack.error.message);
  return ack.message;
}

$("#text").addEventListener("input", () => {
  const to = target();
  if (!to || !socket) return; // typing is relayed over sockets only
  if (Date.now() - typingSentAt > 2000) { // the server lets `typing: true` lapse after 5 s
    socket.emit("typing", { ...to, typing: true });
    typingSentAt = Date.now();
    typingTarget = to;
  }
  clearTimeout(typingStop);
  typingStop = setTimeout(stopTyping, 3000);
});

function stopTyping() {
  clearTimeout(typingStop);
  if (typingSentAt && typingTarget) socket?.emit("typing", { ...typingTarget, typing: false });
  typingSentAt = 0;
  typingTarget = null;
}

// ---- server events ------------------------------------------------------------------------
// Which list entry a message belongs to: a group's id, or the peer of a direct conversation.
const keyOf = (m) => (m.receiver == null ? m.conversation : m.sender === me() ? m.receiver : m.sender);

// Whether an event naming `conversation` (absent from older servers) is about the open direct one.
function aboutPeer(conversation) {
  if (!conversation) return true;
  const known = convs.get(peer.id)?.convId;
  return known ? known === conversation : !isGroup(conversation);
}

// Every event about a conversation carries its `version`: once applied, it goes to noteVersion
// (step 3 of the catch-up).
function onMessage(m) {
  showMessage(m);
  noteVersion(m.conversation, m.version);
}

function showMessage(m) {
  const key = keyOf(m);
  const conv = convs.get(key);
  if (!conv) return guard(loadConversations); // someone new, or a group we just joined
  conv.last = later(conv.last, m);
  if (conv.kind === "group") learnNames([m.sender]);
  const fromOther = conv.kind === "group" ? m.sender !== me() : m.sender === key;
  if (conv.kind === "direct" && m.conversation && !conv.convId) {
    // The pair's first message made their conversation: its list entry brings the peer's
    // profile as someone you now share a conversation with (presence included).
    conv.convId = m.conversation;
    guard(loadConversations);
  }
  if (key === openKey()) {
    render(m);
    renderSeen();
    scrollDown();
    if (fromOther) {
      typers.delete(m.sender);
      if (peer) $("#typing").textContent = "";
      else renderTypers();
      if (group) markGroupRead(m);
      else sendRead(key, m);
    }
  } else if (fromOther) {
    conv.unread += 1;
  }
  renderConversations();
}

function onChanged(m) {
  if (shown.has(m.id)) {
    render(m);
    renderSeen();
  } else if (keyOf(m) === openKey()) {
    remember(m); // an original not on screen: the previews of its replies follow
  }
  const conv = convs.get(keyOf(m));
  if (conv?.last?.id === m.id) {
    conv.last = later(conv.last, m);
    renderConversations();
  }
  noteVersion(m.conversation, m.version);
}

function onTyping({ sender, conversation, typing }) {
  if (isGroup(conversation)) {
    if (conversation !== group?.id || sender === me()) return;
    if (typing) typers.add(sender);
    else typers.delete(sender);
    return renderTypers();
  }
  if (peer && sender === peer.id && aboutPeer(conversation)) {
    $("#typing").textContent = typing ? `${peer.username} is typing…` : "";
  }
}

function renderTypers() {
  if (!group) return;
  const who = [...typers].map((id) => names.get(id)).filter(Boolean);
  $("#typing").textContent = !who.length ? ""
    : `${who.join(", ")} ${who.length === 1 ? "is" : "are"} typing…`;
}

function onRead({ reader, conversation, up_to: upTo, version }) {
  showLiveRead(reader, conversation, upTo);
  noteVersion(conversation, version);
}

function showLiveRead(reader, conversation, upTo) {
  if (isGroup(conversation)) {
    if (conversation !== group?.id) return;
    const member = group.members?.find((m) => m.user.id === reader);
    const li = shown.get(upTo);
    if (!member || !li) return guard(() => loadMembers(conversation)); // not on screen: ask
    member.read_up_to = Math.max(member.read_up_to, +li.dataset.seq);
    renderMembers();
    renderSeen();
    return;
  }
  if (!peer || reader !== peer.id || !aboutPeer(conversation)) return;
  // A message not on screen yet (its event still on its way): everything shown is read.
  markMineRead(shown.has(upTo) ? +shown.get(upTo).dataset.seq : Infinity);
}

// 1:1: the peer has read your messages up to `seq`.
function markMineRead(seq) {
  for (const li of $("#list").querySelectorAll("li.mine")) {
    const status = li.querySelector(".status");
    if (status && +li.dataset.seq <= seq) status.textContent = "read";
  }
}

function onPresence({ user, online }) {
  const conv = convs.get(user);
  if (conv?.user) conv.user.online = online;
  if (user === peer?.id) showPeerDot(peer.online = online);
  const member = group?.members?.find((m) => m.user.id === user);
  if (member) {
    member.user.online = online;
    renderMembers();
  }
  renderConversations();
}

// A group created, renamed, or its members or roles changed (the event carries the whole
// Conversation, with its members, but not the receiver's own unread count or marker).
function onConversation({ type, conversation: c, user, version }) {
  if (!c || c.type !== "group") return;
  if (type === "member_removed" && user === me()) return forget(c.id, `You are no longer in ${c.title}.`);
  showConversation(c);
  noteVersion(c.id, version);
}

function showConversation(c) {
  for (const m of c.members || []) names.set(m.user.id, m.user.username);
  const entry = convs.get(c.id);
  if (!entry) return guard(loadConversations); // new to us: the list brings its unread count
  entry.conversation = { ...entry.conversation, title: c.title, member_count: c.member_count };
  if (group?.id === c.id) {
    if (c.members) applyGroup(c);
    else guard(() => loadMembers(c.id));
  }
  renderConversations();
}

if (state.token) start();
