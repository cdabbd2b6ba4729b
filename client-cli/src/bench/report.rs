//! What a bench run found: a typed report that `--json` serializes and
//! the table prints, and the readings of `/proc` it draws on.

use serde::Serialize;

/// The whole report of a run.
#[derive(Debug, Clone, Serialize)]
pub(super) struct Report {
    pub connections: usize,
    pub connect_seconds: f64,
    pub connects_per_sec: f64,
    pub upgrade_only: bool,
    pub rooms: usize,
    pub senders: usize,
    pub rate_per_sender: f64,
    pub duration_seconds: f64,
    /// Whether the connections said hello first and then all joined at
    /// once (`--join-storm`).
    pub join_storm: bool,
    /// Joins per second: of the join storm alone with `--join-storm`, else
    /// of whole connections (TCP connect, upgrade, hello and join).
    pub joins_per_sec: Option<f64>,
    /// Presence frames (`presence`, `presence_batch`) every reader got.
    pub presence_frames: u64,
    /// Those per join: how much one join costs the room's other members.
    pub presence_frames_per_join: Option<f64>,
    /// Messages sent inside the measured window.
    pub sent: u64,
    /// Of those, refused for now by an overloaded server (`unavailable`):
    /// a real client sends them again later.
    pub refused: u64,
    /// Deliveries the accepted ones owe: each times its room's readers.
    pub expected: u64,
    pub received: u64,
    pub lost: u64,
    pub deliveries_per_sec: f64,
    pub errors: u64,
    /// Readers the server closed before the run ended.
    pub closed_by_server: u64,
    pub slow: usize,
    /// Slow consumers the server cut off (4008, or dropped).
    pub slow_cut_off: u64,
    pub latency_ms: Latency,
    /// This process's CPU use, in percent of one core.
    pub bench_cpu_percent: Option<f64>,
    /// With `--server-pid`.
    pub server: Option<ServerUse>,
}

/// Latency from the intended send time to delivery, in milliseconds.
#[derive(Debug, Clone, Serialize)]
pub(super) struct Latency {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
    pub samples: u64,
}

/// What the server used, from `/proc`.
#[derive(Debug, Clone, Serialize)]
pub(super) struct ServerUse {
    pub cpu_seconds: f64,
    pub cpu_percent: f64,
    pub cpu_us_per_delivery: f64,
    pub rss_bytes: u64,
    pub rss_bytes_per_connection: u64,
    pub rss_bytes_at_start: u64,
}

/// CPU time and memory of a process, from /proc.
#[derive(Debug, Clone, Copy)]
pub(super) struct ServerSample {
    pub cpu_seconds: f64,
    pub rss_bytes: u64,
}

impl ServerSample {
    /// The processes `pids` together (the nodes of a cluster); `None`
    /// without any, or if one cannot be read.
    pub(super) fn read_all(pids: &[u32]) -> Option<Self> {
        let samples: Option<Vec<Self>> = pids.iter().map(|&pid| Self::read(pid)).collect();
        let samples = samples.filter(|samples| !samples.is_empty())?;
        Some(Self {
            cpu_seconds: samples.iter().map(|s| s.cpu_seconds).sum(),
            rss_bytes: samples.iter().map(|s| s.rss_bytes).sum(),
        })
    }

    pub(super) fn read(pid: u32) -> Option<Self> {
        let cpu_seconds = cpu_seconds(Some(pid))?;
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        let rss_kb: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))?
            .split_whitespace()
            .next()?
            .parse()
            .ok()?;
        Some(Self { cpu_seconds, rss_bytes: rss_kb * 1024 })
    }
}

/// User plus system CPU seconds of `pid` (this process without one).
pub(super) fn cpu_seconds(pid: Option<u32>) -> Option<f64> {
    let path = match pid {
        Some(pid) => format!("/proc/{pid}/stat"),
        None => "/proc/self/stat".to_owned(),
    };
    let stat = std::fs::read_to_string(path).ok()?;
    // Fields after the command name, which may itself hold spaces.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    // /proc reports clock ticks of 1/100 s (USER_HZ) on Linux.
    Some((utime + stime) / 100.0)
}

impl Report {
    /// The report as a table for people.
    pub(super) fn print_table(&self) {
        let l = &self.latency_ms;
        println!(
            "connections      {:>12}   opened in {:.2} s ({:.0}/s)",
            self.connections, self.connect_seconds, self.connects_per_sec
        );
        println!(
            "rooms / senders  {:>12} / {}   at {} msg/s each",
            self.rooms, self.senders, self.rate_per_sender
        );
        if let (Some(joins), Some(per_join)) = (self.joins_per_sec, self.presence_frames_per_join) {
            println!(
                "joins            {:>12.0}/s   {} presence frames, {:.2} per join",
                joins, self.presence_frames, per_join
            );
        }
        println!(
            "sent             {:>12}   in {} s measured, {} refused as overloaded",
            self.sent, self.duration_seconds, self.refused
        );
        println!(
            "deliveries       {:>12} of {} expected, {} lost",
            self.received, self.expected, self.lost
        );
        println!("throughput       {:>12.0} deliveries/s", self.deliveries_per_sec);
        println!(
            "latency ms       p50 {:.2}  p90 {:.2}  p99 {:.2}  p99.9 {:.2}  max {:.2}",
            l.p50, l.p90, l.p99, l.p999, l.max
        );
        println!("errors           {:>12}", self.errors);
        println!("closed by server {:>12}", self.closed_by_server);
        if self.slow > 0 {
            println!(
                "slow consumers   {:>12}   {} cut off by the server",
                self.slow, self.slow_cut_off
            );
        }
        println!("bench cpu        {:>11.0}%   of one core", self.bench_cpu_percent.unwrap_or(0.0));
        if let Some(server) = &self.server {
            println!(
                "server cpu       {:>11.0}%   {:.3} µs per delivery",
                server.cpu_percent, server.cpu_us_per_delivery
            );
            println!(
                "server rss       {:>12} bytes, {} per connection",
                server.rss_bytes, server.rss_bytes_per_connection
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_its_own_cpu_time() {
        assert!(cpu_seconds(None).is_some_and(|s| s >= 0.0));
    }
}
