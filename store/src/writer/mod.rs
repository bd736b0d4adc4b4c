//! Group commit: one writer task per community takes the appends waiting for
//! it and writes them as one batch, in one transaction. Each append keeps its
//! own concurrency check and outcome; one conflict does not fail the others.
//!
//! Batches may be pipelined (`StoreConfig::pipeline_depth`): while one batch
//! commits, the next is planned on top of it and sent on another connection,
//! where it waits for the head row (see `sql::MOVE_HEAD`). So batches commit
//! strictly in position order, and readers never see a position before the
//! ones below it. A batch whose base head turns out wrong (another process
//! wrote, or the batch below failed) rolls back and is planned again under
//! the head lock.

mod plan;
mod sql;

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;

use futures::stream::FuturesOrdered;
use futures::StreamExt;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_postgres::error::SqlState;

use crate::append::ValidatedAppend;
use crate::error::StoreError;
use crate::limits;
use crate::stats::StoreStats;
use crate::store::Inner;
use crate::types::{AppendOutcome, CommunityId, RecordedEvent};
use plan::{plan_batch, unknown, HeadState, Known, Plan, Unknown};
pub(crate) use sql::APPENDED_CHANNEL;
use sql::{fold_into_tree, look_up, recorded_events, write_planned, Lock, WriteEnd};

/// How long the writer trusts its reading of the database clock, advanced by
/// a monotonic timer, before it reads the clock again.
const CLOCK_READING_TTL_MS: u128 = 1_000;
/// Times a batch under the head lock is planned again after a deadlock or a
/// clash with a batch of another process, before its appends fail.
const LOCKED_ATTEMPTS_MAX: usize = 3;

pub(crate) struct PendingAppend {
    pub append: ValidatedAppend,
    /// Taken when the outcome is sent.
    pub reply: Option<oneshot::Sender<Result<AppendOutcome, StoreError>>>,
    pub enqueued_at: Instant,
}

impl Drop for PendingAppend {
    /// An append dropped unanswered (its batch's task failed, or the
    /// writer stopped) never lands: whatever was decided behind it waits
    /// no longer.
    fn drop(&mut self) {
        if !self.append.landing.is_settled() {
            self.append.landing.settle(false);
        }
    }
}

pub(crate) type WriterQueue = mpsc::Sender<PendingAppend>;

pub(crate) fn spawn_writer(
    inner: Arc<Inner>,
    community_id: CommunityId,
) -> (WriterQueue, JoinHandle<()>) {
    let (sender, receiver) = mpsc::channel(limits::WRITER_QUEUE_CAPACITY);
    let pipeline_depth = inner.pipeline_depth;
    let runtime = inner.runtime.clone();
    assert!(pipeline_depth >= 1, "at least one batch can be in flight");
    let writer = Writer {
        inner,
        pipeline_depth,
        clock: None,
        community_id,
        head: None,
        known: Known::default(),
        generation: 0,
    };
    let task = runtime.spawn(writer.run(receiver));
    (sender, task)
}

/// How a pipelined batch ended.
enum BatchEnd {
    Committed,
    /// Rolled back, nothing written: plan it again under the head lock.
    Retry,
    /// The COMMIT itself failed: its outcome cannot be known, so it must not
    /// be written again; its appends get the error.
    Failed(StoreError),
}

struct Ended {
    /// The writer's generation when the batch was planned.
    generation: u64,
    batch: Vec<PendingAppend>,
    plan: Plan,
    end: BatchEnd,
    /// The events it wrote, when it committed some (made in the batch's
    /// own task, not the writer's).
    recorded: Option<Vec<RecordedEvent>>,
}

type InFlight = JoinHandle<Ended>;

