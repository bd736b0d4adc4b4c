//! The figures of the grid ledgers the fold keeps, so that a ledger is read
//! in a few index lookups per grid however long the history:
//!
//! - `grid_ledgers.open`: a counter per grid, moved as reports open and
//!   close;
//! - the medians: each grid's durations (first response, resolution) as a
//!   set ordered by (duration, report), with the lower middle element kept
//!   in `grid_medians` and moved by as many steps as a batch adds or takes
//!   away, never found again by counting the set;
//! - overdue and resolved this month depend on the time of the read: each
//!   grid keeps its open reports' deadlines and its resolutions as moments
//!   (`grid_moments`, a table whose key is its only index), so a read
//!   counts a range of them: what is overdue now or was resolved this
//!   month, never the history, and no other index for a generic plan to
//!   pick instead.
//!
//! A report counts in its grid and, when that lies inside a level 1 grid,
//! in that one too.

use std::collections::HashMap;

use deadpool_postgres::Transaction;
use uuid::Uuid;

use super::ReportRecord;
use crate::error::ProjectionError;
use crate::sql::{column, delete_probed, execute, query};

/// The durations a grid keeps a median of.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(super) enum Duration {
    /// From submission to the first response (accepted or rejected).
    FirstResponse = 0,
    /// From submission to the last resolution, while it stands.
    Resolution = 1,
}

const DURATIONS: [Duration; 2] = [Duration::FirstResponse, Duration::Resolution];

/// The moments a grid keeps of its reports, compared with the time of a
/// read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(super) enum Moment {
    /// When an open report becomes overdue: its first-response deadline
    /// while it waits for one (or its resolution deadline, if sooner), then
    /// its resolution deadline; none once it is no longer open.
    Due = 0,
    /// When it was last resolved, while that resolution stands.
    Resolved = 1,
}

const MOMENTS: [Moment; 2] = [Moment::Due, Moment::Resolved];

/// What one report adds to the ledgers of the grids it counts in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Share {
    grids: Vec<Uuid>,
    open: bool,
    durations: [Option<i64>; 2],
    moments: [Option<i64>; 2],
}

impl Share {
    pub(super) fn of(row: &ReportRecord) -> Share {
        let mut grids = vec![row.grid_id];
        if row.level1_grid_id != row.grid_id {
            grids.push(row.level1_grid_id);
        }
        let due = match row.state.as_str() {
            "submitted" => Some(row.first_response_due.min(row.resolution_due)),
            state if super::queries::is_open_state(state) => Some(row.resolution_due),
            _ => None,
        };
        Share {
            grids,
            open: super::queries::is_open_state(&row.state),
            moments: [due, row.resolved_at],
            durations: [
                row.first_response_at.map(|at| at - row.submitted_at),
                row.resolved_at.map(|at| at - row.submitted_at),
            ],
        }
    }
}

/// A series' element: a duration and the report it is of (the set's
/// order, which makes equal durations distinct).
type Element = (i64, Uuid);

#[derive(Default)]
struct SeriesChange {
    added: Vec<Element>,
    removed: Vec<Element>,
}

/// What a batch changes in the ledgers.
#[derive(Default)]
pub(super) struct LedgerChanges {
    open: HashMap<Uuid, i64>,
    series: HashMap<(Uuid, Duration), SeriesChange>,
    /// Moments taken away and added.
    moments_removed: Vec<GridSetRow>,
    moments_added: Vec<GridSetRow>,
}

impl LedgerChanges {
    /// Report `report` went from `before` (none: new) to `after`.
    pub(super) fn add(&mut self, report: Uuid, before: Option<&Share>, after: &Share) {
        if before == Some(after) {
            return;
        }
        if let Some(before) = before {
            for grid in &before.grids {
                *self.open.entry(*grid).or_default() -= i64::from(before.open);
            }
        }
        for grid in &after.grids {
            *self.open.entry(*grid).or_default() += i64::from(after.open);
        }
        let same_grids = before.is_some_and(|b| b.grids == after.grids);
        for moment in MOMENTS {
            let old = before.and_then(|b| b.moments[moment as usize]);
            let new = after.moments[moment as usize];
            if old == new && same_grids {
                continue;
            }
            let kind = moment as i16;
            if let (Some(old), Some(before)) = (old, before) {
                let removed = before.grids.iter().map(|grid| (*grid, kind, old, report));
                self.moments_removed.extend(removed);
            }
            if let Some(new) = new {
                let added = after.grids.iter().map(|grid| (*grid, kind, new, report));
                self.moments_added.extend(added);
            }
        }
        for duration in DURATIONS {
            let old = before.and_then(|b| b.durations[duration as usize]);
            let new = after.durations[duration as usize];
            if old == new && same_grids {
                continue;
            }
            if let (Some(old), Some(before)) = (old, before) {
                for grid in &before.grids {
                    let series = self.series.entry((*grid, duration)).or_default();
                    series.removed.push((old, report));
                }
            }
            if let Some(new) = new {
                for grid in &after.grids {
                    let series = self.series.entry((*grid, duration)).or_default();
                    series.added.push((new, report));
                }
            }
        }
    }

