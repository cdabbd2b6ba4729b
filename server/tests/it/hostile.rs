//! Clients that misbehave, against a real server on 127.0.0.1:0: each gets a
//! precise answer (an error code, a close code), and a well-behaved client
//! in the same room keeps chatting throughout.

use std::time::Duration;

use crate::support::{Client, RawClient, Server};
use chat_server::ServerConfig;
use serde_json::{Value, json};
use tokio::sync::watch;

/// A server that checks connections every 100 ms, and lets the
/// well-behaved client chat as fast as it likes.
fn quick_pings() -> ServerConfig {
    let mut config =
        ServerConfig { ping_interval: Duration::from_millis(100), ..ServerConfig::default() };
    config.chat.messages_per_sec = 100_000;
    config.chat.messages_burst = 100_000;
    config.frames_per_sec = 100_000;
    config.frames_burst = 100_000;
    config
}

/// Keeps `client` chatting in `room` until `stop` changes, at most
/// `max_rounds` messages (within its rate limits): every round trip also
/// reads (and so answers) the server's pings. Returns the messages echoed.
async fn keep_chatting(
    mut client: Client,
    room: &str,
    max_rounds: u32,
    mut stop: watch::Receiver<bool>,
) -> (Client, u32, Vec<Value>) {
    let mut rounds = 0;
    let mut presence = Vec::new();
    while !*stop.borrow_and_update() {
        if rounds == max_rounds {
            let _ = stop.changed().await;
            break;
        }
        client.send(json!({"type": "say", "room": room, "text": format!("tick {rounds}")})).await;
        // Others come and go meanwhile (presence): wait for the echo.
        loop {
            let frame = client.recv().await;
            assert_ne!(frame["type"], "error", "{frame}");
            if frame["type"] == "message" {
                assert_eq!(frame["text"], format!("tick {rounds}"));
                break;
            }
            if frame["type"] == "presence" {
                presence.push(frame);
            }
        }
        rounds += 1;
        tokio::select! {
            _ = stop.changed() => break,
            () = tokio::task::yield_now() => {}
        }
    }
    (client, rounds, presence)
}

/// Whoever chatted on: the closed client went away in their room (seen
/// while chatting or right after), and nothing else is pending.
async fn saw_away_then_nothing(client: &mut Client, mut seen: Vec<Value>, nick: &str) {
    let away = |frame: &Value| frame["event"] == "away" && frame["nick"] == nick;
    if !seen.iter().any(away) {
        seen.push(client.expect_presence("away", nick).await);
    }
    client.expect_nothing_pending().await;
}

