//! The real `chat` binary against the real `chat-server` binary, over pipes.

use std::process::Command;

use chat_test_support::*;

#[test]
fn two_clients_chat_over_the_real_server() {
    let (_server, url) = server();
    let mut bob = chat(&url, &["--nick", "bob"]);
    bob.expect_where(|l| l.starts_with("-- connected to chat-server"), "connected");
    bob.expect("[lobby] -- joined (1 members: bob)");
    let mut alice = chat(&url, &["--nick", "alice"]);
    alice.expect("[lobby] -- joined (2 members: alice, bob)");
    bob.expect("[lobby] -- alice joined");

    alice.type_line("hi bob");
    alice.expect("[lobby] <alice> hi bob");
    bob.expect("[lobby] <alice> hi bob");
    bob.type_line("/me waves");
    alice.expect("[lobby] * bob waves");
    bob.type_line("/msg alice a secret");
    alice.expect("[dm] <bob> a secret");
    bob.expect("[dm to alice] <bob> a secret");
    alice.type_line("/nick alicia");
    alice.expect("-- you are now known as alicia");
    bob.expect("[lobby] -- alice is now known as alicia");
    alice.type_line("/who");
    alice.expect("[lobby] -- members: alicia, bob");
    alice.type_line("/join dev");
    alice.expect("[dev] -- joined (1 members: alicia)");
    alice.type_line("only in dev");
    alice.expect("[dev] <alicia> only in dev");
    alice.type_line("/rooms");
    alice.expect("-- rooms: dev (1), lobby (2)");
    alice.type_line("/join Not Valid");
    let error = alice.expect_stderr("error: invalid_room:");
    assert!(error.starts_with("error: invalid_room: "), "{error}");
    alice.type_line("/quit");
    assert!(!alice.finish().success(), "the refused /join makes the exit non-zero");
    bob.expect("[lobby] -- alicia left");
    // bob never saw the dev message.
    assert!(!bob.seen.iter().any(|l| l.contains("only in dev")), "{:#?}", bob.seen);
    assert!(bob.finish().success());
}

#[test]
fn piped_input_is_delivered_before_exit() {
    let (_server, url) = server();
    let mut bob = chat(&url, &["--nick", "bob"]);
    bob.expect("[lobby] -- joined (1 members: bob)");
    let output =
        chat_with_input(&url, &["--nick", "piper"], "first line\nsecond line\n/me is done\n");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{output:?}");
    assert!(stdout.contains("[lobby] <piper> second line"), "{stdout}");
    bob.expect("[lobby] <piper> first line");
    bob.expect("[lobby] <piper> second line");
    bob.expect("[lobby] * piper is done");
    bob.expect("[lobby] -- piper left");
}

#[test]
fn json_mode_prints_one_frame_per_line() {
    let (_server, url) = server();
    let output = chat_with_input(&url, &["--nick", "jay", "--json"], "hello json\n");
    assert!(output.status.success(), "{output:?}");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let types: Vec<String> = stdout
        .lines()
        .map(|line| {
            let value: serde_json::Value =
                serde_json::from_str(line).unwrap_or_else(|e| panic!("{line}: {e}"));
            value["type"].as_str().unwrap().to_owned()
        })
        .collect();
    // The conversation list the session asks for once caught up comes
    // whenever the server answers it.
    let listed = types.iter().filter(|kind| *kind == "conversations").count();
    let rest: Vec<&str> =
        types.iter().map(String::as_str).filter(|kind| *kind != "conversations").collect();
    assert_eq!((rest, listed), (vec!["welcome", "joined", "message"], 1), "{types:?}");
}

#[test]
fn a_taken_nick_is_an_error_exit() {
    let (_server, url) = server();
    let mut bob = chat(&url, &["--nick", "bob"]);
    bob.expect("[lobby] -- joined (1 members: bob)");
    let output = chat_with_input(&url, &["--nick", "BOB"], "");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("error: nick_taken: "), "{stderr}");
}

