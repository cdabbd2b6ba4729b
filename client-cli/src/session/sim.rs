//! A seeded simulation of client sessions against the real chat core.
//!
//! Several [`Session`]s chat in two rooms through a simulated network
//! that delays frames, breaks connections and delivers some frames twice,
//! to a server that is the real `chat_core::Chat`, driven as the server
//! binary drives it and speaking through the server's own `wire`
//! conversions, that restarts (gracefully, with `retry_ms`, or by
//! crashing) from a store that keeps a short history per room, so that
//! reconnects resume, page back, or meet a gap.
//!
//! After a quiet period every session must have every message it typed
//! acknowledged, every message must be stored exactly once and in the
//! order its sender typed it, and every session must have reported every
//! message of its rooms exactly once and in order, except for the ranges
//! it reported as gaps, which must be exactly what it missed.
//!
//! `SIM_SEEDS=n` runs n seeds (default 200); `SIM_SEED=s` replays one.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use chat_core::{
    Chat, ChatConfig, Departure, DisconnectReason, MemberId, Output, Record, RoomHistory, RoomName,
    SessionToken, Source, Timestamp,
};
use chat_protocol::{ClientFrame, ErrorCode, Resume, ServerFrame, decode_client};
use chat_server::wire::{self, WelcomeInfo};

use super::{Command, Disconnect, Event, Session, SessionConfig, SplitMix, Transmit};
use crate::outbox::Saved;

const ROOMS: [&str; 2] = ["lobby", "dev"];
/// Faults and typing happen in this window; then everything settles.
const ACTIVE: Duration = Duration::from_secs(60);
/// How long settling may take at most.
const SETTLE: Duration = Duration::from_secs(300);
/// Messages each room keeps, in the core and in the store.
const KEEP: usize = 30;
/// The wall clock of the simulation's start, for the core's timestamps.
const EPOCH_MS: u64 = 1_800_000_000_000;

#[test]
fn sessions_deliver_every_message_once_and_in_order_through_faults() {
    let seeds: Vec<u64> = match std::env::var("SIM_SEED") {
        Ok(seed) => vec![seed.parse().expect("SIM_SEED is a number")],
        Err(_) => {
            let n = std::env::var("SIM_SEEDS").ok().and_then(|n| n.parse().ok()).unwrap_or(200);
            (1..=n).collect()
        }
    };
    let mut total = Tally::default();
    for seed in &seeds {
        match Sim::new(*seed).run() {
            Ok(tally) => total.add(&tally),
            Err(failure) => panic!(
                "seed {seed}: {failure}\nreplay with: SIM_SEED={seed} cargo test -p chat-client sessions_deliver"
            ),
        }
    }
    // The faults must have happened for the checks to mean anything.
    if seeds.len() >= 16 {
        assert!(total.resumed > 0, "no reconnect resumed: {total:?}");
        assert!(total.gaps > 0, "no reconnect met a gap: {total:?}");
        assert!(total.pages > 0, "no reconnect paged back: {total:?}");
        assert!(total.duplicates > 0, "no frame was delivered twice: {total:?}");
        assert!(total.restarts > 0, "the server never restarted: {total:?}");
    }
}

/// What happened in a run, for the check that the faults did happen.
#[derive(Debug, Default)]
struct Tally {
    resumed: u64,
    gaps: u64,
    pages: u64,
    duplicates: u64,
    restarts: u64,
}

impl Tally {
    fn add(&mut self, other: &Tally) {
        self.resumed += other.resumed;
        self.gaps += other.gaps;
        self.pages += other.pages;
        self.duplicates += other.duplicates;
        self.restarts += other.restarts;
    }
}

/// What travels on a simulated connection.
#[derive(Debug, Clone)]
enum Packet {
    Text(String),
    Close(u16, String),
    /// The connection broke.
    Reset,
}

/// One simulated connection.
#[derive(Debug)]
struct Pipe {
    client: usize,
    /// The server's end, once it accepted.
    member: Option<MemberId>,
    /// The server incarnation it was made to.
    server: u64,
    to_server: VecDeque<(Instant, Packet)>,
    to_client: VecDeque<(Instant, Packet)>,
    /// Whether the client still holds it.
    client_open: bool,
}

