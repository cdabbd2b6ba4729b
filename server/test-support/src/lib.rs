//! The one place the workspace's tests start the real binaries from:
//! `chat-server` and `chat`, found next to the test binary in the target
//! directory, read line by line as they run, and killed when dropped.
//!
//! # The server's readiness contract
//!
//! Once it accepts connections `chat-server` prints `listening on
//! http://ADDR` (`https://` with TLS) on stdout, `ADDR` being the address
//! it bound, so `--listen 127.0.0.1:0` tells the port it got. It is the
//! last line of its startup (only a self-signed certificate's fingerprint
//! comes before it; logs go to stderr). [`ready`] waits for that line; the
//! browser tests read it the same way (docs/operations.md).
//!
//! A dev-dependency only; it depends on nothing but std.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::missing_panics_doc)]

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// How long any one wait on a process may take before the test fails.
pub const WAIT: Duration = Duration::from_secs(15);

/// A binary of this workspace, from the target directory the running test
/// was built into.
pub fn bin(name: &str) -> PathBuf {
    // Tests run from target/<profile>/deps/; binaries are one level up.
    let exe = std::env::current_exe().expect("the test binary's path");
    let dir = exe.parent().and_then(|deps| deps.parent()).expect("a target directory");
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is missing: build the workspace's binaries first (cargo build --workspace --bins)",
        path.display()
    );
    path
}

/// A running process whose stdout and stderr lines are read as they come.
#[derive(Debug)]
pub struct Proc {
    pub child: Child,
    pub stdin: Option<ChildStdin>,
    pub stdout: mpsc::Receiver<String>,
    pub stderr: mpsc::Receiver<String>,
    /// The stdout lines read so far.
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

    /// Waits for a stdout line `matches` accepts, and returns it.
    pub fn expect_where(&mut self, matches: impl Fn(&str) -> bool, what: &str) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
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

