// Keeps the page within the rates the server announced in welcome.limits,
// so a pasted block, a file's parts or a catch-up's pages go through,
// paced, instead of being refused with rate_limited. The same model as the
// terminal client's (client-cli/src/pacer.rs).

// Of the announced rates, how much the page uses: a margin for the network
// bunching frames that were sent apart.
const SHARE = 0.9;

class Bucket {
  // null for a rate the server did not announce (0).
  static of(perSec, burst, used, now) {
    if (!perSec || !burst) {
      return null;
    }
    const bucket = new Bucket();
    // Two below the burst: the server counts frames as they arrive.
    bucket.burst = Math.max(burst - 2, 1);
    bucket.tokens = Math.max(bucket.burst - used, 0);
    bucket.perSec = perSec * SHARE;
    bucket.at = now;
    return bucket;
  }

  tokensAt(now) {
    const refill = (Math.max(now - this.at, 0) / 1000) * this.perSec;
    return Math.min(this.tokens + refill, this.burst);
  }

  readyAt(now) {
    const at = Math.max(now, this.at);
    const tokens = this.tokensAt(at);
    return tokens >= 1 ? at : at + ((1 - tokens) * 1000) / this.perSec;
  }

  take(now) {
    const at = Math.max(now, this.at);
    this.tokens = Math.max(this.tokensAt(at) - 1, 0);
    this.at = at;
  }
}

/** The page's mirror of the server's buckets for one connection (times in ms). */
export class Pacer {
  constructor() {
    this.reset();
  }

  /** A new connection: the server's buckets start full again. */
  reset() {
    this.frames = null;
    this.messages = null;
    this.sentEarly = 0; // frames sent before the limits were known
  }

  /** The connection's limits arrived at `now`. */
  limits(limits, now) {
    this.frames = Bucket.of(limits.frames_per_sec, limits.frames_burst, this.sentEarly, now);
    this.messages = Bucket.of(limits.messages_per_sec, limits.messages_burst, 0, now);
  }

  /** When one more frame (a say or dm if `message`) may go: `now` or later. */
  readyAt(message, now) {
    return this.buckets(message).reduce((ready, bucket) => Math.max(ready, bucket.readyAt(now)), now);
  }

  /** One frame (a say or dm if `message`) goes at `now`. */
  take(message, now) {
    if (!this.frames && !this.messages) {
      this.sentEarly += 1;
    }
    for (const bucket of this.buckets(message)) {
      bucket.take(now);
    }
  }

  buckets(message) {
    return [this.frames, message ? this.messages : null].filter(Boolean);
  }
}
