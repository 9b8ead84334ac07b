// Load generator for bench/run.py: socket.io-client over the websocket transport.
//
// Usage: node bench/load.mjs JOB.json   (JOB: {"scenario": ..., "target": {...}, ...})
// Prints JSON lines: {"phase": ...} markers the runner samples the server at, then one
// {"result": {...}}. In the "idle" scenario it waits for a line on stdin after "connected".
import { randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import { createInterface } from "node:readline";
import { performance } from "node:perf_hooks";
import { io } from "socket.io-client";

const job = JSON.parse(readFileSync(process.argv[2], "utf8"));
const target = job.target; // {kind: "chatapp"|"floor", url}
const PASSWORD = "bench-password-0123";
const say = (obj) => process.stdout.write(JSON.stringify(obj) + "\n");
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const stdinLines = createInterface({ input: process.stdin })[Symbol.asyncIterator]();

async function pool(items, size, fn) {
  const out = new Array(items.length);
  let next = 0;
  async function worker() {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i], i);
    }
  }
  await Promise.all(Array.from({ length: Math.min(size, items.length) }, worker));
  return out;
}

async function post(path, body, token) {
  const headers = { "Content-Type": "application/json" };
  if (token) headers.Authorization = `Bearer ${token}`;
  const res = await fetch(target.url + path, { method: "POST", headers, body: JSON.stringify(body) });
  return { status: res.status, body: await res.json().catch(() => null) };
}

async function get(path, token) {
  const res = await fetch(target.url + path, { headers: { Authorization: `Bearer ${token}` } });
  return { status: res.status, body: await res.json().catch(() => null) };
}

// Users: registered and logged in over REST on chatapp; on the floor an id is all there is.
async function makeUsers(n, tag) {
  const run = `${tag}${Date.now().toString(36)}${Math.floor(Math.random() * 1e6).toString(36)}`;
  return pool(Array.from({ length: n }, (_, i) => i), 8, async (i) => {
    if (target.kind === "floor") {
      const id = randomBytes(12).toString("hex");
      return { id, auth: { user: id }, token: null };
    }
    const username = `b${run}_${i}`.slice(0, 32);
    const email = `${username}@bench.example`;
    const reg = await post("/api/user/register", { username, email, password: PASSWORD });
    if (reg.status !== 201) throw new Error(`register ${reg.status} ${JSON.stringify(reg.body)}`);
    const login = await post("/api/user/login", { email, password: PASSWORD });
    if (login.status !== 200) throw new Error(`login ${login.status} ${JSON.stringify(login.body)}`);
    return { id: login.body.userId, token: login.body.token, email, auth: { token: login.body.token } };
  });
}

// `job.deflate: false` stops offering permessage-deflate (socket.io-client offers it by default,
// as browsers do, and both servers then compress every frame).
const NO_DEFLATE = job.deflate === false ? { perMessageDeflate: false } : {};

function connect(user) {
  return new Promise((resolve, reject) => {
    const socket = io(target.url, {
      transports: ["websocket"], forceNew: true, reconnection: false, auth: user.auth, timeout: 60000,
      ...NO_DEFLATE,
    });
    socket.once("connect", () => resolve(socket));
    socket.once("connect_error", (err) => { socket.close(); reject(err); });
  });
}

const connectAll = (users, concurrency = 50) => pool(users, concurrency, connect);

function percentile(sorted, p) {
  if (!sorted.length) return null;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))];
}

function median(values) {
  const s = [...values].sort((a, b) => a - b);
  if (!s.length) return 0;
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
}

// Pairs: sender (two sockets: the sending one and an "other device") and receiver.
async function relaySetup(pairs) {
  const users = await makeUsers(pairs * 2, "p");
  const list = [];
  for (let i = 0; i < pairs; i++) list.push({ i, sender: users[2 * i], receiver: users[2 * i + 1] });
  for (const p of list) {
    [p.sendSock, p.otherSock, p.recvSock] = await connectAll([p.sender, p.sender, p.receiver]);
  }
  return list;
}

