//! Arbitrary bytes as Engine.IO long-polling payloads: see
//! `chat_transport::fuzzing::engineio`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| chat_transport::fuzzing::engineio(data));
