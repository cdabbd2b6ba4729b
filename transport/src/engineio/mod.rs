//! Engine.IO 4, the transport Socket.IO clients speak (issue #20): its
//! packets, and one session as a state machine (long-polling, the upgrade
//! to a WebSocket, the heartbeat), and the [`Link`] that runs a session over
//! the HTTP requests and the WebSocket that carry it.

mod link;
mod packet;
mod relay;
mod session;

pub use link::{EngineSocket, Engines, Link};
pub use packet::{Error, Handshake, Packet, SEPARATOR, VERSION, decode_payload, encode_payload};
pub use relay::{Answer, Relay, Relayed};
pub use session::{Carrier, Ended, Outbound, Output, Refusal, Session, SessionConfig};
