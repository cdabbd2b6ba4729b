// The browser chat page: protocol chat.v1 (docs/protocol.md) over the
// WebSocket API, in ES modules served as they are (no bundler):
//
//   session.js, pacer.js   the session as a state machine (no DOM, no timers)
//   connection.js          its driver: the transport, the clock, files being sent
//   chat.js                what the session reports, shown; frame handlers by type
//   views.js, state.js     the page's picture and its rendering
//   composer.js            what is typed; files.js attachments and uploads;
//   notify.js              desktop notifications
//   docs.js, markdown.js   the Docs panel: a room's shared documents (Yjs,
//                          from the bundled /js/yjs.js), their preview
//
// A feature that brings frames of its own (shared documents) adds a module
// with its handlers in chat.js's `frames` and its views; the transports
// (WebSocket, and the HTTP fallback) and the choice between them are in
// connection.js.

import { $ } from './common.js';
import { frames, loadOlder, onEvent, onProgress, onSave } from './chat.js';
import {
  completeNick, joinRoom, onTyping, sendMessage, startChange, stopEditing, submit,
} from './composer.js';
import { Connection, autoTransport } from './connection.js';
import { docsApi, setUpDocs } from './docs.js';
import { queueUpload } from './files.js';
import { askForNotifications } from './notify.js';
import { NICK_KEY, SESSION_KEY, TOKEN_KEY, savedRooms, state } from './state.js';
import {
  closeDrawers, jumpToNewest, onChange, onDirectoryJoin, onMoreMembers, onOlder, onScroll, renderMembers, setDrawer,
  showLogin, switchRoom, tellRead,
} from './views.js';

// One for the page: what it learnt (the WebSocket is blocked) outlives a
// new login. ?probe_ms= shortens the wait before a WebSocket is tried
// again (tests, debugging).
const probeMs = Number(new URLSearchParams(location.search).get('probe_ms'));
const transport = autoTransport(probeMs > 0 ? { probeInterval: probeMs } : {});

function start(nick, token) {
  state.connection?.stop();
  state.wantedNick = nick;
  state.token = token || null;
  state.connection = new Connection({
    config: {
      nick,
      accessToken: state.token,
      rooms: savedRooms().map((room) => [room, null]),
      random: Math.random,
    },
    saved: { session: localStorage.getItem(SESSION_KEY), rooms: [] },
    transport,
    onEvent,
    onSave,
    onProgress,
  });
}

// For the browser tests and the console: the page's state and a few levers.
window.chat = {
  state,
  frames,
  /** Sends a frame as it is (with `id`, the answer carries it). */
  send: (frame, id = null) => state.connection?.send(frame, id),
  /** Says `text` in the current room, as typing it would. */
  say: (text) => sendMessage({ type: 'say', room: state.current, text }),
  /** Drops the connection and stays offline until online(). */
  offline: () => state.connection?.offline(),
  online: () => state.connection?.online(),
  /** The address the connection was opened to. */
  url: () => state.connection?.link?.url ?? null,
  /** The transport in use: 'websocket', 'sse', or null. */
  transport: () => state.connection?.link?.transport ?? null,
  /** The document open in the Docs panel. */
  docs: docsApi,
};

window.addEventListener('online', () => state.connection?.online());

