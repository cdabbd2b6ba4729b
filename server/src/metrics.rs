//! The server's Prometheus metrics, served as OpenMetrics text at
//! `GET /metrics` (docs/operations.md lists each one and what it is for).
//!
//! Every metric is made once, here, and whoever counts holds its handle:
//! an atomic counter or gauge, or a histogram behind an uncontended lock.
//! Nothing is looked up or allocated per delivery: a fan-out adds its
//! recipients and bytes once, the hub's gauges are set once a second, and
//! only rare events (a refusal, an error, a close) find their labelled
//! series by name.

use std::time::{SystemTime, UNIX_EPOCH};

use chat_protocol::{CloseCode, ErrorCode};
use chat_transport::Transport;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Metric, Registry, Unit};

use crate::log_limit::LogLimit;

/// A series' one label.
type Label = [(&'static str, &'static str); 1];
/// Counters with one label, each series made when first counted (or at
/// start, for the values worth alerting on before they happen).
type Labelled = Family<Label, Counter>;

/// The `Content-Type` of what [`Metrics::render`] makes.
pub(crate) const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Every metric the server keeps.
#[derive(Debug)]
pub(crate) struct Metrics {
    registry: Registry,
    /// Open chat connections and those opened so far, by transport.
    websocket: (Gauge, Counter),
    event_stream: (Gauge, Counter),
    socketio: (Gauge, Counter),
    connections_refused: Labelled,
    connections_closed: Labelled,
    /// Open connections of document editors (y-websocket).
    pub document_connections: Gauge,
    pub sessions_attached: Gauge,
    pub sessions_detached: Gauge,
    pub rooms: Gauge,
    pub room_members: Gauge,
    /// Frames and payload bytes read from clients (connection tasks).
    pub frames_received: Counter,
    pub bytes_received: Counter,
    /// Frames queued to clients, and their bytes: every event to every
    /// recipient (the hub, once per fan-out).
    pub deliveries: Counter,
    pub bytes_delivered: Counter,
    pub messages: Counter,
    pub fanout: Histogram,
    pub hub_batch: Histogram,
    pub hub_turn: Histogram,
    pub queued_frames: Gauge,
    pub queued_frames_max: Gauge,
    rate_limited: Labelled,
    errors: Labelled,
    pub commit_seconds: Histogram,
    pub commit_records: Histogram,
    pub store_failures: Counter,
    pub held_for_storage: Gauge,
    pub history_bytes: Gauge,
    pub uploads: Counter,
    pub upload_bytes: Counter,
    pub download_bytes: Counter,
    pub file_bytes: Gauge,
    pub file_quota_bytes: Gauge,
    pub history_served: Counter,
    resumes: Labelled,
    pub redis: Redis,
    /// How many lines connections may log a second (connected,
    /// disconnected, refused).
    pub connection_lines: LogLimit,
}

/// Connection log lines a second, at most (see [`LogLimit`]).
const CONNECTION_LINES_PER_SEC: u32 = 200;

/// Kinds of rate limit, as `chat_rate_limited_total` names them.
pub(crate) const RATE_LIMITS: [&str; 7] =
    ["messages", "joins", "rooms", "history", "frames", "uploads", "overloaded"];

/// Close codes the server sends, labelled from the start.
const SERVER_CLOSES: [CloseCode; 8] = [
    CloseCode::GoingAway,
    CloseCode::Policy,
    CloseCode::TooBig,
    CloseCode::Restart,
    CloseCode::TooSlow,
    CloseCode::Replaced,
    CloseCode::Unresponsive,
    CloseCode::TokenExpired,
];

