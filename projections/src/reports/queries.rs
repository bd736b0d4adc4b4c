//! Reads of the reports read model.

use std::collections::HashMap;
use std::sync::Arc;

use deadpool_postgres::{GenericClient, Pool};
use domain::report::DeadlineKind;
use store::{CommunityId, EventStore};
use tokio_postgres::Row;
use uuid::Uuid;

use super::lookups::{OpenReportLookups, OpenReportsAsked};
use super::NAME;
use crate::cache::{Answer, Question, ReadCache};
use crate::error::ProjectionError;
use crate::generation::reading_schema;
use crate::sql::{query, query_generic};

/// The type of a report's first event (`domain::report::ReportEvent`), as
/// the log names it.
pub(super) const SUBMITTED: &str = "ReportSubmitted";
/// The states of an open report (`ReportState::OPEN`), as SQL.
pub(super) const OPEN_STATES: &str =
    "('submitted', 'accepted', 'assigned', 'escalated', 'in_progress')";

/// A report in `state` waits for work: the states of [`OPEN_STATES`].
pub(crate) fn is_open_state(state: &str) -> bool {
    matches!(
        state,
        "submitted" | "accepted" | "assigned" | "escalated" | "in_progress"
    )
}

/// SQL: the report `r` is overdue at the time in parameter `$n`; the same
/// rule as [`ReportRow::is_overdue`].
fn overdue_sql(n: usize) -> String {
    format!(
        "((r.state = 'submitted' AND r.first_response_due <= ${n}) OR \
          (r.state IN {OPEN_STATES} AND r.resolution_due <= ${n}))"
    )
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReportRow {
    pub community_id: Uuid,
    pub report_id: Uuid,
    pub grid_id: Uuid,
    pub level1_grid_id: Uuid,
    pub site_id: Option<Uuid>,
    pub site_code: Option<String>,
    pub latitude_e6: Option<i32>,
    pub longitude_e6: Option<i32>,
    pub category: String,
    pub state: String,
    pub reporter_id: Option<Uuid>,
    pub anonymous: bool,
    pub reporter_name_hidden: bool,
    pub text_hash: String,
    pub photos_hash: Option<String>,
    pub photo_count: i32,
    pub hidden: bool,
    pub text_redacted: bool,
    pub photos_redacted: bool,
    pub assignee_id: Option<Uuid>,
    pub department_id: Option<Uuid>,
    pub category_department_id: Option<Uuid>,
    pub escalation: String,
    pub supporters: i32,
    pub reporters: i32,
    pub reopen_count: i32,
    pub comments: i32,
    pub likely_duplicate_of: Option<Uuid>,
    pub merged_into: Option<Uuid>,
    pub submitted_at: i64,
    pub first_response_due: i64,
    pub resolution_due: i64,
    pub first_response_at: Option<i64>,
    pub resolved_at: Option<i64>,
    pub closed_at: Option<i64>,
    pub first_response_missed: bool,
    pub resolution_missed: bool,
    pub updated_at: i64,
    pub last_position: i64,
}

const REPORT_COLUMNS: &str = "r.community_id, r.report_id, r.grid_id, r.level1_grid_id, \
    r.site_id, r.site_code, r.latitude_e6, r.longitude_e6, r.category, r.state, r.reporter_id, \
    r.anonymous, r.reporter_name_hidden, r.text_hash, r.photos_hash, r.photo_count, r.hidden, \
    r.text_redacted, r.photos_redacted, r.assignee_id, r.department_id, \
    r.category_department_id, r.escalation, r.supporters, r.reporters, r.reopen_count, \
    r.comments, r.likely_duplicate_of, r.merged_into, r.submitted_at, r.first_response_due, \
    r.resolution_due, r.first_response_at, r.resolved_at, r.closed_at, \
    r.first_response_missed, r.resolution_missed, r.updated_at, r.last_position";

impl ReportRow {
    fn from_row(row: &Row) -> Self {
        ReportRow {
            community_id: row.get(0),
            report_id: row.get(1),
            grid_id: row.get(2),
            level1_grid_id: row.get(3),
            site_id: row.get(4),
            site_code: row.get(5),
            latitude_e6: row.get(6),
            longitude_e6: row.get(7),
            category: row.get(8),
            state: row.get(9),
            reporter_id: row.get(10),
            anonymous: row.get(11),
            reporter_name_hidden: row.get(12),
            text_hash: row.get(13),
            photos_hash: row.get(14),
            photo_count: row.get(15),
            hidden: row.get(16),
            text_redacted: row.get(17),
            photos_redacted: row.get(18),
            assignee_id: row.get(19),
            department_id: row.get(20),
            category_department_id: row.get(21),
            escalation: row.get(22),
            supporters: row.get(23),
            reporters: row.get(24),
            reopen_count: row.get(25),
            comments: row.get(26),
            likely_duplicate_of: row.get(27),
            merged_into: row.get(28),
            submitted_at: row.get(29),
            first_response_due: row.get(30),
            resolution_due: row.get(31),
            first_response_at: row.get(32),
            resolved_at: row.get(33),
            closed_at: row.get(34),
            first_response_missed: row.get(35),
            resolution_missed: row.get(36),
            updated_at: row.get(37),
            last_position: row.get(38),
        }
    }

    /// Open: waiting for work (`ReportState::OPEN`).
    pub fn is_open(&self) -> bool {
        is_open_state(&self.state)
    }

    /// Past a deadline it still waits for at `now`; the same rule as
    /// `overdue_sql`.
    pub fn is_overdue(&self, now: i64) -> bool {
        let waits_for_resolution = self.is_open();
        (self.state == "submitted" && self.first_response_due <= now)
            || (waits_for_resolution && self.resolution_due <= now)
    }
}

/// Which reports a list shows. `None` means "any".
#[derive(Clone, Debug, Default)]
pub struct ReportFilter {
    pub community: Option<CommunityId>,
    /// A grid: reports in it or, for a level 1 grid, in the grids inside it.
    pub grid: Option<Uuid>,
    pub site: Option<Uuid>,
    pub category: Option<String>,
    pub states: Option<Vec<String>>,
    pub reporter: Option<Uuid>,
    pub assignee: Option<Uuid>,
    pub department: Option<Uuid>,
    /// Submitted at or after, in microseconds.
    pub submitted_from: Option<i64>,
    /// Submitted before, in microseconds.
    pub submitted_before: Option<i64>,
    /// Only reports overdue at this time.
    pub overdue_at: Option<i64>,
    /// Hidden reports are shown only when this is true, or to their reporter.
    pub include_hidden: bool,
    pub hidden_visible_to: Option<Uuid>,
}

/// Where a page of the newest-first list starts (after this report).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReportCursor {
    pub submitted_at: i64,
    pub report_id: Uuid,
}

