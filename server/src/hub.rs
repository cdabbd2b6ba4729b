//! The task that owns the chat state.
//!
//! Every connection talks to it through one bounded channel of [`Input`]s;
//! it feeds them to `chat-core` and carries out the outputs, encoding each
//! event once and handing the same bytes to every recipient's queue. It
//! never waits on a connection: a full queue is a decision (close with
//! 4008), not a wait and not a silent drop.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chat_core::{
    Attachment, Chat, Command, CommandError, Departure, DisconnectReason, Event, MemberId, Output,
    Record, RoomName, SessionToken, Source,
};
use chat_protocol::{CloseCode, DecodeError, ErrorCode, ServerFrame};
use chat_transport::tungstenite::Utf8Bytes;
use chat_transport::{Liveness, Outgoing, Pushed};
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, error, info, warn};

use crate::clock::Clock;
use crate::cluster;
use crate::commits::{Commits, Delivery};
use crate::docs;
use crate::files::Staged;
use crate::metrics::Metrics;
use crate::sink::Sink;
use crate::socketio;
use crate::stats::{self, Counters};
use crate::storage::{Job, Storage, StorageEvent};
use crate::store::Snapshot;
use crate::wire::{self, WelcomeInfo};
use crate::{ServerConfig, Uploads};

/// What connections tell the hub.
#[derive(Debug)]
pub(crate) enum Input {
    /// A new WebSocket connection from `source`; the hub answers with its
    /// member id.
    Connect { conn: Conn, source: Source, reply: oneshot::Sender<MemberId> },
    /// A decoded client frame, and when it was read: a message that waited
    /// too long finds the server overloaded.
    Command { member: MemberId, id: Option<String>, command: Command, read_at: Instant },
    /// A frame that could not be decoded; the hub answers with an error.
    Malformed { member: MemberId, error: DecodeError },
    /// The connection is gone; `departure` says whether the client quit.
    Disconnect { member: MemberId, departure: Departure },
    /// The server is shutting down: close every connection with 1012 and a
    /// reconnect delay spread over the drain window.
    Shutdown,
    /// May the session holding `token` have file `file`? The answer is the
    /// attachment as the session could see it.
    File { token: SessionToken, file: String, reply: oneshot::Sender<Option<Attachment>> },
    /// A `subscribe` frame.
    Subscribe { member: MemberId, id: Option<String>, channel: String, token: Option<String> },
    /// An error for one connection, found outside the core (an upload
    /// refused).
    Refuse { member: MemberId, id: Option<String>, code: ErrorCode, message: String },
    /// May `member` send a file of `size` bytes to `room`? If so,
    /// `upload_ready` goes to it, else the error; `reply` says which.
    Upload {
        member: MemberId,
        id: Option<String>,
        room: String,
        size: u64,
        chunk_bytes: u64,
        reply: oneshot::Sender<bool>,
    },
    /// A complete upload: the `say` carrying it, and the file, staged until
    /// that message is stored (or deleted if it is refused).
    Uploaded { member: MemberId, id: Option<String>, command: Command, file: Box<Staged> },
    /// A connection asks to open a document (see `docs::serve`).
    DocOpen {
        target: docs::Target,
        outgoing: Arc<Outgoing>,
        close: oneshot::Sender<docs::DocClose>,
        reply: oneshot::Sender<docs::Opened>,
    },
    /// A frame from a document's connection.
    DocFrame { conn: docs::Conn, bytes: chat_transport::tungstenite::Bytes },
    /// A document's connection is gone.
    DocClosed { conn: docs::Conn },
}

/// How the hub tells a connection to close.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Closing {
    pub code: CloseCode,
    /// How long the client should wait before reconnecting, sent in the
    /// close reason.
    pub retry_after: Option<Duration>,
}

/// A close for a restart, asking the client to come back after a random
/// delay within `window`.
fn restart(window: Duration) -> Closing {
    Closing { code: CloseCode::Restart, retry_after: Some(window.mul_f64(rand::random::<f64>())) }
}

impl From<CloseCode> for Closing {
    fn from(code: CloseCode) -> Self {
        Self { code, retry_after: None }
    }
}

/// The hub's handle on one connection.
#[derive(Debug)]
pub(crate) struct Conn {
    /// Where its frames go: pushed, then written by the hub in one
    /// `writev` per connection per batch of inputs.
    pub sink: Sink,
    /// What it speaks: our protocol, or Socket.IO.
    pub dialect: Dialect,
    /// Tells the connection to close.
    pub close: oneshot::Sender<Closing>,
    /// The token a new session of this connection gets: random and
    /// unguessable, since it is the key to resuming the session.
    pub token: SessionToken,
    /// Liveness checks this connection has had without saying `hello`.
    pub checks_without_hello: u32,
}

/// What a connection speaks, which says how events are encoded for it:
/// once per fan-out for each dialect among the recipients.
#[derive(Debug)]
pub(crate) enum Dialect {
    /// Protocol v1 (docs/protocol.md).
    Native,
    /// Socket.IO (boxed: its state is larger, and rarer).
    SocketIo(Box<socketio::Peer>),
}

/// Deliveries held for storage past which the hub stops taking inputs, at
/// most: no more than half a connection's queue (in frames), since a commit
/// releases everything it held at once and a member may be owed all of it.
const MAX_HELD: usize = 65_536;

/// Inputs handled before the frames they caused are written, at most: the
/// hub takes no more than a quarter of a connection's queue (in frames)
/// between two of its writes, so that under overload a member who reads is
/// never sent more between two writes than its queue holds. (Taking inputs
/// between every slice of writes, with no such bound, is what made an
/// overloaded server close members who read as too slow, and collapse.)
const BATCH: usize = 256;

/// Connections written between two looks at the inputs.
const FLUSH_SLICE: usize = 128;

