//! Rooms: joining and leaving, rooms read back from storage when they are
//! not in memory, room creation and its limits, and the memory the rooms'
//! windows may use.

use std::sync::Arc;

use super::sessions::Session;
use super::{Asker, Chat, Parked, Wants};
use crate::id::SessionId;
use crate::room::Room;
use crate::{
    CommandError, Event, MemberId, Message, Nick, Output, Presence, Record, RoomHistory, RoomId,
    RoomName, Timestamp,
};

/// The longest topic, in characters: a line in a header.
const TOPIC_MAX_CHARS: usize = 200;

impl Chat {
    pub(super) fn join(
        &mut self,
        now: Timestamp,
        asker: &Asker,
        room: &str,
        after: Option<u64>,
    ) -> Result<(), CommandError> {
        let sid = asker.session;
        let name = RoomName::parse(room).map_err(CommandError::InvalidRoom)?;
        self.check_grant(sid, &name)?;
        let existing = self.room_ids.get(&name).copied();
        let joined = existing
            .is_some_and(|room| self.sessions.get(&sid).is_some_and(|s| s.rooms.contains(&room)));
        if !joined {
            self.admit_join(now, sid, existing)?;
        }
        let parked = Parked { asker: asker.clone(), wants: Wants::Join { after } };
        self.with_room(now, name, parked)
    }

    /// Checks the limits on joining a room the session is not in yet: rooms
    /// per session, members per room, the join rate.
    fn admit_join(
        &mut self,
        now: Timestamp,
        sid: SessionId,
        existing: Option<RoomId>,
    ) -> Result<(), CommandError> {
        let rate = crate::Rate::per_sec(self.config.joins_per_sec, self.config.joins_burst);
        let (max_rooms, max_members) =
            (self.config.max_rooms_per_session, self.config.max_members_per_room);
        let members =
            existing.and_then(|room| self.rooms.get(&room)).map_or(0, |room| room.sessions().len());
        let Some(session) = self.sessions.get_mut(&sid) else {
            debug_assert!(false, "a session id without its session");
            return Ok(());
        };
        if session.rooms.len() >= max_rooms {
            return Err(CommandError::RoomLimit { max: max_rooms });
        }
        if members >= max_members {
            let name = existing.and_then(|room| self.rooms.get(&room)).map(|r| r.name.clone());
            if let Some(room) = name {
                return Err(CommandError::RoomFull { room, max: max_members });
            }
        }
        session
            .joins
            .take(rate, now)
            .map_err(|retry_after_ms| CommandError::JoinRateLimited { retry_after_ms })
    }

    /// Answers a join or a history request on a room in memory now if its
    /// window holds what is needed, else once storage returned the rest.
    pub(super) fn serve_or_wait(
        &mut self,
        now: Timestamp,
        room_id: RoomId,
        parked: Parked,
    ) -> Result<(), CommandError> {
        if let Some(waiting) = self.waiting.get_mut(&room_id) {
            // A load is out: answer in order, after it.
            let member = parked.member();
            waiting.push(parked);
            self.park_for(member);
            self.recipients_changed(room_id);
            return Ok(());
        }
        let Some(room) = self.rooms.get(&room_id) else {
            return Ok(());
        };
        let covered = match parked.wants {
            Wants::Join { after } | Wants::Conversation { after, before: None, .. } => {
                room.covers_resume(after, self.config.join_history)
            }
            Wants::History { before, limit }
            | Wants::Conversation { before: before @ Some(_), limit, .. } => {
                room.covers_history(before, limit)
            }
            // Only its numbering, which a room in memory always has.
            Wants::Dm { .. } => true,
            Wants::Change { seq, .. } => room.covers(seq),
        };
        if covered {
            return self.serve(now, room_id, parked);
        }
        let name = room.name.clone();
        self.park_for(parked.member());
        self.waiting.insert(room_id, vec![parked]);
        self.recipients_changed(room_id);
        self.outputs.push_back(Output::Load(name));
        Ok(())
    }

    fn serve(
        &mut self,
        now: Timestamp,
        room_id: RoomId,
        parked: Parked,
    ) -> Result<(), CommandError> {
        let asker = &parked.asker;
        match parked.wants {
            Wants::Join { after } => self.complete_join(now, asker, room_id, after),
            Wants::History { before, limit } => {
                self.history_reply(now, asker, room_id, before, limit)
            }
            Wants::Dm { text, other } => self.complete_dm(now, asker, room_id, text, other),
            Wants::Change { seq, text } => self.complete_change(now, asker, room_id, seq, text),
            Wants::Conversation { with, after, before, limit } => {
                self.conversation_reply(now, asker, room_id, with, after, before, limit)
            }
        }
    }

