//! The node's subscription to its rooms' channels: one connection, kept up
//! across Redis restarts and cut-offs, its rooms subscribed again each
//! time. What it hears goes to the driver in order, with a word when a room
//! is subscribed (read its log only then: nothing published after that is
//! missed) and when the connection came back (fill every room: what was
//! published meanwhile was not heard).

use std::collections::BTreeSet;
use std::time::Duration;

use futures_util::StreamExt;
use tokio::sync::mpsc;
use tracing::{Instrument, debug, info, warn};

use super::{Published, RoomLog};

/// What the subscription tells the driver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Heard {
    /// A room's message.
    Message(Published),
    /// A change of a room's members.
    Presence(super::Change),
    /// Who is in a shared document, as another node says.
    Awareness {
        /// The document's topic.
        topic: String,
        /// The node that said it (a node hears its own too).
        from: String,
        /// An awareness message.
        message: Vec<u8>,
    },
    /// What was said on the sessions' channel (a session taken over).
    Session(Vec<u8>),
    /// `room` is subscribed from now on.
    Listening(String),
    /// The connection was lost and is back, every room subscribed again.
    Reconnected,
}

/// The handle to the subscription task; dropping it ends the task.
#[derive(Debug)]
pub struct Listener {
    /// Rooms to subscribe to (`true`) or from (`false`).
    rooms: mpsc::UnboundedSender<(String, bool)>,
}

/// The longest wait between two attempts to reach Redis.
const RETRY_MAX: Duration = Duration::from_secs(5);

impl Listener {
    /// Starts the subscription task, listening to the rooms asked for and
    /// always to `sessions` (the sessions' channel); what it hears comes
    /// out of the receiver.
    pub fn spawn(log: RoomLog, sessions: String) -> (Self, mpsc::UnboundedReceiver<Heard>) {
        let (rooms, wanted) = mpsc::unbounded_channel();
        let (heard, out) = mpsc::unbounded_channel();
        tokio::spawn(run(log, sessions, wanted, heard).in_current_span());
        (Self { rooms }, out)
    }

    /// Subscribes to `room`'s channel ([`Heard::Listening`] says when).
    pub fn listen(&self, room: &str) {
        let _ = self.rooms.send((room.to_owned(), true));
    }

    /// Unsubscribes from `room`'s channel.
    pub fn stop(&self, room: &str) {
        let _ = self.rooms.send((room.to_owned(), false));
    }
}

async fn run(
    log: RoomLog,
    sessions: String,
    mut wanted: mpsc::UnboundedReceiver<(String, bool)>,
    heard: mpsc::UnboundedSender<Heard>,
) {
    let mut rooms: BTreeSet<String> = BTreeSet::new();
    // Asked for while Redis was away: told as listened to once subscribed.
    let mut unannounced: BTreeSet<String> = BTreeSet::new();
    let mut retry = Duration::from_millis(50);
    let mut connected_before = false;
    loop {
        let (mut sink, mut stream) = match log.subscriber().await {
            Ok(pubsub) => pubsub.split(),
            Err(err) => {
                // Said once by the log's health; each attempt only here.
                debug!(%err, retry_ms = retry.as_millis(), "cannot subscribe to Redis; trying again");
                // Orders given meanwhile still count.
                let wait = tokio::time::sleep(retry);
                tokio::pin!(wait);
                loop {
                    tokio::select! {
                        () = &mut wait => break,
                        room = wanted.recv() => match room {
                            Some((room, true)) => {
                                rooms.insert(room.clone());
                                unannounced.insert(room);
                            }
                            Some((room, false)) => {
                                rooms.remove(&room);
                                unannounced.remove(&room);
                            }
                            None => return,
                        },
                    }
                }
                retry = (retry * 2).min(RETRY_MAX);
                continue;
            }
        };
        let mut subscribed = sink.subscribe(&sessions).await.is_ok();
        for room in &rooms {
            subscribed &= sink.subscribe(log.channel(room)).await.is_ok();
        }
        if !subscribed {
            continue;
        }
        retry = Duration::from_millis(50);
        if connected_before {
            info!(rooms = rooms.len(), "subscribed to Redis again");
            if heard.send(Heard::Reconnected).is_err() {
                return;
            }
        }
        connected_before = true;
        for room in std::mem::take(&mut unannounced) {
            if heard.send(Heard::Listening(room)).is_err() {
                return;
            }
        }
        loop {
            tokio::select! {
                room = wanted.recv() => {
                    let Some((room, listen)) = room else { return };
                    if !listen {
                        rooms.remove(&room);
                        unannounced.remove(&room);
                        if sink.unsubscribe(log.channel(&room)).await.is_err() {
                            break;
                        }
                        continue;
                    }
                    let subscribed = sink.subscribe(log.channel(&room)).await;
                    rooms.insert(room.clone());
                    if subscribed.is_err() {
                        // Subscribed again with the rest once back.
                        unannounced.insert(room);
                        break;
                    }
                    if heard.send(Heard::Listening(room)).is_err() {
                        return;
                    }
                }
                message = stream.next() => {
                    let Some(message) = message else {
                        warn!("the Redis subscription was lost; subscribing again");
                        log.health().failed("the subscription to Redis was lost");
                        break;
                    };
                    let (channel, payload) = (message.get_channel_name(), message.get_payload_bytes());
                    let said = if channel == sessions {
                        Some(Heard::Session(payload.to_vec()))
                    } else {
                        log.heard(channel, payload)
                    };
                    if let Some(said) = said
                        && heard.send(said).is_err()
                    {
                        return;
                    }
                }
            }
        }
    }
}
