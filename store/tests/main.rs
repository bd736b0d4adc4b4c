//! The event store's own tests, against a real PostgreSQL and real
//! concurrency, without the server: ordering and group commit, tampering
//! caught by the chain, idempotency, content beside the log, bad input.
//! `cargo test -p civic-ledger-store` runs them alone. Every test gets a
//! database of its own (`helpers.rs`, shared with the end-to-end tests).

// The tests (and helpers.rs, shared with the end-to-end tests) say
// `store::`, as the crates that use the store do.
extern crate civic_ledger_store as store;

// Shared with the end-to-end tests, some of whose helpers only they use.
#[allow(dead_code)]
mod helpers;

mod bad_input;
mod content;
mod idempotency;
mod kept_streams;
mod landing;
mod migrations;
mod ordering;
mod tail;
mod tampering;
mod tree;
