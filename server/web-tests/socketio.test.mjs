// Socket.IO clients against the real chat-server (issue #20): the
// official `socket.io-client` from npm (pinned) over long-polling, the
// upgrade to WebSocket, the classic `chat message`, the richer events with
// acknowledgements, and connection state recovery across a restart; and in
// real Chromium, the Socket.IO tutorial's own chat page (fixtures/, byte
// for byte) chatting with our page, over WebSocket and over long-polling.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execFileSync, spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { io } from 'socket.io-client';
import * as support from './support.mjs';

const { startServer, stopServer, WAIT, say, seeMessage } = support;

const browser = support.browserForFile();
const fixtures = path.join(support.here, 'fixtures');

/** Resolves with the arguments of the next `event` of `emitter`. */
function next(emitter, event) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no ${event} within ${WAIT} ms`)), WAIT);
    emitter.once(event, (...args) => {
      clearTimeout(timer);
      resolve(args);
    });
  });
}

/** Resolves once `predicate()` holds, checked at each `event` of `emitter`. */
function until(emitter, event, predicate) {
  return new Promise((resolve, reject) => {
    if (predicate()) {
      resolve();
      return;
    }
    const timer = setTimeout(() => reject(new Error(`${event}: condition not met within ${WAIT} ms`)), WAIT);
    const check = () => {
      if (predicate()) {
        clearTimeout(timer);
        emitter.off(event, check);
        resolve();
      }
    };
    emitter.on(event, check);
  });
}

/** The `chat message` texts `socket` receives, in order. */
function texts(socket) {
  const seen = [];
  socket.on('chat message', (text) => seen.push(text));
  return seen;
}

/** Runs `body` with a fresh server (given `extra` flags) and `connect`, which opens clients to it (closed after). */
async function withServer(body, extra = []) {
  const server = await startServer('127.0.0.1:0', null, extra);
  const sockets = [];
  const connect = (options) => {
    const socket = io(server.url, options);
    sockets.push(socket);
    return socket;
  };
  try {
    await body(server, connect);
  } finally {
    for (const socket of sockets) socket.close();
    await stopServer(server.child);
  }
}

test('the official client connects over polling, upgrades, and chats with the classic and the rich events', () => withServer(async (server, connect) => {
  // A classic client (the tutorial's), left to upgrade as it does.
  const ann = connect({ auth: { nick: 'ann' } });
  const annSaw = texts(ann);
  const opened = [];
  const upgraded = new Promise((resolve) => ann.io.on('open', () => {
    opened.push(ann.io.engine.transport.name);
    ann.io.engine.once('upgrade', (transport) => resolve(transport.name));
  }));
  assert.equal(await upgraded, 'websocket');
  assert.deepEqual(opened, ['polling'], 'it opened over long-polling');
  await until(ann, 'connect', () => ann.connected);
  assert.ok(ann.connected);
  // One that stays on long-polling, and one that asks for objects.
  const cid = connect({ auth: { nick: 'cid' }, transports: ['polling'] });
  const cidSaw = texts(cid);
  await next(cid, 'connect');
  assert.equal(cid.io.engine.transport.name, 'polling');
  const bob = connect({ auth: { nick: 'bob', rich: true }, transports: ['websocket'] });
  const bobSaw = [];
  bob.on('message', (message, offset) => bobSaw.push({ message, offset }));
  const [joined] = await next(bob, 'joined');
  assert.equal(joined.room, 'lobby');
  assert.deepEqual(joined.members, ['ann', 'bob', 'cid']);

  ann.emit('chat message', 'hello from ann');
  cid.emit('chat message', 'hello from cid');
  await until(bob, 'message', () => bobSaw.length === 2);
  await until(ann, 'chat message', () => annSaw.length === 2);
  await until(cid, 'chat message', () => cidSaw.length === 2);
  // One order for everyone, the sender included.
  assert.deepEqual(annSaw, cidSaw);
  assert.deepEqual(bobSaw.map((m) => m.message.text), annSaw);
  assert.deepEqual(bobSaw.map((m) => m.message.from), annSaw.map((t) => t.split(' ').pop()));
  assert.deepEqual(bobSaw.map((m) => m.offset), ['lobby:1', 'lobby:2']);

  // A `say` with an acknowledgement: the stored message, with its seq.
  const ack = await bob.timeout(WAIT).emitWithAck('say', { text: 'acked', id: 'b-1' });
  assert.equal(ack.type, 'message');
  assert.equal(ack.seq, 3);
  assert.equal(ack.id, 'b-1');
  await until(ann, 'chat message', () => annSaw.length === 3);
  assert.equal(annSaw[2], 'acked');
  // Sent again with the same id (a retry): answered, not repeated.
  const again = await bob.timeout(WAIT).emitWithAck('say', { text: 'acked', id: 'b-1' });
  assert.equal(again.seq, 3);
  // Joining another room, its history, and errors with protocol v1's codes.
  const dev = await ann.timeout(WAIT).emitWithAck('join', 'dev');
  assert.equal(dev.type, 'joined');
  assert.equal(dev.room, 'dev');
  const said = await ann.timeout(WAIT).emitWithAck('say', { room: 'dev', text: 'in dev' });
  assert.equal(said.seq, 1);
  const history = await ann.timeout(WAIT).emitWithAck('history', { room: 'lobby', limit: 2 });
  assert.deepEqual(history.messages.map((m) => m.seq), [2, 3]);
  const notIn = await bob.timeout(WAIT).emitWithAck('say', { room: 'dev', text: 'no' });
  assert.equal(notIn.type, 'error');
  assert.equal(notIn.code, 'not_in_room');
  const unknown = await bob.timeout(WAIT).emitWithAck('shout', 'x');
  assert.equal(unknown.code, 'unknown_type');
  // A direct message, as the rich `direct` event.
  const direct = next(bob, 'direct');
  await ann.timeout(WAIT).emitWithAck('dm', { to: 'bob', text: 'psst' });
  const [dm] = await direct;
  assert.equal(dm.text, 'psst');
  assert.equal(dm.from, 'ann');
  // Files, as a binary event: stored, and shown as a message with them,
  // over WebSocket and over long-polling (base64 there).
  const file = Buffer.from('a file from a Socket.IO client\n');
  for (const [sender, name] of [[ann, 'note.txt'], [cid, 'polled.txt']]) {
    const shown = next(bob, 'message');
    const stored = await sender.timeout(WAIT).emitWithAck('upload', { name, mime: 'text/plain', text: `see ${name}` }, file);
    assert.equal(stored.type, 'message', JSON.stringify(stored));
    assert.equal(stored.attachment.name, name);
    assert.equal(stored.attachment.size, file.length);
    const [message] = await shown;
    assert.deepEqual(message.attachment, stored.attachment);
    // Fetched back with the session's token: the CONNECT answer's pid.
    const response = await fetch(`${server.url}/files/${stored.attachment.id}`, {
      headers: { authorization: `Bearer ${bob._pid}` },
    });
    assert.equal(response.status, 200);
    assert.deepEqual(Buffer.from(await response.arrayBuffer()), file);
  }
  const nameless = await ann.timeout(WAIT).emitWithAck('upload', { mime: 'text/plain' }, file);
  assert.equal(nameless.code, 'bad_frame');
  const other = await ann.timeout(WAIT).emitWithAck('picture', file);
  assert.equal(other.code, 'unknown_type');
  // Presence, as the rich event.
  const left = next(bob, 'presence');
  cid.disconnect();
  const [presence] = await left;
  assert.equal(presence.nick, 'cid');
  assert.equal(presence.event, 'leave');
  // A classic client sees the messages of every room it is in.
  assert.ok(annSaw.includes('in dev'));
}));

test('a nick someone holds is a connect_error with its code', () => withServer(async (server, connect) => {
  const first = connect({ auth: { nick: 'dora' } });
  await next(first, 'connect');
  const second = connect({ auth: { nick: 'dora' } });
  const [error] = await next(second, 'connect_error');
  assert.equal(error.data.code, 'nick_taken');
  assert.ok(!second.connected);
}));

/** Resolves with the data of the next `connect_error` of a client that may not connect. */
async function refusedWith(socket) {
  const [error] = await next(socket, 'connect_error');
  return error.data?.code ?? error.message;
}

test('access tokens come in the auth payload: a good one names the nick, none or a bad one is unauthorized', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'chat-web-socketio-auth-'));
  const secret = path.join(dir, 'secret');
  fs.writeFileSync(secret, 'a test secret of at least 32 bytes, kept apart\n');
  const mint = (nick) => execFileSync(support.serverBin,
    ['token', '--auth-secret-file', secret, '--nick', nick, '--ttl', '1h']).toString().trim();
  try {
    await withServer(async (server, connect) => {
      for (const auth of [{ nick: 'ann' }, { token: 'not.a.token' }, { token: mint('ann').slice(0, -2) }]) {
        const refused = connect({ auth, reconnection: false });
        assert.equal(await refusedWith(refused), 'unauthorized', JSON.stringify(auth));
        assert.equal(refused.connected, false);
      }
      // A token names its nick: another one is forbidden.
      const impostor = connect({ auth: { token: mint('ann'), nick: 'root' }, reconnection: false });
      assert.equal(await refusedWith(impostor), 'forbidden');
      const ann = connect({ auth: { token: mint('ann'), rich: true }, transports: ['websocket'] });
      const [joined] = await next(ann, 'joined');
      assert.deepEqual(joined.members, ['ann']);
      const said = await ann.timeout(WAIT).emitWithAck('say', { text: 'signed' });
      assert.equal(said.from, 'ann');
    }, ['--auth-secret-file', secret]);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('connection caps hold for Socket.IO sessions: 503 when the server is full, 429 when the address is', async () => {
  for (const [flag, status] of [['--max-connections', 503], ['--max-connections-per-ip', 429]]) {
    await withServer(async (server, connect) => {
      const held = [connect({ auth: { nick: 'ann' }, transports: ['websocket'] }),
        connect({ auth: { nick: 'bob' }, transports: ['websocket'] })];
      const bobSaw = texts(held[1]);
      for (const socket of held) await until(socket, 'connect', () => socket.connected);
      // A third session is refused at its handshake, on either transport.
      const answer = await fetch(`${server.url}/socket.io/?EIO=4&transport=polling`);
      assert.equal(answer.status, status, flag);
      const third = connect({ auth: { nick: 'cid' }, reconnection: false });
      const [error] = await next(third, 'connect_error');
      assert.equal(error.message, 'xhr poll error');
      assert.equal(error.description, status);
      // Once one leaves, its place is free.
      held[0].disconnect();
      const fourth = connect({ auth: { nick: 'dee' }, transports: ['websocket'] });
      await next(fourth, 'connect');
      fourth.emit('chat message', 'in its place');
      await until(held[1], 'chat message', () => bobSaw.includes('in its place'));
    }, [flag, '2']);
  }
});

test('limits and rate limits hold for Socket.IO clients: what is over them is an error event, the rest goes through', () => withServer(async (server, connect) => {
  const ann = connect({ auth: { nick: 'ann' }, transports: ['websocket'] });
  const bob = connect({ auth: { nick: 'bob' }, transports: ['websocket'] });
  const bobSaw = texts(bob);
  const errors = [];
  ann.on('error', (error) => errors.push(error));
  for (const socket of [ann, bob]) await until(socket, 'connect', () => socket.connected);
  for (let i = 0; i < 6; i += 1) ann.emit('chat message', `flood ${i}`);
  await until(ann, 'error', () => errors.length === 3);
  assert.deepEqual(errors.map((error) => error.code), ['rate_limited', 'rate_limited', 'rate_limited']);
  assert.ok(errors.every((error) => error.retry_after_ms > 0), JSON.stringify(errors));
  // A text over the size limit is refused as our protocol refuses it.
  const bobErrors = [];
  bob.on('error', (error) => bobErrors.push(error));
  bob.emit('chat message', 'x'.repeat(101));
  await until(bob, 'error', () => bobErrors.length === 1);
  assert.equal(bobErrors[0].code, 'too_large');
  // What was within the burst went through, in order; bob is not limited.
  bob.emit('chat message', 'from bob');
  await until(bob, 'chat message', () => bobSaw.length === 4);
  assert.deepEqual(bobSaw, ['flood 0', 'flood 1', 'flood 2', 'from bob']);
}, ['--messages-burst', '3', '--messages-per-sec', '1', '--max-text-bytes', '100']));

/** The terminal client (`chat`, line mode) on `url` as `nick`: `type` a line, `expect` a line it prints. */
function terminal(url, nick) {
  const bin = path.join(path.dirname(support.serverBin), 'chat');
  const wsUrl = `${url.replace('http://', 'ws://')}/ws`;
  const child = spawn(bin, ['--server', wsUrl, '--nick', nick, '--plain'], { stdio: ['pipe', 'pipe', 'inherit'] });
  const lines = [];
  const reader = createInterface({ input: child.stdout });
  reader.on('line', (line) => lines.push(line));
  return {
    child,
    type: (line) => child.stdin.write(`${line}\n`),
    expect: (wanted) => until(reader, 'line', () => lines.includes(wanted)),
  };
}

test('a classic client in the room its query names and the terminal client chat both ways', () => withServer(async (server, connect) => {
  const term = terminal(server.url, 'term');
  try {
    await term.expect('[lobby] -- joined (1 members: term)');
    term.type('/join dev');
    await term.expect('[dev] -- joined (1 members: term)');
    // The tutorial's client, with only `?room=dev` added to its URL.
    const classic = connect({ auth: { nick: 'cls' }, query: { room: 'dev' } });
    const saw = texts(classic);
    await until(classic, 'connect', () => classic.connected);
    await term.expect('[dev] -- cls joined');
    classic.emit('chat message', 'hello terminal');
    await term.expect('[dev] <cls> hello terminal');
    term.type('hello socket.io');
    await until(classic, 'chat message', () => saw.includes('hello socket.io'));
    assert.deepEqual(saw, ['hello terminal', 'hello socket.io']);
  } finally {
    term.child.kill();
  }
}));

test('a client recovers its connection state after a server restart, missing nothing and repeating nothing', async () => {
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'chat-web-socketio-'));
  let server = await startServer('127.0.0.1:0', dataDir, ['--drain-window', '1s']);
  const sockets = [];
  try {
    // Reconnected by hand below, so that messages are sent while it is away.
    const ann = io(server.url, { auth: { nick: 'ann' }, reconnection: false });
    sockets.push(ann);
    const annSaw = texts(ann);
    await next(ann, 'connect');
    const bob = io(server.url, { auth: { nick: 'bob' }, reconnection: false });
    sockets.push(bob);
    await next(bob, 'connect');
    // One left to reconnect by itself, as clients do after a drain.
    const dan = io(server.url, { auth: { nick: 'dan' }, reconnectionDelay: 100 });
    sockets.push(dan);
    const danSaw = texts(dan);
    await next(dan, 'connect');
    bob.emit('chat message', 'before');
    await until(ann, 'chat message', () => annSaw.length === 1);

    const gone = next(ann, 'disconnect');
    const danGone = next(dan, 'disconnect');
    await stopServer(server.child);
    // The drain closed the sessions as Engine.IO does ("transport close"),
    // not with a DISCONNECT (after which a client does not come back).
    assert.deepEqual([(await gone)[0], (await danGone)[0]], ['transport close', 'transport close']);
    server = await startServer(server.addr, dataDir, ['--drain-window', '1s']);
    const carol = io(server.url, { auth: { nick: 'carol' } });
    sockets.push(carol);
    await next(carol, 'connect');
    const one = await carol.timeout(WAIT).emitWithAck('say', { text: 'while away 1' });
    const two = await carol.timeout(WAIT).emitWithAck('say', { text: 'while away 2' });
    assert.deepEqual([one.seq, two.seq], [2, 3]);

    ann.connect();
    await next(ann, 'connect');
    assert.equal(ann.recovered, true, 'the same session, by its pid');
    await until(ann, 'chat message', () => annSaw.length === 3);
    carol.emit('chat message', 'after');
    await until(ann, 'chat message', () => annSaw.length === 4);
    assert.deepEqual(annSaw, ['before', 'while away 1', 'while away 2', 'after']);
    await until(dan, 'chat message', () => danSaw.length === 4);
    assert.deepEqual(danSaw, annSaw);
    assert.equal(dan.recovered, true);
  } finally {
    for (const socket of sockets) socket.close();
    await stopServer(server.child);
    fs.rmSync(dataDir, { recursive: true, force: true });
  }
});

test('two nodes behind a round-robin proxy: long-polling requests reach either node and the session carries on, nothing lost', async () => {
  const redis = await support.startRedis();
  const dirs = ['a', 'b'].map((name) => fs.mkdtempSync(path.join(os.tmpdir(), `chat-web-socketio-${name}-`)));
  const nodes = [];
  let proxy = null;
  const sockets = [];
  try {
    for (const [i, name] of ['a', 'b'].entries()) {
      nodes.push(await startServer('127.0.0.1:0', dirs[i], ['--redis', redis.url, '--node-id', name]));
    }
    proxy = await support.startNginx(nodes.map((node) => node.addr));
    const connect = (url, options) => {
      const socket = io(url, { reconnection: false, ...options });
      sockets.push(socket);
      return socket;
    };
    // One on long-polling only: each of its requests goes to the next
    // node, so half reach the node that does not hold its session.
    const ann = connect(proxy.url, { auth: { nick: 'ann' }, transports: ['polling'] });
    // One left to upgrade: its probe may reach the other node (it then
    // stays on long-polling) or its own.
    const bob = connect(proxy.url, { auth: { nick: 'bob' } });
    // One on a node directly.
    const cid = connect(nodes[1].url, { auth: { nick: 'cid' }, transports: ['websocket'] });
    const saw = [ann, bob, cid].map(texts);
    const dropped = [];
    for (const [i, socket] of [ann, bob, cid].entries()) {
      await until(socket, 'connect', () => socket.connected);
      socket.on('disconnect', (why) => dropped.push(`${i}: ${why}`));
    }
    const sid = ann.io.engine.id;

    const sent = [];
    for (let round = 0; round < 4; round += 1) {
      for (const [name, socket] of [['ann', ann], ['bob', bob], ['cid', cid]]) {
        const text = `${name} ${round}`;
        sent.push(text);
        // Acknowledged: stored, on whichever node the request reached.
        const ack = await socket.timeout(WAIT).emitWithAck('say', { text, id: `${name}-${round}` });
        assert.equal(ack.type, 'message', `${text}: ${JSON.stringify(ack)}`);
      }
    }
    for (const [i, socket] of [ann, bob, cid].entries()) {
      await until(socket, 'chat message', () => saw[i].length === sent.length);
    }
    // Everyone saw every message once, in the one order of the room.
    assert.deepEqual(saw[0], saw[2]);
    assert.deepEqual(saw[1], saw[2]);
    assert.deepEqual([...saw[0]].sort(), [...sent].sort());
    assert.equal(ann.io.engine.transport.name, 'polling');
    assert.equal(ann.io.engine.id, sid, 'the same Engine.IO session throughout');
    assert.deepEqual(dropped, []);

    // The classic event too, and history through either node.
    ann.emit('chat message', 'classic');
    await until(cid, 'chat message', () => saw[2].at(-1) === 'classic');
    const history = await ann.timeout(WAIT).emitWithAck('history', { room: 'lobby', limit: 3 });
    assert.deepEqual(history.messages.map((m) => m.text), [...saw[2].slice(-3)]);
    assert.deepEqual(dropped, []);
  } finally {
    for (const socket of sockets) socket.close();
    if (proxy) await support.stopNginx(proxy.child);
    for (const node of nodes) await stopServer(node.child);
    await redis.stop();
    for (const dir of dirs) fs.rmSync(dir, { recursive: true, force: true });
  }
});

/** Opens a classic page of the server at `url` in a fresh context (`setup` routes first). */
async function classicPage(url, setup = null) {
  const context = await browser().newContext();
  await setup?.(context);
  const page = await context.newPage();
  page.setDefaultTimeout(WAIT);
  const problems = [];
  page.on('pageerror', (err) => problems.push(err.message));
  // (Chromium asks every site for /favicon.ico, which this one has not.)
  page.on('response', (response) => {
    if (response.status() >= 400 && !response.url().endsWith('/favicon.ico')) {
      problems.push(`${response.status()} ${response.url()}`);
    }
  });
  await page.goto(url);
  return { context, page, problems };
}

/** Sends `text` from the tutorial's page, as its user does. */
async function send(page, text) {
  await page.fill('#input', text);
  await page.press('#input', 'Enter');
}

/** Waits until the classic page lists `text`. */
async function listed(page, text) {
  await page.waitForFunction(
    (t) => [...document.querySelectorAll('#messages li')].some((li) => li.textContent === t),
    text,
  );
}

test('the tutorial\'s page chats with our page both ways, over WebSocket and, with WebSocket blocked, over long-polling', async () => {
  const server = await startServer('127.0.0.1:0', null, ['--socketio-page', fixtures]);
  try {
    const bob = await support.login(browser(), server.url, 'bob');
    const classic = await classicPage(`${server.url}/classic/socketio-chat/`);
    await classic.page.waitForFunction(() => window.socket.connected);
    await classic.page.waitForFunction(() => window.socket.io.engine.transport.name === 'websocket');
    // Its users are guests in #lobby, as our page shows them.
    await send(classic.page, 'hello from the tutorial');
    await seeMessage(bob.page, 'hello from the tutorial');
    await listed(classic.page, 'hello from the tutorial');
    await say(bob.page, 'hello from our page');
    await listed(classic.page, 'hello from our page');

    // A proxy that breaks WebSocket: the page stays on long-polling.
    const blocked = await classicPage(`${server.url}/classic/socketio-chat/`, (context) =>
      context.routeWebSocket(/.*/, (ws) => ws.close({ code: 1006 })));
    await blocked.page.waitForFunction(() => window.socket.connected);
    await send(blocked.page, 'over long-polling');
    await seeMessage(bob.page, 'over long-polling');
    await listed(classic.page, 'over long-polling');
    await say(bob.page, 'to the polling page');
    await listed(blocked.page, 'to the polling page');
    assert.equal(await blocked.page.evaluate(() => window.socket.io.engine.transport.name), 'polling');

    // The older tutorial page, with jQuery (from npm: no CDN here).
    const jquery = fs.readFileSync(path.join(support.here, 'node_modules/jquery/dist/jquery.js'));
    const old = await classicPage(`${server.url}/classic/socketio-chat-jquery/`, (context) =>
      context.route('https://code.jquery.com/jquery-1.11.1.js', (route) =>
        route.fulfill({ body: jquery, contentType: 'text/javascript' })));
    // Its socket is its own: that it is connected shows in the room's
    // recent messages it is sent.
    await listed(old.page, 'to the polling page');
    await old.page.fill('#m', 'from the jQuery page');
    await old.page.click('form button');
    await seeMessage(bob.page, 'from the jQuery page');
    await listed(classic.page, 'from the jQuery page');
    await listed(old.page, 'from the jQuery page');

    // Each line once, in one order, on every page.
    const lines = (page) => page.evaluate(() => [...document.querySelectorAll('#messages li')].map((li) => li.textContent));
    const expected = ['hello from the tutorial', 'hello from our page', 'over long-polling', 'to the polling page', 'from the jQuery page'];
    assert.deepEqual(await lines(classic.page), expected);
    // The later pages saw the room's recent messages when they came.
    assert.deepEqual(await lines(blocked.page), expected);
    assert.deepEqual(await lines(old.page), expected);
    for (const { problems } of [classic, blocked, old]) {
      assert.deepEqual(problems, []);
    }
    assert.deepEqual(bob.problems, []);
  } finally {
    await stopServer(server.child);
  }
});

/** The Python of the venv scripts/test makes (python/requirements.txt). */
const python = process.env.CHAT_TEST_PYTHON
  || path.join(support.here, '..', '..', 'target', 'python-venv', 'bin', 'python');

test('python-socketio\'s client chats with our page\'s users', async () => {
  const server = await startServer();
  const child = spawn(python, [path.join(support.here, 'python', 'chat_client.py'), server.url, 'pyro'], {
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  try {
    const lines = [];
    const waiters = [];
    createInterface({ input: child.stdout }).on('line', (line) => {
      lines.push(line);
      for (const waiter of waiters) waiter();
    });
    const seen = (line) => new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`python never printed ${line}; it printed ${lines}`)), WAIT);
      const check = () => {
        if (lines.includes(line)) {
          clearTimeout(timer);
          resolve();
        }
      };
      waiters.push(check);
      check();
    });
    await seen('connected websocket');
    const bob = await support.login(browser(), server.url, 'bob');
    child.stdin.write('hello from python\n');
    await seeMessage(bob.page, 'hello from python');
    // Shown as pyro's, as our page shows everyone.
    const from = await bob.page.evaluate(() => [...document.querySelectorAll('#messages li')]
      .find((li) => li.querySelector('.text')?.textContent === 'hello from python')?.textContent);
    assert.match(from, /pyro/);
    await say(bob.page, 'hello, python');
    await seen('got hello, python');
    await seen('got hello from python');
    child.stdin.end();
    const code = await new Promise((resolve) => child.once('exit', resolve));
    assert.equal(code, 0);
  } finally {
    child.kill();
    await stopServer(server.child);
  }
});
