//! The durability gate: nothing is shown to anyone before the records
//! issued before it are stored.
//!
//! The hub gives every record a ticket (1, 2, 3, …) as it sends it to the
//! storage thread. A delivery made while some record is not yet committed
//! waits here, in order, until storage has committed every record issued
//! before it; then it goes out. If storage fails, everything in flight is
//! handed back (to be taken back by the core) and what waited goes out,
//! the hub cutting what it must from it.

use std::collections::VecDeque;
use std::sync::Arc;

use chat_core::{Event, MemberId, Record};
use chat_transport::tungstenite::Utf8Bytes;

/// A delivery: who gets which bytes, and the event they encode.
#[derive(Debug)]
pub(crate) struct Delivery {
    pub to: Arc<[MemberId]>,
    pub bytes: Utf8Bytes,
    /// May be skipped for a client that is behind (typing notices).
    pub ephemeral: bool,
    /// The event the bytes encode, if the core made it: a message storage
    /// could not keep must be cut out of it.
    pub event: Option<Arc<Event>>,
}

/// Records in flight and the deliveries waiting for them.
#[derive(Debug, Default)]
pub(crate) struct Commits {
    /// The ticket of the last record issued...
    issued: u64,
    /// ...and of the last one committed (or failed and handed back).
    committed: u64,
    /// The records issued and not committed, with their tickets.
    in_flight: VecDeque<(u64, Record)>,
    /// Deliveries waiting, each with the last ticket issued before it.
    held: VecDeque<(u64, Delivery)>,
}

impl Commits {
    /// A record goes to storage: its ticket. Deliveries made from now on
    /// wait for it.
    pub(crate) fn issue(&mut self, record: &Record) -> u64 {
        self.issued += 1;
        self.in_flight.push_back((self.issued, record.clone()));
        self.issued
    }

    /// The delivery to make now, or `None` if it waits for the records
    /// issued before it (and after anything already waiting).
    pub(crate) fn deliver(&mut self, delivery: Delivery) -> Option<Delivery> {
        if self.held.is_empty() && self.committed == self.issued {
            return Some(delivery);
        }
        self.held.push_back((self.issued, delivery));
        None
    }

    /// Storage committed every record up to `ticket`: the deliveries that
    /// waited only for those, in order.
    pub(crate) fn committed(&mut self, ticket: u64) -> Vec<Delivery> {
        self.committed = self.committed.max(ticket);
        while self.in_flight.front().is_some_and(|(t, _)| *t <= self.committed) {
            self.in_flight.pop_front();
        }
        let mut released = Vec::new();
        while self.held.front().is_some_and(|(after, _)| *after <= self.committed) {
            if let Some((_, delivery)) = self.held.pop_front() {
                released.push(delivery);
            }
        }
        released
    }

    /// Whether a failure report for `ticket` is news: records up to it are
    /// still in flight.
    pub(crate) fn is_pending(&self, ticket: u64) -> bool {
        ticket > self.committed
    }

    /// Storage failed: every record in flight, in the order issued, and
    /// every delivery that waited, in order. Nothing is in flight after.
    pub(crate) fn failed(&mut self) -> (Vec<Record>, Vec<Delivery>) {
        self.committed = self.issued;
        let records = self.in_flight.drain(..).map(|(_, record)| record).collect();
        let held = self.held.drain(..).map(|(_, delivery)| delivery).collect();
        (records, held)
    }

    /// Deliveries waiting for storage.
    pub(crate) fn held(&self) -> usize {
        self.held.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use chat_core::SessionToken;

    fn record(n: u64) -> Record {
        Record::SessionEnded(
            SessionToken::parse(&format!("t{n}")).unwrap_or_else(|e| panic!("{e}")),
        )
    }

    fn delivery(text: &str) -> Delivery {
        Delivery { to: Arc::new([]), bytes: Utf8Bytes::from(text), ephemeral: false, event: None }
    }

    fn texts(deliveries: &[Delivery]) -> Vec<&str> {
        deliveries.iter().map(|d| d.bytes.as_str()).collect()
    }

    #[test]
    fn deliveries_go_at_once_when_nothing_is_in_flight() {
        let mut commits = Commits::default();
        assert!(commits.deliver(delivery("now")).is_some());
    }

    #[test]
    fn deliveries_wait_for_the_records_before_them_in_order() {
        let mut commits = Commits::default();
        let first = commits.issue(&record(1));
        assert!(commits.deliver(delivery("a")).is_none());
        let second = commits.issue(&record(2));
        assert!(commits.deliver(delivery("b")).is_none());
        assert_eq!(commits.held(), 2);
        // "b" waits for the second record, even once the first is stored.
        assert_eq!(texts(&commits.committed(first)), ["a"]);
        assert!(commits.deliver(delivery("c")).is_none(), "behind b, in order");
        assert_eq!(texts(&commits.committed(second)), ["b", "c"]);
        assert!(commits.deliver(delivery("d")).is_some());
        assert!(!commits.is_pending(second));
    }

    #[test]
    fn a_failure_hands_back_everything_in_flight_and_releases_what_waited() {
        let mut commits = Commits::default();
        let first = commits.issue(&record(1));
        assert!(commits.deliver(delivery("a")).is_none());
        commits.issue(&record(2));
        assert!(commits.deliver(delivery("b")).is_none());
        assert_eq!(texts(&commits.committed(first)), ["a"]);
        commits.issue(&record(3));
        assert!(commits.is_pending(3));
        let (records, held) = commits.failed();
        assert_eq!(records, vec![record(2), record(3)]);
        assert_eq!(texts(&held), ["b"]);
        assert!(!commits.is_pending(3), "a late report of the same failure is no news");
        assert!(commits.deliver(delivery("c")).is_some());
    }
}
