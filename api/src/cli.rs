//! The command line: `serve`, `migrate`, `bench store`.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use store::migrate::run_migrations;
use store::{EventStore, StoreConfig};

use crate::database::Database;
use crate::server::{self, AppState};
use crate::telemetry;

#[derive(Parser, Debug)]
#[command(
    name = "civic-ledger",
    version,
    about = "Community governance ledger: reports, points, audit"
)]
pub struct Cli {
    /// PostgreSQL to use. When unset, a private server runs in --data-dir.
    #[arg(long, env = "DATABASE_URL", global = true, hide_env_values = true)]
    pub database_url: Option<String>,
    /// Where the private PostgreSQL server keeps its files.
    #[arg(
        long,
        env = "CIVIC_LEDGER_DATA_DIR",
        default_value = "./data",
        global = true
    )]
    pub data_dir: PathBuf,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the HTTP server (migrations run first).
    Serve {
        /// Address to listen on; port 0 picks a free port.
        #[arg(long, env = "CIVIC_LEDGER_LISTEN", default_value = "127.0.0.1:8080")]
        listen: String,
        /// Connections the event store may hold open.
        #[arg(long, default_value_t = 16)]
        pool_size_max: usize,
    },
    /// Apply the database migrations and exit.
    Migrate,
    /// Measure the system against raw PostgreSQL on the same server.
    Bench {
        #[command(subcommand)]
        target: BenchTarget,
    },
}

#[derive(Subcommand, Debug)]
pub enum BenchTarget {
    /// The event store: appends and reads, each next to raw SQL.
    Store(crate::bench::StoreBenchArgs),
}

pub async fn main() -> ExitCode {
    telemetry::init();
    let cli = Cli::parse();
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("civic-ledger: {error:#}");
            ExitCode::FAILURE
        }
    }
}

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let database = Database::open(cli.database_url.as_deref(), &cli.data_dir).await?;
    let result = match cli.command {
        Command::Serve {
            listen,
            pool_size_max,
        } => serve(&database, &listen, pool_size_max).await,
        Command::Migrate => migrate(&database).await,
        Command::Bench {
            target: BenchTarget::Store(args),
        } => crate::bench::store(&database, args).await,
    };
    // Stop the private server whatever happened, then report.
    let closed = database.close().await;
    result?;
    closed
}

async fn migrate(database: &Database) -> anyhow::Result<()> {
    let applied = run_migrations(&database.pg_config)
        .await
        .context("migrations failed")?;
    if applied.is_empty() {
        println!("migrations: already up to date");
    }
    for name in applied {
        println!("migrations: applied {name}");
    }
    Ok(())
}

async fn serve(database: &Database, listen: &str, pool_size_max: usize) -> anyhow::Result<()> {
    run_migrations(&database.pg_config)
        .await
        .context("migrations failed")?;
    let config = StoreConfig {
        pool_size_max,
        ..StoreConfig::default()
    };
    let store = EventStore::connect(database.pg_config.clone(), config)
        .await
        .context("could not connect to PostgreSQL")?;
    let listener =
        TcpListener::bind(listen).with_context(|| format!("could not listen on {listen}"))?;
    let address = listener.local_addr()?;
    let server = server::build(
        listener,
        AppState {
            store: store.clone(),
        },
    )?;
    tracing::info!(%address, "civic-ledger listening");
    println!("civic-ledger listening on http://{address}");
    server.await.context("the HTTP server failed")?;
    tracing::info!("stopped accepting requests; finishing queued appends");
    store.shutdown().await;
    tracing::info!("civic-ledger stopped");
    Ok(())
}
