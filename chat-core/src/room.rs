use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use crate::id::SessionId;
use crate::{MemberId, Message, MessageKind, Nick, Resume, RoomName, Timestamp};

/// What one message held in memory costs besides its text: the struct,
/// its shared strings and the ring slot, roughly.
const MESSAGE_OVERHEAD: usize = 192;

/// One room: its sessions in join order, the connections to deliver to, and
/// the newest part of its history held in memory (its *window*).
///
/// The window is always the newest messages, contiguous. When the whole
/// retained history is in it the room is *complete*; once the window was
/// dropped to save memory (`spilled`), older messages are only in storage
/// and reads that reach past the window wait for a load.
#[derive(Debug)]
pub(crate) struct Room {
    pub(crate) name: RoomName,
    sessions: Vec<SessionId>,
    /// The members by folded nick: a page of them, or those starting with
    /// a prefix, without sorting the room on every join.
    by_nick: BTreeMap<(Arc<str>, SessionId), Nick>,
    /// The attached connections of `sessions` that are not waiting for
    /// their `joined`, as a shared slice rebuilt on every change, so a
    /// fan-out costs one reference count.
    recipients: Arc<[MemberId]>,
    history: VecDeque<Message>,
    /// What `history` costs, as [`cost`] counts it.
    pub(crate) bytes: usize,
    /// Older retained messages exist in storage only.
    pub(crate) spilled: bool,
    pub(crate) last_seq: u64,
    /// When the room was last used, on the core's use counter: the least
    /// recently used rooms give way first.
    pub(crate) used: u64,
    /// What the room is about, set by its members.
    pub(crate) topic: Option<Arc<str>>,
    /// Its shared documents by name, and when each one's last edit was
    /// announced.
    pub(crate) docs: BTreeMap<RoomName, (crate::DocEntry, Option<Timestamp>)>,
    /// In a big room, the presence changes waiting for the next batch.
    pub(crate) pending_presence: Vec<crate::Presence>,
    /// In a big room, who started typing since the last batch.
    pub(crate) pending_typing: Vec<Nick>,
    /// A batch of this room is scheduled.
    pub(crate) batch_due: bool,
    /// `recipients` no longer matches the sessions: rebuilt when next read,
    /// so a join storm rebuilds it once per delivery, not once per join.
    pub(crate) recipients_stale: bool,
    /// How many of `sessions` are members other cores serve.
    pub(crate) remote: usize,
}

/// What a message held in memory costs, in bytes.
pub(crate) fn cost(message: &Message) -> usize {
    MESSAGE_OVERHEAD
        + message.text.len()
        + message.from.stored_len()
        + message.id.as_ref().map_or(0, |id| id.len())
        + message.attachment.as_ref().map_or(0, |a| 64 + a.id.len() + a.name.len() + a.mime.len())
}

impl Room {
    pub(crate) fn new(name: RoomName, used: u64) -> Self {
        Self {
            name,
            sessions: Vec::new(),
            by_nick: BTreeMap::new(),
            recipients: Arc::new([]),
            history: VecDeque::new(),
            bytes: 0,
            spilled: false,
            last_seq: 0,
            used,
            topic: None,
            docs: BTreeMap::new(),
            pending_presence: Vec::new(),
            pending_typing: Vec::new(),
            batch_due: false,
            recipients_stale: false,
            remote: 0,
        }
    }

    pub(crate) fn add(&mut self, session: SessionId, nick: &Nick) {
        self.sessions.push(session);
        self.by_nick.insert((Arc::from(nick.folded()), session), nick.clone());
    }

    pub(crate) fn remove(&mut self, session: SessionId, nick: &Nick) {
        self.sessions.retain(|&s| s != session);
        self.by_nick.remove(&(Arc::from(nick.folded()), session));
    }

    /// A member changed nick.
    pub(crate) fn renamed(&mut self, session: SessionId, old: &Nick, new: &Nick) {
        if self.by_nick.remove(&(Arc::from(old.folded()), session)).is_some() {
            self.by_nick.insert((Arc::from(new.folded()), session), new.clone());
        }
    }

    /// Up to `limit` members in nick order after the (folded) nick
    /// `after`, whose folded nick starts with `prefix`; and whether there
    /// are more.
    pub(crate) fn members_page(
        &self,
        after: Option<&str>,
        prefix: &str,
        limit: usize,
    ) -> (Vec<(SessionId, Nick)>, bool) {
        let start: Arc<str> = Arc::from(after.map_or(prefix, |after| after.max(prefix)));
        let mut found = Vec::with_capacity(limit.min(self.by_nick.len()));
        let mut more = false;
        // From the first session of that nick: one whose nick is the prefix
        // itself matches it.
        let range = self.by_nick.range((start, SessionId::MIN)..);
        for ((folded, sid), nick) in range {
            if after.is_some_and(|after| &**folded <= after) {
                continue;
            }
            if !folded.starts_with(prefix) {
                break;
            }
            if found.len() == limit {
                more = true;
                break;
            }
            found.push((*sid, nick.clone()));
        }
        (found, more)
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
        self.bytes += cost(&message);
        self.history.push_back(message);
        while self.history.len() > capacity {
            self.pop_front();
        }
    }

