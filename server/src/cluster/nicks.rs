//! Nicks claimed in Redis for the whole cluster (see `claim.lua` and
//! `release.lua`): a nick's key holds a digest of the token of the session
//! holding it and the node run holding it for the session, under a lease
//! the node renews while the session lives, so the nicks of a node that
//! died come free once their leases run out. A session that moves to
//! another node takes its claim along.

use std::time::Duration;

use redis::aio::ConnectionManager;
use redis::{RedisResult, Script};

use super::Health;

/// What the log says when Redis fails one of these calls.
const FAILED: &str = "a nick claim in Redis failed";

/// The nicks of the cluster in Redis.
#[derive(Clone)]
pub struct Nicks {
    conn: ConnectionManager,
    prefix: String,
    lease: Duration,
    /// The node run claiming, as holders name it.
    instance: String,
    claim: Script,
    release: Script,
    health: Health,
}

impl std::fmt::Debug for Nicks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Nicks").field("prefix", &self.prefix).field("lease", &self.lease).finish()
    }
}

impl Nicks {
    /// Nicks under keys starting with `prefix`, claimed by node run
    /// `instance` for `lease` at a time, through `conn`; Redis's answers are
    /// noted in `health`.
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
            claim: Script::new(include_str!("claim.lua")),
            release: Script::new(include_str!("release.lua")),
            health,
        }
    }

    /// Claims `folded` (a nick's folded form) for the session of `token`:
    /// `true` if it is that session's now (through this node run), `false`
    /// if another session's.
    ///
    /// # Errors
    /// Redis failed.
    pub async fn claim(&self, folded: &str, token: &str) -> RedisResult<bool> {
        let granted: RedisResult<u8> = self
            .claim
            .key(self.key(folded))
            .arg(self.holder(token))
            .arg(self.lease_ms())
            .invoke_async(&mut self.conn.clone())
            .await;
        self.health.noted(granted.map(|granted| granted == 1), FAILED)
    }

    /// Renews the leases of `held` (folded nick, token) in one round trip:
    /// the nicks another session holds now (Redis lost them and someone
    /// claimed them since).
    ///
    /// # Errors
    /// Redis failed.
    pub async fn renew(&self, held: &[(String, String)]) -> RedisResult<Vec<String>> {
        if held.is_empty() {
            return Ok(Vec::new());
        }
        // Loaded first (a restarted Redis has forgotten it), then run by
        // its digest for every nick in one pipeline.
        let mut conn = self.conn.clone();
        let loaded = self.claim.prepare_invoke().load_async(&mut conn).await;
        let sha = self.health.noted(loaded, FAILED)?;
        let mut pipe = redis::pipe();
        for (folded, token) in held {
            pipe.cmd("EVALSHA")
                .arg(&sha)
                .arg(1)
                .arg(self.key(folded))
                .arg(self.holder(token))
                .arg(self.lease_ms());
        }
        let answers: RedisResult<Vec<u8>> = pipe.query_async(&mut conn).await;
        let answers = self.health.noted(answers, FAILED)?;
        let lost = held.iter().zip(answers).filter(|(_, granted)| *granted == 0);
        Ok(lost.map(|((folded, _), _)| folded.clone()).collect())
    }

    /// Lets `folded` go if the session of `token` still holds it.
    ///
    /// # Errors
    /// Redis failed (the lease then runs out by itself).
    pub async fn release(&self, folded: &str, token: &str) -> RedisResult<()> {
        let released: RedisResult<u8> = self
            .release
            .key(self.key(folded))
            .arg(self.holder(token))
            .invoke_async(&mut self.conn.clone())
            .await;
        self.health.noted(released.map(drop), FAILED)
    }

    /// The key (token digest) of the session holding `folded`, if one
    /// does.
    ///
    /// # Errors
    /// Redis failed.
    pub async fn held_by(&self, folded: &str) -> RedisResult<Option<String>> {
        let holder: RedisResult<Option<String>> =
            redis::cmd("GET").arg(self.key(folded)).query_async(&mut self.conn.clone()).await;
        let holder = self.health.noted(holder, FAILED)?;
        Ok(holder.and_then(|holder| Some(holder.split_once(':')?.0.to_owned())))
    }

    /// What a nick's key holds for the session of `token` claimed here.
    fn holder(&self, token: &str) -> String {
        format!("{}:{}", super::digest(token), self.instance)
    }

    fn key(&self, folded: &str) -> String {
        format!("{}:nick:{{{folded}}}", self.prefix)
    }

    fn lease_ms(&self) -> u64 {
        u64::try_from(self.lease.as_millis()).unwrap_or(u64::MAX).max(1)
    }
}
