//! Every example in docs/protocol.md parses with this crate, and every frame
//! type has an example, so the spec and the code cannot drift.

use std::collections::BTreeSet;

use chat_protocol::{ClientFrame, ServerFrame, decode_client};
use serde_json::Value;

const SPEC: &str = include_str!("../../../docs/protocol.md");

/// The fenced blocks whose info string is `tag`.
fn blocks(tag: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in SPEC.lines() {
        match &mut current {
            None if line.trim() == format!("```{tag}") => current = Some(String::new()),
            None => {}
            Some(_) if line.trim() == "```" => blocks.extend(current.take()),
            Some(block) => {
                block.push_str(line);
                block.push('\n');
            }
        }
    }
    assert!(current.is_none(), "unterminated block");
    blocks
}

fn kind(text: &str) -> String {
    let value: Value = serde_json::from_str(text).unwrap_or_else(|e| panic!("{text}: {e}"));
    value["type"].as_str().unwrap_or_else(|| panic!("no type: {text}")).to_owned()
}

#[test]
fn client_examples_decode_and_cover_every_type() {
    let examples = blocks("json client");
    let mut seen = BTreeSet::new();
    for text in &examples {
        let decoded = decode_client(text).unwrap_or_else(|e| panic!("{text}: {e}"));
        // What the example says survives our own encoding unchanged.
        let again = decode_client(&chat_protocol::encode_client(&decoded));
        assert_eq!(again.as_ref(), Ok(&decoded), "{text}");
        seen.insert(kind(text));
    }
    let all: BTreeSet<String> = ClientFrame::TYPES.iter().map(|t| t.to_string()).collect();
    assert_eq!(seen, all, "every client frame has an example");
}

#[test]
fn server_examples_decode_and_cover_every_type() {
    let examples = blocks("json server");
    let mut seen = BTreeSet::new();
    for text in &examples {
        let frame = ServerFrame::decode(text).unwrap_or_else(|e| panic!("{text}: {e}"));
        // Encoding gives back exactly the fields of the example.
        let example: Value = serde_json::from_str(text).unwrap_or_else(|e| panic!("{text}: {e}"));
        let encoded: Value =
            serde_json::from_str(&frame.encode()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(encoded, example, "the example is exactly what the server sends");
        seen.insert(kind(text));
    }
    let all: BTreeSet<String> = ServerFrame::TYPES.iter().map(|t| t.to_string()).collect();
    assert_eq!(seen, all, "every server frame has an example");
}

#[test]
fn every_error_code_is_documented() {
    for code in [
        "bad_json",
        "bad_frame",
        "unknown_type",
        "hello_required",
        "invalid_nick",
        "nick_taken",
        "invalid_room",
        "not_in_room",
        "no_such_nick",
        "too_large",
        "rate_limited",
        "unavailable",
        "limit_reached",
        "unauthorized",
        "forbidden",
        "no_such_doc",
        "no_such_version",
        "invalid_doc",
    ] {
        assert!(SPEC.contains(&format!("| `{code}` |")), "{code} missing from the error table");
    }
    for close in [
        "1000", "1001", "1008", "1009", "1012", "4008", "4009", "4010", "4011", "4400", "4403",
        "4404", "4413", "1013",
    ] {
        assert!(SPEC.contains(&format!("| {close} |")), "close code {close} missing");
    }
}
