//! Seeded random simulations: clients joining, leaving, saying (with
//! retries), renaming, dropping their connection and resuming, opening
//! more connections of one session (tabs, devices), checked
//! against the invariants every client relies on. A failing run names its
//! seed; `SIM_SEED=n cargo test -p chat-core --test it simulation` replays it.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use crate::harness::Harness;
use chat_core::{
    ChatConfig, Command, Event, MemberId, PRESENCE_BATCH_MAX, Presence, Resume, TYPING_BATCH_MAX,
    Timestamp,
};

/// xorshift64*: small, deterministic, good enough to pick actions.
pub(crate) struct Rng(pub(crate) u64);

impl Rng {
    pub(crate) fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    pub(crate) fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// How often a big room's batches go out, in the schedules with big rooms.
const PRESENCE_INTERVAL: Duration = Duration::from_secs(2);

const ROOMS: [&str; 4] = ["lobby", "dev", "random", "ops"];
const NICKS: [&str; 6] = ["ann", "Ann", "bo", "cy", "dee", "eve"];

/// One client program, which outlives its connections. Several may speak
/// for one session (tabs, devices), each with its own view.
#[derive(Default)]
struct Client {
    member: Option<MemberId>,
    token: Option<String>,
    nick: Option<String>,
    /// The rooms the client believes it is in, with the seq of the next
    /// message it expects in each.
    next_seq: BTreeMap<String, u64>,
    /// Ids sent, with their room, for retries.
    sent: Vec<(String, String)>,
    /// What each acknowledged id was accepted as.
    acked: BTreeMap<String, (String, u64)>,
    /// When this client last got a presence batch and a typing batch in
    /// each room.
    batches: BTreeMap<(String, &'static str), Timestamp>,
    /// Rooms re-joined after a reconnect whose `joined` has not come yet,
    /// with the messages that came first: like a real client, it holds
    /// them until the `joined` says where it stands.
    rejoining: BTreeMap<String, Vec<Event>>,
}

#[test]
fn random_schedules_keep_one_order_no_duplicates_and_explicit_gaps() {
    let seeds: Vec<u64> = match std::env::var("SIM_SEED") {
        Ok(seed) => vec![seed.parse().expect("SIM_SEED is a number")],
        Err(_) => (1..=2000).collect(),
    };
    let (mut shared, mut closed, mut batched) = (0, 0, 0);
    for seed in seeds.iter().copied() {
        let w = run(seed, 1_000);
        shared += w.shared;
        closed += w.closed;
        batched += w.batched;
    }
    if seeds.len() > 1 {
        assert!(shared > 0 && closed > 0, "sessions with several connections: {shared}, {closed}");
        assert!(batched > 0, "big rooms batched nothing");
    }
}

struct World {
    h: Harness,
    rng: Rng,
    clients: Vec<Client>,
    /// Every (room, seq) seen by anyone, with its sender and text.
    seen: BTreeMap<(String, u64), (String, String)>,
    /// Every (session, id) seen in a message, with where it was accepted.
    accepted: BTreeMap<(String, String), (String, u64)>,
    seed: u64,
    step: usize,
    next_id: u64,
    /// Rooms a client learnt of from a resumed `welcome` and joins next.
    due: Vec<(usize, String)>,
    /// How often a connection joined a session another one was using,
    /// and how often that closed the oldest.
    shared: usize,
    closed: usize,
    /// Rooms of more than two members are big (member pages, batched
    /// presence and typing) in this schedule.
    big: bool,
    /// Batches received.
    batched: usize,
}

fn run(seed: u64, steps: usize) -> World {
    let mut config = ChatConfig {
        messages_per_sec: 1_000,
        messages_burst: 1_000,
        history_per_room: 20,
        join_history: 5,
        resume_max: 1_000,
        session_grace: Duration::from_secs(10),
        // A third connection of one session closes the oldest.
        max_connections_per_session: 2,
        ..ChatConfig::default()
    };
    // Half the schedules run short of memory and rooms: windows are dropped
    // and read back, idle rooms forgotten and reloaded, all the time.
    let pressed = seed % 2 == 1;
    if pressed {
        config.history_memory_max = 2_000;
        config.max_rooms = 3;
    }
    // A third of them count a room of three as big.
    let big = seed % 3 == 2;
    if big {
        config.member_page_max = 2;
        config.presence_interval = PRESENCE_INTERVAL;
    }
    let mut w = World {
        h: Harness::with_config(config),
        rng: Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1),
        clients: Vec::new(),
        seen: BTreeMap::new(),
        accepted: BTreeMap::new(),
        seed,
        step: 0,
        next_id: 0,
        due: Vec::new(),
        shared: 0,
        closed: 0,
        big,
        batched: 0,
    };
    // A quarter answer storage's loads late, so commands wait for rooms
    // while others go on.
    let late_loads = seed % 4 == 3;
    w.h.auto_load = !late_loads;
    for step in 0..steps {
        w.step = step;
        if late_loads && w.rng.below(2) == 0 {
            w.h.answer_loads();
            w.deliver();
        }
        w.act();
        if w.h.crashed {
            w.restart();
        } else {
            w.deliver();
        }
        w.check_nicks_unique();
    }
    w.check_stored();
    assert!(!w.seen.is_empty(), "seed {seed} exercised nothing");
    w
}

impl World {
    fn at(&self) -> String {
        format!("seed {} step {}", self.seed, self.step)
    }

