//! What members say: room messages, retries answered with
//! the original, typing notices, uploads admitted before their bytes
//! come, and messages taken back when storage could not keep them.

use std::sync::Arc;

use super::{Asker, Chat, Parked, Wants, millis};
use crate::id::SessionId;
use crate::{
    Attachment, CommandError, Direct, Event, MemberId, Message, MessageKind, Output, Quota, Record,
    RoomId, Sequencing, SessionToken, Timestamp,
};

/// What a `say` carries.
pub(super) struct Said {
    pub text: String,
    pub action: bool,
    pub attachment: Option<Arc<Attachment>>,
}

impl Chat {
    pub(super) fn say(
        &mut self,
        now: Timestamp,
        asker: &Asker,
        room: &str,
        Said { text, action, attachment }: Said,
    ) -> Result<(), CommandError> {
        let (member, sid, id) = (asker.member, asker.session, &asker.id);
        if self.answer_retry(member, sid, id) {
            return Ok(());
        }
        let (room_id, name) = self.joined_room(sid, room)?;
        // A file may come without a caption.
        if attachment.is_none() || !text.is_empty() {
            self.check_text(&text)?;
        }
        self.check_store(now)?;
        self.take_message_token(now, sid)?;
        let Some(session) = self.sessions.get(&sid) else {
            debug_assert!(false, "a greeted member without its session");
            return Ok(());
        };
        let (from, sender) = (session.nick.clone(), session.token.clone());
        let Some(room) = self.rooms.get(&room_id) else {
            debug_assert!(false, "a joined room that is not in memory");
            return Ok(());
        };
        let message = Message {
            kind: Default::default(),
            room: name,
            seq: room.last_seq + 1,
            ts: now,
            from,
            text: text.into(),
            action,
            id: id.clone(),
            sender: Some(sender),
            attachment,
        };
        self.publish(now, room_id, member, message);
        Ok(())
    }

    /// A room message made: numbered here and taken at once (alone), or
    /// handed out to be numbered by the engine the cores share and taken
    /// when it comes back ([`Chat::handle_appended`]).
    fn publish(&mut self, now: Timestamp, room_id: RoomId, member: MemberId, mut message: Message) {
        match self.config.sequencing {
            Sequencing::Alone => self.accept(now, room_id, message, true),
            Sequencing::Shared => {
                message.seq = 0;
                self.outputs.push_back(Output::Append { member, message });
            }
        }
    }

    /// A numbered room message: a change applied to what it changes, then
    /// the window, storage (when this core numbers), the record of its id
    /// for retries, and everyone in the room here.
    pub(super) fn accept(
        &mut self,
        now: Timestamp,
        room_id: RoomId,
        message: Message,
        store: bool,
    ) {
        if let MessageKind::Edit(of) | MessageKind::Delete(of) = message.kind {
            self.change_window(room_id, |room| room.apply(of, message.kind, &message.text));
        }
        let to = self.push_message(room_id, message.clone());
        if store {
            self.outputs.push_back(Output::Persist(Record::Message(message.clone())));
        }
        let (sender, id) = (message.sender.clone(), message.id.clone());
        let event = Arc::new(Event::Message(message));
        if let Some(sender) = sender {
            self.remember(now, sender, &id, &event);
        }
        self.deliver_shared(to, event);
        self.enforce_memory(Some(room_id));
    }

    /// An edit (`text`) or a deletion of message `seq`: checked once the
    /// room's window holds the message (read back if needed).
    pub(super) fn change(
        &mut self,
        now: Timestamp,
        asker: &Asker,
        room: &str,
        seq: u64,
        text: Option<String>,
    ) -> Result<(), CommandError> {
        let (member, sid, id) = (asker.member, asker.session, &asker.id);
        if self.answer_retry(member, sid, id) {
            return Ok(());
        }
        let (room_id, _) = self.joined_room(sid, room)?;
        if let Some(text) = &text {
            self.check_text(text)?;
        }
        self.check_store(now)?;
        self.take_message_token(now, sid)?;
        let parked = Parked {
            asker: asker.clone(),
            wants: Wants::Change { seq, text: text.map(Arc::from) },
        };
        self.serve_or_wait(now, room_id, parked)
    }

