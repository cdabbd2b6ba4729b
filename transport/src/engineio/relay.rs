//! Long-polling across servers. A session lives on the server that opened
//! it, but behind a balancer with no stickiness each of its `GET`s and
//! `POST`s may reach any server. One that reaches another server is handed
//! to the session's server through a [`Relay`] (in a cluster, over Redis),
//! answered there by [`Engines::answer`], and the answer comes back to be
//! written to the client.
//!
//! A WebSocket cannot be relayed: an upgrade probe that reaches another
//! server is answered "Session ID unknown", and the client carries on over
//! long-polling, as Socket.IO's clients do when a probe fails.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use super::{Engines, Link};

/// A long-polling request for a session another server holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Relayed {
    /// A `GET`: the session's next payload.
    Poll,
    /// A `POST`'s body.
    Post(String),
    /// A `POST` that broke the session's bounds (larger than `maxPayload`,
    /// not UTF-8): the session is over.
    Broken,
}

/// What the session's server answers a relayed request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// A `GET`'s payload.
    Payload(String),
    /// A `POST` was taken (or a broken one ended the session).
    Taken,
    /// The request breaks the protocol (two `GET`s at once, a malformed
    /// payload): "Bad request".
    Refused,
    /// No such session (it ended, or its server is gone): "Session ID
    /// unknown".
    Unknown,
    /// The session's server cannot be reached now; the client may try
    /// again.
    Unavailable,
}

/// Where requests for other servers' sessions go.
pub trait Relay: Send + Sync + fmt::Debug {
    /// Hands `request` for session `sid` to the server holding it and
    /// waits for its answer. Dropping the future says the client went
    /// away: a `GET` waiting there lets go of the session.
    fn relay(&self, sid: String, request: Relayed) -> Pin<Box<dyn Future<Output = Answer> + Send>>;
}

impl Engines {
    /// Answers `request` for session `sid`, relayed from another server,
    /// as the session's own requests are answered. Dropping the future
    /// while a `GET` waits lets go of the session as a client going away
    /// does.
    pub async fn answer(&self, sid: &str, request: Relayed) -> Answer {
        let Some(link) = self.get(sid) else {
            return Answer::Unknown;
        };
        match request {
            Relayed::Poll => {
                let Ok(payload) = link.poll() else {
                    return Answer::Refused;
                };
                let waiting = Waiting(Some(&link));
                let answer = payload.await;
                waiting.answered();
                answer.map_or(Answer::Refused, Answer::Payload)
            }
            Relayed::Post(body) => {
                if link.begin_post().is_err() {
                    return Answer::Refused;
                }
                match link.end_post(Some(&body)).await {
                    Ok(()) => Answer::Taken,
                    Err(_) => Answer::Refused,
                }
            }
            Relayed::Broken => {
                link.close();
                Answer::Taken
            }
        }
    }

    /// Where requests for other servers' sessions go, if anywhere: a
    /// `sid` that could be another server's (not this one's, and of the
    /// characters and length `sid`s have) is relayed.
    pub(crate) fn relay_for(&self, sid: &str) -> Option<&Arc<dyn Relay>> {
        let plausible = sid.len() <= 160
            && sid.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'));
        self.relay.as_ref().filter(|_| plausible && !sid.starts_with(&self.node))
    }
}

/// A relayed `GET` waiting for its payload: dropped unanswered, the client
/// went away.
struct Waiting<'a>(Option<&'a Link>);

impl Waiting<'_> {
    fn answered(mut self) {
        self.0 = None;
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        if let Some(link) = self.0 {
            link.poll_gone();
        }
    }
}
