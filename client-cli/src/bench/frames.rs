//! The bench's frames: built from `chat-protocol`'s types and encoded once,
//! as templates, so sending costs a copy and not an encoding; and read by
//! decoding just their `type` (and a message's `text`), so receiving stays
//! cheaper than the server's work it measures.

use std::borrow::Cow;

use chat_protocol::{ClientFrame, ClientMessage, encode_client};
use serde::Deserialize;

/// Bytes of a message's text that carry its intended send time.
pub(super) const STAMP: usize = 16;

/// A `hello` with `nick`.
pub(super) fn hello(nick: &str) -> String {
    let frame = ClientFrame::Hello { nick: Some(nick.to_owned()), session: None, token: None };
    encode_client(&ClientMessage { id: None, frame })
}

/// A `join` of `room`.
pub(super) fn join(room: &str) -> String {
    let frame = ClientFrame::Join { room: room.to_owned(), after: None };
    encode_client(&ClientMessage { id: None, frame })
}

/// A `say` frame encoded once; each message writes its intended send time
/// over the stamps at the start of its text and in its id. The id is what
/// a client would send anyway (so that a retry is answered with the
/// original), and what ties a refusal back to its message.
#[derive(Debug, Clone)]
pub(super) struct SayTemplate {
    bytes: Vec<u8>,
    /// Where the text's stamp starts.
    stamp_at: usize,
    /// Where the id starts.
    id_at: usize,
}

impl SayTemplate {
    /// A `say` to `room` with `size` bytes of text (at least the stamp);
    /// as a Socket.IO client sends it (the frame as the `say` event's
    /// object) if `socketio`.
    pub(super) fn new(room: &str, size: usize, socketio: bool) -> Self {
        // The text and the id are ASCII that JSON leaves as it is, so they
        // appear in the encoding byte for byte.
        let text = format!("{}{}", "0".repeat(STAMP), "x".repeat(size.saturating_sub(STAMP)));
        let id = "i".repeat(STAMP);
        let frame = ClientFrame::Say { room: room.to_owned(), text: text.clone(), action: false };
        let encoded = encode_client(&ClientMessage { id: Some(id.clone()), frame });
        let encoded = match socketio {
            true => format!("42[\"say\",{encoded}]"),
            false => encoded,
        };
        let at = |value: &str| encoded.find(&format!("\"{value}\"")).map_or(0, |at| at + 1);
        Self { stamp_at: at(&text), id_at: at(&id), bytes: encoded.into_bytes() }
    }

    /// The frame's payload stamped with `intended_us`.
    pub(super) fn stamped(&mut self, intended_us: u64) -> &[u8] {
        let stamp = format!("{intended_us:>STAMP$}");
        let id = format!("{intended_us:0STAMP$}");
        for (at, value) in [(self.stamp_at, stamp), (self.id_at, id)] {
            if let Some(slot) = self.bytes.get_mut(at..at + STAMP) {
                slot.copy_from_slice(value.as_bytes());
            }
        }
        &self.bytes
    }
}

/// A Socket.IO client's greeting: its `CONNECT`, as `nick`, to `room`,
/// asking for every frame as an event.
pub(super) fn socketio_connect(nick: &str, room: &str) -> String {
    let auth = serde_json::json!({ "nick": nick, "room": room, "rich": true });
    format!("40{auth}")
}

/// The frame a Socket.IO event carries (`42["message",{…},"room:seq"]`
/// is `{…}`); anything else as it is.
pub(super) fn unwrap(payload: &[u8]) -> &[u8] {
    let Some(rest) = payload.strip_prefix(b"42[\"") else {
        return payload;
    };
    let Some(name_end) = rest.iter().position(|&b| b == b'"') else {
        return payload;
    };
    let Some(mut object) = rest.get(name_end + 2..).and_then(|r| r.strip_suffix(b"]")) else {
        return payload;
    };
    // A room message's offset follows its object: a string, last.
    if object.ends_with(b"\"")
        && let Some(comma) = object.windows(2).rposition(|w| w == b",\"")
    {
        object = object.get(..comma).unwrap_or(object);
    }
    object
}

