//! Shared documents (issue #17): one document as the server
//! holds it, sans IO. A [`Document`] is a Yjs document (`yrs`) with the
//! awareness (who is here, carets) of the connections that opened it, and
//! speaks the y-protocols messages any Yjs client speaks: sync step 1 and
//! 2, updates, awareness and awareness queries, several of them in one
//! frame if the client packs them so. It answers what each message asks
//! and says what goes to whom ([`Out`]): a reply to the sender, the same
//! update or awareness to the other connections, an update to store.
//!
//! An update is checked whole before it touches the document: one that
//! does not decode, or would make it larger than its limit, is refused
//! ([`DocError`]) and the document is as it was. Awareness is never stored:
//! a connection's states are taken back when it leaves.

use std::collections::{BTreeMap, BTreeSet};
use std::panic::{AssertUnwindSafe, catch_unwind};

use std::sync::Arc;

use yrs::block::{ClientID, ID};
use yrs::encoding::read::{Cursor, Error as ReadError, Read};
use yrs::sync::{Awareness, AwarenessUpdate, Message, MessageReader, SyncMessage};
use yrs::updates::decoder::{Decode, Decoder};
use yrs::updates::encoder::Encode;
use yrs::{Any, Doc, GetString, ReadTxn, StateVector, Text, Transact, Update};

/// The text shared documents edit (the page's editor, `chat doc` and the
/// terminal's view): one `Y.Text` of this name.
pub const CONTENT: &str = "content";

/// A connection to a document, as the driver names it.
pub type Conn = u64;

/// What a document takes at most.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The largest update (or state sent in sync step 2) one message may
    /// carry, in bytes.
    pub update_bytes: usize,
    /// The largest the document's whole state may grow to, in bytes.
    pub doc_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self { update_bytes: 1 << 20, doc_bytes: 8 << 20 }
    }
}

/// What the driver does after a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Out {
    /// Send these bytes (a y-protocols message) to this connection.
    To(Conn, Vec<u8>),
    /// Send them to every other connection of the document.
    Others(Conn, Vec<u8>),
    /// Send them to every connection of the document, the sender too (as
    /// y-websocket's server does with awareness: a lone editor hears its
    /// own every 15 s, and its provider's watchdog, which drops a
    /// connection that heard nothing for 30 s, stays quiet).
    Everyone(Vec<u8>),
    /// Tell the other nodes (cluster mode) these bytes, an awareness
    /// message: carets and who is here are never stored.
    Share(Vec<u8>),
    /// Keep this update (Yjs v1 encoding): the document is what its stored
    /// updates make, applied in any order.
    Store(Vec<u8>),
}

/// Why a message was refused; the document is as it was before it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DocError {
    /// It is not a y-protocols message, or its update does not decode.
    #[error("not a Yjs sync or awareness message")]
    Malformed,
    /// Its update is larger than [`Limits::update_bytes`].
    #[error("an update of {size} bytes; at most {max}")]
    UpdateTooLarge {
        /// The update's size.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// It would make the document larger than [`Limits::doc_bytes`].
    #[error("the document would grow past {max} bytes")]
    DocumentFull {
        /// The limit.
        max: usize,
    },
    /// It changes the document, which this connection may not (a
    /// read-only room, or a session no longer in it).
    #[error("{0}")]
    NotAllowed(String),
    /// It would add a document to a room that holds as many as it may.
    #[error("{0}")]
    TooMany(String),
}

/// One document and who has it open.
pub struct Document {
    awareness: Awareness,
    limits: Limits,
    /// The awareness clients each connection spoke for.
    present: BTreeMap<Conn, BTreeSet<ClientID>>,
    /// When each awareness client's state was last renewed, on the clock
    /// of [`Document::expire`] (the time of its latest call).
    renewed: BTreeMap<ClientID, u64>,
    clock: u64,
    /// The size of the document's state as last encoded, plus what was
    /// applied since: an upper bound of what it takes.
    bytes: usize,
}

impl std::fmt::Debug for Document {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Document")
            .field("connections", &self.present.len())
            .field("bytes", &self.bytes)
            .finish_non_exhaustive()
    }
}

impl Document {
    /// A document made of `stored` updates (as [`Out::Store`] gave them,
    /// in any order), under `limits`.
    ///
    /// # Errors
    /// A stored update does not decode: what storage holds is not this
    /// document's.
    pub fn load(stored: &[Vec<u8>], limits: Limits) -> Result<Self, DocError> {
        let doc = Doc::new();
        {
            let mut txn = doc.transact_mut();
            for bytes in stored {
                let update = decode_update(bytes)?;
                txn.apply_update(update).map_err(|_| DocError::Malformed)?;
            }
        }
        let mut document = Self {
            awareness: Awareness::new(doc),
            limits,
            present: BTreeMap::new(),
            renewed: BTreeMap::new(),
            clock: 0,
            bytes: 0,
        };
        document.bytes = document.state().len();
        Ok(document)
    }

