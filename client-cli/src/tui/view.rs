//! Drawing the full-screen client with ratatui: the room list on the left,
//! the current view's messages in the middle, its members on the right
//! (toggled), the input line and the status bar at the bottom.
//!
//! Lines are wrapped here, by display width (a CJK character or an emoji
//! takes two columns), at word boundaries with a hanging indent under the
//! text (not under the time), one row per line of a multi-line message, so
//! scrolling counts the rows actually shown.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Position, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Paragraph};
use unicode_width::{UnicodeWidthChar, UnicodeWidthStr};

use super::editor::Editor;
use super::state::{Connection, Kind, Line as ViewLine, State, View};

/// Colours nicks are drawn in by default, picked by a stable hash of the
/// nick.
const NICK_COLOURS: [Color; 8] = [
    Color::Cyan,
    Color::Green,
    Color::Yellow,
    Color::Magenta,
    Color::LightBlue,
    Color::LightRed,
    Color::LightGreen,
    Color::LightMagenta,
];

/// The width of the room list and of the member list.
const SIDE: u16 = 18;

/// The member list is shown on screens at least this wide.
const MEMBERS_FROM: u16 = 80;

/// The colours the user can choose (`[colors]` in the config file).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Palette {
    /// Nicks are drawn in one of these, always the same for a nick.
    pub nicks: Vec<Color>,
    /// A view with a mention of me, in the room list.
    pub mention: Color,
    /// The status bar while connected (red while not).
    pub status: Color,
}

impl Default for Palette {
    fn default() -> Self {
        Self { nicks: NICK_COLOURS.to_vec(), mention: Color::LightRed, status: Color::Blue }
    }
}

impl Palette {
    /// The colour a nick is drawn in wherever it is not among others (see
    /// [`Palette::assign`]).
    pub fn nick(&self, nick: &str) -> Color {
        self.nicks.get(self.preferred(nick)).copied().unwrap_or(Color::Reset)
    }

    /// The palette index a nick prefers: FNV-1a (stable across runs and
    /// platforms, unlike the std hasher), mixed (murmur3's finalizer) so
    /// that every bit of the nick moves the low bits the index is taken
    /// from.
    fn preferred(&self, nick: &str) -> usize {
        let hash = nick
            .to_lowercase()
            .bytes()
            .fold(0x811c_9dc5_u32, |hash, byte| (hash ^ u32::from(byte)).wrapping_mul(0x0100_0193));
        let mut mixed = hash ^ (hash >> 16);
        mixed = mixed.wrapping_mul(0x85eb_ca6b);
        mixed ^= mixed >> 13;
        mixed = mixed.wrapping_mul(0xc2b2_ae35);
        mixed ^= mixed >> 16;
        let count = u32::try_from(self.nicks.len()).unwrap_or(u32::MAX).max(1);
        (mixed % count) as usize
    }

    /// Colours for the nicks of one view: each its preferred colour unless
    /// a nick before it (in a stable order) took it, then the next free
    /// one, so that a room of a few people never shows two in one colour
    /// while the palette has colours left.
    pub fn assign<'a>(&self, nicks: impl IntoIterator<Item = &'a str>) -> Colours {
        let mut sorted: Vec<String> = nicks.into_iter().map(str::to_lowercase).collect();
        sorted.sort();
        sorted.dedup();
        let count = self.nicks.len().max(1);
        let mut taken = vec![false; count];
        let mut colours = Colours::default();
        for (at, nick) in sorted.into_iter().enumerate() {
            let mut index = self.preferred(&nick);
            if at < count {
                while taken[index] {
                    index = (index + 1) % count;
                }
            }
            taken[index] = true;
            colours.0.insert(nick, self.nicks.get(index).copied().unwrap_or(Color::Reset));
        }
        colours
    }
}

/// The colours of a view's nicks (see [`Palette::assign`]).
#[derive(Debug, Clone, Default)]
pub struct Colours(std::collections::BTreeMap<String, Color>);

