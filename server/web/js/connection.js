// The page's connection: the driver of the Session (session.js). It owns
// what the session may not: the transport, the clock, the timer and the
// files being sent. It carries out what the session asks and hands the
// session's events to the page. Two transports fit the same calls: a
// WebSocket, and the HTTP fallback (an event stream and POSTs) for where
// WebSockets cannot get through; autoTransport picks between them.

import { Session } from './session.js';

/** How much a transport may have buffered before the next part of a file waits. */
const MAX_BUFFERED = 1 << 20;
/** A WebSocket not open after this long is taken as blocked: the fallback is tried. */
const OPEN_TIMEOUT = 4000;
/** On the fallback, how often a WebSocket is tried again in the background. */
const PROBE_INTERVAL = 30000;
/** The most text one POST of the fallback carries. */
const MAX_BATCH = 64 * 1024;
/** Where the choice of the fallback is remembered for this tab. */
const CHOICE_KEY = 'chat.transport';

/**
 * The WebSocket transport: ws(s)://this-host/ws, subprotocol chat.v1.
 * open(handlers) returns a link { url, transport, sendText, sendBinary, buffered, close };
 * handlers are { opened, text(data), closed(code, reason), failed(why), better() }.
 */
export const webSocketTransport = {
  open(handlers) {
    const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
    const socket = new WebSocket(`${scheme}//${location.host}/ws`, 'chat.v1');
    socket.binaryType = 'arraybuffer';
    let opened = false;
    socket.onopen = () => {
      opened = true;
      handlers.opened();
    };
    socket.onmessage = (event) => {
      if (typeof event.data === 'string') {
        handlers.text(event.data);
      }
    };
    socket.onclose = (event) => {
      if (opened) {
        handlers.closed(event.code, event.reason);
      } else {
        handlers.failed(`no connection (${event.code})`);
      }
    };
    return {
      url: socket.url,
      transport: 'websocket',
      sendText: (text) => socket.send(text),
      sendBinary: (bytes) => socket.send(bytes),
      buffered: () => socket.bufferedAmount,
      close: (code) => {
        socket.onopen = null;
        socket.onclose = null;
        socket.onmessage = null;
        socket.close(code);
      },
    };
  },
};

/**
 * The HTTP fallback (docs/protocol.md): an event stream from GET /ws
 * carries the server's frames; POST /ws?stream=NAME&seq=N carries the
 * page's, one request at a time, each holding what queued meanwhile (a
 * file's part goes alone, as binary). A request that fails on the way is
 * sent again with the same seq: the server takes it once.
 */
export const eventStreamTransport = {
  open: (handlers) => openEventStream('/ws', handlers),
};

/**
 * The fallback at `path` (which may carry a query): handlers as a
 * transport's, and binary(bytes) for binary messages (documents).
 */
