//! Reports end to end over real HTTP: a resident reports from a site code,
//! staff work it, the resident confirms; the grid ledger, the lists, the
//! statistics and a live subscription each show it.

use serde_json::json;

use crate::app::{act, code_of, submit, Subscription, TestApp};

const LEDGER: &str = "query($c: UUID!, $g: UUID, $p: Int) {
    gridLedgers(communityId: $c, gridId: $g, atLeast: $p) {
        gridId open overdue resolvedThisMonth medianFirstResponseSeconds medianResolutionSeconds } }";

#[tokio::test]
async fn a_report_from_a_site_code_is_worked_and_confirmed() {
    let app = TestApp::spawn().await;
    let f = app.fixture().await;
    let mut live = Subscription::open(
        &app,
        &f.resident,
        "subscription($c: UUID!, $g: UUID) { reportChanged(communityId: $c, gridId: $g) { reportId state eventType position } }",
        json!({"c": f.community, "g": f.grid1}),
    )
    .await;

    let (report, _) = submit(&app, &f, &f.resident, "RB-01", "FLOATING-GARBAGE").await;
    let change = live.next().await;
    assert_eq!(change["reportChanged"]["reportId"], report.to_string());
    assert_eq!(change["reportChanged"]["state"], "SUBMITTED");

    app.clock.advance_hours(1);
    assert_eq!(
        code_of(&act(&app, &f, &f.admin, "acceptReport", report).await),
        "OK"
    );
    let assign = format!("assignReport(workerId: \"{}\")", f.worker_id);
    assert_eq!(
        code_of(&act(&app, &f, &f.admin, &assign, report).await),
        "OK"
    );
    assert_eq!(
        code_of(&act(&app, &f, &f.worker, "startWork", report).await),
        "OK"
    );
    app.clock.advance_hours(5);
    let resolve = "resolveReport(notes: \"清理完毕\", photos: [\"https://img.example/after.jpg\"])";
    assert_eq!(
        code_of(&act(&app, &f, &f.worker, resolve, report).await),
        "OK"
    );
    let confirmed = act(&app, &f, &f.resident, "confirmReport", report).await;
    assert_eq!(
        confirmed["data"]["confirmReport"]["state"], "CONFIRMED",
        "{confirmed}"
    );
    let position = confirmed["data"]["confirmReport"]["position"]
        .as_i64()
        .unwrap();

    let mut states = Vec::new();
    while states.last().map(String::as_str) != Some("CONFIRMED") {
        let change = live.next().await;
        states.push(
            change["reportChanged"]["state"]
                .as_str()
                .unwrap()
                .to_string(),
        );
    }
    assert_eq!(
        states,
        [
            "ACCEPTED",
            "ASSIGNED",
            "IN_PROGRESS",
            "RESOLVED",
            "CONFIRMED"
        ],
        "the subscription tells every step, in order"
    );

    // The level 2 grid's ledger and its level 1 grid's both count it.
    for grid in [f.grid1a, f.grid1] {
        let data = app
            .ok(
                Some(&f.resident),
                LEDGER,
                json!({"c": f.community, "g": grid, "p": position}),
            )
            .await;
        let ledger = &data["gridLedgers"][0];
        assert_eq!(
            ledger["open"], 0,
            "confirmed waits for no work, so it is not open: {ledger}"
        );
        assert_eq!(ledger["resolvedThisMonth"], 1, "{ledger}");
        assert_eq!(ledger["medianFirstResponseSeconds"], 3600, "{ledger}");
        assert_eq!(ledger["medianResolutionSeconds"], 6 * 3600, "{ledger}");
    }
    let other = app
        .ok(
            Some(&f.resident),
            LEDGER,
            json!({"c": f.community, "g": f.grid2, "p": position}),
        )
        .await;
    assert_eq!(other["gridLedgers"][0]["open"], 0);

    let list = app
        .ok(
            Some(&f.worker),
            "query($c: UUID!, $g: UUID) { reports(communityId: $c, filter: {gridId: $g, states: [CONFIRMED]}) {
                edges { node { id state text photos reporterId timeline { eventType actorRole note } } } } }",
            json!({"c": f.community, "g": f.grid1}),
        )
        .await;
    let node = &list["reports"]["edges"][0]["node"];
    assert_eq!(node["id"], report.to_string());
    assert_eq!(node["text"], "河面漂浮垃圾很多");
    assert_eq!(node["photos"], json!(["https://img.example/1.jpg"]));
    assert_eq!(
        node["reporterId"],
        f.resident_id.to_string(),
        "staff see the reporter"
    );
    let steps: Vec<&str> = node["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .map(|step| step["eventType"].as_str().unwrap())
        .collect();
    assert_eq!(
        steps,
        [
            "ReportSubmitted",
            "ReportAccepted",
            "ReportAssigned",
            "ReportWorkStarted",
            "ReportResolved",
            "ReportConfirmed"
        ]
    );
    assert_eq!(node["timeline"][4]["note"], "清理完毕");

    let stats = app
        .ok(
            Some(&f.resident),
            "query($c: UUID!) { statistics(communityId: $c) { month category received accepted resolved escalated reopened } }",
            json!({"c": f.community}),
        )
        .await;
    assert_eq!(
        stats["statistics"],
        json!([{"month": "2026-11", "category": "FLOATING-GARBAGE", "received": 1,
            "accepted": 1, "resolved": 1, "escalated": 0, "reopened": 0}])
    );

    // Another resident sees the public fields, never the reporter.
    let public = app
        .ok(
            Some(&f.other_resident),
            "query($c: UUID!, $r: UUID!) { report(communityId: $c, reportId: $r) { state reporterId timeline { actorId actorRole detail } } }",
            json!({"c": f.community, "r": report}),
        )
        .await;
    assert_eq!(public["report"]["reporterId"], json!(null));
    assert_eq!(public["report"]["timeline"][0]["actorId"], json!(null));
    assert_eq!(public["report"]["timeline"][0]["detail"], json!(null));
    app.stop().await;
}

