//! The chat system's rules as a deterministic state machine.
//!
//! [`Chat`] holds rooms, members, nicks, per-room sequence numbers, the
//! newest part of each room's history, and every limit (per connection,
//! per session, per [`Source`] address, per room, in total), and decides
//! every fan-out. It is sans-IO in the manner of `quinn-proto`: the driver
//! feeds it inputs through `handle_*` methods and carries out the
//! [`Output`]s it drains with [`Chat::poll_output`].
//!
//! What this crate deliberately does not do: no IO, no sockets, no files, no
//! threads, no clock and no randomness. Time is an argument ([`Timestamp`]),
//! ids are allocated by a counter, and every collection iterates in a fixed
//! order, so the same inputs always give the same outputs. Storage is a
//! request it emits ([`Output::Persist`], [`Output::Load`]) and an answer it
//! receives ([`Chat::handle_loaded`], [`Chat::handle_unstored`]). It also
//! knows nothing about any wire format: a server converts [`Event`]s into
//! its own frames, so another frontend can reuse these rules with another
//! protocol.
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
mod source;
mod time;
mod token;

pub use bucket::{Rate, TokenBucket};
pub use chat::{Chat, ClaimAnswer, DocAccess, Found, Holder};
pub use command::{Command, Peer};
pub use config::{ChatConfig, Sequencing, SessionKey};
pub use error::{CommandError, Quota};
pub use event::{
    Attachment, Conversation, ConversationSummary, DOC_EDITS_EVERY, Departure, Direct,
    DisconnectReason, DocAction, DocEntry, Event, Message, MessageKind, Output, PRESENCE_BATCH_MAX,
    Presence, Record, RemoteMember, Resume, RoomHistory, RoomListing, Shared, TYPING_BATCH_MAX,
};
pub use id::{MemberId, RoomId};
pub use identity::{Identity, RoomPattern};
pub use name::{NameError, Nick, RoomName};
pub use source::Source;
pub use time::Timestamp;
pub use token::SessionToken;
