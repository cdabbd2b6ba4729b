//! Who a connection speaks for: `hello` (new sessions, resumes, verified
//! identities), `auth`, nick changes, detaching and ending sessions, and
//! what each source (address) holds.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use super::{Asker, Chat};
use crate::bucket::{Rate, TokenBucket};
use crate::id::SessionId;
use crate::{
    ChatConfig, CommandError, DisconnectReason, Event, Identity, MemberId, Nick, Output, Record,
    RoomId, RoomName, RoomPattern, Sequencing, SessionToken, Source, Timestamp,
};

/// Who a connection speaks for: a nick, the rooms joined, and what it may
/// still do. Outlives its connection for the grace period.
#[derive(Debug)]
pub(super) struct Session {
    pub(super) token: SessionToken,
    pub(super) nick: Nick,
    pub(super) rooms: BTreeSet<RoomId>,
    /// The connections speaking for the session (tabs, devices), oldest
    /// first; none while it is detached.
    pub(super) conns: Conns,
    /// When the last connection went away, while none is attached.
    pub(super) detached_at: Option<Timestamp>,
    /// Where its connection came from; `None` for a session restored at
    /// start until a connection resumes it.
    pub(super) source: Option<Source>,
    /// What the session's identity grants, if it has one (boxed: most
    /// sessions have none).
    pub(super) grant: Option<Box<Grant>>,
    pub(super) messages: TokenBucket,
    /// Joins of new rooms.
    pub(super) joins: TokenBucket,
    /// Rooms created and bytes uploaded, once it does either (boxed: most
    /// sessions never do).
    pub(super) quotas: Option<Box<Quotas>>,
    /// When a `typing` was last relayed for each room, while any throttles
    /// (boxed: empty most of the time, and a map inline costs every session
    /// three words, a box one).
    #[allow(clippy::box_collection)]
    pub(super) typing: Option<Box<BTreeMap<RoomId, Timestamp>>>,
}

/// The connections of a session: usually one, held inline; more (tabs,
/// devices) in a box.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(super) enum Conns {
    #[default]
    None,
    /// None here: a member another core serves (cluster mode; see
    /// `remote.rs`).
    Remote,
    One(MemberId),
    /// Boxed: a `Vec` inline would cost every session three words, a box
    /// one.
    #[allow(clippy::box_collection)]
    Many(Box<Vec<MemberId>>),
}

impl Conns {
    pub(super) fn is_empty(&self) -> bool {
        matches!(self, Self::None | Self::Remote)
    }

    pub(super) fn len(&self) -> usize {
        match self {
            Self::None | Self::Remote => 0,
            Self::One(_) => 1,
            Self::Many(many) => many.len(),
        }
    }

    pub(super) fn contains(&self, member: MemberId) -> bool {
        self.iter().any(|m| m == member)
    }

    /// Oldest first.
    pub(super) fn iter(&self) -> impl Iterator<Item = MemberId> + '_ {
        let (one, many) = match self {
            Self::None | Self::Remote => (None, &[][..]),
            Self::One(member) => (Some(*member), &[][..]),
            Self::Many(many) => (None, many.as_slice()),
        };
        one.into_iter().chain(many.iter().copied())
    }

    pub(super) fn push(&mut self, member: MemberId) {
        if self.contains(member) {
            return;
        }
        *self = match std::mem::take(self) {
            Self::None | Self::Remote => Self::One(member),
            Self::One(first) => Self::Many(Box::new(vec![first, member])),
            Self::Many(mut many) => {
                many.push(member);
                Self::Many(many)
            }
        };
    }

    pub(super) fn remove(&mut self, member: MemberId) {
        *self = match std::mem::take(self) {
            Self::One(only) if only == member => Self::None,
            Self::Many(mut many) => {
                many.retain(|&m| m != member);
                match many.as_slice() {
                    [] => Self::None,
                    [only] => Self::One(*only),
                    _ => Self::Many(many),
                }
            }
            other => other,
        };
    }

    /// Takes out the oldest.
    pub(super) fn pop_oldest(&mut self) -> Option<MemberId> {
        let oldest = self.iter().next()?;
        self.remove(oldest);
        Some(oldest)
    }
}

