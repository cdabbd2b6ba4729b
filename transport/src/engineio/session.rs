//! One Engine.IO session as a state machine, sans IO: long-polling, the
//! upgrade to a WebSocket, the heartbeat, and the bounds, decided here and
//! tested without sockets; a driver carries out what it outputs.
//!
//! Contract: after each `handle_*` (and [`Session::send`]), drain
//! [`Session::poll_output`] until `None`, then wait until
//! [`Session::poll_timeout`] and call [`Session::handle_timeout`] (a call
//! that comes early does nothing).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use base64::Engine as _;
use bytes::Bytes;
use tungstenite::Utf8Bytes;

use super::{Error, Handshake, Packet, SEPARATOR, decode_payload};

/// How a session is run.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    /// How often the server pings. Default 25 s (Engine.IO's).
    pub ping_interval: Duration,
    /// How long it waits for the pong before the session is over. Default
    /// 20 s (Engine.IO's).
    pub ping_timeout: Duration,
    /// The most bytes of one long-polling payload, either way. Default
    /// 1 MB (Engine.IO's).
    pub max_payload: usize,
    /// Packets waiting for a long-polling client to fetch them, at most;
    /// past it the client is too slow and the session ends. Default 1024.
    pub max_queued: usize,
}

impl Default for SessionConfig {
    fn default() -> Self {
        Self {
            ping_interval: Duration::from_secs(25),
            ping_timeout: Duration::from_secs(20),
            max_payload: 1_000_000,
            max_queued: 1024,
        }
    }
}

/// A packet on its way out, its bytes shared by every session it fans out
/// to: an event is encoded once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outbound {
    /// A whole packet as text, its type first (`42["chat message","hi"]`).
    Text(Utf8Bytes),
    /// A binary message (an attachment).
    Binary(Bytes),
}

impl Outbound {
    fn len(&self) -> usize {
        match self {
            Self::Text(text) => text.len(),
            // As base64 in a long-polling payload.
            Self::Binary(bytes) => 1 + bytes.len().div_ceil(3) * 4,
        }
    }

    fn packet(packet: &Packet) -> Self {
        match packet {
            Packet::Binary(bytes) => Self::Binary(Bytes::copy_from_slice(bytes)),
            other => Self::Text(Utf8Bytes::from(other.encode())),
        }
    }
}

/// Which transport carries the session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Carrier {
    /// HTTP long-polling.
    Polling,
    /// Long-polling, while a WebSocket of the same session is being
    /// probed: what is sent waits for the upgrade.
    Probing,
    /// A WebSocket.
    WebSocket,
}

/// What the driver does next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Answer the waiting long-polling `GET` with this payload.
    Poll(String),
    /// Write this on the WebSocket.
    Write(Outbound),
    /// A message from the client: a Socket.IO packet's text
    /// ([`Packet::Message`]), or an attachment ([`Packet::Binary`]).
    Received(Packet),
    /// The session is over: forget it (a later request with its `sid` gets
    /// `400`).
    Closed(Ended),
}

/// Why a session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// The client sent `close`.
    ByClient,
    /// The server closed it ([`Session::close`]).
    ByServer,
    /// No pong within the ping timeout.
    Unresponsive,
    /// A long-polling client left more than `max_queued` packets waiting.
    TooSlow,
    /// The WebSocket it had moved to closed.
    WebSocketClosed,
    /// The client broke the protocol (why).
    Broken(&'static str),
}

/// Why a request of a session is refused (answered `400`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// A second `GET` while one waits: the session ends.
    #[error("a long-polling GET is already waiting")]
    ConcurrentPoll,
    /// A second `POST` while one is read: the session ends.
    #[error("a POST is already being read")]
    ConcurrentPost,
    /// A request of a transport the session does not use now.
    #[error("the session is not on that transport")]
    WrongTransport,
    /// A payload that does not decode: the session ends.
    #[error("a malformed payload: {0}")]
    Malformed(Error),
    /// The session is over.
    #[error("the session is closed")]
    Closed,
}

