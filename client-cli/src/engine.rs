//! The client's session, which outlives its connections, shared by line
//! mode and the full-screen client.
//!
//! The engine is a task that owns the connection: it greets, joins, and
//! after any disconnect reconnects with backoff, resumes its session and
//! rooms from the last `seq` seen (paging back past a resume's cap), and
//! re-sends unacknowledged messages with their original ids (the server's
//! deduplication makes that exactly-once). A frontend sends it
//! [`Command`]s and shows the [`Event`]s it reports; it never touches the
//! socket.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Context, bail};
use chat_protocol::{
    ClientFrame, ClientMessage, CloseCode, ErrorCode, Message, Resume, ServerFrame, encode_client,
};
use chat_transport::tungstenite::Message as WsMessage;
use chat_transport::tungstenite::protocol::CloseFrame;
use chat_transport::tungstenite::protocol::frame::coding::CloseCode as WsCloseCode;
use chat_transport::{TransportConfig, WebSocket, connect};
use futures_util::{SinkExt, StreamExt};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::outbox::{Outbox, Saved};
use crate::pacer::Pacer;
use crate::render;

/// Reconnect delays grow from this...
const BACKOFF_MIN: Duration = Duration::from_millis(500);
/// ...to at most this, with full jitter.
const BACKOFF_MAX: Duration = Duration::from_secs(30);

/// How the engine is set up.
#[derive(Debug)]
pub struct Options {
    pub server: String,
    pub transport: TransportConfig,
    pub nick: Option<String>,
    /// The access token, for servers with authentication on.
    pub access_token: Option<String>,
    /// Rooms to join, in order.
    pub rooms: Vec<String>,
    /// Whether a failure of the very first connection ends the engine (line
    /// mode: the user has something to fix) rather than being retried (the
    /// full-screen client, which can be used offline).
    pub first_failure_fatal: bool,
    /// How long a quit waits for the server to acknowledge what was sent.
    pub linger: Duration,
    /// Where unacknowledged messages are kept across client restarts.
    pub outbox: Option<Outbox>,
}

/// What a frontend asks of the engine.
#[derive(Debug)]
pub enum Command {
    /// Send a frame with a fresh id. A `say` or `dm` is kept until the
    /// server acknowledges it, and typed while offline it waits for the
    /// reconnect; other frames need a connection.
    Send(ClientFrame),
    /// Send a frame with the id given (raw frames in `--json` mode).
    SendAs(String, ClientFrame),
    /// Send the file at `path` to `room` (needs the connection).
    Upload { room: String, path: std::path::PathBuf },
    /// Save a file seen in a message: its id or the start of it (at least
    /// 6 characters), to `to` (a file, or a directory) or the current
    /// directory under its own name.
    Download { id: String, to: Option<std::path::PathBuf> },
    /// Leave: once everything sent is acknowledged, or after the linger
    /// time (at once while offline with a durable outbox).
    Quit,
}

/// What the engine reports.
#[derive(Debug)]
pub enum Event {
    /// A frame from the server; `frame` is `None` for one this client
    /// cannot read (a newer server's). `catch_up` marks frames of a
    /// reconnect's catch-up (the re-`welcome`, re-`joined`, `history`
    /// pages) whose messages are reported again, complete and in order, in
    /// [`Event::Missed`].
    Frame { text: String, frame: Option<Box<ServerFrame>>, catch_up: bool },
    /// Every message one room missed while disconnected, oldest first.
    Missed { messages: Vec<Message> },
    /// How the rooms answered a reconnect, in one line.
    Resumed(String),
    /// The connection's state changed.
    Link(Link),
    /// How many messages wait for the server's acknowledgement.
    Queued(usize),
    /// Something about the connection the user should know.
    Notice(String),
    /// A command that could not be carried out, and why.
    Problem(String),
    /// The engine stopped after a quit.
    Done { unacked: usize, refused: usize },
    /// The engine stopped because the session cannot go on.
    Failed(anyhow::Error),
}

/// The connection's state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Link {
    Connecting,
    Connected,
    /// Waiting until then to reconnect.
    Waiting {
        until: Instant,
    },
}

