// 200 messages with acks between two users: each arrives exactly once, in order, with the acked id.
import { check, collect, connect, newUser, run, waitFor } from "./lib.mjs";

const PER_SIDE = 100; // 200 messages in all, both directions at once

/** Send PER_SIDE messages one after another (each after the previous ack); returns the acks' Messages. */
async function sendAll(socket, from, to) {
  const acked = [];
  for (let i = 0; i < PER_SIDE; i++) {
    const payload = { receiver: to.id, content: `${from.username} #${i}`, client_id: `${from.id}-${i}` };
    const ack = await socket.timeout(5000).emitWithAck("chat message", payload);
    check(ack && ack.ok === true && ack.message, `ack #${i} from ${from.username} should be ok`, ack);
    const m = ack.message;
    check(m.id === m._id && /^[0-9a-f]{24}$/.test(m.id), `ack #${i}: id should equal _id`, m);
    check(m.sender === from.id && m.receiver === to.id && m.content === payload.content &&
      m.client_id === payload.client_id && m.deleted === false, `ack #${i}: Message fields`, m);
    acked.push(m);
  }
  return acked;
}

function ids(messages) {
  return messages.map((m) => m.id);
}

function checkSameList(received, expected, what) {
  const got = ids(received);
  const want = ids(expected);
  const dupes = got.filter((id, i) => got.indexOf(id) !== i);
  check(dupes.length === 0, `${what}: delivered more than once`, dupes.slice(0, 5));
  const missing = want.filter((id) => !got.includes(id));
  check(missing.length === 0, `${what}: ${missing.length} acked messages never arrived`, missing.slice(0, 5));
  const extra = got.filter((id) => !want.includes(id));
  check(extra.length === 0, `${what}: unexpected messages arrived`, extra.slice(0, 5));
  check(got.join() === want.join(), `${what}: arrived out of order`,
    { first_difference: got.findIndex((id, i) => id !== want[i]) });
  received.forEach((m, i) => {
    const a = expected[i];
    check(m.sender === a.sender && m.receiver === a.receiver && m.content === a.content &&
      m.seq === a.seq && m.timestamp === a.timestamp, `${what} #${i}: event should equal the ack`, { event: m, ack: a });
  });
}

run("messages", async () => {
  const alice = await newUser("msg");
  const bob = await newUser("msg");
  const a1 = await connect({ auth: { token: alice.token } });
  // Alice's second device, authenticated the original API's way.
  const a2 = await connect({ extraHeaders: { access_token: alice.token } });
  const b1 = await connect({ auth: { token: bob.token } });
  const atA1 = collect(a1, "chat message");
  const atA2 = collect(a2, "chat message");
  const atB1 = collect(b1, "chat message");

  const [fromAlice, fromBob] = await Promise.all([sendAll(a1, alice, bob), sendAll(b1, bob, alice)]);
  const total = 2 * PER_SIDE;
  await waitFor(() => atB1.length >= PER_SIDE && atA1.length >= PER_SIDE && atA2.length >= total,
    `all messages to arrive (a1 ${atA1.length}, a2 ${atA2.length}, b1 ${atB1.length})`, 15000);
  await new Promise((r) => setTimeout(r, 300)); // let any duplicate show up

  // The sending socket gets the ack, never its own message as an event.
  checkSameList(atB1, fromAlice, "Alice -> Bob at Bob");
  checkSameList(atA1, fromBob, "Bob -> Alice at Alice's sending socket");
  // Alice's other socket sees both directions; each direction in its own order.
  checkSameList(atA2.filter((m) => m.sender === alice.id), fromAlice, "Alice's echo at her second socket");
  checkSameList(atA2.filter((m) => m.sender === bob.id), fromBob, "Bob -> Alice at her second socket");

  // One conversation: seq is unique across both directions and rises within each.
  const seqs = [...fromAlice, ...fromBob].map((m) => m.seq);
  check(new Set(seqs).size === total, "seq should be unique in the conversation", seqs);
  for (const list of [fromAlice, fromBob]) {
    list.forEach((m, i) => check(i === 0 || m.seq > list[i - 1].seq, "seq should rise in send order", m));
  }

  // A retry with the same client_id is answered with the first message and delivers nothing new.
  const retry = await a1.timeout(5000).emitWithAck("chat message",
    { receiver: bob.id, content: "again", client_id: `${alice.id}-0` });
  check(retry.ok === true && retry.message.id === fromAlice[0].id, "a retry should ack the first message", retry);
  // An invalid message is refused in the ack, with the REST error codes.
  const empty = await a1.timeout(5000).emitWithAck("chat message", { receiver: bob.id, content: "   " });
  check(empty.ok === false && empty.error && empty.error.code === "validation_error",
    "blank content should ack validation_error", empty);
  const spoofed = await a1.timeout(5000).emitWithAck("chat message",
    { sender: bob.id, receiver: bob.id, content: "as bob" });
  check(spoofed.ok === false && spoofed.error.code === "forbidden", "a spoofed sender should ack forbidden", spoofed);
  await new Promise((r) => setTimeout(r, 300));
  check(atB1.length === PER_SIDE, "retries and refused messages must not be delivered", atB1.slice(PER_SIDE));

  for (const s of [a1, a2, b1]) s.close();
});
