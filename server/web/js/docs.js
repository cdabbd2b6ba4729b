// Shared documents (docs/protocol.md, "Shared documents"): the Docs panel.
// A room's document is a Yjs document on a WebSocket of its own,
// /yjs/ROOM/DOC?session=TOKEN, through y-websocket's provider (yjs.js: the
// pinned Yjs and y-websocket, bundled by scripts/build-yjs). Its text
// ('content', as `chat doc` and any Yjs client read it) is bound to a
// textarea: what is typed becomes one CRDT edit per input, what others
// type is spliced in around the caret. Other people's carets and
// selections are drawn behind the text in their nick's colour; undo and
// redo take back one's own edits only; offline, edits stay in the Yjs
// document and merge when the connection is back.

import { WebsocketProvider, Y } from './yjs.js';
import { $, nickHue } from './common.js';
import { renderMarkdown } from './markdown.js';
import { SESSION_KEY, state } from './state.js';

/** The document `/doc` and the Docs button open when no name is given. */
export const DEFAULT_DOC = 'notes';
/** The document open at the last visit, opened again on the next. */
const OPEN_KEY = 'chat.doc';
/** The origin of edits typed here: what undo takes back. */
const TYPED = 'typed here';

/** The document on screen, or null. */
let open = null;

/** Opens document `name` of `room` in the Docs panel. */
export function openDoc(room, name = DEFAULT_DOC) {
  showPanel(true);
  if (open?.room === room && open.name === name) {
    $('doc-text').focus();
    return;
  }
  closeDoc();
  const doc = new Y.Doc();
  const text = doc.getText('content');
  const scheme = location.protocol === 'https:' ? 'wss' : 'ws';
  const base = `${scheme}://${location.host}/yjs/${encodeURIComponent(room)}`;
  const provider = new WebsocketProvider(base, encodeURIComponent(name), doc, {
    params: { session: sessionToken() ?? '' },
    // Every tab through the server: one path, whatever the browser.
    disableBc: true,
  });
  const undo = new Y.UndoManager(text, { trackedOrigins: new Set([TYPED]), captureTimeout: 600 });
  open = {
    room, name, doc, text, provider, undo,
    status: 'connecting', refused: null, offline: false, preview: false,
  };
  localStorage.setItem(OPEN_KEY, JSON.stringify({ room, name }));
  $('doc-title').textContent = `#${room} / ${name}`;
  $('doc-name').value = '';
  const area = $('doc-text');
  area.value = '';
  area.readOnly = true;
  text.observe((event, txn) => {
    if (txn.origin !== TYPED) {
      spliceIn(event.delta);
    }
    renderSoon();
  });
  provider.on('status', ({ status }) => {
    if (open?.provider === provider) {
      open.status = status;
      renderStatus();
    }
  });
  provider.on('sync', (synced) => {
    if (open?.provider === provider && synced) {
      area.readOnly = false;
      renderStatus();
    }
  });
  provider.on('closed', ({ code, reason }) => {
    if (open?.provider === provider) {
      open.refused = { code, reason };
      renderStatus();
    }
  });
  provider.awareness.on('change', () => renderSoon());
  sayWhoIAm();
  renderStatus();
  renderSoon();
}

/** Closes the document on screen (its edits are on the server, or lost with the page if never sent). */
export function closeDoc() {
  if (!open) {
    return;
  }
  open.provider.destroy();
  open.undo.destroy();
  open.doc.destroy();
  open = null;
  $('doc-text').value = '';
  $('doc-carets').replaceChildren();
  $('doc-people').replaceChildren();
}

/** The panel shown or hidden; hiding it closes the document. */
export function showPanel(shown) {
  $('docs').hidden = !shown;
  $('app').classList.toggle('with-docs', shown);
  $('docs-toggle').setAttribute('aria-expanded', String(shown));
  if (!shown) {
    closeDoc();
    localStorage.removeItem(OPEN_KEY);
  }
}

/**
 * The session is (again) in `room`: the document open at the last visit
 * comes back once its room is joined, and the document of that room,
 * refused while the session was not in it (or with a token since
 * replaced), is opened again.
 */
