//! The application: every rule and service the adapters (GraphQL, HTTP,
//! the command line) call, with typed callers, inputs and errors. It knows
//! no HTTP and no GraphQL; a new adapter calls these services and copies no
//! rule (docs/ARCHITECTURE.md).

pub mod audit;
pub mod calendar;
pub mod caller;
pub mod clock;
pub mod commands;
pub mod community;
pub mod content;
pub mod database;
pub mod deadlines;
pub mod directory;
pub mod error;
pub mod idempotency;
pub mod patrols;
pub mod photos;
pub mod points;
pub mod ratelimit;
pub mod reports;
pub mod secrets;
pub mod services;
pub mod signup;
pub mod sites;
pub mod suggestions;
