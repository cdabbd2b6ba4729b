//! Chaos on the real binary: 20 clients in 3 rooms send messages with ids
//! while the server is killed with SIGKILL twice and restarted on the same
//! data directory. Every acknowledged message must survive exactly once, in
//! one order that every member agrees on, with no seq reused.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use chat_test_support::{Proc, server_command, start_server};
use chat_transport::tungstenite::Message;
use chat_transport::{TransportConfig, WebSocket, connect};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::sync::{Mutex, watch};

const CLIENTS: usize = 20;
const ROOMS: [&str; 3] = ["alpha", "beta", "gamma"];
const PER_CLIENT: usize = 15;
/// Messages a client may have sent and not seen acknowledged.
const WINDOW: usize = 3;
const WAIT: Duration = Duration::from_secs(20);

/// Everything anyone saw: (room, seq) to (from, text).
type Seen = Arc<Mutex<BTreeMap<(String, u64), (String, String)>>>;

/// Starts the server on `dir`, listening on `listen`; its address.
fn start(dir: &std::path::Path, listen: &str) -> (Proc, String) {
    let mut command = server_command();
    command.args(["--listen", listen, "--data-dir"]).arg(dir).env("RUST_LOG", "warn");
    let (server, base) = start_server(&mut command);
    (server, base.trim_start_matches("http://").to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_messages_survive_kill_9_exactly_once_in_one_order() {
    let dir = tempfile::tempdir().unwrap();
    let (mut server, addr) = start(dir.path(), "127.0.0.1:0");
    let url = format!("ws://{addr}/ws");
    // Bumped each time a server is up, so clients wait for it instead of
    // spinning on refused connections.
    let (epoch_tx, epoch_rx) = watch::channel(0u64);
    // How many messages are acknowledged so far, for the chaos to wait on.
    let (acked_tx, acked_rx) = watch::channel(0usize);
    let acked = Arc::new(acked_tx);
    let seen: Seen = Arc::default();
    let mut clients = Vec::new();
    for c in 0..CLIENTS {
        let (url, epoch, acked, seen) =
            (url.clone(), epoch_rx.clone(), Arc::clone(&acked), Arc::clone(&seen));
        clients.push(tokio::spawn(async move { run_client(c, url, epoch, acked, seen).await }));
    }
    let total = CLIENTS * PER_CLIENT;
    for kill_at in [total / 3, 2 * total / 3] {
        let mut progress = acked_rx.clone();
        let reached =
            tokio::time::timeout(WAIT, progress.wait_for(|&acked| acked >= kill_at)).await;
        assert!(matches!(reached, Ok(Ok(_))), "clients stalled before {kill_at} acknowledgements");
        // SIGKILL: no shutdown, no flush, whatever the server was doing.
        server.child.kill().unwrap();
        server.child.wait().unwrap();
        let (restarted, again) = start(dir.path(), &addr);
        assert_eq!(again, addr);
        server = restarted;
        epoch_tx.send_modify(|epoch| *epoch += 1);
    }
    let mut results = Vec::new();
    for client in clients {
        results.push(
            tokio::time::timeout(Duration::from_secs(120), client)
                .await
                .expect("client done")
                .unwrap(),
        );
    }

    // One final reading of every room, through history, from a fresh client.
    let mut reader = Session::open(&url, "reader", None).await.unwrap();
    let mut finals = BTreeMap::new();
    for room in ROOMS {
        finals.insert(room.to_owned(), reader.full_history(room).await);
    }
    let seen = seen.lock().await;
    for (room, history) in &finals {
        let seqs: Vec<u64> = history.keys().copied().collect();
        assert_eq!(seqs, (1..=seqs.len() as u64).collect::<Vec<_>>(), "{room}: no holes, no reuse");
        for (seq, entry) in history {
            if let Some(earlier) = seen.get(&(room.clone(), *seq)) {
                assert_eq!(earlier, entry, "{room}#{seq} was shown as something else before");
            }
        }
        let texts: Vec<&String> = history.values().map(|(_, text)| text).collect();
        let unique: BTreeSet<&&String> = texts.iter().collect();
        assert_eq!(unique.len(), texts.len(), "{room}: a message stored twice");
    }
    let mut acknowledged = 0;
    for acks in results {
        for (id, (room, seq, nick)) in acks {
            let stored = finals[&room].get(&seq);
            assert_eq!(stored, Some(&(nick, id.clone())), "acknowledged {id} lost or moved");
            acknowledged += 1;
        }
    }
    assert_eq!(acknowledged, total, "every message was acknowledged in the end");
    drop(server);
}

/// One client: keeps sending its messages, reconnecting and resuming
/// across crashes, re-sending unacknowledged ones with their ids. Returns
/// id -> (room, seq, nick) as acknowledged.
async fn run_client(
    c: usize,
    url: String,
    mut epoch: watch::Receiver<u64>,
    acked: Arc<watch::Sender<usize>>,
    seen: Seen,
) -> BTreeMap<String, (String, u64, String)> {
    let nick = format!("c{c}");
    let rooms: Vec<&str> = vec![ROOMS[c % 3], ROOMS[(c + 1) % 3]];
    let mut token: Option<String> = None;
    let mut last: BTreeMap<String, u64> = BTreeMap::new();
    let mut pending: BTreeMap<String, String> = BTreeMap::new(); // id -> room
    let mut done: BTreeMap<String, (String, u64, String)> = BTreeMap::new();
    let mut next = 0;
    while done.len() < PER_CLIENT {
        let session = match Session::open(&url, &nick, token.clone()).await {
            Ok(session) => session,
            Err(_) => {
                // The server is down: wait for the next one.
                let _ = tokio::time::timeout(WAIT, epoch.changed()).await;
                continue;
            }
        };
        let mut s = session;
        token = Some(s.token.clone());
        let result: Result<(), String> = async {
            for room in &rooms {
                let after = last.get(*room).copied();
                let joined =
                    s.request(json!({"type": "join", "room": room, "after": after})).await?;
                if after.is_some() {
                    assert_eq!(
                        joined["resume"], "resumed",
                        "{nick}: durable storage leaves no gap"
                    );
                }
                for m in joined["history"].as_array().cloned().unwrap_or_default() {
                    observe(&seen, &m).await;
                    let seq = m["seq"].as_u64().unwrap_or(0);
                    let entry = last.entry(room.to_string()).or_insert(0);
                    *entry = (*entry).max(seq);
                }
                let entry = last.entry(room.to_string()).or_insert(0);
                *entry = (*entry).max(joined["last_seq"].as_u64().unwrap_or(0));
            }
            for (id, room) in pending.clone() {
                s.send(json!({"type": "say", "room": room, "text": id, "id": id})).await?;
            }
            loop {
                while pending.len() < WINDOW && next < PER_CLIENT {
                    let id = format!("{nick}-{next}");
                    let room = rooms[next % rooms.len()].to_owned();
                    next += 1;
                    // Pending before sending: a send that fails is retried.
                    pending.insert(id.clone(), room.clone());
                    s.send(json!({"type": "say", "room": room, "text": id, "id": id})).await?;
                }
                if pending.is_empty() {
                    return Ok(());
                }
                let frame = s.recv().await?;
                match frame["type"].as_str() {
                    Some("message") => {
                        observe(&seen, &frame).await;
                        let room = frame["room"].as_str().unwrap_or_default().to_owned();
                        let seq = frame["seq"].as_u64().unwrap_or(0);
                        let entry = last.entry(room.clone()).or_insert(0);
                        *entry = (*entry).max(seq);
                        let id = frame["id"].as_str().unwrap_or_default().to_owned();
                        if frame["from"] == nick.as_str() && pending.remove(&id).is_some() {
                            let place = (room, seq, nick.clone());
                            let first = done.entry(id.clone()).or_insert(place.clone());
                            assert_eq!(*first, place, "{id} acknowledged twice differently");
                            acked.send_modify(|acked| *acked += 1);
                        }
                    }
                    Some("error") => panic!("{nick}: refused: {frame}"),
                    _ => {}
                }
            }
        }
        .await;
        // An error means the server died: the loop reconnects and resumes.
        if result.is_ok() {
            assert_eq!(done.len(), PER_CLIENT, "{nick}: finished with messages unaccounted for");
            let _ = s.socket.close(None).await;
        }
    }
    done
}

async fn observe(seen: &Seen, m: &Value) {
    let key = (m["room"].as_str().unwrap_or_default().to_owned(), m["seq"].as_u64().unwrap_or(0));
    let entry = (
        m["from"].as_str().unwrap_or_default().to_owned(),
        m["text"].as_str().unwrap_or_default().to_owned(),
    );
    let mut seen = seen.lock().await;
    let first = seen.entry(key.clone()).or_insert(entry.clone());
    assert_eq!(*first, entry, "{key:?} shown as two different messages: seq reused");
}

struct Session {
    socket: WebSocket,
    token: String,
    next_id: u64,
}

impl Session {
    async fn open(url: &str, nick: &str, token: Option<String>) -> Result<Self, String> {
        let config = TransportConfig { max_message_bytes: 64 << 20, ..TransportConfig::default() };
        let socket = connect(url, Some("chat.v1"), &config).await.map_err(|e| e.to_string())?;
        let mut session = Self { socket, token: String::new(), next_id: 0 };
        let welcome =
            session.request(json!({"type": "hello", "nick": nick, "session": token})).await?;
        if welcome["type"] != "welcome" {
            return Err(format!("no welcome: {welcome}"));
        }
        session.token = welcome["session"].as_str().unwrap_or_default().to_owned();
        Ok(session)
    }

    async fn send(&mut self, frame: Value) -> Result<(), String> {
        self.socket.send(Message::text(frame.to_string())).await.map_err(|e| e.to_string())
    }

    async fn recv(&mut self) -> Result<Value, String> {
        loop {
            match tokio::time::timeout(WAIT, self.socket.next()).await {
                Err(_) => return Err("no frame in time".to_owned()),
                Ok(Some(Ok(Message::Text(text)))) => {
                    return serde_json::from_str(&text).map_err(|e| e.to_string());
                }
                Ok(Some(Ok(Message::Close(_)))) | Ok(None) => return Err("closed".to_owned()),
                Ok(Some(Err(err))) => return Err(err.to_string()),
                Ok(Some(Ok(_))) => {}
            }
        }
    }

    /// Sends a frame with a fresh id and returns the answer carrying it.
    async fn request(&mut self, mut frame: Value) -> Result<Value, String> {
        self.next_id += 1;
        let id = format!("req-{}", self.next_id);
        frame["id"] = json!(id);
        self.send(frame).await?;
        loop {
            let answer = self.recv().await?;
            if answer["id"] == id.as_str() {
                return Ok(answer);
            }
        }
    }

    /// Every stored message of a room, by joining and paging back.
    async fn full_history(&mut self, room: &str) -> BTreeMap<u64, (String, String)> {
        let joined = self.request(json!({"type": "join", "room": room})).await.unwrap();
        let mut history = BTreeMap::new();
        let mut add = |messages: &Value| -> Option<u64> {
            let mut lowest = None;
            for m in messages.as_array().cloned().unwrap_or_default() {
                let seq = m["seq"].as_u64().unwrap();
                let entry = (
                    m["from"].as_str().unwrap().to_owned(),
                    m["text"].as_str().unwrap().to_owned(),
                );
                history.insert(seq, entry);
                lowest = Some(lowest.map_or(seq, |l: u64| l.min(seq)));
            }
            lowest
        };
        let mut before = add(&joined["history"]);
        while let Some(first) = before.filter(|&first| first > 1) {
            let page = self
                .request(json!({"type": "history", "room": room, "before": first, "limit": 200}))
                .await
                .unwrap();
            before = add(&page["messages"]);
        }
        history
    }
}
