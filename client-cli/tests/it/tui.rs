//! The full-screen client in a real terminal: `chat` runs inside `tmux`
//! against the real `chat-server`; keys go in with `send-keys` and the
//! screen is read with `capture-pane`.

use std::path::Path;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use chat_test_support::*;
use unicode_width::UnicodeWidthStr;

/// A tmux server of its own with one pane running one command.
struct Tmux {
    socket: String,
}

static SOCKETS: AtomicUsize = AtomicUsize::new(0);

impl Tmux {
    /// Starts `command` (a shell command line) in a `cols` x `rows` pane,
    /// with `env` set.
    fn start(cols: u16, rows: u16, command: &str, env: &[(&str, &str)]) -> Self {
        let socket = format!(
            "chat-tui-test-{}-{}",
            std::process::id(),
            SOCKETS.fetch_add(1, Ordering::Relaxed)
        );
        let tmux = Self { socket };
        let size = [cols.to_string(), rows.to_string()];
        let mut args: Vec<String> = ["new-session", "-d", "-x", &size[0], "-y", &size[1]]
            .iter()
            .map(|arg| (*arg).to_owned())
            .collect();
        for (name, value) in env {
            args.push("-e".to_owned());
            args.push(format!("{name}={value}"));
        }
        args.push(command.to_owned());
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = tmux.run(&args);
        assert!(out.status.success(), "tmux: {}", String::from_utf8_lossy(&out.stderr));
        tmux
    }

    fn run(&self, args: &[&str]) -> Output {
        Command::new("tmux")
            .args(["-L", &self.socket, "-f", "/dev/null"])
            .args(args)
            .output()
            .expect("tmux is installed (scripts/test installs it)")
    }

    /// Types text as it is.
    fn type_text(&self, text: &str) {
        assert!(self.run(&["send-keys", "-l", text]).status.success());
    }

    /// Presses keys by tmux's names (`Enter`, `Tab`, `PPage`, `C-u`, `M-2`).
    fn press(&self, keys: &[&str]) {
        let mut args = vec!["send-keys"];
        args.extend_from_slice(keys);
        assert!(self.run(&args).status.success());
    }

    fn screen(&self) -> Vec<String> {
        let out = self.run(&["capture-pane", "-p"]);
        String::from_utf8_lossy(&out.stdout).lines().map(str::to_owned).collect()
    }

