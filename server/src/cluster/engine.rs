//! The hub's side of cluster mode: what the core hands out to be agreed
//! (a message to number, a room to read) goes to Redis on tasks of its own,
//! and what comes back, the answers and what other nodes published, comes
//! to the hub as [`Event`]s, through [`Feed`] so that each room's messages
//! reach the core in `seq` order, once.

use std::time::Duration;

use std::collections::BTreeMap;

use chat_core::{ClaimAnswer, MemberId, Message, Nick, RoomName, SessionToken};
use redis::RedisResult;
use tokio::sync::mpsc;
use tracing::{Instrument, warn};

use super::{Action, Appended, Feed, Heard, Listener, Nicks, Page, Published, RoomLog, codec};

/// How long a nick claim lasts unless its node renews it: how soon the
/// nicks of a node that died come free.
const NICK_LEASE: Duration = Duration::from_secs(30);

/// Leases are renewed every this many checks (every 10 s).
const RENEW_EVERY: u32 = 5;

/// What comes back to the hub.
#[derive(Debug)]
pub enum Event {
    /// What the subscription heard.
    Heard(Heard),
    /// The answer to an append `member` asked for.
    Appended { member: MemberId, message: Message, result: RedisResult<Appended> },
    /// A read of `room`'s log from `from` on, for `why`.
    Read { room: RoomName, why: Why, result: RedisResult<Page> },
    /// The answer to a claim of `nick` for the session of `token`.
    Claimed { nick: Nick, token: SessionToken, result: RedisResult<bool> },
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
}

/// The hub's handle on the shared engine.
#[derive(Debug)]
pub struct Engine {
    log: RoomLog,
    listener: Listener,
    feed: Feed,
    events: mpsc::UnboundedSender<Event>,
    /// Messages to number, to the one task that appends them in order.
    appends: mpsc::UnboundedSender<(MemberId, Message)>,
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
}

impl Engine {
    /// Connects to Redis at `url`; rooms keep `history` messages.
    ///
    /// # Errors
    /// Redis cannot be reached.
    pub async fn connect(
        url: &str,
        history: usize,
        remember: Duration,
    ) -> RedisResult<(Self, mpsc::UnboundedReceiver<Event>)> {
        let log = RoomLog::connect(url, "chat", history, remember).await?;
        let (listener, mut heard) = Listener::spawn(log.clone());
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
        tokio::spawn(append_in_order(log.clone(), queue, events.clone()).in_current_span());
        let (nick_ops, queue) = mpsc::unbounded_channel();
        let nicks = log.nicks(NICK_LEASE);
        tokio::spawn(nicks_in_order(nicks, queue, events.clone()).in_current_span());
        let engine = Self {
            log,
            listener,
            feed: Feed::default(),
            events,
            appends,
            page: history.max(1),
            nick_ops,
            held: BTreeMap::new(),
            checks: 0,
        };
        Ok((engine, out))
    }

    /// Whether this node can reach Redis now.
    pub fn health(&self) -> super::Health {
        self.log.health().clone()
    }

    /// The core wants `room`: listened to first, read once that is so.
    pub fn load(&self, room: &RoomName) {
        self.listener.listen(room.as_str());
    }

    /// Claims `nick` for the session of `token` ([`chat_core::Output::Claim`]).
    pub fn claim(&self, nick: Nick, token: SessionToken) {
        let _ = self.nick_ops.send(NickOp::Claim(nick, token));
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
        if self.checks >= RENEW_EVERY {
            self.checks = 0;
            let held =
                self.held.iter().map(|(folded, token)| (folded.clone(), token.as_str().to_owned()));
            let _ = self.nick_ops.send(NickOp::Renew(held.collect()));
        }
        for room in self.feed.rooms() {
            if let Ok(room) = RoomName::parse_stored(room) {
                self.read(room, u64::MAX, 1, Why::Check);
            }
        }
    }

    /// Numbers `message` for `member` (see [`chat_core::Output::Append`]),
    /// after every message handed over before it.
    pub fn append(&self, member: MemberId, message: Message) {
        let _ = self.appends.send((member, message));
    }

    /// Reads `room`'s log on a task of its own. A read for the feed or a
    /// retry is tried again until Redis answers (the feed waits for it); a
    /// load's failure goes to the core, which refuses what waited for it.
    fn read(&self, room: RoomName, from: u64, count: usize, why: Why) {
        let (log, events) = (self.log.clone(), self.events.clone());
        tokio::spawn(async move {
            let mut wait = Duration::from_millis(100);
            loop {
                let result = log.read(room.as_str(), from, count).await;
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
            Event::Heard(Heard::Listening(room)) => {
                // What is published before the read's answer is held.
                self.feed.expect(&room);
                if let Ok(room) = RoomName::parse_stored(&room) {
                    self.read(room, 1, self.page, Why::Load);
                }
                Vec::new()
            }
            Event::Heard(Heard::Message(published)) => {
                let actions = self.feed.heard(published);
                self.act(actions)
            }
            Event::Heard(Heard::Reconnected) => {
                let actions = self.feed.reconnected();
                self.act(actions)
            }
            Event::Appended { member, message, result } => match result {
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
                        message: codec::encode(&message),
                    };
                    let actions = self.feed.heard(published);
                    self.act(actions)
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
                let page = match result {
                    Ok(page) => page,
                    // Only a load's read gives up (see `read`).
                    Err(err) => {
                        warn!(%err, room = %room, "cannot read a room's log from Redis");
                        return vec![Step::LoadFailed(room)];
                    }
                };
                match why {
                    Why::Load => {
                        let messages: Vec<Message> = page
                            .messages
                            .iter()
                            .filter_map(|(seq, bytes)| codec::decode(&room, *seq, bytes))
                            .collect();
                        let held = self.feed.listen(room.as_str(), &page.epoch, page.newest);
                        let history = (page.newest > 0).then_some(chat_core::RoomHistory {
                            last_seq: page.newest,
                            messages,
                            topic: None,
                        });
                        // The room first, then what came after its read.
                        let mut steps = vec![Step::Loaded(room, history)];
                        steps.extend(self.act(held));
                        steps
                    }
                    Why::Fill => {
                        let actions = self.feed.filled(room.as_str(), page);
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

    fn act(&mut self, actions: Vec<Action>) -> Vec<Step> {
        let mut steps = Vec::new();
        for action in actions {
            match action {
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
                    if let Ok(name) = RoomName::parse_stored(&room) {
                        self.read(name, from, self.page, Why::Fill);
                    }
                }
                // Not told to members yet: the core has no input for it.
                Action::Gap { room, from, to } => {
                    warn!(%room, from, to, "messages gone from the log before this node had them");
                }
                Action::Reset { room, epoch } => {
                    warn!(%room, %epoch, "a room's numbering started again in Redis");
                }
            }
        }
        steps
    }
}

/// Appends messages one after the other, in the order the core made them:
/// a connection's messages are numbered in the order it sent them. (One
/// at a time costs a Redis round trip per message; pipelining them in
/// order is for later.)
async fn append_in_order(
    log: RoomLog,
    mut queue: mpsc::UnboundedReceiver<(MemberId, Message)>,
    events: mpsc::UnboundedSender<Event>,
) {
    while let Some((member, message)) = queue.recv().await {
        let key = message.sender.as_ref().zip(message.id.as_deref());
        let id = key.map(|(sender, id)| (sender.as_str(), id));
        let result = log.append(message.room.as_str(), id, &codec::encode(&message)).await;
        if events.send(Event::Appended { member, message, result }).is_err() {
            return;
        }
    }
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
