use serde::{Deserialize, Serialize};

use crate::ErrorCode;

/// Every frame the server sends.
///
/// Frames that answer a client frame carry that frame's `id` (omitted when
/// the client sent none). Unknown fields are ignored when decoding, so a
/// newer server may add fields without breaking older clients.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerFrame {
    /// The answer to `hello`.
    Welcome {
        /// The `hello`'s id.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<String>,
        /// An opaque token naming this session.
        session: String,
        /// The nick the client holds now.
        nick: String,
        /// Whether an existing session was resumed (its nick and rooms are
        /// as they were).
        #[serde(default)]
        resumed: bool,
        /// The rooms a resumed session is in (a new device joins them to
        /// show them too); absent for a new session.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        rooms: Vec<String>,
        /// Who is answering.
        server: ServerInfo,
        /// The limits this server enforces.
        limits: Limits,
        /// With authentication on: when the access token expires, in
        /// milliseconds since the Unix epoch. Send `auth` with a fresh one
        /// before then, or the connection is closed with 4011.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        token_expires_ms: Option<u64>,
    },
    /// The answer to `join`.
    Joined {
        /// The `join`'s id.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<String>,
        /// The room joined.
        room: String,
        /// The nicks in the room, the joiner included, in nick order: all of
        /// them, or in a room of more than 200 the first 200 (`who` pages on).
        members: Vec<String>,
        /// How many members the room has.
        #[serde(default)]
        member_count: u64,
        /// Those of them who are away (every connection dropped), sorted.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        away: Vec<String>,
        /// The room's most recent messages, oldest first.
        history: Vec<Message>,
        /// The `seq` of the room's newest message, 0 if it has none.
        last_seq: u64,
        /// How `history` relates to the `after` the client gave.
        #[serde(default = "Resume::fresh")]
        resume: Resume,
        /// For `resume: "gap"`: the messages lost to retention.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        gap: Option<Gap>,
        /// The room's topic, if it has one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        topic: Option<String>,
        /// The room's shared documents, in name order.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        docs: Vec<DocInfo>,
        /// Whether the room's documents are read-only to this client.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        docs_read_only: bool,
    },
    /// A room's document was created, renamed, edited or deleted: to
    /// everyone in the room (with the request's id for the one who did
    /// it). Edits are told at most every 10 s per document.
    Doc {
        /// The request's id.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<String>,
        /// The room.
        room: String,
        /// `created`, `renamed`, `edited` or `deleted`.
        action: String,
        /// The document as it is now (as it was, if deleted).
        doc: DocInfo,
        /// Who did it.
        by: String,
    },
    /// The answer to `doc_versions`: the document's past versions, newest
    /// first.
    DocVersions {
        /// The request's id.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<String>,
        /// The room.
        room: String,
        /// The document's name.
        doc: String,
        /// Its versions.
        versions: Vec<DocVersion>,
    },
    /// A member set a room's topic: to everyone in the room (with the
    /// `topic`'s id for the one who set it).
    Topic {
        /// The `topic`'s id.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<String>,
        /// The room.
        room: String,
        /// The topic now; absent when it was cleared.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        topic: Option<String>,
        /// Who set it.
        by: String,
    },
    /// Another connection of this session (a tab, a device) read up to
    /// `seq` of a room or a conversation.
    Read {
        /// The room...
        #[serde(default, skip_serializing_if = "Option::is_none")]
        room: Option<String>,
        /// ...or the conversation's key.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        conversation: Option<String>,
        /// The newest `seq` read.
        seq: u64,
    },
    /// The answer to `leave`.
    Left {
        /// The `leave`'s id.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<String>,
        /// The room left.
        room: String,
    },
    /// Someone else joined, left, or changed nick in a room.
    Presence {
        /// The room.
        room: String,
        /// What happened.
        event: PresenceEvent,
        /// The nick concerned (the new nick for `nick`).
        nick: String,
        /// The previous nick, for `nick` only.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        old: Option<String>,
    },
    /// In a room of more than 200 members, presence comes at most once a
    /// second, as the changes of that second in order (the first 50; `more`
    /// counts the rest), to everyone in the room.
    PresenceBatch {
        /// The room.
        room: String,
        /// What happened, oldest first.
        changes: Vec<PresenceChange>,
        /// Changes past those listed, only counted.
        #[serde(default, skip_serializing_if = "is_zero")]
        more: u64,
        /// How many members the room has now.
        members: u64,
    },
    /// In a room of more than 200 members, who started typing in the last
    /// second, at most once a second (five named; `more` counts the rest).
    TypingBatch {
        /// The room.
        room: String,
        /// Who.
        nicks: Vec<String>,
        /// How many others.
        #[serde(default, skip_serializing_if = "is_zero")]
        more: u64,
    },
    /// A message in a room, sent to every member including its sender.
    Message(Message),
    /// A direct message, sent to every connection of its recipient and of
    /// its sender.
    Direct {
        /// The sender's nick.
        from: String,
        /// The recipient's nick.
        to: String,
        /// The other party as this side sees it: the recipient for the
        /// sender, the sender for the recipient.
        #[serde(default)]
        with: String,
        /// The conversation's key: what to show it under and to name it by.
        #[serde(default)]
        conversation: String,
        /// Its place in the conversation: 1, 2, 3, …
        #[serde(default)]
        seq: u64,
        /// The text.
        text: String,
        /// When the server accepted it, in unix milliseconds.
        ts: u64,
        /// The `dm`'s id.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<String>,
    },
    /// The answer to `conversation`.
    Conversation {
        /// The `conversation`'s id.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<String>,
        /// The conversation's key.
        conversation: String,
        /// The other party.
        with: String,
        /// The messages, oldest first.
        messages: Vec<DirectLine>,
        /// The `seq` of its newest message, 0 if it has none.
        last_seq: u64,
        /// How `messages` relates to the `after` the client gave.
        #[serde(default = "Resume::fresh")]
        resume: Resume,
        /// For `resume: "gap"`: the messages lost to retention.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        gap: Option<Gap>,
    },
    /// The answer to `conversations`: most recent first.
    Conversations {
        /// The `conversations`'s id.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<String>,
        /// The session's conversations.
        conversations: Vec<ConversationInfo>,
    },
    /// The answer to `nick`.
    Nick {
        /// The `nick`'s id.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<String>,
        /// The previous nick.
        old: String,
        /// The nick now held.
        nick: String,
    },
    /// Someone in a room is typing.
    Typing {
        /// The room.
        room: String,
        /// Who is typing.
        nick: String,
    },
    /// The answer to `rooms`.
    Rooms {
        /// The `rooms`'s id.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<String>,
        /// Every room, sorted by name.
        rooms: Vec<RoomInfo>,
    },
    /// The answer to `who`.
    Members {
        /// The `who`'s id.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<String>,
        /// The room.
        room: String,
        /// The nicks in the room (this page of them), in nick order.
        members: Vec<String>,
        /// Those of them who are away, sorted.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        away: Vec<String>,
        /// How many members the room has.
        #[serde(default)]
        count: u64,
        /// More match after this page: ask with `after` the last nick here.
        #[serde(default, skip_serializing_if = "is_false")]
        more: bool,
    },
    /// The answer to `history`.
    History {
        /// The `history`'s id.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<String>,
        /// The room.
        room: String,
        /// The messages, oldest first.
        messages: Vec<Message>,
    },
    /// The answer to `upload`: send the file's bytes now, as binary frames
    /// of at most `chunk_bytes` each.
    UploadReady {
        /// The `upload`'s id.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<String>,
        /// The largest binary frame to send.
        chunk_bytes: u64,
    },
    /// The answer to `subscribe`: updates of `channel` follow.
    Subscribed {
        /// The `subscribe`'s id.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<String>,
        /// The channel.
        channel: String,
    },
    /// The server's live counters, once per second to `$stats`
    /// subscribers.
    Stats(Stats),
    /// Right after `subscribed` to `$stats`: the last minutes of the
    /// counters a chart draws, oldest first, one point a second.
    StatsHistory {
        /// The time between points, in milliseconds.
        interval_ms: u64,
        /// The points.
        points: Vec<StatsPoint>,
    },
    /// The answer to `ping`.
    Pong {
        /// The `ping`'s id.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<String>,
    },
    /// The answer to `auth`: the session now runs on the new token.
    Authed {
        /// The `auth`'s id.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<String>,
        /// When the new token expires, in milliseconds since the Unix epoch.
        token_expires_ms: u64,
    },
    /// A client frame was refused. The connection carries on.
    Error {
        /// The id of the frame refused, when it had a readable one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<String>,
        /// The stable code.
        code: ErrorCode,
        /// A human-readable explanation; not stable.
        message: String,
        /// For `rate_limited`: how long to wait before retrying.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        retry_after_ms: Option<u64>,
    },
}

