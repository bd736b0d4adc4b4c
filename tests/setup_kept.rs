//! Commands decided on the community's set-up as a process keeps it, without
//! reading it per request: whatever another process changed in the set-up
//! since, the command's outcome is the one the new set-up gives.

use app::clock::Clock;
use futures::future::join_all;
use serde_json::{json, Value};
use store::CommunityId;
use uuid::Uuid;

use crate::app::{accept, code_of, submit, Process, TestApp, SUBMIT};
use crate::points::PLACE;

const DEFINE_CATEGORY: &str = "mutation($c: UUID!, $k: CategoryInput!) {
    defineCategory(communityId: $c, category: $k) { id } }";
const SITE: &str = "query($c: UUID!, $code: String!) { site(communityId: $c, code: $code) { id } }";
const RETIRE_SITE: &str = "mutation($c: UUID!, $s: UUID!) {
    retireSite(communityId: $c, siteId: $s) { position } }";
const ADD_DEPARTMENT: &str = "mutation($c: UUID!) {
    addDepartment(communityId: $c, name: \"园林绿化科\") { id } }";
const SUGGEST: &str = "mutation($c: UUID!, $s: String!) {
    submitSuggestion(communityId: $c, siteCode: $s, text: \"这里可以加几张长椅\") { suggestionId } }";
const POINTS_RULES: &str = "mutation($c: UUID!, $r: PointsRulesInput!) {
    setPointsRules(communityId: $c, rules: $r) { position } }";

fn category(code: &str, resolution_hours: u32) -> Value {
    json!({"code": code, "name": code, "firstResponseHours": 2,
        "resolutionHours": resolution_hours, "departmentId": null, "acceptedReportPoints": "5"})
}

/// A report's submission as stored: (submitted at, resolution due), in
/// microseconds.
async fn submitted(app: &TestApp, community: Uuid, report: Uuid) -> (i64, i64) {
    let events = app
        .store
        .read_stream(
            CommunityId::new(community),
            &domain::streams::report(report),
            1,
            1,
        )
        .await
        .unwrap();
    let payload = events[0].payload_value().unwrap();
    let submission = &payload["ReportSubmitted"];
    (
        submission["at"].as_i64().unwrap(),
        submission["resolution_due"].as_i64().unwrap(),
    )
}

const HOUR: i64 = 3_600_000_000;

/// Each command that decides on the kept set-up, after another process
/// changed what it decides on: a change that would refuse it, one that
/// would let it through, and one that changes what it writes.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_set_up_changed_by_another_process_decides_every_command_kept_on_it() {
    let app = TestApp::spawn_quiet().await;
    let counter = app.counter().await;
    let f = &counter.f;
    let other: Process = app.second_process().await;
    let admin = Some(f.admin.as_str());
    let c = f.community;
    // This process reads the set-up once and keeps it from here on.
    let (warm, _) = submit(&app, f, &f.resident, "RB-01", "FLOATING-GARBAGE").await;
    let (at, due) = submitted(&app, c, warm).await;
    assert_eq!(due - at, 48 * HOUR);

    // A category defined elsewhere, then a report in it filed here: how
    // long after its filing it is due.
    let due_after_defining = |code: &'static str, hours: u32| {
        let (app, other) = (&app, &other);
        async move {
            let k = category(code, hours);
            app.ok_at(other, admin, DEFINE_CATEGORY, json!({"c": c, "k": k}))
                .await;
            let (report, _) = submit(app, f, &f.resident, "RB-01", code).await;
            let (at, due) = submitted(app, c, report).await;
            due - at
        }
    };
    // A deadline changed: the report is due by the new one.
    assert_eq!(
        due_after_defining("FLOATING-GARBAGE", 12).await,
        12 * HOUR,
        "decided on the new deadline"
    );
    // A category defined: a report in it is taken.
    assert_eq!(due_after_defining("BLOCKED-DRAIN", 24).await, 24 * HOUR);

    // A site retired elsewhere, by its code.
    let retire = |code: &'static str| {
        let (app, other) = (&app, &other);
        async move {
            let site = app
                .ok_at(other, admin, SITE, json!({"c": c, "code": code}))
                .await;
            let site = site["site"]["id"].clone();
            app.ok_at(other, admin, RETIRE_SITE, json!({"c": c, "s": site}))
                .await;
        }
    };
    // A site retired: no report is filed there, and nothing is stored.
    retire("RB-02").await;
    let head = app.head(c).await;
    let report = json!({"siteCode": "RB-02", "category": "FLOATING-GARBAGE", "text": "岸边有垃圾"});
    let refused = app
        .gql(Some(&f.resident), SUBMIT, json!({"c": c, "r": report}))
        .await;
    assert_eq!(code_of(&refused), "NOT_FOUND", "{refused}");
    assert_eq!(app.head(c).await, head);

    // A micro-space retired: its suggestion box is closed.
    let suggested = app.gql(None, SUGGEST, json!({"c": c, "s": "MS-01"})).await;
    assert_eq!(code_of(&suggested), "OK", "{suggested}");
    retire("MS-01").await;
    let head = app.head(c).await;
    let refused = app.gql(None, SUGGEST, json!({"c": c, "s": "MS-01"})).await;
    assert_eq!(code_of(&refused), "NOT_FOUND", "{refused}");
    assert_eq!(app.head(c).await, head);

    // A department added: a report can be escalated to it.
    accept(&app, f, &f.admin, warm).await;
    let parks = app
        .ok_at(&other, admin, ADD_DEPARTMENT, json!({"c": c}))
        .await;
    let parks = parks["addDepartment"]["id"].clone();
    let escalated = app
        .gql(
            admin,
            "mutation($c: UUID!, $r: UUID!, $d: UUID) {
                escalateReport(communityId: $c, reportId: $r, departmentId: $d) { state } }",
            json!({"c": c, "r": warm, "d": parks}),
        )
        .await;
    assert_eq!(code_of(&escalated), "OK", "{escalated}");

    // The hold period changed: a redemption placed now is held for the new one.
    app.grant(f, f.resident_id, "50").await;
    let gift = app.gift(&counter, "5", 10).await;
    let rules = json!({"resolvedReportBonus": "3", "suggestionAdopted": "8",
        "suggestionPartlyAdopted": "4", "volunteerHour": "2.5", "holdMinutes": 45});
    app.ok_at(&other, admin, POINTS_RULES, json!({"c": c, "r": rules}))
        .await;
    let input = json!({"residentId": f.resident_id, "giftId": gift, "quantity": 1,
        "idempotencyKey": "counter-1"});
    let placed = app
        .ok(Some(&counter.clerk), PLACE, json!({"c": c, "i": input}))
        .await;
    let expires: chrono::DateTime<chrono::Utc> = placed["placeRedemption"]["expiresAt"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let now = chrono::DateTime::from_timestamp_micros(app.clock.now().micros()).unwrap();
    assert_eq!(expires - now, chrono::TimeDelta::minutes(45), "{placed}");
    other.stop().await;
}

