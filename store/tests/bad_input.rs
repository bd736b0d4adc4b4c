//! Bad input gets a clear, typed error and nothing stored changes.

use serde_json::json;
use store::{
    AppendRequest, CommunityId, EventType, ExpectedVersion, NewEvent, StoreError, StreamId,
    StreamType,
};

use crate::helpers::*;

#[test]
fn names_with_rules_refuse_bad_text_at_parse_time() {
    let long = "s".repeat(201);
    let cases: [(&str, Result<StreamId, StoreError>); 5] = [
        ("empty", StreamId::parse("")),
        ("too long", StreamId::parse(long.as_str())),
        ("space", StreamId::parse("report 1")),
        ("control character", StreamId::parse("report\n1")),
        ("non-ASCII", StreamId::parse("报告-1")),
    ];
    for (what, parsed) in cases {
        let error = parsed.expect_err(what);
        assert!(
            matches!(
                error,
                StoreError::Invalid {
                    field: "stream_id",
                    ..
                }
            ),
            "{what}: {error}"
        );
        assert_eq!(error.code(), "VALIDATION");
    }
    // The same rules hold for values that arrive as JSON.
    assert!(serde_json::from_value::<StreamId>(json!("")).is_err());
    assert!(serde_json::from_value::<StreamId>(json!(17)).is_err());
    assert!(EventType::parse("").is_err());
    assert!(StreamType::parse("Report Aggregate").is_err());
}

fn request(
    community: CommunityId,
    expected: ExpectedVersion,
    events: Vec<NewEvent>,
) -> AppendRequest {
    AppendRequest::new(community).stream(stream("report-1"), stream_type(), expected, events)
}

fn with_payload(payload: serde_json::Value) -> Vec<NewEvent> {
    vec![NewEvent::new(
        EventType::parse("ReportSubmitted").unwrap(),
        payload,
    )]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_appends_store_nothing() {
    let db = TestDb::new().await;
    let store = db.store().await;
    let community = community(&store).await;
    append(
        &store,
        request(community, ExpectedVersion::NoStream, vec![event(0)]),
    )
    .await;

    let huge_text = "水".repeat(store::limits::PAYLOAD_BYTES_MAX);
    let mut huge_metadata = event(1);
    huge_metadata
        .metadata
        .insert("note".into(), "x".repeat(5_000));
    let mut bad_version = event(1);
    bad_version.event_version = String::new();
    let two_of_one_stream = AppendRequest::new(community)
        .stream(
            stream("a"),
            stream_type(),
            ExpectedVersion::Any,
            vec![event(1)],
        )
        .stream(
            stream("a"),
            stream_type(),
            ExpectedVersion::Any,
            vec![event(2)],
        );
    let cases: Vec<(&str, AppendRequest, &str)> = vec![
        (
            "unknown community",
            request(CommunityId::random(), ExpectedVersion::Any, vec![event(1)]),
            "NOT_FOUND",
        ),
        (
            "oversized payload",
            request(
                community,
                ExpectedVersion::Any,
                with_payload(json!({"text": huge_text})),
            ),
            "VALIDATION",
        ),
        (
            "negative expected version",
            request(community, ExpectedVersion::Exact(-1), vec![event(1)]),
            "VALIDATION",
        ),
        (
            "no events",
            request(community, ExpectedVersion::Any, vec![]),
            "VALIDATION",
        ),
        ("no streams", AppendRequest::new(community), "VALIDATION"),
        (
            "too many events",
            request(
                community,
                ExpectedVersion::Any,
                (0..1_001).map(event).collect(),
            ),
            "VALIDATION",
        ),
        (
            "a fractional number",
            request(
                community,
                ExpectedVersion::Any,
                with_payload(json!({"points": 1.5})),
            ),
            "VALIDATION",
        ),
        (
            "an unsafe integer",
            request(
                community,
                ExpectedVersion::Any,
                with_payload(json!({"n": u64::MAX})),
            ),
            "VALIDATION",
        ),
        (
            "a NUL character",
            request(
                community,
                ExpectedVersion::Any,
                with_payload(json!({"text": "a\u{0}b"})),
            ),
            "VALIDATION",
        ),
        (
            "oversized metadata",
            request(community, ExpectedVersion::Any, vec![huge_metadata]),
            "VALIDATION",
        ),
        (
            "empty event version",
            request(community, ExpectedVersion::Any, vec![bad_version]),
            "VALIDATION",
        ),
        ("one stream twice", two_of_one_stream, "VALIDATION"),
        (
            "a condition on a written stream",
            request(community, ExpectedVersion::Exact(1), vec![event(1)])
                .provided(stream("report-1"), ExpectedVersion::Exact(1)),
            "VALIDATION",
        ),
        (
            "one condition twice",
            request(community, ExpectedVersion::Exact(1), vec![event(1)])
                .provided(stream("setup"), ExpectedVersion::Any)
                .provided(stream("setup"), ExpectedVersion::Any),
            "VALIDATION",
        ),
        (
            "a condition with a negative version",
            request(community, ExpectedVersion::Exact(1), vec![event(1)])
                .provided(stream("setup"), ExpectedVersion::Exact(-1)),
            "VALIDATION",
        ),
        (
            "too many streams with conditions",
            (0..store::limits::STREAMS_PER_APPEND_MAX).fold(
                request(community, ExpectedVersion::Exact(1), vec![event(1)]),
                |request, n| request.provided(stream(&format!("c{n}")), ExpectedVersion::Any),
            ),
            "VALIDATION",
        ),
        (
            "only conditions",
            AppendRequest::new(community).provided(stream("report-1"), ExpectedVersion::Exact(1)),
            "VALIDATION",
        ),
        (
            "a condition that no longer holds",
            request(community, ExpectedVersion::Exact(1), vec![event(1)])
                .provided(stream("setup"), ExpectedVersion::Exact(3)),
            "CONFLICT",
        ),
        (
            "stale version",
            request(community, ExpectedVersion::Exact(5), vec![event(1)]),
            "CONFLICT",
        ),
    ];
    let head_before = store.head(community).await.unwrap();
    for (what, request, code) in cases {
        let error = store.append(request).await.expect_err(what);
        assert_eq!(error.code(), code, "{what}: {error}");
        assert!(!error.to_string().is_empty());
    }
    if let Err(StoreError::UnknownCommunity(_)) = store.head(CommunityId::random()).await {
    } else {
        panic!("the head of an unknown community is NOT_FOUND");
    }
    assert_eq!(
        store.head(community).await.unwrap(),
        head_before,
        "the head did not move"
    );
    assert_eq!(db.event_count().await, 1, "nothing was stored");
    assert_chain_intact(&store, community).await;
    // Refused appends did not poison the writer: the next good one lands.
    let outcome = append(
        &store,
        request(community, ExpectedVersion::Exact(1), vec![event(2)]),
    )
    .await;
    assert_eq!(outcome.last_position, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_reads_and_communities_are_refused() {
    let db = TestDb::new().await;
    let store = db.store().await;
    let community = community(&store).await;
    for limit in [0, -1, store::limits::READ_BATCH_MAX + 1] {
        let error = store.read_log(community, 1, limit).await.unwrap_err();
        assert_eq!(error.code(), "VALIDATION", "limit {limit}");
    }
    let duplicate = store
        .create_community(community, "again")
        .await
        .unwrap_err();
    assert_eq!(duplicate.code(), "CONFLICT");
    let unnamed = store
        .create_community(CommunityId::random(), "  ")
        .await
        .unwrap_err();
    assert_eq!(unnamed.code(), "VALIDATION");
}
