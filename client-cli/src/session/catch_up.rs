//! A connection's catch-up: joining every room from where it was, paging
//! back past what each resume carried, and reporting what each room missed
//! once it is complete, before anything that came meanwhile.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use chat_protocol::{ClientFrame, ErrorCode, Gap, Message, Resume, ServerFrame};

use super::{Event, Failure, Link, Phase, Session, Transmit};
use crate::render;

/// A rate-limited history page is asked again after the server's delay,
/// but never later than this.
const PAGE_RETRY_MAX: Duration = Duration::from_secs(10);

/// The page size asked for when the server announced none.
const PAGE_DEFAULT: u32 = 100;

/// A connection's catch-up: the joins' answers, then the pages before what
/// each resume carried.
#[derive(Debug, Default)]
pub(super) struct CatchUp {
    /// The joins not answered yet: id to room and `after`.
    joins: BTreeMap<String, (String, Option<u64>)>,
    resumed: Resumed,
    /// What each resumed room missed, in the order joined.
    missed: Vec<Missed>,
    /// The room being paged back (an index into `missed`).
    paging: usize,
    /// The id of the page asked for.
    asked: Option<String>,
    /// A rate-limited page is asked again then.
    ask_at: Option<Instant>,
    /// Frames that came meanwhile, reported once the catch-up is.
    held: Vec<(String, Option<ServerFrame>)>,
}

/// What a room missed during a disconnect: every message from `floor` on.
#[derive(Debug)]
pub(super) struct Missed {
    room: String,
    floor: u64,
    /// The room's newest `seq` when it was joined.
    last_seq: u64,
    messages: Vec<Message>,
    /// What was lost to retention before `floor`.
    gap: Option<Gap>,
    /// Whether nothing older is owed: no more pages to ask for.
    complete: bool,
}

impl Missed {
    /// The `seq` the next page ends before.
    fn first(&self) -> u64 {
        self.messages.first().map_or(self.last_seq + 1, |m| m.seq)
    }

    /// What is left between `floor` and the first message held is gone:
    /// dropped by retention while paging back (or not to be had). It joins
    /// the gap; how many messages that is.
    fn lost_below_first(&mut self) -> u64 {
        let first = self.first();
        self.complete = true;
        if first <= self.floor {
            return 0;
        }
        let lost = first - self.floor;
        self.gap = Some(Gap { from: self.gap.map_or(self.floor, |gap| gap.from), to: first - 1 });
        self.floor = first;
        lost
    }
}

/// How the rooms answered a reconnect, for the one notice it prints.
#[derive(Debug, Default)]
pub(super) struct Resumed {
    lost: u64,
    restarted: bool,
}

impl Resumed {
    fn add(&mut self, after: Option<u64>, resume: Resume, gap: Option<u64>) {
        match resume {
            Resume::Gap => self.lost += gap.unwrap_or(0),
            Resume::Fresh if after.is_some() => self.restarted = true,
            Resume::Fresh | Resume::Resumed => {}
        }
    }

    fn notice(&self) -> String {
        match (self.restarted, self.lost) {
            (true, _) => {
                "reconnected; the server lost its history (it restarted without storage)".to_owned()
            }
            (false, 0) => "reconnected, resumed".to_owned(),
            (false, 1) => "reconnected, gap of 1 message".to_owned(),
            (false, n) => format!("reconnected, gap of {n} messages"),
        }
    }
}

impl Session {
    /// Joins every room from where it was.
    pub(super) fn join(&mut self) {
        let mut catch_up = CatchUp::default();
        for (room, after) in self.rooms.clone() {
            let id = self.new_id();
            self.out.push_back((Some(id.clone()), ClientFrame::Join { room: room.clone(), after }));
            catch_up.joins.insert(id, (room, after));
        }
        self.phase = Phase::CatchingUp(Box::new(catch_up));
        self.page();
    }

