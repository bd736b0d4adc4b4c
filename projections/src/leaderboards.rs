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

use async_trait::async_trait;
use deadpool_postgres::{Pool, Transaction};
use domain::community::CommunityEvent;
use domain::points::{GrantSource, WalletEvent};
use domain::report::{ReportEvent, Reporter};
use domain::suggestion::{Outcome, SuggestionEvent};
use domain::values::Timestamp;
use rust_decimal::Decimal;
use store::{CommunityId, RecordedEvent};
use uuid::Uuid;

use crate::community_info;
use crate::error::ProjectionError;
use crate::generation::live_schema;
use crate::runner::{decode, entity_id, Change};
use crate::sql::{execute, query};
use crate::Projection;

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
    reached_position bigint NOT NULL,
    -- Covering: one resident's score is an index-only lookup, which the
    -- planner then prefers to a range of the board-order index.
    PRIMARY KEY (community_id, metric, scope, period, resident_id) INCLUDE (score)
);
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
-- What each event did to the counts per score, folded into score_counts
-- once per batch: a score many residents share would otherwise be one row
-- updated by nearly every event.
CREATE TABLE {schema}.score_deltas (
    community_id uuid NOT NULL,
    metric text NOT NULL,
    scope text NOT NULL,
    period text NOT NULL,
    score numeric NOT NULL,
    residents integer NOT NULL
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
-- Adds to a resident's score on every board the change counts on: the
-- community's, the grid's and its level 1 grid's; all time, the month and
-- the week of the change in the community's time zone.
CREATE FUNCTION {schema}.add_score(p_community uuid, p_metric text, p_grid uuid,
    p_at bigint, p_resident uuid, p_delta numeric, p_position bigint)
RETURNS void LANGUAGE plpgsql AS $fn$
DECLARE
    v_zone text;
    v_local timestamp;
    v_scopes text[] := ARRAY['community'];
    v_parent uuid;
    v_scope text;
    v_period text;
    v_old numeric;
    v_new numeric;
BEGIN
    IF p_delta = 0 THEN
        RETURN;
    END IF;
    SELECT time_zone INTO v_zone FROM {schema}.communities WHERE community_id = p_community;
    v_local := to_timestamp(p_at / 1000000.0) AT TIME ZONE coalesce(v_zone, 'Asia/Shanghai');
    IF p_grid IS NOT NULL THEN
        v_scopes := v_scopes || p_grid::text;
        SELECT parent_id INTO v_parent FROM {schema}.grids
            WHERE community_id = p_community AND grid_id = p_grid;
        IF v_parent IS NOT NULL THEN
            v_scopes := v_scopes || v_parent::text;
        END IF;
    END IF;
    FOREACH v_scope IN ARRAY v_scopes LOOP
        FOREACH v_period IN ARRAY ARRAY['all', 'month:' || to_char(v_local, 'YYYY-MM'),
                                        'week:' || to_char(v_local, 'IYYY-\"W\"IW')] LOOP
            SELECT score INTO v_old FROM {schema}.scores
                WHERE community_id = p_community AND metric = p_metric AND scope = v_scope
                AND period = v_period AND resident_id = p_resident FOR UPDATE;
            IF NOT FOUND THEN
                v_new := p_delta;
                INSERT INTO {schema}.scores VALUES
                    (p_community, p_metric, v_scope, v_period, p_resident, v_new, p_position);
            ELSE
                v_new := v_old + p_delta;
                UPDATE {schema}.scores SET score = v_new, reached_position = p_position
                    WHERE community_id = p_community AND metric = p_metric AND scope = v_scope
                    AND period = v_period AND resident_id = p_resident;
                INSERT INTO {schema}.score_deltas VALUES
                    (p_community, p_metric, v_scope, v_period, v_old, -1);
            END IF;
            INSERT INTO {schema}.score_deltas VALUES
                (p_community, p_metric, v_scope, v_period, v_new, 1);
        END LOOP;
    END LOOP;
END
$fn$;
";

#[async_trait]
impl Projection for LeaderboardsProjection {
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
        _changes: &mut Vec<Change>,
    ) -> Result<(), ProjectionError> {
        let fold = Fold {
            transaction,
            schema,
            event,
        };
        match event.stream_type.as_str() {
            "Community" => {
                community_info::apply(transaction, schema, event).await?;
                if let CommunityEvent::SiteAdded { site, details, .. } = decode(event)? {
                    let sql = format!(
                        "INSERT INTO {schema}.sites (community_id, site_id, grid_id) \
                         VALUES ($1, $2, $3) ON CONFLICT DO NOTHING"
                    );
                    execute(
                        transaction,
                        &sql,
                        &[&fold.community(), &site.0, &details.grid.0],
                    )
                    .await?;
                }
                Ok(())
            }
            "Report" => fold.report(decode(event)?).await,
            "Suggestion" => fold.suggestion(decode(event)?).await,
            "Wallet" => fold.wallet(decode(event)?).await,
            _ => Ok(()),
        }
    }

    /// Folds the batch's deltas into the counts per score, one change per
    /// score and board.
    async fn end_batch(
        &self,
        transaction: &Transaction<'_>,
        schema: &str,
    ) -> Result<(), ProjectionError> {
        let sql = format!(
            "INSERT INTO {schema}.score_counts \
             SELECT community_id, metric, scope, period, score, sum(residents) \
             FROM {schema}.score_deltas GROUP BY community_id, metric, scope, period, score \
             ON CONFLICT (community_id, metric, scope, period, score) \
             DO UPDATE SET residents = {schema}.score_counts.residents + excluded.residents"
        );
        execute(transaction, &sql, &[]).await?;
        // Emptied at once: deleted rows would stay behind as dead tuples
        // that every later batch scans.
        transaction
            .batch_execute(&format!("TRUNCATE {schema}.score_deltas"))
            .await?;
        let sql = format!("DELETE FROM {schema}.score_counts WHERE residents = 0");
        execute(transaction, &sql, &[]).await?;
        Ok(())
    }
}

