// The original API's client: header `access_token`, then everything through the `message`
// event as a JSON string `{"event": "join"|"chat message", "data": ...}`, no acks asked for.
import { check, collect, connect, newUser, run, sleep, waitFor } from "./lib.mjs";

const envelope = (event, data) => JSON.stringify({ event, data });

run("envelope", async () => {
  const alice = await newUser("env");
  const bob = await newUser("env");
  const a = await connect({ extraHeaders: { access_token: alice.token } });
  const b = await connect({ extraHeaders: { access_token: bob.token } });
  const atA = collect(a, "chat message");
  const atB = collect(b, "chat message");

  // Exactly what the original client did: fire and forget.
  a.emit("message", envelope("join", alice.id));
  b.emit("message", envelope("join", bob.id));
  a.emit("message", envelope("chat message", { sender: alice.id, receiver: bob.id, content: "hello bob" }));
  await waitFor(() => atB.length === 1, "Bob to receive the envelope message");
  const got = atB[0];
  check(got.sender === alice.id && got.receiver === bob.id && got.content === "hello bob" &&
    got._id === got.id && typeof got.timestamp === "string", "Bob gets the original chat message keys", got);

  b.emit("message", envelope("chat message", { sender: bob.id, receiver: alice.id, content: "hi alice" }));
  await waitFor(() => atA.length === 1, "Alice to receive Bob's envelope message");
  check(atA[0].sender === bob.id && atA[0].content === "hi alice", "Alice gets Bob's reply", atA[0]);

  // The same envelope, asking for an ack: the answers of `join` and `chat message`.
  const join = await a.timeout(5000).emitWithAck("message", envelope("join", alice.id));
  check(join.ok === true, "join through the envelope should ack ok", join);
  const sent = await a.timeout(5000).emitWithAck("message",
    envelope("chat message", { receiver: bob.id, content: "with ack" }));
  check(sent.ok === true && sent.message.content === "with ack", "chat message through the envelope acks", sent);
  await waitFor(() => atB.length === 2, "Bob to receive the acked envelope message");
  check(atB[1].id === sent.message.id, "Bob gets the acked id", atB[1]);

  // What the original API let through is closed: other rooms, other senders, junk envelopes.
  const foreign = await a.timeout(5000).emitWithAck("message", envelope("join", bob.id));
  check(foreign.ok === false && foreign.error.code === "forbidden", "joining Bob's room is forbidden", foreign);
  const spoofed = await b.timeout(5000).emitWithAck("message",
    envelope("chat message", { sender: alice.id, receiver: bob.id, content: "I am alice" }));
  check(spoofed.ok === false && spoofed.error.code === "forbidden", "a spoofed sender is forbidden", spoofed);
  const junk = await a.timeout(5000).emitWithAck("message", "{not json");
  check(junk.ok === false && junk.error.code === "invalid_json", "a broken envelope is invalid_json", junk);
  const unknown = await a.timeout(5000).emitWithAck("message", envelope("typing", {}));
  check(unknown.ok === false && unknown.error.code === "validation_error", "an unknown envelope event is refused", unknown);

  await sleep(300);
  check(atA.length === 1 && atB.length === 2, "nothing refused may be delivered",
    { atA: atA.length, atB: atB.length });
  a.close();
  b.close();
});
