//! Several cores serving the same rooms (`Sequencing::Shared`), through an
//! in-memory stand-in for the engine they share: each room's messages are
//! numbered once, by the engine, and every core gets them back in order;
//! a nick is held by one session across all cores.
//! (Redis plays the engine in the server: `server/tests/it/cluster.rs`.)

use std::collections::BTreeMap;
use std::sync::Arc;

use chat_core::{
    Chat, ChatConfig, ClaimAnswer, Command, CommandError, Conversation, Departure, Direct, Event,
    Found, Holder, MemberId, Message, MessageKind, Nick, Output, Peer, Presence, RemoteMember,
    RoomHistory, RoomName, Sequencing, SessionToken, Shared, Source, Timestamp,
};

/// The shared engine: every room's log, and the ids appended.
#[derive(Default)]
struct Engine {
    logs: BTreeMap<RoomName, Vec<Message>>,
    ids: BTreeMap<(SessionToken, Arc<str>), (RoomName, u64)>,
    /// Appends held back, to answer later (in flight): in order per core,
    /// as one connection to Redis runs a node's scripts in order.
    holding: bool,
    held: BTreeMap<usize, std::collections::VecDeque<Held>>,
    /// Retries answered with their original.
    duplicates: usize,
    /// Folded nick to the session holding it.
    nicks: BTreeMap<String, SessionToken>,
    /// Folded nick to the core that claimed it last for its session: only
    /// that core's release frees it (a session may have moved on).
    holders: BTreeMap<String, usize>,
    /// Claims held back (in flight), answered in order per core.
    holding_claims: bool,
    held_claims: BTreeMap<usize, std::collections::VecDeque<(Nick, SessionToken)>>,
    /// While set, claims are answered `Unavailable` (Redis down).
    down: bool,
    /// Nick claims granted and refused.
    granted: usize,
    taken: usize,
    /// Who is in each room, by key (the token here): its core, nick and
    /// whether it is away.
    members: BTreeMap<RoomName, BTreeMap<String, (usize, Nick, bool)>>,
    /// Each session's core and nick, as the cores' records say.
    sessions: BTreeMap<SessionToken, (usize, Nick)>,
    /// Sessions that moved between cores.
    moves: usize,
    /// Each room's topic.
    topics: BTreeMap<RoomName, Option<Arc<str>>>,
    /// Each room's document list.
    docs: BTreeMap<RoomName, BTreeMap<RoomName, chat_core::DocEntry>>,
    /// Every `Output::DropDoc`: core, room, document, content.
    dropped_docs: Vec<(usize, RoomName, RoomName, bool)>,
    /// The cores following each party's conversations.
    followers: BTreeMap<Arc<str>, std::collections::BTreeSet<usize>>,
    /// Each party's conversations, as listed.
    index: BTreeMap<Arc<str>, BTreeMap<RoomName, Conversation>>,
    /// Direct messages their recipients got (the simulation counts).
    directs_received: usize,
    /// Each room's log keeps only what is after this `seq` (trimmed).
    trimmed: BTreeMap<RoomName, u64>,
}

/// An append held back: for a connection, a message (with its
/// conversation's nicks if it is a direct one).
type Held = (MemberId, Message, Option<[Nick; 2]>);

struct Cluster {
    now: Timestamp,
    cores: Vec<Chat>,
    inboxes: BTreeMap<(usize, MemberId), Vec<Event>>,
    engine: Engine,
    next: u64,
}

impl Cluster {
    fn new(cores: usize) -> Self {
        let config = ChatConfig { sequencing: Sequencing::Shared, ..ChatConfig::default() };
        Self {
            now: Timestamp::from_unix_millis(1_700_000_000_000),
            cores: (0..cores).map(|_| Chat::new(config.clone())).collect(),
            inboxes: BTreeMap::new(),
            engine: Engine::default(),
            next: 0,
        }
    }

    /// A connection to core `core` that said hello as `nick` and joined
    /// `room`.
    fn member(&mut self, core: usize, nick: &str, room: &str) -> MemberId {
        self.next += 1;
        let token = SessionToken::parse(&format!("token-{core}-{}", self.next)).unwrap();
        let member = self.cores[core].handle_connect(self.now, token, Source::new(self.next));
        let hello = Command::Hello { nick: Some(nick.to_owned()), session: None, identity: None };
        self.send(core, member, None, hello);
        self.send(core, member, None, Command::Join { room: room.to_owned(), after: None });
        member
    }

    fn send(&mut self, core: usize, member: MemberId, id: Option<&str>, command: Command) {
        self.cores[core].handle_command(self.now, member, id, command);
        self.drain();
    }

    fn say(&mut self, core: usize, member: MemberId, id: &str, text: &str) {
        let say = Command::Say {
            room: "lobby".into(),
            text: text.into(),
            action: false,
            attachment: None,
        };
        self.send(core, member, Some(id), say);
    }

    /// Carries out every core's outputs until none is left.
    fn drain(&mut self) {
        loop {
            let mut idle = true;
            for core in 0..self.cores.len() {
                while let Some(output) = self.cores[core].poll_output() {
                    idle = false;
                    self.carry_out(core, output);
                }
            }
            if idle {
                return;
            }
        }
    }