/// Starts an engine on the current runtime.
pub fn spawn(options: Options) -> (mpsc::UnboundedSender<Command>, mpsc::UnboundedReceiver<Event>) {
    let (command_tx, commands) = mpsc::unbounded_channel();
    let (events, event_rx) = mpsc::unbounded_channel();
    let saved = match options.outbox.as_ref().map(Outbox::load).transpose() {
        Ok(saved) => saved.unwrap_or_default(),
        Err(err) => {
            // Not loaded means not overwritten either: the outbox is left
            // for the user to look at.
            let _ = events.send(Event::Problem(format!("{err:#}; not using the outbox")));
            Saved::default()
        }
    };
    let mut engine = Engine {
        rooms: Vec::new(),
        token: saved.session,
        pending: saved.pending,
        refused: 0,
        retry: Vec::new(),
        retry_at: None,
        pacer: Pacer::default(),
        quit_by: None,
        id_prefix: format!("{:08x}", rand::random::<u32>()),
        next_id: 0,
        attachments: Vec::new(),
        commands,
        events,
        options,
    };
    if engine.options.outbox.is_some() && !engine.pending.is_empty() {
        engine.emit(Event::Queued(engine.pending.len()));
    }
    let mut rooms = std::mem::take(&mut engine.options.rooms);
    for room in saved.rooms {
        if !rooms.contains(&room) {
            rooms.push(room);
        }
    }
    engine.rooms = rooms.into_iter().map(|room| (room, None)).collect();
    tokio::spawn(engine.run());
    (command_tx, event_rx)
}

/// Why a connection ended.
enum Ended {
    /// The user is done and every message was answered (or time ran out).
    Done,
    /// The connection was lost; reconnect, after the delay the server asked
    /// for if it did.
    Lost(String, Option<Duration>),
}

struct Engine {
    options: Options,
    /// The session token from the last `welcome`.
    token: Option<String>,
    /// Rooms in the order joined, with the newest `seq` seen in each
    /// (`None` until the first `joined`).
    rooms: Vec<(String, Option<u64>)>,
    /// Messages sent (or queued while offline) and not yet acknowledged, in
    /// the order typed, with their ids.
    pending: Vec<(String, ClientFrame)>,
    /// Messages the server refused.
    refused: usize,
    /// Messages refused for now (storage down, too fast), to send again
    /// with the same ids when the server said; and when that is.
    retry: Vec<String>,
    retry_at: Option<Instant>,
    /// Keeps sends within the server's announced rates.
    pacer: Pacer,
    /// Set once the user is done: stop when `pending` is empty or then.
    quit_by: Option<Instant>,
    id_prefix: String,
    next_id: u64,
    /// Files seen in messages, for `/download` by a short id.
    attachments: Vec<chat_protocol::Attachment>,
    commands: mpsc::UnboundedReceiver<Command>,
    events: mpsc::UnboundedSender<Event>,
}

fn is_message(frame: &ClientFrame) -> bool {
    matches!(frame, ClientFrame::Say { .. } | ClientFrame::Dm { .. })
}

impl Engine {
    async fn run(mut self) {
        let result = self.drive().await;
        self.save();
        let event = match result {
            Ok(()) => Event::Done { unacked: self.pending.len(), refused: self.refused },
            Err(err) => Event::Failed(err),
        };
        self.emit(event);
    }

    fn emit(&self, event: Event) {
        // A frontend that is gone no longer needs to know.
        let _ = self.events.send(event);
    }

    fn link(&mut self, link: Link) {
        self.emit(Event::Link(link));
    }

    /// Connections, one after another, until the user quits or the session
    /// cannot go on.
    async fn drive(&mut self) -> anyhow::Result<()> {
        // Whether a connection has been up before: later ones catch up.
        let mut again = false;
        let mut attempt = 0u32;
        loop {
            self.link(Link::Connecting);
            let asked = match self.open(again).await {
                Ok(mut socket) => {
                    again = true;
                    attempt = 0;
                    self.link(Link::Connected);
                    match self.relay(&mut socket).await? {
                        Ended::Done => {
                            close(&mut socket).await;
                            return Ok(());
                        }
                        Ended::Lost(why, asked) => {
                            self.emit(Event::Notice(format!("disconnected: {why}; reconnecting")));
                            asked
                        }
                    }
                }
                Err(err) if is_final(&err) => return Err(err),
                Err(err) if !again && self.options.first_failure_fatal => return Err(err),
                Err(err) => {
                    let what = if again { "reconnect failed" } else { "cannot connect" };
                    self.emit(Event::Notice(format!("{what}: {err:#}")));
                    restart_delay(&err)
                }
            };
            // A restarting server's own delay is used as given: it already
            // spreads its clients out.
            if let Some(asked) = asked {
                self.emit(Event::Notice(format!(
                    "the server is restarting; reconnecting in {:.1} s as it asked",
                    asked.as_secs_f64()
                )));
            }
            let delay = asked.unwrap_or_else(|| {
                let ceiling =
                    BACKOFF_MIN.saturating_mul(2u32.saturating_pow(attempt)).min(BACKOFF_MAX);
                ceiling.mul_f64(rand::random::<f64>())
            });
            attempt = attempt.saturating_add(1);
            if !self.wait(Instant::now() + delay).await {
                return Ok(());
            }
        }
    }

