//! Group commit: one writer task per community takes the appends waiting for
//! it and writes them in one transaction. Each append keeps its own
//! concurrency check and outcome; one conflict does not fail the others.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use tokio::sync::{mpsc, oneshot};
use tokio_postgres::types::{Json, ToSql};

use crate::append::ValidatedAppend;
use crate::canonical::{chain_hash, compose_event, timestamp_text, EventHeader};
use crate::pgjson::JsonbText;
use crate::error::StoreError;
use crate::limits;
use crate::stats::StoreStats;
use crate::store::Inner;
use crate::types::{AppendOutcome, CommunityId, StreamVersion};

pub(crate) const APPENDED_CHANNEL: &str = "civic_ledger_appended";

const LOCK_HEAD: &str = "SELECT last_position, last_hash, last_recorded_at, clock_timestamp() \
    FROM community_heads WHERE community_id = $1 FOR UPDATE";
const FIND_KEYS: &str = "SELECT idempotency_key, request_hash, outcome FROM idempotency_keys \
    WHERE community_id = $1 AND idempotency_key = ANY($2)";
const FIND_VERSIONS: &str = "SELECT s.stream_id, (SELECT e.stream_version FROM events e \
    WHERE e.community_id = $1 AND e.stream_id = s.stream_id \
    ORDER BY e.stream_version DESC LIMIT 1) \
    FROM unnest($2::text[]) AS s(stream_id)";
const INSERT_EVENTS: &str = "INSERT INTO events (community_id, position, stream_id, stream_type, \
    stream_version, event_type, event_version, payload, metadata, recorded_at, previous_hash, hash) \
    SELECT $1, u.p, u.si, u.st, u.sv, u.et, u.ev, u.pl, u.md, $10, u.ph, u.h FROM \
    unnest($2::bigint[], $3::text[], $4::text[], $5::bigint[], $6::text[], $7::text[], \
    $8::jsonb[], $9::jsonb[], $11::bytea[], $12::bytea[]) AS u(p, si, st, sv, et, ev, pl, md, ph, h)";
const INSERT_KEYS: &str = "INSERT INTO idempotency_keys (community_id, idempotency_key, \
    request_hash, outcome, recorded_at) \
    SELECT $1, u.k, u.h, u.o, $5 FROM unnest($2::text[], $3::bytea[], $4::jsonb[]) AS u(k, h, o)";
const MOVE_HEAD: &str = "UPDATE community_heads SET last_position = $2, last_hash = $3, \
    last_recorded_at = $4 WHERE community_id = $1";
const NOTIFY: &str = "SELECT pg_notify($1, $2)";

pub(crate) struct PendingAppend {
    pub append: ValidatedAppend,
    pub reply: oneshot::Sender<Result<AppendOutcome, StoreError>>,
    pub enqueued_at: Instant,
}

pub(crate) type WriterQueue = mpsc::Sender<PendingAppend>;

pub(crate) fn spawn_writer(
    inner: Arc<Inner>,
    community_id: CommunityId,
) -> (WriterQueue, tokio::task::JoinHandle<()>) {
    let (sender, receiver) = mpsc::channel(limits::WRITER_QUEUE_CAPACITY);
    let task = tokio::spawn(run_writer(inner, community_id, receiver));
    (sender, task)
}

/// Runs until every sender is gone (at shutdown), finishing what is queued.
async fn run_writer(
    inner: Arc<Inner>,
    community_id: CommunityId,
    mut receiver: mpsc::Receiver<PendingAppend>,
) {
    while let Some(first) = receiver.recv().await {
        let mut events = first.append.request.event_count();
        let mut batch = vec![first];
        while batch.len() < limits::BATCH_APPENDS_MAX && events < limits::BATCH_EVENTS_MAX {
            match receiver.try_recv() {
                Ok(next) => {
                    events += next.append.request.event_count();
                    batch.push(next);
                }
                Err(_) => break,
            }
        }
        commit_batch(&inner, community_id, batch).await;
    }
}

