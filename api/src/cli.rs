//! The command line: `serve`, `migrate`, `schema`, `token issue`,
//! `project run|rebuild|status`, `audit verify|export`, `bench store|points`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use projections::{ProjectionRunner, RunnerConfig};
use store::migrate::run_migrations;
use store::{EventStore, StoreConfig};

use crate::auth::{TokenRequest, Tokens};
use crate::config::Config;
use crate::system::{Application, Settings};
use crate::telemetry;
use app::database::Database;
use app::secrets::Secrets;

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
        /// A TOML configuration file (docs/CONFIGURATION.md); the
        /// environment's CIVIC_LEDGER_<SECTION>_<KEY> variables override it.
        #[arg(long, env = "CIVIC_LEDGER_CONFIG")]
        config: Option<std::path::PathBuf>,
        /// Address to listen on (server.listen); port 0 picks a free port.
        #[arg(long, env = "CIVIC_LEDGER_LISTEN")]
        listen: Option<String>,
        /// Connections the event store may hold open (database.pool_size_max).
        #[arg(long)]
        pool_size_max: Option<usize>,
        /// Seed a demo community (once) and print tokens to try it with.
        #[arg(long)]
        demo: bool,
        /// Leave the projections to a separate `civic-ledger project run`.
        #[arg(long)]
        no_projections: bool,
        /// Reverse proxies whose `Forwarded` / `X-Forwarded-For` headers
        /// name the client (server.trusted_proxies: comma-separated
        /// addresses and networks, e.g. `127.0.0.1,10.0.0.0/8`); from any
        /// other peer they are ignored.
        #[arg(long, env = "CIVIC_LEDGER_TRUSTED_PROXIES")]
        trusted_proxies: Option<String>,
    },
    /// Apply the database migrations and exit.
    Migrate,
    /// Print the GraphQL schema (the contract in `schema.graphql`).
    Schema,
    /// Bearer tokens for operators.
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// Run or rebuild the read models.
    Project {
        #[command(subcommand)]
        command: ProjectCommand,
    },
    /// Check a community's history, or export it for auditors.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Measure the system against raw PostgreSQL on the same server.
    Bench {
        #[command(subcommand)]
        target: BenchTarget,
    },
}

#[derive(Subcommand, Debug)]
pub enum TokenCommand {
    /// Sign a token with the server's key (from CIVIC_LEDGER_TOKEN_SECRET or
    /// the data directory).
    Issue {
        /// citizen, grid_worker, department, clerk, admin, auditor or inspector.
        #[arg(long)]
        role: String,
        /// The bearer's pseudonymous id.
        #[arg(long)]
        subject: uuid::Uuid,
        #[arg(long)]
        community: uuid::Uuid,
        /// Narrow a grid worker to these grids (repeatable).
        #[arg(long = "scope-grid")]
        grids: Vec<uuid::Uuid>,
        /// A clerk's centre.
        #[arg(long = "scope-centre")]
        centre: Option<uuid::Uuid>,
        #[arg(long, default_value_t = 12)]
        ttl_hours: u64,
    },
}

#[derive(Subcommand, Debug)]
pub enum ProjectCommand {
    /// Follow the log with every projection until stopped (SIGINT/SIGTERM).
    Run,
    /// Rebuild one projection from position zero into a new generation
    /// while the live one keeps serving, then switch to it.
    Rebuild { name: String },
    /// Each projection's live generation and lag.
    Status,
}