struct Writer {
    inner: Arc<Inner>,
    /// Batches in flight at once (each holds a connection).
    pipeline_depth: usize,
    /// The database clock as last read, and when, to advance it without a
    /// round trip when a batch needs nothing else from the database.
    clock: Option<(chrono::DateTime<chrono::Utc>, Instant)>,
    community_id: CommunityId,
    /// The head after the last planned batch; `None` when the next batch
    /// must read it under the lock.
    head: Option<HeadState>,
    known: Known,
    /// Counts the times the writer dropped its beliefs; a batch planned in an
    /// earlier generation was planned on something that did not land.
    generation: u64,
}

impl Writer {
    /// Runs until every sender is gone (at shutdown), finishing what is queued.
    async fn run(mut self, mut receiver: mpsc::Receiver<PendingAppend>) {
        let mut in_flight: FuturesOrdered<InFlight> = FuturesOrdered::new();
        let mut retry: VecDeque<PendingAppend> = VecDeque::new();
        let mut closed = false;
        loop {
            if !retry.is_empty() && in_flight.is_empty() {
                let batch = take_batch(&mut retry);
                self.commit_locked(batch).await;
                continue;
            }
            if closed && in_flight.is_empty() && retry.is_empty() {
                return;
            }
            let may_start = !closed && retry.is_empty() && in_flight.len() < self.pipeline_depth;
            tokio::select! {
                biased;
                Some(ended) = in_flight.next(), if !in_flight.is_empty() => {
                    self.finish(ended, &mut retry);
                }
                received = receiver.recv(), if may_start => match received {
                    None => closed = true,
                    Some(first) => {
                        let batch = gather(first, &mut receiver);
                        self.start(batch, &mut in_flight, &mut retry).await;
                    }
                },
            }
        }
    }

    async fn start(
        &mut self,
        batch: Vec<PendingAppend>,
        in_flight: &mut FuturesOrdered<InFlight>,
        retry: &mut VecDeque<PendingAppend>,
    ) {
        self.inner.stats.observe_batch(batch.len());
        if self.head.is_none() {
            // Only the lock can tell where the head is; wait for the batches
            // in flight, which will fail or land, then take it.
            if in_flight.is_empty() {
                self.commit_locked(batch).await;
            } else {
                retry.extend(batch);
            }
            return;
        }
        if in_flight.is_empty() && self.known.is_full() {
            self.known.clear();
        }
        match self.plan_pipelined(&batch).await {
            // Planned on beliefs another process made stale: plan it again
            // under the head lock, from what the database holds.
            Ok((_, plan)) if plan.outdated => {
                StoreStats::add(&self.inner.stats.batch_replans_total, 1);
                self.forget();
                retry.extend(batch);
            }
            Ok((client, plan)) => {
                let community_id = self.community_id;
                let generation = self.generation;
                in_flight.push_back(tokio::spawn(async move {
                    let end = commit_pipelined(client, community_id, &batch, &plan).await;
                    let recorded = (matches!(end, BatchEnd::Committed) && plan.writes())
                        .then(|| recorded_events(community_id, &batch, &plan))
                        .flatten();
                    Ended {
                        generation,
                        batch,
                        plan,
                        end,
                        recorded,
                    }
                }));
            }
            Err(error) => {
                tracing::warn!(community_id = %self.community_id, %error, "could not plan a batch");
                self.forget();
                retry.extend(batch);
            }
        }
    }

    async fn plan_pipelined(
        &mut self,
        batch: &[PendingAppend],
    ) -> Result<(deadpool_postgres::Object, Plan), StoreError> {
        let client = self.inner.pool.get().await?;
        let appends: Vec<&ValidatedAppend> = batch.iter().map(|p| &p.append).collect();
        let unknown = unknown(&appends, &self.known, true);
        let database_now = match self.clock_reading(&unknown) {
            Some(now) => now,
            None => {
                let lookup = look_up(
                    &client,
                    self.community_id,
                    &unknown,
                    &mut self.known,
                    Lock::None,
                )
                .await?;
                self.clock = Some((lookup.database_now, Instant::now()));
                lookup.database_now
            }
        };
        let base = self
            .head
            .clone()
            .expect("a pipelined batch has a head to build on");
        let plan = plan_batch(
            self.community_id,
            &appends,
            base,
            database_now,
            &mut self.known,
            true,
        );
        self.head = Some(plan.head.clone());
        Ok((client, plan))
    }