export function docsJoined(room) {
  if (!open) {
    const saved = savedDoc();
    if (saved?.room === room) {
      openDoc(saved.room, saved.name);
    }
    return;
  }
  if (open.room !== room) {
    return;
  }
  sayWhoIAm();
  const token = sessionToken();
  const stale = open.provider.params.session !== token;
  open.provider.params.session = token ?? '';
  if (open.refused?.code === 4403 || (stale && open.refused)) {
    open.refused = null;
    open.provider.connect();
    renderStatus();
  }
}

/** The document open at the last visit: { room, name }, or null. */
function savedDoc() {
  try {
    const saved = JSON.parse(localStorage.getItem(OPEN_KEY) || 'null');
    return typeof saved?.room === 'string' && typeof saved.name === 'string' ? saved : null;
  } catch (_) {
    return null;
  }
}

/** The session's token: documents open for the session. */
function sessionToken() {
  return state.connection?.session?.token ?? localStorage.getItem(SESSION_KEY);
}

/** Our name and colour, as others see them on our caret. */
function sayWhoIAm() {
  if (!open || !state.nick) {
    return;
  }
  const hue = nickHue(state.nick);
  open.provider.awareness.setLocalStateField('user', {
    name: state.nick, color: `hsl(${hue} 70% 42%)`, colorLight: `hsl(${hue} 70% 42% / .25)`,
  });
}

// What is typed: the difference from the document's text, as one edit.
// Its start is at most where the caret was (for a key typed after the same
// letter, the edit is where it was typed, which matters when others type
// at that place at the same time).
function typed() {
  if (!open) {
    return;
  }
  const area = $('doc-text');
  const now = area.value;
  const was = open.text.toString();
  if (now === was) {
    return;
  }
  const grew = now.length - was.length;
  let start = 0;
  const limit = Math.min(was.length, now.length, Math.max(0, area.selectionEnd - Math.max(grew, 0)));
  while (start < limit && now.charCodeAt(start) === was.charCodeAt(start)) {
    start += 1;
  }
  let end = 0;
  while (end < was.length - start && end < now.length - start
    && now.charCodeAt(now.length - 1 - end) === was.charCodeAt(was.length - 1 - end)) {
    end += 1;
  }
  open.doc.transact(() => {
    const removed = was.length - start - end;
    if (removed > 0) {
      open.text.delete(start, removed);
    }
    const inserted = now.slice(start, now.length - end);
    if (inserted) {
      open.text.insert(start, inserted);
    }
  }, TYPED);
  tellCaret();
}

// What others typed (or undo took back), spliced into the textarea so
// that the caret and selection stay where they were in the text.
function spliceIn(delta) {
  const area = $('doc-text');
  const { scrollTop } = area;
  let at = 0;
  for (const op of delta) {
    if (op.retain) {
      at += op.retain;
    } else if (op.insert) {
      const inserted = typeof op.insert === 'string' ? op.insert : '';
      area.setRangeText(inserted, at, at, 'preserve');
      at += inserted.length;
    } else if (op.delete) {
      area.setRangeText('', at, at + op.delete, 'preserve');
    }
  }
  // A textarea keeps no carriage return: if the text holds one, it is
  // shown whole again.
  if (area.value.length !== open.text.length) {
    const { selectionStart, selectionEnd } = area;
    area.value = open.text.toString();
    area.setSelectionRange(selectionStart, selectionEnd);
  }
  area.scrollTop = scrollTop;
}

/** Where our caret and selection are, for the others (as positions in the CRDT, which survive their edits). */
function tellCaret() {
  if (!open || document.activeElement !== $('doc-text')) {
    return;
  }
  const area = $('doc-text');
  const backward = area.selectionDirection === 'backward';
  const [anchor, head] = backward
    ? [area.selectionEnd, area.selectionStart]
    : [area.selectionStart, area.selectionEnd];
  const current = open.provider.awareness.getLocalState()?.cursor;
  const relative = (index) => Y.createRelativePositionFromTypeIndex(open.text, index);
  const was = current && [current.anchor, current.head].map((p) => absolute(p));
  if (was && was[0] === anchor && was[1] === head) {
    return;
  }
  open.provider.awareness.setLocalStateField('cursor', { anchor: relative(anchor), head: relative(head) });
}

