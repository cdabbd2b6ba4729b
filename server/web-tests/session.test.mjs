// The page's session (server/web/js/session.js) with a fake clock and
// hand-written server frames, in Node: no browser, no server, no timers.
// The same cases as the terminal client's session tests
// (client-cli/src/session/tests.rs), since the two mirror each other.
import { test } from 'node:test';
import assert from 'node:assert/strict';

import { BACKOFF_MAX, BACKOFF_MIN, Session } from '../web/js/session.js';

const LIMITS = {
  history_page_max: 200, messages_per_sec: 1000, messages_burst: 1000,
  frames_per_sec: 1000, frames_burst: 1000, max_upload_bytes: 1 << 20,
};

/** A seeded source of [0, 1), so backoff jitter replays. */
function seeded(seed) {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13; x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5; x >>>= 0;
    return x / 2 ** 32;
  };
}

const message = (room, seq, id) => ({ type: 'message', room, seq, ts: seq, from: 'bob', text: `m${seq}`, ...(id ? { id } : {}) });
const messages = (room, from, to) => Array.from({ length: to - from + 1 }, (_, i) => message(room, from + i));
const seqs = (list) => list.map((m) => m.seq);

class Harness {
  constructor(config = {}, saved = {}) {
    this.now = 1000;
    this.sent = [];
    this.other = [];
    this.events = [];
    // The conversation list asked for once caught up: set apart unless a
    // test is about conversations.
    this.listings = [];
    this.keepListings = false;
    this.session = new Session(
      { nick: 'ann', accessToken: null, rooms: [['lobby', null]], random: seeded(7), ...config },
      saved,
      this.now,
    );
    this.drain();
  }

  drain() {
    for (let t = this.session.pollTransmit(); t; t = this.session.pollTransmit()) {
      if (t.type === 'text') {
        const frame = JSON.parse(t.text);
        (frame.type === 'conversations' && !this.keepListings ? this.listings : this.sent).push(frame);
      } else {
        this.other.push(t);
      }
    }
    for (let e = this.session.pollEvent(); e; e = this.session.pollEvent()) {
      this.events.push(e);
    }
  }

  advance(ms) {
    this.now += ms;
    this.session.handleTimeout(this.now);
    this.drain();
  }

  runFor(ms) {
    const end = this.now + ms;
    for (let at = this.session.pollTimeout(); at !== null && at <= end; at = this.session.pollTimeout()) {
      this.now = Math.max(this.now, at);
      this.session.handleTimeout(this.now);
      this.drain();
    }
    this.now = end;
  }

  frame(frame) {
    this.session.handleFrame(this.now, JSON.stringify(frame));
    this.drain();
  }

  send(frame, id = null) {
    this.session.handleCommand(this.now, { type: 'send', frame, id });
    this.drain();
  }

  disconnect(how) {
    this.session.handleDisconnected(this.now, how);
    this.drain();
  }

  takeSent() {
    return this.sent.splice(0);
  }

  takeOther() {
    return this.other.splice(0);
  }

  greet(limits = LIMITS) {
    assert.deepEqual(this.takeOther(), [{ type: 'connect' }]);
    this.session.handleConnected(this.now);
    this.drain();
    const [hello] = this.takeSent();
    assert.equal(hello.type, 'hello');
    this.frame({ type: 'welcome', id: hello.id, session: 'token-1', nick: 'ann', limits });
  }

  joins() {
    return this.takeSent().filter((f) => f.type === 'join');
  }

  /** Connected and caught up in lobby, with `history`. */
  up(history = [], lastSeq = 0) {
    this.greet();
    const [join] = this.joins();
    assert.equal(join.after, undefined);
    this.frame({ type: 'joined', id: join.id, room: 'lobby', members: ['ann'], history, last_seq: lastSeq, resume: 'fresh' });
    assert.ok(this.events.some((e) => e.type === 'link' && e.link === 'connected'));
  }

  waitingUntil() {
    const waiting = this.events.filter((e) => e.type === 'link' && e.link === 'waiting').pop();
    assert.ok(waiting, 'the session waits to reconnect');
    return waiting.until;
  }

  lose() {
    this.disconnect({ kind: 'broken', why: 'reset' });
    this.advance(this.waitingUntil() - this.now);
    this.events = [];
  }

  missed() {
    return this.events.filter((e) => e.type === 'missed');
  }

  notices() {
    return this.events.filter((e) => ['resumed', 'notice', 'problem'].includes(e.type)).map((e) => e.notice ?? e.text);
  }

  reported() {
    return this.events.filter((e) => e.type === 'frame' && !e.catchUp && e.frame.type === 'message').map((e) => e.frame.seq);
  }
}

