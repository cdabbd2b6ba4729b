//! Helpers shared by the end-to-end tests: the real binaries of this
//! workspace, their output read line by line as it comes.
// Each test crate uses its own part of these.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

pub const WAIT: Duration = Duration::from_secs(15);

/// A binary of this workspace, built next to `chat`.
pub fn bin(name: &str) -> PathBuf {
    let path = PathBuf::from(env!("CARGO_BIN_EXE_chat")).with_file_name(name);
    assert!(
        path.exists(),
        "{} is missing: build the workspace first (cargo build --workspace)",
        path.display()
    );
    path
}

/// A running process whose stdout and stderr lines are read as they come.
pub struct Proc {
    pub child: Child,
    pub stdin: Option<ChildStdin>,
    pub stdout: mpsc::Receiver<String>,
    pub stderr: mpsc::Receiver<String>,
    pub seen: Vec<String>,
}

impl Proc {
    pub fn spawn(command: &mut Command) -> Self {
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = lines(child.stdout.take().unwrap());
        let stderr = lines(child.stderr.take().unwrap());
        let stdin = child.stdin.take();
        Self { child, stdin, stdout, stderr, seen: Vec::new() }
    }

    /// Waits for a stdout line equal to `expected`.
    pub fn expect(&mut self, expected: &str) {
        self.expect_where(|line| line == expected, expected);
    }

    pub fn expect_where(&mut self, matches: impl Fn(&str) -> bool, what: &str) -> String {
        let deadline = std::time::Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.stdout.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if matches(&line) {
                        return line;
                    }
                }
                Err(_) => panic!("no line {what:?}; saw {:#?}", self.seen),
            }
        }
    }

    pub fn expect_stderr(&mut self, needle: &str) -> String {
        let deadline = std::time::Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.stderr.recv_timeout(left) {
                Ok(line) if line.contains(needle) => return line,
                Ok(_) => {}
                Err(_) => panic!("no stderr line with {needle:?}"),
            }
        }
    }

    /// Waits for a stdout line that `on_stdout` accepts (`Ok`) or a stderr
    /// line that `on_stderr` accepts (`Err`), whichever comes first.
    pub fn expect_any(
        &mut self,
        on_stdout: impl Fn(&str) -> bool,
        on_stderr: impl Fn(&str) -> bool,
    ) -> Result<String, String> {
        let deadline = std::time::Instant::now() + WAIT;
        while std::time::Instant::now() < deadline {
            let tick = Duration::from_millis(10);
            if let Ok(line) = self.stdout.recv_timeout(tick) {
                self.seen.push(line.clone());
                if on_stdout(&line) {
                    return Ok(line);
                }
            }
            while let Ok(line) = self.stderr.try_recv() {
                if on_stderr(&line) {
                    return Err(line);
                }
            }
        }
        panic!("neither line came; saw {:#?}", self.seen)
    }

    pub fn type_line(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().unwrap();
        writeln!(stdin, "{line}").unwrap();
        stdin.flush().unwrap();
    }

    /// Closes stdin and waits for the exit status: the end of stdout (the
    /// reader thread hanging up) is the event that the process is ending.
    pub fn finish(&mut self) -> std::process::ExitStatus {
        drop(self.stdin.take());
        let deadline = std::time::Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.stdout.recv_timeout(left) {
                Ok(line) => self.seen.push(line),
                Err(mpsc::RecvTimeoutError::Disconnected) => return self.child.wait().unwrap(),
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    panic!("process did not exit; saw {:#?}", self.seen)
                }
            }
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn lines(pipe: impl std::io::Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(pipe).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// Starts `chat-server` on a free port and returns it with its ws:// URL.
pub fn server() -> (Proc, String) {
    server_with(&[])
}

pub fn server_with(extra: &[&str]) -> (Proc, String) {
    let mut server = Proc::spawn(
        Command::new(bin("chat-server"))
            .args(["--listen", "127.0.0.1:0", "--ephemeral"])
            .args(extra),
    );
    let line = server.expect_where(|line| line.starts_with("listening on http://"), "listening");
    let addr = line.trim_start_matches("listening on http://").to_owned();
    (server, format!("ws://{addr}/ws"))
}

/// Starts `chat-server` on a free port with durable storage (pass
/// `--data-dir`) and returns it with its ws:// URL.
pub fn server_on(extra: &[&str]) -> (Proc, String) {
    let mut server =
        Proc::spawn(Command::new(bin("chat-server")).args(["--listen", "127.0.0.1:0"]).args(extra));
    let line = server.expect_where(|line| line.starts_with("listening on http://"), "listening");
    let addr = line.trim_start_matches("listening on http://").to_owned();
    (server, format!("ws://{addr}/ws"))
}

/// `chat` with no config file of the user's in the way.
pub fn chat_command() -> Command {
    let mut command = Command::new(bin("chat"));
    command.env("XDG_CONFIG_HOME", "/nonexistent").env_remove("CHAT_CONFIG");
    command
}

pub fn chat(url: &str, args: &[&str]) -> Proc {
    Proc::spawn(chat_command().arg("--server").arg(url).args(args))
}

pub fn chat_with_input(url: &str, args: &[&str], input: &str) -> Output {
    let mut child = chat_command()
        .arg("--server")
        .arg(url)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    child.wait_with_output().unwrap()
}
