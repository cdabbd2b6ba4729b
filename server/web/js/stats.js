// The live stats page: subscribes to the $stats channel (docs/protocol.md)
// and draws the counters and a rolling chart, once a second, as the server
// pushes them. No chart library: a canvas. Where a WebSocket cannot get
// through, over the HTTP fallback (as the chat page, whose choice it reads).

import { $, formatSize, parseFrame } from './common.js';
import { EventStreamSocket } from './connection.js';

const HISTORY = 300; // seconds shown in the chart (what the server keeps)
const TOKEN_KEY = 'chat.stats-token';
const samples = []; // { ts, messages, connections }, oldest first
let retry = 0;
let updates = 0;
let current = null; // the socket in use; a closed older one is ignored
let fallback = new URLSearchParams(location.search).get('transport') === 'sse'
  || sessionStorage.getItem('chat.transport') === 'sse';

function duration(ms) {
  const s = Math.floor(ms / 1000);
  const d = Math.floor(s / 86400);
  const h = Math.floor((s % 86400) / 3600);
  const m = Math.floor((s % 3600) / 60);
  return d ? `${d}d ${h}h` : h ? `${h}h ${m}m` : m ? `${m}m ${s % 60}s` : `${s}s`;
}

function token() {
  return new URLSearchParams(location.search).get('token') || sessionStorage.getItem(TOKEN_KEY);
}

function connect() {
  const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
  const socket = fallback ? new EventStreamSocket('/ws') : new WebSocket(`${scheme}//${location.host}/ws`, 'chat.v1');
  let opened = false;
  current = socket;
  $('status').textContent = 'connecting…';
  socket.onopen = () => {
    opened = true;
    const nick = `stats-${Math.random().toString(36).slice(2, 8)}`;
    socket.send(JSON.stringify({ type: 'hello', nick, id: 'hello' }));
  };
  socket.onmessage = (event) => {
    const frame = parseFrame(event.data);
    if (!frame) {
      return;
    }
    if (frame.type === 'welcome') {
      const subscribe = { type: 'subscribe', channel: '$stats', id: 'stats' };
      const given = token();
      if (given) {
        subscribe.token = given;
      }
      socket.send(JSON.stringify(subscribe));
    } else if (frame.type === 'subscribed') {
      retry = 0;
      $('status').textContent = 'live';
      $('status').classList.remove('offline');
      $('token-form').hidden = true;
    } else if (frame.type === 'stats_history') {
      // The last minutes, at once: the chart starts full.
      samples.splice(0, samples.length, ...frame.points.map((p) => (
        { ts: p.ts, messages: p.messages_per_sec, connections: p.connections })));
      document.body.dataset.history = String(samples.length);
      draw();
    } else if (frame.type === 'stats') {
      show(frame);
    } else if (frame.type === 'error' && frame.code === 'no_such_channel') {
      sessionStorage.removeItem(TOKEN_KEY);
      $('status').textContent = 'a token is needed';
      $('token-form').hidden = false;
      $('token-error').textContent = token() ? 'That token was not accepted.' : '';
      socket.close(1000);
    } else if (frame.type === 'error' && frame.id === 'hello') {
      $('status').textContent = `refused: ${frame.message}`;
    }
  };
  socket.onclose = (event) => {
    if (socket !== current) {
      return;
    }
    current = null;
    if (!$('token-form').hidden) {
      return; // waiting for a token
    }
    if (!opened && !fallback) {
      // No WebSocket gets through: the fallback, at once.
      fallback = true;
      connect();
      return;
    }
    $('status').textContent = 'disconnected — reconnecting';
    $('status').classList.add('offline');
    const delay = event.code === 1012 ? 1000 : Math.min(30000, 500 * 2 ** retry) * Math.random();
    retry += 1;
    setTimeout(connect, delay);
  };
}

