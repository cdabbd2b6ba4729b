//! The attacks of issue #12, each performed against a real server on
//! 127.0.0.1:0 (other loopback addresses play other hosts): the attacker is
//! stopped with a clear answer, and two bystanders keep chatting through it.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

#[allow(unused_imports)]
use crate::support::Bystanders as _;
use crate::support::{Bystanders, Client, RawClient, Server, WAIT, tcp_from};
use chat_core::Rate;
use chat_server::{MemoryStore, ServerConfig, Store, Uploads};
use chat_transport::tungstenite::Message;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn say(room: &str, text: &str, id: &str) -> Value {
    json!({"type": "say", "room": room, "text": text, "id": id})
}

/// The next frame that is not presence or typing.
async fn next_answer(client: &mut Client) -> Value {
    loop {
        let frame = client.recv().await;
        if frame["type"] != "presence" && frame["type"] != "typing" {
            return frame;
        }
    }
}

/// Sends `frame` until it is not refused with `unavailable`, waiting as
/// the server says between tries (a few at most).
async fn say_until_stored(client: &mut Client, frame: Value) -> Value {
    for _ in 0..10 {
        client.send(frame.clone()).await;
        let answer = next_answer(client).await;
        if answer["type"] == "error" && answer["code"] == "unavailable" {
            let wait = answer["retry_after_ms"].as_u64().expect("a refusal says when to retry");
            tokio::time::sleep(Duration::from_millis(wait)).await;
            continue;
        }
        return answer;
    }
    panic!("storage never came back");
}

