//! Shared documents over real sockets (issue #17, under way): Yjs clients
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
        let mut editor = Self { doc, socket, here: BTreeMap::new() };
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
                Message::Sync(SyncMessage::SyncStep2(update) | SyncMessage::Update(update)) => {
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
    let server = Server::start(chat_server::ServerConfig::default()).await;
    let alice = Client::in_room(&server, "alice", "lobby").await;
    let bob = Client::in_room(&server, "bob", "lobby").await;
    let mut a = Editor::open(&server, &path("lobby", "notes", &alice.session)).await.unwrap();
    let mut b = Editor::open(&server, &path("lobby", "notes", &bob.session)).await.unwrap();
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
    // Another document of the room is another document.
    let other = Editor::open(&server, &path("lobby", "todo", &bob.session)).await.unwrap();
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
    let closed = loop {
        if let Err(closed) = a.read().await {
            break closed;
        }
    };
    assert_eq!(closed, (4400, "not a Yjs sync or awareness message".to_owned()));
    let mut again = Editor::open(&server, &path("lobby", "notes", &alice.session)).await.unwrap();
    again.until("kept").await;
    // Alice leaves the room: her document closes, and stays closed to her.
    let mut alice = alice;
    alice.send(serde_json::json!({"type": "leave", "room": "lobby"})).await;
    let closed = loop {
        if let Err(closed) = again.read().await {
            break closed;
        }
    };
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
    let closed = loop {
        if let Err(closed) = d.read().await {
            break closed;
        }
    };
    assert_eq!(closed, (4413, format!("a frame larger than {} bytes", 256 * 1024 + 64)));
    // Edits that would take the document past --doc-max-bytes: refused.
    for n in 0..3 {
        a.insert(0, &"z".repeat(200 * 1024)).await;
        if n < 1 {
            b.until(&format!("{}{paste}", "z".repeat(200 * 1024))).await;
        }
    }
    let closed = loop {
        if let Err(closed) = a.read().await {
            break closed;
        }
    };
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
