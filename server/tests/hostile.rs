//! Clients that misbehave, against a real server on 127.0.0.1:0: each gets a
//! precise answer (an error code, a close code), and a well-behaved client
//! in the same room keeps chatting throughout.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use chat_server::ServerConfig;
use serde_json::json;
use support::{Client, RawClient, Server};
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
) -> (Client, u32) {
    let mut rounds = 0;
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
        }
        rounds += 1;
        tokio::select! {
            _ = stop.changed() => break,
            () = tokio::task::yield_now() => {}
        }
    }
    (client, rounds)
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
    let (mut alice, rounds) = chatting.await.unwrap();
    assert!(rounds > 0);
    // alice answered every ping by reading; she is still here.
    alice.expect_nothing_pending().await;
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
        let _ = futures_util::SinkExt::send(
            &mut flood.socket,
            chat_transport::tungstenite::Message::text(format!(r#"{{"type":"ping","id":"x{i}"}}"#)),
        )
        .await;
    }
    let (close, _) = flood.until_closed().await;
    assert_eq!(close.map(|c| u16::from(c.code)), Some(1008));

    stop.send(true).unwrap();
    let (mut alice, rounds) = chatting.await.unwrap();
    assert!(rounds > 0);
    alice.expect_nothing_pending().await;
    server.shutdown().await;
}
