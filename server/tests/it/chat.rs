//! The server over real sockets on 127.0.0.1:0: chat across rooms, DMs,
//! nick changes, every error code, limits and shutdown.

use std::time::Duration;

use crate::support::{Client, Server};
use chat_server::ServerConfig;
use serde_json::json;

#[tokio::test]
async fn welcome_describes_the_session_and_the_limits() {
    let server = Server::start(ServerConfig::default()).await;
    let mut client = Client::connect(&server).await;
    client.send(json!({"type": "hello", "nick": "alice", "id": "h1"})).await;
    let welcome = client.expect("welcome").await;
    assert_eq!(welcome["id"], "h1");
    assert_eq!(welcome["nick"], "alice");
    assert_eq!(welcome["server"]["name"], "chat-server");
    assert_eq!(welcome["server"]["protocol"], 1);
    assert_eq!(welcome["session"].as_str().map(str::len), Some(32));
    assert_eq!(welcome["limits"]["max_text_bytes"], 8192);
    assert_eq!(welcome["limits"]["max_frame_bytes"], 65536);
    let mut guest = Client::connect(&server).await;
    guest.send(json!({"type": "hello"})).await;
    let welcome = guest.expect("welcome").await;
    assert!(welcome["nick"].as_str().is_some_and(|n| n.starts_with("guest-")), "{welcome}");
    assert_ne!(welcome["session"], json!(""));
    server.shutdown().await;
}

#[tokio::test]
async fn several_clients_chat_across_rooms() {
    let server = Server::start(ServerConfig::default()).await;
    let mut alice = Client::in_room(&server, "alice", "lobby").await;
    let mut bob = Client::hello(&server, "bob").await;
    bob.send(json!({"type": "join", "room": "lobby", "id": "j"})).await;
    let joined = bob.expect("joined").await;
    assert_eq!(joined["id"], "j");
    assert_eq!(joined["members"], json!(["alice", "bob"]));
    assert_eq!(joined["last_seq"], 0);
    assert_eq!(
        alice.expect("presence").await,
        json!({"type": "presence", "room": "lobby", "event": "join", "nick": "bob"})
    );
    let mut carol = Client::in_room(&server, "carol", "dev").await;

    alice
        .send(json!({"type": "say", "room": "lobby", "text": "hello <b>all</b>", "id": "m1"}))
        .await;
    for client in [&mut alice, &mut bob] {
        let message = client.expect("message").await;
        assert_eq!(message["seq"], 1);
        assert_eq!(message["from"], "alice");
        assert_eq!(message["text"], "hello <b>all</b>");
        assert_eq!(message["id"], "m1");
        assert_eq!(message["action"], false);
        assert!(message["ts"].as_u64().is_some_and(|ts| ts > 1_600_000_000_000), "{message}");
    }
    bob.send(json!({"type": "say", "room": "lobby", "text": "waves", "action": true})).await;
    for client in [&mut alice, &mut bob] {
        let message = client.expect("message").await;
        assert_eq!((message["seq"].clone(), message["action"].clone()), (json!(2), json!(true)));
    }
    carol.send(json!({"type": "say", "room": "dev", "text": "other room"})).await;
    assert_eq!(carol.expect("message").await["seq"], 1, "seq is per room");
    carol.expect_nothing_pending().await;
    alice.expect_nothing_pending().await;

    // A later joiner gets the history.
    let mut dave = Client::hello(&server, "dave").await;
    dave.send(json!({"type": "join", "room": "lobby"})).await;
    let joined = dave.expect("joined").await;
    assert_eq!(joined["last_seq"], 2);
    let texts: Vec<_> =
        joined["history"].as_array().unwrap().iter().map(|m| m["text"].clone()).collect();
    assert_eq!(texts, vec![json!("hello <b>all</b>"), json!("waves")]);
    dave.send(json!({"type": "history", "room": "lobby", "before": 2, "limit": 10, "id": "hi"}))
        .await;
    let history = dave.expect("history").await;
    assert_eq!(history["id"], "hi");
    assert_eq!(history["messages"].as_array().map(Vec::len), Some(1));

    dave.send(json!({"type": "rooms", "id": "r"})).await;
    assert_eq!(
        dave.expect("rooms").await,
        json!({"type": "rooms", "id": "r", "rooms": [{"name": "dev", "members": 1}, {"name": "lobby", "members": 3}]})
    );
    dave.send(json!({"type": "who", "room": "lobby"})).await;
    assert_eq!(dave.expect("members").await["members"], json!(["alice", "bob", "dave"]));

    // Leaving and disconnecting are both seen as leaving.
    assert_eq!(bob.expect("presence").await["nick"], "dave");
    bob.send(json!({"type": "leave", "room": "lobby", "id": "l"})).await;
    assert_eq!(bob.expect("left").await, json!({"type": "left", "id": "l", "room": "lobby"}));
    dave.quit().await;
    let presence = alice.expect("presence").await;
    assert_eq!(
        (presence["event"].clone(), presence["nick"].clone()),
        (json!("join"), json!("dave"))
    );
    for nick in ["bob", "dave"] {
        let presence = alice.expect("presence").await;
        assert_eq!(
            (presence["event"].clone(), presence["nick"].clone()),
            (json!("leave"), json!(nick))
        );
    }
    server.shutdown().await;
}