/// One Engine.IO session.
#[derive(Debug)]
pub struct Session {
    sid: String,
    config: SessionConfig,
    carrier: Carrier,
    /// Packets for a long-polling client, oldest first.
    queue: VecDeque<Outbound>,
    poll_waiting: bool,
    /// The WebSocket's probe was answered: the client pauses long-polling
    /// to move, and a `GET` it still sends gets `noop` at once.
    probed: bool,
    posting: bool,
    next_ping: Option<Instant>,
    pong_due: Option<Instant>,
    outputs: VecDeque<Output>,
    closed: bool,
}

impl Session {
    /// A session `sid` opened at `now` over `carrier` (`Polling` or
    /// `WebSocket`); its first output (or poll answer) is the handshake.
    pub fn new(sid: String, config: SessionConfig, now: Instant, carrier: Carrier) -> Self {
        let mut session = Self {
            sid,
            next_ping: Some(now + config.ping_interval),
            config,
            carrier,
            queue: VecDeque::new(),
            poll_waiting: false,
            probed: false,
            posting: false,
            pong_due: None,
            outputs: VecDeque::new(),
            closed: false,
        };
        let open = Outbound::packet(&session.handshake().packet());
        session.send(open);
        session
    }

    /// The handshake the session opened with.
    pub fn handshake(&self) -> Handshake {
        let upgrades = match self.carrier {
            Carrier::Polling => vec!["websocket".to_owned()],
            Carrier::Probing | Carrier::WebSocket => Vec::new(),
        };
        let millis = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        Handshake {
            sid: self.sid.clone(),
            upgrades,
            ping_interval: millis(self.config.ping_interval),
            ping_timeout: millis(self.config.ping_timeout),
            max_payload: self.config.max_payload as u64,
        }
    }

    /// A long-polling `GET`: answered at once if packets wait, else when
    /// one comes (at the latest, the next ping).
    ///
    /// # Errors
    /// Another `GET` waits (the session ends), the session is on a
    /// WebSocket, or it is over.
    pub fn handle_poll(&mut self) -> Result<(), Refusal> {
        let busy = self.poll_waiting;
        self.start_polling(busy, ("two long-polling GETs at once", Refusal::ConcurrentPoll))?;
        if self.probed {
            // The client is moving to the WebSocket: what it fetches now
            // is nothing, so it can.
            self.outputs.push_back(Output::Poll(Packet::Noop.encode()));
            return Ok(());
        }
        self.poll_waiting = true;
        self.answer_poll();
        Ok(())
    }

    /// The waiting `GET`'s client went away before its answer: what would
    /// have been its payload waits for the next.
    pub fn handle_poll_gone(&mut self) {
        self.poll_waiting = false;
    }

    /// A long-polling `POST` begins: its body is being read.
    ///
    /// # Errors
    /// Another `POST` is being read (the session ends), the session is on
    /// a WebSocket, or it is over.
    pub fn begin_post(&mut self) -> Result<(), Refusal> {
        let busy = self.posting;
        self.start_polling(busy, ("two POSTs at once", Refusal::ConcurrentPost))?;
        self.posting = true;
        Ok(())
    }

    /// The body of the `POST` begun with [`Session::begin_post`]: its
    /// packets, in order.
    ///
    /// # Errors
    /// It does not decode (the session ends), or the session is over.
    pub fn handle_post(&mut self, now: Instant, body: &str) -> Result<(), Refusal> {
        self.posting = false;
        self.usable()?;
        // A payload of more packets than bytes cannot be: a bound that
        // never refuses a valid one.
        let packets = match decode_payload(body, body.len().max(1)) {
            Ok(packets) => packets,
            Err(error) => {
                self.end(Ended::Broken("a malformed payload"));
                return Err(Refusal::Malformed(error));
            }
        };
        for packet in packets {
            self.take(now, packet);
        }
        Ok(())
    }

