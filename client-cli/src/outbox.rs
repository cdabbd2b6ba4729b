//! The durable outbox: messages not yet acknowledged by the server, kept on
//! disk so that what was typed while disconnected survives the client
//! itself being closed or killed.
//!
//! One JSON file per server and nick under the XDG data directory
//! (`$XDG_DATA_HOME/chat/outbox/`, by default `~/.local/share/chat/outbox/`)
//! holds the session token, the rooms joined and each pending message as
//! the client frame it will be sent as, id included. The next client for
//! the same server and nick says `hello` with that session token and sends
//! the messages with their original ids, so the server's deduplication
//! makes delivery exactly-once even if the first attempt did get through.
//!
//! Every change is written to a temporary file, synced, and renamed over
//! the old one, so a crash leaves either the old outbox or the new one. A
//! lock on a file beside it keeps two clients from sending the same
//! outbox.

use std::fs::{self, File, TryLockError};
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;
use chat_protocol::{ClientFrame, ClientMessage, decode_client, encode_client};
use serde::{Deserialize, Serialize};

/// What the outbox holds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Saved {
    /// The session the messages were sent (or meant to be sent) in.
    pub session: Option<String>,
    /// The rooms joined, in order.
    pub rooms: Vec<String>,
    /// Messages not yet acknowledged, oldest first, with their ids.
    pub pending: Vec<(String, ClientFrame)>,
}

/// The file as written: messages as encoded client frames, so the file
/// holds exactly what will go on the wire.
#[derive(Debug, Default, Serialize, Deserialize)]
struct File1 {
    version: u32,
    server: String,
    session: Option<String>,
    #[serde(default)]
    rooms: Vec<String>,
    #[serde(default)]
    pending: Vec<String>,
}

/// An open outbox, locked for this process.
#[derive(Debug)]
pub struct Outbox {
    path: PathBuf,
    server: String,
    /// Held for the lock; released when the outbox is dropped.
    _lock: File,
}

/// Where outboxes live: `$XDG_DATA_HOME/chat/outbox`, or
/// `~/.local/share/chat/outbox`.
pub fn directory() -> Option<PathBuf> {
    let data = std::env::var_os("XDG_DATA_HOME")
        .filter(|dir| !dir.is_empty())
        .map(PathBuf::from)
        .or_else(|| {
        std::env::var_os("HOME").map(|home| Path::new(&home).join(".local/share"))
    })?;
    Some(data.join("chat").join("outbox"))
}

/// The file name for a server and nick: readable, and safe on any file
/// system.
fn file_name(server: &str, nick: Option<&str>) -> String {
    let key = format!("{server} {}", nick.unwrap_or("-"));
    let mut name: String = key
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '.' { c } else { '_' })
        .take(120)
        .collect();
    // Names that differ only in replaced characters stay apart.
    let hash = key.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
    });
    name.push_str(&format!("-{hash:016x}"));
    name
}

