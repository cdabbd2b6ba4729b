//! The async driver of the client's [`Session`], shared by line mode, the
//! full-screen client, `chat send` and `chat tail`.
//!
//! The engine is a task that owns what the session may not: the
//! connection, the clock, the files being uploaded and the outbox on disk.
//! It carries out what the session asks ([`Transmit`]) and feeds it what
//! happens. A frontend sends it [`Command`]s and shows the [`Event`]s it
//! reports; it never touches the socket.

use std::collections::HashMap;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::time::{Duration, Instant};

use chat_protocol::ClientFrame;
use chat_transport::tungstenite::protocol::CloseFrame;
use chat_transport::tungstenite::protocol::frame::coding::CloseCode as WsCloseCode;
use chat_transport::tungstenite::{self, Message as WsMessage};
use chat_transport::{ClientSocket, ConnectError, TransportConfig};
use futures_util::StreamExt;
use tokio::io::AsyncReadExt;
use tokio::sync::mpsc;

use crate::files;
use crate::outbox::{Outbox, Saved};
use crate::session::{self, Disconnect, FileId, Session, SessionConfig, Transmit};
pub use crate::session::{Event, Link};

/// Which transport the client uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Via {
    /// A WebSocket; the HTTP fallback when the upgrade is refused (a proxy
    /// that drops it) and the fallback gets through.
    #[default]
    Auto,
    /// A WebSocket only.
    Websocket,
    /// The HTTP fallback only (an event stream and posts).
    Http,
}

/// How the engine is set up.
#[derive(Debug)]
pub struct Options {
    pub server: String,
    pub transport: TransportConfig,
    /// Which transport.
    pub via: Via,
    pub nick: Option<String>,
    /// The access token, for servers with authentication on.
    pub access_token: Option<String>,
    /// Rooms to join, in order, each from after a `seq` if given.
    pub rooms: Vec<(String, Option<u64>)>,
    /// See [`SessionConfig::first_failure_fatal`].
    pub first_failure_fatal: bool,
    /// How long a quit waits for the server to acknowledge what was sent.
    pub linger: Duration,
    /// Where unacknowledged messages are kept across client restarts.
    pub outbox: Option<Outbox>,
}

/// What a frontend asks of the engine.
#[derive(Debug)]
pub enum Command {
    /// See [`session::Command::Send`].
    Send(ClientFrame),
    /// See [`session::Command::SendAs`].
    SendAs(String, ClientFrame),
    /// Send the file at `path` to `room` (needs the connection).
    Upload { room: String, path: PathBuf },
    /// Save a file seen in a message: its id or the start of it (at least
    /// 6 characters), to `to` (a file, or a directory) or the current
    /// directory under its own name.
    Download { id: String, to: Option<PathBuf> },
    /// See [`session::Command::Quit`].
    Quit,
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
    let config = SessionConfig {
        nick: options.nick,
        access_token: options.access_token,
        rooms: options.rooms,
        first_failure_fatal: options.first_failure_fatal,
        linger: options.linger,
        durable: options.outbox.is_some(),
        seed: rand::random(),
    };
    let engine = Engine {
        session: Session::new(config, saved, now()),
        server: options.server,
        transport: options.transport,
        via: options.via,
        outbox: options.outbox,
        socket: None,
        connecting: None,
        files: HashMap::new(),
        next_file: 0,
        buffer: Vec::new(),
        commands,
        events,
    };
    tokio::spawn(engine.run());
    (command_tx, event_rx)
}

/// The time now, from tokio's clock (so a paused test clock applies).
fn now() -> Instant {
    tokio::time::Instant::now().into_std()
}

type Connecting = Pin<Box<dyn Future<Output = anyhow::Result<ClientSocket>> + Send>>;

struct Engine {
    session: Session,
    server: String,
    transport: TransportConfig,
    /// Which transport; `Auto` turns into `Http` once a refused upgrade
    /// showed the WebSocket cannot get through.
    via: Via,
    outbox: Option<Outbox>,
    socket: Option<ClientSocket>,
    /// The connection being opened.
    connecting: Option<Connecting>,
    /// Files being uploaded, by the id the session knows them by.
    files: HashMap<FileId, tokio::fs::File>,
    next_file: u64,
    /// Reused for upload parts.
    buffer: Vec<u8>,
    commands: mpsc::UnboundedReceiver<Command>,
    events: mpsc::UnboundedSender<Event>,
}

