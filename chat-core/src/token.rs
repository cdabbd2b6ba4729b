use std::fmt;
use std::sync::Arc;

use crate::NameError;

/// The secret that names a session across reconnects.
///
/// The core never invents one (it has no randomness): the driver proposes a
/// fresh, unguessable token for every connection, and a client resuming a
/// session presents the token it was given in `welcome`. 1 to 64 ASCII
/// letters, digits, `-` or `_`.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SessionToken(Arc<str>);

impl SessionToken {
    /// The most bytes in a token.
    pub const MAX_BYTES: usize = 64;

    /// Parses a token presented by a client or made by the driver.
    ///
    /// # Errors
    /// Refuses an empty token, one over [`SessionToken::MAX_BYTES`] bytes,
    /// and any character other than an ASCII letter, digit, `-` or `_`.
    pub fn parse(text: &str) -> Result<Self, NameError> {
        if text.is_empty() {
            return Err(NameError::Empty);
        }
        if text.len() > Self::MAX_BYTES {
            return Err(NameError::TooLong { max: Self::MAX_BYTES });
        }
        if let Some(found) =
            text.chars().find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_')))
        {
            return Err(NameError::BadChar {
                found,
                allowed: "ASCII letters, digits, '-' and '_'",
            });
        }
        Ok(Self(text.into()))
    }

    /// The token.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Tokens are secrets: debug output shows only their start.
impl fmt::Debug for SessionToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shown: String = self.0.chars().take(4).collect();
        write!(f, "SessionToken({shown}…)")
    }
}
