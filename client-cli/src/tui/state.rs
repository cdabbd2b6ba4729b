//! What the full-screen client shows: one view per room (and per direct
//! conversation, and one for the server), each with its scrollback,
//! members, unread count and mention flag. Fed server frames, driven by
//! keys through its methods; no terminal involved, so tests drive it.

use std::collections::VecDeque;

use chat_protocol::{ClientFrame, Message, PresenceEvent, ServerFrame};

/// Lines kept per view; older ones are paged back in with `history`.
const LINES_MAX: usize = 5000;

/// What a document's view keeps of what was said of it.
const DOC_NOTES: usize = 12;

/// Messages asked for per `history` page.
const PAGE: u32 = 100;

/// What a view is of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// Notices from the server and the client itself.
    Status,
    /// A room.
    Room,
    /// Direct messages with one nick.
    Direct,
    /// A room's shared document, live (named `room/doc`).
    Doc,
}

/// One line of a view.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Line {
    Message {
        seq: Option<u64>,
        ts: u64,
        from: String,
        text: String,
        action: bool,
    },
    Notice(String),
    Error(String),
    /// A line of a shared document, as it is.
    Text(String),
    /// A line of `/help`: a usage, and what it does (wrapped under itself).
    Help {
        usage: String,
        text: String,
    },
    /// A message being sent (until the server has it: its copy takes the
    /// line's place), or refused.
    Pending {
        id: String,
        from: String,
        text: String,
        action: bool,
        refused: bool,
    },
}

/// The most members a big room's view keeps (a page, as the server sends).
const MEMBERS_SHOWN: usize = 200;

/// How an edited message ends, and what a deleted one says.
const EDITED: &str = " (edited)";
const DELETED: &str = "(message deleted)";

/// The request id of the room list asked for on connecting, for completion
/// only: not shown.
pub const QUIET_ROOMS: &str = "rooms-for-completion";

/// The request id of the next page of a big room's members, for the member
/// list: added to it, not shown.
pub const MORE_MEMBERS: &str = "members-next-page";

/// The request id of the members a Tab asked the server for, in a room too
/// big to know them all: the app completes from them.
pub const COMPLETE_MEMBERS: &str = "members-for-completion";

/// One view: a room, a conversation, or the status view.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct View {
    pub name: String,
    pub kind: Kind,
    pub lines: VecDeque<Line>,
    pub members: Vec<String>,
    /// Members whose every connection dropped, for now.
    pub away: Vec<String>,
    pub unread: usize,
    /// A message since the view was last looked at mentions me.
    pub mentioned: bool,
    /// How many lines (messages and notices, not screen rows) up from the
    /// bottom the view is scrolled.
    pub scroll: usize,
    /// Asked the server for older messages and waiting.
    pub loading: bool,
    /// The server has nothing older.
    pub complete: bool,
    /// A room the server has confirmed joining (at some point).
    pub joined: bool,
    /// A conversation's key, once the server named it.
    pub conversation: Option<String>,
    /// A room's topic.
    pub topic: Option<String>,
    /// A room's shared documents, in name order.
    pub docs: Vec<chat_protocol::DocInfo>,
    /// A document's view: its text, and the last things said of it
    /// (shown under it).
    pub doc: Option<(String, VecDeque<Line>)>,
    /// How many members a room has (more than `members` in a big one).
    pub member_count: usize,
    /// The first member the member list shows (it scrolls with F3/F4).
    pub member_scroll: usize,
    /// The next page of members was asked for and has not come yet.
    pub members_loading: bool,
    /// Where the next page of members starts (after this nick, in the
    /// server's order); none before the first page.
    pub members_after: Option<String>,
    /// After `/clear`: the seq older messages are paged back from.
    pub cleared_after: Option<u64>,
}

impl View {
    /// A document's view: its text line by line, then what was said of
    /// it; scrolled as it was from the bottom.
    fn show_doc(&mut self) {
        let Some((text, notes)) = &self.doc else {
            return;
        };
        let mut lines: VecDeque<Line> =
            text.split('\n').map(|line| Line::Text(line.to_owned())).collect();
        if lines.back() == Some(&Line::Text(String::new())) {
            lines.pop_back();
        }
        lines.extend(notes.iter().cloned());
        self.lines = lines;
        self.scroll = self.scroll.min(self.lines.len().saturating_sub(1));
        self.complete = true;
    }

    fn new(name: &str, kind: Kind) -> Self {
        Self {
            name: name.to_owned(),
            kind,
            lines: VecDeque::new(),
            members: Vec::new(),
            away: Vec::new(),
            unread: 0,
            mentioned: false,
            scroll: 0,
            loading: false,
            complete: false,
            joined: false,
            conversation: None,
            topic: None,
            docs: Vec::new(),
            doc: None,
            member_count: 0,
            member_scroll: 0,
            members_loading: false,
            members_after: None,
            cleared_after: None,
        }
    }

    /// Scrolls the member list by `by` rows (negative: up) in a list
    /// `rows` high; returns the `who` for the next page when the list
    /// reaches the end of what it has and the room has more.
    pub fn scroll_members(&mut self, by: isize, rows: usize) -> Option<ClientFrame> {
        let last = self.members.len().saturating_sub(1);
        self.member_scroll = self.member_scroll.saturating_add_signed(by).min(last);
        let near_end = self.member_scroll + rows * 2 >= self.members.len();
        let incomplete = self.members.len() < self.member_count;
        if !near_end || !incomplete || self.members_loading {
            return None;
        }
        self.members_loading = true;
        // From where the last page ended; with no page yet (the list grew
        // from presence), from the start: what is known already is
        // skipped as it comes.
        let after = self.members_after.clone();
        Some(ClientFrame::Who { room: self.name.clone(), after, prefix: None, limit: None })
    }

    /// Message `of` changed: its text is now `text`.
    fn change(&mut self, of: u64, text: String) {
        for line in &mut self.lines {
            if let Line::Message { seq: Some(at), text: shown, .. } = line
                && *at == of
            {
                *shown = text;
                break;
            }
        }
    }

