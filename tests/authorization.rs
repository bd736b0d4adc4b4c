//! Every role against every report mutation and the sensitive reads,
//! allowed and forbidden, including other grids, other departments and
//! another community's admin.

use serde_json::{json, Value};
use uuid::Uuid;

use crate::app::{act, code_of, submit, Fixture, TestApp};

/// The token of a role in the fixture (`None`: no token at all).
fn token<'a>(f: &'a Fixture, who: &str) -> Option<&'a str> {
    Some(match who {
        "anonymous" => return None,
        "reporter" => &f.resident,
        "other_resident" => &f.other_resident,
        "worker" => &f.worker,
        "other_worker" => &f.other_worker,
        "department" => &f.department,
        "other_department" => &f.other_department,
        "admin" => &f.admin,
        "foreign_admin" => &f.foreign_admin,
        "auditor" => &f.auditor,
        "inspector" => &f.inspector,
        other => panic!("no role {other}"),
    })
}

/// A fresh report of the reporter at site RB-01 (grid 1a, inside grid 1),
/// moved to `state` by the admin and the grid 1 worker.
async fn report_in(app: &TestApp, f: &Fixture, state: &str) -> Uuid {
    let category = if state == "escalated" {
        "SEWAGE-OUTFALL"
    } else {
        "FLOATING-GARBAGE"
    };
    let (report, _) = submit(app, f, &f.resident, "RB-01", category).await;
    let assign = format!("assignReport(workerId: \"{}\")", f.worker_id);
    let steps: &[(&str, &str)] = match state {
        "submitted" => &[],
        "accepted" => &[("admin", "acceptReport")],
        "escalated" => &[("admin", "acceptReport"), ("admin", "escalateReport")],
        "assigned" => &[("admin", "acceptReport"), ("admin", &assign)],
        "in_progress" => &[
            ("admin", "acceptReport"),
            ("admin", &assign),
            ("worker", "startWork"),
        ],
        "resolved" => &[
            ("admin", "acceptReport"),
            ("admin", &assign),
            ("worker", "startWork"),
            ("worker", "resolveReport(notes: \"done\")"),
        ],
        "confirmed" => &[
            ("admin", "acceptReport"),
            ("admin", &assign),
            ("worker", "startWork"),
            ("worker", "resolveReport(notes: \"done\")"),
            ("reporter", "confirmReport"),
        ],
        other => panic!("no state {other}"),
    };
    for (who, mutation) in steps {
        let response = act(app, f, token(f, who).unwrap(), mutation, report).await;
        assert_eq!(code_of(&response), "OK", "{mutation}: {response}");
    }
    report
}

