//! The cost of one small `write()` to a loopback TCP socket on this machine:
//! the floor under the chat server's CPU per delivery when every delivery
//! is its own write (light fan-out, docs/performance.md).
//!
//! Run the writer on one core and the reader on the other, as the chat
//! benchmark does:
//!
//! ```sh
//! cargo build --release -p chat-client --example write_floor
//! taskset -c 0 target/release/examples/write_floor writer 127.0.0.1:9100 &
//! taskset -c 1 target/release/examples/write_floor reader 127.0.0.1:9100
//! ```
//!
//! The writer accepts 1000 connections, then every 10 ms writes one 80-byte
//! message to each of them with a plain blocking `write()` (TCP_NODELAY, as
//! the server) for 5 s, and prints its own CPU time per write. No framing,
//! no queues, no runtime: nothing but the system call.

use std::io::Write;
use std::net::TcpListener;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tokio::io::AsyncReadExt;

const CONNECTIONS: usize = 1000;
const ROUNDS: u32 = 500;
const INTERVAL: Duration = Duration::from_millis(10);
const MESSAGE: [u8; 80] = [b'x'; 80];

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let (Some(mode), Some(addr)) = (args.get(1), args.get(2)) else {
        bail!("usage: write_floor writer|reader ADDR");
    };
    match mode.as_str() {
        "writer" => writer(addr),
        "reader" => reader(addr),
        _ => bail!("usage: write_floor writer|reader ADDR"),
    }
}

fn writer(addr: &str) -> anyhow::Result<()> {
    let listener = TcpListener::bind(addr).with_context(|| format!("binding {addr}"))?;
    let mut sockets = Vec::with_capacity(CONNECTIONS);
    for _ in 0..CONNECTIONS {
        let (socket, _) = listener.accept()?;
        socket.set_nodelay(true)?;
        sockets.push(socket);
    }
    let start = Instant::now();
    let cpu_start = cpu_seconds()?;
    for round in 0..ROUNDS {
        let due = start + INTERVAL * round;
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        for socket in &mut sockets {
            socket.write_all(&MESSAGE)?;
        }
    }
    let cpu = cpu_seconds()? - cpu_start;
    let writes = f64::from(ROUNDS) * CONNECTIONS as f64;
    println!(
        "{writes} writes of {} bytes: {:.3} µs of CPU per write",
        MESSAGE.len(),
        cpu * 1e6 / writes
    );
    Ok(())
}

fn reader(addr: &str) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(async {
        let mut readers = Vec::with_capacity(CONNECTIONS);
        for _ in 0..CONNECTIONS {
            let mut socket = tokio::net::TcpStream::connect(addr).await?;
            readers.push(tokio::spawn(async move {
                let mut buffer = [0u8; 4096];
                let mut total = 0usize;
                loop {
                    match socket.read(&mut buffer).await {
                        Ok(0) | Err(_) => break total,
                        Ok(read) => total += read,
                    }
                }
            }));
        }
        let mut total = 0;
        for reader in readers {
            total += reader.await?;
        }
        println!("read {total} bytes");
        anyhow::Ok(())
    })
}

/// This process's CPU time (user and system), from `/proc`.
fn cpu_seconds() -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat")?;
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok());
    match (ticks(11), ticks(12)) {
        // Clock ticks are 100 per second on Linux.
        (Some(user), Some(system)) => Ok((user + system) / 100.0),
        _ => bail!("cannot read /proc/self/stat"),
    }
}
