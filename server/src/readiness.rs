//! What `/readyz` says: whether a load balancer or an orchestrator should
//! send this server traffic now, and if not, why. Each part is set by
//! whoever knows it: the hub (storage failing), the cluster's health
//! (Redis), `run` (draining at shutdown). `/livez` says only that the
//! process answers.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::cluster::Health;

/// Whether the server is ready for traffic; cheap to clone and share.
#[derive(Debug, Clone, Default)]
pub(crate) struct Readiness(Arc<Inner>);

#[derive(Debug, Default)]
struct Inner {
    draining: AtomicBool,
    storage_failing: AtomicBool,
    /// In cluster mode, whether Redis can be reached.
    redis: Option<Health>,
}

impl Readiness {
    /// Ready until told otherwise; in cluster mode, while `redis` is up.
    pub(crate) fn new(redis: Option<Health>) -> Self {
        Self(Arc::new(Inner { redis, ..Inner::default() }))
    }

    /// The server is shutting down: not ready from now on.
    pub(crate) fn drain(&self) {
        self.0.draining.store(true, Ordering::Release);
    }

    /// Storage is failing (messages are refused), or works again.
    pub(crate) fn storage_failing(&self, failing: bool) {
        self.0.storage_failing.store(failing, Ordering::Release);
    }

    /// Why the server is not ready, or `None` when it is.
    pub(crate) fn not_ready(&self) -> Option<String> {
        if self.0.draining.load(Ordering::Acquire) {
            return Some("draining: the server is shutting down".to_owned());
        }
        if self.0.storage_failing.load(Ordering::Acquire) {
            return Some("storage is failing: messages are refused until it recovers".to_owned());
        }
        let redis = self.0.redis.as_ref().and_then(Health::down);
        redis.map(|why| format!("redis unavailable: {why}"))
    }
}