pub(crate) struct Hub {
    chat: Chat,
    clock: Clock,
    conns: HashMap<MemberId, Conn>,
    welcome: WelcomeInfo,
    storage: Storage,
    /// Records in flight and the deliveries waiting for them: nothing is
    /// shown to anyone before it is stored.
    commits: Commits,
    /// Storage failures in a row: messages are refused for a second after
    /// the first, doubling up to half a minute.
    store_failures: u32,
    /// What `/readyz` says; told when storage fails and recovers.
    readiness: crate::readiness::Readiness,
    /// The upload whose `say` is being handled, for the `Persist` that
    /// stores it.
    staged: Option<(Arc<Attachment>, Box<Staged>)>,
    /// What stored files take, as storage last counted.
    file_bytes: u64,
    uploads: Option<Uploads>,
    /// The window reconnect delays are spread over at shutdown.
    drain_window: Duration,
    ping_interval: Duration,
    ping_misses: u32,
    max_input_wait: Duration,
    /// Inputs taken per round of writes (see [`BATCH`]).
    batch: usize,
    /// See [`MAX_HELD`].
    max_held: usize,
    /// Messages refused since the last stats tick for waiting too long.
    overloaded: u64,
    /// Connections with frames pushed since the last flush.
    unflushed: VecDeque<Sink>,
    /// The shared documents open, and their connections.
    docs: docs::Docs,
    shutting_down: bool,
    /// Connections subscribed to `$stats`, and the token it asks for.
    stats_subscribers: Vec<MemberId>,
    /// The last minutes of the counters, for a new subscriber's chart.
    stats_history: stats::History,
    stats_token: Option<String>,
    counters: Counters,
    metrics: Arc<Metrics>,
    /// Members whose `hello` asked to resume a session, until answered.
    resuming: HashSet<MemberId>,
    /// In cluster mode, the engine the nodes share.
    cluster: Option<cluster::Engine>,
    /// What storage answered of documents' versions, back to the hub (the
    /// receiver is taken by `run`).
    versions_tx: mpsc::UnboundedSender<Versions>,
    versions_rx: Option<mpsc::UnboundedReceiver<Versions>>,
}

/// What storage (or Redis) answered of a document's versions, for the
/// member who asked.
#[derive(Debug)]
enum Versions {
    Listed {
        member: MemberId,
        id: Option<Arc<str>>,
        room: RoomName,
        doc: RoomName,
        result: Result<Vec<crate::store::VersionInfo>, ()>,
    },
    Loaded {
        member: MemberId,
        id: Option<Arc<str>>,
        room: RoomName,
        doc: RoomName,
        version: u64,
        result: Result<Option<Vec<u8>>, ()>,
    },
}

/// The most a failing store makes messages wait before trying it again.
const STORE_RETRY_MAX: Duration = Duration::from_secs(30);

impl Hub {
    /// A hub whose chat starts from `snapshot` and persists through
    /// `storage`.
    pub(crate) fn new(
        config: &ServerConfig,
        snapshot: Snapshot,
        storage: Storage,
        metrics: Arc<Metrics>,
        cluster: Option<cluster::Engine>,
        readiness: crate::readiness::Readiness,
    ) -> Self {
        let server = wire::server_info(config.node_id.clone());
        let welcome = WelcomeInfo { server, limits: wire::limits(config) };
        let clock = Clock::new();
        let mut rules = config.chat.clone();
        rules.require_identity |= config.auth_secret.is_some();
        let mut chat = Chat::new(rules);
        let now = clock.now();
        let sessions = snapshot.sessions.len();
        let mut cluster = cluster;
        for (token, nick) in snapshot.sessions {
            // In cluster mode Redis learns they live here again, so that a
            // client coming back through another node takes its session
            // from here (and this node lets it go).
            if let Some(engine) = &mut cluster {
                engine.session_here(&token, &nick);
            }
            chat.restore_session(now, token, nick);
        }
        // Conversations first: a direct message's retry is answered as one.
        for conversation in snapshot.conversations {
            chat.restore_conversation(conversation);
        }
        for message in snapshot.recent {
            chat.restore_message(now, message);
        }
        if sessions > 0 {
            info!(sessions, "restored sessions, waiting for their clients to resume them");
        }
        let (versions_tx, versions_rx) = mpsc::unbounded_channel();
        Self {
            chat,
            clock,
            conns: HashMap::new(),
            welcome,
            storage,
            commits: Commits::default(),
            store_failures: 0,
            readiness,
            staged: None,
            file_bytes: 0,
            uploads: config.uploads.clone(),
            drain_window: config.drain_window,
            ping_interval: config.ping_interval,
            ping_misses: config.ping_misses,
            max_input_wait: config.max_input_wait,
            batch: (config.transport.max_queued_frames / 4).clamp(1, BATCH),
            max_held: (config.transport.max_queued_frames / 2).clamp(1, MAX_HELD),
            overloaded: 0,
            unflushed: VecDeque::new(),
            docs: docs::Docs::new(cluster.is_some(), config.docs),
            versions_tx,
            versions_rx: Some(versions_rx),
            shutting_down: false,
            stats_subscribers: Vec::new(),
            stats_history: stats::History::default(),
            stats_token: config.stats_token.clone(),
            counters: Counters::new(Arc::clone(&metrics)),
            metrics,
            resuming: HashSet::new(),
            cluster,
        }
    }

    /// Runs until every sender of `inputs` is gone, then waits for storage
    /// to commit what it was given.
    pub(crate) async fn run(
        mut self,
        mut inputs: mpsc::Receiver<Input>,
        mut acks: mpsc::UnboundedReceiver<StorageEvent>,
        mut cluster_events: Option<mpsc::UnboundedReceiver<cluster::Event>>,
    ) {
        let mut checks = tokio::time::interval_at(
            tokio::time::Instant::now() + self.ping_interval,
            self.ping_interval,
        );
        checks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut stats = tokio::time::interval(Duration::from_secs(1));
        stats.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // In cluster mode, what PUB/SUB lost without a reconnect shows in
        // these checks (see `cluster::Engine::check`).
        let check_every =
            self.cluster.as_ref().map_or(Duration::from_secs(3600), cluster::Engine::check_every);
        let mut cluster_checks = tokio::time::interval(check_every);
        cluster_checks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut versions = self.versions_rx.take();
        loop {
            let deadline = self.chat.poll_timeout().map(|at| self.clock.instant(at));
            let timer = async {
                match deadline {
                    Some(deadline) => tokio::time::sleep_until(deadline).await,
                    None => std::future::pending().await,
                }
            };
            let mut turn = None;
            tokio::select! {
                // While storage lags far behind, stop taking inputs: the
                // connections then wait, and memory stays bounded.
                input = inputs.recv(), if self.commits.held() < self.max_held => match input {
                    Some(input) => {
                        turn = Some(Instant::now());
                        self.handle(input);
                    }
                    None => break,
                },
                Some(event) = acks.recv() => self.storage_event(event),
                Some(event) = next_event(&mut cluster_events) => self.cluster_event(event),
                Some(news) = next_event(&mut versions) => self.versions(news),
                () = timer => self.chat.handle_timeout(self.clock.now()),
                _ = checks.tick() => self.check_connections(),
                _ = stats.tick() => {
                    self.publish_stats();
                    // Carets of editors gone without a word go.
                    if !self.docs.is_empty() {
                        let flush = self.docs.expire(self.clock.now());
                        self.flush_later(flush);
                    }
                }
                _ = cluster_checks.tick(), if self.cluster.is_some() => {
                    if let Some(engine) = &mut self.cluster {
                        engine.check();
                    }
                }
            }
            // When the turn began: before its first input, if `select!`
            // took one.
            let first = usize::from(turn.is_some());
            let began = turn.unwrap_or_else(Instant::now);
            self.drain();
            let mut budget = self.batch;
            while !self.unflushed.is_empty() {
                // Before writing, let every task that is ready run (readers
                // queue their inputs) and take what they sent: under load,
                // each connection then gets many frames per write instead
                // of one write per frame. A long fan-out is written in
                // slices with the same pause between them, so a message
                // arriving meanwhile joins the writes still to come.
                tokio::task::yield_now().await;
                self.take_ready(&mut inputs, &mut acks, &mut cluster_events, &mut budget);
                self.flush(FLUSH_SLICE);
            }
            // A turn that took inputs: how many, and how long until
            // everything they caused was written.
            let taken = first + (self.batch - budget);
            if taken > 0 {
                self.metrics.hub_batch.observe(taken as f64);
                self.metrics.hub_turn.observe(began.elapsed().as_secs_f64());
            }
        }
        let storage = self.storage;
        // Joining the thread blocks: keep it off the runtime's workers.
        let _ = tokio::task::spawn_blocking(move || storage.finish()).await;
        debug!("chat task stopped");
    }

