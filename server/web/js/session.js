// The page's session as a deterministic state machine: everything that
// outlives one connection, with no socket, no timer, no clock and no random
// source of its own (time and randomness are given to it).
//
// It mirrors the terminal client's session (client-cli/src/session/): the
// same phases (offline, connecting, greeting, catchingUp, live), the same
// inputs and outputs under the same names, so a fix in one carries to the
// other (ARCHITECTURE.md draws the state machine once).
//
// Contract: the driver (connection.js) feeds it with the handle* methods,
// each with the time now in milliseconds. After the constructor and after
// each handle* call it drains pollTransmit() until null, carrying each out
// in order (a failed send is a handleDisconnected), then pollEvent() until
// null (for the page), then pollSave() (for storage), and calls
// handleTimeout(now) at pollTimeout(). Spurious timeouts are harmless.

import { Pacer } from './pacer.js';

/** Reconnect delays grow from this... */
export const BACKOFF_MIN = 500;
/** ...to at most this, with full jitter. */
export const BACKOFF_MAX = 30000;
/** A rate-limited history page is asked again, never later than this. */
const PAGE_RETRY_MAX = 10000;
/** The page size asked for when the server announced none. */
const PAGE_DEFAULT = 100;
/** An upload refused for now is tried again if the wait is under this. */
const UPLOAD_RETRY_MAX = 120000;
/** Close codes (docs/protocol.md). */
const GOING_AWAY = 1001;
const RESTART = 1012;
const REPLACED = 4009;
const TOKEN_EXPIRED = 4011;
/** Refusals of a hello that trying again cannot mend. */
const HELLO_REFUSALS = ['nick_taken', 'invalid_nick', 'unauthorized', 'forbidden'];

const isMessage = (frame) => ['say', 'dm', 'edit', 'delete'].includes(frame.type);

/** Whether an error frame is a refusal for now, with a time to try again. */
const refusedForNow = (frame) =>
  (frame.code === 'rate_limited' || frame.code === 'unavailable')
  && Number.isFinite(frame.retry_after_ms);

/** The reconnect delay a close reason asks for ("...; retry_ms=3200"), or null. */
export function retryAfter(reason) {
  const match = /(?:^|;)\s*retry_ms=(\d+)/.exec(reason || '');
  return match ? Number(match[1]) : null;
}

export class Session {
  /**
   * @param config { nick, accessToken, rooms: [[name, after]], random: () => number in [0, 1) }
   * @param saved  { session, rooms }: what storage kept
   * @param now    the time, in ms
   */
  constructor(config, saved, now) {
    this.config = config;
    this.nick = config.nick ?? null;
    this.token = saved.session ?? null;
    /** Rooms in the order joined: name -> newest seq reported (null until joined). */
    this.rooms = new Map();
    for (const [name, after] of config.rooms) {
      this.rooms.set(name, after ?? null);
    }
    for (const name of saved.rooms ?? []) {
      if (!this.rooms.has(name)) {
        this.rooms.set(name, null);
      }
    }
    /**
     * Conversations (direct messages) by key: { with, seen }, seen the
     * newest seq reported (null before any). The server lists them once
     * caught up; each is then read from where it was.
     */
    this.conversations = new Map();
    /** Conversation reads out, by request id: { key, after, messages, gap, paging }. */
    this.reads = new Map();
    /** Reads refused for now, asked again at rereadAt: [key, after]. */
    this.rereads = [];
    this.rereadAt = null;
    /** The id of the `conversations` asked for, until answered. */
    this.listing = null;
    /** Messages sent (or typed offline) and not yet acknowledged: id -> frame, in the order typed. */
    this.pending = new Map();
    /** Messages refused for now, to send again with the same ids at retryAt. */
    this.retry = [];
    this.retryAt = null;
    this.phase = { name: 'offline', at: now };
    this.limits = null;
    this.pacer = new Pacer();
    /** Frames waiting for the pacer: [id, frame]. */
    this.out = [];
    /** Commands given while a connection is being set up. */
    this.deferred = [];
    /** Uploads, the first one in progress: { upload, id, chunkBytes, sent, reading }. */
    this.uploads = [];
    this.uploadAt = null; // a refused-for-now upload is announced again then
    /** Uploads whose bytes are all sent, waiting for their message: id -> upload. */
    this.finishing = new Map();
    this.upBefore = false;
    this.welcomedBefore = false;
    this.attempt = 0;
    this.idPrefix = `w${Math.floor(config.random() * 2 ** 32).toString(36)}`;
    this.nextId = 0;
    this.now = now;
    this.transmits = [];
    this.events = [];
    this.unsaved = false;
    /** Why the connection was lost, as told during this outage. */
    this.told = null;
    this.connect();
  }

