//! Where the hub writes a connection's frames: a WebSocket's (or event
//! stream's) queue, or a Socket.IO client's Engine.IO session, which
//! passes them to its WebSocket or keeps them for its next long-poll.

use std::sync::Arc;

use chat_transport::engineio::Link;
use chat_transport::tungstenite::Utf8Bytes;
use chat_transport::{Liveness, Outgoing, Pushed};

/// A connection's write side, as the hub sees it.
#[derive(Debug, Clone)]
pub(crate) enum Sink {
    /// A WebSocket or an event stream of the HTTP fallback.
    Socket(Arc<Outgoing>),
    /// An Engine.IO session.
    EngineIo(Arc<Link>),
}

impl Sink {
    /// Queues a text frame (see [`Outgoing::push_text`]).
    pub(crate) fn push_text(&self, bytes: Utf8Bytes, droppable: bool) -> Pushed {
        match self {
            Self::Socket(outgoing) => outgoing.push_text(bytes, droppable),
            Self::EngineIo(link) => link.push_text(bytes, droppable),
        }
    }

    /// Writes what was pushed.
    pub(crate) fn flush(&self) {
        match self {
            Self::Socket(outgoing) => {
                outgoing.flush();
            }
            Self::EngineIo(link) => {
                link.flush();
            }
        }
    }

    /// The hub's liveness check (see [`Outgoing::check_alive`]); an
    /// Engine.IO session keeps its own heartbeat.
    pub(crate) fn check_alive(&self, max_pings: u32) -> Liveness {
        match self {
            Self::Socket(outgoing) => outgoing.check_alive(max_pings),
            Self::EngineIo(_) => Liveness::Heard,
        }
    }

    /// Frames waiting to be written (or fetched).
    pub(crate) fn queued(&self) -> usize {
        match self {
            Self::Socket(outgoing) => outgoing.queued(),
            Self::EngineIo(link) => link.queued(),
        }
    }
}
