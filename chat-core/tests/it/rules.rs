//! The chat rules, driven through the deterministic harness.

use std::sync::Arc;
use std::time::Duration;

use crate::harness::Harness;
use chat_core::{
    ChatConfig, Command, CommandError, Event, Message, NameError, Nick, Peer, Presence, Resume,
    RoomName, SessionToken, Timestamp,
};

fn nick(text: &str) -> Nick {
    Nick::parse(text).unwrap_or_else(|err| panic!("{text}: {err}"))
}

fn token(text: &str) -> SessionToken {
    SessionToken::parse(text).unwrap()
}

fn room(text: &str) -> RoomName {
    RoomName::parse(text).unwrap_or_else(|err| panic!("{text}: {err}"))
}

fn error_of(events: &[Event]) -> CommandError {
    match events {
        [Event::Error { error, .. }] => error.clone(),
        other => panic!("expected one error, got {other:?}"),
    }
}

fn say_cmd(room: &str, text: &str) -> Command {
    Command::Say { room: room.into(), text: text.into(), action: false, attachment: None }
}

#[test]
fn hello_assigns_the_nick_asked_for() {
    let mut h = Harness::new();
    let m = h.connect();
    h.send_with_id(
        m,
        Some("h1"),
        Command::Hello { nick: Some("Alice".into()), session: None, identity: None },
    );
    assert_eq!(
        h.take(m),
        vec![Event::Welcome {
            id: Some("h1".into()),
            nick: nick("Alice"),
            session: token("token-1"),
            resumed: false,
            rooms: Vec::new(),
            expires: None,
        }]
    );
    assert_eq!(h.chat.nick(m), Some(&nick("Alice")));
}

#[test]
fn hello_without_nick_gets_a_free_guest_nick() {
    let mut h = Harness::new();
    h.greeted("guest-0001");
    let m = h.connect();
    h.send(m, Command::Hello { nick: None, session: None, identity: None });
    assert_eq!(
        h.take(m),
        vec![Event::Welcome {
            id: None,
            nick: nick("guest-0002"),
            session: token("token-2"),
            resumed: false,
            rooms: Vec::new(),
            expires: None,
        }]
    );
}

#[test]
fn every_command_before_hello_is_refused() {
    let mut h = Harness::new();
    let m = h.connect();
    for command in
        [Command::Join { room: "lobby".into(), after: None }, Command::Ping, Command::Rooms]
    {
        h.send_with_id(m, Some("x"), command);
        let events = h.take(m);
        assert_eq!(
            events,
            vec![Event::Error { id: Some("x".into()), error: CommandError::HelloRequired }]
        );
    }
}

#[test]
fn second_hello_is_refused() {
    let mut h = Harness::new();
    let m = h.greeted("alice");
    h.send(m, Command::Hello { nick: Some("bob".into()), session: None, identity: None });
    assert_eq!(error_of(&h.take(m)), CommandError::AlreadyGreeted);
    assert_eq!(h.chat.nick(m), Some(&nick("alice")));
}

#[test]
fn nicks_are_unique_case_insensitively() {
    let mut h = Harness::new();
    h.greeted("alice");
    let m = h.connect();
    h.send(m, Command::Hello { nick: Some("ALICE".into()), session: None, identity: None });
    assert_eq!(error_of(&h.take(m)), CommandError::NickTaken(nick("ALICE")));
    // The refused hello leaves the member free to try again.
    h.send(m, Command::Hello { nick: Some("bob".into()), session: None, identity: None });
    assert!(matches!(h.take(m).as_slice(), [Event::Welcome { .. }]));
}

#[test]
fn invalid_nick_is_refused() {
    let mut h = Harness::new();
    let m = h.connect();
    h.send(m, Command::Hello { nick: Some("a b".into()), session: None, identity: None });
    assert!(matches!(
        error_of(&h.take(m)),
        CommandError::InvalidNick(NameError::BadChar { found: ' ', .. })
    ));
}

