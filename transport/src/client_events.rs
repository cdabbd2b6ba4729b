//! The HTTP fallback, client side: for a client whose WebSocket cannot get
//! through (a proxy that drops `Upgrade`). An event stream carries what the
//! server sends; a task posts what the client sends, one request at a
//! time, each holding everything queued meanwhile. To its user it reads
//! and writes [`Message`]s, as a WebSocket does ([`ClientSocket`]).

use std::collections::VecDeque;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use base64::Engine;
use bytes::{Bytes, BytesMut};
use futures_util::{SinkExt, Stream, StreamExt};
use http::{StatusCode, Uri};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt, ReadBuf};
use tokio::sync::{mpsc, oneshot};
use tungstenite::Message;
use tungstenite::protocol::CloseFrame;

use tokio_tungstenite::WebSocketStream;

use crate::connect::{AnswerHead, ClientStream, ConnectError, dial, read_answer_head};
use crate::{TransportConfig, WebSocket};

/// The most text one request carries (several messages): the server takes
/// four full-size messages in one.
const MAX_BATCH: usize = 64 * 1024;

/// The largest event the client takes (a server message, or its base64).
const MAX_EVENT: usize = 16 << 20;

/// How often a request that failed on the way is tried again (the same
/// request: the server takes it once).
const POST_ATTEMPTS: u32 = 3;

/// A client's connection to the server over either transport.
#[derive(Debug)]
pub enum ClientSocket {
    /// A WebSocket.
    WebSocket(Box<WebSocket>),
    /// The HTTP fallback.
    EventStream(Box<ClientEventStream>),
}

impl ClientSocket {
    /// Sends `message` (text or binary; a close closes).
    ///
    /// # Errors
    /// The connection is gone.
    pub async fn send(&mut self, message: Message) -> Result<(), tungstenite::Error> {
        match self {
            Self::WebSocket(socket) => socket.send(message).await,
            Self::EventStream(stream) => stream.send(message),
        }
    }

    /// Says goodbye with `frame` and lets go of the connection.
    ///
    /// # Errors
    /// The connection is gone.
    pub async fn close(&mut self, frame: Option<CloseFrame>) -> Result<(), tungstenite::Error> {
        match self {
            Self::WebSocket(socket) => WebSocketStream::close(socket, frame).await,
            Self::EventStream(stream) => stream.send(Message::Close(frame)),
        }
    }

    /// The transport's name: `websocket` or `sse`.
    pub fn transport(&self) -> &'static str {
        match self {
            Self::WebSocket(_) => "websocket",
            Self::EventStream(_) => "sse",
        }
    }
}

impl Stream for ClientSocket {
    type Item = Result<Message, tungstenite::Error>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        match self.get_mut() {
            Self::WebSocket(socket) => socket.poll_next_unpin(cx),
            Self::EventStream(stream) => stream.poll_next_unpin(cx),
        }
    }
}

