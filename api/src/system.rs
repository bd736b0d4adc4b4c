//! Wires a running system: migrations, the event store, the projection
//! runner, the deadline watcher and the HTTP server. `serve` and the tests
//! build it the same way.

use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::ServerHandle;
use anyhow::Context;
use projections::{ProjectionRunner, RunnerConfig};
use store::migrate::run_migrations;
use store::{EventStore, StoreConfig};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::auth::Tokens;
use crate::clients::TrustedProxies;
use crate::config::{interval, Config};
use crate::graphql::cost::ParsedQueries;
use crate::graphql::{build_schema, build_subscription_schema, App};
use crate::server::{self, AppState};
use app::audit::seals::{SealPolicy, Sealer};
use app::clock::{Clock, SystemClock};
use app::commands::Commands;
use app::deadlines::DeadlineWatcher;
use app::directory::Directory;
use app::photos::{PhotoStore, Photos};
use app::points::earning::EarningProcess;
use app::points::sweeper::PointsSweeper;
use app::points::PointsDesk;
use app::ratelimit::{RateLimiter, SubmissionLimits, SubmissionRates};
use app::secrets::Secrets;
use app::services::Services;
use app::signup::{CodeSender, DemoCodes, LogCodeSender, Signup};

pub struct Settings {
    pub listen: String,
    /// The event store's pool and statement bounds.
    pub store: StoreConfig,
    pub secrets: Secrets,
    pub clock: Arc<dyn Clock>,
    pub code_sender: Arc<dyn CodeSender>,
    /// How often the deadline watcher looks; `None` runs none (tests tick it).
    pub deadline_interval: Option<Duration>,
    /// How often held redemptions and due points are swept; `None` runs
    /// none (tests tick it).
    pub points_sweep_interval: Option<Duration>,
    /// How often the sealer looks (it seals by `seal_policy`); `None` runs
    /// none (tests seal by hand).
    pub seal_interval: Option<Duration>,
    pub seal_policy: SealPolicy,
    pub runner: RunnerConfig,
    /// Whether this process runs the projections (another may).
    pub run_projections: bool,
    /// Whether it runs the earning process with them (another may).
    pub run_earning: bool,
    pub freshness_timeout: Duration,
    /// The answers of repeated reads kept in memory.
    pub read_cache: projections::CacheLimits,
    /// How fast reports and suggestions may come, per budget.
    pub submission_rates: SubmissionRates,
    /// Sign-up code requests and attempts per address: a burst, then per
    /// minute.
    pub signup_rates: (u32, u32),
    /// Peers whose `Forwarded` / `X-Forwarded-For` headers are believed
    /// (reverse proxies); from anyone else those headers are ignored.
    pub trusted_proxies: TrustedProxies,
    /// Where uploaded photos' bytes live: in memory unless the command
    /// line sets the configured store (tests and benches keep memory).
    pub photo_store: PhotoStore,
    /// Where residents reach this server, for QR codes; empty is
    /// `http://` and the address it listens on.
    pub public_base_url: String,
    /// A demo server's sign-up codes, shown on its pages instead of sent
    /// (`serve --demo`); when set, it is the code sender.
    pub demo_codes: Option<Arc<DemoCodes>>,
}

impl Settings {
    /// The built-in defaults (`Config::default()`), listening on `listen`.
    pub fn new(listen: &str, secrets: Secrets) -> Self {
        let mut config = Config::default();
        config.server.listen = listen.to_string();
        Settings::from_config(&config, secrets).expect("the defaults are valid")
    }

    /// A configuration made into settings, once it is checked.
    pub fn from_config(config: &Config, secrets: Secrets) -> anyhow::Result<Self> {
        config.check()?;
        let trusted_proxies = TrustedProxies::parse(&config.server.trusted_proxies)
            .map_err(|error| anyhow::anyhow!("server.trusted_proxies: {error}"))?;
        Ok(Settings {
            listen: config.server.listen.clone(),
            store: config.store(),
            secrets,
            clock: Arc::new(SystemClock),
            code_sender: Arc::new(LogCodeSender),
            deadline_interval: interval(config.processes.deadline_interval_seconds),
            points_sweep_interval: interval(config.processes.points_sweep_interval_seconds),
            seal_interval: interval(config.processes.seal_interval_seconds),
            seal_policy: config.seal_policy(),
            runner: config.runner(),
            run_projections: true,
            run_earning: true,
            freshness_timeout: Duration::from_secs(config.server.freshness_timeout_seconds),
            read_cache: config.read_cache(),
            submission_rates: config.submission_rates(),
            signup_rates: (config.limits.signup_burst, config.limits.signup_per_minute),
            trusted_proxies,
            photo_store: PhotoStore::in_memory(),
            public_base_url: config.server.public_base_url.clone(),
            demo_codes: None,
        })
    }
}

