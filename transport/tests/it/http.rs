//! Raw HTTP requests against a real listener on 127.0.0.1:0, and the client
//! connector against the same listener.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use chat_transport::tungstenite::Message;
use chat_transport::{
    Accepted, ConnectError, Gate, Page, Site, TransportConfig, accept, close_frame_for, connect,
};
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};

const PAGE: &str = "<!doctype html><title>t</title>";

/// Serves a site whose WebSocket endpoint echoes every text message.
async fn serve(config: TransportConfig) -> SocketAddr {
    serve_gated(config, Gate::unlimited()).await
}

/// The same, with connection limits.
async fn serve_gated(config: TransportConfig, gate: Arc<Gate>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let site = Site::new("/ws", Some("chat.v1"))
        .page("/", Page { content_type: "text/html; charset=utf-8", body: PAGE.as_bytes() });
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let site = site.clone();
            let config = config.clone();
            let gate = Arc::clone(&gate);
            tokio::spawn(async move {
                if let Ok(Accepted::Upgraded(upgraded)) =
                    accept(stream, &site, &config, &gate).await
                {
                    let mut socket = upgraded.socket;
                    let protocol = upgraded.subprotocol.unwrap_or("none");
                    let _ = socket.send(Message::text(format!("protocol={protocol}"))).await;
                    while let Some(message) = socket.next().await {
                        match message {
                            Ok(message) if message.is_text() => {
                                if socket.send(message).await.is_err() {
                                    break;
                                }
                            }
                            Ok(_) => {}
                            Err(err) => {
                                if let Some(frame) = close_frame_for(&err) {
                                    let _ = socket.close(Some(frame)).await;
                                }
                                break;
                            }
                        }
                    }
                }
            });
        }
    });
    addr
}

/// Sends raw bytes and reads until the server closes.
async fn raw(addr: SocketAddr, request: &[u8]) -> String {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(request).await.unwrap();
    let mut response = Vec::new();
    let read = stream.read_to_end(&mut response);
    tokio::time::timeout(Duration::from_secs(10), read).await.unwrap().unwrap();
    String::from_utf8_lossy(&response).into_owned()
}

fn status_line(response: &str) -> &str {
    response.lines().next().unwrap_or_default()
}

fn upgrade_request(extra: &str) -> String {
    format!(
        "GET /ws HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n{extra}\r\n"
    )
}

