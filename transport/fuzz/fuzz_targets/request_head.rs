//! Arbitrary bytes as an HTTP request head: see
//! `chat_transport::fuzzing::request_head`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| chat_transport::fuzzing::request_head(data));