    /// The change itself: a new message of the room that edits or deletes
    /// message `seq`, applied to the window, stored, and sent to everyone
    /// in the room.
    pub(super) fn complete_change(
        &mut self,
        now: Timestamp,
        asker: &Asker,
        room_id: RoomId,
        seq: u64,
        text: Option<Arc<str>>,
    ) -> Result<(), CommandError> {
        let (sid, id) = (asker.session, &asker.id);
        if !self.still_asking(asker) {
            return Ok(());
        }
        let (Some(session), Some(room)) = (self.sessions.get(&sid), self.rooms.get(&room_id))
        else {
            return Ok(());
        };
        let name = room.name.clone();
        let missing = || CommandError::NoSuchMessage { room: name.clone(), seq };
        let target = room.message(seq).ok_or_else(missing)?;
        if !matches!(target.kind, MessageKind::Said | MessageKind::Edited) {
            return Err(missing());
        }
        if target.sender.as_ref() != Some(&session.token) {
            return Err(CommandError::NotYours("only its sender may change a message".to_owned()));
        }
        let window = self.config.edit_window;
        if text.is_some() && now.millis_since(target.ts) > millis(window) {
            let minutes = window.as_secs() / 60;
            let why = format!("a message can be edited for {minutes} min after it is sent");
            return Err(CommandError::NotYours(why));
        }
        let (kind, text) = match text {
            Some(text) => (MessageKind::Edit(seq), text),
            None => (MessageKind::Delete(seq), Arc::from("")),
        };
        let message = Message {
            room: name,
            seq: room.last_seq + 1,
            ts: now,
            from: session.nick.clone(),
            text,
            action: target.action,
            id: id.clone(),
            sender: Some(session.token.clone()),
            attachment: None,
            kind,
        };
        self.publish(now, room_id, asker.member, message);
        Ok(())
    }

