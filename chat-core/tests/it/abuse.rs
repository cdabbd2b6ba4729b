//! The limits that keep one client from hurting everyone: per address
//! (source), per session, per connection and in total, checked on the
//! deterministic harness.

use std::sync::Arc;
use std::time::Duration;

use crate::harness::Harness;
use chat_core::{
    Attachment, ChatConfig, Command, CommandError, Event, Identity, MemberId, Quota, Rate, Record,
    Resume, RoomName, RoomPattern, Source,
};

fn room(text: &str) -> RoomName {
    RoomName::parse(text).unwrap()
}

fn error_of(events: &[Event]) -> CommandError {
    match events {
        [.., Event::Error { error, .. }] => error.clone(),
        other => panic!("expected an error, got {other:?}"),
    }
}

fn hello_from(h: &mut Harness, source: Source, nick: &str) -> MemberId {
    let m = h.connect_from(source);
    h.send(m, Command::Hello { nick: Some(nick.into()), session: None, identity: None });
    let events = h.take(m);
    assert!(matches!(events.as_slice(), [Event::Welcome { .. }]), "{nick}: {events:?}");
    m
}

fn joined(h: &mut Harness, m: MemberId, name: &str) -> Vec<u64> {
    h.send(m, Command::Join { room: name.into(), after: None });
    match h.take(m).as_slice() {
        [.., Event::Joined { history, .. }] => history.iter().map(|m| m.seq).collect(),
        other => panic!("{other:?}"),
    }
}

#[test]
fn ghosts_from_one_address_are_capped_and_cannot_fill_a_room() {
    let config =
        ChatConfig { max_detached_per_source: 8, max_members_per_room: 20, ..Default::default() };
    let mut h = Harness::with_config(config);
    let attacker = Source::new(1);
    for i in 0..30 {
        let m = hello_from(&mut h, attacker, &format!("ghost{i}"));
        h.join(m, "lobby");
        h.disconnect(m);
    }
    assert_eq!(h.chat.session_count(), 8, "only the newest 8 ghosts wait for a resume");
    h.take_all();
    let alice = hello_from(&mut h, Source::new(2), "alice");
    h.send(alice, Command::Join { room: "lobby".into(), after: None });
    assert!(
        matches!(h.take(alice).as_slice(), [Event::Joined { members, .. }] if members.len() == 9)
    );
    // Other addresses keep theirs.
    let bob = hello_from(&mut h, Source::new(3), "bob");
    h.disconnect(bob);
    assert_eq!(h.chat.session_count(), 10);
}

#[test]
fn a_narrower_token_on_resume_leaves_what_it_does_not_allow() {
    let config = ChatConfig { require_identity: true, ..Default::default() };
    let mut h = Harness::with_config(config);
    let expires = h.now.saturating_add(Duration::from_secs(3600));
    let identity = |rooms: Option<&[&str]>| Identity {
        nick: "alice".into(),
        rooms: rooms.map(|rooms| rooms.iter().map(|r| RoomPattern::new(r)).collect()),
        expires,
    };
    let alice = h.connect();
    h.send(alice, Command::Hello { nick: None, session: None, identity: Some(identity(None)) });
    let token = match h.take(alice).as_slice() {
        [Event::Welcome { session, .. }] => session.as_str().to_owned(),
        other => panic!("{other:?}"),
    };
    h.join(alice, "secret");
    h.join(alice, "public-a");
    h.say(alice, "secret", "the plans");
    h.take_all();
    h.disconnect(alice);
    let back = h.connect();
    let narrow = identity(Some(&["public-*"]));
    h.send(back, Command::Hello { nick: None, session: Some(token), identity: Some(narrow) });
    let events = h.take(back);
    assert!(
        matches!(events.as_slice(), [Event::Welcome { resumed: true, .. }, Event::Left { room: r, .. }] if r.as_str() == "secret"),
        "{events:?}"
    );
    h.send(back, Command::History { room: "secret".into(), before: None, limit: None });
    assert_eq!(error_of(&h.take(back)), CommandError::NotInRoom(room("secret")));
    h.send(back, Command::Join { room: "secret".into(), after: Some(0) });
    assert!(matches!(error_of(&h.take(back)), CommandError::Forbidden(_)));
    h.send(back, Command::Who { room: "secret".into(), after: None, prefix: None, limit: None });
    assert_eq!(error_of(&h.take(back)), CommandError::NotInRoom(room("secret")));
    assert!(!h.chat.may_read(&chat_core::SessionToken::parse("token-1").unwrap(), &room("secret")));
    assert!(
        h.chat.may_read(&chat_core::SessionToken::parse("token-1").unwrap(), &room("public-a"))
    );
    h.send(back, Command::Rooms);
    assert!(
        matches!(h.take(back).as_slice(), [Event::Rooms { rooms, .. }] if rooms.iter().map(|r| (&r.name, r.members)).eq([(&room("public-a"), 1)]))
    );
}

