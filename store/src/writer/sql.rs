//! The writer's SQL: what planning must look up, and writing a planned batch.

use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;
use tokio_postgres::types::{Json, ToSql};

use super::plan::{HeadState, Known, Plan, PlannedEvent, Unknown};
use super::PendingAppend;
use crate::append::EncodedEvent;
use crate::error::StoreError;
use crate::merkle::{Frontier, Hash, Subtree};
use crate::pgjson::JsonbText;
use crate::types::{AppendOutcome, CommunityId, NewEvent, RecordedEvent, StreamAppend};

pub(crate) const APPENDED_CHANNEL: &str = "civic_ledger_appended";

const LOCK_HEAD: &str = "SELECT last_position, last_hash, last_recorded_at, clock_timestamp(), \
    tree_size, tree_frontier FROM community_heads WHERE community_id = $1 FOR UPDATE";
const CLOCK: &str = "SELECT clock_timestamp() WHERE $1::uuid IS NOT NULL";
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
/// The contents the batch's writing appends carry. An erased hash stays
/// erased: a hash already there is left as it is.
const INSERT_CONTENTS: &str =
    "INSERT INTO contents (community_id, content_hash, media_type, body) \
    SELECT $1, u.h, u.m, u.b FROM unnest($2::bytea[], $3::text[], $4::bytea[]) AS u(h, m, b) \
    ON CONFLICT DO NOTHING";
/// Moves the head only from where the batch was planned, taking its row lock.
/// A batch in flight waits here for the batch before it, so batches commit in
/// position order; a head moved by anyone else raises `HEAD_MOVED`.
const MOVE_HEAD: &str = "SELECT move_community_head($1, $2, $3, $4, $5, $6, $7, $8)";
/// Raised by `move_community_head` (migrations/V9__merkle_tree.sql).
const HEAD_MOVED: &str = "CL001";

/// The tree's subtrees a batch completed (migrations/V9__merkle_tree.sql).
const INSERT_NODES: &str = "INSERT INTO tree_nodes (community_id, level, index, hash) \
    SELECT $1, u.l, u.i, u.h FROM unnest($2::smallint[], $3::bigint[], $4::bytea[]) AS u(l, i, h)";
/// The events' hashes from a position on, to fold into the tree.
const EVENT_HASHES: &str = "SELECT hash FROM events WHERE community_id = $1 \
    AND position > $2 AND position <= $3 ORDER BY position";

/// How the lookups start: under the head lock, or without any lock.
#[derive(Clone, Copy, PartialEq)]
pub(crate) enum Lock {
    Head,
    None,
}

pub(crate) struct Lookup {
    pub database_now: DateTime<Utc>,
    /// The head read under its lock (`Lock::Head` only); `None` for an
    /// unknown community. Its `tree` is `None`: the writer decides.
    pub head: Option<HeadState>,
    /// The tree as stored with the head (`Lock::Head` only), which may
    /// cover fewer events than the log holds.
    pub stored_tree: Option<Frontier>,
}

