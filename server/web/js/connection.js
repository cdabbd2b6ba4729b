// The page's connection: the driver of the Session (session.js). It owns
// what the session may not: the transport, the clock, the timer and the
// files being sent. It carries out what the session asks and hands the
// session's events to the page. The transport is a seam: today a
// WebSocket; a second transport (long-polling behind proxies that block
// WebSockets) fits the same four calls.

import { Session } from './session.js';

/** How much a transport may have buffered before the next part of a file waits. */
const MAX_BUFFERED = 1 << 20;

/**
 * The WebSocket transport: ws(s)://this-host/ws, subprotocol chat.v1.
 * open(handlers) returns a link { url, sendText, sendBinary, buffered, close };
 * handlers are { opened, text(data), closed(code, reason), failed(why) }.
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
      sendText: (text) => socket.send(text),
      sendBinary: (bytes) => socket.send(bytes),
      buffered: () => socket.bufferedAmount,
      close: (code) => {
        socket.onclose = null;
        socket.onmessage = null;
        socket.close(code);
      },
    };
  },
};

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
