//! A deterministic driver for `Chat`: a fake clock and one inbox per member,
//! in the manner of quinn's `Pair` and str0m's `TestRtc`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chat_core::{
    Chat, ChatConfig, Command, Conversation, Departure, Direct, Event, MemberId, Message,
    MessageKind, Nick, Output, Record, RoomHistory, RoomName, SessionToken, Source, Timestamp,
};

pub struct Harness {
    pub chat: Chat,
    pub now: Timestamp,
    inboxes: BTreeMap<MemberId, Vec<Arc<Event>>>,
    /// How many `Deliver` outputs the last call produced.
    pub last_outputs: usize,
    /// Connections the core asked to close, in order.
    pub disconnected: Vec<MemberId>,
    /// Everything the core asked to persist, in order: the durable store.
    pub stored: Vec<Record>,
    /// Simulate a crash right after the next record is persisted: the
    /// outputs after it (the deliveries) are lost and `crashed` is set.
    pub crash_on_persist: bool,
    pub crashed: bool,
    /// Answer `Output::Load` at once from `stored` (the default); off, the
    /// rooms asked for wait in `loads` until `answer_loads`.
    pub auto_load: bool,
    pub loads: Vec<RoomName>,
    /// Every `Output::Load` seen, in order.
    pub loads_seen: Vec<RoomName>,
    /// Every `Output::DropDoc`, in order: room, document, content.
    pub dropped_docs: Vec<(RoomName, RoomName, bool)>,
    /// Every `Output::ListVersions` and `Output::RestoreDoc`, in order.
    pub doc_requests: Vec<Output>,
    tokens: u64,
}

impl Harness {
    pub fn new() -> Self {
        Self::with_config(ChatConfig::default())
    }

    pub fn with_config(config: ChatConfig) -> Self {
        Self {
            chat: Chat::new(config),
            now: Timestamp::from_unix_millis(1_700_000_000_000),
            inboxes: BTreeMap::new(),
            last_outputs: 0,
            disconnected: Vec::new(),
            stored: Vec::new(),
            crash_on_persist: false,
            crashed: false,
            auto_load: true,
            loads: Vec::new(),
            loads_seen: Vec::new(),
            dropped_docs: Vec::new(),
            doc_requests: Vec::new(),
            tokens: 0,
        }
    }

    /// A new process on the same store and clock: every connection is gone,
    /// and the chat is rebuilt from what was stored, as the server does:
    /// sessions that did not end, and recent message ids. Rooms come back
    /// when joined.
    pub fn restarted(self) -> Self {
        let config = self.chat.config().clone();
        let mut next = Self::with_config(config);
        next.now = self.now;
        next.tokens = self.tokens;
        let mut sessions: BTreeMap<SessionToken, Option<Nick>> = BTreeMap::new();
        // Conversations first, as the server restores them: a direct
        // message's retry is answered as one.
        let mut conversations: BTreeMap<RoomName, Conversation> = BTreeMap::new();
        for record in &self.stored {
            if let Record::Direct(Direct { message, nicks }) = record {
                let summary = Conversation {
                    name: message.room.clone(),
                    nicks: nicks.clone(),
                    last_seq: message.seq,
                    last_ts: message.ts,
                };
                conversations.insert(message.room.clone(), summary);
            }
        }
        for conversation in conversations.into_values() {
            next.chat.restore_conversation(conversation);
        }
        for record in &self.stored {
            match record {
                Record::Message(message) | Record::Direct(Direct { message, .. }) => {
                    next.chat.restore_message(next.now, message.clone())
                }
                Record::Session { token, nick } => {
                    sessions.insert(token.clone(), Some(nick.clone()));
                }
                Record::SessionEnded(token) => {
                    sessions.insert(token.clone(), None);
                }
                // Read back with their room.
                Record::Topic { .. } | Record::Doc { .. } => {}
            }
        }
        for (token, nick) in sessions {
            if let Some(nick) = nick {
                next.chat.restore_session(next.now, token, nick);
            }
        }
        next.stored = self.stored;
        next.drain();
        next
    }

