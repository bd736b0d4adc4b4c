//! Runs projections: catches each community up from its checkpoint, then
//! follows the log live. One task per projection; every batch of one
//! community is one transaction that also moves the checkpoint.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::Pool;
use store::{CommunityId, EventStore, RecordedEvent};
use tokio::sync::{broadcast, mpsc, watch};
use tokio::task::JoinHandle;
use uuid::Uuid;

use crate::error::ProjectionError;
use crate::generation::{self, schema_name};
use crate::progress::Progress;
use crate::stalls::Stalls;
use crate::Projection;

/// The kind of stream an event belongs to; `None` for one this code does
/// not know.
pub fn kind(event: &RecordedEvent) -> Option<domain::streams::StreamKind> {
    domain::streams::StreamKind::of(&event.stream_type)
}

/// A report changed: told to live subscribers after the change committed,
/// so a query made on hearing it sees the change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change {
    pub community: CommunityId,
    pub report: Uuid,
    pub grid: Uuid,
    /// The level 1 grid the report's grid lies in (itself for a level 1 grid).
    pub level1_grid: Uuid,
    pub position: i64,
    pub event_type: String,
    pub state: String,
    /// Whether the report is hidden after this change: only staff and its
    /// reporter may hear of it.
    pub hidden: bool,
    pub reporter: Option<Uuid>,
}

#[derive(Clone, Debug)]
pub struct RunnerConfig {
    /// Events folded per transaction.
    pub batch_size: i64,
    /// Events read and folded per transaction when replaying a history
    /// into scratch generations: larger batches are fewer statements.
    pub replay_batch_size: i64,
    /// A safety net: look at the log this often even without a wake-up.
    pub idle_recheck: Duration,
    /// How long to wait after a failure before trying again.
    pub retry_delay: Duration,
    /// How often a follower checks whether its live generation must be
    /// rebuilt (an older fold, or a rebuild asked for).
    pub rebuild_check: Duration,
    /// Test hook: fail, mid-batch, on reaching this position (the batch's
    /// earlier events already folded inside the transaction).
    pub interrupt_at_position: Option<i64>,
}

impl Default for RunnerConfig {
    fn default() -> Self {
        RunnerConfig {
            batch_size: 500,
            replay_batch_size: 10_000,
            idle_recheck: Duration::from_secs(10),
            retry_delay: Duration::from_secs(1),
            rebuild_check: Duration::from_secs(30),
            interrupt_at_position: None,
        }
    }
}

/// A live generation's tables are analyzed when this many events have been
/// folded into them: a schema filled from empty would otherwise be read with
/// plans made for empty tables (a scan where an index lookup belongs), and
/// again each time that count doubles: statistics a tenth of the table's
/// size (taken at 2,000 folded events, then not before 20,000) made a
/// leaderboard fold read the community's 3,000 scores for each of a batch's
/// 195 new ones, 65 to 117 ms a batch while reports were accepted; at most
/// half its size, probing each key is the cheaper plan. Analyzing at each
/// doubling costs about as much again as the last analysis, about twenty
/// times over a history of a billion events. One being filled from zero is
/// not analyzed: nothing reads it but its own fold, by primary key, and a
/// rebuild's is analyzed once filled.
const ANALYZE_FIRST_AT_FOLDED: u64 = 1_000;

/// Whether folding from `before` to `after` events reached the next of
/// [`ANALYZE_FIRST_AT_FOLDED`] times a power of two.
fn analyze_due(before: u64, after: u64) -> bool {
    let doublings = |folded: u64| match folded / ANALYZE_FIRST_AT_FOLDED {
        0 => None,
        times => Some(times.ilog2()),
    };
    doublings(after) != doublings(before)
}