/// A page of a community's reports, newest first, after `after`, as fresh
/// as `at_least`; kept while it holds, unless it asks for what is overdue
/// (which changes with every moment).
pub async fn list_reports(
    reads: &ReadCache,
    community: CommunityId,
    filter: &ReportFilter,
    after: Option<ReportCursor>,
    limit: i64,
    at_least: Option<i64>,
) -> Result<Arc<Vec<ReportRow>>, ProjectionError> {
    let filter = ReportFilter {
        community: Some(community),
        ..filter.clone()
    };
    // Every field of the filter (the caller's own id among them, for
    // hidden reports), the cursor and the limit change the answer.
    let question = Question::new(
        NAME,
        community,
        format!("list_reports {filter:?} {after:?} {limit}"),
    );
    let moment = filter.overdue_at.unwrap_or(0);
    reads
        .read(question, moment, at_least, &[], async |client| {
            let rows = list_reports_in(client, &filter, after, limit).await?;
            let count = rows.len();
            Ok(match filter.overdue_at {
                Some(now) => Answer {
                    value: rows,
                    rows: count,
                    holds_at: now..now,
                },
                None => Answer::timeless(rows, count),
            })
        })
        .await
}

/// [`list_reports`] on `client`, never kept.
pub async fn list_reports_in(
    client: &impl GenericClient,
    filter: &ReportFilter,
    after: Option<ReportCursor>,
    limit: i64,
) -> Result<Vec<ReportRow>, ProjectionError> {
    let schema = reading_schema(NAME);
    let community = filter.community.map(|c| c.as_uuid());
    let sql = format!(
        "SELECT {REPORT_COLUMNS} FROM {schema}.reports r WHERE \
         ($1::uuid IS NULL OR r.community_id = $1) \
         AND ($2::uuid IS NULL OR r.grid_id = $2 OR r.level1_grid_id = $2) \
         AND ($3::uuid IS NULL OR r.site_id = $3) \
         AND ($4::text IS NULL OR r.category = $4) \
         AND ($5::text[] IS NULL OR r.state = ANY($5)) \
         AND ($6::uuid IS NULL OR r.reporter_id = $6) \
         AND ($7::bigint IS NULL OR r.submitted_at >= $7) \
         AND ($8::bigint IS NULL OR r.submitted_at < $8) \
         AND ($9::bigint IS NULL OR {overdue}) \
         AND (NOT r.hidden OR $10 OR r.reporter_id = $11) \
         AND ($12::bigint IS NULL OR (r.submitted_at, r.report_id) < ($12, $13::uuid)) \
         AND ($14::uuid IS NULL OR r.assignee_id = $14) \
         AND ($15::uuid IS NULL OR r.department_id = $15) \
         ORDER BY r.submitted_at DESC, r.report_id DESC LIMIT $16",
        overdue = overdue_sql(9),
    );
    let rows = query(
        client,
        &sql,
        &[
            &community,
            &filter.grid,
            &filter.site,
            &filter.category,
            &filter.states,
            &filter.reporter,
            &filter.submitted_from,
            &filter.submitted_before,
            &filter.overdue_at,
            &filter.include_hidden,
            &filter.hidden_visible_to,
            &after.map(|a| a.submitted_at),
            &after.map(|a| a.report_id),
            &filter.assignee,
            &filter.department,
            &limit,
        ],
    )
    .await?;
    Ok(rows.iter().map(ReportRow::from_row).collect())
}

