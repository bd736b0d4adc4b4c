//! `civic-ledger bench http`: the system as its users see it. The real
//! server (this binary's `serve --demo`, in a process of its own, on a
//! scratch database), driven over HTTP by many keep-alive connections for a
//! bounded time, next to baselines measured in the same run: `GET
//! /healthz`, a trivial authenticated GraphQL query over the same stack,
//! and raw one-row-INSERT commits from as many connections on the same
//! PostgreSQL. Reads are measured at each history size asked for; the
//! write phases grow the history between them.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde::Serialize;
use serde_json::{json, Value};
use store::baseline;
use uuid::Uuid;

use crate::demo;
use app::database::Database;

#[derive(clap::Args, Debug)]
pub struct HttpBenchArgs {
    /// Print one JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Keep-alive connections each measure drives at once.
    #[arg(long, default_value_t = 64)]
    pub connections: usize,
    /// How long each measure runs, seconds.
    #[arg(long, default_value_t = 5)]
    pub seconds: u64,
    /// Events in the demo community at which the reads are measured; the
    /// history is grown by filing reports until it reaches each.
    #[arg(long, value_delimiter = ',', default_value = "5000,30000")]
    pub sizes: Vec<i64>,
    /// Signed-in residents filing reports (each its own token).
    #[arg(long, default_value_t = 64)]
    pub residents: usize,
    /// After the sizes above, the history is filled straight into the log
    /// (reports submitted and accepted, each earning its reporter points,
    /// across the demo's grids) up to this many events, the read models
    /// catch up, and the reads are measured again; 0 skips it.
    #[arg(long, default_value_t = 1_000_000)]
    pub fill_to: i64,
}

/// One measure: requests answered, their rate and latencies.
#[derive(Clone, Debug, Serialize)]
pub struct Measure {
    pub name: String,
    pub requests: usize,
    pub errors: usize,
    pub per_second: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    /// Against the baseline this measure is judged by.
    pub ratio: Option<f64>,
    /// That baseline's rate, measured in the same phase, right before:
    /// the machine's speed drifts over a run, so a ratio compares the
    /// measure with a baseline taken under the same conditions.
    pub baseline_per_second: Option<f64>,
    /// The events in the community when the measure ran.
    pub history_events: i64,
    /// The largest projection lag seen while it ran (write phases).
    pub projection_lag_max: Option<i64>,
    /// Which read model (or `earning`) was that far behind.
    pub projection_lagging: Option<String>,
    /// The server's resident memory after it, in MiB.
    pub server_rss_mib: f64,
    /// Transactions the server committed events in while it ran, per
    /// request: below one where a community's batch carried several
    /// requests' appends.
    pub write_transactions_per_request: f64,
}

#[derive(Debug, Serialize)]
pub struct HttpBenchReport {
    pub connections: usize,
    pub seconds: u64,
    pub healthz: Measure,
    pub trivial_query: Measure,
    pub raw_commits: Measure,
    pub measures: Vec<Measure>,
    pub postgres_version: String,
}

/// What a connection sends next: a path and, for POST, a GraphQL body;
/// `None` when it has nothing more to send.
type NextRequest =
    Arc<dyn Fn(usize, usize) -> Option<(String, Option<(String, Value)>)> + Send + Sync>;

pub async fn run(database: &Database, args: HttpBenchArgs) -> anyhow::Result<()> {
    let json = args.json;
    crate::in_scratch_database(
        database,
        json,
        |pg_config| async move { run_http_bench(&pg_config, &args).await },
        print_table,
    )
    .await
}

fn print_table(report: &HttpBenchReport) {
    println!(
        "{} connections, {} s per measure ({})",
        report.connections, report.seconds, report.postgres_version
    );
    println!(
        "{:<38} {:>9} {:>7} {:>10} {:>8} {:>8} {:>7} {:>8} {:>18} {:>7} {:>7}",
        "measure",
        "requests",
        "errors",
        "per s",
        "p50 ms",
        "p99 ms",
        "ratio",
        "events",
        "lag max",
        "RSS MiB",
        "tx/req"
    );
    let all = [&report.healthz, &report.trivial_query, &report.raw_commits]
        .into_iter()
        .chain(report.measures.iter());
    for m in all {
        println!(
            "{:<38} {:>9} {:>7} {:>10.0} {:>8.1} {:>8.1} {:>7} {:>8} {:>18} {:>7.0} {:>7.3}",
            m.name,
            m.requests,
            m.errors,
            m.per_second,
            m.p50_ms,
            m.p99_ms,
            m.ratio.map_or("-".to_string(), |r| format!("{r:.3}")),
            m.history_events,
            m.projection_lag_max
                .map_or("-".to_string(), |l| match &m.projection_lagging {
                    Some(name) => format!("{l} {name}"),
                    None => l.to_string(),
                }),
            m.server_rss_mib,
            m.write_transactions_per_request,
        );
    }
}

/// The server under test, in its own process; stopped when dropped.
pub(crate) struct Server {
    child: Child,
    pub(crate) base: String,
    data_dir: PathBuf,
    _temp: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    pub(crate) fn start(pg_config: &store::tokio_postgres::Config) -> anyhow::Result<Server> {
        let temp = tempfile::tempdir()?;
        let data_dir = temp.path().to_path_buf();
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let listen = format!("127.0.0.1:{port}");
        let limits = [
            "ANONYMOUS_BURST",
            "ANONYMOUS_PER_MINUTE",
            "ANONYMOUS_COMMUNITY_BURST",
            "ANONYMOUS_COMMUNITY_PER_MINUTE",
            "MEMBER_BURST",
            "MEMBER_PER_MINUTE",
        ];
        let mut command = Command::new(std::env::current_exe()?);
        command
            .arg("--data-dir")
            .arg(&data_dir)
            .arg("--database-url")
            .arg(key_value_url(pg_config))
            .args(["serve", "--demo", "--listen", &listen])
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        // The load is many callers; per-caller limits must not decide it.
        for limit in limits {
            command.env(format!("CIVIC_LEDGER_LIMITS_{limit}"), "1000000");
        }
        let child = command.spawn().context("could not start the server")?;
        Ok(Server {
            child,
            base: format!("http://{listen}"),
            data_dir,
            _temp: temp,
        })
    }

