//! The hub's side of who is where: what members here do goes to Redis in
//! order ([`Members::change`]), with the records of the sessions here
//! ([`Sessions`]); what members elsewhere do comes back as changes on the
//! rooms' channels, applied once and in order of each room's presence
//! version; and every few seconds each followed room is read whole (a
//! *roster*), which sets right whatever a lost change or a node that died
//! left wrong.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use chat_core::{Nick, Presence, RoomName, SessionToken, Shared};
use redis::RedisResult;
use tokio::sync::mpsc;
use tracing::{Instrument, debug, warn};

use super::engine::{Event, Step};
use super::{Change, Members, Roster, Sessions, Verdict, Versions, digest, presence};

/// What Redis must learn of the members and sessions here, in order.
#[derive(Debug)]
enum Op {
    /// A member here changed.
    Change { room: String, key: String, change: Shared, entry: Option<(Nick, bool)>, publish: bool },
    /// A member here moved to another node: out of `room` unless that node
    /// said it joined first.
    Moved { room: String, key: String, nick: Nick },
    /// The session of a token lives here, as a nick.
    Here(String, Nick),
    /// The session of a token ended here.
    Ended(String),
    /// Renew the records of the sessions of these tokens.
    Renew(Vec<String>),
}

/// Who is where, as this node follows it.
#[derive(Debug)]
pub(crate) struct Follow {
    /// This run of this node, as other nodes see it serve members.
    instance: String,
    /// How long its heartbeat says it lives.
    lease: Duration,
    members: Members,
    /// Changes of members here, to the one task that makes them in order.
    ops: mpsc::UnboundedSender<Op>,
    events: mpsc::UnboundedSender<Event>,
    /// The members here by (room, key): nick and whether away, to tell a
    /// Redis that lost them.
    local: BTreeMap<(String, String), (Nick, bool)>,
    versions: Versions,
    /// Changes heard of rooms being read for a load, applied after it.
    held: BTreeMap<String, Vec<Change>>,
    /// Instances found dead.
    dead: BTreeSet<String>,
}

impl Follow {
    /// Follows rooms for `instance` through `members`, its heartbeat good
    /// for `lease`; answers go to `events`.
    pub(crate) fn spawn(
        instance: String,
        members: Members,
        sessions: Sessions,
        lease: Duration,
        events: mpsc::UnboundedSender<Event>,
    ) -> Self {
        let (ops, queue) = mpsc::unbounded_channel();
        let task = changes_in_order(members.clone(), sessions, instance.clone(), queue);
        tokio::spawn(task.in_current_span());
        Self {
            instance,
            lease,
            members,
            ops,
            events,
            local: BTreeMap::new(),
            versions: Versions::default(),
            held: BTreeMap::new(),
            dead: BTreeSet::new(),
        }
    }

    /// A member here, of the session of `token`, did `change` in `room`.
    pub(crate) fn share(&mut self, room: &RoomName, token: &SessionToken, change: Shared) {
        let (room, key) = (room.to_string(), digest(token.as_str()));
        let place = (room.clone(), key.clone());
        let entry = presence::entry_after(self.local.get(&place).cloned(), &change);
        match &entry {
            Some(entry) => self.local.insert(place, entry.clone()),
            None => self.local.remove(&place),
        };
        let _ = self.ops.send(Op::Change { room, key, change, entry, publish: true });
    }

    /// The session of `token` lives here, as `nick`.
    pub(crate) fn session_here(&self, token: &SessionToken, nick: &Nick) {
        let _ = self.ops.send(Op::Here(token.as_str().to_owned(), nick.clone()));
    }

    /// The session of `token` ended here.
    pub(crate) fn session_ended(&self, token: &SessionToken) {
        let _ = self.ops.send(Op::Ended(token.as_str().to_owned()));
    }

    /// Renews the records of the sessions of `tokens`.
    pub(crate) fn renew(&self, tokens: Vec<String>) {
        let _ = self.ops.send(Op::Renew(tokens));
    }

    /// The session named by `key` moved to another node: this node stops
    /// speaking for it in its rooms.
    pub(crate) fn moved(&mut self, key: &str) {
        let places: Vec<(String, String)> =
            self.local.keys().filter(|(_, k)| k == key).cloned().collect();
        for place in places {
            if let Some((nick, _)) = self.local.remove(&place) {
                let (room, key) = place;
                let _ = self.ops.send(Op::Moved { room, key, nick });
            }
        }
    }

    /// `room` is no longer followed: its changes are dropped, its members
    /// no longer read.
    pub(crate) fn forget(&mut self, room: &str) {
        self.versions.forget(room);
        self.held.remove(room);
    }

    /// `room` is listened to and about to be read: what is heard of it
    /// meanwhile waits for the read.
    pub(crate) fn listening(&mut self, room: &str) {
        self.held.insert(room.to_owned(), Vec::new());
    }

    /// `room` was read for a load at `roster`: who is in it elsewhere, and
    /// what was heard meanwhile, to apply after the load.
    pub(crate) fn loaded(
        &mut self,
        room: &str,
        roster: Option<&Roster>,
    ) -> (Vec<chat_core::RemoteMember>, Vec<Step>) {
        let held = self.held.remove(room).unwrap_or_default();
        let Some(roster) = roster else {
            return (Vec::new(), Vec::new());
        };
        self.versions.read(room, roster.version, true);
        let others = roster.others(&self.instance, &self.dead);
        let steps = held.into_iter().flat_map(|change| self.heard(change)).collect();
        (others, steps)
    }