impl Colours {
    fn of(&self, nick: &str, palette: &Palette) -> Color {
        self.0.get(&nick.to_lowercase()).copied().unwrap_or_else(|| palette.nick(nick))
    }
}

/// The nicks a view shows: its members and whoever wrote a line in it.
fn view_nicks(view: &View) -> impl Iterator<Item = &str> {
    let authors = view.lines.iter().filter_map(|line| match line {
        ViewLine::Message { from, .. } => Some(from.as_str()),
        _ => None,
    });
    view.members.iter().map(String::as_str).chain(authors)
}

/// What else the screen shows beyond the state.
#[derive(Debug, Clone, Copy)]
pub struct Chrome<'a> {
    pub server: &'a str,
    pub show_members: bool,
    pub palette: &'a Palette,
    /// Times in the local time zone (else UTC).
    pub local_time: bool,
}

/// Draws everything.
pub fn draw(frame: &mut Frame<'_>, state: &State, editor: &Editor, chrome: Chrome<'_>) {
    let [main, input, status] =
        Layout::vertical([Constraint::Min(1), Constraint::Length(1), Constraint::Length(1)])
            .areas(frame.area());
    let [rooms, messages, people] =
        Layout::horizontal(columns(state, chrome.show_members, main.width)).areas(main);
    draw_rooms(frame, state, chrome.palette, rooms);
    draw_messages(frame, state.current(), chrome, messages);
    if people.width > 0 {
        draw_members(frame, state.current(), chrome.palette, people);
    }
    draw_input(frame, editor, state, input);
    draw_status(frame, state, chrome, status);
}

fn view_label(view: &View) -> String {
    match view.kind {
        Kind::Status => view.name.clone(),
        Kind::Room => format!("#{}", view.name),
        Kind::Direct => format!("@{}", view.name),
        Kind::Doc => format!("#{}", view.name),
    }
}

fn draw_rooms(frame: &mut Frame<'_>, state: &State, palette: &Palette, area: Rect) {
    let lines: Vec<Line<'_>> = state
        .views
        .iter()
        .enumerate()
        .map(|(at, view)| {
            let mut text = view_label(view);
            if view.unread > 0 {
                text.push_str(&format!(" ({})", view.unread));
            }
            let mut style = Style::default();
            if view.mentioned {
                style = style.fg(palette.mention).add_modifier(Modifier::BOLD);
            } else if view.unread > 0 {
                style = style.add_modifier(Modifier::BOLD);
            }
            if at == state.current {
                style = style.add_modifier(Modifier::REVERSED);
            }
            Line::from(Span::styled(text, style))
        })
        .collect();
    let block = Block::default().borders(Borders::RIGHT);
    frame.render_widget(Paragraph::new(lines).block(block), area);
}

fn draw_members(frame: &mut Frame<'_>, view: &View, palette: &Palette, area: Rect) {
    let colours = palette.assign(view_nicks(view));
    // How many, then the list from where it is scrolled to; in a big room
    // the rest is fetched as the list scrolls (F3/F4).
    let header = Line::from(Span::styled(
        members_header(view.member_count.max(view.members.len())),
        Style::default().add_modifier(ratatui::style::Modifier::BOLD),
    ));
    let shown = usize::from(area.height.saturating_sub(1));
    let start = view.member_scroll.min(view.members.len());
    let unlisted = view.member_count.saturating_sub(view.members.len());
    let mut rows: Vec<Line<'_>> = view
        .members
        .iter()
        .skip(start)
        .take(shown)
        .map(|nick| {
            // Away: dimmed, until the session ends or comes back.
            let style = Style::default().fg(colours.of(nick, palette));
            let style = if view.away.contains(nick) {
                style.add_modifier(ratatui::style::Modifier::DIM)
            } else {
                style
            };
            Line::from(Span::styled(nick.clone(), style))
        })
        .collect();
    let mut below = view.members.len().saturating_sub(start + rows.len()) + unlisted;
    if below > 0 && shown > 0 {
        // The last row says what is further down (in place of a member
        // when the list is full: that one is further down then).
        if rows.len() == shown {
            rows.pop();
            below += 1;
        }
        let more =
            if view.members_loading { "loading…".to_owned() } else { format!("+{below} (F4)") };
        let dim = Style::default().add_modifier(ratatui::style::Modifier::DIM);
        rows.push(Line::from(Span::styled(more, dim)));
    }
    let lines: Vec<Line<'_>> = std::iter::once(header).chain(rows).collect();
    let block = Block::default().borders(Borders::LEFT);
    frame.render_widget(Paragraph::new(lines).block(block), area);
}

