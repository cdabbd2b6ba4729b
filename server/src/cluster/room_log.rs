//! A room's messages as one log in Redis: appended once, numbered once,
//! read back in order, published to every node (see `append.lua` and
//! `read.lua`).

use std::time::Duration;

use redis::aio::{ConnectionManager, PubSub};
use redis::{RedisResult, Script};

use super::Health;

/// A room's log in Redis, through one self-reconnecting connection.
#[derive(Clone)]
pub struct RoomLog {
    client: redis::Client,
    conn: ConnectionManager,
    prefix: String,
    /// Messages each room's log keeps.
    keep: usize,
    /// How long a message id is remembered for retries.
    remember: Duration,
    append: Script,
    read: Script,
    /// Whether Redis answered the last call.
    health: Health,
}

impl std::fmt::Debug for RoomLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RoomLog").field("prefix", &self.prefix).field("keep", &self.keep).finish()
    }
}

/// What an append came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Appended {
    /// The message's `seq` in its room.
    pub seq: u64,
    /// The room's epoch: a new one means its numbering started again.
    pub epoch: String,
    /// The id was appended before: `seq` is the original's.
    pub duplicate: bool,
}

/// A part of a room's log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    /// The room's newest `seq` (0 for none).
    pub newest: u64,
    /// The room's epoch.
    pub epoch: String,
    /// `(seq, message)` in order.
    pub messages: Vec<(u64, Vec<u8>)>,
    /// The room's topic, if one is set.
    pub topic: Option<String>,
}

/// A message as a room's channel carries it to every node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Published {
    /// The room.
    pub room: String,
    /// The message's `seq` in it.
    pub seq: u64,
    /// The room's epoch when it was appended.
    pub epoch: String,
    /// The message, as the node that appended it encoded it.
    pub message: Vec<u8>,
}

impl RoomLog {
    /// Connects to the Redis at `url`; keys start with `prefix`, each
    /// room's log keeps `keep` messages and ids are remembered for
    /// `remember`.
    ///
    /// # Errors
    /// The URL is not a Redis URL, or Redis cannot be reached.
    pub async fn connect(
        url: &str,
        prefix: &str,
        keep: usize,
        remember: Duration,
    ) -> RedisResult<Self> {
        let client = redis::Client::open(url)?;
        let conn = client.get_connection_manager().await?;
        Ok(Self {
            client,
            conn,
            prefix: prefix.to_owned(),
            keep: keep.max(1),
            remember,
            append: Script::new(include_str!("append.lua")),
            read: Script::new(include_str!("read.lua")),
            health: Health::default(),
        })
    }

    /// Appends `message` to `room`'s log with the next `seq`, and publishes
    /// it; with an `id` of its `session`, only once: a retry gets the
    /// original's `seq` back and appends nothing.
    ///
    /// # Errors
    /// Redis failed or answered something else than the script returns.
    pub async fn append(
        &self,
        room: &str,
        id: Option<(&str, &str)>,
        message: &[u8],
    ) -> RedisResult<Appended> {
        let (keys, args) = self.append_parts(room, id, message);
        let mut call = self.append.prepare_invoke();
        for key in keys {
            call.key(key);
        }
        for arg in args {
            call.arg(arg);
        }
        let reply: RedisResult<AppendReply> = call.invoke_async(&mut self.conn.clone()).await;
        let (seq, epoch, duplicate) = self.health.noted(reply, "a write to Redis failed")?;
        Ok(Appended { seq, epoch, duplicate: duplicate == 1 })
    }