/// Reads the clock (and, with `Lock::Head`, locks and reads the head), then
/// the stream versions and idempotency keys in `unknown`.
pub(crate) async fn look_up<C: GenericClient>(
    client: &C,
    community_id: CommunityId,
    unknown: &Unknown<'_>,
    known: &mut Known,
    lock: Lock,
) -> Result<Lookup, StoreError> {
    let community = community_id.as_uuid();
    let (keys, streams) = (&unknown.keys, &unknown.streams);
    let first_sql = if lock == Lock::Head { LOCK_HEAD } else { CLOCK };
    let (first, find_keys, find_versions) = futures::try_join!(
        client.prepare_cached(first_sql),
        client.prepare_cached(FIND_KEYS),
        client.prepare_cached(FIND_VERSIONS),
    )?;
    let first_params: [&(dyn ToSql + Sync); 1] = [&community];
    let key_params: [&(dyn ToSql + Sync); 2] = [&community, keys];
    let version_params: [&(dyn ToSql + Sync); 2] = [&community, streams];
    // Sent together (tokio-postgres pipelines them); under the lock, the
    // lookups run after it is taken and so see every earlier commit.
    let (first, key_rows, version_rows) = futures::try_join!(
        client.query_opt(&first, &first_params),
        client.query(&find_keys, &key_params),
        client.query(&find_versions, &version_params),
    )?;
    for row in key_rows {
        let outcome: Json<AppendOutcome> = row.get(2);
        let hash = super::to_hash(row.get(1))?;
        known.keys.insert(row.get(0), (hash, outcome.0));
    }
    for row in version_rows {
        let version: Option<i64> = row.get(1);
        known.versions.insert(row.get(0), version.unwrap_or(0));
    }
    let Some(first) = first else {
        return Ok(Lookup {
            database_now: Utc::now(),
            head: None,
            stored_tree: None,
        });
    };
    if lock == Lock::None {
        return Ok(Lookup {
            database_now: first.get(0),
            head: None,
            stored_tree: None,
        });
    }
    let tree_size: i64 = first.get(4);
    let frontier: &[u8] = first.get(5);
    let roots = frontier
        .chunks(32)
        .map(super::to_hash)
        .collect::<Result<Vec<_>, _>>()?;
    let stored_tree = Frontier::from_parts(tree_size as u64, roots)
        .ok_or_else(|| StoreError::Corrupt("the tree's frontier does not fit its size".into()))?;
    Ok(Lookup {
        database_now: first.get(3),
        head: Some(HeadState {
            position: first.get(0),
            hash: super::to_hash(first.get(1))?,
            recorded_at: first.get(2),
            tree: None,
        }),
        stored_tree: Some(stored_tree),
    })
}

/// Folds the events after `tree`'s last leaf, up to `position`, into it,
/// returning the stored subtrees this completes: the tree of a log written
/// before it (or by a store not keeping it) catches up, under the head lock.
pub(crate) async fn fold_into_tree<C: GenericClient>(
    client: &C,
    community_id: CommunityId,
    tree: &mut Frontier,
    position: i64,
) -> Result<Vec<(Subtree, Hash)>, StoreError> {
    const CHUNK_EVENTS: i64 = 50_000;
    if tree.size() as i64 > position {
        return Err(StoreError::Corrupt(
            "the tree holds more leaves than the log".into(),
        ));
    }
    let mut nodes = Vec::new();
    let statement = client.prepare_cached(EVENT_HASHES).await?;
    while (tree.size() as i64) < position {
        let from = tree.size() as i64;
        let to = position.min(from + CHUNK_EVENTS);
        let rows = client
            .query(&statement, &[&community_id.as_uuid(), &from, &to])
            .await?;
        if rows.len() as i64 != to - from {
            return Err(StoreError::Corrupt(format!(
                "positions {} to {to} are not all stored",
                from + 1
            )));
        }
        for row in rows {
            let hash = super::to_hash(row.get(0))?;
            tree.push(&hash, |subtree, root| nodes.push((subtree, root)));
        }
    }
    Ok(nodes)
}

/// The columns of a planned batch's events, ready for one `unnest` insert.
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
    previous_hashes: Vec<&'a [u8]>,
    hashes: Vec<&'a [u8]>,
}

/// A planned event with what it was planned from.
struct PlannedRow<'a> {
    planned: &'a PlannedEvent,
    stream: &'a StreamAppend,
    event: &'a NewEvent,
    encoded: &'a EncodedEvent,
}

/// The events a plan writes, in position order, each with its request's
/// stream, event and encoding.
fn planned_rows<'a>(
    batch: &'a [PendingAppend],
    plan: &'a Plan,
) -> impl Iterator<Item = PlannedRow<'a>> {
    plan.events.iter().map(move |planned| {
        let append = &batch[planned.append].append;
        let stream = &append.request.streams[planned.stream];
        let flat_index: usize = append.request.streams[..planned.stream]
            .iter()
            .map(|s| s.events.len())
            .sum::<usize>()
            + planned.event;
        PlannedRow {
            planned,
            stream,
            event: &stream.events[planned.event],
            encoded: &append.encoded[flat_index],
        }
    })
}

