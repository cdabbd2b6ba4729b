use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use crate::bucket::{Rate, TokenBucket};
use crate::dedupe::Dedupe;
use crate::room::{Room, SessionId};
use crate::{
    Attachment, ChatConfig, Command, CommandError, Departure, Direct, DisconnectReason, Event,
    Identity, MemberId, Message, Nick, Output, Presence, Record, RoomId, RoomName, RoomPattern,
    SessionToken, Timestamp,
};

/// How often rooms are pruned of messages older than
/// [`ChatConfig::history_max_age`].
const PRUNE_EVERY: Duration = Duration::from_secs(60);

/// The whole chat: connections, sessions, rooms and their rules, with no IO.
///
/// A *member* ([`MemberId`]) is one connection. A *session* is who that
/// connection speaks for: a nick, the rooms joined and a [`SessionToken`].
/// When a connection drops, its session waits
/// [`ChatConfig::session_grace`] for a new connection to resume it (with
/// `hello {session}`); only then do the others see it leave, and its nick is
/// reserved until then.
///
/// # Contract
/// - Call [`Chat::handle_connect`] for each new connection, then
///   [`Chat::handle_command`] for each of its commands and
///   [`Chat::handle_disconnect`] once when it goes away.
/// - After each `handle_*` call, drain [`Chat::poll_output`] until it returns
///   `None` and carry out every [`Output`] in order; then read
///   [`Chat::poll_timeout`] and call [`Chat::handle_timeout`] once that time
///   has come. Spurious or late `handle_timeout` calls are harmless.
/// - `now` must not go backwards from one call to the next.
///
/// Every collection iterates in a fixed order, so the same sequence of calls
/// always yields the same outputs.
#[derive(Debug)]
pub struct Chat {
    config: ChatConfig,
    conns: BTreeMap<MemberId, Conn>,
    sessions: BTreeMap<SessionId, Session>,
    tokens: BTreeMap<SessionToken, SessionId>,
    /// Folded nick to the session holding it, attached or not.
    nicks: BTreeMap<String, SessionId>,
    rooms: BTreeMap<RoomId, Room>,
    room_ids: BTreeMap<RoomName, RoomId>,
    dedupe: Dedupe,
    outputs: VecDeque<Output>,
    /// When each relayed `typing` stops throttling, in the order relayed.
    /// `now` never goes backwards, so this is sorted by deadline.
    typing_deadlines: VecDeque<(Timestamp, SessionId, RoomId)>,
    /// When each detached session expires, in the order detached.
    expiries: VecDeque<(Timestamp, SessionId)>,
    /// When sessions' identities expire (stale entries of renewed ones
    /// are skipped).
    grant_deadlines: BTreeSet<(Timestamp, SessionId)>,
    next_prune: Option<Timestamp>,
    next_member: u64,
    next_session: u64,
    next_room: u64,
    next_guest: u64,
}

#[derive(Debug)]
struct Conn {
    /// The token a new session started by this connection gets.
    proposed: SessionToken,
    session: Option<SessionId>,
}

#[derive(Debug)]
struct Session {
    token: SessionToken,
    nick: Nick,
    rooms: BTreeSet<RoomId>,
    /// The connection speaking for the session, if one is.
    conn: Option<MemberId>,
    /// When the last connection went away, while none is attached.
    detached_at: Option<Timestamp>,
    /// What the session's identity grants, if it has one (boxed: most
    /// sessions have none).
    grant: Option<Box<Grant>>,
    messages: TokenBucket,
    /// Joins of new rooms.
    joins: TokenBucket,
    /// When a `typing` was last relayed for each room.
    typing: BTreeMap<RoomId, Timestamp>,
}

/// What a session's identity grants.
#[derive(Debug, Clone)]
struct Grant {
    rooms: Option<Vec<RoomPattern>>,
    expires: Timestamp,
}

impl Grant {
    fn allows(&self, room: &RoomName) -> bool {
        self.rooms.as_ref().is_none_or(|patterns| patterns.iter().any(|p| p.matches(room)))
    }
}

/// What a `say` carries.
struct Said {
    text: String,
    action: bool,
    attachment: Option<Arc<Attachment>>,
}

impl Chat {
    /// An empty chat with the given rules.
    pub fn new(config: ChatConfig) -> Self {
        Self {
            dedupe: Dedupe::new(config.dedupe_window, config.dedupe_max),
            config,
            conns: BTreeMap::new(),
            sessions: BTreeMap::new(),
            tokens: BTreeMap::new(),
            nicks: BTreeMap::new(),
            rooms: BTreeMap::new(),
            room_ids: BTreeMap::new(),
            outputs: VecDeque::new(),
            typing_deadlines: VecDeque::new(),
            expiries: VecDeque::new(),
            grant_deadlines: BTreeSet::new(),
            next_prune: None,
            next_member: 1,
            next_session: 1,
            next_room: 1,
            next_guest: 1,
        }
    }