function openEventStream(path, handlers) {
  const source = new EventSource(path);
  const postTo = `${path}${path.includes('?') ? '&' : '?'}stream=`;
  let name = null;
  let seq = 0;
  let over = false;
  let posting = false;
  let queuedBytes = 0;
  const queue = [];
  const end = (then) => {
    if (!over) {
      over = true;
      source.close();
      then();
    }
  };
  const post = async (item) => {
    const body = item.binary ?? item.text ?? '';
    const close = item.close ? `&close=${item.close}` : '';
    const type = item.binary ? 'application/octet-stream' : 'text/plain;charset=utf-8';
    for (let attempt = 0; attempt < 3; attempt += 1) {
      try {
        const answer = await fetch(`${postTo}${name}&seq=${seq}${close}`, {
          method: 'POST', body, headers: { 'Content-Type': type }, cache: 'no-store', keepalive: Boolean(item.close),
        });
        return answer.ok ? null : `the server refused a request (${answer.status})`;
      } catch (err) {
        if (item.close) {
          return null;
        }
      }
    }
    return 'requests do not reach the server';
  };
  const pump = async () => {
    while (!posting && name !== null && queue.length) {
      // Text lines go together; a file's part or a goodbye goes alone.
      let item = queue.shift();
      if (item.text !== undefined) {
        const lines = [item.text];
        let bytes = item.text.length;
        while (queue.length && queue[0].text !== undefined && bytes < MAX_BATCH) {
          const next = queue.shift();
          lines.push(next.text);
          bytes += next.text.length;
        }
        item = { text: lines.join('\n'), size: bytes };
      }
      posting = true;
      const refused = await post(item);
      posting = false;
      queuedBytes -= item.size ?? 0;
      seq += 1;
      if (refused && !item.close) {
        end(() => handlers.closed(1006, refused));
        return;
      }
    }
  };
  const send = (item) => {
    queue.push(item);
    queuedBytes += item.size ?? 0;
    pump();
  };
  source.addEventListener('stream', (event) => {
    name = event.data;
    handlers.opened();
    pump();
  });
  source.onmessage = (event) => handlers.text(event.data);
  source.addEventListener('binary', (event) => {
    const bytes = Uint8Array.from(atob(event.data), (c) => c.charCodeAt(0));
    handlers.binary?.(bytes.buffer);
  });
  // Any request is a sign of life: an empty one answers a ping.
  source.addEventListener('ping', () => send({ text: '' }));
  source.addEventListener('close', (event) => {
    const [code, ...reason] = String(event.data).split(' ');
    end(() => handlers.closed(Number(code) || 1005, reason.join(' ')));
  });
  source.onerror = () => end(() => (name === null ? handlers.failed('no event stream') : handlers.closed(1006, '')));
  return {
    url: source.url,
    transport: 'sse',
    sendText: (text) => send({ text, size: text.length }),
    sendBinary: (bytes) => send({ binary: bytes, size: bytes.byteLength }),
    buffered: () => queuedBytes,
    close: (code) => {
      const named = name !== null && !over;
      over = true;
      source.close();
      if (named) {
        send({ close: code });
      }
    },
  };
}

/**
 * A WebSocket look-alike over the fallback, for libraries that take a
 * WebSocket class (y-websocket's WebSocketPolyfill): what they use of the
 * API, with binary messages as ArrayBuffers.
 */
export class EventStreamSocket {
  static CONNECTING = 0;
  static OPEN = 1;
  static CLOSING = 2;
  static CLOSED = 3;

  constructor(url) {
    const { pathname, search } = new URL(url, location.href);
    this.url = url;
    this.binaryType = 'arraybuffer';
    this.readyState = EventStreamSocket.CONNECTING;
    this.CONNECTING = 0;
    this.OPEN = 1;
    this.CLOSING = 2;
    this.CLOSED = 3;
    this.onopen = null;
    this.onmessage = null;
    this.onclose = null;
    this.onerror = null;
    const closed = (code, reason) => {
      this.readyState = EventStreamSocket.CLOSED;
      this.onclose?.({ code, reason, wasClean: code !== 1006 });
    };
    this.link = openEventStream(`${pathname}${search}`, {
      opened: () => {
        this.readyState = EventStreamSocket.OPEN;
        this.onopen?.({});
      },
      text: (data) => this.onmessage?.({ data }),
      binary: (data) => this.onmessage?.({ data }),
      closed,
      failed: () => {
        this.onerror?.({});
        closed(1006, '');
      },
    });
  }

  get bufferedAmount() {
    return this.link.buffered();
  }

  send(data) {
    if (typeof data === 'string') {
      this.link.sendText(data);
    } else {
      // A copy: the caller may reuse its buffer.
      const bytes = data instanceof ArrayBuffer ? new Uint8Array(data) : new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
      this.link.sendBinary(bytes.slice().buffer);
    }
  }

  close(code = 1000) {
    if (this.readyState === EventStreamSocket.CLOSED) {
      return;
    }
    this.link.close(code);
    this.readyState = EventStreamSocket.CLOSED;
    // As a WebSocket does, the close is told asynchronously.
    setTimeout(() => this.onclose?.({ code, reason: '', wasClean: true }), 0);
  }
}

/**
 * Picks the transport by itself: a WebSocket first; if it does not open
 * within OPEN_TIMEOUT, or cannot open while the fallback can, the fallback,
 * remembered for the tab. On the fallback a WebSocket is tried again every
 * PROBE_INTERVAL; once one answers, handlers.better() asks the connection
 * to move over. ?transport=sse or ?transport=websocket forces one.
 */
