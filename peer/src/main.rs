//! `peer-bench`: the event store on the cqrs-es command path against
//! cqrs-es's own PostgreSQL store (postgres-es), on the same PostgreSQL,
//! the same workload, run alternately in one process.
//!
//! The workload: a wallet aggregate receiving ten grants, each grant one
//! `CqrsFramework::execute` (load the aggregate, handle, persist), by 1, 8
//! and 64 writers at once, each writer with wallets of its own. After each
//! run every wallet's stream is checked to hold exactly its ten events in
//! order, and on the store the community's hash chain is verified.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context};
use clap::Parser;
use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, DomainEvent, EventStore as _};
use serde::{Deserialize, Serialize};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use store::baseline;
use store::{CommunityId, EventStore, StoreConfig, StreamId};
use tokio_postgres::config::Host;

#[derive(Parser, Debug)]
#[command(
    name = "peer-bench",
    about = "The event store against postgres-es, side by side"
)]
struct Args {
    /// Print one JSON object instead of a table.
    #[arg(long)]
    json: bool,
    /// The writer counts to measure, each against both stores.
    #[arg(long, value_delimiter = ',', default_value = "1,8,64")]
    writers: Vec<usize>,
    /// Wallets per run (shared out among the writers); each gets ten grants.
    #[arg(long, default_value_t = 400)]
    wallets: usize,
    /// Runs per store and writer count, alternating which goes first.
    #[arg(long, default_value_t = 2)]
    rounds: usize,
    /// Connections each store's pool may open.
    #[arg(long, default_value_t = 16)]
    pool: usize,
    /// Batches the store's writer keeps in flight (`StoreConfig::pipeline_depth`).
    #[arg(long, default_value_t = 1)]
    pipeline_depth: usize,
    /// PostgreSQL to measure on; without one, a private server in the data
    /// directory, as the server itself does.
    #[arg(long, env = "DATABASE_URL")]
    database_url: Option<String>,
    #[arg(long, env = "CIVIC_LEDGER_DATA_DIR", default_value = "data")]
    data_dir: PathBuf,
}

const GRANTS_PER_WALLET: usize = 10;

/// The workload's aggregate: a wallet's balance, moved by grants.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Wallet {
    balance: i64,
    grants: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
enum WalletEvent {
    Granted { amount: i64 },
}

impl DomainEvent for WalletEvent {
    fn event_type(&self) -> String {
        "Granted".to_string()
    }
    fn event_version(&self) -> String {
        "1".to_string()
    }
}

#[derive(Debug)]
struct Refused(String);

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Refused {}

impl Aggregate for Wallet {
    const TYPE: &'static str = "Wallet";
    type Command = i64;
    type Event = WalletEvent;
    type Error = Refused;
    type Services = ();

    async fn handle(&mut self, amount: i64, _: &(), sink: &EventSink<Self>) -> Result<(), Refused> {
        if amount <= 0 {
            return Err(Refused(format!("a grant of {amount} is not positive")));
        }
        sink.write(WalletEvent::Granted { amount }, self).await;
        Ok(())
    }