document.addEventListener('DOMContentLoaded', () => {
  $('login-form').addEventListener('submit', (event) => {
    event.preventDefault();
    const nick = $('nick-input').value.trim();
    const token = $('token-input').value.trim();
    if (!nick && !token) {
      $('login-error').textContent = 'Pick a nickname (or paste an access token).';
      return;
    }
    $('login-error').textContent = '';
    if (token) {
      localStorage.setItem(TOKEN_KEY, token);
    } else {
      localStorage.removeItem(TOKEN_KEY);
    }
    start(nick || null, token);
  });
  $('send-form').addEventListener('submit', (event) => {
    event.preventDefault();
    submit();
  });
  $('join-form').addEventListener('submit', (event) => {
    event.preventDefault();
    const room = $('join-input').value.trim();
    if (room && joinRoom(room)) {
      $('join-input').value = '';
    }
  });
  $('text').addEventListener('keydown', (event) => {
    if (event.key === 'Enter' && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      submit();
    } else if (event.key === 'Escape' && state.editing) {
      event.preventDefault();
      stopEditing();
    } else if (event.key === 'Tab' && !event.shiftKey && !event.ctrlKey && !event.altKey && !event.metaKey
        && completeNick()) {
      event.preventDefault();
    }
  });
  setUpDocs(() => state.current);
  onChange(startChange);
  onDirectoryJoin(joinRoom);
  onMoreMembers((room) => {
    const known = [...(state.rooms.get(room)?.members || [])];
    const asked = [...state.memberPages.values()].includes(room);
    if (!state.connection || !known.length || asked) {
      return;
    }
    // After the last of the server's pages, in its order: pages never
    // repeat. With none yet (the list grew from presence), from the
    // start: who is known already is merged.
    const id = state.connection.session.newId();
    state.memberPages.set(id, room);
    const after = state.rooms.get(room).lastMember ?? undefined;
    state.connection.send({ type: 'who', room, after }, id);
  });
  // The member list's search: the members it holds in a room it knows
  // whole, else the server's answer (a big room's list comes by the page).
  let searchTimer = null;
  $('member-search').addEventListener('input', () => {
    clearTimeout(searchTimer);
    const room = state.current;
    const prefix = $('member-search').value.trim();
    const known = state.rooms.get(room);
    if (!prefix || !known) {
      state.memberSearch = null;
      renderMembers();
      return;
    }
    const whole = known.membersComplete || known.members.size >= (known.memberCount ?? 0);
    if (whole) {
      const lower = prefix.toLowerCase();
      const results = [...known.members].filter((nick) => nick.toLowerCase().startsWith(lower));
      state.memberSearch = { room, prefix, results, more: false };
      renderMembers();
      return;
    }
    state.memberSearch = { room, prefix, results: null, more: false };
    renderMembers();
    // Asked once typing pauses, not for every key.
    searchTimer = setTimeout(() => {
      if (!state.connection) {
        return;
      }
      const id = state.connection.session.newId();
      state.memberSearches.set(id, { room, prefix });
      state.connection.send({ type: 'who', room, prefix, limit: 50 }, id);
    }, 150);
  });
  // Back on the tab: what is shown now is read.
  document.addEventListener('visibilitychange', tellRead);
  $('browse').addEventListener('click', () => {
    if (state.connection) {
      state.directoryId = state.connection.session.newId();
      state.connection.send({ type: 'rooms' }, state.directoryId);
    }
  });
  // A phone's drawers: from the top bar, closed by the scrim, Escape, or a choice.
  for (const [toggle, drawer] of [['rooms-toggle', 'rooms-drawer'], ['members-toggle', 'members-drawer']]) {
    $(toggle).addEventListener('click', () => setDrawer(drawer, !$(drawer).classList.contains('open')));
  }
  $('scrim').addEventListener('click', closeDrawers);
  document.addEventListener('keydown', (event) => {
    if (event.key === 'Escape' && !$('scrim').hidden) {
      closeDrawers();
    }
  });
  $('text').addEventListener('input', onTyping);
  onOlder(loadOlder);
  $('messages').addEventListener('scroll', onScroll, { passive: true });
  $('jump').addEventListener('click', jumpToNewest);
  $('retry-now').addEventListener('click', () => state.connection?.online());
  $('notify').addEventListener('click', askForNotifications);
  $('attach').addEventListener('click', () => $('file-input').click());
  $('file-input').addEventListener('change', () => {
    for (const file of $('file-input').files) {
      queueUpload(file);
    }
    $('file-input').value = '';
  });
  $('text').addEventListener('paste', (event) => {
    const files = [...(event.clipboardData?.files || [])];
    if (files.length) {
      event.preventDefault();
      files.forEach(queueUpload);
    }
  });
  const chat = document.querySelector('.chat');
  chat.addEventListener('dragover', (event) => {
    if ([...(event.dataTransfer?.types || [])].includes('Files')) {
      event.preventDefault();
      chat.classList.add('dropping');
    }
  });
  chat.addEventListener('dragleave', () => chat.classList.remove('dropping'));
  chat.addEventListener('drop', (event) => {
    chat.classList.remove('dropping');
    const files = [...(event.dataTransfer?.files || [])];
    if (files.length) {
      event.preventDefault();
      files.forEach(queueUpload);
    }
  });
  $('viewer').addEventListener('click', () => $('viewer').close());
  // Keyboard: Alt+Up / Alt+Down move between rooms and conversations.
  document.addEventListener('keydown', (event) => {
    if (!event.altKey || (event.key !== 'ArrowUp' && event.key !== 'ArrowDown')) {
      return;
    }
    const names = [...state.rooms.keys(), ...[...state.directs.keys()].map((p) => `@${p}`)];
    const at = names.indexOf(state.current);
    if (names.length && at >= 0) {
      event.preventDefault();
      const step = event.key === 'ArrowUp' ? -1 : 1;
      switchRoom(names[(at + step + names.length) % names.length]);
    }
  });
  const saved = localStorage.getItem(NICK_KEY);
  const savedToken = localStorage.getItem(TOKEN_KEY);
  if (saved || savedToken) {
    $('nick-input').value = saved || '';
    start(saved, savedToken);
  } else {
    showLogin('');
  }
});
