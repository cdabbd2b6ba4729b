//! Direct messages as conversations: numbered, kept and read back like a
//! room's messages (a conversation is a room with a name no one can join,
//! see [`RoomName::conversation`]), between two parties rather than two
//! nicks, so that what was sent to someone reaches them when they come
//! back and never whoever takes their nick later.
//!
//! A party is a session's token, or with a verified identity `@` and its
//! folded nick. The core keeps an index of every conversation (read from
//! storage at startup), so it can list a session's conversations and
//! reach a party that is not here.

use std::sync::Arc;

use super::{Asker, Chat, Parked, Wants};
use crate::id::SessionId;
use crate::{
    CommandError, Conversation, ConversationSummary, Direct, Event, MemberId, Message, Nick,
    Output, Peer, Record, RoomId, RoomName, Sequencing, SessionToken, Timestamp,
};

/// What the core knows of a conversation without reading it.
#[derive(Debug, Clone)]
pub(super) struct Known {
    /// The parties' nicks as of the last message, in name order.
    nicks: [Nick; 2],
    last_seq: u64,
    last_ts: Timestamp,
}

/// The other party of a conversation, as a command names it.
#[derive(Debug, Clone)]
pub(super) struct Other {
    /// Its party key.
    party: Arc<str>,
    /// Its nick: the one it holds now if it is here, else its last known.
    nick: Nick,
}

/// Whom a command names, as far as this core can tell.
enum Reach {
    Now(Other),
    /// A nick no session here holds: in cluster mode, the engine is asked
    /// whether a session on another core does.
    Ask(Nick),
}

/// What the engine answers [`Output::Whois`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Holder {
    /// A session on another core holds the nick: its key (see
    /// [`ChatConfig::session_key`]) and the nick as it writes it.
    ///
    /// [`ChatConfig::session_key`]: crate::ChatConfig::session_key
    Elsewhere(Arc<str>, Nick),
    /// No session holds it.
    Nobody,
    /// The engine could not be reached: nothing is known.
    Unavailable,
}

/// A command waiting for [`Output::Whois`].
#[derive(Debug)]
pub(super) struct Asked {
    asker: Asker,
    /// The asking session's party.
    me: Arc<str>,
    /// The nick asked about, as the command wrote it.
    nick: Nick,
    then: Then,
}

/// What a command does once the other party is known.
#[derive(Debug)]
enum Then {
    Dm(Arc<str>),
    Read { after: Option<u64>, before: Option<u64>, limit: Option<u32> },
}

impl Chat {
    /// The party a session speaks as.
    pub(super) fn party(&self, sid: SessionId) -> Option<Arc<str>> {
        let session = self.sessions.get(&sid)?;
        Some(match session.grant {
            Some(_) => format!("@{}", session.nick.folded()).into(),
            None => self.token_party(&session.token),
        })
    }

    /// The party of a session without an identity: its token, or in
    /// cluster mode its key, which every core knows it by (a token is a
    /// secret, and another core's sessions are known by key only).
    fn token_party(&self, token: &SessionToken) -> Arc<str> {
        match self.config.sequencing {
            Sequencing::Alone => Arc::from(token.as_str()),
            Sequencing::Shared => self.config.session_key.of(token.as_str()).into(),
        }
    }

    /// The session a party has now, if any.
    fn party_session(&self, party: &str) -> Option<SessionId> {
        match party.strip_prefix('@') {
            Some(folded) => self
                .nicks
                .get(folded)
                .copied()
                .filter(|sid| self.sessions.get(sid).is_some_and(|s| s.grant.is_some())),
            None if self.config.sequencing == Sequencing::Shared => self.keys.get(party).copied(),
            None => SessionToken::parse(party).ok().and_then(|t| self.tokens.get(&t).copied()),
        }
    }

    /// Whether a token names a party with conversations: a token only the
    /// server can have issued, so a session that ended may take it again.
    pub(super) fn has_conversations(&self, token: &SessionToken) -> bool {
        self.by_party.contains_key(&self.token_party(token))
    }