  // ---- inputs -----------------------------------------------------------

  /** A command: { type: 'send', frame, id? } or { type: 'upload', upload }. */
  handleCommand(now, command) {
    this.now = now;
    if (command.type === 'upload') {
      this.upload(command.upload);
    } else {
      this.command(command.frame, command.id ?? null);
    }
  }

  /** The connection asked for is open. */
  handleConnected(now) {
    this.now = now;
    if (this.phase.name !== 'connecting') {
      this.transmits.push({ type: 'close' });
      return;
    }
    this.pacer.reset();
    this.limits = null;
    const hello = this.config.accessToken
      ? { type: 'hello', token: this.config.accessToken }
      : { type: 'hello', nick: this.nick };
    if (this.token) {
      hello.session = this.token;
    }
    this.out.unshift(['hello', hello]);
    this.phase = { name: 'greeting' };
  }

  /** The network is back (a browser says so): reconnect now rather than at the backoff's time. */
  handleOnline(now) {
    this.now = now;
    if (this.phase.name === 'offline') {
      this.attempt = 0;
      this.connect();
    }
  }

  /** A text frame from the server. */
  handleFrame(now, text) {
    this.now = now;
    let frame = null;
    try {
      frame = JSON.parse(text);
    } catch (_) {
      frame = null;
    }
    switch (this.phase.name) {
      case 'greeting': return this.greeting(frame);
      case 'catchingUp': return this.catchingUp(frame);
      case 'live': return this.live(frame);
      default: return undefined; // from a connection already given up on
    }
  }

  /** The connection (or the attempt at one) ended: { kind: 'unreachable'|'closed'|'broken', code, reason, why }. */
  handleDisconnected(now, how) {
    this.now = now;
    if (this.phase.name === 'offline' || this.phase.name === 'ended') {
      return;
    }
    if (how.kind === 'closed' && how.code === REPLACED) {
      return this.fail({ kind: 'replaced', why: 'the session was resumed by another client' });
    }
    if (how.kind === 'closed' && how.code === TOKEN_EXPIRED) {
      return this.fail({ kind: 'refused', why: 'the access token expired' });
    }
    let why = how.why || 'the connection was lost';
    let asked = null;
    if (how.kind === 'closed') {
      const ms = retryAfter(how.reason);
      if (how.code === RESTART || how.code === GOING_AWAY) {
        why = 'the server is restarting';
        asked = how.code === RESTART ? ms : null;
      } else {
        why = 'the server closed the connection';
      }
    }
    this.lost(why, asked);
  }

  /**
   * A better transport works now: reconnect over it at once, quietly, and
   * resume. Only when nothing is under way (no message waiting for its
   * answer, no file, nothing queued), so nothing is lost or sent twice;
   * false when now is not the time (the driver asks again later).
   */
  handleSwitch(now) {
    this.now = now;
    const idle = this.phase.name === 'live' && !this.pending.size && !this.out.length
      && !this.uploads.length && !this.finishing.size && !this.deferred.length;
    if (idle) {
      this.lost('switching transport', 0, true);
    }
    return idle;
  }

