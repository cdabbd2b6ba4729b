use std::sync::Arc;

use crate::{CommandError, MemberId, Nick, RoomName, SessionToken, Timestamp};

/// An instruction from the core to its driver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Send `event` to every member in `to`. A fan-out is one output: the
    /// driver should encode the event once and share the bytes.
    Deliver {
        /// The recipients, each at most once.
        to: Arc<[MemberId]>,
        /// What to send them.
        event: Arc<Event>,
    },
    /// Store this record durably. Every output after it must wait until it
    /// is stored: deliveries that follow may show it to someone.
    Persist(Record),
    /// Close `member`'s connection: it is no longer part of the chat, and
    /// commands from it are ignored.
    Disconnect {
        /// The connection to close.
        member: MemberId,
        /// Why.
        reason: DisconnectReason,
    },
    /// Read what storage holds of this room (its last `seq` and retained
    /// messages) and answer with [`Chat::handle_loaded`] or
    /// [`Chat::handle_load_failed`]. The read must see every record
    /// persisted before this output. Commands that need the room wait for
    /// the answer; at most one load per room is out at a time.
    ///
    /// [`Chat::handle_loaded`]: crate::Chat::handle_loaded
    /// [`Chat::handle_load_failed`]: crate::Chat::handle_load_failed
    Load(RoomName),
    /// In [`Sequencing::Shared`] mode only: number `message` (its `seq` is
    /// 0 here) as the next message of its room in the engine the cores
    /// share, and hand it to every core serving the room with
    /// [`Chat::handle_appended`], each room's messages in `seq` order. Its
    /// sender (`message.sender`) and id make it once: if that id was
    /// appended before, answer [`Chat::handle_duplicate`] with the original
    /// for `member`, the connection that asked, instead.
    ///
    /// [`Sequencing::Shared`]: crate::Sequencing::Shared
    /// [`Chat::handle_appended`]: crate::Chat::handle_appended
    /// [`Chat::handle_duplicate`]: crate::Chat::handle_duplicate
    Append {
        /// The connection that sent it.
        member: MemberId,
        /// The message, to be numbered.
        message: Message,
    },
    /// In [`Sequencing::Shared`] mode only: `room`, which this core had
    /// asked for ([`Output::Load`]), is no longer held here (nobody here is
    /// in it and it made way): stop following it until it is asked for
    /// again.
    ///
    /// [`Sequencing::Shared`]: crate::Sequencing::Shared
    Forget(RoomName),
    /// Document `doc` of `room` was deleted: close its connections and
    /// (`content`: this core deleted it; other cores say `false`) drop what
    /// is stored of it.
    DropDoc {
        /// The room.
        room: RoomName,
        /// The document.
        doc: RoomName,
        /// Whether its content is to be dropped from storage here.
        content: bool,
    },
    /// A member asks for the past versions of document `doc` of `room`,
    /// which it may read: answer it (the driver keeps versions) with the
    /// request id.
    ListVersions {
        /// Who asked.
        member: MemberId,
        /// The request id.
        id: Option<Arc<str>>,
        /// The room.
        room: RoomName,
        /// The document.
        doc: RoomName,
    },
    /// A member, who may change document `doc` of `room`, asks for it to
    /// be made as it was at `version`, as a new edit: the driver does it
    /// and answers with [`Chat::handle_doc_restored`](crate::Chat::handle_doc_restored).
    RestoreDoc {
        /// Who asked.
        member: MemberId,
        /// The request id.
        id: Option<Arc<str>>,
        /// The room.
        room: RoomName,
        /// The document.
        doc: RoomName,
        /// The version wanted.
        version: u64,
    },
    /// In [`Sequencing::Shared`] mode only: as [`Output::Append`], a direct
    /// message to number in its conversation's log (`direct.message.room`
    /// names it), which comes back to the cores serving either party, with
    /// [`Chat::handle_appended`], in `seq` order, each once (a party's
    /// core follows the party, see [`Output::Conversations`]). Keep the
    /// conversation in each party's list with `direct.nicks`.
    ///
    /// [`Sequencing::Shared`]: crate::Sequencing::Shared
    /// [`Chat::handle_appended`]: crate::Chat::handle_appended
    AppendDirect {
        /// The connection that sent it.
        member: MemberId,
        /// The message, to be numbered, and the parties' nicks.
        direct: Direct,
    },
    /// In [`Sequencing::Shared`] mode only: the session of `token`, here
    /// now (it started, moved here, or was restored), speaks as `party` in
    /// conversations. Give this core every direct message of the party's
    /// conversations from now on, whichever core sends it, until the
    /// session ends or moves on (with [`Chat::handle_appended`]), and the
    /// party's list of conversations with [`Chat::handle_conversations`]
    /// (its connection's next commands wait for that).
    ///
    /// [`Sequencing::Shared`]: crate::Sequencing::Shared
    /// [`Chat::handle_appended`]: crate::Chat::handle_appended
    /// [`Chat::handle_conversations`]: crate::Chat::handle_conversations
    Conversations {
        /// The party.
        party: Arc<str>,
        /// Its session here.
        token: SessionToken,
    },
    /// In [`Sequencing::Shared`] mode only: a direct message or a
    /// conversation names `nick`, which no session here holds. Which
    /// session holds it on another core (its key, see
    /// [`ChatConfig::session_key`], and its nick as written)? Answer with
    /// [`Chat::handle_whois`].
    ///
    /// [`Sequencing::Shared`]: crate::Sequencing::Shared
    /// [`ChatConfig::session_key`]: crate::ChatConfig::session_key
    /// [`Chat::handle_whois`]: crate::Chat::handle_whois
    Whois {
        /// The nick.
        nick: Nick,
    },
    /// In [`Sequencing::Shared`] mode only: claim `nick` for the session
    /// named `token` in the engine the cores share: granted if no other
    /// session holds it (or this one already does), taken if one does.
    /// Answer with [`Chat::handle_claimed`]. While granted, the engine
    /// keeps it this session's (across all cores) until an
    /// [`Output::Release`] of it, or until this core is gone.
    ///
    /// [`Sequencing::Shared`]: crate::Sequencing::Shared
    /// [`Chat::handle_claimed`]: crate::Chat::handle_claimed
    Claim {
        /// The nick; its folded form is what is unique.
        nick: Nick,
        /// The session it is for.
        token: SessionToken,
    },
    /// In [`Sequencing::Shared`] mode only: tell the other cores serving
    /// `room` what a member here did (its presence changed, or it is
    /// typing), so that they show it to their members of the room with
    /// [`Chat::handle_remote`], naming the member by a key of the engine's
    /// (the same for all its changes in the room; a digest of `token`,
    /// which must not be shown). Changes of one session come in order.
    /// Who is in a room elsewhere comes with its load
    /// ([`RoomHistory::remote`]).
    ///
    /// [`Sequencing::Shared`]: crate::Sequencing::Shared
    /// [`Chat::handle_remote`]: crate::Chat::handle_remote
    Share {
        /// The room.
        room: RoomName,
        /// The member's session.
        token: SessionToken,
        /// What it did.
        change: Shared,
    },
    /// In [`Sequencing::Shared`] mode only: the `hello` of `member` brought
    /// `token`, which names no session here. Find whether a session of it
    /// lives on another core (or did until that core died) and answer with
    /// [`Chat::handle_found`]; if one does, its nick's claim becomes this
    /// core's (it is released from here like any other) and that core is
    /// told it moved ([`Chat::handle_moved`] there).
    ///
    /// [`Sequencing::Shared`]: crate::Sequencing::Shared
    /// [`Chat::handle_found`]: crate::Chat::handle_found
    /// [`Chat::handle_moved`]: crate::Chat::handle_moved
    Lookup {
        /// The connection that said hello.
        member: MemberId,
        /// The token it brought.
        token: SessionToken,
    },
    /// In [`Sequencing::Shared`] mode only: the session named `token` lets
    /// go of `nick` (it ended or was renamed). Free it in the shared
    /// engine if that session still holds it, and never otherwise.
    ///
    /// [`Sequencing::Shared`]: crate::Sequencing::Shared
    Release {
        /// The nick.
        nick: Nick,
        /// The session that held it.
        token: SessionToken,
    },
}