#[test]
fn an_invalid_first_room_is_an_error_exit() {
    let (_server, url) = server();
    let output = chat_with_input(&url, &["--nick", "x", "--room", "Not Valid"], "hello\n");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("error: invalid_room: "), "{stderr}");
}

#[test]
fn a_refused_upgrade_prints_the_status() {
    let (_server, url) = server();
    let output = chat_with_input(&url.replace("/ws", "/nope"), &["--nick", "x"], "");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("error: server answered 404 Not Found"), "{stderr}");
}

#[test]
fn an_unreachable_server_is_an_error_exit() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let output = chat_with_input(&format!("ws://{addr}/ws"), &[], "");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("error: cannot connect to"), "{stderr}");
    // The cause once, not twice.
    let cause = stderr.trim_end().rsplit(": ").next().unwrap_or_default();
    assert_eq!(stderr.matches(cause).count(), 1, "{stderr}");
}

#[test]
fn line_mode_exits_non_zero_when_a_command_was_refused() {
    let (_server, url) = server();
    let output = chat_with_input(&url, &["--nick", "ok"], "/join dev\nfine\n");
    assert!(output.status.success(), "{output:?}");
    let output = chat_with_input(&url, &["--nick", "jo"], "/join Not_Valid\nstill said\n");
    assert!(!output.status.success(), "a refused /join: {output:?}");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stdout.contains("[lobby] <jo> still said"), "the rest went on: {stdout}");
    assert!(stderr.contains("error: invalid_room: "), "{stderr}");
    assert!(stderr.contains("error: 1 command(s) refused"), "{stderr}");
}

/// A TCP proxy between a client and the server whose connections the test
/// can cut, and which can refuse new ones for a while: a network that
/// fails, made of real sockets.
struct Proxy {
    addr: std::net::SocketAddr,
    state: std::sync::Arc<std::sync::Mutex<ProxyState>>,
}

#[derive(Default)]
struct ProxyState {
    refusing: bool,
    live: Vec<std::net::TcpStream>,
    /// Where new connections go (a load balancer's choice of node).
    upstream: String,
}

impl Proxy {
    fn start(upstream: &str) -> Self {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let state = ProxyState { upstream: upstream.to_owned(), ..ProxyState::default() };
        let state = std::sync::Arc::new(std::sync::Mutex::new(state));
        let shared = std::sync::Arc::clone(&state);
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                let mut state = shared.lock().unwrap();
                if state.refusing {
                    continue; // dropped at once: the client's upgrade fails
                }
                let Ok(server) = std::net::TcpStream::connect(&state.upstream) else { continue };
                state.live.push(client.try_clone().unwrap());
                state.live.push(server.try_clone().unwrap());
                for (mut from, mut to) in
                    [(client.try_clone().unwrap(), server.try_clone().unwrap()), (server, client)]
                {
                    std::thread::spawn(move || {
                        let _ = std::io::copy(&mut from, &mut to);
                        let _ = to.shutdown(std::net::Shutdown::Both);
                    });
                }
            }
        });
        Self { addr, state }
    }

    fn url(&self) -> String {
        format!("ws://{}/ws", self.addr)
    }

    /// Breaks every connection through the proxy, like a network failure.
    fn cut(&self) {
        for stream in self.state.lock().unwrap().live.drain(..) {
            let _ = stream.shutdown(std::net::Shutdown::Both);
        }
    }

    fn refuse(&self, refusing: bool) {
        self.state.lock().unwrap().refusing = refusing;
    }

    /// Sends new connections to `upstream` from now on.
    fn route_to(&self, upstream: &str) {
        upstream.clone_into(&mut self.state.lock().unwrap().upstream);
    }
}

/// A `chat-server` node of a cluster on `redis`: the process, its address
/// and its data directory.
fn node(redis: &Redis, name: &str) -> (Proc, String, tempfile::TempDir) {
    let data = tempfile::tempdir().unwrap();
    let (node, base) = start_server(
        server_command()
            .args(["--listen", "127.0.0.1:0", "--redis", &redis.url(), "--node-id", name])
            .arg("--data-dir")
            .arg(data.path()),
    );
    (node, base.trim_start_matches("http://").to_owned(), data)
}