    /// Writes the changes: counters, the duration sets, and each changed
    /// series' middle moved to where it now is.
    pub(super) async fn write(
        self,
        transaction: &Transaction<'_>,
        schema: &str,
        community: Uuid,
    ) -> Result<(), ProjectionError> {
        let open: Vec<(Uuid, i64)> = self.open.into_iter().filter(|(_, n)| *n != 0).collect();
        if !open.is_empty() {
            let sql = format!(
                "INSERT INTO {schema}.grid_ledgers (community_id, grid_id, open) \
                 SELECT $1, * FROM unnest($2::uuid[], $3::bigint[]) \
                 ON CONFLICT (community_id, grid_id) DO UPDATE \
                 SET open = {schema}.grid_ledgers.open + excluded.open"
            );
            execute(
                transaction,
                &sql,
                &[&community, &column(&open, |o| o.0), &column(&open, |o| o.1)],
            )
            .await?;
        }
        let (removed, added) = (&self.moments_removed, &self.moments_added);
        change_grid_set(
            transaction,
            schema,
            "grid_moments",
            "at",
            community,
            removed,
            added,
        )
        .await?;
        if self.series.is_empty() {
            return Ok(());
        }
        let (mut removed, mut added) = (Vec::new(), Vec::new());
        for ((grid, duration), change) in &self.series {
            let kind = *duration as i16;
            let row = |(value, report): &Element| (*grid, kind, *value, *report);
            removed.extend(change.removed.iter().map(row));
            added.extend(change.added.iter().map(row));
        }
        let (removed, added) = (&removed, &added);
        change_grid_set(
            transaction,
            schema,
            "grid_durations",
            "duration_us",
            community,
            removed,
            added,
        )
        .await?;
        let keys: Vec<(Uuid, Duration)> = self.series.keys().copied().collect();
        let mut middles = load_middles(transaction, schema, community, &keys).await?;
        let mut written = Vec::with_capacity(keys.len());
        for (key, change) in self.series {
            let before = middles.remove(&key).unwrap_or_default();
            let after = move_middle(transaction, schema, community, key, before, change).await?;
            written.push((key, after));
        }
        store_middles(transaction, schema, community, &written).await
    }
}

/// A row of a set kept per grid and kind (`grid_durations`,
/// `grid_moments`): grid, kind, value, report.
type GridSetRow = (Uuid, i16, i64, Uuid);

/// Takes `removed` out of the set table `table` (whose value column is
/// `value`) and puts `added` in: one statement each.
async fn change_grid_set(
    transaction: &Transaction<'_>,
    schema: &str,
    table: &str,
    value: &str,
    community: Uuid,
    removed: &[GridSetRow],
    added: &[GridSetRow],
) -> Result<(), ProjectionError> {
    let unnest = "unnest($2::uuid[], $3::smallint[], $4::bigint[], $5::uuid[])";
    for (rows, sql) in [
        (
            removed,
            delete_probed(
                &format!("{schema}.{table}"),
                &format!("{unnest} AS x(grid_id, kind, {value}, report_id)"),
                &format!(
                    "grid_id = x.grid_id AND kind = x.kind AND {value} = x.{value} \
                     AND report_id = x.report_id"
                ),
            ),
        ),
        (
            added,
            format!(
                "INSERT INTO {schema}.{table} (community_id, grid_id, kind, {value}, report_id) \
                 SELECT $1, * FROM {unnest}"
            ),
        ),
    ] {
        if rows.is_empty() {
            continue;
        }
        execute(
            transaction,
            &sql,
            &[
                &community,
                &column(rows, |r| r.0),
                &column(rows, |r| r.1),
                &column(rows, |r| r.2),
                &column(rows, |r| r.3),
            ],
        )
        .await?;
    }
    Ok(())
}

/// A series' size and its middle: the element at rank `(n - 1) / 2` (the
/// lower middle), and the median of the series.
#[derive(Clone, Copy, Debug, Default)]
struct Middle {
    n: i64,
    lower: Option<Element>,
    median: Option<i64>,
}

async fn load_middles(
    transaction: &Transaction<'_>,
    schema: &str,
    community: Uuid,
    keys: &[(Uuid, Duration)],
) -> Result<HashMap<(Uuid, Duration), Middle>, ProjectionError> {
    let sql = format!(
        "SELECT m.grid_id, m.kind, m.n, m.lower_us, m.lower_report, m.median_us \
         FROM {schema}.grid_medians m \
         JOIN unnest($2::uuid[], $3::smallint[]) AS k(grid_id, kind) \
             ON m.grid_id = k.grid_id AND m.kind = k.kind \
         WHERE m.community_id = $1"
    );
    let rows = query(
        transaction,
        &sql,
        &[
            &community,
            &column(keys, |k| k.0),
            &column(keys, |k| k.1 as i16),
        ],
    )
    .await?;
    Ok(rows
        .iter()
        .map(|row| {
            let kind = if row.get::<_, i16>(1) == 0 {
                Duration::FirstResponse
            } else {
                Duration::Resolution
            };
            let lower = match (row.get(3), row.get(4)) {
                (Some(us), Some(report)) => Some((us, report)),
                _ => None,
            };
            let middle = Middle {
                n: row.get(2),
                lower,
                median: row.get(5),
            };
            ((row.get(0), kind), middle)
        })
        .collect())
}

