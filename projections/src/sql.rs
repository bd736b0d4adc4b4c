//! Small helpers shared by the read models.

use deadpool_postgres::{GenericClient, Transaction};
use tokio_postgres::types::ToSql;
use tokio_postgres::Row;

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
