//! `civic-ledger bench points`: redemptions at counters and leaderboard
//! reads, each next to raw PostgreSQL in the same run on the same server.
//!
//! Redemptions run the real commands (place, then complete: each one append
//! of three streams) from concurrent counters across many wallets; the
//! baseline is raw inserts of the same rows (three per transaction, two
//! transactions per redemption) from as many connections. The leaderboard
//! is read on a board of many residents, summed from many movements; the
//! baseline is a primary-key read of one score on the same table.

use std::sync::Arc;
use std::time::{Duration, Instant};

use domain::community::{Community, CommunityCommand};
use domain::points::GrantSource;
use domain::values::{Actor, CentreId, GiftId, GrantId, PersonId, Points, RedemptionId, Role};
use projections::leaderboards::{self, LeaderboardsProjection, Metric, Period};
use rand::Rng;
use rust_decimal::Decimal;
use serde::Serialize;
use store::baseline;
use store::migrate::run_migrations;
use store::{CommunityId, EventStore, StoreConfig};
use uuid::Uuid;

use super::{collect, raw_inserts, Run};
use app::clock::{Clock, SystemClock};
use app::commands::{Commands, Ran, RequestMeta, COMMUNITY_STREAM};
use app::content;
use app::database::Database;
use app::directory::Directory;
use app::points::{Finish, GrantRequest, PlaceRequest, PointsDesk};

const CENTRES: usize = 8;
const GIFTS_PER_CENTRE: usize = 4;

#[derive(clap::Args, Debug)]
pub struct PointsBenchArgs {
    /// Print one JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
    #[arg(long, default_value_t = 32)]
    pub counters: usize,
    #[arg(long, default_value_t = 10_000)]
    pub wallets: usize,
    #[arg(long, default_value_t = 150)]
    pub redemptions_per_counter: usize,
    #[arg(long, default_value_t = 100_000)]
    pub residents: i64,
    #[arg(long, default_value_t = 1_000_000)]
    pub movements: i64,
    /// Reads of each leaderboard query.
    #[arg(long, default_value_t = 300)]
    pub reads: usize,
}

#[derive(Serialize)]
struct PointsBenchReport {
    redemptions_per_s: f64,
    raw_redemption_writes_per_s: f64,
    redemption_ratio: f64,
    redemption_p99_ms: f64,
    redemptions: usize,
    refused: usize,
    grants_per_s: f64,
    leaderboard_top_ms_p99: f64,
    leaderboard_rank_ms_p99: f64,
    raw_lookup_ms_p99: f64,
    top_ratio: f64,
    rank_ratio: f64,
    residents: i64,
    movements: i64,
    wallets: usize,
    counters: usize,
    postgres_version: String,
}

pub async fn run(database: &Database, args: PointsBenchArgs) -> anyhow::Result<()> {
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
    args: &PointsBenchArgs,
) -> anyhow::Result<PointsBenchReport> {
    anyhow::ensure!(
        args.counters >= 1 && args.wallets >= 1,
        "counters and wallets: at least 1"
    );
    run_migrations(pg_config).await?;
    let config = StoreConfig {
        pool_size_max: 16,
        ..StoreConfig::default()
    };
    let store = EventStore::connect(pg_config.clone(), config).await?;
    let postgres_version = baseline::create_raw_table(pg_config).await?;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let desk = PointsDesk::new(Commands::new(store.clone(), clock), Directory::default());

    let community = set_up(&desk).await?;
    eprintln!("bench: granting points to {} wallets", args.wallets);
    let (residents, grants) = fund_wallets(&desk, community.id, args.wallets).await?;
    eprintln!(
        "bench: {} counters placing and completing redemptions",
        args.counters
    );
    let redemptions = redeem(&desk, &community, &residents, args).await?;
    let raw = raw_inserts(
        pg_config,
        args.counters,
        args.redemptions_per_counter * 2,
        3,
    )
    .await?;
    let raw_redemption_writes_per_s = raw.eps() / 3.0 / 2.0;

    eprintln!(
        "bench: a leaderboard of {} residents from {} movements",
        args.residents, args.movements
    );
    let boards = read_boards(store.pool(), args).await?;
    store.shutdown().await;

    Ok(PointsBenchReport {
        redemptions_per_s: redemptions.run.eps(),
        raw_redemption_writes_per_s,
        redemption_ratio: redemptions.run.eps() / raw_redemption_writes_per_s,
        redemption_p99_ms: redemptions.run.p99_ms(),
        redemptions: redemptions.run.latencies_len(),
        refused: redemptions.refused,
        grants_per_s: grants.eps(),
        leaderboard_top_ms_p99: boards.top.p99_ms(),
        leaderboard_rank_ms_p99: boards.rank.p99_ms(),
        raw_lookup_ms_p99: boards.raw.p99_ms(),
        top_ratio: boards.top.p99_ms() / boards.raw.p99_ms(),
        rank_ratio: boards.rank.p99_ms() / boards.raw.p99_ms(),
        residents: args.residents,
        movements: args.movements,
        wallets: args.wallets,
        counters: args.counters,
        postgres_version,
    })
}

