// The page's shared documents (issue #17): the Docs panel's editor in
// real headless Chromium against the real chat-server, pages typing into
// one document at once (at the same place, one of them offline), carets
// in nick colours, undo of one's own edits, the Markdown preview, a phone
// screen, and a Yjs client outside our code (npm yjs + y-websocket in
// Node) editing beside the pages. Run by ./scripts/test (node --test).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import fs from 'node:fs';
import os from 'node:os';
import { execFileSync } from 'node:child_process';
import WebSocket from 'ws';
import * as Y from 'yjs';
import { WebsocketProvider } from 'y-websocket';
import { WAIT, here, launch, login, serverBin, startServer, stopServer } from './support.mjs';

const artifacts = path.join(here, 'artifacts');

/** Opens `name` (default: the room's notes) with the /doc command, and waits until it is live. */
async function openDoc(page, name = '') {
  await page.fill('#text', `/doc ${name}`.trim());
  await page.press('#text', 'Enter');
  await page.waitForFunction(() => window.chat.docs.synced() && !document.querySelector('#doc-text').readOnly);
}

/** The document's text in `page`, as its Yjs document holds it. */
const textOf = (page) => page.evaluate(() => window.chat.docs.text());

/** Each page had no error and no dialog; its context is closed. */
async function finish(logins) {
  for (const { page, problems } of logins) {
    assert.deepEqual(problems, []);
    await page.context().close();
  }
}

/** Whether `typed`'s characters are all in `text`, in their order (others' may come between). */
function holdsInOrder(text, typed) {
  let at = 0;
  for (const char of typed) {
    at = text.indexOf(char, at);
    if (at < 0) {
      return false;
    }
    at += 1;
  }
  return true;
}

/**
 * Waits until every page's text is the same and holds every piece of
 * `parts` (with `interleaved`, each piece's keys in order, others' keys
 * maybe between them: people typing at one place at once); that text.
 */
