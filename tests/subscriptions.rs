//! Catch-up then live subscriptions: every event exactly once, in order.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use store::{CommunityId, EventStore, ExpectedVersion, RecordedEvent};
use tokio::sync::Notify;

use crate::helpers::*;

const WAIT: Duration = Duration::from_secs(30);

/// Takes events until `count` have arrived, then checks nothing more comes.
async fn collect(
    store: EventStore,
    community: CommunityId,
    from: i64,
    count: usize,
) -> Vec<RecordedEvent> {
    let mut subscription = store.subscribe(community, from);
    let mut events = Vec::with_capacity(count);
    while events.len() < count {
        let event = tokio::time::timeout(WAIT, subscription.next())
            .await
            .expect("the subscriber receives the next event in time")
            .expect("subscription reads");
        events.push(event);
    }
    let extra = tokio::time::timeout(Duration::from_millis(300), subscription.next()).await;
    assert!(extra.is_err(), "no event beyond the last one: {extra:?}");
    events
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn subscribers_receive_every_event_once_in_order_across_two_communities() {
    let db = TestDb::new().await;
    let store = db.store().await;
    let communities = [community(&store).await, community(&store).await];
    const TASKS: usize = 300;
    const EVENTS_PER_TASK: usize = 2;
    let per_community = TASKS / 2 * EVENTS_PER_TASK;
    let early: Vec<_> = communities
        .iter()
        .map(|c| tokio::spawn(collect(store.clone(), *c, 0, per_community)))
        .collect();
    let finished = Arc::new(AtomicUsize::new(0));
    let half_way = Arc::new(Notify::new());
    let writers: Vec<_> = (0..TASKS)
        .map(|task| {
            let store = store.clone();
            let community = communities[task % 2];
            let finished = finished.clone();
            let half_way = half_way.clone();
            tokio::spawn(async move {
                let name = format!("report-{task}");
                let request = store::AppendRequest::new(community).stream(
                    stream(&name),
                    stream_type(),
                    ExpectedVersion::NoStream,
                    vec![event(task as i64), event(task as i64 + 1_000)],
                );
                store.append(request).await.unwrap();
                if finished.fetch_add(1, Ordering::AcqRel) + 1 == TASKS / 2 {
                    half_way.notify_one();
                }
            })
        })
        .collect();
    half_way.notified().await;
    let late: Vec<_> = communities
        .iter()
        .map(|c| tokio::spawn(collect(store.clone(), *c, 0, per_community)))
        .collect();
    for writer in writers {
        writer.await.unwrap();
    }
    for (subscriber, community) in early
        .into_iter()
        .chain(late)
        .zip(communities.iter().cycle())
    {
        let events = subscriber.await.unwrap();
        assert_gap_free(&events);
        assert!(events.iter().all(|e| e.community_id == *community));
    }
    for community in communities {
        let stored = read_all(&store, community).await;
        assert_eq!(stored.len(), per_community);
        assert_gap_free(&stored);
        assert_chain_intact(&store, community).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_restarted_subscriber_misses_nothing() {
    let db = TestDb::new().await;
    let store = db.store().await;
    let community = community(&store).await;
    const TOTAL: i64 = 200;
    let writer = {
        let store = store.clone();
        tokio::spawn(async move {
            for i in 0..TOTAL {
                let name = format!("site-{}", i % 7);
                store
                    .append(append_one(community, &name, ExpectedVersion::Any, i))
                    .await
                    .unwrap();
            }
        })
    };
    let mut received = Vec::new();
    let mut subscription = store.subscribe(community, 0);
    while received.len() < 60 {
        received.push(
            tokio::time::timeout(WAIT, subscription.next())
                .await
                .unwrap()
                .unwrap(),
        );
    }
    let resume_at = subscription.next_position();
    drop(subscription);
    // Let the writer run on while nobody listens.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let mut subscription = store.subscribe(community, resume_at);
    while (received.len() as i64) < TOTAL {
        received.push(
            tokio::time::timeout(WAIT, subscription.next())
                .await
                .unwrap()
                .unwrap(),
        );
    }
    writer.await.unwrap();
    assert_gap_free(&received);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_subscriber_in_another_process_is_woken_by_notify() {
    // The writing store and the subscribing store share nothing but the
    // database, so only LISTEN/NOTIFY can wake the subscriber promptly.
    let db = TestDb::new().await;
    let writer = db.store().await;
    let reader = db.store().await;
    let community = community(&writer).await;
    let mut subscription = reader.subscribe(community, 0);
    let waiting = tokio::spawn(async move {
        let started = std::time::Instant::now();
        let event = subscription.next().await.unwrap();
        (event, started.elapsed())
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    append(
        &writer,
        append_one(community, "report-9", ExpectedVersion::NoStream, 9),
    )
    .await;
    let (event, waited) = tokio::time::timeout(WAIT, waiting).await.unwrap().unwrap();
    assert_eq!(event.position, 1);
    // The idle re-check runs every 10 s; a wake-up well before it is NOTIFY's.
    assert!(waited < Duration::from_secs(5), "woken after {waited:?}");
}
