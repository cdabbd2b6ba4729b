use std::collections::VecDeque;
use std::sync::Arc;

use crate::{MemberId, Message, RoomName};

/// One room: its members in join order and its history ring.
#[derive(Debug)]
pub(crate) struct Room {
    pub(crate) name: RoomName,
    members: Vec<MemberId>,
    /// The members as a shared slice, rebuilt on every join and leave so a
    /// fan-out costs one reference count, not one allocation.
    recipients: Arc<[MemberId]>,
    history: VecDeque<Message>,
    pub(crate) last_seq: u64,
}

impl Room {
    pub(crate) fn new(name: RoomName) -> Self {
        Self {
            name,
            members: Vec::new(),
            recipients: Arc::new([]),
            history: VecDeque::new(),
            last_seq: 0,
        }
    }

    pub(crate) fn add(&mut self, member: MemberId) {
        self.members.push(member);
        self.recipients = self.members.as_slice().into();
    }

    pub(crate) fn remove(&mut self, member: MemberId) {
        self.members.retain(|&m| m != member);
        self.recipients = self.members.as_slice().into();
    }

    /// Appends a message, dropping the oldest beyond `capacity`.
    pub(crate) fn push(&mut self, message: Message, capacity: usize) {
        self.last_seq = message.seq;
        self.history.push_back(message);
        while self.history.len() > capacity {
            self.history.pop_front();
        }
    }

    pub(crate) fn members(&self) -> &[MemberId] {
        &self.members
    }

    pub(crate) fn recipients(&self) -> Arc<[MemberId]> {
        Arc::clone(&self.recipients)
    }

    /// The members other than `except`.
    pub(crate) fn others(&self, except: MemberId) -> Arc<[MemberId]> {
        self.members.iter().copied().filter(|&m| m != except).collect()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    pub(crate) fn has_history(&self) -> bool {
        self.last_seq > 0
    }

    /// The newest `limit` messages with a `seq` below `before`, oldest first.
    pub(crate) fn history(&self, before: Option<u64>, limit: usize) -> Vec<Message> {
        let end = match before {
            // The ring holds consecutive seqs, so a binary search finds the cut.
            Some(before) => self.history.partition_point(|m| m.seq < before),
            None => self.history.len(),
        };
        let start = end.saturating_sub(limit);
        self.history.range(start..end).cloned().collect()
    }
}
