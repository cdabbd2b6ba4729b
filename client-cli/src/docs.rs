//! `chat doc get` and `chat doc put`: a room's shared document from a
//! script (issue #17). The client joins the room, opens the document as
//! any Yjs client does (`/yjs/{room}/{doc}`, y-protocols over WebSocket,
//! see docs/protocol.md), and prints it, or replaces its text with
//! standard input as one edit that everyone editing it sees.

use std::io::Read as _;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use chat_protocol::ServerFrame;
use chat_transport::tungstenite::Message as Frame;
use chat_transport::{TransportConfig, connect};
use futures_util::{SinkExt, StreamExt};
use yrs::sync::{Message, SyncMessage};
use yrs::updates::decoder::Decode;
use yrs::updates::encoder::Encode;
use yrs::{Doc, GetString, ReadTxn, Text, TextRef, Transact, Update};

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
fn doc_url(server: &str, room: &str, name: &str, token: &str) -> anyhow::Result<String> {
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
        let content = self.content();
        {
            let mut txn = self.doc.transact_mut();
            // (yrs counts a text's positions in UTF-8 bytes by default.)
            let (start, old_end, new_end) = differing(&old, text);
            let len = u32::try_from(old_end - start).unwrap_or(u32::MAX);
            let from = u32::try_from(start).unwrap_or(u32::MAX);
            if len > 0 {
                content.remove_range(&mut txn, from, len);
            }
            if let Some(inserted) = text.get(start..new_end).filter(|s| !s.is_empty()) {
                content.insert(&mut txn, from, inserted);
            }
        }
        let update = self.doc.transact().encode_diff_v1(&before);
        self.send(Message::Sync(SyncMessage::Update(update))).await?;
        // The server answers in order: its reply to this sync step 1 comes
        // after it applied the update.
        self.sync().await
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
        let message = Message::decode_v1(&bytes).context("not a y-protocols message")?;
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

/// Where `old` and `new` differ, in bytes, on character boundaries: the
/// length of the prefix they share, and where the suffix they share starts
/// in each.
fn differing(old: &str, new: &str) -> (usize, usize, usize) {
    let prefix: usize =
        old.chars().zip(new.chars()).take_while(|(a, b)| a == b).map(|(a, _)| a.len_utf8()).sum();
    let suffix: usize = old[prefix..]
        .chars()
        .rev()
        .zip(new[prefix..].chars().rev())
        .take_while(|(a, b)| a == b)
        .map(|(a, _)| a.len_utf8())
        .sum();
    (prefix, old.len() - suffix, new.len() - suffix)
}

#[cfg(test)]
mod tests {
    use super::differing;

    #[test]
    fn only_what_differs_is_replaced() {
        assert_eq!(differing("hello world", "hello there world"), (6, 6, 12));
        assert_eq!(differing("abc", "abc"), (3, 3, 3));
        assert_eq!(differing("", "new"), (0, 0, 3));
        assert_eq!(differing("old", ""), (0, 3, 0));
        assert_eq!(differing("aaa", "aa"), (2, 3, 2));
        // Character boundaries, never inside a character.
        assert_eq!(differing("héllo", "hallo"), (1, 3, 2));
    }
}