    /// Whom `peer` names for party `me`: for a nick, the session holding
    /// it (here, or in cluster mode on another core: [`Reach::Ask`]); else
    /// the other party of this session's latest conversation with someone
    /// of that nick; else, with identities, the identity.
    fn reach(&self, me: &str, peer: &Peer) -> Result<Reach, CommandError> {
        let text = match peer {
            Peer::Conversation(key) => {
                return self
                    .mine(me)
                    .find(|(name, ..)| name.conversation_key() == *key)
                    .map(|(_, other, _)| Reach::Now(other))
                    .ok_or_else(|| CommandError::NoSuchConversation(key.clone()));
            }
            Peer::Nick(text) => text,
        };
        let nick = Nick::parse(text).map_err(CommandError::InvalidNick)?;
        if let Some(&holder) = self.nicks.get(nick.folded())
            && let (Some(party), Some(session)) = (self.party(holder), self.sessions.get(&holder))
        {
            return Ok(Reach::Now(Other { party, nick: session.nick.clone() }));
        }
        if self.config.sequencing == Sequencing::Shared {
            return Ok(Reach::Ask(nick));
        }
        self.reach_away(me, nick).map(Reach::Now)
    }

    /// Whom `nick`, held by no session, names for party `me`.
    fn reach_away(&self, me: &str, nick: Nick) -> Result<Other, CommandError> {
        let latest = self
            .mine(me)
            .filter(|(_, other, _)| other.nick.folded() == nick.folded())
            .max_by_key(|(.., known)| known.last_ts);
        if let Some((_, other, _)) = latest {
            return Ok(other);
        }
        let identity: Arc<str> = format!("@{}", nick.folded()).into();
        if self.by_party.contains_key(&identity) {
            return Ok(Other { party: identity, nick });
        }
        Err(CommandError::NoSuchNick(nick.as_str().to_owned()))
    }

    /// Asks the engine who holds `nick` for `asker` (cluster mode); its
    /// commands wait for the answer.
    fn ask_whois(&mut self, asker: &Asker, me: Arc<str>, nick: Nick, then: Then) {
        self.park_for(asker.member);
        let folded: Arc<str> = nick.folded().into();
        let asked = self.whois.entry(folded).or_default();
        let first = asked.is_empty();
        asked.push(Asked { asker: asker.clone(), me, nick: nick.clone(), then });
        if first {
            self.outputs.push_back(Output::Whois { nick });
        }
    }

    /// The engine's answer to [`Output::Whois`] of `nick`: the key and
    /// nick of the session holding it on another core, if any.
    pub(super) fn whois_answered(&mut self, now: Timestamp, nick: &Nick, holder: &Holder) {
        let Some(asked) = self.whois.remove(nick.folded()) else {
            return;
        };
        for Asked { asker, me, nick, then } in asked {
            let member = asker.member;
            if self.still_asking(&asker) {
                let other = match holder {
                    // With identities, a session speaks as its identity.
                    Holder::Elsewhere(_, held) if self.config.require_identity => {
                        let party = format!("@{}", held.folded()).into();
                        Ok(Other { party, nick: held.clone() })
                    }
                    Holder::Elsewhere(key, held) => {
                        Ok(Other { party: Arc::clone(key), nick: held.clone() })
                    }
                    Holder::Nobody => self.reach_away(&me, nick),
                    Holder::Unavailable => Err(CommandError::SharedUnavailable {
                        retry_after_ms: super::claims::RETRY_AFTER_MS,
                    }),
                };
                let done = other.and_then(|other| match then {
                    Then::Dm(text) => self.dm_to(now, &asker, &me, other, text),
                    Then::Read { after, before, limit } => {
                        self.read_with(now, &asker, &me, other, after, before, limit)
                    }
                });
                if let Err(error) = done {
                    self.reply(member, Event::Error { id: asker.id.clone(), error });
                }
            }
            self.unpark(now, member);
        }
    }

