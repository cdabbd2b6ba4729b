//! The outgoing queue's policy, with no socket: what is queued, what is
//! skipped or refused, how a message is framed on the wire, and what a
//! write of so many bytes took off.

use std::collections::VecDeque;
use std::io::{self, IoSlice};

use base64::Engine;
use bytes::Bytes;
use tungstenite::Utf8Bytes;

use super::Pushed;
use crate::header::FrameHeader;

/// Slices handed to one `writev`: up to three per frame (header, payload,
/// trailer).
pub(super) const MAX_SLICES: usize = 64;

/// How messages are framed on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// RFC 6455 frames: a header, then the payload.
    WebSocket,
    /// Server-Sent Events (the HTTP fallback): `data: ` + a text message +
    /// a blank line; a binary message as an `event: binary` whose data is
    /// its base64.
    EventStream,
}

/// What ends an event of an event stream.
const EVENT_END: &[u8] = b"\n\n";

/// Frames waiting to be written, bounded in frames and bytes.
#[derive(Debug)]
pub(super) struct Queue {
    chunks: VecDeque<Chunk>,
    /// Bytes of the front chunk already written.
    written: usize,
    /// Bytes queued, headers excluded.
    bytes: usize,
    /// Nothing more will be written: the connection ended or a write failed.
    closed: Option<io::ErrorKind>,
    max_frames: usize,
    max_bytes: usize,
    framing: Framing,
}

#[derive(Debug)]
struct Chunk {
    header: FrameHeader,
    payload: Bytes,
    trailer: &'static [u8],
}

impl Chunk {
    fn len(&self) -> usize {
        self.header.len() + self.payload.len() + self.trailer.len()
    }
}

/// Nothing: a frame with no trailer.
const EMPTY: &[u8] = b"";

/// A whole event named `name` (`message` is the unnamed default) whose
/// data is `data`, one `data:` line per line of it.
pub(super) fn event(name: &str, data: &str) -> Vec<u8> {
    let mut event = Vec::with_capacity(data.len() + name.len() + 16);
    if name != "message" {
        event.extend_from_slice(format!("event: {name}\n").as_bytes());
    }
    for line in data.replace("\r\n", "\n").split(['\n', '\r']) {
        event.extend_from_slice(b"data: ");
        event.extend_from_slice(line.as_bytes());
        event.push(b'\n');
    }
    event.push(b'\n');
    event
}

impl Queue {
    /// At most `max_frames` frames and, once non-empty, `max_bytes` bytes:
    /// one larger frame still fits an empty queue.
    pub(super) fn new(max_frames: usize, max_bytes: usize, framing: Framing) -> Self {
        Self {
            chunks: VecDeque::new(),
            written: 0,
            bytes: 0,
            closed: None,
            max_frames: max_frames.max(1),
            max_bytes,
            framing,
        }
    }

    pub(super) fn framing(&self) -> Framing {
        self.framing
    }

    /// Queues a text frame. Past half of either bound `droppable` frames
    /// are skipped; a frame that does not fit is refused.
    pub(super) fn push_text(&mut self, payload: Utf8Bytes, droppable: bool) -> Pushed {
        match self.framing {
            Framing::WebSocket => {
                let len = payload.len();
                self.push(FrameHeader::text(len), payload.into(), EMPTY, droppable)
            }
            // A message of one line (every JSON frame) goes out as it is
            // shared; another is cut into one `data:` line per line.
            Framing::EventStream
                if !payload.as_bytes().iter().any(|b| matches!(b, b'\n' | b'\r')) =>
            {
                self.push(FrameHeader::raw(b"data: "), payload.into(), EVENT_END, droppable)
            }
            Framing::EventStream => {
                let event = event("message", payload.as_str());
                self.push(FrameHeader::NONE, event.into(), EMPTY, droppable)
            }
        }
    }

    /// Queues a binary frame, as [`Queue::push_text`] does a text one.
    pub(super) fn push_binary(&mut self, payload: Bytes, droppable: bool) -> Pushed {
        match self.framing {
            Framing::WebSocket => {
                self.push(FrameHeader::binary(payload.len()), payload, EMPTY, droppable)
            }
            Framing::EventStream => {
                let data = base64::engine::general_purpose::STANDARD.encode(&payload);
                self.push(FrameHeader::NONE, event("binary", &data).into(), EMPTY, droppable)
            }
        }
    }

