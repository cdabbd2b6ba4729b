// The chat page against a cluster: two real chat-server nodes on one real
// redis-server, one browser on each. Run by ./scripts/test (node --test).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import * as support from './support.mjs';

const { startServer, stopServer, startRedis, say, seeMessage } = support;

const browser = support.browserForFile();

/** A node of the cluster on `redis`, named `name`, with a data directory of its own. */
function node(redis, name) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `chat-web-node-${name}-`));
  return startServer('127.0.0.1:0', dir, ['--redis', redis.url, '--node-id', name]);
}

/** The nicks in the members list of `page`. */
function members(page) {
  return page.evaluate(() => [...document.querySelectorAll('#members li')].map((li) => li.textContent));
}

test('two nodes: pages on each chat in one room and directly, see each other come, type and go, in one order', async () => {
  const redis = await startRedis();
  const [a, b] = [await node(redis, 'a'), await node(redis, 'b')];
  try {
    const alice = await support.login(browser(), a.url, 'alice');
    const bob = await support.login(browser(), b.url, 'bob');
    // Each sees the other arrive, listed among the room's members.
    await alice.page.waitForFunction(() =>
      [...document.querySelectorAll('#messages li.notice .text')].some((li) => li.textContent === 'bob joined'));
    await bob.page.waitForFunction(() => document.querySelector('#members-title')?.textContent === 'Members (2)');
    assert.deepEqual((await members(bob.page)).sort(), ['alice', 'bob (you)']);
    // Typing crosses nodes too.
    await bob.page.type('#text', 'thinking');
    await alice.page.waitForFunction(() => document.querySelector('#typing').textContent === 'bob is typing…');

    // Messages both ways, each once, in the room's one order on both.
    await say(alice.page, 'hello from node a');
    await seeMessage(bob.page, 'hello from node a');
    await say(bob.page, 'hello from node b');
    await seeMessage(alice.page, 'hello from node b');
    for (let n = 0; n < 5; n += 1) {
      await say(n % 2 ? alice.page : bob.page, `quick ${n}`);
    }
    for (const page of [alice.page, bob.page]) {
      await seeMessage(page, 'quick 4');
    }
    const order = (page) => page.evaluate(() =>
      [...document.querySelectorAll('#messages li[data-seq]')].map((li) => [Number(li.dataset.seq), li.querySelector('.text').textContent]));
    const seen = await order(alice.page);
    assert.deepEqual(await order(bob.page), seen);
    assert.deepEqual(seen.map(([seq]) => seq), [1, 2, 3, 4, 5, 6, 7]);

    // A direct message from one node to the other opens its own view, and
    // the reply comes back the same way.
    await say(alice.page, '/msg bob just between nodes');
    await alice.page.waitForFunction(() => document.querySelector('#room-title')?.textContent === 'bob (direct messages)');
    await bob.page.waitForFunction(() =>
      [...document.querySelectorAll('#direct-list button.room')].some((b) => b.textContent.startsWith('alice') && b.querySelector('.badge')));
    await bob.page.click('#direct-list button.room');
    await seeMessage(bob.page, 'just between nodes');
    await say(bob.page, 'across the cluster');
    await seeMessage(alice.page, 'across the cluster');
    await alice.page.click('#room-list button.room >> text=#lobby');
    await bob.page.click('#room-list button.room >> text=#lobby');

    // The stats page says which node it watches.
    const stats = await bob.context.newPage();
    await stats.goto(`${b.url}/stats`);
    await stats.waitForFunction(() => document.querySelector('#node')?.textContent === 'b');
    assert.equal(await stats.isVisible('#node-row'), true);
    // And the whole cluster's counters: both nodes, both people.
    await stats.waitForFunction(() => /^2 nodes · \d+ connections · 2 people · /.test(document.querySelector('#cluster')?.textContent));

    // Bob closes his page: alice's node shows him away, then gone when he
    // leaves the room from a page of his on his node.
    await stats.close();
    await bob.page.close();
    await alice.page.waitForFunction(() =>
      [...document.querySelectorAll('#messages li.notice .text')].some((li) => li.textContent === 'bob is away'));
    await alice.page.waitForSelector('#members li.away');
    const back = await bob.context.newPage();
    await back.goto(b.url);
    await back.waitForFunction(() => document.querySelector('#room-title')?.textContent === '#lobby');
    await say(back, '/leave');
    await alice.page.waitForFunction(() => document.querySelector('#members-title')?.textContent === 'Members (1)');
    await bob.context.close();
    assert.deepEqual(alice.problems, []);
    await alice.context.close();
  } finally {
    await stopServer(a.child);
    await stopServer(b.child);
    await redis.stop();
  }
});