/// "1 member", "20 000 members": the member list's first line.
fn members_header(count: usize) -> String {
    let digits = count.to_string();
    let mut grouped = String::new();
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            grouped.push(' ');
        }
        grouped.push(digit);
    }
    if count == 1 { "1 member".to_owned() } else { format!("{grouped} members") }
}

/// `HH:MM` of a timestamp in unix milliseconds, in the local time zone
/// (from `TZ` or `/etc/localtime`) or in UTC.
fn clock(ts: u64, local: bool) -> String {
    let Some(utc) = i64::try_from(ts).ok().and_then(chrono::DateTime::from_timestamp_millis) else {
        return "--:--".to_owned();
    };
    if local {
        utc.with_timezone(&chrono::Local).format("%H:%M").to_string()
    } else {
        utc.format("%H:%M").to_string()
    }
}

/// The widths of the room list, the messages and the member list.
fn columns(state: &State, show_members: bool, width: u16) -> [Constraint; 3] {
    let members = if show_members && state.current().kind == Kind::Room && width >= MEMBERS_FROM {
        SIDE
    } else {
        0
    };
    [
        // Narrow screens give the messages more room.
        Constraint::Length(SIDE.min(width / 5).max(6.min(width / 3))),
        Constraint::Min(1),
        Constraint::Length(members.min(width / 3)),
    ]
}

/// How wide the messages are on a screen `cols` wide.
pub fn message_width(state: &State, show_members: bool, cols: u16) -> usize {
    let area = Rect::new(0, 0, cols, 1);
    let [_, messages, _] = Layout::horizontal(columns(state, show_members, cols)).areas(area);
    usize::from(messages.width)
}

/// How many rows a view line takes `width` columns wide.
pub fn line_rows(line: &ViewLine, width: usize) -> usize {
    let palette = Palette::default();
    let chrome = Chrome { server: "", show_members: false, palette: &palette, local_time: false };
    layout(line, chrome, &Colours::default(), width).len()
}