function show(stats) {
  updates += 1;
  document.body.dataset.updates = String(updates);
  $('people').textContent = String(stats.people ?? 0);
  $('connections').textContent = String(stats.connections);
  $('watchers').textContent = String(stats.watchers ?? 0);
  $('sessions').textContent = String(stats.sessions);
  $('room-count').textContent = String(stats.room_count);
  $('messages-per-sec').textContent = String(stats.messages_per_sec);
  $('messages-total').textContent = String(stats.messages_total);
  $('bytes-in').textContent = formatSize(stats.bytes_in);
  $('bytes-out').textContent = formatSize(stats.bytes_out);
  $('queued').textContent = `${stats.queued_frames} (fullest ${stats.queued_frames_max})`;
  $('held').textContent = String(stats.held_for_storage);
  $('history').textContent = formatSize(stats.history_bytes || 0);
  $('files').textContent = formatSize(stats.file_bytes || 0);
  // In cluster mode the counters are one node's, and Redis is storage too.
  $('node-row').hidden = !stats.node;
  $('node').textContent = stats.node || '';
  const cluster = stats.cluster;
  $('cluster-row').hidden = !cluster;
  $('cluster').textContent = cluster
    ? `${cluster.nodes} nodes · ${cluster.connections} connections · ${cluster.people} people · ${cluster.messages_per_sec} messages / s`
    : '';
  $('storage').textContent = stats.cluster_down
    ? `Redis unavailable (${stats.cluster_down}): messages refused`
    : stats.storage_failing ? 'failing: messages refused' : 'ok';
  $('uptime').textContent = duration(stats.uptime_ms);
  const rows = stats.rooms.map((room) => {
    const tr = document.createElement('tr');
    const name = document.createElement('td');
    name.textContent = `#${room.name}`;
    const members = document.createElement('td');
    members.textContent = String(room.members);
    tr.append(name, members);
    return tr;
  });
  $('rooms').replaceChildren(...rows);
  samples.push({ ts: Date.now(), messages: stats.messages_per_sec, connections: stats.connections });
  while (samples.length > HISTORY) {
    samples.shift();
  }
  draw();
}

/** "22:14" for a time. */
function clock(ts) {
  return new Date(ts).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
}

function draw() {
  const canvas = $('chart');
  const ratio = window.devicePixelRatio || 1;
  const width = canvas.clientWidth || canvas.width;
  const height = canvas.clientHeight || canvas.height;
  if (canvas.width !== Math.round(width * ratio)) {
    canvas.width = Math.round(width * ratio);
    canvas.height = Math.round(height * ratio);
  }
  const ctx = canvas.getContext('2d');
  ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
  ctx.clearRect(0, 0, width, height);
  ctx.font = '12px system-ui, sans-serif';
  const style = getComputedStyle(document.body);
  const muted = style.getPropertyValue('--muted').trim() || '#888';
  // The plot, with room for the time axis below it.
  const plot = { left: 4, right: width - 4, top: 20, bottom: height - 22 };
  const end = samples.length ? samples[samples.length - 1].ts : Date.now();
  const start = end - (HISTORY - 1) * 1000;
  const x = (ts) => plot.left + ((ts - start) / (end - start)) * (plot.right - plot.left);
  ctx.strokeStyle = muted;
  ctx.globalAlpha = 0.3;
  ctx.beginPath();
  for (let i = 0; i <= 4; i += 1) {
    const y = plot.top + ((plot.bottom - plot.top) * i) / 4;
    ctx.moveTo(plot.left, y);
    ctx.lineTo(plot.right, y);
  }
  ctx.stroke();
  ctx.globalAlpha = 1;
  // The time axis: a label each whole minute, never on top of another.
  ctx.fillStyle = muted;
  ctx.textBaseline = 'top';
  let lastRight = -Infinity;
  const labels = [];
  for (let t = Math.ceil(start / 60000) * 60000; t <= end; t += 60000) {
    const text = clock(t);
    const w = ctx.measureText(text).width;
    const left = Math.min(Math.max(x(t) - w / 2, 0), width - w);
    if (left >= lastRight + 8) {
      ctx.fillText(text, left, plot.bottom + 4);
      labels.push([left, left + w]);
      lastRight = left + w;
    }
  }
  canvas.dataset.labels = JSON.stringify(labels);
  const line = (key, colour, side) => {
    const top = Math.max(1, ...samples.map((s) => s[key]));
    ctx.strokeStyle = colour;
    ctx.lineWidth = 2;
    ctx.beginPath();
    samples.forEach((sample, i) => {
      const y = plot.bottom - (sample[key] / top) * (plot.bottom - plot.top);
      if (i === 0) ctx.moveTo(x(sample.ts), y); else ctx.lineTo(x(sample.ts), y);
    });
    ctx.stroke();
    // The scale of each line, at its own side of the top.
    ctx.fillStyle = colour;
    ctx.textBaseline = 'alphabetic';
    const text = `max ${top}`;
    const w = ctx.measureText(text).width;
    ctx.fillText(text, side === 'left' ? 6 : width - w - 6, 14);
  };
  line('messages', style.getPropertyValue('--accent').trim() || '#3b6fd8', 'left');
  line('connections', style.getPropertyValue('--error').trim() || '#b42318', 'right');
}

document.addEventListener('DOMContentLoaded', () => {
  $('token-form').addEventListener('submit', (event) => {
    event.preventDefault();
    sessionStorage.setItem(TOKEN_KEY, $('token-input').value.trim());
    $('token-form').hidden = true;
    connect();
  });
  connect();
});
