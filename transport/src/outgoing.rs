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
//! tungstenite's own frames (pong, close) go through the same queue: the
//! [`SharedStream`] it reads and writes appends what it writes, so every
//! byte reaches the socket in the order it was produced.
//!
//! The queue is bounded in frames and bytes. Past half of either bound,
//! droppable frames (typing notices) are skipped; a frame that does not fit
//! is refused with [`Pushed::Full`], and the caller decides what a client
//! that stopped reading deserves (the chat server closes it).

use std::collections::VecDeque;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::Notify;
use tungstenite::Utf8Bytes;

use crate::frames::FrameCounter;

/// Slices handed to one `writev`: two per frame (header and payload).
const MAX_SLICES: usize = 64;

/// The shared write side of one connection.
#[derive(Debug)]
pub struct Outgoing {
    io: TcpStream,
    /// Something was read from the peer since the last liveness check.
    heard: AtomicBool,
    state: Mutex<State>,
    /// Tells the connection task that a flush could not finish.
    stalled: Notify,
    max_frames: usize,
    max_bytes: usize,
}

#[derive(Debug, Default)]
struct State {
    chunks: VecDeque<Chunk>,
    /// Bytes of the front chunk already written.
    written: usize,
    /// Bytes queued, headers excluded.
    bytes: usize,
    /// A flush found the socket full; the connection task must finish it.
    stalled: bool,
    /// Liveness checks in a row that found the peer silent.
    silent: u32,
    /// Nothing more will be written: the connection ended or a write failed.
    closed: Option<io::ErrorKind>,
    /// Over TLS, the session: frames are written into it as plaintext and
    /// what it encrypts goes to the socket; reads come out of it.
    tls: Option<Box<rustls::ServerConnection>>,
}

#[derive(Debug)]
struct Chunk {
    header: FrameHeader,
    payload: Bytes,
}

impl Chunk {
    fn len(&self) -> usize {
        self.header.len as usize + self.payload.len()
    }
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
    /// The peer was silent; a ping was queued (flush it).
    Pinged,
    /// The peer stayed silent through more pings than allowed.
    Unresponsive,
}

