//! Snapshots of long streams, and an aggregate's state as of a position.

use cqrs_es::Aggregate;
use serde_json::Value;

use crate::error::StoreError;
use crate::limits;
use crate::store::{recorded_event, EventStore, EVENT_COLUMNS};
use crate::types::{CommunityId, StreamId, StreamType};

#[derive(Clone, Debug, PartialEq)]
pub struct Snapshot {
    pub stream_type: String,
    /// The stream version whose events the state includes.
    pub stream_version: i64,
    /// Counts the snapshots taken of this stream.
    pub snapshot_number: i64,
    pub state: Value,
}

impl EventStore {
    /// Keeps the newest snapshot of a stream; an older one never replaces it.
    pub async fn save_snapshot(
        &self,
        community_id: CommunityId,
        stream_id: &StreamId,
        stream_type: &StreamType,
        snapshot: &Snapshot,
    ) -> Result<(), StoreError> {
        if snapshot.stream_version < 1 {
            return Err(StoreError::invalid("stream_version", "must be at least 1"));
        }
        let client = self.inner.pool.get().await?;
        let statement = client
            .prepare_cached(
                "INSERT INTO snapshots (community_id, stream_id, stream_type, stream_version, \
                     snapshot_number, state) VALUES ($1, $2, $3, $4, $5, $6) \
                 ON CONFLICT (community_id, stream_id) DO UPDATE SET \
                     stream_version = excluded.stream_version, \
                     snapshot_number = excluded.snapshot_number, \
                     state = excluded.state, taken_at = now() \
                 WHERE snapshots.stream_version < excluded.stream_version",
            )
            .await?;
        client
            .execute(
                &statement,
                &[
                    &community_id.as_uuid(),
                    &stream_id.as_str(),
                    &stream_type.as_str(),
                    &snapshot.stream_version,
                    &snapshot.snapshot_number,
                    &tokio_postgres::types::Json(&snapshot.state),
                ],
            )
            .await?;
        Ok(())
    }

    pub async fn load_snapshot(
        &self,
        community_id: CommunityId,
        stream_id: &str,
    ) -> Result<Option<Snapshot>, StoreError> {
        let client = self.inner.pool.get().await?;
        let statement = client
            .prepare_cached(
                "SELECT stream_type, stream_version, snapshot_number, state FROM snapshots \
                 WHERE community_id = $1 AND stream_id = $2",
            )
            .await?;
        let row = client
            .query_opt(&statement, &[&community_id.as_uuid(), &stream_id])
            .await?;
        Ok(row.map(|row| {
            let state: tokio_postgres::types::Json<Value> = row.get(3);
            Snapshot {
                stream_type: row.get(0),
                stream_version: row.get(1),
                snapshot_number: row.get(2),
                state: state.0,
            }
        }))
    }

    /// The state of an aggregate as it was when the community's log ended at
    /// `position`, with the stream version it had then (0: not yet created).
    /// Folds from the first event: snapshots are never needed for correctness.
    pub async fn aggregate_as_of<A: Aggregate>(
        &self,
        community_id: CommunityId,
        stream_id: &str,
        position: i64,
    ) -> Result<(A, i64), StoreError> {
        self.fold_stream(community_id, stream_id, A::default(), 0, i64::MAX, position)
            .await
    }

    /// Applies to `aggregate` (which holds the stream up to `from_version`)
    /// the stream's events above it, up to `max_version` and recorded at or
    /// before `max_position`; returns it with the last version folded.
    pub(crate) async fn fold_stream<A: Aggregate>(
        &self,
        community_id: CommunityId,
        stream_id: &str,
        mut aggregate: A,
        from_version: i64,
        max_version: i64,
        max_position: i64,
    ) -> Result<(A, i64), StoreError> {
        let mut version = from_version;
        let client = self.inner.pool.get().await?;
        let statement = client
            .prepare_cached(&format!(
                "SELECT {EVENT_COLUMNS} FROM events WHERE community_id = $1 AND stream_id = $2 \
                 AND stream_version > $3 AND stream_version <= LEAST($3 + $5, $6) \
                 AND position <= $4 ORDER BY stream_version"
            ))
            .await?;
        loop {
            let params: [&(dyn tokio_postgres::types::ToSql + Sync); 6] = [
                &community_id.as_uuid(),
                &stream_id,
                &version,
                &max_position,
                &limits::READ_BATCH_MAX,
                &max_version,
            ];
            let rows = client.query(&statement, &params).await?;
            if rows.is_empty() {
                return Ok((aggregate, version));
            }
            for row in &rows {
                let event = recorded_event(row)?;
                if event.stream_version != version + 1 {
                    return Err(StoreError::Corrupt(format!(
                        "stream `{stream_id}` jumps from version {version} to {}",
                        event.stream_version
                    )));
                }
                let domain_event: A::Event = event.decode()?;
                aggregate.apply(domain_event);
                version = event.stream_version;
            }
        }
    }
}