    /// Waits until `wake`, taking commands offline. False if the user quit
    /// meanwhile and there is no reason to wait longer.
    async fn wait(&mut self, wake: Instant) -> bool {
        self.link(Link::Waiting { until: wake });
        loop {
            if self.quit_by.is_some() && (self.pending.is_empty() || self.options.outbox.is_some())
            {
                return false;
            }
            let give_up = self.quit_by.unwrap_or(wake + BACKOFF_MAX);
            tokio::select! {
                () = tokio::time::sleep_until(wake) => return true,
                () = tokio::time::sleep_until(give_up) => return false,
                command = self.commands.recv() => match command {
                    Some(command) => self.offline(command),
                    None => self.quit(),
                },
            }
        }
    }

    /// Opens a connection: greets (resuming the session if there is one),
    /// joins every room from where it was, and re-sends what is pending.
    async fn open(&mut self, again: bool) -> anyhow::Result<WebSocket> {
        self.pacer.reset();
        let hello = ClientFrame::Hello {
            nick: self.options.nick.clone(),
            session: self.token.clone(),
            token: self.options.access_token.clone(),
        };
        let (mut socket, text, welcome) =
            greet(&self.options.server, &self.options.transport, hello, &self.events).await?;
        if let ServerFrame::Welcome { nick, session, limits, .. } = &welcome {
            self.options.nick = Some(nick.clone());
            if self.token.as_ref() != Some(session) {
                self.token = Some(session.clone());
                self.save();
            }
            // The hello was the connection's first frame.
            self.pacer.delay(false, Instant::now());
            self.pacer.limits(limits, Instant::now());
        }
        self.emit(Event::Frame { text, frame: Some(Box::new(welcome)), catch_up: again });
        let mut joins = BTreeMap::new();
        for (room, after) in self.rooms.clone() {
            let id =
                self.send(&mut socket, ClientFrame::Join { room: room.clone(), after }).await?;
            joins.insert(id, (room, after));
        }
        let mut resumed = Resumed::default();
        // On a reconnect, what each room missed, reported once complete.
        let mut missed: Vec<Missed> = Vec::new();
        while !joins.is_empty() {
            let text = next_text(&mut socket, &self.events)
                .await?
                .context("server closed the connection while joining")?;
            let frame = ServerFrame::decode(&text).ok();
            let mut catch_up = false;
            match &frame {
                Some(ServerFrame::Joined { id: Some(id), room, resume, gap, history, .. })
                    if joins.contains_key(id) =>
                {
                    let after = joins.remove(id).and_then(|(_, after)| after);
                    resumed.add(after, *resume, gap.map(|g| g.to - g.from + 1));
                    if let (true, Some(after)) = (again, after) {
                        // Everything after `after` (or after the gap) is owed.
                        let floor = gap.map_or(after + 1, |g| g.to + 1);
                        let messages = history.clone();
                        missed.push(Missed { room: room.clone(), floor, messages });
                    }
                    catch_up = again;
                }
                Some(ServerFrame::Error { id: Some(id), code, message, .. })
                    if joins.contains_key(id) =>
                {
                    if !again && self.options.first_failure_fatal {
                        bail!("{code}: {}", render::clean(message));
                    }
                    // A room the server will not have is not asked for again.
                    if let Some((room, _)) = joins.remove(id) {
                        self.rooms.retain(|(r, _)| *r != room);
                    }
                }
                _ => {}
            }
            if let Some(frame) = &frame {
                self.on_frame(frame);
            }
            self.emit(Event::Frame { text, frame: frame.map(Box::new), catch_up });
        }
        // A resume carries at most the newest 200 messages: page back for
        // the rest, holding newer frames until the older ones are reported.
        let mut held = Vec::new();
        for room in &mut missed {
            while let Some(first) =
                room.messages.first().map(|m| m.seq).filter(|&first| first > room.floor)
            {
                let ask = ClientFrame::History {
                    room: room.room.clone(),
                    before: Some(first),
                    limit: Some(200),
                };
                let older = loop {
                    let id = self.send(&mut socket, ask.clone()).await?;
                    let answer = loop {
                        let text = next_text(&mut socket, &self.events)
                            .await?
                            .context("server closed the connection")?;
                        let frame = ServerFrame::decode(&text).ok();
                        match &frame {
                            Some(ServerFrame::History { id: Some(answer), messages, .. })
                                if *answer == id =>
                            {
                                let messages = messages.clone();
                                self.emit(Event::Frame {
                                    text,
                                    frame: frame.map(Box::new),
                                    catch_up: true,
                                });
                                break Ok(messages);
                            }
                            // Paging faster than the server allows: ask again
                            // when it says, rather than leave a hole.
                            Some(ServerFrame::Error {
                                id: Some(answer),
                                code: ErrorCode::RateLimited,
                                retry_after_ms: Some(wait),
                                ..
                            }) if *answer == id => break Err(Some(*wait)),
                            Some(ServerFrame::Error { id: Some(answer), .. }) if *answer == id => {
                                break Err(None);
                            }
                            _ => held.push(text),
                        }
                    };
                    match answer {
                        Ok(messages) => break messages,
                        Err(Some(wait)) => {
                            tokio::time::sleep(Duration::from_millis(wait.min(10_000))).await;
                        }
                        Err(None) => break Vec::new(),
                    }
                };
                if older.is_empty() {
                    break;
                }
                let mut older: Vec<_> = older.into_iter().filter(|m| m.seq >= room.floor).collect();
                older.append(&mut room.messages);
                room.messages = older;
            }
        }
        if again {
            for room in missed {
                self.emit(Event::Missed { messages: room.messages });
            }
            self.emit(Event::Resumed(resumed.notice()));
        }
        for text in held {
            let frame = ServerFrame::decode(&text).ok();
            if let Some(frame) = &frame {
                self.on_frame(frame);
            }
            self.emit(Event::Frame { text, frame: frame.map(Box::new), catch_up: false });
        }
        for (id, frame) in self.pending.clone() {
            self.paced_send(&mut socket, Some(id), frame).await?;
        }
        Ok(socket)
    }

