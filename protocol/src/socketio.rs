//! Socket.IO, protocol version 5, on top of Engine.IO 4 (which
//! `chat_transport::engineio` carries):
//! written from the published protocol document (`socketio/socket.io-protocol`,
//! revision 5) and its default parser's format:
//!
//! ```text
//! <type>[<attachments>-][<namespace>,][<ack id>][<JSON payload>]
//! ```
//!
//! `2["chat message","hi"]` is an event, `212["say",{}]` one that asks
//! for an acknowledgement 12, `3/admin,12[]` that acknowledgement in the
//! namespace `/admin`, `51-["file",{"_placeholder":true,"num":0}]` an event
//! whose binary attachment follows as its own Engine.IO message.

use serde_json::Value;

/// A Socket.IO packet's type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `0`: connect to a namespace (client, with an auth payload), or
    /// connected (server, with the socket's `sid`).
    Connect,
    /// `1`: leave a namespace.
    Disconnect,
    /// `2`: an event: `[name, ...args]`.
    Event,
    /// `3`: the acknowledgement of an event: `[...args]`.
    Ack,
    /// `4`: a refused connect, with `{"message": ...}`.
    ConnectError,
    /// `5`: an event with binary attachments.
    BinaryEvent,
    /// `6`: an acknowledgement with binary attachments.
    BinaryAck,
}

impl Kind {
    fn digit(self) -> char {
        match self {
            Self::Connect => '0',
            Self::Disconnect => '1',
            Self::Event => '2',
            Self::Ack => '3',
            Self::ConnectError => '4',
            Self::BinaryEvent => '5',
            Self::BinaryAck => '6',
        }
    }

    fn of(digit: char) -> Option<Self> {
        Some(match digit {
            '0' => Self::Connect,
            '1' => Self::Disconnect,
            '2' => Self::Event,
            '3' => Self::Ack,
            '4' => Self::ConnectError,
            '5' => Self::BinaryEvent,
            '6' => Self::BinaryAck,
            _ => return None,
        })
    }

    /// Whether binary attachments follow it.
    pub fn is_binary(self) -> bool {
        matches!(self, Self::BinaryEvent | Self::BinaryAck)
    }
}

/// A Socket.IO packet.
#[derive(Debug, Clone, PartialEq)]
pub struct Packet {
    /// What it is.
    pub kind: Kind,
    /// The namespace, `/` for the main one.
    pub nsp: String,
    /// The acknowledgement id: of an event that asks for one, or of the
    /// acknowledgement.
    pub id: Option<u64>,
    /// The payload, if any (binary attachments as placeholders).
    pub data: Option<Value>,
    /// How many binary attachments follow (binary kinds only).
    pub attachments: usize,
}

/// The main namespace.
pub const MAIN: &str = "/";

/// The most binary attachments one packet may announce.
pub const MAX_ATTACHMENTS: usize = 10;

/// Why text is not a Socket.IO packet. The protocol says to close the
/// connection on any of these.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// An empty packet, or a type other than `0`..=`6`.
    #[error("no such packet type")]
    UnknownType,
    /// The attachment count is missing its `-`, is not a number, or is
    /// more than [`MAX_ATTACHMENTS`].
    #[error("a bad attachment count")]
    BadAttachments,
    /// A namespace not ended by `,`.
    #[error("a namespace not ended by a comma")]
    BadNamespace,
    /// An acknowledgement id too large.
    #[error("an acknowledgement id out of range")]
    BadId,
    /// The payload is not JSON.
    #[error("a payload that is not JSON")]
    BadJson,
    /// The payload does not fit the type (an event's must be a non-empty
    /// array whose first item is its name, an acknowledgement's an array,
    /// a connect's an object, a disconnect has none).
    #[error("a payload of the wrong shape for its type")]
    BadPayload,
}

impl Packet {
    /// An event `name` with `args` in the main namespace.
    pub fn event(name: &str, args: impl IntoIterator<Item = Value>) -> Self {
        let data = std::iter::once(Value::from(name)).chain(args).collect();
        Self {
            kind: Kind::Event,
            nsp: MAIN.to_owned(),
            id: None,
            data: Some(Value::Array(data)),
            attachments: 0,
        }
    }

    /// The acknowledgement `id` with `args`, in `nsp`.
    pub fn ack(nsp: &str, id: u64, args: Vec<Value>) -> Self {
        Self {
            kind: Kind::Ack,
            nsp: nsp.to_owned(),
            id: Some(id),
            data: Some(Value::Array(args)),
            attachments: 0,
        }
    }

