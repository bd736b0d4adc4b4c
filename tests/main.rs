//! The one end-to-end test binary: real PostgreSQL, real concurrency, the
//! real `civic-ledger` binary. Every test gets a database of its own.

mod app;
mod audit;
mod authorization;
mod helpers;

mod bad_input;
mod cli;
mod client_keys;
mod content;
mod cqrs_aggregates;
mod earning;
mod figures;
mod graphql_bad_input;
mod idempotency;
mod ordering;
mod points;
mod projection_runner;
mod rate_limits;
mod report_flows;
mod residents;
mod server;
mod staff_rules;
mod subscriptions;
mod tampering;
mod tenants;
mod values;
