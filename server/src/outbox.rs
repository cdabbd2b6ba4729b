//! A connection's outbound queue, bounded in frames and in bytes.
//!
//! The hub pushes without waiting; the connection task drains everything
//! queued at once and writes it in one batch. When the queue is half full,
//! ephemeral frames (typing notices) are dropped first, since losing one
//! costs nothing; when a chat frame would not fit, the push fails and the hub
//! closes the connection as too slow (4008), so the client resumes from its
//! last `seq` instead of silently missing messages.
//!
//! It is a `VecDeque` behind a mutex with a `Notify`, rather than a channel,
//! because an idle connection then holds no queue memory at all: the deque
//! allocates on its first frame. The hub is the only producer and the
//! connection task the only consumer, so the lock is all but uncontended.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use chat_transport::tungstenite::Utf8Bytes;
use tokio::sync::Notify;

#[derive(Debug, Default)]
struct Queue {
    frames: VecDeque<Utf8Bytes>,
    bytes: usize,
    /// The hub dropped its end: no more frames will come.
    sender_gone: bool,
    /// The connection task dropped its end: frames would never be read.
    receiver_gone: bool,
}

#[derive(Debug, Default)]
struct Shared {
    queue: Mutex<Queue>,
    ready: Notify,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        // The queue holds plain data; a panic elsewhere cannot break it.
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The hub's end.
#[derive(Debug)]
pub(crate) struct OutboxSender {
    shared: Arc<Shared>,
    max_frames: usize,
    max_bytes: usize,
}

/// The connection task's end.
#[derive(Debug)]
pub(crate) struct OutboxReceiver {
    shared: Arc<Shared>,
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
    let shared = Arc::new(Shared::default());
    let sender =
        OutboxSender { shared: Arc::clone(&shared), max_frames: max_frames.max(1), max_bytes };
    (sender, OutboxReceiver { shared })
}

impl OutboxSender {
    pub(crate) fn push(&self, frame: Utf8Bytes, ephemeral: bool) -> Pushed {
        let mut queue = self.shared.lock();
        if queue.receiver_gone {
            return Pushed::Closed;
        }
        let len = frame.len();
        let half_used = queue.frames.len() * 2 >= self.max_frames
            || queue.bytes.saturating_mul(2) >= self.max_bytes;
        if ephemeral && half_used {
            return Pushed::Skipped;
        }
        let too_many_bytes = queue.bytes > 0 && queue.bytes.saturating_add(len) > self.max_bytes;
        if queue.frames.len() >= self.max_frames || too_many_bytes {
            return Pushed::Full;
        }
        queue.bytes += len;
        queue.frames.push_back(frame);
        drop(queue);
        self.shared.ready.notify_one();
        Pushed::Queued
    }
}

impl Drop for OutboxSender {
    fn drop(&mut self) {
        self.shared.lock().sender_gone = true;
        self.shared.ready.notify_one();
    }
}

impl OutboxReceiver {
    /// Everything queued, oldest first, waiting until there is something;
    /// `None` once the hub dropped its end and the queue is empty.
    pub(crate) async fn recv_all(&mut self) -> Option<VecDeque<Utf8Bytes>> {
        loop {
            // Registered before looking, so a push in between is not missed
            // (`notify_one` also keeps a permit for a later waiter).
            let ready = self.shared.ready.notified();
            {
                let mut queue = self.shared.lock();
                if !queue.frames.is_empty() {
                    queue.bytes = 0;
                    return Some(std::mem::take(&mut queue.frames));
                }
                if queue.sender_gone {
                    return None;
                }
            }
            ready.await;
        }
    }

    /// Everything queued right now, without waiting.
    pub(crate) fn try_recv_all(&mut self) -> VecDeque<Utf8Bytes> {
        let mut queue = self.shared.lock();
        queue.bytes = 0;
        std::mem::take(&mut queue.frames)
    }
}

impl Drop for OutboxReceiver {
    fn drop(&mut self) {
        let mut queue = self.shared.lock();
        queue.receiver_gone = true;
        queue.frames.clear();
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
        assert_eq!(rx.try_recv_all().len(), 4);
        assert_eq!(tx.push(frame(1), false), Pushed::Queued, "room again once drained");
    }

    #[test]
    fn bytes_are_bounded_but_one_large_frame_fits_an_empty_queue() {
        let (tx, mut rx) = outbox(100, 100);
        assert_eq!(tx.push(frame(500), false), Pushed::Queued);
        assert_eq!(tx.push(frame(1), false), Pushed::Full);
        assert_eq!(rx.try_recv_all().front().map(|f| f.len()), Some(500));
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

    #[tokio::test]
    async fn the_receiver_waits_for_frames() {
        let (tx, mut rx) = outbox(4, 100);
        let waiting = tokio::spawn(async move { rx.recv_all().await.map(|frames| frames.len()) });
        tokio::task::yield_now().await;
        assert_eq!(tx.push(frame(1), false), Pushed::Queued);
        assert_eq!(waiting.await.unwrap(), Some(1));
    }

    #[tokio::test]
    async fn the_receiver_drains_then_ends_with_the_sender() {
        let (tx, mut rx) = outbox(4, 100);
        assert_eq!(tx.push(frame(1), false), Pushed::Queued);
        drop(tx);
        assert_eq!(rx.recv_all().await.map(|frames| frames.len()), Some(1));
        assert_eq!(rx.recv_all().await.map(|frames| frames.len()), None);
    }
}