/// What storage holds of a room, the answer to [`Output::Load`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RoomHistory {
    /// The highest `seq` ever given out in the room.
    pub last_seq: u64,
    /// Its retained messages, oldest first.
    pub messages: Vec<Message>,
    /// Its topic, if one was set.
    pub topic: Option<Arc<str>>,
    /// Its shared documents, in name order.
    pub docs: Vec<DocEntry>,
    /// In [`Sequencing::Shared`] mode, who is in the room on the other
    /// cores (their changes come after with [`Chat::handle_remote`]).
    ///
    /// [`Sequencing::Shared`]: crate::Sequencing::Shared
    /// [`Chat::handle_remote`]: crate::Chat::handle_remote
    pub remote: Vec<RemoteMember>,
}

/// A member of a room on another core (cluster mode).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteMember {
    /// The engine's key for it (a digest of its session's token; of a
    /// token's form: ASCII letters, digits, `-`, `_`).
    pub key: Arc<str>,
    /// Its nick.
    pub nick: Nick,
    /// Whether every connection of its session dropped.
    pub away: bool,
}

/// What a member did that the other cores serving its room must show
/// ([`Output::Share`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Shared {
    /// Its presence changed.
    Presence(Presence),
    /// It is typing (already throttled by its core).
    Typing(Nick),
    /// It set the room's topic (`None`: cleared it).
    Topic {
        /// The topic.
        topic: Option<Arc<str>>,
        /// Who set it.
        by: Nick,
    },
    /// It created, renamed, edited or deleted one of the room's documents.
    Doc {
        /// What it did.
        action: DocAction,
        /// The document as it is now (as it was, if deleted).
        doc: DocEntry,
        /// Who did it.
        by: Nick,
    },
}

