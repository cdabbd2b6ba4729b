//! The real `chat-server` binary: it prints where it listens, serves the
//! page and the health check, and SIGTERM closes connections with 1012 and
//! exits 0.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::Duration;

use chat_test_support::{Proc, server_command, start_server};
use chat_transport::tungstenite::{self, Message};

/// Starts the server; its address.
fn start(command: &mut Command) -> (Proc, String) {
    let (server, base) = start_server(command);
    (server, base.trim_start_matches("http://").to_owned())
}

#[test]
fn serves_the_page_and_stops_cleanly_on_sigterm() {
    let mut command = server_command();
    command.args(["--listen", "127.0.0.1:0", "--log-format", "json", "--ephemeral"]);
    let (mut server, addr) = start(&mut command);

    let get = |path: &str| -> String {
        let mut stream = TcpStream::connect(&addr).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        write!(stream, "GET {path} HTTP/1.1\r\nHost: {addr}\r\n\r\n").unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        response
    };
    let page = get("/");
    assert!(page.starts_with("HTTP/1.1 200 OK"), "{page}");
    assert!(page.contains("Content-Security-Policy: default-src 'self'"), "{page}");
    assert!(page.contains("<script type=\"module\" src=\"/js/main.js\">"), "{page}");
    assert!(get("/js/connection.js").contains("new WebSocket("));
    assert!(get("/healthz").ends_with("\r\n\r\nok\n"));

    let stream = TcpStream::connect(&addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let (mut socket, response) = tungstenite::client(format!("ws://{addr}/ws"), stream).unwrap();
    assert_eq!(response.status(), 101);
    socket.send(Message::text(r#"{"type":"hello","nick":"term"}"#)).unwrap();
    assert!(socket.read().unwrap().to_text().unwrap().contains("welcome"));

    let pid = server.child.id().to_string();
    let status = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    assert!(status.success());
    let close = loop {
        match socket.read() {
            Ok(Message::Close(frame)) => break frame,
            Ok(_) => {}
            Err(err) => panic!("no close frame: {err}"),
        }
    };
    let close = close.expect("a close frame");
    assert_eq!(u16::from(close.code), 1012);
    assert!(chat_protocol::retry_after(&close.reason).is_some_and(|ms| ms <= 10_000), "{close}");
    let status = server.child.wait().unwrap();
    assert!(status.success(), "{status:?}");
    // The process is gone: its stderr has ended.
    let logs = server.stderr.iter().collect::<Vec<_>>().join("\n");
    for line in logs.lines() {
        let value: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{line}: {e}"));
        assert!(value["level"].is_string(), "{line}");
    }
    assert!(logs.contains("shutting down"), "{logs}");
}

#[test]
fn a_config_file_sets_what_flags_and_environment_do_not() {
    let dir = std::env::temp_dir().join(format!("chat-config-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("chat.toml");
    std::fs::write(
        &config,
        "listen = \"127.0.0.1:0\"\nephemeral = true\nmessages-per-sec = 3\nframes-per-sec = 77\n\
         joins_per_sec = 6\n",
    )
    .unwrap();
    let mut command = server_command();
    command.arg("--config").arg(&config).args(["--frames-per-sec", "88"]);
    let (server, addr) = start(command.env("CHAT_MESSAGES_PER_SEC", "4"));
    let stream = TcpStream::connect(&addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let (mut socket, _) = tungstenite::client(format!("ws://{addr}/ws"), stream).unwrap();
    socket.send(Message::text(r#"{"type":"hello","nick":"cfg"}"#)).unwrap();
    let welcome: serde_json::Value =
        serde_json::from_str(socket.read().unwrap().to_text().unwrap()).unwrap();
    let limits = &welcome["limits"];
    assert_eq!(limits["joins_per_sec"], 6, "from the file: {welcome}");
    assert_eq!(limits["messages_per_sec"], 4, "the environment beats the file: {welcome}");
    assert_eq!(limits["frames_per_sec"], 88, "the command line beats both: {welcome}");
    drop(server);

    std::fs::write(&config, "no_such_setting = 1\n").unwrap();
    let output = server_command().arg("--config").arg(&config).output().unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("no_such_setting"), "{output:?}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn json_logs_have_stable_fields_and_never_hold_secrets_tokens_or_texts() {
    let secret = "a-secret-of-at-least-thirty-two-bytes-for-hs256";
    let token = server_command()
        .args(["--auth-secret", secret, "token", "--nick", "alice"])
        .output()
        .unwrap();
    assert!(token.status.success(), "{token:?}");
    let token = String::from_utf8(token.stdout).unwrap().trim().to_owned();
    let mut command = server_command();
    command.args(["--listen", "127.0.0.1:0", "--ephemeral", "--log-format", "json"]);
    command.args(["--auth-secret", secret, "--metrics-token", "metrics-secret-7"]);
    command.args(["--stats-token", "stats-secret-9", "--log", "info"]);
    let (mut server, addr) = start(&mut command);

    let stream = TcpStream::connect(&addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let (mut socket, _) = tungstenite::client(format!("ws://{addr}/ws"), stream).unwrap();
    let hello = serde_json::json!({"type": "hello", "nick": "alice", "token": token});
    socket.send(Message::text(hello.to_string())).unwrap();
    let welcome: serde_json::Value =
        serde_json::from_str(socket.read().unwrap().to_text().unwrap()).unwrap();
    let session = welcome["session"].as_str().unwrap().to_owned();
    let text = "a message text that stays out of the logs";
    socket.send(Message::text(r#"{"type":"join","room":"lobby"}"#)).unwrap();
    let say = serde_json::json!({"type": "say", "room": "lobby", "text": text});
    socket.send(Message::text(say.to_string())).unwrap();
    while !socket.read().unwrap().to_text().unwrap().contains(text) {}
    // A page of another site, refused.
    let mut foreign = TcpStream::connect(&addr).unwrap();
    write!(
        foreign,
        "GET /ws HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
         Origin: https://evil.example\r\n\r\n"
    )
    .unwrap();
    let mut answer = String::new();
    foreign.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 403"), "{answer}");
    // (The server waits for the client to close before it counts and logs
    // a refusal.)
    drop(foreign);
    // A hello with a forged token: refused, logged, counted.
    let stream = TcpStream::connect(&addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let (mut forger, _) = tungstenite::client(format!("ws://{addr}/ws"), stream).unwrap();
    let forged = serde_json::json!({"type": "hello", "nick": "mallory", "token": "x.y.z"});
    forger.send(Message::text(forged.to_string())).unwrap();
    assert!(forger.read().unwrap().to_text().unwrap().contains("unauthorized"));
    let mut scrape = TcpStream::connect(&addr).unwrap();
    write!(
        scrape,
        "GET /metrics HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer metrics-secret-7\r\n\r\n"
    )
    .unwrap();
    let mut metrics = String::new();
    scrape.read_to_string(&mut metrics).unwrap();
    assert!(metrics.contains("chat_connections_refused_total{reason=\"auth\"} 1\n"), "{metrics}");
    let goodbye = tungstenite::protocol::CloseFrame {
        code: tungstenite::protocol::frame::coding::CloseCode::Normal,
        reason: "bye".into(),
    };
    socket.close(Some(goodbye)).unwrap();
    while socket.read().is_ok() {}

    let pid = server.child.id().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    assert!(server.child.wait().unwrap().success());
    // The process is gone: its stderr has ended.
    let logs: Vec<serde_json::Value> = server
        .stderr
        .iter()
        .map(|line| serde_json::from_str(&line).unwrap_or_else(|e| panic!("{line}: {e}")))
        .collect();
    for line in &logs {
        for field in ["time", "level", "target", "message"] {
            assert!(line[field].is_string(), "{field} in {line}");
        }
        let text_of_line = line.to_string();
        for kept in
            [secret, token.as_str(), session.as_str(), text, "metrics-secret-7", "stats-secret-9"]
        {
            assert!(!text_of_line.contains(kept), "{kept:?} logged: {line}");
        }
    }
    let find = |message: &str| {
        logs.iter()
            .find(|line| line["message"] == message)
            .unwrap_or_else(|| panic!("no {message}: {logs:?}"))
    };
    let connected = find("connected");
    assert_eq!(connected["transport"], "websocket");
    assert!(connected["member"].is_string() && connected["peer"].is_string(), "{connected}");
    let refused = find("refused a connection");
    assert_eq!(refused["reason"], "origin");
    assert!(refused["peer"].as_str().unwrap().starts_with("127.0.0.1:"), "{refused}");
    assert_eq!(find("refused an access token")["reason"], "auth");
    let gone = find("disconnected");
    assert_eq!((gone["code"].as_str(), &gone["member"]), (Some("1000"), &connected["member"]));
}
