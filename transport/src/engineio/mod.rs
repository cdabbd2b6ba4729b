//! Engine.IO 4, the transport Socket.IO clients speak (issue #20): its
//! packets so far; the sessions (long-polling and WebSocket, the upgrade
//! between them, the heartbeat) come next.

mod packet;

pub use packet::{Error, Handshake, Packet, SEPARATOR, VERSION, decode_payload, encode_payload};