/// A shared document of a room, as the room's document list shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DocEntry {
    /// What it is opened by (`/yjs/ROOM/NAME`): never changes.
    pub name: RoomName,
    /// What it is called: one line, renamed freely.
    pub title: Arc<str>,
    /// Who edited it last (or created it).
    pub edited_by: Nick,
    /// When (announced at most every [`DOC_EDITS_EVERY`] per document).
    pub edited_at: Timestamp,
}

/// What was done to a room's document.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DocAction {
    /// Created (with `doc_create`, or by a first edit of a new name).
    Created,
    /// Given another title.
    Renamed,
    /// Edited.
    Edited,
    /// Deleted, with its content.
    Deleted,
    /// Made as it was at a past version, as a new edit.
    Restored,
}

impl DocAction {
    /// The action's name on the wire and in storage.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Created => "created",
            Self::Renamed => "renamed",
            Self::Edited => "edited",
            Self::Deleted => "deleted",
            Self::Restored => "restored",
        }
    }

    /// The action a name says.
    pub fn parse(name: &str) -> Option<Self> {
        [Self::Created, Self::Renamed, Self::Edited, Self::Deleted, Self::Restored]
            .into_iter()
            .find(|action| action.as_str() == name)
    }
}

/// Edits of one document are announced (and stored in its list entry) at
/// most this often: a list says who edited last, not every keystroke.
pub const DOC_EDITS_EVERY: std::time::Duration = std::time::Duration::from_secs(10);

/// What must survive a restart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    /// A room message.
    Message(Message),
    /// A direct message: a message of a conversation, kept like a room's.
    Direct(Direct),
    /// A session began or changed its nick: after a restart it is restored
    /// (detached, for the grace period), so its token still resumes it and
    /// no one else takes its nick meanwhile.
    Session {
        /// The session's token.
        token: SessionToken,
        /// Its nick now.
        nick: Nick,
    },
    /// A session ended: nothing of it is restored.
    SessionEnded(SessionToken),
    /// A room's topic was set (`None`: cleared).
    Topic {
        /// The room.
        room: RoomName,
        /// Its topic now.
        topic: Option<Arc<str>>,
    },
    /// A room's document list changed: keep this entry (or, `deleted`,
    /// drop it).
    Doc {
        /// The room.
        room: RoomName,
        /// The document's entry.
        doc: DocEntry,
        /// Whether it was deleted.
        deleted: bool,
    },
}

