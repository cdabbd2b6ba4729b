//! Durable storage behind a small trait, so the chat task never does IO
//! and another backend (Redis, for several nodes) can replace SQLite.

mod memory;
mod sqlite;

use std::time::Duration;

use chat_core::{Direct, Message, Record, RoomName};

pub use memory::MemoryStore;
pub use sqlite::SqliteStore;

/// What the chat must not lose: room messages and sequence counters, and
/// recent direct messages (so retries stay deduplicated across restarts).
pub trait Store: Send + 'static {
    /// Everything needed to restore the chat at startup.
    ///
    /// # Errors
    /// The storage cannot be read.
    fn load(&mut self, retention: &Retention, now_ms: u64) -> Result<Snapshot, StoreError>;

    /// Stores `records` atomically: all of them or none.
    ///
    /// # Errors
    /// The storage cannot be written; nothing was stored.
    fn commit(&mut self, records: &[Record]) -> Result<(), StoreError>;

    /// Drops what retention no longer keeps. Sequence counters are kept.
    ///
    /// # Errors
    /// The storage cannot be written.
    fn prune(&mut self, retention: &Retention, now_ms: u64) -> Result<(), StoreError>;
}

/// What is kept, and for how long.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Retention {
    /// The newest messages kept per room.
    pub per_room: usize,
    /// Messages older than this are dropped.
    pub max_age: Option<Duration>,
    /// Direct messages are kept this long (the dedupe window).
    pub directs_for: Duration,
}

/// The stored state, as loaded at startup.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// Every room that ever had a message.
    pub rooms: Vec<StoredRoom>,
    /// Direct messages within the dedupe window, oldest first.
    pub directs: Vec<Direct>,
}

/// One stored room.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredRoom {
    /// The room.
    pub name: RoomName,
    /// The highest `seq` ever given out in it.
    pub last_seq: u64,
    /// Its kept messages, oldest first.
    pub messages: Vec<Message>,
}

/// Why storage failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// SQLite refused.
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// The data directory cannot be created or used.
    #[error("data directory: {0}")]
    Io(#[from] std::io::Error),
}

impl Retention {
    /// The oldest timestamp kept at `now_ms`, if age limits anything.
    pub(crate) fn cutoff_ms(&self, now_ms: u64) -> Option<u64> {
        self.max_age.map(|age| now_ms.saturating_sub(millis(age)))
    }

    pub(crate) fn directs_cutoff_ms(&self, now_ms: u64) -> u64 {
        now_ms.saturating_sub(millis(self.directs_for))
    }
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}
