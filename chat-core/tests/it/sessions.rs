//! Sessions: resume after reconnect, nick reservation, takeover, resume
//! answers with gaps, and idempotent sends.

use std::time::Duration;

use crate::harness::Harness;
use chat_core::{
    ChatConfig, Command, CommandError, Event, MemberId, Message, Nick, Peer, Presence, Resume,
    SessionToken,
};

fn hello_again(h: &mut Harness, token: &str) -> MemberId {
    let m = h.connect();
    h.send(m, Command::Hello { nick: None, session: Some(token.into()), identity: None });
    m
}

fn join_after(h: &mut Harness, m: MemberId, room: &str, after: Option<u64>) -> (Vec<u64>, Resume) {
    h.send(m, Command::Join { room: room.into(), after });
    match h.take(m).as_slice() {
        [Event::Joined { history, resume, .. }] => {
            (history.iter().map(|m| m.seq).collect(), *resume)
        }
        other => panic!("{other:?}"),
    }
}

fn say_id(h: &mut Harness, m: MemberId, room: &str, text: &str, id: &str) {
    h.send_with_id(
        m,
        Some(id),
        Command::Say { room: room.into(), text: text.into(), action: false, attachment: None },
    );
}

fn seqs(events: &[Event]) -> Vec<u64> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Message(Message { seq, .. }) => Some(*seq),
            _ => None,
        })
        .collect()
}

/// alice (token-1) and bob (token-2) in lobby, inboxes empty.
fn pair(config: ChatConfig) -> (Harness, MemberId, MemberId) {
    let mut h = Harness::with_config(config);
    let alice = h.greeted("alice");
    let bob = h.greeted("bob");
    h.join(alice, "lobby");
    h.join(bob, "lobby");
    h.take_all();
    (h, alice, bob)
}

#[test]
fn a_session_resumes_without_presence_and_catches_up() {
    let (mut h, alice, bob) = pair(ChatConfig::default());
    h.say(alice, "lobby", "before");
    h.take_all();
    h.disconnect(alice);
    h.say(bob, "lobby", "while away 1");
    h.say(bob, "lobby", "while away 2");
    h.advance(Duration::from_secs(30));
    let back = hello_again(&mut h, "token-1");
    let welcome = h.take(back);
    assert!(
        matches!(welcome.as_slice(), [Event::Welcome { nick, resumed: true, session, .. }]
            if nick.as_str() == "alice" && session.as_str() == "token-1"),
        "{welcome:?}"
    );
    assert_eq!(join_after(&mut h, back, "lobby", Some(1)), (vec![2, 3], Resume::Resumed));
    let seen = h.take(bob);
    assert_eq!(seqs(&seen), vec![2, 3], "bob saw his own messages");
    let presence: Vec<&Presence> = seen
        .iter()
        .filter_map(|e| match e {
            Event::Presence { change, .. } => Some(change),
            _ => None,
        })
        .collect();
    assert_eq!(
        presence,
        vec![&Presence::Away(nick("alice")), &Presence::Back(nick("alice"))],
        "away while gone, back on resume, never left"
    );
    h.say(bob, "lobby", "welcome back");
    assert_eq!(seqs(&h.take(back)), vec![4], "the new connection receives the room");
}

