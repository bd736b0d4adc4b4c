//! Test fixtures: a fresh database per test, on `DATABASE_URL` when set, or
//! else on a private PostgreSQL shared by test runs (started once, kept).

use std::fs::File;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::OnceLock;

use serde_json::json;
use store::migrate::run_migrations;
use store::{
    AppendOutcome, AppendRequest, CommunityId, EventStore, EventType, ExpectedVersion, NewEvent,
    PrivatePostgres, RecordedEvent, StoreConfig, StreamId, StreamType,
};
use tokio_postgres::NoTls;

/// The server every test database is created on.
fn admin_config() -> &'static tokio_postgres::Config {
    static ADMIN: OnceLock<tokio_postgres::Config> = OnceLock::new();
    ADMIN.get_or_init(|| match std::env::var("DATABASE_URL") {
        Ok(url) => tokio_postgres::Config::from_str(&url).expect("DATABASE_URL parses"),
        Err(_) => shared_private_server(),
    })
}

/// One private server for all test runs of this user, started on first use
/// and left running so the next run starts at once.
fn shared_private_server() -> tokio_postgres::Config {
    let uid = nix::unistd::geteuid();
    let dir = std::env::temp_dir().join(format!("civic-ledger-test-postgres-{uid}"));
    std::fs::create_dir_all(&dir).expect("create the test server directory");
    let lock_file = File::create(dir.with_extension("lock")).expect("create the lock file");
    let _lock = nix::fcntl::Flock::lock(lock_file, nix::fcntl::FlockArg::LockExclusive)
        .expect("lock the test server directory");
    let server = PrivatePostgres::start(&dir).expect("start the private test PostgreSQL");
    let config = server.pg_config("postgres");
    server.detach();
    config
}

pub struct TestDb {
    pub name: String,
    pub config: tokio_postgres::Config,
}

impl TestDb {
    /// A new, migrated database with a unique name.
    pub async fn new() -> TestDb {
        let admin = admin_config().clone();
        let name = format!("civic_ledger_test_{}", uuid::Uuid::new_v4().simple());
        let (client, connection) = admin.connect(NoTls).await.expect("connect as admin");
        tokio::spawn(connection);
        client
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .expect("create the test database");
        let config = admin.clone().dbname(&name).to_owned();
        run_migrations(&config).await.expect("migrations apply");
        TestDb { name, config }
    }

    /// The database as a `DATABASE_URL`, for running the binary on it.
    pub fn url(&self) -> String {
        let host = match &self.config.get_hosts()[0] {
            tokio_postgres::config::Host::Tcp(host) => host.clone(),
            tokio_postgres::config::Host::Unix(path) => path.to_str().unwrap().replace('/', "%2F"),
        };
        let port = self.config.get_ports().first().copied().unwrap_or(5432);
        let user = self.config.get_user().unwrap_or("postgres");
        format!("postgresql://{user}@{host}:{port}/{}", self.name)
    }

    pub async fn store(&self) -> EventStore {
        EventStore::connect(self.config.clone(), StoreConfig::default())
            .await
            .expect("connect the store")
    }

    /// A store that keeps several batches of a community in flight.
    pub async fn pipelined_store(&self) -> EventStore {
        let config = StoreConfig {
            pipeline_depth: 4,
            ..StoreConfig::default()
        };
        EventStore::connect(self.config.clone(), config)
            .await
            .expect("connect the store")
    }

    pub async fn client(&self) -> tokio_postgres::Client {
        let (client, connection) = self.config.connect(NoTls).await.expect("connect");
        tokio::spawn(connection);
        client
    }

    pub async fn event_count(&self) -> i64 {
        self.client()
            .await
            .query_one("SELECT count(*) FROM events", &[])
            .await
            .expect("count events")
            .get(0)
    }
}

impl Drop for TestDb {
    /// Drops the database on a thread of its own: Drop cannot await, and the
    /// test's runtime may be shutting down.
    fn drop(&mut self) {
        let name = self.name.clone();
        let admin = admin_config().clone();
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime to drop the test database");
            runtime.block_on(async move {
                let (client, connection) = admin.connect(NoTls).await?;
                tokio::spawn(connection);
                client
                    .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .await
            })
        })
        .join();
        if let Ok(Err(error)) = dropped {
            eprintln!("could not drop test database {}: {error}", self.name);
        }
    }
}

pub async fn community(store: &EventStore) -> CommunityId {
    let id = CommunityId::random();
    store
        .create_community(id, "Riverside test community")
        .await
        .expect("create community");
    id
}

pub fn stream(name: &str) -> StreamId {
    StreamId::parse(name).expect("valid stream id")
}

pub fn stream_type() -> StreamType {
    StreamType::parse("Report").expect("valid stream type")
}

pub fn event(n: i64) -> NewEvent {
    NewEvent::new(
        EventType::parse("ReportSubmitted").expect("valid event type"),
        json!({"n": n, "text_hash": format!("{n:064x}"), "category": "floating_garbage"}),
    )
}

pub fn append_one(
    community: CommunityId,
    stream_id: &str,
    expected: ExpectedVersion,
    n: i64,
) -> AppendRequest {
    AppendRequest::new(community).stream(stream(stream_id), stream_type(), expected, vec![event(n)])
}

/// Waits (ten seconds at most) until the store's listener has connected:
/// from then on it hears every other process's commits.
pub async fn listening(store: &EventStore) {
    tokio::time::timeout(std::time::Duration::from_secs(10), async {
        while !store.is_listening() {
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("the store's listener connects");
}

/// Waits (ten seconds at most) until `head`, a watch of a community's head
/// made before the commit, hears of `position`; what it heard.
pub async fn announced(head: &mut tokio::sync::watch::Receiver<i64>, position: i64) -> i64 {
    let seen = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        head.wait_for(|head| *head >= position),
    )
    .await
    .expect("the commit is announced")
    .expect("the store is open");
    *seen
}

pub async fn append(store: &EventStore, request: AppendRequest) -> AppendOutcome {
    store.append(request).await.expect("append succeeds")
}

pub async fn read_all(store: &EventStore, community: CommunityId) -> Vec<RecordedEvent> {
    let mut all = Vec::new();
    loop {
        let next = all.last().map_or(1, |e: &RecordedEvent| e.position + 1);
        let batch = store
            .read_log(community, next, store::limits::READ_BATCH_MAX)
            .await
            .expect("read the log");
        if batch.is_empty() {
            return all;
        }
        all.extend(batch);
    }
}

/// Positions must be exactly 1..=n, in order.
pub fn assert_gap_free(events: &[RecordedEvent]) {
    let positions: Vec<i64> = events.iter().map(|e| e.position).collect();
    let expected: Vec<i64> = (1..=events.len() as i64).collect();
    assert_eq!(positions, expected, "positions are exactly 1..=n");
}

pub async fn assert_chain_intact(store: &EventStore, community: CommunityId) {
    let verification = store
        .verify_chain(community, 1, i64::MAX)
        .await
        .expect("verify");
    assert!(verification.is_intact(), "{verification:?}");
}

/// A directory a private PostgreSQL can live in (also when tests run as root).
pub fn data_dir() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::Builder::new()
        .prefix("cl-")
        .tempdir()
        .expect("temp dir");
    let path = dir.path().to_path_buf();
    (dir, path)
}
