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

#[derive(Default)]
pub(crate) struct Tails {
    communities: Mutex<HashMap<CommunityId, Tail>>,
}

#[derive(Default)]
struct Tail {
    events: VecDeque<RecordedEvent>,
    bytes: usize,
}

impl Tail {
    fn first(&self) -> Option<i64> {
        self.events.front().map(|e| e.position)
    }

    fn last(&self) -> Option<i64> {
        self.events.back().map(|e| e.position)
    }
}

fn size(event: &RecordedEvent) -> usize {
    event.payload.get().len()
        + event
            .metadata
            .iter()
            .map(|(k, v)| k.len() + v.len())
            .sum::<usize>()
}

impl Tails {
    /// Adds events that just committed, in position order.
    pub(crate) fn committed(&self, community_id: CommunityId, events: Vec<RecordedEvent>) {
        let Some(first) = events.first().map(|e| e.position) else {
            return;
        };
        let mut communities = lock(&self.communities);
        let tail = communities.entry(community_id).or_default();
        if tail.last().is_some_and(|last| last + 1 != first) {
            *tail = Tail::default();
        }
        for event in events {
            tail.bytes += size(&event);
            tail.events.push_back(event);
        }
        while tail.events.len() > TAIL_EVENTS_MAX || tail.bytes > TAIL_BYTES_MAX {
            let Some(dropped) = tail.events.pop_front() else {
                break;
            };
            tail.bytes -= size(&dropped);
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
        let communities = lock(&self.communities);
        let tail = communities.get(&community_id)?;
        let (first, last) = (tail.first()?, tail.last()?);
        if from_position < first || from_position > last {
            return None;
        }
        let start = usize::try_from(from_position - first).ok()?;
        Some(tail.events.range(start..).take(limit).cloned().collect())
    }

    /// Forgets a community's tail (its events were never committed after
    /// all, or the community is gone).
    pub(crate) fn forget(&self, community_id: CommunityId) {
        lock(&self.communities).remove(&community_id);
    }
}

/// The payload text of an event as the writer encoded it.
pub(crate) fn raw_payload(encoded: &[u8]) -> Option<Box<RawValue>> {
    let text = std::str::from_utf8(encoded).ok()?;
    RawValue::from_string(text.to_string()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;

    fn event(position: i64, payload_bytes: usize) -> RecordedEvent {
        RecordedEvent {
            community_id: CommunityId::new(uuid::Uuid::nil()),
            position,
            stream_id: format!("s-{position}"),
            stream_type: "s".into(),
            stream_version: 1,
            event_type: "E".into(),
            event_version: "1".into(),
            payload: raw_payload(format!("\"{}\"", "x".repeat(payload_bytes)).as_bytes())
                .expect("valid JSON"),
            metadata: Default::default(),
            recorded_at: Utc::now(),
            previous_hash: [0; 32],
            hash: [0; 32],
        }
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