#[test]
fn a_session_has_several_connections_each_with_every_event() {
    let (mut h, alice, bob) = pair(ChatConfig::default());
    let phone = hello_again(&mut h, "token-1");
    assert!(
        matches!(h.take(phone).as_slice(), [Event::Welcome { resumed: true, rooms, .. }] if rooms == &vec![room("lobby")]),
        "the phone learns the rooms the session is in"
    );
    assert_eq!(h.disconnected, vec![], "the first connection stays");
    assert_eq!(h.take(bob), vec![], "one person, already present: no presence");
    assert_eq!(h.chat.people(|_| false), 2, "alice counts once with two connections");
    assert_eq!(h.chat.people(|m| m == bob), 1, "bob only watches");
    assert_eq!(h.chat.people(|m| m == alice), 2, "alice still has her phone");
    // A room message reaches both; one connection's send is acknowledged
    // on the other too.
    h.send_with_id(
        alice,
        Some("m1"),
        Command::Say {
            room: "lobby".into(),
            text: "from the laptop".into(),
            action: false,
            attachment: None,
        },
    );
    for m in [alice, phone, bob] {
        assert_eq!(seqs(&h.take(m)), vec![1], "member {m:?}");
    }
    // What one connection changes for the session, the others hear of.
    h.send_with_id(phone, Some("j"), Command::Join { room: "dev".into(), after: None });
    assert!(matches!(h.take(phone).as_slice(), [Event::Joined { id: Some(_), .. }]));
    assert!(matches!(h.take(alice).as_slice(), [Event::Joined { id: None, .. }]));
    h.send(
        alice,
        Command::Say { room: "dev".into(), text: "x".into(), action: false, attachment: None },
    );
    assert_eq!(seqs(&h.take(phone)), vec![1], "the phone is in dev too");
    h.take_all();
    // Typing is for the others, not for the typist's own devices.
    h.send(alice, Command::Typing { room: "lobby".into() });
    assert_eq!(h.take(phone), vec![]);
    assert_eq!(h.take(bob).len(), 1);
    // A direct message reaches every connection of both.
    h.send(bob, Command::Dm { to: Peer::Nick("alice".into()), text: "hi".into() });
    for m in [alice, phone, bob] {
        assert!(matches!(h.take(m).as_slice(), [Event::Direct { .. }]), "member {m:?}");
    }
    // One connection saying goodbye is not the person leaving.
    h.quit(alice);
    assert_eq!(h.take(bob), vec![], "alice is still here on the phone");
    h.say(bob, "lobby", "still there?");
    assert_eq!(seqs(&h.take(phone)), vec![2]);
    h.take_all();
    // The last one dropping: away at once, left when the session ends.
    h.disconnect(phone);
    let away = Event::Presence { room: room("lobby"), change: Presence::Away(nick("alice")) };
    assert_eq!(h.take(bob), vec![away]);
    assert_eq!(h.chat.people(|_| false), 1, "away is not online");
    h.advance(Duration::from_secs(61));
    let left = Event::Presence { room: room("lobby"), change: Presence::Left(nick("alice")) };
    assert_eq!(h.take(bob), vec![left]);
}

#[test]
fn what_one_connection_reads_its_others_are_told() {
    let (mut h, alice, bob) = pair(ChatConfig::default());
    let phone = hello_again(&mut h, "token-1");
    h.take_all();
    h.say(bob, "lobby", "news");
    h.take_all();
    h.send(alice, Command::Read { room: Some("lobby".into()), conversation: None, seq: 1 });
    assert_eq!(h.take(alice), vec![], "no answer");
    assert_eq!(h.take(bob), vec![], "only the same person's connections");
    assert_eq!(
        h.take(phone),
        vec![Event::Read { room: Some(room("lobby")), conversation: None, seq: 1 }]
    );
    h.send(alice, Command::Read { room: Some("ops".into()), conversation: None, seq: 1 });
    assert!(matches!(
        h.take(alice).as_slice(),
        [Event::Error { error: CommandError::NotInRoom(_), .. }]
    ));
    h.send(alice, Command::Read { room: None, conversation: Some("~0".into()), seq: 1 });
    assert!(matches!(
        h.take(alice).as_slice(),
        [Event::Error { error: CommandError::NoSuchConversation(_), .. }]
    ));
}

#[test]
fn past_the_connections_a_session_may_have_the_oldest_is_closed() {
    let config = ChatConfig { max_connections_per_session: 2, ..ChatConfig::default() };
    let (mut h, alice, _bob) = pair(config);
    let second = hello_again(&mut h, "token-1");
    assert_eq!(h.disconnected, vec![]);
    let third = hello_again(&mut h, "token-1");
    assert_eq!(h.disconnected, vec![alice], "the oldest makes way");
    // Its late disconnect changes nothing for the others.
    h.chat.handle_disconnect(h.now, alice, chat_core::Departure::Quit);
    h.take_all();
    let bob = h.greeted("carol");
    h.join(bob, "lobby");
    h.take_all();
    h.say(bob, "lobby", "hello");
    for m in [second, third] {
        assert_eq!(seqs(&h.take(m)), vec![1]);
    }
}

