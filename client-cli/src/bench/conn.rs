//! One bench connection: opened and greeted with raw WebSocket frames (no
//! per-connection task or buffer beyond what it needs), or over the HTTP
//! fallback (`events.rs`); a sender on a schedule, a reader that records
//! latency and answers pings.

use std::net::IpAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, bail};
use chat_transport::tungstenite::http::Uri;
use hdrhistogram::Histogram;
use tokio::io::AsyncWriteExt;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::{mpsc, watch};

use super::events::{self, EventBuffer, Poster, STREAM};
use super::frames::{self, SayTemplate};
use super::{Counters, MAX_LATENCY_US, Schedule};
use crate::rawws::{self, CLOSE, FrameBuffer, PING, PONG, TEXT};

/// Where to connect, and how.
pub(super) struct Target {
    host: String,
    port: u16,
    path: String,
    /// Over the HTTP fallback rather than a WebSocket.
    http: bool,
}

/// Where a Socket.IO client opens its WebSocket.
const SOCKET_IO_PATH: &str = "/socket.io/?EIO=4&transport=websocket";

impl Target {
    /// The server at `url`, over the HTTP fallback if `http`, or as a
    /// Socket.IO client if `socketio`.
    pub(super) fn parse(url: &str, http: bool, socketio: bool) -> anyhow::Result<Self> {
        if http && socketio {
            bail!("a Socket.IO bench runs over WebSocket only");
        }
        let uri: Uri = url.parse().with_context(|| format!("invalid server URL {url:?}"))?;
        if uri.scheme_str() != Some("ws") {
            bail!("the server URL must be ws://");
        }
        let host = uri.host().context("the server URL has no host")?;
        let host = host.trim_start_matches('[').trim_end_matches(']').to_owned();
        let path = match socketio {
            true => SOCKET_IO_PATH.to_owned(),
            false => uri.path_and_query().map_or("/".to_owned(), |p| p.as_str().to_owned()),
        };
        Ok(Self { host, port: uri.port_u16().unwrap_or(80), path, http })
    }
}

/// One open connection, split for a reader and a writer.
pub(super) struct Conn {
    pub read: OwnedReadHalf,
    pub sink: Sink,
    pub buffer: Frames,
    /// Over the fallback, the stream's own write half, held so it stays open.
    pub _stream: Option<OwnedWriteHalf>,
}

/// What a connection reads: WebSocket frames, or events.
pub(super) enum Frames {
    WebSocket(FrameBuffer),
    Events(EventBuffer),
}

impl Frames {
    pub(super) fn next_frame(&mut self) -> anyhow::Result<Option<(u8, &[u8])>> {
        match self {
            Self::WebSocket(frames) => frames.next_frame(),
            Self::Events(events) => events.next_frame(),
        }
    }

    pub(super) async fn fill(&mut self, read: &mut OwnedReadHalf) -> std::io::Result<usize> {
        match self {
            Self::WebSocket(frames) => frames.fill(read).await,
            Self::Events(events) => events.fill(read).await,
        }
    }
}

/// Where a connection writes: its WebSocket, or posts.
pub(super) enum Link {
    WebSocket(tokio::sync::Mutex<OwnedWriteHalf>),
    Http(Poster),
}

/// Shared by a connection's reader (which answers pings) and its sender.
pub(super) type Sink = Arc<Link>;

impl Link {
    /// Sends text messages, in one write (or one post).
    pub(super) async fn texts(&self, texts: &[&[u8]]) -> anyhow::Result<()> {
        match self {
            Self::WebSocket(write) => {
                let mut out = Vec::new();
                for text in texts {
                    rawws::client_frame(TEXT, text, &mut out);
                }
                Ok(write.lock().await.write_all(&out).await?)
            }
            Self::Http(poster) => poster.post(&texts.join(&b'\n'), None).await,
        }
    }

    /// Answers a ping.
    async fn pong(&self) -> anyhow::Result<()> {
        match self {
            Self::WebSocket(write) => {
                let mut pong = Vec::new();
                rawws::client_frame(PONG, &[], &mut pong);
                Ok(write.lock().await.write_all(&pong).await?)
            }
            Self::Http(poster) => poster.post(b"", None).await,
        }
    }

    /// Says goodbye with 1000.
    pub(super) async fn bye(&self) -> anyhow::Result<()> {
        match self {
            Self::WebSocket(write) => {
                let mut bye = Vec::new();
                rawws::client_frame(CLOSE, &1000u16.to_be_bytes(), &mut bye);
                Ok(write.lock().await.write_all(&bye).await?)
            }
            Self::Http(poster) => poster.post(b"", Some(1000)).await,
        }
    }
}

/// What a connection says once open, and the frame it waits for then.
pub(super) struct Greeting {
    pub frames: Vec<String>,
    pub until: &'static str,
}

