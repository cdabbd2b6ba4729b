// The composer: what is typed becomes a message, or a /command.

import { defaultDoc, openDoc, openOrCreate } from './docs.js';
import { $, formatSize } from './common.js';
import { directView, state, viewOf } from './state.js';
import { addLine, switchRoom } from './views.js';

const TYPING_SEND_MS = 2000;

const HELP = '/join ROOM · /leave [ROOM] · /nick NAME · /me ACTION · /msg NICK TEXT · /topic TEXT · /edit TEXT (your last message) · /delete (your last message) · /upload · /doc [NAME] (a shared document) · /who · /rooms · /help — files: the Attach button, drag and drop, or paste';

function send(frame) {
  if (!state.connection) {
    return false;
  }
  state.connection.send(frame);
  return true;
}

/**
 * A say or dm: kept until the server has it, sent again after a reconnect,
 * and shown at once in its conversation as being sent (greyed, with a
 * clock) until the server's copy takes its place.
 */
export function sendMessage(frame, view = null) {
  if (!state.connection) {
    return false;
  }
  const max = state.limits.max_text_bytes;
  const bytes = new TextEncoder().encode(frame.text).length;
  if (max && bytes > max) {
    // Kept in the input, to shorten.
    addLine(state.current, { kind: 'error', text: `That is ${formatSize(bytes)}; a message may be up to ${formatSize(max)}. Shorten it, or send it as a file.`, ts: Date.now() });
    return false;
  }
  const id = state.connection.session.newId();
  const shown = view ?? (frame.type === 'say' ? frame.room : state.current);
  const line = {
    kind: frame.action ? 'action' : 'message', from: state.nick, text: frame.text, ts: Date.now(), pending: true,
  };
  addLine(shown, line);
  state.sending.set(id, { view: viewOf(shown), line });
  state.connection.send(frame, id);
  return true;
}

export function submit() {
  const textarea = $('text');
  const text = textarea.value;
  if (state.editing) {
    // Saving an edit: an empty text would say nothing; delete instead.
    if (text.trim() && change('edit', state.editing.room, state.editing.line.seq, text)) {
      stopEditing();
    }
    return;
  }
  if (!text.trim()) {
    return;
  }
  if (runCommand(text.trim())) {
    textarea.value = '';
  }
}

/** Edits or deletes one's own message `seq` of `room`: a message of the room, kept and retried like one. */
function change(kind, room, seq, text = null) {
  if (!state.connection) {
    return false;
  }
  const frame = kind === 'edit' ? { type: 'edit', room, seq, text } : { type: 'delete', room, seq };
  state.connection.send(frame, state.connection.session.newId());
  return true;
}

/** Edit: the message's text in the composer until Enter saves or Esc cancels; Delete: at once. */
export function startChange({ kind, room, line }) {
  if (kind === 'delete') {
    change('delete', room, line.seq);
    return;
  }
  state.editing = { room, line };
  $('text').value = line.text;
  $('editing').hidden = false;
  $('text').focus();
}

export function stopEditing() {
  state.editing = null;
  $('editing').hidden = true;
  $('text').value = '';
}

/** My newest message in the current room that can still change. */
function lastOwn() {
  const view = viewOf(state.current);
  return view?.lines.slice().reverse().find((l) => l.seq && l.from === state.nick && !l.deleted && !l.pending);
}

