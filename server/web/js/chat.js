// What the session reports, shown: frames become lines, members, badges
// and notices; what a room missed goes in its place by seq. Each frame type
// has its handler in `frames`; a feature that adds frames (shared
// documents, say) adds its handlers there.

import { $ } from './common.js';
import { completeFromServer } from './composer.js';
import { docChanged, docRefused, docVersions, docsJoined, docsListed } from './docs.js';
import { uploadEnded, uploadProgress, uploadWaiting } from './files.js';
import { notify, renderNotifyButton } from './notify.js';
import {
  NICK_KEY, ROOMS_KEY, SESSION_KEY, TOKEN_KEY, directView, markRead, readPosition, roomState, state,
  viewOf,
} from './state.js';
import {
  addLine, redrawLine, removeLine, renderDirectory, renderMembers, renderMessages, renderRooms, renderTopic,
  renderTyping, setStatus, showApp, showBanner, showLogin, switchRoom,
} from './views.js';

const TYPING_SHOW_MS = 4000;

/** Handlers of server frames by type: (frame, catchUp) => void. */
export const frames = {
  welcome(frame) {
    state.nick = frame.nick;
    state.limits = frame.limits || {};
    localStorage.setItem(NICK_KEY, frame.nick);
    $('me').textContent = frame.nick;
    showApp();
    renderNotifyButton();
  },
  joined(frame, catchUp) {
    const room = roomState(frame.room);
    room.topic = frame.topic ?? null;
    room.members = new Set(frame.members);
    room.memberCount = frame.member_count ?? frame.members.length;
    // The last of the server's page, where the next one starts; pages
    // asked for before (on a connection since lost) are forgotten.
    room.membersComplete = frame.members.length >= room.memberCount;
    room.lastMember = room.membersComplete ? null : frame.members[frame.members.length - 1] ?? null;
    for (const [id, asked] of state.memberPages) {
      if (asked === frame.room) {
        state.memberPages.delete(id);
      }
    }
    room.away = new Set(frame.away || []);
    // A resume's history comes complete in `missed`.
    if (!catchUp) {
      for (const message of frame.history) {
        addMessage(message, false);
      }
    }
    if (!state.current || !state.rooms.has(state.current) || state.switchTo === frame.room) {
      state.switchTo = null;
      switchRoom(frame.room);
    }
    renderRooms();
    renderMembers();
    docsListed(frame);
    docsJoined(frame.room);
  },
  doc_versions(frame) {
    docVersions(frame);
  },
  doc(frame) {
    docChanged(frame);
    // What people do to the list shows in the room (edits go quietly).
    const said = { created: 'created', renamed: 'renamed', deleted: 'deleted', restored: 'restored a past version of' }[frame.action];
    if (said) {
      const what = frame.action === 'renamed'
        ? `${frame.by} renamed the document ${frame.doc.name} to “${frame.doc.title}”`
        : `${frame.by} ${said} the document “${frame.doc.title}”`;
      addLine(frame.room, { kind: 'notice', ts: Date.now(), text: what });
    }
  },
  left(frame) {
    state.rooms.delete(frame.room);
    if (state.current === frame.room) {
      state.current = state.rooms.keys().next().value || null;
      renderMessages();
    }
    renderRooms();
    renderMembers();
  },
  message(frame) {
    if (frame.id) {
      sent(frame.id);
    }
    addMessage(frame, true);
  },
  presence_batch(frame) {
    // A big room: a second of comings and goings in one line.
    const room = state.rooms.get(frame.room);
    if (!room) {
      return;
    }
    const said = { join: 'joined', leave: 'left', away: 'away', back: 'back', nick: 'renamed' };
    const parts = [];
    for (const [event, word] of Object.entries(said)) {
      const nicks = frame.changes.filter((c) => c.event === event).map((c) => c.nick);
      if (nicks.length) {
        parts.push(nicks.length <= 3 ? `${word}: ${nicks.join(', ')}` : `${nicks.length} ${word}`);
      }
      for (const nick of nicks) {
        if (event === 'leave') {
          room.members.delete(nick);
          room.away.delete(nick);
        } else if (event === 'away') {
          room.away.add(nick);
        } else if (event === 'back') {
          room.away.delete(nick);
        }
      }
    }
    if (frame.more) {
      parts.push(`${frame.more} more changes`);
    }
    // Those who joined are not listed: the list is not whole any more.
    if (frame.more || frame.changes.some((c) => c.event === 'join' || c.event === 'nick')) {
      room.membersComplete = false;
    }
    room.memberCount = frame.members;
    addLine(frame.room, { kind: 'notice', ts: Date.now(), text: `${parts.join('; ')} (${frame.members} members)` });
    renderMembers();
  },
  presence(frame) {
    const room = state.rooms.get(frame.room);
    if (!room) {
      return;
    }
    if (frame.event === 'join') {
      room.memberCount = (room.memberCount ?? room.members.size) + (room.members.has(frame.nick) ? 0 : 1);
      room.members.add(frame.nick);
      addLine(frame.room, { kind: 'notice', ts: Date.now(), text: `${frame.nick} joined` });
    } else if (frame.event === 'leave') {
      if (room.members.delete(frame.nick) || room.members.size < (room.memberCount ?? 0)) {
        room.memberCount = Math.max(0, (room.memberCount ?? 1) - 1);
      }
      room.away.delete(frame.nick);
      addLine(frame.room, { kind: 'notice', ts: Date.now(), text: `${frame.nick} left` });
    } else if (frame.event === 'away') {
      room.away.add(frame.nick);
      addLine(frame.room, { kind: 'notice', ts: Date.now(), text: `${frame.nick} is away` });
    } else if (frame.event === 'back') {
      room.away.delete(frame.nick);
      addLine(frame.room, { kind: 'notice', ts: Date.now(), text: `${frame.nick} is back` });
    } else if (frame.event === 'nick') {
      room.members.delete(frame.old);
      room.members.add(frame.nick);
      if (room.away.delete(frame.old)) {
        room.away.add(frame.nick);
      }
      addLine(frame.room, { kind: 'notice', ts: Date.now(), text: `${frame.old} is now known as ${frame.nick}` });
    }
    renderMembers();
  },
  direct(frame) {
    if (frame.id) {
      sent(frame.id);
    }
    const mine = frame.from === state.nick;
    const peer = frame.with || (mine ? frame.to : frame.from);
    const view = directView(peer);
    view.key = frame.conversation || view.key;
    if (frame.seq && view.lines.some((l) => l.seq === frame.seq)) {
      return;
    }
    addLine(`@${peer}`, { kind: 'message', ts: frame.ts, from: frame.from, text: frame.text, seq: frame.seq || 0 });
    if (!mine && state.current !== `@${peer}`) {
      view.unread += 1;
      view.mentioned = true;
    }
    if (state.current === `@${peer}`) {
      markRead(view);
    }
    if (!mine) {
      notify(`${frame.from} (direct)`, frame.text);
    }
    if (mine && state.switchTo === `@${peer}`) {
      state.switchTo = null;
      switchRoom(`@${peer}`);
    }
    renderRooms();
  },
  conversations(frame) {
    // Listed on every start: each is read by the session next.
    for (const listed of frame.conversations) {
      directView(listed.with).key = listed.conversation;
    }
    renderRooms();
  },
  conversation(frame) {
    const name = `@${frame.with}`;
    const view = directView(frame.with);
    view.key = frame.conversation;
    const paged = state.pages.get(frame.id) === name;
    state.pages.delete(frame.id);
    if (paged && frame.messages.length === 0) {
      view.complete = true;
    }
    if (frame.resume === 'gap' && frame.gap) {
      const lost = frame.gap.to - frame.gap.from + 1;
      addLine(name, { kind: 'notice', ts: Date.now(), text: `${lost} message(s) from while you were away are no longer kept` });
    }
    const read = readPosition(frame.conversation);
    let unread = 0;
    for (const message of frame.messages) {
      if (insertLine(view, { ...messageLine(message), mention: false }) && message.from !== state.nick && message.seq > read) {
        unread += 1;
      }
    }
    if (state.current === name) {
      markRead(view);
      renderMessages();
    } else if (unread) {
      view.unread += unread;
      view.mentioned = true;
    }
    renderRooms();
  },
  nick(frame) {
    state.nick = frame.nick;
    state.wantedNick = frame.nick;
    localStorage.setItem(NICK_KEY, frame.nick);
    $('me').textContent = frame.nick;
    for (const room of state.rooms.values()) {
      room.members.delete(frame.old);
      room.members.add(frame.nick);
    }
    if (state.current) {
      addLine(state.current, { kind: 'notice', ts: Date.now(), text: `you are now known as ${frame.nick}` });
    }
    renderMembers();
  },
  typing(frame) {
    showTyping(frame.room, frame.nick);
  },
  typing_batch(frame) {
    // A big room: a second's typists at once (oneself aside).
    for (const nick of frame.nicks.filter((n) => n !== state.nick)) {
      showTyping(frame.room, nick);
    }
  },
  members(frame) {
    const room = state.rooms.get(frame.room);
    const completion = state.completions.get(frame.id);
    if (frame.id !== undefined && completion) {
      state.completions.delete(frame.id);
      completeFromServer(completion, frame.members);
      return;
    }
    const search = state.memberSearches.get(frame.id);
    if (frame.id !== undefined && search) {
      // The member list's search, answered by the server (a big room):
      // shown if it is still what the box says.
      state.memberSearches.delete(frame.id);
      const now = state.memberSearch;
      if (now && now.room === search.room && now.prefix === search.prefix) {
        now.results = frame.members;
        now.more = Boolean(frame.more);
        renderMembers();
      }
      return;
    }
    if (frame.id !== undefined && state.memberPages.get(frame.id) === frame.room) {
      // The next page of a big room's list.
      state.memberPages.delete(frame.id);
      if (room) {
        frame.members.forEach((nick) => room.members.add(nick));
        room.memberCount = frame.count ?? room.memberCount;
        room.lastMember = frame.members[frame.members.length - 1] ?? room.lastMember;
        room.membersComplete = !frame.more;
        renderMembers();
      }
      return;
    }
    if (room) {
      room.members = new Set(frame.members);
      room.memberCount = frame.count ?? frame.members.length;
      renderMembers();
    }
    if (state.current) {
      addLine(state.current, { kind: 'notice', ts: Date.now(), text: `members of ${frame.room}: ${frame.members.join(', ') || 'none'}` });
    }
  },
  history(frame) {
    // The answer to "load older" (a catch-up's pages come as `missed`).
    const name = state.pages.get(frame.id);
    if (name === undefined) {
      return;
    }
    state.pages.delete(frame.id);
    const room = state.rooms.get(name);
    if (room && frame.messages.length === 0) {
      room.complete = true;
    }
    insertOlder(name, frame.messages);
  },
  read(frame) {
    // Read on another tab or device: read here too.
    const view = frame.room
      ? state.rooms.get(frame.room)
      : [...state.directs.values()].find((v) => v.key === frame.conversation);
    if (!view) {
      return;
    }
    const newest = Math.max(0, ...view.lines.map((l) => l.seq || 0));
    if (newest <= frame.seq) {
      view.unread = 0;
      view.mentioned = false;
      markRead(view);
      renderRooms();
    }
  },
  topic(frame) {
    const room = state.rooms.get(frame.room);
    if (!room) {
      return;
    }
    room.topic = frame.topic ?? null;
    const text = frame.topic ? `${frame.by} set the topic: ${frame.topic}` : `${frame.by} cleared the topic`;
    addLine(frame.room, { kind: 'notice', ts: Date.now(), text });
    if (state.current === frame.room) {
      renderTopic();
    }
  },
  rooms(frame) {
    if (frame.id !== undefined && frame.id === state.directoryId) {
      // The answer to "Browse rooms".
      state.directoryId = null;
      renderDirectory(frame.rooms);
      return;
    }
    if (state.current) {
      const list = frame.rooms.map((r) => `${r.name} (${r.members})`).join(', ');
      addLine(state.current, { kind: 'notice', ts: Date.now(), text: `rooms: ${list || 'none'}` });
    }
  },
  error(frame) {
    state.pages.delete(frame.id);
    if (docRefused(frame)) {
      return;
    }
    const refused = state.sending.get(frame.id);
    if (refused) {
      // A message the server will not take: marked where it was typed.
      state.sending.delete(frame.id);
      const { line } = refused;
      line.pending = false;
      line.failed = friendly(frame);
      redrawLine(line);
      return;
    }
    const target = state.current || [...state.rooms.keys()][0];
    if (target) {
      addLine(target, { kind: 'error', ts: Date.now(), text: friendly(frame) });
    }
  },
};