#[test]
fn join_tells_the_joiner_everything_and_the_others_who_came() {
    let mut h = Harness::new();
    let alice = h.greeted("alice");
    let bob = h.greeted("Bob");
    h.join(alice, "lobby");
    h.say(alice, "lobby", "first");
    h.take_all();
    h.send_with_id(bob, Some("j"), Command::Join { room: "lobby".into(), after: None });
    let events = h.take(bob);
    let [Event::Joined { id, room: r, members, away, history, last_seq, resume, .. }] =
        events.as_slice()
    else {
        panic!("{events:?}");
    };
    assert_eq!(id.as_deref(), Some("j"));
    assert_eq!(r, &room("lobby"));
    assert_eq!(members, &vec![nick("alice"), nick("Bob")]);
    assert!(away.is_empty());
    assert_eq!(history.iter().map(|m| &*m.text).collect::<Vec<_>>(), vec!["first"]);
    assert_eq!(*last_seq, 1);
    assert_eq!(*resume, Resume::Fresh);
    assert_eq!(
        h.take(alice),
        vec![Event::Presence { room: room("lobby"), change: Presence::Joined(nick("Bob")) }]
    );
}

#[test]
fn joining_twice_answers_again_without_presence() {
    let mut h = Harness::new();
    let alice = h.greeted("alice");
    let bob = h.greeted("bob");
    h.join(alice, "lobby");
    h.join(bob, "lobby");
    h.take_all();
    h.join(bob, "lobby");
    assert!(
        matches!(h.take(bob).as_slice(), [Event::Joined { members, .. }] if members.len() == 2)
    );
    assert_eq!(h.take(alice), vec![]);
}

#[test]
fn invalid_room_is_refused() {
    let mut h = Harness::new();
    let m = h.greeted("alice");
    h.join(m, "Not A Room");
    assert!(matches!(error_of(&h.take(m)), CommandError::InvalidRoom(_)));
}

#[test]
fn say_fans_out_to_every_member_with_increasing_seq() {
    let mut h = Harness::new();
    let alice = h.greeted("alice");
    let bob = h.greeted("bob");
    let carol = h.greeted("carol");
    h.join(alice, "lobby");
    h.join(bob, "lobby");
    h.join(carol, "other");
    h.take_all();
    h.send_with_id(alice, Some("m1"), say_cmd("lobby", "hello"));
    assert_eq!(h.last_outputs, 1, "a fan-out is one output");
    h.advance(Duration::from_millis(5));
    h.send(
        bob,
        Command::Say { room: "lobby".into(), text: "waves".into(), action: true, attachment: None },
    );
    let first = Message {
        kind: Default::default(),
        room: room("lobby"),
        seq: 1,
        ts: Timestamp::from_unix_millis(1_700_000_000_000),
        from: nick("alice"),
        text: "hello".into(),
        action: false,
        id: Some("m1".into()),
        sender: Some(token("token-1")),
        attachment: None,
    };
    let second = Message {
        seq: 2,
        ts: Timestamp::from_unix_millis(1_700_000_000_005),
        from: nick("bob"),
        text: "waves".into(),
        action: true,
        id: None,
        sender: Some(token("token-2")),
        ..first.clone()
    };
    let expected = vec![Event::Message(first), Event::Message(second)];
    assert_eq!(h.take(alice), expected);
    assert_eq!(h.take(bob), expected);
    assert_eq!(h.take(carol), vec![]);
}

#[test]
fn seq_is_per_room() {
    let mut h = Harness::new();
    let alice = h.greeted("alice");
    h.join(alice, "a");
    h.join(alice, "b");
    h.say(alice, "a", "1");
    h.say(alice, "a", "2");
    h.take_all();
    h.say(alice, "b", "1");
    assert!(matches!(h.take(alice).as_slice(), [Event::Message(Message { seq: 1, .. })]));
}

#[test]
fn say_outside_a_joined_room_is_refused() {
    let mut h = Harness::new();
    let alice = h.greeted("alice");
    let bob = h.greeted("bob");
    h.join(bob, "lobby");
    h.take_all();
    h.say(alice, "lobby", "hi");
    assert_eq!(error_of(&h.take(alice)), CommandError::NotInRoom(room("lobby")));
    h.say(alice, "nowhere", "hi");
    assert_eq!(error_of(&h.take(alice)), CommandError::NotInRoom(room("nowhere")));
    assert_eq!(h.take(bob), vec![]);
}