    /// In cluster mode, the session `sid` is here now (started, moved
    /// here, restored): its core follows its party's conversations, whose
    /// list `member`'s next commands wait for.
    pub(super) fn attend(&mut self, sid: SessionId, member: Option<MemberId>) {
        let (Some(party), Some(session)) = (self.party(sid), self.sessions.get(&sid)) else {
            return;
        };
        let token = session.token.clone();
        let waiting = self.indexing.entry(Arc::clone(&party)).or_default();
        if let Some(member) = member {
            waiting.push(member);
            self.park_for(member);
        }
        self.outputs.push_back(Output::Conversations { party, token });
    }

    /// The conversations of party `me`, with the other party of each.
    fn mine<'a>(
        &'a self,
        me: &'a str,
    ) -> impl Iterator<Item = (&'a RoomName, Other, &'a Known)> + 'a {
        self.by_party.get(me).into_iter().flatten().filter_map(move |name| {
            let known = self.conversations.get(name)?;
            let (a, b) = name.parties()?;
            let (party, at) = if a == me { (b, 1) } else { (a, 0) };
            // Its nick now, if it is here.
            let nick = self
                .party_session(party)
                .and_then(|sid| self.sessions.get(&sid))
                .map_or_else(|| known.nicks[at].clone(), |session| session.nick.clone());
            Some((name, Other { party: party.into(), nick }, known))
        })
    }

    pub(super) fn dm(
        &mut self,
        now: Timestamp,
        asker: &Asker,
        to: &Peer,
        text: String,
    ) -> Result<(), CommandError> {
        let (member, sid, id) = (asker.member, asker.session, &asker.id);
        if self.answer_retry(member, sid, id) {
            return Ok(());
        }
        let me = self.party(sid).ok_or(CommandError::HelloRequired)?;
        let reach = self.reach(&me, to)?;
        self.check_text(&text)?;
        self.check_store(now)?;
        self.take_message_token(now, sid)?;
        match reach {
            Reach::Now(other) => self.dm_to(now, asker, &me, other, text.into()),
            Reach::Ask(nick) => {
                self.ask_whois(asker, me, nick, Then::Dm(text.into()));
                Ok(())
            }
        }
    }

    /// Sends a direct message from party `me` to `other`, once their
    /// conversation's numbering is known.
    fn dm_to(
        &mut self,
        now: Timestamp,
        asker: &Asker,
        me: &str,
        other: Other,
        text: Arc<str>,
    ) -> Result<(), CommandError> {
        let name = RoomName::conversation(me, &other.party);
        let parked = Parked { asker: asker.clone(), wants: Wants::Dm { text, other } };
        self.with_room(now, name, parked)
    }

    /// Sends a direct message once its conversation's numbering is known.
    pub(super) fn complete_dm(
        &mut self,
        now: Timestamp,
        asker: &Asker,
        room_id: RoomId,
        text: Arc<str>,
        other: Other,
    ) -> Result<(), CommandError> {
        let (member, sid, id) = (asker.member, asker.session, &asker.id);
        if !self.still_asking(asker) {
            return Ok(());
        }
        let (Some(sender), Some(room)) = (self.sessions.get(&sid), self.rooms.get(&room_id)) else {
            return Ok(());
        };
        let name = room.name.clone();
        let Some((first, _)) = name.parties() else {
            debug_assert!(false, "a direct message to a room");
            return Ok(());
        };
        let sender_first = self.party(sid).as_deref() == Some(first);
        let (from, token) = (sender.nick.clone(), sender.token.clone());
        let message = Message {
            kind: Default::default(),
            room: name.clone(),
            seq: room.last_seq + 1,
            ts: now,
            from: from.clone(),
            text,
            action: false,
            id: id.clone(),
            sender: Some(token.clone()),
            attachment: None,
        };
        let nicks = match sender_first {
            true => [from.clone(), other.nick.clone()],
            false => [other.nick.clone(), from.clone()],
        };
        if self.config.sequencing == Sequencing::Shared {
            // The engine numbers it, and it comes back to the core of
            // each party (`direct_appended`), this one included.
            self.know_nicks(&name, nicks.clone());
            let direct = Direct { message: Message { seq: 0, ..message }, nicks };
            self.outputs.push_back(Output::AppendDirect { member, direct });
            return Ok(());
        }
        self.push_message(room_id, message.clone());
        self.know(&name, nicks.clone(), message.seq, now);
        let key: Arc<str> = name.conversation_key().into();
        let event = |with: &Nick| Event::Direct {
            id: id.clone(),
            key: Arc::clone(&key),
            from: from.clone(),
            to: other.nick.clone(),
            with: with.clone(),
            text: Arc::clone(&message.text),
            ts: now,
            seq: message.seq,
        };
        let (mine, theirs) = (Arc::new(event(&other.nick)), event(&from));
        self.outputs.push_back(Output::Persist(Record::Direct(Direct { message, nicks })));
        self.remember(now, token.clone(), id, &mine);
        // Every connection of the sender, the one that sent it included.
        let mut to: Vec<_> = self.conns_of(&token).to_vec();
        if !to.contains(&member) {
            to.push(member);
        }
        self.deliver_shared(to.into(), mine);
        // And of the recipient, if it is here and someone else.
        let recipient = self.party_session(&other.party).filter(|&them| them != sid);
        if let Some(session) = recipient.and_then(|them| self.sessions.get(&them)) {
            let conns = session.conns.iter().collect();
            self.deliver(conns, theirs);
        }
        self.enforce_memory(Some(room_id));
        Ok(())
    }

    pub(super) fn conversation(
        &mut self,
        now: Timestamp,
        asker: &Asker,
        with: &Peer,
        after: Option<u64>,
        before: Option<u64>,
        limit: Option<u32>,
    ) -> Result<(), CommandError> {
        let sid = asker.session;
        let me = self.party(sid).ok_or(CommandError::HelloRequired)?;
        match self.reach(&me, with)? {
            Reach::Now(other) => self.read_with(now, asker, &me, other, after, before, limit),
            Reach::Ask(nick) => {
                self.ask_whois(asker, me, nick, Then::Read { after, before, limit });
                Ok(())
            }
        }
    }

    /// Reads the conversation of party `me` with `other`.
    #[allow(clippy::too_many_arguments)]
    fn read_with(
        &mut self,
        now: Timestamp,
        asker: &Asker,
        me: &str,
        other: Other,
        after: Option<u64>,
        before: Option<u64>,
        limit: Option<u32>,
    ) -> Result<(), CommandError> {
        let name = RoomName::conversation(me, &other.party);
        if !self.conversations.contains_key(&name) {
            // Nothing was ever said: nothing to read.
            let event = Event::Conversation {
                id: asker.id.clone(),
                key: name.conversation_key().into(),
                with: other.nick,
                history: Vec::new(),
                last_seq: 0,
                resume: crate::Resume::Fresh,
            };
            self.reply(asker.member, event);
            return Ok(());
        }
        let limit = limit
            .map_or(self.config.history_page_default, |l| usize::try_from(l).unwrap_or(usize::MAX))
            .min(self.config.history_page_max);
        let wants = Wants::Conversation { with: other.nick, after, before, limit };
        self.with_room(now, name, Parked { asker: asker.clone(), wants })
    }

    /// Answers `conversation` from the conversation's window.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn conversation_reply(
        &mut self,
        now: Timestamp,
        asker: &Asker,
        room_id: RoomId,
        with: Nick,
        after: Option<u64>,
        before: Option<u64>,
        limit: usize,
    ) -> Result<(), CommandError> {
        let (member, id) = (asker.member, &asker.id);
        if !self.still_asking(asker) {
            return Ok(());
        }
        let Some(room) = self.rooms.get(&room_id) else {
            return Ok(());
        };
        let (last_seq, key) = (room.last_seq, room.name.conversation_key().into());
        let (history, resume, required) = match before {
            Some(before) => (room.history(Some(before), limit), crate::Resume::Fresh, true),
            None => {
                let (history, resume) =
                    room.resume(after, self.config.join_history, self.config.resume_max);
                (history, resume, false)
            }
        };
        self.touch(room_id);
        let history = self.fit_history(now, member, history, required)?;
        let event = Event::Conversation { id: id.clone(), key, with, history, last_seq, resume };
        self.reply(member, event);
        Ok(())
    }

    /// The answer to `conversations`: the session's, most recent first.
    pub(super) fn conversations(&mut self, asker: &Asker) -> Result<(), CommandError> {
        let me = self.party(asker.session).ok_or(CommandError::HelloRequired)?;
        let mut list: Vec<ConversationSummary> = self
            .mine(&me)
            // In cluster mode, one whose first message is being numbered.
            .filter(|(.., known)| known.last_seq > 0)
            .map(|(name, other, known)| ConversationSummary {
                key: name.conversation_key(),
                with: other.nick,
                last_seq: known.last_seq,
                last_ts: known.last_ts,
            })
            .collect();
        list.sort_by(|a, b| b.last_ts.cmp(&a.last_ts).then_with(|| a.key.cmp(&b.key)));
        self.reply(asker.member, Event::Conversations { id: asker.id.clone(), list });
        Ok(())
    }

    /// Tells the session's other connections how far this one has read a
    /// room or one of the session's conversations.
    pub(super) fn read_up_to(
        &mut self,
        asker: &Asker,
        room: Option<&str>,
        conversation: Option<&str>,
        seq: u64,
    ) -> Result<(), CommandError> {
        let (member, sid) = (asker.member, asker.session);
        let event = match (room, conversation) {
            (Some(room), _) => {
                let (_, name) = self.joined_room(sid, room)?;
                Event::Read { room: Some(name), conversation: None, seq }
            }
            (None, Some(key)) => {
                let me = self.party(sid).ok_or(CommandError::HelloRequired)?;
                if !self.mine(&me).any(|(name, ..)| name.conversation_key() == key) {
                    return Err(CommandError::NoSuchConversation(key.to_owned()));
                }
                Event::Read { room: None, conversation: Some(key.into()), seq }
            }
            (None, None) => return Err(CommandError::InvalidRoom(crate::NameError::Empty)),
        };
        let siblings = self.siblings(member, sid);
        self.deliver(siblings, event);
        Ok(())
    }

    /// Records what is known of a conversation after a message.
    fn know(&mut self, name: &RoomName, nicks: [Nick; 2], last_seq: u64, last_ts: Timestamp) {
        let known = Known { nicks, last_seq, last_ts };
        if self.conversations.insert(name.clone(), known).is_none()
            && let Some((a, b)) = name.parties()
        {
            for party in [a, b] {
                self.by_party.entry(Arc::from(party)).or_default().insert(name.clone());
            }
        }
    }

    /// The parties' nicks of a conversation a direct message is being
    /// numbered for (cluster mode), so that it is told with them when it
    /// comes back; listed only once it has a message.
    fn know_nicks(&mut self, name: &RoomName, nicks: [Nick; 2]) {
        match self.conversations.get_mut(name) {
            Some(known) => known.nicks = nicks,
            None => self.know(name, nicks, 0, Timestamp::from_unix_millis(0)),
        }
    }

    /// What the engine lists of a conversation (cluster mode): taken if it
    /// is newer than what this core knows.
    pub(super) fn merge_known(&mut self, conversation: Conversation) {
        let Conversation { name, nicks, last_seq, last_ts } = conversation;
        let newer = self.conversations.get(&name).is_none_or(|known| known.last_seq < last_seq);
        if name.is_conversation() && newer {
            self.know(&name, nicks, last_seq, last_ts);
        }
    }

    /// A direct message numbered by the engine (cluster mode), heard by
    /// the core of one of its parties or both: each party here gets its
    /// copy, once.
    pub(super) fn direct_appended(&mut self, now: Timestamp, message: Message) {
        let name = message.room.clone();
        let Some((first, second)) = name.parties() else {
            return;
        };
        let (first, second) = (Arc::<str>::from(first), Arc::<str>::from(second));
        let known = self.conversations.get(&name);
        if known.is_some_and(|known| known.last_seq >= message.seq) {
            return;
        }
        // Who sent it: its session's party.
        let sender = match (&message.sender, self.config.require_identity) {
            (_, true) => format!("@{}", message.from.folded()).into(),
            (Some(token), false) => self.token_party(token),
            (None, false) => return,
        };
        let (at, other) = match (sender == first, sender == second) {
            (true, _) => (0, second),
            (false, true) => (1, first),
            (false, false) => return,
        };
        // The other's nick: its session's here, else as last known.
        let other_session = self.party_session(&other);
        let other_nick = other_session
            .and_then(|sid| self.sessions.get(&sid))
            .map(|session| session.nick.clone())
            .or_else(|| known.map(|known| known.nicks[1 - at].clone()))
            .unwrap_or_else(|| message.from.clone());
        let mut nicks = [other_nick.clone(), other_nick.clone()];
        nicks[at] = message.from.clone();
        if let Some(&room_id) = self.room_ids.get(&name)
            && let Some(room) = self.rooms.get(&room_id)
            && message.seq > room.last_seq
        {
            if message.seq > room.last_seq + 1 {
                let before = message.seq - 1;
                self.change_window(room_id, |room| room.restart_after(before));
            }
            self.push_message(room_id, message.clone());
            self.enforce_memory(Some(room_id));
        }
        self.know(&name, nicks, message.seq, message.ts);
        let key: Arc<str> = name.conversation_key().into();
        let event = |with: &Nick| Event::Direct {
            id: message.id.clone(),
            key: Arc::clone(&key),
            from: message.from.clone(),
            to: other_nick.clone(),
            with: with.clone(),
            text: Arc::clone(&message.text),
            ts: message.ts,
            seq: message.seq,
        };
        let (mine, theirs) = (Arc::new(event(&other_nick)), event(&message.from));
        if let Some(token) = &message.sender {
            self.remember(now, token.clone(), &message.id, &mine);
        }
        let sender_session = self.party_session(&sender);
        for (sid, event) in [(sender_session, Some(mine)), (other_session, None)] {
            let Some(session) = sid.and_then(|sid| self.sessions.get(&sid)) else {
                continue;
            };
            let to: Arc<[MemberId]> = session.conns.iter().collect();
            match event {
                Some(mine) => self.deliver_shared(to, mine),
                None if other_session != sender_session => self.deliver(to, theirs.clone()),
                None => {}
            }
        }
    }

    /// A conversation's last message could not be stored: its numbering
    /// goes back with it.
    pub(super) fn retract_known(&mut self, name: &RoomName, seq: u64) {
        if let Some(known) = self.conversations.get_mut(name)
            && known.last_seq == seq
        {
            known.last_seq = seq - 1;
        }
    }

    /// A conversation as storage summarized it, at startup.
    pub(super) fn restore_known(&mut self, conversation: Conversation) {
        let Conversation { name, nicks, last_seq, last_ts } = conversation;
        if name.is_conversation() {
            self.know(&name, nicks, last_seq, last_ts);
        }
    }

    /// The event a stored direct message's retry is answered with: the
    /// sender's copy.
    pub(super) fn direct_event(&self, message: &Message) -> Option<Event> {
        let known = self.conversations.get(&message.room)?;
        let to = match known.nicks[0].folded() == message.from.folded() {
            true => known.nicks[1].clone(),
            false => known.nicks[0].clone(),
        };
        Some(Event::Direct {
            id: message.id.clone(),
            key: message.room.conversation_key().into(),
            from: message.from.clone(),
            to: to.clone(),
            with: to,
            text: Arc::clone(&message.text),
            ts: message.ts,
            seq: message.seq,
        })
    }

    /// Runs `parked` on room `name` once it is in memory with what it
    /// needs, reading it from storage first if it is not.
    pub(super) fn with_room(
        &mut self,
        now: Timestamp,
        name: RoomName,
        parked: Parked,
    ) -> Result<(), CommandError> {
        if let Some(&room_id) = self.room_ids.get(&name) {
            return self.serve_or_wait(now, room_id, parked);
        }
        // Not in memory: storage may know it (its numbering goes on from
        // there) or not (it is created).
        self.park_for(parked.member());
        match self.loading.get_mut(&name) {
            Some(waiting) => waiting.push(parked),
            None => {
                self.loading.insert(name.clone(), vec![parked]);
                self.outputs.push_back(Output::Load(name));
            }
        }
        Ok(())
    }
}
