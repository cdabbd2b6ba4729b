//! Identities from verified access tokens: required when configured, bind
//! the nick, limit the rooms, expire unless renewed.

use std::time::Duration;

use crate::harness::Harness;
use chat_core::{
    ChatConfig, Command, CommandError, Event, Identity, MemberId, Presence, RoomPattern,
};

fn strict() -> Harness {
    Harness::with_config(ChatConfig { require_identity: true, ..ChatConfig::default() })
}

fn identity(h: &Harness, nick: &str, rooms: Option<&[&str]>, valid_for: Duration) -> Identity {
    Identity {
        nick: nick.to_owned(),
        rooms: rooms.map(|rooms| rooms.iter().map(|r| RoomPattern::new(r)).collect()),
        expires: h.now.saturating_add(valid_for),
    }
}

fn hello(h: &mut Harness, nick: Option<&str>, identity: Option<Identity>) -> MemberId {
    let m = h.connect();
    h.send(m, Command::Hello { nick: nick.map(str::to_owned), session: None, identity });
    m
}

fn error_of(events: &[Event]) -> CommandError {
    match events {
        [Event::Error { error, .. }] => error.clone(),
        other => panic!("expected one error, got {other:?}"),
    }
}

const HOUR: Duration = Duration::from_secs(3600);

#[test]
fn without_an_identity_nothing_is_allowed() {
    let mut h = strict();
    let m = hello(&mut h, Some("alice"), None);
    assert_eq!(error_of(&h.take(m)), CommandError::Unauthorized);
    h.join(m, "lobby");
    assert_eq!(error_of(&h.take(m)), CommandError::HelloRequired);
    let expired = identity(&h, "alice", None, Duration::ZERO);
    let m = hello(&mut h, None, Some(expired));
    assert_eq!(error_of(&h.take(m)), CommandError::Unauthorized, "an expired identity");
}

#[test]
fn the_identity_names_the_nick_and_nick_changes_are_forbidden() {
    let mut h = strict();
    let id = identity(&h, "alice", None, HOUR);
    let m = hello(&mut h, None, Some(id.clone()));
    match h.take(m).as_slice() {
        [Event::Welcome { nick, expires, .. }] => {
            assert_eq!(nick.as_str(), "alice");
            assert_eq!(*expires, Some(id.expires));
        }
        other => panic!("{other:?}"),
    }
    h.send(m, Command::Nick { nick: "mallory".into() });
    assert!(matches!(error_of(&h.take(m)), CommandError::Forbidden(_)));
    let other = {
        let id = identity(&h, "carol", None, HOUR);
        hello(&mut h, Some("bob"), Some(id))
    };
    assert!(
        matches!(error_of(&h.take(other)), CommandError::Forbidden(_)),
        "asked for another nick"
    );
}

#[test]
fn rooms_outside_the_patterns_are_forbidden() {
    let mut h = strict();
    let m = {
        let id = identity(&h, "alice", Some(&["team-*", "lobby"]), HOUR);
        hello(&mut h, None, Some(id))
    };
    h.take_all();
    for room in ["team-a", "lobby"] {
        h.join(m, room);
        assert!(matches!(h.take(m).as_slice(), [Event::Joined { .. }]), "{room}");
    }
    h.join(m, "secret");
    assert!(matches!(error_of(&h.take(m)), CommandError::Forbidden(_)));
}

#[test]
fn a_session_ends_when_its_identity_expires_unless_renewed() {
    let mut h = strict();
    let alice = {
        let id = identity(&h, "alice", None, HOUR);
        hello(&mut h, None, Some(id))
    };
    let bob = {
        let id = identity(&h, "bob", None, 2 * HOUR);
        hello(&mut h, None, Some(id))
    };
    h.join(alice, "lobby");
    h.join(bob, "lobby");
    h.take_all();
    // bob renews half-way; alice does not.
    h.advance(HOUR / 2);
    let renewed = identity(&h, "bob", None, 3 * HOUR);
    h.send_with_id(bob, Some("a1"), Command::Auth { identity: renewed.clone() });
    assert!(matches!(
        h.take(bob).as_slice(),
        [Event::Authed { id: Some(id), expires }] if &**id == "a1" && *expires == renewed.expires
    ));
    h.advance(HOUR / 2);
    assert_eq!(h.disconnected, vec![alice], "alice's connection is closed at her expiry");
    assert!(matches!(
        h.take(bob).as_slice(),
        [Event::Presence { change: Presence::Left(nick), .. }] if nick.as_str() == "alice"
    ));
    // bob's old expiry passes without effect: he renewed.
    h.advance(2 * HOUR);
    assert_eq!(h.disconnected, vec![alice]);
    h.say(bob, "lobby", "still here");
    assert!(matches!(h.take(bob).as_slice(), [Event::Message(_)]));
}

#[test]
fn renewing_with_fewer_rooms_leaves_the_others() {
    let mut h = strict();
    let m = {
        let id = identity(&h, "alice", None, HOUR);
        hello(&mut h, None, Some(id))
    };
    h.join(m, "team-a");
    h.join(m, "lobby");
    h.take_all();
    h.send(m, Command::Auth { identity: identity(&h, "alice", Some(&["team-*"]), HOUR) });
    match h.take(m).as_slice() {
        [Event::Left { room, .. }, Event::Authed { .. }] => assert_eq!(room.as_str(), "lobby"),
        other => panic!("{other:?}"),
    }
    h.send(m, Command::Auth { identity: identity(&h, "mallory", None, HOUR) });
    assert!(matches!(error_of(&h.take(m)), CommandError::Forbidden(_)), "another nick");
}

#[test]
fn a_new_connection_with_the_identity_joins_its_session() {
    let mut h = strict();
    let first = {
        let id = identity(&h, "alice", None, HOUR);
        hello(&mut h, None, Some(id))
    };
    h.join(first, "lobby");
    h.take_all();
    // Another device, no session token, same identity: same session.
    let second = {
        let id = identity(&h, "alice", None, HOUR);
        hello(&mut h, None, Some(id))
    };
    assert!(matches!(h.take(second).as_slice(), [Event::Welcome { resumed: true, .. }]));
    assert_eq!(h.disconnected, vec![], "both devices stay connected");
    h.say(first, "lobby", "from the laptop");
    assert_eq!(h.take(second).len(), 1, "the phone sees what the laptop says");
}

#[test]
fn identities_are_optional_when_not_required() {
    let mut h = Harness::new();
    let guest = hello(&mut h, Some("guest"), None);
    assert!(matches!(h.take(guest).as_slice(), [Event::Welcome { expires: None, .. }]));
    let bound = {
        let id = identity(&h, "alice", None, HOUR);
        hello(&mut h, None, Some(id))
    };
    assert!(matches!(h.take(bound).as_slice(), [Event::Welcome { expires: Some(_), .. }]));
    h.send(guest, Command::Auth { identity: identity(&h, "guest", None, HOUR) });
    assert!(matches!(error_of(&h.take(guest)), CommandError::Forbidden(_)), "nothing to renew");
}
