use std::time::{Duration, SystemTime, UNIX_EPOCH};

use chat_core::Timestamp;
use tokio::time::Instant;

/// The core's clock: wall-clock milliseconds at start, advanced by tokio's
/// monotonic clock. It never goes backwards (the core's contract), and
/// `tokio::time::pause` controls it in tests.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Clock {
    start: Instant,
    start_millis: u64,
}

impl Clock {
    pub(crate) fn new() -> Self {
        let since_epoch = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO);
        let start_millis = u64::try_from(since_epoch.as_millis()).unwrap_or(u64::MAX);
        Self { start: Instant::now(), start_millis }
    }

    pub(crate) fn now(&self) -> Timestamp {
        let elapsed = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        Timestamp::from_unix_millis(self.start_millis.saturating_add(elapsed))
    }

    /// The instant a core deadline falls on.
    pub(crate) fn instant(&self, at: Timestamp) -> Instant {
        self.start
            + Duration::from_millis(at.millis_since(Timestamp::from_unix_millis(self.start_millis)))
    }
}
