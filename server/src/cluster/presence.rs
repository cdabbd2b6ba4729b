//! Who is in each room on every node, in Redis: one hash per room (member
//! key → its nick, whether it is away, the node serving it) with a version
//! that every change bumps, changed and published on the room's channel by
//! one script (`presence.lua`), so that a node holding a read of the hash
//! knows which published changes it already has. Each node (each run of
//! one: its *instance*) says it lives with a heartbeat key under a lease;
//! the members of an instance whose heartbeat is gone are dropped from
//! every view and then from the hash (`forget.lua`).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use chat_core::{DocAction, DocEntry, Nick, Presence, RemoteMember, RoomName, Shared, Timestamp};
use redis::aio::ConnectionManager;
use redis::{RedisResult, Script};
use serde::{Deserialize, Serialize};

use super::Health;

/// What the log says when Redis fails one of these calls.
const FAILED: &str = "a presence change in Redis failed";

/// The field of a members hash that holds its version.
const VERSION: &str = "#";

/// The rooms' members in Redis.
#[derive(Clone)]
pub struct Members {
    conn: ConnectionManager,
    prefix: String,
    change: Script,
    forget: Script,
    health: Health,
}

impl std::fmt::Debug for Members {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Members").field("prefix", &self.prefix).finish()
    }
}

/// A member's change as a room's channel carries it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// The room.
    pub room: String,
    /// The room's presence version after it.
    pub version: u64,
    /// The member's key.
    pub key: String,
    /// The instance serving it.
    pub node: String,
    /// What it did.
    pub change: Shared,
}

/// A room's members as Redis holds them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Roster {
    /// The version the hash was at.
    pub version: u64,
    /// Each member with the instance serving it and its entry as stored.
    pub members: Vec<(String, RemoteMember, Vec<u8>)>,
}

impl Roster {
    /// The instances serving someone here.
    pub fn nodes(&self) -> BTreeSet<&str> {
        self.members.iter().map(|(node, _, _)| node.as_str()).collect()
    }

    /// The members served elsewhere than `own` by instances that live.
    pub fn others(&self, own: &str, dead: &BTreeSet<String>) -> Vec<RemoteMember> {
        let served = |node: &String| node != own && !dead.contains(node);
        self.members.iter().filter(|(node, _, _)| served(node)).map(|(_, m, _)| m.clone()).collect()
    }
}

#[derive(Serialize, Deserialize)]
struct Entry {
    nick: String,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    away: bool,
    node: String,
}

#[derive(Serialize, Deserialize)]
struct Published {
    key: String,
    node: String,
    /// join, leave, away, back, rename, typing
    op: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    nick: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    old: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    topic: Option<String>,
    /// For `doc`: the document's entry, and what was done.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    doc: Option<DocJson>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    action: Option<String>,
}

/// A room's document list entry as its meta hash keeps it (field `d:NAME`)
/// and its channel carries it.
#[derive(Serialize, Deserialize)]
struct DocJson {
    name: String,
    title: String,
    by: String,
    at: u64,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    deleted: bool,
}

impl DocJson {
    fn of(doc: &DocEntry, deleted: bool) -> Self {
        Self {
            name: doc.name.to_string(),
            title: doc.title.to_string(),
            by: doc.edited_by.to_string(),
            at: doc.edited_at.as_unix_millis(),
            deleted,
        }
    }

    fn entry(&self) -> Option<DocEntry> {
        Some(DocEntry {
            name: RoomName::parse(&self.name).ok()?,
            title: Arc::from(self.title.as_str()),
            edited_by: Nick::parse(&self.by).ok()?,
            edited_at: Timestamp::from_unix_millis(self.at),
        })
    }
}

impl Members {
    /// The members hashes under `prefix`, through `conn`; Redis's answers
    /// are noted in `health`.
    pub fn new(conn: ConnectionManager, prefix: &str, health: Health) -> Self {
        Self {
            conn,
            prefix: prefix.to_owned(),
            change: Script::new(include_str!("presence.lua")),
            forget: Script::new(include_str!("forget.lua")),
            health,
        }
    }