    /// Appends several messages as [`RoomLog::append`] does each, in order,
    /// in one round trip (a pipeline on one connection: Redis runs them in
    /// the order sent).
    ///
    /// # Errors
    /// Redis failed; then any of them may have been appended, and each is
    /// to be sent again (its id makes that safe).
    pub async fn append_all(&self, messages: &[ToAppend<'_>]) -> RedisResult<Vec<Appended>> {
        let mut conn = self.conn.clone();
        // Loaded first (a restarted Redis has forgotten it), then run by
        // its digest for each message.
        let loaded = self.append.prepare_invoke().load_async(&mut conn).await;
        let sha = self.health.noted(loaded, "a write to Redis failed")?;
        let mut pipe = redis::pipe();
        for message in messages {
            let (keys, args) = self.append_parts(message.room, message.id, message.message);
            pipe.cmd("EVALSHA").arg(&sha).arg(keys.len()).arg(&keys[..]).arg(&args[..]);
        }
        let replies: RedisResult<Vec<AppendReply>> = pipe.query_async(&mut conn).await;
        let replies = self.health.noted(replies, "a write to Redis failed")?;
        Ok(replies
            .into_iter()
            .map(|(seq, epoch, duplicate)| Appended { seq, epoch, duplicate: duplicate == 1 })
            .collect())
    }

    /// The keys and arguments of `append.lua` for `message` to `room`.
    /// A conversation's message (direct messages) is published on its
    /// parties' channels rather than its own.
    fn append_parts(
        &self,
        room: &str,
        id: Option<(&str, &str)>,
        message: &[u8],
    ) -> ([String; 3], Vec<Vec<u8>>) {
        let once = match id {
            Some((session, id)) => self.key(room, &format!("id:{}:{session}:{id}", session.len())),
            None => self.key(room, "meta"),
        };
        let remember = if id.is_some() { self.remember.as_secs().max(1) } else { 0 };
        let keys = [self.key(room, "meta"), self.key(room, "log"), once];
        let parties = room.strip_prefix('~').and_then(|parties| parties.split_once(' '));
        let channel = match parties {
            Some((first, _)) => self.party_channel(first),
            None => self.channel(room),
        };
        let mut args = vec![
            message.to_vec(),
            self.keep.to_string().into_bytes(),
            fresh_epoch().into_bytes(),
            channel.into_bytes(),
            remember.to_string().into_bytes(),
        ];
        if let Some((_, second)) = parties {
            args.push(self.party_channel(second).into_bytes());
            args.push(format!("{room}\n").into_bytes());
        }
        (keys, args)
    }

    /// Up to `count` of `room`'s messages from `seq` `from` on.
    ///
    /// # Errors
    /// Redis failed or answered something else than the script returns.
    pub async fn read(&self, room: &str, from: u64, count: usize) -> RedisResult<Page> {
        let reply: RedisResult<ReadReply> = self
            .read
            .key(self.key(room, "meta"))
            .key(self.key(room, "log"))
            .arg(from.max(1))
            .arg(count.max(1))
            .arg(fresh_epoch())
            .invoke_async(&mut self.conn.clone())
            .await;
        let (newest, epoch, found, topic) = self.health.noted(reply, "a read from Redis failed")?;
        let topic = (!topic.is_empty()).then_some(topic);
        Ok(Page { newest, epoch, messages: found, topic })
    }

    /// Notes that message `seq` of `room` carries `file`, so that any node
    /// can tell who may fetch it ([`RoomLog::file_rooms`]); the note lasts
    /// `keep_for` from the newest such message (the history's maximum age),
    /// or for ever, and each room's part of it as long as the room's log
    /// keeps that message and it is not deleted
    /// ([`RoomLog::forget_gone_files`], [`RoomLog::file_deleted`]).
    ///
    /// # Errors
    /// Redis failed.
    pub async fn file_in(
        &self,
        room: &str,
        seq: u64,
        file: &chat_core::Attachment,
        keep_for: Option<Duration>,
    ) -> RedisResult<()> {
        let about = FileAbout {
            name: file.name.to_string(),
            mime: file.mime.to_string(),
            size: file.size,
            seq,
        };
        let key = self.file_key(&file.id);
        let mut pipe = redis::pipe();
        pipe.hset(&key, room, serde_json::to_string(&about).unwrap_or_default()).ignore();
        match keep_for {
            Some(age) => {
                let ms = i64::try_from(age.as_millis()).unwrap_or(i64::MAX).max(1);
                pipe.pexpire(&key, ms).ignore()
            }
            None => pipe.persist(&key).ignore(),
        };
        let noted: RedisResult<()> = pipe.query_async(&mut self.conn.clone()).await;
        self.health.noted(noted, "a write to Redis failed")
    }

    /// Message `seq` of `room` was deleted: if it carried a file, the room
    /// no longer does (unless a newer message of it carries the file too).
    ///
    /// # Errors
    /// Redis failed.
    pub async fn file_deleted(&self, room: &chat_core::RoomName, seq: u64) -> RedisResult<()> {
        let page = self.read(room.as_str(), seq, 1).await?;
        let original = page.messages.first().filter(|(at, _)| *at == seq);
        let file = original.and_then(|(_, bytes)| super::codec::decode(room, seq, bytes));
        let Some(attachment) = file.and_then(|message| message.attachment) else {
            return Ok(());
        };
        let forgotten: RedisResult<u8> = redis::cmd("EVAL")
            .arg(FORGET_FILE)
            .arg(1)
            .arg(self.file_key(&attachment.id))
            .arg(room.as_str())
            .arg(seq)
            .query_async(&mut self.conn.clone())
            .await;
        self.health.noted(forgotten, "a write to Redis failed").map(drop)
    }

    /// Forgets, in the notes of the files `ids`, each room whose log no
    /// longer keeps the message that carried the file (trimmed to the
    /// history kept): a note left with no room is gone.
    ///
    /// # Errors
    /// Redis failed.
    pub async fn forget_gone_files(&self, ids: &[&str]) -> RedisResult<()> {
        if ids.is_empty() {
            return Ok(());
        }
        let mut conn = self.conn.clone();
        let mut pipe = redis::pipe();
        for id in ids {
            pipe.cmd("HGETALL").arg(self.file_key(id));
        }
        let notes: RedisResult<Vec<Vec<(String, String)>>> = pipe.query_async(&mut conn).await;
        let notes = self.health.noted(notes, "a read from Redis failed")?;
        // (file id, room, seq) of each room's part that names its message.
        let parts: Vec<(&str, String, u64)> = ids
            .iter()
            .zip(notes)
            .flat_map(|(id, fields)| {
                fields.into_iter().filter_map(move |(room, about)| {
                    let about: FileAbout = serde_json::from_str(&about).ok()?;
                    (about.seq > 0).then_some((*id, room, about.seq))
                })
            })
            .collect();
        if parts.is_empty() {
            return Ok(());
        }
        let mut pipe = redis::pipe();
        for (_, room, seq) in &parts {
            let entry = format!("{seq}-1");
            pipe.cmd("XRANGE").arg(self.key(room, "log")).arg(&entry).arg(&entry);
        }
        let kept: RedisResult<Vec<Vec<redis::Value>>> = pipe.query_async(&mut conn).await;
        let kept = self.health.noted(kept, "a read from Redis failed")?;
        let mut pipe = redis::pipe();
        let gone = parts.iter().zip(kept).filter(|(_, entries)| entries.is_empty());
        let mut any = false;
        for ((id, room, seq), _) in gone {
            pipe.cmd("EVAL").arg(FORGET_FILE).arg(1).arg(self.file_key(id)).arg(room).arg(seq);
            pipe.ignore();
            any = true;
        }
        if !any {
            return Ok(());
        }
        let forgotten: RedisResult<()> = pipe.query_async(&mut conn).await;
        self.health.noted(forgotten, "a write to Redis failed")
    }

    /// The note of file `id`.
    fn file_key(&self, id: &str) -> String {
        format!("{}:file:{{{id}}}", self.prefix)
    }

    /// Which of the files `ids` a message still carries (their note lives).
    ///
    /// # Errors
    /// Redis failed.
    pub async fn files_noted(&self, ids: &[&str]) -> RedisResult<Vec<bool>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for id in ids {
            pipe.exists(self.file_key(id));
        }
        let noted: RedisResult<Vec<bool>> = pipe.query_async(&mut self.conn.clone()).await;
        self.health.noted(noted, "a read from Redis failed")
    }