    /// Waits until the screen shows what `ready` looks for (the screen is
    /// read again each time tmux has had a moment to update it).
    fn wait(&self, what: &str, ready: impl Fn(&[String]) -> bool) -> Vec<String> {
        let deadline = Instant::now() + WAIT;
        loop {
            let screen = self.screen();
            if ready(&screen) {
                return screen;
            }
            assert!(
                Instant::now() < deadline,
                "the screen never showed {what}:\n{}",
                screen.join("\n")
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }

    fn wait_text(&self, text: &str) -> Vec<String> {
        self.wait(text, |screen| screen.iter().any(|row| row.contains(text)))
    }

    fn resize(&self, cols: u16, rows: u16) {
        let out = self.run(&["resize-window", "-x", &cols.to_string(), "-y", &rows.to_string()]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }

    /// The `chat` process in the pane: the pane's own process, or its
    /// child if a shell runs it.
    fn chat_pid(&self) -> u32 {
        let out = self.run(&["display-message", "-p", "#{pane_pid}"]);
        let pane: u32 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
        let name = std::fs::read_to_string(format!("/proc/{pane}/comm")).unwrap_or_default();
        if name.trim() == "chat" {
            return pane;
        }
        let children = std::fs::read_to_string(format!("/proc/{pane}/task/{pane}/children"))
            .unwrap_or_default();
        children.split_whitespace().next().and_then(|pid| pid.parse().ok()).unwrap()
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.run(&["kill-server"]);
    }
}

/// The last row: the status bar.
fn status(screen: &[String]) -> &str {
    screen.last().map_or("", String::as_str)
}

fn count(screen: &[String], text: &str) -> usize {
    screen.iter().filter(|row| row.contains(text)).count()
}

/// The environment for a client of its own: config and data under `home`.
fn home_env(home: &Path) -> Vec<(&'static str, String)> {
    vec![
        ("XDG_CONFIG_HOME", home.join("config").display().to_string()),
        ("XDG_DATA_HOME", home.join("data").display().to_string()),
    ]
}

fn tui(cols: u16, rows: u16, url: &str, nick: &str, home: &Path) -> Tmux {
    let command = format!("{} --server {url} --nick {nick}", bin("chat").display());
    let env = home_env(home);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    Tmux::start(cols, rows, &command, &env)
}

fn is_connected(screen: &[String]) -> bool {
    status(screen).starts_with(" connected")
}

/// Chatting, completion, paging back, switching views and resizing, at
/// one size and then the other.
fn a_conversation(cols: u16, rows: u16, other: (u16, u16)) {
    let (_server, url) = server_with(&["--messages-per-sec", "1000", "--messages-burst", "1000"]);
    // History from before the client came: more than a screen of it.
    let old: String = (1..=150).map(|n| format!("old {n:03}\n")).collect();
    let seeded = chat_with_input(&url, &["--nick", "carol"], &old);
    assert!(seeded.status.success(), "{}", String::from_utf8_lossy(&seeded.stderr));

    let home = tempfile::tempdir().unwrap();
    let tmux = tui(cols, rows, &url, "alice", home.path());
    let screen = tmux.wait("connected, in lobby", |s| {
        is_connected(s) && s.iter().any(|row| row.contains("old 150"))
    });
    assert_eq!(screen.len(), usize::from(rows));
    assert!(status(&screen).contains("alice"), "{screen:#?}");

    tmux.type_text("hello from the tui");
    tmux.press(&["Enter"]);
    tmux.wait_text("<alice> hello from the tui");
    let mut bob = chat(&url, &["--nick", "bob"]);
    bob.expect("[lobby] <alice> hello from the tui");
    bob.type_line("hi alice, 日本語 and 🎉 too");
    tmux.wait_text("<bob> hi alice, 日本語 and 🎉 too");

    // Tab completes a nick at the start of the line, then a room.
    let input_row = usize::from(rows) - 2;
    tmux.type_text("bo");
    tmux.press(&["Tab"]);
    tmux.wait("the nick completed", |s| s[input_row].ends_with("bob:"));
    tmux.type_text("see #lo");
    tmux.press(&["Tab"]);
    tmux.wait("the room completed", |s| s[input_row].ends_with("bob: see #lobby"));
    tmux.press(&["Enter"]);
    // What completion left at the end of the line is not sent.
    bob.expect("[lobby] <alice> bob: see #lobby");

    // /join opens a view and makes it current; Alt+2 goes back.
    tmux.type_text("/join dev");
    tmux.press(&["Enter"]);
    tmux.wait("the dev view", |s| {
        s.iter().any(|row| row.contains("#dev")) && s[input_row].contains("#dev >")
    });
    bob.type_line("/join dev");
    bob.expect_where(|line| line.starts_with("[dev] -- joined"), "joined dev");
    bob.type_line("over in dev");
    tmux.wait_text("<bob> over in dev");
    bob.type_line("/leave dev");
    bob.expect("[dev] -- you left");
    bob.type_line("back in the lobby");
    tmux.wait("an unread count on lobby", |s| s.iter().any(|row| row.contains("#lobby (1)")));
    tmux.press(&["M-2"]);
    tmux.wait("the lobby again", |s| {
        s[input_row].contains("#lobby >") && s.iter().any(|row| row.contains("back in the lobby"))
    });

    // PgUp pages back to the first message, fetching older history from
    // the server on the way.
    let mut screen = tmux.screen();
    let mut presses = 0;
    while !screen.iter().any(|row| row.contains("old 001")) {
        presses += 1;
        assert!(presses < 60, "PgUp never reached the first message:\n{}", screen.join("\n"));
        tmux.press(&["PPage"]);
        let before = screen.clone();
        screen = tmux.wait("the view scrolled", |s| *s != before);
    }
    assert_eq!(count(&screen, "old 001"), 1, "{}", screen.join("\n"));
    // Every message is there once, in order, with nothing left out.
    let mut all = screen.clone();
    while !screen.iter().any(|row| row.contains("back in the lobby")) {
        tmux.press(&["NPage"]);
        let before = screen.clone();
        screen = tmux.wait("the view scrolled down", |s| *s != before);
        all.extend(screen.iter().cloned());
    }
    for n in 1..=150 {
        assert!(all.iter().any(|row| row.contains(&format!("old {n:03}"))), "old {n:03} missing");
    }

    // A long line of wide characters wraps; the layout holds after a
    // resize, and no row is wider than the screen.
    bob.type_line(&format!("long {}", "長い行".repeat(40)));
    tmux.press(&["Escape"]);
    tmux.wait_text("<bob> long");
    tmux.press(&["PPage"]);
    tmux.wait("a note of newer messages", |s| s.iter().any(|row| row.contains("newer below")));
    tmux.press(&["Escape"]);
    tmux.wait("the newest again", |s| !s.iter().any(|row| row.contains("newer below")));
    // The mouse wheel scrolls too (an SGR mouse report, as a terminal
    // sends it with mouse reporting on).
    tmux.type_text("\x1b[<64;30;5M");
    tmux.wait("scrolled by the wheel", |s| s.iter().any(|row| row.contains("newer below")));
    tmux.type_text("\x1b[<65;30;5M");
    tmux.wait("the newest message", |s| {
        s.iter().any(|row| row.contains("<bob> long"))
            && !s.iter().any(|row| row.contains("newer below"))
    });
    for (cols, rows) in [other, (cols, rows)] {
        tmux.resize(cols, rows);
        let screen = tmux.wait("the new size", |s| {
            s.len() == usize::from(rows) && is_connected(s) && s[s.len() - 2].contains("#lobby >")
        });
        for row in &screen {
            assert!(row.width() <= usize::from(cols), "row wider than {cols}: {row:?}");
        }
        assert!(screen.iter().any(|row| row.contains("長い行")), "{}", screen.join("\n"));
    }
}

#[test]
fn the_full_screen_client_at_120x40() {
    a_conversation(120, 40, (60, 20));
}

#[test]
fn the_full_screen_client_at_60x20() {
    a_conversation(60, 20, (120, 40));
}

/// The outbox file the client with data under `home` wrote.
fn outbox_file(home: &Path) -> std::path::PathBuf {
    std::fs::read_dir(home.join("data/chat/outbox"))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .find(|path| path.extension().is_some_and(|ext| ext == "json"))
        .expect("the client wrote an outbox")
}

/// Starts `chat-server` with its data in `data` on `listen`; the address.
fn durable_server(listen: &str, data: &Path) -> (Proc, String) {
    let (server, base) = start_server(server_command().args([
        "--listen",
        listen,
        "--data-dir",
        data.to_str().unwrap(),
    ]));
    (server, base.trim_start_matches("http://").to_owned())
}

#[test]
fn a_server_restart_shows_reconnecting_then_resumes_without_duplicates() {
    let data = tempfile::tempdir().unwrap();
    let (server, addr) = durable_server("127.0.0.1:0", data.path());
    let url = format!("ws://{addr}/ws");
    let home = tempfile::tempdir().unwrap();
    let tmux = tui(100, 30, &url, "alice", home.path());
    tmux.wait("connected", is_connected);
    let mut bob = chat(&url, &["--nick", "bob"]);
    bob.expect("[lobby] -- joined (2 members: alice, bob)");
    tmux.type_text("before the restart");
    tmux.press(&["Enter"]);
    bob.expect("[lobby] <alice> before the restart");

    drop(server); // killed: no goodbye
    tmux.wait("reconnecting", |s| status(s).contains("reconnecting in"));
    tmux.type_text("typed while the server was down");
    tmux.press(&["Enter"]);
    tmux.wait("one queued", |s| status(s).contains("1 queued"));

    let (_server, _) = durable_server(&addr, data.path());
    let screen = tmux.wait("delivered after the reconnect", |s| {
        is_connected(s)
            && !status(s).contains("queued")
            && s.iter().any(|row| row.contains("<alice> typed while the server was down"))
    });
    bob.expect("[lobby] <alice> typed while the server was down");
    tmux.type_text("after the restart");
    tmux.press(&["Enter"]);
    bob.expect("[lobby] <alice> after the restart");
    let screen_after = tmux.wait_text("<alice> after the restart");
    for screen in [&screen, &screen_after] {
        assert_eq!(count(screen, "<alice> before the restart"), 1, "{}", screen.join("\n"));
        assert_eq!(count(screen, "<alice> typed while the"), 1, "{}", screen.join("\n"));
    }
    let seen = bob.seen.iter().filter(|l| l.contains("typed while the server was down"));
    assert_eq!(seen.count(), 1, "delivered once: {:#?}", bob.seen);
}

#[test]
fn a_message_typed_offline_survives_the_client_being_killed() {
    let data = tempfile::tempdir().unwrap();
    // An address where a server will be, later.
    let (server, addr) = durable_server("127.0.0.1:0", data.path());
    drop(server);
    let url = format!("ws://{addr}/ws");
    let home = tempfile::tempdir().unwrap();
    let tmux = tui(100, 30, &url, "alice", home.path());
    tmux.wait("reconnecting", |s| status(s).contains("reconnecting in"));
    tmux.type_text("kept in the outbox");
    tmux.press(&["Enter"]);
    tmux.wait("one queued", |s| status(s).contains("1 queued"));
    // Shown at once in the room, as being sent.
    tmux.wait_text("🕓 <alice> kept in the outbox");
    let killed = Command::new("kill").args(["-KILL", &tmux.chat_pid().to_string()]).status();
    assert!(killed.unwrap().success());
    drop(tmux);
    let outbox = outbox_file(home.path());
    assert!(std::fs::read_to_string(&outbox).unwrap().contains("kept in the outbox"));

    let (_server, _) = durable_server(&addr, data.path());
    let mut bob = chat(&url, &["--nick", "bob"]);
    bob.expect("[lobby] -- joined (1 members: bob)");
    let tmux = tui(100, 30, &url, "alice", home.path());
    bob.expect("[lobby] <alice> kept in the outbox");
    tmux.wait("nothing queued", |s| is_connected(s) && !status(s).contains("queued"));
    // Shown as being sent again after the restart, then as sent, once.
    let screen =
        tmux.wait("sent", |s| count(s, "<alice> kept in the outbox") == 1 && count(s, "🕓") == 0);
    assert!(!screen.iter().any(|row| row.contains("queued, sent when")), "{}", screen.join("\n"));
    tmux.type_text("and then this");
    tmux.press(&["Enter"]);
    bob.expect("[lobby] <alice> and then this");
    let seen = bob.seen.iter().filter(|l| l.contains("kept in the outbox"));
    assert_eq!(seen.count(), 1, "delivered once: {:#?}", bob.seen);
    assert!(!std::fs::read_to_string(&outbox).unwrap().contains("kept in the outbox"));
}

#[test]
fn direct_messages_are_there_again_when_the_client_starts_again() {
    let (_server, url) = server();
    let home = tempfile::tempdir().unwrap();
    let env = home_env(home.path());
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let chat_line = format!("{} --server {url} --nick alice", bin("chat").display());
    let tmux = Tmux::start(100, 30, &and_then_show_the_terminal(&chat_line), &env);
    tmux.wait("connected", is_connected);
    let mut bob = chat(&url, &["--nick", "bob"]);
    bob.expect("[lobby] -- joined (2 members: alice, bob)");
    bob.type_line("/msg alice are you there?");
    tmux.wait_text("@bob (1)");
    // Quitting ends the session; what is sent to it meanwhile waits for
    // its token.
    tmux.press(&["C-c"]);
    tmux.wait_text("exit=0");
    drop(tmux);
    bob.type_line("/msg alice while you were gone");
    bob.expect("[dm to alice] <bob> while you were gone");
    let tmux = tui(100, 30, &url, "alice", home.path());
    tmux.wait("connected", is_connected);
    tmux.wait_text("@bob (");
    tmux.press(&["M-3"]);
    let screen = tmux.wait_text("while you were gone");
    assert_eq!(count(&screen, "are you there?"), 1, "{}", screen.join("\n"));
    tmux.type_text("back now");
    tmux.press(&["Enter"]);
    bob.expect("[dm] <alice> back now");
}

/// A shell line that runs the client, then shows how it left the terminal.
fn and_then_show_the_terminal(chat: &str) -> String {
    format!(
        "{chat}; echo \"exit=$?\"; stty -a | tr ' ;' '\\n\\n' | grep -E -x -e '-?(icanon|echo)' | tr '\\n' ' '; echo; sleep 600"
    )
}

#[test]
fn the_terminal_is_restored_after_quit_sigterm_and_a_panic() {
    let (_server, url) = server();
    let home = tempfile::tempdir().unwrap();
    let env = home_env(home.path());
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let chat = format!("{} --server {url} --nick alice", bin("chat").display());

    let tmux = Tmux::start(80, 24, &and_then_show_the_terminal(&chat), &env);
    tmux.wait("connected", is_connected);
    tmux.press(&["C-c"]);
    let screen = tmux.wait_text("icanon");
    assert!(screen.iter().any(|row| row.trim() == "exit=0"), "{}", screen.join("\n"));
    assert!(screen.iter().any(|row| row.trim() == "icanon echo"), "{}", screen.join("\n"));
    assert!(!screen.iter().any(|row| row.contains("connected ·")), "the main screen is back");
    drop(tmux);

    let tmux = Tmux::start(80, 24, &and_then_show_the_terminal(&chat), &env);
    tmux.wait("connected", is_connected);
    let killed = Command::new("kill").args(["-TERM", &tmux.chat_pid().to_string()]).status();
    assert!(killed.unwrap().success());
    let screen = tmux.wait_text("icanon");
    assert!(screen.iter().any(|row| row.trim() == "exit=0"), "{}", screen.join("\n"));
    assert!(screen.iter().any(|row| row.trim() == "icanon echo"), "{}", screen.join("\n"));

    // A panic: the terminal is restored before the message is printed.
    let mut quiet = env.clone();
    quiet.push(("RUST_BACKTRACE", "0"));
    let tmux = Tmux::start(80, 24, &and_then_show_the_terminal(&chat), &quiet);
    tmux.wait("connected", is_connected);
    tmux.type_text("/debug-panic");
    tmux.press(&["Enter"]);
    let screen = tmux.wait_text("icanon");
    assert!(screen.iter().any(|row| row.trim() == "exit=101"), "{}", screen.join("\n"));
    assert!(screen.iter().any(|row| row.trim() == "icanon echo"), "{}", screen.join("\n"));
    assert!(screen.iter().any(|row| row.contains("/debug-panic typed")), "{}", screen.join("\n"));
    drop(tmux);

    // --plain on a terminal is line mode.
    let plain = format!("{} --server {url} --nick plain --plain", bin("chat").display());
    let tmux = Tmux::start(80, 24, &plain, &env);
    tmux.wait_text("-- connected to chat-server");
    // (alice's panicked session waits out its grace period as a member.)
    tmux.wait_text("[lobby] -- joined (2 members: alice, plain)");
}

#[test]
fn the_config_file_sets_server_nick_rooms_and_colours_and_flags_win() {
    let (_server, url) = server();
    let home = tempfile::tempdir().unwrap();
    let dir = home.path().join("config/chat");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("config.toml"),
        format!(
            "server = \"{url}\"\nnick = \"filed\"\nrooms = [\"dev\", \"ops\"]\n[colors]\nnicks = [\"red\", \"#00ff00\"]\n"
        ),
    )
    .unwrap();
    let with_home = |command: &mut Command| {
        for (name, value) in home_env(home.path()) {
            command.env(name, value);
        }
        command.env_remove("CHAT_SERVER").env_remove("CHAT_NICK").env_remove("CHAT_CONFIG");
    };

    let mut print = Command::new(bin("chat"));
    with_home(&mut print);
    let out = print.args(["--print-config"]).env("CHAT_NICK", "from-env").output().unwrap();
    assert!(out.status.success());
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(printed.contains(&format!("server = \"{url}\"")), "{printed}");
    assert!(printed.contains("nick = \"from-env\""), "the environment beats the file: {printed}");
    assert!(printed.contains("rooms = [\"dev\", \"ops\"]"), "{printed}");
    assert!(printed.contains("#00FF00") || printed.contains("#00ff00"), "{printed}");
    assert!(printed.contains("config.toml"), "says which file: {printed}");

    let mut print = Command::new(bin("chat"));
    with_home(&mut print);
    let out = print.args(["--print-config", "--nick", "flagged", "--room", "x"]).output().unwrap();
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(printed.contains("nick = \"flagged\""), "{printed}");
    assert!(printed.contains("rooms = [\"x\"]"), "{printed}");

    // The file alone is enough to chat.
    let mut line = Command::new(bin("chat"));
    with_home(&mut line);
    let mut child = line
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(b"configured\n").unwrap();
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("[dev] -- joined"), "{stdout}");
    assert!(
        stdout.contains("[ops] <filed> configured"),
        "the last room joined is current: {stdout}"
    );

    // A mistake in the file stops the client with the file named.
    std::fs::write(dir.join("config.toml"), "nick = \"a\"\ncolour = \"red\"\n").unwrap();
    let mut bad = Command::new(bin("chat"));
    with_home(&mut bad);
    let out = bad.arg("--print-config").output().unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("config.toml") && stderr.contains("colour"), "{stderr}");
}

