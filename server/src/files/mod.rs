//! Uploaded files: streamed to disk as their binary frames arrive
//! (`receive.rs`, the upload protocol of one connection), staged until the
//! message that carries them is stored (`staged.rs`), kept
//! content-addressed (named by their SHA-256) under the data directory,
//! and served at `GET /files/{id}` only to a session that can see a message
//! they came with (`serve.rs`).

mod receive;
mod serve;
mod staged;

use std::path::PathBuf;

use chat_protocol::ErrorCode;

pub(crate) use self::receive::{Announcement, Next, Receiver};
pub(crate) use self::serve::server;
pub(crate) use self::staged::Staged;

/// Where uploads go and how large they may be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Uploads {
    /// The directory files are kept in (`<data-dir>/files`); partial
    /// uploads are under its `tmp/`.
    pub dir: PathBuf,
    /// The largest file, in bytes.
    pub max_bytes: u64,
    /// The most bytes all stored files may take together; an upload that
    /// would pass it is refused with `quota_exceeded`. Default (for the
    /// binary) 4 GiB.
    pub max_total_bytes: u64,
    /// Free space the file system must keep: an upload that would leave
    /// less is refused with `unavailable`, while chat goes on (messages
    /// need far less, and the database must always have room to commit).
    /// Default (for the binary) 512 MiB.
    pub min_free_bytes: u64,
}

/// A refusal, as the `error` frame will say it.
pub(crate) type Refusal = (ErrorCode, String);

fn refusal(code: ErrorCode, message: impl Into<String>) -> Refusal {
    (code, message.into())
}

impl Uploads {
    /// Creates the directories and removes partial uploads a previous run
    /// left behind.
    ///
    /// # Errors
    /// The directories cannot be created.
    pub fn prepare(&self) -> std::io::Result<()> {
        let tmp = self.dir.join("tmp");
        std::fs::create_dir_all(&tmp)?;
        for entry in std::fs::read_dir(&tmp)?.flatten() {
            let _ = std::fs::remove_file(entry.path());
        }
        Ok(())
    }

    /// Whether an upload of `size` bytes leaves the file system the free
    /// space it must keep.
    ///
    /// # Errors
    /// The file system cannot say how full it is.
    pub(crate) fn has_room_for(&self, size: u64) -> std::io::Result<bool> {
        let stats = rustix::fs::statvfs(&self.dir)?;
        let free = stats.f_bavail.saturating_mul(stats.f_frsize);
        Ok(free.saturating_sub(size) >= self.min_free_bytes)
    }

    /// The stored file with this id; `None` for anything that is not a
    /// SHA-256 in lowercase hex (so no path can be smuggled in).
    pub(crate) fn path(&self, id: &str) -> Option<PathBuf> {
        stored_path(&self.dir, id)
    }
}

/// Where the file `id` is kept under `dir`: a directory per two first hex
/// digits. `None` for anything but an id the store makes (64 lowercase hex
/// digits), so no id can name a path elsewhere.
pub fn stored_path(dir: &std::path::Path, id: &str) -> Option<PathBuf> {
    let valid =
        id.len() == 64 && id.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    let prefix = id.get(..2).filter(|_| valid)?;
    Some(dir.join(prefix).join(id))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn uploads() -> Uploads {
        Uploads {
            dir: PathBuf::from("/srv/files"),
            max_bytes: 100,
            max_total_bytes: 1000,
            min_free_bytes: 0,
        }
    }

    #[test]
    fn only_hex_sha256_ids_name_files() {
        let id = "ab".repeat(32);
        assert_eq!(uploads().path(&id), Some(PathBuf::from(format!("/srv/files/ab/{id}"))));
        for bad in ["", "../x", &"AB".repeat(32), &"ab".repeat(31), &format!("{}/", "a".repeat(63))]
        {
            assert_eq!(uploads().path(bad), None, "{bad}");
        }
    }
}
