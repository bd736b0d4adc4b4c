//! `civic-ledger bench audit`: verifying a large community's history (the
//! hash chain and the points ledger) next to a plain ordered read of the
//! same rows, and replaying its read models, in one run; and what keeping
//! the Merkle tree costs the append path, with and without it side by side.

use std::time::Instant;

use domain::community::{CommunityEvent, DEFAULT_TIME_ZONE};
use domain::points::{BudgetEvent, GrantSource, WalletEvent};
use domain::report::{Place, ReportEvent, Reporter, SubmitReport};
use domain::values::{
    Actor, CategoryCode, ContentHash, GeoPoint, GridId, PersonId, ReportId, Role, Timestamp,
};
use rust_decimal::Decimal;
use serde::Serialize;
use store::baseline;
use store::migrate::run_migrations;
use store::{
    AppendRequest, CommunityId, EventStore, EventType, ExpectedVersion, NewEvent, StoreConfig,
    StreamId, StreamType,
};
use uuid::Uuid;

use app::database::Database;

/// Reports per append: each adds a report stream and a wallet stream.
pub(crate) const REPORTS_PER_APPEND: i64 = 30;

#[derive(clap::Args, Debug)]
pub struct AuditBenchArgs {
    /// Print one JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
    #[arg(long, default_value_t = 1_000_000)]
    pub events: i64,
    /// Events replayed into every read model (from position 1), and the
    /// replay's summary read from them.
    #[arg(long, default_value_t = 100_000)]
    pub replay_events: i64,
    /// Rounds of `bench store`'s single appends with the tree and without
    /// it, alternated (0: none).
    #[arg(long, default_value_t = 5)]
    pub tree_rounds: usize,
}

#[derive(Serialize)]
struct AuditBenchReport {
    events: i64,
    verify_eps: f64,
    raw_read_eps: f64,
    verify_ratio: f64,
    replay_eps: f64,
    replay_events: i64,
    fill_eps: f64,
    /// `bench store`'s single appends (64 writers, 150 appends each) with
    /// the tree kept and without, each round's rate in order, and the
    /// median of the rounds' ratios (with / without).
    tree_append_eps_runs: Vec<f64>,
    no_tree_append_eps_runs: Vec<f64>,
    tree_ratio: f64,
    /// 1 - tree_ratio: the share of the append rate the tree costs.
    tree_cost: f64,
    intact: bool,
    postgres_version: String,
}

pub async fn run(database: &Database, args: AuditBenchArgs) -> anyhow::Result<()> {
    let json = args.json;
    super::in_scratch_database(
        database,
        json,
        |pg_config| async move { measure(&pg_config, &args).await },
        print_table,
    )
    .await
}

async fn measure(
    pg_config: &tokio_postgres::Config,
    args: &AuditBenchArgs,
) -> anyhow::Result<AuditBenchReport> {
    run_migrations(pg_config).await?;
    let config = StoreConfig {
        pool_size_max: 8,
        ..StoreConfig::default()
    };
    let store = EventStore::connect(pg_config.clone(), config.clone()).await?;
    let postgres_version = baseline::create_raw_table(pg_config).await?;
    let without_tree = StoreConfig {
        keep_tree: false,
        ..config
    };
    let without_tree = EventStore::connect(pg_config.clone(), without_tree).await?;
    let (with, without) = tree_rounds(&store, &without_tree, args.tree_rounds).await?;
    let ratios: Vec<f64> = with.iter().zip(&without).map(|(w, o)| w / o).collect();
    let tree_ratio = super::median(&ratios);
    without_tree.shutdown().await;
    let community = CommunityId::random();
    store.create_community(community, "bench audit").await?;
    eprintln!(
        "bench: writing {} events of reports and points",
        args.events
    );
    let started = Instant::now();
    let events = fill(&store, community, args.events).await?;
    let fill_eps = events as f64 / started.elapsed().as_secs_f64();

    eprintln!("bench: verifying");
    let started = Instant::now();
    let report = app::audit::verify(&store, community, 1, i64::MAX, None).await?;
    let verify_eps = report.to_position as f64 / started.elapsed().as_secs_f64();
    eprintln!("bench: reading the same rows with plain SQL");
    let started = Instant::now();
    let read = baseline::read_all(pg_config, community).await?;
    let raw_read_eps = read as f64 / started.elapsed().as_secs_f64();

    let replay_events = args.replay_events.min(events);
    eprintln!("bench: replaying {replay_events} events into every read model");
    let started = Instant::now();
    let replayed = app::audit::replay::replay(&store, community, replay_events).await?;
    // What `audit replay` prints is read from the scratch tables: that
    // read is part of a replay.
    app::audit::replay::summary(&store, &replayed).await?;
    let replay_eps = replay_events as f64 / started.elapsed().as_secs_f64();
    replayed.discard(&store).await?;
    store.shutdown().await;
    Ok(AuditBenchReport {
        events,
        verify_eps,
        raw_read_eps,
        verify_ratio: verify_eps / raw_read_eps,
        replay_eps,
        replay_events,
        fill_eps,
        tree_ratio,
        tree_cost: 1.0 - tree_ratio,
        tree_append_eps_runs: with,
        no_tree_append_eps_runs: without,
        intact: report.is_intact(),
        postgres_version,
    })
}