#[test]
fn text_must_be_non_empty_and_within_the_limit() {
    let config = ChatConfig { max_text_bytes: 10, ..ChatConfig::default() };
    let mut h = Harness::with_config(config);
    let alice = h.greeted("alice");
    h.join(alice, "lobby");
    h.take_all();
    h.say(alice, "lobby", "");
    assert_eq!(error_of(&h.take(alice)), CommandError::EmptyText);
    h.say(alice, "lobby", "ééééé!");
    assert_eq!(error_of(&h.take(alice)), CommandError::TooLarge { len: 11, max: 10 });
    h.say(alice, "lobby", "ééééé");
    assert!(matches!(h.take(alice).as_slice(), [Event::Message(_)]));
}

#[test]
fn messages_are_rate_limited_with_a_retry_time() {
    let config = ChatConfig { messages_per_sec: 2, messages_burst: 3, ..ChatConfig::default() };
    let mut h = Harness::with_config(config);
    let alice = h.greeted("alice");
    let bob = h.greeted("bob");
    h.join(alice, "lobby");
    h.take_all();
    for _ in 0..3 {
        h.say(alice, "lobby", "spam");
    }
    h.take_all();
    h.say(alice, "lobby", "one too many");
    assert_eq!(error_of(&h.take(alice)), CommandError::RateLimited { retry_after_ms: 500 });
    // DMs draw from the same bucket.
    h.send(alice, Command::Dm { to: Peer::Nick("bob".into()), text: "hi".into() });
    assert_eq!(error_of(&h.take(alice)), CommandError::RateLimited { retry_after_ms: 500 });
    assert_eq!(h.take(bob), vec![]);
    h.advance(Duration::from_millis(500));
    h.say(alice, "lobby", "again");
    assert!(matches!(h.take(alice).as_slice(), [Event::Message(Message { seq: 4, .. })]));
}

#[test]
fn history_ring_keeps_the_newest_and_pages_back() {
    let config = ChatConfig {
        history_per_room: 5,
        join_history: 2,
        history_page_max: 3,
        messages_burst: 100,
        ..ChatConfig::default()
    };
    let mut h = Harness::with_config(config);
    let alice = h.greeted("alice");
    h.join(alice, "lobby");
    for i in 1..=8 {
        h.say(alice, "lobby", &i.to_string());
    }
    h.take_all();
    let seqs = |events: Vec<Event>| -> Vec<u64> {
        match events.as_slice() {
            [Event::History { messages, .. }] => messages.iter().map(|m| m.seq).collect(),
            [Event::Joined { history, .. }] => history.iter().map(|m| m.seq).collect(),
            other => panic!("{other:?}"),
        }
    };
    let history = |before, limit| Command::History { room: "lobby".into(), before, limit };
    h.send(alice, history(None, None));
    assert_eq!(seqs(h.take(alice)), vec![6, 7, 8], "default limit clamped to the max");
    h.send(alice, history(Some(7), Some(2)));
    assert_eq!(seqs(h.take(alice)), vec![5, 6]);
    h.send(alice, history(Some(5), Some(3)));
    assert_eq!(seqs(h.take(alice)), vec![4], "the ring dropped 1 to 3");
    h.send(alice, history(Some(4), Some(3)));
    assert_eq!(seqs(h.take(alice)), Vec::<u64>::new());
    h.send(alice, history(None, Some(0)));
    assert_eq!(seqs(h.take(alice)), Vec::<u64>::new());
    let bob = h.greeted("bob");
    h.join(bob, "lobby");
    assert_eq!(seqs(h.take(bob)), vec![7, 8]);
    h.send(bob, history(None, Some(1)));
    assert_eq!(seqs(h.take(bob)), vec![8]);
    let carol = h.greeted("carol");
    h.send(carol, history(None, None));
    assert_eq!(error_of(&h.take(carol)), CommandError::NotInRoom(room("lobby")));
}

#[test]
fn dm_reaches_recipient_and_sender() {
    let mut h = Harness::new();
    let alice = h.greeted("alice");
    let bob = h.greeted("Bob");
    h.send_with_id(
        alice,
        Some("d1"),
        Command::Dm { to: Peer::Nick("bob".into()), text: "psst".into() },
    );
    let now = h.now;
    let mine = h.take(alice);
    let key = match mine.as_slice() {
        [Event::Direct { key, .. }] => key.clone(),
        other => panic!("{other:?}"),
    };
    assert!(key.starts_with('~') && !key.contains("token"), "a key that tells nothing: {key}");
    let sent = |with: &str| Event::Direct {
        key: key.clone(),
        id: Some("d1".into()),
        from: nick("alice"),
        to: nick("Bob"),
        with: nick(with),
        text: "psst".into(),
        ts: now,
        seq: 1,
    };
    assert_eq!(mine, vec![sent("Bob")], "the sender's copy is with the recipient");
    assert_eq!(h.take(bob), vec![sent("alice")], "the recipient's, with the sender");
    h.send(alice, Command::Dm { to: Peer::Nick("alice".into()), text: "note to self".into() });
    assert_eq!(h.take(alice).len(), 1);
    h.send(alice, Command::Dm { to: Peer::Nick("carol".into()), text: "hi".into() });
    assert_eq!(error_of(&h.take(alice)), CommandError::NoSuchNick("carol".into()));
}

