//! The client's session, which outlives its connections: it reconnects
//! after any disconnect, resumes its session and rooms from the last `seq`
//! seen, and re-sends unacknowledged messages with their original ids (the
//! server's deduplication makes that exactly-once).

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use chat_protocol::{
    ClientFrame, ClientMessage, CloseCode, ErrorCode, Resume, ServerFrame, encode_client,
};
use chat_transport::tungstenite::Message;
use chat_transport::tungstenite::protocol::CloseFrame;
use chat_transport::tungstenite::protocol::frame::coding::CloseCode as WsCloseCode;
use chat_transport::{ClientTls, TransportConfig, WebSocket, connect};
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncBufReadExt, BufReader, Lines, Stdin};
use tokio::time::Instant;

use crate::input::{self, Input};
use crate::pacer::Pacer;
use crate::{Args, render};

/// How long to wait at the end for the server to echo what was sent.
const ACK_WAIT: Duration = Duration::from_secs(5);
/// Reconnect delays grow from this...
const BACKOFF_MIN: Duration = Duration::from_millis(500);
/// ...to at most this, with full jitter.
const BACKOFF_MAX: Duration = Duration::from_secs(30);

type StdinLines = Lines<BufReader<Stdin>>;

/// Why a connection ended.
enum Ended {
    /// The user is done and every message was answered (or time ran out).
    Done,
    /// The connection was lost; reconnect, after the delay the server asked
    /// for if it did.
    Lost(String, Option<Duration>),
}

struct Client {
    server: String,
    /// How to connect (whom `wss://` trusts).
    transport: TransportConfig,
    json: bool,
    nick: Option<String>,
    /// The session token from the last `welcome`.
    token: Option<String>,
    /// The access token for servers with authentication on.
    access_token: Option<String>,
    /// Rooms in the order joined, with the newest `seq` seen in each
    /// (`None` until the first `joined`).
    rooms: Vec<(String, Option<u64>)>,
    current: Option<String>,
    /// Messages sent (or queued while offline) and not yet acknowledged, in
    /// the order typed, with their ids.
    pending: Vec<(String, ClientFrame)>,
    /// Messages the server refused.
    refused: usize,
    /// Keeps sends within the server's announced rates.
    pacer: Pacer,
    /// Set once the user is done: stop when `pending` is empty or then.
    quit_by: Option<Instant>,
    stdin_open: bool,
    id_prefix: String,
    next_id: u64,
}

/// Connects, greets, joins, then relays stdin and the server, reconnecting
/// whenever the connection is lost. Returns the exit code.
pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let client_tls = match (&args.ca, args.insecure) {
        (Some(path), _) => Some(ClientTls::from_ca_file(path).map_err(anyhow::Error::msg)?),
        (None, true) => Some(ClientTls::insecure()),
        (None, false) => None,
    };
    let transport = TransportConfig { client_tls, ..TransportConfig::default() };
    let mut client = Client {
        transport,
        server: args.server,
        json: args.json,
        nick: args.nick,
        token: None,
        access_token: args.token,
        rooms: vec![(args.room, None)],
        current: None,
        pending: Vec::new(),
        refused: 0,
        pacer: Pacer::default(),
        quit_by: None,
        stdin_open: true,
        id_prefix: format!("{:08x}", rand::random::<u32>()),
        next_id: 0,
    };
    let mut stdin = BufReader::new(tokio::io::stdin()).lines();
    // The first connection's failures are the user's to fix: report them.
    let mut socket = client.open(false).await?;
    loop {
        match client.relay(&mut socket, &mut stdin).await? {
            Ended::Done => break,
            Ended::Lost(why, asked) => {
                eprintln!("-- disconnected: {why}; reconnecting");
                match client.reconnect(&mut stdin, asked).await? {
                    Some(reconnected) => socket = reconnected,
                    None => return Ok(client.exit_code()),
                }
            }
        }
    }
    close(&mut socket).await;
    Ok(client.exit_code())
}

