//! Socket.IO clients (docs/protocol.md, "Socket.IO"): each Engine.IO
//! session that connects to the main namespace is a chat connection like
//! any other, speaking through [`wire`]'s mapping: its `CONNECT` is a
//! `hello` (and a `join` of its room), its events are frames, and the hub
//! writes to it in its dialect.

mod wire;

use std::sync::Arc;
use std::time::Duration;

use chat_core::{Departure, MemberId, SessionToken};
use chat_protocol::socketio::{Kind, MAIN, Packet, placeholder};
use chat_protocol::{ClientFrame, ClientMessage, CloseCode, DecodeError};
use chat_transport::EngineOpened;
use chat_transport::engineio::{Ended, EngineSocket, Link};
use chat_transport::tungstenite::{Bytes, Message, Utf8Bytes};
use chat_transport::{Pushed, Transport};
use serde_json::{Map, Value};
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, info};

use self::wire::{Acks, Stage};
pub(crate) use self::wire::{Encodings, Peer};
use crate::ServerConfig;
use crate::connection::{Admit, FrameLimiter, source_of};
use crate::files::{Announcement, Next, Receiver};
use crate::hub::{Conn, Dialect, Input};
use crate::metrics::Metrics;
use crate::sink::Sink;

/// Where Socket.IO clients connect (their default path).
pub(crate) const PATH: &str = "/socket.io/";

/// How long a session may go without connecting to the namespace
/// (Socket.IO's `connectTimeout`).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(45);

/// The room a connection that names none chats in.
const DEFAULT_ROOM: &str = "lobby";

/// Serves one Engine.IO session until it ends.
pub(crate) async fn serve(
    opened: Box<EngineOpened>,
    hub: mpsc::Sender<Input>,
    config: &ServerConfig,
    metrics: Arc<Metrics>,
) {
    let EngineOpened { mut socket, request, peer, pass: _pass } = *opened;
    let link = Arc::clone(socket.link());
    let auth = match tokio::time::timeout(CONNECT_TIMEOUT, connected(&mut socket)).await {
        Ok(Some(auth)) => auth,
        Ok(None) | Err(_) => return,
    };
    let auth = Auth::read(auth, request.uri().query().unwrap_or(""));
    let (close, mut closing) = oneshot::channel();
    let Ok(token) = SessionToken::parse(&format!("{:032x}", rand::random::<u128>())) else {
        return;
    };
    let acks = Acks::default();
    let dialect = Peer {
        sid: format!("{:024x}", rand::random::<u128>() >> 32),
        rich: auth.rich,
        stage: Stage::Connecting,
        acks: acks.clone(),
    };
    let conn = Conn {
        sink: Sink::EngineIo(Arc::clone(&link)),
        dialect: Dialect::SocketIo(Box::new(dialect)),
        close,
        token,
        checks_without_hello: 0,
    };
    let (reply, member) = oneshot::channel();
    let source = source_of(peer.ip());
    if hub.send(Input::Connect { conn, source, reply }).await.is_err() {
        return;
    }
    let Ok(member) = member.await else { return };
    let (open, opened) = metrics.transport(Transport::SocketIo);
    open.inc();
    opened.inc();
    if metrics.connection_lines.allow() {
        info!(%member, %peer, transport = Transport::SocketIo.name(), "connected");
    }
    let mut client = Client {
        member,
        hub,
        link,
        acks,
        limiter: FrameLimiter::new(config),
        room: auth.room.clone(),
        metrics: Arc::clone(&metrics),
        departure: Departure::Lost,
        binary: None,
        receiver: Receiver::default(),
    };
    let ended = match client.begin(&auth, config).await {
        Err(ended) => ended,
        Ok(()) => loop {
            let message = tokio::select! {
                biased;
                closing = &mut closing => {
                    client.link.close();
                    break closing.map_or(Stop::Stopping, |closing| Stop::Closed(closing.code));
                }
                message = socket.next() => message,
            };
            let outcome = match message {
                None => Err(Stop::SessionEnded),
                Some(Message::Text(text)) => client.take(&text, config).await,
                Some(Message::Binary(bytes)) => client.attachment(bytes, config).await,
                Some(_) => Ok(()),
            };
            if let Err(ended) = outcome {
                break ended;
            }
        },
    };
    client.link.close();
    let (member, departure) = (client.member, client.departure);
    let _ = client.hub.send(Input::Disconnect { member, departure }).await;
    metrics.transport(Transport::SocketIo).0.dec();
    let session = client.link.ended();
    let code = ended.code(session, client.link.closed_with());
    metrics.closed(code);
    if metrics.connection_lines.allow() {
        let code = code.map_or_else(|| "none".to_owned(), |code| code.to_string());
        let session = session.map(|ended| format!("{ended:?}")).unwrap_or_default();
        info!(%member, reason = %ended, code, session, "disconnected");
    }
}