/// The server's durable store: survives restarts.
#[derive(Debug, Default)]
struct Store {
    rooms: BTreeMap<String, (u64, VecDeque<chat_core::Message>)>,
    sessions: BTreeMap<String, (SessionToken, chat_core::Nick)>,
    /// Every message ever stored, for the checks.
    all: Vec<chat_core::Message>,
}

impl Store {
    fn persist(&mut self, record: Record) {
        match record {
            Record::Message(message) => {
                let (last, kept) = self.rooms.entry(message.room.to_string()).or_default();
                *last = (*last).max(message.seq);
                kept.push_back(message.clone());
                while kept.len() > KEEP {
                    kept.pop_front();
                }
                self.all.push(message);
            }
            Record::Session { token, nick } => {
                self.sessions.insert(token.as_str().to_owned(), (token, nick));
            }
            Record::SessionEnded(token) => {
                self.sessions.remove(token.as_str());
            }
            Record::Direct(_) | Record::Topic { .. } | Record::Doc { .. } => {}
        }
    }

    fn history(&self, room: &RoomName) -> Option<RoomHistory> {
        let (last_seq, kept) = self.rooms.get(room.as_str())?;
        Some(RoomHistory {
            topic: None,
            docs: Vec::new(),
            last_seq: *last_seq,
            messages: kept.iter().cloned().collect(),
            remote: Vec::new(),
        })
    }
}

/// One incarnation of the server.
struct Server {
    chat: Chat,
    welcome: WelcomeInfo,
    members: BTreeMap<MemberId, u64>,
    incarnation: u64,
}

/// A simulated user: a session, what it typed, and what it was told.
struct Client {
    session: Session,
    /// The connection it holds or is opening.
    pipe: Option<u64>,
    /// A connection attempt: when it completes, and to which pipe (`None`:
    /// it fails).
    connecting: Option<(Instant, Option<u64>)>,
    script: VecDeque<(Instant, String, String)>,
    /// Per room, what was reported, in order.
    reports: BTreeMap<String, Vec<Report>>,
    /// How many messages it typed.
    typed: usize,
    /// While partitioned: until when.
    cut_off_until: Option<Instant>,
    /// Whether it ended, or met a resume that should not happen (then
    /// the check fails).
    over: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Report {
    /// A fresh join: the room starts here.
    Start(u64),
    Message(u64),
    Gap(u64, u64),
}

struct Sim {
    rng: SplitMix,
    start: Instant,
    now: Instant,
    config: ChatConfig,
    server: Option<Server>,
    /// While the server is down: when it is back.
    back_at: Option<Instant>,
    incarnations: u64,
    store: Store,
    pipes: BTreeMap<u64, Pipe>,
    next_pipe: u64,
    clients: Vec<Client>,
    /// When the next fault strikes.
    faults: VecDeque<(Instant, Fault)>,
    /// Chances, in percent.
    duplicate_percent: u64,
    max_latency_ms: u64,
    tally: Tally,
    /// The last things that happened, for a failure's report.
    trace: VecDeque<String>,
}

#[derive(Debug, Clone, Copy)]
enum Fault {
    /// One connection breaks.
    Drop,
    /// One client is cut off for this long: its connection breaks and it
    /// cannot connect until then.
    Partition(Duration),
    /// The server restarts, closing every connection with 1012 and a
    /// `retry_ms`.
    Restart,
    /// The server crashes: every connection breaks.
    Crash,
}

impl Sim {
    fn new(seed: u64) -> Self {
        let mut rng = SplitMix(seed);
        let start = Instant::now();
        let config = ChatConfig {
            history_per_room: KEEP,
            resume_max: 8,
            history_page_max: 5,
            join_history: 10,
            ..ChatConfig::default()
        };
        let clients = 2 + rng.below(3);
        let mut sim = Self {
            start,
            now: start,
            config,
            server: None,
            back_at: None,
            incarnations: 0,
            store: Store::default(),
            pipes: BTreeMap::new(),
            next_pipe: 0,
            clients: Vec::new(),
            faults: VecDeque::new(),
            duplicate_percent: rng.below(10),
            max_latency_ms: 1 + rng.below(80),
            tally: Tally::default(),
            trace: VecDeque::new(),
            rng,
        };
        sim.boot();
        for i in 0..clients {
            sim.add_client(usize::try_from(i).unwrap_or(0));
        }
        let mut faults: Vec<(Instant, Fault)> = Vec::new();
        for _ in 0..sim.rng.below(12) {
            faults.push((sim.at_random(), Fault::Drop));
        }
        for _ in 0..sim.rng.below(3) {
            let cut_off = Duration::from_millis(2000 + sim.rng.below(40_000));
            faults.push((sim.at_random(), Fault::Partition(cut_off)));
        }
        for _ in 0..sim.rng.below(3) {
            let fault = if sim.rng.below(2) == 0 { Fault::Restart } else { Fault::Crash };
            faults.push((sim.at_random(), fault));
        }
        faults.sort_by_key(|(at, _)| *at);
        sim.faults = faults.into();
        sim
    }

