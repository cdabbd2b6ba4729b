//! One WebSocket connection: reads frames, decodes them and hands them to
//! the hub. The hub writes to the connection itself (see
//! `chat_transport::Outgoing`); this task only finishes writes the socket
//! could not take at once, and closes the connection when told to.

use std::sync::Arc;
use std::time::Duration;

use chat_core::{Departure, MemberId, Rate, SessionToken, Source, Timestamp, TokenBucket};
use chat_protocol::{
    ClientFrame, ClientMessage, CloseCode, DecodeError, decode_client, restart_reason,
};
use chat_transport::tungstenite::Message;
use chat_transport::tungstenite::protocol::CloseFrame;
use chat_transport::tungstenite::protocol::frame::coding::CloseCode as WsCloseCode;
use chat_transport::{Outgoing, Pass, Pushed, Socket, Transport, Upgraded, close_frame_for};
use futures_util::StreamExt;
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, info};

use crate::ServerConfig;
use crate::auth::Secret;
use crate::files::{self, Announcement, Next, Receiver};
use crate::hub::{Closing, Conn, Dialect, Input};
use crate::metrics::Metrics;
use crate::sink::Sink;
use crate::wire;

/// Serves one upgraded connection until it closes.
///
/// Most connections sit idle most of the time, so what this task holds while
/// it waits is kept small (measured in docs/performance.md): the socket lives
/// in one allocation, the wait itself is three small futures, and every
/// other await (sending to a full hub queue, finishing a stalled write,
/// closing) is boxed only when it happens.
pub(crate) async fn serve(
    upgraded: Box<Upgraded>,
    hub: mpsc::Sender<Input>,
    config: &ServerConfig,
    metrics: Arc<Metrics>,
) {
    let Some(mut conn) = Connection::open(upgraded, hub, config, metrics).await else {
        return;
    };
    let reason = loop {
        let step = tokio::select! {
            biased;
            closing = &mut conn.closing => Step::Close(closing.unwrap_or(CloseCode::GoingAway.into())),
            () = conn.outgoing.stalled() => Step::Stalled,
            message = conn.socket.next() => Step::Read(message),
        };
        let outcome = match step {
            Step::Close(closing) => Some(Box::pin(conn.close(closing)).await),
            Step::Stalled => Box::pin(conn.unstall(config.write_timeout)).await.err(),
            Step::Read(message) => conn.read(message, config).await.err(),
        };
        if let Some(reason) = outcome {
            break reason;
        }
    };
    conn.outgoing.close();
    let (member, departure) = (conn.member, conn.departure);
    let _ = Box::pin(conn.hub.send(Input::Disconnect { member, departure })).await;
    let code = reason.code();
    conn.metrics.transport(conn.transport).0.dec();
    conn.metrics.closed(code);
    if conn.metrics.connection_lines.allow() {
        let code = code.map_or_else(|| "none".to_owned(), |code| code.to_string());
        info!(%member, %reason, code, "disconnected");
    }
}

/// Why a connection ended, for the log.
#[derive(Debug)]
pub(crate) enum Ended {
    /// The client closed it with a close frame with this code.
    ClosedByClient(u16),
    /// The stream ended without a close frame.
    EndOfStream,
    /// Reading failed (boxed: rare, and large).
    ReadFailed(Box<chat_transport::tungstenite::Error>),
    /// A write the socket could not take at once failed.
    WriteFailed(std::io::ErrorKind),
    /// A write waited past the write timeout.
    WriteTimedOut,
    /// The server closed it, with this code.
    ClosedByServer(CloseCode),
    /// The hub is gone: the server is stopping.
    ServerStopping,
}

impl Ended {
    /// The close code that ended the connection, either side's: `None`
    /// when it was cut without one.
    fn code(&self) -> Option<u16> {
        match self {
            Self::ClosedByClient(code) => Some(*code),
            Self::ClosedByServer(code) => Some(code.code()),
            Self::ReadFailed(err) => close_frame_for(err).map(|frame| u16::from(frame.code)),
            Self::EndOfStream
            | Self::WriteFailed(_)
            | Self::WriteTimedOut
            | Self::ServerStopping => None,
        }
    }
}

impl std::fmt::Display for Ended {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::ClosedByClient(_) => f.write_str("closed by peer"),
            Self::EndOfStream => f.write_str("connection ended"),
            Self::ReadFailed(err) => write!(f, "read failed: {err}"),
            Self::WriteFailed(kind) => write!(f, "write failed: {kind}"),
            Self::WriteTimedOut => f.write_str("write timed out"),
            Self::ClosedByServer(code) => write!(f, "closed by server ({})", code.code()),
            Self::ServerStopping => f.write_str("server stopping"),
        }
    }
}