/// Real concurrency: residents file reports through one process while
/// another keeps changing the category's deadline. Every stored report is
/// due by the deadline the set-up had at its position in the log.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reports_filed_while_another_process_changes_the_deadline_follow_the_log() {
    let app = TestApp::spawn_quiet().await;
    let f = app.fixture().await;
    let other = app.second_process().await;
    let c = f.community;
    submit(&app, &f, &f.resident, "RB-01", "FLOATING-GARBAGE").await;
    let residents: Vec<String> = (0..16)
        .map(|_| app.token(c, Uuid::new_v4(), domain::values::Role::Citizen))
        .collect();
    // A resident told CONFLICT ("try again") tries again; only a report
    // filed is in the log, so a refusal stored nothing.
    let report =
        json!({"siteCode": "RB-01", "category": "FLOATING-GARBAGE", "text": "河面漂浮垃圾很多"});
    let filing = join_all(residents.iter().map(|resident| async {
        for _ in 0..8 {
            let mut attempts = 0;
            loop {
                attempts += 1;
                let filed = app
                    .gql(Some(resident), SUBMIT, json!({"c": c, "r": report}))
                    .await;
                match code_of(&filed).as_str() {
                    "OK" => break,
                    "CONFLICT" if attempts < 20 => continue,
                    other => panic!("{other}: {filed}"),
                }
            }
        }
    }));
    let changing = async {
        for hours in 10..20 {
            app.ok_at(
                &other,
                Some(&f.admin),
                DEFINE_CATEGORY,
                json!({"c": c, "k": category("FLOATING-GARBAGE", hours)}),
            )
            .await;
        }
    };
    futures::join!(filing, changing);
    let events = app
        .store
        .read_log(CommunityId::new(c), 1, 10_000)
        .await
        .unwrap();
    let mut hours = None;
    let mut checked = 0;
    for event in &events {
        let payload = event.payload_value().unwrap();
        if let Some(defined) = payload.get("CategoryDefined") {
            if defined["code"] == "FLOATING-GARBAGE" {
                hours = defined["category"]["resolution_hours"].as_i64();
            }
        }
        if let Some(submission) = payload.get("ReportSubmitted") {
            let due = submission["resolution_due"].as_i64().unwrap();
            let at = submission["at"].as_i64().unwrap();
            assert_eq!(
                Some((due - at) / HOUR),
                hours,
                "the report at {} follows the deadline then",
                event.position
            );
            checked += 1;
        }
    }
    assert_eq!(checked, 1 + 16 * 8);
    assert_eq!(hours, Some(19));
    other.stop().await;
}