    /// The join itself, once the room is in memory with what the `joined`
    /// needs.
    fn complete_join(
        &mut self,
        now: Timestamp,
        asker: &Asker,
        room_id: RoomId,
        after: Option<u64>,
    ) -> Result<(), CommandError> {
        let (member, sid, id) = (asker.member, asker.session, &asker.id);
        // The connection may have gone, or moved on, while the room loaded.
        if !self.still_asking(asker) {
            return Ok(());
        }
        let (max_rooms, max_members) =
            (self.config.max_rooms_per_session, self.config.max_members_per_room);
        let (Some(session), Some(room)) = (self.sessions.get(&sid), self.rooms.get(&room_id))
        else {
            return Ok(());
        };
        let nick = session.nick.clone();
        let name = room.name.clone();
        let mut newly = false;
        if !session.rooms.contains(&room_id) {
            if session.grant.as_ref().is_some_and(|grant| !grant.allows(&name)) {
                return Err(forbidden(&name));
            }
            if session.rooms.len() >= max_rooms {
                return Err(CommandError::RoomLimit { max: max_rooms });
            }
            if room.sessions().len() >= max_members {
                return Err(CommandError::RoomFull { room: name, max: max_members });
            }
            if let Some(session) = self.sessions.get_mut(&sid) {
                session.rooms.insert(room_id);
            }
            if let Some(room) = self.rooms.get_mut(&room_id) {
                room.add(sid, &nick);
            }
            self.recipients_changed(room_id);
            self.reindex(room_id);
            self.announce(sid, &[room_id], Presence::Joined(nick));
            newly = true;
        }
        self.touch(room_id);
        let Some(room) = self.rooms.get(&room_id) else {
            return Ok(());
        };
        let (history, resume) =
            room.resume(after, self.config.join_history, self.config.resume_max);
        // A small room's whole list; a big room's first page.
        let (page, _) = room.members_page(None, "", self.config.member_page_max);
        let member_count = room.sessions().len();
        let sids: Vec<SessionId> = page.iter().map(|(sid, _)| *sid).collect();
        let away = self.away_nicks(&sids);
        let members = page.into_iter().map(|(_, nick)| nick).collect();
        let (last_seq, topic) = (room.last_seq, room.topic.clone());
        let docs = self.doc_list(room_id);
        let docs_read_only = self.read_only_docs(&name);
        let history = self.fit_history(now, member, history, false)?;
        let event = Event::Joined {
            id: id.clone(),
            room: name,
            members,
            member_count,
            away,
            history,
            last_seq,
            resume,
            topic,
            docs,
            docs_read_only,
        };
        if newly {
            // The session's other connections are in the room now too.
            let mut theirs = event.clone();
            if let Event::Joined { id, .. } = &mut theirs {
                *id = None;
            }
            let siblings = self.siblings(member, sid);
            self.deliver(siblings, theirs);
        }
        self.reply(member, event);
        Ok(())
    }

    /// Sets a joined room's topic (empty: clears it), for everyone in it
    /// and for storage.
    pub(super) fn set_topic(
        &mut self,
        now: Timestamp,
        asker: &Asker,
        room: &str,
        topic: &str,
    ) -> Result<(), CommandError> {
        let (sid, id) = (asker.session, &asker.id);
        let (room_id, name) = self.joined_room(sid, room)?;
        let topic = topic.trim();
        if topic.chars().nth(TOPIC_MAX_CHARS).is_some() || topic.chars().any(char::is_control) {
            return Err(CommandError::BadTopic { max: TOPIC_MAX_CHARS });
        }
        self.check_store(now)?;
        self.take_message_token(now, sid)?;
        let topic: Option<Arc<str>> = (!topic.is_empty()).then(|| Arc::from(topic));
        let Some(by) = self.sessions.get(&sid).map(|session| session.nick.clone()) else {
            return Ok(());
        };
        let Some(room) = self.rooms.get_mut(&room_id) else {
            return Ok(());
        };
        room.topic = topic.clone();
        let shared = crate::Shared::Topic { topic: topic.clone(), by: by.clone() };
        self.share(sid, room_id, shared);
        let to = self.recipients(room_id);
        self.outputs
            .push_back(Output::Persist(Record::Topic { room: name.clone(), topic: topic.clone() }));
        // Everyone gets it; the one who set it, with its id.
        let theirs =
            Event::Topic { id: None, room: name.clone(), topic: topic.clone(), by: by.clone() };
        let others: Arc<[MemberId]> = to.iter().copied().filter(|&m| m != asker.member).collect();
        self.deliver(others, theirs);
        self.reply(asker.member, Event::Topic { id: id.clone(), room: name, topic, by });
        Ok(())
    }

