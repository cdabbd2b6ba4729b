//! How server frames look in line mode: one line per event, with anything
//! a peer wrote made safe for a terminal.

use chat_protocol::{Message, PresenceEvent, ServerFrame};

/// What a change to a room's document list says, if anything (edits go
/// by quietly: the list says who edited last).
pub fn doc_change(action: &str, doc: &chat_protocol::DocInfo, by: &str) -> Option<String> {
    let (by, title, name) = (clean(by), clean(&doc.title), clean(&doc.name));
    match action {
        "created" => Some(format!("{by} created the document \"{title}\" (/doc {name})")),
        "renamed" => Some(format!("{by} renamed the document {name} to \"{title}\"")),
        "deleted" => Some(format!("{by} deleted the document \"{title}\"")),
        "restored" => Some(format!("{by} restored a past version of \"{title}\"")),
        _ => None,
    }
}

/// A document's versions, a line each (newest first), with how to restore
/// one.
pub fn doc_versions(doc: &str, versions: &[chat_protocol::DocVersion]) -> Vec<String> {
    if versions.is_empty() {
        return vec![format!("no versions of {} kept yet", clean(doc))];
    }
    let mut lines = vec![format!("versions of {} (/restore N):", clean(doc))];
    for version in versions {
        let when = i64::try_from(version.ts)
            .ok()
            .and_then(chrono::DateTime::from_timestamp_millis)
            .map(|at| at.with_timezone(&chrono::Local).format("%Y-%m-%d %H:%M:%S").to_string())
            .unwrap_or_default();
        lines.push(format!("  {}  {when}  {}", version.version, size(version.bytes)));
    }
    lines
}

