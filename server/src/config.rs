use std::time::Duration;

use chat_core::ChatConfig;
use chat_transport::TransportConfig;

/// Everything the server runs with. The binary maps flags and environment
/// variables onto this; tests build it directly.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// The chat rules.
    pub chat: ChatConfig,
    /// The limits of shared documents: the largest update and the largest
    /// document (refused past them with 4413, docs/protocol.md).
    pub docs: crate::docs::Limits,
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
    /// Cluster mode: the Redis at this URL numbers rooms' messages and
    /// direct messages for every node serving them, holds nicks, who is in
    /// each room, where each session lives and the shared documents (the
    /// chat's `sequencing` is then `Shared`). Default `None`: one node.
    pub redis: Option<String>,
    /// In cluster mode, whether `uploads.dir` is one directory every node
    /// shares (a network file system, a volume mounted on each): uploads
    /// are on in cluster mode only then (the binary's `--files-dir`).
    /// Default false.
    pub files_shared: bool,
    /// In cluster mode, the lease under which a node holds its sessions'
    /// nicks and says it lives; it renews them three times a lease. A node
    /// that dies has its nicks come free, and its members leave every
    /// room, at most this long (plus a third) after. Default 30 s.
    pub cluster_lease: Duration,
    /// This node's name among several, shown in `welcome.server.node`, the
    /// `$stats` counters and the logs. Default `None` (the binary picks a
    /// random one in cluster mode).
    pub node_id: Option<String>,
    /// How long a message (say, dm, edit, delete) may wait in the server
    /// before the chat task takes it. One that waited longer finds the
    /// server overloaded: it is refused with `unavailable` and a
    /// `retry_after_ms`, and clients send it again then. Overload thus
    /// costs senders a retry instead of costing everyone an ever longer
    /// delay. Default 250 ms.
    pub max_input_wait: Duration,
    /// How long shutdown waits for connections to close after telling them
    /// to. Default 5 s.
    pub shutdown_grace: Duration,
    /// At shutdown, how long the server first goes on serving while
    /// `/readyz` says it is draining and new connections are refused
    /// (`503`), so a load balancer stops sending clients before their
    /// connections are closed. Default 0.
    pub drain_delay: Duration,
    /// At shutdown every connection is closed with 1012 and told to wait a
    /// random delay within this window before reconnecting, so clients come
    /// back spread out instead of all at once. Default 10 s.
    pub drain_window: Duration,
    /// WebSockets open at once; more are refused at the upgrade with `503`.
    /// Default: the process's open-file limit less 64 (for the listener,
    /// storage and logs), so the server refuses politely before the kernel
    /// refuses rudely.
    pub max_connections: usize,
    /// Connections open at once from one IP address, in any phase (sending
    /// its request head, downloading, speaking WebSocket); more are refused
    /// with `429` before anything is read. Default 256: an office behind one
    /// NAT fits, one host cannot take the whole server (nor its file
    /// descriptors with slow request heads).
    pub max_connections_per_ip: usize,
    /// File downloads going at once from one IP address; more get `429`.
    /// Default 8: a page fetching the images of a room gets them in
    /// parallel, and 20 downloads that never read cannot hold the server's
    /// memory and file handles.
    pub max_downloads_per_ip: usize,
    /// How often connections are checked: one that sent nothing since the
    /// last check gets a WebSocket ping, and one that has not said `hello`
    /// by its second check is closed with 1008. Default 25 s (under the
    /// idle timeouts of common proxies and NATs).
    pub ping_interval: Duration,
    /// Pings in a row a connection may leave unanswered before it is
    /// closed as dead (4010). Default 2: a dead peer is found within
    /// `ping_interval` × 3.
    pub ping_misses: u32,
    /// Sustained frames of any kind a connection may send per second
    /// (WebSocket pings included); past it a frame is dropped and answered
    /// `rate_limited`. Default 50: far above any person, a typing client
    /// included.
    pub frames_per_sec: u32,
    /// How many frames may come in a burst. Default 200 (a reconnect joins
    /// many rooms and re-sends what was pending at once).
    pub frames_burst: u32,
    /// Refused frames a connection may pile up (recovering one per second)
    /// before it is closed with 1008 as abusive. Default 50.
    pub frames_refused_max: u32,
    /// With a secret, authentication is on: every `hello` must carry an
    /// access token signed with it (see `crate::auth`). Default: off.
    pub auth_secret: Option<crate::auth::Secret>,
    /// Where uploaded files go and how large they may be; `None` turns
    /// uploads off. The binary keeps them in `<data-dir>/files`, 8 MiB at
    /// most. Default (for embedders and tests): off.
    pub uploads: Option<crate::Uploads>,
    /// How often storage applies retention and deletes files no retained
    /// message carries. Default 60 s.
    pub prune_interval: Duration,
    /// The token a `subscribe` to `$stats` must carry; `None` lets every
    /// client that said hello watch the counters. Default: none.
    pub stats_token: Option<String>,
    /// The token a scraper of `/metrics` must send (`Authorization:
    /// Bearer`). Without one, `/metrics` is served only on the metrics
    /// listener ([`run_with_metrics`](crate::run_with_metrics)). Default:
    /// none.
    pub metrics_token: Option<String>,
    /// A directory of pages served under `/classic/` (pages written for a
    /// Socket.IO server). Default: none.
    pub socketio_page: Option<std::path::PathBuf>,
}

impl ServerConfig {
    /// What storage keeps: the same window the chat keeps in memory.
    pub fn retention(&self) -> crate::Retention {
        crate::Retention {
            per_room: self.chat.history_per_room,
            max_age: self.chat.history_max_age,
            recent_for: self.chat.dedupe_window,
            recent_max: self.chat.dedupe_max,
        }
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            chat: ChatConfig::default(),
            docs: crate::docs::Limits::default(),
            transport: TransportConfig::default(),
            write_timeout: Duration::from_secs(10),
            inbound_queue: 4096,
            max_input_wait: Duration::from_millis(250),
            redis: None,
            node_id: None,
            cluster_lease: Duration::from_secs(30),
            files_shared: false,
            shutdown_grace: Duration::from_secs(5),
            drain_delay: Duration::ZERO,
            drain_window: Duration::from_secs(10),
            max_connections: open_file_limit()
                .map_or(10_000, |limit| limit.saturating_sub(64).max(1)),
            max_connections_per_ip: 256,
            max_downloads_per_ip: 8,
            ping_interval: Duration::from_secs(25),
            ping_misses: 2,
            frames_per_sec: 50,
            frames_burst: 200,
            frames_refused_max: 50,
            auth_secret: None,
            uploads: None,
            stats_token: None,
            metrics_token: None,
            socketio_page: None,
            prune_interval: Duration::from_secs(60),
        }
    }
}

/// The soft limit on open files of this process, from `/proc/self/limits`.
fn open_file_limit() -> Option<usize> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|line| line.starts_with("Max open files"))?;
    line.trim_start_matches("Max open files").split_whitespace().next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_connection_limit_follows_the_open_file_limit() {
        let limit = open_file_limit();
        assert!(limit.is_some(), "Linux has /proc/self/limits");
        let config = ServerConfig::default();
        assert_eq!(Some(config.max_connections + 64), limit.filter(|&l| l > 64));
    }
}