    pub(super) fn leave(&mut self, asker: &Asker, room: &str) -> Result<(), CommandError> {
        let (member, sid, id) = (asker.member, asker.session, &asker.id);
        let name = RoomName::parse(room).map_err(CommandError::InvalidRoom)?;
        let joined =
            self.room_ids.get(&name).copied().filter(|room_id| {
                self.sessions.get(&sid).is_some_and(|s| s.rooms.contains(room_id))
            });
        let Some(room_id) = joined else {
            return Err(CommandError::NotInRoom(name));
        };
        self.part(member, sid, id, room_id, name);
        Ok(())
    }

    /// Takes the session out of a room it is in: `left` to `member`, a
    /// presence to the others.
    pub(super) fn part(
        &mut self,
        member: MemberId,
        sid: SessionId,
        id: &Option<Arc<str>>,
        room_id: RoomId,
        name: RoomName,
    ) {
        let Some(session) = self.sessions.get_mut(&sid) else {
            debug_assert!(false, "a session id without its session");
            return;
        };
        session.rooms.remove(&room_id);
        if let Some(typing) = session.typing.as_mut() {
            typing.remove(&room_id);
        }
        let nick = session.nick.clone();
        self.share(sid, room_id, crate::Shared::Presence(Presence::Left(nick.clone())));
        let siblings = self.siblings(member, sid);
        self.deliver(siblings, Event::Left { id: None, room: name.clone() });
        self.reply(member, Event::Left { id: id.clone(), room: name });
        self.remove_from_room(room_id, sid, &nick);
    }

    /// Takes a session out of a room, tells the others, and forgets the
    /// room if it is now empty and holds no messages in memory (storage
    /// keeps its numbering and history). An empty room with messages stays
    /// as a cache until memory or the room limit wants it gone.
    pub(super) fn remove_from_room(&mut self, room_id: RoomId, sid: SessionId, nick: &Nick) {
        let Some(room) = self.rooms.get_mut(&room_id) else {
            return;
        };
        room.remove(sid, nick);
        self.recipients_changed(room_id);
        self.reindex(room_id);
        let left = Presence::Left(nick.clone());
        // In a big room the leave waits for the next batch: its recipients
        // are not even rebuilt now.
        let batched = self.batch_presence(room_id, &left);
        let to = (!batched).then(|| self.recipients(room_id));
        let Some(room) = self.rooms.get(&room_id) else {
            return;
        };
        let event = Event::Presence { room: room.name.clone(), change: left };
        if room.is_empty() && room.window_is_empty() && !self.waiting.contains_key(&room_id) {
            self.remove_room(room_id);
        }
        if let Some(to) = to {
            self.deliver(to, event);
        }
        self.forget_if_only_remote(room_id);
    }

    /// A room's sessions or their connections changed: its recipients are
    /// rebuilt when next read ([`Chat::recipients`]).
    pub(super) fn recipients_changed(&mut self, room_id: RoomId) {
        if let Some(room) = self.rooms.get_mut(&room_id) {
            room.recipients_stale = true;
        }
    }

    /// The connections a room delivers to now, rebuilt from its sessions if
    /// they changed since last read. A session joins a room's sessions only
    /// with its `joined`, so nobody new gets a room's messages before its
    /// `joined`; and a member resuming from `after` while the room is read
    /// back gets them in that `joined`, in order, not before it.
    pub(super) fn recipients(&mut self, room_id: RoomId) -> Arc<[MemberId]> {
        let Some(room) = self.rooms.get(&room_id) else {
            return Arc::new([]);
        };
        if !room.recipients_stale {
            return room.recipients();
        }
        let waiting = self.waiting.get(&room_id);
        let resuming = |member: MemberId| {
            waiting.is_some_and(|parked| {
                parked.iter().any(|p| {
                    matches!(p.wants, Wants::Join { after: Some(_) }) && p.member() == member
                })
            })
        };
        let recipients: Arc<[MemberId]> = room
            .sessions()
            .iter()
            .filter_map(|sid| self.sessions.get(sid))
            .flat_map(|s| s.conns.iter())
            .filter(|&member| !resuming(member))
            .collect();
        if let Some(room) = self.rooms.get_mut(&room_id) {
            room.set_recipients(Arc::clone(&recipients));
            room.recipients_stale = false;
        }
        recipients
    }

