//! The hub's side of cluster mode: what the core hands out to be agreed
//! (a message to number, a room to read) goes to Redis on tasks of its own,
//! and what comes back, the answers and what other nodes published, comes
//! to the hub as [`Event`]s, through [`Feed`] so that each room's messages
//! reach the core in `seq` order, once.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use std::sync::Arc;

use chat_core::{
    Attachment, ClaimAnswer, Conversation, Direct, Found, Holder, MemberId, Message, Nick,
    RemoteMember, RoomName, SessionToken, Shared,
};
use redis::RedisResult;
use tokio::sync::{mpsc, oneshot};
use tracing::{Instrument, debug, warn};

use super::follow::Follow;
use super::{
    Action, Appended, Feed, Heard, Listener, Nicks, Page, Published, RoomLog, Roster, Sessions,
    ToAppend, codec, digest,
};
use crate::files::Staged;

/// A message to number, for the connection that sent it.
#[derive(Debug)]
struct ToNumber {
    member: MemberId,
    message: Message,
    /// The file uploaded with it.
    file: Option<Box<Staged>>,
    /// A direct message's parties' nicks, to list its conversation with.
    nicks: Option<[Nick; 2]>,
}

/// The most messages appended in one round trip.
const APPEND_BATCH: usize = 64;

/// How often rooms' newest `seq`s are looked at (a lost last message
/// shows there), at most.
const CHECK_EVERY: Duration = Duration::from_secs(2);

/// What comes back to the hub.
#[derive(Debug)]
pub enum Event {
    /// What the subscription heard.
    Heard(Heard),
    /// The answer to an append `member` asked for, with the message as it
    /// was encoded for Redis (so the hub need not encode it again).
    Appended { member: MemberId, message: Message, encoded: Vec<u8>, result: RedisResult<Appended> },
    /// A read of `room`'s log from `from` on, for `why` (for a load, with
    /// who is in the room).
    Read { room: RoomName, why: Why, result: RedisResult<(Page, Option<RoomState>)> },
    /// Rooms' members read whole (`fresh`: after a reconnect), and the
    /// instances found dead.
    Rosters {
        rooms: Vec<String>,
        result: RedisResult<(Vec<Roster>, BTreeSet<String>)>,
        fresh: bool,
    },
    /// The answer to a claim of `nick` for the session of `token`.
    Claimed { nick: Nick, token: SessionToken, result: RedisResult<bool> },
    /// The cluster's counters, this node's included.
    Totals(RedisResult<super::ClusterTotals>),
    /// An answer the hub takes as it is (what the shared files take, the
    /// rooms holding a file).
    Ready(Step),
    /// Whether the session of `token`, asked for by `member`'s hello, was
    /// found on another node and taken over.
    Found { member: MemberId, token: SessionToken, result: RedisResult<Option<Found>> },
    /// The conversations of `party`, read for the core (`answer`) or after
    /// its channel was subscribed.
    Listed { party: Arc<str>, result: RedisResult<Vec<Conversation>> },
    /// A shared document's log read from `from` on (`load`: for the hub's
    /// first open of it, else to fill what the feed misses).
    DocRead { topic: String, load: bool, result: RedisResult<Page> },
    /// An update this node appended to a document's log.
    DocAppended { topic: String, update: Vec<u8>, result: RedisResult<Appended> },
}

/// What the nick task does, in the order asked.
#[derive(Debug)]
enum NickOp {
    Claim(Nick, SessionToken),
    Release(Nick, SessionToken),
    /// Renew the leases of these (folded nick, token).
    Renew(Vec<(String, String)>),
}

/// What a read of a room's log is for.
#[derive(Debug, Clone)]
pub enum Why {
    /// The core asked for the room ([`chat_core::Output::Load`]).
    Load,
    /// Messages the feed misses.
    Fill,
    /// The original of a retry, for `member`.
    Original(MemberId),
    /// The periodic look at a room's newest `seq`.
    Check,
}

/// What the hub must do with what came back.
#[derive(Debug)]
pub enum Step {
    /// Give the core what it asked of the room.
    Loaded(RoomName, Option<chat_core::RoomHistory>),
    /// Tell the core the room could not be read.
    LoadFailed(RoomName),
    /// Give the core the room's next message.
    Appended(Message),
    /// Answer `member`'s retry with its original.
    Duplicate(MemberId, Message),
    /// Refuse `member`'s message for now: Redis cannot be reached.
    Refuse(MemberId, Option<std::sync::Arc<str>>),
    /// Give the core the answer to its claim of a nick.
    Claimed(Nick, ClaimAnswer),
    /// Tell the core what member `key` of a room did on another node.
    Remote(RoomName, String, Shared),
    /// Give the core everyone in a room on the other nodes.
    Roster(RoomName, Vec<RemoteMember>),
    /// Answer the core's lookup for `member`.
    Found(MemberId, Option<Found>),
    /// Give the core a party's conversations (`None`: Redis failed).
    Conversations(Arc<str>, Option<Vec<Conversation>>),
    /// Answer the core's question: who holds the nick on another node?
    Whois(Nick, Holder),
    /// A shared document read from Redis (`None`: it could not be).
    DocLoaded(RoomName, RoomName, Option<Vec<Vec<u8>>>),
    /// Update `seq` of a shared document's log (`own`: appended here).
    DocUpdate { room: RoomName, doc: RoomName, seq: u64, update: Vec<u8>, own: bool },
    /// Redis lost a shared document's log.
    DocReset(RoomName, RoomName),
    /// Who is in a shared document, as another node says (an awareness
    /// message).
    DocAwareness(RoomName, RoomName, Vec<u8>),
    /// Tell the core the session of a token moved to another node.
    Moved(SessionToken),
    /// Tell the core a room's numbering started again in Redis.
    Reset(RoomName),
    /// Note what the shared files take (for the upload quota).
    FileBytes(u64),
    /// Answer a download: may the session of `token` have the file?
    FileRooms {
        rooms: Vec<(RoomName, Attachment)>,
        token: SessionToken,
        reply: oneshot::Sender<Option<Attachment>>,
    },
}