    /// My newest message here that can still change.
    pub fn last_own(&self, me: &str) -> Option<u64> {
        self.lines.iter().rev().find_map(|line| match line {
            Line::Message { seq: Some(seq), from, text, .. } if from == me && text != DELETED => {
                Some(*seq)
            }
            _ => None,
        })
    }

    /// The newest message `seq` shown.
    fn last_seq(&self) -> Option<u64> {
        self.lines.iter().rev().find_map(|line| match line {
            Line::Message { seq, .. } => *seq,
            _ => None,
        })
    }

    /// The oldest message `seq` shown.
    fn first_seq(&self) -> Option<u64> {
        self.lines.iter().find_map(|line| match line {
            Line::Message { seq, .. } => *seq,
            _ => None,
        })
    }

    fn has_seq(&self, wanted: u64) -> bool {
        self.lines
            .iter()
            .any(|line| matches!(line, Line::Message { seq: Some(seq), .. } if *seq == wanted))
    }

    /// Adds a line at the bottom, above the messages still being sent.
    fn push(&mut self, line: Line) {
        let sending = self.lines.iter().position(|l| matches!(l, Line::Pending { .. }));
        match sending {
            Some(at) if !matches!(line, Line::Pending { .. }) => self.lines.insert(at, line),
            _ => self.lines.push_back(line),
        }
        if self.scroll > 0 {
            // Someone reading back keeps their place.
            self.scroll += 1;
        }
        while self.lines.len() > LINES_MAX {
            self.lines.pop_front();
            self.complete = false;
        }
    }
}

/// The client's connection, for the status bar.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Connection {
    Connecting,
    Connected,
    /// Disconnected, waiting to reconnect, with the seconds left.
    Reconnecting {
        in_secs: u64,
    },
}

/// Everything on screen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct State {
    pub me: Option<String>,
    pub views: Vec<View>,
    pub current: usize,
    pub connection: Connection,
    /// Messages not yet acknowledged by the server (typed offline, or on
    /// their way).
    pub queued: usize,
    /// Rooms the server listed, for completion.
    pub known_rooms: Vec<String>,
    /// The session's token (documents open with it), once welcomed.
    pub session: Option<String>,
}

impl Default for State {
    fn default() -> Self {
        Self {
            me: None,
            views: vec![View::new("status", Kind::Status)],
            current: 0,
            connection: Connection::Connecting,
            queued: 0,
            known_rooms: Vec::new(),
            session: None,
        }
    }
}

impl State {
    /// The view shown.
    pub fn current(&self) -> &View {
        // `current` always indexes `views`, which is never empty.
        &self.views[self.current.min(self.views.len() - 1)]
    }

    /// Scrolls the current room's member list (see [`View::scroll_members`]).
    pub fn scroll_members(&mut self, by: isize, rows: usize) -> Option<ClientFrame> {
        let current = self.current.min(self.views.len() - 1);
        let view = self.views.get_mut(current)?;
        if view.kind != Kind::Room {
            return None;
        }
        view.scroll_members(by, rows)
    }

    /// The room the current view sends to, if it is a room.
    pub fn current_room(&self) -> Option<&str> {
        let view = self.current();
        (view.kind == Kind::Room).then_some(view.name.as_str())
    }

    fn find(&self, name: &str, kind: &Kind) -> Option<usize> {
        self.views.iter().position(|view| view.name == name && &view.kind == kind)
    }

    fn view_mut(&mut self, name: &str, kind: Kind) -> &mut View {
        let at = match self.find(name, &kind) {
            Some(at) => at,
            None => {
                self.views.push(View::new(name, kind));
                self.views.len() - 1
            }
        };
        &mut self.views[at]
    }

    /// Shows view `at`; its unread count and mention flag are cleared.
    pub fn select(&mut self, at: usize) {
        if let Some(view) = self.views.get_mut(at) {
            view.unread = 0;
            view.mentioned = false;
            self.current = at;
        }
    }

    pub fn next(&mut self) {
        self.select((self.current + 1) % self.views.len());
    }

    pub fn previous(&mut self) {
        self.select((self.current + self.views.len() - 1) % self.views.len());
    }

    /// Opens views for the rooms the client will join, before the server
    /// answers, so messages can be typed into them offline; shows the first.
    pub fn open_rooms(&mut self, rooms: &[String]) {
        for room in rooms {
            self.view_mut(room, Kind::Room);
        }
        if let Some(at) = rooms.first().and_then(|room| self.find(room, &Kind::Room)) {
            self.select(at);
        }
    }

    /// Adds a line of the client's own to the status view.
    /// The same notice again (a reconnect failing the same way each time)
    /// is not repeated.
    pub fn status_notice(&mut self, text: &str) {
        if let Some(view) = self.views.iter_mut().find(|view| view.kind == Kind::Status) {
            let line = Line::Notice(text.to_owned());
            if view.lines.back() != Some(&line) {
                view.push(line);
            }
        }
    }

    /// Adds an error line to the current view.
    pub fn error(&mut self, text: &str) {
        let current = self.current;
        if let Some(view) = self.views.get_mut(current) {
            view.push(Line::Error(text.to_owned()));
        }
    }

    /// Empties the current view (`/clear`); older messages can be paged
    /// back in.
    pub fn clear(&mut self) {
        let current = self.current;
        if let Some(view) = self.views.get_mut(current) {
            // PgUp brings it back, from the newest message shown.
            view.cleared_after = view.last_seq().or(view.cleared_after);
            view.lines.clear();
            view.scroll = 0;
            view.complete = false;
        }
    }

    /// A message on its way: shown where it goes, as being sent.
    pub fn sending(&mut self, id: &str, frame: &ClientFrame) {
        let me = self.me.clone().unwrap_or_default();
        let (view, kind, text, action) = match frame {
            ClientFrame::Say { room, text, action } => (room.clone(), Kind::Room, text, *action),
            ClientFrame::Dm { to, conversation, text } => {
                let known = conversation.as_ref().and_then(|key| {
                    self.views.iter().find(|v| v.conversation.as_ref() == Some(key))
                });
                let to = known.map_or_else(|| to.clone(), |view| view.name.clone());
                (to, Kind::Direct, text, false)
            }
            _ => return,
        };
        let line = Line::Pending {
            id: id.to_owned(),
            from: me,
            text: text.clone(),
            action,
            refused: false,
        };
        self.view_mut(&view, kind).push(line);
    }

