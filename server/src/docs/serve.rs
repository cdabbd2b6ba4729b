//! Documents over WebSocket, as y-websocket speaks them: a connection to
//! `/yjs/{room}/{doc}?session=TOKEN` opens document `doc` of `room` for
//! the session of `TOKEN`, a member of the room, and carries y-protocols
//! messages as binary frames both ways. So any Yjs client with the
//! standard provider (`new WebsocketProvider('ws://host/yjs/lobby',
//! 'notes', ydoc, { params: { session } })`) edits the same document as
//! the page. The hub owns the documents ([`Docs`]); this task reads.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chat_core::{Chat, CommandError, Rate, RoomName, SessionToken, Timestamp, TokenBucket};
use chat_transport::tungstenite::Message as Frame;
use chat_transport::tungstenite::protocol::CloseFrame;
use chat_transport::{Outgoing, Pushed, Upgraded};
use futures_util::StreamExt;
use tokio::sync::{mpsc, oneshot};
use tracing::info;

use super::{Conn, DocError, Document, Limits, Out};
use crate::hub::Input;
use crate::storage::Job;
use crate::store::DocUpdate;

/// The path prefix documents are opened under.
pub(crate) const PREFIX: &str = "/yjs/";

/// What a connection asks to open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Target {
    pub room: RoomName,
    pub doc: RoomName,
    pub token: SessionToken,
}

impl Target {
    /// `/yjs/{room}/{doc}` and `session=TOKEN` in `query`, or why not.
    pub(crate) fn parse(path: &str, query: Option<&str>) -> Result<Self, &'static str> {
        let rest = path.strip_prefix(PREFIX).ok_or("not a document's path")?;
        let (room, doc) = rest.split_once('/').ok_or("the path is /yjs/ROOM/DOC")?;
        let room = RoomName::parse(room).map_err(|_| "not a room's name")?;
        let doc = RoomName::parse(doc).map_err(|_| "not a document's name (as a room's)")?;
        let token = query
            .into_iter()
            .flat_map(|query| query.split('&'))
            .find_map(|pair| pair.strip_prefix("session="))
            .ok_or("no ?session=TOKEN")?;
        let token = SessionToken::parse(token).map_err(|_| "not a session token")?;
        Ok(Self { room, doc, token })
    }
}

/// The hub's answer to an open: the connection's id, or how it is closed.
pub(crate) type Opened = Result<Conn, DocClose>;

/// Serves one document connection until it ends. Frames are read at most
/// at the connection frame rate (`--frames-per-sec`, with its burst): past
/// it the task waits before reading on, so a flood waits on TCP.
pub(crate) async fn serve(
    upgraded: Box<Upgraded>,
    hub: mpsc::Sender<Input>,
    config: &crate::ServerConfig,
    metrics: &crate::metrics::Metrics,
) {
    let peer = upgraded.peer;
    metrics.document_connections.inc();
    let code = Box::pin(serve_until_closed(upgraded, hub, config, metrics)).await;
    metrics.document_connections.dec();
    if metrics.connection_lines.allow() {
        let code = code.map_or_else(|| "none".to_owned(), |code| code.to_string());
        info!(%peer, code, "document connection closed");
    }
}

