//! The checks the fuzz targets run (`protocol/fuzz`), here so that the
//! seed corpus and every crash ever found also run as plain tests
//! (`tests/fuzz_corpus.rs`) on a stable toolchain.

use crate::{ServerFrame, decode_client, encode_client};

/// Decodes arbitrary bytes as a client frame and as a server frame. Panics
/// (the fuzzer's finding) if decoding panics, if a decoded client frame does
/// not survive its own encoding unchanged, or if a refusal has no message.
pub fn decode(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match decode_client(text) {
        Ok(decoded) => {
            let again = decode_client(&encode_client(&decoded));
            assert_eq!(again.as_ref(), Ok(&decoded), "a decoded frame must round-trip");
        }
        Err(error) => assert!(!error.message.is_empty(), "a refusal says why"),
    }
    if let Ok(frame) = ServerFrame::decode(text) {
        let again = ServerFrame::decode(&frame.encode());
        assert!(again.is_ok_and(|again| again == frame), "a server frame must round-trip");
    }
}

/// Decodes arbitrary bytes as a Socket.IO packet. Panics if decoding
/// panics or if what decodes does not decode the same from its own
/// encoding.
pub fn socketio(data: &[u8]) {
    use crate::socketio::Packet;
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(packet) = Packet::decode(text) {
        let again = Packet::decode(&packet.encode());
        assert_eq!(again.as_ref(), Ok(&packet), "a packet must round-trip");
    }
}
