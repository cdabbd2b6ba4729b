// Shared documents (docs/protocol.md, "Shared documents"): the Docs panel.
// A room's document is a Yjs document on a WebSocket of its own,
// /yjs/ROOM/DOC?session=TOKEN, through y-websocket's provider (yjs.js: the
// pinned Yjs and y-websocket, bundled by scripts/build-vendor). Its text
// ('content', as `chat doc` and any Yjs client read it) is bound to a
// textarea: what is typed becomes one CRDT edit per input, what others
// type is spliced in around the caret. Other people's carets and
// selections are drawn behind the text in their nick's colour; undo and
// redo take back one's own edits only; offline, edits stay in the Yjs
// document and merge when the connection is back. A page on the HTTP
// fallback opens its documents over the fallback too (EventStreamSocket).

import { WebsocketProvider, Y } from './yjs.js';
import { EventStreamSocket } from './connection.js';
import { $, formatSize, nickHue } from './common.js';
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

/** Requests of the panel (create, rename, delete) by id: { room, open }. */
const asked = new Map();

/** The room's document list, as the server tells it: name -> entry. */
function listOf(room) {
  const known = state.rooms.get(room);
  if (known && !known.docs) {
    known.docs = new Map();
  }
  return known?.docs ?? new Map();
}

/** The document `/doc` and the Docs button open: the one edited last, or the room's notes. */
export function defaultDoc(room) {
  const docs = [...listOf(room).values()].sort((a, b) => b.edited_at - a.edited_at);
  return docs[0]?.name ?? DEFAULT_DOC;
}

/** `joined`: the room's list, and whether it is read-only to us. */
export function docsListed(frame) {
  const room = state.rooms.get(frame.room);
  if (room) {
    room.docs = new Map((frame.docs || []).map((doc) => [doc.name, doc]));
    room.docsReadOnly = Boolean(frame.docs_read_only);
  }
  renderDocList();
}

/** `doc`: a change to a room's list; what the panel asked for, done. */
export function docChanged(frame) {
  const docs = listOf(frame.room);
  if (frame.action === 'deleted') {
    docs.delete(frame.doc.name);
  } else {
    docs.set(frame.doc.name, frame.doc);
  }
  const ask = asked.get(frame.id);
  asked.delete(frame.id);
  if (open?.room === frame.room && open.name === frame.doc.name && frame.action === 'deleted') {
    open.refused = { code: 4404, reason: `${frame.by} deleted it` };
    renderStatus();
  }
  if (ask?.open && frame.action === 'created') {
    openDoc(frame.room, frame.doc.name);
  }
  renderDocList();
}

/** `doc_versions`: the open document's past versions, each with a Restore button. */
export function docVersions(frame) {
  const list = $('doc-versions');
  if (!open || frame.room !== open.room || frame.doc !== open.name) {
    return;
  }
  asked.delete(frame.id);
  const items = frame.versions.map((version) => {
    const item = document.createElement('li');
    item.dataset.version = String(version.version);
    const when = document.createElement('time');
    when.dateTime = new Date(version.ts).toISOString();
    when.textContent = new Date(version.ts).toLocaleString();
    const size = document.createElement('span');
    size.className = 'doc-meta';
    size.textContent = formatSize(version.bytes);
    const restore = document.createElement('button');
    restore.type = 'button';
    restore.className = 'quiet';
    restore.textContent = 'Restore';
    restore.title = 'Make the document as it was then (a new edit everyone sees; the text now is kept as a version)';
    restore.addEventListener('click', () => {
      ask({ type: 'doc_restore', room: open.room, doc: open.name, version: version.version }, open.room);
      showVersions(false);
    });
    item.append(when, size, restore);
    return item;
  });
  if (!items.length) {
    const none = document.createElement('li');
    none.textContent = 'No versions kept yet: one is kept as you edit, at most every 5 minutes, and when the last editor leaves.';
    items.push(none);
  }
  list.replaceChildren(...items);
  list.hidden = false;
}

function showVersions(shown) {
  $('doc-versions').hidden = !shown;
  $('doc-history').setAttribute('aria-expanded', String(shown));
  if (shown && open) {
    ask({ type: 'doc_versions', room: open.room, doc: open.name }, open.room);
  }
}

/** An `error` answering the panel: shown there. Whether it was one. */
export function docRefused(frame) {
  if (!asked.has(frame.id)) {
    return false;
  }
  asked.delete(frame.id);
  const status = $('doc-status');
  status.textContent = frame.message;
  status.classList.add('offline');
  return true;
}

/**
 * Opens the document of `room` titled or named `typed`; with no such
 * document, creates one titled so (and opens it once the server has it).
 */
export function openOrCreate(room, typed) {
  const lower = typed.toLowerCase();
  const found = [...listOf(room).values()].find((d) => d.title.toLowerCase() === lower || d.name === typed);
  if (found) {
    openDoc(room, found.name);
  } else if (/^[a-z0-9_-]{1,64}$/.test(typed)) {
    // A name: opened (and listed by the server at its first edit).
    openDoc(room, typed);
  } else {
    showPanel(true);
    ask({ type: 'doc_create', room, title: typed }, room, { open: true });
  }
}

/** Sends a list request for the panel; `then` says what to do with its answer. */
function ask(frame, room, then = {}) {
  if (!state.connection) {
    return;
  }
  const id = state.connection.session.newId();
  asked.set(id, { room, ...then });
  state.connection.send(frame, id);
}