/// Serves it; the close code it ended with, either side's (`None`: cut
/// without one).
async fn serve_until_closed(
    upgraded: Box<Upgraded>,
    hub: mpsc::Sender<Input>,
    config: &crate::ServerConfig,
    metrics: &crate::metrics::Metrics,
) -> Option<u16> {
    let Upgraded { mut socket, outgoing, request, peer, pass, .. } = *upgraded;
    let _pass = pass;
    let target = match Target::parse(request.uri().path(), request.uri().query()) {
        Ok(target) => target,
        Err(why) => return refuse(&mut socket, BAD_REQUEST, why.to_owned()).await,
    };
    let (close, mut closing) = oneshot::channel();
    let (reply, opened) = oneshot::channel();
    let open = Input::DocOpen { target, outgoing: Arc::clone(&outgoing), close, reply };
    if hub.send(open).await.is_err() {
        return None;
    }
    let conn = match opened.await {
        Ok(Ok(conn)) => conn,
        Ok(Err(close)) => return refuse(&mut socket, close.code, close.reason).await,
        Err(_) => return None,
    };
    if metrics.connection_lines.allow() {
        info!(conn, %peer, "document opened");
    }
    let mut code = None;
    let rate = Rate::per_sec(config.frames_per_sec, config.frames_burst);
    let opened = tokio::time::Instant::now();
    let mut frames = TokenBucket::full(rate, Timestamp::from_unix_millis(0));
    loop {
        tokio::select! {
            biased;
            close = &mut closing => {
                let close = close.unwrap_or(DocClose::from(chat_protocol::CloseCode::GoingAway));
                code = refuse(&mut socket, close.code, close.reason).await;
                break;
            }
            () = outgoing.stalled() => {
                let write = tokio::time::timeout(Duration::from_secs(10), outgoing.unstall());
                if !matches!(write.await, Ok(Ok(()))) {
                    break;
                }
            }
            frame = socket.next() => match frame {
                Some(Ok(Frame::Binary(bytes))) => {
                    if hub.send(Input::DocFrame { conn, bytes }).await.is_err() {
                        break;
                    }
                    let elapsed = u64::try_from(opened.elapsed().as_millis()).unwrap_or(u64::MAX);
                    if let Err(wait) = frames.take(rate, Timestamp::from_unix_millis(elapsed)) {
                        tokio::time::sleep(Duration::from_millis(wait.min(1000))).await;
                    }
                }
                Some(Ok(Frame::Text(_))) => {
                    let why = "y-protocols messages are binary frames".to_owned();
                    return finish(&hub, conn, refuse(&mut socket, BAD_REQUEST, why)).await;
                }
                Some(Err(chat_transport::tungstenite::Error::Capacity(_))) => {
                    // Final: the client would send it again and again.
                    let why = format!("a frame larger than {} bytes", frame_limit(config));
                    return finish(&hub, conn, refuse(&mut socket, TOO_LARGE, why)).await;
                }
                Some(Ok(Frame::Close(frame))) => {
                    // Without a code, 1005 (RFC 6455).
                    code = Some(frame.map_or(1005, |frame| u16::from(frame.code)));
                    break;
                }
                Some(Err(_)) | None => break,
                Some(Ok(_)) => {}
            },
        }
    }
    outgoing.close();
    let _ = hub.send(Input::DocClosed { conn }).await;
    code
}

/// Closes after `closing`, and tells the hub.
async fn finish(
    hub: &mpsc::Sender<Input>,
    conn: Conn,
    closing: impl Future<Output = Option<u16>>,
) -> Option<u16> {
    let code = closing.await;
    let _ = hub.send(Input::DocClosed { conn }).await;
    code
}

/// The close code of a request that is not a document's, or a frame that
/// is not y-protocols: y-websocket (3.x) takes a 44xx close as final and
/// stops reconnecting.
const BAD_REQUEST: u16 = 4400;

/// The close code of a session that may not open the document, or no
/// longer (it left the room): final too.
const FORBIDDEN: u16 = 4403;

/// The close code of a document that was deleted (final).
const GONE: u16 = 4404;

/// The close code of an update or frame past the limits, or of a document
/// that would grow past its own: final, as the client would send the same
/// again on reconnecting.
const TOO_LARGE: u16 = 4413;

/// The largest frame a document connection takes: an update of
/// `--doc-update-bytes` and its message's few bytes of framing.
pub(crate) fn frame_limit(config: &crate::ServerConfig) -> usize {
    config.docs.update_bytes + 64
}

/// How the server closes a document connection: a close code and its
/// reason (documented in docs/protocol.md).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DocClose {
    pub(crate) code: u16,
    pub(crate) reason: String,
}

impl From<chat_protocol::CloseCode> for DocClose {
    fn from(code: chat_protocol::CloseCode) -> Self {
        Self { code: code.code(), reason: code.reason().to_owned() }
    }
}

