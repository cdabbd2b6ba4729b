//! The full-screen client on a real terminal: raw mode, the alternate
//! screen, keys, mouse wheel, paste and resize in; the engine's events in;
//! one redraw after each batch. The terminal is restored however the client
//! ends: quit, error, panic, or a signal.

use std::io::{Stdout, Write};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use chat_protocol::ServerFrame;
use crossterm::event::{
    DisableBracketedPaste, DisableMouseCapture, EnableBracketedPaste, EnableMouseCapture,
    Event as TermEvent, EventStream, KeyCode, KeyEvent, KeyEventKind, KeyModifiers, MouseEventKind,
};
use crossterm::terminal::{
    EnterAlternateScreen, LeaveAlternateScreen, disable_raw_mode, enable_raw_mode,
};
use futures_util::StreamExt;
use ratatui::Terminal;
use ratatui::backend::CrosstermBackend;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::mpsc::UnboundedSender;

use super::editor::Editor;
use super::state::{self, Connection, Kind, State};
use super::view::{self, Chrome, Palette};
use crate::engine::{self, Command, Event, Link};
use crate::input::{self, Input};
use crate::render;

/// Commands offered by Tab.
const COMMANDS: [&str; 18] = [
    "/join",
    "/leave",
    "/part",
    "/close",
    "/nick",
    "/msg",
    "/me",
    "/who",
    "/rooms",
    "/clear",
    "/members",
    "/help",
    "/quit",
    "/quote",
    "/upload",
    "/download",
    "/edit",
    "/delete",
];

/// Keys, shown by `/help` after the commands.
const KEYS: &str = "\
keys:
  Enter send · Tab complete · Up/Down input history · Ctrl+W/U/K delete word/to start/to end
  Ctrl+N/Ctrl+P or Alt+1..9 switch view · PgUp/PgDn or the mouse wheel scroll · Esc newest
  F2 members on/off · F3/F4 scroll the members · Ctrl+L redraw · Ctrl+C quit";

/// The most nicks a Tab asks the server for, in a big room.
const COMPLETION_CANDIDATES: u32 = 20;

/// How long a quit waits for messages on their way to be acknowledged;
/// what is still unacknowledged stays in the outbox for next time.
const LINGER: Duration = Duration::from_secs(2);

/// How the screen looks, beyond the state.
#[derive(Debug, Clone)]
pub struct Look {
    /// The server, as shown in the status bar.
    pub server: String,
    pub show_members: bool,
    pub palette: Palette,
}

/// Whether the terminal is in the full-screen client's modes.
static SET_UP: AtomicBool = AtomicBool::new(false);

/// Puts the terminal back as it was: cooked mode, the main screen, no
/// mouse capture, a visible cursor. Only the first call does anything:
/// leaving the alternate screen twice would move the cursor back up over
/// what was printed in between (a panic's message).
fn restore() {
    if !SET_UP.swap(false, Ordering::SeqCst) {
        return;
    }
    let _ = disable_raw_mode();
    let mut out = std::io::stdout();
    let _ = crossterm::execute!(
        out,
        DisableBracketedPaste,
        DisableMouseCapture,
        LeaveAlternateScreen,
        crossterm::cursor::Show
    );
    let _ = out.flush();
}

/// Restores the terminal when dropped, so every way out of [`run`] does.
struct Restore;

impl Drop for Restore {
    fn drop(&mut self) {
        restore();
    }
}