/// The stdout lines for a frame, given the client's own nick. Errors are not
/// rendered here: they go to stderr.
pub fn lines(frame: &ServerFrame, me: &str) -> Vec<String> {
    match frame {
        ServerFrame::Welcome { nick, server, .. } => {
            vec![format!(
                "-- connected to {} {} as {}",
                clean(&server.name),
                clean(&server.version),
                clean(nick)
            )]
        }
        ServerFrame::Joined { room, members, history, topic, .. } => {
            let mut lines: Vec<String> = history.iter().flat_map(message).collect();
            let members: Vec<String> = members.iter().map(|m| clean(m)).collect();
            lines.push(format!(
                "[{}] -- joined ({} members: {})",
                clean(room),
                members.len(),
                members.join(", ")
            ));
            if let Some(topic) = topic {
                lines.push(format!("[{}] -- topic: {}", clean(room), clean(topic)));
            }
            lines
        }
        ServerFrame::Topic { room, topic: Some(topic), by, .. } => {
            vec![format!("[{}] -- {} set the topic: {}", clean(room), clean(by), clean(topic))]
        }
        ServerFrame::Topic { room, topic: None, by, .. } => {
            vec![format!("[{}] -- {} cleared the topic", clean(room), clean(by))]
        }
        ServerFrame::Doc { room, action, doc, by, .. } => doc_change(action, doc, by)
            .map(|text| vec![format!("[{}] -- {text}", clean(room))])
            .unwrap_or_default(),
        ServerFrame::DocVersions { room, doc, versions, .. } => doc_versions(doc, versions)
            .into_iter()
            .map(|line| format!("[{}] -- {line}", clean(room)))
            .collect(),
        ServerFrame::Left { room, .. } => vec![format!("[{}] -- you left", clean(room))],
        ServerFrame::Presence { room, event, nick, old } => {
            let what = match (event, old) {
                (PresenceEvent::Join, _) => format!("{} joined", clean(nick)),
                (PresenceEvent::Leave, _) => format!("{} left", clean(nick)),
                (PresenceEvent::Nick, Some(old)) => {
                    format!("{} is now known as {}", clean(old), clean(nick))
                }
                (PresenceEvent::Nick, None) => format!("someone is now known as {}", clean(nick)),
                (PresenceEvent::Away, _) => format!("{} is away", clean(nick)),
                (PresenceEvent::Back, _) => format!("{} is back", clean(nick)),
            };
            vec![format!("[{}] -- {what}", clean(room))]
        }
        ServerFrame::PresenceBatch { room, changes, more, members } => {
            vec![format!("[{}] -- {}", clean(room), presence_summary(changes, *more, *members))]
        }
        ServerFrame::Message(m) => message(m),
        ServerFrame::Direct { from, to, text, .. } => {
            let tag = if from == me && to != me {
                format!("[dm to {}]", clean(to))
            } else {
                "[dm]".to_owned()
            };
            text_lines(text).map(|line| format!("{tag} <{}> {line}", clean(from))).collect()
        }
        ServerFrame::Conversation { with, messages, .. } => messages
            .iter()
            .flat_map(|m| {
                let tag = if m.from == *me && with != me {
                    format!("[dm to {}]", clean(with))
                } else {
                    "[dm]".to_owned()
                };
                text_lines(&m.text)
                    .map(|line| format!("{tag} <{}> {line}", clean(&m.from)))
                    .collect::<Vec<_>>()
            })
            .collect(),
        ServerFrame::Conversations { conversations, .. } => {
            let list: Vec<String> = conversations
                .iter()
                .map(|c| format!("{} ({})", clean(&c.with), c.last_seq))
                .collect();
            vec![format!(
                "-- conversations: {}",
                if list.is_empty() { "none".to_owned() } else { list.join(", ") }
            )]
        }
        ServerFrame::Nick { nick, .. } => vec![format!("-- you are now known as {}", clean(nick))],
        ServerFrame::Rooms { rooms, .. } => {
            let list: Vec<String> =
                rooms.iter().map(|r| format!("{} ({})", clean(&r.name), r.members)).collect();
            let mut lines = vec![format!(
                "-- rooms: {}",
                if list.is_empty() { "none".to_owned() } else { list.join(", ") }
            )];
            // The directory: what each room with a topic is about.
            for room in rooms {
                if let Some(topic) = &room.topic {
                    lines.push(format!("--   {}: {}", clean(&room.name), clean(topic)));
                }
            }
            lines
        }
        ServerFrame::Members { room, members, count, more, .. } => {
            vec![format!("[{}] -- {}", clean(room), members_line(members, *count, *more))]
        }
        ServerFrame::History { messages, .. } => messages.iter().flat_map(message).collect(),
        ServerFrame::Pong { .. } => vec!["-- pong".to_owned()],
        ServerFrame::Authed { .. } => vec!["-- access token renewed".to_owned()],
        ServerFrame::Subscribed { channel, .. } => {
            vec![format!("-- subscribed to {}", clean(channel))]
        }
        ServerFrame::Stats(stats) => vec![format!(
            "-- stats: {} connections, {} rooms, {} messages/s, {} messages in all",
            stats.connections, stats.room_count, stats.messages_per_sec, stats.messages_total
        )],
        ServerFrame::StatsHistory { points, .. } => {
            vec![format!("-- stats: {} seconds of history", points.len())]
        }
        ServerFrame::UploadReady { .. }
        | ServerFrame::TypingBatch { .. }
        | ServerFrame::Read { .. }
        | ServerFrame::Typing { .. }
        | ServerFrame::Error { .. } => Vec::new(),
    }
}

/// A `who` answer in one line: all the members, or in a big room how many
/// there are and this page of them, saying when more match.
pub fn members_line(members: &[String], count: u64, more: bool) -> String {
    let names: Vec<String> = members.iter().map(|m| clean(m)).collect();
    let names = names.join(", ");
    let shown = members.len() as u64;
    // (A server before member pages sends no count.)
    let count = count.max(shown);
    if !more && shown == count {
        return format!("members: {names}");
    }
    let tail = if more { ", and more (/who ROOM PREFIX narrows it)" } else { "" };
    format!("{count} members; {shown} shown: {names}{tail}")
}

/// A big room's second of presence in one line: who, or how many, joined,
/// left, went away, came back or changed nick.
pub fn presence_summary(
    changes: &[chat_protocol::PresenceChange],
    more: u64,
    members: u64,
) -> String {
    let kinds = [
        (PresenceEvent::Join, "joined"),
        (PresenceEvent::Leave, "left"),
        (PresenceEvent::Away, "away"),
        (PresenceEvent::Back, "back"),
        (PresenceEvent::Nick, "renamed"),
    ];
    let mut parts = Vec::new();
    for (kind, said) in kinds {
        let nicks: Vec<String> =
            changes.iter().filter(|c| c.event == kind).map(|c| clean(&c.nick)).collect();
        match nicks.len() {
            0 => {}
            1..=3 => parts.push(format!("{said}: {}", nicks.join(", "))),
            n => parts.push(format!("{n} {said}")),
        }
    }
    if more > 0 {
        parts.push(format!("{more} more changes"));
    }
    format!("{} ({members} members)", parts.join("; "))
}