impl Engine {
    async fn run(mut self) {
        loop {
            if self.carry_out().await {
                return;
            }
            let timeout = self.session.poll_timeout().map(tokio::time::Instant::from_std);
            tokio::select! {
                command = self.commands.recv() => match command {
                    Some(command) => self.command(command).await,
                    // The frontend is gone: leave as it would.
                    None => self.session.handle_command(now(), session::Command::Quit),
                },
                message = read(&mut self.socket) => self.received(message),
                connected = connected(&mut self.connecting) => {
                    self.connecting = None;
                    match connected {
                        Ok(socket) => {
                            if self.via == Via::Auto && socket.transport() == "sse" {
                                self.via = Via::Http;
                                self.emit(Event::Info(
                                    "the WebSocket upgrade was refused on the way; using the HTTP fallback".to_owned(),
                                ));
                            }
                            self.socket = Some(socket);
                            self.session.handle_connected(now());
                        }
                        Err(err) => {
                            let why = Disconnect::Unreachable(format!("{err:#}"));
                            self.session.handle_disconnected(now(), why);
                        }
                    }
                }
                () = sleep_until_some(timeout) => self.session.handle_timeout(now()),
            }
        }
    }

    /// Does what the session asks, saves the outbox and reports its
    /// events. True once the session is over.
    async fn carry_out(&mut self) -> bool {
        while let Some(transmit) = self.session.poll_transmit() {
            self.transmit(transmit).await;
        }
        self.files.retain(|file, _| self.session.wants_file(*file));
        if let (Some(saved), Some(outbox)) = (self.session.poll_save(), &self.outbox) {
            // Not fatal: the messages are still in memory and still sent.
            if let Err(err) = outbox.save(&saved) {
                self.emit(Event::Problem(format!("saving the outbox: {err:#}")));
            }
        }
        let mut over = false;
        while let Some(event) = self.session.poll_event() {
            over |= matches!(event, Event::Done { .. } | Event::Failed(_));
            self.emit(event);
        }
        over
    }

    fn emit(&self, event: Event) {
        // A frontend that is gone no longer needs to know.
        let _ = self.events.send(event);
    }

    async fn transmit(&mut self, transmit: Transmit) {
        match transmit {
            Transmit::Connect => {
                let (server, transport, via) =
                    (self.server.clone(), self.transport.clone(), self.via);
                self.socket = None;
                self.connecting = Some(Box::pin(connect(server, transport, via)));
            }
            Transmit::Text(text) => self.send(WsMessage::text(text)).await,
            Transmit::Chunk { file, max } => self.chunk(file, max).await,
            Transmit::Close => {
                self.connecting = None;
                if let Some(mut socket) = self.socket.take() {
                    close(&mut socket).await;
                }
            }
        }
    }

    async fn send(&mut self, message: WsMessage) {
        let Some(socket) = self.socket.as_mut() else {
            return;
        };
        if let Err(err) = socket.send(message).await {
            self.socket = None;
            let why = Disconnect::Broken(format!("sending to the server: {err}"));
            self.session.handle_disconnected(now(), why);
        }
    }

    /// Reads the next part of an upload and sends it.
    async fn chunk(&mut self, id: FileId, max: usize) {
        let Some(file) = self.files.get_mut(&id) else {
            return self.session.handle_chunk_failed(now(), id, "the file is no longer open");
        };
        self.buffer.resize(max, 0);
        match file.read(&mut self.buffer).await {
            Ok(0) => self.session.handle_chunk(now(), id, 0),
            Ok(n) => {
                let part = self.buffer.get(..n).unwrap_or_default().to_vec();
                self.send(WsMessage::binary(part)).await;
                self.session.handle_chunk(now(), id, n);
            }
            Err(err) => self.session.handle_chunk_failed(now(), id, &err.to_string()),
        }
    }

