use std::fmt;
use std::sync::Arc;

use unicode_normalization::UnicodeNormalization;
use unicode_normalization::char::is_combining_mark;

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

/// A nick: 1 to 32 characters, each a letter, a digit, `-`, `_` or `.`,
/// in Unicode normalization form C, not starting with a combining mark.
///
/// Nicks are unique by how they look, not by their code points:
/// [`Nick::folded`] is the key two nicks collide on, so `Alice`, `аlice`
/// (with a Cyrillic `а`), `𝐚𝐥𝐢𝐜𝐞` and `aIice` (a capital `I`) are all the
/// same nick. The nick keeps the spelling its owner chose for display.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Nick(
    /// The display spelling, then, if folding changes it, `\0` and the
    /// folded key: computed once (folding runs Unicode tables), in one
    /// allocation. No nick holds `\0`, and it sorts before every other
    /// character, so nicks compare as their display spellings do.
    Arc<str>,
);

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
        const ALLOWED: &str = "letters, digits, '-', '_' and '.'";
        let text: String = text.nfc().collect();
        check(&text, Self::MAX_CHARS, ALLOWED, |c| {
            c.is_alphanumeric() || matches!(c, '-' | '_' | '.')
        })?;
        if let Some(found) = text.chars().next().filter(|&c| is_combining_mark(c)) {
            return Err(NameError::BadChar { found, allowed: ALLOWED });
        }
        let folded = fold(&text);
        if folded.is_empty() {
            return Err(NameError::Empty);
        }
        if folded == text {
            return Ok(Self(text.into()));
        }
        Ok(Self(format!("{text}\0{folded}").into()))
    }

    /// What the nick takes in memory, its key included.
    pub(crate) fn stored_len(&self) -> usize {
        self.0.len()
    }

    /// The nick as its owner wrote it.
    pub fn as_str(&self) -> &str {
        self.0.split('\0').next().unwrap_or(&self.0)
    }

    /// The key nicks are compared on for uniqueness: what the nick looks
    /// like, whatever the script, case, compatibility form or marks.
    pub fn folded(&self) -> &str {
        self.0.split_once('\0').map_or(&self.0, |(_, folded)| folded)
    }
}

/// The uniqueness key of a nick: its compatibility form (mathematical and
/// full-width letters become plain ones), its confusable skeleton (Unicode
/// TR39: Cyrillic `а` and Latin `a`, `I`, `1` and `l`, `0` and `O` look
/// alike), in lowercase, without combining marks, skeletonized again so
/// that lowercasing cannot split what looked alike. Since `I` looks like
/// `l` and is `i` in another case, `i` and `l` are one letter here.
fn fold(text: &str) -> String {
    let compatible: String = text.nfkc().collect();
    let skeleton: String = unicode_security::skeleton(&compatible).collect();
    let lower = skeleton.to_lowercase();
    unicode_security::skeleton(&lower)
        .filter(|&c| !is_combining_mark(c))
        .map(|c| if c == 'i' { 'l' } else { c })
        .collect()
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

    /// The name under which the direct messages between two parties are
    /// numbered and stored, like a room's: `~` and the two party keys in
    /// order, space-separated. No room name can look like it, and it never
    /// goes on the wire (a conversation is named there by the other
    /// party's nick).
    pub(crate) fn conversation(a: &str, b: &str) -> Self {
        let (first, second) = if a <= b { (a, b) } else { (b, a) };
        Self(format!("~{first} {second}").into())
    }

    /// Parses a name as storage holds it: a room name, or a conversation's.
    ///
    /// # Errors
    /// Neither a room name nor a conversation's.
    pub fn parse_stored(text: &str) -> Result<Self, NameError> {
        match text.strip_prefix('~').and_then(|parties| parties.split_once(' ')) {
            Some((a, b)) if is_party(a) && is_party(b) && a <= b => Ok(Self(text.into())),
            _ => Self::parse(text),
        }
    }

    /// Whether this names a conversation (direct messages), not a room.
    pub fn is_conversation(&self) -> bool {
        self.0.starts_with('~')
    }

    /// The public name of a conversation: what clients call it, which
    /// says nothing of the parties (tokens are secrets): `~` and 16 hex
    /// digits of a 64-bit FNV-1a hash of the name, the same on every node
    /// and across restarts.
    pub fn conversation_key(&self) -> String {
        let hash = self.0.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| {
            (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3)
        });
        format!("~{hash:016x}")
    }

    /// A conversation's two party keys, in order.
    pub(crate) fn parties(&self) -> Option<(&str, &str)> {
        self.0.strip_prefix('~')?.split_once(' ')
    }

    /// The room name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A party key: a session token, or `@` and a verified identity's folded
/// nick.
fn is_party(text: &str) -> bool {
    let key = text.strip_prefix('@').unwrap_or(text);
    !key.is_empty() && !key.contains([' ', '~']) && !key.chars().any(char::is_control)
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
        f.write_str(self.as_str())
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
        let upper = Nick::parse("ALICE").map(|n| n.folded().to_owned());
        assert_eq!(upper, Nick::parse("alice").map(|n| n.folded().to_owned()));
    }

    #[test]
    fn look_alike_nicks_fold_to_the_same_key() {
        let alice = Nick::parse("alice").map(|n| n.folded().to_owned());
        assert!(alice.is_ok());
        for look_alike in [
            "Alice",
            "\u{430}lice",                                   // Cyrillic а
            "\u{1d41a}\u{1d425}\u{1d422}\u{1d41c}\u{1d41e}", // mathematical bold
            "\u{ff41}lice",                                  // full-width a
            "aIice",                                         // capital I for l
            "a1ice",                                         // digit one for l
            "alice\u{301}",                                  // a combining acute
            "ALICE",
        ] {
            let folded = Nick::parse(look_alike).map(|n| n.folded().to_owned());
            assert_eq!(folded, alice, "{look_alike:?}");
        }
        for different in ["alicia", "bob", "al1ce2"] {
            assert_ne!(Nick::parse(different).map(|n| n.folded().to_owned()), alice);
        }
    }

    #[test]
    fn nicks_are_kept_composed_and_do_not_start_with_a_mark() {
        let composed = Nick::parse("Zoe\u{308}").map(|n| n.as_str().to_owned());
        assert_eq!(composed, Ok("Zo\u{eb}".to_owned()));
        assert!(matches!(Nick::parse("\u{301}alice"), Err(NameError::BadChar { .. })));
    }

    #[test]
    fn conversation_names_are_ordered_stored_and_never_rooms() {
        let name = RoomName::conversation("tok-b", "@alice");
        assert_eq!(name, RoomName::conversation("@alice", "tok-b"), "either way round");
        assert_eq!(name.parties(), Some(("@alice", "tok-b")));
        assert!(name.is_conversation());
        assert_eq!(RoomName::parse_stored(name.as_str()), Ok(name.clone()));
        assert!(RoomName::parse(name.as_str()).is_err(), "no one can join it");
        assert_eq!(RoomName::parse_stored("lobby"), RoomName::parse("lobby"));
        for text in ["~", "~a", "~b a", "~a b c", "~ a", "~a~b", "Lobby"] {
            assert!(RoomName::parse_stored(text).is_err(), "{text:?}");
        }
        assert!(!RoomName::parse("lobby").is_ok_and(|room| room.is_conversation()));
        let key = name.conversation_key();
        assert_eq!((key.len(), key.starts_with('~')), (17, true));
        assert!(!key.contains("tok-b") && !key.contains("alice"), "{key}");
        assert_ne!(key, RoomName::conversation("tok-c", "@alice").conversation_key());
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