#[test]
fn nick_change_is_announced_in_every_room_once() {
    let mut h = Harness::new();
    let alice = h.greeted("alice");
    let bob = h.greeted("bob");
    let carol = h.greeted("carol");
    for r in ["a", "b"] {
        h.join(alice, r);
        h.join(bob, r);
    }
    h.join(carol, "c");
    h.take_all();
    h.send_with_id(alice, Some("n"), Command::Nick { nick: "alicia".into() });
    assert_eq!(
        h.take(alice),
        vec![Event::NickChanged { id: Some("n".into()), old: nick("alice"), nick: nick("alicia") }]
    );
    let renamed = |r: &str| Event::Presence {
        room: room(r),
        change: Presence::Renamed { old: nick("alice"), new: nick("alicia") },
    };
    assert_eq!(h.take(bob), vec![renamed("a"), renamed("b")]);
    assert_eq!(h.take(carol), vec![]);
    // The old nick is free, the new one is held.
    let dave = h.connect();
    h.send(dave, Command::Hello { nick: Some("ALICIA".into()), session: None, identity: None });
    assert_eq!(error_of(&h.take(dave)), CommandError::NickTaken(nick("ALICIA")));
    h.send(dave, Command::Hello { nick: Some("alice".into()), session: None, identity: None });
    assert!(matches!(h.take(dave).as_slice(), [Event::Welcome { .. }]));
    h.send(bob, Command::Nick { nick: "Alice".into() });
    assert_eq!(error_of(&h.take(bob)), CommandError::NickTaken(nick("Alice")));
}

#[test]
fn changing_only_the_case_of_ones_own_nick_is_allowed() {
    let mut h = Harness::new();
    let alice = h.greeted("alice");
    h.send(alice, Command::Nick { nick: "Alice".into() });
    assert!(matches!(h.take(alice).as_slice(), [Event::NickChanged { .. }]));
    assert_eq!(h.chat.nick(alice), Some(&nick("Alice")));
}

#[test]
fn typing_is_relayed_to_others_at_most_once_per_interval() {
    let mut h = Harness::new();
    let alice = h.greeted("alice");
    let bob = h.greeted("bob");
    h.join(alice, "lobby");
    h.join(bob, "lobby");
    h.take_all();
    let typing = || Command::Typing { room: "lobby".into() };
    let relayed = vec![Event::Typing { room: room("lobby"), nick: nick("alice") }];
    h.send(alice, typing());
    assert_eq!(h.take(bob), relayed);
    assert_eq!(h.take(alice), vec![]);
    let started = h.now;
    assert_eq!(h.chat.poll_timeout(), Some(started.saturating_add(Duration::from_secs(2))));
    h.advance(Duration::from_millis(1999));
    h.send(alice, typing());
    assert_eq!(h.take(bob), vec![]);
    h.advance(Duration::from_millis(1));
    let later = h.now.saturating_add(Duration::from_secs(2));
    assert!(h.chat.poll_timeout() > Some(later), "the timeout cleared the throttle");
    h.send(alice, typing());
    assert_eq!(h.take(bob), relayed);
    h.send(alice, Command::Typing { room: "elsewhere".into() });
    assert_eq!(error_of(&h.take(alice)), CommandError::NotInRoom(room("elsewhere")));
}

#[test]
fn spurious_timeouts_are_harmless() {
    let mut h = Harness::new();
    let alice = h.greeted("alice");
    let bob = h.greeted("bob");
    h.join(alice, "lobby");
    h.join(bob, "lobby");
    h.send(alice, Command::Typing { room: "lobby".into() });
    h.take_all();
    h.chat.handle_timeout(h.now);
    h.send(alice, Command::Typing { room: "lobby".into() });
    assert_eq!(h.take(bob), vec![], "still throttled after an early timeout");
}