#[test]
fn a_message_resent_from_the_outbox_after_a_crash_is_delivered_once() {
    let data = tempfile::tempdir().unwrap();
    let (_server, addr) = durable_server("127.0.0.1:0", data.path());
    let url = format!("ws://{addr}/ws");
    let home = tempfile::tempdir().unwrap();
    // A first run gets a session from the server and keeps it in the
    // outbox file; then it is killed, so the session waits for it.
    let tmux = tui(100, 30, &url, "alice", home.path());
    tmux.wait("connected", is_connected);
    let outbox = outbox_file(home.path());
    let saved: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&outbox).unwrap()).unwrap();
    let session = saved["session"].as_str().expect("the session is kept").to_owned();
    let killed = Command::new("kill").args(["-KILL", &tmux.chat_pid().to_string()]).status();
    assert!(killed.unwrap().success());
    drop(tmux);
    // What a client leaves behind when it is killed after the server took
    // a message but before the echo came back: the message, its id and
    // the session it was sent in (a session the server issued: one a
    // client makes up names nothing).
    let crashed = format!(
        r#"{{"version": 1, "server": "{url}", "session": "{session}",
            "rooms": ["lobby"],
            "pending": ["{{\"id\":\"m-1\",\"type\":\"say\",\"room\":\"lobby\",\"text\":\"exactly once\"}}"]}}"#
    );
    let mut bob = chat(&url, &["--nick", "bob"]);
    bob.expect("[lobby] -- joined (2 members: alice, bob)");
    for _ in 0..2 {
        std::fs::write(&outbox, &crashed).unwrap();
        let tmux = tui(100, 30, &url, "alice", home.path());
        tmux.wait("sent and acknowledged", |s| {
            is_connected(s)
                && !status(s).contains("queued")
                && s.iter().any(|row| row.contains("<alice> exactly once"))
        });
        let killed = Command::new("kill").args(["-KILL", &tmux.chat_pid().to_string()]).status();
        assert!(killed.unwrap().success());
    }
    let tmux = tui(100, 30, &url, "alice", home.path());
    let screen = tmux.wait("the session resumed", is_connected);
    assert_eq!(count(&screen, "<alice> exactly once"), 1, "{}", screen.join("\n"));
    tmux.type_text("marker");
    tmux.press(&["Enter"]);
    bob.expect("[lobby] <alice> marker");
    let seen = bob.seen.iter().filter(|l| l.contains("exactly once"));
    assert_eq!(seen.count(), 1, "the server's dedupe made it once: {:#?}", bob.seen);
}