/// Set for every fold's transaction. A fold reads and writes the rows its
/// batch names, by key, and every table it touches has an index on that
/// key. But PostgreSQL prices an index probe as a random read from disk,
/// so a few hundred probes looked dearer than one scan of the community's
/// whole table joined by hash, until the table held tens of thousands of
/// rows: every batch scanned the grid moments of every report and every
/// leaderboard score (11 to 15 ms a batch at 35,000 events), more as the
/// history grew. With scans and hash and merge joins priced out, no
/// statement scans a table, whatever the statistics and costs say
/// (docs/adr/0016). An index scan may still read the community's rows
/// through the first column of an index: loads, updates and deletes are
/// written as a probe per key for that (`sql::probe`), and the statistics
/// are kept near the tables' size ([`analyze_due`], docs/adr/0017).
macro_rules! fold_settings {
    () => {
        "SET LOCAL enable_seqscan = off; SET LOCAL enable_hashjoin = off; \
         SET LOCAL enable_mergejoin = off"
    };
}
const FOLD_SETTINGS: &str = fold_settings!();

/// [`FOLD_SETTINGS`], for a generation being filled batch by batch, which
/// nothing waits on: a crash may lose its last batches (never half of one),
/// and the fill goes on from the checkpoint that was kept.
const FILL_SETTINGS: &str = concat!(fold_settings!(), "; SET LOCAL synchronous_commit = off");

/// How often a following runner reads which generation is live even when
/// no promotion was announced: every pass did, 0.96 statements for every
/// redemption pair at the counter (docs/adr/0024).
const LIVE_RECHECK: Duration = Duration::from_secs(1);

/// How many batches a replay reads ahead of its slowest projection.
const READ_AHEAD_BATCHES: usize = 2;

/// What a pass over the communities did.
#[derive(Default)]
struct Passed {
    /// It folded some events.
    progressed: bool,
    /// A community it folded is still behind the head the pass read (its
    /// batch ended first), and none failed there.
    behind: bool,
}

/// Capacity of the live change channel; a subscriber further behind misses
/// changes (and is told so) rather than holding memory.
const CHANGES_CAPACITY: usize = 4_096;

#[derive(Clone)]
pub struct ProjectionRunner {
    store: EventStore,
    config: RunnerConfig,
    progress: Progress,
    changes: broadcast::Sender<Change>,
    stalls: Stalls,
}

impl ProjectionRunner {
    pub fn new(store: EventStore, config: RunnerConfig) -> Self {
        ProjectionRunner {
            store,
            config,
            progress: Progress::default(),
            changes: broadcast::channel(CHANGES_CAPACITY).0,
            stalls: Stalls::default(),
        }
    }

    /// Where the live projections are stuck, per community.
    pub fn stalls(&self) -> &Stalls {
        &self.stalls
    }

    pub fn progress(&self) -> &Progress {
        &self.progress
    }

    pub fn subscribe_changes(&self) -> broadcast::Receiver<Change> {
        self.changes.subscribe()
    }

    fn pool(&self) -> &Pool {
        self.store.pool()
    }

    /// Follows the log with every projection until `shutdown` turns true.
    pub fn spawn(
        &self,
        projections: Vec<Arc<dyn Projection>>,
        shutdown: watch::Receiver<bool>,
    ) -> Vec<JoinHandle<()>> {
        projections
            .into_iter()
            .map(|projection| {
                let runner = self.clone();
                let shutdown = shutdown.clone();
                tokio::spawn(async move { runner.follow(projection, shutdown).await })
            })
            .collect()
    }

