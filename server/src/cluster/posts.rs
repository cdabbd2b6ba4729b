//! The HTTP fallback across nodes. A fallback client's event stream lives
//! on one node, but behind a balancer with no stickiness each of its posts
//! may reach any node. A node names its streams after its run
//! (`INSTANCE.HEX`), so another node knows where a post goes: it publishes
//! the post on that run's channel, and the run hands what it hears to the
//! stream, each post in its turn.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use chat_transport::tungstenite::Bytes;
use chat_transport::{Delivered, Forward, Posted, Streams};
use futures_util::StreamExt;
use redis::aio::PubSub;
use tracing::{Instrument, debug, warn};

use super::RoomLog;

/// How long a post heard from another node may wait for the posts before
/// it: a client has one in flight, but two nodes' publishes of its
/// consecutive posts could be handed over in either order.
const TURN_WAIT: Duration = Duration::from_secs(10);

/// The longest wait between two attempts to subscribe.
const RETRY_MAX: Duration = Duration::from_secs(5);

/// Hands posts for other nodes' streams over Redis.
#[derive(Debug)]
pub struct Posts {
    log: RoomLog,
}

impl Posts {
    /// Posts over `log`'s Redis.
    pub fn new(log: RoomLog) -> Self {
        Self { log }
    }

    /// What this node's streams' names start with.
    pub fn prefix(instance: &str) -> String {
        format!("{instance}.")
    }

    /// Listens on run `instance`'s channel for posts to its `streams`, for
    /// as long as the task runs (reconnecting when Redis comes back).
    pub async fn listen(log: RoomLog, instance: &str, streams: Arc<Streams>) {
        let channels = vec![channel(&log, instance)];
        let subscription = Subscription::new(log, channels, "other nodes' posts").await;
        tokio::spawn(listen(subscription, streams).in_current_span());
    }
}

/// The channel run `instance` hears posts on.
fn channel(log: &RoomLog, instance: &str) -> String {
    log.channel(&format!("post:{instance}"))
}

impl Forward for Posts {
    fn forward(
        &self,
        stream: String,
        seq: u64,
        posted: Posted,
    ) -> Pin<Box<dyn Future<Output = Delivered> + Send>> {
        let log = self.log.clone();
        Box::pin(async move {
            let Some((instance, _)) = stream.rsplit_once('.') else {
                return Delivered::Unknown;
            };
            let channel = channel(&log, instance);
            match log.publish(&channel, &encode(&stream, seq, &posted)).await {
                // Nobody listens: that run is gone, and its streams.
                Ok(0) => Delivered::Unknown,
                Ok(_) => Delivered::Taken,
                Err(err) => {
                    debug!(%err, "cannot hand a post to another node");
                    Delivered::Unavailable
                }
            }
        })
    }
}

/// A post as published: `seq` (8 bytes), flags (1: binary, 2: a close
/// code follows), the close code (2 bytes), the stream's name's length (1
/// byte) and name, then the body.
fn encode(stream: &str, seq: u64, posted: &Posted) -> Vec<u8> {
    let name = stream.as_bytes();
    let mut bytes = Vec::with_capacity(12 + name.len() + posted.body.len());
    bytes.extend_from_slice(&seq.to_be_bytes());
    bytes.push(u8::from(posted.binary) | if posted.close.is_some() { 2 } else { 0 });
    bytes.extend_from_slice(&posted.close.unwrap_or(0).to_be_bytes());
    bytes.push(u8::try_from(name.len()).unwrap_or(u8::MAX));
    bytes.extend_from_slice(name.get(..255).unwrap_or(name));
    bytes.extend_from_slice(&posted.body);
    bytes
}