export function autoTransport({ probeInterval = PROBE_INTERVAL, openTimeout = OPEN_TIMEOUT } = {}) {
  const forced = new URLSearchParams(location.search).get('transport');
  const remembered = () => forced === 'sse' || (forced !== 'websocket' && sessionStorage.getItem(CHOICE_KEY) === 'sse');
  // A WebSocket that opened but closed before the server's first frame (a
  // proxy that lets the upgrade through, then cuts it): next time, the fallback.
  let cutEarly = false;
  let probe = null;
  const stopProbing = () => {
    clearTimeout(probe);
    probe = null;
  };
  /** Tries a WebSocket in the background; `works()` once one answered a frame. */
  const probeLater = (works) => {
    stopProbing();
    if (forced === 'sse') {
      return;
    }
    probe = setTimeout(() => {
      const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
      const socket = new WebSocket(`${scheme}//${location.host}/ws`, 'chat.v1');
      const give = setTimeout(() => socket.close(), openTimeout);
      // Before a hello the server answers anything with an error frame:
      // a frame back proves the whole way works.
      socket.onopen = () => socket.send(JSON.stringify({ type: 'ping', id: 'probe' }));
      socket.onmessage = () => {
        clearTimeout(give);
        socket.onclose = null;
        socket.close(1000);
        sessionStorage.removeItem(CHOICE_KEY);
        works();
      };
      socket.onclose = () => {
        clearTimeout(give);
        probeLater(works);
      };
    }, probeInterval);
  };
  const fallback = (handlers) => {
    const link = eventStreamTransport.open({
      ...handlers,
      opened: () => {
        if (forced !== 'sse') {
          sessionStorage.setItem(CHOICE_KEY, 'sse');
        }
        probeLater(() => handlers.better());
        handlers.opened();
      },
    });
    const close = link.close;
    return { ...link, close: (code) => { stopProbing(); close(code); } };
  };
  return {
    open(handlers) {
      stopProbing();
      if (forced !== 'websocket' && (remembered() || cutEarly)) {
        cutEarly = false;
        return fallback(handlers);
      }
      let heard = false;
      // The link handed out stays the same object whichever transport ends up under it.
      const link = {};
      let settled = false;
      const toFallback = () => {
        settled = true;
        clearTimeout(timer);
        socketLink.close(1000);
        Object.assign(link, fallback(handlers));
      };
      const socketLink = webSocketTransport.open({
        ...handlers,
        opened: () => {
          settled = true;
          clearTimeout(timer);
          handlers.opened();
        },
        text: (data) => {
          heard = true;
          handlers.text(data);
        },
        closed: (code, reason) => {
          cutEarly = !heard && forced !== 'websocket';
          handlers.closed(code, reason);
        },
        failed: (why) => (settled || forced === 'websocket' ? handlers.failed(why) : toFallback()),
      });
      const timer = setTimeout(() => {
        if (!settled && forced !== 'websocket') {
          toFallback();
        }
      }, openTimeout);
      Object.assign(link, socketLink, {
        close: (code) => {
          clearTimeout(timer);
          settled = true;
          socketLink.close(code);
        },
      });
      return link;
    },
  };
}

export class Connection {
  /**
   * @param options { config, saved, transport, onEvent(event), onSave(saved), onProgress(file, sent) }
   */
  constructor(options) {
    this.options = options;
    this.transport = options.transport;
    this.link = null;
    this.files = new Map(); // file id -> File
    this.nextFile = 1;
    this.timer = null;
    this.paused = false;
    this.stepping = false;
    this.again = false;
    this.stopped = false;
    this.session = new Session(options.config, options.saved, this.now());
    this.step();
  }

  now() {
    return performance.now();
  }

  /** A frame to send (`id` for one the page wants to recognise the answer of). */
  send(frame, id = null) {
    this.session.handleCommand(this.now(), { type: 'send', frame, id });
    this.step();
  }

  /** A file to send to `room`; its id, as the events name it. */
  upload(file, room) {
    const id = this.nextFile;
    this.nextFile += 1;
    this.files.set(id, file);
    const mime = file.type || 'application/octet-stream';
    const upload = { file: id, room, name: file.name, mime, size: file.size };
    this.session.handleCommand(this.now(), { type: 'upload', upload });
    this.step();
    return id;
  }

  /** The network is back (the browser's `online` event): reconnect now. */
  online() {
    this.paused = false;
    this.session.handleOnline(this.now());
    this.step();
  }

