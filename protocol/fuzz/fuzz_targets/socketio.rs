//! Arbitrary bytes as Engine.IO payloads and Socket.IO packets: see
//! `chat_protocol::fuzzing::socketio`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| chat_protocol::fuzzing::socketio(data));
