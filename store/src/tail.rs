//! The newest events this process committed, per community, kept in memory
//! for the readers that follow the log ([`EventStore::read_log_followed`]):
//! every projection reads each batch the moment it commits, and without
//! this each of them read it again from PostgreSQL and decoded it again.
//!
//! A community's tail is one unbroken range of positions. The writer adds
//! each batch once it has committed, in position order; a batch that does
//! not follow the tail's last position (another process wrote between, or
//! this writer's batch failed and was planned again) starts the tail over.
//! So whatever the tail answers is exactly what the log holds there: events
//! are never changed once committed. Only the payload's text may differ in
//! form (the canonical JSON sent, not PostgreSQL's `jsonb` rendering of
//! it); both decode to the same values.
//!
//! [`EventStore::read_log_followed`]: crate::EventStore::read_log_followed

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use serde_json::value::RawValue;

use crate::store::lock;
use crate::types::{CommunityId, RecordedEvent};

/// Events kept per community at most: a few of the followers' batches.
pub(crate) const TAIL_EVENTS_MAX: usize = 4_096;
/// Payload and metadata bytes kept per community at most, so that large
/// events cannot make the tail hold much memory.
pub(crate) const TAIL_BYTES_MAX: usize = 8 * 1024 * 1024;
/// Bytes kept across all communities at most: with many communities
/// writing, the tails of those that wrote least recently are dropped
/// (their followers read the log).
pub(crate) const TAILS_BYTES_MAX: usize = 64 * 1024 * 1024;

pub(crate) struct Tails {
    communities: Mutex<Kept>,
    bytes_max: usize,
}

impl Default for Tails {
    fn default() -> Self {
        Tails::bounded(TAILS_BYTES_MAX)
    }
}

#[derive(Default)]
struct Kept {
    tails: HashMap<CommunityId, Tail>,
    /// Bytes of every tail.
    bytes: usize,
    /// Counts commits, to tell which tail was added to least recently.
    commits: u64,
}

#[derive(Default)]
struct Tail {
    events: VecDeque<RecordedEvent>,
    bytes: usize,
    last_commit: u64,
}

impl Tail {
    fn first(&self) -> Option<i64> {
        self.events.front().map(|e| e.position)
    }

    fn last(&self) -> Option<i64> {
        self.events.back().map(|e| e.position)
    }
}

pub(crate) fn size(event: &RecordedEvent) -> usize {
    event.payload.get().len()
        + event
            .metadata
            .iter()
            .map(|(k, v)| k.len() + v.len())
            .sum::<usize>()
}

impl Tails {
    /// Tails holding `bytes_max` bytes in all at most.
    pub(crate) fn bounded(bytes_max: usize) -> Tails {
        Tails {
            communities: Mutex::new(Kept::default()),
            bytes_max,
        }
    }

    /// Adds events that just committed, in position order.
    pub(crate) fn committed(&self, community_id: CommunityId, events: Vec<RecordedEvent>) {
        let Some(first) = events.first().map(|e| e.position) else {
            return;
        };
        // A batch's positions follow each other; were they ever not to, the
        // tail would no longer be the log's unbroken end: keep none.
        let unbroken = events
            .windows(2)
            .all(|pair| pair[0].position + 1 == pair[1].position);
        debug_assert!(unbroken, "a committed batch's positions follow each other");
        if !unbroken {
            self.forget(community_id);
            return;
        }
        let mut kept = lock(&self.communities);
        kept.commits += 1;
        let commit = kept.commits;
        let tail = kept.tails.entry(community_id).or_default();
        let before = tail.bytes;
        if tail.last().is_some_and(|last| last + 1 != first) {
            *tail = Tail::default();
        }
        tail.last_commit = commit;
        for event in events {
            tail.bytes += size(&event);
            tail.events.push_back(event);
        }
        let bytes_max = TAIL_BYTES_MAX.min(self.bytes_max);
        while tail.events.len() > TAIL_EVENTS_MAX || tail.bytes > bytes_max {
            let Some(dropped) = tail.events.pop_front() else {
                break;
            };
            tail.bytes -= size(&dropped);
        }
        let after = tail.bytes;
        kept.bytes = kept.bytes - before + after;
        // Over the bound for all: drop whole tails, those added to least
        // recently first (this one last).
        while kept.bytes > self.bytes_max {
            let Some(oldest) = kept
                .tails
                .iter()
                .min_by_key(|(_, tail)| tail.last_commit)
                .map(|(community, _)| *community)
            else {
                break;
            };
            if let Some(dropped) = kept.tails.remove(&oldest) {
                kept.bytes -= dropped.bytes;
            }
        }
    }