    pub(crate) async fn ready(&mut self, client: &reqwest::Client) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(180);
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait()? {
                bail!("the server exited: {status}");
            }
            let ready = client
                .get(format!("{}/readyz", self.base))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            if ready {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        bail!("the server was not ready in 180 s")
    }

    fn token(&self, role: &str, subject: Uuid) -> anyhow::Result<String> {
        self.token_in(demo::COMMUNITY, role, subject)
    }

    fn token_in(&self, community: Uuid, role: &str, subject: Uuid) -> anyhow::Result<String> {
        let issued = Command::new(std::env::current_exe()?)
            .arg("--data-dir")
            .arg(&self.data_dir)
            .args(["token", "issue", "--role", role])
            .args(["--subject", &subject.to_string()])
            .args(["--community", &community.to_string()])
            .output()?;
        if !issued.status.success() {
            bail!("token issue: {}", String::from_utf8_lossy(&issued.stderr));
        }
        Ok(String::from_utf8(issued.stdout)?.trim().to_string())
    }

    fn rss_mib(&self) -> f64 {
        rss_mib(self.child.id())
    }
}

/// The resident memory of process `pid`, in MiB (0 where unknown).
fn rss_mib(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|line| line.starts_with("VmRSS:"))
                .and_then(|line| line.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

/// A connection string the server's `--database-url` takes, from a
/// configuration (a socket directory or a host).
fn key_value_url(config: &store::tokio_postgres::Config) -> String {
    use store::tokio_postgres::config::Host;
    let host = match config.get_hosts().first() {
        Some(Host::Tcp(host)) => host.clone(),
        Some(Host::Unix(path)) => path.display().to_string(),
        None => "localhost".to_string(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let user = config.get_user().unwrap_or("postgres");
    let dbname = config.get_dbname().unwrap_or("postgres");
    format!("host={host} port={port} user={user} dbname={dbname}")
}

/// What a load generator does with the answers it gets.
#[derive(Clone, Copy)]
enum Answers {
    /// Checks each for GraphQL errors without building it as a tree, as a
    /// client that reads what it asked for does on its own machine; a load
    /// generator that built and kept every answer spent more of the
    /// machine's two cores than the server did on large answers.
    Checked,
    /// Keeps each (parsed) for the caller, e.g. the ids of filed reports.
    Kept,
}

/// Only the member of an answer that says it failed.
#[derive(serde::Deserialize)]
struct Failed {
    errors: Option<serde::de::IgnoredAny>,
}

/// Drives `next` from `connections` keep-alive connections for `seconds`.
async fn drive(
    name: &str,
    base: &str,
    token_of: Arc<dyn Fn(usize) -> Option<String> + Send + Sync>,
    connections: usize,
    seconds: u64,
    next: NextRequest,
    keep: Answers,
) -> anyhow::Result<(Measure, Vec<Value>)> {
    eprintln!("bench: measuring {name}");
    let transactions_before = write_transactions(base).await?;
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let tasks: Vec<_> = (0..connections)
        .map(|connection| {
            let base = base.to_string();
            let next = next.clone();
            let token = token_of(connection);
            tokio::spawn(async move {
                let client = reqwest::Client::builder()
                    .pool_max_idle_per_host(1)
                    .build()?;
                let mut latencies = Vec::new();
                let mut answers = Vec::new();
                let mut errors = 0usize;
                let mut n = 0usize;
                while Instant::now() < deadline {
                    let Some((path, body)) = next(connection, n) else {
                        break;
                    };
                    n += 1;
                    let at = Instant::now();
                    let mut request = match &body {
                        Some(_) => client.post(format!("{base}{path}")),
                        None => client.get(format!("{base}{path}")),
                    };
                    if let Some(token) = &token {
                        request = request.bearer_auth(token);
                    }
                    if let Some((query, variables)) = &body {
                        request = request.json(&json!({"query": query, "variables": variables}));
                    }
                    let answered = match request.send().await {
                        Ok(response) if response.status().is_success() => {
                            let bytes = response.bytes().await.unwrap_or_default();
                            match (&body, keep) {
                                (None, _) => Some(None),
                                (Some(_), Answers::Checked) => {
                                    serde_json::from_slice::<Failed>(&bytes)
                                        .ok()
                                        .filter(|answer| answer.errors.is_none())
                                        .map(|_| None)
                                }
                                (Some(_), Answers::Kept) => serde_json::from_slice::<Value>(&bytes)
                                    .ok()
                                    .filter(|value| value.get("errors").is_none())
                                    .map(Some),
                            }
                        }
                        _ => None,
                    };
                    latencies.push(at.elapsed());
                    match answered {
                        Some(Some(value)) => answers.push(value),
                        Some(None) => {}
                        None => errors += 1,
                    }
                }
                anyhow::Ok((latencies, answers, errors))
            })
        })
        .collect();
    let mut latencies = Vec::new();
    let mut answers = Vec::new();
    let mut errors = 0;
    for task in tasks {
        let (l, a, e) = task.await??;
        latencies.extend(l);
        answers.extend(a);
        errors += e;
    }
    let elapsed = started.elapsed();
    eprintln!("bench: measured {name}");
    let measured = measure(name, &mut latencies, errors, elapsed);
    let measured = with_transactions(measured, base, transactions_before).await?;
    Ok((measured, answers))
}

/// The measure with the transactions that wrote events since the server
/// counted `before`, per request.
async fn with_transactions(
    mut measured: Measure,
    base: &str,
    before: u64,
) -> anyhow::Result<Measure> {
    let transactions = write_transactions(base).await? - before;
    measured.write_transactions_per_request = transactions as f64 / measured.requests.max(1) as f64;
    Ok(measured)
}

/// The server's count of the transactions that wrote events, from its
/// metrics.
async fn write_transactions(base: &str) -> anyhow::Result<u64> {
    const COUNTER: &str = "civic_ledger_write_transactions_total ";
    let text = reqwest::get(format!("{base}/metrics"))
        .await?
        .text()
        .await?;
    text.lines()
        .find_map(|line| line.strip_prefix(COUNTER))
        .and_then(|count| count.trim().parse().ok())
        .context("the server's metrics lack its write transactions")
}

fn measure(name: &str, latencies: &mut [Duration], errors: usize, elapsed: Duration) -> Measure {
    latencies.sort();
    let at = |q: f64| {
        latencies
            .get(((latencies.len() as f64 * q) as usize).min(latencies.len().saturating_sub(1)))
            .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
    };
    let answered = latencies.len() - errors.min(latencies.len());
    Measure {
        name: name.to_string(),
        requests: latencies.len(),
        errors,
        per_second: answered as f64 / elapsed.as_secs_f64(),
        p50_ms: at(0.50),
        p99_ms: at(0.99),
        ratio: None,
        baseline_per_second: None,
        history_events: 0,
        projection_lag_max: None,
        projection_lagging: None,
        server_rss_mib: 0.0,
        write_transactions_per_request: 0.0,
    }
}

impl Measure {
    /// Judges this measure by a baseline's rate from the same phase.
    fn judge_by(&mut self, baseline_per_second: f64) {
        self.ratio = Some(self.per_second / baseline_per_second);
        self.baseline_per_second = Some(baseline_per_second);
    }
}

/// Raw one-row-INSERT commits from `connections` connections for
/// `seconds`: the commit ceiling of the same PostgreSQL.
async fn raw_commits(
    pg_config: &store::tokio_postgres::Config,
    connections: usize,
    seconds: u64,
) -> anyhow::Result<Measure> {
    let positions = Arc::new(AtomicI64::new(0));
    let community = Uuid::new_v4();
    let mut writers = Vec::with_capacity(connections);
    for _ in 0..connections {
        writers.push(baseline::RawWriter::connect(pg_config).await?);
    }
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let tasks: Vec<_> = writers
        .into_iter()
        .map(|writer| {
            let positions = positions.clone();
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                while Instant::now() < deadline {
                    let position = positions.fetch_add(1, Ordering::Relaxed) + 1;
                    let at = Instant::now();
                    let payload = json!({"n": position});
                    writer
                        .insert(community, "raw", position, position, vec![payload])
                        .await?;
                    latencies.push(at.elapsed());
                }
                anyhow::Ok(latencies)
            })
        })
        .collect();
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await??);
    }
    Ok(measure(
        "raw one-row INSERT commits",
        &mut latencies,
        0,
        started.elapsed(),
    ))
}

