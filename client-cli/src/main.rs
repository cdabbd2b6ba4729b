//! `chat`: the terminal client, line mode.
//!
//! Each stdin line is a message to the current room or a `/command`; each
//! event prints one line on stdout; errors go to stderr as
//! `error: CODE: message`. At the end of input it waits until every message
//! it sent has come back from the server (or 5 s), closes with 1000 and
//! exits, so `echo hi | chat --nick a` reliably delivers.

mod input;
mod render;
mod session;

use std::process::ExitCode;

use clap::Parser;

/// Terminal client for chat-server.
#[derive(Debug, Parser)]
#[command(version, about)]
pub struct Args {
    /// The server's WebSocket URL.
    #[arg(long, env = "CHAT_SERVER", default_value = "ws://127.0.0.1:8080/ws")]
    server: String,
    /// The nick to use; the server assigns guest-NNNN without one.
    #[arg(long, env = "CHAT_NICK")]
    nick: Option<String>,
    /// The room to join first.
    #[arg(long, env = "CHAT_ROOM", default_value = "lobby")]
    room: String,
    /// Print every server frame as one JSON line instead of text.
    #[arg(long)]
    json: bool,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let args = Args::parse();
    match session::run(args).await {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
