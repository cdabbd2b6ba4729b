//! The write side of an upgraded connection, shared between the task that
//! reads the connection and whoever fans messages out to it.
//!
//! Fan-out pushes pre-encoded text frames without waiting; whoever pushes
//! then calls [`Outgoing::flush`], which writes everything queued with
//! `writev` straight from the shared bytes, without a task switch and without
//! copying into a per-connection buffer. A pusher that queues many frames
//! before flushing gets many frames per system call, which is what makes
//! fan-out cheap under load. Only when the socket cannot take more does the
//! connection's own task step in ([`Outgoing::stalled`],
//! [`Outgoing::unstall`]) and wait for it.
//!
//! What is queued, skipped or refused is the queue's policy (`queue.rs`);
//! over TLS the bytes pass through the session both ways (`tls.rs`);
//! tungstenite reads and writes through a [`SharedStream`] (`stream.rs`)
//! whose writes join the same queue, so every byte reaches the socket in
//! the order it was produced. A peer that stopped reading fills the queue,
//! and the caller decides what it deserves (the chat server closes it).

mod queue;
mod stream;
mod tls;

use std::io::{self, IoSlice};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::net::TcpStream;
use tokio::sync::Notify;
use tungstenite::Utf8Bytes;

pub(crate) use self::queue::Framing;
use self::queue::{MAX_SLICES, Queue, event};
pub use self::stream::SharedStream;
use self::tls::Tls;

/// The shared write side of one connection.
#[derive(Debug)]
pub struct Outgoing {
    io: TcpStream,
    /// Something was read from the peer since the last liveness check.
    heard: AtomicBool,
    state: Mutex<State>,
    /// Tells the connection task that a flush could not finish.
    stalled: Notify,
}

#[derive(Debug)]
struct State {
    queue: Queue,
    /// A flush found the socket full; the connection task must finish it.
    stalled: bool,
    /// Liveness checks in a row that found the peer silent.
    silent: u32,
    /// Over TLS, the session: frames are written into it as plaintext and
    /// what it encrypts goes to the socket; reads come out of it.
    tls: Option<Box<Tls>>,
}

/// What became of a pushed frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pushed {
    /// Queued behind nothing: the caller should [`Outgoing::flush`] it
    /// (after pushing whatever else it has).
    First,
    /// Queued behind frames that a flush is already due for.
    Queued,
    /// A droppable frame skipped because the queue is half full.
    Skipped,
    /// The frame does not fit: the client is not reading.
    Full,
    /// The connection is closed; the frame was dropped.
    Closed,
}

/// What a liveness check found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Liveness {
    /// The peer sent something since the last check.
    Heard,
    /// The same, on an event stream: a heartbeat comment was queued for
    /// the proxies on the way (flush it).
    Heartbeat,
    /// The peer was silent; a ping was queued (flush it).
    Pinged,
    /// The peer stayed silent through more pings than allowed.
    Unresponsive,
}

/// A WebSocket ping with no payload, as a server sends it (unmasked).
const PING: [u8; 2] = [0x89, 0x00];

/// An event stream's ping: the client answers it with a request.
const EVENT_PING: &[u8] = b"event: ping\ndata: \n\n";

/// An event stream's heartbeat: a comment, which clients skip.
const HEARTBEAT: &[u8] = b":\n\n";

/// What a flush did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flushed {
    /// Everything queued is written.
    Done,
    /// The socket is full; the connection task was told to finish.
    Stalled,
    /// The connection is closed (or just failed); nothing can be written.
    Closed,
}