// Shared by saturation and fixed-rate runs: counts deliveries and send->receive latency.
function instrument(list, clock) {
  const state = { received: new Set(), other: new Set(), latencies: [], windows: [], t0: null, dupes: 0 };
  for (const p of list) {
    p.recvSock.on("chat message", (m) => {
      const now = performance.now();
      const [, , sent] = m.content.split(":");
      if (state.received.has(m.content)) state.dupes++;
      state.received.add(m.content);
      if (clock.measuring) {
        state.latencies.push(now - Number(sent));
        const w = Math.floor((now - clock.t0) / 1000);
        state.windows[w] = (state.windows[w] || 0) + 1;
      }
    });
    p.otherSock.on("chat message", (m) => state.other.add(m.content));
  }
  return state;
}

function sendOne(p, counter, acks) {
  const content = `${p.i}:${counter}:${performance.now()}`;
  const payload = { receiver: p.receiver.id, content };
  if (target.kind === "floor") payload.sender = p.sender.id;
  return new Promise((resolve) => {
    p.sendSock.timeout(60000).emit("chat message", payload, (err, ack) => {
      if (!err && ack && ack.ok) { acks.ok.push(content); p.acked = (p.acked || 0) + 1; }
      else acks.failed.push(err ? String(err) : JSON.stringify(ack));
      resolve();
    });
  });
}

async function drain(state, acks, ms = 5000) {
  const deadline = performance.now() + ms;
  while (performance.now() < deadline) {
    if (acks.ok.every((c) => state.received.has(c) && state.other.has(c))) break;
    await sleep(50);
  }
  const missing = acks.ok.filter((c) => !state.received.has(c)).length;
  const missingOther = acks.ok.filter((c) => !state.other.has(c)).length;
  return { missing, missingOther };
}

// Every acknowledged message must be stored: the newest seq of each pair counts them.
async function persistedCheck(list) {
  if (target.kind === "floor") return null;
  let bad = 0;
  for (const p of list) {
    const r = await get(`/api/chat/messages/${p.sender.id}/${p.receiver.id}?limit=1`, p.sender.token);
    const seq = r.status === 200 && r.body.length ? r.body[0].seq : 0;
    if (seq !== (p.acked || 0)) bad++;
  }
  return bad === 0;
}

function closeAll(list) {
  for (const p of list) for (const s of [p.sendSock, p.otherSock, p.recvSock]) s && s.close();
}

async function saturate() {
  const list = await relaySetup(job.pairs);
  const clock = { measuring: false, t0: 0 };
  const state = instrument(list, clock);
  const acks = { ok: [], failed: [] };
  const durationMs = job.duration * 1000;
  say({ phase: "measure_start" });
  clock.t0 = performance.now();
  clock.measuring = true;
  const end = clock.t0 + durationMs;
  await Promise.all(list.map(async (p) => {
    let counter = 0;
    const lane = async () => { while (performance.now() < end) await sendOne(p, counter++, acks); };
    await Promise.all(Array.from({ length: job.window }, lane));
  }));
  clock.measuring = false;
  say({ phase: "measure_end" });
  const full = Array.from({ length: job.duration }, (_, i) => state.windows[i] || 0);
  const { missing, missingOther } = await drain(state, acks);
  const persisted = await persistedCheck(list);
  closeAll(list);
  return {
    delivered_per_s: median(full), mean_per_s: state.received.size / job.duration, windows: full, sent_ok: acks.ok.length, failed: acks.failed.length,
    failed_sample: acks.failed.slice(0, 3), missing, missing_other: missingOther, persisted, dupes: state.dupes,
  };
}

// Open loop at a fixed offered rate: sends on schedule whatever the acks do.
async function fixedRate(list, rate, seconds, clock, state, acks) {
  const start = performance.now();
  const total = Math.round(rate * seconds);
  let sent = 0;
  const pending = [];
  clock.t0 = start;
  clock.measuring = true;
  while (sent < total) {
    const due = Math.min(total, Math.floor(((performance.now() - start) / 1000) * rate));
    while (sent < due) { const p = list[sent % list.length]; pending.push(sendOne(p, sent, acks)); sent++; }
    await sleep(2);
  }
  await Promise.race([Promise.all(pending), sleep(10000)]);
  const lat = [...state.latencies].sort((a, b) => a - b);
  return { offered: rate, sent, p50: percentile(lat, 50), p95: percentile(lat, 95), p99: percentile(lat, 99),
    max: lat.length ? lat[lat.length - 1] : null, samples: lat.length };
}

