//! The hash chain catches edits made behind the store's back.

use store::{ExpectedVersion, MismatchKind};

use crate::helpers::*;

async fn first_mismatch(
    store: &store::EventStore,
    community: store::CommunityId,
) -> store::Mismatch {
    let verification = store.verify_chain(community, 1, i64::MAX).await.unwrap();
    verification.first_mismatch.expect("the change is detected")
}

async fn ten_events(db: &TestDb) -> (store::EventStore, store::CommunityId) {
    let store = db.store().await;
    let community = community(&store).await;
    for i in 0..10 {
        let name = format!("report-{}", i % 3);
        append(
            &store,
            append_one(community, &name, ExpectedVersion::Any, i),
        )
        .await;
    }
    assert_chain_intact(&store, community).await;
    (store, community)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn updates_are_refused_and_an_update_behind_the_guard_is_named() {
    let db = TestDb::new().await;
    let (store, community) = ten_events(&db).await;
    let client = db.client().await;
    let refused = client
        .execute(
            "UPDATE events SET payload = '{\"n\": 99}' WHERE position = 7",
            &[],
        )
        .await;
    assert!(refused.is_err(), "the append-only guard refuses updates");
    // An owner of the database can drop the guard; the chain still tells.
    client
        .batch_execute(
            "ALTER TABLE events DISABLE TRIGGER events_append_only; \
             UPDATE events SET payload = '{\"n\": 99}' WHERE position = 7",
        )
        .await
        .unwrap();
    let verification = store.verify_chain(community, 1, i64::MAX).await.unwrap();
    let mismatch = verification.first_mismatch.expect("the edit is detected");
    assert_eq!(
        (mismatch.position, mismatch.kind),
        (7, MismatchKind::HashMismatch)
    );
    // Verifying a range before the edit still passes; one that covers it does not.
    assert!(store
        .verify_chain(community, 1, 6)
        .await
        .unwrap()
        .is_intact());
    let tail = store.verify_chain(community, 5, 10).await.unwrap();
    assert_eq!(tail.first_mismatch.map(|m| m.position), Some(7));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_deleted_event_and_a_recomputed_hash_are_named() {
    let db = TestDb::new().await;
    let (store, community) = ten_events(&db).await;
    let client = db.client().await;
    client
        .batch_execute(
            "ALTER TABLE events DISABLE TRIGGER events_append_only; \
             DELETE FROM events WHERE position = 4",
        )
        .await
        .unwrap();
    let mismatch = first_mismatch(&store, community).await;
    assert_eq!(
        (mismatch.position, mismatch.kind),
        (4, MismatchKind::MissingPosition)
    );

    // Rewriting an event with a freshly computed hash breaks the next link.
    let db = TestDb::new().await;
    let (store, community) = ten_events(&db).await;
    let mut event = store.read_log(community, 3, 1).await.unwrap().remove(0);
    event.payload = serde_json::value::to_raw_value(&serde_json::json!({"n": 1000})).unwrap();
    let forged = store::verify::recompute_hash(&event).unwrap();
    db.client()
        .await
        .execute("ALTER TABLE events DISABLE TRIGGER events_append_only", &[])
        .await
        .unwrap();
    db.client()
        .await
        .execute(
            "UPDATE events SET payload = '{\"n\": 1000}', hash = $1 WHERE community_id = $2 AND position = 3",
            &[&&forged[..], &community.as_uuid()],
        )
        .await
        .unwrap();
    let mismatch = first_mismatch(&store, community).await;
    assert_eq!(
        (mismatch.position, mismatch.kind),
        (4, MismatchKind::BrokenLink)
    );
}