pub async fn report(
    pool: &Pool,
    community: CommunityId,
    report: Uuid,
) -> Result<Option<ReportRow>, ProjectionError> {
    let schema = reading_schema(NAME);
    let sql = format!(
        "SELECT {REPORT_COLUMNS} FROM {schema}.reports r \
         WHERE r.community_id = $1 AND r.report_id = $2"
    );
    let client = pool.get().await?;
    let rows = query(&client, &sql, &[&community.as_uuid(), &report]).await?;
    Ok(rows.first().map(ReportRow::from_row))
}

/// One step in a report's history.
#[derive(Clone, Debug, PartialEq)]
pub struct TimelineEntry {
    pub position: i64,
    pub event_type: String,
    pub actor_id: Option<Uuid>,
    pub actor_role: Option<String>,
    pub at: i64,
    /// The event's fields as stored (content appears as hashes).
    pub detail: serde_json::Value,
}

pub async fn timeline(
    pool: &Pool,
    community: CommunityId,
    report: Uuid,
) -> Result<Vec<TimelineEntry>, ProjectionError> {
    let schema = reading_schema(NAME);
    let sql = format!(
        "SELECT position, event_type, actor_id, actor_role, at, detail \
         FROM {schema}.report_timeline WHERE community_id = $1 AND report_id = $2 \
         ORDER BY position LIMIT 10000"
    );
    let client = pool.get().await?;
    let rows = query(&client, &sql, &[&community.as_uuid(), &report]).await?;
    Ok(rows
        .iter()
        .map(|row| TimelineEntry {
            position: row.get(0),
            event_type: row.get(1),
            actor_id: row.get(2),
            actor_role: row.get(3),
            at: row.get(4),
            detail: row.get(5),
        })
        .collect())
}

/// A grid's problem ledger.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GridLedger {
    pub grid_id: Uuid,
    pub parent_id: Option<Uuid>,
    pub name: String,
    pub open: i64,
    pub overdue: i64,
    pub resolved_this_month: i64,
    /// Median time from submission to first response, in microseconds.
    pub median_first_response_us: Option<i64>,
    pub median_resolution_us: Option<i64>,
}