struct Fold<'a> {
    transaction: &'a Transaction<'a>,
    schema: &'a str,
    event: &'a RecordedEvent,
}

impl Fold<'_> {
    fn community(&self) -> Uuid {
        self.event.community_id.as_uuid()
    }

    async fn add(
        &self,
        metric: Metric,
        grid: Option<Uuid>,
        at: Timestamp,
        resident: Uuid,
        delta: Decimal,
    ) -> Result<(), ProjectionError> {
        let schema = self.schema;
        let sql = format!("SELECT {schema}.add_score($1, $2, $3, $4, $5, $6, $7)");
        execute(
            self.transaction,
            &sql,
            &[
                &self.community(),
                &metric.key(),
                &grid,
                &at.micros(),
                &resident,
                &delta,
                &self.event.position,
            ],
        )
        .await
        .map(drop)
    }

    /// The report's grid and reporter, and whether it counted as accepted.
    async fn report_row(
        &self,
        report: Uuid,
    ) -> Result<Option<(Uuid, Option<Uuid>, bool)>, ProjectionError> {
        let schema = self.schema;
        let sql = format!(
            "SELECT grid_id, reporter_id, accepted FROM {schema}.reports \
             WHERE community_id = $1 AND report_id = $2"
        );
        let rows = query(self.transaction, &sql, &[&self.community(), &report]).await?;
        Ok(rows.first().map(|row| (row.get(0), row.get(1), row.get(2))))
    }

    async fn set_report(
        &self,
        report: Uuid,
        reporter: Option<Uuid>,
        accepted: bool,
    ) -> Result<(), ProjectionError> {
        let schema = self.schema;
        let sql = format!(
            "UPDATE {schema}.reports SET reporter_id = $3, accepted = $4 \
             WHERE community_id = $1 AND report_id = $2"
        );
        execute(
            self.transaction,
            &sql,
            &[&self.community(), &report, &reporter, &accepted],
        )
        .await
        .map(drop)
    }

    async fn report(&self, report_event: ReportEvent) -> Result<(), ProjectionError> {
        let schema = self.schema;
        let report = entity_id(self.event, "report")?;
        if let ReportEvent::ReportSubmitted(submission) = &report_event {
            let reporter = match submission.reporter {
                Reporter::Resident(person) => Some(person.0),
                Reporter::Anonymous { .. } => None,
            };
            let sql = format!(
                "INSERT INTO {schema}.reports (community_id, report_id, grid_id, reporter_id) \
                 VALUES ($1, $2, $3, $4)"
            );
            return execute(
                self.transaction,
                &sql,
                &[&self.community(), &report, &submission.grid.0, &reporter],
            )
            .await
            .map(drop);
        }
        let Some((grid, reporter, accepted)) = self.report_row(report).await? else {
            return Ok(());
        };
        let one = Decimal::ONE;
        match report_event {
            ReportEvent::ReportAccepted { at, .. } => {
                if let Some(reporter) = reporter {
                    self.add(Metric::AcceptedReports, Some(grid), at, reporter, one)
                        .await?;
                }
                self.set_report(report, reporter, true).await
            }
            ReportEvent::ReportClaimed { resident, at } => {
                if accepted {
                    self.add(Metric::AcceptedReports, Some(grid), at, resident.0, one)
                        .await?;
                }
                self.set_report(report, Some(resident.0), accepted).await
            }
            // Merged duplicates count for nothing.
            ReportEvent::ReportMerged { at, .. } if accepted => {
                if let Some(reporter) = reporter {
                    self.add(Metric::AcceptedReports, Some(grid), at, reporter, -one)
                        .await?;
                }
                self.set_report(report, reporter, false).await
            }
            _ => Ok(()),
        }
    }

    async fn suggestion(&self, suggestion_event: SuggestionEvent) -> Result<(), ProjectionError> {
        let schema = self.schema;
        let suggestion = entity_id(self.event, "suggestion")?;
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
                    &[&self.community(), &suggestion, &site.0, &submitter],
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
                let rows = query(self.transaction, &sql, &[&self.community(), &suggestion]).await?;
                let Some(row) = rows.first() else {
                    return Ok(());
                };
                let (submitter, grid): (Option<Uuid>, Option<Uuid>) = (row.get(0), row.get(1));
                match submitter {
                    Some(submitter) => {
                        self.add(
                            Metric::AdoptedSuggestions,
                            grid,
                            at,
                            submitter,
                            Decimal::ONE,
                        )
                        .await
                    }
                    None => Ok(()),
                }
            }
            _ => Ok(()),
        }
    }

    async fn wallet(&self, wallet_event: WalletEvent) -> Result<(), ProjectionError> {
        let resident = entity_id(self.event, "wallet")?;
        match wallet_event {
            WalletEvent::PointsGranted {
                source,
                amount,
                grid,
                at,
                ..
            } => {
                let grid = grid.map(|g| g.0);
                self.add(Metric::Points, grid, at, resident, amount).await?;
                if let GrantSource::VolunteerService { hours, .. } = source {
                    self.add(Metric::VolunteerHours, grid, at, resident, hours)
                        .await?;
                }
                Ok(())
            }
            WalletEvent::PointsReversed {
                report, amount, at, ..
            } => {
                let grid = self.report_row(report.0).await?.map(|(grid, _, _)| grid);
                self.add(Metric::Points, grid, at, resident, -amount).await
            }
            _ => Ok(()),
        }
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

/// The top `limit` residents of a board.
pub async fn top(
    pool: &Pool,
    community: CommunityId,
    metric: Metric,
    scope: Option<Uuid>,
    period: Period,
    limit: i64,
) -> Result<Vec<Standing>, ProjectionError> {
    let schema = live_schema(pool, NAME).await?;
    top_in(pool, &schema, community, (metric, scope, period), limit).await
}

/// `top` from the read model in `schema` (a replay's).
pub async fn top_in(
    pool: &Pool,
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
    let client = pool.get().await?;
    let rows = query(
        &client,
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

/// One resident's score and rank on a board; `None` without a score.
pub async fn rank_of(
    pool: &Pool,
    community: CommunityId,
    metric: Metric,
    scope: Option<Uuid>,
    period: Period,
    resident: Uuid,
) -> Result<Option<Standing>, ProjectionError> {
    let schema = live_schema(pool, NAME).await?;
    let period_sql = PERIOD_SQL.replace("{schema}", &schema);
    let sql = format!(
        "SELECT s.score, 1 + coalesce((SELECT sum(c.residents) FROM {schema}.score_counts c \
             WHERE c.community_id = s.community_id AND c.metric = s.metric \
             AND c.scope = s.scope AND c.period = s.period AND c.score > s.score), 0)::bigint \
         FROM {schema}.scores s WHERE s.community_id = $1 AND s.metric = $2 AND s.scope = $3 \
         AND s.period = ({period_sql}) AND s.resident_id = $6 AND s.score > 0"
    );
    let (kind, at) = period.kind_and_at();
    let client = pool.get().await?;
    let rows = query(
        &client,
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
    let schema = live_schema(pool, NAME).await?;
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
    let schema = live_schema(pool, NAME).await?;
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
