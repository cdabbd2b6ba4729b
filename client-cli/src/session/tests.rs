//! The session with a fake clock and hand-written server frames: every
//! transition, one at a time.

use std::time::{Duration, Instant};

use chat_protocol::{
    ClientFrame, ClientMessage, ErrorCode, Gap, Limits, Message, Resume, ServerFrame, ServerInfo,
    decode_client,
};

use super::*;

/// A session, its clock, and what it did.
struct Harness {
    session: Session,
    now: Instant,
    /// Frames sent, decoded.
    sent: Vec<ClientMessage>,
    /// Everything else it asked of the driver.
    other: Vec<Transmit>,
    events: Vec<Event>,
    /// The conversation lists asked for once caught up, set apart unless a
    /// test is about conversations (`keep_listings`).
    listings: Vec<ClientMessage>,
    keep_listings: bool,
}

fn config() -> SessionConfig {
    SessionConfig {
        nick: Some("ann".to_owned()),
        access_token: None,
        rooms: vec![("lobby".to_owned(), None)],
        first_failure_fatal: false,
        linger: Duration::from_secs(5),
        durable: false,
        seed: 7,
    }
}

/// Generous limits, for tests to narrow.
pub(crate) fn limits() -> Limits {
    Limits {
        edit_window_ms: 0,
        max_frame_bytes: 65536,
        max_text_bytes: 8192,
        max_nick_chars: 32,
        max_room_chars: 64,
        history_per_room: 1000,
        history_page_max: 200,
        join_history: 50,
        typing_interval_ms: 2000,
        messages_per_sec: 1000,
        messages_burst: 1000,
        max_rooms_per_session: 100,
        max_members_per_room: 10_000,
        joins_per_sec: 100,
        joins_burst: 100,
        frames_per_sec: 1000,
        frames_burst: 1000,
        max_upload_bytes: 1 << 20,
        max_docs_per_room: 100,
    }
}

fn welcome(limits: Limits) -> ServerFrame {
    ServerFrame::Welcome {
        id: Some("hello".to_owned()),
        session: "token-1".to_owned(),
        nick: "ann".to_owned(),
        resumed: false,
        rooms: Vec::new(),
        server: ServerInfo {
            name: "test".to_owned(),
            version: "0".to_owned(),
            protocol: 1,
            node: None,
        },
        limits,
        token_expires_ms: None,
    }
}

fn message(room: &str, seq: u64, id: Option<&str>) -> Message {
    Message {
        edit: None,
        delete: None,
        edited: false,
        deleted: false,
        room: room.to_owned(),
        seq,
        ts: seq,
        from: "bob".to_owned(),
        text: format!("m{seq}"),
        id: id.map(str::to_owned),
        action: false,
        attachment: None,
    }
}

fn messages(room: &str, seqs: std::ops::RangeInclusive<u64>) -> Vec<Message> {
    seqs.map(|seq| message(room, seq, None)).collect()
}

fn joined(id: &str, room: &str, history: Vec<Message>, last_seq: u64) -> ServerFrame {
    ServerFrame::Joined {
        member_count: 1,
        topic: None,
        id: Some(id.to_owned()),
        room: room.to_owned(),
        members: vec!["ann".to_owned()],
        away: Vec::new(),
        history,
        last_seq,
        resume: Resume::Fresh,
        gap: None,
        docs: Vec::new(),
        docs_read_only: false,
    }
}

fn say(room: &str, text: &str) -> ClientFrame {
    ClientFrame::Say { room: room.to_owned(), text: text.to_owned(), action: false }
}

fn seqs(messages: &[Message]) -> Vec<u64> {
    messages.iter().map(|m| m.seq).collect()
}

impl Harness {
    fn new(config: SessionConfig, saved: Saved) -> Self {
        let now = Instant::now();
        let session = Session::new(config, saved, now);
        let mut harness = Self {
            session,
            now,
            sent: Vec::new(),
            other: Vec::new(),
            events: Vec::new(),
            listings: Vec::new(),
            keep_listings: false,
        };
        harness.drain();
        harness
    }