/// Commands on one report decided on the state this process kept after
/// its own last write, while another process wrote the report since: each
/// outcome is the one the stored state gives, refusals included, and the
/// log holds exactly what was decided on it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_report_another_process_changed_is_decided_on_as_stored_not_as_kept() {
    use crate::app::{act, report_mutation};

    let app = TestApp::spawn_quiet().await;
    let f = app.fixture().await;
    let other = app.second_process().await;
    let c = f.community;
    let elsewhere = |mutation: &'static str, report: Uuid| {
        let (app, other, f) = (&app, &other, &f);
        async move {
            let query = report_mutation(mutation, "position");
            app.ok_at(other, Some(&f.admin), &query, json!({"c": c, "r": report}))
                .await;
        }
    };
    let events_of = |report: Uuid| {
        let app = &app;
        async move {
            app.store
                .read_stream(
                    CommunityId::new(c),
                    &domain::streams::report(report),
                    1,
                    100,
                )
                .await
                .unwrap()
                .len()
        }
    };
    // (what this process does first, what the other process does, what
    // this one then asks). Each runs twice: all in this process, which
    // gives the answer and the events, and with the middle step done by
    // the other process, which must give the same.
    let table: [(&str, &str, &str); 4] = [
        // Kept "submitted", stored "accepted": refused as stored.
        ("", "acceptReport", "acceptReport"),
        // Kept "submitted", stored "rejected": refused as stored.
        (
            "",
            "rejectReport(reason: {kind: NOT_ACTIONABLE})",
            "acceptReport",
        ),
        // Kept "hidden", stored "shown again": hidden again, not refused.
        (
            "hideReport(reason: \"含个人信息\")",
            "unhideReport",
            "hideReport(reason: \"仍含个人信息\")",
        ),
        // Kept "accepted" with no comment, stored with one: a second.
        (
            "acceptReport",
            "commentOnReport(text: \"已派人\")",
            "commentOnReport(text: \"已到场\")",
        ),
    ];
    let mut refusals = 0;
    for (first, between, then) in table {
        let mut outcomes = Vec::new();
        for split in [false, true] {
            let (report, _) = submit(&app, &f, &f.resident, "RB-01", "FLOATING-GARBAGE").await;
            if !first.is_empty() {
                let done = act(&app, &f, &f.admin, first, report).await;
                assert_eq!(code_of(&done), "OK", "{first}: {done}");
            }
            if split {
                elsewhere(between, report).await;
            } else {
                let done = act(&app, &f, &f.admin, between, report).await;
                assert_eq!(code_of(&done), "OK", "{between}: {done}");
            }
            let answer = act(&app, &f, &f.admin, then, report).await;
            outcomes.push((code_of(&answer), events_of(report).await));
        }
        assert_eq!(outcomes[1], outcomes[0], "{first} / {between} / {then}");
        refusals += usize::from(outcomes[0].0 != "OK");
    }
    assert_eq!(refusals, 2, "the table holds both refusals and changes");
    other.stop().await;
    app.stop().await;
}
