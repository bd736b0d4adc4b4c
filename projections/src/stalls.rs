//! Where a background process is stuck, per community.
//!
//! The projections, the earning process, the deadline watcher, the points
//! sweeper and the sealer all work community by community. An input one of
//! them cannot get past (a poisoned event, a bad value older data holds)
//! must hold up that community alone: the process notes it here, logs it
//! once with its position, retries it with a growing pause, and goes on
//! with every other community. `/metrics` and `projectionLag` read it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use store::CommunityId;

/// The longest pause between two tries of a stuck community.
pub const RETRY_DELAY_MAX: Duration = Duration::from_secs(300);
/// Stuck communities remembered at most per registry: past it, the
/// oldest-noted are forgotten (and tried again at once).
const STALLS_MAX: usize = 10_000;

/// One process stuck on one community.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stall {
    pub process: &'static str,
    pub community: CommunityId,
    /// The position it cannot get past, when it is about an event.
    pub position: Option<i64>,
    pub failures: u32,
    pub error: String,
}

#[derive(Debug)]
struct Entry {
    stall: Stall,
    retry_at: Instant,
    noted_at: Instant,
}

/// Shared by every process of a server (clones share the same registry).
#[derive(Clone, Debug, Default)]
pub struct Stalls {
    entries: Arc<Mutex<HashMap<(&'static str, CommunityId), Entry>>>,
}

impl Stalls {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(&'static str, CommunityId), Entry>> {
        self.entries
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Whether `process` should try `community` now: always, unless it is
    /// stuck there and its pause has not run out.
    pub fn due(&self, process: &'static str, community: CommunityId) -> bool {
        self.lock()
            .get(&(process, community))
            .is_none_or(|entry| Instant::now() >= entry.retry_at)
    }

    /// Notes a failure; the pause before the next try doubles with each
    /// failure from `first_delay`, up to `RETRY_DELAY_MAX`. The first
    /// failure at a position is logged as an error, repeats as debug.
    pub fn failed(
        &self,
        process: &'static str,
        community: CommunityId,
        position: Option<i64>,
        error: &str,
        first_delay: Duration,
    ) {
        let now = Instant::now();
        let mut entries = self.lock();
        if entries.len() >= STALLS_MAX && !entries.contains_key(&(process, community)) {
            if let Some(oldest) = entries
                .iter()
                .min_by_key(|(_, entry)| entry.noted_at)
                .map(|(key, _)| *key)
            {
                entries.remove(&oldest);
            }
        }
        let entry = entries.entry((process, community)).or_insert(Entry {
            stall: Stall {
                process,
                community,
                position,
                failures: 0,
                error: String::new(),
            },
            retry_at: now,
            noted_at: now,
        });
        let moved = entry.stall.failures > 0 && entry.stall.position != position;
        if moved {
            entry.stall.failures = 0;
        }
        entry.stall.failures = entry.stall.failures.saturating_add(1);
        entry.stall.position = position;
        entry.stall.error = error.chars().take(500).collect();
        entry.noted_at = now;
        let doublings = (entry.stall.failures - 1).min(16);
        let delay = first_delay
            .saturating_mul(1_u32 << doublings)
            .min(RETRY_DELAY_MAX);
        entry.retry_at = now + delay;
        if entry.stall.failures == 1 {
            tracing::error!(
                process,
                community = %community,
                position,
                error,
                "stuck on this community; retrying with backoff, other communities go on"
            );
        } else {
            tracing::debug!(process, community = %community, position, failures = entry.stall.failures, error, "still stuck");
        }
    }

    /// Notes that `process` got past whatever held it in `community`.
    pub fn cleared(&self, process: &'static str, community: CommunityId) {
        if self.lock().remove(&(process, community)).is_some() {
            tracing::info!(process, community = %community, "no longer stuck");
        }
    }

    /// Runs `work` for every community `process` is due in, one at a time;
    /// a community whose work fails is noted (and paused), the others go
    /// on. Returns what the communities that succeeded returned.
    pub async fn each_community<T, E, F, Fut>(
        &self,
        process: &'static str,
        communities: Vec<CommunityId>,
        first_delay: Duration,
        mut work: F,
    ) -> Vec<T>
    where
        E: std::fmt::Display,
        F: FnMut(CommunityId) -> Fut,
        Fut: std::future::Future<Output = Result<T, E>>,
    {
        let mut done = Vec::with_capacity(communities.len());
        for community in communities {
            if !self.due(process, community) {
                continue;
            }
            match work(community).await {
                Ok(value) => {
                    self.cleared(process, community);
                    done.push(value);
                }
                Err(error) => {
                    self.failed(process, community, None, &error.to_string(), first_delay)
                }
            }
        }
        done
    }

    /// Every stall, ordered by process and community.
    pub fn all(&self) -> Vec<Stall> {
        let mut stalls: Vec<Stall> = self.lock().values().map(|e| e.stall.clone()).collect();
        stalls.sort_by(|a, b| {
            (a.process, a.community.as_uuid()).cmp(&(b.process, b.community.as_uuid()))
        });
        stalls
    }

    /// The stalls in one community.
    pub fn of(&self, community: CommunityId) -> Vec<Stall> {
        self.all()
            .into_iter()
            .filter(|stall| stall.community == community)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stall_backs_off_is_per_community_and_clears() {
        let stalls = Stalls::default();
        let (a, b) = (CommunityId::random(), CommunityId::random());
        assert!(stalls.due("earning", a));
        stalls.failed(
            "earning",
            a,
            Some(7),
            "bad time zone",
            Duration::from_secs(60),
        );
        assert!(!stalls.due("earning", a), "paused after a failure");
        assert!(stalls.due("earning", b), "another community is not held");
        assert!(stalls.due("sealer", a), "another process is not held");
        stalls.failed("earning", a, Some(7), "bad time zone", Duration::ZERO);
        assert_eq!(stalls.of(a)[0].failures, 2);
        stalls.failed("earning", a, Some(9), "other", Duration::ZERO);
        assert_eq!(
            (stalls.of(a)[0].failures, stalls.of(a)[0].position),
            (1, Some(9)),
            "a new position starts the count again"
        );
        stalls.cleared("earning", a);
        assert!(stalls.all().is_empty());
    }

    #[tokio::test]
    async fn a_community_whose_work_fails_does_not_stop_the_others() {
        let stalls = Stalls::default();
        let communities: Vec<CommunityId> = (0..4).map(|_| CommunityId::random()).collect();
        let poisoned = communities[1];
        let run = |stalls: Stalls, communities: Vec<CommunityId>| async move {
            stalls
                .each_community(
                    "sealer",
                    communities,
                    Duration::from_secs(60),
                    |community| async move {
                        if community == poisoned {
                            Err("a seal cannot be written")
                        } else {
                            Ok(community)
                        }
                    },
                )
                .await
        };
        let done = run(stalls.clone(), communities.clone()).await;
        let others: Vec<CommunityId> = communities
            .iter()
            .copied()
            .filter(|c| *c != poisoned)
            .collect();
        assert_eq!(done, others, "every other community was worked, in order");
        assert_eq!(stalls.of(poisoned).len(), 1);
        // Paused: the next tick does not try it again at once.
        let again = run(stalls.clone(), communities.clone()).await;
        assert_eq!(again, others);
        assert_eq!(
            stalls.of(poisoned)[0].failures,
            1,
            "not retried during its pause"
        );
    }
}