/// `count` real connections in room `bench-0`, held until dropped: a crowd
/// made by `chat bench` (nicks `bXXXX-N`, XXXX the run's).
fn crowd(url: &str, count: usize) -> Proc {
    Proc::spawn(chat_command().args([
        "bench",
        "--server",
        url,
        "--connections",
        &count.to_string(),
        "--rooms",
        "1",
        "--senders",
        "0",
        "--concurrency",
        "64",
        "--duration",
        "600",
        "--warmup",
        "0",
        "--json",
    ]))
}

/// The number in the member list's first row ("2 500 members").
fn members_shown(screen: &[String]) -> Option<usize> {
    let row = screen.iter().find(|row| row.trim_end().ends_with(" members"))?;
    let head = row.trim_end().strip_suffix(" members")?;
    let number: String = head.rsplit('│').next()?.chars().filter(|c| !c.is_whitespace()).collect();
    number.parse().ok()
}

#[test]
fn a_room_of_thousands_shows_its_count_pages_its_members_and_no_presence_flood() {
    // Above 10 members a room is big.
    let (_server, url) = server_with(&[
        "--max-connections-per-ip",
        "10000",
        "--max-detached-per-address",
        "10000",
        "--member-page-max",
        "10",
    ]);
    let home = tempfile::tempdir().unwrap();
    let command = format!("{} --server {url} --nick alice --room bench-0", bin("chat").display());
    let env = home_env(home.path());
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let (cols, rows) = (120, 40);
    let tmux = Tmux::start(cols, rows, &command, &env);
    tmux.wait("joined", |s| s.iter().any(|row| row.trim_end().ends_with("│1 member")));
    // The count follows the crowd as it comes: each join told on its own
    // while the room is small, then a line an interval.
    let _first = crowd(&url, 2_500);
    let screen = tmux.wait("all 2 501 counted", |s| members_shown(s) == Some(2_501));
    let single_joins =
        |screen: &[String]| screen.iter().filter(|row| row.trim_end().ends_with(" joined")).count();
    assert!(single_joins(&screen) <= 10, "a presence flood: {screen:#?}");
    assert!(count(&screen, "members)") >= 1, "{screen:#?}");
    // Only the first page is listed: the last row of the list says so.
    assert!(screen.iter().any(|row| row.contains(" (F4)")), "{screen:#?}");
    // The crowd's names: bXXXX-N.
    let run = screen
        .iter()
        .find_map(|row| {
            let at = row.rfind("│b")?;
            let name = row[at + "│".len()..].trim();
            name.split_once('-').map(|(run, _)| run.to_owned())
        })
        .expect("a crowd member listed");

    // Tab on a nick the client has not been sent is asked of the server.
    let input_row = usize::from(rows) - 2;
    tmux.type_text(&format!("{run}-249"));
    tmux.press(&["Tab"]);
    let completed = format!("{run}-249:");
    tmux.wait("the nick completed by the server", |s| s[input_row].ends_with(&completed));
    tmux.press(&["C-u"]);

    // F4 pages the list on, fetching what it has not got: past the first
    // page, what is further down keeps shrinking.
    let further = |screen: &[String]| -> Option<usize> {
        let row = screen.iter().find(|row| row.contains(" (F4)"))?;
        let at = row.rfind('+')?;
        row[at + 1..].split_whitespace().next()?.parse().ok()
    };
    let before = further(&tmux.screen()).unwrap();
    let mut left = before;
    while left + 300 > before {
        tmux.press(&["F4"]);
        let screen = tmux.wait("the list paged on", |s| further(s).is_some_and(|now| now < left));
        left = further(&screen).unwrap();
    }

    // 300 more join at once: still a line an interval, never one a join.
    let summaries = count(&tmux.screen(), "members)");
    let _second = crowd(&url, 300);
    let screen = tmux.wait("all 2 801 counted", |s| members_shown(s) == Some(2_801));
    assert!(count(&screen, "members)") > summaries || summaries >= 30, "{screen:#?}");
    assert!(single_joins(&screen) <= 10, "a presence flood: {screen:#?}");
}

#[test]
fn the_full_screen_client_on_one_node_chats_with_a_client_on_another() {
    let redis = Redis::start();
    let node = |name: &str| {
        let (node, url) = server_with(&["--redis", &redis.url(), "--node-id", name]);
        (node, url)
    };
    let ((_a, a_url), (_b, b_url)) = (node("a"), node("b"));
    let home = tempfile::tempdir().unwrap();
    let tmux = tui(100, 30, &a_url, "alice", home.path());
    tmux.wait("connected", is_connected);
    let mut bob = chat(&b_url, &["--nick", "bob"]);
    bob.expect("[lobby] -- joined (2 members: alice, bob)");
    // The member list and the messages cross nodes both ways.
    tmux.wait("bob among the members", |s| members_shown(s) == Some(2));
    bob.type_line("hello from node b");
    tmux.wait_text("<bob> hello from node b");
    tmux.type_text("hello from node a");
    tmux.press(&["Enter"]);
    bob.expect("[lobby] <alice> hello from node a");
    // A nick held on node b is taken for the client on node a.
    tmux.type_text("/nick bob");
    tmux.press(&["Enter"]);
    tmux.wait_text("nick_taken");
}