    /// A change heard on a room's channel.
    pub(crate) fn heard(&mut self, change: Change) -> Vec<Step> {
        if let Some(held) = self.held.get_mut(&change.room) {
            held.push(change);
            return Vec::new();
        }
        let verdict = self.versions.heard(&change.room, change.version);
        if verdict == Verdict::ApplyAndRead {
            self.read(vec![change.room.clone()], false);
        }
        let ours = change.node == self.instance || self.dead.contains(&change.node);
        match (verdict, RoomName::parse_stored(&change.room)) {
            (Verdict::Drop, _) | (_, Err(_)) => Vec::new(),
            _ if ours => Vec::new(),
            (_, Ok(room)) => vec![Step::Remote(room, change.key, change.change)],
        }
    }

    /// Every few seconds: says this instance lives, and reads every room
    /// followed.
    pub(crate) fn tick(&self) {
        self.read(self.versions.rooms(), false);
    }

    /// The subscription came back after Redis was away: what was said
    /// meanwhile was not heard, and a restarted Redis may have lost who is
    /// here. Tells Redis again (quietly) and reads every room afresh.
    pub(crate) fn reconnected(&mut self) {
        for ((room, key), (nick, away)) in &self.local {
            let change = Shared::Presence(Presence::Joined(nick.clone()));
            let entry = Some((nick.clone(), *away));
            let (room, key) = (room.clone(), key.clone());
            let _ = self.ops.send(Op::Change { room, key, change, entry, publish: false });
        }
        self.read(self.versions.rooms(), true);
    }

    /// Rosters came back (`fresh`: after a reconnect, whatever this node
    /// held of the rooms' versions).
    pub(crate) fn rosters(
        &mut self,
        rooms: Vec<String>,
        result: RedisResult<(Vec<Roster>, BTreeSet<String>)>,
        fresh: bool,
    ) -> Vec<Step> {
        let (rosters, dead) = match result {
            Ok(read) => read,
            Err(err) => {
                debug!(%err, "cannot read the rooms' members from Redis");
                return Vec::new();
            }
        };
        self.dead.extend(dead);
        let mut steps = Vec::new();
        for (room, roster) in rooms.into_iter().zip(rosters) {
            if self.held.contains_key(&room) {
                continue;
            }
            let Ok(name) = RoomName::parse_stored(&room) else {
                continue;
            };
            if self.versions.read(&room, roster.version, fresh) {
                steps.push(Step::Roster(name, roster.others(&self.instance, &self.dead)));
            } else {
                // Changes newer than the read were applied: only the
                // members of instances that died are taken from it.
                let dead = roster.members.iter().filter(|(node, _, _)| self.dead.contains(node));
                for (_, member, _) in dead {
                    let left = Shared::Presence(Presence::Left(member.nick.clone()));
                    steps.push(Step::Remote(name.clone(), member.key.to_string(), left));
                }
            }
        }
        steps
    }

    /// Reads `rooms` whole on a task of its own, after a heartbeat.
    fn read(&self, rooms: Vec<String>, fresh: bool) {
        let (members, events) = (self.members.clone(), self.events.clone());
        let (instance, lease) = (self.instance.clone(), self.lease);
        tokio::spawn(
            async move {
                let result = read_rosters(&members, &instance, lease, &rooms).await;
                let _ = events.send(Event::Rosters { rooms, result, fresh });
            }
            .in_current_span(),
        );
    }
}

/// Says `instance` lives, reads `rooms`, finds which instances serving
/// someone there died, and drops their members from Redis.
async fn read_rosters(
    members: &Members,
    instance: &str,
    lease: Duration,
    rooms: &[String],
) -> RedisResult<(Vec<Roster>, BTreeSet<String>)> {
    members.heartbeat(instance, lease).await?;
    if rooms.is_empty() {
        return Ok((Vec::new(), BTreeSet::new()));
    }
    let rosters = members.read(rooms).await?;
    let mut nodes: BTreeSet<String> =
        rosters.iter().flat_map(Roster::nodes).map(str::to_owned).collect();
    nodes.remove(instance);
    let dead = members.dead(&nodes).await?;
    if !dead.is_empty() {
        for (room, roster) in rooms.iter().zip(&rosters) {
            members.forget(room, roster, &dead).await?;
        }
    }
    Ok((rosters, dead))
}

/// Tells Redis what members and sessions here did, one after the other, in
/// the order they did it.
async fn changes_in_order(
    members: Members,
    sessions: Sessions,
    instance: String,
    mut queue: mpsc::UnboundedReceiver<Op>,
) {
    while let Some(op) = queue.recv().await {
        // Lost: the other nodes' next read of the room sets it right, and
        // after a reconnect this node tells Redis again.
        let done = match op {
            Op::Change { room, key, change, entry, publish } => {
                let kept = entry.as_ref().map(|(nick, away)| (nick, *away));
                let changed = members.change(&room, &key, &instance, &change, kept, publish).await;
                match (&change, changed) {
                    (Shared::Presence(Presence::Joined(_) | Presence::Left(_)), Ok(_)) => {
                        sessions.in_room(&key, &room, entry.is_some()).await
                    }
                    (_, changed) => changed.map(drop),
                }
            }
            Op::Moved { room, key, nick } => {
                members.drop_moved(&room, &key, &instance, &nick).await.map(drop)
            }
            Op::Here(token, nick) => sessions.here(&token, &nick).await,
            Op::Ended(token) => sessions.ended(&token).await,
            Op::Renew(tokens) => sessions.renew(&tokens).await,
        };
        if let Err(err) = done {
            warn!(%err, "cannot tell Redis of a member or session here");
        }
    }
}