    /// If `id` names a `say` or `dm` this session already had accepted,
    /// answers with the original and returns true.
    pub(super) fn answer_retry(
        &mut self,
        member: MemberId,
        sid: SessionId,
        id: &Option<Arc<str>>,
    ) -> bool {
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

    pub(super) fn remember(
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

    /// Takes back a record storage could not keep; see
    /// [`Chat::handle_unstored`].
    pub(super) fn retract(&mut self, now: Timestamp, record: Record) {
        let (sender, id) = match record {
            Record::Message(message) => {
                if let Some(&room_id) = self.room_ids.get(&message.room) {
                    self.change_window(room_id, |room| room.retract(message.seq));
                    if matches!(message.kind, MessageKind::Edit(_) | MessageKind::Delete(_)) {
                        // The change was applied to the window: what
                        // storage holds is read back instead.
                        self.change_window(room_id, |room| {
                            room.spill();
                        });
                    }
                }
                (message.sender, message.id)
            }
            Record::Direct(Direct { message, .. }) => {
                if let Some(&room_id) = self.room_ids.get(&message.room) {
                    self.change_window(room_id, |room| room.retract(message.seq));
                }
                self.retract_known(&message.room, message.seq);
                (message.sender, message.id)
            }
            // A topic that could not be stored stays in memory: it is said
            // again by whoever sets it next.
            Record::Session { .. }
            | Record::SessionEnded(_)
            | Record::Topic { .. }
            | Record::Doc { .. } => return,
        };
        let (Some(sender), Some(id)) = (sender, id) else {
            return;
        };
        self.dedupe.remove(&sender, &id);
        // The sender's connections: the one that sent it retries, with
        // the same id.
        let to = self.conns_of(&sender);
        let retry_after_ms = self.store_retry_ms(now);
        let error = CommandError::StoreUnavailable { retry_after_ms };
        self.deliver(to, Event::Error { id: Some(id), error });
    }

    /// Refuses messages while storage is down.
    pub(super) fn check_store(&self, now: Timestamp) -> Result<(), CommandError> {
        match self.store_down_until {
            Some(until) if until > now => {
                Err(CommandError::StoreUnavailable { retry_after_ms: self.store_retry_ms(now) })
            }
            _ => Ok(()),
        }
    }

    fn store_retry_ms(&self, now: Timestamp) -> u64 {
        self.store_down_until.map_or(0, |until| until.millis_since(now)).max(1)
    }

    pub(super) fn typing(
        &mut self,
        now: Timestamp,
        asker: &Asker,
        room: &str,
    ) -> Result<(), CommandError> {
        let sid = asker.session;
        let (room_id, name) = self.joined_room(sid, room)?;
        let interval = self.config.typing_interval;
        let Some(session) = self.sessions.get_mut(&sid) else {
            debug_assert!(false, "a greeted member without its session");
            return Ok(());
        };
        let last = session.typing.as_ref().and_then(|typing| typing.get(&room_id));
        if last.is_some_and(|&last| now < last.saturating_add(interval)) {
            // Throttled: typing notices are ephemeral, so dropping the extra
            // ones loses nothing the others need.
            return Ok(());
        }
        session.typing.get_or_insert_default().insert(room_id, now);
        let nick = session.nick.clone();
        self.typing_deadlines.push_back((now.saturating_add(interval), sid, room_id));
        self.share(sid, room_id, crate::Shared::Typing(nick.clone()));
        // A big room hears of its typists in one frame an interval.
        if self.batch_typing(room_id, &nick) {
            return Ok(());
        }
        let others = self.others_of(room_id, sid);
        self.deliver(others, Event::Typing { room: name, nick });
        Ok(())
    }

    /// Whether `member` may upload `size` bytes to `room`; see
    /// [`Chat::handle_upload`].
    pub(super) fn admit_upload(
        &mut self,
        now: Timestamp,
        member: MemberId,
        room: &str,
        size: u64,
    ) -> Result<(), CommandError> {
        let conn = self.conns.get(&member).ok_or(CommandError::HelloRequired)?;
        let (sid, source) = (conn.session.ok_or(CommandError::HelloRequired)?, conn.source);
        self.joined_room(sid, room)?;
        self.check_store(now)?;
        let (per_session, per_source) =
            (self.config.upload_bytes_per_session, self.config.upload_bytes_per_source);
        let rate = self.message_rate();
        let Some(session) = self.sessions.get_mut(&sid) else {
            return Err(CommandError::HelloRequired);
        };
        // The `say` that carries the file will need a message token: an
        // upload it would be refused is refused now, before the bytes.
        session
            .messages
            .check(rate, now, 1)
            .map_err(|retry_after_ms| CommandError::RateLimited { retry_after_ms })?;
        let quota = |quota| {
            move |wait: u64| CommandError::QuotaExceeded {
                quota,
                retry_after_ms: (wait != u64::MAX).then_some(wait),
            }
        };
        let uploads = &mut session.quotas(&self.config, now).uploads;
        uploads.check(per_session, now, size).map_err(quota(Quota::Session))?;
        let state = self.source_state(now, source);
        state.uploads.take_n(per_source, now, size).map_err(quota(Quota::Source))?;
        if let Some(session) = self.sessions.get_mut(&sid) {
            let _ = session.quotas(&self.config, now).uploads.take_n(per_session, now, size);
        }
        Ok(())
    }

    pub(super) fn check_text(&self, text: &str) -> Result<(), CommandError> {
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

    pub(super) fn take_message_token(
        &mut self,
        now: Timestamp,
        sid: SessionId,
    ) -> Result<(), CommandError> {
        let rate = self.message_rate();
        match self.sessions.get_mut(&sid) {
            Some(session) => session
                .messages
                .take(rate, now)
                .map_err(|retry_after_ms| CommandError::RateLimited { retry_after_ms }),
            None => Ok(()),
        }
    }
}
