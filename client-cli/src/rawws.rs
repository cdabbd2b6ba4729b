//! A minimal client side of RFC 6455 for `chat bench`: the handshake and
//! frames read straight out of one reused buffer, so the load generator
//! spends no allocation per received frame and does not become the
//! bottleneck it is measuring. Only what a chat server sends is handled:
//! unfragmented, unmasked frames.

use anyhow::{Context, bail};
use base64::Engine;
use chat_transport::tungstenite::handshake::derive_accept_key;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Frame opcodes the bench cares about.
pub const TEXT: u8 = 0x1;
pub const CLOSE: u8 = 0x8;
pub const PING: u8 = 0x9;
pub const PONG: u8 = 0xa;

/// Incoming bytes read into one reused buffer, and where the unread part
/// starts and ends: what frames (and the fallback's events) are read from.
#[derive(Debug)]
pub struct ReadBuffer {
    buf: Vec<u8>,
    start: usize,
    end: usize,
}

impl ReadBuffer {
    pub fn new(capacity: usize, initial: &[u8]) -> Self {
        let mut buf = vec![0; capacity.max(initial.len() * 2).max(1024)];
        buf[..initial.len()].copy_from_slice(initial);
        Self { buf, start: 0, end: initial.len() }
    }

    /// What was read and not taken yet.
    pub fn unread(&self) -> &[u8] {
        &self.buf[self.start..self.end]
    }

    /// Takes the first `n` unread bytes.
    pub fn take(&mut self, n: usize) -> &[u8] {
        let taken = self.start..(self.start + n).min(self.end);
        self.start = taken.end;
        &self.buf[taken]
    }

    /// Makes room for `len` unread bytes in all (a frame larger than
    /// what is free).
    pub fn make_room(&mut self, len: usize) {
        if self.buf.len() - self.start < len {
            self.compact();
            if self.buf.len() < len {
                self.buf.resize(len, 0);
            }
        }
    }

    /// Reads more from `stream`; `Ok(0)` at its end.
    pub async fn fill(
        &mut self,
        stream: &mut (impl AsyncReadExt + Unpin),
    ) -> std::io::Result<usize> {
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        } else if self.end == self.buf.len() {
            self.compact();
        }
        let n = stream.read(&mut self.buf[self.end..]).await?;
        self.end += n;
        Ok(n)
    }

    fn compact(&mut self) {
        self.buf.copy_within(self.start..self.end, 0);
        self.end -= self.start;
        self.start = 0;
    }
}

/// Frames read from a [`ReadBuffer`].
#[derive(Debug)]
pub struct FrameBuffer {
    read: ReadBuffer,
}

impl FrameBuffer {
    pub fn new(capacity: usize, initial: &[u8]) -> Self {
        Self { read: ReadBuffer::new(capacity, initial) }
    }

    /// The next complete frame: its opcode and payload. `Err` on a frame
    /// a server must not send (masked).
    pub fn next_frame(&mut self) -> anyhow::Result<Option<(u8, &[u8])>> {
        let bytes = self.read.unread();
        if bytes.len() < 2 {
            return Ok(None);
        }
        if bytes[1] & 0x80 != 0 {
            bail!("the server sent a masked frame");
        }
        let (header, len) = match bytes[1] & 0x7f {
            126 if bytes.len() >= 4 => (4, u64::from(u16::from_be_bytes([bytes[2], bytes[3]]))),
            127 if bytes.len() >= 10 => {
                let mut len = [0u8; 8];
                len.copy_from_slice(&bytes[2..10]);
                (10, u64::from_be_bytes(len))
            }
            126 | 127 => return Ok(None),
            short => (2, u64::from(short)),
        };
        let len = usize::try_from(len).context("frame too large")?;
        if bytes.len() < header + len {
            self.read.make_room(header + len);
            return Ok(None);
        }
        let opcode = bytes[0] & 0x0f;
        let frame = self.read.take(header + len);
        Ok(Some((opcode, &frame[header..])))
    }

    /// Reads more from `stream`; `Ok(0)` at its end.
    pub async fn fill(
        &mut self,
        stream: &mut (impl AsyncReadExt + Unpin),
    ) -> std::io::Result<usize> {
        self.read.fill(stream).await
    }
}

/// Appends a final client frame to `out`, masked as RFC 6455 requires of
/// clients.
pub fn client_frame(opcode: u8, payload: &[u8], out: &mut Vec<u8>) {
    chat_transport::write_frame(0x80 | opcode, payload, Some(rand::random()), out);
}

/// Performs the upgrade on `stream` to `host`/`path`, offering `protocol`;
/// returns the bytes read past the response head.
pub async fn handshake(
    stream: &mut TcpStream,
    host: &str,
    path: &str,
    protocol: &str,
) -> anyhow::Result<Vec<u8>> {
    let key = base64::engine::general_purpose::STANDARD.encode(rand::random::<[u8; 16]>());
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: {protocol}\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await?;
    let mut head = Vec::with_capacity(512);
    let mut chunk = [0u8; 1024];
    let end = loop {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            bail!("the server closed during the handshake");
        }
        head.extend_from_slice(&chunk[..n]);
        if let Some(end) = head.windows(4).position(|w| w == b"\r\n\r\n") {
            break end + 4;
        }
        if head.len() > 16 * 1024 {
            bail!("handshake answer too large");
        }
    };
    let text = String::from_utf8_lossy(&head[..end]);
    let status = text.lines().next().unwrap_or_default();
    if !status.starts_with("HTTP/1.1 101") {
        bail!("server answered {status}");
    }
    let expected =
        format!("sec-websocket-accept: {}", derive_accept_key(key.as_bytes())).to_ascii_lowercase();
    if !text.lines().any(|line| line.trim().to_ascii_lowercase() == expected) {
        bail!("wrong Sec-WebSocket-Accept");
    }
    Ok(head.split_off(end))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server_frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        chat_transport::write_frame(0x80 | opcode, payload, None, &mut out);
        out
    }

    #[test]
    fn frames_of_every_length_form_parse_in_order() {
        let big = vec![b'x'; 70_000];
        let mut bytes = server_frame(TEXT, b"hi");
        bytes.extend(server_frame(TEXT, &vec![b'y'; 300]));
        bytes.extend(server_frame(TEXT, &big));
        bytes.extend(server_frame(CLOSE, &[0x03, 0xe8]));
        let mut buffer = FrameBuffer::new(64, &bytes);
        let mut seen = Vec::new();
        while let Some((opcode, payload)) = buffer.next_frame().unwrap() {
            seen.push((opcode, payload.len()));
        }
        assert_eq!(seen, vec![(TEXT, 2), (TEXT, 300), (TEXT, 70_000), (CLOSE, 2)]);
    }

    #[test]
    fn a_partial_frame_waits_for_more() {
        let bytes = server_frame(TEXT, b"hello");
        let mut buffer = FrameBuffer::new(64, &bytes[..4]);
        assert_eq!(buffer.next_frame().unwrap(), None);
    }

    #[test]
    fn masked_server_frames_are_refused() {
        let mut buffer = FrameBuffer::new(64, &[0x81, 0x81, 1, 2, 3, 4, b'x']);
        assert!(buffer.next_frame().is_err());
    }
}
