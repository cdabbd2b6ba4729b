// Shared documents measured (docs/performance.md, "Shared documents"):
// EDITORS Yjs clients (y-websocket's provider, as any Yjs client) type into
// one document of #lobby, RATE edits a second each, for SECONDS; one of
// them times how long each edit takes to show there. With several servers
// (the nodes of a cluster) the editors are spread over them, the one
// timing on the first. With DOCS=N, N documents are opened instead, one
// editor each, each filled with TEXT_BYTES of text: what each open
// document costs the server. Prints one JSON line.
//
//   node bench-docs.mjs ADDR SERVER_PID [ADDR PID ...]   (scripts/bench docs,
//                                                        scripts/bench-cluster)
import fs from 'node:fs';
import WebSocket from 'ws';
import * as Y from 'yjs';
import { WebsocketProvider } from 'y-websocket';

const args = process.argv.slice(2);
const servers = [];
for (let i = 0; i + 1 < args.length; i += 2) {
  servers.push({ addr: args[i], pid: args[i + 1] });
}
const [{ addr }] = servers;
// y-websocket registers an exit listener per provider.
process.setMaxListeners(0);
const editors = Number(process.env.EDITORS || 50);
const rate = Number(process.env.RATE || 2);
const seconds = Number(process.env.SECONDS || 10);
const TICKS = 100; // clock ticks a second, for /proc/PID/stat

const docs = Number(process.env.DOCS || 0);
const textBytes = Number(process.env.TEXT_BYTES || 2000);

/** CPU (ms) and resident memory (bytes) of every server, added up. */
const cpuMs = () => servers.reduce((sum, { pid }) => {
  const fields = fs.readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
  return sum + ((Number(fields[11]) + Number(fields[12])) * 1000) / TICKS;
}, 0);
const rssBytes = () => servers.reduce((sum, { pid }) => {
  const line = fs.readFileSync(`/proc/${pid}/status`, 'utf8').split('\n').find((l) => l.startsWith('VmRSS:'));
  return sum + Number(line.split(/\s+/)[1]) * 1024;
}, 0);
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** A chat session in #lobby on the server at `at`: its token. */
function session(nick, at = addr) {
  const socket = new WebSocket(`ws://${at}/ws`, 'chat.v1');
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

/** A Yjs editor of document `name` of #lobby, for `token`, on the server at `at`. */
function editor(name, token, at) {
  const doc = new Y.Doc();
  const provider = new WebsocketProvider(`ws://${at}/yjs/lobby`, name, doc, {
    WebSocketPolyfill: WebSocket,
    params: { session: token },
    disableBc: true,
  });
  return { doc, provider, text: doc.getText('content') };
}

if (docs > 0) {
  // What an open document costs: DOCS of them, one editor each, full.
  const { token, socket } = await session('owner');
  const before = rssBytes();
  const open = [];
  for (let i = 0; i < docs; i += 1) {
    const one = editor(`doc-${i}`, token, addr);
    open.push(one);
    while (!one.provider.synced) {
      await sleep(1);
    }
    one.text.insert(0, 'x'.repeat(textBytes));
  }
  // (A benchmark, not a test: time for the last updates to land.)
  await sleep(2000);
  const after = rssBytes();
  console.log(JSON.stringify({
    docs, text_bytes: textBytes, server_rss_growth_bytes: after - before,
    per_document_bytes: Math.round((after - before) / docs),
  }));
  for (const one of open) {
    one.provider.destroy();
    one.doc.destroy();
  }
  socket.close();
  process.exit(0);
}

const rssBefore = rssBytes();
const clients = [];
for (let i = 0; i < editors; i += 1) {
  // Spread over the servers; the one timing (editor 0) on the first.
  const at = servers[i % servers.length].addr;
  const { token, socket } = await session(`e${i}`, at);
  clients.push({ ...editor('bench', token, at), socket });
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
  servers: servers.length,
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
