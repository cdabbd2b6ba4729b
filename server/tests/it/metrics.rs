//! `GET /metrics` (issue #19): scraped while real clients chat, the
//! counters move as the traffic says — messages, deliveries, a commit,
//! refusals, errors, a rate limit, a slow consumer's 4008, resumes — and
//! only a scraper with the token reads them.

use std::collections::BTreeMap;
use std::time::Duration;

use chat_server::ServerConfig;
use serde_json::json;

use crate::support::{Client, Server, WAIT, http_get, http_get_at};

pub(crate) const TOKEN: &str = "scrape-me";

/// Every sample of a scrape, by name and labels as written.
pub(crate) async fn scrape(server: &Server) -> BTreeMap<String, f64> {
    let (status, headers, body) = http_get(server, "/metrics", Some(TOKEN)).await;
    assert_eq!(status, 200);
    let content_type = headers.iter().find(|(name, _)| name == "content-type").unwrap();
    assert!(content_type.1.starts_with("application/openmetrics-text"), "{content_type:?}");
    let text = String::from_utf8(body).unwrap();
    assert!(text.ends_with("# EOF\n"), "an OpenMetrics exposition ends so");
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .map(|line| {
            let (key, value) = line.rsplit_once(' ').unwrap();
            (key.to_owned(), value.parse().unwrap())
        })
        .collect()
}

/// Scrapes until `key`'s value passes `check` (gauges are set once a
/// second); its value.
pub(crate) async fn until(server: &Server, key: &str, check: impl Fn(f64) -> bool) -> f64 {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let value = scrape(server).await.get(key).copied();
        if let Some(value) = value.filter(|&v| check(v)) {
            return value;
        }
        assert!(tokio::time::Instant::now() < deadline, "{key} stayed {value:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn config() -> ServerConfig {
    let mut config = crate::support::slow_consumer_config();
    config.metrics_token = Some(TOKEN.to_owned());
    config
}

/// A WebSocket upgrade from a page of another site: its status.
async fn upgrade_from_another_site(server: &Server) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let request = "GET /ws HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n\
                   Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\
                   Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
                   Origin: https://evil.example\r\n\r\n";
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await.unwrap();
    String::from_utf8_lossy(&answer).split(' ').nth(1).unwrap().parse().unwrap()
}

#[tokio::test]
async fn only_a_scraper_with_the_token_reads_the_metrics_and_a_flood_shows_as_rate_limited() {
    let mut config = config();
    // A burst of five messages, then one a second.
    config.chat.messages_per_sec = 1;
    config.chat.messages_burst = 5;
    let server = Server::start(config).await;
    let (status, headers, _) = http_get(&server, "/metrics", None).await;
    assert_eq!(status, 401);
    assert!(headers.iter().any(|(name, value)| name == "www-authenticate" && value == "Bearer"));
    assert_eq!(http_get(&server, "/metrics", Some("guess")).await.0, 401);
    let metrics = scrape(&server).await;
    assert_eq!(metrics.get("chat_messages_total"), Some(&0.0));
    assert!(metrics.contains_key("process_resident_memory_bytes"));
    assert!(
        !metrics.keys().any(|key| key.starts_with("chat_redis")),
        "no cluster, no Redis figures"
    );
    // Without a token the chat's port has no /metrics at all.
    let open = Server::start(ServerConfig::default()).await;
    assert_eq!(http_get(&open, "/metrics", None).await.0, 404);
    open.shutdown().await;

    // A flood past the burst: refused by the message rate.
    let mut alice = Client::in_room(&server, "alice", "lobby").await;
    for i in 0..8 {
        alice.send(json!({"type": "say", "room": "lobby", "text": format!("flood {i}")})).await;
    }
    assert_eq!(alice.next_of("error").await["code"], "rate_limited");
    until(&server, "chat_rate_limited_total{kind=\"messages\"}", |v| v >= 1.0).await;
    until(&server, "chat_errors_total{code=\"rate_limited\"}", |v| v >= 1.0).await;
    let scraped = scrape(&server).await;
    assert_eq!(scraped["chat_rate_limited_total{kind=\"joins\"}"], 0.0, "other kinds untouched");
    server.shutdown().await;
}