impl Client {
    /// Opens a connection: greets (resuming the session if there is one),
    /// joins every room from where it was, and re-sends what is pending.
    async fn open(&mut self, again: bool) -> anyhow::Result<WebSocket> {
        self.pacer.reset();
        let mut socket =
            connect(&self.server, Some(chat_protocol::SUBPROTOCOL), &self.transport).await?;
        let hello = ClientFrame::Hello {
            nick: self.nick.clone(),
            session: self.token.clone(),
            token: self.access_token.clone(),
        };
        self.send(&mut socket, hello).await?;
        loop {
            let text = next_text(&mut socket)
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
                Ok(frame @ ServerFrame::Welcome { .. }) => {
                    if !again {
                        self.show(&text, &frame);
                    }
                    self.on_frame(&frame);
                    break;
                }
                _ => {}
            }
        }
        let mut joins = BTreeMap::new();
        for (room, after) in self.rooms.clone() {
            let id =
                self.send(&mut socket, ClientFrame::Join { room: room.clone(), after }).await?;
            joins.insert(id, after);
        }
        let mut resumed = Resumed::default();
        // On a reconnect, what each room missed, printed once complete.
        let mut missed: Vec<Missed> = Vec::new();
        while !joins.is_empty() {
            let text = next_text(&mut socket)
                .await?
                .context("server closed the connection while joining")?;
            let frame = ServerFrame::decode(&text).ok();
            match &frame {
                Some(ServerFrame::Joined { id: Some(id), room, resume, gap, history, .. })
                    if joins.contains_key(id) =>
                {
                    let after = joins.remove(id).flatten();
                    resumed.add(after, *resume, gap.map(|g| g.to - g.from + 1));
                    if let (true, Some(after)) = (again, after) {
                        // Everything after `after` (or after the gap) is owed.
                        let floor = gap.map_or(after + 1, |g| g.to + 1);
                        let messages = history.clone();
                        missed.push(Missed { room: room.clone(), floor, messages });
                    }
                }
                Some(ServerFrame::Error { id: Some(id), code, message, .. })
                    if joins.contains_key(id) =>
                {
                    if !again {
                        bail!("{code}: {}", render::clean(message));
                    }
                    joins.remove(id);
                }
                _ => {}
            }
            let Some(frame) = frame else {
                if self.json {
                    println!("{text}");
                }
                continue;
            };
            self.on_frame(&frame);
            match &frame {
                // On a reconnect only what was missed is news, not the join.
                ServerFrame::Joined { .. } if again && !self.json => {}
                _ => self.show(&text, &frame),
            }
        }
        // A resume carries at most the newest 200 messages: page back for
        // the rest, holding newer frames until the older ones are shown.
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
                let id = self.send(&mut socket, ask).await?;
                let older = loop {
                    let text =
                        next_text(&mut socket).await?.context("server closed the connection")?;
                    match ServerFrame::decode(&text) {
                        Ok(ServerFrame::History { id: Some(answer), messages, .. })
                            if answer == id =>
                        {
                            if self.json {
                                println!("{text}");
                            }
                            break messages;
                        }
                        Ok(ServerFrame::Error { id: Some(answer), .. }) if answer == id => {
                            break Vec::new();
                        }
                        _ => held.push(text),
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
        if again && !self.json {
            for room in &missed {
                for line in render::messages(&room.messages) {
                    println!("{line}");
                }
            }
            println!("{}", resumed.notice());
        }
        for text in held {
            if let Ok(frame) = ServerFrame::decode(&text) {
                self.on_frame(&frame);
                self.show(&text, &frame);
            }
        }
        for (id, frame) in self.pending.clone() {
            self.paced_send(&mut socket, Some(id), frame).await?;
        }
        Ok(socket)
    }

    /// Waits with growing, jittered delays and reconnects; lines typed
    /// meanwhile are queued. A restarting server's own delay (`asked`) is
    /// used as given: it already spreads its clients out. `None` if the user
    /// finished and time ran out.
    async fn reconnect(
        &mut self,
        stdin: &mut StdinLines,
        mut asked: Option<Duration>,
    ) -> anyhow::Result<Option<WebSocket>> {
        let mut attempt = 0u32;
        loop {
            let delay = match asked.take() {
                Some(delay) => {
                    eprintln!(
                        "-- the server is restarting; reconnecting in {:.1} s as it asked",
                        delay.as_secs_f64()
                    );
                    delay.min(BACKOFF_MAX)
                }
                None => {
                    let ceiling =
                        BACKOFF_MIN.saturating_mul(2u32.saturating_pow(attempt)).min(BACKOFF_MAX);
                    ceiling.mul_f64(rand::random::<f64>())
                }
            };
            attempt = attempt.saturating_add(1);
            let wake = Instant::now() + delay;
            loop {
                if self.quit_by.is_some() && self.pending.is_empty() {
                    return Ok(None);
                }
                let give_up = self.quit_by.unwrap_or(wake + BACKOFF_MAX);
                tokio::select! {
                    () = tokio::time::sleep_until(wake) => break,
                    () = tokio::time::sleep_until(give_up) => return Ok(None),
                    line = stdin.next_line(), if self.reads_stdin() => {
                        let line = line.context("reading stdin")?;
                        self.offline_line(line);
                    }
                    _ = tokio::signal::ctrl_c(), if self.quit_by.is_none() => self.quit(),
                }
            }
            match self.open(true).await {
                Ok(socket) => return Ok(Some(socket)),
                Err(err) if is_replaced(&err) => return Err(err),
                Err(err) => {
                    asked = restart_delay(&err);
                    eprintln!("-- reconnect failed: {err:#}");
                }
            }
        }
    }

    async fn relay(
        &mut self,
        socket: &mut WebSocket,
        stdin: &mut StdinLines,
    ) -> anyhow::Result<Ended> {
        loop {
            if self.quit_by.is_some() && self.pending.is_empty() {
                return Ok(Ended::Done);
            }
            let deadline =
                self.quit_by.unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
            tokio::select! {
                line = stdin.next_line(), if self.reads_stdin() => {
                    match line.context("reading stdin")? {
                        Some(line) => self.online_line(socket, &line).await?,
                        None => {
                            self.stdin_open = false;
                            self.quit();
                        }
                    }
                }
                text = next_text(socket) => match text {
                    Ok(Some(text)) => {
                        let frame = ServerFrame::decode(&text).ok();
                        if let Some(frame) = &frame {
                            self.on_frame(frame);
                            self.show(&text, frame);
                        } else if self.json {
                            // A newer server may send frames this client does not know.
                            println!("{text}");
                        }
                    }
                    Ok(None) => return Ok(Ended::Lost("the server closed the connection".to_owned(), None)),
                    Err(err) if is_replaced(&err) => return Err(err),
                    Err(err) => return Ok(Ended::Lost(format!("{err:#}"), restart_delay(&err))),
                },
                () = tokio::time::sleep_until(deadline), if self.quit_by.is_some() => return Ok(Ended::Done),
                // ctrl-c leaves like /quit: what was sent still gets its chance.
                _ = tokio::signal::ctrl_c(), if self.quit_by.is_none() => self.quit(),
            }
        }
    }

    fn reads_stdin(&self) -> bool {
        self.stdin_open && self.quit_by.is_none()
    }

    fn quit(&mut self) {
        self.quit_by = Some(Instant::now() + ACK_WAIT);
    }

    async fn online_line(&mut self, socket: &mut WebSocket, line: &str) -> anyhow::Result<()> {
        if let Some(raw) = self.raw_frame(line) {
            let (id, frame) = match raw {
                Ok(raw) => raw,
                Err(why) => {
                    eprintln!("error: {why}");
                    return Ok(());
                }
            };
            let is_message = matches!(frame, ClientFrame::Say { .. } | ClientFrame::Dm { .. });
            self.paced_send(socket, Some(id.clone()), frame.clone()).await?;
            if is_message {
                self.pending.push((id, frame));
            }
            return Ok(());
        }
        match input::parse(line, self.current.as_deref()) {
            Input::Send(frame) => {
                let is_message = matches!(frame, ClientFrame::Say { .. } | ClientFrame::Dm { .. });
                let id = self.send(socket, frame.clone()).await?;
                if is_message {
                    self.pending.push((id, frame));
                }
            }
            Input::Quit => self.quit(),
            Input::Help => println!("{}", input::HELP),
            Input::Nothing => {}
            Input::Invalid(why) => eprintln!("error: {why}"),
        }
        Ok(())
    }

    /// In `--json` mode a line that is a JSON object is a raw client frame:
    /// sent as it is, with its own `id` (or a fresh one). `None` for any
    /// other line; `Some(Err)` for a malformed frame or a `hello` (the
    /// client greets by itself).
    fn raw_frame(&mut self, line: &str) -> Option<Result<(String, ClientFrame), String>> {
        if !self.json || !line.trim_start().starts_with('{') {
            return None;
        }
        Some(match chat_protocol::decode_client(line) {
            Ok(ClientMessage { frame: ClientFrame::Hello { .. }, .. }) => {
                Err("the client says hello by itself; send other frames".to_owned())
            }
            Ok(ClientMessage { id, frame }) => Ok((id.unwrap_or_else(|| self.new_id()), frame)),
            Err(err) => Err(format!("{}: {}", err.code, err.message)),
        })
    }

    /// A line typed while disconnected: messages wait for the reconnect.
    fn offline_line(&mut self, line: Option<String>) {
        let Some(line) = line else {
            self.stdin_open = false;
            self.quit();
            return;
        };
        if let Some(raw) = self.raw_frame(&line) {
            match raw {
                Ok((id, frame @ (ClientFrame::Say { .. } | ClientFrame::Dm { .. }))) => {
                    self.pending.push((id, frame));
                }
                Ok(_) => eprintln!("error: offline; that frame needs the server"),
                Err(why) => eprintln!("error: {why}"),
            }
            return;
        }
        match input::parse(&line, self.current.as_deref()) {
            Input::Send(frame @ (ClientFrame::Say { .. } | ClientFrame::Dm { .. })) => {
                let id = self.new_id();
                self.pending.push((id, frame));
            }
            Input::Send(_) => eprintln!("error: offline; that command needs the server"),
            Input::Quit => self.quit(),
            Input::Help => println!("{}", input::HELP),
            Input::Nothing => {}
            Input::Invalid(why) => eprintln!("error: {why}"),
        }
    }

    /// Keeps the client's view of its session up to date.
    fn on_frame(&mut self, frame: &ServerFrame) {
        match frame {
            ServerFrame::Welcome { nick, session, limits, .. } => {
                self.nick = Some(nick.clone());
                self.token = Some(session.clone());
                self.pacer.limits(limits, tokio::time::Instant::now());
            }
            ServerFrame::Joined { room, last_seq, .. } => {
                // A room joined anew becomes current; a re-join on reconnect
                // leaves the current room as it was.
                match self.rooms.iter_mut().find(|(r, _)| r == room) {
                    Some(entry) => entry.1 = Some(*last_seq),
                    None => {
                        self.rooms.push((room.clone(), Some(*last_seq)));
                        self.current = Some(room.clone());
                    }
                }
                if self.current.is_none() {
                    self.current = Some(room.clone());
                }
            }
            ServerFrame::Left { room, .. } => {
                self.rooms.retain(|(r, _)| r != room);
                if self.current.as_ref() == Some(room) {
                    self.current = self.rooms.last().map(|(r, _)| r.clone());
                }
            }
            ServerFrame::Nick { nick, .. } => self.nick = Some(nick.clone()),
            ServerFrame::Message(message) => {
                if let Some((_, seen)) = self.rooms.iter_mut().find(|(r, _)| *r == message.room) {
                    *seen = Some(seen.map_or(message.seq, |s| s.max(message.seq)));
                }
                if let Some(id) = &message.id {
                    self.pending.retain(|(pending, _)| pending != id);
                }
            }
            ServerFrame::Direct { id: Some(id), .. } => {
                self.pending.retain(|(pending, _)| pending != id)
            }
            ServerFrame::Error { id, code, message, .. } => {
                if let Some(id) = id {
                    let before = self.pending.len();
                    self.pending.retain(|(pending, _)| pending != id);
                    self.refused += before - self.pending.len();
                }
                if !self.json {
                    eprintln!("error: {code}: {}", render::clean(message));
                }
            }
            _ => {}
        }
    }

    fn show(&self, text: &str, frame: &ServerFrame) {
        if self.json {
            println!("{text}");
            return;
        }
        for line in render::lines(frame, self.nick.as_deref().unwrap_or_default()) {
            println!("{line}");
        }
    }

    fn exit_code(&self) -> ExitCode {
        if !self.pending.is_empty() {
            eprintln!("error: {} message(s) not acknowledged by the server", self.pending.len());
            return ExitCode::FAILURE;
        }
        if self.refused > 0 {
            eprintln!("error: the server refused {} message(s)", self.refused);
            return ExitCode::FAILURE;
        }
        ExitCode::SUCCESS
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
        let message = matches!(frame, ClientFrame::Say { .. } | ClientFrame::Dm { .. });
        let delay = self.pacer.delay(message, tokio::time::Instant::now());
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        send_frame(socket, id, frame).await
    }
}

/// What a room missed during a disconnect: every message from `floor` on.
struct Missed {
    room: String,
    floor: u64,
    messages: Vec<chat_protocol::Message>,
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
                "-- reconnected; the server lost its history (it restarted without storage)"
                    .to_owned()
            }
            (false, 0) => "-- reconnected, resumed".to_owned(),
            (false, 1) => "-- reconnected, gap of 1 message".to_owned(),
            (false, n) => format!("-- reconnected, gap of {n} messages"),
        }
    }
}