async function latency() {
  const list = await relaySetup(job.pairs);
  const out = {};
  for (const rate of job.rates) {
    const clock = { measuring: false, t0: 0 };
    const state = instrument(list, clock);
    const acks = { ok: [], failed: [] };
    // Warm-up (not measured), then the measured run.
    await fixedRate(list, rate, job.warmup, { measuring: false }, { latencies: [] }, { ok: [], failed: [] });
    say({ phase: "measure_start", rate });
    const r = await fixedRate(list, rate, job.duration, clock, state, acks);
    clock.measuring = false;
    say({ phase: "measure_end", rate });
    const { missing } = await drain(state, acks, 3000);
    for (const p of list) { p.recvSock.off("chat message"); p.otherSock.off("chat message"); }
    out[rate] = { ...r, failed: acks.failed.length, missing };
  }
  const persisted = await persistedCheck(list);
  closeAll(list);
  return { rates: out, persisted };
}

// Latency at one rate without, then with, a stream of logins (chatapp only).
async function loginStorm() {
  const list = await relaySetup(job.pairs);
  const [loginUser] = await makeUsers(1, "l");
  const run = async (withLogins) => {
    const clock = { measuring: false, t0: 0 };
    const state = instrument(list, clock);
    const acks = { ok: [], failed: [] };
    await fixedRate(list, job.rate, job.warmup, { measuring: false }, { latencies: [] }, { ok: [], failed: [] });
    const logins = [];
    const finished = [];
    let stop = false;
    const storm = withLogins ? (async () => {
      const start = performance.now();
      let n = 0;
      while (!stop) {
        const due = Math.floor(((performance.now() - start) / 1000) * job.logins_per_s);
        while (n < due) {
          n++;
          const t = performance.now();
          logins.push(post("/api/user/login", { email: loginUser.email, password: PASSWORD })
            .then((r) => ({ status: r.status, ms: performance.now() - t }), () => ({ status: 0, ms: null }))
            .then((x) => { finished.push(x); return x; }));
        }
        await sleep(5);
      }
    })() : null;
    say({ phase: "measure_start", logins: withLogins });
    const r = await fixedRate(list, job.rate, job.duration, clock, state, acks);
    stop = true;
    say({ phase: "measure_end", logins: withLogins });
    await storm;
    for (const p of list) { p.recvSock.off("chat message"); p.otherSock.off("chat message"); }
    if (!withLogins) return r;
    const done = await Promise.race([Promise.all(logins), sleep(job.login_wait * 1000).then(() => null)]);
    const ok = finished.filter((x) => x.status === 200).map((x) => x.ms).sort((a, b) => a - b);
    return { ...r, logins_offered: logins.length, logins_ok_in_time: ok.length,
      login_p50: percentile(ok, 50), login_p99: percentile(ok, 99), logins_all_settled: done !== null };
  };
  const base = await run(false);
  const storm = await run(true);
  closeAll(list);
  return { base, storm };
}

// Many idle authenticated sockets: the runner reads the server's RSS, then each gets one message.
async function idle() {
  const users = await makeUsers(job.users, "i");
  const [sender] = await makeUsers(1, "s");
  const senderSock = await connect(sender);
  say({ phase: "baseline" });
  await stdinLines.next();
  const slots = [];
  for (let k = 0; k < job.sockets_per_user; k++) for (const u of users) slots.push(u);
  const t = performance.now();
  const sockets = await connectAll(slots, job.connect_concurrency);
  const connectSeconds = (performance.now() - t) / 1000;
  say({ phase: "connected", sockets: sockets.length });
  await stdinLines.next();
  let got = 0;
  const counts = new Map();
  sockets.forEach((s, i) => s.on("chat message", () => { got++; counts.set(i, (counts.get(i) || 0) + 1); }));
  const acks = { ok: [], failed: [] };
  const list = users.map((u, i) => ({ i, sender, receiver: u, sendSock: senderSock }));
  await pool(list, 16, (p) => sendOne(p, 0, acks));
  const deadline = performance.now() + job.receive_wait * 1000;
  while (counts.size < sockets.length && performance.now() < deadline) await sleep(50);
  const exactlyOnce = [...counts.values()].every((c) => c === 1);
  for (const s of sockets) s.close();
  senderSock.close();
  return { sockets: sockets.length, connect_seconds: connectSeconds, received: counts.size,
    all_received: counts.size === sockets.length && exactlyOnce, events: got, failed: acks.failed.length };
}