/** What an error means, as a sentence for people (the code stays for the curious). */
const FRIENDLY = {
  invalid_room: 'Room names are lowercase letters, digits, - and _, up to 64 characters.',
  invalid_nick: 'Nicks are letters, digits, -, _ and ., up to 32 characters.',
  invalid_topic: 'A topic is one line of up to 200 characters.',
  nick_taken: 'Someone else has that nick; pick another.',
  not_in_room: 'Join that room first.',
  no_such_nick: 'No one by that name is here.',
  no_such_conversation: 'That conversation is not yours, or no longer exists.',
  no_such_message: 'That message cannot be changed (it is gone, or a change itself).',
  too_large: 'That is too long to send.',
  rate_limited: 'That was too fast; slow down a little.',
  unavailable: 'The server cannot do that right now; try again in a moment.',
  unauthorized: 'Your access token is missing or no longer valid.',
  limit_reached: 'A limit was reached (too many rooms, or the room is full).',
  quota_exceeded: 'Your file quota is used up for now.',
  invalid_upload: 'That file could not be sent.',
};

function friendly(frame) {
  const why = FRIENDLY[frame.code];
  return why ? `${why} (${frame.code})` : `${frame.message} (${frame.code})`;
}

/** The server has the message sent with request id `id`: it is no longer shown as being sent. */
function sent(id) {
  const found = state.sending.get(id);
  if (found) {
    state.sending.delete(id);
    const at = found.view?.lines.indexOf(found.line) ?? -1;
    if (at >= 0) {
      found.view.lines.splice(at, 1);
    }
    removeLine(found.line);
  }
}

