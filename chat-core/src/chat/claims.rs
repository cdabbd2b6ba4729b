//! Nicks in cluster mode: a nick is unique across every core sharing the
//! engine, so a new session's `hello` and a `nick` change wait for the
//! engine to grant the claim ([`Output::Claim`], answered with
//! [`Chat::handle_claimed`]), and a nick let go is released
//! ([`Output::Release`]). A session restored at start claims its nick
//! again; one another session took meanwhile ends.

use std::sync::Arc;

use super::{Asker, Chat, Grant};
use crate::id::SessionId;
use crate::{CommandError, Event, MemberId, Nick, Output, SessionToken, Timestamp};

/// How long a command refused because the shared engine could not be
/// reached should wait before it is sent again.
pub(super) const RETRY_AFTER_MS: u64 = 1000;

/// Guest nicks tried for one `hello` before it is refused.
const GUEST_ATTEMPTS: u32 = 8;

/// What the engine answers a claim of a nick.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClaimAnswer {
    /// The nick is the session's now (or was already).
    Granted,
    /// Another session holds it.
    Taken,
    /// The engine could not be reached: nothing is known.
    Unavailable,
}

/// A claim out, with what waits for its answer.
#[derive(Debug)]
pub(super) struct Claim {
    nick: Nick,
    token: SessionToken,
    waiting: Waiting,
}

/// What waits for a claim's answer.
#[derive(Debug)]
enum Waiting {
    /// A new session's `hello`; `guest` counts the guest nicks tried, if
    /// the client asked for none.
    Hello { member: MemberId, id: Option<Arc<str>>, grant: Option<Grant>, guest: Option<u32> },
    /// A `nick` change.
    Rename(Asker),
    /// A session restored at start, holding its nick here meanwhile.
    Restored(SessionId),
}

impl Chat {
    /// Claims `nick` (a guest nick if `None`) for the session `hello` of
    /// `member` will start under `token`; its commands wait for the answer.
    pub(super) fn claim_for_hello(
        &mut self,
        member: MemberId,
        id: Option<Arc<str>>,
        token: SessionToken,
        nick: Option<Nick>,
        grant: Option<Grant>,
    ) {
        let (nick, guest) = match nick {
            Some(nick) => (nick, None),
            None => (self.shared_guest_nick(&token, 0), Some(0)),
        };
        self.park_for(member);
        self.claim(nick, token, Waiting::Hello { member, id, grant, guest });
    }

    /// Claims `new` for the session of `asker`, which asked to be renamed.
    pub(super) fn claim_for_rename(&mut self, asker: Asker, new: Nick) {
        let Some(token) = self.sessions.get(&asker.session).map(|s| s.token.clone()) else {
            return;
        };
        self.park_for(asker.member);
        self.claim(new, token, Waiting::Rename(asker));
    }

    /// Claims the nick of session `sid`, restored at start.
    pub(super) fn claim_restored(&mut self, sid: SessionId) {
        let Some(session) = self.sessions.get(&sid) else {
            return;
        };
        // Held here already: nothing waits for the answer but the session.
        let (nick, token) = (session.nick.clone(), session.token.clone());
        self.claim(nick, token, Waiting::Restored(sid));
    }

    fn claim(&mut self, nick: Nick, token: SessionToken, waiting: Waiting) {
        self.outputs.push_back(Output::Claim { nick: nick.clone(), token: token.clone() });
        self.claims.insert(Arc::from(nick.folded()), Claim { nick, token, waiting });
    }

    /// The engine's answer to the [`Output::Claim`] of `nick`.
    pub(super) fn claimed(&mut self, now: Timestamp, nick: &Nick, answer: ClaimAnswer) {
        let Some(Claim { nick, token, waiting }) = self.claims.remove(nick.folded()) else {
            return;
        };
        match waiting {
            Waiting::Hello { member, id, grant, guest } => {
                let here = self.conns.get(&member).is_some_and(|conn| conn.session.is_none());
                if !here {
                    // Gone meanwhile: what it was granted goes back.
                    if answer == ClaimAnswer::Granted {
                        self.outputs.push_back(Output::Release { nick, token });
                    }
                    return;
                }
                match answer {
                    ClaimAnswer::Granted => {
                        self.start_session(now, member, &id, token, nick, grant, None);
                    }
                    ClaimAnswer::Taken => match guest {
                        Some(tried) if tried + 1 < GUEST_ATTEMPTS => {
                            // Still waiting: another guest nick is claimed.
                            let nick = self.shared_guest_nick(&token, tried + 1);
                            let guest = Some(tried + 1);
                            let waiting = Waiting::Hello { member, id, grant, guest };
                            self.claim(nick, token, waiting);
                            return;
                        }
                        _ => self.reply(
                            member,
                            Event::Error { id, error: CommandError::NickTaken(nick) },
                        ),
                    },
                    ClaimAnswer::Unavailable => {
                        let error =
                            CommandError::SharedUnavailable { retry_after_ms: RETRY_AFTER_MS };
                        self.reply(member, Event::Error { id, error });
                    }
                }
                self.unpark(now, member);
            }
            Waiting::Rename(asker) => {
                let here = self.sessions.get(&asker.session).is_some_and(|s| s.token == token);
                match answer {
                    ClaimAnswer::Granted if here => {
                        self.apply_rename(asker.member, asker.session, &asker.id, nick);
                    }
                    ClaimAnswer::Granted => self.outputs.push_back(Output::Release { nick, token }),
                    ClaimAnswer::Taken => {
                        let error = CommandError::NickTaken(nick);
                        self.reply(asker.member, Event::Error { id: asker.id.clone(), error });
                    }
                    ClaimAnswer::Unavailable => {
                        let error =
                            CommandError::SharedUnavailable { retry_after_ms: RETRY_AFTER_MS };
                        self.reply(asker.member, Event::Error { id: asker.id.clone(), error });
                    }
                }
                self.unpark(now, asker.member);
            }
            Waiting::Restored(sid) => {
                // Another session took the nick while this one was away
                // from every node: this one ends, unless resumed meanwhile
                // (the engine then sorts it out when the nick is released).
                let detached = self.sessions.get(&sid).is_some_and(|s| s.conns.is_empty());
                if answer == ClaimAnswer::Taken && detached {
                    self.end_session(sid);
                }
            }
        }
    }

    /// A guest nick for a session of `token` in cluster mode: from the
    /// token (random, made by the driver), so that cores counting alike do
    /// not all claim `guest-0001` first; `attempt` picks another.
    fn shared_guest_nick(&mut self, token: &SessionToken, attempt: u32) -> Nick {
        // FNV-1a: stable across builds and platforms, unlike std's hasher.
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        for byte in token.as_str().bytes().chain(attempt.to_le_bytes()) {
            hash = (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3);
        }
        for bump in 0..64u64 {
            let text = format!("guest-{:06x}", hash.wrapping_add(bump) & 0xff_ffff);
            if let Ok(nick) = Nick::parse(&text)
                && !self.nick_held(&nick)
            {
                return nick;
            }
        }
        // Only with millions of guests here: counting finds a free one.
        self.guest_nick()
    }
}