#[test]
fn leave_and_disconnect_tell_the_others() {
    let mut h = Harness::new();
    let alice = h.greeted("alice");
    let bob = h.greeted("bob");
    for r in ["a", "b"] {
        h.join(alice, r);
        h.join(bob, r);
    }
    h.take_all();
    h.send_with_id(alice, Some("l"), Command::Leave { room: "a".into() });
    assert_eq!(h.take(alice), vec![Event::Left { id: Some("l".into()), room: room("a") }]);
    let left = |r: &str| Event::Presence { room: room(r), change: Presence::Left(nick("alice")) };
    assert_eq!(h.take(bob), vec![left("a")]);
    h.send(alice, Command::Leave { room: "a".into() });
    assert_eq!(error_of(&h.take(alice)), CommandError::NotInRoom(room("a")));
    h.disconnect(alice);
    let away = Event::Presence { room: room("b"), change: Presence::Away(nick("alice")) };
    assert_eq!(h.take(bob), vec![away], "away at once; the session waits for its client");
    let again = h.connect();
    h.send(again, Command::Hello { nick: Some("alice".into()), session: None, identity: None });
    assert_eq!(error_of(&h.take(again)), CommandError::NickTaken(nick("alice")), "nick reserved");
    h.advance(Duration::from_secs(59));
    assert_eq!(h.take(bob), vec![]);
    h.advance(Duration::from_secs(1));
    assert_eq!(h.take(bob), vec![left("b")], "the grace period ended");
    assert_eq!(h.chat.session_count(), 1);
    h.send(again, Command::Hello { nick: Some("alice".into()), session: None, identity: None });
    assert!(matches!(h.take(again).as_slice(), [Event::Welcome { .. }]), "nick freed");
    // Commands from a member that is gone are ignored.
    h.chat.handle_command(h.now, alice, None, Command::Ping);
    assert!(h.chat.poll_output().is_none());
}

#[test]
fn rooms_and_who_list_in_a_stable_order() {
    let mut h = Harness::new();
    let zed = h.greeted("zed");
    let amy = h.greeted("Amy");
    let bob = h.greeted("bob");
    h.join(zed, "lobby");
    h.join(amy, "lobby");
    h.join(bob, "lobby");
    h.join(bob, "dev");
    h.take_all();
    h.send_with_id(zed, Some("r"), Command::Rooms);
    assert_eq!(
        h.take(zed),
        vec![Event::Rooms {
            id: Some("r".into()),
            rooms: vec![
                chat_core::RoomListing { name: room("dev"), members: 1, topic: None },
                chat_core::RoomListing { name: room("lobby"), members: 3, topic: None },
            ]
        }]
    );
    h.send(zed, Command::Who { room: "lobby".into(), after: None, prefix: None, limit: None });
    assert_eq!(
        h.take(zed),
        vec![Event::Members {
            count: 3,
            more: false,
            id: None,
            room: room("lobby"),
            members: vec![nick("Amy"), nick("bob"), nick("zed")],
            away: Vec::new(),
        }]
    );
    // Members are for members: a room one is not in says nothing.
    h.send(zed, Command::Who { room: "dev".into(), after: None, prefix: None, limit: None });
    assert_eq!(error_of(&h.take(zed)), CommandError::NotInRoom(room("dev")));
    h.send(zed, Command::Who { room: "empty".into(), after: None, prefix: None, limit: None });
    assert_eq!(error_of(&h.take(zed)), CommandError::NotInRoom(room("empty")));
}

#[test]
fn private_room_lists_show_only_ones_own_rooms() {
    let config = ChatConfig { public_rooms: false, ..ChatConfig::default() };
    let mut h = Harness::with_config(config);
    let zed = h.greeted("zed");
    let bob = h.greeted("bob");
    h.join(zed, "lobby");
    h.join(bob, "lobby");
    h.join(bob, "secret");
    h.take_all();
    h.send(zed, Command::Rooms);
    assert_eq!(
        h.take(zed),
        vec![Event::Rooms {
            id: None,
            rooms: vec![chat_core::RoomListing { name: room("lobby"), members: 2, topic: None }]
        }]
    );
}

