//! The client's session as a deterministic state machine: everything that
//! outlives one connection, with no sockets, no files, no clock and no
//! random source in it.
//!
//! A session greets (resuming its token), joins its rooms from the last
//! `seq` seen in each, pages back past a resume's cap, reports what each
//! room missed once it is complete, re-sends unacknowledged messages with
//! their original ids (the server's deduplication makes that
//! exactly-once), paces every frame to the announced limits, and after any
//! disconnect waits (the server's `retry_ms`, else backoff with seeded
//! jitter) and does it all again.
//!
//! # Contract
//!
//! The driver (`engine.rs`) feeds it inputs with the `handle_*` methods,
//! each with the time now. After [`Session::new`] and after each
//! `handle_*` call it drains [`Session::poll_transmit`] until `None`,
//! carrying each [`Transmit`] out in order (a failed send is a
//! [`Session::handle_disconnected`]), then [`Session::poll_event`] until
//! `None` (for the frontend), then [`Session::poll_save`] (for the outbox),
//! and calls [`Session::handle_timeout`] at [`Session::poll_timeout`].
//! Spurious timeouts are harmless. Once an [`Event::Done`] or
//! [`Event::Failed`] has been polled the session is over.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use chat_protocol::{
    Attachment, ClientFrame, ClientMessage, CloseCode, ErrorCode, Limits, Message, ServerFrame,
    encode_client,
};

use self::catch_up::CatchUp;
use self::conversations::Conversations;
use self::upload::Sending;
pub use self::upload::{FileId, Upload};
use crate::outbox::Saved;
use crate::pacer::Pacer;
use crate::render;

mod catch_up;
mod conversations;
#[cfg(test)]
mod sim;
#[cfg(test)]
pub(crate) mod tests;
mod upload;

/// Reconnect delays grow from this...
const BACKOFF_MIN: Duration = Duration::from_millis(500);
/// ...to at most this, with full jitter.
const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// How a session is set up.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    /// The nick asked for in the first `hello`.
    pub nick: Option<String>,
    /// The access token, for servers with authentication on.
    pub access_token: Option<String>,
    /// Rooms to join, in order, each from after a `seq` if given (`chat
    /// tail --after`).
    pub rooms: Vec<(String, Option<u64>)>,
    /// Whether a failure before the first connection is up ends the session
    /// (line mode: the user has something to fix) rather than being retried
    /// (the full-screen client, which can be used offline).
    pub first_failure_fatal: bool,
    /// How long a quit waits for the server to acknowledge what was sent.
    pub linger: Duration,
    /// Whether unacknowledged messages are kept on disk (an outbox): then a
    /// quit while offline ends at once, as nothing is lost.
    pub durable: bool,
    /// Seeds the backoff jitter and the message ids.
    pub seed: u64,
}

/// What a frontend asks of the session.
#[derive(Debug, Clone)]
pub enum Command {
    /// Send a frame with a fresh id. A `say` or `dm` is kept until the
    /// server acknowledges it, and typed while offline it waits for the
    /// reconnect; other frames need a connection.
    Send(ClientFrame),
    /// Send a frame with the id given (raw frames in `--json` mode).
    SendAs(String, ClientFrame),
    /// Send a file; the driver has opened it as `file`.
    Upload(Upload),
    /// Leave: once everything sent is acknowledged (and uploads are done),
    /// or after the linger time; at once while offline with a durable
    /// outbox.
    Quit,
}

/// What the driver must do on the session's behalf.
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub enum Transmit {
    /// Open a connection; answer with [`Session::handle_connected`] or
    /// [`Session::handle_disconnected`].
    Connect,
    /// Send this text frame.
    Text(String),
    /// Read up to `max` bytes of `file` and send them as one binary frame;
    /// answer with [`Session::handle_chunk`] (0 bytes at the end of the
    /// file) or [`Session::handle_chunk_failed`].
    Chunk {
        /// The file.
        file: FileId,
        /// The most bytes to send.
        max: usize,
    },
    /// Close the connection normally (1000) and forget it: it is not
    /// reported as a disconnect.
    Close,
}