    fn carry_out(&mut self, core: usize, output: Output) {
        match output {
            Output::Deliver { to, event } => {
                for member in to.iter() {
                    self.inboxes.entry((core, *member)).or_default().push((*event).clone());
                }
            }
            Output::Persist(record) => match record {
                chat_core::Record::Message(_) => {
                    panic!("a core that does not number its messages does not store them")
                }
                // Where each session lives, as its cores say.
                chat_core::Record::Session { token, nick } => {
                    self.engine.sessions.insert(token, (core, nick));
                }
                chat_core::Record::SessionEnded(token)
                    if self.engine.sessions.get(&token).is_some_and(|(on, _)| *on == core) =>
                {
                    self.engine.sessions.remove(&token);
                }
                _ => {}
            },
            Output::Load(room) => {
                let remote: Vec<RemoteMember> = self
                    .engine
                    .members
                    .get(&room)
                    .into_iter()
                    .flatten()
                    .filter(|(_, (on, _, _))| *on != core)
                    .map(|(key, (_, nick, away))| RemoteMember {
                        key: Arc::from(key.as_str()),
                        nick: nick.clone(),
                        away: *away,
                    })
                    .collect();
                let log = self.engine.logs.get(&room);
                let topic = self.engine.topics.get(&room).cloned().flatten();
                let docs: Vec<_> = self
                    .engine
                    .docs
                    .get(&room)
                    .into_iter()
                    .flatten()
                    .map(|(_, e)| e.clone())
                    .collect();
                let trimmed = self.engine.trimmed.get(&room).copied().unwrap_or(0);
                let kept = log.into_iter().flatten().filter(|m| m.seq > trimmed).cloned();
                let known = log.is_some() || !remote.is_empty() || !docs.is_empty();
                let stored = known.then(|| RoomHistory {
                    last_seq: log.map_or(0, |log| log.len() as u64),
                    messages: kept.collect(),
                    topic,
                    docs,
                    remote,
                });
                self.cores[core].handle_loaded(self.now, &room, stored);
            }
            Output::Share { room, token, change } => {
                let key = token.as_str().to_owned();
                let members = self.engine.members.entry(room.clone()).or_default();
                match &change {
                    Shared::Presence(Presence::Joined(nick)) => {
                        members.insert(key.clone(), (core, nick.clone(), false));
                    }
                    Shared::Presence(Presence::Left(_)) => {
                        members.remove(&key);
                    }
                    Shared::Presence(Presence::Away(_) | Presence::Back(_)) => {
                        if let Some(member) = members.get_mut(&key) {
                            member.2 = matches!(change, Shared::Presence(Presence::Away(_)));
                        }
                    }
                    Shared::Presence(Presence::Renamed { new, .. }) => {
                        if let Some(member) = members.get_mut(&key) {
                            member.1 = new.clone();
                        }
                    }
                    Shared::Typing(_) => {}
                    Shared::Topic { topic, .. } => {
                        self.engine.topics.insert(room.clone(), topic.clone());
                    }
                    Shared::Doc { action, doc, .. } => {
                        let docs = self.engine.docs.entry(room.clone()).or_default();
                        match action {
                            chat_core::DocAction::Deleted => docs.remove(&doc.name),
                            _ => docs.insert(doc.name.clone(), doc.clone()),
                        };
                    }
                }
                for other in (0..self.cores.len()).filter(|&c| c != core) {
                    self.cores[other].handle_remote(self.now, &room, &key, change.clone());
                }
            }
            Output::Claim { nick, token } => {
                if self.engine.holding_claims {
                    self.engine.held_claims.entry(core).or_default().push_back((nick, token));
                } else {
                    self.answer_claim(core, &nick, token);
                }
            }
            Output::Release { nick, token } => {
                let folded = nick.folded().to_owned();
                let held = self.engine.nicks.get(&folded) == Some(&token)
                    && self.engine.holders.get(&folded) == Some(&core);
                if held {
                    self.engine.nicks.remove(&folded);
                    self.engine.holders.remove(&folded);
                }
            }
            Output::Lookup { member, token } => {
                // Found if it lives elsewhere and still holds its nick,
                // whose claim is this core's from now on.
                let elsewhere = self.engine.sessions.get(&token).filter(|(on, nick)| {
                    *on != core && self.engine.nicks.get(nick.folded()) == Some(&token)
                });
                let found = elsewhere.map(|(on, nick)| {
                    let key = token.as_str();
                    let rooms = self.engine.members.iter();
                    let rooms = rooms.filter(|(_, members)| members.contains_key(key));
                    (
                        *on,
                        Found {
                            nick: nick.clone(),
                            rooms: rooms.map(|(r, _)| r.clone()).collect(),
                            key: Arc::from(key),
                        },
                    )
                });
                match found {
                    Some((on, found)) => {
                        self.engine.moves += 1;
                        // The session and its nick's claim are this core's
                        // from now on.
                        self.engine.holders.insert(found.nick.folded().to_owned(), core);
                        self.engine.sessions.insert(token.clone(), (core, found.nick.clone()));
                        self.cores[on].handle_moved(self.now, &token);
                        // The core it left drops what it said of it, if
                        // still its own, and tells the others it left.
                        let key = token.as_str().to_owned();
                        let mut left = Vec::new();
                        for (room, members) in &mut self.engine.members {
                            if let Some((_, nick, _)) = members.get(&key).filter(|m| m.0 == on) {
                                left.push((room.clone(), nick.clone()));
                                members.remove(&key);
                            }
                        }
                        for (room, nick) in left {
                            let change = Shared::Presence(Presence::Left(nick));
                            for other in (0..self.cores.len()).filter(|&c| c != on) {
                                self.cores[other].handle_remote(
                                    self.now,
                                    &room,
                                    &key,
                                    change.clone(),
                                );
                            }
                        }
                        self.cores[core].handle_found(self.now, member, Some(found));
                    }
                    None => self.cores[core].handle_found(self.now, member, None),
                }
            }
            Output::Append { member, message } => {
                assert_eq!(message.seq, 0, "numbered by the engine, not the core");
                if self.engine.holding {
                    let queue = self.engine.held.entry(core).or_default();
                    queue.push_back((member, message, None));
                } else {
                    self.append(core, member, message);
                }
            }
            Output::AppendDirect { member, direct } => {
                assert_eq!(direct.message.seq, 0, "numbered by the engine, not the core");
                if self.engine.holding {
                    let queue = self.engine.held.entry(core).or_default();
                    queue.push_back((member, direct.message, Some(direct.nicks)));
                } else {
                    self.append_direct(core, member, direct);
                }
            }
            Output::Conversations { party, token: _ } => {
                self.engine.followers.entry(Arc::clone(&party)).or_default().insert(core);
                let listed = self.engine.index.get(&party);
                let listed = listed.map(|listed| listed.values().cloned().collect());
                self.cores[core].handle_conversations(self.now, &party, listed);
            }
            Output::Whois { nick } => {
                // The key of the session holding it (its token here).
                let holder = match self.engine.nicks.get(nick.folded()) {
                    _ if self.engine.down => Holder::Unavailable,
                    Some(token) => {
                        let held = self.engine.sessions.get(token).map(|(_, nick)| nick.clone());
                        Holder::Elsewhere(Arc::from(token.as_str()), held.unwrap_or(nick.clone()))
                    }
                    None => Holder::Nobody,
                };
                self.cores[core].handle_whois(self.now, &nick, holder);
            }
            // Nothing to stop following: every core hears every room.
            Output::Forget(_) | Output::Disconnect { .. } => {}
            Output::DropDoc { room, doc, content } => {
                self.engine.dropped_docs.push((core, room, doc, content));
            }
            // No client here asks for versions.
            Output::ListVersions { .. } | Output::RestoreDoc { .. } => {}
        }
    }

    /// The engine numbers a direct message once per (sender, id), lists
    /// its conversation for both parties, and hands it to the cores
    /// following either party, each once.
    fn append_direct(&mut self, core: usize, member: MemberId, direct: Direct) {
        let Direct { message, nicks } = direct;
        let Some(message) = self.number(core, member, message) else {
            return;
        };
        let name = message.room.clone();
        let inside = name.as_str().trim_start_matches('~');
        let (first, second) = inside.split_once(' ').unwrap();
        let mut cores: std::collections::BTreeSet<usize> = std::collections::BTreeSet::new();
        for party in [first, second] {
            let listed = Conversation {
                name: name.clone(),
                nicks: nicks.clone(),
                last_seq: message.seq,
                last_ts: message.ts,
            };
            self.engine.index.entry(party.into()).or_default().insert(name.clone(), listed);
            cores.extend(self.engine.followers.get(party).into_iter().flatten().copied());
        }
        for core in cores {
            let chat: &mut Chat = &mut self.cores[core];
            chat.handle_appended(self.now, message.clone());
        }
    }

    /// The engine numbers `message` once per (sender, id), and hands it to
    /// every core in order.
    fn append(&mut self, core: usize, member: MemberId, message: Message) {
        let Some(message) = self.number(core, member, message) else {
            return;
        };
        for chat in &mut self.cores {
            chat.handle_appended(self.now, message.clone());
        }
    }

    /// `message` numbered once per (sender, id) in its log; a retry is
    /// answered with the original to `member` of `core` instead.
    fn number(&mut self, core: usize, member: MemberId, mut message: Message) -> Option<Message> {
        let key = message.sender.clone().zip(message.id.clone());
        if let Some(&(ref room, seq)) = key.as_ref().and_then(|key| self.engine.ids.get(key)) {
            let original = self.engine.logs[room][seq as usize - 1].clone();
            self.engine.duplicates += 1;
            self.cores[core].handle_duplicate(self.now, member, original);
            return None;
        }
        let log = self.engine.logs.entry(message.room.clone()).or_default();
        message.seq = log.len() as u64 + 1;
        log.push(message.clone());
        if let Some(key) = key {
            self.engine.ids.insert(key, (message.room.clone(), message.seq));
        }
        Some(message)
    }

    /// The engine grants `nick` to `token` if no other session holds it.
    fn answer_claim(&mut self, core: usize, nick: &Nick, token: SessionToken) {
        let answer = if self.engine.down {
            ClaimAnswer::Unavailable
        } else {
            let holder = self.engine.nicks.entry(nick.folded().to_owned()).or_insert(token.clone());
            if *holder == token { ClaimAnswer::Granted } else { ClaimAnswer::Taken }
        };
        match answer {
            ClaimAnswer::Granted => {
                self.engine.granted += 1;
                self.engine.holders.insert(nick.folded().to_owned(), core);
            }
            ClaimAnswer::Taken => self.engine.taken += 1,
            ClaimAnswer::Unavailable => {}
        }
        self.cores[core].handle_claimed(self.now, nick, answer);
    }

    /// The engine gets to the oldest held claim of `core`.
    fn answer_one_claim(&mut self, core: usize) {
        let next = self.engine.held_claims.get_mut(&core).and_then(|q| q.pop_front());
        if let Some((nick, token)) = next {
            self.answer_claim(core, &nick, token);
            self.drain();
        }
    }

