//! Small helpers shared by the read models.
//!
//! A batch is folded in memory and written set-based: the rows a batch
//! touched are loaded with one query, changed in Rust, and written back with
//! one statement per table (rows travel as one JSON array, which PostgreSQL
//! turns into the table's row type). Statements per event would cap a
//! replay at a few thousand events a second.

use deadpool_postgres::{GenericClient, Transaction};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio_postgres::types::{Json, ToSql};
use tokio_postgres::Row;
use uuid::Uuid;

use crate::error::ProjectionError;

/// Runs a statement through the connection's statement cache.
pub(crate) async fn execute(
    transaction: &Transaction<'_>,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
) -> Result<u64, ProjectionError> {
    let statement = transaction.prepare_cached(sql).await?;
    Ok(transaction.execute(&statement, params).await?)
}

/// Queries through the connection's statement cache.
pub(crate) async fn query(
    client: &impl GenericClient,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
) -> Result<Vec<Row>, ProjectionError> {
    let statement = client.prepare_cached(sql).await?;
    Ok(client.query(&statement, params).await?)
}

/// The rows of `table` (qualified) of one community whose `key` column is
/// one of `keys`, as `T` (whose fields are named as the columns).
pub(crate) async fn load_rows<T: DeserializeOwned>(
    transaction: &Transaction<'_>,
    table: &str,
    key: &str,
    community: Uuid,
    keys: &[Uuid],
) -> Result<Vec<T>, ProjectionError> {
    if keys.is_empty() {
        return Ok(Vec::new());
    }
    let sql =
        format!("SELECT to_jsonb(t) FROM {table} t WHERE community_id = $1 AND {key} = ANY($2)");
    query(transaction, &sql, &[&community, &keys])
        .await?
        .iter()
        .map(|row| {
            let Json(value): Json<T> = row.try_get(0)?;
            Ok(value)
        })
        .collect()
}

/// Writes `rows` (every column of `table`, named as the columns) in place of
/// the community's rows with the same `key`.
pub(crate) async fn replace_rows<T: Serialize + std::fmt::Debug + Sync>(
    transaction: &Transaction<'_>,
    table: &str,
    key: &str,
    community: Uuid,
    keys: &[Uuid],
    rows: &[T],
) -> Result<(), ProjectionError> {
    if rows.is_empty() {
        return Ok(());
    }
    let sql = format!("DELETE FROM {table} WHERE community_id = $1 AND {key} = ANY($2)");
    execute(transaction, &sql, &[&community, &keys]).await?;
    insert_rows(transaction, table, rows).await
}

/// Appends `rows` (every column of `table`, named as the columns).
pub(crate) async fn insert_rows<T: Serialize + std::fmt::Debug + Sync>(
    transaction: &Transaction<'_>,
    table: &str,
    rows: &[T],
) -> Result<(), ProjectionError> {
    if rows.is_empty() {
        return Ok(());
    }
    let sql =
        format!("INSERT INTO {table} SELECT * FROM jsonb_populate_recordset(NULL::{table}, $1)");
    execute(transaction, &sql, &[&Json(rows)]).await?;
    Ok(())
}
