//! The Engine.IO sessions open on a server, and each one's [`Link`]: the
//! one place where a session's state machine meets the requests that carry
//! it (long-polling `GET`s and `POST`s, a WebSocket) and the server that
//! reads and writes it.
//!
//! A `GET` waits on the link for its payload; a `POST` or a WebSocket frame
//! hands packets in, and waits while the server has not taken many of
//! them (so a client cannot outrun the server); the server pushes packets
//! out like it pushes frames to a WebSocket's [`Outgoing`] (they go
//! to that WebSocket once the session moved to one), and reads what came in
//! through an [`EngineSocket`], which also keeps the session's heartbeat.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use tokio::sync::{Notify, oneshot};
use tungstenite::{Message, Utf8Bytes};

use super::{Carrier, Ended, Outbound, Output, Packet, Refusal, Relay, Session, SessionConfig};
use crate::ServerSocket;
use crate::close::close_frame_for;
use crate::outgoing::{Flushed, Outgoing, Pushed};

/// Packets handed in and not yet taken by the server, past which a `POST`
/// is answered (or a WebSocket read on) only once it took some.
const INBOX_PACKETS: usize = 64;

/// How long closing a session's WebSocket may wait for the client.
const CLOSE_WAIT: Duration = Duration::from_secs(2);

/// The Engine.IO sessions open on this server, by `sid`.
#[derive(Debug)]
pub struct Engines {
    /// What this server's `sid`s start with (a cluster node's run).
    pub(super) node: String,
    config: SessionConfig,
    open: Mutex<HashMap<String, Arc<Link>>>,
    /// Where requests for other servers' sessions go.
    pub(super) relay: Option<Arc<dyn Relay>>,
}

impl Engines {
    /// The sessions of a server whose `sid`s start with `node` (may be
    /// empty), each run as `config` says.
    pub fn new(node: impl Into<String>, config: SessionConfig) -> Self {
        Self { node: node.into(), config, open: Mutex::default(), relay: None }
    }

    /// Hands long-polling requests for sessions whose `sid` does not start
    /// with this server's `node` to `relay` (see [`Relay`]).
    #[must_use]
    pub fn relaying(self, relay: Arc<dyn Relay>) -> Self {
        Self { relay: Some(relay), ..self }
    }

    /// How sessions are run.
    pub fn config(&self) -> &SessionConfig {
        &self.config
    }

    /// Opens a session: on long-polling, or on `websocket` (its write
    /// side) if given; its handshake is queued at once.
    pub(crate) fn open(self: &Arc<Self>, websocket: Option<Arc<Outgoing>>) -> Arc<Link> {
        let sid = format!("{}{:032x}", self.node, rand::random::<u128>());
        let carrier = match websocket {
            Some(_) => Carrier::WebSocket,
            None => Carrier::Polling,
        };
        let session = Session::new(sid.clone(), self.config.clone(), now(), carrier);
        let state = State {
            session,
            poll: None,
            websocket,
            inbox: VecDeque::new(),
            ended: None,
            closed_with: None,
        };
        let link = Arc::new(Link {
            sid: sid.clone(),
            engines: Arc::clone(self),
            state: Mutex::new(state),
            arrived: Notify::new(),
            changed: Notify::new(),
        });
        self.lock().insert(sid, Arc::clone(&link));
        link.carry_out(&mut link.lock());
        link
    }