    fn release(&mut self) {
        self.engine.holding_claims = false;
        for (core, queue) in std::mem::take(&mut self.engine.held_claims) {
            for (nick, token) in queue {
                self.answer_claim(core, &nick, token);
            }
        }
        self.engine.holding = false;
        for (core, queue) in std::mem::take(&mut self.engine.held) {
            for (member, message, nicks) in queue {
                self.append_held(core, member, message, nicks);
            }
        }
        self.drain();
    }

    /// The engine gets to the oldest held append of `core`.
    fn release_one(&mut self, core: usize) {
        let next = self.engine.held.get_mut(&core).and_then(std::collections::VecDeque::pop_front);
        if let Some((member, message, nicks)) = next {
            self.append_held(core, member, message, nicks);
            self.drain();
        }
    }

    /// Appends what was held back: a room's message, or a direct one.
    fn append_held(
        &mut self,
        core: usize,
        member: MemberId,
        message: Message,
        nicks: Option<[Nick; 2]>,
    ) {
        match nicks {
            Some(nicks) => self.append_direct(core, member, Direct { message, nicks }),
            None => self.append(core, member, message),
        }
    }

    /// The room messages `member` of core `core` got: (seq, text).
    fn messages(&mut self, core: usize, member: MemberId) -> Vec<(u64, String)> {
        let inbox = self.inboxes.remove(&(core, member)).unwrap_or_default();
        inbox
            .into_iter()
            .filter_map(|event| match event {
                Event::Message(m) => Some((m.seq, m.text.to_string())),
                _ => None,
            })
            .collect()
    }
}

#[test]
fn cores_sharing_a_room_number_its_messages_once_and_all_see_one_order() {
    let mut cluster = Cluster::new(2);
    let alice = cluster.member(0, "alice", "lobby");
    let bob = cluster.member(1, "bob", "lobby");
    let carol = cluster.member(1, "carol", "lobby");
    cluster.say(0, alice, "a1", "hi");
    cluster.say(1, bob, "b1", "yo");
    cluster.say(0, alice, "a2", "again");
    let expected = vec![(1, "hi".to_owned()), (2, "yo".into()), (3, "again".into())];
    // Everyone, the senders included (their echo comes back numbered).
    assert_eq!(cluster.messages(0, alice), expected);
    assert_eq!(cluster.messages(1, bob), expected);
    assert_eq!(cluster.messages(1, carol), expected);
    assert_eq!(cluster.engine.logs[&RoomName::parse("lobby").unwrap()].len(), 3);
}

#[test]
fn a_retry_while_the_first_is_in_flight_is_numbered_once_and_answered_with_it() {
    let mut cluster = Cluster::new(2);
    let alice = cluster.member(0, "alice", "lobby");
    let bob = cluster.member(1, "bob", "lobby");
    cluster.engine.holding = true;
    cluster.say(0, alice, "m1", "hello");
    // The connection is unsure and sends it again with its id.
    cluster.say(0, alice, "m1", "hello");
    assert!(cluster.messages(0, alice).is_empty(), "nothing before the engine numbers it");
    cluster.release();
    // Once for everyone; the retry is answered with the original.
    assert_eq!(cluster.messages(1, bob), vec![(1, "hello".to_owned())]);
    assert_eq!(cluster.messages(0, alice), vec![(1, "hello".to_owned()), (1, "hello".into())]);
    // Known now to the core: a later retry is answered there at once.
    cluster.say(0, alice, "m1", "hello");
    assert_eq!(cluster.messages(0, alice), vec![(1, "hello".to_owned())]);
    assert_eq!(cluster.engine.logs[&RoomName::parse("lobby").unwrap()].len(), 1);
}

#[test]
fn a_core_that_joins_later_reads_the_room_from_the_engine_and_goes_on_numbering_with_it() {
    let mut cluster = Cluster::new(2);
    let alice = cluster.member(0, "alice", "lobby");
    for n in 1..=3 {
        cluster.say(0, alice, &format!("a{n}"), &format!("m{n}"));
    }
    let dave = cluster.member(1, "dave", "lobby");
    let joined = cluster.inboxes[&(1, dave)]
        .iter()
        .find_map(|event| match event {
            Event::Joined { last_seq, history, .. } => Some((*last_seq, history.len())),
            _ => None,
        })
        .unwrap();
    assert_eq!(joined, (3, 3), "the room as the engine has it");
    cluster.messages(1, dave);
    cluster.say(1, dave, "d1", "late but in order");
    assert_eq!(cluster.messages(0, alice).last(), Some(&(4, "late but in order".to_owned())));
}

#[test]
fn edits_and_deletions_are_numbered_by_the_engine_and_applied_by_every_core() {
    let mut cluster = Cluster::new(2);
    let alice = cluster.member(0, "alice", "lobby");
    let bob = cluster.member(1, "bob", "lobby");
    cluster.say(0, alice, "a1", "tpyo");
    let edit = Command::Edit { room: "lobby".into(), seq: 1, text: "typo".into() };
    cluster.send(0, alice, Some("a2"), edit);
    cluster.send(0, alice, Some("a3"), Command::Delete { room: "lobby".into(), seq: 1 });
    let kinds: Vec<(u64, MessageKind)> = cluster.inboxes[&(1, bob)]
        .iter()
        .filter_map(|event| match event {
            Event::Message(m) => Some((m.seq, m.kind)),
            _ => None,
        })
        .collect();
    assert_eq!(
        kinds,
        [(1, MessageKind::Said), (2, MessageKind::Edit(1)), (3, MessageKind::Delete(1))]
    );
    // Bob's core applied them: its history shows the message deleted.
    cluster.inboxes.clear();
    let history = Command::History { room: "lobby".into(), before: None, limit: None };
    cluster.send(1, bob, None, history);
    let first = cluster.inboxes[&(1, bob)]
        .iter()
        .find_map(|event| match event {
            Event::History { messages, .. } => messages.first().cloned(),
            _ => None,
        })
        .unwrap();
    assert_eq!((first.seq, first.kind), (1, MessageKind::Deleted));
}

/// One simulated client: the core it is on, its connection, its token, the
/// next `seq` it expects in each room it is in, and the ids it sent.
struct Client {
    core: usize,
    member: MemberId,
    token: Option<SessionToken>,
    /// Its nick once welcomed, as renamed since.
    nick: Option<String>,
    /// It quit.
    gone: bool,
    next: BTreeMap<String, u64>,
    sent: Vec<(String, String, String)>,
    /// The `seq` of the last direct message it got, per conversation.
    directs: BTreeMap<String, u64>,
}

const ROOMS: [&str; 3] = ["lobby", "dev", "ops"];

/// Few nicks, so that clients on different cores ask for the same ones.
const NICKS: [&str; 5] = ["ann", "Ann", "bob", "cy", "dee"];

/// A connection to core `core` that said hello (as `nick`, or as a guest).
fn greet(cluster: &mut Cluster, core: usize, nick: Option<&str>) -> MemberId {
    cluster.next += 1;
    let token = SessionToken::parse(&format!("token-{core}-{}", cluster.next)).unwrap();
    greet_as(cluster, core, nick, token)
}

/// The same, with `token` as the connection's proposed token.
fn greet_as(
    cluster: &mut Cluster,
    core: usize,
    nick: Option<&str>,
    token: SessionToken,
) -> MemberId {
    cluster.next += 1;
    let member = cluster.cores[core].handle_connect(cluster.now, token, Source::new(cluster.next));
    let hello = Command::Hello { nick: nick.map(str::to_owned), session: None, identity: None };
    cluster.send(core, member, Some("h"), hello);
    member
}

/// The events `member` of `core` got since the last look.
fn events(cluster: &mut Cluster, core: usize, member: MemberId) -> Vec<Event> {
    cluster.inboxes.remove(&(core, member)).unwrap_or_default()
}

fn welcomed_as(events: &[Event]) -> Option<String> {
    events.iter().find_map(|event| match event {
        Event::Welcome { nick, .. } => Some(nick.to_string()),
        _ => None,
    })
}

