//! An echo server on chat-transport's upgrade path and write side, for the
//! Autobahn|Testsuite `fuzzingclient` (`scripts/autobahn`).
//!
//! Text messages are echoed through [`chat_transport::Outgoing`] (the
//! server's own framing and `writev`, as the chat hub writes), binary ones
//! through tungstenite. Prints `listening on ADDR` once ready.

use std::sync::Arc;

use chat_transport::tungstenite::Message;
use chat_transport::{Accepted, Gate, Pushed, Site, TransportConfig, accept, close_frame_for};
use futures_util::StreamExt;
use tokio::net::TcpListener;

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::io::Result<()> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    println!("listening on {}", listener.local_addr()?);
    let site = Arc::new(Site::new("/", None));
    let config = Arc::new(TransportConfig {
        // The suite sends messages of up to 16 MiB (case 9).
        max_message_bytes: 64 << 20,
        max_queued_bytes: 64 << 20,
        // The suite's pages come from elsewhere.
        allowed_origins: vec!["*".to_owned()],
        // It splits messages into thousands of frames (case 9.3): the
        // server's policy cap is not what conformance is about.
        max_message_frames: u32::MAX,
        ..TransportConfig::default()
    });
    let gate = Gate::unlimited();
    loop {
        let (stream, _) = listener.accept().await?;
        let (site, config, gate) = (Arc::clone(&site), Arc::clone(&config), Arc::clone(&gate));
        tokio::spawn(async move {
            let Ok(Accepted::Upgraded(upgraded)) = accept(stream, &site, &config, &gate).await
            else {
                return;
            };
            let (mut socket, outgoing) = (upgraded.socket, upgraded.outgoing);
            while let Some(message) = socket.next().await {
                match message {
                    Ok(Message::Text(text)) => {
                        if outgoing.push_text(text, false) == Pushed::Full {
                            break;
                        }
                        if outgoing.unstall().await.is_err() {
                            break;
                        }
                    }
                    Ok(Message::Binary(bytes)) => {
                        if socket.send(Message::Binary(bytes)).await.is_err() {
                            break;
                        }
                    }
                    Ok(Message::Close(_)) => {
                        // tungstenite queued its answer: send it.
                        let _ = socket.flush().await;
                        break;
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
        });
    }
}