/// How a connection ended, as the driver saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Disconnect {
    /// There was no connection: connecting, TLS or the upgrade failed.
    Unreachable(String),
    /// The server closed it with this close frame.
    Closed {
        /// The close code.
        code: u16,
        /// The close reason.
        reason: String,
    },
    /// It broke: an error, or it ended without a close frame.
    Broken(String),
}

/// Why a session cannot go on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Failure {
    /// Another client resumed this session: reconnecting would take it back.
    #[error("the session was resumed by another client")]
    Replaced,
    /// The access token was refused, or it expired: trying again with it
    /// cannot help.
    #[error("{0}")]
    Refused(String),
    /// The first connection could not be made (with
    /// [`SessionConfig::first_failure_fatal`]).
    #[error("{0}")]
    Unreachable(String),
    /// The server refused the first `hello` or a first `join` (with
    /// [`SessionConfig::first_failure_fatal`]).
    #[error("{0}")]
    Rejected(String),
}

/// What the session reports.
#[derive(Debug)]
pub enum Event {
    /// A frame from the server; `frame` is `None` for one this client
    /// cannot read (a newer server's). `catch_up` marks frames of a
    /// resume's catch-up (a re-`welcome`, a `joined` that resumed, the
    /// `history` pages) whose messages are reported again, complete and in
    /// order, in [`Event::Missed`].
    Frame { text: String, frame: Option<Box<ServerFrame>>, catch_up: bool },
    /// Every message one room missed, oldest first.
    Missed {
        room: String,
        /// Oldest first.
        messages: Vec<Message>,
        /// The messages lost to retention before the first one here.
        gap: Option<chat_protocol::Gap>,
    },
    /// How the rooms answered a reconnect, in one line.
    Resumed(String),
    /// The connection's state changed.
    Link(Link),
    /// How many messages wait for the server's acknowledgement.
    Queued(usize),
    /// A message is on its way (typed, or from the outbox): a frontend
    /// shows it as being sent until [`Event::Sent`] for its id.
    Sending { id: String, frame: ClientFrame },
    /// The server has the message `id` (its copy is reported as a frame),
    /// or refused it for good (`refused`; the error is reported too).
    Sent { id: String, refused: bool },
    /// Something about the connection the user should know.
    Notice(String),
    /// The outcome of something the user asked for (a file saved): shown
    /// where the user is.
    Info(String),
    /// A command that could not be carried out, and why.
    Problem(String),
    /// The session ended after a quit.
    Done { unacked: usize, refused: usize },
    /// The session ended because it cannot go on.
    Failed(Failure),
}

/// The connection's state, as a frontend shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Link {
    /// Connecting, greeting, joining and catching up.
    Connecting,
    /// Caught up: what is typed goes out now.
    Connected,
    /// Waiting until then to reconnect.
    Waiting { until: Instant },
}

/// The client's session. See the module docs for the contract.
#[derive(Debug)]
pub struct Session {
    config: SessionConfig,
    /// The nick held (or asked for).
    nick: Option<String>,
    /// The session token from the last `welcome`.
    token: Option<String>,
    /// Rooms in the order joined, with the newest `seq` reported in each.
    rooms: Vec<(String, Option<u64>)>,
    /// Messages sent (or queued while offline) and not yet acknowledged, in
    /// the order typed, with their ids.
    pending: Vec<(String, ClientFrame)>,
    /// Messages the server refused.
    refused: usize,
    /// Messages refused for now (storage down, too fast), to send again
    /// with the same ids at `retry_at`.
    retry: Vec<String>,
    retry_at: Option<Instant>,
    phase: Phase,
    /// The limits the server announced on this connection.
    limits: Option<Limits>,
    /// Keeps frames within the announced rates.
    pacer: Pacer,
    /// Frames waiting for the pacer, with their ids.
    out: VecDeque<(Option<String>, ClientFrame)>,
    /// Commands given while a connection is being set up: carried out once
    /// it is, in order.
    deferred: VecDeque<Command>,
    /// Uploads, the first one in progress.
    uploads: VecDeque<Sending>,
    /// The first upload was refused for now: it is announced again then.
    upload_at: Option<Instant>,
    quit: Quit,
    /// Files seen in messages, for downloads by a short id.
    attachments: Vec<Attachment>,
    /// Whether a connection got as far as being caught up before.
    up_before: bool,
    /// Whether a `welcome` came before: later ones are a reconnect's.
    welcomed_before: bool,
    /// Failed connections in a row.
    attempt: u32,
    /// Jitter, from the seed.
    rng: SplitMix,
    id_prefix: String,
    next_id: u64,
    /// The time of the latest `handle_*` call.
    now: Instant,
    transmits: VecDeque<Transmit>,
    events: VecDeque<Event>,
    /// Whether the outbox is out of date.
    unsaved: bool,
    /// Direct messages: where each conversation stands, and the reads out.
    conversations: Conversations,
    /// Why the connection was lost, as told during this outage.
    told: Option<String>,
}