/// A view line as rows of at most `width` columns: a message's time and
/// nick, then its text wrapped at word boundaries, every row after the
/// first (and every line of a multi-line message) indented under the text.
fn layout(
    line: &ViewLine,
    chrome: Chrome<'_>,
    colours: &Colours,
    width: usize,
) -> Vec<Line<'static>> {
    let clean = crate::render::clean;
    let quiet = Style::default().fg(Color::DarkGray);
    let (prefix, text, style) = match line {
        ViewLine::Message { ts, from, text, action, .. } => {
            let nick = Style::default().fg(colours.of(from, chrome.palette));
            let who = match action {
                true => format!("* {} ", clean(from)),
                false => format!("<{}> ", clean(from)),
            };
            let time = Span::styled(format!("{} ", clock(*ts, chrome.local_time)), quiet);
            (vec![time, Span::styled(who, nick)], text.as_str(), Style::default())
        }
        ViewLine::Notice(text) => (vec![Span::styled("-- ", quiet)], text.as_str(), quiet),
        ViewLine::Pending { from, text, action, refused, .. } => {
            // Greyed with a clock while on its way; marked if refused.
            let (mark, style) = match refused {
                true => ("✗ not sent ", Style::default().fg(Color::Red)),
                false => ("🕓 ", quiet),
            };
            let who = match action {
                true => format!("* {} ", clean(from)),
                false => format!("<{}> ", clean(from)),
            };
            (vec![Span::styled(format!("{mark}{who}"), style)], text.as_str(), style)
        }
        ViewLine::Help { usage, text } => {
            (vec![Span::styled(format!("--   {usage}  "), quiet)], text.as_str(), quiet)
        }
        ViewLine::Error(text) => {
            let red = Style::default().fg(Color::Red);
            (vec![Span::styled("!! ", red)], text.as_str(), red)
        }
        ViewLine::Text(text) => (Vec::new(), text.as_str(), Style::default()),
    };
    let width = width.max(2);
    let prefix_width: usize = prefix.iter().map(|span| span.content.width()).sum();
    // The hanging indent, unless the screen is too narrow for one.
    let indent = if prefix_width * 2 <= width { prefix_width } else { 0 };
    let mut rows = Rows { rows: Vec::new(), row: prefix, used: prefix_width, width, indent };
    if rows.used >= width {
        rows.break_row();
    }
    for (at, paragraph) in text.split('\n').enumerate() {
        if at > 0 {
            rows.break_row();
        }
        // Each word with the spaces after it; a word wider than a row is
        // cut between characters.
        for word in clean(paragraph.trim_end_matches('\r')).split_inclusive(' ') {
            let fits = word.trim_end().width();
            if rows.used + fits > width && rows.used > rows.indent {
                rows.break_row();
            }
            rows.push(word, style);
        }
    }
    rows.finish()
}

/// Rows being filled by [`layout`].
struct Rows {
    rows: Vec<Line<'static>>,
    row: Vec<Span<'static>>,
    used: usize,
    width: usize,
    indent: usize,
}

impl Rows {
    fn break_row(&mut self) {
        self.rows.push(Line::from(std::mem::take(&mut self.row)));
        self.row.push(Span::raw(" ".repeat(self.indent)));
        self.used = self.indent;
    }

    /// Adds text, cutting it between characters where a row ends; spaces
    /// at the end of a row are dropped.
    fn push(&mut self, text: &str, style: Style) {
        let mut piece = String::new();
        for c in text.chars() {
            let w = c.width().unwrap_or(0);
            if self.used + w > self.width {
                if c == ' ' {
                    continue;
                }
                if !piece.is_empty() {
                    self.row.push(Span::styled(std::mem::take(&mut piece), style));
                }
                self.break_row();
            }
            piece.push(c);
            self.used += w;
        }
        if !piece.is_empty() {
            self.row.push(Span::styled(piece, style));
        }
    }

    fn finish(mut self) -> Vec<Line<'static>> {
        self.rows.push(Line::from(self.row));
        self.rows
    }
}

fn draw_messages(frame: &mut Frame<'_>, view: &View, chrome: Chrome<'_>, area: Rect) {
    let width = usize::from(area.width);
    let mut height = usize::from(area.height);
    let quiet = Style::default().fg(Color::DarkGray);
    // Rows of the view's own above and below the messages.
    let loading =
        view.loading.then(|| Line::from(Span::styled("-- loading older messages…", quiet)));
    let below = (view.scroll > 0).then(|| {
        let text = format!("-- {} newer below (PgDn, Esc for the newest)", view.scroll);
        Line::from(Span::styled(text, quiet.add_modifier(Modifier::REVERSED)))
    });
    height = height.saturating_sub(usize::from(loading.is_some()) + usize::from(below.is_some()));
    // The lines above the scroll position, wrapped from the bottom up
    // until the screen is full.
    let shown_lines = view.lines.len().saturating_sub(view.scroll);
    let colours = chrome.palette.assign(view_nicks(view));
    let mut rows: Vec<Line<'static>> = Vec::new();
    for line in view.lines.iter().take(shown_lines).rev() {
        let mut wrapped = layout(line, chrome, &colours, width);
        wrapped.append(&mut rows);
        rows = wrapped;
        if rows.len() >= height {
            break;
        }
    }
    let start = rows.len().saturating_sub(height);
    let mut shown: Vec<Line<'static>> = loading.into_iter().collect();
    shown.extend(rows.get(start..).unwrap_or_default().iter().cloned());
    if let Some(below) = below {
        // At the bottom of the pane, however few messages are above it.
        let blank = usize::from(area.height).saturating_sub(shown.len() + 1);
        shown.extend(std::iter::repeat_n(Line::default(), blank));
        shown.push(below);
    }
    frame.render_widget(Paragraph::new(shown), area);
}

