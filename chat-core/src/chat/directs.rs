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
    CommandError, Conversation, ConversationSummary, Direct, Event, Message, Nick, Output, Peer,
    Record, RoomId, RoomName, SessionToken, Timestamp,
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

impl Chat {
    /// The party a session speaks as.
    pub(super) fn party(&self, sid: SessionId) -> Option<Arc<str>> {
        let session = self.sessions.get(&sid)?;
        Some(match session.grant {
            Some(_) => format!("@{}", session.nick.folded()).into(),
            None => Arc::from(session.token.as_str()),
        })
    }

    /// The session a party has now, if any.
    fn party_session(&self, party: &str) -> Option<SessionId> {
        match party.strip_prefix('@') {
            Some(folded) => self
                .nicks
                .get(folded)
                .copied()
                .filter(|sid| self.sessions.get(sid).is_some_and(|s| s.grant.is_some())),
            None => SessionToken::parse(party).ok().and_then(|t| self.tokens.get(&t).copied()),
        }
    }

    /// Whether a token names a party with conversations: a token only the
    /// server can have issued, so a session that ended may take it again.
    pub(super) fn has_conversations(&self, token: &SessionToken) -> bool {
        self.by_party.contains_key(token.as_str())
    }

    /// Whom `peer` names for party `me`: for a nick, the session holding
    /// it; else the other party of this session's latest conversation
    /// with someone of that nick; else, with identities, the identity.
    fn reach(&self, me: &str, peer: &Peer) -> Result<Other, CommandError> {
        let text = match peer {
            Peer::Conversation(key) => {
                return self
                    .mine(me)
                    .find(|(name, ..)| name.conversation_key() == *key)
                    .map(|(_, other, _)| other)
                    .ok_or_else(|| CommandError::NoSuchConversation(key.clone()));
            }
            Peer::Nick(text) => text,
        };
        let nick = Nick::parse(text).map_err(CommandError::InvalidNick)?;
        if let Some(&holder) = self.nicks.get(nick.folded())
            && let (Some(party), Some(session)) = (self.party(holder), self.sessions.get(&holder))
        {
            return Ok(Other { party, nick: session.nick.clone() });
        }
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
        Err(CommandError::NoSuchNick(text.clone()))
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
        let other = self.reach(&me, to)?;
        self.check_text(&text)?;
        self.check_store(now)?;
        self.take_message_token(now, sid)?;
        let name = RoomName::conversation(&me, &other.party);
        let parked = Parked { asker: asker.clone(), wants: Wants::Dm { text: text.into(), other } };
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
        let other = self.reach(&me, with)?;
        let name = RoomName::conversation(&me, &other.party);
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
