//! The Merkle tree kept on the append path: under real concurrency, on both
//! write paths, caught up for a log written without it, and its proofs
//! checked against a tree computed here by the definition, apart from the
//! store's walks.

use sha2::{Digest, Sha256};
use store::merkle::{leaf_hash, verify_consistency, verify_inclusion};
use store::{AppendRequest, CommunityId, EventStore, ExpectedVersion, StoreConfig, StoreError};

use crate::helpers::*;

type Hash = [u8; 32];

/// RFC 6962's tree hash, by its definition.
fn root_by_definition(event_hashes: &[Hash]) -> Hash {
    fn node(prefix: u8, parts: &[&[u8]]) -> Hash {
        let mut hasher = Sha256::new();
        hasher.update([prefix]);
        for part in parts {
            hasher.update(part);
        }
        hasher.finalize().into()
    }
    match event_hashes.len() {
        0 => Sha256::digest(b"").into(),
        1 => node(0, &[&event_hashes[0]]),
        n => {
            let mut k = 1;
            while k * 2 < n {
                k *= 2;
            }
            let left = root_by_definition(&event_hashes[..k]);
            let right = root_by_definition(&event_hashes[k..]);
            node(1, &[&left, &right])
        }
    }
}

/// 32 tasks appending 1 to 3 events each time to streams of their own.
async fn racing_appends(store: &EventStore, community: CommunityId) {
    racing_appends_as(store, community, "report").await
}

