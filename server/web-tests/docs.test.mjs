// Shared documents with clients outside our code: Yjs (the npm package)
// and its standard y-websocket provider, run in Node against the real
// chat-server (issue #17). Run by ./scripts/test (node --test).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import WebSocket from 'ws';
import * as Y from 'yjs';
import { WebsocketProvider } from 'y-websocket';
import { startServer, stopServer } from './support.mjs';

const WAIT = 10_000;

/** Resolves once `check()` holds, polling on the event loop; fails after WAIT. */
async function until(what, check) {
  const deadline = Date.now() + WAIT;
  while (!check()) {
    if (Date.now() > deadline) {
      throw new Error(`timed out waiting for ${what}`);
    }
    await new Promise((resolve) => setImmediate(resolve));
  }
}

/** A chat session as `nick` in #lobby (or in no room): its token. */
function session(addr, nick, room = 'lobby') {
  const socket = new WebSocket(`ws://${addr}/ws`, 'chat.v1');
  return new Promise((resolve, reject) => {
    socket.on('error', reject);
    socket.on('open', () => socket.send(JSON.stringify({ type: 'hello', nick })));
    let token = null;
    socket.on('message', (data) => {
      const frame = JSON.parse(data.toString());
      if (frame.type === 'welcome') {
        token = frame.session;
        if (!room) {
          resolve({ token, socket });
          return;
        }
        socket.send(JSON.stringify({ type: 'join', room }));
      } else if (frame.type === 'joined') {
        resolve({ token, socket });
      }
    });
  });
}

/** A Yjs document of #lobby (`doc`: an editor's own, with its edits) opened with y-websocket's provider. */
function open(addr, name, token, doc = new Y.Doc()) {
  const provider = new WebsocketProvider(`ws://${addr}/yjs/lobby`, name, doc, {
    WebSocketPolyfill: WebSocket,
    params: { session: token },
    disableBc: true,
  });
  // Closes the server meant as final (y-websocket then stops trying).
  const closes = [];
  provider.on('closed', (event) => closes.push(event.code));
  return { doc, provider, text: doc.getText('content'), closes };
}

/** Ends an editor: its provider, and its document with its awareness timer. */
function close(editor) {
  editor.provider.destroy();
  editor.doc.destroy();
}

test('Yjs clients with the standard y-websocket provider edit one document and see who is there', async () => {
  const server = await startServer();
  const alice = await session(server.addr, 'alice');
  const bob = await session(server.addr, 'bob');
  const a = open(server.addr, 'notes', alice.token);
  const b = open(server.addr, 'notes', bob.token);
  try {
    await until('both synced', () => a.provider.synced && b.provider.synced);
    a.text.insert(0, 'hello');
    await until('bob sees it', () => b.text.toString() === 'hello');
    // At the same place at once: both edits stay, and both agree.
    a.text.insert(5, ' from alice');
    b.text.insert(5, ' from bob');
    await until('convergence', () => a.text.toString() === b.text.toString()
      && a.text.toString().includes(' from alice') && a.text.toString().includes(' from bob'));
    // Awareness: each sees the other's name.
    a.provider.awareness.setLocalStateField('user', { name: 'alice' });
    await until('bob sees alice here', () => [...b.provider.awareness.getStates().values()]
      .some((state) => state.user?.name === 'alice'));
    // Offline edits merge when the editor comes back.
    b.provider.disconnect();
    b.text.insert(0, '>> ');
    a.text.insert(a.text.length, ' <<');
    b.provider.connect();
    await until('offline edits merged', () => a.text.toString() === b.text.toString()
      && a.text.toString().startsWith('>> ') && a.text.toString().endsWith(' <<'));
    // Someone who is not in #lobby is refused for good (4403), and sees
    // nothing.
    const carol = await session(server.addr, 'carol', null);
    const c = open(server.addr, 'notes', carol.token);
    await until('carol refused', () => c.closes.includes(4403));
    assert.equal(c.provider.shouldConnect, false, 'y-websocket stops trying');
    assert.equal(c.text.toString(), '');
    close(c);
    carol.socket.close();
  } finally {
    close(a);
    close(b);
    alice.socket.close();
    bob.socket.close();
    await stopServer(server.child);
  }
});

test('after kill -9 and a restart the document is whole, and editors resync without doubling text', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'chat-docs-'));
  let server = await startServer('127.0.0.1:0', dir);
  let alice = await session(server.addr, 'alice');
  let bob = await session(server.addr, 'bob');
  const a = open(server.addr, 'notes', alice.token);
  const b = open(server.addr, 'notes', bob.token);
  try {
    await until('both synced', () => a.provider.synced && b.provider.synced);
    let expected = '';
    for (let n = 0; n < 40; n += 1) {
      const editor = n % 2 ? b : a;
      const line = `line ${n}\n`;
      editor.text.insert(editor.text.length, line);
      expected += line;
      await until(`line ${n} everywhere`, () => a.text.toString() === expected && b.text.toString() === expected);
    }
    // Killed outright mid-editing: what it had not stored yet, the
    // editors still have.
    a.text.insert(a.text.length, 'last words\n');
    expected += 'last words\n';
    server.child.kill('SIGKILL');
    await new Promise((resolve) => server.child.once('exit', resolve));
    alice.socket.close();
    bob.socket.close();
    server = await startServer('127.0.0.1:0', dir);
    // The sessions come back (their tokens resume them) and rejoin.
    alice = await resumed(server.addr, alice.token);
    bob = await resumed(server.addr, bob.token);
    for (const editor of [a, b]) {
      editor.provider.destroy();
    }
    const a2 = open(server.addr, 'notes', alice.token, a.doc);
    const b2 = open(server.addr, 'notes', bob.token, b.doc);
    await until('resynced', () => a2.provider.synced && b2.provider.synced
      && a.text.toString() === b.text.toString());
    assert.equal(a.text.toString(), expected, 'everything once, in order');
    // A newcomer reads the same from the server alone.
    const carol = await session(server.addr, 'carol');
    const c = open(server.addr, 'notes', carol.token);
    await until('carol synced', () => c.provider.synced && c.text.toString() === expected);
    for (const editor of [a2, b2, c]) {
      close(editor);
    }
    carol.socket.close();
  } finally {
    alice.socket.close();
    bob.socket.close();
    await stopServer(server.child);
  }
});

/** The session of `token` resumed, back in #lobby. */
function resumed(addr, token) {
  const socket = new WebSocket(`ws://${addr}/ws`, 'chat.v1');
  return new Promise((resolve, reject) => {
    socket.on('error', reject);
    socket.on('open', () => socket.send(JSON.stringify({ type: 'hello', session: token })));
    socket.on('message', (data) => {
      const frame = JSON.parse(data.toString());
      if (frame.type === 'welcome') {
        socket.send(JSON.stringify({ type: 'join', room: 'lobby' }));
      } else if (frame.type === 'joined') {
        resolve({ token: frame.session ?? token, socket });
      }
    });
  });
}