/// A direct message as stored: a message of the conversation between two
/// parties (its `room` is the conversation's name, see
/// [`RoomName::is_conversation`]), numbered like a room's, with the nicks
/// the two parties had.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Direct {
    /// The message; `from` is the sender's nick.
    pub message: Message,
    /// The two parties' nicks when it was sent, in the order of the
    /// conversation's name.
    pub nicks: [Nick; 2],
}

/// A conversation as storage summarizes it, read at startup: who is in
/// it, how far it is numbered, and when it last had a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conversation {
    /// Its name (see [`RoomName::is_conversation`]).
    pub name: RoomName,
    /// The two parties' nicks as of its last message, in name order.
    pub nicks: [Nick; 2],
    /// The `seq` of its last message.
    pub last_seq: u64,
    /// When that was.
    pub last_ts: Timestamp,
}

/// A room as `rooms` lists it: the room directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomListing {
    /// Its name.
    pub name: RoomName,
    /// How many are in it.
    pub members: usize,
    /// Its topic, if it has one.
    pub topic: Option<Arc<str>>,
}

/// One line of the answer to `conversations`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConversationSummary {
    /// Its public key (see [`RoomName::conversation_key`]).
    pub key: String,
    /// The other party's nick (its nick now, if it is here).
    pub with: Nick,
    /// The `seq` of the conversation's last message.
    pub last_seq: u64,
    /// When that was.
    pub last_ts: Timestamp,
}

/// How a connection ended, as the driver saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Departure {
    /// The client closed deliberately (a WebSocket close with 1000): its
    /// session ends at once.
    Quit,
    /// The connection broke or was closed for another reason: the session
    /// waits for the client to come back.
    Lost,
}

/// Why the core asks for a connection to be closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DisconnectReason {
    /// Another connection resumed this connection's session.
    SessionResumedElsewhere,
    /// The session's identity expired without being renewed; the session
    /// ended.
    IdentityExpired,
    /// A room the connection is in started its numbering again (cluster
    /// mode: the shared engine lost it), or messages of it are gone from
    /// the shared engine before this core had them. The session goes on:
    /// its client should come back at once, and its join of the room is
    /// answered as fresh, or with the gap.
    RoomReset,
}

/// How a `joined` relates to where the client said it was (`after`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resume {
    /// No `after` was given, or the room's numbering does not reach it (an
    /// in-memory server restarted): the history is the room's newest.
    Fresh,
    /// Every message after `after` is still kept: `history` holds them (the
    /// newest `resume_max`; older ones can be paged with `history`).
    Resumed,
    /// Messages `from..=to` were dropped by retention before the client came
    /// back; everything after `to` is kept.
    Gap {
        /// The first lost `seq`.
        from: u64,
        /// The last lost `seq`.
        to: u64,
    },
}

