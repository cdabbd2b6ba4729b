//! Members other cores serve (cluster mode): what a member here does that
//! the room's members elsewhere must see (joining, leaving, away, back,
//! renamed, typing) goes out as [`Output::Share`], and what members
//! elsewhere do comes in with [`Chat::handle_remote`]. A remote member is
//! a session with no connection, of one room only, that this core never
//! numbers, stores, expires or lets anyone resume; its room counts it and
//! lists it like any member.
//!
//! A room holds its remote members only while someone here is in it: the
//! room is read (with who is in it elsewhere, [`RoomHistory::remote`]) when
//! the first member here joins, and forgotten when the last one leaves.
//!
//! [`RoomHistory::remote`]: crate::RoomHistory::remote

use std::collections::BTreeSet;
use std::sync::Arc;

use super::Chat;
use super::sessions::{Conns, Session};
use crate::bucket::{Rate, TokenBucket};
use crate::id::SessionId;
use crate::{
    DisconnectReason, Event, MemberId, Nick, Output, Presence, RemoteMember, RoomId, RoomName,
    Sequencing, SessionToken, Shared, Timestamp,
};

impl Chat {
    /// In cluster mode, tells the other cores of `room_id` what session
    /// `sid`, a member here, did.
    pub(super) fn share(&mut self, sid: SessionId, room_id: RoomId, change: Shared) {
        // One server shares nothing: no lookup on its presence path.
        if self.config.sequencing != Sequencing::Shared {
            return;
        }
        if let Some(session) = self.sessions.get(&sid)
            && !session.is_remote()
        {
            let token = session.token.clone();
            self.share_as(token, room_id, change);
        }
    }

    /// The same for the session of `token`, a member here.
    pub(super) fn share_as(&mut self, token: SessionToken, room_id: RoomId, change: Shared) {
        if self.config.sequencing != Sequencing::Shared {
            return;
        }
        if let Some(room) = self.rooms.get(&room_id) {
            let room = room.name.clone();
            self.outputs.push_back(Output::Share { room, token, change });
        }
    }

    /// The room `room` if it is in memory here: only a room someone here
    /// is in follows the members elsewhere.
    fn followed(&self, room: &RoomName) -> Option<RoomId> {
        self.room_ids.get(room).copied().filter(|id| self.rooms.contains_key(id))
    }

    /// The keys of the remote members of `room_id`.
    fn remote_keys(&self, room_id: RoomId) -> Vec<Arc<str>> {
        self.remotes
            .range((room_id, Arc::from(""))..)
            .take_while(|((id, _), _)| *id == room_id)
            .map(|((_, key), _)| Arc::clone(key))
            .collect()
    }

    /// What a member of `room` elsewhere, named `key` by the engine, did.
    pub(super) fn remote(&mut self, now: Timestamp, room: &RoomName, key: &str, change: Shared) {
        let Some(room_id) = self.followed(room) else {
            return;
        };
        let known = self.remotes.get(&(room_id, Arc::from(key))).copied();
        match (change, known) {
            (Shared::Presence(Presence::Joined(nick)), None) => {
                let member = RemoteMember { key: Arc::from(key), nick: nick.clone(), away: false };
                if let Some(sid) = self.add_remote(now, room_id, member) {
                    self.announce(sid, &[room_id], Presence::Joined(nick));
                }
            }
            // Joined again (told twice, or after a reconnect): as it is.
            (Shared::Presence(Presence::Joined(nick)), Some(sid)) => {
                self.remote_renamed(sid, room_id, nick);
                self.remote_away(now, sid, room_id, false);
            }
            (Shared::Presence(Presence::Left(_)), Some(_)) => self.drop_remote(room_id, key),
            (Shared::Presence(Presence::Away(_)), Some(sid)) => {
                self.remote_away(now, sid, room_id, true);
            }
            (Shared::Presence(Presence::Back(_)), Some(sid)) => {
                self.remote_away(now, sid, room_id, false);
            }
            (Shared::Presence(Presence::Renamed { new, .. }), Some(sid)) => {
                self.remote_renamed(sid, room_id, new);
            }
            (Shared::Typing(nick), Some(sid)) => {
                if self.batch_typing(room_id, &nick) {
                    return;
                }
                let others = self.others_of(room_id, sid);
                let name = room.clone();
                self.deliver(others, Event::Typing { room: name, nick });
            }
            // Whoever set it, the room's topic is the room's.
            (Shared::Topic { topic, by }, _) => {
                if let Some(room) = self.rooms.get_mut(&room_id) {
                    room.topic = topic.clone();
                }
                let to = self.recipients(room_id);
                self.deliver(to, Event::Topic { id: None, room: room.clone(), topic, by });
            }
            // Whoever changed it, the room's list is the room's.
            (Shared::Doc { action, doc, by }, _) => self.remote_doc(room_id, action, doc, by),
            // Of someone this core never heard join: nothing to change.
            (_, None) => {}
        }
    }