/// A session's quotas of slow things.
#[derive(Debug)]
pub(super) struct Quotas {
    pub(super) created: TokenBucket,
    pub(super) uploads: TokenBucket,
}

impl Session {
    /// Whether it is away: every connection dropped (for a remote member,
    /// as its core said).
    pub(super) fn is_away(&self) -> bool {
        if self.is_remote() { self.detached_at.is_some() } else { self.conns.is_empty() }
    }

    /// Whether another core serves it (cluster mode; see `remote.rs`).
    pub(super) fn is_remote(&self) -> bool {
        self.conns == Conns::Remote
    }

    /// Its quotas, made full on first use.
    pub(super) fn quotas(&mut self, config: &ChatConfig, now: Timestamp) -> &mut Quotas {
        self.quotas.get_or_insert_with(|| {
            Box::new(Quotas {
                created: TokenBucket::full(config.rooms_created_per_session, now),
                uploads: TokenBucket::full(config.upload_bytes_per_session, now),
            })
        })
    }
}

/// What one source holds, for the limits per address.
#[derive(Debug)]
pub(super) struct SourceState {
    pub(super) conns: usize,
    pub(super) sessions: usize,
    /// Its sessions waiting to be resumed, detached longest first.
    pub(super) detached: BTreeSet<(Timestamp, SessionId)>,
    pub(super) created: TokenBucket,
    pub(super) uploads: TokenBucket,
}

/// What a session's identity grants.
#[derive(Debug, Clone)]
pub(super) struct Grant {
    pub(super) rooms: Option<Vec<RoomPattern>>,
    pub(super) expires: Timestamp,
}

impl Grant {
    pub(super) fn allows(&self, room: &RoomName) -> bool {
        self.rooms.as_ref().is_none_or(|patterns| patterns.iter().any(|p| p.matches(room)))
    }
}

impl Chat {
    pub(super) fn hello(
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
        let held = bound.as_ref().and_then(|(nick, _)| self.nicks.get(nick.folded()).copied());
        let named = token.as_ref().and_then(|t| self.tokens.get(t)).copied();
        if let Some(sid) = held.or(named) {
            if let Some((nick, grant)) = &bound {
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
            self.resume_session(now, member, sid, id);
            // A narrower token than the session had leaves what it no
            // longer allows, as `auth` does.
            self.leave_revoked(member, sid);
            return Ok(());
        }
        let (nick, grant) = match bound {
            Some((nick, grant)) => (Some(nick.as_str().to_owned()), Some(grant)),
            None => (nick, None),
        };
        if self.config.sequencing == Sequencing::Shared
            && let Some(token) = token
        {
            // Maybe a session another core holds (or held until it died):
            // it moves here if the engine knows it.
            self.look_up(member, id.clone(), token, nick, grant);
            return Ok(());
        }
        self.hello_new(now, member, id, token, nick, grant)
    }

    /// The rest of a `hello` that names no session held here: a new
    /// session, under the token the client brought if it was ours.
    pub(super) fn hello_new(
        &mut self,
        now: Timestamp,
        member: MemberId,
        id: &Option<Arc<str>>,
        token: Option<SessionToken>,
        nick: Option<String>,
        grant: Option<Grant>,
    ) -> Result<(), CommandError> {
        let nick = match nick {
            Some(text) => {
                let nick = Nick::parse(&text).map_err(CommandError::InvalidNick)?;
                if self.nick_held(&nick) {
                    return Err(CommandError::NickTaken(nick));
                }
                Some(nick)
            }
            None => None,
        };
        // Only tokens this server issued name sessions, so nobody can pick
        // a token another will later present: a token no session holds gets
        // a new session under a new token (the client learns it from
        // `welcome`), unless its retries are still remembered or it has
        // conversations, since then it was ours and its client must keep
        // being answered with the originals and reach what was sent to it.
        let Some(conn) = self.conns.get(&member) else {
            return Ok(());
        };
        let token = match token {
            Some(token) if self.dedupe.knows(&token) || self.has_conversations(&token) => token,
            _ => conn.proposed.clone(),
        };
        if self.tokens.contains_key(&token) {
            // Only a driver reusing a token can get here: refuse rather than
            // hand this connection someone else's session.
            return Err(CommandError::InvalidSession(crate::NameError::Empty));
        }
        if self.config.sequencing == Sequencing::Shared {
            // Every node must agree the nick is this session's first.
            self.claim_for_hello(member, id.clone(), token, nick, grant);
            return Ok(());
        }
        let nick = nick.unwrap_or_else(|| self.guest_nick());
        self.start_session(now, member, id, token, nick, grant, None);
        Ok(())
    }

    /// Starts a session for `member`, which said hello, under `token` and
    /// `nick` (free), and welcomes it; `moved` lists the rooms of a session
    /// that moved here from another core (welcomed as resumed).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn start_session(
        &mut self,
        now: Timestamp,
        member: MemberId,
        id: &Option<Arc<str>>,
        token: SessionToken,
        nick: Nick,
        grant: Option<Grant>,
        moved: Option<Vec<RoomName>>,
    ) {
        let Some(source) = self.conns.get(&member).map(|conn| conn.source) else {
            return;
        };
        let expires = grant.as_ref().map(|grant| grant.expires);
        let sid = self.new_session(now, token.clone(), nick.clone(), grant, Some(source));
        if let Some(session) = self.sessions.get_mut(&sid) {
            session.conns = Conns::One(member);
        }
        if let Some(conn) = self.conns.get_mut(&member) {
            conn.session = Some(sid);
        }
        if let Some(expires) = expires {
            self.grant_deadlines.insert((expires, sid));
        }
        self.outputs.push_back(Output::Persist(Record::Session {
            token: token.clone(),
            nick: nick.clone(),
        }));
        let welcome = Event::Welcome {
            id: id.clone(),
            nick,
            session: token,
            resumed: moved.is_some(),
            rooms: moved.unwrap_or_default(),
            expires,
        };
        self.reply(member, welcome);
        if self.config.sequencing == Sequencing::Shared {
            self.attend(sid, Some(member));
        }
    }