    /// Tells every node that member `key` of `room`, served by instance
    /// `node`, did `change`; `entry` is what the room's hash keeps of it
    /// now (its nick and whether it is away; `None` once it left). With
    /// `publish` false the hash is changed quietly (the other nodes' next
    /// read sees it). The room's new version.
    ///
    /// # Errors
    /// Redis failed.
    pub async fn change(
        &self,
        room: &str,
        key: &str,
        node: &str,
        change: &Shared,
        entry: Option<(&Nick, bool)>,
        publish: bool,
    ) -> RedisResult<u64> {
        let op = match (change, entry) {
            (Shared::Typing(_), _) => "",
            (Shared::Topic { .. }, _) => "topic",
            (Shared::Doc { .. }, _) => "doc",
            (_, Some(_)) => "set",
            (_, None) => "del",
        };
        self.run(room, op, key, node, change, entry, publish).await
    }

    /// Takes member `key`, which moved to another node, out of `room`,
    /// telling every node, only if instance `node` still serves it there
    /// (if the node it moved to said it joined first, nothing changes).
    ///
    /// # Errors
    /// Redis failed.
    pub async fn drop_moved(
        &self,
        room: &str,
        key: &str,
        node: &str,
        nick: &Nick,
    ) -> RedisResult<u64> {
        let left = Shared::Presence(Presence::Left(nick.clone()));
        self.run(room, "drop", key, node, &left, None, true).await
    }

    #[allow(clippy::too_many_arguments)]
    async fn run(
        &self,
        room: &str,
        op: &str,
        key: &str,
        node: &str,
        change: &Shared,
        entry: Option<(&Nick, bool)>,
        publish: bool,
    ) -> RedisResult<u64> {
        let entry = match change {
            Shared::Topic { topic, .. } => topic.as_deref().unwrap_or_default().as_bytes().to_vec(),
            Shared::Doc { action, doc, .. } => {
                let deleted = *action == DocAction::Deleted;
                serde_json::to_vec(&DocJson::of(doc, deleted)).unwrap_or_default()
            }
            _ => entry.map(|(nick, away)| encode_entry(nick, away, node)).unwrap_or_default(),
        };
        let channel = if publish { format!("{}:{{{room}}}", self.prefix) } else { String::new() };
        let version: RedisResult<u64> = self
            .change
            .key(self.key(room))
            .key(format!("{}:{{{room}}}:meta", self.prefix))
            .arg(op)
            .arg(key)
            .arg(entry)
            .arg(channel)
            .arg(encode_change(key, node, change))
            .arg(node)
            .invoke_async(&mut self.conn.clone())
            .await;
        self.health.noted(version, FAILED)
    }

    /// The members of each of `rooms`, in one round trip.
    ///
    /// # Errors
    /// Redis failed.
    pub async fn read(&self, rooms: &[String]) -> RedisResult<Vec<Roster>> {
        let mut pipe = redis::pipe();
        for room in rooms {
            pipe.hgetall(self.key(room));
        }
        let hashes: RedisResult<Vec<Hash>> = pipe.query_async(&mut self.conn.clone()).await;
        Ok(self.health.noted(hashes, FAILED)?.into_iter().map(|fields| roster(&fields)).collect())
    }

    /// `room`'s document list, as its meta hash keeps it (entries that do
    /// not decode are skipped).
    ///
    /// # Errors
    /// Redis failed.
    pub async fn docs(&self, room: &str) -> RedisResult<Vec<DocEntry>> {
        let fields: RedisResult<Hash> = redis::cmd("HGETALL")
            .arg(format!("{}:{{{room}}}:meta", self.prefix))
            .query_async(&mut self.conn.clone())
            .await;
        let fields = self.health.noted(fields, FAILED)?;
        let mut docs: Vec<DocEntry> = fields
            .iter()
            .filter(|(field, _)| field.starts_with("d:"))
            .filter_map(|(_, value)| serde_json::from_slice::<DocJson>(value).ok()?.entry())
            .collect();
        docs.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(docs)
    }