#[tokio::test]
async fn a_client_that_answers_no_pings_is_closed_as_unresponsive() {
    let server = Server::start(quick_pings()).await;
    let alice = Client::in_room(&server, "alice", "lobby").await;
    let (stop, stopped) = watch::channel(false);
    let chatting = tokio::spawn(keep_chatting(alice, "lobby", u32::MAX, stopped));

    let mut silent = RawClient::connect(&server).await;
    silent.send_text(r#"{"type":"hello","nick":"silent"}"#).await;
    silent.send_text(r#"{"type":"join","room":"lobby"}"#).await;
    let (code, pings) = silent.until_close().await;
    assert_eq!(code, Some(4010));
    assert_eq!(pings, 2, "closed after two unanswered pings");

    stop.send(true).unwrap();
    let (mut alice, rounds, seen) = chatting.await.unwrap();
    assert!(rounds > 0);
    // alice answered every ping by reading; she is still here.
    saw_away_then_nothing(&mut alice, seen, "silent").await;
    server.shutdown().await;
}

#[tokio::test]
async fn a_client_that_never_says_hello_is_closed_with_1008() {
    let server = Server::start(quick_pings()).await;
    // A real WebSocket client: it answers pings, but says nothing.
    let mut mute = Client::connect(&server).await;
    let (close, texts) = mute.until_closed().await;
    assert_eq!(close.map(|c| u16::from(c.code)), Some(1008));
    assert_eq!(texts, 0);
    server.shutdown().await;
}

#[tokio::test]
async fn a_frame_flood_is_refused_then_closed_with_1008_while_others_chat() {
    let mut config = quick_pings();
    config.ping_interval = Duration::from_secs(25);
    config.frames_per_sec = 50;
    config.frames_burst = 100;
    config.frames_refused_max = 20;
    let server = Server::start(config).await;
    let alice = Client::in_room(&server, "alice", "lobby").await;
    let (stop, stopped) = watch::channel(false);
    // Within her own frame budget (100 in a burst).
    let chatting = tokio::spawn(keep_chatting(alice, "lobby", 40, stopped));

    let mut flood = Client::in_room(&server, "flood", "lobby").await;
    // hello and join took two frames of the burst; 100 pings take the rest
    // and more. Nothing is read meanwhile, so no time passes for the
    // flooder's bucket except the moments the writes take.
    for i in 0..110 {
        flood.send(json!({"type": "ping", "id": format!("p{i}")})).await;
    }
    let (mut pongs, mut refused) = (0, 0);
    while pongs + refused < 110 {
        let frame = flood.recv().await;
        match frame["type"].as_str() {
            Some("pong") => pongs += 1,
            Some("error") => {
                assert_eq!(frame["code"], "rate_limited", "{frame}");
                assert!(frame["retry_after_ms"].as_u64().is_some_and(|ms| ms > 0), "{frame}");
                refused += 1;
            }
            // alice's chatter in the lobby.
            _ => {}
        }
    }
    assert!(refused >= 8, "the burst ran out: {pongs} pongs, {refused} refused");
    // Keeping on after being told: closed as abusive.
    for i in 0..40 {
        let ping = format!(r#"{{"type":"ping","id":"x{i}"}}"#);
        let _ = flood.socket.send(chat_transport::tungstenite::Message::text(ping)).await;
    }
    let (close, _) = flood.until_closed().await;
    assert_eq!(close.map(|c| u16::from(c.code)), Some(1008));

    stop.send(true).unwrap();
    let (mut alice, rounds, seen) = chatting.await.unwrap();
    assert!(rounds > 0);
    saw_away_then_nothing(&mut alice, seen, "flood").await;
    server.shutdown().await;
}

/// What a hostile frame sequence must get from the server.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Expect {
    /// The connection is closed with this code.
    Close(u16),
    /// An `error` frame with this code, and the connection carries on.
    Error(&'static str),
}

/// Masked client frames with an explicit first byte.
fn frame(first: u8, payload: &[u8]) -> Vec<u8> {
    RawClient::frame(first, payload)
}

/// A frame whose header announces more than the limit; no payload follows.
fn oversized_header() -> Vec<u8> {
    chat_transport::FrameHeader::new(0x81, 1 << 20, Some([1, 2, 3, 4])).as_bytes().to_vec()
}

#[tokio::test]
async fn hostile_frames_get_precise_answers_and_the_room_carries_on() {
    let deep = format!("{}{}", "[".repeat(5000), "]".repeat(5000));
    let cases: Vec<(&str, Vec<u8>, Expect)> = vec![
        (
            "invalid UTF-8 in a text frame",
            frame(0x81, &[b'{', 0xff, 0xfe, b'}']),
            Expect::Close(1007),
        ),
        ("a frame over 64 KiB", oversized_header(), Expect::Close(1009)),
        ("a continuation with nothing to continue", frame(0x80, b"x"), Expect::Close(1002)),
        ("a fragmented ping", frame(0x09, b"x"), Expect::Close(1002)),
        ("a ping over 125 bytes", frame(0x89, &[b'p'; 126]), Expect::Close(1002)),
        ("reserved bits set", frame(0xc1, b"{}"), Expect::Close(1002)),
        ("an unknown opcode", frame(0x83, b"x"), Expect::Close(1002)),
        ("an unmasked frame", [0x81, 2, b'{', b'}'].to_vec(), Expect::Close(1002)),
        (
            "a new message inside a fragmented one",
            [frame(0x01, b"{\"type\":"), frame(0x81, b"{}")].concat(),
            Expect::Close(1002),
        ),
        (
            "a binary frame with no upload",
            frame(0x82, b"\x00\x01"),
            Expect::Error("invalid_upload"),
        ),
        ("a JSON nesting bomb", frame(0x81, deep.as_bytes()), Expect::Error("bad_json")),
        (
            "a huge number",
            frame(0x81, br#"{"type":"history","room":"lobby","limit":1e400}"#),
            Expect::Error("bad_json"),
        ),
        (
            "a number out of range",
            frame(0x81, br#"{"type":"history","room":"lobby","limit":99999999999999999999999}"#),
            Expect::Error("bad_frame"),
        ),
        ("an unknown type", frame(0x81, br#"{"type":"launch"}"#), Expect::Error("unknown_type")),
        ("a string where an object goes", frame(0x81, br#""hello""#), Expect::Error("bad_json")),
        ("an empty text frame", frame(0x81, b""), Expect::Error("bad_json")),
        (
            "a NUL inside JSON text",
            frame(0x81, b"{\"type\":\"say\",\"room\":\"lobby\",\"text\":\"a\x00b\"}"),
            Expect::Error("bad_json"),
        ),
    ];
    let server = Server::start(ServerConfig::default()).await;
    let mut alice = Client::in_room(&server, "alice", "lobby").await;
    for (i, (name, bytes, expect)) in cases.into_iter().enumerate() {
        let mut raw = RawClient::connect(&server).await;
        raw.send_text(&format!(r#"{{"type":"hello","nick":"h{i}"}}"#)).await;
        assert_eq!(raw.next_frame().await.map(|f| f.0), Some(0x1), "{name}: welcome");
        raw.send_raw(&bytes).await;
        match expect {
            Expect::Close(code) => {
                let (got, _) = raw.until_close().await;
                assert_eq!(got, Some(code), "{name}");
            }
            Expect::Error(code) => {
                let (opcode, payload) = raw.next_frame().await.expect("an answer");
                assert_eq!(opcode, 0x1, "{name}");
                let error: serde_json::Value = serde_json::from_slice(&payload).unwrap();
                assert_eq!(error["type"], "error", "{name}: {error}");
                assert_eq!(error["code"], code, "{name}: {error}");
                // ...and the connection carries on.
                raw.send_text(r#"{"type":"ping","id":"still"}"#).await;
                let (_, pong) = raw.next_frame().await.expect("a pong");
                assert_eq!(pong, br#"{"type":"pong","id":"still"}"#, "{name}");
            }
        }
        // The bystander never noticed.
        alice.send(json!({"type": "say", "room": "lobby", "text": format!("after {name}")})).await;
        assert_eq!(alice.expect("message").await["text"], format!("after {name}"));
    }
    alice.expect_nothing_pending().await;
    server.shutdown().await;
}

#[tokio::test]
async fn fragments_with_a_ping_between_them_make_one_message() {
    let server = Server::start(ServerConfig::default()).await;
    let mut raw = RawClient::connect(&server).await;
    raw.send_text(r#"{"type":"hello","nick":"frag"}"#).await;
    assert_eq!(raw.next_frame().await.map(|f| f.0), Some(0x1));
    let bytes = [
        frame(0x01, br#"{"type":"pi"#),
        frame(0x89, b"beat"),
        frame(0x00, br#"ng","id""#),
        frame(0x80, br#":"f"}"#),
    ]
    .concat();
    raw.send_raw(&bytes).await;
    assert_eq!(
        raw.next_frame().await,
        Some((0xa, b"beat".to_vec())),
        "the ping is answered at once"
    );
    assert_eq!(raw.next_frame().await, Some((0x1, br#"{"type":"pong","id":"f"}"#.to_vec())));
    server.shutdown().await;
}

#[tokio::test]
async fn a_peer_that_vanishes_mid_frame_leaves_no_trace() {
    let server = Server::start(ServerConfig::default()).await;
    let mut alice = Client::in_room(&server, "alice", "lobby").await;
    for cut in [1usize, 2, 5, 9] {
        let mut raw = RawClient::connect(&server).await;
        raw.send_text(r#"{"type":"hello","nick":"gone"}"#).await;
        assert_eq!(raw.next_frame().await.map(|f| f.0), Some(0x1));
        let whole = frame(0x81, br#"{"type":"join","room":"lobby"}"#);
        raw.send_raw(&whole[..cut]).await;
        drop(raw);
        alice.send(json!({"type": "say", "room": "lobby", "text": format!("cut at {cut}")})).await;
        assert_eq!(alice.expect("message").await["text"], format!("cut at {cut}"));
    }
    // The server carries on taking newcomers; alice sees bob arrive and
    // nothing else (the half-sent joins never happened).
    let mut bob = Client::in_room(&server, "bob", "lobby").await;
    bob.expect_nothing_pending().await;
    alice.expect("presence").await;
    alice.expect_nothing_pending().await;
    server.shutdown().await;
}

/// Sends raw bytes on a fresh TCP connection (closing our side first when
/// `then_close`) and returns the status line the server answered, if any.
async fn raw_http(server: &Server, bytes: &[u8], then_close: bool) -> Option<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    stream.write_all(bytes).await.unwrap();
    if then_close {
        stream.shutdown().await.unwrap();
    }
    let mut answer = Vec::new();
    let read = tokio::time::timeout(crate::support::WAIT, stream.read_to_end(&mut answer)).await;
    read.expect("the server answers or closes in time").ok()?;
    String::from_utf8_lossy(&answer).lines().next().map(str::to_owned)
}

#[tokio::test]
async fn hostile_http_gets_the_right_status_and_the_room_carries_on() {
    let mut config = ServerConfig::default();
    config.transport.handshake_timeout = Duration::from_millis(300);
    let server = Server::start(config).await;
    let mut alice = Client::in_room(&server, "alice", "lobby").await;
    let key = "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n";
    let upgrade = |extra: &str| {
        format!(
            "GET /ws HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n{extra}\r\n",
            server.addr
        )
    };
    let big =
        format!("GET / HTTP/1.1\r\nHost: localhost\r\nX-Big: {}\r\n\r\n", "a".repeat(17 * 1024));
    let many = format!("GET / HTTP/1.1\r\n{}\r\n", "X: y\r\n".repeat(70));
    let cases: Vec<(&str, String, bool, Option<&str>)> = vec![
        ("garbage", "\u{1}\u{2} nonsense\r\n\r\n".into(), false, Some("HTTP/1.1 400 Bad Request")),
        ("a truncated head, then goodbye", "GET / HTTP/1.1\r\nHost:".into(), true, None),
        ("an oversized header", big, false, Some("HTTP/1.1 431 Request Header Fields Too Large")),
        ("too many headers", many, false, Some("HTTP/1.1 431 Request Header Fields Too Large")),
        (
            "slowloris: half a head, then nothing",
            "GET / HTTP/1.1\r\nHo".into(),
            false,
            Some("HTTP/1.1 408 Request Timeout"),
        ),
        (
            "a wrong WebSocket version",
            upgrade(&format!("Sec-WebSocket-Version: 8\r\n{key}")),
            false,
            Some("HTTP/1.1 426 Upgrade Required"),
        ),
        (
            "a missing key",
            upgrade("Sec-WebSocket-Version: 13\r\n"),
            false,
            Some("HTTP/1.1 400 Bad Request"),
        ),
        (
            "another site's page",
            upgrade(&format!("Sec-WebSocket-Version: 13\r\n{key}Origin: https://evil.example\r\n")),
            false,
            Some("HTTP/1.1 403 Forbidden"),
        ),
        (
            "POST to the socket without a stream",
            "POST /ws HTTP/1.1\r\nHost: localhost\r\n\r\n".into(),
            false,
            // Posts to the socket's path are the HTTP fallback's: without
            // a stream, a bad request.
            Some("HTTP/1.1 400 Bad Request"),
        ),
        (
            "HTTP/1.0 upgrade",
            "GET /ws HTTP/1.0\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n".into(),
            false,
            Some("HTTP/1.1 400 Bad Request"),
        ),
    ];
    for (name, bytes, then_close, expected) in cases {
        let status = raw_http(&server, bytes.as_bytes(), then_close).await;
        assert_eq!(status.as_deref(), expected, "{name}");
        alice.send(json!({"type": "say", "room": "lobby", "text": format!("after {name}")})).await;
        assert_eq!(alice.expect("message").await["text"], format!("after {name}"));
    }
    alice.expect_nothing_pending().await;
    server.shutdown().await;
}

#[tokio::test]
async fn count_limits_answer_limit_reached_and_join_floods_rate_limited() {
    let mut config = ServerConfig::default();
    config.chat.max_rooms_per_session = 2;
    config.chat.max_members_per_room = 2;
    config.chat.joins_per_sec = 1;
    config.chat.joins_burst = 3;
    let server = Server::start(config).await;
    let mut alice = Client::in_room(&server, "alice", "lobby").await;
    alice.send(json!({"type": "join", "room": "b"})).await;
    alice.expect("joined").await;
    alice.send(json!({"type": "join", "room": "c", "id": "third"})).await;
    assert_eq!(alice.expect_error("limit_reached").await["id"], "third");

    let _bob = Client::in_room(&server, "bob", "lobby").await;
    alice.expect("presence").await;
    let mut carol = Client::hello(&server, "carol").await;
    carol.send(json!({"type": "join", "room": "lobby"})).await;
    carol.expect_error("limit_reached").await;
    // A refused join costs nothing; carol's burst of new joins is 3, then
    // one a second: joining new rooms fast runs into rate_limited.
    let mut joined = 0;
    let refused = loop {
        assert!(joined < 10, "no rate limit after {joined} joins");
        carol.send(json!({"type": "join", "room": format!("r{joined}")})).await;
        let answer = carol.recv().await;
        if answer["type"] == "error" {
            break answer;
        }
        assert_eq!(answer["type"], "joined", "{answer}");
        joined += 1;
        // Stay under the two-rooms limit.
        carol.send(json!({"type": "leave", "room": format!("r{}", joined - 1)})).await;
        carol.expect("left").await;
    };
    assert!(joined >= 3, "the burst of 3 went through first ({joined})");
    assert_eq!(refused["code"], "rate_limited", "{refused}");
    assert!(refused["retry_after_ms"].as_u64().is_some_and(|ms| ms > 0), "{refused}");
    alice.expect_nothing_pending().await;
    server.shutdown().await;
}