/// Runs the full-screen client until the user quits. Returns the exit code.
/// `problem` says why there is no durable outbox, if there is none.
pub async fn run(
    mut options: engine::Options,
    look: Look,
    problem: Option<String>,
) -> anyhow::Result<ExitCode> {
    options.first_failure_fatal = false;
    options.linger = LINGER;
    let outbox = options.outbox.as_ref().map(|outbox| outbox.path().display().to_string());
    // A panic prints its message after the terminal is back to normal.
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        restore();
        previous(info);
    }));
    enable_raw_mode().context("switching the terminal to raw mode")?;
    SET_UP.store(true, Ordering::SeqCst);
    let _restore = Restore;
    crossterm::execute!(
        std::io::stdout(),
        EnterAlternateScreen,
        EnableMouseCapture,
        EnableBracketedPaste
    )
    .context("setting up the terminal")?;
    let mut terminal = Terminal::new(CrosstermBackend::new(std::io::stdout()))?;
    terminal.clear()?;

    let rooms: Vec<String> = options.rooms.iter().map(|(room, _)| room.clone()).collect();
    // The nick asked for, until the server says which one it is.
    let state = State { me: options.nick.clone(), ..State::default() };
    let (commands, mut events) = engine::spawn(options);
    let mut app = App {
        state,
        editor: Editor::default(),
        look,
        commands,
        link: Link::Connecting,
        quitting: false,
        rows: terminal.size().map(|size| size.height).unwrap_or(24),
        cols: terminal.size().map(|size| size.width).unwrap_or(80),
        told_read: None,
        completing: None,
    };
    match (outbox, problem) {
        (Some(path), _) => app.state.status_notice(&format!("outbox: {path}")),
        (None, why) => app.state.error(&format!(
            "no durable outbox ({}): messages typed offline are kept in memory only",
            why.as_deref().unwrap_or("unknown reason")
        )),
    }
    app.state.open_rooms(&rooms);
    let mut keys = EventStream::new();
    // The status bar counts down to the next reconnect.
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut terminate = signal(SignalKind::terminate())?;
    let mut hangup = signal(SignalKind::hangup())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    loop {
        app.state.connection = match &app.link {
            Link::Connecting => Connection::Connecting,
            Link::Connected => Connection::Connected,
            Link::Waiting { until } => Connection::Reconnecting {
                in_secs: until.saturating_duration_since(Instant::now()).as_secs_f64().ceil()
                    as u64,
            },
        };
        app.tell_read();
        draw(&mut terminal, &app)?;
        tokio::select! {
            key = keys.next() => match key {
                Some(Ok(event)) => app.on_terminal(event, &mut terminal)?,
                Some(Err(err)) => return Err(err).context("reading the terminal"),
                None => return Ok(ExitCode::SUCCESS),
            },
            event = events.recv() => {
                let mut next = event;
                // Take everything that is ready, then draw once.
                loop {
                    match next {
                        Some(Event::Done { .. }) | None => return Ok(ExitCode::SUCCESS),
                        Some(Event::Failed(failure)) => return Err(failure.into()),
                        Some(event) => app.on_event(event),
                    }
                    match events.try_recv() {
                        Ok(event) => next = Some(event),
                        Err(_) => break,
                    }
                }
            }
            _ = tick.tick() => {}
            // A signal quits like Ctrl+C: the session ends cleanly (its
            // nick is free at once), a second one ends the client at once;
            // the outbox keeps what was not acknowledged either way.
            _ = terminate.recv() => app.quit(),
            _ = hangup.recv() => app.quit(),
            _ = interrupt.recv() => app.quit(),
        }
    }
}

fn draw(terminal: &mut Terminal<CrosstermBackend<Stdout>>, app: &App) -> anyhow::Result<()> {
    let chrome = Chrome {
        server: &app.look.server,
        show_members: app.look.show_members,
        palette: &app.look.palette,
        local_time: true,
    };
    terminal.draw(|frame| view::draw(frame, &app.state, &app.editor, chrome))?;
    Ok(())
}

struct App {
    state: State,
    editor: Editor,
    look: Look,
    commands: UnboundedSender<Command>,
    link: Link,
    quitting: bool,
    /// The terminal's height, for paging.
    rows: u16,
    cols: u16,
    /// The last `read` sent.
    told_read: Option<chat_protocol::ClientFrame>,
    /// The room and word a Tab asked the server to complete.
    completing: Option<(String, String)>,
}

impl App {
    fn send(&self, command: Command) {
        // The engine outlives the screen; if it is gone, the loop ends.
        let _ = self.commands.send(command);
    }

    /// The rows of messages on screen, for PgUp/PgDn.
    fn page(&self) -> usize {
        usize::from(self.rows.saturating_sub(2)).max(1)
    }

