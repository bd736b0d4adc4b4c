//! The civic-ledger domain: aggregates, commands, events and value types
//! (DESIGN §5). Pure: no IO, no SQL, no HTTP, no clock reads; what a command
//! needs from outside (the time, a category's deadlines, a site's grid) comes
//! in the command.

pub mod community;
pub mod error;
pub mod patrol;
pub mod report;
pub mod suggestion;
pub mod values;

pub use error::DomainError;
