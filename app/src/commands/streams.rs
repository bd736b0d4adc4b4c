//! What keeps commands on the same stream from wasting each other's work in
//! one process: a lock per stream (taken in a fixed order, so commands on
//! several streams cannot deadlock) and a cache of loaded aggregates (a
//! cached state only saves reading what it already folded; every load still
//! reads the stream from the cached version on).
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

/// Aggregates kept in memory; past this the cache starts over.
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
    states: Arc<Mutex<HashMap<StreamKey, CachedState>>>,
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
        let states = self.states.lock().unwrap_or_else(|p| p.into_inner());
        let (version, state, landing) = states.get(&(community, stream.to_string()))?;
        if !stands(landing) {
            return None;
        }
        let state = state.downcast_ref::<A>()?;
        Some(Loaded {
            version: *version,
            state: state.clone(),
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
        let mut states = self.states.lock().unwrap_or_else(|p| p.into_inner());
        if states.len() >= CACHED_STREAMS_MAX {
            states.clear();
        }
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
        let states = self.states.lock().unwrap_or_else(|p| p.into_inner());
        streams
            .iter()
            .filter_map(|stream| states.get(&(community, stream.clone())))
            .filter_map(|(_, _, landing)| landing.clone())
            .filter(|landing| !landing.is_settled())
            .collect()
    }

    /// Drops the states that rest on `landing`: it did not land as decided.
    pub fn forget_behind(&self, community: Uuid, streams: &[String], landing: &Landing) {
        let mut states = self.states.lock().unwrap_or_else(|p| p.into_inner());
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

    /// Drops what is kept of these streams: the next load reads them.
    pub fn forget(&self, community: Uuid, streams: &[String]) {
        let mut states = self.states.lock().unwrap_or_else(|p| p.into_inner());
        for stream in streams {
            states.remove(&(community, stream.clone()));
        }
    }
}