    fn drain(&mut self) {
        while let Some(transmit) = self.session.poll_transmit() {
            match transmit {
                Transmit::Text(text) => match decode_client(&text) {
                    Ok(message)
                        if matches!(message.frame, ClientFrame::Conversations {})
                            && !self.keep_listings =>
                    {
                        self.listings.push(message)
                    }
                    Ok(message) => self.sent.push(message),
                    Err(err) => panic!("the session sent a frame it cannot decode: {err:?}"),
                },
                other => self.other.push(other),
            }
        }
        while let Some(event) = self.session.poll_event() {
            self.events.push(event);
        }
    }

    fn advance(&mut self, by: Duration) {
        self.now += by;
        self.session.handle_timeout(self.now);
        self.drain();
    }

    /// Moves the clock to each timeout the session asks for, up to `by`.
    fn run_for(&mut self, by: Duration) {
        let end = self.now + by;
        while let Some(at) = self.session.poll_timeout().filter(|at| *at <= end) {
            self.now = self.now.max(at);
            self.session.handle_timeout(self.now);
            self.drain();
        }
        self.now = end;
    }

    fn frame(&mut self, frame: ServerFrame) {
        self.session.handle_frame(self.now, frame.encode());
        self.drain();
    }

    fn command(&mut self, command: Command) {
        self.session.handle_command(self.now, command);
        self.drain();
    }

    fn disconnect(&mut self, how: Disconnect) {
        self.session.handle_disconnected(self.now, how);
        self.drain();
    }

    fn take_sent(&mut self) -> Vec<ClientMessage> {
        std::mem::take(&mut self.sent)
    }

    fn take_other(&mut self) -> Vec<Transmit> {
        std::mem::take(&mut self.other)
    }

    fn take_events(&mut self) -> Vec<Event> {
        std::mem::take(&mut self.events)
    }

    /// Accepts the connection asked for and answers the `hello`.
    fn greet(&mut self, limits: Limits) {
        assert_eq!(self.take_other(), vec![Transmit::Connect]);
        self.session.handle_connected(self.now);
        self.drain();
        let sent = self.take_sent();
        assert!(
            matches!(sent.first().map(|m| &m.frame), Some(ClientFrame::Hello { .. })),
            "{sent:?}"
        );
        self.frame(welcome(limits));
    }

    /// The joins sent, as (id, room, after).
    fn joins(&mut self) -> Vec<(String, String, Option<u64>)> {
        self.take_sent()
            .into_iter()
            .filter_map(|m| match m.frame {
                ClientFrame::Join { room, after } => Some((m.id.unwrap_or_default(), room, after)),
                _ => None,
            })
            .collect()
    }

    /// Connects, joins `lobby` fresh with `history`, and is caught up.
    fn up(&mut self, history: Vec<Message>, last_seq: u64) {
        self.greet(limits());
        let joins = self.joins();
        let [(id, room, None)] = joins.as_slice() else {
            panic!("one fresh join: {joins:?}");
        };
        let joined = joined(id, room, history, last_seq);
        self.frame(joined);
        assert!(self.link_connected(), "caught up: {:?}", self.events);
    }

    fn link_connected(&self) -> bool {
        self.events.iter().any(|e| matches!(e, Event::Link(Link::Connected)))
    }

    /// Loses the connection and waits until the session asks for the next.
    fn lose(&mut self) {
        self.disconnect(Disconnect::Broken("reset".to_owned()));
        let until = self.waiting_until();
        self.advance(until.saturating_duration_since(self.now));
        self.take_events();
    }

    /// Loses the connection and greets again.
    fn bounce(&mut self) {
        self.lose();
        self.greet(limits());
    }

    fn waiting_until(&self) -> Instant {
        self.events
            .iter()
            .rev()
            .find_map(|e| match e {
                Event::Link(Link::Waiting { until }) => Some(*until),
                _ => None,
            })
            .expect("the session waits to reconnect")
    }

    fn missed(&self) -> Vec<Vec<u64>> {
        self.events
            .iter()
            .filter_map(|e| match e {
                Event::Missed { messages, .. } => Some(seqs(messages)),
                _ => None,
            })
            .collect()
    }

    fn notices(&self) -> Vec<String> {
        self.events
            .iter()
            .filter_map(|e| match e {
                Event::Notice(n) | Event::Resumed(n) | Event::Problem(n) => Some(n.clone()),
                _ => None,
            })
            .collect()
    }

    /// The live messages reported, by seq.
    fn reported(&self) -> Vec<u64> {
        self.events
            .iter()
            .filter_map(|e| match e {
                Event::Frame { frame: Some(frame), catch_up: false, .. } => match &**frame {
                    ServerFrame::Message(m) => Some(m.seq),
                    _ => None,
                },
                _ => None,
            })
            .collect()
    }
}

