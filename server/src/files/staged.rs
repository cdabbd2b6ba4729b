//! A complete upload between its last byte and its message being stored.

use std::path::PathBuf;

/// A complete, checked upload waiting for its message: the storage thread
/// puts it in place in the same step that stores the message, and if the
/// message is refused or cannot be stored, the file goes (dropping it
/// deletes it). So no file is ever kept that no message carries.
#[derive(Debug)]
pub(crate) struct Staged {
    temp: PathBuf,
    path: PathBuf,
    size: u64,
    /// It is at `path` now.
    placed: bool,
    /// No file had these bytes before this one was placed.
    placed_new: bool,
    /// Its message is stored: it stays.
    kept: bool,
}

impl Staged {
    /// The checked file at `temp`, to go to `path`.
    pub(super) fn new(temp: PathBuf, path: PathBuf, size: u64) -> Self {
        Self { temp, path, size, placed: false, placed_new: false, kept: false }
    }

    /// Puts the file in place (the same bytes stored already are kept as
    /// they are).
    ///
    /// # Errors
    /// The file cannot be moved.
    pub(crate) fn place(&mut self) -> std::io::Result<()> {
        if self.placed {
            return Ok(());
        }
        if let Some(parent) = self.path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        if self.path.exists() {
            let _ = std::fs::remove_file(&self.temp);
            self.placed_new = false;
        } else {
            std::fs::rename(&self.temp, &self.path)?;
            self.placed_new = true;
        }
        self.placed = true;
        Ok(())
    }

    /// Takes a file this upload placed back out (its message was not
    /// stored), so a later try can place it again.
    pub(crate) fn unplace(&mut self) {
        if self.placed && self.placed_new && std::fs::rename(&self.path, &self.temp).is_ok() {
            self.placed = false;
        }
    }

    /// The file's size in bytes.
    pub(crate) fn size(&self) -> u64 {
        self.size
    }

    /// Its message is stored: the file stays. Returns the bytes it added
    /// to the store.
    pub(crate) fn keep(&mut self) -> u64 {
        self.kept = true;
        if self.placed_new { self.size } else { 0 }
    }
}

impl Drop for Staged {
    fn drop(&mut self) {
        if self.kept {
            return;
        }
        if !self.placed {
            let _ = std::fs::remove_file(&self.temp);
        } else if self.placed_new {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}
