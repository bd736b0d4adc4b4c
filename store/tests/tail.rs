//! Reads of the log's tail: where a stream's last event lies.

use store::ExpectedVersion;

use crate::helpers::*;

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

/// Several streams' first events in one statement: each stream's own, in
/// version order, only from its community, and bounded.
#[tokio::test]
async fn the_start_of_several_streams_is_read_in_one_statement() {
    let db = TestDb::new().await;
    let store = db.store().await;
    let community = community(&store).await;
    let other = self::community(&store).await;
    // Interleaved: report-a gets 5 events, report-b 2, report-c none.
    for (n, name) in ["report-a", "report-b", "report-a", "report-a", "report-b"]
        .iter()
        .chain(["report-a", "report-a"].iter())
        .enumerate()
    {
        let events = read_all(&store, community).await;
        let version = events.iter().filter(|e| e.stream_id == *name).count() as i64;
        let expected = match version {
            0 => ExpectedVersion::NoStream,
            v => ExpectedVersion::Exact(v),
        };
        append(&store, append_one(community, name, expected, n as i64)).await;
    }
    append(
        &store,
        append_one(other, "report-a", ExpectedVersion::NoStream, 99),
    )
    .await;
    let ids = |names: &[&str]| names.iter().map(|n| n.to_string()).collect::<Vec<_>>();
    let read = store
        .read_streams_start(community, &ids(&["report-b", "report-a", "report-c"]), 3)
        .await
        .expect("read");
    let got: Vec<(String, i64)> = read
        .iter()
        .map(|e| (e.stream_id.clone(), e.stream_version))
        .collect();
    let want: Vec<(String, i64)> = [("report-a", 1), ("report-a", 2), ("report-a", 3)]
        .iter()
        .chain([("report-b", 1), ("report-b", 2)].iter())
        .map(|(s, v)| (s.to_string(), *v))
        .collect();
    assert_eq!(got, want, "the first three of each, stream by stream");
    assert!(read.iter().all(|e| e.community_id == community));
    assert!(store
        .read_streams_start(community, &[], 3)
        .await
        .expect("nothing asked")
        .is_empty());
    for (streams, versions) in [(1, 0), (1, -1), (2, 6_000), (20_000, 1)] {
        let names: Vec<String> = (0..streams).map(|n| format!("report-{n}")).collect();
        let refused = store.read_streams_start(community, &names, versions).await;
        assert!(
            matches!(refused, Err(store::StoreError::Invalid { .. })),
            "{streams} streams × {versions} versions: {refused:?}"
        );
    }
}