/** When, for people: "just now", "5 min ago", "3 h ago", or the date. */
function ago(ms) {
  const minutes = Math.floor((Date.now() - ms) / 60000);
  if (minutes < 1) {
    return 'just now';
  }
  if (minutes < 60) {
    return `${minutes} min ago`;
  }
  if (minutes < 24 * 60) {
    return `${Math.floor(minutes / 60)} h ago`;
  }
  return new Date(ms).toLocaleDateString();
}

/** The list of the panel's room: each document, who edited it last and when. */
function renderDocList() {
  const list = $('doc-list');
  const room = open?.room;
  if (!room) {
    list.replaceChildren();
    return;
  }
  const docs = [...listOf(room).values()].sort((a, b) => a.title.localeCompare(b.title));
  list.replaceChildren(...docs.map((doc) => {
    const item = document.createElement('li');
    item.dataset.name = doc.name;
    if (doc.name === open.name) {
      item.setAttribute('aria-current', 'true');
    }
    const button = document.createElement('button');
    button.type = 'button';
    button.className = 'doc-open';
    button.textContent = doc.title;
    button.title = `/doc ${doc.name}`;
    button.addEventListener('click', () => openDoc(room, doc.name));
    const meta = document.createElement('span');
    meta.className = 'doc-meta';
    meta.textContent = `${doc.edited_by} · ${ago(doc.edited_at)}`;
    item.append(button, meta);
    return item;
  }));
  const entry = listOf(room).get(open.name);
  $('doc-title').textContent = `#${room} / ${entry?.title ?? open.name}`;
  const readOnly = Boolean(state.rooms.get(room)?.docsReadOnly);
  $('doc-rename').hidden = readOnly || !entry;
  $('doc-delete').hidden = readOnly || !entry;
}

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
  const fallback = state.connection?.link?.transport === 'sse';
  const provider = new WebsocketProvider(base, encodeURIComponent(name), doc, {
    params: { session: sessionToken() ?? '' },
    // Every tab through the server: one path, whatever the browser.
    disableBc: true,
    // Where the chat's WebSocket cannot get through, neither can this one.
    ...(fallback ? { WebSocketPolyfill: EventStreamSocket } : {}),
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
      area.readOnly = Boolean(state.rooms.get(room)?.docsReadOnly);
      renderStatus();
    }
  });
  provider.on('closed', ({ code, reason }) => {
    // (Deleted: the room's `doc` may have said by whom already.)
    if (open?.provider === provider && open.refused?.code !== 4404) {
      open.refused = { code, reason };
      renderStatus();
    }
  });
  provider.awareness.on('change', () => renderSoon());
  sayWhoIAm();
  renderStatus();
  renderDocList();
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
  $('doc-versions').hidden = true;
  $('doc-history').setAttribute('aria-expanded', 'false');
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
      4404: `this document is gone: ${refused.reason}.`,
    }[refused.code] ?? `closed: ${refused.reason}`;
  } else if (open.offline || open.status === 'disconnected') {
    bad = true;
    text = 'offline — your edits are kept here and merge when the connection is back';
  } else if (open.status === 'connected' && open.provider.synced) {
    text = state.rooms.get(open.room)?.docsReadOnly ? 'live, read-only' : 'live';
  } else {
    text = 'connecting…';
  }
  status.textContent = text;
  status.classList.toggle('offline', bad);
  $('doc-reload').hidden = !(refused && refused.code !== 4403 && refused.code !== 4404);
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
        openDoc(room, defaultDoc(room));
      }
    } else {
      showPanel(false);
    }
  });
  // A title (or name) listed opens it; another creates it.
  $('doc-open-form').addEventListener('submit', (event) => {
    event.preventDefault();
    const typed = $('doc-name').value.trim();
    const room = open?.room ?? current();
    if (typed && room && !room.startsWith('@')) {
      openOrCreate(room, typed);
      $('doc-name').value = '';
    }
  });
  $('doc-rename').addEventListener('click', () => {
    const form = $('doc-rename-form');
    form.hidden = !form.hidden;
    if (!form.hidden && open) {
      $('doc-title-input').value = listOf(open.room).get(open.name)?.title ?? open.name;
      $('doc-title-input').select();
    }
  });
  $('doc-rename-form').addEventListener('submit', (event) => {
    event.preventDefault();
    const title = $('doc-title-input').value.trim();
    if (open && title) {
      ask({ type: 'doc_rename', room: open.room, doc: open.name, title }, open.room);
      $('doc-rename-form').hidden = true;
    }
  });
  // Deleting asks twice (no dialog: the second click within 5 s).
  let deleteArmed = null;
  $('doc-delete').addEventListener('click', () => {
    const button = $('doc-delete');
    if (!open) {
      return;
    }
    if (!deleteArmed) {
      button.textContent = 'Delete for everyone?';
      deleteArmed = setTimeout(() => {
        deleteArmed = null;
        button.textContent = 'Delete';
      }, 5000);
      return;
    }
    clearTimeout(deleteArmed);
    deleteArmed = null;
    button.textContent = 'Delete';
    ask({ type: 'doc_delete', room: open.room, doc: open.name }, open.room);
  });
  $('doc-history').addEventListener('click', () => showVersions($('doc-versions').hidden));
  // "5 min ago" moves on.
  setInterval(renderDocList, 30_000);
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
  list: () => [...$('doc-list').querySelectorAll('li')].map((li) => li.dataset.name),
  versions: () => [...$('doc-versions').querySelectorAll('li[data-version]')].map((li) => Number(li.dataset.version)),
  title: () => $('doc-title').textContent,
  carets: () => [...$('doc-carets').querySelectorAll('.doc-caret')].map((c) => c.dataset.nick),
};
