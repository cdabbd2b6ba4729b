//! A real server on 127.0.0.1:0 and WebSocket clients that talk to it.

use std::net::SocketAddr;
use std::time::Duration;

use chat_server::{MemoryStore, ServerConfig, Store};
use chat_transport::tungstenite::Message;
use chat_transport::tungstenite::protocol::CloseFrame;
use chat_transport::tungstenite::protocol::frame::coding::CloseCode;
use chat_transport::{ClientSocket, TransportConfig, connect};
use futures_util::StreamExt;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// How long any single wait may take before the test fails.
pub const WAIT: Duration = Duration::from_secs(10);

pub struct Server {
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<anyhow::Result<()>>,
}

impl Server {
    /// A server keeping history in memory only.
    pub async fn start(config: ServerConfig) -> Self {
        Self::start_with(config, Box::new(MemoryStore::new())).await
    }

    /// A server on `store`; `addr` picks the address (port 0 for any).
    pub async fn start_with(config: ServerConfig, store: Box<dyn Store>) -> Self {
        Self::start_on("127.0.0.1:0", config, store).await
    }

    pub async fn start_on(addr: &str, config: ServerConfig, store: Box<dyn Store>) -> Self {
        let listener = TcpListener::bind(addr).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(chat_server::run(listener, config, store, async {
            let _ = stopped.await;
        }));
        Self { addr, stop: Some(stop), task }
    }

    pub fn url(&self) -> String {
        format!("ws://{}/ws", self.addr)
    }

    /// Triggers shutdown and waits for `run` to return.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let result = tokio::time::timeout(WAIT, &mut self.task).await.expect("shutdown in time");
        result.unwrap().unwrap();
    }
}

/// A server where a client that stops reading fills its queue fast (16
/// frames of up to 60 KB, no rate limits in the way) and resumes by paging
/// back 40 at a time through history it may pull as fast as it likes (17 MB
/// at once is far past the default, which is not what such tests are about).
pub fn slow_consumer_config() -> ServerConfig {
    let mut config = ServerConfig::default();
    config.transport.max_queued_frames = 16;
    config.chat.max_text_bytes = 60_000;
    config.chat.messages_per_sec = 100_000;
    config.chat.messages_burst = 100_000;
    config.frames_per_sec = 100_000;
    config.frames_burst = 100_000;
    config.chat.resume_max = 40;
    config.chat.history_page_max = 40;
    config.chat.history_bytes_per_conn = chat_core::Rate::per_sec(u32::MAX, u32::MAX);
    config
}

pub struct Client {
    /// A WebSocket, or the HTTP fallback.
    pub socket: ClientSocket,
    /// The session token of the last welcome.
    pub session: String,
}

impl Client {
    pub async fn connect(server: &Server) -> Self {
        // Answers such as a resuming `joined` may be far larger than what the
        // server accepts from clients.
        let config = TransportConfig { max_message_bytes: 64 << 20, ..TransportConfig::default() };
        let socket = connect(&server.url(), Some("chat.v1"), &config).await.unwrap();
        Self { socket: ClientSocket::WebSocket(Box::new(socket)), session: String::new() }
    }

    /// Connects over the HTTP fallback (an event stream and posts).
    pub async fn connect_sse(server: &Server) -> Self {
        Self::connect_sse_to(&server.url()).await
    }

    /// The same, to `url`.
    pub async fn connect_sse_to(url: &str) -> Self {
        let config = TransportConfig::default();
        let stream = chat_transport::connect_event_stream(url, &config).await.unwrap();
        Self { socket: ClientSocket::EventStream(Box::new(stream)), session: String::new() }
    }

    /// Says hello as `nick` over the HTTP fallback.
    pub async fn hello_sse(server: &Server, nick: &str) -> Self {
        let mut client = Self::connect_sse(server).await;
        client.send(json!({"type": "hello", "nick": nick})).await;
        let welcome = client.expect("welcome").await;
        client.session = welcome["session"].as_str().unwrap().to_owned();
        client
    }

    /// Connects and says hello as `nick`, checking the welcome.
    pub async fn hello(server: &Server, nick: &str) -> Self {
        let mut client = Self::connect(server).await;
        client.send(json!({"type": "hello", "nick": nick})).await;
        let welcome = client.expect("welcome").await;
        assert_eq!(welcome["nick"], nick);
        client.session = welcome["session"].as_str().unwrap().to_owned();
        client
    }