    /// Says instance `node` lives, for `lease`.
    ///
    /// # Errors
    /// Redis failed.
    pub async fn heartbeat(&self, node: &str, lease: Duration) -> RedisResult<()> {
        let lease = u64::try_from(lease.as_millis()).unwrap_or(u64::MAX).max(1);
        let set: RedisResult<()> = redis::cmd("SET")
            .arg(self.node_key(node))
            .arg(1)
            .arg("PX")
            .arg(lease)
            .query_async(&mut self.conn.clone())
            .await;
        self.health.noted(set, FAILED)
    }

    /// Which of `nodes` no longer live.
    ///
    /// # Errors
    /// Redis failed.
    pub async fn dead(&self, nodes: &BTreeSet<String>) -> RedisResult<BTreeSet<String>> {
        if nodes.is_empty() {
            return Ok(BTreeSet::new());
        }
        let mut pipe = redis::pipe();
        for node in nodes {
            pipe.exists(self.node_key(node));
        }
        let alive: RedisResult<Vec<bool>> = pipe.query_async(&mut self.conn.clone()).await;
        let alive = self.health.noted(alive, FAILED)?;
        Ok(nodes.iter().zip(alive).filter(|(_, alive)| !alive).map(|(n, _)| n.clone()).collect())
    }

    /// Drops from `room`'s hash the members of dead instances that
    /// `roster` found.
    ///
    /// # Errors
    /// Redis failed.
    pub async fn forget(
        &self,
        room: &str,
        roster: &Roster,
        dead: &BTreeSet<String>,
    ) -> RedisResult<()> {
        let gone: Vec<_> =
            roster.members.iter().filter(|(node, _, _)| dead.contains(node)).collect();
        if gone.is_empty() {
            return Ok(());
        }
        let mut forget = self.forget.key(self.key(room));
        for (_, member, entry) in gone {
            forget.arg(&*member.key).arg(entry.as_slice());
        }
        let dropped: RedisResult<u64> = forget.invoke_async(&mut self.conn.clone()).await;
        self.health.noted(dropped, FAILED).map(drop)
    }

    fn key(&self, room: &str) -> String {
        format!("{}:{{{room}}}:members", self.prefix)
    }

    fn node_key(&self, node: &str) -> String {
        format!("{}:node:{node}", self.prefix)
    }
}

/// A members hash as read: (field, value) pairs.
type Hash = Vec<(String, Vec<u8>)>;

/// A room's hash, read: its version and members (entries that do not
/// decode are not this chat's and are skipped).
fn roster(fields: &[(String, Vec<u8>)]) -> Roster {
    let mut roster = Roster::default();
    for (field, value) in fields {
        if field == VERSION {
            roster.version =
                std::str::from_utf8(value).ok().and_then(|v| v.parse().ok()).unwrap_or(0);
        } else if let Some((node, member)) = decode_entry(field, value) {
            roster.members.push((node, member, value.clone()));
        }
    }
    roster
}

fn encode_entry(nick: &Nick, away: bool, node: &str) -> Vec<u8> {
    let entry = Entry { nick: nick.as_str().to_owned(), away, node: node.to_owned() };
    // Plain strings: this cannot fail.
    serde_json::to_vec(&entry).unwrap_or_default()
}

fn decode_entry(key: &str, bytes: &[u8]) -> Option<(String, RemoteMember)> {
    let entry: Entry = serde_json::from_slice(bytes).ok()?;
    let nick = Nick::parse(&entry.nick).ok()?;
    Some((entry.node, RemoteMember { key: Arc::from(key), nick, away: entry.away }))
}

