//! Socket.IO (issue #20): what a page written for a Socket.IO server finds
//! here.

use chat_server::ServerConfig;

use crate::support::{Server, http_get};

#[tokio::test]
async fn the_official_client_script_is_served_where_socket_io_pages_look_for_it() {
    let lock =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("web-vendor/package-lock.json");
    let lock: serde_json::Value = serde_json::from_slice(&std::fs::read(lock).unwrap()).unwrap();
    let version = lock["packages"]["node_modules/socket.io-client"]["version"].as_str().unwrap();
    let server = Server::start(ServerConfig::default()).await;
    for path in ["/socket.io/socket.io.js", "/socket.io/socket.io.min.js"] {
        let (status, headers, body) = http_get(&server, path, None).await;
        assert_eq!(status, 200, "{path}");
        let kind = headers.iter().find(|(name, _)| name == "content-type").unwrap();
        assert!(kind.1.starts_with("text/javascript"), "{kind:?}");
        let body = String::from_utf8(body).unwrap();
        assert!(body.starts_with(&format!("/*!\n * Socket.IO v{version}\n")), "the pinned version");
        assert!(body.contains(".io=") && body.len() > 40_000, "the whole browser bundle");
    }
    server.shutdown().await;
}

/// One HTTP request to `addr`: the status and the body.
async fn request(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    headers: &str,
    body: &[u8],
) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let answer = async {
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: localhost\r\nContent-Length: {}\r\n{headers}\r\n",
            body.len()
        );
        stream.write_all(head.as_bytes()).await.unwrap();
        // A body past the bound may be refused before it is all read.
        let _ = stream.write_all(body).await;
        let mut answer = Vec::new();
        let _ = stream.read_to_end(&mut answer).await;
        String::from_utf8_lossy(&answer).into_owned()
    };
    let answer =
        tokio::time::timeout(crate::support::WAIT, answer).await.expect("an answer in time");
    let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((&answer, ""));
    let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    (status, body.to_owned())
}

const POLL: &str = "/socket.io/?EIO=4&transport=polling";

/// Opens a long-polling session: its sid.
async fn open(addr: std::net::SocketAddr) -> String {
    let (status, body) = request(addr, "GET", POLL, "", b"").await;
    assert_eq!(status, 200, "{body}");
    let handshake: serde_json::Value =
        serde_json::from_str(body.strip_prefix('0').unwrap()).unwrap();
    assert_eq!(handshake["upgrades"], serde_json::json!(["websocket"]));
    assert_eq!(handshake["maxPayload"], 1_000_000);
    handshake["sid"].as_str().unwrap().to_owned()
}

fn code(body: &str) -> i64 {
    serde_json::from_str::<serde_json::Value>(body).unwrap()["code"].as_i64().unwrap()
}

