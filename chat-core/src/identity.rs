//! Who a verified access token says a client is. The driver checks the
//! token (signature, format, clock); the core enforces what it grants: the
//! nick a session is bound to, the rooms it may join, and until when.

use crate::{RoomName, Timestamp};

/// A verified identity, handed to the core with `hello` or `auth`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The nick the session is bound to.
    pub nick: String,
    /// The rooms it may join; `None` for every room.
    pub rooms: Option<Vec<RoomPattern>>,
    /// When the identity stops being valid; the session ends then unless
    /// an `auth` renewed it.
    pub expires: Timestamp,
}

/// A room name pattern: `*` matches any run of characters, everything else
/// itself (`team-*`, `lobby`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomPattern(String);

impl RoomPattern {
    /// A pattern from its text.
    pub fn new(text: &str) -> Self {
        Self(text.to_owned())
    }

    /// Whether `room` matches.
    pub fn matches(&self, room: &RoomName) -> bool {
        glob(self.0.as_bytes(), room.as_str().as_bytes())
    }
}

/// Wildcard matching with `*` only, in linear time (backtracking to the
/// last `*`).
fn glob(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while let Some(&current) = text.get(t) {
        match pattern.get(p) {
            Some(b'*') => {
                star = Some((p, t));
                p += 1;
            }
            Some(&c) if c == current => {
                p += 1;
                t += 1;
            }
            _ => match star {
                Some((star_p, star_t)) => {
                    p = star_p + 1;
                    t = star_t + 1;
                    star = Some((star_p, star_t + 1));
                }
                None => return false,
            },
        }
    }
    pattern.get(p..).unwrap_or_default().iter().all(|&c| c == b'*')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn room(name: &str) -> RoomName {
        RoomName::parse(name).unwrap_or_else(|e| panic!("{name}: {e}"))
    }

    #[test]
    fn stars_match_any_run_and_the_rest_matches_itself() {
        let team = RoomPattern::new("team-*");
        assert!(team.matches(&room("team-a")));
        assert!(team.matches(&room("team-")));
        assert!(!team.matches(&room("teams")));
        assert!(!team.matches(&room("lobby")));
        assert!(RoomPattern::new("*").matches(&room("anything")));
        assert!(RoomPattern::new("lobby").matches(&room("lobby")));
        assert!(!RoomPattern::new("lobby").matches(&room("lobby2")));
        assert!(RoomPattern::new("a*b*c").matches(&room("axxbyyc")));
        assert!(!RoomPattern::new("a*b*c").matches(&room("axxbyy")));
        assert!(RoomPattern::new("*-ops").matches(&room("db-ops")));
        assert!(!RoomPattern::new("").matches(&room("a")));
    }
}
