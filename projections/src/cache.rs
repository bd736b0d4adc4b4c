//! Answers of repeated reads, kept in memory while nothing they rest on has
//! changed (ADR 0013).
//!
//! A dashboard asks for the same grid ledgers, leaderboard and statistics
//! many times between two commits. Each answer is kept with what it rests
//! on, and served again only while all of it holds:
//!
//! - the community's log: the answer was read in one snapshot whose read
//!   model had folded the whole log (its checkpoint reached the log's head in
//!   that snapshot), and no commit to the community has been announced since
//!   (the store's head watch, fed by this process's commits and by every
//!   other process's NOTIFY);
//! - the read model's generation: no promotion has been announced since
//!   (`generations:<projection>`);
//! - what else the caller names (display names: `profiles:<community>`);
//! - the time: the moment the read is asked at lies in the range the answer
//!   holds for (a grid's overdue count holds until its next deadline);
//! - the caller's `atLeast`: the answer's checkpoint reaches it;
//! - the store's listener is connected, so no announcement can be missed;
//! - it is younger than `age_max`: an announcement is lost if the process
//!   that committed dies before sending it, and this bounds for how long.
//!
//! Watches are marked seen before the snapshot is taken, so whatever commits
//! after the snapshot began is announced after the mark and retires the
//! answer. A read is never served anything older than a fresh read of the
//! model would be, save for the delivery time of a NOTIFY from another
//! process: the freshness every read without `atLeast` already has.
//!
//! Bounded: at most `entries_max` answers holding at most `rows_max` rows in
//! all, the least recently used leaving first.

use std::any::Any;
use std::hash::Hash;
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use deadpool_postgres::Transaction;
use hashlink::LruCache;
use store::{CommunityId, EventStore};
use tokio::sync::watch;
use tokio_postgres::IsolationLevel;

use crate::error::ProjectionError;
use crate::progress::LIVE_CHECKPOINT;
use crate::sql::query;

/// What a read asks: of which read model, in which community, and the rest
/// of the question in a canonical string (every parameter that changes the
/// answer, the caller's identity where it does).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Question {
    pub projection: &'static str,
    pub community: CommunityId,
    pub key: String,
}

impl Question {
    pub fn new(projection: &'static str, community: CommunityId, key: String) -> Self {
        Question {
            projection,
            community,
            key,
        }
    }
}

/// An answer, with how many rows it holds (its weight against `rows_max`)
/// and the moments (microseconds) at which it holds.
pub struct Answer<T> {
    pub value: T,
    pub rows: usize,
    pub holds_at: Range<i64>,
}

impl<T> Answer<T> {
    /// An answer that does not depend on the time of the read.
    pub fn timeless(value: T, rows: usize) -> Self {
        Answer {
            value,
            rows,
            holds_at: i64::MIN..i64::MAX,
        }
    }
}

/// The cache's limits.
#[derive(Clone, Copy, Debug)]
pub struct CacheLimits {
    /// Answers kept at most; 0 turns the cache off.
    pub entries_max: usize,
    /// Rows kept at most across all answers.
    pub rows_max: usize,
    /// How long an answer is kept at most, even when nothing it rests on was
    /// announced (an announcement can be lost with the process that made
    /// the commit).
    pub age_max: Duration,
}

impl Default for CacheLimits {
    fn default() -> Self {
        CacheLimits {
            entries_max: 10_000,
            rows_max: 1_000_000,
            age_max: Duration::from_secs(2),
        }
    }
}

struct Entry {
    value: Arc<dyn Any + Send + Sync>,
    rows: usize,
    checkpoint: i64,
    holds_at: Range<i64>,
    kept_at: Instant,
    watches: Watches,
}

/// What an answer rests on, marked seen before its snapshot was taken.
struct Watches {
    head: watch::Receiver<i64>,
    topics: Vec<watch::Receiver<u64>>,
}

impl Watches {
    fn unchanged(&self) -> bool {
        // An error means the sender is gone: nothing can be vouched for.
        !self.head.has_changed().unwrap_or(true)
            && self
                .topics
                .iter()
                .all(|topic| !topic.has_changed().unwrap_or(true))
    }
}

struct Kept {
    entries: LruCache<Question, Entry>,
    rows: usize,
}

/// Counts for `/metrics`.
#[derive(Default)]
pub struct CacheStats {
    pub hits_total: AtomicU64,
    pub misses_total: AtomicU64,
}

/// The answers of repeated reads (see the module's documentation).
#[derive(Clone)]
pub struct ReadCache {
    inner: Arc<Inner>,
}

struct Inner {
    store: EventStore,
    limits: CacheLimits,
    kept: Mutex<Kept>,
    stats: CacheStats,
}

/// The topic a promotion of `projection`'s generation is announced on.
pub fn generations_topic(projection: &str) -> String {
    format!("generations:{projection}")
}

impl ReadCache {
    pub fn new(store: EventStore, limits: CacheLimits) -> Self {
        ReadCache {
            inner: Arc::new(Inner {
                store,
                limits,
                kept: Mutex::new(Kept {
                    entries: LruCache::new_unbounded(),
                    rows: 0,
                }),
                stats: CacheStats::default(),
            }),
        }
    }

    pub fn stats(&self) -> &CacheStats {
        &self.inner.stats
    }

