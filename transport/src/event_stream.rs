//! The HTTP fallback, for clients whose WebSocket cannot get through (a
//! proxy that drops `Upgrade`, an antivirus, a captive portal): one long
//! `GET` answered as Server-Sent Events carries what the server sends, and
//! `POST`s carry what the client sends. To the server it is a connection
//! like a WebSocket one ([`crate::Socket`]): the same messages in, the same
//! [`Outgoing`] queue out, only framed as events.
//!
//! The stream's first event, `stream`, names it (not `open`, which
//! `EventSource` dispatches itself); each `POST` to the same path
//! with `?stream=NAME&seq=N` carries a batch of text messages (one per
//! line) or one binary message (`application/octet-stream`). `seq` counts
//! the client's requests from 0: at most one is in flight, one sent again
//! (its answer was lost) is taken once, and one that skips ahead is refused
//! with `409` (in a cluster, after waiting a while for the ones before it,
//! which may still be on their way through another server). Every request
//! counts as a sign of life, so a client answers the `ping` event with an
//! empty one.
//!
//! A request that reaches a server other than the one holding its stream
//! is handed to [`Forward`], if the server set one (in a cluster, the node
//! named in the stream's name takes it).

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_util::Stream;
use tokio::io::{AsyncRead, ReadBuf};
use tokio::sync::mpsc;
use tungstenite::protocol::CloseFrame;
use tungstenite::{Message, Utf8Bytes};

use crate::outgoing::{Outgoing, Pushed, SharedStream};

/// How long a request that came ahead of its turn waits, in a cluster, for
/// the ones before it.
const AHEAD_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// Messages a stream's `POST`s may have handed over and its connection not
/// yet taken; a request waits for room, so a client cannot outrun the
/// server by posting faster than it reads.
const INBOX_MESSAGES: usize = 64;

/// Where a request for a stream this server does not hold goes.
pub trait Forward: Send + Sync + fmt::Debug {
    /// Hands `posted`, the `seq`th request of `stream`, to whoever holds
    /// the stream, and says what became of it.
    fn forward(
        &self,
        stream: String,
        seq: u64,
        posted: Posted,
    ) -> Pin<Box<dyn Future<Output = Delivered> + Send>>;
}

/// A request's body, as the client sent it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Posted {
    /// One binary message (`application/octet-stream`), not lines of text.
    pub binary: bool,
    /// The body.
    pub body: Bytes,
    /// The client says goodbye after the body's messages, with this close
    /// code (`&close=1000`).
    pub close: Option<u16>,
}

/// What became of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivered {
    /// Its messages were handed to the connection.
    Taken,
    /// It was taken before (the client sent it again): nothing was done.
    Duplicate,
    /// It skipped ahead of the next expected request: refused.
    OutOfOrder {
        /// The `seq` expected.
        expected: u64,
    },
    /// No such stream (it ended, or never was).
    Unknown,
    /// It could not be handed to the server holding the stream now (the
    /// way between servers is down): the client may send it again.
    Unavailable,
    /// The body is not what it says: text that is not UTF-8.
    Malformed,
    /// A message in it is larger than the path takes.
    TooLarge,
}

/// The event streams open on this server, by name.
#[derive(Debug, Default)]
pub struct Streams {
    /// What this server's stream names start with, so that another
    /// server can tell where a stream lives.
    node: String,
    open: Mutex<HashMap<String, Arc<Inbox>>>,
    forward: Option<Arc<dyn Forward>>,
}

/// Where a stream's requests put what they carry.
#[derive(Debug)]
struct Inbox {
    messages: mpsc::Sender<Message>,
    outgoing: Arc<Outgoing>,
    /// The `seq` of the next request; held while one is handed over, so
    /// requests are taken one at a time, in order.
    next: tokio::sync::Mutex<u64>,
    /// Told when `next` moves on.
    turn: tokio::sync::Notify,
}

impl Streams {
    /// The streams of a server whose stream names start with `node` (may
    /// be empty), handing requests for other servers' streams to
    /// `forward`.
    pub fn new(node: impl Into<String>, forward: Option<Arc<dyn Forward>>) -> Self {
        Self { node: node.into(), open: Mutex::default(), forward }
    }