impl Metrics {
    /// The metrics of a server; those of Redis only in `cluster` mode.
    pub(crate) fn new(cluster: bool) -> Self {
        let mut registry = Registry::default();
        // Redis's figures are registered in cluster mode only (a node
        // alone would show `chat_redis_up 0`, and set off alerts).
        let mut unused = Registry::default();
        let redis = Redis::new(if cluster { &mut registry } else { &mut unused });
        let r = &mut registry;
        let connections_refused = labelled(
            r,
            "chat_connections_refused",
            "Connections refused, by reason",
            "reason",
            &[
                "server_full",
                "address_full",
                "downloads_full",
                "draining",
                "origin",
                "handshake",
                "auth",
            ],
        );
        let codes: Vec<&'static str> =
            SERVER_CLOSES.iter().map(|c| close_label(c.code())).collect();
        let connections_closed = labelled(
            r,
            "chat_connections_closed",
            "Chat connections ended, by close code (the server's or the client's; none: cut \
             without one)",
            "code",
            &codes,
        );
        let rate_limited = labelled(
            r,
            "chat_rate_limited",
            "Requests refused by a rate limit, by kind",
            "kind",
            &RATE_LIMITS,
        );
        let errors = labelled(r, "chat_errors", "Error frames sent, by code", "code", &[]);
        let resumes = labelled(
            r,
            "chat_resumes",
            "Resumes: sessions resumed or reset (unknown: a new one), rooms resumed whole or \
             with a gap",
            "outcome",
            &["session_resumed", "session_reset", "room_resumed", "room_gap"],
        );
        let connections = Family::<Label, Gauge>::default();
        r.register("chat_connections", "Open chat connections, by transport", connections.clone());
        let opened = Labelled::default();
        r.register(
            "chat_connections_opened",
            "Chat connections opened, by transport",
            opened.clone(),
        );
        let of = |t: Transport| {
            let label = [("transport", t.name())];
            (connections.get_or_create_owned(&label), opened.get_or_create_owned(&label))
        };
        Self {
            websocket: of(Transport::WebSocket),
            event_stream: of(Transport::EventStream),
            socketio: of(Transport::SocketIo),
            connections_refused,
            connections_closed,
            document_connections: gauge(
                r,
                "chat_document_connections",
                "Open connections of shared documents' editors",
            ),
            sessions_attached: gauge(r, "chat_sessions_attached", "Sessions with a connection"),
            sessions_detached: gauge(
                r,
                "chat_sessions_detached",
                "Sessions waiting for their client to resume them",
            ),
            rooms: gauge(r, "chat_rooms", "Rooms held in memory"),
            room_members: gauge(r, "chat_room_members", "Room memberships (a session in a room)"),
            frames_received: counter(r, "chat_frames_received", "Messages read from clients"),
            bytes_received: bytes(r, "chat_received", "Payload bytes read from clients"),
            deliveries: counter(
                r,
                "chat_deliveries",
                "Frames queued to clients: every event to every recipient",
            ),
            bytes_delivered: bytes(r, "chat_delivered", "Payload bytes queued to clients"),
            messages: counter(r, "chat_messages", "Room and direct messages accepted"),
            fanout: histogram(
                r,
                "chat_fanout_recipients",
                "Recipients of each event the hub fans out",
                None,
                &[1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1e3, 2e3, 5e3, 1e4],
            ),
            hub_batch: histogram(
                r,
                "chat_hub_batch_inputs",
                "Inputs the hub took in one turn before writing what they caused",
                None,
                &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0],
            ),
            hub_turn: histogram(
                r,
                "chat_hub_turn",
                "How long the hub took for one turn: its inputs, their fan-out and writes",
                Some(Unit::Seconds),
                &[1e-5, 5e-5, 1e-4, 5e-4, 1e-3, 5e-3, 1e-2, 5e-2, 0.1, 0.5, 1.0],
            ),
            queued_frames: gauge(
                r,
                "chat_outgoing_queued_frames",
                "Frames waiting in every connection's outgoing queue",
            ),
            queued_frames_max: gauge(
                r,
                "chat_outgoing_queued_frames_max",
                "Frames waiting in the fullest outgoing queue",
            ),
            rate_limited,
            errors,
            commit_seconds: histogram(
                r,
                "chat_storage_commit",
                "How long each commit of records took (tries included)",
                Some(Unit::Seconds),
                &[5e-4, 1e-3, 2.5e-3, 5e-3, 1e-2, 2.5e-2, 5e-2, 0.1, 0.25, 0.5, 1.0, 2.5],
            ),
            commit_records: histogram(
                r,
                "chat_storage_commit_records",
                "Records in each commit",
                None,
                &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0],
            ),
            store_failures: counter(
                r,
                "chat_storage_failures",
                "Commits that failed after their tries (their messages refused)",
            ),
            held_for_storage: gauge(
                r,
                "chat_storage_held_deliveries",
                "Deliveries waiting for their records to be committed",
            ),
            history_bytes: gauge_bytes(r, "chat_history_resident", "History held in memory"),
            uploads: counter(r, "chat_uploads", "Files uploaded and stored with their message"),
            upload_bytes: bytes(r, "chat_upload", "Bytes of files uploaded"),
            download_bytes: bytes(r, "chat_download", "Bytes of files served"),
            file_bytes: gauge_bytes(r, "chat_files_stored", "Bytes stored files take"),
            file_quota_bytes: gauge_bytes(
                r,
                "chat_files_quota",
                "The most bytes stored files may take (0: uploads off)",
            ),
            history_served: counter(
                r,
                "chat_history_messages_served",
                "Messages sent from history: joins, resumes and history pages",
            ),
            resumes,
            redis,
            connection_lines: LogLimit::new("connections", CONNECTION_LINES_PER_SEC),
            registry: {
                registry.register_collector(Box::new(Process::new()));
                registry
            },
        }
    }

    /// Everything, in the OpenMetrics text format.
    pub(crate) fn render(&self) -> String {
        let mut text = String::with_capacity(16 * 1024);
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        text
    }

    /// The open connections of one transport, and those opened so far.
    pub(crate) fn transport(&self, transport: Transport) -> &(Gauge, Counter) {
        match transport {
            Transport::WebSocket => &self.websocket,
            Transport::EventStream => &self.event_stream,
            Transport::SocketIo => &self.socketio,
        }
    }

    /// A connection refused: a `Refusal`'s name, or `auth` for an
    /// access token refused.
    pub(crate) fn refused(&self, reason: &'static str) {
        self.connections_refused.get_or_create(&[("reason", reason)]).inc();
    }

    /// A chat connection ended with this close code (`None`: cut without
    /// one).
    pub(crate) fn closed(&self, code: Option<u16>) {
        let label = code.map_or("none", close_label);
        self.connections_closed.get_or_create(&[("code", label)]).inc();
    }

    pub(crate) fn error(&self, code: ErrorCode) {
        self.errors.get_or_create(&[("code", code.as_str())]).inc();
    }

    /// A refusal by a rate limit, one of [`RATE_LIMITS`].
    pub(crate) fn rate_limited(&self, kind: &'static str) {
        self.rate_limited.get_or_create(&[("kind", kind)]).inc();
    }

    /// `session_resumed`, `session_reset`, `room_resumed` or `room_gap`.
    pub(crate) fn resumed(&self, outcome: &'static str) {
        self.resumes.get_or_create(&[("outcome", outcome)]).inc();
    }
}

