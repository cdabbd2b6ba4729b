//! Direct messages as conversations: numbered and kept like a room's,
//! delivered to a party that is away when it comes back, never to whoever
//! takes its nick later, listed, paged back and kept across restarts.

use std::time::Duration;

use crate::harness::Harness;
use chat_core::{
    ChatConfig, Command, CommandError, ConversationSummary, Event, Identity, MemberId, Message,
    Peer, Resume,
};

fn dm(h: &mut Harness, from: MemberId, to: &str, text: &str) {
    h.send(from, Command::Dm { to: Peer::Nick(to.into()), text: text.into() });
}

/// The (seq, with, text) of the direct messages among `events`.
fn directs(events: &[Event]) -> Vec<(u64, String, String)> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Direct { seq, with, text, .. } => {
                Some((*seq, with.to_string(), text.to_string()))
            }
            _ => None,
        })
        .collect()
}

/// The answer to a `conversation` command: (with, seqs and texts, last_seq,
/// resume).
fn read(
    h: &mut Harness,
    m: MemberId,
    with: Peer,
    after: Option<u64>,
    before: Option<u64>,
) -> (String, Vec<(u64, String)>, u64, Resume) {
    h.send(m, Command::Conversation { with, after, before, limit: Some(2) });
    match h.take(m).as_slice() {
        [Event::Conversation { with, history, last_seq, resume, .. }] => (
            with.to_string(),
            history.iter().map(|m: &Message| (m.seq, m.text.to_string())).collect(),
            *last_seq,
            *resume,
        ),
        other => panic!("{other:?}"),
    }
}

fn list(h: &mut Harness, m: MemberId) -> Vec<ConversationSummary> {
    h.send(m, Command::Conversations);
    match h.take(m).as_slice() {
        [Event::Conversations { list, .. }] => list.clone(),
        other => panic!("{other:?}"),
    }
}

fn hello_again(h: &mut Harness, token: &str, nick: &str) -> MemberId {
    let m = h.connect();
    let hello =
        Command::Hello { nick: Some(nick.into()), session: Some(token.into()), identity: None };
    h.send(m, hello);
    m
}

#[test]
fn each_conversation_is_numbered_and_both_sides_know_who_it_is_with() {
    let mut h = Harness::new();
    let alice = h.greeted("alice");
    let bob = h.greeted("bob");
    let carol = h.greeted("carol");
    dm(&mut h, alice, "bob", "one");
    dm(&mut h, bob, "alice", "two");
    dm(&mut h, alice, "carol", "elsewhere");
    assert_eq!(
        directs(&h.take(alice)),
        vec![
            (1, "bob".into(), "one".into()),
            (2, "bob".into(), "two".into()),
            (1, "carol".into(), "elsewhere".into())
        ]
    );
    assert_eq!(
        directs(&h.take(bob)),
        vec![(1, "alice".into(), "one".into()), (2, "alice".into(), "two".into())]
    );
    assert_eq!(directs(&h.take(carol)), vec![(1, "alice".into(), "elsewhere".into())]);
    let listed = list(&mut h, alice);
    assert_eq!(
        listed.iter().map(|c| (c.with.as_str(), c.last_seq)).collect::<Vec<_>>(),
        vec![("bob", 2), ("carol", 1)],
        "by nick order at equal times"
    );
    assert_ne!(listed[0].key, listed[1].key);
    assert_eq!(list(&mut h, bob)[0].key, listed[0].key, "one conversation, one key");
    dm(&mut h, alice, "nobody", "hi");
    assert!(matches!(
        h.take(alice).as_slice(),
        [Event::Error { error: CommandError::NoSuchNick(_), .. }]
    ));
}

#[test]
fn a_message_to_someone_away_waits_for_them() {
    let mut h = Harness::new();
    let alice = h.greeted("alice");
    let bob = h.greeted("bob");
    dm(&mut h, alice, "bob", "before");
    h.take_all();
    h.disconnect(bob);
    dm(&mut h, alice, "bob", "while you were away");
    dm(&mut h, alice, "bob", "and again");
    assert_eq!(directs(&h.take(alice)).len(), 2, "acknowledged to the sender");
    let bob = hello_again(&mut h, "token-2", "bob");
    assert!(matches!(h.take(bob).as_slice(), [Event::Welcome { resumed: true, .. }]));
    let listed = list(&mut h, bob);
    assert_eq!(listed.len(), 1);
    assert_eq!((listed[0].with.as_str(), listed[0].last_seq), ("alice", 3));
    // Catching up from the last one seen.
    let (with, history, last_seq, resume) =
        read(&mut h, bob, Peer::Nick("alice".into()), Some(1), None);
    assert_eq!((with.as_str(), last_seq, resume), ("alice", 3, Resume::Resumed));
    assert_eq!(history, vec![(2, "while you were away".into()), (3, "and again".into())]);
    // Paging back.
    let key = Peer::Conversation(listed[0].key.clone());
    let (_, page, ..) = read(&mut h, bob, key, None, Some(2));
    assert_eq!(page, vec![(1, "before".into())]);
}

