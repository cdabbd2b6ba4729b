//! Shared documents' rules: each room's document list (created, renamed,
//! edited, deleted: live to the room, kept across restarts), who may read
//! and change a room's documents, and the limits.

use std::time::Duration;

use chat_core::{
    ChatConfig, Command, CommandError, DocAccess, DocAction, DocEntry, Event, RoomName, RoomPattern,
};

use crate::harness::{Harness, error};

fn create(title: &str) -> Command {
    Command::DocCreate { room: "lobby".into(), title: title.into() }
}

fn rename(doc: &str, title: &str) -> Command {
    Command::DocRename { room: "lobby".into(), doc: doc.into(), title: title.into() }
}

fn delete(doc: &str) -> Command {
    Command::DocDelete { room: "lobby".into(), doc: doc.into() }
}

fn room(name: &str) -> RoomName {
    RoomName::parse(name).unwrap()
}

/// The one `doc` event of `events`: its id, action, entry and who.
fn doc_event(events: &[Event]) -> (Option<String>, DocAction, DocEntry, String) {
    match events {
        [Event::Doc { id, action, doc, by, room }] => {
            assert_eq!(room.as_str(), "lobby");
            (id.as_deref().map(str::to_owned), *action, doc.clone(), by.to_string())
        }
        other => panic!("one doc event: {other:?}"),
    }
}

#[test]
fn members_create_rename_and_delete_documents_everyone_sees_it_live_and_the_list_is_kept() {
    let mut h = Harness::new();
    let alice = h.greeted("alice");
    let bob = h.greeted("bob");
    h.join(alice, "lobby");
    h.join(bob, "lobby");
    h.take_all();
    h.send_with_id(alice, Some("c1"), create("  Meeting notes "));
    let (id, action, doc, by) = doc_event(&h.take(alice));
    assert_eq!((id.as_deref(), action, by.as_str()), (Some("c1"), DocAction::Created, "alice"));
    assert_eq!((doc.name.as_str(), &*doc.title), ("meeting-notes", "Meeting notes"));
    assert_eq!(doc.edited_at, h.now);
    assert_eq!(doc_event(&h.take(bob)), (None, DocAction::Created, doc.clone(), "alice".into()));
    // Titles are one per room, whatever the case; names are made unique.
    h.send(bob, create("MEETING NOTES"));
    assert!(matches!(error(&h.take(bob)), CommandError::BadDocTitle(_)));
    for bad in ["", "   ", "two\nlines", &"x".repeat(101)] {
        h.send(bob, create(bad));
        assert!(matches!(error(&h.take(bob)), CommandError::BadDocTitle(_)), "{bad:?}");
    }
    h.send(bob, create("Meeting notes (old)"));
    let (_, _, old, _) = doc_event(&h.take(bob));
    assert_eq!(old.name.as_str(), "meeting-notes-old");
    h.send(bob, create("Meeting: notes!"));
    let (_, _, third, _) = doc_event(&h.take(bob));
    assert_eq!(third.name.as_str(), "meeting-notes-2");
    h.send(bob, create("Ünïcode ☃"));
    let (_, _, snowman, _) = doc_event(&h.take(bob));
    assert_eq!(snowman.name.as_str(), "n-code");
    h.send(bob, create("☃"));
    let (_, _, only_symbols, _) = doc_event(&h.take(bob));
    assert_eq!(only_symbols.name.as_str(), "doc");
    h.take_all();
    // Renaming keeps the name (what the document is opened by).
    h.send_with_id(bob, Some("r"), rename("meeting-notes", "Minutes"));
    let (id, action, renamed, by) = doc_event(&h.take(bob));
    assert_eq!((id.as_deref(), action, by.as_str()), (Some("r"), DocAction::Renamed, "bob"));
    assert_eq!((renamed.name.as_str(), &*renamed.title), ("meeting-notes", "Minutes"));
    assert_eq!(renamed.edited_by.as_str(), "alice", "renaming is not editing");
    h.send(bob, rename("meeting-notes", "minutes"));
    let (_, _, recased, _) = doc_event(&h.take(bob));
    assert_eq!(&*recased.title, "minutes", "its own title, in another case");
    h.send(bob, rename("meeting-notes-old", "MINUTES"));
    assert!(matches!(error(&h.take(bob)), CommandError::BadDocTitle(_)));
    h.send(bob, rename("nope", "x"));
    assert!(matches!(error(&h.take(bob)), CommandError::NoSuchDoc { .. }));
    // Deleting drops its content too (the driver's: DropDoc).
    h.take_all();
    h.send(alice, delete("meeting-notes-old"));
    let (_, action, gone, _) = doc_event(&h.take(bob));
    assert_eq!((action, gone.name.as_str()), (DocAction::Deleted, "meeting-notes-old"));
    assert_eq!(h.dropped_docs, vec![(room("lobby"), room("meeting-notes-old"), true)]);
    h.take_all();
    h.send(alice, delete("meeting-notes-old"));
    assert!(matches!(error(&h.take(alice)), CommandError::NoSuchDoc { .. }));
    // Only members change a room's list.
    let carol = h.greeted("carol");
    for command in [create("mine"), rename("meeting-notes", "mine"), delete("meeting-notes")] {
        h.send(carol, command);
        assert!(matches!(error(&h.take(carol)), CommandError::NotInRoom(_)));
    }
    // Kept: after a restart, who joins gets the list.
    let mut h = h.restarted();
    let dave = h.greeted("dave");
    h.join(dave, "lobby");
    let listed: Vec<(String, String)> = match h.take(dave).as_slice() {
        [Event::Joined { docs, .. }, ..] => {
            docs.iter().map(|d| (d.name.to_string(), d.title.to_string())).collect()
        }
        other => panic!("{other:?}"),
    };
    let expected = [
        ("doc", "☃"),
        ("meeting-notes", "minutes"),
        ("meeting-notes-2", "Meeting: notes!"),
        ("n-code", "Ünïcode ☃"),
    ];
    let expected: Vec<(String, String)> =
        expected.iter().map(|(n, t)| ((*n).to_owned(), (*t).to_owned())).collect();
    assert_eq!(listed, expected);
}