    /// Handles what is already waiting, without waiting for more: what
    /// storage and the shared engine answered (in cluster mode, the
    /// messages to deliver: those that came during a fan-out join its
    /// writes still to come, as inputs do), then inputs.
    fn take_ready(
        &mut self,
        inputs: &mut mpsc::Receiver<Input>,
        acks: &mut mpsc::UnboundedReceiver<StorageEvent>,
        cluster_events: &mut Option<mpsc::UnboundedReceiver<cluster::Event>>,
        budget: &mut usize,
    ) {
        while let Ok(event) = acks.try_recv() {
            self.storage_event(event);
            self.drain();
        }
        if let Some(events) = cluster_events {
            while *budget > 0 {
                let Ok(event) = events.try_recv() else { break };
                *budget -= 1;
                self.cluster_event(event);
            }
        }
        while *budget > 0 {
            if self.commits.held() >= self.max_held {
                break;
            }
            let Ok(input) = inputs.try_recv() else { break };
            *budget -= 1;
            self.handle(input);
            self.drain();
        }
    }

    /// Pings connections that went quiet, and closes those that answered
    /// no ping (4010) or never said `hello` (1008). One pass over every
    /// connection per interval, instead of a timer per connection.
    fn check_connections(&mut self) {
        // Documents of rooms their sessions left (or that ended) close.
        self.revoke_docs();
        let mut closing = Vec::new();
        for (&member, conn) in &mut self.conns {
            match conn.sink.check_alive(self.ping_misses) {
                Liveness::Heard => {}
                Liveness::Pinged | Liveness::Heartbeat => {
                    self.unflushed.push_back(conn.sink.clone());
                }
                Liveness::Unresponsive => {
                    closing.push((member, CloseCode::Unresponsive));
                    continue;
                }
            }
            if self.chat.nick(member).is_none() {
                conn.checks_without_hello += 1;
                if conn.checks_without_hello >= 2 {
                    closing.push((member, CloseCode::Policy));
                }
            }
        }
        for (member, code) in closing {
            info!(%member, code = code.code(), "closing a connection that is dead or never said hello");
            self.evict(member, code);
        }
    }

    /// Refuses a message that waited longer than the server promises to
    /// take one: taking it would make everyone's messages later still. Its
    /// client sends it again after a random delay, so retries spread out.
    fn refuse_overloaded(&mut self, member: MemberId, id: Option<String>) {
        self.overloaded += 1;
        let wait = u64::try_from(self.max_input_wait.as_millis()).unwrap_or(u64::MAX);
        let retry_after_ms = wait.saturating_add(rand::random_range(0..=wait));
        let frame = wire::overloaded(id, retry_after_ms);
        self.metrics.rate_limited("overloaded");
        self.reply(member, &frame);
    }

    /// Sends the live counters to `$stats` subscribers (once a second).
    fn publish_stats(&mut self) {
        if self.overloaded > 0 {
            warn!(refused = self.overloaded, "overloaded: messages that waited too long refused");
            self.overloaded = 0;
        }
        let messages_per_sec = self.counters.tick();
        let ts_ms = self.clock.now().as_unix_millis();
        let connections = self.conns.len() as u64;
        let queued: Vec<u64> = self.conns.values().map(|conn| conn.sink.queued() as u64).collect();
        self.set_gauges(&queued);
        self.stats_history.push(stats::Point { ts_ms, messages_per_sec, connections });
        if let Some(engine) = &self.cluster {
            // Every second, watched or not: the other nodes add it up.
            let people = self.chat.people(|member| self.stats_subscribers.contains(&member)) as u64;
            let counts = cluster::NodeCounts { at: ts_ms, connections, people, messages_per_sec };
            engine.report(counts);
        }
        if self.stats_subscribers.is_empty() {
            return;
        }
        let state = stats::State {
            connections: self.conns.len() as u64,
            sessions: self.chat.session_count() as u64,
            people: self.chat.people(|member| self.stats_subscribers.contains(&member)) as u64,
            watchers: self.stats_subscribers.len() as u64,
            rooms: self.chat.room_members(),
            queued,
            held_for_storage: self.commits.held() as u64,
            history_bytes: self.chat.history_bytes() as u64,
            file_bytes: self.file_bytes,
            storage_failing: self.store_failures > 0,
            node: self.welcome.server.node.clone(),
            cluster_down: self.cluster.as_ref().and_then(|engine| engine.health().down()),
            cluster: self.cluster.as_ref().and_then(cluster::Engine::totals),
        };
        let snapshot = self.counters.snapshot(messages_per_sec, state);
        let bytes = Utf8Bytes::from(wire::stats(&snapshot).encode());
        let to: Arc<[MemberId]> = self.stats_subscribers.iter().copied().collect();
        self.deliver(to, bytes, true);
    }