    /// The begun `POST`'s body never came whole (its client went away).
    pub fn handle_post_gone(&mut self) {
        self.posting = false;
    }

    /// A WebSocket with this session's `sid`: the client probes it, then
    /// moves to it.
    ///
    /// # Errors
    /// The session has a WebSocket (or is probing one), or is over.
    pub fn handle_websocket(&mut self) -> Result<(), Refusal> {
        self.usable()?;
        if self.carrier != Carrier::Polling {
            return Err(Refusal::WrongTransport);
        }
        self.carrier = Carrier::Probing;
        Ok(())
    }

    /// A packet read from the WebSocket.
    pub fn handle_frame(&mut self, now: Instant, packet: Packet) {
        if self.closed {
            return;
        }
        match (self.carrier, packet) {
            (Carrier::Probing, Packet::Ping(probe)) if probe == "probe" => {
                self.probed = true;
                self.outputs.push_back(Output::Write(Outbound::packet(&Packet::Pong(probe))));
                // The waiting GET ends, so the client can move.
                if self.poll_waiting {
                    self.poll_waiting = false;
                    self.outputs.push_back(Output::Poll(Packet::Noop.encode()));
                }
            }
            (Carrier::Probing, Packet::Upgrade) => {
                self.carrier = Carrier::WebSocket;
                if self.poll_waiting {
                    self.poll_waiting = false;
                    self.outputs.push_back(Output::Poll(Packet::Noop.encode()));
                }
                let waiting: Vec<Outbound> = self.queue.drain(..).collect();
                self.outputs.extend(waiting.into_iter().map(Output::Write));
            }
            (Carrier::Polling, _) => self.end(Ended::Broken("a WebSocket frame before the probe")),
            (_, packet) => self.take(now, packet),
        }
    }

    /// A WebSocket message that is no Engine.IO packet: the session ends.
    pub fn handle_malformed_frame(&mut self) {
        self.end(Ended::Broken("a malformed packet"));
    }

    /// The session's WebSocket closed: a probe that failed leaves the
    /// session on long-polling; a WebSocket it had moved to ends it.
    pub fn handle_websocket_gone(&mut self) {
        match self.carrier {
            Carrier::Probing => {
                self.carrier = Carrier::Polling;
                self.probed = false;
                self.answer_poll();
            }
            Carrier::WebSocket => self.end(Ended::WebSocketClosed),
            Carrier::Polling => {}
        }
    }

    /// Sends a packet to the client: written now on a WebSocket, or kept
    /// for the next long-polling `GET` (a client that lets more than
    /// `max_queued` pile up is too slow: the session ends).
    pub fn send(&mut self, packet: Outbound) {
        if self.closed {
            return;
        }
        if self.carrier == Carrier::WebSocket {
            self.outputs.push_back(Output::Write(packet));
            return;
        }
        if self.queue.len() >= self.config.max_queued {
            self.end(Ended::TooSlow);
            return;
        }
        self.queue.push_back(packet);
        self.answer_poll();
    }

    /// The server ends the session: `close` goes out (on the WebSocket, or
    /// to a waiting `GET`), then [`Output::Closed`].
    pub fn close(&mut self) {
        if self.closed {
            return;
        }
        self.send(Outbound::packet(&Packet::Close));
        self.end(Ended::ByServer);
    }

