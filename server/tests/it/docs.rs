//! Shared documents over real sockets (issue #17): Yjs clients
//! (yrs documents speaking y-protocols, as y-websocket's provider does)
//! open `/yjs/{room}/{doc}?session=TOKEN` and edit one document.

use chat_transport::tungstenite::Message as Frame;
use chat_transport::{TransportConfig, WebSocket, connect};
use futures_util::{SinkExt, StreamExt};
use std::collections::BTreeMap;

use yrs::sync::{Awareness, Message, SyncMessage};
use yrs::updates::decoder::Decode;
use yrs::updates::encoder::Encode;
use yrs::{Doc, GetString, ReadTxn, Text, Transact, Update};

use crate::support::{Client, Server, WAIT};

/// A Yjs client of one document over its own WebSocket.
pub(crate) struct Editor {
    doc: Doc,
    socket: WebSocket,
    /// Who is here as last heard: awareness client, its state (JSON).
    pub(crate) here: BTreeMap<u64, String>,
    /// Sync step 2 messages read.
    step2s: usize,
}

impl Editor {
    /// Opens `room`'s document `doc` for the session of `token`: the
    /// socket, or the close frame's (code, reason) if refused.
    pub(crate) async fn open(server: &Server, path: &str) -> Result<Self, (u16, String)> {
        let url = format!("ws://{}{path}", server.addr);
        let transport =
            TransportConfig { max_message_bytes: 64 << 20, ..TransportConfig::default() };
        let mut socket = connect(&url, None, &transport).await.unwrap();
        let doc = Doc::new();
        let step1 = Message::Sync(SyncMessage::SyncStep1(doc.transact().state_vector()));
        socket.send(Frame::binary(step1.encode_v1())).await.unwrap();
        let mut editor = Self { doc, socket, here: BTreeMap::new(), step2s: 0 };
        // The server's sync step 1 comes first, or the refusal.
        match editor.read().await {
            Ok(()) => Ok(editor),
            Err(refused) => Err(refused),
        }
    }

    pub(crate) fn text(&self) -> String {
        let text = self.doc.get_or_insert_text("content");
        text.get_string(&self.doc.transact())
    }

    pub(crate) async fn insert(&mut self, at: u32, what: &str) {
        let text = self.doc.get_or_insert_text("content");
        let before = self.doc.transact().state_vector();
        {
            let mut txn = self.doc.transact_mut();
            let at = at.min(text.len(&txn));
            text.insert(&mut txn, at, what);
        }
        let update = self.doc.transact().encode_diff_v1(&before);
        let message = Message::Sync(SyncMessage::Update(update));
        self.socket.send(Frame::binary(message.encode_v1())).await.unwrap();
    }

    /// Reads one message and does what it asks; `Err` with the close.
    pub(crate) async fn read(&mut self) -> Result<(), (u16, String)> {
        loop {
            let frame = tokio::time::timeout(WAIT, self.socket.next()).await.expect("in time");
            let bytes = match frame {
                Some(Ok(Frame::Binary(bytes))) => bytes,
                Some(Ok(Frame::Close(close))) => {
                    let close = close.map(|c| (u16::from(c.code), c.reason.to_string()));
                    return Err(close.unwrap_or((1005, String::new())));
                }
                Some(Ok(_)) => continue,
                other => panic!("{other:?}"),
            };
            match Message::decode_v1(&bytes).unwrap() {
                Message::Sync(SyncMessage::SyncStep1(vector)) => {
                    let missing = self.doc.transact().encode_diff_v1(&vector);
                    let reply = Message::Sync(SyncMessage::SyncStep2(missing));
                    self.socket.send(Frame::binary(reply.encode_v1())).await.unwrap();
                }
                Message::Sync(SyncMessage::SyncStep2(update)) => {
                    self.step2s += 1;
                    let update = Update::decode_v1(&update).unwrap();
                    self.doc.transact_mut().apply_update(update).unwrap();
                }
                Message::Sync(SyncMessage::Update(update)) => {
                    let update = Update::decode_v1(&update).unwrap();
                    self.doc.transact_mut().apply_update(update).unwrap();
                }
                Message::Awareness(update) => {
                    for (client, entry) in update.clients {
                        match &*entry.json {
                            "null" => self.here.remove(&client),
                            json => self.here.insert(client, json.to_owned()),
                        };
                    }
                }
                _ => {}
            }
            return Ok(());
        }
    }

