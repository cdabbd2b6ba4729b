//! The scriptable subcommands: `chat send` (one message, exit 0 once the
//! server acknowledged it) and `chat tail` (a room's history, then every
//! new message, across reconnects, for logs and bots).

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use chat_protocol::{ClientFrame, CloseCode, ServerFrame};
use chat_transport::tungstenite::Message;
use chat_transport::{ClientTls, TransportConfig, WebSocket};
use futures_util::StreamExt;

use crate::{engine, render};

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
}

impl Identity {
    async fn open(&self) -> anyhow::Result<WebSocket> {
        let transport =
            TransportConfig { client_tls: self.client_tls.clone(), ..TransportConfig::default() };
        let hello = ClientFrame::Hello {
            nick: self.nick.clone(),
            session: None,
            token: self.token.clone(),
        };
        let (notices, mut notes) = tokio::sync::mpsc::unbounded_channel();
        let greeted = engine::greet(&self.server, &transport, hello, &notices).await;
        while let Ok(engine::Event::Notice(notice)) = notes.try_recv() {
            eprintln!("-- {notice}");
        }
        Ok(greeted?.0)
    }
}

/// The next frame, with its text; `None` once the server closed.
async fn next(socket: &mut WebSocket) -> anyhow::Result<Option<(String, ServerFrame)>> {
    while let Some(message) = socket.next().await {
        match message.context("reading from the server")? {
            Message::Text(text) => {
                if let Ok(frame) = ServerFrame::decode(&text) {
                    return Ok(Some((text.as_str().to_owned(), frame)));
                }
            }
            Message::Close(frame) => {
                if let Some(frame) = frame.filter(|f| u16::from(f.code) != CloseCode::Normal.code())
                {
                    eprintln!(
                        "-- server closed: {} {}",
                        u16::from(frame.code),
                        render::clean(&frame.reason)
                    );
                }
                return Ok(None);
            }
            _ => {}
        }
    }
    Ok(None)
}

/// Sends one message; exit 0 once its echo came back.
pub async fn run_send(who: Identity, args: SendArgs) -> anyhow::Result<ExitCode> {
    let deadline = Duration::from_secs_f64(args.timeout.max(0.0));
    let sent = tokio::time::timeout(deadline, async {
        let mut socket = who.open().await?;
        let join = ClientFrame::Join { room: args.room.clone(), after: None };
        engine::send_frame(&mut socket, Some("join".to_owned()), join).await?;
        let id = format!("send-{:016x}", rand::random::<u64>());
        let mut said = false;
        while let Some((_, frame)) = next(&mut socket).await? {
            match frame {
                ServerFrame::Joined { id: Some(answer), .. } if answer == "join" && !said => {
                    let say = ClientFrame::Say {
                        room: args.room.clone(),
                        text: args.text.clone(),
                        action: false,
                    };
                    engine::send_frame(&mut socket, Some(id.clone()), say).await?;
                    said = true;
                }
                ServerFrame::Message(message) if message.id.as_deref() == Some(&id) => {
                    if who.json {
                        println!(
                            "{}",
                            serde_json::json!({"room": message.room, "seq": message.seq})
                        );
                    }
                    engine::close(&mut socket).await;
                    return Ok(());
                }
                ServerFrame::Error { id: Some(answer), code, message, .. }
                    if answer == "join" || answer == id =>
                {
                    bail!("{code}: {}", render::clean(&message))
                }
                _ => {}
            }
        }
        bail!("the server closed the connection before acknowledging the message")
    })
    .await;
    match sent {
        Ok(Ok(())) => Ok(ExitCode::SUCCESS),
        Ok(Err(err)) => Err(err),
        Err(_) => bail!("not acknowledged within {:.1} s", deadline.as_secs_f64()),
    }
}

/// Prints a room's history and follows it, reconnecting and resuming from
/// the last message seen, until interrupted.
pub async fn run_tail(who: Identity, args: TailArgs) -> anyhow::Result<ExitCode> {
    let mut after = args.after;
    let mut attempt = 0u32;
    let mut first = true;
    loop {
        let followed = tokio::select! {
            followed = follow(&who, &args.room, &mut after, &mut first, &mut attempt) => followed,
            _ = tokio::signal::ctrl_c() => return Ok(ExitCode::SUCCESS),
        };
        match followed {
            // The first connection's failures are the user's to fix.
            Err(err) if first => return Err(err),
            Err(err) => eprintln!("-- disconnected: {err:#}; reconnecting"),
            Ok(()) => eprintln!("-- disconnected; reconnecting"),
        }
        let ceiling = Duration::from_millis(500)
            .saturating_mul(2u32.saturating_pow(attempt))
            .min(Duration::from_secs(30));
        attempt = attempt.saturating_add(1);
        tokio::select! {
            () = tokio::time::sleep(ceiling.mul_f64(rand::random::<f64>())) => {}
            _ = tokio::signal::ctrl_c() => return Ok(ExitCode::SUCCESS),
        }
    }
}

/// One connection's worth of following; returns when it ends.
async fn follow(
    who: &Identity,
    room: &str,
    after: &mut Option<u64>,
    first: &mut bool,
    attempt: &mut u32,
) -> anyhow::Result<()> {
    let mut socket = who.open().await?;
    engine::send_frame(
        &mut socket,
        Some("tail".to_owned()),
        ClientFrame::Join { room: room.to_owned(), after: *after },
    )
    .await?;
    while let Some((text, frame)) = next(&mut socket).await? {
        let messages = match &frame {
            ServerFrame::Joined { id: Some(id), history, .. } if id == "tail" => {
                *first = false;
                *attempt = 0;
                history.clone()
            }
            ServerFrame::Error { id: Some(id), code, message, .. } if id == "tail" => {
                bail!("{code}: {}", render::clean(message))
            }
            ServerFrame::Message(message) if message.room == room => vec![message.clone()],
            _ => Vec::new(),
        };
        for message in messages {
            // A resume may repeat the message it resumed from: once each.
            if after.is_some_and(|seen| message.seq <= seen) {
                continue;
            }
            *after = Some(message.seq);
            if who.json {
                println!("{}", serde_json::to_string(&message).unwrap_or_else(|_| text.clone()));
            } else {
                for line in render::messages(std::slice::from_ref(&message)) {
                    println!("{line}");
                }
            }
        }
    }
    Ok(())
}
