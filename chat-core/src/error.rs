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
    /// No connected member holds the nick.
    #[error("no one is called {0}")]
    NoSuchNick(String),
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
    /// Creating another room would pass the room limit.
    #[error("the server holds {max} rooms already")]
    TooManyRooms {
        /// The limit.
        max: usize,
    },
}
