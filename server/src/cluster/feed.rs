//! A node's in-order view of the rooms it listens to, sans IO.
//!
//! PUB/SUB loses messages (a reconnect, a subscriber Redis cut off for
//! falling behind) and may hand a message over after a later one was
//! filled from the log. So a node never delivers what it hears as it
//! hears it: [`Feed`] keeps, per room, the next `seq` it owes its members,
//! delivers only that one, holds what comes early, and asks for the log
//! from the first missing `seq` (`Action::Fill`) whenever something is
//! missing: a gap heard, a reconnect, a newest `seq` seen ahead by a
//! periodic check. What the log no longer holds is told as a gap; a new
//! epoch (Redis lost the room) as a reset. Nothing is delivered twice or
//! out of order.

use std::collections::{BTreeMap, HashMap};

use super::{Page, Published};

/// What the driver must do. `room` is always the room concerned.
#[derive(Debug, Clone, PartialEq, Eq)]
#[allow(missing_docs)]
pub enum Action {
    /// Hand `message`, `room`'s `seq`, to the room's members here.
    Deliver { room: String, seq: u64, message: Vec<u8> },
    /// Read `room`'s log from `seq` `from` on and give the page to
    /// [`Feed::filled`].
    Fill { room: String, from: u64 },
    /// Messages `from..=to` of `room` are gone from the log: tell the
    /// members they missed them.
    Gap { room: String, from: u64, to: u64 },
    /// `room`'s numbering started again under a new `epoch` (Redis lost
    /// its data): what members hold of it is from before.
    Reset { room: String, epoch: String },
}

/// Where one room stands.
#[derive(Debug)]
struct Room {
    /// `None` between subscribing and the log's first read
    /// ([`Feed::expect`]): what is heard meanwhile is held.
    epoch: Option<String>,
    /// The epoch of what was held before the first read.
    early_epoch: Option<String>,
    /// The next `seq` this node owes its members.
    next: u64,
    /// Heard ahead of `next`, by `seq`.
    early: BTreeMap<u64, Vec<u8>>,
    /// A fill was asked for and has not come back.
    filling: bool,
}

/// The rooms a node listens to.
#[derive(Debug, Default)]
pub struct Feed {
    rooms: HashMap<String, Room>,
}

/// The most messages held ahead of a gap per room; past it the fill is
/// what brings the rest, in order.
const EARLY_MAX: usize = 4096;

impl Feed {
    /// `room` is subscribed and its log about to be read: what is heard
    /// before the read's answer ([`Feed::listen`]) is held, not lost.
    pub fn expect(&mut self, room: &str) {
        self.rooms.insert(room.to_owned(), Room::waiting());
    }

    /// Starts listening to `room` after `seq` `delivered` (what its members
    /// here have, from a read of the log), in `epoch`; what was heard since
    /// [`Feed::expect`] and is newer goes out now.
    pub fn listen(&mut self, name: &str, epoch: &str, delivered: u64) -> Vec<Action> {
        let mut actions = Vec::new();
        let room = self.rooms.entry(name.to_owned()).or_insert_with(Room::waiting);
        // Held from another numbering: worthless.
        if room.early_epoch.as_deref() != Some(epoch) {
            room.early.clear();
        }
        room.early.retain(|&seq, _| seq > delivered);
        (room.epoch, room.early_epoch) = (Some(epoch.to_owned()), None);
        (room.next, room.filling) = (delivered + 1, false);
        deliver_early(name, room, &mut actions);
        if !room.early.is_empty() {
            ask_fill(name, room, &mut actions);
        }
        actions
    }

    /// Stops listening to `room`: what is heard of it is dropped.
    pub fn forget(&mut self, room: &str) {
        self.rooms.remove(room);
    }

    /// Whether `room` is listened to, or about to be.
    pub fn follows(&self, room: &str) -> bool {
        self.rooms.contains_key(room)
    }

    /// Whether `room` is listened to and its log was read.
    pub fn listening(&self, room: &str) -> bool {
        self.rooms.get(room).is_some_and(|room| room.epoch.is_some())
    }