/// One chat message in a room.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    /// The room.
    pub room: String,
    /// Its position in the room: 1 for the first message, then +1 each.
    pub seq: u64,
    /// When the server accepted it, in unix milliseconds.
    pub ts: u64,
    /// The sender's nick at the time.
    pub from: String,
    /// The text.
    pub text: String,
    /// The `say`'s id, so the sender can match the acknowledgement.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// `true` for an action (`/me`).
    #[serde(default)]
    pub action: bool,
    /// A file sent with the message (see `upload`); its bytes are at
    /// `GET /files/{id}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attachment: Option<Attachment>,
    /// This message edits message `edit` of the room to its `text`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub edit: Option<u64>,
    /// This message deletes message `delete` of the room.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delete: Option<u64>,
    /// The message was edited since (its `text` is the latest).
    #[serde(default, skip_serializing_if = "is_false")]
    pub edited: bool,
    /// The message was deleted by its sender (no text, no file).
    #[serde(default, skip_serializing_if = "is_false")]
    pub deleted: bool,
}

fn is_false(value: &bool) -> bool {
    !*value
}

fn is_zero(value: &u64) -> bool {
    *value == 0
}

/// One change of a `presence_batch`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PresenceChange {
    /// What happened.
    pub event: PresenceEvent,
    /// The nick concerned (the new nick for `nick`).
    pub nick: String,
    /// The previous nick, for `nick` only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub old: Option<String>,
}