    /// The metrics the hub knows the value of, once a second.
    fn set_gauges(&self, queued: &[u64]) {
        let m = &self.metrics;
        let gauge = |gauge: &prometheus_client::metrics::gauge::Gauge, value: u64| {
            gauge.set(i64::try_from(value).unwrap_or(i64::MAX));
        };
        let sessions = self.chat.session_count() as u64;
        let attached = self.chat.people(|_| false) as u64;
        gauge(&m.sessions_attached, attached);
        gauge(&m.sessions_detached, sessions.saturating_sub(attached));
        gauge(&m.rooms, self.chat.room_count() as u64);
        gauge(&m.room_members, self.chat.memberships() as u64);
        gauge(&m.queued_frames, queued.iter().sum());
        gauge(&m.queued_frames_max, queued.iter().copied().max().unwrap_or(0));
        gauge(&m.held_for_storage, self.commits.held() as u64);
        gauge(&m.history_bytes, self.chat.history_bytes() as u64);
        gauge(&m.file_bytes, self.file_bytes);
        let quota = self.uploads.as_ref().map_or(0, |uploads| uploads.max_total_bytes);
        gauge(&m.file_quota_bytes, quota);
        if let Some(engine) = &self.cluster {
            gauge(&m.redis.up, u64::from(engine.health().down().is_none()));
        }
    }

    /// What storage said.
    fn storage_event(&mut self, event: StorageEvent) {
        match event {
            StorageEvent::Committed(ticket) => {
                if self.store_failures > 0 {
                    self.readiness.storage_failing(false);
                }
                self.store_failures = 0;
                self.committed(ticket);
            }
            StorageEvent::Failed(ticket) if self.commits.is_pending(ticket) => self.store_failed(),
            // Records taken back already.
            StorageEvent::Failed(_) => {}
            StorageEvent::Loaded(room, Ok(stored)) => {
                self.chat.handle_loaded(self.clock.now(), &room, stored);
            }
            StorageEvent::DocLoaded { room, doc, result } => {
                let chat = &self.chat;
                let allowed = |token: &SessionToken, room: &RoomName| chat.may_read(token, room);
                let flush = self.docs.loaded(room, doc, result, allowed);
                self.flush_later(flush);
                self.docs_done();
            }
            StorageEvent::Loaded(room, Err(())) => {
                self.chat.handle_load_failed(self.clock.now(), &room);
            }
            StorageEvent::FileRooms { rooms, token, reply } => {
                self.file_answer(&rooms, &token, reply);
            }
            StorageEvent::FileBytes(bytes) => self.file_bytes = bytes,
        }
    }

    /// The upload staged for `message`, if it carries it.
    fn take_staged(&mut self, message: &chat_core::Message) -> Option<Box<Staged>> {
        let (staged, _) = self.staged.as_ref()?;
        let carried = message.attachment.as_ref().is_some_and(|a| Arc::ptr_eq(a, staged));
        carried.then(|| self.staged.take().map(|(_, file)| file)).flatten()
    }

    /// A file is for sessions that may read a room holding it.
    fn file_answer(
        &self,
        rooms: &[(RoomName, Attachment)],
        token: &SessionToken,
        reply: oneshot::Sender<Option<Attachment>>,
    ) {
        let seen = rooms.iter().find(|(room, _)| self.chat.may_read(token, room));
        let _ = reply.send(seen.map(|(_, attachment)| attachment.clone()));
    }

    /// What came back from the engine the nodes share.
    fn cluster_event(&mut self, event: cluster::Event) {
        let Some(engine) = self.cluster.as_mut() else {
            return;
        };
        let now = self.clock.now();
        for step in engine.handle(event) {
            match step {
                cluster::Step::Loaded(room, history) => {
                    self.chat.handle_loaded(now, &room, history);
                }
                cluster::Step::LoadFailed(room) => self.chat.handle_load_failed(now, &room),
                cluster::Step::Appended(message) => {
                    self.metrics.messages.inc();
                    self.chat.handle_appended(now, message);
                }
                cluster::Step::Duplicate(member, original) => {
                    self.chat.handle_duplicate(now, member, original);
                }
                cluster::Step::Refuse(member, id) => {
                    let frame = wire::cluster_unavailable(id.as_deref().map(str::to_owned));
                    self.reply(member, &frame);
                }
                cluster::Step::Claimed(nick, answer) => {
                    self.chat.handle_claimed(now, &nick, answer);
                }
                cluster::Step::Remote(room, key, change) => {
                    self.chat.handle_remote(now, &room, &key, change);
                }
                cluster::Step::Roster(room, members) => {
                    self.chat.handle_remote_roster(now, &room, members);
                }
                cluster::Step::Found(member, found) => self.chat.handle_found(now, member, found),
                cluster::Step::Conversations(party, listed) => {
                    self.chat.handle_conversations(now, &party, listed);
                }
                cluster::Step::Whois(nick, holder) => self.chat.handle_whois(now, &nick, holder),
                cluster::Step::DocLoaded(room, doc, updates) => {
                    let chat = &self.chat;
                    let allowed =
                        |token: &SessionToken, room: &RoomName| chat.may_read(token, room);
                    let flush = self.docs.loaded(room, doc, updates.ok_or(()), allowed);
                    self.flush_later(flush);
                    self.docs_done();
                }
                cluster::Step::DocUpdate { room, doc, seq, update, own } => {
                    let flush = self.docs.remote(room, doc, seq, &update, own);
                    self.flush_later(flush);
                }
                cluster::Step::DocReset(room, doc) => self.docs.reset(room, doc),
                cluster::Step::DocAwareness(room, doc, message) => {
                    let flush = self.docs.remote_awareness(room, doc, &message);
                    self.flush_later(flush);
                }
                cluster::Step::Moved(token) => self.chat.handle_moved(now, &token),
                cluster::Step::Reset(room) => self.chat.handle_room_reset(now, &room),
                cluster::Step::FileBytes(bytes) => self.file_bytes = bytes,
                cluster::Step::FileRooms { rooms, token, reply } => {
                    self.file_answer(&rooms, &token, reply);
                }
            }
            self.drain();
        }
        self.docs_to_storage();
    }

    /// Storage committed every record up to `ticket`: release what waited.
    fn committed(&mut self, ticket: u64) {
        for delivery in self.commits.committed(ticket) {
            let event = delivery.event.as_deref();
            self.send_all(&delivery.to, &delivery.bytes, delivery.ephemeral, event);
        }
        if self.shutting_down && self.commits.held() == 0 {
            self.close_all();
        }
    }

