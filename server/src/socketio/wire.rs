//! Socket.IO's dialect of our protocol, both ways (docs/protocol.md,
//! "Socket.IO"): what a client's events are as protocol v1 frames, and
//! what the hub's frames are as Socket.IO packets — encoded once per
//! fan-out (per dialect among its recipients), like the native frames.
//!
//! Out: a *classic* client (the tutorial's page, any client that did not
//! ask for more) gets each room message as `chat message` with its text;
//! a *rich* one (`auth.rich`) gets every frame as an event named by its
//! type, with the frame as the object (`message`, `presence`, `direct`,
//! `typing`, `joined`, …). A room message also carries its offset
//! (`ROOM:SEQ`) as its last argument, which is what Socket.IO's connection
//! state recovery hands back on a reconnect. A request that asked for an
//! acknowledgement gets its answer (the frame) in the acknowledgement.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use chat_core::{Event, MessageKind};
use chat_protocol::socketio::Packet;
use chat_protocol::{ClientMessage, DecodeError, ErrorCode, decode_client};
use chat_transport::tungstenite::Utf8Bytes;
use serde_json::{Map, Value};

/// A Socket.IO connection, as the hub keeps it.
#[derive(Debug)]
pub(crate) struct Peer {
    /// The socket's id, in the answer to its `CONNECT`.
    pub sid: String,
    /// Every frame as an event (`auth.rich`), not `chat message` alone.
    pub rich: bool,
    pub stage: Stage,
    /// The acknowledgements asked for, shared with the connection's task.
    pub acks: Acks,
}

/// Where a Socket.IO connection is in its `CONNECT`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stage {
    /// Its `hello` is not answered yet.
    Connecting,
    /// Answered with `CONNECT` (`welcome`).
    Connected,
    /// Answered with `CONNECT_ERROR`: nothing more goes to it.
    Refused,
}

/// The acknowledgements a connection asked for, by the request id its
/// command was given: its task adds one before the command goes to the
/// hub, the hub takes it out with the answer.
#[derive(Debug, Clone, Default)]
pub(crate) struct Acks(Arc<AcksInner>);

#[derive(Debug, Default)]
struct AcksInner {
    /// How many are waiting: read on every delivery, so the map is
    /// locked only while one is.
    waiting: AtomicUsize,
    by_id: Mutex<HashMap<String, u64>>,
}

impl Acks {
    pub(crate) fn insert(&self, id: String, ack: u64) {
        let mut by_id = self.lock();
        by_id.insert(id, ack);
        self.0.waiting.store(by_id.len(), Ordering::Release);
    }

    fn take(&self, id: &str) -> Option<u64> {
        let mut by_id = self.lock();
        let ack = by_id.remove(id);
        self.0.waiting.store(by_id.len(), Ordering::Release);
        ack
    }

