use std::collections::VecDeque;

use yrs::sync::{Message, SyncMessage};
use yrs::updates::decoder::Decode;
use yrs::updates::encoder::Encode;
use yrs::{Doc, GetString, ReadTxn, Text, Transact, Update};

use super::{Conn, DocError, Document, Limits, Out};

/// Every change allowed.
fn allowed() -> Result<(), DocError> {
    Ok(())
}

/// A Yjs client as y-websocket's provider behaves: its own document, a
/// sync step 1 when it connects, its edits sent as updates.
struct Client {
    doc: Doc,
    conn: Conn,
    online: bool,
    /// What the server sent it and it has not read yet.
    inbox: VecDeque<Vec<u8>>,
}

impl Client {
    fn new(conn: Conn) -> Self {
        Self { doc: Doc::new(), conn, online: false, inbox: VecDeque::new() }
    }

    fn text(&self) -> String {
        let text = self.doc.get_or_insert_text("content");
        text.get_string(&self.doc.transact())
    }

    /// Types `what` at `at` (clamped); the update to send.
    fn insert(&mut self, at: u32, what: &str) -> Vec<u8> {
        let text = self.doc.get_or_insert_text("content");
        let before = self.doc.transact().state_vector();
        let mut txn = self.doc.transact_mut();
        let at = at.min(text.len(&txn));
        text.insert(&mut txn, at, what);
        drop(txn);
        self.doc.transact().encode_diff_v1(&before)
    }

    fn delete(&mut self, at: u32, len: u32) -> Vec<u8> {
        let text = self.doc.get_or_insert_text("content");
        let before = self.doc.transact().state_vector();
        let mut txn = self.doc.transact_mut();
        let have = text.len(&txn);
        let at = at.min(have);
        text.remove_range(&mut txn, at, len.min(have - at));
        drop(txn);
        self.doc.transact().encode_diff_v1(&before)
    }

    fn step1(&self) -> Vec<u8> {
        Message::Sync(SyncMessage::SyncStep1(self.doc.transact().state_vector())).encode_v1()
    }

    /// Reads one message from the server; what it answers.
    fn read(&mut self) -> Option<Vec<u8>> {
        let bytes = self.inbox.pop_front()?;
        match Message::decode_v1(&bytes).unwrap() {
            Message::Sync(SyncMessage::SyncStep1(vector)) => {
                let missing = self.doc.transact().encode_diff_v1(&vector);
                Some(Message::Sync(SyncMessage::SyncStep2(missing)).encode_v1())
            }
            Message::Sync(SyncMessage::SyncStep2(update) | SyncMessage::Update(update)) => {
                let update = Update::decode_v1(&update).unwrap();
                self.doc.transact_mut().apply_update(update).unwrap();
                None
            }
            _ => None,
        }
    }
}

/// A seeded xorshift: the same schedule for the same seed.
fn rng_of(seed: u64) -> impl FnMut() -> u64 {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    }
}

fn update_message(update: Vec<u8>) -> Vec<u8> {
    Message::Sync(SyncMessage::Update(update)).encode_v1()
}

/// A server document and its clients, with what the server stored.
struct Room {
    document: Document,
    clients: Vec<Client>,
    stored: Vec<Vec<u8>>,
}

impl Room {
    fn new(clients: usize) -> Self {
        let document = Document::load(&[], Limits::default()).unwrap();
        let clients = (0..clients).map(|c| Client::new(c as Conn)).collect();
        Self { document, clients, stored: Vec::new() }
    }

    fn route(&mut self, out: Vec<Out>) {
        for out in out {
            match out {
                Out::To(conn, bytes) => {
                    let client = &mut self.clients[conn as usize];
                    if client.online {
                        client.inbox.push_back(bytes);
                    }
                }
                Out::Others(from, bytes) => {
                    for client in self.clients.iter_mut().filter(|c| c.online && c.conn != from) {
                        client.inbox.push_back(bytes.clone());
                    }
                }
                Out::Everyone(bytes) => {
                    for client in self.clients.iter_mut().filter(|c| c.online) {
                        client.inbox.push_back(bytes.clone());
                    }
                }
                Out::Store(update) => self.stored.push(update),
                Out::Share(_) => {}
            }
        }
    }

    /// Client `c` sends `frame`; the server takes it.
    fn send(&mut self, c: usize, frame: &[u8]) {
        let conn = self.clients[c].conn;
        let out = self.document.receive(conn, frame, &mut allowed).unwrap();
        self.route(out);
    }

