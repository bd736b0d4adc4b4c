//! Leaderboards of residents, per community and per grid, for all time, the
//! calendar month and the ISO week in the community's time zone: by points
//! earned (not balance), accepted reports, adopted suggestions and volunteer
//! hours.
//!
//! Each score lives in `scores`, indexed in board order, so the top N is an
//! index range. "My rank" is the competition rank (1 + residents with a
//! higher score; tied residents share it): `score_counts` keeps how many
//! residents hold each score, so a rank sums over distinct scores above
//! (few) instead of counting residents (many). Ties are listed by who
//! reached the score first, then by id, so the order is deterministic.

use domain::streams::StreamKind;
use std::collections::{HashMap, HashSet};
use std::ops::Range;
use std::sync::Arc;

use async_trait::async_trait;
use deadpool_postgres::{GenericClient, Pool, Transaction};
use domain::community::{CommunityEvent, DEFAULT_TIME_ZONE};
use domain::points::{GrantSource, WalletEvent};
use domain::report::{ReportEvent, Reporter};
use domain::suggestion::{Outcome, SuggestionEvent};
use domain::values::Timestamp;
use rust_decimal::Decimal;
use serde::Deserialize;
use store::{CommunityId, RecordedEvent};
use tokio_postgres::types::ToSql;
use uuid::Uuid;

use crate::cache::{Answer, Question, ReadCache};
use crate::community_info::{self, Grids};
use crate::error::ProjectionError;
use crate::generation::reading_schema;
use crate::runner::{decode, entity_id, Change};
use crate::sql::{
    column, delete_probed, execute, insert_rows, load_rows, query, replace_rows, Loaded, TableRow,
};
use crate::Projection;

mod fill;

pub const NAME: &str = "leaderboards";

pub struct LeaderboardsProjection;

/// What residents are ranked by.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Metric {
    Points,
    AcceptedReports,
    AdoptedSuggestions,
    VolunteerHours,
}

impl Metric {
    pub fn key(self) -> &'static str {
        match self {
            Metric::Points => "points",
            Metric::AcceptedReports => "accepted_reports",
            Metric::AdoptedSuggestions => "adopted_suggestions",
            Metric::VolunteerHours => "volunteer_hours",
        }
    }
}

/// Which stretch of time a board covers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Period {
    AllTime,
    /// The calendar month holding a moment.
    Month(i64),
    /// The ISO week holding a moment.
    Week(i64),
}

impl Period {
    fn kind_and_at(self) -> (&'static str, i64) {
        match self {
            Period::AllTime => ("all", 0),
            Period::Month(at) => ("month", at),
            Period::Week(at) => ("week", at),
        }
    }
}

const TABLES_SQL: &str = "
CREATE TABLE {schema}.scores (
    community_id uuid NOT NULL,
    metric text NOT NULL,
    scope text NOT NULL,
    period text NOT NULL,
    resident_id uuid NOT NULL,
    score numeric NOT NULL,
    reached_position bigint NOT NULL
);
-- The key, as an index a generation filled from zero makes once filled.
-- Covering: one resident's score is an index-only lookup, which the
-- planner then prefers to a range of the board-order index.
CREATE UNIQUE INDEX scores_by_resident ON {schema}.scores
    (community_id, metric, scope, period, resident_id) INCLUDE (score);
CREATE INDEX scores_in_board_order ON {schema}.scores
    (community_id, metric, scope, period, score DESC, reached_position, resident_id);
CREATE TABLE {schema}.score_counts (
    community_id uuid NOT NULL,
    metric text NOT NULL,
    scope text NOT NULL,
    period text NOT NULL,
    score numeric NOT NULL,
    residents integer NOT NULL,
    PRIMARY KEY (community_id, metric, scope, period, score)
);
-- A generation being filled from zero stages its score additions here,
-- placed (the grid's parent, the community's time zone) as they were
-- folded; they are summed into scores once it is filled.
CREATE TABLE {schema}.score_adds (
    community_id uuid NOT NULL,
    metric text NOT NULL,
    grid uuid,
    parent uuid,
    time_zone text NOT NULL,
    at bigint NOT NULL,
    resident_id uuid NOT NULL,
    delta numeric NOT NULL,
    position bigint NOT NULL
);
CREATE TABLE {schema}.sites (
    community_id uuid NOT NULL,
    site_id uuid NOT NULL,
    grid_id uuid NOT NULL,
    PRIMARY KEY (community_id, site_id)
);
CREATE TABLE {schema}.reports (
    community_id uuid NOT NULL,
    report_id uuid NOT NULL,
    grid_id uuid NOT NULL,
    reporter_id uuid,
    accepted boolean NOT NULL DEFAULT false,
    PRIMARY KEY (community_id, report_id)
);
CREATE TABLE {schema}.suggestions (
    community_id uuid NOT NULL,
    suggestion_id uuid NOT NULL,
    site_id uuid NOT NULL,
    submitter_id uuid,
    PRIMARY KEY (community_id, suggestion_id)
);
";