/// The ledgers of a community's grids (or one grid) as of `now`, as fresh
/// as `at_least`; kept until a deadline passes or the month turns.
pub async fn grid_ledgers(
    reads: &ReadCache,
    community: CommunityId,
    grid: Option<Uuid>,
    now: i64,
    at_least: Option<i64>,
) -> Result<Arc<Vec<GridLedger>>, ProjectionError> {
    let question = Question::new(NAME, community, format!("grid_ledgers {grid:?}"));
    reads
        .read(question, now, at_least, &[], async |client| {
            grid_ledgers_in(client, community, grid, now).await
        })
        .await
}

/// [`grid_ledgers`] on `client`, with the moments it holds for: from `now`
/// until the next deadline of the grids' open reports passes (`overdue`
/// grows) or the month in the community's calendar turns
/// (`resolvedThisMonth` starts again).
pub async fn grid_ledgers_in(
    client: &impl GenericClient,
    community: CommunityId,
    grid: Option<Uuid>,
    now: i64,
) -> Result<Answer<Vec<GridLedger>>, ProjectionError> {
    let schema = reading_schema(NAME);
    // Open reports, the medians and the moments are the fold's
    // (reports/ledger.rs): what is overdue now and what was resolved this
    // month are ranges of a grid's moments, so a read looks at those
    // reports only, never at the whole history. A report's moments are
    // kept in its grid and, apart, in the level 1 grid above it.
    let counted = |kind: i16, condition: &str| {
        format!(
            "(SELECT count(*) FROM {schema}.grid_moments m WHERE m.community_id = $1 \
                 AND m.grid_id = g.grid_id AND m.kind = {kind} AND m.at {condition})"
        )
    };
    let sql = format!(
        "WITH month AS (SELECT date_trunc('month', \
             to_timestamp($3::bigint / 1000000.0) AT TIME ZONE c.time_zone) AS start, \
             c.time_zone FROM {schema}.communities c WHERE c.community_id = $1), \
         month_start AS (SELECT (extract(epoch FROM start AT TIME ZONE time_zone) \
             * 1000000)::bigint AS at, (extract(epoch FROM (start + interval '1 month') \
             AT TIME ZONE time_zone) * 1000000)::bigint AS next FROM month) \
         SELECT g.grid_id, g.parent_id, g.name, coalesce(l.open, 0), {overdue}, {resolved}, \
             first_response.median_us, resolution.median_us, \
             (SELECT min(m.at) FROM {schema}.grid_moments m WHERE m.community_id = $1 \
                 AND m.grid_id = g.grid_id AND m.kind = 0 AND m.at > $3), \
             (SELECT next FROM month_start) \
         FROM {schema}.grids g \
         LEFT JOIN {schema}.grid_ledgers l \
             ON l.community_id = $1 AND l.grid_id = g.grid_id \
         LEFT JOIN {schema}.grid_medians first_response ON first_response.community_id = $1 \
             AND first_response.grid_id = g.grid_id AND first_response.kind = 0 \
         LEFT JOIN {schema}.grid_medians resolution ON resolution.community_id = $1 \
             AND resolution.grid_id = g.grid_id AND resolution.kind = 1 \
         WHERE g.community_id = $1 AND ($2::uuid IS NULL OR g.grid_id = $2) \
         ORDER BY g.name, g.grid_id",
        overdue = counted(0, "<= $3"),
        resolved = counted(1, ">= (SELECT at FROM month_start)"),
    );
    let rows = query(client, &sql, &[&community.as_uuid(), &grid, &now]).await?;
    let mut until = i64::MAX;
    for row in &rows {
        let next_deadline: Option<i64> = row.get(8);
        let next_month: Option<i64> = row.get(9);
        until = next_deadline
            .into_iter()
            .chain(next_month)
            .fold(until, i64::min);
    }
    let ledgers: Vec<GridLedger> = rows
        .iter()
        .map(|row| GridLedger {
            grid_id: row.get(0),
            parent_id: row.get(1),
            name: row.get(2),
            open: row.get(3),
            overdue: row.get(4),
            resolved_this_month: row.get(5),
            median_first_response_us: row.get(6),
            median_resolution_us: row.get(7),
        })
        .collect();
    let count = ledgers.len();
    Ok(Answer {
        value: ledgers,
        rows: count,
        holds_at: now..until.max(now),
    })
}

