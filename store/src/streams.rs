//! Whole streams this process read lately and wrote since, kept in memory, so that
//! loading an aggregate to decide a command on it needs no read of
//! PostgreSQL ([`EventStore::read_whole_stream`]). Without them every
//! command on the cqrs-es path read its stream again, though this process
//! had just written it.
//!
//! A kept stream is every event of the stream from version 1: a whole read
//! of it (none, for a stream about to be started), and then every event
//! this process committed to it (the writer adds each committed batch, in
//! position order; an event that does not follow a kept stream's last
//! version drops it). Only streams read whole are kept: the streams of
//! commands that decide on states of their own (the application's) cost
//! the writer one lookup when none is kept.
//!
//! What another process commits reaches a kept stream only through the
//! log, so a kept stream is served only while this process can vouch that
//! no other process wrote its community since:
//!
//! - each community has a count of **doubts**, and a kept stream is served
//!   only while the count is what it was when the stream was kept. A doubt
//!   is raised when another process's commit to the community is announced
//!   (a position beyond this process's own last commit), when a batch of
//!   this process committed on a head it had not left itself, when a batch
//!   failed, was planned again or its outcome is unknown, and when the
//!   store's listener reconnects (announcements may have been missed);
//! - only while the store is listening;
//! - only within [`VOUCHED_FOR_MS`] of the last proof that the community's
//!   head was this process's own (a commit of this process on the head it
//!   left) or of the stream's read, whichever is later: an announcement is
//!   lost when the process that committed dies before sending it, and this
//!   bounds for how long a kept stream can miss it.
//!
//! So a stream is served stale only in the milliseconds between another
//! process's commit and its announcement, as a stream read just before
//! that commit would be. An append decided on it is still checked against
//! the stream's version in PostgreSQL (its expected version), so nothing is
//! written on a stale reading: the append conflicts, a doubt is raised, and
//! the stream is read again.
//!
//! [`EventStore::read_whole_stream`]: crate::EventStore::read_whole_stream

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use hashlink::LruCache;

use crate::store::lock;
use crate::tail::size;
use crate::types::{CommunityId, RecordedEvent};

/// How long a proof that no other process wrote a community is trusted.
pub(crate) const VOUCHED_FOR_MS: u64 = 1_000;
/// Events a kept stream holds at most; a longer stream is read each time
/// (an aggregate that long loads from a snapshot).
pub(crate) const KEPT_STREAM_EVENTS_MAX: usize = 1_000;
/// Streams kept at most (and reads of them under way), across communities.
pub(crate) const KEPT_STREAMS_MAX: usize = 65_536;
/// Payload and metadata bytes kept at most, across communities.
pub(crate) const KEPT_STREAMS_BYTES_MAX: usize = 32 * 1024 * 1024;

pub(crate) struct KeptStreams {
    kept: Mutex<Kept>,
    bytes_max: usize,
    vouched_for: Duration,
}

impl Default for KeptStreams {
    fn default() -> Self {
        KeptStreams::bounded(
            KEPT_STREAMS_BYTES_MAX,
            Duration::from_millis(VOUCHED_FOR_MS),
        )
    }
}

struct Kept {
    streams: LruCache<(CommunityId, String), Entry>,
    communities: HashMap<CommunityId, Trust>,
    bytes: usize,
    fills: u64,
}

/// What this process knows of who wrote a community.
#[derive(Default)]
struct Trust {
    /// The last position this process committed.
    own_head: i64,
    doubts: u64,
    /// When a commit of this process last found the head where it had
    /// left it.
    vouched_at: Option<Instant>,
}

enum Entry {
    /// A whole read of the stream is under way; a commit to the stream
    /// meanwhile drops it, so that the read is not kept.
    Filling(u64),
    Whole(Whole),
}

struct Whole {
    events: Vec<RecordedEvent>,
    bytes: usize,
    /// The community's doubts when the stream was kept.
    doubts: u64,
    read_at: Instant,
}

/// A whole read of a stream begun with [`KeptStreams::begin_fill`].
pub(crate) struct Fill {
    id: u64,
    doubts: u64,
    at: Instant,
}

impl KeptStreams {
    pub(crate) fn bounded(bytes_max: usize, vouched_for: Duration) -> KeptStreams {
        KeptStreams {
            kept: Mutex::new(Kept {
                streams: LruCache::new_unbounded(),
                communities: HashMap::new(),
                bytes: 0,
                fills: 0,
            }),
            bytes_max,
            vouched_for,
        }
    }