#[test]
fn behind_a_balancer_a_node_killed_outright_loses_its_clients_nothing() {
    let redis = Redis::start_with(&["--appendonly", "yes", "--appendfsync", "always"]);
    let (mut a, a_addr, _a_data) = node(&redis, "a");
    let (_b, b_addr, _b_data) = node(&redis, "b");
    // Alice reaches node a through a balancer; bob is on node b.
    let balancer = Proxy::start(&a_addr);
    let mut alice = chat(&balancer.url(), &["--nick", "alice"]);
    alice.expect("[lobby] -- joined (1 members: alice)");
    let mut bob = chat(&format!("ws://{b_addr}/ws"), &["--nick", "bob"]);
    bob.expect("[lobby] -- joined (2 members: alice, bob)");
    alice.expect("[lobby] -- bob joined");
    alice.type_line("before the crash");
    bob.expect("[lobby] <alice> before the crash");

    // Node a dies with no goodbye; the balancer sends her on to node b.
    balancer.refuse(true);
    let _ = a.child.kill();
    let _ = a.child.wait();
    balancer.route_to(&b_addr);
    balancer.cut();
    alice.expect_stderr("-- disconnected:");
    alice.type_line("typed while her node was dead");
    bob.type_line("while she was away");
    bob.expect("[lobby] <bob> while she was away");
    balancer.refuse(false);

    // Her session moved to node b: same nick, nothing missed, nothing twice.
    alice.expect("[lobby] <bob> while she was away");
    alice.expect("-- reconnected, resumed");
    alice.expect("[lobby] <alice> typed while her node was dead");
    bob.expect("[lobby] <alice> typed while her node was dead");
    bob.type_line("/who");
    bob.expect("[lobby] -- members: alice, bob");
    let seen = |lines: &[String], text: &str| lines.iter().filter(|l| l.as_str() == text).count();
    for (who, lines) in [("alice", &alice.seen), ("bob", &bob.seen)] {
        for text in [
            "[lobby] <alice> before the crash",
            "[lobby] <alice> typed while her node was dead",
            "[lobby] <bob> while she was away",
        ] {
            assert_eq!(seen(lines, text), 1, "{who} saw {text:?} once: {lines:#?}");
        }
    }
}

#[test]
fn the_client_reconnects_resumes_and_sends_what_was_typed_offline() {
    let (_server, url) = server();
    let upstream = url.trim_start_matches("ws://").trim_end_matches("/ws").to_owned();
    let proxy = Proxy::start(&upstream);
    let mut bob = chat(&url, &["--nick", "bob"]);
    bob.expect("[lobby] -- joined (1 members: bob)");
    let mut alice = chat(&proxy.url(), &["--nick", "alice"]);
    alice.expect("[lobby] -- joined (2 members: alice, bob)");
    bob.expect("[lobby] -- alice joined");

    // The network fails and stays down for a while.
    proxy.refuse(true);
    proxy.cut();
    alice.expect_stderr("-- disconnected:");
    bob.type_line("while you were away");
    bob.expect("[lobby] <bob> while you were away");
    alice.type_line("typed while offline");
    proxy.refuse(false);

    alice.expect("[lobby] <bob> while you were away");
    alice.expect("-- reconnected, resumed");
    alice.expect("[lobby] <alice> typed while offline");
    bob.expect("[lobby] <alice> typed while offline");
    // Nobody saw alice leave or come back, and nothing came twice.
    alice.type_line("/quit");
    assert!(alice.finish().success());
    bob.expect("[lobby] -- alice left");
    let seen = |lines: &[String], text: &str| lines.iter().filter(|l| l.as_str() == text).count();
    assert_eq!(seen(&bob.seen, "[lobby] <alice> typed while offline"), 1);
    assert_eq!(seen(&alice.seen, "[lobby] <alice> typed while offline"), 1);
    assert_eq!(seen(&alice.seen, "[lobby] <bob> while you were away"), 1);
    assert_eq!(seen(&bob.seen, "[lobby] -- alice left"), 1, "one leave, at the quit");
}

