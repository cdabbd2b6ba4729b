use std::fmt;

use serde::{Deserialize, Serialize};

/// The stable machine-readable code of an `error` frame.
///
/// Codes are part of the protocol: clients may branch on them, so a code is
/// never renamed or reused for another meaning.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The frame was not a JSON object.
    BadJson,
    /// The frame was JSON but not a valid frame: a field is missing or has
    /// the wrong type, or a value is out of range.
    BadFrame,
    /// The `type` field names no frame this server knows.
    UnknownType,
    /// A frame other than `hello` came before `hello`.
    HelloRequired,
    /// A nick breaks the nick rules.
    InvalidNick,
    /// A topic is not one line of at most 200 characters.
    InvalidTopic,
    /// The nick is held by someone else (compared case-insensitively).
    NickTaken,
    /// A session token is malformed.
    InvalidSession,
    /// A room name breaks the room rules.
    InvalidRoom,
    /// The frame names a room the sender has not joined.
    NotInRoom,
    /// No one holds that nick (nor did, in a conversation of the
    /// sender's).
    NoSuchNick,
    /// The session has no conversation of that key.
    NoSuchConversation,
    /// `edit` or `delete` of a message the room does not have (or keep), or
    /// that cannot change (a change itself, or deleted).
    NoSuchMessage,
    /// `doc_rename` or `doc_delete` of a document the room does not have.
    NoSuchDoc,
    /// `doc_restore` of a version the document does not have (or no
    /// longer keeps).
    NoSuchVersion,
    /// A document title that is empty, too long, more than one line, or
    /// another document's of the room.
    InvalidDoc,
    /// The text or frame is longer than the server allows.
    TooLarge,
    /// The sender is over a rate limit; `retry_after_ms` says when to retry.
    RateLimited,
    /// The server is at a capacity limit (for example the number of rooms).
    Unavailable,
    /// Authentication is on and the access token is missing, malformed,
    /// badly signed or expired.
    Unauthorized,
    /// The access token does not allow this: another nick, or a room
    /// outside its `rooms`.
    Forbidden,
    /// A per-client or per-room count limit: the sender is in as many
    /// rooms as allowed, or the room has as many members as allowed.
    LimitReached,
    /// An upload cannot go on: a binary frame with no upload in progress,
    /// more bytes than announced, a second upload before the first ended,
    /// or content that is not of the type announced.
    InvalidUpload,
    /// A channel that does not exist, or whose token was wrong.
    NoSuchChannel,
    /// An upload quota is used up: the sender's or its address's
    /// (`retry_after_ms` says when the file would fit), or the server's
    /// storage for files.
    QuotaExceeded,
    /// A code this build of the protocol crate does not know; a newer server
    /// may send codes added later.
    #[serde(other)]
    Unknown,
}

impl ErrorCode {
    /// The code as it appears on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::BadJson => "bad_json",
            Self::BadFrame => "bad_frame",
            Self::UnknownType => "unknown_type",
            Self::HelloRequired => "hello_required",
            Self::InvalidNick => "invalid_nick",
            Self::InvalidTopic => "invalid_topic",
            Self::NickTaken => "nick_taken",
            Self::InvalidSession => "invalid_session",
            Self::InvalidRoom => "invalid_room",
            Self::NotInRoom => "not_in_room",
            Self::NoSuchNick => "no_such_nick",
            Self::NoSuchConversation => "no_such_conversation",
            Self::NoSuchMessage => "no_such_message",
            Self::NoSuchDoc => "no_such_doc",
            Self::NoSuchVersion => "no_such_version",
            Self::InvalidDoc => "invalid_doc",
            Self::TooLarge => "too_large",
            Self::RateLimited => "rate_limited",
            Self::Unavailable => "unavailable",
            Self::LimitReached => "limit_reached",
            Self::Unauthorized => "unauthorized",
            Self::Forbidden => "forbidden",
            Self::InvalidUpload => "invalid_upload",
            Self::NoSuchChannel => "no_such_channel",
            Self::QuotaExceeded => "quota_exceeded",
            Self::Unknown => "unknown",
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