/// A WebSocket ping with no payload, as a server sends it (unmasked).
const PING: [u8; 2] = [0x89, 0x00];

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
    /// The write side of `io`, queueing at most `max_frames` frames and,
    /// once non-empty, `max_bytes` bytes (one larger frame still fits an
    /// empty queue).
    pub(crate) fn new(
        io: TcpStream,
        tls: Option<rustls::ServerConnection>,
        max_frames: usize,
        max_bytes: usize,
    ) -> Arc<Self> {
        let state = State { tls: tls.map(Box::new), ..State::default() };
        Arc::new(Self {
            io,
            heard: AtomicBool::new(true),
            state: Mutex::new(state),
            stalled: Notify::new(),
            max_frames: max_frames.max(1),
            max_bytes,
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
        let mut state = self.lock();
        if state.closed.is_some() {
            return Pushed::Closed;
        }
        let frames = state.chunks.len();
        let half_used =
            frames * 2 >= self.max_frames || state.bytes.saturating_mul(2) >= self.max_bytes;
        if droppable && half_used {
            return Pushed::Skipped;
        }
        let len = payload.len();
        let too_many_bytes = state.bytes > 0 && state.bytes.saturating_add(len) > self.max_bytes;
        if frames >= self.max_frames || too_many_bytes {
            return Pushed::Full;
        }
        state.bytes += len;
        state.chunks.push_back(Chunk { header: FrameHeader::text(len), payload: payload.into() });
        if frames == 0 { Pushed::First } else { Pushed::Queued }
    }

    /// Writes what is queued, as far as the socket takes it without
    /// waiting. When it cannot take everything, the connection task is told
    /// to wait for the socket and finish ([`Outgoing::stalled`]).
    pub fn flush(&self) -> Flushed {
        let mut state = self.lock();
        let was_closed = state.closed.is_some();
        let flushed = self.write_queued(&mut state);
        self.tell_task(&mut state, was_closed, flushed);
        flushed
    }

    /// Wakes the connection task when a write outside it could not finish
    /// (the task waits for the socket) or just failed (the task ends).
    fn tell_task(&self, state: &mut State, was_closed: bool, flushed: Flushed) {
        match flushed {
            Flushed::Stalled if !state.stalled => {
                state.stalled = true;
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
                if state.stalled || state.closed.is_some() {
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
        let mut state = self.lock();
        state.closed.get_or_insert(io::ErrorKind::NotConnected);
        state.chunks.clear();
        state.bytes = 0;
        drop(state);
        self.stalled.notify_one();
    }

    /// Checks that the peer is alive, for a caller that does so at a fixed
    /// interval: a peer that sent anything since the last check (a pong, a
    /// frame) is alive; a silent one gets a ping, and after `max_pings`
    /// unanswered ones is reported unresponsive.
    pub fn check_alive(&self, max_pings: u32) -> Liveness {
        if self.heard.swap(false, Ordering::AcqRel) {
            self.lock().silent = 0;
            return Liveness::Heard;
        }
        let silent = {
            let mut state = self.lock();
            state.silent = state.silent.saturating_add(1);
            state.silent
        };
        if silent > max_pings {
            return Liveness::Unresponsive;
        }
        match self.push_raw(&PING) {
            Ok(()) => Liveness::Pinged,
            Err(_) => Liveness::Unresponsive,
        }
    }

    /// Drops what is queued, except the rest of a frame already partly
    /// written (cutting it would corrupt the stream): for a client about to
    /// be closed for not reading, whose backlog is worthless.
    pub fn discard_queued(&self) {
        let mut state = self.lock();
        let keep = usize::from(state.written > 0);
        state.chunks.truncate(keep);
        state.bytes = state.chunks.iter().map(|chunk| chunk.payload.len()).sum();
    }

    /// Frames queued and not yet fully written.
    pub fn queued(&self) -> usize {
        self.lock().chunks.len()
    }

    fn closed_error(&self) -> io::Error {
        let kind = self.lock().closed.unwrap_or(io::ErrorKind::NotConnected);
        io::Error::new(kind, "connection closed for writing")
    }

    /// Writes from the front of the queue until it is empty or the socket
    /// is full. A failed write closes the connection for writing.
    fn write_queued(&self, state: &mut State) -> Flushed {
        if state.closed.is_some() {
            return Flushed::Closed;
        }
        if state.tls.is_some() {
            return self.write_queued_tls(state);
        }
        while !state.chunks.is_empty() {
            let mut slices = [IoSlice::new(&[]); MAX_SLICES];
            let count = fill_slices(&state.chunks, state.written, &mut slices);
            match self.io.try_write_vectored(slices.get(..count).unwrap_or_default()) {
                Ok(0) => return state.fail(io::ErrorKind::WriteZero),
                Ok(written) => state.advance(written),
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => return Flushed::Stalled,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) => return state.fail(err.kind()),
            }
        }
        Flushed::Done
    }

    /// The same over TLS: plaintext into the session as far as its buffer
    /// takes it, ciphertext out to the socket, until both are empty or the
    /// socket is full.
    fn write_queued_tls(&self, state: &mut State) -> Flushed {
        loop {
            match self.flush_tls(state) {
                Flushed::Done => {}
                other => return other,
            }
            if state.chunks.is_empty() {
                return Flushed::Done;
            }
            let mut slices = [IoSlice::new(&[]); MAX_SLICES];
            let count = fill_slices(&state.chunks, state.written, &mut slices);
            let Some(tls) = state.tls.as_mut() else {
                return Flushed::Done;
            };
            match io::Write::write_vectored(
                &mut tls.writer(),
                slices.get(..count).unwrap_or_default(),
            ) {
                Ok(written) if written > 0 => state.advance(written),
                // The session's buffer is full: flush it first.
                Ok(_) => {}
                Err(err) => return state.fail(err.kind()),
            }
        }
    }

    /// Writes what the TLS session has encrypted to the socket.
    fn flush_tls(&self, state: &mut State) -> Flushed {
        let Some(tls) = state.tls.as_mut() else {
            return Flushed::Done;
        };
        while tls.wants_write() {
            match tls.write_tls(&mut TryIo(&self.io)) {
                Ok(0) => return state.fail(io::ErrorKind::WriteZero),
                Ok(_) => {}
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => return Flushed::Stalled,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) => return state.fail(err.kind()),
            }
        }
        Flushed::Done
    }

    /// Queues bytes tungstenite wrote itself (whole control frames).
    fn push_raw(&self, bytes: &[u8]) -> io::Result<()> {
        let mut state = self.lock();
        if let Some(kind) = state.closed {
            return Err(io::Error::new(kind, "connection closed for writing"));
        }
        // Control frames are tiny; a peer that makes us queue more than the
        // whole bound in them (ping floods while not reading) is cut off.
        if state.bytes.saturating_add(bytes.len()) > self.max_bytes.saturating_mul(2) {
            return Err(io::Error::other("outgoing queue full"));
        }
        state.bytes += bytes.len();
        state.chunks.push_back(Chunk {
            header: FrameHeader::none(),
            payload: Bytes::copy_from_slice(bytes),
        });
        Ok(())
    }
}

/// Fills `slices` with what of `chunks` to write next, `written` bytes of
/// the first already being written; returns how many were used.
fn fill_slices<'a>(
    chunks: &'a VecDeque<Chunk>,
    written: usize,
    slices: &mut [IoSlice<'a>; MAX_SLICES],
) -> usize {
    let mut count = 0;
    let mut skip = written;
    for chunk in chunks {
        if count + 2 > MAX_SLICES {
            break;
        }
        let header = chunk.header.as_bytes();
        if skip < header.len() {
            if let Some(slot) = slices.get_mut(count) {
                *slot = IoSlice::new(header.get(skip..).unwrap_or_default());
                count += 1;
            }
            skip = 0;
        } else {
            skip -= header.len();
        }
        if let Some(payload) = chunk.payload.get(skip..).filter(|rest| !rest.is_empty())
            && let Some(slot) = slices.get_mut(count)
        {
            *slot = IoSlice::new(payload);
            count += 1;
        }
        skip = 0;
    }
    count
}

impl State {
    /// Drops `written` bytes from the front of the queue.
    fn advance(&mut self, mut written: usize) {
        while let Some(front) = self.chunks.front() {
            let left = front.len() - self.written;
            if written < left {
                self.written += written;
                return;
            }
            written -= left;
            self.bytes = self.bytes.saturating_sub(front.payload.len());
            self.written = 0;
            self.chunks.pop_front();
        }
    }

    fn fail(&mut self, kind: io::ErrorKind) -> Flushed {
        self.closed = Some(kind);
        self.chunks.clear();
        self.bytes = 0;
        self.written = 0;
        Flushed::Closed
    }
}

/// The stream tungstenite reads and writes: reads come from the socket,
/// writes join the [`Outgoing`] queue so they keep their place among the
/// frames fanned out to the connection.
#[derive(Debug)]
pub struct SharedStream {
    outgoing: Arc<Outgoing>,
    /// Follows the frames read, for the driver's rate limit.
    frames: FrameCounter,
}

impl SharedStream {
    /// The stream of an upgraded connection; `read` are the bytes read
    /// past the request head, which tungstenite gets first.
    pub(crate) fn new(
        outgoing: Arc<Outgoing>,
        read: &[u8],
        max_fragments: u32,
    ) -> io::Result<Self> {
        let mut frames = FrameCounter::new(max_fragments);
        frames.scan(read).map_err(|err| io::Error::new(io::ErrorKind::InvalidData, err))?;
        Ok(Self { outgoing, frames })
    }

    /// The shared write side.
    pub fn outgoing(&self) -> &Arc<Outgoing> {
        &self.outgoing
    }

    /// How many WebSocket frames the next message tungstenite hands out
    /// took: each part of a split message counts. Call once per message.
    pub fn take_frames(&mut self) -> u32 {
        self.frames.take()
    }
}

impl AsyncRead for SharedStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let read = ready!(this.read_plain(cx, buf));
        if read.is_ok() {
            let fresh = buf.filled().get(before..).unwrap_or_default();
            if let Err(err) = this.frames.scan(fresh) {
                return Poll::Ready(Err(io::Error::new(io::ErrorKind::InvalidData, err)));
            }
        }
        Poll::Ready(read)
    }
}