#[test]
fn what_was_sent_to_a_session_never_reaches_whoever_takes_its_nick() {
    let mut h = Harness::with_config(ChatConfig {
        session_grace: Duration::from_secs(10),
        ..ChatConfig::default()
    });
    let alice = h.greeted("alice");
    let bob = h.greeted("bob");
    dm(&mut h, alice, "bob", "for bob's eyes");
    h.take_all();
    h.disconnect(bob);
    h.advance(Duration::from_secs(11));
    // Bob's session ended; someone else is bob now.
    let impostor = h.greeted("bob");
    h.take_all();
    let (_, history, last_seq, _) = read(&mut h, impostor, Peer::Nick("alice".into()), None, None);
    assert_eq!((history, last_seq), (vec![], 0), "nothing of the old conversation");
    assert_eq!(list(&mut h, impostor), vec![]);
    // A new message to "bob" goes to the new bob, in a new conversation...
    dm(&mut h, alice, "bob", "who are you?");
    assert_eq!(directs(&h.take(impostor)), vec![(1, "alice".into(), "who are you?".into())]);
    h.take(alice);
    let listed = list(&mut h, alice);
    assert_eq!(listed.len(), 2, "two conversations with two bobs");
    // ...and one by key to the old one, which waits for its token.
    let old = listed.iter().find(|c| c.last_seq == 1 && c.last_ts < h.now).unwrap().key.clone();
    h.send(alice, Command::Dm { to: Peer::Conversation(old), text: "still there?".into() });
    assert_eq!(directs(&h.take(alice)), vec![(2, "bob".into(), "still there?".into())]);
    assert_eq!(directs(&h.take(impostor)), vec![]);
    // The old bob's client comes back with its token: the session is new,
    // the token (and what was sent to it) is its own.
    let back = hello_again(&mut h, "token-2", "bobby");
    match h.take(back).as_slice() {
        [Event::Welcome { resumed: false, session, .. }] => assert_eq!(session.as_str(), "token-2"),
        other => panic!("{other:?}"),
    }
    let listed = list(&mut h, back);
    assert_eq!(listed.len(), 1);
    let (_, history, ..) =
        read(&mut h, back, Peer::Conversation(listed[0].key.clone()), Some(0), None);
    assert_eq!(history, vec![(1, "for bob's eyes".into()), (2, "still there?".into())]);
    assert!(
        matches!(
            {
                h.send(
                    impostor,
                    Command::Conversation {
                        with: Peer::Conversation(listed[0].key.clone()),
                        after: None,
                        before: None,
                        limit: None,
                    },
                );
                h.take(impostor)
            }
            .as_slice(),
            [Event::Error { error: CommandError::NoSuchConversation(_), .. }]
        ),
        "a key is no use to anyone else"
    );
}

#[test]
fn every_connection_of_both_sessions_gets_it() {
    let mut h = Harness::new();
    let alice = h.greeted("alice");
    let bob = h.greeted("bob");
    let phone = hello_again(&mut h, "token-2", "bob");
    h.take_all();
    dm(&mut h, alice, "bob", "hi");
    for m in [alice, bob, phone] {
        assert_eq!(directs(&h.take(m)).len(), 1, "{m:?}");
    }
    dm(&mut h, phone, "alice", "from the phone");
    assert_eq!(directs(&h.take(bob)), vec![(2, "alice".into(), "from the phone".into())]);
}

#[test]
fn conversations_survive_a_restart() {
    let mut h = Harness::new();
    let alice = h.greeted("alice");
    let _bob = h.greeted("bob");
    dm(&mut h, alice, "bob", "one");
    h.send_with_id(
        alice,
        Some("d2"),
        Command::Dm { to: Peer::Nick("bob".into()), text: "two".into() },
    );
    let original = h.take(alice).pop();
    let mut h = h.restarted();
    let alice = hello_again(&mut h, "token-1", "alice");
    h.take_all();
    assert_eq!(list(&mut h, alice)[0].last_seq, 2);
    // A retry is answered with the original, not sent again.
    h.send_with_id(
        alice,
        Some("d2"),
        Command::Dm { to: Peer::Nick("bob".into()), text: "two".into() },
    );
    assert_eq!(h.take(alice).pop(), original);
    // Bob's session came back waiting for him: the numbering goes on.
    dm(&mut h, alice, "bob", "three");
    assert_eq!(directs(&h.take(alice)), vec![(3, "bob".into(), "three".into())]);
    let (_, history, ..) = read(&mut h, alice, Peer::Nick("bob".into()), Some(0), None);
    assert_eq!(history.iter().map(|(seq, _)| *seq).collect::<Vec<_>>(), vec![1, 2, 3]);
}

#[test]
fn with_identities_a_message_reaches_the_identity_even_after_its_session_ended() {
    let mut h = Harness::with_config(ChatConfig {
        session_grace: Duration::from_secs(10),
        ..ChatConfig::default()
    });
    let identity = |h: &Harness, nick: &str| Identity {
        nick: nick.into(),
        rooms: None,
        expires: h.now.saturating_add(Duration::from_secs(3600)),
    };
    let signed_in = |h: &mut Harness, nick: &str| {
        let m = h.connect();
        let who = identity(h, nick);
        h.send(m, Command::Hello { nick: None, session: None, identity: Some(who) });
        h.take(m);
        m
    };
    let alice = signed_in(&mut h, "alice");
    let bob = signed_in(&mut h, "bob");
    dm(&mut h, alice, "bob", "hello bob");
    h.take_all();
    h.quit(bob);
    h.advance(Duration::from_secs(11));
    dm(&mut h, alice, "bob", "are you there?");
    assert_eq!(directs(&h.take(alice)), vec![(2, "bob".into(), "are you there?".into())]);
    // Bob signs in again, from anywhere: the conversation is his.
    let bob = signed_in(&mut h, "bob");
    let (_, history, ..) = read(&mut h, bob, Peer::Nick("alice".into()), Some(1), None);
    assert_eq!(history, vec![(2, "are you there?".into())]);
    dm(&mut h, alice, "carol", "never here");
    assert!(matches!(
        h.take(alice).as_slice(),
        [Event::Error { error: CommandError::NoSuchNick(_), .. }]
    ));
}
