//! Durable history in SQLite: restarts keep messages, numbering and
//! deduplication; retention leaves explicit gaps; one server per directory.

use crate::support::{Client, Server};
use chat_server::{Retention, ServerConfig, SqliteStore, Store};
use serde_json::json;

fn sqlite(dir: &tempfile::TempDir) -> Box<dyn Store> {
    Box::new(SqliteStore::open(dir.path()).unwrap())
}

fn seqs(frame: &serde_json::Value, field: &str) -> Vec<u64> {
    frame[field].as_array().unwrap().iter().map(|m| m["seq"].as_u64().unwrap()).collect()
}

#[tokio::test]
async fn messages_numbering_and_dedupe_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with(ServerConfig::default(), sqlite(&dir)).await;
    let mut alice = Client::in_room(&server, "alice", "lobby").await;
    for (i, id) in ["a1", "a2", "a3"].iter().enumerate() {
        alice
            .send(json!({"type": "say", "room": "lobby", "text": format!("m{i}"), "id": id}))
            .await;
        alice.expect("message").await;
    }
    alice.send(json!({"type": "dm", "to": "alice", "text": "note", "id": "d1"})).await;
    let direct = alice.expect("direct").await;
    let token = alice.session.clone();
    let addr = server.addr.to_string();
    server.shutdown().await;

    let server = Server::start_on(&addr, ServerConfig::default(), sqlite(&dir)).await;
    let mut bob = Client::hello(&server, "bob").await;
    bob.send(json!({"type": "join", "room": "lobby"})).await;
    let joined = bob.expect("joined").await;
    assert_eq!(joined["last_seq"], 3);
    assert_eq!(seqs(&joined, "history"), vec![1, 2, 3]);
    // alice's session was stored: nobody else may take her nick while she
    // is away...
    let mut mallory = Client::connect(&server).await;
    mallory.send(json!({"type": "hello", "nick": "Alice"})).await;
    mallory.expect_error("nick_taken").await;
    // ...and she comes back with her token to her session, her retries still
    // answered with the originals.
    let mut alice = Client::connect(&server).await;
    alice.send(json!({"type": "hello", "nick": "alice", "session": token})).await;
    assert_eq!(alice.expect("welcome").await["resumed"], true);
    alice.send(json!({"type": "join", "room": "lobby", "after": 3})).await;
    assert_eq!(alice.expect("joined").await["resume"], "resumed");
    bob.expect("presence").await;
    alice.send(json!({"type": "say", "room": "lobby", "text": "m1 retried", "id": "a2"})).await;
    let retried = alice.expect("message").await;
    assert_eq!((retried["seq"].clone(), retried["text"].clone()), (json!(2), json!("m1")));
    alice.send(json!({"type": "dm", "to": "alice", "text": "note", "id": "d1"})).await;
    assert_eq!(alice.expect("direct").await, direct);
    alice.send(json!({"type": "say", "room": "lobby", "text": "new", "id": "a4"})).await;
    assert_eq!(alice.expect("message").await["seq"], 4, "numbering continues, never reused");
    assert_eq!(bob.expect("message").await["seq"], 4);
    server.shutdown().await;
}

#[tokio::test]
async fn a_direct_message_to_someone_away_reaches_them_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with(ServerConfig::default(), sqlite(&dir)).await;
    let mut alice = Client::hello(&server, "alice").await;
    let mut bob = Client::hello(&server, "bob").await;
    alice.send(json!({"type": "dm", "to": "bob", "text": "one"})).await;
    let first = alice.expect("direct").await;
    assert_eq!(bob.expect("direct").await["seq"], 1);
    let bob_token = bob.session.clone();
    // Bob's connection drops: what is sent now waits for him.
    drop(bob);
    alice.send(json!({"type": "dm", "to": "bob", "text": "two", "id": "d2"})).await;
    let second = alice.expect("direct").await;
    assert_eq!((&second["seq"], &second["conversation"]), (&json!(2), &first["conversation"]));
    let addr = server.addr.to_string();
    server.shutdown().await;

    let server = Server::start_on(&addr, ServerConfig::default(), sqlite(&dir)).await;
    let (mut bob, welcome) = Client::resume(&server, &bob_token).await;
    assert_eq!(welcome["resumed"], true);
    bob.send(json!({"type": "conversations", "id": "c"})).await;
    let listed = bob.expect("conversations").await;
    assert_eq!(
        listed["conversations"],
        json!([{"conversation": first["conversation"], "with": "alice", "last_seq": 2,
                "last_ts": second["ts"]}])
    );
    bob.send(json!({"type": "conversation", "conversation": first["conversation"], "after": 1}))
        .await;
    let read = bob.expect("conversation").await;
    assert_eq!(
        (&read["with"], &read["resume"], &read["last_seq"]),
        (&json!("alice"), &json!("resumed"), &json!(2))
    );
    assert_eq!(
        read["messages"],
        json!([{"seq": 2, "ts": second["ts"], "from": "alice", "text": "two", "id": "d2"}])
    );
    // The numbering goes on, and bob answers by the conversation's key.
    bob.send(json!({"type": "dm", "conversation": first["conversation"], "text": "three"})).await;
    assert_eq!(bob.expect("direct").await["seq"], 3);
    bob.send(json!({"type": "conversation", "conversation": "~0000000000000000"})).await;
    bob.expect_error("no_such_conversation").await;
    server.shutdown().await;
}