#[async_trait]
impl Projection for LeaderboardsProjection {
    fn name(&self) -> &'static str {
        NAME
    }

    fn streams(&self) -> &'static [StreamKind] {
        &[
            StreamKind::Report,
            StreamKind::Wallet,
            StreamKind::Suggestion,
            StreamKind::Community,
        ]
    }

    fn tables_sql(&self) -> String {
        format!("{}{TABLES_SQL}", community_info::TABLES_SQL)
    }

    /// The batch's score changes are gathered and written once: one change
    /// per resident and board, and one per score in the counts.
    async fn apply_batch(
        &self,
        transaction: &Transaction<'_>,
        schema: &str,
        events: &[RecordedEvent],
        _changes: &mut Vec<Change>,
    ) -> Result<(), ProjectionError> {
        fold_batch(transaction, schema, events, Scores::Add).await
    }

    /// The batch's score additions are staged, and summed into the scores
    /// once the generation is filled: summed once instead of a lookup and a
    /// write per score and batch.
    async fn fill_batch(
        &self,
        transaction: &Transaction<'_>,
        schema: &str,
        events: &[RecordedEvent],
    ) -> Result<(), ProjectionError> {
        fold_batch(transaction, schema, events, Scores::Stage).await
    }

    /// The staged additions summed into every board (see [`fill`]).
    async fn finish_fill(&self, pool: &Pool, schema: &str) -> Result<(), ProjectionError> {
        fill::finish(pool, schema).await
    }
}

/// Where a batch's score additions go.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Scores {
    /// Onto the scores and their counts.
    Add,
    /// Into `score_adds`, for a generation being filled from zero.
    Stage,
}

async fn fold_batch(
    transaction: &Transaction<'_>,
    schema: &str,
    events: &[RecordedEvent],
    scores: Scores,
) -> Result<(), ProjectionError> {
    let Some(community) = events.first().map(|e| e.community_id.as_uuid()) else {
        return Ok(());
    };
    let mut decoded = Vec::with_capacity(events.len());
    // The reports the batch needs, but for those it submits: their rows
    // cannot be stored yet.
    let mut touched = Vec::new();
    let mut submitted = HashSet::new();
    for event in events {
        let followed = match crate::runner::kind(event) {
            Some(StreamKind::Report) => {
                let report_event = decode(event)?;
                let report = entity_id(event, "report")?;
                if let ReportEvent::ReportSubmitted(_) = &report_event {
                    submitted.insert(report);
                } else {
                    touched.push(report);
                }
                Followed::Report(report_event)
            }
            Some(StreamKind::Wallet) => {
                let wallet_event = decode(event)?;
                if let WalletEvent::PointsReversed { report, .. } = &wallet_event {
                    touched.push(report.0);
                }
                Followed::Wallet(wallet_event)
            }
            Some(StreamKind::Suggestion) => Followed::Suggestion(decode(event)?),
            Some(StreamKind::Community) => Followed::Community,
            _ => Followed::Nothing,
        };
        decoded.push(followed);
    }
    let table = format!("{schema}.reports");
    let keyed = (table.as_str(), "report_id");
    let Loaded { stored, rows } = load_rows(
        transaction,
        keyed,
        community,
        (touched, &submitted),
        |row: &ReportRecord| row.report_id,
    )
    .await?;
    let mut fold = Fold {
        transaction,
        schema,
        reports: rows,
        adds: Vec::new(),
    };
    // Staged additions are placed here; added ones are placed in SQL.
    let mut grids = match scores {
        Scores::Stage => Some(Grids::load(transaction, schema, community).await?),
        Scores::Add => None,
    };
    for (event, followed) in events.iter().zip(decoded) {
        match followed {
            Followed::Community => {
                fold.community(event).await?;
                if let Some(grids) = &mut grids {
                    grids.follow(event)?;
                }
            }
            Followed::Report(report_event) => fold.report(event, report_event)?,
            Followed::Suggestion(suggestion_event) => {
                fold.suggestion(event, suggestion_event).await?
            }
            Followed::Wallet(wallet_event) => fold.wallet(event, wallet_event)?,
            Followed::Nothing => {}
        }
    }
    replace_rows(transaction, keyed, community, &stored, &fold.reports).await?;
    match grids {
        Some(grids) => stage(transaction, schema, community, &fold.adds, &grids).await,
        None => write_scores(transaction, schema, community, &fold.adds).await,
    }
}

