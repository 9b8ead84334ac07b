// Handshake: every way a client may present its token is accepted; bad tokens get connect_error.
import { check, connect, logout, newUser, refusal, run } from "./lib.mjs";

async function expectRefused(options, code, what) {
  const err = await refusal(options);
  check(err.message === code, `${what}: err.message should be "${code}"`,
    { message: err.message, data: err.data });
  check(err.data && err.data.code === code, `${what}: err.data.code should be "${code}"`,
    { message: err.message, data: err.data });
}

run("connect", async () => {
  const alice = await newUser("conn");

  for (const [what, options] of [
    ["auth: {token}", { auth: { token: alice.token } }],
    ["extraHeaders: {access_token}", { extraHeaders: { access_token: alice.token } }],
    ["extraHeaders: {Authorization: Bearer}", { extraHeaders: { Authorization: `Bearer ${alice.token}` } }],
    ["query: {token}", { query: { token: alice.token } }],
    // The browser default: HTTP long-polling first, then the upgrade to WebSocket.
    ["auth: {token} over polling + upgrade", { auth: { token: alice.token }, transports: ["polling", "websocket"] }],
  ]) {
    const socket = await connect(options);
    check(socket.connected, `${what}: should be connected`);
    // Identity comes from the token: joining your own room is fine, someone else's is not.
    const own = await socket.timeout(5000).emitWithAck("join", alice.id);
    check(own.ok === true, `${what}: join own id should ack ok`, own);
    socket.close();
  }

  await expectRefused({ auth: { token: "not-a-jwt" } }, "unauthorized", "garbage token in auth");
  await expectRefused({}, "unauthorized", "no token at all");
  await expectRefused({ extraHeaders: { access_token: `${alice.token}x` } }, "unauthorized",
    "tampered token in extraHeaders");
  await expectRefused({ auth: { token: "not-a-jwt" }, transports: ["polling"] }, "unauthorized",
    "garbage token over polling");

  const bob = await newUser("conn");
  await logout(bob);
  await expectRefused({ auth: { token: bob.token } }, "token_revoked", "logged-out token");
});