/// Counts of one category in one month of the community's calendar.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CategoryMonth {
    pub month: String,
    pub category: String,
    pub received: i32,
    pub accepted: i32,
    pub resolved: i32,
    pub escalated: i32,
    pub reopened: i32,
}

/// Statistics per category and month, months `from..=to` (`YYYY-MM`), as
/// fresh as `at_least`.
pub async fn statistics(
    reads: &ReadCache,
    community: CommunityId,
    from_month: Option<&str>,
    to_month: Option<&str>,
    at_least: Option<i64>,
) -> Result<Arc<Vec<CategoryMonth>>, ProjectionError> {
    let schema = reading_schema(NAME);
    let question = Question::new(
        NAME,
        community,
        format!("statistics {from_month:?} {to_month:?}"),
    );
    reads
        .read(question, 0, at_least, &[], async |client| {
            let rows = statistics_in(client, &schema, community, from_month, to_month).await?;
            let count = rows.len();
            Ok(Answer::timeless(rows, count))
        })
        .await
}

/// `statistics` from the read model in `schema` (a replay's).
pub async fn statistics_in(
    client: &impl GenericClient,
    schema: &str,
    community: CommunityId,
    from_month: Option<&str>,
    to_month: Option<&str>,
) -> Result<Vec<CategoryMonth>, ProjectionError> {
    let sql = format!(
        "SELECT month, category, received, accepted, resolved, escalated, reopened \
         FROM {schema}.report_statistics WHERE community_id = $1 \
         AND ($2::text IS NULL OR month >= $2) AND ($3::text IS NULL OR month <= $3) \
         ORDER BY month, category LIMIT 10000"
    );
    let rows = query(
        client,
        &sql,
        &[&community.as_uuid(), &from_month, &to_month],
    )
    .await?;
    Ok(rows
        .iter()
        .map(|row| CategoryMonth {
            month: row.get(0),
            category: row.get(1),
            received: row.get(2),
            accepted: row.get(3),
            resolved: row.get(4),
            escalated: row.get(5),
            reopened: row.get(6),
        })
        .collect())
}

/// Open reports whose deadline has passed at `now` and is not yet recorded
/// as missed, oldest deadline first.
pub async fn missed_deadlines(
    pool: &Pool,
    community: CommunityId,
    now: i64,
    limit: i64,
) -> Result<Vec<(Uuid, DeadlineKind)>, ProjectionError> {
    let schema = reading_schema(NAME);
    let sql = format!(
        "SELECT report_id, 'first_response' AS kind, first_response_due AS due \
             FROM {schema}.reports WHERE community_id = $1 AND state = 'submitted' \
             AND first_response_due <= $2 AND NOT first_response_missed \
         UNION ALL \
         SELECT report_id, 'resolution', resolution_due FROM {schema}.reports \
             WHERE community_id = $1 \
             AND state NOT IN ('resolved', 'confirmed', 'rejected', 'closed', 'merged') \
             AND resolution_due <= $2 AND NOT resolution_missed \
         ORDER BY due LIMIT $3"
    );
    let client = pool.get().await?;
    let rows = query(&client, &sql, &[&community.as_uuid(), &now, &limit]).await?;
    Ok(rows
        .iter()
        .map(|row| {
            let kind: &str = row.get(1);
            let kind = if kind == "first_response" {
                DeadlineKind::FirstResponse
            } else {
                DeadlineKind::Resolution
            };
            (row.get(0), kind)
        })
        .collect())
}

/// What a new report at a site in a category may duplicate, from one
/// snapshot of the read model and of the log's tail after it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct DuplicateCandidates {
    /// The position the read model had folded.
    pub folded: i64,
    /// Reports open there as of `folded`, newest first, each with whether
    /// its stream has events after `folded` (then its state now is its
    /// stream's to tell).
    pub open_then: Vec<(Uuid, bool)>,
    /// Submissions there recorded after `folded` (among the log's last
    /// `tail_window` events), oldest first: each event's payload and its
    /// report stream's version now (1: nothing happened to it since).
    pub newer: Vec<(serde_json::Value, i64)>,
}