/// A batch's event, decoded for what this read model follows.
enum Followed {
    Community,
    Report(ReportEvent),
    Suggestion(SuggestionEvent),
    Wallet(WalletEvent),
    Nothing,
}

/// A row of `reports`: what a report counts for on the boards.
#[derive(Debug, Deserialize)]
struct ReportRecord {
    community_id: Uuid,
    report_id: Uuid,
    grid_id: Uuid,
    reporter_id: Option<Uuid>,
    accepted: bool,
}

impl TableRow for ReportRecord {
    const COLUMNS: &'static [&'static str] = &[
        "community_id",
        "report_id",
        "grid_id",
        "reporter_id",
        "accepted",
    ];

    fn values(&self) -> Vec<&(dyn ToSql + Sync)> {
        vec![
            &self.community_id,
            &self.report_id,
            &self.grid_id,
            &self.reporter_id,
            &self.accepted,
        ]
    }
}

/// Something added to a resident's score on every board the change counts
/// on: the community's, the grid's and its level 1 grid's; all time, the
/// month and the week of `at` in the community's time zone.
#[derive(Debug)]
struct ScoreAdd {
    metric: &'static str,
    grid: Option<Uuid>,
    at: i64,
    resident: Uuid,
    delta: Decimal,
    position: i64,
}

/// A batch's additions as the parameters `$2`..`$7` of [`PLACED_SQL`]:
/// one array per field, sent in binary.
struct AddColumns {
    metrics: Vec<&'static str>,
    grids: Vec<Option<Uuid>>,
    ats: Vec<i64>,
    residents: Vec<Uuid>,
    deltas: Vec<Decimal>,
    positions: Vec<i64>,
}

impl AddColumns {
    fn of(adds: &[ScoreAdd]) -> Self {
        AddColumns {
            metrics: column(adds, |a| a.metric),
            grids: column(adds, |a| a.grid),
            ats: column(adds, |a| a.at),
            residents: column(adds, |a| a.resident),
            deltas: column(adds, |a| a.delta),
            positions: column(adds, |a| a.position),
        }
    }

    fn params<'a>(&'a self, community: &'a Uuid) -> [&'a (dyn ToSql + Sync); 7] {
        [
            community,
            &self.metrics,
            &self.grids,
            &self.ats,
            &self.residents,
            &self.deltas,
            &self.positions,
        ]
    }
}

/// The additions (`$2`..`$7`, see [`AddColumns`]) placed: the grid's level
/// 1 grid, and the local time in the community's time zone (a CTE named
/// `placed`).
const PLACED_SQL: &str = "WITH placed AS ( \
         SELECT d.*, to_timestamp(d.at / 1000000.0) AT TIME ZONE coalesce( \
             (SELECT time_zone FROM {schema}.communities WHERE community_id = $1), \
             'Asia/Shanghai') AS local, \
             (SELECT parent_id FROM {schema}.grids g \
              WHERE g.community_id = $1 AND g.grid_id = d.grid) AS parent \
         FROM unnest($2::text[], $3::uuid[], $4::bigint[], $5::uuid[], $6::numeric[], \
             $7::bigint[]) AS d(metric, grid, at, resident, delta, position))";

/// The periods a placed addition counts in: all time, the month and the
/// ISO week of its local time.
const PERIODS_SQL: [&str; 3] = [
    "'all'",
    "'month:' || to_char(local, 'YYYY-MM')",
    "'week:' || to_char(local, 'IYYY-\"W\"IW')",
];

/// Every board a placed addition counts on: its scope (the community, the
/// grid, the level 1 grid) and period.
fn boards_sql() -> String {
    let periods: Vec<String> = PERIODS_SQL.iter().map(|p| format!("({p})")).collect();
    format!(
        "LATERAL (VALUES ('community'), (grid::text), (parent::text)) AS s(scope), \
         LATERAL (VALUES {}) AS p(period) WHERE scope IS NOT NULL",
        periods.join(", ")
    )
}

/// Stages a batch's additions in `score_adds`, placed as the batch leaves
/// the community's set-up: the grid's level 1 grid (none for a level 1 or
/// unknown grid) and the community's time zone (the default zone before it
/// is registered, as the live fold reads it).
async fn stage(
    transaction: &Transaction<'_>,
    schema: &str,
    community: Uuid,
    adds: &[ScoreAdd],
    grids: &Grids,
) -> Result<(), ProjectionError> {
    if adds.is_empty() {
        return Ok(());
    }
    let sql = format!("SELECT time_zone FROM {schema}.communities WHERE community_id = $1");
    let time_zone: String = query(transaction, &sql, &[&community])
        .await?
        .first()
        .map_or_else(|| DEFAULT_TIME_ZONE.to_string(), |row| row.get(0));
    let rows: Vec<StagedAdd> = adds
        .iter()
        .map(|add| StagedAdd {
            community,
            add,
            parent: add.grid.and_then(|grid| grids.parent(grid)),
            time_zone: &time_zone,
        })
        .collect();
    insert_rows(transaction, &format!("{schema}.score_adds"), &rows).await
}