    /// What storage holds of `room`: its numbering and its newest
    /// `history_per_room` messages within the maximum age.
    pub fn stored_room(&self, room: &RoomName) -> Option<RoomHistory> {
        let config = self.chat.config();
        let mut messages: Vec<Message> = self
            .stored
            .iter()
            .filter_map(|record| match record {
                Record::Message(m) | Record::Direct(Direct { message: m, .. })
                    if &m.room == room =>
                {
                    Some(m.clone())
                }
                _ => None,
            })
            .collect();
        // Storage applies a change to the message it changes, as the
        // server's stores do.
        let changes: Vec<(u64, MessageKind, Arc<str>)> = messages
            .iter()
            .filter_map(|m| match m.kind {
                MessageKind::Edit(of) | MessageKind::Delete(of) => {
                    Some((of, m.kind, Arc::clone(&m.text)))
                }
                _ => None,
            })
            .collect();
        for (of, kind, text) in changes {
            if let Some(target) = messages.iter_mut().find(|m| m.seq == of) {
                match kind {
                    MessageKind::Edit(_) => {
                        target.text = text;
                        target.kind = MessageKind::Edited;
                    }
                    _ => {
                        target.text = Arc::from("");
                        target.attachment = None;
                        target.kind = MessageKind::Deleted;
                    }
                }
            }
        }
        let last_seq = messages.iter().map(|m| m.seq).max().unwrap_or(0);
        if let Some(max_age) = config.history_max_age {
            let cutoff = self.now.as_unix_millis().saturating_sub(max_age.as_millis() as u64);
            messages.retain(|m| m.ts.as_unix_millis() >= cutoff);
        }
        let keep = messages.len().saturating_sub(config.history_per_room);
        messages.drain(..keep);
        let topic = self.stored.iter().rev().find_map(|record| match record {
            Record::Topic { room: r, topic } if r == room => Some(topic.clone()),
            _ => None,
        });
        // The room's document list: each entry as last stored.
        let mut docs = BTreeMap::new();
        for record in &self.stored {
            if let Record::Doc { room: r, doc, deleted } = record
                && r == room
            {
                match deleted {
                    true => docs.remove(&doc.name),
                    false => docs.insert(doc.name.clone(), doc.clone()),
                };
            }
        }
        let docs: Vec<_> = docs.into_values().collect();
        let topic = topic.flatten();
        if last_seq == 0 && topic.is_none() && docs.is_empty() {
            return None;
        }
        Some(RoomHistory { last_seq, messages, topic, docs, remote: Vec::new() })
    }

    /// Storage could not keep `records`, as a driver reports it.
    pub fn unstored(&mut self, records: Vec<Record>, retry_after: Duration) {
        self.chat.handle_unstored(self.now, records, retry_after);
        self.drain();
    }

    /// Answers the loads that waited.
    pub fn answer_loads(&mut self) {
        for room in std::mem::take(&mut self.loads) {
            let stored = self.stored_room(&room);
            self.chat.handle_loaded(self.now, &room, stored);
            self.drain();
        }
    }

    pub fn connect(&mut self) -> MemberId {
        let source = Source::new(self.tokens + 1_000_000);
        self.connect_from(source)
    }

    pub fn connect_from(&mut self, source: Source) -> MemberId {
        self.tokens += 1;
        let token = SessionToken::parse(&format!("token-{}", self.tokens)).unwrap();
        let member = self.chat.handle_connect(self.now, token, source);
        self.inboxes.insert(member, Vec::new());
        self.drain();
        member
    }

    /// Connects, says hello with `nick` and clears the inbox.
    pub fn greeted(&mut self, nick: &str) -> MemberId {
        let member = self.connect();
        self.send(
            member,
            Command::Hello { nick: Some(nick.to_owned()), session: None, identity: None },
        );
        let events = self.take(member);
        assert!(
            matches!(events.as_slice(), [Event::Welcome { .. }]),
            "hello as {nick}: {events:?}"
        );
        member
    }

    /// Connects and says hello with `nick`: the member and its session's
    /// token.
    pub fn greeted_with_token(&mut self, nick: &str) -> (MemberId, SessionToken) {
        let member = self.connect();
        let hello = Command::Hello { nick: Some(nick.to_owned()), session: None, identity: None };
        self.send(member, hello);
        match self.take(member).as_slice() {
            [Event::Welcome { session, .. }] => (member, session.clone()),
            other => panic!("hello as {nick}: {other:?}"),
        }
    }