  /** `n` bytes of `file` went as the chunk asked for; 0 means the file ended early. */
  handleChunk(now, file, n) {
    this.now = now;
    const sending = this.uploads[0];
    if (!sending || sending.upload.file !== file) {
      return;
    }
    sending.reading = false;
    if (n === 0) {
      return this.cancelUpload(`${sending.upload.name} changed while being sent`);
    }
    sending.sent += n;
    if (sending.sent >= sending.upload.size) {
      // The room's message confirms it; the next file may go meanwhile.
      this.uploads.shift();
      this.finishing.set(sending.id, sending.upload);
      this.announce();
    }
  }

  /** Reading `file` for the chunk asked for failed. */
  handleChunkFailed(now, file, why) {
    this.now = now;
    if (this.uploads[0]?.upload.file === file) {
      this.cancelUpload(`${this.uploads[0].upload.name}: ${why}`);
    }
  }

  /** Time passed: reconnects, retries, pacing. */
  handleTimeout(now) {
    this.now = now;
    if (this.phase.name === 'offline' && this.phase.at <= now) {
      this.connect();
    }
    if (this.phase.name === 'catchingUp' && this.phase.askAt !== null && this.phase.askAt <= now) {
      this.phase.askAt = null;
      this.page();
    }
    if (this.phase.name === 'live' && this.retryAt !== null && this.retryAt <= now) {
      this.retryAt = null;
      for (const id of this.retry.splice(0)) {
        if (this.pending.has(id)) {
          this.out.push([id, this.pending.get(id)]);
        }
      }
    }
    if (this.phase.name === 'live' && this.uploadAt !== null && this.uploadAt <= now) {
      this.uploadAt = null;
      this.announce();
    }
    if (this.phase.name === 'live' && this.rereadAt !== null && this.rereadAt <= now) {
      this.rereadAt = null;
      for (const [key, after] of this.rereads.splice(0)) {
        this.read(key, after);
      }
    }
  }

  // ---- outputs ----------------------------------------------------------

  /** The next thing the driver must do: { type: 'connect'|'text'|'chunk'|'close', ... }. */
  pollTransmit() {
    if (this.transmits.length) {
      return this.transmits.shift();
    }
    if (!this.isConnected()) {
      return null;
    }
    if (this.out.length) {
      const [id, frame] = this.out[0];
      const message = isMessage(frame);
      if (this.pacer.readyAt(message, this.now) > this.now) {
        return null;
      }
      this.pacer.take(message, this.now);
      this.out.shift();
      return { type: 'text', text: JSON.stringify(id === null ? frame : { ...frame, id }) };
    }
    const sending = this.uploads[0];
    if (!sending || sending.chunkBytes === null || sending.reading) {
      return null;
    }
    if (this.pacer.readyAt(false, this.now) > this.now) {
      return null;
    }
    this.pacer.take(false, this.now);
    sending.reading = true;
    return { type: 'chunk', file: sending.upload.file, offset: sending.sent, max: sending.chunkBytes };
  }

  /** The next event for the page. */
  pollEvent() {
    return this.events.length ? this.events.shift() : null;
  }

  /** What storage should hold now, if that changed: { session, rooms }. */
  pollSave() {
    if (!this.unsaved) {
      return null;
    }
    this.unsaved = false;
    return { session: this.token, rooms: [...this.rooms.keys()] };
  }

  /** When to call handleTimeout next, or null. */
  pollTimeout() {
    const times = [];
    switch (this.phase.name) {
      case 'offline': times.push(this.phase.at); break;
      case 'catchingUp': times.push(this.phase.askAt); break;
      case 'live': times.push(this.retryAt, this.uploadAt, this.rereadAt); break;
      default: break;
    }
    if (this.isConnected()) {
      if (this.out.length) {
        times.push(this.pacer.readyAt(isMessage(this.out[0][1]), this.now));
      } else if (this.uploads[0]?.chunkBytes != null && !this.uploads[0].reading) {
        times.push(this.pacer.readyAt(false, this.now));
      }
    }
    const set = times.filter((t) => t !== null && t !== undefined);
    return set.length ? Math.min(...set) : null;
  }