    fn at_random(&mut self) -> Instant {
        self.start + Duration::from_millis(self.rng.below(ACTIVE.as_millis() as u64))
    }

    fn add_client(&mut self, i: usize) {
        let rooms: Vec<(String, Option<u64>)> = match self.rng.below(3) {
            0 => vec![(ROOMS[0].to_owned(), None)],
            _ => ROOMS.iter().map(|room| ((*room).to_owned(), None)).collect(),
        };
        let mut script = Vec::new();
        for k in 0..5 + self.rng.below(30) {
            let mut at = self.at_random();
            // Now and then a pasted block: several lines at once.
            if k > 0
                && self.rng.below(8) == 0
                && let Some((previous, _, _)) = script.last()
            {
                at = *previous;
            }
            let room =
                rooms[usize::try_from(self.rng.below(rooms.len() as u64)).unwrap_or(0)].0.clone();
            script.push((at, room, format!("c{i}-{k}")));
        }
        // Typed in this order, whatever the times drawn.
        let mut times: Vec<Instant> = script.iter().map(|(at, _, _)| *at).collect();
        times.sort();
        for (entry, at) in script.iter_mut().zip(times) {
            entry.0 = at;
        }
        let config = SessionConfig {
            nick: Some(format!("c{i}")),
            access_token: None,
            rooms,
            first_failure_fatal: false,
            linger: Duration::from_secs(30),
            durable: false,
            seed: self.rng.next(),
        };
        let session = Session::new(config, Saved::default(), self.now);
        self.clients.push(Client {
            session,
            pipe: None,
            connecting: None,
            script: script.into(),
            reports: BTreeMap::new(),
            typed: 0,
            cut_off_until: None,
            over: false,
        });
        self.drain_client(i);
    }

    fn ts(&self) -> Timestamp {
        let ms = u64::try_from((self.now - self.start).as_millis()).unwrap_or(u64::MAX);
        Timestamp::from_unix_millis(EPOCH_MS + ms)
    }

    fn note(&mut self, what: String) {
        let at = (self.now - self.start).as_millis();
        self.trace.push_back(format!("{at:>7} ms  {what}"));
        if self.trace.len() > 60 {
            self.trace.pop_front();
        }
    }

    fn latency(&mut self) -> Duration {
        Duration::from_millis(1 + self.rng.below(self.max_latency_ms))
    }

    /// Queues a packet behind those already on its way (a connection keeps
    /// order, whatever each one's latency).
    fn push(queue: &mut VecDeque<(Instant, Packet)>, at: Instant, packet: Packet) {
        let at = queue.back().map_or(at, |(last, _)| at.max(*last));
        queue.push_back((at, packet));
    }

    /// A new server incarnation, from the store.
    fn boot(&mut self) {
        self.incarnations += 1;
        let server_config =
            chat_server::ServerConfig { chat: self.config.clone(), ..Default::default() };
        let welcome =
            WelcomeInfo { server: wire::server_info(None), limits: wire::limits(&server_config) };
        let mut chat = Chat::new(self.config.clone());
        let now = self.ts();
        for (token, nick) in self.store.sessions.values() {
            chat.restore_session(now, token.clone(), nick.clone());
        }
        for message in &self.store.all {
            chat.restore_message(now, message.clone());
        }
        self.server = Some(Server {
            chat,
            welcome,
            members: BTreeMap::new(),
            incarnation: self.incarnations,
        });
        self.back_at = None;
    }