/// Everything that follows the log: the read models and the earning
/// process.
pub fn followers(points: &PointsDesk) -> Vec<Arc<dyn projections::Projection>> {
    let mut followers = projections::all();
    followers.push(Arc::new(EarningProcess::new(points.clone())));
    followers
}

pub struct Application {
    pub address: SocketAddr,
    pub app: Arc<App>,
    pub store: EventStore,
    server: actix_web::dev::Server,
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl Application {
    pub async fn build(
        pg_config: &tokio_postgres::Config,
        settings: Settings,
    ) -> anyhow::Result<Application> {
        run_migrations(pg_config)
            .await
            .context("migrations failed")?;
        let store = EventStore::connect(pg_config.clone(), settings.store.clone())
            .await
            .context("could not connect to PostgreSQL")?;
        // Reads find each read model through its reading schema: make sure
        // every one shows its live generation before the first query.
        for projection in projections::all() {
            projections::generation::open_for_reading(store.pool(), &*projection)
                .await
                .with_context(|| format!("could not open the {} read model", projection.name()))?;
        }
        let commands = Commands::new(store.clone(), settings.clock.clone());
        let runner = ProjectionRunner::new(store.clone(), settings.runner.clone());
        let directory = Directory::default();
        let points = PointsDesk::new(commands.clone(), directory.clone());
        let (shutdown, shutdown_rx) = watch::channel(false);
        let mut tasks = Vec::new();
        if settings.run_projections {
            let mut following = projections::all();
            if settings.run_earning {
                following.push(Arc::new(EarningProcess::new(points.clone())));
            }
            tasks.extend(runner.spawn(following, shutdown_rx.clone()));
        }
        if let Some(interval) = settings.deadline_interval {
            let watcher =
                DeadlineWatcher::new(commands.clone()).with_stalls(runner.stalls().clone());
            tasks.push(watcher.spawn(interval, shutdown_rx.clone()));
        }
        if let Some(interval) = settings.points_sweep_interval {
            let sweeper = PointsSweeper::new(points.clone()).with_stalls(runner.stalls().clone());
            tasks.push(sweeper.spawn(interval, shutdown_rx.clone()));
        }
        let sealer = Sealer::new(
            store.clone(),
            &settings.secrets.seal_key,
            settings.seal_policy,
        )
        .with_stalls(runner.stalls().clone());
        if let Some(interval) = settings.seal_interval {
            tasks.push(sealer.clone().spawn(interval, shutdown_rx));
        }
        let services = Services {
            signup: Signup::new(
                store.clone(),
                settings.secrets.phone_key.clone(),
                match &settings.demo_codes {
                    Some(codes) => codes.clone(),
                    None => settings.code_sender.clone(),
                },
            ),
            commands,
            directory,
            points,
            sealer,
            submission_limits: SubmissionLimits::new(settings.submission_rates),
            signup_limiter: RateLimiter::new(
                "sign-up attempts",
                "this address",
                settings.signup_rates.0,
                settings.signup_rates.1,
            ),
            photos: Photos::new(settings.photo_store, settings.submission_rates),
            retry_key: settings.secrets.token_key.clone(),
            open_reports: Default::default(),
            open_index: Default::default(),
        };
        let app = Arc::new(App {
            services,
            tokens: Tokens::new(&settings.secrets.token_key),
            runner,
            reads: projections::ReadCache::new(store.clone(), settings.read_cache),
            freshness_timeout: settings.freshness_timeout,
            demo_codes: settings.demo_codes.clone(),
        });
        let listener = TcpListener::bind(&settings.listen)
            .with_context(|| format!("could not listen on {}", settings.listen))?;
        let address = listener.local_addr()?;
        let public_base_url = match settings.public_base_url.trim_end_matches('/') {
            "" => format!("http://{address}"),
            configured => configured.to_string(),
        };
        let server = server::build(
            listener,
            AppState {
                store: store.clone(),
                schema: build_schema(app.clone()),
                subscription_schema: build_subscription_schema(app.clone()),
                parsed: Arc::new(ParsedQueries::default()),
                app: app.clone(),
                trusted_proxies: Arc::new(settings.trusted_proxies),
                public_base_url: public_base_url.into(),
            },
        )?;
        Ok(Application {
            address,
            app,
            store,
            server,
            shutdown,
            tasks,
        })
    }

    pub fn handle(&self) -> ServerHandle {
        self.server.handle()
    }

    /// Serves until stopped (a signal, or the handle), then stops the
    /// background tasks and lets queued appends commit.
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        self.server.await.context("the HTTP server failed")?;
        tracing::info!("stopped accepting requests; finishing queued appends");
        let _ = self.shutdown.send(true);
        for task in self.tasks {
            let _ = task.await;
        }
        self.store.shutdown().await;
        Ok(())
    }
}