fn encode_change(key: &str, node: &str, change: &Shared) -> Vec<u8> {
    let nick = |nick: &Nick| Some(nick.as_str().to_owned());
    let (op, nick, old) = match change {
        Shared::Presence(Presence::Joined(n)) => ("join", nick(n), None),
        Shared::Presence(Presence::Left(n)) => ("leave", nick(n), None),
        Shared::Presence(Presence::Away(n)) => ("away", nick(n), None),
        Shared::Presence(Presence::Back(n)) => ("back", nick(n), None),
        Shared::Presence(Presence::Renamed { old, new }) => ("rename", nick(new), nick(old)),
        Shared::Typing(n) => ("typing", nick(n), None),
        Shared::Topic { by, .. } => ("topic", nick(by), None),
        Shared::Doc { by, .. } => ("doc", nick(by), None),
    };
    let topic = match change {
        Shared::Topic { topic, .. } => topic.as_deref().map(str::to_owned),
        _ => None,
    };
    let (doc, action) = match change {
        Shared::Doc { action, doc, .. } => {
            let deleted = *action == DocAction::Deleted;
            (Some(DocJson::of(doc, deleted)), Some(action.as_str().to_owned()))
        }
        _ => (None, None),
    };
    let (key, node, op) = (key.to_owned(), node.to_owned(), op.to_owned());
    let published = Published { key, node, op, nick, old, topic, doc, action };
    serde_json::to_vec(&published).unwrap_or_default()
}

/// A change heard on `room`'s channel: the payload after `p:`, as
/// `VERSION:JSON`.
pub fn decode_change(room: &str, payload: &[u8]) -> Option<Change> {
    let colon = payload.iter().position(|&b| b == b':')?;
    let version = std::str::from_utf8(payload.get(..colon)?).ok()?.parse().ok()?;
    let published: Published = serde_json::from_slice(payload.get(colon + 1..)?).ok()?;
    let nick = Nick::parse(published.nick.as_deref()?).ok()?;
    let change = match published.op.as_str() {
        "join" => Shared::Presence(Presence::Joined(nick)),
        "leave" => Shared::Presence(Presence::Left(nick)),
        "away" => Shared::Presence(Presence::Away(nick)),
        "back" => Shared::Presence(Presence::Back(nick)),
        "rename" => {
            let old = Nick::parse(published.old.as_deref()?).ok()?;
            Shared::Presence(Presence::Renamed { old, new: nick })
        }
        "typing" => Shared::Typing(nick),
        "topic" => Shared::Topic { topic: published.topic.map(Arc::from), by: nick },
        "doc" => Shared::Doc {
            action: DocAction::parse(published.action.as_deref()?)?,
            doc: published.doc.as_ref()?.entry()?,
            by: nick,
        },
        _ => return None,
    };
    Some(Change {
        room: room.to_owned(),
        version,
        key: published.key,
        node: published.node,
        change,
    })
}

/// What a member's entry is once `change` is applied to `entry` (its nick
/// and whether away): `None` once it left; typing changes nothing.
pub fn entry_after(entry: Option<(Nick, bool)>, change: &Shared) -> Option<(Nick, bool)> {
    match change {
        Shared::Presence(Presence::Joined(nick)) => Some((nick.clone(), false)),
        Shared::Presence(Presence::Left(_)) => None,
        Shared::Presence(Presence::Away(nick)) => Some((nick.clone(), true)),
        Shared::Presence(Presence::Back(nick)) => Some((nick.clone(), false)),
        Shared::Presence(Presence::Renamed { new, .. }) => {
            entry.map(|(_, away)| (new.clone(), away)).or(Some((new.clone(), false)))
        }
        Shared::Typing(_) | Shared::Topic { .. } | Shared::Doc { .. } => entry,
    }
}

/// A changes' ledger per room: which version of each room's members this
/// node's view holds, so that changes are applied once, in order, and a
/// missed one is noticed.
#[derive(Debug, Default)]
pub struct Versions {
    rooms: BTreeMap<String, u64>,
}

/// What to do with a change heard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Apply it.
    Apply,
    /// Apply it, and read the room: changes before it were missed.
    ApplyAndRead,
    /// Already held (or the room is not followed): drop it.
    Drop,
}

impl Versions {
    /// The view of `room` was read at `version`: `false` if the view
    /// already holds later changes (the read is stale). A read at the
    /// version last heard holds every change up to it, missed ones too.
    pub fn read(&mut self, room: &str, version: u64, fresh: bool) -> bool {
        match self.rooms.get_mut(room) {
            Some(held) if !fresh && *held > version => false,
            Some(held) => {
                *held = version;
                true
            }
            None => {
                self.rooms.insert(room.to_owned(), version);
                true
            }
        }
    }