    async fn follow(&self, projection: Arc<dyn Projection>, mut shutdown: watch::Receiver<bool>) {
        let mut followed: Option<Generation> = None;
        let mut rebuild_checked: Option<std::time::Instant> = None;
        let mut log = self.store.watch_log();
        // Which generation is live is read again when a promotion is
        // announced (or the listener reconnected), and at least every
        // `LIVE_RECHECK`, not on every pass.
        let mut promotions = self
            .store
            .topic_watch(&crate::cache::generations_topic(projection.name()));
        let mut live_read: Option<std::time::Instant> = None;
        // The first pass, and every pass the idle recheck starts, reads the
        // heads afresh (the recheck is the safety net for announcements
        // that never came); a pass an announcement woke may share the read
        // other projections woken with it make.
        let mut shared = false;
        while !*shutdown.borrow() {
            if rebuild_checked.is_none_or(|at| at.elapsed() >= self.config.rebuild_check) {
                self.rebuild_if_stale(&projection).await;
                rebuild_checked = Some(std::time::Instant::now());
            }
            let seen = *log.borrow_and_update();
            let heads = shared.then_some(seen);
            let reread = promotions.has_changed().unwrap_or(true)
                || !self.store.is_listening()
                || live_read.is_none_or(|at| at.elapsed() >= LIVE_RECHECK);
            if reread {
                promotions.borrow_and_update();
                live_read = Some(std::time::Instant::now());
            }
            let passed = self.follow_once(&*projection, &mut followed, heads, reread);
            let behind = match passed.await {
                Ok(behind) => behind,
                Err(error) => {
                    tracing::error!(projection = projection.name(), %error, "projection failed; retrying");
                    followed = None;
                    shared = false;
                    tokio::select! {
                        _ = tokio::time::sleep(self.config.retry_delay) => {}
                        _ = shutdown.changed() => {}
                    }
                    continue;
                }
            };
            // A pass that folded every community up to the heads it read
            // waits for the next announcement (one made during the pass has
            // already changed the watch); one that stopped at a batch's end
            // goes on at once.
            shared = true;
            if !behind {
                // Idle, but not past the next check for a rebuild.
                let rebuild_due = rebuild_checked.map_or(Duration::ZERO, |at| {
                    self.config.rebuild_check.saturating_sub(at.elapsed())
                });
                tokio::select! {
                    changed = log.changed() => shared = changed.is_ok(),
                    _ = tokio::time::sleep(self.config.idle_recheck.min(rebuild_due)) => shared = false,
                    _ = shutdown.changed() => {}
                }
            }
        }
    }

    /// Starts a rebuild, beside the following, when the live generation was
    /// folded by an older fold; the following switches to the new
    /// generation once it is promoted.
    async fn rebuild_if_stale(&self, projection: &Arc<dyn Projection>) {
        match generation::is_stale(self.pool(), &**projection).await {
            Ok(false) => {}
            Ok(true) => {
                tracing::warn!(
                    projection = projection.name(),
                    fold_version = projection.fold_version(),
                    "the live generation was folded by an older fold; rebuilding it"
                );
                let runner = self.clone();
                let projection = projection.clone();
                tokio::spawn(async move {
                    if let Err(error) = runner.rebuild(&*projection).await {
                        tracing::error!(projection = projection.name(), %error, "the rebuild failed; the next start tries again");
                    }
                });
            }
            Err(error) => {
                tracing::error!(projection = projection.name(), %error, "could not read the live generation's fold version")
            }
        }
    }

    /// One pass over every community of the live generation (switching when
    /// a rebuild promoted another: read again when `reread_live`), on the
    /// heads read after the log watch read `heads_since`, or on a fresh
    /// read. True when some community is still behind the head the pass
    /// read: its batch ended before it.
    async fn follow_once(
        &self,
        projection: &dyn Projection,
        followed: &mut Option<Generation>,
        heads_since: Option<u64>,
        reread_live: bool,
    ) -> Result<bool, ProjectionError> {
        if reread_live || followed.is_none() {
            let live = generation::ensure_live(self.pool(), projection).await?;
            if followed.as_ref().map(|g| g.number) != Some(live) {
                *followed = Some(Generation::new(live, false));
            }
        }
        let generation = followed.as_mut().expect("set above");
        let heads = match heads_since {
            Some(seen) => self.store.community_heads_since(seen).await?,
            None => Arc::new(self.store.community_heads().await?),
        };
        Ok(self
            .pass(projection, generation, true, &heads)
            .await?
            .behind)
    }

    /// Folds every community of a generation up to the heads seen now.
    /// Returns the number of events folded.
    pub async fn catch_up(
        &self,
        projection: &dyn Projection,
        generation: i32,
    ) -> Result<u64, ProjectionError> {
        let mut state = self.generation(projection, generation).await?;
        loop {
            let heads = self.store.community_heads().await?;
            if !self
                .pass(projection, &mut state, false, &heads)
                .await?
                .progressed
            {
                break;
            }
        }
        Ok(state.folded)
    }