impl SharedStream {
    /// Reads what the socket (or the TLS session) has.
    fn read_plain(&self, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let outgoing = &self.outgoing;
        let io = &outgoing.io;
        loop {
            {
                let mut state = outgoing.lock();
                if state.tls.is_some() {
                    // Nothing to read yet: wait for the socket below.
                    if let Some(done) = outgoing.read_tls(&mut state, buf) {
                        return Poll::Ready(done);
                    }
                } else {
                    drop(state);
                    match io.try_read(buf.initialize_unfilled()) {
                        Ok(read) => {
                            if read > 0 {
                                outgoing.heard.store(true, Ordering::Release);
                            }
                            buf.advance(read);
                            return Poll::Ready(Ok(()));
                        }
                        Err(err) if err.kind() == io::ErrorKind::WouldBlock => {}
                        Err(err) => return Poll::Ready(Err(err)),
                    }
                }
            }
            // Readiness was stale and is now cleared: wait again.
            ready!(io.poll_read_ready(cx))?;
        }
    }
}

impl Outgoing {
    /// Reads plaintext out of the TLS session, feeding it from the socket
    /// as needed. `None` when the socket has nothing now.
    fn read_tls(&self, state: &mut State, buf: &mut ReadBuf<'_>) -> Option<io::Result<()>> {
        loop {
            let tls = state.tls.as_mut()?;
            match io::Read::read(&mut tls.reader(), buf.initialize_unfilled()) {
                Ok(read) => {
                    if read > 0 {
                        self.heard.store(true, Ordering::Release);
                    }
                    buf.advance(read);
                    return Some(Ok(()));
                }
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => {}
                // The peer closed without close_notify: an end all the same.
                Err(err) if err.kind() == io::ErrorKind::UnexpectedEof => return Some(Ok(())),
                Err(err) => return Some(Err(err)),
            }
            match tls.read_tls(&mut TryIo(&self.io)) {
                Ok(0) => return Some(Ok(())),
                Ok(_) => {
                    let processed = tls.process_new_packets();
                    // Whatever the session has to say (an alert, a ticket)
                    // goes out now, or with the connection task's next write.
                    let was_closed = state.closed.is_some();
                    let flushed = self.flush_tls(state);
                    self.tell_task(state, was_closed, flushed);
                    if let Err(err) = processed {
                        return Some(Err(io::Error::new(io::ErrorKind::InvalidData, err)));
                    }
                }
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => return None,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) => return Some(Err(err)),
            }
        }
    }
}