    /// Resumes `session` on a new connection, checking the welcome.
    pub async fn resume(server: &Server, session: &str) -> (Self, Value) {
        let mut client = Self::connect(server).await;
        client.send(json!({"type": "hello", "session": session})).await;
        let welcome = client.expect("welcome").await;
        (client, welcome)
    }

    /// Connects from the loopback address `ip` (127.0.0.2, ...): another
    /// "host" as far as per-address limits go.
    pub async fn connect_from(server: &Server, ip: &str) -> Self {
        Self::try_connect_from(server, ip).await.unwrap()
    }

    /// The same, with the refusal if the upgrade was refused.
    pub async fn try_connect_from(
        server: &Server,
        ip: &str,
    ) -> Result<Self, chat_transport::tungstenite::Error> {
        let stream = tcp_from(ip, server.addr).await;
        let config = TransportConfig { max_message_bytes: 64 << 20, ..TransportConfig::default() };
        let (socket, _) = tokio_tungstenite::client_async_with_config(
            server.url(),
            chat_transport::ClientStream::Plain(stream),
            Some(config.websocket()),
        )
        .await?;
        Ok(Self { socket: ClientSocket::WebSocket(Box::new(socket)), session: String::new() })
    }

    /// Says hello as `nick` from the loopback address `ip`.
    pub async fn hello_from(server: &Server, ip: &str, nick: &str) -> Self {
        let mut client = Self::connect_from(server, ip).await;
        client.send(json!({"type": "hello", "nick": nick})).await;
        let welcome = client.expect("welcome").await;
        client.session = welcome["session"].as_str().unwrap().to_owned();
        client
    }

    /// Says hello and joins `room`, consuming the `joined`.
    pub async fn in_room(server: &Server, nick: &str, room: &str) -> Self {
        let mut client = Self::hello(server, nick).await;
        client.send(json!({"type": "join", "room": room})).await;
        client.expect("joined").await;
        client
    }

    pub async fn send(&mut self, frame: Value) {
        self.send_text(&frame.to_string()).await;
    }

    pub async fn send_text(&mut self, text: &str) {
        self.socket.send(Message::text(text)).await.unwrap();
    }

    /// The next frame from the server.
    pub async fn recv(&mut self) -> Value {
        loop {
            let message =
                tokio::time::timeout(WAIT, self.socket.next()).await.expect("a frame in time");
            match message.expect("connection open").expect("no error") {
                Message::Text(text) => return serde_json::from_str(&text).unwrap(),
                Message::Close(frame) => panic!("closed: {frame:?}"),
                _ => {}
            }
        }
    }

    /// The next frame, which must be of type `kind`.
    pub async fn expect(&mut self, kind: &str) -> Value {
        let frame = self.recv().await;
        assert_eq!(frame["type"], kind, "expected {kind}, got {frame}");
        frame
    }

    /// The next frame, which must be a presence `event` about `nick`.
    pub async fn expect_presence(&mut self, event: &str, nick: &str) -> Value {
        let frame = self.expect("presence").await;
        assert_eq!(
            (frame["event"].as_str(), frame["nick"].as_str()),
            (Some(event), Some(nick)),
            "{frame}"
        );
        frame
    }

    /// The next frame, which must be an error with `code`.
    pub async fn expect_error(&mut self, code: &str) -> Value {
        let frame = self.expect("error").await;
        assert_eq!(frame["code"], code, "{frame}");
        assert!(frame["message"].as_str().is_some_and(|m| !m.is_empty()), "{frame}");
        frame
    }

    /// The next frame of type `kind`, others skipped.
    pub async fn next_of(&mut self, kind: &str) -> Value {
        loop {
            let frame = self.recv().await;
            if frame["type"] == kind {
                return frame;
            }
        }
    }

    /// Proves nothing else is queued for this client: a ping's pong must be
    /// the very next frame.
    pub async fn expect_nothing_pending(&mut self) {
        self.send(json!({"type": "ping", "id": "sync"})).await;
        let frame = self.recv().await;
        assert_eq!(frame, json!({"type": "pong", "id": "sync"}), "something was pending");
    }