#[test]
fn room_creation_is_limited_per_session_and_per_address() {
    let config = ChatConfig {
        rooms_created_per_session: Rate::per_hour(60, 3),
        rooms_created_per_source: Rate::per_hour(60, 5),
        ..Default::default()
    };
    let mut h = Harness::with_config(config);
    let attacker = Source::new(7);
    let one = hello_from(&mut h, attacker, "one");
    for i in 0..3 {
        joined(&mut h, one, &format!("r{i}"));
    }
    h.send(one, Command::Join { room: "r3".into(), after: None });
    let CommandError::CreateRateLimited { retry_after_ms } = error_of(&h.take(one)) else {
        panic!("not rate limited")
    };
    assert_eq!(retry_after_ms, 60_000, "one room a minute");
    // A second session from the same address gets what the address has left.
    let two = hello_from(&mut h, attacker, "two");
    joined(&mut h, two, "s0");
    joined(&mut h, two, "s1");
    h.send(two, Command::Join { room: "s2".into(), after: None });
    assert!(matches!(error_of(&h.take(two)), CommandError::CreateRateLimited { .. }));
    // Joining rooms that exist costs nothing, and others create freely.
    joined(&mut h, two, "r0");
    let alice = hello_from(&mut h, Source::new(8), "alice");
    joined(&mut h, alice, "mine");
    h.advance(Duration::from_secs(60));
    joined(&mut h, one, "r3");
}

#[test]
fn idle_rooms_make_way_and_come_back_with_their_numbering() {
    let config = ChatConfig { max_rooms: 3, ..Default::default() };
    let mut h = Harness::with_config(config);
    let alice = h.greeted("alice");
    for name in ["a", "b", "c"] {
        joined(&mut h, alice, name);
        h.say(alice, name, "hello");
        h.send(alice, Command::Leave { room: name.into() });
    }
    h.take_all();
    assert_eq!(h.chat.room_count(), 3, "empty rooms with messages stay as a cache");
    // The room limit no longer closes the door: the idle room used longest
    // ago makes way.
    assert_eq!(joined(&mut h, alice, "d"), Vec::<u64>::new());
    assert_eq!(h.chat.room_count(), 3);
    // The evicted room comes back from storage, numbering intact.
    assert_eq!(joined(&mut h, alice, "a"), vec![1]);
    h.say(alice, "a", "again");
    let events = h.take(alice);
    assert!(matches!(events.as_slice(), [Event::Message(m)] if m.seq == 2), "{events:?}");
    // Only rooms in use hold the door: with three occupied, a fourth waits.
    joined(&mut h, alice, "b");
    h.send(alice, Command::Join { room: "e".into(), after: None });
    assert_eq!(error_of(&h.take(alice)), CommandError::TooManyRooms { max: 3 });
}