    /// The room `sid` names, if the session is in it and its grant allows
    /// it.
    pub(super) fn joined_room(
        &self,
        sid: SessionId,
        room: &str,
    ) -> Result<(RoomId, RoomName), CommandError> {
        let name = RoomName::parse(room).map_err(CommandError::InvalidRoom)?;
        let session = self.sessions.get(&sid);
        let joined = self
            .room_ids
            .get(&name)
            .copied()
            .filter(|room_id| session.is_some_and(|s| s.rooms.contains(room_id)));
        match (joined, session.and_then(|s| s.grant.as_deref())) {
            (None, _) => Err(CommandError::NotInRoom(name)),
            (Some(_), Some(grant)) if !grant.allows(&name) => Err(forbidden(&name)),
            (Some(room_id), _) => Ok((room_id, name)),
        }
    }

    /// Refuses a room the session's identity does not allow.
    pub(super) fn check_grant(&self, sid: SessionId, name: &RoomName) -> Result<(), CommandError> {
        let session = self.sessions.get(&sid);
        match session.and_then(|s| s.grant.as_deref()) {
            Some(grant) if !grant.allows(name) => Err(forbidden(name)),
            _ => Ok(()),
        }
    }

    /// Storage answered a load (`None`: it failed).
    pub(super) fn loaded(
        &mut self,
        now: Timestamp,
        name: &RoomName,
        stored: Option<Option<RoomHistory>>,
    ) {
        let waited: Vec<MemberId>;
        if let Some(parked) = self.loading.remove(name) {
            waited = parked.iter().map(Parked::member).collect();
            self.loaded_new(now, name, stored, parked);
        } else if let Some(&room_id) = self.room_ids.get(name) {
            let parked = self.waiting.remove(&room_id).unwrap_or_default();
            waited = parked.iter().map(Parked::member).collect();
            match stored {
                Some(history) => {
                    let capacity = self.config.history_per_room;
                    let history = history.unwrap_or_default();
                    self.change_window(room_id, |room| {
                        room.merge_loaded(history.last_seq, history.messages, capacity);
                    });
                    for parked in parked {
                        let (member, id) = (parked.member(), parked.asker.id.clone());
                        if let Err(error) = self.serve(now, room_id, parked) {
                            self.refuse(member, id, error);
                        }
                    }
                }
                None => self.refuse_parked(parked, name),
            }
            self.recipients_changed(room_id);
            self.forget_if_unused(room_id);
            self.enforce_memory(Some(room_id));
        } else {
            return;
        }
        // What their connections sent meanwhile runs now, in order.
        for member in waited {
            self.unpark(now, member);
        }
    }

    /// A room that was not in memory came back from storage (or is new):
    /// the joins that waited for it go on.
    fn loaded_new(
        &mut self,
        now: Timestamp,
        name: &RoomName,
        stored: Option<Option<RoomHistory>>,
        parked: Vec<Parked>,
    ) {
        let mut room_id = match stored {
            None => return self.refuse_parked(parked, name),
            Some(None) => None,
            Some(Some(history)) => match self.open_room(name.clone()) {
                Ok(room_id) => {
                    let capacity = self.config.history_per_room;
                    self.change_window(room_id, |room| {
                        room.topic = history.topic;
                        room.docs = history
                            .docs
                            .into_iter()
                            .map(|entry| (entry.name.clone(), (entry, None)))
                            .collect();
                        room.merge_loaded(history.last_seq, history.messages, capacity);
                    });
                    for member in history.remote {
                        self.add_remote(now, room_id, member);
                    }
                    Some(room_id)
                }
                Err(error) => {
                    for parked in parked {
                        let (member, id) = (parked.member(), parked.asker.id.clone());
                        self.refuse(member, id, error.clone());
                    }
                    return;
                }
            },
        };
        for parked in parked {
            let (member, id) = (parked.member(), parked.asker.id.clone());
            let target = match room_id {
                Some(room_id) => Ok(room_id),
                // Storage never heard of it: whoever asked first creates it.
                None => self.create_for(now, &parked, name),
            };
            let served = target.and_then(|target| {
                room_id = Some(target);
                self.serve(now, target, parked)
            });
            if let Err(error) = served {
                self.refuse(member, id, error);
            }
        }
        if let Some(room_id) = room_id {
            self.forget_if_unused(room_id);
            self.enforce_memory(Some(room_id));
        }
    }

