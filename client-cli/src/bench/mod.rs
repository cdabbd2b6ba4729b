//! `chat bench`: a load generator that measures the server from outside.
//!
//! It opens `--connections` WebSockets (spread over `--sources` addresses),
//! joins them round-robin to `--rooms` rooms, and makes `--senders` of them
//! say a message `--rate` times a second for `--duration` seconds after a
//! `--warmup`. Every message carries the time it was *meant* to be sent, so a
//! sender that falls behind cannot hide the delay: latency runs from the
//! intended send time to the moment a member receives it. Deliveries are
//! counted against what the room sizes say must arrive, so loss shows. With
//! `--server-pid` it reads the server's CPU time and memory from `/proc`; it
//! always reports its own CPU use, so one can tell which side is saturated.
//! Against a cluster, `--also` names the other nodes (connections are
//! spread over all of them, round-robin) and `--server-pid` is given once
//! per node (their CPU and memory are added up).
//!
//! `conn.rs` is one connection's sending and reading, `frames.rs` the frames
//! it sends and what it reads of those it gets, `report.rs` the report.

mod conn;
mod events;
mod frames;
mod report;

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, bail};
use hdrhistogram::Histogram;
use tokio::sync::{Semaphore, watch};
use tokio::time::Instant;

use self::conn::{
    Conn, Greeting, Reading, SendPlan, Target, close_code, open, read_loop, say, send_loop,
};
use self::report::{Latency, Report, ServerSample, ServerUse, cpu_seconds};

/// Latency histograms are sharded so readers rarely meet on a lock.
const SHARDS: usize = 64;

/// The longest latency recorded, in microseconds; longer ones are clamped.
const MAX_LATENCY_US: u64 = 120_000_000;

/// What to run.
#[derive(Debug, Clone, clap::Args)]
pub struct BenchArgs {
    /// Connections to open.
    #[arg(long, default_value_t = 100)]
    pub connections: usize,
    /// How many of them send (spread evenly over the connections).
    #[arg(long, default_value_t = 10)]
    pub senders: usize,
    /// Messages per second each sender sends.
    #[arg(long, default_value_t = 10.0)]
    pub rate: f64,
    /// Rooms the connections are spread over, round-robin.
    #[arg(long, default_value_t = 1)]
    pub rooms: usize,
    /// Seconds measured.
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    /// Seconds of sending before measuring starts.
    #[arg(long, default_value_t = 2.0)]
    pub warmup: f64,
    /// Bytes of text in each message (at least what the timestamp needs).
    #[arg(long, default_value_t = 32)]
    pub size: usize,
    /// Local addresses to connect from, comma-separated (127.0.0.1,127.0.0.2),
    /// to spread many connections over more source ports.
    #[arg(long, value_delimiter = ',')]
    pub sources: Vec<IpAddr>,
    /// Connections opened at once.
    #[arg(long, default_value_t = 256)]
    pub concurrency: usize,
    /// The last N connections never read: slow consumers. The server must
    /// cut them off (close 4008, or dropped when not even that fits) without
    /// the others losing anything; the report counts how many it cut off.
    #[arg(long, default_value_t = 0)]
    pub slow: usize,
    /// Only open the WebSockets (no hello, no join, no messages): measures
    /// upgrades per second and the memory of bare connections.
    #[arg(long)]
    pub upgrade_only: bool,
    /// Say hello on every connection first, then join them all to their
    /// rooms at once: `joins_per_sec` then measures the joins alone (a
    /// room filling as a stream starts), not the connections. (Until all
    /// are connected, the first ones read nothing: they answer no pings.)
    #[arg(long, conflicts_with = "upgrade_only")]
    pub join_storm: bool,
    /// More servers: the other nodes of a cluster. Connection i goes to
    /// the (i mod n)th of --server and these, so a room's members are
    /// spread over every node.
    #[arg(long)]
    pub also: Vec<String>,
    /// Read the server's CPU time and memory from /proc/PID; repeat for
    /// each node of a cluster (they are added up).
    #[arg(long)]
    pub server_pid: Vec<u32>,
    /// Seconds to wait after the last send for deliveries still in flight.
    #[arg(long, default_value_t = 5.0)]
    pub drain: f64,
    /// Connect as Socket.IO clients do (Engine.IO 4 over WebSocket at
    /// /socket.io/, every frame as an event): the same load in the other
    /// dialect.
    #[arg(long, conflicts_with = "join_storm")]
    pub socketio: bool,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// Counters shared by every connection task.
#[derive(Default)]
struct Counters {
    received: AtomicU64,
    errors: AtomicU64,
    /// Readers the server closed before the run ended.
    closed: AtomicU64,
    /// Measured messages the server refused for now (overloaded).
    refused: AtomicU64,
    /// The deliveries those would have owed.
    refused_owed: AtomicU64,
    /// Presence frames (single or batched) received.
    presence: AtomicU64,
}

/// When the run's phases begin, relative to one origin.
#[derive(Clone, Copy)]
struct Schedule {
    origin: Instant,
    measure_from_us: u64,
    measure_until_us: u64,
}

impl Schedule {
    fn is_measured(&self, intended_us: u64) -> bool {
        (self.measure_from_us..self.measure_until_us).contains(&intended_us)
    }
}

/// Runs the benchmark against `server` and prints the report.
pub async fn run(server: &str, args: BenchArgs, http: bool) -> anyhow::Result<()> {
    if args.connections == 0 || args.rooms == 0 || args.senders + args.slow > args.connections {
        bail!("need at least one connection and room, and no more senders than connections");
    }
    if args.upgrade_only && args.senders > 0 {
        bail!("--upgrade-only sends nothing: use --senders 0");
    }
    if args.rate <= 0.0 && args.senders > 0 {
        bail!("--rate must be positive");
    }
    let report = measure(server, &args, http).await?;
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        report.print_table();
    }
    Ok(())
}

