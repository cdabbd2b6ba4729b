use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};

use chat_core::{Direct, Message, Record, RoomName};

use super::{Retention, Snapshot, Store, StoreError, StoredRoom};

/// Storage in memory, for `--ephemeral` and for tests. Clones share the
/// same contents, so a test can restart a server on the same store.
#[derive(Debug, Clone, Default)]
pub struct MemoryStore {
    inner: Arc<Mutex<Contents>>,
}

#[derive(Debug, Default)]
struct Contents {
    rooms: BTreeMap<RoomName, (u64, VecDeque<Message>)>,
    directs: VecDeque<Direct>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn contents(&self) -> std::sync::MutexGuard<'_, Contents> {
        // A panic while holding the lock leaves plain data behind; reading
        // it is still sound.
        self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl Store for MemoryStore {
    fn load(&mut self, retention: &Retention, now_ms: u64) -> Result<Snapshot, StoreError> {
        self.prune(retention, now_ms)?;
        let contents = self.contents();
        let rooms = contents
            .rooms
            .iter()
            .map(|(name, (last_seq, messages))| StoredRoom {
                name: name.clone(),
                last_seq: *last_seq,
                messages: messages.iter().cloned().collect(),
            })
            .collect();
        Ok(Snapshot { rooms, directs: contents.directs.iter().cloned().collect() })
    }

    fn commit(&mut self, records: &[Record]) -> Result<(), StoreError> {
        let mut contents = self.contents();
        for record in records {
            match record {
                Record::Message(message) => {
                    let (last_seq, messages) =
                        contents.rooms.entry(message.room.clone()).or_default();
                    *last_seq = (*last_seq).max(message.seq);
                    messages.push_back(message.clone());
                }
                Record::Direct(direct) => contents.directs.push_back(direct.clone()),
            }
        }
        Ok(())
    }

    fn prune(&mut self, retention: &Retention, now_ms: u64) -> Result<(), StoreError> {
        let mut contents = self.contents();
        let cutoff = retention.cutoff_ms(now_ms);
        for (_, messages) in contents.rooms.values_mut() {
            while messages.len() > retention.per_room {
                messages.pop_front();
            }
            while cutoff.is_some_and(|cutoff| {
                messages.front().is_some_and(|m| m.ts.as_unix_millis() < cutoff)
            }) {
                messages.pop_front();
            }
        }
        let directs_cutoff = retention.directs_cutoff_ms(now_ms);
        while contents.directs.front().is_some_and(|d| d.ts.as_unix_millis() < directs_cutoff) {
            contents.directs.pop_front();
        }
        Ok(())
    }
}
