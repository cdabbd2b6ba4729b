//! RFC 6455 frame headers (§5.2), written in one place for everyone who
//! frames by hand: the server's fan-out writes unmasked text frames
//! straight from shared bytes, and the load generator and the hostile-input
//! tests write masked client frames, malformed ones included.

/// The header of one WebSocket frame: its first byte as given, the mask
/// bit and the shortest length form, and the masking key if any.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    bytes: [u8; 14],
    len: u8,
}

impl FrameHeader {
    /// No header at all: for bytes that are already whole frames.
    pub(crate) const NONE: Self = Self { bytes: [0; 14], len: 0 };

    /// The header of a frame whose first byte is `first` (FIN `0x80` |
    /// RSV bits | opcode), carrying `payload` bytes, masked with `mask`
    /// (clients must mask, servers must not).
    pub fn new(first: u8, payload: usize, mask: Option<[u8; 4]>) -> Self {
        let mut bytes = [0u8; 14];
        bytes[0] = first;
        let masked = if mask.is_some() { 0x80 } else { 0 };
        let mut len = match payload {
            0..=125 => {
                bytes[1] = masked | payload as u8;
                2
            }
            126..=0xffff => {
                bytes[1] = masked | 126;
                bytes[2..4].copy_from_slice(&(payload as u16).to_be_bytes());
                4
            }
            _ => {
                bytes[1] = masked | 127;
                bytes[2..10].copy_from_slice(&(payload as u64).to_be_bytes());
                10
            }
        };
        if let Some(mask) = mask
            && let Some(slot) = bytes.get_mut(len..len + 4)
        {
            slot.copy_from_slice(&mask);
            len += 4;
        }
        Self { bytes, len: len as u8 }
    }

    /// Bytes written before a payload as they are (at most 14): the
    /// `data: ` of an event stream.
    pub(crate) fn raw(prefix: &[u8]) -> Self {
        let mut bytes = [0u8; 14];
        let len = prefix.len().min(bytes.len());
        if let (Some(to), Some(from)) = (bytes.get_mut(..len), prefix.get(..len)) {
            to.copy_from_slice(from);
        }
        Self { bytes, len: len as u8 }
    }

    /// The header of a final, unmasked text frame: what a server sends.
    pub fn text(payload: usize) -> Self {
        Self::new(0x81, payload, None)
    }

    /// The header of a server's binary frame of `payload` bytes.
    pub fn binary(payload: usize) -> Self {
        Self::new(0x82, payload, None)
    }

    /// The header's bytes.
    pub fn as_bytes(&self) -> &[u8] {
        self.bytes.get(..usize::from(self.len)).unwrap_or_default()
    }

    /// Its length in bytes.
    pub fn len(&self) -> usize {
        usize::from(self.len)
    }

    /// Whether it is [`FrameHeader::NONE`].
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// Appends a whole frame to `out`: the header for `first`, then `payload`,
/// masked with `mask` if given.
pub fn write_frame(first: u8, payload: &[u8], mask: Option<[u8; 4]>, out: &mut Vec<u8>) {
    out.extend_from_slice(FrameHeader::new(first, payload.len(), mask).as_bytes());
    match mask {
        Some(mask) => out.extend(payload.iter().zip(mask.iter().cycle()).map(|(b, m)| b ^ m)),
        None => out.extend_from_slice(payload),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_use_the_shortest_length_form() {
        assert_eq!(FrameHeader::text(0).as_bytes(), [0x81, 0]);
        assert_eq!(FrameHeader::text(125).as_bytes(), [0x81, 125]);
        assert_eq!(FrameHeader::text(126).as_bytes(), [0x81, 126, 0, 126]);
        assert_eq!(FrameHeader::text(65_535).as_bytes(), [0x81, 126, 0xff, 0xff]);
        assert_eq!(FrameHeader::text(65_536).as_bytes(), [0x81, 127, 0, 0, 0, 0, 0, 1, 0, 0]);
    }

    #[test]
    fn client_frames_carry_the_mask_and_are_masked_with_it() {
        let mask = [1, 2, 3, 4];
        let header = FrameHeader::new(0x82, 300, Some(mask));
        assert_eq!(header.as_bytes(), [0x82, 0x80 | 126, 1, 44, 1, 2, 3, 4]);
        let mut out = Vec::new();
        write_frame(0x81, b"abc", Some(mask), &mut out);
        assert_eq!(out, [0x81, 0x80 | 3, 1, 2, 3, 4, b'a' ^ 1, b'b' ^ 2, b'c' ^ 3]);
        let mut plain = Vec::new();
        write_frame(0x01, b"abc", None, &mut plain);
        assert_eq!(plain, [0x01, 3, b'a', b'b', b'c'], "a first fragment, unmasked");
    }
}