#[tokio::test]
async fn the_counters_move_as_clients_chat_are_refused_flood_and_fall_behind() {
    let server = Server::start(config()).await;
    let mut alice = Client::in_room(&server, "alice", "lobby").await;
    let mut bob = Client::in_room(&server, "bob", "lobby").await;
    alice.expect_presence("join", "bob").await;
    until(&server, "chat_connections{transport=\"websocket\"}", |v| v == 2.0).await;
    until(&server, "chat_room_members", |v| v == 2.0).await;
    until(&server, "chat_sessions_attached", |v| v == 2.0).await;

    // A message: accepted, committed, delivered to both.
    let before = scrape(&server).await;
    alice.send(json!({"type": "say", "room": "lobby", "text": "hello"})).await;
    assert_eq!(bob.next_of("message").await["text"], "hello");
    alice.next_of("message").await;
    let after = scrape(&server).await;
    let moved = |key: &str| after.get(key).unwrap_or(&0.0) - before.get(key).unwrap_or(&0.0);
    assert_eq!(moved("chat_messages_total"), 1.0);
    assert!(moved("chat_deliveries_total") >= 2.0, "{}", moved("chat_deliveries_total"));
    assert!(moved("chat_delivered_bytes_total") > 2.0 * "hello".len() as f64);
    assert!(moved("chat_frames_received_total") >= 1.0);
    assert!(moved("chat_storage_commit_seconds_count") >= 1.0, "the message was committed");
    assert!(moved("chat_fanout_recipients_count") >= 1.0);
    assert!(after["chat_hub_turn_seconds_count"] > 0.0);

    // Refusals: another site's page, a malformed frame.
    assert_eq!(upgrade_from_another_site(&server).await, 403);
    until(&server, "chat_connections_refused_total{reason=\"origin\"}", |v| v == 1.0).await;
    alice.send_text("{not json").await;
    alice.expect_error("bad_json").await;
    until(&server, "chat_errors_total{code=\"bad_json\"}", |v| v == 1.0).await;

    // A goodbye: closed by the client with 1000.
    alice.quit().await;
    until(&server, "chat_connections_closed_total{code=\"1000\"}", |v| v == 1.0).await;
    until(&server, "chat_connections{transport=\"websocket\"}", |v| v == 1.0).await;

    // bob stops reading while carol fills his queue: he is cut off (4008).
    let mut carol = Client::in_room(&server, "carol", "lobby").await;
    let text = "z".repeat(59_000);
    for i in 0..200 {
        carol.send(json!({"type": "say", "room": "lobby", "text": format!("{i}:{text}")})).await;
        let away = loop {
            let frame = carol.recv().await;
            if frame["type"] == "presence" && frame["nick"] == "bob" && frame["event"] == "away" {
                break true;
            }
            if frame["type"] == "message" || frame["type"] == "error" {
                break false;
            }
        };
        if away {
            break;
        }
    }
    until(&server, "chat_connections_closed_total{code=\"4008\"}", |v| v == 1.0).await;
    until(&server, "chat_outgoing_queued_frames_max", |v| v < 16.0).await;

    // bob comes back: his session and his room resume.
    let session = bob.session.clone();
    let (mut back, welcome) = Client::resume(&server, &session).await;
    assert_eq!(welcome["resumed"], true);
    back.send(json!({"type": "join", "room": "lobby", "after": 1})).await;
    back.expect("joined").await;
    until(&server, "chat_resumes_total{outcome=\"session_resumed\"}", |v| v == 1.0).await;
    until(&server, "chat_resumes_total{outcome=\"room_resumed\"}", |v| v == 1.0).await;
    until(&server, "chat_history_messages_served_total", |v| v >= 1.0).await;

    server.shutdown().await;
}

#[tokio::test]
async fn metrics_listen_serves_metrics_and_probes_alone_and_the_chat_port_none() {
    use chat_test_support::{Proc, ready, server_command};
    let mut command = server_command();
    command.args(["--ephemeral", "--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0"]);
    let mut server = Proc::spawn(&mut command);
    let line = server.expect_where(|line| line.starts_with("metrics on "), "metrics on");
    let base = ready(&mut server);
    let addr = |url: &str| -> std::net::SocketAddr {
        url.trim_start_matches("http://").split('/').next().unwrap().parse().unwrap()
    };
    let (metrics, chat) = (addr(line.trim_start_matches("metrics on ")), addr(&base));
    let (status, _, body) = http_get_at(metrics, "/metrics", None).await;
    assert_eq!(status, 200, "no token needed on the private port");
    // A scraper names the node as it knows it.
    let named = named_host_get(metrics, "/metrics", "chat-7.internal:9090").await;
    assert!(named.starts_with("HTTP/1.1 200"), "{named}");
    let named = named_host_get(chat, "/", "chat-7.internal:8080").await;
    assert!(named.starts_with("HTTP/1.1 421"), "the chat's port still checks: {named}");
    assert!(String::from_utf8_lossy(&body).contains("chat_connections_opened_total"));
    assert_eq!(http_get_at(metrics, "/readyz", None).await.0, 200);
    assert_eq!(http_get_at(metrics, "/livez", None).await.0, 200);
    for path in ["/", "/ws", "/stats", "/files/x"] {
        assert_eq!(http_get_at(metrics, path, None).await.0, 404, "{path} is the chat's");
    }
    let (status, _, body) = http_get_at(chat, "/metrics", None).await;
    assert_eq!(status, 404);
    assert!(String::from_utf8_lossy(&body).contains("--metrics-listen"));
    assert_eq!(http_get_at(chat, "/", None).await.0, 200);
}

/// A GET naming `host`: the answer's head and body.
async fn named_host_get(addr: std::net::SocketAddr, path: &str, host: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await.unwrap();
    String::from_utf8_lossy(&answer).into_owned()
}

#[tokio::test]
async fn an_error_is_counted_once_whichever_path_answers_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = crate::uploads::config(dir.path(), 1 << 20);
    config.metrics_token = Some(TOKEN.to_owned());
    let server = Server::start(config).await;
    let mut alice = Client::hello(&server, "alice").await;
    // The core refuses the upload; the hub answers it.
    let upload = json!({"type": "upload", "id": "u1", "room": "elsewhere", "name": "a.png",
                        "mime": "image/png", "size": 10, "text": ""});
    alice.send(upload).await;
    let refused = alice.next_of("error").await;
    let key = format!("chat_errors_total{{code=\"{}\"}}", refused["code"].as_str().unwrap());
    assert_eq!(until(&server, &key, |v| v > 0.0).await, 1.0, "{refused}");
    // The core refuses a command and answers it itself.
    alice.send(json!({"type": "say", "room": "elsewhere", "text": "hi"})).await;
    alice.next_of("error").await;
    assert_eq!(until(&server, &key, |v| v > 1.0).await, 2.0);
    server.shutdown().await;
}
