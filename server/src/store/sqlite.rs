use std::path::Path;
use std::sync::Arc;

use chat_core::{Attachment, Direct, Message, Nick, Record, RoomName, SessionToken, Timestamp};
use rusqlite::{Connection, params};
use tracing::warn;

use super::{Retention, Snapshot, Store, StoreError, StoredRoom};

/// The schema version this code writes; bumped with every change.
const SCHEMA_VERSION: i64 = 2;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS rooms (
    name     TEXT PRIMARY KEY,
    last_seq INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS messages (
    room      TEXT NOT NULL,
    seq       INTEGER NOT NULL,
    ts        INTEGER NOT NULL,
    nick      TEXT NOT NULL,
    text      TEXT NOT NULL,
    action    INTEGER NOT NULL,
    client_id TEXT,
    session   TEXT,
    file_id   TEXT,
    file_name TEXT,
    file_mime TEXT,
    file_size INTEGER,
    PRIMARY KEY (room, seq)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS messages_ts ON messages (ts);
CREATE TABLE IF NOT EXISTS directs (
    ts        INTEGER NOT NULL,
    sender    TEXT NOT NULL,
    recipient TEXT NOT NULL,
    text      TEXT NOT NULL,
    client_id TEXT NOT NULL,
    session   TEXT NOT NULL,
    PRIMARY KEY (session, client_id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS directs_ts ON directs (ts);
";

/// Storage in one SQLite file, `chat.db` in the data directory.
///
/// WAL mode with `synchronous=FULL`: a commit that returned is on disk, so
/// neither `kill -9` nor a power loss takes it back. The database is opened
/// in exclusive locking mode, so a second server on the same directory fails
/// at startup instead of corrupting the numbering.
#[derive(Debug)]
pub struct SqliteStore {
    db: Connection,
}

impl SqliteStore {
    /// Opens (creating if needed) the store in `dir`.
    ///
    /// # Errors
    /// The directory cannot be created, the file is not a database of ours,
    /// or another process holds it.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        std::fs::create_dir_all(dir)?;
        let db = Connection::open(dir.join("chat.db"))?;
        // The database is ours alone: waiting on a lock only delays telling
        // the operator that another server holds it.
        db.busy_timeout(std::time::Duration::from_millis(200))?;
        db.pragma_update(None, "journal_mode", "WAL")?;
        db.pragma_update(None, "synchronous", "FULL")?;
        db.pragma_update(None, "locking_mode", "EXCLUSIVE")?;
        db.execute_batch(SCHEMA)?;
        // Takes the exclusive lock now, not at the first message.
        db.execute_batch("BEGIN EXCLUSIVE; COMMIT;")?;
        let version: i64 = db.pragma_query_value(None, "user_version", |row| row.get(0))?;
        if version == 1 {
            // Version 1 had no attachments.
            db.execute_batch(
                "BEGIN;
                 ALTER TABLE messages ADD COLUMN file_id TEXT;
                 ALTER TABLE messages ADD COLUMN file_name TEXT;
                 ALTER TABLE messages ADD COLUMN file_mime TEXT;
                 ALTER TABLE messages ADD COLUMN file_size INTEGER;
                 COMMIT;",
            )?;
        }
        if version < SCHEMA_VERSION {
            db.pragma_update(None, "user_version", SCHEMA_VERSION)?;
        }
        Ok(Self { db })
    }
}

impl Store for SqliteStore {
    fn load(&mut self, retention: &Retention, now_ms: u64) -> Result<Snapshot, StoreError> {
        self.prune(retention, now_ms)?;
        let mut rooms = Vec::new();
        let names: Vec<(String, i64)> = {
            let mut query = self.db.prepare("SELECT name, last_seq FROM rooms ORDER BY name")?;
            query.query_map([], |row| Ok((row.get(0)?, row.get(1)?)))?.collect::<Result<_, _>>()?
        };
        let limit = i64::try_from(retention.per_room).unwrap_or(i64::MAX);
        let mut query = self.db.prepare(
            "SELECT seq, ts, nick, text, action, client_id, session,
                    file_id, file_name, file_mime, file_size FROM messages
             WHERE room = ?1 ORDER BY seq DESC LIMIT ?2",
        )?;
        for (name, last_seq) in names {
            let Ok(room) = RoomName::parse(&name) else {
                warn!(room = %name, "skipping a stored room with an invalid name");
                continue;
            };
            let rows = query.query_map(params![name, limit], |row| {
                Ok(StoredMessage {
                    seq: row.get(0)?,
                    ts: row.get(1)?,
                    nick: row.get(2)?,
                    text: row.get(3)?,
                    action: row.get(4)?,
                    client_id: row.get(5)?,
                    session: row.get(6)?,
                    file: (row.get(7)?, row.get(8)?, row.get(9)?, row.get(10)?),
                })
            })?;
            let mut messages = Vec::new();
            for row in rows {
                match row?.into_message(&room) {
                    Some(message) => messages.push(message),
                    None => warn!(room = %name, "skipping a stored message that does not parse"),
                }
            }
            messages.reverse();
            rooms.push(StoredRoom {
                name: room,
                last_seq: u64::try_from(last_seq).unwrap_or(0),
                messages,
            });
        }
        let mut query = self.db.prepare(
            "SELECT ts, sender, recipient, text, client_id, session FROM directs ORDER BY ts",
        )?;
        let rows = query.query_map([], |row| {
            Ok((
                row.get::<_, i64>(0)?,
                row.get::<_, String>(1)?,
                row.get::<_, String>(2)?,
                row.get::<_, String>(3)?,
                row.get::<_, String>(4)?,
                row.get::<_, String>(5)?,
            ))
        })?;
        let mut directs = Vec::new();
        for row in rows {
            let (ts, from, to, text, id, session) = row?;
            let parsed = (Nick::parse(&from), Nick::parse(&to), SessionToken::parse(&session));
            let (Ok(from), Ok(to), Ok(sender)) = parsed else {
                warn!("skipping a stored direct message that does not parse");
                continue;
            };
            let ts = Timestamp::from_unix_millis(u64::try_from(ts).unwrap_or(0));
            directs.push(Direct { from, to, text: text.into(), ts, id: Some(id.into()), sender });
        }
        Ok(Snapshot { rooms, directs })
    }

    fn commit(&mut self, records: &[Record]) -> Result<(), StoreError> {
        let tx = self.db.transaction()?;
        {
            let mut insert_message = tx.prepare_cached(
                "INSERT INTO messages (room, seq, ts, nick, text, action, client_id, session,
                                       file_id, file_name, file_mime, file_size)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
            )?;
            let mut raise_seq = tx.prepare_cached(
                "INSERT INTO rooms (name, last_seq) VALUES (?1, ?2)
                 ON CONFLICT (name) DO UPDATE SET last_seq = max(last_seq, excluded.last_seq)",
            )?;
            let mut insert_direct = tx.prepare_cached(
                "INSERT OR IGNORE INTO directs (ts, sender, recipient, text, client_id, session)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?;
            for record in records {
                match record {
                    Record::Message(m) => {
                        let seq = i64::try_from(m.seq).unwrap_or(i64::MAX);
                        let file = m.attachment.as_ref();
                        insert_message.execute(params![
                            m.room.as_str(),
                            seq,
                            millis(m.ts),
                            m.from.as_str(),
                            &*m.text,
                            m.action,
                            m.id.as_deref(),
                            m.sender.as_ref().map(SessionToken::as_str),
                            file.map(|f| &*f.id),
                            file.map(|f| &*f.name),
                            file.map(|f| &*f.mime),
                            file.map(|f| i64::try_from(f.size).unwrap_or(i64::MAX)),
                        ])?;
                        raise_seq.execute(params![m.room.as_str(), seq])?;
                    }
                    // Only direct messages with an id can be retried.
                    Record::Direct(d) => {
                        if let Some(id) = d.id.as_deref() {
                            insert_direct.execute(params![
                                millis(d.ts),
                                d.from.as_str(),
                                d.to.as_str(),
                                &*d.text,
                                id,
                                d.sender.as_str(),
                            ])?;
                        }
                    }
                }
            }
        }
        tx.commit()?;
        Ok(())
    }

    fn prune(&mut self, retention: &Retention, now_ms: u64) -> Result<(), StoreError> {
        let tx = self.db.transaction()?;
        let keep = i64::try_from(retention.per_room).unwrap_or(i64::MAX);
        tx.execute(
            "DELETE FROM messages WHERE seq <= (SELECT last_seq FROM rooms WHERE name = messages.room) - ?1",
            params![keep],
        )?;
        if let Some(cutoff) = retention.cutoff_ms(now_ms) {
            tx.execute(
                "DELETE FROM messages WHERE ts < ?1",
                params![i64::try_from(cutoff).unwrap_or(i64::MAX)],
            )?;
        }
        let directs_cutoff = i64::try_from(retention.directs_cutoff_ms(now_ms)).unwrap_or(i64::MAX);
        tx.execute("DELETE FROM directs WHERE ts < ?1", params![directs_cutoff])?;
        tx.commit()?;
        Ok(())
    }
}

struct StoredMessage {
    seq: i64,
    ts: i64,
    nick: String,
    text: String,
    action: bool,
    client_id: Option<String>,
    session: Option<String>,
    /// The attachment's id, name, type and size, all or none.
    file: (Option<String>, Option<String>, Option<String>, Option<i64>),
}

impl StoredMessage {
    fn into_message(self, room: &RoomName) -> Option<Message> {
        Some(Message {
            room: room.clone(),
            seq: u64::try_from(self.seq).ok()?,
            ts: Timestamp::from_unix_millis(u64::try_from(self.ts).ok()?),
            from: Nick::parse(&self.nick).ok()?,
            text: Arc::from(self.text),
            action: self.action,
            id: self.client_id.map(Arc::from),
            sender: match self.session {
                Some(token) => Some(SessionToken::parse(&token).ok()?),
                None => None,
            },
            attachment: match self.file {
                (Some(id), Some(name), Some(mime), Some(size)) => Some(Arc::new(Attachment {
                    id: Arc::from(id),
                    name: Arc::from(name),
                    mime: Arc::from(mime),
                    size: u64::try_from(size).ok()?,
                })),
                _ => None,
            },
        })
    }
}

fn millis(ts: Timestamp) -> i64 {
    i64::try_from(ts.as_unix_millis()).unwrap_or(i64::MAX)
}
