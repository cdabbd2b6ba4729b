use std::time::Duration;

use crate::Rate;

/// The rules a [`Chat`](crate::Chat) enforces. Every field has a default
/// chosen for a team or community server; see [`ChatConfig::default`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatConfig {
    /// The longest `say` or `dm` text, in bytes. Default 8192: a long
    /// paste of code fits, a flood of megabytes does not.
    pub max_text_bytes: usize,
    /// Messages each room keeps for `history`, `joined` and resume.
    /// Default 1000; older messages are dropped.
    pub history_per_room: usize,
    /// How long a message is kept at most; older ones are dropped (checked
    /// every minute). Default `None`: kept until `history_per_room` pushes
    /// them out.
    pub history_max_age: Option<Duration>,
    /// Messages sent in a `joined` without `after`. Default 50: a screenful
    /// of context; older ones are a `history` request away.
    pub join_history: usize,
    /// The most messages a resuming `joined` (with `after`) carries; the
    /// newest are sent and the rest can be paged with `history`. Default 200.
    pub resume_max: usize,
    /// The default `limit` of a `history` request. Default 50.
    pub history_page_default: usize,
    /// The most members `joined` lists, and the largest page of `who`.
    /// Default 200: a small room's whole list; a big room's first page,
    /// the rest asked for as it is scrolled or searched.
    pub member_page_max: usize,
    /// In a room of more than [`ChatConfig::member_page_max`] members,
    /// presence (joins, leaves, away, back, renames) goes out at most once
    /// per this interval, as one batch. Default 1 s: a join storm costs
    /// each member a frame a second, not a frame a join.
    pub presence_interval: Duration,
    /// Who numbers the rooms' messages. Default [`Sequencing::Alone`].
    pub sequencing: Sequencing,
    /// In [`Sequencing::Shared`] mode, how every core names a session to
    /// the others: the key its engine knows it by ([`RemoteMember::key`]),
    /// which is also the session's party in conversations, so that a core
    /// can write to a session another core serves. The driver's digest of
    /// the token (a token is a secret; its key is not), the same on every
    /// core. Unused by a core alone. Default: the token itself.
    ///
    /// [`RemoteMember::key`]: crate::RemoteMember::key
    pub session_key: SessionKey,
    /// How long after sending a message its sender may still edit it.
    /// Default 15 minutes: long enough to fix a typo, short enough that a
    /// conversation is not rewritten under those who answered it. Deleting
    /// one's own message has no window.
    pub edit_window: Duration,
    /// The largest `limit` of a `history` request; larger ones are clamped.
    /// Default 200.
    pub history_page_max: usize,
    /// The shortest interval between two `typing` notices relayed for one
    /// member in one room; extra ones are dropped. Default 2 s.
    pub typing_interval: Duration,
    /// Sustained `say` and `dm` frames per second per member. Default 10:
    /// far above what a person types, low enough to stop a flood.
    pub messages_per_sec: u32,
    /// How many `say` and `dm` frames a member may send in a burst.
    /// Default 30, so a pasted block of lines goes through.
    pub messages_burst: u32,
    /// The most rooms held in memory at once. A room nobody is in is only
    /// cached: when this is reached, the one idle longest makes way (its
    /// history stays in storage and comes back with the next join). Only
    /// when every room has members is a new one refused. Default 10 000.
    pub max_rooms: usize,
    /// Rooms one session may create (join while no one has ever used them).
    /// Default 60 an hour, bursts of 10: a person opens a few rooms, not
    /// thousands.
    pub rooms_created_per_session: Rate,
    /// Rooms the sessions of one [`Source`](crate::Source) (an address) may
    /// create together. Default 300 an hour, bursts of 30, so many
    /// connections from one address cannot fill the room limit either.
    pub rooms_created_per_source: Rate,
    /// Sessions waiting to be resumed that one source may hold. Past it
    /// the one detached longest ends at once. Default 256, as many as the
    /// server's connections per address: an office behind one NAT whose
    /// network blips keeps every session, and a client that connects and
    /// vanishes by the thousand cannot fill a room with ghosts.
    pub max_detached_per_source: usize,
    /// Bytes of history the rooms may hold in memory together (for
    /// `joined`, `history` and resume). Past it the windows of the rooms
    /// used longest ago are dropped from memory; storage still has them and
    /// they are read back when asked for. Default 256 MiB.
    pub history_memory_max: usize,
    /// Bytes of history one connection may be sent in `history` answers
    /// and `joined` backlogs. A page that does not fit is shortened (never
    /// to nothing: then `history` is refused with `rate_limited`).
    /// Default 512 KiB a second, bursts of 4 MiB: a full resume of every
    /// room fits, a loop of requests for the largest page does not.
    pub history_bytes_per_conn: Rate,
    /// Bytes one session may upload. Default 256 MiB an hour, all at once
    /// if it likes.
    pub upload_bytes_per_session: Rate,
    /// Bytes the sessions of one source may upload together. Default 1 GiB
    /// an hour.
    pub upload_bytes_per_source: Rate,
    /// Whether `rooms` lists every room (that the session's token allows)
    /// with its member count. Off: it lists only the session's own rooms.
    /// Either way `who` answers only for rooms the session is in. Default
    /// on: a community finds its rooms.
    pub public_rooms: bool,
    /// Bytes of message text the remembered ids may keep alive. Past it
    /// the session holding the most gives up its oldest, so one client
    /// flooding long messages cannot push out the ids of everyone else.
    /// Default 64 MiB.
    pub dedupe_max_bytes: usize,
    /// Connections one session may have at once (tabs, devices); one more
    /// closes the oldest (`SessionResumedElsewhere`). Default 16.
    pub max_connections_per_session: usize,
    /// Whether every `hello` must carry an [`Identity`](crate::Identity)
    /// (the driver verified an access token). Default off.
    pub require_identity: bool,
    /// The most rooms one session may be in. Default 100.
    pub max_rooms_per_session: usize,
    /// Shared documents one room may hold. Default 100.
    pub max_docs_per_room: usize,
    /// Rooms whose documents members may read but not change (created,
    /// renamed, deleted or edited). Default none.
    pub read_only_docs: Vec<crate::RoomPattern>,
    /// The most members one room may have. Default 10 000.
    pub max_members_per_room: usize,
    /// Sustained joins of rooms not yet joined, per second per session.
    /// Re-joining a room the session is in (as every reconnect does) is
    /// free. Default 5.
    pub joins_per_sec: u32,
    /// How many new rooms a session may join in a burst. Default 50, so a
    /// client auto-joining its usual rooms goes through.
    pub joins_burst: u32,
    /// How long a disconnected session keeps its nick and rooms, waiting
    /// for its client to come back, before the others see it leave.
    /// Default 60 s: long enough for a laptop to change networks or a
    /// server to restart.
    pub session_grace: Duration,
    /// How long a `(session, id)` of an accepted `say` or `dm` is
    /// remembered, so a retry is answered with the original instead of
    /// being accepted twice. Default 1 hour.
    pub dedupe_window: Duration,
    /// The most `(session, id)` pairs remembered; the oldest go first.
    /// Default 100 000.
    pub dedupe_max: usize,
}