/// The newest open reports (at most `limit`) at `site` in `category`
/// submitted at or after `since`, as the read model has them, and the
/// submissions there it has not folded yet, read from the log's tail (at
/// most `tail_window` events back from the head): a new report there is
/// likely a duplicate of one of them. One statement, so one snapshot:
/// whatever the model's rows miss lies in the tail, and each candidate
/// comes with what its stream did after the model folded it, so a caller
/// reads a stream only when it changed. The tail is read through the
/// index of submissions by site (`events_report_submissions_by_site`), so
/// its cost is the site's own recent filings, not the tail's length; a
/// candidate moved when its stream's last event lies past the checkpoint,
/// one row read backwards through the stream index (a plan that cannot
/// turn into a scan of the log when the table's statistics are stale).
pub async fn duplicate_candidates(
    pool: &Pool,
    community: CommunityId,
    site: Uuid,
    category: &str,
    since: i64,
    limit: i64,
    tail_window: i64,
) -> Result<DuplicateCandidates, ProjectionError> {
    let schema = reading_schema(NAME);
    // The payloads a submission at this site in this category holds, as
    // the report's events are written (`domain::report::ReportEvent`).
    let submitted_here = serde_json::json!({"ReportSubmitted": {
        "place": {"site": {"site": site}}, "category": category}});
    let sql = format!(
        "{}, \
         newer AS (SELECT e.position, e.stream_id, e.payload FROM events e \
                 WHERE e.community_id = $1 \
                 AND e.position > greatest((SELECT position FROM folded), \
                     (SELECT last_position FROM community_heads WHERE community_id = $1) - $7) \
                 AND e.event_type = 'ReportSubmitted' \
                 AND e.payload #>> '{{ReportSubmitted,place,site,site}}' = $2::text \
                 AND e.payload @> $8 \
                 ORDER BY e.position LIMIT $7), \
         found AS (\
             SELECT 1 AS source, o.submitted_at AS seen, o.report_id, NULL::jsonb AS payload, \
                 coalesce((SELECT m.position FROM events m WHERE m.community_id = $1 \
                     AND m.stream_id = $9 || o.report_id::text \
                     ORDER BY m.stream_version DESC LIMIT 1), 0) \
                     > (SELECT position FROM folded) AS moved, \
                 NULL::bigint AS version \
             FROM open_then o \
             UNION ALL \
             SELECT 2, n.position, NULL, n.payload, NULL, \
                 (SELECT max(v.stream_version) FROM events v \
                     WHERE v.community_id = $1 AND v.stream_id = n.stream_id) \
             FROM newer n) \
         SELECT f.position, x.source, x.report_id, x.payload, x.moved, x.version \
         FROM folded f LEFT JOIN found x ON true ORDER BY x.source, x.seen",
        folded_and_open_then(&schema)
    );
    let rows = query_generic(
        pool,
        &sql,
        &[
            &community.as_uuid(),
            &site,
            &category,
            &since,
            &limit,
            &NAME,
            &tail_window,
            &tokio_postgres::types::Json(&submitted_here),
            &domain::streams::REPORT_PREFIX,
        ],
    )
    .await?;
    let mut candidates = DuplicateCandidates::default();
    for row in &rows {
        candidates.folded = row.get(0);
        match row.get::<_, Option<i32>>(1) {
            Some(1) => candidates.open_then.push((row.get(2), row.get(4))),
            Some(_) => {
                let payload: tokio_postgres::types::Json<serde_json::Value> = row.get(3);
                candidates.newer.push((payload.0, row.get(5)));
            }
            None => {}
        }
    }
    // Newest first: the rows come oldest first within each source.
    candidates.open_then.reverse();
    Ok(candidates)
}

/// The reports model's live checkpoint in the community `$1` as the
/// query `folded` (one row), the projection's name given as `name` (a
/// parameter such as `$6`).
pub(super) fn folded_checkpoint(name: &str) -> String {
    format!(
        "folded AS (SELECT coalesce((SELECT c.position FROM projection_checkpoints c \
             JOIN projection_generations g USING (projection, generation) \
             WHERE c.projection = {name} AND g.state = 'live' AND c.community_id = $1), 0) \
             AS position)"
    )
}