    /// Takes the `seq`th request of `stream`, whose messages may be up to
    /// `limit` bytes each: hands its messages to the stream's connection,
    /// or to [`Forward`] when another server holds it.
    pub async fn post(&self, stream: String, seq: u64, posted: Posted, limit: usize) -> Delivered {
        let messages = match messages(posted.clone(), limit) {
            Ok(messages) => messages,
            Err(refused) => return refused,
        };
        let inbox = self.lock().get(&stream).cloned();
        // In a cluster an earlier request may be on its way here through
        // another server (answered there once handed on): one that comes
        // ahead of it waits its turn. Alone, nothing can be: refused now.
        let until = self.forward.as_ref().map(|_| tokio::time::Instant::now() + AHEAD_WAIT);
        match inbox {
            Some(inbox) => inbox.take(seq, messages, until).await,
            None => match &self.forward {
                Some(forward) if !stream.starts_with(&self.node) => {
                    forward.forward(stream, seq, posted).await
                }
                _ => Delivered::Unknown,
            },
        }
    }

    /// Takes the `seq`th request of `stream` as another server handed it
    /// over (checked there): one that came ahead of the requests before it
    /// waits for them, up to `wait`.
    pub async fn post_in_turn(
        &self,
        stream: String,
        seq: u64,
        posted: Posted,
        wait: std::time::Duration,
    ) -> Delivered {
        let inbox = self.lock().get(&stream).cloned();
        let (Some(inbox), Ok(messages)) = (inbox, messages(posted, usize::MAX)) else {
            return Delivered::Unknown;
        };
        inbox.take(seq, messages, Some(tokio::time::Instant::now() + wait)).await
    }