async fn send_frame(
    socket: &mut WebSocket,
    id: Option<String>,
    frame: ClientFrame,
) -> anyhow::Result<()> {
    let text = encode_client(&ClientMessage { id, frame });
    socket.send(Message::text(text)).await.context("sending to the server")
}

/// Marks the error for a connection the server closed because this session
/// was resumed elsewhere: reconnecting would take it back, so stop.
#[derive(Debug, thiserror::Error)]
#[error("the session was resumed by another client")]
struct Replaced;

/// Marks the error for a connection the server will not take back as it
/// is: the session was resumed elsewhere, the access token was refused, or
/// it expired. Reconnecting cannot help, so the client stops.
fn is_replaced(err: &anyhow::Error) -> bool {
    err.downcast_ref::<Replaced>().is_some() || err.downcast_ref::<Refused>().is_some()
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Refused(String);

/// Marks the error for a connection closed by a restarting server (1012)
/// that said how long to wait before reconnecting.
#[derive(Debug, thiserror::Error)]
#[error("the server is restarting")]
struct Restarting(Duration);

fn restart_delay(err: &anyhow::Error) -> Option<Duration> {
    err.downcast_ref::<Restarting>().map(|restarting| restarting.0)
}

/// The next text frame, or `None` once the server closed.
async fn next_text(socket: &mut WebSocket) -> anyhow::Result<Option<String>> {
    loop {
        match socket.next().await {
            Some(Ok(Message::Text(text))) => return Ok(Some(text.as_str().to_owned())),
            Some(Ok(Message::Close(frame))) => {
                if let Some(frame) = frame {
                    let code = u16::from(frame.code);
                    if code == CloseCode::Replaced.code() {
                        return Err(Replaced.into());
                    }
                    if code == CloseCode::TokenExpired.code() {
                        let why = "the access token expired; get a new one (chat-server token)";
                        return Err(Refused(why.to_owned()).into());
                    }
                    eprintln!(
                        "-- server closed the connection: {code} {}",
                        render::clean(&frame.reason)
                    );
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
async fn close(socket: &mut WebSocket) {
    let frame = CloseFrame { code: WsCloseCode::Normal, reason: "bye".into() };
    let closing = async {
        let _ = socket.close(Some(frame)).await;
        while let Some(Ok(_)) = socket.next().await {}
    };
    let _ = tokio::time::timeout(Duration::from_secs(2), closing).await;
}