#[test]
fn who_and_joined_say_who_is_away() {
    let (mut h, alice, bob) = pair(ChatConfig::default());
    h.disconnect(alice);
    h.take_all();
    h.send(bob, Command::Who { room: "lobby".into(), after: None, prefix: None, limit: None });
    assert!(
        matches!(h.take(bob).as_slice(), [Event::Members { away, .. }] if away == &vec![nick("alice")]),
        "alice is away"
    );
    let carol = h.greeted("carol");
    h.send(carol, Command::Join { room: "lobby".into(), after: None });
    assert!(
        matches!(h.take(carol).as_slice(), [Event::Joined { away, .. }] if away == &vec![nick("alice")])
    );
}

#[test]
fn a_client_that_quits_leaves_at_once() {
    let (mut h, alice, bob) = pair(ChatConfig::default());
    h.quit(alice);
    assert_eq!(
        h.take(bob),
        vec![Event::Presence { room: room("lobby"), change: Presence::Left(nick("alice")) }]
    );
    assert_eq!(h.chat.session_count(), 1);
    let back = hello_again(&mut h, "token-1");
    assert!(
        matches!(h.take(back).as_slice(), [Event::Welcome { resumed: false, .. }]),
        "nothing to resume"
    );
}

#[test]
fn an_expired_session_token_starts_a_new_session_under_a_new_token() {
    let (mut h, alice, bob) = pair(ChatConfig::default());
    h.say(alice, "lobby", "one");
    h.take_all();
    h.disconnect(alice);
    h.advance(Duration::from_secs(61));
    assert_eq!(
        h.take(bob),
        vec![
            Event::Presence { room: room("lobby"), change: Presence::Away(nick("alice")) },
            Event::Presence { room: room("lobby"), change: Presence::Left(nick("alice")) }
        ]
    );
    let back = h.connect();
    h.send(
        back,
        Command::Hello {
            nick: Some("alice".into()),
            session: Some("token-1".into()),
            identity: None,
        },
    );
    assert!(matches!(h.take(back).as_slice(),
        [Event::Welcome { resumed: false, session, .. }] if session.as_str() == "token-3"));
    assert_eq!(join_after(&mut h, back, "lobby", Some(1)), (vec![], Resume::Resumed));
    assert!(matches!(
        h.take(bob).as_slice(),
        [Event::Presence { change: Presence::Joined(_), .. }]
    ));
}

#[test]
fn a_token_the_client_made_up_never_names_a_session() {
    let mut h = Harness::new();
    let mallory = h.connect();
    let chosen = || Command::Hello { nick: None, session: Some("a".into()), identity: None };
    h.send(mallory, chosen());
    let events = h.take(mallory);
    assert!(
        matches!(events.as_slice(), [Event::Welcome { resumed: false, session, .. }] if session.as_str() == "token-1"),
        "the server's token, not the one asked for: {events:?}"
    );
    // So whoever later presents "a" finds nothing to take over.
    let victim = h.connect();
    h.send(victim, chosen());
    let events = h.take(victim);
    assert!(
        matches!(events.as_slice(), [Event::Welcome { resumed: false, session, .. }] if session.as_str() == "token-2"),
        "{events:?}"
    );
    assert_eq!(h.take(mallory), vec![]);
}

#[test]
fn resume_reports_gaps_left_by_retention() {
    let config = ChatConfig { history_per_room: 3, messages_burst: 100, ..ChatConfig::default() };
    let (mut h, alice, bob) = pair(config);
    for i in 1..=6 {
        h.say(bob, "lobby", &i.to_string());
    }
    h.take_all();
    assert_eq!(
        join_after(&mut h, alice, "lobby", Some(1)),
        (vec![4, 5, 6], Resume::Gap { from: 2, to: 3 })
    );
    assert_eq!(join_after(&mut h, alice, "lobby", Some(3)), (vec![4, 5, 6], Resume::Resumed));
    assert_eq!(join_after(&mut h, alice, "lobby", Some(6)), (vec![], Resume::Resumed));
    assert_eq!(
        join_after(&mut h, alice, "lobby", Some(0)),
        (vec![4, 5, 6], Resume::Gap { from: 1, to: 3 })
    );
    // A position the room never reached: its numbering started over, so
    // the answer is a fresh join (the whole 3-message ring).
    assert_eq!(join_after(&mut h, alice, "lobby", Some(99)), (vec![4, 5, 6], Resume::Fresh));
}