#[tokio::test]
async fn table_of_raw_requests() {
    let addr = serve(TransportConfig::default()).await;
    let key = "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n";
    let big_header =
        format!("GET / HTTP/1.1\r\nHost: localhost\r\nX-Big: {}\r\n\r\n", "a".repeat(17 * 1024));
    let cases: Vec<(&str, String, &str, &[&str])> = vec![
        (
            "page",
            "GET / HTTP/1.1\r\nHost: localhost\r\n\r\n".into(),
            "HTTP/1.1 200 OK",
            &[
                "Content-Security-Policy: default-src 'self'",
                "Content-Type: text/html; charset=utf-8",
                PAGE,
            ],
        ),
        ("page with query", "GET /?x=1 HTTP/1.1\r\nHost: localhost\r\n\r\n".into(), "HTTP/1.1 200 OK", &[]),
        (
            "head",
            "HEAD / HTTP/1.1\r\nHost: localhost\r\n\r\n".into(),
            "HTTP/1.1 200 OK",
            &["Content-Length: 31"],
        ),
        (
            "unknown path",
            "GET /nope HTTP/1.1\r\nHost: localhost\r\n\r\n".into(),
            "HTTP/1.1 404 Not Found",
            &[],
        ),
        (
            "post page",
            "POST / HTTP/1.1\r\nHost: localhost\r\nContent-Length: 2\r\n\r\nhi".into(),
            "HTTP/1.1 405 Method Not Allowed",
            &["Allow: GET, HEAD"],
        ),
        (
            "put ws",
            "PUT /ws HTTP/1.1\r\nHost: localhost\r\n\r\n".into(),
            "HTTP/1.1 405 Method Not Allowed",
            &["Allow: GET, POST"],
        ),
        (
            "post ws without a stream",
            "POST /ws HTTP/1.1\r\nHost: localhost\r\nContent-Length: 0\r\n\r\n".into(),
            "HTTP/1.1 400 Bad Request",
            &[],
        ),
        (
            "post to a stream that is not there",
            "POST /ws?stream=abc&seq=0 HTTP/1.1\r\nHost: localhost\r\nContent-Length: 2\r\n\r\n{}"
                .into(),
            "HTTP/1.1 404 Not Found",
            &[],
        ),
        (
            "post without a length",
            "POST /ws?stream=abc&seq=0 HTTP/1.1\r\nHost: localhost\r\n\r\n".into(),
            "HTTP/1.1 411 Length Required",
            &[],
        ),
        (
            "post too large",
            "POST /ws?stream=abc&seq=0 HTTP/1.1\r\nHost: localhost\r\nContent-Length: 99999999\r\n\r\n"
                .into(),
            "HTTP/1.1 413 Payload Too Large",
            &[],
        ),
        (
            "post with a close code out of range",
            "POST /ws?stream=abc&seq=0&close=99 HTTP/1.1\r\nHost: localhost\r\nContent-Length: 0\r\n\r\n"
                .into(),
            "HTTP/1.1 400 Bad Request",
            &[],
        ),
        (
            "post from another site",
            "POST /ws?stream=abc&seq=0 HTTP/1.1\r\nHost: localhost\r\nOrigin: http://evil.example\r\n\
             Content-Length: 0\r\n\r\n"
                .into(),
            "HTTP/1.1 403 Forbidden",
            &[],
        ),
        (
            "event stream for another site",
            "GET /ws HTTP/1.1\r\nHost: localhost\r\nAccept: text/event-stream\r\nOrigin: http://evil.example\r\n\r\n"
                .into(),
            "HTTP/1.1 403 Forbidden",
            &[],
        ),
        (
            "ws without upgrade",
            "GET /ws HTTP/1.1\r\nHost: localhost\r\n\r\n".into(),
            "HTTP/1.1 426 Upgrade Required",
            &["Upgrade: websocket"],
        ),
        (
            "cross-site origin",
            upgrade_request(&format!(
                "Sec-WebSocket-Version: 13\r\n{key}Origin: https://evil.example\r\n"
            )),
            "HTTP/1.1 403 Forbidden",
            &["--allowed-origin"],
        ),
        (
            "own origin",
            upgrade_request(&format!(
                "Sec-WebSocket-Version: 13\r\n{key}Origin: http://localhost\r\n"
            )),
            "HTTP/1.1 101 Switching Protocols",
            &[],
        ),
        (
            "missing key",
            upgrade_request("Sec-WebSocket-Version: 13\r\n"),
            "HTTP/1.1 400 Bad Request",
            &[],
        ),
        (
            "short key",
            upgrade_request("Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: c2hvcnQ=\r\n"),
            "HTTP/1.1 400 Bad Request",
            &[],
        ),
        (
            "bad version",
            upgrade_request(&format!("Sec-WebSocket-Version: 8\r\n{key}")),
            "HTTP/1.1 426 Upgrade Required",
            &["Sec-WebSocket-Version: 13"],
        ),
        (
            "missing version",
            upgrade_request(key),
            "HTTP/1.1 426 Upgrade Required",
            &["Sec-WebSocket-Version: 13"],
        ),
        (
            "no connection upgrade",
            format!(
                "GET /ws HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n{key}\r\n"
            ),
            "HTTP/1.1 400 Bad Request",
            &[],
        ),
        (
            "http/1.0 upgrade",
            format!(
                "GET /ws HTTP/1.0\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n{key}\r\n"
            ),
            "HTTP/1.1 400 Bad Request",
            &[],
        ),
        ("header too large", big_header, "HTTP/1.1 431 Request Header Fields Too Large", &[]),
        ("garbage", "\x00\x01 hello\r\n\r\n".into(), "HTTP/1.1 400 Bad Request", &[]),
        (
            "bad header name",
            "GET / HTTP/1.1\r\nBad Header: x\r\n\r\n".into(),
            "HTTP/1.1 400 Bad Request",
            &[],
        ),
        // A page whose name was made to point at this server (DNS
        // rebinding) sends its own name, and the origin matches it.
        (
            "rebound host name",
            format!(
                "GET /ws HTTP/1.1\r\nHost: evil.example:8080\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                 Sec-WebSocket-Version: 13\r\n{key}Origin: http://evil.example:8080\r\n\r\n"
            ),
            "HTTP/1.1 421 Misdirected Request",
            &["--allowed-host"],
        ),
        ("page by name", "GET / HTTP/1.1\r\nHost: evil.example\r\n\r\n".into(), "HTTP/1.1 421 Misdirected Request", &[]),
        ("page by ipv4", "GET / HTTP/1.1\r\nHost: 127.0.0.1:80\r\n\r\n".into(), "HTTP/1.1 200 OK", &[]),
        ("page by ipv6", "GET / HTTP/1.1\r\nHost: [::1]:80\r\n\r\n".into(), "HTTP/1.1 200 OK", &[]),
        ("page by sub.localhost", "GET / HTTP/1.1\r\nHost: chat.localhost\r\n\r\n".into(), "HTTP/1.1 200 OK", &[]),
        ("http/1.1 without host", "GET / HTTP/1.1\r\n\r\n".into(), "HTTP/1.1 400 Bad Request", &["needs Host"]),
        ("http/1.0 without host", "GET / HTTP/1.0\r\n\r\n".into(), "HTTP/1.1 200 OK", &[]),
        (
            "length and chunked",
            "GET / HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n".into(),
            "HTTP/1.1 400 Bad Request",
            &["Content-Length and Transfer-Encoding"],
        ),
        (
            "two lengths",
            "GET / HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n".into(),
            "HTTP/1.1 400 Bad Request",
            &[],
        ),
        (
            "bad length",
            "GET / HTTP/1.1\r\nHost: localhost\r\nContent-Length: -1\r\n\r\n".into(),
            "HTTP/1.1 400 Bad Request",
            &[],
        ),
        (
            "valid upgrade",
            upgrade_request(&format!("Sec-WebSocket-Version: 13\r\n{key}")),
            "HTTP/1.1 101 Switching Protocols",
            &["Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo="],
        ),
    ];
    for (name, request, status, contains) in cases {
        let response = if status.contains("101") {
            // An open WebSocket does not close by itself: read the head only.
            read_head(addr, request.as_bytes()).await
        } else {
            raw(addr, request.as_bytes()).await
        };
        assert_eq!(status_line(&response), status, "{name}: {response}");
        for needle in contains {
            assert!(response.contains(needle), "{name}: {needle:?} missing from {response}");
        }
        if name == "head" {
            assert!(!response.contains(PAGE), "HEAD has no body");
        }
    }
}

