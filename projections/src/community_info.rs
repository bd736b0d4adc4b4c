//! What several read models need to know of a community's set-up: its time
//! zone (months and days are the community's), patrol day and grids.

use deadpool_postgres::Transaction;
use domain::community::CommunityEvent;
use store::RecordedEvent;

use crate::error::ProjectionError;
use crate::runner::decode;

pub(crate) const TABLES_SQL: &str = "
CREATE TABLE {schema}.communities (
    community_id uuid PRIMARY KEY,
    name text NOT NULL,
    time_zone text NOT NULL,
    patrol_day integer
);
CREATE TABLE {schema}.grids (
    community_id uuid NOT NULL,
    grid_id uuid NOT NULL,
    parent_id uuid,
    name text NOT NULL,
    PRIMARY KEY (community_id, grid_id)
);
";

/// The community's calendar month (`YYYY-MM`) of the microsecond timestamp
/// in parameter `$n`, for a community in parameter `$1`.
pub(crate) fn month_sql(schema: &str, n: usize) -> String {
    format!(
        "to_char(to_timestamp(${n}::bigint / 1000000.0) AT TIME ZONE coalesce(\
         (SELECT time_zone FROM {schema}.communities WHERE community_id = $1), \
         'Asia/Shanghai'), 'YYYY-MM')"
    )
}

/// Folds a community set-up event; other events are left alone.
pub(crate) async fn apply(
    transaction: &Transaction<'_>,
    schema: &str,
    event: &RecordedEvent,
) -> Result<(), ProjectionError> {
    if event.stream_type != "Community" {
        return Ok(());
    }
    let community = event.community_id.as_uuid();
    match decode::<CommunityEvent>(event)? {
        CommunityEvent::CommunityRegistered {
            name, time_zone, ..
        } => {
            let sql = format!(
                "INSERT INTO {schema}.communities (community_id, name, time_zone) \
                 VALUES ($1, $2, $3) ON CONFLICT DO NOTHING"
            );
            let statement = transaction.prepare_cached(&sql).await?;
            transaction
                .execute(&statement, &[&community, &name, &time_zone])
                .await?;
        }
        CommunityEvent::GridAdded {
            grid, name, parent, ..
        } => {
            let sql = format!(
                "INSERT INTO {schema}.grids (community_id, grid_id, parent_id, name) \
                 VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING"
            );
            let statement = transaction.prepare_cached(&sql).await?;
            let parent = parent.map(|p| p.0);
            transaction
                .execute(&statement, &[&community, &grid.0, &parent, &name])
                .await?;
        }
        CommunityEvent::PatrolDaySet { day, .. } => {
            let sql =
                format!("UPDATE {schema}.communities SET patrol_day = $2 WHERE community_id = $1");
            let statement = transaction.prepare_cached(&sql).await?;
            let day = day.map(i32::from);
            transaction.execute(&statement, &[&community, &day]).await?;
        }
        _ => {}
    }
    Ok(())
}