    /// A sync round trip: everything this editor sent before was taken by
    /// the server once it returns.
    pub(crate) async fn round_trip(&mut self) {
        let seen = self.step2s;
        let step1 = Message::Sync(SyncMessage::SyncStep1(self.doc.transact().state_vector()));
        self.socket.send(Frame::binary(step1.encode_v1())).await.unwrap();
        while self.step2s == seen {
            self.read().await.unwrap();
        }
    }

    /// Says who is here: awareness client `client` with `state` (JSON).
    pub(crate) async fn say_here(&mut self, client: u64, state: &str) {
        let awareness = Awareness::new(Doc::with_client_id(client));
        awareness.set_local_state_raw(state);
        let message = Message::Awareness(awareness.update().unwrap());
        self.socket.send(Frame::binary(message.encode_v1())).await.unwrap();
    }

    /// Reads until what is heard of awareness client `client` holds
    /// `part` (`None`: until it is gone).
    pub(crate) async fn until_here(&mut self, client: u64, part: Option<&str>) {
        while self.here.get(&client).map(|state| part.is_some_and(|p| state.contains(p)))
            != part.map(|_| true)
        {
            self.read().await.unwrap();
        }
    }

    /// Reads until the server closes: its (code, reason).
    pub(crate) async fn closed(&mut self) -> (u16, String) {
        loop {
            if let Err(closed) = self.read().await {
                return closed;
            }
        }
    }

    /// Reads until the text is `want`.
    pub(crate) async fn until(&mut self, want: &str) {
        while self.text() != want {
            self.read().await.unwrap();
        }
    }
}

pub(crate) fn path(room: &str, doc: &str, token: &str) -> String {
    format!("/yjs/{room}/{doc}?session={token}")
}