/// The socket as blocking-style `Read` and `Write` that never block: what
/// would block is `WouldBlock`, for rustls's `read_tls` and `write_tls`.
struct TryIo<'a>(&'a TcpStream);

impl io::Read for TryIo<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.try_read(buf)
    }
}

impl io::Write for TryIo<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.try_write(buf)
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        self.0.try_write_vectored(bufs)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl AsyncWrite for SharedStream {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.outgoing.push_raw(buf)?;
        // Written on flush, which tungstenite always asks for.
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let outgoing = &self.outgoing;
        loop {
            let flushed = {
                let mut state = outgoing.lock();
                outgoing.write_queued(&mut state)
            };
            match flushed {
                Flushed::Done => return Poll::Ready(Ok(())),
                Flushed::Closed => return Poll::Ready(Err(outgoing.closed_error())),
                Flushed::Stalled => ready!(outgoing.io.poll_write_ready(cx))?,
            }
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // The socket itself closes when the last holder of it lets go.
        self.poll_flush(cx)
    }
}

/// The header of an unmasked, final text frame (RFC 6455 §5.2), or none.
#[derive(Debug, Clone, Copy)]
struct FrameHeader {
    bytes: [u8; 10],
    len: u8,
}

impl FrameHeader {
    fn none() -> Self {
        Self { bytes: [0; 10], len: 0 }
    }

