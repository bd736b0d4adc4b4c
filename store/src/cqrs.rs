//! The store as a cqrs-es `PersistedEventRepository`, so aggregates run on
//! `CqrsFramework` unchanged. An aggregate id names its community and its
//! stream: `<community uuid>/<stream id>`.

use cqrs_es::persist::{
    PersistedEventRepository, PersistenceError, ReplayStream, SerializedEvent, SerializedSnapshot,
};
use cqrs_es::Aggregate;
use serde_json::Value;
use uuid::Uuid;

use crate::error::StoreError;
use crate::limits;
use crate::snapshot::Snapshot;
use crate::store::{recorded_event, EventStore, EVENT_COLUMNS};
use crate::types::{
    AppendRequest, CommunityId, EventType, ExpectedVersion, IdempotencyKey, Metadata, NewEvent,
    RecordedEvent, StreamId, StreamType,
};

const REPLAY_QUEUE_CAPACITY: usize = 1_000;

/// The aggregate id cqrs-es is given for a stream of a community.
pub fn aggregate_id(community_id: CommunityId, stream_id: &StreamId) -> String {
    format!("{community_id}/{stream_id}")
}

pub fn parse_aggregate_id(aggregate_id: &str) -> Result<(CommunityId, StreamId), StoreError> {
    let shape = |why: &str| {
        StoreError::invalid(
            "aggregate_id",
            format!(
                "`{}` is not `<community uuid>/<stream id>` ({why}); make ids with `aggregate_id`",
                aggregate_id.chars().take(200).collect::<String>()
            ),
        )
    };
    let (community, stream) = aggregate_id
        .split_once('/')
        .ok_or_else(|| shape("no `/`"))?;
    let community =
        Uuid::parse_str(community).map_err(|_| shape("the part before `/` is not a UUID"))?;
    let stream = StreamId::parse(stream).map_err(|_| shape("the stream id is not a valid one"))?;
    Ok((CommunityId::new(community), stream))
}

/// The event store as cqrs-es runs aggregates on it.
pub type StoreCqrs<A> =
    cqrs_es::CqrsFramework<A, cqrs_es::persist::PersistedEventStore<CqrsRepository, A>>;

/// A `CqrsFramework` for aggregate `A` on `store`, with `queries` run after
/// each command and `services` given to `handle`: the one call an embedder
/// needs (as cqrs-es's own PostgreSQL store offers). Aggregate ids are
/// `aggregate_id(community, stream)`. `snapshot_size`: take a snapshot
/// every that many events (a long stream loads from it); `None`, never.
pub fn cqrs_framework<A>(
    store: EventStore,
    queries: Vec<Box<dyn cqrs_es::Query<A>>>,
    services: A::Services,
    snapshot_size: Option<usize>,
) -> StoreCqrs<A>
where
    A: cqrs_es::Aggregate,
{
    let event_store = match snapshot_size {
        Some(size) => cqrs_es::persist::PersistedEventStore::new_snapshot_store(
            CqrsRepository::with_snapshots(store, size),
            size,
        ),
        None => cqrs_es::persist::PersistedEventStore::new_event_store(CqrsRepository::new(store)),
    };
    cqrs_es::CqrsFramework::new(event_store, queries, services)
}

/// Adapts [`EventStore`] to cqrs-es.
#[derive(Clone)]
pub struct CqrsRepository {
    store: EventStore,
    /// The snapshot size given to `PersistedEventStore::new_snapshot_store`,
    /// needed to know which version a snapshot update describes.
    snapshot_size: Option<usize>,
}

impl CqrsRepository {
    /// For `new_event_store` (no snapshots) or `new_aggregate_store`.
    pub fn new(store: EventStore) -> Self {
        CqrsRepository {
            store,
            snapshot_size: None,
        }
    }

    /// For `new_snapshot_store(repository, snapshot_size)`, with the same size.
    pub fn with_snapshots(store: EventStore, snapshot_size: usize) -> Self {
        assert!(snapshot_size > 0, "a snapshot size is at least 1");
        CqrsRepository {
            store,
            snapshot_size: Some(snapshot_size),
        }
    }

    async fn events_from(
        &self,
        aggregate_id: &str,
        from_version: i64,
    ) -> Result<Vec<SerializedEvent>, PersistenceError> {
        let (community_id, stream_id) = parse_aggregate_id(aggregate_id).map_err(to_persistence)?;
        self.store
            .read_whole_stream(community_id, stream_id.as_str(), from_version)
            .await
            .map_err(to_persistence)?
            .into_iter()
            .map(|event| serialized(aggregate_id, event))
            .collect()
    }