/// Where the session's connection is.
#[derive(Debug)]
enum Phase {
    /// No connection; the next attempt starts at `at`.
    Offline { at: Instant },
    /// A connection was asked for.
    Connecting,
    /// `hello` sent; waiting for `welcome`.
    Greeting,
    /// Joining and paging back.
    CatchingUp(Box<CatchUp>),
    /// Caught up.
    Live,
    /// Done or failed.
    Ended,
}

/// Whether and when the user is leaving.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Quit {
    No,
    /// Once the uploads are done, then as [`Quit::By`].
    AfterUploads,
    /// When everything is acknowledged, or at this time.
    By(Instant),
}

fn is_message(frame: &ClientFrame) -> bool {
    matches!(
        frame,
        ClientFrame::Say { .. }
            | ClientFrame::Dm { .. }
            | ClientFrame::Edit { .. }
            | ClientFrame::Delete { .. }
    )
}

impl Session {
    /// A session starting at `now` from what the outbox held; it asks for
    /// its first connection at once.
    pub fn new(config: SessionConfig, saved: Saved, now: Instant) -> Self {
        let mut rooms = config.rooms.clone();
        for room in saved.rooms {
            if !rooms.iter().any(|(name, _)| *name == room) {
                rooms.push((room, None));
            }
        }
        let mut rng = SplitMix(config.seed);
        let id_prefix = format!("{:08x}", rng.next() >> 32);
        let mut session = Self {
            nick: config.nick.clone(),
            token: saved.session,
            rooms,
            pending: saved.pending,
            refused: 0,
            retry: Vec::new(),
            retry_at: None,
            phase: Phase::Offline { at: now },
            limits: None,
            pacer: Pacer::default(),
            out: VecDeque::new(),
            deferred: VecDeque::new(),
            uploads: VecDeque::new(),
            upload_at: None,
            quit: Quit::No,
            attachments: Vec::new(),
            up_before: false,
            welcomed_before: false,
            attempt: 0,
            rng,
            id_prefix,
            next_id: 0,
            now,
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            unsaved: false,
            conversations: Conversations::default(),
            told: None,
            config,
        };
        if session.config.durable && !session.pending.is_empty() {
            for (id, frame) in session.pending.clone() {
                session.events.push_back(Event::Sending { id, frame });
            }
            session.events.push_back(Event::Queued(session.pending.len()));
        }
        session.connect();
        session
    }

    /// A command from the frontend.
    pub fn handle_command(&mut self, now: Instant, command: Command) {
        self.now = now;
        self.command(command);
        self.check_quit();
    }

    /// The connection asked for is open.
    pub fn handle_connected(&mut self, now: Instant) {
        self.now = now;
        if !matches!(self.phase, Phase::Connecting) {
            // Not asked for (any more): the driver should not have it.
            self.transmits.push_back(Transmit::Close);
            return;
        }
        self.pacer.reset();
        self.limits = None;
        let hello = ClientFrame::Hello {
            nick: self.nick.clone(),
            session: self.token.clone(),
            token: self.config.access_token.clone(),
        };
        self.out.push_front((Some("hello".to_owned()), hello));
        self.phase = Phase::Greeting;
        self.check_quit();
    }

