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
