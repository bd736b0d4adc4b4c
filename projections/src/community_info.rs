//! What several read models need to know of a community's set-up: its time
//! zone (months and days are the community's), patrol day and grids.

use std::collections::HashMap;

use deadpool_postgres::Transaction;
use domain::community::CommunityEvent;
use store::RecordedEvent;
use uuid::Uuid;

use crate::error::ProjectionError;
use crate::runner::decode;
use crate::sql::query;

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
    month_of(schema, &format!("${n}::bigint"))
}

/// The community's calendar month (`YYYY-MM`) of the microsecond timestamp
/// `micros` (an SQL expression), for a community in parameter `$1`.
pub(crate) fn month_of(schema: &str, micros: &str) -> String {
    format!(
        "to_char(to_timestamp({micros} / 1000000.0) AT TIME ZONE coalesce(\
         (SELECT time_zone FROM {schema}.communities WHERE community_id = $1), \
         'Asia/Shanghai'), 'YYYY-MM')"
    )
}

/// A community's grids and their parents, as a batch folds: loaded when the
/// batch starts and followed through its events.
pub(crate) struct Grids {
    parents: HashMap<Uuid, Option<Uuid>>,
}

impl Grids {
    pub(crate) async fn load(
        transaction: &Transaction<'_>,
        schema: &str,
        community: Uuid,
    ) -> Result<Grids, ProjectionError> {
        let sql = format!("SELECT grid_id, parent_id FROM {schema}.grids WHERE community_id = $1");
        let rows = query(transaction, &sql, &[&community]).await?;
        Ok(Grids {
            parents: rows.iter().map(|row| (row.get(0), row.get(1))).collect(),
        })
    }

    /// Takes in a grid added by a community event (the first word stands,
    /// as in the table).
    pub(crate) fn follow(&mut self, event: &RecordedEvent) -> Result<(), ProjectionError> {
        if let CommunityEvent::GridAdded { grid, parent, .. } = decode(event)? {
            self.parents.entry(grid.0).or_insert(parent.map(|p| p.0));
        }
        Ok(())
    }

    /// The level 1 grid a grid lies in (itself for a level 1 or unknown grid).
    pub(crate) fn level1(&self, grid: Uuid) -> Uuid {
        self.parent(grid).unwrap_or(grid)
    }

    /// A grid's parent (none for a level 1 or unknown grid).
    pub(crate) fn parent(&self, grid: Uuid) -> Option<Uuid> {
        self.parents.get(&grid).copied().flatten()
    }
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
