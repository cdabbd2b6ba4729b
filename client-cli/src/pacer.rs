//! Keeps the client within the rates the server announced in
//! `welcome.limits`, so a pasted block or a piped file goes through, paced,
//! instead of being refused with `rate_limited` (and a client that kept on
//! being closed as abusive).

use std::time::{Duration, Instant};

use chat_protocol::Limits;

/// Of the announced rates, how much this client uses: a margin for the
/// network bunching frames that were sent apart.
const SHARE: f64 = 0.9;

/// The client's mirror of the server's buckets for one connection.
///
/// A frame may go once [`Pacer::ready_at`] says so; sending it is
/// [`Pacer::take`]. Before the limits are known (the `hello`), frames go at
/// once and are counted against the burst.
#[derive(Debug, Default)]
pub struct Pacer {
    frames: Option<Bucket>,
    messages: Option<Bucket>,
    /// Frames sent on this connection before its limits were known.
    sent_early: u32,
}

#[derive(Debug, Clone, Copy, PartialEq)]
struct Bucket {
    tokens: f64,
    per_sec: f64,
    burst: f64,
    at: Instant,
}

impl Bucket {
    /// `None` for a rate the server did not announce (0).
    fn new(per_sec: u64, burst: u64, used: u32, now: Instant) -> Option<Self> {
        if per_sec == 0 || burst == 0 {
            return None;
        }
        // Two below the burst: the server counts frames as they arrive.
        let burst = (burst as f64 - 2.0).max(1.0);
        let tokens = (burst - f64::from(used)).max(0.0);
        Some(Self { tokens, per_sec: per_sec as f64 * SHARE, burst, at: now })
    }

    /// The tokens there are at `now`.
    fn tokens_at(&self, now: Instant) -> f64 {
        let refill = now.saturating_duration_since(self.at).as_secs_f64() * self.per_sec;
        (self.tokens + refill).min(self.burst)
    }

    /// When one token will be there.
    fn ready_at(&self, now: Instant) -> Instant {
        let now = now.max(self.at);
        let tokens = self.tokens_at(now);
        if tokens >= 1.0 {
            now
        } else {
            now + Duration::from_secs_f64((1.0 - tokens) / self.per_sec)
        }
    }

    fn take(&mut self, now: Instant) {
        let now = now.max(self.at);
        self.tokens = (self.tokens_at(now) - 1.0).max(0.0);
        self.at = now;
    }
}

impl Pacer {
    /// A new connection: the server's buckets start full again.
    pub fn reset(&mut self) {
        *self = Self::default();
    }

    /// The connection's limits arrived at `now`.
    pub fn limits(&mut self, limits: &Limits, now: Instant) {
        let used = self.sent_early;
        self.frames = Bucket::new(limits.frames_per_sec, limits.frames_burst, used, now);
        self.messages = Bucket::new(limits.messages_per_sec, limits.messages_burst, 0, now);
    }

    /// When one more frame (a `say` or `dm` if `message`) may go: `now` or
    /// later.
    pub fn ready_at(&self, message: bool, now: Instant) -> Instant {
        self.buckets(message).fold(now, |ready, bucket| ready.max(bucket.ready_at(now)))
    }

    /// One frame (a `say` or `dm` if `message`) goes at `now`.
    pub fn take(&mut self, message: bool, now: Instant) {
        if self.frames.is_none() && self.messages.is_none() {
            self.sent_early = self.sent_early.saturating_add(1);
        }
        self.frames.iter_mut().for_each(|bucket| bucket.take(now));
        if message {
            self.messages.iter_mut().for_each(|bucket| bucket.take(now));
        }
    }

    fn buckets(&self, message: bool) -> impl Iterator<Item = &Bucket> {
        self.frames.iter().chain(self.messages.iter().filter(move |_| message))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Sends one frame as soon as the pacer allows: how long it waited.
    fn send(pacer: &mut Pacer, message: bool, now: Instant) -> Duration {
        let at = pacer.ready_at(message, now);
        pacer.take(message, at);
        at - now
    }

    fn limits(frames: (u64, u64), messages: (u64, u64)) -> Limits {
        Limits {
            frames_per_sec: frames.0,
            frames_burst: frames.1,
            messages_per_sec: messages.0,
            messages_burst: messages.1,
            ..crate::session::tests::limits()
        }
    }

    #[test]
    fn bursts_go_at_once_then_frames_are_spaced_at_the_announced_rate() {
        let start = Instant::now();
        let mut pacer = Pacer::default();
        assert_eq!(send(&mut pacer, false, start), Duration::ZERO, "hello, before any limits");
        pacer.limits(&limits((100, 10), (10, 5)), start);
        // A burst of 8 frames less the hello already sent.
        for _ in 0..7 {
            assert_eq!(send(&mut pacer, false, start), Duration::ZERO);
        }
        let next = send(&mut pacer, false, start);
        let spacing = Duration::from_secs_f64(1.0 / 90.0);
        assert!(next.abs_diff(spacing) < Duration::from_micros(50), "{next:?}");
    }

    #[test]
    fn messages_wait_for_both_buckets() {
        let start = Instant::now();
        let mut pacer = Pacer::default();
        pacer.limits(&limits((1000, 1000), (10, 5)), start);
        for _ in 0..3 {
            assert_eq!(send(&mut pacer, true, start), Duration::ZERO);
        }
        // The message bucket (burst 5 less 2) is empty: 1/9 s for the next.
        let ninth = Duration::from_secs_f64(1.0 / 9.0);
        let next = send(&mut pacer, true, start);
        assert!(next.abs_diff(ninth) < Duration::from_micros(50), "{next:?}");
        // Sends are in order: once that message went, a frame that is not a
        // message does not wait for the message bucket...
        let later = start + next;
        assert_eq!(send(&mut pacer, false, later), Duration::ZERO);
        // ...and the next message waits another ninth of a second.
        let after = send(&mut pacer, true, later);
        assert!(after.abs_diff(ninth) < Duration::from_micros(50), "{after:?}");
    }

    #[test]
    fn unannounced_limits_do_not_slow_anything() {
        let start = Instant::now();
        let mut pacer = Pacer::default();
        pacer.limits(&limits((0, 0), (0, 0)), start);
        for _ in 0..1000 {
            assert_eq!(send(&mut pacer, true, start), Duration::ZERO);
        }
    }
}