    /// The server has the message `id` (its copy is shown in its place),
    /// or refused it (it stays, marked).
    pub fn sent(&mut self, id: &str, refused: bool) {
        for view in &mut self.views {
            let at =
                view.lines.iter().position(|l| matches!(l, Line::Pending { id: i, .. } if i == id));
            let Some(at) = at else { continue };
            if refused {
                if let Some(Line::Pending { refused, .. }) = view.lines.get_mut(at) {
                    *refused = true;
                }
            } else {
                view.lines.remove(at);
            }
        }
    }

    /// How far the view shown is read, as a `read` for the session's other
    /// connections: its newest message, in a room or a conversation.
    pub fn read_frame(&self) -> Option<ClientFrame> {
        let view = self.current();
        let seq = view.last_seq()?;
        match view.kind {
            Kind::Room => {
                Some(ClientFrame::Read { room: Some(view.name.clone()), conversation: None, seq })
            }
            Kind::Direct => view.conversation.clone().map(|key| ClientFrame::Read {
                room: None,
                conversation: Some(key),
                seq,
            }),
            Kind::Status | Kind::Doc => None,
        }
    }

    /// Shows document `doc` of `room` in a view of its own (opened if it
    /// is not).
    pub fn open_doc(&mut self, room: &str, doc: &str) {
        let name = format!("{room}/{doc}");
        self.view_mut(&name, Kind::Doc);
        if let Some(at) = self.find(&name, &Kind::Doc) {
            self.select(at);
        }
    }

    /// The document the current view shows: (room, name).
    pub fn current_doc(&self) -> Option<(String, String)> {
        let view = self.current();
        let (room, doc) = view.name.split_once('/')?;
        (view.kind == Kind::Doc).then(|| (room.to_owned(), doc.to_owned()))
    }

    /// Document `doc` of `room` is `text` now: its view shows it, line by
    /// line, scrolled as it was from the bottom.
    pub fn doc_text(&mut self, room: &str, doc: &str, text: &str) {
        let Some(at) = self.find(&format!("{room}/{doc}"), &Kind::Doc) else {
            return;
        };
        let view = &mut self.views[at];
        view.doc.get_or_insert_with(Default::default).0 = text.to_owned();
        view.show_doc();
    }

    /// Something said of document `doc` of `room`, under it in its view
    /// (the last few).
    pub fn doc_notice(&mut self, room: &str, doc: &str, text: &str, error: bool) {
        if let Some(at) = self.find(&format!("{room}/{doc}"), &Kind::Doc) {
            let line = match error {
                true => Line::Error(text.to_owned()),
                false => Line::Notice(text.to_owned()),
            };
            let view = &mut self.views[at];
            let notes = &mut view.doc.get_or_insert_with(Default::default).1;
            notes.push_back(line);
            if notes.len() > DOC_NOTES {
                notes.pop_front();
            }
            view.show_doc();
        }
    }

    /// The document of `room` called `typed` (its name or its title,
    /// whatever the case), as the room's list has it.
    pub fn find_doc(&self, room: &str, typed: &str) -> Option<String> {
        let view = self.views.get(self.find(room, &Kind::Room)?)?;
        let lower = typed.to_lowercase();
        let found = view.docs.iter().find(|d| d.name == typed || d.title.to_lowercase() == lower);
        found.map(|doc| doc.name.clone())
    }

    /// The document of `room` edited last, if the room has any.
    pub fn newest_doc(&self, room: &str) -> Option<String> {
        let view = self.views.get(self.find(room, &Kind::Room)?)?;
        view.docs.iter().max_by_key(|doc| doc.edited_at).map(|doc| doc.name.clone())
    }

    /// `/join` of a room already joined shows it (also offline); true if
    /// it was.
    pub fn show_room(&mut self, room: &str) -> bool {
        let room = room.trim_start_matches('#');
        match self.find(room, &Kind::Room).filter(|&at| self.views[at].joined) {
            Some(at) => {
                self.select(at);
                true
            }
            None => false,
        }
    }

    /// Closes the current view if it is a direct conversation (`/close`);
    /// rooms close when the server confirms leaving them. True if closed.
    pub fn close_direct(&mut self) -> bool {
        let at = self.current;
        if self.views.get(at).is_some_and(|view| matches!(view.kind, Kind::Direct | Kind::Doc)) {
            self.views.remove(at);
            self.select(at.saturating_sub(1));
            return true;
        }
        false
    }

    /// The connection came (back): nothing is being loaded any more.
    pub fn reconnected(&mut self) {
        for view in &mut self.views {
            view.loading = false;
        }
    }

    /// Every room view and direct conversation, for completion.
    pub fn rooms(&self) -> Vec<String> {
        let mut rooms: Vec<String> = self
            .views
            .iter()
            .filter(|view| view.kind == Kind::Room)
            .map(|view| view.name.clone())
            .chain(self.known_rooms.iter().cloned())
            .collect();
        rooms.sort();
        rooms.dedup();
        rooms
    }

    /// Adds a line of the client's own to the current view.
    pub fn notice(&mut self, text: &str) {
        let current = self.current;
        if let Some(view) = self.views.get_mut(current) {
            view.push(Line::Notice(text.to_owned()));
        }
    }

    /// Shows `/help` in the current view: `commands` as aligned columns,
    /// then `keys` as they are.
    pub fn help(&mut self, commands: &[(&str, &str)], keys: &str) {
        let width = commands.iter().map(|(usage, _)| usage.chars().count()).max().unwrap_or(0);
        let current = self.current;
        if let Some(view) = self.views.get_mut(current) {
            view.push(Line::Notice("commands:".to_owned()));
            for (usage, text) in commands {
                let usage = format!("{usage:<width$}");
                view.push(Line::Help { usage, text: (*text).to_owned() });
            }
            for line in keys.lines() {
                view.push(Line::Notice(line.to_owned()));
            }
        }
    }

    /// Adds a line of the client's own to a room's view.
    pub fn room_notice(&mut self, room: &str, text: &str) {
        self.view_mut(room, Kind::Room).push(Line::Notice(text.to_owned()));
    }