    /// The database clock advanced by the time since it was read, when the
    /// reading is fresh and the batch needs nothing else from the database:
    /// then planning needs no round trip.
    fn clock_reading(&self, unknown: &Unknown) -> Option<chrono::DateTime<chrono::Utc>> {
        let (read, at) = self.clock?;
        let elapsed = at.elapsed();
        if elapsed.as_millis() > CLOCK_READING_TTL_MS || !unknown.is_empty() {
            return None;
        }
        let elapsed = chrono::TimeDelta::from_std(elapsed).ok()?;
        Some(read + elapsed)
    }

    fn finish(
        &mut self,
        ended: Result<Ended, tokio::task::JoinError>,
        retry: &mut VecDeque<PendingAppend>,
    ) {
        let Ended {
            generation,
            batch,
            plan,
            end,
            recorded,
        } = match ended {
            Ok(ended) => ended,
            Err(panicked) => {
                // The batch's replies are gone with its task; its appends
                // see ShuttingDown. The head is unknown from here on.
                tracing::error!(community_id = %self.community_id, %panicked, "a batch task failed");
                self.forget();
                return;
            }
        };
        // A batch that wrote nothing judged its conflicts and replays against
        // the batches below it; if one of those did not land, judge again.
        let stale = generation != self.generation && !plan.writes();
        match end {
            BatchEnd::Committed if stale => retry.extend(batch),
            BatchEnd::Committed => {
                if plan.writes() {
                    self.landed(&plan, recorded);
                }
                reply_all(&self.inner.stats, batch, plan.results);
            }
            BatchEnd::Retry => {
                StoreStats::add(&self.inner.stats.batch_replans_total, 1);
                self.forget();
                retry.extend(batch);
            }
            BatchEnd::Failed(error) => {
                tracing::warn!(community_id = %self.community_id, %error, "a batch failed");
                self.forget();
                let failed = vec![Err(error); batch.len()];
                reply_all(&self.inner.stats, batch, failed);
            }
        }
    }

    /// What follows a batch that committed events, on either path: it is
    /// counted, its events kept, and its commit announced.
    fn landed(&self, plan: &Plan, recorded: Option<Vec<RecordedEvent>>) {
        StoreStats::add(&self.inner.stats.write_transactions_total, 1);
        self.keep_tail(recorded);
        self.inner
            .announce_commit(self.community_id, plan.head.position);
    }

    /// Keeps the events a batch committed for the log's followers, before
    /// they hear of the commit; without them, the followers read the log.
    /// The streams kept whole (`streams.rs`) follow them too; without the
    /// events, those of the community are doubted.
    fn keep_tail(&self, recorded: Option<Vec<RecordedEvent>>) {
        match recorded {
            Some(events) => {
                self.inner
                    .kept_streams
                    .committed(self.community_id, &events);
                self.inner.tails.committed(self.community_id, events)
            }
            None => {
                self.inner.kept_streams.doubt(self.community_id);
                self.inner.tails.forget(self.community_id)
            }
        }
    }

    /// Drops all beliefs: the next batch reads the head under its lock.
    /// Another process wrote, or a batch may not have landed as planned,
    /// so the streams kept in memory are doubted too; before the first
    /// batch, believing nothing yet, there is nothing to doubt.
    fn forget(&mut self) {
        if self.head.is_some() {
            self.inner.kept_streams.doubt(self.community_id);
        }
        self.generation += 1;
        self.head = None;
        self.known.clear();
    }

