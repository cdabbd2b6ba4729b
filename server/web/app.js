// The browser chat client: plain JavaScript on the WebSocket API, speaking
// protocol chat.v1 (docs/protocol.md). Everything a peer sends is rendered
// with textContent, never as HTML.
'use strict';

const NICK_KEY = 'chat.nick';
const TOKEN_KEY = 'chat.token';
// Per tab, so two tabs are two sessions rather than one taking the other
// over; it survives a reload, so a reload resumes.
const SESSION_KEY = 'chat.session';
const ROOMS_KEY = 'chat.rooms';
const TYPING_SHOW_MS = 4000;
const TYPING_SEND_MS = 2000;

const $ = (id) => document.getElementById(id);

const state = {
  socket: null,
  nick: null,          // the nick the server confirmed
  wantedNick: null,    // the nick asked for
  token: null,         // the access token, on servers that ask for one
  greeted: false,
  rooms: new Map(),    // name -> { lines: [], members: Set, lastSeq, unread }
  current: null,
  retry: 0,
  retryTimer: null,
  nextId: 1,
  lastTypingSent: 0,
  switchTo: null,      // a room the user asked to join: show it once joined
  session: sessionStorage.getItem(SESSION_KEY), // token to resume with
  pending: new Map(),  // id -> say/dm frame sent (or typed offline), not yet echoed
  pages: new Map(),    // id of a history request -> { room, floor } still being filled
  typing: new Map(),   // "room\nnick" -> timer
};

function savedRooms() {
  try {
    const rooms = JSON.parse(localStorage.getItem(ROOMS_KEY) || '[]');
    return Array.isArray(rooms) && rooms.length ? rooms.filter((r) => typeof r === 'string') : ['lobby'];
  } catch (_) {
    return ['lobby'];
  }
}

function saveRooms() {
  localStorage.setItem(ROOMS_KEY, JSON.stringify([...state.rooms.keys()]));
}

function newId() {
  return 'w' + (state.nextId++).toString(36) + '-' + Math.random().toString(36).slice(2, 8);
}

function send(frame) {
  if (!state.socket || state.socket.readyState !== WebSocket.OPEN) {
    return false;
  }
  state.socket.send(JSON.stringify(frame));
  return true;
}

// Sends a say or dm, or keeps it for the reconnect. It stays pending until
// its echo comes back, and is re-sent with the same id after a reconnect.
function sendMessage(frame) {
  const id = frame.id || newId();
  const { id: _, ...rest } = frame;
  state.pending.set(id, rest);
  if (state.greeted) {
    send({ ...rest, id });
  } else if (state.current) {
    addLine(state.current, { kind: 'notice', text: 'offline: the message will be sent when the connection is back' });
  }
  return true;
}

// ---- connection -------------------------------------------------------

function connect() {
  clearTimeout(state.retryTimer);
  const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
  const socket = new WebSocket(`${scheme}//${location.host}/ws`, 'chat.v1');
  state.socket = socket;
  setStatus('connecting…', false);
  socket.onopen = () => {
    state.greeted = false;
    // With an access token the token names the nick.
    const hello = state.token
      ? { type: 'hello', token: state.token, id: newId() }
      : { type: 'hello', nick: state.wantedNick, id: newId() };
    if (state.session) {
      hello.session = state.session;
    }
    send(hello);
  };
  socket.onmessage = (event) => {
    let frame;
    try {
      frame = JSON.parse(event.data);
    } catch (_) {
      return;
    }
    handle(frame);
  };
  socket.onerror = () => {
    // onclose follows and schedules the reconnect.
  };
  socket.onclose = (event) => {
    if (state.socket !== socket) {
      return;
    }
    state.socket = null;
    state.greeted = false;
    if (state.wantedNick === null) {
      return; // back at the login form
    }
    if (event.code === 4011) {
      // The access token ran out: a new one is needed to come back.
      state.wantedNick = null;
      state.token = null;
      localStorage.removeItem(TOKEN_KEY);
      setStatus('access token expired', true);
      showLogin('Your access token expired. Enter a new one to come back.');
      return;
    }
    if (event.code === 4009) {
      // Another tab or device resumed this session: reconnecting would
      // take it back and forth.
      setStatus('this session was opened elsewhere', true);
      showBanner('This chat was opened in another window. Reload to use it here.');
      return;
    }
    // A restarting server (1012) says when to come back, spreading its
    // clients over a window; otherwise full jitter does the spreading.
    const asked = event.code === 1012 ? retryAfter(event.reason) : null;
    const delay = asked !== null
      ? Math.min(asked, 30000)
      : Math.min(30000, 500 * 2 ** state.retry) * Math.random();
    state.retry += 1;
    const restarting = event.code === 1012 || event.code === 1001;
    const why = restarting ? 'server restarting' : 'connection lost';
    setStatus(`${why} — reconnecting`, true);
    const when = asked !== null ? ` in ${(delay / 1000).toFixed(1)} s` : '…';
    showBanner(`Connection lost (${why}). Reconnecting${when} Messages you send meanwhile go out once it is back.`);
    state.retryTimer = setTimeout(connect, delay);
  };
}