#[test]
fn messages_typed_offline_go_with_their_ids_once_the_rooms_are_joined() {
    let saved = Saved {
        session: Some("token-0".to_owned()),
        rooms: vec!["dev".to_owned()],
        pending: vec![("old-1".to_owned(), say("dev", "from the outbox"))],
    };
    let mut h = Harness::new(SessionConfig { durable: true, ..config() }, saved);
    assert!(matches!(
        h.take_events().as_slice(),
        [Event::Sending { id, .. }, Event::Queued(1), Event::Link(Link::Connecting)] if id == "old-1"
    ));
    h.command(Command::Send(say("lobby", "typed while connecting")));
    let typed = match h.take_events().as_slice() {
        [Event::Sending { id, .. }, Event::Queued(2)] => id.clone(),
        other => panic!("shown as being sent: {other:?}"),
    };
    h.greet(limits());
    let joins = h.joins();
    assert_eq!(
        joins.iter().map(|(_, room, after)| (room.as_str(), *after)).collect::<Vec<_>>(),
        vec![("lobby", None), ("dev", None)],
        "the configured rooms, then the outbox's"
    );
    for (id, room, _) in &joins {
        h.frame(joined(id, room, Vec::new(), 0));
    }
    let sent = h.take_sent();
    let ids: Vec<_> = sent.iter().map(|m| m.id.clone().unwrap_or_default()).collect();
    assert_eq!(ids.len(), 2, "{sent:?}");
    assert_eq!(ids[0], "old-1", "the outbox's message first, with its own id");
    assert!(
        matches!(&sent[1].frame, ClientFrame::Say { text, .. } if text == "typed while connecting")
    );
    // Acknowledged: nothing is pending any more, and the outbox says so.
    let mut echo = message("dev", 1, Some("old-1"));
    echo.from = "ann".to_owned();
    h.take_events();
    h.frame(ServerFrame::Message(echo));
    assert!(
        h.events.iter().any(|e| matches!(e, Event::Sent { id, refused: false } if id == "old-1")),
        "{:?}",
        h.events
    );
    assert_eq!(sent[1].id.as_deref(), Some(typed.as_str()), "one id from typing to the wire");
    let saved = h.session.poll_save().expect("the outbox changed");
    assert_eq!(saved.pending.len(), 1);
    assert_eq!(saved.session.as_deref(), Some("token-1"));
}

#[test]
fn a_session_resumed_from_another_device_joins_the_rooms_it_is_in() {
    let saved = Saved { session: Some("token-1".to_owned()), ..Saved::default() };
    let mut h = Harness::new(config(), saved);
    h.take_events();
    assert_eq!(h.take_other(), vec![Transmit::Connect]);
    h.session.handle_connected(h.now);
    h.drain();
    h.take_sent();
    let ServerFrame::Welcome { server, limits, .. } = welcome(limits()) else { unreachable!() };
    h.frame(ServerFrame::Welcome {
        id: Some("hello".to_owned()),
        session: "token-1".to_owned(),
        nick: "ann".to_owned(),
        resumed: true,
        rooms: vec!["dev".to_owned(), "lobby".to_owned()],
        server,
        limits,
        token_expires_ms: None,
    });
    let joins = h.joins();
    assert_eq!(
        joins.iter().map(|(_, room, after)| (room.as_str(), *after)).collect::<Vec<_>>(),
        vec![("lobby", None), ("dev", None)],
        "the configured room once, and the session's other room"
    );
}