/// alice, through a proxy, is cut off while bob says `missed 1` to
/// `missed {n}`; then the network is back.
fn away_while_bob_says(url: &str, n: usize) -> (Proc, Proxy) {
    let upstream = url.trim_start_matches("ws://").trim_end_matches("/ws").to_owned();
    let proxy = Proxy::start(&upstream);
    let mut alice = chat(&proxy.url(), &["--nick", "alice"]);
    alice.expect("[lobby] -- joined (1 members: alice)");
    proxy.refuse(true);
    proxy.cut();
    alice.expect_stderr("-- disconnected:");
    let lines: String = (1..=n).map(|i| format!("missed {i}\n")).collect();
    let output = chat_with_input(url, &["--nick", "bob"], &lines);
    assert!(output.status.success(), "{output:?}");
    proxy.refuse(false);
    (alice, proxy)
}

#[test]
fn a_long_absence_is_caught_up_in_full_and_in_order() {
    let (_server, url) = server_with(&[
        "--messages-per-sec",
        "10000",
        "--messages-burst",
        "10000",
        "--frames-per-sec",
        "10000",
        "--frames-burst",
        "10000",
    ]);
    // More than one resume carries (200): the rest must be paged back.
    let (mut alice, _proxy) = away_while_bob_says(&url, 450);
    for i in 1..=450 {
        alice.expect(&format!("[lobby] <bob> missed {i}"));
    }
    alice.expect("-- reconnected, resumed");
    alice.type_line("/quit");
    assert!(alice.finish().success());
}

#[test]
fn an_absence_longer_than_the_server_keeps_is_a_gap_shown_where_it_is() {
    let (_server, url) = server_with(&["--history-max-per-room", "20"]);
    let (mut alice, _proxy) = away_while_bob_says(&url, 25);
    // The first 5 are gone: said once, before the 20 that are left.
    alice.expect("-- lobby: 5 messages (#1..#5) no longer kept by the server");
    for i in 6..=25 {
        alice.expect(&format!("[lobby] <bob> missed {i}"));
    }
    alice.expect("-- reconnected, gap of 5 messages");
    assert!(!alice.seen.iter().any(|line| line.ends_with("missed 5")), "{:?}", alice.seen);
    alice.type_line("/quit");
    assert!(alice.finish().success());
}

#[test]
fn a_piped_file_faster_than_the_rate_limit_is_paced_not_refused() {
    // Default limits: 10 messages a second, bursts of 30.
    let (_server, url) = server();
    let mut bob = chat(&url, &["--nick", "bob"]);
    bob.expect("[lobby] -- joined (1 members: bob)");
    let lines: String = (1..=45).map(|i| format!("line {i}\n")).collect();
    let output = chat_with_input(&url, &["--nick", "alice"], &lines);
    assert!(output.status.success(), "{output:?}");
    assert!(!String::from_utf8_lossy(&output.stderr).contains("refused"), "{output:?}");
    for i in 1..=45 {
        bob.expect(&format!("[lobby] <alice> line {i}"));
    }
}

#[test]
fn a_restarting_server_is_rejoined_after_the_delay_it_asked_for() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap().to_owned();
    let start = |listen: &str| {
        let (server, base) = start_server(server_command().args([
            "--listen",
            listen,
            "--data-dir",
            &data,
            "--drain-window",
            "1s",
        ]));
        (server, base.trim_start_matches("http://").to_owned())
    };
    let (server, addr) = start("127.0.0.1:0");
    let url = format!("ws://{addr}/ws");
    let mut alice = chat(&url, &["--nick", "alice"]);
    alice.expect("[lobby] -- joined (1 members: alice)");
    alice.type_line("before the restart");
    alice.expect("[lobby] <alice> before the restart");

    let status = Command::new("kill").args(["-TERM", &server.child.id().to_string()]).status();
    assert!(status.unwrap().success());
    let closed = alice.expect_stderr("-- server closed the connection: 1012");
    assert!(closed.contains("retry_ms="), "{closed}");
    let asked = alice.expect_stderr("reconnecting in");
    assert!(asked.contains("as it asked"), "{asked}");
    drop(server);
    // The same address again: the client reconnects to where it was.
    let (_server, _) = start(&addr);
    alice.expect_where(|line| line.starts_with("-- reconnected"), "the reconnect notice");
    alice.type_line("after the restart");
    alice.expect("[lobby] <alice> after the restart");
    let seen = alice.seen.iter().filter(|l| l.as_str() == "[lobby] <alice> before the restart");
    assert_eq!(seen.count(), 1, "nothing shown twice: {:#?}", alice.seen);
}