/// A message of a conversation, as `conversation` returns it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DirectLine {
    /// Its place in the conversation.
    pub seq: u64,
    /// When the server accepted it, in unix milliseconds.
    pub ts: u64,
    /// The sender's nick at the time.
    pub from: String,
    /// The text.
    pub text: String,
    /// The `dm`'s id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
}

/// One conversation, as `conversations` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConversationInfo {
    /// Its key.
    pub conversation: String,
    /// The other party's nick (now, if it is here; else its last).
    pub with: String,
    /// The `seq` of its newest message.
    pub last_seq: u64,
    /// When that was, in unix milliseconds.
    pub last_ts: u64,
}

/// A file attached to a message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attachment {
    /// The file's id: the SHA-256 of its bytes, in lowercase hex.
    pub id: String,
    /// Its name, as the sender gave it.
    pub name: String,
    /// Its media type.
    pub mime: String,
    /// Its length in bytes.
    pub size: u64,
}

/// The server's live counters (`$stats`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stats {
    /// Since the server started, in milliseconds.
    pub uptime_ms: u64,
    /// WebSocket connections open.
    pub connections: u64,
    /// Sessions, connected or waiting to be resumed.
    pub sessions: u64,
    /// People connected now: sessions with a connection, however many tabs
    /// and devices each has. Missing from older servers: 0.
    #[serde(default)]
    pub people: u64,
    /// Connections watching these counters (the stats page). Missing from
    /// older servers: 0.
    #[serde(default)]
    pub watchers: u64,
    /// Rooms, with their member counts, most members first (at most 20).
    pub rooms: Vec<RoomInfo>,
    /// How many rooms there are in all.
    pub room_count: u64,
    /// Room and direct messages accepted in the last second.
    pub messages_per_sec: u64,
    /// Messages accepted since the server started.
    pub messages_total: u64,
    /// WebSocket payload bytes received since the server started.
    pub bytes_in: u64,
    /// WebSocket payload bytes queued to be sent since the server started.
    pub bytes_out: u64,
    /// Frames waiting in connections' outgoing queues, in all.
    pub queued_frames: u64,
    /// Frames waiting in the fullest outgoing queue.
    pub queued_frames_max: u64,
    /// Deliveries waiting for storage to commit.
    pub held_for_storage: u64,
    /// Bytes of room history held in memory (bounded by the server's
    /// history memory budget). Missing from older servers: 0.
    #[serde(default)]
    pub history_bytes: u64,
    /// Bytes the stored files take. Missing from older servers: 0.
    #[serde(default)]
    pub file_bytes: u64,
    /// Storage failed and messages are refused for now. Missing from older
    /// servers: false.
    #[serde(default)]
    pub storage_failing: bool,
    /// In cluster mode, the node these counters are of (counters are per
    /// node); absent on a single server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// In cluster mode, why this node cannot reach Redis right now (sends
    /// are refused with `unavailable` meanwhile); absent while it can.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_down: Option<String>,
    /// In cluster mode, the whole cluster's counters, as every node last
    /// reported them (about a second behind); absent on a single server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<ClusterTotals>,
}