impl Outgoing {
    /// The write side of `io`, framing messages as `framing` says and
    /// queueing at most `max_frames` of them and, once non-empty,
    /// `max_bytes` bytes (one larger frame still fits an empty queue).
    pub(crate) fn new(
        io: TcpStream,
        tls: Option<rustls::ServerConnection>,
        (max_frames, max_bytes): (usize, usize),
        framing: Framing,
    ) -> Arc<Self> {
        let state = State {
            queue: Queue::new(max_frames, max_bytes, framing),
            stalled: false,
            silent: 0,
            tls: tls.map(|session| Box::new(Tls::new(session))),
        };
        Arc::new(Self {
            io,
            heard: AtomicBool::new(true),
            state: Mutex::new(state),
            stalled: Notify::new(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // The state is plain data; a panic elsewhere cannot break it.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues a text frame with `payload`; `droppable` frames are skipped
    /// instead once the queue is half full. Writes nothing: call
    /// [`Outgoing::flush`] when told [`Pushed::First`].
    pub fn push_text(&self, payload: Utf8Bytes, droppable: bool) -> Pushed {
        self.lock().queue.push_text(payload, droppable)
    }

    /// Queues a binary frame with `payload`, as [`Outgoing::push_text`]
    /// does a text frame.
    pub fn push_binary(&self, payload: bytes::Bytes, droppable: bool) -> Pushed {
        self.lock().queue.push_binary(payload, droppable)
    }

    /// Writes what is queued, as far as the socket takes it without
    /// waiting. When it cannot take everything, the connection task is told
    /// to wait for the socket and finish ([`Outgoing::stalled`]).
    pub fn flush(&self) -> Flushed {
        let mut state = self.lock();
        let was_closed = state.queue.closed().is_some();
        let flushed = self.write_queued(&mut state);
        self.tell_task(&mut state.stalled, was_closed, flushed);
        flushed
    }

    /// Wakes the connection task when a write outside it could not finish
    /// (the task waits for the socket) or just failed (the task ends).
    fn tell_task(&self, stalled: &mut bool, was_closed: bool, flushed: Flushed) {
        match flushed {
            Flushed::Stalled if !*stalled => {
                *stalled = true;
                self.stalled.notify_one();
            }
            Flushed::Closed if !was_closed => self.stalled.notify_one(),
            _ => {}
        }
    }

    /// Waits until a flush could not finish or the connection closed.
    /// Cancel safe.
    pub async fn stalled(&self) {
        loop {
            // Registered before looking, so a stall in between is not missed.
            let notified = self.stalled.notified();
            {
                let state = self.lock();
                if state.stalled || state.queue.closed().is_some() {
                    return;
                }
            }
            notified.await;
        }
    }

    /// Waits for the socket and writes until the queue is empty. Cancel
    /// safe: what is not yet written stays queued.
    ///
    /// # Errors
    /// The write failed, or the connection was closed.
    pub async fn unstall(&self) -> io::Result<()> {
        loop {
            match self.flush() {
                Flushed::Done => {
                    self.lock().stalled = false;
                    return Ok(());
                }
                Flushed::Closed => return Err(self.closed_error()),
                Flushed::Stalled => self.io.writable().await?,
            }
        }
    }

    /// Ends the connection's writing: queued frames are dropped and later
    /// pushes report [`Pushed::Closed`].
    pub fn close(&self) {
        self.lock().queue.close(io::ErrorKind::NotConnected);
        self.stalled.notify_one();
    }

    /// Checks that the peer is alive, for a caller that does so at a fixed
    /// interval: a peer that sent anything since the last check (a pong, a
    /// frame) is alive; a silent one gets a ping, and after `max_pings`
    /// unanswered ones is reported unresponsive.
    pub fn check_alive(&self, max_pings: u32) -> Liveness {
        if self.heard.swap(false, Ordering::AcqRel) {
            let mut state = self.lock();
            state.silent = 0;
            // A proxy times out a response that says nothing for a while,
            // whatever the client sends meanwhile: an event stream gets a
            // comment each check (a WebSocket's pings are its own).
            if state.queue.framing() == Framing::EventStream
                && state.queue.push_raw(HEARTBEAT).is_ok()
            {
                return Liveness::Heartbeat;
            }
            return Liveness::Heard;
        }
        let mut state = self.lock();
        state.silent = state.silent.saturating_add(1);
        if state.silent > max_pings {
            return Liveness::Unresponsive;
        }
        let ping = match state.queue.framing() {
            Framing::WebSocket => &PING[..],
            Framing::EventStream => EVENT_PING,
        };
        match state.queue.push_raw(ping) {
            Ok(()) => Liveness::Pinged,
            Err(_) => Liveness::Unresponsive,
        }
    }

    /// Drops what is queued, except the rest of a frame already partly
    /// written: for a client about to be closed for not reading, whose
    /// backlog is worthless.
    pub fn discard_queued(&self) {
        self.lock().queue.discard();
    }

    /// Frames queued and not yet fully written.
    pub fn queued(&self) -> usize {
        self.lock().queue.len()
    }

    fn closed_error(&self) -> io::Error {
        let kind = self.lock().queue.closed().unwrap_or(io::ErrorKind::NotConnected);
        io::Error::new(kind, "connection closed for writing")
    }

    /// Queues an event of an event stream named `name` with `data`, as
    /// it is, for the transport's own events (`open`, `close`).
    pub(crate) fn push_event(&self, name: &str, data: &str) -> io::Result<()> {
        self.lock().queue.push_raw(&event(name, data))
    }

    /// Something was read from the peer (or, on an event stream, a
    /// request for it arrived).
    pub(crate) fn heard(&self) {
        self.heard.store(true, Ordering::Release);
    }

    /// Writes from the front of the queue until it is empty or the socket
    /// is full. A failed write closes the connection for writing.
    fn write_queued(&self, state: &mut State) -> Flushed {
        if state.queue.closed().is_some() {
            return Flushed::Closed;
        }
        if let Some(tls) = state.tls.as_mut() {
            return tls.write(&mut state.queue, &self.io);
        }
        while !state.queue.is_empty() {
            let mut slices = [IoSlice::new(&[]); MAX_SLICES];
            let count = state.queue.slices(&mut slices);
            match self.io.try_write_vectored(slices.get(..count).unwrap_or_default()) {
                Ok(0) => return state.fail(io::ErrorKind::WriteZero),
                Ok(written) => state.queue.advance(written),
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => return Flushed::Stalled,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) => return state.fail(err.kind()),
            }
        }
        Flushed::Done
    }
}

impl State {
    fn fail(&mut self, kind: io::ErrorKind) -> Flushed {
        self.queue.close(kind);
        Flushed::Closed
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    use super::*;

    /// A connected pair on loopback: our side wrapped, the peer raw.
    async fn pair(max_frames: usize, max_bytes: usize) -> (Arc<Outgoing>, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let peer = TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
        let (ours, _) = listener.accept().await.unwrap();
        (Outgoing::new(ours, None, (max_frames, max_bytes), Framing::WebSocket), peer)
    }

    fn text(len: usize, fill: char) -> Utf8Bytes {
        Utf8Bytes::from(fill.to_string().repeat(len))
    }

    /// Reads one unmasked frame: (opcode byte, payload).
    async fn read_frame(peer: &mut TcpStream) -> (u8, Vec<u8>) {
        let mut head = [0u8; 2];
        peer.read_exact(&mut head).await.unwrap();
        let len = match head[1] {
            126 => usize::from(peer.read_u16().await.unwrap()),
            127 => usize::try_from(peer.read_u64().await.unwrap()).unwrap(),
            short => usize::from(short),
        };
        let mut payload = vec![0; len];
        peer.read_exact(&mut payload).await.unwrap();
        (head[0], payload)
    }

    #[tokio::test]
    async fn frames_pushed_then_flushed_arrive_whole_and_in_order() {
        let (out, mut peer) = pair(100, 1 << 20).await;
        assert_eq!(out.push_text(text(5, 'a'), false), Pushed::First);
        assert_eq!(out.push_text(text(300, 'b'), false), Pushed::Queued);
        assert_eq!(out.push_text(text(70_000, 'c'), false), Pushed::Queued);
        assert_eq!(out.queued(), 3);
        assert_eq!(out.flush(), Flushed::Done);
        assert_eq!(out.queued(), 0);
        for (len, fill) in [(5, b'a'), (300, b'b'), (70_000, b'c')] {
            let (opcode, payload) = read_frame(&mut peer).await;
            assert_eq!(opcode, 0x81);
            assert_eq!(payload.len(), len);
            assert!(payload.iter().all(|&b| b == fill));
        }
        assert_eq!(out.push_text(text(1, 'd'), false), Pushed::First, "empty again after a flush");
    }

    #[tokio::test]
    async fn a_full_socket_stalls_and_the_rest_is_written_once_the_peer_reads() {
        let (out, mut peer) = pair(10_000, 64 << 20).await;
        // Far more than the socket buffers hold, in frames of odd sizes so
        // partial writes land inside headers and payloads alike.
        let mut sent = Vec::new();
        let mut flushed = Flushed::Done;
        for i in 0..4000 {
            let len = 1 + (i * 7919) % 9000;
            let fill = char::from(b'a' + (i % 26) as u8);
            assert_ne!(out.push_text(text(len, fill), false), Pushed::Full);
            sent.push((len, fill as u8));
            flushed = out.flush();
            if flushed == Flushed::Stalled {
                break;
            }
        }
        assert_eq!(flushed, Flushed::Stalled, "the peer reads nothing, so the socket fills");
        tokio::time::timeout(Duration::from_secs(5), out.stalled()).await.unwrap();
        // Frames pushed while stalled queue behind the unwritten ones.
        assert_eq!(out.push_text(text(3, 'z'), false), Pushed::Queued);
        sent.push((3, b'z'));
        let reader = tokio::spawn(async move {
            let mut got = Vec::new();
            for _ in 0..sent.len() {
                let (opcode, payload) = read_frame(&mut peer).await;
                assert_eq!(opcode, 0x81);
                got.push((payload.len(), payload[0]));
                assert!(payload.iter().all(|&b| b == payload[0]));
            }
            assert_eq!(got, sent);
        });
        out.unstall().await.unwrap();
        assert_eq!(out.queued(), 0);
        reader.await.unwrap();
    }

    #[tokio::test]
    async fn tungstenite_writes_keep_their_place_among_pushed_frames() {
        let (out, mut peer) = pair(100, 1 << 20).await;
        let mut stream = SharedStream::new(Arc::clone(&out), &[], 64).unwrap();
        assert_eq!(out.push_text(text(2, 'a'), false), Pushed::First);
        // A pong as tungstenite would write it, then flush.
        stream.write_all(&[0x8a, 1, b'p']).await.unwrap();
        assert_eq!(out.push_text(text(2, 'b'), false), Pushed::Queued);
        stream.flush().await.unwrap();
        assert_eq!(read_frame(&mut peer).await, (0x81, b"aa".to_vec()));
        assert_eq!(read_frame(&mut peer).await, (0x8a, b"p".to_vec()));
        assert_eq!(read_frame(&mut peer).await, (0x81, b"bb".to_vec()));
    }

    #[tokio::test]
    async fn a_silent_peer_is_pinged_then_reported_and_any_read_counts_as_alive() {
        let (out, mut peer) = pair(100, 1 << 20).await;
        let mut stream = SharedStream::new(Arc::clone(&out), &[], 64).unwrap();
        assert_eq!(out.check_alive(2), Liveness::Heard, "new connections start as heard");
        assert_eq!(out.check_alive(2), Liveness::Pinged);
        assert_eq!(out.flush(), Flushed::Done);
        assert_eq!(read_frame(&mut peer).await, (0x89, Vec::new()));
        // The peer answers (anything read counts).
        peer.write_all(&[0x8a, 0x80, 0, 0, 0, 0]).await.unwrap();
        let mut buf = [0u8; 16];
        let read = stream.read(&mut buf).await.unwrap();
        assert_eq!(read, 6);
        assert_eq!(out.check_alive(2), Liveness::Heard);
        assert_eq!(out.check_alive(2), Liveness::Pinged);
        assert_eq!(out.check_alive(2), Liveness::Pinged);
        assert_eq!(out.check_alive(2), Liveness::Unresponsive, "two pings unanswered");
    }

    #[tokio::test]
    async fn a_closed_connection_takes_no_more_frames() {
        let (out, _peer) = pair(100, 1 << 20).await;
        assert_eq!(out.push_text(text(2, 'a'), false), Pushed::First);
        out.close();
        assert_eq!(out.queued(), 0);
        assert_eq!(out.push_text(text(2, 'a'), false), Pushed::Closed);
        assert_eq!(out.flush(), Flushed::Closed);
        tokio::time::timeout(Duration::from_secs(5), out.stalled()).await.unwrap();
        assert!(out.unstall().await.is_err());
    }

    #[tokio::test]
    async fn writing_to_a_reset_peer_closes_the_queue() {
        let (out, peer) = pair(100, 1 << 20).await;
        // Linger 0: closing sends RST, so our writes fail.
        peer.set_zero_linger().unwrap();
        drop(peer);
        let mut flushed = Flushed::Done;
        for _ in 0..100 {
            if out.push_text(text(10, 'a'), false) == Pushed::Closed {
                flushed = Flushed::Closed;
                break;
            }
            flushed = out.flush();
            if flushed == Flushed::Closed {
                break;
            }
            tokio::task::yield_now().await;
        }
        assert_eq!(flushed, Flushed::Closed);
        assert_eq!(out.push_text(text(2, 'a'), false), Pushed::Closed);
        // The connection task hears of it.
        tokio::time::timeout(Duration::from_secs(5), out.stalled()).await.unwrap();
        assert!(out.unstall().await.is_err());
    }

    #[tokio::test]
    async fn discarding_keeps_a_partly_written_frame_whole() {
        let (out, mut peer) = pair(10_000, 64 << 20).await;
        let mut flushed = Flushed::Done;
        while flushed != Flushed::Stalled {
            out.push_text(text(100_000, 'a'), false);
            flushed = out.flush();
        }
        out.discard_queued();
        assert!(out.queued() <= 1);
        let mut stream = SharedStream::new(Arc::clone(&out), &[], 64).unwrap();
        // A close frame after the discard still parses on the other side.
        stream.write_all(&[0x88, 2, 0x0f, 0xa8]).await.unwrap();
        let reader = tokio::spawn(async move {
            loop {
                let (opcode, payload) = read_frame(&mut peer).await;
                if opcode == 0x88 {
                    break payload;
                }
                assert_eq!((opcode, payload.len()), (0x81, 100_000));
            }
        });
        stream.flush().await.unwrap();
        assert_eq!(reader.await.unwrap(), vec![0x0f, 0xa8]);
    }
}