#[tokio::test]
async fn hostile_engine_io_requests_get_the_protocols_errors_and_bystanders_carry_on() {
    let server = Server::start(ServerConfig::default()).await;
    let addr = server.addr;
    let bystanders = crate::support::Bystanders::start(&server, "lobby").await;

    let version = request(addr, "GET", "/socket.io/?EIO=3&transport=polling", "", b"").await;
    assert_eq!((version.0, code(&version.1)), (400, 5), "an unsupported version");
    let transport = request(addr, "GET", "/socket.io/?EIO=4&transport=pigeon", "", b"").await;
    assert_eq!((transport.0, code(&transport.1)), (400, 0), "an unknown transport");
    let unknown = request(addr, "GET", &format!("{POLL}&sid=nope"), "", b"").await;
    assert_eq!((unknown.0, code(&unknown.1)), (400, 1), "an unknown sid");
    let method = request(addr, "POST", POLL, "", b"40").await;
    assert_eq!((method.0, code(&method.1)), (400, 2), "a handshake must be a GET");
    let evil = request(addr, "GET", POLL, "Origin: http://evil.example\r\n", b"").await;
    assert_eq!((evil.0, code(&evil.1)), (403, 4), "a page of another site");

    // Two long-polling GETs at once: whichever comes second is refused,
    // the other hears the session's end, and the session is gone.
    let sid = open(addr).await;
    let path = format!("{POLL}&sid={sid}");
    let (one, two) =
        tokio::join!(request(addr, "GET", &path, "", b""), request(addr, "GET", &path, "", b""));
    let (held, refused) = if one.0 == 200 { (one, two) } else { (two, one) };
    assert_eq!(held, (200, "1".to_owned()), "the waiting GET hears the close");
    assert_eq!((refused.0, code(&refused.1)), (400, 3), "{refused:?}");
    assert_eq!(code(&request(addr, "GET", &path, "", b"").await.1), 1, "the session is gone");

    // A payload over maxPayload: 413, and the session ends.
    let sid = open(addr).await;
    let path = format!("{POLL}&sid={sid}");
    let big = vec![b'4'; 1_000_001];
    assert_eq!(request(addr, "POST", &path, "", &big).await.0, 413);
    assert_eq!(code(&request(addr, "GET", &path, "", b"").await.1), 1);

    // A payload that is no Engine.IO: 400, and the session ends.
    let sid = open(addr).await;
    let path = format!("{POLL}&sid={sid}");
    let bad = request(addr, "POST", &path, "", b"9nine").await;
    assert_eq!((bad.0, code(&bad.1)), (400, 3));
    assert_eq!(code(&request(addr, "GET", &path, "", b"").await.1), 1);

    // A Socket.IO packet that does not decode ends the session (as the
    // protocol says), after the server read it.
    let sid = open(addr).await;
    let path = format!("{POLL}&sid={sid}");
    assert_eq!(request(addr, "POST", &path, "", b"40").await, (200, "ok".to_owned()));
    let connected = request(addr, "GET", &path, "", b"").await;
    assert!(connected.1.starts_with("40{\"sid\":"), "{connected:?}");
    assert_eq!(request(addr, "POST", &path, "", b"4{{{").await, (200, "ok".to_owned()));
    let closed = request(addr, "GET", &path, "", b"").await;
    assert!(closed.1.ends_with('1') || code(&closed.1) == 1, "{closed:?}");

    // Through all of it, a good session chats, and the bystanders too.
    let sid = open(addr).await;
    let path = format!("{POLL}&sid={sid}");
    let connect = br#"40{"nick":"carol"}"#;
    assert_eq!(request(addr, "POST", &path, "", connect).await, (200, "ok".to_owned()));
    let said = br#"42["chat message","carol was here"]"#;
    assert_eq!(request(addr, "POST", &path, "", said).await, (200, "ok".to_owned()));
    let mut seen = String::new();
    while !seen.contains("carol was here") {
        let (status, body) = request(addr, "GET", &path, "", b"").await;
        assert_eq!(status, 200, "{body}");
        seen.push_str(&body);
    }
    let (mut alice, _bob) = bystanders.finish().await;
    loop {
        let frame = alice.recv().await;
        if frame["type"] == "message" && frame["text"] == "carol was here" {
            assert_eq!(frame["from"], "carol");
            break;
        }
    }
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_a_cluster_a_relayed_get_called_off_loses_nothing_and_redis_down_is_a_503() {
    use futures_util::StreamExt;
    use tokio::io::AsyncWriteExt;
    let mut redis = chat_test_support::Redis::start();
    let node = |name: &str| ServerConfig {
        redis: Some(redis.url()),
        node_id: Some(name.to_owned()),
        ..ServerConfig::default()
    };
    let (a, b) = (Server::start(node("a")).await, Server::start(node("b")).await);
    let sid = open(a.addr).await;
    let path = format!("{POLL}&sid={sid}");
    // Its CONNECT, and the answer, through the node that does not hold it.
    let connect = request(b.addr, "POST", &path, "", br#"40{"nick":"zed"}"#).await;
    assert_eq!(connect, (200, "ok".to_owned()));
    let (status, answer) = request(b.addr, "GET", &path, "", b"").await;
    assert_eq!(status, 200);
    assert!(answer.starts_with("40{\"sid\""), "{answer}");

    // A GET through b, seen relayed to a's run, whose client then goes.
    let (instance, _) = sid.rsplit_once('.').unwrap();
    let client = redis::Client::open(redis.url()).unwrap();
    let mut relayed = client.get_async_pubsub().await.unwrap();
    relayed.subscribe(format!("chat:{{eio:{instance}}}")).await.unwrap();
    let mut held = tokio::net::TcpStream::connect(b.addr).await.unwrap();
    let head = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n");
    held.write_all(head.as_bytes()).await.unwrap();
    let heard = tokio::time::timeout(crate::support::WAIT, relayed.on_message().next()).await;
    let heard = heard.unwrap().unwrap().get_payload::<String>().unwrap();
    assert!(heard.starts_with('g') && heard.contains(&sid), "{heard}");
    drop(held);

    // What the session is sent next waits for its next GET, here through
    // a: not refused as a second GET, nor lost to the one gone.
    let mut ann = crate::support::Client::hello(&a, "ann").await;
    ann.send(serde_json::json!({"type": "join", "room": "lobby"})).await;
    ann.expect("joined").await;
    ann.send(serde_json::json!({"type": "say", "room": "lobby", "text": "after"})).await;
    let mut seen = String::new();
    while !seen.contains(r#"42["chat message","after""#) {
        let (status, answer) = request(a.addr, "GET", &path, "", b"").await;
        assert_eq!(status, 200, "{answer}");
        seen.push_str(&answer);
    }

    // Redis gone: a request through b is answered 503 at once (the client
    // tries again), and a serves the session as before.
    redis.kill();
    let said = br#"42["chat message","while redis is down"]"#;
    assert_eq!(request(b.addr, "POST", &path, "", said).await.0, 503);
    assert_eq!(request(a.addr, "POST", &path, "", said).await, (200, "ok".to_owned()));
    a.shutdown().await;
    b.shutdown().await;
}

/// A server started with `config` whose metrics the test scrapes.
async fn scraped(config: ServerConfig) -> Server {
    let metrics_token = Some(crate::metrics::TOKEN.to_owned());
    Server::start(ServerConfig { metrics_token, ..config }).await
}

/// A Socket.IO session straight on a WebSocket to `server`, connected to
/// the main namespace as `nick`.
async fn websocket(
    server: &Server,
    nick: &str,
) -> tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>> {
    use futures_util::{SinkExt, StreamExt};
    let url = format!("ws://{}/socket.io/?EIO=4&transport=websocket", server.addr);
    let (mut socket, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    let open = socket.next().await.unwrap().unwrap();
    assert!(open.to_text().unwrap().starts_with("0{\"sid\""), "{open:?}");
    let connect = format!(r#"40{{"nick":"{nick}"}}"#);
    socket.send(tokio_tungstenite::tungstenite::Message::text(connect)).await.unwrap();
    loop {
        let answer = socket.next().await.unwrap().unwrap();
        if answer.to_text().unwrap().starts_with("40{\"sid\"") {
            return socket;
        }
    }
}

#[tokio::test]
async fn malformed_packets_on_a_websocket_end_that_session_alone_and_are_counted() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    let server = scraped(ServerConfig::default()).await;
    let bystanders = crate::support::Bystanders::start(&server, "lobby").await;
    let broken: [(&str, Message); 4] = [
        ("not Engine.IO", Message::text("9nine")),
        ("not Socket.IO", Message::text("4{{{")),
        ("an attachment with no binary event", Message::binary(vec![1, 2, 3])),
        ("a binary event announcing no attachment", Message::text(r#"450-["upload",{}]"#)),
    ];
    for (n, (what, message)) in broken.into_iter().enumerate() {
        let mut socket = websocket(&server, &format!("mallory{n}")).await;
        socket.send(message).await.unwrap();
        // The session's end: its `close` packet if it gets out, then the
        // WebSocket's close.
        loop {
            match tokio::time::timeout(crate::support::WAIT, socket.next()).await.unwrap() {
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                Some(Ok(Message::Text(text))) => {
                    assert!(text.as_str() == "1" || text.starts_with('4'), "{what}: {text}")
                }
                Some(Ok(other)) => panic!("{what}: {other:?}"),
            }
        }
    }
    // One over maxPayload: the WebSocket is closed as too big.
    let mut socket = websocket(&server, "mallory").await;
    socket
        .send(Message::text(format!("42[\"chat message\",\"{}\"]", "x".repeat(1_000_000))))
        .await
        .unwrap();
    let close = loop {
        match tokio::time::timeout(crate::support::WAIT, socket.next()).await.unwrap() {
            Some(Ok(Message::Close(frame))) => break frame,
            Some(Ok(_)) => {}
            other => panic!("{other:?}"),
        }
    };
    assert_eq!(close.map(|frame| u16::from(frame.code)), Some(1009));

    let key = r#"chat_connections_closed_total{code="1002"}"#;
    crate::metrics::until(&server, key, |closed| closed >= 4.0).await;
    let key = r#"chat_connections_closed_total{code="1009"}"#;
    crate::metrics::until(&server, key, |closed| closed >= 1.0).await;
    let (mut alice, _bob) = bystanders.finish().await;
    alice.send(serde_json::json!({"type": "say", "room": "lobby", "text": "still here"})).await;
    alice.next_of("message").await;
    server.shutdown().await;
}

#[tokio::test]
async fn a_long_polling_client_that_stops_polling_is_cut_off_as_too_slow() {
    let server = scraped(crate::support::slow_consumer_config()).await;
    let addr = server.addr;
    let sid = open(addr).await;
    let path = format!("{POLL}&sid={sid}");
    assert_eq!(request(addr, "POST", &path, "", br#"40{"nick":"snail"}"#).await.0, 200);
    let (status, answer) = request(addr, "GET", &path, "", b"").await;
    assert_eq!(status, 200);
    assert!(answer.starts_with("40{\"sid\""), "{answer}");

    // The room goes on without it: far more than its 16 packets' bound.
    let mut alice = crate::support::Client::in_room(&server, "alice", "lobby").await;
    for n in 0..40 {
        let text = format!("{n} {}", "x".repeat(1000));
        alice.send(serde_json::json!({"type": "say", "room": "lobby", "text": text})).await;
    }
    let mut heard = 0;
    while heard < 40 {
        if alice.recv().await["type"] == "message" {
            heard += 1;
        }
    }
    let key = r#"chat_connections_closed_total{code="4008"}"#;
    crate::metrics::until(&server, key, |closed| closed >= 1.0).await;
    // Its session is over; what it missed, a new one recovers by its pid.
    let gone = request(addr, "GET", &path, "", b"").await;
    assert!(gone.1 == "1" || code(&gone.1) == 1, "{gone:?}");
    server.shutdown().await;
}

#[tokio::test]
async fn a_delivery_to_socket_io_clients_counts_the_bytes_of_their_own_packets() {
    let server = scraped(ServerConfig::default()).await;
    let addr = server.addr;
    let mut paths = Vec::new();
    for nick in ["ann", "bob"] {
        let sid = open(addr).await;
        let path = format!("{POLL}&sid={sid}");
        let connect = format!(r#"40{{"nick":"{nick}"}}"#);
        assert_eq!(request(addr, "POST", &path, "", connect.as_bytes()).await.0, 200);
        let connected = request(addr, "GET", &path, "", b"").await;
        assert!(connected.1.starts_with("40{\"sid\""), "{connected:?}");
        paths.push(path);
    }
    let before = crate::metrics::scrape(&server).await;
    // Counted as connections of their own transport.
    assert_eq!(before[r#"chat_connections{transport="socketio"}"#], 2.0);
    assert_eq!(before[r#"chat_connections_opened_total{transport="socketio"}"#], 2.0);
    let said = br#"42["chat message","counted"]"#;
    assert_eq!(request(addr, "POST", &paths[0], "", said).await.0, 200);
    // Each gets the classic packet, and nothing else.
    let mut packets = Vec::new();
    for path in &paths {
        let (status, packet) = request(addr, "GET", path, "", b"").await;
        assert_eq!(status, 200);
        assert!(packet.starts_with(r#"42["chat message","counted","#), "{packet}");
        packets.push(packet);
    }
    let after = crate::metrics::scrape(&server).await;
    let moved = |key: &str| after[key] - before.get(key).copied().unwrap_or(0.0);
    assert_eq!(moved("chat_deliveries_total"), 2.0);
    let bytes: usize = packets.iter().map(String::len).sum();
    assert_eq!(moved("chat_delivered_bytes_total"), bytes as f64);
    server.shutdown().await;
}
