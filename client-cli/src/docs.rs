//! Shared documents from the terminal (issue #17): `chat doc get` and
//! `chat doc put` for scripts (the client joins the room, opens the
//! document as any Yjs client does — `/yjs/{room}/{doc}`, y-protocols over
//! WebSocket, see docs/protocol.md — and prints it, or replaces its text
//! with standard input as one edit that everyone editing it sees), and
//! [`follow`], a document kept live for the full-screen client's `/doc`
//! view and `/edit` in `$EDITOR`.

use std::io::Read as _;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use chat_protocol::ServerFrame;
use chat_protocol::text::differing;
use chat_transport::tungstenite::Message as Frame;
use chat_transport::{TransportConfig, connect};
use futures_util::{SinkExt, StreamExt};
use yrs::sync::{Message, SyncMessage};
use yrs::updates::decoder::Decode;
use yrs::updates::encoder::Encode;
use yrs::{Doc, GetString, ReadTxn, StateVector, Text, TextRef, Transact, Update};

use crate::engine::{self, Command, Event};
use crate::oneshot::Identity;

/// `chat doc`.
#[derive(Debug, clap::Args)]
pub struct DocArgs {
    #[command(subcommand)]
    what: What,
    /// How long to wait for the server, in seconds.
    #[arg(long, default_value_t = 10.0, global = true)]
    timeout: f64,
}

#[derive(Debug, clap::Subcommand)]
enum What {
    /// Print a shared document's text.
    Get {
        /// The room it is in (joined for the purpose).
        room: String,
        /// The document's name.
        name: String,
    },
    /// Replace a shared document's text with standard input; exits 0 once
    /// the server has the edit.
    Put {
        /// The room it is in (joined for the purpose).
        room: String,
        /// The document's name.
        name: String,
    },
}

/// The text shared documents edit (the page's editor too).
const CONTENT: &str = "content";

/// The largest message taken from the server: a whole document (sync step
/// 2) is one.
const DOC_MESSAGE_MAX: usize = 256 << 20;

/// Runs `chat doc`.
pub async fn run(who: Identity, args: DocArgs) -> anyhow::Result<ExitCode> {
    let deadline = Duration::from_secs_f64(args.timeout.max(0.0));
    let (room, name, put) = match args.what {
        What::Get { room, name } => (room, name, None),
        What::Put { room, name } => {
            let mut text = String::new();
            std::io::stdin().read_to_string(&mut text).context("cannot read standard input")?;
            (room, name, Some(text))
        }
    };
    let work = async {
        let (commands, token) = join(&who, &room).await?;
        let url = doc_url(&who.server, &room, &name, &token)?;
        let transport = TransportConfig {
            client_tls: who.client_tls.clone(),
            // A whole document arrives as one message: the server bounds
            // its size (--doc-max-bytes), not a chat message's limit.
            max_message_bytes: DOC_MESSAGE_MAX,
            ..TransportConfig::default()
        };
        let socket = connect(&url, None, &transport).await?;
        let mut editor = Editor { doc: Doc::new(), socket };
        editor.sync().await?;
        if let Some(text) = &put {
            editor.replace(text).await?;
        } else {
            print!("{}", editor.text());
        }
        let _ = editor.socket.close(None).await;
        let _ = commands.send(Command::Quit);
        anyhow::Ok(())
    };
    match tokio::time::timeout(deadline, work).await {
        Ok(Ok(())) => Ok(ExitCode::SUCCESS),
        Ok(Err(err)) => Err(err),
        Err(_) => bail!("no answer within {:.1} s", deadline.as_secs_f64()),
    }
}

/// What a followed document tells the full-screen client; each names its
/// document by (room, name).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DocEvent {
    /// Its text now: after the first sync and after every change.
    Text { key: DocKey, text: String },
    /// The text an `$EDITOR` session starts from ([`DocCommand::BeginEdit`]).
    EditBase { key: DocKey, text: String },
    /// What was written in `$EDITOR` is merged, and the server has it.
    Saved { key: DocKey },
    /// Something to say of it; `fatal`: the server refused it for good
    /// (the follower stopped).
    Problem { key: DocKey, why: String, fatal: bool },
}

/// A document: its room and name.
pub type DocKey = (String, String);

/// What the full-screen client asks of a followed document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DocCommand {
    /// Keep the document as it is now, as the base of an `$EDITOR`
    /// session ([`DocEvent::EditBase`] gives its text).
    BeginEdit,
    /// The `$EDITOR` session made the base's text this: the difference
    /// becomes one edit made on the base, which the CRDT merges with what
    /// others typed meanwhile (theirs is kept, not overwritten).
    Commit(String),
}

