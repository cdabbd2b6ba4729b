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
  directs: new Map(),  // peer nick -> { lines: [], unread } (views named "@peer")
  limits: {},          // welcome.limits
  uploads: [],         // files waiting to be sent, oldest first: { id, file, room, row }
  uploading: null,     // the upload in progress
  frames: null,        // { tokens, at }: this connection's frame budget, as the server counts it
  files: new Map(),    // attachment id -> Promise of an object URL
  notified: 0,         // desktop notifications shown (for the tests)
};

// The view named `name`: a room, or a conversation ("@peer").
function viewOf(name) {
  if (!name) {
    return null;
  }
  return name.startsWith('@') ? state.directs.get(name.slice(1)) : state.rooms.get(name);
}

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
  if (state.frames) {
    state.frames.tokens -= 1; // counted by the server too (see frameWait)
  }
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
    state.frames = null; // a new connection starts with a full budget
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
    const frame = parseFrame(event.data);
    if (frame) {
      handle(frame);
    }
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
    if (state.uploading) {
      finishUpload(`${state.uploading.file.name}: the connection was lost; send it again`);
    }
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
      state.limits = frame.limits || {};
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
      renderNotifyButton();
      nextUpload();
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
        if (state.uploading && state.uploading.id === frame.id) {
          finishUpload(null);
        }
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
      const mine = frame.from === state.nick;
      const peer = mine ? frame.to : frame.from;
      const view = directView(peer);
      addLine(`@${peer}`, { kind: 'message', ts: frame.ts, from: frame.from, text: frame.text });
      if (!mine && state.current !== `@${peer}`) {
        view.unread += 1;
        view.mentioned = true;
      }
      if (!mine) {
        notify(`${frame.from} (direct)`, frame.text);
      }
      if (mine && state.switchTo === `@${peer}`) {
        state.switchTo = null;
        switchRoom(`@${peer}`);
      }
      renderRooms();
      break;
    }
    case 'upload_ready':
      sendUpload(frame);
      break;
    case 'subscribed':
    case 'stats':
      break; // the /stats page's
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
      if (page.once && frame.messages.length === 0) {
        const room = state.rooms.get(page.room);
        if (room) {
          room.complete = true;
        }
      }
      insertOlder(page.room, frame.messages.filter((m) => m.seq >= page.floor));
      const first = frame.messages.length ? frame.messages[0].seq : null;
      if (!page.once && first !== null && first > page.floor) {
        requestOlder(page.room, first, page.floor);
      }
      if (page.room === state.current) {
        renderMessages();
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

// Refusals that pass: the server says when to try again.
function retryable(frame) {
  return frame.code === 'rate_limited'
    || (frame.code === 'unavailable' && Number.isFinite(frame.retry_after_ms));
}

function handleError(frame) {
  if (frame.id && state.uploading && state.uploading.id === frame.id) {
    if (retryable(frame) && frame.retry_after_ms < 120000) {
      retryUpload(Math.max(frame.retry_after_ms || 0, 50));
    } else {
      finishUpload(`${state.uploading.file.name}: ${frame.message}`);
    }
    return;
  }
  // A message refused for going too fast, or while the server cannot
  // store messages, is sent again, with the same id, once the server says
  // it may be: pasting a block of lines loses none.
  if (retryable(frame) && frame.id && state.pending.has(frame.id)) {
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

function directView(peer) {
  let view = state.directs.get(peer);
  if (!view) {
    view = { lines: [], unread: 0, mentioned: false };
    state.directs.set(peer, view);
  }
  return view;
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
  const line = messageLine(message);
  addLine(message.room, line);
  if (live && message.room !== state.current) {
    room.unread += 1;
    room.mentioned = room.mentioned || line.mention;
    renderRooms();
  }
  if (live && line.mention) {
    notify(`${message.from} in #${message.room}`, message.text);
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
    attachment: message.attachment || null,
    mention: Boolean(state.nick && message.from !== state.nick && mentions(message.text, state.nick)),
  };
}

// Whether `text` names `nick` as a word (case-insensitively).
function mentions(text, nick) {
  const words = text.toLowerCase().split(/[^\p{L}\p{N}_.-]+/u);
  return words.includes(nick.toLowerCase());
}

function addLine(roomName, line) {
  const room = viewOf(roomName);
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
  if (line.attachment) {
    li.append(attachmentElement(line.attachment));
  }
  return li;
}

// ---- files ---------------------------------------------------------------

const INLINE_IMAGES = ['image/png', 'image/jpeg', 'image/gif', 'image/webp'];

// The file's bytes as an object URL, fetched once with the session token
// (files are only for those in the room, so a plain <img src> cannot work).
// Anything but media gets a neutral type: a page's own origin must never
// render an uploaded document.
function fileUrl(attachment) {
  let url = state.files.get(attachment.id);
  if (!url) {
    url = fetch(`/files/${attachment.id}`, { headers: { Authorization: `Bearer ${state.session}` } })
      .then((response) => {
        if (!response.ok) {
          throw new Error(`the server answered ${response.status}`);
        }
        return response.blob();
      })
      .then((blob) => {
        const media = INLINE_IMAGES.includes(attachment.mime) || /^(audio|video)\//.test(attachment.mime);
        const typed = new Blob([blob], { type: media ? attachment.mime : 'application/octet-stream' });
        return URL.createObjectURL(typed);
      });
    url.catch(() => state.files.delete(attachment.id));
    state.files.set(attachment.id, url);
  }
  return url;
}

function attachmentElement(attachment) {
  const box = document.createElement('div');
  box.className = 'attachment';
  const label = `${attachment.name} (${formatSize(attachment.size)})`;
  const failed = (err) => {
    const note = document.createElement('span');
    note.className = 'error';
    note.textContent = ` ${attachment.name} could not be loaded: ${err.message}`;
    box.append(note);
  };
  if (INLINE_IMAGES.includes(attachment.mime)) {
    const button = document.createElement('button');
    button.type = 'button';
    button.className = 'thumb';
    button.setAttribute('aria-label', `${label}: show larger`);
    const img = document.createElement('img');
    img.alt = attachment.name;
    img.dataset.file = attachment.id;
    button.append(img);
    button.addEventListener('click', () => {
      const dialog = $('viewer');
      $('viewer-image').src = img.src;
      $('viewer-image').alt = attachment.name;
      $('viewer-caption').textContent = label;
      dialog.showModal();
    });
    box.append(button);
    fileUrl(attachment).then((url) => { img.src = url; }, failed);
  } else if (/^(audio|video)\//.test(attachment.mime)) {
    const player = document.createElement(attachment.mime.startsWith('audio/') ? 'audio' : 'video');
    player.controls = true;
    player.setAttribute('aria-label', label);
    player.dataset.file = attachment.id;
    box.append(player);
    fileUrl(attachment).then((url) => { player.src = url; }, failed);
  }
  const link = document.createElement('a');
  link.className = 'download';
  link.href = '#';
  link.textContent = `⬇ ${label}`;
  link.dataset.file = attachment.id;
  link.addEventListener('click', (event) => {
    if (link.download) {
      return; // ready: the browser saves it
    }
    event.preventDefault();
    fileUrl(attachment).then((url) => {
      link.href = url;
      link.download = attachment.name;
      link.click();
    }, failed);
  });
  box.append(link);
  return box;
}

// Sends the files waiting, one at a time (one upload per connection).
function queueUpload(file) {
  const room = state.current;
  if (!room || room.startsWith('@')) {
    addLine(room || [...state.rooms.keys()][0], { kind: 'error', text: 'files go to rooms: switch to a room first' });
    return;
  }
  const max = state.limits.max_upload_bytes || 0;
  if (max === 0) {
    addLine(room, { kind: 'error', text: 'this server takes no files' });
    return;
  }
  if (file.size > max) {
    addLine(room, {
      kind: 'error',
      text: `${file.name} is ${formatSize(file.size)}; this server takes files up to ${formatSize(max)}`,
    });
    return;
  }
  if (file.size === 0) {
    addLine(room, { kind: 'error', text: `${file.name} is empty` });
    return;
  }
  const row = document.createElement('li');
  const name = document.createElement('span');
  name.textContent = `${file.name} (${formatSize(file.size)}) `;
  const bar = document.createElement('progress');
  bar.max = file.size;
  bar.value = 0;
  bar.setAttribute('aria-label', `sending ${file.name}`);
  row.append(name, bar);
  $('uploads').append(row);
  state.uploads.push({ id: newId(), file, room, row, bar });
  nextUpload();
}

function nextUpload() {
  if (state.uploading || !state.greeted || state.uploads.length === 0) {
    return;
  }
  const upload = state.uploads.shift();
  state.uploading = upload;
  send({
    type: 'upload', id: upload.id, room: upload.room, name: upload.file.name,
    mime: upload.file.type || 'application/octet-stream', size: upload.file.size,
  });
}

// How long until the connection may send one more frame, taking it if it
// may now. A model of the server's limiter (frames_per_sec, bursts of
// frames_burst), kept across uploads: each file does not get a fresh
// burst the server will not give it. A margin is left for chat frames.
function frameWait() {
  const perSec = Math.max(1, (state.limits.frames_per_sec || 50) * 0.9);
  const burst = Math.max(1, (state.limits.frames_burst || 200) - 20);
  const now = performance.now();
  if (state.frames === null) {
    state.frames = { tokens: burst, at: now };
  }
  const budget = state.frames;
  budget.tokens = Math.min(burst, budget.tokens + ((now - budget.at) * perSec) / 1000);
  budget.at = now;
  if (budget.tokens >= 1) {
    budget.tokens -= 1;
    return 0;
  }
  return ((1 - budget.tokens) * 1000) / perSec;
}

// The server is ready: the bytes go as binary frames, no faster than the
// socket drains and the server's frame rate allows.
async function sendUpload(ready) {
  const upload = state.uploading;
  if (!upload || upload.id !== ready.id) {
    return;
  }
  const socket = state.socket;
  const chunk = Math.max(1024, Math.min(ready.chunk_bytes || 65536, 1 << 20));
  let sent = 0;
  while (sent < upload.file.size) {
    if (state.uploading !== upload || state.socket !== socket) {
      return; // failed or cancelled meanwhile
    }
    while (socket.bufferedAmount > (1 << 20)) {
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    for (let wait = frameWait(); wait > 0; wait = frameWait()) {
      await new Promise((resolve) => setTimeout(resolve, wait));
    }
    const part = await upload.file.slice(sent, sent + chunk).arrayBuffer();
    if (state.uploading !== upload || socket.readyState !== WebSocket.OPEN) {
      return;
    }
    socket.send(part);
    sent += part.byteLength;
    upload.bar.value = sent - Math.min(sent, socket.bufferedAmount);
  }
  upload.bar.value = upload.file.size;
}

// The upload in progress was refused for now: it goes back to the front
// of the queue and starts again once the server says it may.
function retryUpload(delay) {
  const upload = state.uploading;
  state.uploading = null;
  if (!upload) {
    return;
  }
  upload.bar.removeAttribute('value'); // indeterminate while it waits
  upload.id = newId();
  setTimeout(() => {
    state.uploads.unshift(upload);
    nextUpload();
  }, delay);
}

// The upload in progress ended: delivered (`error` null) or not.
function finishUpload(error) {
  const upload = state.uploading;
  state.uploading = null;
  if (upload) {
    upload.row.remove();
    if (error) {
      addLine(upload.room, { kind: 'error', text: `not sent: ${error}` });
    }
  }
  nextUpload();
}

// ---- notifications ---------------------------------------------------------

function notify(title, body) {
  if (!document.hidden && document.hasFocus()) {
    return;
  }
  if (typeof Notification === 'undefined' || Notification.permission !== 'granted') {
    return;
  }
  try {
    new Notification(title, { body: body.slice(0, 200), tag: 'chat' });
    state.notified += 1;
    document.body.dataset.notified = String(state.notified);
  } catch (_) {
    // Some browsers only notify from a service worker: the badge still shows.
  }
}

function askForNotifications() {
  if (typeof Notification !== 'undefined' && Notification.permission === 'default') {
    Notification.requestPermission().finally(renderNotifyButton);
  }
}

function renderNotifyButton() {
  const button = $('notify');
  button.hidden = typeof Notification === 'undefined' || Notification.permission !== 'default';
}

// ---- lists -----------------------------------------------------------------

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

function renderMessages() {
  const list = $('messages');
  list.replaceChildren();
  list.dataset.day = '';
  const room = viewOf(state.current);
  const title = !state.current
    ? 'no room — join one'
    : state.current.startsWith('@') ? `${state.current.slice(1)} (direct messages)` : `#${state.current}`;
  $('room-title').textContent = title;
  const older = $('older');
  const first = room ? room.lines.find((l) => l.seq) : null;
  older.hidden = !room || state.current.startsWith('@') || !first || first.seq <= 1 || room.complete;
  if (room) {
    for (const line of room.lines) {
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

// "Load older": the page of history before the first message shown.
function loadOlder() {
  const room = state.rooms.get(state.current);
  const first = room && room.lines.find((l) => l.seq);
  if (!first || first.seq <= 1) {
    return;
  }
  const id = newId();
  state.pages.set(id, { room: state.current, floor: 1, once: true });
  send({ type: 'history', room: state.current, before: first.seq, limit: 50, id });
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

function renderRooms() {
  const list = $('room-list');
  list.replaceChildren();
  for (const [name, room] of state.rooms) {
    const { li, close } = viewButton(name, `#${name}`, room);
    close.setAttribute('aria-label', `leave ${name}`);
    close.addEventListener('click', () => send({ type: 'leave', room: name, id: newId() }));
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

function renderMembers() {
  const list = $('members');
  list.replaceChildren();
  const current = state.current;
  const names = !current
    ? []
    : current.startsWith('@')
      ? [state.nick, current.slice(1)]
      : [...(state.rooms.get(current)?.members || [])];
  names.sort((a, b) => a.toLowerCase().localeCompare(b.toLowerCase()));
  for (const name of names) {
    const li = document.createElement('li');
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

function openDirect(peer) {
  directView(peer);
  switchRoom(`@${peer}`);
}

function switchRoom(name) {
  state.current = name;
  const view = viewOf(name);
  if (view) {
    view.unread = 0;
    view.mentioned = false;
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

const HELP = '/join ROOM · /leave [ROOM] · /nick NAME · /me ACTION · /msg NICK TEXT · /upload · /who · /rooms · /help — files: the Attach button, drag and drop, or paste';

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
    if (current.startsWith('@')) {
      return sendMessage({ type: 'dm', to: current.slice(1), text });
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
      return current && !current.startsWith('@') && arg
        ? sendMessage({ type: 'say', room: current, text: arg, action: true })
        : false;
    case '/msg': {
      const [to] = rest;
      const text = arg.slice(to ? to.length : 0).trim();
      if (!to || !text) {
        return false;
      }
      state.switchTo = `@${to}`;
      return sendMessage({ type: 'dm', to, text });
    }
    case '/upload':
      $('file-input').click();
      return true;
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
  if (state.current && !state.current.startsWith('@') && text && !text.startsWith('/')
      && now - state.lastTypingSent >= TYPING_SEND_MS) {
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
  $('older').addEventListener('click', loadOlder);
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