    fn act(&mut self) {
        let online: Vec<usize> =
            (0..self.clients.len()).filter(|&c| self.clients[c].member.is_some()).collect();
        let offline: Vec<usize> =
            (0..self.clients.len()).filter(|&c| self.clients[c].member.is_none()).collect();
        let roll = self.rng.below(100);
        if roll < 6 && self.clients.len() < 10 {
            let m = self.h.connect();
            let nick =
                (self.rng.below(4) != 0).then(|| NICKS[self.rng.below(NICKS.len())].to_owned());
            self.h.send(m, Command::Hello { nick, session: None, identity: None });
            self.clients.push(Client { member: Some(m), ..Client::default() });
            return;
        }
        let tokens: Vec<String> = self.clients.iter().filter_map(|c| c.token.clone()).collect();
        if roll < 9 && self.clients.len() < 10 && !tokens.is_empty() {
            // Another tab or device of a session: it learns the rooms from
            // `welcome`.
            let token = tokens[self.rng.below(tokens.len())].clone();
            let m = self.h.connect();
            self.h.send(m, Command::Hello { nick: None, session: Some(token), identity: None });
            self.clients.push(Client { member: Some(m), ..Client::default() });
            return;
        }
        if roll < 14 && !offline.is_empty() {
            let c = offline[self.rng.below(offline.len())];
            self.reconnect(c);
            return;
        }
        if online.is_empty() {
            self.h.advance(Duration::from_millis(self.rng.below(5_000) as u64));
            return;
        }
        let c = online[self.rng.below(online.len())];
        let Some(m) = self.clients[c].member else { return };
        let room = ROOMS[self.rng.below(ROOMS.len())].to_owned();
        match roll {
            14..=29 => self.h.send_with_id(m, Some("join"), Command::Join { room, after: None }),
            30..=35 => self.h.send_with_id(m, Some("leave"), Command::Leave { room }),
            36..=69 => {
                self.next_id += 1;
                let id = format!("i{}", self.next_id);
                self.clients[c].sent.push((room.clone(), id.clone()));
                let text = format!("{id} from {c}");
                self.h.send_with_id(
                    m,
                    Some(&id),
                    Command::Say { room, text, action: false, attachment: None },
                );
            }
            70..=76 if !self.clients[c].sent.is_empty() => {
                let pick = self.rng.below(self.clients[c].sent.len());
                let (room, id) = self.clients[c].sent[pick].clone();
                let text = format!("{id} retried by {c}");
                self.h.send_with_id(
                    m,
                    Some(&id),
                    Command::Say { room, text, action: false, attachment: None },
                );
            }
            77..=80 => {
                let nick = NICKS[self.rng.below(NICKS.len())].to_owned();
                self.h.send(m, Command::Nick { nick });
            }
            81..=83 => self.h.send(m, Command::Typing { room }),
            84..=89 => {
                self.h.disconnect(m);
                self.clients[c].member = None;
            }
            // The server dies between two commands...
            90 => self.restart(),
            // ...or right after storing a message, before anyone (its
            // sender included) is told.
            91 => {
                self.h.crash_on_persist = true;
                self.next_id += 1;
                let id = format!("i{}", self.next_id);
                self.clients[c].sent.push((room.clone(), id.clone()));
                let text = format!("{id} from {c}");
                self.h.send_with_id(
                    m,
                    Some(&id),
                    Command::Say { room, text, action: false, attachment: None },
                );
                self.h.crash_on_persist = false;
            }
            _ => self.h.advance(Duration::from_millis(self.rng.below(15_000) as u64)),
        }
    }