    /// The session `sid`, if it is open here.
    pub(crate) fn get(&self, sid: &str) -> Option<Arc<Link>> {
        self.lock().get(sid).cloned()
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, Arc<Link>>> {
        // A map of handles: a panic elsewhere cannot leave it half-changed.
        self.open.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// One session, shared by the requests that carry it and the server.
#[derive(Debug)]
pub struct Link {
    sid: String,
    engines: Arc<Engines>,
    state: Mutex<State>,
    /// Tells the server's reader that packets came or the session ended.
    arrived: Notify,
    /// Tells those waiting to hand packets in, or for the session's end,
    /// that the inbox shrank or the session changed.
    changed: Notify,
}

#[derive(Debug)]
struct State {
    session: Session,
    /// The waiting long-polling `GET`'s answer.
    poll: Option<oneshot::Sender<String>>,
    /// The WebSocket the session is on, or is probing.
    websocket: Option<Arc<Outgoing>>,
    /// Packets for the server, oldest first.
    inbox: VecDeque<Packet>,
    ended: Option<Ended>,
    /// The close code its WebSocket ended with.
    closed_with: Option<u16>,
}

impl Link {
    /// The session's id.
    pub fn sid(&self) -> &str {
        &self.sid
    }

    /// Sends a text packet (`packet` is its whole encoding, type first:
    /// `42["chat message","hi"]`). On a WebSocket it is queued like any
    /// frame ([`Pushed::First`]: [`Link::flush`] it after pushing the
    /// rest); on long-polling it goes to the waiting `GET`, or waits for
    /// the next. [`Pushed::Full`]: the client does not take what it is
    /// sent.
    pub fn push_text(&self, packet: Utf8Bytes, droppable: bool) -> Pushed {
        self.push(Outbound::Text(packet), droppable)
    }

    /// Sends a binary packet (an attachment), as [`Link::push_text`].
    pub fn push_binary(&self, bytes: Bytes) -> Pushed {
        self.push(Outbound::Binary(bytes), false)
    }

    /// Writes what was pushed to the session's WebSocket, if it has one.
    pub fn flush(&self) -> Flushed {
        let websocket = self.lock().websocket.clone();
        match websocket {
            Some(websocket) => websocket.flush(),
            None => Flushed::Done,
        }
    }

    /// Packets waiting to be written or fetched.
    pub fn queued(&self) -> usize {
        let state = self.lock();
        state.session.queued() + state.websocket.as_ref().map_or(0, |ws| ws.queued())
    }

    /// Ends the session: `close` goes to the client (on its WebSocket, or
    /// to its waiting or next `GET`).
    pub fn close(&self) {
        let mut state = self.lock();
        state.session.close();
        self.carry_out(&mut state);
    }

    /// Why the session ended, if it has.
    pub fn ended(&self) -> Option<Ended> {
        self.lock().ended
    }

    /// The close code the session's WebSocket ended with, the client's or
    /// the server's (for a message too big, or broken), if it had one.
    pub fn closed_with(&self) -> Option<u16> {
        self.lock().closed_with
    }

    fn push(&self, packet: Outbound, droppable: bool) -> Pushed {
        let mut state = self.lock();
        if state.ended.is_some() {
            return Pushed::Closed;
        }
        // On its WebSocket a session sends as any connection does: the
        // fan-out's path, kept short.
        if state.session.carrier() == Carrier::WebSocket
            && let Some(websocket) = &state.websocket
        {
            return match packet {
                Outbound::Text(text) => websocket.push_text(text, droppable),
                Outbound::Binary(bytes) => websocket.push_binary(bytes, droppable),
            };
        }
        // Typing notices are worth nothing to a client that is behind.
        if droppable && state.session.queued() * 2 >= self.engines.config.max_queued {
            return Pushed::Skipped;
        }
        state.session.send(packet);
        let pushed = self.carry_out(&mut state);
        match (state.ended, pushed) {
            (Some(_), _) => Pushed::Full,
            (None, Some(pushed)) => pushed,
            (None, None) => Pushed::Queued,
        }
    }

    /// A long-polling `GET`: its answer comes through the receiver.
    pub(crate) fn poll(&self) -> Result<oneshot::Receiver<String>, Refusal> {
        let mut state = self.lock();
        // A client that comes back past its pong's deadline finds its
        // session over, whether or not the timer has fired yet.
        state.session.handle_timeout(now());
        let (answer, receiver) = oneshot::channel();
        let waiting = state.poll.replace(answer);
        let polled = state.session.handle_poll();
        if polled.is_err() {
            // Refused: the waiting one keeps its place (and hears the
            // session's end, if this ended it).
            state.poll = waiting;
        }
        self.carry_out(&mut state);
        polled.map(|()| receiver)
    }

    /// The waiting `GET`'s client went away.
    pub(crate) fn poll_gone(&self) {
        let mut state = self.lock();
        if state.poll.take().is_some() {
            state.session.handle_poll_gone();
        }
    }

    /// A long-polling `POST` begins.
    pub(crate) fn begin_post(&self) -> Result<(), Refusal> {
        let mut state = self.lock();
        state.session.handle_timeout(now());
        let begun = state.session.begin_post();
        self.carry_out(&mut state);
        begun
    }

    /// The begun `POST`'s body (`None`: it never came whole); returns once
    /// the server has room for more.
    pub(crate) async fn end_post(&self, body: Option<&str>) -> Result<(), Refusal> {
        {
            let mut state = self.lock();
            let posted = match body {
                Some(body) => state.session.handle_post(now(), body),
                None => {
                    state.session.handle_post_gone();
                    Ok(())
                }
            };
            self.carry_out(&mut state);
            posted?;
        }
        self.room().await;
        Ok(())
    }

    /// A WebSocket with the session's `sid` opened; `outgoing` writes it.
    pub(crate) fn websocket(&self, outgoing: &Arc<Outgoing>) -> Result<(), Refusal> {
        let mut state = self.lock();
        state.session.handle_websocket()?;
        state.websocket = Some(Arc::clone(outgoing));
        Ok(())
    }

    /// Runs the session's WebSocket (read by `socket`, written by
    /// `outgoing`) until it or the session ends, writing what the socket
    /// could not take at once within `write_timeout`.
    pub(crate) async fn run_websocket(
        &self,
        mut socket: ServerSocket,
        outgoing: &Outgoing,
        write_timeout: Duration,
    ) {
        let mut refusal = None;
        loop {
            let changed = self.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            if self.lock().ended.is_some() {
                break;
            }
            tokio::select! {
                () = changed => {}
                () = outgoing.stalled() => {
                    let unstall = tokio::time::timeout(write_timeout, outgoing.unstall()).await;
                    if !matches!(unstall, Ok(Ok(()))) {
                        break;
                    }
                }
                frame = socket.next() => {
                    let packet = match frame {
                        Some(Ok(Message::Text(text))) => Packet::decode(text.as_str()),
                        Some(Ok(Message::Binary(bytes))) => Ok(Packet::Binary(bytes.to_vec())),
                        Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => continue,
                        Some(Ok(Message::Close(frame))) => {
                            self.lock().closed_with = frame.map(|frame| frame.code.into());
                            break;
                        }
                        // Closed as a WebSocket server closes for what broke.
                        Some(Err(err)) => {
                            refusal = close_frame_for(&err);
                            self.lock().closed_with = refusal.as_ref().map(|frame| frame.code.into());
                            break;
                        }
                        None => break,
                    };
                    {
                        let mut state = self.lock();
                        match packet {
                            Ok(packet) => state.session.handle_frame(now(), packet),
                            Err(_) => state.session.handle_malformed_frame(),
                        }
                        self.finish(&mut state);
                    }
                    self.room().await;
                }
            }
        }
        {
            let mut state = self.lock();
            state.session.handle_websocket_gone();
            if state.session.carrier() != Carrier::WebSocket {
                state.websocket = None;
            }
            self.carry_out(&mut state);
        }
        // What is queued (the session's `close`) goes before the close
        // frame.
        let _ = tokio::time::timeout(CLOSE_WAIT, async {
            let _ = outgoing.unstall().await;
            let _ = socket.close(refusal).await;
        })
        .await;
    }

    /// The next packet the client sent, or why the session ended; keeps
    /// the heartbeat meanwhile.
    pub(crate) async fn next(&self) -> Result<Packet, Ended> {
        loop {
            let arrived = self.arrived.notified();
            tokio::pin!(arrived);
            arrived.as_mut().enable();
            let due = {
                let mut state = self.lock();
                if let Some(packet) = state.inbox.pop_front() {
                    self.changed.notify_waiters();
                    return Ok(packet);
                }
                if let Some(ended) = state.ended {
                    return Err(ended);
                }
                state.session.poll_timeout()
            };
            let sleep = async {
                match due {
                    Some(due) => tokio::time::sleep_until(due.into()).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                () = arrived => {}
                () = sleep => {
                    let mut state = self.lock();
                    state.session.handle_timeout(now());
                    self.finish(&mut state);
                }
            }
        }
    }

    /// Waits while the server has many packets to take.
    async fn room(&self) {
        loop {
            let changed = self.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            {
                let state = self.lock();
                if state.inbox.len() < INBOX_PACKETS || state.ended.is_some() {
                    return;
                }
            }
            changed.await;
        }
    }

    /// Carries out the session's outputs and writes what went to the
    /// WebSocket.
    fn finish(&self, state: &mut State) {
        if self.carry_out(state) == Some(Pushed::First)
            && let Some(websocket) = &state.websocket
        {
            websocket.flush();
        }
    }

    /// Carries out the session's outputs; says what became of the last
    /// packet pushed to the WebSocket.
    fn carry_out(&self, state: &mut State) -> Option<Pushed> {
        let mut pushed = None;
        while let Some(output) = state.session.poll_output() {
            match output {
                Output::Poll(payload) => {
                    if let Some(answer) = state.poll.take() {
                        let _ = answer.send(payload);
                    }
                }
                Output::Write(packet) => {
                    let Some(websocket) = &state.websocket else { continue };
                    let this = match packet {
                        Outbound::Text(text) => websocket.push_text(text, false),
                        Outbound::Binary(bytes) => websocket.push_binary(bytes, false),
                    };
                    // A flush is due if any push was the first.
                    pushed = match (pushed, this) {
                        (Some(Pushed::First), _) => Some(Pushed::First),
                        _ => Some(this),
                    };
                }
                Output::Received(packet) => {
                    state.inbox.push_back(packet);
                    self.arrived.notify_one();
                }
                Output::Closed(ended) => {
                    state.ended = Some(ended);
                    if let Some(answer) = state.poll.take() {
                        let _ = answer.send(Packet::Close.encode());
                    }
                    self.engines.lock().remove(&self.sid);
                    self.arrived.notify_one();
                    self.changed.notify_waiters();
                }
            }
        }
        pushed
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // The state machine's methods do not panic midway; if one did, the
        // session would be broken either way.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The server's side of one session: what the client sends, and the
/// session to write to.
#[derive(Debug)]
pub struct EngineSocket {
    link: Arc<Link>,
}

impl EngineSocket {
    /// The session, to push packets to and close.
    pub fn link(&self) -> &Arc<Link> {
        &self.link
    }

    /// The next message of the client: a Socket.IO packet's text, or an
    /// attachment; `None` once the session has ended ([`Link::ended`]
    /// says why). Keeps the session's heartbeat while it waits, so call it
    /// whenever the server is not busy with the last one. Cancel safe.
    pub async fn next(&mut self) -> Option<Message> {
        loop {
            match self.link.next().await {
                Ok(Packet::Binary(bytes)) => return Some(Message::Binary(bytes.into())),
                Ok(Packet::Message(text)) => return Some(Message::Text(text.into())),
                // The session hands on nothing else.
                Ok(_) => {}
                Err(_) => return None,
            }
        }
    }
}

impl Drop for EngineSocket {
    fn drop(&mut self) {
        // The server let go: the session ends with it.
        self.link.close();
    }
}

impl From<Arc<Link>> for EngineSocket {
    fn from(link: Arc<Link>) -> Self {
        Self { link }
    }
}

fn now() -> std::time::Instant {
    tokio::time::Instant::now().into_std()
}
