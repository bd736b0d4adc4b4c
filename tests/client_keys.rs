//! Idempotency keys as hostile clients send them: a key is the caller's
//! own, for one operation with one input, by one written rule, and never
//! reaches the keys the server makes for itself.

use serde_json::{json, Value};
use uuid::Uuid;

use crate::app::*;

const SUGGEST: &str = "mutation($c: UUID!, $t: String!) {
    submitSuggestion(communityId: $c, siteCode: \"MS-01\", text: $t) { suggestionId position } }";
const ADD_DEPARTMENT: &str = "mutation($c: UUID!, $name: String!) {
    addDepartment(communityId: $c, name: $name) { id position } }";

fn report(text: &str) -> Value {
    json!({"siteCode": "RB-01", "category": "FLOATING-GARBAGE", "text": text})
}

impl TestApp {
    pub async fn events(&self) -> i64 {
        self.db.event_count().await
    }

    /// One GraphQL request with a raw `Idempotency-Key` header value:
    /// (HTTP status, body).
    pub async fn raw_keyed(&self, key: &[u8], query: &str, variables: Value) -> (u16, Value) {
        let response = self
            .http
            .post(&self.url)
            .header(
                "Idempotency-Key",
                reqwest::header::HeaderValue::from_bytes(key).expect("a header value"),
            )
            .json(&json!({"query": query, "variables": variables}))
            .send()
            .await
            .expect("the server answers");
        let status = response.status().as_u16();
        (status, response.json().await.expect("a JSON body"))
    }
}

#[tokio::test]
async fn the_same_key_for_another_operation_or_input_is_a_conflict_that_stores_nothing() {
    let app = TestApp::spawn_quiet().await;
    let f = app.fixture().await;
    let c = f.community;
    let first = app
        .gql_with(
            Some(&f.resident),
            SUBMIT,
            json!({"c": c, "r": report("桥下有垃圾")}),
            Some("k-1"),
        )
        .await;
    assert_eq!(code_of(&first), "OK", "{first}");
    let admin_first = app
        .gql_with(
            Some(&f.admin),
            ADD_DEPARTMENT,
            json!({"c": c, "name": "Parks"}),
            Some("k-2"),
        )
        .await;
    assert_eq!(code_of(&admin_first), "OK", "{admin_first}");
    let before = app.events().await;
    // (who, query, variables, key): each reuses a key for something else.
    let reuses: Vec<(&str, &str, Value, &str)> = vec![
        (
            &f.resident,
            SUGGEST,
            json!({"c": c, "t": "多放垃圾桶"}),
            "k-1",
        ),
        (
            &f.resident,
            SUBMIT,
            json!({"c": c, "r": report("另一处垃圾")}),
            "k-1",
        ),
        (
            &f.resident,
            SUBMIT,
            json!({"c": c, "r": {"siteCode": "RB-02", "category": "FLOATING-GARBAGE", "text": "桥下有垃圾"}}),
            "k-1",
        ),
        (
            &f.admin,
            ADD_DEPARTMENT,
            json!({"c": c, "name": "Roads"}),
            "k-2",
        ),
        (
            &f.admin,
            SETUP_GRID,
            json!({"c": c, "name": "Grid 9", "parent": null}),
            "k-2",
        ),
    ];
    for (token, query, variables, key) in reuses {
        let answer = app
            .gql_with(Some(token), query, variables.clone(), Some(key))
            .await;
        assert_eq!(
            code_of(&answer),
            "CONFLICT",
            "{query} {variables}: {answer}"
        );
        assert!(
            answer["data"].is_null()
                || answer["data"]
                    .as_object()
                    .unwrap()
                    .values()
                    .all(Value::is_null)
        );
    }
    assert_eq!(app.events().await, before, "a refused reuse stores nothing");

    // The same request again (its input's fields in another order) is the
    // first outcome, not a conflict.
    let again = app
        .gql_with(
            Some(&f.resident),
            SUBMIT,
            json!({"c": c, "r": {"text": "桥下有垃圾", "category": "FLOATING-GARBAGE", "siteCode": "RB-01"}}),
            Some("k-1"),
        )
        .await;
    assert_eq!(again["data"]["submitReport"], first["data"]["submitReport"]);
    assert_eq!(app.events().await, before);
    app.stop().await;
}