/// Opens the HTTP fallback to `url` (`ws://`, `wss://`, `http://` or
/// `https://`, the same path as the WebSocket's): an event stream, and the
/// task that posts to it.
///
/// # Errors
/// The server cannot be reached, refused the stream (its status and
/// words), or answered something else than an event stream.
pub async fn connect_event_stream(
    url: &str,
    config: &TransportConfig,
) -> Result<ClientEventStream, ConnectError> {
    let (uri, mut stream) = dial(url, config).await?;
    let io = |source: io::Error| ConnectError::Io { addr: url.to_owned(), source };
    let target = Target::of(&uri);
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nAccept: text/event-stream\r\nCache-Control: no-cache\r\n\r\n",
        target.path, target.host
    );
    stream.write_all(request.as_bytes()).await.map_err(io)?;
    let AnswerHead { status, content_type, rest, .. } = read_answer_head(&mut stream, url).await?;
    if status != StatusCode::OK {
        let body = String::from_utf8_lossy(rest.get(..512).unwrap_or(&rest)).into_owned();
        return Err(ConnectError::Refused { status, body });
    }
    if !content_type.starts_with("text/event-stream") {
        return Err(ConnectError::Handshake(format!("not an event stream ({content_type})")));
    }
    let mut events = Events::default();
    events.push(&rest);
    // The first event names the stream.
    let name = loop {
        if let Some(event) = events.next_event().map_err(io)? {
            match event.name.as_str() {
                "stream" => break event.data,
                other => {
                    return Err(ConnectError::Handshake(format!(
                        "the stream began with {other:?}"
                    )));
                }
            }
        }
        let mut chunk = [0u8; 4096];
        let read = stream.read(&mut chunk).await.map_err(io)?;
        if read == 0 {
            return Err(ConnectError::Handshake("the stream ended before it opened".into()));
        }
        events.push(chunk.get(..read).unwrap_or_default());
    };
    let (outbound, queued) = mpsc::unbounded_channel();
    let (failed_tx, failed) = oneshot::channel();
    let poster = Poster { url: url.to_owned(), target, name, config: config.clone() };
    tokio::spawn(poster.run(queued, failed_tx));
    Ok(ClientEventStream { stream, events, outbound, failed, ready: VecDeque::new(), ended: false })
}

/// The client's side of an event stream.
#[derive(Debug)]
pub struct ClientEventStream {
    stream: ClientStream,
    events: Events,
    /// To the task that posts.
    outbound: mpsc::UnboundedSender<Message>,
    /// The posting task gave up, saying why.
    failed: oneshot::Receiver<String>,
    ready: VecDeque<Message>,
    ended: bool,
}

impl ClientEventStream {
    fn send(&mut self, message: Message) -> Result<(), tungstenite::Error> {
        self.outbound.send(message).map_err(|_| tungstenite::Error::AlreadyClosed)
    }

    /// What an event says: a message, or a ping answered here.
    fn message_of(&mut self, event: Event) -> Result<Option<Message>, tungstenite::Error> {
        Ok(match event.name.as_str() {
            "message" => Some(Message::text(event.data)),
            "binary" => {
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(event.data.trim())
                    .map_err(|err| invalid(format!("a binary event that is not base64: {err}")))?;
                Some(Message::binary(bytes))
            }
            "ping" => {
                // An empty request answers it.
                self.send(Message::text(""))?;
                None
            }
            "close" => {
                let (code, reason) = event.data.split_once(' ').unwrap_or((&event.data, ""));
                let code = code.trim().parse::<u16>().unwrap_or(1005);
                Some(Message::Close(Some(CloseFrame {
                    code: code.into(),
                    reason: reason.to_owned().into(),
                })))
            }
            _ => None,
        })
    }
}

impl Stream for ClientEventStream {
    type Item = Result<Message, tungstenite::Error>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        loop {
            if let Some(message) = this.ready.pop_front() {
                return Poll::Ready(Some(Ok(message)));
            }
            if this.ended {
                return Poll::Ready(None);
            }
            if let Poll::Ready(why) = Pin::new(&mut this.failed).poll(cx) {
                this.ended = true;
                let why = why.unwrap_or_else(|_| "the connection was closed".to_owned());
                return Poll::Ready(Some(Err(invalid(why))));
            }
            match this.events.next_event() {
                Ok(Some(event)) => {
                    match this.message_of(event) {
                        Ok(Some(message)) => this.ready.push_back(message),
                        Ok(None) => {}
                        Err(err) => return Poll::Ready(Some(Err(err))),
                    }
                    continue;
                }
                Ok(None) => {}
                Err(err) => {
                    this.ended = true;
                    return Poll::Ready(Some(Err(tungstenite::Error::Io(err))));
                }
            }
            let mut chunk = [0u8; 8192];
            let mut buf = ReadBuf::new(&mut chunk);
            match ready!(Pin::new(&mut this.stream).poll_read(cx, &mut buf)) {
                Ok(()) if buf.filled().is_empty() => {
                    this.ended = true;
                    return Poll::Ready(None);
                }
                Ok(()) => this.events.push(buf.filled()),
                Err(err) => {
                    this.ended = true;
                    return Poll::Ready(Some(Err(tungstenite::Error::Io(err))));
                }
            }
        }
    }
}