    async fn relay(&mut self, socket: &mut WebSocket) -> anyhow::Result<Ended> {
        loop {
            if self.quit_by.is_some() && self.pending.is_empty() {
                return Ok(Ended::Done);
            }
            let deadline =
                self.quit_by.unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
            tokio::select! {
                command = self.commands.recv() => match command {
                    // A connection that breaks while sending (a file, say)
                    // is lost like any other, not the end of the session.
                    Some(command) => match self.online(socket, command).await {
                        Ok(()) => {}
                        Err(err) if is_final(&err) => return Err(err),
                        Err(err) => return Ok(Ended::Lost(format!("{err:#}"), restart_delay(&err))),
                    },
                    None => self.quit(),
                },
                text = next_text(socket, &self.events) => match text {
                    Ok(Some(text)) => {
                        let frame = ServerFrame::decode(&text).ok();
                        if let Some(frame) = &frame {
                            self.on_frame(frame);
                        }
                        self.emit(Event::Frame { text, frame: frame.map(Box::new), catch_up: false });
                    }
                    Ok(None) => return Ok(Ended::Lost("the server closed the connection".to_owned(), None)),
                    Err(err) if is_final(&err) => return Err(err),
                    Err(err) => return Ok(Ended::Lost(format!("{err:#}"), restart_delay(&err))),
                },
                () = tokio::time::sleep_until(deadline), if self.quit_by.is_some() => return Ok(Ended::Done),
                () = sleep_until_some(self.retry_at), if self.retry_at.is_some() => {
                    self.retry_at = None;
                    for id in std::mem::take(&mut self.retry) {
                        let again = self.pending.iter().find(|(pending, _)| *pending == id);
                        if let Some((_, frame)) = again.cloned() {
                            self.paced_send(socket, Some(id), frame).await?;
                        }
                    }
                }
            }
        }
    }

    fn quit(&mut self) {
        if self.quit_by.is_none() {
            self.quit_by = Some(Instant::now() + self.options.linger);
        }
    }

