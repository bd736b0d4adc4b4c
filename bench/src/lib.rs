//! Benchmarks, each next to raw PostgreSQL on the same server in the same
//! run, in a scratch database dropped afterwards. `civic-ledger bench store`:
//! the event store.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use serde::Serialize;
use serde_json::json;
use store::baseline;
use store::migrate::run_migrations;
use store::{
    AppendRequest, CommunityId, EventStore, EventType, ExpectedVersion, NewEvent, StoreConfig,
    StreamId, StreamType,
};

use app::database::Database;

pub mod audit;
pub mod browser;
pub mod demo;
pub mod http;
pub mod pages;
pub mod points;

#[derive(clap::Args, Debug)]
pub struct StoreBenchArgs {
    /// Print one JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
    #[arg(long, default_value_t = 64)]
    pub single_writers: usize,
    #[arg(long, default_value_t = 150)]
    pub single_appends_per_writer: usize,
    #[arg(long, default_value_t = 4)]
    pub batch_writers: usize,
    #[arg(long, default_value_t = 200)]
    pub batch_appends_per_writer: usize,
    #[arg(long, default_value_t = 100)]
    pub batch_events_per_append: usize,
    #[arg(long, default_value_t = 1_000_000)]
    pub read_events: i64,
    /// Batches of one community the store keeps in flight.
    #[arg(long, default_value_t = StoreConfig::default().pipeline_depth)]
    pub pipeline_depth: usize,
}

#[derive(Serialize)]
struct StoreBenchReport {
    single_append_eps: f64,
    raw_single_insert_eps: f64,
    single_ratio: f64,
    append_p99_ms: f64,
    raw_insert_p99_ms: f64,
    batch_append_eps: f64,
    raw_batch_insert_eps: f64,
    batch_ratio: f64,
    read_eps: f64,
    raw_read_eps: f64,
    read_ratio: f64,
    read_events: i64,
    single_events: usize,
    batch_events: usize,
    pipeline_depth: usize,
    postgres_version: String,
}

pub async fn store(database: &Database, args: StoreBenchArgs) -> anyhow::Result<()> {
    let json = args.json;
    in_scratch_database(
        database,
        json,
        |pg_config| async move { run_store_bench(&pg_config, &args).await },
        print_table,
    )
    .await
}

/// Runs `measure` in a scratch database beside the configured one, drops it
/// whatever happened, then prints the report: one JSON object, or a table.
pub(crate) async fn in_scratch_database<R, F, Fut>(
    database: &Database,
    json: bool,
    measure: F,
    print_table: fn(&R),
) -> anyhow::Result<()>
where
    R: Serialize,
    F: FnOnce(tokio_postgres::Config) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<R>>,
{
    let admin = &database.pg_config;
    let (scratch_name, pg_config) = baseline::create_scratch_database(admin).await?;
    let result = measure(pg_config).await;
    baseline::drop_database(admin, &scratch_name)
        .await
        .context("could not drop the scratch database")?;
    let report = result?;
    if json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        print_table(&report);
    }
    Ok(())
}

async fn run_store_bench(
    pg_config: &tokio_postgres::Config,
    args: &StoreBenchArgs,
) -> anyhow::Result<StoreBenchReport> {
    run_migrations(pg_config).await?;
    let config = StoreConfig {
        pool_size_max: 8,
        pipeline_depth: args.pipeline_depth,
        ..StoreConfig::default()
    };
    let store = EventStore::connect(pg_config.clone(), config).await?;
    let postgres_version = baseline::create_raw_table(pg_config).await?;

    eprintln!("bench: single appends ({} writers)", args.single_writers);
    let single = single_appends(&store, args).await?;
    let raw_single = raw_single_inserts(pg_config, args).await?;
    eprintln!("bench: batch appends ({} writers)", args.batch_writers);
    let batch = batch_appends(&store, args).await?;
    let raw_batch = raw_batch_inserts(pg_config, args).await?;
    eprintln!("bench: filling {} events to read", args.read_events);
    let read_community = fill(&store, args.read_events).await?;
    let raw_read = raw_read(pg_config, read_community).await?;
    let read = store_read(&store, read_community).await?;
    anyhow::ensure!(
        read.events == args.read_events && raw_read.events == args.read_events,
        "read {} and {} events, expected {}",
        read.events,
        raw_read.events,
        args.read_events
    );
    store.shutdown().await;

    Ok(StoreBenchReport {
        single_append_eps: single.eps(),
        raw_single_insert_eps: raw_single.eps(),
        single_ratio: single.eps() / raw_single.eps(),
        append_p99_ms: single.p99_ms(),
        raw_insert_p99_ms: raw_single.p99_ms(),
        batch_append_eps: batch.eps(),
        raw_batch_insert_eps: raw_batch.eps(),
        batch_ratio: batch.eps() / raw_batch.eps(),
        read_eps: read.eps(),
        raw_read_eps: raw_read.eps(),
        read_ratio: read.eps() / raw_read.eps(),
        read_events: args.read_events,
        single_events: single.events as usize,
        batch_events: batch.events as usize,
        pipeline_depth: args.pipeline_depth,
        postgres_version,
    })
}