/// The hub's handle on the shared engine.
#[derive(Debug)]
pub struct Engine {
    metrics: std::sync::Arc<crate::metrics::Metrics>,
    log: RoomLog,
    /// Shared documents' logs: the same Redis, never trimmed by length.
    doc_log: RoomLog,
    /// Updates this node appended to documents' logs, until the feed
    /// delivers them (they are on this node's connections already).
    own_updates: BTreeSet<(String, u64)>,
    listener: Listener,
    feed: Feed,
    events: mpsc::UnboundedSender<Event>,
    /// Messages to number (with the file uploaded with one), to the one
    /// task that appends them in order.
    appends: mpsc::UnboundedSender<ToNumber>,
    /// Messages read per page of a room's log.
    page: usize,
    /// Nick claims, releases and renewals, to the one task that makes
    /// them in order (a release never overtakes the claim or renewal
    /// before it).
    nick_ops: mpsc::UnboundedSender<NickOp>,
    /// The nicks this node's sessions hold, by folded nick.
    held: BTreeMap<String, SessionToken>,
    /// Checks since the leases were last renewed.
    checks: u32,
    /// Leases are renewed, and rooms' members read whole, every this many
    /// checks: three times a lease.
    renew_every: u32,
    /// How often [`Engine::check`] is called.
    check_every: Duration,
    /// Who is in the rooms on the other nodes.
    follow: Follow,
    nicks: Nicks,
    sessions: Sessions,
    /// The sessions here, by the digest of their token.
    here: BTreeMap<String, SessionToken>,
    /// The party each session here speaks as in conversations, whose
    /// channel this node listens to while the session is here.
    parties: BTreeMap<SessionToken, Arc<str>>,
    totals: super::Totals,
    /// The cluster's counters as last read.
    last_totals: Option<super::ClusterTotals>,
    /// This node run, as the counters' hash names it.
    instance: String,
}

/// What the engine runs with.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// The Redis.
    pub url: String,
    /// This node's name.
    pub node: String,
    /// The lease nicks, session records and heartbeats are held under.
    pub lease: Duration,
    /// Messages each room's log keeps.
    pub history: usize,
    /// How long a message id is remembered for retries.
    pub remember: Duration,
    /// The directory of uploaded files every node shares, if uploads are
    /// on: swept every `sweep_every` (files younger than that are kept).
    pub files: Option<std::path::PathBuf>,
    /// See `files`.
    pub sweep_every: Duration,
    /// How long a file is kept after the newest message carrying it (the
    /// history's maximum age); `None`: for ever.
    pub files_keep_for: Option<Duration>,
    /// Where the engine counts (Redis round trips, fills, reconnects).
    pub(crate) metrics: std::sync::Arc<crate::metrics::Metrics>,
}

impl Engine {
    /// Connects to Redis as `config` says.
    ///
    /// # Errors
    /// Redis cannot be reached.
    pub async fn connect(
        config: &EngineConfig,
    ) -> RedisResult<(Self, mpsc::UnboundedReceiver<Event>)> {
        let EngineConfig { url, node, lease, history, remember, .. } = config;
        let (lease, history, remember) = (*lease, *history, *remember);
        let log = RoomLog::connect(url, "chat", history, remember).await?;
        // Each run is told apart: the members a previous run of this node
        // left in Redis are dropped once its heartbeat is gone.
        let instance = format!("{node}.{:08x}", rand::random::<u32>());
        let members = log.members();
        members.heartbeat(&instance, lease).await?;
        let sessions = log.sessions(&instance, lease);
        let (listener, mut heard) = Listener::spawn(log.clone(), sessions.channel());
        let (events, out) = mpsc::unbounded_channel();
        let forward = events.clone();
        tokio::spawn(
            async move {
                while let Some(heard) = heard.recv().await {
                    if forward.send(Event::Heard(heard)).is_err() {
                        return;
                    }
                }
            }
            .in_current_span(),
        );
        let (appends, queue) = mpsc::unbounded_channel();
        let keep_for = config.files_keep_for;
        let roundtrip = config.metrics.redis.roundtrip.clone();
        tokio::spawn(
            append_in_order(log.clone(), queue, events.clone(), (keep_for, roundtrip))
                .in_current_span(),
        );
        if let Some(dir) = config.files.clone() {
            let sweeping = sweep_files(log.clone(), dir, config.sweep_every, events.clone());
            tokio::spawn(sweeping.in_current_span());
        }
        let (nick_ops, queue) = mpsc::unbounded_channel();
        let nicks = log.nicks(&instance, lease);
        tokio::spawn(nicks_in_order(nicks.clone(), queue, events.clone()).in_current_span());
        let follow =
            Follow::spawn(instance.clone(), members, sessions.clone(), lease, events.clone());
        let check_every = CHECK_EVERY.min(lease / 6).max(Duration::from_millis(10));
        let renew = (lease / 3).as_millis() / check_every.as_millis().max(1);
        let renew_every = u32::try_from(renew).unwrap_or(u32::MAX).max(1);
        let engine = Self {
            metrics: std::sync::Arc::clone(&config.metrics),
            follow,
            nicks,
            sessions,
            here: BTreeMap::new(),
            parties: BTreeMap::new(),
            totals: log.totals(),
            last_totals: None,
            instance,
            doc_log: log.unbounded(),
            own_updates: BTreeSet::new(),
            log,
            listener,
            feed: Feed::default(),
            events,
            appends,
            page: history.max(1),
            nick_ops,
            held: BTreeMap::new(),
            checks: 0,
            renew_every,
            check_every,
        };
        Ok((engine, out))
    }