/// A row of `score_adds`.
struct StagedAdd<'a> {
    community: Uuid,
    add: &'a ScoreAdd,
    parent: Option<Uuid>,
    time_zone: &'a str,
}

impl TableRow for StagedAdd<'_> {
    const COLUMNS: &'static [&'static str] = &[
        "community_id",
        "metric",
        "grid",
        "parent",
        "time_zone",
        "at",
        "resident_id",
        "delta",
        "position",
    ];

    fn values(&self) -> Vec<&(dyn ToSql + Sync)> {
        vec![
            &self.community,
            &self.add.metric,
            &self.add.grid,
            &self.parent,
            &self.time_zone,
            &self.add.at,
            &self.add.resident,
            &self.add.delta,
            &self.add.position,
        ]
    }
}

/// Writes a batch's additions: each score moved once by the sum of its
/// additions (reached at the last of them), and the counts per score moved
/// from each old score to each new one. Scores new to the board are plain
/// inserts: a batch holds its generation's checkpoint row locked, so no
/// other writer can add the same score meanwhile.
async fn write_scores(
    transaction: &Transaction<'_>,
    schema: &str,
    community: Uuid,
    adds: &[ScoreAdd],
) -> Result<(), ProjectionError> {
    if adds.is_empty() {
        return Ok(());
    }
    let columns = AddColumns::of(adds);
    let params = columns.params(&community);
    let placed = PLACED_SQL.replace("{schema}", schema);
    // A batch's scores are summed in memory, not spilled to disk.
    transaction
        .batch_execute("SET LOCAL work_mem = '64MB'")
        .await?;
    let sql = format!(
        "{placed}, \
         summed AS ( \
             SELECT metric, scope, period, resident, sum(delta) AS delta, \
                 max(position) AS position \
             FROM placed, {boards} GROUP BY 1, 2, 3, 4), \
         moved AS ( \
             SELECT summed.*, old.score AS old, old.ctid AS old_row, \
                 coalesce(old.score, 0) + summed.delta AS new \
             FROM summed LEFT JOIN {schema}.scores old ON old.community_id = $1 \
                 AND old.metric = summed.metric AND old.scope = summed.scope \
                 AND old.period = summed.period AND old.resident_id = summed.resident), \
         updated AS ( \
             UPDATE {schema}.scores s SET score = moved.new, reached_position = moved.position \
             FROM moved WHERE moved.old IS NOT NULL AND s.ctid = moved.old_row RETURNING 1), \
         inserted AS ( \
             INSERT INTO {schema}.scores (community_id, metric, scope, period, resident_id, \
                 score, reached_position) \
             SELECT $1, metric, scope, period, resident, new, position FROM moved \
             WHERE old IS NULL), \
         counted AS ( \
             INSERT INTO {schema}.score_counts (community_id, metric, scope, period, score, \
                 residents) \
             SELECT $1, metric, scope, period, score, sum(residents) FROM ( \
                 SELECT metric, scope, period, old AS score, -1 AS residents FROM moved \
                 WHERE old IS NOT NULL \
                 UNION ALL SELECT metric, scope, period, new, 1 FROM moved) moves \
             GROUP BY 2, 3, 4, 5 \
             ON CONFLICT (community_id, metric, scope, period, score) \
             DO UPDATE SET residents = {schema}.score_counts.residents + excluded.residents \
             RETURNING metric, scope, period, score, residents) \
         SELECT (SELECT count(*) FROM moved WHERE old IS NOT NULL), \
             (SELECT count(*) FROM updated), z.* \
         FROM (SELECT 1) one LEFT JOIN ( \
             SELECT metric, scope, period, score FROM counted WHERE residents = 0) z ON true",
        boards = boards_sql()
    );
    let rows = query(transaction, &sql, &params).await?;
    // The scores found are updated where they were found (by row address,
    // not by a second probe of the key): the batch holds its generation's
    // checkpoint row locked, so no one else moves them meanwhile; were
    // that ever untrue, the batch fails and is folded again, rather than
    // lose an addition.
    let (found, updated): (i64, i64) = rows.first().map_or((0, 0), |row| (row.get(0), row.get(1)));
    if found != updated {
        return Err(ProjectionError::Unwritable {
            table: format!("{schema}.scores"),
            reason: format!("{found} scores found, {updated} updated where they were found"),
        });
    }
    let emptied: Vec<&tokio_postgres::Row> = rows
        .iter()
        .filter(|row| row.get::<_, Option<String>>(2).is_some())
        .collect();
    if emptied.is_empty() {
        return Ok(());
    }
    // The scores no resident holds any more, deleted by their keys: a
    // delete of the community's counts at zero read every count of every
    // board it ever had (every week's and month's), more as the history
    // grew.
    let metrics: Vec<String> = emptied.iter().map(|row| row.get(2)).collect();
    let scopes: Vec<String> = emptied.iter().map(|row| row.get(3)).collect();
    let periods: Vec<String> = emptied.iter().map(|row| row.get(4)).collect();
    let scores: Vec<Decimal> = emptied.iter().map(|row| row.get(5)).collect();
    let sql = delete_probed(
        &format!("{schema}.score_counts"),
        "unnest($2::text[], $3::text[], $4::text[], $5::numeric[]) AS k(metric, scope, period, score)",
        "metric = k.metric AND scope = k.scope AND period = k.period AND score = k.score \
         AND residents = 0",
    );
    execute(
        transaction,
        &sql,
        &[&community, &metrics, &scopes, &periods, &scores],
    )
    .await?;
    Ok(())
}