    /// Says goodbye with 1000 and waits for the server's close.
    pub async fn quit(&mut self) {
        let bye = CloseFrame { code: CloseCode::Normal, reason: "bye".into() };
        self.socket.close(Some(bye)).await.unwrap();
        while let Some(Ok(_)) =
            tokio::time::timeout(WAIT, self.socket.next()).await.expect("close in time")
        {}
    }

    /// Reads until the server closes, returning the close frame (if any)
    /// and how many text frames came before it.
    pub async fn until_closed(&mut self) -> (Option<CloseFrame>, usize) {
        let mut texts = 0;
        loop {
            let message =
                tokio::time::timeout(WAIT, self.socket.next()).await.expect("close in time");
            match message {
                Some(Ok(Message::Text(_))) => texts += 1,
                Some(Ok(Message::Close(frame))) => return (frame, texts),
                Some(Ok(_)) => {}
                Some(Err(_)) | None => return (None, texts),
            }
        }
    }
}

/// A WebSocket client written by hand, for what well-behaved libraries will
/// not do: answer no pings, send broken frames, stop reading.
pub struct RawClient {
    pub stream: tokio::net::TcpStream,
    buffer: Vec<u8>,
}

impl RawClient {
    /// Opens a WebSocket to `server` with a hand-made handshake.
    pub async fn connect(server: &Server) -> Self {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut stream = tokio::net::TcpStream::connect(server.addr).await.unwrap();
        let request = format!(
            "GET /ws HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
            server.addr
        );
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut buffer = Vec::new();
        let mut chunk = [0u8; 1024];
        let end = loop {
            if let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
                break end + 4;
            }
            let read = tokio::time::timeout(WAIT, stream.read(&mut chunk)).await.unwrap().unwrap();
            assert!(read > 0, "closed during the handshake");
            buffer.extend_from_slice(&chunk[..read]);
        };
        let head = String::from_utf8_lossy(&buffer[..end]).into_owned();
        assert!(head.starts_with("HTTP/1.1 101"), "{head}");
        buffer.drain(..end);
        Self { stream, buffer }
    }

    /// A client frame: `first` byte (FIN, RSV, opcode) and a masked payload.
    pub fn frame(first: u8, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        chat_transport::write_frame(first, payload, Some([0x37, 0xfa, 0x21, 0x3d]), &mut out);
        out
    }

    pub async fn send_raw(&mut self, bytes: &[u8]) {
        use tokio::io::AsyncWriteExt;
        self.stream.write_all(bytes).await.unwrap();
    }

    /// Sends one final text frame.
    pub async fn send_text(&mut self, text: &str) {
        self.send_raw(&Self::frame(0x81, text.as_bytes())).await;
    }

    /// The next frame from the server as (opcode, payload), or `None` once
    /// the connection ends.
    pub async fn next_frame(&mut self) -> Option<(u8, Vec<u8>)> {
        use tokio::io::AsyncReadExt;
        loop {
            if self.buffer.len() >= 2 {
                let (len, at) = match self.buffer[1] & 0x7f {
                    126 if self.buffer.len() >= 4 => {
                        (usize::from(u16::from_be_bytes([self.buffer[2], self.buffer[3]])), 4)
                    }
                    127 if self.buffer.len() >= 10 => {
                        let mut be = [0u8; 8];
                        be.copy_from_slice(&self.buffer[2..10]);
                        (usize::try_from(u64::from_be_bytes(be)).unwrap(), 10)
                    }
                    126 | 127 => (usize::MAX, 0),
                    short => (usize::from(short), 2),
                };
                if len != usize::MAX && self.buffer.len() >= at + len {
                    let opcode = self.buffer[0] & 0x0f;
                    let payload = self.buffer[at..at + len].to_vec();
                    self.buffer.drain(..at + len);
                    return Some((opcode, payload));
                }
            }
            let mut chunk = [0u8; 4096];
            let read = tokio::time::timeout(WAIT, self.stream.read(&mut chunk)).await.ok()?;
            match read {
                Ok(0) | Err(_) => return None,
                Ok(n) => self.buffer.extend_from_slice(&chunk[..n]),
            }
        }
    }

    /// Reads until the server's close frame; returns its code and how many
    /// pings came before it. `None` if the connection ended without one.
    pub async fn until_close(&mut self) -> (Option<u16>, usize) {
        let mut pings = 0;
        loop {
            match self.next_frame().await {
                Some((0x8, payload)) => {
                    let code =
                        (payload.len() >= 2).then(|| u16::from_be_bytes([payload[0], payload[1]]));
                    return (code, pings);
                }
                Some((0x9, _)) => pings += 1,
                Some(_) => {}
                None => return (None, pings),
            }
        }
    }
}