    /// The stream version a snapshot update describes: cqrs-es folds only the
    /// events up to the last multiple of the snapshot size into it.
    fn snapshot_version(&self, first_sequence: usize, event_count: usize) -> usize {
        let current = first_sequence - 1;
        match self.snapshot_size {
            None => current + event_count,
            Some(size) => {
                let next_at = size - (current % size);
                if event_count < next_at {
                    current
                } else {
                    let beyond = event_count - next_at;
                    current + next_at + beyond - (beyond % size)
                }
            }
        }
    }
}

impl CqrsRepository {
    /// Folds the stream up to `version` (from the previous snapshot on) and
    /// saves it. The state cqrs-es 0.5 offers with a snapshot update is not
    /// used: its `EventSink` has already applied the new events to the
    /// aggregate, and the snapshot path applies them a second time.
    async fn take_snapshot<A: Aggregate>(
        &self,
        community_id: CommunityId,
        stream_id: &StreamId,
        stream_type: &StreamType,
        version: i64,
        snapshot_number: usize,
    ) -> Result<(), StoreError> {
        let previous = self
            .store
            .load_snapshot(community_id, stream_id.as_str())
            .await?;
        let (start, from_version) = match previous {
            Some(s) if s.stream_version <= version => match serde_json::from_value::<A>(s.state) {
                Ok(state) => (state, s.stream_version),
                Err(_) => (A::default(), 0),
            },
            _ => (A::default(), 0),
        };
        let (aggregate, folded) = self
            .store
            .fold_stream(
                community_id,
                stream_id.as_str(),
                start,
                from_version,
                version,
                i64::MAX,
            )
            .await?;
        if folded != version {
            return Err(StoreError::Corrupt(format!(
                "stream `{stream_id}` ends at version {folded}, before {version}"
            )));
        }
        let state = serde_json::to_value(&aggregate)
            .map_err(|e| StoreError::Corrupt(format!("snapshot of `{stream_id}`: {e}")))?;
        let snapshot = Snapshot {
            stream_type: stream_type.to_string(),
            stream_version: version,
            snapshot_number: snapshot_number as i64,
            state,
        };
        self.store
            .save_snapshot(community_id, stream_id, stream_type, &snapshot)
            .await
    }
}

impl PersistedEventRepository for CqrsRepository {
    async fn get_events<A: Aggregate>(
        &self,
        aggregate_id: &str,
    ) -> Result<Vec<SerializedEvent>, PersistenceError> {
        self.events_from(aggregate_id, 1).await
    }

    async fn get_last_events<A: Aggregate>(
        &self,
        aggregate_id: &str,
        last_sequence: usize,
    ) -> Result<Vec<SerializedEvent>, PersistenceError> {
        self.events_from(aggregate_id, last_sequence as i64 + 1)
            .await
    }

    async fn get_snapshot<A: Aggregate>(
        &self,
        aggregate_id: &str,
    ) -> Result<Option<SerializedSnapshot>, PersistenceError> {
        let (community_id, stream_id) = parse_aggregate_id(aggregate_id).map_err(to_persistence)?;
        let snapshot = self
            .store
            .load_snapshot(community_id, stream_id.as_str())
            .await
            .map_err(to_persistence)?;
        Ok(snapshot.map(|s| SerializedSnapshot {
            aggregate_id: aggregate_id.to_string(),
            aggregate: s.state,
            current_sequence: s.stream_version as usize,
            current_snapshot: s.snapshot_number as usize,
        }))
    }

    async fn persist<A: Aggregate>(
        &self,
        events: &[SerializedEvent],
        snapshot_update: Option<(String, Value, usize)>,
    ) -> Result<(), PersistenceError> {
        let Some(first) = events.first() else {
            return Ok(());
        };
        let (community_id, stream_id) =
            parse_aggregate_id(&first.aggregate_id).map_err(to_persistence)?;
        let stream_type = StreamType::parse(A::TYPE).map_err(to_persistence)?;
        let mut key = None;
        let mut new_events = Vec::with_capacity(events.len());
        for event in events {
            if event.aggregate_id != first.aggregate_id {
                return Err(to_persistence(StoreError::invalid(
                    "aggregate_id",
                    "one commit persists one aggregate",
                )));
            }
            let metadata = metadata_from(&event.metadata);
            if let Some(k) = metadata.get("idempotency_key") {
                key = Some(IdempotencyKey::parse(k.as_str()).map_err(to_persistence)?);
            }
            new_events.push(NewEvent {
                event_type: EventType::parse(event.event_type.as_str()).map_err(to_persistence)?,
                event_version: event.event_version.clone(),
                payload: event.payload.clone(),
                metadata,
            });
        }
        let mut request = AppendRequest::new(community_id).stream(
            stream_id.clone(),
            stream_type.clone(),
            ExpectedVersion::Exact(first.sequence as i64 - 1),
            new_events,
        );
        request.idempotency_key = key;
        self.store.append(request).await.map_err(to_persistence)?;
        if let Some((_, _, snapshot_number)) = snapshot_update {
            let version = self.snapshot_version(first.sequence, events.len()) as i64;
            // The events are committed; a failed snapshot only costs a longer
            // load later, so it must not turn a success into an error.
            if let Err(error) = self
                .take_snapshot::<A>(
                    community_id,
                    &stream_id,
                    &stream_type,
                    version,
                    snapshot_number,
                )
                .await
            {
                tracing::warn!(%error, %stream_id, "could not save a snapshot");
            }
        }
        Ok(())
    }