    /// The rooms whose messages carry the file `id`, with what they say of
    /// it.
    ///
    /// # Errors
    /// Redis failed.
    pub async fn file_rooms(
        &self,
        id: &str,
    ) -> RedisResult<Vec<(chat_core::RoomName, chat_core::Attachment)>> {
        let fields = self.hash(&self.file_key(id)).await?;
        Ok(fields
            .into_iter()
            .filter_map(|(room, about)| {
                let room = chat_core::RoomName::parse(&room).ok()?;
                let about: FileAbout = serde_json::from_str(&about).ok()?;
                let attachment = chat_core::Attachment {
                    id: std::sync::Arc::from(id),
                    name: std::sync::Arc::from(about.name),
                    mime: std::sync::Arc::from(about.mime),
                    size: about.size,
                };
                Some((room, attachment))
            })
            .collect())
    }

    /// The same Redis, for logs that are never trimmed by length (shared
    /// documents' updates: only compaction shortens them).
    pub fn unbounded(&self) -> Self {
        Self { keep: usize::try_from(i64::MAX).unwrap_or(usize::MAX), ..self.clone() }
    }

    /// Drops every entry of `room`'s log up to `seq`, included.
    ///
    /// # Errors
    /// Redis failed.
    pub async fn trim_through(&self, room: &str, seq: u64) -> RedisResult<()> {
        let trimmed: RedisResult<u64> = redis::cmd("XTRIM")
            .arg(self.key(room, "log"))
            .arg("MINID")
            .arg(format!("{}-0", seq.saturating_add(1)))
            .query_async(&mut self.conn.clone())
            .await;
        self.health.noted(trimmed.map(drop), "a write to Redis failed")
    }

