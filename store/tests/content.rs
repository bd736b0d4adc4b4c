//! Content beside the log: stored under its hash, erasable, and an erasure
//! leaves the chain verifiable.

use serde_json::json;
use store::{Content, ContentHash, EventType, ExpectedVersion, NewEvent};

use crate::helpers::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn erased_content_leaves_a_tombstone_and_an_intact_chain() {
    let db = TestDb::new().await;
    let store = db.store().await;
    let community = community(&store).await;
    let text = "河边有垃圾漂浮，联系人 138 0000 0000".as_bytes();
    let hash = store
        .put_content(community, "text/plain; charset=utf-8", text)
        .await
        .unwrap();
    assert_eq!(hash, ContentHash::of(text));
    assert_eq!(
        store
            .put_content(community, "text/plain; charset=utf-8", text)
            .await
            .unwrap(),
        hash
    );
    let submitted = NewEvent::new(
        EventType::parse("ReportSubmitted").unwrap(),
        json!({"text_hash": hash.to_hex(), "category": "floating_garbage"}),
    );
    let request = store::AppendRequest::new(community).stream(
        stream("report-1"),
        stream_type(),
        ExpectedVersion::NoStream,
        vec![submitted],
    );
    append(&store, request).await;
    match store.get_content(community, hash).await.unwrap() {
        Content::Present { body, media_type } => {
            assert_eq!(body, text);
            assert_eq!(media_type, "text/plain; charset=utf-8");
        }
        erased => panic!("content is present before erasure: {erased:?}"),
    }

    let tombstone = store
        .erase_content(
            community,
            hash,
            "admin-7",
            "erasure request of the resident",
        )
        .await
        .unwrap();
    assert_eq!(tombstone.erased_by, "admin-7");
    let again = store
        .erase_content(community, hash, "admin-8", "second request")
        .await
        .unwrap();
    assert_eq!(again, tombstone, "the first tombstone is kept");
    assert_eq!(
        store.get_content(community, hash).await.unwrap(),
        Content::Erased(tombstone.clone())
    );
    // Putting the same bytes again must not undo the erasure.
    store
        .put_content(community, "text/plain; charset=utf-8", text)
        .await
        .unwrap();
    assert_eq!(
        store.get_content(community, hash).await.unwrap(),
        Content::Erased(tombstone)
    );
    let raw_body: Option<Vec<u8>> = db
        .client()
        .await
        .query_one("SELECT body FROM contents", &[])
        .await
        .unwrap()
        .get(0);
    assert!(raw_body.is_none(), "the bytes are gone from the table");
    assert_chain_intact(&store, community).await;
    let stored = read_all(&store, community).await;
    assert_eq!(
        stored[0].payload_value().unwrap()["text_hash"],
        hash.to_hex()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_content_is_refused() {
    let db = TestDb::new().await;
    let store = db.store().await;
    let community = community(&store).await;
    let huge = vec![b'x'; store::limits::CONTENT_BYTES_MAX + 1];
    assert_eq!(
        store
            .put_content(community, "text/plain", &huge)
            .await
            .unwrap_err()
            .code(),
        "VALIDATION"
    );
    assert_eq!(
        store
            .put_content(community, "", b"x")
            .await
            .unwrap_err()
            .code(),
        "VALIDATION"
    );
    assert_eq!(
        store
            .put_content(store::CommunityId::random(), "text/plain", b"x")
            .await
            .unwrap_err()
            .code(),
        "NOT_FOUND"
    );
    let missing = ContentHash::of(b"never stored");
    assert_eq!(
        store
            .get_content(community, missing)
            .await
            .unwrap_err()
            .code(),
        "NOT_FOUND"
    );
    let hash = store
        .put_content(community, "text/plain", b"x")
        .await
        .unwrap();
    assert_eq!(
        store
            .erase_content(community, hash, "admin-1", " ")
            .await
            .unwrap_err()
            .code(),
        "VALIDATION"
    );
    assert!(ContentHash::parse("not hex").is_err());
    assert_eq!(ContentHash::parse(&hash.to_hex()).unwrap(), hash);
}

/// Content an append carries lands with its events or not at all, within
/// the bounds of content put alone, and never brings back an erased hash.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn content_carried_by_an_append_lands_with_its_events_or_not_at_all() {
    let db = TestDb::new().await;
    let store = db.store().await;
    let community = community(&store).await;
    let media = "application/json";
    let carrying = |stream_id: &str, expected: ExpectedVersion, body: &[u8]| {
        append_one(community, stream_id, expected, 1).with_content(media, body.to_vec())
    };
    let present = |body: &'static [u8]| {
        let store = store.clone();
        async move {
            match store.get_content(community, ContentHash::of(body)).await {
                Ok(Content::Present { body: stored, .. }) => Some(stored == body),
                Ok(Content::Erased(_)) => Some(false),
                Err(store::StoreError::ContentNotFound(_)) => None,
                Err(error) => panic!("{error}"),
            }
        }
    };

    append(
        &store,
        carrying("report-1", ExpectedVersion::NoStream, b"{\"text\":\"one\"}"),
    )
    .await;
    assert_eq!(
        present(b"{\"text\":\"one\"}").await,
        Some(true),
        "stored with the event"
    );

    // Refused appends store nothing: a stream that moved, a bad event, a
    // piece too large or of a bad media type, too many pieces.
    let huge = vec![b'x'; store::limits::CONTENT_BYTES_MAX + 1];
    let too_many = (0..=store::limits::CONTENTS_PER_APPEND_MAX).fold(
        append_one(community, "report-4", ExpectedVersion::NoStream, 1),
        |request, n| request.with_content(media, format!("{{\"n\":{n}}}").into_bytes()),
    );
    let refused = [
        (
            "a stream that moved",
            carrying("report-1", ExpectedVersion::NoStream, b"{\"text\":\"two\"}"),
            "CONFLICT",
        ),
        (
            "a piece too large",
            append_one(community, "report-2", ExpectedVersion::NoStream, 1)
                .with_content(media, huge),
            "VALIDATION",
        ),
        (
            "an empty media type",
            append_one(community, "report-3", ExpectedVersion::NoStream, 1)
                .with_content("", b"{\"text\":\"three\"}".to_vec()),
            "VALIDATION",
        ),
        ("too many pieces", too_many, "VALIDATION"),
    ];
    let before = read_all(&store, community).await.len();
    for (what, request, code) in refused {
        let error = store.append(request).await.expect_err(what);
        assert_eq!(error.code(), code, "{what}: {error}");
    }
    assert_eq!(
        read_all(&store, community).await.len(),
        before,
        "no event landed"
    );
    assert_eq!(present(b"{\"text\":\"two\"}").await, None);
    assert_eq!(present(b"{\"text\":\"three\"}").await, None);
    assert_eq!(present(b"{\"n\":0}").await, None);

    // Carried again after an erasure, an erased hash stays erased.
    let hash = ContentHash::of(b"{\"text\":\"one\"}");
    store
        .erase_content(community, hash, "admin-1", "the resident asked")
        .await
        .unwrap();
    append(
        &store,
        carrying("report-5", ExpectedVersion::NoStream, b"{\"text\":\"one\"}"),
    )
    .await;
    assert_eq!(
        present(b"{\"text\":\"one\"}").await,
        Some(false),
        "still erased"
    );
    assert_chain_intact(&store, community).await;
}

