//! Counts the WebSocket frames a client sends as their bytes are read,
//! before tungstenite assembles them into messages.
//!
//! A limiter that counts messages misses what never becomes one: an endless
//! run of empty continuation frames costs the server a frame parse each and
//! never completes a message. Counting frames here lets the driver charge a
//! message for every frame it took, and caps how many frames one message
//! may be split into.

use std::fmt;

/// A message split into more frames than allowed; the connection must end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TooManyFragments {
    /// The most frames one message may take.
    pub max: u32,
}

impl fmt::Display for TooManyFragments {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "a message was split into more than {} frames", self.max)
    }
}

impl std::error::Error for TooManyFragments {}

/// Follows the frame headers in a client's byte stream.
#[derive(Debug)]
pub(crate) struct FrameCounter {
    /// The header being read (at most 14 bytes: 2, 8 of length, 4 of mask).
    header: [u8; 14],
    have: usize,
    /// Payload bytes of the current frame still to skip.
    skip: u64,
    /// Frames read beyond one per message, not yet charged: the parts of
    /// split messages after their first.
    extra: u32,
    /// Data frames of the message in progress.
    fragments: u32,
    max_fragments: u32,
    /// The stream stopped making sense as frames; tungstenite will say why.
    lost: bool,
}

impl FrameCounter {
    pub(crate) fn new(max_fragments: u32) -> Self {
        Self {
            header: [0; 14],
            have: 0,
            skip: 0,
            extra: 0,
            fragments: 0,
            max_fragments,
            lost: false,
        }
    }

    /// What to charge the next message tungstenite hands out: its own
    /// frame, and every extra part read so far. Over all messages that is
    /// every frame read, whichever message a read-ahead part belongs to.
    pub(crate) fn take(&mut self) -> u32 {
        1 + std::mem::take(&mut self.extra)
    }

    /// Follows `bytes`, the next ones read from the client.
    ///
    /// # Errors
    /// A message is split into more frames than allowed.
    pub(crate) fn scan(&mut self, mut bytes: &[u8]) -> Result<(), TooManyFragments> {
        while !bytes.is_empty() && !self.lost {
            if self.skip > 0 {
                let n = usize::try_from(self.skip).unwrap_or(usize::MAX).min(bytes.len());
                bytes = bytes.get(n..).unwrap_or_default();
                self.skip -= n as u64;
                continue;
            }
            let needed = self.header_len();
            let take = (needed - self.have).min(bytes.len());
            if let (Some(to), Some(from)) =
                (self.header.get_mut(self.have..self.have + take), bytes.get(..take))
            {
                to.copy_from_slice(from);
            }
            self.have += take;
            bytes = bytes.get(take..).unwrap_or_default();
            // The length field can say the header is longer than assumed.
            if self.have == self.header_len() {
                self.frame_done()?;
            }
        }
        Ok(())
    }

    /// The length of the header being read, as far as it is known.
    fn header_len(&self) -> usize {
        if self.have < 2 {
            return 2;
        }
        let second = self.header.get(1).copied().unwrap_or(0);
        let extended = match second & 0x7f {
            126 => 2,
            127 => 8,
            _ => 0,
        };
        let mask = if second & 0x80 != 0 { 4 } else { 0 };
        2 + extended + mask
    }

    fn byte(&self, at: usize) -> u8 {
        self.header.get(at).copied().unwrap_or(0)
    }

    fn frame_done(&mut self) -> Result<(), TooManyFragments> {
        let (first, second) = (self.byte(0), self.byte(1));
        let len = match second & 0x7f {
            126 => u64::from(u16::from_be_bytes([self.byte(2), self.byte(3)])),
            127 => {
                let mut be = [0u8; 8];
                be.copy_from_slice(self.header.get(2..10).unwrap_or(&[0; 8]));
                u64::from_be_bytes(be)
            }
            short => u64::from(short),
        };
        self.have = 0;
        self.skip = len;
        let (fin, opcode) = (first & 0x80 != 0, first & 0x0f);
        match opcode {
            // Continuation, text, binary: parts of a message.
            0..=2 => {
                self.fragments += 1;
                if self.fragments > self.max_fragments {
                    return Err(TooManyFragments { max: self.max_fragments });
                }
                if self.fragments > 1 {
                    self.extra = self.extra.saturating_add(1);
                }
                if fin {
                    self.fragments = 0;
                }
            }
            // Control frames stand alone, each a message of its own.
            8..=10 => {}
            _ => self.lost = true,
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(first: u8, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        crate::write_frame(first, payload, Some([1, 2, 3, 4]), &mut out);
        out
    }

    #[test]
    fn counts_frames_of_every_size_whatever_the_reads() {
        let mut stream = Vec::new();
        stream.extend(frame(0x81, b"hello"));
        stream.extend(frame(0x82, &[7; 300]));
        stream.extend(frame(0x89, b"ping"));
        stream.extend(frame(0x81, &vec![b'x'; 70_000]));
        stream.extend(frame(0x01, b"in "));
        stream.extend(frame(0x00, b"three "));
        stream.extend(frame(0x80, b"parts"));
        for chunk in [1, 3, 7, 1000, stream.len()] {
            let mut counter = FrameCounter::new(4);
            for part in stream.chunks(chunk) {
                counter.scan(part).unwrap();
            }
            let taken: u32 = (0..5).map(|_| counter.take()).sum();
            assert_eq!(taken, 7, "every frame charged, read {chunk} bytes at a time");
        }
    }

    #[test]
    fn a_message_in_too_many_frames_is_refused() {
        let mut counter = FrameCounter::new(3);
        counter.scan(&frame(0x01, b"a")).unwrap();
        counter.scan(&frame(0x00, b"")).unwrap();
        counter.scan(&frame(0x89, b"")).unwrap();
        counter.scan(&frame(0x80, b"")).unwrap();
        assert_eq!(counter.take() + counter.take(), 4, "the ping and the message in three parts");
        counter.scan(&frame(0x01, b"a")).unwrap();
        counter.scan(&frame(0x00, b"")).unwrap();
        counter.scan(&frame(0x00, b"")).unwrap();
        assert_eq!(counter.scan(&frame(0x00, b"")), Err(TooManyFragments { max: 3 }));
    }
}
