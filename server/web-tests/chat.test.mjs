// The chat page in real headless Chromium against the real chat-server
// binary. Run by ./scripts/test (node --test).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import path from 'node:path';
import fs from 'node:fs';
import os from 'node:os';
import * as support from './support.mjs';

const { here, WAIT, serverBin } = support;
const { startServer, stopServer, say, seeMessage, countMessages, makePng, recordBanners } = support;

const browser = support.browserForFile();

/** A fresh browser context (its own localStorage) logged in as `nick`. */
const login = (url, nick) => support.login(browser(), url, nick);

/** A second tab in the same browser as `who`: the same session, resumed (in #lobby). */
async function anotherTab(who, url) {
  const tab = await who.context.newPage();
  tab.setDefaultTimeout(WAIT);
  await tab.goto(url);
  await tab.waitForFunction(() => document.querySelector('#room-title')?.textContent === '#lobby');
  return tab;
}

/** What axe-core (the accessibility checker) finds serious or critical on the page. */
async function axe(page) {
  // Evaluated rather than added as a script: the page's CSP allows no
  // script but its own, rightly.
  const source = fs.readFileSync(path.join(here, 'node_modules', 'axe-core', 'axe.min.js'), 'utf8');
  await page.evaluate(`${source}\n;0`);
  const found = await page.evaluate(async () => {
    const results = await window.axe.run(document, { resultTypes: ['violations'] });
    return results.violations.map((v) => ({ id: v.id, impact: v.impact, nodes: v.nodes.map((n) => n.target.join(' ')) }));
  });
  return found.filter((v) => v.impact === 'serious' || v.impact === 'critical');
}

test('two pages chat, and HTML in a message renders as text', async () => {
  const server = await startServer();
  try {
    const alice = await login(server.url, 'alice');
    const bob = await login(server.url, 'bob');
    // alice sees bob arrive, in the notices and the members list.
    await alice.page.waitForFunction(() =>
      [...document.querySelectorAll('#members li')].some((li) => li.textContent === 'bob'));
    await alice.page.waitForFunction(() =>
      [...document.querySelectorAll('#messages li.notice .text')].some((li) => li.textContent === 'bob joined'));

    await say(alice.page, 'hello from alice');
    await seeMessage(bob.page, 'hello from alice');
    await seeMessage(alice.page, 'hello from alice');

    const hostile = '<img src=x onerror=alert(1)>';
    await say(bob.page, hostile);
    await seeMessage(alice.page, hostile);
    assert.equal(await alice.page.locator('#messages img').count(), 0, 'no element was created from the text');

    // Shift+Enter is a newline, Enter sends both lines as one message.
    await alice.page.fill('#text', 'line one');
    await alice.page.press('#text', 'Shift+Enter');
    await alice.page.type('#text', 'line two');
    await alice.page.press('#text', 'Enter');
    await seeMessage(bob.page, 'line one\nline two');

    // /join switches rooms; the other page does not see that room's messages.
    await say(alice.page, '/join dev');
    await alice.page.waitForFunction(() => document.querySelector('#room-title')?.textContent === '#dev');
    await say(alice.page, 'only in dev');
    await seeMessage(alice.page, 'only in dev');
    assert.equal(await countMessages(bob.page, 'only in dev'), 0);

    // Messages show in the room's order.
    const seqs = await bob.page.evaluate(() =>
      [...document.querySelectorAll('#messages li[data-seq]')].map((li) => Number(li.dataset.seq)));
    assert.deepEqual(seqs, [...seqs].sort((a, b) => a - b));
    assert.equal(seqs.length, 3);

    assert.deepEqual(alice.problems, []);
    assert.deepEqual(bob.problems, []);
    // The nick is remembered for the next visit.
    assert.equal(await alice.page.evaluate(() => localStorage.getItem('chat.nick')), 'alice');
    await alice.context.close();
    await bob.context.close();
  } finally {
    await stopServer(server.child);
  }
});

test('the page resumes after the server restarts: banner, no loss, no duplicates', async () => {
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'chat-web-'));
  // Reconnect delays are spread over 2 s instead of the default 10 s.
  const drain = ['--drain-window', '2s'];
  let server = await startServer('127.0.0.1:0', dataDir, drain);
  try {
    const alice = await login(server.url, 'alice');
    const bob = await login(server.url, 'bob');
    await say(alice.page, 'before restart');
    await seeMessage(bob.page, 'before restart');

    const bannerShown = await recordBanners(alice.page);
    assert.equal(await stopServer(server.child), 0, 'SIGTERM exits 0');
    // The server closed with 1012 and a delay; the page says it waits that
    // long (a short delay may already have been followed by a failed try).
    await bannerShown(/server is restarting; reconnecting in [0-2]\.\d s/);
    // Typed while the server is down: kept, and sent once it is back.
    await say(alice.page, 'typed while down');
    // Same address and data again, so the pages can find it and resume.
    server = await startServer(server.addr, dataDir, drain);
    for (const page of [alice.page, bob.page]) {
      await page.waitForFunction(() => document.querySelector('#status')?.textContent === 'connected');
      await page.waitForSelector('#banner', { state: 'hidden' });
    }
    await seeMessage(bob.page, 'typed while down');
    await say(bob.page, 'after restart');
    await seeMessage(alice.page, 'after restart');
    for (const page of [alice.page, bob.page]) {
      for (const text of ['before restart', 'typed while down', 'after restart']) {
        assert.equal(await countMessages(page, text), 1, `${text} shown once`);
      }
      const seqs = await page.evaluate(() =>
        [...document.querySelectorAll('#messages li[data-seq]')].map((li) => Number(li.dataset.seq)));
      assert.deepEqual(seqs, [1, 2, 3], 'numbering continued across the restart');
    }
    assert.deepEqual(alice.problems, []);
    await alice.context.close();
    await bob.context.close();
  } finally {
    await stopServer(server.child);
    fs.rmSync(dataDir, { recursive: true, force: true });
  }
});

test('a page away for longer than one resume carries catches up in full, in order', async () => {
  const server = await startServer('127.0.0.1:0', null, [
    '--messages-per-sec', '10000', '--messages-burst', '10000',
    '--frames-per-sec', '10000', '--frames-burst', '10000',
  ]);
  try {
    const alice = await login(server.url, 'alice');
    const bob = await login(server.url, 'bob');
    // alice's connection drops and she stays away (no reconnect yet).
    await alice.page.evaluate(() => window.chat.offline());
    await bob.page.evaluate(() => {
      for (let i = 1; i <= 450; i += 1) {
        window.chat.send({ type: 'say', room: 'lobby', text: `bulk ${i}` }, `bulk-${i}`);
      }
    });
    await seeMessage(bob.page, 'bulk 450');
    await alice.page.evaluate(() => window.chat.online());
    await seeMessage(alice.page, 'bulk 450');
    await alice.page.waitForFunction(() => document.querySelectorAll('#messages li[data-seq]').length === 450);
    const seqs = await alice.page.evaluate(() =>
      [...document.querySelectorAll('#messages li[data-seq]')].map((li) => Number(li.dataset.seq)));
    assert.deepEqual(seqs, Array.from({ length: 450 }, (_, i) => i + 1), 'every missed message, in order, once');
    assert.deepEqual(alice.problems, []);
    await alice.context.close();
    await bob.context.close();
  } finally {
    await stopServer(server.child);
  }
});

