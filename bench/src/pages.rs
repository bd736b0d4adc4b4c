//! `civic-ledger bench pages`: what the pages cost a cheap phone on a bad
//! connection. The real server on the demo community; each page's weight
//! (every byte it needs before photos: it loads nothing else); and the
//! time to first render in headless Chromium on a throttled connection,
//! against a baseline measured alternately in the same run on the same
//! connection: the smallest page the server makes (its "no such site"
//! page), in [`PhoneBrowser`].

use std::time::Duration;

use anyhow::{bail, Context};
use app::database::Database;
use serde::Serialize;
use serde_json::json;

use crate::browser::PhoneBrowser;
use crate::demo;
use crate::http::Server;

#[derive(clap::Args, Debug)]
pub struct PagesBenchArgs {
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
    /// Loads of each page on the throttled connection (the median counts).
    #[arg(long, default_value_t = 7)]
    pub runs: usize,
    /// The connection's round trip, milliseconds.
    #[arg(long, default_value_t = 400)]
    pub latency_ms: u32,
    /// The connection's speed each way, kilobits a second.
    #[arg(long, default_value_t = 400)]
    pub kbits_per_second: u32,
}

#[derive(Serialize)]
pub struct PageWeight {
    pub name: String,
    pub path: String,
    /// Everything the page needs before photos: it is one response.
    pub bytes: usize,
    /// Scripts, styles, fonts or images it would fetch from elsewhere.
    pub external_resources: usize,
}

#[derive(Serialize)]
pub struct FirstRender {
    pub name: String,
    /// First contentful paint after navigation starts, each load.
    pub runs_ms: Vec<f64>,
    pub median_ms: f64,
    /// Against the baseline page's median in the same run.
    pub ratio: Option<f64>,
}

#[derive(Serialize)]
pub struct PagesBenchReport {
    pub weights: Vec<PageWeight>,
    pub latency_ms: u32,
    pub kbits_per_second: u32,
    pub first_render: Vec<FirstRender>,
}

pub async fn run(database: &Database, args: PagesBenchArgs) -> anyhow::Result<()> {
    let json = args.json;
    crate::in_scratch_database(
        database,
        json,
        |pg_config| async move { measure(&pg_config, &args).await },
        print_table,
    )
    .await
}

fn print_table(report: &PagesBenchReport) {
    println!("{:<34} {:>9} {:>9}", "page", "bytes", "external");
    for weight in &report.weights {
        println!(
            "{:<34} {:>9} {:>9}",
            weight.name, weight.bytes, weight.external_resources
        );
    }
    println!(
        "first render at {} ms round trip, {} kbit/s:",
        report.latency_ms, report.kbits_per_second
    );
    println!("{:<34} {:>9} {:>7}", "page", "median ms", "ratio");
    for render in &report.first_render {
        println!(
            "{:<34} {:>9.0} {:>7}",
            render.name,
            render.median_ms,
            render.ratio.map_or("-".into(), |r| format!("{r:.2}"))
        );
    }
}

/// References to anything not on this server: `src`, `href` or `url()`
/// naming another origin.
fn external_resources(html: &str) -> usize {
    [
        "src=\"http",
        "src=\"//",
        "href=\"http",
        "href=\"//",
        "url(http",
        "url(//",
        "@import",
    ]
    .iter()
    .map(|needle| html.matches(needle).count())
    .sum()
}

