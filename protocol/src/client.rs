use serde::{Deserialize, Serialize};

/// A frame as received from a client: the frame itself and the optional
/// request `id` the direct reply must carry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientMessage {
    /// The client's request id, at most [`MAX_ID_BYTES`](crate::MAX_ID_BYTES)
    /// bytes, echoed in the direct reply.
    pub id: Option<String>,
    /// The frame.
    pub frame: ClientFrame,
}

/// Every frame a client may send.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClientFrame {
    /// Must be the first frame: asks for a nick (or a generated guest nick).
    Hello {
        /// The nick wanted; the server assigns `guest-NNNN` without one.
        /// Ignored when `session` resumes a live session.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        nick: Option<String>,
        /// The `session` token of an earlier `welcome`, to resume it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        session: Option<String>,
        /// A signed access token, required by servers that have
        /// authentication on: it names the nick (`sub`), when it expires,
        /// and which rooms may be joined.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        token: Option<String>,
    },
    /// Join a room, creating it if needed.
    Join {
        /// The room name.
        room: String,
        /// Resume: the `seq` of the last message seen in this room.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        after: Option<u64>,
    },
    /// Leave a room.
    Leave {
        /// The room name.
        room: String,
    },
    /// Send a message to a room the client has joined.
    Say {
        /// The room name.
        room: String,
        /// The message text.
        text: String,
        /// `true` for an action (`/me waves`).
        #[serde(default, skip_serializing_if = "is_false")]
        action: bool,
    },
    /// Send a direct message: to a nick, or into one of the session's
    /// conversations by its key (reaching the party it was with, whatever
    /// nick it has now). Answered with `direct`.
    Dm {
        /// The recipient's nick (without `conversation`).
        #[serde(default, skip_serializing_if = "String::is_empty")]
        to: String,
        /// A conversation's key, from `direct` or `conversations`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        conversation: Option<String>,
        /// The message text.
        text: String,
    },
    /// Read a conversation: the messages after `after` (or the newest), or
    /// with `before` a page of older ones. Answered with `conversation`.
    Conversation {
        /// The other party's nick (without `conversation`).
        #[serde(default, skip_serializing_if = "String::is_empty")]
        with: String,
        /// A conversation's key, from `direct` or `conversations`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        conversation: Option<String>,
        /// The `seq` of the last message seen.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        after: Option<u64>,
        /// Only messages with a `seq` below this (paging back).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        before: Option<u64>,
        /// At most this many messages when paging back (default 50, at most
        /// `limits.history_page_max`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        limit: Option<u32>,
    },
    /// List the session's conversations; answered with `conversations`.
    Conversations {},
    /// Edit one's own message `seq` of a joined room (within
    /// `limits.edit_window_ms`): answered, like every change, with a
    /// `message` of the room carrying `edit`.
    Edit {
        /// The room name.
        room: String,
        /// The message to edit.
        seq: u64,
        /// Its new text.
        text: String,
    },
    /// Delete one's own message `seq` of a joined room: answered with a
    /// `message` carrying `delete`.
    Delete {
        /// The room name.
        room: String,
        /// The message to delete.
        seq: u64,
    },
    /// Create a shared document in a joined room, titled `title` (one
    /// line, at most 100 characters, unique in the room): everyone in the
    /// room gets `doc` with its `name` (made from the title), which is
    /// what it is opened by (`/yjs/ROOM/NAME`).
    DocCreate {
        /// The room name.
        room: String,
        /// The title.
        title: String,
    },
    /// Give a joined room's document another title (its name stays):
    /// everyone in the room gets `doc`.
    DocRename {
        /// The room name.
        room: String,
        /// The document's name.
        doc: String,
        /// Its new title.
        title: String,
    },
    /// List a joined room's document's past versions: answered with
    /// `doc_versions`.
    DocVersions {
        /// The room name.
        room: String,
        /// The document's name.
        doc: String,
    },
    /// Make a joined room's document as it was at one of its versions, as
    /// a new edit its editors see at once: everyone in the room gets `doc`
    /// (`restored`).
    DocRestore {
        /// The room name.
        room: String,
        /// The document's name.
        doc: String,
        /// The version, as `doc_versions` lists it.
        version: u64,
    },
    /// Delete a joined room's document and its content: everyone in the
    /// room gets `doc`, and its editors are closed with 4404.
    DocDelete {
        /// The room name.
        room: String,
        /// The document's name.
        doc: String,
    },
    /// Set a joined room's topic (an empty one clears it): everyone in
    /// the room gets `topic`.
    Topic {
        /// The room name.
        room: String,
        /// The topic: one line, at most 200 characters.
        topic: String,
    },
    /// Read up to `seq` of a joined room (or of a conversation, by key):
    /// the session's other connections (tabs, devices) get `read`, so
    /// what was read on one is read on all. No answer.
    Read {
        /// The room name...
        #[serde(default, skip_serializing_if = "Option::is_none")]
        room: Option<String>,
        /// ...or a conversation's key.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        conversation: Option<String>,
        /// The newest `seq` read.
        seq: u64,
    },
    /// Change nick.
    Nick {
        /// The new nick.
        nick: String,
    },
    /// Tell a room's other members that this client is typing.
    Typing {
        /// The room name.
        room: String,
    },
    /// List the rooms that exist.
    Rooms {},
    /// List the members of a room.
    Who {
        /// The room name.
        room: String,
        /// The next page: only members after this nick, in nick order.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        after: Option<String>,
        /// Only members whose nick starts with this (as nicks compare:
        /// case and look-alikes aside), for completion and @-mentions.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        prefix: Option<String>,
        /// At most this many (default and most: 200).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        limit: Option<u32>,
    },
    /// Page back through a room's history.
    History {
        /// The room name.
        room: String,
        /// Only messages with a `seq` below this; the newest without it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        before: Option<u64>,
        /// At most this many messages (default 50, at most 200).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        limit: Option<u32>,
    },
    /// Announces a file to send to a room: answered with `upload_ready`,
    /// after which the client sends the file's bytes as binary frames (one
    /// upload at a time per connection). Once `size` bytes have arrived,
    /// the server stores the file and sends the room a `message` with an
    /// `attachment`, carrying this frame's `id`.
    Upload {
        /// The room name.
        room: String,
        /// The file's name, as shown to others (no directories).
        name: String,
        /// Its media type, as `type/subtype` (`image/png`).
        mime: String,
        /// Its length in bytes, at most `limits.max_upload_bytes`.
        size: u64,
        /// A caption, sent as the message's text.
        #[serde(default, skip_serializing_if = "String::is_empty")]
        text: String,
    },
    /// Stop the upload in progress; its bytes so far are dropped.
    UploadCancel {},
    /// Receive a channel's updates until the connection ends; `$stats` is
    /// the server's live counters, once per second.
    Subscribe {
        /// The channel.
        channel: String,
        /// The token the channel asks for, if any (`--stats-token`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        token: Option<String>,
    },
    /// Liveness check; answered with `pong`.
    Ping {},
    /// A fresh access token for the session, sent before the current one
    /// expires; answered with `authed`.
    Auth {
        /// The signed access token, for the same nick.
        token: String,
    },
}

