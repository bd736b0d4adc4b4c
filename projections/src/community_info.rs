//! What several read models need to know of a community's set-up: its time
//! zone (months and days are the community's), patrol day and grids.

use domain::streams::StreamKind;
use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

use deadpool_postgres::Transaction;
use domain::community::{CommunityEvent, DEFAULT_TIME_ZONE};
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

/// The zone the read models keep for a community: the one its events name
/// when PostgreSQL (whose calendar the read models compute in) knows it, or
/// else the default zone. The server refuses unknown zones, but an older
/// history may hold one, and it must not stop the folds of that community:
/// it reads as the default until an admin corrects it (`TimeZoneSet`).
async fn readable_time_zone(
    transaction: &Transaction<'_>,
    event: &RecordedEvent,
    time_zone: &str,
) -> Result<String, ProjectionError> {
    let known = match zones_asked().get(time_zone) {
        Some(known) => known,
        None => {
            let statement = transaction
                .prepare_cached("SELECT EXISTS (SELECT 1 FROM pg_timezone_names WHERE name = $1)")
                .await?;
            let known: bool = transaction
                .query_one(&statement, &[&time_zone])
                .await?
                .get(0);
            zones_asked().keep(time_zone, known);
            known
        }
    };
    if known {
        return Ok(time_zone.to_string());
    }
    tracing::warn!(
        community = %event.community_id,
        position = event.position,
        time_zone,
        "unknown time zone in the log; the read models use {DEFAULT_TIME_ZONE} until it is corrected"
    );
    Ok(DEFAULT_TIME_ZONE.to_string())
}

/// Zones asked about at most before the answers kept start over.
const ZONES_KEPT_MAX: usize = 1_000;

/// What PostgreSQL answered about each zone name, kept for the process:
/// `pg_timezone_names` reads the whole zone database (about 80 ms a call),
/// and each projection asks once per set-up event of every community, so
/// creating or rebuilding communities paid it again and again. The zone
/// database does not change under a running server.
struct ZonesAsked(Mutex<HashMap<String, bool>>);

impl ZonesAsked {
    fn get(&self, zone: &str) -> Option<bool> {
        self.lock().get(zone).copied()
    }

    fn keep(&self, zone: &str, known: bool) {
        let mut zones = self.lock();
        if zones.len() >= ZONES_KEPT_MAX {
            zones.clear();
        }
        zones.insert(zone.to_string(), known);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, bool>> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

fn zones_asked() -> &'static ZonesAsked {
    static ZONES: OnceLock<ZonesAsked> = OnceLock::new();
    ZONES.get_or_init(|| ZonesAsked(Mutex::new(HashMap::new())))
}

/// Folds a community set-up event; other events are left alone.
pub(crate) async fn apply(
    transaction: &Transaction<'_>,
    schema: &str,
    event: &RecordedEvent,
) -> Result<(), ProjectionError> {
    if crate::runner::kind(event) != Some(StreamKind::Community) {
        return Ok(());
    }
    let community = event.community_id.as_uuid();
    match decode::<CommunityEvent>(event)? {
        CommunityEvent::CommunityRegistered {
            name, time_zone, ..
        } => {
            // A correction is what the zone should have been all along: a
            // fold from zero (the rebuild `setTimeZone` asks for) counts the
            // whole history in the corrected zone.
            let corrected = store::trail::newest_payload(
                &**transaction,
                event.community_id,
                &event.stream_id,
                "TimeZoneSet",
            )
            .await?
            .and_then(|payload| serde_json::from_value::<CommunityEvent>(payload).ok())
            .and_then(|corrected| match corrected {
                CommunityEvent::TimeZoneSet { time_zone, .. } => Some(time_zone),
                _ => None,
            });
            let time_zone = corrected.unwrap_or(time_zone);
            let time_zone = readable_time_zone(transaction, event, &time_zone).await?;
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
        CommunityEvent::TimeZoneSet { time_zone, .. } => {
            let time_zone = readable_time_zone(transaction, event, &time_zone).await?;
            let sql =
                format!("UPDATE {schema}.communities SET time_zone = $2 WHERE community_id = $1");
            let statement = transaction.prepare_cached(&sql).await?;
            transaction
                .execute(&statement, &[&community, &time_zone])
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