#[test]
fn edits_list_a_new_document_and_are_told_at_most_every_ten_seconds_whoever_types() {
    let mut h = Harness::new();
    let (alice, alice_token) = h.greeted_with_token("alice");
    let (bob, bob_token) = h.greeted_with_token("bob");
    h.join(alice, "lobby");
    h.join(bob, "lobby");
    h.take_all();
    // A first edit of a name no one created lists it, titled as named.
    h.doc_edit(&alice_token, "lobby", "notes").unwrap();
    let (id, action, doc, by) = doc_event(&h.take(bob));
    assert_eq!(
        (id, action, &*doc.title, by.as_str()),
        (None, DocAction::Created, "notes", "alice")
    );
    // Her next edits within ten seconds say nothing more.
    for _ in 0..5 {
        h.advance(Duration::from_secs(1));
        h.doc_edit(&alice_token, "lobby", "notes").unwrap();
    }
    assert!(h.take(bob).is_empty());
    h.take_all();
    let stored = h.stored.len();
    // Someone else editing within the ten seconds is not told either;
    // past them, the next edit is, saying who edited last.
    h.doc_edit(&bob_token, "lobby", "notes").unwrap();
    assert!(h.take(alice).is_empty());
    h.advance(Duration::from_secs(5));
    h.doc_edit(&bob_token, "lobby", "notes").unwrap();
    let (_, action, doc, by) = doc_event(&h.take(alice));
    assert_eq!((action, by.as_str(), doc.edited_at), (DocAction::Edited, "bob", h.now));
    h.take_all();
    h.advance(Duration::from_secs(9));
    h.doc_edit(&alice_token, "lobby", "notes").unwrap();
    assert!(h.take(bob).is_empty());
    h.advance(Duration::from_secs(1));
    h.doc_edit(&alice_token, "lobby", "notes").unwrap();
    let (_, action, doc, _) = doc_event(&h.take(bob));
    assert_eq!(
        (action, doc.edited_at, doc.edited_by.as_str()),
        (DocAction::Edited, h.now, "alice")
    );
    assert_eq!(h.stored.len(), stored + 2, "stored as often as told");
    // A joiner's list says who edited last and when, to the edit.
    h.advance(Duration::from_secs(2));
    h.doc_edit(&alice_token, "lobby", "notes").unwrap();
    let carol = h.greeted("carol");
    h.join(carol, "lobby");
    match h.take(carol).as_slice() {
        [Event::Joined { docs, .. }, ..] => {
            assert_eq!((docs[0].edited_by.as_str(), docs[0].edited_at), ("alice", h.now));
        }
        other => panic!("{other:?}"),
    }
    // Someone not in the room may not edit.
    let (_, dave_token) = h.greeted_with_token("dave");
    assert_eq!(h.chat.doc_access(&dave_token, &room("lobby")), DocAccess::Denied);
    assert!(matches!(h.doc_edit(&dave_token, "lobby", "notes"), Err(CommandError::NotInRoom(_))));
}

