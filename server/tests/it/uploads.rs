//! Files: announced with `upload`, sent as binary frames, stored by their
//! SHA-256, fanned out as an attachment, fetched with `GET /files/{id}` by
//! those in the room only; and the `$stats` channel.

use crate::support::{Client, Server, http_get as get};
use chat_server::{ServerConfig, SqliteStore, Uploads};
use chat_transport::tungstenite::Message;
use serde_json::json;
use sha2::{Digest, Sha256};

/// A small but real PNG (1x1, red).
pub(crate) const PNG: &[u8] = &[
    0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x48, 0x44, 0x52,
    0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x01, 0x08, 0x02, 0x00, 0x00, 0x00, 0x90, 0x77, 0x53,
    0xde, 0x00, 0x00, 0x00, 0x0c, 0x49, 0x44, 0x41, 0x54, 0x08, 0xd7, 0x63, 0xf8, 0xcf, 0xc0, 0x00,
    0x00, 0x03, 0x01, 0x01, 0x00, 0x18, 0xdd, 0x8d, 0xb0, 0x00, 0x00, 0x00, 0x00, 0x49, 0x45, 0x4e,
    0x44, 0xae, 0x42, 0x60, 0x82,
];

pub(crate) fn config(dir: &std::path::Path, max_bytes: u64) -> ServerConfig {
    ServerConfig {
        uploads: Some(Uploads {
            dir: dir.join("files"),
            max_bytes,
            max_total_bytes: 1 << 30,
            min_free_bytes: 0,
        }),
        ..ServerConfig::default()
    }
}

/// Sends `bytes` as one upload in chunks of `chunk` bytes; returns the
/// `upload_ready`.
pub(crate) async fn upload(
    client: &mut Client,
    id: &str,
    room: &str,
    name: &str,
    mime: &str,
    bytes: &[u8],
) {
    client
        .send(json!({"type": "upload", "id": id, "room": room, "name": name, "mime": mime,
                     "size": bytes.len(), "text": "look"}))
        .await;
    let ready = client.expect("upload_ready").await;
    assert_eq!(ready["id"], id);
    let chunk = usize::try_from(ready["chunk_bytes"].as_u64().unwrap()).unwrap().min(7);
    for part in bytes.chunks(chunk) {
        client.socket.send(Message::binary(part.to_vec())).await.unwrap();
    }
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Vec<&'a str> {
    headers.iter().filter(|(n, _)| n == name).map(|(_, v)| v.as_str()).collect()
}

#[tokio::test]
async fn an_uploaded_image_reaches_the_room_and_only_its_members_may_fetch_it() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(config(dir.path(), 1 << 20)).await;
    let mut alice = Client::in_room(&server, "alice", "lobby").await;
    let mut bob = Client::in_room(&server, "bob", "lobby").await;
    alice.expect("presence").await;
    let mut carol = Client::in_room(&server, "carol", "elsewhere").await;

    upload(&mut alice, "u1", "lobby", "../../red dot.png", "image/png", PNG).await;
    let id = format!("{:x}", Sha256::digest(PNG));
    let expected = json!({"id": id, "name": "red dot.png", "mime": "image/png", "size": PNG.len()});
    let echo = alice.expect("message").await;
    assert_eq!((echo["id"].clone(), echo["attachment"].clone()), (json!("u1"), expected.clone()));
    let seen = bob.expect("message").await;
    assert_eq!(seen["attachment"], expected);
    assert_eq!(seen["text"], "look");
    assert!(dir.path().join("files").join(&id[..2]).join(&id).exists(), "stored by its hash");

    let (status, headers, body) = get(&server, &format!("/files/{id}"), Some(&bob.session)).await;
    assert_eq!(status, 200);
    assert_eq!(body, PNG);
    assert_eq!(header(&headers, "content-type"), ["image/png"]);
    assert_eq!(header(&headers, "x-content-type-options"), ["nosniff"]);
    assert!(
        header(&headers, "content-disposition")[0].starts_with("inline; filename=\"red dot.png\"")
    );
    assert!(header(&headers, "content-security-policy").contains(&"sandbox"));

    let refused = get(&server, &format!("/files/{id}"), Some(&carol.session)).await;
    assert_eq!(refused.0, 404, "carol is not in the room");
    assert_eq!(get(&server, &format!("/files/{id}"), None).await.0, 401);
    assert_eq!(get(&server, &format!("/files/{id}"), Some("made-up")).await.0, 404);
    assert_eq!(get(&server, "/files/../chat.db", Some(&bob.session)).await.0, 404);
    // The client side's fetch (what `chat /download` uses) gets the same
    // answers.
    let mut bytes = Vec::new();
    let fetched = chat_transport::fetch(
        &server.url(),
        &format!("/files/{id}"),
        &bob.session,
        &Default::default(),
        &mut bytes,
    )
    .await
    .unwrap();
    assert_eq!((fetched, bytes.as_slice()), (PNG.len() as u64, PNG));
    let refused = chat_transport::fetch(
        &server.url(),
        &format!("/files/{id}"),
        &carol.session,
        &Default::default(),
        &mut Vec::new(),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(&refused, chat_transport::ConnectError::Refused { status, .. } if status.as_u16() == 404),
        "{refused}"
    );
    // Joining the room is what gives access.
    carol.send(json!({"type": "join", "room": "lobby"})).await;
    carol.expect("joined").await;
    assert_eq!(get(&server, &format!("/files/{id}"), Some(&carol.session)).await.0, 200);
    server.shutdown().await;
}

