use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;

use crate::bucket::{Rate, TokenBucket};
use crate::room::Room;
use crate::{
    ChatConfig, Command, CommandError, Event, MemberId, Message, Nick, Output, Presence, RoomId,
    RoomName, Timestamp,
};

/// The whole chat: members, rooms and their rules, with no IO.
///
/// # Contract
/// - Call [`Chat::handle_connect`] for each new connection, then
///   [`Chat::handle_command`] for each of its commands and
///   [`Chat::handle_disconnect`] once when it goes away.
/// - After each `handle_*` call, drain [`Chat::poll_output`] until it returns
///   `None` and carry out every [`Output`] in order; then read
///   [`Chat::poll_timeout`] and call [`Chat::handle_timeout`] once that time
///   has come. Spurious or late `handle_timeout` calls are harmless.
/// - `now` must not go backwards from one call to the next.
///
/// Every collection iterates in a fixed order, so the same sequence of calls
/// always yields the same outputs.
#[derive(Debug)]
pub struct Chat {
    config: ChatConfig,
    members: BTreeMap<MemberId, Member>,
    /// Folded nick to its holder.
    nicks: BTreeMap<String, MemberId>,
    rooms: BTreeMap<RoomId, Room>,
    room_ids: BTreeMap<RoomName, RoomId>,
    outputs: VecDeque<Output>,
    /// When each relayed `typing` stops throttling, in the order relayed.
    /// `now` never goes backwards, so this is sorted by deadline.
    typing_deadlines: VecDeque<(Timestamp, MemberId, RoomId)>,
    next_member: u64,
    next_room: u64,
    next_guest: u64,
}

#[derive(Debug)]
struct Member {
    /// `None` until `hello`.
    nick: Option<Nick>,
    rooms: BTreeSet<RoomId>,
    messages: TokenBucket,
    /// When a `typing` was last relayed for each room.
    typing: BTreeMap<RoomId, Timestamp>,
}

impl Chat {
    /// An empty chat with the given rules.
    pub fn new(config: ChatConfig) -> Self {
        Self {
            config,
            members: BTreeMap::new(),
            nicks: BTreeMap::new(),
            rooms: BTreeMap::new(),
            room_ids: BTreeMap::new(),
            outputs: VecDeque::new(),
            typing_deadlines: VecDeque::new(),
            next_member: 1,
            next_room: 1,
            next_guest: 1,
        }
    }

    /// Registers a new connection and returns the id naming it. The member
    /// has no nick until its `hello`.
    pub fn handle_connect(&mut self, now: Timestamp) -> MemberId {
        let id = MemberId::new(self.next_member);
        self.next_member += 1;
        let member = Member {
            nick: None,
            rooms: BTreeSet::new(),
            messages: TokenBucket::full(self.message_rate(), now),
            typing: BTreeMap::new(),
        };
        self.members.insert(id, member);
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
        let Some(state) = self.members.get(&member) else {
            return;
        };
        let id: Option<Arc<str>> = id.map(Arc::from);
        let greeted = state.nick.is_some();
        let result = match command {
            Command::Hello { nick } if !greeted => self.hello(member, &id, nick),
            Command::Hello { .. } => Err(CommandError::AlreadyGreeted),
            _ if !greeted => Err(CommandError::HelloRequired),
            Command::Join { room } => self.join(member, &id, &room),
            Command::Leave { room } => self.leave(member, &id, &room),
            Command::Say { room, text, action } => self.say(now, member, &id, &room, text, action),
            Command::Dm { to, text } => self.dm(now, member, &id, &to, text),
            Command::Nick { nick } => self.rename(member, &id, &nick),
            Command::Typing { room } => self.typing(now, member, &room),
            Command::Rooms => {
                let rooms = self.rooms_by_name();
                self.reply(member, Event::Rooms { id: id.clone(), rooms });
                Ok(())
            }
            Command::Who { room } => self.who(member, &id, &room),
            Command::History { room, before, limit } => {
                self.history(member, &id, &room, before, limit)
            }
            Command::Ping => {
                self.reply(member, Event::Pong { id: id.clone() });
                Ok(())
            }
        };
        if let Err(error) = result {
            self.reply(member, Event::Error { id, error });
        }
    }

    /// Removes a member: it leaves every room (the others see it leave) and
    /// its nick becomes free. Unknown members are ignored.
    pub fn handle_disconnect(&mut self, _now: Timestamp, member: MemberId) {
        let Some(state) = self.members.remove(&member) else {
            return;
        };
        if let Some(nick) = &state.nick {
            self.nicks.remove(&nick.folded());
            for room in &state.rooms {
                self.remove_from_room(*room, member, nick);
            }
        }
    }