struct BenchCommunity {
    id: CommunityId,
    /// The gifts of each centre.
    gifts: Vec<(CentreId, Vec<GiftId>)>,
}

fn meta(actor: Actor, key: Option<String>) -> RequestMeta {
    RequestMeta {
        request_id: format!("bench-{}", Uuid::new_v4()),
        client: Some("bench".into()),
        idempotency: key.map(app::idempotency::Idempotency::server),
        actor: Some(actor),
        ..RequestMeta::default()
    }
}

/// A community with centres, gifts with plenty of stock and a budget.
async fn set_up(desk: &PointsDesk) -> anyhow::Result<BenchCommunity> {
    let commands = desk.commands();
    let id = CommunityId::random();
    commands
        .store()
        .create_community(id, "bench points")
        .await?;
    let admin = Actor {
        person: PersonId(Uuid::new_v4()),
        role: Role::Admin,
    };
    let at = commands.clock().now();
    let mut setup = vec![CommunityCommand::Register {
        by: admin,
        name: "bench points".into(),
        time_zone: None,
        at,
    }];
    let centres: Vec<CentreId> = (0..CENTRES).map(|_| CentreId(Uuid::new_v4())).collect();
    for (n, centre) in centres.iter().enumerate() {
        setup.push(CommunityCommand::AddCentre {
            by: admin,
            centre: *centre,
            name: format!("centre {n}"),
            at,
        });
    }
    for command in setup {
        let command = &command;
        commands
            .execute::<Community>(id, COMMUNITY_STREAM, &meta(admin, None), &[], |_| {
                Ok(command.clone())
            })
            .await?;
    }
    let note = content::prepare_text("bench budget", None)?;
    let budget = Points::parse(Decimal::from(900_000_000)).map_err(|e| anyhow::anyhow!("{e}"))?;
    desk.fund(id, &meta(admin, None), admin, budget, note)
        .await?;
    let mut gifts = Vec::new();
    for centre in centres {
        let mut offered = Vec::new();
        for n in 0..GIFTS_PER_CENTRE {
            let gift = GiftId(Uuid::new_v4());
            desk.on_gift(id, &meta(admin, None), gift, None, &[], |_| {
                Ok(domain::points::GiftCommand::Offer {
                    by: admin,
                    centre,
                    name: format!("gift {n}"),
                    price: Points::parse(Decimal::from(n as i64 + 1)).expect("a price"),
                    stock: domain::points::gift::STOCK_MAX,
                    at,
                })
            })
            .await?;
            offered.push(gift);
        }
        gifts.push((centre, offered));
    }
    Ok(BenchCommunity { id, gifts })
}

/// Grants every wallet enough to redeem all it is asked to, from 16
/// concurrent grants (which take turns at the budget).
async fn fund_wallets(
    desk: &PointsDesk,
    community: CommunityId,
    wallets: usize,
) -> anyhow::Result<(Vec<PersonId>, Run)> {
    let residents: Vec<PersonId> = (0..wallets).map(|_| PersonId(Uuid::new_v4())).collect();
    let admin = Actor {
        person: PersonId(Uuid::new_v4()),
        role: Role::Admin,
    };
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let residents_shared = Arc::new(residents.clone());
    let started = Instant::now();
    let tasks: Vec<_> = (0..16)
        .map(|_| {
            let desk = desk.clone();
            let next = next.clone();
            let residents = residents_shared.clone();
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                loop {
                    let n = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let Some(resident) = residents.get(n) else {
                        return anyhow::Ok(latencies);
                    };
                    let at = Instant::now();
                    let request = GrantRequest {
                        resident: *resident,
                        source: GrantSource::Manual {
                            grant: GrantId(Uuid::new_v4()),
                            reason: domain::values::ContentHash::parse(&"0".repeat(64))?,
                        },
                        amount: Points::parse(Decimal::from(10_000)).expect("an amount"),
                        by: Some(admin),
                        grid: None,
                        at: desk.commands().clock().now(),
                    };
                    desk.grant(community, &meta(admin, None), request, &[])
                        .await?;
                    latencies.push(at.elapsed());
                }
            })
        })
        .collect();
    let run = collect(tasks, started, 1).await?;
    Ok((residents, run))
}

struct Redemptions {
    run: Run,
    refused: usize,
}

