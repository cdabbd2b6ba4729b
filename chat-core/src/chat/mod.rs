//! [`Chat`]: the state, its contract, and the entry points. The rules live
//! in the files beside this one, one concern each: `sessions.rs` (hello,
//! resume, identities, nicks, per-source limits), `rooms.rs` (joining,
//! leaving, loading rooms from storage, memory), `messages.rs` (say,
//! retries, typing, uploads, taking back what could not be stored),
//! `directs.rs` (direct messages as conversations between parties) and
//! `reads.rs` (history, who, rooms, file access) and, in cluster mode,
//! `claims.rs` (nicks agreed with the other cores), `remote.rs` (the
//! members other cores serve) and `moves.rs` (sessions moving between
//! cores).

mod claims;
mod directs;
mod docs;
mod messages;
mod moves;
mod reads;
mod remote;
mod rooms;
mod sessions;

pub use claims::ClaimAnswer;
pub use directs::Holder;
pub use docs::DocAccess;
pub use moves::Found;
use sessions::{Grant, Session, SourceState};

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use crate::bucket::TokenBucket;
use crate::dedupe::Dedupe;
use crate::id::SessionId;
use crate::room::Room;
use crate::{
    ChatConfig, Command, CommandError, Conversation, Departure, Event, MemberId, Message, Nick,
    Output, Record, RoomHistory, RoomId, RoomName, SessionToken, Shared, Source, Timestamp,
};

/// How often rooms are pruned of messages older than
/// [`ChatConfig::history_max_age`], and forgotten sources swept.
const SWEEP_EVERY: Duration = Duration::from_secs(60);