    /// A text frame from the server, as it came: it is decoded here, and
    /// reported with its text (line mode's `--json` prints it as it is).
    pub fn handle_frame(&mut self, now: Instant, text: String) {
        self.now = now;
        let frame = ServerFrame::decode(&text).ok();
        match &self.phase {
            Phase::Greeting => self.greeting(text, frame),
            Phase::CatchingUp(_) => self.catching_up(text, frame),
            Phase::Live => self.live(text, frame),
            // A frame from a connection already given up on.
            Phase::Offline { .. } | Phase::Connecting | Phase::Ended => {}
        }
        self.check_quit();
    }

    /// The connection (or the attempt at one) ended.
    pub fn handle_disconnected(&mut self, now: Instant, how: Disconnect) {
        self.now = now;
        if matches!(self.phase, Phase::Offline { .. } | Phase::Ended) {
            return;
        }
        let (why, asked) = match how {
            Disconnect::Closed { code, .. } if code == CloseCode::Replaced.code() => {
                return self.fail(Failure::Replaced);
            }
            Disconnect::Closed { code, .. } if code == CloseCode::TokenExpired.code() => {
                let why = "the access token expired; get a new one (chat-server token)";
                return self.fail(Failure::Refused(why.to_owned()));
            }
            Disconnect::Closed { code, reason } => {
                self.notice(format!(
                    "server closed the connection: {code} {}",
                    render::clean(&reason)
                ));
                match chat_protocol::retry_after(&reason) {
                    Some(ms) if code == CloseCode::Restart.code() => {
                        ("the server is restarting".to_owned(), Some(Duration::from_millis(ms)))
                    }
                    _ => ("the server closed the connection".to_owned(), None),
                }
            }
            Disconnect::Broken(why) | Disconnect::Unreachable(why) => (why, None),
        };
        self.lost(why, asked);
        self.check_quit();
    }

