//! The scriptable subcommands: `chat send` (one message, exit 0 once the
//! server acknowledged it) and `chat tail` (a room's history, then every
//! new message, across reconnects, for logs and bots).

use std::process::ExitCode;
use std::time::Duration;

use anyhow::bail;
use chat_protocol::{ClientFrame, ServerFrame};
use chat_transport::{ClientTls, TransportConfig};

use crate::engine::{self, Command, Event, Link};
use crate::render;

/// `chat send`.
#[derive(Debug, clap::Args)]
pub struct SendArgs {
    /// The room to send to (joined for the purpose).
    #[arg(long, default_value = "lobby")]
    room: String,
    /// How long to wait for the acknowledgement, in seconds.
    #[arg(long, default_value_t = 10.0)]
    timeout: f64,
    /// The message.
    text: String,
}

/// `chat tail`.
#[derive(Debug, clap::Args)]
pub struct TailArgs {
    /// The room to follow.
    #[arg(long, default_value = "lobby")]
    room: String,
    /// Start after this message `seq` (default: the recent history).
    #[arg(long)]
    after: Option<u64>,
}

/// Who connects, and how.
#[derive(Debug, Clone)]
pub struct Identity {
    pub server: String,
    pub nick: Option<String>,
    pub token: Option<String>,
    pub json: bool,
    pub client_tls: Option<ClientTls>,
    /// Which transport.
    pub via: engine::Via,
}

impl Identity {
    /// An engine's options for these rooms, failing at once if the first
    /// connection cannot be made.
    pub fn options(&self, rooms: Vec<(String, Option<u64>)>, linger: Duration) -> engine::Options {
        engine::Options {
            server: self.server.clone(),
            transport: TransportConfig {
                client_tls: self.client_tls.clone(),
                ..TransportConfig::default()
            },
            via: self.via,
            nick: self.nick.clone(),
            access_token: self.token.clone(),
            rooms,
            first_failure_fatal: true,
            linger,
            outbox: None,
        }
    }
}

/// Sends one message; exit 0 once the server acknowledged it.
pub async fn run_send(who: Identity, args: SendArgs) -> anyhow::Result<ExitCode> {
    let deadline = Duration::from_secs_f64(args.timeout.max(0.0));
    let (commands, mut events) =
        engine::spawn(who.options(vec![(args.room.clone(), None)], deadline));
    let id = format!("send-{:016x}", rand::random::<u64>());
    let mut said = false;
    let mut stored = None;
    let mut refusal = None;
    let outcome = tokio::time::timeout(deadline, async {
        while let Some(event) = events.recv().await {
            match event {
                // Once, however often the connection comes back: the engine
                // sends it again itself, with the same id.
                Event::Link(Link::Connected) if !said => {
                    said = true;
                    let say = ClientFrame::Say {
                        room: args.room.clone(),
                        text: args.text.clone(),
                        action: false,
                    };
                    let _ = commands.send(Command::SendAs(id.clone(), say));
                    let _ = commands.send(Command::Quit);
                }
                Event::Frame { frame: Some(frame), .. } => match *frame {
                    ServerFrame::Message(message) if message.id.as_deref() == Some(&id) => {
                        stored = Some((message.room, message.seq));
                    }
                    ServerFrame::Error { id: Some(answer), code, message, .. } if answer == id => {
                        refusal = Some(format!("{code}: {}", render::clean(&message)));
                    }
                    _ => {}
                },
                Event::Notice(notice) | Event::Info(notice) => eprintln!("-- {notice}"),
                Event::Problem(why) => eprintln!("error: {why}"),
                Event::Failed(failure) => return Err(failure.into()),
                Event::Done { unacked: 0, refused: 0 } => return Ok(true),
                Event::Done { .. } => return Ok(false),
                _ => {}
            }
        }
        bail!("the connection task ended unexpectedly")
    })
    .await;
    match (outcome, stored, refusal) {
        (Ok(Ok(true)), Some((room, seq)), _) => {
            if who.json {
                println!("{}", serde_json::json!({"room": room, "seq": seq}));
            }
            Ok(ExitCode::SUCCESS)
        }
        (Ok(Err(err)), _, _) => Err(err),
        (_, _, Some(refusal)) => bail!(refusal),
        _ => bail!("not acknowledged within {:.1} s", deadline.as_secs_f64()),
    }
}

/// Prints a room's history and follows it, reconnecting and resuming from
/// the last message seen (every message once, none lost without a gap
/// notice), until interrupted.
pub async fn run_tail(who: Identity, args: TailArgs) -> anyhow::Result<ExitCode> {
    let rooms = vec![(args.room.clone(), args.after)];
    let (_commands, mut events) = engine::spawn(who.options(rooms, Duration::ZERO));
    loop {
        let event = tokio::select! {
            event = events.recv() => event,
            _ = tokio::signal::ctrl_c() => return Ok(ExitCode::SUCCESS),
        };
        let messages = match event {
            Some(Event::Frame { frame: Some(frame), catch_up: false, .. }) => match *frame {
                ServerFrame::Joined { room, history, .. } if room == args.room => history,
                ServerFrame::Message(message) if message.room == args.room => vec![message],
                _ => Vec::new(),
            },
            Some(Event::Missed { messages, .. }) => messages,
            Some(Event::Notice(notice)) => {
                eprintln!("-- {notice}");
                Vec::new()
            }
            Some(Event::Resumed(notice)) => {
                eprintln!("-- {notice}");
                Vec::new()
            }
            Some(Event::Problem(why)) => {
                eprintln!("error: {why}");
                Vec::new()
            }
            Some(Event::Failed(failure)) => return Err(failure.into()),
            Some(Event::Done { .. }) | None => return Ok(ExitCode::SUCCESS),
            Some(_) => Vec::new(),
        };
        for message in messages {
            if who.json {
                match serde_json::to_string(&message) {
                    Ok(line) => println!("{line}"),
                    Err(err) => eprintln!("error: {err}"),
                }
            } else {
                for line in render::messages(std::slice::from_ref(&message)) {
                    println!("{line}");
                }
            }
        }
    }
}