    fn connect(&mut self, c: usize) {
        self.clients[c].online = true;
        self.clients[c].inbox.clear();
        let out = self.document.open(self.clients[c].conn);
        self.route(out);
        let step1 = self.clients[c].step1();
        self.send(c, &step1);
    }

    fn disconnect(&mut self, c: usize) {
        self.clients[c].online = false;
        self.clients[c].inbox.clear();
        let out = self.document.close(self.clients[c].conn);
        self.route(out);
    }

    /// Client `c` reads one message, answering if it must.
    fn read_one(&mut self, c: usize) {
        if let Some(answer) = self.clients[c].read() {
            self.send(c, &answer);
        }
    }

    fn settle(&mut self) {
        while self.clients.iter().any(|c| !c.inbox.is_empty()) {
            for c in 0..self.clients.len() {
                self.read_one(c);
            }
        }
    }

    fn server_text(&self) -> String {
        let text = self.document.doc().get_or_insert_text("content");
        text.get_string(&self.document.doc().transact())
    }
}

#[test]
fn concurrent_edits_at_one_place_and_offline_edits_converge_on_every_side() {
    let mut room = Room::new(3);
    for c in 0..3 {
        room.connect(c);
    }
    room.settle();
    let hello = room.clients[0].insert(0, "hello");
    room.send(0, &update_message(hello));
    room.settle();
    assert_eq!(room.clients[2].text(), "hello");
    // Two type at the same place at once, before either hears the other.
    let a = room.clients[0].insert(5, " A");
    let b = room.clients[1].insert(5, " B");
    room.send(0, &update_message(a));
    room.send(1, &update_message(b));
    // The third is offline and edits meanwhile; it comes back.
    room.disconnect(2);
    let c = room.clients[2].insert(0, ">> ");
    drop(c);
    room.settle();
    room.connect(2);
    room.settle();
    let text = room.server_text();
    for client in &room.clients {
        assert_eq!(client.text(), text);
    }
    for part in ["hello", " A", " B", ">> "] {
        assert!(text.contains(part), "{part:?} lost from {text:?}");
    }
    // What was stored makes the same document, in any order.
    let mut stored = room.stored.clone();
    stored.reverse();
    let again = Document::load(&stored, Limits::default()).unwrap();
    let reloaded = again.doc().get_or_insert_text("content");
    assert_eq!(reloaded.get_string(&again.doc().transact()), text);
    // And so does its compacted state, alone.
    let compact = Document::load(&[room.document.state()], Limits::default()).unwrap();
    let compacted = compact.doc().get_or_insert_text("content");
    assert_eq!(compacted.get_string(&compact.doc().transact()), text);
}

#[test]
fn malformed_oversized_and_overflowing_updates_are_refused_and_the_document_stands() {
    let limits = Limits { update_bytes: 64, doc_bytes: 200 };
    let mut document = Document::load(&[], limits).unwrap();
    let mut client = Client::new(1);
    document.open(1);
    let ok = client.insert(0, "fine");
    document.receive(1, &update_message(ok), &mut allowed).unwrap();
    let before = document.state();
    for garbage in [&b""[..], b"\xff\xff\xff", b"\x00\x02\x05garbage", b"\x00\x01"] {
        assert_eq!(
            document.receive(1, garbage, &mut allowed),
            Err(DocError::Malformed),
            "{garbage:?}"
        );
    }
    let big = client.insert(0, &"x".repeat(100));
    assert!(matches!(
        document.receive(1, &update_message(big), &mut allowed),
        Err(DocError::UpdateTooLarge { max: 64, .. })
    ));
    let mut grew = 0;
    let refused = loop {
        let more = client.insert(0, &"y".repeat(20));
        match document.receive(1, &update_message(more), &mut allowed) {
            Ok(_) => grew += 1,
            Err(error) => break error,
        }
    };
    assert_eq!(refused, DocError::DocumentFull { max: 200 });
    assert!(grew > 0);
    assert!(document.state().len() <= 200);
    // What was refused changed nothing: the document still decodes, and
    // holds what was accepted.
    assert_ne!(document.state(), before, "what fit was applied");
    assert!(Document::load(&[document.state()], limits).is_ok());
}