// The reconnect delay a close reason asks for ("service restart;
// retry_ms=3200"), in milliseconds, or null.
function retryAfter(reason) {
  const match = /(?:^|;)\s*retry_ms=(\d+)/.exec(reason || '');
  return match ? Number(match[1]) : null;
}

function showBanner(text) {
  const banner = $('banner');
  banner.textContent = text;
  banner.hidden = !text;
}

function setStatus(text, offline) {
  const status = $('status');
  status.textContent = text;
  status.classList.toggle('offline', offline);
}

// ---- frames from the server -------------------------------------------

function handle(frame) {
  switch (frame.type) {
    case 'welcome': {
      state.greeted = true;
      state.retry = 0;
      state.nick = frame.nick;
      state.session = frame.session;
      sessionStorage.setItem(SESSION_KEY, frame.session);
      localStorage.setItem(NICK_KEY, frame.nick);
      $('me').textContent = frame.nick;
      setStatus('connected', false);
      showBanner('');
      showApp();
      // Re-join every room from the last message seen, so the server sends
      // exactly what was missed.
      if (state.rooms.size) {
        for (const [room, known] of state.rooms) {
          send({ type: 'join', room, after: known.lastSeq, id: newId() });
        }
      } else {
        for (const room of savedRooms()) {
          send({ type: 'join', room, id: newId() });
        }
      }
      // Then what was not acknowledged, with its original id: the server
      // answers a message it already has with the original, never twice.
      for (const [id, pending] of state.pending) {
        send({ ...pending, id });
      }
      break;
    }
    case 'joined': {
      const room = roomState(frame.room);
      room.members = new Set(frame.members);
      // A resume owes every message from here on; `joined` carries at most
      // the newest 200, so older ones are paged in with `history`.
      const floor = frame.resume === 'gap' && frame.gap ? frame.gap.to + 1 : room.lastSeq + 1;
      if (frame.resume === 'fresh' && frame.last_seq < room.lastSeq) {
        // The server lost this room's history (an in-memory server that
        // restarted): its numbering starts over.
        room.lastSeq = 0;
        addLine(frame.room, { kind: 'notice', text: 'the server restarted; earlier history is gone' });
      } else if (frame.resume === 'gap' && frame.gap) {
        const lost = frame.gap.to - frame.gap.from + 1;
        addLine(frame.room, { kind: 'notice', text: `${lost} message(s) from while you were away are no longer kept` });
      }
      for (const message of frame.history) {
        addMessage(message, false);
      }
      const first = frame.history.length ? frame.history[0].seq : null;
      if (frame.resume !== 'fresh' && first !== null && first > floor) {
        requestOlder(frame.room, first, floor);
      }
      room.lastSeq = Math.max(room.lastSeq, frame.last_seq);
      saveRooms();
      if (!state.current || !state.rooms.has(state.current) || state.switchTo === frame.room) {
        state.switchTo = null;
        switchRoom(frame.room);
      }
      renderRooms();
      renderMembers();
      break;
    }
    case 'left': {
      state.rooms.delete(frame.room);
      saveRooms();
      if (state.current === frame.room) {
        state.current = state.rooms.keys().next().value || null;
        renderMessages();
      }
      renderRooms();
      renderMembers();
      break;
    }
    case 'message':
      if (frame.id) {
        state.pending.delete(frame.id);
      }
      addMessage(frame, true);
      break;
    case 'presence': {
      const room = state.rooms.get(frame.room);
      if (!room) {
        break;
      }
      if (frame.event === 'join') {
        room.members.add(frame.nick);
        addLine(frame.room, { kind: 'notice', text: `${frame.nick} joined` });
      } else if (frame.event === 'leave') {
        room.members.delete(frame.nick);
        addLine(frame.room, { kind: 'notice', text: `${frame.nick} left` });
      } else if (frame.event === 'nick') {
        room.members.delete(frame.old);
        room.members.add(frame.nick);
        addLine(frame.room, { kind: 'notice', text: `${frame.old} is now known as ${frame.nick}` });
      }
      renderMembers();
      break;
    }
    case 'direct': {
      if (frame.id) {
        state.pending.delete(frame.id);
      }
      const text = frame.from === state.nick ? `→ ${frame.to}: ${frame.text}` : frame.text;
      const target = state.current || [...state.rooms.keys()][0];
      if (target) {
        addLine(target, { kind: 'direct', ts: frame.ts, from: `[dm] ${frame.from}`, text });
      }
      break;
    }
    case 'nick': {
      state.nick = frame.nick;
      state.wantedNick = frame.nick;
      localStorage.setItem(NICK_KEY, frame.nick);
      $('me').textContent = frame.nick;
      for (const room of state.rooms.values()) {
        room.members.delete(frame.old);
        room.members.add(frame.nick);
      }
      if (state.current) {
        addLine(state.current, { kind: 'notice', text: `you are now known as ${frame.nick}` });
      }
      renderMembers();
      break;
    }
    case 'typing':
      showTyping(frame.room, frame.nick);
      break;
    case 'members': {
      const room = state.rooms.get(frame.room);
      if (room) {
        room.members = new Set(frame.members);
        renderMembers();
      }
      if (state.current) {
        addLine(state.current, { kind: 'notice', text: `members of ${frame.room}: ${frame.members.join(', ') || 'none'}` });
      }
      break;
    }
    case 'history': {
      const page = state.pages.get(frame.id);
      if (!page) {
        break;
      }
      state.pages.delete(frame.id);
      insertOlder(page.room, frame.messages.filter((m) => m.seq >= page.floor));
      const first = frame.messages.length ? frame.messages[0].seq : null;
      if (first !== null && first > page.floor) {
        requestOlder(page.room, first, page.floor);
      }
      break;
    }
    case 'rooms':
      if (state.current) {
        const list = frame.rooms.map((r) => `${r.name} (${r.members})`).join(', ');
        addLine(state.current, { kind: 'notice', text: `rooms: ${list || 'none'}` });
      }
      break;
    case 'error':
      handleError(frame);
      break;
    default:
      break; // newer server, unknown frame: ignore
  }
}