    /// Keeps `state` as a version of the document of `topic`, taken at `ts`
    /// (unix ms): numbered by a counter, its time and size in one hash and
    /// its state in another (so a listing reads no state); past
    /// `VERSIONS_KEPT` the oldest go.
    ///
    /// # Errors
    /// Redis failed.
    pub async fn keep_version(&self, topic: &str, ts: u64, state: &[u8]) -> RedisResult<()> {
        let mut conn = self.conn.clone();
        let kept = async {
            let number: u64 =
                redis::cmd("INCR").arg(self.key(topic, "vseq")).query_async(&mut conn).await?;
            let about = format!("{ts}:{}", state.len());
            let () = redis::pipe()
                .hset(self.key(topic, "vmeta"), number, about)
                .ignore()
                .hset(self.key(topic, "vdata"), number, state)
                .ignore()
                .query_async(&mut conn)
                .await?;
            let numbers: Vec<u64> =
                redis::cmd("HKEYS").arg(self.key(topic, "vmeta")).query_async(&mut conn).await?;
            let mut numbers = numbers;
            numbers.sort_unstable();
            let gone = numbers.len().saturating_sub(crate::store::VERSIONS_KEPT);
            if let Some(old) = numbers.get(..gone).filter(|old| !old.is_empty()) {
                let () = redis::pipe()
                    .hdel(self.key(topic, "vmeta"), old)
                    .ignore()
                    .hdel(self.key(topic, "vdata"), old)
                    .ignore()
                    .query_async(&mut conn)
                    .await?;
            }
            Ok(())
        };
        self.health.noted(kept.await, "a write to Redis failed")
    }

    /// The versions kept of the document of `topic`, newest first.
    ///
    /// # Errors
    /// Redis failed.
    pub async fn versions(&self, topic: &str) -> RedisResult<Vec<crate::store::VersionInfo>> {
        let fields: RedisResult<Vec<(u64, String)>> = redis::cmd("HGETALL")
            .arg(self.key(topic, "vmeta"))
            .query_async(&mut self.conn.clone())
            .await;
        let mut versions: Vec<crate::store::VersionInfo> = self
            .health
            .noted(fields, "a read from Redis failed")?
            .into_iter()
            .filter_map(|(version, about)| {
                let (ts, bytes) = about.split_once(':')?;
                Some(crate::store::VersionInfo {
                    version,
                    ts: ts.parse().ok()?,
                    bytes: bytes.parse().ok()?,
                })
            })
            .collect();
        versions.sort_by_key(|v| std::cmp::Reverse(v.version));
        Ok(versions)
    }

