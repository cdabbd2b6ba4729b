//! The checks the fuzz targets run (`transport/fuzz`), here so that the
//! seed corpus and every crash ever found also run as plain tests
//! (`tests/fuzz_corpus.rs`) on a stable toolchain.

use crate::request::{Parsed, parse};
use crate::{Site, TransportConfig};

/// Parses arbitrary bytes as a request head, whole and cut at every point a
/// reader could see, and runs a parsed request through the upgrade checks.
/// Panics (the fuzzer's finding) if any of it panics, or if a head that
/// parses whole is refused when seen cut short.
pub fn request_head(data: &[u8]) {
    let whole = parse(data);
    if let Parsed::Complete(request, len) = &whole {
        assert!(*len <= data.len());
        let site = Site::new("/ws", Some("chat.v1"));
        let config = TransportConfig {
            allowed_origins: vec!["https://app.example".to_owned()],
            ..TransportConfig::default()
        };
        let _ = crate::accept::check_upgrade(request, &site, &config);
        // A prefix of a good head is incomplete, never refused. (Checked
        // for heads up to 4 KiB: the check is quadratic.)
        for cut in (0..*len).filter(|_| *len <= 4096) {
            assert!(
                matches!(parse(data.get(..cut).unwrap_or_default()), Parsed::Partial),
                "a prefix of a complete head must be partial"
            );
        }
    }
}

/// Decodes arbitrary bytes as an Engine.IO long-polling payload. Panics if
/// decoding panics or if what decodes does not decode the same from its
/// own encoding.
pub fn engineio(data: &[u8]) {
    use crate::engineio::{decode_payload, encode_payload};
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(packets) = decode_payload(text, 64) {
        let again = decode_payload(&encode_payload(&packets), 64);
        assert_eq!(again.as_ref(), Ok(&packets), "a payload must round-trip");
    }
}
