//! What keeps commands on the same stream from wasting each other's work in
//! one process: a lock per stream (taken in a fixed order, so commands on
//! several streams cannot deadlock) and a cache of loaded aggregates (a
//! load reads the stream from the cached version on; a command decides on
//! the cached state without reading, and its append, which rests on that
//! version, conflicts if another process wrote the stream since).
//!
//! A state kept by a command whose append is queued but not yet committed
//! carries that append's [`Landing`]: a command deciding under the lock may
//! decide on it (and lands only behind it); a plain load waits for it to
//! land. A state whose append failed is as if it were not kept.

use std::any::Any;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};

use store::Landing;

use super::Loaded;
use tokio::sync::OwnedMutexGuard;
use uuid::Uuid;

/// Aggregates kept in memory at most. They are kept in two generations of
/// half as many each: when the newer one is full it becomes the older one
/// and the oldest are dropped, so a stream used in the last half of the
/// bound's worth of puts is still kept (a full cache used to start over,
/// and every busy stream was read again at once).
const CACHED_STREAMS_MAX: usize = 50_000;
/// Idle locks are swept when this many are known.
const LOCKS_SWEEP_AT: usize = 10_000;

type StreamKey = (Uuid, String);
/// A state, the stream version it was folded to, and the append that
/// brings the stream there while it is still on its way.
type CachedState = (i64, Arc<dyn Any + Send + Sync>, Option<Landing>);

/// Whether a kept state may stand: its append did not fail.
fn stands(landing: &Option<Landing>) -> bool {
    landing.as_ref().is_none_or(|landing| !landing.has_failed())
}

#[derive(Clone, Default)]
pub struct StreamLocks {
    locks: Arc<Mutex<HashMap<StreamKey, Weak<tokio::sync::Mutex<()>>>>>,
}

impl StreamLocks {
    /// Locks every stream named, in sorted order; held until dropped.
    pub async fn lock(&self, community: Uuid, streams: &[String]) -> Vec<OwnedMutexGuard<()>> {
        let mut names: Vec<&String> = streams.iter().collect();
        names.sort();
        names.dedup();
        let mutexes: Vec<Arc<tokio::sync::Mutex<()>>> = {
            let mut locks = self.locks.lock().unwrap_or_else(|p| p.into_inner());
            if locks.len() >= LOCKS_SWEEP_AT {
                locks.retain(|_, lock| lock.strong_count() > 0);
            }
            names
                .iter()
                .map(|name| {
                    let key = (community, (*name).clone());
                    match locks.get(&key).and_then(Weak::upgrade) {
                        Some(lock) => lock,
                        None => {
                            let lock = Arc::new(tokio::sync::Mutex::new(()));
                            locks.insert(key, Arc::downgrade(&lock));
                            lock
                        }
                    }
                })
                .collect()
        };
        let mut guards = Vec::with_capacity(mutexes.len());
        for mutex in mutexes {
            guards.push(mutex.lock_owned().await);
        }
        guards
    }
}

#[derive(Clone, Default)]
pub struct StateCache {
    states: Arc<Mutex<Generations>>,
}

/// The kept states, newer generation first.
#[derive(Default)]
struct Generations {
    newer: HashMap<StreamKey, CachedState>,
    older: HashMap<StreamKey, CachedState>,
}

impl Generations {
    /// What is kept of a stream: the newer generation's, else the older's.
    fn get(&self, key: &StreamKey) -> Option<&CachedState> {
        self.newer.get(key).or_else(|| self.older.get(key))
    }

    fn insert(&mut self, key: StreamKey, state: CachedState) {
        if self.newer.len() >= CACHED_STREAMS_MAX / 2 && !self.newer.contains_key(&key) {
            self.older = std::mem::take(&mut self.newer);
        }
        self.older.remove(&key);
        self.newer.insert(key, state);
    }

    fn remove(&mut self, key: &StreamKey) {
        self.newer.remove(key);
        self.older.remove(key);
    }
}