#[tokio::test]
async fn bad_uploads_get_clear_errors_and_the_connection_carries_on() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(config(dir.path(), 64)).await;
    let mut early = Client::connect(&server).await;
    early.send(json!({"type": "upload", "id": "e", "room": "lobby", "name": "a", "mime": "text/plain", "size": 3})).await;
    early.expect_error("hello_required").await;

    let mut alice = Client::in_room(&server, "alice", "lobby").await;
    let announce = |id: &str, room: &str, mime: &str, size: usize| json!({"type": "upload", "id": id, "room": room, "name": "f", "mime": mime, "size": size});
    alice.send(announce("big", "lobby", "text/plain", 65)).await;
    assert_eq!(alice.expect_error("too_large").await["id"], "big");
    let long = json!({"type": "upload", "id": "caption", "room": "lobby", "name": "f", "mime": "text/plain",
                      "size": 3, "text": "x".repeat(9000)});
    alice.send(long).await;
    assert_eq!(alice.expect_error("too_large").await["id"], "caption");
    alice.send(announce("away", "dev", "text/plain", 3)).await;
    assert_eq!(alice.expect_error("not_in_room").await["id"], "away");
    alice.send(announce("type", "lobby", "png", 3)).await;
    alice.expect_error("bad_frame").await;
    alice.socket.send(Message::binary(b"stray".to_vec())).await.unwrap();
    alice.expect_error("invalid_upload").await;

    // More than announced.
    alice.send(announce("over", "lobby", "text/plain", 3)).await;
    alice.expect("upload_ready").await;
    alice.socket.send(Message::binary(b"four".to_vec())).await.unwrap();
    assert_eq!(alice.expect_error("invalid_upload").await["id"], "over");
    // An image that is not one.
    alice.send(announce("fake", "lobby", "image/png", 14)).await;
    alice.expect("upload_ready").await;
    alice.socket.send(Message::binary(b"<script>1</script>"[..14].to_vec())).await.unwrap();
    assert_eq!(alice.expect_error("invalid_upload").await["id"], "fake");
    // One at a time; a cancel ends the first.
    alice.send(announce("one", "lobby", "text/plain", 5)).await;
    alice.expect("upload_ready").await;
    alice.send(announce("two", "lobby", "text/plain", 5)).await;
    assert_eq!(alice.expect_error("invalid_upload").await["id"], "two");
    alice.send(json!({"type": "upload_cancel"})).await;
    upload(&mut alice, "three", "lobby", "notes.txt", "text/plain", b"hello").await;
    let message = alice.expect("message").await;
    assert_eq!(message["attachment"]["name"], "notes.txt");
    alice.expect_nothing_pending().await;
    // Nothing refused, cancelled or cut off is left behind.
    let leftovers = std::fs::read_dir(dir.path().join("files/tmp")).unwrap().count();
    assert_eq!(leftovers, 0);
    server.shutdown().await;
}

