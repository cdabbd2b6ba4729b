//! Whether this node can reach Redis: set by whatever talks to it (the
//! subscription, appends, reads), read by `/healthz` and `$stats`. Changes
//! are logged once each, not once per failed attempt.

use std::sync::{Arc, Mutex, PoisonError};

use tracing::{info, warn};

/// A shared word on Redis: `None` while it answers, else why not.
#[derive(Debug, Clone, Default)]
pub struct Health(Arc<Mutex<Option<&'static str>>>);

impl Health {
    /// Why Redis cannot be reached now, if it cannot.
    pub fn down(&self) -> Option<&'static str> {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Redis failed `why`.
    pub fn failed(&self, why: &'static str) {
        let mut down = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if down.is_none() {
            warn!(why, "Redis cannot be reached: sends are refused until it can");
        }
        *down = Some(why);
    }

    /// `result`, noted: an error as a failure `failed`, anything else as
    /// an answer.
    pub fn noted<T>(
        &self,
        result: redis::RedisResult<T>,
        failed: &'static str,
    ) -> redis::RedisResult<T> {
        match &result {
            Ok(_) => self.answered(),
            Err(_) => self.failed(failed),
        }
        result
    }

    /// Redis answered.
    pub fn answered(&self) {
        let was = self.0.lock().unwrap_or_else(PoisonError::into_inner).take();
        if let Some(why) = was {
            info!(was = why, "Redis can be reached again");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_failure_is_the_reason_until_redis_answers() {
        let health = Health::default();
        assert_eq!(health.down(), None);
        health.failed("the subscription was lost");
        health.clone().failed("a write failed");
        assert_eq!(health.down(), Some("a write failed"), "clones share one word");
        health.answered();
        assert_eq!(health.down(), None);
    }
}