    /// Storage could not keep the records in flight: the core takes their
    /// messages back and refuses new ones for a while; what waited for them
    /// goes out without them; then storage is tried again.
    fn store_failed(&mut self) {
        let (records, held) = self.commits.failed();
        let mut gone: HashSet<(RoomName, u64)> = HashSet::new();
        for record in &records {
            match record {
                Record::Message(m) | Record::Direct(chat_core::Direct { message: m, .. }) => {
                    gone.insert((m.room.clone(), m.seq));
                }
                Record::Session { .. }
                | Record::SessionEnded(_)
                | Record::Topic { .. }
                | Record::Doc { .. } => {}
            }
        }
        self.store_failures = self.store_failures.saturating_add(1);
        self.readiness.storage_failing(true);
        let exponent = self.store_failures.saturating_sub(1).min(5);
        let retry = Duration::from_secs(1 << exponent).min(STORE_RETRY_MAX);
        warn!(
            records = records.len(),
            retry_s = retry.as_secs(),
            "storage failed; refusing messages for a while"
        );
        self.chat.handle_unstored(self.clock.now(), records, retry);
        // Everything sent is resolved: what waited goes out, in order,
        // without what was taken back.
        for held in held {
            let (bytes, event) = match held.event.as_deref() {
                None => (Some(held.bytes), None),
                Some(event) => match without_unstored(event, &gone, &self.welcome) {
                    Trimmed::Gone => (None, None),
                    Trimmed::Unchanged => (Some(held.bytes), Some(Cow::Borrowed(event))),
                    Trimmed::Changed(bytes, event) => (Some(bytes), Some(Cow::Owned(*event))),
                },
            };
            if let Some(bytes) = bytes {
                self.send_all(&held.to, &bytes, held.ephemeral, event.as_deref());
            }
        }
        if !self.storage.send(Job::Resume) {
            error!("the storage thread is gone");
        }
        if self.shutting_down {
            self.close_all();
        }
    }

    /// Closes every connection for a restart, each with its own reconnect
    /// delay, uniformly spread over the drain window.
    /// Hands storage what the documents ask of it, in order; in cluster
    /// mode documents live in Redis, every node's.
    fn docs_to_storage(&mut self) {
        for job in self.docs.take_jobs() {
            self.give_storage(job);
        }
    }

    /// What documents did besides their connections: storage's jobs, and
    /// the restores done (or not), which the core tells the room.
    fn docs_done(&mut self) {
        self.docs_to_storage();
        let now = self.clock.now();
        for (who, (room, doc), result) in self.docs.take_restored() {
            let result =
                result.map_err(|()| CommandError::StoreUnavailable { retry_after_ms: 1000 });
            self.chat.handle_doc_restored(now, who.member, who.id, &room, &doc, result);
        }
        self.drain();
    }

    /// A document's versions, as storage (or Redis) answered.
    fn versions(&mut self, news: Versions) {
        match news {
            Versions::Listed { member, id, room, doc, result } => {
                let frame = match result {
                    Ok(versions) => ServerFrame::DocVersions {
                        id: id.as_deref().map(str::to_owned),
                        room: room.to_string(),
                        doc: doc.to_string(),
                        versions: versions
                            .into_iter()
                            .map(|v| chat_protocol::DocVersion {
                                version: v.version,
                                ts: v.ts,
                                bytes: v.bytes,
                            })
                            .collect(),
                    },
                    Err(()) => wire::error(
                        id.as_deref().map(str::to_owned),
                        &CommandError::StoreUnavailable { retry_after_ms: 1000 },
                    ),
                };
                self.reply(member, &frame);
            }
            Versions::Loaded { member, id, room, doc, version, result } => {
                let now = self.clock.now();
                match result {
                    Ok(Some(state)) => {
                        let who = docs::Restore { member, id };
                        let flush = self.docs.restore(room, doc, state, who, now);
                        self.flush_later(flush);
                        self.docs_done();
                    }
                    Ok(None) => {
                        let error = CommandError::NoSuchVersion { doc: doc.clone(), version };
                        self.chat.handle_doc_restored(now, member, id, &room, &doc, Err(error));
                    }
                    Err(()) => {
                        let error = CommandError::StoreUnavailable { retry_after_ms: 1000 };
                        self.chat.handle_doc_restored(now, member, id, &room, &doc, Err(error));
                    }
                }
            }
        }
    }

    /// Hands storage a job of documents; in cluster mode documents live in
    /// Redis, every node's.
    fn give_storage(&mut self, job: Job) {
        {
            if let Some(engine) = &mut self.cluster {
                match job {
                    Job::LoadDoc { room, doc } => engine.load_doc(&room, &doc),
                    Job::Doc(update) => engine.append_doc(&update.room, &update.doc, update.update),
                    Job::CompactDoc { room, doc, state, upto } => {
                        engine.compact_doc(&room, &doc, state, upto);
                    }
                    Job::ForgetDoc { room, doc } => engine.forget_doc(&room, &doc),
                    Job::Awareness { room, doc, message } => {
                        engine.share_awareness(&room, &doc, message);
                    }
                    Job::KeepVersion { room, doc, ts, state } => {
                        engine.keep_version(&room, &doc, ts, state);
                    }
                    Job::ListVersions { room, doc, reply } => {
                        engine.list_versions(&room, &doc, reply)
                    }
                    Job::LoadVersion { room, doc, version, reply } => {
                        engine.load_version(&room, &doc, version, reply);
                    }
                    other => {
                        let _ = self.storage.send(other);
                    }
                }
                return;
            }
            if !self.storage.send(job) {
                error!("the storage thread is gone; documents can no longer be kept");
            }
        }
    }

    /// Closes the documents of sessions no longer in their room.
    fn revoke_docs(&mut self) {
        if self.docs.is_empty() {
            return;
        }
        let chat = &self.chat;
        self.docs.revoke(|token, room| chat.may_read(token, room));
    }

    fn close_all(&mut self) {
        let window = self.drain_window;
        for (_, conn) in self.conns.drain() {
            let _ = conn.close.send(restart(window));
        }
        self.docs.close_all(CloseCode::GoingAway);
    }