    fn quit(&mut self) {
        if self.quitting {
            // A second Ctrl+C does not wait for acknowledgements.
            restore();
            std::process::exit(0);
        }
        self.quitting = true;
        self.state.notice("quitting…");
        self.send(Command::Quit);
    }

    fn on_terminal(
        &mut self,
        event: TermEvent,
        terminal: &mut Terminal<CrosstermBackend<Stdout>>,
    ) -> anyhow::Result<()> {
        match event {
            TermEvent::Key(key) if key.kind != KeyEventKind::Release => {
                if key.code == KeyCode::Char('l') && key.modifiers.contains(KeyModifiers::CONTROL) {
                    terminal.clear()?;
                } else {
                    self.on_key(key);
                }
            }
            TermEvent::Paste(text) => self.editor.insert(&text),
            TermEvent::Mouse(mouse) => match mouse.kind {
                MouseEventKind::ScrollUp => self.scroll_up(3),
                MouseEventKind::ScrollDown => self.state.scroll_down(3),
                _ => {}
            },
            TermEvent::Resize(cols, rows) => (self.cols, self.rows) = (cols, rows),
            _ => {}
        }
        Ok(())
    }

    fn scroll_up(&mut self, lines: usize) {
        // Rows as the screen wraps them, so a view that fits does not move.
        let width = view::message_width(&self.state, self.look.show_members, self.cols);
        let rows = |line: &state::Line| view::line_rows(line, width);
        if let Some(older) = self.state.scroll_up(lines, self.page(), rows) {
            self.send(Command::Send(older));
        }
    }

    /// Tab: completes from what the view knows; in a room too big for the
    /// client to know every member, a nick is asked of the server, and
    /// completed when the answer comes ([`App::on_event`]).
    fn complete(&mut self) {
        let view = self.state.current();
        let nicks = view.members.clone();
        let rooms = self.state.rooms();
        let big = view.kind == state::Kind::Room && view.member_count > view.members.len();
        let room = view.name.clone();
        // What the client holds of a big room is a part: the nick wanted
        // may be missing from it while others start the same way.
        let word = if big { self.editor.nick_word() } else { None };
        let Some(word) = word else {
            self.editor.complete(&COMMANDS, &rooms, &nicks);
            return;
        };
        let who = chat_protocol::ClientFrame::Who {
            room: room.clone(),
            after: None,
            prefix: Some(word.clone()),
            limit: Some(COMPLETION_CANDIDATES),
        };
        self.completing = Some((room, word));
        self.send(Command::SendAs(state::COMPLETE_MEMBERS.to_owned(), who));
    }

    /// F3/F4: scrolls the member list a page; in a big room reaching the
    /// end of what it has asks the server for the next page.
    fn scroll_members(&mut self, pages: isize) {
        if !self.look.show_members {
            self.look.show_members = true;
            return;
        }
        let rows = self.page().saturating_sub(1).max(1);
        let by = pages.saturating_mul(isize::try_from(rows).unwrap_or(isize::MAX));
        if let Some(next) = self.state.scroll_members(by, rows) {
            self.send(Command::SendAs(state::MORE_MEMBERS.to_owned(), next));
        }
    }

    /// A page of members came: the next one is asked for while the list
    /// does not yet reach past what it shows.
    fn members_came(&mut self) {
        let rows = self.page().saturating_sub(1).max(1);
        if let Some(next) = self.state.scroll_members(0, rows) {
            self.send(Command::SendAs(state::MORE_MEMBERS.to_owned(), next));
        }
    }