  /** Drops the connection and stays offline until online(): for tests and the console. */
  offline() {
    this.paused = true;
    this.dropLink();
    this.session.handleDisconnected(this.now(), { kind: 'broken', why: 'offline' });
    this.step();
  }

  /** Ends this connection for good (a new login replaces it). */
  stop() {
    this.stopped = true;
    this.paused = true;
    clearTimeout(this.timer);
    this.dropLink();
  }

  /** Carries out what the session asks, then reports its events. */
  step() {
    if (this.stopped) {
      return;
    }
    if (this.stepping) {
      this.again = true;
      return;
    }
    this.stepping = true;
    do {
      this.again = false;
      for (let transmit = this.session.pollTransmit(); transmit; transmit = this.session.pollTransmit()) {
        this.transmit(transmit);
      }
      for (const id of [...this.files.keys()]) {
        if (!this.session.wantsFile(id)) {
          this.files.delete(id);
        }
      }
      const saved = this.session.pollSave();
      if (saved) {
        this.options.onSave(saved);
      }
      for (let event = this.session.pollEvent(); event; event = this.session.pollEvent()) {
        this.options.onEvent(event);
      }
    } while (this.again);
    this.stepping = false;
    this.schedule();
  }

  schedule() {
    clearTimeout(this.timer);
    const at = this.session.pollTimeout();
    if (at !== null) {
      this.timer = setTimeout(() => {
        this.session.handleTimeout(this.now());
        this.step();
      }, Math.max(0, at - this.now()));
    }
  }

  transmit(transmit) {
    switch (transmit.type) {
      case 'connect':
        this.open();
        break;
      case 'text':
        try {
          this.link?.sendText(transmit.text);
        } catch (err) {
          this.dropLink();
          this.session.handleDisconnected(this.now(), { kind: 'broken', why: String(err) });
        }
        break;
      case 'chunk':
        this.chunk(transmit);
        break;
      case 'close':
        this.dropLink();
        break;
      default:
        break;
    }
  }

  open() {
    this.dropLink();
    if (this.paused) {
      // Answered on the next turn, as a real failure would be.
      setTimeout(() => {
        this.session.handleDisconnected(this.now(), { kind: 'unreachable', why: 'offline' });
        this.step();
      }, 0);
      return;
    }
    const link = this.transport.open({
      opened: () => this.whileCurrent(link, () => this.session.handleConnected(this.now())),
      text: (data) => this.whileCurrent(link, () => this.session.handleFrame(this.now(), data)),
      closed: (code, reason) => this.whileCurrent(link, () => {
        this.link = null;
        this.session.handleDisconnected(this.now(), { kind: 'closed', code, reason });
      }),
      failed: (why) => this.whileCurrent(link, () => {
        this.link = null;
        this.session.handleDisconnected(this.now(), { kind: 'unreachable', why });
      }),
      // A better transport works now: move over when nothing is under way.
      better: () => this.whileCurrent(link, () => this.session.handleSwitch(this.now())),
    });
    this.link = link;
  }

  /** Runs `then` and steps, if `link` is still the connection in use. */
  whileCurrent(link, then) {
    if (this.link === link) {
      then();
      this.step();
    }
  }

  dropLink() {
    const link = this.link;
    this.link = null;
    if (link) {
      link.close(1000);
    }
  }

  /** Reads the next part of a file and sends it, once the transport has room. */
  async chunk({ file, offset, max }) {
    const blob = this.files.get(file);
    const link = this.link;
    if (!blob || !link) {
      this.session.handleChunkFailed(this.now(), file, 'the file is no longer there');
      this.step();
      return;
    }
    try {
      while (link.buffered() > MAX_BUFFERED && this.link === link) {
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
      const part = await blob.slice(offset, offset + max).arrayBuffer();
      if (this.link !== link) {
        return; // the connection went meanwhile: the session dropped the upload
      }
      link.sendBinary(part);
      this.session.handleChunk(this.now(), file, part.byteLength);
      this.options.onProgress(file, offset + part.byteLength - Math.min(link.buffered(), offset + part.byteLength));
    } catch (err) {
      this.session.handleChunkFailed(this.now(), file, String(err));
    }
    this.step();
  }
}
