//! Uploaded files in cluster mode: in a directory every node shares, each
//! noted in Redis with the rooms whose messages carry it and the newest
//! such message of each (`chat:file:{id}`, expiring with the history's
//! maximum age; a room's part goes when that message is deleted). Every
//! node sweeps the directory now and then: the rooms whose logs no longer
//! keep the message are forgotten, and a file no note names any more (its
//! messages aged out, were trimmed or deleted) goes, unless it was placed
//! moments ago (its note may not be written yet); what the rest take is
//! counted for the quota.

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use redis::RedisResult;
use tracing::info;

use super::RoomLog;

/// A file in the shared directory.
#[derive(Debug)]
struct Found {
    id: String,
    path: PathBuf,
    len: u64,
    young: bool,
}

/// Sweeps `dir` against what `log`'s Redis says, sparing files younger
/// than `young` (their message may still be on its way to Redis); the
/// bytes the files left take.
///
/// # Errors
/// Redis failed (nothing is deleted then).
pub async fn sweep(log: &RoomLog, dir: PathBuf, young: Duration) -> RedisResult<u64> {
    let found = tokio::task::spawn_blocking(move || list(&dir, young)).await.unwrap_or_default();
    let mut kept = 0u64;
    let mut gone = Vec::new();
    for chunk in found.chunks(512) {
        let ids: Vec<&str> = chunk.iter().map(|file| file.id.as_str()).collect();
        log.forget_gone_files(&ids).await?;
        let noted = log.files_noted(&ids).await?;
        for (file, noted) in chunk.iter().zip(noted) {
            if noted || file.young {
                kept += file.len;
            } else {
                gone.push(file.path.clone());
            }
        }
    }
    if !gone.is_empty() {
        let removed = gone.len();
        tokio::task::spawn_blocking(move || {
            for path in gone {
                // Another node may have swept it first.
                let _ = std::fs::remove_file(path);
            }
        })
        .await
        .unwrap_or_default();
        info!(removed, "deleted files no message carries any more");
    }
    Ok(kept)
}

/// The files of `dir` (in its shards, `tmp` aside).
fn list(dir: &std::path::Path, young: Duration) -> Vec<Found> {
    let now = SystemTime::now();
    let mut found = Vec::new();
    let shards = std::fs::read_dir(dir).into_iter().flatten().flatten();
    for shard in shards.filter(|entry| entry.file_name() != "tmp") {
        for entry in std::fs::read_dir(shard.path()).into_iter().flatten().flatten() {
            let Ok(meta) = entry.metadata() else { continue };
            if !meta.is_file() {
                continue;
            }
            let age = meta.modified().ok().and_then(|at| now.duration_since(at).ok());
            found.push(Found {
                id: entry.file_name().to_string_lossy().into_owned(),
                path: entry.path(),
                len: meta.len(),
                young: age.is_none_or(|age| age < young),
            });
        }
    }
    found
}
