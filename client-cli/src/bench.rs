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

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, bail};
use chat_transport::tungstenite::http::Uri;
use hdrhistogram::Histogram;
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::{Semaphore, mpsc, watch};
use tokio::time::Instant;

use crate::rawws::{self, CLOSE, FrameBuffer, PING, PONG, TEXT};

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
    /// Read the server's CPU time and memory from /proc/PID.
    #[arg(long)]
    pub server_pid: Option<u32>,
    /// Seconds to wait after the last send for deliveries still in flight.
    #[arg(long, default_value_t = 5.0)]
    pub drain: f64,
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
pub async fn run(server: &str, args: BenchArgs) -> anyhow::Result<()> {
    if args.connections == 0 || args.rooms == 0 || args.senders + args.slow > args.connections {
        bail!("need at least one connection and room, and no more senders than connections");
    }
    if args.upgrade_only && args.senders > 0 {
        bail!("--upgrade-only sends nothing: use --senders 0");
    }
    if args.rate <= 0.0 && args.senders > 0 {
        bail!("--rate must be positive");
    }
    let report = measure(server, &args).await?;
    if args.json {
        println!("{report}");
    } else {
        print_table(&report);
    }
    Ok(())
}

/// Runs the benchmark and returns its report as JSON.
async fn measure(server: &str, args: &BenchArgs) -> anyhow::Result<Value> {
    let bench_cpu_start = cpu_seconds(None);
    // Before any connection, so memory per connection can be told apart.
    let server_start = args.server_pid.map(ServerSample::read);
    // Connect and join everyone first.
    let connect_started = Instant::now();
    let gate = Arc::new(Semaphore::new(args.concurrency.max(1)));
    // Nicks unique to this run, so runs do not collide with each other.
    let run = format!("{:04x}", rand::random::<u16>());
    let mut opening = Vec::with_capacity(args.connections);
    let target = Arc::new(Target::parse(server)?);
    for i in 0..args.connections {
        let gate = Arc::clone(&gate);
        let target = Arc::clone(&target);
        let source = (!args.sources.is_empty()).then(|| args.sources[i % args.sources.len()]);
        let room = format!("bench-{}", i % args.rooms);
        let nick = (!args.upgrade_only).then(|| format!("b{run}-{i}"));
        opening.push(tokio::spawn(async move {
            let _permit = gate.acquire_owned().await?;
            open(&target, source, nick.as_deref(), &room)
                .await
                .with_context(|| format!("connection {i}"))
        }));
    }
    let mut conns = Vec::with_capacity(args.connections);
    for handle in opening {
        conns.push(handle.await??);
    }
    let connect_seconds = connect_started.elapsed().as_secs_f64();

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
    for (i, conn) in conns.into_iter().enumerate() {
        if i >= readers_count {
            slow.push(conn);
            continue;
        }
        let Conn { read, write, buffer } = conn;
        // Shared with the reader, which answers the server's pings.
        let sink: Sink = Arc::new(tokio::sync::Mutex::new(write));
        let reader = read_loop(
            Reading { read, sink: Arc::clone(&sink), buffer },
            schedule,
            Arc::clone(&counters),
            Arc::clone(&histograms),
            i % SHARDS,
            stop_rx.clone(),
        );
        readers.push(tokio::spawn(reader));
        let is_sender =
            args.senders > 0 && i % sender_every == 0 && i / sender_every < args.senders;
        if is_sender {
            let room = format!("bench-{}", i % args.rooms);
            let plan = SendPlan {
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
    let server_at_measure = args.server_pid.map(ServerSample::read);
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
    let server_at_end = args.server_pid.map(ServerSample::read);
    // Deliveries still in flight may arrive until the drain deadline.
    let drain_until = Instant::now() + Duration::from_secs_f64(args.drain.max(0.0));
    while counters.received.load(Ordering::Acquire) < expected && Instant::now() < drain_until {
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
    let mut bye = Vec::new();
    rawws::client_frame(CLOSE, &1000u16.to_be_bytes(), &mut bye);
    for sink in idle_sinks {
        let bye = async { sink.lock().await.write_all(&bye).await };
        let _ = tokio::time::timeout(Duration::from_secs(1), bye).await;
    }
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
    let mut latency = Histogram::<u64>::new_with_max(MAX_LATENCY_US, 3)?;
    for shard in histograms.iter() {
        let shard = shard.lock().map_err(|_| anyhow::anyhow!("a reader panicked"))?;
        latency.add(&*shard)?;
    }
    let bench_cpu = cpu_seconds(None).zip(bench_cpu_start).map(|(end, start)| end - start);
    let elapsed = origin.elapsed().as_secs_f64();
    let ms = |q: f64| latency.value_at_quantile(q) as f64 / 1000.0;
    let server = match (server_start, server_at_measure, server_at_end) {
        (Some(Some(first)), Some(Some(from)), Some(Some(to))) => {
            let cpu = to.cpu_seconds - from.cpu_seconds;
            json!({
                "cpu_seconds": cpu,
                "cpu_percent": 100.0 * cpu / args.duration,
                "cpu_us_per_delivery": if received > 0 { 1e6 * cpu / received as f64 } else { 0.0 },
                "rss_bytes": to.rss_bytes,
                "rss_bytes_per_connection": to.rss_bytes.saturating_sub(first.rss_bytes.min(to.rss_bytes)) / args.connections as u64,
                "rss_bytes_at_start": first.rss_bytes,
            })
        }
        _ => Value::Null,
    };
    Ok(json!({
        "connections": args.connections,
        "connect_seconds": connect_seconds,
        "connects_per_sec": args.connections as f64 / connect_seconds.max(1e-9),
        "upgrade_only": args.upgrade_only,
        "rooms": args.rooms,
        "senders": args.senders,
        "rate_per_sender": args.rate,
        "duration_seconds": args.duration,
        "sent": sent,
        "expected": expected,
        "received": received,
        "lost": expected.saturating_sub(received),
        "deliveries_per_sec": received as f64 / args.duration.max(1e-9),
        "errors": counters.errors.load(Ordering::Acquire),
        "closed_by_server": counters.closed.load(Ordering::Acquire),
        "slow": args.slow,
        "slow_cut_off": slow_cut_off,
        "latency_ms": {
            "p50": ms(0.5), "p90": ms(0.9), "p99": ms(0.99), "p999": ms(0.999),
            "max": latency.max() as f64 / 1000.0, "samples": latency.len(),
        },
        "bench_cpu_percent": bench_cpu.map(|cpu| 100.0 * cpu / elapsed.max(1e-9)),
        "server": server,
    }))
}

/// Where to connect.
struct Target {
    host: String,
    port: u16,
    path: String,
}

impl Target {
    fn parse(url: &str) -> anyhow::Result<Self> {
        let uri: Uri = url.parse().with_context(|| format!("invalid server URL {url:?}"))?;
        if uri.scheme_str() != Some("ws") {
            bail!("the server URL must be ws://");
        }
        let host = uri.host().context("the server URL has no host")?;
        let host = host.trim_start_matches('[').trim_end_matches(']').to_owned();
        let path = uri.path_and_query().map_or("/".to_owned(), |p| p.as_str().to_owned());
        Ok(Self { host, port: uri.port_u16().unwrap_or(80), path })
    }
}

/// One open connection, split for a reader and a writer.
struct Conn {
    read: OwnedReadHalf,
    write: OwnedWriteHalf,
    buffer: FrameBuffer,
}

/// Opens one connection and, given a nick, says hello and joins its room.
async fn open(
    target: &Target,
    source: Option<IpAddr>,
    nick: Option<&str>,
    room: &str,
) -> anyhow::Result<Conn> {
    let mut stream = match source {
        None => TcpStream::connect((target.host.as_str(), target.port)).await?,
        Some(local) => {
            let remote = tokio::net::lookup_host((target.host.as_str(), target.port))
                .await?
                .find(|remote| remote.is_ipv4() == local.is_ipv4())
                .context("no server address of the source's family")?;
            let socket = if local.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
            socket.bind(std::net::SocketAddr::new(local, 0))?;
            socket.connect(remote).await?
        }
    };
    stream.set_nodelay(true)?;
    let host = format!("{}:{}", target.host, target.port);
    let rest =
        rawws::handshake(&mut stream, &host, &target.path, chat_protocol::SUBPROTOCOL).await?;
    // A small buffer, grown only for large frames: many connections live here.
    let mut buffer = FrameBuffer::new(4096, &rest);
    let Some(nick) = nick else {
        let (read, write) = stream.into_split();
        return Ok(Conn { read, write, buffer });
    };
    let mut out = Vec::new();
    rawws::client_frame(
        TEXT,
        json!({"type": "hello", "nick": nick}).to_string().as_bytes(),
        &mut out,
    );
    rawws::client_frame(
        TEXT,
        json!({"type": "join", "room": room}).to_string().as_bytes(),
        &mut out,
    );
    stream.write_all(&out).await?;
    loop {
        while let Some((opcode, payload)) = buffer.next_frame()? {
            match opcode {
                TEXT if payload.starts_with(br#"{"type":"joined""#) => {
                    let (read, write) = stream.into_split();
                    return Ok(Conn { read, write, buffer });
                }
                TEXT if payload.starts_with(br#"{"type":"error""#) => {
                    bail!("refused: {}", String::from_utf8_lossy(payload));
                }
                CLOSE => bail!("closed before joining"),
                _ => {}
            }
        }
        if buffer.fill(&mut stream).await? == 0 {
            bail!("closed before joining");
        }
    }
}

struct SendPlan {
    rate: f64,
    size: usize,
    until_us: u64,
    room: String,
}

/// Sends on schedule until the measured window ends; returns the messages
/// sent inside it and the deliveries they owe.
///
/// A sender the server cut off (closed as too slow, under overload) stops
/// and counts as an error; the run goes on.
async fn send_loop(
    sink: Sink,
    schedule: Schedule,
    plan: SendPlan,
    room_size: u64,
    counters: Arc<Counters>,
) -> anyhow::Result<(u64, u64, Sink)> {
    let mut ticks = pace(schedule.origin.into_std(), plan.rate, plan.until_us);
    let mut sent = 0u64;
    let mut out = Vec::new();
    while let Some(intended_us) = ticks.recv().await {
        let text = format!("{intended_us:>16}{}", "x".repeat(plan.size.saturating_sub(16)));
        let frame = json!({"type": "say", "room": plan.room, "text": text}).to_string();
        out.clear();
        rawws::client_frame(TEXT, frame.as_bytes(), &mut out);
        if sink.lock().await.write_all(&out).await.is_err() {
            counters.errors.fetch_add(1, Ordering::AcqRel);
            break;
        }
        if schedule.is_measured(intended_us) {
            sent += 1;
        }
    }
    Ok((sent, sent * room_size, sink))
}

/// The intended send times (µs after `origin`) of one sender at `rate`
/// messages per second until `until_us`, each delivered at its time by a
/// thread that sleeps with the OS's precision (tens of µs): the runtime's
/// timer rounds up to the next millisecond, which would add up to a
/// millisecond of the bench's own lateness to every latency measured.
/// A sender that falls behind gets its ticks late, and the latency measured
/// from the intended time shows it.
fn pace(origin: std::time::Instant, rate: f64, until_us: u64) -> mpsc::UnboundedReceiver<u64> {
    let (ticks, receiver) = mpsc::unbounded_channel();
    let interval_us = 1e6 / rate;
    // Senders start at different offsets so they do not all fire together.
    let offset_us = rand::random::<f64>() * interval_us;
    std::thread::spawn(move || {
        for k in 0u64.. {
            let intended_us = (offset_us + k as f64 * interval_us) as u64;
            if intended_us >= until_us {
                break;
            }
            let due = origin + Duration::from_micros(intended_us);
            if let Some(wait) = due.checked_duration_since(std::time::Instant::now()) {
                std::thread::sleep(wait);
            }
            if ticks.send(intended_us).is_err() {
                break;
            }
        }
    });
    receiver
}

type Sink = Arc<tokio::sync::Mutex<OwnedWriteHalf>>;

/// What a reader needs of its connection: the socket's read half, the write
/// half to answer pings on, and the frames read so far.
struct Reading {
    read: OwnedReadHalf,
    sink: Sink,
    buffer: FrameBuffer,
}

/// Reads until told to stop, recording the latency of measured messages.
async fn read_loop(
    Reading { mut read, sink, mut buffer }: Reading,
    schedule: Schedule,
    counters: Arc<Counters>,
    histograms: Arc<Vec<Mutex<Histogram<u64>>>>,
    shard: usize,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let received_us = schedule.origin.elapsed().as_micros() as u64;
        let mut pinged = false;
        loop {
            let (opcode, payload) = match buffer.next_frame() {
                Ok(Some(frame)) => frame,
                Ok(None) => break,
                Err(_) => return,
            };
            match (opcode, intended_time(payload)) {
                (TEXT, Some(intended_us)) if schedule.is_measured(intended_us) => {
                    counters.received.fetch_add(1, Ordering::AcqRel);
                    let latency = received_us.saturating_sub(intended_us).clamp(1, MAX_LATENCY_US);
                    if let Ok(mut histogram) = histograms[shard].lock() {
                        let _ = histogram.record(latency);
                    }
                }
                (TEXT, None) if payload.starts_with(br#"{"type":"error""#) => {
                    counters.errors.fetch_add(1, Ordering::AcqRel);
                }
                (CLOSE, _) => {
                    counters.closed.fetch_add(1, Ordering::AcqRel);
                    return;
                }
                (PING, _) => pinged = true,
                _ => {}
            }
        }
        // The server pings connections that are quiet; unanswered, it
        // would close them as dead. (Its pings carry no payload.)
        if pinged {
            let mut pong = Vec::new();
            rawws::client_frame(PONG, &[], &mut pong);
            if sink.lock().await.write_all(&pong).await.is_err() {
                return;
            }
        }
        tokio::select! {
            filled = buffer.fill(&mut read) => {
                if !matches!(filled, Ok(n) if n > 0) {
                    return;
                }
            }
            _ = stop.changed() => return,
        }
    }
}

/// Reads a connection to its end and returns the close code the server
/// sent, or `None` if it ended without a close frame.
async fn close_code(conn: Conn) -> Option<u16> {
    let Conn { mut read, buffer: mut frames, write: _write } = conn;
    loop {
        while let Ok(Some((opcode, payload))) = frames.next_frame() {
            if opcode == CLOSE {
                return (payload.len() >= 2).then(|| u16::from_be_bytes([payload[0], payload[1]]));
            }
        }
        match frames.fill(&mut read).await {
            Ok(n) if n > 0 => {}
            _ => return None,
        }
    }
}

/// The intended send time a bench message's text starts with, read
/// straight from the frame without decoding the JSON.
fn intended_time(frame: &[u8]) -> Option<u64> {
    const TEXT_FIELD: &[u8] = br#""text":""#;
    if !frame.starts_with(br#"{"type":"message""#) {
        return None;
    }
    let start = frame.windows(TEXT_FIELD.len()).position(|w| w == TEXT_FIELD)? + TEXT_FIELD.len();
    let digits = frame.get(start..start + 16)?;
    let mut value = 0u64;
    let mut any = false;
    for &byte in digits {
        match byte {
            b' ' if !any => {}
            b'0'..=b'9' => {
                value = value.checked_mul(10)?.checked_add(u64::from(byte - b'0'))?;
                any = true;
            }
            _ => return None,
        }
    }
    any.then_some(value)
}

/// CPU time and memory of a process, from /proc.
#[derive(Debug, Clone, Copy)]
struct ServerSample {
    cpu_seconds: f64,
    rss_bytes: u64,
}

impl ServerSample {
    fn read(pid: u32) -> Option<Self> {
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
fn cpu_seconds(pid: Option<u32>) -> Option<f64> {
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

fn micros(seconds: f64) -> u64 {
    (seconds.max(0.0) * 1e6) as u64
}

fn print_table(report: &Value) {
    let n = |key: &str| report[key].as_f64().unwrap_or(0.0);
    let l = |key: &str| report["latency_ms"][key].as_f64().unwrap_or(0.0);
    println!(
        "connections      {:>12}   opened in {:.2} s ({:.0}/s)",
        n("connections"),
        n("connect_seconds"),
        n("connects_per_sec")
    );
    println!(
        "rooms / senders  {:>12} / {}   at {} msg/s each",
        n("rooms"),
        n("senders"),
        n("rate_per_sender")
    );
    println!("sent             {:>12}   in {} s measured", n("sent"), n("duration_seconds"));
    println!(
        "deliveries       {:>12} of {} expected, {} lost",
        n("received"),
        n("expected"),
        n("lost")
    );
    println!("throughput       {:>12.0} deliveries/s", n("deliveries_per_sec"));
    println!(
        "latency ms       p50 {:.2}  p90 {:.2}  p99 {:.2}  p99.9 {:.2}  max {:.2}",
        l("p50"),
        l("p90"),
        l("p99"),
        l("p999"),
        l("max")
    );
    println!("errors           {:>12}", n("errors"));
    println!("closed by server {:>12}", n("closed_by_server"));
    if n("slow") > 0.0 {
        println!(
            "slow consumers   {:>12}   {} cut off by the server",
            n("slow"),
            n("slow_cut_off")
        );
    }
    println!("bench cpu        {:>11.0}%   of one core", n("bench_cpu_percent"));
    if let Some(server) = report["server"].as_object() {
        let s = |key: &str| server.get(key).and_then(Value::as_f64).unwrap_or(0.0);
        println!(
            "server cpu       {:>11.0}%   {:.3} µs per delivery",
            s("cpu_percent"),
            s("cpu_us_per_delivery")
        );
        println!(
            "server rss       {:>12.0} bytes, {:.0} per connection",
            s("rss_bytes"),
            s("rss_bytes_per_connection")
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_intended_time_without_decoding() {
        let frame = br#"{"type":"message","room":"bench-0","seq":3,"ts":1,"from":"b","text":"         1234567xxxx","action":false}"#;
        assert_eq!(intended_time(frame), Some(1_234_567));
        assert_eq!(intended_time(br#"{"type":"pong"}"#), None);
        assert_eq!(intended_time(br#"{"type":"message","text":"short"}"#), None);
        assert_eq!(intended_time(br#"{"type":"message","text":"  12x4567890123456"}"#), None);
    }

    #[test]
    fn only_the_window_is_measured() {
        let schedule =
            Schedule { origin: Instant::now(), measure_from_us: 100, measure_until_us: 200 };
        assert!(!schedule.is_measured(99));
        assert!(schedule.is_measured(100));
        assert!(schedule.is_measured(199));
        assert!(!schedule.is_measured(200));
    }

    #[test]
    fn reads_its_own_cpu_time() {
        assert!(cpu_seconds(None).is_some_and(|s| s >= 0.0));
    }
}