#[test]
fn with_authentication_on_the_token_from_chat_server_token_is_the_way_in() {
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("secret");
    std::fs::write(&secret, "an auth secret of at least thirty-two bytes\n").unwrap();
    let secret = secret.to_str().unwrap().to_owned();
    let (_server, url) = server_with(&["--auth-secret-file", &secret]);
    let token = server_command()
        .args(["token", "--nick", "alice", "--ttl", "1h", "--rooms", "lobby,team-*"])
        .args(["--auth-secret-file", &secret])
        .output()
        .unwrap();
    assert!(token.status.success(), "{token:?}");
    let token = String::from_utf8(token.stdout).unwrap().trim().to_owned();
    assert_eq!(token.split('.').count(), 3, "{token}");

    let mut alice = chat(&url, &["--token", &token]);
    alice.expect("-- connected to chat-server 0.1.0 as alice");
    alice.expect("[lobby] -- joined (1 members: alice)");
    alice.type_line("/join secret");
    alice.expect_stderr("forbidden");
    alice.type_line("/quit");
    assert!(!alice.finish().success(), "the refused /join makes the exit non-zero");

    // Without a token: a clear refusal and an error exit, no reconnect loop.
    let output = chat_with_input(&url, &["--nick", "mallory"], "");
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("unauthorized"), "{output:?}");
}

#[test]
fn over_tls_the_client_trusts_the_ca_it_is_given_or_nothing_unless_insecure() {
    let dir = tempfile::tempdir().unwrap();
    let made = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()]).unwrap();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert, made.cert.pem()).unwrap();
    std::fs::write(&key, made.signing_key.serialize_pem()).unwrap();
    let (cert, key) = (cert.to_str().unwrap(), key.to_str().unwrap());
    let (_server, base) = start_server(server_command().args([
        "--listen",
        "127.0.0.1:0",
        "--ephemeral",
        "--tls-cert",
        cert,
        "--tls-key",
        key,
    ]));
    assert!(base.starts_with("https://"), "{base}");
    let url = ws_url(&base);

    let mut bob = chat(&url, &["--nick", "bob", "--ca", cert]);
    bob.expect("[lobby] -- joined (1 members: bob)");
    let mut alice = chat(&url, &["--nick", "alice", "--insecure"]);
    alice.expect("[lobby] -- joined (2 members: alice, bob)");
    alice.type_line("over tls");
    bob.expect("[lobby] <alice> over tls");

    // Without being told whom to trust: a clear TLS error, an error exit.
    let output = chat_with_input(&url, &["--nick", "carol"], "");
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("TLS"), "{output:?}");
}

#[test]
fn a_self_signed_server_prints_its_fingerprint() {
    let mut server = Proc::spawn(server_command().args([
        "--listen",
        "127.0.0.1:0",
        "--ephemeral",
        "--tls-self-signed",
    ]));
    let line = server.expect_where(|line| line.contains("fingerprint"), "the fingerprint");
    let fingerprint = line.rsplit(' ').next().unwrap();
    assert_eq!(fingerprint.split(':').count(), 32, "{line}");
    assert!(fingerprint.split(':').all(|byte| byte.len() == 2), "{line}");
    let url = ws_url(&ready(&mut server));
    assert!(url.starts_with("wss://"), "{url}");
    let mut alice = chat(&url, &["--nick", "alice", "--insecure"]);
    alice.expect("[lobby] -- joined (1 members: alice)");
}