    /// Locks the head, plans and writes in one transaction: the first batch,
    /// and every batch after a pipelined one went wrong.
    async fn commit_locked(&mut self, batch: Vec<PendingAppend>) {
        let mut attempt = 1;
        loop {
            self.forget();
            let result = self.try_commit_locked(&batch).await;
            if result.is_err() {
                // It may have landed (its COMMIT's outcome unknown).
                self.inner.kept_streams.doubt(self.community_id);
            }
            match result {
                Err(error) if attempt < LOCKED_ATTEMPTS_MAX && is_transient(&error) => {
                    tracing::info!(community_id = %self.community_id, %error, attempt, "planning a batch again");
                    attempt += 1;
                }
                Err(error) => {
                    tracing::warn!(community_id = %self.community_id, %error, "a batch failed");
                    let failed = vec![Err(error); batch.len()];
                    return reply_all(&self.inner.stats, batch, failed);
                }
                Ok(plan) => {
                    if plan.writes() {
                        self.landed(&plan, recorded_events(self.community_id, &batch, &plan));
                    }
                    return reply_all(&self.inner.stats, batch, plan.results);
                }
            }
        }
    }

    async fn try_commit_locked(&mut self, batch: &[PendingAppend]) -> Result<Plan, StoreError> {
        let client = self.inner.pool.get().await?;
        client.batch_execute("BEGIN").await?;
        let appends: Vec<&ValidatedAppend> = batch.iter().map(|p| &p.append).collect();
        let unknown = unknown(&appends, &self.known, false);
        let looked_up = look_up(
            &client,
            self.community_id,
            &unknown,
            &mut self.known,
            Lock::Head,
        )
        .await;
        let lookup = match looked_up {
            Ok(lookup) => lookup,
            Err(error) => {
                roll_back(client).await;
                return Err(error);
            }
        };
        let Some(mut base) = lookup.head else {
            roll_back(client).await;
            let unknown = StoreError::UnknownCommunity(self.community_id);
            return Ok(Plan::refused(batch.len(), unknown));
        };
        let mut caught_up = Vec::new();
        let mut tree_trailed = false;
        if let (true, Some(mut tree)) = (self.inner.keep_tree, lookup.stored_tree) {
            tree_trailed = (tree.size() as i64) < base.position;
            match fold_into_tree(&client, self.community_id, &mut tree, base.position).await {
                Ok(nodes) => caught_up = nodes,
                Err(error) => {
                    roll_back(client).await;
                    return Err(error);
                }
            }
            base.tree = Some(tree);
        }
        self.clock = Some((lookup.database_now, Instant::now()));
        let mut plan = plan_batch(
            self.community_id,
            &appends,
            base,
            lookup.database_now,
            &mut self.known,
            false,
        );
        if !plan.writes() {
            roll_back(client).await;
            // A tree caught up but not written is not the stored one: the
            // next batch takes the lock and folds the events in again.
            self.head = (!tree_trailed).then(|| plan.head.clone());
            return Ok(plan);
        }
        caught_up.append(&mut plan.new_nodes);
        plan.new_nodes = caught_up;
        match write_planned(&client, self.community_id, batch, &plan, false).await {
            WriteEnd::Committed => {
                self.head = Some(plan.head.clone());
                Ok(plan)
            }
            WriteEnd::HeadMoved => unreachable!("the head cannot move while its lock is held"),
            WriteEnd::NotCommitted(error) | WriteEnd::Unknown(error) => Err(error),
        }
    }
}

/// Ends a transaction the writer began; a connection that cannot even roll
/// back leaves the pool rather than hand a half-open transaction to others.
async fn roll_back(client: deadpool_postgres::Object) {
    if client.batch_execute("ROLLBACK").await.is_err() {
        let _ = deadpool_postgres::Object::take(client);
    }
}

/// Writes a planned batch on its own connection, as one pipeline that waits
/// server-side for the batch below to commit (see `sql::MOVE_HEAD`).
async fn commit_pipelined(
    client: deadpool_postgres::Object,
    community_id: CommunityId,
    batch: &[PendingAppend],
    plan: &Plan,
) -> BatchEnd {
    if !plan.writes() {
        // Conflicts and replays only: they stand if the batches below land,
        // which `Writer::finish` checks, in order.
        return BatchEnd::Committed;
    }
    match write_planned(&client, community_id, batch, plan, true).await {
        WriteEnd::Committed => BatchEnd::Committed,
        WriteEnd::HeadMoved | WriteEnd::NotCommitted(_) => BatchEnd::Retry,
        WriteEnd::Unknown(error) => BatchEnd::Failed(error),
    }
}