#[test]
fn conversations_are_listed_once_caught_up_and_read_from_where_they_were() {
    use chat_protocol::{ConversationInfo, DirectLine};
    let line = |seq: u64| DirectLine {
        seq,
        ts: seq,
        from: "bob".to_owned(),
        text: format!("d{seq}"),
        id: None,
    };
    let listing = |h: &mut Harness, last_seq: u64| {
        let sent = h.take_sent();
        let [ClientMessage { id: Some(id), frame: ClientFrame::Conversations {} }] =
            sent.as_slice()
        else {
            panic!("the list asked for: {sent:?}");
        };
        let info = ConversationInfo {
            conversation: "~a".to_owned(),
            with: "bob".to_owned(),
            last_seq,
            last_ts: 1,
        };
        h.frame(ServerFrame::Conversations { id: Some(id.clone()), conversations: vec![info] });
    };
    let reads = |h: &mut Harness| -> Vec<(String, Option<u64>, Option<u64>)> {
        h.take_sent()
            .into_iter()
            .filter_map(|m| match m.frame {
                ClientFrame::Conversation { after, before, .. } => {
                    Some((m.id.unwrap_or_default(), after, before))
                }
                _ => None,
            })
            .collect()
    };
    let conversation =
        |id: &str, messages: Vec<DirectLine>, resume: Resume| ServerFrame::Conversation {
            id: Some(id.to_owned()),
            conversation: "~a".to_owned(),
            with: "bob".to_owned(),
            messages,
            last_seq: 9,
            resume,
            gap: None,
        };
    let reported = |h: &mut Harness| -> Vec<(bool, Vec<u64>, Resume)> {
        std::mem::take(&mut h.events)
            .into_iter()
            .filter_map(|e| match e {
                Event::Frame { frame: Some(frame), catch_up, .. } => match *frame {
                    ServerFrame::Conversation { messages, resume, .. } => {
                        Some((catch_up, messages.iter().map(|m| m.seq).collect(), resume))
                    }
                    _ => None,
                },
                _ => None,
            })
            .collect()
    };
    let mut h = Harness::new(config(), Saved::default());
    h.keep_listings = true;
    h.up(Vec::new(), 0);
    listing(&mut h, 3);
    let asked = reads(&mut h);
    let [(id, None, None)] = asked.as_slice() else {
        panic!("{}: {asked:?}", "new here: its newest");
    };
    let id = id.clone();
    h.events.clear();
    h.frame(conversation(&id, vec![line(2), line(3)], Resume::Fresh));
    assert_eq!(reported(&mut h), vec![(true, vec![2, 3], Resume::Fresh)]);
    // Delivered twice: reported once.
    let direct = ServerFrame::Direct {
        from: "bob".to_owned(),
        to: "ann".to_owned(),
        with: "bob".to_owned(),
        conversation: "~a".to_owned(),
        seq: 4,
        text: "x".to_owned(),
        ts: 4,
        id: None,
    };
    h.frame(direct.clone());
    h.frame(direct);
    let directs = h.events.iter().filter(|e| {
        matches!(e, Event::Frame { frame: Some(f), .. } if matches!(**f, ServerFrame::Direct { .. }))
    });
    assert_eq!(directs.count(), 1);
    // Reconnected: read after the newest seen, paging back past the cap.
    h.bounce();
    for (id, room, _) in h.joins() {
        h.frame(joined(&id, &room, Vec::new(), 0));
    }
    listing(&mut h, 9);
    let asked = reads(&mut h);
    let [(id, Some(4), None)] = asked.as_slice() else {
        panic!("{}: {asked:?}", "from the newest seen");
    };
    let id = id.clone();
    h.events.clear();
    h.frame(conversation(&id, vec![line(8), line(9)], Resume::Resumed));
    let asked = reads(&mut h);
    let [(page, None, Some(8))] = asked.as_slice() else {
        panic!("a page back: {asked:?}");
    };
    h.frame(conversation(page, vec![line(5), line(6), line(7)], Resume::Fresh));
    assert_eq!(reported(&mut h), vec![(false, vec![5, 6, 7, 8, 9], Resume::Resumed)]);
}

#[test]
fn backoff_grows_with_seeded_jitter_and_a_restart_delay_is_used_as_given() {
    let delays = |seed| {
        let mut h = Harness::new(SessionConfig { seed, ..config() }, Saved::default());
        let mut delays = Vec::new();
        for _ in 0..6 {
            assert_eq!(h.take_other(), vec![Transmit::Connect]);
            h.disconnect(Disconnect::Unreachable("refused".to_owned()));
            let until = h.waiting_until();
            delays.push(until - h.now);
            h.advance(until - h.now);
        }
        delays
    };
    let first = delays(7);
    assert_eq!(first, delays(7), "the same seed, the same delays");
    assert_ne!(first, delays(8), "another seed, other delays");
    for (attempt, delay) in first.iter().enumerate() {
        let ceiling = BACKOFF_MIN * 2u32.pow(u32::try_from(attempt).unwrap_or(0));
        assert!(*delay <= ceiling.min(BACKOFF_MAX), "attempt {attempt}: {delay:?}");
    }

    let mut h = Harness::new(config(), Saved::default());
    h.up(Vec::new(), 0);
    let reason = chat_protocol::restart_reason(3200);
    h.disconnect(Disconnect::Closed { code: 1012, reason });
    assert_eq!(h.waiting_until() - h.now, Duration::from_millis(3200));
    assert!(h.notices().iter().any(|n| n.contains("reconnecting in 3.2 s")), "{:?}", h.notices());
}