impl Default for ChatConfig {
    fn default() -> Self {
        Self {
            max_text_bytes: 8192,
            history_per_room: 1000,
            history_max_age: None,
            join_history: 50,
            resume_max: 200,
            history_page_default: 50,
            edit_window: Duration::from_secs(15 * 60),
            member_page_max: 200,
            presence_interval: Duration::from_secs(1),
            sequencing: Sequencing::Alone,
            session_key: SessionKey::default(),
            history_page_max: 200,
            typing_interval: Duration::from_secs(2),
            messages_per_sec: 10,
            messages_burst: 30,
            max_rooms: 10_000,
            rooms_created_per_session: Rate::per_hour(60, 10),
            rooms_created_per_source: Rate::per_hour(300, 30),
            max_detached_per_source: 256,
            history_memory_max: 256 << 20,
            history_bytes_per_conn: Rate::per_sec(512 << 10, 4 << 20),
            upload_bytes_per_session: Rate::per_hour(256 << 20, 256 << 20),
            upload_bytes_per_source: Rate::per_hour(1 << 30, 1 << 30),
            public_rooms: true,
            dedupe_max_bytes: 64 << 20,
            max_connections_per_session: 16,
            require_identity: false,
            max_rooms_per_session: 100,
            max_docs_per_room: 100,
            read_only_docs: Vec::new(),
            max_members_per_room: 10_000,
            joins_per_sec: 5,
            joins_burst: 50,
            session_grace: Duration::from_secs(60),
            dedupe_window: Duration::from_secs(3600),
            dedupe_max: 100_000,
        }
    }
}

/// Who gives a room's messages their `seq`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Sequencing {
    /// This core: it is the only one serving its rooms (one server).
    #[default]
    Alone,
    /// An engine several cores share (cluster mode): a message is handed
    /// out to be numbered ([`Output::Append`]) and comes back, numbered, to
    /// every core serving its room ([`Chat::handle_appended`]), in `seq`
    /// order. Its room's members here get it only then, its sender included.
    ///
    /// [`Output::Append`]: crate::Output::Append
    /// [`Chat::handle_appended`]: crate::Chat::handle_appended
    Shared,
}

/// How a session is named to the other cores, from its token
/// ([`ChatConfig::session_key`]): a plain function, so that the core stays
/// deterministic.
#[derive(Clone, Copy)]
pub struct SessionKey(pub fn(&str) -> String);

impl SessionKey {
    /// The key of the session of `token`.
    pub(crate) fn of(self, token: &str) -> String {
        (self.0)(token)
    }
}

impl Default for SessionKey {
    fn default() -> Self {
        Self(str::to_owned)
    }
}

impl PartialEq for SessionKey {
    fn eq(&self, other: &Self) -> bool {
        std::ptr::fn_addr_eq(self.0, other.0)
    }
}

impl Eq for SessionKey {}

impl std::fmt::Debug for SessionKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SessionKey(..)")
    }
}
