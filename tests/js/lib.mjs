// Shared helpers for the client scripts: REST log-in with fetch, the real socket.io-client,
// and failures that name what went wrong. Usage of every script: node <script>.mjs <server url>
import { randomBytes } from "node:crypto";
import { io } from "socket.io-client";

export const baseUrl = (process.argv[2] || process.env.CHATAPP_URL || "").replace(/\/$/, "");
const PASSWORD = "correct horse battery";

/** Run `main`; print "ok: <name>" on success, or the failure and exit 1. A watchdog bounds it. */
export function run(name, main, { timeoutMs = 60000 } = {}) {
  if (!baseUrl) fail(`usage: node ${name}.mjs <server url>`);
  const watchdog = setTimeout(() => fail(`${name}: timed out after ${timeoutMs} ms`), timeoutMs);
  main()
    .then(() => {
      clearTimeout(watchdog);
      console.log(`ok: ${name}`);
      process.exit(0);
    })
    .catch((err) => fail(`${name}: ${err && err.stack ? err.stack : err}`));
}

export function fail(message) {
  console.error(`FAIL ${message}`);
  process.exit(1);
}

export function check(condition, message, detail) {
  if (!condition) {
    throw new Error(detail === undefined ? message : `${message}: ${JSON.stringify(detail)}`);
  }
}

async function postJson(path, body, headers = {}) {
  const res = await fetch(baseUrl + path, {
    method: "POST",
    headers: { "Content-Type": "application/json", ...headers },
    body: JSON.stringify(body),
  });
  const text = await res.text();
  let json;
  try {
    json = JSON.parse(text);
  } catch {
    json = text;
  }
  return { status: res.status, body: json };
}

/** Register a fresh user over REST and log in: {id, token, username}. */
export async function newUser(prefix = "js") {
  const username = `${prefix}_${randomBytes(5).toString("hex")}`;
  const email = `${username}@example.com`;
  const reg = await postJson("/api/user/register", { username, email, password: PASSWORD });
  check(reg.status === 201, "register should answer 201", reg);
  const login = await postJson("/api/user/login", { email, password: PASSWORD });
  check(login.status === 200, "login should answer 200", login);
  const { token, access_token: accessToken, userId } = login.body;
  check(token && token === accessToken && /^[0-9a-f]{24}$/.test(userId),
    "login body should carry token == access_token and a 24-hex userId", login.body);
  return { id: userId, token, username };
}

export async function logout(user) {
  const res = await postJson("/api/user/logout", {}, { Authorization: `Bearer ${user.token}` });
  check(res.status === 200, "logout should answer 200", res);
}

/** A connected socket; fails naming the refusal. Options go to io() as they are. */
export async function connect(options) {
  try {
    return await rawConnect(options);
  } catch (err) {
    const how = Object.entries(options).map(([k, v]) => `${k}: ${Array.isArray(v) ? v : Object.keys(v)}`).join(", ");
    throw new Error(`connection with {${how}} refused: ${err.message} ${JSON.stringify(err.data)}`);
  }
}

/** A connected socket, or the client's connect_error as the rejection. */
function rawConnect(options) {
  return new Promise((resolve, reject) => {
    const socket = io(baseUrl, { transports: ["websocket"], reconnection: false, ...options });
    socket.once("connect", () => resolve(socket));
    socket.once("connect_error", (err) => {
      socket.close();
      reject(err);
    });
  });
}

/** The connect_error a refused connection produces (fails if the connection is accepted). */
export async function refusal(options) {
  try {
    const socket = await rawConnect(options);
    socket.close();
  } catch (err) {
    return err;
  }
  throw new Error(`connection with ${JSON.stringify(options)} was accepted, expected a refusal`);
}

/** Collect every payload of `event` on `socket` into an array. */
export function collect(socket, event) {
  const seen = [];
  socket.on(event, (payload) => seen.push(payload));
  return seen;
}

/** Resolve when `predicate()` is true; reject with `what` after `timeoutMs`. */
export async function waitFor(predicate, what, timeoutMs = 5000) {
  const deadline = Date.now() + timeoutMs;
  while (!predicate()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
