//! Reports: the list with its filters, each report's timeline, each grid's
//! problem ledger and the community's statistics per category and month.

use async_trait::async_trait;
use deadpool_postgres::Transaction;
use domain::report::{DeadlineKind, Place, ReportEvent, Reporter, SubmitReport};
use store::RecordedEvent;
use uuid::Uuid;

use crate::community_info::{self, month_sql};
use crate::error::ProjectionError;
use crate::runner::{decode, entity_id, Change};
use crate::sql::{execute, query};
use crate::Projection;

pub const NAME: &str = "reports";

pub struct ReportsProjection;

const TABLES_SQL: &str = "
CREATE TABLE {schema}.reports (
    community_id uuid NOT NULL,
    report_id uuid NOT NULL,
    grid_id uuid NOT NULL,
    level1_grid_id uuid NOT NULL,
    site_id uuid,
    site_code text,
    latitude_e6 integer,
    longitude_e6 integer,
    category text NOT NULL,
    state text NOT NULL,
    reporter_id uuid,
    anonymous boolean NOT NULL,
    reporter_name_hidden boolean NOT NULL DEFAULT false,
    text_hash text NOT NULL,
    photos_hash text,
    photo_count integer NOT NULL,
    hidden boolean NOT NULL DEFAULT false,
    text_redacted boolean NOT NULL DEFAULT false,
    photos_redacted boolean NOT NULL DEFAULT false,
    assignee_id uuid,
    department_id uuid,
    category_department_id uuid,
    escalation text NOT NULL DEFAULT 'grid_worker',
    supporters integer NOT NULL DEFAULT 0,
    reporters integer NOT NULL DEFAULT 1,
    reopen_count integer NOT NULL DEFAULT 0,
    comments integer NOT NULL DEFAULT 0,
    likely_duplicate_of uuid,
    merged_into uuid,
    submitted_at bigint NOT NULL,
    first_response_due bigint NOT NULL,
    resolution_due bigint NOT NULL,
    first_response_at bigint,
    resolved_at bigint,
    closed_at bigint,
    first_response_missed boolean NOT NULL DEFAULT false,
    resolution_missed boolean NOT NULL DEFAULT false,
    updated_at bigint NOT NULL,
    last_position bigint NOT NULL,
    PRIMARY KEY (community_id, report_id)
);
CREATE INDEX ON {schema}.reports (community_id, submitted_at DESC, report_id DESC);
CREATE INDEX ON {schema}.reports (community_id, level1_grid_id, state);
CREATE INDEX ON {schema}.reports (community_id, grid_id, state);
CREATE INDEX ON {schema}.reports (community_id, reporter_id);
CREATE INDEX ON {schema}.reports (community_id, site_id, category, state);
CREATE TABLE {schema}.report_timeline (
    community_id uuid NOT NULL,
    report_id uuid NOT NULL,
    position bigint NOT NULL,
    event_type text NOT NULL,
    actor_id uuid,
    actor_role text,
    at bigint NOT NULL,
    detail jsonb NOT NULL,
    PRIMARY KEY (community_id, report_id, position)
);
CREATE TABLE {schema}.report_statistics (
    community_id uuid NOT NULL,
    month text NOT NULL,
    category text NOT NULL,
    received integer NOT NULL DEFAULT 0,
    accepted integer NOT NULL DEFAULT 0,
    resolved integer NOT NULL DEFAULT 0,
    escalated integer NOT NULL DEFAULT 0,
    reopened integer NOT NULL DEFAULT 0,
    PRIMARY KEY (community_id, month, category)
);
";

/// The counters of `report_statistics`.
#[derive(Clone, Copy)]
enum Counter {
    Received,
    Accepted,
    Resolved,
    Escalated,
    Reopened,
}

impl Counter {
    fn column(self) -> &'static str {
        match self {
            Counter::Received => "received",
            Counter::Accepted => "accepted",
            Counter::Resolved => "resolved",
            Counter::Escalated => "escalated",
            Counter::Reopened => "reopened",
        }
    }
}

