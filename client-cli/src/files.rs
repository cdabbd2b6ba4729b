//! File transfer for the client: opening a file to upload (its name and
//! media type as announced), and downloading a file seen in a message to
//! disk without ever leaving half a file behind.
//!
//! The upload protocol itself (announce, wait for `upload_ready`, paced
//! parts) is the session's (`session.rs`); this module only does the IO.

use std::path::{Path, PathBuf};

use anyhow::Context;
use chat_transport::TransportConfig;

use crate::render;
use crate::session::Upload;

/// A file opened for an upload.
#[derive(Debug)]
pub struct Opened {
    pub file: tokio::fs::File,
    /// What to announce, but for the room and the driver's file id.
    pub name: String,
    pub mime: String,
    pub size: u64,
}

impl Opened {
    /// The upload to hand the session.
    pub fn upload(&self, file: crate::session::FileId, room: String) -> Upload {
        Upload { file, room, name: self.name.clone(), mime: self.mime.clone(), size: self.size }
    }
}

/// Opens `path` for an upload.
///
/// # Errors
/// The file cannot be opened or its size read: `cannot read PATH: why`.
pub async fn open(path: &Path) -> Result<Opened, String> {
    let cannot = |err: std::io::Error| format!("cannot read {}: {err}", path.display());
    let file = tokio::fs::File::open(path).await.map_err(cannot)?;
    let size = file.metadata().await.map_err(cannot)?.len();
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let mime = mime_of(&name).to_owned();
    Ok(Opened { file, name, mime, size })
}

/// Downloads `file` (seen in a message) with the session's `token`, and
/// says how it went, in one line.
pub async fn download(
    server: &str,
    transport: &TransportConfig,
    token: &str,
    file: &chat_protocol::Attachment,
    to: Option<PathBuf>,
) -> Result<String, String> {
    let name = render::clean(&file.name);
    match save(server, transport, token, file, to).await {
        Ok(path) => Ok(format!("saved {name} ({}) to {}", render::size(file.size), path.display())),
        Err(err) => Err(format!("downloading {name}: {err:#}")),
    }
}

/// Where a download goes: `to` (or into it, if it is a directory), else
/// the current directory; never over an existing file.
fn destination(name: &str, to: Option<PathBuf>) -> PathBuf {
    // The name came from someone else: no directories, no hidden files.
    let base: String = name
        .rsplit(['/', '\\'])
        .next()
        .unwrap_or_default()
        .chars()
        .filter(|c| !c.is_control())
        .collect();
    let base = base.trim_start_matches('.');
    let base = if base.is_empty() { "download" } else { base };
    let path = match to {
        Some(to) if !to.is_dir() => return to,
        Some(dir) => dir.join(base),
        None => PathBuf::from(base),
    };
    if !path.exists() {
        return path;
    }
    let (stem, ext) = match base.rsplit_once('.') {
        Some((stem, ext)) if !stem.is_empty() => (stem.to_owned(), format!(".{ext}")),
        _ => (base.to_owned(), String::new()),
    };
    (1..)
        .map(|n| path.with_file_name(format!("{stem} ({n}){ext}")))
        .find(|candidate| !candidate.exists())
        .unwrap_or(path)
}

/// Fetches a file into a temporary name beside its destination, then
/// renames it: a failed download leaves nothing half-written.
async fn save(
    server: &str,
    transport: &TransportConfig,
    token: &str,
    file: &chat_protocol::Attachment,
    to: Option<PathBuf>,
) -> anyhow::Result<PathBuf> {
    let path = destination(&file.name, to);
    let partial = path.with_file_name(format!(
        ".{}.part",
        path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
    ));
    let mut out = tokio::fs::File::create(&partial)
        .await
        .with_context(|| format!("creating {}", partial.display()))?;
    let fetched =
        chat_transport::fetch(server, &format!("/files/{}", file.id), token, transport, &mut out)
            .await;
    drop(out);
    if let Err(err) = fetched {
        let _ = tokio::fs::remove_file(&partial).await;
        return Err(err.into());
    }
    tokio::fs::rename(&partial, &path)
        .await
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}

/// The media type announced for a file, from its extension.
fn mime_of(name: &str) -> &'static str {
    let ext = name.rsplit_once('.').map(|(_, ext)| ext.to_ascii_lowercase()).unwrap_or_default();
    match ext.as_str() {
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "svg" => "image/svg+xml",
        "pdf" => "application/pdf",
        "txt" | "log" => "text/plain",
        "md" => "text/markdown",
        "json" => "application/json",
        "zip" => "application/zip",
        "mp3" => "audio/mpeg",
        "ogg" | "oga" => "audio/ogg",
        "wav" => "audio/wav",
        "mp4" => "video/mp4",
        "webm" => "video/webm",
        _ => "application/octet-stream",
    }
}
