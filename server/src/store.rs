//! Durable storage behind a small trait, so the chat task never does IO
//! and another backend (Redis, for several nodes) can replace SQLite.

mod memory;
mod sqlite;

use std::collections::BTreeSet;
use std::time::Duration;

use chat_core::{
    Attachment, Conversation, Message, Nick, Record, RoomHistory, RoomName, SessionToken,
};

pub use memory::MemoryStore;
pub(crate) use sqlite::CARRIED_FILES;
pub use sqlite::{Erased, SqliteStore};

/// What the chat must not lose: room messages and sequence counters,
/// direct messages (kept like a room's, under their conversation's name)
/// and a summary of each conversation, and sessions that have not ended
/// (so a restart does not free their nicks).
///
/// Rooms are read one at a time, when the chat needs them
/// ([`Store::room`]); nothing is read of them at startup.
pub trait Store: Send + 'static {
    /// What the chat needs at startup: sessions, conversations, and the
    /// ids of recent messages.
    ///
    /// # Errors
    /// The storage cannot be read.
    fn load(&mut self, retention: &Retention, now_ms: u64) -> Result<Snapshot, StoreError>;

    /// One room's numbering and retained messages (the newest
    /// `retention.per_room` within `retention.max_age`), or `None` if it
    /// never had a message.
    ///
    /// # Errors
    /// The storage cannot be read.
    fn room(
        &mut self,
        room: &RoomName,
        retention: &Retention,
        now_ms: u64,
    ) -> Result<Option<RoomHistory>, StoreError>;

    /// Stores `records` atomically: all of them or none.
    ///
    /// # Errors
    /// The storage cannot be written; nothing was stored.
    fn commit(&mut self, records: &[Record]) -> Result<(), StoreError>;

    /// Stores `records` and `updates` of shared documents in one commit:
    /// all of them or none (the default, for stores without transactions,
    /// stores the records, then the updates).
    ///
    /// # Errors
    /// The storage cannot be written; nothing was stored (with the
    /// default, the updates may be missing).
    fn commit_with_docs(
        &mut self,
        records: &[Record],
        updates: &[DocUpdate],
    ) -> Result<(), StoreError> {
        self.commit(records)?;
        self.commit_docs(updates)
    }

    /// Drops what retention no longer keeps. Sequence counters are kept.
    /// Returns whether messages with files went, so files may have lost
    /// their last message.
    ///
    /// # Errors
    /// The storage cannot be written.
    fn prune(&mut self, retention: &Retention, now_ms: u64) -> Result<bool, StoreError>;

    /// The rooms whose retained messages carry file `file`, with the
    /// attachment as each message has it.
    ///
    /// # Errors
    /// The storage cannot be read.
    fn file_rooms(&mut self, file: &str) -> Result<Vec<(RoomName, Attachment)>, StoreError>;

    /// Every file some retained message carries.
    ///
    /// # Errors
    /// The storage cannot be read.
    fn files(&mut self) -> Result<BTreeSet<String>, StoreError>;

    /// Document `doc` of `room` as stored (shared documents): its updates
    /// in the order stored, a compacted state first; none if it has none.
    ///
    /// # Errors
    /// The storage cannot be read.
    fn doc(&mut self, room: &RoomName, doc: &RoomName) -> Result<Vec<Vec<u8>>, StoreError>;

    /// Stores `updates` atomically: all of them or none.
    ///
    /// # Errors
    /// The storage cannot be written; nothing was stored.
    fn commit_docs(&mut self, updates: &[DocUpdate]) -> Result<(), StoreError>;

    /// Replaces every update stored of document `doc` of `room` with
    /// `state`, which holds them all.
    ///
    /// # Errors
    /// The storage cannot be written; what was stored stays.
    fn compact_doc(
        &mut self,
        room: &RoomName,
        doc: &RoomName,
        state: &[u8],
    ) -> Result<(), StoreError>;

    /// Keeps `state`, the whole of document `doc` of `room` at `ts` (unix
    /// milliseconds), as one of its versions; past [`VERSIONS_KEPT`] the
    /// oldest go.
    ///
    /// # Errors
    /// The storage cannot be written; nothing was kept.
    fn keep_version(
        &mut self,
        room: &RoomName,
        doc: &RoomName,
        ts: u64,
        state: &[u8],
    ) -> Result<(), StoreError>;

    /// The versions kept of document `doc` of `room`, newest first.
    ///
    /// # Errors
    /// The storage cannot be read.
    fn versions(&mut self, room: &RoomName, doc: &RoomName)
    -> Result<Vec<VersionInfo>, StoreError>;

    /// The state of version `version` of document `doc` of `room`, if kept.
    ///
    /// # Errors
    /// The storage cannot be read.
    fn version(
        &mut self,
        room: &RoomName,
        doc: &RoomName,
        version: u64,
    ) -> Result<Option<Vec<u8>>, StoreError>;
}

/// The versions kept of each shared document.
pub const VERSIONS_KEPT: usize = 50;

/// A kept version of a shared document.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VersionInfo {
    /// Its number (growing).
    pub version: u64,
    /// When it was taken, in unix milliseconds.
    pub ts: u64,
    /// The size of its state.
    pub bytes: u64,
}

/// An update to a shared document, to keep: Yjs v1 bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DocUpdate {
    /// The room the document is in.
    pub room: RoomName,
    /// The document's name.
    pub doc: RoomName,
    /// The update.
    pub update: Vec<u8>,
}

/// What is kept, and for how long.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Retention {
    /// The newest messages kept per room.
    pub per_room: usize,
    /// Messages older than this are dropped.
    pub max_age: Option<Duration>,
    /// The ids of messages are read back for deduplication this far back
    /// (the dedupe window).
    pub recent_for: Duration,
    /// The most recent message ids loaded at startup for deduplication.
    pub recent_max: usize,
}

/// The stored state, as loaded at startup.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// Sessions that had not ended, with their nicks.
    pub sessions: Vec<(SessionToken, Nick)>,
    /// Messages (of rooms and conversations) with an id within the dedupe
    /// window, oldest first.
    pub recent: Vec<Message>,
    /// Every conversation, as of its last message.
    pub conversations: Vec<Conversation>,
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

    pub(crate) fn recent_cutoff_ms(&self, now_ms: u64) -> u64 {
        now_ms.saturating_sub(millis(self.recent_for))
    }
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}
