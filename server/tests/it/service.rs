//! Running as a service (issue #19): the systemd unit in docs/systemd
//! passes `systemd-analyze verify` with no warning, and its command line
//! starts the real binary, which tells systemd it is ready once it listens
//! (`Type=notify`) and that it is stopping when SIGTERM starts the drain.

use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;
use std::process::Command;

use chat_test_support::{Proc, bin, ready};

fn unit() -> String {
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/systemd/chat-server.service");
    std::fs::read_to_string(path).unwrap()
}

/// The unit with its binary where this build is.
fn unit_here() -> String {
    unit().replace("/usr/local/bin/chat-server", bin("chat-server").to_str().unwrap())
}

#[test]
fn the_unit_verifies_without_a_warning() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("chat-server.service");
    std::fs::write(&path, unit_here()).unwrap();
    let verified = Command::new("systemd-analyze").arg("verify").arg(&path).output().unwrap();
    assert!(verified.status.success(), "{verified:?}");
    assert_eq!(String::from_utf8_lossy(&verified.stderr), "", "no warnings");
    let unit = unit();
    for sandboxing in [
        "DynamicUser=yes",
        "ProtectSystem=strict",
        "StateDirectory=chat-server",
        "NoNewPrivileges=yes",
        "LimitNOFILE=",
        "Type=notify",
        "KillSignal=SIGTERM",
    ] {
        assert!(unit.lines().any(|line| line.starts_with(sandboxing)), "{sandboxing}");
    }
}

#[test]
fn its_command_line_starts_says_ready_then_stopping_and_drains() {
    let dir = tempfile::tempdir().unwrap();
    // The config file as an operator starts it: print-config's, with an
    // address of the test's.
    let printed = Command::new(bin("chat-server")).arg("print-config").output().unwrap();
    let mut config = String::from_utf8(printed.stdout).unwrap();
    config.push_str("\nlisten = \"127.0.0.1:0\"\n");
    let config_path = dir.path().join("chat.toml");
    std::fs::write(&config_path, config).unwrap();
    let data = dir.path().join("state");
    let exec = unit_here()
        .lines()
        .find_map(|line| line.strip_prefix("ExecStart=").map(str::to_owned))
        .unwrap();
    let exec = exec
        .replace("/etc/chat-server/chat.toml", config_path.to_str().unwrap())
        .replace("/var/lib/chat-server", data.to_str().unwrap());
    let mut words = exec.split_whitespace();
    let mut command = Command::new(words.next().unwrap());
    command.args(words);
    let socket_path = dir.path().join("notify");
    let systemd = UnixDatagram::bind(&socket_path).unwrap();
    systemd.set_read_timeout(Some(chat_test_support::WAIT)).unwrap();
    command.env("NOTIFY_SOCKET", &socket_path).env_remove("CHAT_CONFIG");
    let mut server = Proc::spawn(&mut command);
    let base = ready(&mut server);
    let told = |systemd: &UnixDatagram, server: &Proc| {
        let mut buffer = [0u8; 512];
        let n = systemd.recv(&mut buffer).unwrap_or_else(|err| {
            let said: Vec<String> = server.stderr.try_iter().collect();
            panic!("nothing told to systemd ({err}); the server said {said:#?}")
        });
        String::from_utf8_lossy(&buffer[..n]).into_owned()
    };
    let first = told(&systemd, &server);
    assert!(first.lines().any(|line| line == "READY=1"), "{first}");
    assert!(first.contains(&format!("STATUS=serving on {base}")), "{first}");
    assert!(data.join("chat.db").exists(), "the store is in the state directory");
    let pid = server.child.id().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    // At once: the handler is there before READY=1 is.
    let then = told(&systemd, &server);
    assert!(then.lines().any(|line| line == "STOPPING=1"), "{then}");
    assert!(server.child.wait().unwrap().success());
}
