//! Encoding and decoding frames: the per-frame costs on the hot path.
//! Run with `cargo bench -p chat-protocol`.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::hint::black_box;

use chat_protocol::{Message, ServerFrame, decode_client};
use criterion::{Criterion, criterion_group, criterion_main};

fn codec(c: &mut Criterion) {
    let say = r#"{"type":"say","room":"lobby","text":"hello everyone, how is it going?","id":"a1b2c3d4-17"}"#;
    c.bench_function("decode say", |b| b.iter(|| decode_client(black_box(say)).unwrap()));
    let message = ServerFrame::Message(Message {
        edit: None,
        delete: None,
        edited: false,
        deleted: false,
        room: "lobby".into(),
        seq: 12345,
        ts: 1_732_442_401_234,
        from: "alice".into(),
        text: "hello everyone, how is it going?".into(),
        id: Some("a1b2c3d4-17".into()),
        action: false,
        attachment: None,
    });
    c.bench_function("encode message", |b| b.iter(|| black_box(&message).encode()));
}

criterion_group!(benches, codec);
criterion_main!(benches);
