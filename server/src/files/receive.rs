//! One connection's side of the upload protocol: `upload` announces a
//! file, which is checked and then offered to the hub (the core decides
//! whether the session may send it to the room); binary frames carry its
//! bytes to a temporary file, and the last one completes it, checked and
//! staged for the message that carries it; `upload_cancel` drops it. One
//! file at a time.

use std::path::PathBuf;

use chat_core::{Attachment, Command};
use chat_protocol::ErrorCode;
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

use super::{Refusal, Staged, Uploads, refusal};
use crate::ServerConfig;

/// The longest file name kept, in characters.
const MAX_NAME_CHARS: usize = 200;

/// The upload protocol's state for one connection.
#[derive(Debug, Default)]
pub(crate) struct Receiver {
    /// The file announced, if any (boxed: most connections never send one).
    upload: Option<Box<Upload>>,
}

/// What the connection does next.
#[derive(Debug)]
pub(crate) enum Next {
    /// Nothing more.
    Nothing,
    /// Refuse with an `error` frame answering `id`.
    Refuse(Option<String>, Refusal),
    /// Ask the hub whether the session may send this file to the room,
    /// then tell [`Receiver::answered`].
    Ask { id: Option<String>, room: String, size: u64, chunk_bytes: u64 },
    /// The file is complete: the hub sends `command`, the message that
    /// carries it, and stores `file` with it.
    Complete { id: Option<String>, command: Command, file: Box<Staged> },
}

/// An `upload` frame's fields, as the client sent them.
#[derive(Debug)]
pub(crate) struct Announcement {
    pub room: String,
    pub name: String,
    pub mime: String,
    pub size: u64,
    pub text: String,
}

impl Receiver {
    /// Whether binary frames are parts of an accepted upload (and are
    /// paced rather than refused when they come too fast).
    pub(crate) fn is_receiving(&self) -> bool {
        self.upload.as_ref().is_some_and(|upload| upload.accepted)
    }

    /// An `upload` frame.
    pub(crate) async fn announce(
        &mut self,
        config: &ServerConfig,
        id: Option<String>,
        frame: Announcement,
    ) -> Next {
        let Some(uploads) = config.uploads.as_ref() else {
            let why = refusal(ErrorCode::Unavailable, "this server takes no uploads");
            return Next::Refuse(id, why);
        };
        if self.upload.is_some() {
            let why = "another upload is in progress; finish or cancel it first";
            return Next::Refuse(id, refusal(ErrorCode::InvalidUpload, why));
        }
        if frame.text.len() > config.chat.max_text_bytes {
            // Refused now, not after the file has arrived.
            let why = format!("the caption is over {} bytes", config.chat.max_text_bytes);
            return Next::Refuse(id, refusal(ErrorCode::TooLarge, why));
        }
        let Announcement { room, name, mime, size, text } = frame;
        let announced = match announce(uploads, room, &name, &mime, size, text) {
            Ok(announced) => announced,
            Err(why) => return Next::Refuse(id, why),
        };
        // Files stop before the disk fills: chat, which needs far less,
        // goes on.
        match uploads.has_room_for(size) {
            Ok(true) => {}
            Ok(false) => {
                let why = "the server is low on disk space and takes no files now";
                return Next::Refuse(id, refusal(ErrorCode::Unavailable, why));
            }
            Err(err) => {
                tracing::error!(%err, "cannot tell how full the disk is");
                let why = "the server cannot store files right now";
                return Next::Refuse(id, refusal(ErrorCode::Unavailable, why));
            }
        }
        let room = announced.room.clone();
        match Upload::start(uploads, id.clone(), announced).await {
            Ok(upload) => {
                self.upload = Some(Box::new(upload));
                let chunk_bytes = config.transport.max_message_bytes as u64;
                Next::Ask { id, room, size, chunk_bytes }
            }
            Err(why) => Next::Refuse(id, why),
        }
    }

    /// The hub's answer to [`Next::Ask`]. On no (the hub has told the
    /// client why), the file is dropped.
    pub(crate) fn answered(&mut self, accepted: bool) {
        match self.upload.as_mut() {
            Some(upload) if accepted => upload.accepted = true,
            _ => self.upload = None,
        }
    }

    /// An `upload_cancel` frame.
    pub(crate) fn cancel(&mut self) {
        self.upload = None;
    }

    /// A binary frame: the next part of the upload in progress.
    pub(crate) async fn chunk(&mut self, uploads: Option<&Uploads>, bytes: &[u8]) -> Next {
        let Some(upload) = self.upload.as_mut().filter(|upload| upload.accepted) else {
            let why = "a binary frame with no upload in progress (send upload first)";
            return Next::Refuse(None, refusal(ErrorCode::InvalidUpload, why));
        };
        match upload.write(bytes).await {
            Ok(false) => return Next::Nothing,
            Ok(true) => {}
            Err(why) => {
                let id = self.upload.take().and_then(|upload| upload.id.clone());
                return Next::Refuse(id, why);
            }
        }
        let (Some(upload), Some(uploads)) = (self.upload.take(), uploads) else {
            return Next::Nothing;
        };
        let (id, room, text) =
            (upload.id.clone(), upload.announced.room.clone(), upload.announced.text.clone());
        match upload.finish(uploads).await {
            Ok((attachment, file)) => {
                let command = crate::wire::upload_say(room, text, attachment);
                Next::Complete { id, command, file: Box::new(file) }
            }
            Err(why) => Next::Refuse(id, why),
        }
    }
}

/// What an `upload` frame announced, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Announced {
    pub room: String,
    pub name: String,
    pub mime: String,
    pub size: u64,
    pub text: String,
}

