// chatapp's demo page: REST for accounts and history, Socket.IO for everything live.
// Plain browser JavaScript, no build step; user text only ever goes through textContent.
"use strict";

const $ = (selector) => document.querySelector(selector);
const el = (tag, props = {}) => Object.assign(document.createElement(tag), props);
const state = JSON.parse(sessionStorage.getItem("chatapp") || "{}"); // {token, refresh, me}
const convs = new Map(); // peer id -> {user, last, unread}
const shown = new Map(); // message id -> <li> of the open conversation
let socket = null;
let peer = null; // the open conversation's User
let olderUrl = null; // its next (older) history page, from the Link header
let draftId = null; // client_id of the message being sent: a retry never duplicates it
let typingSentAt = 0;
let typingStop = null;

// ---- REST -------------------------------------------------------------------------------
async function api(method, path, body, retry = true) {
  const headers = body ? { "Content-Type": "application/json" } : {};
  if (state.token) headers.Authorization = `Bearer ${state.token}`;
  const res = await fetch(path, { method, headers, body: body && JSON.stringify(body) });
  const data = await res.json().catch(() => null);
  if (res.status === 401 && retry && data?.error?.code === "token_expired" && (await refresh())) {
    return api(method, path, body, false);
  }
  if (!res.ok) {
    const { message = `HTTP ${res.status}`, details } = data?.error || {};
    const why = details ? Object.entries(details).map(([k, v]) => `${k}: ${[].concat(v).join(" ")}`) : [];
    throw new Error([message, ...why].join(" — "));
  }
  return { data, res };
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

async function guard(action) {
  $("#error").textContent = "";
  try {
    await action();
  } catch (err) {
    $("#error").textContent = err.message;
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
  socket = peer = null;
  convs.clear();
  shown.clear();
  for (const key of Object.keys(state)) delete state[key];
  sessionStorage.removeItem("chatapp");
  $("#list").replaceChildren();
  $("#chat").hidden = true;
  $("#auth").hidden = false;
}

function start() {
  $("#auth").hidden = true;
  $("#chat").hidden = false;
  $("#auth-error").textContent = "";
  $("#me").textContent = state.me.username;
  // `auth` as a function: every (re)connect presents the current token.
  socket = io({ auth: (cb) => cb({ token: state.token }) });
  socket.on("connect", () => guard(async () => {
    await loadConversations(); // also the catch-up after a reconnect
    if (peer) await openConversation(peer);
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
    // The server closes the socket when the token expires (or on logout-all).
    if (reason === "io server disconnect") (await refresh()) ? socket.connect() : signOut();
  });
  socket.on("chat message", onMessage);
  socket.on("message updated", onChanged);
  socket.on("message deleted", onChanged);
  socket.on("typing", onTyping);
  socket.on("read", onRead);
  socket.on("presence", onPresence);
}

// ---- conversations --------------------------------------------------------------------------
async function loadConversations() {
  const { data } = await api("GET", "/api/chat/conversations");
  convs.clear();
  for (const c of data) convs.set(c.user.id, { user: c.user, last: c.last_message, unread: c.unread_count });
  if (peer) convs.set(peer.id, { user: peer, last: null, unread: 0, ...convs.get(peer.id) });
  renderConversations();
}

const dot = (online) => el("span", { className: online ? "dot online" : "dot", title: online ? "online" : "offline" });

function renderConversations() {
  // Most recent first; a chat just started (nothing sent yet) on top.
  const entries = [...convs.values()].sort((a, b) =>
    (b.last?.timestamp ?? "~").localeCompare(a.last?.timestamp ?? "~"));
  $("#conversations").replaceChildren(...entries.map((c) => {
    const li = el("li", { className: c.user.id === peer?.id ? "active" : "" });
    li.dataset.peer = c.user.id;
    li.append(dot(c.user.online), el("span", { className: "name", textContent: c.user.username }));
    if (c.unread) li.append(el("span", { className: "badge", textContent: c.unread }));
    const preview = !c.last ? "" : c.last.deleted ? "message deleted" : c.last.content;
    li.append(el("span", { className: "preview", textContent: preview }));
    li.addEventListener("click", () => guard(() => openConversation(c.user)));
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
  $("#found").replaceChildren(...data.users.filter((u) => u.id !== state.me.id).map((user) => {
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

// ---- the open conversation --------------------------------------------------------------------
async function openConversation(user) {
  if (peer?.id !== user.id) stopTyping();
  peer = user;
  convs.set(user.id, { user, last: null, ...convs.get(user.id), unread: 0 });
  renderConversations();
  $("#peer-name").textContent = user.username;
  $("#peer-dot").hidden = false;
  $("#peer-dot").className = user.online ? "dot online" : "dot";
  $("#typing").textContent = "";
  $("#list").replaceChildren();
  shown.clear();
  $("#text").disabled = $("#composer button").disabled = false;
  $("#text").focus();
  await loadPage(`/api/chat/messages/${state.me.id}/${user.id}?limit=30`);
  scrollDown();
  socket.emit("read", { peer: user.id }); // read receipts: everything shown is read
}

async function loadPage(url) {
  const forPeer = peer;
  const { data, res } = await api("GET", url);
  if (peer !== forPeer) return; // another conversation was opened meanwhile
  const next = /<([^>]+)>;\s*rel="next"/.exec(res.headers.get("Link") || "");
  const nextUrl = next && new URL(next[1], location.href);
  olderUrl = nextUrl && nextUrl.pathname + nextUrl.search;
  $("#older").hidden = !olderUrl;
  data.forEach(render); // newest first; render() places each by seq
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

function render(m) {
  let li = shown.get(m.id);
  if (!li) {
    li = el("li");
    li.dataset.seq = m.seq;
    shown.set(m.id, li);
    const later = [...$("#list").children].find((other) => +other.dataset.seq > m.seq);
    $("#list").insertBefore(li, later || null); // conversation order is seq order
  }
  const mine = m.sender === state.me.id;
  const when = new Date(m.timestamp).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  li.className = `${mine ? "mine" : "theirs"}${m.deleted ? " deleted" : ""}`;
  li.replaceChildren(
    el("span", { className: "content", textContent: m.deleted ? "message deleted" : m.content }),
    el("span", { className: "meta", textContent: when + (m.edited_at && !m.deleted ? " · edited" : "") }),
  );
  if (!mine) return;
  li.append(el("span", { className: "status", textContent: m.read_at ? "read" : "" }));
  if (m.deleted) return;
  const edit = el("button", { textContent: "edit", title: "Edit this message" });
  edit.addEventListener("click", () => guard(async () => {
    const content = prompt("Edit your message", m.content);
    if (content === null || content === m.content) return;
    render((await api("PATCH", `/api/chat/messages/${m.id}`, { content })).data.message);
  }));
  const remove = el("button", { textContent: "delete", title: "Delete this message" });
  remove.addEventListener("click", () => guard(async () => {
    if (!confirm("Delete this message?")) return;
    render((await api("DELETE", `/api/chat/messages/${m.id}`)).data.message);
  }));
  li.append(edit, remove);
}

// ---- sending and typing ---------------------------------------------------------------------
$("#composer").addEventListener("submit", (event) => {
  event.preventDefault();
  guard(async () => {
    const input = $("#text");
    if (!peer || !input.value.trim()) return;
    stopTyping();
    draftId ||= `${Date.now().toString(36)}-${Math.random().toString(36).slice(2)}`;
    const ack = await socket.timeout(5000).emitWithAck("chat message",
      { receiver: peer.id, content: input.value, client_id: draftId });
    if (!ack.ok) throw new Error(ack.error.message);
    draftId = null;
    input.value = "";
    onMessage(ack.message); // the sending socket gets the ack, not the event
  });
});

$("#text").addEventListener("input", () => {
  if (!peer) return;
  if (Date.now() - typingSentAt > 2000) { // the server lets `typing: true` lapse after 5 s
    socket.emit("typing", { receiver: peer.id, typing: true });
    typingSentAt = Date.now();
  }
  clearTimeout(typingStop);
  typingStop = setTimeout(stopTyping, 3000);
});

function stopTyping() {
  clearTimeout(typingStop);
  if (typingSentAt && peer) socket.emit("typing", { receiver: peer.id, typing: false });
  typingSentAt = 0;
}

// ---- server events ------------------------------------------------------------------------
function onMessage(m) {
  const other = m.sender === state.me.id ? m.receiver : m.sender;
  const conv = convs.get(other);
  if (!conv) return guard(loadConversations); // someone new: fetch their profile and counts
  conv.last = m;
  if (other === peer?.id) {
    render(m);
    scrollDown();
    if (m.sender === other) {
      $("#typing").textContent = "";
      socket.emit("read", { peer: other, up_to: m.id });
    }
  } else if (m.sender === other) {
    conv.unread += 1;
  }
  renderConversations();
}

function onChanged(m) {
  if (shown.has(m.id)) render(m);
  const conv = convs.get(m.sender === state.me.id ? m.receiver : m.sender);
  if (conv?.last?.id === m.id) {
    conv.last = m;
    renderConversations();
  }
}

function onTyping({ sender, typing }) {
  if (sender === peer?.id) $("#typing").textContent = typing ? `${peer.username} is typing…` : "";
}

function onRead({ reader, up_to: upTo }) {
  if (reader !== peer?.id) return;
  const seq = shown.has(upTo) ? +shown.get(upTo).dataset.seq : Infinity;
  for (const li of $("#list").querySelectorAll("li.mine")) {
    if (+li.dataset.seq <= seq) li.querySelector(".status").textContent = "read";
  }
}

function onPresence({ user, online }) {
  const conv = convs.get(user);
  if (conv) conv.user.online = online;
  if (user === peer?.id) {
    peer.online = online;
    $("#peer-dot").className = online ? "dot online" : "dot";
  }
  renderConversations();
}

if (state.token) start();
