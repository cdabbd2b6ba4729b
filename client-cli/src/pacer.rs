//! Keeps the client within the rates the server announced in
//! `welcome.limits`, so a pasted block or a piped file goes through, paced,
//! instead of being refused with `rate_limited` (and a client that kept on
//! being closed as abusive).

use chat_protocol::Limits;
use tokio::time::{Duration, Instant};

/// Of the announced rates, how much this client uses: a margin for the
/// network bunching frames that were sent apart.
const SHARE: f64 = 0.9;

/// The client's mirror of the server's buckets for one connection.
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

    /// When one token will be there. Time already reserved (a token taken
    /// for a frame that waits) is not given back.
    fn ready_at(&mut self, now: Instant) -> Instant {
        let now = now.max(self.at);
        let refill = now.saturating_duration_since(self.at).as_secs_f64() * self.per_sec;
        self.tokens = (self.tokens + refill).min(self.burst);
        self.at = now;
        if self.tokens >= 1.0 {
            now
        } else {
            now + Duration::from_secs_f64((1.0 - self.tokens) / self.per_sec)
        }
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

    /// How long to wait before one more frame (a `say` or `dm` if
    /// `message`), taking its place once that time has come.
    pub fn delay(&mut self, message: bool, now: Instant) -> Duration {
        if self.frames.is_none() && self.messages.is_none() {
            self.sent_early = self.sent_early.saturating_add(1);
            return Duration::ZERO;
        }
        let mut ready = now;
        for bucket in
            [self.frames.as_mut(), self.messages.as_mut().filter(|_| message)].into_iter().flatten()
        {
            ready = ready.max(bucket.ready_at(now));
        }
        for bucket in
            [self.frames.as_mut(), self.messages.as_mut().filter(|_| message)].into_iter().flatten()
        {
            bucket.ready_at(ready);
            bucket.tokens -= 1.0;
        }
        ready - now
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(frames: (u64, u64), messages: (u64, u64)) -> Limits {
        Limits {
            max_frame_bytes: 65536,
            max_text_bytes: 8192,
            max_nick_chars: 32,
            max_room_chars: 64,
            history_per_room: 1000,
            history_page_max: 200,
            join_history: 50,
            typing_interval_ms: 2000,
            messages_per_sec: messages.0,
            messages_burst: messages.1,
            max_rooms_per_session: 100,
            max_members_per_room: 10_000,
            joins_per_sec: 5,
            joins_burst: 50,
            frames_per_sec: frames.0,
            frames_burst: frames.1,
            max_upload_bytes: 0,
        }
    }

    #[test]
    fn bursts_go_at_once_then_frames_are_spaced_at_the_announced_rate() {
        let start = Instant::now();
        let mut pacer = Pacer::default();
        assert_eq!(pacer.delay(false, start), Duration::ZERO, "hello, before any limits");
        pacer.limits(&limits((100, 10), (10, 5)), start);
        // A burst of 8 frames less the hello already sent.
        for _ in 0..7 {
            assert_eq!(pacer.delay(false, start), Duration::ZERO);
        }
        let next = pacer.delay(false, start);
        let spacing = Duration::from_secs_f64(1.0 / 90.0);
        assert!(next.abs_diff(spacing) < Duration::from_micros(50), "{next:?}");
    }

    #[test]
    fn messages_wait_for_both_buckets() {
        let start = Instant::now();
        let mut pacer = Pacer::default();
        pacer.limits(&limits((1000, 1000), (10, 5)), start);
        for _ in 0..3 {
            assert_eq!(pacer.delay(true, start), Duration::ZERO);
        }
        // The message bucket (burst 5 less 2) is empty: 1/9 s for the next.
        let ninth = Duration::from_secs_f64(1.0 / 9.0);
        let next = pacer.delay(true, start);
        assert!(next.abs_diff(ninth) < Duration::from_micros(50), "{next:?}");
        // Sends are in order: once that message went, a frame that is not a
        // message does not wait for the message bucket...
        let later = start + next;
        assert_eq!(pacer.delay(false, later), Duration::ZERO);
        // ...and the next message waits another ninth of a second.
        let after = pacer.delay(true, later);
        assert!(after.abs_diff(ninth) < Duration::from_micros(50), "{after:?}");
    }

    #[test]
    fn unannounced_limits_do_not_slow_anything() {
        let start = Instant::now();
        let mut pacer = Pacer::default();
        pacer.limits(&limits((0, 0), (0, 0)), start);
        for _ in 0..1000 {
            assert_eq!(pacer.delay(true, start), Duration::ZERO);
        }
    }
}