#[test]
fn empty_rooms_without_history_vanish_and_rooms_with_history_stay() {
    let mut h = Harness::new();
    let alice = h.greeted("alice");
    h.join(alice, "quiet");
    h.join(alice, "busy");
    h.say(alice, "busy", "keep me");
    h.send(alice, Command::Leave { room: "quiet".into() });
    h.send(alice, Command::Leave { room: "busy".into() });
    assert_eq!(h.chat.room_count(), 1);
    h.join(alice, "busy");
    let events = h.take(alice);
    assert!(matches!(events.last(), Some(Event::Joined { last_seq: 1, .. })), "{events:?}");
}

#[test]
fn room_count_is_bounded() {
    let config = ChatConfig { max_rooms: 2, ..ChatConfig::default() };
    let mut h = Harness::with_config(config);
    let alice = h.greeted("alice");
    h.join(alice, "a");
    h.join(alice, "b");
    h.take_all();
    h.join(alice, "c");
    assert_eq!(error_of(&h.take(alice)), CommandError::TooManyRooms { max: 2 });
    h.join(alice, "a");
    assert!(
        matches!(h.take(alice).as_slice(), [Event::Joined { .. }]),
        "existing rooms still open"
    );
}

#[test]
fn rooms_per_session_are_bounded_and_rejoins_still_answer() {
    let config = ChatConfig { max_rooms_per_session: 2, ..ChatConfig::default() };
    let mut h = Harness::with_config(config);
    let alice = h.greeted("alice");
    h.join(alice, "a");
    h.join(alice, "b");
    h.take_all();
    h.join(alice, "c");
    assert_eq!(error_of(&h.take(alice)), CommandError::RoomLimit { max: 2 });
    h.join(alice, "b");
    assert!(matches!(h.take(alice).as_slice(), [Event::Joined { .. }]), "a re-join passes");
    h.send(alice, Command::Leave { room: "a".into() });
    h.take_all();
    h.join(alice, "c");
    assert!(matches!(h.take(alice).as_slice(), [Event::Joined { .. }]), "room again after a leave");
}

#[test]
fn members_per_room_are_bounded() {
    let config = ChatConfig { max_members_per_room: 2, ..ChatConfig::default() };
    let mut h = Harness::with_config(config);
    let (alice, bob, carol) = (h.greeted("alice"), h.greeted("bob"), h.greeted("carol"));
    h.join(alice, "lobby");
    h.join(bob, "lobby");
    h.take_all();
    h.join(carol, "lobby");
    assert_eq!(error_of(&h.take(carol)), CommandError::RoomFull { room: room("lobby"), max: 2 });
    assert_eq!(h.take(alice), vec![], "nobody saw carol join");
    h.join(carol, "elsewhere");
    assert!(matches!(h.take(carol).as_slice(), [Event::Joined { .. }]));
}

#[test]
fn new_joins_are_rate_limited_but_rejoins_are_free() {
    let config = ChatConfig { joins_per_sec: 2, joins_burst: 3, ..ChatConfig::default() };
    let mut h = Harness::with_config(config);
    let alice = h.greeted("alice");
    for name in ["a", "b", "c"] {
        h.join(alice, name);
    }
    h.take_all();
    h.join(alice, "d");
    assert_eq!(error_of(&h.take(alice)), CommandError::JoinRateLimited { retry_after_ms: 500 });
    // A reconnecting client re-joins all its rooms at once: never limited.
    for name in ["a", "b", "c", "a", "b", "c"] {
        h.join(alice, name);
        assert!(matches!(h.take(alice).as_slice(), [Event::Joined { .. }]), "re-join of {name}");
    }
    h.advance(Duration::from_millis(500));
    h.join(alice, "d");
    assert!(matches!(h.take(alice).as_slice(), [Event::Joined { .. }]));
}

#[test]
fn a_fan_out_shares_one_event() {
    let mut h = Harness::new();
    let members: Vec<_> = (0..50).map(|i| h.greeted(&format!("m{i}"))).collect();
    for &m in &members {
        h.join(m, "big");
    }
    h.take_all();
    h.chat.handle_command(h.now, members[0], None, say_cmd("big", "to all"));
    let Some(chat_core::Output::Persist(chat_core::Record::Message(stored))) = h.chat.poll_output()
    else {
        panic!("the message is persisted first");
    };
    let Some(chat_core::Output::Deliver { to, event }) = h.chat.poll_output() else {
        panic!("no output");
    };
    assert_eq!(to.len(), 50);
    assert_eq!(*event, Event::Message(stored));
    assert_eq!(Arc::strong_count(&event), 1);
    assert!(h.chat.poll_output().is_none());
}