    fn run(mut self) -> Result<Tally, String> {
        let end = self.start + ACTIVE + SETTLE;
        loop {
            if self.now > self.start + ACTIVE && self.settled() {
                break;
            }
            let Some(next) = self.next_time() else {
                return Err(self.failure("nothing left to happen, yet not settled"));
            };
            if next > end {
                return Err(self.failure("not settled in time"));
            }
            self.now = self.now.max(next);
            self.step();
        }
        self.check().map_err(|why| self.failure(&why))?;
        Ok(self.tally)
    }

    fn failure(&self, why: &str) -> String {
        let trace: Vec<&str> = self.trace.iter().map(String::as_str).collect();
        format!("{why}\nlast events:\n{}", trace.join("\n"))
    }

    /// Settled: every session caught up with nothing pending, nothing in
    /// flight, no fault to come.
    fn settled(&self) -> bool {
        self.faults.is_empty()
            && self.server.is_some()
            && self.pipes.values().all(|p| p.to_server.is_empty() && p.to_client.is_empty())
            && self.clients.iter().all(|c| {
                c.script.is_empty()
                    && c.session.pending.is_empty()
                    && c.session.out.is_empty()
                    && matches!(c.session.phase, super::Phase::Live)
            })
    }

    fn next_time(&self) -> Option<Instant> {
        let mut times: Vec<Instant> = Vec::new();
        times.extend(self.faults.front().map(|(at, _)| *at));
        times.extend(self.back_at);
        if let Some(server) = &self.server {
            times.extend(server.chat.poll_timeout().map(|ts| {
                let ms = ts.as_unix_millis().saturating_sub(EPOCH_MS);
                self.start + Duration::from_millis(ms)
            }));
        }
        for pipe in self.pipes.values() {
            times.extend(pipe.to_server.front().map(|(at, _)| *at));
            times.extend(pipe.to_client.front().map(|(at, _)| *at));
        }
        for client in &self.clients {
            times.extend(client.session.poll_timeout());
            times.extend(client.connecting.map(|(at, _)| at));
            times.extend(client.script.front().map(|(at, _, _)| *at));
        }
        times.into_iter().min()
    }

    /// Everything due now, in a fixed order.
    fn step(&mut self) {
        let now = self.now;
        while self.faults.front().is_some_and(|(at, _)| *at <= now) {
            if let Some((_, fault)) = self.faults.pop_front() {
                self.fault(fault);
            }
        }
        if self.back_at.is_some_and(|at| at <= now) {
            self.note("server back".to_owned());
            self.boot();
        }
        if let Some(server) = &mut self.server
            && server.chat.poll_timeout().is_some_and(|at| at <= self.ts_of(now))
        {
            let ts = self.ts();
            if let Some(server) = &mut self.server {
                server.chat.handle_timeout(ts);
            }
            self.drain_server();
        }
        let ids: Vec<u64> = self.pipes.keys().copied().collect();
        for id in ids {
            self.deliver(id);
        }
        for i in 0..self.clients.len() {
            self.client_step(i);
        }
    }

    fn ts_of(&self, at: Instant) -> Timestamp {
        let ms = u64::try_from((at - self.start).as_millis()).unwrap_or(u64::MAX);
        Timestamp::from_unix_millis(EPOCH_MS + ms)
    }

