//! The wire format: every frame round-trips, every example in
//! docs/protocol.md parses, and the fuzz corpus passes. One test binary.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod doc;
mod frames;
mod fuzz_corpus;
