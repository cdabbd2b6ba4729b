use std::collections::VecDeque;
use std::sync::Arc;

use crate::{MemberId, Message, Resume, RoomName, Timestamp};

/// Names a session inside the core; never shown to the driver.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct SessionId(pub(crate) u64);

/// One room: its sessions in join order, the connections to deliver to, and
/// its history ring.
#[derive(Debug)]
pub(crate) struct Room {
    pub(crate) name: RoomName,
    sessions: Vec<SessionId>,
    /// The attached connections of `sessions`, as a shared slice rebuilt on
    /// every change, so a fan-out costs one reference count.
    recipients: Arc<[MemberId]>,
    history: VecDeque<Message>,
    pub(crate) last_seq: u64,
}

impl Room {
    pub(crate) fn new(name: RoomName) -> Self {
        Self {
            name,
            sessions: Vec::new(),
            recipients: Arc::new([]),
            history: VecDeque::new(),
            last_seq: 0,
        }
    }

    pub(crate) fn add(&mut self, session: SessionId) {
        self.sessions.push(session);
    }

    pub(crate) fn remove(&mut self, session: SessionId) {
        self.sessions.retain(|&s| s != session);
    }

    pub(crate) fn sessions(&self) -> &[SessionId] {
        &self.sessions
    }

    pub(crate) fn set_recipients(&mut self, recipients: Arc<[MemberId]>) {
        self.recipients = recipients;
    }

    /// Appends a message, dropping the oldest beyond `capacity`.
    pub(crate) fn push(&mut self, message: Message, capacity: usize) {
        self.last_seq = self.last_seq.max(message.seq);
        self.history.push_back(message);
        while self.history.len() > capacity {
            self.history.pop_front();
        }
    }

    /// Numbering continues after `last_seq` even if no message up to it
    /// is kept.
    pub(crate) fn raise_last_seq(&mut self, last_seq: u64) {
        self.last_seq = self.last_seq.max(last_seq);
    }

    /// Drops messages accepted before `cutoff`.
    pub(crate) fn prune_before(&mut self, cutoff: Timestamp) {
        while self.history.front().is_some_and(|m| m.ts < cutoff) {
            self.history.pop_front();
        }
    }

    pub(crate) fn recipients(&self) -> Arc<[MemberId]> {
        Arc::clone(&self.recipients)
    }

    /// The connections other than `except`.
    pub(crate) fn others(&self, except: MemberId) -> Arc<[MemberId]> {
        self.recipients.iter().copied().filter(|&m| m != except).collect()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.sessions.is_empty()
    }

    pub(crate) fn has_history(&self) -> bool {
        self.last_seq > 0
    }

    /// The newest `limit` messages with a `seq` below `before`, oldest first.
    /// The retained messages, oldest first.
    pub(crate) fn messages(&self) -> impl DoubleEndedIterator<Item = &Message> {
        self.history.iter()
    }

    pub(crate) fn history(&self, before: Option<u64>, limit: usize) -> Vec<Message> {
        let end = match before {
            // The ring holds increasing seqs, so a binary search finds the cut.
            Some(before) => self.history.partition_point(|m| m.seq < before),
            None => self.history.len(),
        };
        let start = end.saturating_sub(limit);
        self.history.range(start..end).cloned().collect()
    }

    /// What a `join` with `after` gets: the newest `fresh` messages without
    /// `after`, else the newest `max` messages after it and whether any were
    /// lost to retention.
    pub(crate) fn resume(
        &self,
        after: Option<u64>,
        fresh: usize,
        max: usize,
    ) -> (Vec<Message>, Resume) {
        let Some(after) = after.filter(|&after| after <= self.last_seq) else {
            return (self.history(None, fresh), Resume::Fresh);
        };
        let first_kept = self.history.front().map_or(self.last_seq + 1, |m| m.seq);
        let resume = if first_kept > after + 1 {
            Resume::Gap { from: after + 1, to: first_kept - 1 }
        } else {
            Resume::Resumed
        };
        let start = self.history.partition_point(|m| m.seq <= after);
        let start = start.max(self.history.len().saturating_sub(max));
        (self.history.range(start..).cloned().collect(), resume)
    }
}