    /// Answers kept now.
    pub fn entries(&self) -> usize {
        self.kept().entries.len()
    }

    /// Rows kept now, across every answer.
    pub fn rows(&self) -> usize {
        self.kept().rows
    }

    /// Reads answered from a kept answer so far.
    pub fn hits(&self) -> u64 {
        self.inner.stats.hits_total.load(Ordering::Relaxed)
    }

    /// The answer to `question` asked at `at_us`, at least as fresh as
    /// `at_least`: kept, or computed by `compute` in a read-only snapshot
    /// and kept when it may be. `topics` are what the answer rests on
    /// besides the log and the generation. An answer whose `holds_at` does
    /// not contain `at_us` is not kept (one that changes with every moment).
    pub async fn read<T: Send + Sync + 'static>(
        &self,
        question: Question,
        at_us: i64,
        at_least: Option<i64>,
        topics: &[String],
        compute: impl AsyncFnOnce(&Transaction<'_>) -> Result<Answer<T>, ProjectionError>,
    ) -> Result<Arc<T>, ProjectionError> {
        let enabled = self.inner.limits.entries_max > 0;
        if enabled {
            if let Some(value) = self.kept_answer(&question, at_us, at_least) {
                self.inner.stats.hits_total.fetch_add(1, Ordering::Relaxed);
                return Ok(value);
            }
        }
        self.inner
            .stats
            .misses_total
            .fetch_add(1, Ordering::Relaxed);
        let watches = enabled.then(|| self.mark(&question, topics));
        let started = Instant::now();
        let mut client = self.inner.store.pool().get().await?;
        let transaction = client
            .build_transaction()
            .isolation_level(IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()
            .await?;
        let caught_up = match watches {
            Some(_) => folded_whole_log(&transaction, &question).await?,
            None => None,
        };
        let answer = compute(&transaction).await?;
        transaction.commit().await?;
        let value = Arc::new(answer.value);
        if let (Some(watches), Some(checkpoint)) = (watches, caught_up) {
            if answer.holds_at.contains(&at_us) {
                let entry = Entry {
                    value: value.clone(),
                    rows: answer.rows.max(1),
                    checkpoint,
                    holds_at: answer.holds_at,
                    kept_at: started,
                    watches,
                };
                self.keep(question, entry);
            }
        }
        Ok(value)
    }

    fn kept(&self) -> std::sync::MutexGuard<'_, Kept> {
        self.inner
            .kept
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn kept_answer<T: Send + Sync + 'static>(
        &self,
        question: &Question,
        at_us: i64,
        at_least: Option<i64>,
    ) -> Option<Arc<T>> {
        let listening = self.inner.store.is_listening();
        let mut kept = self.kept();
        let entry = kept.entries.get(question)?;
        let retired =
            entry.kept_at.elapsed() >= self.inner.limits.age_max || !entry.watches.unchanged();
        let holds = listening
            && !retired
            && entry.holds_at.contains(&at_us)
            && at_least.is_none_or(|position| entry.checkpoint >= position);
        if holds {
            // A question names its type by its projection and key; another
            // type under the same question is a programmer's error.
            let value = entry.value.clone().downcast::<T>();
            debug_assert!(value.is_ok(), "one question, one answer type");
            return value.ok();
        }
        if retired {
            // Retired for good: nothing it rests on comes back.
            let rows = entry.rows;
            kept.entries.remove(question);
            kept.rows -= rows;
        }
        None
    }

    /// The watches an answer to `question` rests on, marked seen now.
    fn mark(&self, question: &Question, topics: &[String]) -> Watches {
        let store = &self.inner.store;
        let mut head = store.head_watch(question.community);
        head.borrow_and_update();
        let generations = generations_topic(question.projection);
        let topics = std::iter::once(&generations)
            .chain(topics)
            .map(|topic| {
                let mut watch = store.topic_watch(topic);
                watch.borrow_and_update();
                watch
            })
            .collect();
        Watches { head, topics }
    }

    fn keep(&self, question: Question, entry: Entry) {
        let limits = self.inner.limits;
        if entry.rows > limits.rows_max {
            return;
        }
        let mut kept = self.kept();
        kept.rows += entry.rows;
        if let Some(replaced) = kept.entries.insert(question, entry) {
            kept.rows -= replaced.rows;
        }
        while kept.entries.len() > limits.entries_max || kept.rows > limits.rows_max {
            let Some((_, evicted)) = kept.entries.remove_lru() else {
                break;
            };
            kept.rows -= evicted.rows;
        }
    }
}

/// The read model's checkpoint when, in this snapshot, it has folded the
/// community's whole log; `None` while it lags (its answer is then served
/// but not kept: the model will move without a new commit).
async fn folded_whole_log(
    transaction: &Transaction<'_>,
    question: &Question,
) -> Result<Option<i64>, ProjectionError> {
    let sql = format!(
        "SELECT coalesce(({LIVE_CHECKPOINT}), 0), \
         coalesce((SELECT last_position FROM community_heads WHERE community_id = $2), 0)"
    );
    let rows = query(
        transaction,
        &sql,
        &[&question.projection, &question.community.as_uuid()],
    )
    .await?;
    let (checkpoint, head): (i64, i64) = (rows[0].get(0), rows[0].get(1));
    Ok((checkpoint >= head).then_some(checkpoint))
}