    /// Scrolls the current view up by `lines` of the `height` on screen.
    /// Reaching the top asks for older messages: the frame to send, if any.
    pub fn scroll_up(
        &mut self,
        lines: usize,
        height: usize,
        rows: impl Fn(&Line) -> usize,
    ) -> Option<ClientFrame> {
        let current = self.current;
        let view = self.views.get_mut(current)?;
        // Scrolled by whole lines, never past the oldest line at the top of
        // the screen: a view that fits it does not move. How many lines
        // from the top fit the screen, in rows as wrapped:
        let total: usize = view.lines.iter().map(&rows).sum();
        // Scrolled, a row says how many are below (and one that older
        // ones are coming, while they are).
        let room = height.saturating_sub(1 + usize::from(view.loading));
        let mut filled = 0;
        let mut fit = 0;
        for line in &view.lines {
            filled += rows(line);
            if filled > room {
                break;
            }
            fit += 1;
        }
        let most = match total > height {
            true => view.lines.len() - fit.max(1),
            false => 0,
        };
        view.scroll = (view.scroll + lines).min(most);
        let at_top = view.scroll >= most;
        if !at_top || matches!(view.kind, Kind::Status | Kind::Doc) || view.loading || view.complete
        {
            return None;
        }
        let before = view.first_seq().or(view.cleared_after.map(|seq| seq + 1))?;
        if before <= 1 {
            view.complete = true;
            return None;
        }
        view.loading = true;
        Some(match view.kind {
            Kind::Direct => ClientFrame::Conversation {
                with: view.name.clone(),
                conversation: view.conversation.clone(),
                after: None,
                before: Some(before),
                limit: Some(PAGE),
            },
            _ => ClientFrame::History {
                room: view.name.clone(),
                before: Some(before),
                limit: Some(PAGE),
            },
        })
    }

    pub fn scroll_down(&mut self, lines: usize) {
        let current = self.current;
        if let Some(view) = self.views.get_mut(current) {
            view.scroll = view.scroll.saturating_sub(lines);
        }
    }