    /// Who is in `room` elsewhere, all of them, as the engine has it now:
    /// whoever this core has there but is not listed left, whoever is
    /// listed but new here joined, the rest changed to match. What a lost
    /// change missed (a dropped subscription, a core that died) comes right
    /// this way.
    pub(super) fn roster(&mut self, now: Timestamp, room: &RoomName, members: Vec<RemoteMember>) {
        let Some(room_id) = self.followed(room) else {
            return;
        };
        let listed: BTreeSet<Arc<str>> = members.iter().map(|m| Arc::clone(&m.key)).collect();
        let mut gone = self.remote_keys(room_id);
        gone.retain(|key| !listed.contains(key));
        for key in gone {
            self.drop_remote(room_id, &key);
        }
        for member in members {
            if !self.rooms.contains_key(&room_id) {
                return;
            }
            match self.remotes.get(&(room_id, Arc::clone(&member.key))).copied() {
                Some(sid) => {
                    self.remote_renamed(sid, room_id, member.nick);
                    self.remote_away(now, sid, room_id, member.away);
                }
                None => {
                    let (nick, away) = (member.nick.clone(), member.away);
                    let Some(sid) = self.add_remote(now, room_id, member) else {
                        continue;
                    };
                    self.announce(sid, &[room_id], Presence::Joined(nick.clone()));
                    if away {
                        self.announce(sid, &[room_id], Presence::Away(nick));
                    }
                }
            }
        }
    }

    /// Adds a remote member to a room, telling no one; its session. One
    /// whose key is not a token's form is not one the engine made: ignored.
    pub(super) fn add_remote(
        &mut self,
        now: Timestamp,
        room_id: RoomId,
        member: RemoteMember,
    ) -> Option<SessionId> {
        // Its key as a token never reaches the token index: nobody can
        // resume a remote member's session here.
        let token = SessionToken::parse(&member.key).ok()?;
        if self.remotes.contains_key(&(room_id, Arc::clone(&member.key))) {
            return None;
        }
        let sid = SessionId::new(self.next_session);
        self.next_session += 1;
        let never = Rate::per_sec(0, 0);
        let session = Session {
            token,
            nick: member.nick.clone(),
            rooms: BTreeSet::from([room_id]),
            conns: Conns::Remote,
            detached_at: member.away.then_some(now),
            source: None,
            grant: None,
            messages: TokenBucket::full(never, now),
            joins: TokenBucket::full(never, now),
            quotas: None,
            typing: None,
        };
        self.sessions.insert(sid, session);
        self.remotes.insert((room_id, member.key), sid);
        if let Some(room) = self.rooms.get_mut(&room_id) {
            room.add(sid, &member.nick);
            room.remote += 1;
        }
        self.reindex(room_id);
        Some(sid)
    }

