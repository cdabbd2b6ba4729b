//! `chat-server backup` and `restore` (issue #19): a backup taken by the
//! real binary while a client keeps sending, restored into a fresh
//! directory, holds every message acknowledged before it began and every
//! file they carry; the session in it resumes.

use std::collections::BTreeSet;

use chat_server::SqliteStore;
use chat_test_support::bin;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::support::{Client, Server, http_get};
use crate::uploads::{PNG, config, upload};

/// Every message text of `room`, as a member who joined sees it: the
/// newest with `joined`, the rest paged back.
async fn every_text(client: &mut Client, room: &str) -> Vec<String> {
    client.send(json!({"type": "join", "room": room})).await;
    let joined = client.expect("joined").await;
    let texts = |messages: &Value| -> Vec<(u64, String)> {
        let list = messages.as_array().unwrap().iter();
        list.map(|m| (m["seq"].as_u64().unwrap(), m["text"].as_str().unwrap().to_owned())).collect()
    };
    let mut all = texts(&joined["history"]);
    while let Some(&(first, _)) = all.first().filter(|(seq, _)| *seq > 1) {
        client.send(json!({"type": "history", "room": room, "before": first, "limit": 100})).await;
        let mut older = texts(&client.expect("history").await["messages"]);
        assert!(!older.is_empty(), "history ends before seq 1");
        older.extend(all);
        all = older;
    }
    let seqs: Vec<u64> = all.iter().map(|(seq, _)| *seq).collect();
    assert_eq!(seqs, (1..=seqs.len() as u64).collect::<Vec<_>>(), "every seq, once, in order");
    all.into_iter().map(|(_, text)| text).collect()
}

#[tokio::test]
async fn a_backup_under_load_restores_every_acknowledged_message_and_file() {
    let dir = tempfile::tempdir().unwrap();
    let (data, out, restored) =
        (dir.path().join("data"), dir.path().join("backup"), dir.path().join("restored"));
    let mut settings = config(&data, 1 << 20);
    settings.chat.messages_per_sec = 100_000;
    settings.chat.messages_burst = 100_000;
    settings.frames_per_sec = 100_000;
    settings.frames_burst = 100_000;
    let store = SqliteStore::open(&data).unwrap();
    let server = Server::start_with(settings.clone(), Box::new(store)).await;
    let mut alice = Client::in_room(&server, "alice", "lobby").await;
    upload(&mut alice, "u1", "lobby", "dot.png", "image/png", PNG).await;
    assert_eq!(alice.expect("message").await["id"], "u1");
    let file = format!("{:x}", Sha256::digest(PNG));

    // Sends the next message and waits for its echo: acknowledged.
    let mut next = 0u32;
    let mut acked = Vec::new();
    let mut say = async |alice: &mut Client| {
        next += 1;
        let (id, text) = (format!("m{next}"), format!("message {next}"));
        alice.send(json!({"type": "say", "room": "lobby", "id": id, "text": text})).await;
        assert_eq!(alice.next_of("message").await["id"], id);
        text
    };
    for _ in 0..30 {
        acked.push(say(&mut alice).await);
    }
    // The backup runs while messages go on being sent and stored.
    let mut backup = tokio::process::Command::new(bin("chat-server"))
        .arg("backup")
        .arg(&out)
        .arg("--data-dir")
        .arg(&data)
        .env_remove("CHAT_CONFIG")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut during = 0;
    while backup.try_wait().unwrap().is_none() {
        say(&mut alice).await;
        during += 1;
    }
    let output = backup.wait_with_output().await.unwrap();
    assert!(output.status.success(), "{output:?}");
    let told = String::from_utf8(output.stdout).unwrap();
    assert!(told.contains("and 1 files"), "{told}");
    // Sent after the backup: not in it.
    for _ in 0..5 {
        say(&mut alice).await;
    }
    let session = alice.session.clone();
    drop(alice);
    server.shutdown().await;

    let restore = chat_server(&["restore", out.to_str().unwrap()], &restored);
    assert!(restore.status.success(), "{restore:?}");
    // A second restore over it is refused: it would mix two stores.
    let again = chat_server(&["restore", out.to_str().unwrap()], &restored);
    assert_eq!(again.status.code(), Some(1), "{again:?}");

    let settings = config(&restored, 1 << 20);
    let store = SqliteStore::open(&restored).unwrap();
    let server = Server::start_with(settings, Box::new(store)).await;
    let (mut back, welcome) = Client::resume(&server, &session).await;
    assert_eq!(welcome["resumed"], true, "the session is in the backup");
    let texts = every_text(&mut back, "lobby").await;
    let kept: BTreeSet<&String> = texts.iter().collect();
    for text in &acked {
        assert!(kept.contains(text), "{text} was acknowledged before the backup: {texts:?}");
    }
    // The file and every message before the backup, and no more than
    // those sent while it ran.
    let (least, most) = (1 + acked.len(), 1 + acked.len() + during);
    assert!((least..=most).contains(&texts.len()), "{} messages", texts.len());
    let (status, _, body) = http_get(&server, &format!("/files/{file}"), Some(&session)).await;
    assert_eq!((status, body.as_slice()), (200, PNG), "the file came back with its message");
    server.shutdown().await;
}