    fn is_empty(&self) -> bool {
        self.0.waiting.load(Ordering::Acquire) == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, u64>> {
        // A map of numbers: a panic elsewhere cannot leave it half-changed.
        self.0.by_id.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// One delivery's encodings for Socket.IO, each made at most once
/// whatever the number of recipients.
pub(crate) struct Encodings<'a> {
    /// The frame, as protocol v1 encodes it.
    native: &'a Utf8Bytes,
    /// The event it encodes, if the core made it.
    event: Option<&'a Event>,
    /// The frame's type.
    kind: &'a str,
    /// Its `id`, read once the first recipient waiting for an
    /// acknowledgement needs it.
    id: Option<Option<String>>,
    rich: Option<Utf8Bytes>,
    classic: Option<Option<Utf8Bytes>>,
}

impl<'a> Encodings<'a> {
    pub(crate) fn new(native: &'a Utf8Bytes, event: Option<&'a Event>) -> Self {
        Self { native, event, kind: kind(native), id: None, rich: None, classic: None }
    }

    /// Hands `push` the packets `peer` gets of this delivery, in order.
    pub(crate) fn each(&mut self, peer: &mut Peer, mut push: impl FnMut(Utf8Bytes)) {
        let kind = self.kind;
        match peer.stage {
            Stage::Refused => return,
            Stage::Connecting => {
                match kind {
                    "welcome" => {
                        peer.stage = Stage::Connected;
                        push(connect(&peer.sid, self.native));
                    }
                    "error" => {
                        peer.stage = Stage::Refused;
                        push(connect_error(self.native));
                    }
                    // Nothing before the answer.
                    _ => {}
                }
                return;
            }
            // (An upload's go-ahead is the connection's own business: a
            // Socket.IO client sends its file whole.)
            Stage::Connected if kind == "welcome" || kind == "upload_ready" => return,
            Stage::Connected => {}
        }
        let ack = match peer.acks.is_empty() {
            true => None,
            false => {
                let native = self.native;
                let id = self.id.get_or_insert_with(|| field(native, "id"));
                id.as_deref().and_then(|id| peer.acks.take(id))
            }
        };
        // A message is the room's event for everyone, the sender too; any
        // other answer goes in the acknowledgement alone.
        if ack.is_none() || kind == "message" {
            if peer.rich {
                push(self.rich(kind));
            } else {
                if let Some(classic) = self.classic(kind) {
                    push(classic);
                }
                // A classic client sees a room's recent messages (or those
                // it missed) as the room's messages.
                if let Some(Event::Joined { history, .. }) = self.event {
                    for message in history.iter().filter(|m| m.kind == MessageKind::Said) {
                        push(chat_message(message));
                    }
                }
            }
        }
        if let Some(ack) = ack {
            push(Utf8Bytes::from(format!("43{ack}[{}]", self.native.as_str())));
        }
    }

    /// `42["TYPE",FRAME]`, and a room message's offset.
    fn rich(&mut self, kind: &str) -> Utf8Bytes {
        let (native, event) = (self.native, self.event);
        self.rich
            .get_or_insert_with(|| {
                let offset = match event {
                    Some(Event::Message(m)) => format!(",{}", json(&offset(&m.room, m.seq))),
                    _ => String::new(),
                };
                Utf8Bytes::from(format!("42[{},{}{offset}]", json(kind), native.as_str()))
            })
            .clone()
    }

    /// What a classic client gets: a room's new message as `chat message`,
    /// an error as `error`; nothing else.
    fn classic(&mut self, kind: &str) -> Option<Utf8Bytes> {
        if kind == "error" {
            return Some(self.rich(kind));
        }
        let event = self.event;
        self.classic
            .get_or_insert_with(|| match event {
                Some(Event::Message(m)) if m.kind == MessageKind::Said => Some(chat_message(m)),
                _ => None,
            })
            .clone()
    }
}

/// A room message as the classic page shows it: its text (or, for a file
/// sent alone, the file's name), and its offset.
fn chat_message(m: &chat_core::Message) -> Utf8Bytes {
    let text = match (&*m.text, &m.attachment) {
        ("", Some(file)) => &*file.name,
        (text, _) => text,
    };
    Utf8Bytes::from(format!(
        "42[\"chat message\",{},{}]",
        json(text),
        json(&offset(&m.room, m.seq))
    ))
}

/// Where a room message is, as Socket.IO's recovery carries it.
fn offset(room: &chat_core::RoomName, seq: u64) -> String {
    format!("{room}:{seq}")
}

/// An offset read back: the room and the `seq` of the last message seen.
pub(crate) fn parse_offset(offset: &str) -> Option<(String, u64)> {
    let (room, seq) = offset.rsplit_once(':')?;
    Some((room.to_owned(), seq.parse().ok()?))
}

/// The answer to `CONNECT`: the socket's id, and the session's token as
/// the `pid` recovery presents again.
fn connect(sid: &str, welcome: &str) -> Utf8Bytes {
    let session = field(welcome, "session").unwrap_or_default();
    Utf8Bytes::from(format!("40{{\"sid\":{},\"pid\":{}}}", json(sid), json(&session)))
}

/// A refused `CONNECT`: the error's message, and its code in `data`.
fn connect_error(error: &str) -> Utf8Bytes {
    let message = field(error, "message").unwrap_or_default();
    let code = field(error, "code").unwrap_or_default();
    let data = serde_json::json!({ "message": message, "data": { "code": code } });
    Utf8Bytes::from(format!("44{data}"))
}

/// A frame's type: every frame is an object whose first member is `type`.
fn kind(native: &str) -> &str {
    native
        .strip_prefix("{\"type\":\"")
        .and_then(|rest| rest.split_once('"'))
        .map_or("", |(kind, _)| kind)
}

/// A top-level string member of a frame.
fn field(native: &str, name: &str) -> Option<String> {
    match serde_json::from_str::<Map<String, Value>>(native).ok()?.remove(name)? {
        Value::String(value) => Some(value),
        _ => None,
    }
}

fn json(text: &str) -> String {
    Value::from(text).to_string()
}

/// Events a client may send, each a frame of protocol v1 by the same
/// name (`hello` is the `CONNECT`; uploads and channels are not here).
const EVENTS: &[&str] = &[
    "say",
    "join",
    "leave",
    "history",
    "dm",
    "typing",
    "nick",
    "who",
    "rooms",
    "topic",
    "edit",
    "delete",
    "read",
    "conversation",
    "conversations",
    "auth",
];

/// A client's event as a frame of protocol v1: `chat message` with a text
/// is a `say` in `room`; the others are the frames of their name, given as
/// an object (a bare string is a room, or for `say` a text in `room`).
///
/// # Errors
/// An event that is no frame, or a frame that does not decode.
pub(crate) fn frame(packet: &Packet, room: &str) -> Result<ClientMessage, DecodeError> {
    let bad =
        |code, message: &str| Err(DecodeError { code, message: message.to_owned(), id: None });
    let Some(name) = packet.event_name() else {
        return bad(ErrorCode::BadFrame, "an event needs a name");
    };
    let arg = packet.args().first();
    let mut object = match (name, arg) {
        ("chat message", Some(Value::String(text))) => {
            let mut object = Map::new();
            object.insert("type".into(), "say".into());
            object.insert("room".into(), room.into());
            object.insert("text".into(), text.as_str().into());
            object
        }
        ("chat message", _) => return bad(ErrorCode::BadFrame, "chat message takes a text"),
        (name, _) if !EVENTS.contains(&name) => {
            return bad(ErrorCode::UnknownType, &format!("no event {name:?}"));
        }
        (name, Some(Value::Object(object))) => {
            let mut object = object.clone();
            object.insert("type".into(), name.into());
            object
        }
        (name, arg) => {
            let mut object = Map::new();
            object.insert("type".into(), name.into());
            match (name, arg) {
                ("say", Some(Value::String(text))) => {
                    object.insert("text".into(), text.as_str().into());
                }
                (_, Some(Value::String(room))) => {
                    object.insert("room".into(), room.as_str().into());
                }
                _ => {}
            }
            object
        }
    };
    // A message or typing notice without a room is for the connection's.
    if matches!(name, "say" | "typing") && !object.contains_key("room") {
        object.insert("room".into(), room.into());
    }
    decode_client(&Value::Object(object).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use chat_protocol::socketio::Kind;

    fn event(text: &str) -> Packet {
        Packet::decode(text).unwrap()
    }

    #[test]
    fn a_frames_type_is_its_first_member() {
        assert_eq!(kind(r#"{"type":"message","room":"lobby"}"#), "message");
        assert_eq!(kind(r#"{"room":"lobby"}"#), "");
        let frame = chat_protocol::ServerFrame::Pong { id: Some("1".into()) };
        assert_eq!(kind(&frame.encode()), "pong");
    }

    #[test]
    fn events_become_frames() {
        let say = frame(&event(r#"2["chat message","hi"]"#), "lobby").unwrap();
        assert_eq!(say.frame.kind(), "say");
        let json = serde_json::to_value(&say.frame).unwrap();
        assert_eq!(json["room"], "lobby");
        assert_eq!(json["text"], "hi");
        let join = frame(&event(r#"2["join","dev"]"#), "lobby").unwrap();
        assert_eq!(serde_json::to_value(&join.frame).unwrap()["room"], "dev");
        let said = frame(&event(r#"2["say",{"text":"yo","id":"c1"}]"#), "dev").unwrap();
        assert_eq!(said.id.as_deref(), Some("c1"));
        assert_eq!(serde_json::to_value(&said.frame).unwrap()["room"], "dev");
        let unknown = frame(&event(r#"2["hello",{}]"#), "lobby").unwrap_err();
        assert_eq!(unknown.code, ErrorCode::UnknownType);
        let not_text = frame(&event(r#"2["chat message",{"a":1}]"#), "lobby").unwrap_err();
        assert_eq!(not_text.code, ErrorCode::BadFrame);
        assert_eq!(event(r#"2["x"]"#).kind, Kind::Event);
    }

    #[test]
    fn offsets_read_back() {
        assert_eq!(parse_offset("lobby:42"), Some(("lobby".to_owned(), 42)));
        assert_eq!(parse_offset("a:b:7"), Some(("a:b".to_owned(), 7)));
        assert_eq!(parse_offset("lobby"), None);
        assert_eq!(parse_offset("lobby:x"), None);
    }
}