#[test]
fn chat_send_exits_0_once_acknowledged_and_non_zero_with_the_reason_otherwise() {
    let (_server, url) = server();
    let mut bob = chat(&url, &["--nick", "bob"]);
    bob.expect("[lobby] -- joined (1 members: bob)");
    let sent = chat_command()
        .args(["--server", &url, "send", "--nick", "ci", "--room", "lobby", "deploy finished"])
        .output()
        .unwrap();
    assert!(sent.status.success(), "{sent:?}");
    bob.expect("[lobby] <ci> deploy finished");

    let refused = chat_command()
        .args(["--server", &url, "send", "--room", "Not A Room!", "hello"])
        .output()
        .unwrap();
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("invalid_room"), "{refused:?}");

    let unreachable =
        chat_command().args(["--server", "ws://127.0.0.1:9/ws", "send", "hello"]).output().unwrap();
    assert!(!unreachable.status.success());
    assert!(
        String::from_utf8_lossy(&unreachable.stderr).contains("cannot connect"),
        "{unreachable:?}"
    );
}

#[test]
fn chat_tail_prints_history_then_follows_across_a_reconnect_without_repeats() {
    let (_server, url) = server();
    let send = |text: &str| {
        let sent = chat_command()
            .args(["--server", &url, "send", "--nick", "ci", "--room", "ops", text])
            .output()
            .unwrap();
        assert!(sent.status.success(), "{sent:?}");
    };
    send("one");
    send("two");
    let upstream = url.trim_start_matches("ws://").trim_end_matches("/ws").to_owned();
    let proxy = Proxy::start(&upstream);
    let mut tail =
        Proc::spawn(chat_command().args(["--server", &proxy.url(), "tail", "--room", "ops"]));
    tail.expect("[ops] <ci> one");
    tail.expect("[ops] <ci> two");
    send("three");
    tail.expect("[ops] <ci> three");
    // The network fails; a message goes out meanwhile; the tail resumes.
    proxy.refuse(true);
    proxy.cut();
    tail.expect_stderr("-- disconnected");
    send("four");
    proxy.refuse(false);
    tail.expect("[ops] <ci> four");
    send("five");
    tail.expect("[ops] <ci> five");
    for line in ["[ops] <ci> one", "[ops] <ci> two", "[ops] <ci> three", "[ops] <ci> four"] {
        assert_eq!(
            tail.seen.iter().filter(|l| l.as_str() == line).count(),
            1,
            "{line}: {:#?}",
            tail.seen
        );
    }
}

