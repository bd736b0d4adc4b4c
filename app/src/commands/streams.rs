//! What keeps commands on the same stream from wasting each other's work in
//! one process: a lock per stream (taken in a fixed order, so commands on
//! several streams cannot deadlock) and a cache of loaded aggregates (a
//! cached state only saves reading what it already folded; every load still
//! reads the stream from the cached version on).

use std::any::Any;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};

use tokio::sync::OwnedMutexGuard;
use uuid::Uuid;

/// Aggregates kept in memory; past this the cache starts over.
const CACHED_STREAMS_MAX: usize = 50_000;
/// Idle locks are swept when this many are known.
const LOCKS_SWEEP_AT: usize = 10_000;

type StreamKey = (Uuid, String);
/// A state and the stream version it was folded to.
type CachedState = (i64, Arc<dyn Any + Send + Sync>);

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
    /// The cached state of a stream and its version, if it is of type `A`.
    pub fn get<A: Clone + Send + Sync + 'static>(
        &self,
        community: Uuid,
        stream: &str,
    ) -> Option<(i64, A)> {
        let states = self.states.lock().unwrap_or_else(|p| p.into_inner());
        let (version, state) = states.get(&(community, stream.to_string()))?;
        let state = state.downcast_ref::<A>()?;
        Some((*version, state.clone()))
    }

    /// Keeps a state unless a newer one is kept already.
    pub fn put<A: Clone + Send + Sync + 'static>(
        &self,
        community: Uuid,
        stream: &str,
        version: i64,
        state: &A,
    ) {
        self.put_shared(community, stream, version, Arc::new(state.clone()));
    }

    pub fn put_shared(
        &self,
        community: Uuid,
        stream: &str,
        version: i64,
        state: Arc<dyn Any + Send + Sync>,
    ) {
        let mut states = self.states.lock().unwrap_or_else(|p| p.into_inner());
        if states.len() >= CACHED_STREAMS_MAX {
            states.clear();
        }
        let key = (community, stream.to_string());
        let newer_kept = states.get(&key).is_some_and(|(kept, _)| *kept > version);
        if !newer_kept {
            states.insert(key, (version, state));
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