    /// Folds one community into several generations (one per projection)
    /// up to position `until`: the log is read once, in large batches, a few
    /// batches ahead of the slowest projection; each projection folds them in
    /// turn on its own connection, at its own pace. Returns the number of
    /// events read.
    pub async fn catch_up_all_to(
        &self,
        folds: &[(Arc<dyn Projection>, i32)],
        community: CommunityId,
        until: i64,
    ) -> Result<u64, ProjectionError> {
        self.fold_all_to(folds, community, until, None).await
    }

    /// As [`ProjectionRunner::catch_up_all_to`], into generations being
    /// filled from zero: each is finished ([`generation::finish_building`])
    /// as soon as it has folded the lot, while the others still fold.
    pub async fn fill_all_to(
        &self,
        folds: &[(Arc<dyn Projection>, i32)],
        community: CommunityId,
        until: i64,
        building: generation::Building,
    ) -> Result<u64, ProjectionError> {
        self.fold_all_to(folds, community, until, Some(building))
            .await
    }

    async fn fold_all_to(
        &self,
        folds: &[(Arc<dyn Projection>, i32)],
        community: CommunityId,
        until: i64,
        finish: Option<generation::Building>,
    ) -> Result<u64, ProjectionError> {
        let mut states = Vec::with_capacity(folds.len());
        for (projection, generation) in folds {
            states.push(self.generation(&**projection, *generation).await?);
        }
        let mut from = i64::MAX;
        for ((projection, _), state) in folds.iter().zip(&mut states) {
            from = from.min(self.checkpoint(&**projection, state, community).await?);
        }
        let (senders, receivers): (Vec<_>, Vec<_>) = folds
            .iter()
            .map(|_| mpsc::channel::<Arc<Vec<RecordedEvent>>>(READ_AHEAD_BATCHES))
            .unzip();
        let mut batches =
            self.store
                .log_batches(community, from + 1, until, self.config.replay_batch_size);
        let reading = async move {
            let mut read = 0;
            while let Some(events) = batches.next().await? {
                let events = Arc::new(events);
                read += events.len() as u64;
                for sender in &senders {
                    // A projection that failed has stopped listening; its
                    // error is what the caller gets.
                    let _ = sender.send(events.clone()).await;
                }
            }
            Ok::<u64, ProjectionError>(read)
        };
        let folding = folds.iter().zip(states).zip(receivers).map(
            |(((projection, number), mut state), mut batches)| async move {
                while let Some(events) = batches.recv().await {
                    // Until the checkpoint passes the batch: another runner
                    // may have moved it meanwhile (then fold the rest).
                    loop {
                        let checkpoint = self
                            .checkpoint(&**projection, &mut state, community)
                            .await?;
                        let unfolded = events.partition_point(|e| e.position <= checkpoint);
                        if unfolded == events.len() {
                            break;
                        }
                        self.fold(
                            &**projection,
                            &mut state,
                            community,
                            &events[unfolded..],
                            false,
                        )
                        .await?;
                    }
                }
                if let Some(building) = finish {
                    generation::finish_building(self.pool(), &**projection, *number, building)
                        .await?;
                }
                Ok::<(), ProjectionError>(())
            },
        );
        let (read, _) =
            futures::future::try_join(reading, futures::future::try_join_all(folding)).await?;
        Ok(read)
    }

    /// Rebuilds a projection from position zero into a new generation while
    /// the live one keeps serving, then promotes it. Returns the generation.
    pub async fn rebuild(&self, projection: &dyn Projection) -> Result<i32, ProjectionError> {
        let mut builder = generation::Builder::new(self.pool()).await?;
        let generation = builder
            .start(projection, generation::Building::Rebuild)
            .await?;
        self.catch_up(projection, generation).await?;
        generation::finish_building(
            self.pool(),
            projection,
            generation,
            generation::Building::Rebuild,
        )
        .await?;
        generation::promote(self.pool(), projection.name(), generation).await?;
        // Other processes hear of it through the NOTIFY the promotion sent.
        self.store
            .announce_topic(&crate::cache::generations_topic(projection.name()));
        tracing::info!(
            projection = projection.name(),
            generation,
            "projection rebuilt"
        );
        Ok(generation)
    }