    fn push(
        &mut self,
        header: FrameHeader,
        payload: Bytes,
        trailer: &'static [u8],
        droppable: bool,
    ) -> Pushed {
        if self.closed.is_some() {
            return Pushed::Closed;
        }
        let frames = self.chunks.len();
        let half_used =
            frames * 2 >= self.max_frames || self.bytes.saturating_mul(2) >= self.max_bytes;
        if droppable && half_used {
            return Pushed::Skipped;
        }
        let len = payload.len();
        let too_many_bytes = self.bytes > 0 && self.bytes.saturating_add(len) > self.max_bytes;
        if frames >= self.max_frames || too_many_bytes {
            return Pushed::Full;
        }
        self.bytes += len;
        self.chunks.push_back(Chunk { header, payload, trailer });
        if frames == 0 { Pushed::First } else { Pushed::Queued }
    }

    /// Queues bytes that are whole frames already (tungstenite's control
    /// frames).
    ///
    /// # Errors
    /// The queue is closed, or control frames alone went past twice the
    /// byte bound (a ping flood from a peer that does not read).
    pub(super) fn push_raw(&mut self, bytes: &[u8]) -> io::Result<()> {
        if let Some(kind) = self.closed {
            return Err(io::Error::new(kind, "connection closed for writing"));
        }
        if self.bytes.saturating_add(bytes.len()) > self.max_bytes.saturating_mul(2) {
            return Err(io::Error::other("outgoing queue full"));
        }
        self.bytes += bytes.len();
        let payload = Bytes::copy_from_slice(bytes);
        self.chunks.push_back(Chunk { header: FrameHeader::NONE, payload, trailer: EMPTY });
        Ok(())
    }

    /// Fills `slices` with what to write next; returns how many were used.
    pub(super) fn slices<'a>(&'a self, slices: &mut [IoSlice<'a>; MAX_SLICES]) -> usize {
        let mut count = 0;
        let mut skip = self.written;
        for chunk in &self.chunks {
            if count + 3 > MAX_SLICES {
                break;
            }
            for part in [chunk.header.as_bytes(), &chunk.payload, chunk.trailer] {
                if skip >= part.len() {
                    skip -= part.len();
                    continue;
                }
                if let Some(slot) = slices.get_mut(count) {
                    *slot = IoSlice::new(part.get(skip..).unwrap_or_default());
                    count += 1;
                }
                skip = 0;
            }
        }
        count
    }