    /// Registers a new connection and returns the id naming it. `proposed`
    /// is the token its session gets if it starts a new one: the driver
    /// makes it random and unguessable. The member has no nick until its
    /// `hello`.
    pub fn handle_connect(&mut self, now: Timestamp, proposed: SessionToken) -> MemberId {
        if self.next_prune.is_none() && self.config.history_max_age.is_some() {
            self.next_prune = Some(now.saturating_add(PRUNE_EVERY));
        }
        let id = MemberId::new(self.next_member);
        self.next_member += 1;
        self.conns.insert(id, Conn { proposed, session: None });
        id
    }

    /// Handles one command of `member`. `id` is the request id to echo in the
    /// reply. Commands of a member that is not connected are ignored: they
    /// can only come from a connection that raced its own disconnect.
    pub fn handle_command(
        &mut self,
        now: Timestamp,
        member: MemberId,
        id: Option<&str>,
        command: Command,
    ) {
        let Some(conn) = self.conns.get(&member) else {
            return;
        };
        let session = conn.session;
        let id: Option<Arc<str>> = id.map(Arc::from);
        let result = match (command, session) {
            (Command::Hello { nick, session: token, identity }, None) => {
                self.hello(now, member, &id, nick, token, identity)
            }
            (Command::Hello { .. }, Some(_)) => Err(CommandError::AlreadyGreeted),
            (_, None) => Err(CommandError::HelloRequired),
            (Command::Join { room, after }, Some(s)) => {
                self.join(now, member, s, &id, &room, after)
            }
            (Command::Leave { room }, Some(s)) => self.leave(member, s, &id, &room),
            (Command::Say { room, text, action, attachment }, Some(s)) => {
                self.say(now, member, s, &id, &room, Said { text, action, attachment })
            }
            (Command::Dm { to, text }, Some(s)) => self.dm(now, member, s, &id, &to, text),
            (Command::Nick { nick }, Some(s)) => self.rename(member, s, &id, &nick),
            (Command::Typing { room }, Some(s)) => self.typing(now, member, s, &room),
            (Command::Rooms, Some(_)) => {
                let rooms = self.rooms_by_name();
                self.reply(member, Event::Rooms { id: id.clone(), rooms });
                Ok(())
            }
            (Command::Who { room }, Some(_)) => self.who(member, &id, &room),
            (Command::History { room, before, limit }, Some(s)) => {
                self.history(member, s, &id, &room, before, limit)
            }
            (Command::Ping, Some(_)) => {
                self.reply(member, Event::Pong { id: id.clone() });
                Ok(())
            }
            (Command::Auth { identity }, Some(s)) => self.auth(now, member, s, &id, identity),
        };
        if let Err(error) = result {
            self.reply(member, Event::Error { id, error });
        }
    }

    /// The connection is gone. If the client said goodbye
    /// ([`Departure::Quit`]) its session ends now: it leaves every room and
    /// its nick becomes free. If the connection was lost, the session is
    /// kept for [`ChatConfig::session_grace`] so a new connection can resume
    /// it, and ends only then. Unknown members are ignored.
    pub fn handle_disconnect(&mut self, now: Timestamp, member: MemberId, departure: Departure) {
        let Some(conn) = self.conns.remove(&member) else {
            return;
        };
        let Some(sid) = conn.session else {
            return;
        };
        let Some(session) = self.sessions.get_mut(&sid) else {
            return;
        };
        if session.conn != Some(member) {
            return;
        }
        session.conn = None;
        session.detached_at = Some(now);
        let rooms: Vec<RoomId> = session.rooms.iter().copied().collect();
        for room in rooms {
            self.refresh_recipients(room);
        }
        if departure == Departure::Quit || self.config.session_grace.is_zero() {
            self.end_session(sid);
        } else {
            self.expiries.push_back((now.saturating_add(self.config.session_grace), sid));
        }
    }

