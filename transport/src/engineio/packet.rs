//! Engine.IO 4's packets, written from the published protocol document
//! (`socketio/engine.io-protocol`, revision 4).
//!
//! A packet is a type digit and an optional payload: `4hello` is a
//! message, `2probe` a ping with a payload. Over a WebSocket each packet is
//! one frame (a binary message is a binary frame as it is); over HTTP
//! long-polling packets are joined by the record separator `\x1e`, a binary
//! one written `b` + base64.

use base64::Engine as _;

/// The protocol version in the `EIO` query parameter.
pub const VERSION: &str = "4";

/// What joins packets in a long-polling payload.
pub const SEPARATOR: char = '\x1e';

/// An Engine.IO packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Packet {
    /// `0`: the handshake, the server's first packet: a [`Handshake`] as
    /// JSON.
    Open(String),
    /// `1`: the transport may close.
    Close,
    /// `2`: the server's heartbeat (payload empty), or a client's probe of a
    /// new transport (`probe`).
    Ping(String),
    /// `3`: the answer to a ping, with its payload.
    Pong(String),
    /// `4`: a text message: a Socket.IO packet.
    Message(String),
    /// A binary message (a WebSocket binary frame, or `b` + base64 in a
    /// long-polling payload): an attachment of a Socket.IO packet.
    Binary(Vec<u8>),
    /// `5`: the client moved to the new transport.
    Upgrade,
    /// `6`: nothing, to end a pending long-polling request.
    Noop,
}

/// The `open` packet's payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Handshake {
    /// The session id, in every later request's `sid`.
    pub sid: String,
    /// The transports the client may move to (`websocket`).
    pub upgrades: Vec<String>,
    /// How often the server pings, in milliseconds.
    pub ping_interval: u64,
    /// How long the server waits for the pong, in milliseconds.
    pub ping_timeout: u64,
    /// The most bytes a long-polling payload may hold.
    pub max_payload: u64,
}

impl Handshake {
    /// The `open` packet that carries it.
    pub fn packet(&self) -> Packet {
        let upgrades: Vec<String> = self.upgrades.iter().map(|u| json_string(u)).collect();
        Packet::Open(format!(
            "{{\"sid\":{},\"upgrades\":[{}],\"pingInterval\":{},\"pingTimeout\":{},\"maxPayload\":{}}}",
            json_string(&self.sid),
            upgrades.join(","),
            self.ping_interval,
            self.ping_timeout,
            self.max_payload
        ))
    }
}

