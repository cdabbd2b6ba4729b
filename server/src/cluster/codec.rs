//! A room message as nodes hand it to each other through Redis: its fields
//! as JSON, but for the room and `seq`, which the log's keys and entry ids
//! carry. A message that does not decode is not a message of this chat.

use std::sync::Arc;

use chat_core::{Attachment, Message, MessageKind, Nick, RoomName, SessionToken, Timestamp};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize)]
struct Stored {
    ts: u64,
    from: String,
    text: String,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    action: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    sender: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    file: Option<File>,
    /// said, edited, deleted, edit, delete
    kind: String,
    /// What an edit or a deletion changes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    of: Option<u64>,
}

#[derive(Serialize, Deserialize)]
struct File {
    id: String,
    name: String,
    mime: String,
    size: u64,
}

/// `message` as the log keeps it.
pub fn encode(message: &Message) -> Vec<u8> {
    let (kind, of) = match message.kind {
        MessageKind::Said => ("said", None),
        MessageKind::Edited => ("edited", None),
        MessageKind::Deleted => ("deleted", None),
        MessageKind::Edit(of) => ("edit", Some(of)),
        MessageKind::Delete(of) => ("delete", Some(of)),
    };
    let stored = Stored {
        ts: message.ts.as_unix_millis(),
        from: message.from.as_str().to_owned(),
        text: message.text.to_string(),
        action: message.action,
        id: message.id.as_deref().map(str::to_owned),
        sender: message.sender.as_ref().map(|token| token.as_str().to_owned()),
        file: message.attachment.as_deref().map(|file| File {
            id: file.id.to_string(),
            name: file.name.to_string(),
            mime: file.mime.to_string(),
            size: file.size,
        }),
        kind: kind.to_owned(),
        of,
    };
    // Plain strings and numbers: this cannot fail.
    serde_json::to_vec(&stored).unwrap_or_default()
}

/// The message `room` holds at `seq`, from what the log keeps.
pub fn decode(room: &RoomName, seq: u64, bytes: &[u8]) -> Option<Message> {
    let stored: Stored = serde_json::from_slice(bytes).ok()?;
    let kind = match (stored.kind.as_str(), stored.of) {
        ("said", None) => MessageKind::Said,
        ("edited", None) => MessageKind::Edited,
        ("deleted", None) => MessageKind::Deleted,
        ("edit", Some(of)) => MessageKind::Edit(of),
        ("delete", Some(of)) => MessageKind::Delete(of),
        _ => return None,
    };
    Some(Message {
        room: room.clone(),
        seq,
        ts: Timestamp::from_unix_millis(stored.ts),
        from: Nick::parse(&stored.from).ok()?,
        text: Arc::from(stored.text),
        action: stored.action,
        id: stored.id.map(Arc::from),
        sender: match stored.sender {
            Some(token) => Some(SessionToken::parse(&token).ok()?),
            None => None,
        },
        attachment: stored.file.map(|file| {
            Arc::new(Attachment {
                id: Arc::from(file.id),
                name: Arc::from(file.name),
                mime: Arc::from(file.mime),
                size: file.size,
            })
        }),
        kind,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(kind: MessageKind, attachment: bool) -> Message {
        Message {
            room: RoomName::parse("lobby").unwrap(),
            seq: 7,
            ts: Timestamp::from_unix_millis(1_700_000_000_123),
            from: Nick::parse("Ann").unwrap(),
            text: Arc::from("héllo: \"quoted\"\nnew line"),
            action: attachment,
            id: attachment.then(|| Arc::from("m1")),
            sender: attachment.then(|| SessionToken::parse("0123456789abcdef").unwrap()),
            attachment: attachment.then(|| {
                Arc::new(Attachment {
                    id: Arc::from("f00d"),
                    name: Arc::from("cat.png"),
                    mime: Arc::from("image/png"),
                    size: 48_213,
                })
            }),
            kind,
        }
    }

    #[test]
    fn every_kind_of_message_comes_back_as_it_went() {
        let kinds = [
            MessageKind::Said,
            MessageKind::Edited,
            MessageKind::Deleted,
            MessageKind::Edit(3),
            MessageKind::Delete(4),
        ];
        for kind in kinds {
            for attachment in [false, true] {
                let sent = message(kind, attachment);
                let room = sent.room.clone();
                assert_eq!(decode(&room, 7, &encode(&sent)), Some(sent));
            }
        }
    }

    #[test]
    fn what_is_not_a_message_is_refused() {
        let room = RoomName::parse("lobby").unwrap();
        for bytes in [&b"not json"[..], b"{}", br#"{"ts":1,"from":"a","text":"x","kind":"edit"}"#] {
            assert_eq!(decode(&room, 1, bytes), None, "{}", String::from_utf8_lossy(bytes));
        }
        let bad_nick = br#"{"ts":1,"from":"","text":"x","kind":"said"}"#;
        assert_eq!(decode(&room, 1, bad_nick), None);
    }
}