    fn text(payload: usize) -> Self {
        let mut bytes = [0u8; 10];
        bytes[0] = 0x81;
        let len = match payload {
            0..=125 => {
                bytes[1] = payload as u8;
                2
            }
            126..=0xffff => {
                bytes[1] = 126;
                bytes[2..4].copy_from_slice(&(payload as u16).to_be_bytes());
                4
            }
            _ => {
                bytes[1] = 127;
                bytes[2..10].copy_from_slice(&(payload as u64).to_be_bytes());
                10
            }
        };
        Self { bytes, len }
    }

    fn as_bytes(&self) -> &[u8] {
        self.bytes.get(..usize::from(self.len)).unwrap_or_default()
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
        (Outgoing::new(ours, None, max_frames, max_bytes), peer)
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

    #[test]
    fn text_frame_headers_use_the_shortest_length_form() {
        assert_eq!(FrameHeader::text(0).as_bytes(), [0x81, 0]);
        assert_eq!(FrameHeader::text(125).as_bytes(), [0x81, 125]);
        assert_eq!(FrameHeader::text(126).as_bytes(), [0x81, 126, 0, 126]);
        assert_eq!(FrameHeader::text(65_535).as_bytes(), [0x81, 126, 0xff, 0xff]);
        assert_eq!(FrameHeader::text(65_536).as_bytes(), [0x81, 127, 0, 0, 0, 0, 0, 1, 0, 0]);
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
    async fn droppable_frames_go_first_then_the_queue_reports_full() {
        let (out, _peer) = pair(4, 1_000_000).await;
        assert_eq!(out.push_text(text(1, 'x'), true), Pushed::First);
        assert_eq!(out.push_text(text(1, 'x'), false), Pushed::Queued);
        assert_eq!(out.push_text(text(1, 'x'), true), Pushed::Skipped, "half full: typing goes");
        assert_eq!(out.push_text(text(1, 'x'), false), Pushed::Queued);
        assert_eq!(out.push_text(text(1, 'x'), false), Pushed::Queued);
        assert_eq!(out.push_text(text(1, 'x'), false), Pushed::Full);
        assert_eq!(out.flush(), Flushed::Done);
        assert_eq!(out.push_text(text(1, 'x'), false), Pushed::First, "room again once written");
    }

    #[tokio::test]
    async fn bytes_are_bounded_but_one_large_frame_fits_an_empty_queue() {
        let (out, _peer) = pair(100, 100).await;
        assert_eq!(out.push_text(text(500, 'x'), false), Pushed::First);
        assert_eq!(out.push_text(text(1, 'x'), false), Pushed::Full);
        assert_eq!(out.flush(), Flushed::Done);
        assert_eq!(out.push_text(text(60, 'x'), false), Pushed::First);
        assert_eq!(out.push_text(text(30, 'x'), true), Pushed::Skipped);
        assert_eq!(out.push_text(text(30, 'x'), false), Pushed::Queued);
        assert_eq!(out.push_text(text(11, 'x'), false), Pushed::Full);
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
