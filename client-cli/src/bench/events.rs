//! The bench over the HTTP fallback (`--transport http`): an event stream
//! read as frames (what the reader loop already knows: text, ping, close),
//! and posts for what a connection sends.

use std::net::IpAddr;

use anyhow::{Context, bail};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

use crate::rawws::{CLOSE, PING, ReadBuffer, TEXT};

/// The stream's first event, which names it: not a frame the readers see.
pub(super) const STREAM: u8 = 0xf0;

/// Events read from a stream, handed out as (opcode, payload) frames.
pub(super) struct EventBuffer {
    read: ReadBuffer,
    /// A close event's code, as a close frame carries it.
    code: [u8; 2],
}

impl EventBuffer {
    pub(super) fn new(capacity: usize, initial: &[u8]) -> Self {
        Self { read: ReadBuffer::new(capacity, initial), code: [0; 2] }
    }

    /// The next whole event: a message as `TEXT`, `ping` as `PING`,
    /// `close` as `CLOSE` with the code, the name as `STREAM`; others
    /// (comments) skipped.
    pub(super) fn next_frame(&mut self) -> anyhow::Result<Option<(u8, &[u8])>> {
        loop {
            let unread = self.read.unread();
            let Some(at) = unread.windows(2).position(|w| w == b"\n\n") else {
                // An event larger than what is free: make room.
                let room = unread.len() * 2;
                self.read.make_room(room);
                return Ok(None);
            };
            let (name, data) = parse(&unread[..at]);
            let opcode = match (name, &data) {
                // An event with no data is not one (a comment, a heartbeat).
                (b"message", None) => None,
                (b"message", Some(_)) => Some(TEXT),
                (b"ping", _) => Some(PING),
                (b"stream", _) => Some(STREAM),
                (b"close", _) => Some(CLOSE),
                _ => None,
            };
            let data = data.unwrap_or(at..at);
            let Some(opcode) = opcode else {
                self.read.take(at + 2);
                continue;
            };
            if opcode == CLOSE {
                let text = std::str::from_utf8(&unread[data]).unwrap_or("");
                let code = text.split(' ').next().and_then(|c| c.parse::<u16>().ok());
                self.code = code.unwrap_or(1005).to_be_bytes();
                self.read.take(at + 2);
                return Ok(Some((CLOSE, &self.code)));
            }
            return Ok(Some((opcode, &self.read.take(at + 2)[data])));
        }
    }

    /// Reads more from `stream`; `Ok(0)` at its end.
    pub(super) async fn fill(
        &mut self,
        stream: &mut (impl AsyncReadExt + Unpin),
    ) -> std::io::Result<usize> {
        self.read.fill(stream).await
    }
}

/// An event's name (`message` unless it says) and where its first data
/// line's value is in it.
fn parse(event: &[u8]) -> (&[u8], Option<std::ops::Range<usize>>) {
    let mut name: &[u8] = b"message";
    let mut data = None;
    let mut at = 0;
    for line in event.split(|&b| b == b'\n') {
        if let Some(value) = line.strip_prefix(b"event: ") {
            name = value;
        } else if line.starts_with(b"data: ") && data.is_none() {
            data = Some(at + 6..at + line.len());
        }
        at += line.len() + 1;
    }
    (name, data)
}

/// Opens an event stream on `stream` (`GET path`): the bytes read past the
/// answer's head.
pub(super) async fn open(
    stream: &mut TcpStream,
    host: &str,
    path: &str,
) -> anyhow::Result<Vec<u8>> {
    let request =
        format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nAccept: text/event-stream\r\n\r\n");
    stream.write_all(request.as_bytes()).await?;
    let (status, rest) = read_head(stream).await?;
    if status != 200 {
        bail!("the event stream was refused: {status}");
    }
    Ok(rest)
}

/// Reads an answer's head: its status and what came after it.
async fn read_head(stream: &mut TcpStream) -> anyhow::Result<(u16, Vec<u8>)> {
    let mut head = Vec::with_capacity(512);
    let mut chunk = [0u8; 1024];
    loop {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            bail!("closed before answering");
        }
        head.extend_from_slice(&chunk[..n]);
        if let Some(at) = head.windows(4).position(|w| w == b"\r\n\r\n") {
            let line = String::from_utf8_lossy(&head[..at]).into_owned();
            let status =
                line.split(' ').nth(1).and_then(|s| s.parse().ok()).context("a bad answer")?;
            return Ok((status, head.split_off(at + 4)));
        }
    }
}

/// Posts for one stream, one at a time.
pub(super) struct Poster {
    pub host: String,
    pub port: u16,
    pub path: String,
    pub source: Option<IpAddr>,
    pub name: String,
    /// The next post's `seq`; held while a post is under way.
    pub seq: tokio::sync::Mutex<u64>,
}

impl Poster {
    /// Posts `body` (lines of text), with a goodbye if `close`.
    pub(super) async fn post(&self, body: &[u8], close: Option<u16>) -> anyhow::Result<()> {
        let mut seq = self.seq.lock().await;
        let mut stream = match self.source {
            None => TcpStream::connect((self.host.as_str(), self.port)).await?,
            Some(local) => {
                let socket =
                    if local.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
                socket.bind(std::net::SocketAddr::new(local, 0))?;
                let remote = tokio::net::lookup_host((self.host.as_str(), self.port))
                    .await?
                    .find(|remote| remote.is_ipv4() == local.is_ipv4())
                    .context("no server address of the source's family")?;
                socket.connect(remote).await?
            }
        };
        stream.set_nodelay(true)?;
        let close = close.map(|code| format!("&close={code}")).unwrap_or_default();
        let head = format!(
            "POST {}?stream={}&seq={}{close} HTTP/1.1\r\nHost: {}:{}\r\nContent-Type: text/plain\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n",
            self.path,
            self.name,
            *seq,
            self.host,
            self.port,
            body.len()
        );
        let mut request = head.into_bytes();
        request.extend_from_slice(body);
        stream.write_all(&request).await?;
        let (status, _) = read_head(&mut stream).await?;
        if status != 200 {
            bail!("a post was refused: {status}");
        }
        *seq += 1;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_come_out_as_the_frames_the_readers_know() {
        let stream = b"event: stream\ndata: s1\n\ndata: {\"a\":1}\n\n: comment\n\n\
                       event: ping\ndata: \n\nevent: close\ndata: 4008 too slow\n\n";
        let mut events = EventBuffer::new(8, &stream[..]);
        let mut got = Vec::new();
        while let Some((opcode, payload)) = events.next_frame().unwrap() {
            got.push((opcode, payload.to_vec()));
        }
        assert_eq!(
            got,
            [
                (STREAM, b"s1".to_vec()),
                (TEXT, b"{\"a\":1}".to_vec()),
                (PING, Vec::new()),
                (CLOSE, 4008u16.to_be_bytes().to_vec())
            ]
        );
    }
}
