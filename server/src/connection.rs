//! One WebSocket connection: reads frames, decodes them, hands them to the
//! hub, and writes what the hub queued for it in batches.

use std::collections::VecDeque;
use std::io::IoSlice;
use std::net::SocketAddr;
use std::time::Duration;

use chat_core::{Departure, MemberId, SessionToken};
use chat_protocol::{CloseCode, DecodeError, ErrorCode, decode_client};
use chat_transport::tungstenite::protocol::CloseFrame;
use chat_transport::tungstenite::protocol::frame::coding::CloseCode as WsCloseCode;
use chat_transport::tungstenite::{Message, Utf8Bytes};
use chat_transport::{WebSocket, close_frame_for};
use futures_util::{SinkExt, StreamExt};
use tokio::io::AsyncWriteExt;
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

/// Writes `frames` and everything queued meanwhile with as few `writev`
/// calls as the socket allows: each frame is a small header and the shared
/// encoded bytes, never copied into a per-connection buffer.
///
/// Data frames go straight to the TCP stream; tungstenite keeps the control
/// frames (pong, close) it writes itself, so anything it holds is flushed
/// first to keep the order on the wire.
async fn write_batch(
    socket: &mut WebSocket,
    queue: &mut OutboxReceiver,
    mut frames: VecDeque<Utf8Bytes>,
) -> Result<(), chat_transport::tungstenite::Error> {
    socket.flush().await?;
    let stream = socket.get_mut();
    while !frames.is_empty() {
        let headers: Vec<FrameHeader> =
            frames.iter().map(|frame| FrameHeader::text(frame.len())).collect();
        let mut slices: Vec<IoSlice<'_>> = Vec::with_capacity(frames.len() * 2);
        for (header, frame) in headers.iter().zip(frames.iter()) {
            slices.push(IoSlice::new(header.as_bytes()));
            slices.push(IoSlice::new(frame.as_bytes()));
        }
        let mut remaining = slices.as_mut_slice();
        while !remaining.is_empty() {
            let written = stream.write_vectored(remaining).await?;
            if written == 0 {
                return Err(std::io::Error::from(std::io::ErrorKind::WriteZero).into());
            }
            IoSlice::advance_slices(&mut remaining, written);
        }
        frames = queue.try_recv_all();
    }
    Ok(())
}

/// The header of an unmasked, final text frame (RFC 6455 §5.2).
struct FrameHeader {
    bytes: [u8; 10],
    len: usize,
}

impl FrameHeader {
    fn text(payload: usize) -> Self {
        let mut bytes = [0u8; 10];
        bytes[0] = 0x81;
        let len = match payload {
            0..=125 => {
                bytes[1] = payload as u8;
                2
            }
            126..=0xffff => {
                bytes[1] = 126;
                bytes[2..4].copy_from_slice(&(payload as u16).to_be_bytes());
                4
            }
            _ => {
                bytes[1] = 127;
                bytes[2..10].copy_from_slice(&(payload as u64).to_be_bytes());
                10
            }
        };
        Self { bytes, len }
    }

    fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
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

#[cfg(test)]
mod tests {
    use super::FrameHeader;

    #[test]
    fn text_frame_headers_use_the_shortest_length_form() {
        assert_eq!(FrameHeader::text(0).as_bytes(), [0x81, 0]);
        assert_eq!(FrameHeader::text(125).as_bytes(), [0x81, 125]);
        assert_eq!(FrameHeader::text(126).as_bytes(), [0x81, 126, 0, 126]);
        assert_eq!(FrameHeader::text(65_535).as_bytes(), [0x81, 126, 0xff, 0xff]);
        assert_eq!(FrameHeader::text(65_536).as_bytes(), [0x81, 127, 0, 0, 0, 0, 0, 1, 0, 0]);
    }
}