async fn commit_batch(inner: &Inner, community_id: CommunityId, batch: Vec<PendingAppend>) {
    let stats = &inner.stats;
    stats.observe_batch(batch.len());
    let appends: Vec<&ValidatedAppend> = batch.iter().map(|p| &p.append).collect();
    let results = match write_batch(inner, community_id, &appends).await {
        Ok(results) => results,
        Err(error) => {
            tracing::warn!(%community_id, %error, appends = batch.len(), "group commit failed");
            vec![Err(error); batch.len()]
        }
    };
    assert_eq!(results.len(), batch.len(), "one result per append");
    for (pending, result) in batch.into_iter().zip(results) {
        match &result {
            Ok(outcome) if outcome.replayed => {
                StoreStats::add(&stats.idempotent_replays_total, 1);
            }
            Ok(outcome) => {
                StoreStats::add(&stats.appends_total, 1);
                let events = outcome.last_position - outcome.first_position + 1;
                StoreStats::add(&stats.events_appended_total, events as u64);
            }
            Err(StoreError::Conflict { .. } | StoreError::IdempotencyKeyReused { .. }) => {
                StoreStats::add(&stats.conflicts_total, 1);
            }
            Err(_) => StoreStats::add(&stats.append_failures_total, 1),
        }
        let micros = pending.enqueued_at.elapsed().as_micros();
        stats.observe_append_latency(u64::try_from(micros).unwrap_or(u64::MAX));
        // A caller that gave up waiting is no reason to fail the others.
        let _ = pending.reply.send(result);
    }
}

/// The columns of the events a batch writes, ready for one `unnest` insert.
#[derive(Default)]
struct EventRows<'a> {
    positions: Vec<i64>,
    stream_ids: Vec<&'a str>,
    stream_types: Vec<&'a str>,
    stream_versions: Vec<i64>,
    event_types: Vec<&'a str>,
    event_versions: Vec<&'a str>,
    payloads: Vec<JsonbText<'a>>,
    metadata: Vec<JsonbText<'a>>,
    previous_hashes: Vec<Vec<u8>>,
    hashes: Vec<Vec<u8>>,
}

/// The chain head while a batch is planned.
struct Cursor {
    community_id: CommunityId,
    position: i64,
    hash: [u8; 32],
    recorded_at: DateTime<Utc>,
    recorded_at_text: String,
}

type Results = Vec<Result<AppendOutcome, StoreError>>;