#[test]
fn a_room_holds_at_most_its_documents_and_read_only_rooms_refuse_every_change() {
    let config = ChatConfig {
        max_docs_per_room: 2,
        read_only_docs: vec![RoomPattern::new("archive-*")],
        ..ChatConfig::default()
    };
    let mut h = Harness::with_config(config);
    let (alice, token) = h.greeted_with_token("alice");
    h.join(alice, "lobby");
    assert!(matches!(h.take(alice).as_slice(), [Event::Joined { docs_read_only: false, .. }, ..]));
    h.join(alice, "archive-2025");
    assert!(matches!(h.take(alice).as_slice(), [Event::Joined { docs_read_only: true, .. }, ..]));
    h.send(alice, create("one"));
    h.doc_edit(&token, "lobby", "two").unwrap();
    h.take_all();
    h.send(alice, create("three"));
    assert!(matches!(error(&h.take(alice)), CommandError::DocLimit { max: 2, .. }));
    assert!(matches!(h.doc_edit(&token, "lobby", "three"), Err(CommandError::DocLimit { .. })));
    // Listed ones may still be edited; deleting one makes room.
    h.doc_edit(&token, "lobby", "one").unwrap();
    h.send(alice, delete("one"));
    h.take_all();
    h.doc_edit(&token, "lobby", "three").unwrap();
    h.take_all();
    // A read-only room's documents are read, never changed.
    let archive = room("archive-2025");
    assert_eq!(h.chat.doc_access(&token, &archive), DocAccess::Read);
    assert_eq!(h.chat.doc_access(&token, &room("lobby")), DocAccess::Write);
    assert!(matches!(h.doc_edit(&token, "archive-2025", "notes"), Err(CommandError::Forbidden(_))));
    h.send(alice, Command::DocCreate { room: "archive-2025".into(), title: "x".into() });
    assert!(matches!(error(&h.take(alice)), CommandError::Forbidden(_)));
}

#[test]
fn members_list_a_documents_versions_and_restore_one_which_the_room_is_told() {
    let config =
        ChatConfig { read_only_docs: vec![RoomPattern::new("archive")], ..ChatConfig::default() };
    let mut h = Harness::with_config(config);
    let (alice, token) = h.greeted_with_token("alice");
    let bob = h.greeted("bob");
    for member in [alice, bob] {
        h.join(member, "lobby");
    }
    h.join(alice, "archive");
    h.doc_edit(&token, "lobby", "notes").unwrap();
    h.take_all();
    // Listing is the driver's (it keeps the versions), for members.
    h.send_with_id(
        bob,
        Some("v"),
        Command::DocVersions { room: "lobby".into(), doc: "notes".into() },
    );
    assert!(h.take(bob).is_empty());
    let lobby = room("lobby");
    let notes = room("notes");
    match h.doc_requests.as_slice() {
        [chat_core::Output::ListVersions { member, id, room, doc }] => {
            assert_eq!((*member, id.as_deref(), room, doc), (bob, Some("v"), &lobby, &notes));
        }
        other => panic!("{other:?}"),
    }
    let carol = h.greeted("carol");
    h.send(carol, Command::DocVersions { room: "lobby".into(), doc: "notes".into() });
    assert!(matches!(error(&h.take(carol)), CommandError::NotInRoom(_)));
    h.send(bob, Command::DocVersions { room: "lobby".into(), doc: "nope".into() });
    assert!(matches!(error(&h.take(bob)), CommandError::NoSuchDoc { .. }));
    // Restoring is asked of the driver; once done, the room is told.
    let restore = |doc: &str, room: &str| Command::DocRestore {
        room: room.into(),
        doc: doc.into(),
        version: 3,
    };
    h.send_with_id(bob, Some("r"), restore("notes", "lobby"));
    assert!(matches!(
        h.doc_requests.last(),
        Some(chat_core::Output::RestoreDoc { version: 3, .. })
    ));
    h.advance(Duration::from_secs(1));
    h.chat.handle_doc_restored(h.now, bob, Some("r".into()), &lobby, &notes, Ok(()));
    // (The harness drains on its next call.)
    h.send(carol, Command::Ping);
    let (id, action, doc, by) = doc_event(&h.take(bob));
    assert_eq!((id.as_deref(), action, by.as_str()), (Some("r"), DocAction::Restored, "bob"));
    assert_eq!((doc.edited_by.as_str(), doc.edited_at), ("bob", h.now));
    assert_eq!(doc_event(&h.take(alice)).1, DocAction::Restored);
    // A version the driver does not have: the asker is told.
    h.send_with_id(bob, Some("r2"), restore("notes", "lobby"));
    let missing = CommandError::NoSuchVersion { doc: notes.clone(), version: 3 };
    h.chat.handle_doc_restored(h.now, bob, Some("r2".into()), &lobby, &notes, Err(missing));
    h.send(carol, Command::Ping);
    assert!(matches!(error(&h.take(bob)), CommandError::NoSuchVersion { version: 3, .. }));
    assert!(h.take(alice).is_empty());
    // Not in a read-only room.
    h.send(alice, restore("notes", "archive"));
    assert!(matches!(error(&h.take(alice)), CommandError::Forbidden(_)));
}
