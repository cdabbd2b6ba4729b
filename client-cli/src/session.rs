//! One connection to the server, driven by stdin.

use std::collections::HashSet;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use chat_protocol::{ClientFrame, ClientMessage, ServerFrame, encode_client};
use chat_transport::tungstenite::Message;
use chat_transport::tungstenite::protocol::CloseFrame;
use chat_transport::tungstenite::protocol::frame::coding::CloseCode;
use chat_transport::{TransportConfig, WebSocket, connect};
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::time::Instant;

use crate::input::{self, Input};
use crate::{Args, render};

/// How long to wait at the end for the server to echo what was sent.
const ACK_WAIT: Duration = Duration::from_secs(5);

struct Session {
    socket: WebSocket,
    json: bool,
    me: String,
    /// Joined rooms, in the order joined.
    rooms: Vec<String>,
    current: Option<String>,
    /// Ids of sent messages not yet echoed by the server.
    pending: HashSet<String>,
    /// Messages the server refused.
    refused: usize,
    id_prefix: String,
    next_id: u64,
}

/// Connects, greets, joins, then relays stdin and the server until either
/// ends. Returns the exit code.
pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let socket =
        connect(&args.server, Some(chat_protocol::SUBPROTOCOL), &TransportConfig::default())
            .await?;
    let mut session = Session {
        socket,
        json: args.json,
        me: String::new(),
        rooms: Vec::new(),
        current: None,
        pending: HashSet::new(),
        refused: 0,
        id_prefix: format!("{:08x}", rand::random::<u32>()),
        next_id: 0,
    };
    session.greet(args.nick).await?;
    session.join_first(args.room).await?;
    session.relay().await
}

impl Session {
    async fn greet(&mut self, nick: Option<String>) -> anyhow::Result<()> {
        self.send(ClientFrame::Hello { nick }).await?;
        loop {
            let Some(text) = self.next_text().await? else {
                bail!("server closed the connection before welcome");
            };
            match ServerFrame::decode(&text) {
                Ok(ServerFrame::Error { code, message, .. }) => bail!("{code}: {message}"),
                Ok(frame @ ServerFrame::Welcome { .. }) => {
                    self.show(&text, &frame);
                    return Ok(());
                }
                _ => {}
            }
        }
    }

    /// Joins the first room and waits for the answer, so that the first
    /// line read from stdin already has a room to go to.
    async fn join_first(&mut self, room: String) -> anyhow::Result<()> {
        let id = self.send(ClientFrame::Join { room }).await?;
        loop {
            let Some(text) = self.next_text().await? else {
                bail!("server closed the connection before joining");
            };
            match ServerFrame::decode(&text) {
                Ok(ServerFrame::Error { id: Some(refused), code, message, .. })
                    if refused == id =>
                {
                    bail!("{code}: {}", render::clean(&message));
                }
                Ok(ServerFrame::Joined { id: Some(joined), .. }) if joined == id => {
                    self.on_text(&text);
                    return Ok(());
                }
                _ => self.on_text(&text),
            }
        }
    }

    async fn relay(&mut self) -> anyhow::Result<ExitCode> {
        let mut stdin = BufReader::new(tokio::io::stdin()).lines();
        let mut quit_by: Option<Instant> = None;
        loop {
            if quit_by.is_some() && self.pending.is_empty() {
                break;
            }
            let deadline = quit_by.unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
            tokio::select! {
                line = stdin.next_line(), if quit_by.is_none() => {
                    let line = match line {
                        Ok(Some(line)) => line,
                        Ok(None) => {
                            quit_by = Some(Instant::now() + ACK_WAIT);
                            continue;
                        }
                        Err(err) => return Err(err).context("reading stdin"),
                    };
                    if self.on_line(&line).await? {
                        quit_by = Some(Instant::now() + ACK_WAIT);
                    }
                }
                text = self.next_text() => match text? {
                    Some(text) => self.on_text(&text),
                    None => bail!("disconnected by the server"),
                },
                () = tokio::time::sleep_until(deadline), if quit_by.is_some() => break,
                // ctrl-c leaves like /quit: what was sent still gets its chance.
                _ = tokio::signal::ctrl_c(), if quit_by.is_none() => quit_by = Some(Instant::now() + ACK_WAIT),
            }
        }
        self.close().await;
        if !self.pending.is_empty() {
            eprintln!("error: {} message(s) not acknowledged by the server", self.pending.len());
            return Ok(ExitCode::FAILURE);
        }
        if self.refused > 0 {
            eprintln!("error: the server refused {} message(s)", self.refused);
            return Ok(ExitCode::FAILURE);
        }
        Ok(ExitCode::SUCCESS)
    }