    /// The stream's events from `from_version` on, when it is kept and
    /// still vouched for; `None` when it must be read.
    pub(crate) fn get(
        &self,
        community_id: CommunityId,
        stream_id: &str,
        from_version: i64,
    ) -> Option<Vec<RecordedEvent>> {
        let mut guard = lock(&self.kept);
        let kept = &mut *guard;
        let trust = kept.communities.get(&community_id)?;
        let (doubts, vouched_at) = (trust.doubts, trust.vouched_at);
        let Some(Entry::Whole(whole)) = kept.streams.get(&(community_id, stream_id.to_string()))
        else {
            return None;
        };
        let proven = vouched_at.map_or(whole.read_at, |at| at.max(whole.read_at));
        if whole.doubts != doubts || proven.elapsed() > self.vouched_for {
            return None;
        }
        let skip = usize::try_from(from_version.max(1) - 1).ok()?;
        Some(whole.events.iter().skip(skip).cloned().collect())
    }

    /// Marks a whole read of the stream as begun, before it is sent.
    pub(crate) fn begin_fill(&self, community_id: CommunityId, stream_id: &str) -> Fill {
        let mut guard = lock(&self.kept);
        let kept = &mut *guard;
        kept.fills += 1;
        let id = kept.fills;
        let doubts = kept.communities.entry(community_id).or_default().doubts;
        kept.remove(&(community_id, stream_id.to_string()));
        kept.streams
            .insert((community_id, stream_id.to_string()), Entry::Filling(id));
        kept.shrink(self.bytes_max);
        Fill {
            id,
            doubts,
            at: Instant::now(),
        }
    }

    /// Keeps what a whole read begun with `fill` returned, unless a commit
    /// to the stream or a doubt about its community came in between.
    pub(crate) fn fill(
        &self,
        community_id: CommunityId,
        stream_id: &str,
        fill: Fill,
        events: &[RecordedEvent],
    ) {
        let mut guard = lock(&self.kept);
        let kept = &mut *guard;
        let key = (community_id, stream_id.to_string());
        if !matches!(kept.streams.peek(&key), Some(Entry::Filling(id)) if *id == fill.id) {
            return;
        }
        kept.streams.remove(&key);
        let doubts = kept.communities.get(&community_id).map(|t| t.doubts);
        let whole_stream = events
            .iter()
            .enumerate()
            .all(|(i, e)| e.stream_version == i as i64 + 1);
        if doubts != Some(fill.doubts) || !whole_stream || events.len() > KEPT_STREAM_EVENTS_MAX {
            return;
        }
        let bytes = events.iter().map(size).sum();
        let whole = Whole {
            events: events.to_vec(),
            bytes,
            doubts: fill.doubts,
            read_at: fill.at,
        };
        kept.keep(key, whole, self.bytes_max);
    }

    /// A batch of this process committed `events` (in position order):
    /// each extends its stream's kept events, or drops them if it does not
    /// follow them.
    pub(crate) fn committed(&self, community_id: CommunityId, events: &[RecordedEvent]) {
        let (Some(first), Some(last)) = (events.first(), events.last()) else {
            return;
        };
        let mut guard = lock(&self.kept);
        let kept = &mut *guard;
        let trust = kept.communities.entry(community_id).or_default();
        if first.position - 1 == trust.own_head {
            trust.vouched_at = Some(Instant::now());
        } else {
            trust.doubts += 1;
            trust.vouched_at = None;
        }
        trust.own_head = last.position;
        let doubts = trust.doubts;
        if kept.streams.is_empty() {
            return;
        }
        for event in events {
            let key = (community_id, event.stream_id.clone());
            match kept.streams.peek_mut(&key) {
                Some(Entry::Whole(whole))
                    if whole.doubts == doubts
                        && whole.events.len() < KEPT_STREAM_EVENTS_MAX
                        && whole.events.len() as i64 + 1 == event.stream_version =>
                {
                    let bytes = size(event);
                    whole.events.push(event.clone());
                    whole.bytes += bytes;
                    kept.bytes += bytes;
                }
                Some(_) => kept.remove(&key),
                None => {}
            }
        }
        kept.shrink(self.bytes_max);
    }

    /// Another process announced that it committed `position`.
    pub(crate) fn heard(&self, community_id: CommunityId, position: i64) {
        let mut guard = lock(&self.kept);
        let kept = &mut *guard;
        let trust = kept.communities.entry(community_id).or_default();
        if position > trust.own_head {
            trust.doubts += 1;
            trust.vouched_at = None;
        }
    }