/// What the bench reads of an `error` frame: whether it refused a message
/// for now (the server is overloaded), and that message's send time.
pub(super) fn refused_for_now(payload: &[u8]) -> Option<u64> {
    #[derive(Deserialize)]
    struct Refusal<'a> {
        #[serde(borrow)]
        code: Cow<'a, str>,
        #[serde(default, borrow)]
        id: Option<Cow<'a, str>>,
        #[serde(default)]
        retry_after_ms: Option<u64>,
    }
    let refusal: Refusal<'_> = serde_json::from_slice(payload).ok()?;
    if refusal.code != "unavailable" || refusal.retry_after_ms.is_none() {
        return None;
    }
    refusal.id?.parse().ok()
}

/// What the bench reads of a server frame: its type, and the send time
/// stamped at the start of a message's text.
#[derive(Debug)]
pub(super) struct Peek<'a> {
    pub kind: Cow<'a, str>,
    pub stamp: Option<u64>,
}

/// The frame as serde decodes it, for layouts the fast paths leave alone.
#[derive(Deserialize)]
struct Decoded<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    #[serde(default, borrow)]
    text: Option<Cow<'a, str>>,
}

/// A server frame's type and text; `None` for what is not a frame.
///
/// The bench reads millions of frames a second on one core, where a full
/// decode would make it, not the server, the limit. Frames laid out as the
/// server writes them (`type` first) are read where the members are;
/// any other layout has its top-level members walked, wherever `type` and
/// `text` are among them; anything unusual (an escape in those two, a
/// malformed object) is decoded by serde. So the answer never depends on
/// the layout, only the cost does.
pub(super) fn peek(payload: &[u8]) -> Option<Peek<'_>> {
    quick(payload).or_else(|| scan(payload)).or_else(|| {
        let decoded: Decoded<'_> = serde_json::from_slice(payload).ok()?;
        let stamp = decoded.text.and_then(|text| stamp(text.as_bytes()));
        Some(Peek { kind: decoded.kind, stamp })
    })
}

/// The send time at the start of a text: spaces, then digits, `STAMP`
/// bytes in all.
fn stamp(text: &[u8]) -> Option<u64> {
    let digits = text.get(..STAMP)?.trim_ascii_start();
    if digits.is_empty() {
        return None;
    }
    digits.iter().try_fold(0u64, |value, &b| {
        let digit = b.is_ascii_digit().then(|| u64::from(b - b'0'))?;
        value.checked_mul(10)?.checked_add(digit)
    })
}

/// The server's own layout: `{"type":"…"` first, and for a message its
/// text under a `"text":"` key. (In JSON a raw quote only ever delimits a
/// string, so `,"text":"` can only be a member's key.)
fn quick(payload: &[u8]) -> Option<Peek<'_>> {
    let rest = payload.strip_prefix(br#"{"type":""#)?;
    let (kind, rest) = plain(rest)?;
    if kind != "message" {
        return Some(Peek { kind: Cow::Borrowed(kind), stamp: None });
    }
    const KEY: &[u8] = br#","text":""#;
    let at = rest.windows(KEY.len()).position(|w| w == KEY)? + KEY.len();
    let head = rest.get(at..)?;
    let head = head.get(..STAMP.min(head.len()))?;
    if head.contains(&b'\\') {
        return None;
    }
    Some(Peek { kind: Cow::Borrowed(kind), stamp: stamp(head) })
}

/// The string body at the start of `bytes` up to its closing quote, if it
/// has no escapes; and what follows.
fn plain(bytes: &[u8]) -> Option<(&str, &[u8])> {
    let end = bytes.iter().position(|&b| b == b'"' || b == b'\\')?;
    if bytes.get(end) != Some(&b'"') {
        return None;
    }
    Some((std::str::from_utf8(bytes.get(..end)?).ok()?, bytes.get(end + 1..)?))
}

