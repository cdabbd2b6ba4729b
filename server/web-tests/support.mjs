// What the browser tests share: the real chat-server binary started on a
// free port (and stopped), a redis-server of a test's own, Chromium, and
// logging a page in.
import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import net from 'node:net';
import path from 'node:path';
import fs from 'node:fs';
import os from 'node:os';
import { before, after } from 'node:test';
import { chromium } from 'playwright-core';

export const here = path.dirname(fileURLToPath(import.meta.url));
export const serverBin = process.env.CHAT_SERVER_BIN || path.join(here, '..', '..', 'target', 'debug', 'chat-server');
export const WAIT = 15000;

/** Headless Debian Chromium, as this machine has it. */
export function launch() {
  return chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    args: [
      '--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
      '--disable-component-update', '--disable-sync', '--no-first-run',
    ],
  });
}

/**
 * One headless Chromium for the test file that calls this: launched before
 * its tests, closed after them. Returns what gives it.
 */
export function browserForFile() {
  let browser;
  before(async () => {
    browser = await launch();
  });
  after(async () => {
    await browser?.close();
  });
  return () => browser;
}

/**
 * Starts a test nginx (Debian's, with a generated config: the workspace's
 * chat-test-nginx) in front of `upstreams` ("127.0.0.1:PORT"), passing
 * WebSocket upgrades on unless `websocket` is false (the common
 * misconfiguration); on `port` if given. Resolves with { child, url, port }.
 */
export function startNginx(upstreams, { websocket = true, port = null } = {}) {
  const bin = path.join(path.dirname(serverBin), 'chat-test-nginx');
  const args = [...(websocket ? [] : ['--no-websocket']), ...(port ? ['--port', String(port)] : []), ...upstreams];
  const child = spawn(bin, args, { stdio: ['pipe', 'pipe', 'inherit'] });
  return new Promise((resolve, reject) => {
    const lines = createInterface({ input: child.stdout });
    const timer = setTimeout(() => reject(new Error('nginx did not start')), WAIT);
    child.once('error', reject);
    child.once('exit', (code) => reject(new Error(`chat-test-nginx exited with ${code}`)));
    lines.on('line', (line) => {
      const match = /^listening on (http:\/\/127\.0\.0\.1:(\d+))$/.exec(line);
      if (match) {
        clearTimeout(timer);
        resolve({ child, url: match[1], port: Number(match[2]) });
      }
    });
  });
}

/** Stops a test nginx: it stops when its stdin closes. */
export function stopNginx(child) {
  return new Promise((resolve) => {
    if (child.exitCode !== null) {
      resolve();
      return;
    }
    child.once('exit', () => resolve());
    child.stdin.end();
  });
}

/**
 * Starts chat-server on `listen` and resolves with { child, url, addr } once
 * it listens. With `dataDir` history is durable there; without, in memory.
 */
export function startServer(listen = '127.0.0.1:0', dataDir = null, extra = []) {
  const env = { ...process.env, RUST_LOG: process.env.RUST_LOG || 'warn' };
  const storage = dataDir ? ['--data-dir', dataDir] : ['--ephemeral'];
  const args = ['--listen', listen, ...storage, ...extra];
  const child = spawn(serverBin, args, { stdio: ['ignore', 'pipe', 'inherit'], env });
  return new Promise((resolve, reject) => {
    const lines = createInterface({ input: child.stdout });
    const timer = setTimeout(() => reject(new Error('server did not start')), WAIT);
    child.once('error', reject);
    child.once('exit', (code) => reject(new Error(`server exited with ${code}`)));
    lines.on('line', (line) => {
      const match = /^listening on (https?:\/\/(\S+))$/.exec(line);
      if (match) {
        clearTimeout(timer);
        resolve({ child, url: match[1], addr: match[2] });
      }
    });
  });
}

export function stopServer(child) {
  return new Promise((resolve) => {
    if (child.exitCode !== null) {
      resolve(child.exitCode);
      return;
    }
    child.once('exit', (code) => resolve(code));
    child.kill('SIGTERM');
  });
}

/** A free TCP port on loopback, for a server that cannot be told port 0. */
function freePort() {
  return new Promise((resolve, reject) => {
    const probe = net.createServer();
    probe.once('error', reject);
    probe.listen(0, '127.0.0.1', () => {
      const { port } = probe.address();
      probe.close(() => resolve(port));
    });
  });
}

