//! `chat-server`: flags and environment onto [`ServerConfig`], logging, bind,
//! then [`chat_server::run`] until ctrl-c or SIGTERM.

use std::io::IsTerminal;
use std::net::SocketAddr;

use anyhow::Context;
use chat_server::ServerConfig;
use clap::{Parser, ValueEnum};
use tokio::net::TcpListener;
use tracing_subscriber::EnvFilter;

/// A real-time chat server with its own browser page.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// Address to listen on; port 0 picks a free port.
    #[arg(long, env = "CHAT_LISTEN", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Log format on stderr. The level is set with RUST_LOG (default info).
    #[arg(long, env = "CHAT_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    /// Sustained chat messages (say and dm) allowed per second per connection.
    #[arg(long, env = "CHAT_MESSAGES_PER_SEC", default_value_t = ServerConfig::default().chat.messages_per_sec)]
    messages_per_sec: u32,
    /// Chat messages a connection may send in a burst.
    #[arg(long, env = "CHAT_MESSAGES_BURST", default_value_t = ServerConfig::default().chat.messages_burst)]
    messages_burst: u32,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    match args.log_format {
        LogFormat::Text => logs.init(),
        LogFormat::Json => logs.json().init(),
    }
    let mut config = ServerConfig::default();
    config.chat.messages_per_sec = args.messages_per_sec;
    config.chat.messages_burst = args.messages_burst;
    let listener =
        TcpListener::bind(args.listen).await.with_context(|| format!("binding {}", args.listen))?;
    let addr = listener.local_addr().context("reading the bound address")?;
    // One plain line on stdout, for people and for scripts that pass port 0.
    println!("listening on http://{addr}");
    tracing::info!(%addr, "listening");
    chat_server::run(listener, config, shutdown_signal()).await
}

/// Completes on ctrl-c or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(err) = tokio::signal::ctrl_c().await {
            tracing::error!(%err, "cannot listen for ctrl-c");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => {
                term.recv().await;
            }
            Err(err) => {
                tracing::error!(%err, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
}
