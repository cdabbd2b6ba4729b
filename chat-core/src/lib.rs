//! The chat system's rules as a deterministic state machine.
//!
//! [`Chat`] holds rooms, members, nicks, per-room sequence numbers and the
//! in-memory history ring, and decides every fan-out. It is sans-IO in the
//! manner of `quinn-proto`: the driver feeds it inputs through `handle_*`
//! methods and carries out the [`Output`]s it drains with
//! [`Chat::poll_output`].
//!
//! What this crate deliberately does not do: no IO, no sockets, no files, no
//! threads, no clock and no randomness. Time is an argument ([`Timestamp`]),
//! ids are allocated by a counter, and every collection iterates in a fixed
//! order, so the same inputs always give the same outputs. It also knows
//! nothing about any wire format: a server converts [`Event`]s into its own
//! frames, so another frontend can reuse these rules with another protocol.
#![warn(missing_docs)]

mod bucket;
mod chat;
mod command;
mod config;
mod dedupe;
mod error;
mod event;
mod id;
mod identity;
mod name;
mod room;
mod session;
mod time;

pub use bucket::{Rate, TokenBucket};
pub use chat::Chat;
pub use command::Command;
pub use config::ChatConfig;
pub use error::CommandError;
pub use event::{
    Attachment, Departure, Direct, DisconnectReason, Event, Message, Output, Presence, Record,
    Resume,
};
pub use id::{MemberId, RoomId};
pub use identity::{Identity, RoomPattern};
pub use name::{NameError, Nick, RoomName};
pub use session::SessionToken;
pub use time::Timestamp;