    /// The server restarts from its store: every client is offline.
    fn restart(&mut self) {
        self.check_stored();
        let h = std::mem::replace(&mut self.h, Harness::new());
        let auto_load = h.auto_load;
        self.h = h.restarted();
        self.h.auto_load = auto_load;
        for client in &mut self.clients {
            client.member = None;
        }
    }

    /// No two sessions with a connection hold nicks equal but for case.
    fn check_nicks_unique(&self) {
        let mut holders: BTreeMap<String, BTreeSet<&str>> = BTreeMap::new();
        for m in self.clients.iter().filter_map(|client| client.member) {
            if let (Some(nick), Some(token)) = (self.h.chat.nick(m), self.h.chat.session(m)) {
                holders.entry(nick.folded().to_owned()).or_default().insert(token.as_str());
            }
        }
        for (nick, sessions) in holders {
            assert_eq!(
                sessions.len(),
                1,
                "{}: {nick} held by several sessions: {sessions:?}",
                self.at()
            );
        }
    }

    /// Every acknowledged message is in the store, where it was acknowledged.
    fn check_stored(&self) {
        let stored: BTreeMap<(String, u64), Option<String>> = self
            .h
            .stored
            .iter()
            .filter_map(|r| match r {
                chat_core::Record::Message(m) => {
                    Some(((m.room.to_string(), m.seq), m.id.as_deref().map(str::to_owned)))
                }
                _ => None,
            })
            .collect();
        for (c, client) in self.clients.iter().enumerate() {
            for (id, place) in &client.acked {
                let at = format!("{} client {c}", self.at());
                assert_eq!(
                    stored.get(place),
                    Some(&Some(id.clone())),
                    "{at}: acknowledged {id} is not stored"
                );
            }
        }
    }

    /// A client comes back: resumes its session and every room from where
    /// it was.
    fn reconnect(&mut self, c: usize) {
        let m = self.h.connect();
        let client = &mut self.clients[c];
        client.member = Some(m);
        let token = client.token.clone();
        let nick = client.nick.clone();
        self.h.send(m, Command::Hello { nick, session: token, identity: None });
        let rooms: Vec<(String, u64)> =
            self.clients[c].next_seq.iter().map(|(r, n)| (r.clone(), n - 1)).collect();
        self.clients[c].rejoining =
            rooms.iter().map(|(room, _)| (room.clone(), Vec::new())).collect();
        for (room, after) in rooms {
            let id = format!("rejoin:{room}");
            self.h.send_with_id(m, Some(&id), Command::Join { room, after: Some(after) });
        }
    }

    fn deliver(&mut self) {
        for c in 0..self.clients.len() {
            let Some(m) = self.clients[c].member else { continue };
            for event in self.h.take(m) {
                self.check(c, &event);
            }
            if self.h.disconnected.contains(&m) {
                self.clients[c].member = None;
                self.closed += 1;
            }
        }
        for (c, room) in std::mem::take(&mut self.due) {
            if let Some(m) = self.clients[c].member {
                let id = format!("rejoin:{room}");
                self.h.send_with_id(m, Some(&id), Command::Join { room, after: None });
            }
        }
    }

    fn check(&mut self, c: usize, event: &Event) {
        // Held until the room's re-join is answered.
        if let Event::Message(m) = event
            && let Some(held) = self.clients[c].rejoining.get_mut(m.room.as_str())
        {
            held.push(event.clone());
            return;
        }
        let rejoining = &mut self.clients[c].rejoining;
        let rejoined = match event {
            // Presence and typing of a room not caught up with yet: past.
            Event::Presence { room, .. }
            | Event::Typing { room, .. }
            | Event::PresenceBatch { room, .. }
            | Event::TypingBatch { room, .. }
                if rejoining.contains_key(room.as_str()) =>
            {
                return;
            }
            // Another connection of the session joined a room this one
            // is re-joining: its own answer is on its way.
            Event::Joined { id: None, room, .. } if rejoining.contains_key(room.as_str()) => {
                return;
            }
            // ...or left it: so has this one.
            Event::Left { id: None, room } => {
                rejoining.remove(room.as_str());
                self.clients[c].next_seq.remove(room.as_str());
                return;
            }
            Event::Joined { room, .. } => rejoining.remove(room.as_str()),
            Event::Error { id: Some(id), .. } if id.starts_with("rejoin:") => {
                self.clients[c].rejoining.remove(&id["rejoin:".len()..])
            }
            _ => None,
        };
        self.check_now(c, event);
        for held in rejoined.unwrap_or_default() {
            // What the `joined` carried already is not new.
            let Event::Message(m) = &held else { continue };
            if self.clients[c].next_seq.get(m.room.as_str()).is_some_and(|&next| m.seq < next) {
                continue;
            }
            self.check_now(c, &held);
        }
    }

