//! Cluster mode's shared engine against a real `redis-server` of each
//! test's own: the room log numbers a room's messages once, gapless,
//! whoever appends; a retry is answered with the original; a Redis that
//! lost its data starts a new epoch; every append is published in order.

use std::time::Duration;

use chat_server::cluster::{Appended, RoomLog};
use chat_test_support::Redis;
use futures_util::StreamExt;

async fn log(redis: &Redis, keep: usize) -> RoomLog {
    RoomLog::connect(&redis.url(), "chat", keep, Duration::from_secs(3600)).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn appends_from_many_connections_number_a_room_once_without_gaps() {
    let redis = Redis::start();
    let mut writers = Vec::new();
    for w in 0..4 {
        // A connection each, as separate nodes would have.
        let log = log(&redis, 1000).await;
        writers.push(tokio::spawn(async move {
            let mut seqs = Vec::new();
            for n in 0..50 {
                let text = format!("w{w} n{n}");
                let appended = log.append("lobby", None, text.as_bytes()).await.unwrap();
                assert!(!appended.duplicate);
                seqs.push((appended.seq, text));
            }
            seqs
        }));
    }
    let mut numbered = Vec::new();
    for writer in writers {
        let seqs = writer.await.unwrap();
        // Each writer's own messages are numbered in the order it sent them.
        assert!(seqs.windows(2).all(|w| w[0].0 < w[1].0), "{seqs:?}");
        numbered.extend(seqs);
    }
    numbered.sort();
    let seqs: Vec<u64> = numbered.iter().map(|(seq, _)| *seq).collect();
    assert_eq!(seqs, (1..=200).collect::<Vec<_>>(), "once each, no gap");
    // The log holds them in that order, as numbered.
    let page = log(&redis, 1000).await.read("lobby", 1, 1000).await.unwrap();
    assert_eq!(page.newest, 200);
    let read: Vec<(u64, String)> = page
        .messages
        .into_iter()
        .map(|(seq, message)| (seq, String::from_utf8(message).unwrap()))
        .collect();
    assert_eq!(read, numbered);
}

#[tokio::test]
async fn a_retry_with_the_same_id_is_answered_with_the_original() {
    let redis = Redis::start();
    let log = log(&redis, 1000).await;
    let first = log.append("lobby", Some(("s1", "m1")), b"hello").await.unwrap();
    assert_eq!((first.seq, first.duplicate), (1, false));
    let again = log.append("lobby", Some(("s1", "m1")), b"hello again").await.unwrap();
    assert_eq!(again, Appended { duplicate: true, ..first.clone() });
    // Another session's id, or another id, is another message.
    assert_eq!(log.append("lobby", Some(("s2", "m1")), b"x").await.unwrap().seq, 2);
    assert_eq!(log.append("lobby", Some(("s1", "m2")), b"y").await.unwrap().seq, 3);
    // The same id in another room is another message too.
    assert_eq!(log.append("dev", Some(("s1", "m1")), b"z").await.unwrap().seq, 1);
    let page = log.read("lobby", 1, 10).await.unwrap();
    let texts: Vec<&[u8]> = page.messages.iter().map(|(_, m)| m.as_slice()).collect();
    assert_eq!(texts, [&b"hello"[..], b"x", b"y"], "the retry appended nothing");
}

#[tokio::test]
async fn a_redis_that_lost_its_data_starts_a_new_epoch() {
    let redis = Redis::start();
    let log = log(&redis, 1000).await;
    let before = log.append("lobby", None, b"one").await.unwrap();
    log.append("lobby", None, b"two").await.unwrap();
    let client = redis::Client::open(redis.url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let _: () = redis::cmd("FLUSHALL").query_async(&mut conn).await.unwrap();
    let after = log.append("lobby", None, b"three").await.unwrap();
    assert_eq!(after.seq, 1, "numbering starts again");
    assert_ne!(after.epoch, before.epoch, "and says so");
    let page = log.read("lobby", 1, 10).await.unwrap();
    assert_eq!(
        (page.newest, page.epoch.as_str(), page.messages.len()),
        (1, after.epoch.as_str(), 1)
    );
}

#[tokio::test]
async fn the_log_keeps_the_newest_and_reads_from_any_seq() {
    let redis = Redis::start();
    let log = log(&redis, 10).await;
    // A reader first: the room gets its epoch, which the writer keeps.
    let empty = log.read("lobby", 1, 10).await.unwrap();
    assert_eq!((empty.newest, empty.messages.len()), (0, 0));
    for n in 1..=25u64 {
        let appended = log.append("lobby", None, n.to_string().as_bytes()).await.unwrap();
        assert_eq!((appended.seq, appended.epoch.as_str()), (n, empty.epoch.as_str()));
    }
    let page = log.read("lobby", 1, 100).await.unwrap();
    let seqs: Vec<u64> = page.messages.iter().map(|(seq, _)| *seq).collect();
    assert_eq!(seqs, (16..=25).collect::<Vec<_>>(), "the newest ten");
    let page = log.read("lobby", 20, 3).await.unwrap();
    let seqs: Vec<u64> = page.messages.iter().map(|(seq, _)| *seq).collect();
    assert_eq!((page.newest, seqs), (25, vec![20, 21, 22]));
    assert_eq!(page.messages[0].1, b"20");
}

#[tokio::test]
async fn every_append_is_published_with_its_seq_and_epoch_in_order() {
    let redis = Redis::start();
    let log = log(&redis, 1000).await;
    let mut subscriber = log.subscriber().await.unwrap();
    subscriber.subscribe(log.channel("lobby")).await.unwrap();
    let mut heard = subscriber.into_on_message();
    let mut appended = Vec::new();
    for n in 0..100 {
        // A message with a colon in it arrives whole.
        appended.push(log.append("lobby", None, format!("m:{n}").as_bytes()).await.unwrap());
    }
    // Another room's messages go to its own channel.
    log.append("dev", None, b"elsewhere").await.unwrap();
    for (n, sent) in appended.iter().enumerate() {
        let message =
            tokio::time::timeout(Duration::from_secs(10), heard.next()).await.unwrap().unwrap();
        let published = log.published(message.get_channel_name(), message.get_payload_bytes());
        let published = published.unwrap();
        assert_eq!(published.room, "lobby");
        assert_eq!((published.seq, &published.epoch), (sent.seq, &sent.epoch));
        assert_eq!(published.message, format!("m:{n}").as_bytes());
    }
    assert!(log.published("elsewhere", b"1:e:x").is_none());
    assert!(log.published(&log.channel("lobby"), b"not a seq").is_none());
}

/// A node's side of one room, as the server will drive it: what the
/// subscription hears goes through the feed, which asks for the log when
/// something is missing; returns the `seq`s delivered, and whether the
/// subscription came back after being lost.
struct Node {
    log: RoomLog,
    /// Held: dropping it ends the subscription.
    _listener: chat_server::cluster::Listener,
    heard: tokio::sync::mpsc::UnboundedReceiver<chat_server::cluster::Heard>,
    feed: chat_server::cluster::Feed,
    delivered: Vec<u64>,
    reconnects: usize,
}

impl Node {
    async fn start(redis: &Redis, room: &str) -> Self {
        let log = log(redis, 1000).await;
        let (listener, heard) =
            chat_server::cluster::Listener::spawn(log.clone(), "chat:sessions".to_owned());
        listener.listen(room);
        let feed = chat_server::cluster::Feed::default();
        let mut node =
            Self { log, _listener: listener, heard, feed, delivered: Vec::new(), reconnects: 0 };
        // Subscribed first, then read: nothing falls in between.
        loop {
            if let chat_server::cluster::Heard::Listening(name) = node.next().await {
                let page = node.log.read(&name, u64::MAX, 1).await.unwrap();
                node.feed.listen(&name, &page.epoch, page.newest);
                return node;
            }
        }
    }

    async fn next(&mut self) -> chat_server::cluster::Heard {
        tokio::time::timeout(Duration::from_secs(10), self.heard.recv()).await.unwrap().unwrap()
    }

    /// Handles what is heard until `count` messages were delivered.
    async fn deliver_until(&mut self, count: usize) {
        use chat_server::cluster::{Action, Heard};
        while self.delivered.len() < count {
            let actions = match self.next().await {
                Heard::Message(published) => self.feed.heard(published),
                Heard::Reconnected => {
                    self.reconnects += 1;
                    self.feed.reconnected()
                }
                Heard::Listening(_)
                | Heard::Presence(_)
                | Heard::Session(_)
                | Heard::Awareness { .. } => Vec::new(),
            };
            let mut todo: std::collections::VecDeque<Action> = actions.into();
            while let Some(action) = todo.pop_front() {
                match action {
                    Action::Deliver { seq, message, .. } => {
                        assert_eq!(message, format!("m{seq}").as_bytes());
                        self.delivered.push(seq);
                    }
                    Action::Fill { room, from } => {
                        let page = self.log.read(&room, from, 50).await.unwrap();
                        todo.extend(self.feed.filled(&room, page));
                    }
                    other => panic!("{other:?}"),
                }
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscription_cut_off_mid_stream_loses_nothing_and_repeats_nothing() {
    let redis = Redis::start();
    let mut node = Node::start(&redis, "lobby").await;
    let writer = log(&redis, 1000).await;
    let write = |from: u64, to: u64| {
        let writer = writer.clone();
        tokio::spawn(async move {
            for seq in from..=to {
                let appended = writer.append("lobby", None, format!("m{seq}").as_bytes()).await;
                assert_eq!(appended.unwrap().seq, seq);
            }
        })
    };
    write(1, 150).await.unwrap();
    node.deliver_until(150).await;
    // Redis drops every subscriber, as it does one that falls behind; the
    // rest is published while the node is away and while it comes back.
    assert_eq!(cut_off_subscribers(&redis).await, 1);
    let rest = write(151, 300);
    node.deliver_until(300).await;
    rest.await.unwrap();
    assert_eq!(node.delivered, (1..=300).collect::<Vec<_>>(), "each once, in order");
    assert_eq!(node.reconnects, 1, "the subscription came back by itself");
}

/// Two nodes on a Redis of their own, with `lease` (the default if `None`).
/// Redis drops every subscriber (as it does one that falls behind): how
/// many it dropped.
async fn cut_off_subscribers(redis: &Redis) -> u64 {
    let client = redis::Client::open(redis.url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    redis::cmd("CLIENT").arg("KILL").arg("TYPE").arg("pubsub").query_async(&mut conn).await.unwrap()
}

/// Appends a message of alice's to #lobby's log as the script does (the
/// log trimmed to `keep`), but publishes it to no one: its `seq`.
async fn append_unpublished(redis: &Redis, text: &str, keep: usize) -> u64 {
    let client = redis::Client::open(redis.url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let seq: u64 = redis::cmd("HINCRBY")
        .arg("chat:{lobby}:meta")
        .arg("s")
        .arg(1)
        .query_async(&mut conn)
        .await
        .unwrap();
    let message = chat_core::Message {
        room: chat_core::RoomName::parse("lobby").unwrap(),
        seq,
        ts: chat_core::Timestamp::from_unix_millis(1_700_000_000_000),
        from: chat_core::Nick::parse("alice").unwrap(),
        text: std::sync::Arc::from(text),
        action: false,
        id: None,
        sender: None,
        attachment: None,
        kind: chat_core::MessageKind::Said,
    };
    let _: String = redis::cmd("XADD")
        .arg("chat:{lobby}:log")
        .arg("MAXLEN")
        .arg(keep)
        .arg(format!("{seq}-1"))
        .arg("m")
        .arg(chat_server::cluster::codec::encode(&message))
        .query_async(&mut conn)
        .await
        .unwrap();
    seq
}

async fn two_nodes(
    lease: Option<Duration>,
) -> (Redis, crate::support::Server, crate::support::Server) {
    use chat_server::ServerConfig;
    let redis = Redis::start();
    let config = || {
        let mut config = ServerConfig {
            redis: Some(redis.url()),
            metrics_token: Some(crate::metrics::TOKEN.to_owned()),
            ..ServerConfig::default()
        };
        if let Some(lease) = lease {
            config.cluster_lease = lease;
        }
        config
    };
    let a = crate::support::Server::start(config()).await;
    let b = crate::support::Server::start(config()).await;
    (redis, a, b)
}

/// The next frame of type `kind` `client` gets, others skipped.
async fn next_of(client: &mut crate::support::Client, kind: &str) -> serde_json::Value {
    client.next_of(kind).await
}

/// The next room message `client` gets: (seq, from, text).
async fn next_message(client: &mut crate::support::Client) -> (u64, String, String) {
    loop {
        let frame = client.recv().await;
        if frame["type"] == "message" {
            let text = |key: &str| frame[key].as_str().unwrap().to_owned();
            return (frame["seq"].as_u64().unwrap(), text("from"), text("text"));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_on_one_redis_number_a_rooms_messages_once_for_both() {
    use crate::support::Client;

    use serde_json::json;
    let (_redis, a, b) = two_nodes(None).await;
    let mut alice = Client::in_room(&a, "alice", "lobby").await;
    let mut bob = Client::in_room(&b, "bob", "lobby").await;
    alice.send(json!({"type": "say", "room": "lobby", "text": "hi from a", "id": "a1"})).await;
    let first = (1, "alice".to_owned(), "hi from a".to_owned());
    assert_eq!(next_message(&mut alice).await, first, "the echo comes back numbered");
    assert_eq!(next_message(&mut bob).await, first);
    bob.send(json!({"type": "say", "room": "lobby", "text": "hi from b", "id": "b1"})).await;
    let second = (2, "bob".to_owned(), "hi from b".to_owned());
    assert_eq!(next_message(&mut bob).await, second);
    assert_eq!(next_message(&mut alice).await, second);
    // A retry is answered with the original, and nothing new is numbered.
    alice.send(json!({"type": "say", "room": "lobby", "text": "hi from a", "id": "a1"})).await;
    assert_eq!(next_message(&mut alice).await, first);
    // Someone joining on either node gets the room as Redis has it.
    let mut carol = Client::hello(&b, "carol").await;
    carol.send(json!({"type": "join", "room": "lobby"})).await;
    let joined = carol.expect("joined").await;
    assert_eq!(joined["last_seq"], 2, "{joined}");
    let texts: Vec<&str> =
        joined["history"].as_array().unwrap().iter().map(|m| m["text"].as_str().unwrap()).collect();
    assert_eq!(texts, ["hi from a", "hi from b"]);
    carol.send(json!({"type": "say", "room": "lobby", "text": "third", "id": "c1"})).await;
    assert_eq!(next_message(&mut alice).await, (3, "carol".to_owned(), "third".to_owned()));
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_with_senders_on_each_deliver_every_message_once_in_one_order() {
    use crate::support::{Client, Server};
    use chat_server::ServerConfig;
    use serde_json::json;
    const EACH: u64 = 30;
    let redis = Redis::start();
    let chat = chat_core::ChatConfig {
        messages_per_sec: 1000,
        messages_burst: 1000,
        ..chat_core::ChatConfig::default()
    };
    let config =
        || ServerConfig { redis: Some(redis.url()), chat: chat.clone(), ..ServerConfig::default() };
    let nodes = [
        Server::start(config()).await,
        Server::start(config()).await,
        Server::start(config()).await,
    ];
    let mut clients = Vec::new();
    for (n, node) in nodes.iter().enumerate() {
        for c in 0..2 {
            clients.push(Client::in_room(node, &format!("n{n}c{c}"), "lobby").await);
        }
    }
    // Everyone sends at once, without waiting for anything.
    for (c, client) in clients.iter_mut().enumerate() {
        for k in 0..EACH {
            let (text, id) = (format!("{c}:{k}"), format!("{c}-{k}"));
            client.send(json!({"type": "say", "room": "lobby", "text": text, "id": id})).await;
        }
    }
    let total = EACH * clients.len() as u64;
    let mut orders = Vec::new();
    for client in &mut clients {
        let mut got = Vec::new();
        while (got.len() as u64) < total {
            got.push(next_message(client).await);
        }
        let seqs: Vec<u64> = got.iter().map(|(seq, _, _)| *seq).collect();
        assert_eq!(seqs, (1..=total).collect::<Vec<_>>(), "every message once, in seq order");
        // Each sender's messages in the order it sent them.
        for c in 0..6 {
            let mine: Vec<u64> = got
                .iter()
                .filter_map(|(_, _, text)| text.split_once(':'))
                .filter(|(who, _)| *who == c.to_string())
                .map(|(_, k)| k.parse().unwrap())
                .collect();
            assert_eq!(mine, (0..EACH).collect::<Vec<_>>());
        }
        orders.push(got);
    }
    assert!(orders.windows(2).all(|w| w[0] == w[1]), "one order for everyone");
    for node in nodes {
        node.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_redis_down_messages_are_refused_for_now_and_all_goes_on_when_it_returns() {
    use crate::support::{Client, Server};
    use chat_server::ServerConfig;
    use serde_json::json;
    // The strict promise: every write on disk before it is answered.
    let mut redis = Redis::start_with(&["--appendonly", "yes", "--appendfsync", "always"]);
    let config = || ServerConfig {
        redis: Some(redis.url()),
        metrics_token: Some(crate::metrics::TOKEN.to_owned()),
        ..ServerConfig::default()
    };
    let (a, b) = (Server::start(config()).await, Server::start(config()).await);
    let mut alice = Client::in_room(&a, "alice", "lobby").await;
    let mut bob = Client::in_room(&b, "bob", "lobby").await;
    alice.send(json!({"type": "say", "room": "lobby", "text": "before", "id": "a1"})).await;
    assert_eq!(next_message(&mut bob).await.0, 1);
    assert_eq!(next_message(&mut alice).await.0, 1);

    redis.kill();
    let say = json!({"type": "say", "room": "lobby", "text": "meanwhile", "id": "a2"});
    alice.send(say.clone()).await;
    let refused = alice.expect_error("unavailable").await;
    assert_eq!(refused["id"], "a2", "{refused}");
    let wait = refused["retry_after_ms"].as_u64().unwrap();
    // A direct message to someone on another node too (who holds the nick
    // cannot be told, and it could not be numbered), never "no such nick".
    alice.send(json!({"type": "dm", "to": "bob", "text": "psst", "id": "d1"})).await;
    assert_eq!(alice.expect_error("unavailable").await["id"], "d1");
    // The node itself carries on.
    alice.expect_nothing_pending().await;
    crate::metrics::until(&b, "chat_redis_up", |v| v == 0.0).await;

    redis.restart();
    crate::metrics::until(&b, "chat_redis_up", |v| v == 1.0).await;
    crate::metrics::until(&b, "chat_redis_reconnects_total", |v| v >= 1.0).await;
    // As a client does: the same message again when told, until taken.
    let mut taken = None;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(wait)).await;
        alice.send(say.clone()).await;
        let frame = alice.recv().await;
        if frame["type"] == "message" {
            taken = Some(frame);
            break;
        }
        assert_eq!(frame["code"], "unavailable", "{frame}");
    }
    let taken = taken.expect("taken once Redis is back");
    assert_eq!((taken["seq"].as_u64(), &taken["text"]), (Some(2), &json!("meanwhile")));
    // The other node heard it too, its subscription back by itself.
    assert_eq!(next_message(&mut bob).await, (2, "alice".to_owned(), "meanwhile".to_owned()));
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_last_message_whose_publication_was_lost_is_found_by_the_periodic_check() {
    use crate::support::Client;

    use serde_json::json;
    let (redis, a, b) = two_nodes(None).await;
    let mut alice = Client::in_room(&a, "alice", "lobby").await;
    let mut bob = Client::in_room(&b, "bob", "lobby").await;
    alice.send(json!({"type": "say", "room": "lobby", "text": "one", "id": "a1"})).await;
    assert_eq!(next_message(&mut bob).await.0, 1);
    // Appended as the script does, but its publication never reaches
    // anyone, and nothing follows it: only a look at the log can tell.
    assert_eq!(append_unpublished(&redis, "lost in pub/sub", 1000).await, 2);
    let found = (2, "alice".to_owned(), "lost in pub/sub".to_owned());
    assert_eq!(next_message(&mut bob).await, found);
    assert_eq!(next_message(&mut alice).await.0, 1, "alice's own echo first");
    assert_eq!(next_message(&mut alice).await, found);
    // The metrics say so: a gap found, one message read back to fill it.
    for node in [&a, &b] {
        crate::metrics::until(node, "chat_redis_gap_fills_total", |v| v >= 1.0).await;
        crate::metrics::until(node, "chat_redis_filled_messages_total", |v| v == 1.0).await;
        crate::metrics::until(node, "chat_redis_up", |v| v == 1.0).await;
    }
    let scraped = crate::metrics::scrape(&a).await;
    assert_eq!(scraped["chat_redis_roundtrip_seconds_count"], 1.0, "alice's one append");
    assert_eq!(scraped["chat_redis_lost_messages_total"], 0.0);
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_room_asked_for_while_redis_is_away_is_listened_to_once_it_is_back() {
    use chat_server::cluster::{Heard, Listener};
    let mut redis = Redis::start();
    let log = log(&redis, 100).await;
    let (listener, mut heard) = Listener::spawn(log.clone(), "chat:sessions".to_owned());
    listener.listen("lobby");
    async fn next(heard: &mut tokio::sync::mpsc::UnboundedReceiver<Heard>) -> Heard {
        tokio::time::timeout(Duration::from_secs(15), heard.recv()).await.unwrap().unwrap()
    }
    assert_eq!(next(&mut heard).await, Heard::Listening("lobby".into()));
    redis.kill();
    listener.listen("dev");
    redis.restart();
    // Whether the subscription failed or was not there to try: once back,
    // the room is said to be listened to (its log is read only then).
    let mut got = Vec::new();
    while !got.contains(&Heard::Listening("dev".into())) {
        got.push(next(&mut heard).await);
    }
    assert!(got.contains(&Heard::Reconnected), "{got:?}");
}

#[tokio::test]
async fn a_nick_is_claimed_once_renewed_by_its_holder_and_released_only_by_it() {
    let redis = Redis::start();
    let lease = Duration::from_secs(30);
    let nicks = log(&redis, 10).await.nicks("node.1", lease);
    assert!(nicks.claim("alice", "token-a").await.unwrap());
    assert!(!nicks.claim("alice", "token-b").await.unwrap(), "another session's");
    assert!(nicks.claim("alice", "token-a").await.unwrap(), "its holder claims it again");
    // A release by anyone else changes nothing.
    nicks.release("alice", "token-b").await.unwrap();
    assert!(!nicks.claim("alice", "token-b").await.unwrap());
    // Renewed: the lease starts again; lost: Redis forgot, someone took it.
    let client = redis::Client::open(redis.url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let key = "chat:nick:{alice}";
    let () = redis::cmd("PEXPIRE").arg(key).arg(1000).query_async(&mut conn).await.unwrap();
    let held = vec![("alice".to_owned(), "token-a".to_owned())];
    assert_eq!(nicks.renew(&held).await.unwrap(), Vec::<String>::new());
    let ttl: i64 = redis::cmd("PTTL").arg(key).query_async(&mut conn).await.unwrap();
    assert!(ttl > 1000 && ttl <= 30_000, "renewed to the lease: {ttl}");
    let () = redis::cmd("FLUSHALL").query_async(&mut conn).await.unwrap();
    assert!(nicks.claim("bob", "token-c").await.unwrap());
    let held =
        vec![("alice".to_owned(), "token-a".to_owned()), ("bob".to_owned(), "token-b".to_owned())];
    assert_eq!(nicks.renew(&held).await.unwrap(), ["bob"], "alice claimed again, bob is token-c's");
    // Its holder lets it go: free for anyone.
    nicks.release("alice", "token-a").await.unwrap();
    assert!(nicks.claim("alice", "token-b").await.unwrap());
    // The key holds a digest and the node run, never the token itself.
    let stored: String = redis::cmd("GET").arg(key).query_async(&mut conn).await.unwrap();
    assert!(!stored.contains("token-b") && stored.ends_with(":node.1"), "{stored}");
    // The same session claiming through another node run takes it along.
    let elsewhere = log(&redis, 10).await.nicks("node.2", lease);
    assert!(elsewhere.claim("alice", "token-b").await.unwrap());
    nicks.release("alice", "token-b").await.unwrap();
    assert!(!nicks.claim("alice", "token-c").await.unwrap(), "a late release frees nothing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nick_is_unique_across_nodes_and_free_again_once_let_go() {
    use crate::support::Client;

    use serde_json::json;
    let (_redis, a, b) = two_nodes(None).await;
    let mut alice = Client::hello(&a, "alice").await;
    let mut impostor = Client::connect(&b).await;
    impostor.send(json!({"type": "hello", "nick": "Alice", "id": "1"})).await;
    let refused = impostor.expect_error("nick_taken").await;
    assert_eq!(refused["id"], "1");
    // Renaming onto a nick held on the other node is refused as well.
    let mut bob = Client::hello(&b, "bob").await;
    bob.send(json!({"type": "nick", "nick": "alice", "id": "2"})).await;
    bob.expect_error("nick_taken").await;
    // Alice renames on her node: her old nick is free on the other one.
    alice.send(json!({"type": "nick", "nick": "alicia", "id": "3"})).await;
    let changed = alice.expect("nick").await;
    assert_eq!(changed["nick"], "alicia", "{changed}");
    // Node a lets nicks go in the order it was asked: once a claim made
    // after the rename is answered, the old nick's release is done.
    Client::hello(&a, "yan").await;
    bob.send(json!({"type": "nick", "nick": "alice", "id": "4"})).await;
    assert_eq!(bob.expect("nick").await["nick"], "alice");
    // Guests on both nodes never collide, and a quit frees the nick.
    let mut guests = Vec::new();
    for node in [&a, &b, &a, &b] {
        let mut guest = Client::connect(node).await;
        guest.send(json!({"type": "hello"})).await;
        guests.push(guest.expect("welcome").await["nick"].as_str().unwrap().to_owned());
    }
    let distinct: std::collections::BTreeSet<&String> = guests.iter().collect();
    assert_eq!(distinct.len(), 4, "{guests:?}");
    alice.quit().await;
    Client::hello(&a, "zed").await;
    let mut again = Client::connect(&b).await;
    again.send(json!({"type": "hello", "nick": "alicia"})).await;
    assert_eq!(again.expect("welcome").await["nick"], "alicia");
    a.shutdown().await;
    b.shutdown().await;
}

/// The next presence or typing frame `client` gets: (event, nick).
async fn next_presence(client: &mut crate::support::Client) -> (String, String) {
    loop {
        let frame = client.recv().await;
        let text = |key: &str| frame[key].as_str().unwrap_or_default().to_owned();
        match frame["type"].as_str() {
            Some("presence") => return (text("event"), text("nick")),
            Some("typing") => return ("typing".to_owned(), text("nick")),
            _ => {}
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_on_other_nodes_are_listed_and_their_comings_and_goings_shown() {
    use crate::support::Client;

    use serde_json::json;
    let (_redis, a, b) = two_nodes(None).await;
    let mut alice = Client::in_room(&a, "alice", "lobby").await;
    let mut bob = Client::hello(&b, "bob").await;
    bob.send(json!({"type": "join", "room": "lobby"})).await;
    let joined = bob.expect("joined").await;
    assert_eq!(joined["members"], json!(["alice", "bob"]), "{joined}");
    assert_eq!(joined["member_count"], 2);
    let seen = |event: &str, nick: &str| (event.to_owned(), nick.to_owned());
    assert_eq!(next_presence(&mut alice).await, seen("join", "bob"));
    bob.send(json!({"type": "typing", "room": "lobby"})).await;
    assert_eq!(next_presence(&mut alice).await, seen("typing", "bob"));
    bob.send(json!({"type": "nick", "nick": "robert"})).await;
    let renamed = next_of(&mut alice, "presence").await;
    assert_eq!((renamed["event"].as_str(), renamed["old"].as_str()), (Some("nick"), Some("bob")));
    alice.send(json!({"type": "who", "room": "lobby", "id": "w"})).await;
    let members = alice.expect("members").await;
    assert_eq!(members["members"], json!(["alice", "robert"]), "{members}");
    // A lost connection shows as away, and back when resumed elsewhere on
    // its node; a leave as a leave.
    let session = bob.session.clone();
    drop(bob);
    assert_eq!(next_presence(&mut alice).await, seen("away", "robert"));
    let (mut bob, _) = Client::resume(&b, &session).await;
    assert_eq!(next_presence(&mut alice).await, seen("back", "robert"));
    bob.send(json!({"type": "leave", "room": "lobby"})).await;
    assert_eq!(next_presence(&mut alice).await, seen("leave", "robert"));
    alice.send(json!({"type": "who", "room": "lobby", "id": "w2"})).await;
    assert_eq!(alice.expect("members").await["count"], 1);
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_members_of_a_node_that_stops_leave_every_room_once_its_lease_runs_out() {
    use crate::support::Client;

    use serde_json::json;
    let (_redis, a, b) = two_nodes(Some(Duration::from_millis(900))).await;
    let mut alice = Client::in_room(&a, "alice", "lobby").await;
    let _bob = Client::in_room(&b, "bob", "lobby").await;
    assert_eq!(next_presence(&mut alice).await, ("join".to_owned(), "bob".to_owned()));
    // Node b goes away without a word to anyone about bob leaving.
    b.shutdown().await;
    let mut events = Vec::new();
    while events.last().map(|(event, _): &(String, String)| event.as_str()) != Some("leave") {
        events.push(next_presence(&mut alice).await);
    }
    assert_eq!(events.last(), Some(&("leave".to_owned(), "bob".to_owned())), "{events:?}");
    alice.send(json!({"type": "who", "room": "lobby", "id": "w"})).await;
    assert_eq!(alice.expect("members").await["members"], json!(["alice"]));
    a.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missed_presence_change_is_noticed_and_the_room_read_again() {
    use crate::support::Client;

    use serde_json::json;
    let (redis, a, b) = two_nodes(Some(Duration::from_millis(900))).await;
    let mut alice = Client::in_room(&a, "alice", "lobby").await;
    let mut bob = Client::in_room(&b, "bob", "lobby").await;
    assert_eq!(next_presence(&mut alice).await, ("join".to_owned(), "bob".to_owned()));
    // Zed joined through a node whose publication never arrived: in the
    // room's hash, with the version bumped, but never heard.
    let client = redis::Client::open(redis.url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let () = redis::cmd("SET").arg("chat:node:lost.1").arg(1).query_async(&mut conn).await.unwrap();
    let () = redis::pipe()
        .hincr("chat:{lobby}:members", "#", 1)
        .ignore()
        .hset(
            "chat:{lobby}:members",
            "0123456789abcdef0123456789abcdef",
            r#"{"nick":"zed","node":"lost.1"}"#,
        )
        .ignore()
        .query_async(&mut conn)
        .await
        .unwrap();
    // The next change heard is one version further than expected: node a
    // reads the room and finds zed.
    bob.send(json!({"type": "typing", "room": "lobby"})).await;
    let mut seen = Vec::new();
    while !seen.contains(&("join".to_owned(), "zed".to_owned())) {
        seen.push(next_presence(&mut alice).await);
    }
    assert_eq!(seen.first(), Some(&("typing".to_owned(), "bob".to_owned())), "{seen:?}");
    // Once its node's heartbeat is gone, zed leaves.
    let () = redis::cmd("DEL").arg("chat:node:lost.1").query_async(&mut conn).await.unwrap();
    while next_presence(&mut alice).await != ("leave".to_owned(), "zed".to_owned()) {}
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_comes_back_through_another_node_with_its_nick_rooms_and_retries() {
    use crate::support::Client;

    use serde_json::json;
    let (_redis, a, b) = two_nodes(None).await;
    let mut alice = Client::in_room(&a, "alice", "lobby").await;
    let mut bob = Client::in_room(&b, "bob", "lobby").await;
    alice.send(json!({"type": "say", "room": "lobby", "text": "first", "id": "m1"})).await;
    assert_eq!(next_message(&mut alice).await.0, 1);
    assert_eq!(next_message(&mut bob).await.0, 1);
    let token = alice.session.clone();
    // Her connection to a drops; her client comes back through b.
    drop(alice);
    let (mut alice, welcome) = Client::resume(&b, &token).await;
    assert_eq!(welcome["resumed"], true, "{welcome}");
    assert_eq!(
        (welcome["nick"].as_str(), welcome["session"].as_str()),
        (Some("alice"), Some(token.as_str()))
    );
    assert_eq!(welcome["rooms"], json!(["lobby"]));
    alice.send(json!({"type": "join", "room": "lobby", "after": 1})).await;
    let joined = alice.expect("joined").await;
    assert_eq!(
        (joined["resume"].as_str(), joined["members"].clone()),
        (Some("resumed"), json!(["alice", "bob"]))
    );
    // Her retry of what she sent through a is answered with the original.
    alice.send(json!({"type": "say", "room": "lobby", "text": "first", "id": "m1"})).await;
    assert_eq!(next_message(&mut alice).await, (1, "alice".to_owned(), "first".to_owned()));
    alice.send(json!({"type": "say", "room": "lobby", "text": "second", "id": "m2"})).await;
    assert_eq!(next_message(&mut bob).await, (2, "alice".to_owned(), "second".to_owned()));
    // Her nick stayed hers throughout, on every node.
    let mut impostor = Client::connect(&a).await;
    impostor.send(json!({"type": "hello", "nick": "alice"})).await;
    impostor.expect_error("nick_taken").await;
    // Node a let her go: coming back through a moves her again, and the
    // connection she had on b is closed as resumed elsewhere.
    let (_again, welcome) = Client::resume(&a, &token).await;
    assert_eq!(welcome["resumed"], true, "{welcome}");
    let (close, _) = alice.until_closed().await;
    assert_eq!(close.map(|c| u16::from(c.code)), Some(4009));
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_that_lost_a_room_has_its_members_rejoin_it_afresh_on_every_node() {
    use crate::support::Client;

    use serde_json::json;
    let (redis, a, b) = two_nodes(None).await;
    let mut alice = Client::in_room(&a, "alice", "lobby").await;
    let mut bob = Client::in_room(&b, "bob", "lobby").await;
    for n in 1..=3 {
        bob.send(json!({"type": "say", "room": "lobby", "text": format!("old {n}"), "id": format!("o{n}")})).await;
        assert_eq!(next_message(&mut alice).await.0, n);
    }
    // Redis loses everything (no persistence, a restart): numbering starts
    // again, and no node may show seq 1 as if it came after seq 3.
    let client = redis::Client::open(redis.url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let () = redis::cmd("FLUSHALL").query_async(&mut conn).await.unwrap();
    bob.send(json!({"type": "say", "room": "lobby", "text": "new 1", "id": "n1"})).await;
    // Both are sent back to resume at once, on their nodes.
    for client in [&mut alice, &mut bob] {
        let (close, _) = client.until_closed().await;
        let close = close.expect("a close frame");
        assert_eq!(u16::from(close.code), 1012, "{close:?}");
        assert!(chat_protocol::retry_after(&close.reason).is_some_and(|ms| ms <= 1000));
    }
    let (alice_token, bob_token) = (alice.session.clone(), bob.session.clone());
    for (token, node) in [(alice_token, &a), (bob_token, &b)] {
        let (mut again, welcome) = Client::resume(node, &token).await;
        assert_eq!(welcome["resumed"], true, "{welcome}");
        again.send(json!({"type": "join", "room": "lobby", "after": 3})).await;
        // Presence of the other, sent back too, may come first.
        let joined = next_of(&mut again, "joined").await;
        assert_eq!(joined["resume"], "fresh", "{joined}");
        let texts: Vec<&str> = joined["history"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["text"].as_str().unwrap())
            .collect();
        assert_eq!(texts, ["new 1"], "{joined}");
        assert_eq!(joined["last_seq"], 1);
    }
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test]
async fn in_cluster_mode_uploads_without_a_shared_directory_are_announced_off_and_refused() {
    use crate::support::{Client, Server};
    use serde_json::json;
    let redis = Redis::start();
    let dir = tempfile::tempdir().unwrap();
    let config =
        chat_server::ServerConfig { files_shared: false, ..shared_files(&redis, dir.path()) };
    let server = Server::start(config).await;
    let mut client = Client::connect(&server).await;
    client.send(json!({"type": "hello", "nick": "ann"})).await;
    let welcome = client.expect("welcome").await;
    assert_eq!(welcome["limits"]["max_upload_bytes"], 0, "{welcome}");
    client.send(json!({"type": "join", "room": "lobby"})).await;
    client.expect("joined").await;
    let upload = json!({"type": "upload", "id": "u1", "room": "lobby", "name": "a.txt", "mime": "text/plain", "size": 3});
    client.send(upload).await;
    let refused = client.expect_error("unavailable").await;
    assert_eq!(refused["id"], "u1");
    server.shutdown().await;
}

/// A node's config on `redis` with uploads in `shared`, a directory every
/// node shares.
fn shared_files(redis: &Redis, shared: &std::path::Path) -> chat_server::ServerConfig {
    chat_server::ServerConfig {
        redis: Some(redis.url()),
        uploads: Some(chat_server::Uploads {
            dir: shared.to_path_buf(),
            max_bytes: 1 << 20,
            max_total_bytes: 1 << 30,
            min_free_bytes: 0,
        }),
        files_shared: true,
        ..chat_server::ServerConfig::default()
    }
}

/// `client` uploads `bytes` to #lobby as a text file (under request id
/// `id`); the file's id, from the message as `client` gets it back.
async fn upload_text(client: &mut crate::support::Client, id: &str, bytes: &[u8]) -> String {
    use chat_transport::tungstenite::Message as Frame;
    let upload = serde_json::json!({"type": "upload", "id": id, "room": "lobby",
        "name": "note.txt", "mime": "text/plain", "size": bytes.len()});
    client.send(upload).await;
    next_of(client, "upload_ready").await;
    client.socket.send(Frame::binary(bytes.to_vec())).await.unwrap();
    let message = next_of(client, "message").await;
    message["attachment"]["id"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_uploaded_through_one_node_is_fetched_through_another_by_members_only() {
    use crate::support::{Client, Server};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let redis = Redis::start();
    let shared = tempfile::tempdir().unwrap();
    let config = || shared_files(&redis, shared.path());
    let (a, b) = (Server::start(config()).await, Server::start(config()).await);
    let mut alice = Client::in_room(&a, "alice", "lobby").await;
    let mut bob = Client::in_room(&b, "bob", "lobby").await;
    let carol = Client::hello(&b, "carol").await;
    let bytes = b"hello, shared files".to_vec();
    let file = upload_text(&mut alice, "u1", &bytes).await;
    assert_eq!(next_of(&mut bob, "message").await["attachment"]["id"], file.as_str());
    // Through node b, where it was not uploaded.
    let get = |token: String| {
        let (file, addr) = (file.clone(), b.addr);
        async move {
            let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
            let request = format!(
                "GET /files/{file} HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {token}\r\n\r\n"
            );
            stream.write_all(request.as_bytes()).await.unwrap();
            let mut answer = Vec::new();
            stream.read_to_end(&mut answer).await.unwrap();
            answer
        }
    };
    let answer = get(bob.session.clone()).await;
    assert!(answer.starts_with(b"HTTP/1.1 200"), "{}", String::from_utf8_lossy(&answer));
    assert!(answer.ends_with(&bytes), "{}", String::from_utf8_lossy(&answer));
    let refused = get(carol.session.clone()).await;
    assert!(
        refused.starts_with(b"HTTP/1.1 404"),
        "not in the room: {}",
        String::from_utf8_lossy(&refused)
    );
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_nodes_stats_add_up_the_whole_cluster() {
    use crate::support::Client;

    use serde_json::json;
    let (_redis, a, b) = two_nodes(None).await;
    let _alice = Client::in_room(&a, "alice", "lobby").await;
    let _bob = Client::in_room(&b, "bob", "lobby").await;
    let _carol = Client::in_room(&b, "carol", "lobby").await;
    let mut watcher = Client::hello(&a, "watcher").await;
    watcher.send(json!({"type": "subscribe", "channel": "$stats"})).await;
    // The counters come once a second; wait for a round with both nodes in.
    loop {
        let frame = watcher.recv().await;
        if frame["type"] != "stats" {
            continue;
        }
        assert_eq!(frame["connections"], 2, "this node's own: {frame}");
        let cluster = &frame["cluster"];
        if cluster["nodes"] == 2 && cluster["people"] == 3 {
            assert_eq!(cluster["connections"], 4, "{frame}");
            break;
        }
    }
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_topic_set_on_one_node_shows_on_every_node_and_to_later_joiners() {
    use crate::support::Client;

    use serde_json::json;
    let (_redis, a, b) = two_nodes(None).await;
    let mut alice = Client::in_room(&a, "alice", "lobby").await;
    let mut bob = Client::in_room(&b, "bob", "lobby").await;
    alice.send(json!({"type": "topic", "room": "lobby", "topic": "release day", "id": "t"})).await;
    let topic = next_of(&mut bob, "topic").await;
    assert_eq!(
        (topic["topic"].as_str(), topic["by"].as_str()),
        (Some("release day"), Some("alice"))
    );
    // Everyone on b leaves: b forgets the room; a joiner there reads the
    // topic back from Redis with the room.
    bob.send(json!({"type": "leave", "room": "lobby"})).await;
    bob.expect("left").await;
    let mut carol = Client::hello(&b, "carol").await;
    carol.send(json!({"type": "join", "room": "lobby"})).await;
    let joined = carol.expect("joined").await;
    assert_eq!(joined["topic"], "release day", "{joined}");
    // Cleared, everywhere.
    alice.send(json!({"type": "topic", "room": "lobby", "topic": ""})).await;
    let cleared = next_of(&mut carol, "topic").await;
    assert!(cleared["topic"].is_null(), "{cleared}");
    a.shutdown().await;
    b.shutdown().await;
}

/// The next `direct` `client` gets: (seq, from, with, text).
async fn next_direct(client: &mut crate::support::Client) -> (u64, String, String, String) {
    let frame = next_of(client, "direct").await;
    let text = |key: &str| frame[key].as_str().unwrap().to_owned();
    (frame["seq"].as_u64().unwrap(), text("from"), text("with"), text("text"))
}

/// The conversations `client` lists: (conversation key, with, last_seq).
async fn conversations_of(client: &mut crate::support::Client) -> Vec<(String, String, u64)> {
    client.send(serde_json::json!({"type": "conversations", "id": "list"})).await;
    let listed = next_of(client, "conversations").await;
    let list = listed["conversations"].as_array().unwrap().iter();
    list.map(|c| {
        let text = |key: &str| c[key].as_str().unwrap().to_owned();
        (text("conversation"), text("with"), c["last_seq"].as_u64().unwrap())
    })
    .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn direct_messages_cross_nodes_once_in_order_and_read_the_same_from_every_node() {
    use crate::support::Client;
    use serde_json::json;
    let (redis, a, b) = two_nodes(None).await;
    let mut alice = Client::hello(&a, "alice").await;
    let mut bob = Client::hello(&b, "bob").await;
    // No room in common: node a asks Redis who holds "Bob".
    alice.send(json!({"type": "dm", "to": "Bob", "text": "psst", "id": "d1"})).await;
    let first = (1, "alice".to_owned(), "bob".to_owned(), "psst".to_owned());
    assert_eq!(
        next_direct(&mut alice).await,
        first,
        "her echo, numbered, with bob as he writes it"
    );
    let theirs = (1, "alice".to_owned(), "alice".to_owned(), "psst".to_owned());
    assert_eq!(next_direct(&mut bob).await, theirs);
    let listed = conversations_of(&mut bob).await;
    assert_eq!(listed.len(), 1, "{listed:?}");
    let key = listed[0].0.clone();
    assert_eq!((listed[0].1.as_str(), listed[0].2), ("alice", 1));
    assert_eq!(conversations_of(&mut alice).await, [(key.clone(), "bob".to_owned(), 1)]);
    // Bob answers into the conversation by its key, from node b.
    bob.send(json!({"type": "dm", "conversation": key, "text": "hi!", "id": "r1"})).await;
    assert_eq!(next_direct(&mut bob).await.0, 2);
    assert_eq!(next_direct(&mut alice).await, (2, "bob".to_owned(), "bob".into(), "hi!".into()));
    // Node b's subscription is cut off (as Redis does to a subscriber
    // that falls behind): what alice sends meanwhile still reaches bob,
    // once and in order.
    assert_eq!(
        cut_off_subscribers(&redis).await,
        6,
        "both nodes' subscriptions: rooms, the HTTP fallback's posts, Socket.IO's requests"
    );
    for n in 3..=5 {
        let text = format!("m{n}");
        alice.send(json!({"type": "dm", "to": "bob", "text": text, "id": format!("d{n}")})).await;
        assert_eq!(next_direct(&mut alice).await.0, n);
    }
    for n in 3..=5 {
        assert_eq!(
            next_direct(&mut bob).await,
            (n, "alice".into(), "alice".into(), format!("m{n}"))
        );
    }
    // A retry is answered with the original and reaches no one else.
    alice.send(json!({"type": "dm", "to": "bob", "text": "psst", "id": "d1"})).await;
    assert_eq!(next_direct(&mut alice).await, first);
    bob.send(json!({"type": "ping", "id": "p"})).await;
    assert_eq!(bob.recv().await["type"], "pong", "nothing twice");
    // Either node reads the whole conversation from Redis.
    for (client, with) in [(&mut alice, "bob"), (&mut bob, "alice")] {
        client.send(json!({"type": "conversation", "with": with, "id": "c"})).await;
        let read = next_of(client, "conversation").await;
        let seqs: Vec<u64> = read["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["seq"].as_u64().unwrap())
            .collect();
        assert_eq!(seqs, [1, 2, 3, 4, 5], "{read}");
    }
    // No key of Redis and no channel names a session's token.
    let client = redis::Client::open(redis.url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let keys: Vec<String> = redis::cmd("KEYS").arg("*").query_async(&mut conn).await.unwrap();
    let channels: Vec<String> =
        redis::cmd("PUBSUB").arg("CHANNELS").arg("*").query_async(&mut conn).await.unwrap();
    for token in [&alice.session, &bob.session] {
        let named: Vec<&String> =
            keys.iter().chain(&channels).filter(|k| k.contains(token.as_str())).collect();
        assert!(named.is_empty(), "{named:?}");
    }
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_moving_to_another_node_finds_its_conversations_and_its_direct_messages_there() {
    use crate::support::Client;
    use serde_json::json;
    let (redis, a, b) = two_nodes(None).await;
    let mut alice = Client::hello(&a, "alice").await;
    let bob = Client::hello(&b, "bob").await;
    alice.send(json!({"type": "dm", "to": "bob", "text": "one", "id": "d1"})).await;
    next_direct(&mut alice).await;
    // Bob's connection drops; alice writes again while he is away.
    let token = bob.session.clone();
    drop(bob);
    alice.send(json!({"type": "dm", "to": "bob", "text": "two", "id": "d2"})).await;
    assert_eq!(next_direct(&mut alice).await.0, 2);
    // He comes back through node a: both are listed, his nick kept.
    let (mut bob, welcome) = Client::resume(&a, &token).await;
    assert_eq!(welcome["nick"], "bob", "{welcome}");
    let listed = conversations_of(&mut bob).await;
    assert_eq!(listed.iter().map(|c| (c.1.as_str(), c.2)).collect::<Vec<_>>(), [("alice", 2)]);
    // And from now on her messages reach him there, and his her.
    alice.send(json!({"type": "dm", "to": "bob", "text": "three", "id": "d3"})).await;
    assert_eq!(next_direct(&mut alice).await.0, 3);
    assert_eq!(next_direct(&mut bob).await, (3, "alice".into(), "alice".into(), "three".into()));
    bob.send(json!({"type": "dm", "to": "alice", "text": "back", "id": "r1"})).await;
    assert_eq!(next_direct(&mut bob).await, (4, "bob".into(), "alice".into(), "back".into()));
    assert_eq!(next_direct(&mut alice).await, (4, "bob".into(), "bob".into(), "back".into()));
    // Someone on node b reaches him on a by his nick.
    let mut carol = Client::hello(&b, "carol").await;
    carol.send(json!({"type": "dm", "to": "bob", "text": "hey", "id": "c1"})).await;
    assert_eq!(next_direct(&mut bob).await, (1, "carol".into(), "carol".into(), "hey".into()));
    assert_eq!(next_direct(&mut carol).await, (1, "carol".into(), "bob".into(), "hey".into()));
    carol.send(json!({"type": "dm", "to": "nobody", "text": "?", "id": "c2"})).await;
    carol.expect_error("no_such_nick").await;
    // Carol quits (dave, in a room with her, sees her session end); her
    // client, back later through a node that never served her, keeps its
    // token (it has conversations: the cluster issued it) and with it what
    // she said to bob.
    carol.send(json!({"type": "join", "room": "lobby"})).await;
    carol.expect("joined").await;
    let mut dave = Client::in_room(&a, "dave", "lobby").await;
    let token = carol.session.clone();
    carol.quit().await;
    dave.expect_presence("leave", "carol").await;
    let c = crate::support::Server::start(chat_server::ServerConfig {
        redis: Some(redis.url()),
        ..chat_server::ServerConfig::default()
    })
    .await;
    let (mut carol, welcome) = Client::resume(&c, &token).await;
    assert_eq!(welcome["session"], token.as_str(), "{welcome}");
    let listed = conversations_of(&mut carol).await;
    assert_eq!(listed.iter().map(|c| (c.1.as_str(), c.2)).collect::<Vec<_>>(), [("bob", 1)]);
    c.shutdown().await;
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_restored_by_a_restarted_node_moves_to_the_node_its_client_comes_back_through() {
    use crate::support::{Client, Server};
    use chat_server::{ServerConfig, SqliteStore, Store};
    use serde_json::json;
    let redis = Redis::start();
    let dir = tempfile::tempdir().unwrap();
    let store = || Box::new(SqliteStore::open(dir.path()).unwrap()) as Box<dyn Store>;
    // Short leases and a short grace, so that node a's restored session
    // would have expired (and let its nick go) within the checks below.
    let config = || ServerConfig {
        redis: Some(redis.url()),
        cluster_lease: Duration::from_millis(900),
        chat: chat_core::ChatConfig {
            session_grace: Duration::from_secs(1),
            ..chat_core::ChatConfig::default()
        },
        ..ServerConfig::default()
    };
    let a = Server::start_with(config(), store()).await;
    let b = Server::start(config()).await;
    let alice = Client::in_room(&a, "alice", "lobby").await;
    let token = alice.session.clone();
    drop(alice);
    // Node a restarts (a deploy); alice's client comes back through b.
    a.shutdown().await;
    let a = Server::start_with(config(), store()).await;
    let (mut alice, welcome) = Client::resume(&b, &token).await;
    assert_eq!(
        (welcome["resumed"].as_bool(), welcome["nick"].as_str()),
        (Some(true), Some("alice")),
        "{welcome}"
    );
    alice.send(json!({"type": "join", "room": "lobby"})).await;
    next_of(&mut alice, "joined").await;
    // Her nick stays hers through b, on every node, past the grace node a
    // would have kept her restored session for.
    for _ in 0..8 {
        let mut impostor = Client::connect(&a).await;
        impostor.send(json!({"type": "hello", "nick": "alice"})).await;
        impostor.expect_error("nick_taken").await;
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test]
async fn appends_sent_together_are_numbered_in_the_order_sent_and_retries_answered() {
    use chat_server::cluster::ToAppend;
    let redis = Redis::start();
    let log = log(&redis, 1000).await;
    let first = log.append("lobby", Some(("s1", "m1")), b"first").await.unwrap();
    assert_eq!(first.seq, 1);
    let batch = [
        ToAppend { room: "lobby", id: Some(("s1", "m2")), message: b"second" },
        ToAppend { room: "dev", id: None, message: b"elsewhere" },
        ToAppend { room: "lobby", id: Some(("s1", "m1")), message: b"first, again" },
        ToAppend { room: "lobby", id: None, message: b"third" },
    ];
    let appended = log.append_all(&batch).await.unwrap();
    let got: Vec<(u64, bool)> = appended.iter().map(|a| (a.seq, a.duplicate)).collect();
    assert_eq!(got, [(2, false), (1, false), (1, true), (3, false)]);
    let page = log.read("lobby", 1, 10).await.unwrap();
    let texts: Vec<&[u8]> = page.messages.iter().map(|(_, m)| m.as_slice()).collect();
    assert_eq!(texts, [&b"first"[..], b"second", b"third"]);
    // After Redis forgot its scripts (a restart), they are loaded again.
    let client = redis::Client::open(redis.url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let () = redis::cmd("SCRIPT").arg("FLUSH").query_async(&mut conn).await.unwrap();
    let again = [
        ToAppend { room: "lobby", id: None, message: b"fourth" },
        ToAppend { room: "lobby", id: None, message: b"fifth" },
    ];
    let seqs: Vec<u64> = log.append_all(&again).await.unwrap().iter().map(|a| a.seq).collect();
    assert_eq!(seqs, [4, 5]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shared_file_goes_once_no_message_carries_it_any_more() {
    use crate::support::{Client, Server};
    let redis = Redis::start();
    let shared = tempfile::tempdir().unwrap();
    // History kept a second.
    let chat = chat_core::ChatConfig {
        history_max_age: Some(Duration::from_secs(1)),
        ..chat_core::ChatConfig::default()
    };
    let config = || sweeping(&redis, shared.path(), chat.clone());
    let (a, b) = (Server::start(config()).await, Server::start(config()).await);
    let mut alice = Client::in_room(&a, "alice", "lobby").await;
    let id = upload_text(&mut alice, "u1", b"old").await;
    let path = shared.path().join(&id[..2]).join(&id);
    assert!(path.exists(), "placed before its message was numbered");
    // Its message ages out: the sweeps of the nodes delete the file.
    swept(&path).await;
    a.shutdown().await;
    b.shutdown().await;
}

/// A node's config with files in `shared` swept five times a second, and
/// the rules `chat`.
fn sweeping(
    redis: &Redis,
    shared: &std::path::Path,
    chat: chat_core::ChatConfig,
) -> chat_server::ServerConfig {
    chat_server::ServerConfig {
        prune_interval: Duration::from_millis(200),
        chat,
        ..shared_files(redis, shared)
    }
}

/// Waits until `path` is gone (swept by some node).
async fn swept(path: &std::path::Path) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while path.exists() {
        assert!(tokio::time::Instant::now() < deadline, "{} was never swept", path.display());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shared_file_goes_with_its_deleted_message_and_when_the_log_no_longer_keeps_it() {
    use crate::support::{Client, Server};
    use serde_json::json;
    let redis = Redis::start();
    let shared = tempfile::tempdir().unwrap();
    // Rooms keep their last three messages (and no age limit).
    let chat = chat_core::ChatConfig { history_per_room: 3, ..chat_core::ChatConfig::default() };
    let config = || sweeping(&redis, shared.path(), chat.clone());
    let (a, b) = (Server::start(config()).await, Server::start(config()).await);
    let mut alice = Client::in_room(&a, "alice", "lobby").await;
    let _bob = Client::in_room(&b, "bob", "lobby").await;
    let place = |id: &str| shared.path().join(&id[..2]).join(id);
    // Deleted: its file goes.
    let deleted = upload_text(&mut alice, "u1", b"regret").await;
    alice.send(json!({"type": "delete", "room": "lobby", "seq": 1, "id": "x1"})).await;
    assert_eq!(next_of(&mut alice, "message").await["seq"], 2);
    // Kept by a message the log keeps: its file stays through sweeps. (The
    // log still keeps message 1 too: only its deletion lets its file go.)
    let kept = upload_text(&mut alice, "u2", b"keep me").await;
    swept(&place(&deleted)).await;
    assert!(place(&kept).exists(), "carried by message 3, which the log keeps");
    // Trimmed out of the log by newer messages: its file goes.
    for n in 0..3 {
        alice
            .send(json!({"type": "say", "room": "lobby", "text": "newer", "id": format!("n{n}")}))
            .await;
        next_of(&mut alice, "message").await;
    }
    swept(&place(&kept)).await;
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_gone_from_the_log_before_a_node_had_them_are_a_gap_its_members_are_told() {
    use crate::support::{Client, Server};
    use serde_json::json;
    let redis = Redis::start();
    // Rooms' logs keep three messages.
    let config = || chat_server::ServerConfig {
        redis: Some(redis.url()),
        chat: chat_core::ChatConfig { history_per_room: 3, ..chat_core::ChatConfig::default() },
        ..chat_server::ServerConfig::default()
    };
    let (a, b) = (Server::start(config()).await, Server::start(config()).await);
    let mut alice = Client::in_room(&a, "alice", "lobby").await;
    let mut bob = Client::in_room(&b, "bob", "lobby").await;
    alice.send(json!({"type": "say", "room": "lobby", "text": "one", "id": "a1"})).await;
    assert_eq!(next_message(&mut bob).await.0, 1);
    // Messages 2 to 6 are numbered and kept but their publications lost
    // (as when a subscriber is cut off), and the log keeps only three, so
    // 2 to 4 are gone before node b hears 7 and reads what it missed.
    for seq in 2..=6u64 {
        assert_eq!(append_unpublished(&redis, &format!("lost {seq}"), 3).await, seq);
    }
    alice.send(json!({"type": "say", "room": "lobby", "text": "seven", "id": "a7"})).await;
    // Bob is not shown a jump in `seq`: node b sends him back (1012)...
    let (close, _) = bob.until_closed().await;
    assert_eq!(close.map(|c| u16::from(c.code)), Some(1012));
    // ...and his join from where he was names the gap exactly.
    let (mut bob, _) = Client::resume(&b, &bob.session).await;
    bob.send(json!({"type": "join", "room": "lobby", "after": 1})).await;
    let joined = bob.expect("joined").await;
    assert_eq!(
        (&joined["resume"], &joined["gap"]),
        (&json!("gap"), &json!({"from": 2, "to": 4})),
        "{joined}"
    );
    let seqs: Vec<u64> =
        joined["history"].as_array().unwrap().iter().map(|m| m["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, [5, 6, 7], "{joined}");
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_stops_following_a_room_it_no_longer_holds_and_follows_it_again_when_asked() {
    use crate::support::{Client, Server};
    use serde_json::json;
    let redis = Redis::start();
    let config = |max_rooms| chat_server::ServerConfig {
        redis: Some(redis.url()),
        chat: chat_core::ChatConfig { max_rooms, ..chat_core::ChatConfig::default() },
        ..chat_server::ServerConfig::default()
    };
    // Node b holds one room at a time.
    let (a, b) = (Server::start(config(100)).await, Server::start(config(1)).await);
    let mut alice = Client::in_room(&a, "alice", "one").await;
    let mut bob = Client::in_room(&b, "bob", "one").await;
    let client = redis::Client::open(redis.url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let subscribers = |conn: &mut redis::aio::MultiplexedConnection| {
        let mut conn = conn.clone();
        async move {
            let counts: Vec<(String, u64)> = redis::cmd("PUBSUB")
                .arg("NUMSUB")
                .arg("chat:{one}")
                .query_async(&mut conn)
                .await
                .unwrap();
            counts[0].1
        }
    };
    assert_eq!(subscribers(&mut conn).await, 2);
    // Bob moves to another room: b makes way for it, forgetting "one".
    bob.send(json!({"type": "leave", "room": "one"})).await;
    next_of(&mut bob, "left").await;
    bob.send(json!({"type": "join", "room": "two"})).await;
    next_of(&mut bob, "joined").await;
    // b's unsubscription is ordered after its subscription to "two": once
    // a message there reaches bob, "one" has been let go.
    alice.send(json!({"type": "join", "room": "two"})).await;
    next_of(&mut alice, "joined").await;
    alice.send(json!({"type": "say", "room": "two", "text": "over here", "id": "t1"})).await;
    assert_eq!(next_message(&mut bob).await.2, "over here");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while subscribers(&mut conn).await != 1 {
        assert!(tokio::time::Instant::now() < deadline, "b still listens to a room it let go");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Asked for again, the room is followed again: nothing is missed.
    alice.send(json!({"type": "say", "room": "one", "text": "meanwhile", "id": "o1"})).await;
    bob.send(json!({"type": "leave", "room": "two"})).await;
    next_of(&mut bob, "left").await;
    bob.send(json!({"type": "join", "room": "one", "after": 0})).await;
    let joined = next_of(&mut bob, "joined").await;
    assert_eq!(joined["last_seq"], 1, "{joined}");
    alice.send(json!({"type": "say", "room": "one", "text": "and now", "id": "o2"})).await;
    assert_eq!(next_message(&mut bob).await, (2, "alice".to_owned(), "and now".to_owned()));
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn editors_on_two_nodes_edit_one_shared_document_kept_in_redis() {
    use crate::docs::{Editor, path};
    use crate::support::Client;
    let (redis, a, b) = two_nodes(None).await;
    let alice = Client::in_room(&a, "alice", "lobby").await;
    let bob = Client::in_room(&b, "bob", "lobby").await;
    let mut on_a = Editor::open(&a, &path("lobby", "notes", &alice.session)).await.unwrap();
    let mut on_b = Editor::open(&b, &path("lobby", "notes", &bob.session)).await.unwrap();
    on_a.insert(0, "from a").await;
    on_b.until("from a").await;
    // Both at once, at one place: both kept, the same on both nodes.
    on_a.insert(6, " + a").await;
    on_b.insert(6, " + b").await;
    let expected = loop {
        let (ta, tb) = (on_a.text(), on_b.text());
        if ta == tb && ta.contains(" + a") && ta.contains(" + b") {
            break ta;
        }
        if !(ta.contains(" + a") && ta.contains(" + b")) {
            on_a.read().await.unwrap();
        }
        if !(tb.contains(" + a") && tb.contains(" + b")) {
            on_b.read().await.unwrap();
        }
    };
    // Who is where in it crosses nodes, and goes with its connection.
    let mut caret = Editor::open(&a, &path("lobby", "notes", &alice.session)).await.unwrap();
    caret.say_here(41, r#"{"user":{"name":"alice"},"cursor":2}"#).await;
    on_b.until_here(41, Some("alice")).await;
    drop(caret);
    on_b.until_here(41, None).await;
    // Node b's subscription is cut off: what a's editor types meanwhile
    // still reaches b's, once.
    // (Each node has three: its rooms', the HTTP fallback's posts', and
    // Socket.IO's relayed requests'.)
    assert_eq!(cut_off_subscribers(&redis).await, 6);
    on_a.insert(0, ">> ").await;
    let expected = format!(">> {expected}");
    on_b.until(&expected).await;
    // Both editors gone, a newcomer on either node reads it from Redis.
    drop((on_a, on_b));
    let mut later = Editor::open(&b, &path("lobby", "notes", &bob.session)).await.unwrap();
    later.until(&expected).await;
    // Many edits: the log in Redis is compacted, and still makes the
    // same document for a newcomer.
    let mut typing = Editor::open(&a, &path("lobby", "notes", &alice.session)).await.unwrap();
    typing.until(&expected).await;
    let mut want = expected.clone();
    for n in 0..250 {
        let word = format!("{} ", n % 10);
        typing.insert(u32::try_from(want.len()).unwrap(), &word).await;
        want.push_str(&word);
    }
    later.until(&want).await;
    drop((typing, later));
    let mut last = Editor::open(&a, &path("lobby", "notes", &alice.session)).await.unwrap();
    last.until(&want).await;
    let client = redis::Client::open(redis.url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let kept: u64 =
        redis::cmd("XLEN").arg("chat:{%lobby/notes}:log").query_async(&mut conn).await.unwrap();
    assert!(kept < 100, "{kept} entries for 250 edits");
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test]
async fn a_rooms_document_list_is_every_nodes_and_a_document_deleted_on_one_is_gone_from_redis() {
    use crate::docs::{Editor, path};
    use crate::support::Client;
    use serde_json::json;
    let (redis, a, b) = two_nodes(None).await;
    let mut alice = Client::in_room(&a, "alice", "lobby").await;
    let mut bob = Client::in_room(&b, "bob", "lobby").await;
    alice.send(json!({"type": "doc_create", "room": "lobby", "title": "Plans", "id": "c"})).await;
    let created = next_of(&mut bob, "doc").await;
    assert_eq!(
        (created["action"].as_str(), created["by"].as_str()),
        (Some("created"), Some("alice"))
    );
    // A title is the room's, whichever node is asked.
    bob.send(json!({"type": "doc_create", "room": "lobby", "title": "PLANS"})).await;
    assert_eq!(next_of(&mut bob, "error").await["code"], "invalid_doc");
    // Edited through node a, the document lives in Redis.
    let mut on_a = Editor::open(&a, &path("lobby", "plans", &alice.session)).await.unwrap();
    on_a.insert(0, "ship it").await;
    let mut on_b = Editor::open(&b, &path("lobby", "plans", &bob.session)).await.unwrap();
    on_b.until("ship it").await;
    // Someone joining on node b later gets the list with the room.
    let mut carol = Client::hello(&b, "carol").await;
    carol.send(json!({"type": "join", "room": "lobby"})).await;
    let joined = next_of(&mut carol, "joined").await;
    assert_eq!(joined["docs"][0]["title"], "Plans");
    // Versions are every node's: the first edit's, listed through node
    // b, restored through it after more typing on node a.
    on_a.insert(7, " today").await;
    on_b.until("ship it today").await;
    bob.send(json!({"type": "doc_versions", "room": "lobby", "doc": "plans"})).await;
    let listed = next_of(&mut bob, "doc_versions").await;
    let first = listed["versions"].as_array().unwrap().last().unwrap()["version"].clone();
    bob.send(json!({"type": "doc_restore", "room": "lobby", "doc": "plans", "version": first}))
        .await;
    on_a.until("ship it").await;
    on_b.until("ship it").await;
    // Deleted on node b: editors on both nodes are closed, its log in
    // Redis is gone, the list on node a says so.
    bob.send(json!({"type": "doc_delete", "room": "lobby", "doc": "plans"})).await;
    for editor in [&mut on_a, &mut on_b] {
        let closed = editor.closed().await;
        assert_eq!(closed.0, 4404);
    }
    loop {
        let doc = next_of(&mut alice, "doc").await;
        if doc["action"] == "deleted" {
            break;
        }
    }
    let client = redis::Client::open(redis.url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    // (Deleted by node b on its own round trip: polled until it is.)
    let deadline = tokio::time::Instant::now() + crate::support::WAIT;
    loop {
        let exists: bool = redis::cmd("EXISTS")
            .arg("chat:{%lobby/plans}:log")
            .arg("chat:{%lobby/plans}:vdata")
            .query_async(&mut conn)
            .await
            .unwrap();
        if !exists {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "the deleted document's log stays");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    a.shutdown().await;
    b.shutdown().await;
}