#[test]
fn a_resume_past_its_cap_pages_back_with_the_announced_page_size() {
    let mut h = Harness::new(config(), Saved::default());
    h.up(messages("lobby", 1..=10), 10);
    h.lose();
    h.greet(Limits { history_page_max: 7, ..limits() });
    let joins = h.joins();
    let [(id, room, Some(10))] = joins.as_slice() else {
        panic!("a join from the last seq seen: {joins:?}");
    };
    // The server keeps 40 messages, carries the newest 10 in the resume,
    // and pages 7 at a time.
    let mut resumed = joined(id, room, messages("lobby", 31..=40), 40);
    if let ServerFrame::Joined { resume, .. } = &mut resumed {
        *resume = Resume::Resumed;
    }
    h.frame(resumed);
    let mut before = 31;
    while before > 11 {
        let sent = h.take_sent();
        let [
            ClientMessage {
                id: Some(id),
                frame: ClientFrame::History { before: Some(b), limit, .. },
            },
        ] = sent.as_slice()
        else {
            panic!("one page asked for: {sent:?}");
        };
        assert_eq!((*b, *limit), (before, Some(7)));
        let from = before.saturating_sub(7).max(1);
        // A live message arrives while paging: it waits.
        if before == 24 {
            h.frame(ServerFrame::Message(message("lobby", 41, None)));
        }
        h.frame(ServerFrame::History {
            id: Some(id.clone()),
            room: "lobby".to_owned(),
            messages: messages("lobby", from..=before - 1),
        });
        before = from;
    }
    assert_eq!(h.missed(), vec![(11..=40).collect::<Vec<_>>()], "everything after 10, once");
    assert!(h.notices().contains(&"reconnected, resumed".to_owned()), "{:?}", h.notices());
    let missed_at = h.events.iter().position(|e| matches!(e, Event::Missed { .. }));
    let live_at = h.events.iter().position(|e| matches!(e, Event::Frame { catch_up: false, frame: Some(f), .. } if matches!(**f, ServerFrame::Message(_))));
    assert!(missed_at < live_at, "what was missed comes before what came meanwhile");
    assert_eq!(h.reported(), vec![41]);
}

#[test]
fn a_gap_is_reported_with_its_size_and_nothing_before_it_is_asked_for() {
    let mut h = Harness::new(config(), Saved::default());
    h.up(messages("lobby", 1..=10), 10);
    h.bounce();
    let joins = h.joins();
    let mut answer = joined(&joins[0].0, "lobby", messages("lobby", 21..=25), 25);
    if let ServerFrame::Joined { resume, gap, .. } = &mut answer {
        *resume = Resume::Gap;
        *gap = Some(Gap { from: 11, to: 20 });
    }
    h.frame(answer);
    assert!(h.take_sent().is_empty(), "no page before the gap");
    assert_eq!(h.missed(), vec![(21..=25).collect::<Vec<_>>()]);
    assert!(h.notices().contains(&"reconnected, gap of 10 messages".to_owned()));
}

#[test]
fn history_dropped_while_paging_back_is_reported_as_a_gap() {
    let mut h = Harness::new(config(), Saved::default());
    h.up(messages("lobby", 1..=10), 10);
    h.lose();
    h.greet(Limits { history_page_max: 5, ..limits() });
    let joins = h.joins();
    let mut resumed = joined(&joins[0].0, "lobby", messages("lobby", 31..=40), 40);
    if let ServerFrame::Joined { resume, .. } = &mut resumed {
        *resume = Resume::Resumed;
    }
    h.frame(resumed);
    let page = |h: &mut Harness, answer: Vec<Message>| {
        let sent = h.take_sent();
        let [ClientMessage { id: Some(id), frame: ClientFrame::History { .. } }] = sent.as_slice()
        else {
            panic!("a page asked for: {sent:?}");
        };
        let id = id.clone();
        h.frame(ServerFrame::History { id: Some(id), room: "lobby".to_owned(), messages: answer });
    };
    page(&mut h, messages("lobby", 26..=30));
    // Meanwhile the room moved on and retention dropped 11..=25.
    page(&mut h, Vec::new());
    let gaps: Vec<_> = h
        .events
        .iter()
        .filter_map(|e| match e {
            Event::Missed { gap, messages, .. } => Some((*gap, seqs(messages))),
            _ => None,
        })
        .collect();
    assert_eq!(gaps, vec![(Some(Gap { from: 11, to: 25 }), (26..=40).collect())]);
    assert!(
        h.notices().contains(&"reconnected, gap of 15 messages".to_owned()),
        "{:?}",
        h.notices()
    );
}

