//! Behind a reverse proxy (issue #18, first step): a proxy the operator
//! names says who each request comes from, and the per-address limits
//! count that address; anyone else saying so is not believed.

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::{Server, tcp_from};

/// A WebSocket upgrade from the loopback address `from`, saying it
/// forwards for `forwarded_for`: the status line's code, the socket kept
/// open (the place it takes lasts as long).
async fn upgrade(server: &Server, from: &str, forwarded_for: &str) -> (u16, tokio::net::TcpStream) {
    upgrade_at(server.addr, from, forwarded_for).await
}

/// The same, to `addr` (a proxy in front of the server).
async fn upgrade_at(
    addr: std::net::SocketAddr,
    from: &str,
    forwarded_for: &str,
) -> (u16, tokio::net::TcpStream) {
    let mut stream = tcp_from(from, addr).await;
    let request = format!(
        "GET /ws HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
         X-Forwarded-For: {forwarded_for}\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n") {
        let read = tokio::time::timeout(crate::support::WAIT, stream.read(&mut byte)).await;
        if !matches!(read, Ok(Ok(1))) {
            break;
        }
        head.push(byte[0]);
    }
    let line = String::from_utf8_lossy(&head).into_owned();
    let code = line.split_whitespace().nth(1).and_then(|code| code.parse().ok()).unwrap_or(0);
    (code, stream)
}

/// A server that believes the forwarding header of `proxy` only, and
/// takes `per_ip` connections from one client address.
fn trusting(proxy: &str, per_ip: usize) -> chat_server::ServerConfig {
    let mut config =
        chat_server::ServerConfig { max_connections_per_ip: per_ip, ..Default::default() };
    config.transport.trusted_proxies = chat_transport::TrustedProxies::parse(
        &[proxy.to_owned()],
        chat_transport::ForwardedHeader::XForwardedFor,
    )
    .unwrap();
    config
}

/// Through the proxy at `proxy`, 127.0.0.7 takes its `places` (each
/// claiming in its own header to be someone else), and the next is
/// refused: the proxy named the address it saw. The open sockets.
async fn fill_through(proxy: std::net::SocketAddr, places: usize) -> Vec<tokio::net::TcpStream> {
    let mut open = Vec::new();
    for _ in 0..places {
        let (code, stream) = upgrade_at(proxy, "127.0.0.7", "198.51.100.1").await;
        assert_eq!(code, 101);
        open.push(stream);
    }
    let (code, _) = upgrade_at(proxy, "127.0.0.7", "198.51.100.2").await;
    assert_eq!(code, 429, "127.0.0.7 is full, whatever it wrote");
    open
}

#[tokio::test]
async fn per_address_limits_count_the_client_a_trusted_proxy_names_and_ignore_anyone_elses_word() {
    let config = trusting("127.0.0.5", 2);
    let server = Server::start(config).await;
    // Through the proxy: two clients, each with its own two places; the
    // proxy itself holds none (five connections from it so far).
    let mut open = Vec::new();
    for client in ["198.51.100.1", "198.51.100.2"] {
        for _ in 0..2 {
            let (code, stream) = upgrade(&server, "127.0.0.5", client).await;
            assert_eq!(code, 101, "{client}");
            open.push(stream);
        }
    }
    let (code, _third) = upgrade(&server, "127.0.0.5", "198.51.100.1").await;
    assert_eq!(code, 429, "198.51.100.1's third");
    // What the client wrote before the proxy's hop is not believed: it is
    // still 198.51.100.2, full.
    let (code, _spoof) = upgrade(&server, "127.0.0.5", "203.0.113.7, 198.51.100.2").await;
    assert_eq!(code, 429);
    // From an address that is not the proxy, the header is ignored: it is
    // counted as itself, whatever it claims.
    let mut own = Vec::new();
    for _ in 0..2 {
        let (code, stream) = upgrade(&server, "127.0.0.6", "198.51.100.9").await;
        assert_eq!(code, 101);
        own.push(stream);
    }
    let (code, _) = upgrade(&server, "127.0.0.6", "198.51.100.10").await;
    assert_eq!(code, 429, "127.0.0.6 is full, whatever it says");
    drop((open, own));
    server.shutdown().await;
}

