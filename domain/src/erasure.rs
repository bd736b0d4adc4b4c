//! The fact that a piece of content went: what residents typed or attached
//! is kept beside the log and may be erased (a moderator's redaction, a
//! resident's request), but that it was erased, by whom and why, is an
//! event in the chain, under the seals. Each piece has a stream of its own,
//! named by its hash, so that recording the same erasure twice is refused
//! as a repeat and never written twice.

use cqrs_es::DomainEvent;
use serde::{Deserialize, Serialize};

use crate::error::DomainError;
use crate::values::{ContentHash, Timestamp};

/// The longest who and why an erasure keeps, in bytes (the content table's
/// tombstone keeps the same).
pub const ERASED_BY_BYTES_MAX: usize = 200;
pub const REASON_BYTES_MAX: usize = 1000;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum ErasureCommand {
    /// `by` is who erased it as the tombstone names them (`admin:{id}`,
    /// a moderator's id); `reason` the reason given.
    Record {
        content: ContentHash,
        by: String,
        reason: String,
        at: Timestamp,
    },
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum ErasureEvent {
    ContentErased {
        content: ContentHash,
        by: String,
        reason: String,
        at: Timestamp,
    },
}

impl DomainEvent for ErasureEvent {
    fn event_type(&self) -> String {
        match self {
            ErasureEvent::ContentErased { .. } => "ContentErased",
        }
        .to_string()
    }

    fn event_version(&self) -> String {
        "1".to_string()
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Erasure {
    pub recorded: bool,
}

aggregate!(Erasure, "Erasure", ErasureCommand, ErasureEvent);

impl Erasure {
    fn fold(&mut self, event: ErasureEvent) {
        match event {
            ErasureEvent::ContentErased { .. } => self.recorded = true,
        }
    }

    fn decide(&self, command: ErasureCommand) -> Result<ErasureEvent, DomainError> {
        match command {
            ErasureCommand::Record {
                content,
                by,
                reason,
                at,
            } => {
                if self.recorded {
                    return Err(DomainError::AlreadyExists(format!(
                        "the erasure of {}",
                        content.as_str()
                    )));
                }
                if by.is_empty() || by.len() > ERASED_BY_BYTES_MAX {
                    return Err(DomainError::validation(
                        "erased_by",
                        "must be 1 to 200 bytes",
                    ));
                }
                if reason.trim().is_empty() || reason.len() > REASON_BYTES_MAX {
                    return Err(DomainError::validation("reason", "must be 1 to 1000 bytes"));
                }
                Ok(ErasureEvent::ContentErased {
                    content,
                    by,
                    reason,
                    at,
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use cqrs_es::test::TestFramework;

    use super::*;

    fn record(by: &str, reason: &str) -> ErasureCommand {
        ErasureCommand::Record {
            content: ContentHash::parse(&"ab".repeat(32)).unwrap(),
            by: by.to_string(),
            reason: reason.to_string(),
            at: Timestamp::from_micros(1_800_000_000_000_000),
        }
    }

    fn erased(by: &str, reason: &str) -> ErasureEvent {
        let ErasureCommand::Record {
            content,
            by: _,
            reason: _,
            at,
        } = record(by, reason);
        ErasureEvent::ContentErased {
            content,
            by: by.to_string(),
            reason: reason.to_string(),
            at,
        }
    }

    #[test]
    fn an_erasure_is_recorded_once_with_who_and_why() {
        TestFramework::<Erasure>::with(())
            .given_no_previous_events()
            .when(record("admin:7", "本人申请删除"))
            .then_expect_events(vec![erased("admin:7", "本人申请删除")]);
        TestFramework::<Erasure>::with(())
            .given(vec![erased("admin:7", "本人申请删除")])
            .when(record("admin:7", "again"))
            .then_expect_error(DomainError::AlreadyExists(format!(
                "the erasure of {}",
                "ab".repeat(32)
            )));
        for (by, reason) in [
            ("", "why"),
            ("admin:7", " "),
            ("admin:7", &"x".repeat(1001)),
        ] {
            TestFramework::<Erasure>::with(())
                .given_no_previous_events()
                .when(record(by, reason))
                .then_expect_error_message(if by.is_empty() {
                    "invalid erased_by: must be 1 to 200 bytes"
                } else {
                    "invalid reason: must be 1 to 1000 bytes"
                });
        }
    }
}
