// Rendering: the lists of rooms, members and messages, the banner and the
// status, the login screen. Everything a peer sent goes in as textContent,
// never as HTML.

import { $, nickHue } from './common.js';
import { attachmentElement } from './files.js';
import { directView, markRead, pushLine, state, viewOf } from './state.js';

/** Adds a line to a view, and to the screen if it is the view shown. */
export function addLine(name, line) {
  const before = pushLine(name, line);
  if (before !== undefined && name === state.current) {
    appendLine(line, before);
    tellRead();
  }
}

/**
 * What is shown is read: the session's other tabs and devices are told
 * (once per newest message), and clear their unread counts too.
 */
export function tellRead() {
  const name = state.current;
  const view = viewOf(name);
  if (!view || document.hidden || state.connection?.session.phase.name !== 'live') {
    return;
  }
  const seq = Math.max(0, ...view.lines.filter((l) => !l.pending).map((l) => l.seq || 0));
  if (!seq || state.toldRead.get(name) >= seq) {
    return;
  }
  const frame = name.startsWith('@')
    ? view.key && { type: 'read', conversation: view.key, seq }
    : { type: 'read', room: name, seq };
  if (frame) {
    state.toldRead.set(name, seq);
    state.connection.send(frame);
  }
}

/** Shows a line of the current view again (a message sent, or refused). */
export function redrawLine(line) {
  const old = line.element;
  if (old?.isConnected) {
    old.replaceWith(lineElement(line));
  }
}

/** Takes a line off the screen. */
export function removeLine(line) {
  line.element?.remove();
}

/** The banner under the top bar; `retry` offers "Try now". */
export function showBanner(text, { retry = false } = {}) {
  $('banner-text').textContent = text;
  $('retry-now').hidden = !retry;
  $('banner').hidden = !text;
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
  li.className = [line.kind, line.mention && 'mention', line.pending && 'pending', line.failed && 'failed']
    .filter(Boolean).join(' ');
  if (line.seq) {
    li.dataset.seq = String(line.seq);
  }
  const time = document.createElement('time');
  time.className = 'time';
  if (line.ts) {
    const date = new Date(line.ts);
    time.dateTime = date.toISOString();
    time.textContent = date.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
  }
  const from = document.createElement('span');
  from.className = 'from';
  if (line.from) {
    from.textContent = line.kind === 'action' ? `* ${line.from}` : line.from;
    from.style.setProperty('--hue', String(nickHue(line.from)));
  }
  // The text in a column of its own: its lines wrap under it, not under
  // the time.
  const body = document.createElement('div');
  body.className = 'body';
  const text = document.createElement('span');
  text.className = 'text';
  text.append(linkified(line.text || ''));
  body.append(text);
  if (line.deleted) {
    li.classList.add('deleted');
    const note = document.createElement('span');
    note.className = 'state';
    note.textContent = 'message deleted';
    body.append(note);
  } else if (line.edited) {
    const note = document.createElement('span');
    note.className = 'state';
    note.textContent = ' (edited)';
    body.append(note);
  }
  if (line.pending) {
    const note = document.createElement('span');
    note.className = 'state';
    note.textContent = ' 🕓';
    note.title = 'sending…';
    note.setAttribute('aria-label', 'sending');
    body.append(note);
  } else if (line.failed) {
    const note = document.createElement('span');
    note.className = 'state';
    note.textContent = ` — not sent: ${line.failed}`;
    body.append(note);
  }
  if (line.attachment) {
    body.append(attachmentElement(line.attachment, keepFollowing));
  }
  li.append(time, from, body);
  const own = line.seq && line.from === state.nick && !line.deleted && !line.pending
    && state.current && !state.current.startsWith('@');
  if (own) {
    li.append(changeButtons(line));
  }
  line.element = li;
  return li;
}

/** Edit (within the edit window) and Delete, for one's own messages. */
function changeButtons(line) {
  const box = document.createElement('span');
  box.className = 'changes';
  const kinds = Date.now() - line.ts < (state.limits.edit_window_ms || 0) ? ['edit', 'delete'] : ['delete'];
  for (const kind of kinds) {
    const button = document.createElement('button');
    button.type = 'button';
    button.className = 'quiet';
    button.textContent = kind === 'edit' ? 'Edit' : 'Delete';
    button.setAttribute('aria-label', `${kind} your message: ${line.text.slice(0, 40)}`);
    button.addEventListener('click', () => changeWanted({ kind, room: state.current, line }));
    box.append(button);
  }
  return box;
}

/** What Edit and Delete do (composer.js sets it). */
let changeWanted = () => {};

export function onChange(change) {
  changeWanted = change;
}

