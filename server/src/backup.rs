//! `chat-server backup` and `chat-server restore`: a consistent copy of a
//! data directory, taken while the server runs, and bringing one back.
//!
//! The database is copied with SQLite's online backup API in one step: one
//! read transaction, so the copy is the database as of one commit, while
//! the server goes on writing (WAL: a reader never holds a writer up).
//! Then the files the copied messages carry are copied: files are named by
//! their content and never change, and one is deleted only after no
//! message carries it, so every file the copy names is there, unless its
//! message was deleted (or aged out) between the two steps; such files are
//! reported. The copy is made under `OUT.partial` and renamed to `OUT` when
//! whole, so an interrupted backup never looks like one.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail, ensure};
use rusqlite::backup::{Backup, StepResult};
use rusqlite::{Connection, OpenFlags};

/// The database's file in a data directory (and in a backup).
const DB: &str = "chat.db";

/// What a backup (or a restore) copied.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Copied {
    /// The database's size.
    pub db_bytes: u64,
    /// Files copied.
    pub files: usize,
    /// Their bytes.
    pub file_bytes: u64,
    /// Files the copied messages carry that were gone (their messages
    /// deleted or aged out during the backup).
    pub missing: Vec<String>,
}

/// Backs up the store in `data_dir` (its files in `files_dir`) to `out`, a
/// directory that must not exist yet: `out/chat.db` and `out/files/`.
///
/// # Errors
/// No store in `data_dir`, `out` exists, the database cannot be read, or a
/// copy cannot be written.
pub fn backup(data_dir: &Path, files_dir: &Path, out: &Path) -> anyhow::Result<Copied> {
    let source = data_dir.join(DB);
    ensure!(source.is_file(), "no store in {} (no {DB})", data_dir.display());
    ensure!(!out.exists(), "{} exists already: name a new directory", out.display());
    let partial = partial(out);
    if partial.exists() {
        // What an interrupted backup left.
        std::fs::remove_dir_all(&partial)
            .with_context(|| format!("removing {}", partial.display()))?;
    }
    std::fs::create_dir_all(&partial).with_context(|| format!("creating {}", partial.display()))?;
    let from = Connection::open_with_flags(&source, OpenFlags::SQLITE_OPEN_READ_ONLY)
        .with_context(|| format!("opening {}", source.display()))?;
    from.busy_timeout(Duration::from_secs(5))?;
    let mut to = Connection::open(partial.join(DB))?;
    copy_database(&from, &mut to)?;
    let ids = carried_files(&to)?;
    drop(to);
    let mut copied = Copied { db_bytes: size(&partial.join(DB)), ..Copied::default() };
    copy_files(&ids, files_dir, &partial.join("files"), &mut copied)?;
    sync_dir(&partial)?;
    std::fs::rename(&partial, out).with_context(|| format!("naming {}", out.display()))?;
    if let Some(parent) = out.parent() {
        sync_dir(parent)?;
    }
    Ok(copied)
}

/// Brings the backup in `from` back into `data_dir` (its files into
/// `files_dir`), which must hold no store.
///
/// # Errors
/// `from` is not a whole backup, its database is damaged, `data_dir` holds
/// a store, or a copy cannot be written.
pub fn restore(from: &Path, data_dir: &Path, files_dir: &Path) -> anyhow::Result<Copied> {
    let source = from.join(DB);
    ensure!(source.is_file(), "{} is not a backup (no {DB})", from.display());
    let target = data_dir.join(DB);
    ensure!(
        !target.exists(),
        "{} holds a store already: restore into a new directory, or move it away first",
        data_dir.display()
    );
    let db = Connection::open_with_flags(&source, OpenFlags::SQLITE_OPEN_READ_ONLY)
        .with_context(|| format!("opening {}", source.display()))?;
    check(&db).with_context(|| format!("{} is damaged", source.display()))?;
    let ids = carried_files(&db)?;
    drop(db);
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("creating {}", data_dir.display()))?;
    let mut copied = Copied::default();
    copy_files(&ids, &from.join("files"), files_dir, &mut copied)?;
    // The database last: a directory with a store is a whole one.
    let partial = data_dir.join(format!("{DB}.partial"));
    copied.db_bytes = std::fs::copy(&source, &partial)
        .with_context(|| format!("copying {}", source.display()))?;
    std::fs::File::open(&partial)?.sync_all()?;
    std::fs::rename(&partial, &target)?;
    sync_dir(data_dir)?;
    Ok(copied)
}

/// The whole database in one step: one read transaction, one commit's
/// state. Retried while the source is locked for a moment.
fn copy_database(from: &Connection, to: &mut Connection) -> anyhow::Result<()> {
    let backup = Backup::new(from, to)?;
    for _ in 0..100 {
        match backup.step(-1)? {
            StepResult::Done => {
                drop(backup);
                // One self-contained file: nothing left in a WAL beside it.
                let mode: String =
                    to.query_row("PRAGMA journal_mode=DELETE", [], |row| row.get(0))?;
                ensure!(mode.eq_ignore_ascii_case("delete"), "the copy stayed in {mode} mode");
                return check(to);
            }
            StepResult::More | StepResult::Busy | StepResult::Locked => {
                std::thread::sleep(Duration::from_millis(50));
            }
            _ => bail!("the database copy stopped for a reason this build does not know"),
        }
    }
    bail!("the database stayed locked; try again")
}

/// SQLite's own check of a database.
fn check(db: &Connection) -> anyhow::Result<()> {
    let verdict: String = db.query_row("PRAGMA integrity_check", [], |row| row.get(0))?;
    ensure!(verdict == "ok", "integrity check: {verdict}");
    Ok(())
}

/// The ids of the files the database's messages carry.
fn carried_files(db: &Connection) -> anyhow::Result<BTreeSet<String>> {
    let mut query = db.prepare(crate::store::CARRIED_FILES)?;
    let ids = query.query_map([], |row| row.get::<_, String>(0))?;
    Ok(ids.collect::<Result<_, _>>()?)
}

/// Copies the files named `ids` from the store's layout under `from` to
/// the same under `to`.
fn copy_files(
    ids: &BTreeSet<String>,
    from: &Path,
    to: &Path,
    copied: &mut Copied,
) -> anyhow::Result<()> {
    for id in ids {
        let paths = crate::files::stored_path(from, id).zip(crate::files::stored_path(to, id));
        let Some((source, target)) = paths.filter(|(source, _)| source.is_file()) else {
            copied.missing.push(id.clone());
            continue;
        };
        if let Some(dir) = target.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        copied.file_bytes += std::fs::copy(&source, &target)
            .with_context(|| format!("copying {}", source.display()))?;
        std::fs::File::open(&target)?.sync_all()?;
        copied.files += 1;
    }
    if to.is_dir() {
        sync_dir(to)?;
    }
    Ok(())
}

/// `out.partial`, beside `out`.
fn partial(out: &Path) -> PathBuf {
    let mut name = out.file_name().map(std::ffi::OsStr::to_os_string).unwrap_or_default();
    name.push(".partial");
    out.with_file_name(name)
}

fn size(path: &Path) -> u64 {
    std::fs::metadata(path).map_or(0, |meta| meta.len())
}

/// Makes a directory's entries (a file created or renamed in it) durable.
fn sync_dir(dir: &Path) -> anyhow::Result<()> {
    let dir = if dir.as_os_str().is_empty() { Path::new(".") } else { dir };
    std::fs::File::open(dir)
        .and_then(|dir| dir.sync_all())
        .with_context(|| format!("syncing {}", dir.display()))
}