test('messages typed while connecting go with their ids once the rooms are joined', () => {
  const h = new Harness({}, { session: 'token-0', rooms: ['dev'] });
  h.send({ type: 'say', room: 'lobby', text: 'typed while connecting' }, 'm1');
  h.greet();
  const joins = h.joins();
  assert.deepEqual(joins.map((j) => j.room), ['lobby', 'dev'], 'the configured rooms, then the saved ones');
  for (const join of joins) {
    h.frame({ type: 'joined', id: join.id, room: join.room, members: [], history: [], last_seq: 0, resume: 'fresh' });
  }
  const sent = h.takeSent();
  assert.deepEqual(sent.map((f) => [f.type, f.id]), [['say', 'm1']]);
  h.frame(message('lobby', 1, 'm1'));
  assert.equal(h.session.pending.size, 0);
  assert.deepEqual(h.session.pollSave(), { session: 'token-1', rooms: ['lobby', 'dev'] });
});

test('a session resumed from another tab or device joins the rooms it is in', () => {
  const h = new Harness({}, { session: 'token-1' });
  assert.deepEqual(h.takeOther(), [{ type: 'connect' }]);
  h.session.handleConnected(h.now);
  h.drain();
  const [hello] = h.takeSent();
  h.frame({ type: 'welcome', id: hello.id, session: 'token-1', nick: 'ann', resumed: true, rooms: ['dev', 'lobby'], limits: LIMITS });
  assert.deepEqual(h.joins().map((j) => [j.room, j.after]), [['lobby', undefined], ['dev', undefined]]);
});

test('conversations are listed once caught up and each is read from where it was, paging back past a cap', () => {
  const h = new Harness();
  h.keepListings = true;
  h.up();
  const [list] = h.takeSent();
  assert.equal(list.type, 'conversations');
  h.frame({ type: 'conversations', id: list.id, conversations: [
    { conversation: '~a', with: 'bob', last_seq: 3, last_ts: 1 },
    { conversation: '~b', with: 'cy', last_seq: 0, last_ts: 1 },
  ] });
  const [read] = h.takeSent();
  assert.deepEqual([read.type, read.conversation, read.after], ['conversation', '~a', undefined], 'new here: its newest; nothing to read of ~b');
  const line = (seq) => ({ seq, ts: seq, from: 'bob', text: `d${seq}` });
  h.frame({ type: 'conversation', id: read.id, conversation: '~a', with: 'bob', messages: [line(2), line(3)], last_seq: 3, resume: 'fresh' });
  const reported = h.events.filter((e) => e.type === 'frame' && e.frame.type === 'conversation');
  assert.deepEqual(reported.map((e) => [e.catchUp, e.frame.messages.map((m) => m.seq)]), [[true, [2, 3]]]);
  // A direct message delivered twice is reported once.
  h.events = [];
  const direct = { type: 'direct', from: 'bob', to: 'ann', with: 'bob', conversation: '~a', seq: 4, text: 'x', ts: 4 };
  h.frame(direct);
  h.frame(direct);
  assert.equal(h.events.filter((e) => e.type === 'frame').length, 1);
  // Reconnected: read after the newest seen; the server's resume is capped,
  // so it pages back to it.
  h.lose();
  h.greet();
  for (const join of h.joins()) {
    h.frame({ type: 'joined', id: join.id, room: join.room, members: [], history: [], last_seq: 0, resume: 'resumed' });
  }
  const [again] = h.takeSent();
  h.frame({ type: 'conversations', id: again.id, conversations: [{ conversation: '~a', with: 'bob', last_seq: 9, last_ts: 9 }] });
  const [resume] = h.takeSent();
  assert.equal(resume.after, 4);
  h.events = [];
  h.frame({ type: 'conversation', id: resume.id, conversation: '~a', with: 'bob', messages: [line(8), line(9)], last_seq: 9, resume: 'resumed' });
  const [page] = h.takeSent();
  assert.deepEqual([page.before, page.conversation], [8, '~a']);
  h.frame({ type: 'conversation', id: page.id, conversation: '~a', with: 'bob', messages: [line(5), line(6), line(7)], last_seq: 9, resume: 'fresh' });
  const done = h.events.filter((e) => e.type === 'frame' && e.frame.type === 'conversation');
  assert.deepEqual(done.map((e) => [e.catchUp, e.frame.messages.map((m) => m.seq), e.frame.resume]), [[false, [5, 6, 7, 8, 9], 'resumed']]);
});