/// The whole chat: connections, sessions, rooms and their rules, with no IO.
///
/// A *member* ([`MemberId`]) is one connection. A *session* is who that
/// connection speaks for: a nick, the rooms joined and a [`SessionToken`].
/// When a connection drops, its session waits
/// [`ChatConfig::session_grace`] for a new connection to resume it (with
/// `hello {session}`); only then do the others see it leave, and its nick is
/// reserved until then.
///
/// Rooms are held in memory while used and read back from storage when
/// needed ([`Output::Load`]): a room nobody is in, or the older part of a
/// room's history, may be dropped from memory under the limits of
/// [`ChatConfig::max_rooms`] and [`ChatConfig::history_memory_max`].
///
/// # Contract
/// - Call [`Chat::handle_connect`] for each new connection, then
///   [`Chat::handle_command`] for each of its commands and
///   [`Chat::handle_disconnect`] once when it goes away.
/// - After each `handle_*` call, drain [`Chat::poll_output`] until it returns
///   `None` and carry out every [`Output`] in order; then read
///   [`Chat::poll_timeout`] and call [`Chat::handle_timeout`] once that time
///   has come. Spurious or late `handle_timeout` calls are harmless.
/// - Answer every [`Output::Load`] with [`Chat::handle_loaded`] or
///   [`Chat::handle_load_failed`], and every [`Output::Persist`] of a
///   message that could not be stored with [`Chat::handle_unstored`].
/// - With [`Sequencing::Shared`](crate::Sequencing::Shared), carry every
///   [`Output::Append`] to the engine the cores share, and give each core
///   the rooms' numbered messages with [`Chat::handle_appended`] (in `seq`
///   order) and a retry's original with [`Chat::handle_duplicate`].
///   With it too, answer every [`Output::Claim`] of a nick with
///   [`Chat::handle_claimed`] (a `hello` or `nick` waits for it), carry
///   out every [`Output::Release`], tell the other cores every
///   [`Output::Share`] and give each what the others shared with
///   [`Chat::handle_remote`], answer every [`Output::Lookup`] with
///   [`Chat::handle_found`], and tell the core a session left with
///   [`Chat::handle_moved`].
/// - `now` must not go backwards from one call to the next.
///
/// Every collection iterates in a fixed order, so the same sequence of calls
/// always yields the same outputs.
#[derive(Debug)]
pub struct Chat {
    config: ChatConfig,
    conns: BTreeMap<MemberId, Conn>,
    sessions: BTreeMap<SessionId, Session>,
    tokens: BTreeMap<SessionToken, SessionId>,
    /// Folded nick to the session holding it, attached or not.
    nicks: BTreeMap<Arc<str>, SessionId>,
    /// In cluster mode, nicks being claimed, by folded nick.
    claims: BTreeMap<Arc<str>, claims::Claim>,
    /// In cluster mode, the remote members of each room by their key.
    remotes: BTreeMap<(RoomId, Arc<str>), SessionId>,
    /// In cluster mode, `hello`s waiting to hear whether their session
    /// lives on another core.
    lookups: BTreeMap<MemberId, moves::Lookup>,
    rooms: BTreeMap<RoomId, Room>,
    room_ids: BTreeMap<RoomName, RoomId>,
    /// Every conversation (direct messages), in memory or not.
    conversations: BTreeMap<RoomName, directs::Known>,
    /// The conversations of each party.
    by_party: BTreeMap<Arc<str>, BTreeSet<RoomName>>,
    /// In cluster mode, the sessions here by their key
    /// ([`ChatConfig::session_key`]).
    keys: BTreeMap<Arc<str>, SessionId>,
    /// In cluster mode, the parties whose conversations are being read,
    /// with the connections waiting for them.
    indexing: BTreeMap<Arc<str>, Vec<MemberId>>,
    /// In cluster mode, the nicks asked about ([`Output::Whois`]), with
    /// what waits for the answer.
    whois: BTreeMap<Arc<str>, Vec<directs::Asked>>,
    /// Rooms not in memory whose load is out, with the joins waiting.
    loading: BTreeMap<RoomName, Vec<Parked>>,
    /// Rooms in memory whose window is being loaded, with what waits.
    waiting: BTreeMap<RoomId, Vec<Parked>>,
    sources: BTreeMap<Source, SourceState>,
    /// Rooms with messages in memory, least recently used first.
    resident: BTreeSet<(u64, RoomId)>,
    /// Rooms nobody is in, least recently used first.
    idle: BTreeSet<(u64, RoomId)>,
    /// What the windows of every room cost together.
    resident_bytes: usize,
    /// The use counter rooms are stamped with.
    uses: u64,
    /// Until when messages are refused because storage failed.
    store_down_until: Option<Timestamp>,
    dedupe: Dedupe,
    outputs: VecDeque<Output>,
    /// When each relayed `typing` stops throttling, in the order relayed.
    /// `now` never goes backwards, so this is sorted by deadline.
    typing_deadlines: VecDeque<(Timestamp, SessionId, RoomId)>,
    /// The time of the latest call: when a big room's presence batch,
    /// started now, goes out.
    clock: Timestamp,
    /// Big rooms with presence changes waiting, by when they go out.
    presence_due: BTreeSet<(Timestamp, RoomId)>,
    /// When each detached session expires, in the order detached.
    expiries: VecDeque<(Timestamp, SessionId)>,
    /// When sessions' identities expire (stale entries of renewed ones
    /// are skipped).
    grant_deadlines: BTreeSet<(Timestamp, SessionId)>,
    next_sweep: Option<Timestamp>,
    next_member: u64,
    next_session: u64,
    next_room: u64,
    next_guest: u64,
}

#[derive(Debug)]
struct Conn {
    /// The token a new session started by this connection gets.
    proposed: SessionToken,
    session: Option<SessionId>,
    source: Source,
    /// History bytes this connection may still be sent.
    history: TokenBucket,
    /// Its commands waiting for storage (a join of a room being read back).
    waits: u32,
    /// Commands that came while some waited: handled after them, in order,
    /// so a `say` right after a `join` finds the room joined (boxed: rare).
    queued: Option<Box<Queued>>,
}

/// Commands of one connection waiting their turn, with their request ids.
type Queued = VecDeque<(Option<Arc<str>>, Command)>;

/// Commands a connection may have queued behind one waiting for storage;
/// past it they are refused as too fast.
const MAX_QUEUED: usize = 256;

/// Who is asking: a connection, the session it speaks for, and the request
/// id the answer carries.
#[derive(Debug, Clone)]
struct Asker {
    member: MemberId,
    session: SessionId,
    id: Option<Arc<str>>,
}

/// A command waiting for a room to be loaded.
#[derive(Debug)]
struct Parked {
    asker: Asker,
    wants: Wants,
}