impl Outbox {
    /// Opens (creating if needed) the outbox for `server` and `nick` in
    /// `dir`. `Ok(None)` if another client holds it.
    ///
    /// # Errors
    /// The directory cannot be created or the lock file opened.
    pub fn open(dir: &Path, server: &str, nick: Option<&str>) -> anyhow::Result<Option<Self>> {
        fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let name = file_name(server, nick);
        let lock_path = dir.join(format!("{name}.lock"));
        let lock = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .with_context(|| format!("opening {}", lock_path.display()))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => return Ok(None),
            Err(TryLockError::Error(err)) => {
                return Err(err).with_context(|| format!("locking {}", lock_path.display()));
            }
        }
        Ok(Some(Self {
            path: dir.join(format!("{name}.json")),
            server: server.to_owned(),
            _lock: lock,
        }))
    }

    /// The file the outbox is kept in.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// What the outbox holds; empty if there is no file yet.
    ///
    /// # Errors
    /// The file cannot be read or is not an outbox (it is left alone, so
    /// nothing in it is lost by overwriting).
    pub fn load(&self) -> anyhow::Result<Saved> {
        let text = match fs::read_to_string(&self.path) {
            Ok(text) => text,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(Saved::default()),
            Err(err) => {
                return Err(err).with_context(|| format!("reading {}", self.path.display()));
            }
        };
        let file: File1 = serde_json::from_str(&text)
            .with_context(|| format!("{} is not a chat outbox", self.path.display()))?;
        let mut pending = Vec::with_capacity(file.pending.len());
        for line in &file.pending {
            match decode_client(line) {
                Ok(ClientMessage { id: Some(id), frame }) => pending.push((id, frame)),
                Ok(ClientMessage { id: None, .. }) => {
                    anyhow::bail!("{}: a queued message has no id", self.path.display())
                }
                Err(err) => anyhow::bail!(
                    "{}: a queued message cannot be read: {}",
                    self.path.display(),
                    err.message
                ),
            }
        }
        Ok(Saved { session: file.session, rooms: file.rooms, pending })
    }

    /// Replaces what the outbox holds, durably: once this returns, a crash
    /// or power cut keeps it.
    ///
    /// # Errors
    /// The file cannot be written.
    pub fn save(&self, saved: &Saved) -> anyhow::Result<()> {
        let file = File1 {
            version: 1,
            server: self.server.clone(),
            session: saved.session.clone(),
            rooms: saved.rooms.clone(),
            pending: saved
                .pending
                .iter()
                .map(|(id, frame)| {
                    encode_client(&ClientMessage { id: Some(id.clone()), frame: frame.clone() })
                })
                .collect(),
        };
        let text = serde_json::to_string_pretty(&file)?;
        let temporary = self.path.with_extension("json.tmp");
        let mut out =
            File::create(&temporary).with_context(|| format!("writing {}", temporary.display()))?;
        out.write_all(text.as_bytes())?;
        out.sync_all()?;
        drop(out);
        fs::rename(&temporary, &self.path)
            .with_context(|| format!("replacing {}", self.path.display()))?;
        if let Some(dir) = self.path.parent() {
            // The rename itself is durable once the directory is synced.
            File::open(dir).and_then(|dir| dir.sync_all()).ok();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn say(text: &str) -> ClientFrame {
        ClientFrame::Say { room: "lobby".into(), text: text.into(), action: false }
    }

    #[test]
    fn what_is_saved_is_loaded_by_the_next_client() {
        let dir = tempfile::tempdir().unwrap();
        let saved = Saved {
            session: Some("tok".into()),
            rooms: vec!["lobby".into(), "dev".into()],
            pending: vec![
                ("a-1".into(), say("first")),
                (
                    "a-2".into(),
                    ClientFrame::Dm { to: "bob".into(), conversation: None, text: "psst".into() },
                ),
            ],
        };
        {
            let outbox = Outbox::open(dir.path(), "ws://h/ws", Some("alice")).unwrap().unwrap();
            assert_eq!(outbox.load().unwrap(), Saved::default(), "nothing before the first save");
            outbox.save(&saved).unwrap();
        }
        let outbox = Outbox::open(dir.path(), "ws://h/ws", Some("alice")).unwrap().unwrap();
        assert_eq!(outbox.load().unwrap(), saved);
        // Another nick, or another server, has its own outbox.
        let other = Outbox::open(dir.path(), "ws://h/ws", Some("bob")).unwrap().unwrap();
        assert_eq!(other.load().unwrap(), Saved::default());
        let other = Outbox::open(dir.path(), "ws://g/ws", Some("alice")).unwrap().unwrap();
        assert_eq!(other.load().unwrap(), Saved::default());
    }

    #[test]
    fn a_second_client_cannot_take_an_outbox_in_use() {
        let dir = tempfile::tempdir().unwrap();
        let first = Outbox::open(dir.path(), "ws://h/ws", None).unwrap();
        assert!(first.is_some());
        assert!(Outbox::open(dir.path(), "ws://h/ws", None).unwrap().is_none());
        drop(first);
        assert!(Outbox::open(dir.path(), "ws://h/ws", None).unwrap().is_some());
    }

    #[test]
    fn a_damaged_outbox_is_reported_not_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let outbox = Outbox::open(dir.path(), "ws://h/ws", Some("a")).unwrap().unwrap();
        fs::write(outbox.path(), "{not json").unwrap();
        let err = outbox.load().unwrap_err();
        assert!(format!("{err:#}").contains("is not a chat outbox"), "{err:#}");
        let bad_frame =
            r#"{"version":1,"server":"ws://h/ws","session":null,"pending":["{\"type\":\"say\"}"]}"#;
        fs::write(outbox.path(), bad_frame).unwrap();
        let err = outbox.load().unwrap_err();
        assert!(format!("{err:#}").contains("cannot be read"), "{err:#}");
        assert_eq!(fs::read_to_string(outbox.path()).unwrap(), bad_frame);
    }

    #[test]
    fn file_names_are_safe_and_distinct() {
        let a = file_name("ws://h:1/ws", Some("a/b"));
        let b = file_name("ws://h:1/ws", Some("a_b"));
        assert_ne!(a, b);
        assert!(a.chars().all(|c| c.is_ascii_alphanumeric() || "-._".contains(c)), "{a}");
    }
}
