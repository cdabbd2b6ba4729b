// Shared documents with clients outside our code: Yjs (the npm package)
// and its standard y-websocket provider, run in Node against the real
// chat-server (issue #17). Run by ./scripts/test (node --test).
import { test } from 'node:test';
import assert from 'node:assert/strict';
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

/** A Yjs document of #lobby opened with y-websocket's provider. */
function open(addr, name, token) {
  const doc = new Y.Doc();
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
