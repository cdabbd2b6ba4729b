//! One WebSocket connection: reads frames, decodes them, hands them to the
//! hub, and writes what the hub queued for it in batches.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::Duration;

use chat_core::{Departure, MemberId, SessionToken};
use chat_protocol::{CloseCode, DecodeError, ErrorCode, decode_client};
use chat_transport::tungstenite::protocol::CloseFrame;
use chat_transport::tungstenite::protocol::frame::coding::CloseCode as WsCloseCode;
use chat_transport::tungstenite::{Message, Utf8Bytes};
use chat_transport::{WebSocket, close_frame_for};
use futures_util::{SinkExt, StreamExt};
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, info};

use crate::ServerConfig;
use crate::hub::{Conn, Input};
use crate::outbox::{OutboxReceiver, outbox};
use crate::wire;

/// Serves one upgraded connection until it closes.
pub(crate) async fn serve(
    mut socket: WebSocket,
    peer: SocketAddr,
    hub: mpsc::Sender<Input>,
    config: &ServerConfig,
) {
    let (outbound, mut queue) = outbox(config.outbound_frames, config.outbound_bytes);
    let (close, mut closing) = oneshot::channel();
    let token = SessionToken::parse(&format!("{:032x}", rand::random::<u128>()));
    let Ok(token) = token else {
        return;
    };
    let (reply, member) = oneshot::channel();
    let conn = Conn { outbound, close, token };
    if hub.send(Input::Connect { conn, reply }).await.is_err() {
        return;
    }
    let Ok(member) = member.await else {
        return;
    };
    tracing::Span::current().record("member", tracing::field::display(member));
    info!(%peer, "connected");
    let mut departure = Departure::Lost;
    let reason = loop {
        tokio::select! {
            biased;
            code = &mut closing => {
                let code = code.unwrap_or(CloseCode::GoingAway);
                let frame = CloseFrame { code: code.code().into(), reason: code.reason().into() };
                // Frames queued before a shutdown still go out first; a slow
                // client's backlog is what got it closed, so it is dropped.
                // Either way a peer that stopped reading must not hold the task.
                let goodbye = async {
                    if code != CloseCode::TooSlow {
                        let frames = queue.try_recv_all();
                        if !frames.is_empty() {
                            write_batch(&mut socket, &mut queue, frames).await?;
                        }
                    }
                    socket.close(Some(frame)).await
                };
                let _ = tokio::time::timeout(Duration::from_secs(1), goodbye).await;
                break format!("closed by server ({})", code.code());
            }
            frames = queue.recv_all() => {
                let Some(frames) = frames else {
                    break "hub dropped the connection".to_owned();
                };
                let write = tokio::time::timeout(config.write_timeout, write_batch(&mut socket, &mut queue, frames));
                // A peer that stopped reading blocks the write; the hub then
                // finds the queue full and says to close, which must not wait
                // for the write.
                tokio::select! {
                    written = write => match written {
                        Ok(Ok(())) => {}
                        Ok(Err(err)) => break format!("write failed: {err}"),
                        Err(_) => break "write timed out".to_owned(),
                    },
                    code = &mut closing => {
                        let code = code.unwrap_or(CloseCode::GoingAway);
                        break format!("closed by server ({}) during a stalled write", code.code());
                    }
                }
            }
            message = socket.next() => match message {
                Some(Ok(Message::Close(frame))) => {
                    // tungstenite queued its reply to the close: send it.
                    let _ = tokio::time::timeout(Duration::from_secs(1), socket.flush()).await;
                    // 1000 is a goodbye; anything else (a page reload sends
                    // 1001) may come back and resume.
                    if frame.is_some_and(|f| f.code == WsCloseCode::Normal) {
                        departure = Departure::Quit;
                    }
                    break "closed by peer".to_owned();
                }
                Some(Ok(message)) => {
                    if let Some(input) = input_for(member, message) {
                        if hub.send(input).await.is_err() {
                            break "server stopping".to_owned();
                        }
                    }
                }
                Some(Err(err)) => {
                    if let Some(frame) = close_frame_for(&err) {
                        let _ = tokio::time::timeout(Duration::from_secs(1), socket.close(Some(frame))).await;
                    }
                    break format!("read failed: {err}");
                }
                None => break "connection ended".to_owned(),
            },
        }
    };
    let _ = hub.send(Input::Disconnect { member, departure }).await;
    info!(%reason, "disconnected");
}

/// Writes `frames` and everything queued meanwhile, then flushes once, so
/// a busy connection costs one syscall per batch, not per frame.
async fn write_batch(
    socket: &mut WebSocket,
    queue: &mut OutboxReceiver,
    mut frames: VecDeque<Utf8Bytes>,
) -> Result<(), chat_transport::tungstenite::Error> {
    while !frames.is_empty() {
        for frame in frames.drain(..) {
            socket.feed(Message::Text(frame)).await?;
        }
        frames = queue.try_recv_all();
    }
    socket.flush().await
}

/// The hub input a received message asks for, if any.
fn input_for(member: MemberId, message: Message) -> Option<Input> {
    match message {
        Message::Text(text) => Some(match decode_client(&text) {
            Ok(decoded) => {
                debug!(%member, kind = decoded.frame.kind(), "frame");
                Input::Command { member, id: decoded.id, command: wire::command(decoded.frame) }
            }
            Err(error) => Input::Malformed { member, error },
        }),
        Message::Binary(_) => Some(Input::Malformed {
            member,
            error: DecodeError {
                code: ErrorCode::BadFrame,
                message: "binary frames are not supported; send JSON text frames".to_owned(),
                id: None,
            },
        }),
        // tungstenite answers pings itself; pongs and raw frames need nothing.
        Message::Ping(_) | Message::Pong(_) | Message::Frame(_) | Message::Close(_) => None,
    }
}
