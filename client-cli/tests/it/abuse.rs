//! The real binaries when the machine runs short: a data directory on a
//! small tmpfs that uploads and then a filler fill, and a server with few
//! file descriptors. The chat must go on through both, with `chat` clients
//! as its users.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use chat_test_support::*;

/// A tmpfs of `size` mounted on a fresh directory, unmounted when dropped.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(size: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .status()
            .expect("mount runs");
        assert!(status.success(), "mounting a tmpfs needs root, as scripts/test runs");
        Self { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(self.dir.path()).status();
    }
}

/// Fills the file system of `dir` to the last byte; returns the filler.
fn fill(dir: &Path) -> PathBuf {
    let path = dir.join("filler");
    let mut file = std::fs::File::create(&path).unwrap();
    let block = vec![0u8; 64 * 1024];
    loop {
        match file.write(&block) {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
    }
    // The last partial block.
    while file.write(&block[..512]).is_ok_and(|n| n > 0) {}
    let _ = file.sync_all();
    path
}

#[test]
fn a_disk_that_fills_stops_uploads_then_messages_but_never_the_chat() {
    let disk = Tmpfs::mount("8m");
    let data = disk.path().join("data");
    let (_server, url) = server_on(&[
        "--data-dir",
        data.to_str().unwrap(),
        "--max-upload",
        "1MiB",
        "--min-free-disk",
        "2MiB",
    ]);
    let mut bob = chat(&url, &["--nick", "bob"]);
    bob.expect("[lobby] -- joined (1 members: bob)");
    let mut mallory = chat(&url, &["--nick", "mallory"]);
    mallory.expect_where(|l| l.starts_with("[lobby] -- joined"), "joined");
    // Uploads until the server says the disk is too full for files.
    let files = tempfile::tempdir().unwrap();
    let mut stored = 0;
    for n in 0..12u8 {
        let path = files.path().join(format!("f{n}.bin"));
        std::fs::write(&path, vec![n; 1 << 20]).unwrap();
        mallory.type_line(&format!("/upload {}", path.display()));
        let answer = mallory.expect_any(
            |line| line.starts_with("[lobby] <mallory> [file: f"),
            |line| line.starts_with("error: "),
        );
        match answer {
            Ok(_) => stored += 1,
            Err(line) => {
                assert!(line.starts_with("error: unavailable:") && line.contains("disk"), "{line}");
                break;
            }
        }
    }
    assert!((1..=6).contains(&stored), "{stored} files before the floor");
    // Chat goes on above the floor.
    bob.type_line("still here");
    mallory.expect("[lobby] <bob> still here");

    // Now the disk fills to the last byte: messages cannot be stored, and
    // are refused rather than waited for.
    let filler = fill(disk.path());
    bob.type_line("lost to a full disk");
    let refused = bob.expect_stderr("-- unavailable:");
    assert!(refused.contains("cannot be stored"), "{refused}");
    assert!(refused.contains("sending it again"), "not an error: {refused}");
    // Everything else goes on: mallory still gets what needs no storage.
    bob.type_line("/who");
    bob.expect_where(|l| l.contains("bob") && l.contains("mallory"), "members");

    // Space comes back: the chat recovers by itself, and the client sends
    // the refused message again, with its id: it arrives, once.
    std::fs::remove_file(filler).unwrap();
    mallory.expect("[lobby] <bob> lost to a full disk");
    bob.expect("[lobby] <bob> lost to a full disk");
    bob.type_line("back");
    mallory.expect("[lobby] <bob> back");
    assert_eq!(mallory.seen.iter().filter(|l| l.contains("lost to a full disk")).count(), 1);
}

#[test]
fn the_server_raises_its_open_file_limit_and_backs_off_when_out_of_them() {
    // A soft limit below the hard one is raised at start.
    let mut server = Proc::spawn(Command::new("bash").args([
        "-c",
        &format!(
            "ulimit -Sn 256 && exec {} --listen 127.0.0.1:0 --ephemeral",
            bin("chat-server").display()
        ),
    ]));
    let line = server.expect_stderr("open file limit");
    assert!(line.contains("before=256") && !line.contains("now=256"), "{line}");
    drop(server);

    // With the hard limit low too, descriptors run out: accept fails, and
    // the server waits instead of spinning and flooding its log.
    let mut server = Proc::spawn(Command::new("bash").args([
        "-c",
        &format!(
            "ulimit -n 40 && exec {} --listen 127.0.0.1:0 --ephemeral --max-connections-per-ip 1000",
            bin("chat-server").display()
        ),
    ]));
    let line = server.expect_where(|l| l.starts_with("listening on http://"), "listening");
    let addr = line.trim_start_matches("listening on http://").to_owned();
    let mut held = Vec::new();
    for _ in 0..60 {
        if let Ok(stream) = std::net::TcpStream::connect(&addr) {
            held.push(stream);
        }
    }
    let first = server.expect_stderr("accept failed");
    assert!(first.contains("failures=1"), "{first}");
    // Two seconds of failures: logged about once a second, not per failure.
    let deadline = std::time::Instant::now() + Duration::from_secs(2);
    let mut logged = 0;
    while let Some(left) = deadline.checked_duration_since(std::time::Instant::now()) {
        if let Ok(line) = server.stderr.recv_timeout(left)
            && line.contains("accept failed")
        {
            logged += 1;
        }
    }
    assert!(logged <= 3, "{logged} accept failures logged in two seconds");
    // Once the descriptors are free again, the server answers.
    drop(held);
    let mut health = None;
    for _ in 0..50 {
        std::thread::sleep(Duration::from_millis(100));
        if let Ok(mut stream) = std::net::TcpStream::connect(&addr) {
            use std::io::Read;
            let request = format!("GET /healthz HTTP/1.1\r\nHost: {addr}\r\n\r\n");
            stream.write_all(request.as_bytes()).unwrap();
            let mut answer = String::new();
            let _ = stream.read_to_string(&mut answer);
            if answer.starts_with("HTTP/1.1 200") {
                health = Some(answer);
                break;
            }
        }
    }
    assert!(health.is_some(), "the server never answered again");
}