    /// Takes in a frame from the server.
    pub fn on_frame(&mut self, frame: &ServerFrame) {
        match frame {
            ServerFrame::Welcome { nick, session, .. } => {
                self.me = Some(nick.clone());
                self.session = Some(session.clone());
                self.connection = Connection::Connected;
            }
            ServerFrame::Joined { room, members, member_count, history, topic, docs, .. } => {
                let fresh = self.find(room, &Kind::Room).is_none();
                let view = self.view_mut(room, Kind::Room);
                view.docs = docs.clone();
                view.members = members.clone();
                let count = usize::try_from(*member_count).unwrap_or(usize::MAX);
                view.member_count = count.max(members.len());
                view.members_after =
                    (view.member_count > members.len()).then(|| members.last().cloned()).flatten();
                (view.member_scroll, view.members_loading) = (0, false);
                if view.topic != *topic
                    && let Some(text) = topic
                {
                    view.push(Line::Notice(format!("topic: {text}")));
                }
                view.topic = topic.clone();
                for message in history {
                    add_message(view, message);
                }
                if !view.joined {
                    view.joined = true;
                    let count = match view.member_count {
                        1 => "1 member".to_owned(),
                        n => format!("{n} members"),
                    };
                    view.push(Line::Notice(format!("joined {room} ({count})")));
                }
                // A room joined with /join is shown; rooms opened at start
                // stay where the user is.
                if fresh && let Some(at) = self.find(room, &Kind::Room) {
                    self.select(at);
                }
            }
            ServerFrame::Left { room, .. } => {
                if let Some(at) = self.find(room, &Kind::Room) {
                    self.views.remove(at);
                    if self.current >= at && self.current > 0 {
                        self.current -= 1;
                    }
                }
            }
            ServerFrame::PresenceBatch { room, changes, more, members } => {
                // A big room: one line a second, whatever the join rate.
                let view = self.view_mut(room, Kind::Room);
                for change in changes {
                    match change.event {
                        PresenceEvent::Leave => view.members.retain(|m| *m != change.nick),
                        PresenceEvent::Join
                            if view.members.len() < MEMBERS_SHOWN
                                && !view.members.contains(&change.nick) =>
                        {
                            view.members.push(change.nick.clone());
                        }
                        _ => {}
                    }
                }
                view.member_count = usize::try_from(*members).unwrap_or(usize::MAX);
                let text = crate::render::presence_summary(changes, *more, *members);
                view.push(Line::Notice(text));
            }
            ServerFrame::Presence { room, event, nick, old } => {
                let view = self.view_mut(room, Kind::Room);
                let text = match (event, old) {
                    (PresenceEvent::Join, _) => {
                        if !view.members.contains(nick) {
                            view.members.push(nick.clone());
                        }
                        format!("{nick} joined")
                    }
                    (PresenceEvent::Leave, _) => {
                        view.members.retain(|member| member != nick);
                        view.away.retain(|member| member != nick);
                        format!("{nick} left")
                    }
                    (PresenceEvent::Away, _) => {
                        if !view.away.contains(nick) {
                            view.away.push(nick.clone());
                        }
                        format!("{nick} is away")
                    }
                    (PresenceEvent::Back, _) => {
                        view.away.retain(|member| member != nick);
                        format!("{nick} is back")
                    }
                    (PresenceEvent::Nick, old) => {
                        if let Some(old) = old {
                            view.members.retain(|member| member != old);
                            view.away.retain(|member| member != old);
                        }
                        view.members.push(nick.clone());
                        format!("{} is now known as {nick}", old.as_deref().unwrap_or("someone"))
                    }
                };
                view.members.sort_by_key(|member| member.to_lowercase());
                view.push(Line::Notice(text));
            }
            ServerFrame::Message(message) => {
                let mentions = self.mentions_me(&message.text);
                let at = match self.find(&message.room, &Kind::Room) {
                    Some(at) => at,
                    None => return,
                };
                if message.edit.is_some() || message.delete.is_some() {
                    add_message(&mut self.views[at], message);
                    return;
                }
                let current = self.current;
                let view = &mut self.views[at];
                if add_message(view, message) && at != current {
                    view.unread += 1;
                    view.mentioned |= mentions;
                }
            }
            ServerFrame::Direct { from, to, with, conversation, text, ts, seq, .. } => {
                let me = self.me.clone().unwrap_or_default();
                // Older servers do not say who it is with.
                let peer = match with.is_empty() {
                    true if *from == me => to,
                    true => from,
                    false => with,
                };
                let current = self.current;
                let view = self.view_mut(peer, Kind::Direct);
                if !conversation.is_empty() {
                    view.conversation = Some(conversation.clone());
                }
                let seq = (*seq > 0).then_some(*seq);
                if seq.is_some_and(|seq| view.has_seq(seq)) {
                    return;
                }
                view.push(Line::Message {
                    seq,
                    ts: *ts,
                    from: from.clone(),
                    text: text.clone(),
                    action: false,
                });
                let Some(at) = self.find(peer, &Kind::Direct) else {
                    return;
                };
                if at != current && *from != me {
                    self.views[at].unread += 1;
                    self.views[at].mentioned = true;
                } else if at != current {
                    // Sent from elsewhere (/msg in a room): said where the
                    // user is.
                    self.notice(&format!("to @{peer}: {text} (Alt+{} shows it)", at + 1));
                }
            }
            ServerFrame::Conversation { id, with, conversation, messages, .. } => {
                let me = self.me.clone().unwrap_or_default();
                let current = self.current;
                let view = self.view_mut(with, Kind::Direct);
                view.conversation = Some(conversation.clone());
                // A page asked for by scrolling up, or a catch-up.
                let paged = id.is_some();
                if paged {
                    view.loading = false;
                    view.complete |= messages.is_empty();
                }
                let mut unread = 0;
                for m in messages {
                    if view.has_seq(m.seq) {
                        continue;
                    }
                    let line = Line::Message {
                        seq: Some(m.seq),
                        ts: m.ts,
                        from: m.from.clone(),
                        text: m.text.clone(),
                        action: false,
                    };
                    // In its place by seq.
                    let at = view.lines.iter().position(
                        |l| matches!(l, Line::Message { seq: Some(seq), .. } if *seq > m.seq),
                    );
                    match at {
                        Some(at) => view.lines.insert(at, line),
                        None => view.push(line),
                    }
                    unread += usize::from(m.from != me && !paged);
                }
                if let Some(at) = self.find(with, &Kind::Direct)
                    && at != current
                {
                    self.views[at].unread += unread;
                    self.views[at].mentioned |= unread > 0;
                }
            }
            ServerFrame::DocVersions { room, doc, versions, .. } => {
                for line in crate::render::doc_versions(doc, versions) {
                    match self.find(&format!("{room}/{doc}"), &Kind::Doc) {
                        Some(_) => self.doc_notice(room, doc, &line, false),
                        None => self.view_mut(room, Kind::Room).push(Line::Notice(line)),
                    }
                }
            }
            ServerFrame::Doc { room, action, doc, by, .. } => {
                let view = self.view_mut(room, Kind::Room);
                view.docs.retain(|known| known.name != doc.name);
                if action != "deleted" {
                    let at = view.docs.partition_point(|known| known.name < doc.name);
                    view.docs.insert(at, doc.clone());
                }
                if let Some(text) = crate::render::doc_change(action, doc, by) {
                    view.push(Line::Notice(text));
                }
            }
            ServerFrame::Topic { room, topic, by, .. } => {
                let text = match topic {
                    Some(topic) => format!("{by} set the topic: {topic}"),
                    None => format!("{by} cleared the topic"),
                };
                let view = self.view_mut(room, Kind::Room);
                view.topic = topic.clone();
                view.push(Line::Notice(text));
            }
            ServerFrame::Read { room, conversation, seq } => {
                // Read on another device: read here too.
                let view = self.views.iter_mut().find(|view| match (room, conversation) {
                    (Some(room), _) => view.kind == Kind::Room && view.name == *room,
                    (None, Some(key)) => view.conversation.as_ref() == Some(key),
                    (None, None) => false,
                });
                if let Some(view) = view
                    && view.last_seq().is_none_or(|newest| newest <= *seq)
                {
                    view.unread = 0;
                    view.mentioned = false;
                }
            }
            ServerFrame::Nick { nick, .. } => self.me = Some(nick.clone()),
            ServerFrame::Members { id, room, members, away, count, more } => {
                let Some(at) = self.find(room, &Kind::Room) else {
                    return;
                };
                let view = &mut self.views[at];
                let count = usize::try_from(*count).unwrap_or(usize::MAX).max(members.len());
                match id.as_deref() {
                    // The member list scrolled past what it had: the next
                    // page joins it.
                    Some(MORE_MEMBERS) => {
                        view.members_loading = false;
                        view.member_count = count;
                        view.members_after = more.then(|| members.last().cloned()).flatten();
                        for nick in members {
                            if !view.members.contains(nick) {
                                view.members.push(nick.clone());
                            }
                        }
                        for nick in away {
                            if !view.away.contains(nick) {
                                view.away.push(nick.clone());
                            }
                        }
                    }
                    Some(COMPLETE_MEMBERS) => {}
                    _ => {
                        // A whole room refreshes the list; a page or a
                        // search is only shown.
                        if !more && members.len() == count {
                            view.members = members.clone();
                            view.member_count = count;
                        }
                        let line = crate::render::members_line(members, count as u64, *more);
                        view.push(Line::Notice(line));
                    }
                }
            }
            ServerFrame::History { room, messages, .. } => {
                let view = self.view_mut(room, Kind::Room);
                view.loading = false;
                if messages.is_empty() {
                    view.complete = true;
                }
                // Changes are in the messages they changed already.
                let older: Vec<Line> = messages
                    .iter()
                    .filter(|m| !view.has_seq(m.seq) && m.edit.is_none() && m.delete.is_none())
                    .map(message_line)
                    .collect();
                for line in older.into_iter().rev() {
                    view.lines.push_front(line);
                }
            }
            ServerFrame::Error { code, message, .. } => {
                let current = self.current;
                if let Some(view) = self.views.get_mut(current) {
                    view.push(Line::Error(format!("{code}: {message}")));
                }
            }
            ServerFrame::Rooms { id, rooms } => {
                self.known_rooms = rooms.iter().map(|room| room.name.clone()).collect();
                if id.as_deref() == Some(QUIET_ROOMS) {
                    return;
                }
                let list: Vec<String> =
                    rooms.iter().map(|room| format!("{} ({})", room.name, room.members)).collect();
                self.notice(&format!("rooms: {}", list.join(", ")));
                // The directory: what each room with a topic is about.
                for room in rooms {
                    if let Some(topic) = &room.topic {
                        self.notice(&format!("  #{}: {topic}", room.name));
                    }
                }
            }
            ServerFrame::Typing { .. }
            | ServerFrame::TypingBatch { .. }
            | ServerFrame::UploadReady { .. }
            | ServerFrame::Subscribed { .. }
            | ServerFrame::Conversations { .. }
            | ServerFrame::Stats(_)
            | ServerFrame::StatsHistory { .. }
            | ServerFrame::Pong { .. }
            | ServerFrame::Authed { .. } => {}
        }
    }