    /// Up to `limit` events from `from_position` on, when the tail holds
    /// `from_position`; `None` when it does not (read the log). The answer
    /// may end before `limit` where the tail ends: the rest, if committed,
    /// is read from the log on the next call.
    pub(crate) fn read(
        &self,
        community_id: CommunityId,
        from_position: i64,
        limit: usize,
    ) -> Option<Vec<RecordedEvent>> {
        let kept = lock(&self.communities);
        let tail = kept.tails.get(&community_id)?;
        let (first, last) = (tail.first()?, tail.last()?);
        if from_position < first || from_position > last {
            return None;
        }
        let start = usize::try_from(from_position - first).ok()?;
        Some(tail.events.range(start..).take(limit).cloned().collect())
    }

    /// Visits, in position order, every event the tail holds after
    /// `after_position`, when it holds all of them from there up to
    /// `known_head` (none when `after_position` is its last); `false`,
    /// visiting nothing, when it does not. The tail is locked while `visit`
    /// runs: keep it short.
    pub(crate) fn visit_after(
        &self,
        community_id: CommunityId,
        after_position: i64,
        known_head: i64,
        mut visit: impl FnMut(&RecordedEvent),
    ) -> bool {
        let kept = lock(&self.communities);
        let Some(tail) = kept.tails.get(&community_id) else {
            return false;
        };
        let (Some(first), Some(last)) = (tail.first(), tail.last()) else {
            return false;
        };
        if after_position < first - 1 || after_position > last || known_head > last {
            return false;
        }
        let Ok(start) = usize::try_from(after_position + 1 - first) else {
            return false;
        };
        tail.events.range(start..).for_each(&mut visit);
        true
    }

    /// Forgets a community's tail: a committed batch could not be added
    /// to it, so it would no longer be the log's unbroken end.
    pub(crate) fn forget(&self, community_id: CommunityId) {
        let mut kept = lock(&self.communities);
        if let Some(dropped) = kept.tails.remove(&community_id) {
            kept.bytes -= dropped.bytes;
        }
    }
}

/// The payload text of an event as the writer encoded it.
pub(crate) fn raw_payload(encoded: &[u8]) -> Option<Box<RawValue>> {
    let text = std::str::from_utf8(encoded).ok()?;
    RawValue::from_string(text.to_string()).ok()
}