    /// The rooms listened to.
    pub fn rooms(&self) -> impl Iterator<Item = &str> {
        self.rooms.keys().map(String::as_str)
    }

    /// A message heard on a room's channel.
    pub fn heard(&mut self, published: Published) -> Vec<Action> {
        let mut actions = Vec::new();
        let Published { room: name, seq, epoch, message } = published;
        let Some(room) = self.rooms.get_mut(&name) else {
            return actions;
        };
        if room.epoch.is_none() {
            // Before the first read: held, in one epoch.
            if room.early_epoch.as_deref() != Some(epoch.as_str()) {
                room.early.clear();
                room.early_epoch = Some(epoch);
            }
            if room.early.len() < EARLY_MAX {
                room.early.insert(seq, message);
            }
            return actions;
        }
        if room.epoch.as_deref() != Some(epoch.as_str()) {
            // Numbered anew: start over from the log, all of it.
            restart(&name, room, epoch, &mut actions);
            return actions;
        }
        if seq < room.next || room.early.contains_key(&seq) {
            return actions;
        }
        if seq == room.next && !room.filling {
            room.next += 1;
            actions.push(Action::Deliver { room: name.clone(), seq, message });
            deliver_early(&name, room, &mut actions);
            return actions;
        }
        if room.early.len() < EARLY_MAX {
            room.early.insert(seq, message);
        }
        ask_fill(&name, room, &mut actions);
        actions
    }

    /// A page of `room`'s log, read for a [`Action::Fill`] (or by a
    /// check).
    pub fn filled(&mut self, name: &str, page: Page) -> Vec<Action> {
        let mut actions = Vec::new();
        let Some(room) = self.rooms.get_mut(name).filter(|room| room.epoch.is_some()) else {
            return actions;
        };
        room.filling = false;
        if room.epoch.as_deref() != Some(page.epoch.as_str()) {
            restart(name, room, page.epoch, &mut actions);
            return actions;
        }
        // Older than the log keeps: a gap up to its first message.
        let first = page.messages.first().map_or(page.newest + 1, |(seq, _)| *seq);
        if first > room.next && page.newest >= room.next {
            actions.push(Action::Gap { room: name.to_owned(), from: room.next, to: first - 1 });
            room.next = first;
            // What was held from inside the gap is gone with it: kept, it
            // would be asked for again and again.
            room.early = room.early.split_off(&first);
        }
        for (seq, message) in page.messages {
            if seq == room.next {
                room.next += 1;
                room.early.remove(&seq);
                actions.push(Action::Deliver { room: name.to_owned(), seq, message });
            }
        }
        deliver_early(name, room, &mut actions);
        // More than one page behind, or heard ahead of what came: on.
        if room.next <= page.newest || !room.early.is_empty() {
            ask_fill(name, room, &mut actions);
        }
        actions
    }

    /// The subscription was lost and is back: whatever was published
    /// meanwhile is read from every room's log.
    pub fn reconnected(&mut self) -> Vec<Action> {
        let mut actions = Vec::new();
        // (A room still waiting for its first read gets it anyway.)
        for (name, room) in self.rooms.iter_mut().filter(|(_, room)| room.epoch.is_some()) {
            room.filling = false;
            ask_fill(name, room, &mut actions);
        }
        actions
    }

    /// A periodic check read `room`'s newest `seq`: a last message whose
    /// publication was lost shows here.
    pub fn checked(&mut self, name: &str, epoch: &str, newest: u64) -> Vec<Action> {
        let mut actions = Vec::new();
        let Some(room) = self.rooms.get_mut(name).filter(|room| room.epoch.is_some()) else {
            return actions;
        };
        if room.epoch.as_deref() != Some(epoch) {
            restart(name, room, epoch.to_owned(), &mut actions);
        } else if newest >= room.next {
            ask_fill(name, room, &mut actions);
        }
        actions
    }
}