    /// A change of `room` at `version` was heard.
    pub fn heard(&mut self, room: &str, version: u64) -> Verdict {
        let Some(held) = self.rooms.get_mut(room) else {
            return Verdict::Drop;
        };
        if version <= *held {
            return Verdict::Drop;
        }
        let missed = version > *held + 1;
        *held = version;
        if missed { Verdict::ApplyAndRead } else { Verdict::Apply }
    }

    /// `room` is no longer followed.
    pub fn forget(&mut self, room: &str) {
        self.rooms.remove(room);
    }

    /// The rooms followed.
    pub fn rooms(&self) -> Vec<String> {
        self.rooms.keys().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nick(text: &str) -> Nick {
        Nick::parse(text).unwrap()
    }

    #[test]
    fn every_change_comes_back_as_it_went() {
        let changes = [
            Shared::Presence(Presence::Joined(nick("ann"))),
            Shared::Presence(Presence::Left(nick("ann"))),
            Shared::Presence(Presence::Away(nick("ann"))),
            Shared::Presence(Presence::Back(nick("ann"))),
            Shared::Presence(Presence::Renamed { old: nick("ann"), new: nick("Anne") }),
            Shared::Typing(nick("ann")),
            Shared::Topic { topic: Some(Arc::from("release: day")), by: nick("ann") },
            Shared::Topic { topic: None, by: nick("ann") },
        ];
        for change in changes {
            let mut payload = b"42:".to_vec();
            payload.extend(encode_change("k1", "a.1", &change));
            let heard = decode_change("lobby", &payload).unwrap();
            assert_eq!((heard.version, heard.key.as_str(), heard.node.as_str()), (42, "k1", "a.1"));
            assert_eq!(heard.change, change);
        }
        for bad in [
            &b"x:{}"[..],
            b"1:{}",
            b"1:not json",
            b"",
            br#"1:{"key":"k","node":"n","op":"fly","nick":"a"}"#,
        ] {
            assert_eq!(decode_change("lobby", bad), None, "{}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn changes_are_applied_once_in_order_and_a_missed_one_is_noticed() {
        let mut versions = Versions::default();
        assert_eq!(versions.heard("lobby", 1), Verdict::Drop, "not followed yet");
        assert!(versions.read("lobby", 5, true));
        assert_eq!(versions.heard("lobby", 5), Verdict::Drop, "the read has it");
        assert_eq!(versions.heard("lobby", 6), Verdict::Apply);
        assert_eq!(versions.heard("lobby", 8), Verdict::ApplyAndRead, "7 was missed");
        assert!(!versions.read("lobby", 7, false), "a read older than what was applied");
        assert!(versions.read("lobby", 8, false), "as new as what was applied, and whole");
        assert!(versions.read("lobby", 9, false));
        assert_eq!(versions.heard("lobby", 10), Verdict::Apply);
    }

    #[test]
    fn a_roster_leaves_out_this_instance_and_dead_ones() {
        let fields = vec![
            ("#".to_owned(), b"12".to_vec()),
            ("k1".to_owned(), encode_entry(&nick("ann"), false, "a.1")),
            ("k2".to_owned(), encode_entry(&nick("bob"), true, "b.1")),
            ("k3".to_owned(), encode_entry(&nick("cy"), false, "c.1")),
            ("k4".to_owned(), b"garbage".to_vec()),
        ];
        let roster = roster(&fields);
        assert_eq!(roster.version, 12);
        assert_eq!(roster.nodes(), BTreeSet::from(["a.1", "b.1", "c.1"]));
        let dead = BTreeSet::from(["c.1".to_owned()]);
        let others = roster.others("a.1", &dead);
        assert_eq!(
            others,
            vec![RemoteMember { key: Arc::from("k2"), nick: nick("bob"), away: true }]
        );
    }
}
