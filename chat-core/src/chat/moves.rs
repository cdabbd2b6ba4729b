//! Sessions moving between cores (cluster mode): a `hello` bringing a
//! token no session here holds asks the engine whether a session of that
//! token lives (or lived until its core died) on another core
//! ([`Output::Lookup`], answered with [`Chat::handle_found`]). If so the
//! session moves here: same token (so its retries are still answered with
//! the originals), same nick (the engine hands its claim over with the
//! answer), welcomed as resumed with its rooms, which its client joins
//! again from where it was. A session found for a connection gone
//! meanwhile lets its nick go. The core it left is told with
//! [`Chat::handle_moved`] and lets it go quietly: its connections are
//! closed as resumed elsewhere, and nothing is released or shared, since
//! the session goes on.

use std::sync::Arc;

use super::Chat;
use super::sessions::Grant;
use crate::{DisconnectReason, Event, MemberId, Nick, Output, RoomName, SessionToken, Timestamp};

/// A session another core holds, as the engine knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    /// Its nick.
    pub nick: Nick,
    /// The rooms it is in.
    pub rooms: Vec<RoomName>,
    /// The engine's key for it as a member of rooms elsewhere
    /// ([`Chat::handle_remote`]): this core stops counting it as a remote
    /// member, since it is served here now.
    pub key: Arc<str>,
}

/// A `hello` waiting for the engine to say whether its session lives
/// elsewhere.
#[derive(Debug)]
pub(super) struct Lookup {
    id: Option<Arc<str>>,
    token: SessionToken,
    nick: Option<String>,
    grant: Option<Grant>,
}

impl Chat {
    /// Asks the engine for the session of `token`, for the `hello` of
    /// `member`; its commands wait for the answer.
    pub(super) fn look_up(
        &mut self,
        member: MemberId,
        id: Option<Arc<str>>,
        token: SessionToken,
        nick: Option<String>,
        grant: Option<Grant>,
    ) {
        self.park_for(member);
        self.outputs.push_back(Output::Lookup { member, token: token.clone() });
        self.lookups.insert(member, Lookup { id, token, nick, grant });
    }

    /// The engine's answer to the [`Output::Lookup`] for `member`.
    pub(super) fn found(&mut self, now: Timestamp, member: MemberId, found: Option<Found>) {
        let Some(Lookup { id, token, nick, grant }) = self.lookups.remove(&member) else {
            return;
        };
        let waiting = self.conns.get(&member).is_some_and(|conn| conn.session.is_none());
        let result = match (found, self.tokens.get(&token).copied()) {
            (Some(found), _) if !waiting => {
                self.outputs.push_back(Output::Release { nick: found.nick, token });
                Ok(())
            }
            _ if !waiting => Ok(()),
            // Resumed here meanwhile (another connection of it).
            (_, Some(sid)) => {
                self.resume_session(now, member, sid, &id);
                Ok(())
            }
            (Some(found), None) => {
                self.forget_remote(&found.key);
                let rooms = Some(found.rooms);
                self.start_session(now, member, &id, token, found.nick, grant, rooms);
                Ok(())
            }
            (None, None) => self.hello_new(now, member, &id, Some(token), nick, grant),
        };
        if let Err(error) = result {
            self.reply(member, Event::Error { id, error });
        }
        self.unpark(now, member);
    }

    /// The session of `token` moved to another core: its connections here
    /// are closed as resumed elsewhere and it ends here quietly.
    pub(super) fn moved(&mut self, token: &SessionToken) {
        let Some(&sid) = self.tokens.get(token) else {
            return;
        };
        let conns: Vec<MemberId> =
            self.sessions.get(&sid).map(|s| s.conns.iter().collect()).unwrap_or_default();
        for member in conns {
            self.drop_conn(member);
            let reason = DisconnectReason::SessionResumedElsewhere;
            self.outputs.push_back(Output::Disconnect { member, reason });
        }
        self.end_session_as(sid, true);
    }
}
