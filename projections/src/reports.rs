//! Reports: the list with its filters, each report's timeline, each grid's
//! problem ledger and the community's statistics per category and month.

use domain::streams::StreamKind;
use std::collections::{HashMap, HashSet};

use async_trait::async_trait;
use deadpool_postgres::Transaction;
use domain::report::{DeadlineKind, Place, ReportEvent, Reporter, SubmitReport};
use serde::Deserialize;
use serde_json::value::RawValue;
use store::RecordedEvent;
use tokio_postgres::types::{Json, ToSql};
use uuid::Uuid;

use crate::community_info::{self, month_of};
use crate::error::ProjectionError;
use crate::runner::{decode, entity_id, Change};
use crate::sql::{
    column, execute, insert_rows, load_rows, replace_rows, JsonText, Loaded, TableRow,
};
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
-- The open reports at a site in a category, newest first: a submission's
-- likely duplicates. Its predicate is `queries::OPEN_STATES` word for word,
-- so that the lookup's plan, generic or not, can use it.
CREATE INDEX ON {schema}.reports (community_id, site_id, category, submitted_at DESC)
    WHERE state IN ('submitted', 'accepted', 'assigned', 'escalated', 'in_progress');
-- Per grid, the figures the fold keeps (see reports/ledger.rs): its open
-- reports, each duration's set ordered by (duration, report), and the
-- middle of each set.
CREATE TABLE {schema}.grid_ledgers (
    community_id uuid NOT NULL,
    grid_id uuid NOT NULL,
    open bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (community_id, grid_id)
);
CREATE TABLE {schema}.grid_durations (
    community_id uuid NOT NULL,
    grid_id uuid NOT NULL,
    kind smallint NOT NULL,
    duration_us bigint NOT NULL,
    report_id uuid NOT NULL,
    PRIMARY KEY (community_id, grid_id, kind, duration_us, report_id)
);
-- Per grid, the moments a read compares with its own time (see
-- reports/ledger.rs): each open report's deadline (kind 0) and each
-- resolution (kind 1). Its key is its only index, so a count of what is
-- overdue now is a range of it whatever plan the statement is given.
CREATE TABLE {schema}.grid_moments (
    community_id uuid NOT NULL,
    grid_id uuid NOT NULL,
    kind smallint NOT NULL,
    at bigint NOT NULL,
    report_id uuid NOT NULL,
    PRIMARY KEY (community_id, grid_id, kind, at, report_id)
);
CREATE TABLE {schema}.grid_medians (
    community_id uuid NOT NULL,
    grid_id uuid NOT NULL,
    kind smallint NOT NULL,
    n bigint NOT NULL,
    lower_us bigint,
    lower_report uuid,
    median_us bigint,
    PRIMARY KEY (community_id, grid_id, kind)
);
CREATE TABLE {schema}.report_timeline (
    community_id uuid NOT NULL,
    report_id uuid NOT NULL,
    position bigint NOT NULL,
    event_type text NOT NULL,
    actor_id uuid,
    actor_role text,
    at bigint NOT NULL,
    detail json NOT NULL
);
-- Its key, as an index a generation filled from zero makes once filled:
-- rows are only ever appended.
CREATE UNIQUE INDEX report_timeline_key ON {schema}.report_timeline (community_id, report_id, position);
-- Shown, never searched: ANALYZE need not sort it.
ALTER TABLE {schema}.report_timeline ALTER COLUMN detail SET STATISTICS 0;
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

/// The counters of `report_statistics` one event adds to.
#[derive(Clone, Copy)]
enum Counter {
    Received,
    Accepted,
    Resolved,
    Escalated,
    Reopened,
}