    /// Forgets a room nobody is in that holds nothing in memory.
    fn forget_if_unused(&mut self, room_id: RoomId) {
        let unused = self.rooms.get(&room_id).is_some_and(|room| {
            room.is_empty() && room.window_is_empty() && !self.waiting.contains_key(&room_id)
        });
        if unused {
            self.remove_room(room_id);
        }
    }

    fn refuse_parked(&mut self, parked: Vec<Parked>, name: &RoomName) {
        for parked in parked {
            let (member, id) = (parked.member(), parked.asker.id.clone());
            self.refuse(member, id, CommandError::RoomUnavailable(name.clone()));
        }
    }

    /// Refuses a command that waited, if its connection is still there.
    fn refuse(&mut self, member: MemberId, id: Option<Arc<str>>, error: CommandError) {
        if self.conns.contains_key(&member) {
            self.reply(member, Event::Error { id, error });
        }
    }

    /// Creates a room for the session of a waiting join, charged to its
    /// session's and its source's room creation quotas.
    fn create_for(
        &mut self,
        now: Timestamp,
        parked: &Parked,
        name: &RoomName,
    ) -> Result<RoomId, CommandError> {
        match parked.wants {
            Wants::Join { .. } => {}
            // A conversation's first message; nothing to read of one not
            // begun (answered as empty).
            Wants::Dm { .. } | Wants::Conversation { .. } => return self.open_room(name.clone()),
            Wants::History { .. } | Wants::Change { .. } => {
                return Err(CommandError::NotInRoom(name.clone()));
            }
        }
        let (member, sid) = (&parked.asker.member, &parked.asker.session);
        let (per_session, per_source) =
            (self.config.rooms_created_per_session, self.config.rooms_created_per_source);
        let Some(source) = self.conns.get(member).map(|conn| conn.source) else {
            return Err(CommandError::HelloRequired);
        };
        let Some(session) = self.sessions.get_mut(sid) else {
            return Err(CommandError::HelloRequired);
        };
        let rate_limited = |retry_after_ms| CommandError::CreateRateLimited { retry_after_ms };
        let quotas = session.quotas(&self.config, now);
        quotas.created.check(per_session, now, 1).map_err(rate_limited)?;
        self.source_state(now, source).created.check(per_source, now, 1).map_err(rate_limited)?;
        let room_id = self.open_room(name.clone())?;
        if let Some(session) = self.sessions.get_mut(sid) {
            let _ = session.quotas(&self.config, now).created.take(per_session, now);
        }
        let _ = self.source_state(now, source).created.take(per_source, now);
        Ok(room_id)
    }

    /// A new room in memory, making way by forgetting the idle room used
    /// longest ago if the room limit is reached.
    fn open_room(&mut self, name: RoomName) -> Result<RoomId, CommandError> {
        if self.rooms.len() >= self.config.max_rooms {
            let idle =
                self.idle.iter().map(|&(_, id)| id).find(|id| !self.waiting.contains_key(id));
            match idle {
                Some(idle) => self.remove_room(idle),
                None => return Err(CommandError::TooManyRooms { max: self.config.max_rooms }),
            }
        }
        let room_id = RoomId::new(self.next_room);
        self.next_room += 1;
        self.uses += 1;
        self.room_ids.insert(name.clone(), room_id);
        self.rooms.insert(room_id, Room::new(name, self.uses));
        self.reindex(room_id);
        Ok(room_id)
    }

    /// Forgets a room from memory; storage keeps its numbering and history.
    pub(super) fn remove_room(&mut self, room_id: RoomId) {
        let Some(room) = self.rooms.remove(&room_id) else {
            return;
        };
        self.resident.remove(&(room.used, room_id));
        self.idle.remove(&(room.used, room_id));
        self.resident_bytes -= room.bytes;
        self.room_ids.remove(&room.name);
        // (A conversation is followed for its parties, not for its room.)
        if self.config.sequencing == crate::Sequencing::Shared && !room.name.is_conversation() {
            self.outputs.push_back(Output::Forget(room.name));
        }
    }