/// What a waiting command needs of the room.
#[derive(Debug, Clone)]
enum Wants {
    /// Its `joined`, resuming from `after`.
    Join { after: Option<u64> },
    /// A history page.
    History { before: Option<u64>, limit: usize },
    /// A direct message to number (the room is a conversation).
    Dm { text: Arc<str>, other: directs::Other },
    /// A conversation's catch-up after `after`, or a page before `before`.
    Conversation { with: Nick, after: Option<u64>, before: Option<u64>, limit: usize },
    /// An edit (with the new text) or a deletion of message `seq`.
    Change { seq: u64, text: Option<Arc<str>> },
}

impl Parked {
    fn member(&self) -> MemberId {
        self.asker.member
    }
}

impl Chat {
    /// An empty chat with the given rules.
    pub fn new(config: ChatConfig) -> Self {
        Self {
            dedupe: Dedupe::new(config.dedupe_window, config.dedupe_max, config.dedupe_max_bytes),
            config,
            conns: BTreeMap::new(),
            sessions: BTreeMap::new(),
            tokens: BTreeMap::new(),
            nicks: BTreeMap::new(),
            claims: BTreeMap::new(),
            remotes: BTreeMap::new(),
            lookups: BTreeMap::new(),
            rooms: BTreeMap::new(),
            room_ids: BTreeMap::new(),
            conversations: BTreeMap::new(),
            by_party: BTreeMap::new(),
            keys: BTreeMap::new(),
            indexing: BTreeMap::new(),
            whois: BTreeMap::new(),
            loading: BTreeMap::new(),
            waiting: BTreeMap::new(),
            sources: BTreeMap::new(),
            resident: BTreeSet::new(),
            idle: BTreeSet::new(),
            resident_bytes: 0,
            uses: 0,
            store_down_until: None,
            outputs: VecDeque::new(),
            typing_deadlines: VecDeque::new(),
            clock: Timestamp::from_unix_millis(0),
            presence_due: BTreeSet::new(),
            expiries: VecDeque::new(),
            grant_deadlines: BTreeSet::new(),
            next_sweep: None,
            next_member: 1,
            next_session: 1,
            next_room: 1,
            next_guest: 1,
        }
    }

    /// Registers a new connection from `source` and returns the id naming
    /// it. `proposed` is the token its session gets if it starts a new one:
    /// the driver makes it random and unguessable. The member has no nick
    /// until its `hello`.
    pub fn handle_connect(
        &mut self,
        now: Timestamp,
        proposed: SessionToken,
        source: Source,
    ) -> MemberId {
        self.saw(now);
        if self.next_sweep.is_none() {
            self.next_sweep = Some(now.saturating_add(SWEEP_EVERY));
        }
        let id = MemberId::new(self.next_member);
        self.next_member += 1;
        self.source_state(now, source).conns += 1;
        let history = TokenBucket::full(self.config.history_bytes_per_conn, now);
        let conn = Conn { proposed, session: None, source, history, waits: 0, queued: None };
        self.conns.insert(id, conn);
        id
    }

