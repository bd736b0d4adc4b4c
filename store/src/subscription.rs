//! Catch-up then live subscriptions to a community's log.

use std::collections::VecDeque;
use std::time::Duration;

use tokio::sync::watch;

use crate::error::StoreError;
use crate::store::EventStore;
use crate::types::{CommunityId, RecordedEvent};

/// How many events one catch-up read fetches.
const CATCH_UP_BATCH_SIZE: i64 = 1_000;
/// A safety net only: subscribers are woken by commits, but look at the log
/// this often even when no wake-up came (a lost connection, a lost notice).
const IDLE_RECHECK_MS: u64 = 10_000;

/// Delivers every event of a community from a position on, exactly once and
/// in order: first what is stored, then what is committed later.
pub struct Subscription {
    store: EventStore,
    community_id: CommunityId,
    next_position: i64,
    buffer: VecDeque<RecordedEvent>,
    head: watch::Receiver<i64>,
}

impl EventStore {
    /// Subscribes to a community's log; the first event delivered is the one
    /// at `from_position` (positions start at 1; 0 means from the beginning).
    pub fn subscribe(&self, community_id: CommunityId, from_position: i64) -> Subscription {
        Subscription {
            store: self.clone(),
            community_id,
            next_position: from_position.max(1),
            buffer: VecDeque::new(),
            // Taken before the first read, so no commit can slip between the
            // catch-up and the live phase unnoticed.
            head: self.head_watch(community_id),
        }
    }
}

impl Subscription {
    /// The position of the next event this subscription will deliver.
    pub fn next_position(&self) -> i64 {
        self.next_position
    }

    pub async fn next(&mut self) -> Result<RecordedEvent, StoreError> {
        loop {
            if let Some(event) = self.buffer.pop_front() {
                if event.position != self.next_position {
                    return Err(StoreError::Corrupt(format!(
                        "community {} has no event at position {}",
                        self.community_id, self.next_position
                    )));
                }
                self.next_position += 1;
                return Ok(event);
            }
            self.head.borrow_and_update();
            let batch = self
                .store
                .read_log(self.community_id, self.next_position, CATCH_UP_BATCH_SIZE)
                .await?;
            if batch.is_empty() {
                let idle = tokio::time::sleep(Duration::from_millis(IDLE_RECHECK_MS));
                tokio::select! {
                    _ = self.head.changed() => {}
                    _ = idle => {}
                }
            }
            self.buffer.extend(batch);
        }
    }
}