    fn received(&mut self, message: Option<Result<WsMessage, tungstenite::Error>>) {
        let how = match message {
            Some(Ok(WsMessage::Text(text))) => {
                return self.session.handle_frame(now(), text.as_str().to_owned());
            }
            Some(Ok(WsMessage::Close(Some(frame)))) => {
                Disconnect::Closed { code: u16::from(frame.code), reason: frame.reason.to_string() }
            }
            Some(Ok(WsMessage::Close(None))) | None => {
                Disconnect::Broken("the server closed the connection".to_owned())
            }
            // Pings are answered by tungstenite; the server sends no binary.
            Some(Ok(_)) => return,
            Some(Err(err)) => Disconnect::Broken(format!("reading from the server: {err}")),
        };
        self.socket = None;
        self.session.handle_disconnected(now(), how);
    }

    async fn command(&mut self, command: Command) {
        let command = match command {
            Command::Send(frame) => session::Command::Send(frame),
            Command::SendAs(id, frame) => session::Command::SendAs(id, frame),
            Command::Quit => session::Command::Quit,
            Command::Upload { room, path } => match files::open(&path).await {
                Ok(opened) => {
                    self.next_file += 1;
                    let id = FileId(self.next_file);
                    let upload = opened.upload(id, room);
                    self.files.insert(id, opened.file);
                    session::Command::Upload(upload)
                }
                Err(why) => return self.emit(Event::Problem(why)),
            },
            Command::Download { id, to } => return self.download(&id, to),
        };
        self.session.handle_command(now(), command);
    }

    /// Saves a file seen in a message, in the background.
    fn download(&self, id: &str, to: Option<PathBuf>) {
        let file = match self.session.attachment(id) {
            Ok(file) => file.clone(),
            Err(why) => return self.emit(Event::Problem(why)),
        };
        let Some(token) = self.session.token().map(str::to_owned) else {
            return self.emit(Event::Problem("not connected yet".to_owned()));
        };
        let (server, transport, events) =
            (self.server.clone(), self.transport.clone(), self.events.clone());
        tokio::spawn(async move {
            let event = match files::download(&server, &transport, &token, &file, to).await {
                Ok(saved) => Event::Info(saved),
                Err(why) => Event::Problem(why),
            };
            let _ = events.send(event);
        });
    }
}

/// Opens a connection over `via`: with `Auto`, a WebSocket, or the HTTP
/// fallback when the upgrade was refused or broken on the way (a reachable
/// server that will not upgrade: a proxy that drops `Upgrade`).
async fn connect(
    server: String,
    transport: TransportConfig,
    via: Via,
) -> anyhow::Result<ClientSocket> {
    let websocket = || async {
        let socket =
            chat_transport::connect(&server, Some(chat_protocol::SUBPROTOCOL), &transport).await?;
        Ok::<_, ConnectError>(ClientSocket::WebSocket(Box::new(socket)))
    };
    let http = || async {
        let stream = chat_transport::connect_event_stream(&server, &transport).await?;
        Ok::<_, ConnectError>(ClientSocket::EventStream(Box::new(stream)))
    };
    Ok(match via {
        Via::Websocket => websocket().await?,
        Via::Http => http().await?,
        Via::Auto => match websocket().await {
            Ok(socket) => socket,
            Err(err @ (ConnectError::Refused { .. } | ConnectError::Handshake(_))) => {
                // The upgrade was refused, not the server unreachable.
                http().await.map_err(|fallback| {
                    anyhow::anyhow!("{err}; the HTTP fallback failed too: {fallback}")
                })?
            }
            Err(err) => return Err(err.into()),
        },
    })
}

/// The next message on the connection; never, without one.
async fn read(socket: &mut Option<ClientSocket>) -> Option<Result<WsMessage, tungstenite::Error>> {
    match socket {
        Some(socket) => socket.next().await,
        None => std::future::pending().await,
    }
}

/// The connection being opened, once it is; never, without one.
async fn connected(connecting: &mut Option<Connecting>) -> anyhow::Result<ClientSocket> {
    match connecting {
        Some(connecting) => connecting.await,
        None => std::future::pending().await,
    }
}

/// Sleeps until `at`, or forever without one.
async fn sleep_until_some(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Closes with 1000 and waits briefly for the server's answer.
async fn close(socket: &mut ClientSocket) {
    let frame = CloseFrame { code: WsCloseCode::Normal, reason: "bye".into() };
    let closing = async {
        let _ = socket.close(Some(frame)).await;
        while let Some(Ok(_)) = socket.next().await {}
    };
    let _ = tokio::time::timeout(Duration::from_secs(2), closing).await;
}