/// [`racing_appends`], naming the streams with `prefix`.
async fn racing_appends_as(store: &EventStore, community: CommunityId, prefix: &'static str) {
    let tasks: Vec<_> = (0..32)
        .map(|task| {
            let store = store.clone();
            tokio::spawn(async move {
                for version in 0..25_i64 {
                    let events = (0..1 + (task + version) % 3).map(event).collect();
                    let request = AppendRequest::new(community).stream(
                        stream(&format!("{prefix}-{task}-{version}")),
                        stream_type(),
                        ExpectedVersion::NoStream,
                        events,
                    );
                    store.append(request).await.expect("append");
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("task");
    }
}

async fn stored_tree_size(db: &TestDb, community: CommunityId) -> (i64, i64, i64) {
    let row = db
        .client()
        .await
        .query_one(
            "SELECT last_position, tree_size, \
             (SELECT count(*) FROM tree_nodes WHERE community_id = $1) \
             FROM community_heads WHERE community_id = $1",
            &[&community.as_uuid()],
        )
        .await
        .expect("head");
    (row.get(0), row.get(1), row.get(2))
}

/// Everything the tree answers, against the definition over the log.
async fn assert_tree_matches_the_log(store: &EventStore, community: CommunityId) {
    let hashes: Vec<Hash> = read_all(store, community)
        .await
        .iter()
        .map(|e| e.hash)
        .collect();
    let size = hashes.len() as i64;
    let root = root_by_definition(&hashes);
    assert_eq!(store.tree_root(community, size).await.unwrap(), root);
    let positions: Vec<i64> = (1..=size).collect();
    let proofs = store
        .inclusion_proofs(community, size, &positions)
        .await
        .unwrap();
    for (proof, hash) in proofs.iter().zip(&hashes) {
        assert_eq!(&proof.event_hash, hash);
        assert_eq!(proof.tree_root, root);
        assert!(proof.holds(), "position {}", proof.position);
        let leaf = leaf_hash(hash);
        let index = (proof.position - 1) as u64;
        assert!(verify_inclusion(
            &leaf,
            index,
            size as u64,
            &proof.path,
            &root
        ));
    }
    for old_size in [1, 2, 255, 256, 257, 511, 512, 700, size - 1, size] {
        let old_size = old_size.clamp(1, size);
        let proof = store
            .consistency_proof(community, old_size, size)
            .await
            .unwrap();
        let old_root = root_by_definition(&hashes[..old_size as usize]);
        assert_eq!((proof.old_root, proof.new_root), (old_root, root));
        assert!(
            verify_consistency(old_size as u64, size as u64, &old_root, &root, &proof.path),
            "{old_size} to {size}"
        );
    }
}

/// The log holds more than `events_min` events, its tree covers all of
/// them with every complete subtree of 256 leaves and more stored, and
/// answers as the definition does.
async fn assert_tree_kept(
    db: &TestDb,
    store: &EventStore,
    community: CommunityId,
    events_min: i64,
) {
    let (position, tree_size, nodes) = stored_tree_size(db, community).await;
    assert!(position > events_min, "{position} events");
    assert_eq!(tree_size, position, "the tree covers the log");
    let complete: i64 = (8..20).map(|level| position >> level).sum();
    assert_eq!(nodes, complete);
    assert_tree_matches_the_log(store, community).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_tree_is_kept_by_racing_appends_on_both_write_paths() {
    let db = TestDb::new().await;
    for store in [db.store().await, db.pipelined_store().await] {
        let community = community(&store).await;
        racing_appends(&store, community).await;
        assert_tree_kept(&db, &store, community, 1024).await;
        store.shutdown().await;
    }
}

/// Two processes (two stores, each with its own writer for the community)
/// racing on one log: each batch moves the tree with the head it moves,
/// so the tree still covers the log exactly.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_processes_racing_on_one_log_keep_one_tree() {
    let db = TestDb::new().await;
    let (first, second) = (db.pipelined_store().await, db.store().await);
    let community = community(&first).await;
    tokio::join!(
        racing_appends(&first, community),
        racing_appends_as(&second, community, "other")
    );
    assert_tree_kept(&db, &second, community, 2048).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_log_written_without_the_tree_is_caught_up_by_the_next_writer() {
    let db = TestDb::new().await;
    let without = EventStore::connect(
        db.config.clone(),
        StoreConfig {
            keep_tree: false,
            ..StoreConfig::default()
        },
    )
    .await
    .unwrap();
    let community = community(&without).await;
    for n in 0..600 {
        let request = append_one(community, &format!("r-{n}"), ExpectedVersion::NoStream, n);
        append(&without, request).await;
    }
    assert_eq!(stored_tree_size(&db, community).await, (600, 0, 0));
    // Its root and proofs are still answered, from the events' hashes.
    assert_tree_matches_the_log(&without, community).await;
    without.shutdown().await;

    let with = db.store().await;
    append(
        &with,
        append_one(community, "r-600", ExpectedVersion::NoStream, 600),
    )
    .await;
    assert_eq!(stored_tree_size(&db, community).await, (601, 601, 3));
    assert_tree_matches_the_log(&with, community).await;
}

#[tokio::test]
async fn proofs_outside_the_log_are_refused() {
    let db = TestDb::new().await;
    let store = db.store().await;
    let community = community(&store).await;
    for n in 0..5 {
        append(
            &store,
            append_one(community, &format!("r-{n}"), ExpectedVersion::NoStream, n),
        )
        .await;
    }
    fn invalid<T>(result: Result<T, StoreError>) -> bool {
        matches!(result, Err(StoreError::Invalid { .. }))
    }
    assert!(invalid(store.inclusion_proofs(community, 5, &[0]).await));
    assert!(invalid(store.inclusion_proofs(community, 5, &[6]).await));
    assert!(invalid(store.inclusion_proofs(community, 6, &[1]).await));
    assert!(invalid(store.inclusion_proofs(community, 0, &[1]).await));
    let too_many = vec![1; store::tree::PROOFS_PER_CALL_MAX + 1];
    assert!(invalid(
        store.inclusion_proofs(community, 5, &too_many).await
    ));
    assert!(invalid(store.consistency_proof(community, 4, 3).await));
    assert!(invalid(store.consistency_proof(community, 0, 3).await));
    assert!(invalid(store.consistency_proof(community, 2, 9).await));
    assert!(invalid(store.tree_root(community, 6).await));
    assert!(matches!(
        store.tree_root(CommunityId::random(), 1).await,
        Err(StoreError::UnknownCommunity(_))
    ));
}
