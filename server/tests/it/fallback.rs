//! The HTTP fallback (issue #18): an event stream out, posts in, and the
//! same member, rules and guarantees as a WebSocket connection.

use std::time::Duration;

use chat_server::ServerConfig;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::{Client, Server, WAIT};

/// An event stream opened by hand: the socket (read it or not), and the
/// stream's name from its `open` event.
async fn open_stream(server: &Server) -> (TcpStream, String) {
    open_stream_at(server.addr).await
}

/// The same, at `addr`.
async fn open_stream_at(addr: std::net::SocketAddr) -> (TcpStream, String) {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let request = "GET /ws HTTP/1.1\r\nHost: localhost\r\nAccept: text/event-stream\r\n\r\n";
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut got = Vec::new();
    let name = loop {
        let mut chunk = [0u8; 1024];
        let read = tokio::time::timeout(WAIT, stream.read(&mut chunk)).await.unwrap().unwrap();
        assert!(read > 0, "the stream ended: {}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&chunk[..read]);
        let text = String::from_utf8_lossy(&got).into_owned();
        if let Some(open) = text.split("event: stream\ndata: ").nth(1)
            && let Some((name, _)) = open.split_once("\n\n")
        {
            assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
            assert!(text.contains("Content-Type: text/event-stream\r\n"), "{text}");
            assert!(text.contains("X-Accel-Buffering: no\r\n"), "{text}");
            break name.to_owned();
        }
    };
    (stream, name)
}

/// Posts `body` as the `seq`th request of stream `name`: the status.
async fn post(server: &Server, name: &str, seq: u64, body: &str) -> u16 {
    post_at(server.addr, name, seq, body).await
}

/// The same, to `addr`.
async fn post_at(addr: std::net::SocketAddr, name: &str, seq: u64, body: &str) -> u16 {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let request = format!(
        "POST /ws?stream={name}&seq={seq} HTTP/1.1\r\nHost: localhost\r\n\
         Content-Type: text/plain\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(WAIT, stream.read_to_end(&mut answer)).await.unwrap().unwrap();
    let answer = String::from_utf8_lossy(&answer).into_owned();
    answer.split(' ').nth(1).and_then(|code| code.parse().ok()).unwrap_or(0)
}

/// Reads a hand-opened stream until it ends: everything it said.
async fn read_to_end(stream: &mut TcpStream) -> String {
    let mut all = Vec::new();
    tokio::time::timeout(WAIT, stream.read_to_end(&mut all)).await.unwrap().unwrap();
    String::from_utf8_lossy(&all).into_owned()
}

#[tokio::test]
async fn a_fallback_client_and_a_websocket_client_chat_both_ways_and_share_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(crate::uploads::config(dir.path(), 1 << 20)).await;
    let mut alice = Client::hello_sse(&server, "alice").await;
    alice.send(json!({"type": "join", "room": "lobby"})).await;
    alice.expect("joined").await;
    let mut bob = Client::in_room(&server, "bob", "lobby").await;
    alice.expect_presence("join", "bob").await;
    alice.send(json!({"type": "say", "room": "lobby", "text": "over http", "id": "a1"})).await;
    assert_eq!(alice.expect("message").await["id"], "a1");
    assert_eq!(bob.expect("message").await["text"], "over http");
    bob.send(json!({"type": "say", "room": "lobby", "text": "over a websocket"})).await;
    bob.expect("message").await;
    assert_eq!(alice.expect("message").await["text"], "over a websocket");
    // Typing, history: the same member as any other.
    alice.send(json!({"type": "typing", "room": "lobby"})).await;
    assert_eq!(bob.expect("typing").await["nick"], "alice");
    alice.send(json!({"type": "history", "room": "lobby", "before": 3, "id": "h"})).await;
    let texts: Vec<_> = alice.expect("history").await["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["text"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(texts, ["over http", "over a websocket"]);
    // A file: the announcement, then its parts as binary posts.
    let png = crate::uploads::PNG;
    crate::uploads::upload(&mut alice, "u1", "lobby", "dot.png", "image/png", png).await;
    let seen = bob.expect("message").await;
    assert_eq!(
        (seen["attachment"]["name"].as_str(), seen["attachment"]["size"].as_u64()),
        (Some("dot.png"), Some(png.len() as u64))
    );
    assert_eq!(alice.expect("message").await["id"], "u1");
    // A message and a goodbye at once: the message goes, then the
    // goodbye ends the session, as a close 1000 does.
    alice.send(json!({"type": "say", "room": "lobby", "text": "bye all"})).await;
    alice.quit().await;
    assert_eq!(bob.expect("message").await["text"], "bye all");
    bob.expect_presence("leave", "alice").await;
    bob.expect_nothing_pending().await;
    server.shutdown().await;
}

#[tokio::test]
async fn posts_are_taken_once_and_in_order_and_mistakes_are_refused_clearly() {
    let server = Server::start(ServerConfig::default()).await;
    let (mut stream, name) = open_stream(&server).await;
    let hello = r#"{"type":"hello","nick":"alice"}"#;
    assert_eq!(post(&server, &name, 0, hello).await, 200);
    // Sent again (its answer lost): taken once, so no second welcome.
    assert_eq!(post(&server, &name, 0, hello).await, 200);
    assert_eq!(post(&server, &name, 5, r#"{"type":"ping","id":"p"}"#).await, 409, "skips ahead");
    let batch = "{\"type\":\"ping\",\"id\":\"one\"}\n{\"type\":\"ping\",\"id\":\"two\"}\n";
    assert_eq!(post(&server, &name, 1, batch).await, 200);
    assert_eq!(post(&server, "0123abcd", 0, hello).await, 404, "no such stream");
    assert_eq!(post(&server, &name, 2, "not json").await, 200, "taken; the error is a frame");
    assert_eq!(post(&server, &name, 3, "").await, 200, "an empty request: a sign of life");
    assert_eq!(post(&server, &name, 4, "").await, 200);
    // What the server said, each once: one welcome, the batch's pongs in
    // order, the error for the line that was not JSON.
    let frames = frames_until(&mut stream, |frames| frames.len() >= 4).await;
    let kinds: Vec<_> = frames
        .iter()
        .map(|f| format!("{}:{}", f["type"].as_str().unwrap(), f["id"].as_str().unwrap_or("")))
        .collect();
    assert_eq!(kinds, ["welcome:", "pong:one", "pong:two", "error:"]);
    assert_eq!(frames[3]["code"], "bad_json");
    // The goodbye, then the stream ends with nothing more.
    let mut goodbye = TcpStream::connect(server.addr).await.unwrap();
    let request = format!(
        "POST /ws?stream={name}&seq=5&close=1000 HTTP/1.1\r\nHost: localhost\r\nContent-Length: 0\r\n\r\n"
    );
    goodbye.write_all(request.as_bytes()).await.unwrap();
    let rest = read_to_end(&mut stream).await;
    assert!(!rest.contains("data: {"), "{rest}");
    assert_eq!(post(&server, &name, 6, hello).await, 404, "the stream is gone");
    server.shutdown().await;
}

#[tokio::test]
async fn a_fallback_client_that_stops_reading_is_cut_off_with_4008_and_resumes_without_loss() {
    let server = Server::start(crate::support::slow_consumer_config()).await;
    let (mut sleeper, name) = open_stream(&server).await;
    let join = "{\"type\":\"hello\",\"nick\":\"sleeper\"}\n{\"type\":\"join\",\"room\":\"lobby\"}";
    assert_eq!(post(&server, &name, 0, join).await, 200);
    let mut sender = Client::in_room(&server, "sender", "lobby").await;
    // Far more than socket buffers hold; the sleeper reads none of it.
    const COUNT: u64 = 200;
    let text = "z".repeat(59_000);
    let mut away = false;
    for i in 1..=COUNT {
        sender.send(json!({"type": "say", "room": "lobby", "text": format!("{i}:{text}")})).await;
        loop {
            let frame = sender.recv().await;
            away |= frame["type"] == "presence" && frame["event"] == "away";
            if frame["type"] == "message" {
                break;
            }
        }
    }
    assert!(away, "the sleeper was cut off, and the room told");
    // What reached it before the cut: the stream then ends.
    let said = read_to_end(&mut sleeper).await;
    let session = said.split("\"session\":\"").nth(1).unwrap().split('"').next().unwrap();
    // Whole events only: the cut may fall inside one.
    let whole = said.rsplit_once("\n\n").map_or("", |(whole, _)| whole);
    let seen = whole.matches("\"type\":\"message\"").count() as u64;
    assert!(seen < COUNT, "cut off before the end");
    // Back over the fallback: what it missed comes with the join.
    let mut back = Client::connect_sse(&server).await;
    back.send(json!({"type": "hello", "session": session})).await;
    assert_eq!(back.expect("welcome").await["resumed"], true);
    back.send(json!({"type": "join", "room": "lobby", "after": seen})).await;
    let joined = back.expect("joined").await;
    assert_eq!(joined["resume"], "resumed", "{}", joined["resume"]);
    let seqs = |frame: &serde_json::Value, field: &str| -> Vec<u64> {
        frame[field].as_array().unwrap().iter().map(|m| m["seq"].as_u64().unwrap()).collect()
    };
    // The newest 40 came with joined; page back for the rest.
    let mut got = seqs(&joined, "history");
    while got.first().is_some_and(|&first| first > seen + 1) {
        back.send(json!({"type": "history", "room": "lobby", "before": got[0], "limit": 40})).await;
        let mut older = seqs(&back.expect("history").await, "messages");
        assert!(!older.is_empty());
        older.retain(|&seq| seq > seen);
        older.extend(got);
        got = older;
    }
    assert_eq!(got, (seen + 1..=COUNT).collect::<Vec<_>>(), "nothing lost");
    server.shutdown().await;
}

#[tokio::test]
async fn a_silent_fallback_client_is_closed_and_one_that_answers_pings_stays() {
    let config = ServerConfig {
        ping_interval: Duration::from_millis(100),
        ping_misses: 2,
        ..ServerConfig::default()
    };
    let server = Server::start(config).await;
    let mut answering = Client::hello_sse(&server, "alive").await;
    let (mut silent, name) = open_stream(&server).await;
    assert_eq!(post(&server, &name, 0, r#"{"type":"hello","nick":"silent"}"#).await, 200);
    // The one that answers pings reads its stream meanwhile, as every
    // client does; the silent one's stream is read to its end.
    let silent = tokio::spawn(async move { read_to_end(&mut silent).await });
    let said = tokio::select! {
        said = silent => said.unwrap(),
        read = futures_util::StreamExt::next(&mut answering.socket) => panic!("{read:?}"),
    };
    assert!(said.matches("event: ping\n").count() >= 2, "{said}");
    assert!(said.ends_with("event: close\ndata: 4010 no answer to pings\n\n"), "{said}");
    // Three intervals and more later, the one that answers is still here.
    answering.expect_nothing_pending().await;
    server.shutdown().await;
}

#[tokio::test]
async fn a_stream_whose_client_keeps_posting_still_gets_a_heartbeat_for_the_proxies() {
    let config =
        ServerConfig { ping_interval: Duration::from_millis(100), ..ServerConfig::default() };
    let server = Server::start(config).await;
    let (mut stream, name) = open_stream(&server).await;
    assert_eq!(post(&server, &name, 0, r#"{"type":"hello","nick":"busy"}"#).await, 200);
    // Never silent (a post every few ms), so never pinged: yet the stream
    // says something each interval, as proxies with a read timeout need.
    let mut said = String::new();
    let mut seq = 1;
    while !said.contains("\n:\n\n") {
        assert_eq!(post(&server, &name, seq, "").await, 200);
        seq += 1;
        let mut chunk = [0u8; 1024];
        if let Ok(read) =
            tokio::time::timeout(Duration::from_millis(20), stream.read(&mut chunk)).await
        {
            said.push_str(&String::from_utf8_lossy(&chunk[..read.unwrap()]));
        }
    }
    assert!(!said.contains("event: ping"), "a client that posts is not pinged: {said}");
    server.shutdown().await;
}

#[tokio::test]
async fn shutdown_closes_fallback_connections_with_1012_and_a_reconnect_delay() {
    let config = ServerConfig { drain_window: Duration::from_secs(2), ..ServerConfig::default() };
    let server = Server::start(config).await;
    let mut client = Client::hello_sse(&server, "alice").await;
    let stop = tokio::spawn(server.shutdown());
    let (close, _) = client.until_closed().await;
    let close = close.expect("a close event");
    assert_eq!(u16::from(close.code), 1012);
    assert!(chat_protocol::retry_after(&close.reason).is_some_and(|ms| ms <= 2000));
    stop.await.unwrap();
}

#[tokio::test]
async fn a_fallback_stream_takes_a_place_under_the_per_address_limit() {
    let config = ServerConfig { max_connections_per_ip: 2, ..ServerConfig::default() };
    let server = Server::start(config).await;
    let _first = Client::hello_sse(&server, "alice").await;
    let _second = open_stream(&server).await;
    // Both places are held by streams: the next request is turned away.
    assert_eq!(post(&server, "whatever", 0, "").await, 429);
    server.shutdown().await;
}

/// Two nodes on one Redis, `a` and `b`.
async fn two_nodes(redis: &chat_test_support::Redis) -> (Server, Server) {
    let node = |name: &str| ServerConfig {
        redis: Some(redis.url()),
        node_id: Some(name.to_owned()),
        ..ServerConfig::default()
    };
    (Server::start(node("a")).await, Server::start(node("b")).await)
}

/// The frames of a hand-opened stream's events read so far, until `until`
/// says it has what it waits for.
async fn frames_until(
    stream: &mut TcpStream,
    until: impl Fn(&[serde_json::Value]) -> bool,
) -> Vec<serde_json::Value> {
    let mut said = String::new();
    loop {
        let frames: Vec<serde_json::Value> = said
            .split("\n\n")
            .filter_map(|event| event.strip_prefix("data: "))
            .filter_map(|data| serde_json::from_str(data).ok())
            .collect();
        if until(&frames) {
            return frames;
        }
        let mut chunk = [0u8; 4096];
        let read = tokio::time::timeout(WAIT, stream.read(&mut chunk)).await.unwrap().unwrap();
        assert!(read > 0, "the stream ended: {said}");
        said.push_str(&String::from_utf8_lossy(&chunk[..read]));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_a_cluster_a_post_ahead_of_its_turn_waits_for_the_one_before_it() {
    // (The one before may be on its way through another node: answered
    // there once handed on, not once taken.)
    let redis = chat_test_support::Redis::start();
    let (a, _b) = two_nodes(&redis).await;
    let (mut stream, name) = open_stream(&a).await;
    let ahead = {
        let name = name.clone();
        let ping = r#"{"type":"ping","id":"second"}"#;
        tokio::spawn(async move { post_at(a.addr, &name, 1, ping).await })
    };
    // The second post arrives first; watched for a moment, it waits
    // (refused, it would be answered 409 at once).
    let mut waited = 0;
    while !ahead.is_finished() && waited < 20 {
        tokio::task::yield_now().await;
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        waited += 1;
    }
    assert!(!ahead.is_finished(), "it waits");
    let first = "{\"type\":\"hello\",\"nick\":\"alice\"}\n{\"type\":\"ping\",\"id\":\"first\"}";
    assert_eq!(post_at(a.addr, &name, 0, first).await, 200);
    assert_eq!(ahead.await.unwrap(), 200);
    let frames = frames_until(&mut stream, |frames| {
        frames.iter().filter(|f| f["type"] == "pong").count() == 2
    })
    .await;
    let ids: Vec<&str> =
        frames.iter().filter(|f| f["type"] == "pong").map(|f| f["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["first", "second"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_a_cluster_posts_to_the_node_without_the_stream_reach_it_in_order() {
    let redis = chat_test_support::Redis::start();
    let (a, b) = two_nodes(&redis).await;
    let mut bob = Client::in_room(&b, "bob", "lobby").await;
    let (mut stream, name) = open_stream(&a).await;
    let hello = "{\"type\":\"hello\",\"nick\":\"alice\"}\n{\"type\":\"join\",\"room\":\"lobby\"}";
    // Every other post to the node that does not hold the stream.
    assert_eq!(post_at(b.addr, &name, 0, hello).await, 200);
    for n in 1..=6 {
        let node = if n % 2 == 1 { a.addr } else { b.addr };
        let say =
            format!("{{\"type\":\"say\",\"room\":\"lobby\",\"text\":\"n{n}\",\"id\":\"s{n}\"}}");
        assert_eq!(post_at(node, &name, n, &say).await, 200);
    }
    // Sent again through the other node: still taken once.
    let again = "{\"type\":\"say\",\"room\":\"lobby\",\"text\":\"n6\",\"id\":\"s6\"}";
    assert_eq!(post_at(a.addr, &name, 6, again).await, 200);
    assert_eq!(post_at(b.addr, &name, 7, r#"{"type":"ping","id":"last"}"#).await, 200);
    let frames =
        frames_until(&mut stream, |frames| frames.iter().any(|f| f["type"] == "pong")).await;
    let echoes: Vec<_> = frames
        .iter()
        .filter(|f| f["type"] == "message")
        .map(|f| f["text"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(echoes, ["n1", "n2", "n3", "n4", "n5", "n6"], "each once, in the order sent");
    let mut seen = Vec::new();
    while seen.len() < 6 {
        let frame = bob.next_of("message").await;
        seen.push(frame["text"].as_str().unwrap().to_owned());
    }
    assert_eq!(seen, ["n1", "n2", "n3", "n4", "n5", "n6"]);
    // A stream of a node run that is gone: 404, not a hang.
    assert_eq!(post_at(b.addr, "a.00000000.ffff", 0, "").await, 404);
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_one_round_robin_nginx_two_nodes_serve_a_fallback_client_with_no_stickiness() {
    let redis = chat_test_support::Redis::start();
    let (a, b) = two_nodes(&redis).await;
    // The proxy drops upgrades, and spreads requests over both nodes.
    let nginx = chat_test_support::ReverseProxy::start(&[a.addr, b.addr], false);
    let mut alice = Client::connect_sse_to(&format!("ws://{}/ws", nginx.addr())).await;
    alice.send(json!({"type": "hello", "nick": "alice"})).await;
    alice.expect("welcome").await;
    alice.send(json!({"type": "join", "room": "lobby"})).await;
    alice.expect("joined").await;
    let mut bob = Client::in_room(&a, "bob", "lobby").await;
    let mut carol = Client::in_room(&b, "carol", "lobby").await;
    for n in 0..10 {
        alice.send(json!({"type": "say", "room": "lobby", "text": format!("m{n}")})).await;
        assert_eq!(alice.next_of("message").await["text"], format!("m{n}"));
    }
    for member in [&mut bob, &mut carol] {
        for n in 0..10 {
            assert_eq!(member.next_of("message").await["text"], format!("m{n}"));
        }
    }
    carol.send(json!({"type": "say", "room": "lobby", "text": "back at you"})).await;
    assert_eq!(alice.next_of("message").await["text"], "back at you");
    drop(nginx);
    a.shutdown().await;
    b.shutdown().await;
}