#[async_trait]
impl Projection for ReportsProjection {
    fn name(&self) -> &'static str {
        NAME
    }

    fn streams(&self) -> &'static [StreamKind] {
        &[StreamKind::Report, StreamKind::Community]
    }

    /// 2: statistics count a report resolved again after a reopen once.
    /// 3: the grid ledgers' figures are kept by the fold.
    /// 4: their deadlines and resolutions are kept per grid (grid_moments).
    /// 5: open reports are indexed by site and category, newest first.
    fn fold_version(&self) -> i32 {
        5
    }

    fn tables_sql(&self) -> String {
        format!("{}{TABLES_SQL}", community_info::TABLES_SQL)
    }

    async fn apply_batch(
        &self,
        transaction: &Transaction<'_>,
        schema: &str,
        events: &[RecordedEvent],
        changes: &mut Vec<Change>,
    ) -> Result<(), ProjectionError> {
        let Some(community) = events.first().map(|e| e.community_id.as_uuid()) else {
            return Ok(());
        };
        let mut grids = community_info::Grids::load(transaction, schema, community).await?;
        let mut decoded = Vec::with_capacity(events.len());
        // The reports the batch changes, but for those it submits: their
        // rows cannot be stored yet.
        let mut touched = Vec::new();
        let mut submitted = HashSet::new();
        for event in events {
            if crate::runner::kind(event) != Some(StreamKind::Report) {
                decoded.push(None);
                continue;
            }
            let report_event: ReportEvent = decode(event)?;
            let report = entity_id(event, "report")?;
            match &report_event {
                ReportEvent::ReportSubmitted(_) => {
                    submitted.insert(report);
                }
                ReportEvent::ReportMerged { original, .. } => {
                    touched.extend([report, original.0]);
                }
                _ => touched.push(report),
            }
            decoded.push(Some(report_event));
        }
        let table = format!("{schema}.reports");
        let keyed = (table.as_str(), "report_id");
        let Loaded { stored, mut rows } = load_rows(
            transaction,
            keyed,
            community,
            (touched, &submitted),
            |row: &ReportRecord| row.report_id,
        )
        .await?;
        let shares: HashMap<Uuid, ledger::Share> = rows
            .iter()
            .map(|(id, row)| (*id, ledger::Share::of(row)))
            .collect();
        let mut timeline = Vec::new();
        let mut counts = Vec::new();
        for (event, report_event) in events.iter().zip(decoded) {
            if crate::runner::kind(event) == Some(StreamKind::Community) {
                community_info::apply(transaction, schema, event).await?;
                grids.follow(event)?;
            }
            let Some(report_event) = report_event else {
                continue;
            };
            let report = entity_id(event, "report")?;
            let counter = fold(&mut rows, &grids, event, report, &report_event);
            if let Some(row) = rows.get(&report) {
                if let Some(counter) = counter {
                    counts.push(Count::new(row, counter, event_time(&report_event)));
                }
                changes.push(Change {
                    community: event.community_id,
                    report,
                    grid: row.grid_id,
                    level1_grid: row.level1_grid_id,
                    position: event.position,
                    event_type: event.event_type.clone(),
                    state: row.state.clone(),
                    hidden: row.hidden,
                    reporter: row.reporter_id,
                });
            }
            timeline.push(TimelineRow::of(event, report, &report_event)?);
        }
        let mut ledgers = ledger::LedgerChanges::default();
        for (id, row) in &rows {
            ledgers.add(*id, shares.get(id), &ledger::Share::of(row));
        }
        replace_rows(transaction, keyed, community, &stored, &rows).await?;
        insert_rows(transaction, &format!("{schema}.report_timeline"), &timeline).await?;
        add_counts(transaction, schema, community, &counts).await?;
        ledgers.write(transaction, schema, community).await
    }
}

/// A row of `reports`, named as its columns.
#[derive(Debug, Deserialize)]
struct ReportRecord {
    community_id: Uuid,
    report_id: Uuid,
    grid_id: Uuid,
    level1_grid_id: Uuid,
    site_id: Option<Uuid>,
    site_code: Option<String>,
    latitude_e6: Option<i32>,
    longitude_e6: Option<i32>,
    category: String,
    state: String,
    reporter_id: Option<Uuid>,
    anonymous: bool,
    reporter_name_hidden: bool,
    text_hash: String,
    photos_hash: Option<String>,
    photo_count: i32,
    hidden: bool,
    text_redacted: bool,
    photos_redacted: bool,
    assignee_id: Option<Uuid>,
    department_id: Option<Uuid>,
    category_department_id: Option<Uuid>,
    escalation: String,
    supporters: i32,
    reporters: i32,
    reopen_count: i32,
    comments: i32,
    likely_duplicate_of: Option<Uuid>,
    merged_into: Option<Uuid>,
    submitted_at: i64,
    first_response_due: i64,
    resolution_due: i64,
    first_response_at: Option<i64>,
    resolved_at: Option<i64>,
    closed_at: Option<i64>,
    first_response_missed: bool,
    resolution_missed: bool,
    updated_at: i64,
    last_position: i64,
}

