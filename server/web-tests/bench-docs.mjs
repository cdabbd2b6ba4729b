// Shared documents measured (docs/performance.md, "Shared documents"):
// EDITORS Yjs clients (y-websocket's provider, as any Yjs client) type into
// one document of #lobby, RATE edits a second each, for SECONDS; one of
// them times how long each edit takes to show there. Prints one JSON line.
//
//   node bench-docs.mjs ADDR SERVER_PID     (scripts/bench docs runs it)
import fs from 'node:fs';
import WebSocket from 'ws';
import * as Y from 'yjs';
import { WebsocketProvider } from 'y-websocket';

const [addr, pid] = process.argv.slice(2);
// y-websocket registers an exit listener per provider.
process.setMaxListeners(0);
const editors = Number(process.env.EDITORS || 50);
const rate = Number(process.env.RATE || 2);
const seconds = Number(process.env.SECONDS || 10);
const TICKS = 100; // clock ticks a second, for /proc/PID/stat

const cpuMs = () => {
  const fields = fs.readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
  return ((Number(fields[11]) + Number(fields[12])) * 1000) / TICKS;
};
const rssBytes = () => {
  const line = fs.readFileSync(`/proc/${pid}/status`, 'utf8').split('\n').find((l) => l.startsWith('VmRSS:'));
  return Number(line.split(/\s+/)[1]) * 1024;
};
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** A chat session in #lobby: its token. */
function session(nick) {
  const socket = new WebSocket(`ws://${addr}/ws`, 'chat.v1');
  return new Promise((resolve, reject) => {
    socket.on('error', reject);
    socket.on('open', () => socket.send(JSON.stringify({ type: 'hello', nick })));
    let token;
    socket.on('message', (data) => {
      const frame = JSON.parse(data.toString());
      if (frame.type === 'welcome') {
        token = frame.session;
        socket.send(JSON.stringify({ type: 'join', room: 'lobby' }));
      } else if (frame.type === 'joined') {
        resolve({ token, socket });
      }
    });
  });
}

const rssBefore = rssBytes();
const clients = [];
for (let i = 0; i < editors; i += 1) {
  const { token, socket } = await session(`e${i}`);
  const doc = new Y.Doc();
  const provider = new WebsocketProvider(`ws://${addr}/yjs/lobby`, 'bench', doc, {
    WebSocketPolyfill: WebSocket,
    params: { session: token },
    disableBc: true,
  });
  clients.push({ doc, provider, socket, text: doc.getText('content') });
}
while (!clients.every((c) => c.provider.synced)) {
  await sleep(10);
}

// The observer: editor 0 sees each edit arrive.
const sent = new Map();
const latencies = [];
clients[0].text.observe((event) => {
  const now = performance.now();
  for (const op of event.delta) {
    if (typeof op.insert === 'string') {
      for (const match of op.insert.matchAll(/<(\d+\.\d+)>/g)) {
        const at = sent.get(match[1]);
        if (at !== undefined) {
          latencies.push(now - at);
          sent.delete(match[1]);
        }
      }
    }
  }
});

const cpuStart = cpuMs();
const start = performance.now();
let edits = 0;
const interval = 1000 / rate;
const typing = clients.slice(1).map((client, i) => (async () => {
  let n = 0;
  // Spread over the interval, as people type.
  await sleep(Math.random() * interval);
  while (performance.now() - start < seconds * 1000) {
    const id = `${i + 1}.${n}`;
    n += 1;
    sent.set(id, performance.now());
    const at = Math.floor(Math.random() * (client.text.length + 1));
    client.text.insert(at, `<${id}> `);
    edits += 1;
    await sleep(interval);
  }
})());
await Promise.all(typing);
// Let the last edits arrive.
const deadline = performance.now() + 5000;
while (sent.size > 0 && performance.now() < deadline) {
  await sleep(10);
}
const cpu = cpuMs() - cpuStart;
const rssAfter = rssBytes();
latencies.sort((a, b) => a - b);
const pct = (p) => latencies[Math.min(latencies.length - 1, Math.floor((latencies.length * p) / 100))];
const doc = clients[0].doc;
const report = {
  editors,
  edits,
  edits_per_sec: edits / seconds,
  seen: latencies.length,
  missing: sent.size,
  latency_ms: { p50: pct(50), p99: pct(99), max: latencies[latencies.length - 1] },
  server_cpu_ms: cpu,
  server_cpu_us_per_edit: (cpu * 1000) / edits,
  server_rss_bytes_growth: rssAfter - rssBefore,
  text_bytes: Buffer.byteLength(clients[0].text.toString()),
  state_bytes: Y.encodeStateAsUpdate(doc).length,
};
console.log(JSON.stringify(report));
for (const client of clients) {
  client.provider.destroy();
  client.doc.destroy();
  client.socket.close();
}
process.exit(0);