impl Plan {
    fn refused(appends: usize, error: StoreError) -> Plan {
        let nowhere = HeadState {
            position: 0,
            hash: [0; 32],
            recorded_at: None,
            tree: None,
        };
        Plan {
            base: nowhere.clone(),
            head: nowhere,
            recorded_at: chrono::Utc::now(),
            results: vec![Err(error); appends],
            events: Vec::new(),
            new_keys: Vec::new(),
            new_nodes: Vec::new(),
            outdated: false,
        }
    }
}

/// Takes the first append and whatever else is waiting, within the batch limits.
fn gather(
    first: PendingAppend,
    receiver: &mut mpsc::Receiver<PendingAppend>,
) -> Vec<PendingAppend> {
    let mut first = Some(first);
    fill_batch(|| first.take().or_else(|| receiver.try_recv().ok()))
}

fn take_batch(queue: &mut VecDeque<PendingAppend>) -> Vec<PendingAppend> {
    fill_batch(|| queue.pop_front())
}

/// Takes appends from `next` while the batch has room: fewer than
/// `BATCH_APPENDS_MAX` appends and `BATCH_EVENTS_MAX` events so far.
fn fill_batch(mut next: impl FnMut() -> Option<PendingAppend>) -> Vec<PendingAppend> {
    let mut events = 0;
    let mut batch = Vec::new();
    while batch.len() < limits::BATCH_APPENDS_MAX && events < limits::BATCH_EVENTS_MAX {
        let Some(append) = next() else { break };
        events += append.append.request.event_count();
        batch.push(append);
    }
    batch
}

/// Deadlocks and unique violations arise when a pipelined batch of another
/// process holds rows at the positions this one planned; planning again
/// under the lock resolves them.
fn is_transient(error: &StoreError) -> bool {
    let StoreError::Database(db) = error else {
        return false;
    };
    matches!(
        db.code(),
        Some(&SqlState::T_R_DEADLOCK_DETECTED)
            | Some(&SqlState::UNIQUE_VIOLATION)
            | Some(&SqlState::T_R_SERIALIZATION_FAILURE)
    )
}

fn reply_all(
    stats: &StoreStats,
    batch: Vec<PendingAppend>,
    results: Vec<Result<AppendOutcome, StoreError>>,
) {
    assert_eq!(results.len(), batch.len(), "one result per append");
    for (mut pending, result) in batch.into_iter().zip(results) {
        match &result {
            Ok(outcome) if outcome.replayed => StoreStats::add(&stats.idempotent_replays_total, 1),
            Ok(outcome) => {
                StoreStats::add(&stats.appends_total, 1);
                let events = outcome.last_position - outcome.first_position + 1;
                StoreStats::add(&stats.events_appended_total, events as u64);
            }
            Err(StoreError::Conflict { .. } | StoreError::IdempotencyKeyReused { .. }) => {
                StoreStats::add(&stats.conflicts_total, 1);
            }
            Err(_) => StoreStats::add(&stats.append_failures_total, 1),
        }
        let micros = pending.enqueued_at.elapsed().as_micros();
        stats.observe_append_latency(u64::try_from(micros).unwrap_or(u64::MAX));
        let landed = matches!(&result, Ok(outcome) if !outcome.replayed);
        pending.append.landing.settle(landed);
        // A caller that gave up waiting is no reason to fail the others.
        if let Some(reply) = pending.reply.take() {
            let _ = reply.send(result);
        }
    }
}

pub(crate) fn to_hash(bytes: &[u8]) -> Result<[u8; 32], StoreError> {
    bytes
        .try_into()
        .map_err(|_| StoreError::Corrupt(format!("a hash of {} bytes", bytes.len())))
}
