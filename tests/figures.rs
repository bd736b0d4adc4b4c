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
        (vec!["rejectReport(reason: {kind: NOT_ACTIONABLE})"], false),
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

#[tokio::test]
async fn duplicates_are_flagged_back_to_back_without_the_read_model_and_only_while_open() {
    // No projections at all: whatever is flagged comes from the log.
    let app = TestApp::spawn_with(Options {
        run_projections: false,
        run_earning: false,
        ..Options::default()
    })
    .await;
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
        Some(2),
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
