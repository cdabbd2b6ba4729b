// How the page copes in a room of thousands while a crowd joins: opens the
// page against a running server as `watcher`, joins `bench-0`, and reports
// (JSON on stdout) how long it took to count `--members` members, the main
// thread's long tasks meanwhile, and how many lines and list items the page
// holds. Run by `scripts/bench clients` (docs/performance.md), not a test.
//
//   node big-room.mjs http://127.0.0.1:PORT 19001
import { chromium } from 'playwright-core';

const [url, members] = process.argv.slice(2);
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
    '--disable-component-update', '--disable-sync', '--no-first-run'],
});
try {
  const page = await browser.newPage();
  page.setDefaultTimeout(300000);
  await page.goto(url);
  await page.fill('#nick-input', 'watcher');
  await page.click('#login-form button[type=submit]');
  await page.waitForFunction(() => document.querySelector('#room-title')?.textContent === '#lobby');
  await page.fill('#text', '/join bench-0');
  await page.press('#text', 'Enter');
  await page.waitForFunction(() => document.querySelector('#room-title')?.textContent === '#bench-0');
  await page.evaluate(() => {
    window.longTasks = [];
    new PerformanceObserver((list) => window.longTasks.push(...list.getEntries().map((e) => e.duration)))
      .observe({ type: 'longtask' });
  });
  // Ready: the crowd may come.
  console.error('ready');
  const started = Date.now();
  await page.waitForFunction(
    (n) => document.querySelector('#members-title')?.textContent === `Members (${n})`, members, { polling: 100 });
  const seconds = (Date.now() - started) / 1000;
  // A round trip while the room is this big.
  const sent = Date.now();
  await page.fill('#text', 'still here');
  await page.press('#text', 'Enter');
  await page.waitForFunction(() => [...document.querySelectorAll('#messages li:not(.pending) .text')]
    .some((e) => e.textContent === 'still here'));
  const roundTripMs = Date.now() - sent;
  const report = await page.evaluate(() => ({
    longTasks: window.longTasks.length,
    longTaskMsTotal: Math.round(window.longTasks.reduce((a, b) => a + b, 0)),
    longTaskMsMax: Math.round(Math.max(0, ...window.longTasks)),
    messageLines: document.querySelectorAll('#messages li').length,
    memberItems: document.querySelectorAll('#members li').length,
    heapBytes: performance.memory?.usedJSHeapSize ?? null,
  }));
  console.log(JSON.stringify({ seconds, roundTripMs, ...report }));
} finally {
  await browser.close();
}