fn refused(events: &[Event]) -> Option<&CommandError> {
    events.iter().find_map(|event| match event {
        Event::Error { error, .. } => Some(error),
        _ => None,
    })
}

#[test]
fn a_nick_held_on_one_core_is_taken_on_every_other_until_let_go() {
    let mut cluster = Cluster::new(2);
    let alice = greet(&mut cluster, 0, Some("alice"));
    assert_eq!(welcomed_as(&events(&mut cluster, 0, alice)).as_deref(), Some("alice"));
    // On the other core, in any case.
    let impostor = greet(&mut cluster, 1, Some("ALICE"));
    let got = events(&mut cluster, 1, impostor);
    assert!(matches!(refused(&got), Some(CommandError::NickTaken(_))), "{got:?}");
    // Renaming onto it from the other core is refused too.
    let bob = greet(&mut cluster, 1, Some("bob"));
    events(&mut cluster, 1, bob);
    cluster.send(1, bob, Some("n"), Command::Nick { nick: "alice".into() });
    let got = events(&mut cluster, 1, bob);
    assert!(matches!(refused(&got), Some(CommandError::NickTaken(_))), "{got:?}");
    // Alice renames: her old nick is free everywhere, her new one hers.
    cluster.send(0, alice, Some("n"), Command::Nick { nick: "alicia".into() });
    let got = events(&mut cluster, 0, alice);
    assert!(
        got.iter()
            .any(|e| matches!(e, Event::NickChanged { nick, .. } if nick.as_str() == "alicia"))
    );
    assert!(!cluster.engine.nicks.contains_key(Nick::parse("alice").unwrap().folded()));
    cluster.send(1, bob, Some("n"), Command::Nick { nick: "alice".into() });
    let got = events(&mut cluster, 1, bob);
    assert!(
        got.iter()
            .any(|e| matches!(e, Event::NickChanged { nick, .. } if nick.as_str() == "alice"))
    );
    // A session that quits lets its nick go for everyone.
    cluster.cores[0].handle_disconnect(cluster.now, alice, Departure::Quit);
    cluster.drain();
    let again = greet(&mut cluster, 1, Some("alicia"));
    assert_eq!(welcomed_as(&events(&mut cluster, 1, again)).as_deref(), Some("alicia"));
}

#[test]
fn two_cores_claiming_one_nick_at_once_give_it_to_one_and_commands_wait_their_turn() {
    let mut cluster = Cluster::new(2);
    cluster.engine.holding_claims = true;
    let first = greet(&mut cluster, 0, Some("dana"));
    let second = greet(&mut cluster, 1, Some("Dana"));
    // Sent before the hello is answered: they wait for it, in order.
    let join = Command::Join { room: "lobby".into(), after: None };
    cluster.send(0, first, Some("j"), join.clone());
    cluster.send(1, second, Some("j"), join);
    assert!(events(&mut cluster, 0, first).is_empty(), "nothing before the engine answers");
    // The other core's claim reaches the engine first.
    cluster.answer_one_claim(1);
    let got = events(&mut cluster, 1, second);
    assert_eq!(welcomed_as(&got).as_deref(), Some("Dana"), "{got:?}");
    assert!(got.iter().any(|e| matches!(e, Event::Joined { .. })), "{got:?}");
    cluster.answer_one_claim(0);
    let got = events(&mut cluster, 0, first);
    assert!(matches!(refused(&got), Some(CommandError::NickTaken(_))), "{got:?}");
    assert!(
        got.iter().any(|e| matches!(e, Event::Error { error: CommandError::HelloRequired, .. })),
        "its join waited and then found no session: {got:?}"
    );
    // It may try another nick at once.
    cluster.engine.holding_claims = false;
    cluster.send(
        0,
        first,
        Some("h2"),
        Command::Hello { nick: Some("dana2".into()), session: None, identity: None },
    );
    assert_eq!(welcomed_as(&events(&mut cluster, 0, first)).as_deref(), Some("dana2"));
}

#[test]
fn guests_on_several_cores_get_nicks_no_other_core_holds() {
    let mut cluster = Cluster::new(3);
    // A guest nick some core would pick first is held already: another is
    // tried under the same hello.
    let mut seen = std::collections::BTreeSet::new();
    for n in 0..60 {
        let core = n % 3;
        let member = greet(&mut cluster, core, None);
        let nick = welcomed_as(&events(&mut cluster, core, member)).expect("a guest is welcomed");
        assert!(nick.starts_with("guest-"), "{nick}");
        assert!(seen.insert(nick.clone()), "{nick} given twice");
    }
    assert_eq!(cluster.engine.nicks.len(), 60);
    assert_eq!(cluster.engine.taken, 0);
    // A guest nick a core would pick first is held by another session (as
    // when two nodes' guests collide): another is tried, same hello.
    let token = SessionToken::parse("collides").unwrap();
    let member = greet_as(&mut cluster, 0, None, token.clone());
    let first = welcomed_as(&events(&mut cluster, 0, member)).unwrap();
    cluster.cores[0].handle_disconnect(cluster.now, member, Departure::Quit);
    cluster.drain();
    let folded = Nick::parse(&first).unwrap().folded().to_owned();
    cluster.engine.nicks.insert(folded, SessionToken::parse("squatter").unwrap());
    let member = greet_as(&mut cluster, 1, None, token);
    let second = welcomed_as(&events(&mut cluster, 1, member)).expect("welcomed all the same");
    assert!(second.starts_with("guest-") && second != first, "{first} then {second}");
    assert_eq!(cluster.engine.taken, 1);
}

#[test]
fn an_engine_out_of_reach_refuses_a_hello_for_now_and_a_connection_gone_lets_its_claim_go() {
    let mut cluster = Cluster::new(2);
    cluster.engine.down = true;
    let early = greet(&mut cluster, 0, Some("erin"));
    let got = events(&mut cluster, 0, early);
    assert!(
        matches!(refused(&got), Some(CommandError::SharedUnavailable { retry_after_ms }) if *retry_after_ms > 0),
        "{got:?}"
    );
    assert_eq!(cluster.cores[0].session_count(), 0, "no session without the claim");
    cluster.engine.down = false;
    // Granted after its connection went: given back, so the nick is free.
    cluster.engine.holding_claims = true;
    let gone = greet(&mut cluster, 0, Some("erin"));
    cluster.cores[0].handle_disconnect(cluster.now, gone, Departure::Lost);
    cluster.drain();
    cluster.answer_one_claim(0);
    assert!(cluster.engine.nicks.is_empty(), "{:?}", cluster.engine.nicks);
    cluster.engine.holding_claims = false;
    let erin = greet(&mut cluster, 1, Some("erin"));
    assert_eq!(welcomed_as(&events(&mut cluster, 1, erin)).as_deref(), Some("erin"));
}

#[test]
fn a_session_restored_at_start_claims_its_nick_again_and_ends_if_another_took_it() {
    let mut cluster = Cluster::new(2);
    let frank = greet(&mut cluster, 1, Some("frank"));
    events(&mut cluster, 1, frank);
    let now = cluster.now;
    cluster.cores[0].restore_session(
        now,
        SessionToken::parse("old-1").unwrap(),
        Nick::parse("frank").unwrap(),
    );
    cluster.cores[0].restore_session(
        now,
        SessionToken::parse("old-2").unwrap(),
        Nick::parse("gina").unwrap(),
    );
    cluster.drain();
    assert_eq!(cluster.cores[0].session_count(), 1, "frank's old session ended, gina's kept");
    let gina = Nick::parse("gina").unwrap();
    assert_eq!(
        cluster.engine.nicks.get(gina.folded()),
        Some(&SessionToken::parse("old-2").unwrap())
    );
    let impostor = greet(&mut cluster, 1, Some("gina"));
    let got = events(&mut cluster, 1, impostor);
    assert!(matches!(refused(&got), Some(CommandError::NickTaken(_))), "{got:?}");
}

/// The last event of `kind` (by its wire name) among `events`.
fn presence_of(events: &[Event]) -> Vec<String> {
    events
        .iter()
        .filter_map(|event| match event {
            Event::Presence { change, .. } => Some(format!("{change:?}")),
            Event::Typing { nick, .. } => Some(format!("Typing({nick})")),
            _ => None,
        })
        .collect()
}