/** An index in the text of a relative position as awareness carries it (JSON), or null. */
function absolute(json) {
  try {
    const position = Y.createAbsolutePositionFromRelativePosition(Y.createRelativePositionFromJSON(json), open.doc);
    return position && position.type === open.text ? position.index : null;
  } catch (_) {
    return null;
  }
}

let renderQueued = false;

function renderSoon() {
  if (!renderQueued) {
    renderQueued = true;
    requestAnimationFrame(() => {
      renderQueued = false;
      renderCarets();
      renderPeople();
      if (open?.preview) {
        renderMarkdown(open.text.toString(), $('doc-preview'));
      }
    });
  }
}

/** Who else is in the document: their awareness states with a name. */
function others() {
  if (!open) {
    return [];
  }
  const people = [];
  for (const [client, said] of open.provider.awareness.getStates()) {
    if (client !== open.doc.clientID && typeof said?.user?.name === 'string') {
      people.push({ client, name: said.user.name, cursor: said.cursor });
    }
  }
  return people;
}

/** "3 people here": each editor once, in their colour, oneself first. */
function renderPeople() {
  const list = $('doc-people');
  if (!open) {
    list.replaceChildren();
    return;
  }
  const names = [...new Set(others().map((p) => p.name))].filter((n) => n !== state.nick).sort();
  const count = names.length + 1;
  const chip = (name, you) => {
    const item = document.createElement('span');
    item.className = 'doc-person';
    item.style.setProperty('--hue', String(nickHue(name)));
    item.textContent = you ? `${name} (you)` : name;
    return item;
  };
  const label = document.createElement('span');
  label.textContent = count === 1 ? 'only you here' : `${count} people here:`;
  list.replaceChildren(label, ...(count > 1 ? [chip(state.nick ?? 'you', true), ...names.map((n) => chip(n, false))] : []));
}

/**
 * Others' carets and selections, drawn in a copy of the text that lies
 * exactly under the textarea (same font, wrapping and scroll), with the
 * text itself transparent.
 */
function renderCarets() {
  const mirror = $('doc-carets');
  if (!open) {
    mirror.replaceChildren();
    return;
  }
  const value = $('doc-text').value;
  const marks = [];
  for (const person of others()) {
    if (!person.cursor) {
      continue;
    }
    const anchor = absolute(person.cursor.anchor);
    const head = absolute(person.cursor.head);
    if (anchor === null || head === null) {
      continue;
    }
    marks.push({
      name: person.name, hue: nickHue(person.name),
      from: Math.min(anchor, head, value.length), to: Math.min(Math.max(anchor, head), value.length),
      head: Math.min(head, value.length),
    });
  }
  const cuts = [...new Set([0, value.length, ...marks.flatMap((m) => [m.from, m.to, m.head])])].sort((a, b) => a - b);
  const nodes = [];
  for (let n = 0; n < cuts.length; n += 1) {
    const at = cuts[n];
    for (const mark of marks.filter((m) => m.head === at)) {
      const caret = document.createElement('span');
      caret.className = 'doc-caret';
      caret.dataset.nick = mark.name;
      caret.style.setProperty('--hue', String(mark.hue));
      nodes.push(caret);
    }
    const next = cuts[n + 1];
    if (next === undefined) {
      break;
    }
    const piece = value.slice(at, next);
    const over = marks.find((m) => m.from <= at && next <= m.to && m.from < m.to);
    if (over) {
      const selection = document.createElement('span');
      selection.className = 'doc-selection';
      selection.style.setProperty('--hue', String(over.hue));
      selection.textContent = piece;
      nodes.push(selection);
    } else {
      nodes.push(piece);
    }
  }
  // A last empty line is a line too.
  nodes.push('\u200b');
  mirror.replaceChildren(...nodes);
  mirror.scrollTop = $('doc-text').scrollTop;
}