    /// The driver takes an edit of document `doc` of `room` from the
    /// session of `token`, if the core lets it.
    pub fn doc_edit(
        &mut self,
        token: &SessionToken,
        room: &str,
        doc: &str,
    ) -> Result<(), chat_core::CommandError> {
        let (room, doc) = (RoomName::parse(room).unwrap(), RoomName::parse(doc).unwrap());
        let result = self.chat.handle_doc_edit(self.now, token, &room, &doc);
        self.drain();
        result
    }

    pub fn send(&mut self, member: MemberId, command: Command) {
        self.send_with_id(member, None, command);
    }

    pub fn send_with_id(&mut self, member: MemberId, id: Option<&str>, command: Command) {
        self.chat.handle_command(self.now, member, id, command);
        self.drain();
    }

    pub fn join(&mut self, member: MemberId, room: &str) {
        self.send(member, Command::Join { room: room.to_owned(), after: None });
    }

    pub fn say(&mut self, member: MemberId, room: &str, text: &str) {
        self.send(
            member,
            Command::Say { room: room.into(), text: text.into(), action: false, attachment: None },
        );
    }

    /// The connection breaks: the session waits for a resume.
    pub fn disconnect(&mut self, member: MemberId) {
        self.depart(member, Departure::Lost);
    }

    /// The client says goodbye: the session ends at once.
    pub fn quit(&mut self, member: MemberId) {
        self.depart(member, Departure::Quit);
    }

    fn depart(&mut self, member: MemberId, departure: Departure) {
        self.chat.handle_disconnect(self.now, member, departure);
        self.drain();
        self.inboxes.remove(&member);
    }

    /// Moves the clock and fires the timeout if it is due, as a driver would.
    pub fn advance(&mut self, by: Duration) {
        self.now = self.now.saturating_add(by);
        if self.chat.poll_timeout().is_some_and(|t| t <= self.now) {
            self.chat.handle_timeout(self.now);
            self.drain();
        }
    }

    /// Everything `member` received since the last take.
    pub fn take(&mut self, member: MemberId) -> Vec<Event> {
        let inbox = self.inboxes.get_mut(&member).map(std::mem::take).unwrap_or_default();
        inbox.into_iter().map(|event| (*event).clone()).collect()
    }

    pub fn take_all(&mut self) {
        for inbox in self.inboxes.values_mut() {
            inbox.clear();
        }
    }

    fn drain(&mut self) {
        self.last_outputs = 0;
        while let Some(output) = self.chat.poll_output() {
            let (to, event) = match output {
                Output::Deliver { to, event } => (to, event),
                Output::Persist(record) => {
                    self.stored.push(record);
                    if self.crash_on_persist {
                        self.crashed = true;
                        while self.chat.poll_output().is_some() {}
                        return;
                    }
                    continue;
                }
                Output::DropDoc { room, doc, content } => {
                    self.dropped_docs.push((room, doc, content));
                    continue;
                }
                Output::ListVersions { .. } | Output::RestoreDoc { .. } => {
                    self.doc_requests.push(output);
                    continue;
                }
                Output::Disconnect { member, .. } => {
                    self.disconnected.push(member);
                    self.inboxes.remove(&member);
                    continue;
                }
                Output::Append { .. }
                | Output::AppendDirect { .. }
                | Output::Forget(_)
                | Output::Conversations { .. }
                | Output::Whois { .. }
                | Output::Claim { .. }
                | Output::Release { .. }
                | Output::Share { .. }
                | Output::Lookup { .. } => {
                    panic!("this harness is one core, alone: {output:?}")
                }
                Output::Load(room) => {
                    self.loads_seen.push(room.clone());
                    if self.auto_load {
                        let stored = self.stored_room(&room);
                        self.chat.handle_loaded(self.now, &room, stored);
                    } else {
                        self.loads.push(room);
                    }
                    continue;
                }
            };
            self.last_outputs += 1;
            let mut seen = to.to_vec();
            seen.sort();
            seen.dedup();
            assert_eq!(seen.len(), to.len(), "a recipient appears twice in {to:?}");
            for member in to.iter() {
                let inbox = self.inboxes.get_mut(member);
                let inbox = inbox.unwrap_or_else(|| panic!("delivery to unknown {member}"));
                inbox.push(Arc::clone(&event));
            }
        }
    }
}

/// The one error of `events`: what a refused command answers.
pub fn error(events: &[Event]) -> chat_core::CommandError {
    match events {
        [Event::Error { error, .. }] => error.clone(),
        other => panic!("one error: {other:?}"),
    }
}