/// The largest projection lag seen while `running` is set, polled, and
/// the projection that was that far behind.
fn watch_lag(
    base: String,
    admin: String,
    running: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<(i64, Option<String>)> {
    watch_lag_in(base, vec![(demo::COMMUNITY, admin)], running)
}

/// [`watch_lag`] over several communities, each with its admin's token:
/// the largest lag of any read model in any of them.
fn watch_lag_in(
    base: String,
    watched: Vec<(Uuid, String)>,
    running: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<(i64, Option<String>)> {
    tokio::spawn(async move {
        let client = reqwest::Client::new();
        let mut most = (0, None);
        while running.load(Ordering::Relaxed) {
            for (community, admin) in &watched {
                if let Ok((lag, name)) = lagging_most_in(&client, &base, *community, admin).await {
                    if lag > most.0 {
                        most = (lag, name);
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        most
    })
}

async fn graphql(
    client: &reqwest::Client,
    base: &str,
    token: &str,
    query: &str,
    variables: Value,
) -> anyhow::Result<Value> {
    let answer: Value = client
        .post(format!("{base}/graphql"))
        .bearer_auth(token)
        .json(&json!({"query": query, "variables": variables}))
        .send()
        .await?
        .json()
        .await?;
    if let Some(errors) = answer.get("errors") {
        bail!("{query}: {errors}");
    }
    Ok(answer["data"].clone())
}

/// Waits (up to five minutes) until every read model has caught up.
async fn catch_up(client: &reqwest::Client, base: &str, admin: &str) -> anyhow::Result<()> {
    catch_up_in(
        client,
        base,
        demo::COMMUNITY,
        admin,
        Duration::from_secs(300),
    )
    .await
}

/// Waits until the demo community and every community of the spread
/// filing (with its admin's token) have been folded.
async fn catch_up_spread(
    client: &reqwest::Client,
    base: &str,
    admin: &str,
    communities: &[(Uuid, String)],
) -> anyhow::Result<()> {
    catch_up(client, base, admin).await?;
    for (community, token) in communities {
        catch_up_in(client, base, *community, token, Duration::from_secs(300)).await?;
    }
    Ok(())
}

/// Waits until every read model (and the earning process) has folded
/// `community`'s log, or `limit` has passed.
async fn catch_up_in(
    client: &reqwest::Client,
    base: &str,
    community: Uuid,
    admin: &str,
    limit: Duration,
) -> anyhow::Result<()> {
    let started = Instant::now();
    while lagging_most_in(client, base, community, admin).await?.0 > 0 && started.elapsed() < limit
    {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Ok(())
}

/// The most any read model (or the earning process) is behind the head
/// of `community`, and which one it is.
async fn lagging_most_in(
    client: &reqwest::Client,
    base: &str,
    community: Uuid,
    admin: &str,
) -> anyhow::Result<(i64, Option<String>)> {
    let data = graphql(
        client,
        base,
        admin,
        "query($c: UUID!) { projectionLag(communityId: $c) { name lag } }",
        json!({"c": community}),
    )
    .await?;
    let rows = data["projectionLag"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    Ok(rows
        .iter()
        .filter_map(|row| Some((row["lag"].as_i64()?, row["name"].as_str()?.to_string())))
        .max_by_key(|(lag, _)| *lag)
        .map_or((0, None), |(lag, name)| (lag, Some(name))))
}

async fn history_events(client: &reqwest::Client, base: &str, admin: &str) -> anyhow::Result<i64> {
    let data = graphql(
        client,
        base,
        admin,
        "query($c: UUID!) { projectionLag(communityId: $c) { head } }",
        json!({"c": demo::COMMUNITY}),
    )
    .await?;
    Ok(data["projectionLag"][0]["head"].as_i64().unwrap_or(0))
}

const SUBMIT: &str = "mutation($c: UUID!, $r: ReportInput!) { submitReport(communityId: $c, report: $r) { reportId position } }";
const ACCEPT: &str =
    "mutation($c: UUID!, $r: UUID!) { acceptReport(communityId: $c, reportId: $r) { position } }";
const PLACE: &str = "mutation($c: UUID!, $i: PlaceRedemptionInput!) { placeRedemption(communityId: $c, input: $i) { redemptionId position } }";
const COMPLETE: &str = "mutation($c: UUID!, $r: UUID!) { completeRedemption(communityId: $c, redemptionId: $r) { position } }";
const FRESH_WALLET: &str = "query($c: UUID!, $p: UUID!, $at: Int) { wallet(communityId: $c, residentId: $p, atLeast: $at) { balance held } }";

/// Funds the budget, grants each resident enough points and offers gifts
/// with stock for every redemption the phase can make; the gifts' ids.
async fn stock_the_counter(
    client: &reqwest::Client,
    base: &str,
    admin: &str,
    residents: &[Uuid],
) -> anyhow::Result<Vec<String>> {
    let c = demo::COMMUNITY;
    let per_resident = 100_000;
    let fund = "mutation($c: UUID!, $a: String!) { fundBudget(communityId: $c, amount: $a, note: \"柜台压测 counter load\") { position } }";
    let total = per_resident * residents.len() as i64;
    graphql(
        client,
        base,
        admin,
        fund,
        json!({"c": c, "a": total.to_string()}),
    )
    .await?;
    let grant = "mutation($c: UUID!, $p: UUID!, $a: String!) { grantPoints(communityId: $c, residentId: $p, amount: $a, reason: \"志愿服务 volunteering\") { position } }";
    for resident in residents {
        graphql(
            client,
            base,
            admin,
            grant,
            json!({"c": c, "p": resident, "a": per_resident.to_string()}),
        )
        .await?;
    }
    // Gifts enough that the counter's pairs are not all queued on one
    // gift's stock (a gift's stream takes one redemption at a time).
    let offer = "mutation($c: UUID!, $centre: UUID!, $name: String!) { offerGift(communityId: $c, centreId: $centre, name: $name, price: \"1\", stock: 1000000) { id } }";
    let mut gifts = Vec::with_capacity(GIFTS);
    for n in 0..GIFTS {
        let name = format!("环保袋 tote bag {n}");
        let variables = json!({"c": c, "centre": demo::CENTRE, "name": name});
        let offered = graphql(client, base, admin, offer, variables).await?;
        let gift = offered["offerGift"]["id"]
            .as_str()
            .context("offerGift gave no id")?;
        gifts.push(gift.to_string());
    }
    Ok(gifts)
}

/// Gifts the counter phase offers; connection `c` redeems gift `c % GIFTS`.
const GIFTS: usize = 16;

/// Place + complete pairs at the counter, one resident per connection;
/// with `fresh_reads`, each pair is followed (as the counter shows it) by
/// the resident's wallet read with `atLeast` the completion's position:
/// the pairs' measure and that read's.
async fn redemption_pairs(
    base: &str,
    clerk: &str,
    residents: Arc<Vec<Uuid>>,
    gifts: &[String],
    (connections, seconds): (usize, u64),
    fresh_reads: bool,
) -> anyhow::Result<(Measure, Measure)> {
    eprintln!("bench: measuring placeRedemption + completeRedemption");
    let transactions_before = write_transactions(base).await?;
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let tasks: Vec<_> = (0..connections)
        .map(|connection| {
            let (base, clerk) = (base.to_string(), clerk.to_string());
            let gift = gifts[connection % gifts.len()].clone();
            let resident = residents[connection % residents.len()];
            tokio::spawn(async move {
                let client = reqwest::Client::builder()
                    .pool_max_idle_per_host(1)
                    .build()?;
                let (mut pairs, mut reads) = (Vec::new(), Vec::new());
                let (mut errors, mut read_errors) = (0usize, 0usize);
                let c = demo::COMMUNITY;
                while Instant::now() < deadline {
                    let at = Instant::now();
                    let key = format!("counter-{}", Uuid::new_v4().simple());
                    let input =
                        json!({"residentId": resident, "giftId": gift, "idempotencyKey": key});
                    let pair = async {
                        let placed =
                            graphql(&client, &base, &clerk, PLACE, json!({"c": c, "i": input}))
                                .await?;
                        let redemption = placed["placeRedemption"]["redemptionId"].clone();
                        let done = graphql(
                            &client,
                            &base,
                            &clerk,
                            COMPLETE,
                            json!({"c": c, "r": redemption}),
                        )
                        .await?;
                        anyhow::Ok(done["completeRedemption"]["position"].as_i64())
                    };
                    let position = pair.await;
                    pairs.push(at.elapsed());
                    let Ok(Some(position)) = position else {
                        errors += 1;
                        continue;
                    };
                    if !fresh_reads {
                        continue;
                    }
                    let at = Instant::now();
                    let read = graphql(
                        &client,
                        &base,
                        &clerk,
                        FRESH_WALLET,
                        json!({"c": c, "p": resident, "at": position}),
                    )
                    .await;
                    reads.push(at.elapsed());
                    read_errors += usize::from(read.is_err());
                }
                anyhow::Ok((pairs, errors, reads, read_errors))
            })
        })
        .collect();
    let (mut pairs, mut reads) = (Vec::new(), Vec::new());
    let (mut errors, mut read_errors) = (0, 0);
    for task in tasks {
        let (p, e, r, re) = task.await??;
        pairs.extend(p);
        reads.extend(r);
        errors += e;
        read_errors += re;
    }
    let elapsed = started.elapsed();
    eprintln!("bench: measured placeRedemption + completeRedemption");
    let measured = measure(
        "placeRedemption + completeRedemption",
        &mut pairs,
        errors,
        elapsed,
    );
    Ok((
        with_transactions(measured, base, transactions_before).await?,
        measure(
            "wallet atLeast the completion",
            &mut reads,
            read_errors,
            elapsed,
        ),
    ))
}

/// The one-community filings the spread filing is judged by.
const ONE_BEFORE_SPREAD: &str = "submitReport (residents), before the spread";
const ONE_AFTER_SPREAD: &str = "submitReport (residents), after the spread";

const CATEGORIES: [&str; 3] = ["FLOATING-GARBAGE", "SEWAGE-OUTFALL", "ILLEGAL-BUILDING"];

fn submit_request(connection: usize, n: usize) -> Option<(String, Option<(String, Value)>)> {
    submit_in(demo::COMMUNITY, connection, n)
}

fn submit_in(
    community: Uuid,
    connection: usize,
    n: usize,
) -> Option<(String, Option<(String, Value)>)> {
    let site = demo::site_code(((connection + n) % 20 + 1) as u128);
    let category = CATEGORIES[n % CATEGORIES.len()];
    let report = json!({"siteCode": site, "category": category,
        "text": format!("河面有漂浮垃圾 floating garbage {connection}-{n}")});
    Some((
        "/graphql".to_string(),
        Some((SUBMIT.to_string(), json!({"c": community, "r": report}))),
    ))
}

/// Communities beside the demo one, each with a grid, the demo's site
/// codes and its categories, and residents of its own: the same filing
/// load spread over them. The communities and one resident token per
/// connection (of the connection's community).
async fn more_communities(
    server: &Server,
    client: &reqwest::Client,
    count: usize,
    connections: usize,
) -> anyhow::Result<(Vec<Uuid>, Vec<String>)> {
    let mut communities = vec![demo::COMMUNITY];
    for k in 1..count {
        let community = Uuid::from_u128(demo::COMMUNITY.as_u128() + 0x1_0000 * k as u128);
        let admin = server.token_in(community, "admin", demo::ADMIN)?;
        let c = json!({"c": community});
        let base = &server.base;
        graphql(client, base, &admin, "mutation($c: UUID!) { registerCommunity(communityId: $c, name: \"长流河第二社区 neighbour\") { position } }", c.clone()).await?;
        let grid = graphql(
            client,
            base,
            &admin,
            "mutation($c: UUID!) { addGrid(communityId: $c, name: \"一网格\") { id } }",
            c.clone(),
        )
        .await?;
        let grid = grid["addGrid"]["id"].clone();
        for n in 1..=20u128 {
            let site = json!({"name": format!("河岸 {n}"), "kind": "RIVER_BANK",
                "code": demo::site_code(n), "gridId": grid});
            graphql(
                client,
                base,
                &admin,
                "mutation($c: UUID!, $s: SiteInput!) { addSite(communityId: $c, site: $s) { id } }",
                json!({"c": community, "s": site}),
            )
            .await?;
        }
        for code in CATEGORIES {
            let category = json!({"code": code, "name": code, "firstResponseHours": 4,
                "resolutionHours": 48, "acceptedReportPoints": "5"});
            graphql(client, base, &admin, "mutation($c: UUID!, $k: CategoryInput!) { defineCategory(communityId: $c, category: $k) { id } }", json!({"c": community, "k": category})).await?;
        }
        communities.push(community);
    }
    let mut tokens = Vec::with_capacity(connections);
    for connection in 0..connections {
        let community = communities[connection % communities.len()];
        tokens.push(server.token_in(community, "citizen", Uuid::new_v4())?);
    }
    Ok((communities, tokens))
}

async fn run_http_bench(
    pg_config: &store::tokio_postgres::Config,
    args: &HttpBenchArgs,
) -> anyhow::Result<HttpBenchReport> {
    store::migrate::run_migrations(pg_config).await?;
    let postgres_version = baseline::create_raw_table(pg_config).await?;
    eprintln!("bench: starting the server on the demo community");
    let mut server = Server::start(pg_config)?;
    let client = reqwest::Client::new();
    server.ready(&client).await?;
    let admin = server.token("admin", demo::ADMIN)?;
    let mut residents = Vec::with_capacity(args.residents);
    for _ in 0..args.residents {
        residents.push(server.token("citizen", Uuid::new_v4())?);
    }
    let residents = Arc::new(residents);
    let clerk = server.token("clerk", demo::CLERK)?;
    let pair_residents: Arc<Vec<Uuid>> =
        Arc::new((0..args.connections).map(|_| Uuid::new_v4()).collect());
    let base = server.base.clone();
    let (connections, seconds) = (args.connections, args.seconds);
    let of_admin = {
        let admin = admin.clone();
        Arc::new(move |_| Some(admin.clone())) as Arc<dyn Fn(usize) -> Option<String> + Send + Sync>
    };
    let of_resident = {
        let residents = residents.clone();
        Arc::new(move |c: usize| Some(residents[c % residents.len()].clone()))
            as Arc<dyn Fn(usize) -> Option<String> + Send + Sync>
    };
    let nobody = Arc::new(|_| None) as Arc<dyn Fn(usize) -> Option<String> + Send + Sync>;

    eprintln!("bench: baselines");
    let healthz: NextRequest = Arc::new(|_, _| Some(("/healthz".to_string(), None)));
    let (mut healthz, _) = drive(
        "GET /healthz",
        &base,
        nobody,
        connections,
        seconds,
        healthz,
        Answers::Checked,
    )
    .await?;
    healthz.server_rss_mib = server.rss_mib();
    let trivial: NextRequest = Arc::new(|_, _| {
        let q = "{ viewer { signedIn } }".to_string();
        Some(("/graphql".to_string(), Some((q, json!({})))))
    });
    let (mut trivial, _) = drive(
        "trivial authenticated query",
        &base,
        of_resident.clone(),
        connections,
        seconds,
        trivial,
        Answers::Checked,
    )
    .await?;
    trivial.server_rss_mib = server.rss_mib();
    let raw = raw_commits(pg_config, connections, seconds).await?;

    // The trivial query again, right before the reads it judges.
    let trivial_now = || async {
        let request: NextRequest = Arc::new(|_, _| {
            let q = "{ viewer { signedIn } }".to_string();
            Some(("/graphql".to_string(), Some((q, json!({})))))
        });
        let name = "trivial authenticated query";
        let (measure, _) = drive(
            name,
            &base,
            of_resident.clone(),
            connections,
            seconds,
            request,
            Answers::Checked,
        )
        .await?;
        anyhow::Ok(measure)
    };
    // The reads, each next to the trivial query, at a history size.
    let reads_at = |events, trivial: Measure| {
        let (base, of_admin, of_resident, server) = (&base, &of_admin, &of_resident, &server);
        async move {
            measure_reads(
                base,
                of_admin,
                of_resident,
                connections,
                seconds,
                &trivial,
                events,
                server,
            )
            .await
        }
    };
    let mut measures = Vec::new();
    let mut sizes = args.sizes.clone();
    sizes.sort_unstable();
    for (phase, size) in sizes.iter().enumerate() {
        // The commit ceiling again, right before the writes it judges.
        let ceiling = match phase {
            0 => raw.per_second,
            _ => {
                raw_commits(pg_config, connections, seconds)
                    .await?
                    .per_second
            }
        };
        // Writes: reports filed by residents, then accepted by the admin,
        // from a caught-up start, as each write measure starts.
        catch_up(&client, &base, &admin).await?;
        let running = Arc::new(AtomicBool::new(true));
        let lag = watch_lag(base.clone(), admin.clone(), running.clone());
        let (mut submit, answers) = drive(
            "submitReport (residents)",
            &base,
            of_resident.clone(),
            connections,
            seconds,
            Arc::new(submit_request),
            Answers::Kept,
        )
        .await?;
        running.store(false, Ordering::Relaxed);
        let (lag_max, lagging) = lag.await?;
        submit.projection_lag_max = Some(lag_max);
        submit.projection_lagging = lagging;
        submit.judge_by(ceiling);
        submit.history_events = history_events(&client, &base, &admin).await?;
        submit.server_rss_mib = server.rss_mib();
        let ids: Arc<Vec<String>> = Arc::new(
            answers
                .iter()
                .filter_map(|a| {
                    a["data"]["submitReport"]["reportId"]
                        .as_str()
                        .map(String::from)
                })
                .collect(),
        );
        let next_id = Arc::new(AtomicUsize::new(0));
        let accept: NextRequest = {
            let ids = ids.clone();
            // Each filed report is accepted once; a connection stops when
            // none is left.
            Arc::new(move |_, _| {
                let id = ids.get(next_id.fetch_add(1, Ordering::Relaxed))?.clone();
                Some((
                    "/graphql".to_string(),
                    Some((ACCEPT.to_string(), json!({"c": demo::COMMUNITY, "r": id}))),
                ))
            })
        };
        let running = Arc::new(AtomicBool::new(true));
        let lag = watch_lag(base.clone(), admin.clone(), running.clone());
        let (mut accepted, _) = drive(
            "acceptReport (admin)",
            &base,
            of_admin.clone(),
            connections,
            seconds,
            accept,
            Answers::Checked,
        )
        .await?;
        running.store(false, Ordering::Relaxed);
        let (lag_max, lagging) = lag.await?;
        accepted.projection_lag_max = Some(lag_max);
        accepted.projection_lagging = lagging;
        accepted.judge_by(ceiling);
        accepted.history_events = history_events(&client, &base, &admin).await?;
        accepted.server_rss_mib = server.rss_mib();
        measures.push(submit);
        measures.push(accepted);

        if phase == 0 {
            // The same filing load, spread over eight communities.
            let (communities, tokens) = more_communities(&server, &client, 8, connections).await?;
            let watched = communities
                .iter()
                .map(|c| Ok((*c, server.token_in(*c, "admin", demo::ADMIN)?)))
                .collect::<anyhow::Result<Vec<_>>>()?;
            // From a caught-up start, as the filing in one community: the
            // acceptances just measured and the new communities' set-up
            // folded first, not during this measure.
            catch_up_spread(&client, &base, &admin, &watched).await?;
            let communities = Arc::new(communities);
            let tokens = Arc::new(tokens);
            let of_spread = Arc::new(move |c: usize| Some(tokens[c].clone()))
                as Arc<dyn Fn(usize) -> Option<String> + Send + Sync>;
            let spread: NextRequest = Arc::new(move |connection, n| {
                submit_in(communities[connection % communities.len()], connection, n)
            });
            // The spread filing is judged by the one-community filing
            // measured right before and right after it: the machine's
            // speed drifts over a run by more than the difference sought.
            let one_filing = |name: &'static str| {
                let (base, of_resident) = (&base, of_resident.clone());
                let (client, admin, server) = (&client, &admin, &server);
                async move {
                    let next: NextRequest = Arc::new(submit_request);
                    let checked = Answers::Checked;
                    let (mut one, _) =
                        drive(name, base, of_resident, connections, seconds, next, checked).await?;
                    one.judge_by(ceiling);
                    one.history_events = history_events(client, base, admin).await?;
                    one.server_rss_mib = server.rss_mib();
                    anyhow::Ok(one)
                }
            };
            let before = one_filing(ONE_BEFORE_SPREAD).await?;
            catch_up(&client, &base, &admin).await?;
            let running = Arc::new(AtomicBool::new(true));
            let lag = watch_lag_in(base.clone(), watched.clone(), running.clone());
            let (mut spread, _) = drive(
                "submitReport over 8 communities",
                &base,
                of_spread,
                connections,
                seconds,
                spread,
                Answers::Checked,
            )
            .await?;
            running.store(false, Ordering::Relaxed);
            let (lag_max, lagging) = lag.await?;
            spread.projection_lag_max = Some(lag_max);
            spread.projection_lagging = lagging;
            spread.history_events = history_events(&client, &base, &admin).await?;
            spread.server_rss_mib = server.rss_mib();
            catch_up_spread(&client, &base, &admin, &watched).await?;
            let after = one_filing(ONE_AFTER_SPREAD).await?;
            spread.judge_by((before.per_second + after.per_second) / 2.0);
            measures.extend([before, spread, after]);
        }

        // The counter: place + complete pairs alone, then again each
        // followed by the wallet read fresh (`atLeast` the completion),
        // from a caught-up start.
        let gifts = stock_the_counter(&client, &base, &admin, &pair_residents).await?;
        catch_up(&client, &base, &admin).await?;
        let running = Arc::new(AtomicBool::new(true));
        let lag = watch_lag(base.clone(), admin.clone(), running.clone());
        let (mut pairs, _) = redemption_pairs(
            &base,
            &clerk,
            pair_residents.clone(),
            &gifts,
            (connections, seconds),
            false,
        )
        .await?;
        running.store(false, Ordering::Relaxed);
        let (lag_max, lagging) = lag.await?;
        pairs.projection_lag_max = Some(lag_max);
        pairs.projection_lagging = lagging;
        pairs.judge_by(ceiling);
        pairs.history_events = history_events(&client, &base, &admin).await?;
        pairs.server_rss_mib = server.rss_mib();
        catch_up(&client, &base, &admin).await?;
        let running = Arc::new(AtomicBool::new(true));
        let lag = watch_lag(base.clone(), admin.clone(), running.clone());
        let (_, mut fresh) = redemption_pairs(
            &base,
            &clerk,
            pair_residents.clone(),
            &gifts,
            (connections, seconds),
            true,
        )
        .await?;
        running.store(false, Ordering::Relaxed);
        let (lag_max, lagging) = lag.await?;
        fresh.projection_lag_max = Some(lag_max);
        fresh.projection_lagging = lagging;
        fresh.history_events = history_events(&client, &base, &admin).await?;
        fresh.server_rss_mib = server.rss_mib();
        measures.push(pairs);
        measures.push(fresh);

        // Grow the history to this phase's size.
        loop {
            let events = history_events(&client, &base, &admin).await?;
            if events >= *size {
                break;
            }
            eprintln!("bench: growing the history: {events} of {size} events");
            drive(
                "grow",
                &base,
                of_resident.clone(),
                connections,
                seconds.max(5),
                Arc::new(submit_request),
                Answers::Checked,
            )
            .await?;
        }
        // Let the read models catch up before reading them.
        catch_up(&client, &base, &admin).await?;
        let events = history_events(&client, &base, &admin).await?;
        eprintln!("bench: reads at {events} events (phase {phase})");
        measures.extend(reads_at(events, trivial_now().await?).await?);
    }
    if args.fill_to > 0 {
        let events = history_events(&client, &base, &admin).await?;
        if events < args.fill_to {
            eprintln!(
                "bench: filling the log from {events} to {} events",
                args.fill_to
            );
            fill_log(pg_config, args.fill_to - events).await?;
        }
        let events = history_events(&client, &base, &admin).await?;
        eprintln!("bench: read models catching up");
        catch_up_in(
            &client,
            &base,
            demo::COMMUNITY,
            &admin,
            Duration::from_secs(1_800),
        )
        .await?;
        eprintln!("bench: reads at {events} events (filled)");
        measures.extend(reads_at(events, trivial_now().await?).await?);
    }
    drop(server);
    Ok(HttpBenchReport {
        connections,
        seconds,
        healthz,
        trivial_query: trivial,
        raw_commits: raw,
        measures,
        postgres_version,
    })
}

type TokenOf = Arc<dyn Fn(usize) -> Option<String> + Send + Sync>;

/// The reads, each next to the trivial query, at `events` in the history.
#[allow(clippy::too_many_arguments)]
async fn measure_reads(
    base: &str,
    of_admin: &TokenOf,
    of_resident: &TokenOf,
    connections: usize,
    seconds: u64,
    trivial: &Measure,
    events: i64,
    server: &Server,
) -> anyhow::Result<Vec<Measure>> {
    let mut measures = Vec::new();
    let month = chrono_month();
    let reads: [(&str, String, Value, bool); 5] = [
        (
            "gridLedgers",
            "query($c: UUID!) { gridLedgers(communityId: $c) { gridId open overdue resolvedThisMonth } }".to_string(),
            json!({"c": demo::COMMUNITY}),
            true,
        ),
        (
            "wallet with its first statement page",
            "query($c: UUID!) { wallet(communityId: $c) { balance available statement(first: 20) { edges { node { amount } } } } }".to_string(),
            json!({"c": demo::COMMUNITY}),
            false,
        ),
        (
            "reports(first: 20)",
            "query($c: UUID!) { reports(communityId: $c, first: 20) { edges { node { id state } } } }".to_string(),
            json!({"c": demo::COMMUNITY}),
            false,
        ),
        (
            "leaderboard",
            "query($c: UUID!) { leaderboard(communityId: $c, by: POINTS_EARNED, period: ALL_TIME) { entries { rank } } }".to_string(),
            json!({"c": demo::COMMUNITY}),
            false,
        ),
        (
            "statistics",
            "query($c: UUID!, $m: String!) { statistics(communityId: $c, fromMonth: $m, toMonth: $m) { category month received resolved } }".to_string(),
            json!({"c": demo::COMMUNITY, "m": month}),
            true,
        ),
    ];
    for (name, query, variables, as_admin) in reads {
        let next: NextRequest = Arc::new(move |_, _| {
            Some((
                "/graphql".to_string(),
                Some((query.clone(), variables.clone())),
            ))
        });
        let token = if as_admin {
            of_admin.clone()
        } else {
            of_resident.clone()
        };
        let (mut read, _) = drive(
            name,
            base,
            token,
            connections,
            seconds,
            next,
            Answers::Checked,
        )
        .await?;
        read.judge_by(trivial.per_second);
        read.history_events = events;
        read.server_rss_mib = server.rss_mib();
        measures.push(read);
    }
    Ok(measures)
}

/// Appends `events` more to the demo community straight into the log, in
/// order: reports submitted and accepted across the demo's level 2 grids,
/// each earning a new resident points issued from the budget (four events
/// a report).
async fn fill_log(pg_config: &store::tokio_postgres::Config, events: i64) -> anyhow::Result<()> {
    let store =
        store::EventStore::connect(pg_config.clone(), store::StoreConfig::default()).await?;
    let community = store::CommunityId::new(demo::COMMUNITY);
    let at = domain::values::Timestamp::from_micros(chrono::Utc::now().timestamp_micros());
    let reports = events / 4;
    let per = crate::audit::REPORTS_PER_APPEND;
    let appends = (reports + per - 1) / per;
    let budget = fund_for(&store, community, reports, at).await?;
    crate::append_chunks(&store, appends, move |chunk| {
        let count = per.min(reports - chunk * per);
        let grid_of = |n: i64| demo::level2_grid((n % 4 + 1) as u128);
        crate::audit::reports_request(community, chunk, count, grid_of, budget, at)
    })
    .await
}

/// Funds the budget for `reports` more grants of 5 points; its balance
/// after.
async fn fund_for(
    store: &store::EventStore,
    community: store::CommunityId,
    reports: i64,
    at: domain::values::Timestamp,
) -> anyhow::Result<rust_decimal::Decimal> {
    use domain::values::{Actor, ContentHash, PersonId, Role};
    let amount = rust_decimal::Decimal::from(reports.max(1) * 5);
    let balance = budget_balance(store, community).await? + amount;
    let funded = domain::points::BudgetEvent::BudgetFunded {
        by: Actor {
            person: PersonId(uuid::Uuid::new_v4()),
            role: Role::Admin,
        },
        amount,
        note: ContentHash::parse(&"0".repeat(64))?,
        balance,
        at,
    };
    let mut event = store::NewEvent::new(
        store::EventType::parse("BudgetFunded")?,
        serde_json::to_value(&funded)?,
    );
    event.metadata.insert("actor_role".into(), "bench".into());
    let request = store::AppendRequest::new(community).stream(
        store::StreamId::parse(domain::streams::BUDGET)?,
        store::StreamType::parse(domain::streams::StreamKind::Budget.name())?,
        store::ExpectedVersion::Any,
        vec![event],
    );
    store.append(request).await?;
    Ok(balance)
}

/// The budget's balance after its last event.
async fn budget_balance(
    store: &store::EventStore,
    community: store::CommunityId,
) -> anyhow::Result<rust_decimal::Decimal> {
    let mut balance = rust_decimal::Decimal::ZERO;
    let mut from = 1;
    loop {
        let events = store
            .read_stream(community, domain::streams::BUDGET, from, 1_000)
            .await?;
        let Some(last) = events.last() else {
            return Ok(balance);
        };
        from = last.stream_version + 1;
        balance = match last.decode::<domain::points::BudgetEvent>()? {
            domain::points::BudgetEvent::BudgetFunded { balance, .. }
            | domain::points::BudgetEvent::BudgetIssued { balance, .. } => balance,
        };
    }
}

/// This month as `YYYY-MM`, in UTC (close enough for a read's argument).
fn chrono_month() -> String {
    chrono::Utc::now().format("%Y-%m").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// p50 and p99 are the latencies below which half and 99% of the
    /// requests were answered; errors count as requests, not as answers.
    #[test]
    fn a_measure_takes_its_percentiles_and_rate_from_the_latencies() {
        let mut latencies: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        latencies.reverse();
        let m = measure("m", &mut latencies, 10, Duration::from_secs(2));
        assert_eq!(m.requests, 100);
        assert_eq!(m.p50_ms, 51.0);
        assert_eq!(m.p99_ms, 100.0);
        assert_eq!(m.per_second, 45.0, "90 answered in 2 s");
        let empty = measure("none", &mut [], 0, Duration::from_secs(1));
        assert_eq!((empty.p50_ms, empty.per_second), (0.0, 0.0));
    }

    #[test]
    fn the_servers_database_url_names_a_socket_directory_or_a_host() {
        let socket: store::tokio_postgres::Config =
            "host=/tmp/pg port=5433 user=civic dbname=scratch_1"
                .parse()
                .unwrap();
        assert_eq!(
            key_value_url(&socket),
            "host=/tmp/pg port=5433 user=civic dbname=scratch_1"
        );
        let tcp: store::tokio_postgres::Config = "postgres://postgres@127.0.0.1:5432/scratch_2"
            .parse()
            .unwrap();
        assert_eq!(
            key_value_url(&tcp),
            "host=127.0.0.1 port=5432 user=postgres dbname=scratch_2"
        );
    }
}
