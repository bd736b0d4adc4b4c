//! The `civic-ledger` server and command line: HTTP on actix-web, the
//! database wiring, telemetry and benchmarks. Only this crate knows HTTP.

pub mod bench;
pub mod cli;
pub mod database;
pub mod metrics;
pub mod server;
pub mod telemetry;