/** One event of the session (session.js). */
export function onEvent(event) {
  switch (event.type) {
    case 'frame':
      // A message refused for now goes again by itself: nothing to show.
      if (!event.retrying) {
        frames[event.frame.type]?.(event.frame, event.catchUp);
      }
      break;
    case 'missed':
      missed(event);
      break;
    case 'resumed':
      if (event.notice !== 'reconnected, resumed' && state.current) {
        addLine(state.current, { kind: 'notice', ts: Date.now(), text: event.notice });
      }
      break;
    case 'link':
      link(event);
      break;
    case 'queued':
      break;
    case 'notice':
      break; // the link event says it on screen
    case 'problem':
      if (state.current) {
        addLine(state.current, { kind: 'error', ts: Date.now(), text: event.text });
      }
      break;
    case 'uploadEnded':
      uploadEnded(event.file, event.error);
      break;
    case 'uploadWaiting':
      uploadWaiting(event.file);
      break;
    case 'failed':
      failed(event.failure);
      break;
    default:
      break;
  }
}

export { uploadProgress as onProgress };

/** What storage keeps for the next visit. */
export function onSave(saved) {
  if (saved.session) {
    localStorage.setItem(SESSION_KEY, saved.session);
  }
  localStorage.setItem(ROOMS_KEY, JSON.stringify(saved.rooms));
}