    /// Decodes a packet (the text of an Engine.IO message).
    ///
    /// # Errors
    /// The text is not a packet of this protocol.
    pub fn decode(text: &str) -> Result<Self, Error> {
        let kind = text.chars().next().and_then(Kind::of).ok_or(Error::UnknownType)?;
        // (Every cut below falls after ASCII: a digit, `-`, `,`.)
        let (_, mut rest) = cut(text, 1);
        let mut attachments = 0;
        if kind.is_binary() {
            let (count, after) = cut(rest, digits(rest));
            rest = after.strip_prefix('-').ok_or(Error::BadAttachments)?;
            attachments = count.parse().map_err(|_| Error::BadAttachments)?;
            if attachments > MAX_ATTACHMENTS {
                return Err(Error::BadAttachments);
            }
        }
        let mut nsp = MAIN;
        if rest.starts_with('/') {
            // A namespace alone may end the packet (`0/admin`).
            let (name, after) = match rest.find(',') {
                Some(end) => cut(rest, end),
                None if rest.bytes().all(|b| b != b'[' && b != b'{') => (rest, ""),
                None => return Err(Error::BadNamespace),
            };
            nsp = name;
            rest = after.strip_prefix(',').unwrap_or(after);
        }
        let (id, json) = cut(rest, digits(rest));
        let id = match id {
            "" => None,
            id => Some(id.parse().map_err(|_| Error::BadId)?),
        };
        let data = match json {
            "" => None,
            json => Some(serde_json::from_str::<Value>(json).map_err(|_| Error::BadJson)?),
        };
        let packet = Self { kind, nsp: nsp.to_owned(), id, data, attachments };
        if packet.fits() { Ok(packet) } else { Err(Error::BadPayload) }
    }

    /// Whether the payload has the shape its type asks for.
    fn fits(&self) -> bool {
        match (self.kind, &self.data) {
            (Kind::Connect, None | Some(Value::Object(_))) => self.id.is_none(),
            (Kind::Disconnect, None) => self.id.is_none(),
            (Kind::ConnectError, Some(Value::Object(_) | Value::String(_))) => self.id.is_none(),
            (Kind::Event | Kind::BinaryEvent, Some(Value::Array(items))) => {
                matches!(items.first(), Some(Value::String(_) | Value::Number(_)))
            }
            (Kind::Ack | Kind::BinaryAck, Some(Value::Array(_))) => self.id.is_some(),
            _ => false,
        }
    }

    /// The packet as the text of an Engine.IO message.
    pub fn encode(&self) -> String {
        let mut text = String::with_capacity(32);
        text.push(self.kind.digit());
        if self.kind.is_binary() {
            text.push_str(&self.attachments.to_string());
            text.push('-');
        }
        if self.nsp != MAIN {
            text.push_str(&self.nsp);
            text.push(',');
        }
        if let Some(id) = self.id {
            text.push_str(&id.to_string());
        }
        if let Some(data) = &self.data {
            text.push_str(&data.to_string());
        }
        text
    }

    /// An event's name.
    pub fn event_name(&self) -> Option<&str> {
        match (&self.kind, &self.data) {
            (Kind::Event | Kind::BinaryEvent, Some(Value::Array(items))) => {
                items.first().and_then(Value::as_str)
            }
            _ => None,
        }
    }

    /// An event's arguments, or an acknowledgement's.
    pub fn args(&self) -> &[Value] {
        let skip = usize::from(matches!(self.kind, Kind::Event | Kind::BinaryEvent));
        match &self.data {
            Some(Value::Array(items)) => items.get(skip..).unwrap_or_default(),
            _ => &[],
        }
    }
}

/// `text` cut after `n` bytes (all of it before, if `n` is not a place
/// to cut).
fn cut(text: &str, n: usize) -> (&str, &str) {
    text.split_at_checked(n).unwrap_or((text, ""))
}

/// How many ASCII digits `text` starts with.
fn digits(text: &str) -> usize {
    text.bytes().take_while(u8::is_ascii_digit).count()
}

/// The attachment a value stands for: `{"_placeholder":true,"num":N}`.
pub fn placeholder(value: &Value) -> Option<usize> {
    let object = value.as_object()?;
    if object.get("_placeholder")? != &Value::Bool(true) || object.len() != 2 {
        return None;
    }
    usize::try_from(object.get("num")?.as_u64()?).ok()
}

