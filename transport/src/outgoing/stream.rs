//! The stream tungstenite reads and writes: reads come from the socket (or
//! the TLS session) and are scanned for the frame counter; writes join the
//! [`Outgoing`] queue so they keep their place among the frames fanned out
//! to the connection.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::tls::Read;
use super::{Flushed, Outgoing};
use crate::frames::FrameCounter;

/// tungstenite's view of an upgraded connection.
#[derive(Debug)]
pub struct SharedStream {
    outgoing: Arc<Outgoing>,
    /// Follows the frames read, for the driver's rate limit.
    frames: FrameCounter,
}

impl SharedStream {
    /// The stream of an upgraded connection; `read` are the bytes read
    /// past the request head, which tungstenite gets first.
    pub(crate) fn new(
        outgoing: Arc<Outgoing>,
        read: &[u8],
        max_fragments: u32,
    ) -> io::Result<Self> {
        let mut frames = FrameCounter::new(max_fragments);
        frames.scan(read).map_err(|err| io::Error::new(io::ErrorKind::InvalidData, err))?;
        Ok(Self { outgoing, frames })
    }

    /// The shared write side.
    pub fn outgoing(&self) -> &Arc<Outgoing> {
        &self.outgoing
    }

    /// How many WebSocket frames the next message tungstenite hands out
    /// took: each part of a split message counts. Call once per message.
    pub fn take_frames(&mut self) -> u32 {
        self.frames.take()
    }

    /// Reads what the socket (or the TLS session) has.
    fn read_plain(&self, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let outgoing = &self.outgoing;
        let io = &outgoing.io;
        loop {
            {
                let mut guard = outgoing.lock();
                let state = &mut *guard;
                if let Some(tls) = state.tls.as_mut() {
                    let was_closed = state.queue.closed().is_some();
                    let stalled = &mut state.stalled;
                    let read = tls.read(&mut state.queue, io, buf, |flushed| {
                        outgoing.tell_task(stalled, was_closed, flushed);
                    });
                    match read {
                        Read::Done(Ok(read)) => {
                            if read > 0 {
                                outgoing.heard();
                            }
                            return Poll::Ready(Ok(()));
                        }
                        Read::Done(Err(err)) => return Poll::Ready(Err(err)),
                        // Nothing to read yet: wait for the socket below.
                        Read::Pending => {}
                    }
                } else {
                    drop(guard);
                    match io.try_read(buf.initialize_unfilled()) {
                        Ok(read) => {
                            if read > 0 {
                                outgoing.heard();
                            }
                            buf.advance(read);
                            return Poll::Ready(Ok(()));
                        }
                        Err(err) if err.kind() == io::ErrorKind::WouldBlock => {}
                        Err(err) => return Poll::Ready(Err(err)),
                    }
                }
            }
            // Readiness was stale and is now cleared: wait again.
            ready!(io.poll_read_ready(cx))?;
        }
    }
}

impl AsyncRead for SharedStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let read = ready!(this.read_plain(cx, buf));
        if read.is_ok() {
            let fresh = buf.filled().get(before..).unwrap_or_default();
            if let Err(err) = this.frames.scan(fresh) {
                return Poll::Ready(Err(io::Error::new(io::ErrorKind::InvalidData, err)));
            }
        }
        Poll::Ready(read)
    }
}

impl AsyncWrite for SharedStream {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.outgoing.lock().queue.push_raw(buf)?;
        // Written on flush, which tungstenite always asks for.
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let outgoing = &self.outgoing;
        loop {
            let flushed = {
                let mut state = outgoing.lock();
                outgoing.write_queued(&mut state)
            };
            match flushed {
                Flushed::Done => return Poll::Ready(Ok(())),
                Flushed::Closed => return Poll::Ready(Err(outgoing.closed_error())),
                Flushed::Stalled => ready!(outgoing.io.poll_write_ready(cx))?,
            }
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // The socket itself closes when the last holder of it lets go.
        self.poll_flush(cx)
    }
}