  /** Whether the upload of `file` is still wanted. */
  wantsFile(file) {
    return this.uploads.some((sending) => sending.upload.file === file);
  }

  /** A fresh request id. */
  newId() {
    this.nextId += 1;
    return `${this.idPrefix}-${this.nextId.toString(36)}`;
  }

  // ---- connection life --------------------------------------------------

  isConnected() {
    return ['greeting', 'catchingUp', 'live'].includes(this.phase.name);
  }

  emit(event) {
    this.events.push(event);
  }

  connect() {
    this.phase = { name: 'connecting' };
    this.transmits.push({ type: 'connect' });
    this.emit({ type: 'link', link: 'connecting' });
  }

  fail(failure) {
    this.phase = { name: 'ended' };
    this.unsaved = true;
    this.emit({ type: 'failed', failure });
  }

  /** The connection is gone (or never came): wait before the next, `asked` ms if the server said. */
  lost(why, asked, quiet = false) {
    const wasLive = this.phase.name === 'live';
    // Said once per outage (and again only if the reason changes).
    if (!quiet && (wasLive || this.told !== why)) {
      this.emit({ type: 'notice', text: wasLive ? `disconnected: ${why}` : `cannot connect: ${why}` });
      this.told = why;
    }
    // A restarting server's own delay is used as given: it already spreads its clients out.
    const delay = asked !== null
      ? Math.min(asked, BACKOFF_MAX)
      : Math.min(BACKOFF_MAX, BACKOFF_MIN * 2 ** this.attempt) * this.config.random();
    this.attempt += 1;
    const at = this.now + delay;
    this.phase = { name: 'offline', at };
    const restarting = why === 'the server is restarting';
    if (!quiet) {
      this.emit({ type: 'link', link: 'waiting', until: at, why, asked: asked !== null, restarting });
    }
    this.retry = [];
    this.retryAt = null;
    // Conversations are listed and read again once caught up.
    this.reads.clear();
    this.rereads = [];
    this.rereadAt = null;
    this.listing = null;
    // Messages are in `pending` and go again; anything else is lost with the connection.
    for (const [, frame] of this.out.splice(0)) {
      if (!isMessage(frame) && !['hello', 'typing', 'conversations', 'conversation'].includes(frame.type)) {
        this.emit({ type: 'problem', text: `not sent, the connection was lost: ${frame.type}` });
      }
    }
    this.uploadAt = null;
    for (const sending of this.uploads.splice(0)) {
      this.emit({ type: 'uploadEnded', file: sending.upload.file, error: `${sending.upload.name}: the connection was lost; send it again` });
    }
    for (const upload of this.finishing.values()) {
      // Sent whole: if it was stored, its message comes with the catch-up.
      this.emit({ type: 'uploadEnded', file: upload.file, error: null });
    }
    this.finishing.clear();
    for (const [frame, id] of this.deferred.splice(0)) {
      this.command(frame, id);
    }
  }

  command(frame, id) {
    if (this.phase.name === 'ended') {
      return;
    }
    if (isMessage(frame)) {
      // Kept until acknowledged, in the order typed; sent now if caught
      // up, else with the rest once the connection is.
      const messageId = id ?? this.newId();
      this.pending.set(messageId, frame);
      this.emit({ type: 'queued', count: this.pending.size });
      if (this.phase.name === 'live') {
        this.out.push([messageId, frame]);
      }
      return;
    }
    switch (this.phase.name) {
      case 'live':
        this.out.push([id ?? this.newId(), frame]);
        break;
      case 'connecting':
      case 'greeting':
      case 'catchingUp':
        if (frame.type !== 'typing') {
          this.deferred.push([frame, id]);
        }
        break;
      default:
        if (frame.type !== 'typing') {
          this.emit({ type: 'problem', text: 'offline: that needs the server' });
        }
    }
  }

  // ---- greeting ---------------------------------------------------------

