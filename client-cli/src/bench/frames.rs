//! The bench's frames: built from `chat-protocol`'s types and encoded once,
//! as templates, so sending costs a copy and not an encoding; and read by
//! decoding just their `type` (and a message's `text`), so receiving stays
//! cheaper than the server's work it measures.

use std::borrow::Cow;

use chat_protocol::{ClientFrame, ClientMessage, encode_client};
use serde::Deserialize;

/// Bytes of a message's text that carry its intended send time.
pub(super) const STAMP: usize = 16;

/// The frames that open a connection: `hello`, then `join`.
pub(super) fn greeting(nick: &str, room: &str) -> [String; 2] {
    let frame = |frame| encode_client(&ClientMessage { id: None, frame });
    [
        frame(ClientFrame::Hello { nick: Some(nick.to_owned()), session: None, token: None }),
        frame(ClientFrame::Join { room: room.to_owned(), after: None }),
    ]
}

/// A `say` frame encoded once; each message writes its intended send time
/// over the stamp at the start of the text.
#[derive(Debug, Clone)]
pub(super) struct SayTemplate {
    bytes: Vec<u8>,
    /// Where the stamp starts.
    stamp_at: usize,
}

impl SayTemplate {
    /// A `say` to `room` with `size` bytes of text (at least the stamp).
    pub(super) fn new(room: &str, size: usize) -> Self {
        // The text is ASCII that JSON leaves as it is, so it appears in the
        // encoding byte for byte.
        let text = format!("{}{}", "0".repeat(STAMP), "x".repeat(size.saturating_sub(STAMP)));
        let frame = ClientFrame::Say { room: room.to_owned(), text: text.clone(), action: false };
        let encoded = encode_client(&ClientMessage { id: None, frame });
        let stamp_at = encoded.find(&format!("\"{text}\"")).map_or(0, |at| at + 1);
        Self { bytes: encoded.into_bytes(), stamp_at }
    }

    /// The frame's payload stamped with `intended_us`.
    pub(super) fn stamped(&mut self, intended_us: u64) -> &[u8] {
        let stamp = format!("{intended_us:>STAMP$}");
        if let Some(slot) = self.bytes.get_mut(self.stamp_at..self.stamp_at + STAMP) {
            slot.copy_from_slice(stamp.as_bytes());
        }
        &self.bytes
    }
}

/// What the bench reads of a server frame.
#[derive(Debug, Deserialize)]
pub(super) struct Peek<'a> {
    #[serde(rename = "type", borrow)]
    pub kind: Cow<'a, str>,
    #[serde(default, borrow)]
    pub text: Option<Cow<'a, str>>,
}

/// A server frame's type and text; `None` for what is not a frame.
pub(super) fn peek(payload: &[u8]) -> Option<Peek<'_>> {
    serde_json::from_slice(payload).ok()
}

/// The intended send time a bench message carries, in µs after the run's
/// origin; `None` for anything else.
pub(super) fn intended_time(frame: &Peek<'_>) -> Option<u64> {
    if frame.kind != "message" {
        return None;
    }
    let stamp = frame.text.as_deref()?.get(..STAMP)?.trim_start();
    if stamp.is_empty() || !stamp.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    stamp.parse().ok()
}

#[cfg(test)]
mod tests {
    use chat_protocol::{ServerFrame, decode_client};

    use super::*;

    #[test]
    fn a_stamped_say_is_a_say_whose_text_starts_with_the_time() {
        let mut template = SayTemplate::new("bench-0", 40);
        let decoded = decode_client(std::str::from_utf8(template.stamped(1_234_567)).unwrap());
        let Ok(ClientMessage { frame: ClientFrame::Say { room, text, .. }, .. }) = decoded else {
            panic!("not a say: {decoded:?}");
        };
        assert_eq!(room, "bench-0");
        assert_eq!(text.len(), 40);
        assert!(text.starts_with("         1234567x"), "{text}");
    }

    #[test]
    fn reads_the_intended_time_of_messages_only() {
        let message = |text: &str| {
            ServerFrame::Message(chat_protocol::Message {
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
    }
}