    /// The HTTP fallback's streams on this node: named after its run, so
    /// that other nodes can hand it their posts for them, as it hands
    /// theirs over (see [`Posts`](super::Posts)).
    pub async fn event_streams(&self) -> Arc<chat_transport::Streams> {
        let forward = Arc::new(super::Posts::new(self.log.clone()));
        let prefix = super::Posts::prefix(&self.instance);
        let streams = Arc::new(chat_transport::Streams::new(prefix, Some(forward)));
        super::Posts::listen(self.log.clone(), &self.instance, Arc::clone(&streams)).await;
        streams
    }

    /// Socket.IO's sessions on this node, run as `config` says: named
    /// after its run, so that other nodes can relay their long-polling
    /// requests for them, as it relays theirs (see
    /// [`Polls`](super::Polls)).
    pub async fn engineio(
        &self,
        config: chat_transport::engineio::SessionConfig,
    ) -> Arc<chat_transport::engineio::Engines> {
        super::Polls::engines(self.log.clone(), &self.instance, config).await
    }

    /// Whether this node can reach Redis now.
    pub fn health(&self) -> super::Health {
        self.log.health().clone()
    }

    /// The core wants `room`: listened to first, read once that is so. A
    /// conversation is heard on its parties' channels: read at once (and
    /// followed from there, unless it is already).
    pub fn load(&mut self, room: &RoomName) {
        if !room.is_conversation() {
            self.listener.listen(room.as_str());
            return;
        }
        if !self.feed.follows(room.as_str()) {
            self.feed.expect(room.as_str());
        }
        self.read(room.clone(), 1, self.page, Why::Load);
    }

    /// The core no longer holds `room` ([`chat_core::Output::Forget`]):
    /// this node stops listening to it, reading it and checking it.
    pub fn forget(&mut self, room: &RoomName) {
        self.listener.stop(room.as_str());
        self.feed.forget(room.as_str());
        self.follow.forget(room.as_str());
    }

    /// The hub opens shared document `doc` of `room`: its log is listened
    /// to, then read whole ([`Step::DocLoaded`]), then followed.
    pub fn load_doc(&mut self, room: &RoomName, doc: &RoomName) {
        let topic = doc_topic(room, doc);
        self.feed.expect(&topic);
        self.listener.listen(&topic);
    }

    /// Appends an update of a shared document to its log, for every node.
    /// One Redis cannot take stays in memory here and in its editors (they
    /// send it again when they reconnect).
    pub fn append_doc(&self, room: &RoomName, doc: &RoomName, update: Vec<u8>) {
        let topic = doc_topic(room, doc);
        let (log, events) = (self.doc_log.clone(), self.events.clone());
        tokio::spawn(
            async move {
                let result = log.append(&topic, None, &update).await;
                let _ = events.send(Event::DocAppended { topic, update, result });
            }
            .in_current_span(),
        );
    }

    /// Puts a document's `state` in its log and drops every update up to
    /// `upto` (all in the state).
    pub fn compact_doc(&self, room: &RoomName, doc: &RoomName, state: Vec<u8>, upto: u64) {
        let topic = doc_topic(room, doc);
        let (log, events) = (self.doc_log.clone(), self.events.clone());
        tokio::spawn(
            async move {
                let result = log.append(&topic, None, &state).await;
                if result.is_ok()
                    && upto > 0
                    && let Err(err) = log.trim_through(&topic, upto).await
                {
                    warn!(%err, "cannot compact a document's log in Redis");
                }
                let _ = events.send(Event::DocAppended { topic, update: state, result });
            }
            .in_current_span(),
        );
    }

    /// Tells the other nodes following a shared document an awareness
    /// message of it (carets, who is here). Lost if Redis is away: editors
    /// say theirs again every 15 s, and their clients forget what is not.
    pub fn share_awareness(&self, room: &RoomName, doc: &RoomName, message: Vec<u8>) {
        let topic = doc_topic(room, doc);
        let (log, instance) = (self.doc_log.clone(), self.instance.clone());
        tokio::spawn(
            async move {
                if let Err(err) = log.publish_awareness(&topic, &instance, &message).await {
                    debug!(%err, "cannot tell other nodes who is in a document");
                }
            }
            .in_current_span(),
        );
    }

    /// Deletes a shared document's log (it was deleted from its room's
    /// list); the nodes that had it open closed it on hearing so.
    pub fn delete_doc(&self, room: &RoomName, doc: &RoomName) {
        let topic = doc_topic(room, doc);
        let log = self.doc_log.clone();
        tokio::spawn(
            async move {
                if let Err(err) = log.delete(&topic).await {
                    warn!(%err, "cannot delete a document's log from Redis");
                }
            }
            .in_current_span(),
        );
    }

    /// Keeps a version of a shared document in Redis, for every node.
    pub fn keep_version(&self, room: &RoomName, doc: &RoomName, ts: u64, state: Vec<u8>) {
        let (topic, log) = (doc_topic(room, doc), self.doc_log.clone());
        tokio::spawn(
            async move {
                if let Err(err) = log.keep_version(&topic, ts, &state).await {
                    warn!(%err, "cannot keep a version of a document in Redis");
                }
            }
            .in_current_span(),
        );
    }

    /// Lists a shared document's versions from Redis, into `reply`.
    pub fn list_versions(
        &self,
        room: &RoomName,
        doc: &RoomName,
        reply: tokio::sync::oneshot::Sender<Result<Vec<crate::store::VersionInfo>, ()>>,
    ) {
        let (topic, log) = (doc_topic(room, doc), self.doc_log.clone());
        tokio::spawn(
            async move {
                let _ = reply.send(log.versions(&topic).await.map_err(drop));
            }
            .in_current_span(),
        );
    }