    fn fault(&mut self, fault: Fault) {
        self.note(format!("fault: {fault:?}"));
        match fault {
            Fault::Drop => {
                let open: Vec<u64> = self
                    .pipes
                    .iter()
                    .filter(|(_, p)| p.client_open && p.member.is_some())
                    .map(|(id, _)| *id)
                    .collect();
                if !open.is_empty() {
                    let pick =
                        open[usize::try_from(self.rng.below(open.len() as u64)).unwrap_or(0)];
                    self.cut(pick);
                }
            }
            Fault::Partition(cut_off) => {
                let clients = self.clients.len() as u64;
                let i = usize::try_from(self.rng.below(clients)).unwrap_or(0);
                self.clients[i].cut_off_until = Some(self.now + cut_off);
                if let Some(pipe) = self.clients[i].pipe {
                    self.cut(pipe);
                }
            }
            Fault::Restart | Fault::Crash => {
                if self.server.is_none() {
                    return;
                }
                self.tally.restarts += 1;
                let ids: Vec<u64> = self.pipes.keys().copied().collect();
                for id in ids {
                    if matches!(fault, Fault::Crash) {
                        self.cut(id);
                        continue;
                    }
                    let retry = self.rng.below(2000);
                    let at = self.now + self.latency();
                    if let Some(pipe) = self.pipes.get_mut(&id) {
                        pipe.to_server.clear();
                        let close = Packet::Close(1012, chat_protocol::restart_reason(retry));
                        Self::push(&mut pipe.to_client, at, close);
                        pipe.member = None;
                    }
                }
                self.server = None;
                self.back_at = Some(self.now + Duration::from_millis(50 + self.rng.below(1000)));
            }
        }
    }

    /// Breaks a connection: what was on its way is lost.
    fn cut(&mut self, id: u64) {
        let at = self.now + self.latency();
        let ts = self.ts();
        let Some(pipe) = self.pipes.get_mut(&id) else {
            return;
        };
        pipe.to_server.clear();
        pipe.to_client.clear();
        pipe.to_client.push_back((at, Packet::Reset));
        if let Some(member) = pipe.member.take()
            && let Some(server) = &mut self.server
            && server.incarnation == pipe.server
        {
            server.members.remove(&member);
            server.chat.handle_disconnect(ts, member, Departure::Lost);
            self.drain_server();
        }
    }

    /// Delivers what is due on one connection, both ways.
    fn deliver(&mut self, id: u64) {
        loop {
            let now = self.now;
            let Some(pipe) = self.pipes.get_mut(&id) else {
                return;
            };
            if let Some((_, packet)) = pipe.to_server.front().filter(|(at, _)| *at <= now).cloned()
            {
                pipe.to_server.pop_front();
                self.at_server(id, packet);
                continue;
            }
            if let Some((_, packet)) = pipe.to_client.front().filter(|(at, _)| *at <= now).cloned()
            {
                pipe.to_client.pop_front();
                self.at_client(id, packet);
                continue;
            }
            return;
        }
    }

    fn at_server(&mut self, id: u64, packet: Packet) {
        let ts = self.ts();
        let Some(pipe) = self.pipes.get(&id) else {
            return;
        };
        let (Some(member), Some(server)) = (pipe.member, self.server.as_mut()) else {
            return;
        };
        if server.incarnation != pipe.server {
            return;
        }
        match packet {
            Packet::Text(text) => match decode_client(&text) {
                Ok(message) => match wire::command(message.frame, None) {
                    Ok(command) => {
                        server.chat.handle_command(ts, member, message.id.as_deref(), command);
                    }
                    Err(err) => self.send_to(member, &wire::malformed(err).encode()),
                },
                Err(err) => self.send_to(member, &wire::malformed(err).encode()),
            },
            Packet::Close(..) | Packet::Reset => {
                server.members.remove(&member);
                server.chat.handle_disconnect(ts, member, Departure::Quit);
                self.pipes.remove(&id);
            }
        }
        self.drain_server();
    }