impl DocClose {
    /// A frame refused for `error`.
    fn refused(error: &DocError) -> Self {
        let code = match error {
            DocError::Malformed => BAD_REQUEST,
            DocError::NotAllowed(_) => FORBIDDEN,
            DocError::UpdateTooLarge { .. }
            | DocError::DocumentFull { .. }
            | DocError::TooMany(_) => TOO_LARGE,
        };
        Self { code, reason: error.to_string() }
    }

    /// The session may not read `room` (final).
    pub(crate) fn not_member(room: &RoomName) -> Self {
        Self { code: FORBIDDEN, reason: format!("not a member of #{room}") }
    }

    /// The session may no longer read `room`, which it could (final).
    fn no_longer_member(room: &RoomName) -> Self {
        Self { code: FORBIDDEN, reason: format!("no longer a member of #{room}") }
    }

    /// Not now: the server stops, or storage cannot read the document (the
    /// client tries again).
    pub(crate) fn for_now(why: &str) -> Self {
        Self { code: TRY_AGAIN_LATER, reason: why.to_owned() }
    }
}

/// The close code of an open that may work later (RFC 6455's 1013).
const TRY_AGAIN_LATER: u16 = 1013;

/// Closes the socket with `code` and `why`, and reads on until the
/// client answers the close (for a second at most): a socket dropped with
/// what the client sent meanwhile unread is reset, and the client would
/// lose the close frame and its reason (y-websocket sends its first
/// messages as soon as it is open).
async fn refuse(socket: &mut chat_transport::Socket, code: u16, why: String) -> Option<u16> {
    let frame = CloseFrame { code: code.into(), reason: why.into() };
    let closing = async {
        let _ = socket.close(Some(frame)).await;
        while let Some(Ok(_)) = socket.next().await {}
    };
    let _ = tokio::time::timeout(Duration::from_secs(1), closing).await;
    Some(code)
}

/// A connection with a document open.
#[derive(Debug)]
struct Open {
    key: Key,
    /// The session it was opened for.
    token: SessionToken,
    outgoing: Arc<Outgoing>,
    close: Option<oneshot::Sender<DocClose>>,
}

/// A document by room and name.
type Key = (RoomName, RoomName);

/// A document in memory, and how many updates storage holds of it.
#[derive(Debug)]
struct Held {
    document: Document,
    stored: usize,
    /// In cluster mode, the last update of the document's log in Redis
    /// merged here (everything up to it is in the document).
    seq: u64,
    /// In cluster mode, the last update of the log a compaction covered.
    compacted: u64,
    /// Edited since its last version was kept.
    dirty: bool,
    /// When its last version was kept here (unix ms).
    versioned: Option<u64>,
}

/// Who asked for a document to be restored, to tell how it went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Restore {
    pub member: chat_core::MemberId,
    pub id: Option<Arc<str>>,
}

/// How long who is in a document (a caret, a name) stays without being
/// renewed: y-protocols' own timeout.
const AWARENESS_MAX_AGE_MS: u64 = 30_000;

/// While edited, a document's version is kept at most this often (and
/// when its last editor leaves, and before a restore).
const VERSION_EVERY_MS: u64 = 5 * 60 * 1000;

/// An open waiting for its document to be read from storage.
#[derive(Debug)]
struct Pending {
    token: SessionToken,
    outgoing: Arc<Outgoing>,
    close: oneshot::Sender<DocClose>,
    reply: oneshot::Sender<Opened>,
}

/// Past this many stored updates, a document's are compacted into one.
const COMPACT_AFTER: usize = 200;

/// Every document open on this server, and who has each open; the hub's.
/// A document is read from storage when the first connection opens it,
/// and leaves memory with the last.
#[derive(Debug, Default)]
pub(crate) struct Docs {
    /// Cluster mode: documents live in Redis, in a log every node follows.
    shared: bool,
    documents: HashMap<Key, Held>,
    loading: HashMap<Key, Vec<Pending>>,
    conns: HashMap<Conn, Open>,
    next: Conn,
    limits: Limits,
    /// What storage is to do, in order (see [`Docs::take_jobs`]).
    jobs: Vec<Job>,
    /// Versions to restore once their document is read: the state, who.
    restoring: HashMap<Key, Vec<(Vec<u8>, Restore)>>,
    /// Restores done (or not), for the core ([`Docs::take_restored`]).
    restored: Vec<(Restore, Key, Result<(), ()>)>,
    /// The time of the latest call that may keep a version (unix ms).
    now: u64,
}