/** Links in text, as links that open apart from the page; the rest as text. */
function linkified(text) {
  const fragment = document.createDocumentFragment();
  const pattern = /\b(?:https?:\/\/|mailto:)[^\s<>"']+/gi;
  let at = 0;
  for (const match of text.matchAll(pattern)) {
    // Punctuation that ends a sentence is not part of the link.
    const url = match[0].replace(/[.,;:!?)\]]+$/, '');
    let href = null;
    try {
      const parsed = new URL(url);
      href = ['http:', 'https:', 'mailto:'].includes(parsed.protocol) ? parsed.href : null;
    } catch (_) {
      href = null;
    }
    if (!href) {
      continue;
    }
    fragment.append(document.createTextNode(text.slice(at, match.index)));
    const a = document.createElement('a');
    a.href = href;
    a.textContent = url;
    a.target = '_blank';
    a.rel = 'noopener noreferrer';
    fragment.append(a);
    at = match.index + url.length;
  }
  fragment.append(document.createTextNode(text.slice(at)));
  return fragment;
}

function dayOf(ts) {
  return new Date(ts).toDateString();
}

function daySeparator(ts) {
  const li = document.createElement('li');
  li.className = 'day';
  li.textContent = new Date(ts).toLocaleDateString([], {
    weekday: 'long', year: 'numeric', month: 'long', day: 'numeric',
  });
  return li;
}

/** What "Load older messages" does (chat.js sets it). */
let olderWanted = () => {};

export function onOlder(load) {
  olderWanted = load;
}

/** Whether the message list is scrolled to (near) its bottom. */
function atBottom(list) {
  return list.scrollHeight - list.scrollTop - list.clientHeight < 40;
}

/** Keeps the newest in view if the user was there (an image that loaded). */
export function keepFollowing() {
  const list = $('messages');
  if (state.follow) {
    list.scrollTop = list.scrollHeight;
  }
}

/** Scrolls to the newest message. */
export function jumpToNewest() {
  const list = $('messages');
  list.scrollTop = list.scrollHeight;
  onScroll();
}

/** The user scrolled: following again at the bottom. */
export function onScroll() {
  state.follow = atBottom($('messages'));
  if (state.follow) {
    state.unseen = 0;
  }
  renderJump();
}

function renderJump() {
  const jump = $('jump');
  jump.hidden = state.follow;
  jump.textContent = state.unseen ? `Jump to newest (${state.unseen} new)` : 'Jump to newest';
}

function appendLine(line, before) {
  const list = $('messages');
  const element = lineElement(line);
  if (before?.element?.isConnected) {
    list.insertBefore(element, before.element);
  } else {
    if (line.ts && list.dataset.day !== dayOf(line.ts)) {
      list.dataset.day = dayOf(line.ts);
      list.append(daySeparator(line.ts));
    }
    list.append(element);
  }
  if (state.follow) {
    list.scrollTop = list.scrollHeight;
  } else if (line.kind === 'message' || line.kind === 'action') {
    state.unseen += 1;
    renderJump();
  }
}

/**
 * Shows the current view's lines. At the bottom, unless `keepPosition`:
 * then what the user was reading stays where it was (older lines came in
 * above it).
 */
