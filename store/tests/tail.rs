//! Reads of the log's tail: the bounded search for events of a type whose
//! payload contains a document, after a position and among the community's
//! last events; and where a stream's last event lies.

use serde_json::{json, Value};
use store::types::{EventType, NewEvent};
use store::{ExpectedVersion, StoreError};

use crate::helpers::*;

/// Whether `document` holds every member of `part`, recursively (jsonb's
/// `@>` on objects and scalars), written here apart from PostgreSQL.
fn contains(document: &Value, part: &Value) -> bool {
    match (document, part) {
        (Value::Object(document), Value::Object(part)) => part
            .iter()
            .all(|(key, value)| document.get(key).is_some_and(|held| contains(held, value))),
        (document, part) => document == part,
    }
}

#[tokio::test]
async fn a_tail_search_sends_what_matches_within_its_bounds_and_nothing_else() {
    let db = TestDb::new().await;
    let store = db.store().await;
    let community = community(&store).await;
    let other = self::community(&store).await;
    let types = ["ReportSubmitted", "ReportAccepted"];
    for n in 0..40_i64 {
        let event_type = types[(n % 3 == 0) as usize];
        let site = ["a", "b"][(n % 2) as usize];
        let category = ["x", "y", "x", "z"][(n % 4) as usize];
        let payload = json!({event_type: {
            "place": {"site": {"site": site, "code": "RB-01"}},
            "category": category, "n": n}});
        for into in [community, other] {
            let request = store::AppendRequest::new(into).stream(
                stream(&format!("report-{n}")),
                stream_type(),
                ExpectedVersion::NoStream,
                vec![NewEvent::new(
                    EventType::parse(event_type).unwrap(),
                    payload.clone(),
                )],
            );
            append(&store, request).await;
        }
    }
    let log = read_all(&store, community).await;
    let head = log.len() as i64;
    let at_a_x = json!({"ReportSubmitted": {"place": {"site": {"site": "a"}}, "category": "x"}});
    let cases: [(i64, i64, &str, Value, i64); 8] = [
        (0, 40, "ReportSubmitted", at_a_x.clone(), 100),
        (0, 10, "ReportSubmitted", at_a_x.clone(), 100),
        (30, 40, "ReportSubmitted", at_a_x.clone(), 100),
        (0, 40, "ReportSubmitted", at_a_x.clone(), 2),
        (
            0,
            40,
            "ReportAccepted",
            json!({"ReportAccepted": {"category": "x"}}),
            100,
        ),
        (0, 40, "ReportSubmitted", json!({}), 100),
        (
            0,
            40,
            "ReportSubmitted",
            json!({"ReportSubmitted": {"category": "w"}}),
            100,
        ),
        (head, 40, "ReportSubmitted", json!({}), 100),
    ];
    for (after, window, event_type, part, limit) in cases {
        let found = store
            .tail_matching(community, after, window, event_type, &part, limit)
            .await
            .unwrap();
        let expected: Vec<i64> = log
            .iter()
            .filter(|e| e.position > after.max(head - window))
            .filter(|e| e.event_type == event_type)
            .filter(|e| contains(&serde_json::from_str(e.payload.get()).unwrap(), &part))
            .map(|e| e.position)
            .take(limit as usize)
            .collect();
        let positions: Vec<i64> = found.iter().map(|e| e.position).collect();
        assert_eq!(
            positions, expected,
            "after {after}, window {window}, {event_type} {part}"
        );
        assert!(found.iter().all(|e| e.community_id == community));
    }
    let some = store
        .tail_matching(community, 0, 40, "ReportSubmitted", &at_a_x, 100)
        .await
        .unwrap();
    assert!(!some.is_empty(), "the fixture has matches");

    for (window, limit) in [
        (0, 10),
        (-1, 10),
        (10, 0),
        (10, -5),
        (10_001, 10),
        (10, 10_001),
    ] {
        let refused = store
            .tail_matching(community, 0, window, "ReportSubmitted", &at_a_x, limit)
            .await;
        assert!(
            matches!(refused, Err(StoreError::Invalid { .. })),
            "window {window}, limit {limit}: {refused:?}"
        );
    }
    let unknown = store
        .tail_matching(
            store::CommunityId::random(),
            0,
            40,
            "ReportSubmitted",
            &json!({}),
            10,
        )
        .await
        .unwrap();
    assert!(unknown.is_empty());
}

#[tokio::test]
async fn a_streams_last_position_is_its_newest_events_in_its_own_community() {
    let db = TestDb::new().await;
    let store = db.store().await;
    let community = community(&store).await;
    let other = self::community(&store).await;
    let mut last = std::collections::HashMap::new();
    for n in 0..30_i64 {
        let name = format!("wallet-{}", n % 4);
        let version = last.get(&name).map_or(0, |(v, _)| *v);
        let expected = match version {
            0 => ExpectedVersion::NoStream,
            v => ExpectedVersion::Exact(v),
        };
        let outcome = append(&store, append_one(community, &name, expected, n)).await;
        last.insert(name, (version + 1, outcome.last_position));
        if n % 3 == 0 {
            // Another community's events with the same stream names and
            // later positions do not count.
            let into = format!("wallet-{n}");
            append(
                &store,
                append_one(other, &into, ExpectedVersion::NoStream, n),
            )
            .await;
        }
    }
    for (name, (_, position)) in &last {
        let found = store.stream_last_position(community, name).await.unwrap();
        assert_eq!(found, Some(*position), "{name}");
    }
    let none = store
        .stream_last_position(community, "wallet-none")
        .await
        .unwrap();
    assert_eq!(none, None);
}