/// How an attachment is shown: its name, size, and how to fetch it.
pub fn attachment(file: &chat_protocol::Attachment) -> String {
    format!(
        "[file: {} ({}), {}, /download {}]",
        clean(&file.name),
        size(file.size),
        clean(&file.mime),
        file.id.get(..12).unwrap_or(&file.id)
    )
}

/// The line for messages of `room` that were no longer kept when the
/// client came back.
pub fn gap(room: &str, gap: chat_protocol::Gap) -> String {
    let count = gap.to.saturating_sub(gap.from) + 1;
    let what = if count == 1 { "message" } else { "messages" };
    format!(
        "{}: {count} {what} (#{}..#{}) no longer kept by the server",
        clean(room),
        gap.from,
        gap.to
    )
}

/// A byte count for people: 512 B, 48.2 KB, 8.0 MB.
pub fn size(bytes: u64) -> String {
    match bytes {
        0..1_000 => format!("{bytes} B"),
        1_000..1_000_000 => format!("{:.1} KB", bytes as f64 / 1e3),
        1_000_000..1_000_000_000 => format!("{:.1} MB", bytes as f64 / 1e6),
        _ => format!("{:.1} GB", bytes as f64 / 1e9),
    }
}

/// The lines of several messages.
pub fn messages(messages: &[Message]) -> Vec<String> {
    messages.iter().flat_map(message).collect()
}

fn message(m: &Message) -> Vec<String> {
    let room = clean(&m.room);
    let from = clean(&m.from);
    if m.delete.is_some() {
        return vec![format!("[{room}] -- {from} deleted a message")];
    }
    if m.deleted {
        return vec![format!("[{room}] <{from}> (deleted)")];
    }
    // An edit shows as its new text, said so.
    let edited = m.edit.is_some() || m.edited;
    let file = m.attachment.as_ref().map(attachment);
    let text = match (&file, m.text.is_empty()) {
        (Some(file), true) => file.clone(),
        (Some(file), false) => format!("{} {file}", m.text),
        (None, _) => m.text.clone(),
    };
    let text = if edited { format!("(edited) {text}") } else { text };
    text_lines(&text)
        .map(|line| {
            if m.action {
                format!("[{room}] * {from} {line}")
            } else {
                format!("[{room}] <{from}> {line}")
            }
        })
        .collect()
}

/// The lines of a multi-line text, each made safe.
fn text_lines(text: &str) -> impl Iterator<Item = String> + '_ {
    text.split('\n').map(clean)
}

/// Replaces control characters, so a peer cannot move the cursor, clear
/// the screen or retitle the terminal with escape sequences.
pub fn clean(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() && c != '\t' { char::REPLACEMENT_CHARACTER } else { c })
        .collect()
}

#[cfg(test)]
mod tests {
    use chat_protocol::RoomInfo;

    use super::*;

    #[test]
    fn document_changes_and_versions_read_as_lines() {
        let doc = chat_protocol::DocInfo {
            name: "notes".into(),
            title: "Notes\u{1b}[2J".into(),
            edited_by: "bob".into(),
            edited_at: 0,
        };
        let frame = ServerFrame::Doc {
            id: None,
            room: "lobby".into(),
            action: "restored".into(),
            doc: doc.clone(),
            by: "bob".into(),
        };
        assert_eq!(
            lines(&frame, "alice"),
            ["[lobby] -- bob restored a past version of \"Notes\u{fffd}[2J\""]
        );
        let quiet = ServerFrame::Doc {
            id: None,
            room: "lobby".into(),
            action: "edited".into(),
            doc,
            by: "bob".into(),
        };
        assert!(lines(&quiet, "alice").is_empty(), "edits go by quietly");
        let versions = ServerFrame::DocVersions {
            id: None,
            room: "lobby".into(),
            doc: "notes".into(),
            versions: vec![chat_protocol::DocVersion { version: 7, ts: 0, bytes: 2048 }],
        };
        let shown = lines(&versions, "alice");
        assert_eq!(shown[0], "[lobby] -- versions of notes (/restore N):");
        assert!(
            shown[1].starts_with("[lobby] --   7  ") && shown[1].ends_with("2.0 KB"),
            "{shown:?}"
        );
    }

