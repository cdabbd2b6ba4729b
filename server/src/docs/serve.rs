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

use chat_core::{Rate, RoomName, SessionToken, Timestamp, TokenBucket};
use chat_transport::tungstenite::Message as Frame;
use chat_transport::tungstenite::protocol::CloseFrame;
use chat_transport::{Outgoing, Pushed, Upgraded};
use futures_util::StreamExt;
use tokio::sync::{mpsc, oneshot};
use tracing::info;

use super::{Conn, DocError, Document, Limits, Out};
use crate::hub::Input;

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

/// The hub's answer to an open: the connection's id, or why it may not.
pub(crate) type Opened = Result<Conn, String>;

/// Serves one document connection until it ends. Frames are read at most
/// at the connection frame rate (`--frames-per-sec`, with its burst): past
/// it the task waits before reading on, so a flood waits on TCP.
pub(crate) async fn serve(
    upgraded: Box<Upgraded>,
    hub: mpsc::Sender<Input>,
    config: &crate::ServerConfig,
) {
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
        return;
    }
    let conn = match opened.await {
        Ok(Ok(conn)) => conn,
        Ok(Err(why)) => return refuse(&mut socket, FORBIDDEN, why).await,
        Err(_) => return,
    };
    info!(conn, %peer, "document opened");
    let rate = Rate::per_sec(config.frames_per_sec, config.frames_burst);
    let opened = tokio::time::Instant::now();
    let mut frames = TokenBucket::full(rate, Timestamp::from_unix_millis(0));
    loop {
        tokio::select! {
            biased;
            code = &mut closing => {
                let code = code.unwrap_or(chat_protocol::CloseCode::GoingAway);
                refuse(&mut socket, code.code(), code.reason().to_owned()).await;
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
                    let policy = chat_protocol::CloseCode::Policy.code();
                    return finish(&hub, conn, refuse(&mut socket, policy, why)).await;
                }
                Some(Ok(Frame::Close(_)) | Err(_)) | None => break,
                Some(Ok(_)) => {}
            },
        }
    }
    outgoing.close();
    let _ = hub.send(Input::DocClosed { conn }).await;
}

/// Closes after `closing`, and tells the hub.
async fn finish(hub: &mpsc::Sender<Input>, conn: Conn, closing: impl Future<Output = ()>) {
    closing.await;
    let _ = hub.send(Input::DocClosed { conn }).await;
}

/// The close code of a request that is not a document's: y-websocket
/// (3.x) takes a 44xx close as final and stops reconnecting.
const BAD_REQUEST: u16 = 4400;

/// The close code of a session that may not open the document (final too).
const FORBIDDEN: u16 = 4403;

/// Closes the socket with `code` and `why`, and reads on until the
/// client answers the close (for a second at most): a socket dropped with
/// what the client sent meanwhile unread is reset, and the client would
/// lose the close frame and its reason (y-websocket sends its first
/// messages as soon as it is open).
async fn refuse(socket: &mut chat_transport::ServerSocket, code: u16, why: String) {
    let frame = CloseFrame { code: code.into(), reason: why.into() };
    let closing = async {
        let _ = socket.close(Some(frame)).await;
        while let Some(Ok(_)) = socket.next().await {}
    };
    let _ = tokio::time::timeout(Duration::from_secs(1), closing).await;
}

/// A connection with a document open.
#[derive(Debug)]
struct Open {
    key: (RoomName, RoomName),
    /// The session it was opened for.
    token: SessionToken,
    outgoing: Arc<Outgoing>,
    close: Option<oneshot::Sender<chat_protocol::CloseCode>>,
}

/// Every document open on this server, and who has each open; the hub's.
#[derive(Debug, Default)]
pub(crate) struct Docs {
    documents: HashMap<(RoomName, RoomName), Document>,
    conns: HashMap<Conn, Open>,
    next: Conn,
    limits: Limits,
}

