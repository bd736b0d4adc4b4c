//! Staff rules: a removed staff member's token is refused everywhere, staff
//! earn nothing for their own work by default, a finding outside the
//! worker's grids is refused, and a citizen never hears of a hidden report.

use domain::values::Role;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::app::*;

const REMOVE: &str =
    "mutation($c: UUID!, $p: UUID!) { removeStaff(communityId: $c, personId: $p) { position } }";
const START: &str = "mutation($c: UUID!) { startPatrol(communityId: $c) { id } }";
const STAFF_LIST: &str = "query($c: UUID!) { community(communityId: $c) { staff { personId } } }";

async fn start_patrol(app: &TestApp, f: &Fixture) -> Uuid {
    let data = app
        .ok(Some(&f.worker), START, json!({"c": f.community}))
        .await;
    data["startPatrol"]["id"].as_str().unwrap().parse().unwrap()
}

#[tokio::test]
async fn a_removed_staff_members_token_is_refused_for_every_mutation_and_staff_read() {
    let app = TestApp::spawn_quiet().await;
    let f = app.fixture().await;
    let patrol = start_patrol(&app, &f).await;
    let (report, _) = submit(&app, &f, &f.resident, "RB-01", "FLOATING-GARBAGE").await;
    let hidden = act(
        &app,
        &f,
        &f.admin,
        "hideReport(reason: \"含个人信息\")",
        report,
    )
    .await;
    assert_eq!(code_of(&hidden), "OK", "{hidden}");
    let department_person = Uuid::new_v4();
    let department = app.token(f.community, department_person, Role::Department);
    app.ok(
        Some(&f.admin),
        ASSIGN_STAFF,
        json!({"c": f.community, "s": {"personId": department_person, "role": "DEPARTMENT", "departmentId": f.department_id}}),
    )
    .await;
    // Before removal, the worker reads the hidden report.
    let report_query = "query($c: UUID!, $r: UUID!, $at: Int) { report(communityId: $c, reportId: $r, atLeast: $at) { id hidden } }";
    let at = app.head(f.community).await;
    let vars =
        json!({"c": f.community, "r": report, "p": patrol, "resident": f.resident_id, "at": at});
    let seen = app.gql(Some(&f.worker), report_query, vars.clone()).await;
    assert_eq!(code_of(&seen), "OK", "{seen}");

    for person in [f.worker_id, department_person] {
        app.ok(
            Some(&f.admin),
            REMOVE,
            json!({"c": f.community, "p": person}),
        )
        .await;
    }
    let before = app.db.event_count().await;
    let worker = Some(f.worker.as_str());
    let table: Vec<(&str, Option<&str>, &str)> = vec![
        ("check in", worker, "mutation($c: UUID!, $p: UUID!) { checkInPatrol(communityId: $c, patrolId: $p, siteCode: \"RB-01\") { id } }"),
        ("finding", worker, "mutation($c: UUID!, $p: UUID!) { recordPatrolFinding(communityId: $c, patrolId: $p, text: \"岸边有垃圾\") { position } }"),
        ("end patrol", worker, "mutation($c: UUID!, $p: UUID!) { endPatrol(communityId: $c, patrolId: $p) { id } }"),
        ("start patrol", worker, START),
        ("accept", worker, "mutation($c: UUID!, $r: UUID!) { acceptReport(communityId: $c, reportId: $r) { position } }"),
        ("comment", worker, "mutation($c: UUID!, $r: UUID!) { commentOnReport(communityId: $c, reportId: $r, text: \"已处理\") { position } }"),
        ("hidden report", worker, report_query),
        ("staff list", worker, STAFF_LIST),
        ("a balance", worker, "query($c: UUID!, $resident: UUID!) { wallet(communityId: $c, residentId: $resident) { balance } }"),
        ("report list", worker, "query($c: UUID!) { reports(communityId: $c) { edges { node { id } } } }"),
        ("department comment", Some(&department), "mutation($c: UUID!, $r: UUID!) { commentOnReport(communityId: $c, reportId: $r, text: \"收到\") { position } }"),
        ("department report", Some(&department), report_query),
    ];
    for (what, token, query) in table {
        let answer = app.gql(token, query, vars.clone()).await;
        assert_eq!(code_of(&answer), "FORBIDDEN", "{what}: {answer}");
    }
    assert_eq!(app.db.event_count().await, before, "nothing was stored");
    // Staff still on the list keep working.
    let other = app
        .gql(Some(&f.other_worker), START, json!({"c": f.community}))
        .await;
    assert_eq!(code_of(&other), "OK", "{other}");
    app.stop().await;
}