/// What woke the connection task.
enum Step {
    Close(Closing),
    Stalled,
    Read(Option<Result<Message, chat_transport::tungstenite::Error>>),
}

/// An upgraded connection the hub knows.
struct Connection {
    socket: Box<Socket>,
    outgoing: Arc<Outgoing>,
    hub: mpsc::Sender<Input>,
    closing: oneshot::Receiver<Closing>,
    member: MemberId,
    departure: Departure,
    /// The connection's place under the connection limits, freed with it.
    _pass: Pass,
    limiter: FrameLimiter,
    /// The upload protocol's state.
    receiver: Receiver,
    transport: Transport,
    metrics: Arc<Metrics>,
}

/// Frames of any kind a connection may send, and how many refusals it may
/// pile up before it counts as abusive.
pub(crate) struct FrameLimiter {
    opened: tokio::time::Instant,
    frames: TokenBucket,
    refusals: TokenBucket,
}

/// The limiter's rates: the frames allowed, and the refusals tolerated.
fn frame_rates(config: &ServerConfig) -> (Rate, Rate) {
    (
        Rate::per_sec(config.frames_per_sec, config.frames_burst),
        Rate::per_sec(1, config.frames_refused_max),
    )
}

/// Where a peer comes from, for the limits per address: an IPv4 address
/// (an IPv4-mapped IPv6 one counts as IPv4), or an IPv6 address's /64
/// network, since one host commonly holds a whole /64. IPv4 addresses are
/// numbered inside `::/8`, which no IPv6 network is given from, so the
/// two never meet.
pub(crate) fn source_of(ip: std::net::IpAddr) -> Source {
    let v4 = |v4: std::net::Ipv4Addr| Source::new((1 << 32) | u64::from(u32::from(v4)));
    match ip {
        std::net::IpAddr::V4(addr) => v4(addr),
        std::net::IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(addr) => v4(addr),
            None => Source::new(u64::try_from(u128::from(v6) >> 64).unwrap_or(u64::MAX)),
        },
    }
}

/// What the limiter says of one more message.
pub(crate) enum Admit {
    Yes,
    /// Dropped; retry after this many milliseconds.
    Refused(u64),
    /// A part of the upload in progress, over the rate: read it after this
    /// many milliseconds (the client meanwhile waits on TCP).
    Wait(u64),
    /// Refused once too often: close the connection.
    Abusive,
}

impl FrameLimiter {
    pub(crate) fn new(config: &ServerConfig) -> Self {
        let (rate, refusal_rate) = frame_rates(config);
        let start = Timestamp::from_unix_millis(0);
        Self {
            opened: tokio::time::Instant::now(),
            frames: TokenBucket::full(rate, start),
            refusals: TokenBucket::full(refusal_rate, start),
        }
    }

    /// Whether a message of `frames` frames (every part and control frame
    /// counts) may be taken now. An upload's parts are paced (`pace`)
    /// rather than refused: refusing one would leave the file with a hole.
    pub(crate) fn admit(&mut self, config: &ServerConfig, frames: u64, pace: bool) -> Admit {
        let (rate, refusal_rate) = frame_rates(config);
        let elapsed = u64::try_from(self.opened.elapsed().as_millis()).unwrap_or(u64::MAX);
        let now = Timestamp::from_unix_millis(elapsed);
        match self.frames.take_n(rate, now, frames) {
            Ok(()) => Admit::Yes,
            Err(wait) if pace && wait != u64::MAX => Admit::Wait(wait),
            Err(_) if self.refusals.take(refusal_rate, now).is_err() => Admit::Abusive,
            Err(retry_after_ms) => Admit::Refused(retry_after_ms),
        }
    }
}

impl Connection {
    /// Introduces the connection to the hub; `None` if the server is
    /// stopping.
    async fn open(
        upgraded: Box<Upgraded>,
        hub: mpsc::Sender<Input>,
        config: &ServerConfig,
        metrics: Arc<Metrics>,
    ) -> Option<Self> {
        let Upgraded { socket, outgoing, peer, pass, .. } = *upgraded;
        let socket = Box::new(socket);
        let (close, closing) = oneshot::channel();
        let token = SessionToken::parse(&format!("{:032x}", rand::random::<u128>())).ok()?;
        let (reply, member) = oneshot::channel();
        let sink = Sink::Socket(Arc::clone(&outgoing));
        let conn = Conn { sink, dialect: Dialect::Native, close, token, checks_without_hello: 0 };
        let source = source_of(peer.ip());
        Box::pin(hub.send(Input::Connect { conn, source, reply })).await.ok()?;
        let member = member.await.ok()?;
        tracing::Span::current().record("member", tracing::field::display(member));
        let transport = socket.transport();
        let (open, opened) = metrics.transport(transport);
        open.inc();
        opened.inc();
        if metrics.connection_lines.allow() {
            info!(%member, %peer, transport = transport.name(), "connected");
        }
        Some(Self {
            socket,
            outgoing,
            hub,
            closing,
            member,
            departure: Departure::Lost,
            _pass: pass,
            limiter: FrameLimiter::new(config),
            receiver: Receiver::default(),
            transport,
            metrics,
        })
    }