#[test]
fn an_attachment_goes_out_with_its_message_and_only_room_members_may_fetch_it() {
    use chat_core::Attachment;
    let mut h = Harness::new();
    let alice = h.greeted("alice");
    let bob = h.greeted("bob");
    let carol = h.greeted("carol");
    h.join(alice, "lobby");
    h.join(bob, "lobby");
    h.join(carol, "other");
    h.take_all();
    let file =
        Attachment { id: "f00d".into(), name: "cat.png".into(), mime: "image/png".into(), size: 3 };
    let with_file = |text: &str| Command::Say {
        room: "lobby".into(),
        text: text.into(),
        action: false,
        attachment: Some(std::sync::Arc::new(file.clone())),
    };
    // No caption is needed with a file; without one, text is.
    h.send_with_id(alice, Some("u1"), with_file(""));
    let events = h.take(bob);
    assert!(
        matches!(&events[..], [Event::Message(m)] if m.attachment.as_deref() == Some(&file) && m.text.is_empty()),
        "{events:?}"
    );
    h.take(alice);
    h.send_with_id(alice, Some("m2"), say_cmd("lobby", ""));
    assert!(matches!(error_of(&h.take(alice)), CommandError::EmptyText));

    let (alice_token, bob_token, carol_token) =
        (token("token-1"), token("token-2"), token("token-3"));
    let (lobby, other) = (room("lobby"), room("other"));
    assert!(h.chat.may_read(&alice_token, &lobby));
    assert!(h.chat.may_read(&bob_token, &lobby));
    assert!(!h.chat.may_read(&carol_token, &lobby), "not in the room");
    assert!(h.chat.may_read(&carol_token, &other));
    assert!(!h.chat.may_read(&token("nobody"), &lobby), "no such session");
    // Leaving the room is losing access to its files.
    h.send(bob, Command::Leave { room: "lobby".into() });
    assert!(!h.chat.may_read(&bob_token, &lobby));
}

#[test]
fn a_big_room_lists_a_first_page_and_who_pages_on_and_searches_by_prefix() {
    let config = ChatConfig { member_page_max: 10, ..ChatConfig::default() };
    let mut h = Harness::with_config(config);
    let mut members = Vec::new();
    for n in 0..25 {
        let m = h.greeted(&format!("user{n:02}"));
        h.join(m, "big");
        members.push(m);
    }
    let carol = h.greeted("carol");
    h.take_all();
    h.join(carol, "big");
    // (Nick order is the order nicks compare in: case, look-alikes and
    // the digits that look like letters aside.)
    let first = match h.take(carol).as_slice() {
        [Event::Joined { members, member_count, .. }] => {
            assert_eq!(*member_count, 26);
            assert_eq!(members.len(), 10, "the first page only");
            members.iter().map(|n| n.to_string()).collect::<Vec<_>>()
        }
        other => panic!("{other:?}"),
    };
    let who = |h: &mut Harness, after: Option<&str>, prefix: Option<&str>, limit: Option<u32>| {
        let command = Command::Who {
            room: "big".into(),
            after: after.map(str::to_owned),
            prefix: prefix.map(str::to_owned),
            limit,
        };
        h.send(carol, command);
        match h.take(carol).as_slice() {
            [Event::Members { members, count, more, .. }] => {
                (members.iter().map(|n| n.to_string()).collect::<Vec<_>>(), *count, *more)
            }
            other => panic!("{other:?}"),
        }
    };
    assert_eq!(who(&mut h, None, None, None).0, first, "who pages the same way");
    let (second, count, more) = who(&mut h, first.last().map(String::as_str), None, None);
    assert_eq!((second.len(), count, more), (10, 26, true));
    let (third, _, more) = who(&mut h, second.last().map(String::as_str), None, None);
    assert_eq!((third.len(), more), (6, false), "{third:?}");
    let mut all: Vec<String> = first.into_iter().chain(second).chain(third).collect();
    all.sort();
    all.dedup();
    assert_eq!(all.len(), 26, "every member once");
    // By prefix, as nicks compare (case aside).
    let (found, _, more) = who(&mut h, None, Some("USER1"), Some(3));
    assert!(found.len() == 3 && more && found.iter().all(|n| n.starts_with("user1")), "{found:?}");
    let (none, _, _) = who(&mut h, None, Some("zz"), None);
    assert!(none.is_empty());
    // A whole nick is a prefix of itself.
    let (exact, _, more) = who(&mut h, None, Some("User07"), None);
    assert_eq!((exact, more), (vec!["user07".to_owned()], false));
    let (carols, _, _) = who(&mut h, None, Some("carol"), None);
    assert_eq!(carols, vec!["carol".to_owned()]);
    // A rename moves the member in the order.
    h.send(members[0], Command::Nick { nick: "aaron".into() });
    h.take_all();
    let (top, _, _) = who(&mut h, None, None, Some(2));
    assert_eq!(top, vec!["aaron".to_owned(), "carol".into()]);
}