/// The first statement's common part, the read model's checkpoint
/// (`folded`) and the open reports it holds at a site in a category
/// (`open_then`): parameters $1 community, $2 site, $3 category, $4
/// submitted since, $5 at most, $6 the projection's name.
fn folded_and_open_then(schema: &str) -> String {
    format!(
        "WITH {}, \
         open_then AS (SELECT report_id, submitted_at FROM {schema}.reports \
                 WHERE community_id = $1 AND site_id = $2 AND category = $3 \
                 AND submitted_at >= $4 AND state IN {OPEN_STATES} \
                 ORDER BY submitted_at DESC LIMIT $5)",
        folded_checkpoint("$6")
    )
}

/// The duplicate candidates as a filing needs them: from memory where
/// [`duplicate_candidates_in_memory`] can answer, from the log otherwise
/// ([`duplicate_candidates`], among its last `tail_window` events).
pub async fn likely_duplicate_candidates(
    store: &EventStore,
    lookups: &OpenReportLookups,
    community: CommunityId,
    asked: &OpenReportsAsked,
    tail_window: i64,
) -> Result<DuplicateCandidates, ProjectionError> {
    match duplicate_candidates_in_memory(store, lookups, community, asked).await? {
        Some(found) => Ok(found),
        None => {
            duplicate_candidates(
                store.pool(),
                community,
                asked.site,
                &asked.category,
                asked.since,
                asked.limit,
                tail_window,
            )
            .await
        }
    }
}

/// [`duplicate_candidates`] with the log after the read model's checkpoint
/// read from this process's memory ([`EventStore::visit_tail_after`])
/// instead of from PostgreSQL: the reports the model holds open, then the
/// submissions at the site among the events this process committed after
/// the checkpoint, and how far each candidate's stream moved since.
/// `None` when memory does not hold every event after the checkpoint (read
/// the log). Only what another process committed since this one last
/// wrote is missed, as a submission still on its way would be; the events
/// of the site's own recent submissions no longer cost a read of the log.
pub async fn duplicate_candidates_in_memory(
    store: &EventStore,
    lookups: &OpenReportLookups,
    community: CommunityId,
    asked: &OpenReportsAsked,
) -> Result<Option<DuplicateCandidates>, ProjectionError> {
    let (site, category) = (asked.site, asked.category.as_str());
    let (folded, open) = lookups
        .open_reports(store.pool(), community, asked.clone())
        .await?;
    // Each candidate's stream and its version now: events after the
    // checkpoint are counted on the version the model knew (0 for a report
    // the checkpoint does not know of; for one it holds, only whether it
    // moved matters).
    let open: Vec<(Uuid, String)> = open
        .into_iter()
        .map(|report| (report, domain::streams::report(report)))
        .collect();
    let mut streams: HashMap<String, i64> =
        open.iter().map(|(_, stream)| (stream.clone(), 0)).collect();
    let site_text = site.to_string();
    let at_site = memchr::memmem::Finder::new(site_text.as_bytes());
    let mut submitted = Vec::new();
    let held = store.visit_tail_after(community, folded, |event| {
        if let Some(version) = streams.get_mut(&event.stream_id) {
            *version += 1;
        } else if event.event_type == SUBMITTED
            && at_site.find(event.payload.get().as_bytes()).is_some()
        {
            submitted.push((
                event.position,
                event.stream_id.clone(),
                event.payload.get().to_string(),
            ));
            streams.insert(event.stream_id.clone(), 1);
        }
    });
    if !held {
        return Ok(None);
    }
    let mut newer = Vec::with_capacity(submitted.len());
    for (position, stream, payload) in submitted {
        let payload: serde_json::Value =
            serde_json::from_str(&payload).map_err(|e| ProjectionError::Undecodable {
                position,
                reason: e.to_string(),
            })?;
        // The text held the site; its place must be the site itself.
        let place = &payload[SUBMITTED]["place"]["site"]["site"];
        let category_held = &payload[SUBMITTED]["category"];
        if place.as_str() == Some(site_text.as_str()) && category_held.as_str() == Some(category) {
            newer.push((payload, streams.get(&stream).copied().unwrap_or(1)));
        }
    }
    let open_then = open
        .into_iter()
        .map(|(report, stream)| (report, streams.get(&stream).is_some_and(|after| *after > 0)))
        .collect();
    Ok(Some(DuplicateCandidates {
        folded,
        open_then,
        newer,
    }))
}