/// `text` as a JSON string.
fn json_string(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if u32::from(c) < 0x20 => out.push_str(&format!("\\u{:04x}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Why bytes are not an Engine.IO packet (or payload).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// An empty packet: no type.
    #[error("an empty packet")]
    Empty,
    /// A type other than `0`..=`6`.
    #[error("no packet type {0:?}")]
    UnknownType(char),
    /// A packet type that carries no payload, with one.
    #[error("a {0} packet carries no payload")]
    UnexpectedPayload(&'static str),
    /// `b` + something that is not base64.
    #[error("a binary packet that is not base64")]
    BadBase64,
    /// A payload of more packets than allowed.
    #[error("more than {0} packets in one payload")]
    TooManyPackets(usize),
}

impl Packet {
    /// Decodes one packet written as text: a WebSocket text frame, or one
    /// packet of a long-polling payload (where `b` starts a binary one).
    ///
    /// # Errors
    /// The text is not a packet.
    pub fn decode(text: &str) -> Result<Self, Error> {
        let mut chars = text.chars();
        let kind = chars.next().ok_or(Error::Empty)?;
        let payload = chars.as_str();
        let none =
            |name| if payload.is_empty() { Ok(()) } else { Err(Error::UnexpectedPayload(name)) };
        Ok(match kind {
            '0' => Self::Open(payload.to_owned()),
            '1' => none("close").map(|()| Self::Close)?,
            '2' => Self::Ping(payload.to_owned()),
            '3' => Self::Pong(payload.to_owned()),
            '4' => Self::Message(payload.to_owned()),
            '5' => none("upgrade").map(|()| Self::Upgrade)?,
            '6' => none("noop").map(|()| Self::Noop)?,
            'b' => Self::Binary(
                base64::engine::general_purpose::STANDARD
                    .decode(payload)
                    .map_err(|_| Error::BadBase64)?,
            ),
            other => return Err(Error::UnknownType(other)),
        })
    }

    /// The packet as text: a WebSocket text frame, or one packet of a
    /// long-polling payload (a binary one as `b` + base64; over a WebSocket
    /// it goes as a binary frame instead, see [`Packet::is_binary`]).
    pub fn encode(&self) -> String {
        match self {
            Self::Open(handshake) => format!("0{handshake}"),
            Self::Close => "1".to_owned(),
            Self::Ping(payload) => format!("2{payload}"),
            Self::Pong(payload) => format!("3{payload}"),
            Self::Message(text) => format!("4{text}"),
            Self::Binary(bytes) => {
                format!("b{}", base64::engine::general_purpose::STANDARD.encode(bytes))
            }
            Self::Upgrade => "5".to_owned(),
            Self::Noop => "6".to_owned(),
        }
    }

    /// Whether it goes over a WebSocket as a binary frame.
    pub fn is_binary(&self) -> bool {
        matches!(self, Self::Binary(_))
    }
}

/// Splits a long-polling payload into its packets, at most `max_packets`.
///
/// # Errors
/// A packet does not decode, or there are too many.
pub fn decode_payload(body: &str, max_packets: usize) -> Result<Vec<Packet>, Error> {
    let mut packets = Vec::new();
    for text in body.split(SEPARATOR) {
        if packets.len() == max_packets {
            return Err(Error::TooManyPackets(max_packets));
        }
        packets.push(Packet::decode(text)?);
    }
    Ok(packets)
}

/// Joins packets into a long-polling payload.
pub fn encode_payload<'a>(packets: impl IntoIterator<Item = &'a Packet>) -> String {
    let mut body = String::new();
    for (i, packet) in packets.into_iter().enumerate() {
        if i > 0 {
            body.push(SEPARATOR);
        }
        body.push_str(&packet.encode());
    }
    body
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_protocol_documents_examples_decode_and_encode_back() {
        let handshake = r#"0{"sid":"lv_VI97HAXpY6yYWAAAC","upgrades":["websocket"],"pingInterval":25000,"pingTimeout":5000,"maxPayload":1000000}"#;
        let made = Handshake {
            sid: "lv_VI97HAXpY6yYWAAAC".to_owned(),
            upgrades: vec!["websocket".to_owned()],
            ping_interval: 25000,
            ping_timeout: 5000,
            max_payload: 1_000_000,
        };
        assert_eq!(made.packet().encode(), handshake);
        assert_eq!(Packet::decode(handshake), Ok(made.packet()));
        let odd = Handshake { sid: "a\"b\\c\u{1}".to_owned(), ..made };
        assert!(odd.packet().encode().contains(r#""sid":"a\"b\\c\u0001""#));
        for (text, packet) in [
            ("1", Packet::Close),
            ("2", Packet::Ping(String::new())),
            ("2probe", Packet::Ping("probe".into())),
            ("3probe", Packet::Pong("probe".into())),
            ("4hello", Packet::Message("hello".into())),
            ("42[\"hey\",\"Jude\"]", Packet::Message("2[\"hey\",\"Jude\"]".into())),
            ("5", Packet::Upgrade),
            ("6", Packet::Noop),
            ("bAQIDBA==", Packet::Binary(vec![1, 2, 3, 4])),
        ] {
            assert_eq!(Packet::decode(text).as_ref(), Ok(&packet), "{text}");
            assert_eq!(packet.encode(), text);
        }
        let payload = decode_payload("4hello\x1e2\x1e4world", 10).unwrap();
        assert_eq!(
            payload,
            [
                Packet::Message("hello".into()),
                Packet::Ping(String::new()),
                Packet::Message("world".into())
            ]
        );
        assert_eq!(encode_payload(&payload), "4hello\x1e2\x1e4world");
        let mixed = decode_payload("4hello\x1ebAQIDBA==", 10).unwrap();
        assert_eq!(mixed[1], Packet::Binary(vec![1, 2, 3, 4]));
    }

    #[test]
    fn what_is_not_a_packet_says_why() {
        assert_eq!(Packet::decode(""), Err(Error::Empty));
        assert_eq!(Packet::decode("9"), Err(Error::UnknownType('9')));
        assert_eq!(Packet::decode("é"), Err(Error::UnknownType('é')));
        assert_eq!(Packet::decode("1x"), Err(Error::UnexpectedPayload("close")));
        assert_eq!(Packet::decode("b!!"), Err(Error::BadBase64));
        assert_eq!(decode_payload("4a\x1e4b\x1e4c", 2), Err(Error::TooManyPackets(2)));
        assert_eq!(decode_payload("4a\x1e\x1e4c", 10), Err(Error::Empty));
    }
}