fn invalid(why: impl Into<String>) -> tungstenite::Error {
    tungstenite::Error::Io(io::Error::new(io::ErrorKind::InvalidData, why.into()))
}

/// Where requests go: the path (with its query) and the `Host`.
#[derive(Debug, Clone)]
struct Target {
    path: String,
    host: String,
}

impl Target {
    fn of(uri: &Uri) -> Self {
        let path = uri.path_and_query().map_or("/", |p| p.as_str()).to_owned();
        let host = uri.authority().map(|a| a.as_str().to_owned()).unwrap_or_default();
        Self { path, host }
    }
}

/// Posts what the client sends, one request at a time.
struct Poster {
    url: String,
    target: Target,
    name: String,
    config: TransportConfig,
}

impl Poster {
    async fn run(
        self,
        mut queued: mpsc::UnboundedReceiver<Message>,
        failed: oneshot::Sender<String>,
    ) {
        let mut seq = 0u64;
        let mut held = None;
        loop {
            let first = match held.take() {
                Some(first) => first,
                None => match queued.recv().await {
                    Some(first) => first,
                    None => return,
                },
            };
            let (body, binary, close) = match first {
                Message::Binary(bytes) => (bytes.to_vec(), true, None),
                Message::Close(frame) => {
                    (Vec::new(), false, Some(frame.map_or(1000, |f| u16::from(f.code))))
                }
                Message::Text(text) => {
                    // Everything queued meanwhile goes in the same request.
                    let mut body = text.as_bytes().to_vec();
                    while body.len() < MAX_BATCH {
                        match queued.try_recv() {
                            Ok(Message::Text(more)) => {
                                body.push(b'\n');
                                body.extend_from_slice(more.as_bytes());
                            }
                            Ok(other) => {
                                held = Some(other);
                                break;
                            }
                            Err(_) => break,
                        }
                    }
                    (body, false, None)
                }
                _ => continue,
            };
            if let Err(why) = self.post(seq, &body, binary, close).await {
                let _ = failed.send(why);
                return;
            }
            if close.is_some() {
                return;
            }
            seq += 1;
        }
    }

    /// Posts one request, trying again when it failed on the way.
    async fn post(
        &self,
        seq: u64,
        body: &[u8],
        binary: bool,
        close: Option<u16>,
    ) -> Result<(), String> {
        let mut path = format!(
            "{}{}stream={}&seq={seq}",
            self.target.path,
            if self.target.path.contains('?') { '&' } else { '?' },
            self.name
        );
        if let Some(code) = close {
            path.push_str(&format!("&close={code}"));
        }
        let content_type =
            if binary { "application/octet-stream" } else { "text/plain; charset=utf-8" };
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            self.target.host,
            body.len()
        );
        let mut last = String::new();
        for _ in 0..POST_ATTEMPTS {
            let attempt = async {
                let (_, mut stream) =
                    dial(&self.url, &self.config).await.map_err(|err| err.to_string())?;
                stream.write_all(head.as_bytes()).await.map_err(|err| err.to_string())?;
                stream.write_all(body).await.map_err(|err| err.to_string())?;
                stream.flush().await.map_err(|err| err.to_string())?;
                let head = read_answer_head(&mut stream, &self.url)
                    .await
                    .map_err(|err| err.to_string())?;
                Ok::<_, String>(head.status)
            };
            match tokio::time::timeout(self.config.handshake_timeout, attempt).await {
                Ok(Ok(StatusCode::OK)) => return Ok(()),
                Ok(Ok(status)) => return Err(format!("the server refused a post: {status}")),
                Ok(Err(why)) => last = why,
                Err(_) => last = "a post timed out".to_owned(),
            }
        }
        Err(last)
    }
}