    /// What the runner starts out knowing of a generation it catches up.
    async fn generation(
        &self,
        projection: &dyn Projection,
        number: i32,
    ) -> Result<Generation, ProjectionError> {
        let filling = generation::is_building(self.pool(), projection.name(), number).await?;
        Ok(Generation::new(number, filling))
    }

    /// Steps every community of `heads` whose log grew past the checkpoint.
    async fn pass(
        &self,
        projection: &dyn Projection,
        generation: &mut Generation,
        live: bool,
        heads: &[(CommunityId, i64)],
    ) -> Result<Passed, ProjectionError> {
        let mut passed = Passed::default();
        for &(community, head) in heads {
            if !live {
                // A rebuild or a replay must fail loudly, not skip.
                passed.progressed |= self
                    .step(projection, generation, community, head, live)
                    .await?;
                continue;
            }
            // Live, one community's failure holds up that community alone.
            let name = projection.name();
            if !self.stalls.due(name, community) {
                continue;
            }
            match self
                .step(projection, generation, community, head, live)
                .await
            {
                Ok(stepped) => {
                    self.stalls.cleared(name, community);
                    passed.progressed |= stepped;
                    passed.behind |= generation
                        .checkpoints
                        .get(&community)
                        .is_some_and(|checkpoint| *checkpoint < head);
                }
                Err(error) => {
                    let position = match &error {
                        ProjectionError::Process { position, .. }
                        | ProjectionError::Undecodable { position, .. }
                        | ProjectionError::Interrupted(position) => Some(*position),
                        _ => generation.checkpoints.get(&community).map(|c| c + 1),
                    };
                    // Its checkpoint is read again on the next try.
                    generation.checkpoints.remove(&community);
                    self.stalls.failed(
                        name,
                        community,
                        position,
                        &error.to_string(),
                        self.config.retry_delay,
                    );
                }
            }
        }
        Ok(passed)
    }

    /// Folds the next batch of one community, whose log ended at `head`
    /// a moment ago. True when it folded any. A community whose log has
    /// not grown past the checkpoint is not read: a pass over many
    /// communities reads the logs of those with news alone.
    async fn step(
        &self,
        projection: &dyn Projection,
        generation: &mut Generation,
        community: CommunityId,
        head: i64,
        live: bool,
    ) -> Result<bool, ProjectionError> {
        let checkpoint = self.checkpoint(projection, generation, community).await?;
        if head <= checkpoint {
            return Ok(false);
        }
        let events = self
            .store
            .read_log_followed(community, checkpoint + 1, self.config.batch_size)
            .await?;
        if events.is_empty() {
            return Ok(false);
        }
        self.fold(projection, generation, community, &events, live)
            .await
    }

    /// Where a generation stands in a community's log.
    async fn checkpoint(
        &self,
        projection: &dyn Projection,
        generation: &mut Generation,
        community: CommunityId,
    ) -> Result<i64, ProjectionError> {
        if let Some(position) = generation.checkpoints.get(&community) {
            return Ok(*position);
        }
        let position = self
            .load_checkpoint(projection, generation.number, community)
            .await?;
        generation.checkpoints.insert(community, position);
        Ok(position)
    }