/// Cluster mode's figures: Redis.
#[derive(Debug)]
pub(crate) struct Redis {
    pub roundtrip: Histogram,
    pub fills: Counter,
    pub filled: Counter,
    pub lost: Counter,
    pub reconnects: Counter,
    pub up: Gauge,
}

impl Redis {
    fn new(r: &mut Registry) -> Self {
        Self {
            roundtrip: histogram(
                r,
                "chat_redis_roundtrip",
                "Cluster mode: how long Redis took to answer a write",
                Some(Unit::Seconds),
                &[1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 1e-2, 2.5e-2, 5e-2, 0.1, 0.5, 1.0],
            ),
            fills: counter(
                r,
                "chat_redis_gap_fills",
                "Cluster mode: gaps in what PUB/SUB delivered, found and read back from a \
                 room's log",
            ),
            filled: counter(
                r,
                "chat_redis_filled_messages",
                "Cluster mode: messages PUB/SUB missed, recovered from the room logs",
            ),
            lost: counter(
                r,
                "chat_redis_lost_messages",
                "Cluster mode: messages gone from a room's log before this node had them \
                 (told to members as a gap)",
            ),
            reconnects: counter(
                r,
                "chat_redis_reconnects",
                "Cluster mode: times the connection to Redis came back after it was lost",
            ),
            up: gauge(r, "chat_redis_up", "Cluster mode: 1 while Redis answers"),
        }
    }
}

