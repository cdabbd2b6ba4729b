//! A connection's TLS session, pumped without waiting, both ways:
//! plaintext frames in and ciphertext out to the socket; ciphertext in from
//! the socket and plaintext out to tungstenite. What would block is
//! reported, and the caller waits for the socket.

use std::io::{self, IoSlice};

use tokio::io::ReadBuf;
use tokio::net::TcpStream;

use super::Flushed;
use super::queue::{MAX_SLICES, Queue};

/// The rustls session of one connection.
#[derive(Debug)]
pub(super) struct Tls(rustls::ServerConnection);

/// What a read from the session came to.
pub(super) enum Read {
    /// Plaintext (this many bytes, 0 at the end) or an error.
    Done(io::Result<usize>),
    /// Nothing now: wait for the socket.
    Pending,
}

impl Tls {
    pub(super) fn new(session: rustls::ServerConnection) -> Self {
        Self(session)
    }

    /// Writes `queue` through the session: plaintext in as far as its
    /// buffer takes it, ciphertext out to `io`, until both are empty or the
    /// socket is full. A failed write closes the queue.
    pub(super) fn write(&mut self, queue: &mut Queue, io: &TcpStream) -> Flushed {
        loop {
            match self.flush(queue, io) {
                Flushed::Done => {}
                other => return other,
            }
            if queue.is_empty() {
                return Flushed::Done;
            }
            let mut slices = [IoSlice::new(&[]); MAX_SLICES];
            let count = queue.slices(&mut slices);
            let written = io::Write::write_vectored(
                &mut self.0.writer(),
                slices.get(..count).unwrap_or_default(),
            );
            match written {
                Ok(written) if written > 0 => queue.advance(written),
                // The session's buffer is full: flush it first.
                Ok(_) => {}
                Err(err) => return fail(queue, err.kind()),
            }
        }
    }

    /// Writes what the session has encrypted to `io`.
    pub(super) fn flush(&mut self, queue: &mut Queue, io: &TcpStream) -> Flushed {
        while self.0.wants_write() {
            match self.0.write_tls(&mut TryIo(io)) {
                Ok(0) => return fail(queue, io::ErrorKind::WriteZero),
                Ok(_) => {}
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => return Flushed::Stalled,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) => return fail(queue, err.kind()),
            }
        }
        Flushed::Done
    }

    /// Reads plaintext into `buf`, feeding the session from `io` as needed.
    /// Whatever the session has to say meanwhile (an alert, a ticket) is
    /// flushed, and `flushed` told how that went.
    pub(super) fn read(
        &mut self,
        queue: &mut Queue,
        io: &TcpStream,
        buf: &mut ReadBuf<'_>,
        mut flushed: impl FnMut(Flushed),
    ) -> Read {
        loop {
            match io::Read::read(&mut self.0.reader(), buf.initialize_unfilled()) {
                Ok(read) => {
                    buf.advance(read);
                    return Read::Done(Ok(read));
                }
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => {}
                // The peer closed without close_notify: an end all the same.
                Err(err) if err.kind() == io::ErrorKind::UnexpectedEof => return Read::Done(Ok(0)),
                Err(err) => return Read::Done(Err(err)),
            }
            match self.0.read_tls(&mut TryIo(io)) {
                Ok(0) => return Read::Done(Ok(0)),
                Ok(_) => {
                    let processed = self.0.process_new_packets();
                    flushed(self.flush(queue, io));
                    if let Err(err) = processed {
                        return Read::Done(Err(io::Error::new(io::ErrorKind::InvalidData, err)));
                    }
                }
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => return Read::Pending,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) => return Read::Done(Err(err)),
            }
        }
    }
}

fn fail(queue: &mut Queue, kind: io::ErrorKind) -> Flushed {
    queue.close(kind);
    Flushed::Closed
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