#[tokio::test]
async fn a_connection_lost_mid_upload_leaves_nothing_behind() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(config(dir.path(), 1 << 20)).await;
    let mut alice = Client::in_room(&server, "alice", "lobby").await;
    alice.send(json!({"type": "upload", "room": "lobby", "name": "f", "mime": "text/plain", "size": 100})).await;
    alice.expect("upload_ready").await;
    alice.socket.send(Message::binary(vec![b'x'; 10])).await.unwrap();
    alice.expect_nothing_pending().await;
    assert_eq!(std::fs::read_dir(dir.path().join("files/tmp")).unwrap().count(), 1, "in progress");
    drop(alice);
    let mut bob = Client::in_room(&server, "bob", "lobby").await;
    // Once the server noticed, the partial file is gone.
    let deadline = tokio::time::Instant::now() + crate::support::WAIT;
    while std::fs::read_dir(dir.path().join("files/tmp")).unwrap().count() > 0 {
        assert!(tokio::time::Instant::now() < deadline, "the partial upload was not removed");
        bob.expect_nothing_pending().await;
    }
    server.shutdown().await;
}

#[tokio::test]
async fn attachments_survive_a_restart_and_keep_their_access_rules() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with(
        config(dir.path(), 1 << 20),
        Box::new(SqliteStore::open(dir.path()).unwrap()),
    )
    .await;
    let mut alice = Client::in_room(&server, "alice", "lobby").await;
    upload(&mut alice, "u1", "lobby", "dot.png", "image/png", PNG).await;
    let sent = alice.expect("message").await;
    alice.quit().await;
    let addr = server.addr.to_string();
    server.shutdown().await;

    let server = Server::start_on(
        &addr,
        config(dir.path(), 1 << 20),
        Box::new(SqliteStore::open(dir.path()).unwrap()),
    )
    .await;
    let mut bob = Client::hello(&server, "bob").await;
    bob.send(json!({"type": "join", "room": "lobby"})).await;
    let joined = bob.expect("joined").await;
    assert_eq!(joined["history"][0]["attachment"], sent["attachment"]);
    let id = sent["attachment"]["id"].as_str().unwrap();
    let (status, _, body) = get(&server, &format!("/files/{id}"), Some(&bob.session)).await;
    assert_eq!((status, body.as_slice()), (200, PNG));
    server.shutdown().await;
}

#[tokio::test]
async fn an_edit_and_a_delete_reach_everyone_and_storage_keeps_them_a_deleted_file_goes() {
    let dir = tempfile::tempdir().unwrap();
    let store = || Box::new(SqliteStore::open(dir.path()).unwrap());
    let server = Server::start_with(config(dir.path(), 1 << 20), store()).await;
    let mut alice = Client::in_room(&server, "alice", "lobby").await;
    let mut bob = Client::in_room(&server, "bob", "lobby").await;
    alice.expect("presence").await;
    alice.send(json!({"type": "say", "room": "lobby", "text": "teh typo", "id": "s1"})).await;
    assert_eq!(alice.expect("message").await["seq"], 1);
    upload(&mut alice, "u1", "lobby", "dot.png", "image/png", PNG).await;
    let sent = alice.expect("message").await;
    let file = sent["attachment"]["id"].as_str().unwrap().to_owned();
    for _ in 0..2 {
        bob.expect("message").await;
    }
    // Bob may change neither.
    bob.send(json!({"type": "edit", "room": "lobby", "seq": 1, "text": "mine now", "id": "b"}))
        .await;
    assert_eq!(bob.expect_error("forbidden").await["id"], "b");
    alice
        .send(json!({"type": "edit", "room": "lobby", "seq": 1, "text": "the typo", "id": "e"}))
        .await;
    alice.send(json!({"type": "delete", "room": "lobby", "seq": 2, "id": "d"})).await;
    for client in [&mut alice, &mut bob] {
        let edit = client.expect("message").await;
        assert_eq!(
            (&edit["seq"], &edit["edit"], &edit["text"]),
            (&json!(3), &json!(1), &json!("the typo"))
        );
        let delete = client.expect("message").await;
        assert_eq!((&delete["seq"], &delete["delete"]), (&json!(4), &json!(2)));
    }
    alice.send(json!({"type": "delete", "room": "lobby", "seq": 9})).await;
    alice.expect_error("no_such_message").await;
    // The file is gone from the server, not only from the message.
    let (status, _, _) = get(&server, &format!("/files/{file}"), Some(&alice.session)).await;
    assert_eq!(status, 404);
    let addr = server.addr.to_string();
    server.shutdown().await;

    let server = Server::start_on(&addr, config(dir.path(), 1 << 20), store()).await;
    let mut carol = Client::hello(&server, "carol").await;
    carol.send(json!({"type": "join", "room": "lobby"})).await;
    let history = carol.expect("joined").await["history"].clone();
    assert_eq!(history[0]["text"], "the typo");
    assert_eq!(history[0]["edited"], true);
    assert_eq!((&history[1]["text"], &history[1]["deleted"]), (&json!(""), &json!(true)));
    assert_eq!(history[1].get("attachment"), None, "the file is gone from storage");
    assert_eq!((&history[2]["edit"], &history[3]["delete"]), (&json!(1), &json!(2)));
    let stored = walkdir(&dir.path().join("files"));
    assert!(!stored.iter().any(|name| name.contains(&file)), "{stored:?}");
    server.shutdown().await;
}

