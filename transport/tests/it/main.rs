//! The transport over real sockets on 127.0.0.1:0: raw HTTP, TLS on both
//! ends, and the fuzz corpus. One test binary.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod fuzz_corpus;
mod http;
mod tls;