#[tokio::test]
async fn a_full_disk_refuses_messages_but_chat_goes_on_and_recovers_by_itself() {
    let failing = Arc::new(AtomicBool::new(false));
    let mut store = crate::support::FaultyStore::new(MemoryStore::new());
    let full = Arc::clone(&failing);
    store.commits_fail = Box::new(move || full.load(Ordering::SeqCst));
    let server = Server::start_with(ServerConfig::default(), Box::new(store)).await;
    let mut alice = Client::in_room(&server, "alice", "lobby").await;
    let mut bob = Client::in_room(&server, "bob", "lobby").await;
    alice.expect("presence").await;
    alice.send(say("lobby", "before", "b1")).await;
    assert_eq!(alice.expect("message").await["seq"], 1);
    assert_eq!(bob.expect("message").await["seq"], 1);

    failing.store(true, Ordering::SeqCst);
    alice.send(say("lobby", "lost", "l1")).await;
    let refused = alice.expect_error("unavailable").await;
    assert_eq!(refused["id"], "l1");
    assert!(refused["retry_after_ms"].as_u64().is_some_and(|ms| ms > 0), "{refused}");
    // While storage is down, a message is refused at once...
    bob.send(say("lobby", "me too?", "l2")).await;
    assert_eq!(bob.expect_error("unavailable").await["id"], "l2");
    // ...and everything that needs no storage goes on: typing, pings,
    // history, rooms and their members.
    alice.send(json!({"type": "typing", "room": "lobby"})).await;
    assert_eq!(bob.expect("typing").await["nick"], "alice");
    bob.send(json!({"type": "history", "room": "lobby", "id": "h"})).await;
    let history = bob.expect("history").await;
    let texts: Vec<&str> = history["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["text"].as_str().unwrap())
        .collect();
    assert_eq!(texts, vec!["before"], "what could not be stored was never shown");
    bob.send(json!({"type": "who", "room": "lobby", "id": "w"})).await;
    assert_eq!(bob.expect("members").await["members"], json!(["alice", "bob"]));
    bob.expect_nothing_pending().await;
    alice.expect_nothing_pending().await;
    // Not ready for traffic meanwhile, and says why; alive all the same.
    let (status, _, body) = crate::support::http_get(&server, "/readyz", None).await;
    assert_eq!(status, 503);
    assert!(String::from_utf8_lossy(&body).starts_with("not ready: storage is failing"));
    assert_eq!(crate::support::http_get(&server, "/livez", None).await.0, 200);

    // Space comes back: the next try after the delay goes through, with
    // the next number (the lost message took none), and its id is free.
    failing.store(false, Ordering::SeqCst);
    let stored = say_until_stored(&mut alice, say("lobby", "after", "a1")).await;
    assert_eq!((stored["type"].clone(), stored["seq"].clone()), (json!("message"), json!(2)));
    assert_eq!(bob.expect("message").await["text"], "after");
    let again = say_until_stored(&mut alice, say("lobby", "lost", "l1")).await;
    assert_eq!((again["seq"].clone(), again["text"].clone()), (json!(3), json!("lost")));
    // Ready again once storage took a message.
    let (status, _, body) = crate::support::http_get(&server, "/readyz", None).await;
    assert_eq!((status, body.as_slice()), (200, &b"ready\n"[..]));
    server.shutdown().await;
}

/// A server taking uploads into `dir`, and the config to change.
fn uploads_config(dir: &Path) -> ServerConfig {
    let mut config = ServerConfig {
        uploads: Some(Uploads {
            dir: dir.join("files"),
            max_bytes: 1 << 20,
            max_total_bytes: 1 << 30,
            min_free_bytes: 0,
        }),
        ..ServerConfig::default()
    };
    config.frames_per_sec = 10_000;
    config.frames_burst = 10_000;
    config
}

/// Announces a file of `bytes`: the `upload_ready` or the error.
async fn announce(client: &mut Client, id: &str, room: &str, bytes: &[u8]) -> Value {
    client
        .send(json!({"type": "upload", "id": id, "room": room, "name": format!("{id}.bin"),
                     "mime": "application/octet-stream", "size": bytes.len()}))
        .await;
    next_answer(client).await
}

/// Uploads `bytes`: the `message` carrying it, or the error.
async fn upload(client: &mut Client, id: &str, room: &str, bytes: &[u8]) -> Value {
    let ready = announce(client, id, room, bytes).await;
    if ready["type"] != "upload_ready" {
        return ready;
    }
    for chunk in bytes.chunks(16 * 1024) {
        client.socket.send(Message::binary(chunk.to_vec())).await.unwrap();
    }
    next_answer(client).await
}

/// The files stored under `dir`, partial uploads aside.
fn stored_files(dir: &Path) -> Vec<String> {
    let mut found = Vec::new();
    for shard in std::fs::read_dir(dir.join("files")).unwrap().flatten() {
        if shard.file_name() == "tmp" {
            continue;
        }
        for file in std::fs::read_dir(shard.path()).unwrap().flatten() {
            found.push(file.file_name().to_string_lossy().into_owned());
        }
    }
    found.sort();
    found
}

#[tokio::test]
async fn uploads_stop_at_the_session_address_and_server_quotas() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = uploads_config(dir.path());
    config.chat.upload_bytes_per_session = Rate::per_hour(2000, 2000);
    config.chat.upload_bytes_per_source = Rate::per_hour(2500, 2500);
    if let Some(uploads) = config.uploads.as_mut() {
        uploads.max_total_bytes = 3000;
    }
    let server = Server::start(config).await;
    let bystanders = Bystanders::start(&server, "lobby").await;
    let file = |n: u8| vec![n; 1000];
    let mut first = Client::hello_from(&server, "127.0.0.2", "mallory").await;
    first.send(json!({"type": "join", "room": "lobby"})).await;
    first.expect("joined").await;
    assert_eq!(upload(&mut first, "f1", "lobby", &file(1)).await["type"], "message");
    assert_eq!(upload(&mut first, "f2", "lobby", &file(2)).await["type"], "message");
    let session = upload(&mut first, "f3", "lobby", &file(3)).await;
    assert_eq!(session["code"], "quota_exceeded", "{session}");
    assert!(session["retry_after_ms"].as_u64().is_some_and(|ms| ms > 0), "{session}");
    // A second session from the same address shares the address's quota.
    let mut second = Client::hello_from(&server, "127.0.0.2", "mallory2").await;
    second.send(json!({"type": "join", "room": "lobby"})).await;
    second.expect("joined").await;
    let address = upload(&mut second, "g1", "lobby", &file(4)).await;
    assert_eq!(address["code"], "quota_exceeded", "{address}");
    assert!(address["message"].as_str().unwrap().contains("address"), "{address}");
    // Someone else may upload until the server's total is reached.
    let mut carol = Client::hello_from(&server, "127.0.0.3", "carol").await;
    carol.send(json!({"type": "join", "room": "lobby"})).await;
    carol.expect("joined").await;
    assert_eq!(upload(&mut carol, "c1", "lobby", &file(5)).await["type"], "message");
    let total = upload(&mut carol, "c2", "lobby", &file(6)).await;
    assert_eq!(total["code"], "quota_exceeded", "{total}");
    assert!(total["message"].as_str().unwrap().contains("storage is full"), "{total}");
    assert_eq!(stored_files(dir.path()).len(), 3, "only what was accepted is stored");
    bystanders.finish().await;
    server.shutdown().await;
}