    #[test]
    fn a_who_answer_says_how_many_when_it_is_not_all_of_them() {
        let names = ["ann".to_owned(), "bo".to_owned()];
        assert_eq!(members_line(&names, 2, false), "members: ann, bo");
        // A server before member pages sends no count.
        assert_eq!(members_line(&names, 0, false), "members: ann, bo");
        assert_eq!(
            members_line(&names, 20_000, true),
            "20000 members; 2 shown: ann, bo, and more (/who ROOM PREFIX narrows it)"
        );
        assert_eq!(members_line(&names, 20_000, false), "20000 members; 2 shown: ann, bo");
    }

    fn msg(text: &str, action: bool) -> ServerFrame {
        ServerFrame::Message(Message {
            edit: None,
            delete: None,
            edited: false,
            deleted: false,
            room: "lobby".into(),
            seq: 1,
            ts: 0,
            from: "alice".into(),
            text: text.into(),
            id: None,
            action,
            attachment: None,
        })
    }

    #[test]
    fn edits_and_deletions_as_lines() {
        let change = |edit, delete, edited, deleted| match msg("fixed", false) {
            ServerFrame::Message(m) => {
                ServerFrame::Message(Message { edit, delete, edited, deleted, ..m })
            }
            other => other,
        };
        assert_eq!(
            lines(&change(Some(1), None, false, false), "bob"),
            vec!["[lobby] <alice> (edited) fixed"]
        );
        assert_eq!(
            lines(&change(None, Some(1), false, false), "bob"),
            vec!["[lobby] -- alice deleted a message"]
        );
        assert_eq!(
            lines(&change(None, None, true, false), "bob"),
            vec!["[lobby] <alice> (edited) fixed"]
        );
        assert_eq!(
            lines(&change(None, None, false, true), "bob"),
            vec!["[lobby] <alice> (deleted)"]
        );
    }

    #[test]
    fn events_as_lines() {
        assert_eq!(lines(&msg("hello", false), "bob"), vec!["[lobby] <alice> hello"]);
        assert_eq!(lines(&msg("waves", true), "bob"), vec!["[lobby] * alice waves"]);
        assert_eq!(
            lines(&msg("a\nb", false), "bob"),
            vec!["[lobby] <alice> a", "[lobby] <alice> b"]
        );
        let presence = |event, old: Option<&str>| ServerFrame::Presence {
            room: "lobby".into(),
            event,
            nick: "bob".into(),
            old: old.map(str::to_owned),
        };
        assert_eq!(lines(&presence(PresenceEvent::Join, None), "x"), vec!["[lobby] -- bob joined"]);
        assert_eq!(lines(&presence(PresenceEvent::Leave, None), "x"), vec!["[lobby] -- bob left"]);
        assert_eq!(
            lines(&presence(PresenceEvent::Nick, Some("bobby")), "x"),
            vec!["[lobby] -- bobby is now known as bob"]
        );
        let dm = ServerFrame::Direct {
            from: "alice".into(),
            to: "bob".into(),
            with: "alice".into(),
            conversation: "~0a".into(),
            seq: 1,
            text: "hi".into(),
            ts: 0,
            id: None,
        };
        assert_eq!(lines(&dm, "bob"), vec!["[dm] <alice> hi"]);
        assert_eq!(lines(&dm, "alice"), vec!["[dm to bob] <alice> hi"]);
        let rooms = ServerFrame::Rooms {
            id: None,
            rooms: vec![RoomInfo { topic: None, name: "lobby".into(), members: 2 }],
        };
        assert_eq!(lines(&rooms, "x"), vec!["-- rooms: lobby (2)"]);
    }

    #[test]
    fn escape_sequences_are_neutralised() {
        assert_eq!(
            lines(&msg("\u{1b}[2Jgone\u{7}", false), "bob"),
            vec!["[lobby] <alice> \u{fffd}[2Jgone\u{fffd}"]
        );
        assert_eq!(clean("tab\tok"), "tab\tok");
    }
}
