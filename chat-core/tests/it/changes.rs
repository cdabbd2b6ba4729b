//! Editing and deleting one's own messages: a change is a message of the
//! room with its own `seq`, applied to the message it changes in memory,
//! in storage, and by every member; history and resume carry both.

use std::sync::Arc;
use std::time::Duration;

use crate::harness::{Harness, error};
use chat_core::{Attachment, ChatConfig, Command, CommandError, Event, Message, MessageKind};

/// (seq, kind, text) of the messages among `events`, history included.
fn messages(events: &[Event]) -> Vec<(u64, MessageKind, String)> {
    let line = |m: &Message| (m.seq, m.kind, m.text.to_string());
    events
        .iter()
        .flat_map(|e| match e {
            Event::Message(m) => vec![line(m)],
            Event::Joined { history, .. } => history.iter().map(line).collect(),
            Event::History { messages, .. } => messages.iter().map(line).collect(),
            _ => Vec::new(),
        })
        .collect()
}

fn edit(seq: u64, text: &str) -> Command {
    Command::Edit { room: "lobby".into(), seq, text: text.into() }
}

fn delete(seq: u64) -> Command {
    Command::Delete { room: "lobby".into(), seq }
}

#[test]
fn an_edit_and_a_delete_are_messages_every_member_gets_and_history_keeps() {
    let mut h = Harness::new();
    let alice = h.greeted("alice");
    let bob = h.greeted("bob");
    h.join(alice, "lobby");
    h.join(bob, "lobby");
    h.say(alice, "lobby", "teh typo");
    h.say(alice, "lobby", "regret");
    h.take_all();
    h.send_with_id(alice, Some("e1"), edit(1, "the typo"));
    h.send(alice, delete(2));
    let expected = vec![
        (3, MessageKind::Edit(1), "the typo".to_owned()),
        (4, MessageKind::Delete(2), String::new()),
    ];
    assert_eq!(messages(&h.take(alice)), expected);
    assert_eq!(messages(&h.take(bob)), expected);
    // Someone joining sees the messages as they are now, and the changes.
    let carol = h.greeted("carol");
    h.join(carol, "lobby");
    assert_eq!(
        messages(&h.take(carol)),
        vec![
            (1, MessageKind::Edited, "the typo".to_owned()),
            (2, MessageKind::Deleted, String::new()),
            (3, MessageKind::Edit(1), "the typo".to_owned()),
            (4, MessageKind::Delete(2), String::new()),
        ]
    );
    // A retried edit is answered with the original, not applied twice.
    h.take_all();
    h.send_with_id(alice, Some("e1"), edit(1, "the typo"));
    assert_eq!(messages(&h.take(alice)), vec![(3, MessageKind::Edit(1), "the typo".to_owned())]);
    assert_eq!(h.take(bob), vec![]);
    // And after a restart, storage has them as they are now.
    let mut h = h.restarted();
    let dave = h.greeted("dave");
    h.join(dave, "lobby");
    assert_eq!(
        messages(&h.take(dave))[..2],
        [(1, MessageKind::Edited, "the typo".to_owned()), (2, MessageKind::Deleted, String::new())]
    );
}

#[test]
fn only_the_sender_changes_a_message_and_edits_only_within_the_window() {
    let config = ChatConfig { edit_window: Duration::from_secs(60), ..ChatConfig::default() };
    let mut h = Harness::with_config(config);
    let alice = h.greeted("alice");
    let bob = h.greeted("bob");
    h.join(alice, "lobby");
    h.join(bob, "lobby");
    h.say(alice, "lobby", "mine");
    h.take_all();
    h.send(bob, edit(1, "hijacked"));
    assert!(matches!(error(&h.take(bob)), CommandError::NotYours(_)));
    h.send(bob, delete(1));
    assert!(matches!(error(&h.take(bob)), CommandError::NotYours(_)));
    h.send(alice, edit(9, "nothing there"));
    assert!(matches!(error(&h.take(alice)), CommandError::NoSuchMessage { seq: 9, .. }));
    h.advance(Duration::from_secs(61));
    h.send(alice, edit(1, "too late"));
    assert!(matches!(error(&h.take(alice)), CommandError::NotYours(why) if why.contains("1 min")));
    // Deleting has no window; a change cannot itself be changed.
    h.send(alice, delete(1));
    assert_eq!(messages(&h.take(alice)), vec![(2, MessageKind::Delete(1), String::new())]);
    h.send(alice, delete(2));
    assert!(matches!(error(&h.take(alice)), CommandError::NoSuchMessage { seq: 2, .. }));
    h.send(alice, edit(1, "back from the dead"));
    assert!(matches!(error(&h.take(alice)), CommandError::NoSuchMessage { seq: 1, .. }));
}

#[test]
fn a_deleted_message_loses_its_file_too() {
    let mut h = Harness::new();
    let alice = h.greeted("alice");
    h.join(alice, "lobby");
    let file = Arc::new(Attachment {
        id: "f1".into(),
        name: "cat.png".into(),
        mime: "image/png".into(),
        size: 3,
    });
    h.send(
        alice,
        Command::Say {
            room: "lobby".into(),
            text: String::new(),
            action: false,
            attachment: Some(file),
        },
    );
    h.take_all();
    h.send(alice, delete(1));
    h.take_all();
    h.send(alice, Command::History { room: "lobby".into(), before: None, limit: None });
    match h.take(alice).as_slice() {
        [Event::History { messages, .. }] => {
            assert_eq!(messages[0].kind, MessageKind::Deleted);
            assert_eq!(messages[0].attachment, None, "the file is gone with it");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_topic_is_set_by_a_member_seen_by_all_listed_and_kept() {
    let mut h = Harness::new();
    let alice = h.greeted("alice");
    let bob = h.greeted("bob");
    h.join(alice, "lobby");
    h.join(bob, "lobby");
    h.say(alice, "lobby", "hi");
    h.take_all();
    let topic = |text: &str| Command::Topic { room: "lobby".into(), topic: text.into() };
    h.send_with_id(alice, Some("t"), topic("  plans for the week  "));
    for (m, id) in [(alice, Some("t")), (bob, None)] {
        match h.take(m).as_slice() {
            [Event::Topic { id: got, topic: Some(text), by, .. }] => {
                assert_eq!(
                    (got.as_deref(), &**text, by.as_str()),
                    (id, "plans for the week", "alice")
                );
            }
            other => panic!("{other:?}"),
        }
    }
    h.send(bob, Command::Rooms);
    match h.take(bob).as_slice() {
        [Event::Rooms { rooms, .. }] => {
            assert_eq!(rooms[0].topic.as_deref(), Some("plans for the week"))
        }
        other => panic!("{other:?}"),
    }
    h.send(alice, topic(&"x".repeat(201)));
    assert!(matches!(error(&h.take(alice)), CommandError::BadTopic { max: 200 }));
    h.send(alice, topic("two\nlines"));
    assert!(matches!(error(&h.take(alice)), CommandError::BadTopic { .. }));
    let carol = h.greeted("carol");
    h.send(carol, Command::Topic { room: "lobby".into(), topic: "not a member".into() });
    assert!(matches!(error(&h.take(carol)), CommandError::NotInRoom(_)));
    // Kept: after a restart, who joins sees it.
    let mut h = h.restarted();
    let dave = h.greeted("dave");
    h.join(dave, "lobby");
    match h.take(dave).as_slice() {
        [Event::Joined { topic, .. }, ..] => {
            assert_eq!(topic.as_deref(), Some("plans for the week"))
        }
        other => panic!("{other:?}"),
    }
}