    async fn online(&mut self, socket: &mut WebSocket, command: Command) -> anyhow::Result<()> {
        let (id, frame) = match command {
            Command::Quit => {
                self.quit();
                return Ok(());
            }
            Command::Upload { room, path } => return self.upload(socket, room, &path).await,
            Command::Download { id, to } => {
                self.download(&id, to);
                return Ok(());
            }
            Command::Send(frame) => (self.new_id(), frame),
            Command::SendAs(id, frame) => (id, frame),
        };
        if is_message(&frame) {
            self.pending.push((id.clone(), frame.clone()));
            self.pending_changed();
        }
        self.paced_send(socket, Some(id), frame).await
    }

    /// A command while disconnected: messages wait for the reconnect.
    fn offline(&mut self, command: Command) {
        let (id, frame) = match command {
            Command::Quit => return self.quit(),
            Command::Upload { .. } => {
                return self.emit(Event::Problem("offline; uploads need the server".to_owned()));
            }
            Command::Download { id, to } => return self.download(&id, to),
            Command::Send(frame) => (None, frame),
            Command::SendAs(id, frame) => (Some(id), frame),
        };
        if is_message(&frame) {
            let id = id.unwrap_or_else(|| self.new_id());
            self.pending.push((id, frame));
            self.pending_changed();
        } else {
            self.emit(Event::Problem("offline; that command needs the server".to_owned()));
        }
    }

    fn pending_changed(&mut self) {
        self.save();
        self.emit(Event::Queued(self.pending.len()));
    }

    fn acknowledged(&mut self, id: &str, refused: bool) {
        let before = self.pending.len();
        self.pending.retain(|(pending, _)| pending != id);
        let gone = before - self.pending.len();
        if gone > 0 {
            if refused {
                self.refused += gone;
            }
            self.pending_changed();
        }
    }

    /// Writes the outbox, if there is one. A failure is reported, not
    /// fatal: the messages are still in memory and still sent.
    fn save(&self) {
        let Some(outbox) = &self.options.outbox else {
            return;
        };
        let saved = Saved {
            session: self.token.clone(),
            rooms: self.rooms.iter().map(|(room, _)| room.clone()).collect(),
            pending: self.pending.clone(),
        };
        if let Err(err) = outbox.save(&saved) {
            self.emit(Event::Problem(format!("saving the outbox: {err:#}")));
        }
    }

    /// Keeps the engine's view of its session up to date.
    fn on_frame(&mut self, frame: &ServerFrame) {
        match frame {
            ServerFrame::Joined { room, last_seq, .. } => {
                match self.rooms.iter_mut().find(|(r, _)| r == room) {
                    Some(entry) => entry.1 = Some(entry.1.map_or(*last_seq, |s| s.max(*last_seq))),
                    None => {
                        self.rooms.push((room.clone(), Some(*last_seq)));
                        self.save();
                    }
                }
            }
            ServerFrame::Left { room, .. } => {
                self.rooms.retain(|(r, _)| r != room);
                self.save();
            }
            ServerFrame::Nick { nick, .. } => self.options.nick = Some(nick.clone()),
            ServerFrame::Message(message) => {
                if let Some(file) = &message.attachment
                    && !self.attachments.iter().any(|known| known.id == file.id)
                {
                    self.attachments.push(file.clone());
                }
                if let Some((_, seen)) = self.rooms.iter_mut().find(|(r, _)| *r == message.room) {
                    *seen = Some(seen.map_or(message.seq, |s| s.max(message.seq)));
                }
                if let Some(id) = &message.id {
                    self.acknowledged(id, false);
                }
            }
            ServerFrame::Direct { id: Some(id), .. } => self.acknowledged(id, false),
            // Refused for now: the same message goes again when the
            // server says, and is delivered once (its id is the same).
            ServerFrame::Error {
                id: Some(id),
                code: ErrorCode::RateLimited | ErrorCode::Unavailable,
                retry_after_ms: Some(wait),
                ..
            } if self.pending.iter().any(|(pending, _)| pending == id) => {
                let at = Instant::now() + Duration::from_millis((*wait).clamp(50, 60_000));
                self.retry_at = Some(self.retry_at.map_or(at, |earlier| earlier.min(at)));
                if !self.retry.contains(id) {
                    self.retry.push(id.clone());
                }
            }
            ServerFrame::Error { id: Some(id), .. } => self.acknowledged(id, true),
            _ => {}
        }
    }