    /// Handles one command of `member`. `id` is the request id to echo in the
    /// reply. Commands of a member that is not connected are ignored: they
    /// can only come from a connection that raced its own disconnect.
    pub fn handle_command(
        &mut self,
        now: Timestamp,
        member: MemberId,
        id: Option<&str>,
        command: Command,
    ) {
        self.saw(now);
        let Some(conn) = self.conns.get_mut(&member) else {
            return;
        };
        let id: Option<Arc<str>> = id.map(Arc::from);
        if conn.waits > 0 {
            let queued = conn.queued.get_or_insert_default();
            if queued.len() < MAX_QUEUED {
                queued.push_back((id, command));
            } else {
                let error = CommandError::RateLimited { retry_after_ms: 100 };
                self.reply(member, Event::Error { id, error });
            }
            return;
        }
        let Some(session) = conn.session else {
            let result = match command {
                Command::Hello { nick, session: token, identity } => {
                    self.hello(now, member, &id, nick, token, identity)
                }
                _ => Err(CommandError::HelloRequired),
            };
            if let Err(error) = result {
                self.reply(member, Event::Error { id, error });
            }
            return;
        };
        let asker = Asker { member, session, id };
        let result = match command {
            Command::Hello { .. } => Err(CommandError::AlreadyGreeted),
            Command::Join { room, after } => self.join(now, &asker, &room, after),
            Command::Leave { room } => self.leave(&asker, &room),
            Command::Say { room, text, action, attachment } => {
                self.say(now, &asker, &room, messages::Said { text, action, attachment })
            }
            Command::Dm { to, text } => self.dm(now, &asker, &to, text),
            Command::Conversation { with, after, before, limit } => {
                self.conversation(now, &asker, &with, after, before, limit)
            }
            Command::Conversations => self.conversations(&asker),
            Command::Edit { room, seq, text } => self.change(now, &asker, &room, seq, Some(text)),
            Command::Delete { room, seq } => self.change(now, &asker, &room, seq, None),
            Command::Topic { room, topic } => self.set_topic(now, &asker, &room, &topic),
            Command::DocCreate { room, title } => self.doc_create(now, &asker, &room, &title),
            Command::DocRename { room, doc, title } => {
                self.doc_rename(now, &asker, &room, &doc, &title)
            }
            Command::DocDelete { room, doc } => self.doc_delete(now, &asker, &room, &doc),
            Command::DocVersions { room, doc } => self.doc_versions(&asker, &room, &doc),
            Command::DocRestore { room, doc, version } => {
                self.doc_restore(now, &asker, &room, &doc, version)
            }
            Command::Read { room, conversation, seq } => {
                self.read_up_to(&asker, room.as_deref(), conversation.as_deref(), seq)
            }
            Command::Nick { nick } => self.rename(&asker, &nick),
            Command::Typing { room } => self.typing(now, &asker, &room),
            Command::Rooms => {
                let rooms = self.rooms_listed(session);
                self.reply(member, Event::Rooms { id: asker.id.clone(), rooms });
                Ok(())
            }
            Command::Who { room, after, prefix, limit } => {
                self.who(&asker, &room, after.as_deref(), prefix.as_deref(), limit)
            }
            Command::History { room, before, limit } => {
                self.history(now, &asker, &room, before, limit)
            }
            Command::Ping => {
                self.reply(member, Event::Pong { id: asker.id.clone() });
                Ok(())
            }
            Command::Auth { identity } => self.auth(now, &asker, identity),
        };
        if let Err(error) = result {
            self.reply(member, Event::Error { id: asker.id, error });
        }
    }

    /// The connection is gone. If the client said goodbye
    /// ([`Departure::Quit`]) its session ends now: it leaves every room and
    /// its nick becomes free. If the connection was lost, the session is
    /// kept for [`ChatConfig::session_grace`] so a new connection can resume
    /// it, and ends only then (or sooner, when its source holds more than
    /// [`ChatConfig::max_detached_per_source`] such sessions). Unknown
    /// members are ignored.
    pub fn handle_disconnect(&mut self, now: Timestamp, member: MemberId, departure: Departure) {
        self.saw(now);
        let Some(conn) = self.drop_conn(member) else {
            return;
        };
        let Some(sid) = conn.session else {
            return;
        };
        self.conn_gone(now, member, sid, departure == Departure::Quit);
    }

    /// Lets time-based state expire: typing throttles, sessions whose grace
    /// period passed, identities, remembered message ids, messages past
    /// their maximum age. Harmless to call at any time.
    pub fn handle_timeout(&mut self, now: Timestamp) {
        self.saw(now);
        self.flush_presence(now);
        let interval = self.config.typing_interval;
        while let Some(&(deadline, sid, room)) = self.typing_deadlines.front() {
            if deadline > now {
                break;
            }
            self.typing_deadlines.pop_front();
            if let Some(session) = self.sessions.get_mut(&sid) {
                // Only forget the entry if no later `typing` replaced it.
                let typing = session.typing.as_deref_mut();
                if let Some(typing) = typing
                    && typing.get(&room).is_some_and(|&t| t.saturating_add(interval) <= now)
                {
                    typing.remove(&room);
                    if typing.is_empty() {
                        session.typing = None;
                    }
                }
            }
        }
        self.expire_sessions(now);
        self.expire_grants(now);
        self.dedupe.expire(now);
        if self.store_down_until.is_some_and(|until| until <= now) {
            self.store_down_until = None;
        }
        if self.next_sweep.is_some_and(|at| at <= now) {
            if let Some(max_age) = self.config.history_max_age {
                let cutoff = Timestamp::from_unix_millis(
                    now.as_unix_millis().saturating_sub(millis(max_age)),
                );
                self.prune_rooms(cutoff);
            }
            self.forget_sources(now);
            self.next_sweep = Some(now.saturating_add(SWEEP_EVERY));
        }
    }