    fn handle(&mut self, input: Input) {
        let now = self.clock.now();
        match input {
            Input::Connect { conn, source, reply } => {
                let member = self.chat.handle_connect(now, conn.token.clone(), source);
                if self.shutting_down {
                    let _ = conn.close.send(restart(self.drain_window));
                    self.chat.handle_disconnect(now, member, Departure::Quit);
                } else {
                    self.conns.insert(member, conn);
                }
                // If the connection is gone already, its Disconnect follows.
                let _ = reply.send(member);
            }
            Input::Command { member, id, command, read_at } => {
                if matches!(command, Command::Hello { session: Some(_), .. }) {
                    self.resuming.insert(member);
                }
                if is_message(&command) && read_at.elapsed() > self.max_input_wait {
                    self.refuse_overloaded(member, id);
                } else {
                    // Leaving a room, or a token renewed for fewer rooms,
                    // closes the session's documents there at once.
                    let leaves = matches!(command, Command::Leave { .. } | Command::Auth { .. });
                    self.chat.handle_command(now, member, id.as_deref(), command);
                    if leaves {
                        self.revoke_docs();
                    }
                }
            }
            Input::Malformed { member, error } => {
                // (An access token is checked as its frame is decoded.)
                if error.code == ErrorCode::Unauthorized {
                    self.metrics.refused("auth");
                    if self.metrics.connection_lines.allow() {
                        info!(%member, reason = "auth", "refused an access token");
                    }
                }
                let frame = wire::malformed(error);
                self.reply(member, &frame);
            }
            Input::Disconnect { member, departure } => {
                self.conns.remove(&member);
                self.resuming.remove(&member);
                self.stats_subscribers.retain(|&m| m != member);
                self.chat.handle_disconnect(now, member, departure);
                if departure == Departure::Quit {
                    self.revoke_docs();
                }
            }
            Input::File { token, file, reply } => {
                // Storage (Redis in cluster mode) knows which rooms hold the
                // file; the answer comes back as a `FileRooms` event.
                if let Some(engine) = &self.cluster {
                    engine.file_rooms(file, token, reply);
                } else if !self.storage.send(Job::FileRooms { file, token, reply }) {
                    error!("the storage thread is gone");
                }
            }
            Input::Subscribe { member, id, channel, token } => {
                let frame = if self.chat.nick(member).is_none() {
                    wire::refusal(id, ErrorCode::HelloRequired, "say hello first")
                } else if channel != stats::CHANNEL {
                    wire::refusal(id, ErrorCode::NoSuchChannel, &format!("no channel {channel:?}"))
                } else if self.stats_token.as_ref().is_some_and(|wanted| {
                    !token.as_deref().is_some_and(|t| crate::auth::same_secret(t, wanted))
                }) {
                    wire::refusal(
                        id,
                        ErrorCode::NoSuchChannel,
                        "the $stats channel needs its token",
                    )
                } else {
                    if !self.stats_subscribers.contains(&member) {
                        self.stats_subscribers.push(member);
                    }
                    wire::subscribed(id, channel)
                };
                let granted = matches!(frame, ServerFrame::Subscribed { .. });
                self.reply(member, &frame);
                if granted {
                    // The last minutes at once, for the chart.
                    let history = wire::stats_history(&self.stats_history);
                    self.deliver(Arc::new([member]), Utf8Bytes::from(history.encode()), true);
                }
            }
            Input::Refuse { member, id, code, message } => {
                let frame = wire::refusal(id, code, &message);
                self.reply(member, &frame);
            }
            Input::Upload { member, id, room, size, chunk_bytes, reply } => {
                let max_total = self.uploads.as_ref().map_or(0, |uploads| uploads.max_total_bytes);
                let (frame, ready) = if self.file_bytes.saturating_add(size) > max_total {
                    let why = "the server's file storage is full";
                    (wire::refusal(id, ErrorCode::QuotaExceeded, why), false)
                } else {
                    match self.chat.handle_upload(now, member, &room, size) {
                        Ok(()) => (wire::upload_ready(id, chunk_bytes), true),
                        Err(err) => {
                            // (`reply` counts its code.)
                            self.count_rate_limit(&err);
                            (wire::error(id, &err), false)
                        }
                    }
                };
                self.reply(member, &frame);
                let _ = reply.send(ready);
            }
            Input::DocOpen { target, outgoing, close, reply } => {
                if self.shutting_down {
                    let _ = reply.send(Err(docs::DocClose::for_now("the server is shutting down")));
                } else if !self.chat.may_read(&target.token, &target.room) {
                    let _ = reply.send(Err(docs::DocClose::not_member(&target.room)));
                } else {
                    let flush = self.docs.open(target, outgoing, close, reply);
                    self.flush_later(flush);
                    self.docs_to_storage();
                }
            }
            Input::DocFrame { conn, bytes } => {
                let flush = self.docs.receive(conn, &bytes, &mut self.chat, now);
                self.flush_later(flush);
                // The document list may have changed.
                self.drain();
                self.docs_to_storage();
            }
            Input::DocClosed { conn } => {
                let flush = self.docs.closed(conn);
                self.flush_later(flush);
                // (A version of what was made, and forgetting it.)
                self.docs_done();
            }
            Input::Uploaded { member, id, command, file } => {
                self.metrics.uploads.inc();
                self.metrics.upload_bytes.inc_by(file.size());
                if let Command::Say { attachment: Some(attachment), .. } = &command {
                    self.staged = Some((Arc::clone(attachment), file));
                }
                self.chat.handle_command(now, member, id.as_deref(), command);
                self.drain();
                // Not stored with a message (refused, or a retry of one
                // stored already): dropping it deletes it.
                self.staged = None;
            }
            Input::Shutdown => {
                info!(connections = self.conns.len(), "closing every connection");
                self.shutting_down = true;
                // What is being committed is still delivered first.
                if self.commits.held() == 0 {
                    self.close_all();
                }
            }
        }
    }