#[derive(Subcommand, Debug)]
pub enum AuditCommand {
    /// Recompute the hash chain (positions FROM..=TO) and the points
    /// ledger's invariants; prints a JSON report; exits 0 only when
    /// everything holds.
    Verify {
        #[arg(long, required_unless_present = "file")]
        community: Option<uuid::Uuid>,
        #[arg(long, default_value_t = 1)]
        from: i64,
        #[arg(long)]
        to: Option<i64>,
        /// Verify an export (`audit export`) instead, without a database.
        #[arg(long, conflicts_with = "community")]
        file: Option<PathBuf>,
        /// The public key (hex) seals must be signed by; without it each
        /// seal is checked against the key it names, and the report says
        /// that no seal was trusted.
        #[arg(long)]
        seal_key: Option<String>,
        /// Seals collected earlier (one JSON seal a line, as the export
        /// writes them or `seals` answers): the log must still extend
        /// every one. With `--file` only.
        #[arg(long, requires = "file")]
        seals: Option<PathBuf>,
    },
    /// Rebuild every read model as of a past position or time into scratch
    /// schemas (the live ones untouched); print the trial balance, the
    /// points leaderboard and the statistics then; drop the scratch schemas.
    Replay {
        #[arg(long)]
        community: uuid::Uuid,
        #[arg(long, required_unless_present = "to_time", conflicts_with = "to_time")]
        to_position: Option<i64>,
        /// RFC 3339, e.g. 2026-11-01T00:00:00+08:00.
        #[arg(long)]
        to_time: Option<chrono::DateTime<chrono::Utc>>,
    },
    /// Print the receipt of the event at POSITION (its inclusion proof
    /// against a seal) as one JSON object (docs/AUDIT.md).
    ProveInclusion {
        #[arg(long)]
        community: uuid::Uuid,
        #[arg(long)]
        position: i64,
        /// The seal to prove against; by default the first that covers it.
        #[arg(long)]
        seal_position: Option<i64>,
    },
    /// Print the proof that the seal at NEW extends the seal at OLD as one
    /// JSON object (docs/AUDIT.md).
    ProveConsistency {
        #[arg(long)]
        community: uuid::Uuid,
        #[arg(long)]
        old_seal_position: i64,
        #[arg(long)]
        new_seal_position: i64,
    },
    /// Check proofs (`prove-inclusion`, `prove-consistency`, or the
    /// `document` the GraphQL API gives), one JSON object a line, without
    /// a database; exits 0 only when every one holds.
    CheckProof {
        #[arg(long)]
        file: PathBuf,
        /// The public key (hex) seals must be signed by.
        #[arg(long)]
        seal_key: Option<String>,
    },
    /// Write a community's history as NDJSON to standard output (every
    /// stored field, hashes included; docs/AUDIT.md), streamed.
    Export {
        #[arg(long)]
        community: uuid::Uuid,
        #[arg(long, default_value_t = 1)]
        from: i64,
        #[arg(long)]
        to: Option<i64>,
    },
}

