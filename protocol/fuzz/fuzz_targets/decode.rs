//! Arbitrary bytes as client and server frames: see
//! `chat_protocol::fuzzing::decode`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| chat_protocol::fuzzing::decode(data));