function link(event) {
  if (event.link === 'connecting') {
    setStatus('connecting…', false);
  } else if (event.link === 'connected') {
    // Which transport got through: the fallback is worth knowing about.
    const over = state.connection?.link?.transport === 'sse' ? ' (HTTP fallback)' : '';
    setStatus(`connected${over}`, false);
    showBanner('');
  } else if (event.link === 'waiting') {
    const why = event.restarting ? 'server restarting' : 'connection lost';
    setStatus(`${why} — reconnecting`, true);
    const wait = Math.max(0, event.until - performance.now());
    const when = event.asked || wait >= 1000 ? ` in ${(wait / 1000).toFixed(1)} s` : ' now';
    const what = event.restarting ? 'The server is restarting' : 'The connection to the server was lost';
    showBanner(`${what}; reconnecting${when}. You can keep typing: messages are sent once it is back.`, { retry: true });
  }
}

function failed(failure) {
  if (failure.kind === 'replaced') {
    // Another tab or device resumed this session.
    setStatus('this session was opened elsewhere', true);
    showBanner('This chat was opened in another window. Reload to use it here.');
    return;
  }
  state.connection = null;
  if (failure.code === 'unauthorized' || failure.why === 'the access token expired') {
    state.token = null;
    localStorage.removeItem(TOKEN_KEY);
  }
  if (failure.why === 'the access token expired') {
    setStatus('access token expired', true);
    showLogin('Your access token expired. Enter a new one to come back.');
    return;
  }
  // The hello was refused: back to the login form with the reason.
  showLogin(failure.why);
}

