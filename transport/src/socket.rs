//! A server's connection to one client, over whichever transport got
//! through: a WebSocket, or the HTTP fallback's event stream. Both read
//! as a stream of messages and write through the connection's
//! [`crate::Outgoing`]; only closing differs.

use std::pin::Pin;
use std::task::{Context, Poll};

use futures_util::{SinkExt, Stream};
use tungstenite::Message;
use tungstenite::protocol::CloseFrame;

use crate::ServerSocket;
use crate::event_stream::EventStream;

/// An accepted connection's reading side, and its close.
#[derive(Debug)]
// The WebSocket is by far the common case, and drivers box the whole
// socket anyway: boxing the larger variant would add an allocation to
// every connection to save bytes on the rare one.
#[allow(clippy::large_enum_variant)]
pub enum Socket {
    /// A WebSocket.
    WebSocket(ServerSocket),
    /// The HTTP fallback: an event stream and the requests posted to it.
    EventStream(EventStream),
}

/// Which transport a connection came over, for logs and counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// A WebSocket.
    WebSocket,
    /// Server-Sent Events and `POST`s.
    EventStream,
    /// Socket.IO: an Engine.IO session, on long-polling or a WebSocket.
    SocketIo,
}

impl Transport {
    /// Its name in logs and counters: `websocket`, `sse`, `socketio`.
    pub fn name(self) -> &'static str {
        match self {
            Self::WebSocket => "websocket",
            Self::EventStream => "sse",
            Self::SocketIo => "socketio",
        }
    }
}

impl Socket {
    /// The transport.
    pub fn transport(&self) -> Transport {
        match self {
            Self::WebSocket(_) => Transport::WebSocket,
            Self::EventStream(_) => Transport::EventStream,
        }
    }

    /// How many frames the next message handed out took: each part of a
    /// split WebSocket message counts; a posted message is one. Call once
    /// per message.
    pub fn take_frames(&mut self) -> u32 {
        match self {
            Self::WebSocket(socket) => socket.get_mut().take_frames(),
            Self::EventStream(_) => 1,
        }
    }

    /// Sends `message` and writes it out, for a driver that writes through
    /// the socket rather than pushing to [`crate::Outgoing`] (tests, echo
    /// servers). Pings and pongs are the transport's own business.
    ///
    /// # Errors
    /// The write failed, or the connection is closed.
    pub async fn send(&mut self, message: Message) -> Result<(), tungstenite::Error> {
        match self {
            Self::WebSocket(socket) => socket.send(message).await,
            Self::EventStream(stream) => stream.send(message).await.map_err(tungstenite::Error::Io),
        }
    }

    /// Writes what the transport itself queued (a WebSocket's answer to a
    /// close or a ping).
    ///
    /// # Errors
    /// The write failed.
    pub async fn flush(&mut self) -> Result<(), tungstenite::Error> {
        match self {
            Self::WebSocket(socket) => socket.flush().await,
            Self::EventStream(_) => Ok(()),
        }
    }

    /// Closes the connection with `frame`'s code and reason, after what is
    /// queued.
    ///
    /// # Errors
    /// The write failed.
    pub async fn close(&mut self, frame: Option<CloseFrame>) -> Result<(), tungstenite::Error> {
        match self {
            Self::WebSocket(socket) => socket.close(frame).await,
            Self::EventStream(stream) => stream.close(frame).await.map_err(tungstenite::Error::Io),
        }
    }
}

impl Stream for Socket {
    type Item = Result<Message, tungstenite::Error>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        match self.get_mut() {
            Self::WebSocket(socket) => Pin::new(socket).poll_next(cx),
            Self::EventStream(stream) => Pin::new(stream).poll_next(cx),
        }
    }
}