#[async_trait]
impl Projection for ReportsProjection {
    fn name(&self) -> &'static str {
        NAME
    }

    fn tables_sql(&self) -> String {
        format!("{}{TABLES_SQL}", community_info::TABLES_SQL)
    }

    async fn apply(
        &self,
        transaction: &Transaction<'_>,
        schema: &str,
        event: &RecordedEvent,
        changes: &mut Vec<Change>,
    ) -> Result<(), ProjectionError> {
        community_info::apply(transaction, schema, event).await?;
        if event.stream_type != "Report" {
            return Ok(());
        }
        let report_event: ReportEvent = decode(event)?;
        let fold = Fold {
            transaction,
            schema,
            event,
        };
        fold.apply(&report_event).await?;
        fold.timeline(&report_event).await?;
        if let Some(change) = fold.change().await? {
            changes.push(change);
        }
        Ok(())
    }
}

/// One report event being folded.
struct Fold<'a> {
    transaction: &'a Transaction<'a>,
    schema: &'a str,
    event: &'a RecordedEvent,
}

impl Fold<'_> {
    fn report(&self) -> Result<Uuid, ProjectionError> {
        entity_id(self.event, "report")
    }

    /// Sets columns of the report's row: `assignments` is SQL such as
    /// `state = 'accepted'`, written by this code only (never from input),
    /// with the event's time as `$3` and `extra` from `$5` on.
    async fn update(
        &self,
        assignments: &str,
        at: i64,
        extra: Option<Uuid>,
    ) -> Result<(), ProjectionError> {
        let sql = format!(
            "UPDATE {}.reports SET {assignments}, updated_at = $3, last_position = $4 \
             WHERE community_id = $1 AND report_id = $2",
            self.schema
        );
        let community = self.event.community_id.as_uuid();
        let report = self.report()?;
        let mut params: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> =
            vec![&community, &report, &at, &self.event.position];
        if let Some(extra) = &extra {
            params.push(extra);
        }
        execute(self.transaction, &sql, &params).await?;
        Ok(())
    }

    async fn set(&self, assignments: &str, at: i64) -> Result<(), ProjectionError> {
        self.update(assignments, at, None).await
    }

    /// Like `set`, with a person or department id as `$5`.
    async fn set_person(
        &self,
        assignments: &str,
        person: Uuid,
        at: i64,
    ) -> Result<(), ProjectionError> {
        self.update(assignments, at, Some(person)).await
    }

    async fn count(&self, counter: Counter, at: i64) -> Result<(), ProjectionError> {
        let column = counter.column();
        let sql = format!(
            "INSERT INTO {schema}.report_statistics (community_id, month, category, {column}) \
             SELECT $1, {month}, category, 1 FROM {schema}.reports \
             WHERE community_id = $1 AND report_id = $2 \
             ON CONFLICT (community_id, month, category) \
             DO UPDATE SET {column} = {schema}.report_statistics.{column} + 1",
            schema = self.schema,
            month = month_sql(self.schema, 3),
        );
        execute(
            self.transaction,
            &sql,
            &[&self.event.community_id.as_uuid(), &self.report()?, &at],
        )
        .await?;
        Ok(())
    }

    async fn apply(&self, event: &ReportEvent) -> Result<(), ProjectionError> {
        use ReportEvent::*;
        match event {
            ReportSubmitted(submission) => {
                self.insert(submission).await?;
                self.count(Counter::Received, submission.at.micros())
                    .await?;
            }
            ReportAccepted { at, .. } => {
                let at = at.micros();
                self.set(
                    "state = 'accepted', first_response_at = coalesce(first_response_at, $3)",
                    at,
                )
                .await?;
                self.count(Counter::Accepted, at).await?;
            }
            ReportRejected { at, .. } => {
                self.set(
                    "state = 'rejected', first_response_at = coalesce(first_response_at, $3), \
                     closed_at = $3",
                    at.micros(),
                )
                .await?
            }
            ReportAssigned { worker, at, .. } => {
                self.set_person(
                    "state = 'assigned', assignee_id = $5",
                    worker.0,
                    at.micros(),
                )
                .await?
            }
            ReportEscalated { department, at, .. } => {
                let at = at.micros();
                self.set_person("state = 'escalated', department_id = $5", department.0, at)
                    .await?;
                self.count(Counter::Escalated, at).await?;
            }
            ReportWorkStarted { at, .. } => self.set("state = 'in_progress'", at.micros()).await?,
            ReportResolved { at, .. } => {
                let at = at.micros();
                self.set("state = 'resolved', resolved_at = $3", at).await?;
                self.count(Counter::Resolved, at).await?;
            }
            ReportConfirmed { at, .. } => self.set("state = 'confirmed'", at.micros()).await?,
            ReportReopened {
                reopen_count, at, ..
            } => {
                let at = at.micros();
                let assignments = format!(
                    "state = 'in_progress', resolved_at = NULL, reopen_count = {reopen_count}"
                );
                self.set(&assignments, at).await?;
                self.count(Counter::Reopened, at).await?;
            }
            ReportClosed { at, .. } => {
                self.set("state = 'closed', closed_at = $3", at.micros())
                    .await?
            }
            ReportCommented { at, .. } => self.set("comments = comments + 1", at.micros()).await?,
            ReportClaimed { resident, at } => {
                self.set_person(
                    "reporter_id = $5, anonymous = false",
                    resident.0,
                    at.micros(),
                )
                .await?
            }
            ReportSupported { supporters, at, .. } => {
                let assignments = format!("supporters = {supporters}");
                self.set(&assignments, at.micros()).await?
            }
            ReportMerged { original, at, .. } => self.merge(original.0, at.micros()).await?,
            ReportHidden { at, .. } => self.set("hidden = true", at.micros()).await?,
            ReportUnhidden { at, .. } => self.set("hidden = false", at.micros()).await?,
            ReportTextRedacted { at, .. } => self.set("text_redacted = true", at.micros()).await?,
            ReportPhotosRedacted { at, .. } => {
                self.set("photos_redacted = true", at.micros()).await?
            }
            ReporterNameHidden { at, .. } => {
                self.set("reporter_name_hidden = true", at.micros()).await?
            }
            ReportDeadlineMissed {
                kind,
                escalated_to,
                at,
                ..
            } => {
                let missed = match kind {
                    DeadlineKind::FirstResponse => "first_response_missed",
                    DeadlineKind::Resolution => "resolution_missed",
                };
                let level = domain_name(escalated_to);
                let at = at.micros();
                self.set(&format!("{missed} = true, escalation = '{level}'"), at)
                    .await?;
                self.count(Counter::Escalated, at).await?;
            }
        }
        Ok(())
    }

    async fn merge(&self, original: Uuid, at: i64) -> Result<(), ProjectionError> {
        self.set_person(
            "state = 'merged', merged_into = $5, closed_at = $3",
            original,
            at,
        )
        .await?;
        // The original counts one more reporter.
        let sql = format!(
            "UPDATE {}.reports SET reporters = reporters + 1 \
             WHERE community_id = $1 AND report_id = $2",
            self.schema
        );
        execute(
            self.transaction,
            &sql,
            &[&self.event.community_id.as_uuid(), &original],
        )
        .await?;
        Ok(())
    }

    async fn insert(&self, submission: &SubmitReport) -> Result<(), ProjectionError> {
        let (site_id, site_code, latitude, longitude) = match &submission.place {
            Place::Site { site, code } => (Some(site.0), Some(code.to_string()), None, None),
            Place::Point(point) => (
                None,
                None,
                Some(point.latitude_e6()),
                Some(point.longitude_e6()),
            ),
        };
        let (reporter, anonymous) = match &submission.reporter {
            Reporter::Resident(person) => (Some(person.0), false),
            Reporter::Anonymous { .. } => (None, true),
        };
        let photos_hash = submission
            .photos
            .as_ref()
            .map(|p| p.content().as_str().to_string());
        let photo_count = submission
            .photos
            .as_ref()
            .map_or(0, |p| i32::from(p.count()));
        let sql = format!(
            "INSERT INTO {schema}.reports (community_id, report_id, grid_id, level1_grid_id, \
             site_id, site_code, latitude_e6, longitude_e6, category, state, reporter_id, \
             anonymous, text_hash, photos_hash, photo_count, category_department_id, \
             likely_duplicate_of, submitted_at, first_response_due, resolution_due, updated_at, \
             last_position) \
             VALUES ($1, $2, $3, coalesce((SELECT parent_id FROM {schema}.grids \
                 WHERE community_id = $1 AND grid_id = $3), $3), \
             $4, $5, $6, $7, $8, 'submitted', $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $16, $19)",
            schema = self.schema
        );
        execute(
            self.transaction,
            &sql,
            &[
                &self.event.community_id.as_uuid(),
                &submission.report.0,
                &submission.grid.0,
                &site_id,
                &site_code,
                &latitude,
                &longitude,
                &submission.category.as_str(),
                &reporter,
                &anonymous,
                &submission.text.as_str(),
                &photos_hash,
                &photo_count,
                &submission.department.map(|d| d.0),
                &submission.likely_duplicate_of.map(|r| r.0),
                &submission.at.micros(),
                &submission.first_response_due.micros(),
                &submission.resolution_due.micros(),
                &self.event.position,
            ],
        )
        .await?;
        Ok(())
    }

    async fn timeline(&self, event: &ReportEvent) -> Result<(), ProjectionError> {
        let (actor, role) = match self.event.metadata.get("actor_id") {
            Some(id) => (
                Uuid::parse_str(id).ok(),
                self.event.metadata.get("actor_role").cloned(),
            ),
            None => (None, None),
        };
        let detail: serde_json::Value = decode(self.event)?;
        let detail = match detail {
            serde_json::Value::Object(mut wrapper) if wrapper.len() == 1 => wrapper
                .remove(&self.event.event_type)
                .unwrap_or(serde_json::Value::Null),
            other => other,
        };
        let sql = format!(
            "INSERT INTO {}.report_timeline (community_id, report_id, position, event_type, \
             actor_id, actor_role, at, detail) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            self.schema
        );
        execute(
            self.transaction,
            &sql,
            &[
                &self.event.community_id.as_uuid(),
                &self.report()?,
                &self.event.position,
                &self.event.event_type,
                &actor,
                &role,
                &event_time(event),
                &detail,
            ],
        )
        .await?;
        Ok(())
    }

    async fn change(&self) -> Result<Option<Change>, ProjectionError> {
        let sql = format!(
            "SELECT grid_id, level1_grid_id, state FROM {}.reports \
             WHERE community_id = $1 AND report_id = $2",
            self.schema
        );
        let rows = query(
            self.transaction,
            &sql,
            &[&self.event.community_id.as_uuid(), &self.report()?],
        )
        .await?;
        Ok(rows.first().map(|row| Change {
            community: self.event.community_id,
            report: self.report().unwrap_or_default(),
            grid: row.get(0),
            level1_grid: row.get(1),
            position: self.event.position,
            event_type: self.event.event_type.clone(),
            state: row.get(2),
        }))
    }
}

fn domain_name<T: serde::Serialize>(value: &T) -> String {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::String(name)) => name,
        _ => String::new(),
    }
}

fn event_time(event: &ReportEvent) -> i64 {
    use ReportEvent::*;
    let at = match event {
        ReportSubmitted(submission) => submission.at,
        ReportAccepted { at, .. }
        | ReportRejected { at, .. }
        | ReportAssigned { at, .. }
        | ReportEscalated { at, .. }
        | ReportWorkStarted { at, .. }
        | ReportResolved { at, .. }
        | ReportConfirmed { at, .. }
        | ReportReopened { at, .. }
        | ReportClosed { at, .. }
        | ReportCommented { at, .. }
        | ReportClaimed { at, .. }
        | ReportSupported { at, .. }
        | ReportMerged { at, .. }
        | ReportHidden { at, .. }
        | ReportUnhidden { at, .. }
        | ReportTextRedacted { at, .. }
        | ReportPhotosRedacted { at, .. }
        | ReporterNameHidden { at, .. }
        | ReportDeadlineMissed { at, .. } => *at,
    };
    at.micros()
}

pub use queries::*;
mod queries;
