use crate::Identity;

/// One request from a member, with names still as the user typed them.
///
/// The core parses names itself ([`Nick::parse`](crate::Nick::parse),
/// [`RoomName::parse`](crate::RoomName::parse)) so every rule and every
/// refusal lives in one place, whatever frontend the command came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Take a nick; the first command of every member. Without a nick the
    /// core assigns `guest-NNNN`.
    Hello {
        /// The nick wanted, for a new session.
        nick: Option<String>,
        /// The token of a session to resume. If no such session exists (it
        /// expired, or the server restarted), a new session takes this token,
        /// so retries keyed on it stay deduplicated.
        session: Option<String>,
        /// The verified identity from the client's access token, if it sent
        /// one. Required when [`ChatConfig::require_identity`] is on; binds
        /// the session to its nick, and resumes the session holding that
        /// nick if there is one.
        ///
        /// [`ChatConfig::require_identity`]: crate::ChatConfig::require_identity
        identity: Option<Identity>,
    },
    /// Join a room, creating it if it does not exist.
    Join {
        /// The room name.
        room: String,
        /// Resume: the `seq` of the last message the client saw in this room.
        after: Option<u64>,
    },
    /// Leave a room.
    Leave {
        /// The room name.
        room: String,
    },
    /// Send a message to a joined room.
    Say {
        /// The room name.
        room: String,
        /// The text.
        text: String,
        /// An action (`/me`).
        action: bool,
        /// A file the application stored for this message; the text may
        /// then be empty.
        attachment: Option<std::sync::Arc<crate::Attachment>>,
    },
    /// Send a direct message: to the session holding the nick, or the
    /// other party of one of this session's conversations known by it
    /// (even when it is away or gone), or, with identities, to the
    /// identity, whether or not it is here.
    Dm {
        /// The recipient.
        to: Peer,
        /// The text.
        text: String,
    },
    /// Catch up with a conversation: its messages after `after` (or its
    /// newest), or with `before` a page of older ones.
    Conversation {
        /// The other party.
        with: Peer,
        /// The `seq` of the last message seen.
        after: Option<u64>,
        /// Only messages with a lower `seq` (paging back).
        before: Option<u64>,
        /// At most this many messages, when paging back.
        limit: Option<u32>,
    },
    /// List this session's conversations.
    Conversations,
    /// Edit one's own message `seq` of a joined room, within the edit
    /// window: a new message of the room carries the change.
    Edit {
        /// The room name.
        room: String,
        /// The message to edit.
        seq: u64,
        /// Its new text.
        text: String,
    },
    /// Delete one's own message `seq` of a joined room: its text and file
    /// are gone, for everyone and from storage.
    Delete {
        /// The room name.
        room: String,
        /// The message to delete.
        seq: u64,
    },
    /// Create a document in a joined room, titled `title` (its name is
    /// made from the title, unique in the room).
    DocCreate {
        /// The room name.
        room: String,
        /// The title: one line.
        title: String,
    },
    /// Give a joined room's document another title.
    DocRename {
        /// The room name.
        room: String,
        /// The document's name.
        doc: String,
        /// Its new title.
        title: String,
    },
    /// List the past versions of a joined room's document.
    DocVersions {
        /// The room name.
        room: String,
        /// The document's name.
        doc: String,
    },
    /// Make a joined room's document as it was at one of its versions, as
    /// a new edit everyone sees.
    DocRestore {
        /// The room name.
        room: String,
        /// The document's name.
        doc: String,
        /// The version (as `DocVersions` lists them).
        version: u64,
    },
    /// Delete a joined room's document, with its content.
    DocDelete {
        /// The room name.
        room: String,
        /// The document's name.
        doc: String,
    },
    /// Set a joined room's topic (empty: clear it).
    Topic {
        /// The room name.
        room: String,
        /// The topic.
        topic: String,
    },
    /// This connection's person has read up to `seq` of a joined room or
    /// of one of its conversations (by key): the session's other
    /// connections are told, so what is read on one device is read on all.
    Read {
        /// The room name, or...
        room: Option<String>,
        /// ...a conversation's key.
        conversation: Option<String>,
        /// The newest `seq` read.
        seq: u64,
    },
    /// Change nick.
    Nick {
        /// The new nick.
        nick: String,
    },
    /// Tell a room's other members that this member is typing.
    Typing {
        /// The room name.
        room: String,
    },
    /// List the rooms.
    Rooms,
    /// List a room's members.
    Who {
        /// The room name.
        room: String,
        /// Only members after this nick (in nick order): the next page.
        after: Option<String>,
        /// Only members whose nick starts with this (case-insensitively, as
        /// nicks compare): for completion and @-mentions.
        prefix: Option<String>,
        /// At most this many (default and most: `member_page_max`).
        limit: Option<u32>,
    },
    /// Page back through a joined room's history.
    History {
        /// The room name.
        room: String,
        /// Only messages with a lower `seq`.
        before: Option<u64>,
        /// At most this many messages.
        limit: Option<u32>,
    },
    /// Liveness check.
    Ping,
    /// Renew the session's identity with a fresh token's (same nick).
    Auth {
        /// The verified identity.
        identity: Identity,
    },
}

/// Who a direct message or a conversation is with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Peer {
    /// A nick (see [`Command::Dm`] for whom it reaches).
    Nick(String),
    /// One of the session's conversations, by its public key (see
    /// [`RoomName::conversation_key`]): reaches the party it was with,
    /// whatever nick it has now or whoever holds its old nick.
    ///
    /// [`RoomName::conversation_key`]: crate::RoomName::conversation_key
    Conversation(String),
}