impl ClientFrame {
    /// Every `type` value a client frame may carry.
    pub const TYPES: &'static [&'static str] = &[
        "hello",
        "join",
        "leave",
        "say",
        "dm",
        "conversation",
        "conversations",
        "edit",
        "delete",
        "doc_create",
        "doc_rename",
        "doc_delete",
        "doc_versions",
        "doc_restore",
        "topic",
        "read",
        "nick",
        "typing",
        "rooms",
        "who",
        "history",
        "upload",
        "upload_cancel",
        "subscribe",
        "ping",
        "auth",
    ];
}

impl ClientFrame {
    /// The frame's `type`, for logs.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Hello { .. } => "hello",
            Self::Join { .. } => "join",
            Self::Leave { .. } => "leave",
            Self::Say { .. } => "say",
            Self::Dm { .. } => "dm",
            Self::Conversation { .. } => "conversation",
            Self::Conversations {} => "conversations",
            Self::Edit { .. } => "edit",
            Self::Delete { .. } => "delete",
            Self::DocCreate { .. } => "doc_create",
            Self::DocRename { .. } => "doc_rename",
            Self::DocDelete { .. } => "doc_delete",
            Self::DocVersions { .. } => "doc_versions",
            Self::DocRestore { .. } => "doc_restore",
            Self::Topic { .. } => "topic",
            Self::Read { .. } => "read",
            Self::Nick { .. } => "nick",
            Self::Typing { .. } => "typing",
            Self::Rooms {} => "rooms",
            Self::Who { .. } => "who",
            Self::History { .. } => "history",
            Self::Upload { .. } => "upload",
            Self::UploadCancel {} => "upload_cancel",
            Self::Subscribe { .. } => "subscribe",
            Self::Ping {} => "ping",
            Self::Auth { .. } => "auth",
        }
    }
}

fn is_false(value: &bool) -> bool {
    !*value
}
