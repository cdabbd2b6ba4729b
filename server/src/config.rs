use std::time::Duration;

use chat_core::ChatConfig;
use chat_transport::TransportConfig;

/// Everything the server runs with. The binary maps flags and environment
/// variables onto this; tests build it directly.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// The chat rules.
    pub chat: ChatConfig,
    /// HTTP and WebSocket limits, including each connection's outgoing
    /// queue: a client whose queue is full is closed as too slow (4008), and
    /// typing notices are dropped once it is half full.
    pub transport: TransportConfig,
    /// How long one batched write may take before the connection is
    /// dropped as dead. Default 10 s.
    pub write_timeout: Duration,
    /// Inputs queued for the chat task before connections wait to send
    /// more. Default 4096.
    pub inbound_queue: usize,
    /// How long shutdown waits for connections to close after telling them
    /// to. Default 5 s.
    pub shutdown_grace: Duration,
    /// At shutdown every connection is closed with 1012 and told to wait a
    /// random delay within this window before reconnecting, so clients come
    /// back spread out instead of all at once. Default 10 s.
    pub drain_window: Duration,
}

impl ServerConfig {
    /// What storage keeps: the same window the chat keeps in memory.
    pub fn retention(&self) -> crate::Retention {
        crate::Retention {
            per_room: self.chat.history_per_room,
            max_age: self.chat.history_max_age,
            directs_for: self.chat.dedupe_window,
        }
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            chat: ChatConfig::default(),
            transport: TransportConfig::default(),
            write_timeout: Duration::from_secs(10),
            inbound_queue: 4096,
            shutdown_grace: Duration::from_secs(5),
            drain_window: Duration::from_secs(10),
        }
    }
}