    async fn stream_events<A: Aggregate>(
        &self,
        aggregate_id: &str,
    ) -> Result<ReplayStream, PersistenceError> {
        let events = self.events_from(aggregate_id, 1).await?;
        let (mut feed, stream) = ReplayStream::new(events.len().max(1));
        for event in events {
            feed.push(Ok(event)).await?;
        }
        Ok(stream)
    }

    async fn stream_all_events<A: Aggregate>(&self) -> Result<ReplayStream, PersistenceError> {
        let (mut feed, stream) = ReplayStream::new(REPLAY_QUEUE_CAPACITY);
        let store = self.store.clone();
        tokio::spawn(async move {
            let mut after = (Uuid::nil(), 0_i64);
            loop {
                let batch = match all_of_type(&store, A::TYPE, after).await {
                    Ok(batch) => batch,
                    Err(error) => {
                        let _ = feed.push(Err(to_persistence(error))).await;
                        return;
                    }
                };
                let Some(last) = batch.last() else {
                    return;
                };
                after = (last.community_id.as_uuid(), last.position);
                for event in batch {
                    let id = aggregate_id(event.community_id, &stream_id_of(&event));
                    if feed.push(serialized(&id, event)).await.is_err() {
                        return;
                    }
                }
            }
        });
        Ok(stream)
    }
}

async fn all_of_type(
    store: &EventStore,
    stream_type: &str,
    after: (Uuid, i64),
) -> Result<Vec<RecordedEvent>, StoreError> {
    let client = store.pool().get().await?;
    let rows = client
        .query(
            &format!(
                "SELECT {EVENT_COLUMNS} FROM events WHERE stream_type = $1 \
                 AND (community_id, position) > ($2, $3) \
                 ORDER BY community_id, position LIMIT $4"
            ),
            &[&stream_type, &after.0, &after.1, &limits::READ_BATCH_MAX],
        )
        .await?;
    rows.iter().map(recorded_event).collect()
}

fn stream_id_of(event: &RecordedEvent) -> StreamId {
    StreamId::parse(event.stream_id.as_str()).expect("stored stream ids were parsed on append")
}

fn serialized(
    aggregate_id: &str,
    event: RecordedEvent,
) -> Result<SerializedEvent, PersistenceError> {
    let metadata = serde_json::to_value(&event.metadata)
        .map_err(|e| PersistenceError::DeserializationError(Box::new(e)))?;
    let payload = serde_json::from_str(event.payload.get())
        .map_err(|e| PersistenceError::DeserializationError(Box::new(e)))?;
    Ok(SerializedEvent {
        aggregate_id: aggregate_id.to_string(),
        sequence: event.stream_version as usize,
        aggregate_type: event.stream_type,
        event_type: event.event_type,
        event_version: event.event_version,
        payload,
        metadata,
    })
}

/// cqrs-es metadata is a JSON object of strings; anything else is kept as
/// its JSON text.
fn metadata_from(value: &Value) -> Metadata {
    let Some(object) = value.as_object() else {
        return Metadata::new();
    };
    object
        .iter()
        .map(|(k, v)| {
            let text = match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            (k.clone(), text)
        })
        .collect()
}

fn to_persistence(error: StoreError) -> PersistenceError {
    match error {
        StoreError::Conflict { .. } => PersistenceError::OptimisticLockError,
        StoreError::Database(_) | StoreError::Pool(_) | StoreError::ShuttingDown => {
            PersistenceError::ConnectionError(Box::new(error))
        }
        other => PersistenceError::UnknownError(Box::new(other)),
    }
}