    /// Reads one version of a shared document from Redis, into `reply`.
    pub fn load_version(
        &self,
        room: &RoomName,
        doc: &RoomName,
        version: u64,
        reply: tokio::sync::oneshot::Sender<Result<Option<Vec<u8>>, ()>>,
    ) {
        let (topic, log) = (doc_topic(room, doc), self.doc_log.clone());
        tokio::spawn(
            async move {
                let _ = reply.send(log.version(&topic, version).await.map_err(drop));
            }
            .in_current_span(),
        );
    }

    /// A shared document left the hub's memory: no longer followed.
    pub fn forget_doc(&mut self, room: &RoomName, doc: &RoomName) {
        let topic = doc_topic(room, doc);
        self.listener.stop(&topic);
        self.feed.forget(&topic);
        self.own_updates.retain(|(of, _)| *of != topic);
    }

    /// Reads a document's log from `from` on, on a task of its own; a fill
    /// is tried again until Redis answers.
    fn read_doc(&self, topic: String, from: u64, load: bool) {
        let (log, events) = (self.doc_log.clone(), self.events.clone());
        tokio::spawn(
            async move {
                let mut wait = Duration::from_millis(100);
                loop {
                    let result = log.read(&topic, from, DOC_PAGE).await;
                    if let Err(err) = &result
                        && !load
                    {
                        warn!(%err, "cannot read a document's log from Redis; trying again");
                        tokio::time::sleep(wait).await;
                        wait = (wait * 2).min(Duration::from_secs(5));
                        if events.is_closed() {
                            return;
                        }
                        continue;
                    }
                    let _ = events.send(Event::DocRead { topic, load, result });
                    return;
                }
            }
            .in_current_span(),
        );
    }

    /// The session of `token` is here and speaks as `party`
    /// ([`chat_core::Output::Conversations`]): its channel is listened to
    /// and its conversations read for the core (and again once the
    /// channel is subscribed: what was listed meanwhile).
    pub fn attend(&mut self, party: Arc<str>, token: SessionToken) {
        if let Some(before) = self.parties.insert(token, Arc::clone(&party))
            && before != party
        {
            self.stop_unless_attended(&before);
        }
        self.listener.listen(&super::room_log::party_topic(&party));
        self.list(party);
    }

    /// Reads `party`'s conversations on a task of its own.
    fn list(&self, party: Arc<str>) {
        let (log, events) = (self.log.clone(), self.events.clone());
        tokio::spawn(
            async move {
                let result = log.conversations(&party).await;
                let _ = events.send(Event::Listed { party, result });
            }
            .in_current_span(),
        );
    }

    /// Stops listening to `party`'s channel if no session here speaks as
    /// it any more.
    fn stop_unless_attended(&self, party: &Arc<str>) {
        if !self.parties.values().any(|held| held == party) {
            self.listener.stop(&super::room_log::party_topic(party));
        }
    }

    /// The session of `token` is gone from here (ended, or moved away).
    fn unattend(&mut self, token: &SessionToken) {
        if let Some(party) = self.parties.remove(token) {
            self.stop_unless_attended(&party);
        }
    }

    /// Who holds `nick` on another node ([`chat_core::Output::Whois`]).
    pub fn whois(&self, nick: Nick) {
        let (nicks, sessions, events) =
            (self.nicks.clone(), self.sessions.clone(), self.events.clone());
        tokio::spawn(
            async move {
                let holder = match nicks.held_by(nick.folded()).await {
                    Ok(Some(key)) => {
                        // Its nick as written; the nick asked for will do
                        // if the record cannot be read.
                        let held = sessions.nick_of(&key).await.ok().flatten();
                        Holder::Elsewhere(Arc::from(key), held.unwrap_or_else(|| nick.clone()))
                    }
                    Ok(None) => Holder::Nobody,
                    Err(err) => {
                        warn!(%err, "cannot ask Redis who holds a nick");
                        Holder::Unavailable
                    }
                };
                let _ = events.send(Event::Ready(Step::Whois(nick, holder)));
            }
            .in_current_span(),
        );
    }

    /// How often to call [`Engine::check`].
    pub fn check_every(&self) -> Duration {
        self.check_every
    }

    /// Claims `nick` for the session of `token` ([`chat_core::Output::Claim`]).
    pub fn claim(&self, nick: Nick, token: SessionToken) {
        let _ = self.nick_ops.send(NickOp::Claim(nick, token));
    }

    /// Tells the other nodes what a member here did
    /// ([`chat_core::Output::Share`]).
    pub fn share(&mut self, room: &RoomName, token: &SessionToken, change: Shared) {
        self.follow.share(room, token, change);
    }

    /// Finds whether the session of `token` lives on another node and
    /// takes it over if so ([`chat_core::Output::Lookup`]).
    /// A session found nowhere whose token has conversations was this
    /// cluster's: they come to the core first, so that it keeps the token.
    pub fn lookup(&self, member: MemberId, token: SessionToken) {
        let (sessions, nicks, events) =
            (self.sessions.clone(), self.nicks.clone(), self.events.clone());
        let log = self.log.clone();
        tokio::spawn(
            async move {
                let result = sessions.take_over(token.as_str(), &nicks).await;
                if let Ok(None) = result {
                    let party: Arc<str> = digest(token.as_str()).into();
                    let listed = log.conversations(&party).await;
                    if listed.as_ref().is_ok_and(|listed| !listed.is_empty()) {
                        let _ = events.send(Event::Listed { party, result: listed });
                    }
                }
                let _ = events.send(Event::Found { member, token, result });
            }
            .in_current_span(),
        );
    }

    /// The session of `token` lives here now, as `nick` (it started,
    /// renamed, or moved here).
    pub fn session_here(&mut self, token: &SessionToken, nick: &Nick) {
        self.here.insert(digest(token.as_str()), token.clone());
        self.follow.session_here(token, nick);
    }