    /// Something this process wrote to the community may or may not have
    /// landed, or it can no longer tell what did.
    pub(crate) fn doubt(&self, community_id: CommunityId) {
        let mut guard = lock(&self.kept);
        let kept = &mut *guard;
        let trust = kept.communities.entry(community_id).or_default();
        trust.doubts += 1;
        trust.vouched_at = None;
    }

    /// Announcements may have been missed, for every community.
    pub(crate) fn doubt_all(&self) {
        let mut guard = lock(&self.kept);
        let kept = &mut *guard;
        for trust in kept.communities.values_mut() {
            trust.doubts += 1;
            trust.vouched_at = None;
        }
    }
}

impl Kept {
    fn remove(&mut self, key: &(CommunityId, String)) {
        if let Some(Entry::Whole(whole)) = self.streams.remove(key) {
            self.bytes -= whole.bytes;
        }
    }

    fn keep(&mut self, key: (CommunityId, String), whole: Whole, bytes_max: usize) {
        self.bytes += whole.bytes;
        if let Some(Entry::Whole(replaced)) = self.streams.insert(key, Entry::Whole(whole)) {
            self.bytes -= replaced.bytes;
        }
        self.shrink(bytes_max);
    }

    /// Drops the streams used least recently until the rest fit.
    fn shrink(&mut self, bytes_max: usize) {
        while self.bytes > bytes_max || self.streams.len() > KEPT_STREAMS_MAX {
            match self.streams.remove_lru() {
                Some((_, Entry::Whole(whole))) => self.bytes -= whole.bytes,
                Some((_, Entry::Filling(_))) => {}
                None => break,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tail::test_event;

    fn community() -> CommunityId {
        CommunityId::new(uuid::Uuid::from_u128(7))
    }

    fn event(position: i64, stream: &str, version: i64) -> RecordedEvent {
        let payload = format!("{{\"n\":{position}}}");
        test_event(community(), (position, stream, version), &payload)
    }

    fn versions(events: Option<Vec<RecordedEvent>>) -> Option<Vec<i64>> {
        events.map(|events| events.iter().map(|e| e.stream_version).collect())
    }

    fn kept() -> KeptStreams {
        KeptStreams::bounded(1 << 20, Duration::from_secs(60))
    }

    /// Streams about to be started, read whole (empty) as a command on
    /// the cqrs-es path reads them first.
    fn read_empty(kept: &KeptStreams, names: &[&str]) {
        for name in names {
            let fill = kept.begin_fill(community(), name);
            kept.fill(community(), name, fill, &[]);
        }
    }

    #[test]
    fn a_stream_read_whole_is_kept_and_follows_this_processs_commits() {
        let kept = kept();
        let c = community();
        read_empty(&kept, &["a", "b"]);
        assert_eq!(versions(kept.get(c, "a", 1)), Some(vec![]));
        kept.committed(c, &[event(1, "a", 1), event(2, "b", 1)]);
        kept.committed(c, &[event(3, "a", 2), event(4, "never-read", 1)]);
        assert_eq!(versions(kept.get(c, "a", 1)), Some(vec![1, 2]));
        assert_eq!(versions(kept.get(c, "a", 2)), Some(vec![2]));
        assert_eq!(versions(kept.get(c, "a", 3)), Some(vec![]));
        assert_eq!(versions(kept.get(c, "b", 1)), Some(vec![1]));
        assert_eq!(
            versions(kept.get(c, "never-read", 1)),
            None,
            "not read whole"
        );
        let other = CommunityId::new(uuid::Uuid::from_u128(8));
        assert_eq!(versions(kept.get(other, "a", 1)), None);
        // An event that does not follow the kept ones drops them.
        kept.committed(c, &[event(5, "b", 3)]);
        assert_eq!(versions(kept.get(c, "b", 1)), None);
        assert_eq!(versions(kept.get(c, "a", 1)), Some(vec![1, 2]));
        // Nothing is kept of streams no one read whole.
        let kept = self::kept();
        kept.committed(c, &[event(1, "a", 1)]);
        assert_eq!(versions(kept.get(c, "a", 1)), None);
        assert_eq!(lock(&kept.kept).streams.len(), 0);
    }

    #[test]
    fn another_processs_commit_retires_every_kept_stream_of_its_community() {
        let c = community();
        // Announced beyond this process's own head.
        let kept = kept();
        read_empty(&kept, &["a", "b"]);
        kept.committed(c, &[event(1, "a", 1), event(2, "b", 1)]);
        kept.heard(c, 2);
        assert_eq!(versions(kept.get(c, "a", 1)), Some(vec![1]), "its own");
        kept.heard(c, 3);
        assert_eq!(versions(kept.get(c, "a", 1)), None);
        assert_eq!(versions(kept.get(c, "b", 1)), None);
        // Found when this process's next batch does not start where its
        // last one ended.
        let kept = self::kept();
        read_empty(&kept, &["a"]);
        kept.committed(c, &[event(1, "a", 1)]);
        kept.committed(c, &[event(5, "a", 2)]);
        assert_eq!(versions(kept.get(c, "a", 1)), None);
        // A batch that may or may not have landed; a missed announcement.
        for doubt in [
            &(|k: &KeptStreams| k.doubt(community())) as &dyn Fn(&KeptStreams),
            &|k: &KeptStreams| k.doubt_all(),
        ] {
            let kept = self::kept();
            read_empty(&kept, &["a"]);
            kept.committed(c, &[event(1, "a", 1)]);
            doubt(&kept);
            assert_eq!(versions(kept.get(c, "a", 1)), None);
        }
    }

    #[test]
    fn a_read_is_kept_only_if_nothing_was_committed_or_doubted_meanwhile() {
        let c = community();
        let read = [event(1, "a", 1), event(2, "a", 2)];
        let kept = kept();
        let fill = kept.begin_fill(c, "a");
        kept.fill(c, "a", fill, &read);
        assert_eq!(versions(kept.get(c, "a", 1)), Some(vec![1, 2]));
        // A commit to the stream while it was read.
        let kept = self::kept();
        let fill = kept.begin_fill(c, "a");
        kept.committed(c, &[event(3, "a", 3)]);
        kept.fill(c, "a", fill, &read);
        assert_eq!(versions(kept.get(c, "a", 1)), None);
        // Another process's commit announced while it was read.
        let kept = self::kept();
        let fill = kept.begin_fill(c, "a");
        kept.heard(c, 3);
        kept.fill(c, "a", fill, &read);
        assert_eq!(versions(kept.get(c, "a", 1)), None);
        // A read that is not the whole stream from version 1.
        let kept = self::kept();
        let fill = kept.begin_fill(c, "a");
        kept.fill(c, "a", fill, &read[1..]);
        assert_eq!(versions(kept.get(c, "a", 1)), None);
        // A stream too long to keep.
        let long: Vec<_> = (1..=KEPT_STREAM_EVENTS_MAX as i64 + 1)
            .map(|v| event(v, "a", v))
            .collect();
        let kept = self::kept();
        let fill = kept.begin_fill(c, "a");
        kept.fill(c, "a", fill, &long);
        assert_eq!(versions(kept.get(c, "a", 1)), None);
    }

    #[test]
    fn a_kept_stream_is_served_only_while_recently_vouched_for() {
        let c = community();
        let kept = KeptStreams::bounded(1 << 20, Duration::from_millis(30));
        read_empty(&kept, &["a"]);
        kept.committed(c, &[event(1, "a", 1)]);
        assert_eq!(versions(kept.get(c, "a", 1)), Some(vec![1]));
        std::thread::sleep(Duration::from_millis(40));
        assert_eq!(versions(kept.get(c, "a", 1)), None, "too long ago");
        // A commit on the head this process left vouches for it again.
        kept.committed(c, &[event(2, "b", 1)]);
        assert_eq!(versions(kept.get(c, "a", 1)), Some(vec![1]));
    }

    #[test]
    fn the_streams_used_least_recently_go_first_when_over_the_bytes_bound() {
        let c = community();
        let one = size(&event(1, "a", 1));
        let kept = KeptStreams::bounded(2 * one, Duration::from_secs(60));
        read_empty(&kept, &["a", "b", "c"]);
        kept.committed(c, &[event(1, "a", 1), event(2, "b", 1)]);
        assert!(kept.get(c, "a", 1).is_some(), "a is used after b");
        kept.committed(c, &[event(3, "c", 1)]);
        assert_eq!(versions(kept.get(c, "b", 1)), None);
        assert_eq!(versions(kept.get(c, "a", 1)), Some(vec![1]));
        assert_eq!(versions(kept.get(c, "c", 1)), Some(vec![1]));
        assert!(lock(&kept.kept).bytes <= 2 * one);
    }
}