/// The fast path of [`peek`]: `None` when unsure.
fn scan(payload: &[u8]) -> Option<Peek<'_>> {
    let mut rest = payload.trim_ascii_start().strip_prefix(b"{")?;
    let (mut kind, mut text): (Option<Cow<'_, str>>, Option<Option<u64>>) = (None, None);
    loop {
        let (key, after) = string(rest.trim_ascii_start())?;
        let after = after.trim_ascii_start().strip_prefix(b":")?.trim_ascii_start();
        let (value, after) = value(after)?;
        if key == b"type" || key == b"text" {
            // A plain string only: escapes are serde's to decode.
            let inner = value.strip_prefix(b"\"")?.strip_suffix(b"\"")?;
            if inner.contains(&b'\\') {
                return None;
            }
            if key == b"type" {
                kind = Some(Cow::Borrowed(std::str::from_utf8(inner).ok()?));
            } else {
                text = Some(stamp(inner));
            }
            // Enough is known: the rest need not be walked.
            if let Some(found) = &kind
                && (text.is_some() || found != "message")
            {
                return Some(Peek { kind: found.clone(), stamp: text.flatten() });
            }
        }
        rest = after.trim_ascii_start();
        match rest.split_first()? {
            (b',', after) => rest = after,
            (b'}', _) => return Some(Peek { kind: kind?, stamp: text.flatten() }),
            _ => return None,
        }
    }
}

/// The string at the start of `bytes`, without its quotes, and what follows.
fn string(bytes: &[u8]) -> Option<(&[u8], &[u8])> {
    let body = bytes.strip_prefix(b"\"")?;
    let mut i = 0;
    loop {
        i += body.get(i..)?.iter().position(|&b| b == b'"' || b == b'\\')?;
        if body.get(i) == Some(&b'"') {
            return Some((body.get(..i)?, body.get(i + 1..)?));
        }
        i += 2;
    }
}

/// The value at the start of `bytes`, as it is written, and what follows.
fn value(bytes: &[u8]) -> Option<(&[u8], &[u8])> {
    let end = match bytes.first()? {
        b'"' => bytes.len() - string(bytes)?.1.len(),
        b'{' | b'[' => {
            let mut depth = 0usize;
            let mut i = 0;
            loop {
                match bytes.get(i)? {
                    b'"' => i = bytes.len() - string(bytes.get(i..)?)?.1.len() - 1,
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth -= 1;
                        if depth == 0 {
                            break i + 1;
                        }
                    }
                    _ => {}
                }
                i += 1;
            }
        }
        _ => bytes.iter().position(|b| matches!(b, b',' | b'}' | b']'))?,
    };
    Some((bytes.get(..end)?, bytes.get(end..)?))
}

/// Whether a frame tells of members coming, going or renaming: one per
/// event in a small room, one per interval (a batch) in a big one.
pub(super) fn is_presence(frame: &Peek<'_>) -> bool {
    frame.kind == "presence" || frame.kind == "presence_batch"
}

/// The intended send time a bench message carries, in µs after the run's
/// origin; `None` for anything else.
pub(super) fn intended_time(frame: &Peek<'_>) -> Option<u64> {
    if frame.kind == "message" { frame.stamp } else { None }
}

#[cfg(test)]
mod tests {
    use chat_protocol::{ServerFrame, decode_client};

    use super::*;