    fn on_key(&mut self, key: KeyEvent) {
        let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
        let alt = key.modifiers.contains(KeyModifiers::ALT);
        match key.code {
            KeyCode::Char('c') if ctrl => self.quit(),
            KeyCode::Char('d') if ctrl && self.editor.text().is_empty() => self.quit(),
            KeyCode::Char('n') if ctrl => self.state.next(),
            KeyCode::Char('p') if ctrl => self.state.previous(),
            KeyCode::Char('w') if ctrl => self.editor.delete_word(),
            KeyCode::Char('u') if ctrl => self.editor.delete_to_start(),
            KeyCode::Char('k') if ctrl => self.editor.delete_to_end(),
            KeyCode::Char('a') if ctrl => self.editor.home(),
            KeyCode::Char('e') if ctrl => self.editor.end(),
            KeyCode::Char(digit @ '0'..='9') if alt => {
                let at = digit.to_digit(10).unwrap_or(0) as usize;
                // Alt+1 is the first view, Alt+0 the tenth.
                self.state.select(if at == 0 { 9 } else { at - 1 });
            }
            KeyCode::Char(c) if !ctrl && !alt => self.editor.insert(&c.to_string()),
            KeyCode::Enter => {
                let line = self.editor.submit();
                self.submit(&line);
            }
            KeyCode::Backspace => self.editor.backspace(),
            KeyCode::Delete => self.editor.delete(),
            KeyCode::Left if ctrl => self.editor.word_left_move(),
            KeyCode::Right if ctrl => self.editor.word_right_move(),
            KeyCode::Left => self.editor.left(),
            KeyCode::Right => self.editor.right(),
            KeyCode::Home => self.editor.home(),
            KeyCode::End => self.editor.end(),
            KeyCode::Up => self.editor.history_up(),
            KeyCode::Down => self.editor.history_down(),
            KeyCode::PageUp => self.scroll_up(self.page().saturating_sub(1).max(1)),
            KeyCode::Esc => self.state.scroll_down(usize::MAX),
            KeyCode::PageDown => self.state.scroll_down(self.page().saturating_sub(1).max(1)),
            KeyCode::Tab => self.complete(),
            KeyCode::F(2) => self.look.show_members = !self.look.show_members,
            KeyCode::F(3) => self.scroll_members(-1),
            KeyCode::F(4) => self.scroll_members(1),
            _ => {}
        }
    }

    /// A line entered: a command of the full-screen client's own, a direct
    /// message in a conversation view, or what line mode would make of it.
    fn submit(&mut self, line: &str) {
        // What completion left at the end is not part of the message.
        let line = line.trim_end();
        let command = line.split_whitespace().next().unwrap_or_default().to_lowercase();
        match command.as_str() {
            "/help" => {
                let commands: Vec<(&str, &str)> =
                    input::COMMANDS.iter().chain(EXTRA_HELP).copied().collect();
                return self.state.help(&commands, KEYS);
            }
            "/clear" => return self.state.clear(),
            "/edit" | "/delete" => return self.change(&command, line),
            // For the test that a panic leaves the terminal usable; debug
            // builds only.
            #[cfg(debug_assertions)]
            "/debug-panic" => panic!("/debug-panic typed"),
            "/members" => {
                self.look.show_members = !self.look.show_members;
                return;
            }
            "/close" => {
                if !self.state.close_direct() {
                    match self.state.current_room() {
                        Some(room) => self.send(Command::Send(chat_protocol::ClientFrame::Leave {
                            room: room.to_owned(),
                        })),
                        None => self.state.error("nothing to close here"),
                    }
                }
                return;
            }
            "/quote" => {
                let raw = line.trim_start().trim_start_matches("/quote").trim_start();
                match crate::line::raw_frame(true, raw) {
                    Some(Ok(command)) => self.send(command),
                    Some(Err(why)) => self.state.error(&why),
                    None => self.state.error("usage: /quote {\"type\": ...}"),
                }
                return;
            }
            _ => {}
        }
        let current = self.state.current();
        if current.kind == Kind::Direct && !line.starts_with('/') && !line.trim().is_empty() {
            // Into the conversation shown, whatever the other is called now.
            let (to, conversation) = (current.name.clone(), current.conversation.clone());
            let text = line.strip_prefix("//").map_or(line.to_owned(), |rest| format!("/{rest}"));
            return self.send_message(chat_protocol::ClientFrame::Dm { to, conversation, text });
        }
        match input::parse(line, self.state.current_room()) {
            Input::Send(chat_protocol::ClientFrame::Join { room, .. })
                if self.state.show_room(&room) => {}
            Input::Send(frame) => self.send_message(frame),
            Input::Upload { room, path } => self.send(Command::Upload { room, path: path.into() }),
            Input::Download { id, to } => {
                self.send(Command::Download { id, to: to.map(Into::into) });
            }
            Input::Quit => self.quit(),
            Input::Help => {}
            Input::Nothing => {}
            Input::Invalid(why) => self.state.error(&why),
        }
    }