/// Follows document `key` at `url` (see [`doc_url`]) until the returned
/// sender is dropped: its text comes out as [`DocEvent`]s on `events`.
/// The connection is opened again when it drops (what was edited here
/// meanwhile merges when it is back); a refusal for good (44xx) ends it.
pub fn follow(
    url: String,
    transport: TransportConfig,
    key: DocKey,
    events: tokio::sync::mpsc::UnboundedSender<DocEvent>,
) -> tokio::sync::mpsc::UnboundedSender<DocCommand> {
    let (commands, mut asked) = tokio::sync::mpsc::unbounded_channel();
    let transport = TransportConfig { max_message_bytes: DOC_MESSAGE_MAX, ..transport };
    tokio::spawn(async move {
        let doc = Doc::new();
        let mut base: Option<(Vec<u8>, String)> = None;
        let mut retry = Duration::from_millis(100);
        loop {
            let socket = tokio::select! {
                socket = connect(&url, None, &transport) => socket,
                command = asked.recv() => match command {
                    // Offline: the edit is made here and merges later.
                    Some(command) => {
                        let mut offline = Live { doc: doc.clone(), base: &mut base, key: &key, events: &events };
                        offline.command(command, None).await;
                        continue;
                    }
                    None => return,
                },
            };
            let socket = match socket {
                Ok(socket) => socket,
                Err(err) => {
                    let why = format!("cannot open the document ({err}); trying again");
                    let _ = events.send(DocEvent::Problem { key: key.clone(), why, fatal: false });
                    tokio::time::sleep(retry).await;
                    retry = (retry * 2).min(Duration::from_secs(5));
                    continue;
                }
            };
            let mut editor = Editor { doc: doc.clone(), socket };
            let mut live = Live { doc: doc.clone(), base: &mut base, key: &key, events: &events };
            match live.run(&mut editor, &mut asked).await {
                Ended::Asked => return,
                Ended::Refused(why) => {
                    let _ = events.send(DocEvent::Problem { key: key.clone(), why, fatal: true });
                    return;
                }
                Ended::Lost { why, synced } => {
                    let why = format!("{why}; opening it again");
                    let _ = events.send(DocEvent::Problem { key: key.clone(), why, fatal: false });
                    // A server that closes before syncing is tried again
                    // less and less often.
                    if synced {
                        retry = Duration::from_millis(100);
                    }
                    tokio::time::sleep(retry).await;
                    retry = (retry * 2).min(Duration::from_secs(5));
                }
            }
        }
    });
    commands
}

/// How a followed document's connection ended.
enum Ended {
    /// The client let it go.
    Asked,
    /// The server refused it for good.
    Refused(String),
    /// It dropped (`synced`: after the server's sync); it is opened again.
    Lost { why: String, synced: bool },
}

/// A followed document on one connection (or none, offline).
struct Live<'a> {
    doc: Doc,
    /// The base of an `$EDITOR` session: the state, and its text.
    base: &'a mut Option<(Vec<u8>, String)>,
    key: &'a DocKey,
    events: &'a tokio::sync::mpsc::UnboundedSender<DocEvent>,
}

impl Live<'_> {
    async fn run(
        &mut self,
        editor: &mut Editor,
        asked: &mut tokio::sync::mpsc::UnboundedReceiver<DocCommand>,
    ) -> Ended {
        let vector = self.doc.transact().state_vector();
        if let Err(err) = editor.send(Message::Sync(SyncMessage::SyncStep1(vector))).await {
            return Ended::Lost { why: err.to_string(), synced: false };
        }
        let mut shown: Option<String> = None;
        let mut synced = false;
        // A commit waits for the server's answer to the sync step 1 sent
        // after it: then the server has it.
        let mut saving = 0usize;
        loop {
            tokio::select! {
                read = editor.read_closing() => match read {
                    Ok(step2) => {
                        synced |= step2;
                        if step2 && saving > 0 {
                            saving -= 1;
                            if saving == 0 {
                                let _ = self.events.send(DocEvent::Saved { key: self.key.clone() });
                            }
                        }
                        let text = editor.text();
                        if shown.as_ref() != Some(&text) {
                            let _ = self.events.send(DocEvent::Text { key: self.key.clone(), text: text.clone() });
                            shown = Some(text);
                        }
                    }
                    Err(Closed::Refused(why)) => return Ended::Refused(why),
                    Err(Closed::Lost(why)) => return Ended::Lost { why, synced },
                },
                command = asked.recv() => match command {
                    Some(command) => {
                        if self.command(command, Some(editor)).await {
                            saving += 1;
                        }
                    }
                    None => {
                        let _ = editor.socket.close(None).await;
                        return Ended::Asked;
                    }
                },
            }
        }
    }

    /// Does what was asked; whether an edit went to the server (on
    /// `editor`, when connected).
    async fn command(&mut self, command: DocCommand, editor: Option<&mut Editor>) -> bool {
        match command {
            DocCommand::BeginEdit => {
                let state = self.doc.transact().encode_state_as_update_v1(&StateVector::default());
                let text = self.doc.get_or_insert_text(CONTENT).get_string(&self.doc.transact());
                *self.base = Some((state, text.clone()));
                let _ = self.events.send(DocEvent::EditBase { key: self.key.clone(), text });
                false
            }
            DocCommand::Commit(new) => {
                let Some((state, old)) = self.base.take() else {
                    return false;
                };
                let update = match edit_on(&state, &old, &new) {
                    Ok(update) => update,
                    Err(err) => {
                        let why = format!("the edit could not be made: {err:#}");
                        let _ = self.events.send(DocEvent::Problem {
                            key: self.key.clone(),
                            why,
                            fatal: false,
                        });
                        return false;
                    }
                };
                let applied = Update::decode_v1(&update)
                    .ok()
                    .map(|decoded| self.doc.transact_mut().apply_update(decoded).is_ok());
                if applied != Some(true) {
                    return false;
                }
                let text = self.doc.get_or_insert_text(CONTENT).get_string(&self.doc.transact());
                let _ = self.events.send(DocEvent::Text { key: self.key.clone(), text });
                let Some(editor) = editor else {
                    return false;
                };
                let vector = self.doc.transact().state_vector();
                editor.send(Message::Sync(SyncMessage::Update(update))).await.is_ok()
                    && editor.send(Message::Sync(SyncMessage::SyncStep1(vector))).await.is_ok()
            }
        }
    }
}