#[tokio::test]
async fn retention_drops_old_messages_but_keeps_numbering_and_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = ServerConfig::default();
    config.chat.history_per_room = 3;
    let server = Server::start_with(config.clone(), sqlite(&dir)).await;
    let mut alice = Client::in_room(&server, "alice", "lobby").await;
    for i in 0..5 {
        alice.send(json!({"type": "say", "room": "lobby", "text": format!("m{i}")})).await;
        alice.expect("message").await;
    }
    let addr = server.addr.to_string();
    server.shutdown().await;
    let server = Server::start_on(&addr, config, sqlite(&dir)).await;
    let mut bob = Client::hello(&server, "bob").await;
    bob.send(json!({"type": "join", "room": "lobby", "after": 0})).await;
    let joined = bob.expect("joined").await;
    assert_eq!(
        (joined["resume"].clone(), joined["gap"].clone()),
        (json!("gap"), json!({"from": 1, "to": 2}))
    );
    assert_eq!(seqs(&joined, "history"), vec![3, 4, 5]);
    server.shutdown().await;
}

#[tokio::test]
async fn a_second_server_cannot_open_the_same_directory() {
    let dir = tempfile::tempdir().unwrap();
    let _first = SqliteStore::open(dir.path()).unwrap();
    let second = SqliteStore::open(dir.path());
    assert!(second.is_err(), "the directory is locked by the first store");
}

#[test]
fn the_store_skips_rows_it_cannot_parse() {
    let dir = tempfile::tempdir().unwrap();
    let retention = Retention {
        per_room: 10,
        max_age: None,
        recent_for: std::time::Duration::from_secs(3600),
        recent_max: 100,
    };
    // Creates the schema, then lets go of the file.
    drop(SqliteStore::open(dir.path()).unwrap());
    let db = rusqlite::Connection::open(dir.path().join("chat.db")).unwrap();
    db.execute_batch(
        "INSERT INTO rooms (name, last_seq) VALUES ('lobby', 3), ('Bad Room', 1);
         INSERT INTO messages (room, seq, ts, nick, text, action, client_id, session)
           VALUES ('lobby', 1, 1, 'alice', 'fine', 0, NULL, NULL),
                  ('lobby', 2, 2, 'not a nick!', 'bad', 0, NULL, NULL),
                  ('lobby', 3, 3, 'bob', 'fine too', 0, 'x', 'tok');",
    )
    .unwrap();
    drop(db);
    let mut store = SqliteStore::open(dir.path()).unwrap();
    let snapshot = store.load(&retention, 10).unwrap();
    assert_eq!(snapshot.recent.len(), 1, "the message with an id, for deduplication");
    let lobby = chat_core::RoomName::parse("lobby").unwrap();
    let room = store.room(&lobby, &retention, 10).unwrap().unwrap();
    assert_eq!(room.last_seq, 3);
    let seqs: Vec<u64> = room.messages.iter().map(|m| m.seq).collect();
    assert_eq!(seqs, vec![1, 3], "the message with a bad nick is skipped");
}