    /// Waits for a stderr line containing `needle`, and returns it.
    pub fn expect_stderr(&mut self, needle: &str) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
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
        let deadline = Instant::now() + WAIT;
        while Instant::now() < deadline {
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
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
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

/// The lines of `pipe`, read on a thread as they come.
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

/// Waits for a server's readiness line; its base URL (`http://ADDR` or
/// `https://ADDR`).
pub fn ready(server: &mut Proc) -> String {
    let line = server.expect_where(|line| line.starts_with("listening on "), "listening on");
    line.trim_start_matches("listening on ").to_owned()
}

/// The WebSocket URL of a server whose base URL is `base`.
pub fn ws_url(base: &str) -> String {
    let rest = base.strip_prefix("https://").map(|rest| format!("wss://{rest}"));
    let url = rest.unwrap_or_else(|| base.replacen("http://", "ws://", 1));
    format!("{url}/ws")
}

/// `chat-server`, not started.
pub fn server_command() -> Command {
    Command::new(bin("chat-server"))
}

/// Starts `chat-server` with `args` and waits until it is ready: the
/// process and its base URL.
pub fn start_server(command: &mut Command) -> (Proc, String) {
    let mut server = Proc::spawn(command);
    let base = ready(&mut server);
    (server, base)
}

/// An in-memory `chat-server` on a free port with `extra` flags: the
/// process and its WebSocket URL.
pub fn server_with(extra: &[&str]) -> (Proc, String) {
    let (server, base) =
        start_server(server_command().args(["--listen", "127.0.0.1:0", "--ephemeral"]).args(extra));
    (server, ws_url(&base))
}

/// An in-memory `chat-server` on a free port: the process and its
/// WebSocket URL.
pub fn server() -> (Proc, String) {
    server_with(&[])
}

/// A `chat-server` on a free port with durable storage (pass
/// `--data-dir`): the process and its WebSocket URL.
pub fn server_on(extra: &[&str]) -> (Proc, String) {
    let (server, base) =
        start_server(server_command().args(["--listen", "127.0.0.1:0"]).args(extra));
    (server, ws_url(&base))
}

/// `chat`, with no config file of the user's in the way.
pub fn chat_command() -> Command {
    let mut command = Command::new(bin("chat"));
    command.env("XDG_CONFIG_HOME", "/nonexistent").env_remove("CHAT_CONFIG");
    command
}

/// `chat --server URL ARGS`, running.
pub fn chat(url: &str, args: &[&str]) -> Proc {
    Proc::spawn(chat_command().arg("--server").arg(url).args(args))
}

/// `chat --server URL ARGS` with `input` on stdin, to its end.
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

/// A `redis-server` of a test's own: on a free loopback port, with its data
/// in a directory of its own, killed (and the directory removed) when
/// dropped. `scripts/test` installs the Debian package when missing.
#[derive(Debug)]
pub struct Redis {
    child: Child,
    port: u16,
    dir: PathBuf,
    extra: Vec<String>,
}

impl Redis {
    /// Starts one with nothing persisted.
    pub fn start() -> Self {
        Self::start_with(&[])
    }

    /// Starts one with more `redis-server` arguments (`--appendonly yes`),
    /// which win over the defaults here.
    pub fn start_with(extra: &[&str]) -> Self {
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("chat-redis-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let extra: Vec<String> = extra.iter().map(|arg| (*arg).to_owned()).collect();
        // A port free a moment ago may be taken by the time Redis binds
        // it: then it exits, and another is tried.
        for _ in 0..20 {
            let port =
                std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
            if let Some(child) = spawn_redis(port, &dir, &extra) {
                return Self { child, port, dir, extra };
            }
        }
        panic!("redis-server could not start on any free port");
    }

    /// Kills it, as a crash would (what it had not written is lost).
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts it again on the same port and directory (with AOF on, with
    /// what it had written).
    pub fn restart(&mut self) {
        self.kill();
        let deadline = Instant::now() + WAIT;
        loop {
            // The port may linger a moment after the kill.
            if let Some(child) = spawn_redis(self.port, &self.dir, &self.extra) {
                self.child = child;
                return;
            }
            assert!(Instant::now() < deadline, "redis-server could not start again");
        }
    }

    /// Its address, for `--redis` and the `redis` crate.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// `redis-server` on `port`, once it answers; `None` if it exited first
/// (the port was taken).
fn spawn_redis(port: u16, dir: &Path, extra: &[String]) -> Option<Child> {
    let mut child = Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", ""])
        .args(["--appendonly", "no", "--protected-mode", "no", "--dir"])
        .arg(dir)
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("redis-server is installed (scripts/test installs it)");
    let deadline = Instant::now() + WAIT;
    while child.try_wait().unwrap().is_none() {
        if redis_answers(port) {
            return Some(child);
        }
        assert!(Instant::now() < deadline, "redis-server never answered on {port}");
        std::thread::sleep(Duration::from_millis(10));
    }
    None
}

/// Whether a Redis on `port` answers a PING.
fn redis_answers(port: u16) -> bool {
    use std::io::Read;
    let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
    let mut answer = [0u8; 7];
    stream.write_all(b"PING\r\n").is_ok()
        && stream.read_exact(&mut answer).is_ok()
        && &answer == b"+PONG\r\n"
}

/// A reverse proxy of a test's own in front of `upstreams` (round-robin):
/// Debian's nginx or Caddy, on a free loopback port, its configuration,
/// pid and logs in a directory of its own, stopped (and the directory
/// removed) when dropped. `scripts/test` installs both packages when
/// missing.
#[derive(Debug)]
pub struct ReverseProxy {
    child: Child,
    port: u16,
    dir: PathBuf,
}

/// How a test's proxy is set up.
#[derive(Debug, Clone, Default)]
pub struct ProxySetup {
    /// Pass WebSocket upgrades on (nginx: `Upgrade`, `Connection`); without,
    /// the common misconfiguration that does not. Caddy always does.
    pub websocket: bool,
    /// Terminate TLS with this certificate and key (PEM files).
    pub tls: Option<(PathBuf, PathBuf)>,
    /// Listen on this port (to start one again where an earlier one was).
    pub port: Option<u16>,
}

impl ReverseProxy {
    /// Starts an nginx. With `websocket` it passes the upgrade on as
    /// docs/operations.md says to (`Upgrade`, `Connection`, long
    /// timeouts); without, it is the common misconfiguration that does
    /// not. Either way it sets `X-Forwarded-For` with
    /// `$proxy_add_x_forwarded_for` and passes `Host` as the client sent it.
    pub fn start(upstreams: &[std::net::SocketAddr], websocket: bool) -> Self {
        Self::nginx(upstreams, &ProxySetup { websocket, ..ProxySetup::default() })
    }

    /// An nginx set up as `setup` says.
    pub fn nginx(upstreams: &[std::net::SocketAddr], setup: &ProxySetup) -> Self {
        Self::spawn("nginx", setup.port, |dir, port| {
            std::fs::write(dir.join("nginx.conf"), nginx_config(dir, port, upstreams, setup))
                .unwrap();
            let mut command = Command::new(binary("nginx"));
            command.arg("-p").arg(dir).arg("-c").arg(dir.join("nginx.conf"));
            command
        })
    }

    /// A Caddy (`reverse_proxy`, as docs/operations.md shows it: upgrades
    /// pass on by themselves, events are flushed at once).
    pub fn caddy(upstreams: &[std::net::SocketAddr]) -> Self {
        Self::spawn("caddy", None, |dir, port| {
            std::fs::write(dir.join("Caddyfile"), caddy_config(port, upstreams)).unwrap();
            let mut command = Command::new(binary("caddy"));
            command.args(["run", "--adapter", "caddyfile", "--config"]).arg(dir.join("Caddyfile"));
            // Caddy keeps state under $HOME and the XDG directories.
            for var in ["HOME", "XDG_DATA_HOME", "XDG_CONFIG_HOME"] {
                command.env(var, dir);
            }
            command
        })
    }

    /// Starts `what` as `command` says for a directory and a port, on
    /// `port` or else a free one, and waits until it listens.
    fn spawn(what: &str, port: Option<u16>, command: impl Fn(&Path, u16) -> Command) -> Self {
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("chat-{what}-{}-{n}", std::process::id()));
        std::fs::create_dir_all(dir.join("tmp")).unwrap();
        // nginx's workers may run as another user: its scratch is theirs too.
        let _ = Command::new("chmod").args(["-R", "0777"]).arg(&dir).status();
        // A port free a moment ago may be taken by the time the proxy
        // binds it: then it exits, and another is tried.
        for _ in 0..20 {
            let port = port.unwrap_or_else(|| {
                std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
            });
            let mut child = command(&dir, port)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap_or_else(|err| {
                    panic!("{what} is installed (scripts/test installs it): {err}")
                });
            let deadline = Instant::now() + WAIT;
            while child.try_wait().unwrap().is_none() {
                if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    return Self { child, port, dir };
                }
                assert!(Instant::now() < deadline, "{what} never listened on {port}");
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        panic!("{what} could not start on any free port");
    }

    /// Where it listens.
    pub fn addr(&self) -> std::net::SocketAddr {
        std::net::SocketAddr::from(([127, 0, 0, 1], self.port))
    }
}

impl Drop for ReverseProxy {
    fn drop(&mut self) {
        // SIGTERM: nginx's master stops its workers, then itself (a
        // SIGKILL would leave the workers behind); Caddy stops gracefully.
        let _ = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
        let deadline = Instant::now() + WAIT;
        while matches!(self.child.try_wait(), Ok(None)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// `name` from `PATH`, or where Debian puts it (`/usr/sbin` is not on every
/// user's `PATH`).
fn binary(name: &str) -> PathBuf {
    let on_path = Command::new("sh").args(["-c", &format!("command -v {name}")]).output();
    match on_path {
        Ok(out) if out.status.success() => {
            PathBuf::from(String::from_utf8_lossy(&out.stdout).trim().to_owned())
        }
        _ => PathBuf::from(format!("/usr/sbin/{name}")),
    }
}

/// The configuration of a test's Caddy.
fn caddy_config(port: u16, upstreams: &[std::net::SocketAddr]) -> String {
    let upstreams: Vec<String> = upstreams.iter().map(ToString::to_string).collect();
    format!(
        "{{
\tadmin off
\tauto_https off
}}
http://127.0.0.1:{port} {{
\treverse_proxy {} {{
\t\tlb_policy round_robin
\t\tflush_interval -1
\t}}
}}
",
        upstreams.join(" ")
    )
}

/// The configuration of a test's nginx.
fn nginx_config(
    dir: &Path,
    port: u16,
    upstreams: &[std::net::SocketAddr],
    setup: &ProxySetup,
) -> String {
    let dir = dir.display();
    let websocket = setup.websocket;
    let (ssl, certificate) = match &setup.tls {
        Some((cert, key)) => (
            " ssl http2",
            format!(
                "        ssl_certificate {};\n        ssl_certificate_key {};\n",
                cert.display(),
                key.display()
            ),
        ),
        None => ("", String::new()),
    };
    let servers: String =
        upstreams.iter().map(|addr| format!("        server {addr};\n")).collect();
    let upgrade = match websocket {
        true => {
            "            proxy_set_header Upgrade $http_upgrade;\n            \
             proxy_set_header Connection $connection_upgrade;\n"
        }
        false => "",
    };
    format!(
        "daemon off;
worker_processes 1;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {dir}/tmp/body;
    proxy_temp_path {dir}/tmp/proxy;
    fastcgi_temp_path {dir}/tmp/fastcgi;
    uwsgi_temp_path {dir}/tmp/uwsgi;
    scgi_temp_path {dir}/tmp/scgi;
    map $http_upgrade $connection_upgrade {{
        default upgrade;
        '' close;
    }}
    upstream chat {{
{servers}    }}
    server {{
        listen 127.0.0.1:{port}{ssl};
{certificate}        location / {{
            proxy_pass http://chat;
            proxy_http_version 1.1;
{upgrade}            proxy_set_header Host $http_host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto $scheme;
            proxy_read_timeout 3600s;
            proxy_send_timeout 3600s;
            proxy_buffering off;
        }}
    }}
}}
"
    )
}