/// Each counter serves random residents at its centre: place, then complete.
async fn redeem(
    desk: &PointsDesk,
    community: &BenchCommunity,
    residents: &[PersonId],
    args: &PointsBenchArgs,
) -> anyhow::Result<Redemptions> {
    let residents = Arc::new(residents.to_vec());
    let refused = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let started = Instant::now();
    let tasks: Vec<_> = (0..args.counters)
        .map(|counter| {
            let desk = desk.clone();
            let residents = residents.clone();
            let refused = refused.clone();
            let (centre, gifts) = community.gifts[counter % CENTRES].clone();
            let id = community.id;
            let per_counter = args.redemptions_per_counter;
            let clerk = Actor {
                person: PersonId(Uuid::new_v4()),
                role: Role::Clerk,
            };
            tokio::spawn(async move {
                let mut latencies = Vec::with_capacity(per_counter);
                for n in 0..per_counter {
                    let (resident, gift) = {
                        let mut rng = rand::thread_rng();
                        (
                            residents[rng.gen_range(0..residents.len())],
                            gifts[rng.gen_range(0..gifts.len())],
                        )
                    };
                    let at = Instant::now();
                    let key = format!("counter-{counter}:{n}");
                    let request = PlaceRequest {
                        redemption: RedemptionId(Uuid::new_v4()),
                        resident,
                        gift,
                        quantity: 1,
                        by: clerk,
                        centre: Some(centre),
                    };
                    // As a counter's request does: the community, then the placement.
                    let placed = match desk.community(id).await {
                        Ok(setup) => {
                            desk.place(id, &meta(clerk, Some(key)), &setup, request)
                                .await
                        }
                        Err(error) => Err(error),
                    };
                    let placement = match placed {
                        Ok(Ran::Appended(_, placement)) => placement,
                        Ok(Ran::Repeated(_)) | Err(_) => {
                            refused.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            continue;
                        }
                    };
                    desk.finish(
                        id,
                        &meta(clerk, None),
                        placement.redemption,
                        Finish::Complete(clerk),
                        Some(centre),
                    )
                    .await?;
                    latencies.push(at.elapsed());
                }
                anyhow::Ok(latencies)
            })
        })
        .collect();
    let run = collect(tasks, started, 1).await?;
    Ok(Redemptions {
        run,
        refused: refused.load(std::sync::atomic::Ordering::Relaxed),
    })
}

struct Boards {
    top: Run,
    rank: Run,
    raw: Run,
}

async fn read_boards(
    pool: &deadpool_postgres::Pool,
    args: &PointsBenchArgs,
) -> anyhow::Result<Boards> {
    let community = CommunityId::random();
    let generation = projections::generation::ensure_live(pool, &LeaderboardsProjection).await?;
    let schema = projections::generation::schema_name(leaderboards::NAME, generation);
    leaderboards::seed_for_bench(pool, community, args.residents, args.movements).await?;
    let residents = leaderboards::bench_residents(pool, community).await?;
    anyhow::ensure!(!residents.is_empty(), "the board was not seeded");
    let pick = || residents[rand::thread_rng().gen_range(0..residents.len())];
    let timed = |latencies: Vec<Duration>, elapsed: Duration| Run::of(latencies, elapsed);

    let (mut top, mut rank, mut raw) = (Vec::new(), Vec::new(), Vec::new());
    let started = Instant::now();
    for _ in 0..args.reads {
        let at = Instant::now();
        let board =
            leaderboards::top(pool, community, Metric::Points, None, Period::AllTime, 20).await?;
        top.push(at.elapsed());
        anyhow::ensure!(board.len() == 20, "a full top 20");

        let resident = pick();
        let at = Instant::now();
        let standing = leaderboards::rank_of(
            pool,
            community,
            Metric::Points,
            None,
            Period::AllTime,
            resident,
        )
        .await?;
        rank.push(at.elapsed());
        anyhow::ensure!(standing.is_some(), "every seeded resident has a rank");

        let resident = pick();
        let at = Instant::now();
        leaderboards::raw_score_lookup(pool, &schema, community, resident).await?;
        raw.push(at.elapsed());
    }
    let elapsed = started.elapsed();
    Ok(Boards {
        top: timed(top, elapsed),
        rank: timed(rank, elapsed),
        raw: timed(raw, elapsed),
    })
}

fn print_table(report: &PointsBenchReport) {
    println!("points vs raw PostgreSQL {}", report.postgres_version);
    println!(
        "  redemptions    {:>8.0} /s   raw writes {:>8.0} /s   ratio {:.2}   p99 {:.1} ms   ({} counters, {} wallets, {} refused)",
        report.redemptions_per_s,
        report.raw_redemption_writes_per_s,
        report.redemption_ratio,
        report.redemption_p99_ms,
        report.counters,
        report.wallets,
        report.refused
    );
    println!("  grants         {:>8.0} /s", report.grants_per_s);
    println!(
        "  top 20 p99     {:>8.2} ms   raw lookup {:.2} ms   ratio {:.1}   ({} residents, {} movements)",
        report.leaderboard_top_ms_p99,
        report.raw_lookup_ms_p99,
        report.top_ratio,
        report.residents,
        report.movements
    );
    println!(
        "  my rank p99    {:>8.2} ms   ratio {:.1}",
        report.leaderboard_rank_ms_p99, report.rank_ratio
    );
}