    /// Lets time-based state expire. Harmless to call at any time.
    pub fn handle_timeout(&mut self, now: Timestamp) {
        while let Some(&(deadline, member, room)) = self.typing_deadlines.front() {
            if deadline > now {
                break;
            }
            self.typing_deadlines.pop_front();
            if let Some(state) = self.members.get_mut(&member) {
                // Only forget the entry if no later `typing` replaced it.
                let interval = self.config.typing_interval;
                if state.typing.get(&room).is_some_and(|&t| t.saturating_add(interval) <= now) {
                    state.typing.remove(&room);
                }
            }
        }
    }

    /// The next instruction for the driver, in order; `None` when drained.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    /// When [`Chat::handle_timeout`] should next be called, if ever.
    pub fn poll_timeout(&self) -> Option<Timestamp> {
        self.typing_deadlines.front().map(|&(deadline, _, _)| deadline)
    }

    /// The rules in force.
    pub fn config(&self) -> &ChatConfig {
        &self.config
    }

    /// The nick of a member, once it said hello.
    pub fn nick(&self, member: MemberId) -> Option<&Nick> {
        self.members.get(&member).and_then(|m| m.nick.as_ref())
    }

    /// How many members are connected, greeted or not.
    pub fn member_count(&self) -> usize {
        self.members.len()
    }

    /// How many rooms exist.
    pub fn room_count(&self) -> usize {
        self.rooms.len()
    }

    fn hello(
        &mut self,
        member: MemberId,
        id: &Option<Arc<str>>,
        nick: Option<String>,
    ) -> Result<(), CommandError> {
        let nick = match nick {
            Some(text) => {
                let nick = Nick::parse(&text).map_err(CommandError::InvalidNick)?;
                if self.nicks.contains_key(&nick.folded()) {
                    return Err(CommandError::NickTaken(nick));
                }
                nick
            }
            None => self.guest_nick(),
        };
        self.nicks.insert(nick.folded(), member);
        if let Some(state) = self.members.get_mut(&member) {
            state.nick = Some(nick.clone());
        }
        self.reply(member, Event::Welcome { id: id.clone(), nick });
        Ok(())
    }

    fn join(
        &mut self,
        member: MemberId,
        id: &Option<Arc<str>>,
        room: &str,
    ) -> Result<(), CommandError> {
        let name = RoomName::parse(room).map_err(CommandError::InvalidRoom)?;
        let room_id = match self.room_ids.get(&name) {
            Some(&room_id) => room_id,
            None => self.create_room(name.clone())?,
        };
        let nick = self.nick_of(member);
        let Some(state) = self.members.get_mut(&member) else {
            return Ok(());
        };
        let is_new = state.rooms.insert(room_id);
        let Some(room) = self.rooms.get_mut(&room_id) else {
            return Ok(());
        };
        if is_new {
            room.add(member);
            let others = room.others(member);
            self.deliver(
                others,
                Event::Presence { room: name.clone(), change: Presence::Joined(nick) },
            );
        }
        let Some(room) = self.rooms.get(&room_id) else {
            return Ok(());
        };
        let event = Event::Joined {
            id: id.clone(),
            room: name,
            members: self.sorted_nicks(room.members()),
            history: room.history(None, self.config.join_history),
            last_seq: room.last_seq,
        };
        self.reply(member, event);
        Ok(())
    }

    fn leave(
        &mut self,
        member: MemberId,
        id: &Option<Arc<str>>,
        room: &str,
    ) -> Result<(), CommandError> {
        let (room_id, name) = self.joined_room(member, room)?;
        let nick = self.nick_of(member);
        if let Some(state) = self.members.get_mut(&member) {
            state.rooms.remove(&room_id);
            state.typing.remove(&room_id);
        }
        self.reply(member, Event::Left { id: id.clone(), room: name });
        self.remove_from_room(room_id, member, &nick);
        Ok(())
    }

