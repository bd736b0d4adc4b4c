//! Optimistic concurrency, gap-free positions and in-order visibility under
//! real concurrency.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use store::{ExpectedVersion, StoreError};
use tokio::sync::Barrier;

use crate::helpers::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_appends_to_one_stream_store_each_version_once() {
    let db = TestDb::new().await;
    racing_appends(db.store().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_appends_through_pipelined_batches_store_each_version_once() {
    let db = TestDb::new().await;
    racing_appends(db.pipelined_store().await).await;
}

async fn racing_appends(store: store::EventStore) {
    let community = community(&store).await;
    let barrier = Arc::new(Barrier::new(64));
    let tasks: Vec<_> = (0..64)
        .map(|task| {
            let store = store.clone();
            let barrier = barrier.clone();
            tokio::spawn(async move {
                barrier.wait().await;
                let mut conflicts = 0;
                let mut expected = 0;
                loop {
                    let request = append_one(
                        community,
                        "report-1",
                        ExpectedVersion::Exact(expected),
                        task,
                    );
                    match store.append(request).await {
                        Ok(outcome) => return (outcome, conflicts),
                        Err(StoreError::Conflict {
                            stream_id,
                            expected: e,
                            actual,
                        }) => {
                            assert_eq!(stream_id, "report-1");
                            assert_eq!(e, ExpectedVersion::Exact(expected));
                            assert!(
                                actual > expected,
                                "a loser is behind: {actual} > {expected}"
                            );
                            conflicts += 1;
                            expected = actual;
                        }
                        Err(other) => panic!("unexpected error {other}"),
                    }
                }
            })
        })
        .collect();
    let mut versions = Vec::new();
    let mut conflicts = 0;
    for task in tasks {
        let (outcome, lost) = task.await.unwrap();
        versions.push(outcome.streams[0].version);
        conflicts += lost;
    }
    versions.sort_unstable();
    assert_eq!(
        versions,
        (1..=64).collect::<Vec<i64>>(),
        "each version stored exactly once"
    );
    assert!(
        conflicts > 0,
        "64 racing writers must collide at least once"
    );
    assert_eq!(
        store.stats().conflicts_total.load(Ordering::Relaxed),
        conflicts,
        "every loser was counted as a conflict"
    );
    let events = read_all(&store, community).await;
    assert_eq!(events.len(), 64);
    assert_gap_free(&events);
    let stream_versions: Vec<i64> = events.iter().map(|e| e.stream_version).collect();
    assert_eq!(stream_versions, (1..=64).collect::<Vec<i64>>());
    assert_chain_intact(&store, community).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn first_append_to_a_new_stream_wins_once() {
    let db = TestDb::new().await;
    let store = db.store().await;
    let community = community(&store).await;
    let barrier = Arc::new(Barrier::new(32));
    let tasks: Vec<_> = (0..32)
        .map(|task| {
            let store = store.clone();
            let barrier = barrier.clone();
            tokio::spawn(async move {
                barrier.wait().await;
                store
                    .append(append_one(
                        community,
                        "wallet-7",
                        ExpectedVersion::NoStream,
                        task,
                    ))
                    .await
            })
        })
        .collect();
    let mut winners = 0;
    for task in tasks {
        match task.await.unwrap() {
            Ok(_) => winners += 1,
            Err(error) => assert_eq!(error.code(), "CONFLICT", "{error}"),
        }
    }
    assert_eq!(winners, 1);
    assert_eq!(db.event_count().await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn multi_stream_append_is_all_or_nothing() {
    let db = TestDb::new().await;
    let store = db.store().await;
    let community = community(&store).await;
    append(
        &store,
        append_one(community, "gift-1", ExpectedVersion::NoStream, 1),
    )
    .await;
    // The wallet part is fine, the gift part is stale: nothing may be written.
    let stale = store::AppendRequest::new(community)
        .stream(
            stream("wallet-1"),
            stream_type(),
            ExpectedVersion::NoStream,
            vec![event(2)],
        )
        .stream(
            stream("gift-1"),
            stream_type(),
            ExpectedVersion::Exact(0),
            vec![event(3)],
        );
    let error = store.append(stale).await.unwrap_err();
    assert!(
        matches!(error, StoreError::Conflict { ref stream_id, actual: 1, .. } if stream_id == "gift-1"),
        "{error}"
    );
    assert_eq!(db.event_count().await, 1);
    let good = store::AppendRequest::new(community)
        .stream(
            stream("wallet-1"),
            stream_type(),
            ExpectedVersion::NoStream,
            vec![event(2), event(3)],
        )
        .stream(
            stream("gift-1"),
            stream_type(),
            ExpectedVersion::Exact(1),
            vec![event(4)],
        );
    let outcome = append(&store, good).await;
    assert_eq!((outcome.first_position, outcome.last_position), (2, 4));
    let versions: Vec<(String, i64)> = outcome
        .streams
        .iter()
        .map(|s| (s.stream_id.to_string(), s.version))
        .collect();
    assert_eq!(
        versions,
        vec![("wallet-1".to_string(), 2), ("gift-1".to_string(), 2)]
    );
    assert_chain_intact(&store, community).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn readers_never_see_a_later_position_without_the_earlier_ones() {
    let db = TestDb::new().await;
    let store = db.store().await;
    let community = community(&store).await;
    let done = Arc::new(AtomicBool::new(false));
    let reads = Arc::new(AtomicUsize::new(0));
    let reader = {
        let store = store.clone();
        let done = done.clone();
        let reads = reads.clone();
        tokio::spawn(async move {
            let mut partial_reads = 0;
            loop {
                let finished = done.load(Ordering::Acquire);
                let events = store.read_log(community, 1, 10_000).await.unwrap();
                assert_gap_free(&events);
                reads.fetch_add(1, Ordering::Relaxed);
                if !events.is_empty() && events.len() < 32 * 20 {
                    partial_reads += 1;
                }
                if finished {
                    return (events.len(), partial_reads);
                }
            }
        })
    };
    let writers: Vec<_> = (0..32)
        .map(|writer| {
            let store = store.clone();
            tokio::spawn(async move {
                for i in 0..20 {
                    let name = format!("site-{writer}");
                    store
                        .append(append_one(community, &name, ExpectedVersion::Exact(i), i))
                        .await
                        .unwrap();
                }
            })
        })
        .collect();
    for writer in writers {
        writer.await.unwrap();
    }
    done.store(true, Ordering::Release);
    let (seen, partial_reads) = reader.await.unwrap();
    assert_eq!(seen, 32 * 20);
    assert!(
        partial_reads > 0,
        "the reader ran while appends were under way"
    );
    assert!(reads.load(Ordering::Relaxed) > 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_processes_share_one_log_without_gaps() {
    // Two stores are two pools and two writers, as two server processes are;
    // the head row orders them. Once with one batch in flight per writer,
    // once pipelined, where each one's batches in flight are regularly
    // overtaken by the other's and must be planned again.
    let db = TestDb::new().await;
    let default = [db.store().await, db.store().await];
    let pipelined = [db.pipelined_store().await, db.pipelined_store().await];
    for stores in [default, pipelined] {
        let community = community(&stores[0]).await;
        let tasks: Vec<_> = (0..200)
            .map(|task| {
                let store = stores[task % 2].clone();
                tokio::spawn(async move {
                    let name = format!("patrol-{task}");
                    let request =
                        append_one(community, &name, ExpectedVersion::NoStream, task as i64);
                    store.append(request).await.unwrap();
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
        let events = read_all(&stores[0], community).await;
        assert_eq!(events.len(), 200);
        assert_gap_free(&events);
        assert_chain_intact(&stores[1], community).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn shutdown_lets_queued_appends_finish_and_refuses_new_ones() {
    let db = TestDb::new().await;
    let store = db.store().await;
    let community = community(&store).await;
    let barrier = Arc::new(Barrier::new(101));
    let appends: Vec<_> = (0..100)
        .map(|i| {
            let store = store.clone();
            let barrier = barrier.clone();
            tokio::spawn(async move {
                barrier.wait().await;
                let name = format!("report-{i}");
                store
                    .append(append_one(community, &name, ExpectedVersion::NoStream, i))
                    .await
            })
        })
        .collect();
    barrier.wait().await;
    store.shutdown().await;
    let mut landed = 0;
    for append in appends {
        match append.await.unwrap() {
            Ok(outcome) => {
                landed += 1;
                assert!(outcome.last_position >= 1);
            }
            Err(error) => assert!(matches!(error, StoreError::ShuttingDown), "{error}"),
        }
    }
    let after = store
        .append(append_one(community, "late", ExpectedVersion::Any, 0))
        .await;
    assert!(matches!(after, Err(StoreError::ShuttingDown)));
    // Every append that was answered Ok is stored, and nothing else is.
    let reader = db.store().await;
    let events = read_all(&reader, community).await;
    assert_eq!(events.len(), landed);
    assert_gap_free(&events);
    assert_chain_intact(&reader, community).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_position_at_a_time_cuts_the_log_where_it_was() {
    let db = TestDb::new().await;
    let store = db.store().await;
    let community = community(&store).await;
    assert_eq!(
        store
            .position_at(community, chrono::Utc::now())
            .await
            .unwrap(),
        0
    );
    for i in 0..9 {
        let name = format!("patrol-{}", i % 2);
        append(
            &store,
            append_one(community, &name, ExpectedVersion::Any, i),
        )
        .await;
        if i % 3 == 2 {
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
    }
    let events = read_all(&store, community).await;
    let times: Vec<_> = events.iter().map(|e| e.recorded_at).collect();
    assert!(
        times.windows(2).all(|w| w[0] <= w[1]),
        "recorded_at never decreases"
    );
    for event in &events {
        // The last position recorded no later than this event's time.
        let expected = events
            .iter()
            .filter(|e| e.recorded_at <= event.recorded_at)
            .count() as i64;
        let found = store
            .position_at(community, event.recorded_at)
            .await
            .unwrap();
        assert_eq!(found, expected, "at {}", event.recorded_at);
    }
    let before = times[0] - chrono::TimeDelta::microseconds(1);
    assert_eq!(store.position_at(community, before).await.unwrap(), 0);
    let after = times[8] + chrono::TimeDelta::days(1);
    assert_eq!(store.position_at(community, after).await.unwrap(), 9);
    let unknown = store.position_at(store::CommunityId::random(), after).await;
    assert_eq!(unknown.unwrap_err().code(), "NOT_FOUND");
}

/// Appends decided from a cached set-up carry it as a condition. Writers in
/// two processes (two stores, each with its own idea of the versions) race
/// a task that keeps changing the set-up; every append that lands was
/// decided from the set-up as it stood at its position, and every refusal
/// names the set-up stream and the version it had moved to.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_append_lands_only_while_the_streams_it_rests_on_have_not_moved() {
    let db = TestDb::new().await;
    let stores = [db.store().await, db.pipelined_store().await];
    let community = community(&stores[0]).await;
    append(
        &stores[0],
        append_one(community, "setup", ExpectedVersion::NoStream, 0),
    )
    .await;
    let done = Arc::new(AtomicBool::new(false));
    let changer = {
        let store = stores[1].clone();
        let done = done.clone();
        tokio::spawn(async move {
            for n in 1..=40 {
                let request = append_one(community, "setup", ExpectedVersion::Exact(n), n);
                append(&store, request).await;
                tokio::time::sleep(std::time::Duration::from_millis(2)).await;
            }
            done.store(true, Ordering::Release);
        })
    };
    let writers: Vec<_> = (0..32)
        .map(|task| {
            let store = stores[task % 2].clone();
            let done = done.clone();
            tokio::spawn(async move {
                let (mut landed, mut refused) = (Vec::new(), 0);
                let mut believed = 1;
                let mut n = 0;
                while !done.load(Ordering::Acquire) {
                    n += 1;
                    let own = format!("report-{task}-{n}");
                    let request =
                        append_one(community, &own, ExpectedVersion::NoStream, task as i64)
                            .provided(stream("setup"), ExpectedVersion::Exact(believed));
                    match store.append(request).await {
                        Ok(outcome) => {
                            let written: Vec<&str> = outcome
                                .streams
                                .iter()
                                .map(|s| s.stream_id.as_str())
                                .collect();
                            assert_eq!(written, [own.as_str()], "a condition writes nothing");
                            landed.push((outcome.first_position, believed));
                        }
                        Err(StoreError::Conflict {
                            stream_id, actual, ..
                        }) => {
                            assert_eq!(stream_id, "setup");
                            assert!(actual > believed, "{actual} > {believed}");
                            believed = actual;
                            refused += 1;
                        }
                        Err(other) => panic!("unexpected error {other}"),
                    }
                }
                (landed, refused)
            })
        })
        .collect();
    changer.await.unwrap();
    let (mut landed, mut refused) = (Vec::new(), 0);
    for writer in writers {
        let (l, r) = writer.await.unwrap();
        landed.extend(l);
        refused += r;
    }
    assert!(refused > 0, "the set-up moved under some writers");
    assert!(!landed.is_empty());
    let events = read_all(&stores[0], community).await;
    assert_gap_free(&events);
    for (position, believed) in landed {
        let setup_version = events
            .iter()
            .filter(|e| e.position < position && e.stream_id.as_str() == "setup")
            .count() as i64;
        assert_eq!(
            setup_version, believed,
            "the append at {position} rested on set-up version {believed}"
        );
    }
    assert_chain_intact(&stores[0], community).await;
}

/// A writer's beliefs about stream versions go stale when another process
/// writes: an append expecting the version the database holds lands, even
/// when nothing else this writer sends touches the database first. For
/// streams written and streams an append rests on alike.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_append_on_a_version_another_process_wrote_is_not_refused_on_stale_beliefs() {
    let db = TestDb::new().await;
    let (here, there) = (db.pipelined_store().await, db.store().await);
    let community = community(&here).await;
    append(
        &here,
        append_one(community, "report-1", ExpectedVersion::NoStream, 1),
    )
    .await;
    append(
        &here,
        append_one(community, "setup", ExpectedVersion::NoStream, 2),
    )
    .await;
    append(
        &there,
        append_one(community, "report-1", ExpectedVersion::Exact(1), 3),
    )
    .await;
    append(
        &there,
        append_one(community, "setup", ExpectedVersion::Exact(1), 4),
    )
    .await;
    let written = append(
        &here,
        append_one(community, "report-1", ExpectedVersion::Exact(2), 5),
    )
    .await;
    assert_eq!(written.last_position, 5);
    let resting = append_one(community, "report-2", ExpectedVersion::NoStream, 6)
        .provided(stream("setup"), ExpectedVersion::Exact(2));
    assert_eq!(append(&here, resting).await.last_position, 6);
    // A true conflict is still one, with the version the database holds.
    let stale = append_one(community, "report-1", ExpectedVersion::Exact(2), 7);
    let error = here.append(stale).await.unwrap_err();
    assert!(
        matches!(error, StoreError::Conflict { actual: 3, .. }),
        "{error}"
    );
    assert_chain_intact(&here, community).await;
}

/// Followers of the whole log (every projection) woken by the same commit
/// share one read of the heads, and what they share always holds the
/// commit that woke them: this process's, or another's once its NOTIFY
/// came.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn followers_woken_together_share_one_read_of_the_heads_and_see_what_woke_them() {
    let db = TestDb::new().await;
    let (here, there) = (db.pipelined_store().await, db.store().await);
    let community = community(&here).await;
    let reads = || {
        here.stats()
            .heads_reads_total
            .load(std::sync::atomic::Ordering::Relaxed)
    };
    let log = here.watch_log();
    let mut head = here.head_watch(community);
    for round in 1..=12 {
        let writer = if round % 3 == 0 { &there } else { &here };
        let expected = ExpectedVersion::Exact(round - 1);
        append(writer, append_one(community, "report-1", expected, round)).await;
        // Woken: this process's commit is announced before its append
        // returns; another process's, when its NOTIFY arrives.
        announced(&mut head, round).await;
        let seen = *log.borrow();
        let before = reads();
        let shared =
            futures::future::join_all((0..16).map(|_| here.community_heads_since(seen))).await;
        for heads in shared {
            assert_eq!(*heads.unwrap(), vec![(community, round)], "round {round}");
        }
        assert_eq!(reads() - before, 1, "sixteen followers, one read");
        // Asked again with nothing new announced: the same read.
        here.community_heads_since(seen).await.unwrap();
        assert_eq!(reads() - before, 1);
    }
}

/// Commits are announced to other processes after they land, gathered per
/// community (`store/src/notifier.rs`): under many concurrent writers in
/// several communities, another process's head watch of each community
/// still reaches its last position, and never names one that is not
/// committed.
#[tokio::test]
async fn every_commit_is_announced_to_other_processes_once_it_landed() {
    let db = TestDb::new().await;
    let (here, there) = (db.store().await, db.store().await);
    let mut communities = Vec::new();
    for _ in 0..4 {
        communities.push(community(&here).await);
    }
    let mut watches: Vec<_> = communities.iter().map(|c| there.head_watch(*c)).collect();
    let writers = (0..32).map(|writer| {
        let here = here.clone();
        let community = communities[writer % communities.len()];
        tokio::spawn(async move {
            for n in 0..10 {
                let stream = format!("writer-{writer}");
                let expected = match n {
                    0 => ExpectedVersion::NoStream,
                    n => ExpectedVersion::Exact(n),
                };
                append(&here, append_one(community, &stream, expected, n)).await;
            }
        })
    });
    futures::future::join_all(writers).await;
    for (community, watch) in communities.iter().zip(&mut watches) {
        let head = here.head(*community).await.unwrap().position;
        assert_eq!(head, 80, "eight writers of ten appends each");
        let seen = announced(watch, head).await;
        assert_eq!(seen, head, "nothing beyond what was committed");
    }
}

/// A community's writer runs on the runtime the store was connected on,
/// not on the runtime of the caller that first appended to the community
/// (in the server, one HTTP worker's single thread, which would carry that
/// community's writing beside its own requests). Appended to first from a
/// runtime of its own that then ends, the community is still written to.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_communitys_writer_outlives_the_runtime_of_its_first_caller() {
    let db = TestDb::new().await;
    for store in [db.store().await, db.pipelined_store().await] {
        let community = community(&store).await;
        let first = {
            let store = store.clone();
            std::thread::spawn(move || {
                let caller = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                let request = append_one(community, "site-1", ExpectedVersion::NoStream, 1);
                caller.block_on(async { store.append(request).await })
            })
            .join()
            .unwrap()
        };
        assert_eq!(first.expect("the first append lands").last_position, 1);
        // The first caller's runtime has ended; the writer it started has not.
        for n in 2..=4 {
            let request = append_one(community, "site-1", ExpectedVersion::Exact(n - 1), n);
            let outcome =
                tokio::time::timeout(std::time::Duration::from_secs(10), store.append(request))
                    .await
                    .expect("the writer answers");
            assert_eq!(outcome.expect("appended").last_position, n);
        }
        assert_eq!(read_all(&store, community).await.len(), 4);
    }
}
