//! Cluster mode's shared engine on Redis (issue #16): what several nodes
//! must agree on lives in Redis, in the manner of Centrifugo's Redis
//! engine: rooms' messages, nicks, who is in each room, where each session
//! lives, conversations, files' notes, shared documents' logs and the
//! `$stats` totals.
//!
//! The room log ([`RoomLog`]): one Lua script per message checks its
//! idempotency key, numbers it with the room's next `seq`, appends it to
//! the room's stream (entry id = `seq`, trimmed to the history kept) and
//! publishes it to the room's channel, atomically; an epoch per room tells
//! a numbering that started again (Redis lost its data) from one that goes
//! on; a room's keys share a hash tag, so a Redis Cluster can shard rooms.
//! A node's subscription to its rooms ([`Listener`]) and its in-order view
//! of what it hears ([`Feed`]) bring every message to the core once and in
//! order. Nicks ([`Nicks`]) are claimed by a script that grants a nick free
//! or already the session's, under a lease the node renews, and released
//! by compare-and-delete. Who is in each room ([`Members`]) is a hash per
//! room with a version each change bumps and publishes; `follow.rs` keeps a
//! node's view of it. The hub's side of it all is `Engine` (`engine.rs`),
//! which carries out the core's `Append`s, `Load`s, `Claim`s, `Release`s
//! and `Share`s.

pub mod codec;
mod engine;
mod feed;
mod files;
mod follow;
mod health;
mod listen;
mod nicks;
mod polls;
mod posts;
mod presence;
mod room_log;
mod sessions;
mod totals;

pub(crate) use engine::{Engine, EngineConfig, Event, Step};
pub use feed::{Action, Feed};
pub use health::Health;
pub use listen::{Heard, Listener};
pub use nicks::Nicks;
pub use polls::Polls;
pub use posts::Posts;
pub use presence::{Change, Members, Roster, Verdict, Versions};
pub use room_log::{Appended, Page, Published, RoomLog, ToAppend};
pub use sessions::Sessions;
pub use totals::{ClusterTotals, NodeCounts, Totals};

/// How a session is named in Redis: a digest of its token, so that whoever
/// reads Redis or a room's channel cannot speak as the session.
pub fn digest(token: &str) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(token.as_bytes());
    digest.iter().take(16).map(|b| format!("{b:02x}")).collect()
}

/// `url` with any password replaced, for logs and errors.
pub fn redacted(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    // The userinfo ends at the last '@' before the path.
    let authority = rest.split('/').next().unwrap_or(rest);
    match authority.rfind('@') {
        Some(at) => format!("{scheme}://***@{}", rest.get(at + 1..).unwrap_or_default()),
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::redacted;

    #[test]
    fn a_password_in_a_redis_url_is_never_shown() {
        assert_eq!(redacted("redis://:s3cret@db:6379/0"), "redis://***@db:6379/0");
        assert_eq!(redacted("rediss://user:p@ss@db/1"), "rediss://***@db/1");
        assert_eq!(redacted("redis://127.0.0.1:6379/"), "redis://127.0.0.1:6379/");
        assert_eq!(redacted("redis://db/with@path"), "redis://db/with@path");
        assert_eq!(redacted("not a url"), "not a url");
    }
}
