//! Cluster mode as an operator runs it: real `chat-server` processes on one
//! real `redis-server`, set up with `--redis`, `CHAT_REDIS` or the config
//! file's `redis`, each telling which node it is; `/healthz` says when a
//! node cannot reach Redis, and the chat goes on when it can again.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use chat_test_support::{Proc, Redis, WAIT, server_command, start_server};
use chat_transport::tungstenite::{self, Message, WebSocket};
use serde_json::{Value, json};

/// A `chat-server` process of a cluster, with a data directory of its own.
struct Node {
    _proc: Proc,
    addr: String,
    dir: PathBuf,
}

impl Node {
    fn start(name: &str, configure: impl FnOnce(&mut Command, &PathBuf)) -> Self {
        let dir = std::env::temp_dir().join(format!("chat-node-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut command = server_command();
        command.args(["--listen", "127.0.0.1:0"]).arg("--data-dir").arg(&dir);
        configure(&mut command, &dir);
        let (proc, base) = start_server(&mut command);
        Self { _proc: proc, addr: base.trim_start_matches("http://").to_owned(), dir }
    }

    /// `GET path`: the status code and the body.
    fn get(&self, path: &str) -> (u16, String) {
        let mut stream = TcpStream::connect(&self.addr).unwrap();
        stream.set_read_timeout(Some(WAIT)).unwrap();
        write!(stream, "GET {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n", self.addr)
            .unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        let status = response.get(9..12).and_then(|code| code.parse().ok()).unwrap_or(0);
        let body = response.split_once("\r\n\r\n").map(|(_, body)| body.to_owned());
        (status, body.unwrap_or_default())
    }

    /// Waits until `/healthz` answers `status`; its body.
    fn health_becomes(&self, status: u16) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            let (now, body) = self.get("/healthz");
            if now == status {
                return body;
            }
            assert!(Instant::now() < deadline, "/healthz stayed {now} {body:?}, not {status}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn client(&self, nick: &str) -> Client {
        let stream = TcpStream::connect(&self.addr).unwrap();
        stream.set_read_timeout(Some(WAIT)).unwrap();
        let (socket, _) = tungstenite::client(format!("ws://{}/ws", self.addr), stream).unwrap();
        let mut client = Client { socket, welcome: Value::Null };
        client.send(json!({"type": "hello", "nick": nick}));
        client.welcome = client.expect("welcome");
        client
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

struct Client {
    socket: WebSocket<TcpStream>,
    welcome: Value,
}

impl Client {
    fn send(&mut self, frame: Value) {
        self.socket.send(Message::text(frame.to_string())).unwrap();
    }

    /// The next frame of `kind`, skipping others.
    fn expect(&mut self, kind: &str) -> Value {
        loop {
            let message = self.socket.read().unwrap_or_else(|e| panic!("waiting for {kind}: {e}"));
            let Ok(text) = message.to_text() else { continue };
            let Ok(frame) = serde_json::from_str::<Value>(text) else { continue };
            if frame["type"] == kind {
                return frame;
            }
        }
    }
}

#[test]
fn nodes_set_up_by_flag_environment_or_file_share_rooms_and_say_when_redis_is_away() {
    let mut redis = Redis::start_with(&["--appendonly", "yes", "--appendfsync", "always"]);
    let url = redis.url();
    let a = Node::start("a", |command, _| {
        command.env("CHAT_REDIS", &url).args(["--node-id", "a"]);
    });
    let b = Node::start("b", |command, dir| {
        let file = dir.join("chat.toml");
        std::fs::write(&file, format!("redis = \"{url}\"\nnode-id = \"b\"\n")).unwrap();
        command.arg("--config").arg(file);
    });

    let mut ann = a.client("ann");
    let mut bob = b.client("bob");
    assert_eq!(ann.welcome["server"]["node"], "a", "{}", ann.welcome);
    assert_eq!(bob.welcome["server"]["node"], "b", "{}", bob.welcome);
    for client in [&mut ann, &mut bob] {
        client.send(json!({"type": "join", "room": "lobby"}));
        client.expect("joined");
    }
    ann.send(json!({"type": "say", "room": "lobby", "text": "hello from a", "id": "1"}));
    assert_eq!(ann.expect("message")["seq"], 1, "the echo, once Redis has it");
    let heard = bob.expect("message");
    assert_eq!((heard["text"].as_str(), heard["seq"].as_u64()), (Some("hello from a"), Some(1)));
    assert_eq!(a.get("/healthz"), (200, "ok\n".to_owned()));
    assert_eq!(b.get("/healthz").0, 200);
    assert_eq!(a.get("/readyz"), (200, "ready\n".to_owned()));

    // Redis goes away: both nodes stay up and say why they are unhealthy,
    // and a send is refused for now rather than lost.
    redis.kill();
    for node in [&a, &b] {
        let body = node.health_becomes(503);
        assert!(body.starts_with("redis unavailable: "), "{body:?}");
    }
    bob.send(json!({"type": "say", "room": "lobby", "text": "while away", "id": "2"}));
    let refused = bob.expect("error");
    assert_eq!(refused["code"], "unavailable", "{refused}");
    assert_eq!(refused["id"], "2");
    assert!(refused["retry_after_ms"].as_u64().is_some(), "{refused}");
    assert_eq!(a.get("/").0, 200, "the page is still served");
    // Not ready (a balancer should prefer a node that reaches Redis), but
    // alive (restarting it would not mend Redis).
    let (status, body) = a.get("/readyz");
    assert_eq!(status, 503);
    assert!(body.starts_with("not ready: redis unavailable: "), "{body:?}");
    assert_eq!(a.get("/livez"), (200, "ok\n".to_owned()));

    // Back: healthy again, and the chat goes on where it was.
    redis.restart();
    a.health_becomes(200);
    b.health_becomes(200);
    assert_eq!(a.get("/readyz"), (200, "ready\n".to_owned()));
    bob.send(json!({"type": "say", "room": "lobby", "text": "while away", "id": "2"}));
    let heard = ann.expect("message");
    assert_eq!((heard["text"].as_str(), heard["seq"].as_u64()), (Some("while away"), Some(2)));
}