    /// Changes a room's window, keeping the memory accounting right.
    pub(super) fn change_window(&mut self, room_id: RoomId, change: impl FnOnce(&mut Room)) {
        let Some(room) = self.rooms.get_mut(&room_id) else {
            return;
        };
        let before = room.bytes;
        change(room);
        self.resident_bytes = self.resident_bytes - before + room.bytes;
        self.reindex(room_id);
    }

    /// Drops the windows of the rooms used longest ago until the history in
    /// memory is within [`ChatConfig::history_memory_max`], sparing `keep`
    /// and rooms whose load is out. A room nobody is in goes entirely.
    ///
    /// [`ChatConfig::history_memory_max`]: crate::ChatConfig::history_memory_max
    pub(super) fn enforce_memory(&mut self, keep: Option<RoomId>) {
        while self.resident_bytes > self.config.history_memory_max {
            let victim = self
                .resident
                .iter()
                .map(|&(_, id)| id)
                .find(|&id| Some(id) != keep && !self.waiting.contains_key(&id));
            let Some(victim) = victim else { break };
            if self.rooms.get(&victim).is_some_and(Room::is_empty) {
                self.remove_room(victim);
            } else {
                self.change_window(victim, |room| {
                    room.spill();
                });
            }
        }
    }

    /// Drops messages accepted before `cutoff` from every window; rooms
    /// left empty and unused go.
    pub(super) fn prune_rooms(&mut self, cutoff: Timestamp) {
        let ids: Vec<RoomId> = self.rooms.keys().copied().collect();
        for room_id in ids {
            self.change_window(room_id, |room| room.prune_before(cutoff));
            self.forget_if_unused(room_id);
        }
    }

    /// Adds a message to a room's window, marking the room used now (the
    /// hot path of every `say`: the same as `change_window` and `touch`,
    /// with the fewest index updates). Returns the room's recipients.
    pub(super) fn push_message(&mut self, room_id: RoomId, message: Message) -> Arc<[MemberId]> {
        let capacity = self.config.history_per_room;
        let Some(room) = self.rooms.get_mut(&room_id) else {
            return Arc::new([]);
        };
        let (old, before) = ((room.used, room_id), room.bytes);
        room.push(message, capacity);
        self.resident_bytes = self.resident_bytes - before + room.bytes;
        // The room used last stays so: a busy room is not filed again for
        // every message.
        if room.used == self.uses && before > 0 {
            return self.recipients(room_id);
        }
        self.uses += 1;
        room.used = self.uses;
        if before > 0 {
            self.resident.remove(&old);
        }
        self.resident.insert((room.used, room_id));
        if room.is_empty() {
            self.idle.remove(&old);
            self.idle.insert((room.used, room_id));
        }
        self.recipients(room_id)
    }

    /// Marks a room used now.
    pub(super) fn touch(&mut self, room_id: RoomId) {
        let Some(room) = self.rooms.get_mut(&room_id) else {
            return;
        };
        self.resident.remove(&(room.used, room_id));
        self.idle.remove(&(room.used, room_id));
        self.uses += 1;
        room.used = self.uses;
        self.reindex(room_id);
    }

    /// Files a room under the eviction orders its state puts it in.
    pub(super) fn reindex(&mut self, room_id: RoomId) {
        let Some(room) = self.rooms.get(&room_id) else {
            return;
        };
        let key = (room.used, room_id);
        if room.bytes > 0 {
            self.resident.insert(key);
        } else {
            self.resident.remove(&key);
        }
        if room.is_empty() {
            self.idle.insert(key);
        } else {
            self.idle.remove(&key);
        }
    }

    /// The nicks of those of `sessions` that are away, sorted.
    pub(super) fn away_nicks(&self, sessions: &[SessionId]) -> Vec<Nick> {
        let away: Vec<SessionId> = sessions
            .iter()
            .copied()
            .filter(|sid| self.sessions.get(sid).is_some_and(Session::is_away))
            .collect();
        self.sorted_nicks(&away)
    }

    pub(super) fn sorted_nicks(&self, sessions: &[SessionId]) -> Vec<Nick> {
        let mut nicks: Vec<Nick> =
            sessions.iter().filter_map(|s| self.sessions.get(s)).map(|s| s.nick.clone()).collect();
        nicks.sort_by(|a, b| a.folded().cmp(b.folded()).then_with(|| a.cmp(b)));
        nicks
    }
}

fn forbidden(name: &RoomName) -> CommandError {
    CommandError::Forbidden(format!("your token does not allow room {name}"))
}
