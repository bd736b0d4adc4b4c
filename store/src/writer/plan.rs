//! Planning a batch: positions, stream versions, hashes and each append's
//! outcome, from a known head. Pure: the SQL is in `sql.rs`.

use std::collections::HashMap;

use chrono::{DateTime, DurationRound, TimeDelta, Utc};

use crate::append::ValidatedAppend;
use crate::canonical::{chain_hash, compose_event, timestamp_text, EventHeader};
use crate::error::StoreError;
use crate::merkle::{Frontier, Hash, Subtree};
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
    /// The log's Merkle tree, when the writer keeps it and it covers the
    /// log up to `position`; `None` leaves the stored tree as it is.
    pub tree: Option<Frontier>,
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

/// What planning a batch must read from the database first: the
/// idempotency keys and stream versions the writer does not know.
pub(crate) struct Unknown<'a> {
    pub keys: Vec<&'a str>,
    pub streams: Vec<&'a str>,
}

impl Unknown<'_> {
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty() && self.streams.is_empty()
    }
}

/// The keys and streams of `appends` that `known` lacks. With
/// `assume_new` (a batch planned without the head lock), some are taken to
/// be new instead of read: every key, and every stream the batch only
/// writes, each time expecting it not to exist yet (a filing's new report,
/// a new redemption). A wrong guess cannot land: the batch's inserts break
/// a unique index (`idempotency_keys`' key, `events_by_stream`), its
/// transaction writes nothing, and it is planned again under the head
/// lock, which reads everything it names. A stream a batch names as a
/// condition, or writes at a version it may already have, is always read:
/// nothing the batch inserts would catch a wrong guess about it.
pub(crate) fn unknown<'a>(
    appends: &[&'a ValidatedAppend],
    known: &Known,
    assume_new: bool,
) -> Unknown<'a> {
    let mut keys: Vec<&str> = if assume_new {
        Vec::new()
    } else {
        appends
            .iter()
            .filter_map(|a| a.request.idempotency_key.as_ref().map(|k| k.as_str()))
            .filter(|k| !known.keys.contains_key(*k))
            .collect()
    };
    keys.sort_unstable();
    keys.dedup();
    let mut named: Vec<(&str, bool)> = appends
        .iter()
        .map(|a| &a.request)
        .flat_map(|r| {
            let written = r.streams.iter().map(|s| {
                let new = matches!(
                    s.expected,
                    ExpectedVersion::NoStream | ExpectedVersion::Exact(0)
                );
                (s.stream_id.as_str(), new)
            });
            let conditions = r.conditions.iter().map(|c| (c.stream_id.as_str(), false));
            written.chain(conditions)
        })
        .filter(|(stream, _)| !known.versions.contains_key(*stream))
        .collect();
    named.sort_unstable();
    // Sorted, a stream's `false` comes first: one name that may not be
    // guessed is enough to read it.
    named.dedup_by(|later, earlier| later.0 == earlier.0);
    let streams = named
        .into_iter()
        .filter(|(_, new)| !(assume_new && *new))
        .map(|(stream, _)| stream)
        .collect();
    Unknown { keys, streams }
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
    /// The tree's subtrees this batch completes that are stored, with
    /// their roots (and those of events folded in before it, see
    /// `Writer::catch_up_tree`).
    pub new_nodes: Vec<(Subtree, Hash)>,
    /// An append expected a stream at a version newer than the writer
    /// believed it to be: its caller read that version from the database,
    /// so another process wrote the stream and the writer's beliefs are
    /// stale. Conflicts judged on them would be false; the batch must be
    /// planned again from the database. So is a batch that refused an
    /// append whose key or new stream was guessed (see [`unknown`]): the
    /// key may be a repeat, whose answer is its first outcome, not the
    /// refusal.
    pub outdated: bool,
}

impl Plan {
    pub fn writes(&self) -> bool {
        !self.events.is_empty()
    }
}

/// Plans `appends` on top of `base`. `known` must hold the version of every
/// stream the batch names and every idempotency key the database knows of,
/// but for those [`unknown`] assumes new (a missing stream is at version 0,
/// a missing key was never used); it is updated with what this batch
/// writes. `guessed`: whether such were assumed (a batch planned without
/// the head lock), rather than read and found absent.
pub(crate) fn plan_batch(
    community_id: CommunityId,
    appends: &[&ValidatedAppend],
    base: HeadState,
    database_now: DateTime<Utc>,
    known: &mut Known,
    guessed: bool,
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
    let mut new_nodes = Vec::new();
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
        let refusal = refused_behind(append, &known.versions).or_else(|| {
            let conflict = find_conflict(append, &known.versions)?;
            outdated |= matches!(
                conflict,
                StoreError::Conflict { expected: ExpectedVersion::Exact(expected), actual, .. }
                    if expected > actual
            );
            Some(conflict)
        });
        if let Some(refused) = refusal {
            outdated |= guessed && rests_on_a_guess(append, known);
            append.landing.planned(false);
            results.push(Err(refused));
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
                if let Some(tree) = &mut head.tree {
                    tree.push(&hash, |subtree, root| new_nodes.push((subtree, root)));
                }
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
        new_nodes,
        outdated,
    }
}

/// Whether planning `append` assumed its key or a stream it writes new,
/// not having read them.
fn rests_on_a_guess(append: &ValidatedAppend, known: &Known) -> bool {
    let request = &append.request;
    let key_guessed = request
        .idempotency_key
        .as_ref()
        .is_some_and(|k| !known.keys.contains_key(k.as_str()));
    key_guessed
        || request
            .streams
            .iter()
            .any(|s| !known.versions.contains_key(s.stream_id.as_str()))
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
