//! The one end-to-end test binary: real PostgreSQL, real concurrency, the
//! real `civic-ledger` binary. Every test gets a database of its own.

mod app;
mod audit;
mod authorization;
mod browser;
/// The store's test fixtures, kept beside the store's own tests (some only
/// they use).
#[path = "../store/tests/helpers.rs"]
#[allow(dead_code)]
mod helpers;

mod cli;
mod client_keys;
mod cqrs_aggregates;
mod earning;
mod figures;
mod graphql_bad_input;
mod pages;
mod photos;
mod points;
mod projection_runner;
mod proofs;
mod rate_limits;
mod read_cache;
mod report_flows;
mod residents;
mod server;
mod setup_kept;
mod staff_rules;
mod subscriptions;
mod tenants;
mod values;