fn draw_input(frame: &mut Frame<'_>, editor: &Editor, state: &State, area: Rect) {
    let prompt = match state.current().kind {
        Kind::Status => "> ".to_owned(),
        _ => format!("{} > ", view_label(state.current())),
    };
    let text = editor.text();
    let before: String = text.chars().take(editor.cursor()).collect();
    let prompt_width = prompt.width();
    let room = usize::from(area.width).saturating_sub(prompt_width + 1).max(1);
    // Scroll the line sideways so the cursor stays visible.
    let mut skip = 0;
    while before.chars().skip(skip).collect::<String>().width() > room {
        skip += 1;
    }
    let visible: String = text.chars().skip(skip).collect();
    let cursor_x = prompt_width + before.chars().skip(skip).collect::<String>().width();
    let line = Line::from(vec![
        Span::styled(prompt, Style::default().fg(Color::DarkGray)),
        Span::raw(visible),
    ]);
    frame.render_widget(Paragraph::new(line), area);
    let x = area
        .x
        .saturating_add(u16::try_from(cursor_x).unwrap_or(u16::MAX))
        .min(area.right().saturating_sub(1));
    frame.set_cursor_position(Position { x, y: area.y });
}

fn draw_status(frame: &mut Frame<'_>, state: &State, chrome: Chrome<'_>, area: Rect) {
    let connection = match &state.connection {
        Connection::Connecting => "connecting…".to_owned(),
        Connection::Connected => "connected".to_owned(),
        Connection::Reconnecting { in_secs } => format!("offline, reconnecting in {in_secs}s"),
    };
    let connection = match state.queued {
        0 => connection,
        queued => format!("{connection} · {queued} queued"),
    };
    let nick = state.me.as_deref().unwrap_or("-");
    // The connection first: on a narrow screen the server is cut, not it.
    let text = format!(" {connection} · {nick} · {}", chrome.server);
    let style = match state.connection {
        Connection::Connected => Style::default().bg(chrome.palette.status).fg(Color::White),
        _ => Style::default().bg(Color::Red).fg(Color::White),
    };
    frame.render_widget(Paragraph::new(Line::from(text)).style(style), area);
}

#[cfg(test)]
mod tests {
    use chat_protocol::{Message, Resume, ServerFrame};
    use ratatui::Terminal;
    use ratatui::backend::TestBackend;

    use super::*;

    fn state() -> State {
        let mut state = State {
            me: Some("alice".into()),
            connection: Connection::Connected,
            ..State::default()
        };
        let message = |seq: u64, from: &str, text: &str| Message {
            edit: None,
            delete: None,
            edited: false,
            deleted: false,
            room: "lobby".into(),
            seq,
            ts: 12 * 3_600_000 + seq * 60_000,
            from: from.into(),
            text: text.into(),
            id: None,
            action: false,
            attachment: None,
        };
        state.on_frame(&ServerFrame::Joined {
            member_count: 1,
            topic: None,
            id: None,
            room: "lobby".into(),
            members: vec!["alice".into(), "bob".into()],
            away: Vec::new(),
            history: vec![message(1, "bob", "hi"), message(2, "alice", "漢字 and 🙂 fit")],
            last_seq: 2,
            resume: Resume::Fresh,
            gap: None,
            docs: Vec::new(),
            docs_read_only: false,
        });
        state
    }