#[derive(Subcommand, Debug)]
pub enum BenchTarget {
    /// The event store: appends and reads, each next to raw SQL.
    Store(bench::StoreBenchArgs),
    /// The points economy: redemptions at counters and leaderboard reads.
    Points(bench::points::PointsBenchArgs),
    /// Audit: verifying a large history next to a plain read; replaying it.
    Audit(bench::audit::AuditBenchArgs),
    /// The real server over HTTP, as users see it, next to /healthz, a
    /// trivial query and raw commits measured in the same run.
    Http(bench::http::HttpBenchArgs),
    /// The pages a phone opens: their weight, and their first render on a
    /// throttled connection in headless Chromium next to the smallest
    /// page's, measured alternately in the same run.
    Pages(bench::pages::PagesBenchArgs),
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
    // Commands that need no database come first.
    match &cli.command {
        Command::Schema => {
            print!("{}", crate::graphql::sdl());
            return Ok(());
        }
        Command::Token { command } => return issue_token(&cli.data_dir, command),
        Command::Audit {
            command:
                AuditCommand::Verify {
                    file: Some(file),
                    seal_key,
                    seals,
                    ..
                },
        } => return verify_file(file, seal_key.as_deref(), seals.as_deref()),
        Command::Audit {
            command: AuditCommand::CheckProof { file, seal_key },
        } => return check_proofs(file, seal_key.as_deref()),
        _ => {}
    }
    // A bad configuration is refused before any database is touched.
    let settings = match &cli.command {
        Command::Serve {
            config,
            listen,
            pool_size_max,
            no_projections,
            trusted_proxies,
            ..
        } => {
            let mut config = Config::load(config.as_deref(), std::env::vars())?;
            if let Some(listen) = listen {
                config.server.listen = listen.clone();
            }
            if let Some(pool_size_max) = pool_size_max {
                config.database.pool_size_max = *pool_size_max;
            }
            if let Some(trusted_proxies) = trusted_proxies {
                config.server.trusted_proxies = trusted_proxies.clone();
            }
            let mut settings = Settings::from_config(&config, Secrets::load(&cli.data_dir)?)?;
            settings.run_projections = !no_projections;
            settings.photo_store = config.photos.photo_store(&cli.data_dir)?;
            settings.code_sender = config.signup.code_sender()?;
            Some(settings)
        }
        _ => None,
    };
    let database = Database::open(cli.database_url.as_deref(), &cli.data_dir).await?;
    let result = match cli.command {
        Command::Serve { demo, .. } => {
            let settings = settings.expect("made above for serve");
            serve(&database, settings, demo).await
        }
        Command::Migrate => migrate(&database).await,
        Command::Project { command } => project(&database, command).await,
        Command::Audit { command } => audit(&database, command).await,
        Command::Bench {
            target: BenchTarget::Store(args),
        } => bench::store(&database, args).await,
        Command::Bench {
            target: BenchTarget::Points(args),
        } => bench::points::run(&database, args).await,
        Command::Bench {
            target: BenchTarget::Audit(args),
        } => bench::audit::run(&database, args).await,
        Command::Bench {
            target: BenchTarget::Http(args),
        } => bench::http::run(&database, args).await,
        Command::Bench {
            target: BenchTarget::Pages(args),
        } => bench::pages::run(&database, args).await,
        Command::Schema | Command::Token { .. } => unreachable!("handled above"),
    };
    // Stop the private server whatever happened, then report.
    let closed = database.close().await;
    result?;
    closed
}

/// Prints the report; an error (exit code 1) unless everything holds.
fn report(report: &app::audit::AuditReport) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(report)?);
    match &report.first_failure {
        None => Ok(()),
        Some(failure) => anyhow::bail!(
            "the history does not hold at position {}: {} ({})",
            failure.position,
            failure.what,
            failure.detail
        ),
    }
}

fn verify_file(
    file: &std::path::Path,
    seal_key: Option<&str>,
    seals: Option<&std::path::Path>,
) -> anyhow::Result<()> {
    let opened =
        std::fs::File::open(file).with_context(|| format!("could not open {}", file.display()))?;
    let trusted = seal_key.map(parse_key).transpose()?;
    let collected = match seals {
        Some(path) => collected_seals(path)?,
        None => Vec::new(),
    };
    let verified = app::audit::export::verify_export_with(
        std::io::BufReader::new(opened),
        trusted,
        collected,
    )?;
    report(&verified)
}

/// Seals an auditor kept: one JSON seal a line (blank lines skipped).
fn collected_seals(path: &std::path::Path) -> anyhow::Result<Vec<store::Seal>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("could not read {}", path.display()))?;
    text.lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(n, line)| {
            serde_json::from_str(line)
                .with_context(|| format!("{}: line {} is not a seal", path.display(), n + 1))
        })
        .collect()
}

