//! Answers of repeated reads kept in memory (projections/src/cache.rs, ADR
//! 0013): served again only while nothing they rest on has changed, and
//! never to a caller they were not read for.

use serde_json::{json, Value};
use uuid::Uuid;

use crate::app::{submit, Fixture, Options, TestApp};

const GRID_LEDGERS: &str = "query($c: UUID!, $at: Int) {
    gridLedgers(communityId: $c, atLeast: $at) { gridId open overdue resolvedThisMonth } }";
const STATISTICS: &str = "query($c: UUID!, $at: Int) {
    statistics(communityId: $c, fromMonth: \"2026-11\", toMonth: \"2026-11\", atLeast: $at) { category received } }";
const REPORTS: &str = "query($c: UUID!, $at: Int) {
    reports(communityId: $c, first: 20, atLeast: $at) { edges { node { id state } } } }";
const WALLET: &str = "query($c: UUID!, $at: Int) {
    wallet(communityId: $c, atLeast: $at) { balance statement(first: 20) { edges { node { amount } } } } }";
const LEADERBOARD: &str = "query($c: UUID!, $at: Int) {
    leaderboard(communityId: $c, by: POINTS_EARNED, period: MONTH, atLeast: $at) { entries { rank name score } } }";
const GRANT: &str = "mutation($c: UUID!, $p: UUID!) {
    grantPoints(communityId: $c, residentId: $p, amount: \"1\", reason: \"河道清洁\") { position } }";

/// A fixture whose community has a points budget to grant from.
async fn funded(app: &TestApp) -> Fixture {
    let f = app.fixture().await;
    app.fund(&f, "1000").await;
    f
}

/// Waits until every read model and the earning process have folded the
/// community's whole log: only then is an answer kept.
async fn caught_up(app: &TestApp, f: &Fixture) {
    for _ in 0..400 {
        let data = app
            .ok(
                Some(&f.admin),
                "query($c: UUID!) { projectionLag(communityId: $c) { lag } }",
                json!({"c": f.community}),
            )
            .await;
        let lags = data["projectionLag"].as_array().unwrap();
        if lags.iter().all(|lag| lag["lag"] == 0) {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    panic!("the read models did not catch up");
}

fn sum(values: impl Iterator<Item = i64>) -> i64 {
    values.sum()
}

/// The figure a read shows that the table's write moves by one.
fn figure(read: &str, data: &Value) -> i64 {
    let list = |value: &Value| value.as_array().cloned().unwrap_or_default();
    match read {
        "gridLedgers" => sum(list(&data["gridLedgers"])
            .iter()
            .map(|grid| grid["open"].as_i64().unwrap())),
        "statistics" => sum(list(&data["statistics"])
            .iter()
            .map(|line| line["received"].as_i64().unwrap())),
        "reports" => list(&data["reports"]["edges"]).len() as i64,
        "wallet" => {
            let balance: i64 = data["wallet"]["balance"].as_str().unwrap().parse().unwrap();
            balance + list(&data["wallet"]["statement"]["edges"]).len() as i64 - 1
        }
        "leaderboard" => list(&data["leaderboard"]["entries"]).len() as i64,
        other => panic!("no figure for {other}"),
    }
}

async fn write_for(app: &TestApp, f: &Fixture, read: &str) -> i64 {
    match read {
        "wallet" | "leaderboard" => {
            let data = app
                .ok(
                    Some(&f.admin),
                    GRANT,
                    json!({"c": f.community, "p": f.resident_id}),
                )
                .await;
            data["grantPoints"]["position"].as_i64().unwrap()
        }
        _ => {
            submit(app, f, &f.resident, "RB-01", "FLOATING-GARBAGE")
                .await
                .1
        }
    }
}

/// Every kept read, as the people who use it ask: served again from memory
/// while the log stands still, and never stale across a commit that moves
/// what it shows, read `atLeast` that commit or after the read models
/// caught up.
#[tokio::test]
async fn each_kept_read_is_served_again_until_a_commit_moves_it() {
    let app = TestApp::spawn().await;
    let f = funded(&app).await;
    // One of each beforehand, so that every read has something to show.
    submit(&app, &f, &f.resident, "RB-02", "FLOATING-GARBAGE").await;
    let first = write_for(&app, &f, "wallet").await;
    let table = [
        // A report counts in its grid and in the level 1 grid above it.
        ("gridLedgers", GRID_LEDGERS, &f.admin, 2),
        ("statistics", STATISTICS, &f.admin, 1),
        ("reports", REPORTS, &f.resident, 1),
        ("wallet", WALLET, &f.resident, 2),
        ("leaderboard", LEADERBOARD, &f.resident, 0),
    ];
    for (read, query, token, moved) in table {
        let ask = |at: Option<i64>| {
            let variables = json!({"c": f.community, "at": at});
            app.ok(Some(token), query, variables)
        };
        caught_up(&app, &f).await;
        let before = ask(Some(first)).await;
        let hits = app.reads.hits();
        let again = ask(None).await;
        assert_eq!(before, again, "{read}: the same answer again");
        // The wallet's statement is a second kept read in the same request.
        let kept = if read == "wallet" { 2 } else { 1 };
        assert_eq!(app.reads.hits(), hits + kept, "{read}: served from memory");

        let position = write_for(&app, &f, read).await;
        let after = ask(Some(position)).await;
        assert_eq!(
            figure(read, &after),
            figure(read, &before) + moved,
            "{read}: the commit shows at once: {before} then {after}"
        );
        let settled = ask(None).await;
        assert_eq!(after, settled, "{read}: and is what is kept after it");
    }
}

/// A second server on the same database keeps its own answers; another
/// process's commit reaches it through NOTIFY and retires them.
#[tokio::test]
async fn a_commit_by_another_process_retires_the_answers_this_one_kept() {
    let app = TestApp::spawn().await;
    let f = app.fixture().await;
    let other = app.second_process().await;
    let position = submit(&app, &f, &f.resident, "RB-01", "FLOATING-GARBAGE")
        .await
        .1;
    let ask = |at: Option<i64>| {
        app.ok_at(
            &other,
            Some(&f.admin),
            GRID_LEDGERS,
            json!({"c": f.community, "at": at}),
        )
    };
    caught_up(&app, &f).await;
    let before = figure("gridLedgers", &ask(Some(position)).await);
    let hits = other.reads.hits();
    assert_eq!(figure("gridLedgers", &ask(None).await), before);
    assert_eq!(other.reads.hits(), hits + 1, "kept by the other process");

    submit(&app, &f, &f.resident, "RB-02", "FLOATING-GARBAGE").await;
    let mut seen = before;
    for _ in 0..200 {
        seen = figure("gridLedgers", &ask(None).await);
        if seen == before + 1 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    assert_eq!(seen, before + 1, "the other process shows the new report");
    other.stop().await;
}

/// What changes with the time alone is kept only for as long as it holds:
/// a grid's overdue count until its next deadline, a month's board until
/// the month turns. No commit happens in between (the deadline watcher is
/// not running).
#[tokio::test]
async fn a_kept_answer_ends_when_the_time_it_holds_for_does() {
    let app = TestApp::spawn().await;
    let f = funded(&app).await;
    submit(&app, &f, &f.resident, "RB-01", "FLOATING-GARBAGE").await;
    // Read as fresh as the last write, so that each read model has folded
    // the whole log and its answer is kept.
    let last = write_for(&app, &f, "leaderboard").await;
    let overdue = |data: &Value| -> i64 {
        sum(data["gridLedgers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|grid| grid["overdue"].as_i64().unwrap()))
    };
    let ask = async |query: &str, token: &str, at: i64| {
        app.ok(Some(token), query, json!({"c": f.community, "at": at}))
            .await
    };
    let table: [(&str, &str, &String, i64, i64, i64); 2] = [
        // The first response is due 4 hours after the submission; the
        // report counts in its grid and in the level 1 grid above it.
        ("gridLedgers", GRID_LEDGERS, &f.admin, last, 5, 2),
        // 2026-11-02 plus 30 days is in December: November's board is
        // not this month's.
        ("leaderboard", LEADERBOARD, &f.resident, last, 30 * 24, -1),
    ];
    for (read, query, token, position, hours, change) in table {
        let shown = |data: &Value| match read {
            "gridLedgers" => overdue(data),
            _ => figure(read, data),
        };
        caught_up(&app, &f).await;
        let before = shown(&ask(query, token, position).await);
        let hits = app.reads.hits();
        assert_eq!(shown(&ask(query, token, position).await), before);
        assert_eq!(app.reads.hits(), hits + 1, "{read}: kept while it holds");
        let head = app.head(f.community).await;
        app.clock.advance_hours(hours);
        let later = shown(&ask(query, token, position).await);
        assert_eq!(later, before + change, "{read}: {hours} hours later");
        assert_eq!(app.head(f.community).await, head, "no commit in between");
    }
}

/// An erasure is no commit to the log, but a name on a kept board leaves
/// with it.
#[tokio::test]
async fn an_erasure_takes_a_name_off_a_kept_leaderboard() {
    let app = TestApp::spawn().await;
    let f = funded(&app).await;
    let phone = "+86 138-0013-8001";
    app.ok(
        None,
        "mutation($c: UUID!, $p: String!) { requestSignupCode(communityId: $c, phone: $p, displayName: \"王大爷\") { expiresInSeconds } }",
        json!({"c": f.community, "p": phone}),
    )
    .await;
    let code = app.codes.last_for("+8613800138001");
    let signed = app
        .ok(
            None,
            "mutation($c: UUID!, $p: String!, $k: String!) { verifySignupCode(communityId: $c, phone: $p, code: $k) { token personId } }",
            json!({"c": f.community, "p": phone, "k": code}),
        )
        .await;
    let person: Uuid = signed["verifySignupCode"]["personId"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let granted = app
        .ok(
            Some(&f.admin),
            GRANT,
            json!({"c": f.community, "p": person}),
        )
        .await["grantPoints"]["position"]
        .as_i64()
        .unwrap();
    let board = || async {
        let data = app
            .ok(
                Some(&f.admin),
                LEADERBOARD,
                json!({"c": f.community, "at": granted}),
            )
            .await;
        data["leaderboard"]["entries"][0]["name"].clone()
    };
    caught_up(&app, &f).await;
    assert_eq!(board().await, "王大爷");
    let hits = app.reads.hits();
    assert_eq!(board().await, "王大爷");
    assert_eq!(app.reads.hits(), hits + 1);
    app.ok(
        Some(&f.admin),
        "mutation($c: UUID!, $p: UUID!) { eraseResident(communityId: $c, residentId: $p, reason: \"本人申请\") { profileErased } }",
        json!({"c": f.community, "p": person}),
    )
    .await;
    assert_ne!(board().await, "王大爷", "the erased name is gone at once");
}

/// A hidden report kept for its reporter's list is never served to another
/// resident: who asks is part of the question.
#[tokio::test]
async fn a_list_kept_for_one_caller_is_never_served_to_another() {
    let app = TestApp::spawn().await;
    let f = app.fixture().await;
    let (report, _) = submit(&app, &f, &f.resident, "RB-01", "FLOATING-GARBAGE").await;
    let hidden = app
        .ok(
            Some(&f.admin),
            "mutation($c: UUID!, $r: UUID!) { hideReport(communityId: $c, reportId: $r, reason: \"含个人信息\") { position } }",
            json!({"c": f.community, "r": report}),
        )
        .await["hideReport"]["position"]
        .as_i64()
        .unwrap();
    let listed = async |token: &str| {
        app.ok(
            Some(token),
            REPORTS,
            json!({"c": f.community, "at": hidden}),
        )
        .await
    };
    for _ in 0..2 {
        assert_eq!(figure("reports", &listed(&f.resident).await), 1);
        assert_eq!(figure("reports", &listed(&f.other_resident).await), 0);
        assert_eq!(figure("reports", &listed(&f.admin).await), 1);
    }
}

/// Hostile questions cannot fill the memory: at most so many answers and
/// rows are kept, the least recently used leaving first; with none allowed
/// nothing is kept.
#[tokio::test]
async fn kept_answers_stay_within_their_bounds() {
    let limits = [(4, 1_000), (100, 5), (0, 1_000)];
    for (entries_max, rows_max) in limits {
        let app = TestApp::spawn_with(Options {
            read_cache: projections::CacheLimits {
                entries_max,
                rows_max,
                ..projections::CacheLimits::default()
            },
            ..Options::default()
        })
        .await;
        let f = app.fixture().await;
        let position = app.head(f.community).await;
        let grids = [None, Some(f.grid1), Some(f.grid1a), Some(f.grid2)];
        for round in 0..2 {
            for (month, grid) in (1..=12).zip(grids.iter().cycle()) {
                let month = format!("2026-{month:02}");
                app.ok(
                    Some(&f.admin),
                    "query($c: UUID!, $m: String!, $at: Int) { statistics(communityId: $c, fromMonth: $m, toMonth: $m, atLeast: $at) { received } }",
                    json!({"c": f.community, "m": month, "at": position}),
                )
                .await;
                app.ok(
                    Some(&f.admin),
                    "query($c: UUID!, $g: UUID, $at: Int) { gridLedgers(communityId: $c, gridId: $g, atLeast: $at) { open } }",
                    json!({"c": f.community, "g": grid, "at": position}),
                )
                .await;
                assert!(app.reads.entries() <= entries_max, "round {round}");
                assert!(app.reads.rows() <= rows_max, "round {round}");
            }
        }
        if entries_max == 0 {
            assert_eq!(app.reads.hits(), 0, "none kept, none served");
        } else {
            assert!(app.reads.entries() > 0, "some kept");
        }
    }
}

/// While a read model lags behind the log, what it answers is served but
/// not kept: it will move without another commit.
#[tokio::test]
async fn an_answer_read_while_its_model_lags_is_not_kept() {
    let app = TestApp::spawn_with(Options {
        run_projections: false,
        run_earning: false,
        ..Options::default()
    })
    .await;
    let f = app.fixture().await;
    for _ in 0..3 {
        app.ok(Some(&f.admin), GRID_LEDGERS, json!({"c": f.community}))
            .await;
    }
    assert_eq!(app.reads.hits(), 0);
    assert_eq!(app.reads.entries(), 0);
}

/// An answer is kept for `age_max` at most even when nothing was announced:
/// the bound on staleness should the process that committed die before
/// announcing it.
#[tokio::test]
async fn an_answer_is_kept_no_longer_than_its_age_allows() {
    let app = TestApp::spawn_with(Options {
        read_cache: projections::CacheLimits {
            // Long enough that a loaded machine asks twice within it.
            age_max: std::time::Duration::from_secs(3),
            ..projections::CacheLimits::default()
        },
        ..Options::default()
    })
    .await;
    let f = app.fixture().await;
    caught_up(&app, &f).await;
    let ask = async || {
        app.ok(Some(&f.admin), GRID_LEDGERS, json!({"c": f.community}))
            .await
    };
    ask().await;
    let hits = app.reads.hits();
    ask().await;
    assert_eq!(app.reads.hits(), hits + 1, "young: served again");
    tokio::time::sleep(std::time::Duration::from_millis(3_200)).await;
    ask().await;
    assert_eq!(app.reads.hits(), hits + 1, "too old: read again");
}

/// Readers and writers at once, in one community: no read is served a
/// kept answer older than the position it asked for. (Reads without
/// `atLeast` promise no more than before: what the model has folded.)
#[tokio::test]
async fn under_concurrent_writes_no_read_misses_what_it_waited_for() {
    use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
    use std::sync::{Arc, Mutex};
    let app = Arc::new(TestApp::spawn().await);
    let f = Arc::new(app.fixture().await);
    let received = async |app: &TestApp, f: &Fixture, at: Option<i64>| -> i64 {
        let data = app
            .ok(
                Some(&f.admin),
                STATISTICS,
                json!({"c": f.community, "at": at}),
            )
            .await;
        figure("statistics", &data)
    };
    // Positions of the submissions committed so far, and the newest.
    let filed = Arc::new(Mutex::new(Vec::<i64>::new()));
    let newest = Arc::new(AtomicI64::new(0));
    let writing = Arc::new(AtomicBool::new(true));
    let writers: Vec<_> = (0..4)
        .map(|writer| {
            let (app, f, filed, newest) = (app.clone(), f.clone(), filed.clone(), newest.clone());
            tokio::spawn(async move {
                let site = ["RB-01", "RB-02", "MS-01", "RB-01"][writer];
                for _ in 0..12 {
                    let (_, position) =
                        submit(&app, &f, &f.resident, site, "FLOATING-GARBAGE").await;
                    filed.lock().unwrap().push(position);
                    newest.fetch_max(position, Ordering::SeqCst);
                }
            })
        })
        .collect();
    let readers: Vec<_> = (0..12)
        .map(|reader| {
            let (app, f, filed, newest, writing) = (
                app.clone(),
                f.clone(),
                filed.clone(),
                newest.clone(),
                writing.clone(),
            );
            tokio::spawn(async move {
                let mut reads = 0;
                while writing.load(Ordering::SeqCst) || reads < 5 {
                    // Half ask to be at least as fresh as the newest commit
                    // they know of; half take what is there.
                    let at = (reader % 2 == 0).then(|| newest.load(Ordering::SeqCst));
                    let committed_before = at.map(|at| {
                        filed.lock().unwrap().iter().filter(|p| **p <= at).count() as i64
                    });
                    let seen = received(&app, &f, at).await;
                    if let Some(committed) = committed_before {
                        assert!(seen >= committed, "reader {reader}: {seen} < {committed}");
                    }
                    reads += 1;
                }
                reads
            })
        })
        .collect();
    for writer in writers {
        writer.await.unwrap();
    }
    writing.store(false, Ordering::SeqCst);
    for reader in readers {
        assert!(reader.await.unwrap() >= 5);
    }
    let last = newest.load(Ordering::SeqCst);
    assert_eq!(
        received(&app, &f, Some(last)).await,
        48,
        "every report counted"
    );
    // Once the writes stop and the models catch up, answers are kept again.
    caught_up(&app, &f).await;
    received(&app, &f, None).await;
    let hits = app.reads.hits();
    assert_eq!(received(&app, &f, None).await, 48);
    assert_eq!(
        app.reads.hits(),
        hits + 1,
        "kept again once the log is still"
    );
}