/** Carries out one input; whether it was consumed. */
function runCommand(input) {
  const current = state.current;
  if (!input.startsWith('/') || input.startsWith('//')) {
    const text = input.startsWith('//') ? input.slice(1) : $('text').value;
    if (!current) {
      return false;
    }
    if (current.startsWith('@')) {
      // Into the conversation shown, whatever the other party is called now.
      const key = viewOf(current)?.key;
      return sendMessage(key ? { type: 'dm', conversation: key, text } : { type: 'dm', to: current.slice(1), text });
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
      return room ? send({ type: 'leave', room }) : false;
    }
    case '/nick':
      return arg ? send({ type: 'nick', nick: arg }) : false;
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
      directView(to);
      return sendMessage({ type: 'dm', to, text }, `@${to}`);
    }
    case '/edit': {
      const line = lastOwn();
      if (!line || !arg || current.startsWith('@')) {
        return false;
      }
      return change('edit', current, line.seq, arg);
    }
    case '/delete': {
      const line = lastOwn();
      return Boolean(line) && !current.startsWith('@') && change('delete', current, line.seq);
    }
    case '/topic':
      if (!current || current.startsWith('@') || !arg) {
        return false;
      }
      return send({ type: 'topic', room: current, topic: arg === '-' ? '' : arg });
    case '/upload':
      $('file-input').click();
      return true;
    case '/who':
      return current ? send({ type: 'who', room: current }) : false;
    case '/rooms':
      return send({ type: 'rooms' });
    case '/doc':
      if (!current || current.startsWith('@')) {
        return false;
      }
      if (arg) {
        openOrCreate(current, arg);
      } else {
        openDoc(current, defaultDoc(current));
      }
      return true;
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

export function joinRoom(name) {
  // Room names are lowercase: "Dev" is #dev.
  const room = name.trim().replace(/^#/, '').toLowerCase();
  if (state.rooms.has(room)) {
    // Already in it: shown, also offline.
    switchRoom(room);
    return true;
  }
  state.switchTo = room;
  return send({ type: 'join', room });
}

/** The last completion made, for Tab again: the next candidate. */
let completed = null;

/**
 * Tab in the composer: completes the nick being typed, `@an` to `@anna `
 * anywhere and `an` to `anna: ` as the first word, from the room's members
 * (or a conversation's peer); Tab again gives the next one. In a room too
 * big for the page to know everyone, an `@` nick is asked of the server
 * and completed when the answer comes (if the composer is as it was). Returns whether it took the key: with nothing to complete, Tab
 * moves the focus as usual.
 */
export function completeNick() {
  const textarea = $('text');
  const caret = textarea.selectionStart;
  if (caret !== textarea.selectionEnd) {
    return false;
  }
  if (completed && completed.value === textarea.value && completed.caret === caret
      && completed.names.length > 1) {
    completed.index = (completed.index + 1) % completed.names.length;
    putNick(completed, completed.names[completed.index]);
    return true;
  }
  const match = /(?:^|\s)(@?)([^\s@]+)$/u.exec(textarea.value.slice(0, caret));
  if (!match) {
    return false;
  }
  const [, at, prefix] = match;
  const start = caret - at.length - prefix.length;
  const at0 = { start, caret, at, first: start === 0, value: textarea.value, names: [], index: 0 };
  if (!at && !at0.first) {
    return false;
  }
  const current = state.current;
  const room = state.rooms.get(current);
  const whole = !room || room.membersComplete || room.members.size >= (room.memberCount ?? 0);
  // What the page holds of a big room is a part: an @nick is asked of the
  // server, which knows them all (others may start the same way here).
  if (at && !whole && state.connection) {
    const id = state.connection.session.newId();
    state.completions.set(id, { ...at0, room: current });
    state.connection.send({ type: 'who', room: current, prefix, limit: 20 }, id);
    return true;
  }
  const known = current?.startsWith('@') ? [current.slice(1)] : [...(room?.members || [])];
  const lower = prefix.toLowerCase();
  const names = known.filter((nick) => nick !== state.nick && nick.toLowerCase().startsWith(lower))
    .sort((a, b) => a.toLowerCase().localeCompare(b.toLowerCase()));
  if (!names.length) {
    return false;
  }
  completeWith(at0, names);
  return true;
}

/** The server's answer to a Tab: completed if the composer is as it was. */
export function completeFromServer(asked, members) {
  const textarea = $('text');
  const names = members.filter((nick) => nick !== state.nick);
  if (state.current === asked.room && textarea.value === asked.value && textarea.selectionStart === asked.caret
      && names.length) {
    completeWith(asked, names);
  }
}

function completeWith(at, names) {
  completed = { ...at, names, index: 0 };
  putNick(completed, names[0]);
}

/** Puts `nick` where the word being completed was. */
function putNick(at, nick) {
  const textarea = $('text');
  const text = `${at.at}${nick}${at.first && !at.at ? ': ' : ' '}`;
  const value = at.value.slice(0, at.start) + text + at.value.slice(at.caret);
  textarea.value = value;
  const caret = at.start + text.length;
  textarea.setSelectionRange(caret, caret);
  completed.value = value;
  completed.caret = caret;
}

/** Tells the room this user is typing, at most every TYPING_SEND_MS. */
export function onTyping() {
  const now = Date.now();
  const text = $('text').value;
  if (state.current && !state.current.startsWith('@') && text && !text.startsWith('/')
      && now - state.lastTypingSent >= TYPING_SEND_MS && state.connection?.session.phase.name === 'live') {
    state.lastTypingSent = now;
    send({ type: 'typing', room: state.current });
  }
}