/// Why a Socket.IO connection ended.
#[derive(Debug, Clone, Copy)]
enum Stop {
    /// The client sent `DISCONNECT`.
    Disconnected,
    /// The client broke the protocol (how).
    Broke(&'static str),
    /// The client kept sending far past the frame rate.
    Flooded,
    /// The hub is gone: the server is stopping.
    Stopping,
    /// The hub closed the connection, with this code.
    Closed(CloseCode),
    /// The Engine.IO session ended (its [`Ended`] says why).
    SessionEnded,
}

impl std::fmt::Display for Stop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Disconnected => f.write_str("the client disconnected"),
            Self::Broke(how) => f.write_str(how),
            Self::Flooded => f.write_str("too many frames"),
            Self::Stopping => f.write_str("server stopping"),
            Self::Closed(code) => write!(f, "closed by server ({})", code.code()),
            Self::SessionEnded => f.write_str("session ended"),
        }
    }
}

impl Stop {
    /// The close code a WebSocket connection ended so would carry (for the
    /// metrics, which count both alike), given the session's WebSocket's
    /// own if it had one: `None` for one cut without one.
    fn code(self, session: Option<Ended>, websocket: Option<u16>) -> Option<u16> {
        const PROTOCOL_ERROR: u16 = 1002;
        match self {
            Self::Disconnected => Some(CloseCode::Normal.code()),
            Self::Broke(_) => Some(PROTOCOL_ERROR),
            Self::Flooded => Some(CloseCode::Policy.code()),
            Self::Stopping => None,
            Self::Closed(code) => Some(code.code()),
            Self::SessionEnded => match session? {
                Ended::ByClient => Some(CloseCode::Normal.code()),
                Ended::Unresponsive => Some(CloseCode::Unresponsive.code()),
                Ended::TooSlow => Some(CloseCode::TooSlow.code()),
                Ended::Broken(_) => Some(PROTOCOL_ERROR),
                Ended::WebSocketClosed => websocket,
                Ended::ByServer => None,
            },
        }
    }
}

/// Waits for the client's `CONNECT` to the main namespace: its auth
/// payload. Another namespace is refused; a packet that does not decode
/// ends the session (`None`).
async fn connected(socket: &mut EngineSocket) -> Option<Map<String, Value>> {
    loop {
        let Message::Text(text) = socket.next().await? else { continue };
        let packet = match Packet::decode(&text) {
            Ok(packet) => packet,
            Err(error) => {
                debug!(%error, "a malformed Socket.IO packet");
                socket.link().close();
                return None;
            }
        };
        match (packet.kind, packet.nsp.as_str()) {
            (Kind::Connect, MAIN) => {
                return Some(match packet.data {
                    Some(Value::Object(auth)) => auth,
                    _ => Map::new(),
                });
            }
            (Kind::Connect, nsp) => {
                let refused = Packet {
                    kind: Kind::ConnectError,
                    nsp: nsp.to_owned(),
                    id: None,
                    data: Some(serde_json::json!({ "message": "Invalid namespace" })),
                    attachments: 0,
                };
                push(socket.link(), refused.encode());
            }
            // Nothing else means anything before it.
            _ => {}
        }
    }
}

/// What a `CONNECT` asks for.
#[derive(Debug)]
struct Auth {
    nick: Option<String>,
    /// An access token, when authentication is on.
    token: Option<String>,
    /// The session to resume: `session`, or recovery's `pid`.
    session: Option<String>,
    /// Recovery's position: the room and `seq` last seen.
    offset: Option<(String, u64)>,
    room: String,
    rich: bool,
}

impl Auth {
    /// The auth payload, and the query of the session's first request
    /// (`?room=` there too).
    fn read(mut auth: Map<String, Value>, query: &str) -> Self {
        let mut text = |key: &str| match auth.remove(key) {
            Some(Value::String(value)) => Some(value),
            _ => None,
        };
        let nick = text("nick");
        let token = text("token");
        let session = text("session").or_else(|| text("pid"));
        let offset = text("offset").as_deref().and_then(wire::parse_offset);
        let room = text("room").or_else(|| {
            query.split('&').filter_map(|pair| pair.split_once('=')).find_map(|(key, value)| {
                (key == "room" && !value.is_empty()).then(|| value.to_owned())
            })
        });
        let rich = auth.get("rich") == Some(&Value::Bool(true));
        Self { nick, token, session, offset, room: room.unwrap_or(DEFAULT_ROOM.to_owned()), rich }
    }
}