    /// Sends a file: announces it, waits for `upload_ready` (reporting
    /// what else arrives meanwhile), then sends its bytes as binary frames
    /// within the announced frame rate. The room's `message` confirms it.
    async fn upload(
        &mut self,
        socket: &mut WebSocket,
        room: String,
        path: &std::path::Path,
    ) -> anyhow::Result<()> {
        let opened = tokio::fs::File::open(path).await;
        let size = match &opened {
            Ok(file) => file.metadata().await.map(|meta| meta.len()),
            Err(err) => Err(std::io::Error::new(err.kind(), err.to_string())),
        };
        let (mut file, size) = match (opened, size) {
            (Ok(file), Ok(size)) => (file, size),
            (Err(err), _) | (_, Err(err)) => {
                self.emit(Event::Problem(format!("cannot read {}: {err}", path.display())));
                return Ok(());
            }
        };
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let mime = mime_of(&name).to_owned();
        let id = self.new_id();
        let announce =
            ClientFrame::Upload { room, name: name.clone(), mime, size, text: String::new() };
        self.paced_send(socket, Some(id.clone()), announce).await?;
        let chunk_bytes = loop {
            let text = next_text(socket, &self.events)
                .await?
                .context("server closed the connection during an upload")?;
            let frame = ServerFrame::decode(&text).ok();
            match &frame {
                Some(ServerFrame::UploadReady { id: Some(answer), chunk_bytes })
                    if *answer == id =>
                {
                    break *chunk_bytes;
                }
                Some(ServerFrame::Error { id: Some(answer), .. }) if *answer == id => {
                    // Reported as any refusal is.
                    self.emit(Event::Frame { text, frame: frame.map(Box::new), catch_up: false });
                    return Ok(());
                }
                _ => {
                    if let Some(frame) = &frame {
                        self.on_frame(frame);
                    }
                    self.emit(Event::Frame { text, frame: frame.map(Box::new), catch_up: false });
                }
            }
        };
        self.emit(Event::Notice(format!("uploading {name} ({})", render::size(size))));
        let chunk = usize::try_from(chunk_bytes.clamp(1, 1 << 20)).unwrap_or(1 << 16);
        let mut buffer = vec![0u8; chunk];
        let mut sent = 0u64;
        while sent < size {
            use tokio::io::AsyncReadExt;
            let n = file.read(&mut buffer).await.context("reading the file")?;
            if n == 0 {
                // The file shrank: what was announced cannot be sent.
                send_frame(socket, None, ClientFrame::UploadCancel {}).await?;
                self.emit(Event::Problem(format!("{} changed while being sent", path.display())));
                return Ok(());
            }
            let delay = self.pacer.delay(false, Instant::now());
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            let part = buffer.get(..n).unwrap_or_default().to_vec();
            socket.send(WsMessage::binary(part)).await.context("sending to the server")?;
            sent += n as u64;
        }
        Ok(())
    }

    /// Saves a file seen in a message, in the background.
    fn download(&mut self, id: &str, to: Option<std::path::PathBuf>) {
        let matching: Vec<&chat_protocol::Attachment> = self
            .attachments
            .iter()
            .filter(|file| id.len() >= 6 && file.id.starts_with(&id.to_ascii_lowercase()))
            .collect();
        let file = match matching.as_slice() {
            [file] => (*file).clone(),
            [] => {
                let why = format!("no file {id} in the messages seen (give at least 6 characters)");
                return self.emit(Event::Problem(why));
            }
            _ => {
                return self
                    .emit(Event::Problem(format!("{id} names several files; give more of it")));
            }
        };
        let Some(token) = self.token.clone() else {
            return self.emit(Event::Problem("not connected yet".to_owned()));
        };
        let (server, transport, events) =
            (self.options.server.clone(), self.options.transport.clone(), self.events.clone());
        tokio::spawn(async move {
            let event = match save(&server, &transport, &token, &file, to).await {
                Ok(path) => Event::Notice(format!(
                    "saved {} ({}) to {}",
                    render::clean(&file.name),
                    render::size(file.size),
                    path.display()
                )),
                Err(err) => {
                    Event::Problem(format!("downloading {}: {err:#}", render::clean(&file.name)))
                }
            };
            let _ = events.send(event);
        });
    }

    fn new_id(&mut self) -> String {
        self.next_id += 1;
        format!("{}-{}", self.id_prefix, self.next_id)
    }