// One group, every member connected with one socket: each message goes to the other members.
// Content is `PHASE:FROM:N:SENT_AT` (N unique in the run); every socket records what it got,
// so each acknowledged message is checked to reach every other member exactly once, and
// never the sending socket. Latency is per delivery; windows count deliveries per second.
async function groupSetup() {
  const users = await makeUsers(job.members, "g");
  const [owner] = users;
  // Every id, the creator's too: chatapp ignores the creator in the list, the floor needs it.
  const r = await post("/api/chat/groups", { title: "bench", members: users.map((u) => u.id) }, owner.token);
  if (r.status !== 201) throw new Error(`create group ${r.status} ${JSON.stringify(r.body)}`);
  const conv = r.body.conversation.id;
  const sockets = await connectAll(users, 25);
  return { users, sockets, conv };
}

function groupInstrument(g) {
  const st = { counts: new Map(), seen: g.sockets.map(() => new Set()), self: 0, dupes: 0, foreign: 0,
    phases: {} };
  g.sockets.forEach((s, i) => s.on("chat message", (m) => {
    const now = performance.now();
    const [tag, from, n, sent] = String(m.content).split(":");
    const key = Number(n);
    if (m.conversation !== g.conv) st.foreign++;
    if (Number(from) === i) st.self++;
    if (st.seen[i].has(key)) st.dupes++;
    st.seen[i].add(key);
    st.counts.set(key, (st.counts.get(key) || 0) + 1);
    const phase = st.phases[tag];
    if (phase) {
      phase.latencies.push(now - Number(sent));
      const w = Math.floor((now - phase.t0) / 1000);
      if (w >= 0 && w < phase.seconds) phase.windows[w] = (phase.windows[w] || 0) + 1;
    }
  }));
  return st;
}

function groupSend(g, from, tag, acks) {
  const n = acks.next++;
  const content = `${tag}:${from}:${n}:${performance.now()}`;
  return new Promise((resolve) => {
    g.sockets[from].timeout(60000).emit("chat message", { conversation: g.conv, content }, (err, ack) => {
      if (!err && ack && ack.ok) {
        acks.ok.push(n);
        if (ack.message) acks.stored.set(ack.message.id, content); // chatapp: the stored Message
      } else acks.failed.push(err ? String(err) : JSON.stringify(ack));
      resolve();
    });
  });
}

// chatapp: the conversation's whole history, paged newest first, holds every acknowledged
// message (same id, same content) and nothing else.
async function groupStored(g, acks) {
  const seen = new Map();
  let before = null;
  for (;;) {
    const q = before ? `&before=${before}` : "";
    const r = await get(`/api/chat/conversations/${g.conv}/messages?limit=200${q}`, g.users[0].token);
    if (r.status !== 200) return { ok: false, error: `history ${r.status}` };
    for (const m of r.body) seen.set(m.id, m);
    if (r.body.length < 200) break;
    before = r.body[r.body.length - 1].id;
  }
  const newest = Math.max(0, ...[...seen.values()].map((m) => m.seq));
  const matched = [...acks.stored].filter(([id, content]) => seen.get(id)?.content === content).length;
  return { ok: matched === acks.ok.length && seen.size === acks.ok.length && newest === acks.ok.length,
    stored: seen.size, matched, newest_seq: newest };
}

// Waits until every acknowledged message reached every other member (or `ms` passed).
async function groupDrain(g, st, acks, ms = 10000) {
  const want = g.sockets.length - 1;
  const deadline = performance.now() + ms;
  const short = () => acks.ok.filter((n) => (st.counts.get(n) || 0) < want).length;
  while (short() && performance.now() < deadline) await sleep(50);
  return short();
}

