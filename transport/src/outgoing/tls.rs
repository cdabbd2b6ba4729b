//! TLS pumping for the shared write side, both ways: plaintext frames into
//! the session and ciphertext out to the socket; ciphertext in from the
//! socket and plaintext out to tungstenite. Never waits: what would block
//! is reported, and the caller waits for the socket.

use std::io::{self, IoSlice};

use tokio::io::ReadBuf;
use tokio::net::TcpStream;

use super::queue::MAX_SLICES;
use super::{Flushed, Outgoing, State};

impl Outgoing {
    /// Writes the queue through the TLS session: plaintext into the session
    /// as far as its buffer takes it, ciphertext out to the socket, until
    /// both are empty or the socket is full.
    pub(super) fn write_queued_tls(&self, state: &mut State) -> Flushed {
        loop {
            match self.flush_tls(state) {
                Flushed::Done => {}
                other => return other,
            }
            if state.queue.is_empty() {
                return Flushed::Done;
            }
            let mut slices = [IoSlice::new(&[]); MAX_SLICES];
            let count = state.queue.slices(&mut slices);
            let Some(tls) = state.tls.as_mut() else {
                return Flushed::Done;
            };
            match io::Write::write_vectored(
                &mut tls.writer(),
                slices.get(..count).unwrap_or_default(),
            ) {
                Ok(written) if written > 0 => state.queue.advance(written),
                // The session's buffer is full: flush it first.
                Ok(_) => {}
                Err(err) => return state.fail(err.kind()),
            }
        }
    }

    /// Writes what the TLS session has encrypted to the socket.
    fn flush_tls(&self, state: &mut State) -> Flushed {
        let Some(tls) = state.tls.as_mut() else {
            return Flushed::Done;
        };
        while tls.wants_write() {
            match tls.write_tls(&mut TryIo(&self.io)) {
                Ok(0) => return state.fail(io::ErrorKind::WriteZero),
                Ok(_) => {}
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => return Flushed::Stalled,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) => return state.fail(err.kind()),
            }
        }
        Flushed::Done
    }

    /// Reads plaintext out of the TLS session, feeding it from the socket
    /// as needed. `None` when the socket has nothing now.
    pub(super) fn read_tls(
        &self,
        state: &mut State,
        buf: &mut ReadBuf<'_>,
    ) -> Option<io::Result<()>> {
        loop {
            let tls = state.tls.as_mut()?;
            match io::Read::read(&mut tls.reader(), buf.initialize_unfilled()) {
                Ok(read) => {
                    if read > 0 {
                        self.heard();
                    }
                    buf.advance(read);
                    return Some(Ok(()));
                }
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => {}
                // The peer closed without close_notify: an end all the same.
                Err(err) if err.kind() == io::ErrorKind::UnexpectedEof => return Some(Ok(())),
                Err(err) => return Some(Err(err)),
            }
            match tls.read_tls(&mut TryIo(&self.io)) {
                Ok(0) => return Some(Ok(())),
                Ok(_) => {
                    let processed = tls.process_new_packets();
                    // Whatever the session has to say (an alert, a ticket)
                    // goes out now, or with the connection task's next write.
                    let was_closed = state.queue.closed().is_some();
                    let flushed = self.flush_tls(state);
                    self.tell_task(state, was_closed, flushed);
                    if let Err(err) = processed {
                        return Some(Err(io::Error::new(io::ErrorKind::InvalidData, err)));
                    }
                }
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => return None,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) => return Some(Err(err)),
            }
        }
    }
}

/// The socket as blocking-style `Read` and `Write` that never block: what
/// would block is `WouldBlock`, for rustls's `read_tls` and `write_tls`.
struct TryIo<'a>(&'a TcpStream);

impl io::Read for TryIo<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.try_read(buf)
    }
}

impl io::Write for TryIo<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.try_write(buf)
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        self.0.try_write_vectored(bufs)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
