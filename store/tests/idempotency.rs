//! A repeat with the same idempotency key returns the first outcome and
//! stores nothing new, however it arrives.

use std::sync::Arc;

use store::{ExpectedVersion, IdempotencyKey, StoreError};
use tokio::sync::Barrier;

use crate::helpers::*;

fn key(text: &str) -> IdempotencyKey {
    IdempotencyKey::parse(text).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_sequential_repeat_returns_the_first_outcome() {
    let db = TestDb::new().await;
    let store = db.store().await;
    let community = community(&store).await;
    let request = append_one(community, "redemption-1", ExpectedVersion::NoStream, 1)
        .idempotent(key("counter-3:0001"));
    let first = append(&store, request.clone()).await;
    assert!(!first.replayed);
    let second = append(&store, request).await;
    assert!(second.replayed);
    assert_eq!(
        (second.first_position, second.last_position, &second.streams),
        (first.first_position, first.last_position, &first.streams)
    );
    assert_eq!(second.recorded_at, first.recorded_at);
    assert_eq!(db.event_count().await, 1);
    let stored = read_all(&store, community).await;
    assert_eq!(
        stored[0]
            .metadata
            .get("idempotency_key")
            .map(String::as_str),
        Some("counter-3:0001")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_repeats_store_one_copy() {
    let db = TestDb::new().await;
    // Two stores: the race also crosses writers, as between two servers,
    // and their batches are pipelined.
    let stores = [db.pipelined_store().await, db.pipelined_store().await];
    let community = community(&stores[0]).await;
    let barrier = Arc::new(Barrier::new(24));
    let tasks: Vec<_> = (0..24)
        .map(|task| {
            let store = stores[task % 2].clone();
            let barrier = barrier.clone();
            tokio::spawn(async move {
                let request = append_one(community, "wallet-3", ExpectedVersion::Any, 42)
                    .idempotent(key("qr-page-retry-77"));
                barrier.wait().await;
                store.append(request).await.unwrap()
            })
        })
        .collect();
    let mut outcomes = Vec::new();
    for task in tasks {
        outcomes.push(task.await.unwrap());
    }
    assert_eq!(
        outcomes.iter().filter(|o| !o.replayed).count(),
        1,
        "exactly one append wrote"
    );
    assert!(outcomes
        .iter()
        .all(|o| o.first_position == 1 && o.last_position == 1));
    assert_eq!(db.event_count().await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_same_key_with_another_request_is_a_conflict() {
    let db = TestDb::new().await;
    let store = db.store().await;
    let community = community(&store).await;
    append(
        &store,
        append_one(community, "wallet-1", ExpectedVersion::Any, 1).idempotent(key("k-1")),
    )
    .await;
    let other_payload =
        append_one(community, "wallet-1", ExpectedVersion::Any, 2).idempotent(key("k-1"));
    let other_stream =
        append_one(community, "wallet-2", ExpectedVersion::Any, 1).idempotent(key("k-1"));
    for request in [other_payload, other_stream] {
        let error = store.append(request).await.unwrap_err();
        assert!(
            matches!(&error, StoreError::IdempotencyKeyReused { key } if key == "k-1"),
            "{error}"
        );
        assert_eq!(error.code(), "CONFLICT");
    }
    assert_eq!(db.event_count().await, 1);
    // A key belongs to its community: another community may use the same text.
    let elsewhere = crate::helpers::community(&store).await;
    let outcome = append(
        &store,
        append_one(elsewhere, "wallet-1", ExpectedVersion::Any, 2).idempotent(key("k-1")),
    )
    .await;
    assert!(!outcome.replayed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_repeat_after_the_stream_moved_on_still_gets_the_first_outcome() {
    // A counter retries after a timeout while other appends have landed: the
    // retry must not fail on its stale expected version, nor append again.
    let db = TestDb::new().await;
    let store = db.store().await;
    let community = community(&store).await;
    let request =
        append_one(community, "wallet-9", ExpectedVersion::Exact(0), 1).idempotent(key("redeem-9"));
    let first = append(&store, request.clone()).await;
    append(
        &store,
        append_one(community, "wallet-9", ExpectedVersion::Exact(1), 2),
    )
    .await;
    let retry = append(&store, request).await;
    assert!(retry.replayed);
    assert_eq!(retry.first_position, first.first_position);
    assert_eq!(db.event_count().await, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_conflicting_first_attempt_leaves_the_key_free() {
    let db = TestDb::new().await;
    let store = db.store().await;
    let community = community(&store).await;
    append(
        &store,
        append_one(community, "gift-2", ExpectedVersion::NoStream, 1),
    )
    .await;
    let stale =
        append_one(community, "gift-2", ExpectedVersion::NoStream, 2).idempotent(key("stale"));
    assert_eq!(store.append(stale).await.unwrap_err().code(), "CONFLICT");
    let fresh =
        append_one(community, "gift-2", ExpectedVersion::Exact(1), 2).idempotent(key("stale"));
    let outcome = append(&store, fresh).await;
    assert!(!outcome.replayed);
    assert_eq!(outcome.last_position, 2);
}
