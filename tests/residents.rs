//! What residents do from a QR page: sign up with a one-time code, report
//! anonymously and claim later, retry on a bad connection, drop
//! suggestions; and grid workers' patrols.

use serde_json::json;

use crate::app::{code_of, Options, TestApp, SUBMIT};

const REQUEST_CODE: &str = "mutation($c: UUID!, $p: String!, $n: String!) {
    requestSignupCode(communityId: $c, phone: $p, displayName: $n) { expiresInSeconds } }";
const VERIFY_CODE: &str = "mutation($c: UUID!, $p: String!, $k: String!) {
    verifySignupCode(communityId: $c, phone: $p, code: $k) { token personId displayName newResident } }";

#[tokio::test]
async fn a_resident_signs_up_with_a_one_time_code() {
    let app = TestApp::spawn().await;
    let f = app.fixture().await;
    let phone = "+86 138-0013-8000";
    let sent = app
        .ok(
            None,
            REQUEST_CODE,
            json!({"c": f.community, "p": phone, "n": "李阿姨"}),
        )
        .await;
    assert_eq!(sent["requestSignupCode"]["expiresInSeconds"], 600);
    let code = app.codes.last_for("+8613800138000");
    let wrong = if code == "000000" { "111111" } else { "000000" };
    let refused = app
        .gql(
            None,
            VERIFY_CODE,
            json!({"c": f.community, "p": phone, "k": wrong}),
        )
        .await;
    assert_eq!(code_of(&refused), "VALIDATION", "{refused}");
    let signed_in = app
        .ok(
            None,
            VERIFY_CODE,
            json!({"c": f.community, "p": phone, "k": code}),
        )
        .await;
    let resident = &signed_in["verifySignupCode"];
    assert_eq!(resident["displayName"], "李阿姨");
    assert_eq!(resident["newResident"], true);
    let token = resident["token"].as_str().unwrap().to_string();
    let viewer = app
        .ok(
            Some(&token),
            "{ viewer { signedIn role personId } }",
            json!({}),
        )
        .await;
    assert_eq!(viewer["viewer"]["role"], "CITIZEN");
    assert_eq!(viewer["viewer"]["personId"], resident["personId"]);

    let reused = app
        .gql(
            None,
            VERIFY_CODE,
            json!({"c": f.community, "p": phone, "k": code}),
        )
        .await;
    assert_eq!(
        code_of(&reused),
        "VALIDATION",
        "a code is used once: {reused}"
    );

    // The phone number lives only in the profile, found by a keyed hash:
    // never in the log.
    let client = app.db.client().await;
    let in_log: i64 = client
        .query_one(
            "SELECT count(*) FROM events WHERE payload::text LIKE '%13800138000%' \
             OR metadata::text LIKE '%13800138000%'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(in_log, 0);

    // Signing up again logs in as the same resident.
    app.ok(
        None,
        REQUEST_CODE,
        json!({"c": f.community, "p": phone, "n": "李阿姨"}),
    )
    .await;
    let again = app
        .ok(
            None,
            VERIFY_CODE,
            json!({"c": f.community, "p": phone, "k": app.codes.last_for("+8613800138000")}),
        )
        .await;
    assert_eq!(again["verifySignupCode"]["personId"], resident["personId"]);
    assert_eq!(again["verifySignupCode"]["newResident"], false);

    // An expired code is refused (its expiry moved into the past).
    app.ok(
        None,
        REQUEST_CODE,
        json!({"c": f.community, "p": phone, "n": "李阿姨"}),
    )
    .await;
    client
        .execute(
            "UPDATE signup_codes SET expires_at = now() - interval '1 second'",
            &[],
        )
        .await
        .unwrap();
    let expired = app
        .gql(
            None,
            VERIFY_CODE,
            json!({"c": f.community, "p": phone, "k": app.codes.last_for("+8613800138000")}),
        )
        .await;
    assert_eq!(code_of(&expired), "VALIDATION", "{expired}");
    app.stop().await;
}

#[tokio::test]
async fn codes_and_attempts_are_rate_limited() {
    let app = TestApp::spawn().await;
    let f = app.fixture().await;
    let phone = "13900139000";
    for _ in 0..5 {
        app.ok(
            None,
            REQUEST_CODE,
            json!({"c": f.community, "p": phone, "n": "王"}),
        )
        .await;
    }
    let sixth = app
        .gql(
            None,
            REQUEST_CODE,
            json!({"c": f.community, "p": phone, "n": "王"}),
        )
        .await;
    assert_eq!(code_of(&sixth), "RATE_LIMITED", "{sixth}");
    let code = app.codes.last_for(phone);
    let wrong = if code == "000000" { "111111" } else { "000000" };
    for _ in 0..5 {
        let response = app
            .gql(
                None,
                VERIFY_CODE,
                json!({"c": f.community, "p": phone, "k": wrong}),
            )
            .await;
        assert_eq!(code_of(&response), "VALIDATION");
    }
    let right_too_late = app
        .gql(
            None,
            VERIFY_CODE,
            json!({"c": f.community, "p": phone, "k": code}),
        )
        .await;
    assert_eq!(
        code_of(&right_too_late),
        "RATE_LIMITED",
        "after five wrong attempts even the right code is refused: {right_too_late}"
    );
    let bad_phone = app
        .gql(
            None,
            REQUEST_CODE,
            json!({"c": f.community, "p": "call me", "n": "王"}),
        )
        .await;
    assert_eq!(code_of(&bad_phone), "VALIDATION");
    app.stop().await;
}

#[tokio::test]
async fn an_anonymous_report_is_claimed_later_and_anonymous_clients_are_limited() {
    let app = TestApp::spawn_with(Options {
        anonymous_burst: 3,
        ..Options::default()
    })
    .await;
    let f = app.fixture().await;
    let input = json!({"c": f.community, "r": {"siteCode": "RB-02", "category": "FLOATING-GARBAGE",
        "text": "有人往河里倒垃圾", "clientFingerprint": "phone-a"}});
    let first = app.ok(None, SUBMIT, input.clone()).await;
    let secret = first["submitReport"]["claimSecret"]
        .as_str()
        .unwrap()
        .to_string();
    let report = first["submitReport"]["reportId"]
        .as_str()
        .unwrap()
        .to_string();
    for _ in 0..2 {
        app.ok(None, SUBMIT, input.clone()).await;
    }
    let fourth = app.gql(None, SUBMIT, input.clone()).await;
    assert_eq!(code_of(&fourth), "RATE_LIMITED", "{fourth}");
    let signed_in = app.ok(Some(&f.resident), SUBMIT, input).await;
    assert_eq!(
        signed_in["submitReport"]["claimSecret"],
        json!(null),
        "residents are not limited as anonymous"
    );

    let claim = "mutation($c: UUID!, $r: UUID!, $s: String!) { claimReport(communityId: $c, reportId: $r, claimSecret: $s) { position } }";
    let wrong = app
        .gql(
            Some(&f.resident),
            claim,
            json!({"c": f.community, "r": report, "s": "wrong"}),
        )
        .await;
    assert_eq!(code_of(&wrong), "FORBIDDEN", "{wrong}");
    let claimed = app
        .ok(
            Some(&f.resident),
            claim,
            json!({"c": f.community, "r": report, "s": secret}),
        )
        .await;
    let position = claimed["claimReport"]["position"].as_i64().unwrap();
    let mine = app
        .ok(
            Some(&f.resident),
            "query($c: UUID!, $p: Int) { reports(communityId: $c, filter: {mine: true}, atLeast: $p) { edges { node { id anonymous reporterId } } } }",
            json!({"c": f.community, "p": position}),
        )
        .await;
    let ids: Vec<&str> = mine["reports"]["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|edge| edge["node"]["id"].as_str().unwrap())
        .collect();
    assert!(
        ids.contains(&report.as_str()),
        "the claimed report is the resident's: {mine}"
    );
    app.stop().await;
}

#[tokio::test]
async fn a_retried_submission_is_stored_once() {
    let app = TestApp::spawn().await;
    let f = app.fixture().await;
    let input = json!({"c": f.community, "r": {"siteCode": "RB-01", "category": "FLOATING-GARBAGE",
        "text": "信号不好，重试", "photos": ["https://img.example/x.jpg"]}});
    let tries =
        (0..10).map(|_| app.gql_with(None, SUBMIT, input.clone(), Some("qr-page-7f3a-0001")));
    let answers = futures::future::join_all(tries).await;
    let first = &answers[0]["data"]["submitReport"];
    for answer in &answers {
        assert_eq!(
            &answer["data"]["submitReport"], first,
            "every retry gets the first outcome: {answer}"
        );
    }
    let client = app.db.client().await;
    let submitted: i64 = client
        .query_one(
            "SELECT count(*) FROM events WHERE event_type = 'ReportSubmitted'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(submitted, 1);
    app.stop().await;
}

#[tokio::test]
async fn suggestions_are_answered_in_public() {
    let app = TestApp::spawn().await;
    let f = app.fixture().await;
    let suggest = "mutation($c: UUID!, $s: String!, $t: String!) { submitSuggestion(communityId: $c, siteCode: $s, text: $t) { suggestionId position } }";
    let not_a_box = app
        .gql(
            Some(&f.resident),
            suggest,
            json!({"c": f.community, "s": "RB-01", "t": "建议"}),
        )
        .await;
    assert_eq!(
        code_of(&not_a_box),
        "VALIDATION",
        "boxes stand at micro-spaces: {not_a_box}"
    );
    let dropped = app
        .ok(
            Some(&f.resident),
            suggest,
            json!({"c": f.community, "s": "MS-01", "t": "河边多放几个垃圾桶"}),
        )
        .await;
    let suggestion = dropped["submitSuggestion"]["suggestionId"].clone();
    let review = "mutation($c: UUID!, $s: UUID!) { startSuggestionReview(communityId: $c, suggestionId: $s) { position } }";
    app.ok(
        Some(&f.admin),
        review,
        json!({"c": f.community, "s": suggestion}),
    )
    .await;
    let answer = "mutation($c: UUID!, $s: UUID!) { answerSuggestion(communityId: $c, suggestionId: $s, outcome: PARTLY_ADOPTED, answer: \"先在微空间加两个\") { position } }";
    let answered = app
        .ok(
            Some(&f.admin),
            answer,
            json!({"c": f.community, "s": suggestion}),
        )
        .await;
    let twice = app
        .gql(
            Some(&f.admin),
            answer,
            json!({"c": f.community, "s": suggestion}),
        )
        .await;
    assert_eq!(code_of(&twice), "CONFLICT", "answered once: {twice}");
    let position = answered["answerSuggestion"]["position"].as_i64().unwrap();
    let list = app
        .ok(
            Some(&f.other_resident),
            "query($c: UUID!, $p: Int) { suggestions(communityId: $c, atLeast: $p) { edges { node { text state outcome answer submitterId } } } }",
            json!({"c": f.community, "p": position}),
        )
        .await;
    assert_eq!(
        list["suggestions"]["edges"][0]["node"],
        json!({"text": "河边多放几个垃圾桶", "state": "answered", "outcome": "partly_adopted",
            "answer": "先在微空间加两个", "submitterId": null})
    );
    app.stop().await;
}

#[tokio::test]
async fn a_patrol_checks_in_records_a_finding_that_opens_a_report_and_counts_as_duty() {
    let app = TestApp::spawn().await;
    let f = app.fixture().await;
    app.ok(
        Some(&f.admin),
        "mutation($c: UUID!) { setPatrolDay(communityId: $c, day: 2) { position } }",
        json!({"c": f.community}),
    )
    .await;
    let started = app
        .ok(
            Some(&f.worker),
            "mutation($c: UUID!) { startPatrol(communityId: $c) { id } }",
            json!({"c": f.community}),
        )
        .await;
    let patrol = started["startPatrol"]["id"].clone();
    let vars = |site: &str| json!({"c": f.community, "p": patrol, "s": site});
    let check_in = "mutation($c: UUID!, $p: UUID!, $s: String!) { checkInPatrol(communityId: $c, patrolId: $p, siteCode: $s) { position } }";
    app.ok(Some(&f.worker), check_in, vars("RB-01")).await;
    app.ok(Some(&f.worker), check_in, vars("MS-01")).await;
    let outside = app.gql(Some(&f.worker), check_in, vars("RB-02")).await;
    assert_eq!(
        code_of(&outside),
        "FORBIDDEN",
        "RB-02 lies in grid 2: {outside}"
    );
    let someone_else = app
        .gql(Some(&f.other_worker), check_in, vars("RB-01"))
        .await;
    assert_eq!(code_of(&someone_else), "FORBIDDEN", "{someone_else}");
    let finding = app
        .ok(
            Some(&f.worker),
            "mutation($c: UUID!, $p: UUID!) { recordPatrolFinding(communityId: $c, patrolId: $p, text: \"排口有黑水\", siteCode: \"RB-01\",
                openReport: {category: \"SEWAGE-OUTFALL\", photos: [\"https://img.example/outfall.jpg\"]}) { position reportId } }",
            json!({"c": f.community, "p": patrol}),
        )
        .await;
    let report = finding["recordPatrolFinding"]["reportId"]
        .as_str()
        .unwrap()
        .to_string();
    let client = app.db.client().await;
    let row = client
        .query_one(
            "SELECT count(DISTINCT position), count(*) FROM events WHERE position = $1",
            &[&finding["recordPatrolFinding"]["position"].as_i64().unwrap()],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, i64>(1), 1, "the last position of the append");
    let same_append: i64 = client
        .query_one(
            "SELECT count(*) FROM events WHERE event_type IN ('PatrolFindingRecorded', 'ReportSubmitted') \
             AND metadata->>'request_id' = (SELECT metadata->>'request_id' FROM events WHERE event_type = 'PatrolFindingRecorded')",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        same_append, 2,
        "the finding and its report went in one append"
    );
    let ended = app
        .ok(Some(&f.worker), "mutation($c: UUID!, $p: UUID!) { endPatrol(communityId: $c, patrolId: $p) { position } }", json!({"c": f.community, "p": patrol}))
        .await;
    let position = ended["endPatrol"]["position"].as_i64().unwrap();
    let data = app
        .ok(
            Some(&f.admin),
            "query($c: UUID!, $p: Int, $r: UUID!) {
                patrolDuty(communityId: $c, month: \"2026-11\", atLeast: $p) { workerId patrols endedPatrols checkIns findings patrolDay fixedDayKept }
                report(communityId: $c, reportId: $r, atLeast: $p) { category state text } }",
            json!({"c": f.community, "p": position, "r": report}),
        )
        .await;
    let duty: Vec<_> = data["patrolDuty"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["workerId"] == f.worker_id.to_string())
        .cloned()
        .collect();
    assert_eq!(
        duty,
        vec![
            json!({"workerId": f.worker_id.to_string(), "patrols": 1, "endedPatrols": 1, "checkIns": 2,
            "findings": 1, "patrolDay": 2, "fixedDayKept": true})
        ],
        "the test clock is 2 November (the patrol day) in Asia/Shanghai"
    );
    let other: Vec<_> = data["patrolDuty"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["workerId"] == f.other_worker_id.to_string())
        .cloned()
        .collect();
    assert_eq!(
        other[0]["fixedDayKept"], false,
        "a worker who did not patrol missed the day"
    );
    assert_eq!(
        data["report"],
        json!({"category": "SEWAGE-OUTFALL", "state": "SUBMITTED", "text": "排口有黑水"})
    );
    app.stop().await;
}

#[tokio::test]
async fn a_redaction_really_removes_the_text_and_photos() {
    let app = TestApp::spawn().await;
    let f = app.fixture().await;
    let (report, _) = crate::app::submit(&app, &f, &f.resident, "RB-01", "FLOATING-GARBAGE").await;
    for mutation in ["redactReportText", "redactReportPhotos"] {
        let response = crate::app::act(&app, &f, &f.admin, mutation, report).await;
        assert_eq!(code_of(&response), "OK", "{response}");
    }
    let client = app.db.client().await;
    let bodies: i64 = client
        .query_one(
            "SELECT count(*) FROM contents WHERE body IS NOT NULL \
             AND convert_from(body, 'UTF8') LIKE '%河面漂浮垃圾很多%' OR convert_from(body, 'UTF8') LIKE '%img.example/1.jpg%'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        bodies, 0,
        "the text and photo links are gone from the database"
    );
    let head = app.head(f.community).await;
    let data = app
        .ok(
            Some(&f.admin),
            "query($c: UUID!, $r: UUID!, $p: Int) { report(communityId: $c, reportId: $r, atLeast: $p) { text photos textRedacted photosRedacted } }",
            json!({"c": f.community, "r": report, "p": head}),
        )
        .await;
    assert_eq!(
        data["report"],
        json!({"text": null, "photos": [], "textRedacted": true, "photosRedacted": true})
    );
    let verification = app
        .store
        .verify_chain(store::CommunityId::new(f.community), 1, i64::MAX)
        .await
        .unwrap();
    assert!(
        verification.is_intact(),
        "the chain still verifies: {verification:?}"
    );
    app.stop().await;
}