    #[test]
    fn socket_io_events_carry_the_frames_the_readers_know() {
        let message = br#"42["message",{"type":"message","text":"hi"},"lobby:3"]"#;
        assert_eq!(unwrap(message), br#"{"type":"message","text":"hi"}"#);
        let error = br#"42["error",{"type":"error","code":"x"}]"#;
        assert_eq!(unwrap(error), br#"{"type":"error","code":"x"}"#);
        assert_eq!(unwrap(b"40{\"sid\":\"a\"}"), b"40{\"sid\":\"a\"}");
        assert_eq!(unwrap(br#"{"type":"pong"}"#), br#"{"type":"pong"}"#);
        let mut say = SayTemplate::new("lobby", 20, true);
        let stamped = String::from_utf8(say.stamped(42).to_vec()).unwrap();
        assert!(stamped.starts_with(r#"42["say",{"#), "{stamped}");
        // (An Engine.IO message, `4`, carrying the Socket.IO packet.)
        let packet = stamped.strip_prefix('4').unwrap();
        let packet = chat_protocol::socketio::Packet::decode(packet).unwrap();
        assert_eq!(packet.args()[0]["text"].as_str().unwrap().trim_start().get(..2), Some("42"));
    }

    #[test]
    fn a_stamped_say_is_a_say_whose_text_starts_with_the_time() {
        let mut template = SayTemplate::new("bench-0", 40, false);
        let decoded = decode_client(std::str::from_utf8(template.stamped(1_234_567)).unwrap());
        let Ok(ClientMessage { frame: ClientFrame::Say { room, text, .. }, .. }) = decoded else {
            panic!("not a say: {decoded:?}");
        };
        assert_eq!(room, "bench-0");
        assert_eq!(text.len(), 40);
        assert!(text.starts_with("         1234567x"), "{text}");
    }

    #[test]
    fn the_id_carries_the_time_too_and_a_refusal_for_now_gives_it_back() {
        let mut template = SayTemplate::new("bench-0", 20, false);
        let decoded = decode_client(std::str::from_utf8(template.stamped(42)).unwrap()).unwrap();
        assert_eq!(decoded.id.as_deref(), Some("0000000000000042"));
        let refusal = |code: &str, retry: &str| {
            format!(r#"{{"type":"error","id":"0000000000000042","code":"{code}"{retry}}}"#)
        };
        let retry = r#","retry_after_ms":300"#;
        assert_eq!(refused_for_now(refusal("unavailable", retry).as_bytes()), Some(42));
        assert_eq!(refused_for_now(refusal("unavailable", "").as_bytes()), None);
        assert_eq!(refused_for_now(refusal("rate_limited", retry).as_bytes()), None);
        assert_eq!(refused_for_now(b"{\"type\":\"error\",\"code\":\"unavailable\"}"), None);
    }

    #[test]
    fn reads_the_intended_time_of_messages_only() {
        let message = |text: &str| {
            ServerFrame::Message(chat_protocol::Message {
                edit: None,
                delete: None,
                edited: false,
                deleted: false,
                room: "bench-0".to_owned(),
                seq: 3,
                ts: 1,
                from: "b".to_owned(),
                text: text.to_owned(),
                id: None,
                action: false,
                attachment: None,
            })
            .encode()
        };
        let time = |frame: String| peek(frame.as_bytes()).as_ref().and_then(intended_time);
        assert_eq!(time(message("         1234567xxxx")), Some(1_234_567));
        assert_eq!(time(message("short")), None);
        assert_eq!(time(message("  12x4567890123456")), None);
        assert_eq!(time(ServerFrame::Pong { id: None }.encode()), None);
        assert_eq!(
            peek(b"{\"type\":\"error\",\"code\":\"x\"}").map(|p| p.kind.into_owned()),
            Some("error".to_owned())
        );
        assert!(peek(b"not json").is_none());
        // Wherever the members are, and whatever comes between.
        let reordered =
            br#"{"room":"x","nested":{"a":[1,{"b":"}"}]},"text":"              42rest","type":"message"}"#;
        assert_eq!(peek(reordered).as_ref().and_then(intended_time), Some(42));
        // Escapes are decoded (by serde), not taken raw.
        let escaped = br#"{"type":"mess\u0061ge","text":"  42\"x"}"#;
        assert_eq!(peek(escaped).map(|p| p.kind.into_owned()), Some("message".to_owned()));
        assert!(quick(escaped).is_none() && scan(escaped).is_none(), "escapes are serde's");
        // The server's layout goes the quick way; another, the walk.
        let usual = br#"{"type":"message","room":"x","seq":1,"text":"              42rest","action":false}"#;
        assert!(quick(usual).is_some());
        assert!(quick(reordered).is_none() && scan(reordered).is_some());
    }
}