/// A grid on the "cleanest street" board for a stretch of time.
#[derive(Clone, Debug, PartialEq)]
pub struct GridStanding {
    pub grid_id: Uuid,
    pub name: String,
    /// Reports received in the period that were accepted (not rejected or
    /// merged into another).
    pub received: i64,
    pub resolved: i64,
    /// Resolved over received, 0 to 1; none without reports.
    pub resolution_rate: Option<f64>,
    pub median_resolution_us: Option<i64>,
    /// 1 + grids ranked above: by rate, then by median time.
    pub rank: i64,
}

/// Grids ranked by how much of what they received in the period they
/// resolved, then by how fast (the median), for `period` = `all`, `month`
/// or `week` holding the moment `at`, in the community's time zone.
pub async fn grid_standings(
    pool: &Pool,
    community: CommunityId,
    period: &str,
    at: i64,
) -> Result<Vec<GridStanding>, ProjectionError> {
    let schema = reading_schema(NAME);
    let local = "to_timestamp({t}::bigint / 1000000.0) AT TIME ZONE coalesce((SELECT time_zone \
                 FROM {schema}.communities WHERE community_id = $1), 'Asia/Shanghai')";
    let local = |t: &str| local.replace("{t}", t).replace("{schema}", &schema);
    let in_period = format!(
        "($2 = 'all' OR date_trunc(CASE $2 WHEN 'month' THEN 'month' ELSE 'week' END, {}) \
         = date_trunc(CASE $2 WHEN 'month' THEN 'month' ELSE 'week' END, {}))",
        local("r.submitted_at"),
        local("$3")
    );
    let sql = format!(
        "WITH standing AS (SELECT g.grid_id, g.name, count(r.report_id) AS received, \
             count(r.resolved_at) AS resolved, \
             (percentile_cont(0.5) WITHIN GROUP (ORDER BY r.resolved_at - r.submitted_at))::bigint \
                 AS median \
         FROM {schema}.grids g LEFT JOIN {schema}.reports r ON r.community_id = g.community_id \
             AND (r.grid_id = g.grid_id OR r.level1_grid_id = g.grid_id) \
             AND r.state NOT IN ('submitted', 'rejected', 'merged') AND {in_period} \
         WHERE g.community_id = $1 GROUP BY g.grid_id, g.name) \
         SELECT grid_id, name, received, resolved, \
             CASE WHEN received > 0 THEN resolved::float8 / received END AS rate, median, \
             rank() OVER (ORDER BY CASE WHEN received > 0 THEN resolved::float8 / received END \
                 DESC NULLS LAST, median ASC NULLS LAST) \
         FROM standing ORDER BY 7, name, grid_id"
    );
    let client = pool.get().await?;
    let rows = query(&client, &sql, &[&community.as_uuid(), &period, &at]).await?;
    Ok(rows
        .iter()
        .map(|row| GridStanding {
            grid_id: row.get(0),
            name: row.get(1),
            received: row.get(2),
            resolved: row.get(3),
            resolution_rate: row.get(4),
            median_resolution_us: row.get(5),
            rank: row.get(6),
        })
        .collect())
}

#[cfg(test)]
mod open_states {
    #[test]
    fn the_sql_open_states_are_the_domains() {
        let names: Vec<String> = domain::report::ReportState::OPEN
            .iter()
            .map(|state| format!("'{}'", state.serialized()))
            .collect();
        assert_eq!(super::OPEN_STATES, format!("({})", names.join(", ")));
    }

    #[test]
    fn the_open_reports_index_has_the_lookups_predicate() {
        let predicate = format!("WHERE state IN {};", super::OPEN_STATES);
        assert!(
            super::super::TABLES_SQL.contains(&predicate),
            "the partial index's predicate is not {predicate}"
        );
    }
}
