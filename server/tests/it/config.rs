//! `chat-server check-config` and `print-config`, and mistakes at start:
//! the real binary, its settings from flags and a config file (issue #19).

use std::process::{Command, Output};

use chat_test_support::bin;

fn server(args: &[&str]) -> Output {
    Command::new(bin("chat-server"))
        .args(args)
        // A backtrace, if any were printed, would show with this set.
        .env("RUST_BACKTRACE", "1")
        .env_remove("CHAT_CONFIG")
        .output()
        .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A mistake: exit 1 and one line on stderr saying it.
fn refused(output: &Output) -> String {
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    let stderr = text(&output.stderr);
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
    assert!(stderr.starts_with("error: "), "{stderr}");
    stderr
}

#[test]
fn a_good_config_file_is_checked_and_its_effective_settings_printed_secrets_hidden() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("chat.toml");
    std::fs::write(
        &file,
        "listen = \"127.0.0.1:9999\"\nmax-upload = \"1MiB\"\n\
         allowed-origin = [\"https://a.example\", \"https://b.example\"]\n\
         auth-secret = \"0123456789abcdef0123456789abcdef-very-secret\"\n",
    )
    .unwrap();
    let output = server(&["check-config", "--config", file.to_str().unwrap()]);
    assert!(output.status.success(), "{output:?}");
    let said = text(&output.stdout);
    for line in [
        "listen = \"127.0.0.1:9999\"",
        "max-upload = \"1MiB\"",
        "allowed-origin = [\"https://a.example\", \"https://b.example\"]",
        "auth-secret = \"(set, not shown)\"",
        "drain-window = \"10s\"",
    ] {
        assert!(said.lines().any(|l| l == line), "no {line:?} in\n{said}");
    }
    assert!(!said.contains("very-secret"), "{said}");
    // A flag beats the file.
    let output =
        server(&["--max-upload", "2MiB", "check-config", "--config", file.to_str().unwrap()]);
    assert!(text(&output.stdout).lines().any(|l| l == "max-upload = \"2MiB\""), "{output:?}");
}

#[test]
fn mistakes_are_one_line_and_exit_1_at_a_check_as_at_a_start() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, body: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, body).unwrap();
        path.to_str().unwrap().to_owned()
    };
    let cases = [
        (write("unknown.toml", "max-uploads = \"1MiB\"\n"), "no setting is called \"max-uploads\""),
        (write("short.toml", "auth-secret = \"short\"\n"), "at least 32 bytes"),
        (write("proxy.toml", "trusted-proxy = [\"nonsense\"]\n"), "--trusted-proxy nonsense"),
        (write("broken.toml", "listen = \n"), "parsing the config file"),
    ];
    for (file, why) in &cases {
        let stderr = refused(&server(&["check-config", "--config", file]));
        assert!(stderr.contains(why), "{file}: {stderr}");
        // The same file stops a start the same way, before it binds.
        let stderr = refused(&server(&["--config", file, "--listen", "127.0.0.1:0"]));
        assert!(stderr.contains(why), "{file}: {stderr}");
    }
    // A port in use (found after the start's first log lines): one line
    // too, and no backtrace.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let output = server(&["--listen", &addr, "--ephemeral"]);
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    let stderr = text(&output.stderr);
    let last = stderr.lines().last().unwrap_or_default();
    assert!(last.starts_with(&format!("error: binding {addr}: ")), "{stderr}");
    assert!(!stderr.contains("backtrace"), "{stderr}");
}

#[test]
fn print_config_writes_every_setting_at_its_default_and_uncommented_it_checks() {
    let output = server(&["print-config"]);
    assert!(output.status.success(), "{output:?}");
    let file = text(&output.stdout);
    assert!(file.parse::<toml::Table>().unwrap().is_empty(), "all commented out");
    for line in ["# listen = \"127.0.0.1:8080\"", "# max-upload = \"8MiB\"", "# ephemeral = false"]
    {
        assert!(file.lines().any(|l| l == line), "no {line:?} in\n{file}");
    }
    // Uncommented, every setting at its default is a config a start takes.
    let uncommented: String = file
        .lines()
        .map(|line| match line.strip_prefix("# ") {
            Some(setting) if is_setting_line(setting) => format!("{setting}\n"),
            _ => format!("{line}\n"),
        })
        .collect();
    let settings = uncommented.parse::<toml::Table>().unwrap();
    assert!(settings.len() > 40, "{settings:?}");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("all.toml");
    std::fs::write(&path, &uncommented).unwrap();
    let output = server(&["check-config", "--config", path.to_str().unwrap()]);
    assert!(output.status.success(), "{output:?}");
}

/// Whether a commented line is a setting (`key = value`), not prose.
fn is_setting_line(line: &str) -> bool {
    line.split_once(" = ").is_some_and(|(key, _)| {
        !key.is_empty()
            && key.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
    })
}
