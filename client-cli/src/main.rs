//! `chat`: the terminal client, line mode.
//!
//! Each stdin line is a message to the current room or a `/command`; each
//! event prints one line on stdout; errors go to stderr as
//! `error: CODE: message`. At the end of input it waits until every message
//! it sent has come back from the server (or 5 s), closes with 1000 and
//! exits, so `echo hi | chat --nick a` reliably delivers.

mod bench;
mod input;
mod oneshot;
mod pacer;
mod rawws;
mod render;
mod session;
#[allow(dead_code)] // Wired to a terminal in the next step.
mod tui;

use std::process::ExitCode;

use clap::Parser;

/// Terminal client for chat-server.
#[derive(Debug, Parser)]
#[command(version, about)]
pub struct Args {
    /// The server's WebSocket URL.
    #[arg(long, global = true, env = "CHAT_SERVER", default_value = "ws://127.0.0.1:8080/ws")]
    server: String,
    /// The nick to use; the server assigns guest-NNNN without one.
    #[arg(long, env = "CHAT_NICK", global = true)]
    nick: Option<String>,
    /// The room to join first.
    #[arg(long, env = "CHAT_ROOM", default_value = "lobby")]
    room: String,
    /// Print every server frame as one JSON line instead of text.
    #[arg(long, global = true)]
    json: bool,
    /// An access token, for servers with authentication on (made with
    /// `chat-server token`); it names your nick.
    #[arg(long, env = "CHAT_TOKEN", hide_env_values = true, global = true)]
    token: Option<String>,
    /// For wss:// servers: trust the certificates in this PEM file (a
    /// private CA, or the server's own certificate) instead of the public
    /// certificate authorities.
    #[arg(long, env = "CHAT_CA", global = true)]
    ca: Option<std::path::PathBuf>,
    /// For wss:// servers: trust any certificate. Development only: the
    /// connection is encrypted, but anyone could be at the other end.
    #[arg(long, conflicts_with = "ca", global = true)]
    insecure: bool,
    #[command(subcommand)]
    command: Option<Subcommand>,
}

#[derive(Debug, clap::Subcommand)]
enum Subcommand {
    /// Load-test a server: many connections, fixed-rate senders; reports
    /// throughput, loss, latency and CPU (see docs/performance.md).
    Bench(bench::BenchArgs),
    /// Send one message; exits 0 once the server acknowledged it.
    Send(oneshot::SendArgs),
    /// Print a room's history, then follow it (across reconnects).
    Tail(oneshot::TailArgs),
}

/// Who the scriptable subcommands connect as.
fn identity(args: &Args) -> anyhow::Result<oneshot::Identity> {
    let client_tls = match (&args.ca, args.insecure) {
        (Some(path), _) => {
            Some(chat_transport::ClientTls::from_ca_file(path).map_err(anyhow::Error::msg)?)
        }
        (None, true) => Some(chat_transport::ClientTls::insecure()),
        (None, false) => None,
    };
    Ok(oneshot::Identity {
        server: args.server.clone(),
        nick: args.nick.clone(),
        token: args.token.clone(),
        json: args.json,
        client_tls,
    })
}

fn single_threaded(
    future: impl std::future::Future<Output = anyhow::Result<ExitCode>>,
) -> anyhow::Result<ExitCode> {
    tokio::runtime::Builder::new_current_thread().enable_all().build()?.block_on(future)
}

fn main() -> ExitCode {
    let mut args = Args::parse();
    let result = match args.command.take() {
        // The load generator needs every core it can get; chatting needs one.
        Some(Subcommand::Bench(bench)) => tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .map_err(anyhow::Error::from)
            .and_then(|runtime| runtime.block_on(bench::run(&args.server, bench)))
            .map(|()| ExitCode::SUCCESS),
        Some(Subcommand::Send(send)) => {
            identity(&args).and_then(|who| single_threaded(oneshot::run_send(who, send)))
        }
        Some(Subcommand::Tail(tail)) => {
            identity(&args).and_then(|who| single_threaded(oneshot::run_tail(who, tail)))
        }
        None => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(anyhow::Error::from)
            .and_then(|runtime| runtime.block_on(session::run(args))),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