/// Many staff requests at once share the reads that vouch for their
/// tokens, yet none is vouched by a read older than itself: a worker
/// removed by another process is refused by every request sent after the
/// removal, while reads of the set-up that began before it are in flight.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_worker_removed_elsewhere_is_refused_by_every_request_after_it_under_load() {
    use std::sync::atomic::{AtomicBool, Ordering};

    let app = TestApp::spawn_quiet().await;
    let f = app.fixture().await;
    let other = app.second_process().await;
    let workers: Vec<(Uuid, String)> = (0..6)
        .map(|_| {
            let id = Uuid::new_v4();
            (id, app.token(f.community, id, Role::GridWorker))
        })
        .collect();
    for (id, _) in &workers {
        let staff = json!({"personId": id, "role": "GRID_WORKER", "gridIds": [f.grid1]});
        app.ok(
            Some(&f.admin),
            ASSIGN_STAFF,
            json!({"c": f.community, "s": staff}),
        )
        .await;
    }
    let vars = json!({"c": f.community});
    // Staff who stay keep this process reading the set-up all along.
    let done = AtomicBool::new(false);
    let load = (0..16).map(|_| async {
        let mut answered = 0usize;
        while !done.load(Ordering::Relaxed) {
            let answer = app
                .gql(Some(&f.other_worker), STAFF_LIST, vars.clone())
                .await;
            assert_eq!(code_of(&answer), "OK", "staff who stay: {answer}");
            answered += 1;
        }
        answered
    });
    let removals = async {
        for (id, token) in &workers {
            let before = app.gql(Some(token), STAFF_LIST, vars.clone()).await;
            assert_eq!(code_of(&before), "OK", "before the removal: {before}");
            app.ok_at(
                &other,
                Some(&f.admin),
                REMOVE,
                json!({"c": f.community, "p": id}),
            )
            .await;
            let after = futures::future::join_all(
                (0..16).map(|_| app.gql(Some(token), STAFF_LIST, vars.clone())),
            )
            .await;
            for answer in after {
                assert_eq!(code_of(&answer), "FORBIDDEN", "after the removal: {answer}");
            }
        }
        done.store(true, Ordering::Relaxed);
    };
    let (answered, ()) = tokio::join!(futures::future::join_all(load), removals);
    assert!(
        answered.iter().all(|n| *n > 0),
        "the load ran beside every removal: {answered:?}"
    );
    other.stop().await;
    app.stop().await;
}

async fn balance(app: &TestApp, f: &Fixture, person: Uuid) -> String {
    let head = app.head(f.community).await;
    let wallet = app.wallet(&f.admin, f.community, person, head).await;
    wallet["balance"].as_str().unwrap().to_string()
}