function handleError(frame) {
  // A message refused for going too fast is sent again, with the same id,
  // once the server says it may be: pasting a block of lines loses none.
  if (frame.code === 'rate_limited' && frame.id && state.pending.has(frame.id)) {
    const id = frame.id;
    setTimeout(() => {
      const pending = state.pending.get(id);
      if (pending && state.greeted) {
        send({ ...pending, id });
      }
    }, Math.max(frame.retry_after_ms || 0, 50));
    return;
  }
  if (frame.id) {
    state.pending.delete(frame.id);
  }
  const refused = ['nick_taken', 'invalid_nick', 'unauthorized', 'forbidden'];
  if (!state.greeted && refused.includes(frame.code)) {
    if (frame.code === 'unauthorized') {
      state.token = null;
      localStorage.removeItem(TOKEN_KEY);
    }
    // The hello was refused: back to the login form with the reason.
    state.wantedNick = null;
    const socket = state.socket;
    state.socket = null;
    if (socket) {
      socket.close(1000);
    }
    showLogin(frame.message);
    return;
  }
  const target = state.current || [...state.rooms.keys()][0];
  if (target) {
    addLine(target, { kind: 'error', text: `error: ${frame.code}: ${frame.message}` });
  }
}

function roomState(name) {
  let room = state.rooms.get(name);
  if (!room) {
    room = { lines: [], members: new Set(), lastSeq: 0, unread: 0 };
    state.rooms.set(name, room);
  }
  return room;
}