#[test]
fn a_database_of_the_first_schema_is_upgraded_in_place() {
    let dir = tempfile::tempdir().unwrap();
    let db = rusqlite::Connection::open(dir.path().join("chat.db")).unwrap();
    // Version 1, as the first release wrote it: no attachment columns.
    db.execute_batch(
        "CREATE TABLE rooms (name TEXT PRIMARY KEY, last_seq INTEGER NOT NULL) WITHOUT ROWID;
         CREATE TABLE messages (room TEXT NOT NULL, seq INTEGER NOT NULL, ts INTEGER NOT NULL,
             nick TEXT NOT NULL, text TEXT NOT NULL, action INTEGER NOT NULL, client_id TEXT,
             session TEXT, PRIMARY KEY (room, seq)) WITHOUT ROWID;
         CREATE TABLE directs (ts INTEGER NOT NULL, sender TEXT NOT NULL, recipient TEXT NOT NULL,
             text TEXT NOT NULL, client_id TEXT NOT NULL, session TEXT NOT NULL,
             PRIMARY KEY (session, client_id)) WITHOUT ROWID;
         INSERT INTO rooms VALUES ('lobby', 1);
         INSERT INTO messages VALUES ('lobby', 1, 1, 'alice', 'from before', 0, NULL, NULL);
         PRAGMA user_version = 1;",
    )
    .unwrap();
    drop(db);
    let retention = Retention {
        per_room: 10,
        max_age: None,
        recent_for: std::time::Duration::from_secs(3600),
        recent_max: 100,
    };
    let mut store = SqliteStore::open(dir.path()).unwrap();
    let lobby = chat_core::RoomName::parse("lobby").unwrap();
    let room = store.room(&lobby, &retention, 10).unwrap().unwrap();
    assert_eq!(&*room.messages[0].text, "from before");
    assert_eq!(room.messages[0].attachment, None);
    assert!(store.load(&retention, 10).unwrap().sessions.is_empty(), "a sessions table now");
    drop(store);
    let db = rusqlite::Connection::open(dir.path().join("chat.db")).unwrap();
    let version: i64 = db.pragma_query_value(None, "user_version", |row| row.get(0)).unwrap();
    assert_eq!(version, 8);
    let columns: Vec<String> = db
        .prepare("SELECT name FROM pragma_table_info('messages')")
        .unwrap()
        .query_map([], |row| row.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert!(columns.iter().any(|c| c == "file_id"), "{columns:?}");
    assert!(columns.iter().any(|c| c == "kind") && columns.iter().any(|c| c == "target"));
    let rooms: Vec<String> = db
        .prepare("SELECT name FROM pragma_table_info('rooms')")
        .unwrap()
        .query_map([], |row| row.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert!(rooms.iter().any(|c| c == "topic"), "{rooms:?}");
}

#[tokio::test]
async fn failed_commits_are_retried_and_nothing_is_shown_unstored() {
    let inner = chat_server::MemoryStore::new();
    let failures_left = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(3));
    // Its first commits fail, like a disk that is briefly full.
    let mut store = crate::support::FaultyStore::new(inner.clone());
    let left = std::sync::Arc::clone(&failures_left);
    store.commits_fail = Box::new(move || {
        use std::sync::atomic::Ordering;
        left.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok()
    });
    let server = Server::start_with(ServerConfig::default(), Box::new(store)).await;
    let mut alice = Client::in_room(&server, "alice", "lobby").await;
    alice.send(json!({"type": "say", "room": "lobby", "text": "kept", "id": "k"})).await;
    let echo = alice.expect("message").await;
    assert_eq!(echo["seq"], 1);
    // The echo came only after three failed commits and a successful one.
    assert_eq!(failures_left.load(std::sync::atomic::Ordering::SeqCst), 0);
    let mut check = inner.clone();
    let lobby = chat_core::RoomName::parse("lobby").unwrap();
    let room = check.room(&lobby, &ServerConfig::default().retention(), 0).unwrap().unwrap();
    assert_eq!(room.messages.len(), 1, "stored before it was shown");
    server.shutdown().await;
}

#[test]
fn messages_and_document_updates_queued_together_are_stored_in_one_commit() {
    use chat_core::{Message, MessageKind, Nick, Record, RoomName, Timestamp};
    use chat_server::DocUpdate;
    let dir = tempfile::tempdir().unwrap();
    let mut store = SqliteStore::open(dir.path()).unwrap();
    let (lobby, notes) = (RoomName::parse("lobby").unwrap(), RoomName::parse("notes").unwrap());
    let message = Message {
        room: lobby.clone(),
        seq: 1,
        ts: Timestamp::from_unix_millis(10),
        from: Nick::parse("alice").unwrap(),
        text: "hi".into(),
        action: false,
        id: None,
        sender: None,
        attachment: None,
        kind: MessageKind::Said,
    };
    let update = |bytes: &[u8]| DocUpdate {
        room: lobby.clone(),
        doc: notes.clone(),
        update: bytes.to_vec(),
    };
    store.commit_with_docs(&[Record::Message(message.clone())], &[update(&[1, 2])]).unwrap();
    assert_eq!(store.doc(&lobby, &notes).unwrap(), vec![vec![1, 2]]);
    // A commit that fails (seq 1 again: its row is taken) keeps neither
    // the record nor the updates that queued with it.
    let failed = store.commit_with_docs(&[Record::Message(message)], &[update(&[3])]);
    assert!(failed.is_err());
    assert_eq!(store.doc(&lobby, &notes).unwrap(), vec![vec![1, 2]]);
    let retention = Retention {
        per_room: 100,
        max_age: None,
        recent_for: std::time::Duration::from_secs(3600),
        recent_max: 100,
    };
    assert_eq!(store.room(&lobby, &retention, 10).unwrap().unwrap().messages.len(), 1);
}