/// Every file name under `dir`.
fn walkdir(dir: &std::path::Path) -> Vec<String> {
    let mut names = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if entry.path().is_dir() {
            names.extend(walkdir(&entry.path()));
        } else {
            names.push(entry.file_name().to_string_lossy().into_owned());
        }
    }
    names
}

#[tokio::test]
async fn without_an_upload_directory_uploads_are_refused() {
    let server = Server::start(ServerConfig::default()).await;
    let mut alice = Client::in_room(&server, "alice", "lobby").await;
    alice.send(json!({"type": "upload", "room": "lobby", "name": "f", "mime": "text/plain", "size": 1})).await;
    alice.expect_error("unavailable").await;
    let (status, _, _) =
        get(&server, &format!("/files/{}", "a".repeat(64)), Some(&alice.session)).await;
    assert_eq!(status, 404);
    server.shutdown().await;
}

#[tokio::test]
async fn stats_subscribers_get_the_live_counters_every_second() {
    let config = ServerConfig { stats_token: Some("let-me-see".into()), ..ServerConfig::default() };
    let server = Server::start(config).await;
    let mut watcher = Client::hello(&server, "watcher").await;
    watcher.send(json!({"type": "subscribe", "id": "s", "channel": "$stats"})).await;
    assert_eq!(watcher.expect_error("no_such_channel").await["id"], "s");
    watcher
        .send(json!({"type": "subscribe", "id": "n", "channel": "$nope", "token": "let-me-see"}))
        .await;
    watcher.expect_error("no_such_channel").await;
    watcher
        .send(json!({"type": "subscribe", "id": "s", "channel": "$stats", "token": "let-me-see"}))
        .await;
    assert_eq!(
        watcher.expect("subscribed").await,
        json!({"type": "subscribed", "id": "s", "channel": "$stats"})
    );
    // The last minutes come at once, for the chart: a point a second.
    let history = watcher.expect("stats_history").await;
    assert_eq!(history["interval_ms"], 1000);
    let points = history["points"].as_array().unwrap().clone();
    assert!(points.iter().all(|p| p["ts"].as_u64().unwrap() > 1_700_000_000_000), "{history}");
    assert!(points.windows(2).all(|w| w[0]["ts"].as_u64() <= w[1]["ts"].as_u64()), "{history}");

    let mut alice = Client::in_room(&server, "alice", "lobby").await;
    for n in 0..5 {
        alice.send(json!({"type": "say", "room": "lobby", "text": format!("m{n}")})).await;
        alice.expect("message").await;
    }
    // Counters go up to what was sent, within a few ticks.
    loop {
        // A tick from before alice came may still be on its way.
        let stats = watcher.expect("stats").await;
        if stats["messages_total"] == 5 {
            assert_eq!(stats["connections"], 2);
            // alice is one person; the watcher is the stats page, no one.
            assert_eq!((stats["people"].as_u64(), stats["watchers"].as_u64()), (Some(1), Some(1)));
            assert_eq!(stats["rooms"], json!([{"name": "lobby", "members": 1}]));
            assert_eq!(stats["room_count"], 1);
            assert!(stats["bytes_in"].as_u64().unwrap() > 100);
            assert!(stats["bytes_out"].as_u64().unwrap() > 100);
            assert!(stats["uptime_ms"].as_u64().is_some());
            break;
        }
    }
    // A page opened now gets the seconds that counted them.
    let mut late = Client::hello(&server, "late").await;
    late.send(json!({"type": "subscribe", "channel": "$stats", "token": "let-me-see"})).await;
    late.expect("subscribed").await;
    let history = late.expect("stats_history").await;
    let counted: u64 = history["points"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["messages_per_sec"].as_u64().unwrap())
        .sum();
    assert_eq!(counted, 5, "{history}");
    server.shutdown().await;
}