/// Checks every proof document of `file`; prints one line a document.
fn check_proofs(file: &std::path::Path, seal_key: Option<&str>) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(file)
        .with_context(|| format!("could not read {}", file.display()))?;
    let trusted = seal_key.map(parse_key).transpose()?;
    let mut failed = 0;
    let mut held = 0;
    for (n, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        match app::audit::proofs::check_document(line, trusted.as_ref()) {
            Ok(()) => held += 1,
            Err(what) => {
                failed += 1;
                println!("line {}: fails: {what}", n + 1);
            }
        }
    }
    if trusted.is_none() {
        println!("no seal trusted: give --seal-key to pin the server's key");
    }
    anyhow::ensure!(failed == 0, "{failed} proofs do not hold, {held} hold");
    println!("{held} proofs hold");
    Ok(())
}

fn parse_key(hex_key: &str) -> anyhow::Result<[u8; 32]> {
    let bytes = hex::decode(hex_key.trim()).context("--seal-key: hex")?;
    bytes
        .try_into()
        .map_err(|_| anyhow::anyhow!("--seal-key: 32 bytes, 64 hex digits"))
}

async fn audit(database: &Database, command: AuditCommand) -> anyhow::Result<()> {
    let store = EventStore::connect(database.pg_config.clone(), StoreConfig::default())
        .await
        .context("could not connect to PostgreSQL")?;
    let result = match command {
        AuditCommand::Verify {
            community,
            from,
            to,
            seal_key,
            ..
        } => {
            let community = store::CommunityId::new(community.context("--community")?);
            let trusted = seal_key.as_deref().map(parse_key).transpose()?;
            let to = to.unwrap_or(i64::MAX);
            let verified = app::audit::verify(&store, community, from, to, trusted).await?;
            report(&verified)
        }
        AuditCommand::Replay {
            community,
            to_position,
            to_time,
        } => {
            let community = store::CommunityId::new(community);
            let until = match (to_position, to_time) {
                (Some(position), _) => position,
                (None, Some(time)) => store.position_at(community, time).await?,
                (None, None) => anyhow::bail!("--to-position or --to-time"),
            };
            let replayed = app::audit::replay::replay(&store, community, until).await?;
            let summary = app::audit::replay::summary(&store, &replayed).await;
            replayed.discard(&store).await?;
            println!("{}", serde_json::to_string_pretty(&summary?)?);
            Ok(())
        }
        AuditCommand::ProveInclusion {
            community,
            position,
            seal_position,
        } => {
            let community = store::CommunityId::new(community);
            let receipt =
                app::audit::proofs::receipt(&store, community, position, seal_position).await?;
            println!("{}", serde_json::to_string(&receipt)?);
            Ok(())
        }
        AuditCommand::ProveConsistency {
            community,
            old_seal_position,
            new_seal_position,
        } => {
            let community = store::CommunityId::new(community);
            let extension = app::audit::proofs::extension(
                &store,
                community,
                old_seal_position,
                new_seal_position,
            )
            .await?;
            println!("{}", serde_json::to_string(&extension)?);
            Ok(())
        }
        AuditCommand::CheckProof { .. } => unreachable!("handled before the database"),
        AuditCommand::Export {
            community,
            from,
            to,
        } => {
            let stdout = std::io::stdout();
            let mut out = std::io::BufWriter::new(stdout.lock());
            app::audit::export::export(
                &store,
                store::CommunityId::new(community),
                from,
                to.unwrap_or(i64::MAX),
                &mut out,
            )
            .await
            .map(drop)
            .map_err(anyhow::Error::from)
        }
    };
    store.shutdown().await;
    result
}

fn issue_token(data_dir: &std::path::Path, command: &TokenCommand) -> anyhow::Result<()> {
    let TokenCommand::Issue {
        role,
        subject,
        community,
        grids,
        centre,
        ttl_hours,
    } = command;
    let role: domain::values::Role =
        serde_json::from_value(serde_json::Value::String(role.clone()))
            .map_err(|_| anyhow::anyhow!("unknown role `{role}`"))?;
    let tokens = Tokens::new(&Secrets::load(data_dir)?.token_key);
    let token = tokens.issue(TokenRequest {
        subject: *subject,
        role,
        community: *community,
        grids: grids.clone(),
        centre: *centre,
        lifetime: std::time::Duration::from_secs(ttl_hours * 3600),
    })?;
    println!("{token}");
    Ok(())
}

