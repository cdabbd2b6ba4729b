//! The servers Socket.IO's own compliance suites expect
//! (`scripts/socketio-compliance`), on our Engine.IO driver and Socket.IO
//! codec, the two the chat server speaks Socket.IO with.
//!
//! `socketio_compliance engine.io` answers at `/engine.io/` as the
//! engine.io-protocol suite's reference server does: it sends back every
//! message it gets. `socketio_compliance socket.io` answers at
//! `/socket.io/` as the socket.io-protocol suite's does: a connection to
//! `/` or `/custom` is sent its auth payload back as `auth`, `message` is
//! answered `message-back` with the same arguments (and attachments),
//! `message-with-ack` is acknowledged with them, another namespace is
//! refused, and a connection that names none within a second is closed.
//! Both ping every 300 ms and wait 200 ms for the pong, as the suites ask.
//! Prints `listening on ADDR` once ready.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use chat_protocol::socketio::{Kind, MAIN, Packet};
use chat_transport::engineio::{EngineSocket, Engines, Link, SessionConfig};
use chat_transport::tungstenite::{Bytes, Message, Utf8Bytes};
use chat_transport::{Accepted, Gate, Pushed, Site, TransportConfig, accept};
use serde_json::Value;
use tokio::net::TcpListener;

/// The namespace the Socket.IO suite connects to besides the main one.
const CUSTOM: &str = "/custom";

/// How long a session may go without connecting to a namespace (the
/// suite's `connectTimeout`).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, Copy)]
enum Suite {
    EngineIo,
    SocketIo,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::io::Result<()> {
    let (suite, path) = match std::env::args().nth(1).as_deref() {
        Some("engine.io") => (Suite::EngineIo, "/engine.io/"),
        Some("socket.io") => (Suite::SocketIo, "/socket.io/"),
        _ => {
            eprintln!("usage: socketio_compliance engine.io|socket.io");
            std::process::exit(2);
        }
    };
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    println!("listening on {}", listener.local_addr()?);
    let sessions = SessionConfig {
        ping_interval: Duration::from_millis(300),
        ping_timeout: Duration::from_millis(200),
        ..SessionConfig::default()
    };
    let engines = Arc::new(Engines::new("", sessions));
    let site = Arc::new(Site::pages_only().with_engineio(path, engines));
    // The suites' pages may come from anywhere (`cors: { origin: "*" }`).
    let config =
        Arc::new(TransportConfig { allowed_origins: vec!["*".to_owned()], ..Default::default() });
    let gate = Gate::unlimited();
    loop {
        let (stream, _) = listener.accept().await?;
        let (site, config, gate) = (Arc::clone(&site), Arc::clone(&config), Arc::clone(&gate));
        tokio::spawn(async move {
            if let Ok(Accepted::EngineIo(opened)) = accept(stream, &site, &config, &gate).await {
                match suite {
                    Suite::EngineIo => echo(opened.socket).await,
                    Suite::SocketIo => reference(opened.socket).await,
                }
            }
        });
    }
}

/// Sends back every message of the session.
async fn echo(mut socket: EngineSocket) {
    let link = Arc::clone(socket.link());
    while let Some(message) = socket.next().await {
        let pushed = match message {
            Message::Text(text) => link.push_text(format!("4{text}").into(), false),
            Message::Binary(bytes) => link.push_binary(bytes),
            _ => continue,
        };
        if !sent(&link, pushed) {
            break;
        }
    }
}

/// Whether a push went (written out if it was the first since the last
/// write).
fn sent(link: &Link, pushed: Pushed) -> bool {
    if pushed == Pushed::First {
        link.flush();
    }
    !matches!(pushed, Pushed::Full | Pushed::Closed)
}

/// Serves the socket.io-protocol suite's reference application.
async fn reference(mut socket: EngineSocket) {
    let link = Arc::clone(socket.link());
    let mut connected = HashSet::new();
    // Whether it ever connected to a namespace (else it is closed once
    // the connect timeout passes).
    let mut greeted = false;
    // A binary packet whose attachments are on their way, and those come.
    let mut binary: Option<(Packet, Vec<Bytes>)> = None;
    let deadline = tokio::time::Instant::now() + CONNECT_TIMEOUT;
    loop {
        let message = match greeted {
            false => match tokio::time::timeout_at(deadline, socket.next()).await {
                Ok(message) => message,
                Err(_) => break,
            },
            true => socket.next().await,
        };
        let packet = match message {
            None => return,
            Some(Message::Binary(bytes)) => match binary.as_mut() {
                Some((packet, parts)) => {
                    parts.push(bytes);
                    if parts.len() < packet.attachments {
                        continue;
                    }
                    let Some((packet, parts)) = binary.take() else { continue };
                    answer(&link, &packet, parts);
                    continue;
                }
                None => break,
            },
            Some(Message::Text(text)) => match Packet::decode(&text) {
                Ok(packet) => packet,
                Err(_) => break,
            },
            Some(_) => continue,
        };
        match packet.kind {
            Kind::Connect if packet.nsp == MAIN || packet.nsp == CUSTOM => {
                let sid = format!("{:024x}", rand::random::<u128>() >> 32);
                let auth = packet.data.clone().unwrap_or_else(|| Value::Object(Default::default()));
                let answer = Packet {
                    kind: Kind::Connect,
                    data: Some(serde_json::json!({ "sid": sid })),
                    ..packet.clone()
                };
                let mut emit = Packet::event("auth", [auth]);
                emit.nsp.clone_from(&packet.nsp);
                push(&link, &answer);
                push(&link, &emit);
                connected.insert(packet.nsp);
                greeted = true;
            }
            Kind::Connect => {
                let refused = Packet {
                    kind: Kind::ConnectError,
                    data: Some(serde_json::json!({ "message": "Invalid namespace" })),
                    ..packet
                };
                push(&link, &refused);
            }
            Kind::Disconnect => {
                connected.remove(&packet.nsp);
            }
            Kind::BinaryEvent | Kind::BinaryAck if packet.attachments > 0 => {
                binary = Some((packet, Vec::new()));
            }
            Kind::BinaryEvent | Kind::BinaryAck => break,
            _ if !connected.contains(&packet.nsp) => break,
            _ => answer(&link, &packet, Vec::new()),
        }
    }
    link.close();
}

/// Answers an event (and its `attachments`) as the reference application
/// does.
fn answer(link: &Link, packet: &Packet, attachments: Vec<Bytes>) {
    let args = packet.args().to_vec();
    let answer = match (packet.event_name(), packet.id) {
        (Some("message"), _) => {
            let data = std::iter::once(Value::from("message-back")).chain(args).collect();
            Packet { data: Some(Value::Array(data)), id: None, ..packet.clone() }
        }
        (Some("message-with-ack"), Some(id)) => {
            let kind = if attachments.is_empty() { Kind::Ack } else { Kind::BinaryAck };
            Packet { kind, id: Some(id), data: Some(Value::Array(args)), ..packet.clone() }
        }
        _ => return,
    };
    push(link, &answer);
    for attachment in attachments {
        sent(link, link.push_binary(attachment));
    }
}

/// Sends `packet` as an Engine.IO message.
fn push(link: &Link, packet: &Packet) {
    sent(link, link.push_text(Utf8Bytes::from(format!("4{}", packet.encode())), false));
}
