//! Figures that mean what they say, each computed again here from the
//! fixture's own history.

use serde_json::{json, Value};
use uuid::Uuid;

use crate::app::*;

/// Moves a report through `steps` (mutations as `act` takes them) with
/// the admin's token; the last step's state.
async fn walk(app: &TestApp, f: &Fixture, report: Uuid, steps: &[&str]) -> Value {
    let mut last = Value::Null;
    for step in steps {
        last = act(app, f, &f.admin, step, report).await;
        assert_eq!(code_of(&last), "OK", "{step}: {last}");
    }
    last
}

fn assign(f: &Fixture) -> String {
    format!("assignReport(workerId: \"{}\")", f.worker_id)
}

const RESOLVE: &str = "resolveReport(notes: \"已清理\")";
const REJECT: &str = "rejectReport(reason: {kind: NOT_ACTIONABLE})";

#[tokio::test]
async fn open_means_waiting_for_work_and_resolved_counts_each_report_once() {
    let app = TestApp::spawn_quiet().await;
    let f = app.fixture().await;
    let assign = assign(&f);
    let to_work = ["acceptReport", assign.as_str(), "startWork"];
    // (how far each report goes, whether it is open at the end)
    let mut expected_open = 0;
    let plans: Vec<(Vec<&str>, bool)> = vec![
        (vec![], true),
        (vec!["acceptReport"], true),
        (to_work.to_vec(), true),
        ([&to_work[..], &[RESOLVE]].concat(), false),
        ([&to_work[..], &[RESOLVE, "confirmReport"]].concat(), false),
        (
            [&to_work[..], &[RESOLVE, "confirmReport", "closeReport"]].concat(),
            false,
        ),
        (
            [&to_work[..], &[RESOLVE, "reopenReport(reason: \"又有了\")"]].concat(),
            true,
        ),
        (
            [
                &to_work[..],
                &[RESOLVE, "reopenReport(reason: \"又有了\")", RESOLVE],
            ]
            .concat(),
            false,
        ),
        (vec![REJECT], false),
    ];
    let mut last = 0;
    for (steps, open) in &plans {
        let (report, position) = submit(&app, &f, &f.resident, "RB-01", "FLOATING-GARBAGE").await;
        last = last.max(position);
        if !steps.is_empty() {
            let done = walk(&app, &f, report, steps).await;
            let name = steps.last().unwrap().split('(').next().unwrap();
            last = last.max(done["data"][name]["position"].as_i64().unwrap());
        }
        expected_open += usize::from(*open);
    }
    let ledgers = app
        .ok(
            Some(&f.admin),
            "query($c: UUID!, $at: Int) { gridLedgers(communityId: $c, atLeast: $at) { name open resolvedThisMonth } }",
            json!({"c": f.community, "at": last}),
        )
        .await;
    let grid = |name: &str| {
        ledgers["gridLedgers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|g| g["name"] == name)
            .cloned()
            .unwrap()
    };
    assert_eq!(grid("Grid 1a")["open"], json!(expected_open), "{ledgers}");
    assert_eq!(
        grid("Grid 1")["open"],
        json!(expected_open),
        "a level 1 grid counts its grids"
    );
    // Resolved last (and not reopened since): plans 4, 5, 6 and 8.
    assert_eq!(grid("Grid 1a")["resolvedThisMonth"], json!(4), "{ledgers}");

    let statistics = app
        .ok(
            Some(&f.admin),
            "query($c: UUID!, $at: Int) { statistics(communityId: $c, atLeast: $at) { received accepted resolved reopened } }",
            json!({"c": f.community, "at": last}),
        )
        .await;
    let row = &statistics["statistics"][0];
    let accepted = plans
        .iter()
        .filter(|(s, _)| s.first() == Some(&"acceptReport"))
        .count();
    let ever_resolved = plans.iter().filter(|(s, _)| s.contains(&RESOLVE)).count();
    assert_eq!(
        (
            row["received"].clone(),
            row["accepted"].clone(),
            row["resolved"].clone(),
            row["reopened"].clone()
        ),
        (
            json!(plans.len()),
            json!(accepted),
            json!(ever_resolved),
            json!(2)
        ),
        "{statistics}"
    );
    assert!(row["resolved"].as_i64() <= row["accepted"].as_i64());
    app.stop().await;
}

/// A server whose read models fold only when a test says so.
async fn without_read_models() -> TestApp {
    TestApp::spawn_with(Options {
        run_projections: false,
        run_earning: false,
        ..Options::default()
    })
    .await
}

/// The reports model's live generation, and a runner that folds into it
/// only when a test says so (`runner.catch_up(&reports, generation)`).
async fn reports_folded_when_told(
    app: &TestApp,
) -> (
    projections::reports::ReportsProjection,
    projections::ProjectionRunner,
    i32,
) {
    let reports = projections::reports::ReportsProjection;
    let runner =
        projections::ProjectionRunner::new(app.store.clone(), projections::RunnerConfig::default());
    let generation = projections::generation::ensure_live(app.store.pool(), &reports)
        .await
        .unwrap();
    (reports, runner, generation)
}

/// Files a report at RB-01 as floating garbage, a minute after whatever
/// came before; its id and the report it was flagged as a likely
/// duplicate of.
async fn file_garbage(app: &TestApp, f: &Fixture) -> (Uuid, Option<Uuid>) {
    app.clock.advance_minutes(1);
    let data = app
        .ok(
            Some(&f.resident),
            SUBMIT,
            json!({"c": f.community, "r": {"siteCode": "RB-01", "category": "FLOATING-GARBAGE", "text": "河面漂浮垃圾"}}),
        )
        .await;
    let id = |value: &Value| value.as_str().map(|id| id.parse().unwrap());
    let filed = &data["submitReport"];
    (
        id(&filed["reportId"]).unwrap(),
        id(&filed["likelyDuplicateOf"]),
    )
}

#[tokio::test]
async fn duplicates_come_from_the_read_model_and_the_tail_after_it_read_only_where_they_moved() {
    // The reports model folds only when this test says so.
    let app = without_read_models().await;
    let f = app.fixture().await;
    let (reports, runner, generation) = reports_folded_when_told(&app).await;
    let community = store::CommunityId::new(f.community);
    let site = || async {
        let site: String = app
            .db
            .client()
            .await
            .query_one(
                "SELECT payload->'ReportSubmitted'->'place'->'site'->>'site' FROM events \
                 WHERE event_type = 'ReportSubmitted' LIMIT 1",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        site.parse::<Uuid>().unwrap()
    };
    let candidates = |site: Uuid, window: i64| {
        let pool = app.store.pool().clone();
        async move {
            projections::reports::duplicate_candidates(
                &pool,
                community,
                site,
                "FLOATING-GARBAGE",
                0,
                5,
                window,
            )
            .await
            .unwrap()
        }
    };
    // The same from this process's memory, when it holds the log after the
    // checkpoint; the check reads the log otherwise.
    let in_memory = |site: Uuid| {
        let store = app.store.clone();
        async move {
            let asked = projections::reports::OpenReportsAsked {
                site,
                category: "FLOATING-GARBAGE".into(),
                since: 0,
                limit: 5,
            };
            projections::reports::duplicate_candidates_in_memory(
                &store,
                &projections::reports::OpenReportLookups::default(),
                community,
                &asked,
            )
            .await
            .unwrap()
        }
    };
    // Both ways agree wherever memory holds the tail.
    let both = |site: Uuid| {
        let (from_log, from_memory) = (candidates(site, 5_000), in_memory(site));
        async move {
            let found = from_log.await;
            assert_eq!(from_memory.await, Some(found.clone()), "memory and log");
            found
        }
    };
    let submissions = |found: &projections::reports::DuplicateCandidates| -> Vec<(Uuid, i64)> {
        found
            .newer
            .iter()
            .map(|(payload, version)| {
                let id = payload["ReportSubmitted"]["report"].as_str().unwrap();
                (id.parse().unwrap(), *version)
            })
            .collect()
    };

    let (a, none) = file_garbage(&app, &f).await;
    assert_eq!(none, None);
    let site = site().await;
    let (b, of_b) = file_garbage(&app, &f).await;
    assert_eq!(of_b, Some(a), "from the tail: nothing is folded yet");
    let found = both(site).await;
    assert_eq!((found.folded, found.open_then.len()), (0, 0));
    assert_eq!(submissions(&found), vec![(a, 1), (b, 1)]);

    runner.catch_up(&reports, generation).await.unwrap();
    let folded = app.head(f.community).await;
    let (c, of_c) = file_garbage(&app, &f).await;
    assert_eq!(of_c, Some(b), "from the model: the newest open one");
    let found = both(site).await;
    assert_eq!(found.folded, folded);
    assert_eq!(found.open_then, vec![(b, false), (a, false)]);
    assert_eq!(submissions(&found), vec![(c, 1)]);

    // B and C are resolved after the model folded B and before it folds
    // C: both streams moved, and neither is anyone's duplicate any more.
    let assign = assign(&f);
    let to_resolved = ["acceptReport", assign.as_str(), "startWork", RESOLVE];
    walk(&app, &f, b, &to_resolved).await;
    walk(&app, &f, c, &to_resolved).await;
    let found = both(site).await;
    assert_eq!(found.open_then, vec![(b, true), (a, false)]);
    assert_eq!(submissions(&found), vec![(c, 5)]);
    let (d, of_d) = file_garbage(&app, &f).await;
    assert_eq!(of_d, Some(a), "B and C were read and found resolved");

    // The tail is bounded by the log's last events: D's submission is the
    // last event, and the one before it is C's resolution.
    assert_eq!(submissions(&candidates(site, 1).await), vec![(d, 1)]);
    assert_eq!(submissions(&candidates(site, 2).await), vec![(d, 1)]);
    // Nothing of another community reaches it.
    let other = app.fixture().await;
    file_garbage(&app, &other).await;
    assert_eq!(submissions(&both(site).await), vec![(c, 5), (d, 1)]);

    // What another process files is known here once it is announced:
    // memory no longer holds the log's end, and the check reads the log.
    let other = app.second_process().await;
    let filed = app
        .ok_at(
            &other,
            Some(&f.resident),
            SUBMIT,
            json!({"c": f.community, "r": {"siteCode": "RB-01", "category": "FLOATING-GARBAGE", "text": "对岸也看到了"}}),
        )
        .await;
    let e: Uuid = filed["submitReport"]["reportId"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let position = filed["submitReport"]["position"].as_i64().unwrap();
    let mut head = app.store.head_watch(community);
    crate::helpers::announced(&mut head, position).await;
    assert_eq!(
        in_memory(site).await,
        None,
        "memory misses the other's event"
    );
    assert_eq!(
        submissions(&candidates(site, 5_000).await),
        vec![(c, 5), (d, 1), (e, 1)]
    );
    let (_, of_g) = file_garbage(&app, &f).await;
    assert_eq!(of_g, Some(e), "the other process's report, from the log");
    other.stop().await;
    app.stop().await;
}

/// The open-report lookups of many filings at once, gathered into one
/// statement per community, answer each filing exactly what its own lookup
/// answers (the same checkpoint, the same reports, its own limit), across
/// communities, sites and categories; a caller that gives up leaves the
/// others answered and the gathering free for the next.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn gathered_open_report_lookups_answer_each_filing_as_its_own_lookup_would() {
    use projections::reports::{OpenReportLookups, OpenReportsAsked};
    let app = without_read_models().await;
    let (f, g) = (app.fixture().await, app.fixture().await);
    let categories = FILED_CATEGORIES;
    let mut filed = Vec::new();
    for round in 0..3 {
        for fixture in [&f, &g] {
            for site in ["RB-01", "RB-02"] {
                for category in categories {
                    if (round + site.len() + category.len()) % 4 == 3 {
                        continue;
                    }
                    app.clock.advance_minutes(1);
                    let (report, _) =
                        submit(&app, fixture, &fixture.resident, site, category).await;
                    filed.push((fixture, report));
                }
            }
        }
    }
    // Some are no longer open: their reports are never named.
    for (fixture, report) in filed.iter().step_by(5) {
        let steps = [REJECT];
        walk(&app, fixture, *report, &steps).await;
    }
    let (reports, runner, generation) = reports_folded_when_told(&app).await;
    runner.catch_up(&reports, generation).await.unwrap();

    let mut asks = Vec::new();
    for fixture in [&f, &g] {
        let sites = sites_filed_at(&app, fixture.community).await;
        assert_eq!(sites.len(), 2);
        for site in sites.into_iter().chain([Uuid::new_v4()]) {
            for category in categories.iter().chain(&["NO-SUCH-CATEGORY"]) {
                for (since, limit) in [(0, 5), (0, 1), (i64::MAX, 5)] {
                    let community = store::CommunityId::new(fixture.community);
                    let asked = OpenReportsAsked {
                        site,
                        category: category.to_string(),
                        since,
                        limit,
                    };
                    asks.push((community, asked));
                }
            }
        }
    }
    // Each on its own, through the statement of the check from the log.
    let mut expected = Vec::new();
    for (community, asked) in &asks {
        let found = projections::reports::duplicate_candidates(
            app.store.pool(),
            *community,
            asked.site,
            &asked.category,
            asked.since,
            asked.limit,
            5_000,
        )
        .await
        .unwrap();
        let open: Vec<Uuid> = found.open_then.iter().map(|(id, _)| *id).collect();
        expected.push((found.folded, open));
    }
    assert!(
        expected.iter().any(|(_, open)| open.len() > 1),
        "some name several"
    );
    assert!(
        expected.iter().any(|(_, open)| open.is_empty()),
        "some name none"
    );
    assert!(expected.iter().all(|(folded, _)| *folded > 0), "all folded");

    // All at once, three times over, through one gathering.
    let lookups = OpenReportLookups::default();
    let ask_all = |times: usize| {
        let mut tasks = Vec::new();
        for _ in 0..times {
            for (index, (community, asked)) in asks.iter().enumerate() {
                let (lookups, pool) = (lookups.clone(), app.store.pool().clone());
                let (community, asked) = (*community, asked.clone());
                tasks.push(tokio::spawn(async move {
                    let answer = lookups.open_reports(&pool, community, asked).await;
                    (index, answer.unwrap())
                }));
            }
        }
        tasks
    };
    let answers = futures::future::join_all(ask_all(3)).await;
    assert_eq!(answers.len(), asks.len() * 3);
    for answer in answers {
        let (index, answer) = answer.unwrap();
        assert_eq!(answer, expected[index], "{:?}", asks[index]);
    }

    // Callers that give up at once: the rest are answered all the same.
    let mut tasks = ask_all(2);
    for task in tasks.iter().step_by(3) {
        task.abort();
    }
    let mut answered = 0;
    for task in tasks.drain(..) {
        if let Ok((index, answer)) = task.await {
            assert_eq!(answer, expected[index]);
            answered += 1;
        }
    }
    assert!(answered >= asks.len(), "{answered} answered");
    let (community, asked) = asks[0].clone();
    let after = lookups
        .open_reports(app.store.pool(), community, asked)
        .await
        .unwrap();
    assert_eq!(after, expected[0]);
    app.stop().await;
}

/// The duplicate check runs on its generic plan on every connection, from
/// its first run (a connection that planned it for a young community's
/// parameters at first went on planning it on every run), and leaves the
/// connection as it found it: no setting, no transaction.
#[tokio::test]
async fn the_duplicate_check_runs_on_its_generic_plan_and_leaves_its_connection_as_it_was() {
    let app = TestApp::spawn().await;
    let f = app.fixture().await;
    let (first, _) = file_garbage(&app, &f).await;
    let site: Uuid = app
        .db
        .client()
        .await
        .query_one(
            "SELECT (payload->'ReportSubmitted'->'place'->'site'->>'site')::uuid FROM events \
             WHERE event_type = 'ReportSubmitted' LIMIT 1",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    // Two connections, so that each runs it several times.
    let checking = store::EventStore::connect(
        app.db.config.clone(),
        store::StoreConfig {
            pool_size_max: 2,
            ..store::StoreConfig::default()
        },
    )
    .await
    .unwrap();
    let community = store::CommunityId::new(f.community);
    let check = || {
        projections::reports::duplicate_candidates(
            checking.pool(),
            community,
            site,
            "FLOATING-GARBAGE",
            0,
            5,
            5_000,
        )
    };
    let found = futures::future::join_all((0..12).map(|_| check())).await;
    for found in found {
        let found = found.unwrap();
        let named =
            found.open_then.iter().any(|(report, _)| *report == first) || !found.newer.is_empty();
        assert!(named, "the filed report is a candidate");
    }
    let (a, b) = (
        checking.pool().get().await.unwrap(),
        checking.pool().get().await.unwrap(),
    );
    let (mut generic, mut custom) = (0, 0);
    for connection in [&a, &b] {
        let mode: String = connection
            .query_one("SHOW plan_cache_mode", &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(mode, "auto", "the setting stayed in its transaction");
        assert!(!connection.is_closed());
        let plans = connection
            .query(
                "SELECT generic_plans, custom_plans FROM pg_prepared_statements \
                 WHERE statement LIKE 'WITH folded AS%'",
                &[],
            )
            .await
            .unwrap();
        for row in plans {
            generic += row.get::<_, i64>(0);
            custom += row.get::<_, i64>(1);
        }
        // A savepoint is refused outside a transaction block.
        let outside = connection.batch_execute("SAVEPOINT probe").await;
        assert!(outside.is_err(), "no transaction left open");
    }
    assert_eq!(custom, 0, "never planned for its parameters");
    assert_eq!(generic, 12, "every run on the generic plan");
}

#[tokio::test]
async fn duplicates_are_flagged_back_to_back_without_the_read_model_and_only_while_open() {
    // No projections at all: whatever is flagged comes from the log.
    let app = without_read_models().await;
    let f = app.fixture().await;
    let mut flagged = Vec::new();
    let mut previous: Option<String> = None;
    for _ in 0..3 {
        let data = app
            .ok(
                Some(&f.resident),
                SUBMIT,
                json!({"c": f.community, "r": {"siteCode": "RB-01", "category": "FLOATING-GARBAGE", "text": "又有垃圾"}}),
            )
            .await;
        let payload = &data["submitReport"];
        flagged.push((payload["likelyDuplicateOf"].clone(), previous.clone()));
        previous = payload["reportId"].as_str().map(str::to_string);
    }
    assert_eq!(flagged[0].0, Value::Null);
    for (duplicate_of, before) in &flagged[1..] {
        assert_eq!(
            duplicate_of.as_str(),
            before.as_deref(),
            "back to back: {flagged:?}"
        );
    }
    // Another category or site is not a duplicate.
    let other = app
        .ok(
            Some(&f.resident),
            SUBMIT,
            json!({"c": f.community, "r": {"siteCode": "RB-01", "category": "SEWAGE-OUTFALL", "text": "排口有污水"}}),
        )
        .await;
    assert_eq!(other["submitReport"]["likelyDuplicateOf"], Value::Null);

    // Once none of them is open, a new one is no one's duplicate.
    let ids: Vec<Uuid> = flagged
        .iter()
        .skip(1)
        .filter_map(|(_, before)| before.as_ref().map(|id| id.parse().unwrap()))
        .chain(previous.iter().map(|id| id.parse().unwrap()))
        .collect();
    let assign = assign(&f);
    for report in &ids {
        walk(
            &app,
            &f,
            *report,
            &["acceptReport", &assign, "startWork", RESOLVE],
        )
        .await;
    }
    let after = app
        .ok(
            Some(&f.resident),
            SUBMIT,
            json!({"c": f.community, "r": {"siteCode": "RB-01", "category": "FLOATING-GARBAGE", "text": "还是有垃圾"}}),
        )
        .await;
    assert_eq!(
        after["submitReport"]["likelyDuplicateOf"],
        Value::Null,
        "resolved reports are not open: {after}"
    );
    app.stop().await;
}

#[tokio::test]
async fn a_live_generation_of_an_older_fold_is_rebuilt_and_its_figures_corrected() {
    let app = TestApp::spawn_quiet().await;
    let f = app.fixture().await;
    let assign = assign(&f);
    let reopen = "reopenReport(reason: \"又有了\")";
    let (report, _) = submit(&app, &f, &f.resident, "RB-01", "FLOATING-GARBAGE").await;
    let done = walk(
        &app,
        &f,
        report,
        &[
            "acceptReport",
            &assign,
            "startWork",
            RESOLVE,
            reopen,
            RESOLVE,
        ],
    )
    .await;
    let at = done["data"]["resolveReport"]["position"].as_i64().unwrap();
    assert_eq!(resolved_in(&app, &f, at).await, 1);
    // As an older fold left it: the figure counted twice, the generation
    // marked as that fold's.
    let client = app.db.client().await;
    let live: i32 = client
        .query_one(
            "UPDATE projection_generations SET fold_version = 1 \
             WHERE projection = 'reports' AND state = 'live' RETURNING generation",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    client
        .execute(
            &format!("UPDATE rm_reports_{live}.report_statistics SET resolved = 2"),
            &[],
        )
        .await
        .unwrap();
    // A hand edit of a read model's tables is no commit: answers kept from
    // before it are retired only the way a promotion retires them.
    app.store
        .announce_topic(&projections::cache::generations_topic("reports"));
    assert_eq!(resolved_in(&app, &f, at).await, 2);

    // A runner that starts finds it stale and rebuilds it beside it.
    let runner =
        projections::ProjectionRunner::new(app.store.clone(), projections::RunnerConfig::default());
    let (_stop, stopped) = tokio::sync::watch::channel(false);
    let tasks = runner.spawn(projections::all(), stopped);
    let mut promoted = None;
    for _ in 0..200 {
        let row = client
            .query_one(
                "SELECT generation, fold_version FROM projection_generations \
                 WHERE projection = 'reports' AND state = 'live'",
                &[],
            )
            .await
            .unwrap();
        let (generation, version): (i32, i32) = (row.get(0), row.get(1));
        if generation != live {
            promoted = Some(version);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(
        promoted,
        Some(projections::Projection::fold_version(
            &projections::reports::ReportsProjection
        )),
        "a generation of the current fold is live"
    );
    assert_eq!(
        resolved_in(&app, &f, at).await,
        1,
        "the figure is corrected"
    );
    for task in tasks {
        task.abort();
    }
    app.stop().await;
}

async fn resolved_in(app: &TestApp, f: &Fixture, at: i64) -> i64 {
    let statistics = app
        .ok(
            Some(&f.admin),
            "query($c: UUID!, $at: Int) { statistics(communityId: $c, atLeast: $at) { resolved } }",
            json!({"c": f.community, "at": at}),
        )
        .await;
    statistics["statistics"][0]["resolved"].as_i64().unwrap()
}

/// One report as this test folds the log again, apart from the server.
struct Refolded {
    grid: Uuid,
    level1: Uuid,
    state: &'static str,
    submitted: i64,
    first_response_due: i64,
    resolution_due: i64,
    first_response: Option<i64>,
    resolved: Option<i64>,
}

/// The median a ledger states: the middle one, or the mean of the two
/// middle ones rounded down, then whole seconds.
fn median_seconds(mut durations: Vec<i64>) -> Option<i64> {
    durations.sort_unstable();
    let n = durations.len();
    if n == 0 {
        return None;
    }
    let us = if n % 2 == 1 {
        durations[n / 2]
    } else {
        (durations[n / 2 - 1] + durations[n / 2]).div_euclid(2)
    };
    Some(us / 1_000_000)
}

/// The community's grid ledgers, folded again here from its log.
async fn ledgers_from_the_log(app: &TestApp, f: &Fixture, head: i64, zone: chrono_tz::Tz) -> Value {
    use chrono::{Datelike, TimeZone};
    use domain::report::ReportEvent::*;
    let events = app
        .store
        .read_log(store::CommunityId::new(f.community), 1, head)
        .await
        .unwrap();
    assert_eq!(events.len() as i64, head, "the whole log");
    let mut reports: std::collections::HashMap<Uuid, Refolded> = Default::default();
    for event in &events {
        let Some(id) = event.stream_id.strip_prefix("report-") else {
            continue;
        };
        let id: Uuid = id.parse().unwrap();
        let report_event: domain::report::ReportEvent =
            serde_json::from_str(event.payload.get()).unwrap();
        if let ReportSubmitted(s) = &report_event {
            let grid = s.grid.0;
            reports.insert(
                id,
                Refolded {
                    grid,
                    level1: if grid == f.grid1a { f.grid1 } else { grid },
                    state: "submitted",
                    submitted: s.at.micros(),
                    first_response_due: s.first_response_due.micros(),
                    resolution_due: s.resolution_due.micros(),
                    first_response: None,
                    resolved: None,
                },
            );
            continue;
        }
        let r = reports.get_mut(&id).expect("submitted first");
        match report_event {
            ReportAccepted { at, .. } => {
                r.state = "accepted";
                r.first_response.get_or_insert(at.micros());
            }
            ReportRejected { at, .. } => {
                r.state = "rejected";
                r.first_response.get_or_insert(at.micros());
            }
            ReportAssigned { .. } => r.state = "assigned",
            ReportEscalated { .. } => r.state = "escalated",
            ReportWorkStarted { .. } => r.state = "in_progress",
            ReportResolved { at, .. } => {
                r.state = "resolved";
                r.resolved = Some(at.micros());
            }
            ReportConfirmed { .. } => r.state = "confirmed",
            ReportReopened { .. } => {
                r.state = "in_progress";
                r.resolved = None;
            }
            ReportClosed { .. } => r.state = "closed",
            ReportMerged { .. } => r.state = "merged",
            _ => {}
        }
    }
    let now = app::clock::Clock::now(&*app.clock).micros();
    let local = zone.timestamp_micros(now).unwrap();
    let month_start = zone
        .with_ymd_and_hms(local.year(), local.month(), 1, 0, 0, 0)
        .unwrap()
        .timestamp_micros();
    let open = |r: &Refolded| {
        matches!(
            r.state,
            "submitted" | "accepted" | "assigned" | "escalated" | "in_progress"
        )
    };
    let mut ledgers = Vec::new();
    for (name, grid) in [
        ("Grid 1", f.grid1),
        ("Grid 1a", f.grid1a),
        ("Grid 2", f.grid2),
    ] {
        let counted: Vec<&Refolded> = reports
            .values()
            .filter(|r| r.grid == grid || r.level1 == grid)
            .collect();
        let count = |rule: &dyn Fn(&Refolded) -> bool| counted.iter().filter(|r| rule(r)).count();
        ledgers.push(json!({
            "name": name,
            "open": count(&|r| open(r)),
            "overdue": count(&|r| (r.state == "submitted" && r.first_response_due <= now)
                || (open(r) && r.resolution_due <= now)),
            "resolvedThisMonth": count(&|r| r.resolved.is_some_and(|at| at >= month_start)),
            "medianFirstResponseSeconds": median_seconds(
                counted.iter().filter_map(|r| r.first_response.map(|at| at - r.submitted)).collect()),
            "medianResolutionSeconds": median_seconds(
                counted.iter().filter_map(|r| r.resolved.map(|at| at - r.submitted)).collect()),
        }));
    }
    Value::Array(ledgers)
}

#[tokio::test]
async fn grid_ledgers_the_fold_keeps_are_the_log_folded_again_over_a_varied_history() {
    let app = TestApp::spawn_quiet().await;
    let f = app.fixture().await;
    let zone = chrono_tz::Asia::Shanghai;
    app.ok(
        Some(&f.admin),
        "mutation($c: UUID!) { setTimeZone(communityId: $c, timeZone: \"Asia/Shanghai\") { position } }",
        json!({"c": f.community}),
    )
    .await;
    // Late in a month: the history runs into the next one.
    app.clock.advance_hours(20 * 24);
    // A deterministic walk: reports filed at every site, then steps tried
    // on reports picked at random, by whoever may take them; a step the
    // report's state refuses is simply refused.
    let mut next = seeded(0x5eed);
    let sites = ["RB-01", "MS-01", "RB-02"];
    let categories = ["FLOATING-GARBAGE", "SEWAGE-OUTFALL"];
    let assign_1 = format!("assignReport(workerId: \"{}\")", f.worker_id);
    let assign_2 = format!("assignReport(workerId: \"{}\")", f.other_worker_id);
    let escalate = format!("escalateReport(departmentId: \"{}\")", f.department_id);
    let mut reports: Vec<(Uuid, String)> = Vec::new();
    let mut done: std::collections::HashMap<String, usize> = Default::default();
    for round in 0..400 {
        if round % 4 == 0 {
            let site = sites[next(sites.len())];
            let category = categories[next(categories.len())];
            let id = submit(&app, &f, &f.resident, site, category).await.0;
            reports.push((id, "SUBMITTED".to_string()));
        }
        let picked = next(reports.len());
        let (report, state) = reports[picked].clone();
        let original = reports[next(reports.len())].0;
        let merge = format!("mergeReport(originalId: \"{original}\")");
        let reopen = "reopenReport(reason: \"又有了\")";
        let hide = "hideReport(reason: \"重复\")";
        // Mostly a step the report's state allows; now and then any step.
        let likely: Vec<&str> = match state.as_str() {
            "SUBMITTED" => vec![
                "acceptReport",
                "acceptReport",
                "acceptReport",
                REJECT,
                &merge,
                hide,
            ],
            "ACCEPTED" => vec![
                &assign_1, &assign_2, &assign_1, &assign_2, &escalate, &merge,
            ],
            "ASSIGNED" | "ESCALATED" => vec!["startWork", "startWork", &escalate],
            "IN_PROGRESS" => vec![RESOLVE],
            "RESOLVED" => vec!["confirmReport", reopen, reopen],
            "CONFIRMED" => vec!["closeReport", reopen],
            _ => vec![hide, reopen],
        };
        let any = [
            "acceptReport",
            REJECT,
            &assign_1,
            &assign_2,
            &escalate,
            "startWork",
            RESOLVE,
            "confirmReport",
            reopen,
            "closeReport",
            &merge,
            hide,
        ];
        let step = if next(10) == 0 {
            any[next(any.len())]
        } else {
            likely[next(likely.len())]
        };
        for token in [&f.admin, &f.worker, &f.other_worker, &f.department] {
            let answer = act(&app, &f, token, step, report).await;
            if code_of(&answer) == "OK" {
                let name = step.split('(').next().unwrap();
                *done.entry(name.to_string()).or_default() += 1;
                if let Some(state) = answer["data"][name]["state"].as_str() {
                    reports[picked].1 = state.to_string();
                }
                break;
            }
        }
        app.clock.advance_minutes(1 + next(120) as i64);
        if round % 10 == 9 {
            // Deadlines that passed are recorded (and escalate).
            let missed = app.watcher.tick().await.unwrap();
            *done.entry("deadlineMissed".to_string()).or_default() += missed as usize;
        }
    }
    // And a few just filed: open, not yet overdue.
    for site in sites {
        submit(&app, &f, &f.resident, site, "FLOATING-GARBAGE").await;
    }
    for kind in [
        "acceptReport",
        "rejectReport",
        "escalateReport",
        "resolveReport",
        "reopenReport",
        "mergeReport",
        "closeReport",
        "deadlineMissed",
    ] {
        assert!(
            done.get(kind).copied().unwrap_or(0) > 0,
            "the history has {kind}: {done:?}"
        );
    }
    let head = app.head(f.community).await;
    let query = "query($c: UUID!, $at: Int) { gridLedgers(communityId: $c, atLeast: $at) {
        name open overdue resolvedThisMonth medianFirstResponseSeconds medianResolutionSeconds } }";
    let expected = ledgers_from_the_log(&app, &f, head, zone).await;
    let served = app
        .ok(Some(&f.admin), query, json!({"c": f.community, "at": head}))
        .await;
    assert_eq!(
        served["gridLedgers"], expected,
        "as the server folded it live"
    );
    assert!(
        expected.as_array().unwrap().iter().any(|g| {
            let (overdue, open) = (g["overdue"].as_i64(), g["open"].as_i64());
            overdue > Some(0) && overdue < open
        }),
        "the history leaves some open reports overdue and some not: {expected}"
    );

    // Time passes with nothing written: deadlines fall due one by one, and
    // the figures that depend on the time of the read follow them.
    // Reports filed 37 minutes apart fall due 37 minutes apart.
    for round in 0..6 {
        submit(
            &app,
            &f,
            &f.resident,
            sites[round % sites.len()],
            "FLOATING-GARBAGE",
        )
        .await;
        app.clock.advance_minutes(37);
    }
    let head = app.head(f.community).await;
    let mut overdue_seen = std::collections::BTreeSet::new();
    for _ in 0..24 {
        app.clock.advance_minutes(19);
        let expected = ledgers_from_the_log(&app, &f, head, zone).await;
        let served = app
            .ok(Some(&f.admin), query, json!({"c": f.community, "at": head}))
            .await;
        assert_eq!(
            served["gridLedgers"], expected,
            "later, with nothing written"
        );
        overdue_seen.insert(expected.to_string());
    }
    assert!(
        overdue_seen.len() > 2,
        "deadlines fell due while time passed: {overdue_seen:?}"
    );

    // Folded again from zero in small batches (the middles move many
    // steps at once): the same figures.
    let runner = projections::ProjectionRunner::new(
        app.store.clone(),
        projections::RunnerConfig {
            batch_size: 5,
            ..projections::RunnerConfig::default()
        },
    );
    runner
        .rebuild(&projections::reports::ReportsProjection)
        .await
        .unwrap();
    let rebuilt = app
        .ok(Some(&f.admin), query, json!({"c": f.community, "at": head}))
        .await;
    let expected = ledgers_from_the_log(&app, &f, head, zone).await;
    assert_eq!(rebuilt["gridLedgers"], expected, "as a rebuild folded it");
    app.stop().await;
}

/// The sites of a community that reports were filed at, as the log has them.
async fn sites_filed_at(app: &TestApp, community: Uuid) -> Vec<Uuid> {
    app.db
        .client()
        .await
        .query(
            "SELECT DISTINCT (payload->'ReportSubmitted'->'place'->'site'->>'site')::uuid \
             FROM events WHERE event_type = 'ReportSubmitted' AND community_id = $1",
            &[&community],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect()
}

/// Files a report in each category at each of RB-01 and RB-02, a minute
/// apart; their ids in that order.
async fn file_round(app: &TestApp, fixture: &Fixture) -> Vec<Uuid> {
    let mut filed = Vec::new();
    for site in ["RB-01", "RB-02"] {
        for category in FILED_CATEGORIES {
            app.clock.advance_minutes(1);
            filed.push(
                submit(app, fixture, &fixture.resident, site, category)
                    .await
                    .0,
            );
        }
    }
    filed
}

const FILED_CATEGORIES: [&str; 2] = ["FLOATING-GARBAGE", "SEWAGE-OUTFALL"];

/// What the reports model names for each question once it has folded the
/// whole log: the newest two open reports, newest first.
async fn open_reports_named_by_the_model(
    app: &TestApp,
    f: &Fixture,
    asks: &[projections::reports::OpenReportsAsked],
) -> Vec<Vec<Uuid>> {
    let (reports, runner, generation) = reports_folded_when_told(app).await;
    runner.catch_up(&reports, generation).await.unwrap();
    let schema = projections::generation::reading_schema(projections::reports::NAME);
    let client = app.db.client().await;
    let mut named = Vec::new();
    for asked in asks {
        let rows = client
            .query(
                &format!(
                    "SELECT report_id FROM {schema}.reports WHERE community_id = $1 \
                     AND site_id = $2 AND category = $3 AND submitted_at >= $4 \
                     AND state IN ('submitted', 'accepted', 'assigned', 'escalated', 'in_progress') \
                     ORDER BY submitted_at DESC LIMIT 2"
                ),
                &[&f.community, &asked.site, &asked.category, &asked.since],
            )
            .await
            .unwrap();
        named.push(rows.iter().map(|row| row.get(0)).collect());
    }
    named
}

/// Asks `index` every question at once, each both as a new filing and as
/// the filing of the first report named (a retry): the answers must be
/// the first and the second of `named`.
async fn ask_the_kept_reports(
    app: &TestApp,
    index: &projections::reports::OpenReportIndex,
    community: store::CommunityId,
    asks: &[projections::reports::OpenReportsAsked],
    named: &[Vec<Uuid>],
) {
    use projections::reports::NewestOpen;
    let newest = |ids: &[Uuid], skip: usize| match ids.get(skip) {
        Some(report) => NewestOpen::Report(*report),
        None => NewestOpen::NoneOpen,
    };
    let mut tasks = Vec::new();
    for (asked, ids) in asks.iter().zip(named) {
        let (index, store, asked) = (index.clone(), app.store.clone(), asked.clone());
        let first = ids.first().copied().unwrap_or_else(Uuid::new_v4);
        tasks.push(tokio::spawn(async move {
            let alone = index.newest_open(&store, community, &asked, Uuid::new_v4());
            let retried = index.newest_open(&store, community, &asked, first);
            let (alone, retried) = futures::join!(alone, retried);
            (alone.unwrap(), retried.unwrap())
        }));
    }
    let answers = futures::future::join_all(tasks).await;
    for ((answer, asked), ids) in answers.into_iter().zip(asks).zip(named) {
        let (alone, retried) = answer.unwrap();
        assert_eq!(alone, newest(ids, 0), "{asked:?}");
        assert_eq!(retried, newest(ids, 1), "{asked:?} filed by its first");
    }
}

/// A burst of events with no filing among them, longer than the tail of
/// the log this process keeps (a morning of acceptances, say): the next
/// filing's lookup loads the community again from the reports model,
/// which has folded the burst, and reads from the log only what the model
/// has not, instead of the whole burst while the community's filings
/// wait; and it still names what the model names.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kept_open_reports_pass_a_burst_longer_than_the_tail_by_the_model_not_the_log() {
    use projections::reports::{NewestOpen, OpenReportIndex, OpenReportsAsked};
    use std::sync::atomic::Ordering;
    let app = without_read_models().await;
    let f = app.fixture().await;
    let (reports, runner, generation) = reports_folded_when_told(&app).await;
    let filed = file_round(&app, &f).await;
    let community = store::CommunityId::new(f.community);
    let mut asks = Vec::new();
    for site in sites_filed_at(&app, f.community).await {
        for category in FILED_CATEGORIES {
            asks.push(OpenReportsAsked {
                site,
                category: category.to_string(),
                since: 0,
                limit: 2,
            });
        }
    }
    let kept = OpenReportIndex::default();
    let named = open_reports_named_by_the_model(&app, &f, &asks).await;
    ask_the_kept_reports(&app, &kept, community, &asks, &named).await;

    // The burst: events no fold reads, five appends of a thousand.
    let burst = 5_000;
    for _ in 0..burst / 1_000 {
        let events = (0..1_000)
            .map(|i| {
                store::NewEvent::new(
                    store::EventType::parse("Counted").unwrap(),
                    json!({"Counted": {"i": i}}),
                )
            })
            .collect();
        let request = store::AppendRequest::new(community).stream(
            store::StreamId::parse(format!("tally-{}", Uuid::new_v4())).unwrap(),
            store::StreamType::parse("Tally").unwrap(),
            store::ExpectedVersion::NoStream,
            events,
        );
        app.store.append(request).await.unwrap();
    }
    // A move the model folds, then one it has not folded yet.
    walk(&app, &f, filed[0], &[REJECT]).await;
    runner.catch_up(&reports, generation).await.unwrap();
    walk(&app, &f, filed[1], &[REJECT]).await;

    let read = || {
        app.store
            .stats()
            .log_events_read_total
            .load(Ordering::Relaxed)
    };
    let before = read();
    let first = kept
        .newest_open(&app.store, community, &asks[0], Uuid::nil())
        .await
        .unwrap();
    let read_from_log = read() - before;
    assert!(
        read_from_log < 100,
        "{read_from_log} events of a burst of {burst} read from the log"
    );
    let named = open_reports_named_by_the_model(&app, &f, &asks).await;
    let newest = named[0]
        .first()
        .map_or(NewestOpen::NoneOpen, |report| NewestOpen::Report(*report));
    assert_eq!(first, newest, "{named:?}");
    assert!(
        named.iter().any(|ids| ids.is_empty()),
        "the rejections emptied a site's category: {named:?}"
    );
    ask_the_kept_reports(&app, &kept, community, &asks, &named).await;
    app.stop().await;
}

/// The reports a filing may duplicate, kept in memory per community
/// (`OpenReportIndex`), name what the reports model names once it has
/// folded the whole log: the newest open report at a site in a category
/// in the window, and the next one when the first is the filing itself.
/// Kept from a model that lags the log, moved along it across accepts,
/// resolutions, reopenings, confirmations, closings, rejections and
/// merges, asked concurrently, and loaded again when the window grows.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kept_open_reports_name_what_the_model_names_once_it_has_folded_the_log() {
    use projections::reports::{OpenReportIndex, OpenReportsAsked};
    let app = without_read_models().await;
    let (f, g) = (app.fixture().await, app.fixture().await);
    let (reports, runner, generation) = reports_folded_when_told(&app).await;
    let assign = assign(&f);
    let resolved = ["acceptReport", assign.as_str(), "startWork", RESOLVE];
    let reopen = "reopenReport(reason: \"又有了\")";
    // Old reports, two hours before the rest: outside a window that starts
    // at the first new one, inside one that starts at 0.
    let old = file_round(&app, &f).await;
    file_round(&app, &g).await;
    walk(&app, &f, old[1], &resolved).await;
    app.clock.advance_minutes(120);
    let window_start = app::clock::Clock::now(&*app.clock).micros() + 60_000_000;
    let early = file_round(&app, &f).await;
    walk(&app, &f, early[0], &resolved).await;
    walk(&app, &f, early[1], &[REJECT]).await;
    walk(&app, &f, early[3], &[REJECT]).await;
    // The model folds this far; what follows, the index reads from the log.
    runner.catch_up(&reports, generation).await.unwrap();
    let late = file_round(&app, &f).await;
    file_round(&app, &g).await;
    walk(&app, &f, early[0], &[reopen]).await;
    walk(&app, &f, late[0], &["acceptReport"]).await;
    walk(&app, &f, late[1], &resolved).await;

    let community = store::CommunityId::new(f.community);
    let sites = sites_filed_at(&app, f.community).await;
    assert_eq!(sites.len(), 2);
    // The narrow window first, so the wide one makes the index load again.
    let mut asks = Vec::new();
    for since in [window_start, 0, i64::MAX] {
        for site in sites.iter().copied().chain([Uuid::new_v4()]) {
            for category in FILED_CATEGORIES.iter().chain(&["NO-SUCH-CATEGORY"]) {
                asks.push(OpenReportsAsked {
                    site,
                    category: category.to_string(),
                    since,
                    limit: 2,
                });
            }
        }
    }
    // Asked while the model lags: loaded from it, moved along the log.
    let kept = OpenReportIndex::default();
    let first = kept
        .newest_open(&app.store, community, &asks[0], Uuid::nil())
        .await
        .unwrap();
    let named = open_reports_named_by_the_model(&app, &f, &asks).await;
    assert!(named.iter().any(|ids| ids.len() == 2), "some name two");
    assert!(named.iter().any(|ids| ids.is_empty()), "some name none");
    let wide = asks.len() / 3;
    assert!(
        (0..wide).any(|i| named[i] != named[i + wide]),
        "the window decides some"
    );
    assert_eq!(
        first,
        projections::reports::NewestOpen::Report(named[0][0]),
        "{named:?}"
    );
    ask_the_kept_reports(&app, &kept, community, &asks, &named).await;

    // More moves: the kept index follows them, a new one loads them.
    walk(&app, &f, late[1], &[reopen]).await;
    let to_closed = [
        assign.as_str(),
        "startWork",
        RESOLVE,
        "confirmReport",
        "closeReport",
    ];
    walk(&app, &f, late[0], &to_closed).await;
    let merge = format!("mergeReport(originalId: \"{}\")", early[0]);
    walk(&app, &f, late[3], &[merge.as_str()]).await;
    let more = file_round(&app, &f).await;
    walk(&app, &f, more[1], &[REJECT]).await;
    let named = open_reports_named_by_the_model(&app, &f, &asks).await;
    ask_the_kept_reports(&app, &kept, community, &asks, &named).await;
    ask_the_kept_reports(&app, &OpenReportIndex::default(), community, &asks, &named).await;
    app.stop().await;
}