/// `bench store`'s single appends, each round once with the tree kept
/// (`with`) and once without, in alternating order, each in a new
/// community: the append rates of each.
async fn tree_rounds(
    with: &EventStore,
    without: &EventStore,
    rounds: usize,
) -> anyhow::Result<(Vec<f64>, Vec<f64>)> {
    let args = super::StoreBenchArgs {
        json: false,
        single_writers: 64,
        single_appends_per_writer: 150,
        batch_writers: 0,
        batch_appends_per_writer: 0,
        batch_events_per_append: 0,
        read_events: 0,
        pipeline_depth: StoreConfig::default().pipeline_depth,
    };
    let (mut with_runs, mut without_runs) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        eprintln!(
            "bench: single appends with and without the tree, round {}",
            round + 1
        );
        let order = if round % 2 == 0 {
            [true, false]
        } else {
            [false, true]
        };
        for keep in order {
            let store = if keep { with } else { without };
            let eps = super::single_appends(store, &args).await?.eps();
            if keep {
                with_runs.push(eps)
            } else {
                without_runs.push(eps)
            }
        }
    }
    Ok((with_runs, without_runs))
}

fn new_event<E: cqrs_es::DomainEvent + Serialize>(event: &E) -> anyhow::Result<NewEvent> {
    let mut new = NewEvent::new(
        EventType::parse(event.event_type())?,
        serde_json::to_value(event)?,
    );
    new.metadata.insert("actor_role".into(), "bench".into());
    Ok(new)
}

/// A community's set-up and budget, then reports submitted and accepted,
/// each earning its reporter 5 points issued from the budget: four events
/// a report.
async fn fill(store: &EventStore, community: CommunityId, total: i64) -> anyhow::Result<i64> {
    let admin = Actor {
        person: PersonId(Uuid::new_v4()),
        role: Role::Admin,
    };
    let at = Timestamp::from_micros(1_795_000_000_000_000);
    let grid = GridId(Uuid::new_v4());
    let set_up = [
        CommunityEvent::CommunityRegistered {
            by: admin,
            name: "bench".into(),
            time_zone: DEFAULT_TIME_ZONE.into(),
            at,
        },
        CommunityEvent::GridAdded {
            by: admin,
            grid,
            name: "grid".into(),
            parent: None,
            at,
        },
    ];
    let events = set_up
        .iter()
        .map(new_event)
        .collect::<anyhow::Result<_>>()?;
    let request = AppendRequest::new(community).stream(
        StreamId::parse(domain::streams::COMMUNITY)?,
        StreamType::parse(domain::streams::StreamKind::Community.name())?,
        ExpectedVersion::NoStream,
        events,
    );
    store.append(request).await?;
    let funded = BudgetEvent::BudgetFunded {
        by: admin,
        amount: Decimal::from(900_000_000),
        note: ContentHash::parse(&"0".repeat(64))?,
        balance: Decimal::from(900_000_000),
        at,
    };
    let request = AppendRequest::new(community).stream(
        StreamId::parse(domain::streams::BUDGET)?,
        StreamType::parse(domain::streams::StreamKind::Budget.name())?,
        ExpectedVersion::NoStream,
        vec![new_event(&funded)?],
    );
    store.append(request).await?;

    let reports = (total - 3).max(0) / 4;
    let appends = (reports + REPORTS_PER_APPEND - 1) / REPORTS_PER_APPEND;
    let budget = Decimal::from(900_000_000);
    super::append_chunks(store, appends, move |chunk| {
        let count = REPORTS_PER_APPEND.min(reports - chunk * REPORTS_PER_APPEND);
        reports_request(community, chunk, count, |_| grid, budget, at)
    })
    .await?;
    Ok(store.head(community).await?.position)
}