/// Runs the benchmark and returns its report as JSON.
async fn measure(server: &str, args: &BenchArgs, http: bool) -> anyhow::Result<Report> {
    let bench_cpu_start = cpu_seconds(None);
    // Before any connection, so memory per connection can be told apart.
    let server_start = ServerSample::read_all(&args.server_pid);
    // Connect and join everyone first.
    let connect_started = Instant::now();
    let gate = Arc::new(Semaphore::new(args.concurrency.max(1)));
    // Nicks unique to this run, so runs do not collide with each other.
    let run = format!("{:04x}", rand::random::<u16>());
    let mut opening = Vec::with_capacity(args.connections);
    let targets: Vec<Arc<Target>> = std::iter::once(server)
        .chain(args.also.iter().map(String::as_str))
        .map(|url| Target::parse(url, http, args.socketio).map(Arc::new))
        .collect::<anyhow::Result<_>>()?;
    let room = |i: usize| format!("bench-{}", i % args.rooms);
    for i in 0..args.connections {
        let gate = Arc::clone(&gate);
        let target = Arc::clone(&targets[i % targets.len()]);
        let source = (!args.sources.is_empty()).then(|| args.sources[i % args.sources.len()]);
        let greeting = (!args.upgrade_only).then(|| {
            let nick = format!("b{run}-{i}");
            if args.socketio {
                let connect = frames::socketio_connect(&nick, &room(i));
                return Greeting { frames: vec![connect], until: "joined" };
            }
            let hello = frames::hello(&nick);
            if args.join_storm {
                Greeting { frames: vec![hello], until: "welcome" }
            } else {
                Greeting { frames: vec![hello, frames::join(&room(i))], until: "joined" }
            }
        });
        opening.push(tokio::spawn(async move {
            let _permit = gate.acquire_owned().await?;
            open(&target, source, greeting).await.with_context(|| format!("connection {i}"))
        }));
    }
    let mut conns = Vec::with_capacity(args.connections);
    for handle in opening {
        conns.push(handle.await??);
    }
    let connect_seconds = connect_started.elapsed().as_secs_f64();
    // A join storm: everyone connected joins at once.
    let join_seconds = if args.join_storm {
        let join_started = Instant::now();
        let joining: Vec<_> = conns
            .into_iter()
            .enumerate()
            .map(|(i, conn)| {
                let join = frames::join(&room(i));
                tokio::spawn(async move {
                    say(conn, &[join], "joined").await.with_context(|| format!("join {i}"))
                })
            })
            .collect();
        conns = Vec::with_capacity(args.connections);
        for handle in joining {
            conns.push(handle.await??);
        }
        join_started.elapsed().as_secs_f64()
    } else {
        connect_seconds
    };

    // Every room's size, to know what each message owes.
    // Slow consumers owe nothing: they are expected to be cut off.
    let readers_count = args.connections - args.slow;
    let mut room_sizes = vec![0u64; args.rooms];
    for i in 0..readers_count {
        room_sizes[i % args.rooms] += 1;
    }
    let origin = Instant::now();
    let schedule = Schedule {
        origin,
        measure_from_us: micros(args.warmup),
        measure_until_us: micros(args.warmup + args.duration),
    };
    let counters = Arc::new(Counters::default());
    let histograms: Arc<Vec<Mutex<Histogram<u64>>>> = Arc::new(
        (0..SHARDS)
            .map(|_| Histogram::new_with_max(MAX_LATENCY_US, 3).map(Mutex::new))
            .collect::<Result<_, _>>()?,
    );
    let (stop_tx, stop_rx) = watch::channel(false);
    let sender_every = readers_count.checked_div(args.senders).unwrap_or(usize::MAX);
    let mut senders = Vec::new();
    let mut readers = Vec::new();
    let mut idle_sinks = Vec::new();
    let mut slow = Vec::new();
    let mut streams = Vec::new();
    for (i, conn) in conns.into_iter().enumerate() {
        if i >= readers_count {
            slow.push(conn);
            continue;
        }
        // The sink is shared with the reader, which answers the server's pings.
        let Conn { read, sink, buffer, _stream } = conn;
        streams.push(_stream);
        let is_sender =
            args.senders > 0 && i % sender_every == 0 && i / sender_every < args.senders;
        let owes = if is_sender { room_sizes[i % args.rooms] } else { 0 };
        let reader = read_loop(
            Reading { read, sink: Arc::clone(&sink), buffer, owes },
            schedule,
            Arc::clone(&counters),
            Arc::clone(&histograms),
            i % SHARDS,
            stop_rx.clone(),
        );
        readers.push(tokio::spawn(reader));
        if is_sender {
            let room = format!("bench-{}", i % args.rooms);
            let plan = SendPlan {
                socketio: args.socketio,
                rate: args.rate,
                size: args.size,
                until_us: schedule.measure_until_us,
                room,
            };
            let sending =
                send_loop(sink, schedule, plan, room_sizes[i % args.rooms], Arc::clone(&counters));
            senders.push(tokio::spawn(sending));
        } else {
            idle_sinks.push(sink);
        }
    }
    let wall_measure_start = origin + Duration::from_micros(schedule.measure_from_us);
    tokio::time::sleep_until(wall_measure_start).await;
    let server_at_measure = ServerSample::read_all(&args.server_pid);
    let mut sent = 0;
    let mut expected = 0;
    for handle in senders {
        let (s, e, sink) = handle.await??;
        sent += s;
        expected += e;
        idle_sinks.push(sink);
    }
    // Every connection stays open for the whole window, senders or not:
    // with none, this is how long idle connections are held.
    tokio::time::sleep_until(origin + Duration::from_micros(schedule.measure_until_us)).await;
    let server_at_end = ServerSample::read_all(&args.server_pid);
    // Deliveries still in flight may arrive until the drain deadline.
    let drain_until = Instant::now() + Duration::from_secs_f64(args.drain.max(0.0));
    let owed = || expected.saturating_sub(counters.refused_owed.load(Ordering::Acquire));
    while counters.received.load(Ordering::Acquire) < owed() && Instant::now() < drain_until {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Readers stop first, so the server's answers to the goodbyes below are
    // not counted as connections it closed.
    let _ = stop_tx.send(true);
    for handle in readers {
        let _ = handle.await;
    }
    // Goodbye with 1000, so the server ends the sessions at once rather
    // than keeping them for a resume.
    for sink in idle_sinks {
        let _ = tokio::time::timeout(Duration::from_secs(1), sink.bye()).await;
    }
    drop(streams);
    // Now the slow consumers read what they were sent, to find the close.
    // A server cuts a slow consumer off with close 4008, or, when its
    // buffers are so full the close frame cannot be written, by dropping it.
    let mut slow_cut_off = 0u64;
    for conn in slow {
        let ended = tokio::time::timeout(Duration::from_secs(10), close_code(conn)).await;
        if let Ok(Some(4008) | None) = ended {
            slow_cut_off += 1;
        }
    }
    let received = counters.received.load(Ordering::Acquire);
    let expected = owed();
    let presence = counters.presence.load(Ordering::Acquire);
    let mut latency = Histogram::<u64>::new_with_max(MAX_LATENCY_US, 3)?;
    for shard in histograms.iter() {
        let shard = shard.lock().map_err(|_| anyhow::anyhow!("a reader panicked"))?;
        latency.add(&*shard)?;
    }
    let bench_cpu = cpu_seconds(None).zip(bench_cpu_start).map(|(end, start)| end - start);
    let elapsed = origin.elapsed().as_secs_f64();
    let ms = |q: f64| latency.value_at_quantile(q) as f64 / 1000.0;
    let server = match (server_start, server_at_measure, server_at_end) {
        (Some(first), Some(from), Some(to)) => {
            let cpu = to.cpu_seconds - from.cpu_seconds;
            let grown = to.rss_bytes.saturating_sub(first.rss_bytes.min(to.rss_bytes));
            Some(ServerUse {
                cpu_seconds: cpu,
                cpu_percent: 100.0 * cpu / args.duration,
                cpu_us_per_delivery: if received > 0 { 1e6 * cpu / received as f64 } else { 0.0 },
                rss_bytes: to.rss_bytes,
                rss_bytes_per_connection: grown / args.connections as u64,
                rss_bytes_at_start: first.rss_bytes,
            })
        }
        _ => None,
    };
    Ok(Report {
        connections: args.connections,
        connect_seconds,
        connects_per_sec: args.connections as f64 / connect_seconds.max(1e-9),
        upgrade_only: args.upgrade_only,
        rooms: args.rooms,
        senders: args.senders,
        rate_per_sender: args.rate,
        duration_seconds: args.duration,
        join_storm: args.join_storm,
        joins_per_sec: (!args.upgrade_only)
            .then(|| args.connections as f64 / join_seconds.max(1e-9)),
        presence_frames: presence,
        presence_frames_per_join: (!args.upgrade_only)
            .then(|| presence as f64 / args.connections as f64),
        sent,
        refused: counters.refused.load(Ordering::Acquire),
        expected,
        received,
        lost: expected.saturating_sub(received),
        deliveries_per_sec: received as f64 / args.duration.max(1e-9),
        errors: counters.errors.load(Ordering::Acquire),
        closed_by_server: counters.closed.load(Ordering::Acquire),
        slow: args.slow,
        slow_cut_off,
        latency_ms: Latency {
            p50: ms(0.5),
            p90: ms(0.9),
            p99: ms(0.99),
            p999: ms(0.999),
            max: latency.max() as f64 / 1000.0,
            samples: latency.len(),
        },
        bench_cpu_percent: bench_cpu.map(|cpu| 100.0 * cpu / elapsed.max(1e-9)),
        server,
    })
}

fn micros(seconds: f64) -> u64 {
    (seconds.max(0.0) * 1e6) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_window_is_measured() {
        let schedule =
            Schedule { origin: Instant::now(), measure_from_us: 100, measure_until_us: 200 };
        assert!(!schedule.is_measured(99));
        assert!(schedule.is_measured(100));
        assert!(schedule.is_measured(199));
        assert!(!schedule.is_measured(200));
    }
}