async fn write_batch(
    inner: &Inner,
    community_id: CommunityId,
    appends: &[&ValidatedAppend],
) -> Result<Results, StoreError> {
    let mut client = inner.pool.get().await?;
    let transaction = client.transaction().await?;
    let community = community_id.as_uuid();
    let keys: Vec<&str> = appends
        .iter()
        .filter_map(|a| a.request.idempotency_key.as_ref().map(|k| k.as_str()))
        .collect();
    let mut stream_ids: Vec<&str> = appends
        .iter()
        .flat_map(|a| a.request.streams.iter().map(|s| s.stream_id.as_str()))
        .collect();
    stream_ids.sort_unstable();
    stream_ids.dedup();

    let head_params: [&(dyn ToSql + Sync); 1] = [&community];
    let key_params: [&(dyn ToSql + Sync); 2] = [&community, &keys];
    let version_params: [&(dyn ToSql + Sync); 2] = [&community, &stream_ids];
    // Prepared once per connection; the three are sent together (tokio-postgres
    // pipelines them) and the two lookups run after the head row is locked,
    // so they see every earlier commit.
    let (lock_head, find_keys, find_versions) = futures::try_join!(
        transaction.prepare_cached(LOCK_HEAD),
        transaction.prepare_cached(FIND_KEYS),
        transaction.prepare_cached(FIND_VERSIONS),
    )?;
    let (head, known_keys, versions) = futures::try_join!(
        transaction.query_opt(&lock_head, &head_params),
        transaction.query(&find_keys, &key_params),
        transaction.query(&find_versions, &version_params),
    )?;
    let Some(head) = head else {
        return Ok(vec![
            Err(StoreError::UnknownCommunity(community_id));
            appends.len()
        ]);
    };
    let last_recorded_at: Option<DateTime<Utc>> = head.get(2);
    let now: DateTime<Utc> = head.get(3);
    let now = now
        .duration_trunc(TimeDelta::microseconds(1))
        .unwrap_or(now);
    let mut cursor = Cursor {
        community_id,
        position: head.get(0),
        hash: to_hash(head.get(1))?,
        // The database clock, never earlier than the last recorded event, so
        // that "as of a time" always cuts the log at one position.
        recorded_at: last_recorded_at.map_or(now, |last| last.max(now)),
        recorded_at_text: String::new(),
    };
    cursor.recorded_at_text = timestamp_text(cursor.recorded_at);
    let head_position = cursor.position;
    let mut known: HashMap<String, ([u8; 32], AppendOutcome)> = HashMap::new();
    for row in known_keys {
        let outcome: Json<AppendOutcome> = row.get(2);
        known.insert(row.get(0), (to_hash(row.get(1))?, outcome.0));
    }
    let mut versions: HashMap<&str, i64> = versions
        .iter()
        .map(|row| {
            (
                row.get::<_, &str>(0),
                row.get::<_, Option<i64>>(1).unwrap_or(0),
            )
        })
        .collect();

    let mut rows = EventRows::default();
    let mut new_keys: Vec<(&str, [u8; 32], AppendOutcome)> = Vec::new();
    let mut results = Vec::with_capacity(appends.len());
    for append in appends {
        let key = append.request.idempotency_key.as_ref().map(|k| k.as_str());
        if let Some((stored_hash, outcome)) = key.and_then(|k| known.get(k)) {
            results.push(replay(
                key.unwrap_or_default(),
                stored_hash,
                outcome,
                append,
            ));
            continue;
        }
        if let Some(conflict) = find_conflict(append, &versions) {
            results.push(Err(conflict));
            continue;
        }
        let outcome = plan_append(append, &mut cursor, &mut versions, &mut rows);
        if let Some(key) = key {
            known.insert(key.to_string(), (append.request_hash, outcome.clone()));
            new_keys.push((key, append.request_hash, outcome.clone()));
        }
        results.push(Ok(outcome));
    }

    if cursor.position > head_position {
        write_rows(&transaction, &cursor, &rows, &new_keys).await?;
        transaction.commit().await?;
        inner.announce_local(community_id, cursor.position);
    } else {
        transaction.rollback().await?;
    }
    Ok(results)
}

fn replay(
    key: &str,
    stored_hash: &[u8; 32],
    outcome: &AppendOutcome,
    append: &ValidatedAppend,
) -> Result<AppendOutcome, StoreError> {
    if *stored_hash != append.request_hash {
        return Err(StoreError::IdempotencyKeyReused {
            key: key.to_string(),
        });
    }
    Ok(AppendOutcome {
        replayed: true,
        ..outcome.clone()
    })
}

fn find_conflict(append: &ValidatedAppend, versions: &HashMap<&str, i64>) -> Option<StoreError> {
    append.request.streams.iter().find_map(|stream| {
        let actual = versions
            .get(stream.stream_id.as_str())
            .copied()
            .unwrap_or(0);
        (!stream.expected.admits(actual)).then(|| StoreError::Conflict {
            stream_id: stream.stream_id.to_string(),
            expected: stream.expected,
            actual,
        })
    })
}

