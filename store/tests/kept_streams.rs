//! Whole streams loaded from memory (`EventStore::read_whole_stream`):
//! exactly what the log holds, from memory for the streams this process
//! wrote, from PostgreSQL once another process wrote their community.

use std::sync::atomic::Ordering;

use store::{CommunityId, EventStore, ExpectedVersion};

use crate::helpers::*;
use crate::tail::as_read;

/// (whole-stream reads from memory, from PostgreSQL) so far.
fn reads(store: &EventStore) -> (u64, u64) {
    let stats = store.stats();
    (
        stats.kept_stream_reads_total.load(Ordering::Relaxed),
        stats.stream_reads_total.load(Ordering::Relaxed),
    )
}

async fn assert_as_logged(store: &EventStore, community: CommunityId, name: &str, from: i64) {
    let whole = store
        .read_whole_stream(community, name, from)
        .await
        .expect("read whole");
    let logged = store
        .read_stream(community, name, from, 10_000)
        .await
        .expect("read");
    assert_eq!(
        whole.iter().map(as_read).collect::<Vec<_>>(),
        logged.iter().map(as_read).collect::<Vec<_>>(),
        "{name} from version {from}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_this_process_wrote_is_loaded_from_memory_as_the_log_holds_it() {
    let db = TestDb::new().await;
    let store = db.store().await;
    listening(&store).await;
    let community = community(&store).await;
    // Read whole before its first event, as a command starting it would.
    assert_as_logged(&store, community, "wallet-a", 1).await;
    assert_eq!(reads(&store), (0, 1));
    for n in 1..=8_i64 {
        let expected = match n {
            1 => ExpectedVersion::NoStream,
            n => ExpectedVersion::Exact(n - 1),
        };
        append(&store, append_one(community, "wallet-a", expected, n)).await;
        let other = format!("wallet-other-{n}");
        append(
            &store,
            append_one(community, &other, ExpectedVersion::NoStream, n),
        )
        .await;
        assert_as_logged(&store, community, "wallet-a", 1).await;
        assert_as_logged(&store, community, "wallet-a", n).await;
    }
    assert_eq!(reads(&store), (16, 1), "every later load from memory");

    // A stream another process wrote is read once, then kept.
    let there = db.store().await;
    let mut head = store.head_watch(community);
    let outcome = append(
        &there,
        append_one(community, "wallet-b", ExpectedVersion::NoStream, 1),
    )
    .await;
    announced(&mut head, outcome.last_position).await;
    assert_as_logged(&store, community, "wallet-b", 1).await;
    assert_as_logged(&store, community, "wallet-b", 1).await;
    assert_eq!(reads(&store), (17, 2));
    // A stream with no event is empty, and kept as such.
    assert_as_logged(&store, community, "wallet-none", 1).await;
    assert_as_logged(&store, community, "wallet-none", 1).await;
    assert_eq!(reads(&store), (18, 3));
}

/// Another process's commit, once announced, is in what is loaded: the
/// streams kept before it are read again; an append decided on a kept
/// stream that went stale conflicts instead of landing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_processs_commit_is_loaded_once_announced_and_a_stale_decision_conflicts() {
    let db = TestDb::new().await;
    let (here, there) = (db.store().await, db.store().await);
    listening(&here).await;
    let community = community(&here).await;
    assert!(here
        .read_whole_stream(community, "wallet-a", 1)
        .await
        .unwrap()
        .is_empty());
    for n in 1..=3_i64 {
        let expected = match n {
            1 => ExpectedVersion::NoStream,
            n => ExpectedVersion::Exact(n - 1),
        };
        append(&here, append_one(community, "wallet-a", expected, n)).await;
    }
    let kept = here
        .read_whole_stream(community, "wallet-a", 1)
        .await
        .unwrap();
    assert_eq!(kept.len(), 3);
    let mut head = here.head_watch(community);
    let outcome = append(
        &there,
        append_one(community, "wallet-a", ExpectedVersion::Exact(3), 4),
    )
    .await;
    // Decided on the three events kept: the fourth is in the log.
    let stale = here
        .append(append_one(
            community,
            "wallet-a",
            ExpectedVersion::Exact(kept.len() as i64),
            5,
        ))
        .await;
    assert!(
        matches!(stale, Err(store::StoreError::Conflict { .. })),
        "{stale:?}"
    );
    announced(&mut head, outcome.last_position).await;
    let (_, before) = reads(&here);
    assert_as_logged(&here, community, "wallet-a", 1).await;
    assert_eq!(reads(&here).1, before + 1, "read from PostgreSQL");
    assert_eq!(
        here.read_whole_stream(community, "wallet-a", 1)
            .await
            .unwrap()
            .len(),
        4
    );
}
