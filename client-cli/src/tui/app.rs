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
use crate::docs::{DocCommand, DocEvent, DocKey};
use crate::engine::{self, Command, Event, Link};
use crate::input::{self, Input};
use crate::render;

/// Commands offered by Tab.
const COMMANDS: [&str; 21] = [
    "/doc",
    "/versions",
    "/restore",
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

/// Puts the terminal in the full-screen client's modes: raw, the alternate
/// screen, mouse and bracketed paste.
fn set_up() -> anyhow::Result<()> {
    enable_raw_mode().context("switching the terminal to raw mode")?;
    SET_UP.store(true, Ordering::SeqCst);
    crossterm::execute!(
        std::io::stdout(),
        EnterAlternateScreen,
        EnableMouseCapture,
        EnableBracketedPaste
    )
    .context("setting up the terminal")?;
    Ok(())
}

/// A document being edited in `$EDITOR`: its text, in a file of its own.
#[derive(Debug)]
struct Editing {
    key: DocKey,
    path: std::path::PathBuf,
    /// What the file held when the editor started.
    base: String,
}

impl Editing {
    /// Writes the base text to a new private file.
    fn new(key: DocKey, base: String) -> anyhow::Result<Self> {
        use std::os::unix::fs::OpenOptionsExt as _;
        let (room, doc) = &key;
        let name =
            format!("chat-{room}-{doc}-{}-{:08x}.md", std::process::id(), rand::random::<u32>());
        let path = std::env::temp_dir().join(name);
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .with_context(|| format!("creating {}", path.display()))?;
        file.write_all(base.as_bytes()).with_context(|| format!("writing {}", path.display()))?;
        Ok(Self { key, path, base })
    }

    /// Runs `$EDITOR` (or `$VISUAL`, or vi) on the file, through the shell
    /// as git does, so the variable may carry arguments.
    fn launch(&self) -> anyhow::Result<tokio::process::Child> {
        let editor = std::env::var("VISUAL")
            .ok()
            .or_else(|| std::env::var("EDITOR").ok())
            .filter(|editor| !editor.trim().is_empty())
            .unwrap_or_else(|| "vi".to_owned());
        tokio::process::Command::new("sh")
            .arg("-c")
            .arg(format!("{editor} \"$1\""))
            .arg("sh")
            .arg(&self.path)
            .spawn()
            .with_context(|| format!("running {editor}"))
    }
}

impl Drop for Editing {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
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
    set_up()?;
    let _restore = Restore;
    let mut terminal = Terminal::new(CrosstermBackend::new(std::io::stdout()))?;
    terminal.clear()?;
    let (server, transport) = (options.server.clone(), options.transport.clone());

    let rooms: Vec<String> = options.rooms.iter().map(|(room, _)| room.clone()).collect();
    // The nick asked for, until the server says which one it is.
    let state = State { me: options.nick.clone(), ..State::default() };
    let (commands, mut events) = engine::spawn(options);
    let (doc_events, mut doc_news) = tokio::sync::mpsc::unbounded_channel();
    let mut app = App {
        server,
        transport,
        docs: std::collections::BTreeMap::new(),
        doc_events,
        edit_next: None,
        creating: None,
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
    // No terminal events while $EDITOR has the terminal (they would be
    // its keys).
    let mut keys = Some(EventStream::new());
    let mut editing: Option<(tokio::process::Child, Editing)> = None;
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
        if let Some(session) = app.edit_next.take() {
            keys = None;
            restore();
            match session.launch() {
                Ok(child) => editing = Some((child, session)),
                Err(err) => {
                    set_up()?;
                    keys = Some(EventStream::new());
                    terminal.clear()?;
                    app.state.error(&format!("cannot run the editor: {err:#}"));
                }
            }
        }
        if editing.is_none() {
            draw(&mut terminal, &app)?;
        }
        tokio::select! {
            key = async { match &mut keys { Some(keys) => keys.next().await, None => std::future::pending().await } } => match key {
                Some(Ok(event)) => app.on_terminal(event, &mut terminal)?,
                Some(Err(err)) => return Err(err).context("reading the terminal"),
                None => return Ok(ExitCode::SUCCESS),
            },
            status = async { match &mut editing { Some((child, _)) => child.wait().await, None => std::future::pending().await } } => {
                set_up()?;
                keys = Some(EventStream::new());
                terminal.clear()?;
                if let Some((_, session)) = editing.take() {
                    app.edited(session, status);
                }
            }
            news = doc_news.recv() => {
                if let Some(news) = news {
                    app.on_doc(news);
                }
            }
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
    /// The server and how to reach it, for documents.
    server: String,
    transport: chat_transport::TransportConfig,
    /// The documents followed, by (room, name).
    docs: std::collections::BTreeMap<DocKey, UnboundedSender<DocCommand>>,
    doc_events: UnboundedSender<DocEvent>,
    /// A document's text to edit in `$EDITOR` next.
    edit_next: Option<Editing>,
    /// A document asked for by title, created for it: (room, title); it
    /// is opened once the server lists it.
    creating: Option<(String, String)>,
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
            "/doc" => return self.doc(line.trim_start()[command.len()..].trim()),
            "/versions" | "/restore" => {
                return self.versions(&command, line.trim_start()[command.len()..].trim());
            }
            "/edit" if self.edit_doc(line.trim_start()[command.len()..].trim()) => return,
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
                if let Some(key) = self.state.current_doc() {
                    // Dropping its sender ends the follower.
                    self.docs.remove(&key);
                }
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

    /// `/doc [NAME]`: a document of the current room in a view of its own,
    /// live. NAME is a document's name or title; none, the one edited
    /// last (or `notes`); a title no document has creates one.
    fn doc(&mut self, typed: &str) {
        let Some(room) = self.state.current_room().map(str::to_owned) else {
            return self.state.error("documents belong to rooms: /doc NAME in a room");
        };
        let name = match typed {
            "" => self.state.newest_doc(&room).unwrap_or_else(|| "notes".to_owned()),
            typed => match self.state.find_doc(&room, typed) {
                Some(name) => name,
                None if is_doc_name(typed) => typed.to_owned(),
                None => {
                    self.creating = Some((room.clone(), typed.to_owned()));
                    let title = typed.to_owned();
                    return self.send(Command::Send(chat_protocol::ClientFrame::DocCreate {
                        room,
                        title,
                    }));
                }
            },
        };
        self.open_doc(&room, &name);
    }

    /// `/versions` (a document's past versions) and `/restore N` (make it
    /// as it was at version N, as a new edit), in a document's view.
    fn versions(&mut self, command: &str, arg: &str) {
        let Some((room, doc)) = self.state.current_doc() else {
            return self.state.error("in a document's view (/doc NAME first)");
        };
        let frame = match (command, arg.parse::<u64>()) {
            ("/versions", _) => chat_protocol::ClientFrame::DocVersions { room, doc },
            (_, Ok(version)) => chat_protocol::ClientFrame::DocRestore { room, doc, version },
            (_, Err(_)) => return self.state.error("usage: /restore N (a number /versions lists)"),
        };
        self.send(Command::Send(frame));
    }

    /// Follows document `name` of `room` (if it is not yet) and shows it.
    fn open_doc(&mut self, room: &str, name: &str) {
        self.state.open_doc(room, name);
        let key = (room.to_owned(), name.to_owned());
        if self.docs.contains_key(&key) {
            return;
        }
        let Some(session) = self.state.session.clone() else {
            return self.state.doc_notice(
                room,
                name,
                "not connected yet: open it again once connected",
                true,
            );
        };
        match crate::docs::doc_url(&self.server, room, name, &session) {
            Ok(url) => {
                let events = self.doc_events.clone();
                let follower =
                    crate::docs::follow(url, self.transport.clone(), key.clone(), events);
                self.docs.insert(key, follower);
                self.state.doc_notice(room, name, "opening…", false);
            }
            Err(err) => self.state.doc_notice(room, name, &format!("{err:#}"), true),
        }
    }

    /// `/edit` in a document's view, or `/edit NAME` of a document of the
    /// room: its text in `$EDITOR`. Whether it was one (else `/edit TEXT`
    /// changes one's newest message).
    fn edit_doc(&mut self, typed: &str) -> bool {
        let key = match (self.state.current_doc(), typed) {
            (Some(key), "") => key,
            (_, "") => return false,
            (_, typed) => {
                let Some(room) = self.state.current_room().map(str::to_owned) else {
                    return false;
                };
                let Some(name) = self.state.find_doc(&room, typed) else {
                    return false;
                };
                self.open_doc(&room, &name);
                (room, name)
            }
        };
        match self.docs.get(&key) {
            Some(follower) => {
                let _ = follower.send(DocCommand::BeginEdit);
            }
            None => self.state.error("the document is not open"),
        }
        true
    }

    /// What a followed document says.
    fn on_doc(&mut self, news: DocEvent) {
        match news {
            DocEvent::Text { key: (room, doc), text } => self.state.doc_text(&room, &doc, &text),
            DocEvent::EditBase { key, text } => match Editing::new(key, text) {
                Ok(session) => self.edit_next = Some(session),
                Err(err) => self.state.error(&format!("{err:#}")),
            },
            DocEvent::Saved { key: (room, doc) } => {
                self.state.doc_notice(&room, &doc, "your edit is merged and saved", false);
            }
            DocEvent::Problem { key: (room, doc), why, fatal } => {
                if fatal {
                    self.docs.remove(&(room.clone(), doc.clone()));
                }
                self.state.doc_notice(&room, &doc, &why, fatal);
            }
        }
    }

    /// `$EDITOR` exited: what it left in the file becomes an edit of the
    /// text it was given (others' typing meanwhile is kept).
    fn edited(&mut self, session: Editing, status: std::io::Result<std::process::ExitStatus>) {
        let (room, doc) = session.key.clone();
        let written = match status {
            Ok(status) if status.success() => std::fs::read_to_string(&session.path),
            Ok(status) => {
                let why = format!("the editor exited with {status}: nothing changed");
                return self.state.doc_notice(&room, &doc, &why, true);
            }
            Err(err) => {
                let why = format!("the editor failed ({err}): nothing changed");
                return self.state.doc_notice(&room, &doc, &why, true);
            }
        };
        match written {
            Ok(text) if text == session.base => {
                self.state.doc_notice(&room, &doc, "no change", false);
            }
            Ok(text) => match self.docs.get(&session.key) {
                Some(follower) => {
                    let _ = follower.send(DocCommand::Commit(text));
                }
                None => {
                    self.state.doc_notice(&room, &doc, "the document was closed meanwhile", true)
                }
            },
            Err(err) => {
                let why = format!("cannot read what the editor wrote ({err}): nothing changed");
                self.state.doc_notice(&room, &doc, &why, true);
            }
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
                // The document `/doc TITLE` created: opened.
                if let ServerFrame::Doc { room, action, doc, by, .. } = &*frame
                    && action == "created"
                    && Some(by) == self.state.me.as_ref()
                    && self.creating.take_if(|(r, t)| r == room && *t == doc.title).is_some()
                {
                    self.open_doc(room, &doc.name);
                }
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
    (
        "/doc [NAME]",
        "a shared document of this room, live in a view of its own (NAME: its name or title; a new title creates one)",
    ),
    (
        "/edit [NAME]",
        "in a document's view (or of a document NAME): edit it in $EDITOR; what others type meanwhile is kept",
    ),
];

/// Whether `typed` can name a document (room-name rules).
fn is_doc_name(typed: &str) -> bool {
    !typed.is_empty()
        && typed.len() <= 64
        && typed
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}