    fn apply(&mut self, event: WalletEvent) {
        let WalletEvent::Granted { amount } = event;
        self.balance += amount;
        self.grants += 1;
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
enum Subject {
    Store,
    PostgresEs,
}

/// A framework for either store, behind one call.
#[derive(Clone)]
enum Framework {
    Store(Arc<store::cqrs::StoreCqrs<Wallet>>),
    PostgresEs(Arc<postgres_es::PostgresCqrs<Wallet>>),
}

impl Framework {
    async fn execute(&self, id: &str, amount: i64) -> anyhow::Result<()> {
        match self {
            Framework::Store(cqrs) => cqrs.execute(id, amount).await,
            Framework::PostgresEs(cqrs) => cqrs.execute(id, amount).await,
        }
        .map_err(|error| anyhow::anyhow!("{error}"))
    }
}

#[derive(Serialize)]
struct Run {
    subject: Subject,
    writers: usize,
    round: usize,
    commands: usize,
    commands_per_s: f64,
    p50_ms: f64,
    p99_ms: f64,
    checked: bool,
}

#[derive(Serialize)]
struct Summary {
    writers: usize,
    store_commands_per_s: f64,
    postgres_es_commands_per_s: f64,
    /// The store's best run over the peer's best run.
    ratio: f64,
}

#[derive(Serialize)]
struct Report {
    summary: Vec<Summary>,
    runs: Vec<Run>,
    wallets: usize,
    grants_per_wallet: usize,
    pool: usize,
    postgres_version: String,
}

/// Both stores, each in a scratch database of its own on the same server.
struct Subjects {
    store: EventStore,
    community: CommunityId,
    store_framework: Framework,
    peer_pool: sqlx::PgPool,
    peer_framework: Framework,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let database = app::database::Database::open(args.database_url.as_deref(), &args.data_dir)
        .await
        .context("could not reach PostgreSQL")?;
    let admin = database.pg_config.clone();
    let (store_db, store_config) = baseline::create_scratch_database(&admin).await?;
    let (peer_db, peer_config) = baseline::create_scratch_database(&admin).await?;
    let result = measure(&args, &store_config, &peer_config).await;
    for name in [&store_db, &peer_db] {
        baseline::drop_database(&admin, name)
            .await
            .context("could not drop a scratch database")?;
    }
    database.close().await?;
    let report = result?;
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        print_table(&report);
    }
    Ok(())
}

async fn measure(
    args: &Args,
    store_config: &tokio_postgres::Config,
    peer_config: &tokio_postgres::Config,
) -> anyhow::Result<Report> {
    ensure!(
        args.wallets > 0 && args.rounds > 0,
        "wallets and rounds are at least 1"
    );
    store::migrate::run_migrations(store_config).await?;
    let postgres_version = baseline::create_raw_table(store_config).await?;
    let store = EventStore::connect(
        store_config.clone(),
        StoreConfig {
            pool_size_max: args.pool,
            pipeline_depth: args.pipeline_depth,
            ..StoreConfig::default()
        },
    )
    .await?;
    let community = CommunityId::random();
    store.create_community(community, "钱塘江 wallets").await?;
    let peer_pool = PgPoolOptions::new()
        .max_connections(args.pool as u32)
        .connect_with(sqlx_options(peer_config)?)
        .await
        .context("could not connect postgres-es")?;
    sqlx::raw_sql(PEER_TABLES).execute(&peer_pool).await?;
    let subjects = Subjects {
        store_framework: Framework::Store(Arc::new(store::cqrs::cqrs_framework(
            store.clone(),
            vec![],
            (),
            None,
        ))),
        peer_framework: Framework::PostgresEs(Arc::new(postgres_es::postgres_cqrs(
            peer_pool.clone(),
            vec![],
            (),
        ))),
        store,
        community,
        peer_pool,
    };
    let mut runs = Vec::new();
    for &writers in &args.writers {
        ensure!(writers > 0, "a run has at least one writer");
        for round in 0..args.rounds {
            let order = if round % 2 == 0 {
                [Subject::PostgresEs, Subject::Store]
            } else {
                [Subject::Store, Subject::PostgresEs]
            };
            for subject in order {
                eprintln!("peer-bench: {subject:?}, {writers} writers, round {round}");
                runs.push(run(&subjects, subject, writers, round, args.wallets).await?);
            }
        }
    }
    let best = |subject: Subject, writers: usize| {
        runs.iter()
            .filter(|r| r.subject == subject && r.writers == writers)
            .map(|r| r.commands_per_s)
            .fold(0.0, f64::max)
    };
    let summary = args
        .writers
        .iter()
        .map(|&writers| {
            let store = best(Subject::Store, writers);
            let peer = best(Subject::PostgresEs, writers);
            Summary {
                writers,
                store_commands_per_s: store,
                postgres_es_commands_per_s: peer,
                ratio: store / peer,
            }
        })
        .collect();
    Ok(Report {
        summary,
        runs,
        wallets: args.wallets,
        grants_per_wallet: GRANTS_PER_WALLET,
        pool: args.pool,
        postgres_version,
    })
}

/// postgres-es's tables, as its crate documents them.
const PEER_TABLES: &str = "
CREATE TABLE events (
    aggregate_type text NOT NULL,
    aggregate_id text NOT NULL,
    sequence bigint CHECK (sequence >= 0) NOT NULL,
    event_type text NOT NULL,
    event_version text NOT NULL,
    payload json NOT NULL,
    metadata json NOT NULL,
    PRIMARY KEY (aggregate_type, aggregate_id, sequence)
);
CREATE TABLE snapshots (
    aggregate_type text NOT NULL,
    aggregate_id text NOT NULL,
    last_sequence bigint CHECK (last_sequence >= 0) NOT NULL,
    current_snapshot bigint CHECK (current_snapshot >= 0) NOT NULL,
    payload json NOT NULL,
    PRIMARY KEY (aggregate_type, aggregate_id, last_sequence)
);";

fn sqlx_options(config: &tokio_postgres::Config) -> anyhow::Result<PgConnectOptions> {
    let mut options = PgConnectOptions::new();
    match config.get_hosts().first() {
        Some(Host::Tcp(host)) => options = options.host(host),
        Some(Host::Unix(path)) => options = options.socket(path),
        None => bail!("the database settings name no host"),
    }
    if let Some(port) = config.get_ports().first() {
        options = options.port(*port);
    }
    if let Some(user) = config.get_user() {
        options = options.username(user);
    }
    if let Some(password) = config.get_password() {
        options = options.password(&String::from_utf8_lossy(password));
    }
    if let Some(name) = config.get_dbname() {
        options = options.database(name);
    }
    Ok(options)
}

/// One run: `writers` tasks, each granting ten times to each of its wallets
/// in turn; then the check that every wallet holds exactly its events.
async fn run(
    subjects: &Subjects,
    subject: Subject,
    writers: usize,
    round: usize,
    wallets: usize,
) -> anyhow::Result<Run> {
    let framework = match subject {
        Subject::Store => subjects.store_framework.clone(),
        Subject::PostgresEs => subjects.peer_framework.clone(),
    };
    let ids: Vec<String> = (0..wallets)
        .map(|_| {
            let stream = format!("wallet-{}", uuid::Uuid::new_v4().simple());
            match subject {
                Subject::Store => {
                    let stream = StreamId::parse(&stream).expect("a valid stream id");
                    store::aggregate_id(subjects.community, &stream)
                }
                Subject::PostgresEs => stream,
            }
        })
        .collect();
    let ids = Arc::new(ids);
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(writers);
    for writer in 0..writers {
        let (framework, ids) = (framework.clone(), ids.clone());
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            for id in ids.iter().skip(writer).step_by(writers) {
                for grant in 1..=GRANTS_PER_WALLET as i64 {
                    let at = Instant::now();
                    framework.execute(id, grant).await?;
                    latencies.push(at.elapsed());
                }
            }
            Ok::<_, anyhow::Error>(latencies)
        }));
    }
    let mut latencies: Vec<Duration> = Vec::new();
    for task in tasks {
        latencies.extend(task.await??);
    }
    let elapsed = started.elapsed();
    latencies.sort_unstable();
    let percentile = |p: f64| {
        latencies
            .get(((latencies.len() as f64 - 1.0) * p).round() as usize)
            .map_or(0.0, |d| d.as_secs_f64() * 1_000.0)
    };
    check(subjects, subject, &ids).await?;
    Ok(Run {
        subject,
        writers,
        round,
        commands: latencies.len(),
        commands_per_s: latencies.len() as f64 / elapsed.as_secs_f64(),
        p50_ms: percentile(0.5),
        p99_ms: percentile(0.99),
        checked: true,
    })
}