export function renderMessages({ keepPosition = false } = {}) {
  const list = $('messages');
  const fromBottom = list.scrollHeight - list.scrollTop;
  list.replaceChildren();
  list.dataset.day = '';
  const view = viewOf(state.current);
  const title = !state.current
    ? 'no room — join one'
    : state.current.startsWith('@') ? `${state.current.slice(1)} (direct messages)` : `#${state.current}`;
  $('room-title').textContent = title;
  renderTopic();
  const first = view ? view.lines.find((l) => l.seq) : null;
  const pageable = !state.current?.startsWith('@') || Boolean(view?.key);
  if (view && pageable && first && first.seq > 1 && !view.complete) {
    // At the top of the list, scrolling with it: loading older messages
    // does not move what is being read.
    const li = document.createElement('li');
    li.className = 'older-item';
    const button = document.createElement('button');
    button.id = 'older';
    button.type = 'button';
    button.className = 'older quiet';
    button.textContent = 'Load older messages';
    button.addEventListener('click', () => olderWanted());
    li.append(button);
    list.append(li);
  }
  if (view) {
    for (const line of view.lines) {
      if (line.ts && list.dataset.day !== dayOf(line.ts)) {
        list.dataset.day = dayOf(line.ts);
        list.append(daySeparator(line.ts));
      }
      list.append(lineElement(line));
    }
  }
  if (keepPosition) {
    list.scrollTop = list.scrollHeight - fromBottom;
  } else {
    list.scrollTop = list.scrollHeight;
    state.unseen = 0;
  }
  onScroll();
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

/** What the member list showed last, so an unchanged list is not rebuilt. */
let membersShown = null;

export function renderMembers() {
  const list = $('members');
  const current = state.current;
  const room = current && !current.startsWith('@') ? state.rooms.get(current) : null;
  const box = $('member-search');
  box.hidden = !room;
  // A search is for the room it was typed in.
  if (state.memberSearch && state.memberSearch.room !== current) {
    state.memberSearch = null;
    box.value = '';
  }
  const search = room ? state.memberSearch : null;
  let names;
  if (search) {
    names = [...(search.results || [])];
  } else if (!current) {
    names = [];
  } else if (current.startsWith('@')) {
    names = [state.nick, current.slice(1)];
  } else {
    names = [...(room?.members || [])];
  }
  names.sort((a, b) => a.toLowerCase().localeCompare(b.toLowerCase()));
  const away = room?.away || new Set();
  const count = room ? Math.max(room.memberCount ?? 0, room.members.size) : names.length;
  $('members-title').textContent = current ? `Members (${count})` : 'Members';
  $('member-search-status').textContent = !search
    ? ''
    : search.results === null
      ? 'Searching…'
      : !names.length
        ? `No one's nick starts with “${search.prefix}”.`
        : search.more
          ? `The first ${names.length}: type more to narrow it.`
          : `${names.length} found.`;
  // A big room's list comes a page at a time: the rest is fetched as the
  // list is scrolled to its end (or "Show more" is pressed).
  const paged = !search && room && room.members.size < count && !room.membersComplete;
  const moreText = paged ? `Show more (${count - room.members.size} not shown)` : null;
  // A big room's count changes every second: the list is rebuilt only
  // when what it lists changes, so focus and scrolling stay where they are.
  const shown = JSON.stringify([current, state.nick, names, names.map((n) => away.has(n)), Boolean(paged)]);
  if (shown === membersShown && list.isConnected) {
    const more = $('more-members');
    if (more && moreText) {
      more.textContent = moreText;
    }
    return;
  }
  membersShown = shown;
  list.replaceChildren(...names.map((name) => memberItem(name, away.has(name))));
  if (paged) {
    const li = document.createElement('li');
    const more = document.createElement('button');
    more.type = 'button';
    more.className = 'quiet';
    more.id = 'more-members';
    more.textContent = moreText;
    more.addEventListener('click', () => moreMembersWanted(current));
    li.append(more);
    list.append(li);
    membersEnd().observe(more);
  }
}

function memberItem(name, away) {
  const li = document.createElement('li');
  if (away) {
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
  return li;
}

/** Watches the end of the member list: in view, the next page is fetched. */
let endObserver = null;

function membersEnd() {
  if (!endObserver) {
    endObserver = new IntersectionObserver((entries) => {
      if (entries.some((entry) => entry.isIntersecting) && state.current) {
        moreMembersWanted(state.current);
      }
    }, { root: $('members-drawer'), rootMargin: '0px 0px 200px 0px' });
  }
  endObserver.disconnect();
  return endObserver;
}

/** What "Show more" does (chat.js sets it). */
let moreMembersWanted = () => {};

export function onMoreMembers(more) {
  moreMembersWanted = more;
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

/** The current room's topic, under its name. */
export function renderTopic() {
  const room = state.current && !state.current.startsWith('@') ? state.rooms.get(state.current) : null;
  $('room-topic').textContent = room?.topic ?? '';
  $('room-topic').title = room?.topic ?? '';
}

/** The room directory: every room there is, what it is about, a way in. */
export function renderDirectory(rooms) {
  const list = $('directory-list');
  list.replaceChildren();
  $('directory-empty').hidden = rooms.length > 0;
  for (const room of rooms) {
    const li = document.createElement('li');
    const name = document.createElement('strong');
    name.textContent = `#${room.name}`;
    const count = document.createElement('span');
    count.className = 'about';
    count.textContent = room.topic ? `${room.topic} · ${room.members} here` : `${room.members} here`;
    const join = document.createElement('button');
    join.type = 'button';
    join.className = 'join';
    const joined = state.rooms.has(room.name);
    join.textContent = joined ? 'Open' : 'Join';
    join.setAttribute('aria-label', `${joined ? 'open' : 'join'} #${room.name}`);
    join.addEventListener('click', () => {
      $('directory').close();
      directoryJoin(room.name);
    });
    li.append(name, join, count);
    list.append(li);
  }
  if (!$('directory').open) {
    $('directory').showModal();
  }
}

/** What a directory entry does (main.js sets it). */
let directoryJoin = () => {};

export function onDirectoryJoin(join) {
  directoryJoin = join;
}

/** Opens or closes a drawer (a phone's room or member list). */
export function setDrawer(id, open) {
  for (const [drawer, toggle] of [['rooms-drawer', 'rooms-toggle'], ['members-drawer', 'members-toggle']]) {
    const opening = drawer === id && open;
    $(drawer).classList.toggle('open', opening);
    $(toggle).setAttribute('aria-expanded', String(opening));
  }
  $('scrim').hidden = !open;
  if (open) {
    $(id).querySelector('button, input')?.focus();
  }
}

export function closeDrawers() {
  setDrawer(null, false);
}

export function switchRoom(name) {
  closeDrawers();
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
  tellRead();
  $('text').focus();
}