#[test]
fn rooms_whose_history_aged_out_are_forgotten_when_empty() {
    let config =
        ChatConfig { history_max_age: Some(Duration::from_secs(60)), ..Default::default() };
    let mut h = Harness::with_config(config);
    let alice = h.greeted("alice");
    joined(&mut h, alice, "old");
    h.say(alice, "old", "bye");
    h.send(alice, Command::Leave { room: "old".into() });
    h.take_all();
    assert_eq!(h.chat.room_count(), 1);
    h.advance(Duration::from_secs(121));
    assert_eq!(h.chat.room_count(), 0, "nothing of it is left in memory");
    h.send(alice, Command::Join { room: "old".into(), after: Some(1) });
    let events = h.take(alice);
    assert!(
        matches!(events.as_slice(), [Event::Joined { last_seq: 1, resume: Resume::Resumed, .. }]),
        "storage still knows its numbering: {events:?}"
    );
}

#[test]
fn history_memory_has_a_ceiling_and_evicted_windows_are_read_back() {
    let config = ChatConfig {
        history_memory_max: 64 << 10,
        messages_burst: 1000,
        messages_per_sec: 1000,
        max_text_bytes: 8192,
        ..Default::default()
    };
    let mut h = Harness::with_config(config);
    let alice = h.greeted("alice");
    let big = "x".repeat(8000);
    for r in 0..10 {
        let name = format!("room{r}");
        joined(&mut h, alice, &name);
        for _ in 0..4 {
            h.say(alice, &name, &big);
        }
    }
    h.take_all();
    assert!(h.chat.history_bytes() <= 64 << 10, "{} bytes", h.chat.history_bytes());
    // The first room's window went; its history comes back from storage.
    h.send(alice, Command::History { room: "room0".into(), before: None, limit: Some(10) });
    let events = h.take(alice);
    assert!(
        matches!(events.as_slice(), [Event::History { messages, .. }] if messages.iter().map(|m| m.seq).collect::<Vec<_>>() == vec![1, 2, 3, 4]),
        "{events:?}"
    );
    assert!(h.chat.history_bytes() <= 64 << 10);
}