impl<'a> EventRows<'a> {
    fn of(batch: &'a [PendingAppend], plan: &'a Plan) -> Self {
        let mut rows = EventRows::default();
        for row in planned_rows(batch, plan) {
            rows.positions.push(row.planned.position);
            rows.stream_ids.push(row.stream.stream_id.as_str());
            rows.stream_types.push(row.stream.stream_type.as_str());
            rows.stream_versions.push(row.planned.version);
            rows.event_types.push(row.event.event_type.as_str());
            rows.event_versions.push(&row.event.event_version);
            rows.payloads.push(JsonbText(&row.encoded.payload));
            rows.metadata.push(JsonbText(&row.encoded.metadata));
            rows.previous_hashes.push(&row.planned.previous_hash);
            rows.hashes.push(&row.planned.hash);
        }
        rows
    }
}

/// The events a committed plan wrote, as a read of the log returns them
/// (for the tail kept in memory, `tail.rs`). `None` if one cannot be
/// rebuilt, which a validated append never causes; then nothing is kept.
pub(crate) fn recorded_events(
    community_id: CommunityId,
    batch: &[PendingAppend],
    plan: &Plan,
) -> Option<Vec<RecordedEvent>> {
    planned_rows(batch, plan)
        .map(|row| {
            Some(RecordedEvent {
                community_id,
                position: row.planned.position,
                stream_id: row.stream.stream_id.as_str().to_string(),
                stream_type: row.stream.stream_type.as_str().to_string(),
                stream_version: row.planned.version,
                event_type: row.event.event_type.as_str().to_string(),
                event_version: row.event.event_version.clone(),
                payload: crate::tail::raw_payload(&row.encoded.payload)?,
                metadata: std::sync::Arc::new(row.event.metadata.clone()),
                recorded_at: plan.recorded_at,
                previous_hash: row.planned.previous_hash,
                hash: row.planned.hash,
            })
        })
        .collect()
}

/// How writing a planned batch ended.
pub(crate) enum WriteEnd {
    Committed,
    /// The head was not where the batch was planned; nothing was written.
    HeadMoved,
    /// A statement failed, so the transaction rolled back: nothing was written.
    NotCommitted(StoreError),
    /// The COMMIT itself failed: whether the batch landed cannot be known.
    Unknown(StoreError),
}