    /// Time passed: reconnects, retries, pacing and the quit deadline.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.now = now;
        if let Phase::Offline { at } = self.phase
            && at <= now
        {
            self.connect();
        }
        self.page_timeout(now);
        self.upload_timeout(now);
        self.reread_timeout(now);
        if matches!(self.phase, Phase::Live) && self.retry_at.is_some_and(|at| at <= now) {
            self.retry_at = None;
            for id in std::mem::take(&mut self.retry) {
                let again = self.pending.iter().find(|(pending, _)| *pending == id).cloned();
                if let Some((id, frame)) = again {
                    self.out.push_back((Some(id), frame));
                }
            }
        }
        self.check_quit();
    }

    /// The next thing the driver must do.
    #[must_use]
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        if let Some(transmit) = self.transmits.pop_front() {
            return Some(transmit);
        }
        if !self.is_connected() {
            return None;
        }
        let now = self.now;
        if let Some((_, frame)) = self.out.front() {
            let message = is_message(frame);
            if self.pacer.ready_at(message, now) > now {
                return None;
            }
            self.pacer.take(message, now);
            let (id, frame) = self.out.pop_front()?;
            return Some(Transmit::Text(encode_client(&ClientMessage { id, frame })));
        }
        self.poll_chunk()
    }

    /// The next event for the frontend.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// What the outbox should hold now, if that changed.
    #[must_use]
    pub fn poll_save(&mut self) -> Option<Saved> {
        if !std::mem::take(&mut self.unsaved) {
            return None;
        }
        Some(Saved {
            session: self.token.clone(),
            rooms: self.rooms.iter().map(|(room, _)| room.clone()).collect(),
            pending: self.pending.clone(),
        })
    }

    /// When to call [`Session::handle_timeout`] next.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        if matches!(self.phase, Phase::Ended) {
            return None;
        }
        let mut at: Option<Instant> = None;
        let mut consider = |time: Option<Instant>| {
            if let Some(time) = time {
                at = Some(at.map_or(time, |at| at.min(time)));
            }
        };
        if let Quit::By(by) = self.quit {
            consider(Some(by));
        }
        match &self.phase {
            Phase::Offline { at } => consider(Some(*at)),
            Phase::CatchingUp(catch_up) => consider(catch_up.timeout()),
            Phase::Live => {
                consider(self.retry_at);
                consider(self.upload_at);
                consider(self.conversations.timeout());
            }
            Phase::Connecting | Phase::Greeting | Phase::Ended => {}
        }
        if self.is_connected() {
            if let Some((_, frame)) = self.out.front() {
                consider(Some(self.pacer.ready_at(is_message(frame), self.now)));
            } else if self.wants_chunk() {
                consider(Some(self.pacer.ready_at(false, self.now)));
            }
        }
        at
    }

    /// The file seen in a message whose id starts with `id` (at least 6
    /// characters), for a download.
    ///
    /// # Errors
    /// No file, or several, match.
    pub fn attachment(&self, id: &str) -> Result<&Attachment, String> {
        let id = id.to_ascii_lowercase();
        let mut matching =
            self.attachments.iter().filter(|file| id.len() >= 6 && file.id.starts_with(&id));
        match (matching.next(), matching.next()) {
            (Some(file), None) => Ok(file),
            (None, _) => {
                Err(format!("no file {id} in the messages seen (give at least 6 characters)"))
            }
            (Some(_), Some(_)) => Err(format!("{id} names several files; give more of it")),
        }
    }

    /// The session token, once the server gave one.
    pub fn token(&self) -> Option<&str> {
        self.token.as_deref()
    }

    fn is_connected(&self) -> bool {
        matches!(self.phase, Phase::Greeting | Phase::CatchingUp(_) | Phase::Live)
    }

    fn new_id(&mut self) -> String {
        self.next_id += 1;
        format!("{}-{}", self.id_prefix, self.next_id)
    }

    fn notice(&mut self, notice: String) {
        self.events.push_back(Event::Notice(notice));
    }

    fn problem(&mut self, why: String) {
        self.events.push_back(Event::Problem(why));
    }

    fn emit_frame(&mut self, text: String, frame: Option<ServerFrame>, catch_up: bool) {
        self.events.push_back(Event::Frame { text, frame: frame.map(Box::new), catch_up });
    }

    fn connect(&mut self) {
        self.phase = Phase::Connecting;
        self.transmits.push_back(Transmit::Connect);
        self.events.push_back(Event::Link(Link::Connecting));
    }

    fn command(&mut self, command: Command) {
        if matches!(self.phase, Phase::Ended) {
            return;
        }
        let (id, frame) = match command {
            Command::Quit => return self.start_quit(),
            Command::Upload(upload) => return self.upload(upload),
            Command::Send(frame) => (None, frame),
            Command::SendAs(id, frame) => (Some(id), frame),
        };
        if is_message(&frame) {
            // Kept until acknowledged, in the order typed; sent now if
            // caught up, else with the rest once the connection is.
            let id = id.unwrap_or_else(|| self.new_id());
            self.pending.push((id.clone(), frame.clone()));
            self.events.push_back(Event::Sending { id: id.clone(), frame: frame.clone() });
            self.pending_changed();
            if matches!(self.phase, Phase::Live) {
                self.out.push_back((Some(id), frame));
            }
            return;
        }
        match self.phase {
            Phase::Live => {
                let id = id.unwrap_or_else(|| self.new_id());
                self.out.push_back((Some(id), frame));
            }
            Phase::Connecting | Phase::Greeting | Phase::CatchingUp(_) => {
                let command = match id {
                    Some(id) => Command::SendAs(id, frame),
                    None => Command::Send(frame),
                };
                self.deferred.push_back(command);
            }
            Phase::Offline { .. } | Phase::Ended => {
                self.problem("offline; that command needs the server".to_owned());
            }
        }
    }

    fn start_quit(&mut self) {
        if !self.uploads.is_empty() {
            self.quit = Quit::AfterUploads;
        } else if !matches!(self.quit, Quit::By(_)) {
            self.quit = Quit::By(self.now + self.config.linger);
        }
    }

    /// Ends the session if the user quit and there is nothing (more) to
    /// wait for.
    fn check_quit(&mut self) {
        let Quit::By(by) = self.quit else {
            return;
        };
        let settled = self.pending.is_empty() && self.out.is_empty() && self.uploads.is_empty();
        let late = self.now >= by;
        match self.phase {
            Phase::Ended => {}
            Phase::Offline { .. } | Phase::Connecting => {
                if settled || late || self.config.durable {
                    self.end();
                }
            }
            Phase::Greeting | Phase::CatchingUp(_) | Phase::Live => {
                if settled || late {
                    self.transmits.push_back(Transmit::Close);
                    self.end();
                }
            }
        }
    }

    fn end(&mut self) {
        self.phase = Phase::Ended;
        self.unsaved = true;
        let (unacked, refused) = (self.pending.len(), self.refused);
        self.events.push_back(Event::Done { unacked, refused });
    }

    /// Ends the session for good. A connection still open is the caller's
    /// to close.
    fn fail(&mut self, failure: Failure) {
        self.phase = Phase::Ended;
        self.unsaved = true;
        self.events.push_back(Event::Failed(failure));
    }

    /// The connection is gone (or never came): report it and wait before
    /// the next, `asked` if the server said how long.
    fn lost(&mut self, why: String, asked: Option<Duration>) {
        let first = !self.up_before;
        if first && self.config.first_failure_fatal {
            let failure = match self.phase {
                Phase::Connecting => Failure::Unreachable(why),
                _ => Failure::Rejected(why),
            };
            return self.fail(failure);
        }
        // Said once per outage (and again only if the reason changes), not
        // on every attempt.
        if self.told.as_ref() != Some(&why) || matches!(self.phase, Phase::Live) {
            match self.phase {
                Phase::Live => self.notice(format!("disconnected: {why}; reconnecting")),
                _ if first => self.notice(format!("cannot connect: {why}")),
                _ => self.notice(format!("reconnect failed: {why}")),
            }
            self.told = Some(why.clone());
        }
        if let Some(asked) = asked {
            self.notice(format!(
                "the server is restarting; reconnecting in {:.1} s as it asked",
                asked.as_secs_f64()
            ));
        }
        // A restarting server's own delay is used as given: it already
        // spreads its clients out.
        let delay = asked.unwrap_or_else(|| {
            let ceiling =
                BACKOFF_MIN.saturating_mul(2u32.saturating_pow(self.attempt)).min(BACKOFF_MAX);
            ceiling.mul_f64(self.rng.unit())
        });
        self.attempt = self.attempt.saturating_add(1);
        let at = self.now + delay;
        self.phase = Phase::Offline { at };
        self.events.push_back(Event::Link(Link::Waiting { until: at }));
        self.retry.clear();
        self.retry_at = None;
        // Conversations are listed and read again once caught up.
        self.conversations.lost();
        // Messages are in `pending` and go again; anything else is lost
        // with the connection, and said so.
        for (_, frame) in std::mem::take(&mut self.out) {
            let own = matches!(
                frame,
                ClientFrame::Hello { .. }
                    | ClientFrame::Conversations {}
                    | ClientFrame::Conversation { .. }
            );
            if !is_message(&frame) && !own {
                self.problem(format!("not sent, the connection was lost: {}", frame.kind()));
            }
        }
        self.drop_uploads();
        if self.quit == Quit::AfterUploads {
            self.start_quit();
        }
        for command in std::mem::take(&mut self.deferred) {
            self.command(command);
        }
    }

    /// A frame before `welcome`.
    fn greeting(&mut self, text: String, frame: Option<ServerFrame>) {
        match frame {
            Some(ServerFrame::Welcome { ref nick, ref session, ref limits, ref rooms, .. }) => {
                self.nick = Some(nick.clone());
                // A session another device holds: its rooms are this
                // client's too.
                for room in rooms {
                    if !self.rooms.iter().any(|(known, _)| known == room) {
                        self.rooms.push((room.clone(), None));
                        self.unsaved = true;
                    }
                }
                if self.token.as_ref() != Some(session) {
                    self.token = Some(session.clone());
                    self.unsaved = true;
                }
                self.pacer.limits(limits, self.now);
                self.limits = Some(limits.clone());
                let again = std::mem::replace(&mut self.welcomed_before, true);
                self.emit_frame(text, frame, again);
                self.join();
            }
            Some(ServerFrame::Error { code, message, .. }) => {
                let why = format!("{code}: {}", render::clean(&message));
                self.transmits.push_back(Transmit::Close);
                if matches!(code, ErrorCode::Unauthorized | ErrorCode::Forbidden) {
                    // Trying again with the same token cannot help.
                    return self.fail(Failure::Refused(why));
                }
                self.lost(why, None);
            }
            // Nothing else comes before `welcome`.
            _ => {}
        }
    }

    /// A frame once caught up.
    fn live(&mut self, text: String, frame: Option<ServerFrame>) {
        let Some(frame) = frame else {
            return self.emit_frame(text, None, false);
        };
        if self.upload_answered(&frame) {
            return;
        }
        if self.on_frame(&frame) {
            self.emit_frame(text, Some(frame), false);
        }
    }

    /// Keeps the session's view up to date; false for a frame not to
    /// report (a message already reported).
    fn on_frame(&mut self, frame: &ServerFrame) -> bool {
        if !self.on_conversation_frame(frame) {
            if let ServerFrame::Direct { id: Some(id), .. } = frame {
                self.acknowledged(id, false);
            }
            return false;
        }
        match frame {
            ServerFrame::Joined { room, last_seq, .. } => {
                if !self.rooms.iter().any(|(r, _)| r == room) {
                    self.rooms.push((room.clone(), None));
                    self.unsaved = true;
                }
                self.set_seen(room, *last_seq);
            }
            ServerFrame::Left { room, .. } => {
                self.rooms.retain(|(r, _)| r != room);
                self.unsaved = true;
            }
            ServerFrame::Nick { nick, .. } => self.nick = Some(nick.clone()),
            ServerFrame::Message(message) => {
                if let Some(id) = &message.id {
                    self.acknowledged(id, false);
                }
                let seen = self.rooms.iter_mut().find(|(r, _)| *r == message.room);
                if let Some((_, seen)) = seen {
                    if seen.is_some_and(|seen| seen >= message.seq) {
                        // Delivered twice (a retry answered with the
                        // original): reported once.
                        return false;
                    }
                    *seen = Some(message.seq);
                }
                self.attachment_seen(message);
            }
            ServerFrame::Direct { id: Some(id), .. } => self.acknowledged(id, false),
            // Refused for now: the same message goes again when the
            // server says, and is delivered once (its id is the same).
            ServerFrame::Error {
                id: Some(id),
                code: code @ (ErrorCode::RateLimited | ErrorCode::Unavailable),
                message,
                retry_after_ms: Some(wait),
            } if self.pending.iter().any(|(pending, _)| pending == id) => {
                let wait = Duration::from_millis((*wait).clamp(50, 60_000));
                let at = self.now + wait;
                self.retry_at = Some(self.retry_at.map_or(at, |earlier| earlier.min(at)));
                if !self.retry.contains(id) {
                    self.retry.push(id.clone());
                }
                // Not a refusal: it goes again by itself.
                let message = render::clean(message);
                let again = wait.as_secs_f64();
                self.notice(format!("{code}: {message}; sending it again in {again:.1} s"));
                return false;
            }
            ServerFrame::Error { id: Some(id), .. } => self.acknowledged(id, true),
            _ => {}
        }
        true
    }

    /// The newest `seq` reported in `room` is `seq`: a `joined` says where
    /// the room is, so this may also go back (a server that lost its
    /// history numbers again from 1).
    fn set_seen(&mut self, room: &str, seq: u64) {
        if let Some((_, seen)) = self.rooms.iter_mut().find(|(r, _)| r == room) {
            *seen = Some(seq);
        }
    }

    fn attachment_seen(&mut self, message: &Message) {
        if let Some(file) = &message.attachment
            && !self.attachments.iter().any(|known| known.id == file.id)
        {
            self.attachments.push(file.clone());
        }
    }

    fn pending_changed(&mut self) {
        self.unsaved = true;
        self.events.push_back(Event::Queued(self.pending.len()));
    }

    fn acknowledged(&mut self, id: &str, refused: bool) {
        let before = self.pending.len();
        self.pending.retain(|(pending, _)| pending != id);
        let gone = before - self.pending.len();
        if gone > 0 {
            if refused {
                self.refused += gone;
            }
            self.retry.retain(|retry| retry != id);
            self.events.push_back(Event::Sent { id: id.to_owned(), refused });
            self.pending_changed();
        }
    }
}

/// A small seeded random source (SplitMix64): the same seed, the same
/// jitter, so a simulation replays exactly.
#[derive(Debug, Clone)]
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, 1)`.
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}