/// The update that turns `old`, the text of the document whose whole state
/// is `state`, into `new`: one edit made on that state (by a client of its
/// own), so it merges with whatever the document holds now.
fn edit_on(state: &[u8], old: &str, new: &str) -> anyhow::Result<Vec<u8>> {
    let fork = Doc::new();
    let update = Update::decode_v1(state).context("a base that does not decode")?;
    fork.transact_mut().apply_update(update).context("a base that does not apply")?;
    let before = fork.transact().state_vector();
    rewrite(&fork, old, new);
    Ok(fork.transact().encode_diff_v1(&before))
}

/// Makes `doc`'s text, `old`, `new` with one edit: what differs between
/// the ends they share (positions in UTF-8 bytes, yrs's default).
fn rewrite(doc: &Doc, old: &str, new: &str) {
    let content = doc.get_or_insert_text(CONTENT);
    let mut txn = doc.transact_mut();
    let (start, old_end, new_end) = differing(old, new);
    let len = u32::try_from(old_end - start).unwrap_or(u32::MAX);
    let from = u32::try_from(start).unwrap_or(u32::MAX);
    if len > 0 {
        content.remove_range(&mut txn, from, len);
    }
    if let Some(inserted) = new.get(start..new_end).filter(|s| !s.is_empty()) {
        content.insert(&mut txn, from, inserted);
    }
}

/// Why a followed document's connection ended.
enum Closed {
    /// For good (44xx), with the server's reason.
    Refused(String),
    /// Otherwise.
    Lost(String),
}

/// Says hello and joins `room`: the session's token, once it is in.
async fn join(
    who: &Identity,
    room: &str,
) -> anyhow::Result<(tokio::sync::mpsc::UnboundedSender<Command>, String)> {
    let (commands, mut events) =
        engine::spawn(who.options(vec![(room.to_owned(), None)], Duration::ZERO));
    let mut token = None;
    while let Some(event) = events.recv().await {
        match event {
            Event::Frame { frame: Some(frame), .. } => match *frame {
                ServerFrame::Welcome { session, .. } => token = Some(session),
                ServerFrame::Joined { room: joined, .. } if joined == room => {
                    let token = token.context("joined before a welcome")?;
                    return Ok((commands, token));
                }
                ServerFrame::Error { code, message, .. } => bail!("{code}: {message}"),
                _ => {}
            },
            Event::Failed(failure) => return Err(failure.into()),
            _ => {}
        }
    }
    bail!("the connection task ended unexpectedly")
}

/// The document's URL on the server whose chat endpoint is `server`.
pub fn doc_url(server: &str, room: &str, name: &str, token: &str) -> anyhow::Result<String> {
    let base = server.strip_suffix("/ws").unwrap_or(server.trim_end_matches('/'));
    let plain = |text: &str| {
        !text.is_empty()
            && text
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
    };
    if !plain(name) {
        bail!("invalid_doc: a document's name is lowercase letters, digits, - and _");
    }
    Ok(format!("{base}/yjs/{room}/{name}?session={token}"))
}

/// One document, as a Yjs client holds it.
struct Editor {
    doc: Doc,
    socket: chat_transport::WebSocket,
}

impl Editor {
    fn content(&self) -> TextRef {
        self.doc.get_or_insert_text(CONTENT)
    }