/// One event of an event stream.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Event {
    /// `message` unless it said otherwise.
    name: String,
    data: String,
}

/// Parses an event stream as its bytes arrive (the WHATWG rules the
/// server's events need: `event:`, `data:`, comments, any line ending).
#[derive(Debug, Default)]
struct Events {
    buffer: BytesMut,
    name: Option<String>,
    data: Option<String>,
}

impl Events {
    fn push(&mut self, bytes: &[u8]) {
        self.buffer.extend_from_slice(bytes);
    }

    /// The next complete event, if one arrived.
    ///
    /// # Errors
    /// An event grew past [`MAX_EVENT`], or is not UTF-8.
    fn next_event(&mut self) -> io::Result<Option<Event>> {
        loop {
            let Some(end) = self.buffer.iter().position(|b| matches!(b, b'\n' | b'\r')) else {
                if self.buffer.len() > MAX_EVENT {
                    return Err(io::Error::new(io::ErrorKind::InvalidData, "an event too large"));
                }
                return Ok(None);
            };
            // A \r at the very end may be the first half of \r\n: wait.
            if self.buffer.get(end) == Some(&b'\r') && end + 1 == self.buffer.len() {
                return Ok(None);
            }
            let line: Bytes = self.buffer.split_to(end).freeze();
            let ending = if self.buffer.starts_with(b"\r\n") { 2 } else { 1 };
            let _ = self.buffer.split_to(ending);
            let line = std::str::from_utf8(&line).map_err(|_| {
                io::Error::new(io::ErrorKind::InvalidData, "an event that is not UTF-8")
            })?;
            if line.is_empty() {
                if let Some(mut data) = self.data.take() {
                    data.pop();
                    let name = self.name.take().unwrap_or_else(|| "message".to_owned());
                    return Ok(Some(Event { name, data }));
                }
                self.name = None;
                continue;
            }
            let (field, value) = line.split_once(':').unwrap_or((line, ""));
            let value = value.strip_prefix(' ').unwrap_or(value);
            match field {
                "event" => self.name = Some(value.to_owned()),
                "data" => {
                    let data = self.data.get_or_insert_with(String::new);
                    data.push_str(value);
                    data.push('\n');
                }
                // Comments (heartbeats), `id:`, `retry:`: nothing to do.
                _ => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(events: &mut Events) -> Vec<(String, String)> {
        std::iter::from_fn(|| events.next_event().unwrap()).map(|e| (e.name, e.data)).collect()
    }

    #[test]
    fn events_are_parsed_across_reads_and_line_endings() {
        let mut events = Events::default();
        let stream = "event: stream\ndata: abc\n\n: heartbeat\n\ndata: {\"a\":1}\r\n\r\n\
                      data: one\rdata:two\n\nevent: close\ndata: 4008 too slow\n\n";
        // A byte at a time: every split point, \r\n halves included.
        let mut got = Vec::new();
        for byte in stream.as_bytes() {
            events.push(&[*byte]);
            got.extend(all(&mut events));
        }
        let expected = [
            ("stream", "abc"),
            ("message", "{\"a\":1}"),
            ("message", "one\ntwo"),
            ("close", "4008 too slow"),
        ];
        let expected: Vec<_> =
            expected.iter().map(|(n, d)| ((*n).to_owned(), (*d).to_owned())).collect();
        assert_eq!(got, expected);
    }

    #[test]
    fn an_endless_event_is_an_error_not_a_memory_leak() {
        let mut events = Events::default();
        events.push(b"data: ");
        events.push(&vec![b'x'; MAX_EVENT + 1]);
        assert!(events.next_event().is_err());
    }
}
