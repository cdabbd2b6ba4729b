//! Line mode: each stdin line is a message to the current room or a
//! `/command`; each event prints one line on stdout; errors go to stderr as
//! `error: CODE: message` and connection notices as `-- ...`. At the end of
//! input it waits until every message it sent has come back from the server
//! (or 5 s), closes with 1000 and exits, so `echo hi | chat --nick a`
//! reliably delivers. Chosen when stdin or stdout is not a terminal, or
//! with `--plain`.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use chat_protocol::{ClientFrame, ClientMessage, ServerFrame};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::mpsc::UnboundedSender;

use crate::engine::{self, Command, Event};
use crate::input::{self, Input};
use crate::render;

/// How long to wait at the end for the server to echo what was sent.
const ACK_WAIT: Duration = Duration::from_secs(5);

/// What line mode keeps of the session to read and print lines.
struct Line {
    json: bool,
    me: String,
    /// Rooms in the order joined; the current one gets plain lines.
    rooms: Vec<String>,
    current: Option<String>,
    /// Commands refused (by the server, or as typed): any makes the exit
    /// code non-zero.
    refusals: usize,
}

/// Runs line mode until the end of input (or `/quit`, or Ctrl+C) and every
/// message is acknowledged. Returns the exit code.
pub async fn run(mut options: engine::Options, json: bool) -> anyhow::Result<ExitCode> {
    options.first_failure_fatal = true;
    options.linger = ACK_WAIT;
    let (commands, mut events) = engine::spawn(options);
    let mut line = Line { json, me: String::new(), rooms: Vec::new(), current: None, refusals: 0 };
    let mut stdin = BufReader::new(tokio::io::stdin()).lines();
    let mut reading = true;
    // Lines are read once the first room is joined: they go to it.
    let mut joined = false;
    loop {
        tokio::select! {
            read = stdin.next_line(), if reading && joined => {
                match read.context("reading stdin")? {
                    Some(text) => reading = line.typed(&text, &commands),
                    None => reading = false,
                }
                if !reading {
                    let _ = commands.send(Command::Quit);
                }
            }
            event = events.recv() => match event {
                Some(Event::Done { unacked, refused }) => {
                    return Ok(exit_code(unacked, refused, line.refusals));
                }
                Some(Event::Failed(failure)) => return Err(failure.into()),
                Some(Event::Link(engine::Link::Connected)) => joined = true,
                Some(event) => line.show(event),
                None => anyhow::bail!("the connection task ended unexpectedly"),
            },
            // Ctrl+C leaves like /quit: what was sent still gets its chance.
            _ = tokio::signal::ctrl_c(), if reading => {
                reading = false;
                let _ = commands.send(Command::Quit);
            }
        }
    }
}

/// Non-zero when anything was not done: a message not acknowledged, or
/// any command refused (each was said on stderr as it happened).
fn exit_code(unacked: usize, refused: usize, refusals: usize) -> ExitCode {
    if unacked > 0 {
        eprintln!("error: {unacked} message(s) not acknowledged by the server");
        return ExitCode::FAILURE;
    }
    if refused > 0 {
        eprintln!("error: the server refused {refused} message(s)");
        return ExitCode::FAILURE;
    }
    if refusals > 0 {
        eprintln!("error: {refusals} command(s) refused");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}

/// In `--json` mode a line that is a JSON object is a raw client frame:
/// sent as it is, with its own `id` (or a fresh one). `None` for any other
/// line; `Some(Err)` for a malformed frame or a `hello` (the client greets
/// by itself).
pub fn raw_frame(json: bool, line: &str) -> Option<Result<Command, String>> {
    if !json || !line.trim_start().starts_with('{') {
        return None;
    }
    Some(match chat_protocol::decode_client(line) {
        Ok(ClientMessage { frame: ClientFrame::Hello { .. }, .. }) => {
            Err("the client says hello by itself; send other frames".to_owned())
        }
        Ok(ClientMessage { id: Some(id), frame }) => Ok(Command::SendAs(id, frame)),
        Ok(ClientMessage { id: None, frame }) => Ok(Command::Send(frame)),
        Err(err) => Err(format!("{}: {}", err.code, err.message)),
    })
}

impl Line {
    /// A line typed; false once the user quit.
    fn typed(&mut self, text: &str, commands: &UnboundedSender<Command>) -> bool {
        if let Some(raw) = raw_frame(self.json, text) {
            match raw {
                Ok(command) => {
                    let _ = commands.send(command);
                }
                Err(why) => {
                    self.refusals += 1;
                    eprintln!("error: {why}");
                }
            }
            return true;
        }
        match input::parse(text, self.current.as_deref()) {
            Input::Send(frame) => {
                let _ = commands.send(Command::Send(frame));
            }
            Input::Upload { room, path } => {
                let _ = commands.send(Command::Upload { room, path: path.into() });
            }
            Input::Download { id, to } => {
                let _ = commands.send(Command::Download { id, to: to.map(Into::into) });
            }
            Input::Quit => return false,
            Input::Help => println!("{}", input::help(input::COMMANDS)),
            Input::Nothing => {}
            Input::Invalid(why) => {
                self.refusals += 1;
                eprintln!("error: {why}");
            }
        }
        true
    }

    fn show(&mut self, event: Event) {
        match event {
            Event::Frame { text, frame, catch_up } => {
                if let Some(frame) = &frame {
                    self.follow(frame);
                    if matches!(**frame, ServerFrame::Error { .. }) {
                        self.refusals += 1;
                    }
                }
                if self.json {
                    // Every frame, also those this client cannot read.
                    println!("{text}");
                    return;
                }
                match frame.map(|frame| *frame) {
                    Some(ServerFrame::Error { code, message, .. }) => {
                        eprintln!("error: {code}: {}", render::clean(&message));
                    }
                    // A reconnect's catch-up is shown as what was missed.
                    Some(_) if catch_up => {}
                    Some(frame) => {
                        for line in render::lines(&frame, &self.me) {
                            println!("{line}");
                        }
                    }
                    None => {}
                }
            }
            Event::Missed { room, messages, gap } if !self.json => {
                if let Some(gap) = gap {
                    println!("-- {}", render::gap(&room, gap));
                }
                for line in render::messages(&messages) {
                    println!("{line}");
                }
            }
            Event::Resumed(notice) if !self.json => println!("-- {notice}"),
            Event::Notice(notice) | Event::Info(notice) => eprintln!("-- {notice}"),
            Event::Problem(why) => eprintln!("error: {why}"),
            _ => {}
        }
    }

    /// Keeps the nick and the current room up to date: a room joined anew
    /// becomes current; a re-join on reconnect leaves it as it was.
    fn follow(&mut self, frame: &ServerFrame) {
        match frame {
            ServerFrame::Welcome { nick, .. } | ServerFrame::Nick { nick, .. } => {
                self.me = nick.clone();
            }
            ServerFrame::Joined { room, .. } if !self.rooms.contains(room) => {
                self.rooms.push(room.clone());
                self.current = Some(room.clone());
            }
            ServerFrame::Left { room, .. } => {
                self.rooms.retain(|r| r != room);
                if self.current.as_ref() == Some(room) {
                    self.current = self.rooms.last().cloned();
                }
            }
            _ => {}
        }
    }
}
