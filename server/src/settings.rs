//! `--config FILE`: the same settings as the flags, in a TOML file whose
//! keys are the long flag names (`listen = "0.0.0.0:8080"`,
//! `max-connections-per-ip = 64`, `allowed-origin = ["https://a.example"]`).
//!
//! A file's settings become flags placed before the command line's, unless
//! the command line or the environment already sets them, so what wins is:
//! flag, then environment, then file, then the built-in default.

use std::ffi::OsString;

use anyhow::{Context, bail};

/// The command line with the settings of its `--config` file (or
/// `CHAT_CONFIG`) merged in. `flags` are the long names the program
/// knows, each with its environment variable.
///
/// # Errors
/// The file cannot be read or parsed, or names a setting no flag has, or
/// gives one a value of the wrong shape.
pub fn merge(
    args: Vec<OsString>,
    config_from_env: Option<OsString>,
    flags: &[(String, Option<String>)],
) -> anyhow::Result<Vec<OsString>> {
    let Some(path) = config_path(&args).or(config_from_env) else {
        return Ok(args);
    };
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("reading the config file {}", path.to_string_lossy()))?;
    let table: toml::Table = text.parse().map_err(|err: toml::de::Error| {
        // One line, where the mistake is: the error's own display draws
        // the line under a caret.
        let at = err.span().map_or(0, |span| span.start).min(text.len());
        let line = text.get(..at).map_or(0, |before| before.matches('\n').count()) + 1;
        let column = text
            .get(..at)
            .map_or(0, |before| before.len() - before.rfind('\n').map_or(0, |n| n + 1))
            + 1;
        anyhow::anyhow!(
            "parsing the config file {}: line {line}, column {column}: {}",
            path.to_string_lossy(),
            err.message().trim()
        )
    })?;
    let mut from_file = Vec::new();
    for (key, value) in table {
        let name = key.replace('_', "-");
        let Some((_, env)) = flags.iter().find(|(flag, _)| *flag == name) else {
            bail!("{}: no setting is called {key:?}", path.to_string_lossy());
        };
        let on_command_line = args.iter().any(|arg| {
            let arg = arg.to_string_lossy();
            arg == format!("--{name}") || arg.starts_with(&format!("--{name}="))
        });
        let in_environment = env.as_ref().is_some_and(|env| std::env::var_os(env).is_some());
        if on_command_line || in_environment {
            continue;
        }
        let flag = format!("--{name}");
        match value {
            toml::Value::Boolean(true) => from_file.push(flag.into()),
            toml::Value::Boolean(false) => {}
            toml::Value::Array(items) => {
                for item in items {
                    from_file.push(flag.clone().into());
                    from_file.push(scalar(&path, &key, item)?);
                }
            }
            other => {
                from_file.push(flag.into());
                from_file.push(scalar(&path, &key, other)?);
            }
        }
    }
    let mut merged = Vec::with_capacity(args.len() + from_file.len());
    let mut args = args.into_iter();
    merged.extend(args.next());
    merged.extend(from_file);
    merged.extend(args);
    Ok(merged)
}

/// The value of `--config FILE` or `--config=FILE` on the command line.
fn config_path(args: &[OsString]) -> Option<OsString> {
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        if arg == "--config" {
            return args.next().cloned();
        }
        if let Some(path) = arg.to_str().and_then(|arg| arg.strip_prefix("--config=")) {
            return Some(path.into());
        }
    }
    None
}

fn scalar(path: &OsString, key: &str, value: toml::Value) -> anyhow::Result<OsString> {
    Ok(match value {
        toml::Value::String(text) => text.into(),
        toml::Value::Integer(number) => number.to_string().into(),
        toml::Value::Float(number) => number.to_string().into(),
        other => bail!("{}: {key} cannot be {other}", path.to_string_lossy()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flags() -> Vec<(String, Option<String>)> {
        vec![
            ("listen".into(), Some("CHAT_TEST_LISTEN_UNSET".into())),
            ("ephemeral".into(), None),
            ("allowed-origin".into(), None),
            ("max-connections-per-ip".into(), None),
            ("messages-per-sec".into(), Some("CHAT_TEST_SURELY_UNSET".into())),
            ("config".into(), None),
        ]
    }

    fn os(args: &[&str]) -> Vec<OsString> {
        args.iter().map(OsString::from).collect()
    }

    fn file(text: &str) -> (tempfile::TempDir, String) {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let path = dir.path().join("chat.toml");
        std::fs::write(&path, text).unwrap_or_else(|e| panic!("{e}"));
        let path = path.to_string_lossy().into_owned();
        (dir, path)
    }

    #[test]
    fn file_settings_come_before_the_command_line_and_yield_to_it() {
        let (_dir, path) = file(
            "listen = \"0.0.0.0:9000\"\nephemeral = true\nmax_connections_per_ip = 64\n\
             allowed-origin = [\"https://a.example\", \"https://b.example\"]\n",
        );
        let args = os(&["chat-server", "--config", &path, "--listen", "127.0.0.1:0"]);
        let merged = merge(args, None, &flags()).unwrap_or_else(|e| panic!("{e:#}"));
        let merged: Vec<String> = merged.iter().map(|a| a.to_string_lossy().into_owned()).collect();
        assert_eq!(merged[0], "chat-server");
        assert!(!merged.contains(&"0.0.0.0:9000".to_owned()), "the command line wins: {merged:?}");
        assert!(merged.contains(&"--ephemeral".to_owned()));
        let at = merged.iter().position(|a| a == "--max-connections-per-ip").unwrap_or(0);
        assert_eq!(merged[at + 1], "64");
        assert_eq!(merged.iter().filter(|a| *a == "--allowed-origin").count(), 2);
        assert_eq!(merged.last().map(String::as_str), Some("127.0.0.1:0"));
    }

    #[test]
    fn the_environment_names_the_file_too_and_mistakes_are_errors() {
        let (_dir, path) = file("messages-per-sec = 3\n");
        let merged = merge(os(&["chat-server"]), Some(path.clone().into()), &flags())
            .unwrap_or_else(|e| panic!("{e:#}"));
        assert_eq!(merged.len(), 3);
        let (_dir, unknown) = file("colour = \"blue\"\n");
        let err = merge(os(&["chat-server", "--config", &unknown]), None, &flags());
        assert!(err.is_err_and(|e| e.to_string().contains("colour")));
        let (_dir, broken) = file("listen = \n");
        assert!(merge(os(&["chat-server", "--config", &broken]), None, &flags()).is_err());
        let (_dir, table) = file("[listen]\nx = 1\n");
        assert!(merge(os(&["chat-server", "--config", &table]), None, &flags()).is_err());
        assert!(merge(os(&["chat-server", "--config", "/no/such/file"]), None, &flags()).is_err());
        assert_eq!(merge(os(&["chat-server"]), None, &flags()).map(|a| a.len()).ok(), Some(1));
    }
}
