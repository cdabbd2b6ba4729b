//! Health for load balancers and orchestrators (issue #19, first step):
//! `/livez` while the process answers, `/readyz` while it should get
//! traffic, and a shutdown that first says it is draining.

use std::time::Duration;

use chat_server::ServerConfig;
use serde_json::json;

use crate::support::{Client, Server, WAIT, http_get, http_get_at};

/// Waits until `/readyz` of the server at `addr` answers `status`; its
/// body.
async fn readiness_becomes(addr: std::net::SocketAddr, status: u16) -> String {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let (now, _, body) = http_get_at(addr, "/readyz", None).await;
        if now == status {
            return String::from_utf8_lossy(&body).into_owned();
        }
        assert!(tokio::time::Instant::now() < deadline, "/readyz stayed {now}, not {status}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn a_shutdown_first_says_it_is_draining_and_refuses_newcomers_while_the_others_chat_on() {
    let config = ServerConfig {
        drain_delay: Duration::from_secs(2),
        drain_window: Duration::from_millis(500),
        ..ServerConfig::default()
    };
    let server = Server::start(config).await;
    assert_eq!(http_get(&server, "/readyz", None).await.0, 200);
    assert_eq!(http_get(&server, "/livez", None).await.0, 200);
    let mut alice = Client::in_room(&server, "alice", "lobby").await;
    let mut bob = Client::in_room(&server, "bob", "lobby").await;
    alice.expect_presence("join", "bob").await;
    let addr = server.addr;
    let url = server.url();
    let stopping = tokio::spawn(server.shutdown());
    // Not ready, and says why; still alive.
    let body = readiness_becomes(addr, 503).await;
    assert_eq!(body, "not ready: draining: the server is shutting down\n");
    assert_eq!(http_get_at(addr, "/livez", None).await.0, 200);
    // Newcomers are turned away with a word, WebSocket or fallback.
    let refused = chat_transport::connect(&url, Some("chat.v1"), &Default::default()).await;
    assert!(
        matches!(&refused, Err(chat_transport::ConnectError::Refused { status, .. }) if status.as_u16() == 503),
        "{refused:?}"
    );
    let refused = chat_transport::connect_event_stream(&url, &Default::default()).await;
    assert!(
        matches!(&refused, Err(chat_transport::ConnectError::Refused { status, .. }) if status.as_u16() == 503),
        "{refused:?}"
    );
    // Those already here chat on until the delay is over...
    alice.send(json!({"type": "say", "room": "lobby", "text": "still here"})).await;
    assert_eq!(bob.next_of("message").await["text"], "still here");
    // ...then are told to come back later.
    for client in [&mut alice, &mut bob] {
        let (close, _) = client.until_closed().await;
        assert_eq!(close.map(|c| u16::from(c.code)), Some(1012));
    }
    stopping.await.unwrap();
}