async fn project(database: &Database, command: ProjectCommand) -> anyhow::Result<()> {
    run_migrations(&database.pg_config)
        .await
        .context("migrations failed")?;
    let store = EventStore::connect(database.pg_config.clone(), StoreConfig::default())
        .await
        .context("could not connect to PostgreSQL")?;
    let runner = ProjectionRunner::new(store.clone(), RunnerConfig::default());
    let result = match command {
        ProjectCommand::Run => {
            let (stop, stopped) = tokio::sync::watch::channel(false);
            let commands = app::commands::Commands::new(
                store.clone(),
                std::sync::Arc::new(app::clock::SystemClock),
            );
            let points =
                app::points::PointsDesk::new(commands, app::directory::Directory::default());
            let tasks = runner.spawn(crate::system::followers(&points), stopped);
            tokio::signal::ctrl_c().await?;
            let _ = stop.send(true);
            for task in tasks {
                let _ = task.await;
            }
            Ok(())
        }
        ProjectCommand::Rebuild { name } => {
            let projection = projections::by_name(&name).with_context(|| {
                let names: Vec<_> = projections::all().iter().map(|p| p.name()).collect();
                format!("no projection `{name}`; there are: {}", names.join(", "))
            })?;
            let generation = runner.rebuild(&*projection).await?;
            println!("{name}: generation {generation} is live");
            Ok(())
        }
        ProjectCommand::Status => {
            for (name, lag) in projections::progress::lag_by_projection(store.pool()).await? {
                let generation = projections::generation::live(store.pool(), &name).await?;
                println!("{name}: generation {generation:?}, lag {lag} events");
            }
            Ok(())
        }
    };
    store.shutdown().await;
    result
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

async fn serve(database: &Database, mut settings: Settings, demo: bool) -> anyhow::Result<()> {
    if demo {
        // A demo sends no SMS: its sign-up page shows the code, marked.
        settings.demo_codes = Some(Default::default());
    }
    let application = Application::build(&database.pg_config, settings).await?;
    let address = application.address;
    if demo {
        let seeded = bench::demo::seed(&application.app.points).await?;
        print_demo(&application, seeded)?;
    }
    tracing::info!(%address, "civic-ledger listening");
    println!("civic-ledger listening on http://{address}");
    application.run_until_stopped().await?;
    tracing::info!("civic-ledger stopped");
    Ok(())
}

fn print_demo(application: &Application, seeded: bool) -> anyhow::Result<()> {
    use bench::demo;
    use domain::values::Role;
    let token = |subject, role| {
        application
            .app
            .tokens
            .issue(TokenRequest {
                subject,
                role,
                community: demo::COMMUNITY,
                grids: Vec::new(),
                centre: (role == Role::Clerk).then_some(demo::CENTRE),
                lifetime: std::time::Duration::from_secs(12 * 3600),
            })
            .map_err(anyhow::Error::from)
    };
    println!(
        "demo community {} ({}):",
        demo::COMMUNITY,
        if seeded {
            "seeded now"
        } else {
            "already there"
        }
    );
    println!("  admin token:       {}", token(demo::ADMIN, Role::Admin)?);
    println!(
        "  grid worker token: {} (worker {}, grid 1)",
        token(demo::worker(1).0, Role::GridWorker)?,
        demo::worker(1)
    );
    println!(
        "  resident token:    {} (resident {})",
        token(demo::RESIDENT, Role::Citizen)?,
        demo::RESIDENT
    );
    println!(
        "  clerk token:       {} (centre {})",
        token(demo::CLERK, Role::Clerk)?,
        demo::CENTRE
    );
    println!(
        "  site codes: {} … {}",
        demo::site_code(1),
        demo::site_code(20)
    );
    Ok(())
}
