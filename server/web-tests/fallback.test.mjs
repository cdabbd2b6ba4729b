// The HTTP fallback in the browser (issue #18): with the WebSocket made to
// fail, the page falls back by itself, chats with a WebSocket page both
// ways, sends files, survives a restart, and moves back to the WebSocket
// once it gets through. Real chat-server, real Chromium.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import * as support from './support.mjs';

const { startServer, stopServer, say, seeMessage, countMessages, makePng, recordBanners } = support;

const browser = support.browserForFile();

/** Makes every WebSocket of `context` fail while `blocked()` says so; others reach the server. */
function blockWebSockets(blocked) {
  return (context) => context.routeWebSocket(/.*/, (ws) => {
    if (blocked()) {
      ws.close({ code: 1006 });
    } else {
      ws.connectToServer();
    }
  });
}

async function status(page) {
  return page.textContent('#status');
}

test('with its WebSocket blocked a page falls back, chats with a WebSocket page both ways, shares files, and survives a restart', async () => {
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'chat-web-fallback-'));
  const drain = ['--drain-window', '2s'];
  let server = await startServer('127.0.0.1:0', dataDir, drain);
  try {
    const alice = await support.login(browser(), server.url, 'alice', { setup: blockWebSockets(() => true) });
    const bob = await support.login(browser(), server.url, 'bob');
    assert.equal(await alice.page.evaluate(() => window.chat.transport()), 'sse');
    assert.equal(await bob.page.evaluate(() => window.chat.transport()), 'websocket');
    await alice.page.waitForFunction(() => document.querySelector('#status').textContent === 'connected (HTTP fallback)');
    assert.equal(await status(bob.page), 'connected');

    // Typing goes over posts too.
    await alice.page.type('#text', 'thinking');
    await bob.page.waitForFunction(() => document.querySelector('#typing').textContent === 'alice is typing…');
    await say(alice.page, 'from the fallback');
    await seeMessage(bob.page, 'from the fallback');
    await say(bob.page, 'from a websocket');
    await seeMessage(alice.page, 'from a websocket');

    // Files both ways: alice's parts go as binary POSTs.
    const png = await makePng(alice.page);
    await alice.page.setInputFiles('#file-input', { name: 'from-alice.png', mimeType: 'image/png', buffer: png });
    await bob.page.waitForFunction(() => {
      const img = document.querySelector('#messages .attachment img');
      return img && img.complete && img.naturalWidth === 240;
    });
    await bob.page.setInputFiles('#file-input', { name: 'from-bob.png', mimeType: 'image/png', buffer: png });
    await alice.page.waitForFunction(() => {
      const imgs = document.querySelectorAll('#messages .attachment img');
      return imgs.length === 2 && [...imgs].every((img) => img.complete && img.naturalWidth === 240);
    });

    // The live stats page, in the same blocked browser: over the fallback too.
    const stats = await alice.context.newPage();
    await stats.goto(`${server.url}/stats`);
    await stats.waitForFunction(() => Number(document.body.dataset.updates || 0) >= 1);
    assert.equal(await stats.textContent('#people'), '2');
    await stats.close();

    // A restart: the close event carries 1012 and the delay; both come back and resume.
    const bannerShown = await recordBanners(alice.page);
    assert.equal(await stopServer(server.child), 0);
    await bannerShown(/server is restarting/);
    await say(alice.page, 'typed while down');
    server = await startServer(server.addr, dataDir, drain);
    await alice.page.waitForFunction(() => document.querySelector('#status').textContent === 'connected (HTTP fallback)');
    await bob.page.waitForFunction(() => document.querySelector('#status').textContent === 'connected');
    await seeMessage(bob.page, 'typed while down');
    await say(bob.page, 'after the restart');
    await seeMessage(alice.page, 'after the restart');
    for (const page of [alice.page, bob.page]) {
      for (const text of ['from the fallback', 'from a websocket', 'typed while down', 'after the restart']) {
        assert.equal(await countMessages(page, text), 1, `${text} shown once`);
      }
    }
    assert.deepEqual(alice.problems, []);
    await alice.context.close();
    await bob.context.close();
  } finally {
    await stopServer(server.child);
  }
});

