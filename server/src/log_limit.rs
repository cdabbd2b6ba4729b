//! A cap on log lines of one kind per second, so that a flood of
//! connections (an attack, a reconnect storm) cannot fill the disk with
//! logs: past the cap lines are counted, not written, and the count is
//! logged once the next second's first line is.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use tracing::warn;

/// Lines of one kind allowed per second.
#[derive(Debug)]
pub(crate) struct LogLimit {
    what: &'static str,
    per_sec: u32,
    state: Mutex<Window>,
}

#[derive(Debug)]
struct Window {
    started: Option<Instant>,
    written: u32,
    dropped: u64,
}

impl LogLimit {
    /// At most `per_sec` lines of `what` a second.
    pub(crate) fn new(what: &'static str, per_sec: u32) -> Self {
        let window = Window { started: None, written: 0, dropped: 0 };
        Self { what, per_sec, state: Mutex::new(window) }
    }

    /// Whether one more line may be written now; if not it is counted.
    pub(crate) fn allow(&self) -> bool {
        self.allow_at(Instant::now())
    }

    fn allow_at(&self, now: Instant) -> bool {
        // A poisoned lock only means a panic elsewhere mid-count: go on.
        let mut window = self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let over = window.started.is_none_or(|at| now.duration_since(at) >= Duration::from_secs(1));
        if over {
            if window.dropped > 0 {
                let (what, per_sec, dropped) = (self.what, self.per_sec, window.dropped);
                warn!(dropped, per_sec, "{what}: lines over the limit a second were not logged");
            }
            *window = Window { started: Some(now), written: 0, dropped: 0 };
        }
        if window.written < self.per_sec {
            window.written += 1;
            true
        } else {
            window.dropped += 1;
            false
        }
    }

    /// Lines not written since the current second began.
    #[cfg(test)]
    fn dropped(&self) -> u64 {
        self.state.lock().map(|window| window.dropped).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_over_the_limit_are_counted_and_the_next_second_starts_afresh() {
        let limit = LogLimit::new("connections", 3);
        let start = Instant::now();
        let allowed = (0..10).filter(|_| limit.allow_at(start)).count();
        assert_eq!((allowed, limit.dropped()), (3, 7));
        let almost = start + Duration::from_millis(999);
        assert!(!limit.allow_at(almost), "still the same second");
        assert!(limit.allow_at(start + Duration::from_secs(1)), "a new second");
        assert_eq!(limit.dropped(), 0, "the count was logged and reset");
    }
}