#[test]
fn resume_sends_the_newest_messages_up_to_the_cap() {
    let config = ChatConfig { resume_max: 2, messages_burst: 100, ..ChatConfig::default() };
    let (mut h, alice, bob) = pair(config);
    for i in 1..=5 {
        h.say(bob, "lobby", &i.to_string());
    }
    h.take_all();
    assert_eq!(join_after(&mut h, alice, "lobby", Some(0)), (vec![4, 5], Resume::Resumed));
}

#[test]
fn messages_past_their_maximum_age_are_dropped() {
    let config =
        ChatConfig { history_max_age: Some(Duration::from_secs(600)), ..ChatConfig::default() };
    let (mut h, alice, bob) = pair(config);
    h.say(bob, "lobby", "old");
    h.advance(Duration::from_secs(300));
    h.say(bob, "lobby", "newer");
    h.take_all();
    h.advance(Duration::from_secs(360));
    assert_eq!(
        join_after(&mut h, alice, "lobby", Some(0)),
        (vec![2], Resume::Gap { from: 1, to: 1 })
    );
}

#[test]
fn a_retried_say_is_answered_with_the_original_and_not_fanned_out() {
    let (mut h, alice, bob) = pair(ChatConfig::default());
    say_id(&mut h, alice, "lobby", "hello", "m1");
    let original = h.take(alice);
    assert_eq!(seqs(&original), vec![1]);
    h.take_all();
    say_id(&mut h, alice, "lobby", "hello (edited retry)", "m1");
    assert_eq!(h.take(alice), original, "the original, same seq and text");
    assert_eq!(h.take(bob), vec![], "nothing new for the others");
    // Across a reconnect and resume too.
    h.disconnect(alice);
    let back = hello_again(&mut h, "token-1");
    h.take(back);
    say_id(&mut h, back, "lobby", "hello", "m1");
    assert_eq!(h.take(back), original);
    // And after the session expired and a new one took its token.
    h.disconnect(back);
    h.advance(Duration::from_secs(61));
    let later = h.connect();
    h.send(
        later,
        Command::Hello {
            nick: Some("alice".into()),
            session: Some("token-1".into()),
            identity: None,
        },
    );
    h.join(later, "lobby");
    h.take_all();
    say_id(&mut h, later, "lobby", "hello", "m1");
    assert_eq!(h.take(later), original);
    assert_eq!(h.take(bob), vec![]);
    // Another id is a new message; the same id from another session too.
    say_id(&mut h, later, "lobby", "second", "m2");
    say_id(&mut h, bob, "lobby", "bob's m1", "m1");
    assert_eq!(seqs(&h.take(bob)), vec![2, 3]);
}

#[test]
fn remembered_ids_expire_after_the_window_and_beyond_the_cap() {
    let config = ChatConfig {
        dedupe_window: Duration::from_secs(10),
        dedupe_max: 2,
        ..ChatConfig::default()
    };
    let (mut h, alice, _bob) = pair(config);
    say_id(&mut h, alice, "lobby", "a", "1");
    say_id(&mut h, alice, "lobby", "b", "2");
    say_id(&mut h, alice, "lobby", "c", "3");
    assert_eq!(h.chat.dedupe_len(), 2);
    h.take_all();
    say_id(&mut h, alice, "lobby", "a again", "1");
    assert_eq!(seqs(&h.take(alice)), vec![4], "id 1 was pushed out by the cap");
    h.advance(Duration::from_secs(10));
    assert_eq!(h.chat.dedupe_len(), 0);
    say_id(&mut h, alice, "lobby", "c again", "3");
    assert_eq!(seqs(&h.take(alice)), vec![5], "id 3 expired");
}