  greeting(frame) {
    if (frame?.type === 'welcome') {
      this.nick = frame.nick;
      // A session another tab or device holds: its rooms are ours too.
      for (const room of frame.rooms || []) {
        if (!this.rooms.has(room)) {
          this.rooms.set(room, null);
          this.unsaved = true;
        }
      }
      if (this.token !== frame.session) {
        this.token = frame.session;
        this.unsaved = true;
      }
      this.pacer.limits(frame.limits || {}, this.now);
      this.limits = frame.limits || {};
      const again = this.welcomedBefore;
      this.welcomedBefore = true;
      this.emit({ type: 'frame', frame, catchUp: again });
      this.join();
    } else if (frame?.type === 'error') {
      this.transmits.push({ type: 'close' });
      if (HELLO_REFUSALS.includes(frame.code)) {
        // Trying again with the same nick or token cannot help.
        return this.fail({ kind: 'refused', code: frame.code, why: frame.message });
      }
      this.lost(`${frame.code}: ${frame.message}`, null);
    }
  }

  // ---- catching up --------------------------------------------------------

  /** Joins every room from where it was. */
  join() {
    const joins = new Map();
    for (const [room, after] of this.rooms) {
      const id = this.newId();
      this.out.push([id, after === null ? { type: 'join', room } : { type: 'join', room, after }]);
      joins.set(id, [room, after]);
    }
    this.phase = {
      name: 'catchingUp', joins, lost: 0, restarted: false, missed: [], paging: 0,
      asked: null, askAt: null, held: [],
    };
    this.page();
  }

  catchingUp(frame) {
    const catchUp = this.phase;
    const id = frame?.id;
    if (frame?.type === 'joined' && catchUp.joins.has(id)) {
      const [, after] = catchUp.joins.get(id);
      catchUp.joins.delete(id);
      if (after === null) {
        // A fresh join: its history is reported as it is.
        this.rooms.set(frame.room, frame.last_seq);
        this.emit({ type: 'frame', frame, catchUp: false });
        return this.page();
      }
      const fresh = frame.resume === 'fresh';
      const gap = frame.resume === 'gap' && frame.gap ? frame.gap : null;
      if (gap) {
        catchUp.lost += gap.to - gap.from + 1;
      }
      if (fresh) {
        catchUp.restarted = true;
      }
      const floor = gap ? gap.to + 1 : after + 1;
      catchUp.missed.push({
        room: frame.room,
        floor,
        lastSeq: frame.last_seq,
        messages: frame.history.filter((m) => fresh || m.seq >= floor),
        gap,
        // After a restart without storage the numbering began again:
        // there is nothing older to page for.
        complete: fresh,
        restarted: fresh,
      });
      this.emit({ type: 'frame', frame, catchUp: true });
    } else if (frame?.type === 'error' && catchUp.joins.has(id)) {
      // A room the server will not have is not asked for again.
      const [room] = catchUp.joins.get(id);
      catchUp.joins.delete(id);
      this.rooms.delete(room);
      this.unsaved = true;
      this.emit({ type: 'frame', frame, catchUp: false });
    } else if (frame?.type === 'history' && id !== undefined && catchUp.asked === id) {
      catchUp.asked = null;
      const room = catchUp.missed[catchUp.paging];
      if (room) {
        const older = frame.messages.filter((m) => m.seq >= room.floor);
        if (!older.length) {
          // Nothing before the first message held: retention dropped what
          // was left since the join.
          catchUp.lost += lostBelowFirst(room);
        }
        room.messages = older.concat(room.messages);
      }
    } else if (frame?.type === 'error' && id !== undefined && catchUp.asked === id) {
      catchUp.asked = null;
      if (frame.code === 'rate_limited' && Number.isFinite(frame.retry_after_ms)) {
        // Paging faster than the server allows: ask again when it says.
        catchUp.askAt = this.now + Math.min(frame.retry_after_ms, PAGE_RETRY_MAX);
      } else {
        // Refused: what it would have held is reported as a gap.
        const room = catchUp.missed[catchUp.paging];
        if (room) {
          catchUp.lost += lostBelowFirst(room);
        }
        this.emit({ type: 'frame', frame, catchUp: false });
      }
    } else {
      catchUp.held.push(frame);
    }
    this.page();
  }