async fn read_head(addr: SocketAddr, request: &[u8]) -> String {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(request).await.unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        let n = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut byte))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(n, 1, "closed before the end of the head: {}", String::from_utf8_lossy(&head));
        head.push(byte[0]);
    }
    String::from_utf8_lossy(&head).into_owned()
}

#[tokio::test]
async fn subprotocol_is_selected_only_when_offered() {
    let addr = serve(TransportConfig::default()).await;
    let base = "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n";
    let offered = read_head(
        addr,
        upgrade_request(&format!("{base}Sec-WebSocket-Protocol: x, chat.v1\r\n")).as_bytes(),
    )
    .await;
    assert!(offered.contains("Sec-WebSocket-Protocol: chat.v1\r\n"), "{offered}");
    let none = read_head(addr, upgrade_request(base).as_bytes()).await;
    assert!(!none.contains("Sec-WebSocket-Protocol"), "{none}");
}

#[tokio::test]
async fn bytes_sent_with_the_handshake_reach_the_websocket() {
    let addr = serve(TransportConfig::default()).await;
    let mut request = upgrade_request(
        "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n",
    )
    .into_bytes();
    // A masked text frame "hi" in the same write as the request head.
    let mask = [1u8, 2, 3, 4];
    request.extend_from_slice(&[0x81, 0x80 | 2]);
    request.extend_from_slice(&mask);
    request.extend(b"hi".iter().zip(mask.iter().cycle()).map(|(b, m)| b ^ m));
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(&request).await.unwrap();
    let mut received = Vec::new();
    let mut buf = [0u8; 256];
    // The head, then the greeting frame, then the echo of "hi".
    while !received.windows(4).any(|w| w == [0x81, 0x02, b'h', b'i']) {
        let n = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert!(n > 0, "closed: {}", String::from_utf8_lossy(&received));
        received.extend_from_slice(&buf[..n]);
    }
}

#[tokio::test]
async fn connector_round_trip() {
    let addr = serve(TransportConfig::default()).await;
    let config = TransportConfig::default();
    let mut socket = connect(&format!("ws://{addr}/ws"), Some("chat.v1"), &config).await.unwrap();
    let greeting = socket.next().await.unwrap().unwrap();
    assert_eq!(greeting, Message::text("protocol=chat.v1"));
    socket.send(Message::text("ping")).await.unwrap();
    assert_eq!(socket.next().await.unwrap().unwrap(), Message::text("ping"));
}