#[tokio::test]
async fn a_report_escalated_to_a_department_is_resolved_there() {
    let app = TestApp::spawn().await;
    let f = app.fixture().await;
    let (report, _) = submit(&app, &f, &f.resident, "RB-01", "SEWAGE-OUTFALL").await;
    assert_eq!(
        code_of(&act(&app, &f, &f.worker, "acceptReport", report).await),
        "OK"
    );
    let refused = act(&app, &f, &f.department, "startWork", report).await;
    assert_eq!(
        code_of(&refused),
        "FORBIDDEN",
        "not escalated yet: {refused}"
    );
    let escalated = act(&app, &f, &f.worker, "escalateReport", report).await;
    assert_eq!(
        escalated["data"]["escalateReport"]["state"], "ESCALATED",
        "{escalated}"
    );
    let elsewhere = act(&app, &f, &f.other_department, "startWork", report).await;
    assert_eq!(
        code_of(&elsewhere),
        "FORBIDDEN",
        "another department: {elsewhere}"
    );
    assert_eq!(
        code_of(&act(&app, &f, &f.department, "startWork", report).await),
        "OK"
    );
    let resolved = act(
        &app,
        &f,
        &f.department,
        "resolveReport(notes: \"已截污\")",
        report,
    )
    .await;
    assert_eq!(
        resolved["data"]["resolveReport"]["state"], "RESOLVED",
        "{resolved}"
    );
    let confirmed = act(&app, &f, &f.inspector, "confirmReport", report).await;
    let position = confirmed["data"]["confirmReport"]["position"]
        .as_i64()
        .unwrap();

    let data = app
        .ok(
            Some(&f.admin),
            "query($c: UUID!, $d: UUID!, $p: Int) {
                reports(communityId: $c, filter: {departmentId: $d}, atLeast: $p) { edges { node { id state departmentId } } }
                statistics(communityId: $c, atLeast: $p) { category escalated resolved } }",
            json!({"c": f.community, "d": f.department_id, "p": position}),
        )
        .await;
    let node = &data["reports"]["edges"][0]["node"];
    assert_eq!(node["id"], report.to_string());
    assert_eq!(node["state"], "CONFIRMED");
    assert_eq!(
        data["statistics"],
        json!([{"category": "SEWAGE-OUTFALL", "escalated": 1, "resolved": 1}])
    );
    app.stop().await;
}