function phaseStats(phase) {
  const lat = phase.latencies.sort((a, b) => a - b);
  const windows = Array.from({ length: phase.seconds }, (_, i) => phase.windows[i] || 0);
  return { p50: percentile(lat, 50), p95: percentile(lat, 95), p99: percentile(lat, 99),
    max: lat.length ? lat[lat.length - 1] : null, samples: lat.length, windows,
    deliveries_per_s: median(windows), mean_deliveries_per_s: windows.reduce((a, b) => a + b, 0) / phase.seconds };
}

async function group() {
  const g = await groupSetup();
  const st = groupInstrument(g);
  const acks = { ok: [], failed: [], next: 0, stored: new Map() };
  const members = g.sockets.length;
  const out = { members, conversation: g.conv, rates: {} };
  // Open loop at each fixed rate, every member sending in turn; warm-up not measured.
  const openLoop = async (tag, rate, seconds) => {
    const start = performance.now();
    const total = Math.round(rate * seconds);
    const pending = [];
    let sent = 0;
    if (st.phases[tag]) st.phases[tag].t0 = start;
    while (sent < total) {
      const due = Math.min(total, Math.floor(((performance.now() - start) / 1000) * rate));
      while (sent < due) { pending.push(groupSend(g, sent % members, tag, acks)); sent++; }
      await sleep(2);
    }
    await Promise.race([Promise.all(pending), sleep(10000)]);
    return sent;
  };
  for (const rate of job.rates) {
    await openLoop("w", rate, job.warmup);
    const tag = `r${rate}`;
    st.phases[tag] = { latencies: [], windows: [], t0: performance.now(), seconds: job.duration };
    say({ phase: "measure_start", key: `rate${rate}` });
    const sent = await openLoop(tag, rate, job.duration);
    say({ phase: "measure_end", key: `rate${rate}` });
    const short = await groupDrain(g, st, acks);
    out.rates[rate] = { offered: rate, sent, expected_deliveries: sent * (members - 1), short,
      ...phaseStats(st.phases[tag]) };
    delete st.phases[tag];
  }
  // Saturation: `senders` members spread over the group, each keeping `window` unacknowledged.
  const senders = Array.from({ length: job.senders }, (_, i) => Math.floor((i * members) / job.senders));
  const phase = { latencies: [], windows: [], t0: 0, seconds: job.sat_duration };
  st.phases.s = phase;
  say({ phase: "measure_start", key: "saturation" });
  phase.t0 = performance.now();
  const end = phase.t0 + job.sat_duration * 1000;
  const before = acks.ok.length;
  await Promise.all(senders.map((from) => Promise.all(Array.from({ length: job.window }, async () => {
    while (performance.now() < end) await groupSend(g, from, "s", acks);
  }))));
  say({ phase: "measure_end", key: "saturation" });
  const short = await groupDrain(g, st, acks);
  out.saturation = { senders: job.senders, window: job.window, messages_acked: acks.ok.length - before,
    short, ...phaseStats(phase) };
  out.saturation.messages_per_s = out.saturation.messages_acked / job.sat_duration;
  // Every acknowledged message, warm-ups included, reached each other member once (no socket
  // short of it, none twice) and never the sending socket; on chatapp each is stored.
  const missing = acks.ok.filter((n) => (st.counts.get(n) || 0) < members - 1).length;
  let persisted = null;
  if (target.kind !== "floor") {
    out.stored = await groupStored(g, acks);
    persisted = out.stored.ok;
  }
  for (const s of g.sockets) s.close();
  return { ...out, sent_ok: acks.ok.length, failed: acks.failed.length, failed_sample: acks.failed.slice(0, 3),
    missing, dupes: st.dupes, to_sender: st.self, foreign: st.foreign, persisted,
    all_delivered: acks.failed.length === 0 && missing === 0 && st.dupes === 0 && st.self === 0 && st.foreign === 0 };
}

const scenarios = { saturate, latency, login_storm: loginStorm, idle, group };
try {
  const result = await scenarios[job.scenario]();
  say({ result });
  process.exit(0);
} catch (err) {
  say({ error: String(err && err.stack ? err.stack : err) });
  process.exit(1);
}