    fn check_now(&mut self, c: usize, event: &Event) {
        let at = format!("{} client {c}", self.at());
        let client = &mut self.clients[c];
        match event {
            Event::Welcome { nick, session, resumed, rooms, .. } => {
                let member = client.member;
                let others = self.clients.iter().filter(|other| {
                    other.member.is_some_and(|m| Some(m) != member)
                        && other.token.as_deref() == Some(session.as_str())
                });
                if others.count() > 0 {
                    self.shared += 1;
                }
                let client = &mut self.clients[c];
                if *resumed {
                    assert!(
                        client.token.as_deref().is_none_or(|own| own == session.as_str()),
                        "{at}: resumed its own session"
                    );
                }
                // Rooms another connection of the session joined.
                for room in rooms {
                    let room = room.as_str();
                    if !client.next_seq.contains_key(room) && !client.rejoining.contains_key(room) {
                        client.rejoining.insert(room.to_owned(), Vec::new());
                        self.due.push((c, room.to_owned()));
                    }
                }
                client.token = Some(session.as_str().to_owned());
                client.nick = Some(nick.to_string());
            }
            Event::NickChanged { nick, .. } => client.nick = Some(nick.to_string()),
            Event::Joined { room, history, last_seq, resume, members, member_count, .. } => {
                let own = client.nick.clone().unwrap_or_default();
                // All of them, or in a big room the first page.
                let page = if self.big { 2 } else { usize::MAX };
                assert!(members.len() <= page && members.len() <= *member_count, "{at}: a page");
                if *member_count <= page {
                    assert!(members.iter().any(|n| n.as_str() == own), "{at}: joiner listed");
                }
                let folded: Vec<&str> = members.iter().map(|n| n.folded()).collect();
                assert!(folded.windows(2).all(|w| w[0] < w[1]), "{at}: in nick order: {folded:?}");
                let seqs: Vec<u64> = history.iter().map(|m| m.seq).collect();
                match (client.next_seq.get(room.as_str()).copied(), resume) {
                    // Everything missed, in order; it may start earlier
                    // than `next` when the client saw a message since it
                    // asked (a retry answered with the original).
                    (Some(next), Resume::Resumed) => {
                        let missed: Vec<u64> =
                            seqs.iter().copied().filter(|&s| s >= next).collect();
                        let expected: Vec<u64> = (next..=*last_seq).collect();
                        assert_eq!(missed, expected, "{at}: resumed with everything missed");
                        let contiguous = seqs.windows(2).all(|w| w[1] == w[0] + 1);
                        assert!(contiguous, "{at}: in order, without holes: {seqs:?}");
                    }
                    (Some(next), Resume::Gap { from, to }) => {
                        assert_eq!(*from, next, "{at}: the gap starts where the client was");
                        let expected: Vec<u64> = (to + 1..=*last_seq).collect();
                        assert_eq!(seqs, expected, "{at}: everything after the gap");
                    }
                    // A plain re-join of a room the client is in: it is
                    // up to date, since there is no restart here.
                    (Some(next), Resume::Fresh) => {
                        assert_eq!(last_seq + 1, next, "{at}: re-join agrees")
                    }
                    (None, _) => {
                        let first = last_seq + 1 - seqs.len() as u64;
                        assert_eq!(
                            seqs,
                            (first..=*last_seq).collect::<Vec<_>>(),
                            "{at}: newest, in order"
                        );
                    }
                }
                client.next_seq.insert(room.to_string(), last_seq + 1);
                for message in history {
                    let (room, seq, from, text) = (
                        room.to_string(),
                        message.seq,
                        message.from.to_string(),
                        message.text.to_string(),
                    );
                    agree(&at, &mut self.seen, room, seq, from, text);
                }
            }
            Event::Left { room, .. } => {
                assert!(
                    client.next_seq.remove(room.as_str()).is_some(),
                    "{at}: left a joined room"
                );
            }
            Event::Message(message) => {
                let room = message.room.to_string();
                let own_id = message.sender.as_ref().map(|s| s.as_str()) == client.token.as_deref()
                    && message
                        .id
                        .as_ref()
                        .is_some_and(|id| client.sent.iter().any(|(_, sent)| **sent == **id));
                match client.next_seq.get_mut(&room) {
                    Some(next) if message.seq == *next => *next += 1,
                    // Only a sender's retry is answered with an old message,
                    // even from a room it has left since.
                    _ if own_id => {}
                    Some(next) => panic!("{at}: seq {} where {next} was due", message.seq),
                    None => panic!("{at}: message from unjoined room"),
                }
                if let (Some(id), Some(sender)) = (&message.id, &message.sender) {
                    let key = (sender.as_str().to_owned(), id.to_string());
                    let place = (room.clone(), message.seq);
                    let first = self.accepted.entry(key).or_insert(place.clone());
                    assert_eq!(*first, place, "{at}: one (session, id) accepted twice");
                    if client.token.as_deref() == Some(sender.as_str()) {
                        let acked = client.acked.entry(id.to_string()).or_insert(place.clone());
                        assert_eq!(*acked, place, "{at}: a retry answered with another message");
                    }
                }
                let (seq, from, text) =
                    (message.seq, message.from.to_string(), message.text.to_string());
                agree(&at, &mut self.seen, room, seq, from, text);
            }
            Event::Presence { room, change } => {
                assert!(
                    client.next_seq.contains_key(room.as_str()),
                    "{at}: presence of unjoined room"
                );
                let own = client.nick.clone().unwrap_or_default();
                let about = match change {
                    Presence::Joined(n)
                    | Presence::Left(n)
                    | Presence::Away(n)
                    | Presence::Back(n) => n.to_string(),
                    Presence::Renamed { new, .. } => new.to_string(),
                };
                assert_ne!(about, own, "{at}: presence is for the others");
            }
            Event::Typing { room, .. } => {
                assert!(
                    client.next_seq.contains_key(room.as_str()),
                    "{at}: typing of unjoined room"
                );
            }
            // Only in big rooms, at most one of each kind per interval.
            Event::PresenceBatch { room, changes, members, .. } => {
                assert!(self.big, "{at}: a batch in a schedule without big rooms");
                assert!(changes.len() <= PRESENCE_BATCH_MAX && *members > 0, "{at}: {event:?}");
                self.batch(c, room.as_str(), "presence");
            }
            Event::TypingBatch { room, nicks, .. } => {
                assert!(self.big, "{at}: a batch in a schedule without big rooms");
                assert!(!nicks.is_empty() && nicks.len() <= TYPING_BATCH_MAX, "{at}: {event:?}");
                self.batch(c, room.as_str(), "typing");
            }
            // A room that could not be joined again (the room limit, with
            // the session gone): the client is not in it.
            Event::Error { id: Some(id), .. } if id.starts_with("rejoin:") => {
                client.next_seq.remove(&id["rejoin:".len()..]);
            }
            Event::Error { .. } | Event::Direct { .. } => {}
            other => panic!("{at}: unexpected {other:?}"),
        }
    }
}

impl World {
    /// Client `c` got a batch of `kind` for `room`: a room it is in, and
    /// at least an interval after its last one.
    fn batch(&mut self, c: usize, room: &str, kind: &'static str) {
        let at = format!("{} client {c}", self.at());
        let now = self.h.now;
        let client = &mut self.clients[c];
        assert!(client.next_seq.contains_key(room), "{at}: a batch of an unjoined room");
        if let Some(last) = client.batches.insert((room.to_owned(), kind), now) {
            let since = now.millis_since(last);
            let interval = PRESENCE_INTERVAL.as_millis() as u64;
            assert!(since >= interval, "{at}: {kind} batches {since} ms apart in {room}");
        }
        self.batched += 1;
    }
}

fn agree(
    at: &str,
    seen: &mut BTreeMap<(String, u64), (String, String)>,
    room: String,
    seq: u64,
    from: String,
    text: String,
) {
    let entry = seen.entry((room.clone(), seq)).or_insert((from.clone(), text.clone()));
    assert_eq!(entry, &(from, text), "{at}: {room}#{seq} differs between members");
}
