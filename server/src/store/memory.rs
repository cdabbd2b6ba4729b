use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::{Arc, Mutex};

use chat_core::{
    Attachment, Conversation, Direct, Message, MessageKind, Record, RoomHistory, RoomName,
};

use super::{Retention, Snapshot, Store, StoreError};

/// Storage in memory, for `--ephemeral` and for tests. Clones share the
/// same contents, so a test can restart a server on the same store.
/// Sessions are not kept: what lives in memory does not outlive the
/// process, so there would be nothing to restore them for (and keeping
/// them would cost every connection).
#[derive(Debug, Clone, Default)]
pub struct MemoryStore {
    inner: Arc<Mutex<Contents>>,
}

#[derive(Debug, Default)]
struct Contents {
    /// Rooms and conversations, with their numbering.
    rooms: BTreeMap<RoomName, (u64, VecDeque<Message>)>,
    conversations: BTreeMap<RoomName, Conversation>,
    topics: BTreeMap<RoomName, std::sync::Arc<str>>,
    /// Each document's updates, by room and name.
    docs: BTreeMap<(RoomName, RoomName), Vec<Vec<u8>>>,
    /// Each room's document list.
    lists: BTreeMap<RoomName, BTreeMap<RoomName, chat_core::DocEntry>>,
    /// Each document's versions, oldest first.
    versions: BTreeMap<(RoomName, RoomName), Vec<Kept>>,
    /// The last version number given.
    last_version: u64,
}

/// A kept version of a document: its number, time and state.
type Kept = (u64, u64, Vec<u8>);

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

impl Contents {
    fn add(&mut self, message: &Message) {
        let (last_seq, messages) = self.rooms.entry(message.room.clone()).or_default();
        *last_seq = (*last_seq).max(message.seq);
        // A change is applied to the message it changes, as SQLite does.
        let target = match message.kind {
            MessageKind::Edit(of) | MessageKind::Delete(of) => {
                messages.iter_mut().find(|m| m.seq == of)
            }
            _ => None,
        };
        if let Some(target) = target {
            if let MessageKind::Edit(_) = message.kind {
                target.text = std::sync::Arc::clone(&message.text);
                target.kind = MessageKind::Edited;
            } else {
                target.text = std::sync::Arc::from("");
                target.attachment = None;
                target.kind = MessageKind::Deleted;
            }
        }
        messages.push_back(message.clone());
    }
}

impl Store for MemoryStore {
    fn doc(&mut self, room: &RoomName, doc: &RoomName) -> Result<Vec<Vec<u8>>, StoreError> {
        let key = (room.clone(), doc.clone());
        Ok(self.contents().docs.get(&key).cloned().unwrap_or_default())
    }

    fn commit_docs(&mut self, updates: &[super::DocUpdate]) -> Result<(), StoreError> {
        let mut contents = self.contents();
        for super::DocUpdate { room, doc, update } in updates {
            contents.docs.entry((room.clone(), doc.clone())).or_default().push(update.clone());
        }
        Ok(())
    }

    fn compact_doc(
        &mut self,
        room: &RoomName,
        doc: &RoomName,
        state: &[u8],
    ) -> Result<(), StoreError> {
        self.contents().docs.insert((room.clone(), doc.clone()), vec![state.to_vec()]);
        Ok(())
    }

    fn keep_version(
        &mut self,
        room: &RoomName,
        doc: &RoomName,
        ts: u64,
        state: &[u8],
    ) -> Result<(), StoreError> {
        let mut contents = self.contents();
        contents.last_version += 1;
        let number = contents.last_version;
        let kept = contents.versions.entry((room.clone(), doc.clone())).or_default();
        kept.push((number, ts, state.to_vec()));
        let gone = kept.len().saturating_sub(super::VERSIONS_KEPT);
        kept.drain(..gone);
        Ok(())
    }

    fn versions(
        &mut self,
        room: &RoomName,
        doc: &RoomName,
    ) -> Result<Vec<super::VersionInfo>, StoreError> {
        let contents = self.contents();
        let kept = contents.versions.get(&(room.clone(), doc.clone()));
        Ok(kept
            .into_iter()
            .flatten()
            .rev()
            .map(|(version, ts, state)| super::VersionInfo {
                version: *version,
                ts: *ts,
                bytes: u64::try_from(state.len()).unwrap_or(u64::MAX),
            })
            .collect())
    }

    fn version(
        &mut self,
        room: &RoomName,
        doc: &RoomName,
        version: u64,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        let contents = self.contents();
        let kept = contents.versions.get(&(room.clone(), doc.clone()));
        Ok(kept.into_iter().flatten().find(|(n, _, _)| *n == version).map(|(_, _, s)| s.clone()))
    }

