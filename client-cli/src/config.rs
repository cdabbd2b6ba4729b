//! The client's config file, `~/.config/chat/config.toml` (or
//! `$XDG_CONFIG_HOME/chat/config.toml`, or `--config FILE`):
//!
//! ```toml
//! server = "wss://chat.example.org/ws"
//! nick = "alice"
//! rooms = ["lobby", "dev"]       # joined at start
//! # token = "..."                # for servers with authentication on
//! # ca = "/path/to/ca.pem"       # for a private certificate authority
//! [colors]
//! nicks = ["cyan", "green", "yellow", "magenta", "#ff8800"]
//! mention = "lightred"           # a view that mentions you, in the room list
//! status = "blue"                # the status bar while connected
//! ```
//!
//! What wins: a flag, then its environment variable, then the file, then
//! the built-in default. `chat --print-config` shows the outcome.

use std::path::{Path, PathBuf};
use std::str::FromStr;

use anyhow::{Context, bail};
use ratatui::style::Color;
use serde::{Deserialize, Serialize};

use crate::tui::view::Palette;

/// The server used when nothing names one.
pub const DEFAULT_SERVER: &str = "ws://127.0.0.1:8080/ws";
/// The room joined when nothing names one.
pub const DEFAULT_ROOM: &str = "lobby";

/// The file's settings, each optional.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct File {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nick: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rooms: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub colors: Option<Colors>,
}

/// `[colors]`: names (`red`, `lightblue`, `darkgray`...), `#rrggbb`, or a
/// 256-colour index.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Colors {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nicks: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mention: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
}

/// Where the config file is looked for when `--config` does not say.
pub fn default_path() -> Option<PathBuf> {
    let config = std::env::var_os("XDG_CONFIG_HOME")
        .filter(|dir| !dir.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| Path::new(&home).join(".config")))?;
    Some(config.join("chat").join("config.toml"))
}

/// Reads the config file: the one named (which must exist), or the default
/// one if there is one.
///
/// # Errors
/// The file cannot be read, is not TOML, or has a setting this client does
/// not know or of the wrong type.
pub fn load(named: Option<&Path>) -> anyhow::Result<(Option<PathBuf>, File)> {
    let (path, must_exist) = match named {
        Some(path) => (path.to_path_buf(), true),
        None => match default_path() {
            Some(path) => (path, false),
            None => return Ok((None, File::default())),
        },
    };
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound && !must_exist => {
            return Ok((None, File::default()));
        }
        Err(err) => {
            return Err(err).with_context(|| format!("reading the config file {}", path.display()));
        }
    };
    let file: File =
        toml::from_str(&text).with_context(|| format!("in the config file {}", path.display()))?;
    file.palette().with_context(|| format!("in the config file {}", path.display()))?;
    Ok((Some(path), file))
}

fn colour(name: &str) -> anyhow::Result<Color> {
    match Color::from_str(name) {
        Ok(colour) => Ok(colour),
        Err(_) => {
            bail!("{name:?} is not a colour (a name like \"lightblue\", \"#rrggbb\", or 0-255)")
        }
    }
}

impl File {
    /// The colours, defaults filled in.
    ///
    /// # Errors
    /// A colour cannot be read, or `nicks` is empty.
    pub fn palette(&self) -> anyhow::Result<Palette> {
        let mut palette = Palette::default();
        let Some(colors) = &self.colors else {
            return Ok(palette);
        };
        if let Some(nicks) = &colors.nicks {
            if nicks.is_empty() {
                bail!("colors.nicks needs at least one colour");
            }
            palette.nicks = nicks.iter().map(|name| colour(name)).collect::<Result<_, _>>()?;
        }
        if let Some(mention) = &colors.mention {
            palette.mention = colour(mention)?;
        }
        if let Some(status) = &colors.status {
            palette.status = colour(status)?;
        }
        Ok(palette)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_file_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        std::fs::write(
            &path,
            r##"server = "wss://chat.example.org/ws"
nick = "alice"
rooms = ["lobby", "dev"]
[colors]
nicks = ["cyan", "#ff8800", "202"]
mention = "yellow"
"##,
        )
        .unwrap();
        let (found, file) = load(Some(&path)).unwrap();
        assert_eq!(found.as_deref(), Some(path.as_path()));
        assert_eq!(file.server.as_deref(), Some("wss://chat.example.org/ws"));
        assert_eq!(file.rooms, Some(vec!["lobby".to_owned(), "dev".to_owned()]));
        let palette = file.palette().unwrap();
        assert_eq!(
            palette.nicks,
            vec![Color::Cyan, Color::Rgb(0xff, 0x88, 0), Color::Indexed(202)]
        );
        assert_eq!(palette.mention, Color::Yellow);
        assert_eq!(palette.status, Palette::default().status);
    }

    #[test]
    fn mistakes_are_reported_with_the_file_name() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        for (text, says) in [
            ("servr = \"x\"", "unknown field `servr`"),
            ("rooms = \"lobby\"", "invalid type"),
            ("[colors]\nmention = \"blurple\"", "\"blurple\" is not a colour"),
            ("[colors]\nnicks = []", "at least one colour"),
            ("nick = ", "in the config file"),
        ] {
            std::fs::write(&path, text).unwrap();
            let err = format!("{:#}", load(Some(&path)).unwrap_err());
            assert!(err.contains(says), "{text:?}: {err}");
            assert!(err.contains("config.toml"), "{err}");
        }
    }

    #[test]
    fn a_named_file_must_exist() {
        let dir = tempfile::tempdir().unwrap();
        let err = load(Some(&dir.path().join("missing.toml"))).unwrap_err();
        assert!(format!("{err:#}").contains("reading the config file"), "{err:#}");
    }
}