/// Writes a planned batch and commits it, as one pipeline (BEGIN, head move,
/// inserts, COMMIT): no round trip to this process happens while the head
/// row is locked. The commit is announced after it lands (`notifier.rs`). With `begin`, the
/// transaction starts in the same pipeline; without, the caller began it.
pub(crate) async fn write_planned(
    client: &deadpool_postgres::Object,
    community_id: CommunityId,
    batch: &[PendingAppend],
    plan: &Plan,
    begin: bool,
) -> WriteEnd {
    let community = community_id.as_uuid();
    let rows = EventRows::of(batch, plan);
    let key_names: Vec<&str> = plan
        .new_keys
        .iter()
        .map(|(index, _, _)| {
            let key = batch[*index].append.request.idempotency_key.as_ref();
            key.expect("only idempotent appends record keys").as_str()
        })
        .collect();
    let key_hashes: Vec<&[u8]> = plan.new_keys.iter().map(|k| &k.1[..]).collect();
    let key_outcomes: Vec<Json<&AppendOutcome>> =
        plan.new_keys.iter().map(|k| Json(&k.2)).collect();
    // Contents of the appends that write events (not of replays or
    // refusals), each hash once.
    let mut writing: Vec<usize> = plan.events.iter().map(|e| e.append).collect();
    writing.dedup();
    let mut content_hashes: Vec<&[u8]> = Vec::new();
    let mut content_types: Vec<&str> = Vec::new();
    let mut content_bodies: Vec<&[u8]> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for index in writing {
        let append = &batch[index].append;
        for (content, hash) in append.request.contents.iter().zip(&append.content_hashes) {
            if seen.insert(hash) {
                content_hashes.push(hash);
                content_types.push(&content.media_type);
                content_bodies.push(&content.body);
            }
        }
    }
    let content_params: [&(dyn ToSql + Sync); 4] =
        [&community, &content_hashes, &content_types, &content_bodies];
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
        &plan.recorded_at,
        &rows.previous_hashes,
        &rows.hashes,
    ];
    let key_params: [&(dyn ToSql + Sync); 5] = [
        &community,
        &key_names,
        &key_hashes,
        &key_outcomes,
        &plan.recorded_at,
    ];
    let tree_size: Option<i64> = plan.head.tree.as_ref().map(|t| t.size() as i64);
    let tree_frontier: Option<Vec<u8>> = plan.head.tree.as_ref().map(|t| t.roots().concat());
    let head_params: [&(dyn ToSql + Sync); 8] = [
        &community,
        &plan.head.position,
        &&plan.head.hash[..],
        &plan.recorded_at,
        &plan.base.position,
        &&plan.base.hash[..],
        &tree_size,
        &tree_frontier,
    ];
    let node_levels: Vec<i16> = plan.new_nodes.iter().map(|(s, _)| s.level as i16).collect();
    let node_indexes: Vec<i64> = plan.new_nodes.iter().map(|(s, _)| s.index as i64).collect();
    let node_hashes: Vec<&[u8]> = plan.new_nodes.iter().map(|(_, h)| &h[..]).collect();
    let node_params: [&(dyn ToSql + Sync); 4] =
        [&community, &node_levels, &node_indexes, &node_hashes];
    let prepared = futures::try_join!(
        client.prepare_cached(INSERT_EVENTS),
        client.prepare_cached(INSERT_KEYS),
        client.prepare_cached(INSERT_CONTENTS),
        client.prepare_cached(MOVE_HEAD),
        client.prepare_cached(INSERT_NODES),
    );
    let (insert_events, insert_keys, insert_contents, move_head, insert_nodes) = match prepared {
        Ok(statements) => statements,
        Err(error) => return WriteEnd::NotCommitted(error.into()),
    };
    let began = async {
        if begin {
            client.batch_execute("BEGIN").await
        } else {
            Ok(())
        }
    };
    // Polled together, the requests leave in this order on one connection.
    // The head moves first: that takes its row lock before any row is
    // inserted, as the lock-first path does, so writers of several processes
    // queue on the head row instead of deadlocking on each other's rows.
    let (began, moved, inserted, keys, contents, nodes, committed) = futures::join!(
        began,
        client.execute(&move_head, &head_params),
        client.execute(&insert_events, &event_params),
        async {
            // Most appends carry no key: skip the statement rather than send
            // empty arrays.
            if key_names.is_empty() {
                Ok(0)
            } else {
                client.execute(&insert_keys, &key_params).await
            }
        },
        async {
            if content_hashes.is_empty() {
                Ok(0)
            } else {
                client.execute(&insert_contents, &content_params).await
            }
        },
        async {
            // One batch in about 128 completes a stored subtree.
            if node_levels.is_empty() {
                Ok(0)
            } else {
                client.execute(&insert_nodes, &node_params).await
            }
        },
        client.batch_execute("COMMIT"),
    );
    if let Err(error) = &moved {
        if error.code().map(|c| c.code()) == Some(HEAD_MOVED) {
            return WriteEnd::HeadMoved;
        }
    }
    let inserted_count = inserted.as_ref().map_or(0, |n| *n as usize);
    let statements = [began.map(|()| 0), inserted, keys, contents, nodes, moved];
    let failed = statements.into_iter().find_map(Result::err);
    match (failed, committed) {
        // After a failed statement the transaction is aborted and the
        // COMMIT rolls it back.
        (Some(error), _) => WriteEnd::NotCommitted(error.into()),
        (None, Err(error)) => WriteEnd::Unknown(error.into()),
        (None, Ok(())) => {
            assert_eq!(
                inserted_count,
                plan.events.len(),
                "every planned event is inserted"
            );
            WriteEnd::Committed
        }
    }
}