#[tokio::test]
async fn members_edit_one_document_live_and_converge() {
    let config = chat_server::ServerConfig {
        metrics_token: Some(crate::metrics::TOKEN.to_owned()),
        ..chat_server::ServerConfig::default()
    };
    let server = Server::start(config).await;
    let alice = Client::in_room(&server, "alice", "lobby").await;
    let bob = Client::in_room(&server, "bob", "lobby").await;
    let mut a = Editor::open(&server, &path("lobby", "notes", &alice.session)).await.unwrap();
    let mut b = Editor::open(&server, &path("lobby", "notes", &bob.session)).await.unwrap();
    crate::metrics::until(&server, "chat_document_connections", |v| v == 2.0).await;
    a.insert(0, "hello").await;
    b.until("hello").await;
    // Both type at the end at once.
    a.insert(5, " from a").await;
    b.insert(5, " from b").await;
    let expected = loop {
        // Each reads until it has both edits.
        let (ta, tb) = (a.text(), b.text());
        if ta == tb && ta.contains(" from a") && ta.contains(" from b") {
            break ta;
        }
        if !(ta.contains(" from a") && ta.contains(" from b")) {
            a.read().await.unwrap();
        }
        if !(tb.contains(" from a") && tb.contains(" from b")) {
            b.read().await.unwrap();
        }
    };
    // Someone opening it later gets the whole document.
    let mut c = Editor::open(&server, &path("lobby", "notes", &alice.session)).await.unwrap();
    c.until(&expected).await;
    // Who is here reaches everyone, the sayer too (a lone y-websocket
    // client that hears nothing for 30 s drops its connection).
    c.say_here(31, r#"{"user":{"name":"alice"}}"#).await;
    c.until_here(31, Some("alice")).await;
    b.until_here(31, Some("alice")).await;
    drop(c);
    b.until_here(31, None).await;
    crate::metrics::until(&server, "chat_document_connections", |v| v == 2.0).await;
    // Another document of the room is another document.
    let mut other = Editor::open(&server, &path("lobby", "todo", &bob.session)).await.unwrap();
    other.round_trip().await;
    assert_eq!(other.text(), "");
    server.shutdown().await;
}

#[tokio::test]
async fn only_members_open_a_rooms_documents_a_bad_frame_leaves_it_intact_and_leaving_closes_it() {
    let server = Server::start(chat_server::ServerConfig::default()).await;
    let alice = Client::in_room(&server, "alice", "lobby").await;
    let carol = Client::hello(&server, "carol").await;
    // Refusals are final for y-websocket (44xx: it stops reconnecting).
    for (path, code, why) in [
        (path("lobby", "notes", &carol.session), 4403, "not a member of #lobby"),
        (
            path("lobby", "notes", "0123456789abcdef0123456789abcdef"),
            4403,
            "not a member of #lobby",
        ),
        ("/yjs/lobby/notes".to_owned(), 4400, "no ?session=TOKEN"),
        (path("Lobby!", "notes", &alice.session), 4400, "not a room's name"),
        ("/yjs/lobby".to_owned(), 4400, "the path is /yjs/ROOM/DOC"),
    ] {
        let refused = Editor::open(&server, &path).await.err();
        assert_eq!(refused, Some((code, why.to_owned())), "{path}");
    }
    let mut a = Editor::open(&server, &path("lobby", "notes", &alice.session)).await.unwrap();
    a.insert(0, "kept").await;
    // A frame that is not y-protocols closes that connection only.
    a.socket.send(Frame::binary(vec![0, 2, 9, 0xff, 0xfe, 0xfd])).await.unwrap();
    let closed = a.closed().await;
    assert_eq!(closed, (4400, "not a Yjs sync or awareness message".to_owned()));
    let mut again = Editor::open(&server, &path("lobby", "notes", &alice.session)).await.unwrap();
    again.until("kept").await;
    // Alice leaves the room: her document closes, and stays closed to her.
    let mut alice = alice;
    alice.send(serde_json::json!({"type": "leave", "room": "lobby"})).await;
    let closed = again.closed().await;
    assert_eq!(closed, (4403, "no longer a member of #lobby".to_owned()));
    let refused = Editor::open(&server, &path("lobby", "notes", &alice.session)).await.err();
    assert_eq!(refused, Some((4403, "not a member of #lobby".to_owned())));
    server.shutdown().await;
}

#[tokio::test]
async fn a_paste_larger_than_a_chat_message_is_taken_and_past_the_limits_refused_for_good() {
    let mut config = chat_server::ServerConfig::default();
    config.docs.update_bytes = 256 * 1024;
    config.docs.doc_bytes = 600 * 1024;
    let server = Server::start(config).await;
    let alice = Client::in_room(&server, "alice", "lobby").await;
    let at = path("lobby", "notes", &alice.session);
    let mut a = Editor::open(&server, &at).await.unwrap();
    let mut b = Editor::open(&server, &at).await.unwrap();
    // 200 KiB in one update: past the 64 KiB of a chat message, within
    // the document's limits.
    let paste = "0123456789abcdef".repeat(200 * 64);
    a.insert(0, &paste).await;
    b.until(&paste).await;
    // An update past --doc-update-bytes (with its framing) closes that
    // connection for good (y-websocket stops on 44xx).
    let mut d = Editor::open(&server, &at).await.unwrap();
    d.until(&paste).await;
    d.insert(0, &"y".repeat(300 * 1024)).await;
    let closed = d.closed().await;
    assert_eq!(closed, (4413, format!("a frame larger than {} bytes", 256 * 1024 + 64)));
    // Edits that would take the document past --doc-max-bytes: refused.
    for n in 0..3 {
        a.insert(0, &"z".repeat(200 * 1024)).await;
        if n < 1 {
            b.until(&format!("{}{paste}", "z".repeat(200 * 1024))).await;
        }
    }
    let closed = a.closed().await;
    assert_eq!(closed, (4413, format!("the document would grow past {} bytes", 600 * 1024)));
    // What was taken stands, for everyone.
    let want = format!("{}{paste}", "z".repeat(200 * 1024));
    let mut later = Editor::open(&server, &at).await.unwrap();
    later.until(&want).await;
    assert_eq!(b.text(), want);
    server.shutdown().await;
}

#[tokio::test]
async fn a_document_survives_a_restart_and_its_updates_are_compacted() {
    use chat_server::{ServerConfig, SqliteStore, Store};
    let dir = tempfile::tempdir().unwrap();
    let store = || Box::new(SqliteStore::open(dir.path()).unwrap()) as Box<dyn Store>;
    let server = Server::start_with(ServerConfig::default(), store()).await;
    let alice = Client::in_room(&server, "alice", "lobby").await;
    let bob = Client::in_room(&server, "bob", "lobby").await;
    let mut a = Editor::open(&server, &path("lobby", "notes", &alice.session)).await.unwrap();
    let mut b = Editor::open(&server, &path("lobby", "notes", &bob.session)).await.unwrap();
    // Many small edits, as typing makes: more than are kept one by one.
    let mut typed = String::new();
    for n in 0..250 {
        let word = format!("{} ", n % 10);
        a.insert(u32::try_from(typed.len()).unwrap(), &word).await;
        typed.push_str(&word);
    }
    b.until(&typed).await;
    drop((a, b));
    let token = alice.session.clone();
    drop((alice, bob));
    server.shutdown().await;
    // Everything typed is there after a restart, read from storage.
    let server = Server::start_with(ServerConfig::default(), store()).await;
    let (mut alice, _) = Client::resume(&server, &token).await;
    alice.send(serde_json::json!({"type": "join", "room": "lobby"})).await;
    alice.expect("joined").await;
    let mut again = Editor::open(&server, &path("lobby", "notes", &token)).await.unwrap();
    again.until(&typed).await;
    server.shutdown().await;
    // And it is kept in few rows: compacted past 200 updates.
    let db = rusqlite::Connection::open(dir.path().join("chat.db")).unwrap();
    let rows: i64 = db.query_row("SELECT count(*) FROM doc_updates", [], |row| row.get(0)).unwrap();
    assert!(rows < 100, "{rows} rows for 250 edits");
}

#[tokio::test]
async fn a_document_storage_cannot_read_is_refused_for_now_and_chat_goes_on() {
    let mut store = crate::support::FaultyStore::new(chat_server::MemoryStore::new());
    store.docs_unreadable = true;
    let store = Box::new(store);
    let server = Server::start_with(chat_server::ServerConfig::default(), store).await;
    let mut alice = Client::in_room(&server, "alice", "lobby").await;
    let refused = Editor::open(&server, &path("lobby", "notes", &alice.session)).await.err();
    // 1013: try again later (y-websocket does; the refusal is not final).
    assert_eq!(refused, Some((1013, "the document cannot be read now".to_owned())));
    alice
        .send(serde_json::json!({"type": "say", "room": "lobby", "text": "still here", "id": "s"}))
        .await;
    assert_eq!(alice.expect("message").await["text"], "still here");
    server.shutdown().await;
}

#[tokio::test]
async fn the_room_lists_its_documents_live_and_keeps_the_list_and_deleting_one_drops_it() {
    use chat_server::{ServerConfig, SqliteStore, Store};
    use serde_json::json;
    let dir = tempfile::tempdir().unwrap();
    let store = || Box::new(SqliteStore::open(dir.path()).unwrap()) as Box<dyn Store>;
    let server = Server::start_with(ServerConfig::default(), store()).await;
    let mut alice = Client::in_room(&server, "alice", "lobby").await;
    let mut bob = Client::in_room(&server, "bob", "lobby").await;
    alice.expect_presence("join", "bob").await;
    alice
        .send(json!({"type": "doc_create", "room": "lobby", "title": "Meeting notes", "id": "c"}))
        .await;
    let created = alice.expect("doc").await;
    assert_eq!((created["id"].as_str(), created["action"].as_str()), (Some("c"), Some("created")));
    assert_eq!(created["doc"]["name"], "meeting-notes");
    assert_eq!(bob.expect("doc").await["doc"]["title"], "Meeting notes");
    // A Yjs client's first edit of a name no one created lists it; a
    // resync that brings nothing new is no edit.
    let mut editor = Editor::open(&server, &path("lobby", "notes", &alice.session)).await.unwrap();
    editor.insert(0, "agenda").await;
    let listed = bob.expect("doc").await;
    assert_eq!(
        (listed["action"].as_str(), listed["by"].as_str()),
        (Some("created"), Some("alice"))
    );
    assert_eq!(listed["doc"]["title"], "notes");
    assert_eq!(alice.expect("doc").await["action"], "created");
    // Opening and syncing (nothing new) is no edit; an edit shows to the
    // others (the list tells edits at most every 10 s: chat-core's tests).
    let mut bobs = Editor::open(&server, &path("lobby", "notes", &bob.session)).await.unwrap();
    bobs.until("agenda").await;
    bobs.round_trip().await;
    alice.expect_nothing_pending().await;
    bobs.insert(6, " and more").await;
    editor.until("agenda and more").await;
    // Bad titles and names are refused with their codes.
    bob.send(json!({"type": "doc_create", "room": "lobby", "title": "meeting NOTES"})).await;
    bob.expect_error("invalid_doc").await;
    bob.send(json!({"type": "doc_delete", "room": "lobby", "doc": "nope"})).await;
    bob.expect_error("no_such_doc").await;
    bob.send(json!({"type": "doc_rename", "room": "lobby", "doc": "notes", "title": "Agenda"}))
        .await;
    assert_eq!(bob.expect("doc").await["doc"]["title"], "Agenda");
    alice.expect("doc").await;
    // Deleted: its editors are closed for good, its content is gone.
    alice.send(json!({"type": "doc_delete", "room": "lobby", "doc": "notes"})).await;
    assert_eq!(alice.expect("doc").await["action"], "deleted");
    let closed = editor.closed().await;
    assert_eq!(closed, (4404, "document notes of #lobby was deleted".to_owned()));
    let mut fresh = Editor::open(&server, &path("lobby", "notes", &bob.session)).await.unwrap();
    fresh.round_trip().await;
    assert_eq!(fresh.text(), "");
    drop((fresh, bobs));
    let token = bob.session.clone();
    drop((alice, bob));
    server.shutdown().await;
    // The list is kept across a restart.
    let server = Server::start_with(ServerConfig::default(), store()).await;
    let (mut bob, _) = Client::resume(&server, &token).await;
    bob.send(json!({"type": "join", "room": "lobby"})).await;
    let joined = bob.expect("joined").await;
    let titles: Vec<&str> =
        joined["docs"].as_array().unwrap().iter().map(|d| d["title"].as_str().unwrap()).collect();
    assert_eq!(titles, ["Meeting notes"]);
    server.shutdown().await;
    let db = rusqlite::Connection::open(dir.path().join("chat.db")).unwrap();
    let rows: i64 = db
        .query_row("SELECT count(*) FROM doc_updates WHERE doc = 'notes'", [], |row| row.get(0))
        .unwrap();
    assert_eq!(rows, 0, "a deleted document's content is gone from storage");
}

#[tokio::test]
async fn read_only_rooms_documents_are_read_and_never_changed_and_a_full_room_takes_no_new_one() {
    let mut config = chat_server::ServerConfig::default();
    config.chat.read_only_docs = vec![chat_core::RoomPattern::new("archive-*")];
    config.chat.max_docs_per_room = 1;
    let server = Server::start(config).await;
    let mut alice = Client::in_room(&server, "alice", "lobby").await;
    alice.send(serde_json::json!({"type": "join", "room": "archive-1"})).await;
    assert_eq!(alice.expect("joined").await["docs_read_only"], true);
    let mut reader =
        Editor::open(&server, &path("archive-1", "notes", &alice.session)).await.unwrap();
    reader.insert(0, "vandalism").await;
    let closed = reader.closed().await;
    assert_eq!(closed, (4403, "the documents of archive-1 are read-only".to_owned()));
    let mut reread =
        Editor::open(&server, &path("archive-1", "notes", &alice.session)).await.unwrap();
    reread.round_trip().await;
    assert_eq!(reread.text(), "", "nothing of it was taken");
    // One document per room here: a second name cannot be created by
    // editing it.
    let mut one = Editor::open(&server, &path("lobby", "one", &alice.session)).await.unwrap();
    one.insert(0, "first").await;
    assert_eq!(alice.expect("doc").await["action"], "created");
    let mut two = Editor::open(&server, &path("lobby", "two", &alice.session)).await.unwrap();
    two.insert(0, "second").await;
    let closed = two.closed().await;
    assert_eq!(closed.0, 4413);
    assert!(closed.1.contains("holds 1 documents"), "{closed:?}");
    server.shutdown().await;
}

#[tokio::test]
async fn a_documents_versions_are_kept_listed_and_one_restored_as_an_edit_everyone_sees() {
    use chat_server::{ServerConfig, SqliteStore, Store};
    use serde_json::json;
    let dir = tempfile::tempdir().unwrap();
    let store = || Box::new(SqliteStore::open(dir.path()).unwrap()) as Box<dyn Store>;
    let server = Server::start_with(ServerConfig::default(), store()).await;
    let mut alice = Client::in_room(&server, "alice", "lobby").await;
    let mut bob = Client::in_room(&server, "bob", "lobby").await;
    alice.expect_presence("join", "bob").await;
    // A first edit keeps a version; the last editor leaving keeps another.
    let mut editor = Editor::open(&server, &path("lobby", "notes", &alice.session)).await.unwrap();
    editor.insert(0, "draft one").await;
    editor.round_trip().await;
    editor.insert(9, ", and more").await;
    editor.round_trip().await;
    drop(editor);
    let versions = loop {
        alice
            .send(json!({"type": "doc_versions", "room": "lobby", "doc": "notes", "id": "v"}))
            .await;
        let listed = alice.next_of("doc_versions").await;
        let versions = listed["versions"].as_array().unwrap().clone();
        // (The last editor's version is kept once its close is handled.)
        if versions.len() == 2 {
            break versions;
        }
    };
    let (newest, first) =
        (versions[0]["version"].as_u64().unwrap(), versions[1]["version"].as_u64().unwrap());
    assert!(newest > first, "newest first: {versions:?}");
    // Bob restores the first version while an editor has it open: the
    // editor sees it as an edit, the room is told, and the state before
    // the restore is kept as a version too.
    let mut watcher = Editor::open(&server, &path("lobby", "notes", &bob.session)).await.unwrap();
    watcher.until("draft one, and more").await;
    bob.send(json!({"type": "doc_restore", "room": "lobby", "doc": "notes", "version": first, "id": "r"}))
        .await;
    watcher.until("draft one").await;
    let told = loop {
        let frame = bob.recv().await;
        if frame["type"] == "doc" && frame["action"] != "created" {
            break frame;
        }
    };
    assert_eq!((told["id"].as_str(), told["action"].as_str()), (Some("r"), Some("restored")));
    assert_eq!(told["doc"]["edited_by"], "bob");
    // A version that is not kept, or one past the end: refused.
    bob.send(json!({"type": "doc_restore", "room": "lobby", "doc": "notes", "version": 999_999}))
        .await;
    assert_eq!(bob.next_of("error").await["code"], "no_such_version");
    drop(watcher);
    let token = alice.session.clone();
    drop((alice, bob));
    server.shutdown().await;
    // Kept across a restart.
    let server = Server::start_with(ServerConfig::default(), store()).await;
    let (mut alice, _) = Client::resume(&server, &token).await;
    alice.send(json!({"type": "join", "room": "lobby"})).await;
    alice.expect("joined").await;
    alice.send(json!({"type": "doc_versions", "room": "lobby", "doc": "notes"})).await;
    let listed = alice.expect("doc_versions").await;
    assert!(listed["versions"].as_array().unwrap().len() >= 3, "{listed}");
    let mut reader = Editor::open(&server, &path("lobby", "notes", &token)).await.unwrap();
    reader.until("draft one").await;
    server.shutdown().await;
}
