//! Planning a batch: positions, stream versions, hashes and each append's
//! outcome, from a known head. Pure: the SQL is in `sql.rs`.

use std::collections::HashMap;

use chrono::{DateTime, DurationRound, TimeDelta, Utc};

use crate::append::ValidatedAppend;
use crate::canonical::{chain_hash, compose_event, timestamp_text, EventHeader};
use crate::error::StoreError;
use crate::types::{AppendOutcome, CommunityId, ExpectedVersion, StreamVersion};

/// Entries the writer remembers at most before it forgets them all (which
/// only costs lookups in the database).
const KNOWN_ENTRIES_MAX: usize = 100_000;

/// A community's chain head as the writer believes it to be.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct HeadState {
    pub position: i64,
    pub hash: [u8; 32],
    pub recorded_at: Option<DateTime<Utc>>,
}

/// What the writer knows between batches: stream versions and idempotency
/// outcomes, committed or written by a batch still in flight. Anything
/// written by another process is caught by the head check of the next batch.
#[derive(Default)]
pub(crate) struct Known {
    pub versions: HashMap<String, i64>,
    pub keys: HashMap<String, ([u8; 32], AppendOutcome)>,
}

impl Known {
    pub fn is_full(&self) -> bool {
        self.versions.len() + self.keys.len() > KNOWN_ENTRIES_MAX
    }

    pub fn clear(&mut self) {
        self.versions.clear();
        self.keys.clear();
    }
}

pub(crate) struct PlannedEvent {
    pub append: usize,
    pub stream: usize,
    pub event: usize,
    pub position: i64,
    pub version: i64,
    pub previous_hash: [u8; 32],
    pub hash: [u8; 32],
}

pub(crate) struct Plan {
    /// The head this batch builds on; its commit checks the head is still there.
    pub base: HeadState,
    /// The head after this batch.
    pub head: HeadState,
    pub recorded_at: DateTime<Utc>,
    pub results: Vec<Result<AppendOutcome, StoreError>>,
    pub events: Vec<PlannedEvent>,
    /// (append index, request hash, outcome) of each idempotent append written.
    pub new_keys: Vec<(usize, [u8; 32], AppendOutcome)>,
    /// An append expected a stream at a version newer than the writer
    /// believed it to be: its caller read that version from the database,
    /// so another process wrote the stream and the writer's beliefs are
    /// stale. Conflicts judged on them would be false; the batch must be
    /// planned again from the database.
    pub outdated: bool,
}

impl Plan {
    pub fn writes(&self) -> bool {
        !self.events.is_empty()
    }
}

/// Plans `appends` on top of `base`. `known` must hold the version of every
/// stream the batch names and every idempotency key the database knows of;
/// it is updated with what this batch writes.
pub(crate) fn plan_batch(
    community_id: CommunityId,
    appends: &[&ValidatedAppend],
    base: HeadState,
    database_now: DateTime<Utc>,
    known: &mut Known,
) -> Plan {
    let now = database_now
        .duration_trunc(TimeDelta::microseconds(1))
        .unwrap_or(database_now);
    // The database clock, never earlier than the last recorded event, so
    // that "as of a time" always cuts the log at one position.
    let recorded_at = base.recorded_at.map_or(now, |last| last.max(now));
    let recorded_at_text = timestamp_text(recorded_at);
    let mut head = HeadState {
        recorded_at: Some(recorded_at),
        ..base.clone()
    };
    let mut events = Vec::new();
    let mut new_keys = Vec::new();
    let mut results = Vec::with_capacity(appends.len());
    let mut outdated = false;
    for (index, append) in appends.iter().enumerate() {
        let key = append.request.idempotency_key.as_ref().map(|k| k.as_str());
        if let Some((stored_hash, outcome)) = key.and_then(|k| known.keys.get(k)) {
            results.push(replay(
                key.unwrap_or_default(),
                stored_hash,
                outcome,
                append,
            ));
            // It wrote nothing now: nothing decided behind it may land.
            append.landing.planned(false);
            continue;
        }
        if let Some(refused) = refused_behind(append, &known.versions) {
            append.landing.planned(false);
            results.push(Err(refused));
            continue;
        }
        if let Some(conflict) = find_conflict(append, &known.versions) {
            outdated |= matches!(
                conflict,
                StoreError::Conflict { expected: ExpectedVersion::Exact(expected), actual, .. }
                    if expected > actual
            );
            results.push(Err(conflict));
            append.landing.planned(false);
            continue;
        }
        append.landing.planned(true);
        let first_position = head.position + 1;
        let mut streams = Vec::with_capacity(append.request.streams.len());
        let mut encoded = append.encoded.iter();
        for (stream_index, stream) in append.request.streams.iter().enumerate() {
            let version = known
                .versions
                .entry(stream.stream_id.as_str().to_string())
                .or_insert(0);
            for (event_index, event) in stream.events.iter().enumerate() {
                let encoded = encoded.next().expect("one encoding per event");
                head.position += 1;
                *version += 1;
                let header = EventHeader {
                    community_id,
                    position: head.position,
                    stream_id: stream.stream_id.as_str(),
                    stream_type: stream.stream_type.as_str(),
                    stream_version: *version,
                    event_type: event.event_type.as_str(),
                    event_version: &event.event_version,
                    recorded_at: &recorded_at_text,
                };
                let canonical = compose_event(&header, &encoded.payload, &encoded.metadata);
                let hash = chain_hash(&head.hash, &canonical);
                events.push(PlannedEvent {
                    append: index,
                    stream: stream_index,
                    event: event_index,
                    position: head.position,
                    version: *version,
                    previous_hash: head.hash,
                    hash,
                });
                head.hash = hash;
            }
            streams.push(StreamVersion {
                stream_id: stream.stream_id.clone(),
                version: *version,
            });
        }
        let outcome = AppendOutcome {
            community_id,
            first_position,
            last_position: head.position,
            streams,
            recorded_at,
            replayed: false,
        };
        if let Some(key) = key {
            known
                .keys
                .insert(key.to_string(), (append.request_hash, outcome.clone()));
            new_keys.push((index, append.request_hash, outcome.clone()));
        }
        results.push(Ok(outcome));
    }
    Plan {
        base,
        head,
        recorded_at,
        results,
        events,
        new_keys,
        outdated,
    }
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

/// A refusal for an append decided behind another that will not land:
/// a conflict on the first stream it names, as if that stream had moved
/// (the state the decision rested on is not the one that will be there).
fn refused_behind(append: &ValidatedAppend, versions: &HashMap<String, i64>) -> Option<StoreError> {
    if append
        .request
        .after
        .iter()
        .all(|ahead| ahead.admits_followers())
    {
        return None;
    }
    let (stream_id, expected) = append.request.named_streams().next()?;
    Some(StoreError::Conflict {
        stream_id: stream_id.to_string(),
        expected,
        actual: versions.get(stream_id.as_str()).copied().unwrap_or(0),
    })
}

fn find_conflict(append: &ValidatedAppend, versions: &HashMap<String, i64>) -> Option<StoreError> {
    append
        .request
        .named_streams()
        .find_map(|(stream_id, expected)| {
            let actual = versions.get(stream_id.as_str()).copied().unwrap_or(0);
            (!expected.admits(actual)).then(|| StoreError::Conflict {
                stream_id: stream_id.to_string(),
                expected,
                actual,
            })
        })
}