    /// Lets time-based state expire: typing throttles, sessions whose grace
    /// period passed, remembered message ids, messages past their maximum
    /// age. Harmless to call at any time.
    pub fn handle_timeout(&mut self, now: Timestamp) {
        let interval = self.config.typing_interval;
        while let Some(&(deadline, sid, room)) = self.typing_deadlines.front() {
            if deadline > now {
                break;
            }
            self.typing_deadlines.pop_front();
            if let Some(session) = self.sessions.get_mut(&sid) {
                // Only forget the entry if no later `typing` replaced it.
                if session.typing.get(&room).is_some_and(|&t| t.saturating_add(interval) <= now) {
                    session.typing.remove(&room);
                }
            }
        }
        let grace = self.config.session_grace;
        while let Some(&(deadline, sid)) = self.expiries.front() {
            if deadline > now {
                break;
            }
            self.expiries.pop_front();
            // Only if the session is still detached since that deadline was
            // set; a resumed (and maybe detached again) session has a newer one.
            let expired = self.sessions.get(&sid).is_some_and(|s| {
                s.conn.is_none() && s.detached_at.is_some_and(|at| at.saturating_add(grace) <= now)
            });
            if expired {
                self.end_session(sid);
            }
        }
        while let Some(&(deadline, sid)) = self.grant_deadlines.first() {
            if deadline > now {
                break;
            }
            self.grant_deadlines.pop_first();
            // Only if no later identity renewed the session meanwhile.
            let session = self.sessions.get(&sid);
            if session.and_then(|s| s.grant.as_ref()).is_some_and(|g| g.expires == deadline) {
                if let Some(member) = session.and_then(|s| s.conn) {
                    self.conns.remove(&member);
                    let reason = DisconnectReason::IdentityExpired;
                    self.outputs.push_back(Output::Disconnect { member, reason });
                }
                self.end_session(sid);
            }
        }
        self.dedupe.expire(now);
        if let (Some(at), Some(max_age)) = (self.next_prune, self.config.history_max_age)
            && at <= now
        {
            let cutoff =
                Timestamp::from_unix_millis(now.as_unix_millis().saturating_sub(millis(max_age)));
            for room in self.rooms.values_mut() {
                room.prune_before(cutoff);
            }
            self.next_prune = Some(now.saturating_add(PRUNE_EVERY));
        }
    }

