//! A connection's outbound queue, bounded in frames and in bytes.
//!
//! The hub pushes without waiting; the connection task drains. When the
//! queue is half full, ephemeral frames (typing notices) are dropped first,
//! since losing one costs nothing; when a chat frame would not fit, the
//! push fails and the hub closes the connection as too slow (4008), so the
//! client resumes from its last `seq` instead of silently missing messages.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use chat_transport::tungstenite::Utf8Bytes;
use tokio::sync::mpsc;

/// The hub's end.
#[derive(Debug)]
pub(crate) struct OutboxSender {
    frames: mpsc::Sender<Utf8Bytes>,
    queued_bytes: Arc<AtomicUsize>,
    max_frames: usize,
    max_bytes: usize,
}

/// The connection task's end.
#[derive(Debug)]
pub(crate) struct OutboxReceiver {
    frames: mpsc::Receiver<Utf8Bytes>,
    queued_bytes: Arc<AtomicUsize>,
}

/// What became of a pushed frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Pushed {
    Queued,
    /// An ephemeral frame skipped because the queue is half full.
    Skipped,
    /// The frame does not fit: the client is too slow.
    Full,
    /// The connection task is gone.
    Closed,
}

/// A queue of at most `max_frames` frames and, once non-empty, `max_bytes`
/// bytes (a single larger frame still fits an empty queue).
pub(crate) fn outbox(max_frames: usize, max_bytes: usize) -> (OutboxSender, OutboxReceiver) {
    let (tx, rx) = mpsc::channel(max_frames.max(1));
    let queued_bytes = Arc::new(AtomicUsize::new(0));
    let sender = OutboxSender {
        frames: tx,
        queued_bytes: Arc::clone(&queued_bytes),
        max_frames: max_frames.max(1),
        max_bytes,
    };
    (sender, OutboxReceiver { frames: rx, queued_bytes })
}

impl OutboxSender {
    pub(crate) fn push(&self, frame: Utf8Bytes, ephemeral: bool) -> Pushed {
        let len = frame.len();
        let queued = self.queued_bytes.load(Ordering::Acquire);
        let used_frames = self.max_frames - self.frames.capacity();
        if ephemeral
            && (used_frames * 2 >= self.max_frames || queued.saturating_mul(2) >= self.max_bytes)
        {
            return Pushed::Skipped;
        }
        if queued > 0 && queued.saturating_add(len) > self.max_bytes {
            return Pushed::Full;
        }
        self.queued_bytes.fetch_add(len, Ordering::AcqRel);
        match self.frames.try_send(frame) {
            Ok(()) => Pushed::Queued,
            Err(err) => {
                self.queued_bytes.fetch_sub(len, Ordering::AcqRel);
                match err {
                    mpsc::error::TrySendError::Full(_) => Pushed::Full,
                    mpsc::error::TrySendError::Closed(_) => Pushed::Closed,
                }
            }
        }
    }
}

impl OutboxReceiver {
    /// The next frame; `None` once the hub dropped its end.
    pub(crate) async fn recv(&mut self) -> Option<Utf8Bytes> {
        let frame = self.frames.recv().await?;
        self.queued_bytes.fetch_sub(frame.len(), Ordering::AcqRel);
        Some(frame)
    }

    /// The next frame if one is queued already.
    pub(crate) fn try_recv(&mut self) -> Option<Utf8Bytes> {
        let frame = self.frames.try_recv().ok()?;
        self.queued_bytes.fetch_sub(frame.len(), Ordering::AcqRel);
        Some(frame)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(len: usize) -> Utf8Bytes {
        Utf8Bytes::from("x".repeat(len))
    }

    #[test]
    fn ephemeral_frames_go_first_then_the_queue_reports_full() {
        let (tx, mut rx) = outbox(4, 1_000_000);
        assert_eq!(tx.push(frame(1), true), Pushed::Queued);
        assert_eq!(tx.push(frame(1), false), Pushed::Queued);
        assert_eq!(tx.push(frame(1), true), Pushed::Skipped, "half full: typing is dropped");
        assert_eq!(tx.push(frame(1), false), Pushed::Queued);
        assert_eq!(tx.push(frame(1), false), Pushed::Queued);
        assert_eq!(tx.push(frame(1), false), Pushed::Full);
        assert!(rx.try_recv().is_some());
        assert_eq!(tx.push(frame(1), false), Pushed::Queued, "room again once drained");
    }

    #[test]
    fn bytes_are_bounded_but_one_large_frame_fits_an_empty_queue() {
        let (tx, mut rx) = outbox(100, 100);
        assert_eq!(tx.push(frame(500), false), Pushed::Queued);
        assert_eq!(tx.push(frame(1), false), Pushed::Full);
        assert_eq!(rx.try_recv().map(|f| f.len()), Some(500));
        assert_eq!(tx.push(frame(60), false), Pushed::Queued);
        assert_eq!(tx.push(frame(30), true), Pushed::Skipped);
        assert_eq!(tx.push(frame(30), false), Pushed::Queued);
        assert_eq!(tx.push(frame(11), false), Pushed::Full);
    }

    #[test]
    fn a_gone_connection_is_closed() {
        let (tx, rx) = outbox(4, 100);
        drop(rx);
        assert_eq!(tx.push(frame(1), false), Pushed::Closed);
    }
}
