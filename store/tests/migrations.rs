//! Migrations on a database made by an earlier build: a migration revised
//! in comments only is accepted under the checksum its earlier text left,
//! and any other divergence from what this binary carries is refused.

use store::migrate::run_migrations;

use crate::helpers::*;

async fn recorded(db: &TestDb, version: i32) -> String {
    db.client()
        .await
        .query_one(
            "SELECT checksum FROM refinery_schema_history WHERE version = $1",
            &[&version],
        )
        .await
        .unwrap()
        .get(0)
}

async fn record(db: &TestDb, version: i32, checksum: &str) {
    db.client()
        .await
        .execute(
            "UPDATE refinery_schema_history SET checksum = $2 WHERE version = $1",
            &[&version, &checksum],
        )
        .await
        .unwrap();
}

#[tokio::test]
async fn a_database_that_applied_v2s_earlier_comment_migrates_and_other_divergence_is_refused() {
    let db = TestDb::new().await;
    let current = recorded(&db, 2).await;
    // As a database migrated before V2's first comment was revised.
    record(&db, 2, "3082631232301851988").await;
    let applied = run_migrations(&db.config).await.expect("accepted");
    assert!(applied.is_empty(), "nothing applied again: {applied:?}");
    assert_eq!(
        recorded(&db, 2).await,
        current,
        "the record now names the text carried"
    );
    assert_eq!(
        run_migrations(&db.config).await.unwrap(),
        Vec::<String>::new()
    );

    for (version, checksum) in [(2, "1"), (3, "3082631232301851988")] {
        let db = TestDb::new().await;
        record(&db, version, checksum).await;
        let refused = run_migrations(&db.config).await;
        assert!(
            refused.is_err(),
            "V{version} recorded as {checksum}: {refused:?}"
        );
        assert_eq!(recorded(&db, version).await, checksum, "left as it was");
    }
}