    /// Hands a received message to the hub; `Err` with the reason when the
    /// connection is over.
    async fn read(
        &mut self,
        message: Option<Result<Message, chat_transport::tungstenite::Error>>,
        config: &ServerConfig,
    ) -> Result<(), Ended> {
        match message {
            Some(Ok(Message::Close(frame))) => {
                // tungstenite queued its reply to the close: send it.
                let flush = tokio::time::timeout(Duration::from_secs(1), self.socket.flush());
                let _ = Box::pin(flush).await;
                // 1000 is a goodbye; anything else (a page reload sends
                // 1001) may come back and resume.
                if frame.as_ref().is_some_and(|f| f.code == WsCloseCode::Normal) {
                    self.departure = Departure::Quit;
                }
                // A close frame without a code reports 1005 (RFC 6455).
                Err(Ended::ClosedByClient(frame.map_or(1005, |f| u16::from(f.code))))
            }
            Some(Ok(message)) => match self.take(message, config) {
                Taken::Done(result) => result,
                Taken::Wait(wait) => wait.await,
            },
            Some(Err(err)) => {
                if let Some(frame) = close_frame_for(&err) {
                    let close = tokio::time::timeout(
                        Duration::from_secs(1),
                        (*self.socket).close(Some(frame)),
                    );
                    let _ = Box::pin(close).await;
                }
                Err(Ended::ReadFailed(Box::new(err)))
            }
            None => Err(Ended::EndOfStream),
        }
    }

    /// Takes a received message: decoded once, then routed. Anything that
    /// has to wait (a hub that is behind, a file, a channel, a close) comes
    /// back as a boxed future, so what an idle connection's task holds does
    /// not grow with the rare paths (docs/performance.md).
    fn take<'a>(&'a mut self, message: Message, config: &'a ServerConfig) -> Taken<'a> {
        // Every frame the message took counts, empty continuations and
        // pings included.
        let frames = u64::from(self.socket.take_frames().max(1));
        let chunk = matches!(message, Message::Binary(_)) && self.receiver.is_receiving();
        match self.limiter.admit(config, frames, chunk) {
            Admit::Yes => {}
            Admit::Refused(retry_after_ms) => {
                self.refuse(retry_after_ms);
                return Taken::Done(Ok(()));
            }
            Admit::Wait(wait) => {
                return Taken::Wait(Box::pin(self.paced(message, frames, wait, config)));
            }
            Admit::Abusive => {
                return Taken::Wait(Box::pin(async move {
                    Err(self.close(CloseCode::Policy.into()).await)
                }));
            }
        }
        self.received(&message);
        match route(self.member, message, config.auth_secret.as_ref()) {
            Routed::Nothing => Taken::Done(Ok(())),
            Routed::Upload(bytes) => Taken::Wait(Box::pin(self.upload_chunk(bytes, config))),
            Routed::Side(side) => {
                let (id, frame) = *side;
                Taken::Wait(Box::pin(self.side_frame(id, frame, config)))
            }
            Routed::Hub(input) => match self.hub.try_send(input) {
                Ok(()) => Taken::Done(Ok(())),
                Err(mpsc::error::TrySendError::Full(input)) => {
                    let hub = &self.hub;
                    Taken::Wait(Box::pin(async move {
                        hub.send(input).await.map_err(|_| Ended::ServerStopping)
                    }))
                }
                Err(mpsc::error::TrySendError::Closed(_)) => {
                    Taken::Done(Err(Ended::ServerStopping))
                }
            },
        }
    }

