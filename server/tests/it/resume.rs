//! Sessions over real sockets: resume after a dropped connection, gaps,
//! retries answered with the original, takeover, lossless resume after a
//! too-slow close.

use crate::support::{Client, Server};
use chat_server::ServerConfig;
use serde_json::json;

fn seqs(frame: &serde_json::Value, field: &str) -> Vec<u64> {
    frame[field].as_array().unwrap().iter().map(|m| m["seq"].as_u64().unwrap()).collect()
}

#[tokio::test]
async fn a_dropped_connection_resumes_its_session_and_misses_nothing() {
    let server = Server::start(ServerConfig::default()).await;
    let mut alice = Client::in_room(&server, "alice", "lobby").await;
    let mut bob = Client::in_room(&server, "bob", "lobby").await;
    alice.expect("presence").await;
    alice.send(json!({"type": "say", "room": "lobby", "text": "one"})).await;
    alice.expect("message").await;
    bob.expect("message").await;
    let token = alice.session.clone();
    drop(alice);
    // While alice is away: away, no leave, her nick is kept, messages go on.
    bob.expect_presence("away", "alice").await;
    bob.send(json!({"type": "say", "room": "lobby", "text": "two"})).await;
    bob.send(json!({"type": "say", "room": "lobby", "text": "three"})).await;
    assert_eq!(bob.expect("message").await["seq"], 2);
    assert_eq!(bob.expect("message").await["seq"], 3);
    let mut thief = Client::connect(&server).await;
    thief.send(json!({"type": "hello", "nick": "Alice"})).await;
    thief.expect_error("nick_taken").await;

    let (mut alice, welcome) = Client::resume(&server, &token).await;
    assert_eq!(
        (welcome["resumed"].clone(), welcome["nick"].clone()),
        (json!(true), json!("alice"))
    );
    assert_eq!(welcome["session"], token.as_str());
    alice.send(json!({"type": "join", "room": "lobby", "after": 1, "id": "j"})).await;
    let joined = alice.expect("joined").await;
    assert_eq!(joined["resume"], "resumed");
    assert_eq!(seqs(&joined, "history"), vec![2, 3]);
    assert!(joined.get("gap").is_none());
    bob.expect_presence("back", "alice").await;
    bob.expect_nothing_pending().await;
    server.shutdown().await;
}

#[tokio::test]
async fn resume_reports_the_exact_gap_retention_left() {
    let mut config = ServerConfig::default();
    config.chat.history_per_room = 5;
    let server = Server::start(config).await;
    let alice = Client::in_room(&server, "alice", "lobby").await;
    let mut bob = Client::in_room(&server, "bob", "lobby").await;
    let token = alice.session.clone();
    drop(alice);
    bob.expect_presence("away", "alice").await;
    for i in 0..12 {
        bob.send(json!({"type": "say", "room": "lobby", "text": format!("m{i}")})).await;
        bob.expect("message").await;
    }
    let (mut alice, _) = Client::resume(&server, &token).await;
    alice.send(json!({"type": "join", "room": "lobby", "after": 0})).await;
    let joined = alice.expect("joined").await;
    assert_eq!(joined["resume"], "gap");
    assert_eq!(joined["gap"], json!({"from": 1, "to": 7}));
    assert_eq!(seqs(&joined, "history"), vec![8, 9, 10, 11, 12]);
    server.shutdown().await;
}

#[tokio::test]
async fn a_retried_say_gets_the_original_back_across_a_reconnect() {
    let server = Server::start(ServerConfig::default()).await;
    let mut alice = Client::in_room(&server, "alice", "lobby").await;
    let mut bob = Client::in_room(&server, "bob", "lobby").await;
    alice.expect("presence").await;
    alice.send(json!({"type": "say", "room": "lobby", "text": "exactly once", "id": "m-1"})).await;
    let original = alice.expect("message").await;
    bob.expect("message").await;
    let token = alice.session.clone();
    drop(alice);
    bob.expect_presence("away", "alice").await;
    let (mut alice, _) = Client::resume(&server, &token).await;
    bob.expect_presence("back", "alice").await;
    alice.send(json!({"type": "join", "room": "lobby", "after": 1})).await;
    alice.expect("joined").await;
    alice.send(json!({"type": "say", "room": "lobby", "text": "exactly once", "id": "m-1"})).await;
    assert_eq!(alice.expect("message").await, original);
    alice.send(json!({"type": "dm", "to": "bob", "text": "psst", "id": "d-1"})).await;
    let direct = alice.expect("direct").await;
    alice.send(json!({"type": "dm", "to": "bob", "text": "psst", "id": "d-1"})).await;
    assert_eq!(alice.expect("direct").await, direct);
    let theirs = bob.expect("direct").await;
    assert_eq!(
        (&theirs["seq"], &theirs["with"], &direct["with"]),
        (&json!(1), &json!("alice"), &json!("bob"))
    );
    bob.expect_nothing_pending().await;
    server.shutdown().await;
}

