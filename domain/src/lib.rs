//! The civic-ledger domain: aggregates, commands, events and value types
//! (DESIGN §5). Pure: no IO, no SQL, no HTTP, no clock reads.
//!
//! The aggregates (community, report, suggestion, patrol, wallet, gift,
//! redemption) arrive with the reports and points issues; the event store
//! already runs any cqrs-es aggregate (see `tests/cqrs_aggregates.rs`).