/// Opens one connection and sends its greeting (none: just the upgrade).
pub(super) async fn open(
    target: &Target,
    source: Option<IpAddr>,
    greeting: Option<Greeting>,
) -> anyhow::Result<Conn> {
    let mut stream = match source {
        None => TcpStream::connect((target.host.as_str(), target.port)).await?,
        Some(local) => {
            let remote = tokio::net::lookup_host((target.host.as_str(), target.port))
                .await?
                .find(|remote| remote.is_ipv4() == local.is_ipv4())
                .context("no server address of the source's family")?;
            let socket = if local.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
            socket.bind(std::net::SocketAddr::new(local, 0))?;
            socket.connect(remote).await?
        }
    };
    stream.set_nodelay(true)?;
    let host = format!("{}:{}", target.host, target.port);
    let conn = match target.http {
        false => {
            let rest =
                rawws::handshake(&mut stream, &host, &target.path, chat_protocol::SUBPROTOCOL)
                    .await?;
            let (read, write) = stream.into_split();
            // A small buffer, grown only for large frames: many connections live here.
            let buffer = Frames::WebSocket(FrameBuffer::new(4096, &rest));
            Conn { read, sink: Arc::new(Link::WebSocket(write.into())), buffer, _stream: None }
        }
        true => {
            let rest = events::open(&mut stream, &host, &target.path).await?;
            let (mut read, write) = stream.into_split();
            let mut buffer = EventBuffer::new(4096, &rest);
            let name = loop {
                if let Some((STREAM, name)) = buffer.next_frame()? {
                    break String::from_utf8_lossy(name).into_owned();
                }
                if buffer.fill(&mut read).await? == 0 {
                    bail!("the event stream ended before it opened");
                }
            };
            let poster = Poster {
                host: target.host.clone(),
                port: target.port,
                path: target.path.clone(),
                source,
                name,
                seq: tokio::sync::Mutex::new(0),
            };
            let buffer = Frames::Events(buffer);
            Conn { read, sink: Arc::new(Link::Http(poster)), buffer, _stream: Some(write) }
        }
    };
    match greeting {
        None => Ok(conn),
        Some(Greeting { frames, until }) => say(conn, &frames, until).await,
    }
}

/// Sends `frames` and reads until a frame of type `until`; what follows it
/// stays in the buffer. An `error` or the end of the connection first is a
/// failure.
pub(super) async fn say(mut conn: Conn, frames: &[String], until: &str) -> anyhow::Result<Conn> {
    let texts: Vec<&[u8]> = frames.iter().map(|frame| frame.as_bytes()).collect();
    conn.sink.texts(&texts).await?;
    loop {
        while let Some((opcode, payload)) = conn.buffer.next_frame()? {
            match opcode {
                TEXT => match frames::peek(frames::unwrap(payload)) {
                    Some(frame) if frame.kind == until => return Ok(conn),
                    Some(frame) if frame.kind == "error" => {
                        bail!("refused: {}", String::from_utf8_lossy(payload));
                    }
                    _ => {}
                },
                CLOSE => bail!("closed before {until}"),
                _ => {}
            }
        }
        if conn.buffer.fill(&mut conn.read).await? == 0 {
            bail!("closed before {until}");
        }
    }
}

pub(super) struct SendPlan {
    /// Sent as a Socket.IO client sends it.
    pub socketio: bool,
    pub rate: f64,
    pub size: usize,
    pub until_us: u64,
    pub room: String,
}

/// Sends on schedule until the measured window ends; returns the messages
/// sent inside it and the deliveries they owe.
///
/// A sender the server cut off (closed as too slow, under overload) stops
/// and counts as an error; the run goes on.
pub(super) async fn send_loop(
    sink: Sink,
    schedule: Schedule,
    plan: SendPlan,
    room_size: u64,
    counters: Arc<Counters>,
) -> anyhow::Result<(u64, u64, Sink)> {
    let mut ticks = pace(schedule.origin.into_std(), plan.rate, plan.until_us);
    let mut sent = 0u64;
    let mut say = SayTemplate::new(&plan.room, plan.size, plan.socketio);
    while let Some(intended_us) = ticks.recv().await {
        if sink.texts(&[say.stamped(intended_us)]).await.is_err() {
            counters.errors.fetch_add(1, Ordering::AcqRel);
            break;
        }
        if schedule.is_measured(intended_us) {
            sent += 1;
        }
    }
    Ok((sent, sent * room_size, sink))
}

