//! Socket.IO's long-polling across nodes. A Socket.IO session lives on the
//! node that opened it, but behind a balancer with no stickiness each of
//! its `GET`s and `POST`s may reach any node. A node names its sessions
//! after its run (`INSTANCE.HEX`), so another node knows where a request
//! goes: it publishes the request on that run's channel with a number of
//! its own, the run answers it as it would its own request and publishes
//! the answer on the asking run's channel, and the asking node writes it to
//! the client. A `GET` whose client goes away meanwhile is called off
//! (`gone`), so the session's next payload waits for the next `GET`
//! instead of going to nobody.
//!
//! On the channels: a request is `KIND ID FROM SID`, a newline and the
//! body (`g`: a `GET`, `p`: a `POST`, `b`: a broken `POST`, `x`: the `GET`
//! `ID` called off); an answer is `KIND ID`, a newline and the payload
//! (`d`: a `GET`'s payload, `t`: taken, `r`: refused, `u`: unknown).

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use chat_transport::engineio::{Answer, Engines, Relay, Relayed, SessionConfig};
use futures_util::StreamExt;
use tokio::sync::oneshot;
use tracing::{Instrument, debug, warn};

use super::RoomLog;
use super::posts::Subscription;

/// How long a relayed `GET` may wait for its answer: its session answers
/// one at the latest with its next ping, so past this its node is gone.
const POLL_WAIT: Duration = Duration::from_secs(60);

/// How long a relayed `POST` may wait for its answer.
const POST_WAIT: Duration = Duration::from_secs(10);

/// Relays long-polling requests for other nodes' sessions over Redis, and
/// answers theirs for this node's.
#[derive(Debug)]
pub struct Polls {
    log: RoomLog,
    /// This node's run.
    instance: String,
    next: AtomicU64,
    /// Requests relayed and not yet answered, by number.
    waiting: Arc<Mutex<HashMap<u64, oneshot::Sender<Answer>>>>,
}

impl Polls {
    /// The Engine.IO sessions of node run `instance`, run as `config`
    /// says: named after the run, and relaying requests for other runs'
    /// sessions over `log`'s Redis; answers theirs for as long as the
    /// task runs (subscribing again when Redis comes back).
    pub async fn engines(log: RoomLog, instance: &str, config: SessionConfig) -> Arc<Engines> {
        let polls = Arc::new(Self {
            log,
            instance: instance.to_owned(),
            next: AtomicU64::new(0),
            waiting: Arc::default(),
        });
        let engines = Engines::new(format!("{instance}."), config);
        let engines = Arc::new(engines.relaying(Arc::clone(&polls) as Arc<dyn Relay>));
        let channels = vec![requests(&polls.log, instance), answers(&polls.log, instance)];
        let what = "other nodes' Socket.IO requests";
        let subscription = Subscription::new(polls.log.clone(), channels, what).await;
        tokio::spawn(listen(subscription, polls, Arc::clone(&engines)).in_current_span());
        engines
    }
}

/// The channel run `instance` hears requests on.
fn requests(log: &RoomLog, instance: &str) -> String {
    log.channel(&format!("eio:{instance}"))
}

/// The channel run `instance` hears answers on.
fn answers(log: &RoomLog, instance: &str) -> String {
    log.channel(&format!("eio-answer:{instance}"))
}

impl Relay for Polls {
    fn relay(&self, sid: String, request: Relayed) -> Pin<Box<dyn Future<Output = Answer> + Send>> {
        let Some((instance, _)) = sid.rsplit_once('.') else {
            return Box::pin(std::future::ready(Answer::Unknown));
        };
        let channel = requests(&self.log, instance);
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let (answer, answered) = oneshot::channel();
        lock(&self.waiting).insert(id, answer);
        let (kind, wait, body) = match request {
            Relayed::Poll => ('g', POLL_WAIT, String::new()),
            Relayed::Post(body) => ('p', POST_WAIT, body),
            Relayed::Broken => ('b', POST_WAIT, String::new()),
        };
        let head = format!("{id} {} {sid}\n", self.instance);
        let mut pending = Pending {
            log: self.log.clone(),
            waiting: Arc::clone(&self.waiting),
            id,
            gone: (kind == 'g').then(|| (channel.clone(), format!("x{head}"))),
        };
        let log = self.log.clone();
        Box::pin(async move {
            let message = format!("{kind}{head}{body}");
            match log.publish(&channel, message.as_bytes()).await {
                // Nobody listens: that run is gone, and its sessions.
                Ok(0) => return pending.settled(Answer::Unknown),
                Ok(_) => {}
                Err(err) => {
                    debug!(%err, "cannot relay a Socket.IO request to another node");
                    return pending.settled(Answer::Unavailable);
                }
            }
            match tokio::time::timeout(wait, answered).await {
                Ok(Ok(answer)) => pending.settled(answer),
                _ => pending.settled(Answer::Unavailable),
            }
        })
    }
}

/// A relayed request not yet answered: dropped so, it is forgotten, and a
/// `GET` is called off at its node.
struct Pending {
    log: RoomLog,
    waiting: Arc<Mutex<HashMap<u64, oneshot::Sender<Answer>>>>,
    id: u64,
    /// Where and what to publish to call a `GET` off.
    gone: Option<(String, String)>,
}

impl Pending {
    fn settled(&mut self, answer: Answer) -> Answer {
        self.gone = None;
        answer
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        lock(&self.waiting).remove(&self.id);
        let Some((channel, message)) = self.gone.take() else { return };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else { return };
        let log = self.log.clone();
        runtime.spawn(async move {
            let _ = log.publish(&channel, message.as_bytes()).await;
        });
    }
}