fn ask_fill(name: &str, room: &mut Room, actions: &mut Vec<Action>) {
    if !room.filling {
        room.filling = true;
        actions.push(Action::Fill { room: name.to_owned(), from: room.next });
    }
}

/// Delivers what was heard early and is due now.
fn deliver_early(name: &str, room: &mut Room, actions: &mut Vec<Action>) {
    while let Some(message) = room.early.remove(&room.next) {
        actions.push(Action::Deliver { room: name.to_owned(), seq: room.next, message });
        room.next += 1;
    }
}

impl Room {
    /// Subscribed, its log not read yet.
    fn waiting() -> Self {
        Self { epoch: None, early_epoch: None, next: 1, early: BTreeMap::new(), filling: false }
    }
}

/// A new epoch: members are told, and the room is read from its start.
fn restart(name: &str, room: &mut Room, epoch: String, actions: &mut Vec<Action>) {
    actions.push(Action::Reset { room: name.to_owned(), epoch: epoch.clone() });
    room.epoch = Some(epoch);
    room.early_epoch = None;
    room.next = 1;
    room.early.clear();
    room.filling = false;
    ask_fill(name, room, actions);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn heard(seq: u64) -> Published {
        Published {
            room: "lobby".into(),
            seq,
            epoch: "e1".into(),
            message: format!("m{seq}").into_bytes(),
        }
    }

    fn page(newest: u64, seqs: std::ops::RangeInclusive<u64>) -> Page {
        let messages = seqs.map(|seq| (seq, format!("m{seq}").into_bytes())).collect();
        Page { newest, epoch: "e1".into(), messages, topic: None }
    }

    /// The seqs delivered, and the fills asked for.
    fn sorted(actions: &[Action]) -> (Vec<u64>, Vec<u64>) {
        let mut delivered = Vec::new();
        let mut fills = Vec::new();
        for action in actions {
            match action {
                Action::Deliver { seq, message, .. } => {
                    assert_eq!(message, format!("m{seq}").as_bytes());
                    delivered.push(*seq);
                }
                Action::Fill { from, .. } => fills.push(*from),
                other => panic!("{other:?}"),
            }
        }
        (delivered, fills)
    }

    #[test]
    fn in_order_goes_straight_through_and_a_repeat_is_dropped() {
        let mut feed = Feed::default();
        let _ = feed.listen("lobby", "e1", 0);
        assert_eq!(sorted(&feed.heard(heard(1))), (vec![1], vec![]));
        assert_eq!(sorted(&feed.heard(heard(2))), (vec![2], vec![]));
        assert_eq!(sorted(&feed.heard(heard(2))), (vec![], vec![]), "delivered once");
        // Another room, or one not listened to, is not this one's business.
        assert!(feed.heard(Published { room: "dev".into(), ..heard(3) }).is_empty());
    }

    #[test]
    fn what_is_heard_between_subscribing_and_the_first_read_is_held_not_lost() {
        let mut feed = Feed::default();
        feed.expect("lobby");
        // Published while the log is being read: 5 is in the read, 6 not.
        assert!(feed.heard(heard(5)).is_empty());
        assert!(feed.heard(heard(6)).is_empty());
        assert!(feed.checked("lobby", "e1", 6).is_empty(), "nothing to check yet");
        assert_eq!(sorted(&feed.listen("lobby", "e1", 5)), (vec![6], vec![]));
        assert_eq!(sorted(&feed.heard(heard(7))), (vec![7], vec![]));
        // Held from another numbering, it is dropped.
        feed.expect("dev");
        let other = Published { room: "dev".into(), epoch: "e0".into(), ..heard(2) };
        assert!(feed.heard(other).is_empty());
        assert!(feed.listen("dev", "e1", 1).is_empty());
    }

    #[test]
    fn a_gap_holds_what_comes_early_until_the_log_fills_it() {
        let mut feed = Feed::default();
        let _ = feed.listen("lobby", "e1", 0);
        feed.heard(heard(1));
        // 2 and 3 lost; 4 and 5 heard: held, and the log asked from 2.
        assert_eq!(sorted(&feed.heard(heard(4))), (vec![], vec![2]));
        assert_eq!(sorted(&feed.heard(heard(5))), (vec![], vec![]), "one fill at a time");
        // 2 heard late while filling: held too, never ahead of the fill.
        assert_eq!(sorted(&feed.heard(heard(2))), (vec![], vec![]));
        assert_eq!(sorted(&feed.filled("lobby", page(5, 2..=5))), (vec![2, 3, 4, 5], vec![]));
        assert_eq!(sorted(&feed.heard(heard(6))), (vec![6], vec![]));
    }

    #[test]
    fn a_fill_shorter_than_the_gap_asks_again() {
        let mut feed = Feed::default();
        let _ = feed.listen("lobby", "e1", 0);
        assert_eq!(sorted(&feed.heard(heard(9))), (vec![], vec![1]));
        assert_eq!(sorted(&feed.filled("lobby", page(9, 1..=4))), (vec![1, 2, 3, 4], vec![5]));
        assert_eq!(sorted(&feed.filled("lobby", page(9, 5..=9))), (vec![5, 6, 7, 8, 9], vec![]));
    }

    #[test]
    fn a_reconnect_or_a_check_finds_what_pubsub_lost() {
        let mut feed = Feed::default();
        let _ = feed.listen("lobby", "e1", 3);
        let _ = feed.listen("dev", "e1", 0);
        let mut fills = feed.reconnected();
        fills.sort_by_key(|a| format!("{a:?}"));
        assert_eq!(
            fills,
            [
                Action::Fill { room: "dev".into(), from: 1 },
                Action::Fill { room: "lobby".into(), from: 4 }
            ]
        );
        let nothing = Page { newest: 3, epoch: "e1".into(), messages: Vec::new(), topic: None };
        assert_eq!(sorted(&feed.filled("lobby", nothing)), (vec![], vec![]), "nothing new");
        // The last message's publication was lost: the check sees it.
        assert_eq!(sorted(&feed.checked("lobby", "e1", 3)), (vec![], vec![]));
        assert_eq!(sorted(&feed.checked("lobby", "e1", 4)), (vec![], vec![4]));
        assert_eq!(sorted(&feed.filled("lobby", page(4, 4..=4))), (vec![4], vec![]));
    }

    #[test]
    fn what_the_log_no_longer_holds_is_a_gap_and_a_new_epoch_a_reset() {
        let mut feed = Feed::default();
        let _ = feed.listen("lobby", "e1", 2);
        feed.heard(heard(10));
        // The log keeps 8..=10 only.
        let actions = feed.filled("lobby", page(10, 8..=10));
        assert_eq!(actions[0], Action::Gap { room: "lobby".into(), from: 3, to: 7 });
        assert_eq!(sorted(&actions[1..]), (vec![8, 9, 10], vec![]));
        // Redis lost the room: numbering starts again, and is read anew.
        let lost = Published { epoch: "e2".into(), ..heard(1) };
        let actions = feed.heard(lost);
        assert_eq!(
            actions,
            [
                Action::Reset { room: "lobby".into(), epoch: "e2".into() },
                Action::Fill { room: "lobby".into(), from: 1 }
            ]
        );
        let again = Page { epoch: "e2".into(), ..page(1, 1..=1) };
        assert_eq!(sorted(&feed.filled("lobby", again)), (vec![1], vec![]));
    }

    /// What a node did with what its feed said, in the simulation below.
    #[derive(Default)]
    struct Seen {
        delivered: Vec<u64>,
        skipped: Vec<(u64, u64)>,
        /// Fills asked for, not answered yet.
        fills: Vec<u64>,
    }

    impl Seen {
        fn take(&mut self, actions: Vec<Action>, seed: u64) {
            for action in actions {
                match action {
                    Action::Deliver { seq, message, .. } => {
                        assert_eq!(message, format!("m{seq}").into_bytes(), "seed {seed}");
                        self.delivered.push(seq);
                    }
                    Action::Fill { from, .. } => self.fills.push(from),
                    Action::Gap { from, to, .. } => self.skipped.push((from, to)),
                    Action::Reset { .. } => panic!("seed {seed}: one epoch here"),
                }
            }
        }
    }

    /// xorshift64*, for the simulation below.
    struct Rng(u64);

    impl Rng {
        fn below(&mut self, n: u64) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % n.max(1)
        }
    }

    /// A room's log and what a node hears of it, at random: publications
    /// lost, repeated, late (after later ones, after fills), reconnects and
    /// checks at any time, fills answered late and in short pages, the log
    /// trimmed. Whatever happens, the node delivers each `seq` at most
    /// once and in order, says which ones it skipped (gaps, only below what
    /// the log still keeps), and once the publications stop, a check brings
    /// it to the end.
    #[test]
    fn random_loss_repeats_and_delays_never_reorder_or_repeat_and_a_check_completes() {
        for seed in 1..=500u64 {
            let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
            let keep = 5 + rng.below(30);
            let mut feed = Feed::default();
            let _ = feed.listen("lobby", "e1", 0);
            let mut newest = 0u64;
            // Heard but not handed to the feed yet.
            let mut in_flight: Vec<u64> = Vec::new();
            let mut seen = Seen::default();
            let log_page = |from: u64, newest: u64, count: u64| {
                let oldest = newest.saturating_sub(keep) + 1;
                let first = from.max(oldest);
                let last = newest.min(first + count - 1);
                // Nothing from `from` on (`first > last`) is an empty page.
                let messages = (first..=last).map(|seq| (seq, format!("m{seq}").into_bytes()));
                Page { newest, epoch: "e1".into(), messages: messages.collect(), topic: None }
            };
            for _ in 0..300 {
                match rng.below(10) {
                    // Something is published: heard (maybe twice), or lost.
                    0..=3 => {
                        newest += 1;
                        match rng.below(6) {
                            0 => {}
                            1 => in_flight.extend([newest, newest]),
                            _ => in_flight.push(newest),
                        }
                    }
                    // Something heard reaches the feed, in any order.
                    4..=5 if !in_flight.is_empty() => {
                        let seq = in_flight.remove(rng.below(in_flight.len() as u64) as usize);
                        seen.take(feed.heard(heard(seq)), seed);
                    }
                    // A fill is answered, in a page of any length.
                    6..=7 if !seen.fills.is_empty() => {
                        let from = seen.fills.remove(0);
                        let count = 1 + rng.below(8);
                        seen.take(feed.filled("lobby", log_page(from, newest, count)), seed);
                    }
                    8 => seen.take(feed.checked("lobby", "e1", newest), seed),
                    _ => seen.take(feed.reconnected(), seed),
                }
                let delivered = &seen.delivered;
                assert!(delivered.windows(2).all(|w| w[0] < w[1]), "seed {seed}: {delivered:?}");
            }
            // Publications stop; what is in flight arrives; a check and
            // the fills it asks for bring the node to the end.
            for seq in std::mem::take(&mut in_flight) {
                seen.take(feed.heard(heard(seq)), seed);
            }
            seen.take(feed.checked("lobby", "e1", newest), seed);
            for _ in 0..1000 {
                if seen.fills.is_empty() {
                    break;
                }
                let from = seen.fills.remove(0);
                seen.take(feed.filled("lobby", log_page(from, newest, 8)), seed);
            }
            assert!(seen.fills.is_empty(), "seed {seed}: fills that never end");
            // Every seq is delivered once, or skipped as gone from the log.
            let mut accounted: Vec<u64> = seen.delivered.clone();
            for (from, to) in &seen.skipped {
                assert!(
                    *to <= newest.saturating_sub(keep),
                    "seed {seed}: skipped what the log keeps"
                );
                accounted.extend(*from..=*to);
            }
            accounted.sort_unstable();
            assert_eq!(accounted, (1..=newest).collect::<Vec<_>>(), "seed {seed}");
        }
    }
}