    /// The session of `token` ended here.
    pub fn session_ended(&mut self, token: &SessionToken) {
        self.here.remove(&digest(token.as_str()));
        self.unattend(token);
        self.follow.session_ended(token);
    }

    /// Reports this node's counters (once a second) and reads everyone's.
    pub fn report(&self, counts: super::NodeCounts) {
        let (totals, instance, events) =
            (self.totals.clone(), self.instance.clone(), self.events.clone());
        tokio::spawn(
            async move {
                let result = totals.report(&instance, counts).await;
                let _ = events.send(Event::Totals(result));
            }
            .in_current_span(),
        );
    }

    /// The cluster's counters as last read, if they could be.
    pub fn totals(&self) -> Option<super::ClusterTotals> {
        self.last_totals
    }

    /// Lets `nick` go ([`chat_core::Output::Release`]).
    pub fn release(&mut self, nick: Nick, token: SessionToken) {
        if self.held.get(nick.folded()) == Some(&token) {
            self.held.remove(nick.folded());
        }
        let _ = self.nick_ops.send(NickOp::Release(nick, token));
    }

    /// Looks at every room's newest `seq`: a last message whose
    /// publication was lost shows there; now and then renews the leases of
    /// the nicks held here. Called every few seconds.
    pub fn check(&mut self) {
        self.checks += 1;
        if self.checks >= self.renew_every {
            self.checks = 0;
            let held =
                self.held.iter().map(|(folded, token)| (folded.clone(), token.as_str().to_owned()));
            let _ = self.nick_ops.send(NickOp::Renew(held.collect()));
            self.follow.renew(self.here.values().map(|t| t.as_str().to_owned()).collect());
            self.follow.tick();
        }
        // (Conversations and documents are not looked at: there can be
        // many, and what a lost publication missed comes with the next
        // reconnect's fill.)
        for room in self.feed.rooms().filter(|room| !room.starts_with(['~', '%'])) {
            if let Ok(room) = RoomName::parse_stored(room) {
                self.read(room, u64::MAX, 1, Why::Check);
            }
        }
    }

    /// Numbers `message` for `member` (see [`chat_core::Output::Append`]),
    /// after every message handed over before it; `file`, uploaded with it,
    /// goes in place first and stays only if Redis takes the message.
    pub(crate) fn append(&self, member: MemberId, message: Message, file: Option<Box<Staged>>) {
        let _ = self.appends.send(ToNumber { member, message, file, nicks: None });
    }

    /// Numbers a direct message for `member`
    /// ([`chat_core::Output::AppendDirect`]), in order with the rest.
    pub(crate) fn append_direct(&self, member: MemberId, direct: Direct) {
        let Direct { message, nicks } = direct;
        let _ = self.appends.send(ToNumber { member, message, file: None, nicks: Some(nicks) });
    }

    /// Which rooms hold `file`, for the session of `token`
    /// ([`Step::FileRooms`] with `reply`).
    pub(crate) fn file_rooms(
        &self,
        file: String,
        token: SessionToken,
        reply: oneshot::Sender<Option<Attachment>>,
    ) {
        let (log, events) = (self.log.clone(), self.events.clone());
        tokio::spawn(
            async move {
                let rooms = log.file_rooms(&file).await.unwrap_or_else(|err| {
                    warn!(%err, "cannot look a file up in Redis");
                    Vec::new()
                });
                let _ = events.send(Event::Ready(Step::FileRooms { rooms, token, reply }));
            }
            .in_current_span(),
        );
    }

    /// Reads `room`'s log on a task of its own. A read for the feed or a
    /// retry is tried again until Redis answers (the feed waits for it); a
    /// load's failure goes to the core, which refuses what waited for it.
    fn read(&self, room: RoomName, from: u64, count: usize, why: Why) {
        let (log, events) = (self.log.clone(), self.events.clone());
        tokio::spawn(async move {
            let mut wait = Duration::from_millis(100);
            loop {
                let result = read_room(&log, &room, from, count, &why).await;
                match result {
                    Err(err) if !matches!(why, Why::Load) => {
                        warn!(%err, room = %room, "cannot read a room's log from Redis; trying again");
                        tokio::time::sleep(wait).await;
                        wait = (wait * 2).min(Duration::from_secs(5));
                        if events.is_closed() {
                            return;
                        }
                    }
                    result => {
                        let _ = events.send(Event::Read { room, why, result });
                        return;
                    }
                }
            }
        }.in_current_span());
    }