#[test]
fn members_on_other_cores_are_listed_counted_and_their_presence_shown() {
    let mut cluster = Cluster::new(2);
    let alice = cluster.member(0, "alice", "lobby");
    events(&mut cluster, 0, alice);
    let bob = cluster.member(1, "bob", "lobby");
    // Bob's core read the room with who is in it elsewhere.
    let got = events(&mut cluster, 1, bob);
    let joined = got.iter().find_map(|e| match e {
        Event::Joined { members, member_count, .. } => Some((members.clone(), *member_count)),
        _ => None,
    });
    let (members, count) = joined.expect("joined");
    let members: Vec<&str> = members.iter().map(Nick::as_str).collect();
    assert_eq!((members, count), (vec!["alice", "bob"], 2));
    // Alice's core shows what bob does, as it would a member of its own.
    cluster.send(1, bob, None, Command::Typing { room: "lobby".into() });
    cluster.cores[1].handle_disconnect(cluster.now, bob, Departure::Lost);
    cluster.drain();
    assert_eq!(
        presence_of(&events(&mut cluster, 0, alice)),
        ["Joined(Nick(\"bob\"))", "Typing(bob)", "Away(Nick(\"bob\"))"]
    );
    let who = Command::Who { room: "lobby".into(), after: None, prefix: None, limit: None };
    cluster.send(0, alice, None, who.clone());
    let got = events(&mut cluster, 0, alice);
    let listed = got.iter().find_map(|e| match e {
        Event::Members { members, away, count, .. } => Some((members.len(), away.clone(), *count)),
        _ => None,
    });
    assert_eq!(listed, Some((2, vec![Nick::parse("bob").unwrap()], 2)), "bob is listed away");
    // Back under another connection, renamed, gone.
    let token = SessionToken::parse(&format!("token-1-{}", 2)).unwrap();
    let again = cluster.cores[1].handle_connect(
        cluster.now,
        SessionToken::parse("fresh").unwrap(),
        Source::new(99),
    );
    let hello =
        Command::Hello { nick: None, session: Some(token.as_str().to_owned()), identity: None };
    cluster.send(1, again, None, hello);
    cluster.send(1, again, None, Command::Nick { nick: "robert".into() });
    cluster.send(1, again, None, Command::Leave { room: "lobby".into() });
    assert_eq!(
        presence_of(&events(&mut cluster, 0, alice)),
        [
            "Back(Nick(\"bob\"))",
            "Renamed { old: Nick(\"bob\"), new: Nick(\"robert\") }",
            "Left(Nick(\"robert\"))"
        ]
    );
    cluster.send(0, alice, None, who);
    let got = events(&mut cluster, 0, alice);
    assert!(got.iter().any(|e| matches!(e, Event::Members { count: 1, .. })), "{got:?}");
}

#[test]
fn a_core_with_nobody_left_in_a_room_forgets_who_is_there_and_reads_it_again() {
    let mut cluster = Cluster::new(2);
    let alice = cluster.member(0, "alice", "lobby");
    cluster.member(1, "bob", "lobby");
    cluster.send(0, alice, None, Command::Leave { room: "lobby".into() });
    assert_eq!(cluster.cores[0].room_count(), 0, "nobody here: the room is forgotten");
    // Meanwhile carol joins elsewhere; alice comes back and sees her.
    cluster.member(1, "carol", "lobby");
    events(&mut cluster, 0, alice);
    cluster.send(0, alice, None, Command::Join { room: "lobby".into(), after: None });
    let got = events(&mut cluster, 0, alice);
    let members = got.iter().find_map(|e| match e {
        Event::Joined { members, .. } => {
            Some(members.iter().map(|n| n.as_str().to_owned()).collect::<Vec<_>>())
        }
        _ => None,
    });
    assert_eq!(members, Some(vec!["alice".to_owned(), "bob".into(), "carol".into()]));
}

#[test]
fn a_roster_from_the_engine_sets_right_what_lost_changes_missed() {
    let mut cluster = Cluster::new(2);
    let alice = cluster.member(0, "alice", "lobby");
    cluster.member(1, "bob", "lobby");
    cluster.member(1, "carol", "lobby");
    events(&mut cluster, 0, alice);
    // As if core 1 died and its members were gone from the engine but
    // carol, now away, and dan, whose join was never heard.
    let lobby = RoomName::parse("lobby").unwrap();
    let key = |n: u64| Arc::from(format!("token-1-{n}").as_str());
    let roster = vec![
        RemoteMember { key: key(3), nick: Nick::parse("carol").unwrap(), away: true },
        RemoteMember { key: Arc::from("dan-key"), nick: Nick::parse("dan").unwrap(), away: false },
    ];
    cluster.cores[0].handle_remote_roster(cluster.now, &lobby, roster.clone());
    cluster.drain();
    assert_eq!(
        presence_of(&events(&mut cluster, 0, alice)),
        ["Left(Nick(\"bob\"))", "Away(Nick(\"carol\"))", "Joined(Nick(\"dan\"))"]
    );
    // The same roster again changes nothing.
    cluster.cores[0].handle_remote_roster(cluster.now, &lobby, roster);
    cluster.drain();
    assert!(presence_of(&events(&mut cluster, 0, alice)).is_empty());
}

