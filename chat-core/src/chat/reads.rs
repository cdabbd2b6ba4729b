//! What members may read: history pages (within each connection's byte
//! budget, read back from storage past what memory holds), who is in a
//! room, which rooms there are, and who may fetch a file.

use super::{Asker, Chat, Parked, Wants};
use crate::id::SessionId;
use crate::room::cost;
use crate::{
    CommandError, Event, MemberId, Message, Nick, RoomId, RoomListing, RoomName, SessionToken,
    Timestamp,
};

impl Chat {
    pub(super) fn history(
        &mut self,
        now: Timestamp,
        asker: &Asker,
        room: &str,
        before: Option<u64>,
        limit: Option<u32>,
    ) -> Result<(), CommandError> {
        let (room_id, _) = self.joined_room(asker.session, room)?;
        let limit = limit
            .map_or(self.config.history_page_default, |l| usize::try_from(l).unwrap_or(usize::MAX))
            .min(self.config.history_page_max);
        let parked = Parked { asker: asker.clone(), wants: Wants::History { before, limit } };
        self.serve_or_wait(now, room_id, parked)
    }

    /// Answers a history request from the room's window, which holds what
    /// it needs.
    pub(super) fn history_reply(
        &mut self,
        now: Timestamp,
        asker: &Asker,
        room_id: RoomId,
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
        let (name, messages) = (room.name.clone(), room.history(before, limit));
        self.touch(room_id);
        let messages = self.fit_history(now, member, messages, true)?;
        self.reply(member, Event::History { id: id.clone(), room: name, messages });
        Ok(())
    }

    /// Keeps the newest of `messages` that fit the connection's history
    /// budget, and spends it on them. A `required` answer that cannot carry
    /// even one message is refused instead: an empty page would read as
    /// "no older messages".
    pub(super) fn fit_history(
        &mut self,
        now: Timestamp,
        member: MemberId,
        mut messages: Vec<Message>,
        required: bool,
    ) -> Result<Vec<Message>, CommandError> {
        let rate = self.config.history_bytes_per_conn;
        let Some(conn) = self.conns.get_mut(&member) else {
            return Ok(messages);
        };
        let available = conn.history.available(rate, now);
        let mut total = 0u64;
        let mut keep_from = messages.len();
        for (at, message) in messages.iter().enumerate().rev() {
            let cost = cost(message) as u64;
            if total + cost > available {
                break;
            }
            total += cost;
            keep_from = at;
        }
        if required
            && keep_from == messages.len()
            && let Some(newest) = messages.last()
        {
            let need = cost(newest) as u64;
            let retry_after_ms = match conn.history.check(rate, now, need) {
                Err(wait) => wait,
                Ok(()) => 1,
            };
            return Err(CommandError::HistoryRateLimited { retry_after_ms });
        }
        let _ = conn.history.take_n(rate, now, total);
        messages.drain(..keep_from);
        Ok(messages)
    }

    /// A page of a room's members in nick order, after `after`, starting
    /// with `prefix` (both compared as nicks compare).
    pub(super) fn who(
        &mut self,
        asker: &Asker,
        room: &str,
        after: Option<&str>,
        prefix: Option<&str>,
        limit: Option<u32>,
    ) -> Result<(), CommandError> {
        let (member, id) = (asker.member, &asker.id);
        let (room_id, name) = self.joined_room(asker.session, room)?;
        let max = self.config.member_page_max;
        let limit = limit.map_or(max, |l| usize::try_from(l).unwrap_or(usize::MAX).min(max));
        let folded = |text: &str| Nick::parse(text).map(|nick| nick.folded().to_owned());
        let after = after.map(folded).transpose().map_err(CommandError::InvalidNick)?;
        // A prefix need not be a whole nick; one that cannot start a nick
        // matches no one.
        let prefix = match prefix.filter(|p| !p.is_empty()).map(folded) {
            Some(Ok(prefix)) => prefix,
            Some(Err(_)) => "\u{10ffff}".to_owned(),
            None => String::new(),
        };
        let Some(room) = self.rooms.get(&room_id) else {
            return Ok(());
        };
        let (page, more) = room.members_page(after.as_deref(), &prefix, limit);
        let count = room.sessions().len();
        let sids: Vec<SessionId> = page.iter().map(|(sid, _)| *sid).collect();
        let away = self.away_nicks(&sids);
        let members = page.into_iter().map(|(_, nick)| nick).collect();
        let event = Event::Members { id: id.clone(), room: name, members, away, count, more };
        self.reply(member, event);
        Ok(())
    }

    /// The rooms `rooms` lists for a session: every room someone is in that
    /// its identity allows (or only its own, without
    /// [`ChatConfig::public_rooms`]), with member counts, by name.
    ///
    /// [`ChatConfig::public_rooms`]: crate::ChatConfig::public_rooms
    pub(super) fn rooms_listed(&self, sid: SessionId) -> Vec<RoomListing> {
        let Some(session) = self.sessions.get(&sid) else {
            return Vec::new();
        };
        let public = self.config.public_rooms;
        self.room_ids
            .iter()
            .filter_map(|(name, id)| self.rooms.get(id).map(|room| (name, id, room)))
            .filter(|(_, id, room)| !room.is_empty() && (public || session.rooms.contains(id)))
            .filter(|(name, _, _)| session.grant.as_ref().is_none_or(|grant| grant.allows(name)))
            .map(|(name, _, room)| RoomListing {
                name: name.clone(),
                members: room.sessions().len(),
                topic: room.topic.clone(),
            })
            .collect()
    }

    /// Whether the session holding `token` may read what was said in
    /// `room`: it is in the room and its identity allows it. A file is only
    /// given to sessions that may read a room whose history holds it.
    pub fn may_read(&self, token: &SessionToken, room: &RoomName) -> bool {
        let Some(&sid) = self.tokens.get(token) else {
            return false;
        };
        let Some(&room_id) = self.room_ids.get(room) else {
            return false;
        };
        self.sessions.get(&sid).is_some_and(|session| {
            session.rooms.contains(&room_id)
                && session.grant.as_ref().is_none_or(|grant| grant.allows(room))
        })
    }
}
