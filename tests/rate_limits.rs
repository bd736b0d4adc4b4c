//! Rate limits keyed on what a client cannot rotate at will, with the wait
//! in every refusal, and client addresses read only through trusted proxies.

use serde_json::{json, Value};

use crate::app::*;

fn report(fingerprint: &str) -> Value {
    json!({"siteCode": "RB-01", "category": "FLOATING-GARBAGE", "text": "河里有死鱼",
        "clientFingerprint": fingerprint})
}

impl TestApp {
    /// A request as if from behind a proxy: (status, Retry-After, body).
    pub async fn forwarded(
        &self,
        token: Option<&str>,
        forwarded_for: &str,
        key: Option<&str>,
        query: &str,
        variables: Value,
    ) -> (u16, Option<String>, Value) {
        let mut request = self
            .http
            .post(&self.url)
            .header("X-Forwarded-For", forwarded_for)
            .json(&json!({"query": query, "variables": variables}));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(key) = key {
            request = request.header("Idempotency-Key", key);
        }
        let response = request.send().await.expect("the server answers");
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get("retry-after")
            .map(|v| v.to_str().unwrap().to_string());
        (
            status,
            retry_after,
            response.json().await.expect("a JSON body"),
        )
    }
}

fn rates(anonymous: u32, community: u32, member: u32) -> Options {
    Options {
        anonymous_burst: anonymous,
        rates: app::ratelimit::SubmissionRates {
            anonymous_burst: anonymous,
            anonymous_per_minute: 1,
            anonymous_community_burst: community,
            anonymous_community_per_minute: 1,
            member_burst: member,
            member_per_minute: 1,
        },
        ..Options::default()
    }
}

fn assert_limited(status: u16, retry_after: Option<String>, body: &Value) {
    assert_eq!(code_of(body), "RATE_LIMITED", "{body}");
    let seconds = body["errors"][0]["extensions"]["retryAfterSeconds"]
        .as_u64()
        .unwrap_or_else(|| panic!("retryAfterSeconds: {body}"));
    assert!((1..=60).contains(&seconds), "{seconds}");
    assert_eq!(status, 429, "the whole request was refused");
    assert_eq!(retry_after, Some(seconds.to_string()));
}

#[tokio::test]
async fn a_new_fingerprint_buys_no_new_budget_and_residents_are_limited_too() {
    let app = TestApp::spawn_with(rates(3, 1_000, 4)).await;
    let f = app.fixture().await;
    for n in 0..3 {
        let (status, _, body) = app
            .forwarded(
                None,
                "203.0.113.1",
                None,
                SUBMIT,
                json!({"c": f.community, "r": report(&format!("phone-{n}"))}),
            )
            .await;
        assert_eq!((status, code_of(&body).as_str()), (200, "OK"), "{body}");
    }
    let (status, retry_after, body) = app
        .forwarded(
            None,
            "203.0.113.1",
            None,
            SUBMIT,
            json!({"c": f.community, "r": report("phone-new")}),
        )
        .await;
    assert_limited(status, retry_after, &body);

    // Without a trusted proxy, X-Forwarded-For is anyone's to write: it
    // names no other client, so the same budget refuses.
    let (status, retry_after, body) = app
        .forwarded(
            None,
            "198.51.100.77",
            None,
            SUBMIT,
            json!({"c": f.community, "r": report("phone-x")}),
        )
        .await;
    assert_limited(status, retry_after, &body);

    let suggest = "mutation($c: UUID!) { submitSuggestion(communityId: $c, siteCode: \"MS-01\", text: \"加装护栏\") { position } }";
    for n in 0..4 {
        let answer = app
            .gql(
                Some(&f.resident),
                SUBMIT,
                json!({"c": f.community, "r": report(&n.to_string())}),
            )
            .await;
        assert_eq!(code_of(&answer), "OK", "{answer}");
    }
    let (status, retry_after, body) = app
        .forwarded(
            Some(&f.resident),
            "127.0.0.1",
            None,
            suggest,
            json!({"c": f.community}),
        )
        .await;
    assert_limited(status, retry_after, &body);
    let other = app
        .gql(Some(&f.other_resident), suggest, json!({"c": f.community}))
        .await;
    assert_eq!(
        code_of(&other),
        "OK",
        "another resident has a budget of their own: {other}"
    );
    app.stop().await;
}

#[tokio::test]
async fn behind_a_trusted_proxy_each_client_and_each_community_has_its_own_budget() {
    let app = TestApp::spawn_with(Options {
        trusted_proxies: "127.0.0.1",
        ..rates(2, 5, 1_000)
    })
    .await;
    let f = app.fixture().await;
    let other = app.fixture().await;
    let submit_from = |address: &'static str, community| {
        app.forwarded(
            None,
            address,
            None,
            SUBMIT,
            json!({"c": community, "r": report("same")}),
        )
    };
    for address in ["203.0.113.1", "203.0.113.1", "203.0.113.2", "203.0.113.2"] {
        let (status, _, body) = submit_from(address, f.community).await;
        assert_eq!(
            (status, code_of(&body).as_str()),
            (200, "OK"),
            "{address}: {body}"
        );
    }
    let (status, retry_after, body) = submit_from("203.0.113.1", f.community).await;
    assert_limited(status, retry_after, &body);
    // A fifth address is the community's fifth anonymous submission...
    let (status, _, body) = submit_from("203.0.113.3", f.community).await;
    assert_eq!((status, code_of(&body).as_str()), (200, "OK"), "{body}");
    // ...and the community's budget refuses a sixth, from anywhere.
    let (status, retry_after, body) = submit_from("203.0.113.4", f.community).await;
    assert_limited(status, retry_after, &body);
    // Another community's budget is its own.
    let (status, _, body) = submit_from("203.0.113.1", other.community).await;
    assert_eq!((status, code_of(&body).as_str()), (200, "OK"), "{body}");
    app.stop().await;
}

#[tokio::test]
async fn an_anonymous_key_is_scoped_to_the_address_the_proxy_vouches_for() {
    let app = TestApp::spawn_with(Options {
        trusted_proxies: "127.0.0.1",
        ..Options::default()
    })
    .await;
    let f = app.fixture().await;
    let variables = json!({"c": f.community, "r": report("p")});
    let (_, _, mine) = app
        .forwarded(
            None,
            "203.0.113.8",
            Some("retry-1"),
            SUBMIT,
            variables.clone(),
        )
        .await;
    let (_, _, again) = app
        .forwarded(
            None,
            "203.0.113.8",
            Some("retry-1"),
            SUBMIT,
            variables.clone(),
        )
        .await;
    let (_, _, theirs) = app
        .forwarded(None, "203.0.113.9", Some("retry-1"), SUBMIT, variables)
        .await;
    assert_eq!(
        again["data"], mine["data"],
        "the creator's retry gets the first outcome"
    );
    let secret = |answer: &Value| answer["data"]["submitReport"]["claimSecret"].clone();
    assert_ne!(secret(&theirs), secret(&mine), "{theirs}");
    assert_ne!(
        theirs["data"]["submitReport"]["reportId"],
        mine["data"]["submitReport"]["reportId"]
    );
    app.stop().await;
}