#[tokio::test]
async fn a_session_resumed_while_connected_has_both_connections() {
    let server = Server::start(ServerConfig::default()).await;
    let mut alice = Client::in_room(&server, "alice", "lobby").await;
    let (mut again, welcome) = Client::resume(&server, &alice.session).await;
    assert_eq!(welcome["resumed"], true);
    assert_eq!(welcome["rooms"], json!(["lobby"]), "the new tab learns the session's rooms");
    let joined = {
        again.send(json!({"type": "join", "room": "lobby", "after": 0, "id": "j"})).await;
        again.expect("joined").await
    };
    assert_eq!(joined["members"], json!(["alice"]), "one person, two tabs");
    again.send(json!({"type": "say", "room": "lobby", "text": "I am alice", "id": "s1"})).await;
    // Both tabs see it, with the id of the tab that sent it.
    for tab in [&mut again, &mut alice] {
        let message = tab.expect("message").await;
        assert_eq!((message["from"].as_str(), message["id"].as_str()), (Some("alice"), Some("s1")));
    }
    alice.expect_nothing_pending().await;
    server.shutdown().await;
}

#[tokio::test]
async fn malformed_session_tokens_are_refused() {
    let server = Server::start(ServerConfig::default()).await;
    let mut client = Client::connect(&server).await;
    client.send(json!({"type": "hello", "session": "../../etc/passwd"})).await;
    client.expect_error("invalid_session").await;
    server.shutdown().await;
}

#[tokio::test]
async fn a_client_cut_off_as_too_slow_resumes_without_loss() {
    let server = Server::start(crate::support::slow_consumer_config()).await;
    let mut sender = Client::in_room(&server, "sender", "lobby").await;
    let mut reader = Client::in_room(&server, "reader", "lobby").await;
    let mut sleeper = Client::in_room(&server, "sleeper", "lobby").await;
    sender.expect("presence").await;
    sender.expect("presence").await;
    reader.expect("presence").await;
    // 300 messages of 59 KB: far more than socket buffers hold. The sender
    // waits for each echo, so a member that reads keeps up.
    const COUNT: u64 = 300;
    let reading = tokio::spawn(async move {
        let mut seqs = Vec::new();
        while seqs.len() < COUNT as usize {
            let frame = reader.recv().await;
            if frame["type"] == "message" {
                seqs.push(frame["seq"].as_u64().unwrap());
            }
        }
        seqs
    });
    let text = "z".repeat(59_000);
    for i in 1..=COUNT {
        sender.send(json!({"type": "say", "room": "lobby", "text": format!("{i}:{text}")})).await;
        while sender.recv().await["type"] != "message" {}
    }
    let read = reading.await.unwrap();
    assert_eq!(read, (1..=COUNT).collect::<Vec<_>>(), "the slow member cost the reader nothing");
    // The sleeper reads what reached it before the cut, then resumes.
    let mut seen = Vec::new();
    loop {
        use futures_util::StreamExt;
        let message = tokio::time::timeout(crate::support::WAIT, sleeper.socket.next())
            .await
            .expect("in time");
        match message {
            Some(Ok(chat_transport::tungstenite::Message::Text(text))) => {
                let frame: serde_json::Value = serde_json::from_str(&text).unwrap();
                if frame["type"] == "message" {
                    seen.push(frame["seq"].as_u64().unwrap());
                }
            }
            Some(Ok(chat_transport::tungstenite::Message::Close(_))) | Some(Err(_)) | None => break,
            Some(Ok(_)) => {}
        }
    }
    assert!((seen.len() as u64) < COUNT, "the sleeper was cut off");
    assert_eq!(seen, (1..=seen.len() as u64).collect::<Vec<_>>(), "in order until the cut");
    let after = seen.last().copied().unwrap_or(0);
    let (mut sleeper, welcome) = Client::resume(&server, &sleeper.session).await;
    assert_eq!(welcome["resumed"], true);
    sleeper.send(json!({"type": "join", "room": "lobby", "after": after})).await;
    let joined = sleeper.expect("joined").await;
    assert_eq!(joined["resume"], "resumed");
    let mut got = seqs(&joined, "history");
    // The newest 40 came with joined; page back for the rest.
    while got.first().is_some_and(|&first| first > after + 1) {
        let before = got[0];
        sleeper
            .send(json!({"type": "history", "room": "lobby", "before": before, "limit": 40}))
            .await;
        let page = sleeper.expect("history").await;
        let mut older = seqs(&page, "messages");
        assert!(!older.is_empty(), "history pages back to {after}");
        older.retain(|&s| s > after);
        older.extend(got);
        got = older;
    }
    assert_eq!(got, (after + 1..=COUNT).collect::<Vec<_>>(), "nothing lost");
    server.shutdown().await;
}
