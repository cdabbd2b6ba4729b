use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;

use chat_core::{
    Attachment, Conversation, Direct, DocEntry, Message, MessageKind, Nick, Record, RoomHistory,
    RoomName, SessionToken, Timestamp,
};
use rusqlite::{Connection, OptionalExtension, params};
use tracing::warn;

use super::{Retention, Snapshot, Store, StoreError};

/// The schema version this code writes; bumped with every change.
const SCHEMA_VERSION: i64 = 8;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS rooms (
    name     TEXT PRIMARY KEY,
    last_seq INTEGER NOT NULL,
    topic    TEXT
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
    kind      INTEGER NOT NULL DEFAULT 0,
    target    INTEGER,
    PRIMARY KEY (room, seq)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS messages_ts ON messages (ts);
CREATE TABLE IF NOT EXISTS conversations (
    name     TEXT PRIMARY KEY,
    nick_a   TEXT NOT NULL,
    nick_b   TEXT NOT NULL,
    last_seq INTEGER NOT NULL,
    last_ts  INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS sessions (
    token TEXT PRIMARY KEY,
    nick  TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS doc_updates (
    id   INTEGER PRIMARY KEY,
    room TEXT NOT NULL,
    doc  TEXT NOT NULL,
    data BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS doc_updates_doc ON doc_updates (room, doc, id);
CREATE TABLE IF NOT EXISTS doc_versions (
    id    INTEGER PRIMARY KEY,
    room  TEXT NOT NULL,
    doc   TEXT NOT NULL,
    ts    INTEGER NOT NULL,
    state BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS doc_versions_doc ON doc_versions (room, doc, id);
CREATE TABLE IF NOT EXISTS docs (
    room      TEXT NOT NULL,
    name      TEXT NOT NULL,
    title     TEXT NOT NULL,
    edited_by TEXT NOT NULL,
    edited_at INTEGER NOT NULL,
    PRIMARY KEY (room, name)
) WITHOUT ROWID;
";

/// Made once the columns exist (version 1 added them later).
const FILE_INDEX: &str =
    "CREATE INDEX IF NOT EXISTS messages_file ON messages (file_id) WHERE file_id IS NOT NULL;";

/// The columns a stored message is read from.
const MESSAGE_COLUMNS: &str = "seq, ts, nick, text, action, client_id, session,
    file_id, file_name, file_mime, file_size, kind, target";

/// How `kind` is stored: what a message is (see `MessageKind`), with the
/// message a change is to in `target`.
const SAID: i64 = 0;
const EDITED: i64 = 1;
const DELETED: i64 = 2;
const EDIT: i64 = 3;
const DELETE: i64 = 4;

/// The ids of the files the stored messages carry (the sweep's, and a
/// backup's, list).
pub(crate) const CARRIED_FILES: &str =
    "SELECT DISTINCT file_id FROM messages WHERE file_id IS NOT NULL";

/// Storage in one SQLite file, `chat.db` in the data directory.
///
/// WAL mode with `synchronous=FULL`: a commit that returned is on disk, so
/// neither `kill -9` nor a power loss takes it back. The store holds an
/// exclusive lock on `chat.lock` in the directory as long as it is open,
/// so a second server on the same directory fails at startup instead of
/// corrupting the numbering; the database itself stays readable by others
/// (an online backup, `chat-server backup`, reads it while the server
/// writes).
#[derive(Debug)]
pub struct SqliteStore {
    db: Connection,
    /// Held (locked) as long as the store is open.
    _lock: std::fs::File,
}

impl SqliteStore {
    /// Opens (creating if needed) the store in `dir`.
    ///
    /// # Errors
    /// The directory cannot be created, the file is not a database of ours,
    /// or another process holds it.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        std::fs::create_dir_all(dir)?;
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(dir.join("chat.lock"))?;
        rustix::fs::flock(&lock, rustix::fs::FlockOperation::NonBlockingLockExclusive)
            .map_err(|_| std::io::Error::other("another chat-server holds this data directory"))?;
        let db = Connection::open(dir.join("chat.db"))?;
        // Only readers (a backup) share the database: in WAL mode they
        // never hold a writer up for long.
        db.busy_timeout(std::time::Duration::from_millis(200))?;
        db.pragma_update(None, "journal_mode", "WAL")?;
        db.pragma_update(None, "synchronous", "FULL")?;
        db.execute_batch(SCHEMA)?;
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
        // Version 2 had no sessions table (made above) and no file index.
        db.execute_batch(FILE_INDEX)?;
        // Up to version 3 direct messages were kept only to answer retries,
        // for the dedupe window; conversations (made above) start now.
        db.execute_batch("DROP TABLE IF EXISTS directs;")?;
        if (1..6).contains(&version) {
            // Version 5 had no room topics.
            db.execute_batch("ALTER TABLE rooms ADD COLUMN topic TEXT;")?;
        }
        if (1..5).contains(&version) {
            // Version 4 had no edits and deletions.
            db.execute_batch(
                "BEGIN;
                 ALTER TABLE messages ADD COLUMN kind INTEGER NOT NULL DEFAULT 0;
                 ALTER TABLE messages ADD COLUMN target INTEGER;
                 COMMIT;",
            )?;
        }
        if version < SCHEMA_VERSION {
            db.pragma_update(None, "user_version", SCHEMA_VERSION)?;
        }
        Ok(Self { db, _lock: lock })
    }
}

/// What [`SqliteStore::erase_nick`] took out.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Erased {
    /// Messages (room and direct) whose text and file were erased.
    pub messages: usize,
    /// Sessions ended.
    pub sessions: usize,
    /// Files no message carries any more: the caller deletes them.
    pub files: Vec<String>,
}

impl SqliteStore {
    /// Erases what `nick` (exactly as shown) wrote, on request: the text
    /// and file of each of its messages, room and direct (each kept as a
    /// deleted message, so the numbering has no hole and clients see it
    /// deleted), the new texts of its edits, and its sessions. Returns
    /// the files no message carries any more. In one transaction.
    ///
    /// # Errors
    /// SQLite failed; nothing was changed.
    pub fn erase_nick(&mut self, nick: &str) -> Result<Erased, StoreError> {
        // What is taken out is overwritten, not left in free space.
        self.db.pragma_update(None, "secure_delete", "ON")?;
        let tx = self.db.transaction()?;
        let carried: BTreeSet<String> = {
            let mut query = tx.prepare(
                "SELECT DISTINCT file_id FROM messages WHERE nick = ?1 AND file_id IS NOT NULL",
            )?;
            let ids = query.query_map([nick], |row| row.get::<_, String>(0))?;
            ids.collect::<Result<_, _>>()?
        };
        let messages = tx.execute(
            "UPDATE messages SET text = '', kind = ?2, file_id = NULL, file_name = NULL,
                                 file_mime = NULL, file_size = NULL
             WHERE nick = ?1 AND kind IN (?3, ?4)",
            params![nick, DELETED, SAID, EDITED],
        )?;
        tx.execute(
            "UPDATE messages SET text = '' WHERE nick = ?1 AND kind = ?2",
            params![nick, EDIT],
        )?;
        let sessions = tx.execute("DELETE FROM sessions WHERE nick = ?1", [nick])?;
        let mut files = Vec::new();
        {
            let mut still = tx.prepare("SELECT 1 FROM messages WHERE file_id = ?1 LIMIT 1")?;
            for id in carried {
                if !still.exists([&id])? {
                    files.push(id);
                }
            }
        }
        tx.commit()?;
        Ok(Erased { messages, sessions, files })
    }
}

/// Writes updates of shared documents in `tx`.
fn write_updates(
    tx: &rusqlite::Transaction<'_>,
    updates: &[super::DocUpdate],
) -> rusqlite::Result<()> {
    let mut insert =
        tx.prepare_cached("INSERT INTO doc_updates (room, doc, data) VALUES (?1, ?2, ?3)")?;
    for super::DocUpdate { room, doc, update } in updates {
        insert.execute((room.as_str(), doc.as_str(), update))?;
    }
    Ok(())
}

/// Writes `records` in `tx`: messages (a change applied to the message
/// it changes), conversations, sessions, topics, document lists.
fn write_records(tx: &rusqlite::Transaction<'_>, records: &[Record]) -> rusqlite::Result<()> {
    let mut insert_message = tx.prepare_cached(
        "INSERT INTO messages (room, seq, ts, nick, text, action, client_id, session,
                                       file_id, file_name, file_mime, file_size, kind, target)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
    )?;
    // A change is applied to the message it changes: a deleted
    // message's text and file are gone from storage too.
    let mut edit = tx.prepare_cached(
        "UPDATE messages SET text = ?3, kind = ?4
                 WHERE room = ?1 AND seq = ?2 AND kind IN (?5, ?4)",
    )?;
    let mut delete = tx.prepare_cached(
        "UPDATE messages SET text = '', kind = ?3, file_id = NULL, file_name = NULL,
                                     file_mime = NULL, file_size = NULL
                 WHERE room = ?1 AND seq = ?2",
    )?;
    let mut raise_seq = tx.prepare_cached(
        "INSERT INTO rooms (name, last_seq) VALUES (?1, ?2)
                 ON CONFLICT (name) DO UPDATE SET last_seq = max(last_seq, excluded.last_seq)",
    )?;
    let mut put_conversation = tx.prepare_cached(
        "INSERT INTO conversations (name, nick_a, nick_b, last_seq, last_ts)
                 VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (name) DO UPDATE SET nick_a = excluded.nick_a,
                   nick_b = excluded.nick_b, last_seq = excluded.last_seq,
                   last_ts = excluded.last_ts
                 WHERE excluded.last_seq > last_seq",
    )?;
    let mut put_session = tx.prepare_cached(
        "INSERT INTO sessions (token, nick) VALUES (?1, ?2)
                 ON CONFLICT (token) DO UPDATE SET nick = excluded.nick",
    )?;
    let mut end_session = tx.prepare_cached("DELETE FROM sessions WHERE token = ?1")?;
    let mut set_topic = tx.prepare_cached(
        "INSERT INTO rooms (name, last_seq, topic) VALUES (?1, 0, ?2)
                 ON CONFLICT (name) DO UPDATE SET topic = excluded.topic",
    )?;
    // A document's list entry; its room is known from then on.
    let mut put_doc = tx.prepare_cached(
        "INSERT INTO docs (room, name, title, edited_by, edited_at) VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (room, name) DO UPDATE SET title = excluded.title,
                   edited_by = excluded.edited_by, edited_at = excluded.edited_at",
    )?;
    let mut know_room = tx.prepare_cached(
        "INSERT INTO rooms (name, last_seq) VALUES (?1, 0) ON CONFLICT (name) DO NOTHING",
    )?;
    // A deleted document goes with its content.
    let mut drop_doc = tx.prepare_cached("DELETE FROM docs WHERE room = ?1 AND name = ?2")?;
    let mut drop_updates =
        tx.prepare_cached("DELETE FROM doc_updates WHERE room = ?1 AND doc = ?2")?;
    let mut drop_versions =
        tx.prepare_cached("DELETE FROM doc_versions WHERE room = ?1 AND doc = ?2")?;
    for record in records {
        match record {
            Record::Doc { room, doc, deleted: false } => {
                know_room.execute([room.as_str()])?;
                put_doc.execute(params![
                    room.as_str(),
                    doc.name.as_str(),
                    &*doc.title,
                    doc.edited_by.as_str(),
                    millis(doc.edited_at),
                ])?;
            }
            Record::Doc { room, doc, deleted: true } => {
                drop_doc.execute(params![room.as_str(), doc.name.as_str()])?;
                drop_updates.execute(params![room.as_str(), doc.name.as_str()])?;
                drop_versions.execute(params![room.as_str(), doc.name.as_str()])?;
            }
            Record::Message(m) => {
                insert(&mut insert_message, m)?;
                raise_seq.execute(params![m.room.as_str(), seq(m)])?;
                match m.kind {
                    MessageKind::Edit(of) => {
                        let of = i64::try_from(of).unwrap_or(i64::MAX);
                        edit.execute(params![m.room.as_str(), of, &*m.text, EDITED, SAID])?;
                    }
                    MessageKind::Delete(of) => {
                        let of = i64::try_from(of).unwrap_or(i64::MAX);
                        delete.execute(params![m.room.as_str(), of, DELETED])?;
                    }
                    _ => {}
                }
            }
            Record::Direct(Direct { message: m, nicks: [a, b] }) => {
                insert(&mut insert_message, m)?;
                raise_seq.execute(params![m.room.as_str(), seq(m)])?;
                put_conversation.execute(params![
                    m.room.as_str(),
                    a.as_str(),
                    b.as_str(),
                    seq(m),
                    millis(m.ts),
                ])?;
            }
            Record::Session { token, nick } => {
                put_session.execute(params![token.as_str(), nick.as_str()])?;
            }
            Record::SessionEnded(token) => {
                end_session.execute(params![token.as_str()])?;
            }
            Record::Topic { room, topic } => {
                set_topic.execute(params![room.as_str(), topic.as_deref()])?;
            }
        }
    }
    Ok(())
}

/// A message's `seq` as SQLite stores it.
fn seq(m: &Message) -> i64 {
    i64::try_from(m.seq).unwrap_or(i64::MAX)
}

/// Inserts a message's row with the insert prepared in `commit`.
fn insert(insert_message: &mut rusqlite::CachedStatement<'_>, m: &Message) -> rusqlite::Result<()> {
    let file = m.attachment.as_ref();
    let (kind, target) = match m.kind {
        MessageKind::Said => (SAID, None),
        MessageKind::Edited => (EDITED, None),
        MessageKind::Deleted => (DELETED, None),
        MessageKind::Edit(of) => (EDIT, Some(of)),
        MessageKind::Delete(of) => (DELETE, Some(of)),
    };
    let target = target.map(|seq| i64::try_from(seq).unwrap_or(i64::MAX));
    insert_message.execute(params![
        m.room.as_str(),
        seq(m),
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
        kind,
        target,
    ])?;
    Ok(())
}

fn message_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<StoredMessage> {
    Ok(StoredMessage {
        seq: row.get(0)?,
        ts: row.get(1)?,
        nick: row.get(2)?,
        text: row.get(3)?,
        action: row.get(4)?,
        client_id: row.get(5)?,
        session: row.get(6)?,
        file: (row.get(7)?, row.get(8)?, row.get(9)?, row.get(10)?),
        kind: (row.get(11)?, row.get(12)?),
    })
}

impl Store for SqliteStore {
    fn doc(&mut self, room: &RoomName, doc: &RoomName) -> Result<Vec<Vec<u8>>, StoreError> {
        let mut select = self.db.prepare_cached(
            "SELECT data FROM doc_updates WHERE room = ?1 AND doc = ?2 ORDER BY id",
        )?;
        let rows = select.query_map((room.as_str(), doc.as_str()), |row| row.get(0))?;
        Ok(rows.collect::<Result<Vec<Vec<u8>>, _>>()?)
    }

    fn commit_docs(&mut self, updates: &[super::DocUpdate]) -> Result<(), StoreError> {
        let tx = self.db.transaction()?;
        write_updates(&tx, updates)?;
        tx.commit()?;
        Ok(())
    }

    fn compact_doc(
        &mut self,
        room: &RoomName,
        doc: &RoomName,
        state: &[u8],
    ) -> Result<(), StoreError> {
        let tx = self.db.transaction()?;
        tx.execute(
            "DELETE FROM doc_updates WHERE room = ?1 AND doc = ?2",
            (room.as_str(), doc.as_str()),
        )?;
        tx.execute(
            "INSERT INTO doc_updates (room, doc, data) VALUES (?1, ?2, ?3)",
            (room.as_str(), doc.as_str(), state),
        )?;
        tx.commit()?;
        Ok(())
    }

    fn keep_version(
        &mut self,
        room: &RoomName,
        doc: &RoomName,
        ts: u64,
        state: &[u8],
    ) -> Result<(), StoreError> {
        let tx = self.db.transaction()?;
        let ts = i64::try_from(ts).unwrap_or(i64::MAX);
        tx.execute(
            "INSERT INTO doc_versions (room, doc, ts, state) VALUES (?1, ?2, ?3, ?4)",
            (room.as_str(), doc.as_str(), ts, state),
        )?;
        let kept = i64::try_from(super::VERSIONS_KEPT).unwrap_or(i64::MAX);
        tx.execute(
            "DELETE FROM doc_versions WHERE room = ?1 AND doc = ?2 AND id NOT IN
               (SELECT id FROM doc_versions WHERE room = ?1 AND doc = ?2 ORDER BY id DESC LIMIT ?3)",
            (room.as_str(), doc.as_str(), kept),
        )?;
        tx.commit()?;
        Ok(())
    }

    fn versions(
        &mut self,
        room: &RoomName,
        doc: &RoomName,
    ) -> Result<Vec<super::VersionInfo>, StoreError> {
        let mut select = self.db.prepare_cached(
            "SELECT id, ts, length(state) FROM doc_versions WHERE room = ?1 AND doc = ?2
             ORDER BY id DESC",
        )?;
        let rows = select.query_map((room.as_str(), doc.as_str()), |row| {
            let number = |at: usize| row.get::<_, i64>(at).map(|n| u64::try_from(n).unwrap_or(0));
            Ok(super::VersionInfo { version: number(0)?, ts: number(1)?, bytes: number(2)? })
        })?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }

    fn version(
        &mut self,
        room: &RoomName,
        doc: &RoomName,
        version: u64,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        let id = i64::try_from(version).unwrap_or(i64::MAX);
        let state = self
            .db
            .prepare_cached(
                "SELECT state FROM doc_versions WHERE room = ?1 AND doc = ?2 AND id = ?3",
            )?
            .query_row((room.as_str(), doc.as_str(), id), |row| row.get(0))
            .optional()?;
        Ok(state)
    }

    fn load(&mut self, retention: &Retention, now_ms: u64) -> Result<Snapshot, StoreError> {
        self.prune(retention, now_ms)?;
        let mut sessions = Vec::new();
        let mut query = self.db.prepare("SELECT token, nick FROM sessions ORDER BY token")?;
        let rows =
            query.query_map([], |row| Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?)))?;
        for row in rows {
            let (token, nick) = row?;
            match (SessionToken::parse(&token), Nick::parse(&nick)) {
                (Ok(token), Ok(nick)) => sessions.push((token, nick)),
                _ => warn!("skipping a stored session that does not parse"),
            }
        }
        let cutoff = i64::try_from(retention.recent_cutoff_ms(now_ms)).unwrap_or(i64::MAX);
        let limit = i64::try_from(retention.recent_max).unwrap_or(i64::MAX);
        let mut query = self.db.prepare(&format!(
            "SELECT {MESSAGE_COLUMNS}, room FROM messages
             WHERE client_id IS NOT NULL AND ts >= ?1 ORDER BY ts DESC LIMIT ?2"
        ))?;
        let rows = query.query_map(params![cutoff, limit], |row| {
            Ok((message_row(row)?, row.get::<_, String>(13)?))
        })?;
        let mut recent = Vec::new();
        for row in rows {
            let (message, room) = row?;
            match RoomName::parse_stored(&room).ok().and_then(|room| message.into_message(&room)) {
                Some(message) => recent.push(message),
                None => warn!(%room, "skipping a stored message that does not parse"),
            }
        }
        recent.reverse();
        let mut query = self.db.prepare(
            "SELECT name, nick_a, nick_b, last_seq, last_ts FROM conversations ORDER BY name",
        )?;
        let rows = query.query_map([], |row| {
            Ok((
                row.get::<_, String>(0)?,
                row.get::<_, String>(1)?,
                row.get::<_, String>(2)?,
                row.get::<_, i64>(3)?,
                row.get::<_, i64>(4)?,
            ))
        })?;
        let mut conversations = Vec::new();
        for row in rows {
            let (name, a, b, last_seq, last_ts) = row?;
            let parsed = (RoomName::parse_stored(&name), Nick::parse(&a), Nick::parse(&b));
            let (Ok(name), Ok(a), Ok(b)) = parsed else {
                warn!("skipping a stored conversation that does not parse");
                continue;
            };
            conversations.push(Conversation {
                name,
                nicks: [a, b],
                last_seq: u64::try_from(last_seq).unwrap_or(0),
                last_ts: Timestamp::from_unix_millis(u64::try_from(last_ts).unwrap_or(0)),
            });
        }
        Ok(Snapshot { sessions, recent, conversations })
    }

    fn room(
        &mut self,
        room: &RoomName,
        retention: &Retention,
        now_ms: u64,
    ) -> Result<Option<RoomHistory>, StoreError> {
        let found: Option<(i64, Option<String>)> = self
            .db
            .prepare_cached("SELECT last_seq, topic FROM rooms WHERE name = ?1")?
            .query_row([room.as_str()], |row| Ok((row.get(0)?, row.get(1)?)))
            .optional()?;
        let Some((last_seq, topic)) = found else {
            return Ok(None);
        };
        let cutoff =
            retention.cutoff_ms(now_ms).map_or(0, |c| i64::try_from(c).unwrap_or(i64::MAX));
        let limit = i64::try_from(retention.per_room).unwrap_or(i64::MAX);
        let mut query = self.db.prepare_cached(&format!(
            "SELECT {MESSAGE_COLUMNS} FROM messages
             WHERE room = ?1 AND ts >= ?2 ORDER BY seq DESC LIMIT ?3"
        ))?;
        let rows = query.query_map(params![room.as_str(), cutoff, limit], message_row)?;
        let mut messages = Vec::new();
        for row in rows {
            match row?.into_message(room) {
                Some(message) => messages.push(message),
                None => warn!(%room, "skipping a stored message that does not parse"),
            }
        }
        messages.reverse();
        let mut docs = Vec::new();
        let mut query = self.db.prepare_cached(
            "SELECT name, title, edited_by, edited_at FROM docs WHERE room = ?1 ORDER BY name",
        )?;
        let rows = query.query_map([room.as_str()], |row| {
            Ok((
                row.get::<_, String>(0)?,
                row.get::<_, String>(1)?,
                row.get::<_, String>(2)?,
                row.get::<_, i64>(3)?,
            ))
        })?;
        for row in rows {
            let (name, title, by, at) = row?;
            match (RoomName::parse(&name), Nick::parse(&by)) {
                (Ok(name), Ok(edited_by)) => docs.push(DocEntry {
                    name,
                    title: Arc::from(title),
                    edited_by,
                    edited_at: Timestamp::from_unix_millis(u64::try_from(at).unwrap_or(0)),
                }),
                _ => warn!(%room, "skipping a stored document entry that does not parse"),
            }
        }
        let last_seq = u64::try_from(last_seq).unwrap_or(0);
        Ok(Some(RoomHistory {
            last_seq,
            messages,
            topic: topic.map(Arc::from),
            docs,
            remote: Vec::new(),
        }))
    }

    fn commit(&mut self, records: &[Record]) -> Result<(), StoreError> {
        let tx = self.db.transaction()?;
        write_records(&tx, records)?;
        tx.commit()?;
        Ok(())
    }

    fn commit_with_docs(
        &mut self,
        records: &[Record],
        updates: &[super::DocUpdate],
    ) -> Result<(), StoreError> {
        let tx = self.db.transaction()?;
        write_records(&tx, records)?;
        write_updates(&tx, updates)?;
        tx.commit()?;
        Ok(())
    }

    fn prune(&mut self, retention: &Retention, now_ms: u64) -> Result<bool, StoreError> {
        let tx = self.db.transaction()?;
        let keep = i64::try_from(retention.per_room).unwrap_or(i64::MAX);
        let mut files_went = false;
        {
            let mut by_count = tx.prepare(
                "DELETE FROM messages WHERE seq <= (SELECT last_seq FROM rooms WHERE name = messages.room) - ?1
                 RETURNING file_id",
            )?;
            let mut rows = by_count.query(params![keep])?;
            while let Some(row) = rows.next()? {
                files_went |= row.get::<_, Option<String>>(0)?.is_some();
            }
        }
        if let Some(cutoff) = retention.cutoff_ms(now_ms) {
            let mut by_age = tx.prepare("DELETE FROM messages WHERE ts < ?1 RETURNING file_id")?;
            let mut rows = by_age.query(params![i64::try_from(cutoff).unwrap_or(i64::MAX)])?;
            while let Some(row) = rows.next()? {
                files_went |= row.get::<_, Option<String>>(0)?.is_some();
            }
        }
        tx.commit()?;
        Ok(files_went)
    }

    fn file_rooms(&mut self, file: &str) -> Result<Vec<(RoomName, Attachment)>, StoreError> {
        let mut query = self.db.prepare_cached(
            "SELECT room, file_name, file_mime, file_size FROM messages WHERE file_id = ?1",
        )?;
        let rows = query.query_map([file], |row| {
            Ok((
                row.get::<_, String>(0)?,
                row.get::<_, String>(1)?,
                row.get::<_, String>(2)?,
                row.get::<_, i64>(3)?,
            ))
        })?;
        let mut found = Vec::new();
        for row in rows {
            let (room, name, mime, size) = row?;
            let (Ok(room), Ok(size)) = (RoomName::parse(&room), u64::try_from(size)) else {
                continue;
            };
            let attachment =
                Attachment { id: file.into(), name: name.into(), mime: mime.into(), size };
            found.push((room, attachment));
        }
        Ok(found)
    }

    fn files(&mut self) -> Result<BTreeSet<String>, StoreError> {
        let mut query = self.db.prepare_cached(CARRIED_FILES)?;
        let rows = query.query_map([], |row| row.get::<_, String>(0))?;
        Ok(rows.collect::<Result<_, _>>()?)
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
    /// `kind` and `target`.
    kind: (i64, Option<i64>),
}

impl StoredMessage {
    fn into_message(self, room: &RoomName) -> Option<Message> {
        let target = || self.kind.1.and_then(|seq| u64::try_from(seq).ok());
        let kind = match self.kind.0 {
            SAID => MessageKind::Said,
            EDITED => MessageKind::Edited,
            DELETED => MessageKind::Deleted,
            EDIT => MessageKind::Edit(target()?),
            DELETE => MessageKind::Delete(target()?),
            _ => return None,
        };
        Some(Message {
            kind,
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