impl StateCache {
    /// The cached state of a stream, if it is of type `A` and the append it
    /// rests on (if any) has not failed; that append is named unless it is
    /// known to have landed.
    pub fn get<A: Clone + Send + Sync + 'static>(
        &self,
        community: Uuid,
        stream: &str,
    ) -> Option<Loaded<A>> {
        let states = self.lock();
        let (version, state, landing) = states.get(&(community, stream.to_string()))?;
        if !stands(landing) {
            return None;
        }
        let state = Arc::clone(state).downcast::<A>().ok()?;
        Some(Loaded {
            version: *version,
            state,
            landing: landing.clone().filter(|landing| !landing.has_landed()),
        })
    }

    /// Keeps a state unless a newer one is kept already.
    pub fn put<A: Clone + Send + Sync + 'static>(
        &self,
        community: Uuid,
        stream: &str,
        version: i64,
        state: &A,
    ) {
        self.put_shared(community, stream, version, Arc::new(state.clone()), None);
    }

    /// Keeps a state, committed (`landing` is `None`) or brought about by
    /// an append still on its way, unless a newer one that may stand is
    /// kept already.
    pub fn put_shared(
        &self,
        community: Uuid,
        stream: &str,
        version: i64,
        state: Arc<dyn Any + Send + Sync>,
        landing: Option<Landing>,
    ) {
        let mut states = self.lock();
        let key = (community, stream.to_string());
        let newer_kept = states
            .get(&key)
            .is_some_and(|(kept, _, landing)| *kept > version && stands(landing));
        if !newer_kept {
            states.insert(key, (version, state, landing));
        }
    }

    /// The appends still on their way that the kept states of these
    /// streams rest on.
    pub fn on_their_way(&self, community: Uuid, streams: &[String]) -> Vec<Landing> {
        let states = self.lock();
        streams
            .iter()
            .filter_map(|stream| states.get(&(community, stream.clone())))
            .filter_map(|(_, _, landing)| landing.clone())
            .filter(|landing| !landing.is_settled())
            .collect()
    }

    /// Drops the states that rest on `landing`: it did not land as decided.
    pub fn forget_behind(&self, community: Uuid, streams: &[String], landing: &Landing) {
        let mut states = self.lock();
        for stream in streams {
            let key = (community, stream.clone());
            if states
                .get(&key)
                .is_some_and(|(_, _, kept)| kept.as_ref() == Some(landing))
            {
                states.remove(&key);
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Generations> {
        self.states.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Drops what is kept of these streams: the next load reads them.
    pub fn forget(&self, community: Uuid, streams: &[String]) {
        let mut states = self.lock();
        for stream in streams {
            states.remove(&(community, stream.clone()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kept(cache: &StateCache, community: Uuid, n: usize) -> Option<i64> {
        cache
            .get::<usize>(community, &format!("s-{n}"))
            .map(|loaded| loaded.version)
    }

    /// Past the bound, the oldest states go and the recent ones stay (a
    /// stream put again counts as recent); nothing kept is past the bound.
    #[test]
    fn a_full_cache_drops_its_oldest_states_not_all_of_them() {
        let cache = StateCache::default();
        let community = Uuid::new_v4();
        let half = CACHED_STREAMS_MAX / 2;
        for n in 0..CACHED_STREAMS_MAX {
            cache.put(community, &format!("s-{n}"), n as i64, &n);
        }
        // A bound's worth put: all of it is kept.
        for n in [0, 1, 2, half, CACHED_STREAMS_MAX - 1] {
            assert_eq!(kept(&cache, community, n), Some(n as i64), "stream {n}");
        }
        // One more: the older half goes, except the stream put again.
        cache.put(community, "s-1", 100, &1usize);
        assert_eq!(kept(&cache, community, 0), None);
        assert_eq!(kept(&cache, community, 2), None);
        assert_eq!(kept(&cache, community, 1), Some(100));
        for n in [half, CACHED_STREAMS_MAX - 1] {
            assert_eq!(kept(&cache, community, n), Some(n as i64), "stream {n}");
        }
        let states = cache.lock();
        assert!(states.newer.len() + states.older.len() <= CACHED_STREAMS_MAX);
        assert!(states
            .newer
            .keys()
            .all(|key| !states.older.contains_key(key)));
    }

    /// A kept state is handed out shared, not copied (a wallet remembers
    /// every grant it was paid: copying it per decision grew with its
    /// history); changing what was handed out copies it, and what is kept
    /// stays as it was.
    #[test]
    fn kept_states_are_shared_until_changed() {
        let cache = StateCache::default();
        let community = Uuid::new_v4();
        let state = Arc::new((0..10_000u32).collect::<Vec<u32>>());
        cache.put_shared(community, "wallet-1", 3, state.clone(), None);
        let mut loaded = cache.get::<Vec<u32>>(community, "wallet-1").unwrap();
        assert!(Arc::ptr_eq(&loaded.state, &state), "handed out shared");
        assert!(cache.get::<String>(community, "wallet-1").is_none());
        Arc::make_mut(&mut loaded.state).push(10_000);
        assert!(!Arc::ptr_eq(&loaded.state, &state));
        let again = cache.get::<Vec<u32>>(community, "wallet-1").unwrap();
        assert!(Arc::ptr_eq(&again.state, &state));
        assert_eq!(again.state.len(), 10_000, "the kept state is unchanged");
    }

    /// A stream forgotten is forgotten in both generations, and an older
    /// state never replaces a newer one kept in either.
    #[test]
    fn forgetting_and_newer_states_hold_across_generations() {
        let cache = StateCache::default();
        let community = Uuid::new_v4();
        cache.put(community, "s-old", 7, &7usize);
        for n in 0..CACHED_STREAMS_MAX / 2 {
            cache.put(community, &format!("s-{n}"), 1, &n);
        }
        assert!(cache
            .lock()
            .older
            .contains_key(&(community, "s-old".to_string())));
        cache.put(community, "s-old", 3, &3usize);
        assert_eq!(
            cache.get::<usize>(community, "s-old").map(|l| l.version),
            Some(7)
        );
        cache.forget(community, &["s-old".to_string()]);
        assert!(cache.get::<usize>(community, "s-old").is_none());
        cache.put(community, "s-1", 5, &5usize);
        cache.forget(community, &["s-1".to_string()]);
        assert!(cache.get::<usize>(community, "s-1").is_none());
    }
}