    /// The next instruction for the driver, in order; `None` when drained.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    /// When [`Chat::handle_timeout`] should next be called, if ever.
    pub fn poll_timeout(&self) -> Option<Timestamp> {
        [
            self.typing_deadlines.front().map(|&(deadline, _, _)| deadline),
            self.expiries.front().map(|&(deadline, _)| deadline),
            self.grant_deadlines.first().map(|&(deadline, _)| deadline),
            self.dedupe.next_deadline(),
            self.next_prune,
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// The rules in force.
    pub fn config(&self) -> &ChatConfig {
        &self.config
    }

    /// The nick of a member, once it said hello.
    pub fn nick(&self, member: MemberId) -> Option<&Nick> {
        let sid = self.conns.get(&member)?.session?;
        self.sessions.get(&sid).map(|s| &s.nick)
    }

    /// How many connections are open, greeted or not.
    pub fn member_count(&self) -> usize {
        self.conns.len()
    }

    /// How many sessions exist, attached or waiting to be resumed.
    pub fn session_count(&self) -> usize {
        self.sessions.len()
    }

    /// How many rooms exist.
    pub fn room_count(&self) -> usize {
        self.rooms.len()
    }

    /// How many message ids are remembered for deduplication.
    pub fn dedupe_len(&self) -> usize {
        self.dedupe.len()
    }

    /// The attachment `file` as the session holding `token` may see it: in
    /// a message still in the history of a room the session is in. `None`
    /// if no such message is there (or no such session), so a file is only
    /// ever given to those who could see the message it came with.
    pub fn attachment_for(&self, token: &SessionToken, file: &str) -> Option<&Attachment> {
        let session = self.sessions.get(self.tokens.get(token)?)?;
        session.rooms.iter().filter_map(|room| self.rooms.get(room)).find_map(|room| {
            room.messages()
                .rev()
                .find_map(|message| message.attachment.as_deref().filter(|a| &*a.id == file))
        })
    }

    /// Restores a room from storage at startup, before any connection:
    /// the room exists with `last_seq` (so numbering continues) and its
    /// stored messages, oldest first. Messages still within the dedupe window
    /// are remembered, so a retry after a restart is answered with the
    /// original.
    ///
    /// # Errors
    /// Refuses when the room limit is reached.
    pub fn restore_room(
        &mut self,
        now: Timestamp,
        name: RoomName,
        last_seq: u64,
        messages: Vec<Message>,
    ) -> Result<(), CommandError> {
        let room_id = match self.room_ids.get(&name) {
            Some(&room_id) => room_id,
            None => self.create_room(name)?,
        };
        let capacity = self.config.history_per_room;
        let window = millis(self.config.dedupe_window);
        let mut remembered = Vec::new();
        if let Some(room) = self.rooms.get_mut(&room_id) {
            for message in messages {
                if let (Some(sender), Some(id)) = (&message.sender, &message.id)
                    && now.millis_since(message.ts) < window
                {
                    let event = Arc::new(Event::Message(message.clone()));
                    remembered.push((message.ts, sender.clone(), Arc::clone(id), event));
                }
                room.push(message, capacity);
            }
            room.raise_last_seq(last_seq);
        }
        for (ts, sender, id, event) in remembered {
            self.dedupe.insert(ts, sender, id, event);
        }
        Ok(())
    }

    /// Restores a stored direct message at startup so a retry of it is
    /// still answered with the original; older than the dedupe window, it
    /// is ignored.
    pub fn restore_direct(&mut self, now: Timestamp, direct: Direct) {
        let Some(id) = direct.id.clone() else {
            return;
        };
        if now.millis_since(direct.ts) < millis(self.config.dedupe_window) {
            let event = Arc::new(direct_event(&direct));
            self.dedupe.insert(direct.ts, direct.sender, id, event);
        }
    }

    fn hello(
        &mut self,
        now: Timestamp,
        member: MemberId,
        id: &Option<Arc<str>>,
        nick: Option<String>,
        token: Option<String>,
        identity: Option<Identity>,
    ) -> Result<(), CommandError> {
        let token = token
            .map(|t| SessionToken::parse(&t))
            .transpose()
            .map_err(CommandError::InvalidSession)?;
        let bound = match identity {
            Some(identity) => Some(self.bind(now, identity, nick.as_deref())?),
            None if self.config.require_identity => return Err(CommandError::Unauthorized),
            None => None,
        };
        // With an identity, the session holding its nick is this client's
        // own, whatever session token it brought.
        let held = bound.as_ref().and_then(|(nick, _)| self.nicks.get(&nick.folded()).copied());
        let named = token.as_ref().and_then(|t| self.tokens.get(t)).copied();
        if let Some(sid) = held.or(named) {
            if let Some((nick, grant)) = bound {
                let session = self.sessions.get_mut(&sid).ok_or(CommandError::Unauthorized)?;
                if session.nick.folded() != nick.folded() {
                    return Err(CommandError::Forbidden(format!(
                        "this session belongs to {}, the token to {nick}",
                        session.nick
                    )));
                }
                session.grant = Some(Box::new(grant.clone()));
                self.grant_deadlines.insert((grant.expires, sid));
            }
            self.resume_session(member, sid, id);
            return Ok(());
        }
        let (nick, grant) = match bound {
            Some((nick, grant)) => (Some(nick.as_str().to_owned()), Some(grant)),
            None => (nick, None),
        };
        let nick = match nick {
            Some(text) => {
                let nick = Nick::parse(&text).map_err(CommandError::InvalidNick)?;
                if self.nicks.contains_key(&nick.folded()) {
                    return Err(CommandError::NickTaken(nick));
                }
                nick
            }
            None => self.guest_nick(),
        };
        let token = match token {
            Some(token) => token,
            None => match self.conns.get(&member) {
                Some(conn) => conn.proposed.clone(),
                None => return Ok(()),
            },
        };
        if self.tokens.contains_key(&token) {
            // Only a driver reusing a token can get here: refuse rather than
            // hand this connection someone else's session.
            return Err(CommandError::InvalidSession(crate::NameError::Empty));
        }
        let sid = SessionId(self.next_session);
        self.next_session += 1;
        let session = Session {
            token: token.clone(),
            nick: nick.clone(),
            rooms: BTreeSet::new(),
            conn: Some(member),
            detached_at: None,
            grant: grant.clone().map(Box::new),
            messages: TokenBucket::full(self.message_rate(), now),
            joins: TokenBucket::full(
                Rate { per_sec: self.config.joins_per_sec, burst: self.config.joins_burst },
                now,
            ),
            typing: BTreeMap::new(),
        };
        self.sessions.insert(sid, session);
        self.tokens.insert(token.clone(), sid);
        self.nicks.insert(nick.folded(), sid);
        if let Some(conn) = self.conns.get_mut(&member) {
            conn.session = Some(sid);
        }
        let expires = grant.map(|grant| {
            self.grant_deadlines.insert((grant.expires, sid));
            grant.expires
        });
        let welcome =
            Event::Welcome { id: id.clone(), nick, session: token, resumed: false, expires };
        self.reply(member, welcome);
        Ok(())
    }

    /// Checks a verified identity against the clock and the nick asked for:
    /// the nick it binds, and what it grants.
    fn bind(
        &self,
        now: Timestamp,
        identity: Identity,
        asked: Option<&str>,
    ) -> Result<(Nick, Grant), CommandError> {
        if identity.expires <= now {
            return Err(CommandError::Unauthorized);
        }
        let nick = Nick::parse(&identity.nick).map_err(CommandError::InvalidNick)?;
        if let Some(asked) = asked
            && Nick::parse(asked).map_or(true, |asked| asked.folded() != nick.folded())
        {
            return Err(CommandError::Forbidden(format!("your token is for {nick}")));
        }
        Ok((nick, Grant { rooms: identity.rooms, expires: identity.expires }))
    }

    /// Renews a session's identity; rooms the new one does not allow are
    /// left.
    fn auth(
        &mut self,
        now: Timestamp,
        member: MemberId,
        sid: SessionId,
        id: &Option<Arc<str>>,
        identity: Identity,
    ) -> Result<(), CommandError> {
        let Some(session) = self.sessions.get(&sid) else {
            return Ok(());
        };
        if session.grant.is_none() && !self.config.require_identity {
            return Err(CommandError::Forbidden("this session has no token to renew".to_owned()));
        }
        let current = session.nick.clone();
        let (nick, grant) = self.bind(now, identity, None)?;
        if nick.folded() != current.folded() {
            return Err(CommandError::Forbidden(format!("this session belongs to {current}")));
        }
        let expires = grant.expires;
        let revoked: Vec<RoomName> = session
            .rooms
            .iter()
            .filter_map(|room| self.rooms.get(room))
            .map(|room| room.name.clone())
            .filter(|name| !grant.allows(name))
            .collect();
        if let Some(session) = self.sessions.get_mut(&sid) {
            session.grant = Some(Box::new(grant));
        }
        self.grant_deadlines.insert((expires, sid));
        for name in revoked {
            self.leave(member, sid, &None, name.as_str())?;
        }
        self.reply(member, Event::Authed { id: id.clone(), expires });
        Ok(())
    }

    /// Attaches `member` to an existing session, closing the connection
    /// that held it, if any.
    fn resume_session(&mut self, member: MemberId, sid: SessionId, id: &Option<Arc<str>>) {
        let Some(session) = self.sessions.get_mut(&sid) else {
            return;
        };
        let previous = session.conn.replace(member);
        session.detached_at = None;
        let (nick, token) = (session.nick.clone(), session.token.clone());
        let rooms: Vec<RoomId> = session.rooms.iter().copied().collect();
        if let Some(previous) = previous.filter(|&p| p != member) {
            self.conns.remove(&previous);
            let reason = DisconnectReason::SessionResumedElsewhere;
            self.outputs.push_back(Output::Disconnect { member: previous, reason });
        }
        if let Some(conn) = self.conns.get_mut(&member) {
            conn.session = Some(sid);
        }
        for room in rooms {
            self.refresh_recipients(room);
        }
        let expires = self.sessions.get(&sid).and_then(|s| s.grant.as_ref()).map(|g| g.expires);
        let welcome =
            Event::Welcome { id: id.clone(), nick, session: token, resumed: true, expires };
        self.reply(member, welcome);
    }

    fn join(
        &mut self,
        now: Timestamp,
        member: MemberId,
        sid: SessionId,
        id: &Option<Arc<str>>,
        room: &str,
        after: Option<u64>,
    ) -> Result<(), CommandError> {
        let name = RoomName::parse(room).map_err(CommandError::InvalidRoom)?;
        self.admit_join(now, sid, &name)?;
        let room_id = match self.room_ids.get(&name) {
            Some(&room_id) => room_id,
            None => self.create_room(name.clone())?,
        };
        let Some(session) = self.sessions.get_mut(&sid) else {
            return Ok(());
        };
        let nick = session.nick.clone();
        if session.rooms.insert(room_id) {
            if let Some(room) = self.rooms.get_mut(&room_id) {
                room.add(sid);
            }
            self.refresh_recipients(room_id);
            if let Some(room) = self.rooms.get(&room_id) {
                let others = room.others(member);
                self.deliver(
                    others,
                    Event::Presence { room: name.clone(), change: Presence::Joined(nick) },
                );
            }
        }
        let Some(room) = self.rooms.get(&room_id) else {
            return Ok(());
        };
        let (history, resume) =
            room.resume(after, self.config.join_history, self.config.resume_max);
        let event = Event::Joined {
            id: id.clone(),
            room: name,
            members: self.sorted_nicks(room.sessions()),
            history,
            last_seq: room.last_seq,
            resume,
        };
        self.reply(member, event);
        Ok(())
    }

    fn leave(
        &mut self,
        member: MemberId,
        sid: SessionId,
        id: &Option<Arc<str>>,
        room: &str,
    ) -> Result<(), CommandError> {
        let (room_id, name) = self.joined_room(sid, room)?;
        let Some(session) = self.sessions.get_mut(&sid) else {
            return Ok(());
        };
        session.rooms.remove(&room_id);
        session.typing.remove(&room_id);
        let nick = session.nick.clone();
        self.reply(member, Event::Left { id: id.clone(), room: name });
        self.remove_from_room(room_id, sid, &nick);
        Ok(())
    }

    fn say(
        &mut self,
        now: Timestamp,
        member: MemberId,
        sid: SessionId,
        id: &Option<Arc<str>>,
        room: &str,
        Said { text, action, attachment }: Said,
    ) -> Result<(), CommandError> {
        if self.answer_retry(member, sid, id) {
            return Ok(());
        }
        let (room_id, name) = self.joined_room(sid, room)?;
        // A file may come without a caption.
        if attachment.is_none() || !text.is_empty() {
            self.check_text(&text)?;
        }
        self.take_message_token(now, sid)?;
        let Some(session) = self.sessions.get(&sid) else {
            return Ok(());
        };
        let (from, sender) = (session.nick.clone(), session.token.clone());
        let capacity = self.config.history_per_room;
        let Some(room) = self.rooms.get_mut(&room_id) else {
            return Ok(());
        };
        let message = Message {
            room: name,
            seq: room.last_seq + 1,
            ts: now,
            from,
            text: text.into(),
            action,
            id: id.clone(),
            sender: Some(sender.clone()),
            attachment,
        };
        room.push(message.clone(), capacity);
        let to = room.recipients();
        self.outputs.push_back(Output::Persist(Record::Message(message.clone())));
        let event = Arc::new(Event::Message(message));
        self.remember(now, sender, id, &event);
        self.deliver_shared(to, event);
        Ok(())
    }

    fn dm(
        &mut self,
        now: Timestamp,
        member: MemberId,
        sid: SessionId,
        id: &Option<Arc<str>>,
        to: &str,
        text: String,
    ) -> Result<(), CommandError> {
        if self.answer_retry(member, sid, id) {
            return Ok(());
        }
        let to_nick = Nick::parse(to).map_err(CommandError::InvalidNick)?;
        let Some(&recipient) = self.nicks.get(&to_nick.folded()) else {
            return Err(CommandError::NoSuchNick(to.to_owned()));
        };
        self.check_text(&text)?;
        self.take_message_token(now, sid)?;
        let (Some(sender), Some(target)) = (self.sessions.get(&sid), self.sessions.get(&recipient))
        else {
            return Ok(());
        };
        let direct = Direct {
            from: sender.nick.clone(),
            to: target.nick.clone(),
            text: text.into(),
            ts: now,
            id: id.clone(),
            sender: sender.token.clone(),
        };
        let event = Arc::new(direct_event(&direct));
        self.outputs.push_back(Output::Persist(Record::Direct(direct)));
        // A detached recipient misses the DM: direct messages are not stored.
        let mut to: Vec<MemberId> = target.conn.into_iter().collect();
        if recipient != sid {
            to.push(member);
        }
        let token = sender.token.clone();
        self.remember(now, token, id, &event);
        self.deliver_shared(to.into(), event);
        Ok(())
    }

    /// If `id` names a `say` or `dm` this session already had accepted,
    /// answers with the original and returns true.
    fn answer_retry(&mut self, member: MemberId, sid: SessionId, id: &Option<Arc<str>>) -> bool {
        let (Some(id), Some(session)) = (id, self.sessions.get(&sid)) else {
            return false;
        };
        match self.dedupe.get(&session.token, id) {
            Some(original) => {
                self.deliver_shared(Arc::new([member]), original);
                true
            }
            None => false,
        }
    }

    fn remember(
        &mut self,
        now: Timestamp,
        token: SessionToken,
        id: &Option<Arc<str>>,
        event: &Arc<Event>,
    ) {
        if let Some(id) = id {
            self.dedupe.insert(now, token, Arc::clone(id), Arc::clone(event));
        }
    }

    fn rename(
        &mut self,
        member: MemberId,
        sid: SessionId,
        id: &Option<Arc<str>>,
        nick: &str,
    ) -> Result<(), CommandError> {
        if self.sessions.get(&sid).is_some_and(|session| session.grant.is_some()) {
            return Err(CommandError::Forbidden(
                "your nick is the one your token names".to_owned(),
            ));
        }
        let new = Nick::parse(nick).map_err(CommandError::InvalidNick)?;
        let folded = new.folded();
        if self.nicks.get(&folded).is_some_and(|&holder| holder != sid) {
            return Err(CommandError::NickTaken(new));
        }
        let Some(session) = self.sessions.get_mut(&sid) else {
            return Ok(());
        };
        let old = std::mem::replace(&mut session.nick, new.clone());
        let rooms: Vec<RoomId> = session.rooms.iter().copied().collect();
        self.nicks.remove(&old.folded());
        self.nicks.insert(folded, sid);
        self.reply(
            member,
            Event::NickChanged { id: id.clone(), old: old.clone(), nick: new.clone() },
        );
        if old == new {
            return Ok(());
        }
        for room_id in rooms {
            if let Some(room) = self.rooms.get(&room_id) {
                let change = Presence::Renamed { old: old.clone(), new: new.clone() };
                let event = Event::Presence { room: room.name.clone(), change };
                let others = room.others(member);
                self.deliver(others, event);
            }
        }
        Ok(())
    }

    fn typing(
        &mut self,
        now: Timestamp,
        member: MemberId,
        sid: SessionId,
        room: &str,
    ) -> Result<(), CommandError> {
        let (room_id, name) = self.joined_room(sid, room)?;
        let interval = self.config.typing_interval;
        let Some(session) = self.sessions.get_mut(&sid) else {
            return Ok(());
        };
        if session.typing.get(&room_id).is_some_and(|&last| now < last.saturating_add(interval)) {
            // Throttled: typing notices are ephemeral, so dropping the extra
            // ones loses nothing the others need.
            return Ok(());
        }
        session.typing.insert(room_id, now);
        let nick = session.nick.clone();
        self.typing_deadlines.push_back((now.saturating_add(interval), sid, room_id));
        if let Some(room) = self.rooms.get(&room_id) {
            let others = room.others(member);
            self.deliver(others, Event::Typing { room: name, nick });
        }
        Ok(())
    }

    fn who(
        &mut self,
        member: MemberId,
        id: &Option<Arc<str>>,
        room: &str,
    ) -> Result<(), CommandError> {
        let name = RoomName::parse(room).map_err(CommandError::InvalidRoom)?;
        let members = match self.room_ids.get(&name).and_then(|r| self.rooms.get(r)) {
            Some(room) => self.sorted_nicks(room.sessions()),
            None => Vec::new(),
        };
        self.reply(member, Event::Members { id: id.clone(), room: name, members });
        Ok(())
    }

    fn history(
        &mut self,
        member: MemberId,
        sid: SessionId,
        id: &Option<Arc<str>>,
        room: &str,
        before: Option<u64>,
        limit: Option<u32>,
    ) -> Result<(), CommandError> {
        let (room_id, name) = self.joined_room(sid, room)?;
        let limit = limit
            .map_or(self.config.history_page_default, |l| usize::try_from(l).unwrap_or(usize::MAX))
            .min(self.config.history_page_max);
        let messages = match self.rooms.get(&room_id) {
            Some(room) => room.history(before, limit),
            None => Vec::new(),
        };
        self.reply(member, Event::History { id: id.clone(), room: name, messages });
        Ok(())
    }

    /// The first free `guest-NNNN` nick, counting up so the core needs no
    /// random source.
    fn guest_nick(&mut self) -> Nick {
        loop {
            let text = format!("guest-{:04}", self.next_guest);
            self.next_guest += 1;
            if let Ok(nick) = Nick::parse(&text)
                && !self.nicks.contains_key(&nick.folded())
            {
                return nick;
            }
        }
    }

    fn create_room(&mut self, name: RoomName) -> Result<RoomId, CommandError> {
        if self.rooms.len() >= self.config.max_rooms {
            return Err(CommandError::TooManyRooms { max: self.config.max_rooms });
        }
        let room_id = RoomId::new(self.next_room);
        self.next_room += 1;
        self.room_ids.insert(name.clone(), room_id);
        self.rooms.insert(room_id, Room::new(name));
        Ok(room_id)
    }

    /// Ends a session: it leaves every room (the others see it leave) and
    /// its nick and token become free.
    fn end_session(&mut self, sid: SessionId) {
        let Some(session) = self.sessions.remove(&sid) else {
            return;
        };
        self.nicks.remove(&session.nick.folded());
        self.tokens.remove(&session.token);
        if let Some(conn) = session.conn.and_then(|m| self.conns.get_mut(&m)) {
            conn.session = None;
        }
        for room in &session.rooms {
            self.remove_from_room(*room, sid, &session.nick);
        }
    }

    /// Takes a session out of a room, tells the others, and forgets the
    /// room if it is now empty and has no history to keep.
    fn remove_from_room(&mut self, room_id: RoomId, sid: SessionId, nick: &Nick) {
        let Some(room) = self.rooms.get_mut(&room_id) else {
            return;
        };
        room.remove(sid);
        self.refresh_recipients(room_id);
        let Some(room) = self.rooms.get(&room_id) else {
            return;
        };
        let event =
            Event::Presence { room: room.name.clone(), change: Presence::Left(nick.clone()) };
        let to = room.recipients();
        if room.is_empty() && !room.has_history() {
            let name = room.name.clone();
            self.rooms.remove(&room_id);
            self.room_ids.remove(&name);
        }
        self.deliver(to, event);
    }

    /// Rebuilds the connections a room delivers to from its sessions.
    fn refresh_recipients(&mut self, room_id: RoomId) {
        let Some(room) = self.rooms.get(&room_id) else {
            return;
        };
        let recipients: Arc<[MemberId]> = room
            .sessions()
            .iter()
            .filter_map(|sid| self.sessions.get(sid).and_then(|s| s.conn))
            .collect();
        if let Some(room) = self.rooms.get_mut(&room_id) {
            room.set_recipients(recipients);
        }
    }

    /// The room `sid` names, if the session is in it.
    fn joined_room(&self, sid: SessionId, room: &str) -> Result<(RoomId, RoomName), CommandError> {
        let name = RoomName::parse(room).map_err(CommandError::InvalidRoom)?;
        let joined =
            self.room_ids.get(&name).copied().filter(|room_id| {
                self.sessions.get(&sid).is_some_and(|s| s.rooms.contains(room_id))
            });
        match joined {
            Some(room_id) => Ok((room_id, name)),
            None => Err(CommandError::NotInRoom(name)),
        }
    }

    fn check_text(&self, text: &str) -> Result<(), CommandError> {
        if text.is_empty() {
            return Err(CommandError::EmptyText);
        }
        if text.len() > self.config.max_text_bytes {
            return Err(CommandError::TooLarge {
                len: text.len(),
                max: self.config.max_text_bytes,
            });
        }
        Ok(())
    }

    fn take_message_token(&mut self, now: Timestamp, sid: SessionId) -> Result<(), CommandError> {
        let rate = self.message_rate();
        match self.sessions.get_mut(&sid) {
            Some(session) => session
                .messages
                .take(rate, now)
                .map_err(|retry_after_ms| CommandError::RateLimited { retry_after_ms }),
            None => Ok(()),
        }
    }

    /// Checks the limits on joining a room the session is not in yet: rooms
    /// per session, the join rate, members per room. Re-joins pass.
    fn admit_join(
        &mut self,
        now: Timestamp,
        sid: SessionId,
        name: &RoomName,
    ) -> Result<(), CommandError> {
        let existing = self.room_ids.get(name).copied();
        let rate = Rate { per_sec: self.config.joins_per_sec, burst: self.config.joins_burst };
        let (max_rooms, max_members) =
            (self.config.max_rooms_per_session, self.config.max_members_per_room);
        let Some(session) = self.sessions.get_mut(&sid) else {
            return Ok(());
        };
        if existing.is_some_and(|room| session.rooms.contains(&room)) {
            return Ok(());
        }
        if session.grant.as_ref().is_some_and(|grant| !grant.allows(name)) {
            return Err(CommandError::Forbidden(format!("your token does not allow room {name}")));
        }
        if session.rooms.len() >= max_rooms {
            return Err(CommandError::RoomLimit { max: max_rooms });
        }
        let members =
            existing.and_then(|room| self.rooms.get(&room)).map_or(0, |room| room.sessions().len());
        if members >= max_members {
            return Err(CommandError::RoomFull { room: name.clone(), max: max_members });
        }
        session
            .joins
            .take(rate, now)
            .map_err(|retry_after_ms| CommandError::JoinRateLimited { retry_after_ms })
    }

    fn message_rate(&self) -> Rate {
        Rate { per_sec: self.config.messages_per_sec, burst: self.config.messages_burst }
    }

    fn sorted_nicks(&self, sessions: &[SessionId]) -> Vec<Nick> {
        let mut nicks: Vec<Nick> =
            sessions.iter().filter_map(|s| self.sessions.get(s)).map(|s| s.nick.clone()).collect();
        nicks.sort_by_cached_key(|nick| (nick.folded(), nick.clone()));
        nicks
    }

    /// Whether `member` could `say` in `room` now (greeted, in the room):
    /// for work an application does before the `say`, such as receiving
    /// a file. The `say` itself is checked again, rate limit included.
    ///
    /// # Errors
    /// The error the `say` would get.
    pub fn check_say(&self, member: MemberId, room: &str) -> Result<(), CommandError> {
        let sid = self.conns.get(&member).and_then(|conn| conn.session);
        let sid = sid.ok_or(CommandError::HelloRequired)?;
        self.joined_room(sid, room).map(|_| ())
    }

    /// Every room with its number of members, by name.
    pub fn room_members(&self) -> Vec<(RoomName, usize)> {
        self.rooms_by_name()
    }

    fn rooms_by_name(&self) -> Vec<(RoomName, usize)> {
        self.room_ids
            .iter()
            .filter_map(|(name, id)| self.rooms.get(id).map(|r| (name.clone(), r.sessions().len())))
            .collect()
    }

    fn reply(&mut self, member: MemberId, event: Event) {
        self.deliver(Arc::new([member]), event);
    }

    fn deliver(&mut self, to: Arc<[MemberId]>, event: Event) {
        self.deliver_shared(to, Arc::new(event));
    }

    fn deliver_shared(&mut self, to: Arc<[MemberId]>, event: Arc<Event>) {
        if to.is_empty() {
            return;
        }
        self.outputs.push_back(Output::Deliver { to, event });
    }
}

fn direct_event(direct: &Direct) -> Event {
    Event::Direct {
        id: direct.id.clone(),
        from: direct.from.clone(),
        to: direct.to.clone(),
        text: Arc::clone(&direct.text),
        ts: direct.ts,
    }
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}