/// The placeholder of attachment `num`.
pub fn placeholder_for(num: usize) -> Value {
    serde_json::json!({ "_placeholder": true, "num": num })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn packet(
        kind: Kind,
        nsp: &str,
        id: Option<u64>,
        data: Option<Value>,
        attachments: usize,
    ) -> Packet {
        Packet { kind, nsp: nsp.to_owned(), id, data, attachments }
    }

    #[test]
    fn the_protocol_documents_examples_decode_and_encode_back() {
        let placeholder0 = json!({"_placeholder": true, "num": 0});
        for (text, expected) in [
            ("0", packet(Kind::Connect, "/", None, None, 0)),
            (
                r#"0/admin,{"sid":"oSO0OpakMV_3jnilAAAA"}"#,
                packet(
                    Kind::Connect,
                    "/admin",
                    None,
                    Some(json!({"sid": "oSO0OpakMV_3jnilAAAA"})),
                    0,
                ),
            ),
            (
                r#"4{"message":"Not authorized"}"#,
                packet(
                    Kind::ConnectError,
                    "/",
                    None,
                    Some(json!({"message": "Not authorized"})),
                    0,
                ),
            ),
            (r#"2["foo"]"#, packet(Kind::Event, "/", None, Some(json!(["foo"])), 0)),
            (r#"2/admin,["bar"]"#, packet(Kind::Event, "/admin", None, Some(json!(["bar"])), 0)),
            (
                r#"51-["baz",{"_placeholder":true,"num":0}]"#,
                packet(Kind::BinaryEvent, "/", None, Some(json!(["baz", placeholder0])), 1),
            ),
            (
                r#"52-/admin,["baz",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]"#,
                packet(
                    Kind::BinaryEvent,
                    "/admin",
                    None,
                    Some(json!(["baz", placeholder0, {"_placeholder": true, "num": 1}])),
                    2,
                ),
            ),
            (r#"212["foo"]"#, packet(Kind::Event, "/", Some(12), Some(json!(["foo"])), 0)),
            (
                r#"3/admin,13["bar"]"#,
                packet(Kind::Ack, "/admin", Some(13), Some(json!(["bar"])), 0),
            ),
            (
                r#"61-15["bar",{"_placeholder":true,"num":0}]"#,
                packet(Kind::BinaryAck, "/", Some(15), Some(json!(["bar", placeholder0])), 1),
            ),
            ("1", packet(Kind::Disconnect, "/", None, None, 0)),
            ("1/admin,", packet(Kind::Disconnect, "/admin", None, None, 0)),
        ] {
            let decoded = Packet::decode(text).unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(decoded, expected, "{text}");
            assert_eq!(decoded.encode(), text);
        }
        let event = Packet::decode(r#"2["chat message","hi",{"a":1}]"#).unwrap();
        assert_eq!(event.event_name(), Some("chat message"));
        assert_eq!(event.args(), [json!("hi"), json!({"a": 1})]);
        assert_eq!(
            Packet::event("chat message", [json!("hi")]).encode(),
            r#"2["chat message","hi"]"#
        );
        assert_eq!(Packet::ack("/", 7, vec![json!({"seq": 3})]).encode(), r#"37[{"seq":3}]"#);
        assert_eq!(placeholder(&placeholder_for(3)), Some(3));
        assert_eq!(placeholder(&json!({"_placeholder": true, "num": 1, "x": 2})), None);
    }

    #[test]
    fn what_is_not_a_packet_says_why() {
        for (text, error) in [
            ("", Error::UnknownType),
            ("7", Error::UnknownType),
            ("5[\"a\"]", Error::BadAttachments),
            ("5x-[\"a\"]", Error::BadAttachments),
            ("511-[\"a\"]", Error::BadAttachments),
            ("2/admin[\"a\"]", Error::BadNamespace),
            ("2123456789012345678901234[\"a\"]", Error::BadId),
            ("2[\"a\"", Error::BadJson),
            ("2[]", Error::BadPayload),
            ("2{}", Error::BadPayload),
            ("2[{}]", Error::BadPayload),
            ("2", Error::BadPayload),
            ("3[\"a\"]", Error::BadPayload),
            ("0[]", Error::BadPayload),
            ("1[]", Error::BadPayload),
            ("01{}", Error::BadPayload),
        ] {
            assert_eq!(Packet::decode(text), Err(error), "{text:?}");
        }
    }
}