    /// Carries out every output of the core, in order.
    fn drain(&mut self) {
        while let Some(output) = self.chat.poll_output() {
            let (to, event) = match output {
                Output::Deliver { to, event } => (to, event),
                Output::Persist(record) => {
                    if matches!(record, Record::Message(_) | Record::Direct(_)) {
                        self.metrics.messages.inc();
                    }
                    // In cluster mode Redis learns where each session lives.
                    if let Some(engine) = &mut self.cluster {
                        match &record {
                            Record::Session { token, nick } => engine.session_here(token, nick),
                            Record::SessionEnded(token) => engine.session_ended(token),
                            _ => {}
                        }
                    }
                    let ticket = self.commits.issue(&record);
                    let file = match &record {
                        Record::Message(m) => self.take_staged(m).map(|file| *file),
                        _ => None,
                    };
                    let job = Job::Persist { ticket, record, file };
                    if !self.storage.send(job) {
                        error!("the storage thread is gone; messages can no longer be stored");
                    }
                    continue;
                }
                // In cluster mode rooms and conversations are read from
                // Redis (conversations are named by their parties' keys
                // there, never by tokens).
                Output::Load(room) => {
                    if let Some(engine) = &mut self.cluster {
                        engine.load(&room);
                    } else if !self.storage.send(Job::Load(room)) {
                        error!("the storage thread is gone; rooms can no longer be read");
                    }
                    continue;
                }
                // Only in cluster mode (`run` refuses shared sequencing
                // without it).
                Output::Append { member, message } => {
                    // A file uploaded with it goes in place with it.
                    let file = self.take_staged(&message);
                    if let Some(engine) = &self.cluster {
                        engine.append(member, message, file);
                    } else {
                        error!("a message to number in a shared engine, which this node has not");
                        let id = message.id.as_deref().map(str::to_owned);
                        let frame = wire::cluster_unavailable(id);
                        self.reply(member, &frame);
                    }
                    continue;
                }
                // Only in cluster mode, as appends.
                Output::AppendDirect { member, direct } => {
                    match &self.cluster {
                        Some(engine) => engine.append_direct(member, direct),
                        None => {
                            error!(
                                "a message to number in a shared engine, which this node has not"
                            );
                            let id = direct.message.id.as_deref().map(str::to_owned);
                            self.reply(member, &wire::cluster_unavailable(id));
                        }
                    }
                    continue;
                }
                Output::Forget(room) => {
                    if let Some(engine) = &mut self.cluster {
                        engine.forget(&room);
                    }
                    continue;
                }
                // Its list entry's deletion drops a document's content from
                // this node's storage (in the same commit); in cluster mode
                // the core that deleted it drops it from Redis.
                // Versions are storage's (Redis's): asked on a task of its
                // own, answered to the hub (`Versions`).
                Output::ListVersions { member, id, room, doc } => {
                    let (reply, answer) = oneshot::channel();
                    self.give_storage(Job::ListVersions {
                        room: room.clone(),
                        doc: doc.clone(),
                        reply,
                    });
                    let news = self.versions_tx.clone();
                    tokio::spawn(async move {
                        let result = answer.await.unwrap_or(Err(()));
                        let _ = news.send(Versions::Listed { member, id, room, doc, result });
                    });
                    continue;
                }
                Output::RestoreDoc { member, id, room, doc, version } => {
                    let (reply, answer) = oneshot::channel();
                    let job =
                        Job::LoadVersion { room: room.clone(), doc: doc.clone(), version, reply };
                    self.give_storage(job);
                    let news = self.versions_tx.clone();
                    tokio::spawn(async move {
                        let result = answer.await.unwrap_or(Err(()));
                        let _ =
                            news.send(Versions::Loaded { member, id, room, doc, version, result });
                    });
                    continue;
                }
                Output::DropDoc { room, doc, content } => {
                    if content && let Some(engine) = &self.cluster {
                        engine.delete_doc(&room, &doc);
                    }
                    self.docs.drop_doc(room, doc);
                    self.docs_to_storage();
                    continue;
                }
                // (Answered at once without a shared engine: nothing waits
                // for ever.)
                Output::Conversations { party, token } => {
                    match &mut self.cluster {
                        Some(engine) => engine.attend(party, token),
                        None => self.chat.handle_conversations(self.clock.now(), &party, None),
                    }
                    continue;
                }
                Output::Whois { nick } => {
                    match &self.cluster {
                        Some(engine) => engine.whois(nick),
                        None => self.chat.handle_whois(
                            self.clock.now(),
                            &nick,
                            chat_core::Holder::Unavailable,
                        ),
                    }
                    continue;
                }
                Output::Claim { nick, token } => {
                    match &self.cluster {
                        Some(engine) => engine.claim(nick, token),
                        None => {
                            error!("a nick to claim in a shared engine, which this node has not");
                            let answer = chat_core::ClaimAnswer::Unavailable;
                            self.chat.handle_claimed(self.clock.now(), &nick, answer);
                        }
                    }
                    continue;
                }
                Output::Release { nick, token } => {
                    if let Some(engine) = &mut self.cluster {
                        engine.release(nick, token);
                    }
                    continue;
                }
                Output::Share { room, token, change } => {
                    if let Some(engine) = &mut self.cluster {
                        engine.share(&room, &token, change);
                    }
                    continue;
                }
                Output::Lookup { member, token } => {
                    match &self.cluster {
                        Some(engine) => engine.lookup(member, token),
                        None => self.chat.handle_found(self.clock.now(), member, None),
                    }
                    continue;
                }
                Output::Disconnect { member, reason } => {
                    let code = match reason {
                        DisconnectReason::SessionResumedElsewhere => CloseCode::Replaced.into(),
                        DisconnectReason::IdentityExpired => CloseCode::TokenExpired.into(),
                        // Back within a second, spread out.
                        DisconnectReason::RoomReset => restart(Duration::from_secs(1)),
                    };
                    if let Some(conn) = self.conns.remove(&member) {
                        let _ = conn.close.send(code);
                    }
                    continue;
                }
            };
            self.count_event(&to, &event);
            let frame = wire::frame(&event, &self.welcome);
            // Encoded once; every recipient shares these bytes.
            let bytes = Utf8Bytes::from(frame.encode());
            let ephemeral = matches!(*event, Event::Typing { .. });
            self.deliver_event(to, bytes, ephemeral, Some(event));
        }
    }

    /// What an event of the core says for the metrics: its fan-out, an
    /// error, a resume, history served.
    fn count_event(&mut self, to: &[MemberId], event: &Event) {
        let m = &self.metrics;
        m.fanout.observe(to.len() as f64);
        match event {
            Event::Error { error, .. } => {
                m.error(wire::code(error));
                self.count_rate_limit(error);
            }
            Event::Welcome { resumed, .. } => {
                let asked = to.iter().any(|member| self.resuming.remove(member));
                match (asked, resumed) {
                    (true, true) => m.resumed("session_resumed"),
                    (true, false) => m.resumed("session_reset"),
                    (false, _) => {}
                }
            }
            Event::Joined { history, resume, .. } => {
                m.history_served.inc_by(history.len() as u64);
                match resume {
                    chat_core::Resume::Resumed => m.resumed("room_resumed"),
                    chat_core::Resume::Gap { .. } => m.resumed("room_gap"),
                    chat_core::Resume::Fresh => {}
                }
            }
            Event::History { messages, .. } => {
                m.history_served.inc_by(messages.len() as u64);
            }
            _ => {}
        }
    }

    /// An error of the core's that is a rate limit or a quota saying no,
    /// counted by its kind.
    fn count_rate_limit(&self, error: &CommandError) {
        let kind = match error {
            CommandError::RateLimited { .. } => "messages",
            CommandError::JoinRateLimited { .. } => "joins",
            CommandError::CreateRateLimited { .. } => "rooms",
            CommandError::HistoryRateLimited { .. } => "history",
            CommandError::QuotaExceeded { .. } => "uploads",
            _ => return,
        };
        self.metrics.rate_limited(kind);
    }

    /// Answers one member with a frame of the server's own (an error
    /// found outside the core, counted by its code).
    fn reply(&mut self, member: MemberId, frame: &ServerFrame) {
        if let ServerFrame::Error { code, .. } = frame {
            self.metrics.error(*code);
        }
        self.deliver(Arc::new([member]), Utf8Bytes::from(frame.encode()), false);
    }

    /// Sends now, or after the records issued so far are committed: in
    /// either case in the order deliveries were made.
    fn deliver(&mut self, to: Arc<[MemberId]>, bytes: Utf8Bytes, ephemeral: bool) {
        self.deliver_event(to, bytes, ephemeral, None);
    }