/// A close code as a label: the codes of the protocol and RFC 6455's
/// common ones by number, any other as `other` (a client picks its own).
fn close_label(code: u16) -> &'static str {
    match code {
        1000 => "1000",
        1001 => "1001",
        1002 => "1002",
        1003 => "1003",
        1005 => "1005",
        1006 => "1006",
        1007 => "1007",
        1008 => "1008",
        1009 => "1009",
        1011 => "1011",
        1012 => "1012",
        4008 => "4008",
        4009 => "4009",
        4010 => "4010",
        4011 => "4011",
        _ => "other",
    }
}

/// `metric`, registered under `name` (with `unit`'s suffix if it has one).
fn registered<M: Metric + Clone>(
    registry: &mut Registry,
    (name, help): (&str, &str),
    unit: Option<Unit>,
    metric: M,
) -> M {
    match unit {
        Some(unit) => registry.register_with_unit(name, help, unit, metric.clone()),
        None => registry.register(name, help, metric.clone()),
    }
    metric
}

fn counter(registry: &mut Registry, name: &str, help: &str) -> Counter {
    registered(registry, (name, help), None, Counter::default())
}

fn bytes(registry: &mut Registry, name: &str, help: &str) -> Counter {
    registered(registry, (name, help), Some(Unit::Bytes), Counter::default())
}

fn gauge(registry: &mut Registry, name: &str, help: &str) -> Gauge {
    registered(registry, (name, help), None, Gauge::default())
}

fn gauge_bytes(registry: &mut Registry, name: &str, help: &str) -> Gauge {
    registered(registry, (name, help), Some(Unit::Bytes), Gauge::default())
}

fn histogram(
    registry: &mut Registry,
    name: &str,
    help: &str,
    unit: Option<Unit>,
    buckets: &[f64],
) -> Histogram {
    registered(registry, (name, help), unit, Histogram::new(buckets.iter().copied()))
}

/// A family whose series for `values` exist from the start, at 0.
fn labelled(
    registry: &mut Registry,
    name: &str,
    help: &str,
    label: &'static str,
    values: &[&'static str],
) -> Labelled {
    let family = Labelled::default();
    for &value in values {
        drop(family.get_or_create(&[(label, value)]));
    }
    registry.register(name, help, family.clone());
    family
}

/// The process's own figures, read from `/proc` at each scrape, under
/// the names every Prometheus client uses (`process_*`).
#[derive(Debug)]
struct Process {
    started: f64,
}

impl Process {
    fn new() -> Self {
        let started = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64());
        Self { started }
    }
}

impl Collector for Process {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let e = &mut encoder;
        const_gauge(e, "process_start_time_seconds", "When the process started", self.started)?;
        let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
        // The fields after the command's closing parenthesis (the command
        // may itself hold spaces and parentheses): utime and stime, fields
        // 14 and 15 of stat, are 11 and 12 here; rss (in pages), 24, is 21.
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .map(|(_, rest)| rest.split_whitespace().collect())
            .unwrap_or_default();
        let field = |n: usize| fields.get(n).and_then(|f| f.parse::<f64>().ok());
        if let (Some(user), Some(system)) = (field(11), field(12)) {
            let ticks = rustix::param::clock_ticks_per_second() as f64;
            let cpu = ConstCounter::new((user + system) / ticks);
            let help = "CPU time the process used, user and system";
            cpu.encode(e.encode_descriptor(
                "process_cpu_seconds",
                help,
                None,
                cpu.metric_type(),
            )?)?;
        }
        if let Some(rss) = field(21) {
            let bytes = rss * rustix::param::page_size() as f64;
            const_gauge(e, "process_resident_memory_bytes", "Resident memory", bytes)?;
        }
        if let Ok(dir) = std::fs::read_dir("/proc/self/fd") {
            const_gauge(e, "process_open_fds", "Open file descriptors", dir.count() as f64)?;
        }
        let limit = rustix::process::getrlimit(rustix::process::Resource::Nofile);
        if let Some(max) = limit.current {
            const_gauge(e, "process_max_fds", "The most file descriptors it may open", max as f64)?;
        }
        Ok(())
    }
}

fn const_gauge(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: f64,
) -> Result<(), std::fmt::Error> {
    let gauge = ConstGauge::new(value);
    gauge.encode(encoder.encode_descriptor(name, help, None, gauge.metric_type())?)
}