/// The tables the writer fills beside the events (contents, idempotency
/// keys) hold no foreign key to the community, as the events do not: no
/// row of theirs is ever kept for a community that does not exist, and a
/// community forgotten before its first event takes its content with it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_writers_tables_keep_nothing_of_a_community_that_does_not_exist() {
    let db = TestDb::new().await;
    let store = db.store().await;
    let client = db.client().await;
    let rows_of = |community: store::CommunityId| {
        let client = &client;
        async move {
            let mut counts = Vec::new();
            for table in ["contents", "idempotency_keys", "events", "communities"] {
                let count: i64 = client
                    .query_one(
                        &format!("SELECT count(*) FROM {table} WHERE community_id = $1"),
                        &[&community.as_uuid()],
                    )
                    .await
                    .unwrap()
                    .get(0);
                counts.push((table, count));
            }
            counts
        }
    };
    let nothing = |counts: Vec<(&'static str, i64)>| counts.iter().all(|(_, n)| *n == 0);

    let unknown = store::CommunityId::random();
    let carrying = append_one(unknown, "report-1", ExpectedVersion::NoStream, 1)
        .with_content("text/plain", "河面漂浮垃圾".as_bytes().to_vec())
        .idempotent(store::IdempotencyKey::parse("retry-1".to_string()).unwrap());
    let refused = store.append(carrying).await.unwrap_err();
    assert_eq!(refused.code(), "NOT_FOUND");
    let put = store.put_content(unknown, "text/plain", b"x").await;
    assert_eq!(put.unwrap_err().code(), "NOT_FOUND");
    assert!(
        nothing(rows_of(unknown).await),
        "{:?}",
        rows_of(unknown).await
    );

    // A registration refused after its row was made: content put before
    // any event goes with the community.
    let empty = community(&store).await;
    store.put_content(empty, "text/plain", b"y").await.unwrap();
    store.forget_empty_community(empty).await.unwrap();
    assert!(nothing(rows_of(empty).await), "{:?}", rows_of(empty).await);

    // A community with events is kept whole.
    let kept = community(&store).await;
    let request = append_one(kept, "report-1", ExpectedVersion::NoStream, 1)
        .with_content("text/plain", b"z".to_vec());
    append(&store, request).await;
    store.forget_empty_community(kept).await.unwrap();
    let counts = rows_of(kept).await;
    assert!(
        counts
            .iter()
            .all(|(table, n)| *table == "idempotency_keys" || *n >= 1),
        "{counts:?}"
    );
}