    /// A connection opens the document: what it is sent first, as a
    /// y-websocket server does: the document's state vector (sync step 1,
    /// which the client answers with what the server misses, its offline
    /// edits) and who is here.
    pub fn open(&mut self, conn: Conn) -> Vec<Out> {
        self.present.entry(conn).or_default();
        let vector = self.awareness.doc().transact().state_vector();
        let mut out =
            vec![Out::To(conn, Message::Sync(SyncMessage::SyncStep1(vector)).encode_v1())];
        if let Ok(states) = self.awareness.update()
            && !states.clients.is_empty()
        {
            out.push(Out::To(conn, Message::Awareness(states).encode_v1()));
        }
        out
    }

    /// The messages of one frame from `conn`, in order. A message refused
    /// stops the frame there: what came before it stands. `may_change` is
    /// asked before the first update of the frame that changes the document
    /// (one that brings nothing new, as a resync's often does, is not a
    /// change); refusing it refuses the update.
    ///
    /// # Errors
    /// The message refused, and why.
    pub fn receive(
        &mut self,
        conn: Conn,
        frame: &[u8],
        may_change: &mut dyn FnMut() -> Result<(), DocError>,
    ) -> Result<Vec<Out>, DocError> {
        let mut allowed = false;
        let messages = decode_messages(frame)?;
        let mut out = Vec::new();
        for message in messages {
            match message {
                Message::Sync(SyncMessage::SyncStep1(vector)) => {
                    let missing = self.awareness.doc().transact().encode_diff_v1(&vector);
                    let reply = Message::Sync(SyncMessage::SyncStep2(missing));
                    out.push(Out::To(conn, reply.encode_v1()));
                }
                Message::Sync(SyncMessage::SyncStep2(update) | SyncMessage::Update(update)) => {
                    let decoded = self.check(&update)?;
                    // One that brings nothing new (a resync's, often) is
                    // neither kept nor relayed.
                    if !self.brings_news(&decoded) {
                        continue;
                    }
                    if !allowed {
                        may_change()?;
                        allowed = true;
                    }
                    self.take(decoded, update.len())?;
                    let relay = Message::Sync(SyncMessage::Update(update.clone()));
                    out.push(Out::Others(conn, relay.encode_v1()));
                    out.push(Out::Store(update));
                }
                Message::Awareness(update) => {
                    let clients: Vec<ClientID> = update.clients.keys().copied().collect();
                    self.awareness.apply_update(update.clone()).map_err(|_| DocError::Malformed)?;
                    self.renew(&update);
                    self.present.entry(conn).or_default().extend(clients);
                    let message = Message::Awareness(update).encode_v1();
                    out.push(Out::Everyone(message.clone()));
                    out.push(Out::Share(message));
                }
                Message::AwarenessQuery => {
                    if let Ok(states) = self.awareness.update() {
                        out.push(Out::To(conn, Message::Awareness(states).encode_v1()));
                    }
                }
                // Authentication is the connection's, before it opens a
                // document; custom messages mean nothing here.
                Message::Auth(_) | Message::Custom(..) => {}
            }
        }
        Ok(out)
    }

    /// An update from elsewhere (another node): applied, and sent to every
    /// connection here. The limits are not applied: the node that took it
    /// did, and refusing it here would make two documents of one.
    ///
    /// # Errors
    /// It does not decode.
    pub fn merge(&mut self, bytes: &[u8]) -> Result<Vec<Out>, DocError> {
        self.take(decode_update(bytes)?, bytes.len())?;
        let relay = Message::Sync(SyncMessage::Update(bytes.to_vec()));
        Ok(vec![Out::Everyone(relay.encode_v1())])
    }

    /// `conn` is gone: the others see its carets and names go.
    pub fn close(&mut self, conn: Conn) -> Vec<Out> {
        let Some(clients) = self.present.remove(&conn) else {
            return Vec::new();
        };
        for &client in &clients {
            self.awareness.remove_state(client);
            self.renewed.remove(&client);
        }
        match self.awareness.update_with_clients(clients) {
            Ok(gone) if !gone.clients.is_empty() => {
                let message = Message::Awareness(gone).encode_v1();
                vec![Out::Everyone(message.clone()), Out::Share(message)]
            }
            _ => Vec::new(),
        }
    }

    /// An awareness message from another node (as [`Out::Share`] gave
    /// it there): applied, and sent to every connection here.
    ///
    /// # Errors
    /// It is not an awareness message.
    pub fn merge_awareness(&mut self, message: &[u8]) -> Result<Vec<Out>, DocError> {
        let mut out = Vec::new();
        for message in decode_messages(message)? {
            let Message::Awareness(update) = message else {
                return Err(DocError::Malformed);
            };
            self.awareness.apply_update(update.clone()).map_err(|_| DocError::Malformed)?;
            self.renew(&update);
            out.push(Out::Everyone(Message::Awareness(update).encode_v1()));
        }
        Ok(out)
    }