/// Assigns positions, stream versions and hashes to one append's events.
fn plan_append<'a>(
    append: &'a ValidatedAppend,
    cursor: &mut Cursor,
    versions: &mut HashMap<&'a str, i64>,
    rows: &mut EventRows<'a>,
) -> AppendOutcome {
    let first_position = cursor.position + 1;
    let mut streams = Vec::with_capacity(append.request.streams.len());
    let mut encoded = append.encoded.iter();
    for stream in &append.request.streams {
        let version = versions.entry(stream.stream_id.as_str()).or_insert(0);
        for event in &stream.events {
            let encoded = encoded.next().expect("one encoding per event");
            cursor.position += 1;
            *version += 1;
            let header = EventHeader {
                community_id: cursor.community_id,
                position: cursor.position,
                stream_id: stream.stream_id.as_str(),
                stream_type: stream.stream_type.as_str(),
                stream_version: *version,
                event_type: event.event_type.as_str(),
                event_version: &event.event_version,
                recorded_at: &cursor.recorded_at_text,
            };
            let canonical = compose_event(&header, &encoded.payload, &encoded.metadata);
            let hash = chain_hash(&cursor.hash, &canonical);
            rows.positions.push(cursor.position);
            rows.stream_ids.push(stream.stream_id.as_str());
            rows.stream_types.push(stream.stream_type.as_str());
            rows.stream_versions.push(*version);
            rows.event_types.push(event.event_type.as_str());
            rows.event_versions.push(&event.event_version);
            rows.payloads.push(JsonbText(&encoded.payload));
            rows.metadata.push(JsonbText(&encoded.metadata));
            rows.previous_hashes.push(cursor.hash.to_vec());
            rows.hashes.push(hash.to_vec());
            cursor.hash = hash;
        }
        streams.push(StreamVersion {
            stream_id: stream.stream_id.clone(),
            version: *version,
        });
    }
    AppendOutcome {
        community_id: cursor.community_id,
        first_position,
        last_position: cursor.position,
        streams,
        recorded_at: cursor.recorded_at,
        replayed: false,
    }
}

async fn write_rows(
    transaction: &deadpool_postgres::Transaction<'_>,
    cursor: &Cursor,
    rows: &EventRows<'_>,
    new_keys: &[(&str, [u8; 32], AppendOutcome)],
) -> Result<(), StoreError> {
    let community = cursor.community_id.as_uuid();
    let key_names: Vec<&str> = new_keys.iter().map(|k| k.0).collect();
    let key_hashes: Vec<&[u8]> = new_keys.iter().map(|k| &k.1[..]).collect();
    let key_outcomes: Vec<Json<&AppendOutcome>> = new_keys.iter().map(|k| Json(&k.2)).collect();
    let notice = format!("{}:{}", cursor.community_id, cursor.position);
    let hash = &cursor.hash[..];
    let event_params: [&(dyn ToSql + Sync); 12] = [
        &community,
        &rows.positions,
        &rows.stream_ids,
        &rows.stream_types,
        &rows.stream_versions,
        &rows.event_types,
        &rows.event_versions,
        &rows.payloads,
        &rows.metadata,
        &cursor.recorded_at,
        &rows.previous_hashes,
        &rows.hashes,
    ];
    let key_params: [&(dyn ToSql + Sync); 5] = [
        &community,
        &key_names,
        &key_hashes,
        &key_outcomes,
        &cursor.recorded_at,
    ];
    let head_params: [&(dyn ToSql + Sync); 4] =
        [&community, &cursor.position, &hash, &cursor.recorded_at];
    let notify_params: [&(dyn ToSql + Sync); 2] = [&APPENDED_CHANNEL, &notice];
    let (insert_events, insert_keys, move_head, notify) = futures::try_join!(
        transaction.prepare_cached(INSERT_EVENTS),
        transaction.prepare_cached(INSERT_KEYS),
        transaction.prepare_cached(MOVE_HEAD),
        transaction.prepare_cached(NOTIFY),
    )?;
    futures::try_join!(
        transaction.execute(&insert_events, &event_params),
        transaction.execute(&insert_keys, &key_params),
        transaction.execute(&move_head, &head_params),
        transaction.execute(&notify, &notify_params),
    )?;
    Ok(())
}

pub(crate) fn to_hash(bytes: &[u8]) -> Result<[u8; 32], StoreError> {
    bytes
        .try_into()
        .map_err(|_| StoreError::Corrupt(format!("a hash of {} bytes", bytes.len())))
}