/// Every wallet holds exactly its ten grants, in order, summing to what was
/// granted; on the store, the community's chain verifies as well.
async fn check(subjects: &Subjects, subject: Subject, ids: &[String]) -> anyhow::Result<()> {
    match subject {
        Subject::Store => {
            let repository = store::CqrsRepository::new(subjects.store.clone());
            each_wallet_holds_its_grants(repository, ids).await?;
            let head = subjects.store.head(subjects.community).await?.position;
            let verification = subjects
                .store
                .verify_chain(subjects.community, 1, head)
                .await?;
            ensure!(
                verification.is_intact() && verification.events_checked == head,
                "the chain does not verify: {:?}",
                verification.first_mismatch
            );
        }
        Subject::PostgresEs => {
            let rows: Vec<(String, i64, i64, i64)> = sqlx::query_as(
                "SELECT aggregate_id, count(*), min(sequence), max(sequence) FROM events \
                 WHERE aggregate_type = 'Wallet' AND aggregate_id = ANY($1) GROUP BY aggregate_id",
            )
            .bind(ids)
            .fetch_all(&subjects.peer_pool)
            .await?;
            ensure!(
                rows.len() == ids.len(),
                "{} of {} wallets stored",
                rows.len(),
                ids.len()
            );
            for (id, count, first, last) in rows {
                ensure!(
                    (count, first, last) == (GRANTS_PER_WALLET as i64, 1, GRANTS_PER_WALLET as i64),
                    "{id}: {count} events, sequences {first}..{last}"
                );
            }
            let repository = postgres_es::PostgresEventRepository::new(subjects.peer_pool.clone());
            each_wallet_holds_its_grants(repository, ids).await?;
        }
    }
    Ok(())
}

/// Each wallet, loaded as cqrs-es loads it, holds exactly its grants of
/// 1 to 10 in versions 1 to 10.
async fn each_wallet_holds_its_grants<R>(repository: R, ids: &[String]) -> anyhow::Result<()>
where
    R: cqrs_es::persist::PersistedEventRepository,
{
    let expected: Vec<(usize, i64)> = (1..=GRANTS_PER_WALLET).map(|n| (n, n as i64)).collect();
    let events = cqrs_es::persist::PersistedEventStore::<_, Wallet>::new_event_store(repository);
    for id in ids {
        let loaded: Vec<(usize, i64)> = events
            .load_events(id)
            .await?
            .iter()
            .map(|e| match e.payload {
                WalletEvent::Granted { amount } => (e.sequence, amount),
            })
            .collect();
        ensure!(
            loaded == expected,
            "{id} holds (version, amount) {loaded:?}"
        );
    }
    Ok(())
}

fn print_table(report: &Report) {
    println!(
        "cqrs-es command path: {} wallets x {} grants, pools of {}, {}",
        report.wallets, report.grants_per_wallet, report.pool, report.postgres_version
    );
    println!("writers  store cmd/s  postgres-es cmd/s  ratio");
    for s in &report.summary {
        println!(
            "{:>7}  {:>11.0}  {:>17.0}  {:>5.2}",
            s.writers, s.store_commands_per_s, s.postgres_es_commands_per_s, s.ratio
        );
    }
}