    /// The answer to [`Output::Load`]: what storage holds of `room`, or
    /// `None` if it holds nothing (the room never had a message). Commands
    /// that waited for it go on.
    pub fn handle_loaded(&mut self, now: Timestamp, room: &RoomName, stored: Option<RoomHistory>) {
        self.saw(now);
        self.loaded(now, room, Some(stored));
    }

    /// The answer to [`Output::Load`] when storage could not be read:
    /// commands that waited for it are refused (`RoomUnavailable`).
    pub fn handle_load_failed(&mut self, now: Timestamp, room: &RoomName) {
        self.saw(now);
        self.loaded(now, room, None);
    }

    /// In [`Sequencing::Shared`] mode: `message`, numbered by the shared
    /// engine (see [`Output::Append`]), for the room's members here, its
    /// sender included. Give each room's messages in `seq` order, each once,
    /// from just after what the room's last load held; a room not in
    /// memory here (nobody here is in it) ignores them. Messages skipped
    /// (gone from the engine before this core had them) are a gap: the
    /// room's members here are sent back ([`DisconnectReason::RoomReset`])
    /// and told it, exactly, when they join again.
    ///
    /// [`DisconnectReason::RoomReset`]: crate::DisconnectReason::RoomReset
    ///
    /// [`Sequencing::Shared`]: crate::Sequencing::Shared
    pub fn handle_appended(&mut self, now: Timestamp, message: Message) {
        self.saw(now);
        if message.room.is_conversation() {
            self.direct_appended(now, message);
            return;
        }
        let Some(&room_id) = self.room_ids.get(&message.room) else {
            return;
        };
        let Some(room) = self.rooms.get(&room_id) else {
            return;
        };
        if message.seq <= room.last_seq {
            return;
        }
        if message.seq > room.last_seq + 1 {
            // Messages the engine no longer has came between (they left
            // its log before this core had them): the window here starts
            // again after them, so it stays contiguous, and what is older
            // is read back from the engine. Members here missed them: they
            // come back, and their joins from where they were name the gap
            // (no client has to notice a jump in `seq`).
            let before = message.seq - 1;
            self.change_window(room_id, |room| room.restart_after(before));
            self.push_message(room_id, message);
            self.send_back(now, room_id);
            self.enforce_memory(Some(room_id));
            return;
        }
        self.accept(now, room_id, message, false);
    }

    /// In [`Sequencing::Shared`] mode: the message `member` sent had been
    /// appended before (a retry); `original` is what it was numbered as,
    /// and is its answer.
    ///
    /// [`Sequencing::Shared`]: crate::Sequencing::Shared
    pub fn handle_duplicate(&mut self, now: Timestamp, member: MemberId, original: Message) {
        self.saw(now);
        if !self.conns.contains_key(&member) {
            return;
        }
        let event = match original.room.is_conversation() {
            true => match self.direct_event(&original) {
                Some(event) => event,
                None => return,
            },
            false => Event::Message(original),
        };
        self.deliver(Arc::new([member]), event);
    }

    /// In [`Sequencing::Shared`] mode: the answer to
    /// [`Output::Conversations`], the conversations of `party` as the
    /// engine lists them (`None`: it could not be read; what this core
    /// knows stands). The commands that waited for it go on.
    ///
    /// [`Sequencing::Shared`]: crate::Sequencing::Shared
    pub fn handle_conversations(
        &mut self,
        now: Timestamp,
        party: &str,
        listed: Option<Vec<Conversation>>,
    ) {
        self.saw(now);
        for conversation in listed.into_iter().flatten() {
            self.merge_known(conversation);
        }
        for member in self.indexing.remove(party).unwrap_or_default() {
            self.unpark(now, member);
        }
    }

    /// In [`Sequencing::Shared`] mode: the answer to [`Output::Whois`] of
    /// `nick`. The direct messages and conversation reads that waited for
    /// it go on (refused with `SharedUnavailable` if the engine could not
    /// be reached).
    ///
    /// [`Sequencing::Shared`]: crate::Sequencing::Shared
    pub fn handle_whois(&mut self, now: Timestamp, nick: &Nick, holder: Holder) {
        self.saw(now);
        self.whois_answered(now, nick, &holder);
    }