    /// What came back, as steps for the hub, in order.
    pub fn handle(&mut self, event: Event) -> Vec<Step> {
        match event {
            Event::Heard(Heard::Listening(topic)) if topic.starts_with('%') => {
                self.read_doc(topic, 1, true);
                Vec::new()
            }
            Event::DocRead { topic, load: true, result } => {
                let Some((room, doc)) = doc_of(&topic) else {
                    return Vec::new();
                };
                let page = match result {
                    Ok(page) => page,
                    Err(err) => {
                        warn!(%err, "cannot read a document's log from Redis");
                        self.feed.forget(&topic);
                        return vec![Step::DocLoaded(room, doc, None)];
                    }
                };
                let held = match self.feed.listening(&topic) {
                    true => Vec::new(),
                    false => self.feed.listen(&topic, &page.epoch, page.newest),
                };
                let updates = page.messages.into_iter().map(|(_, update)| update).collect();
                let mut steps = vec![Step::DocLoaded(room, doc, Some(updates))];
                steps.extend(self.act(held));
                steps
            }
            Event::DocRead { topic, load: false, result } => match result {
                Ok(page) => {
                    let actions = self.feed.filled(&topic, page);
                    self.act(actions)
                }
                Err(_) => Vec::new(),
            },
            Event::DocAppended { topic, update, result } => match result {
                Ok(appended) => {
                    self.own_updates.insert((topic.clone(), appended.seq));
                    let published = Published {
                        room: topic,
                        seq: appended.seq,
                        epoch: appended.epoch,
                        message: update,
                    };
                    self.heard(published)
                }
                Err(err) => {
                    warn!(%err, "Redis did not take a document's update; its editors keep it");
                    Vec::new()
                }
            },
            Event::Heard(Heard::Listening(room)) if room.starts_with('^') => {
                // A party's channel: what was listed before it was
                // subscribed is read again.
                let party = room.trim_start_matches('^');
                if self.parties.values().any(|held| &**held == party) {
                    self.list(Arc::from(party));
                }
                Vec::new()
            }
            Event::Heard(Heard::Listening(room)) => {
                // What is published before the read's answer is held.
                self.feed.expect(&room);
                self.follow.listening(&room);
                if let Ok(room) = RoomName::parse_stored(&room) {
                    self.read(room, 1, self.page, Why::Load);
                }
                Vec::new()
            }
            Event::Heard(Heard::Message(published)) => self.heard(published),
            Event::Listed { party, result } => {
                let listed = match result {
                    Ok(listed) => Some(listed),
                    Err(err) => {
                        warn!(%err, "cannot read a party's conversations from Redis");
                        None
                    }
                };
                vec![Step::Conversations(party, listed)]
            }
            Event::Heard(Heard::Presence(change)) => self.follow.heard(change),
            Event::Heard(Heard::Awareness { topic, from, message }) => {
                match (from != self.instance, doc_of(&topic)) {
                    (true, Some((room, doc))) => vec![Step::DocAwareness(room, doc, message)],
                    _ => Vec::new(),
                }
            }
            Event::Heard(Heard::Session(payload)) => {
                // Taken over by another node: let go here, quietly.
                let Some(key) = self.sessions.moved(&payload) else {
                    return Vec::new();
                };
                let Some(token) = self.here.remove(&key) else {
                    return Vec::new();
                };
                self.unattend(&token);
                self.held.retain(|_, held| *held != token);
                self.follow.moved(&key);
                vec![Step::Moved(token)]
            }
            Event::Ready(step) => vec![step],
            Event::Totals(result) => {
                self.last_totals = result.ok();
                Vec::new()
            }
            Event::Found { member, token, result } => {
                let found = match result {
                    Ok(found) => found,
                    Err(err) => {
                        warn!(%err, "cannot look a session up in Redis; a new one starts");
                        None
                    }
                };
                if let Some(found) = &found {
                    self.held.insert(found.nick.folded().to_owned(), token);
                }
                vec![Step::Found(member, found)]
            }
            Event::Heard(Heard::Reconnected) => {
                self.metrics.redis.reconnects.inc();
                self.follow.reconnected();
                let actions = self.feed.reconnected();
                self.act(actions)
            }
            Event::Rosters { rooms, result, fresh } => self.follow.rosters(rooms, result, fresh),
            Event::Appended { member, message, encoded, result } => match result {
                Ok(appended) if appended.duplicate => {
                    self.read(message.room, appended.seq, 1, Why::Original(member));
                    Vec::new()
                }
                // The node that appended does not wait to hear it back.
                Ok(appended) => {
                    let published = Published {
                        room: message.room.to_string(),
                        seq: appended.seq,
                        epoch: appended.epoch,
                        message: encoded,
                    };
                    self.heard(published)
                }
                Err(err) => {
                    warn!(%err, "Redis did not take a message; its sender is told to send it again");
                    vec![Step::Refuse(member, message.id)]
                }
            },
            Event::Claimed { nick, token, result } => {
                let answer = match result {
                    Ok(true) => {
                        self.held.insert(nick.folded().to_owned(), token);
                        ClaimAnswer::Granted
                    }
                    Ok(false) => ClaimAnswer::Taken,
                    Err(err) => {
                        warn!(%err, "cannot claim a nick in Redis");
                        ClaimAnswer::Unavailable
                    }
                };
                vec![Step::Claimed(nick, answer)]
            }
            Event::Read { room, why, result } => {
                let (page, roster) = match result {
                    Ok(read) => read,
                    // Only a load's read gives up (see `read`).
                    Err(err) => {
                        warn!(%err, room = %room, "cannot read a room's log from Redis");
                        self.follow.loaded(room.as_str(), None);
                        return vec![Step::LoadFailed(room)];
                    }
                };
                match why {
                    Why::Load if room.is_conversation() => {
                        let messages: Vec<Message> = page
                            .messages
                            .iter()
                            .filter_map(|(seq, bytes)| codec::decode(&room, *seq, bytes))
                            .collect();
                        // Followed already: the feed goes on from where it
                        // is (what it owes comes after the window).
                        let held = match self.feed.listening(room.as_str()) {
                            true => Vec::new(),
                            false => self.feed.listen(room.as_str(), &page.epoch, page.newest),
                        };
                        let history = (page.newest > 0).then(|| chat_core::RoomHistory {
                            last_seq: page.newest,
                            messages,
                            topic: None,
                            docs: Vec::new(),
                            remote: Vec::new(),
                        });
                        let mut steps = vec![Step::Loaded(room, history)];
                        steps.extend(self.act(held));
                        steps
                    }
                    Why::Load => {
                        let messages: Vec<Message> = page
                            .messages
                            .iter()
                            .filter_map(|(seq, bytes)| codec::decode(&room, *seq, bytes))
                            .collect();
                        let held = self.feed.listen(room.as_str(), &page.epoch, page.newest);
                        let (roster, docs) = roster.unzip();
                        let roster = roster.flatten();
                        let (remote, changes) = self.follow.loaded(room.as_str(), roster.as_ref());
                        let docs = docs.unwrap_or_default();
                        let topic = page.topic.map(std::sync::Arc::from);
                        let known = page.newest > 0
                            || !remote.is_empty()
                            || !docs.is_empty()
                            || topic.is_some();
                        let history = known.then_some(chat_core::RoomHistory {
                            last_seq: page.newest,
                            messages,
                            topic,
                            docs,
                            remote,
                        });
                        // The room first, then what came after its read.
                        let mut steps = vec![Step::Loaded(room, history)];
                        steps.extend(self.act(held));
                        steps.extend(changes);
                        steps
                    }
                    Why::Fill => {
                        let actions = self.feed.filled(room.as_str(), page);
                        let filled = actions.iter().filter(|a| matches!(a, Action::Deliver { .. }));
                        self.metrics.redis.filled.inc_by(filled.count() as u64);
                        self.act(actions)
                    }
                    Why::Check => {
                        let actions = self.feed.checked(room.as_str(), &page.epoch, page.newest);
                        self.act(actions)
                    }
                    Why::Original(member) => page
                        .messages
                        .first()
                        .and_then(|(seq, bytes)| codec::decode(&room, *seq, bytes))
                        .map(|original| vec![Step::Duplicate(member, original)])
                        .unwrap_or_default(),
                }
            }
        }
    }