#[tokio::test]
async fn uploads_stop_above_the_free_disk_floor_and_chat_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = uploads_config(dir.path());
    // Whatever this disk has free, keep a gigabyte more than that.
    let stats = rustix::fs::statvfs(dir.path()).unwrap();
    if let Some(uploads) = config.uploads.as_mut() {
        uploads.min_free_bytes = stats.f_bavail * stats.f_frsize + (1 << 30);
    }
    let server = Server::start(config).await;
    let bystanders = Bystanders::start(&server, "lobby").await;
    let mut mallory = Client::in_room(&server, "mallory", "lobby").await;
    let refused = announce(&mut mallory, "f1", "lobby", &[1; 100]).await;
    assert_eq!(refused["code"], "unavailable", "{refused}");
    assert!(refused["message"].as_str().unwrap().contains("disk"), "{refused}");
    mallory.send(say("lobby", "text still goes", "m1")).await;
    assert_eq!(next_answer(&mut mallory).await["type"], "message");
    bystanders.finish().await;
    server.shutdown().await;
}

#[tokio::test]
async fn a_file_whose_message_is_refused_is_not_kept() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = uploads_config(dir.path());
    config.chat.messages_burst = 1;
    config.chat.messages_per_sec = 1;
    let server = Server::start(config).await;
    let mut mallory = Client::in_room(&server, "mallory", "uploads").await;
    // Leaves the room before the last byte.
    let bytes = vec![7u8; 40_000];
    assert_eq!(announce(&mut mallory, "u1", "uploads", &bytes).await["type"], "upload_ready");
    mallory.socket.send(Message::binary(bytes[..20_000].to_vec())).await.unwrap();
    mallory.send(json!({"type": "leave", "room": "uploads"})).await;
    mallory.expect("left").await;
    mallory.socket.send(Message::binary(bytes[20_000..].to_vec())).await.unwrap();
    let refused = mallory.expect_error("not_in_room").await;
    assert_eq!(refused["id"], "u1");
    // Spends its message token while the file is on its way.
    mallory.send(json!({"type": "join", "room": "uploads"})).await;
    mallory.expect("joined").await;
    tokio::time::sleep(Duration::from_millis(1100)).await; // one token back
    assert_eq!(announce(&mut mallory, "u2", "uploads", &bytes).await["type"], "upload_ready");
    mallory.send(say("uploads", "a token spent", "s1")).await;
    assert_eq!(next_answer(&mut mallory).await["type"], "message");
    mallory.socket.send(Message::binary(bytes.clone())).await.unwrap();
    assert_eq!(mallory.expect_error("rate_limited").await["id"], "u2");
    mallory.expect_nothing_pending().await;
    assert_eq!(stored_files(dir.path()), Vec::<String>::new(), "no file without its message");
    server.shutdown().await;
}