#[tokio::test]
async fn direct_messages_reach_recipient_and_sender_only() {
    let server = Server::start(ServerConfig::default()).await;
    let mut alice = Client::hello(&server, "alice").await;
    let mut bob = Client::hello(&server, "Bob").await;
    let mut carol = Client::hello(&server, "carol").await;
    alice.send(json!({"type": "dm", "to": "bob", "text": "psst", "id": "d1"})).await;
    for client in [&mut alice, &mut bob] {
        let direct = client.expect("direct").await;
        assert_eq!((direct["from"].clone(), direct["to"].clone()), (json!("alice"), json!("Bob")));
        assert_eq!((direct["text"].clone(), direct["id"].clone()), (json!("psst"), json!("d1")));
    }
    carol.expect_nothing_pending().await;
    server.shutdown().await;
}

#[tokio::test]
async fn nick_change_is_answered_and_announced() {
    let server = Server::start(ServerConfig::default()).await;
    let mut alice = Client::in_room(&server, "alice", "lobby").await;
    let mut bob = Client::in_room(&server, "bob", "lobby").await;
    alice.expect("presence").await;
    bob.send(json!({"type": "nick", "nick": "robert", "id": "n"})).await;
    assert_eq!(
        bob.expect("nick").await,
        json!({"type": "nick", "id": "n", "old": "bob", "nick": "robert"})
    );
    assert_eq!(
        alice.expect("presence").await,
        json!({"type": "presence", "room": "lobby", "event": "nick", "old": "bob", "nick": "robert"})
    );
    alice.send(json!({"type": "say", "room": "lobby", "text": "hi robert"})).await;
    alice.expect("message").await;
    assert_eq!(bob.expect("message").await["text"], "hi robert");
    server.shutdown().await;
}

#[tokio::test]
async fn typing_is_relayed_to_the_others() {
    let server = Server::start(ServerConfig::default()).await;
    let mut alice = Client::in_room(&server, "alice", "lobby").await;
    let mut bob = Client::in_room(&server, "bob", "lobby").await;
    alice.expect("presence").await;
    alice.send(json!({"type": "typing", "room": "lobby"})).await;
    alice.send(json!({"type": "typing", "room": "lobby"})).await;
    assert_eq!(
        bob.expect("typing").await,
        json!({"type": "typing", "room": "lobby", "nick": "alice"})
    );
    bob.expect_nothing_pending().await;
    alice.expect_nothing_pending().await;
    server.shutdown().await;
}

#[tokio::test]
async fn every_error_code_and_the_connection_carries_on() {
    let mut config = ServerConfig::default();
    config.chat.messages_burst = 3;
    config.chat.messages_per_sec = 1;
    let server = Server::start(config).await;
    let _bob = Client::in_room(&server, "bob", "lobby").await;
    let mut client = Client::connect(&server).await;

    client.send(json!({"type": "join", "room": "lobby", "id": "early"})).await;
    assert_eq!(client.expect_error("hello_required").await["id"], "early");
    client.send(json!({"type": "hello", "nick": "no spaces"})).await;
    client.expect_error("invalid_nick").await;
    client.send(json!({"type": "hello", "nick": "BOB"})).await;
    client.expect_error("nick_taken").await;
    client.send(json!({"type": "hello", "nick": "alice"})).await;
    client.expect("welcome").await;

    client.send_text("this is not json").await;
    client.expect_error("bad_json").await;
    client.send_text("[1, 2, 3]").await;
    client.expect_error("bad_json").await;
    client.send(json!({"type": "say", "room": "lobby", "id": "x"})).await;
    assert_eq!(client.expect_error("bad_frame").await["id"], "x");
    client.send(json!({"room": "lobby"})).await;
    client.expect_error("bad_frame").await;
    client.send(json!({"type": "ping", "id": "x".repeat(65)})).await;
    client.expect_error("bad_frame").await;
    client.socket.send(chat_transport::tungstenite::Message::binary(vec![1, 2, 3])).await.unwrap();
    client.expect_error("invalid_upload").await;
    client.send(json!({"type": "fly", "id": "u"})).await;
    assert_eq!(client.expect_error("unknown_type").await["id"], "u");
    client.send(json!({"type": "join", "room": "Bad Room"})).await;
    client.expect_error("invalid_room").await;
    client.send(json!({"type": "say", "room": "lobby", "text": "hi"})).await;
    client.expect_error("not_in_room").await;
    client.send(json!({"type": "dm", "to": "nobody", "text": "hi"})).await;
    client.expect_error("no_such_nick").await;
    client.send(json!({"type": "join", "room": "lobby"})).await;
    client.expect("joined").await;
    client.send(json!({"type": "say", "room": "lobby", "text": "x".repeat(8193)})).await;
    client.expect_error("too_large").await;
    for _ in 0..3 {
        client.send(json!({"type": "say", "room": "lobby", "text": "spam"})).await;
        client.expect("message").await;
    }
    client.send(json!({"type": "say", "room": "lobby", "text": "one more", "id": "r"})).await;
    let limited = client.expect_error("rate_limited").await;
    assert_eq!(limited["id"], "r");
    assert!(limited["retry_after_ms"].as_u64().is_some_and(|ms| ms > 0 && ms <= 1000), "{limited}");
    // After all of that, the connection still works.
    client.expect_nothing_pending().await;
    server.shutdown().await;
}