    /// A part of an upload that came faster than the frame rate: taken
    /// once the rate allows, so the upload slows down instead of failing.
    async fn paced(
        &mut self,
        message: Message,
        frames: u64,
        mut wait: u64,
        config: &ServerConfig,
    ) -> Result<(), Ended> {
        loop {
            tokio::time::sleep(Duration::from_millis(wait.min(1000))).await;
            match self.limiter.admit(config, frames, true) {
                Admit::Yes => break,
                Admit::Wait(more) => wait = more,
                Admit::Refused(_) | Admit::Abusive => {
                    return Err(self.close(CloseCode::Policy.into()).await);
                }
            }
        }
        self.received(&message);
        match message {
            Message::Binary(bytes) => self.upload_chunk(bytes, config).await,
            _ => Ok(()),
        }
    }

    /// Counts a message taken.
    fn received(&self, message: &Message) {
        self.metrics.frames_received.inc();
        self.metrics.bytes_received.inc_by(message.len() as u64);
    }

    /// Hands the hub an input; waits only when the hub is behind, and then
    /// in a box.
    async fn to_hub(&self, input: Input) -> Result<(), Ended> {
        let sent = match self.hub.try_send(input) {
            Ok(()) => Ok(()),
            Err(mpsc::error::TrySendError::Full(input)) => {
                Box::pin(self.hub.send(input)).await.map_err(|_| ())
            }
            Err(mpsc::error::TrySendError::Closed(_)) => Err(()),
        };
        sent.map_err(|()| Ended::ServerStopping)
    }

    async fn refuse_frame(
        &self,
        id: Option<String>,
        (code, message): files::Refusal,
    ) -> Result<(), Ended> {
        self.to_hub(Input::Refuse { member: self.member, id, code, message }).await
    }

    /// `upload`, `upload_cancel` and `subscribe`: frames this task handles
    /// before the hub sees them.
    async fn side_frame(
        &mut self,
        id: Option<String>,
        frame: ClientFrame,
        config: &ServerConfig,
    ) -> Result<(), Ended> {
        match frame {
            ClientFrame::Subscribe { channel, token } => {
                self.to_hub(Input::Subscribe { member: self.member, id, channel, token }).await
            }
            ClientFrame::UploadCancel {} => {
                self.receiver.cancel();
                Ok(())
            }
            ClientFrame::Upload { room, name, mime, size, text } => {
                let frame = Announcement { room, name, mime, size, text };
                let next = self.receiver.announce(config, id, frame).await;
                self.upload_step(next).await
            }
            _ => Ok(()),
        }
    }

    /// A binary frame: the next part of the upload in progress.
    async fn upload_chunk(
        &mut self,
        bytes: chat_transport::tungstenite::Bytes,
        config: &ServerConfig,
    ) -> Result<(), Ended> {
        let next = self.receiver.chunk(config.uploads.as_ref(), &bytes).await;
        self.upload_step(next).await
    }

    /// Does what the upload protocol says.
    async fn upload_step(&mut self, next: Next) -> Result<(), Ended> {
        match next {
            Next::Nothing => Ok(()),
            Next::Refuse(id, why) => self.refuse_frame(id, why).await,
            Next::Ask { id, room, size, chunk_bytes } => {
                let (reply, ready) = oneshot::channel();
                let ask = Input::Upload { member: self.member, id, room, size, chunk_bytes, reply };
                self.to_hub(ask).await?;
                self.receiver.answered(ready.await.unwrap_or(false));
                Ok(())
            }
            Next::Complete { id, command, file } => {
                self.to_hub(Input::Uploaded { member: self.member, id, command, file }).await
            }
        }
    }

    /// Answers a frame dropped for going over the frame rate.
    fn refuse(&self, retry_after_ms: u64) {
        let frame = wire::too_many_frames(retry_after_ms);
        self.metrics.rate_limited("frames");
        self.metrics.error(chat_protocol::ErrorCode::RateLimited);
        // A full queue means the hub is closing this client anyway.
        if self.outgoing.push_text(frame.encode().into(), false) == Pushed::First {
            self.outgoing.flush();
        }
    }

    /// The socket is full: waits for it here. A peer that stopped reading
    /// makes the hub find the queue full and say to close, which must not
    /// wait for the write.
    async fn unstall(&mut self, write_timeout: Duration) -> Result<(), Ended> {
        let write = tokio::time::timeout(write_timeout, self.outgoing.unstall());
        tokio::select! {
            written = write => match written {
                Ok(Ok(())) => Ok(()),
                Ok(Err(err)) => Err(Ended::WriteFailed(err.kind())),
                Err(_) => Err(Ended::WriteTimedOut),
            },
            closing = &mut self.closing => {
                let code = closing.map_or(CloseCode::GoingAway, |closing| closing.code);
                Err(Ended::ClosedByServer(code))
            }
        }
    }