    /// Time passed: a ping is due, or a pong is overdue.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.closed {
            return;
        }
        if self.pong_due.is_some_and(|due| now >= due) {
            self.end(Ended::Unresponsive);
            return;
        }
        if self.next_ping.is_some_and(|at| now >= at) {
            self.next_ping = None;
            self.pong_due = Some(now + self.config.ping_timeout);
            self.send(Outbound::packet(&Packet::Ping(String::new())));
        }
    }

    /// The next thing to do.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    /// When [`Session::handle_timeout`] is next due.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.closed {
            return None;
        }
        self.pong_due.or(self.next_ping)
    }

    /// The transport carrying it now.
    pub fn carrier(&self) -> Carrier {
        self.carrier
    }

    /// Packets waiting for a long-polling `GET`.
    pub fn queued(&self) -> usize {
        self.queue.len()
    }

    /// Whether it is over.
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// A packet from the client, by either transport.
    fn take(&mut self, now: Instant, packet: Packet) {
        match packet {
            Packet::Message(_) | Packet::Binary(_) => {
                self.outputs.push_back(Output::Received(packet))
            }
            Packet::Pong(_) => {
                self.pong_due = None;
                self.next_ping = Some(now + self.config.ping_interval);
            }
            Packet::Close => {
                // The client is going: its waiting `GET` ends with nothing
                // (the reference server's `noop`), not a close of ours.
                if self.poll_waiting {
                    self.poll_waiting = false;
                    self.outputs.push_back(Output::Poll(Packet::Noop.encode()));
                }
                self.end(Ended::ByClient);
            }
            Packet::Open(_) | Packet::Ping(_) | Packet::Upgrade | Packet::Noop => {
                self.end(Ended::Broken("a packet only the server sends, or out of place"));
            }
        }
    }

    /// Answers the waiting `GET` with what is queued, up to `max_payload`
    /// bytes (one packet at least).
    fn answer_poll(&mut self) {
        if !self.poll_waiting || self.carrier != Carrier::Polling || self.queue.is_empty() {
            return;
        }
        let mut body = String::new();
        while let Some(next) = self.queue.front() {
            let more = !body.is_empty();
            if more && body.len() + 1 + next.len() > self.config.max_payload {
                break;
            }
            if more {
                body.push(SEPARATOR);
            }
            match next {
                Outbound::Text(text) => body.push_str(text.as_str()),
                Outbound::Binary(bytes) => {
                    body.push('b');
                    body.push_str(&base64::engine::general_purpose::STANDARD.encode(bytes));
                }
            }
            self.queue.pop_front();
        }
        self.poll_waiting = false;
        self.outputs.push_back(Output::Poll(body));
    }

    /// Whether a long-polling request may start; `busy`: one of its kind is
    /// under way, which ends the session with `why`.
    fn start_polling(
        &mut self,
        busy: bool,
        (why, refusal): (&'static str, Refusal),
    ) -> Result<(), Refusal> {
        self.usable()?;
        if self.carrier == Carrier::WebSocket {
            return Err(Refusal::WrongTransport);
        }
        if busy {
            self.end(Ended::Broken(why));
            return Err(refusal);
        }
        Ok(())
    }

    fn usable(&self) -> Result<(), Refusal> {
        if self.closed { Err(Refusal::Closed) } else { Ok(()) }
    }

    fn end(&mut self, why: Ended) {
        if !self.closed {
            self.closed = true;
            self.outputs.push_back(Output::Closed(why));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: Duration = Duration::from_secs(1);

    fn config() -> SessionConfig {
        SessionConfig {
            ping_interval: 25 * SECOND,
            ping_timeout: 20 * SECOND,
            max_payload: 100,
            max_queued: 4,
        }
    }

    fn outputs(session: &mut Session) -> Vec<Output> {
        std::iter::from_fn(|| session.poll_output()).collect()
    }

    fn text(text: &str) -> Outbound {
        Outbound::Text(Utf8Bytes::from(text))
    }

    fn polling(now: Instant) -> Session {
        let mut session = Session::new("s1".to_owned(), config(), now, Carrier::Polling);
        session.handle_poll().unwrap();
        let open = outputs(&mut session);
        assert_eq!(
            open,
            [Output::Poll(
                r#"0{"sid":"s1","upgrades":["websocket"],"pingInterval":25000,"pingTimeout":20000,"maxPayload":100}"#
                    .to_owned()
            )]
        );
        session
    }

    #[test]
    fn long_polling_answers_with_what_waits_joined_and_holds_a_get_until_something_comes() {
        let now = Instant::now();
        let mut session = polling(now);
        session.send(text("42[\"a\"]"));
        session.send(Outbound::Binary(Bytes::from_static(&[1u8, 2, 3, 4])));
        assert!(outputs(&mut session).is_empty(), "no GET waits");
        session.handle_poll().unwrap();
        assert_eq!(outputs(&mut session), [Output::Poll("42[\"a\"]\x1ebAQIDBA==".to_owned())]);
        // Nothing waits: the GET is held, and answered by the next packet.
        session.handle_poll().unwrap();
        assert!(outputs(&mut session).is_empty());
        session.send(text("42[\"b\"]"));
        assert_eq!(outputs(&mut session), [Output::Poll("42[\"b\"]".to_owned())]);
        // A POST's packets, in order; its pong answers the heartbeat.
        session.begin_post().unwrap();
        session.handle_post(now, "42[\"x\"]\x1e3\x1ebAQI=").unwrap();
        assert_eq!(
            outputs(&mut session),
            [
                Output::Received(Packet::Message("2[\"x\"]".to_owned())),
                Output::Received(Packet::Binary(vec![1, 2])),
            ]
        );
    }

    #[test]
    fn a_payload_is_cut_at_max_payload_and_the_rest_waits() {
        let now = Instant::now();
        let mut session = polling(now);
        let long = format!("4{}", "x".repeat(60));
        session.send(text(&long));
        session.send(text(&long));
        session.handle_poll().unwrap();
        assert_eq!(outputs(&mut session), [Output::Poll(long.clone())]);
        session.handle_poll().unwrap();
        assert_eq!(outputs(&mut session), [Output::Poll(long)]);
    }

    #[test]
    fn the_server_pings_and_a_client_that_does_not_answer_is_gone() {
        let now = Instant::now();
        let mut session = polling(now);
        assert_eq!(session.poll_timeout(), Some(now + 25 * SECOND));
        session.handle_timeout(now + 24 * SECOND);
        assert!(outputs(&mut session).is_empty(), "early: nothing");
        session.handle_poll().unwrap();
        session.handle_timeout(now + 25 * SECOND);
        assert_eq!(outputs(&mut session), [Output::Poll("2".to_owned())]);
        assert_eq!(session.poll_timeout(), Some(now + 45 * SECOND));
        // Answered: the next ping an interval later.
        session.begin_post().unwrap();
        session.handle_post(now + 26 * SECOND, "3").unwrap();
        assert_eq!(session.poll_timeout(), Some(now + 51 * SECOND));
        session.handle_timeout(now + 51 * SECOND);
        session.handle_timeout(now + 71 * SECOND);
        assert_eq!(outputs(&mut session), [Output::Closed(Ended::Unresponsive)]);
        assert_eq!(session.handle_poll(), Err(Refusal::Closed));
        assert_eq!(session.poll_timeout(), None);
    }

    #[test]
    fn the_upgrade_probes_ends_the_waiting_get_then_moves_what_waits_to_the_websocket() {
        let now = Instant::now();
        let mut session = polling(now);
        session.handle_poll().unwrap();
        session.handle_websocket().unwrap();
        assert_eq!(session.handle_websocket(), Err(Refusal::WrongTransport), "one at a time");
        session.handle_frame(now, Packet::Ping("probe".to_owned()));
        assert_eq!(
            outputs(&mut session),
            [Output::Write(text("3probe")), Output::Poll("6".to_owned())]
        );
        // A GET that comes now (it was on its way) is sent away at once.
        session.handle_poll().unwrap();
        assert_eq!(outputs(&mut session), [Output::Poll("6".to_owned())]);
        // Sent meanwhile: held for the WebSocket, in order.
        session.send(text("42[\"1\"]"));
        session.send(text("42[\"2\"]"));
        assert!(outputs(&mut session).is_empty());
        session.handle_frame(now, Packet::Upgrade);
        assert_eq!(
            outputs(&mut session),
            [Output::Write(text("42[\"1\"]")), Output::Write(text("42[\"2\"]"))]
        );
        assert_eq!(session.carrier(), Carrier::WebSocket);
        session.send(text("42[\"3\"]"));
        assert_eq!(outputs(&mut session), [Output::Write(text("42[\"3\"]"))]);
        assert_eq!(session.handle_poll(), Err(Refusal::WrongTransport));
        session.handle_frame(now, Packet::Message("2[\"up\"]".to_owned()));
        assert_eq!(
            outputs(&mut session),
            [Output::Received(Packet::Message("2[\"up\"]".to_owned()))]
        );
        session.handle_websocket_gone();
        assert_eq!(outputs(&mut session), [Output::Closed(Ended::WebSocketClosed)]);
    }

    #[test]
    fn a_probe_that_fails_leaves_the_session_on_long_polling_with_nothing_lost() {
        let now = Instant::now();
        let mut session = polling(now);
        session.handle_websocket().unwrap();
        session.send(text("42[\"kept\"]"));
        session.handle_websocket_gone();
        session.handle_poll().unwrap();
        assert_eq!(outputs(&mut session), [Output::Poll("42[\"kept\"]".to_owned())]);
    }

    #[test]
    fn a_websocket_session_starts_with_its_handshake_and_offers_no_upgrade() {
        let now = Instant::now();
        let mut session = Session::new("s2".to_owned(), config(), now, Carrier::WebSocket);
        let open = outputs(&mut session);
        assert_eq!(
            open,
            [Output::Write(text(
                r#"0{"sid":"s2","upgrades":[],"pingInterval":25000,"pingTimeout":20000,"maxPayload":100}"#
            ))]
        );
        session.handle_frame(now, Packet::Close);
        assert_eq!(outputs(&mut session), [Output::Closed(Ended::ByClient)]);
    }

    #[test]
    fn broken_clients_end_their_session_with_a_reason() {
        let now = Instant::now();
        let mut two_gets = polling(now);
        two_gets.handle_poll().unwrap();
        assert_eq!(two_gets.handle_poll(), Err(Refusal::ConcurrentPoll));
        assert!(matches!(outputs(&mut two_gets).last(), Some(Output::Closed(Ended::Broken(_)))));

        let mut two_posts = polling(now);
        two_posts.begin_post().unwrap();
        assert_eq!(two_posts.begin_post(), Err(Refusal::ConcurrentPost));

        let mut garbage = polling(now);
        garbage.begin_post().unwrap();
        assert_eq!(garbage.handle_post(now, "9"), Err(Refusal::Malformed(Error::UnknownType('9'))));
        assert!(garbage.is_closed());

        let mut upgrade_on_polling = polling(now);
        upgrade_on_polling.begin_post().unwrap();
        upgrade_on_polling.handle_post(now, "5").unwrap();
        assert!(upgrade_on_polling.is_closed());

        let mut garbled = polling(now);
        garbled.handle_malformed_frame();
        assert!(matches!(outputs(&mut garbled).last(), Some(Output::Closed(Ended::Broken(_)))));

        let mut slow = polling(now);
        for n in 0..5 {
            slow.send(text(&format!("42[{n}]")));
        }
        assert_eq!(outputs(&mut slow), [Output::Closed(Ended::TooSlow)]);
    }

    #[test]
    fn a_client_that_closes_ends_its_waiting_get_with_a_noop() {
        let now = Instant::now();
        let mut session = polling(now);
        session.handle_poll().unwrap();
        session.begin_post().unwrap();
        session.handle_post(now, "1").unwrap();
        assert_eq!(
            outputs(&mut session),
            [Output::Poll("6".to_owned()), Output::Closed(Ended::ByClient)]
        );
    }

    #[test]
    fn the_server_closes_with_a_close_packet_first() {
        let now = Instant::now();
        let mut session = polling(now);
        session.handle_poll().unwrap();
        session.close();
        assert_eq!(
            outputs(&mut session),
            [Output::Poll("1".to_owned()), Output::Closed(Ended::ByServer)]
        );
    }
}