    /// A message heard on a channel (or appended here). A conversation
    /// first heard now is followed from this message on.
    fn heard(&mut self, published: Published) -> Vec<Step> {
        if published.room.starts_with('~') && !self.feed.follows(&published.room) {
            let before = published.seq.saturating_sub(1);
            let held = self.feed.listen(&published.room, &published.epoch, before);
            debug_assert!(held.is_empty(), "nothing held for a room not followed");
        }
        let actions = self.feed.heard(published);
        self.act(actions)
    }

    fn act(&mut self, actions: Vec<Action>) -> Vec<Step> {
        let mut steps = Vec::new();
        for action in actions {
            match action {
                Action::Deliver { room, seq, message } if room.starts_with('%') => {
                    let own = self.own_updates.remove(&(room.clone(), seq));
                    if let Some((room, doc)) = doc_of(&room) {
                        steps.push(Step::DocUpdate { room, doc, seq, update: message, own });
                    }
                }
                Action::Fill { room, from } if room.starts_with('%') => {
                    self.read_doc(room, from, false);
                }
                Action::Reset { room, .. } if room.starts_with('%') => {
                    if let Some((room, doc)) = doc_of(&room) {
                        steps.push(Step::DocReset(room, doc));
                    }
                }
                Action::Deliver { room, seq, message } => {
                    let decoded = RoomName::parse_stored(&room)
                        .ok()
                        .and_then(|name| codec::decode(&name, seq, &message));
                    match decoded {
                        Some(message) => steps.push(Step::Appended(message)),
                        None => warn!(%room, seq, "a message in the log that does not decode"),
                    }
                }
                Action::Fill { room, from } => {
                    self.metrics.redis.fills.inc();
                    if let Ok(name) = RoomName::parse_stored(&room) {
                        self.read(name, from, self.page, Why::Fill);
                    }
                }
                // The next message comes with a jump in `seq`: the core
                // starts its window again after the gap, and members page
                // back into what the log still has.
                Action::Gap { room, from, to } => {
                    self.metrics.redis.lost.inc_by((to + 1).saturating_sub(from));
                    warn!(%room, from, to, "messages gone from the log before this node had them");
                }
                Action::Reset { room, epoch } => {
                    warn!(%room, %epoch, "a room's numbering started again in Redis (it lost its data)");
                    if let Ok(name) = RoomName::parse_stored(&room) {
                        steps.push(Step::Reset(name));
                    }
                }
            }
        }
        steps
    }
}

/// How many updates of a document's log are read at once.
const DOC_PAGE: usize = 100_000;

/// The topic (log and channel) of document `doc` of `room`: no room's or
/// conversation's name starts so.
fn doc_topic(room: &RoomName, doc: &RoomName) -> String {
    format!("%{room}/{doc}")
}

/// The document a topic names.
fn doc_of(topic: &str) -> Option<(RoomName, RoomName)> {
    let (room, doc) = topic.strip_prefix('%')?.split_once('/')?;
    Some((RoomName::parse(room).ok()?, RoomName::parse(doc).ok()?))
}