    fn screen(
        state: &State,
        editor: &Editor,
        width: u16,
        height: u16,
        members: bool,
    ) -> Vec<String> {
        let mut terminal =
            Terminal::new(TestBackend::new(width, height)).unwrap_or_else(|e| panic!("{e}"));
        let palette = Palette::default();
        let chrome = Chrome {
            server: "ws://host/ws",
            show_members: members,
            palette: &palette,
            local_time: false,
        };
        terminal.draw(|frame| draw(frame, state, editor, chrome)).unwrap_or_else(|e| panic!("{e}"));
        let buffer = terminal.backend().buffer().clone();
        (0..height)
            .map(|y| {
                let mut row = String::new();
                let mut x = 0;
                while x < width {
                    let cell = &buffer[(x, y)];
                    row.push_str(cell.symbol());
                    x += cell.symbol().width().max(1) as u16;
                }
                row.trim_end().to_owned()
            })
            .collect()
    }

    #[test]
    fn the_layout_shows_rooms_messages_members_input_and_status() {
        let state = state();
        let mut editor = Editor::default();
        editor.insert("typing");
        let rows = screen(&state, &editor, 80, 8, true);
        assert!(rows[0].starts_with("status"), "{rows:#?}");
        assert!(rows[1].starts_with("#lobby"), "{rows:#?}");
        assert!(rows.iter().any(|r| r.contains("12:01 <bob> hi")), "{rows:#?}");
        assert!(rows.iter().any(|r| r.contains("12:02 <alice> 漢字 and 🙂 fit")), "{rows:#?}");
        assert!(
            rows[0].ends_with("2 members")
                && rows[1].ends_with("alice")
                && rows[2].ends_with("bob"),
            "members on the right: {rows:#?}"
        );
        assert_eq!(rows[6], "#lobby > typing");
        assert_eq!(rows[7], " connected · alice · ws://host/ws");
    }

    #[test]
    fn a_big_rooms_member_list_counts_them_all_and_says_what_is_further_down() {
        let mut state = state();
        let page: Vec<String> = (0..200).map(|n| format!("fan{n:03}")).collect();
        state.on_frame(&ServerFrame::Joined {
            member_count: 20_000,
            topic: None,
            id: None,
            room: "big".into(),
            members: page,
            away: Vec::new(),
            history: Vec::new(),
            last_seq: 0,
            resume: Resume::Fresh,
            gap: None,
            docs: Vec::new(),
            docs_read_only: false,
        });
        let rows = screen(&state, &Editor::default(), 80, 8, true);
        assert!(rows[0].ends_with("20 000 members"), "{rows:#?}");
        assert!(rows[1].ends_with("fan000"), "{rows:#?}");
        assert!(rows[5].ends_with("+19996 (F4)"), "the last row: {rows:#?}");
        // Scrolling to the end of the page asks for the next one, once.
        let next = state.scroll_members(195, 5);
        assert_eq!(
            next,
            Some(chat_protocol::ClientFrame::Who {
                room: "big".into(),
                after: Some("fan199".into()),
                prefix: None,
                limit: None,
            })
        );
        assert_eq!(state.scroll_members(1, 5), None, "one page at a time");
        let rows = screen(&state, &Editor::default(), 80, 8, true);
        assert!(rows[5].ends_with("loading…"), "{rows:#?}");
        state.on_frame(&ServerFrame::Members {
            id: Some(crate::tui::state::MORE_MEMBERS.into()),
            room: "big".into(),
            members: (200..400).map(|n| format!("fan{n:03}")).collect(),
            away: Vec::new(),
            count: 20_000,
            more: true,
        });
        let rows = screen(&state, &Editor::default(), 80, 8, true);
        assert!(rows[1].ends_with("fan196") && rows[5].ends_with("+19800 (F4)"), "{rows:#?}");
        assert_eq!(state.current().members.len(), 400);
        assert!(
            !state.current().lines.iter().any(|line| format!("{line:?}").contains("fan2")),
            "a page for the list is not shown as a message"
        );
    }