/// The post in `bytes`, if it is one.
fn decode(bytes: &[u8]) -> Option<(String, u64, Posted)> {
    let seq = u64::from_be_bytes(bytes.get(..8)?.try_into().ok()?);
    let flags = *bytes.get(8)?;
    let close = u16::from_be_bytes(bytes.get(9..11)?.try_into().ok()?);
    let len = usize::from(*bytes.get(11)?);
    let name = std::str::from_utf8(bytes.get(12..12 + len)?).ok()?.to_owned();
    let body = Bytes::copy_from_slice(bytes.get(12 + len..)?);
    let posted = Posted { binary: flags & 1 != 0, body, close: (flags & 2 != 0).then_some(close) };
    Some((name, seq, posted))
}

async fn listen(mut subscription: Subscription, streams: Arc<Streams>) {
    loop {
        let mut pubsub = subscription.next().await;
        let mut messages = pubsub.on_message();
        while let Some(message) = messages.next().await {
            let Some((stream, seq, posted)) = decode(message.get_payload_bytes()) else {
                warn!("a malformed post on this node's channel");
                continue;
            };
            // Each in a task of its own: a stream whose connection is
            // behind holds up nobody else's posts.
            let streams = Arc::clone(&streams);
            tokio::spawn(async move {
                let delivered = streams.post_in_turn(stream, seq, posted, TURN_WAIT).await;
                if !matches!(delivered, Delivered::Taken | Delivered::Duplicate) {
                    debug!(?delivered, "a post from another node was not taken");
                }
            });
        }
        warn!("the subscription for other nodes' posts was lost; subscribing again");
    }
}

/// A node's subscription to channels of its own, for as long as it runs:
/// made before the node serves (so nothing published for it from then on
/// is missed), and made again whenever it is lost.
pub(super) struct Subscription {
    log: RoomLog,
    channels: Vec<String>,
    /// What the channels carry, for the logs.
    what: &'static str,
    /// The subscription made at start, until taken.
    first: Option<PubSub>,
}

impl Subscription {
    /// Subscribes to `channels` of `log`'s Redis, at once if Redis takes
    /// it now (else [`Subscription::next`] keeps trying).
    pub(super) async fn new(log: RoomLog, channels: Vec<String>, what: &'static str) -> Self {
        let mut subscription = Self { log, channels, what, first: None };
        match subscription.subscribe().await {
            Ok(pubsub) => subscription.first = Some(pubsub),
            Err(err) => warn!(%err, what, "cannot subscribe yet; trying again"),
        }
        subscription
    }

    /// The subscription to read: the first, then a new one each time the
    /// last was lost, once Redis takes it (tried again less and less
    /// often).
    pub(super) async fn next(&mut self) -> PubSub {
        if let Some(pubsub) = self.first.take() {
            return pubsub;
        }
        let mut retry = Duration::from_millis(50);
        loop {
            match self.subscribe().await {
                Ok(pubsub) => return pubsub,
                Err(err) => {
                    debug!(%err, what = self.what, "cannot subscribe; trying again");
                    tokio::time::sleep(retry).await;
                    retry = (retry * 2).min(RETRY_MAX);
                }
            }
        }
    }

    async fn subscribe(&self) -> redis::RedisResult<PubSub> {
        let mut pubsub = self.log.subscriber().await?;
        for channel in &self.channels {
            pubsub.subscribe(channel).await?;
        }
        Ok(pubsub)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn posts_cross_the_channel_whole() {
        for posted in [
            Posted { binary: false, body: Bytes::from_static(b"{}\n{}"), close: None },
            Posted { binary: true, body: Bytes::from_static(&[0, 255, 10]), close: None },
            Posted { binary: false, body: Bytes::new(), close: Some(1000) },
        ] {
            let bytes = encode("node-a.1234abcd.00ff", 7, &posted);
            assert_eq!(decode(&bytes), Some(("node-a.1234abcd.00ff".to_owned(), 7, posted)));
        }
        assert_eq!(decode(&[0; 5]), None);
        assert_eq!(decode(&[0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 9, b'a']), None, "a cut name");
    }
}
