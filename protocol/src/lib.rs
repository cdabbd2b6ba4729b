//! The wire format of the chat system, protocol version 1.
//!
//! Every frame is one JSON object carried in a WebSocket text frame, with a
//! `"type"` field naming the frame. [`ClientFrame`] lists what a client may
//! send, [`ServerFrame`] what the server sends back. [`decode_client`] turns a
//! text frame into a [`ClientMessage`] and reports malformed input as a
//! [`DecodeError`] carrying the stable [`ErrorCode`] to answer with.
//!
//! This crate deliberately does no IO, knows nothing about sockets or tokio,
//! and holds no chat rules: whether a nick is valid or a room exists is
//! decided by `chat-core`. The full specification, with an example of every
//! frame, is `docs/protocol.md`; a test parses every example in it with this
//! crate so the two cannot drift.
#![warn(missing_docs)]
// Network input must never panic the server: no indexing that could.
#![cfg_attr(not(test), warn(clippy::indexing_slicing))]

mod client;
mod close;
mod code;
mod decode;
#[doc(hidden)]
pub mod fuzzing;
mod server;
pub mod socketio;
pub mod text;

pub use client::{ClientFrame, ClientMessage};
pub use close::{CloseCode, restart_reason, retry_after};
pub use code::ErrorCode;
pub use decode::{DecodeError, decode_client, encode_client};
pub use server::{
    Attachment, ClusterTotals, ConversationInfo, DirectLine, DocInfo, DocVersion, Gap, Limits,
    Message, PresenceChange, PresenceEvent, Resume, RoomInfo, ServerFrame, ServerInfo, Stats,
    StatsPoint,
};

/// The protocol version this crate implements.
pub const VERSION: u32 = 1;

/// The WebSocket subprotocol name a client offers in `Sec-WebSocket-Protocol`.
pub const SUBPROTOCOL: &str = "chat.v1";

/// The longest request `id` a client may attach to a frame, in bytes.
pub const MAX_ID_BYTES: usize = 64;