    /// Folds `events` (the batch right after the generation's checkpoint)
    /// in one transaction that also moves the checkpoint. True when it
    /// folded them, or found another runner had moved the checkpoint first.
    async fn fold(
        &self,
        projection: &dyn Projection,
        generation: &mut Generation,
        community: CommunityId,
        events: &[RecordedEvent],
        live: bool,
    ) -> Result<bool, ProjectionError> {
        let Some(last) = events.last().map(|e| e.position) else {
            return Ok(false);
        };
        let checkpoint = self.checkpoint(projection, generation, community).await?;
        let interrupted = self
            .config
            .interrupt_at_position
            .and_then(|at| events.iter().position(|e| e.position == at));
        let read = projection.streams();
        if !generation.filling
            && interrupted.is_none()
            && !events
                .iter()
                .any(|event| kind(event).is_some_and(|kind| read.contains(&kind)))
        {
            let moved = (checkpoint, last, events.len());
            return self
                .pass_over(projection, generation, community, moved, live)
                .await;
        }
        let schema = schema_name(projection.name(), generation.number);
        let mut client = self.pool().get().await?;
        let transaction = client.transaction().await?;
        // Both checkpoint statements run once per batch of every
        // projection: on the connection's statement cache.
        let lock = transaction
            .prepare_cached(
                "SELECT position FROM projection_checkpoints WHERE projection = $1 \
                 AND generation = $2 AND community_id = $3 FOR UPDATE",
            )
            .await?;
        let settings = if generation.filling {
            FILL_SETTINGS
        } else {
            FOLD_SETTINGS
        };
        let (name, community_id) = (projection.name(), community.as_uuid());
        let params: [&(dyn tokio_postgres::types::ToSql + Sync); 3] =
            [&name, &generation.number, &community_id];
        // Sent together: one round trip.
        let (_, stored) = futures::try_join!(
            transaction.batch_execute(settings),
            transaction.query_one(&lock, &params),
        )?;
        let stored: i64 = stored.get(0);
        if stored != checkpoint {
            // Another runner (another process) moved it first: start over
            // from where it is.
            generation.checkpoints.insert(community, stored);
            return Ok(true);
        }
        let mut changes = Vec::new();
        let folded = &events[..interrupted.unwrap_or(events.len())];
        if generation.filling {
            projection.fill_batch(&transaction, &schema, folded).await?;
        } else {
            projection
                .apply_batch(&transaction, &schema, folded, &mut changes)
                .await?;
        }
        if let Some(index) = interrupted {
            return Err(ProjectionError::Interrupted(events[index].position));
        }
        let moved = transaction
            .prepare_cached(
                "UPDATE projection_checkpoints SET position = $4 WHERE projection = $1 \
                 AND generation = $2 AND community_id = $3",
            )
            .await?;
        transaction
            .execute(
                &moved,
                &[
                    &projection.name(),
                    &generation.number,
                    &community.as_uuid(),
                    &last,
                ],
            )
            .await?;
        transaction.commit().await?;
        generation.checkpoints.insert(community, last);
        let before = generation.folded;
        generation.folded += events.len() as u64;
        if live {
            self.progress.publish(projection.name(), community, last);
            for change in changes {
                // No receiver is fine: nobody is subscribed.
                let _ = self.changes.send(change);
            }
        }
        if !generation.filling && analyze_due(before, generation.folded) {
            // On its own connection, after the batch is published: the
            // analysis of every table of the generation took long enough
            // to hold back the reads waiting for this batch (`atLeast`) by
            // a few hundred milliseconds, and ANALYZE does not block the
            // folds' writes, so nothing needs to wait for it.
            let (pool, schema) = (self.pool().clone(), schema.clone());
            tokio::spawn(async move {
                let analyzed = match pool.get().await {
                    Ok(client) => generation::analyze(&client, &schema).await,
                    Err(error) => Err(error.into()),
                };
                if let Err(error) = analyzed {
                    tracing::warn!(%schema, %error, "could not analyze a read model's tables");
                }
            });
        }
        Ok(true)
    }

