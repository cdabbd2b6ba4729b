//! The cluster's counters for `$stats`: each node writes its own into one
//! hash every second (with when it wrote them) and reads everyone's back;
//! the entries of nodes silent for a few seconds are dropped.

use std::time::Duration;

use redis::RedisResult;
use redis::aio::ConnectionManager;
use serde::{Deserialize, Serialize};

/// How long a node's counters count after it wrote them.
const FRESH: Duration = Duration::from_secs(5);

/// The counters of every node, added up.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ClusterTotals {
    /// Nodes that reported in the last few seconds.
    pub nodes: u64,
    /// Their connections.
    pub connections: u64,
    /// Their people (sessions with a connection, watchers aside).
    pub people: u64,
    /// The messages they accepted in the last second.
    pub messages_per_sec: u64,
}

/// One node's counters, as the hash keeps them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeCounts {
    /// When they were written, in Unix milliseconds (the writer's clock).
    pub at: u64,
    /// Its connections.
    pub connections: u64,
    /// Its people (sessions with a connection, watchers aside).
    pub people: u64,
    /// The messages it accepted in the last second.
    pub messages_per_sec: u64,
}

/// The counters' hash in Redis.
#[derive(Clone)]
pub struct Totals {
    conn: ConnectionManager,
    key: String,
}

impl std::fmt::Debug for Totals {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Totals").field("key", &self.key).finish()
    }
}

impl Totals {
    /// The hash under `prefix`, through `conn`.
    pub fn new(conn: ConnectionManager, prefix: &str) -> Self {
        Self { conn, key: format!("{prefix}:stats") }
    }

    /// Writes node run `instance`'s `counts` and reads everyone's: their
    /// sum over the nodes that wrote within the last few seconds. Older
    /// entries (nodes gone) are deleted.
    ///
    /// # Errors
    /// Redis failed.
    pub async fn report(&self, instance: &str, counts: NodeCounts) -> RedisResult<ClusterTotals> {
        let mut conn = self.conn.clone();
        let entry = serde_json::to_string(&counts).unwrap_or_default();
        let (all,): (Vec<(String, String)>,) = redis::pipe()
            .hset(&self.key, instance, entry)
            .ignore()
            .hgetall(&self.key)
            .query_async(&mut conn)
            .await?;
        let fresh = u64::try_from(FRESH.as_millis()).unwrap_or(u64::MAX);
        let (totals, stale) = add_up(&all, counts.at, fresh);
        if !stale.is_empty() {
            let () = redis::cmd("HDEL").arg(&self.key).arg(stale).query_async(&mut conn).await?;
        }
        Ok(totals)
    }
}

/// The sum of the entries written within `fresh` ms before `now`, and the
/// fields of the others (and of entries that do not decode).
fn add_up(entries: &[(String, String)], now: u64, fresh: u64) -> (ClusterTotals, Vec<String>) {
    let mut totals = ClusterTotals::default();
    let mut stale = Vec::new();
    for (field, value) in entries {
        match serde_json::from_str::<NodeCounts>(value) {
            Ok(counts) if counts.at.saturating_add(fresh) >= now => {
                totals.nodes += 1;
                totals.connections += counts.connections;
                totals.people += counts.people;
                totals.messages_per_sec += counts.messages_per_sec;
            }
            _ => stale.push(field.clone()),
        }
    }
    (totals, stale)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fresh_entries_are_added_up_and_stale_or_broken_ones_dropped() {
        let entry = |at, connections| {
            let counts = NodeCounts { at, connections, people: 1, messages_per_sec: 2 };
            serde_json::to_string(&counts).unwrap()
        };
        let entries = vec![
            ("a".to_owned(), entry(10_000, 5)),
            ("b".to_owned(), entry(6_000, 7)),
            ("c".to_owned(), entry(4_000, 100)),
            ("d".to_owned(), "not json".to_owned()),
        ];
        let (totals, stale) = add_up(&entries, 10_000, 5_000);
        let expected = ClusterTotals { nodes: 2, connections: 12, people: 2, messages_per_sec: 4 };
        assert_eq!(totals, expected);
        assert_eq!(stale, ["c", "d"]);
    }
}
