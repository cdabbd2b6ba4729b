//! Uploaded files: streamed to disk as their binary frames arrive, stored
//! content-addressed (named by their SHA-256) under the data directory, and
//! served at `GET /files/{id}` only to a session that can see a message
//! they came with.

use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;

use chat_core::{Attachment, SessionToken};
use chat_protocol::ErrorCode;
use chat_transport::http::StatusCode;
use chat_transport::{Dynamic, DynamicAnswer};
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;
use tokio::sync::{mpsc, oneshot};

use crate::hub::Input;

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

/// The longest file name kept, in characters.
const MAX_NAME_CHARS: usize = 200;

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
        let valid =
            id.len() == 64 && id.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        let prefix = id.get(..2).filter(|_| valid)?;
        Some(self.dir.join(prefix).join(id))
    }
}

/// What an `upload` frame announced, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Announced {
    pub room: String,
    pub name: String,
    pub mime: String,
    pub size: u64,
    pub text: String,
}

/// Checks an `upload` frame's fields: a name is kept without any directory
/// part or control character, a type must look like `type/subtype`, and
/// the size must be within the limit.
pub(crate) fn announce(
    uploads: &Uploads,
    room: String,
    name: &str,
    mime: &str,
    size: u64,
    text: String,
) -> Result<Announced, Refusal> {
    if size == 0 {
        return Err(refusal(ErrorCode::BadFrame, "an upload needs at least one byte"));
    }
    if size > uploads.max_bytes {
        return Err(refusal(
            ErrorCode::TooLarge,
            format!(
                "{size} bytes is over this server's upload limit of {} bytes",
                uploads.max_bytes
            ),
        ));
    }
    let base = name.rsplit(['/', '\\']).next().unwrap_or_default();
    let clean: String =
        base.chars().filter(|c| !c.is_control()).take(MAX_NAME_CHARS).collect::<String>();
    let clean = clean.trim();
    if clean.is_empty() || clean == "." || clean == ".." {
        return Err(refusal(ErrorCode::BadFrame, "the file needs a name"));
    }
    let mime = mime.trim().to_ascii_lowercase();
    let token = |part: &str| {
        !part.is_empty()
            && part.len() <= 64
            && part.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$&-^_.+".contains(&b))
    };
    match mime.split_once('/') {
        Some((kind, sub)) if token(kind) && token(sub) => {}
        _ => return Err(refusal(ErrorCode::BadFrame, "mime must be a media type like image/png")),
    }
    Ok(Announced { room, name: clean.to_owned(), mime, size, text })
}

/// The first bytes of the file types whose content is checked: an image
/// that is not what it says is refused, since pages show images inline.
fn signature_matches(mime: &str, head: &[u8]) -> bool {
    match mime {
        "image/png" => head.starts_with(b"\x89PNG\r\n\x1a\n"),
        "image/jpeg" => head.starts_with(&[0xff, 0xd8, 0xff]),
        "image/gif" => head.starts_with(b"GIF87a") || head.starts_with(b"GIF89a"),
        "image/webp" => head.starts_with(b"RIFF") && head.get(8..12) == Some(b"WEBP"),
        _ => true,
    }
}

/// Whether a type is shown in the page (inline) rather than downloaded.
fn inline(mime: &str) -> bool {
    matches!(mime, "image/png" | "image/jpeg" | "image/gif" | "image/webp")
        || mime.starts_with("audio/")
        || mime.starts_with("video/")
}