    /// What is shown is read: the session's other connections are told,
    /// once per newest message seen.
    fn tell_read(&mut self) {
        if self.link != Link::Connected {
            return;
        }
        let Some(read) = self.state.read_frame() else {
            return;
        };
        if self.told_read.as_ref() != Some(&read) {
            self.told_read = Some(read.clone());
            self.send(Command::Send(read));
        }
    }

    /// `/edit TEXT` or `/delete`: of my newest message in this room.
    fn change(&mut self, command: &str, line: &str) {
        let text = line.trim_start()[command.len()..].trim().to_owned();
        let me = self.state.me.clone().unwrap_or_default();
        let (Some(room), Some(seq)) =
            (self.state.current_room().map(str::to_owned), self.state.current().last_own(&me))
        else {
            return self.state.error("nothing of yours here to change");
        };
        let frame = match command {
            "/edit" if text.is_empty() => return self.state.error("usage: /edit NEW TEXT"),
            "/edit" => chat_protocol::ClientFrame::Edit { room, seq, text },
            _ => chat_protocol::ClientFrame::Delete { room, seq },
        };
        self.send(Command::Send(frame));
    }

    /// A message, or another frame: a message is shown as being sent where
    /// it goes (`Event::Sending`), also offline.
    fn send_message(&mut self, frame: chat_protocol::ClientFrame) {
        self.send(Command::Send(frame));
    }

    fn on_event(&mut self, event: Event) {
        match event {
            Event::Frame { frame: Some(frame), catch_up, .. } => {
                // The members a Tab asked for: completed if the word is
                // still the one asked about.
                if let ServerFrame::Members { id: Some(id), room, members, .. } = &*frame
                    && id == state::COMPLETE_MEMBERS
                    && let Some((asked_room, word)) = self.completing.take()
                    && asked_room == *room
                    && self.state.current_room() == Some(room)
                    && self.editor.nick_word().as_ref() == Some(&word)
                {
                    self.editor.complete(&[], &[], members);
                }
                // A reconnect's history pages come again as `Missed`.
                if !(catch_up && matches!(*frame, ServerFrame::History { .. })) {
                    self.state.on_frame(&frame);
                }
                if let ServerFrame::Members { id: Some(id), .. } = &*frame
                    && id == state::MORE_MEMBERS
                {
                    self.members_came();
                }
            }
            Event::Frame { frame: None, .. } => {}
            Event::Missed { room, messages, gap } => {
                if let Some(gap) = gap {
                    self.state.room_notice(&room, &render::gap(&room, gap));
                }
                for message in messages {
                    self.state.on_frame(&ServerFrame::Message(message));
                }
            }
            Event::Resumed(notice) => self.state.notice(&notice),
            Event::Link(link) => {
                if link == Link::Connected {
                    self.state.reconnected();
                    // The rooms there are, for Tab after /join.
                    let rooms = chat_protocol::ClientFrame::Rooms {};
                    self.send(Command::SendAs(state::QUIET_ROOMS.to_owned(), rooms));
                }
                self.link = link;
            }
            Event::Queued(queued) => self.state.queued = queued,
            Event::Sending { id, frame } => self.state.sending(&id, &frame),
            Event::Sent { id, refused } => self.state.sent(&id, refused),
            Event::Notice(notice) => self.state.status_notice(&notice),
            Event::Info(info) => self.state.notice(&info),
            Event::Problem(why) => self.state.error(&why),
            Event::Done { .. } | Event::Failed(_) => {}
        }
    }
}

/// The full-screen client's own commands, for `/help`.
const EXTRA_HELP: &[(&str, &str)] = &[
    ("/part [ROOM]", "same as /leave"),
    ("/close", "close this conversation, or leave this room"),
    ("/clear", "empty this view (PgUp brings history back)"),
    ("/members", "show or hide the member list"),
    ("/quote JSON", "send a raw protocol frame"),
    ("/edit TEXT", "change your newest message here to TEXT (for a while after sending)"),
    ("/delete", "delete your newest message here"),
];
