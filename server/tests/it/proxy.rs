//! Behind a reverse proxy (issue #18, first step): a proxy the operator
//! names says who each request comes from, and the per-address limits
//! count that address; anyone else saying so is not believed.

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::{Server, tcp_from};

/// A WebSocket upgrade from the loopback address `from`, saying it
/// forwards for `forwarded_for`: the status line's code, the socket kept
/// open (the place it takes lasts as long).
async fn upgrade(server: &Server, from: &str, forwarded_for: &str) -> (u16, tokio::net::TcpStream) {
    let mut stream = tcp_from(from, server.addr).await;
    let request = format!(
        "GET /ws HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
         X-Forwarded-For: {forwarded_for}\r\n\r\n",
        server.addr
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

#[tokio::test]
async fn per_address_limits_count_the_client_a_trusted_proxy_names_and_ignore_anyone_elses_word() {
    let mut config = chat_server::ServerConfig { max_connections_per_ip: 2, ..Default::default() };
    config.transport.trusted_proxies = chat_transport::TrustedProxies::parse(
        &["127.0.0.5".to_owned()],
        chat_transport::ForwardedHeader::XForwardedFor,
    )
    .unwrap();
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