    /// Moves the checkpoint from `checkpoint` to `last`, past `passed`
    /// events, none of which the projection reads (its tables stay as they
    /// were), in one statement rather than a transaction of five: while a counter redeemed, four of every five
    /// fold transactions were of projections with nothing to fold. The
    /// checkpoint moves only from where this runner left it; when another
    /// runner moved it first, it is read again.
    async fn pass_over(
        &self,
        projection: &dyn Projection,
        generation: &mut Generation,
        community: CommunityId,
        (checkpoint, last, passed): (i64, i64, usize),
        live: bool,
    ) -> Result<bool, ProjectionError> {
        let client = self.pool().get().await?;
        let moved = client
            .prepare_cached(
                "UPDATE projection_checkpoints SET position = $4 WHERE projection = $1 \
                 AND generation = $2 AND community_id = $3 AND position = $5",
            )
            .await?;
        let params: [&(dyn tokio_postgres::types::ToSql + Sync); 5] = [
            &projection.name(),
            &generation.number,
            &community.as_uuid(),
            &last,
            &checkpoint,
        ];
        if client.execute(&moved, &params).await? == 0 {
            generation.checkpoints.remove(&community);
            return Ok(true);
        }
        generation.checkpoints.insert(community, last);
        generation.folded += passed as u64;
        if live {
            self.progress.publish(projection.name(), community, last);
        }
        Ok(true)
    }

    async fn load_checkpoint(
        &self,
        projection: &dyn Projection,
        generation: i32,
        community: CommunityId,
    ) -> Result<i64, ProjectionError> {
        let client = self.pool().get().await?;
        client
            .execute(
                "INSERT INTO projection_checkpoints (projection, generation, community_id, position) \
                 VALUES ($1, $2, $3, 0) ON CONFLICT DO NOTHING",
                &[&projection.name(), &generation, &community.as_uuid()],
            )
            .await?;
        let row = client
            .query_one(
                "SELECT position FROM projection_checkpoints WHERE projection = $1 \
                 AND generation = $2 AND community_id = $3",
                &[&projection.name(), &generation, &community.as_uuid()],
            )
            .await?;
        Ok(row.get(0))
    }
}

/// What a runner knows of the generation it folds into.
struct Generation {
    number: i32,
    /// Being filled from zero: folded with `fill_batch`.
    filling: bool,
    checkpoints: HashMap<CommunityId, i64>,
    folded: u64,
}

impl Generation {
    fn new(number: i32, filling: bool) -> Self {
        Generation {
            number,
            filling,
            checkpoints: HashMap::new(),
            folded: 0,
        }
    }
}

/// Decodes an event's payload as `T`, naming the position when it cannot.
pub fn decode<T: serde::de::DeserializeOwned>(event: &RecordedEvent) -> Result<T, ProjectionError> {
    event
        .decode()
        .map_err(|error| ProjectionError::Undecodable {
            position: event.position,
            reason: error.to_string(),
        })
}

/// The id in a stream id `<prefix>-<uuid>` (e.g. `report-…`), naming the
/// position when the stream is not one of that kind.
pub fn entity_id(event: &RecordedEvent, prefix: &str) -> Result<Uuid, ProjectionError> {
    event
        .stream_id
        .strip_prefix(prefix)
        .and_then(|rest| rest.strip_prefix('-'))
        .and_then(|id| Uuid::parse_str(id).ok())
        .ok_or_else(|| ProjectionError::Undecodable {
            position: event.position,
            reason: format!("`{}` is not a {prefix} stream", event.stream_id),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Folded one batch at a time, a live generation is analyzed when it
    /// first holds 1,000 folded events and then at 2,000, 4,000, 8,000 …
    /// wherever the batches end: never twice in one doubling, never more
    /// than one doubling late.
    #[test]
    fn a_live_generation_is_analyzed_each_time_its_folded_events_double() {
        for batch in [1_u64, 7, 500, 999, 1_000, 4_096] {
            let mut folded = 0_u64;
            let mut analyzed_at = Vec::new();
            while folded < 64_000 {
                let before = folded;
                folded += batch;
                if analyze_due(before, folded) {
                    analyzed_at.push(folded);
                }
            }
            // The end of the first batch to reach each of 1,000 × 2^k; a
            // batch that reaches several is one analysis.
            let mut expected: Vec<u64> = (0..7)
                .map(|k| (1_000_u64 << k).div_ceil(batch) * batch)
                .collect();
            expected.dedup();
            assert_eq!(analyzed_at, expected, "batches of {batch}");
        }
        assert!(!analyze_due(0, 999));
        assert!(analyze_due(999, 1_000));
        assert!(!analyze_due(1_000, 1_999));
        assert!(analyze_due(0, 1_000_000));
    }
}