impl TableRow for ReportRecord {
    const COLUMNS: &'static [&'static str] = &[
        "community_id",
        "report_id",
        "grid_id",
        "level1_grid_id",
        "site_id",
        "site_code",
        "latitude_e6",
        "longitude_e6",
        "category",
        "state",
        "reporter_id",
        "anonymous",
        "reporter_name_hidden",
        "text_hash",
        "photos_hash",
        "photo_count",
        "hidden",
        "text_redacted",
        "photos_redacted",
        "assignee_id",
        "department_id",
        "category_department_id",
        "escalation",
        "supporters",
        "reporters",
        "reopen_count",
        "comments",
        "likely_duplicate_of",
        "merged_into",
        "submitted_at",
        "first_response_due",
        "resolution_due",
        "first_response_at",
        "resolved_at",
        "closed_at",
        "first_response_missed",
        "resolution_missed",
        "updated_at",
        "last_position",
    ];

    fn values(&self) -> Vec<&(dyn ToSql + Sync)> {
        vec![
            &self.community_id,
            &self.report_id,
            &self.grid_id,
            &self.level1_grid_id,
            &self.site_id,
            &self.site_code,
            &self.latitude_e6,
            &self.longitude_e6,
            &self.category,
            &self.state,
            &self.reporter_id,
            &self.anonymous,
            &self.reporter_name_hidden,
            &self.text_hash,
            &self.photos_hash,
            &self.photo_count,
            &self.hidden,
            &self.text_redacted,
            &self.photos_redacted,
            &self.assignee_id,
            &self.department_id,
            &self.category_department_id,
            &self.escalation,
            &self.supporters,
            &self.reporters,
            &self.reopen_count,
            &self.comments,
            &self.likely_duplicate_of,
            &self.merged_into,
            &self.submitted_at,
            &self.first_response_due,
            &self.resolution_due,
            &self.first_response_at,
            &self.resolved_at,
            &self.closed_at,
            &self.first_response_missed,
            &self.resolution_missed,
            &self.updated_at,
            &self.last_position,
        ]
    }
}

impl ReportRecord {
    fn submitted(
        community: Uuid,
        grids: &community_info::Grids,
        submission: &SubmitReport,
        position: i64,
    ) -> ReportRecord {
        let (site_id, site_code, latitude_e6, longitude_e6) = match &submission.place {
            Place::Site { site, code } => (Some(site.0), Some(code.to_string()), None, None),
            Place::Point(point) => (
                None,
                None,
                Some(point.latitude_e6()),
                Some(point.longitude_e6()),
            ),
        };
        let (reporter_id, anonymous) = match &submission.reporter {
            Reporter::Resident(person) => (Some(person.0), false),
            Reporter::Anonymous { .. } => (None, true),
        };
        let grid = submission.grid.0;
        ReportRecord {
            community_id: community,
            report_id: submission.report.0,
            grid_id: grid,
            level1_grid_id: grids.level1(grid),
            site_id,
            site_code,
            latitude_e6,
            longitude_e6,
            category: submission.category.as_str().to_string(),
            state: "submitted".into(),
            reporter_id,
            anonymous,
            reporter_name_hidden: false,
            text_hash: submission.text.as_str().to_string(),
            photos_hash: submission
                .photos
                .as_ref()
                .map(|p| p.content().as_str().to_string()),
            photo_count: submission
                .photos
                .as_ref()
                .map_or(0, |p| i32::from(p.count())),
            hidden: false,
            text_redacted: false,
            photos_redacted: false,
            assignee_id: None,
            department_id: None,
            category_department_id: submission.department.map(|d| d.0),
            escalation: "grid_worker".into(),
            supporters: 0,
            reporters: 1,
            reopen_count: 0,
            comments: 0,
            likely_duplicate_of: submission.likely_duplicate_of.map(|r| r.0),
            merged_into: None,
            submitted_at: submission.at.micros(),
            first_response_due: submission.first_response_due.micros(),
            resolution_due: submission.resolution_due.micros(),
            first_response_at: None,
            resolved_at: None,
            closed_at: None,
            first_response_missed: false,
            resolution_missed: false,
            updated_at: submission.at.micros(),
            last_position: position,
        }
    }

