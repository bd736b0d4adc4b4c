//! The event store: appends through per-community writers, reads, heads.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use crate::pgjson::JsonbValue;
use chrono::{DateTime, Utc};
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use futures::TryStreamExt;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;
use tokio_postgres::types::ToSql;
use tokio_postgres::{NoTls, Row};

use crate::append::validate;
use crate::canonical::GENESIS_HASH;
use crate::error::StoreError;
use crate::limits;
use crate::listener;
use crate::notifier::{self, Pending};
use crate::stats::StoreStats;
use crate::types::{AppendOutcome, AppendRequest, CommunityId, Head, RecordedEvent};
use crate::writer::{spawn_writer, to_hash, PendingAppend, WriterQueue, APPENDED_CHANNEL};

/// How the store connects and how much it may hold open.
#[derive(Clone, Debug)]
pub struct StoreConfig {
    pub pool_size_max: usize,
    pub statement_timeout_ms: u64,
    /// Batches of one community in flight at once. More overlaps PostgreSQL's
    /// insert work across connections but splits batches, and each batch
    /// costs a commit; on a 2-core machine 1 measured best (docs/adr/0002).
    pub pipeline_depth: usize,
    /// Whether appends keep each log's Merkle tree (docs/AUDIT.md). Off
    /// only to measure what keeping it costs (`bench audit`): a log written
    /// without it has its tree caught up by the next writer that keeps it.
    pub keep_tree: bool,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            pool_size_max: 16,
            statement_timeout_ms: 30_000,
            pipeline_depth: 1,
            keep_tree: true,
        }
    }
}

/// An append queued with its community's writer.
pub struct Submitted {
    landing: crate::Landing,
    outcome: oneshot::Receiver<Result<AppendOutcome, StoreError>>,
}

impl Submitted {
    pub fn landing(&self) -> crate::Landing {
        self.landing.clone()
    }

    /// Waits for the append's commit, or its refusal.
    pub async fn outcome(self) -> Result<AppendOutcome, StoreError> {
        self.outcome.await.map_err(|_| StoreError::ShuttingDown)?
    }
}

/// A handle to the event store; cheap to clone, shared by every task.
#[derive(Clone)]
pub struct EventStore {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub pool: Pool,
    pub pipeline_depth: usize,
    pub keep_tree: bool,
    pub pg_config: tokio_postgres::Config,
    pub stats: StoreStats,
    writers: Mutex<HashMap<CommunityId, WriterQueue>>,
    /// The runtime the store was connected on, where every community's
    /// writer runs: not the runtime of whichever caller first appends to
    /// the community, such as one HTTP worker's thread, which would carry
    /// that community's writing beside its own requests and stop it when
    /// that runtime ends.
    pub(crate) runtime: tokio::runtime::Handle,
    /// `local_day` answers by time zone and minute (see there).
    days: Mutex<HashMap<(String, i64), i32>>,
    writer_tasks: Mutex<Vec<JoinHandle<()>>>,
    /// The highest position known to be committed, per community, for
    /// subscribers; fed by local commits and by NOTIFY from other processes.
    heads: Mutex<HashMap<CommunityId, watch::Sender<i64>>>,
    /// Bumped whenever any community's log may have grown, for readers that
    /// follow every community (the projection runner).
    log_grew: watch::Sender<u64>,
    /// The last read of every community's head, with the `log_grew` count
    /// seen before it was made ([`EventStore::community_heads_since`]).
    heads_read: tokio::sync::Mutex<Option<(u64, Heads)>>,
    /// A count per topic, bumped whenever a change other than an append is
    /// announced (a profile changed, a read model's generation promoted),
    /// by this process or, through NOTIFY, by another
    /// ([`EventStore::topic_watch`]).
    topics: Mutex<HashMap<String, watch::Sender<u64>>>,
    /// True while the listener holds a connection that has run LISTEN: only
    /// then does every commit of another process reach the watches.
    pub(crate) listening: AtomicBool,
    shutting_down: AtomicBool,
    listener_task: Mutex<Option<JoinHandle<()>>>,
    /// This process's commits not yet announced to the others
    /// (`notifier.rs`).
    pub(crate) pending_announcements: Arc<Pending>,
    notifier_task: Mutex<Option<JoinHandle<()>>>,
    /// The newest events this process committed, per community
    /// ([`EventStore::read_log_followed`]).
    pub(crate) tails: crate::tail::Tails,
    /// Whole streams this process read lately and wrote since
    /// ([`EventStore::read_whole_stream`]).
    pub(crate) kept_streams: crate::streams::KeptStreams,
}