/// Waits until the earning process (and the points read model after it)
/// has followed the log to its head.
async fn earning_caught_up(app: &TestApp, f: &Fixture) {
    let client = app.db.client().await;
    for _ in 0..400 {
        let head = app.head(f.community).await;
        let row = client
            .query_opt(
                "SELECT position FROM projection_checkpoints c JOIN projection_generations g \
                 USING (projection, generation) WHERE c.projection = 'earning' \
                 AND g.state = 'live' AND c.community_id = $1",
                &[&f.community],
            )
            .await
            .unwrap();
        if row.is_some_and(|row| row.get::<_, i64>(0) == head) {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    panic!("the earning process did not catch up");
}

#[tokio::test]
async fn staff_earn_nothing_for_their_own_work_unless_the_rules_say_so() {
    let app = TestApp::spawn().await;
    let f = app.fixture().await;
    app.fund(&f, "1000").await;
    let worker_as_citizen = app.token(f.community, f.worker_id, Role::Citizen);
    // (who files, as which token; who accepts; does the filer earn?)
    let (own, _) = submit(&app, &f, &f.worker, "RB-01", "FLOATING-GARBAGE").await;
    accept(&app, &f, &f.admin, own).await;
    let (self_accepted, _) =
        submit(&app, &f, &worker_as_citizen, "RB-01", "FLOATING-GARBAGE").await;
    accept(&app, &f, &f.worker, self_accepted).await;
    let patrol = start_patrol(&app, &f).await;
    let finding = app
        .ok(
            Some(&f.worker),
            "mutation($c: UUID!, $p: UUID!) { recordPatrolFinding(communityId: $c, patrolId: $p, text: \"排口有污水\", siteCode: \"RB-01\", openReport: {category: \"FLOATING-GARBAGE\"}) { reportId } }",
            json!({"c": f.community, "p": patrol}),
        )
        .await;
    let found: Uuid = finding["recordPatrolFinding"]["reportId"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    accept(&app, &f, &f.admin, found).await;
    let (residents, _) = submit(&app, &f, &f.resident, "RB-01", "FLOATING-GARBAGE").await;
    accept(&app, &f, &f.worker, residents).await;
    earning_caught_up(&app, &f).await;
    assert_eq!(
        balance(&app, &f, f.worker_id).await,
        "0",
        "staff earned nothing"
    );
    assert_eq!(
        balance(&app, &f, f.resident_id).await,
        "5",
        "the resident earned"
    );

    // With staffEarn, a worker's own report earns; accepting one's own
    // report still earns nothing.
    app.ok(
        Some(&f.admin),
        "mutation($c: UUID!, $r: PointsRulesInput!) { setPointsRules(communityId: $c, rules: $r) { position } }",
        json!({"c": f.community, "r": {"resolvedReportBonus": "0", "suggestionAdopted": "0",
            "suggestionPartlyAdopted": "0", "volunteerHour": "0", "staffEarn": true}}),
    )
    .await;
    let (own, _) = submit(&app, &f, &f.worker, "RB-01", "FLOATING-GARBAGE").await;
    accept(&app, &f, &f.admin, own).await;
    let (self_accepted, _) =
        submit(&app, &f, &worker_as_citizen, "RB-01", "FLOATING-GARBAGE").await;
    accept(&app, &f, &f.worker, self_accepted).await;
    earning_caught_up(&app, &f).await;
    assert_eq!(
        balance(&app, &f, f.worker_id).await,
        "5",
        "one report earned"
    );
    app.stop().await;
}

#[tokio::test]
async fn a_finding_outside_the_workers_grids_is_refused_like_a_check_in() {
    let app = TestApp::spawn_quiet().await;
    let f = app.fixture().await;
    let patrol = start_patrol(&app, &f).await;
    let vars = json!({"c": f.community, "p": patrol});
    let before = app.db.event_count().await;
    for query in [
        "mutation($c: UUID!, $p: UUID!) { checkInPatrol(communityId: $c, patrolId: $p, siteCode: \"RB-02\") { id } }",
        "mutation($c: UUID!, $p: UUID!) { recordPatrolFinding(communityId: $c, patrolId: $p, text: \"有垃圾\", siteCode: \"RB-02\") { position } }",
        "mutation($c: UUID!, $p: UUID!) { recordPatrolFinding(communityId: $c, patrolId: $p, text: \"有垃圾\", siteCode: \"RB-02\", openReport: {category: \"FLOATING-GARBAGE\"}) { position } }",
        "mutation($c: UUID!, $p: UUID!) { recordPatrolFinding(communityId: $c, patrolId: $p, text: \"有垃圾\", openReport: {category: \"FLOATING-GARBAGE\", latitudeE6: 30890000, longitudeE6: 104260000}) { position } }",
    ] {
        let answer = app.gql(Some(&f.worker), query, vars.clone()).await;
        assert_eq!(code_of(&answer), "FORBIDDEN", "{query}: {answer}");
    }
    assert_eq!(app.db.event_count().await, before, "nothing was stored");
    let inside = app
        .gql(
            Some(&f.worker),
            "mutation($c: UUID!, $p: UUID!) { recordPatrolFinding(communityId: $c, patrolId: $p, text: \"有垃圾\", siteCode: \"RB-01\") { position } }",
            vars,
        )
        .await;
    assert_eq!(code_of(&inside), "OK", "{inside}");
    app.stop().await;
}

#[tokio::test]
async fn a_citizen_never_hears_of_changes_to_a_report_hidden_from_them() {
    let app = TestApp::spawn_quiet().await;
    let f = app.fixture().await;
    let changed =
        "subscription($c: UUID!) { reportChanged(communityId: $c) { reportId eventType } }";
    let mut citizen =
        Subscription::open(&app, &f.other_resident, changed, json!({"c": f.community})).await;
    let (hidden, _) = submit(&app, &f, &f.resident, "RB-01", "FLOATING-GARBAGE").await;
    let heard: Value = citizen.next().await;
    assert_eq!(heard["reportChanged"]["reportId"], json!(hidden), "{heard}");
    act(
        &app,
        &f,
        &f.admin,
        "hideReport(reason: \"含个人信息\")",
        hidden,
    )
    .await;
    act(
        &app,
        &f,
        &f.admin,
        "commentOnReport(text: \"已派人\")",
        hidden,
    )
    .await;
    let (visible, _) = submit(&app, &f, &f.resident, "RB-02", "FLOATING-GARBAGE").await;
    let next: Value = citizen.next().await;
    assert_eq!(
        next["reportChanged"]["reportId"],
        json!(visible),
        "the hide and the comment were not told: {next}"
    );
    app.stop().await;
}