#[tokio::test]
async fn connector_reports_the_status_of_a_refused_upgrade() {
    let addr = serve(TransportConfig::default()).await;
    let err = connect(&format!("ws://{addr}/elsewhere"), None, &TransportConfig::default())
        .await
        .unwrap_err();
    match &err {
        ConnectError::Refused { status, body } => {
            assert_eq!(status.as_u16(), 404);
            assert_eq!(body, "not found\n");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(err.to_string(), "server answered 404 Not Found: not found");
}

#[tokio::test]
async fn connector_reports_bad_urls_and_refused_connections() {
    let config = TransportConfig::default();
    assert!(matches!(
        connect("http://x/ws", None, &config).await,
        Err(ConnectError::BadUrl { .. })
    ));
    assert!(matches!(connect("not a url", None, &config).await, Err(ConnectError::BadUrl { .. })));
    // A port nobody listens on: bind one, then free it.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let err = connect(&format!("ws://{addr}/ws"), None, &config).await.unwrap_err();
    assert!(matches!(err, ConnectError::Io { .. }), "{err:?}");
    // With its cause, the cause said once.
    let shown = format!("{:#}", anyhow::Error::from(err));
    assert!(shown.starts_with(&format!("cannot connect to {addr}: ")), "{shown}");
    let cause = shown.rsplit(": ").next().unwrap_or_default().to_owned();
    assert_eq!(shown.matches(&cause).count(), 1, "{shown}");
}

#[tokio::test]
async fn slow_request_heads_get_408() {
    let config = TransportConfig {
        handshake_timeout: Duration::from_millis(200),
        ..TransportConfig::default()
    };
    let addr = serve(config).await;
    // Half a request, then nothing: the server must give up on its own.
    let response = raw(addr, b"GET / HTTP/1.1\r\n").await;
    assert_eq!(status_line(&response), "HTTP/1.1 408 Request Timeout");
}

#[tokio::test]
async fn oversized_messages_close_with_1009() {
    let config = TransportConfig { max_message_bytes: 1024, ..TransportConfig::default() };
    let addr = serve(config.clone()).await;
    let client_config = TransportConfig::default();
    let mut socket = connect(&format!("ws://{addr}/ws"), None, &client_config).await.unwrap();
    let _greeting = socket.next().await.unwrap().unwrap();
    socket.send(Message::text("x".repeat(2048))).await.unwrap();
    let mut close_code = None;
    while let Some(Ok(message)) = socket.next().await {
        if let Message::Close(frame) = message {
            close_code = frame.map(|f| u16::from(f.code));
        }
    }
    assert_eq!(close_code, Some(1009));
}

#[tokio::test]
async fn listed_origins_may_upgrade_from_another_site() {
    let config = TransportConfig {
        allowed_origins: vec!["https://app.example".to_owned()],
        ..TransportConfig::default()
    };
    let addr = serve(config).await;
    let base = "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n";
    let listed = read_head(
        addr,
        upgrade_request(&format!("{base}Origin: https://app.example\r\n")).as_bytes(),
    )
    .await;
    assert_eq!(status_line(&listed), "HTTP/1.1 101 Switching Protocols", "{listed}");
    let other =
        raw(addr, upgrade_request(&format!("{base}Origin: https://evil.example\r\n")).as_bytes())
            .await;
    assert_eq!(status_line(&other), "HTTP/1.1 403 Forbidden", "{other}");
}

/// Opens a TCP connection to `addr` from the loopback address `source`.
async fn connect_from(source: &str, addr: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(format!("{source}:0").parse().unwrap()).unwrap();
    socket.connect(addr).await.unwrap()
}

/// Sends an upgrade request from `source` and returns the status line, with
/// the stream left open.
async fn upgrade_from(source: &str, addr: SocketAddr) -> (String, TcpStream) {
    let mut stream = connect_from(source, addr).await;
    let request = upgrade_request(
        "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n",
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        let read = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut byte));
        if read.await.unwrap().unwrap() == 0 {
            break;
        }
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    (status_line(&head).to_owned(), stream)
}

#[tokio::test]
async fn connection_limits_refuse_at_the_upgrade_and_free_places_on_close() {
    let gate = Gate::new(2, 1);
    let addr = serve_gated(TransportConfig::default(), Arc::clone(&gate)).await;
    let (first, first_stream) = upgrade_from("127.0.0.1", addr).await;
    assert_eq!(first, "HTTP/1.1 101 Switching Protocols");
    let (same_ip, _) = upgrade_from("127.0.0.1", addr).await;
    assert_eq!(same_ip, "HTTP/1.1 429 Too Many Requests");
    let (other_ip, _other) = upgrade_from("127.0.0.2", addr).await;
    assert_eq!(other_ip, "HTTP/1.1 101 Switching Protocols");
    let (full, _) = upgrade_from("127.0.0.3", addr).await;
    assert_eq!(full, "HTTP/1.1 503 Service Unavailable");
    // Pages are still served while the WebSockets are full (to an address
    // with a place left: a connection of any kind counts for its address).
    let mut from_four = connect_from("127.0.0.4", addr).await;
    from_four.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n").await.unwrap();
    let mut page = String::new();
    from_four.read_to_string(&mut page).await.unwrap();
    assert_eq!(status_line(&page), "HTTP/1.1 200 OK");
    // The first connection goes; once the server has seen it, its place is free.
    drop(first_stream);
    tokio::time::timeout(Duration::from_secs(10), async {
        while gate.open() > 1 {
            tokio::task::yield_now().await;
        }
    })
    .await
    .unwrap();
    let (again, _again) = upgrade_from("127.0.0.1", addr).await;
    assert_eq!(again, "HTTP/1.1 101 Switching Protocols");
}
