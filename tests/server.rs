//! The real `civic-ledger` binary: one command provisions PostgreSQL, serves,
//! stops cleanly on SIGTERM, and finds its events again on the next start.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use store::{EventStore, ExpectedVersion, PrivatePostgres, StoreConfig};

use crate::helpers::*;

struct Server {
    child: Child,
    base_url: String,
}

/// `civic-ledger serve` on a free port, with no DATABASE_URL.
fn serve_command(data_dir: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_civic-ledger"));
    command
        .args([
            "--data-dir",
            data_dir.to_str().unwrap(),
            "serve",
            "--listen",
            "127.0.0.1:0",
        ])
        .env_remove("DATABASE_URL");
    command
}

impl Server {
    /// Starts `civic-ledger serve` without DATABASE_URL and waits until it listens.
    fn start(data_dir: &Path) -> Server {
        let mut child = serve_command(data_dir)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start civic-ledger");
        let stdout = child.stdout.take().unwrap();
        let line = BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .find(|line| line.contains("listening on"))
            .expect("the server says where it listens");
        let base_url = line.rsplit(' ').next().unwrap().to_string();
        Server { child, base_url }
    }

    async fn get(&self, path: &str) -> reqwest::Response {
        reqwest::get(format!("{}{path}", self.base_url))
            .await
            .expect("the server answers")
    }

    /// SIGTERM, then the exit status.
    fn stop(mut self) -> std::process::ExitStatus {
        kill(Pid::from_raw(self.child.id() as i32), Signal::SIGTERM).unwrap();
        for _ in 0..600 {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.child.kill().unwrap();
        panic!("the server did not stop within 30 s of SIGTERM");
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
    }
}

/// The server's PostgreSQL, reached the way a second process would.
async fn attach(data_dir: &Path) -> EventStore {
    let dir = data_dir.to_path_buf();
    let private = tokio::task::spawn_blocking(move || PrivatePostgres::start(&dir))
        .await
        .unwrap()
        .unwrap();
    let config = private.pg_config(store::provision::PRIVATE_DATABASE);
    private.detach();
    EventStore::connect(config, StoreConfig::default())
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_provisions_postgres_stops_cleanly_and_keeps_its_events() {
    let (_guard, data_dir) = data_dir();

    let server = Server::start(&data_dir);
    let ready = server.get("/readyz").await;
    assert_eq!(ready.status(), 200);
    let health = server.get("/healthz").await;
    assert_eq!(health.status(), 200);
    let metrics = server.get("/metrics").await.text().await.unwrap();
    assert!(
        metrics.contains("civic_ledger_append_latency_seconds_bucket"),
        "{metrics}"
    );
    let missing = server.get("/nowhere").await;
    assert_eq!(missing.status(), 404);

    let store = attach(&data_dir).await;
    let community = community(&store).await;
    for i in 0..3 {
        append(
            &store,
            append_one(community, "report-1", ExpectedVersion::Exact(i), i),
        )
        .await;
    }
    store.shutdown().await;
    drop(store);

    let status = server.stop();
    assert!(status.success(), "a clean exit on SIGTERM: {status}");
    let socket = data_dir.join("run/.s.PGSQL.5432");
    assert!(!socket.exists(), "the private PostgreSQL was stopped");

    let server = Server::start(&data_dir);
    let ready = server.get("/readyz").await;
    assert_eq!(ready.status(), 200);
    let store = attach(&data_dir).await;
    let events = read_all(&store, community).await;
    assert_eq!(events.len(), 3, "the second start finds the same events");
    assert_chain_intact(&store, community).await;
    store.shutdown().await;
    drop(store);
    assert!(server.stop().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_alone_applies_then_finds_nothing_to_do() {
    let db = TestDb::new().await;
    // TestDb already migrated; a fresh database shows both answers.
    let fresh = format!("{}_fresh", db.name);
    db.client()
        .await
        .batch_execute(&format!("CREATE DATABASE {fresh}"))
        .await
        .unwrap();
    let url = {
        let config = db.config.clone();
        let host = match &config.get_hosts()[0] {
            tokio_postgres::config::Host::Tcp(host) => host.clone(),
            tokio_postgres::config::Host::Unix(path) => path.display().to_string(),
        };
        let user = config.get_user().unwrap_or("postgres");
        let port = config.get_ports().first().copied().unwrap_or(5432);
        format!("postgres://{user}@/{fresh}?host={host}&port={port}")
    };
    let run = || {
        Command::new(env!("CARGO_BIN_EXE_civic-ledger"))
            .args(["migrate"])
            .env("DATABASE_URL", &url)
            .env("RUST_LOG", "warn")
            .output()
            .unwrap()
    };
    let first = run();
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    assert!(String::from_utf8_lossy(&first.stdout).contains("applied V1__event_store"));
    let second = run();
    assert!(String::from_utf8_lossy(&second.stdout).contains("already up to date"));
    db.client()
        .await
        .batch_execute(&format!("DROP DATABASE {fresh} WITH (FORCE)"))
        .await
        .unwrap();
}

#[test]
fn without_a_url_or_server_programs_the_error_says_what_to_install() {
    let (_guard, data_dir) = data_dir();
    let empty_bin = tempfile::tempdir().unwrap();
    let output = serve_command(&data_dir)
        .env("CIVIC_LEDGER_PG_BINDIR", empty_bin.path())
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    for needed in [
        "initdb",
        "pg_ctl",
        "apt-get install postgresql",
        "DATABASE_URL=",
    ] {
        assert!(
            stderr.contains(needed),
            "the error names {needed}: {stderr}"
        );
    }
    assert!(!data_dir.join("postgres").exists(), "nothing was created");
}

#[test]
fn a_bad_database_url_is_a_clear_error() {
    let output = Command::new(env!("CARGO_BIN_EXE_civic-ledger"))
        .args(["migrate"])
        .env("DATABASE_URL", "not a url")
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr)
        .contains("DATABASE_URL is not a valid PostgreSQL URL"));
}