    /// In [`Sequencing::Shared`] mode: the engine's answer to the
    /// [`Output::Claim`] of `nick`. Granted, the `hello` or `nick` that
    /// waited goes on; taken, it is refused with `NickTaken` (a guest nick
    /// is tried again under another name); unavailable, with
    /// `SharedUnavailable`. A claim answered for a connection that went
    /// away meanwhile is released. Answers to no claim are ignored.
    ///
    /// [`Sequencing::Shared`]: crate::Sequencing::Shared
    pub fn handle_claimed(&mut self, now: Timestamp, nick: &Nick, answer: ClaimAnswer) {
        self.saw(now);
        self.claimed(now, nick, answer);
    }

    /// In [`Sequencing::Shared`] mode: what a member of `room` on another
    /// core did ([`Output::Share`] there), `key` naming it. Shown to the
    /// room's members here like a member's own; ignored while nobody here
    /// is in the room (its load brings who is in it then), and for a
    /// member never seen joining.
    ///
    /// [`Sequencing::Shared`]: crate::Sequencing::Shared
    pub fn handle_remote(&mut self, now: Timestamp, room: &RoomName, key: &str, change: Shared) {
        self.saw(now);
        self.remote(now, room, key, change);
    }

    /// In [`Sequencing::Shared`] mode: the engine's answer to the
    /// [`Output::Lookup`] for `member`: the session of the token its
    /// `hello` brought, if one lives on another core. It then moves here
    /// (welcomed as resumed with its nick and rooms); if not, the `hello`
    /// starts a new session as on one core.
    ///
    /// [`Sequencing::Shared`]: crate::Sequencing::Shared
    pub fn handle_found(&mut self, now: Timestamp, member: MemberId, found: Option<Found>) {
        self.saw(now);
        self.found(now, member, found);
    }

    /// In [`Sequencing::Shared`] mode: the session of `token` moved to
    /// another core. Its connections here are closed
    /// ([`DisconnectReason::SessionResumedElsewhere`]) and it ends here
    /// without releasing its nick or telling the others it left: it goes
    /// on there.
    ///
    /// [`Sequencing::Shared`]: crate::Sequencing::Shared
    /// [`DisconnectReason::SessionResumedElsewhere`]: crate::DisconnectReason::SessionResumedElsewhere
    pub fn handle_moved(&mut self, now: Timestamp, token: &SessionToken) {
        self.saw(now);
        self.moved(token);
    }

    /// In [`Sequencing::Shared`] mode: `room`'s numbering started again in
    /// the shared engine (it lost its data; messages from `seq` 1 follow).
    /// What this core held of the room is dropped, and its connections
    /// here are closed ([`DisconnectReason::RoomReset`]) to resume at once
    /// and join it afresh.
    ///
    /// [`Sequencing::Shared`]: crate::Sequencing::Shared
    /// [`DisconnectReason::RoomReset`]: crate::DisconnectReason::RoomReset
    pub fn handle_room_reset(&mut self, now: Timestamp, room: &RoomName) {
        self.saw(now);
        self.room_reset(now, room);
    }

    /// In [`Sequencing::Shared`] mode: everyone in `room` on the other
    /// cores, as the shared engine has it now (read every few seconds, and
    /// after the engine was out of reach). Members here see the difference
    /// with what this core had as joins, leaves and changes. Ignored while
    /// nobody here is in the room.
    ///
    /// [`Sequencing::Shared`]: crate::Sequencing::Shared
    pub fn handle_remote_roster(
        &mut self,
        now: Timestamp,
        room: &RoomName,
        members: Vec<crate::RemoteMember>,
    ) {
        self.saw(now);
        self.roster(now, room, members);
    }

    /// Records the core asked to persist could not be stored: their
    /// messages are taken back (numbering goes back, retries are no longer
    /// answered), each sender is told with `StoreUnavailable`, and no
    /// message is accepted for `retry_after`. Give every record issued
    /// since the last one stored, in the order they were output.
    ///
    /// Deliveries of these messages must not be carried out; the driver
    /// holds them until storage answers, as [`Output::Persist`] says.
    pub fn handle_unstored(&mut self, now: Timestamp, records: Vec<Record>, retry_after: Duration) {
        self.saw(now);
        self.store_down_until = Some(now.saturating_add(retry_after));
        for record in records.into_iter().rev() {
            self.retract(now, record);
        }
    }