    fn text(&self) -> String {
        self.content().get_string(&self.doc.transact())
    }

    /// Asks for the whole document, and waits until it is here.
    async fn sync(&mut self) -> anyhow::Result<()> {
        let vector = self.doc.transact().state_vector();
        self.send(Message::Sync(SyncMessage::SyncStep1(vector))).await?;
        while !self.read().await? {}
        Ok(())
    }

    /// Makes the text `text` with one edit (what differs between the ends
    /// they share), and waits until the server has it.
    async fn replace(&mut self, text: &str) -> anyhow::Result<()> {
        let before = self.doc.transact().state_vector();
        let old = self.text();
        rewrite(&self.doc, &old, text);
        let update = self.doc.transact().encode_diff_v1(&before);
        self.send(Message::Sync(SyncMessage::Update(update))).await?;
        // The server answers in order: its reply to this sync step 1 comes
        // after it applied the update.
        self.sync().await
    }

    /// As [`Editor::read`], telling a close for good (44xx) from others.
    async fn read_closing(&mut self) -> Result<bool, Closed> {
        let bytes = match self.socket.next().await {
            Some(Ok(Frame::Binary(bytes))) => bytes,
            Some(Ok(Frame::Close(Some(close))))
                if (4400..4500).contains(&u16::from(close.code)) =>
            {
                return Err(Closed::Refused(close.reason.to_string()));
            }
            Some(Ok(Frame::Close(close))) => {
                let why = close.map_or_else(String::new, |c| c.reason.to_string());
                return Err(Closed::Lost(format!("the server closed the document ({why})")));
            }
            Some(Ok(_)) => return Ok(false),
            Some(Err(err)) => return Err(Closed::Lost(err.to_string())),
            None => return Err(Closed::Lost("the connection dropped".to_owned())),
        };
        self.take(&bytes).await.map_err(|err| Closed::Lost(format!("{err:#}")))
    }

    async fn send(&mut self, message: Message) -> anyhow::Result<()> {
        self.socket.send(Frame::binary(message.encode_v1())).await?;
        Ok(())
    }

    /// Reads one frame and does what it asks: `true` once it brought the
    /// server's sync step 2 (the answer to ours).
    async fn read(&mut self) -> anyhow::Result<bool> {
        let bytes = match self.socket.next().await {
            Some(Ok(Frame::Binary(bytes))) => bytes,
            Some(Ok(Frame::Close(Some(close)))) => {
                bail!("the server closed the document: {}", close.reason)
            }
            Some(Ok(_)) => return Ok(false),
            Some(Err(err)) => return Err(err.into()),
            None => bail!("the server closed the document"),
        };
        self.take(&bytes).await
    }

    /// Does what a frame from the server asks: `true` if it brought the
    /// server's sync step 2 (the answer to ours).
    async fn take(&mut self, bytes: &[u8]) -> anyhow::Result<bool> {
        let message = Message::decode_v1(bytes).context("not a y-protocols message")?;
        match message {
            Message::Sync(SyncMessage::SyncStep1(vector)) => {
                let missing = self.doc.transact().encode_diff_v1(&vector);
                self.send(Message::Sync(SyncMessage::SyncStep2(missing))).await?;
                Ok(false)
            }
            Message::Sync(SyncMessage::SyncStep2(update)) => {
                self.apply(&update)?;
                Ok(true)
            }
            Message::Sync(SyncMessage::Update(update)) => {
                self.apply(&update)?;
                Ok(false)
            }
            _ => Ok(false),
        }
    }

    fn apply(&mut self, update: &[u8]) -> anyhow::Result<()> {
        let update = Update::decode_v1(update).context("an update that does not decode")?;
        self.doc.transact_mut().apply_update(update).context("an update that does not apply")?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use yrs::updates::decoder::Decode;
    use yrs::{Doc, GetString, ReadTxn, StateVector, Text, Transact, Update};

    use super::{CONTENT, edit_on};

    #[test]
    fn an_edit_made_on_its_base_keeps_what_others_typed_since() {
        let live = Doc::new();
        let text = live.get_or_insert_text(CONTENT);
        text.insert(&mut live.transact_mut(), 0, "first\nsecond\n");
        let base = live.transact().encode_state_as_update_v1(&StateVector::default());
        // Meanwhile someone types at the top, and deletes a word.
        text.insert(&mut live.transact_mut(), 0, "top\n");
        text.remove_range(&mut live.transact_mut(), 4, 5);
        // The editor changed the base's second line and added one.
        let update = edit_on(&base, "first\nsecond\n", "first\n2nd\nthird\n").unwrap();
        live.transact_mut().apply_update(Update::decode_v1(&update).unwrap()).unwrap();
        assert_eq!(text.get_string(&live.transact()), "top\n\n2nd\nthird\n");
    }
}