#[test]
fn a_connection_lost_while_catching_up_resumes_from_what_was_reported() {
    let mut h = Harness::new(config(), Saved::default());
    h.up(messages("lobby", 1..=10), 10);
    h.bounce();
    let joins = h.joins();
    let mut resumed = joined(&joins[0].0, "lobby", messages("lobby", 300..=400), 400);
    if let ServerFrame::Joined { resume, .. } = &mut resumed {
        *resume = Resume::Resumed;
    }
    h.frame(resumed);
    assert_eq!(h.take_sent().len(), 1, "a page asked for");
    // Lost before the page came: nothing was reported, so the next join
    // still starts after 10.
    h.bounce();
    let joins = h.joins();
    assert_eq!(joins[0].2, Some(10), "{joins:?}");
    assert!(h.missed().is_empty());
}

#[test]
fn a_server_that_lost_its_history_numbers_again_and_is_followed() {
    let mut h = Harness::new(config(), Saved::default());
    h.up(messages("lobby", 1..=50), 50);
    h.bounce();
    let joins = h.joins();
    // Fresh although `after` was given: an in-memory server restarted.
    h.frame(joined(&joins[0].0, "lobby", messages("lobby", 1..=2), 2));
    assert!(h.take_sent().is_empty(), "nothing to page for");
    assert_eq!(h.missed(), vec![vec![1, 2]]);
    assert!(h.notices().iter().any(|n| n.contains("lost its history")), "{:?}", h.notices());
    h.frame(ServerFrame::Message(message("lobby", 3, None)));
    assert_eq!(h.reported(), vec![3], "seq 3 is new, although 50 was seen before");
}

#[test]
fn a_message_delivered_twice_is_reported_once_and_acknowledges_its_id() {
    let mut h = Harness::new(config(), Saved::default());
    h.up(Vec::new(), 0);
    h.command(Command::SendAs("mine".to_owned(), say("lobby", "hi")));
    h.frame(ServerFrame::Message(message("lobby", 1, Some("mine"))));
    h.frame(ServerFrame::Message(message("lobby", 1, Some("mine"))));
    assert_eq!(h.reported(), vec![1]);
    assert_eq!(h.session.pending.len(), 0);
}

#[test]
fn a_message_refused_for_now_goes_again_with_its_id_when_the_server_says() {
    let mut h = Harness::new(config(), Saved::default());
    h.up(Vec::new(), 0);
    h.command(Command::SendAs("m1".to_owned(), say("lobby", "hi")));
    assert_eq!(h.take_sent().len(), 1);
    h.frame(ServerFrame::Error {
        id: Some("m1".to_owned()),
        code: ErrorCode::Unavailable,
        message: "storage is failing".to_owned(),
        retry_after_ms: Some(1000),
    });
    h.advance(Duration::from_millis(999));
    assert!(h.take_sent().is_empty(), "not before the server said");
    h.advance(Duration::from_millis(1));
    let sent = h.take_sent();
    assert_eq!(sent.iter().map(|m| m.id.as_deref()).collect::<Vec<_>>(), vec![Some("m1")]);
    // A final refusal is counted, and the quit reports it.
    h.frame(ServerFrame::Error {
        id: Some("m1".to_owned()),
        code: ErrorCode::BadFrame,
        message: "no".to_owned(),
        retry_after_ms: None,
    });
    h.command(Command::Quit);
    assert!(h.events.iter().any(|e| matches!(e, Event::Done { unacked: 0, refused: 1 })));
    assert_eq!(h.take_other(), vec![Transmit::Close]);
}