  /** Asks for the next page back, or ends the catch-up once every room is complete. */
  page() {
    const catchUp = this.phase;
    if (catchUp.name !== 'catchingUp' || catchUp.joins.size || catchUp.asked !== null || catchUp.askAt !== null) {
      return;
    }
    const pageMax = this.limits?.history_page_max ?? PAGE_DEFAULT;
    while (catchUp.paging < catchUp.missed.length) {
      const room = catchUp.missed[catchUp.paging];
      const first = firstSeq(room);
      if (room.complete || first <= room.floor || pageMax === 0) {
        catchUp.paging += 1;
        continue;
      }
      const id = this.newId();
      catchUp.asked = id;
      this.out.push([id, { type: 'history', room: room.room, before: first, limit: pageMax }]);
      return;
    }
    this.phase = { name: 'live' };
    this.caughtUp(catchUp);
  }

  /** What was missed is reported, then what came meanwhile, then what is pending goes again, then what was typed meanwhile. */
  caughtUp(catchUp) {
    for (const room of catchUp.missed) {
      const last = room.messages.length ? room.messages[room.messages.length - 1].seq : 0;
      this.rooms.set(room.room, Math.max(last, room.lastSeq));
      this.emit({ type: 'missed', room: room.room, messages: room.messages, gap: room.gap, restarted: room.restarted });
    }
    if (this.upBefore) {
      this.emit({ type: 'resumed', notice: resumedNotice(catchUp) });
    }
    this.upBefore = true;
    this.attempt = 0;
    this.told = null;
    this.emit({ type: 'link', link: 'connected' });
    for (const frame of catchUp.held) {
      this.live(frame);
    }
    for (const [id, frame] of this.pending) {
      this.out.push([id, frame]);
    }
    for (const [frame, id] of this.deferred.splice(0)) {
      this.command(frame, id);
    }
    this.announce();
    // What was said directly meanwhile: the list, then each conversation.
    this.listing = this.newId();
    this.out.push([this.listing, { type: 'conversations' }]);
  }

  // ---- live -----------------------------------------------------------------

  live(frame) {
    if (!frame) {
      return;
    }
    if (this.uploadAnswered(frame)) {
      return;
    }
    const report = this.onFrame(frame);
    if (report) {
      this.emit({ type: 'frame', frame, catchUp: false, retrying: report === 'retrying' });
    }
  }

  /** Keeps the session's view up to date: false for a frame not to report (a message already reported). */
  onFrame(frame) {
    switch (frame.type) {
      case 'joined':
        if (!this.rooms.has(frame.room)) {
          this.unsaved = true;
        }
        this.rooms.set(frame.room, frame.last_seq);
        return true;
      case 'left':
        this.rooms.delete(frame.room);
        this.unsaved = true;
        return true;
      case 'nick':
        this.nick = frame.nick;
        return true;
      case 'message': {
        if (frame.id) {
          this.acknowledged(frame.id);
        }
        if (this.rooms.has(frame.room)) {
          const seen = this.rooms.get(frame.room);
          if (seen !== null && seen >= frame.seq) {
            return false; // delivered twice (a retry answered with the original): reported once
          }
          this.rooms.set(frame.room, frame.seq);
        }
        return true;
      }
      case 'direct':
        if (frame.id) {
          this.acknowledged(frame.id);
        }
        return this.directSeen(frame);
      case 'conversations':
        if (frame.id !== undefined && frame.id === this.listing) {
          this.listing = null;
          for (const listed of frame.conversations) {
            const known = this.conversation(listed.conversation, listed.with);
            if (known.seen === null ? listed.last_seq > 0 : known.seen < listed.last_seq) {
              this.read(listed.conversation, known.seen);
            }
          }
        }
        return true;
      case 'conversation': {
        const read = this.reads.get(frame.id);
        if (read === undefined) {
          return true; // a page the user asked for
        }
        this.reads.delete(frame.id);
        return this.readAnswered(read, frame);
      }
      case 'error':
        if (frame.id !== undefined && this.reads.has(frame.id)) {
          const read = this.reads.get(frame.id);
          this.reads.delete(frame.id);
          if (refusedForNow(frame)) {
            // Asked again when the server says.
            this.rereads.push([read.key, read.after]);
            const at = this.now + Math.min(Math.max(frame.retry_after_ms, 50), PAGE_RETRY_MAX);
            this.rereadAt = this.rereadAt === null ? at : Math.min(this.rereadAt, at);
            return false;
          }
          return true;
        }
        if (frame.id && refusedForNow(frame) && this.pending.has(frame.id)) {
          // Refused for now: the same message goes again when the server
          // says, and is delivered once (its id is the same).
          const at = this.now + Math.min(Math.max(frame.retry_after_ms, 50), 60000);
          this.retryAt = this.retryAt === null ? at : Math.min(this.retryAt, at);
          if (!this.retry.includes(frame.id)) {
            this.retry.push(frame.id);
          }
          return 'retrying';
        }
        if (frame.id) {
          this.acknowledged(frame.id);
        }
        return true;
      default:
        return true;
    }
  }