    fn say(
        &mut self,
        now: Timestamp,
        member: MemberId,
        id: &Option<Arc<str>>,
        room: &str,
        text: String,
        action: bool,
    ) -> Result<(), CommandError> {
        let (room_id, name) = self.joined_room(member, room)?;
        self.check_text(&text)?;
        self.take_message_token(now, member)?;
        let from = self.nick_of(member);
        let capacity = self.config.history_per_room;
        let Some(room) = self.rooms.get_mut(&room_id) else {
            return Ok(());
        };
        let message = Message {
            room: name,
            seq: room.last_seq + 1,
            ts: now,
            from,
            text: text.into(),
            action,
            id: id.clone(),
        };
        room.push(message.clone(), capacity);
        let to = room.recipients();
        self.deliver(to, Event::Message(message));
        Ok(())
    }

    fn dm(
        &mut self,
        now: Timestamp,
        member: MemberId,
        id: &Option<Arc<str>>,
        to: &str,
        text: String,
    ) -> Result<(), CommandError> {
        let to_nick = Nick::parse(to).map_err(CommandError::InvalidNick)?;
        let Some(&recipient) = self.nicks.get(&to_nick.folded()) else {
            return Err(CommandError::NoSuchNick(to.to_owned()));
        };
        self.check_text(&text)?;
        self.take_message_token(now, member)?;
        let event = Event::Direct {
            id: id.clone(),
            from: self.nick_of(member),
            to: self.nick_of(recipient),
            text: text.into(),
            ts: now,
        };
        let to: Arc<[MemberId]> =
            if recipient == member { Arc::new([member]) } else { Arc::new([recipient, member]) };
        self.deliver(to, event);
        Ok(())
    }

    fn rename(
        &mut self,
        member: MemberId,
        id: &Option<Arc<str>>,
        nick: &str,
    ) -> Result<(), CommandError> {
        let new = Nick::parse(nick).map_err(CommandError::InvalidNick)?;
        let folded = new.folded();
        if self.nicks.get(&folded).is_some_and(|&holder| holder != member) {
            return Err(CommandError::NickTaken(new));
        }
        let old = self.nick_of(member);
        let Some(state) = self.members.get_mut(&member) else {
            return Ok(());
        };
        state.nick = Some(new.clone());
        let rooms: Vec<RoomId> = state.rooms.iter().copied().collect();
        self.nicks.remove(&old.folded());
        self.nicks.insert(folded, member);
        self.reply(
            member,
            Event::NickChanged { id: id.clone(), old: old.clone(), nick: new.clone() },
        );
        if old == new {
            return Ok(());
        }
        for room_id in rooms {
            if let Some(room) = self.rooms.get(&room_id) {
                let change = Presence::Renamed { old: old.clone(), new: new.clone() };
                let event = Event::Presence { room: room.name.clone(), change };
                let others = room.others(member);
                self.deliver(others, event);
            }
        }
        Ok(())
    }

    fn typing(&mut self, now: Timestamp, member: MemberId, room: &str) -> Result<(), CommandError> {
        let (room_id, name) = self.joined_room(member, room)?;
        let interval = self.config.typing_interval;
        let nick = self.nick_of(member);
        let Some(state) = self.members.get_mut(&member) else {
            return Ok(());
        };
        if state.typing.get(&room_id).is_some_and(|&last| now < last.saturating_add(interval)) {
            // Throttled: typing notices are ephemeral, so dropping the extra
            // ones loses nothing the others need.
            return Ok(());
        }
        state.typing.insert(room_id, now);
        self.typing_deadlines.push_back((now.saturating_add(interval), member, room_id));
        if let Some(room) = self.rooms.get(&room_id) {
            let others = room.others(member);
            self.deliver(others, Event::Typing { room: name, nick });
        }
        Ok(())
    }

    fn who(
        &mut self,
        member: MemberId,
        id: &Option<Arc<str>>,
        room: &str,
    ) -> Result<(), CommandError> {
        let name = RoomName::parse(room).map_err(CommandError::InvalidRoom)?;
        let members = match self.room_ids.get(&name).and_then(|r| self.rooms.get(r)) {
            Some(room) => self.sorted_nicks(room.members()),
            None => Vec::new(),
        };
        self.reply(member, Event::Members { id: id.clone(), room: name, members });
        Ok(())
    }

    fn history(
        &mut self,
        member: MemberId,
        id: &Option<Arc<str>>,
        room: &str,
        before: Option<u64>,
        limit: Option<u32>,
    ) -> Result<(), CommandError> {
        let (room_id, name) = self.joined_room(member, room)?;
        let limit = limit
            .map_or(self.config.history_page_default, |l| usize::try_from(l).unwrap_or(usize::MAX))
            .min(self.config.history_page_max);
        let messages = match self.rooms.get(&room_id) {
            Some(room) => room.history(before, limit),
            None => Vec::new(),
        };
        self.reply(member, Event::History { id: id.clone(), room: name, messages });
        Ok(())
    }