    /// Sends a frame with a fresh id and returns the id.
    async fn send(&mut self, socket: &mut WebSocket, frame: ClientFrame) -> anyhow::Result<String> {
        let id = self.new_id();
        self.paced_send(socket, Some(id.clone()), frame).await?;
        Ok(id)
    }

    /// Sends a frame once the server's announced rates allow it.
    async fn paced_send(
        &mut self,
        socket: &mut WebSocket,
        id: Option<String>,
        frame: ClientFrame,
    ) -> anyhow::Result<()> {
        let delay = self.pacer.delay(is_message(&frame), Instant::now());
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        send_frame(socket, id, frame).await
    }
}

/// Sleeps until `at`, or forever without one.
async fn sleep_until_some(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Connects and says `hello`: the socket, and the `welcome` with its text.
/// An `unauthorized` or `forbidden` answer is final (see [`is_final`]).
///
/// # Errors
/// The connection or upgrade fails, or the server refuses the `hello`.
pub async fn greet(
    server: &str,
    transport: &TransportConfig,
    hello: ClientFrame,
    events: &mpsc::UnboundedSender<Event>,
) -> anyhow::Result<(WebSocket, String, ServerFrame)> {
    let mut socket = connect(server, Some(chat_protocol::SUBPROTOCOL), transport).await?;
    send_frame(&mut socket, Some("hello".to_owned()), hello).await?;
    loop {
        let text = next_text(&mut socket, events)
            .await?
            .context("server closed the connection before welcome")?;
        match ServerFrame::decode(&text) {
            Ok(ServerFrame::Error { code, message, .. }) => {
                let why = format!("{code}: {}", render::clean(&message));
                if matches!(code, ErrorCode::Unauthorized | ErrorCode::Forbidden) {
                    // Trying again with the same token cannot help.
                    return Err(Refused(why).into());
                }
                bail!(why)
            }
            Ok(frame @ ServerFrame::Welcome { .. }) => return Ok((socket, text, frame)),
            _ => {}
        }
    }
}

/// What a room missed during a disconnect: every message from `floor` on.
struct Missed {
    room: String,
    floor: u64,
    messages: Vec<Message>,
}

/// How the rooms answered a reconnect, for the one notice it prints.
#[derive(Default)]
struct Resumed {
    lost: u64,
    restarted: bool,
}

impl Resumed {
    fn add(&mut self, after: Option<u64>, resume: Resume, gap: Option<u64>) {
        match resume {
            Resume::Gap => self.lost += gap.unwrap_or(0),
            Resume::Fresh if after.is_some() => self.restarted = true,
            Resume::Fresh | Resume::Resumed => {}
        }
    }

    fn notice(&self) -> String {
        match (self.restarted, self.lost) {
            (true, _) => {
                "reconnected; the server lost its history (it restarted without storage)".to_owned()
            }
            (false, 0) => "reconnected, resumed".to_owned(),
            (false, 1) => "reconnected, gap of 1 message".to_owned(),
            (false, n) => format!("reconnected, gap of {n} messages"),
        }
    }
}

pub async fn send_frame(
    socket: &mut WebSocket,
    id: Option<String>,
    frame: ClientFrame,
) -> anyhow::Result<()> {
    let text = encode_client(&ClientMessage { id, frame });
    socket.send(WsMessage::text(text)).await.context("sending to the server")
}

/// Marks the error for a connection the server closed because this session
/// was resumed elsewhere: reconnecting would take it back, so stop.
#[derive(Debug, thiserror::Error)]
#[error("the session was resumed by another client")]
struct Replaced;

/// Marks the error for a connection the server will not take back as it
/// is: the access token was refused, or it expired.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Refused(String);

/// Whether reconnecting cannot help: the session was resumed elsewhere, or
/// the access token was refused or expired. The client stops.
fn is_final(err: &anyhow::Error) -> bool {
    err.downcast_ref::<Replaced>().is_some() || err.downcast_ref::<Refused>().is_some()
}

/// Marks the error for a connection closed by a restarting server (1012)
/// that said how long to wait before reconnecting.
#[derive(Debug, thiserror::Error)]
#[error("the server is restarting")]
struct Restarting(Duration);

fn restart_delay(err: &anyhow::Error) -> Option<Duration> {
    err.downcast_ref::<Restarting>().map(|restarting| restarting.0)
}

/// The next text frame, or `None` once the server closed. A close's code
/// and reason are reported as a notice.
pub async fn next_text(
    socket: &mut WebSocket,
    events: &mpsc::UnboundedSender<Event>,
) -> anyhow::Result<Option<String>> {
    loop {
        match socket.next().await {
            Some(Ok(WsMessage::Text(text))) => return Ok(Some(text.as_str().to_owned())),
            Some(Ok(WsMessage::Close(frame))) => {
                if let Some(frame) = frame {
                    let code = u16::from(frame.code);
                    if code == CloseCode::Replaced.code() {
                        return Err(Replaced.into());
                    }
                    if code == CloseCode::TokenExpired.code() {
                        let why = "the access token expired; get a new one (chat-server token)";
                        return Err(Refused(why.to_owned()).into());
                    }
                    let _ = events.send(Event::Notice(format!(
                        "server closed the connection: {code} {}",
                        render::clean(&frame.reason)
                    )));
                    let asked = chat_protocol::retry_after(&frame.reason);
                    if let (true, Some(ms)) = (code == CloseCode::Restart.code(), asked) {
                        return Err(Restarting(Duration::from_millis(ms)).into());
                    }
                }
                return Ok(None);
            }
            Some(Ok(_)) => {}
            Some(Err(err)) => return Err(err).context("reading from the server"),
            None => return Ok(None),
        }
    }
}

/// Closes with 1000 and waits briefly for the server's answer.
pub async fn close(socket: &mut WebSocket) {
    let frame = CloseFrame { code: WsCloseCode::Normal, reason: "bye".into() };
    let closing = async {
        let _ = socket.close(Some(frame)).await;
        while let Some(Ok(_)) = socket.next().await {}
    };
    let _ = tokio::time::timeout(Duration::from_secs(2), closing).await;
}

/// Where a download goes: `to` (or into it, if it is a directory), else
/// the current directory; never over an existing file.
fn destination(name: &str, to: Option<std::path::PathBuf>) -> std::path::PathBuf {
    // The name came from someone else: no directories, no hidden files.
    let base: String = name
        .rsplit(['/', '\\'])
        .next()
        .unwrap_or_default()
        .chars()
        .filter(|c| !c.is_control())
        .collect();
    let base = base.trim_start_matches('.');
    let base = if base.is_empty() { "download" } else { base };
    let path = match to {
        Some(to) if !to.is_dir() => return to,
        Some(dir) => dir.join(base),
        None => std::path::PathBuf::from(base),
    };
    if !path.exists() {
        return path;
    }
    let (stem, ext) = match base.rsplit_once('.') {
        Some((stem, ext)) if !stem.is_empty() => (stem.to_owned(), format!(".{ext}")),
        _ => (base.to_owned(), String::new()),
    };
    (1..)
        .map(|n| path.with_file_name(format!("{stem} ({n}){ext}")))
        .find(|candidate| !candidate.exists())
        .unwrap_or(path)
}

/// Fetches a file into a temporary name beside its destination, then
/// renames it: a failed download leaves nothing half-written.
async fn save(
    server: &str,
    transport: &TransportConfig,
    token: &str,
    file: &chat_protocol::Attachment,
    to: Option<std::path::PathBuf>,
) -> anyhow::Result<std::path::PathBuf> {
    let path = destination(&file.name, to);
    let partial = path.with_file_name(format!(
        ".{}.part",
        path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
    ));
    let mut out = tokio::fs::File::create(&partial)
        .await
        .with_context(|| format!("creating {}", partial.display()))?;
    let fetched =
        chat_transport::fetch(server, &format!("/files/{}", file.id), token, transport, &mut out)
            .await;
    drop(out);
    if let Err(err) = fetched {
        let _ = tokio::fs::remove_file(&partial).await;
        return Err(err.into());
    }
    tokio::fs::rename(&partial, &path)
        .await
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}

/// The media type announced for a file, from its extension.
fn mime_of(name: &str) -> &'static str {
    let ext = name.rsplit_once('.').map(|(_, ext)| ext.to_ascii_lowercase()).unwrap_or_default();
    match ext.as_str() {
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "svg" => "image/svg+xml",
        "pdf" => "application/pdf",
        "txt" | "log" => "text/plain",
        "md" => "text/markdown",
        "json" => "application/json",
        "zip" => "application/zip",
        "mp3" => "audio/mpeg",
        "ogg" | "oga" => "audio/ogg",
        "wav" => "audio/wav",
        "mp4" => "video/mp4",
        "webm" => "video/webm",
        _ => "application/octet-stream",
    }
}