/// The intended send times (µs after `origin`) of one sender at `rate`
/// messages per second until `until_us`, each delivered at its time by a
/// thread that sleeps with the OS's precision (tens of µs): the runtime's
/// timer rounds up to the next millisecond, which would add up to a
/// millisecond of the bench's own lateness to every latency measured.
/// A sender that falls behind gets its ticks late, and the latency measured
/// from the intended time shows it.
pub(super) fn pace(
    origin: std::time::Instant,
    rate: f64,
    until_us: u64,
) -> mpsc::UnboundedReceiver<u64> {
    let (ticks, receiver) = mpsc::unbounded_channel();
    let interval_us = 1e6 / rate;
    // Senders start at different offsets so they do not all fire together.
    let offset_us = rand::random::<f64>() * interval_us;
    std::thread::spawn(move || {
        for k in 0u64.. {
            let intended_us = (offset_us + k as f64 * interval_us) as u64;
            if intended_us >= until_us {
                break;
            }
            let due = origin + Duration::from_micros(intended_us);
            if let Some(wait) = due.checked_duration_since(std::time::Instant::now()) {
                std::thread::sleep(wait);
            }
            if ticks.send(intended_us).is_err() {
                break;
            }
        }
    });
    receiver
}

/// What a reader needs of its connection: the socket's read half, the write
/// half to answer pings on, and the frames read so far; and for a sender,
/// the deliveries each of its messages owes (refused ones owe none).
pub(super) struct Reading {
    pub read: OwnedReadHalf,
    pub sink: Sink,
    pub buffer: Frames,
    pub owes: u64,
}

/// Reads until told to stop, recording the latency of measured messages.
pub(super) async fn read_loop(
    Reading { mut read, sink, mut buffer, owes }: Reading,
    schedule: Schedule,
    counters: Arc<Counters>,
    histograms: Arc<Vec<Mutex<Histogram<u64>>>>,
    shard: usize,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let received_us = schedule.origin.elapsed().as_micros() as u64;
        let mut pinged = false;
        let mut engine_pinged = false;
        loop {
            let (opcode, payload) = match buffer.next_frame() {
                Ok(Some(frame)) => frame,
                Ok(None) => break,
                Err(_) => return,
            };
            // (A Socket.IO event carries the frame; its ping is `2`.)
            if opcode == TEXT && payload == b"2" {
                engine_pinged = true;
                continue;
            }
            let payload = frames::unwrap(payload);
            let frame = if opcode == TEXT { frames::peek(payload) } else { None };
            match (opcode, frame.as_ref().and_then(frames::intended_time)) {
                (TEXT, Some(intended_us)) if schedule.is_measured(intended_us) => {
                    counters.received.fetch_add(1, Ordering::AcqRel);
                    let latency = received_us.saturating_sub(intended_us).clamp(1, MAX_LATENCY_US);
                    if let Ok(mut histogram) = histograms[shard].lock() {
                        let _ = histogram.record(latency);
                    }
                }
                (TEXT, None) if frame.as_ref().is_some_and(|frame| frame.kind == "error") => {
                    // A message refused for now (an overloaded server) is
                    // not an error: it is not owed, and shows as refused.
                    match frames::refused_for_now(payload) {
                        Some(intended_us) if schedule.is_measured(intended_us) => {
                            counters.refused.fetch_add(1, Ordering::AcqRel);
                            counters.refused_owed.fetch_add(owes, Ordering::AcqRel);
                        }
                        Some(_) => {}
                        None => _ = counters.errors.fetch_add(1, Ordering::AcqRel),
                    }
                }
                (TEXT, None) if frame.as_ref().is_some_and(|frame| frames::is_presence(frame)) => {
                    counters.presence.fetch_add(1, Ordering::AcqRel);
                }
                (CLOSE, _) => {
                    counters.closed.fetch_add(1, Ordering::AcqRel);
                    return;
                }
                (PING, _) => pinged = true,
                _ => {}
            }
        }
        // The server pings connections that are quiet; unanswered, it
        // would close them as dead. (Its pings carry no payload.)
        if pinged && sink.pong().await.is_err() {
            return;
        }
        if engine_pinged && sink.texts(&[b"3"]).await.is_err() {
            return;
        }
        tokio::select! {
            filled = buffer.fill(&mut read) => {
                if !matches!(filled, Ok(n) if n > 0) {
                    return;
                }
            }
            _ = stop.changed() => return,
        }
    }
}

/// Reads a connection to its end and returns the close code the server
/// sent, or `None` if it ended without a close frame.
pub(super) async fn close_code(conn: Conn) -> Option<u16> {
    let Conn { mut read, buffer: mut frames, .. } = conn;
    loop {
        while let Ok(Some((opcode, payload))) = frames.next_frame() {
            if opcode == CLOSE {
                return (payload.len() >= 2).then(|| u16::from_be_bytes([payload[0], payload[1]]));
            }
        }
        match frames.fill(&mut read).await {
            Ok(n) if n > 0 => {}
            _ => return None,
        }
    }
}