function addMessage(message, live) {
  const room = roomState(message.room);
  // After a reconnect the server resends recent history: keep each seq once.
  if (message.seq <= room.lastSeq) {
    return;
  }
  room.lastSeq = message.seq;
  addLine(message.room, messageLine(message));
  if (live && message.room !== state.current) {
    room.unread += 1;
    renderRooms();
  }
  if (live) {
    clearTyping(message.room, message.from);
  }
}

function requestOlder(room, before, floor) {
  const id = newId();
  state.pages.set(id, { room, floor });
  send({ type: 'history', room, before, limit: 200, id });
}

// Puts messages older than what is shown into their place by seq.
function insertOlder(name, messages) {
  const room = state.rooms.get(name);
  if (!room) {
    return;
  }
  const have = new Set(room.lines.filter((l) => l.seq).map((l) => l.seq));
  for (const message of messages) {
    if (have.has(message.seq)) {
      continue;
    }
    const line = messageLine(message);
    const at = room.lines.findIndex((l) => l.seq && l.seq > message.seq);
    if (at < 0) {
      room.lines.push(line);
    } else {
      room.lines.splice(at, 0, line);
    }
  }
  if (name === state.current) {
    renderMessages();
  }
}

function messageLine(message) {
  return {
    kind: message.action ? 'action' : 'message',
    ts: message.ts,
    from: message.from,
    text: message.text,
    seq: message.seq,
    mention: state.nick && message.from !== state.nick && mentions(message.text, state.nick),
  };
}

function mentions(text, nick) {
  return text.toLowerCase().includes(nick.toLowerCase());
}

function addLine(roomName, line) {
  const room = state.rooms.get(roomName);
  if (!room) {
    return;
  }
  room.lines.push(line);
  if (room.lines.length > 2000) {
    room.lines.splice(0, room.lines.length - 2000);
  }
  if (roomName === state.current) {
    appendLine(line);
  }
}

// ---- rendering (textContent only) ---------------------------------------

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
  return li;
}

function appendLine(line) {
  const list = $('messages');
  const atBottom = list.scrollHeight - list.scrollTop - list.clientHeight < 40;
  list.append(lineElement(line));
  if (atBottom) {
    list.scrollTop = list.scrollHeight;
  }
}

function renderMessages() {
  const list = $('messages');
  list.replaceChildren();
  const room = state.current && state.rooms.get(state.current);
  $('room-title').textContent = state.current ? `#${state.current}` : 'no room — join one';
  if (room) {
    list.append(...room.lines.map(lineElement));
    list.scrollTop = list.scrollHeight;
  }
  renderTyping();
}

function renderRooms() {
  const list = $('room-list');
  list.replaceChildren();
  for (const [name, room] of state.rooms) {
    const li = document.createElement('li');
    li.className = 'room-item';
    const button = document.createElement('button');
    button.type = 'button';
    button.className = 'room';
    button.textContent = `#${name}`;
    button.setAttribute('aria-current', String(name === state.current));
    button.addEventListener('click', () => switchRoom(name));
    if (room.unread > 0) {
      const badge = document.createElement('span');
      badge.className = 'badge';
      badge.textContent = String(room.unread);
      badge.setAttribute('aria-label', `${room.unread} unread`);
      button.append(badge);
    }
    const part = document.createElement('button');
    part.type = 'button';
    part.className = 'part';
    part.textContent = '×';
    part.setAttribute('aria-label', `leave ${name}`);
    part.addEventListener('click', () => send({ type: 'leave', room: name, id: newId() }));
    li.append(button, part);
    list.append(li);
  }
}

function renderMembers() {
  const list = $('members');
  list.replaceChildren();
  const room = state.current && state.rooms.get(state.current);
  if (!room) {
    return;
  }
  const names = [...room.members].sort((a, b) => a.toLowerCase().localeCompare(b.toLowerCase()));
  for (const name of names) {
    const li = document.createElement('li');
    li.textContent = name === state.nick ? `${name} (you)` : name;
    list.append(li);
  }
}

