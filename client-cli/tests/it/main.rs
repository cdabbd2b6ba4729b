//! The client against the real `chat-server` binary: line mode and
//! `chat send`/`tail` over pipes (`e2e`), the full-screen client in tmux
//! (`tui`), `chat bench` (`bench`), and a machine running short (`abuse`).
//! One test binary: the processes come from `chat-test-support`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod abuse;
mod bench;
mod e2e;
mod tui;