test('a page on the fallback moves to the WebSocket once one gets through, losing and repeating nothing', async () => {
  const server = await startServer();
  try {
    let blocked = true;
    const url = `${server.url}/?probe_ms=300`;
    const alice = await support.login(browser(), url, 'alice', { setup: blockWebSockets(() => blocked) });
    const bob = await support.login(browser(), server.url, 'bob');
    assert.equal(await alice.page.evaluate(() => window.chat.transport()), 'sse');
    await say(alice.page, 'one');
    await seeMessage(bob.page, 'one');
    await say(bob.page, 'two');
    await seeMessage(alice.page, 'two');
    // The way opens: the probe finds it and the page moves over by itself,
    // quietly: no banner, not even for a moment.
    await alice.page.evaluate(() => {
      window.sawBanner = false;
      const banner = document.querySelector('#banner');
      new MutationObserver(() => {
        window.sawBanner ||= !banner.hidden;
      }).observe(banner, { attributes: true, childList: true, subtree: true });
    });
    blocked = false;
    await alice.page.waitForFunction(() => window.chat.transport() === 'websocket');
    await alice.page.waitForFunction(() => document.querySelector('#status').textContent === 'connected');
    await say(alice.page, 'three');
    await seeMessage(bob.page, 'three');
    await say(bob.page, 'four');
    await seeMessage(alice.page, 'four');
    for (const page of [alice.page, bob.page]) {
      const texts = await page.evaluate(() =>
        [...document.querySelectorAll('#messages li[data-seq] .text')].map((e) => e.textContent));
      assert.deepEqual(texts, ['one', 'two', 'three', 'four'], 'each once, in order');
    }
    assert.equal(await alice.page.evaluate(() => window.sawBanner), false, 'no banner during the move');
    assert.deepEqual(alice.problems, []);
    // ?transport=sse keeps a page on the fallback whatever works.
    const carol = await support.login(browser(), `${server.url}/?transport=sse&probe_ms=100`, 'carol');
    assert.equal(await carol.page.evaluate(() => window.chat.transport()), 'sse');
    await say(carol.page, 'forced');
    await seeMessage(alice.page, 'forced');
    assert.equal(await carol.page.evaluate(() => window.chat.transport()), 'sse');
    for (const who of [alice, bob, carol]) {
      await who.context.close();
    }
  } finally {
    await stopServer(server.child);
  }
});

test('behind nginx: through a proxy that passes upgrades a page uses a WebSocket; through one that drops them it falls back, and resumes after the proxy restarts', async () => {
  const server = await startServer();
  const good = await support.startNginx([server.addr]);
  let broken = await support.startNginx([server.addr], { websocket: false });
  try {
    const alice = await support.login(browser(), good.url, 'alice');
    const bob = await support.login(browser(), broken.url, 'bob');
    assert.equal(await alice.page.evaluate(() => window.chat.transport()), 'websocket');
    assert.equal(await bob.page.evaluate(() => window.chat.transport()), 'sse');
    await say(alice.page, 'through the good proxy');
    await seeMessage(bob.page, 'through the good proxy');
    await say(bob.page, 'through the broken proxy');
    await seeMessage(alice.page, 'through the broken proxy');

    // The proxy goes away and comes back on the same port: bob's page
    // waits, then resumes; what was said meanwhile reaches it once.
    await support.stopNginx(broken.child);
    await bob.page.waitForSelector('#banner:not([hidden])');
    await say(alice.page, 'while the proxy was down');
    await say(bob.page, 'typed while the proxy was down');
    broken = await support.startNginx([server.addr], { websocket: false, port: broken.port });
    await bob.page.waitForFunction(() => document.querySelector('#status').textContent === 'connected (HTTP fallback)');
    await seeMessage(bob.page, 'while the proxy was down');
    await seeMessage(alice.page, 'typed while the proxy was down');
    for (const page of [alice.page, bob.page]) {
      const texts = await page.evaluate(() =>
        [...document.querySelectorAll('#messages li[data-seq] .text')].map((e) => e.textContent));
      assert.deepEqual(texts.sort(), [
        'through the broken proxy', 'through the good proxy', 'typed while the proxy was down', 'while the proxy was down',
      ], 'each once');
    }
    assert.deepEqual(bob.problems, []);
    await alice.context.close();
    await bob.context.close();
  } finally {
    await support.stopNginx(broken.child);
    await support.stopNginx(good.child);
    await stopServer(server.child);
  }
});

test('a page on the fallback edits a shared document with a WebSocket page: updates and carets both ways', async () => {
  const server = await startServer();
  try {
    const alice = await support.login(browser(), server.url, 'alice', { setup: blockWebSockets(() => true) });
    const bob = await support.login(browser(), server.url, 'bob');
    assert.equal(await alice.page.evaluate(() => window.chat.transport()), 'sse');
    for (const page of [alice.page, bob.page]) {
      await page.fill('#text', '/doc');
      await page.press('#text', 'Enter');
      await page.waitForFunction(() => window.chat.docs.synced() && !document.querySelector('#doc-text').readOnly);
    }
    await alice.page.waitForFunction(() => /2 people here/.test(document.querySelector('#doc-people').textContent));
    await alice.page.click('#doc-text');
    await alice.page.keyboard.type('typed over http. ', { delay: 5 });
    await bob.page.waitForFunction(() => window.chat.docs.text() === 'typed over http. ');
    await bob.page.click('#doc-text');
    await bob.page.keyboard.press('End');
    await bob.page.keyboard.type('typed over a websocket.', { delay: 5 });
    const both = 'typed over http. typed over a websocket.';
    await alice.page.waitForFunction((t) => window.chat.docs.text() === t && document.querySelector('#doc-text').value === t, both);
    // bob's caret, drawn on alice's page in his nick's colour.
    await alice.page.waitForFunction(() => window.chat.docs.carets().includes('bob'));
    assert.deepEqual(alice.problems, []);
    await alice.context.close();
    await bob.context.close();
  } finally {
    await stopServer(server.child);
  }
});