/// A committed event for the unit tests of what keeps events in memory:
/// `payload` is its JSON text.
#[cfg(test)]
pub(crate) fn test_event(
    community_id: CommunityId,
    (position, stream_id, stream_version): (i64, &str, i64),
    payload: &str,
) -> RecordedEvent {
    RecordedEvent {
        community_id,
        position,
        stream_id: stream_id.into(),
        stream_type: "s".into(),
        stream_version,
        event_type: "E".into(),
        event_version: "1".into(),
        payload: raw_payload(payload.as_bytes()).expect("valid JSON"),
        metadata: Default::default(),
        recorded_at: chrono::Utc::now(),
        previous_hash: [0; 32],
        hash: [0; 32],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(position: i64, payload_bytes: usize) -> RecordedEvent {
        let payload = format!("\"{}\"", "x".repeat(payload_bytes));
        let community = CommunityId::new(uuid::Uuid::nil());
        test_event(community, (position, &format!("s-{position}"), 1), &payload)
    }

    fn positions(events: Option<Vec<RecordedEvent>>) -> Option<Vec<i64>> {
        events.map(|events| events.iter().map(|e| e.position).collect())
    }

    #[test]
    fn reads_only_what_it_holds_from_a_held_position() {
        let tails = Tails::default();
        let c = CommunityId::new(uuid::Uuid::nil());
        assert_eq!(positions(tails.read(c, 1, 10)), None);
        tails.committed(c, (5..=8).map(|p| event(p, 1)).collect());
        assert_eq!(positions(tails.read(c, 4, 10)), None, "before the tail");
        assert_eq!(positions(tails.read(c, 9, 10)), None, "after the tail");
        assert_eq!(positions(tails.read(c, 6, 10)), Some(vec![6, 7, 8]));
        assert_eq!(positions(tails.read(c, 5, 2)), Some(vec![5, 6]));
        let other = CommunityId::new(uuid::Uuid::from_u128(1));
        assert_eq!(positions(tails.read(other, 6, 10)), None);
    }

    #[test]
    fn visits_everything_after_a_position_only_when_it_holds_all_of_it() {
        let tails = Tails::default();
        let community = CommunityId::new(uuid::Uuid::from_u128(7));
        let visited_known = |after: i64, known_head: i64| {
            let mut positions = Vec::new();
            let held =
                tails.visit_after(community, after, known_head, |e| positions.push(e.position));
            held.then_some(positions)
        };
        let visited = |after: i64| visited_known(after, 0);
        assert_eq!(visited(0), None, "no tail yet");
        tails.committed(community, (5..=8).map(|p| event(p, 10)).collect());
        assert_eq!(visited(3), None, "position 4 is not held");
        assert_eq!(visited(4), Some(vec![5, 6, 7, 8]));
        assert_eq!(visited(6), Some(vec![7, 8]));
        assert_eq!(visited(8), Some(vec![]), "nothing after the last");
        assert_eq!(
            visited(9),
            None,
            "past the last: what came after is unknown"
        );
        assert_eq!(visited(-1), None);
        assert_eq!(visited_known(6, 8), Some(vec![7, 8]));
        assert_eq!(
            visited_known(6, 9),
            None,
            "position 9 is known to be committed elsewhere"
        );
        let other = CommunityId::new(uuid::Uuid::from_u128(8));
        assert!(
            !tails.visit_after(other, 4, 0, |_| {}),
            "another community's tail"
        );
    }

    #[test]
    fn a_batch_that_does_not_follow_starts_the_tail_over() {
        let tails = Tails::default();
        let c = CommunityId::new(uuid::Uuid::nil());
        tails.committed(c, (1..=3).map(|p| event(p, 1)).collect());
        tails.committed(c, (4..=5).map(|p| event(p, 1)).collect());
        assert_eq!(positions(tails.read(c, 2, 10)), Some(vec![2, 3, 4, 5]));
        // Positions 6 and 7 were written by another process.
        tails.committed(c, (8..=9).map(|p| event(p, 1)).collect());
        assert_eq!(positions(tails.read(c, 5, 10)), None);
        assert_eq!(positions(tails.read(c, 6, 10)), None);
        assert_eq!(positions(tails.read(c, 8, 10)), Some(vec![8, 9]));
        tails.forget(c);
        assert_eq!(positions(tails.read(c, 8, 10)), None);
    }

    #[test]
    fn across_communities_it_drops_the_tails_added_to_least_recently() {
        // Room for three events of 1,000 bytes (and their quotes) in all.
        let tails = Tails::bounded(3_100);
        let c = |n: u128| CommunityId::new(uuid::Uuid::from_u128(n));
        tails.committed(c(1), vec![event(1, 1_000)]);
        tails.committed(c(2), vec![event(1, 1_000)]);
        tails.committed(c(3), vec![event(1, 1_000)]);
        tails.committed(c(1), vec![event(2, 1_000)]);
        // Four over the bound: the tail added to least recently (2) goes.
        assert_eq!(positions(tails.read(c(2), 1, 10)), None);
        assert_eq!(positions(tails.read(c(1), 1, 10)), Some(vec![1, 2]));
        assert_eq!(positions(tails.read(c(3), 1, 10)), Some(vec![1]));
        tails.forget(c(1));
        tails.committed(c(2), vec![event(5, 1_000)]);
        tails.committed(c(4), vec![event(9, 1_000)]);
        assert_eq!(positions(tails.read(c(3), 1, 10)), Some(vec![1]));
        assert_eq!(positions(tails.read(c(2), 5, 10)), Some(vec![5]));
        assert_eq!(positions(tails.read(c(4), 9, 10)), Some(vec![9]));
        // One community alone over the bound keeps the newest that fit.
        let tails = Tails::bounded(1_500);
        tails.committed(c(1), vec![event(1, 1_000), event(2, 1_000)]);
        assert_eq!(positions(tails.read(c(1), 1, 10)), None);
        assert_eq!(positions(tails.read(c(1), 2, 10)), Some(vec![2]));
    }

    #[test]
    fn it_keeps_a_bounded_number_of_events_and_bytes() {
        let tails = Tails::default();
        let c = CommunityId::new(uuid::Uuid::nil());
        let count = TAIL_EVENTS_MAX as i64 + 10;
        tails.committed(c, (1..=count).map(|p| event(p, 1)).collect());
        assert_eq!(positions(tails.read(c, 10, 1)), None, "dropped");
        assert_eq!(positions(tails.read(c, 11, 1)), Some(vec![11]));
        // Three of these fit in the bound, four do not.
        let big = TAIL_BYTES_MAX / 4;
        tails.committed(c, vec![event(count + 1, big), event(count + 2, big)]);
        tails.committed(c, vec![event(count + 3, big), event(count + 4, big)]);
        assert_eq!(positions(tails.read(c, count + 1, 10)), None);
        assert_eq!(
            positions(tails.read(c, count + 2, 10)),
            Some(vec![count + 2, count + 3, count + 4])
        );
    }
}
