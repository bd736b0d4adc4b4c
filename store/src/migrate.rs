//! The SQL migrations in `migrations/`, embedded into the binary.

use tokio_postgres::NoTls;

use crate::error::StoreError;

mod embedded {
    refinery::embed_migrations!("../migrations");
}

/// Any 64-bit number unlikely to be used by other tools on the same database.
const MIGRATION_LOCK_KEY: i64 = 0x6369_7669_635f_6c67;

/// Migrations whose text changed after release in comments only, with the
/// checksum a database that applied the earlier text recorded. V2's first
/// comment named the design document by a path outside the repository; it
/// now names `docs/DESIGN.md`. Its statements are the same.
const COMMENT_ONLY_REVISIONS: &[(i32, &str)] = &[(2, "3082631232301851988")];

/// Runs every migration not yet applied; concurrent runners take turns.
/// Returns the names of the migrations this call applied.
pub async fn run_migrations(config: &tokio_postgres::Config) -> Result<Vec<String>, StoreError> {
    let (mut client, connection) = config.connect(NoTls).await?;
    let driver = tokio::spawn(connection);
    client
        .execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK_KEY])
        .await?;
    record_comment_only_revisions(&client).await?;
    let report = embedded::migrations::runner()
        .run_async(&mut client)
        .await
        .map_err(|e| StoreError::Migration(e.to_string()))?;
    drop(client);
    let _ = driver.await;
    Ok(report
        .applied_migrations()
        .iter()
        .map(|m| m.to_string())
        .collect())
}

/// Brings the recorded checksum of a migration revised in comments only
/// (and only that earlier checksum, so any other divergence is still
/// refused by the runner) to the checksum of the text this binary carries.
async fn record_comment_only_revisions(client: &tokio_postgres::Client) -> Result<(), StoreError> {
    if applied_migration_version(client).await? == 0 {
        return Ok(());
    }
    for migration in embedded::migrations::runner().get_migrations() {
        let earlier = COMMENT_ONLY_REVISIONS
            .iter()
            .find(|(version, _)| *version == migration.version() as i32);
        if let Some((version, earlier)) = earlier {
            client
                .execute(
                    "UPDATE refinery_schema_history SET checksum = $3 \
                     WHERE version = $1 AND checksum = $2",
                    &[version, earlier, &migration.checksum().to_string()],
                )
                .await?;
        }
    }
    Ok(())
}

/// The version of the newest migration this binary carries.
pub fn latest_migration_version() -> i64 {
    embedded::migrations::runner()
        .get_migrations()
        .iter()
        .map(|m| i64::from(m.version()))
        .max()
        .unwrap_or(0)
}

/// The newest migration version applied to the database (0 when none is).
pub async fn applied_migration_version(client: &tokio_postgres::Client) -> Result<i64, StoreError> {
    let exists = client
        .query_one(
            "SELECT to_regclass('refinery_schema_history') IS NOT NULL",
            &[],
        )
        .await?
        .get::<_, bool>(0);
    if !exists {
        return Ok(0);
    }
    let row = client
        .query_one(
            "SELECT coalesce(max(version), 0)::bigint FROM refinery_schema_history",
            &[],
        )
        .await?;
    Ok(row.get(0))
}

/// Creates `dbname` on the server `admin` points at, unless it exists.
pub async fn ensure_database(
    admin: &tokio_postgres::Config,
    dbname: &str,
) -> Result<(), StoreError> {
    let (client, connection) = admin.connect(NoTls).await?;
    let driver = tokio::spawn(connection);
    let exists = client
        .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&dbname])
        .await?
        .is_some();
    if !exists {
        let quoted = dbname.replace('"', "\"\"");
        let created = client
            .batch_execute(&format!("CREATE DATABASE \"{quoted}\""))
            .await;
        // Two processes may race to create it; the loser finds it there.
        if let Err(error) = created {
            if error.code() != Some(&tokio_postgres::error::SqlState::DUPLICATE_DATABASE) {
                return Err(error.into());
            }
        }
    }
    drop(client);
    let _ = driver.await;
    Ok(())
}