    fn deliver_event(
        &mut self,
        to: Arc<[MemberId]>,
        bytes: Utf8Bytes,
        ephemeral: bool,
        event: Option<Arc<Event>>,
    ) {
        let delivery = Delivery { to, bytes, ephemeral, event };
        if let Some(now) = self.commits.deliver(delivery) {
            self.send_all(&now.to, &now.bytes, now.ephemeral, now.event.as_deref());
        }
    }

    /// Documents' connections with frames pushed: written with the rest.
    fn flush_later(&mut self, flush: impl IntoIterator<Item = Arc<Outgoing>>) {
        self.unflushed.extend(flush.into_iter().map(Sink::Socket));
    }

    /// Writes the new frames of up to `most` connections, each with as few
    /// `writev` calls as its socket allows; a socket that is full is left to
    /// its connection task.
    fn flush(&mut self, most: usize) {
        for _ in 0..most {
            let Some(sink) = self.unflushed.pop_front() else { break };
            sink.flush();
        }
    }

    /// Queues `bytes` (which encode `event`, if the core made it) to
    /// every member of `to`, in its dialect; counted once for all.
    fn send_all(
        &mut self,
        to: &[MemberId],
        bytes: &Utf8Bytes,
        ephemeral: bool,
        event: Option<&Event>,
    ) {
        let (mut sent, mut sent_bytes) = (0u64, 0u64);
        let mut socketio = socketio::Encodings::new(bytes, event);
        for &member in to {
            if let Some(len) = self.send(member, bytes, ephemeral, &mut socketio) {
                sent += 1;
                sent_bytes += len as u64;
            }
        }
        self.metrics.deliveries.inc_by(sent);
        self.metrics.bytes_delivered.inc_by(sent_bytes);
    }

    /// Queues `bytes` to `member`, or what its dialect makes of them: how
    /// many bytes that was, or `None` if it has no connection (any more),
    /// or its dialect makes nothing of them.
    fn send(
        &mut self,
        member: MemberId,
        bytes: &Utf8Bytes,
        ephemeral: bool,
        socketio: &mut socketio::Encodings<'_>,
    ) -> Option<usize> {
        let conn = self.conns.get_mut(&member)?;
        let (pushed, len) = match &mut conn.dialect {
            Dialect::Native => (conn.sink.push_text(bytes.clone(), ephemeral), bytes.len()),
            Dialect::SocketIo(peer) => {
                let sink = &conn.sink;
                let (mut pushed, mut len) = (None, 0);
                socketio.each(peer, |packet| {
                    len += packet.len();
                    let this = sink.push_text(packet, ephemeral);
                    pushed = Some(pushed.map_or(this, |so_far| merge(so_far, this)));
                });
                // Nothing of it is for this client (a classic one is sent
                // room messages only): not a delivery.
                (pushed?, len)
            }
        };
        match pushed {
            Pushed::First => self.unflushed.push_back(conn.sink.clone()),
            Pushed::Queued | Pushed::Skipped => {}
            Pushed::Full => {
                warn!(%member, "outbound queue full; closing as too slow");
                self.evict(member, CloseCode::TooSlow);
                return None;
            }
            // The connection task ended; its Disconnect is on the way.
            Pushed::Closed => return None,
        }
        Some(len)
    }

    /// Closes a connection and takes it out of the chat at once, so no
    /// further fan-out waits on it.
    fn evict(&mut self, member: MemberId, code: CloseCode) {
        if let Some(conn) = self.conns.remove(&member) {
            let _ = conn.close.send(code.into());
        }
        // The client will resume; its session waits for it.
        self.chat.handle_disconnect(self.clock.now(), member, Departure::Lost);
        // The disconnect's presence notices are drained by the caller's loop.
    }
}

/// The next event of the engine the nodes share, if there is one.
async fn next_event<T>(events: &mut Option<mpsc::UnboundedReceiver<T>>) -> Option<T> {
    match events {
        Some(events) => events.recv().await,
        None => std::future::pending().await,
    }
}

/// What became of several frames pushed to one connection: the worst, or
/// the one that needs a flush.
fn merge(so_far: Pushed, this: Pushed) -> Pushed {
    match (so_far, this) {
        (Pushed::Full, _) | (_, Pushed::Full) => Pushed::Full,
        (Pushed::Closed, _) | (_, Pushed::Closed) => Pushed::Closed,
        (Pushed::First, _) | (_, Pushed::First) => Pushed::First,
        (Pushed::Queued, _) | (_, Pushed::Queued) => Pushed::Queued,
        (Pushed::Skipped, Pushed::Skipped) => Pushed::Skipped,
    }
}

/// Whether `command` is a message, which fans out: what an overloaded
/// server refuses.
fn is_message(command: &Command) -> bool {
    matches!(
        command,
        Command::Say { .. } | Command::Dm { .. } | Command::Edit { .. } | Command::Delete { .. }
    )
}

/// A held delivery once messages storage could not keep are cut out.
enum Trimmed {
    /// It was one of them: not sent.
    Gone,
    /// It holds none of them: sent as encoded.
    Unchanged,
    /// It held some: sent as encoded again without them.
    Changed(Utf8Bytes, Box<Event>),
}

/// `event` without the messages storage could not keep.
fn without_unstored(
    event: &Event,
    gone: &HashSet<(RoomName, u64)>,
    welcome: &WelcomeInfo,
) -> Trimmed {
    let is_gone = |m: &chat_core::Message| gone.contains(&(m.room.clone(), m.seq));
    // Direct messages are named by their conversation's key on the way out.
    let direct_gone = |key: &str, seq: u64| {
        gone.iter().any(|(room, s)| *s == seq && room.conversation_key() == key)
    };
    match event {
        Event::Message(m) if is_gone(m) => return Trimmed::Gone,
        Event::Direct { key, seq, .. } if direct_gone(key, *seq) => return Trimmed::Gone,
        _ => {}
    }
    // A page of messages loses what was taken back; one that announces
    // the newest `seq` says the newest kept.
    let mut trimmed = event.clone();
    let (messages, last_seq) = match &mut trimmed {
        Event::Joined { history, last_seq, .. } | Event::Conversation { history, last_seq, .. } => {
            (history, Some(last_seq))
        }
        Event::History { messages, .. } => (messages, None),
        _ => return Trimmed::Unchanged,
    };
    let Some(first_gone) = messages.iter().filter(|m| is_gone(m)).map(|m| m.seq).min() else {
        return Trimmed::Unchanged;
    };
    messages.retain(|m| !is_gone(m));
    if let Some(last_seq) = last_seq {
        *last_seq = first_gone - 1;
    }
    let bytes = Utf8Bytes::from(wire::frame(&trimmed, welcome).encode());
    Trimmed::Changed(bytes, Box::new(trimmed))
}
