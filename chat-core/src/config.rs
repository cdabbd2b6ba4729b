use std::time::Duration;

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
    /// The most rooms that may exist at once. Default 10 000.
    pub max_rooms: usize,
    /// Whether every `hello` must carry an [`Identity`](crate::Identity)
    /// (the driver verified an access token). Default off.
    pub require_identity: bool,
    /// The most rooms one session may be in. Default 100.
    pub max_rooms_per_session: usize,
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
            history_page_max: 200,
            typing_interval: Duration::from_secs(2),
            messages_per_sec: 10,
            messages_burst: 30,
            max_rooms: 10_000,
            require_identity: false,
            max_rooms_per_session: 100,
            max_members_per_room: 10_000,
            joins_per_sec: 5,
            joins_burst: 50,
            session_grace: Duration::from_secs(60),
            dedupe_window: Duration::from_secs(3600),
            dedupe_max: 100_000,
        }
    }
}