    /// Acts on one stdin line; returns whether the user asked to quit.
    async fn on_line(&mut self, line: &str) -> anyhow::Result<bool> {
        match input::parse(line, self.current.as_deref()) {
            Input::Send(frame) => {
                let is_message = matches!(frame, ClientFrame::Say { .. } | ClientFrame::Dm { .. });
                let id = self.send(frame).await?;
                if is_message {
                    self.pending.insert(id);
                }
            }
            Input::Quit => return Ok(true),
            Input::Help => println!("{}", input::HELP),
            Input::Nothing => {}
            Input::Invalid(why) => eprintln!("error: {why}"),
        }
        Ok(false)
    }

    fn on_text(&mut self, text: &str) {
        let frame = match ServerFrame::decode(text) {
            Ok(frame) => frame,
            // A newer server may send frames this client does not know.
            Err(_) => {
                if self.json {
                    println!("{text}");
                }
                return;
            }
        };
        match &frame {
            ServerFrame::Joined { room, .. } => {
                if !self.rooms.contains(room) {
                    self.rooms.push(room.clone());
                }
                self.current = Some(room.clone());
            }
            ServerFrame::Left { room, .. } => {
                self.rooms.retain(|r| r != room);
                if self.current.as_ref() == Some(room) {
                    self.current = self.rooms.last().cloned();
                }
            }
            ServerFrame::Nick { nick, .. } => self.me = nick.clone(),
            ServerFrame::Message(message) => {
                if let Some(id) = &message.id {
                    self.pending.remove(id);
                }
            }
            ServerFrame::Direct { id: Some(id), .. } => {
                self.pending.remove(id);
            }
            ServerFrame::Error { id, code, message, .. } => {
                if let Some(id) = id {
                    if self.pending.remove(id) {
                        self.refused += 1;
                    }
                }
                if !self.json {
                    eprintln!("error: {code}: {}", render::clean(message));
                }
            }
            _ => {}
        }
        self.show(text, &frame);
    }

    fn show(&mut self, text: &str, frame: &ServerFrame) {
        if let ServerFrame::Welcome { nick, .. } = frame {
            self.me = nick.clone();
        }
        if self.json {
            println!("{text}");
            return;
        }
        for line in render::lines(frame, &self.me) {
            println!("{line}");
        }
    }

    /// Sends a frame with a fresh id and returns the id.
    async fn send(&mut self, frame: ClientFrame) -> anyhow::Result<String> {
        self.next_id += 1;
        let id = format!("{}-{}", self.id_prefix, self.next_id);
        let text = encode_client(&ClientMessage { id: Some(id.clone()), frame });
        self.socket.send(Message::text(text)).await.context("sending to the server")?;
        Ok(id)
    }

    /// The next text frame, or `None` once the server closed.
    async fn next_text(&mut self) -> anyhow::Result<Option<String>> {
        loop {
            match self.socket.next().await {
                Some(Ok(Message::Text(text))) => return Ok(Some(text.as_str().to_owned())),
                Some(Ok(Message::Close(frame))) => {
                    if let Some(frame) = frame {
                        eprintln!(
                            "-- server closed the connection: {} {}",
                            u16::from(frame.code),
                            frame.reason
                        );
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
    async fn close(&mut self) {
        let frame = CloseFrame { code: CloseCode::Normal, reason: "bye".into() };
        let closing = async {
            let _ = self.socket.close(Some(frame)).await;
            while let Some(Ok(_)) = self.socket.next().await {}
        };
        let _ = tokio::time::timeout(Duration::from_secs(2), closing).await;
    }
}