    fn load(&mut self, retention: &Retention, now_ms: u64) -> Result<Snapshot, StoreError> {
        self.prune(retention, now_ms)?;
        let contents = self.contents();
        let cutoff = retention.recent_cutoff_ms(now_ms);
        let mut recent: Vec<Message> = contents
            .rooms
            .values()
            .flat_map(|(_, messages)| messages.iter())
            .filter(|m| m.id.is_some() && m.ts.as_unix_millis() >= cutoff)
            .cloned()
            .collect();
        recent.sort_by_key(|m| m.ts);
        let skip = recent.len().saturating_sub(retention.recent_max);
        recent.drain(..skip);
        Ok(Snapshot {
            sessions: Vec::new(),
            recent,
            conversations: contents.conversations.values().cloned().collect(),
        })
    }

    fn room(
        &mut self,
        room: &RoomName,
        retention: &Retention,
        now_ms: u64,
    ) -> Result<Option<RoomHistory>, StoreError> {
        let contents = self.contents();
        let Some((last_seq, messages)) = contents.rooms.get(room) else {
            return Ok(None);
        };
        let cutoff = retention.cutoff_ms(now_ms).unwrap_or(0);
        let mut kept: Vec<Message> =
            messages.iter().filter(|m| m.ts.as_unix_millis() >= cutoff).cloned().collect();
        let skip = kept.len().saturating_sub(retention.per_room);
        kept.drain(..skip);
        let topic = contents.topics.get(room).cloned();
        let docs = contents.lists.get(room).map(|list| list.values().cloned().collect());
        Ok(Some(RoomHistory {
            last_seq: *last_seq,
            messages: kept,
            topic,
            docs: docs.unwrap_or_default(),
            remote: Vec::new(),
        }))
    }

    fn commit(&mut self, records: &[Record]) -> Result<(), StoreError> {
        let mut contents = self.contents();
        for record in records {
            match record {
                Record::Message(message) => contents.add(message),
                Record::Direct(Direct { message, nicks }) => {
                    contents.add(message);
                    let conversation = Conversation {
                        name: message.room.clone(),
                        nicks: nicks.clone(),
                        last_seq: message.seq,
                        last_ts: message.ts,
                    };
                    contents.conversations.insert(message.room.clone(), conversation);
                }
                Record::Topic { room, topic } => {
                    contents.rooms.entry(room.clone()).or_default();
                    match topic {
                        Some(topic) => contents.topics.insert(room.clone(), topic.clone()),
                        None => contents.topics.remove(room),
                    };
                }
                Record::Doc { room, doc, deleted } => {
                    contents.rooms.entry(room.clone()).or_default();
                    let list = contents.lists.entry(room.clone()).or_default();
                    if *deleted {
                        list.remove(&doc.name);
                        contents.docs.remove(&(room.clone(), doc.name.clone()));
                        contents.versions.remove(&(room.clone(), doc.name.clone()));
                    } else {
                        list.insert(doc.name.clone(), doc.clone());
                    }
                }
                Record::Session { .. } | Record::SessionEnded(_) => {}
            }
        }
        Ok(())
    }

    fn prune(&mut self, retention: &Retention, now_ms: u64) -> Result<bool, StoreError> {
        let mut contents = self.contents();
        let cutoff = retention.cutoff_ms(now_ms);
        let mut files_went = false;
        for (_, messages) in contents.rooms.values_mut() {
            while messages.len() > retention.per_room
                || cutoff.is_some_and(|cutoff| {
                    messages.front().is_some_and(|m| m.ts.as_unix_millis() < cutoff)
                })
            {
                if let Some(message) = messages.pop_front() {
                    files_went |= message.attachment.is_some();
                }
            }
        }
        Ok(files_went)
    }

    fn file_rooms(&mut self, file: &str) -> Result<Vec<(RoomName, Attachment)>, StoreError> {
        let contents = self.contents();
        Ok(contents
            .rooms
            .iter()
            .flat_map(|(name, (_, messages))| messages.iter().map(move |m| (name, m)))
            .filter_map(|(name, m)| {
                let attachment = m.attachment.as_deref().filter(|a| &*a.id == file)?;
                Some((name.clone(), attachment.clone()))
            })
            .collect())
    }

    fn files(&mut self) -> Result<BTreeSet<String>, StoreError> {
        let contents = self.contents();
        Ok(contents
            .rooms
            .values()
            .flat_map(|(_, messages)| messages.iter())
            .filter_map(|m| m.attachment.as_ref().map(|a| a.id.to_string()))
            .collect())
    }
}