/// `GET /files/{id}` with a session token: the status line.
async fn fetch_status(server: &Server, id: &str, session: &str) -> String {
    let mut stream = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let request = format!(
        "GET /files/{id} HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {session}\r\n\r\n",
        server.addr
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut head = vec![0u8; 64];
    let n = tokio::time::timeout(WAIT, stream.read(&mut head)).await.unwrap().unwrap();
    String::from_utf8_lossy(&head[..n]).lines().next().unwrap_or_default().to_owned()
}

#[tokio::test]
async fn files_go_with_their_messages() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = uploads_config(dir.path());
    config.chat.history_per_room = 2;
    config.prune_interval = Duration::from_millis(100);
    let server = Server::start(config).await;
    let bystanders = Bystanders::start(&server, "lobby").await;
    let mut alice = Client::in_room(&server, "owner", "files").await;
    let sent = upload(&mut alice, "f", "files", &[9; 5000]).await;
    let id = sent["attachment"]["id"].as_str().unwrap().to_owned();
    assert_eq!(fetch_status(&server, &id, &alice.session).await, "HTTP/1.1 200 OK");
    assert_eq!(stored_files(dir.path()), vec![id.clone()]);
    for i in 0..2 {
        alice.send(say("files", "newer", &format!("n{i}"))).await;
        alice.expect("message").await;
    }
    // The file's message is no longer retained: the file goes too.
    tokio::time::timeout(WAIT, async {
        while !stored_files(dir.path()).is_empty() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the file was swept");
    assert_eq!(fetch_status(&server, &id, &alice.session).await, "HTTP/1.1 404 Not Found");
    bystanders.finish().await;
    server.shutdown().await;
}

#[tokio::test]
async fn the_room_limit_cannot_be_used_up_by_one_address() {
    let mut config = ServerConfig::default();
    config.chat.max_rooms = 12;
    config.chat.rooms_created_per_session = Rate::per_hour(60, 4);
    config.chat.rooms_created_per_source = Rate::per_hour(60, 6);
    let server = Server::start(config).await;
    let bystanders = Bystanders::start(&server, "lobby").await;
    // From one address, two sessions try to open 10 rooms each, leaving a
    // message in each, then go: the address may create 6.
    let mut created = 0;
    let mut refused = 0;
    for n in 0..2 {
        let mut mallory = Client::hello_from(&server, "127.0.0.2", &format!("mallory{n}")).await;
        for r in 0..10 {
            let room = format!("spam-{n}-{r}");
            mallory.send(json!({"type": "join", "room": room})).await;
            let answer = next_answer(&mut mallory).await;
            if answer["type"] == "joined" {
                created += 1;
                mallory.send(say(&room, "x", &format!("x{r}"))).await;
                mallory.expect("message").await;
            } else {
                assert_eq!(answer["code"], "rate_limited", "{answer}");
                assert!(answer["retry_after_ms"].as_u64().is_some(), "{answer}");
                refused += 1;
            }
        }
        mallory.quit().await;
    }
    assert_eq!((created, refused), (6, 14), "the address's room quota");
    // Others fill the room limit with rooms that have messages, then go.
    for ip in 3..=5 {
        let mut other = Client::hello_from(&server, &format!("127.0.0.{ip}"), "other").await;
        for r in 0..3 {
            let room = format!("old-{ip}-{r}");
            other.send(json!({"type": "join", "room": room})).await;
            other.expect("joined").await;
            other.send(say(&room, "once", "o")).await;
            other.expect("message").await;
        }
        other.quit().await;
    }
    // The limit is a cache of idle rooms, not a door: carol opens a new
    // room, and an evicted one comes back with its history.
    let mut carol = Client::hello_from(&server, "127.0.0.6", "carol").await;
    for room in ["fresh", "spam-0-0", "old-3-0"] {
        carol.send(json!({"type": "join", "room": room, "id": room})).await;
        let joined = carol.expect("joined").await;
        if room != "fresh" {
            assert_eq!(joined["last_seq"], 1, "{joined}");
            assert_eq!(joined["history"].as_array().map(Vec::len), Some(1), "{joined}");
        }
    }
    bystanders.finish().await;
    server.shutdown().await;
}

#[tokio::test]
async fn ghost_sessions_from_one_address_cannot_fill_a_room() {
    let mut config = ServerConfig::default();
    config.chat.max_members_per_room = 30;
    config.chat.max_detached_per_source = 8;
    config.chat.rooms_created_per_source = Rate::per_hour(600, 600);
    let server = Server::start(config).await;
    let bystanders = Bystanders::start(&server, "lobby").await;
    for i in 0..60 {
        let mut ghost = Client::hello_from(&server, "127.0.0.2", &format!("ghost{i}")).await;
        ghost.send(json!({"type": "join", "room": "lobby"})).await;
        ghost.expect("joined").await;
        // Gone without a goodbye: its session waits for a resume.
        drop(ghost);
    }
    let mut carol = Client::hello_from(&server, "127.0.0.3", "carol").await;
    carol.send(json!({"type": "join", "room": "lobby"})).await;
    let joined = carol.expect("joined").await;
    let members = joined["members"].as_array().unwrap().len();
    // alice, bob, carol and at most the 8 newest ghosts (the others may
    // still be on their way out).
    assert!(members <= 3 + 8 + 1, "{members} members: {joined}");
    bystanders.finish().await;
    server.shutdown().await;
}

#[tokio::test]
async fn a_narrower_token_resuming_a_session_loses_what_it_does_not_allow() {
    let secret =
        chat_server::auth::Secret::new(b"0123456789abcdef0123456789abcdef".to_vec()).unwrap();
    let token = |rooms: Option<Vec<String>>| {
        secret.sign(&chat_server::auth::Claims {
            sub: "carol".into(),
            exp: chat_server::auth::now_secs() + 3600,
            rooms,
        })
    };
    let dir = tempfile::tempdir().unwrap();
    let mut config = uploads_config(dir.path());
    config.auth_secret = Some(secret.clone());
    let server = Server::start(config).await;
    let bystanders = Bystanders::start_with(&server, "lobby", |nick| {
        let token = secret.sign(&chat_server::auth::Claims {
            sub: nick.into(),
            exp: chat_server::auth::now_secs() + 3600,
            rooms: None,
        });
        json!({"type": "hello", "token": token})
    })
    .await;
    let mut alice = Client::connect(&server).await;
    alice.send(json!({"type": "hello", "token": token(None)})).await;
    let session = alice.expect("welcome").await["session"].as_str().unwrap().to_owned();
    alice.session = session.clone();
    for room in ["secret", "public-a"] {
        alice.send(json!({"type": "join", "room": room})).await;
        alice.expect("joined").await;
    }
    let file = upload(&mut alice, "f", "secret", &[5; 300]).await;
    let file = file["attachment"]["id"].as_str().unwrap().to_owned();
    drop(alice);
    let narrow = token(Some(vec!["public-*".into()]));
    let mut back = Client::connect(&server).await;
    back.send(json!({"type": "hello", "session": session, "token": narrow})).await;
    assert_eq!(back.expect("welcome").await["resumed"], true);
    assert_eq!(back.expect("left").await["room"], "secret");
    back.send(json!({"type": "join", "room": "secret", "after": 0})).await;
    back.expect_error("forbidden").await;
    back.send(json!({"type": "history", "room": "secret"})).await;
    back.expect_error("not_in_room").await;
    back.send(json!({"type": "who", "room": "secret"})).await;
    back.expect_error("not_in_room").await;
    back.send(json!({"type": "rooms", "id": "r"})).await;
    let rooms = back.expect("rooms").await;
    assert_eq!(rooms["rooms"], json!([{"name": "public-a", "members": 1}]), "{rooms}");
    assert_eq!(fetch_status(&server, &file, &session).await, "HTTP/1.1 404 Not Found");
    bystanders.finish().await;
    server.shutdown().await;
}

/// The next `stats` frame of a `$stats` subscriber.
async fn stats(watcher: &mut Client) -> Value {
    loop {
        let frame = watcher.recv().await;
        if frame["type"] == "stats" {
            return frame;
        }
    }
}

#[tokio::test]
async fn history_in_memory_stays_within_its_budget_and_the_rest_is_read_back() {
    let mut config = ServerConfig::default();
    config.chat.history_memory_max = 256 << 10;
    config.chat.rooms_created_per_source = Rate::per_hour(600, 600);
    config.chat.rooms_created_per_session = Rate::per_hour(600, 600);
    let server = Server::start(config).await;
    let bystanders = Bystanders::start(&server, "lobby").await;
    let mut watcher = Client::hello(&server, "watcher").await;
    watcher.send(json!({"type": "subscribe", "channel": "$stats"})).await;
    watcher.expect("subscribed").await;
    // 8 KB messages into 8 rooms: 640 KB of history, from 8 sessions on 8
    // addresses so no rate limit stops them first.
    let text = "h".repeat(8000);
    for r in 0..8 {
        let mut mallory = Client::hello_from(&server, &format!("127.0.0.{}", r + 2), "m").await;
        let room = format!("big-{r}");
        mallory.send(json!({"type": "join", "room": room})).await;
        mallory.expect("joined").await;
        for i in 0..10 {
            mallory.send(say(&room, &text, &format!("i{i}"))).await;
            mallory.expect("message").await;
        }
        mallory.quit().await;
    }
    // Twice, so the second was sent after the last message.
    stats(&mut watcher).await;
    let counted = stats(&mut watcher).await;
    let held = counted["history_bytes"].as_u64().unwrap();
    assert!(held > 0 && held <= 256 << 10, "{held} bytes of history in memory");
    // The oldest room's window was dropped: its history comes back whole.
    let mut carol = Client::hello_from(&server, "127.0.0.20", "carol").await;
    carol.send(json!({"type": "join", "room": "big-0", "after": 0})).await;
    let joined = carol.expect("joined").await;
    let seqs: Vec<u64> =
        joined["history"].as_array().unwrap().iter().map(|m| m["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, (1..=10).collect::<Vec<_>>(), "read back from storage, in order");
    bystanders.finish().await;
    server.shutdown().await;
}

#[tokio::test]
async fn history_pages_are_counted_against_a_byte_budget() {
    let mut config = ServerConfig::default();
    config.chat.history_bytes_per_conn = Rate::per_sec(100_000, 400_000);
    config.chat.messages_burst = 100;
    let server = Server::start(config).await;
    let bystanders = Bystanders::start(&server, "lobby").await;
    let mut mallory = Client::hello_from(&server, "127.0.0.2", "mallory").await;
    mallory.send(json!({"type": "join", "room": "archive"})).await;
    mallory.expect("joined").await;
    let text = "p".repeat(8000);
    for i in 0..60 {
        mallory.send(say("archive", &text, &format!("p{i}"))).await;
        next_answer(&mut mallory).await;
    }
    // A 100-byte request for the largest page, again and again.
    let mut received = 0usize;
    let mut refused = 0;
    for i in 0..20 {
        mallory
            .send(
                json!({"type": "history", "room": "archive", "limit": 200, "id": format!("h{i}")}),
            )
            .await;
        let answer = next_answer(&mut mallory).await;
        match answer["type"].as_str() {
            Some("history") => received += answer.to_string().len(),
            _ => {
                assert_eq!(answer["code"], "rate_limited", "{answer}");
                assert!(answer["retry_after_ms"].as_u64().is_some(), "{answer}");
                refused += 1;
            }
        }
    }
    assert!(refused > 0, "never refused");
    assert!(received < 700_000, "{received} bytes of history pulled at once");
    bystanders.finish().await;
    server.shutdown().await;
}

#[tokio::test]
async fn downloads_that_never_read_are_cut_off_and_limited_per_address() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = uploads_config(dir.path());
    config.transport.send_timeout = Duration::from_millis(300);
    config.max_downloads_per_ip = 3;
    const SIZE: usize = 8 << 20;
    if let Some(uploads) = config.uploads.as_mut() {
        uploads.max_bytes = SIZE as u64;
    }
    let server = Server::start(config).await;
    let mut owner = Client::in_room(&server, "owner", "lobby").await;
    let file = upload(&mut owner, "f", "lobby", &vec![3u8; SIZE]).await;
    let id = file["attachment"]["id"].as_str().unwrap().to_owned();
    let bystanders = Bystanders::start(&server, "lobby").await;
    // Five downloads from one address that never read.
    let mut stuck = Vec::new();
    for _ in 0..5 {
        // A small window, so the file cannot all wait in socket buffers.
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.set_recv_buffer_size(4096).unwrap();
        socket.bind("127.0.0.2:0".parse().unwrap()).unwrap();
        let mut stream = socket.connect(server.addr).await.unwrap();
        let request = format!(
            "GET /files/{id} HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {}\r\n\r\n",
            server.addr, owner.session
        );
        stream.write_all(request.as_bytes()).await.unwrap();
        stuck.push(stream);
    }
    // The two past the limit are told so at once.
    let mut statuses = Vec::new();
    for stream in &mut stuck {
        let mut head = [0u8; 12];
        tokio::time::timeout(WAIT, stream.read_exact(&mut head)).await.unwrap().unwrap();
        statuses.push(String::from_utf8_lossy(&head).into_owned());
    }
    statuses.sort();
    assert_eq!(
        statuses,
        ["HTTP/1.1 200", "HTTP/1.1 200", "HTTP/1.1 200", "HTTP/1.1 429", "HTTP/1.1 429"]
    );
    // The others are dropped once they stop taking bytes: reading now gets
    // the end of the connection before the end of the file.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    for mut stream in stuck {
        let mut all = Vec::new();
        let _ = tokio::time::timeout(WAIT, stream.read_to_end(&mut all)).await.expect("closed");
        assert!(all.len() < SIZE, "{} bytes: the whole file waited", all.len());
    }
    // A reader gets the file.
    assert_eq!(fetch_status(&server, &id, &owner.session).await, "HTTP/1.1 200 OK");
    bystanders.finish().await;
    server.shutdown().await;
}

#[tokio::test]
async fn slow_request_heads_from_one_address_do_not_lock_others_out() {
    let config = ServerConfig { max_connections_per_ip: 20, ..ServerConfig::default() };
    let server = Server::start(config).await;
    let bystanders = Bystanders::start(&server, "lobby").await;
    // 60 connections that never finish their request head.
    let mut slow = Vec::new();
    let mut refused = 0;
    for _ in 0..60 {
        let mut stream = tcp_from("127.0.0.2", server.addr).await;
        let _ = stream.write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n").await;
        slow.push(stream);
    }
    for stream in &mut slow {
        let mut first = [0u8; 12];
        let read = tokio::time::timeout(Duration::from_millis(200), stream.read(&mut first)).await;
        if let Ok(Ok(n)) = read
            && String::from_utf8_lossy(&first[..n]).starts_with("HTTP/1.1 429")
        {
            refused += 1;
        }
    }
    assert_eq!(refused, 40, "past 20, each is refused at once");
    // Everyone else is served: the health check and a new WebSocket.
    let mut health = tcp_from("127.0.0.3", server.addr).await;
    health.write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").await.unwrap();
    let mut answer = String::new();
    health.read_to_string(&mut answer).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    Client::hello_from(&server, "127.0.0.3", "carol").await;
    drop(slow);
    bystanders.finish().await;
    server.shutdown().await;
}

#[tokio::test]
async fn endless_empty_continuation_frames_close_the_connection() {
    let server = Server::start(ServerConfig::default()).await;
    let bystanders = Bystanders::start(&server, "lobby").await;
    let mut raw = RawClient::connect(&server).await;
    raw.send_text(r#"{"type":"hello","nick":"mallory"}"#).await;
    // A text frame that never ends, then empty continuations forever.
    raw.send_raw(&RawClient::frame(0x01, b"{")).await;
    let empty = RawClient::frame(0x00, b"");
    let mut burst = Vec::new();
    for _ in 0..10_000 {
        burst.extend_from_slice(&empty);
    }
    // The server closes long before the attacker runs out of frames.
    let _ = tokio::time::timeout(WAIT, raw.stream.write_all(&burst)).await;
    let (code, _) = raw.until_close().await;
    assert_eq!(code, Some(1008));
    bystanders.finish().await;
    server.shutdown().await;
}

#[tokio::test]
async fn a_session_token_the_client_made_up_is_not_adopted() {
    let server = Server::start(ServerConfig::default()).await;
    let bystanders = Bystanders::start(&server, "lobby").await;
    let mut mallory = Client::connect(&server).await;
    mallory.send(json!({"type": "hello", "nick": "mallory", "session": "a"})).await;
    let welcome = mallory.expect("welcome").await;
    assert_ne!(welcome["session"], "a", "{welcome}");
    assert!(welcome["session"].as_str().unwrap().len() >= 32, "a token of the server's");
    // Whoever later comes with "a" gets a session of their own.
    let mut victim = Client::connect(&server).await;
    victim.send(json!({"type": "hello", "nick": "victim", "session": "a"})).await;
    let theirs = victim.expect("welcome").await;
    assert_eq!(theirs["resumed"], false);
    assert_ne!(theirs["session"], welcome["session"]);
    mallory.expect_nothing_pending().await;
    bystanders.finish().await;
    server.shutdown().await;
}

#[tokio::test]
async fn nicks_of_sessions_restored_at_start_and_their_look_alikes_are_reserved() {
    let dir = tempfile::tempdir().unwrap();
    let store = || Box::new(chat_server::SqliteStore::open(dir.path()).unwrap()) as Box<dyn Store>;
    let server = Server::start_with(ServerConfig::default(), store()).await;
    let carol = Client::in_room(&server, "carol", "lobby").await;
    let token = carol.session.clone();
    let addr = server.addr.to_string();
    server.shutdown().await;
    drop(carol);
    let server = Server::start_on(&addr, ServerConfig::default(), store()).await;
    let bystanders = Bystanders::start(&server, "lobby").await;
    for nick in ["carol", "CAROL", "\u{441}arol", "caro1", "\u{1d41c}arol", "carôl"] {
        let mut mallory = Client::connect(&server).await;
        mallory.send(json!({"type": "hello", "nick": nick})).await;
        let refused = mallory.expect_error("nick_taken").await;
        assert!(refused["message"].as_str().is_some(), "{nick}: {refused}");
    }
    // A DM to carol meanwhile reaches no impostor; carol resumes her own.
    let mut dave = Client::hello(&server, "dave").await;
    dave.send(json!({"type": "dm", "to": "carol", "text": "psst", "id": "d"})).await;
    assert_eq!(dave.expect("direct").await["to"], "carol");
    let (_carol, welcome) = Client::resume(&server, &token).await;
    assert_eq!(
        (welcome["resumed"].clone(), welcome["nick"].clone()),
        (json!(true), json!("carol"))
    );
    bystanders.finish().await;
    server.shutdown().await;
}

#[tokio::test]
async fn members_of_a_room_are_for_its_members() {
    let mut config = ServerConfig::default();
    config.chat.public_rooms = false;
    let server = Server::start(config).await;
    let bystanders = Bystanders::start(&server, "lobby").await;
    let _carol = Client::in_room(&server, "carol", "secret").await;
    let mut mallory = Client::in_room(&server, "mallory", "elsewhere").await;
    mallory.send(json!({"type": "who", "room": "secret"})).await;
    mallory.expect_error("not_in_room").await;
    mallory.send(json!({"type": "rooms", "id": "r"})).await;
    let rooms = mallory.expect("rooms").await;
    assert_eq!(rooms["rooms"], json!([{"name": "elsewhere", "members": 1}]), "{rooms}");
    bystanders.finish().await;
    server.shutdown().await;
}

/// Sends a raw request and returns the status line of the answer.
async fn status_of(server: &Server, request: &str) -> String {
    let mut stream = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = String::new();
    let _ = tokio::time::timeout(WAIT, stream.read_to_string(&mut answer)).await;
    answer.lines().next().unwrap_or_default().to_owned()
}

#[tokio::test]
async fn a_page_that_rebinds_its_name_to_this_server_reaches_nothing() {
    let server = Server::start(ServerConfig::default()).await;
    let bystanders = Bystanders::start(&server, "lobby").await;
    let port = server.addr.port();
    let upgrade = |host: &str| {
        format!(
            "GET /ws HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
             Origin: http://{host}\r\n\r\n"
        )
    };
    let rebound = status_of(&server, &upgrade(&format!("attacker.example:{port}"))).await;
    assert_eq!(rebound, "HTTP/1.1 421 Misdirected Request");
    let page =
        status_of(&server, &format!("GET / HTTP/1.1\r\nHost: attacker.example:{port}\r\n\r\n"))
            .await;
    assert_eq!(page, "HTTP/1.1 421 Misdirected Request");
    let own =
        status_of(&server, &format!("GET / HTTP/1.1\r\nHost: localhost:{port}\r\n\r\n")).await;
    assert_eq!(own, "HTTP/1.1 200 OK");
    bystanders.finish().await;
    server.shutdown().await;
    // A name the operator allows is served.
    let mut config = ServerConfig::default();
    config.transport.allowed_hosts = vec!["chat.example".into()];
    let server = Server::start(config).await;
    let port = server.addr.port();
    let mut stream = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    stream.write_all(upgrade(&format!("chat.example:{port}")).as_bytes()).await.unwrap();
    let mut head = [0u8; 32];
    tokio::time::timeout(WAIT, stream.read_exact(&mut head)).await.unwrap().unwrap();
    assert!(head.starts_with(b"HTTP/1.1 101 Switching Protocols"));
    server.shutdown().await;
}

#[tokio::test]
async fn ambiguous_request_bodies_are_refused_like_nginx_does() {
    let server = Server::start(ServerConfig::default()).await;
    let bystanders = Bystanders::start(&server, "lobby").await;
    for (headers, why) in [
        ("Content-Length: 5\r\nTransfer-Encoding: chunked\r\n", "both"),
        ("Content-Length: 5\r\nContent-Length: 7\r\n", "two lengths"),
        ("Content-Length: +5\r\n", "a signed length"),
    ] {
        let request = format!("GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n{headers}\r\nhello");
        assert_eq!(status_of(&server, &request).await, "HTTP/1.1 400 Bad Request", "{why}");
    }
    bystanders.finish().await;
    server.shutdown().await;
}