test('with authentication on, the page logs in with an access token and nothing else', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'chat-auth-'));
  const secretFile = path.join(dir, 'secret');
  fs.writeFileSync(secretFile, 'a browser test secret, 32 bytes at least\n');
  const server = await startServer('127.0.0.1:0', null, ['--auth-secret-file', secretFile]);
  try {
    const made = spawnSync(serverBin, ['token', '--nick', 'carol', '--rooms', 'lobby', '--auth-secret-file', secretFile]);
    assert.equal(made.status, 0, String(made.stderr));
    const token = String(made.stdout).trim();

    const context = await browser().newContext();
    const page = await context.newPage();
    page.setDefaultTimeout(WAIT);
    await page.goto(server.url);
    // A nick alone is refused: the server wants a token.
    await page.fill('#nick-input', 'mallory');
    await page.click('#login-form button[type=submit]');
    await page.waitForFunction(() => /access token/.test(document.querySelector('#login-error')?.textContent));
    // The token names the nick.
    await page.fill('#nick-input', '');
    await page.fill('#token-input', token);
    await page.click('#login-form button[type=submit]');
    await page.waitForFunction(() => document.querySelector('#me')?.textContent === 'carol');
    await page.waitForFunction(() => document.querySelector('#room-title')?.textContent === '#lobby');
    await say(page, 'signed in');
    await seeMessage(page, 'signed in');
    await context.close();
  } finally {
    await stopServer(server.child);
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('over TLS the page and its WebSocket work on one port', async () => {
  const server = await startServer('127.0.0.1:0', null, ['--tls-self-signed']);
  try {
    assert.match(server.url, /^https:/);
    // The certificate is made up at start: this context is told to accept it.
    const context = await browser().newContext({ ignoreHTTPSErrors: true });
    const page = await context.newPage();
    page.setDefaultTimeout(WAIT);
    await page.goto(server.url);
    await page.fill('#nick-input', 'dave');
    await page.click('#login-form button[type=submit]');
    await page.waitForFunction(() => document.querySelector('#me')?.textContent === 'dave');
    await say(page, 'sealed');
    await seeMessage(page, 'sealed');
    assert.equal(await page.evaluate(() => window.chat.url().startsWith('wss://')), true);
    await context.close();
  } finally {
    await stopServer(server.child);
  }
});

test('a burst over the message rate is paced to it, and each message arrives once', async () => {
  // Two messages at once, then four a second: the page keeps to that
  // (refusals that do come are sent again: session.test.mjs).
  const server = await startServer('127.0.0.1:0', null, ['--messages-per-sec', '4', '--messages-burst', '2']);
  try {
    const alice = await login(server.url, 'alice');
    const bob = await login(server.url, 'bob');
    await alice.page.evaluate(() => {
      for (let i = 1; i <= 6; i += 1) {
        window.chat.send({ type: 'say', room: 'lobby', text: `burst ${i}` });
      }
    });
    for (let i = 1; i <= 6; i += 1) {
      await seeMessage(bob.page, `burst ${i}`);
      await seeMessage(alice.page, `burst ${i}`);
    }
    for (const page of [alice.page, bob.page]) {
      for (let i = 1; i <= 6; i += 1) {
        assert.equal(await countMessages(page, `burst ${i}`), 1, `burst ${i} shown once`);
      }
    }
    const errors = await alice.page.evaluate(() => document.querySelectorAll('#messages li.error').length);
    assert.equal(errors, 0, 'nothing refused shows as an error');
    assert.deepEqual(alice.problems, []);
    await alice.context.close();
    await bob.context.close();
  } finally {
    await stopServer(server.child);
  }
});

// ---- files, views, stats (the seed's Socket.IO strengths) -----------------

const artifacts = path.join(here, 'artifacts');

async function screenshot(page, name) {
  fs.mkdirSync(artifacts, { recursive: true });
  await page.screenshot({ path: path.join(artifacts, name), fullPage: false });
}

test('files: picker, paste and drop send to the room; images render; the limit and the room rule hold', async () => {
  const server = await startServer('127.0.0.1:0', null, ['--max-upload', '64KiB']);
  try {
    const alice = await login(server.url, 'alice');
    const bob = await login(server.url, 'bob');
    const carol = await login(server.url, 'carol');
    await say(carol.page, '/join elsewhere');
    await carol.page.waitForFunction(() => document.querySelector('#room-title')?.textContent === '#elsewhere');
    await say(carol.page, '/leave lobby');
    await carol.page.waitForFunction(() =>
      ![...document.querySelectorAll('#room-list button.room')].some((b) => b.textContent.startsWith('#lobby')));

    // The picker; a progress bar shows while it goes.
    await alice.page.evaluate(() => {
      window.sawProgress = false;
      new MutationObserver(() => {
        window.sawProgress ||= Boolean(document.querySelector('#uploads progress'));
      }).observe(document.querySelector('#uploads'), { childList: true, subtree: true });
    });
    const png = await makePng(alice.page);
    await alice.page.setInputFiles('#file-input', { name: 'gradient.png', mimeType: 'image/png', buffer: png });
    // bob's page shows it as an image that really loaded.
    await bob.page.waitForFunction(() => {
      const img = document.querySelector('#messages .attachment img');
      return img && img.complete && img.naturalWidth === 240;
    });
    assert.ok(await alice.page.evaluate(() => window.sawProgress), 'a progress bar was shown');
    await alice.page.waitForFunction(() => document.querySelectorAll('#uploads li').length === 0);
    const id = await bob.page.evaluate(() => document.querySelector('#messages .attachment img').dataset.file);
    assert.match(id, /^[0-9a-f]{64}$/);
    // Click to enlarge.
    await bob.page.click('#messages .attachment button.thumb');
    await bob.page.waitForFunction(() => document.querySelector('#viewer').open
      && document.querySelector('#viewer-image').naturalWidth === 240);
    await screenshot(bob.page, 'upload.png');
    await bob.page.keyboard.press('Escape');

    // Audio gets a player that really decodes it (a quarter second of WAV).
    const rate = 8000;
    const samples = rate / 4;
    const wav = Buffer.alloc(44 + samples);
    wav.write('RIFF', 0); wav.writeUInt32LE(36 + samples, 4); wav.write('WAVE', 8);
    wav.write('fmt ', 12); wav.writeUInt32LE(16, 16); wav.writeUInt16LE(1, 20); wav.writeUInt16LE(1, 22);
    wav.writeUInt32LE(rate, 24); wav.writeUInt32LE(rate, 28); wav.writeUInt16LE(1, 32); wav.writeUInt16LE(8, 34);
    wav.write('data', 36); wav.writeUInt32LE(samples, 40);
    for (let i = 0; i < samples; i += 1) wav[44 + i] = 128 + Math.round(60 * Math.sin(i / 4));
    await alice.page.setInputFiles('#file-input', { name: 'beep.wav', mimeType: 'audio/wav', buffer: wav });
    await bob.page.waitForFunction(() => {
      const audio = document.querySelector('#messages .attachment audio');
      return audio && audio.readyState >= 1 && audio.duration > 0.2 && audio.duration < 0.3;
    });

    // Paste and drop, with a file name that is HTML.
    const hostile = '<img src=x onerror=alert(1)>.txt';
    await alice.page.evaluate((name) => {
      const data = new DataTransfer();
      data.items.add(new File(['pasted text'], name, { type: 'text/plain' }));
      document.querySelector('#text').dispatchEvent(new ClipboardEvent('paste', { clipboardData: data, bubbles: true, cancelable: true }));
    }, hostile);
    await bob.page.waitForFunction((name) =>
      [...document.querySelectorAll('#messages a.download')].some((a) => a.textContent.includes(name)), hostile);
    await alice.page.evaluate(() => {
      const data = new DataTransfer();
      data.items.add(new File(['dropped'], 'dropped.txt', { type: 'text/plain' }));
      const chat = document.querySelector('.chat');
      chat.dispatchEvent(new DragEvent('dragover', { dataTransfer: data, bubbles: true, cancelable: true }));
      chat.dispatchEvent(new DragEvent('drop', { dataTransfer: data, bubbles: true, cancelable: true }));
    });
    await bob.page.waitForFunction(() =>
      [...document.querySelectorAll('#messages a.download')].some((a) => a.textContent.includes('dropped.txt')));
    assert.equal(await bob.page.locator('#messages img').count(), 1, 'only the PNG became an image');
    await say(bob.page, 'thanks alice, got all three');
    await seeMessage(alice.page, 'thanks alice, got all three');
    await screenshot(bob.page, 'chat.png');
    // Downloading gets the very bytes.
    const [download] = await Promise.all([
      bob.page.waitForEvent('download'),
      bob.page.locator('#messages a.download', { hasText: 'dropped.txt' }).click(),
    ]);
    const saved = fs.readFileSync(await download.path(), 'utf8');
    assert.equal(saved, 'dropped');

    // Over the limit: a clear error, nothing sent.
    await alice.page.setInputFiles('#file-input', { name: 'big.bin', mimeType: 'application/octet-stream', buffer: Buffer.alloc(70 * 1024) });
    await alice.page.waitForFunction(() =>
      [...document.querySelectorAll('#messages li.error .text')].some((li) => /big\.bin is 70 KiB; this server takes files up to 64 KiB/.test(li.textContent)));

    // carol is not in the room: the server refuses her the file.
    const status = await carol.page.evaluate(async (file) => {
      const session = localStorage.getItem('chat.session');
      const response = await fetch(`/files/${file}`, { headers: { Authorization: `Bearer ${session}` } });
      return response.status;
    }, id);
    assert.equal(status, 404);
    const anonymous = await carol.page.evaluate(async (file) => (await fetch(`/files/${file}`)).status, id);
    assert.equal(anonymous, 401);

    for (const who of [alice, bob, carol]) {
      assert.deepEqual(who.problems, []);
      await who.context.close();
    }
  } finally {
    await stopServer(server.child);
  }
});

test('three large files attached at once all arrive, paced, while the chat goes on', async () => {
  const server = await startServer();
  try {
    const alice = await login(server.url, 'alice');
    const bob = await login(server.url, 'bob');
    const files = [1, 2, 3].map((n) => ({
      name: `large-${n}.bin`,
      mimeType: 'application/octet-stream',
      buffer: Buffer.alloc(8 * 1000 * 1000, n),
    }));
    await alice.page.setInputFiles('#file-input', files);
    // The chat goes on while they go.
    await say(bob.page, 'anything new?');
    await seeMessage(alice.page, 'anything new?');
    await bob.page.waitForFunction(() =>
      ['large-1.bin', 'large-2.bin', 'large-3.bin'].every((name) =>
        [...document.querySelectorAll('#messages a.download')].some((a) => a.textContent.includes(name))),
    null, { timeout: 60000 });
    await alice.page.waitForFunction(() => document.querySelectorAll('#uploads li').length === 0);
    const errors = await alice.page.evaluate(() =>
      [...document.querySelectorAll('#messages li.error .text')].map((li) => li.textContent));
    assert.deepEqual(errors, [], 'no upload was refused or lost');
    // Each arrived whole.
    const sizes = await bob.page.evaluate(async () => {
      const session = localStorage.getItem('chat.session');
      const links = [...document.querySelectorAll('#messages .attachment')];
      return Promise.all(links.map(async (box) => {
        const file = box.querySelector('[data-file]')?.dataset.file;
        const response = await fetch(`/files/${file}`, { headers: { Authorization: `Bearer ${session}` } });
        return (await response.arrayBuffer()).byteLength;
      }));
    });
    assert.deepEqual(sizes, [8000000, 8000000, 8000000]);
    for (const who of [alice, bob]) {
      assert.deepEqual(who.problems, []);
      await who.context.close();
    }
  } finally {
    await stopServer(server.child);
  }
});

test('typing shows and clears, unread badges, mentions, direct messages in their own view, load older, day separators', async () => {
  const server = await startServer();
  try {
    const alice = await login(server.url, 'alice');
    const bob = await login(server.url, 'bob');
    // Older history than one page: "load older" brings it in.
    for (let n = 1; n <= 60; n += 1) {
      await say(bob.page, `old ${n}`);
    }
    // Past the burst the page re-sends refused ones as the server allows,
    // so they may land out of order: wait for all of them.
    await bob.page.waitForFunction(() =>
      [...document.querySelectorAll('#messages li:not(.pending) .text')].filter((e) => /^old \d+$/.test(e.textContent)).length === 60);
    const carol = await login(server.url, 'carol');
    await seeMessage(carol.page, 'old 60');
    assert.equal(await countMessages(carol.page, 'old 1'), 0, 'only the newest come with the join');
    // Loading older messages keeps what is being read where it is: the
    // oldest message shown, at the top where the button is.
    const oldest = await carol.page.evaluate(() => document.querySelector('#messages li[data-seq] .text').textContent);
    const place = () => carol.page.evaluate((t) => {
      const text = [...document.querySelectorAll('#messages li .text')].find((e) => e.textContent === t);
      return Math.round(text.getBoundingClientRect().top);
    }, oldest);
    await carol.page.evaluate(() => { document.querySelector('#messages').scrollTop = 0; });
    const before = await place();
    await carol.page.click('#older');
    await seeMessage(carol.page, 'old 1');
    assert.ok(Math.abs((await place()) - before) <= 2, `${oldest} stayed at ${before}px, not ${await place()}px`);
    assert.ok(await carol.page.locator('#messages li.day').count() >= 1, 'a day separator');

    // Typing.
    await alice.page.type('#text', 'thinking');
    await bob.page.waitForFunction(() => document.querySelector('#typing').textContent === 'alice is typing…');
    await alice.page.press('#text', 'Enter');
    await bob.page.waitForFunction(() => document.querySelector('#typing').textContent === '');

    // An unread badge and a mention on another room.
    await say(bob.page, '/join dev');
    await bob.page.waitForFunction(() => document.querySelector('#room-title')?.textContent === '#dev');
    await say(alice.page, '/join dev');
    await alice.page.waitForFunction(() => document.querySelector('#room-title')?.textContent === '#dev');
    await bob.page.click('#room-list button.room >> text=#lobby');
    await say(alice.page, 'hey bob, look');
    await bob.page.waitForFunction(() => {
      const dev = [...document.querySelectorAll('#room-list button.room')].find((b) => b.textContent.startsWith('#dev'));
      return dev && dev.querySelector('.badge')?.textContent === '1' && dev.classList.contains('mentioned');
    });
    await bob.page.click('#room-list button.room >> text=#dev');
    await bob.page.waitForFunction(() => document.querySelector('#messages li.mention .text')?.textContent === 'hey bob, look');

    // A direct message opens its own view, not the room's.
    await say(alice.page, '/msg bob just between us');
    await alice.page.waitForFunction(() => document.querySelector('#room-title')?.textContent === 'bob (direct messages)');
    await bob.page.waitForFunction(() =>
      [...document.querySelectorAll('#direct-list button.room')].some((b) => b.textContent.startsWith('alice') && b.querySelector('.badge')));
    assert.equal(await countMessages(bob.page, 'just between us'), 0, 'not in the room view');
    await bob.page.click('#direct-list button.room');
    await seeMessage(bob.page, 'just between us');
    // Replying in the conversation view is a direct message.
    await say(bob.page, 'sure');
    await seeMessage(alice.page, 'sure');
    assert.equal(await countMessages(carol.page, 'sure'), 0);
    await screenshot(alice.page, 'direct.png');

    for (const who of [alice, bob, carol]) {
      assert.deepEqual(who.problems, []);
      await who.context.close();
    }
  } finally {
    await stopServer(server.child);
  }
});

test('one person in two tabs and across a reload: one session, every message in both, away when all close', async () => {
  const server = await startServer();
  try {
    const alice = await login(server.url, 'alice');
    const bob = await login(server.url, 'bob');
    // A second tab in the same browser: the same session, not "nick taken".
    const second = await anotherTab(alice, server.url);
    await second.waitForFunction(() => document.querySelector('#me')?.textContent === 'alice');
    assert.equal(await second.isVisible('#login'), false, 'no login form in the second tab');
    await say(bob.page, 'hi both');
    await seeMessage(alice.page, 'hi both');
    await seeMessage(second, 'hi both');
    await say(second, 'from tab two');
    await seeMessage(alice.page, 'from tab two');
    await seeMessage(bob.page, 'from tab two');
    const joins = await bob.page.evaluate(() =>
      [...document.querySelectorAll('#messages li.notice .text')].filter((li) => li.textContent === 'alice joined').length);
    assert.equal(joins, 0, 'a second tab is not someone joining');
    // One tab closing is not alice leaving.
    await alice.page.close();
    await say(bob.page, 'still there?');
    await seeMessage(second, 'still there?');
    // A reload resumes the session: what was said is still there.
    await second.reload();
    await second.waitForFunction(() => document.querySelector('#me')?.textContent === 'alice');
    await seeMessage(second, 'hi both');
    assert.equal(await countMessages(second, 'from tab two'), 1);
    const notices = await bob.page.evaluate(() =>
      [...document.querySelectorAll('#messages li.notice .text')].map((li) => li.textContent));
    assert.ok(!notices.includes('alice left'), `${notices}`);
    // Every tab gone: away at once, shown in the member list.
    await second.close();
    await bob.page.waitForFunction(() =>
      [...document.querySelectorAll('#messages li.notice .text')].some((li) => li.textContent === 'alice is away'));
    await bob.page.waitForFunction(() =>
      [...document.querySelectorAll('#members li.away')].some((li) => li.textContent.startsWith('alice')));
    assert.deepEqual(bob.problems, []);
    await alice.context.close();
    await bob.context.close();
  } finally {
    await stopServer(server.child);
  }
});

test('direct messages survive a reload and reach someone who was away, with an unread count', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'chat-dm-'));
  const server = await startServer('127.0.0.1:0', dir);
  try {
    const alice = await login(server.url, 'alice');
    const bob = await login(server.url, 'bob');
    await say(alice.page, '/msg bob first words');
    await bob.page.waitForFunction(() =>
      [...document.querySelectorAll('#direct-list button.room')].some((b) => b.textContent.startsWith('alice')));
    await bob.page.click('#direct-list button.room');
    await seeMessage(bob.page, 'first words');
    // A reload keeps the conversation, listed and filled, nothing unread.
    await bob.page.reload();
    await bob.page.waitForFunction(() => document.querySelector('#me')?.textContent === 'bob');
    await bob.page.waitForFunction(() =>
      [...document.querySelectorAll('#direct-list button.room')].some((b) => b.textContent.startsWith('alice') && !b.querySelector('.badge')));
    await bob.page.click('#direct-list button.room');
    await seeMessage(bob.page, 'first words');
    // Bob closes the page; alice writes meanwhile (into the conversation
    // she has open); bob opens it again later.
    await bob.page.close();
    await say(alice.page, 'while you were out');
    await say(alice.page, 'and one more');
    await seeMessage(alice.page, 'and one more');
    const page = await anotherTab(bob, server.url);
    await page.waitForFunction(() => document.querySelector('#me')?.textContent === 'bob');
    await page.waitForFunction(() =>
      [...document.querySelectorAll('#direct-list button.room')].some((b) => b.textContent.startsWith('alice') && b.querySelector('.badge')?.textContent === '2'));
    await page.click('#direct-list button.room');
    await seeMessage(page, 'and one more');
    const texts = await page.evaluate(() => [...document.querySelectorAll('#messages li .text')].map((e) => e.textContent));
    assert.deepEqual(texts.filter((t) => t !== 'first words'), ['while you were out', 'and one more']);
    await say(page, 'back now');
    await seeMessage(alice.page, 'back now');
    assert.deepEqual(alice.problems, []);
    await alice.context.close();
    await bob.context.close();
  } finally {
    await stopServer(server.child);
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('the page: sending shows at once, the view follows (images too), links, colours, times, friendly errors', async () => {
  const server = await startServer('127.0.0.1:0', null, ['--max-text-bytes', '200']);
  try {
    const alice = await login(server.url, 'alice');
    const bob = await login(server.url, 'bob');
    const page = alice.page;
    // Offline, a message shows at once as being sent, greyed with a clock,
    // and becomes a message once the server has it; no notice left behind.
    await page.evaluate(() => window.chat.offline());
    await say(page, 'sent while offline');
    await page.waitForSelector('#messages li.pending >> text=sent while offline');
    assert.equal(await page.locator('#messages li.pending .state').getAttribute('aria-label'), 'sending');
    await page.evaluate(() => window.chat.online());
    await seeMessage(page, 'sent while offline');
    await page.waitForSelector('#messages li.pending', { state: 'detached' });
    const notices = await page.evaluate(() => [...document.querySelectorAll('#messages li.notice .text')].map((e) => e.textContent));
    assert.ok(!notices.some((n) => /will be sent/.test(n)), `${notices}`);
    // Notices have times; errors are sentences; room names typed with
    // capitals are lowered; text too long stays in the input.
    assert.ok((await page.textContent('#messages li.notice time')).trim().length > 0, 'a time on notices');
    await say(page, '/join Dev');
    await page.waitForFunction(() => document.querySelector('#room-title')?.textContent === '#dev');
    await say(page, '/join no good!');
    await page.waitForFunction(() =>
      [...document.querySelectorAll('#messages li.error .text')].some((e) => e.textContent.startsWith('Room names are lowercase letters')));
    const long = 'x'.repeat(300);
    await page.fill('#text', long);
    await page.press('#text', 'Enter');
    await page.waitForFunction(() =>
      [...document.querySelectorAll('#messages li.error .text')].some((e) => /a message may be up to 200 B/.test(e.textContent)));
    assert.equal(await page.inputValue('#text'), long, 'kept to shorten');
    await page.fill('#text', '');
    await page.click('#room-list button.room >> text=#lobby');

    // Links are links, safely; other schemes are text.
    await say(bob.page, 'see https://example.com/a?b=1. and javascript:alert(1)');
    await seeMessage(page, 'see https://example.com/a?b=1. and javascript:alert(1)');
    const links = await page.evaluate(() => [...document.querySelectorAll('#messages a:not(.download)')]
      .map((a) => [a.getAttribute('href'), a.rel, a.target]));
    assert.deepEqual(links, [['https://example.com/a?b=1', 'noopener noreferrer', '_blank']]);
    // Each nick its own colour, the same everywhere.
    const hues = await page.evaluate(() => Object.fromEntries([...document.querySelectorAll('#messages .from')]
      .filter((e) => e.textContent).map((e) => [e.textContent, e.style.getPropertyValue('--hue')])));
    assert.notEqual(hues.alice, hues.bob);
    // A multi-line message is indented under its text, not under the time.
    await say(bob.page, 'line one');
    await bob.page.fill('#text', 'first line\nsecond line that is long enough to wrap '.repeat(3));
    await bob.page.press('#text', 'Enter');
    await page.waitForFunction(() => [...document.querySelectorAll('#messages li:not(.pending) .text')].some((e) => e.textContent.startsWith('first line')));
    const lefts = await page.evaluate(() => {
      const text = [...document.querySelectorAll('#messages li .text')].find((e) => e.textContent.startsWith('first line'));
      const time = text.closest('li').querySelector('time');
      return { rows: [...text.getClientRects()].map((r) => Math.round(r.left)), time: time.getBoundingClientRect().left };
    });
    assert.ok(lefts.rows.length >= 3, `several rows: ${JSON.stringify(lefts)}`);
    // Every row starts at the text's left edge or after it: none under the time.
    assert.ok(Math.min(...lefts.rows) === lefts.rows[0] && lefts.rows[0] > lefts.time, JSON.stringify(lefts));
    assert.ok(lefts.rows.filter((left) => left === lefts.rows[0]).length >= 3, JSON.stringify(lefts));

    // The view follows new messages at the bottom, also past an image.
    const png = await makePng(bob.page);
    await bob.page.setInputFiles('#file-input', { name: 'tall.png', mimeType: 'image/png', buffer: png });
    await page.waitForFunction(() => [...document.querySelectorAll('#messages img')].some((img) => img.complete && img.naturalWidth > 0));
    for (let n = 1; n <= 30; n += 1) {
      await say(bob.page, `filler ${n}`);
    }
    await seeMessage(page, 'filler 30');
    const atBottom = () => page.evaluate(() => {
      const list = document.querySelector('#messages');
      return list.scrollHeight - list.scrollTop - list.clientHeight < 40;
    });
    await page.waitForFunction(() => {
      const list = document.querySelector('#messages');
      return list.scrollHeight - list.scrollTop - list.clientHeight < 40;
    });
    assert.equal(await page.isVisible('#jump'), false);
    // Scrolled up: new ones are counted on "jump to newest" instead.
    await page.evaluate(() => { const list = document.querySelector('#messages'); list.scrollTop = 0; list.dispatchEvent(new Event('scroll')); });
    await say(bob.page, 'while you read');
    await say(bob.page, 'and another');
    await page.waitForFunction(() => document.querySelector('#jump')?.textContent === 'Jump to newest (2 new)');
    assert.equal(await atBottom(), false, 'the reader is not moved');
    await page.click('#jump');
    await page.waitForFunction(() => {
      const list = document.querySelector('#messages');
      return list.scrollHeight - list.scrollTop - list.clientHeight < 40;
    });
    assert.equal(await page.isVisible('#jump'), false);

    // The banner sits under the top bar, not over it, and offers to try now.
    await page.evaluate(() => window.chat.offline());
    await page.waitForSelector('#banner:not([hidden])');
    const [top, banner] = await Promise.all([page.locator('.topbar').boundingBox(), page.locator('#banner').boundingBox()]);
    assert.ok(banner.y >= top.y + top.height - 1, `${JSON.stringify({ top, banner })}`);
    await page.click('#retry-now');
    await page.waitForSelector('#banner', { state: 'hidden' });
    assert.deepEqual(alice.problems, []);
    await alice.context.close();
    await bob.context.close();
  } finally {
    await stopServer(server.child);
  }
});

test("editing and deleting one's own message: the others see it, and so does the page after a restart", async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'chat-edit-'));
  let server = await startServer('127.0.0.1:0', dir);
  try {
    const alice = await login(server.url, 'alice');
    const bob = await login(server.url, 'bob');
    await say(alice.page, 'teh typo');
    await say(alice.page, 'a regret');
    await seeMessage(bob.page, 'a regret');
    // Only one's own messages offer Edit and Delete.
    assert.equal(await bob.page.locator('#messages li .changes').count(), 0);
    const line = alice.page.locator('#messages li', { hasText: 'teh typo' });
    await line.hover();
    await line.locator('button', { hasText: 'Edit' }).click();
    assert.equal(await alice.page.inputValue('#text'), 'teh typo');
    assert.ok(await alice.page.isVisible('#editing'));
    await alice.page.fill('#text', 'the typo');
    await alice.page.press('#text', 'Enter');
    await seeMessage(bob.page, 'the typo');
    await bob.page.waitForSelector('#messages li:has-text("the typo") .state >> text=(edited)');
    assert.equal(await countMessages(bob.page, 'teh typo'), 0, 'replaced, not added');
    await say(alice.page, '/delete');
    await bob.page.waitForSelector('#messages li.deleted >> text=message deleted');
    assert.equal(await countMessages(bob.page, 'a regret'), 0);
    // Someone else's message cannot be changed, not even by hand.
    await say(bob.page, 'mine');
    await seeMessage(alice.page, 'mine');
    const bobs = await alice.page.evaluate(() =>
      Number([...document.querySelectorAll('#messages li')].find((li) => li.querySelector('.text')?.textContent === 'mine').dataset.seq));
    await alice.page.evaluate((seq) => window.chat.send({ type: 'edit', room: 'lobby', seq, text: 'hacked' }), bobs);
    await alice.page.waitForFunction(() =>
      [...document.querySelectorAll('#messages li.error .text')].some((e) => e.textContent.includes('(forbidden)')));
    assert.equal(await countMessages(bob.page, 'mine'), 1);
    // After a restart, the page shows the messages as they are now.
    await stopServer(server.child);
    server = await startServer(server.addr, dir);
    const carol = await login(server.url, 'carol');
    await carol.page.waitForSelector('#messages li.deleted');
    await carol.page.waitForSelector('#messages li:has-text("the typo") .state >> text=(edited)');
    assert.equal(await countMessages(carol.page, 'teh typo'), 0);
    assert.equal(await countMessages(carol.page, 'a regret'), 0);
    assert.equal(await countMessages(carol.page, 'mine'), 1);
    assert.equal(await carol.page.locator('#messages li.deleted').count(), 1);
    for (const who of [alice, bob, carol]) {
      assert.deepEqual(who.problems, []);
      await who.context.close();
    }
  } finally {
    await stopServer(server.child);
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('topics in the header, and a room directory to browse and join from', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'chat-topic-'));
  let server = await startServer('127.0.0.1:0', dir);
  try {
    const alice = await login(server.url, 'alice');
    await say(alice.page, '/join builds');
    await alice.page.waitForFunction(() => document.querySelector('#room-title')?.textContent === '#builds');
    await say(alice.page, '/topic CI results and deploys');
    await alice.page.waitForFunction(() => document.querySelector('#room-topic')?.textContent === 'CI results and deploys');
    await say(alice.page, 'first build is green');
    await seeMessage(alice.page, 'first build is green');
    const bob = await login(server.url, 'bob');
    // Browse: every room with its topic and count; join from there.
    await bob.page.click('#browse');
    await bob.page.waitForSelector('#directory[open] #directory-list li');
    const entries = await bob.page.evaluate(() => [...document.querySelectorAll('#directory-list li')].map((li) => li.textContent));
    assert.ok(entries.some((e) => e.includes('#builds') && e.includes('CI results and deploys') && e.includes('1 here')), `${entries}`);
    await bob.page.click('#directory-list button[aria-label="join #builds"]');
    await bob.page.waitForFunction(() => document.querySelector('#room-title')?.textContent === '#builds');
    await bob.page.waitForFunction(() => document.querySelector('#room-topic')?.textContent === 'CI results and deploys');
    // A change reaches everyone; too long is refused in words.
    await say(bob.page, '/topic builds, deploys, incidents');
    await alice.page.waitForFunction(() => document.querySelector('#room-topic')?.textContent === 'builds, deploys, incidents');
    await alice.page.waitForFunction(() =>
      [...document.querySelectorAll('#messages li.notice .text')].some((e) => e.textContent === 'bob set the topic: builds, deploys, incidents'));
    await say(bob.page, `/topic ${'x'.repeat(201)}`);
    await bob.page.waitForFunction(() =>
      [...document.querySelectorAll('#messages li.error .text')].some((e) => e.textContent.startsWith('A topic is one line')));
    assert.deepEqual(await axe(bob.page), [], 'with a topic');
    // Kept across a restart.
    await stopServer(server.child);
    server = await startServer(server.addr, dir);
    const carol = await login(server.url, 'carol');
    await say(carol.page, '/join builds');
    await carol.page.waitForFunction(() => document.querySelector('#room-topic')?.textContent === 'builds, deploys, incidents');
    for (const who of [alice, bob, carol]) {
      await who.context.close();
    }
  } finally {
    await stopServer(server.child);
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('what one tab reads is read in the other: unread counts follow the person', async () => {
  const server = await startServer();
  try {
    const alice = await login(server.url, 'alice');
    const bob = await login(server.url, 'bob');
    const second = await anotherTab(alice, server.url);
    await say(alice.page, '/join dev');
    await alice.page.waitForFunction(() => document.querySelector('#room-title')?.textContent === '#dev');
    await second.waitForSelector('#room-list button.room >> text=#dev');
    await alice.page.click('#room-list button.room >> text=#lobby');
    await say(bob.page, '/join dev');
    await bob.page.waitForFunction(() => document.querySelector('#room-title')?.textContent === '#dev');
    await say(bob.page, 'news in dev');
    const badge = (page) => page.waitForFunction(() => [...document.querySelectorAll('#room-list button.room')]
      .some((b) => b.textContent.startsWith('#dev') && b.querySelector('.badge')?.textContent === '1'));
    await badge(alice.page);
    await badge(second);
    // Read in one tab...
    await alice.page.click('#room-list button.room >> text=#dev');
    await seeMessage(alice.page, 'news in dev');
    // ...read in the other.
    await second.waitForFunction(() => [...document.querySelectorAll('#room-list button.room')]
      .some((b) => b.textContent.startsWith('#dev') && !b.querySelector('.badge')));
    await alice.context.close();
    await bob.context.close();
  } finally {
    await stopServer(server.child);
  }
});

test('a room bigger than a page: its count, the first page, the rest as the list ends in view', async () => {
  const server = await startServer('127.0.0.1:0', null, ['--member-page-max', '3']);
  try {
    const others = [];
    for (const nick of ['ann', 'bea', 'cat', 'dan', 'eve']) {
      others.push(await login(server.url, nick));
    }
    const zoe = await login(server.url, 'zoe');
    await zoe.page.waitForFunction(() => document.querySelector('#members-title')?.textContent === 'Members (6)');
    // Tab completes a nick: the first word as an address, `@` anywhere.
    await zoe.page.fill('#text', 'be');
    await zoe.page.press('#text', 'Tab');
    assert.equal(await zoe.page.inputValue('#text'), 'bea: ');
    await zoe.page.type('#text', 'and @c');
    await zoe.page.press('#text', 'Tab');
    // (The room is bigger than the page holds: the server is asked.)
    await zoe.page.waitForFunction(() => document.querySelector('#text').value === 'bea: and @cat ');
    await zoe.page.fill('#text', '');
    // The first page, and with the end of the list in view, the rest.
    await zoe.page.waitForFunction(() => document.querySelectorAll('#members li button.member').length
      + [...document.querySelectorAll('#members li')].filter((li) => li.textContent.endsWith('(you)')).length === 6);
    await zoe.page.waitForSelector('#more-members', { state: 'detached' });
    // Typing in a big room comes in a batch, and shows the same.
    await others[0].page.type('#text', 'thinking');
    await zoe.page.waitForFunction(() => document.querySelector('#typing').textContent === 'ann is typing…');
    // One more joining counts up.
    const fay = await login(server.url, 'fay');
    await zoe.page.waitForFunction(() => document.querySelector('#members-title')?.textContent === 'Members (7)');
    for (const who of [...others, fay, zoe]) {
      await who.context.close();
    }
  } finally {
    await stopServer(server.child);
  }
});

/** `count` real connections in room `bench-0`, held until killed: a crowd made by `chat bench` (nicks `bXXXX-N`). */
function crowd(url, count) {
  const chat = path.join(path.dirname(serverBin), 'chat');
  const ws = `${url.replace(/^http/, 'ws')}/ws`;
  return spawn(chat, [
    'bench', '--server', ws, '--connections', String(count), '--rooms', '1', '--senders', '0',
    '--concurrency', '64', '--duration', '600', '--warmup', '0', '--json',
  ], { stdio: 'ignore' });
}

test('a room of thousands: its count, the list paged as it scrolls, search, and no presence flood', async () => {
  // Above 20 members a room is big.
  const server = await startServer('127.0.0.1:0', null, [
    '--member-page-max', '20', '--max-connections-per-ip', '10000', '--max-detached-per-address', '10000',
  ]);
  const crowds = [];
  try {
    const zoe = await login(server.url, 'zoe');
    await say(zoe.page, '/join bench-0');
    await zoe.page.waitForFunction(() => document.querySelector('#room-title')?.textContent === '#bench-0');
    crowds.push(crowd(server.url, 2000));
    const counted = (n) => zoe.page.waitForFunction(
      (want) => document.querySelector('#members-title')?.textContent === `Members (${want})`, n, { timeout: 60000 });
    await counted(2001);
    // Joins are told one by one only while the room is small, then in a
    // line an interval.
    const lines = () => zoe.page.evaluate(() => [...document.querySelectorAll('#messages li')].map((li) => li.textContent));
    const single = (all) => all.filter((text) => / joined$/.test(text.trim())).length;
    let seen = await lines();
    assert.ok(single(seen) <= 20, `a presence flood: ${seen.length} lines`);
    assert.ok(seen.some((text) => text.includes('members)')), seen.join('\n'));
    // The list holds what was told and what is in view; scrolling to its
    // end fetches the rest a page at a time.
    const listed = () => zoe.page.locator('#members li button.member').count();
    await zoe.page.waitForSelector('#more-members');
    while (await listed() < 120) {
      const before = await listed();
      // Scrolled to the end, as someone reading down the list would.
      await zoe.page.evaluate(() => {
        const drawer = document.querySelector('#members-drawer');
        drawer.scrollTop = drawer.scrollHeight;
      });
      await zoe.page.waitForFunction(
        (n) => document.querySelectorAll('#members li button.member').length > n, before);
    }
    assert.ok(await listed() < 1000, 'only what was scrolled to is fetched');
    // The search asks the server: a member never listed is found.
    const run = (await zoe.page.locator('#members li button.member').first().textContent()).split('-')[0];
    await zoe.page.fill('#member-search', `${run}-1999`);
    await zoe.page.waitForFunction(() => document.querySelector('#member-search-status').textContent === '1 found.');
    assert.deepEqual(
      await zoe.page.locator('#members li button.member').allTextContents(), [`${run}-1999`]);
    await zoe.page.fill('#member-search', '');
    await zoe.page.waitForSelector('#more-members');
    // Tab on an @nick the page was never sent asks the server.
    await zoe.page.fill('#text', `hi @${run}-199`);
    await zoe.page.press('#text', 'Tab');
    await zoe.page.waitForFunction((want) => document.querySelector('#text').value === want, `hi @${run}-199 `);
    await zoe.page.press('#text', 'Tab');
    await zoe.page.waitForFunction((want) => document.querySelector('#text').value.startsWith(want), `hi @${run}-199`);
    assert.notEqual(await zoe.page.inputValue('#text'), `hi @${run}-199 `, 'Tab again: the next one');
    await zoe.page.fill('#text', '');
    // Another 500 at once: the page keeps chatting, and still no flood.
    crowds.push(crowd(server.url, 500));
    await say(zoe.page, 'still here');
    // A member's button keeps the focus while the count changes around it.
    await zoe.page.locator('#members li button.member').first().focus();
    await seeMessage(zoe.page, 'still here');
    await counted(2501);
    assert.equal(await zoe.page.evaluate(() => document.activeElement?.className), 'member', 'focus kept');
    seen = await lines();
    assert.ok(single(seen) <= 20 && seen.length < 60, `a presence flood: ${seen.length} lines`);
    assert.deepEqual(zoe.problems, []);
    await zoe.context.close();
  } finally {
    for (const child of crowds) {
      child.kill('SIGKILL');
    }
    await stopServer(server.child);
  }
});

test('forty lines typed as fast as Enter goes arrive in the order typed', async () => {
  const server = await startServer();
  try {
    const alice = await login(server.url, 'alice');
    const bob = await login(server.url, 'bob');
    for (let i = 1; i <= 40; i += 1) {
      await alice.page.fill('#text', `line ${i}`);
      await alice.page.press('#text', 'Enter');
    }
    await seeMessage(bob.page, 'line 40');
    const texts = await bob.page.evaluate(() =>
      [...document.querySelectorAll('#messages li .text')].map((e) => e.textContent).filter((t) => t.startsWith('line ')));
    assert.deepEqual(texts, Array.from({ length: 40 }, (_, i) => `line ${i + 1}`));
    const seqs = await bob.page.evaluate(() =>
      [...document.querySelectorAll('#messages li[data-seq]')].map((li) => Number(li.dataset.seq)));
    assert.deepEqual(seqs, [...seqs].sort((a, b) => a - b), 'stored in that order too');
    await alice.context.close();
    await bob.context.close();
  } finally {
    await stopServer(server.child);
  }
});

test('a mention raises a desktop notification when the page is in the background', async () => {
  const server = await startServer();
  try {
    const alice = await login(server.url, 'alice');
    const context = await browser().newContext();
    await context.grantPermissions(['notifications'], { origin: server.url });
    const page = await context.newPage();
    page.setDefaultTimeout(WAIT);
    await page.goto(server.url);
    await page.fill('#nick-input', 'bob');
    await page.click('#login-form button[type=submit]');
    await page.waitForFunction(() => document.querySelector('#room-title')?.textContent === '#lobby');
    // The page is in the background.
    await page.evaluate(() => {
      Object.defineProperty(document, 'hidden', { value: true, configurable: true });
      window.dispatchEvent(new Event('blur'));
    });
    await say(alice.page, 'not for anyone');
    await say(alice.page, 'bob: are you there?');
    await page.waitForFunction(() => document.body.dataset.notified === '1');
    await alice.context.close();
    await context.close();
  } finally {
    await stopServer(server.child);
  }
});

test('/stats updates its counters and chart while a client sends', async () => {
  const server = await startServer('127.0.0.1:0', null, ['--stats-token', 'watch']);
  try {
    const context = await browser().newContext();
    const stats = await context.newPage();
    stats.setDefaultTimeout(WAIT);
    await stats.goto(`${server.url}/stats`);
    // Without the token the page asks for it.
    await stats.waitForSelector('#token-form:not([hidden])');
    await stats.fill('#token-input', 'watch');
    await stats.click('#token-form button');
    await stats.waitForFunction(() => Number(document.body.dataset.updates || 0) >= 1);
    const alice = await login(server.url, 'alice');
    for (let n = 0; n < 5; n += 1) {
      await say(alice.page, `counted ${n}`);
    }
    await seeMessage(alice.page, 'counted 4');
    await stats.waitForFunction(() => document.querySelector('#messages-total').textContent === '5');
    await stats.waitForFunction(() => document.querySelector('#connections').textContent === '2');
    // One person chatting, and the stats page itself, counted apart.
    assert.equal(await stats.textContent('#people'), '1');
    assert.equal(await stats.textContent('#watchers'), '1');
    assert.equal(await stats.locator('#rooms tr').count(), 1);
    // Opened again, the chart starts with the server's last minutes (the
    // seconds that counted the five), under a time axis whose labels do
    // not overlap.
    await stats.reload();
    await stats.waitForFunction(() => Number(document.body.dataset.history || 0) >= 1);
    const labels = await stats.evaluate(() => JSON.parse(document.querySelector('#chart').dataset.labels || '[]'));
    assert.ok(labels.length >= 1, `a time axis: ${JSON.stringify(labels)}`);
    assert.ok(labels.every(([, right], i) => i === 0 || labels[i - 1][1] < labels[i][0]), JSON.stringify(labels));
    const painted = await stats.evaluate(() => {
      const canvas = document.querySelector('#chart');
      const data = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
      return data.some((v, i) => i % 4 === 3 && v > 0);
    });
    assert.ok(painted, 'the chart is drawn');
    await screenshot(stats, 'stats.png');
    await alice.context.close();
    await context.close();
  } finally {
    await stopServer(server.child);
  }
});

test('a phone: drawers for rooms and members, one-line header, nothing cut off, no serious accessibility faults', async () => {
  const server = await startServer();
  try {
    const bob = await login(server.url, 'bob');
    const context = await browser().newContext({ viewport: { width: 390, height: 844 }, isMobile: true, hasTouch: true });
    const page = await context.newPage();
    page.setDefaultTimeout(WAIT);
    await page.goto(server.url);
    assert.deepEqual(await axe(page), [], 'the login screen');
    await page.fill('#nick-input', 'pat');
    await page.click('#login-form button[type=submit]');
    await page.waitForFunction(() => document.querySelector('#room-title')?.textContent === '#lobby');
    await say(bob.page, 'hello phone, see https://example.com');
    await seeMessage(page, 'hello phone, see https://example.com');
    // The header is one line; the lists are out of the way.
    const header = await page.locator('.topbar').boundingBox();
    assert.ok(header.height < 56, `one line: ${header.height}px`);
    assert.equal(await page.isVisible('#room-list'), false);
    // Nothing is cut off: every visible control is inside the screen.
    const outside = () => page.evaluate(() => [...document.querySelectorAll('button, input, textarea, a, h2')]
      .filter((e) => e.offsetParent !== null && getComputedStyle(e).visibility !== 'hidden')
      .map((e) => [e.id || e.className || e.textContent.trim().slice(0, 20), e.getBoundingClientRect()])
      .filter(([, r]) => r.width > 0 && (r.left < -1 || r.right > window.innerWidth + 1))
      .map(([name]) => name));
    assert.deepEqual(await outside(), []);
    assert.deepEqual(await axe(page), [], 'the chat on a phone');
    // Rooms: a drawer, closed by choosing one.
    await page.click('#rooms-toggle');
    await page.waitForSelector('#room-list button.room', { state: 'visible' });
    assert.equal(await page.getAttribute('#rooms-toggle', 'aria-expanded'), 'true');
    // Once it has slid in:
    await page.waitForFunction(() => document.querySelector('#rooms-drawer').getBoundingClientRect().left >= 0);
    assert.deepEqual(await outside(), []);
    await page.fill('#join-input', 'phones');
    await page.press('#join-input', 'Enter');
    await page.waitForFunction(() => document.querySelector('#room-title')?.textContent === '#phones');
    await page.waitForSelector('#rooms-drawer', { state: 'hidden' });
    // Members: the other drawer, reachable, closed with Escape.
    await page.click('#rooms-toggle');
    await page.click('#room-list button.room >> text=#lobby');
    await page.waitForFunction(() => document.querySelector('#room-title')?.textContent === '#lobby');
    await page.click('#members-toggle');
    await page.waitForSelector('#members li >> text=bob');
    assert.deepEqual(await axe(page), [], 'with the member drawer open');
    await page.keyboard.press('Escape');
    await page.waitForSelector('#members-drawer', { state: 'hidden' });
    await screenshot(page, 'phone.png');
    await context.close();
    // And the wide page, with messages, checked the same way.
    assert.deepEqual(await axe(bob.page), [], 'the chat on a wide screen');
    await bob.context.close();
  } finally {
    await stopServer(server.child);
  }
});

test('keyboard only, a phone-width screen, and both colour schemes', async () => {
  const server = await startServer();
  try {
    const context = await browser().newContext({ viewport: { width: 375, height: 700 }, colorScheme: 'dark' });
    const page = await context.newPage();
    page.setDefaultTimeout(WAIT);
    await page.goto(server.url);
    // The nick field has focus; Enter logs in; the message box has focus.
    await page.keyboard.type('kay');
    await page.keyboard.press('Enter');
    await page.waitForFunction(() => document.querySelector('#room-title')?.textContent === '#lobby');
    await page.waitForFunction(() => document.activeElement?.id === 'text');
    await page.keyboard.type('typed with keys only');
    await page.keyboard.press('Enter');
    await seeMessage(page, 'typed with keys only');
    const fits = await page.evaluate(() => document.documentElement.scrollWidth <= window.innerWidth);
    assert.ok(fits, 'nothing wider than a phone');
    const dark = await page.evaluate(() => getComputedStyle(document.body).backgroundColor);
    await page.emulateMedia({ colorScheme: 'light' });
    const light = await page.evaluate(() => getComputedStyle(document.body).backgroundColor);
    assert.notEqual(dark, light, 'the theme follows the system');
    // Every control has a name.
    const unnamed = await page.evaluate(() => [...document.querySelectorAll('button, input, textarea')]
      .filter((e) => e.offsetParent !== null)
      .filter((e) => !(e.getAttribute('aria-label') || e.labels?.length || e.textContent.trim()))
      .map((e) => e.outerHTML));
    assert.deepEqual(unnamed, []);
    await context.close();
  } finally {
    await stopServer(server.child);
  }
});