/// The counters of every node of a cluster, added up.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterTotals {
    /// Nodes that reported in the last few seconds.
    pub nodes: u64,
    /// WebSocket connections open on them.
    pub connections: u64,
    /// People connected (sessions with a connection, watchers aside).
    pub people: u64,
    /// Room and direct messages they accepted in the last second.
    pub messages_per_sec: u64,
}

/// How a `joined` answers the `after` of its `join`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Resume {
    /// No `after` was given, or the server has no record of that position
    /// (an in-memory server restarted): `history` is the room's newest.
    Fresh,
    /// Every message after `after` is in `history`, or, if `history` starts
    /// later than `after + 1`, still available through `history` paging.
    Resumed,
    /// The messages in `gap` were dropped by retention; everything after
    /// them is available as with `resumed`.
    Gap,
}

impl Resume {
    fn fresh() -> Self {
        Self::Fresh
    }
}

/// A range of messages that no longer exist.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Gap {
    /// The first missing `seq`.
    pub from: u64,
    /// The last missing `seq`.
    pub to: u64,
}

/// What a `presence` frame reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PresenceEvent {
    /// The nick joined the room.
    Join,
    /// The nick left the room (or its session ended).
    Leave,
    /// `old` is now known as `nick`.
    Nick,
    /// Every connection of the nick dropped: it keeps its place and may
    /// come back until its session ends (then `leave`).
    Away,
    /// The nick is connected again.
    Back,
}

/// Who answered `hello`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerInfo {
    /// The server's software name.
    pub name: String,
    /// The server's software version.
    pub version: String,
    /// The protocol version spoken.
    pub protocol: u32,
    /// In cluster mode, which node this connection reached (its
    /// `--node-id`); absent on a single server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
}

