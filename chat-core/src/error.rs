use crate::{NameError, Nick, RoomName};

/// Why the core refused a member's command. Delivered to that member as
/// [`Event::Error`](crate::Event::Error); the member carries on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    /// A command other than `hello` came first.
    #[error("say hello first")]
    HelloRequired,
    /// A second `hello` on the same connection.
    #[error("hello was already received")]
    AlreadyGreeted,
    /// The nick breaks the nick rules.
    #[error("invalid nick: {0}")]
    InvalidNick(NameError),
    /// Someone else holds the nick (compared case-insensitively).
    #[error("nick {0} is taken")]
    NickTaken(Nick),
    /// The session token is malformed.
    #[error("invalid session token: {0}")]
    InvalidSession(NameError),
    /// The room name breaks the room rules.
    #[error("invalid room: {0}")]
    InvalidRoom(NameError),
    /// The member has not joined the room.
    #[error("not in room {0}")]
    NotInRoom(RoomName),
    /// No one holds the nick, or ever did in a conversation of the
    /// session's (or, with identities, anywhere).
    #[error("no one is called {0}")]
    NoSuchNick(String),
    /// The session has no conversation of that key.
    #[error("no conversation {0}")]
    NoSuchConversation(String),
    /// No message of that `seq` in the room (never, no longer kept, or not
    /// a message that can change).
    #[error("no message {seq} in {room} to change")]
    NoSuchMessage {
        /// The room.
        room: RoomName,
        /// The `seq` asked for.
        seq: u64,
    },
    /// Only a message's sender may change it, and edits only within the
    /// edit window.
    #[error("{0}")]
    NotYours(String),
    /// A topic longer than allowed, or with control characters.
    #[error("a topic is one line of at most {max} characters")]
    BadTopic {
        /// The most characters.
        max: usize,
    },
    /// No document of that name in the room.
    #[error("no document {doc} in {room}")]
    NoSuchDoc {
        /// The room.
        room: RoomName,
        /// The name asked for.
        doc: String,
    },
    /// No version of that number of the document (never, or no longer
    /// kept).
    #[error("no version {version} of document {doc}")]
    NoSuchVersion {
        /// The document.
        doc: RoomName,
        /// The version asked for.
        version: u64,
    },
    /// A document title that is empty, longer than allowed, with control
    /// characters, or another document's of the room.
    #[error("{0}")]
    BadDocTitle(String),
    /// The room holds as many documents as it may.
    #[error("room {room} holds {max} documents, the most allowed; delete one first")]
    DocLimit {
        /// The room.
        room: RoomName,
        /// The limit.
        max: usize,
    },
    /// The text is empty.
    #[error("text is empty")]
    EmptyText,
    /// The text is longer than allowed.
    #[error("text is {len} bytes, the limit is {max}")]
    TooLarge {
        /// The text's length in bytes.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The member sends messages faster than allowed.
    #[error("too many messages; retry in {retry_after_ms} ms")]
    RateLimited {
        /// When one more message will be allowed.
        retry_after_ms: u64,
    },
    /// The session joins new rooms faster than allowed.
    #[error("too many joins; retry in {retry_after_ms} ms")]
    JoinRateLimited {
        /// When one more join will be allowed.
        retry_after_ms: u64,
    },
    /// The session is in as many rooms as it may be.
    #[error("you are in {max} rooms, the most allowed; part one first")]
    RoomLimit {
        /// The limit.
        max: usize,
    },
    /// The room has as many members as it may have.
    #[error("room {room} is full ({max} members)")]
    RoomFull {
        /// The room.
        room: RoomName,
        /// The limit.
        max: usize,
    },
    /// An identity is required and none (or an expired one) came.
    #[error("a valid access token is required")]
    Unauthorized,
    /// The identity does not allow this.
    #[error("{0}")]
    Forbidden(String),
    /// Creating another room would pass the room limit, and no room is
    /// idle enough to make way.
    #[error("the server holds {max} rooms already")]
    TooManyRooms {
        /// The limit.
        max: usize,
    },
    /// The session, or its address, creates rooms faster than allowed.
    #[error("too many new rooms; retry in {retry_after_ms} ms")]
    CreateRateLimited {
        /// When one more room may be created.
        retry_after_ms: u64,
    },
    /// The connection asks for history faster than its byte budget allows.
    #[error("too much history at once; retry in {retry_after_ms} ms")]
    HistoryRateLimited {
        /// When the next page will be allowed.
        retry_after_ms: u64,
    },
    /// Messages cannot be stored right now (storage is failing or full), so
    /// none is accepted; nothing of this one was kept.
    #[error("messages cannot be stored right now; retry in {retry_after_ms} ms")]
    StoreUnavailable {
        /// When storage will be tried again.
        retry_after_ms: u64,
    },
    /// In cluster mode, the engine the cores share could not be reached,
    /// so what needed it (a nick claimed for a `hello` or `nick`) was not
    /// done.
    #[error("the chat's shared state cannot be reached right now; retry in {retry_after_ms} ms")]
    SharedUnavailable {
        /// When to try again.
        retry_after_ms: u64,
    },
    /// The room's stored history cannot be read right now.
    #[error("room {0} cannot be read right now; try again")]
    RoomUnavailable(RoomName),
    /// An upload quota is used up.
    #[error("{}", quota_message(*.quota, *.retry_after_ms))]
    QuotaExceeded {
        /// Whose quota.
        quota: Quota,
        /// When the file would fit; `None` if it never will (it is larger
        /// than the whole quota).
        retry_after_ms: Option<u64>,
    },
}

/// Which upload quota a [`CommandError::QuotaExceeded`] names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Quota {
    /// The session's own.
    Session,
    /// The one shared by every connection from the sender's address.
    Source,
}

fn quota_message(quota: Quota, retry_after_ms: Option<u64>) -> String {
    let whose = match quota {
        Quota::Session => "your upload quota",
        Quota::Source => "the upload quota of your address",
    };
    match retry_after_ms {
        Some(ms) => format!("{whose} is used up; this file fits in {ms} ms"),
        None => format!("this file is larger than {whose}"),
    }
}