    /// A frame while joining and paging back.
    pub(super) fn catching_up(&mut self, text: String, frame: Option<ServerFrame>) {
        let Phase::CatchingUp(catch_up) = &mut self.phase else {
            return;
        };
        let first = !self.up_before;
        match &frame {
            Some(ServerFrame::Joined {
                id: Some(id),
                room,
                resume,
                gap,
                history,
                last_seq,
                ..
            }) if catch_up.joins.contains_key(id) => {
                let after = catch_up.joins.remove(id).and_then(|(_, after)| after);
                catch_up.resumed.add(after, *resume, gap.map(|g| g.to - g.from + 1));
                let Some(after) = after else {
                    // A fresh join: its history is reported as it is.
                    self.set_seen(room, *last_seq);
                    self.emit_frame(text, frame, false);
                    return self.page();
                };
                let fresh = *resume == Resume::Fresh;
                let floor = gap.map_or(after + 1, |g| g.to + 1);
                catch_up.missed.push(Missed {
                    room: room.clone(),
                    floor,
                    last_seq: *last_seq,
                    messages: history.iter().filter(|m| fresh || m.seq >= floor).cloned().collect(),
                    gap: *gap,
                    // After a restart without storage the numbering began
                    // again: there is nothing older to page for.
                    complete: fresh,
                });
                self.emit_frame(text, frame, true);
            }
            Some(ServerFrame::Error { id: Some(id), code, message, .. })
                if catch_up.joins.contains_key(id) =>
            {
                if first && self.config.first_failure_fatal {
                    let why = format!("{code}: {}", render::clean(message));
                    self.transmits.push_back(Transmit::Close);
                    return self.fail(Failure::Rejected(why));
                }
                // A room the server will not have is not asked for again.
                if let Some((room, _)) = catch_up.joins.remove(id) {
                    self.rooms.retain(|(r, _)| *r != room);
                    self.unsaved = true;
                }
                self.emit_frame(text, frame, false);
            }
            Some(ServerFrame::History { id: Some(id), messages, .. })
                if catch_up.asked.as_ref() == Some(id) =>
            {
                catch_up.asked = None;
                if let Some(room) = catch_up.missed.get_mut(catch_up.paging) {
                    let mut older: Vec<Message> =
                        messages.iter().filter(|m| m.seq >= room.floor).cloned().collect();
                    if older.is_empty() {
                        // Nothing before the first message held: retention
                        // dropped what was left since the join.
                        catch_up.resumed.lost += room.lost_below_first();
                    }
                    older.append(&mut room.messages);
                    room.messages = older;
                }
                self.emit_frame(text, frame, true);
            }
            // Paging faster than the server allows: ask again when it
            // says, rather than leave a hole.
            Some(ServerFrame::Error {
                id: Some(id),
                code: ErrorCode::RateLimited,
                retry_after_ms: Some(wait),
                ..
            }) if catch_up.asked.as_ref() == Some(id) => {
                catch_up.asked = None;
                catch_up.ask_at = Some(self.now + Duration::from_millis(*wait).min(PAGE_RETRY_MAX));
            }
            Some(ServerFrame::Error { id: Some(id), .. })
                if catch_up.asked.as_ref() == Some(id) =>
            {
                catch_up.asked = None;
                // Refused: what it would have held is reported as a gap,
                // not silently left out.
                if let Some(room) = catch_up.missed.get_mut(catch_up.paging) {
                    catch_up.resumed.lost += room.lost_below_first();
                }
                self.emit_frame(text, frame, false);
            }
            _ => catch_up.held.push((text, frame)),
        }
        self.page();
    }

    /// Asks for the next page back, or ends the catch-up once every room
    /// is complete.
    pub(super) fn page(&mut self) {
        let page_max = self.limits.as_ref().map_or(PAGE_DEFAULT, |limits| {
            u32::try_from(limits.history_page_max).unwrap_or(u32::MAX)
        });
        let Phase::CatchingUp(catch_up) = &mut self.phase else {
            return;
        };
        if !catch_up.joins.is_empty() || catch_up.asked.is_some() || catch_up.ask_at.is_some() {
            return;
        }
        let ask = loop {
            let Some(room) = catch_up.missed.get(catch_up.paging) else {
                break None;
            };
            let first = room.first();
            if room.complete || first <= room.floor || page_max == 0 {
                catch_up.paging += 1;
                continue;
            }
            let room = room.room.clone();
            break Some(ClientFrame::History { room, before: Some(first), limit: Some(page_max) });
        };
        let Some(ask) = ask else {
            if let Phase::CatchingUp(catch_up) = std::mem::replace(&mut self.phase, Phase::Live) {
                self.caught_up(*catch_up);
            }
            return;
        };
        let id = self.new_id();
        if let Phase::CatchingUp(catch_up) = &mut self.phase {
            catch_up.asked = Some(id.clone());
        }
        self.out.push_back((Some(id), ask));
    }

    /// The catch-up is complete: what was missed is reported, then what
    /// came meanwhile, then what is pending goes again, then what was
    /// typed meanwhile.
    fn caught_up(&mut self, catch_up: CatchUp) {
        for room in catch_up.missed {
            let seen = room.messages.last().map_or(room.last_seq, |m| m.seq.max(room.last_seq));
            self.set_seen(&room.room, seen);
            for message in &room.messages {
                self.attachment_seen(message);
            }
            self.events.push_back(Event::Missed {
                room: room.room,
                messages: room.messages,
                gap: room.gap,
            });
        }
        if self.up_before {
            self.events.push_back(Event::Resumed(catch_up.resumed.notice()));
        }
        self.up_before = true;
        self.attempt = 0;
        self.told = None;
        self.events.push_back(Event::Link(Link::Connected));
        for (text, frame) in catch_up.held {
            self.live(text, frame);
        }
        for (id, frame) in self.pending.clone() {
            self.out.push_back((Some(id), frame));
        }
        for command in std::mem::take(&mut self.deferred) {
            self.command(command);
        }
        self.list_conversations();
    }

    /// Asks again for a page that was refused for now, once it is time.
    pub(super) fn page_timeout(&mut self, now: Instant) {
        if let Phase::CatchingUp(catch_up) = &mut self.phase
            && catch_up.ask_at.is_some_and(|at| at <= now)
        {
            catch_up.ask_at = None;
            self.page();
        }
    }
}

impl CatchUp {
    /// When a refused page is asked again.
    pub(super) fn timeout(&self) -> Option<Instant> {
        self.ask_at
    }
}