    /// Checks whether `member` may upload a file of `size` bytes to `room`
    /// now, taking `size` from its session's and its source's upload
    /// quotas. The `say` that carries the file is checked again when it
    /// comes.
    ///
    /// # Errors
    /// What the `say` would get (not greeted, not in the room, rate limited,
    /// storage down), or `QuotaExceeded`.
    pub fn handle_upload(
        &mut self,
        now: Timestamp,
        member: MemberId,
        room: &str,
        size: u64,
    ) -> Result<(), CommandError> {
        self.admit_upload(now, member, room, size)
    }

    /// The next instruction for the driver, in order; `None` when drained.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    /// When [`Chat::handle_timeout`] should next be called, if ever.
    pub fn poll_timeout(&self) -> Option<Timestamp> {
        [
            self.typing_deadlines.front().map(|&(deadline, _, _)| deadline),
            self.expiries.front().map(|&(deadline, _)| deadline),
            self.grant_deadlines.first().map(|&(deadline, _)| deadline),
            self.dedupe.next_deadline(),
            self.store_down_until,
            self.next_sweep,
            self.presence_due.first().map(|&(due, _)| due),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Restores a session stored before a restart: detached, holding its
    /// nick, ending after [`ChatConfig::session_grace`] unless its token
    /// resumes it. Ignored if the token or nick is already held. In
    /// cluster mode its nick is claimed again ([`Output::Claim`]); if
    /// another session took it meanwhile, this one ends.
    pub fn restore_session(&mut self, now: Timestamp, token: SessionToken, nick: Nick) {
        if self.tokens.contains_key(&token) || self.nick_held(&nick) {
            return;
        }
        let sid = self.new_session(now, token, nick, None, None);
        self.detach(now, sid);
        if self.config.sequencing == crate::Sequencing::Shared {
            self.claim_restored(sid);
            self.attend(sid, None);
        }
    }

    /// Restores a stored message at startup so a retry of it is still
    /// answered with the original; older than the dedupe window, it is
    /// ignored.
    /// A direct message (a message of a conversation) is answered as one:
    /// restore the conversations first.
    pub fn restore_message(&mut self, now: Timestamp, message: Message) {
        let (Some(sender), Some(id)) = (message.sender.clone(), message.id.clone()) else {
            return;
        };
        if now.millis_since(message.ts) >= millis(self.config.dedupe_window) {
            return;
        }
        let ts = message.ts;
        let event = match message.room.is_conversation() {
            true => match self.direct_event(&message) {
                Some(event) => event,
                None => return,
            },
            false => Event::Message(message),
        };
        self.dedupe.insert(ts, sender, id, Arc::new(event));
    }

    /// Restores what storage summarized of a conversation at startup, so
    /// it is listed and its parties can be reached.
    pub fn restore_conversation(&mut self, conversation: Conversation) {
        self.restore_known(conversation);
    }

    /// The rules in force.
    pub fn config(&self) -> &ChatConfig {
        &self.config
    }

    /// The nick of a member, once it said hello.
    pub fn nick(&self, member: MemberId) -> Option<&Nick> {
        let sid = self.conns.get(&member)?.session?;
        self.sessions.get(&sid).map(|s| &s.nick)
    }

    /// The token of the session a member speaks for, once it said hello.
    pub fn session(&self, member: MemberId) -> Option<&SessionToken> {
        let sid = self.conns.get(&member)?.session?;
        self.sessions.get(&sid).map(|s| &s.token)
    }

    /// How many connections are open, greeted or not.
    pub fn member_count(&self) -> usize {
        self.conns.len()
    }

    /// How many sessions have a connection now that `watching_only` does
    /// not exclude: people, however many tabs and devices each has. A
    /// frontend passes the connections that only watch (a stats page), so
    /// that they are not counted as someone in the chat.
    pub fn people(&self, watching_only: impl Fn(MemberId) -> bool) -> usize {
        self.sessions
            .values()
            .filter(|session| session.conns.iter().any(|member| !watching_only(member)))
            .count()
    }

    /// How many sessions this core holds, attached or waiting to be
    /// resumed (not the members other cores serve).
    pub fn session_count(&self) -> usize {
        self.sessions.len() - self.remotes.len()
    }

    /// How many rooms are held in memory, idle ones included.
    pub fn room_count(&self) -> usize {
        self.rooms.len()
    }

    /// Bytes of history held in memory, as
    /// [`ChatConfig::history_memory_max`] counts them.
    pub fn history_bytes(&self) -> usize {
        self.resident_bytes
    }

    /// How many message ids are remembered for deduplication.
    pub fn dedupe_len(&self) -> usize {
        self.dedupe.len()
    }

    /// Bytes the remembered ids keep alive, as
    /// [`ChatConfig::dedupe_max_bytes`] counts them.
    pub fn dedupe_bytes(&self) -> usize {
        self.dedupe.bytes()
    }

    /// Room memberships: each session in each room it is in, counted once.
    pub fn memberships(&self) -> usize {
        self.rooms.values().map(|room| room.sessions().len()).sum()
    }

    /// Every room someone is in, with its number of members, by name.
    pub fn room_members(&self) -> Vec<(RoomName, usize)> {
        self.room_ids
            .iter()
            .filter_map(|(name, id)| self.rooms.get(id).map(|r| (name.clone(), r.sessions().len())))
            .filter(|(_, members)| *members > 0)
            .collect()
    }

    /// The session holding a token and the connection it has, if any.
    /// The connections of the session named `token`.
    fn conns_of(&self, token: &SessionToken) -> Arc<[MemberId]> {
        let session = self.tokens.get(token).and_then(|sid| self.sessions.get(sid));
        session.into_iter().flat_map(|s| s.conns.iter()).collect()
    }

    /// The clock as the latest call gave it (never backwards).
    fn saw(&mut self, now: Timestamp) {
        self.clock = self.clock.max(now);
    }

    /// Whether the connection of a command that waited is still there and
    /// speaks for the same session (it may have gone, or moved on, while a
    /// room loaded).
    fn still_asking(&self, asker: &Asker) -> bool {
        self.conns.get(&asker.member).is_some_and(|conn| conn.session == Some(asker.session))
    }

    /// One more command of `member` waits for storage; later ones queue.
    fn park_for(&mut self, member: MemberId) {
        if let Some(conn) = self.conns.get_mut(&member) {
            conn.waits += 1;
        }
    }

    /// A command of `member` that waited is done; once none waits, the
    /// queued ones run, in order (until one waits again).
    fn unpark(&mut self, now: Timestamp, member: MemberId) {
        let Some(conn) = self.conns.get_mut(&member) else {
            return;
        };
        conn.waits = conn.waits.saturating_sub(1);
        if conn.waits > 0 {
            return;
        }
        let Some(mut queued) = conn.queued.take() else {
            return;
        };
        while let Some((id, command)) = queued.pop_front() {
            self.handle_command(now, member, id.as_deref(), command);
            if let Some(conn) = self.conns.get_mut(&member)
                && conn.waits > 0
            {
                // Waiting again: the rest stays queued, in order.
                if let Some(mut newer) = conn.queued.take() {
                    queued.append(&mut newer);
                }
                conn.queued = Some(queued);
                return;
            }
        }
    }

    /// Takes a connection out, with its count under its source.
    fn drop_conn(&mut self, member: MemberId) -> Option<Conn> {
        let conn = self.conns.remove(&member)?;
        if let Some(state) = self.sources.get_mut(&conn.source) {
            state.conns = state.conns.saturating_sub(1);
        }
        Some(conn)
    }

    fn reply(&mut self, member: MemberId, event: Event) {
        self.deliver(Arc::new([member]), event);
    }

    fn deliver(&mut self, to: Arc<[MemberId]>, event: Event) {
        self.deliver_shared(to, Arc::new(event));
    }

    fn deliver_shared(&mut self, to: Arc<[MemberId]>, event: Arc<Event>) {
        if to.is_empty() {
            return;
        }
        self.outputs.push_back(Output::Deliver { to, event });
    }
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    /// What every session and connection costs, so new state is paid for
    /// knowingly (docs/performance.md: the idle figures).
    #[test]
    fn sessions_and_connections_stay_small() {
        let (session, conn) =
            (std::mem::size_of::<super::Session>(), std::mem::size_of::<super::Conn>());
        eprintln!("a session: {session} bytes, a connection: {conn} bytes");
        assert!(session <= 152, "a session grew to {session} bytes");
        assert!(conn <= 64, "a connection grew to {conn} bytes");
        assert_eq!(std::mem::size_of::<crate::Nick>(), 16);
    }
}