    fn set_state(&mut self, state: &str) {
        self.state = state.to_string();
    }

    fn first_response(&mut self, at: i64) {
        self.first_response_at.get_or_insert(at);
    }
}

/// Folds one report event into the rows; returns the statistic it adds to.
/// An event for a report without a row changes nothing.
fn fold(
    rows: &mut HashMap<Uuid, ReportRecord>,
    grids: &community_info::Grids,
    event: &RecordedEvent,
    report: Uuid,
    report_event: &ReportEvent,
) -> Option<Counter> {
    use ReportEvent::*;
    if let ReportSubmitted(submission) = report_event {
        let row = ReportRecord::submitted(
            event.community_id.as_uuid(),
            grids,
            submission,
            event.position,
        );
        rows.insert(row.report_id, row);
        return Some(Counter::Received);
    }
    if let ReportMerged { original, .. } = report_event {
        // The original counts one more reporter.
        if let Some(original) = rows.get_mut(&original.0) {
            original.reporters += 1;
        }
    }
    let row = rows.get_mut(&report)?;
    let at = event_time(report_event);
    row.updated_at = at;
    row.last_position = event.position;
    match report_event {
        ReportSubmitted(_) => None,
        ReportAccepted { .. } => {
            row.set_state("accepted");
            row.first_response(at);
            Some(Counter::Accepted)
        }
        ReportRejected { .. } => {
            row.set_state("rejected");
            row.first_response(at);
            row.closed_at = Some(at);
            None
        }
        ReportAssigned { worker, .. } => {
            row.set_state("assigned");
            row.assignee_id = Some(worker.0);
            None
        }
        ReportEscalated { department, .. } => {
            row.set_state("escalated");
            row.department_id = Some(department.0);
            Some(Counter::Escalated)
        }
        ReportWorkStarted { .. } => {
            row.set_state("in_progress");
            None
        }
        ReportResolved { .. } => {
            row.set_state("resolved");
            row.resolved_at = Some(at);
            // Resolved counts reports, not resolutions: a report resolved
            // again after a reopen was counted the first time.
            (row.reopen_count == 0).then_some(Counter::Resolved)
        }
        ReportConfirmed { .. } => {
            row.set_state("confirmed");
            None
        }
        ReportReopened { reopen_count, .. } => {
            row.set_state("in_progress");
            row.resolved_at = None;
            row.reopen_count = i32::try_from(*reopen_count).unwrap_or(i32::MAX);
            Some(Counter::Reopened)
        }
        ReportClosed { .. } => {
            row.set_state("closed");
            row.closed_at = Some(at);
            None
        }
        ReportCommented { .. } => {
            row.comments += 1;
            None
        }
        ReportClaimed { resident, .. } => {
            row.reporter_id = Some(resident.0);
            row.anonymous = false;
            None
        }
        ReportSupported { supporters, .. } => {
            row.supporters = i32::try_from(*supporters).unwrap_or(i32::MAX);
            None
        }
        ReportMerged { original, .. } => {
            row.set_state("merged");
            row.merged_into = Some(original.0);
            row.closed_at = Some(at);
            None
        }
        ReportHidden { .. } => {
            row.hidden = true;
            None
        }
        ReportUnhidden { .. } => {
            row.hidden = false;
            None
        }
        ReportTextRedacted { .. } => {
            row.text_redacted = true;
            None
        }
        ReportPhotosRedacted { .. } => {
            row.photos_redacted = true;
            None
        }
        ReporterNameHidden { .. } => {
            row.reporter_name_hidden = true;
            None
        }
        ReportDeadlineMissed {
            kind, escalated_to, ..
        } => {
            match kind {
                DeadlineKind::FirstResponse => row.first_response_missed = true,
                DeadlineKind::Resolution => row.resolution_missed = true,
            }
            row.escalation = domain::values::serialized_name(escalated_to);
            Some(Counter::Escalated)
        }
    }
}

/// One event's line of a report's timeline.
#[derive(Debug)]
struct TimelineRow {
    community_id: Uuid,
    report_id: Uuid,
    position: i64,
    event_type: String,
    actor_id: Option<Uuid>,
    actor_role: Option<String>,
    at: i64,
    detail: JsonText,
}