#[tokio::test]
async fn another_callers_key_is_theirs_alone() {
    let app = TestApp::spawn_quiet().await;
    let f = app.fixture().await;
    let variables = json!({"c": f.community, "r": report("闸口有人电鱼")});
    let anonymous = app
        .gql_with(None, SUBMIT, variables.clone(), Some("shared-key"))
        .await;
    let secret = anonymous["data"]["submitReport"]["claimSecret"]
        .as_str()
        .unwrap()
        .to_string();
    let mine = app
        .gql_with(
            Some(&f.resident),
            SUBMIT,
            variables.clone(),
            Some("shared-key"),
        )
        .await;
    let theirs = app
        .gql_with(
            Some(&f.other_resident),
            SUBMIT,
            variables.clone(),
            Some("shared-key"),
        )
        .await;
    let ids: Vec<&str> = [&anonymous, &mine, &theirs]
        .iter()
        .map(|answer| answer["data"]["submitReport"]["reportId"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), 3);
    assert!(
        ids[0] != ids[1] && ids[1] != ids[2] && ids[0] != ids[2],
        "{ids:?}"
    );
    for signed_in in [&mine, &theirs] {
        assert!(
            signed_in["data"]["submitReport"]["claimSecret"].is_null(),
            "a claim secret only goes to its anonymous creator: {signed_in}"
        );
    }

    // Nothing an auditor reads holds the key the client sent, or the secret.
    let trail = app
        .ok(
            Some(&f.auditor),
            "query($c: UUID!) { auditTrail(communityId: $c, first: 100) { edges { node { metadata { key value } payload } } } }",
            json!({"c": f.community}),
        )
        .await;
    let text = trail.to_string();
    assert!(text.contains("client:"), "scoped keys are recorded: {text}");
    assert!(
        !text.contains("shared-key"),
        "the client's own key is not recorded"
    );
    assert!(!text.contains(&secret), "the claim secret is not recorded");
    app.stop().await;
}

