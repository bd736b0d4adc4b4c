//! Verifying a community's hash chain: recompute every hash from the stored
//! fields and check every link, naming the first position that does not match.

use serde::{Deserialize, Serialize};

use crate::canonical::{
    canonical_event_bytes, chain_hash, timestamp_text, EventHeader, GENESIS_HASH,
};
use crate::error::StoreError;
use crate::store::EventStore;
use crate::types::{CommunityId, RecordedEvent};
use crate::writer::to_hash;

const VERIFY_BATCH_SIZE: i64 = 5_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MismatchKind {
    /// No event is stored at this position, though later ones are.
    MissingPosition,
    /// The event's previous hash is not the hash of the event before it.
    BrokenLink,
    /// The stored hash is not the hash of the stored fields.
    HashMismatch,
    /// The community's head names a position or hash the log does not end with.
    HeadMismatch,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mismatch {
    pub position: i64,
    pub kind: MismatchKind,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verification {
    pub community_id: CommunityId,
    pub from_position: i64,
    /// The last position checked.
    pub to_position: i64,
    pub events_checked: i64,
    pub first_mismatch: Option<Mismatch>,
}

impl Verification {
    pub fn is_intact(&self) -> bool {
        self.first_mismatch.is_none()
    }
}

/// Folds events one by one, remembering the hash the next event must link to.
pub struct ChainChecker {
    expected_position: i64,
    previous_hash: [u8; 32],
}

impl ChainChecker {
    /// Starts at `from_position`, trusting `previous_hash` as the hash of the
    /// event before it (the genesis hash for position 1).
    pub fn new(from_position: i64, previous_hash: [u8; 32]) -> Self {
        ChainChecker {
            expected_position: from_position,
            previous_hash,
        }
    }

    pub fn check(&mut self, event: &RecordedEvent) -> Result<(), Mismatch> {
        self.check_recomputed(event, recompute_hash(event).ok())
    }

    /// `check`, with the event's hash recomputed already (in parallel, by a
    /// caller that checks many); `None` when it could not be.
    pub fn check_recomputed(
        &mut self,
        event: &RecordedEvent,
        recomputed: Option<[u8; 32]>,
    ) -> Result<(), Mismatch> {
        if event.position != self.expected_position {
            return Err(Mismatch {
                position: self.expected_position,
                kind: MismatchKind::MissingPosition,
            });
        }
        if event.previous_hash != self.previous_hash {
            return Err(Mismatch {
                position: event.position,
                kind: MismatchKind::BrokenLink,
            });
        }
        if recomputed != Some(event.hash) {
            return Err(Mismatch {
                position: event.position,
                kind: MismatchKind::HashMismatch,
            });
        }
        self.expected_position += 1;
        self.previous_hash = event.hash;
        Ok(())
    }
}

/// The hash an event must have, recomputed from its stored fields.
pub fn recompute_hash(event: &RecordedEvent) -> Result<[u8; 32], StoreError> {
    let payload = event.payload_value()?;
    let header = EventHeader {
        community_id: event.community_id,
        position: event.position,
        stream_id: &event.stream_id,
        stream_type: &event.stream_type,
        stream_version: event.stream_version,
        event_type: &event.event_type,
        event_version: &event.event_version,
        recorded_at: &timestamp_text(event.recorded_at),
    };
    let canonical = canonical_event_bytes(&header, &payload, &event.metadata);
    Ok(chain_hash(&event.previous_hash, &canonical))
}

impl EventStore {
    /// Verifies positions `from_position..=to_position` (clamped to the head).
    /// The link into `from_position` is checked against the stored hash of
    /// the event before it; verify from 1 to trust nothing but genesis.
    pub async fn verify_chain(
        &self,
        community_id: CommunityId,
        from_position: i64,
        to_position: i64,
    ) -> Result<Verification, StoreError> {
        let head = self.head(community_id).await?;
        let from_position = from_position.max(1);
        let to_position = to_position.min(head.position);
        let anchor = self.anchor_hash(community_id, from_position).await?;
        let mut checker = ChainChecker::new(from_position, anchor);
        let mut report = Verification {
            community_id,
            from_position,
            to_position,
            events_checked: 0,
            first_mismatch: None,
        };
        let mut next = from_position;
        while next <= to_position {
            let limit = VERIFY_BATCH_SIZE.min(to_position - next + 1);
            let batch = self.read_log(community_id, next, limit).await?;
            if batch.is_empty() {
                report.first_mismatch = Some(Mismatch {
                    position: next,
                    kind: MismatchKind::MissingPosition,
                });
                return Ok(report);
            }
            for event in &batch {
                if event.position > to_position {
                    break;
                }
                if let Err(mismatch) = checker.check(event) {
                    report.first_mismatch = Some(mismatch);
                    return Ok(report);
                }
                report.events_checked += 1;
            }
            next = checker.expected_position;
        }
        if to_position == head.position && head.position > 0 && checker.previous_hash != head.hash {
            report.first_mismatch = Some(Mismatch {
                position: head.position,
                kind: MismatchKind::HeadMismatch,
            });
        }
        Ok(report)
    }

    async fn anchor_hash(
        &self,
        community_id: CommunityId,
        from_position: i64,
    ) -> Result<[u8; 32], StoreError> {
        if from_position <= 1 {
            return Ok(GENESIS_HASH);
        }
        let client = self.inner.pool.get().await?;
        let row = client
            .query_opt(
                "SELECT hash FROM events WHERE community_id = $1 AND position = $2",
                &[&community_id.as_uuid(), &(from_position - 1)],
            )
            .await?
            .ok_or_else(|| {
                StoreError::invalid("from_position", "the event before it is not stored")
            })?;
        to_hash(row.get(0))
    }
}