    /// Whether `text` names me as a word (case-insensitive).
    fn mentions_me(&self, text: &str) -> bool {
        let Some(me) = self.me.as_deref().map(str::to_lowercase) else {
            return false;
        };
        text.to_lowercase()
            .split(|c: char| !(c.is_alphanumeric() || c == '-' || c == '_'))
            .any(|word| word == me)
    }
}

fn message_line(message: &Message) -> Line {
    let text = match &message.attachment {
        Some(file) if message.text.is_empty() => crate::render::attachment(file),
        Some(file) => format!("{} {}", message.text, crate::render::attachment(file)),
        None => message.text.clone(),
    };
    let text = match (message.deleted, message.edited) {
        (true, _) => DELETED.to_owned(),
        (false, true) => format!("{text}{EDITED}"),
        (false, false) => text,
    };
    Line::Message {
        seq: Some(message.seq),
        ts: message.ts,
        from: message.from.clone(),
        text,
        action: message.action,
    }
}

/// Adds a room message once, in `seq` order; false if it was there.
fn add_message(view: &mut View, message: &Message) -> bool {
    // A change: applied to the line it changes, not shown itself.
    if let Some(of) = message.edit.or(message.delete) {
        let text = match message.edit {
            Some(_) => format!("{}{EDITED}", message.text),
            None => DELETED.to_owned(),
        };
        view.change(of, text);
        return false;
    }
    if view.has_seq(message.seq) {
        return false;
    }
    view.push(message_line(message));
    true
}

#[cfg(test)]
mod tests {
    use chat_protocol::Resume;

    use super::*;

