//! The server over real sockets: in-process on 127.0.0.1:0 (`support`
//! starts it and speaks to it), and the real binary for what only the
//! binary does (`binary`, `chaos`, through `chat-test-support`). One test
//! binary, so the server is linked once.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod abuse;
mod auth;
mod backup;
mod binary;
mod chaos;
mod chat;
mod cluster;
mod config;
mod docs;
mod durable;
mod fallback;
mod health;
mod hostile;
mod metrics;
mod nodes;
mod proxy;
mod resume;
mod service;
mod socketio;
mod support;
mod uploads;