/// The middle value (the upper of the two middle ones for an even count);
/// NaN for none.
pub(crate) fn median(values: &[f64]) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted[sorted.len() / 2]
}

pub(crate) struct Run {
    events: i64,
    elapsed: Duration,
    latencies: Vec<Duration>,
}

impl Run {
    /// One event per latency.
    pub(crate) fn of(latencies: Vec<Duration>, elapsed: Duration) -> Run {
        Run {
            events: latencies.len() as i64,
            elapsed,
            latencies,
        }
    }

    pub(crate) fn latencies_len(&self) -> usize {
        self.latencies.len()
    }

    pub(crate) fn eps(&self) -> f64 {
        self.events as f64 / self.elapsed.as_secs_f64()
    }

    pub(crate) fn p99_ms(&self) -> f64 {
        let mut sorted = self.latencies.clone();
        sorted.sort_unstable();
        let index = (sorted.len() * 99).div_ceil(100).saturating_sub(1);
        sorted.get(index).map_or(0.0, |d| d.as_secs_f64() * 1e3)
    }
}

fn payload(n: i64) -> serde_json::Value {
    json!({
        "report_id": uuid::Uuid::new_v4(),
        "category": "floating_garbage",
        "site_code": format!("RB-{:04}", n % 10_000),
        "points": "5.00",
        "sequence": n,
    })
}

fn event(n: i64) -> NewEvent {
    let mut event = NewEvent::new(
        EventType::parse("BenchEventRecorded").expect("valid"),
        payload(n),
    );
    event.metadata.insert("actor_role".into(), "bench".into());
    event
}

async fn new_community(store: &EventStore, name: &str) -> anyhow::Result<CommunityId> {
    let id = CommunityId::random();
    store.create_community(id, name).await?;
    Ok(id)
}

/// One event per append, each writer on its own stream, all in one community.
pub(crate) async fn single_appends(
    store: &EventStore,
    args: &StoreBenchArgs,
) -> anyhow::Result<Run> {
    let community = new_community(store, "bench single").await?;
    let started = Instant::now();
    let tasks: Vec<_> = (0..args.single_writers)
        .map(|writer| {
            let store = store.clone();
            let appends = args.single_appends_per_writer as i64;
            tokio::spawn(async move {
                let stream = StreamId::parse(format!("bench-single-{writer}"))?;
                let stream_type = StreamType::parse("Bench")?;
                let mut latencies = Vec::with_capacity(appends as usize);
                for version in 0..appends {
                    let at = Instant::now();
                    let request = AppendRequest::new(community).stream(
                        stream.clone(),
                        stream_type.clone(),
                        ExpectedVersion::Exact(version),
                        vec![event(version)],
                    );
                    store.append(request).await?;
                    latencies.push(at.elapsed());
                }
                anyhow::Ok(latencies)
            })
        })
        .collect();
    collect(tasks, started, 1).await
}

pub(crate) async fn collect(
    tasks: Vec<tokio::task::JoinHandle<anyhow::Result<Vec<Duration>>>>,
    started: Instant,
    events_per_operation: i64,
) -> anyhow::Result<Run> {
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await??);
    }
    Ok(Run {
        events: latencies.len() as i64 * events_per_operation,
        elapsed: started.elapsed(),
        latencies,
    })
}

/// One row per transaction from as many connections as the store had writers.
async fn raw_single_inserts(
    pg_config: &tokio_postgres::Config,
    args: &StoreBenchArgs,
) -> anyhow::Result<Run> {
    raw_inserts(
        pg_config,
        args.single_writers,
        args.single_appends_per_writer,
        1,
    )
    .await
}

async fn raw_batch_inserts(
    pg_config: &tokio_postgres::Config,
    args: &StoreBenchArgs,
) -> anyhow::Result<Run> {
    raw_inserts(
        pg_config,
        args.batch_writers,
        args.batch_appends_per_writer,
        args.batch_events_per_append as i64,
    )
    .await
}

pub(crate) async fn raw_inserts(
    pg_config: &tokio_postgres::Config,
    connections: usize,
    statements_per_connection: usize,
    rows_per_statement: i64,
) -> anyhow::Result<Run> {
    let community = uuid::Uuid::new_v4();
    let positions = Arc::new(AtomicI64::new(0));
    let mut clients = Vec::with_capacity(connections);
    for _ in 0..connections {
        clients.push(baseline::RawWriter::connect(pg_config).await?);
    }
    let started = Instant::now();
    let tasks: Vec<_> = clients
        .into_iter()
        .enumerate()
        .map(|(writer, client)| {
            let positions = positions.clone();
            tokio::spawn(async move {
                let stream = format!("raw-{rows_per_statement}-{writer}");
                let mut latencies = Vec::with_capacity(statements_per_connection);
                for i in 0..statements_per_connection as i64 {
                    let first_version = i * rows_per_statement + 1;
                    let payloads = (first_version..first_version + rows_per_statement)
                        .map(payload)
                        .collect();
                    let first_position =
                        positions.fetch_add(rows_per_statement, Ordering::Relaxed) + 1;
                    let at = Instant::now();
                    client
                        .insert(community, &stream, first_position, first_version, payloads)
                        .await?;
                    latencies.push(at.elapsed());
                }
                anyhow::Ok(latencies)
            })
        })
        .collect();
    collect(tasks, started, rows_per_statement).await
}