/// Something a member is told.
///
/// Events that answer a command carry that command's request `id`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The answer to `hello`.
    Welcome {
        /// The request id.
        id: Option<Arc<str>>,
        /// The nick the member now holds.
        nick: Nick,
        /// The session's token, to present when resuming.
        session: SessionToken,
        /// Whether an existing session was resumed.
        resumed: bool,
        /// The rooms a resumed session is in, by name, so that a new device
        /// shows them too; empty for a new session.
        rooms: Vec<RoomName>,
        /// When the session's identity expires, if it has one.
        expires: Option<Timestamp>,
    },
    /// The answer to `join`.
    Joined {
        /// The request id.
        id: Option<Arc<str>>,
        /// The room.
        room: RoomName,
        /// Its members, the joiner included, in nick order: all of them, or
        /// in a room of more than [`ChatConfig::member_page_max`] the first
        /// page (`who` pages on).
        ///
        /// [`ChatConfig::member_page_max`]: crate::ChatConfig::member_page_max
        members: Vec<Nick>,
        /// How many members the room has.
        member_count: usize,
        /// Those of them who are away (every connection dropped), sorted.
        away: Vec<Nick>,
        /// Its newest messages, oldest first.
        history: Vec<Message>,
        /// The `seq` of its newest message, 0 if none.
        last_seq: u64,
        /// How `history` relates to the `after` asked for.
        resume: Resume,
        /// The room's topic, if it has one.
        topic: Option<Arc<str>>,
        /// The room's shared documents, in name order.
        docs: Vec<DocEntry>,
        /// Whether they are read-only to this session.
        docs_read_only: bool,
    },
    /// In a big room: the presence changes of the last interval, in order
    /// (the first [`PRESENCE_BATCH_MAX`] of them; `more` says how many
    /// others), to everyone in the room.
    PresenceBatch {
        /// The room.
        room: RoomName,
        /// What happened, oldest first.
        changes: Vec<Presence>,
        /// Changes past the first [`PRESENCE_BATCH_MAX`], only counted.
        more: usize,
        /// How many members the room has now.
        members: usize,
    },
    /// In a big room: who started typing in the last interval (the first
    /// [`TYPING_BATCH_MAX`]; `more` counts the others), to everyone.
    TypingBatch {
        /// The room.
        room: RoomName,
        /// Who, in the order they started.
        nicks: Vec<Nick>,
        /// How many others.
        more: usize,
    },
    /// A member created, renamed, edited or deleted a document of a room:
    /// to everyone in the room.
    Doc {
        /// The request id (for the one who did it).
        id: Option<Arc<str>>,
        /// The room.
        room: RoomName,
        /// What was done.
        action: DocAction,
        /// The document as it is now (as it was, if deleted).
        doc: DocEntry,
        /// Who did it.
        by: Nick,
    },
    /// A member set a room's topic: to everyone in the room.
    Topic {
        /// The request id (for the one who set it).
        id: Option<Arc<str>>,
        /// The room.
        room: RoomName,
        /// The topic now (`None`: cleared).
        topic: Option<Arc<str>>,
        /// Who set it.
        by: Nick,
    },
    /// Another connection of the session read up to `seq` of a room or a
    /// conversation.
    Read {
        /// The room, or...
        room: Option<RoomName>,
        /// ...the conversation's key.
        conversation: Option<Arc<str>>,
        /// The newest `seq` read.
        seq: u64,
    },
    /// The answer to `leave`.
    Left {
        /// The request id.
        id: Option<Arc<str>>,
        /// The room.
        room: RoomName,
    },
    /// Another member joined, left or was renamed in a room.
    Presence {
        /// The room.
        room: RoomName,
        /// What happened.
        change: Presence,
    },
    /// A room message, to every member of the room, its sender included.
    Message(Message),
    /// A direct message, to every connection of its recipient and of its
    /// sender (each side told who the other is).
    Direct {
        /// The request id.
        id: Option<Arc<str>>,
        /// The sender.
        from: Nick,
        /// The recipient.
        to: Nick,
        /// The other party, as the side told sees it: the recipient for
        /// the sender, the sender for the recipient.
        with: Nick,
        /// The text.
        text: Arc<str>,
        /// When the core accepted it.
        ts: Timestamp,
        /// Its place in the conversation: 1, 2, 3, …
        seq: u64,
        /// The conversation's public key (see
        /// [`RoomName::conversation_key`]).
        key: Arc<str>,
    },
    /// The answer to `conversation`: a conversation's messages after the
    /// `after` asked for (or its newest), or a page before `before`.
    Conversation {
        /// The request id.
        id: Option<Arc<str>>,
        /// The conversation's public key (see [`RoomName::conversation_key`]).
        key: Arc<str>,
        /// The other party.
        with: Nick,
        /// The messages, oldest first; `from` says whose each is.
        history: Vec<Message>,
        /// The `seq` of its newest message, 0 if none.
        last_seq: u64,
        /// How `history` relates to the `after` asked for.
        resume: Resume,
    },
    /// The answer to `conversations`: every conversation the session has,
    /// most recent first.
    Conversations {
        /// The request id.
        id: Option<Arc<str>>,
        /// The conversations.
        list: Vec<ConversationSummary>,
    },
    /// The answer to `nick`.
    NickChanged {
        /// The request id.
        id: Option<Arc<str>>,
        /// The previous nick.
        old: Nick,
        /// The nick now held.
        nick: Nick,
    },
    /// Another member is typing in a room.
    Typing {
        /// The room.
        room: RoomName,
        /// Who.
        nick: Nick,
    },
    /// The answer to `rooms`: every room and its member count, by name.
    Rooms {
        /// The request id.
        id: Option<Arc<str>>,
        /// The rooms, by name.
        rooms: Vec<RoomListing>,
    },
    /// The answer to `who`.
    Members {
        /// The request id.
        id: Option<Arc<str>>,
        /// The room.
        room: RoomName,
        /// Its members (this page of them), in nick order.
        members: Vec<Nick>,
        /// Those of them who are away, sorted.
        away: Vec<Nick>,
        /// How many members the room has.
        count: usize,
        /// Whether more match after this page.
        more: bool,
    },
    /// The answer to `history`.
    History {
        /// The request id.
        id: Option<Arc<str>>,
        /// The room.
        room: RoomName,
        /// The messages, oldest first.
        messages: Vec<Message>,
    },
    /// The answer to `ping`.
    Pong {
        /// The request id.
        id: Option<Arc<str>>,
    },
    /// The answer to `auth`: the session's identity was renewed.
    Authed {
        /// The request id.
        id: Option<Arc<str>>,
        /// When the new identity expires.
        expires: Timestamp,
    },
    /// A command was refused.
    Error {
        /// The request id.
        id: Option<Arc<str>>,
        /// Why.
        error: CommandError,
    },
}