    fn welcome(nick: &str) -> ServerFrame {
        let decoded = ServerFrame::decode(&format!(
            r#"{{"type":"welcome","session":"s","nick":"{nick}","server":{{"name":"chat-server","version":"0","protocol":1}},
            "limits":{{"max_frame_bytes":1,"max_text_bytes":1,"max_nick_chars":1,"max_room_chars":1,
            "history_per_room":1,"history_page_max":1,"join_history":1,"typing_interval_ms":1,
            "messages_per_sec":1,"messages_burst":1}}}}"#
        ));
        decoded.unwrap_or_else(|e| panic!("{e}"))
    }

    fn message(room: &str, seq: u64, from: &str, text: &str) -> Message {
        Message {
            edit: None,
            delete: None,
            edited: false,
            deleted: false,
            room: room.into(),
            seq,
            ts: 1_700_000_000_000 + seq,
            from: from.into(),
            text: text.into(),
            id: None,
            action: false,
            attachment: None,
        }
    }

    fn joined(room: &str, members: &[&str], history: Vec<Message>) -> ServerFrame {
        ServerFrame::Joined {
            member_count: 1,
            topic: None,
            id: None,
            room: room.into(),
            members: members.iter().map(|m| (*m).to_owned()).collect(),
            away: Vec::new(),
            history,
            last_seq: 0,
            resume: Resume::Fresh,
            gap: None,
            docs: Vec::new(),
            docs_read_only: false,
        }
    }

    fn texts(view: &View) -> Vec<String> {
        view.lines
            .iter()
            .map(|line| match line {
                Line::Message { text, .. } => text.clone(),
                Line::Notice(text) => format!("-- {text}"),
                Line::Error(text) => format!("!! {text}"),
                Line::Text(text) => text.clone(),
                Line::Help { usage, text } => format!("--   {usage}  {text}"),
                Line::Pending { text, refused, .. } => {
                    format!("~~ {text}{}", if *refused { " (not sent)" } else { "" })
                }
            })
            .collect()
    }

    #[test]
    fn joining_opens_a_view_and_messages_elsewhere_count_as_unread() {
        let mut s = State::default();
        s.on_frame(&welcome("alice"));
        assert_eq!(s.connection, Connection::Connected);
        s.on_frame(&joined("lobby", &["alice", "bob"], vec![message("lobby", 1, "bob", "hi")]));
        s.on_frame(&joined("dev", &["alice"], vec![]));
        assert_eq!(s.current().name, "dev", "a room joined becomes current");
        s.on_frame(&ServerFrame::Message(message("lobby", 2, "bob", "where is everyone")));
        s.on_frame(&ServerFrame::Message(message("lobby", 3, "bob", "ALICE, look")));
        let lobby = s.find("lobby", &Kind::Room).unwrap_or(0);
        assert_eq!((s.views[lobby].unread, s.views[lobby].mentioned), (2, true));
        s.select(lobby);
        assert_eq!((s.views[lobby].unread, s.views[lobby].mentioned), (0, false));
        assert_eq!(
            texts(&s.views[lobby]),
            ["hi", "-- joined lobby (2 members)", "where is everyone", "ALICE, look"]
        );
        // A resumed join repeats what was seen: nothing twice.
        s.on_frame(&joined(
            "lobby",
            &["alice", "bob"],
            vec![message("lobby", 2, "bob", "where is everyone")],
        ));
        assert_eq!(s.views[lobby].lines.len(), 4);
    }

    #[test]
    fn mentions_are_whole_words() {
        let mut s = State::default();
        s.on_frame(&welcome("al"));
        assert!(s.mentions_me("hey al!"));
        assert!(s.mentions_me("Al: ping"));
        assert!(!s.mentions_me("alice and albert"));
    }

    #[test]
    fn presence_keeps_the_member_list() {
        let mut s = State::default();
        s.on_frame(&welcome("alice"));
        s.on_frame(&joined("lobby", &["alice"], vec![]));
        let presence = |event, nick: &str, old: Option<&str>| ServerFrame::Presence {
            room: "lobby".into(),
            event,
            nick: nick.into(),
            old: old.map(str::to_owned),
        };
        s.on_frame(&presence(PresenceEvent::Join, "bob", None));
        s.on_frame(&presence(PresenceEvent::Join, "Carol", None));
        s.on_frame(&presence(PresenceEvent::Nick, "robert", Some("bob")));
        s.on_frame(&presence(PresenceEvent::Leave, "Carol", None));
        assert_eq!(s.current().members, ["alice", "robert"]);
        assert_eq!(texts(s.current()).last().map(String::as_str), Some("-- Carol left"));
    }

    #[test]
    fn direct_messages_get_their_own_view_named_after_the_other_side() {
        let mut s = State::default();
        s.on_frame(&welcome("alice"));
        s.on_frame(&joined("lobby", &["alice"], vec![]));
        let dm = |from: &str, to: &str, text: &str| ServerFrame::Direct {
            from: from.into(),
            to: to.into(),
            with: String::new(),
            conversation: String::new(),
            seq: 0,
            text: text.into(),
            ts: 1,
            id: None,
        };
        s.on_frame(&dm("bob", "alice", "psst"));
        s.on_frame(&dm("alice", "bob", "yes?"));
        let at = s.find("bob", &Kind::Direct).unwrap_or(0);
        assert_eq!(texts(&s.views[at]), ["psst", "yes?"]);
        assert_eq!(
            (s.views[at].unread, s.views[at].mentioned),
            (1, true),
            "my own reply is not unread"
        );
    }

    #[test]
    fn scrolling_to_the_top_asks_for_older_messages_once() {
        let mut s = State::default();
        s.on_frame(&welcome("alice"));
        let history: Vec<Message> =
            (41..=50).map(|seq| message("lobby", seq, "bob", &format!("m{seq}"))).collect();
        s.on_frame(&joined("lobby", &["alice", "bob"], history));
        assert_eq!(s.scroll_up(3, 5, |_| 1), None, "not at the top yet");
        let ask = s.scroll_up(100, 5, |_| 1);
        assert_eq!(
            ask,
            Some(ClientFrame::History {
                room: "lobby".into(),
                before: Some(41),
                limit: Some(PAGE)
            })
        );
        assert_eq!(s.scroll_up(1, 5, |_| 1), None, "already waiting");
        let older: Vec<Message> =
            (1..=40).map(|seq| message("lobby", seq, "bob", &format!("m{seq}"))).collect();
        s.on_frame(&ServerFrame::History { id: None, room: "lobby".into(), messages: older });
        assert_eq!(texts(s.current()).first().map(String::as_str), Some("m1"));
        assert_eq!(s.current().lines.len(), 51);
        assert_eq!(s.scroll_up(1000, 5, |_| 1), None, "seq 1 is the beginning");
        s.scroll_down(1000);
        assert_eq!(s.current().scroll, 0);
    }

    #[test]
    fn clear_then_page_up_brings_history_back_and_a_short_view_does_not_scroll() {
        let mut s = State::default();
        s.on_frame(&welcome("alice"));
        let history: Vec<Message> =
            (1..=3).map(|seq| message("lobby", seq, "bob", &format!("m{seq}"))).collect();
        s.on_frame(&joined("lobby", &["alice", "bob"], history));
        // Four lines on a screen of ten: nothing to scroll to.
        assert_eq!(s.scroll_up(5, 10, |_| 1), None);
        assert_eq!(s.current().scroll, 0, "not into emptiness");
        s.clear();
        let ask = s.scroll_up(5, 10, |_| 1);
        assert_eq!(
            ask,
            Some(ClientFrame::History { room: "lobby".into(), before: Some(4), limit: Some(PAGE) }),
            "the newest shown, and older"
        );
        let back: Vec<Message> =
            (1..=3).map(|seq| message("lobby", seq, "bob", &format!("m{seq}"))).collect();
        s.on_frame(&ServerFrame::History { id: None, room: "lobby".into(), messages: back });
        assert_eq!(texts(s.current()), ["m1", "m2", "m3"]);
    }

    #[test]
    fn join_of_a_joined_room_shows_it_and_a_dm_sent_elsewhere_is_confirmed_there() {
        let mut s = State::default();
        s.on_frame(&welcome("alice"));
        s.on_frame(&joined("lobby", &["alice"], vec![]));
        s.on_frame(&joined("dev", &["alice"], vec![]));
        assert_eq!(s.current().name, "dev");
        assert!(s.show_room("#lobby"), "joined: shown without asking the server");
        assert_eq!(s.current().name, "lobby");
        assert!(!s.show_room("ops"), "not joined: the server is asked");
        s.on_frame(&ServerFrame::Direct {
            id: Some("d".into()),
            from: "alice".into(),
            to: "bob".into(),
            with: "bob".into(),
            conversation: "~0a".into(),
            seq: 3,
            text: "psst".into(),
            ts: 3,
        });
        assert_eq!(s.current().name, "lobby", "the user stays where they are");
        assert!(
            texts(s.current()).iter().any(|t| t.contains("to @bob: psst")),
            "{:?}",
            texts(s.current())
        );
        // Scrolling up in the conversation pages back through it.
        let at = s.find("bob", &Kind::Direct).unwrap_or(0);
        s.select(at);
        s.on_frame(&ServerFrame::Conversation {
            id: None,
            conversation: "~0a".into(),
            with: "bob".into(),
            messages: vec![chat_protocol::DirectLine {
                seq: 5,
                ts: 5,
                from: "bob".into(),
                text: "five".into(),
                id: None,
            }],
            last_seq: 5,
            resume: Resume::Fresh,
            gap: None,
        });
        let ask = s.scroll_up(10, 1, |_| 1);
        let Some(ClientFrame::Conversation { conversation, before, .. }) = ask else {
            panic!("{ask:?}");
        };
        assert_eq!((conversation.as_deref(), before), (Some("~0a"), Some(3)));
        s.on_frame(&ServerFrame::Conversation {
            id: Some("p".into()),
            conversation: "~0a".into(),
            with: "bob".into(),
            messages: Vec::new(),
            last_seq: 5,
            resume: Resume::Fresh,
            gap: None,
        });
        assert!(s.current().complete);
        assert_eq!(texts(s.current()), ["psst", "five"]);
    }

    #[test]
    fn the_rooms_asked_for_on_connecting_complete_without_being_shown() {
        let mut s = State::default();
        s.on_frame(&welcome("alice"));
        s.on_frame(&joined("lobby", &["alice"], vec![]));
        let before = s.current().lines.len();
        let rooms =
            vec![chat_protocol::RoomInfo { topic: None, name: "dev-ops".into(), members: 3 }];
        s.on_frame(&ServerFrame::Rooms { id: Some(QUIET_ROOMS.into()), rooms });
        assert_eq!(s.current().lines.len(), before, "not shown");
        assert_eq!(s.rooms(), ["dev-ops", "lobby"], "but offered to Tab");
        let mut editor = super::super::editor::Editor::default();
        editor.insert("/join #de");
        assert!(editor.complete(&[], &s.rooms(), &[]));
        assert_eq!(editor.text(), "/join #dev-ops ");
    }

    #[test]
    fn edits_and_deletions_change_the_lines_they_are_about() {
        let mut s = State::default();
        s.on_frame(&welcome("alice"));
        let history =
            vec![message("lobby", 1, "alice", "teh typo"), message("lobby", 2, "alice", "oops")];
        s.on_frame(&joined("lobby", &["alice"], history));
        assert_eq!(s.current().last_own("alice"), Some(2));
        let change = |seq: u64, edit: Option<u64>, delete: Option<u64>, text: &str| {
            ServerFrame::Message(Message { edit, delete, ..message("lobby", seq, "alice", text) })
        };
        s.on_frame(&change(3, Some(1), None, "the typo"));
        s.on_frame(&change(4, None, Some(2), ""));
        let shown = texts(s.current());
        assert!(shown.contains(&"the typo (edited)".to_owned()), "{shown:?}");
        assert!(shown.contains(&"(message deleted)".to_owned()), "{shown:?}");
        assert!(!shown.iter().any(|t| t == "teh typo" || t == "oops"), "{shown:?}");
        assert_eq!(s.current().last_own("alice"), Some(1), "a deleted one is done with");
        // In history, a change is already in the message it changed.
        let older = vec![
            Message { edited: true, ..message("lobby", 1, "alice", "the typo") },
            Message { edit: Some(1), ..message("lobby", 3, "alice", "the typo") },
        ];
        let mut s = State::default();
        s.on_frame(&welcome("bob"));
        s.on_frame(&joined("lobby", &["bob"], older));
        assert_eq!(texts(s.current()).iter().filter(|t| t.contains("the typo")).count(), 1);
    }

    #[test]
    fn errors_show_in_the_current_view_and_leaving_closes_the_view() {
        let mut s = State::default();
        s.on_frame(&welcome("alice"));
        s.on_frame(&joined("lobby", &["alice"], vec![]));
        s.on_frame(&joined("dev", &["alice"], vec![]));
        s.on_frame(&ServerFrame::Error {
            id: None,
            code: chat_protocol::ErrorCode::RateLimited,
            message: "slow down".into(),
            retry_after_ms: Some(5),
        });
        assert_eq!(
            texts(s.current()).last().map(String::as_str),
            Some("!! rate_limited: slow down")
        );
        s.on_frame(&ServerFrame::Left { id: None, room: "dev".into() });
        assert_eq!(s.current().name, "lobby");
        assert_eq!(s.views.len(), 2, "status and lobby");
    }

    #[test]
    fn rooms_open_before_the_server_answers_and_their_join_is_noted_once() {
        let mut s = State::default();
        s.open_rooms(&["lobby".to_owned(), "dev".to_owned()]);
        assert_eq!(s.current().name, "lobby", "the first room is shown at start");
        assert_eq!(s.current_room(), Some("lobby"), "so it can be typed into offline");
        s.on_frame(&welcome("alice"));
        s.on_frame(&joined("lobby", &["alice"], vec![message("lobby", 1, "bob", "hi")]));
        s.on_frame(&joined("dev", &["alice"], vec![]));
        assert_eq!(s.current().name, "lobby", "rooms opened at start do not take the screen");
        // A reconnect joins again: nothing new to say, nothing twice.
        s.on_frame(&joined("lobby", &["alice"], vec![message("lobby", 1, "bob", "hi")]));
        assert_eq!(texts(s.current()), ["hi", "-- joined lobby (1 member)"]);
        // A room joined later is shown.
        s.on_frame(&joined("ops", &["alice"], vec![]));
        assert_eq!(s.current().name, "ops");
        let mut rooms = s.rooms();
        rooms.sort();
        assert_eq!(rooms, ["dev", "lobby", "ops"]);
    }

    #[test]
    fn clear_empties_a_view_and_close_closes_only_conversations() {
        let mut s = State::default();
        s.on_frame(&welcome("alice"));
        s.on_frame(&joined("lobby", &["alice"], vec![message("lobby", 1, "bob", "hi")]));
        s.clear();
        assert!(s.current().lines.is_empty());
        assert!(!s.close_direct(), "a room is left, not closed");
        s.on_frame(&ServerFrame::Direct {
            id: None,
            from: "bob".into(),
            to: "alice".into(),
            with: "bob".into(),
            conversation: "~0a".into(),
            seq: 1,
            text: "psst".into(),
            ts: 1,
        });
        let at = s.views.iter().position(|view| view.kind == Kind::Direct).unwrap();
        s.select(at);
        assert!(s.close_direct());
        assert!(s.views.iter().all(|view| view.kind != Kind::Direct));
        assert_eq!(s.current().name, "lobby");
    }
}
