//! Conversations (direct messages): listed once caught up, each read from
//! the newest `seq` reported (its newest if new here), paging back past a
//! resume's cap, with a gap for what retention dropped; a live `direct`
//! delivered twice is reported once, and a hole is read. The page's
//! session (`server/web/js/session.js`) does the same.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use chat_protocol::{ClientFrame, DirectLine, ErrorCode, Gap, Resume, ServerFrame};

use super::{Event, Phase, Session};

/// A read refused for now is asked again after the server's delay, but
/// never later than this.
const READ_RETRY_MAX: Duration = Duration::from_secs(10);

/// The page size asked for when the server announced none.
const PAGE_DEFAULT: u32 = 100;

/// What the session knows of its conversations.
#[derive(Debug, Default)]
pub(super) struct Conversations {
    /// By key: the newest `seq` reported, `None` before any.
    seen: BTreeMap<String, Option<u64>>,
    /// Reads out, by request id.
    reads: BTreeMap<String, Read>,
    /// Reads refused for now, asked again at `reread_at`.
    rereads: Vec<(String, Option<u64>)>,
    reread_at: Option<Instant>,
    /// The id of the `conversations` asked for, until answered.
    listing: Option<String>,
}

/// A conversation being read.
#[derive(Debug, Clone)]
struct Read {
    key: String,
    after: Option<u64>,
    /// What came so far, oldest first.
    messages: Vec<DirectLine>,
    resume: Resume,
    gap: Option<Gap>,
    /// Whether the first answer came (the rest are pages back).
    paging: bool,
}

impl Conversations {
    /// Everything out is lost with the connection: asked again once caught
    /// up.
    pub(super) fn lost(&mut self) {
        self.reads.clear();
        self.rereads.clear();
        self.reread_at = None;
        self.listing = None;
    }

    pub(super) fn timeout(&self) -> Option<Instant> {
        self.reread_at
    }
}

impl Session {
    /// Once caught up: what was said directly meanwhile.
    pub(super) fn list_conversations(&mut self) {
        let id = self.new_id();
        self.conversations.listing = Some(id.clone());
        self.out.push_back((Some(id), ClientFrame::Conversations {}));
    }

    /// Asks again for reads refused for now, once it is time.
    pub(super) fn reread_timeout(&mut self, now: Instant) {
        if matches!(self.phase, Phase::Live)
            && self.conversations.reread_at.is_some_and(|at| at <= now)
        {
            self.conversations.reread_at = None;
            for (key, after) in std::mem::take(&mut self.conversations.rereads) {
                self.read(key, after);
            }
        }
    }

    /// Asks for a conversation's messages after `after` (its newest if
    /// `None`).
    fn read(&mut self, key: String, after: Option<u64>) {
        let id = self.new_id();
        let frame = ClientFrame::Conversation {
            with: String::new(),
            conversation: Some(key.clone()),
            after,
            before: None,
            limit: None,
        };
        let read = Read {
            key,
            after,
            messages: Vec::new(),
            resume: Resume::Fresh,
            gap: None,
            paging: false,
        };
        self.conversations.reads.insert(id.clone(), read);
        self.out.push_back((Some(id), frame));
    }

    /// Keeps the conversations up to date; false for a frame not to report
    /// (a message already reported, or a read's answer reported whole
    /// later).
    pub(super) fn on_conversation_frame(&mut self, frame: &ServerFrame) -> bool {
        match frame {
            ServerFrame::Direct { conversation, seq, .. } if !conversation.is_empty() => {
                let seen = self.conversations.seen.entry(conversation.clone()).or_default();
                match *seen {
                    // Delivered twice (a retry answered with the original).
                    Some(seen) if *seq <= seen => return false,
                    Some(before) if *seq > before + 1 => {
                        *seen = Some(*seq);
                        self.read(conversation.clone(), Some(before));
                    }
                    _ => *seen = Some(*seq),
                }
            }
            ServerFrame::Conversations { id: Some(id), conversations }
                if self.conversations.listing.as_ref() == Some(id) =>
            {
                self.conversations.listing = None;
                for listed in conversations {
                    let seen =
                        *self.conversations.seen.entry(listed.conversation.clone()).or_default();
                    if seen.map_or(listed.last_seq > 0, |seen| seen < listed.last_seq) {
                        self.read(listed.conversation.clone(), seen);
                    }
                }
            }
            ServerFrame::Conversation { id: Some(id), .. } => {
                if let Some(read) = self.conversations.reads.remove(id) {
                    self.read_answered(read, frame);
                    return false;
                }
            }
            ServerFrame::Error { id: Some(id), code, retry_after_ms, .. } => {
                let Some(read) = self.conversations.reads.remove(id) else {
                    return true;
                };
                if let (ErrorCode::RateLimited | ErrorCode::Unavailable, Some(wait)) =
                    (code, retry_after_ms)
                {
                    // Asked again when the server says.
                    let wait = Duration::from_millis((*wait).max(50)).min(READ_RETRY_MAX);
                    let at = self.now + wait;
                    let reread_at = self.conversations.reread_at.map_or(at, |t| t.min(at));
                    self.conversations.reread_at = Some(reread_at);
                    self.conversations.rereads.push((read.key, read.after));
                    return false;
                }
            }
            _ => {}
        }
        true
    }

    /// A read answered: pages back until everything after `after` is here,
    /// then reports it all as one `conversation` frame.
    fn read_answered(&mut self, mut read: Read, frame: &ServerFrame) {
        let ServerFrame::Conversation { with, messages, last_seq, resume, gap, .. } = frame else {
            return;
        };
        if !read.paging {
            read.resume = *resume;
            read.gap = gap.filter(|_| *resume == Resume::Gap);
        }
        let kept: Vec<DirectLine> = messages
            .iter()
            .filter(|m| read.after.is_none_or(|after| m.seq > after))
            .cloned()
            .collect();
        let got = !kept.is_empty();
        read.messages.splice(0..0, kept);
        let first = read.messages.first().map_or(last_seq + 1, |m| m.seq);
        if let Some(after) = read.after
            && read.gap.is_none()
            && first > after + 1
        {
            if got {
                let id = self.new_id();
                let limit = self.limits.as_ref().map_or(PAGE_DEFAULT, |l| {
                    u32::try_from(l.history_page_max).unwrap_or(u32::MAX)
                });
                let page = ClientFrame::Conversation {
                    with: String::new(),
                    conversation: Some(read.key.clone()),
                    after: None,
                    before: Some(first),
                    limit: Some(limit),
                };
                self.conversations.reads.insert(id.clone(), Read { paging: true, ..read });
                self.out.push_back((Some(id), page));
                return;
            }
            // Nothing older came back: retention dropped it meanwhile.
            read.gap = Some(Gap { from: after + 1, to: first - 1 });
        }
        let newest = read.messages.last().map(|m| m.seq);
        let seen = self.conversations.seen.entry(read.key.clone()).or_default();
        *seen = (*seen).max(newest);
        let reported = ServerFrame::Conversation {
            id: None,
            conversation: read.key,
            with: with.clone(),
            messages: read.messages,
            last_seq: *last_seq,
            resume: if read.gap.is_some() { Resume::Gap } else { read.resume },
            gap: read.gap,
        };
        self.events.push_back(Event::Frame {
            text: reported.encode(),
            frame: Some(Box::new(reported)),
            catch_up: read.after.is_none(),
        });
    }
}
