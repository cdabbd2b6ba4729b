//! Where each session lives, in Redis, so that a client may come back
//! through any node: a record per session (`chat:session:{digest}`: its
//! nick, the node run serving it, a field per room it is in) under the
//! lease its node renews. A node that takes a session over (its client
//! came back there) says so on the `chat:sessions` channel, and the node it
//! left lets it go quietly.

use std::time::Duration;

use chat_core::{Found, Nick, RoomName};
use redis::aio::ConnectionManager;
use redis::{AsyncCommands, RedisResult, Script};

use super::{Health, Nicks, digest};

/// What the log says when Redis fails one of these calls.
const FAILED: &str = "a session record in Redis failed";

/// The sessions' records in Redis.
#[derive(Clone)]
pub struct Sessions {
    conn: ConnectionManager,
    prefix: String,
    /// This node run, as records name it.
    instance: String,
    lease: Duration,
    ended: Script,
    join: Script,
    health: Health,
}

impl std::fmt::Debug for Sessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sessions").field("instance", &self.instance).finish()
    }
}

impl Sessions {
    /// The records under `prefix`, kept by node run `instance` under
    /// `lease`, through `conn`; Redis's answers are noted in `health`.
    pub fn new(
        conn: ConnectionManager,
        prefix: &str,
        instance: &str,
        lease: Duration,
        health: Health,
    ) -> Self {
        Self {
            conn,
            prefix: prefix.to_owned(),
            instance: instance.to_owned(),
            lease,
            ended: Script::new(include_str!("ended.lua")),
            join: Script::new(
                "if redis.call('EXISTS', KEYS[1]) == 1 then \
                 return redis.call('HSET', KEYS[1], ARGV[1], 1) end return 0",
            ),
            health,
        }
    }

    /// The channel a node taking a session over says so on.
    pub fn channel(&self) -> String {
        format!("{}:sessions", self.prefix)
    }

    /// The session of `token` lives here, as `nick`.
    ///
    /// # Errors
    /// Redis failed.
    pub async fn here(&self, token: &str, nick: &Nick) -> RedisResult<()> {
        let key = self.key(token);
        let written: RedisResult<()> = redis::pipe()
            .hset(&key, "nick", nick.as_str())
            .ignore()
            .hset(&key, "node", &self.instance)
            .ignore()
            .pexpire(&key, self.lease_ms())
            .ignore()
            .query_async(&mut self.conn.clone())
            .await;
        self.health.noted(written, FAILED)
    }

    /// The session of `token` ended here (if it still lives here).
    ///
    /// # Errors
    /// Redis failed.
    pub async fn ended(&self, token: &str) -> RedisResult<()> {
        let ended: RedisResult<u8> = self
            .ended
            .key(self.key(token))
            .arg(&self.instance)
            .invoke_async(&mut self.conn.clone())
            .await;
        self.health.noted(ended, FAILED).map(drop)
    }

    /// The nick of the session named by `key` (its digest), as its
    /// record says, if it has one.
    ///
    /// # Errors
    /// Redis failed.
    pub async fn nick_of(&self, key: &str) -> RedisResult<Option<Nick>> {
        let record = format!("{}:session:{{{key}}}", self.prefix);
        let nick: RedisResult<Option<String>> = self.conn.clone().hget(record, "nick").await;
        let nick = self.health.noted(nick, FAILED)?;
        Ok(nick.and_then(|nick| Nick::parse(&nick).ok()))
    }

    /// The session named by `key` (its digest) joined (or left) `room`;
    /// a record that does not exist (the session ended) is left alone.
    ///
    /// # Errors
    /// Redis failed.
    pub async fn in_room(&self, key: &str, room: &str, joined: bool) -> RedisResult<()> {
        let record = format!("{}:session:{{{key}}}", self.prefix);
        let field = format!("r:{room}");
        let written: RedisResult<u8> = if joined {
            self.join.key(record).arg(field).invoke_async(&mut self.conn.clone()).await
        } else {
            self.conn.clone().hdel(record, field).await
        };
        self.health.noted(written, FAILED).map(drop)
    }

    /// Renews the records of the sessions of `tokens`.
    ///
    /// # Errors
    /// Redis failed.
    pub async fn renew(&self, tokens: &[String]) -> RedisResult<()> {
        if tokens.is_empty() {
            return Ok(());
        }
        let mut pipe = redis::pipe();
        for token in tokens {
            pipe.pexpire(self.key(token), self.lease_ms()).ignore();
        }
        let renewed: RedisResult<()> = pipe.query_async(&mut self.conn.clone()).await;
        self.health.noted(renewed, FAILED)
    }

    /// The session of `token`, if it lives (or lived until its node died)
    /// on another node run: taken over, with its nick's claim, by this one,
    /// and its old node told. `None` if there is none, or its nick is
    /// another session's now.
    ///
    /// # Errors
    /// Redis failed.
    pub async fn take_over(&self, token: &str, nicks: &Nicks) -> RedisResult<Option<Found>> {
        let key = self.key(token);
        let fields: RedisResult<Vec<(String, String)>> = self.conn.clone().hgetall(&key).await;
        let fields = self.health.noted(fields, FAILED)?;
        let field = |name: &str| fields.iter().find(|(f, _)| f == name).map(|(_, v)| v.as_str());
        let (Some(nick), Some(node)) = (field("nick"), field("node")) else {
            return Ok(None);
        };
        let Ok(nick) = Nick::parse(nick) else {
            return Ok(None);
        };
        if node == self.instance || !nicks.claim(nick.folded(), token).await? {
            return Ok(None);
        }
        let rooms = fields
            .iter()
            .filter_map(|(field, _)| field.strip_prefix("r:"))
            .filter_map(|room| RoomName::parse_stored(room).ok())
            .collect();
        self.here(token, &nick).await?;
        let moved: RedisResult<()> = self
            .conn
            .clone()
            .publish(self.channel(), format!("{}:{}", digest(token), self.instance))
            .await;
        self.health.noted(moved, FAILED)?;
        Ok(Some(Found { nick, rooms, key: digest(token).into() }))
    }

    /// A takeover heard on [`Sessions::channel`]: the session's digest, if
    /// another node run took it.
    pub fn moved(&self, payload: &[u8]) -> Option<String> {
        let text = std::str::from_utf8(payload).ok()?;
        let (digest, instance) = text.split_once(':')?;
        (instance != self.instance).then(|| digest.to_owned())
    }

    fn key(&self, token: &str) -> String {
        format!("{}:session:{{{}}}", self.prefix, digest(token))
    }

    fn lease_ms(&self) -> i64 {
        i64::try_from(self.lease.as_millis()).unwrap_or(i64::MAX).max(1)
    }
}