/// A connected Socket.IO client.
struct Client {
    member: MemberId,
    hub: mpsc::Sender<Input>,
    link: Arc<Link>,
    acks: Acks,
    limiter: FrameLimiter,
    /// The room `chat message` goes to.
    room: String,
    metrics: Arc<Metrics>,
    departure: Departure,
    /// A binary event whose attachments are on their way, and those come.
    binary: Option<(Packet, Vec<Bytes>)>,
    /// The upload protocol's state (a file sent with `upload`).
    receiver: Receiver,
}

impl Client {
    /// The `hello` its `CONNECT` stands for, and the join of its room
    /// (from where recovery says it left off); in the hub's answers,
    /// `CONNECT` (or `CONNECT_ERROR`) and the room's messages.
    async fn begin(&self, auth: &Auth, config: &ServerConfig) -> Result<(), Stop> {
        let frame = |frame| Ok(ClientMessage { id: None, frame });
        let Auth { nick, session, token, .. } = auth;
        let (nick, session, token) = (nick.clone(), session.clone(), token.clone());
        self.send_frame(frame(ClientFrame::Hello { nick, session, token }), config).await?;
        let rooms = match &auth.offset {
            Some((room, seq)) if *room == auth.room => vec![(auth.room.clone(), Some(*seq))],
            Some((room, seq)) => vec![(auth.room.clone(), None), (room.clone(), Some(*seq))],
            None => vec![(auth.room.clone(), None)],
        };
        for (room, after) in rooms {
            self.send_frame(frame(ClientFrame::Join { room, after }), config).await?;
        }
        Ok(())
    }

    /// Takes one packet from the client.
    async fn take(&mut self, text: &str, config: &ServerConfig) -> Result<(), Stop> {
        self.metrics.frames_received.inc();
        self.metrics.bytes_received.inc_by(text.len() as u64);
        match self.limiter.admit(config, 1, false) {
            Admit::Yes => {}
            Admit::Refused(retry_after_ms) | Admit::Wait(retry_after_ms) => {
                self.metrics.rate_limited("frames");
                self.metrics.error(chat_protocol::ErrorCode::RateLimited);
                let frame = crate::wire::too_many_frames(retry_after_ms).encode();
                push(&self.link, format!("42[\"error\",{frame}]"));
                return Ok(());
            }
            Admit::Abusive => return Err(Stop::Flooded),
        }
        let packet = match Packet::decode(text) {
            Ok(packet) => packet,
            Err(error) => {
                // The protocol's answer to a packet that does not decode.
                debug!(member = %self.member, %error, "a malformed Socket.IO packet");
                return Err(Stop::Broke("a malformed packet"));
            }
        };
        match packet.kind {
            Kind::Event if packet.nsp == MAIN => {
                let decoded = wire::frame(&packet, &self.room);
                let decoded = match packet.id {
                    None => decoded,
                    Some(ack) => self.asked(ack, decoded),
                };
                self.send_frame(decoded, config).await
            }
            Kind::Disconnect if packet.nsp == MAIN => {
                self.departure = Departure::Quit;
                Err(Stop::Disconnected)
            }
            Kind::BinaryEvent if packet.nsp == MAIN && packet.attachments > 0 => {
                self.binary = Some((packet, Vec::new()));
                Ok(())
            }
            Kind::BinaryEvent | Kind::BinaryAck => {
                Err(Stop::Broke("a binary packet without attachments"))
            }
            // Acknowledgements of ours (we ask none), a second CONNECT, or
            // another namespace: nothing to do.
            _ => Ok(()),
        }
    }

    /// A binary message: the next attachment of the binary event under
    /// way; with the last, the event is taken.
    async fn attachment(&mut self, bytes: Bytes, config: &ServerConfig) -> Result<(), Stop> {
        self.metrics.frames_received.inc();
        self.metrics.bytes_received.inc_by(bytes.len() as u64);
        if matches!(self.limiter.admit(config, 1, true), Admit::Abusive) {
            return Err(Stop::Flooded);
        }
        let Some((packet, parts)) = self.binary.as_mut() else {
            return Err(Stop::Broke("an attachment with no binary event"));
        };
        parts.push(bytes);
        if parts.len() < packet.attachments {
            return Ok(());
        }
        let Some((packet, parts)) = self.binary.take() else { return Ok(()) };
        match (packet.event_name(), packet.args()) {
            (Some("upload"), [Value::Object(meta), file]) => {
                let file = placeholder(file).and_then(|num| parts.get(num));
                match file {
                    Some(file) => self.upload(packet.id, meta, file, config).await,
                    None => Err(Stop::Broke("an upload without its file")),
                }
            }
            _ => {
                let bad = DecodeError {
                    code: chat_protocol::ErrorCode::UnknownType,
                    message: "the only binary event is upload".to_owned(),
                    id: None,
                };
                let refused = match packet.id {
                    Some(ack) => self.asked(ack, Err(bad)),
                    None => Err(bad),
                };
                self.send_frame(refused, config).await
            }
        }
    }