impl Docs {
    /// Documents kept by this node's storage, or (`shared`, cluster mode)
    /// in a log in Redis every node follows, each within `limits`.
    pub(crate) fn new(shared: bool, limits: Limits) -> Self {
        Self { shared, limits, ..Self::default() }
    }

    /// Opens `target`'s document for a connection the hub let in, reading
    /// it from storage first if it is not in memory; `reply` gets the
    /// answer. The connections to flush.
    pub(crate) fn open(
        &mut self,
        target: Target,
        outgoing: Arc<Outgoing>,
        close: oneshot::Sender<DocClose>,
        reply: oneshot::Sender<Opened>,
    ) -> Vec<Arc<Outgoing>> {
        let key = (target.room, target.doc);
        let pending = Pending { token: target.token, outgoing, close, reply };
        if self.documents.contains_key(&key) {
            return self.open_now(key, pending);
        }
        self.read(&key);
        if let Some(waiting) = self.loading.get_mut(&key) {
            waiting.push(pending);
        }
        Vec::new()
    }

    /// Asks storage for document `key`, unless it was already.
    fn read(&mut self, key: &Key) {
        if !self.loading.contains_key(key) {
            self.loading.insert(key.clone(), Vec::new());
            let (room, doc) = key.clone();
            self.jobs.push(Job::LoadDoc { room, doc });
        }
    }

    /// Makes document `doc` of `room` as it is in `version` (a whole
    /// state), as a new edit everyone editing it sees, reading it from
    /// storage first if it is not in memory; a version of it as it was is
    /// kept first, so a restore can be undone. How it went comes out of
    /// [`Docs::take_restored`]. The connections to flush.
    pub(crate) fn restore(
        &mut self,
        room: RoomName,
        doc: RoomName,
        version: Vec<u8>,
        who: Restore,
        now: Timestamp,
    ) -> Vec<Arc<Outgoing>> {
        self.now = now.as_unix_millis();
        let key = (room, doc);
        if self.documents.contains_key(&key) {
            return self.restore_now(&key, &version, who);
        }
        self.read(&key);
        self.restoring.entry(key).or_default().push((version, who));
        Vec::new()
    }

    fn restore_now(&mut self, key: &Key, version: &[u8], who: Restore) -> Vec<Arc<Outgoing>> {
        self.keep_version(key);
        let Some(held) = self.documents.get_mut(key) else {
            self.restored.push((who, key.clone(), Err(())));
            return Vec::new();
        };
        match held.document.restore(version) {
            Ok(out) => {
                self.restored.push((who, key.clone(), Ok(())));
                self.route(key, out)
            }
            Err(error) => {
                info!(%error, "a kept version that does not decode");
                self.restored.push((who, key.clone(), Err(())));
                Vec::new()
            }
        }
    }

    /// The restores done since the last call, or that could not be:
    /// who asked, the document, how it went.
    pub(crate) fn take_restored(&mut self) -> Vec<(Restore, Key, Result<(), ()>)> {
        std::mem::take(&mut self.restored)
    }

    /// Keeps the document's state as one of its versions, now.
    fn keep_version(&mut self, key: &Key) {
        let now = self.now;
        let Some(held) = self.documents.get_mut(key) else {
            return;
        };
        held.dirty = false;
        held.versioned = Some(now);
        let (room, doc) = key.clone();
        let state = held.document.state();
        self.jobs.push(Job::KeepVersion { room, doc, ts: now, state });
    }

