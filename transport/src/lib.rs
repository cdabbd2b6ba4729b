//! The sockets of the chat system.
//!
//! On the server side, [`accept`] reads one HTTP/1.1 request from a freshly
//! accepted TCP stream (parsed with `httparse` into `http` types), serves the
//! static pages of a [`Site`], answers mistakes with the right status, and on
//! `GET` of the site's WebSocket path performs the RFC 6455 upgrade itself
//! and hands the stream, with any bytes read past the headers, to
//! `tungstenite`. On the client side, [`connect`] opens a WebSocket and
//! reports a refused upgrade as the HTTP status the server gave.
//!
//! This crate deliberately knows nothing about chat: not the frames (that is
//! `chat-protocol`) and not the rules (that is `chat-core`). It keeps no
//! connection alive beyond one request unless the request is an upgrade.
#![warn(missing_docs)]
// Network input must never panic the server: no indexing that could.
#![cfg_attr(not(test), warn(clippy::indexing_slicing))]

mod accept;
mod client_events;
mod close;
mod config;
mod connect;
pub mod engineio;
mod event_stream;
mod forwarded;
mod frames;
#[doc(hidden)]
pub mod fuzzing;
mod gate;
mod header;
mod outgoing;
mod request;
mod response;
mod site;
mod socket;

pub use accept::{
    AcceptError, Accepted, EngineOpened, Refusal, Refused, ServerSocket, Upgraded, WebSocket,
    accept,
};
pub use client_events::{ClientEventStream, ClientSocket, connect_event_stream};
pub use close::close_frame_for;
pub use config::{TlsConfig, TransportConfig};
pub use connect::{ClientStream, ClientTls, ConnectError, connect, fetch};
pub use event_stream::{Delivered, EventStream, Forward, Posted, Streams};
pub use forwarded::{ForwardedHeader, TrustedProxies};
pub use frames::TooManyFragments;
pub use gate::{Full, Gate, Pass};
pub use header::{FrameHeader, write_frame};
pub use http;
pub use outgoing::{Flushed, Liveness, Outgoing, Pushed, SharedStream};
pub use site::{Dynamic, DynamicAnswer, Page, Site};
pub use socket::{Socket, Transport};
pub use tokio_tungstenite::tungstenite;