    /// Version `version`'s state of the document of `topic`, if kept.
    ///
    /// # Errors
    /// Redis failed.
    pub async fn version(&self, topic: &str, version: u64) -> RedisResult<Option<Vec<u8>>> {
        let state: RedisResult<Option<Vec<u8>>> = redis::cmd("HGET")
            .arg(self.key(topic, "vdata"))
            .arg(version)
            .query_async(&mut self.conn.clone())
            .await;
        self.health.noted(state, "a read from Redis failed")
    }

    /// Deletes `room`'s log and numbering (a document's, deleted).
    ///
    /// # Errors
    /// Redis failed.
    pub async fn delete(&self, room: &str) -> RedisResult<()> {
        let deleted: RedisResult<u64> = redis::cmd("DEL")
            .arg(self.key(room, "log"))
            .arg(self.key(room, "meta"))
            .arg(self.key(room, "vseq"))
            .arg(self.key(room, "vmeta"))
            .arg(self.key(room, "vdata"))
            .query_async(&mut self.conn.clone())
            .await;
        self.health.noted(deleted.map(drop), "a write to Redis failed")
    }

    /// The channel `room`'s messages are published on.
    pub fn channel(&self, room: &str) -> String {
        format!("{}:{{{room}}}", self.prefix)
    }

    /// The channel the messages of every conversation of `party` are
    /// published on (a party's key, or `@` and an identity: no token).
    pub fn party_channel(&self, party: &str) -> String {
        self.channel(&party_topic(party))
    }

    /// Lists the conversation `name` of a direct message numbered `seq`,
    /// sent at `ts`, for both its parties, with their nicks (in name order).
    ///
    /// # Errors
    /// Redis failed.
    pub async fn list_direct(
        &self,
        name: &str,
        nicks: &[chat_core::Nick; 2],
        seq: u64,
        ts: chat_core::Timestamp,
    ) -> RedisResult<()> {
        let Some((first, second)) = name.strip_prefix('~').and_then(|p| p.split_once(' ')) else {
            return Ok(());
        };
        let listed = Listed {
            nicks: [nicks[0].as_str().to_owned(), nicks[1].as_str().to_owned()],
            seq,
            ts: ts.as_unix_millis(),
        };
        let listed = serde_json::to_string(&listed).unwrap_or_default();
        // Only ever newer: a late write never takes a listing back.
        let mut pipe = redis::pipe();
        for party in [first, second] {
            pipe.cmd("EVAL")
                .arg(LIST_NEWER)
                .arg(1)
                .arg(self.listing_key(party))
                .arg(name)
                .arg(&listed)
                .arg(seq)
                .ignore();
        }
        let written: RedisResult<()> = pipe.query_async(&mut self.conn.clone()).await;
        self.health.noted(written, "a write to Redis failed")
    }

    /// The conversations of `party`, as [`RoomLog::list_direct`] keeps
    /// them.
    ///
    /// # Errors
    /// Redis failed.
    pub async fn conversations(&self, party: &str) -> RedisResult<Vec<chat_core::Conversation>> {
        let fields = self.hash(&self.listing_key(party)).await?;
        Ok(fields
            .into_iter()
            .filter_map(|(name, listed)| {
                let name = chat_core::RoomName::parse_stored(&name).ok()?;
                let listed: Listed = serde_json::from_str(&listed).ok()?;
                let [first, second] = listed.nicks;
                Some(chat_core::Conversation {
                    name,
                    nicks: [
                        chat_core::Nick::parse(&first).ok()?,
                        chat_core::Nick::parse(&second).ok()?,
                    ],
                    last_seq: listed.seq,
                    last_ts: chat_core::Timestamp::from_unix_millis(listed.ts),
                })
            })
            .filter(|conversation| conversation.name.is_conversation())
            .collect())
    }