#[test]
fn a_session_resumed_on_another_core_moves_there_with_its_token_nick_and_rooms() {
    let mut cluster = Cluster::new(2);
    let bob = cluster.member(0, "bob", "lobby");
    let alice = cluster.member(0, "alice", "lobby");
    events(&mut cluster, 0, bob);
    let token = match events(&mut cluster, 0, alice).first() {
        Some(Event::Welcome { session, .. }) => session.clone(),
        other => panic!("{other:?}"),
    };
    cluster.say(0, alice, "m1", "before");
    cluster.cores[0].handle_disconnect(cluster.now, alice, Departure::Lost);
    cluster.drain();
    events(&mut cluster, 0, bob);
    // Her client comes back through core 1.
    let again = greet_as_resuming(&mut cluster, 1, &token);
    let got = events(&mut cluster, 1, again);
    match got.first() {
        Some(Event::Welcome { nick, session, resumed: true, rooms, .. }) => {
            assert_eq!((nick.as_str(), session), ("alice", &token));
            assert_eq!(rooms, &[RoomName::parse("lobby").unwrap()]);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(cluster.cores[0].session_count(), 1, "only bob's is left on core 0");
    let alice_nick = Nick::parse("alice").unwrap();
    assert_eq!(cluster.engine.nicks.get(alice_nick.folded()), Some(&token), "never released");
    // Her retry of what she sent on core 0 is answered with the original.
    cluster.send(1, again, None, Command::Join { room: "lobby".into(), after: Some(1) });
    cluster.say(1, again, "m1", "before");
    assert_eq!(cluster.engine.duplicates, 1);
    assert_eq!(cluster.engine.logs[&RoomName::parse("lobby").unwrap()].len(), 1);
    // Bob saw her go from core 0 and come back through core 1.
    let seen = presence_of(&events(&mut cluster, 0, bob));
    let kinds: Vec<&str> = seen.iter().map(|s| s.split('(').next().unwrap()).collect();
    assert_eq!(kinds, ["Left", "Joined"], "{seen:?}");
    // A session still connected on the core it leaves is closed there.
    let third = greet_as_resuming(&mut cluster, 0, &token);
    assert!(matches!(
        events(&mut cluster, 0, third).first(),
        Some(Event::Welcome { resumed: true, .. })
    ));
    assert_eq!(cluster.cores[1].session_count(), 0);
}

/// A new connection to `core` resuming the session of `token`.
fn greet_as_resuming(cluster: &mut Cluster, core: usize, token: &SessionToken) -> MemberId {
    cluster.next += 1;
    let proposed = SessionToken::parse(&format!("fresh-{}", cluster.next)).unwrap();
    let member =
        cluster.cores[core].handle_connect(cluster.now, proposed, Source::new(cluster.next));
    let hello =
        Command::Hello { nick: None, session: Some(token.as_str().to_owned()), identity: None };
    cluster.send(core, member, None, hello);
    member
}

#[test]
fn a_room_whose_numbering_starts_again_sends_its_members_back_to_join_it_afresh() {
    let mut cluster = Cluster::new(2);
    let alice = cluster.member(0, "alice", "lobby");
    let bob = cluster.member(1, "bob", "lobby");
    cluster.say(0, alice, "a1", "old");
    events(&mut cluster, 1, bob);
    let lobby = RoomName::parse("lobby").unwrap();
    // The engine lost the room: its next message is seq 1 again.
    cluster.engine.logs.remove(&lobby);
    for core in 0..2 {
        cluster.cores[core].handle_room_reset(cluster.now, &lobby);
    }
    cluster.drain();
    assert_eq!(cluster.cores[0].member_count(), 0, "alice's connection was closed");
    assert_eq!(cluster.cores[1].member_count(), 0, "and bob's");
    let token = SessionToken::parse("token-0-1").unwrap();
    let again = greet_as_resuming(&mut cluster, 0, &token);
    cluster.send(0, again, None, Command::Join { room: "lobby".into(), after: Some(1) });
    let got = events(&mut cluster, 0, again);
    assert!(
        got.iter().any(|e| matches!(
            e,
            Event::Joined { resume: chat_core::Resume::Fresh, last_seq: 0, .. }
        )),
        "{got:?}"
    );
    cluster.say(0, again, "a2", "new");
    assert_eq!(cluster.messages(0, again), vec![(1, "new".to_owned())]);
}

#[test]
fn a_topic_set_on_one_core_is_every_cores_and_comes_with_the_room() {
    let mut cluster = Cluster::new(3);
    let alice = cluster.member(0, "alice", "lobby");
    let bob = cluster.member(1, "bob", "lobby");
    events(&mut cluster, 1, bob);
    cluster.send(
        0,
        alice,
        Some("t"),
        Command::Topic { room: "lobby".into(), topic: "release day".into() },
    );
    let got = events(&mut cluster, 1, bob);
    assert!(
        got.iter().any(|e| matches!(e, Event::Topic { topic: Some(t), by, .. } if &**t == "release day" && by.as_str() == "alice")),
        "{got:?}"
    );
    // Someone joining later on a core nobody was on reads it with the room.
    let carol = cluster.member(2, "carol", "lobby");
    let got = events(&mut cluster, 2, carol);
    assert!(
        got.iter()
            .any(|e| matches!(e, Event::Joined { topic: Some(t), .. } if &**t == "release day")),
        "{got:?}"
    );
}

#[test]
fn a_room_document_list_changed_on_one_core_is_every_cores_and_comes_with_the_room() {
    let mut cluster = Cluster::new(3);
    let alice = cluster.member(0, "alice", "lobby");
    let bob = cluster.member(1, "bob", "lobby");
    events(&mut cluster, 1, bob);
    let create = Command::DocCreate { room: "lobby".into(), title: "Plans".into() };
    cluster.send(0, alice, Some("d"), create);
    let got = events(&mut cluster, 1, bob);
    assert!(
        got.iter().any(|e| matches!(e, Event::Doc { action: chat_core::DocAction::Created, doc, by, id: None, .. }
            if doc.name.as_str() == "plans" && by.as_str() == "alice")),
        "{got:?}"
    );
    // A title is unique across cores: the one on core 1 knows it.
    let taken = Command::DocCreate { room: "lobby".into(), title: "plans".into() };
    cluster.send(1, bob, None, taken);
    assert!(matches!(refused(&events(&mut cluster, 1, bob)), Some(CommandError::BadDocTitle(_))));
    // Someone joining later on a core nobody was on reads the list with
    // the room.
    let carol = cluster.member(2, "carol", "lobby");
    let got = events(&mut cluster, 2, carol);
    assert!(
        got.iter().any(|e| matches!(e, Event::Joined { docs, .. } if docs.len() == 1 && &*docs[0].title == "Plans")),
        "{got:?}"
    );
    // Deleted on core 1: each core closes its editors; only core 1 drops
    // the content.
    cluster.send(1, bob, None, Command::DocDelete { room: "lobby".into(), doc: "plans".into() });
    let mut dropped = cluster.engine.dropped_docs.clone();
    dropped.sort();
    let lobby = RoomName::parse("lobby").unwrap();
    let plans = RoomName::parse("plans").unwrap();
    assert_eq!(
        dropped,
        vec![
            (0, lobby.clone(), plans.clone(), false),
            (1, lobby.clone(), plans.clone(), true),
            (2, lobby, plans, false)
        ]
    );
    let got = events(&mut cluster, 2, carol);
    assert!(
        got.iter().any(|e| matches!(e, Event::Doc { action: chat_core::DocAction::Deleted, .. }))
    );
}

#[test]
fn messages_gone_before_a_core_had_them_are_a_gap_its_members_are_told_when_they_rejoin() {
    let mut cluster = Cluster::new(2);
    let alice = cluster.member(0, "alice", "lobby");
    let bob = cluster.member(1, "bob", "lobby");
    let carol = cluster.member(1, "carol", "dev");
    let token = token_of(&events(&mut cluster, 1, bob));
    cluster.say(0, alice, "a1", "one");
    assert_eq!(cluster.messages(1, bob), vec![(1, "one".to_owned())]);
    // Two messages core 1 never hears of, gone from the engine's log
    // (trimmed) by the time it hears the next.
    let lobby = RoomName::parse("lobby").unwrap();
    let mut lost = cluster.engine.logs[&lobby][0].clone();
    for (seq, text) in [(2, "two"), (3, "three")] {
        lost.seq = seq;
        lost.text = text.into();
        lost.id = None;
        cluster.engine.logs.get_mut(&lobby).unwrap().push(lost.clone());
    }
    cluster.engine.trimmed.insert(lobby.clone(), 3);
    lost.seq = 4;
    lost.text = "four".into();
    cluster.engine.logs.get_mut(&lobby).unwrap().push(lost.clone());
    cluster.cores[1].handle_appended(cluster.now, lost);
    cluster.drain();
    // Bob is sent back at once rather than shown a jump in `seq` no client
    // has to understand; carol, in another room, is not.
    assert!(cluster.messages(1, bob).is_empty(), "nothing delivered past a gap");
    assert_eq!(cluster.cores[1].nick(bob), None, "bob's connection is closed");
    assert!(cluster.cores[1].nick(carol).is_some());
    // His client comes back and joins from where it was: told the gap.
    let again = greet_as_resuming(&mut cluster, 1, &token);
    cluster.send(1, again, Some("j"), Command::Join { room: "lobby".into(), after: Some(1) });
    let joined = events(&mut cluster, 1, again).into_iter().find_map(|e| match e {
        Event::Joined { history, resume, last_seq, .. } => {
            Some((history.iter().map(|m| m.seq).collect::<Vec<_>>(), resume, last_seq))
        }
        _ => None,
    });
    let (seqs, resume, last_seq) = joined.expect("joined");
    assert_eq!((seqs, last_seq), (vec![4], 4));
    assert_eq!(resume, chat_core::Resume::Gap { from: 2, to: 3 });
}

/// The direct messages `member` of `core` got: (seq, from, with, text).
fn directs(
    cluster: &mut Cluster,
    core: usize,
    member: MemberId,
) -> Vec<(u64, String, String, String)> {
    events(cluster, core, member)
        .into_iter()
        .filter_map(|event| match event {
            Event::Direct { seq, from, with, text, .. } => {
                Some((seq, from.to_string(), with.to_string(), text.to_string()))
            }
            _ => None,
        })
        .collect()
}

fn dm(cluster: &mut Cluster, core: usize, member: MemberId, id: &str, to: Peer, text: &str) {
    let dm = Command::Dm { to, text: text.to_owned() };
    cluster.send(core, member, Some(id), dm);
}

/// The conversations `member` of `core` lists: (key, with, last_seq).
fn listed(cluster: &mut Cluster, core: usize, member: MemberId) -> Vec<(String, String, u64)> {
    events(cluster, core, member);
    cluster.send(core, member, None, Command::Conversations);
    events(cluster, core, member)
        .into_iter()
        .find_map(|event| match event {
            Event::Conversations { list, .. } => Some(list),
            _ => None,
        })
        .unwrap()
        .into_iter()
        .map(|c| (c.key, c.with.to_string(), c.last_seq))
        .collect()
}

fn token_of(events: &[Event]) -> SessionToken {
    events
        .iter()
        .find_map(|event| match event {
            Event::Welcome { session, .. } => Some(session.clone()),
            _ => None,
        })
        .unwrap()
}

#[test]
fn a_direct_message_reaches_a_session_on_another_core_and_both_list_the_conversation() {
    let mut cluster = Cluster::new(2);
    let alice = greet(&mut cluster, 0, Some("alice"));
    let bob = greet(&mut cluster, 1, Some("bob"));
    events(&mut cluster, 0, alice);
    events(&mut cluster, 1, bob);
    // No room in common: core 0 asks the engine who holds "bob".
    dm(&mut cluster, 0, alice, "d1", Peer::Nick("Bob".into()), "psst");
    let mine = vec![(1, "alice".to_owned(), "bob".to_owned(), "psst".to_owned())];
    assert_eq!(directs(&mut cluster, 0, alice), mine, "her echo, numbered");
    let theirs = vec![(1, "alice".to_owned(), "alice".to_owned(), "psst".to_owned())];
    assert_eq!(directs(&mut cluster, 1, bob), theirs);
    // Both list it, each with the other; bob answers by its key.
    let on_bob = listed(&mut cluster, 1, bob);
    assert_eq!(on_bob.len(), 1, "{on_bob:?}");
    assert_eq!((on_bob[0].1.as_str(), on_bob[0].2), ("alice", 1));
    let key = on_bob[0].0.clone();
    assert_eq!(listed(&mut cluster, 0, alice), vec![(key.clone(), "bob".to_owned(), 1)]);
    dm(&mut cluster, 1, bob, "r1", Peer::Conversation(key.clone()), "hi!");
    assert_eq!(directs(&mut cluster, 0, alice)[0].0, 2);
    assert_eq!(directs(&mut cluster, 1, bob)[0].0, 2);
    // A retry is answered with the original, numbered once.
    dm(&mut cluster, 0, alice, "d1", Peer::Nick("bob".into()), "psst");
    assert_eq!(directs(&mut cluster, 0, alice), mine);
    assert!(directs(&mut cluster, 1, bob).is_empty(), "nothing twice");
    // Either core reads the whole conversation from the engine.
    let read = Command::Conversation {
        with: Peer::Conversation(key),
        after: None,
        before: None,
        limit: None,
    };
    cluster.send(1, bob, Some("c"), read);
    let history = events(&mut cluster, 1, bob).into_iter().find_map(|event| match event {
        Event::Conversation { history, last_seq, .. } => Some((history.len(), last_seq)),
        _ => None,
    });
    assert_eq!(history, Some((2, 2)));
    let logs = cluster.engine.logs.iter().filter(|(name, _)| name.is_conversation());
    assert_eq!(logs.map(|(_, log)| log.len()).collect::<Vec<_>>(), [2]);
}

#[test]
fn a_party_away_from_every_core_finds_its_conversations_on_the_core_it_comes_back_to() {
    let mut cluster = Cluster::new(2);
    let alice = greet(&mut cluster, 0, Some("alice"));
    let bob = greet(&mut cluster, 1, Some("bob"));
    let bob_token = token_of(&events(&mut cluster, 1, bob));
    dm(&mut cluster, 0, alice, "d1", Peer::Nick("bob".into()), "one");
    // Bob's connection drops; while he is away alice writes again: his
    // session still holds the nick, on core 1.
    cluster.cores[1].handle_disconnect(cluster.now, bob, Departure::Lost);
    cluster.drain();
    dm(&mut cluster, 0, alice, "d2", Peer::Nick("bob".into()), "two");
    // He comes back through core 0: his session moves there, with what
    // was said meanwhile.
    let again = greet_as_resuming(&mut cluster, 0, &bob_token);
    let on_0 = listed(&mut cluster, 0, again);
    assert_eq!(on_0.iter().map(|c| (c.1.as_str(), c.2)).collect::<Vec<_>>(), [("alice", 2)]);
    // And from then on he gets her messages there.
    dm(&mut cluster, 0, alice, "d3", Peer::Nick("bob".into()), "three");
    assert_eq!(directs(&mut cluster, 0, again).last().map(|d| d.0), Some(3));
    assert_eq!(cluster.engine.logs.iter().filter(|(n, _)| n.is_conversation()).count(), 1);
}

#[test]
fn a_direct_message_to_a_nick_no_core_holds_or_while_the_engine_is_away_is_refused() {
    let mut cluster = Cluster::new(2);
    let alice = greet(&mut cluster, 0, Some("alice"));
    events(&mut cluster, 0, alice);
    dm(&mut cluster, 0, alice, "d1", Peer::Nick("nobody".into()), "hello?");
    let got = events(&mut cluster, 0, alice);
    assert!(matches!(refused(&got), Some(CommandError::NoSuchNick(n)) if n == "nobody"), "{got:?}");
    assert!(cluster.engine.logs.is_empty());
    assert!(listed(&mut cluster, 0, alice).is_empty());
    // With the engine out of reach nobody can tell: refused for now.
    let bob = greet(&mut cluster, 1, Some("bob"));
    events(&mut cluster, 1, bob);
    cluster.engine.down = true;
    dm(&mut cluster, 0, alice, "d2", Peer::Nick("bob".into()), "there?");
    let got = events(&mut cluster, 0, alice);
    assert!(matches!(refused(&got), Some(CommandError::SharedUnavailable { .. })), "{got:?}");
    assert!(directs(&mut cluster, 1, bob).is_empty());
}

#[test]
fn random_schedules_on_shared_cores_keep_one_order_with_nothing_twice_or_missing() {
    let seeds: Vec<u64> = match std::env::var("SIM_SEED") {
        Ok(seed) => vec![seed.parse().expect("SIM_SEED is a number")],
        Err(_) => (1..=300).collect(),
    };
    let (mut appended, mut duplicates, mut taken, mut moves, mut directs) = (0, 0, 0, 0, 0);
    for seed in seeds.iter().copied() {
        let engine = simulate(seed, 400);
        appended += engine.logs.values().map(Vec::len).sum::<usize>();
        directs += engine.directs_received;
        duplicates += engine.duplicates;
        taken += engine.taken;
        moves += engine.moves;
    }
    if seeds.len() > 1 {
        assert!(
            appended > 0 && duplicates > 0 && taken > 0 && moves > 0 && directs > 0,
            "appended {appended}, retries met in flight {duplicates}, nicks refused {taken}, \
             sessions moved {moves}, direct messages received {directs}"
        );
    }
}

fn simulate(seed: u64, steps: usize) -> Engine {
    let mut rng = crate::simulation::Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    let mut cluster = Cluster::new(2 + rng.below(2));
    let mut clients: Vec<Client> = Vec::new();
    let mut ids = 0u64;
    for step in 0..steps {
        let at = format!("seed {seed} step {step}");
        let roll = rng.below(120);
        if clients.is_empty() || (roll < 8 && clients.len() < 8) {
            let core = rng.below(cluster.cores.len());
            cluster.next += 1;
            let token = SessionToken::parse(&format!("sim-{}", cluster.next)).unwrap();
            let source = Source::new(cluster.next);
            let member = cluster.cores[core].handle_connect(cluster.now, token, source);
            // Guests sometimes; else a nick others may want too.
            let nick = (rng.below(4) > 0).then(|| NICKS[rng.below(NICKS.len())].to_owned());
            let hello = Command::Hello { nick, session: None, identity: None };
            cluster.send(core, member, None, hello);
            clients.push(Client {
                core,
                member,
                token: None,
                nick: None,
                gone: false,
                next: BTreeMap::new(),
                sent: Vec::new(),
                directs: BTreeMap::new(),
            });
        } else if roll >= 100 {
            // Nicks: claims in flight, answered later, renames, quits.
            let c = rng.below(clients.len());
            let (core, member) = (clients[c].core, clients[c].member);
            match roll {
                100..=104 => cluster.engine.holding_claims = !cluster.engine.holding_claims,
                105..=111 => cluster.answer_one_claim(rng.below(cluster.cores.len())),
                112..=116 if !clients[c].gone => {
                    let nick = NICKS[rng.below(NICKS.len())].to_owned();
                    cluster.send(core, member, None, Command::Nick { nick });
                }
                117..=118 if !clients[c].gone => {
                    cluster.cores[core].handle_disconnect(cluster.now, member, Departure::Quit);
                    cluster.drain();
                    clients[c].gone = true;
                }
                119 if !clients[c].gone && clients[c].token.is_some() => {
                    // Its connection drops; it comes back through any core
                    // and joins its rooms again from where it was.
                    check(&mut cluster, &mut clients, &at);
                    cluster.cores[core].handle_disconnect(cluster.now, member, Departure::Lost);
                    cluster.drain();
                    let token = clients[c].token.clone().unwrap();
                    let to = rng.below(cluster.cores.len());
                    let member = greet_as_resuming(&mut cluster, to, &token);
                    clients[c].core = to;
                    clients[c].member = member;
                    clients[c].nick = None;
                    let rooms: Vec<(String, u64)> =
                        clients[c].next.iter().map(|(r, n)| (r.clone(), *n)).collect();
                    clients[c].next.clear();
                    for (room, next) in rooms {
                        let after = Some(next - 1);
                        cluster.send(to, member, None, Command::Join { room, after });
                    }
                }
                _ => {}
            }
        } else {
            let c = rng.below(clients.len());
            if clients[c].gone {
                continue;
            }
            let (core, member) = (clients[c].core, clients[c].member);
            let room = ROOMS[rng.below(ROOMS.len())].to_owned();
            match roll {
                8..=24 => cluster.send(core, member, None, Command::Join { room, after: None }),
                25..=29 => cluster.send(core, member, None, Command::Leave { room }),
                55..=64 => {
                    // A direct message to whoever holds some nick, on any
                    // core (or nobody).
                    ids += 1;
                    let to = Peer::Nick(NICKS[rng.below(NICKS.len())].to_owned());
                    let dm = Command::Dm { to, text: format!("d{ids} from {c}") };
                    cluster.send(core, member, Some(&format!("d{ids}")), dm);
                }
                30..=54 => {
                    ids += 1;
                    let (id, text) = (format!("i{ids}"), format!("i{ids} from {c}"));
                    clients[c].sent.push((room.clone(), id.clone(), text.clone()));
                    let say = Command::Say { room, text, action: false, attachment: None };
                    cluster.send(core, member, Some(&id), say);
                }
                65..=72 if !clients[c].sent.is_empty() => {
                    let pick = rng.below(clients[c].sent.len());
                    let (room, id, text) = clients[c].sent[pick].clone();
                    let say = Command::Say { room, text, action: false, attachment: None };
                    cluster.send(core, member, Some(&id), say);
                }
                73..=84 => cluster.engine.holding = !cluster.engine.holding,
                _ => {
                    let core = rng.below(cluster.cores.len());
                    cluster.release_one(core);
                }
            }
        }
        check(&mut cluster, &mut clients, &at);
        nicks_unique(&cluster, &clients, &at);
        members_agree(&cluster, &at);
    }
    cluster.release();
    let at = format!("seed {seed} at the end");
    check(&mut cluster, &mut clients, &at);
    nicks_unique(&cluster, &clients, &at);
    // Everyone has every message of every room they are in.
    for (c, client) in clients.iter().enumerate().filter(|(_, client)| !client.gone) {
        for (room, next) in &client.next {
            let logged =
                cluster.engine.logs.get(&RoomName::parse(room).unwrap()).map_or(0, Vec::len);
            assert_eq!(*next, logged as u64 + 1, "{at}: client {c} missed messages of {room}");
        }
    }
    cluster.engine
}

/// What every client got since the last look agrees with the engine's
/// log: each room's messages in `seq` order from where its join left it,
/// none twice but a retry's answer to its sender, none missing.
fn check(cluster: &mut Cluster, clients: &mut [Client], at: &str) {
    for (c, client) in clients.iter_mut().enumerate() {
        let inbox = cluster.inboxes.remove(&(client.core, client.member)).unwrap_or_default();
        for event in inbox {
            match event {
                Event::Welcome { session, nick, .. } => {
                    client.token = Some(session);
                    client.nick = Some(nick.to_string());
                }
                Event::NickChanged { nick, .. } => client.nick = Some(nick.to_string()),
                Event::Joined { room, last_seq, history, .. } => {
                    let seqs: Vec<u64> = history.iter().map(|m| m.seq).collect();
                    let first = last_seq + 1 - seqs.len() as u64;
                    assert_eq!(seqs, (first..=last_seq).collect::<Vec<_>>(), "{at}: client {c}");
                    for message in &history {
                        agree(cluster, message, at);
                    }
                    client.next.insert(room.to_string(), last_seq + 1);
                }
                Event::Left { room, .. } => {
                    client.next.remove(room.as_str());
                }
                // Direct messages: the engine's, each conversation's in
                // order, none twice (but a retry's answer; the sim never
                // retries one). What came while a client was away is not
                // pushed (it reads it back), so gaps may be.
                Event::Direct { key, seq, text, id, from, with, .. } => {
                    if from == with {
                        cluster.engine.directs_received += 1;
                    }
                    let log = cluster
                        .engine
                        .logs
                        .iter()
                        .find(|(name, _)| name.conversation_key() == *key);
                    let logged =
                        &log.unwrap_or_else(|| panic!("{at}: {key} unknown")).1[seq as usize - 1];
                    assert_eq!((&logged.text, &logged.id), (&text, &id), "{at}: {key}#{seq}");
                    let last = client.directs.insert(key.to_string(), seq).unwrap_or(0);
                    assert!(seq > last, "{at}: client {c} got {key}#{seq} after #{last}");
                }
                Event::Message(message) => {
                    agree(cluster, &message, at);
                    let next = client.next.get_mut(message.room.as_str());
                    let own = message.sender.is_some() && message.sender == client.token;
                    match next {
                        Some(next) if message.seq == *next => *next += 1,
                        // A retry is answered with the original, to its sender.
                        _ if own && message.id.is_some() => {}
                        other => {
                            panic!("{at}: client {c} got {} where {other:?} was due", message.seq)
                        }
                    }
                }
                _ => {}
            }
        }
    }
}

/// Every core counts in each room it follows the members the engine has
/// there, wherever they are served.
fn members_agree(cluster: &Cluster, at: &str) {
    for (core, chat) in cluster.cores.iter().enumerate() {
        for (room, count) in chat.room_members() {
            let engine = cluster.engine.members.get(&room).map_or(0, BTreeMap::len);
            assert_eq!(count, engine, "{at}: core {core} counts {count} in {room}");
        }
    }
}

/// Every client still there holds its nick alone, across all cores, and
/// the engine says so.
fn nicks_unique(cluster: &Cluster, clients: &[Client], at: &str) {
    let mut held: BTreeMap<String, usize> = BTreeMap::new();
    for (c, client) in clients.iter().enumerate() {
        let (Some(nick), Some(token), false) = (&client.nick, &client.token, client.gone) else {
            continue;
        };
        let folded = Nick::parse(nick).unwrap().folded().to_owned();
        if let Some(other) = held.insert(folded.clone(), c) {
            panic!("{at}: clients {other} and {c} both hold {nick}");
        }
        assert_eq!(cluster.engine.nicks.get(&folded), Some(token), "{at}: client {c}'s {nick}");
    }
}

/// A message as a core shows it is the engine's, at its `seq`.
fn agree(cluster: &Cluster, message: &Message, at: &str) {
    let log = &cluster.engine.logs[&message.room];
    let logged = &log[message.seq as usize - 1];
    assert_eq!(
        (&logged.text, &logged.id),
        (&message.text, &message.id),
        "{at}: {}#{}",
        message.room,
        message.seq
    );
}
