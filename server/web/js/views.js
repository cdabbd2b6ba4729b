// Rendering: the lists of rooms, members and messages, the banner and the
// status, the login screen. Everything a peer sent goes in as textContent,
// never as HTML.

import { $ } from './common.js';
import { attachmentElement } from './files.js';
import { directView, markRead, pushLine, state, viewOf } from './state.js';

/** Adds a line to a view, and to the screen if it is the view shown. */
export function addLine(name, line) {
  if (pushLine(name, line) && name === state.current) {
    appendLine(line);
  }
}

export function showBanner(text) {
  const banner = $('banner');
  banner.textContent = text;
  banner.hidden = !text;
}

export function setStatus(text, offline) {
  const status = $('status');
  status.textContent = text;
  status.classList.toggle('offline', offline);
}

export function showLogin(error) {
  $('app').hidden = true;
  $('login').hidden = false;
  $('login-error').textContent = error || '';
  $('nick-input').focus();
}

export function showApp() {
  $('login').hidden = true;
  $('app').hidden = false;
}

function lineElement(line) {
  const li = document.createElement('li');
  li.className = line.kind + (line.mention ? ' mention' : '');
  if (line.seq) {
    li.dataset.seq = String(line.seq);
  }
  if (line.ts) {
    const time = document.createElement('time');
    time.className = 'time';
    const date = new Date(line.ts);
    time.dateTime = date.toISOString();
    time.textContent = date.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
    li.append(time);
  }
  if (line.kind === 'action') {
    li.append(document.createTextNode(`* ${line.from} ${line.text}`));
  } else if (line.from) {
    const from = document.createElement('span');
    from.className = 'from';
    from.textContent = line.from;
    const text = document.createElement('span');
    text.className = 'text';
    text.textContent = line.text;
    li.append(from, text);
  } else {
    li.append(document.createTextNode(line.text));
  }
  if (line.attachment) {
    li.append(attachmentElement(line.attachment));
  }
  return li;
}

function dayOf(ts) {
  return new Date(ts).toDateString();
}

function daySeparator(ts) {
  const li = document.createElement('li');
  li.className = 'day';
  li.setAttribute('role', 'separator');
  li.textContent = new Date(ts).toLocaleDateString([], {
    weekday: 'long', year: 'numeric', month: 'long', day: 'numeric',
  });
  return li;
}

function appendLine(line) {
  const list = $('messages');
  const atBottom = list.scrollHeight - list.scrollTop - list.clientHeight < 40;
  if (line.ts && list.dataset.day !== dayOf(line.ts)) {
    list.dataset.day = dayOf(line.ts);
    list.append(daySeparator(line.ts));
  }
  list.append(lineElement(line));
  if (atBottom) {
    list.scrollTop = list.scrollHeight;
  }
}

export function renderMessages() {
  const list = $('messages');
  list.replaceChildren();
  list.dataset.day = '';
  const view = viewOf(state.current);
  const title = !state.current
    ? 'no room — join one'
    : state.current.startsWith('@') ? `${state.current.slice(1)} (direct messages)` : `#${state.current}`;
  $('room-title').textContent = title;
  const first = view ? view.lines.find((l) => l.seq) : null;
  const pageable = !state.current?.startsWith('@') || Boolean(view?.key);
  $('older').hidden = !view || !pageable || !first || first.seq <= 1 || view.complete;
  if (view) {
    for (const line of view.lines) {
      if (line.ts && list.dataset.day !== dayOf(line.ts)) {
        list.dataset.day = dayOf(line.ts);
        list.append(daySeparator(line.ts));
      }
      list.append(lineElement(line));
    }
    list.scrollTop = list.scrollHeight;
  }
  renderTyping();
}

function viewButton(name, label, view) {
  const li = document.createElement('li');
  li.className = 'room-item';
  const button = document.createElement('button');
  button.type = 'button';
  button.className = 'room' + (view.mentioned ? ' mentioned' : '');
  button.textContent = label;
  button.setAttribute('aria-current', String(name === state.current));
  button.addEventListener('click', () => switchRoom(name));
  if (view.unread > 0) {
    const badge = document.createElement('span');
    badge.className = 'badge';
    badge.textContent = String(view.unread);
    badge.setAttribute('aria-label', `${view.unread} unread`);
    button.append(badge);
  }
  const close = document.createElement('button');
  close.type = 'button';
  close.className = 'part';
  close.textContent = '×';
  li.append(button, close);
  return { li, close };
}

export function renderRooms() {
  const list = $('room-list');
  list.replaceChildren();
  for (const [name, room] of state.rooms) {
    const { li, close } = viewButton(name, `#${name}`, room);
    close.setAttribute('aria-label', `leave ${name}`);
    close.addEventListener('click', () => state.connection?.send({ type: 'leave', room: name }));
    list.append(li);
  }
  const directs = $('direct-list');
  directs.replaceChildren();
  $('directs-title').hidden = state.directs.size === 0;
  for (const [peer, view] of state.directs) {
    const { li, close } = viewButton(`@${peer}`, peer, view);
    close.setAttribute('aria-label', `close the conversation with ${peer}`);
    close.addEventListener('click', () => {
      state.directs.delete(peer);
      if (state.current === `@${peer}`) {
        switchRoom(state.rooms.keys().next().value || null);
      }
      renderRooms();
    });
    directs.append(li);
  }
}

export function renderMembers() {
  const list = $('members');
  list.replaceChildren();
  const current = state.current;
  const names = !current
    ? []
    : current.startsWith('@')
      ? [state.nick, current.slice(1)]
      : [...(state.rooms.get(current)?.members || [])];
  names.sort((a, b) => a.toLowerCase().localeCompare(b.toLowerCase()));
  const away = (!current || current.startsWith('@')) ? new Set() : state.rooms.get(current)?.away || new Set();
  for (const name of names) {
    const li = document.createElement('li');
    if (away.has(name)) {
      li.classList.add('away');
      li.title = `${name} is away`;
    }
    if (name === state.nick) {
      li.textContent = `${name} (you)`;
    } else {
      // A member's name opens a conversation with them.
      const button = document.createElement('button');
      button.type = 'button';
      button.className = 'member';
      button.textContent = name;
      button.setAttribute('aria-label', `message ${name} directly`);
      button.addEventListener('click', () => openDirect(name));
      li.append(button);
    }
    list.append(li);
  }
}

export function renderTyping() {
  const names = [...state.typing.keys()]
    .map((key) => key.split('\n'))
    .filter(([room]) => room === state.current)
    .map(([, nick]) => nick);
  $('typing').textContent =
    names.length === 0 ? '' : names.length === 1 ? `${names[0]} is typing…` : `${names.join(', ')} are typing…`;
}

export function openDirect(peer) {
  directView(peer);
  switchRoom(`@${peer}`);
}

export function switchRoom(name) {
  state.current = name;
  const view = viewOf(name);
  if (view) {
    view.unread = 0;
    view.mentioned = false;
    markRead(view);
  }
  renderRooms();
  renderMessages();
  renderMembers();
  $('text').focus();
}
