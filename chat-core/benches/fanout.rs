//! What one fan-out costs inside chat-core, without any IO: a `say` in a
//! room of N members, and the outputs drained. Guards against regressions;
//! run with `cargo bench -p chat-core`.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::hint::black_box;
use std::time::Duration;

use chat_core::{Chat, ChatConfig, Command, Output, SessionToken, Source, Timestamp};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};

fn room_of(members: usize) -> (Chat, chat_core::MemberId) {
    let config = ChatConfig {
        messages_per_sec: u32::MAX / 1000,
        messages_burst: u32::MAX / 1000,
        ..ChatConfig::default()
    };
    let mut chat = Chat::new(config);
    let now = Timestamp::from_unix_millis(1_700_000_000_000);
    let mut first = None;
    for i in 0..members {
        let token = SessionToken::parse(&format!("t{i}")).unwrap();
        let m = chat.handle_connect(now, token, Source::new(i as u64));
        chat.handle_command(
            now,
            m,
            None,
            Command::Hello { nick: Some(format!("n{i}")), session: None, identity: None },
        );
        chat.handle_command(now, m, None, Command::Join { room: "big".into(), after: None });
        while let Some(output) = chat.poll_output() {
            // A new room: storage has never heard of it.
            if let Output::Load(room) = output {
                chat.handle_loaded(now, &room, None);
            }
        }
        first.get_or_insert(m);
    }
    (chat, first.unwrap())
}

fn fanout(c: &mut Criterion) {
    let mut group = c.benchmark_group("say");
    group.measurement_time(Duration::from_secs(3));
    for members in [10, 1000] {
        let (mut chat, sender) = room_of(members);
        let mut now = 1_700_000_000_000u64;
        group.throughput(Throughput::Elements(members as u64));
        group.bench_with_input(BenchmarkId::new("room", members), &members, |b, _| {
            b.iter(|| {
                now += 1;
                let say = Command::Say {
                    room: "big".into(),
                    text: "hello world".into(),
                    action: false,
                    attachment: None,
                };
                chat.handle_command(Timestamp::from_unix_millis(now), sender, None, say);
                while let Some(output) = chat.poll_output() {
                    black_box(output);
                }
            });
        });
    }
    group.finish();
}

criterion_group!(benches, fanout);
criterion_main!(benches);
