//! The audit trail: a community's events filtered by who acted, which
//! stream, which event type and when, in position order, a page at a time.

use chrono::{DateTime, Utc};
use tokio_postgres::types::ToSql;

use crate::error::StoreError;
use crate::store::{recorded_event, EventStore, EVENT_COLUMNS};
use crate::types::{CommunityId, RecordedEvent};

/// Events per page at most.
pub const TRAIL_PAGE_MAX: i64 = 500;

#[derive(Clone, Debug, Default)]
pub struct TrailFilter {
    /// `metadata.actor_id`: who issued the command.
    pub actor: Option<String>,
    pub stream_id: Option<String>,
    pub event_type: Option<String>,
    /// Recorded at or after.
    pub from_time: Option<DateTime<Utc>>,
    /// Recorded before.
    pub to_time: Option<DateTime<Utc>>,
}

impl EventStore {
    /// The events after position `after` that match, oldest first.
    pub async fn audit_trail(
        &self,
        community_id: CommunityId,
        filter: &TrailFilter,
        after: i64,
        limit: i64,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        // Times become positions: recorded_at never decreases in a community.
        let from = match filter.from_time {
            Some(at) => {
                let before = at - chrono::Duration::microseconds(1);
                after.max(self.position_at(community_id, before).await?)
            }
            None => after,
        };
        let to = match filter.to_time {
            Some(at) => {
                let before = at - chrono::Duration::microseconds(1);
                self.position_at(community_id, before).await?
            }
            None => i64::MAX,
        };
        let client = self.pool().get().await?;
        let statement = client
            .prepare_cached(&format!(
                "SELECT {EVENT_COLUMNS} FROM events WHERE community_id = $1 \
                 AND position > $2 AND position <= $3 \
                 AND ($4::text IS NULL OR (metadata ? 'actor_id' AND metadata ->> 'actor_id' = $4)) \
                 AND ($5::text IS NULL OR stream_id = $5) \
                 AND ($6::text IS NULL OR event_type = $6) \
                 ORDER BY position LIMIT $7"
            ))
            .await?;
        let limit = limit.clamp(1, TRAIL_PAGE_MAX);
        let params: [&(dyn ToSql + Sync); 7] = [
            &community_id.as_uuid(),
            &from,
            &to,
            &filter.actor,
            &filter.stream_id,
            &filter.event_type,
            &limit,
        ];
        let rows = client.query(&statement, &params).await?;
        rows.iter().map(recorded_event).collect()
    }
}

/// The newest payload of `event_type` in one stream of a community (its
/// set-up's newest correction, say), read inside the caller's transaction
/// so that a fold sees the log as of its own snapshot.
pub async fn newest_payload(
    client: &impl tokio_postgres::GenericClient,
    community: crate::types::CommunityId,
    stream_id: &str,
    event_type: &str,
) -> Result<Option<serde_json::Value>, crate::error::StoreError> {
    let row = client
        .query_opt(
            "SELECT payload FROM events WHERE community_id = $1 AND stream_id = $2 \
             AND event_type = $3 ORDER BY stream_version DESC LIMIT 1",
            &[&community.as_uuid(), &stream_id, &event_type],
        )
        .await?;
    Ok(row.map(|row| row.get(0)))
}