    /// Storage read document `doc` of `room` (`Err`: it could not): the
    /// opens that waited for it go on, if `allowed` still lets their
    /// sessions in. The connections to flush.
    pub(crate) fn loaded(
        &mut self,
        room: RoomName,
        doc: RoomName,
        stored: Result<Vec<Vec<u8>>, ()>,
        allowed: impl Fn(&SessionToken, &RoomName) -> bool,
    ) -> Vec<Arc<Outgoing>> {
        let key = (room, doc);
        let waiting = self.loading.remove(&key).unwrap_or_default();
        let restores = self.restoring.remove(&key).unwrap_or_default();
        let document = stored.ok().and_then(|stored| {
            let count = stored.len();
            Document::load(&stored, self.limits).ok().map(|document| (document, count))
        });
        let Some((document, count)) = document else {
            for pending in waiting {
                let why = "the document cannot be read now";
                let _ = pending.reply.send(Err(DocClose::for_now(why)));
            }
            for (_, who) in restores {
                self.restored.push((who, key.clone(), Err(())));
            }
            return Vec::new();
        };
        let held =
            Held { document, stored: count, seq: 0, compacted: 0, dirty: false, versioned: None };
        self.documents.insert(key.clone(), held);
        let mut flush = Vec::new();
        for (version, who) in restores {
            flush.extend(self.restore_now(&key, &version, who));
        }
        for pending in waiting {
            if allowed(&pending.token, &key.0) {
                flush.extend(self.open_now(key.clone(), pending));
            } else {
                let _ = pending.reply.send(Err(DocClose::not_member(&key.0)));
            }
        }
        self.forget_if_unused(&key);
        flush
    }

    fn open_now(&mut self, key: Key, pending: Pending) -> Vec<Arc<Outgoing>> {
        let Pending { token, outgoing, close, reply } = pending;
        let Some(held) = self.documents.get_mut(&key) else {
            return Vec::new();
        };
        self.next += 1;
        let conn = self.next;
        let out = held.document.open(conn);
        self.conns.insert(conn, Open { key: key.clone(), token, outgoing, close: Some(close) });
        // If the connection is gone already, its DocClosed follows.
        let _ = reply.send(Ok(conn));
        self.route(&key, out)
    }

    /// A frame from `conn`, if `chat` still lets its session into the
    /// room, and change the document if the frame changes it (which `chat`
    /// notes in the room's document list); the connections to flush. A
    /// refused frame closes its connection (the document is intact), as
    /// does a session no longer in the room.
    pub(crate) fn receive(
        &mut self,
        conn: Conn,
        bytes: &[u8],
        chat: &mut Chat,
        now: Timestamp,
    ) -> Vec<Arc<Outgoing>> {
        self.now = now.as_unix_millis();
        let Some(open) = self.conns.get(&conn) else {
            return Vec::new();
        };
        if !chat.may_read(&open.token, &open.key.0) {
            let close = DocClose::no_longer_member(&open.key.0);
            self.close(conn, close);
            return Vec::new();
        }
        let (key, token) = (open.key.clone(), open.token.clone());
        let Some(held) = self.documents.get_mut(&key) else {
            return Vec::new();
        };
        let mut gate = || {
            chat.handle_doc_edit(now, &token, &key.0, &key.1).map_err(|error| match error {
                CommandError::DocLimit { .. } => DocError::TooMany(error.to_string()),
                error => DocError::NotAllowed(error.to_string()),
            })
        };
        match held.document.receive(conn, bytes, &mut gate) {
            Ok(out) => self.route(&key, out),
            Err(error) => {
                info!(conn, %error, "a document frame refused");
                self.close(conn, DocClose::refused(&error));
                Vec::new()
            }
        }
    }

    /// `conn` is gone; the connections to flush. A document nobody has
    /// open any more leaves memory (storage has it).
    pub(crate) fn closed(&mut self, conn: Conn) -> Vec<Arc<Outgoing>> {
        let Some(open) = self.conns.remove(&conn) else {
            return Vec::new();
        };
        let Some(held) = self.documents.get_mut(&open.key) else {
            return Vec::new();
        };
        let out = held.document.close(conn);
        let flush = self.route(&open.key, out);
        self.forget_if_unused(&open.key);
        flush
    }

    fn forget_if_unused(&mut self, key: &Key) {
        if self.documents.get(key).is_some_and(|held| held.document.connections() == 0) {
            // What its last editors made is kept as a version.
            if self.documents.get(key).is_some_and(|held| held.dirty) {
                self.keep_version(key);
            }
            self.documents.remove(key);
            let (room, doc) = key.clone();
            self.jobs.push(Job::ForgetDoc { room, doc });
        }
    }