/// Every community with the last position of its log, in creation order.
pub type Heads = Arc<Vec<(CommunityId, i64)>>;

pub(crate) const EVENT_COLUMNS: &str = "community_id, position, stream_id, stream_type, \
    stream_version, event_type, event_version, payload, metadata, recorded_at, previous_hash, hash";

impl EventStore {
    /// Connects a pool to PostgreSQL. Run the migrations first.
    /// [`EventStore::connect`] from a PostgreSQL URL
    /// (`postgres://user@host:port/database`, or with `host=/run/postgresql`
    /// for a socket), for embedders that have a URL, not a `Config`.
    pub async fn connect_url(url: &str, config: StoreConfig) -> Result<EventStore, StoreError> {
        let pg_config = url.parse::<tokio_postgres::Config>().map_err(|error| {
            StoreError::invalid("database_url", format!("not a PostgreSQL URL: {error}"))
        })?;
        EventStore::connect(pg_config, config).await
    }

    pub async fn connect(
        mut pg_config: tokio_postgres::Config,
        config: StoreConfig,
    ) -> Result<EventStore, StoreError> {
        pg_config.options(format!(
            "-c statement_timeout={}",
            config.statement_timeout_ms
        ));
        // Named so that an operator can tell its connections apart, unless
        // the embedder named them.
        if pg_config.get_application_name().is_none() {
            pg_config.application_name("civic-ledger");
        }
        let manager = Manager::from_config(
            pg_config.clone(),
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(config.pool_size_max)
            .build()
            .map_err(|e| StoreError::Pool(e.to_string()))?;
        // Fail here, not on the first append, when the database is unreachable.
        drop(pool.get().await?);
        if config.pipeline_depth == 0 || config.pipeline_depth >= config.pool_size_max {
            return Err(StoreError::invalid(
                "pipeline_depth",
                "must be at least 1 and below the pool size",
            ));
        }
        let inner = Arc::new(Inner {
            pool,
            pipeline_depth: config.pipeline_depth,
            keep_tree: config.keep_tree,
            pg_config,
            stats: StoreStats::default(),
            writers: Mutex::new(HashMap::new()),
            runtime: tokio::runtime::Handle::current(),
            days: Mutex::new(HashMap::new()),
            writer_tasks: Mutex::new(Vec::new()),
            heads: Mutex::new(HashMap::new()),
            log_grew: watch::channel(0).0,
            heads_read: tokio::sync::Mutex::new(None),
            topics: Mutex::new(HashMap::new()),
            listening: AtomicBool::new(false),
            shutting_down: AtomicBool::new(false),
            listener_task: Mutex::new(None),
            pending_announcements: Arc::new(Pending::default()),
            notifier_task: Mutex::new(None),
            tails: crate::tail::Tails::default(),
            kept_streams: crate::streams::KeptStreams::default(),
        });
        let task = listener::spawn(Arc::downgrade(&inner));
        *lock(&inner.listener_task) = Some(task);
        let task = notifier::spawn(Arc::downgrade(&inner));
        *lock(&inner.notifier_task) = Some(task);
        Ok(EventStore { inner })
    }

    pub fn pool(&self) -> &Pool {
        &self.inner.pool
    }

    pub fn stats(&self) -> &StoreStats {
        &self.inner.stats
    }

    /// Registers a community and its empty chain (genesis hash).
    pub async fn create_community(&self, id: CommunityId, name: &str) -> Result<(), StoreError> {
        if name.trim().is_empty() || name.len() > 200 {
            return Err(StoreError::invalid("name", "must be 1 to 200 bytes"));
        }
        crate::canonical::check_text("name", name)?;
        let mut client = self.inner.pool.get().await?;
        let transaction = client.transaction().await?;
        let inserted = transaction
            .execute(
                "INSERT INTO communities (community_id, name) VALUES ($1, $2) \
                 ON CONFLICT DO NOTHING",
                &[&id.as_uuid(), &name],
            )
            .await?;
        if inserted == 0 {
            return Err(StoreError::CommunityExists(id));
        }
        transaction
            .execute(
                "INSERT INTO community_heads (community_id, last_position, last_hash) \
                 VALUES ($1, 0, $2)",
                &[&id.as_uuid(), &&GENESIS_HASH[..]],
            )
            .await?;
        transaction.commit().await?;
        Ok(())
    }

    /// Removes a community that holds no event (a registration refused
    /// after its row was made), so a refusal leaves nothing behind. A
    /// community with any event is left as it is.
    pub async fn forget_empty_community(&self, id: CommunityId) -> Result<(), StoreError> {
        let mut client = self.inner.pool.get().await?;
        let transaction = client.transaction().await?;
        let removed = transaction
            .execute(
                "DELETE FROM community_heads WHERE community_id = $1 AND last_position = 0",
                &[&id.as_uuid()],
            )
            .await?;
        if removed == 1 {
            // Content put before a first event (`put_content`) goes with it:
            // no foreign key holds it to the community.
            for table in ["contents", "idempotency_keys", "communities"] {
                transaction
                    .execute(
                        &format!("DELETE FROM {table} WHERE community_id = $1"),
                        &[&id.as_uuid()],
                    )
                    .await?;
            }
        }
        transaction.commit().await?;
        Ok(())
    }

    /// Appends atomically to one or several streams of one community. Waits
    /// for the community's writer to commit the batch this append joins.
    pub async fn append(&self, request: AppendRequest) -> Result<AppendOutcome, StoreError> {
        self.submit(request).await?.outcome().await
    }

    /// Queues an append with its community's writer and returns once it is
    /// queued, before it commits: appends queued later, by anyone, are
    /// planned after it. Its [`Landing`](crate::Landing) lets a command
    /// decided on the state it leaves be queued right behind it
    /// ([`AppendRequest::after`]); [`Submitted::outcome`] waits for it.
    pub async fn submit(&self, request: AppendRequest) -> Result<Submitted, StoreError> {
        let append = validate(request)?;
        let community_id = append.request.community_id;
        let landing = append.landing.clone();
        let (reply, outcome) = oneshot::channel();
        let pending = PendingAppend {
            append,
            reply: Some(reply),
            enqueued_at: Instant::now(),
        };
        let queue = self.writer_for(community_id)?;
        queue
            .send(pending)
            .await
            .map_err(|_| StoreError::ShuttingDown)?;
        Ok(Submitted { landing, outcome })
    }

    fn writer_for(&self, community_id: CommunityId) -> Result<WriterQueue, StoreError> {
        if self.inner.shutting_down.load(Ordering::Acquire) {
            return Err(StoreError::ShuttingDown);
        }
        let mut writers = lock(&self.inner.writers);
        if let Some(queue) = writers.get(&community_id) {
            return Ok(queue.clone());
        }
        let (queue, task) = spawn_writer(self.inner.clone(), community_id);
        writers.insert(community_id, queue.clone());
        lock(&self.inner.writer_tasks).push(task);
        Ok(queue)
    }

    /// Refuses new appends, lets every queued append commit, then returns.
    pub async fn shutdown(&self) {
        self.inner.shutting_down.store(true, Ordering::Release);
        lock(&self.inner.writers).clear();
        let tasks: Vec<JoinHandle<()>> = std::mem::take(&mut *lock(&self.inner.writer_tasks));
        for task in tasks {
            let _ = task.await;
        }
        // The last commits are announced before the notifier stops.
        if let Err(error) = notifier::send_now(&self.inner).await {
            tracing::warn!(%error, "could not announce the last commits");
        }
        for task in [&self.inner.listener_task, &self.inner.notifier_task] {
            if let Some(task) = lock(task).take() {
                task.abort();
            }
        }
    }

    /// The chain head of a community.
    pub async fn head(&self, community_id: CommunityId) -> Result<Head, StoreError> {
        let client = self.inner.pool.get().await?;
        let statement = client
            .prepare_cached(
                "SELECT last_position, last_hash FROM community_heads WHERE community_id = $1",
            )
            .await?;
        let row = client
            .query_opt(&statement, &[&community_id.as_uuid()])
            .await?
            .ok_or(StoreError::UnknownCommunity(community_id))?;
        Ok(Head {
            community_id,
            position: row.get(0),
            hash: to_hash(row.get(1))?,
        })
    }

    /// Up to `limit` events of a community's log from `from_position` on, in
    /// order. Rows are decoded as they arrive, while PostgreSQL still sends.
    pub async fn read_log(
        &self,
        community_id: CommunityId,
        from_position: i64,
        limit: i64,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let limit = bounded_limit(limit)?;
        let client = self.inner.pool.get().await?;
        let statement = client
            .prepare_cached(&format!(
                // Positions are gap-free, so the batch is exactly this range.
                // A bounded range keeps the plan an index range scan even
                // before statistics exist; `position >= $2 LIMIT $3` was
                // planned as a bitmap scan and a sort of the whole rest.
                "SELECT {EVENT_COLUMNS} FROM events WHERE community_id = $1 \
                 AND position >= $2 AND position < $2 + $3 ORDER BY position"
            ))
            .await?;
        let params: [&(dyn ToSql + Sync); 3] = [&community_id.as_uuid(), &from_position, &limit];
        let rows = client.query_raw(&statement, params).await?;
        let mut rows = std::pin::pin!(rows);
        let mut events = Vec::with_capacity(limit.min(1_024) as usize);
        while let Some(row) = rows.try_next().await? {
            events.push(recorded_event(&row)?);
        }
        StoreStats::add(&self.inner.stats.log_events_read_total, events.len() as u64);
        Ok(events)
    }

    /// As [`EventStore::read_log`], for readers that follow the log as it
    /// grows (the projections): events this process committed a moment ago
    /// come from memory, the same events every follower reads at once,
    /// decoded once. Where memory does not hold `from_position` (another
    /// process wrote it, or it is older), the log is read. The answer may
    /// stop short of `limit` where memory ends; the rest is read on the
    /// next call. The events are those of the log; only a payload's text
    /// may be in another form (the canonical JSON that was sent), with the
    /// same value: decode it, do not compare its characters.
    pub async fn read_log_followed(
        &self,
        community_id: CommunityId,
        from_position: i64,
        limit: i64,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let limit = bounded_limit(limit)?;
        let held = self.inner.tails.read(
            community_id,
            from_position,
            usize::try_from(limit).unwrap_or(usize::MAX),
        );
        match held {
            Some(events) => {
                StoreStats::add(&self.inner.stats.tail_reads_total, 1);
                Ok(events)
            }
            None => self.read_log(community_id, from_position, limit).await,
        }
    }

    /// Visits, in position order, the events of the community after
    /// `after_position` from this process's memory, when it holds every one
    /// of them up to the highest position known to be committed; `false`,
    /// visiting nothing, when it does not (read the log). Another process's
    /// commits are known as they are announced (a few milliseconds late),
    /// so a caller that must see every event up to the head in one
    /// snapshot reads the log. Not while the listener is down, nor on the
    /// first call for a community (its head is followed from then on).
    /// `visit` runs under the tail's lock, so it must be quick and must not
    /// wait.
    pub fn visit_tail_after(
        &self,
        community_id: CommunityId,
        after_position: i64,
        visit: impl FnMut(&RecordedEvent),
    ) -> bool {
        if !self.is_listening() {
            return false;
        }
        let known_head = {
            let mut heads = lock(&self.inner.heads);
            match heads.get(&community_id) {
                Some(head) => *head.borrow(),
                None => {
                    heads.insert(community_id, watch::channel(0).0);
                    return false;
                }
            }
        };
        let held = self
            .inner
            .tails
            .visit_after(community_id, after_position, known_head, visit);
        if held {
            StoreStats::add(&self.inner.stats.tail_reads_total, 1);
        }
        held
    }

    /// A community's log from `from_position` to `to_position` (both
    /// included), read `batch_size` events at a time.
    pub fn log_batches(
        &self,
        community_id: CommunityId,
        from_position: i64,
        to_position: i64,
        batch_size: i64,
    ) -> LogBatches {
        LogBatches {
            store: self.clone(),
            community_id,
            next: from_position.max(1),
            to_position,
            batch_size,
        }
    }

    /// Up to `limit` events of one stream from `from_version` on, in order.
    pub async fn read_stream(
        &self,
        community_id: CommunityId,
        stream_id: &str,
        from_version: i64,
        limit: i64,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let limit = bounded_limit(limit)?;
        let client = self.inner.pool.get().await?;
        // On a prepared statement each connection keeps, like `read_log`:
        // loading a stream is the commands' most frequent read.
        let statement = client
            .prepare_cached(&format!(
                "SELECT {EVENT_COLUMNS} FROM events WHERE community_id = $1 AND stream_id = $2 \
                 AND stream_version >= $3 AND stream_version < $3 + $4 ORDER BY stream_version"
            ))
            .await?;
        let rows = client
            .query(
                &statement,
                &[&community_id.as_uuid(), &stream_id, &from_version, &limit],
            )
            .await?;
        rows.iter().map(recorded_event).collect()
    }

    /// Every event of one stream from `from_version` on, in order: from
    /// memory when this process keeps the whole stream and can vouch that
    /// no other process wrote its community since (`streams.rs`), else read
    /// from PostgreSQL, and kept when read whole. For loading an aggregate
    /// to decide a command on it: what it answers is at worst an
    /// announcement's delay behind another process's commit, and an append
    /// decided on it is checked against the stream's version all the same.
    pub async fn read_whole_stream(
        &self,
        community_id: CommunityId,
        stream_id: &str,
        from_version: i64,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let kept = &self.inner.kept_streams;
        let listening = self.is_listening();
        if listening {
            if let Some(events) = kept.get(community_id, stream_id, from_version) {
                StoreStats::add(&self.inner.stats.kept_stream_reads_total, 1);
                return Ok(events);
            }
        }
        StoreStats::add(&self.inner.stats.stream_reads_total, 1);
        let fill =
            (listening && from_version <= 1).then(|| kept.begin_fill(community_id, stream_id));
        let mut events = Vec::new();
        let mut next = from_version.max(1);
        loop {
            let batch = self
                .read_stream(community_id, stream_id, next, limits::READ_BATCH_MAX)
                .await?;
            let done = (batch.len() as i64) < limits::READ_BATCH_MAX;
            if let Some(last) = batch.last() {
                next = last.stream_version + 1;
            }
            events.extend(batch);
            if done {
                break;
            }
        }
        if let Some(fill) = fill {
            kept.fill(community_id, stream_id, fill, &events);
        }
        Ok(events)
    }

    /// The first `versions` events of each of several streams, in one
    /// statement: stream by stream (in the order of their ids), each in
    /// version order. A stream with `versions` events may have more; read
    /// on with `read_stream`. At most `READ_BATCH_MAX` events in all.
    ///
    /// Each stream is its own limited subquery, so the plan is one index
    /// range per stream whatever the table's statistics say: written as
    /// one `stream_id = ANY(..)` condition, a plan made on stale
    /// statistics scanned every early event of the community (68 ms a
    /// call at 100,000 events, growing with the log).
    pub async fn read_streams_start(
        &self,
        community_id: CommunityId,
        stream_ids: &[String],
        versions: i64,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let streams = i64::try_from(stream_ids.len()).unwrap_or(i64::MAX);
        bounded_limit(versions)?;
        if streams == 0 {
            return Ok(Vec::new());
        }
        bounded_limit(streams.saturating_mul(versions))?;
        let client = self.inner.pool.get().await?;
        let statement = client
            .prepare_cached(&format!(
                "SELECT e.* FROM (SELECT DISTINCT unnest($2::text[]) AS id) s \
                 CROSS JOIN LATERAL (SELECT {EVENT_COLUMNS} FROM events \
                     WHERE community_id = $1 AND stream_id = s.id AND stream_version <= $3 \
                     ORDER BY stream_version LIMIT $3) e \
                 ORDER BY e.stream_id, e.stream_version"
            ))
            .await?;
        let rows = client
            .query(
                &statement,
                &[&community_id.as_uuid(), &stream_ids, &versions],
            )
            .await?;
        rows.iter().map(recorded_event).collect()
    }

    /// The position of a stream's last event (none for a stream with no
    /// events): what a read of that stream's state must have folded.
    pub async fn stream_last_position(
        &self,
        community_id: CommunityId,
        stream_id: &str,
    ) -> Result<Option<i64>, StoreError> {
        let client = self.inner.pool.get().await?;
        let statement = client
            .prepare_cached(
                "SELECT position FROM events WHERE community_id = $1 AND stream_id = $2 \
                 ORDER BY stream_version DESC LIMIT 1",
            )
            .await?;
        let row = client
            .query_opt(&statement, &[&community_id.as_uuid(), &stream_id])
            .await?;
        Ok(row.map(|row| row.get(0)))
    }

    /// The last position recorded at or before `at` (0 when none was).
    /// `recorded_at` never decreases within a community, so this is a binary
    /// search over positions: one primary-key lookup per halving.
    pub async fn position_at(
        &self,
        community_id: CommunityId,
        at: DateTime<Utc>,
    ) -> Result<i64, StoreError> {
        let head = self.head(community_id).await?;
        let client = self.inner.pool.get().await?;
        let statement = client
            .prepare_cached(
                "SELECT recorded_at FROM events WHERE community_id = $1 AND position = $2",
            )
            .await?;
        // Invariant: position `low` is recorded at or before `at` (0 stands
        // for "before the first event"); every position above `high` is later.
        let (mut low, mut high) = (0_i64, head.position);
        while low < high {
            let middle = low + (high - low + 1) / 2;
            let row = client
                .query_opt(&statement, &[&community_id.as_uuid(), &middle])
                .await?
                .ok_or_else(|| {
                    StoreError::Corrupt(format!(
                        "community {community_id} has no event at {middle}"
                    ))
                })?;
            let recorded_at: DateTime<Utc> = row.get(0);
            if recorded_at <= at {
                low = middle;
            } else {
                high = middle - 1;
            }
        }
        Ok(low)
    }

    /// The first outcome stored for an idempotency key, marked as replayed,
    /// with the fingerprint of the request that made it; `None` when the key
    /// was not used. Lets a caller answer a retry before deciding again
    /// against state the first attempt already changed.
    pub async fn idempotent_outcome(
        &self,
        community_id: CommunityId,
        key: &crate::types::IdempotencyKey,
    ) -> Result<Option<crate::types::KeyedOutcome>, StoreError> {
        let client = self.inner.pool.get().await?;
        let statement = client
            .prepare_cached(
                "SELECT request_hash, outcome FROM idempotency_keys WHERE community_id = $1 \
                 AND idempotency_key = $2",
            )
            .await?;
        let row = client
            .query_opt(&statement, &[&community_id.as_uuid(), &key.as_str()])
            .await?;
        row.map(|row| {
            let hash: Vec<u8> = row.get(0);
            let outcome: tokio_postgres::types::Json<crate::types::AppendOutcome> = row.get(1);
            let request_hash = hash
                .try_into()
                .map_err(|_| StoreError::Corrupt("a request hash is not 32 bytes".into()))?;
            Ok(crate::types::KeyedOutcome {
                request_hash,
                outcome: crate::types::AppendOutcome {
                    replayed: true,
                    ..outcome.0
                },
            })
        })
        .transpose()
    }

    /// The day (days since 1970-01-01) a moment falls on in a time zone's
    /// calendar; PostgreSQL knows the zones.
    ///
    /// Every grant asks, so the answer is kept by zone and minute when the
    /// minute's first and last microseconds fall on the same day: a zone
    /// changes its offset at most once in a minute, so then every moment
    /// of that minute does too.
    pub async fn local_day(&self, time_zone: &str, at_micros: i64) -> Result<i32, StoreError> {
        const MINUTE: i64 = 60_000_000;
        const DAYS_KEPT_MAX: usize = 10_000;
        let minute = at_micros.div_euclid(MINUTE);
        let key = (time_zone.to_string(), minute);
        if let Some(day) = lock(&self.inner.days).get(&key) {
            return Ok(*day);
        }
        let client = self.inner.pool.get().await?;
        let statement = client
            .prepare_cached(
                "SELECT ((to_timestamp($1::bigint / 1000000.0) AT TIME ZONE $2::text)::date \
                         - DATE '1970-01-01')::integer, \
                        ((to_timestamp($3::bigint / 1000000.0) AT TIME ZONE $2::text)::date \
                         - DATE '1970-01-01')::integer, \
                        ((to_timestamp(($3::bigint + 59999999) / 1000000.0) AT TIME ZONE $2::text)::date \
                         - DATE '1970-01-01')::integer",
            )
            .await?;
        let minute_start = minute * MINUTE;
        let row = client
            .query_one(&statement, &[&at_micros, &time_zone, &minute_start])
            .await?;
        let (day, first, last): (i32, i32, i32) = (row.get(0), row.get(1), row.get(2));
        if first == last {
            let mut kept = lock(&self.inner.days);
            if kept.len() >= DAYS_KEPT_MAX {
                kept.clear();
            }
            kept.insert(key, day);
        }
        Ok(day)
    }

    /// Every community, in the order they were created.
    pub async fn communities(&self) -> Result<Vec<CommunityId>, StoreError> {
        Ok(self
            .community_heads()
            .await?
            .into_iter()
            .map(|(community, _)| community)
            .collect())
    }

    /// Every community with the last position of its log (0 before its
    /// first event), in the order they were created: one statement, so a
    /// reader that follows every community asks for the log of only those
    /// that grew past where it stands.
    pub async fn community_heads(&self) -> Result<Vec<(CommunityId, i64)>, StoreError> {
        let client = self.inner.pool.get().await?;
        let statement = client
            .prepare_cached(
                "SELECT c.community_id, coalesce(h.last_position, 0) FROM communities c \
                 LEFT JOIN community_heads h USING (community_id) \
                 ORDER BY c.created_at, c.community_id",
            )
            .await?;
        let rows = client.query(&statement, &[]).await?;
        Ok(rows
            .iter()
            .map(|row| (CommunityId::new(row.get(0)), row.get(1)))
            .collect())
    }

    /// [`EventStore::community_heads`] as of a moment after the log watch
    /// ([`EventStore::watch_log`]) read `seen`: every append announced by
    /// then is in it. Readers that ask together, as every projection does
    /// when the same commit wakes them, share one read: a caller waits for
    /// the read in flight and takes it if it began after `seen`, or makes
    /// the next one.
    pub async fn community_heads_since(&self, seen: u64) -> Result<Heads, StoreError> {
        let mut last = self.inner.heads_read.lock().await;
        if let Some((read_after, heads)) = last.as_ref() {
            if *read_after >= seen {
                return Ok(heads.clone());
            }
        }
        // Counted before the read: whatever was announced by this count was
        // committed before the read began.
        let read_after = *self.inner.log_grew.borrow();
        let heads = Arc::new(self.community_heads().await?);
        StoreStats::add(&self.inner.stats.heads_reads_total, 1);
        *last = Some((read_after, heads.clone()));
        Ok(heads)
    }

    /// Changes whenever any community's log may have grown (commits of this
    /// process and, through NOTIFY, of others).
    pub fn watch_log(&self) -> watch::Receiver<u64> {
        self.inner.log_grew.subscribe()
    }

    /// Changes whenever `topic` is announced, by this process
    /// ([`EventStore::announce_topic`]) or another ([`announce_topic_in`]),
    /// and when the listener reconnects (announcements may have been
    /// missed).
    pub fn topic_watch(&self, topic: &str) -> watch::Receiver<u64> {
        let mut topics = lock(&self.inner.topics);
        match topics.get(topic) {
            Some(sender) => sender.subscribe(),
            None => {
                let (sender, receiver) = watch::channel(0);
                topics.insert(topic.to_string(), sender);
                receiver
            }
        }
    }

    /// Tells this process's watchers of `topic` at once, after a change of
    /// its own committed (other processes hear of it through NOTIFY).
    pub fn announce_topic(&self, topic: &str) {
        self.inner.announce_topic(topic);
    }

    /// True while every commit and announcement of another process reaches
    /// this process's watches (the listener is connected and listening).
    /// While false, what a watch says unchanged may have changed.
    pub fn is_listening(&self) -> bool {
        self.inner.listening.load(Ordering::Acquire)
    }

    /// The highest position known to be committed in a community, changing
    /// as commits are announced.
    pub fn head_watch(&self, community_id: CommunityId) -> watch::Receiver<i64> {
        let mut heads = lock(&self.inner.heads);
        heads
            .entry(community_id)
            .or_insert_with(|| watch::channel(0).0)
            .subscribe()
    }
}

impl Inner {
    /// Tells this process's watchers of `topic` that it changed.
    pub(crate) fn announce_topic(&self, topic: &str) {
        if let Some(sender) = lock(&self.topics).get(topic) {
            sender.send_modify(|count| *count = count.wrapping_add(1));
        }
    }