function switchRoom(name) {
  state.current = name;
  const room = state.rooms.get(name);
  if (room) {
    room.unread = 0;
  }
  renderRooms();
  renderMessages();
  renderMembers();
  $('text').focus();
}

// ---- typing indicator ---------------------------------------------------

function showTyping(room, nick) {
  const key = `${room}\n${nick}`;
  clearTimeout(state.typing.get(key));
  state.typing.set(key, setTimeout(() => clearTyping(room, nick), TYPING_SHOW_MS));
  renderTyping();
}

function clearTyping(room, nick) {
  const key = `${room}\n${nick}`;
  if (state.typing.has(key)) {
    clearTimeout(state.typing.get(key));
    state.typing.delete(key);
    renderTyping();
  }
}

function renderTyping() {
  const names = [...state.typing.keys()]
    .map((key) => key.split('\n'))
    .filter(([room]) => room === state.current)
    .map(([, nick]) => nick);
  $('typing').textContent =
    names.length === 0 ? '' : names.length === 1 ? `${names[0]} is typing…` : `${names.join(', ')} are typing…`;
}

// ---- input --------------------------------------------------------------

const HELP = '/join ROOM · /leave [ROOM] · /nick NAME · /me ACTION · /msg NICK TEXT · /who · /rooms · /help';

function submit() {
  const textarea = $('text');
  const text = textarea.value;
  if (!text.trim()) {
    return;
  }
  if (runCommand(text.trim())) {
    textarea.value = '';
  }
}

// Returns whether the input was consumed.
function runCommand(input) {
  const current = state.current;
  if (!input.startsWith('/') || input.startsWith('//')) {
    const text = input.startsWith('//') ? input.slice(1) : $('text').value;
    if (!current) {
      return false;
    }
    return sendMessage({ type: 'say', room: current, text });
  }
  const [command, ...rest] = input.split(/\s+/);
  const arg = input.slice(command.length).trim();
  switch (command.toLowerCase()) {
    case '/join':
      return arg ? joinRoom(arg) : false;
    case '/leave':
    case '/part': {
      const room = (arg || current || '').replace(/^#/, '');
      return room ? send({ type: 'leave', room, id: newId() }) : false;
    }
    case '/nick':
      return arg ? send({ type: 'nick', nick: arg, id: newId() }) : false;
    case '/me':
      return current && arg ? sendMessage({ type: 'say', room: current, text: arg, action: true }) : false;
    case '/msg': {
      const [to] = rest;
      const text = arg.slice(to ? to.length : 0).trim();
      return to && text ? sendMessage({ type: 'dm', to, text }) : false;
    }
    case '/who':
      return current ? send({ type: 'who', room: current, id: newId() }) : false;
    case '/rooms':
      return send({ type: 'rooms', id: newId() });
    case '/help':
      if (current) {
        addLine(current, { kind: 'notice', text: HELP });
      }
      return true;
    default:
      if (current) {
        addLine(current, { kind: 'error', text: `unknown command ${command}; ${HELP}` });
      }
      return false;
  }
}

function joinRoom(name) {
  const room = name.replace(/^#/, '');
  state.switchTo = room;
  return send({ type: 'join', room, id: newId() });
}

function onTyping() {
  const now = Date.now();
  const text = $('text').value;
  if (state.current && text && !text.startsWith('/') && now - state.lastTypingSent >= TYPING_SEND_MS) {
    state.lastTypingSent = now;
    send({ type: 'typing', room: state.current });
  }
}

// ---- screens --------------------------------------------------------------

function showLogin(error) {
  $('app').hidden = true;
  $('login').hidden = false;
  $('login-error').textContent = error || '';
  $('nick-input').focus();
}

function showApp() {
  $('login').hidden = true;
  $('app').hidden = false;
}

function start(nick, token) {
  state.wantedNick = nick;
  state.token = token || null;
  state.retry = 0;
  connect();
}

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
    start(nick, token);
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
    }
  });
  $('text').addEventListener('input', onTyping);
  const saved = localStorage.getItem(NICK_KEY);
  const savedToken = localStorage.getItem(TOKEN_KEY);
  if (saved || savedToken) {
    $('nick-input').value = saved || '';
    start(saved, savedToken);
  } else {
    showLogin('');
  }
});