    /// Closes as the hub said; returns the reason to log.
    async fn close(&mut self, Closing { code, retry_after }: Closing) -> Ended {
        // Frames queued before a shutdown still go out first; a slow
        // client's backlog is what got it closed, so it is dropped. Either
        // way a peer that stopped reading must not hold the task.
        if code == CloseCode::TooSlow {
            self.outgoing.discard_queued();
        }
        let reason = match retry_after {
            Some(delay) => {
                restart_reason(u64::try_from(delay.as_millis()).unwrap_or(u64::MAX)).into()
            }
            None => code.reason().into(),
        };
        let frame = CloseFrame { code: code.code().into(), reason };
        let _ =
            tokio::time::timeout(Duration::from_secs(1), (*self.socket).close(Some(frame))).await;
        Ended::ClosedByServer(code)
    }
}

/// What taking a message came to: done, or a wait in a box.
enum Taken<'a> {
    Done(Result<(), Ended>),
    Wait(std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), Ended>> + Send + 'a>>),
}

/// Where a received message goes.
enum Routed {
    Nothing,
    /// A part of the upload in progress.
    Upload(chat_transport::tungstenite::Bytes),
    /// A frame the connection handles itself (boxed: rare, and large).
    Side(Box<(Option<String>, ClientFrame)>),
    Hub(Input),
}

/// Decodes a received message and says where it goes.
fn route(member: MemberId, message: Message, secret: Option<&Secret>) -> Routed {
    match message {
        Message::Text(text) => Routed::Hub(match decode_client(&text) {
            Ok(ClientMessage { id, frame }) if is_upload_or_channel(&frame) => {
                return Routed::Side(Box::new((id, frame)));
            }
            Ok(decoded) => {
                debug!(%member, kind = decoded.frame.kind(), "frame");
                match wire::command(decoded.frame, secret) {
                    Ok(command) => {
                        let read_at = std::time::Instant::now();
                        Input::Command { member, id: decoded.id, command, read_at }
                    }
                    Err(error) => {
                        Input::Malformed { member, error: DecodeError { id: decoded.id, ..error } }
                    }
                }
            }
            Err(error) => Input::Malformed { member, error },
        }),
        Message::Binary(bytes) => Routed::Upload(bytes),
        // tungstenite answers pings itself; pongs and raw frames need nothing.
        Message::Ping(_) | Message::Pong(_) | Message::Frame(_) | Message::Close(_) => {
            Routed::Nothing
        }
    }
}

/// Frames the connection task handles itself.
fn is_upload_or_channel(frame: &ClientFrame) -> bool {
    matches!(
        frame,
        ClientFrame::Upload { .. } | ClientFrame::UploadCancel {} | ClientFrame::Subscribe { .. }
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_are_ipv4_addresses_and_ipv6_networks() {
        let source = |ip: &str| source_of(ip.parse().unwrap());
        assert_eq!(source("192.0.2.7"), source("::ffff:192.0.2.7"), "mapped IPv4 is IPv4");
        assert_ne!(source("192.0.2.7"), source("192.0.2.8"));
        assert_eq!(source("2001:db8:1:2::1"), source("2001:db8:1:2:ffff::9"), "one /64");
        assert_ne!(source("2001:db8:1:2::1"), source("2001:db8:1:3::1"));
        assert_ne!(source("0.0.0.1"), source("::1"), "IPv4 never meets an IPv6 network");
    }

    /// What a connection task holds while it waits is most of an idle
    /// connection's memory (docs/performance.md): this keeps it from
    /// growing unnoticed.
    #[tokio::test]
    async fn the_connection_future_stays_small() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("ws://{}/ws", listener.local_addr().unwrap());
        let client = tokio::spawn(async move {
            chat_transport::connect(&url, None, &chat_transport::TransportConfig::default()).await
        });
        let (stream, _) = listener.accept().await.unwrap();
        let site = chat_transport::Site::new("/ws", None);
        let gate = chat_transport::Gate::new(10, 10);
        let accepted = chat_transport::accept(
            stream,
            &site,
            &chat_transport::TransportConfig::default(),
            &gate,
        )
        .await
        .unwrap();
        let chat_transport::Accepted::Upgraded(upgraded) = accepted else {
            panic!("not upgraded");
        };
        let (hub, _inputs) = mpsc::channel(1);
        let config = ServerConfig::default();
        let future = serve(upgraded, hub, &config, Arc::new(Metrics::new(false)));
        let size = std::mem::size_of_val(&future);
        eprintln!("the connection future: {size} bytes");
        assert!(size <= 512, "the connection future grew to {size} bytes");
        drop(future);
        drop(client.await);
    }
}