/// The `chunk`-th append of `count` reports (on the grid `grid_of` gives
/// each report's number), each submitted and accepted and earning its
/// reporter points issued from the budget, whose balance before the first
/// chunk was `budget`: four events a report. Chunks must be written in
/// order ([`super::append_chunks`]), for the budget's balance to follow.
pub(crate) fn reports_request(
    community: CommunityId,
    chunk: i64,
    count: i64,
    grid_of: impl Fn(i64) -> GridId,
    budget: Decimal,
    at: Timestamp,
) -> anyhow::Result<AppendRequest> {
    let mut request = AppendRequest::new(community);
    let mut issued = Vec::with_capacity(count as usize);
    for n in 0..count {
        let number = chunk * REPORTS_PER_APPEND + n;
        let (with_report, grant) = report_streams(request, grid_of(number), at)?;
        request = with_report;
        let (resident, source, amount) = grant;
        let balance = budget - amount * Decimal::from(number + 1);
        issued.push(new_event(&BudgetEvent::BudgetIssued {
            resident,
            source,
            amount,
            balance,
            at,
        })?);
    }
    Ok(request.stream(
        StreamId::parse(domain::streams::BUDGET)?,
        StreamType::parse(domain::streams::StreamKind::Budget.name())?,
        ExpectedVersion::Any,
        issued,
    ))
}

/// Points a report earned its reporter: whose, why, how many.
type Earned = (PersonId, GrantSource, Decimal);

/// One report submitted and accepted, and its reporter's points (which
/// the budget must issue in the same append).
fn report_streams(
    request: AppendRequest,
    grid: GridId,
    at: Timestamp,
) -> anyhow::Result<(AppendRequest, Earned)> {
    let report = ReportId(Uuid::new_v4());
    let resident = PersonId(Uuid::new_v4());
    let worker = Actor {
        person: PersonId(Uuid::new_v4()),
        role: Role::GridWorker,
    };
    let submitted = ReportEvent::ReportSubmitted(Box::new(SubmitReport {
        report,
        place: Place::Point(GeoPoint::parse(30_878_000, 104_250_000)?),
        grid,
        category: CategoryCode::parse("FLOATING-GARBAGE")?,
        text: ContentHash::parse(&"1".repeat(64))?,
        photos: None,
        reporter: Reporter::Resident(resident),
        first_response_due: at.plus_hours(4),
        resolution_due: at.plus_hours(48),
        department: None,
        likely_duplicate_of: None,
        at,
    }));
    let accepted = ReportEvent::ReportAccepted { by: worker, at };
    let granted = WalletEvent::PointsGranted {
        source: GrantSource::ReportAccepted { report },
        amount: Decimal::from(5),
        requested: Decimal::from(5),
        by: None,
        grid: Some(grid),
        day: 20_775,
        expires_at: None,
        balance: Decimal::from(5),
        held: Decimal::ZERO,
        next_expiry: None,
        at,
    };
    let request = request
        .stream(
            StreamId::parse(domain::streams::report(report.0))?,
            StreamType::parse(domain::streams::StreamKind::Report.name())?,
            ExpectedVersion::NoStream,
            vec![new_event(&submitted)?, new_event(&accepted)?],
        )
        .stream(
            StreamId::parse(domain::streams::wallet(resident.0))?,
            StreamType::parse(domain::streams::StreamKind::Wallet.name())?,
            ExpectedVersion::NoStream,
            vec![new_event(&granted)?],
        );
    let earned = (
        resident,
        GrantSource::ReportAccepted { report },
        Decimal::from(5),
    );
    Ok((request, earned))
}

fn print_table(report: &AuditBenchReport) {
    println!("audit vs raw PostgreSQL {}", report.postgres_version);
    println!(
        "  verify    {:>10.0} ev/s   raw read {:>10.0} ev/s   ratio {:.2}   ({} events, intact: {})",
        report.verify_eps, report.raw_read_eps, report.verify_ratio, report.events, report.intact
    );
    println!(
        "  replay    {:>10.0} ev/s   ({} events into every read model)",
        report.replay_eps, report.replay_events
    );
    println!("  filled at {:>10.0} ev/s", report.fill_eps);
    let rates = |runs: &[f64]| {
        runs.iter()
            .map(|eps| format!("{eps:.0}"))
            .collect::<Vec<_>>()
            .join(" ")
    };
    println!(
        "  single appends with the tree    {} ev/s\n  single appends without the tree {} ev/s\n  \
         ratio (median of rounds) {:.3}   the tree costs {:.1}% of the append rate",
        rates(&report.tree_append_eps_runs),
        rates(&report.no_tree_append_eps_runs),
        report.tree_ratio,
        report.tree_cost * 100.0
    );
}
