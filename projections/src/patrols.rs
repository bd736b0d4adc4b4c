//! Patrol duty per grid worker per month: patrols, check-ins, findings, and
//! whether the community's fixed patrol day was kept.

use async_trait::async_trait;
use deadpool_postgres::{Pool, Transaction};
use domain::community::CommunityEvent;
use domain::patrol::PatrolEvent;
use domain::streams::StreamKind;
use domain::values::Role;
use store::{CommunityId, RecordedEvent};
use uuid::Uuid;

use crate::community_info::{self, month_sql};
use crate::error::ProjectionError;
use crate::generation::reading_schema;
use crate::runner::{decode, entity_id, Change};
use crate::sql::{execute, query};
use crate::Projection;

pub const NAME: &str = "patrols";

pub struct PatrolsProjection;

const TABLES_SQL: &str = "
CREATE TABLE {schema}.workers (
    community_id uuid NOT NULL,
    worker_id uuid NOT NULL,
    PRIMARY KEY (community_id, worker_id)
);
CREATE TABLE {schema}.patrols (
    community_id uuid NOT NULL,
    patrol_id uuid NOT NULL,
    worker_id uuid NOT NULL,
    month text NOT NULL,
    day_of_month integer NOT NULL,
    started_at bigint NOT NULL,
    ended_at bigint,
    last_at bigint NOT NULL,
    check_ins integer NOT NULL DEFAULT 0,
    findings integer NOT NULL DEFAULT 0,
    PRIMARY KEY (community_id, patrol_id)
);
CREATE INDEX ON {schema}.patrols (community_id, month, worker_id);
";

#[async_trait]
impl Projection for PatrolsProjection {
    fn name(&self) -> &'static str {
        NAME
    }

    fn streams(&self) -> &'static [StreamKind] {
        &[StreamKind::Patrol, StreamKind::Community]
    }

    fn tables_sql(&self) -> String {
        format!("{}{TABLES_SQL}", community_info::TABLES_SQL)
    }

    /// Event by event: these events are few.
    async fn apply_batch(
        &self,
        transaction: &Transaction<'_>,
        schema: &str,
        events: &[RecordedEvent],
        _changes: &mut Vec<Change>,
    ) -> Result<(), ProjectionError> {
        for event in events {
            apply(transaction, schema, event).await?;
        }
        Ok(())
    }
}

async fn apply(
    transaction: &Transaction<'_>,
    schema: &str,
    event: &RecordedEvent,
) -> Result<(), ProjectionError> {
    community_info::apply(transaction, schema, event).await?;
    let community = event.community_id.as_uuid();
    match crate::runner::kind(event) {
        Some(StreamKind::Community) => workers(transaction, schema, event).await,
        Some(StreamKind::Patrol) => {
            let patrol = patrol_id(event)?;
            let (sql, at) = match decode::<PatrolEvent>(event)? {
                PatrolEvent::PatrolStarted { worker, at, .. } => {
                    let sql = format!(
                        "INSERT INTO {schema}.patrols (community_id, patrol_id, worker_id, \
                         month, day_of_month, started_at, last_at) VALUES ($1, $2, $4, {month}, \
                         extract(day FROM to_timestamp($3::bigint / 1000000.0) AT TIME ZONE \
                         (SELECT time_zone FROM {schema}.communities \
                          WHERE community_id = $1))::integer, $3, $3)",
                        month = month_sql(schema, 3)
                    );
                    execute(
                        transaction,
                        &sql,
                        &[&community, &patrol, &at.micros(), &worker.0],
                    )
                    .await?;
                    return Ok(());
                }
                PatrolEvent::PatrolCheckedIn { at, .. } => ("check_ins = check_ins + 1", at),
                PatrolEvent::PatrolFindingRecorded { at, .. } => ("findings = findings + 1", at),
                PatrolEvent::PatrolEnded { at, .. } => ("ended_at = $3", at),
            };
            let sql = format!(
                "UPDATE {schema}.patrols SET {sql}, last_at = $3 \
                 WHERE community_id = $1 AND patrol_id = $2"
            );
            execute(transaction, &sql, &[&community, &patrol, &at.micros()]).await?;
            Ok(())
        }
        _ => Ok(()),
    }
}

/// Keeps the list of grid workers, so a worker with no patrol shows too.
async fn workers(
    transaction: &Transaction<'_>,
    schema: &str,
    event: &RecordedEvent,
) -> Result<(), ProjectionError> {
    let community = event.community_id.as_uuid();
    let sql = match decode::<CommunityEvent>(event)? {
        CommunityEvent::StaffAssigned { person, member, .. } if member.role == Role::GridWorker => {
            (
                format!(
                    "INSERT INTO {schema}.workers (community_id, worker_id) VALUES ($1, $2) \
                 ON CONFLICT DO NOTHING"
                ),
                person,
            )
        }
        CommunityEvent::StaffAssigned { person, .. }
        | CommunityEvent::StaffRemoved { person, .. } => (
            format!("DELETE FROM {schema}.workers WHERE community_id = $1 AND worker_id = $2"),
            person,
        ),
        _ => return Ok(()),
    };
    execute(transaction, &sql.0, &[&community, &sql.1 .0]).await?;
    Ok(())
}

fn patrol_id(event: &RecordedEvent) -> Result<Uuid, ProjectionError> {
    entity_id(event, "patrol")
}

/// One worker's patrol duty in one month.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PatrolDuty {
    pub worker_id: Uuid,
    pub month: String,
    pub patrols: i64,
    pub ended_patrols: i64,
    pub check_ins: i64,
    pub findings: i64,
    /// The community's fixed patrol day, if it has one.
    pub patrol_day: Option<i32>,
    /// Whether the worker patrolled on the fixed day (None without one).
    pub fixed_day_kept: Option<bool>,
}

/// Patrol duty of every grid worker (or one) in a month (`YYYY-MM`).
pub async fn patrol_duty(
    pool: &Pool,
    community: CommunityId,
    month: &str,
    worker: Option<Uuid>,
) -> Result<Vec<PatrolDuty>, ProjectionError> {
    let schema = reading_schema(NAME);
    let sql = format!(
        "SELECT w.worker_id, count(p.patrol_id), count(p.ended_at), \
             coalesce(sum(p.check_ins), 0)::bigint, coalesce(sum(p.findings), 0)::bigint, \
             c.patrol_day, CASE WHEN c.patrol_day IS NULL THEN NULL \
                 ELSE coalesce(bool_or(p.day_of_month = c.patrol_day), false) END \
         FROM {schema}.workers w \
         LEFT JOIN {schema}.communities c ON c.community_id = w.community_id \
         LEFT JOIN {schema}.patrols p ON p.community_id = w.community_id \
             AND p.worker_id = w.worker_id AND p.month = $2 \
         WHERE w.community_id = $1 AND ($3::uuid IS NULL OR w.worker_id = $3) \
         GROUP BY w.worker_id, c.patrol_day ORDER BY w.worker_id"
    );
    let client = pool.get().await?;
    let rows = query(&client, &sql, &[&community.as_uuid(), &month, &worker]).await?;
    Ok(rows
        .iter()
        .map(|row| PatrolDuty {
            worker_id: row.get(0),
            month: month.to_string(),
            patrols: row.get(1),
            ended_patrols: row.get(2),
            check_ins: row.get(3),
            findings: row.get(4),
            patrol_day: row.get(5),
            fixed_day_kept: row.get(6),
        })
        .collect())
}