async function converged(pages, parts, interleaved = false) {
  const deadline = Date.now() + WAIT;
  const holds = (text, part) => (interleaved ? holdsInOrder(text, part) : text.includes(part));
  for (;;) {
    const texts = await Promise.all(pages.map(textOf));
    if (texts.every((t) => t === texts[0]) && parts.every((p) => holds(texts[0], p))) {
      // What the textarea shows is the document.
      const shown = await Promise.all(pages.map((p) => p.inputValue('#doc-text')));
      if (shown.every((s) => s === texts[0])) {
        return texts[0];
      }
    }
    if (Date.now() > deadline) {
      assert.fail(`no convergence: ${JSON.stringify(texts)}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

test('three pages type into one document at once, at the same place and one offline, and converge with every edit', async () => {
  const server = await startServer();
  const browser = await launch();
  try {
    const [alice, bob, carol] = await Promise.all(['alice', 'bob', 'carol'].map((n) => login(browser, server.url, n)));
    const pages = [alice.page, bob.page, carol.page];
    for (const page of pages) {
      await openDoc(page);
    }
    await alice.page.waitForFunction(() => /3 people here/.test(document.querySelector('#doc-people').textContent));
    // All three at the very start of the document, typing at once.
    await Promise.all(pages.map((page, n) => page.click('#doc-text').then(() => page.keyboard.type(`<${'abc'[n]}${'abc'[n]}${'abc'[n]}>`, { delay: 15 }))));
    const first = await converged(pages, ['<aaa>', '<bbb>', '<ccc>'], true);
    assert.equal([...first].sort().join(''), [...'<aaa><bbb><ccc>'].sort().join(''), first);
    // Carol goes offline and keeps typing; the others type meanwhile.
    await carol.page.evaluate(() => window.chat.docs.offline());
    await carol.page.waitForFunction(() => /offline/.test(window.chat.docs.status()));
    await carol.page.keyboard.press('End');
    await carol.page.keyboard.type(' carol-offline', { delay: 5 });
    await alice.page.keyboard.press('Home');
    await alice.page.keyboard.type('alice-live ', { delay: 5 });
    await bob.page.keyboard.type('|bob-live|', { delay: 5 });
    assert.ok(!(await textOf(alice.page)).includes('carol-offline'), 'nothing of carol arrives while she is offline');
    await carol.page.evaluate(() => window.chat.docs.online());
    const text = await converged(pages, [first, ' carol-offline', 'alice-live ', '|bob-live|'], true);
    // Typed at different places, each run of keys stays whole.
    for (const run of [' carol-offline', 'alice-live ', '|bob-live|']) {
      assert.ok(text.includes(run), `${run} in ${text}`);
    }
    await carol.page.waitForFunction(() => window.chat.docs.status() === 'live');
    // Every key typed is there once.
    assert.equal(text.length, 15 + ' carol-offline'.length + 'alice-live '.length + '|bob-live|'.length, text);
    await finish([alice, bob, carol]);
  } finally {
    await browser.close();
    await stopServer(server.child);
  }
});

test('others\' carets show in their nick colour, undo takes back only one\'s own edits, and a Yjs client beside the page converges', async () => {
  const server = await startServer();
  const browser = await launch();
  let provider = null;
  let ydoc = null;
  try {
    const alice = await login(browser, server.url, 'alice');
    const bob = await login(browser, server.url, 'bob');
    await openDoc(alice.page);
    await openDoc(bob.page);
    await alice.page.click('#doc-text');
    await alice.page.keyboard.type('# Notes\nalice was here\n', { delay: 5 });
    await converged([alice.page, bob.page], ['alice was here']);
    // Bob sees alice's caret, labelled with her nick, in her colour.
    await bob.page.waitForFunction(() => window.chat.docs.carets().includes('alice'));
    const hue = await bob.page.$eval('.doc-caret[data-nick="alice"]', (c) => c.style.getPropertyValue('--hue'));
    assert.match(hue, /^\d+$/);
    await bob.page.waitForFunction(() => /2 people here/.test(document.querySelector('#doc-people').textContent));
    fs.mkdirSync(artifacts, { recursive: true });
    await bob.page.screenshot({ path: path.join(artifacts, 'document.png') });
    // Bob types; alice undoes: her last edit goes, bob's stays.
    await bob.page.click('#doc-text');
    await bob.page.keyboard.press('Control+End');
    await bob.page.keyboard.type('bob too', { delay: 5 });
    await converged([alice.page, bob.page], ['bob too']);
    await alice.page.click('#doc-text');
    await alice.page.keyboard.press('Control+z');
    let text = await converged([alice.page, bob.page], ['bob too']);
    assert.ok(!text.includes('alice was here'), `alice's typing taken back: ${JSON.stringify(text)}`);
    await alice.page.keyboard.press('Control+Shift+z');
    text = await converged([alice.page, bob.page], ['alice was here', 'bob too']);
    // A Yjs client that is not ours (npm yjs and y-websocket, in Node)
    // edits beside the pages, with a session of its own.
    const token = await new Promise((resolve, reject) => {
      const socket = new WebSocket(`ws://${server.addr}/ws`, 'chat.v1');
      socket.on('error', reject);
      socket.on('open', () => socket.send(JSON.stringify({ type: 'hello', nick: 'robot' })));
      socket.on('message', (data) => {
        const frame = JSON.parse(data.toString());
        if (frame.type === 'welcome') {
          socket.send(JSON.stringify({ type: 'join', room: 'lobby' }));
          resolve(frame.session);
        }
      });
    });
    ydoc = new Y.Doc();
    provider = new WebsocketProvider(`ws://${server.addr}/yjs/lobby`, 'notes', ydoc, {
      WebSocketPolyfill: WebSocket, params: { session: token }, disableBc: true,
    });
    const ytext = ydoc.getText('content');
    await waitFor(() => provider.synced && ytext.toString() === text);
    ytext.insert(ytext.length, '\n- **robot** was here');
    await converged([alice.page, bob.page], ['- **robot** was here']);
    await alice.page.keyboard.press('Control+End');
    await alice.page.keyboard.type(' (page)', { delay: 5 });
    await waitFor(() => ytext.toString().endsWith(' (page)'));
    assert.equal(ytext.toString(), await textOf(bob.page));
    // The preview renders the Markdown (as elements, not HTML text).
    await alice.page.click('#doc-preview-toggle');
    await alice.page.waitForFunction(() => document.querySelector('#doc-preview h1')?.textContent === 'Notes'
      && document.querySelector('#doc-preview li strong')?.textContent === 'robot');
    await finish([alice, bob]);
  } finally {
    provider?.destroy();
    ydoc?.destroy();
    await browser.close();
    await stopServer(server.child);
  }
});

test('on a phone the document takes the screen; a large paste arrives whole; a reload opens the document again', async () => {
  const server = await startServer();
  const browser = await launch();
  try {
    const alice = await login(browser, server.url, 'alice');
    const bob = await login(browser, server.url, 'bob');
    await bob.page.setViewportSize({ width: 390, height: 800 });
    await openDoc(alice.page, 'plans');
    await openDoc(bob.page, 'plans');
    const box = await bob.page.locator('#doc-text').boundingBox();
    assert.ok(box.width > 330 && box.height > 400, JSON.stringify(box));
    assert.equal(await bob.page.isVisible('#messages'), false, 'the chat is under the document');
    // 300 KiB pasted at once: past a chat message's limit, one edit.
    const paste = `${'lorem ipsum dolor sit amet '.repeat(11_000)}\n`;
    await alice.page.click('#doc-text');
    await alice.page.keyboard.insertText(paste);
    await converged([alice.page, bob.page], [paste]);
    fs.mkdirSync(artifacts, { recursive: true });
    await bob.page.screenshot({ path: path.join(artifacts, 'document-phone.png') });
    // A reload comes back to the same document, whole.
    await bob.page.reload();
    await bob.page.waitForFunction((p) => window.chat?.docs.synced() && window.chat.docs.text() === p, paste);
    assert.equal(await bob.page.textContent('#doc-title'), '#lobby / plans');
    await finish([alice, bob]);
  } finally {
    await browser.close();
    await stopServer(server.child);
  }
});

test('the room\'s document list: created, opened, renamed and deleted from the panel, live for everyone; read-only rooms', async () => {
  const server = await startServer('127.0.0.1:0', null, ['--read-only-docs', 'archive-*']);
  const browser = await launch();
  try {
    const alice = await login(browser, server.url, 'alice');
    const bob = await login(browser, server.url, 'bob');
    await openDoc(alice.page);
    // A title that is not listed creates the document, and opens it.
    await alice.page.fill('#doc-name', 'Meeting notes');
    await alice.page.press('#doc-name', 'Enter');
    await alice.page.waitForFunction(() => window.chat.docs.title() === '#lobby / Meeting notes' && window.chat.docs.synced());
    await alice.page.click('#doc-text');
    await alice.page.keyboard.type('1. budget', { delay: 5 });
    // Bob is told in the room; his /doc opens the document edited last,
    // and his list has each one that was (notes was only opened).
    await bob.page.waitForFunction(() => [...document.querySelectorAll('#messages .text')]
      .some((e) => e.textContent === 'alice created the document “Meeting notes”'));
    await openDoc(bob.page, 'todo');
    await bob.page.click('#doc-text');
    await bob.page.keyboard.type('- coffee', { delay: 5 });
    await bob.page.waitForFunction(() => window.chat.docs.list().join() === 'meeting-notes,todo');
    await bob.page.click('#doc-list li[data-name="meeting-notes"] button');
    await bob.page.waitForFunction(() => window.chat.docs.synced() && window.chat.docs.text() === '1. budget');
    assert.match(await bob.page.textContent('#doc-list li[data-name="meeting-notes"] .doc-meta'), /^alice · /);
    fs.mkdirSync(artifacts, { recursive: true });
    await bob.page.screenshot({ path: path.join(artifacts, 'document-list.png') });
    // Renamed by alice: bob's title follows; his editor stays open.
    await alice.page.click('#doc-rename');
    await alice.page.fill('#doc-title-input', 'Minutes');
    await alice.page.press('#doc-title-input', 'Enter');
    await bob.page.waitForFunction(() => window.chat.docs.title() === '#lobby / Minutes');
    // History: the version kept at the first edit, restored by bob; the
    // page's text becomes it again, for both.
    await alice.page.click('#doc-text');
    await alice.page.keyboard.press('Control+End');
    await alice.page.keyboard.type(' and rent', { delay: 5 });
    await bob.page.waitForFunction(() => window.chat.docs.text() === '1. budget and rent');
    await bob.page.click('#doc-history');
    await bob.page.waitForFunction(() => window.chat.docs.versions().length > 0);
    await bob.page.click('#doc-versions li[data-version]:last-child button');
    await alice.page.waitForFunction(() => window.chat.docs.text() === '1');
    await alice.page.waitForFunction(() => [...document.querySelectorAll('#messages .text')]
      .some((e) => e.textContent === 'bob restored a past version of the document “Minutes”'));
    // Deleted by bob (two clicks): alice's editor says it is gone, the
    // list no longer has it.
    await bob.page.click('#doc-delete');
    await bob.page.click('#doc-delete');
    await alice.page.waitForFunction(() => /gone: bob deleted it/.test(window.chat.docs.status()));
    await alice.page.waitForFunction(() => window.chat.docs.list().join() === 'todo');
    // A read-only room's document: read, not typed into.
    await alice.page.fill('#text', '/join archive-2025');
    await alice.page.press('#text', 'Enter');
    await alice.page.waitForFunction(() => document.querySelector('#room-title')?.textContent === '#archive-2025');
    await alice.page.fill('#text', '/doc rules');
    await alice.page.press('#text', 'Enter');
    await alice.page.waitForFunction(() => window.chat.docs.status() === 'live, read-only');
    assert.equal(await alice.page.$eval('#doc-text', (t) => t.readOnly), true);
    assert.equal(await alice.page.isVisible('#doc-delete'), false);
    await finish([alice, bob]);
  } finally {
    await browser.close();
    await stopServer(server.child);
  }
});

/** The terminal client `chat` in a tmux server of its own: keys in, the screen out. */
class Tmux {
  constructor(command, env) {
    this.socket = `chat-doc-test-${process.pid}-${Math.floor(Math.random() * 1e9)}`;
    const vars = Object.entries(env).flatMap(([name, value]) => ['-e', `${name}=${value}`]);
    this.run('new-session', '-d', '-x', '110', '-y', '30', ...vars, command);
  }

  run(...args) {
    return execFileSync('tmux', ['-L', this.socket, '-f', '/dev/null', ...args]).toString();
  }

  type(text) {
    this.run('send-keys', '-l', text);
    this.run('send-keys', 'Enter');
  }

  screen() {
    return this.run('capture-pane', '-p');
  }

  /** Waits until the screen shows every one of `texts`. */
  async until(...texts) {
    const deadline = Date.now() + WAIT;
    for (;;) {
      const screen = this.screen();
      if (texts.every((t) => screen.includes(t))) {
        return screen;
      }
      if (Date.now() > deadline) {
        throw new Error(`the terminal never showed ${JSON.stringify(texts)}:\n${screen}`);
      }
      await new Promise((resolve) => setTimeout(resolve, 30));
    }
  }

  stop() {
    try {
      this.run('kill-server');
    } catch (_) {
      // Gone already.
    }
  }
}

test('the terminal client shows a document live, and /edit in $EDITOR keeps what a browser typed meanwhile', async () => {
  const server = await startServer();
  const browser = await launch();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'chat-tui-doc-'));
  // The editor: says it started, waits to be told to go on (while the
  // browser types), then adds a line at the end of the file.
  const fifo = path.join(dir, 'go');
  execFileSync('mkfifo', [fifo]);
  const editor = path.join(dir, 'editor.sh');
  fs.writeFileSync(editor, `#!/bin/sh\ntouch "${dir}/editing"\nread go < "${fifo}"\nprintf 'from the editor\\n' >> "$1"\n`, { mode: 0o755 });
  const chatBin = path.join(path.dirname(serverBin), 'chat');
  const term = new Tmux(`${chatBin} --server ws://${server.addr}/ws --nick carol`, {
    EDITOR: editor, XDG_CONFIG_HOME: path.join(dir, 'config'), XDG_DATA_HOME: path.join(dir, 'data'),
  });
  try {
    const alice = await login(browser, server.url, 'alice');
    await openDoc(alice.page);
    await alice.page.click('#doc-text');
    await alice.page.keyboard.type('first line\nsecond line\n', { delay: 5 });
    await term.until('connected');
    term.type('/doc notes');
    await term.until('first line', 'second line');
    // Live: what the browser types shows as it comes.
    await alice.page.keyboard.type('third line\n', { delay: 5 });
    await term.until('third line');
    // /edit: the editor has the text; the browser types at the top
    // meanwhile; both edits stay.
    term.type('/edit');
    const deadline = Date.now() + WAIT;
    while (!fs.existsSync(path.join(dir, 'editing'))) {
      assert.ok(Date.now() < deadline, 'the editor never started');
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    await alice.page.keyboard.press('Control+Home');
    await alice.page.keyboard.type('from the browser\n', { delay: 5 });
    fs.writeFileSync(fifo, 'go\n');
    await term.until('your edit is merged and saved', 'from the browser', 'from the editor');
    const want = 'from the browser\nfirst line\nsecond line\nthird line\nfrom the editor\n';
    await alice.page.waitForFunction((w) => window.chat.docs.text() === w, want);
    fs.writeFileSync(path.join(artifacts, 'document-terminal.txt'), term.screen());
    assert.deepEqual(alice.problems, []);
    await alice.page.context().close();
  } finally {
    term.stop();
    await browser.close();
    await stopServer(server.child);
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

/** Resolves once `check()` holds (polled); fails after WAIT. */
async function waitFor(check) {
  const deadline = Date.now() + WAIT;
  while (!check()) {
    if (Date.now() > deadline) {
      throw new Error('timed out');
    }
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}