    /// Makes the text as it is in `version` (a whole state, as
    /// [`Document::state`] gave it), as one new edit: only what differs
    /// changes, so carets elsewhere stay. The edit goes to every
    /// connection and to storage.
    ///
    /// # Errors
    /// The version does not decode.
    pub fn restore(&mut self, version: &[u8]) -> Result<Vec<Out>, DocError> {
        let past = Doc::new();
        past.transact_mut()
            .apply_update(decode_update(version)?)
            .map_err(|_| DocError::Malformed)?;
        let wanted = past.get_or_insert_text(CONTENT).get_string(&past.transact());
        let doc = self.awareness.doc();
        let text = doc.get_or_insert_text(CONTENT);
        let now = text.get_string(&doc.transact());
        let before = doc.transact().state_vector();
        {
            let mut txn = doc.transact_mut();
            let (start, old_end, new_end) = chat_protocol::text::differing(&now, &wanted);
            let (from, len) = (u32::try_from(start), u32::try_from(old_end - start));
            let (Ok(from), Ok(len)) = (from, len) else {
                return Err(DocError::DocumentFull { max: self.limits.doc_bytes });
            };
            if len > 0 {
                text.remove_range(&mut txn, from, len);
            }
            if let Some(inserted) = wanted.get(start..new_end).filter(|s| !s.is_empty()) {
                text.insert(&mut txn, from, inserted);
            }
        }
        let update = doc.transact().encode_diff_v1(&before);
        self.bytes += update.len();
        let relay = Message::Sync(SyncMessage::Update(update.clone())).encode_v1();
        Ok(vec![Out::Everyone(relay), Out::Store(update)])
    }

    /// Who is here and was not renewed for `max_age_ms` by `now` (unix
    /// ms) is gone: a client that vanished without a word (a node that
    /// died, in cluster mode) leaves no caret behind. Yjs clients renew
    /// every 15 s. Called every few seconds: a state's renewal is dated by
    /// the call before it. What every connection here is told.
    pub fn expire(&mut self, now: u64, max_age_ms: u64) -> Vec<Out> {
        self.clock = now;
        let mut stale = Vec::new();
        for (client, at) in &mut self.renewed {
            // Renewed before the first call (0): dated now, not gone.
            if *at == 0 {
                *at = now;
            } else if now.saturating_sub(*at) > max_age_ms {
                stale.push(*client);
            }
        }
        if stale.is_empty() {
            return Vec::new();
        }
        for client in &stale {
            self.awareness.remove_state(*client);
            self.renewed.remove(client);
        }
        match self.awareness.update_with_clients(stale) {
            Ok(gone) if !gone.clients.is_empty() => {
                vec![Out::Everyone(Message::Awareness(gone).encode_v1())]
            }
            _ => Vec::new(),
        }
    }

    /// Notes when the clients of `update` were renewed (or drops those it
    /// removes).
    fn renew(&mut self, update: &AwarenessUpdate) {
        for (client, entry) in &update.clients {
            match &*entry.json {
                "null" => self.renewed.remove(client),
                _ => self.renewed.insert(*client, self.clock),
            };
        }
    }

    /// The whole document as one update: what its stored updates compact
    /// into.
    pub fn state(&self) -> Vec<u8> {
        self.awareness.doc().transact().encode_state_as_update_v1(&StateVector::default())
    }

    /// How many connections have it open.
    pub fn connections(&self) -> usize {
        self.present.len()
    }

    /// The document itself (for reading its text).
    pub fn doc(&self) -> &Doc {
        self.awareness.doc()
    }

    /// Whether `update` holds anything the document does not: blocks past
    /// what it has of some client (integrated now, or kept pending until
    /// what they follow comes), or deletions.
    fn brings_news(&self, update: &Update) -> bool {
        if !update.delete_set().is_empty() {
            return true;
        }
        let vector = self.awareness.doc().transact().state_vector();
        let inserted = update.insertions(true);
        update.state_vector_lower().iter().any(|(client, _)| {
            let had = vector.get(client);
            inserted.get(client).is_some_and(|ranges| ranges.iter().any(|range| range.end > had))
        })
    }

    /// `bytes`, an update, decoded, if it fits the limits.
    fn check(&mut self, bytes: &[u8]) -> Result<Update, DocError> {
        let max = self.limits.update_bytes;
        if bytes.len() > max {
            return Err(DocError::UpdateTooLarge { size: bytes.len(), max });
        }
        let update = decode_update(bytes)?;
        if self.bytes + bytes.len() > self.limits.doc_bytes {
            // The bound may be stale (deletions shrink a state): measure.
            self.bytes = self.state().len();
            if self.bytes + bytes.len() > self.limits.doc_bytes {
                return Err(DocError::DocumentFull { max: self.limits.doc_bytes });
            }
        }
        Ok(update)
    }