    #[test]
    fn long_lines_wrap_by_display_width_and_scrolling_shows_earlier_rows() {
        let mut state = state();
        state.on_frame(&ServerFrame::Message(Message {
            edit: None,
            delete: None,
            edited: false,
            deleted: false,
            room: "lobby".into(),
            seq: 3,
            ts: 13 * 3_600_000,
            from: "bob".into(),
            text: "語".repeat(30),
            id: None,
            action: false,
            attachment: None,
        }));
        let rows = screen(&state, &Editor::default(), 60, 6, false);
        // 60 columns less the room list (18): 42 for messages; the message
        // is 12 columns of prefix and 60 of wide characters.
        let wrapped: Vec<&String> = rows.iter().filter(|r| r.contains('語')).collect();
        assert_eq!(wrapped.len(), 2, "{rows:#?}");
        assert!(rows.iter().all(|r| r.width() <= 60));
        let width = message_width(&state, false, 60);
        state.scroll_up(2, 4, |line| line_rows(line, width));
        let scrolled = screen(&state, &Editor::default(), 60, 6, false);
        assert!(scrolled.iter().any(|r| r.contains("<bob> hi")), "{scrolled:#?}");
        assert!(!scrolled.iter().any(|r| r.contains('語')), "{scrolled:#?}");
    }

    #[test]
    fn multi_line_messages_and_wrapped_words_hang_under_the_text() {
        let mut state = state();
        let say = |state: &mut State, seq: u64, text: &str| {
            state.on_frame(&ServerFrame::Message(Message {
                edit: None,
                delete: None,
                edited: false,
                deleted: false,
                room: "lobby".into(),
                seq,
                ts: 13 * 3_600_000,
                from: "bob".into(),
                text: text.into(),
                id: None,
                action: false,
                attachment: None,
            }))
        };
        say(&mut state, 3, "line one\nline two");
        let rows = screen(&state, &Editor::default(), 60, 8, false);
        let at = rows
            .iter()
            .position(|r| r.contains("13:00 <bob> line one"))
            .unwrap_or_else(|| panic!("{rows:#?}"));
        let indent = rows[at].find("line one").unwrap_or(0);
        assert_eq!(rows[at + 1].find("line two"), Some(indent), "under the text: {rows:#?}");
        assert!(
            !rows.iter().any(|r| r.contains('\u{fffd}')),
            "no replacement character: {rows:#?}"
        );
        // Words are not cut while a row can hold them.
        say(&mut state, 4, "the quick brown fox jumps over the lazy dog again and again");
        let rows = screen(&state, &Editor::default(), 50, 8, false);
        let text: Vec<&str> =
            rows.iter().filter_map(|r| r.split_once('│').map(|(_, text)| text)).collect();
        let start = text
            .iter()
            .position(|r| r.contains("<bob> the quick"))
            .unwrap_or_else(|| panic!("{rows:#?}"));
        let words: Vec<&str> = text[start..]
            .iter()
            .take_while(|r| !r.trim().is_empty())
            .flat_map(|r| r.split_whitespace())
            .collect();
        assert!(words.ends_with(&["again", "and", "again"]), "whole words: {rows:#?}");
        for row in &text[start + 1..] {
            if row.trim().is_empty() {
                break;
            }
            assert!(row.starts_with("            "), "hanging indent: {rows:#?}");
        }
    }