    /// Whether a session here holds `nick`, or one is being claimed for it.
    pub(super) fn nick_held(&self, nick: &Nick) -> bool {
        self.nicks.contains_key(nick.folded()) || self.claims.contains_key(nick.folded())
    }

    /// A new session, detached, counted under `source`.
    pub(super) fn new_session(
        &mut self,
        now: Timestamp,
        token: SessionToken,
        nick: Nick,
        grant: Option<Grant>,
        source: Option<Source>,
    ) -> SessionId {
        let sid = SessionId::new(self.next_session);
        self.next_session += 1;
        let config = &self.config;
        let joins = Rate::per_sec(config.joins_per_sec, config.joins_burst);
        let session = Session {
            token: token.clone(),
            nick: nick.clone(),
            rooms: BTreeSet::new(),
            conns: Conns::None,
            detached_at: None,
            source,
            grant: grant.map(Box::new),
            messages: TokenBucket::full(self.message_rate(), now),
            joins: TokenBucket::full(joins, now),
            quotas: None,
            typing: None,
        };
        self.nicks.insert(Arc::from(nick.folded()), sid);
        if self.config.sequencing == Sequencing::Shared {
            self.keys.insert(self.config.session_key.of(token.as_str()).into(), sid);
        }
        self.tokens.insert(token, sid);
        self.sessions.insert(sid, session);
        if let Some(source) = source {
            self.source_state(now, source).sessions += 1;
        }
        sid
    }