/// A batch being folded: the reports it touches, and its score additions.
struct Fold<'a> {
    transaction: &'a Transaction<'a>,
    schema: &'a str,
    reports: HashMap<Uuid, ReportRecord>,
    adds: Vec<ScoreAdd>,
}

impl Fold<'_> {
    fn add(
        &mut self,
        event: &RecordedEvent,
        metric: Metric,
        (grid, at): (Option<Uuid>, Timestamp),
        resident: Uuid,
        delta: Decimal,
    ) {
        if delta.is_zero() {
            return;
        }
        self.adds.push(ScoreAdd {
            metric: metric.key(),
            grid,
            at: at.micros(),
            resident,
            delta,
            position: event.position,
        });
    }

    async fn community(&mut self, event: &RecordedEvent) -> Result<(), ProjectionError> {
        let schema = self.schema;
        community_info::apply(self.transaction, schema, event).await?;
        if let CommunityEvent::SiteAdded { site, details, .. } = decode(event)? {
            let sql = format!(
                "INSERT INTO {schema}.sites (community_id, site_id, grid_id) \
                 VALUES ($1, $2, $3) ON CONFLICT DO NOTHING"
            );
            execute(
                self.transaction,
                &sql,
                &[&event.community_id.as_uuid(), &site.0, &details.grid.0],
            )
            .await?;
        }
        Ok(())
    }

    fn report(
        &mut self,
        event: &RecordedEvent,
        report_event: ReportEvent,
    ) -> Result<(), ProjectionError> {
        let report = entity_id(event, "report")?;
        if let ReportEvent::ReportSubmitted(submission) = &report_event {
            let reporter = match submission.reporter {
                Reporter::Resident(person) => Some(person.0),
                Reporter::Anonymous { .. } => None,
            };
            let row = ReportRecord {
                community_id: event.community_id.as_uuid(),
                report_id: report,
                grid_id: submission.grid.0,
                reporter_id: reporter,
                accepted: false,
            };
            self.reports.insert(report, row);
            return Ok(());
        }
        let Some(row) = self.reports.get(&report) else {
            return Ok(());
        };
        let (grid, reporter, accepted) = (row.grid_id, row.reporter_id, row.accepted);
        let one = Decimal::ONE;
        let (reporter, accepted) = match report_event {
            ReportEvent::ReportAccepted { at, .. } => {
                if let Some(reporter) = reporter {
                    let metric = Metric::AcceptedReports;
                    self.add(event, metric, (Some(grid), at), reporter, one);
                }
                (reporter, true)
            }
            ReportEvent::ReportClaimed { resident, at } => {
                if accepted {
                    let metric = Metric::AcceptedReports;
                    self.add(event, metric, (Some(grid), at), resident.0, one);
                }
                (Some(resident.0), accepted)
            }
            // Merged duplicates count for nothing.
            ReportEvent::ReportMerged { at, .. } if accepted => {
                if let Some(reporter) = reporter {
                    let metric = Metric::AcceptedReports;
                    self.add(event, metric, (Some(grid), at), reporter, -one);
                }
                (reporter, false)
            }
            _ => return Ok(()),
        };
        if let Some(row) = self.reports.get_mut(&report) {
            row.reporter_id = reporter;
            row.accepted = accepted;
        }
        Ok(())
    }

    async fn suggestion(
        &mut self,
        event: &RecordedEvent,
        suggestion_event: SuggestionEvent,
    ) -> Result<(), ProjectionError> {
        let schema = self.schema;
        let community = event.community_id.as_uuid();
        let suggestion = entity_id(event, "suggestion")?;
        match suggestion_event {
            SuggestionEvent::SuggestionSubmitted {
                site, submitter, ..
            } => {
                let submitter = match submitter {
                    Reporter::Resident(person) => Some(person.0),
                    Reporter::Anonymous { .. } => None,
                };
                let sql = format!(
                    "INSERT INTO {schema}.suggestions (community_id, suggestion_id, site_id, \
                     submitter_id) VALUES ($1, $2, $3, $4)"
                );
                execute(
                    self.transaction,
                    &sql,
                    &[&community, &suggestion, &site.0, &submitter],
                )
                .await
                .map(drop)
            }
            SuggestionEvent::SuggestionAnswered {
                outcome: Outcome::Adopted | Outcome::PartlyAdopted,
                at,
                ..
            } => {
                let sql = format!(
                    "SELECT s.submitter_id, i.grid_id FROM {schema}.suggestions s \
                     LEFT JOIN {schema}.sites i USING (community_id, site_id) \
                     WHERE s.community_id = $1 AND s.suggestion_id = $2"
                );
                let rows = query(self.transaction, &sql, &[&community, &suggestion]).await?;
                let Some(row) = rows.first() else {
                    return Ok(());
                };
                let (submitter, grid): (Option<Uuid>, Option<Uuid>) = (row.get(0), row.get(1));
                if let Some(submitter) = submitter {
                    let metric = Metric::AdoptedSuggestions;
                    self.add(event, metric, (grid, at), submitter, Decimal::ONE);
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }

    fn wallet(
        &mut self,
        event: &RecordedEvent,
        wallet_event: WalletEvent,
    ) -> Result<(), ProjectionError> {
        let resident = entity_id(event, "wallet")?;
        match wallet_event {
            WalletEvent::PointsGranted {
                source,
                amount,
                grid,
                at,
                ..
            } => {
                let grid = grid.map(|g| g.0);
                self.add(event, Metric::Points, (grid, at), resident, amount);
                if let GrantSource::VolunteerService { hours, .. } = source {
                    self.add(event, Metric::VolunteerHours, (grid, at), resident, hours);
                }
            }
            WalletEvent::PointsReversed {
                report, amount, at, ..
            } => {
                let grid = self.reports.get(&report.0).map(|row| row.grid_id);
                self.add(event, Metric::Points, (grid, at), resident, -amount);
            }
            _ => {}
        }
        Ok(())
    }
}

/// A resident on a board.
#[derive(Clone, Debug, PartialEq)]
pub struct Standing {
    pub resident_id: Uuid,
    pub score: Decimal,
    /// 1 + residents with a higher score.
    pub rank: i64,
}

/// The period key a board query asks for, computed in the community's zone.
const PERIOD_SQL: &str = "CASE $4 WHEN 'all' THEN 'all' ELSE $4 || ':' || to_char( \
     to_timestamp($5::bigint / 1000000.0) AT TIME ZONE coalesce((SELECT time_zone \
     FROM {schema}.communities WHERE community_id = $1), 'Asia/Shanghai'), \
     CASE $4 WHEN 'month' THEN 'YYYY-MM' ELSE 'IYYY-\"W\"IW' END) END";

/// Which board, how much of it, and whose standing.
#[derive(Clone, Copy, Debug)]
pub struct BoardQuestion {
    pub metric: Metric,
    /// A grid, or the whole community.
    pub scope: Option<Uuid>,
    pub period: Period,
    pub limit: i64,
    pub standing_of: Option<Uuid>,
}

/// A board's top, one resident's standing, and the display names of the
/// residents in them who have a profile.
#[derive(Clone, Debug, Default)]
pub struct Board {
    pub top: Vec<Standing>,
    pub standing: Option<Standing>,
    pub names: HashMap<Uuid, String>,
}

/// A board as fresh as `at_least`, kept for as long as its period lasts
/// and no profile of the community changes (names leave with an erasure).
pub async fn board(
    reads: &ReadCache,
    community: CommunityId,
    asked: BoardQuestion,
    at_least: Option<i64>,
) -> Result<Arc<Board>, ProjectionError> {
    let BoardQuestion {
        metric,
        scope,
        period,
        limit,
        standing_of,
    } = asked;
    let (kind, at) = period.kind_and_at();
    // The moment is not part of the question: the answer is the same for
    // every moment of its period, which is what it is kept for.
    let question = Question::new(
        NAME,
        community,
        format!(
            "board {} {scope:?} {kind} {limit} {standing_of:?}",
            metric.key()
        ),
    );
    let profiles = [store::profiles::profiles_topic(community)];
    reads
        .read(question, at, at_least, &profiles, async |client| {
            let schema = reading_schema(NAME);
            let holds_at = period_moments_in(client, &schema, community, period).await?;
            let top = top_in(client, &schema, community, (metric, scope, period), limit).await?;
            let standing = match standing_of {
                Some(resident) => {
                    rank_of_in(
                        client,
                        &schema,
                        community,
                        (metric, scope, period),
                        resident,
                    )
                    .await?
                }
                None => None,
            };
            let people: Vec<Uuid> = top.iter().chain(&standing).map(|s| s.resident_id).collect();
            let names = store::profiles::display_names_in(client, community, &people).await?;
            let rows = people.len();
            Ok(Answer {
                value: Board {
                    top,
                    standing,
                    names,
                },
                rows,
                holds_at,
            })
        })
        .await
}

/// The moments (microseconds) of the period holding `period`'s moment, in
/// the community's calendar; every moment for all time.
async fn period_moments_in(
    client: &impl GenericClient,
    schema: &str,
    community: CommunityId,
    period: Period,
) -> Result<Range<i64>, ProjectionError> {
    let (kind, at) = period.kind_and_at();
    if kind == "all" {
        return Ok(i64::MIN..i64::MAX);
    }
    // `date_trunc('week', …)` starts the ISO week on Monday, as the period
    // key's `IYYY-"W"IW` does.
    let sql = format!(
        "WITH zone AS (SELECT coalesce((SELECT time_zone FROM {schema}.communities \
             WHERE community_id = $1), 'Asia/Shanghai') AS name), \
         period AS (SELECT date_trunc($2, to_timestamp($3::bigint / 1000000.0) \
             AT TIME ZONE zone.name) AS start, zone.name FROM zone) \
         SELECT (extract(epoch FROM start AT TIME ZONE name) * 1000000)::bigint, \
             (extract(epoch FROM (start + ('1 ' || $2)::interval) AT TIME ZONE name) \
             * 1000000)::bigint FROM period"
    );
    let rows = query(client, &sql, &[&community.as_uuid(), &kind, &at]).await?;
    Ok(rows[0].get(0)..rows[0].get(1))
}

/// The top `limit` residents of a board, read now (not kept).
pub async fn top(
    pool: &Pool,
    community: CommunityId,
    metric: Metric,
    scope: Option<Uuid>,
    period: Period,
    limit: i64,
) -> Result<Vec<Standing>, ProjectionError> {
    let schema = reading_schema(NAME);
    let client = pool.get().await?;
    top_in(&client, &schema, community, (metric, scope, period), limit).await
}

/// `top` from the read model in `schema` (a replay's).
pub async fn top_in(
    client: &impl GenericClient,
    schema: &str,
    community: CommunityId,
    (metric, scope, period): (Metric, Option<Uuid>, Period),
    limit: i64,
) -> Result<Vec<Standing>, ProjectionError> {
    let period_sql = PERIOD_SQL.replace("{schema}", schema);
    let sql = format!(
        "SELECT resident_id, score, rank() OVER (ORDER BY score DESC) FROM ( \
             SELECT resident_id, score, reached_position FROM {schema}.scores \
             WHERE community_id = $1 AND metric = $2 AND scope = $3 AND period = ({period_sql}) \
             AND score > 0 ORDER BY score DESC, reached_position, resident_id LIMIT $6) board \
         ORDER BY score DESC, reached_position, resident_id"
    );
    let (kind, at) = period.kind_and_at();
    let rows = query(
        client,
        &sql,
        &[
            &community.as_uuid(),
            &metric.key(),
            &scope_key(scope),
            &kind,
            &at,
            &limit,
        ],
    )
    .await?;
    Ok(rows
        .iter()
        .map(|row| Standing {
            resident_id: row.get(0),
            score: row.get(1),
            rank: row.get(2),
        })
        .collect())
}

/// One resident's score and rank on a board, read now (not kept); `None`
/// without a score.
pub async fn rank_of(
    pool: &Pool,
    community: CommunityId,
    metric: Metric,
    scope: Option<Uuid>,
    period: Period,
    resident: Uuid,
) -> Result<Option<Standing>, ProjectionError> {
    let schema = reading_schema(NAME);
    let client = pool.get().await?;
    rank_of_in(
        &client,
        &schema,
        community,
        (metric, scope, period),
        resident,
    )
    .await
}

async fn rank_of_in(
    client: &impl GenericClient,
    schema: &str,
    community: CommunityId,
    (metric, scope, period): (Metric, Option<Uuid>, Period),
    resident: Uuid,
) -> Result<Option<Standing>, ProjectionError> {
    let period_sql = PERIOD_SQL.replace("{schema}", schema);
    let sql = format!(
        "SELECT s.score, 1 + coalesce((SELECT sum(c.residents) FROM {schema}.score_counts c \
             WHERE c.community_id = s.community_id AND c.metric = s.metric \
             AND c.scope = s.scope AND c.period = s.period AND c.score > s.score), 0)::bigint \
         FROM {schema}.scores s WHERE s.community_id = $1 AND s.metric = $2 AND s.scope = $3 \
         AND s.period = ({period_sql}) AND s.resident_id = $6 AND s.score > 0"
    );
    let (kind, at) = period.kind_and_at();
    let rows = query(
        client,
        &sql,
        &[
            &community.as_uuid(),
            &metric.key(),
            &scope_key(scope),
            &kind,
            &at,
            &resident,
        ],
    )
    .await?;
    Ok(rows.first().map(|row| Standing {
        resident_id: resident,
        score: row.get(0),
        rank: row.get(1),
    }))
}

fn scope_key(scope: Option<Uuid>) -> String {
    scope.map_or_else(|| "community".to_string(), |grid| grid.to_string())
}

/// Fills the all-time community board of the live generation for a
/// benchmark: `residents` residents, their points summed from `movements`
/// random grants (1, 2, 5 or 10 points), as folding them would; and the
/// counts per score. Only benchmarks call it, on a scratch database.
pub async fn seed_for_bench(
    pool: &Pool,
    community: CommunityId,
    residents: i64,
    movements: i64,
) -> Result<(), ProjectionError> {
    let schema = reading_schema(NAME);
    let client = pool.get().await?;
    client
        .execute(
            &format!(
                "INSERT INTO {schema}.communities (community_id, name, time_zone) \
                 VALUES ($1, 'bench', 'Asia/Shanghai')"
            ),
            &[&community.as_uuid()],
        )
        .await?;
    client
        .execute(
            &format!(
                "INSERT INTO {schema}.scores (community_id, metric, scope, period, resident_id, \
                 score, reached_position) \
                 SELECT $1::uuid, 'points', 'community', 'all', \
                     md5($1::uuid::text || resident::text)::uuid, sum(amount), max(position) \
                 FROM (SELECT floor(random() * $2::bigint)::bigint AS resident, \
                     (ARRAY[1, 2, 5, 10])[1 + floor(random() * 4)::int]::numeric AS amount, \
                     position FROM generate_series(1, $3::bigint) AS position) movements \
                 GROUP BY resident"
            ),
            &[&community.as_uuid(), &residents, &movements],
        )
        .await?;
    client
        .execute(
            &format!(
                "INSERT INTO {schema}.score_counts (community_id, metric, scope, period, score, \
                 residents) SELECT community_id, metric, scope, period, score, count(*) \
                 FROM {schema}.scores WHERE community_id = $1 \
                 GROUP BY community_id, metric, scope, period, score"
            ),
            &[&community.as_uuid()],
        )
        .await?;
    client
        .batch_execute(&format!(
            "ANALYZE {schema}.scores; ANALYZE {schema}.score_counts"
        ))
        .await?;
    Ok(())
}

/// Every resident on the all-time community board (for a benchmark to pick
/// from), and a plain primary-key read of one score: the baseline a board
/// query is measured against.
pub async fn bench_residents(
    pool: &Pool,
    community: CommunityId,
) -> Result<Vec<Uuid>, ProjectionError> {
    let schema = reading_schema(NAME);
    let client = pool.get().await?;
    let rows = client
        .query(
            &format!(
                "SELECT resident_id FROM {schema}.scores WHERE community_id = $1 \
                 AND metric = 'points' AND scope = 'community' AND period = 'all'"
            ),
            &[&community.as_uuid()],
        )
        .await?;
    Ok(rows.iter().map(|row| row.get(0)).collect())
}

/// One resident's all-time score by its primary key, the schema already
/// known: the cheapest read of the board, for a benchmark's baseline.
pub async fn raw_score_lookup(
    pool: &Pool,
    schema: &str,
    community: CommunityId,
    resident: Uuid,
) -> Result<Option<Decimal>, ProjectionError> {
    let client = pool.get().await?;
    let sql = format!(
        "SELECT score FROM {schema}.scores WHERE community_id = $1 AND metric = 'points' \
         AND scope = 'community' AND period = 'all' AND resident_id = $2"
    );
    let rows = query(&client, &sql, &[&community.as_uuid(), &resident]).await?;
    Ok(rows.first().map(|row| row.get(0)))
}