    /// The first free `guest-NNNN` nick, counting up so the core needs no
    /// random source.
    fn guest_nick(&mut self) -> Nick {
        loop {
            let text = format!("guest-{:04}", self.next_guest);
            self.next_guest += 1;
            if let Ok(nick) = Nick::parse(&text) {
                if !self.nicks.contains_key(&nick.folded()) {
                    return nick;
                }
            }
        }
    }

    fn create_room(&mut self, name: RoomName) -> Result<RoomId, CommandError> {
        if self.rooms.len() >= self.config.max_rooms {
            return Err(CommandError::TooManyRooms { max: self.config.max_rooms });
        }
        let room_id = RoomId::new(self.next_room);
        self.next_room += 1;
        self.room_ids.insert(name.clone(), room_id);
        self.rooms.insert(room_id, Room::new(name));
        Ok(room_id)
    }

    /// Takes `member` out of a room, tells the others, and forgets the room
    /// if it is now empty and has no history to keep.
    fn remove_from_room(&mut self, room_id: RoomId, member: MemberId, nick: &Nick) {
        let Some(room) = self.rooms.get_mut(&room_id) else {
            return;
        };
        room.remove(member);
        let event =
            Event::Presence { room: room.name.clone(), change: Presence::Left(nick.clone()) };
        let to = room.recipients();
        if room.is_empty() && !room.has_history() {
            let name = room.name.clone();
            self.rooms.remove(&room_id);
            self.room_ids.remove(&name);
        }
        self.deliver(to, event);
    }

    /// The room `member` names, if it is a member of it.
    fn joined_room(
        &self,
        member: MemberId,
        room: &str,
    ) -> Result<(RoomId, RoomName), CommandError> {
        let name = RoomName::parse(room).map_err(CommandError::InvalidRoom)?;
        let joined = self.room_ids.get(&name).copied().filter(|room_id| {
            self.members.get(&member).is_some_and(|state| state.rooms.contains(room_id))
        });
        match joined {
            Some(room_id) => Ok((room_id, name)),
            None => Err(CommandError::NotInRoom(name)),
        }
    }

    fn check_text(&self, text: &str) -> Result<(), CommandError> {
        if text.is_empty() {
            return Err(CommandError::EmptyText);
        }
        if text.len() > self.config.max_text_bytes {
            return Err(CommandError::TooLarge {
                len: text.len(),
                max: self.config.max_text_bytes,
            });
        }
        Ok(())
    }

    fn take_message_token(&mut self, now: Timestamp, member: MemberId) -> Result<(), CommandError> {
        let rate = self.message_rate();
        match self.members.get_mut(&member) {
            Some(state) => state
                .messages
                .take(rate, now)
                .map_err(|retry_after_ms| CommandError::RateLimited { retry_after_ms }),
            None => Ok(()),
        }
    }

    fn message_rate(&self) -> Rate {
        Rate { per_sec: self.config.messages_per_sec, burst: self.config.messages_burst }
    }

    /// The nick of a greeted member. Every caller has checked the member
    /// said hello; a missing nick would be a broken invariant.
    fn nick_of(&self, member: MemberId) -> Nick {
        match self.members.get(&member).and_then(|m| m.nick.clone()) {
            Some(nick) => nick,
            None => unreachable!("{member} has no nick after hello"),
        }
    }

    fn sorted_nicks(&self, members: &[MemberId]) -> Vec<Nick> {
        let mut nicks: Vec<Nick> = members
            .iter()
            .filter_map(|m| self.members.get(m).and_then(|state| state.nick.clone()))
            .collect();
        nicks.sort_by_cached_key(|nick| (nick.folded(), nick.clone()));
        nicks
    }

    fn rooms_by_name(&self) -> Vec<(RoomName, usize)> {
        self.room_ids
            .iter()
            .filter_map(|(name, id)| self.rooms.get(id).map(|r| (name.clone(), r.members().len())))
            .collect()
    }

    fn reply(&mut self, member: MemberId, event: Event) {
        self.deliver(Arc::new([member]), event);
    }

    fn deliver(&mut self, to: Arc<[MemberId]>, event: Event) {
        if to.is_empty() {
            return;
        }
        self.outputs.push_back(Output::Deliver { to, event: Arc::new(event) });
    }
}