    /// Checks a verified identity against the clock and the nick asked for:
    /// the nick it binds, and what it grants.
    pub(super) fn bind(
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
    pub(super) fn auth(
        &mut self,
        now: Timestamp,
        asker: &Asker,
        identity: Identity,
    ) -> Result<(), CommandError> {
        let (member, sid, id) = (asker.member, asker.session, &asker.id);
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
        if let Some(session) = self.sessions.get_mut(&sid) {
            session.grant = Some(Box::new(grant));
        }
        self.grant_deadlines.insert((expires, sid));
        self.leave_revoked(member, sid);
        self.reply(member, Event::Authed { id: id.clone(), expires });
        Ok(())
    }

    /// Leaves, with a `left` to `member` and a presence to the others,
    /// every room the session's grant does not allow.
    pub(super) fn leave_revoked(&mut self, member: MemberId, sid: SessionId) {
        let Some(session) = self.sessions.get(&sid) else {
            return;
        };
        let Some(grant) = session.grant.as_deref() else {
            return;
        };
        let revoked: Vec<RoomName> = session
            .rooms
            .iter()
            .filter_map(|room| self.rooms.get(room))
            .map(|room| room.name.clone())
            .filter(|name| !grant.allows(name))
            .collect();
        for name in revoked {
            if let Some(&room_id) = self.room_ids.get(&name) {
                self.part(member, sid, &None, room_id, name);
            }
        }
    }

    /// Attaches `member` to an existing session, beside the connections
    /// it has (tabs, devices); past
    /// [`ChatConfig::max_connections_per_session`] the oldest is closed. A
    /// session that was detached is back in its rooms.
    pub(super) fn resume_session(
        &mut self,
        now: Timestamp,
        member: MemberId,
        sid: SessionId,
        id: &Option<Arc<str>>,
    ) {
        let Some(source) = self.conns.get(&member).map(|conn| conn.source) else {
            return;
        };
        let max = self.config.max_connections_per_session.max(1);
        let Some(session) = self.sessions.get_mut(&sid) else {
            debug_assert!(false, "a session id without its session");
            return;
        };
        session.conns.push(member);
        let mut over = Vec::new();
        while session.conns.len() > max {
            over.extend(session.conns.pop_oldest());
        }
        let detached_at = session.detached_at.take();
        let old_source = session.source.replace(source);
        let (nick, token) = (session.nick.clone(), session.token.clone());
        let rooms: Vec<RoomId> = session.rooms.iter().copied().collect();
        if let (Some(at), Some(old)) = (detached_at, old_source)
            && let Some(state) = self.sources.get_mut(&old)
        {
            state.detached.remove(&(at, sid));
        }
        if old_source != Some(source) {
            if let Some(state) = old_source.and_then(|old| self.sources.get_mut(&old)) {
                state.sessions = state.sessions.saturating_sub(1);
            }
            self.source_state(now, source).sessions += 1;
        }
        for previous in over {
            self.drop_conn(previous);
            let reason = DisconnectReason::SessionResumedElsewhere;
            self.outputs.push_back(Output::Disconnect { member: previous, reason });
        }
        if let Some(conn) = self.conns.get_mut(&member) {
            conn.session = Some(sid);
        }
        for &room in &rooms {
            self.recipients_changed(room);
        }
        if detached_at.is_some() {
            self.announce(sid, &rooms, crate::Presence::Back(nick.clone()));
        }
        let expires = self.sessions.get(&sid).and_then(|s| s.grant.as_ref()).map(|g| g.expires);
        let mut names: Vec<RoomName> = rooms
            .iter()
            .filter_map(|room| self.rooms.get(room).map(|room| room.name.clone()))
            .collect();
        names.sort_by(|a, b| a.as_str().cmp(b.as_str()));
        let welcome = Event::Welcome {
            id: id.clone(),
            nick,
            session: token,
            resumed: true,
            rooms: names,
            expires,
        };
        self.reply(member, welcome);
    }

    /// Tells the others in `rooms` how a session's presence changed: at
    /// once in a small room, in the next batch in a big one.
    pub(super) fn announce(&mut self, sid: SessionId, rooms: &[RoomId], change: crate::Presence) {
        for &room_id in rooms {
            self.share(sid, room_id, crate::Shared::Presence(change.clone()));
            if self.batch_presence(room_id, &change) {
                continue;
            }
            if let Some(room) = self.rooms.get(&room_id) {
                let event = Event::Presence { room: room.name.clone(), change: change.clone() };
                let others = self.others_of(room_id, sid);
                self.deliver(others, event);
            }
        }
    }

    /// In a room of more than `member_page_max` members, keeps `change`
    /// for the room's next batch (scheduled one interval from now if none
    /// is) and returns true; false in a smaller room.
    pub(super) fn batch_presence(&mut self, room_id: RoomId, change: &crate::Presence) -> bool {
        let (big, interval) = (self.config.member_page_max, self.config.presence_interval);
        let Some(room) = self.rooms.get_mut(&room_id) else {
            return false;
        };
        if room.sessions().len() <= big && room.pending_presence.is_empty() {
            return false;
        }
        if !room.batch_due {
            room.batch_due = true;
            self.presence_due.insert((self.clock.saturating_add(interval), room_id));
        }
        room.pending_presence.push(change.clone());
        true
    }

    /// In a room of more than `member_page_max` members, keeps a typist for
    /// the room's next batch and returns true; false in a smaller room.
    pub(super) fn batch_typing(&mut self, room_id: RoomId, nick: &Nick) -> bool {
        let (big, interval) = (self.config.member_page_max, self.config.presence_interval);
        let Some(room) = self.rooms.get_mut(&room_id) else {
            return false;
        };
        if room.sessions().len() <= big {
            return false;
        }
        if !room.batch_due {
            room.batch_due = true;
            self.presence_due.insert((self.clock.saturating_add(interval), room_id));
        }
        if !room.pending_typing.contains(nick) {
            room.pending_typing.push(nick.clone());
        }
        true
    }

    /// Sends the batches that are due.
    pub(super) fn flush_presence(&mut self, now: Timestamp) {
        while let Some(&(due, room_id)) = self.presence_due.first() {
            if due > now {
                break;
            }
            self.presence_due.remove(&(due, room_id));
            let Some(room) = self.rooms.get_mut(&room_id) else {
                continue;
            };
            room.batch_due = false;
            let mut changes = std::mem::take(&mut room.pending_presence);
            let mut nicks = std::mem::take(&mut room.pending_typing);
            let (name, members) = (room.name.clone(), room.sessions().len());
            let to = self.recipients(room_id);
            if !changes.is_empty() {
                let more = changes.len().saturating_sub(crate::PRESENCE_BATCH_MAX);
                changes.truncate(crate::PRESENCE_BATCH_MAX);
                let event = Event::PresenceBatch { room: name.clone(), changes, more, members };
                self.deliver(Arc::clone(&to), event);
            }
            if !nicks.is_empty() {
                let more = nicks.len().saturating_sub(crate::TYPING_BATCH_MAX);
                nicks.truncate(crate::TYPING_BATCH_MAX);
                self.deliver(to, Event::TypingBatch { room: name, nicks, more });
            }
        }
    }

    /// A room's recipients but the connections of session `sid`.
    pub(super) fn others_of(&mut self, room_id: RoomId, sid: SessionId) -> Arc<[MemberId]> {
        let recipients = self.recipients(room_id);
        let own = self.sessions.get(&sid).map(|session| &session.conns);
        recipients
            .iter()
            .copied()
            .filter(|&member| !own.is_some_and(|conns| conns.contains(member)))
            .collect()
    }

    /// The other connections of the session `member` speaks for: they hear
    /// of what it changed for the session (a room joined or left, a nick).
    pub(super) fn siblings(&self, member: MemberId, sid: SessionId) -> Arc<[MemberId]> {
        let conns = self.sessions.get(&sid).map(|session| &session.conns);
        conns.into_iter().flat_map(Conns::iter).filter(|&m| m != member).collect()
    }

    /// A connection of a session went away: the session goes on with its
    /// others, or, with none left, ends at a goodbye ([`Departure::Quit`])
    /// or waits for a resume.
    ///
    /// [`Departure::Quit`]: crate::Departure::Quit
    pub(super) fn conn_gone(
        &mut self,
        now: Timestamp,
        member: MemberId,
        sid: SessionId,
        quit: bool,
    ) {
        let Some(session) = self.sessions.get_mut(&sid) else {
            return;
        };
        if !session.conns.contains(member) {
            return;
        }
        session.conns.remove(member);
        if !session.conns.is_empty() {
            let rooms: Vec<RoomId> = session.rooms.iter().copied().collect();
            for room in rooms {
                self.recipients_changed(room);
            }
        } else if quit || self.config.session_grace.is_zero() {
            self.end_session(sid);
        } else {
            self.detach(now, sid);
        }
    }

    /// The session's last connection is gone: it is away in its rooms and
    /// waits for a resume, counted against its source's detached sessions,
    /// the oldest of which ends if there are too many.
    pub(super) fn detach(&mut self, now: Timestamp, sid: SessionId) {
        let Some(session) = self.sessions.get_mut(&sid) else {
            debug_assert!(false, "a session id without its session");
            return;
        };
        session.conns = Conns::None;
        session.detached_at = Some(now);
        let source = session.source;
        let nick = session.nick.clone();
        let rooms: Vec<RoomId> = session.rooms.iter().copied().collect();
        for &room in &rooms {
            self.recipients_changed(room);
        }
        self.announce(sid, &rooms, crate::Presence::Away(nick));
        self.expiries.push_back((now.saturating_add(self.config.session_grace), sid));
        let Some(source) = source else {
            return;
        };
        let max = self.config.max_detached_per_source;
        let state = self.source_state(now, source);
        state.detached.insert((now, sid));
        let mut over = Vec::new();
        while state.detached.len() > max {
            match state.detached.pop_first() {
                Some((_, oldest)) => over.push(oldest),
                None => break,
            }
        }
        for oldest in over {
            self.end_session(oldest);
        }
    }

    /// Ends sessions whose grace period passed without a resume.
    pub(super) fn expire_sessions(&mut self, now: Timestamp) {
        let grace = self.config.session_grace;
        while let Some(&(deadline, sid)) = self.expiries.front() {
            if deadline > now {
                break;
            }
            self.expiries.pop_front();
            // Only if the session is still detached since that deadline was
            // set; a resumed (and maybe detached again) session has a newer one.
            let expired = self.sessions.get(&sid).is_some_and(|s| {
                s.conns.is_empty()
                    && s.detached_at.is_some_and(|at| at.saturating_add(grace) <= now)
            });
            if expired {
                self.end_session(sid);
            }
        }
    }

    /// Ends sessions whose identity expired without being renewed, closing
    /// their connection.
    pub(super) fn expire_grants(&mut self, now: Timestamp) {
        while let Some(&(deadline, sid)) = self.grant_deadlines.first() {
            if deadline > now {
                break;
            }
            self.grant_deadlines.pop_first();
            // Only if no later identity renewed the session meanwhile.
            let session = self.sessions.get(&sid);
            if session.and_then(|s| s.grant.as_ref()).is_some_and(|g| g.expires == deadline) {
                let members: Vec<MemberId> =
                    session.map(|s| s.conns.iter().collect()).unwrap_or_default();
                for member in members {
                    self.drop_conn(member);
                    let reason = DisconnectReason::IdentityExpired;
                    self.outputs.push_back(Output::Disconnect { member, reason });
                }
                self.end_session(sid);
            }
        }
    }

    pub(super) fn rename(&mut self, asker: &Asker, nick: &str) -> Result<(), CommandError> {
        let (member, sid, id) = (asker.member, asker.session, &asker.id);
        if self.sessions.get(&sid).is_some_and(|session| session.grant.is_some()) {
            return Err(CommandError::Forbidden(
                "your nick is the one your token names".to_owned(),
            ));
        }
        let new = Nick::parse(nick).map_err(CommandError::InvalidNick)?;
        let current = self.sessions.get(&sid).map(|session| session.nick.folded());
        if current != Some(new.folded()) {
            if self.nick_held(&new) {
                return Err(CommandError::NickTaken(new));
            }
            if self.config.sequencing == Sequencing::Shared {
                // Every node must agree the new nick is this session's.
                self.claim_for_rename(asker.clone(), new);
                return Ok(());
            }
        }
        self.apply_rename(member, sid, id, new);
        Ok(())
    }

    /// Renames session `sid` to `new` (free, or its own nick written
    /// differently), for its connection `member`.
    pub(super) fn apply_rename(
        &mut self,
        member: MemberId,
        sid: SessionId,
        id: &Option<Arc<str>>,
        new: Nick,
    ) {
        let Some(session) = self.sessions.get_mut(&sid) else {
            return;
        };
        let old = std::mem::replace(&mut session.nick, new.clone());
        let token = session.token.clone();
        let rooms: Vec<RoomId> = session.rooms.iter().copied().collect();
        self.nicks.remove(old.folded());
        self.nicks.insert(Arc::from(new.folded()), sid);
        if old.folded() != new.folded() && self.config.sequencing == Sequencing::Shared {
            self.outputs.push_back(Output::Release { nick: old.clone(), token: token.clone() });
        }
        for room in &rooms {
            if let Some(room) = self.rooms.get_mut(room) {
                room.renamed(sid, &old, &new);
            }
        }
        if old != new {
            let record = Record::Session { token, nick: new.clone() };
            self.outputs.push_back(Output::Persist(record));
        }
        self.reply(
            member,
            Event::NickChanged { id: id.clone(), old: old.clone(), nick: new.clone() },
        );
        if old == new {
            return;
        }
        let siblings = self.siblings(member, sid);
        self.deliver(
            siblings,
            Event::NickChanged { id: None, old: old.clone(), nick: new.clone() },
        );
        self.announce(sid, &rooms, crate::Presence::Renamed { old, new });
    }

    /// The first free `guest-NNNN` nick, counting up so the core needs no
    /// random source.
    pub(super) fn guest_nick(&mut self) -> Nick {
        loop {
            let text = format!("guest-{:04}", self.next_guest);
            self.next_guest += 1;
            if let Ok(nick) = Nick::parse(&text)
                && !self.nick_held(&nick)
            {
                return nick;
            }
        }
    }

    /// Ends a session: it leaves every room (the others see it leave), its
    /// nick and token become free, and storage forgets it.
    pub(super) fn end_session(&mut self, sid: SessionId) {
        self.end_session_as(sid, false);
    }

    /// Ends a session; `moved`: it goes on on another core, which holds its
    /// nick and tells the others of its rooms, so nothing is released or
    /// shared from here.
    pub(super) fn end_session_as(&mut self, sid: SessionId, moved: bool) {
        let Some(session) = self.sessions.remove(&sid) else {
            return;
        };
        self.nicks.remove(session.nick.folded());
        self.tokens.remove(&session.token);
        if self.config.sequencing == Sequencing::Shared {
            self.keys.remove(self.config.session_key.of(session.token.as_str()).as_str());
        }
        for member in session.conns.iter() {
            if let Some(conn) = self.conns.get_mut(&member) {
                conn.session = None;
            }
        }
        if let Some(state) = session.source.and_then(|source| self.sources.get_mut(&source)) {
            state.sessions = state.sessions.saturating_sub(1);
            if let Some(at) = session.detached_at {
                state.detached.remove(&(at, sid));
            }
        }
        self.outputs.push_back(Output::Persist(Record::SessionEnded(session.token.clone())));
        if self.config.sequencing == Sequencing::Shared && !moved {
            let (nick, token) = (session.nick.clone(), session.token.clone());
            self.outputs.push_back(Output::Release { nick, token });
            for &room in &session.rooms {
                let left = crate::Shared::Presence(crate::Presence::Left(session.nick.clone()));
                self.share_as(session.token.clone(), room, left);
            }
        }
        for room in &session.rooms {
            self.remove_from_room(*room, sid, &session.nick);
        }
    }

    /// The state of `source`, made on first use.
    pub(super) fn source_state(&mut self, now: Timestamp, source: Source) -> &mut SourceState {
        let config = &self.config;
        self.sources.entry(source).or_insert_with(|| SourceState {
            conns: 0,
            sessions: 0,
            detached: BTreeSet::new(),
            created: TokenBucket::full(config.rooms_created_per_source, now),
            uploads: TokenBucket::full(config.upload_bytes_per_source, now),
        })
    }

    /// Forgets sources with nothing left: no connection, no session, and
    /// quotas refilled (so leaving and coming back gains nothing).
    pub(super) fn forget_sources(&mut self, now: Timestamp) {
        let (created, uploads) =
            (self.config.rooms_created_per_source, self.config.upload_bytes_per_source);
        self.sources.retain(|_, state| {
            state.conns > 0
                || state.sessions > 0
                || !state.created.is_full(created, now)
                || !state.uploads.is_full(uploads, now)
        });
    }

    pub(super) fn message_rate(&self) -> Rate {
        Rate::per_sec(self.config.messages_per_sec, self.config.messages_burst)
    }
}