async fn store_middles(
    transaction: &Transaction<'_>,
    schema: &str,
    community: Uuid,
    middles: &[((Uuid, Duration), Middle)],
) -> Result<(), ProjectionError> {
    let sql = format!(
        "INSERT INTO {schema}.grid_medians \
         (community_id, grid_id, kind, n, lower_us, lower_report, median_us) \
         SELECT $1, * FROM unnest($2::uuid[], $3::smallint[], $4::bigint[], $5::bigint[], \
             $6::uuid[], $7::bigint[]) \
         ON CONFLICT (community_id, grid_id, kind) DO UPDATE SET n = excluded.n, \
             lower_us = excluded.lower_us, lower_report = excluded.lower_report, \
             median_us = excluded.median_us"
    );
    execute(
        transaction,
        &sql,
        &[
            &community,
            &column(middles, |m| m.0 .0),
            &column(middles, |m| m.0 .1 as i16),
            &column(middles, |m| m.1.n),
            &column(middles, |m| m.1.lower.map(|l| l.0)),
            &column(middles, |m| m.1.lower.map(|l| l.1)),
            &column(middles, |m| m.1.median),
        ],
    )
    .await?;
    Ok(())
}

/// The series' middle after `change` (already written to the set): found
/// from the old middle by stepping over as many elements as the change
/// shifted it, so the cost is the batch's, not the series'.
async fn move_middle(
    transaction: &Transaction<'_>,
    schema: &str,
    community: Uuid,
    (grid, duration): (Uuid, Duration),
    before: Middle,
    change: SeriesChange,
) -> Result<Middle, ProjectionError> {
    let n = before.n + change.added.len() as i64 - change.removed.len() as i64;
    if n <= 0 {
        return Ok(Middle::default());
    }
    let target = (n - 1) / 2;
    let series = Series {
        transaction,
        schema,
        community,
        grid,
        kind: duration as i16,
    };
    let (lower, upper) = match before.lower {
        // The set was empty: it is what was added.
        None => {
            let mut added = change.added;
            added.sort_unstable();
            let at = target as usize;
            (
                first(&added[at.min(added.len())..])?,
                added.get(at + 1).copied(),
            )
        }
        Some(middle) => {
            // Elements now before the old middle (which may be gone).
            let below = |list: &[Element]| list.iter().filter(|e| **e < middle).count() as i64;
            let before_middle = (before.n - 1) / 2 + below(&change.added) - below(&change.removed);
            if target >= before_middle {
                let found = series.step(">=", middle, target - before_middle).await?;
                (first(&found)?, found.get(1).copied())
            } else {
                let found = series.step("<", middle, before_middle - 1 - target).await?;
                let lower = first(&found)?;
                let upper = series.step(">", lower, 0).await?.first().copied();
                (lower, upper)
            }
        }
    };
    let median = if n % 2 == 1 {
        lower.0
    } else {
        let upper = upper.map_or(lower.0, |u| u.0);
        (lower.0 + upper).div_euclid(2)
    };
    Ok(Middle {
        n,
        lower: Some(lower),
        median: Some(median),
    })
}

/// One series of the set, to step through.
struct Series<'t, 'c> {
    transaction: &'t Transaction<'c>,
    schema: &'t str,
    community: Uuid,
    grid: Uuid,
    kind: i16,
}

impl Series<'_, '_> {
    /// The (up to) two elements after skipping `skip` of those `comparison`
    /// `at`, going up from it, or down for `<`.
    async fn step(
        &self,
        comparison: &str,
        at: Element,
        skip: i64,
    ) -> Result<Vec<Element>, ProjectionError> {
        let order = if comparison == "<" { "DESC" } else { "ASC" };
        let sql = format!(
            "SELECT duration_us, report_id FROM {}.grid_durations \
             WHERE community_id = $1 AND grid_id = $2 AND kind = $3 \
                 AND (duration_us, report_id) {comparison} ($4, $5) \
             ORDER BY duration_us {order}, report_id {order} OFFSET $6 LIMIT 2",
            self.schema
        );
        let rows = query(
            self.transaction,
            &sql,
            &[&self.community, &self.grid, &self.kind, &at.0, &at.1, &skip],
        )
        .await?;
        Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
    }
}

/// The element a step must find: the set holds as many as its count says.
fn first(found: &[Element]) -> Result<Element, ProjectionError> {
    found
        .first()
        .copied()
        .ok_or_else(|| ProjectionError::Unwritable {
            table: "grid_durations".to_string(),
            reason: "a grid's durations hold fewer elements than its median counts".to_string(),
        })
}