    /// Tells every process, this one at once and the others through the
    /// notifier, that this process committed `position`.
    pub(crate) fn announce_commit(&self, community_id: CommunityId, position: i64) {
        self.announce_local(community_id, position);
        self.pending_announcements.announce(community_id, position);
    }

    /// Tells this process's subscribers that `position` is committed.
    pub(crate) fn announce_local(&self, community_id: CommunityId, position: i64) {
        self.log_grew
            .send_modify(|count| *count = count.wrapping_add(1));
        let heads = lock(&self.heads);
        if let Some(sender) = heads.get(&community_id) {
            sender.send_if_modified(|head| {
                let newer = position > *head;
                *head = (*head).max(position);
                newer
            });
        }
    }

    /// Wakes every subscriber, e.g. after the listener reconnected and may
    /// have missed notifications.
    pub(crate) fn wake_all(&self) {
        self.kept_streams.doubt_all();
        self.log_grew
            .send_modify(|count| *count = count.wrapping_add(1));
        for sender in lock(&self.heads).values() {
            sender.send_modify(|_| {});
        }
        for sender in lock(&self.topics).values() {
            sender.send_modify(|count| *count = count.wrapping_add(1));
        }
    }
}

/// Announces `topic` to every process's [`EventStore::topic_watch`] when
/// `transaction` commits (NOTIFY is delivered on commit, and not at all on
/// a rollback). The process that commits also calls
/// [`EventStore::announce_topic`]; its own listener hears it later too.
pub async fn announce_topic_in(
    transaction: &tokio_postgres::Transaction<'_>,
    topic: &str,
) -> Result<(), StoreError> {
    let payload = format!("{TOPIC_PREFIX}{topic}");
    transaction
        .execute("SELECT pg_notify($1, $2)", &[&APPENDED_CHANNEL, &payload])
        .await?;
    Ok(())
}

/// How an announcement of a topic starts, telling it from an append's
/// `community:position` on the same channel.
pub(crate) const TOPIC_PREFIX: &str = "topic:";

fn bounded_limit(limit: i64) -> Result<i64, StoreError> {
    if !(1..=limits::READ_BATCH_MAX).contains(&limit) {
        return Err(StoreError::invalid(
            "limit",
            format!("{limit} is outside 1..={}", limits::READ_BATCH_MAX),
        ));
    }
    Ok(limit)
}

pub(crate) fn recorded_event(row: &Row) -> Result<RecordedEvent, StoreError> {
    let payload: JsonbValue<Box<serde_json::value::RawValue>> = row.get(7);
    let metadata: JsonbValue<crate::types::Metadata> = row.get(8);
    Ok(RecordedEvent {
        community_id: CommunityId::new(row.get(0)),
        position: row.get(1),
        stream_id: row.get(2),
        stream_type: row.get(3),
        stream_version: row.get(4),
        event_type: row.get(5),
        event_version: row.get(6),
        payload: payload.0,
        metadata: Arc::new(metadata.0),
        recorded_at: row.get(9),
        previous_hash: to_hash(row.get(10))?,
        hash: to_hash(row.get(11))?,
    })
}

/// A poisoned lock means a thread panicked while holding it; the maps it
/// guards stay consistent (single inserts and removals), so carry on.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A range of a community's log, batch by batch ([`EventStore::log_batches`]).
pub struct LogBatches {
    store: EventStore,
    community_id: CommunityId,
    next: i64,
    to_position: i64,
    batch_size: i64,
}

impl LogBatches {
    /// The next batch, in order; `None` past the range or the log's end.
    pub async fn next(&mut self) -> Result<Option<Vec<RecordedEvent>>, StoreError> {
        if self.next > self.to_position {
            return Ok(None);
        }
        let limit = self.batch_size.min(self.to_position - self.next + 1);
        let batch = self
            .store
            .read_log(self.community_id, self.next, limit)
            .await?;
        let Some(last) = batch.last() else {
            return Ok(None);
        };
        self.next = last.position + 1;
        Ok(Some(batch))
    }
}