/// The most typists an [`Event::TypingBatch`] names; past them it counts.
pub const TYPING_BATCH_MAX: usize = 5;

/// The most changes an [`Event::PresenceBatch`] names; past them it counts.
pub const PRESENCE_BATCH_MAX: usize = 50;

/// What a [`Event::Presence`] reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Presence {
    /// The nick joined.
    Joined(Nick),
    /// The nick left or disconnected.
    Left(Nick),
    /// Every connection of the nick's session dropped: it may come back
    /// (it still holds its place and its nick) until the session ends,
    /// when it leaves.
    Away(Nick),
    /// The nick's session is connected again.
    Back(Nick),
    /// `old` is now called `new`.
    Renamed {
        /// The previous nick.
        old: Nick,
        /// The new nick.
        new: Nick,
    },
}

/// A message in a room's history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// The room.
    pub room: RoomName,
    /// 1 for the room's first message, then +1 each, never reused.
    pub seq: u64,
    /// When the core accepted it.
    pub ts: Timestamp,
    /// The sender's nick at the time.
    pub from: Nick,
    /// The text.
    pub text: Arc<str>,
    /// An action (`/me`).
    pub action: bool,
    /// The request id of the `say`, so its sender can match the echo.
    pub id: Option<Arc<str>>,
    /// The sender's session, which with `id` makes the message unique. A
    /// secret: never shown to other members.
    pub sender: Option<SessionToken>,
    /// A file sent with the message (shared: a message is copied into
    /// every history page and resume that includes it).
    pub attachment: Option<Arc<Attachment>>,
    /// Said, or changed since, or a change to an earlier message.
    pub kind: MessageKind,
}

/// What a [`Message`] is. A change to an earlier message is itself a
/// message of the room, with its own `seq`, so every member applies it in
/// order and history and resume carry it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MessageKind {
    /// Said, as it was.
    #[default]
    Said,
    /// Said, then edited: its text is the latest.
    Edited,
    /// Said, then deleted by its sender: its text and file are gone.
    Deleted,
    /// Edits message `seq` of the room to this message's text.
    Edit(u64),
    /// Deletes message `seq` of the room.
    Delete(u64),
}

/// A file attached to a message. The core keeps what it is told: the
/// embedding application stores the bytes and checks them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attachment {
    /// The file's id (the application's; for chat-server, its SHA-256).
    pub id: Arc<str>,
    /// Its name, as the sender gave it.
    pub name: Arc<str>,
    /// Its media type.
    pub mime: Arc<str>,
    /// Its length in bytes.
    pub size: u64,
}
