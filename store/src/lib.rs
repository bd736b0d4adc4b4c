//! The civic-ledger event store on PostgreSQL: one append-only, hash-chained
//! log per community, with group commit, idempotency, catch-up subscriptions,
//! snapshots, content beside the log, and provisioning of a private server.
//!
//! Only this crate and `projections` know SQL.

mod append;
pub mod baseline;
pub mod canonical;
pub mod content;
pub mod cqrs;
pub mod error;
mod landing;
pub mod limits;
mod listener;
pub mod merkle;
pub mod migrate;
mod notifier;
mod pgjson;
pub mod photos;
pub mod profiles;
pub mod provision;
pub mod seals;
pub mod snapshot;
pub mod stats;
mod store;
mod streams;
pub mod subscription;
mod tail;
pub mod trail;
pub mod tree;
pub mod types;
pub mod verify;
mod writer;

/// The PostgreSQL client the store runs on, for embedders that build a
/// `tokio_postgres::Config` themselves.
pub use tokio_postgres;

pub use content::{Content, ContentHash, Tombstone};
pub use cqrs::{aggregate_id, parse_aggregate_id, CqrsRepository};
pub use error::{SignupRefusal, StoreError};
pub use landing::Landing;
pub use photos::{NewPhoto, PhotoRecord};
pub use provision::PrivatePostgres;
pub use seals::Seal;
pub use snapshot::Snapshot;
pub use store::{announce_topic_in, EventStore, Heads, LogBatches, StoreConfig, Submitted};
pub use subscription::Subscription;
pub use trail::TrailFilter;
pub use tree::{ConsistencyProof, InclusionProof};
pub use types::*;
pub use verify::{ChainChecker, Mismatch, MismatchKind, Verification};
