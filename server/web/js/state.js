// What the page shows, as plain data: rooms and conversations with their
// lines, members and unread counts, the view on screen, who is typing.
// The session's own state (pending messages, seqs, the connection) is the
// session's (session.js); this is the page's picture of it.

export const NICK_KEY = 'chat.nick';
export const TOKEN_KEY = 'chat.token';
// The session's token, kept for this server (storage is per origin): a
// reload, a second tab, or the page opened again later resumes the same
// session, as one person on several connections.
export const SESSION_KEY = 'chat.session';
export const ROOMS_KEY = 'chat.rooms';
// Per conversation key, the newest seq shown: what is past it is unread,
// also after a reload.
const READ_KEY = 'chat.read';
/** Lines a view keeps. */
const MAX_LINES = 2000;

export const state = {
  connection: null,   // the Connection (connection.js) once logged in
  nick: null,         // the nick the server confirmed
  wantedNick: null,   // the nick asked for
  token: null,        // the access token, on servers that ask for one
  rooms: new Map(),   // name -> { lines, members: Set, away: Set, lastSeq, unread, mentioned, complete }
  directs: new Map(), // peer nick -> { lines, unread, mentioned, key, complete } (views named "@peer")
  current: null,      // the view on screen
  switchTo: null,     // a view the user asked for: shown once it exists
  limits: {},         // welcome.limits
  pages: new Map(),   // id of a "load older" request -> room
  typing: new Map(),  // "room\nnick" -> timer
  lastTypingSent: 0,
  uploads: new Map(), // file id -> { room, name, row, bar }
  files: new Map(),   // attachment id -> Promise of an object URL
  notified: 0,        // desktop notifications shown (for the tests)
  follow: true,       // the message list is at the bottom: new lines keep it there
  editing: null,      // { room, line } while the composer edits one's own message
  directoryId: null,  // the id of the `rooms` asked for by "Browse rooms"
  toldRead: new Map(), // view name -> newest seq told read to the session's other connections
  memberPages: new Map(), // id of a `who` for the next page of a member list -> room
  memberSearch: null, // { room, prefix, results (null while asked), more }: the member list's search
  memberSearches: new Map(), // id of a `who` with a prefix -> { room, prefix }
  completions: new Map(), // id of a `who` a Tab asked for -> where the composer was
  sending: new Map(), // request id of a message shown as being sent -> { view, line }
  unseen: 0,          // lines added below while scrolled up
};

/** The view named `name`: a room, or a conversation ("@peer"). */
export function viewOf(name) {
  if (!name) {
    return null;
  }
  return name.startsWith('@') ? state.directs.get(name.slice(1)) : state.rooms.get(name);
}

export function roomState(name) {
  let room = state.rooms.get(name);
  if (!room) {
    room = {
      lines: [], members: new Set(), away: new Set(), lastSeq: 0, unread: 0, mentioned: false, complete: false,
    };
    state.rooms.set(name, room);
  }
  return room;
}

export function directView(peer) {
  let view = state.directs.get(peer);
  if (!view) {
    view = { lines: [], unread: 0, mentioned: false, key: null, complete: false };
    state.directs.set(peer, view);
  }
  return view;
}

/**
 * Adds a line to a view's list, before the messages still being sent (they
 * stay at the bottom until the server has them); the line it went before,
 * or null at the end. Undefined if there is no such view.
 */
export function pushLine(name, line) {
  const view = viewOf(name);
  if (!view) {
    return undefined;
  }
  const pending = line.pending ? -1 : view.lines.findIndex((l) => l.pending);
  let before = null;
  if (pending < 0) {
    view.lines.push(line);
  } else {
    before = view.lines[pending];
    view.lines.splice(pending, 0, line);
  }
  if (view.lines.length > MAX_LINES) {
    view.lines.splice(0, view.lines.length - MAX_LINES);
  }
  return before;
}

export function savedRooms() {
  try {
    const rooms = JSON.parse(localStorage.getItem(ROOMS_KEY) || '[]');
    return Array.isArray(rooms) && rooms.length ? rooms.filter((r) => typeof r === 'string') : ['lobby'];
  } catch (_) {
    return ['lobby'];
  }
}

/** The newest seq shown of the conversation `key`, 0 if none. */
export function readPosition(key) {
  return readPositions()[key] ?? 0;
}

/** Remembers that a conversation view was seen up to its newest line. */
export function markRead(view) {
  const newest = view?.key ? Math.max(0, ...view.lines.map((l) => l.seq || 0)) : 0;
  if (!newest) {
    return;
  }
  const read = readPositions();
  if ((read[view.key] ?? 0) < newest) {
    read[view.key] = newest;
    localStorage.setItem(READ_KEY, JSON.stringify(read));
  }
}

function readPositions() {
  try {
    const read = JSON.parse(localStorage.getItem(READ_KEY) || '{}');
    return read && typeof read === 'object' ? read : {};
  } catch (_) {
    return {};
  }
}