  /** The conversation of `key`, known from now on. */
  conversation(key, withNick) {
    let known = this.conversations.get(key);
    if (!known) {
      known = { with: withNick, seen: null };
      this.conversations.set(key, known);
    }
    known.with = withNick || known.with;
    return known;
  }

  /** A live direct message: false if it was reported already. */
  directSeen(frame) {
    if (!frame.conversation) {
      return true; // an older server: no numbering
    }
    const known = this.conversation(frame.conversation, frame.with);
    if (known.seen !== null && frame.seq <= known.seen) {
      return false; // delivered twice (a retry answered with the original)
    }
    if (known.seen !== null && frame.seq > known.seen + 1) {
      this.read(frame.conversation, known.seen); // what came between
    }
    known.seen = frame.seq;
    return true;
  }

  /** Asks for a conversation's messages after `after` (its newest if null). */
  read(key, after) {
    const id = this.newId();
    this.reads.set(id, { key, after, messages: [], gap: null, paging: false });
    const frame = { type: 'conversation', conversation: key };
    this.out.push([id, after === null ? frame : { ...frame, after }]);
  }

  /**
   * A conversation read answered: pages back until everything after
   * `after` is here (a resume is capped), then reports it all as one
   * `conversation` frame, with a gap for what retention dropped.
   */
  readAnswered(read, frame) {
    const fresh = read.after === null;
    if (!read.paging) {
      read.resume = frame.resume;
      read.gap = frame.resume === 'gap' && frame.gap ? frame.gap : null;
    }
    const kept = frame.messages.filter((m) => fresh || m.seq > read.after);
    read.messages = kept.concat(read.messages);
    const first = read.messages.length ? read.messages[0].seq : frame.last_seq + 1;
    if (!fresh && !read.gap && first > read.after + 1) {
      if (kept.length) {
        const id = this.newId();
        this.reads.set(id, { ...read, paging: true });
        const limit = this.limits?.history_page_max ?? PAGE_DEFAULT;
        this.out.push([id, { type: 'conversation', conversation: read.key, before: first, limit }]);
        return false;
      }
      // Nothing older came back: retention dropped it meanwhile.
      read.gap = { from: read.after + 1, to: first - 1 };
    }
    const known = this.conversation(read.key, frame.with);
    const last = read.messages.length ? read.messages[read.messages.length - 1].seq : 0;
    known.seen = Math.max(known.seen ?? 0, last);
    const reported = {
      type: 'conversation', conversation: read.key, with: frame.with, messages: read.messages,
      last_seq: frame.last_seq, resume: read.gap ? 'gap' : read.resume,
    };
    if (read.gap) {
      reported.gap = read.gap;
    }
    this.emit({ type: 'frame', frame: reported, catchUp: fresh });
    return false;
  }

