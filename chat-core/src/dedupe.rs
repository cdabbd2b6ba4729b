use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use crate::{Event, SessionToken, Timestamp};

/// The events answered to recently accepted `(session, id)` pairs, so a
/// retried `say` or `dm` gets its original answer instead of being accepted
/// twice. Entries live for `window` and at most `max` are kept, oldest
/// dropped first.
#[derive(Debug)]
pub(crate) struct Dedupe {
    entries: BTreeMap<(SessionToken, Arc<str>), Arc<Event>>,
    /// Insertion order, which is also expiry order since `now` never goes
    /// backwards.
    order: VecDeque<(Timestamp, SessionToken, Arc<str>)>,
    window: Duration,
    max: usize,
}

impl Dedupe {
    pub(crate) fn new(window: Duration, max: usize) -> Self {
        Self { entries: BTreeMap::new(), order: VecDeque::new(), window, max }
    }

    pub(crate) fn get(&self, token: &SessionToken, id: &Arc<str>) -> Option<Arc<Event>> {
        self.entries.get(&(token.clone(), Arc::clone(id))).cloned()
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
        while self.entries.len() >= self.max {
            if !self.pop_oldest() {
                break;
            }
        }
        let deadline = accepted.saturating_add(self.window);
        if self.entries.insert((token.clone(), Arc::clone(&id)), event).is_none() {
            // Live entries arrive in time order; restored ones may not.
            let at = self.order.partition_point(|(d, _, _)| *d <= deadline);
            self.order.insert(at, (deadline, token, id));
        }
    }

    /// Forgets entries whose window has passed.
    pub(crate) fn expire(&mut self, now: Timestamp) {
        while self.order.front().is_some_and(|(deadline, _, _)| *deadline <= now) {
            self.pop_oldest();
        }
    }

    pub(crate) fn next_deadline(&self) -> Option<Timestamp> {
        self.order.front().map(|(deadline, _, _)| *deadline)
    }

    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    fn pop_oldest(&mut self) -> bool {
        match self.order.pop_front() {
            Some((_, token, id)) => {
                self.entries.remove(&(token, id));
                true
            }
            None => false,
        }
    }
}