#[test]
fn frames_are_paced_to_the_announced_rates() {
    let mut h = Harness::new(config(), Saved::default());
    h.greet(Limits { messages_per_sec: 10, messages_burst: 5, ..limits() });
    let joins = h.joins();
    h.frame(joined(&joins[0].0, "lobby", Vec::new(), 0));
    for n in 0..6 {
        h.command(Command::Send(say("lobby", &format!("line {n}"))));
    }
    assert_eq!(h.take_sent().len(), 3, "a burst of 5, less the margin of 2");
    let next = h.session.poll_timeout().expect("a time for the next one");
    let ninth = Duration::from_secs_f64(1.0 / 9.0);
    assert!((next - h.now).abs_diff(ninth) < Duration::from_micros(100), "{:?}", next - h.now);
    h.run_for(Duration::from_secs(1));
    assert_eq!(h.take_sent().len(), 3, "the rest, spaced out");
}

#[test]
fn a_quit_waits_for_acknowledgements_but_not_past_the_linger() {
    let mut h = Harness::new(config(), Saved::default());
    h.up(Vec::new(), 0);
    h.command(Command::SendAs("m1".to_owned(), say("lobby", "bye")));
    h.command(Command::Quit);
    assert!(h.take_other().is_empty(), "still waiting for m1");
    h.frame(ServerFrame::Message(message("lobby", 1, Some("m1"))));
    assert_eq!(h.take_other(), vec![Transmit::Close]);
    assert!(matches!(h.events.last(), Some(Event::Done { unacked: 0, refused: 0 })));

    let mut h = Harness::new(config(), Saved::default());
    h.up(Vec::new(), 0);
    h.command(Command::Send(say("lobby", "never answered")));
    h.command(Command::Quit);
    h.run_for(Duration::from_secs(5));
    assert_eq!(h.take_other(), vec![Transmit::Close]);
    assert!(matches!(h.events.last(), Some(Event::Done { unacked: 1, refused: 0 })));
}

#[test]
fn a_quit_while_offline_ends_at_once_with_a_durable_outbox() {
    let mut h = Harness::new(SessionConfig { durable: true, ..config() }, Saved::default());
    h.disconnect(Disconnect::Unreachable("refused".to_owned()));
    h.command(Command::Send(say("lobby", "kept on disk")));
    h.command(Command::Quit);
    assert!(matches!(h.events.last(), Some(Event::Done { unacked: 1, refused: 0 })));
    let saved = h.session.poll_save().expect("saved at the end");
    assert_eq!(saved.pending.len(), 1);
}

#[test]
fn failures_that_reconnecting_cannot_mend_end_the_session() {
    let mut h = Harness::new(config(), Saved::default());
    h.up(Vec::new(), 0);
    h.disconnect(Disconnect::Closed { code: 4009, reason: "session resumed elsewhere".to_owned() });
    assert!(matches!(h.events.last(), Some(Event::Failed(Failure::Replaced))));

    let mut h = Harness::new(config(), Saved::default());
    assert_eq!(h.take_other(), vec![Transmit::Connect]);
    h.session.handle_connected(h.now);
    h.frame(ServerFrame::Error {
        id: Some("hello".to_owned()),
        code: ErrorCode::Unauthorized,
        message: "access token refused".to_owned(),
        retry_after_ms: None,
    });
    assert!(
        matches!(h.events.last(), Some(Event::Failed(Failure::Refused(why))) if why.contains("unauthorized"))
    );
    assert!(h.take_other().contains(&Transmit::Close));

    let mut h =
        Harness::new(SessionConfig { first_failure_fatal: true, ..config() }, Saved::default());
    h.disconnect(Disconnect::Unreachable("cannot connect to x: refused".to_owned()));
    assert!(
        matches!(h.events.last(), Some(Event::Failed(Failure::Unreachable(why))) if why.starts_with("cannot connect"))
    );
}

#[test]
fn an_outage_is_told_once_not_on_every_attempt() {
    let mut h = Harness::new(config(), Saved::default());
    h.up(Vec::new(), 0);
    h.take_events();
    h.disconnect(Disconnect::Broken("reset".to_owned()));
    let refused = || Disconnect::Unreachable("cannot connect to x: refused".to_owned());
    for how in [refused(), refused(), refused(), Disconnect::Unreachable("other".to_owned())] {
        let until = h.waiting_until();
        h.advance(until.saturating_duration_since(h.now));
        assert_eq!(h.take_other(), vec![Transmit::Connect]);
        h.disconnect(how);
    }
    assert_eq!(
        h.notices(),
        vec![
            "disconnected: reset; reconnecting".to_owned(),
            "reconnect failed: cannot connect to x: refused".to_owned(),
            "reconnect failed: other".to_owned(),
        ],
        "the same reason again is not news"
    );
}

