//! Appends queued behind other appends of this process (`AppendRequest::
//! after`): they share commits, land in the order they were queued, and
//! never land on a state that did not.

use std::sync::atomic::Ordering;

use store::{EventStore, ExpectedVersion, IdempotencyKey, StoreError};

use crate::helpers::*;

/// Fifty commands on one stream, each decided on the state the one before
/// leaves and queued before that one committed.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn appends_queued_behind_each_other_land_in_order_and_share_commits() {
    let db = TestDb::new().await;
    for store in [db.store().await, db.pipelined_store().await] {
        let community = community(&store).await;
        let batches_before = store.stats().batches_total.load(Ordering::Relaxed);
        let mut queued = Vec::new();
        let mut ahead = None;
        for n in 0..50_i64 {
            let expected = match n {
                0 => ExpectedVersion::NoStream,
                n => ExpectedVersion::Exact(n),
            };
            let mut request = append_one(community, "gift-1", expected, n);
            if let Some(landing) = ahead.take() {
                request = request.after(landing);
            }
            let submitted = store.submit(request).await.expect("queued");
            ahead = Some(submitted.landing());
            queued.push(submitted);
        }
        let mut versions = Vec::new();
        for submitted in queued {
            let landing = submitted.landing();
            let outcome = submitted.outcome().await.expect("lands");
            assert!(landing.has_landed(), "{landing:?}");
            versions.push(outcome.streams[0].version);
        }
        assert_eq!(versions, (1..=50).collect::<Vec<i64>>());
        let batches = store.stats().batches_total.load(Ordering::Relaxed) - batches_before;
        assert!(
            batches < 10,
            "fifty appends queued back to back share commits: {batches} batches"
        );
        let events = read_all(&store, community).await;
        let order: Vec<i64> = events
            .iter()
            .map(|e| e.payload_value().unwrap()["n"].as_i64().unwrap())
            .collect();
        assert_eq!(order, (0..50).collect::<Vec<i64>>(), "in the order queued");
        assert_chain_intact(&store, community).await;
    }
}

/// How the append ahead comes not to land.
#[derive(Clone, Copy, Debug)]
enum AheadFails {
    /// Another process wrote the stream first: the append ahead conflicts,
    /// and the version the one behind expects is now held by that write.
    AnotherProcessWroteFirst,
    /// The append ahead repeats an idempotency key: it is answered with
    /// the first outcome and writes nothing now.
    RepeatsAKey,
    /// The append ahead uses a key already used for another request.
    ReusesAKey,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_append_queued_behind_one_that_does_not_land_never_lands() {
    for case in [
        AheadFails::AnotherProcessWroteFirst,
        AheadFails::RepeatsAKey,
        AheadFails::ReusesAKey,
    ] {
        let db = TestDb::new().await;
        let (this, other) = (db.store().await, db.store().await);
        let community = community(&this).await;
        let key = IdempotencyKey::parse("grant:report-7".to_string()).unwrap();
        // The stream stands at version 1, written by this process, so its
        // writer believes it there.
        let first = append_one(community, "budget", ExpectedVersion::NoStream, 1);
        let first = match case {
            AheadFails::RepeatsAKey | AheadFails::ReusesAKey => first.idempotent(key.clone()),
            AheadFails::AnotherProcessWroteFirst => first,
        };
        append(&this, first).await;
        let ahead = match case {
            AheadFails::AnotherProcessWroteFirst => {
                append(
                    &other,
                    append_one(community, "budget", ExpectedVersion::Exact(1), 2),
                )
                .await;
                append_one(community, "budget", ExpectedVersion::Exact(1), 3)
            }
            AheadFails::RepeatsAKey => {
                append_one(community, "budget", ExpectedVersion::NoStream, 1).idempotent(key)
            }
            AheadFails::ReusesAKey => {
                append_one(community, "budget", ExpectedVersion::Exact(1), 3).idempotent(key)
            }
        };
        let ahead = this.submit(ahead).await.expect("queued");
        // The one behind was decided on the stream at 2, as the append
        // ahead would have left it (and as the other process's write did).
        let behind =
            append_one(community, "budget", ExpectedVersion::Exact(2), 4).after(ahead.landing());
        let ahead_landing = ahead.landing();
        let behind = this.submit(behind).await.expect("queued");
        let behind_landing = behind.landing();
        let ahead_outcome = ahead.outcome().await;
        match case {
            AheadFails::AnotherProcessWroteFirst => assert!(
                matches!(ahead_outcome, Err(StoreError::Conflict { .. })),
                "{case:?}: {ahead_outcome:?}"
            ),
            AheadFails::RepeatsAKey => assert!(
                ahead_outcome.as_ref().is_ok_and(|o| o.replayed),
                "{case:?}: {ahead_outcome:?}"
            ),
            AheadFails::ReusesAKey => assert!(
                matches!(ahead_outcome, Err(StoreError::IdempotencyKeyReused { .. })),
                "{case:?}: {ahead_outcome:?}"
            ),
        }
        assert!(ahead_landing.has_failed(), "{case:?}: {ahead_landing:?}");
        let behind_outcome = behind.outcome().await;
        assert!(
            matches!(behind_outcome, Err(StoreError::Conflict { .. })),
            "{case:?}: the append behind is refused: {behind_outcome:?}"
        );
        assert!(behind_landing.has_failed(), "{case:?}");
        let written: Vec<i64> = read_all(&this, community)
            .await
            .iter()
            .map(|e| e.payload_value().unwrap()["n"].as_i64().unwrap())
            .collect();
        let expected: Vec<i64> = match case {
            AheadFails::AnotherProcessWroteFirst => vec![1, 2],
            AheadFails::RepeatsAKey | AheadFails::ReusesAKey => vec![1],
        };
        assert_eq!(written, expected, "{case:?}: nothing behind landed");
        assert_chain_intact(&this, community).await;
        shut(this, other).await;
    }
}

async fn shut(this: EventStore, other: EventStore) {
    this.shutdown().await;
    other.shutdown().await;
}