#[test]
fn a_backup_or_erasure_is_refused_where_there_is_no_store_or_the_target_exists() {
    let dir = tempfile::tempdir().unwrap();
    let run = |data: &std::path::Path, out: &std::path::Path| {
        chat_server(&["backup", out.to_str().unwrap()], data)
    };
    let empty = run(&dir.path().join("nothing"), &dir.path().join("b"));
    assert_eq!(empty.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&empty.stderr).contains("no store"), "{empty:?}");
    let nothing = dir.path().join("nothing");
    let erase = chat_server(&["erase", "--nick", "alice"], &nothing);
    assert_eq!(erase.status.code(), Some(1));
    assert!(!nothing.exists(), "no store is made where there was none");
    let _store = SqliteStore::open(&dir.path().join("data")).unwrap();
    let exists = run(&dir.path().join("data"), dir.path());
    assert_eq!(exists.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&exists.stderr).contains("exists already"), "{exists:?}");
}

/// `chat-server` with `args`, its store in `data`.
fn chat_server(args: &[&str], data: &std::path::Path) -> std::process::Output {
    let mut command = std::process::Command::new(bin("chat-server"));
    command.args(args).arg("--data-dir").arg(data).env_remove("CHAT_CONFIG");
    command.output().unwrap()
}

#[tokio::test]
async fn erasing_a_person_blanks_their_messages_and_files_everywhere_and_ends_their_sessions() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let store = SqliteStore::open(&data).unwrap();
    let server = Server::start_with(config(&data, 1 << 20), Box::new(store)).await;
    let mut alice = Client::in_room(&server, "alice", "lobby").await;
    let mut bob = Client::in_room(&server, "bob", "lobby").await;
    alice.expect_presence("join", "bob").await;
    upload(&mut alice, "u1", "lobby", "dot.png", "image/png", PNG).await;
    alice.next_of("message").await;
    alice.send(json!({"type": "say", "room": "lobby", "text": "alice secret one"})).await;
    let said = alice.next_of("message").await;
    let seq = said["seq"].as_u64().unwrap();
    let edit = json!({"type": "edit", "room": "lobby", "seq": seq, "text": "alice secret edited"});
    alice.send(edit).await;
    alice.next_of("message").await;
    alice.send(json!({"type": "dm", "to": "bob", "text": "alice private secret"})).await;
    alice.next_of("direct").await;
    bob.send(json!({"type": "say", "room": "lobby", "text": "bob stays"})).await;
    bob.next_of("message").await;
    let file = format!("{:x}", Sha256::digest(PNG));
    let stored = chat_server::stored_path(&data.join("files"), &file).unwrap();
    assert!(stored.exists());

    // Not while the server runs: its memory would still show them.
    let refused = chat_server(&["erase", "--nick", "alice"], &data);
    assert_eq!(refused.status.code(), Some(1), "{refused:?}");
    assert!(String::from_utf8_lossy(&refused.stderr).contains("stop the server"), "{refused:?}");
    let (alice_session, bob_session) = (alice.session.clone(), bob.session.clone());
    drop((alice, bob));
    server.shutdown().await;

    let erased = chat_server(&["erase", "--nick", "alice"], &data);
    assert!(erased.status.success(), "{erased:?}");
    let told = String::from_utf8_lossy(&erased.stdout);
    assert!(told.contains("erased alice: 3 messages, 1 files, 1 sessions"), "{told}");
    assert!(!stored.exists(), "the file is deleted");
    let db = std::fs::read(data.join("chat.db")).unwrap();
    for secret in ["alice secret one", "alice secret edited", "alice private secret"] {
        let found = db.windows(secret.len()).any(|w| w == secret.as_bytes());
        assert!(!found, "{secret:?} is still in the database file");
    }
    assert!(db.windows(9).any(|w| w == b"bob stays"), "bob's message is not touched");

    let store = SqliteStore::open(&data).unwrap();
    let server = Server::start_with(config(&data, 1 << 20), Box::new(store)).await;
    let (mut bob, welcome) = Client::resume(&server, &bob_session).await;
    assert_eq!(welcome["resumed"], true);
    bob.send(json!({"type": "join", "room": "lobby", "after": 0})).await;
    let history = bob.expect("joined").await["history"].as_array().unwrap().clone();
    let by_alice: Vec<&Value> = history.iter().filter(|m| m["from"] == "alice").collect();
    assert!(!by_alice.is_empty());
    for message in by_alice {
        assert_eq!(message["text"], "", "{message}");
        assert!(message["attachment"].is_null(), "{message}");
    }
    assert!(history.iter().any(|m| m["from"] == "bob" && m["text"] == "bob stays"));
    let (status, _, _) = http_get(&server, &format!("/files/{file}"), Some(&bob_session)).await;
    assert_eq!(status, 404);
    // Alice's session is gone: her token starts a new one.
    let (_, welcome) = Client::resume(&server, &alice_session).await;
    assert_eq!(welcome["resumed"], false);
    server.shutdown().await;
}