#[test]
fn an_upload_is_announced_paced_and_interleaved_with_messages() {
    let mut h = Harness::new(config(), Saved::default());
    h.greet(Limits { frames_per_sec: 10, frames_burst: 5, ..limits() });
    let joins = h.joins();
    h.frame(joined(&joins[0].0, "lobby", Vec::new(), 0));
    let file = FileId(1);
    let upload = Upload {
        file,
        room: "lobby".to_owned(),
        name: "a.bin".to_owned(),
        mime: "application/octet-stream".to_owned(),
        size: 250,
    };
    h.command(Command::Upload(upload));
    // The conversation list went first.
    h.run_for(Duration::from_millis(200));
    let sent = h.take_sent();
    let [ClientMessage { id: Some(id), frame: ClientFrame::Upload { size: 250, .. } }] =
        sent.as_slice()
    else {
        panic!("the upload announced: {sent:?}");
    };
    assert!(h.take_other().is_empty(), "no part before upload_ready");
    h.frame(ServerFrame::UploadReady { id: Some(id.clone()), chunk_bytes: 100 });
    let mut parts = 0;
    let mut typed = false;
    let mut said_after = None;
    for _ in 0..20 {
        for transmit in h.take_other() {
            let Transmit::Chunk { file: f, max } = transmit else {
                panic!("only parts: {transmit:?}");
            };
            assert_eq!((f, max), (file, 100));
            parts += 1;
            h.session.handle_chunk(h.now, file, if parts < 3 { 100 } else { 50 });
            h.drain();
        }
        if parts == 1 && !typed {
            // A message typed during the upload goes between its parts.
            h.command(Command::Send(say("lobby", "meanwhile")));
            typed = true;
        }
        if !h.take_sent().is_empty() {
            said_after = Some(parts);
        }
        h.run_for(Duration::from_millis(150));
    }
    assert_eq!(parts, 3);
    assert!(said_after.is_some_and(|parts| parts < 3), "sent after part {said_after:?}");
    assert!(!h.session.wants_file(file), "done with the file");

    // An upload cut by a disconnect is said to be.
    let upload = Upload {
        file: FileId(2),
        room: "lobby".to_owned(),
        name: "b.bin".to_owned(),
        mime: "application/octet-stream".to_owned(),
        size: 10,
    };
    h.command(Command::Upload(upload));
    h.disconnect(Disconnect::Broken("reset".to_owned()));
    assert!(
        h.notices().iter().any(|n| n.contains("upload of b.bin interrupted")),
        "{:?}",
        h.notices()
    );
    assert!(!h.session.wants_file(FileId(2)));
}

#[test]
fn an_upload_refused_for_now_is_announced_again_when_the_server_says() {
    let mut h = Harness::new(config(), Saved::default());
    h.up(Vec::new(), 0);
    let upload = Upload {
        file: FileId(1),
        room: "lobby".to_owned(),
        name: "a.bin".to_owned(),
        mime: "application/octet-stream".to_owned(),
        size: 10,
    };
    h.command(Command::Upload(upload));
    let first = h.take_sent();
    let [ClientMessage { id: Some(id), frame: ClientFrame::Upload { .. } }] = first.as_slice()
    else {
        panic!("announced: {first:?}");
    };
    h.frame(ServerFrame::Error {
        id: Some(id.clone()),
        code: ErrorCode::Unavailable,
        message: "storage is failing".to_owned(),
        retry_after_ms: Some(1000),
    });
    assert!(h.session.wants_file(FileId(1)), "still to be sent");
    h.advance(Duration::from_millis(999));
    assert!(h.take_sent().is_empty());
    h.advance(Duration::from_millis(1));
    let again = h.take_sent();
    let [ClientMessage { id: Some(second), frame: ClientFrame::Upload { .. } }] = again.as_slice()
    else {
        panic!("announced again: {again:?}");
    };
    assert_ne!(second, id, "with a new id");
}
