//! The server's live counters: what the hub counts as it goes, and the
//! snapshot the `$stats` channel publishes once a second (encoded in
//! `wire.rs`, like every frame).

use std::sync::Arc;

use chat_core::RoomName;

use crate::metrics::Metrics;

/// The channel of the server's live counters.
pub(crate) const CHANNEL: &str = "$stats";

/// The rooms a snapshot names, most members first.
const TOP_ROOMS: usize = 20;

/// How many seconds of counters a new subscriber gets at once (5 min).
const HISTORY_POINTS: usize = 300;

/// One second of the counters a chart draws.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Point {
    pub ts_ms: u64,
    pub messages_per_sec: u64,
    pub connections: u64,
}

/// The last minutes of [`Point`]s, kept whether anyone watches or not, so
/// a stats page opened now shows them at once.
#[derive(Debug, Default)]
pub(crate) struct History {
    points: std::collections::VecDeque<Point>,
}

impl History {
    pub(crate) fn push(&mut self, point: Point) {
        if self.points.len() == HISTORY_POINTS {
            self.points.pop_front();
        }
        self.points.push_back(point);
    }

    pub(crate) fn points(&self) -> impl Iterator<Item = &Point> {
        self.points.iter()
    }
}

/// The totals of the server's metrics, and the messages of each second.
#[derive(Debug)]
pub(crate) struct Counters {
    started: tokio::time::Instant,
    metrics: Arc<Metrics>,
    /// Messages accepted at the last tick.
    messages_at_tick: u64,
}

/// The counters at one tick, with what the hub and the core say of their
/// state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Snapshot {
    pub uptime_ms: u64,
    pub connections: u64,
    pub sessions: u64,
    pub people: u64,
    pub watchers: u64,
    /// The rooms with the most members, most first.
    pub rooms: Vec<(RoomName, usize)>,
    pub room_count: u64,
    pub messages_per_sec: u64,
    pub messages_total: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub queued_frames: u64,
    pub queued_frames_max: u64,
    pub held_for_storage: u64,
    pub history_bytes: u64,
    pub file_bytes: u64,
    pub storage_failing: bool,
    pub node: Option<String>,
    pub cluster_down: Option<&'static str>,
    pub cluster: Option<crate::cluster::ClusterTotals>,
}

/// What the hub knows at a tick that the counters do not.
#[derive(Debug)]
pub(crate) struct State {
    pub connections: u64,
    pub sessions: u64,
    /// Sessions with a connection now.
    pub people: u64,
    /// Connections watching these counters.
    pub watchers: u64,
    /// Every room someone is in, with its members.
    pub rooms: Vec<(RoomName, usize)>,
    /// The frames waiting in each connection's queue.
    pub queued: Vec<u64>,
    pub held_for_storage: u64,
    pub history_bytes: u64,
    pub file_bytes: u64,
    pub storage_failing: bool,
    /// This node's name in a cluster.
    pub node: Option<String>,
    /// Why Redis cannot be reached, while it cannot.
    pub cluster_down: Option<&'static str>,
    /// Every node's counters added up.
    pub cluster: Option<crate::cluster::ClusterTotals>,
}

impl Counters {
    pub(crate) fn new(metrics: Arc<Metrics>) -> Self {
        Self { started: tokio::time::Instant::now(), metrics, messages_at_tick: 0 }
    }

    /// A second passed: the messages of that second, counted from the last
    /// tick.
    pub(crate) fn tick(&mut self) -> u64 {
        let total = self.metrics.messages.get();
        let this_second = total.saturating_sub(self.messages_at_tick);
        self.messages_at_tick = total;
        this_second
    }

    /// The snapshot to publish, with `messages_per_sec` from [`tick`].
    ///
    /// [`tick`]: Counters::tick
    pub(crate) fn snapshot(&self, messages_per_sec: u64, state: State) -> Snapshot {
        let State {
            connections,
            sessions,
            people,
            watchers,
            mut rooms,
            queued,
            held_for_storage,
            history_bytes,
            file_bytes,
            storage_failing,
            node,
            cluster_down,
            cluster,
        } = state;
        let room_count = rooms.len() as u64;
        rooms.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        rooms.truncate(TOP_ROOMS);
        Snapshot {
            uptime_ms: u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX),
            connections,
            sessions,
            people,
            watchers,
            rooms,
            room_count,
            messages_per_sec,
            messages_total: self.metrics.messages.get(),
            bytes_in: self.metrics.bytes_received.get(),
            bytes_out: self.metrics.bytes_delivered.get(),
            queued_frames: queued.iter().sum(),
            queued_frames_max: queued.iter().copied().max().unwrap_or(0),
            held_for_storage,
            history_bytes,
            file_bytes,
            storage_failing,
            node,
            cluster_down,
            cluster,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn room(name: &str) -> RoomName {
        RoomName::parse(name).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn a_snapshot_ranks_rooms_and_adds_up_queues() {
        let metrics = Arc::new(Metrics::new(false));
        metrics.bytes_received.inc_by(7);
        let mut counters = Counters::new(Arc::clone(&metrics));
        metrics.messages.inc_by(5);
        assert_eq!(counters.tick(), 5);
        metrics.messages.inc_by(3);
        let rooms: Vec<(RoomName, usize)> =
            (0..25).map(|n| (room(&format!("r{n:02}")), n % 3)).collect();
        let state = State {
            connections: 3,
            sessions: 2,
            people: 1,
            watchers: 1,
            rooms,
            queued: vec![1, 4, 2],
            held_for_storage: 0,
            history_bytes: 10,
            file_bytes: 20,
            storage_failing: false,
            node: None,
            cluster_down: None,
            cluster: None,
        };
        let this_second = counters.tick();
        let snapshot = counters.snapshot(this_second, state);
        assert_eq!(snapshot.messages_per_sec, 3);
        assert_eq!((snapshot.room_count, snapshot.rooms.len()), (25, TOP_ROOMS));
        assert_eq!(snapshot.rooms.first(), Some(&(room("r02"), 2)), "most members, then by name");
        assert_eq!((snapshot.queued_frames, snapshot.queued_frames_max), (7, 4));
        assert_eq!(snapshot.bytes_in, 7);
        assert_eq!((snapshot.connections, snapshot.people, snapshot.watchers), (3, 1, 1));
    }
}
