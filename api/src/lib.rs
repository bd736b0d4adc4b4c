//! The `civic-ledger` server and command line: the adapters over the
//! application (`app`): GraphQL and HTTP on actix-web, bearer tokens,
//! metrics, telemetry and the CLI. Only this crate knows HTTP.

pub mod auth;
pub mod cli;
pub mod clients;
pub mod config;
pub mod error;
pub mod graphql;
pub mod metrics;
pub mod pages;
pub mod photos;
pub mod server;
pub mod system;
pub mod telemetry;