    #[test]
    fn help_is_in_columns_even_when_it_wraps() {
        let mut state = state();
        state.help(crate::input::COMMANDS, "keys:");
        let rows = screen(&state, &Editor::default(), 70, 30, false);
        let text: Vec<&str> =
            rows.iter().filter_map(|r| r.split_once('│').map(|(_, t)| t)).collect();
        let starts: Vec<usize> =
            ["change nick", "list the rooms", "join ROOM and make", "save a file"]
                .iter()
                .map(|what| {
                    let row = text
                        .iter()
                        .find(|r| r.contains(what))
                        .unwrap_or_else(|| panic!("{what}: {rows:#?}"));
                    row.find(what).unwrap_or(0)
                })
                .collect();
        assert!(starts.windows(2).all(|w| w[0] == w[1]), "one column: {starts:?} {rows:#?}");
        // The longest description wraps under its own column.
        let at = text.iter().position(|r| r.contains("say TEXT in the current")).unwrap_or(0);
        let next = text[at + 1];
        assert_eq!(next.len() - next.trim_start().len(), starts[0], "{rows:#?}");
    }

    #[test]
    fn the_nicks_of_a_small_room_get_different_colours() {
        let palette =
            Palette { nicks: vec![Color::Cyan, Color::Green, Color::Yellow], ..Palette::default() };
        for trio in [["alice", "bob", "carol"], ["ann", "Ann2", "bo"], ["x", "y", "z"]] {
            let colours = palette.assign(trio);
            let used: std::collections::BTreeSet<String> =
                trio.iter().map(|n| format!("{:?}", colours.of(n, &palette))).collect();
            assert_eq!(used.len(), 3, "{trio:?}");
            // The same set, the same colours, whatever order they come in.
            let again = palette.assign(trio.iter().rev().copied());
            assert!(trio.iter().all(|n| colours.of(n, &palette) == again.of(n, &palette)));
        }
    }

    #[test]
    fn unread_and_mentions_show_in_the_room_list_and_a_small_screen_holds() {
        let mut state = state();
        state.on_frame(&ServerFrame::Joined {
            member_count: 1,
            topic: None,
            id: None,
            room: "dev".into(),
            members: vec!["alice".into()],
            away: Vec::new(),
            history: vec![],
            last_seq: 0,
            resume: Resume::Fresh,
            gap: None,
            docs: Vec::new(),
            docs_read_only: false,
        });
        state.on_frame(&ServerFrame::Message(Message {
            edit: None,
            delete: None,
            edited: false,
            deleted: false,
            room: "lobby".into(),
            seq: 3,
            ts: 0,
            from: "bob".into(),
            text: "alice: look".into(),
            id: None,
            action: false,
            attachment: None,
        }));
        let rows = screen(&state, &Editor::default(), 60, 20, true);
        assert!(rows[1].starts_with("#lobby (1)"), "{rows:#?}");
        assert!(rows[2].starts_with("#dev"), "{rows:#?}");
        let tiny = screen(&state, &Editor::default(), 20, 4, true);
        assert_eq!(tiny.len(), 4);
        assert!(tiny[3].starts_with(" connected"), "{tiny:#?}");
    }

    #[test]
    fn nick_colours_are_stable() {
        let palette = Palette::default();
        assert_eq!(palette.nick("alice"), palette.nick("Alice"));
        let colours: std::collections::BTreeSet<String> =
            ["alice", "bob", "carol", "dave", "erin", "frank"]
                .iter()
                .map(|n| format!("{:?}", palette.nick(n)))
                .collect();
        assert!(colours.len() > 2, "nicks spread over the palette");
    }

    #[test]
    fn loading_older_messages_and_newer_ones_below_are_shown() {
        let mut state = state();
        state.queued = 2;
        state.connection = Connection::Reconnecting { in_secs: 3 };
        for _ in 0..2 {
            state.notice("filler");
        }
        // Two lines up, waiting for older ones: rows say so.
        let current = state.current;
        state.views[current].scroll = 2;
        state.views[current].loading = true;
        let rows = screen(&state, &Editor::default(), 60, 8, false);
        assert!(rows[0].contains("-- loading older messages…"), "{rows:#?}");
        assert!(rows[5].contains("-- 2 newer below"), "{rows:#?}");
        // The connection leads; on a narrow screen the server is cut.
        assert_eq!(rows[7], " offline, reconnecting in 3s · 2 queued · alice · ws://host/");
    }
}