    /// The message `seq` if the window holds it.
    pub(crate) fn message(&self, seq: u64) -> Option<&Message> {
        let at = self.history.binary_search_by_key(&seq, |m| m.seq).ok()?;
        self.history.get(at)
    }

    /// Whether the window holds message `seq`, or everything that is kept
    /// (so if it is not here, it is not kept).
    pub(crate) fn covers(&self, seq: u64) -> bool {
        !self.spilled || self.history.front().is_some_and(|m| m.seq <= seq)
    }

    /// Applies a change to message `of` in the window: edited to `text`,
    /// or deleted (text and file gone).
    pub(crate) fn apply(&mut self, of: u64, kind: MessageKind, text: &Arc<str>) {
        let Ok(at) = self.history.binary_search_by_key(&of, |m| m.seq) else {
            return;
        };
        let Some(target) = self.history.get_mut(at) else {
            return;
        };
        let before = cost(target);
        match kind {
            MessageKind::Edit(_) => {
                target.text = Arc::clone(text);
                target.kind = MessageKind::Edited;
            }
            MessageKind::Delete(_) => {
                target.text = Arc::from("");
                target.attachment = None;
                target.kind = MessageKind::Deleted;
            }
            _ => return,
        }
        let after = cost(target);
        self.bytes = self.bytes - before + after;
    }

    /// Takes back the newest message if it is `seq` (storing it failed);
    /// numbering goes back with it.
    pub(crate) fn retract(&mut self, seq: u64) {
        if self.history.back().is_some_and(|m| m.seq == seq)
            && let Some(message) = self.history.pop_back()
        {
            self.bytes -= cost(&message);
        }
        if self.last_seq == seq {
            self.last_seq = seq - 1;
        }
    }

    /// Puts back the retained messages storage returned, older than what
    /// the window holds: the room is complete again.
    pub(crate) fn merge_loaded(&mut self, last_seq: u64, stored: Vec<Message>, capacity: usize) {
        self.last_seq = self.last_seq.max(last_seq);
        let first_held = self.history.front().map_or(u64::MAX, |m| m.seq);
        for message in stored.into_iter().rev().filter(|m| m.seq < first_held) {
            self.bytes += cost(&message);
            self.history.push_front(message);
        }
        while self.history.len() > capacity {
            self.pop_front();
        }
        self.spilled = false;
    }

    /// Drops the window from memory; storage keeps the history. Returns
    /// the bytes freed.
    pub(crate) fn spill(&mut self) -> usize {
        let freed = self.bytes;
        if !self.history.is_empty() {
            self.spilled = true;
        }
        self.history = VecDeque::new();
        self.bytes = 0;
        freed
    }

    /// The window starts again after `last_seq` (a shared engine lost the
    /// room, 0, or messages before `last_seq`): nothing held stays, and
    /// what came before is in storage only.
    pub(crate) fn restart_after(&mut self, last_seq: u64) {
        self.history = VecDeque::new();
        self.bytes = 0;
        self.spilled = last_seq > 0;
        self.last_seq = last_seq;
    }

    /// Drops messages accepted before `cutoff`.
    pub(crate) fn prune_before(&mut self, cutoff: Timestamp) {
        while self.history.front().is_some_and(|m| m.ts < cutoff) {
            self.pop_front();
        }
    }

    fn pop_front(&mut self) {
        if let Some(message) = self.history.pop_front() {
            self.bytes -= cost(&message);
        }
    }

    pub(crate) fn recipients(&self) -> Arc<[MemberId]> {
        Arc::clone(&self.recipients)
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.sessions.is_empty()
    }

    /// Whether the window holds nothing worth keeping in memory.
    pub(crate) fn window_is_empty(&self) -> bool {
        self.history.is_empty()
    }

    /// Whether [`Room::history`] can answer from memory.
    pub(crate) fn covers_history(&self, before: Option<u64>, limit: usize) -> bool {
        if !self.spilled || limit == 0 {
            return true;
        }
        let before = before.unwrap_or(u64::MAX);
        if before <= 1 {
            return true;
        }
        self.history.partition_point(|m| m.seq < before) >= limit
    }

    /// The newest `limit` messages with a `seq` below `before`, oldest first.
    pub(crate) fn history(&self, before: Option<u64>, limit: usize) -> Vec<Message> {
        let end = match before {
            // The ring holds increasing seqs, so a binary search finds the cut.
            Some(before) => self.history.partition_point(|m| m.seq < before),
            None => self.history.len(),
        };
        let start = end.saturating_sub(limit);
        self.history.range(start..end).cloned().collect()
    }

    /// Whether [`Room::resume`] can answer from memory.
    pub(crate) fn covers_resume(&self, after: Option<u64>, fresh: usize) -> bool {
        if !self.spilled {
            return true;
        }
        match after.filter(|&after| after <= self.last_seq) {
            None => self.history.len() >= fresh,
            Some(after) if after == self.last_seq => true,
            Some(after) => self.history.front().is_some_and(|m| m.seq <= after + 1),
        }
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
        let resume = if first_kept > after + 1 && !self.spilled {
            Resume::Gap { from: after + 1, to: first_kept - 1 }
        } else {
            Resume::Resumed
        };
        let start = self.history.partition_point(|m| m.seq <= after);
        let start = start.max(self.history.len().saturating_sub(max));
        (self.history.range(start..).cloned().collect(), resume)
    }
}