    /// In cluster mode: update `seq` of the document's log, from another
    /// node (`own`: appended by this one, and already sent to its
    /// connections here). The connections to flush.
    pub(crate) fn remote(
        &mut self,
        room: RoomName,
        doc: RoomName,
        seq: u64,
        update: &[u8],
        own: bool,
    ) -> Vec<Arc<Outgoing>> {
        let key = (room, doc);
        let Some(held) = self.documents.get_mut(&key) else {
            return Vec::new();
        };
        held.seq = held.seq.max(seq);
        if own {
            // The node whose update takes the log past the threshold
            // compacts it: everything up to here is in its document.
            if held.seq >= held.compacted + COMPACT_AFTER as u64 {
                held.compacted = held.seq;
                let (state, upto) = (held.document.state(), held.seq);
                let (room, doc) = key;
                self.jobs.push(Job::CompactDoc { room, doc, state, upto });
            }
            return Vec::new();
        }
        match held.document.merge(update) {
            Ok(out) => self.route_only(&key, out),
            Err(error) => {
                info!(%error, "an update from another node that does not decode");
                Vec::new()
            }
        }
    }

    /// In cluster mode: Redis lost the document's log; what this node
    /// holds of it goes back in, whole.
    pub(crate) fn reset(&mut self, room: RoomName, doc: RoomName) {
        let key = (room, doc);
        if let Some(held) = self.documents.get_mut(&key) {
            held.seq = 0;
            let (room, doc) = key;
            let update = held.document.state();
            self.jobs.push(Job::Doc(DocUpdate { room, doc, update }));
        }
    }

    /// In cluster mode: an awareness message of the document from another
    /// node. The connections to flush.
    pub(crate) fn remote_awareness(
        &mut self,
        room: RoomName,
        doc: RoomName,
        message: &[u8],
    ) -> Vec<Arc<Outgoing>> {
        let key = (room, doc);
        let Some(held) = self.documents.get_mut(&key) else {
            return Vec::new();
        };
        match held.document.merge_awareness(message) {
            Ok(out) => self.route_only(&key, out),
            Err(error) => {
                info!(%error, "an awareness message from another node that does not decode");
                Vec::new()
            }
        }
    }

    /// Sends what a document says, storing and sharing nothing (it came
    /// from storage or another node).
    fn route_only(&mut self, key: &Key, out: Vec<Out>) -> Vec<Arc<Outgoing>> {
        let out = out.into_iter().filter(|out| !matches!(out, Out::Store(_) | Out::Share(_)));
        self.route(key, out.collect())
    }

    /// What storage is to do since the last call, in order.
    pub(crate) fn take_jobs(&mut self) -> Vec<Job> {
        std::mem::take(&mut self.jobs)
    }

    /// Closes the connections of sessions `allowed` no longer lets into
    /// their room (they left it, or ended): their clients come back and
    /// are refused for good.
    pub(crate) fn revoke(&mut self, allowed: impl Fn(&SessionToken, &RoomName) -> bool) {
        let gone: Vec<(Conn, DocClose)> = self
            .conns
            .iter()
            .filter(|(_, open)| open.close.is_some() && !allowed(&open.token, &open.key.0))
            .map(|(conn, open)| (*conn, DocClose::no_longer_member(&open.key.0)))
            .collect();
        for (conn, close) in gone {
            self.close(conn, close);
        }
    }

    /// Document `doc` of `room` was deleted: its connections are closed
    /// for good (4404) and it leaves memory. Its content is storage's to
    /// drop.
    pub(crate) fn drop_doc(&mut self, room: RoomName, doc: RoomName) {
        let key = (room, doc);
        let gone: Vec<Conn> =
            self.conns.iter().filter(|(_, open)| open.key == key).map(|(conn, _)| *conn).collect();
        for conn in gone {
            let reason = format!("document {} of #{} was deleted", key.1, key.0);
            self.close(conn, DocClose { code: GONE, reason });
            self.conns.remove(&conn);
        }
        if self.documents.remove(&key).is_some() {
            let (room, doc) = key;
            self.jobs.push(Job::ForgetDoc { room, doc });
        }
    }

