//! TLS on both ends over real sockets: WebSockets over wss, frames pushed
//! through the TLS session (including when the socket is full), and
//! clients that do not trust the certificate.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use chat_transport::tungstenite::Message;
use chat_transport::tungstenite::Utf8Bytes;
use chat_transport::{
    Accepted, ClientTls, ConnectError, Flushed, Gate, Pushed, Site, TlsConfig, TransportConfig,
    accept, connect,
};
use futures_util::{SinkExt, StreamExt};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::net::TcpListener;

/// A certificate for 127.0.0.1, its PEM (to trust it), and the server's
/// TLS configuration.
fn certificate() -> (String, TlsConfig) {
    let made = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()]).unwrap();
    let pem = made.cert.pem();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(made.signing_key.serialize_der()));
    let tls = TlsConfig::new(vec![CertificateDer::from(made.cert.der().to_vec())], key).unwrap();
    (pem, tls)
}

/// The frames a server pushes: 3000 of odd sizes, each filled with one
/// letter, the first byte telling which.
fn frames() -> Vec<String> {
    (0..3000)
        .map(|i| {
            let fill = char::from(b'a' + (i % 26) as u8);
            fill.to_string().repeat(1 + (i * 7919) % 20_000)
        })
        .collect()
}

/// Serves over TLS: a page, and a WebSocket that pushes `frames()` through
/// `Outgoing` as fast as the session takes them, then echoes.
async fn serve(tls: TlsConfig) -> (std::net::SocketAddr, Arc<AtomicUsize>) {
    let stalls = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&stalls);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let site = Site::new("/ws", None);
    let config = TransportConfig {
        tls: Some(tls),
        max_queued_frames: 10_000,
        max_queued_bytes: 64 << 20,
        ..TransportConfig::default()
    };
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let (site, config, stalls) = (site.clone(), config.clone(), Arc::clone(&counted));
            tokio::spawn(async move {
                let Ok(Accepted::Upgraded(upgraded)) =
                    accept(stream, &site, &config, &Gate::unlimited()).await
                else {
                    return;
                };
                let (mut socket, outgoing) = (upgraded.socket, upgraded.outgoing);
                for frame in frames() {
                    assert_ne!(outgoing.push_text(Utf8Bytes::from(frame), false), Pushed::Full);
                    if outgoing.flush() == Flushed::Stalled {
                        stalls.fetch_add(1, Ordering::Relaxed);
                        tokio::time::timeout(Duration::from_secs(10), outgoing.unstall())
                            .await
                            .unwrap()
                            .unwrap();
                    }
                }
                while let Some(Ok(message)) = socket.next().await {
                    if message.is_text() && socket.send(message).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    (addr, stalls)
}

#[tokio::test]
async fn frames_pushed_through_the_tls_session_arrive_whole_and_in_order() {
    let (pem, tls) = certificate();
    let (addr, stalls) = serve(tls).await;
    let dir = std::env::temp_dir().join(format!("chat-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ca = dir.join("ca.pem");
    std::fs::write(&ca, pem).unwrap();
    let config = TransportConfig {
        client_tls: Some(ClientTls::from_ca_file(&ca).unwrap()),
        max_message_bytes: 1 << 20,
        ..TransportConfig::default()
    };
    let mut socket = connect(&format!("wss://{addr}/ws"), None, &config).await.unwrap();
    // Read nothing for a while: the server's pushes fill the socket and
    // stall, then resume as we read.
    tokio::task::yield_now().await;
    for (i, expected) in frames().iter().enumerate() {
        let message = tokio::time::timeout(Duration::from_secs(10), socket.next()).await.unwrap();
        match message {
            Some(Ok(Message::Text(text))) => {
                assert!(text.as_str() == expected, "frame {i} differs")
            }
            other => panic!("frame {i}: {other:?}"),
        }
    }
    socket.send(Message::text("and back")).await.unwrap();
    let echo = tokio::time::timeout(Duration::from_secs(10), socket.next()).await.unwrap();
    assert_eq!(echo.unwrap().unwrap(), Message::text("and back"));
    assert!(stalls.load(Ordering::Relaxed) > 0, "the socket filled at least once");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn an_untrusted_certificate_is_refused_unless_told_otherwise() {
    let (_pem, tls) = certificate();
    let (addr, _) = serve(tls).await;
    let public = TransportConfig::default();
    match connect(&format!("wss://{addr}/ws"), None, &public).await {
        Err(ConnectError::Tls { .. }) => {}
        other => panic!("a self-signed certificate must not be trusted by default: {other:?}"),
    }
    let insecure = TransportConfig {
        client_tls: Some(ClientTls::insecure()),
        max_message_bytes: 1 << 20,
        ..TransportConfig::default()
    };
    let mut socket = connect(&format!("wss://{addr}/ws"), None, &insecure).await.unwrap();
    let first = tokio::time::timeout(Duration::from_secs(10), socket.next()).await.unwrap();
    assert!(first.unwrap().unwrap().is_text());
}

#[tokio::test]
async fn a_plain_client_on_a_tls_port_gets_nowhere_and_the_server_carries_on() {
    let (pem, tls) = certificate();
    let (addr, _) = serve(tls).await;
    let plain = connect(&format!("ws://{addr}/ws"), None, &TransportConfig::default()).await;
    assert!(plain.is_err(), "plain HTTP on a TLS port must fail");
    let dir = std::env::temp_dir().join(format!("chat-tls-plain-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("ca.pem"), pem).unwrap();
    let config = TransportConfig {
        client_tls: Some(ClientTls::from_ca_file(&dir.join("ca.pem")).unwrap()),
        max_message_bytes: 1 << 20,
        ..TransportConfig::default()
    };
    assert!(connect(&format!("wss://{addr}/ws"), None, &config).await.is_ok());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_ca_file_without_certificates_is_an_error() {
    let dir = std::env::temp_dir().join(format!("chat-tls-empty-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("empty.pem"), "not a certificate\n").unwrap();
    assert!(ClientTls::from_ca_file(&dir.join("empty.pem")).is_err());
    assert!(ClientTls::from_ca_file(&dir.join("missing.pem")).is_err());
    std::fs::remove_dir_all(&dir).unwrap();
}