#[tokio::test]
async fn a_missed_deadline_escalates_exactly_once() {
    let app = TestApp::spawn().await;
    let f = app.fixture().await;
    let (report, position) = submit(&app, &f, &f.resident, "RB-01", "FLOATING-GARBAGE").await;
    let query = "query($c: UUID!, $r: UUID!, $p: Int) { report(communityId: $c, reportId: $r, atLeast: $p) {
        overdue firstResponseMissed resolutionMissed escalation position timeline { eventType } } }";
    let read = |position: i64| {
        app.ok(
            Some(&f.admin),
            query,
            json!({"c": f.community, "r": report, "p": position}),
        )
    };
    read(position).await;
    assert_eq!(app.watcher.tick().await.unwrap(), 0, "nothing is due yet");

    // The first response was due after 4 hours.
    app.clock.advance_hours(5);
    assert_eq!(app.watcher.tick().await.unwrap(), 1);
    let head = app.head(f.community).await;
    let data = read(head).await;
    assert_eq!(data["report"]["firstResponseMissed"], true);
    assert_eq!(data["report"]["overdue"], true);
    assert_eq!(data["report"]["escalation"], "LEVEL_1_GRID_LEAD");
    for _ in 0..3 {
        assert_eq!(app.watcher.tick().await.unwrap(), 0, "recorded once only");
    }
    // Two watchers racing record it once as well.
    let (a, b) = tokio::join!(app.watcher.tick(), app.watcher.tick());
    assert_eq!(a.unwrap() + b.unwrap(), 0);

    // Accepted late; the resolution deadline (48 h) passes too.
    assert_eq!(
        code_of(&act(&app, &f, &f.admin, "acceptReport", report).await),
        "OK"
    );
    app.clock.advance_hours(48);
    let (a, b) = tokio::join!(app.watcher.tick(), app.watcher.tick());
    assert_eq!(
        a.unwrap() + b.unwrap(),
        1,
        "two watchers at once record it once"
    );
    let head = app.head(f.community).await;
    let data = read(head).await;
    assert_eq!(data["report"]["resolutionMissed"], true);
    assert_eq!(data["report"]["escalation"], "COMMUNITY_ADMIN");
    let missed = data["report"]["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|step| step["eventType"] == "ReportDeadlineMissed")
        .count();
    assert_eq!(missed, 2, "one per deadline");
    let overdue = app
        .ok(
            Some(&f.admin),
            "query($c: UUID!) { reports(communityId: $c, filter: {overdue: true}) { edges { node { id } } }
                gridLedgers(communityId: $c) { name overdue } }",
            json!({"c": f.community}),
        )
        .await;
    assert_eq!(overdue["reports"]["edges"].as_array().unwrap().len(), 1);
    app.stop().await;
}

#[tokio::test]
async fn duplicates_are_flagged_supported_and_merged() {
    let app = TestApp::spawn().await;
    let f = app.fixture().await;
    let (original, position) = submit(&app, &f, &f.resident, "RB-01", "FLOATING-GARBAGE").await;
    app.ok(
        Some(&f.admin),
        "query($c: UUID!, $r: UUID!, $p: Int) { report(communityId: $c, reportId: $r, atLeast: $p) { id } }",
        json!({"c": f.community, "r": original, "p": position}),
    )
    .await;
    let second = app
        .ok(
            Some(&f.other_resident),
            crate::app::SUBMIT,
            json!({"c": f.community, "r": {"siteCode": "RB-01", "category": "FLOATING-GARBAGE", "text": "同一处垃圾"}}),
        )
        .await;
    assert_eq!(
        second["submitReport"]["likelyDuplicateOf"],
        original.to_string()
    );
    let duplicate: uuid::Uuid = second["submitReport"]["reportId"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    // A different category at the same site is no duplicate.
    let third = app
        .ok(
            Some(&f.other_resident),
            crate::app::SUBMIT,
            json!({"c": f.community, "r": {"siteCode": "RB-01", "category": "SEWAGE-OUTFALL", "text": "排污"}}),
        )
        .await;
    assert_eq!(third["submitReport"]["likelyDuplicateOf"], json!(null));

    let supported = act(&app, &f, &f.other_resident, "supportReport", original).await;
    assert_eq!(code_of(&supported), "OK");
    let again = act(&app, &f, &f.other_resident, "supportReport", original).await;
    assert_eq!(code_of(&again), "CONFLICT", "support counts once: {again}");
    let merge = format!("mergeReport(originalId: \"{original}\")");
    let merged = act(&app, &f, &f.worker, &merge, duplicate).await;
    assert_eq!(merged["data"]["mergeReport"]["state"], "MERGED", "{merged}");
    let position = merged["data"]["mergeReport"]["position"].as_i64().unwrap();
    let data = app
        .ok(
            Some(&f.admin),
            "query($c: UUID!, $a: UUID!, $b: UUID!, $p: Int) {
                a: report(communityId: $c, reportId: $a, atLeast: $p) { reporters supporters }
                b: report(communityId: $c, reportId: $b, atLeast: $p) { state mergedInto { id } } }",
            json!({"c": f.community, "a": original, "b": duplicate, "p": position}),
        )
        .await;
    assert_eq!(data["a"], json!({"reporters": 2, "supporters": 1}));
    assert_eq!(data["b"]["state"], "MERGED");
    assert_eq!(data["b"]["mergedInto"]["id"], original.to_string());
    app.stop().await;
}