function renderStatus() {
  const status = $('doc-status');
  if (!open) {
    status.textContent = '';
    return;
  }
  let text;
  let bad = false;
  const { refused } = open;
  if (refused) {
    bad = true;
    text = {
      4403: `not open to you: ${refused.reason}. Join #${open.room} to edit it.`,
      4413: `a change was refused (${refused.reason}); it is kept only here. Reload the document to go on.`,
      4400: `refused: ${refused.reason}. Reload the document to go on.`,
    }[refused.code] ?? `closed: ${refused.reason}`;
  } else if (open.offline || open.status === 'disconnected') {
    bad = true;
    text = 'offline — your edits are kept here and merge when the connection is back';
  } else if (open.status === 'connected' && open.provider.synced) {
    text = 'live';
  } else {
    text = 'connecting…';
  }
  status.textContent = text;
  status.classList.toggle('offline', bad);
  $('doc-reload').hidden = !(refused && refused.code !== 4403);
}

/** Drops what this page holds of the document and reads it from the server again. */
function reloadDoc() {
  if (open) {
    const { room, name } = open;
    closeDoc();
    openDoc(room, name);
  }
}

function runUndo(redo) {
  if (!open) {
    return;
  }
  if (redo) {
    open.undo.redo();
  } else {
    open.undo.undo();
  }
}

function togglePreview() {
  if (!open) {
    return;
  }
  open.preview = !open.preview;
  $('doc-preview').hidden = !open.preview;
  $('doc-editor').hidden = open.preview;
  $('doc-preview-toggle').setAttribute('aria-pressed', String(open.preview));
  renderSoon();
}

/** The panel's controls; `current` says which room is on screen. */
export function setUpDocs(current) {
  const area = $('doc-text');
  area.addEventListener('input', typed);
  for (const event of ['select', 'keyup', 'mouseup', 'focus']) {
    area.addEventListener(event, () => tellCaret());
  }
  area.addEventListener('blur', () => open?.provider.awareness.setLocalStateField('cursor', null));
  area.addEventListener('scroll', () => {
    $('doc-carets').scrollTop = area.scrollTop;
  }, { passive: true });
  // Undo and redo are the document's (one's own edits only), not the
  // textarea's, which knows nothing of what others typed.
  area.addEventListener('keydown', (event) => {
    const key = event.key.toLowerCase();
    if ((event.ctrlKey || event.metaKey) && !event.altKey && (key === 'z' || key === 'y')) {
      event.preventDefault();
      runUndo(key === 'y' || event.shiftKey);
    }
  });
  area.addEventListener('beforeinput', (event) => {
    if (event.inputType === 'historyUndo' || event.inputType === 'historyRedo') {
      event.preventDefault();
      runUndo(event.inputType === 'historyRedo');
    }
  });
  new ResizeObserver(() => renderSoon()).observe(area);
  $('doc-undo').addEventListener('click', () => runUndo(false));
  $('doc-redo').addEventListener('click', () => runUndo(true));
  $('doc-preview-toggle').addEventListener('click', togglePreview);
  $('doc-reload').addEventListener('click', reloadDoc);
  $('doc-close').addEventListener('click', () => showPanel(false));
  $('docs-toggle').addEventListener('click', () => {
    if ($('docs').hidden) {
      const room = current();
      if (room && !room.startsWith('@')) {
        openDoc(room);
      }
    } else {
      showPanel(false);
    }
  });
  $('doc-open-form').addEventListener('submit', (event) => {
    event.preventDefault();
    const name = $('doc-name').value.trim();
    const room = open?.room ?? current();
    if (name && room && !room.startsWith('@')) {
      openDoc(room, name);
    }
  });
  window.addEventListener('offline', () => setOffline(true));
  window.addEventListener('online', () => setOffline(false));
}

/** Offline by choice (or the browser's word): edits stay here until back. */
function setOffline(offline) {
  if (!open) {
    return;
  }
  open.offline = offline;
  if (offline) {
    open.provider.disconnect();
  } else {
    open.provider.connect();
  }
  renderStatus();
}

/** For the browser tests and the console. */
export const docsApi = {
  text: () => open?.text.toString() ?? null,
  synced: () => Boolean(open?.provider.synced),
  status: () => $('doc-status').textContent,
  offline: () => setOffline(true),
  online: () => setOffline(false),
  people: () => others().map((p) => p.name),
  carets: () => [...$('doc-carets').querySelectorAll('.doc-caret')].map((c) => c.dataset.nick),
};
