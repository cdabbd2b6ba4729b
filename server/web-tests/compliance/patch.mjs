// Makes a runnable copy of a compliance suite (node patch.mjs SUITE.js
// URL OUT.js): the server's address in place of http://localhost:3000,
// and WebSocket messages read from a queue. The suites wait for each
// message with a listener added once the one before was handled, so a
// message that comes in the same read as the one before (two packets the
// server wrote back to back, as it may) is dispatched before anyone
// listens, and lost; here every message is kept, in order, until a test
// asks for it. Nothing else changes.
import fs from 'node:fs';

const [source, url, out] = process.argv.slice(2);
let suite = fs.readFileSync(source, 'utf8');

/** `suite` with the function `name` (a top-level declaration) replaced by `body`. */
function replaceFunction(name, body) {
  const start = suite.indexOf(`function ${name}(`);
  if (start < 0) return;
  const end = suite.indexOf('\n}\n', start);
  if (end < 0) throw new Error(`no end to ${name}`);
  suite = suite.slice(0, start) + body.trim() + suite.slice(end + 2);
}

if (!suite.includes('"http://localhost:3000"')) throw new Error('no URL to replace');
suite = suite.replace('"http://localhost:3000"', JSON.stringify(url));

replaceFunction('waitFor', `
function waitFor(socket, eventType) {
  if (eventType !== "message") {
    return new Promise((resolve) => {
      socket.addEventListener(eventType, resolve, { once: true });
    });
  }
  if (!socket.queued) {
    socket.queued = [];
    socket.waiting = [];
    socket.addEventListener("message", (event) => {
      const waiter = socket.waiting.shift();
      if (waiter) waiter(event);
      else socket.queued.push(event);
    });
  }
  if (socket.queued.length > 0) return Promise.resolve(socket.queued.shift());
  return new Promise((resolve) => socket.waiting.push(resolve));
}
`);

replaceFunction('waitForPackets', `
async function waitForPackets(socket, count) {
  const packets = [];
  while (packets.length < count) {
    const { data } = await waitFor(socket, "message");
    // ignore PING packets
    if (data !== "2") packets.push(data);
  }
  return packets;
}
`);

fs.writeFileSync(out, suite);
