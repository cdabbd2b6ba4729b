use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use crate::{Event, SessionToken, Timestamp};

/// What one remembered answer costs besides its text: the keys, the event
/// and the bookkeeping here.
const ENTRY_OVERHEAD: usize = 256;

/// The events answered to recently accepted `(session, id)` pairs, so a
/// retried `say` or `dm` gets its original answer instead of being accepted
/// twice.
///
/// Entries live for `window`. At most `max` are kept, the oldest dropped
/// first; and their text at most `max_bytes`, past which the session
/// holding the most gives up its oldest, so a client flooding long
/// messages only pushes out its own.
#[derive(Debug)]
pub(crate) struct Dedupe {
    entries: BTreeMap<(SessionToken, Arc<str>), Entry>,
    /// Every entry by deadline, which is also insertion order for live
    /// entries since `now` never goes backwards.
    order: BTreeSet<(Timestamp, SessionToken, Arc<str>)>,
    /// Each session's entries by deadline, and what they cost.
    sessions: BTreeMap<SessionToken, Held>,
    /// Sessions by what their entries cost, to find the heaviest.
    heaviest: BTreeSet<(usize, SessionToken)>,
    bytes: usize,
    window: Duration,
    max: usize,
    max_bytes: usize,
}

#[derive(Debug)]
struct Entry {
    event: Arc<Event>,
    deadline: Timestamp,
    cost: usize,
}

#[derive(Debug, Default)]
struct Held {
    order: BTreeSet<(Timestamp, Arc<str>)>,
    bytes: usize,
}

impl Dedupe {
    pub(crate) fn new(window: Duration, max: usize, max_bytes: usize) -> Self {
        Self {
            entries: BTreeMap::new(),
            order: BTreeSet::new(),
            sessions: BTreeMap::new(),
            heaviest: BTreeSet::new(),
            bytes: 0,
            window,
            max,
            max_bytes,
        }
    }

    pub(crate) fn get(&self, token: &SessionToken, id: &Arc<str>) -> Option<Arc<Event>> {
        self.entries.get(&(token.clone(), Arc::clone(id))).map(|entry| Arc::clone(&entry.event))
    }

    pub(crate) fn insert(
        &mut self,
        accepted: Timestamp,
        token: SessionToken,
        id: Arc<str>,
        event: Arc<Event>,
    ) {
        if self.max == 0 {
            return;
        }
        self.remove(&token, &id);
        while self.entries.len() >= self.max {
            let Some((_, token, id)) = self.order.first().cloned() else { break };
            self.remove(&token, &id);
        }
        let cost = ENTRY_OVERHEAD + text_len(&event);
        while self.bytes + cost > self.max_bytes {
            let Some((_, heaviest)) = self.heaviest.last().cloned() else { break };
            let oldest = self.sessions.get(&heaviest).and_then(|held| held.order.first().cloned());
            let Some((_, id)) = oldest else { break };
            self.remove(&heaviest, &id);
        }
        let deadline = accepted.saturating_add(self.window);
        self.order.insert((deadline, token.clone(), Arc::clone(&id)));
        let held = self.sessions.entry(token.clone()).or_default();
        self.heaviest.remove(&(held.bytes, token.clone()));
        held.bytes += cost;
        held.order.insert((deadline, Arc::clone(&id)));
        self.heaviest.insert((held.bytes, token.clone()));
        self.bytes += cost;
        self.entries.insert((token, id), Entry { event, deadline, cost });
    }

    /// Forgets one entry (its message was taken back).
    pub(crate) fn remove(&mut self, token: &SessionToken, id: &Arc<str>) {
        let Some(entry) = self.entries.remove(&(token.clone(), Arc::clone(id))) else {
            return;
        };
        self.order.remove(&(entry.deadline, token.clone(), Arc::clone(id)));
        self.bytes -= entry.cost;
        if let Some(held) = self.sessions.get_mut(token) {
            self.heaviest.remove(&(held.bytes, token.clone()));
            held.bytes -= entry.cost;
            held.order.remove(&(entry.deadline, Arc::clone(id)));
            if held.order.is_empty() {
                self.sessions.remove(token);
            } else {
                self.heaviest.insert((held.bytes, token.clone()));
            }
        }
    }

    /// Forgets entries whose window has passed.
    pub(crate) fn expire(&mut self, now: Timestamp) {
        while let Some((deadline, token, id)) = self.order.first().cloned() {
            if deadline > now {
                break;
            }
            self.remove(&token, &id);
        }
    }

    /// Whether answers are remembered for `token`: the token was this
    /// server's, and a client retrying under it must still be answered.
    pub(crate) fn knows(&self, token: &SessionToken) -> bool {
        self.sessions.contains_key(token)
    }

    pub(crate) fn next_deadline(&self) -> Option<Timestamp> {
        self.order.first().map(|(deadline, _, _)| *deadline)
    }

    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }
}

fn text_len(event: &Event) -> usize {
    match event {
        Event::Message(message) => message.text.len(),
        Event::Direct { text, .. } => text.len(),
        _ => 0,
    }
}