    /// Opens a stream writing to `outgoing`; `raw` reads the connection
    /// (only to see it end).
    pub(crate) fn open(
        self: &Arc<Self>,
        outgoing: &Arc<Outgoing>,
        raw: SharedStream,
    ) -> EventStream {
        let (messages, incoming) = mpsc::channel(INBOX_MESSAGES);
        let name = format!("{}{:032x}", self.node, rand::random::<u128>());
        let next = tokio::sync::Mutex::new(0);
        let turn = tokio::sync::Notify::new();
        let inbox = Inbox { messages, outgoing: Arc::clone(outgoing), next, turn };
        self.lock().insert(name.clone(), Arc::new(inbox));
        EventStream { name, incoming, raw, streams: Arc::clone(self), ended: false }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Inbox>>> {
        // A map of handles: a panic elsewhere cannot leave it half-changed.
        self.open.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Inbox {
    /// Hands over the `seq`th request's `messages`, in turn: one ahead of
    /// its turn waits until `until` if given, else is refused.
    async fn take(
        &self,
        seq: u64,
        messages: Vec<Message>,
        until: Option<tokio::time::Instant>,
    ) -> Delivered {
        let mut next = loop {
            // Registered before looking, so a turn that passes in between
            // is not missed.
            let turn = self.turn.notified();
            tokio::pin!(turn);
            turn.as_mut().enable();
            let next = self.next.lock().await;
            match until {
                Some(until) if seq > *next => {
                    drop(next);
                    if tokio::time::timeout_at(until, turn).await.is_err() {
                        return Delivered::OutOfOrder { expected: *self.next.lock().await };
                    }
                }
                _ => break next,
            }
        };
        if seq != *next {
            return match seq < *next {
                true => {
                    self.outgoing.heard();
                    Delivered::Duplicate
                }
                false => Delivered::OutOfOrder { expected: *next },
            };
        }
        self.outgoing.heard();
        for message in messages {
            if self.messages.send(message).await.is_err() {
                return Delivered::Unknown;
            }
        }
        *next += 1;
        self.turn.notify_waiters();
        Delivered::Taken
    }
}

/// The messages a request carries: one binary message, or one text
/// message per non-empty line.
fn messages(
    Posted { binary, body, close }: Posted,
    limit: usize,
) -> Result<Vec<Message>, Delivered> {
    let close =
        close.map(|code| Message::Close(Some(CloseFrame { code: code.into(), reason: "".into() })));
    if binary {
        return match body.len() <= limit {
            true => Ok([Message::Binary(body)].into_iter().chain(close).collect()),
            false => Err(Delivered::TooLarge),
        };
    }
    if std::str::from_utf8(&body).is_err() {
        return Err(Delivered::Malformed);
    }
    let mut messages = Vec::new();
    let mut start = 0;
    for end in
        body.iter().enumerate().filter(|(_, b)| **b == b'\n').map(|(at, _)| at).chain([body.len()])
    {
        let line = body.slice(start..end);
        start = end + 1;
        let line = match line.strip_suffix(b"\r") {
            Some(trimmed) => body.slice_ref(trimmed),
            None => line,
        };
        if line.is_empty() {
            continue;
        }
        if line.len() > limit {
            return Err(Delivered::TooLarge);
        }
        // Cut at line ends of valid UTF-8: each line is valid too.
        let text = Utf8Bytes::try_from(line).map_err(|_| Delivered::Malformed)?;
        messages.push(Message::Text(text));
    }
    messages.extend(close);
    Ok(messages)
}

/// The server's side of one event stream: the messages its requests
/// carry, and the end of its connection.
#[derive(Debug)]
pub struct EventStream {
    name: String,
    incoming: mpsc::Receiver<Message>,
    raw: SharedStream,
    streams: Arc<Streams>,
    ended: bool,
}

impl EventStream {
    /// The stream's name, which its requests give.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Queues `message` (text or binary; a close closes) and writes it out.
    ///
    /// # Errors
    /// The write failed, or the connection is closed.
    pub async fn send(&mut self, message: Message) -> io::Result<()> {
        let outgoing = Arc::clone(self.raw.outgoing());
        let pushed = match message {
            Message::Text(text) => outgoing.push_text(text, false),
            Message::Binary(bytes) => outgoing.push_binary(bytes, false),
            Message::Close(frame) => return self.close(frame).await,
            Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => return Ok(()),
        };
        match pushed {
            Pushed::Full => Err(io::Error::other("outgoing queue full")),
            Pushed::Closed => Err(io::ErrorKind::NotConnected.into()),
            Pushed::First | Pushed::Queued | Pushed::Skipped => outgoing.unstall().await,
        }
    }

    /// Tells the client the connection is over, with `frame`'s code and
    /// reason (as a `close` event whose data is `CODE REASON`), and writes
    /// what is queued.
    ///
    /// # Errors
    /// The write failed.
    pub async fn close(&mut self, frame: Option<CloseFrame>) -> io::Result<()> {
        let outgoing = Arc::clone(self.raw.outgoing());
        let data = match &frame {
            Some(frame) => format!("{} {}", u16::from(frame.code), frame.reason),
            None => "1005".to_owned(),
        };
        self.ended = true;
        self.streams.lock().remove(&self.name);
        outgoing.push_event("close", &data)?;
        outgoing.unstall().await
    }
}

impl Drop for EventStream {
    fn drop(&mut self) {
        self.streams.lock().remove(&self.name);
    }
}

impl Stream for EventStream {
    type Item = Result<Message, tungstenite::Error>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if this.ended {
            return Poll::Ready(None);
        }
        if let Poll::Ready(Some(message)) = this.incoming.poll_recv(cx) {
            return Poll::Ready(Some(Ok(message)));
        }
        // The client sends nothing on the stream itself: reading only
        // finds out when it goes.
        let mut scratch = [0u8; 64];
        let mut buf = ReadBuf::new(&mut scratch);
        let read = match Pin::new(&mut this.raw).poll_read(cx, &mut buf) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(Ok(())) if buf.filled().is_empty() => None,
            Poll::Ready(Ok(())) => Some(Err(tungstenite::Error::Io(io::Error::new(
                io::ErrorKind::InvalidData,
                "the client sent bytes on its event stream",
            )))),
            Poll::Ready(Err(err)) => Some(Err(tungstenite::Error::Io(err))),
        };
        this.ended = true;
        Poll::Ready(read)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(body: &str) -> Posted {
        Posted { binary: false, body: Bytes::copy_from_slice(body.as_bytes()), close: None }
    }

    #[test]
    fn a_text_body_is_one_message_per_line_and_a_binary_one_is_one_message() {
        let got = messages(text("{\"a\":1}\n\n{\"b\":\"é\"}\r\n{\"c\":3}"), 100).unwrap();
        assert_eq!(
            got,
            [
                Message::text("{\"a\":1}"),
                Message::text("{\"b\":\"é\"}"),
                Message::text("{\"c\":3}")
            ]
        );
        assert_eq!(messages(text(""), 100).unwrap(), []);
        let binary = Posted { binary: true, body: Bytes::from_static(b"\n\xff\n"), close: None };
        assert_eq!(messages(binary, 100).unwrap(), [Message::binary(&b"\n\xff\n"[..])]);
        let goodbye = Posted { close: Some(1000), ..text("{}") };
        let frame = CloseFrame { code: 1000.into(), reason: "".into() };
        assert_eq!(
            messages(goodbye, 100).unwrap(),
            [Message::text("{}"), Message::Close(Some(frame))]
        );
    }

    #[test]
    fn bodies_that_are_not_what_they_say_or_too_large_are_refused() {
        let bad = Posted { body: Bytes::from_static(b"ok\n\xff\xfe"), ..text("") };
        assert_eq!(messages(bad, 100), Err(Delivered::Malformed));
        assert_eq!(messages(text("short\n0123456789"), 9), Err(Delivered::TooLarge));
        assert_eq!(messages(text("123456789\n"), 9).map(|m| m.len()), Ok(1), "a line of the limit");
        let binary = Posted { binary: true, body: Bytes::from_static(&[0; 10]), close: None };
        assert_eq!(messages(binary, 9), Err(Delivered::TooLarge));
    }
}