async fn measure(
    pg_config: &store::tokio_postgres::Config,
    args: &PagesBenchArgs,
) -> anyhow::Result<PagesBenchReport> {
    let mut server = Server::start(pg_config)?;
    let client = reqwest::Client::new();
    server.ready(&client).await?;
    let base = server.base.clone();
    let community = demo::COMMUNITY;
    let site = demo::site_code(3);
    let filed = file_report(&client, &base, &site).await?;
    let pages = [
        ("report page (zh)", format!("/r/{community}/{site}")),
        ("report page (en)", format!("/r/{community}/{site}?lang=en")),
        ("report status", filed),
        ("sign-up", format!("/r/{community}/signup")),
        (
            "baseline: no such site",
            format!("/r/{community}/NO-SUCH-SITE"),
        ),
    ];
    let mut weights = Vec::new();
    for (name, path) in &pages {
        let html = client
            .get(format!("{base}{path}"))
            .send()
            .await?
            .text()
            .await?;
        weights.push(PageWeight {
            name: name.to_string(),
            path: path.clone(),
            bytes: html.len(),
            external_resources: external_resources(&html),
        });
    }
    let browser = PhoneBrowser::start().await?;
    let throttled = throttle(&browser, args.latency_ms, args.kbits_per_second).await;
    let first_render = match throttled {
        Ok(()) => renders(&browser, &base, &pages, args.runs).await,
        Err(error) => Err(error),
    };
    browser.stop().await;
    Ok(PagesBenchReport {
        weights,
        latency_ms: args.latency_ms,
        kbits_per_second: args.kbits_per_second,
        first_render: first_render?,
    })
}

/// Files a report through the page's own form; answers its status page's
/// path.
async fn file_report(client: &reqwest::Client, base: &str, site: &str) -> anyhow::Result<String> {
    let url = format!("{base}/r/{}/{site}", demo::COMMUNITY);
    let key = uuid::Uuid::new_v4().to_string();
    let form = [
        ("key", key.as_str()),
        ("kind", "report"),
        ("category", "DUMPED-RUBBISH"),
        ("text", "桥头有人倒建筑垃圾"),
    ];
    let html = client.post(&url).form(&form).send().await?.text().await?;
    let start = html
        .find("id=\"track\" href=\"")
        .context("filing from the page gave no tracking link")?
        + "id=\"track\" href=\"".len();
    let end = start + html[start..].find('"').context("a whole link")?;
    Ok(html[start..end].replace("&amp;", "&"))
}

/// Each page's first render, loads alternating between the pages so that
/// the machine's drift falls on all of them alike.
async fn renders(
    browser: &PhoneBrowser,
    base: &str,
    pages: &[(&str, String)],
    runs: usize,
) -> anyhow::Result<Vec<FirstRender>> {
    let mut times: Vec<Vec<f64>> = vec![Vec::new(); pages.len()];
    for _ in 0..runs.max(1) {
        for (index, (_, path)) in pages.iter().enumerate() {
            times[index].push(first_render_ms(browser, &format!("{base}{path}")).await?);
        }
    }
    let baseline = crate::median(times.last().expect("a baseline"));
    Ok(pages
        .iter()
        .zip(times)
        .map(|((name, _), runs_ms)| {
            let median_ms = crate::median(&runs_ms);
            FirstRender {
                name: name.to_string(),
                median_ms,
                ratio: (baseline > 0.0).then(|| median_ms / baseline),
                runs_ms,
            }
        })
        .collect())
}

/// Throttles the browser's connection: `latency_ms` each way round,
/// `kbits_per_second` each way.
async fn throttle(
    browser: &PhoneBrowser,
    latency_ms: u32,
    kbits_per_second: u32,
) -> anyhow::Result<()> {
    browser.devtools("Network.enable", json!({})).await?;
    let bytes_per_second = f64::from(kbits_per_second) * 1000.0 / 8.0;
    browser
        .devtools(
            "Network.emulateNetworkConditions",
            json!({"offline": false, "latency": latency_ms,
                "downloadThroughput": bytes_per_second, "uploadThroughput": bytes_per_second}),
        )
        .await
}

/// Loads `url` with an empty cache; the first contentful paint, in
/// milliseconds after the navigation started.
async fn first_render_ms(browser: &PhoneBrowser, url: &str) -> anyhow::Result<f64> {
    browser.client.goto("about:blank").await?;
    browser
        .devtools("Network.clearBrowserCache", json!({}))
        .await?;
    browser.client.goto(url).await?;
    for _ in 0..200 {
        let painted = browser
            .client
            .execute(
                "const p = performance.getEntriesByName('first-contentful-paint')[0]; \
                 return p ? p.startTime : null",
                Vec::new(),
            )
            .await?;
        if let Some(ms) = painted.as_f64() {
            return Ok(ms);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    bail!("{url} never painted")
}