/// A TCP connection to `addr` from the loopback address `ip`.
pub async fn tcp_from(ip: &str, addr: SocketAddr) -> tokio::net::TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(format!("{ip}:0").parse().unwrap()).unwrap();
    socket.connect(addr).await.unwrap()
}

/// Two people chatting in a room while an attack goes on, from their own
/// address (127.0.0.1): alice says a line, both see it, again and again.
/// What they went through says whether the attack reached them.
pub struct Bystanders {
    stop: tokio::sync::watch::Sender<bool>,
    task: JoinHandle<(Client, Client, u32, Duration)>,
}

impl Bystanders {
    /// alice and bob join `room` and start chatting. They send at most 10
    /// lines a second, within any rate limit.
    pub async fn start(server: &Server, room: &str) -> Self {
        Self::start_with(server, room, |nick| json!({"type": "hello", "nick": nick})).await
    }

    /// The same on a server that wants more in `hello` (an access token):
    /// `hello` makes each one's.
    pub async fn start_with(server: &Server, room: &str, hello: impl Fn(&str) -> Value) -> Self {
        let mut people = Vec::new();
        for nick in ["alice", "bob"] {
            let mut client = Client::connect(server).await;
            client.send(hello(nick)).await;
            client.expect("welcome").await;
            client.send(json!({"type": "join", "room": room})).await;
            client.expect("joined").await;
            people.push(client);
        }
        let (Some(bob), Some(mut alice)) = (people.pop(), people.pop()) else {
            unreachable!("two people were made")
        };
        alice.expect("presence").await;
        let (stop, mut stopped) = tokio::sync::watch::channel(false);
        let room = room.to_owned();
        let task = tokio::spawn(async move {
            let (mut alice, mut bob) = (alice, bob);
            let (mut rounds, mut slowest) = (0u32, Duration::ZERO);
            while !*stopped.borrow_and_update() {
                let text = format!("tick {rounds}");
                let sent = tokio::time::Instant::now();
                alice.send(json!({"type": "say", "room": room, "text": text, "id": format!("t{rounds}")})).await;
                for client in [&mut alice, &mut bob] {
                    loop {
                        let frame = client.recv().await;
                        assert_ne!(frame["type"], "error", "a bystander was refused: {frame}");
                        if frame["type"] == "message" && frame["text"] == text {
                            break;
                        }
                    }
                }
                slowest = slowest.max(sent.elapsed());
                rounds += 1;
                tokio::select! {
                    _ = stopped.changed() => break,
                    () = tokio::time::sleep(Duration::from_millis(100)) => {}
                }
            }
            (alice, bob, rounds, slowest)
        });
        Self { stop, task }
    }

    /// Stops them and checks they kept chatting throughout, each line
    /// seen by both within `WAIT` (a stalled chat fails here), and the
    /// slowest well under a second more than the best case would take.
    /// Returns alice and bob for more checks.
    pub async fn finish(self) -> (Client, Client) {
        let _ = self.stop.send(true);
        let (alice, bob, rounds, slowest) = self.task.await.expect("the bystanders chatted");
        assert!(rounds > 0, "the bystanders never got a line through");
        eprintln!("bystanders: {rounds} lines, slowest {slowest:?}");
        assert!(slowest < Duration::from_secs(2), "a line took {slowest:?}");
        (alice, bob)
    }
}

/// A memory store with the faults a test gives it: commits fail while
/// `commits_fail()` says so (a full disk), and documents cannot be read
/// back with `docs_unreadable` (a broken one).
pub struct FaultyStore {
    pub inner: MemoryStore,
    pub commits_fail: Box<dyn FnMut() -> bool + Send>,
    pub docs_unreadable: bool,
}

impl FaultyStore {
    /// A store with no fault yet.
    pub fn new(inner: MemoryStore) -> Self {
        Self { inner, commits_fail: Box::new(|| false), docs_unreadable: false }
    }

    fn failure() -> chat_server::StoreError {
        std::io::Error::other("No space left on device").into()
    }
}