    fn send_to(&mut self, member: MemberId, text: &str) {
        let Some(server) = &self.server else {
            return;
        };
        let Some(id) = server.members.get(&member).copied() else {
            return;
        };
        let at = self.now + self.latency();
        let duplicate =
            text.contains(r#""type":"message""#) && self.rng.below(100) < self.duplicate_percent;
        if let Some(pipe) = self.pipes.get_mut(&id) {
            Self::push(&mut pipe.to_client, at, Packet::Text(text.to_owned()));
            if duplicate {
                Self::push(&mut pipe.to_client, at, Packet::Text(text.to_owned()));
                self.tally.duplicates += 1;
            }
        }
    }

    /// Carries out the core's outputs as the server's hub does.
    fn drain_server(&mut self) {
        loop {
            let ts = self.ts();
            let Some(server) = self.server.as_mut() else {
                return;
            };
            let Some(output) = server.chat.poll_output() else {
                return;
            };
            match output {
                Output::Deliver { to, event } => {
                    let text = wire::frame(&event, &server.welcome).encode();
                    for member in to.iter() {
                        self.send_to(*member, &text);
                    }
                }
                Output::Persist(record) => self.store.persist(record),
                Output::Append { .. }
                | Output::AppendDirect { .. }
                | Output::Forget(_)
                | Output::Conversations { .. }
                | Output::Whois { .. }
                | Output::Claim { .. }
                | Output::Release { .. }
                | Output::Share { .. }
                | Output::Lookup { .. } => {
                    panic!("the simulated server is one node, alone: {output:?}")
                }
                // Its clients edit no documents.
                Output::DropDoc { .. }
                | Output::ListVersions { .. }
                | Output::RestoreDoc { .. } => {}
                Output::Load(room) => {
                    let stored = self.store.history(&room);
                    server.chat.handle_loaded(ts, &room, stored);
                }
                Output::Disconnect { member, reason } => {
                    let code = match reason {
                        DisconnectReason::SessionResumedElsewhere => 4009,
                        DisconnectReason::IdentityExpired => 4011,
                        DisconnectReason::RoomReset => 1012,
                    };
                    if let Some(id) = server.members.remove(&member) {
                        let at = self.now + self.latency();
                        if let Some(pipe) = self.pipes.get_mut(&id) {
                            pipe.to_server.clear();
                            pipe.member = None;
                            Self::push(&mut pipe.to_client, at, Packet::Close(code, String::new()));
                        }
                    }
                }
            }
        }
    }

    fn at_client(&mut self, id: u64, packet: Packet) {
        let now = self.now;
        let Some(pipe) = self.pipes.get(&id) else {
            return;
        };
        let i = pipe.client;
        if !pipe.client_open || self.clients[i].pipe != Some(id) {
            return;
        }
        match packet {
            Packet::Text(text) => {
                self.clients[i].session.handle_frame(now, text);
            }
            Packet::Close(code, reason) => {
                self.note(format!("c{i}: closed {code}"));
                self.close_client_side(id);
                self.clients[i]
                    .session
                    .handle_disconnected(now, Disconnect::Closed { code, reason });
            }
            Packet::Reset => {
                self.note(format!("c{i}: reset"));
                self.close_client_side(id);
                self.clients[i]
                    .session
                    .handle_disconnected(now, Disconnect::Broken("reset".to_owned()));
            }
        }
        self.drain_client(i);
    }

    fn close_client_side(&mut self, id: u64) {
        if let Some(pipe) = self.pipes.get_mut(&id) {
            pipe.client_open = false;
            self.clients[pipe.client].pipe = None;
            if pipe.member.is_none() {
                self.pipes.remove(&id);
            }
        }
    }

    fn client_step(&mut self, i: usize) {
        let now = self.now;
        if let Some((at, pipe)) = self.clients[i].connecting
            && at <= now
        {
            self.clients[i].connecting = None;
            self.connected(i, pipe);
        }
        while self.clients[i].script.front().is_some_and(|(at, _, _)| *at <= now) {
            if let Some((_, room, text)) = self.clients[i].script.pop_front() {
                let say = ClientFrame::Say { room, text, action: false };
                self.clients[i].typed += 1;
                self.clients[i].session.handle_command(now, Command::Send(say));
            }
        }
        if self.clients[i].session.poll_timeout().is_some_and(|at| at <= now) {
            self.clients[i].session.handle_timeout(now);
        }
        self.drain_client(i);
    }

    /// A connection attempt completes: accepted if the server it was made
    /// to is still there.
    fn connected(&mut self, i: usize, pipe: Option<u64>) {
        let now = self.now;
        let cut_off = self.clients[i].cut_off_until.is_some_and(|until| until > now);
        let accepted = pipe.filter(|_| !cut_off).filter(|id| {
            let incarnation = self.pipes.get(id).map(|p| p.server);
            self.server.as_ref().is_some_and(|s| Some(s.incarnation) == incarnation)
        });
        let Some(id) = accepted else {
            if let Some(id) = pipe {
                self.pipes.remove(&id);
            }
            let why = Disconnect::Unreachable("connection refused".to_owned());
            self.clients[i].session.handle_disconnected(now, why);
            return;
        };
        let token = SessionToken::parse(&format!("{:032x}", self.rng.next())).ok();
        let ts = self.ts();
        let (Some(server), Some(token)) = (self.server.as_mut(), token) else {
            return;
        };
        let member = server.chat.handle_connect(ts, token, Source::new(1));
        server.members.insert(member, id);
        if let Some(pipe) = self.pipes.get_mut(&id) {
            pipe.member = Some(member);
        }
        self.clients[i].pipe = Some(id);
        self.note(format!("c{i}: connected as {member:?}"));
        self.clients[i].session.handle_connected(now);
        self.drain_server();
    }

    /// Does what a session asks, and records what it reports.
    fn drain_client(&mut self, i: usize) {
        while let Some(transmit) = self.clients[i].session.poll_transmit() {
            match transmit {
                Transmit::Connect => {
                    let at = self.now + self.latency();
                    let pipe =
                        self.server.as_ref().map(|server| server.incarnation).map(|server| {
                            self.next_pipe += 1;
                            let pipe = Pipe {
                                client: i,
                                member: None,
                                server,
                                to_server: VecDeque::new(),
                                to_client: VecDeque::new(),
                                client_open: true,
                            };
                            self.pipes.insert(self.next_pipe, pipe);
                            self.next_pipe
                        });
                    self.clients[i].connecting = Some((at, pipe));
                }
                Transmit::Text(text) => {
                    let Some(id) = self.clients[i].pipe else {
                        continue;
                    };
                    let at = self.now + self.latency();
                    let duplicate = text.contains(r#""type":"say""#)
                        && self.rng.below(100) < self.duplicate_percent;
                    if let Some(pipe) = self.pipes.get_mut(&id) {
                        Self::push(&mut pipe.to_server, at, Packet::Text(text.clone()));
                        if duplicate {
                            Self::push(&mut pipe.to_server, at, Packet::Text(text));
                            self.tally.duplicates += 1;
                        }
                    }
                }
                Transmit::Chunk { .. } => {}
                Transmit::Close => {
                    if let Some(id) = self.clients[i].pipe.take() {
                        let at = self.now + self.latency();
                        if let Some(pipe) = self.pipes.get_mut(&id) {
                            pipe.client_open = false;
                            Self::push(&mut pipe.to_server, at, Packet::Close(1000, String::new()));
                        }
                    }
                }
            }
        }
        while let Some(event) = self.clients[i].session.poll_event() {
            self.record(i, event);
        }
        let _ = self.clients[i].session.poll_save();
    }

    fn record(&mut self, i: usize, event: Event) {
        let mut notes = Vec::new();
        let client = &mut self.clients[i];
        match event {
            Event::Frame { frame: Some(frame), catch_up, .. } => match *frame {
                ServerFrame::Joined { room, history, last_seq, resume, gap, .. } => {
                    let reports = client.reports.entry(room).or_default();
                    match (catch_up, resume, gap) {
                        (false, _, _) => {
                            reports.push(Report::Start(
                                history.first().map_or(last_seq + 1, |m| m.seq),
                            ));
                            reports.extend(history.iter().map(|m| Report::Message(m.seq)));
                        }
                        (true, Resume::Resumed, _) => self.tally.resumed += 1,
                        (true, Resume::Gap, Some(_)) => self.tally.gaps += 1,
                        (true, resume, gap) => {
                            client.over = true;
                            notes.push(format!("c{i}: a resume answered {resume:?} {gap:?}"));
                        }
                    }
                }
                ServerFrame::History { .. } if catch_up => self.tally.pages += 1,
                ServerFrame::Message(message) if !catch_up => {
                    client
                        .reports
                        .entry(message.room)
                        .or_default()
                        .push(Report::Message(message.seq));
                }
                ServerFrame::Error { code, message, id, .. } if code != ErrorCode::RateLimited => {
                    notes.push(format!("c{i}: error {code} for {id:?}: {message}"));
                }
                _ => {}
            },
            Event::Missed { room, messages, gap } => {
                let reports = client.reports.entry(room).or_default();
                reports.extend(gap.map(|gap| Report::Gap(gap.from, gap.to)));
                reports.extend(messages.iter().map(|m| Report::Message(m.seq)));
            }
            Event::Failed(failure) => {
                client.over = true;
                notes.push(format!("c{i}: failed: {failure}"));
            }
            Event::Done { .. } => client.over = true,
            Event::Resumed(notice)
            | Event::Notice(notice)
            | Event::Info(notice)
            | Event::Problem(notice) => {
                notes.push(format!("c{i}: {notice}"));
            }
            Event::Frame { .. }
            | Event::Link(_)
            | Event::Queued(_)
            | Event::Sending { .. }
            | Event::Sent { .. } => {}
        }
        for note in notes {
            self.note(note);
        }
    }

    /// The promises, once everything settled.
    fn check(&self) -> Result<(), String> {
        for (i, client) in self.clients.iter().enumerate() {
            if client.over {
                return Err(format!("c{i} ended or met an unexpected resume"));
            }
            if client.session.refused > 0 {
                return Err(format!("c{i}: {} messages refused", client.session.refused));
            }
        }
        // Stored exactly once, in the order typed.
        let mut stored: BTreeMap<&str, Vec<(String, u64)>> = BTreeMap::new();
        for message in &self.store.all {
            stored.entry(&message.text).or_default().push((message.room.to_string(), message.seq));
        }
        for (text, copies) in &stored {
            if copies.len() != 1 {
                return Err(format!("{text:?} stored {} times: {copies:?}", copies.len()));
            }
        }
        for (i, client) in self.clients.iter().enumerate() {
            let typed = client_texts(i, &self.store);
            let mut last: BTreeMap<String, u64> = BTreeMap::new();
            for (k, (room, seq)) in typed {
                if last.get(&room).is_some_and(|previous| *previous >= seq) {
                    return Err(format!("c{i}-{k} stored out of the order typed"));
                }
                last.insert(room, seq);
            }
            let typed_count = client.typed;
            if client_texts(i, &self.store).len() != typed_count {
                return Err(format!(
                    "c{i} typed {typed_count} messages, {} were stored",
                    client_texts(i, &self.store).len()
                ));
            }
        }
        for (i, client) in self.clients.iter().enumerate() {
            for (room, reports) in &client.reports {
                let last_seq = self.store.rooms.get(room).map_or(0, |(last, _)| *last);
                check_reports(reports, last_seq)
                    .map_err(|why| format!("c{i} in {room}: {why}; reported {reports:?}"))?;
            }
        }
        Ok(())
    }
}

/// What client `i` typed that was stored, by its number: (room, seq).
fn client_texts(i: usize, store: &Store) -> BTreeMap<u64, (String, u64)> {
    let prefix = format!("c{i}-");
    store
        .all
        .iter()
        .filter_map(|m| {
            let k = m.text.strip_prefix(&prefix)?.parse().ok()?;
            Some((k, (m.room.to_string(), m.seq)))
        })
        .collect()
}

/// A room's reports: from where the room started, every message once and
/// in order up to the newest, except ranges reported as gaps, which begin
/// right after the last message reported.
fn check_reports(reports: &[Report], last_seq: u64) -> Result<(), String> {
    let Some(Report::Start(start)) = reports.first() else {
        return Err(format!("no fresh join first: {reports:?}"));
    };
    let mut next = *start;
    for report in reports.iter().skip(1) {
        match report {
            Report::Message(seq) if *seq == next => next += 1,
            Report::Message(seq) if *seq < next => return Err(format!("{seq} reported twice")),
            Report::Message(seq) => return Err(format!("{next}..{seq} lost without a gap")),
            Report::Gap(from, to) if *from == next && to >= from => next = to + 1,
            Report::Gap(from, to) => {
                return Err(format!("a gap {from}..={to} where {next} was next"));
            }
            Report::Start(_) => return Err("joined fresh twice".to_owned()),
        }
    }
    if next != last_seq + 1 {
        return Err(format!("reported up to {} of {last_seq}", next - 1));
    }
    Ok(())
}

impl SplitMix {
    /// Uniform in `0..n` (0 for 0).
    fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.next() % n }
    }
}