impl TableRow for TimelineRow {
    const COLUMNS: &'static [&'static str] = &[
        "community_id",
        "report_id",
        "position",
        "event_type",
        "actor_id",
        "actor_role",
        "at",
        "detail",
    ];

    fn values(&self) -> Vec<&(dyn ToSql + Sync)> {
        vec![
            &self.community_id,
            &self.report_id,
            &self.position,
            &self.event_type,
            &self.actor_id,
            &self.actor_role,
            &self.at,
            &self.detail,
        ]
    }
}

impl TimelineRow {
    fn of(
        event: &RecordedEvent,
        report: Uuid,
        report_event: &ReportEvent,
    ) -> Result<TimelineRow, ProjectionError> {
        let (actor_id, actor_role) = match event.metadata.get("actor_id") {
            Some(id) => (
                Uuid::parse_str(id).ok(),
                event.metadata.get("actor_role").cloned(),
            ),
            None => (None, None),
        };
        // The event's fields, without the wrapper naming its type.
        let detail = match decode::<HashMap<String, Box<RawValue>>>(event) {
            Ok(mut wrapper) if wrapper.len() == 1 => {
                wrapper.remove(&event.event_type).unwrap_or_default()
            }
            _ => event.payload.clone(),
        };
        Ok(TimelineRow {
            community_id: event.community_id.as_uuid(),
            report_id: report,
            position: event.position,
            event_type: event.event_type.clone(),
            actor_id,
            actor_role,
            at: event_time(report_event),
            detail: Json(detail),
        })
    }
}

/// One addition to `report_statistics`, in the month of `at`.
#[derive(Debug)]
struct Count {
    at: i64,
    category: String,
    received: i32,
    accepted: i32,
    resolved: i32,
    escalated: i32,
    reopened: i32,
}

impl Count {
    fn new(row: &ReportRecord, counter: Counter, at: i64) -> Count {
        let mut count = Count {
            at,
            category: row.category.clone(),
            received: 0,
            accepted: 0,
            resolved: 0,
            escalated: 0,
            reopened: 0,
        };
        *match counter {
            Counter::Received => &mut count.received,
            Counter::Accepted => &mut count.accepted,
            Counter::Resolved => &mut count.resolved,
            Counter::Escalated => &mut count.escalated,
            Counter::Reopened => &mut count.reopened,
        } = 1;
        count
    }
}

/// Adds a batch's counts to the statistics, one row per month and category.
async fn add_counts(
    transaction: &Transaction<'_>,
    schema: &str,
    community: Uuid,
    counts: &[Count],
) -> Result<(), ProjectionError> {
    if counts.is_empty() {
        return Ok(());
    }
    let sql = format!(
        "INSERT INTO {schema}.report_statistics (community_id, month, category, received, \
         accepted, resolved, escalated, reopened) \
         SELECT $1, {month}, category, sum(received), sum(accepted), sum(resolved), \
             sum(escalated), sum(reopened) \
         FROM unnest($2::bigint[], $3::text[], $4::integer[], $5::integer[], $6::integer[], \
             $7::integer[], $8::integer[]) \
             AS d(at, category, received, accepted, resolved, escalated, reopened) \
         GROUP BY 2, 3 \
         ON CONFLICT (community_id, month, category) DO UPDATE SET \
             received = {schema}.report_statistics.received + excluded.received, \
             accepted = {schema}.report_statistics.accepted + excluded.accepted, \
             resolved = {schema}.report_statistics.resolved + excluded.resolved, \
             escalated = {schema}.report_statistics.escalated + excluded.escalated, \
             reopened = {schema}.report_statistics.reopened + excluded.reopened",
        month = month_of(schema, "d.at"),
    );
    execute(
        transaction,
        &sql,
        &[
            &community,
            &column(counts, |c| c.at),
            &column(counts, |c| c.category.as_str()),
            &column(counts, |c| c.received),
            &column(counts, |c| c.accepted),
            &column(counts, |c| c.resolved),
            &column(counts, |c| c.escalated),
            &column(counts, |c| c.reopened),
        ],
    )
    .await?;
    Ok(())
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

pub use lookups::*;
pub use open_index::*;
pub use queries::*;
mod ledger;
mod lookups;
mod open_index;
mod queries;