/// The limits a server enforces, announced in `welcome`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    /// The largest WebSocket message accepted, in bytes; larger closes the
    /// connection with 1009.
    pub max_frame_bytes: u64,
    /// The longest `text` of a `say` or `dm`, in bytes.
    pub max_text_bytes: u64,
    /// The longest nick, in characters.
    pub max_nick_chars: u64,
    /// The longest room name, in characters.
    pub max_room_chars: u64,
    /// Messages kept per room for `history`.
    pub history_per_room: u64,
    /// The largest `limit` of a `history` request.
    pub history_page_max: u64,
    /// Messages included in `joined`.
    pub join_history: u64,
    /// The shortest interval between two `typing` frames relayed for one
    /// member and room, in milliseconds.
    pub typing_interval_ms: u64,
    /// Sustained `say` and `dm` frames allowed per second.
    pub messages_per_sec: u64,
    /// How many `say` and `dm` frames may come in a burst.
    pub messages_burst: u64,
    /// The most rooms one session may be in (`limit_reached` past it).
    /// Servers before this field announced none; 0 means unknown.
    #[serde(default)]
    pub max_rooms_per_session: u64,
    /// The most members a room may have (`limit_reached` past it).
    #[serde(default)]
    pub max_members_per_room: u64,
    /// Sustained joins of new rooms allowed per second.
    #[serde(default)]
    pub joins_per_sec: u64,
    /// How many new rooms may be joined in a burst.
    #[serde(default)]
    pub joins_burst: u64,
    /// Sustained frames of any kind allowed per second per connection.
    #[serde(default)]
    pub frames_per_sec: u64,
    /// How many frames of any kind may come in a burst.
    #[serde(default)]
    pub frames_burst: u64,
    /// The largest file an `upload` may announce, in bytes; 0 if uploads
    /// are off (or the server predates them).
    #[serde(default)]
    pub max_upload_bytes: u64,
    /// How long after sending a message its sender may edit it, in
    /// milliseconds (0: this server does not say).
    #[serde(default)]
    pub edit_window_ms: u64,
    /// The most shared documents one room may hold (0: this server does
    /// not say).
    #[serde(default)]
    pub max_docs_per_room: u64,
}

/// One second of the counters, in `stats_history`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatsPoint {
    /// When, in unix milliseconds.
    pub ts: u64,
    /// Messages accepted in that second.
    pub messages_per_sec: u64,
    /// Connections open then.
    pub connections: u64,
}

/// A shared document of a room, as its list shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DocInfo {
    /// What it is opened by (`/yjs/ROOM/NAME`): never changes.
    pub name: String,
    /// What it is called.
    pub title: String,
    /// Who edited it last (or created it).
    pub edited_by: String,
    /// When, in milliseconds since the Unix epoch.
    pub edited_at: u64,
}

/// A past version of a shared document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DocVersion {
    /// What `doc_restore` names it by.
    pub version: u64,
    /// When it was taken, in milliseconds since the Unix epoch.
    pub ts: u64,
    /// The size of its state, in bytes.
    pub bytes: u64,
}

/// A room and how many members it has.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoomInfo {
    /// The room name.
    pub name: String,
    /// The number of members.
    pub members: u64,
    /// Its topic, if it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topic: Option<String>,
}

impl ServerFrame {
    /// Every `type` value a server frame may carry.
    pub const TYPES: &'static [&'static str] = &[
        "welcome",
        "joined",
        "doc",
        "doc_versions",
        "topic",
        "read",
        "left",
        "presence",
        "presence_batch",
        "message",
        "direct",
        "conversation",
        "conversations",
        "nick",
        "typing",
        "typing_batch",
        "rooms",
        "members",
        "history",
        "upload_ready",
        "subscribed",
        "stats",
        "stats_history",
        "pong",
        "authed",
        "error",
    ];

    /// Encodes the frame as the JSON text sent on the wire.
    #[allow(clippy::expect_used)]
    pub fn encode(&self) -> String {
        // Serializing these plain types cannot fail: every map key is a
        // string and no value has a fallible `Serialize`. A failure would be
        // a broken invariant of this crate, not bad input.
        serde_json::to_string(self).expect("server frames always serialize")
    }

    /// Decodes a frame received from the server.
    ///
    /// # Errors
    /// Fails when the text is not a server frame this crate knows.
    pub fn decode(text: &str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(text)
    }
}
