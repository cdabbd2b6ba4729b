//! The chat core through its public API on the deterministic harness
//! (`harness`): the rules, sessions, identities, limits, and seeded
//! simulations. One test binary.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod abuse;
mod changes;
mod directs;
mod docs;
mod harness;
mod identity;
mod rules;
mod sessions;
mod shared;
mod simulation;