#[test]
fn presence_in_a_big_room_comes_in_batches_a_small_room_keeps_it_immediate() {
    let config = ChatConfig { member_page_max: 5, ..ChatConfig::default() };
    let mut h = Harness::with_config(config);
    let watcher = h.greeted("watcher");
    h.join(watcher, "big");
    h.join(watcher, "small");
    let small = h.greeted("smally");
    h.take_all();
    h.join(small, "small");
    assert!(
        matches!(h.take(watcher).as_slice(), [Event::Presence { change: Presence::Joined(_), .. }]),
        "a small room: at once"
    );
    // A storm of 40 joins in well under a second...
    let mut joiners = Vec::new();
    for n in 0..40 {
        let m = h.greeted(&format!("fan{n}"));
        h.join(m, "big");
        joiners.push(m);
        h.advance(Duration::from_millis(10));
    }
    let batches = |events: &[Event]| {
        events.iter().filter(|e| matches!(e, Event::PresenceBatch { .. })).count()
    };
    let singles =
        |events: &[Event]| events.iter().filter(|e| matches!(e, Event::Presence { .. })).count();
    let seen = h.take(watcher);
    // ...the first 5 came at once (the room was small then); the rest in
    // at most one batch per elapsed second.
    assert!(singles(&seen) <= 5, "{}", singles(&seen));
    h.advance(Duration::from_secs(1));
    let later = h.take(watcher);
    let all: Vec<Event> = seen.into_iter().chain(later).collect();
    assert!((1..=2).contains(&batches(&all)), "{} batches", batches(&all));
    let announced: usize = all
        .iter()
        .map(|e| match e {
            Event::PresenceBatch { changes, more, .. } => changes.len() + more,
            Event::Presence { .. } => 1,
            _ => 0,
        })
        .sum();
    assert_eq!(announced, 40, "every join told, once");
    match all.iter().rev().find(|e| matches!(e, Event::PresenceBatch { .. })) {
        Some(Event::PresenceBatch { members, .. }) => assert_eq!(*members, 41),
        other => panic!("{other:?}"),
    }
    // A late joiner's member sees the batch too, not a frame per join.
    let fan = joiners[39];
    let got = h.take(fan);
    assert!(singles(&got) == 0, "{got:?}");
}

#[test]
fn typing_in_a_big_room_comes_in_one_frame_an_interval() {
    let config = ChatConfig { member_page_max: 3, ..ChatConfig::default() };
    let mut h = Harness::with_config(config);
    let watcher = h.greeted("watcher");
    h.join(watcher, "big");
    let mut typists = Vec::new();
    for n in 0..12 {
        let m = h.greeted(&format!("typist{n}"));
        h.join(m, "big");
        typists.push(m);
    }
    h.advance(Duration::from_secs(2));
    h.take_all();
    for &m in &typists {
        h.send(m, Command::Typing { room: "big".into() });
    }
    assert!(
        !h.take(watcher)
            .iter()
            .any(|e| matches!(e, Event::Typing { .. } | Event::TypingBatch { .. })),
        "nothing per keystroke"
    );
    h.advance(Duration::from_secs(1));
    match h.take(watcher).as_slice() {
        [Event::TypingBatch { nicks, more, .. }] => {
            assert_eq!(
                (nicks.len(), *more),
                (chat_core::TYPING_BATCH_MAX, 12 - chat_core::TYPING_BATCH_MAX)
            );
            assert_eq!(nicks[0].as_str(), "typist0");
        }
        other => panic!("{other:?}"),
    }
}