    /// `room`'s numbering started again in the engine (it lost its data):
    /// what this core holds of it is dropped, and every connection in it is
    /// closed to come back at once: their clients resume, join from where
    /// they were, and are told the room's history starts afresh (as after
    /// the restart of a server that kept nothing).
    pub(super) fn room_reset(&mut self, now: Timestamp, room: &RoomName) {
        let Some(room_id) = self.followed(room) else {
            return;
        };
        self.change_window(room_id, |room| room.restart_after(0));
        self.send_back(now, room_id);
    }

    /// Closes the connections of a room's members here (1012, come back at
    /// once): their clients resume and join it again from where they were.
    pub(super) fn send_back(&mut self, now: Timestamp, room_id: RoomId) {
        let members: Vec<(MemberId, SessionId)> = self
            .recipients(room_id)
            .iter()
            .filter_map(|&member| Some((member, self.conns.get(&member)?.session?)))
            .collect();
        for (member, sid) in members {
            self.drop_conn(member);
            let reason = DisconnectReason::RoomReset;
            self.outputs.push_back(Output::Disconnect { member, reason });
            self.conn_gone(now, member, sid, false);
        }
    }

    /// Forgets remote member `key` in every room, telling no one: it is
    /// served here from now on (its joins here will tell).
    pub(super) fn forget_remote(&mut self, key: &str) {
        let rooms: Vec<RoomId> =
            self.remotes.keys().filter(|(_, k)| &**k == key).map(|(room, _)| *room).collect();
        for room_id in rooms {
            let Some((sid, nick)) = self.take_remote(room_id, key) else {
                continue;
            };
            if let Some(room) = self.rooms.get_mut(&room_id) {
                room.remove(sid, &nick);
            }
            self.reindex(room_id);
        }
    }

    /// Takes remote member `key` out of a room, telling the members here.
    fn drop_remote(&mut self, room_id: RoomId, key: &str) {
        if let Some((sid, nick)) = self.take_remote(room_id, key) {
            self.remove_from_room(room_id, sid, &nick);
        }
    }

    /// Forgets the session of remote member `key` of a room, and counts
    /// it out of the room's remote members; its session and nick, for
    /// taking it out of the room's list.
    fn take_remote(&mut self, room_id: RoomId, key: &str) -> Option<(SessionId, Nick)> {
        let sid = self.remotes.remove(&(room_id, Arc::from(key)))?;
        let session = self.sessions.remove(&sid)?;
        if let Some(room) = self.rooms.get_mut(&room_id) {
            room.remote = room.remote.saturating_sub(1);
        }
        Some((sid, session.nick))
    }

    fn remote_away(&mut self, now: Timestamp, sid: SessionId, room_id: RoomId, away: bool) {
        let Some(session) = self.sessions.get_mut(&sid) else {
            return;
        };
        if session.detached_at.is_some() == away {
            return;
        }
        session.detached_at = away.then_some(now);
        let nick = session.nick.clone();
        let change = if away { Presence::Away(nick) } else { Presence::Back(nick) };
        self.announce(sid, &[room_id], change);
    }

    fn remote_renamed(&mut self, sid: SessionId, room_id: RoomId, new: Nick) {
        let Some(session) = self.sessions.get_mut(&sid) else {
            return;
        };
        if session.nick == new {
            return;
        }
        let old = std::mem::replace(&mut session.nick, new.clone());
        if let Some(room) = self.rooms.get_mut(&room_id) {
            room.renamed(sid, &old, &new);
        }
        self.announce(sid, &[room_id], Presence::Renamed { old, new });
    }

    /// In cluster mode, once no member here is left in a room, it stops
    /// following the others there and is forgotten: the next join reads it
    /// again, with whoever is in it elsewhere then.
    pub(super) fn forget_if_only_remote(&mut self, room_id: RoomId) {
        let Some(room) = self.rooms.get(&room_id) else {
            return;
        };
        if room.remote == 0 || room.sessions().len() > room.remote {
            return;
        }
        if self.waiting.contains_key(&room_id) {
            return;
        }
        for key in self.remote_keys(room_id) {
            self.take_remote(room_id, &key);
        }
        self.remove_room(room_id);
    }
}