test('an outage is told once, not on every attempt', () => {
  const h = new Harness();
  h.up();
  h.events = [];
  h.disconnect({ kind: 'broken', why: 'reset' });
  for (const why of ['refused', 'refused', 'refused', 'other']) {
    h.advance(h.waitingUntil() - h.now);
    assert.deepEqual(h.takeOther(), [{ type: 'connect' }]);
    h.disconnect({ kind: 'unreachable', why });
  }
  const told = h.events.filter((e) => e.type === 'notice').map((e) => e.text);
  assert.deepEqual(told, ['disconnected: reset', 'cannot connect: refused', 'cannot connect: other']);
});

test('backoff grows with seeded jitter and a restart delay is used as given', () => {
  const delays = (seed) => {
    const h = new Harness({ random: seeded(seed) });
    const out = [];
    for (let i = 0; i < 6; i += 1) {
      assert.deepEqual(h.takeOther(), [{ type: 'connect' }]);
      h.disconnect({ kind: 'unreachable', why: 'refused' });
      const until = h.waitingUntil();
      out.push(until - h.now);
      h.advance(until - h.now);
    }
    return out;
  };
  const first = delays(7);
  assert.deepEqual(first, delays(7), 'the same seed, the same delays');
  assert.notDeepEqual(first, delays(8));
  first.forEach((delay, attempt) => assert.ok(delay <= Math.min(BACKOFF_MIN * 2 ** attempt, BACKOFF_MAX)));

  const h = new Harness();
  h.up();
  h.disconnect({ kind: 'closed', code: 1012, reason: 'service restart; retry_ms=3200' });
  assert.equal(h.waitingUntil() - h.now, 3200);
  assert.equal(h.events.pop().restarting, true);
});

test('a resume past its cap pages back with the announced page size, holding what comes meanwhile', () => {
  const h = new Harness();
  h.up(messages('lobby', 1, 10), 10);
  h.lose();
  h.greet({ ...LIMITS, history_page_max: 7 });
  const [join] = h.joins();
  assert.equal(join.after, 10);
  h.frame({ type: 'joined', id: join.id, room: 'lobby', members: [], history: messages('lobby', 31, 40), last_seq: 40, resume: 'resumed' });
  let before = 31;
  while (before > 11) {
    const [ask] = h.takeSent();
    assert.deepEqual([ask.type, ask.before, ask.limit], ['history', before, 7]);
    if (before === 24) {
      h.frame(message('lobby', 41));
    }
    const from = Math.max(before - 7, 1);
    h.frame({ type: 'history', id: ask.id, room: 'lobby', messages: messages('lobby', from, before - 1) });
    before = from;
  }
  const missed = h.missed();
  assert.equal(missed.length, 1);
  assert.deepEqual(seqs(missed[0].messages), Array.from({ length: 30 }, (_, i) => 11 + i));
  assert.ok(h.notices().includes('reconnected, resumed'));
  const missedAt = h.events.findIndex((e) => e.type === 'missed');
  const liveAt = h.events.findIndex((e) => e.type === 'frame' && e.frame.type === 'message');
  assert.ok(missedAt < liveAt, 'what was missed comes before what came meanwhile');
  assert.deepEqual(h.reported(), [41]);
});

test('history dropped while paging back is reported as a gap', () => {
  const h = new Harness();
  h.up(messages('lobby', 1, 10), 10);
  h.lose();
  h.greet({ ...LIMITS, history_page_max: 5 });
  const [join] = h.joins();
  h.frame({ type: 'joined', id: join.id, room: 'lobby', members: [], history: messages('lobby', 31, 40), last_seq: 40, resume: 'resumed' });
  let [ask] = h.takeSent();
  h.frame({ type: 'history', id: ask.id, room: 'lobby', messages: messages('lobby', 26, 30) });
  [ask] = h.takeSent();
  // Meanwhile the room moved on and retention dropped 11..=25.
  h.frame({ type: 'history', id: ask.id, room: 'lobby', messages: [] });
  const [missed] = h.missed();
  assert.deepEqual(missed.gap, { from: 11, to: 25 });
  assert.deepEqual(seqs(missed.messages), Array.from({ length: 15 }, (_, i) => 26 + i));
  assert.ok(h.notices().includes('reconnected, gap of 15 messages'));
});

test('a connection lost while catching up resumes from what was reported', () => {
  const h = new Harness();
  h.up(messages('lobby', 1, 10), 10);
  h.lose();
  h.greet();
  const [join] = h.joins();
  h.frame({ type: 'joined', id: join.id, room: 'lobby', members: [], history: messages('lobby', 300, 400), last_seq: 400, resume: 'resumed' });
  assert.equal(h.takeSent().length, 1, 'a page asked for');
  h.lose();
  h.greet();
  assert.equal(h.joins()[0].after, 10);
  assert.deepEqual(h.missed(), []);
});

