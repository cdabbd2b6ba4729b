//! Every input in the fuzz corpus (the seeds, and any crash the fuzzer ever
//! found, kept as a regression) through the fuzz target's check, on the
//! stable toolchain.

use std::path::Path;

/// Runs `check` on every input of the target `name`'s corpus; how many.
fn corpus(name: &str, check: fn(&[u8])) -> usize {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus").join(name);
    let mut inputs = 0;
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap_or_else(|e| panic!("{e}")).path();
        let data = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        check(&data);
        inputs += 1;
    }
    inputs
}

#[test]
fn every_corpus_input_passes_the_fuzz_check() {
    let inputs = corpus("decode", chat_protocol::fuzzing::decode);
    assert!(inputs >= 8, "the seed corpus is there ({inputs} inputs)");
}

#[test]
fn every_socketio_corpus_input_passes_the_fuzz_check() {
    let inputs = corpus("socketio", chat_protocol::fuzzing::socketio);
    assert!(inputs >= 8, "the seed corpus is there ({inputs} inputs)");
}
