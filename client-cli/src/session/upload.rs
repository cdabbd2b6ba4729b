//! The upload protocol: announce a file, wait for `upload_ready`, send its
//! parts within the frame rate, one file at a time. Reading the file is the
//! driver's (`files.rs`).

use std::time::{Duration, Instant};

use chat_protocol::{ClientFrame, ErrorCode, ServerFrame};

use super::{Command, Phase, Quit, Session, Transmit};

/// An upload refused for now is tried again if the wait is under this.
const UPLOAD_RETRY_MAX_MS: u64 = 120_000;
use crate::render;

/// A file to send, as announced to the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upload {
    /// The driver's handle on the open file.
    pub file: FileId,
    /// The room it goes to.
    pub room: String,
    /// Its name, without directories.
    pub name: String,
    /// Its media type.
    pub mime: String,
    /// Its length in bytes.
    pub size: u64,
}

/// The driver's handle on a file being uploaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FileId(pub u64);

/// An upload and how far it got.
#[derive(Debug)]
pub(super) struct Sending {
    upload: Upload,
    /// The `upload` frame's id, once it is sent.
    id: Option<String>,
    /// The part size the server asked for, once it is ready.
    chunk_bytes: Option<usize>,
    sent: u64,
    /// Whether a chunk is with the driver.
    reading: bool,
}

impl Session {
    /// `n` bytes of `file` went as the chunk asked for; 0 means the file
    /// ended early.
    pub fn handle_chunk(&mut self, now: Instant, file: FileId, n: usize) {
        self.now = now;
        let Some(sending) = self.uploads.front_mut().filter(|s| s.upload.file == file) else {
            return;
        };
        sending.reading = false;
        if n == 0 {
            let why = format!("{} changed while being sent", render::clean(&sending.upload.name));
            return self.cancel_upload(why);
        }
        sending.sent += n as u64;
        if sending.sent >= sending.upload.size {
            // The room's `message` confirms it.
            self.next_upload();
        }
        self.check_quit();
    }

    /// Reading `file` for the chunk asked for failed.
    pub fn handle_chunk_failed(&mut self, now: Instant, file: FileId, why: &str) {
        self.now = now;
        if self.uploads.front().is_some_and(|s| s.upload.file == file) {
            let name = self.uploads.front().map(|s| s.upload.name.clone()).unwrap_or_default();
            self.cancel_upload(format!("reading {}: {why}", render::clean(&name)));
        }
    }

    /// Whether the driver should keep `file` open.
    pub fn wants_file(&self, file: FileId) -> bool {
        self.uploads.iter().any(|sending| sending.upload.file == file)
    }

    pub(super) fn upload(&mut self, upload: Upload) {
        match self.phase {
            Phase::Live => {
                let sending =
                    Sending { upload, id: None, chunk_bytes: None, sent: 0, reading: false };
                self.uploads.push_back(sending);
                if self.uploads.len() == 1 {
                    self.announce();
                }
            }
            Phase::Connecting | Phase::Greeting | Phase::CatchingUp(_) => {
                self.deferred.push_back(Command::Upload(upload));
            }
            Phase::Offline { .. } | Phase::Ended => {
                self.problem("offline; uploads need the server".to_owned());
            }
        }
    }

    /// Announces the first upload.
    fn announce(&mut self) {
        let id = self.new_id();
        let Some(sending) = self.uploads.front_mut() else {
            return;
        };
        sending.id = Some(id.clone());
        let upload = &sending.upload;
        let frame = ClientFrame::Upload {
            room: upload.room.clone(),
            name: upload.name.clone(),
            mime: upload.mime.clone(),
            size: upload.size,
            text: String::new(),
        };
        self.out.push_back((Some(id), frame));
    }

    /// The first upload is over: on to the next.
    pub(super) fn next_upload(&mut self) {
        self.uploads.pop_front();
        if self.uploads.is_empty() {
            if self.quit == Quit::AfterUploads {
                self.start_quit();
            }
        } else {
            self.announce();
        }
    }

    /// Gives up the first upload: the server is told if it is sending.
    pub(super) fn cancel_upload(&mut self, why: String) {
        if self.uploads.front().is_some_and(|s| s.chunk_bytes.is_some()) {
            self.out.push_back((None, ClientFrame::UploadCancel {}));
        }
        self.problem(why);
        self.next_upload();
        self.check_quit();
    }

    /// The next part of the upload in progress, if the pacer allows.
    pub(super) fn poll_chunk(&mut self) -> Option<Transmit> {
        if !self.wants_chunk() || self.pacer.ready_at(false, self.now) > self.now {
            return None;
        }
        self.pacer.take(false, self.now);
        let sending = self.uploads.front_mut()?;
        sending.reading = true;
        let max = sending.chunk_bytes?;
        Some(Transmit::Chunk { file: sending.upload.file, max })
    }

    /// Whether the upload in progress has a part to send.
    pub(super) fn wants_chunk(&self) -> bool {
        self.uploads.front().is_some_and(|s| s.chunk_bytes.is_some() && !s.reading)
    }

    /// Takes the server's answer to the upload in progress: true for one
    /// not to report (`upload_ready`). A refusal is reported as any is.
    pub(super) fn upload_answered(&mut self, frame: &ServerFrame) -> bool {
        let Some(sending) = self.uploads.front_mut() else {
            return false;
        };
        match frame {
            ServerFrame::UploadReady { id: Some(id), chunk_bytes }
                if sending.id.as_ref() == Some(id) =>
            {
                let chunk = usize::try_from((*chunk_bytes).clamp(1, 1 << 20)).unwrap_or(1 << 16);
                sending.chunk_bytes = Some(chunk);
                let upload = &sending.upload;
                let notice = format!(
                    "uploading {} ({})",
                    render::clean(&upload.name),
                    render::size(upload.size)
                );
                self.notice(notice);
                true
            }
            // Refused for now (quota, storage, rate) before any part went:
            // announced again, with a new id, when the server says.
            ServerFrame::Error {
                id: Some(id),
                code: ErrorCode::RateLimited | ErrorCode::Unavailable,
                retry_after_ms: Some(wait),
                ..
            } if sending.id.as_ref() == Some(id)
                && sending.chunk_bytes.is_none()
                && *wait < UPLOAD_RETRY_MAX_MS =>
            {
                sending.id = None;
                self.upload_at = Some(self.now + Duration::from_millis((*wait).max(50)));
                let why = format!(
                    "{}: the server is busy; trying again",
                    render::clean(&sending.upload.name)
                );
                self.notice(why);
                true
            }
            ServerFrame::Error { id: Some(id), .. } if sending.id.as_ref() == Some(id) => {
                self.next_upload();
                false
            }
            _ => false,
        }
    }

    /// Announces again an upload refused for now, once it is time.
    pub(super) fn upload_timeout(&mut self, now: Instant) {
        if self.upload_at.is_some_and(|at| at <= now) && matches!(self.phase, Phase::Live) {
            self.upload_at = None;
            self.announce();
        }
    }

    /// The connection is gone, and with it every upload.
    pub(super) fn drop_uploads(&mut self) {
        self.upload_at = None;
        for sending in std::mem::take(&mut self.uploads) {
            let name = render::clean(&sending.upload.name);
            self.problem(format!("upload of {name} interrupted by the disconnect"));
        }
    }
}
