//! Bad input through the API: each gets a clear error with its code, and
//! nothing is stored.

use serde_json::{json, Value};

use crate::app::{act, code_of, submit, TestApp, SUBMIT};

async fn stored_counts(app: &TestApp) -> (i64, i64) {
    let client = app.db.client().await;
    let count = |table: &'static str| {
        let client = &client;
        async move {
            let row = client
                .query_one(&format!("SELECT count(*) FROM {table}"), &[])
                .await
                .unwrap();
            row.get::<_, i64>(0)
        }
    };
    (count("events").await, count("contents").await)
}

fn expired_token(app: &TestApp, community: uuid::Uuid, key: &[u8]) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let claims = json!({"sub": uuid::Uuid::new_v4(), "role": "admin", "community": community,
        "iss": "civic-ledger", "iat": now - 7200, "exp": now - 3600});
    let _ = app;
    jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(key),
    )
    .unwrap()
}

#[tokio::test]
async fn bad_input_is_refused_with_its_code_and_stores_nothing() {
    let app = TestApp::spawn().await;
    let f = app.fixture().await;
    let (report, _) = submit(&app, &f, &f.resident, "RB-01", "FLOATING-GARBAGE").await;
    let before = stored_counts(&app).await;

    let report_input = |fields: Value| {
        let mut input =
            json!({"siteCode": "RB-01", "category": "FLOATING-GARBAGE", "text": "垃圾"});
        for (key, value) in fields.as_object().unwrap() {
            input[key] = value.clone();
        }
        json!({"c": f.community, "r": input})
    };
    let huge_text = "河".repeat(100 * 1024 / 3);
    let ten_photos: Vec<String> = (0..10)
        .map(|i| format!("https://img.example/{i}.jpg"))
        .collect();
    let expired = expired_token(&app, f.community, &app.token_key);
    let foreign_key = expired_token(
        &app,
        f.community,
        b"another key, not the server's one at all",
    );
    let mut deep =
        String::from("query($c: UUID!, $r: UUID!) { report(communityId: $c, reportId: $r) { ");
    deep.push_str(&"likelyDuplicateOf { ".repeat(50));
    deep.push_str("id");
    deep.push_str(&" }".repeat(52));
    let report_vars = json!({"c": f.community, "r": report});
    let accept = "mutation($c: UUID!, $r: UUID!) { acceptReport(communityId: $c, reportId: $r) { position } }";
    let list = "query($c: UUID!, $n: Int, $a: String) { reports(communityId: $c, first: $n, after: $a) { edges { cursor } } }";
    let resident = Some(f.resident.as_str());
    #[rustfmt::skip]
    let table: Vec<(&str, Option<&str>, &str, Value, &str)> = vec![
        ("unknown site code", resident, SUBMIT, report_input(json!({"siteCode": "NOPE-99"})), "NOT_FOUND"),
        ("malformed site code", resident, SUBMIT, report_input(json!({"siteCode": "a b"})), "VALIDATION"),
        ("coordinates outside the community", resident, SUBMIT,
            report_input(json!({"siteCode": null, "latitudeE6": 39_900_000, "longitudeE6": 116_400_000})), "VALIDATION"),
        ("latitude 200°", resident, SUBMIT,
            report_input(json!({"siteCode": null, "latitudeE6": 200_000_000, "longitudeE6": 0})), "VALIDATION"),
        ("site code and coordinates", resident, SUBMIT,
            report_input(json!({"latitudeE6": 30_878_000, "longitudeE6": 104_250_000})), "VALIDATION"),
        ("100 KB text", resident, SUBMIT, report_input(json!({"text": huge_text})), "VALIDATION"),
        ("empty text", resident, SUBMIT, report_input(json!({"text": "   "})), "VALIDATION"),
        ("10 photos", resident, SUBMIT, report_input(json!({"photos": ten_photos})), "VALIDATION"),
        ("http photo", resident, SUBMIT, report_input(json!({"photos": ["http://img.example/a.jpg"]})), "VALIDATION"),
        ("javascript photo", resident, SUBMIT, report_input(json!({"photos": ["javascript:alert(1)"]})), "VALIDATION"),
        ("unknown category", resident, SUBMIT, report_input(json!({"category": "NO-SUCH"})), "VALIDATION"),
        ("wrong type", resident, SUBMIT, report_input(json!({"photos": 7})), "BAD_QUERY"),
        ("missing field", resident, SUBMIT, json!({"c": f.community, "r": {"siteCode": "RB-01"}}), "BAD_QUERY"),
        ("unknown community", resident, SUBMIT, json!({"c": uuid::Uuid::new_v4(), "r": {"siteCode": "RB-01", "category": "FLOATING-GARBAGE", "text": "x"}}), "FORBIDDEN"),
        ("missing token", None, accept, report_vars.clone(), "UNAUTHENTICATED"),
        ("expired token", Some(&expired), accept, report_vars.clone(), "UNAUTHENTICATED"),
        ("token signed with another key", Some(&foreign_key), accept, report_vars.clone(), "UNAUTHENTICATED"),
        ("garbage token", Some("not-a-token"), accept, report_vars.clone(), "UNAUTHENTICATED"),
        ("expired token on an anonymous path", Some(&expired), SUBMIT, report_input(json!({})), "UNAUTHENTICATED"),
        ("a query 50 levels deep", resident, &deep, report_vars.clone(), "QUERY_TOO_DEEP"),
        ("page of 1000", resident, list, json!({"c": f.community, "n": 1000}), "VALIDATION"),
        ("forged cursor", resident, list, json!({"c": f.community, "a": "x"}), "VALIDATION"),
        ("not GraphQL", resident, "mutation { nonsense }", json!({}), "BAD_QUERY"),
    ];
    let mut failures = Vec::new();
    for (what, token, query, variables, expected) in table {
        let response = app.gql(token, query, variables).await;
        let code = code_of(&response);
        if code != expected {
            failures.push(format!("{what}: {code}, expected {expected}: {response}"));
        }
        let message = response["errors"][0]["message"]
            .as_str()
            .unwrap_or_default();
        if expected != "OK" && message.len() < 5 {
            failures.push(format!("{what}: the message says too little: {response}"));
        }
    }
    // Wrong state transitions, with the state they came from.
    for (mutation, expected) in [
        ("confirmReport", "cannot confirm while it is submitted"),
        ("startWork", "cannot start work on while it is submitted"),
    ] {
        let token = if mutation == "confirmReport" {
            &f.resident
        } else {
            &f.admin
        };
        let response = act(&app, &f, token, mutation, report).await;
        assert_eq!(code_of(&response), "CONFLICT", "{response}");
        assert_eq!(response["errors"][0]["message"], expected);
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));

    // Bodies that are not GraphQL requests, and bodies too large to read.
    let not_json = app
        .http
        .post(&app.url)
        .body("{nope")
        .header("content-type", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(not_json.status(), 400);
    let body: Value = not_json.json().await.unwrap();
    assert_eq!(code_of(&body), "BAD_REQUEST");
    let huge = "x".repeat(300 * 1024);
    let too_large = app
        .http
        .post(&app.url)
        .body(huge)
        .header("content-type", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(too_large.status(), 413);
    let body: Value = too_large.json().await.expect("a GraphQL error body");
    assert_eq!(code_of(&body), "PAYLOAD_TOO_LARGE", "{body}");

    assert_eq!(stored_counts(&app).await, before, "nothing was stored");
    app.stop().await;
}

/// `depth` fragments, each spreading the one below twice.
fn exploding_query(depth: usize) -> String {
    let mut query = String::from("query { ...F0 }\n");
    for level in 0..depth {
        let next = level + 1;
        query.push_str(&format!(
            "fragment F{level} on Query {{ a: __typename ...F{next} b: __typename ...F{next} }}\n"
        ));
    }
    query.push_str(&format!("fragment F{depth} on Query {{ __typename }}\n"));
    query
}

#[tokio::test]
async fn costly_query_shapes_are_refused_before_they_run_and_file_nothing() {
    let app = TestApp::spawn_quiet().await;
    let f = app.fixture().await;
    let before = stored_counts(&app).await;
    let exploding = exploding_query(18);
    assert!(
        exploding.len() < 1_500,
        "a small query: {}",
        exploding.len()
    );
    let aliased = |n: usize| {
        let fields: String = (0..n)
            .map(|i| format!("r{i}: submitReport(communityId: $c, report: $r) {{ position }} "))
            .collect();
        format!("mutation($c: UUID!, $r: ReportInput!) {{ {fields} }}")
    };
    let report = json!({"c": f.community, "r": {"siteCode": "RB-01", "category": "FLOATING-GARBAGE", "text": "垃圾"}});
    let resident = Some(f.resident.as_str());
    let table: Vec<(&str, Option<&str>, String, Value)> = vec![
        (
            "exploding fragments, anonymous",
            None,
            exploding.clone(),
            json!({}),
        ),
        (
            "exploding fragments, signed in",
            resident,
            exploding.clone(),
            json!({}),
        ),
        (
            "100 aliased submitReport, signed in",
            resident,
            aliased(100),
            report.clone(),
        ),
        (
            "2 aliased submitReport, anonymous",
            None,
            aliased(2),
            report.clone(),
        ),
    ];
    for (what, token, query, variables) in table {
        let response = app.gql(token, &query, variables).await;
        assert_eq!(
            code_of(&response),
            "QUERY_TOO_COMPLEX",
            "{what}: {response}"
        );
    }
    assert_eq!(stored_counts(&app).await, before, "nothing was filed");

    // Within the bounds, the same shapes run.
    let small = app.gql(None, &exploding_query(3), json!({})).await;
    assert_eq!(code_of(&small), "OK", "{small}");
    let two = app.gql(resident, &aliased(2), report).await;
    assert_eq!(code_of(&two), "OK", "{two}");

    // Over WebSocket the same check applies (there it is the schema's
    // extension, not the HTTP handler's).
    let mut socket = crate::app::Subscription::open(&app, &f.resident, &exploding, json!({})).await;
    let refused = socket.next_message().await;
    // A query's errors come as its one result.
    assert_eq!(refused["type"], "next", "{refused}");
    assert_eq!(refused["payload"]["data"], Value::Null, "{refused}");
    assert_eq!(
        refused["payload"]["errors"][0]["extensions"]["code"], "QUERY_TOO_COMPLEX",
        "{refused}"
    );

    // The server keeps recent queries parsed; a kept parse is checked
    // again for each caller: 766 selections are within a resident's
    // bounds and not an anonymous caller's, whoever sent them first.
    let middling = exploding_query(8);
    for (who, token, code) in [
        ("signed in", resident, "OK"),
        ("anonymous, after", None, "QUERY_TOO_COMPLEX"),
        ("signed in again", resident, "OK"),
        ("anonymous again", None, "QUERY_TOO_COMPLEX"),
    ] {
        let response = app.gql(token, &middling, json!({})).await;
        assert_eq!(code_of(&response), code, "{who}: {response}");
    }
    app.stop().await;
}