#[tokio::test]
async fn every_role_against_every_report_mutation() {
    let app = TestApp::spawn().await;
    let f = app.fixture().await;
    let assign = format!("assignReport(workerId: \"{}\")", f.worker_id);
    #[rustfmt::skip]
    let table: Vec<(&str, &str, &str, &str)> = vec![
        // mutation, state, who, expected code
        ("acceptReport", "submitted", "admin", "OK"),
        ("acceptReport", "submitted", "worker", "OK"),
        ("acceptReport", "submitted", "other_worker", "FORBIDDEN"),
        ("acceptReport", "submitted", "department", "FORBIDDEN"),
        ("acceptReport", "submitted", "reporter", "FORBIDDEN"),
        ("acceptReport", "submitted", "inspector", "FORBIDDEN"),
        ("acceptReport", "submitted", "auditor", "FORBIDDEN"),
        ("acceptReport", "submitted", "foreign_admin", "FORBIDDEN"),
        ("acceptReport", "submitted", "anonymous", "UNAUTHENTICATED"),
        ("rejectReport(reason: {kind: NOT_ACTIONABLE})", "submitted", "worker", "OK"),
        ("rejectReport(reason: {kind: NOT_ACTIONABLE})", "submitted", "other_worker", "FORBIDDEN"),
        ("rejectReport(reason: {kind: NOT_ACTIONABLE})", "submitted", "reporter", "FORBIDDEN"),
        (&assign, "accepted", "admin", "OK"),
        (&assign, "accepted", "worker", "OK"),
        (&assign, "accepted", "other_worker", "FORBIDDEN"),
        (&assign, "accepted", "reporter", "FORBIDDEN"),
        (&assign, "accepted", "auditor", "FORBIDDEN"),
        ("escalateReport", "accepted", "worker", "VALIDATION"),
        ("escalateReport", "escalated", "worker", "CONFLICT"),
        ("escalateReport", "in_progress", "other_worker", "FORBIDDEN"),
        ("escalateReport", "in_progress", "department", "FORBIDDEN"),
        ("escalateReport", "in_progress", "reporter", "FORBIDDEN"),
        ("startWork", "assigned", "worker", "OK"),
        ("startWork", "assigned", "admin", "OK"),
        ("startWork", "assigned", "other_worker", "FORBIDDEN"),
        ("startWork", "assigned", "department", "FORBIDDEN"),
        ("startWork", "assigned", "reporter", "FORBIDDEN"),
        ("startWork", "escalated", "department", "OK"),
        ("startWork", "escalated", "other_department", "FORBIDDEN"),
        ("startWork", "escalated", "worker", "FORBIDDEN"),
        ("resolveReport(notes: \"ok\")", "in_progress", "worker", "OK"),
        ("resolveReport(notes: \"ok\")", "in_progress", "other_worker", "FORBIDDEN"),
        ("resolveReport(notes: \"ok\")", "in_progress", "reporter", "FORBIDDEN"),
        ("resolveReport(notes: \"ok\")", "in_progress", "auditor", "FORBIDDEN"),
        ("confirmReport", "resolved", "reporter", "OK"),
        ("confirmReport", "resolved", "inspector", "OK"),
        ("confirmReport", "resolved", "other_resident", "FORBIDDEN"),
        ("confirmReport", "resolved", "worker", "FORBIDDEN"),
        ("confirmReport", "resolved", "auditor", "FORBIDDEN"),
        ("reopenReport(reason: \"still dirty\")", "resolved", "reporter", "OK"),
        ("reopenReport(reason: \"still dirty\")", "resolved", "other_resident", "FORBIDDEN"),
        ("closeReport", "confirmed", "inspector", "OK"),
        ("closeReport", "confirmed", "admin", "OK"),
        ("closeReport", "confirmed", "reporter", "FORBIDDEN"),
        ("closeReport", "confirmed", "worker", "FORBIDDEN"),
        ("commentOnReport(text: \"hi\")", "submitted", "reporter", "OK"),
        ("commentOnReport(text: \"hi\")", "submitted", "worker", "OK"),
        ("commentOnReport(text: \"hi\")", "submitted", "other_resident", "FORBIDDEN"),
        ("commentOnReport(text: \"hi\")", "submitted", "other_worker", "FORBIDDEN"),
        ("commentOnReport(text: \"hi\")", "submitted", "auditor", "FORBIDDEN"),
        ("commentOnReport(text: \"hi\")", "submitted", "anonymous", "UNAUTHENTICATED"),
        ("supportReport", "submitted", "other_resident", "OK"),
        ("supportReport", "submitted", "reporter", "VALIDATION"),
        ("supportReport", "submitted", "worker", "FORBIDDEN"),
        ("hideReport(reason: \"abusive\")", "submitted", "admin", "OK"),
        ("hideReport(reason: \"abusive\")", "submitted", "worker", "FORBIDDEN"),
        ("hideReport(reason: \"abusive\")", "submitted", "reporter", "FORBIDDEN"),
        ("redactReportText", "submitted", "admin", "OK"),
        ("redactReportText", "submitted", "inspector", "FORBIDDEN"),
        ("redactReportPhotos", "submitted", "auditor", "FORBIDDEN"),
        ("hideReporterName", "submitted", "reporter", "OK"),
        ("hideReporterName", "submitted", "other_resident", "FORBIDDEN"),
        ("hideReporterName", "submitted", "admin", "FORBIDDEN"),
        ("claimReport(claimSecret: \"guess\")", "submitted", "other_resident", "VALIDATION"),
        ("claimReport(claimSecret: \"guess\")", "submitted", "worker", "FORBIDDEN"),
    ];
    let mut failures = Vec::new();
    for (mutation, state, who, expected) in &table {
        let report = report_in(&app, &f, state).await;
        let response = match token(&f, who) {
            Some(token) => act(&app, &f, token, mutation, report).await,
            None => anonymous_act(&app, &f, mutation, report).await,
        };
        let code = code_of(&response);
        if code != *expected {
            failures.push(format!(
                "{who} {mutation} on a {state} report: {code}, expected {expected}: {response}"
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    app.stop().await;
}

async fn anonymous_act(app: &TestApp, f: &Fixture, mutation: &str, report: Uuid) -> Value {
    let (name, arguments) = mutation.split_once('(').unwrap_or((mutation, ")"));
    let arguments = arguments.trim_end_matches(')');
    let separator = if arguments.is_empty() { "" } else { ", " };
    let query = format!(
        "mutation($c: UUID!, $r: UUID!) {{ {name}(communityId: $c, reportId: $r{separator}{arguments}) {{ position }} }}"
    );
    app.gql(None, &query, json!({"c": f.community, "r": report}))
        .await
}

#[tokio::test]
async fn every_role_against_set_up_patrols_suggestions_and_sensitive_reads() {
    let app = TestApp::spawn().await;
    let f = app.fixture().await;
    let c = json!({"c": f.community});
    let add_grid = "mutation($c: UUID!) { addGrid(communityId: $c, name: \"Grid 9\") { id } }";
    let staff = format!("mutation($c: UUID!) {{ assignStaff(communityId: $c, staff: {{personId: \"{}\", role: INSPECTOR}}) {{ position }} }}", Uuid::new_v4());
    let patrol = "mutation($c: UUID!) { startPatrol(communityId: $c) { id } }";
    let submit = "mutation($c: UUID!) { submitReport(communityId: $c, report: {siteCode: \"RB-02\", category: \"FLOATING-GARBAGE\", text: \"垃圾\"}) { reportId } }";
    let suggest = "mutation($c: UUID!) { submitSuggestion(communityId: $c, siteCode: \"MS-01\", text: \"多放垃圾桶\") { suggestionId } }";
    let duty = "query($c: UUID!) { patrolDuty(communityId: $c, month: \"2026-11\") { workerId } }";
    let other_duty = format!("query($c: UUID!) {{ patrolDuty(communityId: $c, month: \"2026-11\", workerId: \"{}\") {{ workerId }} }}", f.other_worker_id);
    let lag = "query($c: UUID!) { projectionLag(communityId: $c) { name lag } }";
    let list = "query($c: UUID!) { reports(communityId: $c) { edges { node { id } } } }";
    #[rustfmt::skip]
    let table: Vec<(&str, &str, &str)> = vec![
        (add_grid, "admin", "OK"),
        (add_grid, "foreign_admin", "FORBIDDEN"),
        (add_grid, "worker", "FORBIDDEN"),
        (add_grid, "auditor", "FORBIDDEN"),
        (add_grid, "reporter", "FORBIDDEN"),
        (add_grid, "anonymous", "UNAUTHENTICATED"),
        (&staff, "admin", "OK"),
        (&staff, "inspector", "FORBIDDEN"),
        (patrol, "worker", "OK"),
        (patrol, "admin", "FORBIDDEN"),
        (patrol, "reporter", "FORBIDDEN"),
        (patrol, "department", "FORBIDDEN"),
        (submit, "anonymous", "OK"),
        (submit, "reporter", "OK"),
        (submit, "auditor", "FORBIDDEN"),
        (submit, "foreign_admin", "FORBIDDEN"),
        (suggest, "anonymous", "OK"),
        (suggest, "reporter", "OK"),
        (suggest, "auditor", "FORBIDDEN"),
        (duty, "admin", "OK"),
        (duty, "auditor", "OK"),
        (duty, "worker", "OK"),
        (duty, "reporter", "FORBIDDEN"),
        (duty, "department", "FORBIDDEN"),
        (&other_duty, "worker", "FORBIDDEN"),
        (lag, "auditor", "OK"),
        (lag, "reporter", "FORBIDDEN"),
        (list, "reporter", "OK"),
        (list, "foreign_admin", "FORBIDDEN"),
        (list, "anonymous", "UNAUTHENTICATED"),
    ];
    let mut failures = Vec::new();
    for (query, who, expected) in &table {
        let response = app.gql(token(&f, who), query, c.clone()).await;
        let code = code_of(&response);
        if code != *expected {
            failures.push(format!(
                "{who} {query}: {code}, expected {expected}: {response}"
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));

    // Answering suggestions is the admins' part.
    let suggestion = app.ok(Some(&f.resident), suggest, c.clone()).await["submitSuggestion"]
        ["suggestionId"]
        .clone();
    let answer = "mutation($c: UUID!, $s: UUID!) { answerSuggestion(communityId: $c, suggestionId: $s, outcome: ADOPTED, answer: \"采纳\") { position } }";
    let vars = json!({"c": f.community, "s": suggestion});
    for (who, expected) in [
        ("worker", "FORBIDDEN"),
        ("reporter", "FORBIDDEN"),
        ("auditor", "FORBIDDEN"),
        ("admin", "OK"),
    ] {
        let response = app.gql(token(&f, who), answer, vars.clone()).await;
        assert_eq!(code_of(&response), expected, "{who}: {response}");
    }
    app.stop().await;
}

#[tokio::test]
async fn who_sees_the_reporter_and_hidden_reports() {
    let app = TestApp::spawn().await;
    let f = app.fixture().await;
    let report = report_in(&app, &f, "submitted").await;
    let hidden = act(
        &app,
        &f,
        &f.admin,
        "hideReport(reason: \"private address\")",
        report,
    )
    .await;
    let position = hidden["data"]["hideReport"]["position"].as_i64().unwrap();
    let query = "query($c: UUID!, $r: UUID!, $p: Int) { report(communityId: $c, reportId: $r, atLeast: $p) { reporterId hidden } }";
    let vars = json!({"c": f.community, "r": report, "p": position});
    let reporter = f.resident_id.to_string();
    for (who, expected) in [
        ("reporter", json!({"reporterId": reporter, "hidden": true})),
        ("worker", json!({"reporterId": reporter, "hidden": true})),
        ("auditor", json!({"reporterId": reporter, "hidden": true})),
    ] {
        let data = app.ok(token(&f, who), query, vars.clone()).await;
        assert_eq!(data["report"], expected, "{who}");
    }
    let response = app.gql(Some(&f.other_resident), query, vars.clone()).await;
    assert_eq!(
        code_of(&response),
        "NOT_FOUND",
        "a hidden report is not public: {response}"
    );
    let unhidden = act(&app, &f, &f.admin, "unhideReport", report).await;
    let position = unhidden["data"]["unhideReport"]["position"]
        .as_i64()
        .unwrap();
    let vars = json!({"c": f.community, "r": report, "p": position});
    let data = app.ok(Some(&f.other_resident), query, vars).await;
    assert_eq!(
        data["report"],
        json!({"reporterId": null, "hidden": false}),
        "never the reporter's identity"
    );
    let community = app
        .ok(
            Some(&f.other_resident),
            "query($c: UUID!) { community(communityId: $c) { staff { personId } sites { code } } }",
            json!({"c": f.community}),
        )
        .await;
    assert_eq!(
        community["community"]["staff"],
        json!([]),
        "residents do not see the staff list"
    );
    assert_eq!(community["community"]["sites"].as_array().unwrap().len(), 3);
    app.stop().await;
}