#[test]
fn a_join_that_waits_for_storage_gets_its_joined_before_newer_messages() {
    let config =
        ChatConfig { history_memory_max: 4 << 10, messages_burst: 100, ..Default::default() };
    let mut h = Harness::with_config(config);
    let alice = h.greeted("alice");
    let bob = h.greeted("bob");
    joined(&mut h, alice, "lobby");
    for i in 0..20 {
        h.say(alice, "lobby", &format!("message {i} {}", "y".repeat(100)));
    }
    joined(&mut h, alice, "other");
    for _ in 0..20 {
        h.say(alice, "other", &"z".repeat(100));
    }
    h.take_all();
    h.auto_load = false;
    h.send(bob, Command::Join { room: "lobby".into(), after: None });
    assert_eq!(h.take(bob), vec![], "waits for storage");
    assert_eq!(h.loads, vec![room("lobby")]);
    h.say(alice, "lobby", "said while bob's join waited");
    assert_eq!(h.take(bob), vec![], "nothing of the room before joined");
    h.answer_loads();
    let events = h.take(bob);
    match events.as_slice() {
        [Event::Joined { history, last_seq: 21, .. }] => {
            assert_eq!(history.last().map(|m| m.seq), Some(21), "the message said meanwhile");
            let seqs: Vec<u64> = history.iter().map(|m| m.seq).collect();
            assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1), "{seqs:?}");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn history_pages_are_counted_against_a_byte_budget_per_connection() {
    let config = ChatConfig {
        history_bytes_per_conn: Rate::per_sec(10_000, 50_000),
        messages_burst: 1000,
        messages_per_sec: 1000,
        ..Default::default()
    };
    let mut h = Harness::with_config(config);
    let alice = h.greeted("alice");
    joined(&mut h, alice, "lobby");
    for _ in 0..100 {
        h.say(alice, "lobby", &"x".repeat(2000));
    }
    h.take_all();
    let page = |h: &mut Harness| {
        h.send(alice, Command::History { room: "lobby".into(), before: None, limit: Some(200) });
        h.take(alice)
    };
    // About 2.2 KB a message: the 50 KB burst carries 22 of the 100.
    let first = page(&mut h);
    let Event::History { messages, .. } = &first[0] else { panic!("{first:?}") };
    assert_eq!(messages.len(), 22, "shortened to what fits, newest kept");
    assert_eq!(messages.last().map(|m| m.seq), Some(100));
    let CommandError::HistoryRateLimited { retry_after_ms } = error_of(&page(&mut h)) else {
        panic!("not refused")
    };
    assert!(retry_after_ms > 0 && retry_after_ms < 1000);
    h.advance(Duration::from_millis(retry_after_ms));
    assert!(
        matches!(page(&mut h).as_slice(), [Event::History { messages, .. }] if !messages.is_empty())
    );
    // A join still goes through, with what fits.
    h.send(alice, Command::Join { room: "lobby".into(), after: Some(0) });
    assert!(matches!(h.take(alice).as_slice(), [Event::Joined { .. }]));
}

#[test]
fn messages_storage_could_not_keep_are_taken_back_and_refused_until_it_recovers() {
    let (mut h, alice, bob) = {
        let mut h = Harness::new();
        let alice = h.greeted("alice");
        let bob = h.greeted("bob");
        joined(&mut h, alice, "lobby");
        joined(&mut h, bob, "lobby");
        h.take_all();
        (h, alice, bob)
    };
    h.say(alice, "lobby", "kept");
    let stored_before = h.stored.len();
    h.send_with_id(
        alice,
        Some("lost"),
        Command::Say { room: "lobby".into(), text: "lost".into(), action: false, attachment: None },
    );
    h.take_all();
    let unstored: Vec<Record> = h.stored.drain(stored_before..).collect();
    assert_eq!(unstored.len(), 1);
    h.unstored(unstored, Duration::from_secs(2));
    let events = h.take(alice);
    assert!(
        matches!(events.as_slice(), [Event::Error { id: Some(id), error: CommandError::StoreUnavailable { retry_after_ms: 2000 } }] if &**id == "lost"),
        "{events:?}"
    );
    // Refused while storage is down; everything else goes on.
    h.say(bob, "lobby", "hello?");
    assert!(matches!(error_of(&h.take(bob)), CommandError::StoreUnavailable { .. }));
    h.send(bob, Command::Typing { room: "lobby".into() });
    assert!(matches!(h.take(alice).as_slice(), [Event::Typing { .. }]));
    h.send(bob, Command::History { room: "lobby".into(), before: None, limit: None });
    assert!(
        matches!(h.take(bob).as_slice(), [Event::History { messages, .. }] if messages.len() == 1),
        "the lost message is gone from history"
    );
    // Recovered by itself: numbering continues where storage left off.
    h.advance(Duration::from_secs(2));
    h.say(bob, "lobby", "back");
    assert!(matches!(h.take(alice).as_slice(), [Event::Message(m)] if m.seq == 2));
    // The id is free again: a retry is a new message, not a phantom echo.
    h.send_with_id(
        alice,
        Some("lost"),
        Command::Say { room: "lobby".into(), text: "lost".into(), action: false, attachment: None },
    );
    assert!(matches!(h.take(alice).as_slice(), [Event::Message(m)] if m.seq == 3));
}

#[test]
fn uploads_are_admitted_against_session_and_address_quotas() {
    let config = ChatConfig {
        upload_bytes_per_session: Rate::per_hour(3_600_000, 1_000_000),
        upload_bytes_per_source: Rate::per_hour(3_600_000, 1_500_000),
        ..Default::default()
    };
    let mut h = Harness::with_config(config);
    let shared = Source::new(9);
    let alice = hello_from(&mut h, shared, "alice");
    let bob = hello_from(&mut h, shared, "bob");
    joined(&mut h, alice, "lobby");
    joined(&mut h, bob, "lobby");
    let now = h.now;
    assert_eq!(h.chat.handle_upload(now, alice, "lobby", 800_000), Ok(()));
    assert_eq!(
        h.chat.handle_upload(now, alice, "lobby", 800_000),
        Err(CommandError::QuotaExceeded { quota: Quota::Session, retry_after_ms: Some(600_000) })
    );
    assert_eq!(
        h.chat.handle_upload(now, bob, "lobby", 800_000),
        Err(CommandError::QuotaExceeded { quota: Quota::Source, retry_after_ms: Some(100_000) })
    );
    assert_eq!(
        h.chat.handle_upload(now, bob, "lobby", 2_000_000),
        Err(CommandError::QuotaExceeded { quota: Quota::Session, retry_after_ms: None })
    );
    assert_eq!(
        h.chat.handle_upload(now, bob, "elsewhere", 1),
        Err(CommandError::NotInRoom(room("elsewhere")))
    );
    let carol = hello_from(&mut h, Source::new(10), "carol");
    joined(&mut h, carol, "lobby");
    assert_eq!(h.chat.handle_upload(now, carol, "lobby", 800_000), Ok(()));
    // The file then goes out as a say.
    let file =
        Arc::new(Attachment { id: "f".into(), name: "f".into(), mime: "a/b".into(), size: 1 });
    h.send(
        carol,
        Command::Say {
            room: "lobby".into(),
            text: String::new(),
            action: false,
            attachment: Some(file),
        },
    );
    assert!(matches!(h.take(carol).as_slice(), [Event::Message(m)] if m.attachment.is_some()));
}

#[test]
fn look_alike_nicks_are_taken() {
    let mut h = Harness::new();
    h.greeted("alice");
    for look_alike in ["\u{430}lice", "ALICE", "a1ice", "\u{1d41a}lice"] {
        let m = h.connect();
        h.send(m, Command::Hello { nick: Some(look_alike.into()), session: None, identity: None });
        assert!(matches!(error_of(&h.take(m)), CommandError::NickTaken(_)), "{look_alike}");
    }
}

#[test]
fn a_flood_of_long_remembered_messages_only_pushes_out_its_own_ids() {
    let config = ChatConfig {
        dedupe_max_bytes: 100_000,
        messages_burst: 10_000,
        messages_per_sec: 10_000,
        ..Default::default()
    };
    let mut h = Harness::with_config(config);
    let alice = h.greeted("alice");
    let mallory = h.greeted("mallory");
    joined(&mut h, alice, "lobby");
    joined(&mut h, mallory, "lobby");
    let say = |text: &str| Command::Say {
        room: "lobby".into(),
        text: text.into(),
        action: false,
        attachment: None,
    };
    h.send_with_id(alice, Some("mine"), say("hello"));
    for i in 0..200 {
        h.send_with_id(mallory, Some(&format!("m{i}")), say(&"x".repeat(8000)));
    }
    h.take_all();
    assert!(h.chat.dedupe_bytes() <= 100_000);
    h.send_with_id(alice, Some("mine"), say("hello"));
    let events = h.take(alice);
    assert!(
        matches!(events.as_slice(), [Event::Message(m)] if m.seq == 1),
        "alice's retry is still answered with the original: {events:?}"
    );
}

#[test]
fn commands_after_a_join_that_waits_for_storage_run_after_it_in_order() {
    let mut h = Harness::new();
    let alice = h.greeted("alice");
    h.auto_load = false;
    h.send(alice, Command::Join { room: "lobby".into(), after: None });
    h.say(alice, "lobby", "right after the join");
    h.send_with_id(alice, Some("p"), Command::Ping);
    assert_eq!(h.take(alice), vec![], "everything waits for the room");
    h.answer_loads();
    let events = h.take(alice);
    assert!(
        matches!(events.as_slice(), [Event::Joined { .. }, Event::Message(m), Event::Pong { .. }] if &*m.text == "right after the join"),
        "{events:?}"
    );
}