    /// Who is in each document and was not renewed for 30 s is gone (see
    /// [`Document::expire`]); called every few seconds. The connections
    /// to flush.
    pub(crate) fn expire(&mut self, now: Timestamp) -> Vec<Arc<Outgoing>> {
        let keys: Vec<Key> = self.documents.keys().cloned().collect();
        let mut flush = Vec::new();
        for key in keys {
            if let Some(held) = self.documents.get_mut(&key) {
                let out = held.document.expire(now.as_unix_millis(), AWARENESS_MAX_AGE_MS);
                flush.extend(self.route_only(&key, out));
            }
        }
        flush
    }

    /// Whether any document is open.
    pub(crate) fn is_empty(&self) -> bool {
        self.conns.is_empty()
    }

    /// Closes every connection (the server stops).
    pub(crate) fn close_all(&mut self, code: chat_protocol::CloseCode) {
        let conns: Vec<Conn> = self.conns.keys().copied().collect();
        for conn in conns {
            self.close(conn, DocClose::from(code));
        }
    }

    fn close(&mut self, conn: Conn, why: DocClose) {
        if let Some(close) = self.conns.get_mut(&conn).and_then(|open| open.close.take()) {
            let _ = close.send(why);
        }
    }

    /// Queues what document `key` says to whom, and what storage keeps;
    /// the connections to flush. A connection whose queue is full is
    /// closed as too slow (it resyncs when it comes back).
    fn route(&mut self, key: &Key, out: Vec<Out>) -> Vec<Arc<Outgoing>> {
        let mut flush = Vec::new();
        let mut slow = Vec::new();
        for out in out {
            let (to, bytes): (Vec<Conn>, Vec<u8>) = match out {
                Out::To(conn, bytes) => (vec![conn], bytes),
                Out::Others(from, bytes) => (self.holders(key, Some(from)), bytes),
                Out::Everyone(bytes) => (self.holders(key, None), bytes),
                Out::Store(update) => {
                    self.keep(key, update);
                    continue;
                }
                Out::Share(message) => {
                    if self.shared {
                        let (room, doc) = key.clone();
                        self.jobs.push(Job::Awareness { room, doc, message });
                    }
                    continue;
                }
            };
            let bytes = chat_transport::tungstenite::Bytes::from(bytes);
            for conn in to {
                let Some(open) = self.conns.get(&conn) else { continue };
                match open.outgoing.push_binary(bytes.clone(), false) {
                    Pushed::First => flush.push(Arc::clone(&open.outgoing)),
                    Pushed::Full => slow.push(conn),
                    Pushed::Queued | Pushed::Skipped | Pushed::Closed => {}
                }
            }
        }
        for conn in slow {
            self.close(conn, DocClose::from(chat_protocol::CloseCode::TooSlow));
        }
        flush
    }

    /// The connections that have document `key` open, but `except`.
    fn holders(&self, key: &Key, except: Option<Conn>) -> Vec<Conn> {
        self.conns
            .iter()
            .filter(|(conn, open)| Some(**conn) != except && open.key == *key)
            .map(|(conn, _)| *conn)
            .collect()
    }

    /// Storage is to keep `update` of document `key`; past
    /// [`COMPACT_AFTER`] the document's stored updates become one.
    fn keep(&mut self, key: &Key, update: Vec<u8>) {
        let Some(held) = self.documents.get_mut(key) else {
            return;
        };
        let (room, doc) = key.clone();
        self.jobs.push(Job::Doc(DocUpdate { room: room.clone(), doc: doc.clone(), update }));
        held.stored += 1;
        held.dirty = true;
        // (The update is in the document already: the version holds it.)
        if held.versioned.is_none_or(|at| self.now.saturating_sub(at) >= VERSION_EVERY_MS) {
            self.keep_version(key);
        }
        let Some(held) = self.documents.get_mut(key) else {
            return;
        };
        // (In cluster mode the log compacts as it is heard: see `remote`.)
        if !self.shared && held.stored > COMPACT_AFTER {
            held.stored = 1;
            let (state, upto) = (held.document.state(), held.seq);
            self.jobs.push(Job::CompactDoc { room, doc, state, upto });
        }
    }
}