    /// The fields of hash `key`.
    async fn hash(&self, key: &str) -> RedisResult<Vec<(String, String)>> {
        let fields: RedisResult<Vec<(String, String)>> =
            redis::cmd("HGETALL").arg(key).query_async(&mut self.conn.clone()).await;
        self.health.noted(fields, "a read from Redis failed")
    }

    /// The hash listing a party's conversations.
    fn listing_key(&self, party: &str) -> String {
        format!("{}:conversations:{{{party}}}", self.prefix)
    }

    /// A connection of its own for listening to rooms' channels.
    ///
    /// # Errors
    /// Redis cannot be reached.
    pub async fn subscriber(&self) -> RedisResult<PubSub> {
        let pubsub = self.client.get_async_pubsub().await;
        self.health.noted(pubsub, "cannot subscribe to Redis")
    }

    /// The cluster's nicks, in the same Redis through the same connection,
    /// claimed by node run `instance` for `lease` at a time.
    pub fn nicks(&self, instance: &str, lease: Duration) -> super::Nicks {
        super::Nicks::new(self.conn.clone(), &self.prefix, instance, lease, self.health.clone())
    }

    /// The sessions' records, kept by node run `instance` under `lease`.
    pub fn sessions(&self, instance: &str, lease: Duration) -> super::Sessions {
        super::Sessions::new(self.conn.clone(), &self.prefix, instance, lease, self.health.clone())
    }

    /// Who is in the rooms on every node, in the same Redis through the
    /// same connection.
    pub fn members(&self) -> super::Members {
        super::Members::new(self.conn.clone(), &self.prefix, self.health.clone())
    }

    /// The cluster's counters, in the same Redis.
    pub fn totals(&self) -> super::Totals {
        super::Totals::new(self.conn.clone(), &self.prefix)
    }

    /// Whether Redis answered this log's last call.
    pub fn health(&self) -> &Health {
        &self.health
    }

    /// What was heard on a channel, if it is a room's: one of its messages
    /// or a change of its members.
    pub fn heard(&self, channel: &str, payload: &[u8]) -> Option<super::Heard> {
        let room = channel.strip_prefix(&self.prefix)?.strip_prefix(":{")?.strip_suffix('}')?;
        if let Some(change) = payload.strip_prefix(b"p:") {
            return super::presence::decode_change(room, change).map(super::Heard::Presence);
        }
        if let Some(said) = payload.strip_prefix(b"a:") {
            let newline = said.iter().position(|&b| b == b'\n')?;
            let from = std::str::from_utf8(said.get(..newline)?).ok()?.to_owned();
            let message = said.get(newline + 1..)?.to_vec();
            return Some(super::Heard::Awareness { topic: room.to_owned(), from, message });
        }
        self.published(channel, payload).map(super::Heard::Message)
    }

    /// Publishes on `topic`'s channel what node `from` says of who is in
    /// a shared document (`message`, an awareness message), for the nodes
    /// that follow it now; never stored.
    ///
    /// # Errors
    /// Redis failed.
    pub async fn publish_awareness(
        &self,
        topic: &str,
        from: &str,
        message: &[u8],
    ) -> RedisResult<()> {
        let mut payload = Vec::with_capacity(from.len() + message.len() + 3);
        payload.extend_from_slice(b"a:");
        payload.extend_from_slice(from.as_bytes());
        payload.push(b'\n');
        payload.extend_from_slice(message);
        let published: RedisResult<u64> = redis::cmd("PUBLISH")
            .arg(self.channel(topic))
            .arg(payload)
            .query_async(&mut self.conn.clone())
            .await;
        self.health.noted(published.map(drop), "a write to Redis failed")
    }