fn lock<T>(map: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A map of handles: a panic elsewhere cannot leave it half-changed.
    map.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A request heard from another node.
#[derive(Debug, PartialEq, Eq)]
struct Heard {
    id: u64,
    from: String,
    sid: String,
    /// `None`: the `GET` `id` is called off.
    request: Option<Relayed>,
}

fn decode_request(bytes: &[u8]) -> Option<Heard> {
    let text = std::str::from_utf8(bytes).ok()?;
    let (head, body) = text.split_once('\n')?;
    let kind = head.chars().next()?;
    let mut fields = head.get(1..)?.split(' ');
    let (id, from, sid) = (fields.next()?.parse().ok()?, fields.next()?, fields.next()?);
    let request = match kind {
        'g' => Some(Relayed::Poll),
        'p' => Some(Relayed::Post(body.to_owned())),
        'b' => Some(Relayed::Broken),
        'x' => None,
        _ => return None,
    };
    Some(Heard { id, from: from.to_owned(), sid: sid.to_owned(), request })
}

fn encode_answer(id: u64, answer: &Answer) -> Option<String> {
    Some(match answer {
        Answer::Payload(payload) => format!("d{id}\n{payload}"),
        Answer::Taken => format!("t{id}\n"),
        Answer::Refused => format!("r{id}\n"),
        Answer::Unknown => format!("u{id}\n"),
        // Only the asking side says so.
        Answer::Unavailable => return None,
    })
}

fn decode_answer(bytes: &[u8]) -> Option<(u64, Answer)> {
    let text = std::str::from_utf8(bytes).ok()?;
    let (head, payload) = text.split_once('\n')?;
    let id = head.get(1..)?.parse().ok()?;
    let answer = match head.chars().next()? {
        'd' => Answer::Payload(payload.to_owned()),
        't' => Answer::Taken,
        'r' => Answer::Refused,
        'u' => Answer::Unknown,
        _ => return None,
    };
    Some((id, answer))
}

async fn listen(mut subscription: Subscription, polls: Arc<Polls>, engines: Arc<Engines>) {
    let log = &polls.log;
    let answered = answers(log, &polls.instance);
    // The `GET`s being answered, by asking run and number: told when
    // called off.
    let mut calls: HashMap<(String, u64), oneshot::Sender<()>> = HashMap::new();
    // Answered ones are swept out whenever the map has doubled since the
    // last sweep: amortized, not a walk per request.
    let mut sweep_at = 64;
    loop {
        let mut pubsub = subscription.next().await;
        let mut messages = pubsub.on_message();
        while let Some(message) = messages.next().await {
            let payload = message.get_payload_bytes();
            if message.get_channel_name() == answered {
                match decode_answer(payload) {
                    Some((id, answer)) => {
                        if let Some(waiting) = lock(&polls.waiting).remove(&id) {
                            let _ = waiting.send(answer);
                        }
                    }
                    None => warn!("a malformed answer on this node's Socket.IO channel"),
                }
                continue;
            }
            let Some(Heard { id, from, sid, request }) = decode_request(payload) else {
                warn!("a malformed request on this node's Socket.IO channel");
                continue;
            };
            if calls.len() >= sweep_at {
                calls.retain(|_, call| !call.is_closed());
                sweep_at = (calls.len() * 2).max(64);
            }
            let Some(request) = request else {
                if let Some(call) = calls.remove(&(from, id)) {
                    let _ = call.send(());
                }
                continue;
            };
            let (call, called_off) = oneshot::channel();
            if request == Relayed::Poll {
                calls.insert((from.clone(), id), call);
            }
            // Each in a task of its own: a `GET` waits for its payload.
            let (engines, log) = (Arc::clone(&engines), log.clone());
            tokio::spawn(async move {
                let answer = tokio::select! {
                    answer = engines.answer(&sid, request) => answer,
                    // Its client went away: the session keeps what it had.
                    // (Only a `GET` can be called off: a `POST`'s call is
                    // dropped, which ends this branch.)
                    Ok(()) = called_off => return,
                };
                let Some(message) = encode_answer(id, &answer) else { return };
                if let Ok(0) | Err(_) = log.publish(&answers(&log, &from), message.as_bytes()).await
                {
                    debug!("a Socket.IO request's node is gone before its answer");
                }
            });
        }
        warn!("the subscription for other nodes' Socket.IO requests was lost; subscribing again");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_and_answers_cross_the_channels_whole() {
        for (kind, request) in [
            ('g', Some(Relayed::Poll)),
            ('p', Some(Relayed::Post("4hello\u{1e}42[\"a\nb\"]".to_owned()))),
            ('b', Some(Relayed::Broken)),
            ('x', None),
        ] {
            let body = match &request {
                Some(Relayed::Post(body)) => body.as_str(),
                _ => "",
            };
            let bytes = format!("{kind}7 node-a.1234abcd node-b.99.00ff\n{body}");
            let heard = Heard {
                id: 7,
                from: "node-a.1234abcd".to_owned(),
                sid: "node-b.99.00ff".to_owned(),
                request,
            };
            assert_eq!(decode_request(bytes.as_bytes()), Some(heard));
        }
        for answer in [
            Answer::Payload("2\u{1e}42[\"x\"]\n".to_owned()),
            Answer::Taken,
            Answer::Refused,
            Answer::Unknown,
        ] {
            let encoded = encode_answer(3, &answer).unwrap();
            assert_eq!(decode_answer(encoded.as_bytes()), Some((3, answer)));
        }
        assert_eq!(encode_answer(3, &Answer::Unavailable), None);
        assert_eq!(decode_request(b"g7 a\n"), None, "no sid");
        assert_eq!(decode_request(b"q7 a b\n"), None, "no such kind");
        assert_eq!(decode_answer(b"dx\n"), None, "no number");
    }
}