/**
 * A redis-server of the caller's own on a free port, in a temporary
 * directory: { url, stop }. Resolves once it answers.
 */
export async function startRedis() {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'chat-web-redis-'));
  for (let attempt = 0; attempt < 20; attempt += 1) {
    const port = await freePort();
    const child = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '',
      '--appendonly', 'no', '--dir', dir], { stdio: 'ignore' });
    const up = await new Promise((resolve) => {
      const deadline = Date.now() + WAIT;
      const tryConnect = () => {
        if (child.exitCode !== null) return resolve(false);
        const socket = net.connect(port, '127.0.0.1');
        socket.once('connect', () => {
          socket.write('PING\r\n');
          socket.once('data', () => { socket.destroy(); resolve(true); });
        });
        socket.once('error', () => {
          socket.destroy();
          if (Date.now() > deadline) return resolve(false);
          setTimeout(tryConnect, 20);
        });
      };
      tryConnect();
    });
    if (up) {
      const stop = () => new Promise((resolve) => {
        if (child.exitCode !== null) return resolve();
        child.once('exit', () => { fs.rmSync(dir, { recursive: true, force: true }); resolve(); });
        child.kill('SIGKILL');
      });
      return { url: `redis://127.0.0.1:${port}/`, stop };
    }
    child.kill('SIGKILL');
  }
  throw new Error('redis-server could not start on any free port');
}

/** A fresh context of `browser` (its own localStorage) logged in as `nick`. */
export async function login(browser, url, nick, { setup = null } = {}) {
  const context = await browser.newContext();
  // Routes and the like, before the page loads.
  await setup?.(context);
  const page = await context.newPage();
  page.setDefaultTimeout(WAIT);
  const problems = [];
  page.on('dialog', (dialog) => {
    problems.push(`dialog: ${dialog.message()}`);
    dialog.dismiss();
  });
  page.on('pageerror', (err) => problems.push(`page error: ${err.message}`));
  await page.goto(url);
  await page.fill('#nick-input', nick);
  await page.click('#login-form button[type=submit]');
  await page.waitForFunction(() => document.querySelector('#room-title')?.textContent === '#lobby');
  await page.waitForFunction((me) => document.querySelector('#me')?.textContent === me, nick);
  return { context, page, problems };
}

export async function say(page, text) {
  await page.fill('#text', text);
  await page.press('#text', 'Enter');
}

/** Waits until a message line with exactly this text is shown (as the server has it: not one being sent). */
export async function seeMessage(page, text) {
  await page.waitForFunction(
    (t) => [...document.querySelectorAll('#messages li:not(.pending) .text')].some((e) => e.textContent === t),
    text,
  );
}

/** How many message lines (as the server has them) show exactly `text`. */
export async function countMessages(page, text) {
  return page.evaluate(
    (t) => [...document.querySelectorAll('#messages li:not(.pending) .text')].filter((e) => e.textContent === t).length,
    text,
  );
}

/**
 * Records every text the banner shows from now on, so one that is soon
 * replaced (a reconnect that failed at once) is still seen. Resolves to a
 * function that waits for a recorded text matching `pattern`.
 */
export async function recordBanners(page) {
  await page.evaluate(() => {
    window.bannersSeen = [];
    const text = document.getElementById('banner-text');
    new MutationObserver(() => window.bannersSeen.push(text.textContent))
      .observe(text, { childList: true, characterData: true, subtree: true });
  });
  return (pattern) => page.waitForFunction(
    (source) => window.bannersSeen.some((t) => new RegExp(source).test(t)),
    pattern.source,
  );
}

/** A real 240x140 PNG, drawn by the browser itself. */
export async function makePng(page) {
  const base64 = await page.evaluate(() => {
    const canvas = document.createElement('canvas');
    canvas.width = 240;
    canvas.height = 140;
    const ctx = canvas.getContext('2d');
    const gradient = ctx.createLinearGradient(0, 0, 240, 140);
    gradient.addColorStop(0, '#3b6fd8');
    gradient.addColorStop(1, '#e33');
    ctx.fillStyle = gradient;
    ctx.fillRect(0, 0, 240, 140);
    ctx.fillStyle = '#fff';
    ctx.font = 'bold 22px sans-serif';
    ctx.fillText('sent as binary frames', 12, 78);
    return canvas.toDataURL('image/png').split(',')[1];
  });
  return Buffer.from(base64, 'base64');
}
