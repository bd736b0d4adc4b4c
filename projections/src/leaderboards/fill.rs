//! Finishing a leaderboards generation filled from zero: the staged
//! additions are summed into every board they count on, here rather than in
//! PostgreSQL, one range of residents at a time (a resident's scores all lie
//! in one range, so each range is complete on its own and memory stays
//! bounded), and each range's scores are written with one `COPY`. The
//! counts per score, which span ranges, are written once at the end.
//!
//! Summing 400,000 scores in a `GROUP BY` cost PostgreSQL over a second of
//! CPU (a numeric state and five keys per group); the same sums here cost a
//! fraction of that, and the `COPY` of the result about a quarter.

use std::collections::HashMap;

use deadpool_postgres::Pool;
use futures::{StreamExt, TryStreamExt};
use rust_decimal::Decimal;
use tokio_postgres::types::ToSql;
use uuid::Uuid;

use super::PERIODS_SQL;
use crate::error::ProjectionError;
use crate::sql::{insert_rows, TableRow};

/// Staged additions per range of residents: about six scores each, so a
/// range holds at most about a million scores in memory.
const ADDS_PER_RANGE: i64 = 200_000;

/// Ranges summed and written side by side, each on its own connection.
const RANGES_AT_ONCE: usize = 2;

/// Sums the staged additions of the generation in `schema` into its
/// scores and counts, and drops them.
pub(super) async fn finish(pool: &Pool, schema: &str) -> Result<(), ProjectionError> {
    let staged: i64 = pool
        .get()
        .await?
        .query_one(&format!("SELECT count(*) FROM {schema}.score_adds"), &[])
        .await?
        .get(0);
    let ranges = (staged / ADDS_PER_RANGE + 1).max(RANGES_AT_ONCE as i64) as u128;
    let summed: Vec<Counts> = futures::stream::iter(0..ranges)
        .map(|index| sum_range(pool, schema, ResidentRange::of(index, ranges)))
        .buffer_unordered(RANGES_AT_ONCE)
        .try_collect()
        .await?;
    let mut counts: HashMap<(Board, Decimal), i32> = HashMap::new();
    for (key, residents) in summed.into_iter().flatten() {
        *counts.entry(key).or_default() += residents;
    }
    let rows: Vec<CountRow> = counts
        .iter()
        .map(|((board, score), residents)| CountRow {
            board,
            score,
            residents: *residents,
        })
        .collect();
    let mut client = pool.get().await?;
    let transaction = client.transaction().await?;
    insert_rows(&transaction, &format!("{schema}.score_counts"), &rows).await?;
    transaction
        .batch_execute(&format!("TRUNCATE {schema}.score_adds"))
        .await?;
    transaction.commit().await?;
    Ok(())
}

/// The residents whose ids lie in `[from, to)` (to the end without `to`),
/// in PostgreSQL's `uuid` order: bytewise, as `Uuid::as_u128`.
struct ResidentRange {
    from: Uuid,
    to: Option<Uuid>,
}

impl ResidentRange {
    /// The `index`th of `ranges` equal ranges of ids.
    fn of(index: u128, ranges: u128) -> Self {
        let width = u128::MAX / ranges;
        ResidentRange {
            from: Uuid::from_u128(width * index),
            to: (index + 1 < ranges).then(|| Uuid::from_u128(width * (index + 1))),
        }
    }
}

/// A board: one metric, one scope (the community or a grid), one period.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Board {
    community: Uuid,
    metric: String,
    scope: String,
    period: String,
}

/// Residents per score and board, from one range of residents.
type Counts = Vec<((Board, Decimal), i32)>;

/// A resident's sum on one board, reached at the last addition.
struct Sum {
    score: Decimal,
    reached: i64,
}

