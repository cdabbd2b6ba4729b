//! An echo client on chat-transport's connector, for the Autobahn|Testsuite
//! `fuzzingserver` (`scripts/autobahn`): runs every case the server has,
//! echoing what it is sent, then asks the server to write its reports.
//!
//! Usage: `autobahn_client ws://127.0.0.1:PORT`

use chat_transport::tungstenite::Message;
use chat_transport::{TransportConfig, connect};
use futures_util::{SinkExt, StreamExt};

const AGENT: &str = "chat-transport";

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let Some(base) = std::env::args().nth(1) else {
        anyhow::bail!("usage: autobahn_client ws://HOST:PORT");
    };
    let config = TransportConfig { max_message_bytes: 64 << 20, ..TransportConfig::default() };
    let mut counter = connect(&format!("{base}/getCaseCount"), None, &config).await?;
    let count: u32 = match counter.next().await {
        Some(Ok(Message::Text(text))) => text.trim().parse()?,
        other => anyhow::bail!("no case count: {other:?}"),
    };
    drop(counter);
    for case in 1..=count {
        let url = format!("{base}/runCase?case={case}&agent={AGENT}");
        let Ok(mut socket) = connect(&url, None, &config).await else {
            continue;
        };
        while let Some(message) = socket.next().await {
            match message {
                Ok(message @ (Message::Text(_) | Message::Binary(_))) => {
                    if socket.send(message).await.is_err() {
                        break;
                    }
                }
                Ok(Message::Close(_)) => {
                    let _ = socket.flush().await;
                    break;
                }
                Ok(_) => {}
                Err(_) => break,
            }
        }
    }
    let mut reports =
        connect(&format!("{base}/updateReports?agent={AGENT}"), None, &config).await?;
    let _ = reports.close(None).await;
    while let Some(Ok(_)) = reports.next().await {}
    println!("ran {count} cases");
    Ok(())
}