impl Store for FaultyStore {
    fn load(
        &mut self,
        retention: &chat_server::Retention,
        now_ms: u64,
    ) -> Result<chat_server::Snapshot, chat_server::StoreError> {
        self.inner.load(retention, now_ms)
    }

    fn room(
        &mut self,
        room: &chat_core::RoomName,
        retention: &chat_server::Retention,
        now_ms: u64,
    ) -> Result<Option<chat_core::RoomHistory>, chat_server::StoreError> {
        self.inner.room(room, retention, now_ms)
    }

    fn commit(&mut self, records: &[chat_core::Record]) -> Result<(), chat_server::StoreError> {
        if (self.commits_fail)() {
            return Err(Self::failure());
        }
        self.inner.commit(records)
    }

    fn prune(
        &mut self,
        retention: &chat_server::Retention,
        now_ms: u64,
    ) -> Result<bool, chat_server::StoreError> {
        self.inner.prune(retention, now_ms)
    }

    fn file_rooms(
        &mut self,
        file: &str,
    ) -> Result<Vec<(chat_core::RoomName, chat_core::Attachment)>, chat_server::StoreError> {
        self.inner.file_rooms(file)
    }

    fn files(&mut self) -> Result<std::collections::BTreeSet<String>, chat_server::StoreError> {
        self.inner.files()
    }

    fn doc(
        &mut self,
        room: &chat_core::RoomName,
        doc: &chat_core::RoomName,
    ) -> Result<Vec<Vec<u8>>, chat_server::StoreError> {
        if self.docs_unreadable {
            return Err(std::io::Error::other("input/output error").into());
        }
        self.inner.doc(room, doc)
    }

    fn commit_docs(
        &mut self,
        updates: &[chat_server::DocUpdate],
    ) -> Result<(), chat_server::StoreError> {
        if (self.commits_fail)() {
            return Err(Self::failure());
        }
        self.inner.commit_docs(updates)
    }

    fn compact_doc(
        &mut self,
        room: &chat_core::RoomName,
        doc: &chat_core::RoomName,
        state: &[u8],
    ) -> Result<(), chat_server::StoreError> {
        self.inner.compact_doc(room, doc, state)
    }

    fn keep_version(
        &mut self,
        room: &chat_core::RoomName,
        doc: &chat_core::RoomName,
        ts: u64,
        state: &[u8],
    ) -> Result<(), chat_server::StoreError> {
        self.inner.keep_version(room, doc, ts, state)
    }

    fn versions(
        &mut self,
        room: &chat_core::RoomName,
        doc: &chat_core::RoomName,
    ) -> Result<Vec<chat_server::VersionInfo>, chat_server::StoreError> {
        if self.docs_unreadable {
            return Err(std::io::Error::other("input/output error").into());
        }
        self.inner.versions(room, doc)
    }

    fn version(
        &mut self,
        room: &chat_core::RoomName,
        doc: &chat_core::RoomName,
        version: u64,
    ) -> Result<Option<Vec<u8>>, chat_server::StoreError> {
        if self.docs_unreadable {
            return Err(std::io::Error::other("input/output error").into());
        }
        self.inner.version(room, doc, version)
    }
}

/// A plain HTTP GET: status, headers (lowercased names), body.
pub async fn http_get(
    server: &Server,
    path: &str,
    auth: Option<&str>,
) -> (u16, Vec<(String, String)>, Vec<u8>) {
    http_get_at(server.addr, path, auth).await
}

/// The same, of the server at `addr`.
pub async fn http_get_at(
    addr: SocketAddr,
    path: &str,
    auth: Option<&str>,
) -> (u16, Vec<(String, String)>, Vec<u8>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let auth = auth.map(|token| format!("Authorization: Bearer {token}\r\n")).unwrap_or_default();
    let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n{auth}\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await.unwrap();
    let split = answer.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let head = String::from_utf8(answer[..split].to_vec()).unwrap();
    let body = answer[split + 4..].to_vec();
    let mut lines = head.lines();
    let status = lines.next().unwrap().split(' ').nth(1).unwrap().parse().unwrap();
    let headers = lines
        .map(|line| {
            let (name, value) = line.split_once(':').unwrap();
            (name.trim().to_lowercase(), value.trim().to_owned())
        })
        .collect();
    (status, headers, body)
}