#[tokio::test]
async fn oversized_frames_close_only_that_connection() {
    let server = Server::start(ServerConfig::default()).await;
    let mut alice = Client::in_room(&server, "alice", "lobby").await;
    let mut mallory = Client::in_room(&server, "mallory", "lobby").await;
    alice.expect("presence").await;
    mallory.send_text(&"x".repeat(70 * 1024)).await;
    let (close, _) = mallory.until_closed().await;
    assert_eq!(close.map(|c| u16::from(c.code)), Some(1009));
    // mallory's session waits for a resume (away meanwhile); alice carries
    // on regardless.
    alice.expect_presence("away", "mallory").await;
    alice.send(json!({"type": "say", "room": "lobby", "text": "still here"})).await;
    assert_eq!(alice.expect("message").await["text"], "still here");
    server.shutdown().await;
}

#[tokio::test]
async fn shutdown_closes_every_connection_with_1012_and_spread_reconnect_delays() {
    let config = ServerConfig { drain_window: Duration::from_secs(4), ..ServerConfig::default() };
    let server = Server::start(config).await;
    let mut clients = Vec::new();
    for i in 0..20 {
        clients.push(Client::in_room(&server, &format!("user{i}"), "lobby").await);
    }
    clients.push(Client::connect(&server).await);
    let stop = tokio::spawn(server.shutdown());
    let mut delays = Vec::new();
    for client in &mut clients {
        let (close, _) = client.until_closed().await;
        let close = close.expect("a close frame");
        assert_eq!(u16::from(close.code), 1012);
        let delay = chat_protocol::retry_after(&close.reason).expect("a reconnect delay");
        assert!(delay <= 4000, "{delay} ms is outside the 4 s window");
        delays.push(delay);
    }
    delays.sort_unstable();
    delays.dedup();
    assert!(delays.len() > 10, "delays are spread, not shared: {delays:?}");
    stop.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_join_storm_of_two_thousand_costs_each_member_a_frame_an_interval() {
    const FANS: usize = 2_000;
    const INTERVAL: Duration = Duration::from_millis(100);
    let chat = chat_core::ChatConfig {
        member_page_max: 10,
        presence_interval: INTERVAL,
        max_members_per_room: 10_000,
        ..chat_core::ChatConfig::default()
    };
    let config = ServerConfig { chat, max_connections_per_ip: 10_000, ..ServerConfig::default() };
    let server = Server::start(config).await;
    let started = std::time::Instant::now();
    // Real connections, joining 50 at a time.
    let mut fans = Vec::with_capacity(FANS);
    for wave in 0..FANS / 50 {
        let joining = (0..50).map(|n| {
            let nick = format!("fan{}", wave * 50 + n);
            let server = &server;
            async move { Client::in_room(server, &nick, "big").await }
        });
        fans.extend(futures_util::future::join_all(joining).await);
    }
    // Every member hears of every join, in frames bounded by the intervals
    // the storm took (and the first page's joins, told one by one while
    // the room was small), not by the joins: one frame per join would be
    // a thousand on average.
    let mut most = 0;
    for fan in &mut fans {
        let mut frames = 0;
        loop {
            let frame = fan.recv().await;
            match frame["type"].as_str() {
                Some("presence") => frames += 1,
                Some("presence_batch") => {
                    frames += 1;
                    assert!(frame["changes"].as_array().unwrap().len() <= 50, "{frame}");
                    if frame["members"] == FANS {
                        break;
                    }
                }
                _ => {}
            }
        }
        most = most.max(frames);
    }
    let intervals = (started.elapsed().as_millis() / INTERVAL.as_millis()) as usize;
    assert!(most <= 10 + intervals + 2, "{most} frames in {intervals} intervals");
    // Member lists come by the page, and a prefix finds anyone.
    let fan = &mut fans[0];
    fan.send(json!({"type": "who", "room": "big", "prefix": "fan1999"})).await;
    let members = fan.expect("members").await;
    assert_eq!(members["count"], FANS, "{members}");
    assert_eq!(members["members"], json!(["fan1999"]), "{members}");
    server.shutdown().await;
}

#[tokio::test]
async fn an_overloaded_server_refuses_what_waited_too_long_and_delivers_the_rest_in_order() {
    let config = ServerConfig { max_input_wait: Duration::from_millis(5), ..flooding() };
    let server = Server::start(config).await;
    let mut watcher = Client::in_room(&server, "watcher", "crowd").await;
    let mut sender = Client::in_room(&server, "sender", "crowd").await;
    // A crowd that makes every message a fan-out (it never reads, and what
    // it is sent fits its queues).
    let mut crowd = Vec::new();
    for n in 0..150 {
        crowd.push(Client::in_room(&server, &format!("c{n}"), "crowd").await);
    }
    // Far more at once than the server takes within 5 ms.
    const SENT: usize = 400;
    for n in 0..SENT {
        let (text, id) = (format!("m{n}"), format!("m{n}"));
        sender.send(json!({"type": "say", "room": "crowd", "text": text, "id": id})).await;
    }
    // Every message is answered: delivered, or refused for now.
    let (mut accepted, mut refused) = (Vec::new(), Vec::new());
    while accepted.len() + refused.len() < SENT {
        let frame = sender.recv().await;
        match frame["type"].as_str() {
            Some("message") => accepted.push(frame),
            Some("error") => {
                assert_eq!(frame["code"], "unavailable", "{frame}");
                assert!(frame["retry_after_ms"].as_u64().is_some_and(|ms| ms >= 5), "{frame}");
                refused.push(frame["id"].as_str().unwrap().to_owned());
            }
            _ => {}
        }
    }
    assert!(!refused.is_empty(), "nothing waited 5 ms: no overload");
    assert!(!accepted.is_empty(), "everything refused");
    // What was taken is numbered without a gap, in the order sent, and
    // everyone gets exactly that.
    let first = accepted[0]["seq"].as_u64().unwrap();
    for (k, message) in accepted.iter().enumerate() {
        assert_eq!(message["seq"].as_u64(), Some(first + k as u64), "{message}");
        assert_eq!(message["id"], message["text"], "{message}");
    }
    let mut seen = Vec::new();
    while seen.len() < accepted.len() {
        let frame = watcher.recv().await;
        if frame["type"] == "message" {
            seen.push(frame["text"].clone());
        }
    }
    let sent: Vec<_> = accepted.iter().map(|m| m["text"].clone()).collect();
    assert_eq!(seen, sent);
    // A refused message sent again once the load is gone is taken.
    let again = &refused[0];
    sender.send(json!({"type": "say", "room": "crowd", "text": again, "id": again})).await;
    let message = sender.expect("message").await;
    assert_eq!(
        (&message["id"], message["seq"].as_u64()),
        (&json!(again), Some(first + sent.len() as u64))
    );
    server.shutdown().await;
}

#[tokio::test]
async fn a_flood_never_sends_a_member_who_reads_more_between_two_writes_than_its_queue_holds() {
    // (Nothing waits long enough to be refused: only the intake is tested.)
    let mut config = ServerConfig { max_input_wait: Duration::from_secs(60), ..flooding() };
    // A queue far shorter than the flood: taken all at once, before any
    // write, the flood would overflow every member's queue (4008).
    config.transport.max_queued_frames = 32;
    let server = Server::start(config).await;
    let mut sender = Client::in_room(&server, "sender", "flood").await;
    let mut members = Vec::new();
    for n in 0..20 {
        members.push(Client::in_room(&server, &format!("m{n}"), "flood").await);
    }
    const SENT: usize = 300;
    for n in 0..SENT {
        sender.send(json!({"type": "say", "room": "flood", "text": format!("t{n}")})).await;
    }
    for member in members.iter_mut().chain([&mut sender]) {
        let mut got = 0;
        while got < SENT {
            if member.recv().await["type"] == "message" {
                got += 1;
            }
        }
    }
    server.shutdown().await;
}

/// A server that lets one connection send as fast as it can.
fn flooding() -> ServerConfig {
    let chat = chat_core::ChatConfig {
        messages_per_sec: 100_000,
        messages_burst: 100_000,
        ..chat_core::ChatConfig::default()
    };
    ServerConfig { chat, frames_per_sec: 100_000, frames_burst: 100_000, ..ServerConfig::default() }
}