/// Checks an `upload` frame's fields: a name is kept without any directory
/// part or control character, a type must look like `type/subtype`, and
/// the size must be within the limit.
fn announce(
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

/// An upload in progress: its bytes go to a temporary file as they come.
#[derive(Debug)]
struct Upload {
    id: Option<String>,
    announced: Announced,
    received: u64,
    hasher: Sha256,
    /// The first bytes, for the type check.
    head: Vec<u8>,
    file: tokio::fs::File,
    temp: PathBuf,
    done: bool,
    /// The hub said the session may send it.
    accepted: bool,
}

impl Upload {
    /// Opens the temporary file.
    async fn start(
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
            accepted: false,
        })
    }

    /// Takes the next chunk; `Ok(true)` once the file is complete.
    async fn write(&mut self, bytes: &[u8]) -> Result<bool, Refusal> {
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
    async fn finish(mut self, uploads: &Uploads) -> Result<(Attachment, Staged), Refusal> {
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
        let staged = Staged::new(self.temp.clone(), path, announced.size);
        let attachment = Attachment {
            id: id.into(),
            name: announced.name.into(),
            mime: announced.mime.into(),
            size: announced.size,
        };
        Ok((attachment, staged))
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::files::tests::uploads;

    fn announcement(size: u64) -> Announcement {
        Announcement {
            room: "lobby".to_owned(),
            name: "notes.txt".to_owned(),
            mime: "text/plain".to_owned(),
            size,
            text: "see".to_owned(),
        }
    }

    fn refused(next: &Next) -> Option<(Option<&str>, ErrorCode)> {
        match next {
            Next::Refuse(id, (code, _)) => Some((id.as_deref(), *code)),
            _ => None,
        }
    }

    #[tokio::test]
    async fn a_file_is_announced_accepted_received_and_completed_once() {
        let dir = tempfile::tempdir().unwrap();
        let uploads = Uploads { dir: dir.path().to_owned(), max_bytes: 100, ..uploads() };
        uploads.prepare().unwrap();
        let config = ServerConfig { uploads: Some(uploads.clone()), ..ServerConfig::default() };
        let mut receiver = Receiver::default();
        let id = Some("u1".to_owned());

        let next = receiver.announce(&config, id.clone(), announcement(10)).await;
        assert!(matches!(&next, Next::Ask { room, size: 10, .. } if room == "lobby"), "{next:?}");
        assert!(!receiver.is_receiving(), "not before the hub said yes");
        let early = receiver.chunk(Some(&uploads), b"01234").await;
        assert_eq!(refused(&early), Some((None, ErrorCode::InvalidUpload)));
        let again = receiver.announce(&config, Some("u2".to_owned()), announcement(5)).await;
        assert_eq!(refused(&again), Some((Some("u2"), ErrorCode::InvalidUpload)), "one at a time");

        receiver.answered(true);
        assert!(receiver.is_receiving());
        assert!(matches!(receiver.chunk(Some(&uploads), b"01234").await, Next::Nothing));
        let Next::Complete { id: done, file, .. } = receiver.chunk(Some(&uploads), b"56789").await
        else {
            panic!("complete after the 10 bytes announced");
        };
        assert_eq!(done, id);
        drop(file);
        assert!(!receiver.is_receiving(), "ready for the next file");
        let stray = receiver.chunk(Some(&uploads), b"x").await;
        assert_eq!(refused(&stray), Some((None, ErrorCode::InvalidUpload)));
    }

    #[tokio::test]
    async fn too_many_bytes_a_refusal_or_a_cancel_drop_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let uploads = Uploads { dir: dir.path().to_owned(), max_bytes: 100, ..uploads() };
        uploads.prepare().unwrap();
        let config = ServerConfig { uploads: Some(uploads.clone()), ..ServerConfig::default() };
        let temp_files = || std::fs::read_dir(dir.path().join("tmp")).unwrap().count();
        let mut receiver = Receiver::default();

        let _ = receiver.announce(&config, Some("a".to_owned()), announcement(4)).await;
        receiver.answered(true);
        let over = receiver.chunk(Some(&uploads), b"12345").await;
        assert_eq!(refused(&over), Some((Some("a"), ErrorCode::InvalidUpload)));
        assert_eq!(temp_files(), 0, "nothing of it is kept");

        let _ = receiver.announce(&config, Some("b".to_owned()), announcement(4)).await;
        receiver.answered(false);
        assert!(!receiver.is_receiving());
        assert_eq!(temp_files(), 0);

        let _ = receiver.announce(&config, Some("c".to_owned()), announcement(4)).await;
        receiver.answered(true);
        receiver.cancel();
        assert_eq!(temp_files(), 0);

        let none = ServerConfig::default();
        let next = receiver.announce(&none, Some("d".to_owned()), announcement(4)).await;
        assert_eq!(refused(&next), Some((Some("d"), ErrorCode::Unavailable)));
        let mut long = announcement(4);
        long.text = "x".repeat(config.chat.max_text_bytes + 1);
        let next = receiver.announce(&config, Some("e".to_owned()), long).await;
        assert_eq!(refused(&next), Some((Some("e"), ErrorCode::TooLarge)));
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
    fn images_must_be_what_they_say() {
        assert!(signature_matches("image/png", b"\x89PNG\r\n\x1a\nrest"));
        assert!(!signature_matches("image/png", b"<html><script>"));
        assert!(signature_matches("image/gif", b"GIF89a..."));
        assert!(signature_matches("image/webp", b"RIFF\0\0\0\0WEBPVP8 "));
        assert!(!signature_matches("image/jpeg", b"GIF89a"));
        assert!(signature_matches("application/pdf", b"anything"));
    }
}