/** What a room missed while away, complete and in order. */
function missed({ room: name, messages, gap, restarted }) {
  const room = roomState(name);
  if (restarted) {
    // The server lost this room's history (an in-memory server that
    // restarted): its numbering starts over.
    room.lastSeq = 0;
    addLine(name, { kind: 'notice', ts: Date.now(), text: 'the server restarted; earlier history is gone' });
  } else if (gap) {
    const lost = gap.to - gap.from + 1;
    addLine(name, { kind: 'notice', ts: Date.now(), text: `${lost} message(s) from while you were away are no longer kept` });
  }
  for (const message of messages) {
    addMessage(message, false);
  }
}

function addMessage(message, live) {
  const room = roomState(message.room);
  // Each seq once, in order.
  if (message.seq <= room.lastSeq) {
    return;
  }
  room.lastSeq = message.seq;
  if (message.edit || message.delete) {
    // A change to an earlier message: applied to it, not shown itself.
    applyChange(room, message);
    return;
  }
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

/** An edit or a deletion, applied to the line it changes if it is shown. */
function applyChange(view, change) {
  const line = view.lines.find((l) => l.seq === (change.edit || change.delete));
  if (!line) {
    return;
  }
  if (change.edit) {
    line.text = change.text;
    line.edited = true;
  } else {
    line.text = '';
    line.attachment = null;
    line.deleted = true;
  }
  line.mention = false;
  redrawLine(line);
}

/** Puts messages older than what is shown into their place by seq. */
function insertOlder(name, messages) {
  const view = viewOf(name);
  if (!view) {
    return;
  }
  for (const message of messages) {
    if (message.edit || message.delete) {
      applyChange(view, message);
    } else {
      insertLine(view, messageLine(message));
    }
  }
  if (name === state.current) {
    // Older ones came in above: what was being read stays put.
    renderMessages({ keepPosition: true });
  }
}

/** Puts a line into its place by seq, once; whether it was new. */
function insertLine(view, line) {
  if (view.lines.some((l) => l.seq === line.seq)) {
    return false;
  }
  // Before the first newer one, or else before what is still being sent.
  let at = view.lines.findIndex((l) => l.seq && l.seq > line.seq);
  if (at < 0) {
    at = view.lines.findIndex((l) => l.pending);
  }
  if (at < 0) {
    view.lines.push(line);
  } else {
    view.lines.splice(at, 0, line);
  }
  return true;
}

function messageLine(message) {
  return {
    kind: message.action ? 'action' : 'message',
    ts: message.ts,
    from: message.from,
    text: message.text,
    seq: message.seq,
    attachment: message.attachment || null,
    edited: Boolean(message.edited),
    deleted: Boolean(message.deleted),
    mention: Boolean(state.nick && message.from !== state.nick && mentions(message.text, state.nick)),
  };
}

/** Whether `text` names `nick` as a word (case-insensitively). */
function mentions(text, nick) {
  const words = text.toLowerCase().split(/[^\p{L}\p{N}_.-]+/u);
  return words.includes(nick.toLowerCase());
}

/** "Load older": the page of history before the first message shown. */
export function loadOlder() {
  const view = viewOf(state.current);
  const first = view && view.lines.find((l) => l.seq);
  if (!first || first.seq <= 1 || !state.connection) {
    return;
  }
  const id = state.connection.session.newId();
  state.pages.set(id, state.current);
  const page = state.current.startsWith('@')
    ? { type: 'conversation', conversation: view.key, before: first.seq, limit: 50 }
    : { type: 'history', room: state.current, before: first.seq, limit: 50 };
  state.connection.send(page, id);
}

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