    /// `upload` with `{room, name, mime, text, id}` and the file: stored
    /// and sent as a message with it, as our page's uploads are.
    async fn upload(
        &mut self,
        ack: Option<u64>,
        meta: &Map<String, Value>,
        file: &Bytes,
        config: &ServerConfig,
    ) -> Result<(), Stop> {
        let text = |key: &str| meta.get(key).and_then(Value::as_str).map(str::to_owned);
        let id = text("id");
        let id = match ack {
            Some(ack) => Some(self.ack_id(ack, id)),
            None => id,
        };
        let announcement = Announcement {
            room: text("room").unwrap_or_else(|| self.room.clone()),
            name: text("name").unwrap_or_default(),
            mime: text("mime").unwrap_or_else(|| "application/octet-stream".to_owned()),
            size: file.len() as u64,
            text: text("text").unwrap_or_default(),
        };
        let member = self.member;
        let (id, room, size, chunk_bytes) =
            match self.receiver.announce(config, id, announcement).await {
                Next::Ask { id, room, size, chunk_bytes } => (id, room, size, chunk_bytes),
                next => return self.upload_step(next).await,
            };
        let (reply, ready) = oneshot::channel();
        let ask = Input::Upload { member, id, room, size, chunk_bytes, reply };
        self.hub.send(ask).await.map_err(|_| Stop::Stopping)?;
        self.receiver.answered(ready.await.unwrap_or(false));
        if !self.receiver.is_receiving() {
            return Ok(());
        }
        let next = self.receiver.chunk(config.uploads.as_ref(), file).await;
        self.upload_step(next).await
    }

    /// Does what the upload protocol says.
    async fn upload_step(&mut self, next: Next) -> Result<(), Stop> {
        let member = self.member;
        let input = match next {
            Next::Nothing | Next::Ask { .. } => return Ok(()),
            Next::Refuse(id, (code, message)) => Input::Refuse { member, id, code, message },
            Next::Complete { id, command, file } => Input::Uploaded { member, id, command, file },
        };
        self.hub.send(input).await.map_err(|_| Stop::Stopping)
    }

    /// The request id of a request that asks for acknowledgement `ack`:
    /// the client's, or one of ours.
    fn ack_id(&self, ack: u64, id: Option<String>) -> String {
        let id = id.unwrap_or_else(|| format!("~{}.{ack}", self.link.sid()));
        self.acks.insert(id.clone(), ack);
        id
    }

    /// An event that asks for acknowledgement `ack`: its request id is the
    /// client's (`id`, which makes a retry idempotent) or one of ours, and
    /// the hub answers it in the acknowledgement.
    fn asked(
        &self,
        ack: u64,
        decoded: Result<ClientMessage, DecodeError>,
    ) -> Result<ClientMessage, DecodeError> {
        match decoded {
            Ok(mut message) => {
                message.id = Some(self.ack_id(ack, message.id.take()));
                Ok(message)
            }
            Err(mut error) => {
                error.id = Some(self.ack_id(ack, error.id.take()));
                Err(error)
            }
        }
    }

    /// Hands a decoded frame (or its error) to the hub.
    async fn send_frame(
        &self,
        decoded: Result<ClientMessage, DecodeError>,
        config: &ServerConfig,
    ) -> Result<(), Stop> {
        let member = self.member;
        let input = match decoded {
            Ok(ClientMessage { id, frame }) => {
                match crate::wire::command(frame, config.auth_secret.as_ref()) {
                    Ok(command) => {
                        let read_at = std::time::Instant::now();
                        Input::Command { member, id, command, read_at }
                    }
                    Err(error) => Input::Malformed { member, error: DecodeError { id, ..error } },
                }
            }
            Err(error) => Input::Malformed { member, error },
        };
        self.hub.send(input).await.map_err(|_| Stop::Stopping)
    }
}

/// Sends a packet of the connection's own (not the hub's).
fn push(link: &Link, packet: String) {
    if link.push_text(Utf8Bytes::from(packet), false) == Pushed::First {
        link.flush();
    }
}