  acknowledged(id) {
    if (this.pending.delete(id)) {
      this.retry = this.retry.filter((retry) => retry !== id);
      this.emit({ type: 'queued', count: this.pending.size });
    }
  }

  // ---- uploads (one at a time) ---------------------------------------------

  upload(upload) {
    switch (this.phase.name) {
      case 'live':
        this.uploads.push({ upload, id: null, chunkBytes: null, sent: 0, reading: false });
        if (this.uploads.length === 1) {
          this.announce();
        }
        break;
      case 'connecting':
      case 'greeting':
      case 'catchingUp':
        this.uploads.push({ upload, id: null, chunkBytes: null, sent: 0, reading: false });
        break;
      default:
        this.emit({ type: 'uploadEnded', file: upload.file, error: `${upload.name}: offline; files need the server` });
    }
  }

  /** Announces the first upload, if it is not yet. */
  announce() {
    const sending = this.uploads[0];
    if (!sending || sending.id !== null || this.phase.name !== 'live' || this.uploadAt !== null) {
      return;
    }
    sending.id = this.newId();
    const { room, name, mime, size } = sending.upload;
    this.out.push([sending.id, { type: 'upload', room, name, mime, size }]);
  }

  /** The server's answer to the upload in progress: true for one not to report. */
  uploadAnswered(frame) {
    const done = frame.id !== undefined ? this.finishing.get(frame.id) : undefined;
    if (done && (frame.type === 'message' || frame.type === 'error')) {
      this.finishing.delete(frame.id);
      const error = frame.type === 'error' ? `${done.name}: ${frame.message}` : null;
      this.emit({ type: 'uploadEnded', file: done.file, error });
      return frame.type === 'error'; // the message itself is reported
    }
    const sending = this.uploads[0];
    if (!sending || sending.id === null || frame.id !== sending.id) {
      return false;
    }
    if (frame.type === 'upload_ready') {
      sending.chunkBytes = Math.max(1024, Math.min(frame.chunk_bytes || 65536, 1 << 20));
      return true;
    }
    if (frame.type === 'error') {
      if (refusedForNow(frame) && frame.retry_after_ms < UPLOAD_RETRY_MAX && sending.chunkBytes === null) {
        // Refused for now: announced again, with a new id, when the server says.
        sending.id = null;
        this.uploadAt = this.now + Math.max(frame.retry_after_ms, 50);
        this.emit({ type: 'uploadWaiting', file: sending.upload.file });
        return true;
      }
      this.uploads.shift();
      this.emit({ type: 'uploadEnded', file: sending.upload.file, error: `${sending.upload.name}: ${frame.message}` });
      this.announce();
      return true;
    }
    return false;
  }

  /** Gives up the first upload: the server is told if it is sending. */
  cancelUpload(why) {
    const sending = this.uploads.shift();
    if (sending?.chunkBytes !== null) {
      this.out.push([null, { type: 'upload_cancel' }]);
    }
    if (sending) {
      this.emit({ type: 'uploadEnded', file: sending.upload.file, error: why });
    }
    this.announce();
  }
}

/** The seq the next page ends before. */
function firstSeq(room) {
  return room.messages.length ? room.messages[0].seq : room.lastSeq + 1;
}

/** What is left between the floor and the first message held is gone; it joins the gap. How many that is. */
function lostBelowFirst(room) {
  const first = firstSeq(room);
  room.complete = true;
  if (first <= room.floor) {
    return 0;
  }
  const lost = first - room.floor;
  room.gap = { from: room.gap ? room.gap.from : room.floor, to: first - 1 };
  room.floor = first;
  return lost;
}

/** How the rooms answered a reconnect, in one line. */
function resumedNotice(catchUp) {
  if (catchUp.restarted) {
    return 'reconnected; the server lost its history (it restarted without storage)';
  }
  if (catchUp.lost === 0) {
    return 'reconnected, resumed';
  }
  return catchUp.lost === 1 ? 'reconnected, gap of 1 message' : `reconnected, gap of ${catchUp.lost} messages`;
}