#[tokio::test]
async fn behind_a_real_nginx_clients_chat_and_limits_see_the_real_client_not_a_forged_header() {
    use chat_transport::tungstenite::Message as Frame;
    use futures_util::{SinkExt, StreamExt};
    use serde_json::{Value, json};
    let config = trusting("127.0.0.1", 2);
    let server = Server::start(config).await;
    let nginx = chat_test_support::ReverseProxy::start(&[server.addr], true);
    // Through nginx, a client chats with one connected straight.
    let mut bob = crate::support::Client::in_room(&server, "bob", "lobby").await;
    let url = format!("ws://{}/ws", nginx.addr());
    let transport = chat_transport::TransportConfig::default();
    let mut alice = chat_transport::connect(&url, Some("chat.v1"), &transport).await.unwrap();
    let next = async |socket: &mut chat_transport::WebSocket| -> Value {
        loop {
            let frame = tokio::time::timeout(crate::support::WAIT, socket.next()).await.unwrap();
            if let Some(Ok(Frame::Text(text))) = frame {
                return serde_json::from_str(&text).unwrap();
            }
        }
    };
    for frame in
        [json!({"type": "hello", "nick": "alice"}), json!({"type": "join", "room": "lobby"})]
    {
        alice.send(Frame::text(frame.to_string())).await.unwrap();
    }
    while next(&mut alice).await["type"] != "joined" {}
    alice
        .send(Frame::text(json!({"type": "say", "room": "lobby", "text": "via nginx"}).to_string()))
        .await
        .unwrap();
    loop {
        let frame = bob.recv().await;
        if frame["type"] == "message" {
            assert_eq!(
                (frame["from"].as_str(), frame["text"].as_str()),
                (Some("alice"), Some("via nginx"))
            );
            break;
        }
    }
    // Per address: the client nginx names (the address it came from),
    // whatever the client wrote in its own X-Forwarded-For.
    let open = fill_through(nginx.addr(), 2).await;
    let (code, _other) = upgrade_at(nginx.addr(), "127.0.0.8", "127.0.0.7").await;
    assert_eq!(code, 101, "another address has its own places");
    drop(open);
    // A proxy that does not pass the upgrade on (a common mistake): the
    // WebSocket cannot open through it (the HTTP fallback is for this).
    let broken = chat_test_support::ReverseProxy::start(&[server.addr], false);
    let (code, _) = upgrade_at(broken.addr(), "127.0.0.9", "").await;
    assert_ne!(code, 101);
    server.shutdown().await;
}

#[tokio::test]
async fn behind_caddy_websocket_and_fallback_clients_chat_and_limits_see_the_real_client() {
    use serde_json::json;
    let config = trusting("127.0.0.1", 4);
    let server = Server::start(config).await;
    let caddy = chat_test_support::ReverseProxy::caddy(&[server.addr]);
    let url = format!("ws://{}/ws", caddy.addr());
    let mut bob = crate::support::Client::in_room(&server, "bob", "lobby").await;
    // A WebSocket through Caddy, and the fallback through Caddy.
    let mut alice = crate::support::Client::connect_sse_to(&url).await;
    let socket = chat_transport::connect(&url, Some("chat.v1"), &Default::default()).await.unwrap();
    let mut carol = crate::support::Client {
        socket: chat_transport::ClientSocket::WebSocket(Box::new(socket)),
        session: String::new(),
    };
    for (client, nick) in [(&mut alice, "alice"), (&mut carol, "carol")] {
        client.send(json!({"type": "hello", "nick": nick})).await;
        client.expect("welcome").await;
        client.send(json!({"type": "join", "room": "lobby"})).await;
        client.expect("joined").await;
        client
            .send(json!({"type": "say", "room": "lobby", "text": format!("{nick} via caddy")}))
            .await;
        assert_eq!(bob.next_of("message").await["text"], format!("{nick} via caddy"));
    }
    bob.send(json!({"type": "say", "room": "lobby", "text": "back"})).await;
    for client in [&mut alice, &mut carol] {
        while client.next_of("message").await["text"] != "back" {}
    }
    // Caddy names the client it saw, whatever the client wrote.
    let _open = fill_through(caddy.addr(), 4).await;
    server.shutdown().await;
}
