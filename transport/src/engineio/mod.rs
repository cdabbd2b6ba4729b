//! Engine.IO 4, the transport Socket.IO clients speak (issue #20): its
//! packets, and one session as a state machine (long-polling, the upgrade
//! to a WebSocket, the heartbeat); the driver that runs sessions over
//! HTTP requests and WebSockets comes next.

mod packet;
mod session;

pub use packet::{Error, Handshake, Packet, SEPARATOR, VERSION, decode_payload, encode_payload};
pub use session::{Carrier, Ended, Outbound, Output, Refusal, Session, SessionConfig};