#[test]
fn a_retried_dm_is_not_delivered_twice() {
    let (mut h, alice, bob) = pair(ChatConfig::default());
    let dm = || Command::Dm { to: Peer::Nick("bob".into()), text: "psst".into() };
    h.send_with_id(alice, Some("d1"), dm());
    let original = h.take(alice);
    assert!(matches!(h.take(bob).as_slice(), [Event::Direct { seq: 1, .. }]));
    h.send_with_id(alice, Some("d1"), dm());
    assert_eq!(h.take(alice), original);
    assert_eq!(h.take(bob), vec![]);
}

#[test]
fn malformed_session_tokens_are_refused() {
    let mut h = Harness::new();
    let m = h.connect();
    h.send(m, Command::Hello { nick: None, session: Some("not a token!".into()), identity: None });
    assert!(matches!(
        h.take(m).as_slice(),
        [Event::Error { error: CommandError::InvalidSession(_), .. }]
    ));
    h.send(m, Command::Hello { nick: None, session: Some("x".repeat(65)), identity: None });
    assert!(matches!(
        h.take(m).as_slice(),
        [Event::Error { error: CommandError::InvalidSession(_), .. }]
    ));
    assert!(SessionToken::parse("0123abcdEF-_").is_ok());
}

fn nick(text: &str) -> Nick {
    Nick::parse(text).unwrap()
}

fn room(text: &str) -> chat_core::RoomName {
    chat_core::RoomName::parse(text).unwrap()
}

#[test]
fn a_restored_room_continues_its_numbering_and_remembers_recent_ids() {
    use chat_core::{Direct, Record, RoomName, Timestamp};
    let mut h = Harness::new();
    let now = h.now;
    let message = |seq: u64, id: &str| Message {
        kind: Default::default(),
        room: room("lobby"),
        seq,
        ts: Timestamp::from_unix_millis(now.as_unix_millis() - 1000),
        from: nick("alice"),
        text: format!("m{seq}").into(),
        action: false,
        id: Some(id.into()),
        sender: Some(SessionToken::parse("token-1").unwrap()),
        attachment: None,
    };
    let direct = Direct {
        message: Message {
            kind: Default::default(),
            room: RoomName::parse_stored("~token-1 token-9").unwrap(),
            seq: 1,
            ts: now,
            from: nick("alice"),
            text: "psst".into(),
            action: false,
            id: Some("d".into()),
            sender: Some(SessionToken::parse("token-1").unwrap()),
            attachment: None,
        },
        nicks: [nick("alice"), nick("bob")],
    };
    h.stored = vec![
        Record::Session { token: SessionToken::parse("token-1").unwrap(), nick: nick("alice") },
        Record::Message(message(8, "a")),
        Record::Message(message(9, "b")),
        Record::Message(message(10, "c")),
        Record::Direct(direct),
    ];
    let mut h = h.restarted();
    assert_eq!(h.chat.session_count(), 1, "alice's session is back, waiting for her");
    assert_eq!(h.chat.room_count(), 0, "rooms come back when joined");
    // Someone else cannot take her nick meanwhile.
    let mallory = h.connect();
    h.send(mallory, Command::Hello { nick: Some("Alice".into()), session: None, identity: None });
    assert!(matches!(
        h.take(mallory).as_slice(),
        [Event::Error { error: CommandError::NickTaken(_), .. }]
    ));
    let alice = hello_again(&mut h, "token-1");
    assert!(matches!(h.take(alice).as_slice(), [Event::Welcome { resumed: true, .. }]));
    assert_eq!(join_after(&mut h, alice, "lobby", Some(7)), (vec![8, 9, 10], Resume::Resumed));
    assert_eq!(
        join_after(&mut h, alice, "lobby", Some(5)),
        (vec![8, 9, 10], Resume::Gap { from: 6, to: 7 })
    );
    say_id(&mut h, alice, "lobby", "again", "b");
    assert!(matches!(h.take(alice).as_slice(), [Event::Message(Message { seq: 9, .. })]));
    say_id(&mut h, alice, "lobby", "new", "e");
    assert_eq!(seqs(&h.take(alice)), vec![11], "numbering continues after the stored last_seq");
    h.send_with_id(
        alice,
        Some("d"),
        Command::Dm { to: Peer::Nick("bob".into()), text: "psst".into() },
    );
    assert!(
        matches!(h.take(alice).as_slice(), [Event::Direct { .. }]),
        "answered though bob is not here"
    );
}