/// Appends messages in the order the core made them (a connection's
/// messages are numbered in the order it sent them): what queued while one
/// round trip was out goes in the next, as one pipeline of at most
/// [`APPEND_BATCH`] on one connection, which Redis runs in order.
async fn append_in_order(
    log: RoomLog,
    mut queue: mpsc::UnboundedReceiver<ToNumber>,
    events: mpsc::UnboundedSender<Event>,
    (keep_for, roundtrip): (Option<Duration>, prometheus_client::metrics::histogram::Histogram),
) {
    while let Some(first) = queue.recv().await {
        let mut batch = vec![first];
        while batch.len() < APPEND_BATCH {
            match queue.try_recv() {
                Ok(next) => batch.push(next),
                Err(_) => break,
            }
        }
        // A file goes in place before its message is numbered: whoever
        // sees the message can fetch it. One that cannot be placed refuses
        // its message for now.
        let mut placed: Vec<RedisResult<()>> = Vec::with_capacity(batch.len());
        for ToNumber { file, .. } in &mut batch {
            let place = file.as_mut().map_or(Ok(()), |file| file.place());
            placed.push(place.map_err(|err| {
                warn!(%err, "cannot put an uploaded file in place");
                redis::RedisError::from((redis::ErrorKind::Io, "cannot put the file in place"))
            }));
        }
        let encoded: Vec<Vec<u8>> =
            batch.iter().map(|number| codec::encode(&number.message)).collect();
        // An id is remembered under its sender's digest: no key of Redis
        // names a token.
        let senders: Vec<Option<String>> = batch
            .iter()
            .map(|number| number.message.sender.as_ref().map(|token| digest(token.as_str())))
            .collect();
        let all: Vec<ToAppend<'_>> = batch
            .iter()
            .zip(&senders)
            .zip(&encoded)
            .zip(&placed)
            .filter(|(_, placed)| placed.is_ok())
            .map(|(((ToNumber { message, .. }, sender), bytes), _)| ToAppend {
                room: message.room.as_str(),
                id: sender.as_deref().zip(message.id.as_deref()),
                message: bytes,
            })
            .collect();
        let began = std::time::Instant::now();
        let mut appended = append_batch(&log, &all).await.into_iter();
        roundtrip.observe(began.elapsed().as_secs_f64());
        let mut results: Vec<RedisResult<Appended>> = Vec::with_capacity(batch.len());
        for place in placed {
            results.push(match place {
                Ok(()) => appended.next().unwrap_or_else(|| Err(miscount())),
                Err(err) => Err(err),
            });
        }
        let answers = batch.into_iter().zip(encoded).zip(results);
        for ((ToNumber { member, message, file, nicks }, encoded), result) in answers {
            if let (Some(nicks), Ok(appended)) = (&nicks, &result)
                && !appended.duplicate
            {
                let (name, seq, ts) = (message.room.as_str(), appended.seq, message.ts);
                if let Err(err) = log.list_direct(name, nicks, seq, ts).await {
                    warn!(%err, "cannot list a conversation in Redis");
                }
            }
            if let (Some(mut file), Some(attachment), Ok(appended)) =
                (file, &message.attachment, &result)
                && !appended.duplicate
            {
                // Numbered: the file stays, and every node can find it.
                file.keep();
                let (room, seq) = (message.room.as_str(), appended.seq);
                if let Err(err) = log.file_in(room, seq, attachment, keep_for).await {
                    warn!(%err, "cannot note in Redis which room holds a file");
                }
            }
            // A deleted message's file is no longer the room's.
            if let (chat_core::MessageKind::Delete(of), Ok(appended)) = (message.kind, &result)
                && !appended.duplicate
                && let Err(err) = log.file_deleted(&message.room, of).await
            {
                warn!(%err, "cannot note in Redis that a deleted message's file is gone");
            }
            if events.send(Event::Appended { member, message, encoded, result }).is_err() {
                return;
            }
        }
    }
}

/// Sweeps the shared files directory every `every`, and tells the hub
/// what the files left take.
async fn sweep_files(
    log: RoomLog,
    dir: std::path::PathBuf,
    every: Duration,
    events: mpsc::UnboundedSender<Event>,
) {
    let mut ticks = tokio::time::interval(every.max(Duration::from_millis(10)));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        match super::files::sweep(&log, dir.clone(), every).await {
            Ok(bytes) => {
                if events.send(Event::Ready(Step::FileBytes(bytes))).is_err() {
                    return;
                }
            }
            Err(err) => warn!(%err, "cannot sweep the shared files: Redis did not answer"),
        }
    }
}

/// Appends `all` in one round trip (one script call for a single one).
async fn append_batch(log: &RoomLog, all: &[ToAppend<'_>]) -> Vec<RedisResult<Appended>> {
    match all {
        [] => Vec::new(),
        [one] => vec![log.append(one.room, one.id, one.message).await],
        _ => match log.append_all(all).await {
            Ok(appended) if appended.len() == all.len() => appended.into_iter().map(Ok).collect(),
            Ok(_) => all.iter().map(|_| Err(miscount())).collect(),
            Err(err) => all.iter().map(|_| Err(err.clone())).collect(),
        },
    }
}

/// The error for a pipeline that answered another number of replies.
fn miscount() -> redis::RedisError {
    redis::RedisError::from((
        redis::ErrorKind::Client,
        "a pipeline of appends answered another number of replies",
    ))
}

/// Claims, releases and renews nicks one after the other, in the order the
/// hub asked.
async fn nicks_in_order(
    nicks: Nicks,
    mut queue: mpsc::UnboundedReceiver<NickOp>,
    events: mpsc::UnboundedSender<Event>,
) {
    while let Some(op) = queue.recv().await {
        match op {
            NickOp::Claim(nick, token) => {
                let result = nicks.claim(nick.folded(), token.as_str()).await;
                if events.send(Event::Claimed { nick, token, result }).is_err() {
                    return;
                }
            }
            // A release that fails leaves the lease to run out.
            NickOp::Release(nick, token) => {
                if let Err(err) = nicks.release(nick.folded(), token.as_str()).await {
                    warn!(%err, "cannot release a nick in Redis; its lease will run out");
                }
            }
            NickOp::Renew(held) => match nicks.renew(&held).await {
                Ok(lost) => {
                    for folded in lost {
                        warn!(nick = %folded, "a nick held here is another session's in Redis now (Redis lost it?)");
                    }
                }
                Err(err) => warn!(%err, "cannot renew the nicks' leases in Redis"),
            },
        }
    }
}

/// What a room's load reads besides its log: who is in it, and its
/// document list.
type RoomState = (Option<Roster>, Vec<chat_core::DocEntry>);

/// Reads `room`'s log from `from` on; for a load, with who is in the room
/// and its documents.
async fn read_room(
    log: &RoomLog,
    room: &RoomName,
    from: u64,
    count: usize,
    why: &Why,
) -> RedisResult<(Page, Option<RoomState>)> {
    let page = log.read(room.as_str(), from, count).await?;
    if !matches!(why, Why::Load) || room.is_conversation() {
        return Ok((page, None));
    }
    let rosters = log.members().read(&[room.to_string()]).await?;
    let docs = log.members().docs(room.as_str()).await?;
    Ok((page, Some((rosters.into_iter().next(), docs))))
}