/// `Content-Disposition` for a file named `name` (RFC 6266: an ASCII
/// fallback and the UTF-8 name percent-encoded).
fn disposition(mime: &str, name: &str) -> String {
    let kind = if inline(mime) { "inline" } else { "attachment" };
    let ascii: String = name
        .chars()
        .map(|c| if c.is_ascii_graphic() && c != '"' && c != '\\' || c == ' ' { c } else { '_' })
        .collect();
    let encoded: String = name
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"!#$&+-.^_`|~".contains(&b) {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect();
    format!("{kind}; filename=\"{ascii}\"; filename*=UTF-8''{encoded}")
}

/// An upload in progress: its bytes go to a temporary file as they come.
#[derive(Debug)]
pub(crate) struct Upload {
    pub id: Option<String>,
    pub announced: Announced,
    received: u64,
    hasher: Sha256,
    /// The first bytes, for the type check.
    head: Vec<u8>,
    file: tokio::fs::File,
    temp: PathBuf,
    done: bool,
}

impl Upload {
    /// Opens the temporary file.
    pub(crate) async fn start(
        uploads: &Uploads,
        id: Option<String>,
        announced: Announced,
    ) -> Result<Self, Refusal> {
        let temp = uploads.dir.join("tmp").join(format!("{:032x}", rand::random::<u128>()));
        let file = tokio::fs::File::create(&temp).await.map_err(|err| {
            tracing::error!(%err, path = %temp.display(), "cannot create an upload file");
            refusal(ErrorCode::Unavailable, "the server cannot store files right now")
        })?;
        Ok(Self {
            id,
            announced,
            received: 0,
            hasher: Sha256::new(),
            head: Vec::new(),
            file,
            temp,
            done: false,
        })
    }

    /// Takes the next chunk; `Ok(true)` once the file is complete.
    pub(crate) async fn write(&mut self, bytes: &[u8]) -> Result<bool, Refusal> {
        let received = self.received.saturating_add(bytes.len() as u64);
        if received > self.announced.size {
            return Err(refusal(
                ErrorCode::InvalidUpload,
                format!("more than the {} bytes announced", self.announced.size),
            ));
        }
        if self.head.len() < 16 {
            let take = (16 - self.head.len()).min(bytes.len());
            self.head.extend_from_slice(bytes.get(..take).unwrap_or_default());
        }
        self.hasher.update(bytes);
        self.file.write_all(bytes).await.map_err(|err| {
            tracing::error!(%err, "cannot write an upload");
            refusal(ErrorCode::Unavailable, "the server cannot store files right now")
        })?;
        self.received = received;
        Ok(received == self.announced.size)
    }

    /// Checks the complete file and stages it under its hash: it is put in
    /// place when the message carrying it is stored, or deleted.
    pub(crate) async fn finish(
        mut self,
        uploads: &Uploads,
    ) -> Result<(Attachment, Staged), Refusal> {
        let announced = self.announced.clone();
        if !signature_matches(&announced.mime, &self.head) {
            return Err(refusal(
                ErrorCode::InvalidUpload,
                format!("the content is not {}", announced.mime),
            ));
        }
        let failed = |err: std::io::Error| {
            tracing::error!(%err, "cannot store an upload");
            refusal(ErrorCode::Unavailable, "the server cannot store files right now")
        };
        self.file.flush().await.map_err(failed)?;
        self.file.sync_all().await.map_err(failed)?;
        let id = format!("{:x}", std::mem::take(&mut self.hasher).finalize());
        let Some(path) = uploads.path(&id) else {
            return Err(refusal(ErrorCode::Unavailable, "the server cannot store files right now"));
        };
        // From here the staged file owns the temporary file.
        self.done = true;
        let staged = Staged {
            temp: self.temp.clone(),
            path,
            size: announced.size,
            placed: false,
            placed_new: false,
            kept: false,
        };
        let attachment = Attachment {
            id: id.into(),
            name: announced.name.into(),
            mime: announced.mime.into(),
            size: announced.size,
        };
        Ok((attachment, staged))
    }
}

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

impl Drop for Upload {
    fn drop(&mut self) {
        if !self.done {
            // Cancelled, refused or cut off: nothing of it is kept.
            let _ = std::fs::remove_file(&self.temp);
        }
    }
}

/// `GET /files/{id}`: the file, for a session that can see a message it
/// came with (`Authorization: Bearer <session token>`).
#[derive(Debug)]
pub(crate) struct FileServer {
    pub uploads: Option<Uploads>,
    /// Weak, so the site (alive as long as the server) does not keep the
    /// hub from stopping when the connections are gone.
    pub hub: mpsc::WeakSender<Input>,
}

fn refused(status: StatusCode, why: &'static str) -> DynamicAnswer {
    let mut headers = Vec::new();
    if status == StatusCode::UNAUTHORIZED {
        headers.push(("WWW-Authenticate", "Bearer".to_owned()));
    }
    DynamicAnswer::Refused(status, why, headers)
}

impl Dynamic for FileServer {
    fn get(
        &self,
        rest: String,
        authorization: Option<String>,
    ) -> Pin<Box<dyn Future<Output = DynamicAnswer> + Send>> {
        let uploads = self.uploads.clone();
        let hub = self.hub.clone();
        Box::pin(async move {
            let Some(uploads) = uploads else {
                return refused(StatusCode::NOT_FOUND, "this server takes no uploads\n");
            };
            let Some(path) = uploads.path(&rest) else {
                return refused(StatusCode::NOT_FOUND, "no such file\n");
            };
            let token = authorization
                .as_deref()
                .and_then(|value| value.strip_prefix("Bearer "))
                .and_then(|token| SessionToken::parse(token.trim()).ok());
            let Some(token) = token else {
                return refused(
                    StatusCode::UNAUTHORIZED,
                    "send your session token: Authorization: Bearer <session>\n",
                );
            };
            let (reply, answer) = oneshot::channel();
            let Some(hub) = hub.upgrade() else {
                return refused(StatusCode::SERVICE_UNAVAILABLE, "the server is stopping\n");
            };
            if hub.send(Input::File { token, file: rest, reply }).await.is_err() {
                return refused(StatusCode::SERVICE_UNAVAILABLE, "the server is stopping\n");
            }
            // The same answer for a file that does not exist and one this
            // session may not see: which files exist is not for outsiders.
            let Ok(Some(attachment)) = answer.await else {
                return refused(StatusCode::NOT_FOUND, "no such file in your rooms\n");
            };
            serve(&path, &attachment).await
        })
    }
}

async fn serve(path: &Path, attachment: &Attachment) -> DynamicAnswer {
    let file = match tokio::fs::File::open(path).await {
        Ok(file) => file,
        Err(err) => {
            tracing::error!(%err, path = %path.display(), "a stored file is missing");
            return refused(StatusCode::NOT_FOUND, "the file is gone\n");
        }
    };
    let len = match file.metadata().await {
        Ok(meta) => meta.len(),
        Err(_) => return refused(StatusCode::NOT_FOUND, "the file is gone\n"),
    };
    let mime = &*attachment.mime;
    DynamicAnswer::File {
        file,
        len,
        content_type: mime.to_owned(),
        headers: vec![
            ("Content-Disposition", disposition(mime, &attachment.name)),
            // Opened on its own, a file runs nothing (an uploaded page
            // would otherwise run as this site).
            ("Content-Security-Policy", "sandbox".to_owned()),
            // Content-addressed: the bytes behind an id never change.
            ("ETag", format!("\"{}\"", attachment.id)),
        ],
    }
}

/// The `Arc` the site holds.
pub(crate) fn server(uploads: Option<Uploads>, hub: &mpsc::Sender<Input>) -> Arc<dyn Dynamic> {
    Arc::new(FileServer { uploads, hub: hub.downgrade() })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn uploads() -> Uploads {
        Uploads {
            dir: PathBuf::from("/srv/files"),
            max_bytes: 100,
            max_total_bytes: 1000,
            min_free_bytes: 0,
        }
    }

    #[test]
    fn announcements_are_checked_and_names_cleaned() {
        let ok = |name: &str, mime: &str, size: u64| {
            announce(&uploads(), "lobby".into(), name, mime, size, String::new())
        };
        let a = ok("../../etc/passwd", "Text/Plain", 5).unwrap();
        assert_eq!((a.name.as_str(), a.mime.as_str()), ("passwd", "text/plain"));
        assert_eq!(ok("C:\\temp\\cat\u{7}.png", "image/png", 5).unwrap().name, "cat.png");
        assert_eq!(ok("x", "image/png", 101).unwrap_err().0, ErrorCode::TooLarge);
        assert_eq!(ok("x", "image/png", 0).unwrap_err().0, ErrorCode::BadFrame);
        assert_eq!(ok("..", "image/png", 1).unwrap_err().0, ErrorCode::BadFrame);
        assert_eq!(ok("dir/", "image/png", 1).unwrap_err().0, ErrorCode::BadFrame);
        for bad in ["png", "image/", "/png", "image/png; x=<y>", "a/b/c"] {
            assert_eq!(ok("x", bad, 1).unwrap_err().0, ErrorCode::BadFrame, "{bad}");
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

    #[test]
    fn images_must_be_what_they_say() {
        assert!(signature_matches("image/png", b"\x89PNG\r\n\x1a\nrest"));
        assert!(!signature_matches("image/png", b"<html><script>"));
        assert!(signature_matches("image/gif", b"GIF89a..."));
        assert!(signature_matches("image/webp", b"RIFF\0\0\0\0WEBPVP8 "));
        assert!(!signature_matches("image/jpeg", b"GIF89a"));
        assert!(signature_matches("application/pdf", b"anything"));
    }

    #[test]
    fn dispositions_are_safe_for_any_name() {
        assert_eq!(
            disposition("image/png", "cat.png"),
            "inline; filename=\"cat.png\"; filename*=UTF-8''cat.png"
        );
        let odd = disposition("text/html", "a\"b\r\n<é>.html");
        assert!(odd.starts_with("attachment; filename=\"a_b__"), "{odd}");
        assert!(odd.ends_with("filename*=UTF-8''a%22b%0D%0A%3C%C3%A9%3E.html"), "{odd}");
        assert!(!odd.contains('\r') && !odd.contains('\n'));
    }
}