#[test]
fn random_bytes_never_take_the_document_down() {
    let mut document = Document::load(&[], Limits::default()).unwrap();
    let mut client = Client::new(1);
    document.open(1);
    let ok = client.insert(0, "kept");
    document.receive(1, &update_message(ok), &mut allowed).unwrap();
    let mut rng = rng_of(7);
    for _ in 0..2000 {
        let len = rng() % 64;
        let mut frame: Vec<u8> = (0..len).map(|_| rng() as u8).collect();
        // Often a plausible start: a sync update of garbage.
        if rng().is_multiple_of(2) {
            frame.splice(0..0, [0, 2, (len as u8).min(127)]);
        }
        let _ = document.receive(1, &frame, &mut allowed);
    }
    let text = document.doc().get_or_insert_text("content");
    assert!(text.get_string(&document.doc().transact()).contains("kept"));
    assert!(Document::load(&[document.state()], Limits::default()).is_ok());
}

#[test]
fn awareness_is_relayed_to_every_connection_and_node_and_taken_back_when_its_connection_goes() {
    use yrs::sync::Awareness;
    let mut document = Document::load(&[], Limits::default()).unwrap();
    document.open(1);
    document.open(2);
    let caret = Awareness::new(Doc::with_client_id(77));
    caret.set_local_state_raw(r#"{"user":{"name":"alice"},"cursor":3}"#);
    let message = super::awareness_message(caret.update().unwrap());
    let out = document.receive(1, &message, &mut allowed).unwrap();
    // Everyone here (the sender too: see `Out::Everyone`) and the other
    // nodes hear it.
    assert_eq!(out, vec![Out::Everyone(message.clone()), Out::Share(message.clone())]);
    // A newcomer is told who is here.
    let first = document.open(3);
    assert_eq!(first.len(), 2, "sync step 1, then who is here");
    // Alice's connection goes: the others, here and on other nodes, see
    // her state removed.
    let gone = document.close(1);
    let [Out::Everyone(bytes), Out::Share(shared)] = &gone[..] else { panic!("{gone:?}") };
    assert_eq!(bytes, shared);
    let Message::Awareness(update) = Message::decode_v1(bytes).unwrap() else { panic!() };
    assert_eq!(update.clients[&77].json.as_ref(), "null");
    assert_eq!(document.connections(), 2);
}

#[test]
fn awareness_from_another_node_reaches_every_connection_here_and_newcomers() {
    use yrs::sync::Awareness;
    let mut here = Document::load(&[], Limits::default()).unwrap();
    here.open(1);
    let caret = Awareness::new(Doc::with_client_id(78));
    caret.set_local_state_raw(r#"{"user":{"name":"bob"}}"#);
    let message = super::awareness_message(caret.update().unwrap());
    assert_eq!(here.merge_awareness(&message).unwrap(), vec![Out::Everyone(message)]);
    let first = here.open(2);
    let [_, Out::To(2, bytes)] = &first[..] else { panic!("{first:?}") };
    let Message::Awareness(update) = Message::decode_v1(bytes).unwrap() else { panic!() };
    assert!(update.clients[&78].json.contains("bob"));
    // Anything else from a node is refused, and changes nothing.
    let step1 = Message::Sync(SyncMessage::SyncStep1(Default::default())).encode_v1();
    assert_eq!(here.merge_awareness(&step1), Err(DocError::Malformed));
    assert_eq!(here.merge_awareness(&[0xff, 0xff]), Err(DocError::Malformed));
}

#[test]
fn random_schedules_of_editors_going_offline_converge_with_every_insert_kept() {
    for seed in 1..=40u64 {
        simulate(seed);
    }
}

fn simulate(seed: u64) {
    let mut rng = rng_of(seed);
    let editors = 2 + (rng() % 3) as usize;
    let mut room = Room::new(editors);
    for c in 0..editors {
        room.connect(c);
    }
    let mut typed = Vec::new();
    for step in 0..300 {
        let c = (rng() % editors as u64) as usize;
        match rng() % 10 {
            0..=4 => {
                let word = format!("<{seed}.{step}>");
                let at = (rng() % 40) as u32;
                let update = room.clients[c].insert(at, &word);
                typed.push(word);
                if room.clients[c].online {
                    room.send(c, &update_message(update));
                }
            }
            5 => {
                // Deletes only spaces it inserts itself, so every word stays.
                let update = room.clients[c].insert(0, " ");
                let undo = room.clients[c].delete(0, 1);
                if room.clients[c].online {
                    room.send(c, &update_message(update));
                    room.send(c, &update_message(undo));
                }
            }
            6 if room.clients[c].online => room.disconnect(c),
            6 => room.connect(c),
            _ => {
                // Someone reads what reached it, in order, as far as it likes.
                for _ in 0..rng() % 4 {
                    room.read_one(c);
                }
            }
        }
    }
    for c in 0..editors {
        if !room.clients[c].online {
            room.connect(c);
        }
    }
    room.settle();
    let text = room.server_text();
    for (c, client) in room.clients.iter().enumerate() {
        assert_eq!(client.text(), text, "seed {seed}: editor {c} differs");
    }
    // Every character typed is there once (a word may have been typed
    // into since, so it shows in order, not always in one piece).
    let mut have: Vec<char> = text.chars().collect();
    let mut want: Vec<char> = typed.concat().chars().collect();
    have.sort_unstable();
    want.sort_unstable();
    assert_eq!(have, want, "seed {seed}: characters lost or doubled");
    for word in &typed {
        let mut rest = text.chars();
        let in_order = word.chars().all(|c| rest.any(|r| r == c));
        assert!(in_order, "seed {seed}: {word} out of order");
    }
    let reloaded = Document::load(&room.stored, Limits::default()).unwrap();
    let again = reloaded.doc().get_or_insert_text("content");
    assert_eq!(again.get_string(&reloaded.doc().transact()), text, "seed {seed}: stored");
}

#[test]
fn an_update_bringing_nothing_new_is_neither_kept_nor_relayed_and_one_ahead_is_kept() {
    let mut document = Document::load(&[], Limits::default()).unwrap();
    document.open(1);
    document.open(2);
    let mut client = Client::new(1);
    let first = client.insert(0, "one");
    let second = client.insert(3, " two");
    let kept = |out: &[Out]| out.iter().any(|out| matches!(out, Out::Store(_)));
    // Ahead of what it follows: kept (Yjs holds it until that comes).
    let out = document.receive(1, &update_message(second), &mut allowed).unwrap();
    assert!(kept(&out), "{out:?}");
    let out = document.receive(1, &update_message(first.clone()), &mut allowed).unwrap();
    assert!(kept(&out), "{out:?}");
    let text = document.doc().get_or_insert_text("content");
    assert_eq!(text.get_string(&document.doc().transact()), "one two");
    // The same again, or an empty sync step 2: nothing new, nothing said,
    // and no edit asked for.
    let mut asked = false;
    let mut ask = || {
        asked = true;
        Ok(())
    };
    assert_eq!(document.receive(1, &update_message(first), &mut ask).unwrap(), vec![]);
    let empty = Message::Sync(SyncMessage::SyncStep2(Update::EMPTY_V1.to_vec())).encode_v1();
    assert_eq!(document.receive(2, &empty, &mut ask).unwrap(), vec![]);
    assert!(!asked);
}

#[test]
fn who_is_here_and_is_not_renewed_expires_and_who_renews_stays() {
    use yrs::sync::Awareness;
    let mut document = Document::load(&[], Limits::default()).unwrap();
    document.open(1);
    let say = |client: u64, name: &str| {
        let caret = Awareness::new(Doc::with_client_id(client));
        caret.set_local_state_raw(format!(r#"{{"user":{{"name":"{name}"}}}}"#).as_str());
        super::awareness_message(caret.update().unwrap())
    };
    // Who came before the first call is not taken for gone by it (the
    // server's first tick a second after, not 30 s).
    document.receive(1, &say(79, "early"), &mut allowed).unwrap();
    assert_eq!(document.expire(1_000, 30_000), vec![]);
    // Another node's editor, and one here that keeps renewing.
    document.merge_awareness(&say(80, "far")).unwrap();
    document.receive(1, &say(81, "near"), &mut allowed).unwrap();
    for now in (2_000..=30_000).step_by(1_000) {
        assert_eq!(document.expire(now, 30_000), vec![]);
    }
    document.receive(1, &say(81, "near"), &mut allowed).unwrap();
    // 30 s after its last word, the far one goes: everyone is told.
    let out = document.expire(31_001, 30_000);
    let [Out::Everyone(bytes)] = &out[..] else { panic!("{out:?}") };
    let Message::Awareness(update) = Message::decode_v1(bytes).unwrap() else { panic!() };
    let mut gone: Vec<u64> = update.clients.keys().copied().collect();
    gone.sort_unstable();
    assert_eq!(gone, vec![79, 80]);
    assert_eq!(update.clients[&80].json.as_ref(), "null");
    // The one that renewed stays, and newcomers hear only of it.
    assert_eq!(document.expire(40_000, 30_000), vec![]);
    let first = document.open(2);
    let [_, Out::To(2, bytes)] = &first[..] else { panic!("{first:?}") };
    let Message::Awareness(update) = Message::decode_v1(bytes).unwrap() else { panic!() };
    assert_eq!(update.clients.keys().copied().collect::<Vec<_>>(), vec![81]);
}