#[tokio::test]
async fn a_client_key_shaped_like_the_earning_process_key_does_not_stall_it() {
    let app = TestApp::spawn().await;
    let f = app.fixture().await;
    app.fund(&f, "1000").await;
    let (report_id, _) = submit(&app, &f, &f.resident, "RB-01", "FLOATING-GARBAGE").await;
    let earning_key = format!("earning:report-accepted:{report_id}:{}", f.resident_id);
    for (query, variables) in [
        (SUBMIT, json!({"c": f.community, "r": report("又一处")})),
        (SUGGEST, json!({"c": f.community, "t": "装一个垃圾拦截网"})),
    ] {
        let answer = app
            .gql_with(Some(&f.resident), query, variables, Some(&earning_key))
            .await;
        assert!(
            ["OK", "CONFLICT"].contains(&code_of(&answer).as_str()),
            "{answer}"
        );
    }
    let accepted = accept(&app, &f, &f.admin, report_id).await;
    // The earning process pays the accepted report: its key is its own.
    let mut balance = String::new();
    for _ in 0..100 {
        let head = app.head(f.community).await;
        if head > accepted {
            let wallet = app.wallet(&f.admin, f.community, f.resident_id, head).await;
            balance = wallet["balance"].as_str().unwrap().to_string();
            if balance != "0" {
                break;
            }
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(
        balance, "5",
        "the earning process granted the category's points"
    );
    app.stop().await;
}

#[tokio::test]
async fn keys_that_break_the_rule_are_refused_never_ignored() {
    let app = TestApp::spawn_quiet().await;
    let f = app.fixture().await;
    let before = app.events().await;
    let too_long = "k".repeat(101);
    let refused: [&[u8]; 6] = [
        b"",
        too_long.as_bytes(),
        b"with space",
        b"tab\there",
        "重试-1".as_bytes(),
        b"latin\xff1",
    ];
    let variables = json!({"c": f.community, "r": report("井盖丢了")});
    for key in refused {
        let (status, body) = app.raw_keyed(key, SUBMIT, variables.clone()).await;
        assert_eq!(
            (status, code_of(&body).as_str()),
            (400, "VALIDATION"),
            "{key:?}: {body}"
        );
    }
    assert_eq!(
        app.events().await,
        before,
        "nothing is filed under a refused key"
    );
    let (status, body) = app.raw_keyed(b"ok-key_1.2~x", SUBMIT, variables).await;
    assert_eq!((status, code_of(&body).as_str()), (200, "OK"), "{body}");

    // The counter's input key follows the same rule.
    let place = "mutation($c: UUID!, $i: PlaceRedemptionInput!) { placeRedemption(communityId: $c, input: $i) { status } }";
    for key in ["", "重试", "a b", &too_long] {
        let answer = app
            .gql(
                Some(&f.admin),
                place,
                json!({"c": f.community, "i": {"residentId": f.resident_id, "giftId": Uuid::new_v4(), "idempotencyKey": key}}),
            )
            .await;
        assert_eq!(code_of(&answer), "VALIDATION", "{key:?}: {answer}");
    }
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_retry_racing_its_first_attempt_in_another_process_answers_with_what_was_stored() {
    use app::commands::{Commands, RequestMeta};
    use app::idempotency::Idempotency;
    use domain::report::{Place, Report, ReportCommand, Reporter, SubmitReport};
    use domain::values::{
        CategoryCode, ContentHash, GridId, PersonId, ReportId, SiteCode, SiteId, Timestamp,
    };
    let app = TestApp::spawn_quiet().await;
    let f = app.fixture().await;
    let community = store::CommunityId::new(f.community);
    let submission = |report: ReportId, at: i64, duplicate: Option<ReportId>| SubmitReport {
        report,
        place: Place::Site {
            site: SiteId(Uuid::new_v4()),
            code: SiteCode::parse("RB-01").unwrap(),
        },
        grid: GridId(f.grid1),
        category: CategoryCode::parse("FLOATING-GARBAGE").unwrap(),
        text: ContentHash::parse(&"ab".repeat(32)).unwrap(),
        photos: None,
        reporter: Reporter::Resident(PersonId(f.resident_id)),
        first_response_due: Timestamp::from_micros(at + 3_600_000_000),
        resolution_due: Timestamp::from_micros(at + 7_200_000_000),
        department: None,
        likely_duplicate_of: duplicate,
        at: Timestamp::from_micros(at),
    };
    // Two processes (each with its own locks and kept states) file the
    // same keyed submission at once, each deciding it differently (its own
    // time, its own duplicate hint), many times over.
    let processes = [
        Commands::new(app.store.clone(), app.clock.clone()),
        Commands::new(app.store.clone(), app.clock.clone()),
    ];
    for round in 0..40 {
        let report = ReportId(Uuid::new_v4());
        let meta = RequestMeta {
            request_id: format!("race-{round}"),
            idempotency: Some(Idempotency::server(format!("race-key-{round}"))),
            ..RequestMeta::default()
        };
        let runs = processes.iter().enumerate().map(|(n, commands)| {
            let meta = meta.clone();
            let hint = (n == 1).then_some(ReportId(Uuid::new_v4()));
            let submit = submission(report, 1_000_000 * (n as i64 + 1), hint);
            async move {
                commands
                    .execute_new::<Report>(
                        community,
                        &domain::streams::report(report.0),
                        &meta,
                        &[],
                        |_| Ok(ReportCommand::Submit(Box::new(submit.clone()))),
                    )
                    .await
            }
        });
        let answers = futures::future::join_all(runs).await;
        let fresh = Commands::new(app.store.clone(), app.clock.clone());
        let stored = fresh
            .load::<Report>(community, &domain::streams::report(report.0))
            .await
            .unwrap();
        assert_eq!(stored.version, 1, "filed once");
        for (n, answer) in answers.into_iter().enumerate() {
            let (outcome, state) = answer.unwrap_or_else(|e| panic!("process {n}: {e}"));
            assert_eq!(
                outcome.last_position,
                answers_position(&app, community, report).await
            );
            assert_eq!(state, stored.state, "process {n} answers what was stored");
            let kept = processes[n]
                .load::<Report>(community, &domain::streams::report(report.0))
                .await
                .unwrap();
            assert_eq!(
                kept.state, stored.state,
                "process {n} keeps what was stored"
            );
        }
    }
}

/// The position of a report's one event.
async fn answers_position(
    app: &TestApp,
    community: store::CommunityId,
    report: domain::values::ReportId,
) -> i64 {
    app.store
        .stream_last_position(community, &domain::streams::report(report.0))
        .await
        .unwrap()
        .expect("the report was filed")
}
