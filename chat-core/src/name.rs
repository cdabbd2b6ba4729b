use std::fmt;
use std::sync::Arc;

/// Why a user-typed nick or room name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// The name is empty.
    #[error("name is empty")]
    Empty,
    /// The name has more characters than allowed.
    #[error("name is longer than {max} characters")]
    TooLong {
        /// The most characters allowed.
        max: usize,
    },
    /// The name holds a character that is not allowed.
    #[error("character {found:?} is not allowed; use {allowed}")]
    BadChar {
        /// The first character refused.
        found: char,
        /// What is allowed, for a human.
        allowed: &'static str,
    },
}

/// A nick: 1 to 32 characters, each a letter, a digit, `-`, `_` or `.`.
///
/// Nicks are unique case-insensitively: [`Nick::folded`] is the key two
/// nicks collide on. The nick keeps the case its owner chose for display.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Nick(Arc<str>);

/// A room name: 1 to 64 characters, each an ASCII lowercase letter, a digit,
/// `-` or `_`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RoomName(Arc<str>);

impl Nick {
    /// The most characters in a nick.
    pub const MAX_CHARS: usize = 32;

    /// Parses a user-typed nick.
    ///
    /// # Errors
    /// Refuses an empty nick, one over [`Nick::MAX_CHARS`] characters, and
    /// any character other than a letter, a digit, `-`, `_` or `.`.
    pub fn parse(text: &str) -> Result<Self, NameError> {
        check(text, Self::MAX_CHARS, "letters, digits, '-', '_' and '.'", |c| {
            c.is_alphanumeric() || matches!(c, '-' | '_' | '.')
        })?;
        Ok(Self(text.into()))
    }

    /// The nick as its owner wrote it.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The key nicks are compared on for uniqueness: the nick in lowercase.
    pub fn folded(&self) -> String {
        self.0.to_lowercase()
    }
}

impl RoomName {
    /// The most characters in a room name.
    pub const MAX_CHARS: usize = 64;

    /// Parses a user-typed room name.
    ///
    /// # Errors
    /// Refuses an empty name, one over [`RoomName::MAX_CHARS`] characters,
    /// and any character other than `a`-`z`, `0`-`9`, `-` and `_`.
    pub fn parse(text: &str) -> Result<Self, NameError> {
        check(text, Self::MAX_CHARS, "'a'-'z', '0'-'9', '-' and '_'", |c| {
            c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '_')
        })?;
        Ok(Self(text.into()))
    }

    /// The room name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

fn check(
    text: &str,
    max: usize,
    allowed: &'static str,
    is_allowed: impl Fn(char) -> bool,
) -> Result<(), NameError> {
    if text.is_empty() {
        return Err(NameError::Empty);
    }
    if text.chars().nth(max).is_some() {
        return Err(NameError::TooLong { max });
    }
    match text.chars().find(|&c| !is_allowed(c)) {
        Some(found) => Err(NameError::BadChar { found, allowed }),
        None => Ok(()),
    }
}

impl fmt::Display for Nick {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Display for RoomName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nicks() {
        let ok = ["a", "alice", "Bob_2", "x.y-z", "Zoë", "名前", &"n".repeat(32)];
        for text in ok {
            assert_eq!(Nick::parse(text).map(|n| n.as_str().to_owned()), Ok(text.to_owned()));
        }
        let bad: &[(&str, NameError)] = &[
            ("", NameError::Empty),
            (&"n".repeat(33), NameError::TooLong { max: 32 }),
            (
                "a b",
                NameError::BadChar { found: ' ', allowed: "letters, digits, '-', '_' and '.'" },
            ),
            (
                "<img>",
                NameError::BadChar { found: '<', allowed: "letters, digits, '-', '_' and '.'" },
            ),
        ];
        for (text, err) in bad {
            assert_eq!(Nick::parse(text), Err(err.clone()), "{text:?}");
        }
    }

    #[test]
    fn nick_length_counts_characters_not_bytes() {
        assert!(Nick::parse(&"é".repeat(32)).is_ok());
        assert_eq!(Nick::parse(&"é".repeat(33)), Err(NameError::TooLong { max: 32 }));
    }

    #[test]
    fn nicks_fold_case() {
        let upper = Nick::parse("ALICE").map(|n| n.folded());
        assert_eq!(upper, Ok("alice".to_owned()));
    }

    #[test]
    fn rooms() {
        for text in ["lobby", "a", "dev-ops_2", &"r".repeat(64)] {
            assert!(RoomName::parse(text).is_ok(), "{text:?}");
        }
        assert_eq!(RoomName::parse(""), Err(NameError::Empty));
        assert_eq!(RoomName::parse(&"r".repeat(65)), Err(NameError::TooLong { max: 64 }));
        for text in ["Lobby", "a b", "é", "a.b", "#x"] {
            assert!(matches!(RoomName::parse(text), Err(NameError::BadChar { .. })), "{text:?}");
        }
    }
}