    /// Publishes `payload` on `channel` as it is: how many listened.
    ///
    /// # Errors
    /// Redis failed.
    pub async fn publish(&self, channel: &str, payload: &[u8]) -> RedisResult<u64> {
        let published: RedisResult<u64> = redis::cmd("PUBLISH")
            .arg(channel)
            .arg(payload)
            .query_async(&mut self.conn.clone())
            .await;
        self.health.noted(published, "a write to Redis failed")
    }

    /// A message heard on a channel, if it is one of a room's, or on a
    /// party's channel one of its conversations'.
    pub fn published(&self, channel: &str, payload: &[u8]) -> Option<Published> {
        let room = channel.strip_prefix(&self.prefix)?.strip_prefix(":{")?.strip_suffix('}')?;
        let (room, payload) = match room.starts_with('^') {
            true => {
                let newline = payload.iter().position(|&b| b == b'\n')?;
                let name = std::str::from_utf8(payload.get(..newline)?).ok()?;
                (name, payload.get(newline + 1..)?)
            }
            false => (room, payload),
        };
        let mut parts = payload.splitn(3, |&b| b == b':');
        let seq = std::str::from_utf8(parts.next()?).ok()?.parse().ok()?;
        let epoch = std::str::from_utf8(parts.next()?).ok()?.to_owned();
        let message = parts.next()?.to_vec();
        Some(Published { room: room.to_owned(), seq, epoch, message })
    }

    /// One of `room`'s keys. The room's name in braces is its hash tag: a
    /// Redis Cluster keeps all of a room's keys on one shard.
    fn key(&self, room: &str, what: &str) -> String {
        format!("{}:{{{room}}}:{what}", self.prefix)
    }
}

/// What a room's message says of a file it carries, as Redis notes it.
#[derive(serde::Serialize, serde::Deserialize)]
struct FileAbout {
    name: String,
    mime: String,
    size: u64,
    /// The newest message of the room carrying it (0: not known).
    #[serde(default)]
    seq: u64,
}

/// Deletes field ARGV[1] (a room) of a file's note KEYS[1] if it still
/// names message ARGV[2] (not a newer message carrying the file).
const FORGET_FILE: &str = "local held = redis.call('HGET', KEYS[1], ARGV[1]) \
    if held and tonumber(string.match(held, '\"seq\":(%d+)')) == tonumber(ARGV[2]) then \
    return redis.call('HDEL', KEYS[1], ARGV[1]) end return 0";

/// A conversation as a party's listing in Redis keeps it.
#[derive(serde::Serialize, serde::Deserialize)]
struct Listed {
    /// The parties' nicks as of its last message, in name order.
    nicks: [String; 2],
    /// Its last message's `seq`, and when that was (Unix milliseconds).
    seq: u64,
    ts: u64,
}

/// Sets field ARGV[1] of hash KEYS[1] to ARGV[2] unless what it holds has
/// a `seq` (its JSON's) of ARGV[3] or more.
const LIST_NEWER: &str = "local held = redis.call('HGET', KEYS[1], ARGV[1]) \
    if held then local seq = tonumber(string.match(held, '\"seq\":(%d+)')) \
    if seq and seq >= tonumber(ARGV[3]) then return 0 end end \
    return redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])";

/// The topic a party's channel is named by: no room's name starts so.
pub fn party_topic(party: &str) -> String {
    format!("^{party}")
}

/// What `append.lua` answers: the `seq`, the epoch, 1 for a retry.
type AppendReply = (u64, String, u8);

/// One message for [`RoomLog::append_all`].
#[derive(Debug)]
pub struct ToAppend<'a> {
    /// Its room.
    pub room: &'a str,
    /// Its sender's session and id, if it has an id.
    pub id: Option<(&'a str, &'a str)>,
    /// The message, encoded.
    pub message: &'a [u8],
}

/// What `read.lua` answers: the newest `seq`, the epoch, the messages,
/// the topic (`""` for none).
type ReadReply = (u64, String, Vec<(u64, Vec<u8>)>, String);

/// An epoch for a room that has none: random, so a room whose data Redis
/// lost never gets the epoch it had.
fn fresh_epoch() -> String {
    format!("{:016x}", rand::random::<u64>())
}