test('a message delivered twice is reported once; one refused for now goes again with its id', () => {
  const h = new Harness();
  h.up();
  h.send({ type: 'say', room: 'lobby', text: 'hi' }, 'mine');
  h.frame(message('lobby', 1, 'mine'));
  h.frame(message('lobby', 1, 'mine'));
  assert.deepEqual(h.reported(), [1]);
  h.takeSent();
  h.send({ type: 'say', room: 'lobby', text: 'again' }, 'm2');
  assert.equal(h.takeSent().length, 1);
  h.frame({ type: 'error', id: 'm2', code: 'rate_limited', message: 'slow down', retry_after_ms: 500 });
  assert.equal(h.events.pop().retrying, true, 'not a refusal to show');
  h.advance(499);
  assert.deepEqual(h.takeSent(), []);
  h.advance(1);
  assert.deepEqual(h.takeSent().map((f) => f.id), ['m2']);
});

test('frames are paced to the announced rates', () => {
  const h = new Harness();
  h.greet({ ...LIMITS, messages_per_sec: 10, messages_burst: 5 });
  const [join] = h.joins();
  h.frame({ type: 'joined', id: join.id, room: 'lobby', members: [], history: [], last_seq: 0, resume: 'fresh' });
  for (let n = 0; n < 6; n += 1) {
    h.send({ type: 'say', room: 'lobby', text: `line ${n}` });
  }
  assert.equal(h.takeSent().length, 3, 'a burst of 5, less the margin of 2');
  const next = h.session.pollTimeout() - h.now;
  assert.ok(Math.abs(next - 1000 / 9) < 0.1, String(next));
  h.runFor(1000);
  assert.equal(h.takeSent().length, 3);
});

test('failures that reconnecting cannot mend end the session', () => {
  let h = new Harness();
  h.up();
  h.disconnect({ kind: 'closed', code: 4009, reason: 'session resumed elsewhere' });
  assert.equal(h.events.pop().failure.kind, 'replaced');
  h = new Harness();
  assert.deepEqual(h.takeOther(), [{ type: 'connect' }]);
  h.session.handleConnected(h.now);
  h.frame({ type: 'error', code: 'nick_taken', message: 'taken' });
  assert.deepEqual(h.events.pop().failure, { kind: 'refused', code: 'nick_taken', why: 'taken' });
  assert.deepEqual(h.takeOther(), [{ type: 'close' }]);
});

test('an upload is announced, paced, interleaved with messages, and confirmed by its message', () => {
  const h = new Harness();
  h.greet({ ...LIMITS, frames_per_sec: 10, frames_burst: 5 });
  const [join] = h.joins();
  h.frame({ type: 'joined', id: join.id, room: 'lobby', members: [], history: [], last_seq: 0, resume: 'fresh' });
  h.session.handleCommand(h.now, { type: 'upload', upload: { file: 1, room: 'lobby', name: 'a.bin', mime: 'application/octet-stream', size: 2500 } });
  h.runFor(200); // the conversation list went first
  const [announce] = h.takeSent();
  assert.deepEqual([announce.type, announce.size], ['upload', 2500]);
  h.frame({ type: 'upload_ready', id: announce.id, chunk_bytes: 1024 });
  let parts = 0;
  let saidAfter = null;
  for (let i = 0; i < 20; i += 1) {
    for (const transmit of h.takeOther()) {
      assert.equal(transmit.type, 'chunk');
      assert.equal(transmit.offset, parts * 1024);
      parts += 1;
      h.session.handleChunk(h.now, 1, Math.min(1024, 2500 - transmit.offset));
      h.drain();
    }
    if (parts === 1 && saidAfter === null) {
      h.send({ type: 'say', room: 'lobby', text: 'meanwhile' });
      saidAfter = -1;
    }
    if (h.takeSent().length && saidAfter === -1) {
      saidAfter = parts;
    }
    h.runFor(150);
  }
  assert.equal(parts, 3);
  assert.ok(saidAfter > 0 && saidAfter < 3, `the message went between the parts (${saidAfter})`);
  assert.equal(h.session.wantsFile(1), false);
  h.frame({ ...message('lobby', 1, announce.id), attachment: { id: 'x', name: 'a.bin', mime: 'application/octet-stream', size: 2500 } });
  assert.deepEqual(h.events.filter((e) => e.type === 'uploadEnded'), [{ type: 'uploadEnded', file: 1, error: null }]);
});