/// Appends of many events each, every writer on its own stream.
async fn batch_appends(store: &EventStore, args: &StoreBenchArgs) -> anyhow::Result<Run> {
    let community = new_community(store, "bench batch").await?;
    let per_append = args.batch_events_per_append as i64;
    let started = Instant::now();
    let tasks: Vec<_> = (0..args.batch_writers)
        .map(|writer| {
            let store = store.clone();
            let appends = args.batch_appends_per_writer as i64;
            tokio::spawn(async move {
                let stream = StreamId::parse(format!("bench-batch-{writer}"))?;
                let stream_type = StreamType::parse("Bench")?;
                let mut latencies = Vec::with_capacity(appends as usize);
                for i in 0..appends {
                    let at = Instant::now();
                    let events = (0..per_append).map(|k| event(i * per_append + k)).collect();
                    let request = AppendRequest::new(community).stream(
                        stream.clone(),
                        stream_type.clone(),
                        ExpectedVersion::Exact(i * per_append),
                        events,
                    );
                    store.append(request).await?;
                    latencies.push(at.elapsed());
                }
                anyhow::Ok(latencies)
            })
        })
        .collect();
    collect(tasks, started, per_append).await
}

/// Writes `total` events into a new community through the store.
async fn fill(store: &EventStore, total: i64) -> anyhow::Result<CommunityId> {
    const PER_APPEND: i64 = store::limits::EVENTS_PER_APPEND_MAX as i64;
    let community = new_community(store, "bench read").await?;
    let appends = (total + PER_APPEND - 1) / PER_APPEND;
    append_chunks(store, appends, move |i| {
        let count = PER_APPEND.min(total - i * PER_APPEND);
        let events = (0..count).map(|k| event(i * PER_APPEND + k)).collect();
        Ok(AppendRequest::new(community).stream(
            StreamId::parse(format!("bench-read-{i}"))?,
            StreamType::parse("Bench")?,
            ExpectedVersion::NoStream,
            events,
        ))
    })
    .await?;
    Ok(community)
}

/// Appends `chunks` requests, the `i`-th built by `request(i)`, from four
/// concurrent writers.
pub(crate) async fn append_chunks<F>(
    store: &EventStore,
    chunks: i64,
    request: F,
) -> anyhow::Result<()>
where
    F: Fn(i64) -> anyhow::Result<AppendRequest> + Send + Sync + 'static,
{
    // Queued in chunk order, which is the order they are written in (a
    // chunk may carry figures that follow the chunk before, as the
    // budget's balance does), with a few waiting to commit at once.
    const IN_FLIGHT_MAX: usize = 8;
    let mut in_flight = std::collections::VecDeque::new();
    for chunk in 0..chunks {
        if in_flight.len() >= IN_FLIGHT_MAX {
            let submitted: store::Submitted = in_flight.pop_front().expect("one in flight");
            submitted.outcome().await?;
        }
        in_flight.push_back(store.submit(request(chunk)?).await?);
    }
    for submitted in in_flight {
        submitted.outcome().await?;
    }
    Ok(())
}

/// Every event of the community through the store's batch reader.
async fn store_read(store: &EventStore, community: CommunityId) -> anyhow::Result<Run> {
    let started = Instant::now();
    let mut batches = store.log_batches(community, 1, i64::MAX, store::limits::READ_BATCH_MAX);
    let mut events = 0;
    while let Some(batch) = batches.next().await? {
        events += batch.len() as i64;
    }
    Ok(Run {
        events,
        elapsed: started.elapsed(),
        latencies: Vec::new(),
    })
}

/// The same rows by one plain `SELECT … ORDER BY position`, streamed.
async fn raw_read(
    pg_config: &tokio_postgres::Config,
    community: CommunityId,
) -> anyhow::Result<Run> {
    let started = Instant::now();
    let events = baseline::read_all(pg_config, community).await?;
    Ok(Run {
        events,
        elapsed: started.elapsed(),
        latencies: Vec::new(),
    })
}

fn print_table(report: &StoreBenchReport) {
    println!("event store vs raw PostgreSQL {}", report.postgres_version);
    println!(
        "  single append  {:>10.0} ev/s   raw {:>10.0}   ratio {:.2}   p99 {:.1} ms",
        report.single_append_eps,
        report.raw_single_insert_eps,
        report.single_ratio,
        report.append_p99_ms
    );
    println!(
        "  batch append   {:>10.0} ev/s   raw {:>10.0}   ratio {:.2}",
        report.batch_append_eps, report.raw_batch_insert_eps, report.batch_ratio
    );
    println!(
        "  read           {:>10.0} ev/s   raw {:>10.0}   ratio {:.2}",
        report.read_eps, report.raw_read_eps, report.read_ratio
    );
}
