//! A repeat with the same idempotency key returns the first outcome and
//! stores nothing new, however it arrives.

use std::sync::atomic::Ordering;
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

/// What the other process wrote first, and what this one then asks.
struct Guess {
    name: &'static str,
    /// Written by the other process, in order.
    before: Vec<store::AppendRequest>,
    /// Written by this process after its first batch, in order.
    here_before: Vec<store::AppendRequest>,
    /// Asked of this process, whose writer knows nothing of `before`.
    asked: store::AppendRequest,
    expect: Answer,
}

/// What a read of the database would have answered.
#[derive(Clone, Copy, Debug)]
enum Answer {
    /// The first outcome, replayed.
    Replay,
    KeyReused,
    /// A conflict with the version the other process wrote.
    Conflict,
}

/// A batch planned without the head lock takes the keys and new streams its
/// writer does not know to be new, without reading them (ADR 0021). Each
/// guess is wrong here (another process wrote them): the answer is the one
/// a read would have given, and nothing is written twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn what_a_batch_takes_to_be_new_is_read_when_another_process_wrote_it() {
    let db = TestDb::new().await;
    let there = db.store().await;
    let community = community(&there).await;
    let two_streams = |n| {
        append_one(community, "redemption-9", ExpectedVersion::NoStream, n).stream(
            stream("gift-9"),
            stream_type(),
            ExpectedVersion::NoStream,
            vec![event(n + 1)],
        )
    };
    let cases = vec![
        Guess {
            name: "a repeat of a key",
            before: vec![
                append_one(community, "report-1", ExpectedVersion::NoStream, 1)
                    .idempotent(key("page-submit-1")),
            ],
            asked: append_one(community, "report-1", ExpectedVersion::NoStream, 1)
                .idempotent(key("page-submit-1")),
            here_before: vec![],
            expect: Answer::Replay,
        },
        Guess {
            name: "a key reused for another request",
            before: vec![
                append_one(community, "report-2", ExpectedVersion::NoStream, 2)
                    .idempotent(key("page-submit-2")),
            ],
            asked: append_one(community, "report-3", ExpectedVersion::NoStream, 3)
                .idempotent(key("page-submit-2")),
            here_before: vec![],
            expect: Answer::KeyReused,
        },
        Guess {
            name: "a new stream that is not new",
            before: vec![append_one(
                community,
                "report-4",
                ExpectedVersion::NoStream,
                4,
            )],
            asked: append_one(community, "report-4", ExpectedVersion::NoStream, 5),
            here_before: vec![],
            expect: Answer::Conflict,
        },
        Guess {
            // The repeat's other stream moved on since, and this writer
            // knows it: the refusal it would plan rests on a guessed key.
            name: "a repeat refused on a stream this writer knows",
            before: vec![
                two_streams(6).idempotent(key("counter-place-6")),
                append_one(community, "gift-9", ExpectedVersion::Exact(1), 8),
            ],
            here_before: vec![append_one(
                community,
                "gift-9",
                ExpectedVersion::Exact(2),
                9,
            )],
            asked: two_streams(6).idempotent(key("counter-place-6")),
            expect: Answer::Replay,
        },
    ];
    for case in cases {
        let here = db.store().await;
        let mut firsts = Vec::new();
        for request in &case.before {
            firsts.push(append(&there, request.clone()).await);
        }
        // This writer's first batch reads the head under its lock; the
        // batches after it are planned on what it knows.
        append(
            &here,
            append_one(community, "warm-up", ExpectedVersion::Any, 0),
        )
        .await;
        for request in &case.here_before {
            append(&here, request.clone()).await;
        }
        let stored = db.event_count().await;
        // Each append above was a batch of its own, and each wrote.
        let written = here
            .stats()
            .write_transactions_total
            .load(Ordering::Relaxed);
        assert_eq!(
            written,
            1 + case.here_before.len() as u64,
            "{}: a transaction for each batch that wrote",
            case.name
        );
        let replans = here.stats().batch_replans_total.load(Ordering::Relaxed);
        let answer = here.append(case.asked.clone()).await;
        match (&answer, case.expect) {
            (Ok(outcome), Answer::Replay) => {
                assert!(outcome.replayed, "{}: {outcome:?}", case.name);
                assert_eq!(
                    outcome.first_position, firsts[0].first_position,
                    "{}: the first outcome",
                    case.name
                );
            }
            (Err(StoreError::IdempotencyKeyReused { .. }), Answer::KeyReused) => {}
            (Err(StoreError::Conflict { actual: 1, .. }), Answer::Conflict) => {}
            (answer, _) => panic!("{}: {answer:?}", case.name),
        }
        // The guess was made, and planned again from what was read.
        assert_eq!(
            here.stats().batch_replans_total.load(Ordering::Relaxed),
            replans + 1,
            "{}: planned again once",
            case.name
        );
        assert_eq!(db.event_count().await, stored, "{}: nothing new", case.name);
        assert_eq!(
            here.stats()
                .write_transactions_total
                .load(Ordering::Relaxed),
            written,
            "{}: no transaction committed",
            case.name
        );
        assert_chain_intact(&here, community).await;
    }
}
