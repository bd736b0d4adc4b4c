//! The `civic-ledger` server and command line: HTTP on actix-web, the
//! database wiring, telemetry and benchmarks. Only this crate knows HTTP.

pub mod app;
pub mod audit;
pub mod auth;
pub mod bench;
pub mod calendar;
pub mod cli;
pub mod clients;
pub mod clock;
pub mod commands;
pub mod content;
pub mod database;
pub mod deadlines;
pub mod demo;
pub mod directory;
pub mod error;
pub mod graphql;
pub mod idempotency;
pub mod metrics;
pub mod points;
pub mod ratelimit;
pub mod secrets;
pub mod server;
pub mod signup;
pub mod telemetry;