    /// Applies a decoded update of `len` bytes.
    fn take(&mut self, update: Update, len: usize) -> Result<(), DocError> {
        self.awareness
            .doc()
            .transact_mut()
            .apply_update(update)
            .map_err(|_| DocError::Malformed)?;
        self.bytes += len;
        Ok(())
    }
}

/// Every message of a frame, or why the frame is refused. Decoding never
/// takes the server down, whatever the bytes (a panic in the decoder is a
/// malformed frame).
fn decode_messages(frame: &[u8]) -> Result<Vec<Message>, DocError> {
    let decoded = catch_unwind(AssertUnwindSafe(|| {
        let mut decoder = Checked::new(frame);
        MessageReader::new(&mut decoder).collect::<Result<Vec<Message>, _>>()
    }));
    match decoded {
        Ok(Ok(messages)) if !messages.is_empty() => Ok(messages),
        _ => Err(DocError::Malformed),
    }
}

/// An update, decoded whole before anything applies it.
fn decode_update(bytes: &[u8]) -> Result<Update, DocError> {
    match catch_unwind(|| Update::decode(&mut Checked::new(bytes))) {
        Ok(Ok(update)) => Ok(update),
        _ => Err(DocError::Malformed),
    }
}

/// Yjs's v1 decoding (lib0), as `yrs::updates::decoder::DecoderV1` does
/// it, but for strings: yrs takes a string's bytes for UTF-8 unchecked,
/// which bytes from a client must never be (undefined behaviour, seen
/// aborting a debug build on random input); here they are checked, and
/// bytes that are not UTF-8 refuse the message.
struct Checked<'a> {
    cursor: Cursor<'a>,
}

impl<'a> Checked<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        Self { cursor: Cursor::new(bytes) }
    }

    fn read_id(&mut self) -> Result<ID, ReadError> {
        let client: u32 = self.read_var()?;
        let clock = self.read_var()?;
        Ok(ID::new(ClientID::from(client), clock))
    }
}

impl Read for Checked<'_> {
    fn read_exact(&mut self, len: usize) -> Result<&[u8], ReadError> {
        self.cursor.read_exact(len)
    }

    fn read_u8(&mut self) -> Result<u8, ReadError> {
        self.cursor.read_u8()
    }

    fn read_string(&mut self) -> Result<&str, ReadError> {
        let bytes = self.read_buf()?;
        std::str::from_utf8(bytes).map_err(|_| ReadError::UnexpectedValue)
    }
}

impl Decoder for Checked<'_> {
    fn reset_ds_cur_val(&mut self) {}

    fn read_ds_clock(&mut self) -> Result<u32, ReadError> {
        self.read_var()
    }

    fn read_ds_len(&mut self) -> Result<u32, ReadError> {
        self.read_var()
    }

    fn read_left_id(&mut self) -> Result<ID, ReadError> {
        self.read_id()
    }

    fn read_right_id(&mut self) -> Result<ID, ReadError> {
        self.read_id()
    }

    fn read_client(&mut self) -> Result<ClientID, ReadError> {
        let client: u32 = self.read_var()?;
        Ok(ClientID::from(client))
    }

    fn read_info(&mut self) -> Result<u8, ReadError> {
        self.read_u8()
    }

    fn read_parent_info(&mut self) -> Result<bool, ReadError> {
        let info: u32 = self.read_var()?;
        Ok(info == 1)
    }

    fn read_type_ref(&mut self) -> Result<u8, ReadError> {
        self.read_u8()
    }

    fn read_len(&mut self) -> Result<u32, ReadError> {
        self.read_var()
    }

    fn read_any(&mut self) -> Result<Any, ReadError> {
        Any::decode(self)
    }

    fn read_json(&mut self) -> Result<Any, ReadError> {
        let text = self.read_string()?;
        Any::from_json(text)
    }

    fn read_key(&mut self) -> Result<Arc<str>, ReadError> {
        Ok(self.read_string()?.into())
    }

    fn read_to_end(&mut self) -> Result<&[u8], ReadError> {
        let rest = self.cursor.buf.len() - self.cursor.next;
        self.cursor.read_exact(rest)
    }
}

/// An awareness update as a client sends it (for tests and tools).
pub fn awareness_message(update: AwarenessUpdate) -> Vec<u8> {
    Message::Awareness(update).encode_v1()
}

mod serve;

pub(crate) use serve::{DocClose, Docs, Opened, PREFIX, Restore, Target, frame_limit, serve};

#[cfg(test)]
mod tests;
