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

/// What a follower of the log would compare: every field, the payload as a
/// value (its text may be in another form, never another value).
pub(crate) fn as_read(
    event: &store::RecordedEvent,
) -> (i64, String, String, i64, String, serde_json::Value) {
    let fields = format!(
        "{} {} {:?} {} {} {}",
        event.stream_type,
        event.event_version,
        event.metadata,
        event.recorded_at.to_rfc3339(),
        hex::encode(event.previous_hash),
        hex::encode(event.hash),
    );
    (
        event.position,
        event.stream_id.clone(),
        event.event_type.clone(),
        event.stream_version,
        fields,
        event.payload_value().expect("a payload decodes"),
    )
}

/// A follower reads, from memory, what this process committed a moment
/// ago, and from the log what another process wrote between; either way
/// exactly what the log holds, in order, with no position missed, while
/// many tasks of both processes append at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_follower_reads_exactly_the_log_from_memory_and_from_the_log_while_two_processes_write() {
    let db = TestDb::new().await;
    let (here, there) = (db.pipelined_store().await, db.store().await);
    let community = community(&here).await;
    let appends_each = 40_i64;
    let tasks = 12_i64;
    let writing = futures::future::join_all((0..tasks).map(|task| {
        // One task in four writes through the other process.
        let writer = if task % 4 == 3 {
            there.clone()
        } else {
            here.clone()
        };
        async move {
            for n in 0..appends_each {
                let mut event = event(task * 1_000 + n);
                event.payload = serde_json::json!({
                    "n": n,
                    "text": "河道 \"漂浮物\" \\ \n tab\t",
                    "nested": {"zeta": [1, -2, 3000000000_i64], "alpha": null, "b": true},
                    "amount": "25.5",
                });
                event
                    .metadata
                    .insert("actor_role".into(), format!("role-{task}"));
                let request = store::AppendRequest::new(community).stream(
                    stream(&format!("report-{task}-{n}")),
                    stream_type(),
                    ExpectedVersion::NoStream,
                    vec![event.clone(), event],
                );
                append(&writer, request).await;
            }
        }
    }));
    let total = tasks * appends_each * 2;
    let following = async {
        let mut followed = Vec::new();
        while (followed.len() as i64) < total {
            let from = followed.len() as i64 + 1;
            let batch = here
                .read_log_followed(community, from, 37)
                .await
                .expect("read");
            if batch.is_empty() {
                tokio::time::sleep(std::time::Duration::from_millis(1)).await;
            }
            followed.extend(batch);
        }
        followed
    };
    let (_, followed) = tokio::time::timeout(
        std::time::Duration::from_secs(60),
        futures::future::join(writing, following),
    )
    .await
    .expect("the follower reaches the head");
    let logged = read_all(&here, community).await;
    assert_eq!(logged.len() as i64, total);
    let followed: Vec<_> = followed.iter().map(as_read).collect();
    let logged: Vec<_> = logged.iter().map(as_read).collect();
    assert_eq!(followed, logged);
    let from_memory = here
        .stats()
        .tail_reads_total
        .load(std::sync::atomic::Ordering::Relaxed);
    assert!(from_memory > 0, "some reads came from memory");
    assert_chain_intact(&here, community).await;
}