/// Sums one range's additions, writes its scores, and returns how many
/// residents hold each score on each board.
async fn sum_range(
    pool: &Pool,
    schema: &str,
    range: ResidentRange,
) -> Result<Counts, ProjectionError> {
    let mut client = pool.get().await?;
    let transaction = client.transaction().await?;
    // The scopes and periods as `boards_sql` names them: the community, the
    // grid, its level 1 grid; all time, the month, the week.
    let sql = format!(
        "SELECT community_id, metric, grid::text, parent::text, {periods}, resident_id, delta, \
             position \
         FROM (SELECT *, to_timestamp(at / 1000000.0) AT TIME ZONE time_zone AS local \
             FROM {schema}.score_adds \
             WHERE resident_id >= $1 AND ($2::uuid IS NULL OR resident_id < $2)) staged",
        periods = PERIODS_SQL.join(", ")
    );
    let params: [&(dyn ToSql + Sync); 2] = [&range.from, &range.to];
    let rows = transaction.query_raw(&sql, params).await?;
    let mut rows = std::pin::pin!(rows);
    let mut boards: Vec<Board> = Vec::new();
    let mut board_ids: HashMap<Board, u32> = HashMap::new();
    let mut placed: HashMap<Placement, Vec<u32>> = HashMap::new();
    let mut sums: HashMap<(u32, Uuid), Sum> = HashMap::new();
    while let Some(row) = rows.try_next().await? {
        let placement = Placement {
            community: row.try_get(0)?,
            metric: row.try_get(1)?,
            grids: [row.try_get(2)?, row.try_get(3)?],
            periods: [row.try_get(4)?, row.try_get(5)?, row.try_get(6)?],
        };
        let (resident, delta, position): (Uuid, Decimal, i64) =
            (row.try_get(7)?, row.try_get(8)?, row.try_get(9)?);
        let on = placed
            .entry(placement)
            .or_insert_with_key(|placement| placement.boards(&mut boards, &mut board_ids));
        for board in on.iter() {
            let sum = sums.entry((*board, resident)).or_insert(Sum {
                score: Decimal::ZERO,
                reached: position,
            });
            sum.score += delta;
            sum.reached = sum.reached.max(position);
        }
    }
    let mut counts: HashMap<(u32, Decimal), i32> = HashMap::new();
    let scores: Vec<ScoreRow> = sums
        .into_iter()
        .map(|((board, resident), sum)| {
            *counts.entry((board, sum.score)).or_default() += 1;
            ScoreRow {
                board: &boards[board as usize],
                resident,
                score: sum.score,
                reached: sum.reached,
            }
        })
        .collect();
    insert_rows(&transaction, &format!("{schema}.scores"), &scores).await?;
    transaction.commit().await?;
    Ok(counts
        .into_iter()
        .map(|((board, score), residents)| ((boards[board as usize].clone(), score), residents))
        .collect())
}

/// Where an addition counts: its community and metric, its grid and that
/// grid's level 1 grid (as text), and its periods.
#[derive(PartialEq, Eq, Hash)]
struct Placement {
    community: Uuid,
    metric: String,
    grids: [Option<String>; 2],
    periods: [String; 3],
}

impl Placement {
    /// The boards of this placement, numbered in `boards` (and `ids`).
    fn boards(&self, boards: &mut Vec<Board>, ids: &mut HashMap<Board, u32>) -> Vec<u32> {
        let scopes =
            std::iter::once("community").chain(self.grids.iter().flatten().map(String::as_str));
        let mut on = Vec::new();
        for scope in scopes {
            for period in &self.periods {
                let board = Board {
                    community: self.community,
                    metric: self.metric.clone(),
                    scope: scope.to_string(),
                    period: period.clone(),
                };
                let id = *ids.entry(board).or_insert_with_key(|board| {
                    boards.push(board.clone());
                    (boards.len() - 1) as u32
                });
                on.push(id);
            }
        }
        on
    }
}

/// A row of `scores`.
struct ScoreRow<'a> {
    board: &'a Board,
    resident: Uuid,
    score: Decimal,
    reached: i64,
}

impl TableRow for ScoreRow<'_> {
    const COLUMNS: &'static [&'static str] = &[
        "community_id",
        "metric",
        "scope",
        "period",
        "resident_id",
        "score",
        "reached_position",
    ];

    fn values(&self) -> Vec<&(dyn ToSql + Sync)> {
        vec![
            &self.board.community,
            &self.board.metric,
            &self.board.scope,
            &self.board.period,
            &self.resident,
            &self.score,
            &self.reached,
        ]
    }
}

/// A row of `score_counts`.
struct CountRow<'a> {
    board: &'a Board,
    score: &'a Decimal,
    residents: i32,
}

impl TableRow for CountRow<'_> {
    const COLUMNS: &'static [&'static str] = &[
        "community_id",
        "metric",
        "scope",
        "period",
        "score",
        "residents",
    ];

    fn values(&self) -> Vec<&(dyn ToSql + Sync)> {
        vec![
            &self.board.community,
            &self.board.metric,
            &self.board.scope,
            &self.board.period,
            self.score,
            &self.residents,
        ]
    }
}
