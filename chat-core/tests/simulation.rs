//! Seeded random simulations: many members joining, leaving, saying,
//! renaming and disconnecting, checked against the invariants every client
//! relies on.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod harness;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use chat_core::{ChatConfig, Command, Event, MemberId, Presence};
use harness::Harness;

/// xorshift64*: small, deterministic, good enough to pick actions.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

const ROOMS: [&str; 4] = ["lobby", "dev", "random", "ops"];
const NICKS: [&str; 6] = ["ann", "Ann", "bo", "cy", "dee", "eve"];

/// What one member has seen so far.
#[derive(Default)]
struct View {
    /// For each joined room, the seq of the next message expected.
    next_seq: BTreeMap<String, u64>,
    /// The nick the member holds, once greeted.
    nick: Option<String>,
}

#[test]
fn random_sessions_keep_every_room_in_order_with_no_holes() {
    for seed in 1..=20u64 {
        run(seed, 3_000);
    }
}

fn run(seed: u64, steps: usize) {
    let config = ChatConfig {
        messages_per_sec: 1_000,
        messages_burst: 1_000,
        history_per_room: 20,
        join_history: 5,
        ..ChatConfig::default()
    };
    let mut h = Harness::with_config(config);
    let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    let mut views: BTreeMap<MemberId, View> = BTreeMap::new();
    // Every (room, seq) ever seen, with its sender and text: all members
    // must agree on it, which is what "one total order per room" means.
    let mut seen: BTreeMap<(String, u64), (String, String)> = BTreeMap::new();
    let mut said = 0u64;

    for step in 0..steps {
        let members: Vec<MemberId> = views.keys().copied().collect();
        let pick = |rng: &mut Rng| members[rng.below(members.len())];
        match rng.below(100) {
            0..=9 if views.len() < 12 => {
                let m = h.connect();
                views.insert(m, View::default());
                let nick = (rng.below(4) != 0).then(|| NICKS[rng.below(NICKS.len())].to_owned());
                h.send(m, Command::Hello { nick });
            }
            10..=29 if !members.is_empty() => {
                let m = pick(&mut rng);
                h.join(m, ROOMS[rng.below(ROOMS.len())]);
            }
            30..=37 if !members.is_empty() => {
                let m = pick(&mut rng);
                h.send(m, Command::Leave { room: ROOMS[rng.below(ROOMS.len())].into() });
            }
            38..=79 if !members.is_empty() => {
                let m = pick(&mut rng);
                said += 1;
                let text = format!("s{seed}-{step}");
                h.say(m, ROOMS[rng.below(ROOMS.len())], &text);
            }
            80..=84 if !members.is_empty() => {
                let m = pick(&mut rng);
                h.send(m, Command::Nick { nick: NICKS[rng.below(NICKS.len())].into() });
            }
            85..=87 if !members.is_empty() => {
                let m = pick(&mut rng);
                h.send(m, Command::Typing { room: ROOMS[rng.below(ROOMS.len())].into() });
            }
            88..=91 if !members.is_empty() => {
                let m = pick(&mut rng);
                h.disconnect(m);
                views.remove(&m);
            }
            _ => h.advance(Duration::from_millis(rng.below(3_000) as u64)),
        }
        for (&m, view) in views.iter_mut() {
            for event in h.take(m) {
                check(seed, step, m, view, &event, &mut seen);
            }
        }
        check_nicks_unique(&h, &views);
    }
    assert!(said > 0 && !seen.is_empty(), "seed {seed} exercised nothing");
}

fn check(
    seed: u64,
    step: usize,
    member: MemberId,
    view: &mut View,
    event: &Event,
    seen: &mut BTreeMap<(String, u64), (String, String)>,
) {
    let at = format!("seed {seed} step {step} {member}");
    match event {
        Event::Welcome { nick, .. } => view.nick = Some(nick.to_string()),
        Event::NickChanged { nick, .. } => view.nick = Some(nick.to_string()),
        Event::Joined { room, history, last_seq, members, .. } => {
            let seqs: Vec<u64> = history.iter().map(|m| m.seq).collect();
            let expected: Vec<u64> = (last_seq + 1 - seqs.len() as u64..=*last_seq).collect();
            assert_eq!(seqs, expected, "{at}: joined history is the newest, in order");
            let own = view.nick.as_deref().unwrap_or_default();
            assert!(members.iter().any(|n| n.as_str() == own), "{at}: joiner listed");
            for message in history {
                agree(&at, seen, room.as_str(), message.seq, message.from.as_str(), &message.text);
            }
            let next = view.next_seq.entry(room.to_string()).or_insert(last_seq + 1);
            assert_eq!(*next, last_seq + 1, "{at}: re-join reports the same position");
        }
        Event::Left { room, .. } => {
            assert!(view.next_seq.remove(room.as_str()).is_some(), "{at}: left a joined room");
        }
        Event::Message(message) => {
            let next = view.next_seq.get_mut(message.room.as_str());
            let next = next.unwrap_or_else(|| panic!("{at}: message from unjoined room"));
            assert_eq!(message.seq, *next, "{at}: seq strictly increasing with no holes");
            *next += 1;
            let room = message.room.as_str();
            agree(&at, seen, room, message.seq, message.from.as_str(), &message.text);
        }
        Event::Presence { room, change } => {
            assert!(view.next_seq.contains_key(room.as_str()), "{at}: presence of unjoined room");
            let own = view.nick.as_deref().unwrap_or_default();
            let about = match change {
                Presence::Joined(n) | Presence::Left(n) => n.as_str(),
                Presence::Renamed { new, .. } => new.as_str(),
            };
            assert_ne!(about, own, "{at}: presence is for the others");
        }
        Event::Typing { room, .. } => {
            assert!(view.next_seq.contains_key(room.as_str()), "{at}: typing of unjoined room");
        }
        Event::Error { .. } | Event::Direct { .. } => {}
        other => panic!("{at}: unexpected {other:?}"),
    }
}

fn agree(
    at: &str,
    seen: &mut BTreeMap<(String, u64), (String, String)>,
    room: &str,
    seq: u64,
    from: &str,
    text: &str,
) {
    let entry = seen.entry((room.to_owned(), seq)).or_insert((from.to_owned(), text.to_owned()));
    assert_eq!(entry, &(from.to_owned(), text.to_owned()), "{at}: {room}#{seq} differs");
}

fn check_nicks_unique(h: &Harness, views: &BTreeMap<MemberId, View>) {
    let nicks: Vec<String> =
        views.keys().filter_map(|&m| h.chat.nick(m)).map(|n| n.folded()).collect();
    let unique: BTreeSet<&String> = nicks.iter().collect();
    assert_eq!(unique.len(), nicks.len(), "nicks unique case-insensitively: {nicks:?}");
}