impl Docs {
    /// Opens `target`'s document for a connection the hub let in; the
    /// connections to flush.
    pub(crate) fn open(
        &mut self,
        target: &Target,
        outgoing: Arc<Outgoing>,
        close: oneshot::Sender<chat_protocol::CloseCode>,
    ) -> Result<(Conn, Vec<Arc<Outgoing>>), DocError> {
        let key = (target.room.clone(), target.doc.clone());
        let document = match self.documents.entry(key.clone()) {
            std::collections::hash_map::Entry::Occupied(entry) => entry.into_mut(),
            std::collections::hash_map::Entry::Vacant(entry) => {
                entry.insert(Document::load(&[], self.limits)?)
            }
        };
        self.next += 1;
        let conn = self.next;
        let out = document.open(conn);
        let token = target.token.clone();
        self.conns.insert(conn, Open { key, token, outgoing, close: Some(close) });
        Ok((conn, self.route(out)))
    }

    /// A frame from `conn`, if `allowed` still lets its session into the
    /// room; the connections to flush. A refused frame closes its
    /// connection (its client reconnects and syncs again: the document is
    /// intact), as does a session no longer allowed (it left the room).
    pub(crate) fn receive(
        &mut self,
        conn: Conn,
        bytes: &[u8],
        allowed: impl Fn(&SessionToken, &RoomName) -> bool,
    ) -> Vec<Arc<Outgoing>> {
        let Some(open) = self.conns.get(&conn) else {
            return Vec::new();
        };
        if !allowed(&open.token, &open.key.0) {
            self.close(conn, chat_protocol::CloseCode::Policy);
            return Vec::new();
        }
        let Some(document) = self.documents.get_mut(&open.key) else {
            return Vec::new();
        };
        match document.receive(conn, bytes) {
            Ok(out) => self.route(out),
            Err(error) => {
                info!(conn, %error, "a document frame refused");
                self.close(conn, chat_protocol::CloseCode::Policy);
                Vec::new()
            }
        }
    }

    /// `conn` is gone; the connections to flush.
    pub(crate) fn closed(&mut self, conn: Conn) -> Vec<Arc<Outgoing>> {
        let Some(open) = self.conns.remove(&conn) else {
            return Vec::new();
        };
        let Some(document) = self.documents.get_mut(&open.key) else {
            return Vec::new();
        };
        let out = document.close(conn);
        self.route(out)
    }

    /// Closes the connections of sessions `allowed` no longer lets into
    /// their room (they left it, or ended): their clients come back and
    /// are refused for good.
    pub(crate) fn revoke(&mut self, allowed: impl Fn(&SessionToken, &RoomName) -> bool) {
        let gone: Vec<Conn> = self
            .conns
            .iter()
            .filter(|(_, open)| open.close.is_some() && !allowed(&open.token, &open.key.0))
            .map(|(conn, _)| *conn)
            .collect();
        for conn in gone {
            self.close(conn, chat_protocol::CloseCode::Policy);
        }
    }

    /// Whether any document is open.
    pub(crate) fn is_empty(&self) -> bool {
        self.conns.is_empty()
    }

    /// Closes every connection (the server stops).
    pub(crate) fn close_all(&mut self, code: chat_protocol::CloseCode) {
        let conns: Vec<Conn> = self.conns.keys().copied().collect();
        for conn in conns {
            self.close(conn, code);
        }
    }

    fn close(&mut self, conn: Conn, code: chat_protocol::CloseCode) {
        if let Some(close) = self.conns.get_mut(&conn).and_then(|open| open.close.take()) {
            let _ = close.send(code);
        }
    }

    /// Queues what a document says to whom; the connections to flush. A
    /// connection whose queue is full is closed as too slow (it resyncs
    /// when it comes back).
    fn route(&mut self, out: Vec<Out>) -> Vec<Arc<Outgoing>> {
        let mut flush = Vec::new();
        let mut slow = Vec::new();
        for out in out {
            let (to, bytes): (Vec<Conn>, Vec<u8>) = match out {
                Out::To(conn, bytes) => (vec![conn], bytes),
                Out::Others(from, bytes) => {
                    let key = self.conns.get(&from).map(|open| &open.key);
                    let others = self
                        .conns
                        .iter()
                        .filter(|(conn, open)| **conn != from && Some(&open.key) == key)
                        .map(|(conn, _)| *conn)
                        .collect();
                    (others, bytes)
                }
                // Not kept yet: documents live in memory until storage
                // takes them (issue #17, next step).
                Out::Store(_) => continue,
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
            self.close(conn, chat_protocol::CloseCode::TooSlow);
        }
        flush
    }
}