#[test]
fn json_mode_takes_raw_frames_in_with_their_own_ids() {
    let (_server, url) = server();
    let mut bob = chat(&url, &["--nick", "bob"]);
    bob.expect("[lobby] -- joined (1 members: bob)");
    let input = concat!(
        "{\"type\":\"say\",\"room\":\"lobby\",\"text\":\"raw hi\",\"id\":\"bot-1\"}\n",
        "{\"type\":\"launch\"}\n",
        "{\"type\":\"hello\",\"nick\":\"again\"}\n",
        "plain text too\n",
    );
    let output = chat_with_input(&url, &["--nick", "bot", "--json"], input);
    // Two lines were refused: the exit says so, the rest went.
    assert!(!output.status.success(), "{output:?}");
    assert!(String::from_utf8_lossy(&output.stderr).contains("2 command(s) refused"));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let frames: Vec<serde_json::Value> =
        stdout.lines().map(|line| serde_json::from_str(line).unwrap()).collect();
    let echo = frames.iter().find(|f| f["type"] == "message" && f["text"] == "raw hi");
    assert_eq!(echo.map(|f| f["id"].clone()), Some(serde_json::json!("bot-1")), "{stdout}");
    assert!(frames.iter().any(|f| f["text"] == "plain text too"), "{stdout}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("unknown_type"), "{stderr}");
    assert!(stderr.contains("says hello by itself"), "{stderr}");
    bob.expect("[lobby] <bot> raw hi");
    bob.expect("[lobby] <bot> plain text too");
}

#[test]
fn upload_and_download_a_file_from_the_terminal() {
    let (_server, url) = server();
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("notes for bob.txt");
    let content: Vec<u8> = (0..200_000u32).flat_map(|n| n.to_le_bytes()).collect();
    std::fs::write(&source, &content).unwrap();

    let mut alice = chat(&url, &["--nick", "alice"]);
    alice.expect("[lobby] -- joined (1 members: alice)");
    let mut bob = chat(&url, &["--nick", "bob"]);
    bob.expect("[lobby] -- joined (2 members: alice, bob)");
    let mut carol = chat(&url, &["--nick", "carol", "--room", "elsewhere"]);
    carol.expect("[elsewhere] -- joined (1 members: carol)");

    alice.type_line(&format!("/upload {}", source.display()));
    alice.expect_stderr("-- uploading notes for bob.txt (800.0 KB)");
    let line =
        bob.expect_where(|l| l.starts_with("[lobby] <alice> [file: notes for bob.txt"), "the file");
    assert!(line.contains("(800.0 KB), text/plain"), "{line}");
    let short = line.rsplit("/download ").next().unwrap().trim_end_matches(']').to_owned();
    assert_eq!(short.len(), 12, "{line}");

    let saved = dir.path().join("saved");
    std::fs::create_dir(&saved).unwrap();
    bob.type_line(&format!("/download {short} {}", saved.display()));
    let done = bob.expect_stderr("-- saved notes for bob.txt");
    assert!(done.contains(&saved.display().to_string()), "{done}");
    assert_eq!(std::fs::read(saved.join("notes for bob.txt")).unwrap(), content);
    // Again: a second copy, not over the first.
    bob.type_line(&format!("/download {short} {}", saved.display()));
    bob.expect_stderr("-- saved notes for bob.txt");
    assert_eq!(std::fs::read(saved.join("notes for bob (1).txt")).unwrap(), content);

    // Carol is not in the room: she has not seen the file, and a guess at
    // its id gets nothing.
    carol.type_line(&format!("/download {short}"));
    carol.expect_stderr("error: no file");
    alice.type_line("/upload /no/such/file");
    alice.expect_stderr("error: cannot read /no/such/file");
}

#[test]
fn a_connection_lost_during_an_upload_is_reconnected_not_fatal() {
    // Two frames a second, so sending the file takes seconds.
    let (_server, url) = server_with(&["--frames-per-sec", "2", "--frames-burst", "8"]);
    let upstream = url.trim_start_matches("ws://").trim_end_matches("/ws").to_owned();
    let proxy = Proxy::start(&upstream);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("big.bin");
    std::fs::write(&file, vec![7u8; 20 * 65536]).unwrap();
    let mut alice = chat(&proxy.url(), &["--nick", "alice"]);
    alice.expect("[lobby] -- joined (1 members: alice)");
    alice.type_line(&format!("/upload {}", file.display()));
    alice.expect_stderr("-- uploading big.bin");
    proxy.cut();
    alice.expect_stderr("-- disconnected:");
    alice.expect("-- reconnected, resumed");
    alice.type_line("still here");
    alice.expect("[lobby] <alice> still here");
}

#[test]
fn chat_doc_put_replaces_a_shared_document_and_get_prints_it_for_scripts() {
    use std::io::Write as _;
    let (_server, url) = server();
    let put = |text: &str| {
        let mut child = chat_command()
            .args(["--server", &url, "doc", "put", "lobby", "notes"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
        child.wait_with_output().unwrap()
    };
    let get = |name: &str| {
        chat_command().args(["--server", &url, "doc", "get", "lobby", name]).output().unwrap()
    };
    let empty = get("notes");
    assert!(empty.status.success(), "{empty:?}");
    assert_eq!(String::from_utf8_lossy(&empty.stdout), "");
    let written = put("hello wörld\nline two\n");
    assert!(written.status.success(), "{written:?}");
    let read = get("notes");
    assert_eq!(String::from_utf8_lossy(&read.stdout), "hello wörld\nline two\n", "{read:?}");
    // Replaced again: the document holds the new text, once.
    assert!(put("hello there wörld\n").status.success());
    assert_eq!(String::from_utf8_lossy(&get("notes").stdout), "hello there wörld\n");
    // Another document of the room is another document.
    assert_eq!(String::from_utf8_lossy(&get("todo").stdout), "");
    let refused = get("Not A Name");
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("invalid_doc"), "{refused:?}");
}

#[test]
fn behind_a_proxy_that_drops_upgrades_the_terminal_falls_back_to_http_by_itself() {
    let (_server, url) = server();
    let upstream: std::net::SocketAddr =
        url.trim_start_matches("ws://").trim_end_matches("/ws").parse().unwrap();
    let broken = ReverseProxy::start(&[upstream], false);
    let working = ReverseProxy::start(&[upstream], true);
    let mut bob = chat(&url, &["--nick", "bob"]);
    bob.expect("[lobby] -- joined (1 members: bob)");
    // Through the proxy that drops the upgrade: the fallback, said once.
    let mut alice = chat(&format!("ws://{}/ws", broken.addr()), &["--nick", "alice"]);
    alice.expect_stderr("-- the WebSocket upgrade was refused on the way; using the HTTP fallback");
    alice.expect("[lobby] -- joined (2 members: alice, bob)");
    // Through the proxy configured for WebSockets: a WebSocket, no word of a fallback.
    let mut carol = chat(&format!("ws://{}/ws", working.addr()), &["--nick", "carol"]);
    carol.expect("[lobby] -- joined (3 members: alice, bob, carol)");
    alice.type_line("hi from behind the broken proxy");
    bob.expect("[lobby] <alice> hi from behind the broken proxy");
    carol.expect("[lobby] <alice> hi from behind the broken proxy");
    bob.type_line("hi alice");
    alice.expect("[lobby] <bob> hi alice");
    carol.type_line("and carol");
    alice.expect("[lobby] <carol> and carol");
    // Asked for by name, straight to the server: no upgrade tried.
    let sent = chat_command()
        .args(["--server", &url, "--transport", "http", "send", "--nick", "ci", "over http"])
        .output()
        .unwrap();
    assert!(sent.status.success(), "{sent:?}");
    alice.expect("[lobby] <ci> over http");
    // --transport websocket does not fall back.
    let refused = chat_command()
        .args(["--server", &format!("ws://{}/ws", broken.addr()), "--transport", "websocket"])
        .args(["send", "--nick", "ws", "never"])
        .output()
        .unwrap();
    assert!(!refused.status.success(), "{refused:?}");
    alice.type_line("/quit");
    assert!(alice.finish().success());
    bob.expect("[lobby] -- alice left");
    assert!(!carol.seen.iter().chain(&bob.seen).any(|l| l.contains("fallback")));
}

#[test]
fn with_tls_at_the_proxy_the_terminal_chats_over_wss_and_over_the_https_fallback() {
    let (_server, url) = server();
    let upstream: std::net::SocketAddr =
        url.trim_start_matches("ws://").trim_end_matches("/ws").parse().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let made = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()]).unwrap();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert, made.cert.pem()).unwrap();
    std::fs::write(&key, made.signing_key.serialize_pem()).unwrap();
    let tls = Some((cert.clone(), key));
    let proxy = ReverseProxy::nginx(&[upstream], &ProxySetup { websocket: true, tls, port: None });
    let secure = format!("wss://{}/ws", proxy.addr());
    let ca = cert.to_str().unwrap();
    let mut bob = chat(&secure, &["--nick", "bob", "--ca", ca]);
    bob.expect("[lobby] -- joined (1 members: bob)");
    let mut alice = chat(&secure, &["--nick", "alice", "--ca", ca, "--transport", "http"]);
    alice.expect("[lobby] -- joined (2 members: alice, bob)");
    alice.type_line("over https");
    bob.expect("[lobby] <alice> over https");
    bob.type_line("over wss");
    alice.expect("[lobby] <bob> over wss");
    // Without the CA, neither transport trusts the proxy's certificate.
    let refused = chat_command()
        .args(["--server", &secure, "--transport", "http", "send", "--nick", "x", "no"])
        .output()
        .unwrap();
    assert!(!refused.status.success(), "{refused:?}");
    alice.type_line("/quit");
    assert!(alice.finish().success());
}