    /// `written` bytes from the front went out.
    pub(super) fn advance(&mut self, mut written: usize) {
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

    /// Nothing more will be written, for this reason.
    pub(super) fn close(&mut self, kind: io::ErrorKind) {
        self.closed.get_or_insert(kind);
        self.chunks.clear();
        self.bytes = 0;
        self.written = 0;
    }

    pub(super) fn closed(&self) -> Option<io::ErrorKind> {
        self.closed
    }

    /// Drops what is queued, except the rest of a frame already partly
    /// written (cutting it would corrupt the stream).
    pub(super) fn discard(&mut self) {
        let keep = usize::from(self.written > 0);
        self.chunks.truncate(keep);
        self.bytes = self.chunks.iter().map(|chunk| chunk.payload.len()).sum();
    }

    /// Frames queued and not yet fully written.
    pub(super) fn len(&self) -> usize {
        self.chunks.len()
    }

    pub(super) fn is_empty(&self) -> bool {
        self.chunks.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(len: usize) -> Utf8Bytes {
        Utf8Bytes::from("x".repeat(len))
    }

    /// The bytes the queue would write next, all of them.
    fn pending(queue: &Queue) -> Vec<u8> {
        let mut slices = [IoSlice::new(&[]); MAX_SLICES];
        let count = queue.slices(&mut slices);
        slices[..count].iter().flat_map(|slice| slice.iter().copied()).collect()
    }

    #[test]
    fn droppable_frames_go_first_then_the_queue_reports_full() {
        let mut queue = Queue::new(4, 1_000_000, Framing::WebSocket);
        assert_eq!(queue.push_text(text(1), true), Pushed::First);
        assert_eq!(queue.push_text(text(1), false), Pushed::Queued);
        assert_eq!(queue.push_text(text(1), true), Pushed::Skipped, "half full: typing goes");
        assert_eq!(queue.push_text(text(1), false), Pushed::Queued);
        assert_eq!(queue.push_text(text(1), false), Pushed::Queued);
        assert_eq!(queue.push_text(text(1), false), Pushed::Full);
        queue.advance(pending(&queue).len());
        assert!(queue.is_empty());
        assert_eq!(queue.push_text(text(1), false), Pushed::First, "room again once written");
    }

    #[test]
    fn bytes_are_bounded_but_one_large_frame_fits_an_empty_queue() {
        let mut queue = Queue::new(100, 100, Framing::WebSocket);
        assert_eq!(queue.push_text(text(500), false), Pushed::First);
        assert_eq!(queue.push_text(text(1), false), Pushed::Full);
        queue.advance(pending(&queue).len());
        assert_eq!(queue.push_text(text(60), false), Pushed::First);
        assert_eq!(queue.push_text(text(30), true), Pushed::Skipped);
        assert_eq!(queue.push_text(text(30), false), Pushed::Queued);
        assert_eq!(queue.push_text(text(11), false), Pushed::Full);
    }

    #[test]
    fn binary_frames_queue_beside_text_ones_under_the_same_bounds() {
        let mut queue = Queue::new(3, 1_000_000, Framing::WebSocket);
        assert_eq!(queue.push_binary(Bytes::from_static(&[0, 1, 2]), false), Pushed::First);
        assert_eq!(queue.push_text(Utf8Bytes::from("hi"), false), Pushed::Queued);
        assert_eq!(queue.push_binary(Bytes::from_static(&[9]), true), Pushed::Skipped);
        assert_eq!(pending(&queue), [0x82, 3, 0, 1, 2, 0x81, 2, b'h', b'i']);
        assert_eq!(queue.push_binary(Bytes::from_static(&[9]), false), Pushed::Queued);
        assert_eq!(queue.push_binary(Bytes::from_static(&[9]), false), Pushed::Full);
    }

    #[test]
    fn partial_writes_resume_inside_headers_and_payloads() {
        let mut queue = Queue::new(100, 1 << 20, Framing::WebSocket);
        queue.push_text(Utf8Bytes::from("abc"), false);
        queue.push_text(Utf8Bytes::from("x".repeat(300)), false);
        let all = pending(&queue);
        assert_eq!(all.len(), 2 + 3 + 4 + 300);
        // One byte into the first header, then into the second payload.
        queue.advance(1);
        assert_eq!(pending(&queue), all[1..]);
        queue.advance(4 + 4 + 10);
        assert_eq!(pending(&queue), all[19..]);
        assert_eq!(queue.len(), 1);
    }

    #[test]
    fn discarding_keeps_a_partly_written_frame_whole() {
        let mut queue = Queue::new(100, 1 << 20, Framing::WebSocket);
        for _ in 0..5 {
            queue.push_text(text(50), false);
        }
        queue.advance(10);
        queue.discard();
        assert_eq!(queue.len(), 1);
        assert_eq!(pending(&queue).len(), 52 - 10, "the rest of the started frame");
        queue.advance(42);
        queue.discard();
        assert!(queue.is_empty());
    }

    #[test]
    fn a_closed_queue_takes_nothing_and_control_floods_are_refused() {
        let mut queue = Queue::new(100, 10, Framing::WebSocket);
        assert!(queue.push_raw(&[0x8a, 0]).is_ok());
        assert!(queue.push_raw(&[0; 20]).is_err(), "past twice the bound");
        queue.close(io::ErrorKind::BrokenPipe);
        assert_eq!(queue.push_text(text(1), false), Pushed::Closed);
        assert_eq!(
            queue.push_raw(&[0x8a, 0]).map_err(|e| e.kind()),
            Err(io::ErrorKind::BrokenPipe)
        );
        assert!(queue.is_empty());
    }

    #[test]
    fn event_streams_frame_each_message_as_one_event() {
        let mut queue = Queue::new(100, 1 << 20, Framing::EventStream);
        queue.push_text(Utf8Bytes::from(r#"{"type":"message"}"#), false);
        queue.push_text(Utf8Bytes::from("two\nlines\r\nand\rthree"), false);
        queue.push_binary(Bytes::from_static(&[0, 1, 2, 255]), false);
        let all = String::from_utf8(pending(&queue)).unwrap();
        assert_eq!(
            all,
            "data: {\"type\":\"message\"}\n\n\
             data: two\ndata: lines\ndata: and\ndata: three\n\n\
             event: binary\ndata: AAEC/w==\n\n"
        );
        // Written a byte at a time across the trailer, nothing is lost.
        let mut rest = all.as_bytes();
        while !queue.is_empty() {
            assert_eq!(pending(&queue), rest);
            queue.advance(1);
            rest = &rest[1..];
        }
    }
}
