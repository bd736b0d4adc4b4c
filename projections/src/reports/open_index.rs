//! The reports a new filing may duplicate, kept in memory per community.
//!
//! The duplicate check asks, for every report filed at a site, for the
//! newest open report there in its category within the community's window.
//! Asked of PostgreSQL, even gathered (`lookups`), a filing waited a round
//! trip for it before its own append, and filing ran at 0.41× the raw
//! commit ceiling against 0.52× without the check (docs/adr/0020). Here
//! each community's answer is kept: loaded once from the reports model
//! (the reports submitted in the window that can still be open: open,
//! resolved or confirmed), then moved along the log, event by event, from
//! this process's tail of the log where it holds them and from the log in
//! PostgreSQL where it does not (another process wrote). When more was
//! appended since the last lookup than the tail holds and the model has
//! folded most of it (a burst of acceptances with no filing, say), the
//! community is loaded again from the model rather than read from the log
//! event by event. A lookup applies what was appended since the last one
//! and answers from memory.
//!
//! What is kept is bounded: a community with more such reports than
//! [`KEPT_REPORTS_MAX`], or whose model is further behind its log than
//! [`CATCH_UP_EVENTS_MAX`], is not kept (the check asks PostgreSQL) and is
//! tried again after [`NOT_KEPT_RETRY`].

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use domain::report::{Place, ReportEvent, ReportState};
use domain::streams::StreamKind;
use store::{CommunityId, EventStore, RecordedEvent};
use uuid::Uuid;

use super::lookups::OpenReportsAsked;
use super::queries::{folded_checkpoint, SUBMITTED};
use super::NAME;
use crate::error::ProjectionError;
use crate::generation::reading_schema;
use crate::progress::live_checkpoint;
use crate::runner::{entity_id, kind};
use crate::sql::query;

/// Reports a community may keep here (about 200 bytes each).
pub const KEPT_REPORTS_MAX: usize = 100_000;
/// Events read from PostgreSQL to bring a community up to its log's end,
/// at most; a model further behind is being rebuilt, and the check asks
/// PostgreSQL until it has caught up.
pub const CATCH_UP_EVENTS_MAX: i64 = 50_000;
/// How long a community that could not be kept is left to PostgreSQL.
pub const NOT_KEPT_RETRY: Duration = Duration::from_secs(10);
/// Reports submitted this long before the first window asked are kept
/// too, so filings a moment apart share one load; forgotten reports are
/// pruned when the window has moved this far past them.
const HORIZON_SLACK_MICROS: i64 = 3_600 * 1_000_000;
/// Events read from PostgreSQL at a time when catching up.
const CATCH_UP_BATCH_SIZE: i64 = 1_000;

/// The answer of the index for one filing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NewestOpen {
    /// The newest open report at the site, in the category, in the window.
    Report(Uuid),
    /// The index holds the community and no report there is open.
    NoneOpen,
    /// The community is not kept here: ask PostgreSQL.
    NotKept,
}

/// The communities' kept reports. Clones share them.
#[derive(Clone, Default)]
pub struct OpenReportIndex {
    communities: Arc<Mutex<HashMap<CommunityId, Arc<tokio::sync::Mutex<Entry>>>>>,
}

#[derive(Default)]
enum Entry {
    #[default]
    Unloaded,
    Kept(Kept),
    NotKeptUntil(Instant),
}

/// One community's reports that may be open now or later, as of `through`.
struct Kept {
    /// Every event of the community's log up to here is applied.
    through: i64,
    /// Every such report submitted at or after this is held.
    horizon: i64,
    reports: HashMap<Uuid, Held>,
    /// The held reports by site and category, oldest first: by submission
    /// time, then by the submission's position in the log (0 for reports
    /// loaded from the model, which all come before those applied since;
    /// among them a tie is broken by id, as the model cannot tell).
    at_site: HashMap<(Uuid, String), BTreeSet<Newness>>,
}

/// A held report's place in its site's order: submission time, the
/// submission's position in the log, the report.
type Newness = (i64, i64, Uuid);

#[derive(Clone, Debug)]
struct Held {
    site: Uuid,
    category: String,
    submitted_at: i64,
    submitted_position: i64,
    state: ReportState,
}

impl OpenReportIndex {
    /// The newest report open now at `asked.site` in `asked.category`
    /// submitted at or after `asked.since`, other than `other_than`, as
    /// the log stands up to what this process knows of its end.
    pub async fn newest_open(
        &self,
        store: &EventStore,
        community: CommunityId,
        asked: &OpenReportsAsked,
        other_than: Uuid,
    ) -> Result<NewestOpen, ProjectionError> {
        let entry = {
            let mut communities = self
                .communities
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            communities.entry(community).or_default().clone()
        };
        // One lookup of a community at a time: each applies what was
        // appended since the one before. The entry changes only between
        // awaits, so a caller that gives up leaves it whole.
        let mut entry = entry.lock().await;
        if let Entry::NotKeptUntil(until) = *entry {
            if Instant::now() < until {
                return Ok(NewestOpen::NotKept);
            }
            *entry = Entry::Unloaded;
        }
        if let Entry::Kept(kept) = &*entry {
            if asked.since < kept.horizon {
                // The window grew past what was loaded.
                *entry = Entry::Unloaded;
            }
        }
        if let Entry::Unloaded = *entry {
            *entry = match Kept::load(
                store,
                community,
                asked.since.saturating_sub(HORIZON_SLACK_MICROS),
            )
            .await?
            {
                Some(kept) => Entry::Kept(kept),
                None => Entry::NotKeptUntil(Instant::now() + NOT_KEPT_RETRY),
            };
        }
        let Entry::Kept(kept) = &mut *entry else {
            return Ok(NewestOpen::NotKept);
        };
        if !kept.follow(store, community).await? {
            *entry = Entry::NotKeptUntil(Instant::now() + NOT_KEPT_RETRY);
            return Ok(NewestOpen::NotKept);
        }
        kept.prune(asked.since.saturating_sub(HORIZON_SLACK_MICROS));
        Ok(match kept.newest_open(asked, other_than) {
            Some(report) => NewestOpen::Report(report),
            None => NewestOpen::NoneOpen,
        })
    }
}

impl Kept {
    /// The reports model's reports submitted at or after `horizon` that
    /// can still be open, then the log after the model's checkpoint; none
    /// when there are too many or the model is too far behind.
    async fn load(
        store: &EventStore,
        community: CommunityId,
        horizon: i64,
    ) -> Result<Option<Kept>, ProjectionError> {
        let schema = reading_schema(NAME);
        let finals: Vec<String> = [
            ReportState::New,
            ReportState::Rejected,
            ReportState::Closed,
            ReportState::Merged,
        ]
        .iter()
        .map(|state| format!("'{}'", state.serialized()))
        .collect();
        // One statement, so the checkpoint and the rows are one snapshot.
        let sql = format!(
            "WITH {} SELECT f.position, r.report_id, r.site_id, r.category, r.submitted_at, r.state \
             FROM folded f LEFT JOIN (SELECT * FROM {schema}.reports \
                 WHERE community_id = $1 AND site_id IS NOT NULL AND submitted_at >= $2 \
                 AND state NOT IN ({}) LIMIT $4) r ON true",
            folded_checkpoint("$3"),
            finals.join(", ")
        );
        let limit = i64::try_from(KEPT_REPORTS_MAX).unwrap_or(i64::MAX) + 1;
        let client = store.pool().get().await?;
        let rows = query(
            &client,
            &sql,
            &[&community.as_uuid(), &horizon, &NAME, &limit],
        )
        .await?;
        drop(client);
        if rows.len() > KEPT_REPORTS_MAX {
            return Ok(None);
        }
        let mut kept = Kept {
            through: 0,
            horizon,
            reports: HashMap::with_capacity(rows.len()),
            at_site: HashMap::new(),
        };
        for row in &rows {
            kept.through = row.get(0);
            let Some(report) = row.get::<_, Option<Uuid>>(1) else {
                continue;
            };
            let state: String = row.get(5);
            let state =
                serde_json::from_value(serde_json::Value::String(state.clone())).map_err(|_| {
                    ProjectionError::Undecodable {
                        position: kept.through,
                        reason: format!("a report's state {state:?}"),
                    }
                })?;
            let held = Held {
                site: row.get(2),
                category: row.get(3),
                submitted_at: row.get(4),
                submitted_position: 0,
                state,
            };
            kept.hold(report, held);
        }
        let caught_up = kept.read_log(store, community).await?;
        Ok(caught_up.then_some(kept))
    }

    /// Applies what was appended since `through`: from this process's tail
    /// of the log where it holds all of it; otherwise loaded again from
    /// the reports model where that has folded more than a batch of what
    /// is missing, and read from the log in PostgreSQL where it has not.
    /// `false` when the log to read is more than [`CATCH_UP_EVENTS_MAX`]
    /// or the model holds more than [`KEPT_REPORTS_MAX`].
    async fn follow(
        &mut self,
        store: &EventStore,
        community: CommunityId,
    ) -> Result<bool, ProjectionError> {
        let mut failed = None;
        let held = store.visit_tail_after(community, self.through, |event| {
            if failed.is_none() {
                failed = self.apply(event).err();
            }
        });
        if let Some(error) = failed {
            return Err(error);
        }
        if held {
            return Ok(true);
        }
        // Reading the gap from the log costs a read per batch of every
        // event in it, while this community's filings wait; where the
        // reports model has folded more than a batch of it, loading again
        // from the model costs one read of the reports that can be open.
        // The model is asked only when the gap is known to be that long.
        let known_head = *store.head_watch(community).borrow();
        if known_head - self.through > CATCH_UP_BATCH_SIZE
            && live_checkpoint(store.pool(), NAME, community).await? - self.through
                > CATCH_UP_BATCH_SIZE
        {
            return Ok(match Kept::load(store, community, self.horizon).await? {
                Some(kept) => {
                    *self = kept;
                    true
                }
                None => false,
            });
        }
        self.read_log(store, community).await
    }

    /// Applies the log after `through` to its end, read from PostgreSQL;
    /// `false` when that is more than [`CATCH_UP_EVENTS_MAX`].
    async fn read_log(
        &mut self,
        store: &EventStore,
        community: CommunityId,
    ) -> Result<bool, ProjectionError> {
        let mut read = 0;
        let mut batches =
            store.log_batches(community, self.through + 1, i64::MAX, CATCH_UP_BATCH_SIZE);
        while let Some(batch) = batches.next().await? {
            read += i64::try_from(batch.len()).unwrap_or(i64::MAX);
            if read > CATCH_UP_EVENTS_MAX {
                return Ok(false);
            }
            for event in &batch {
                self.apply(event)?;
            }
        }
        Ok(true)
    }

    /// Moves the kept reports by one event of the log, the next one.
    fn apply(&mut self, event: &RecordedEvent) -> Result<(), ProjectionError> {
        assert!(
            event.position > self.through,
            "events applied in order: {} after {}",
            event.position,
            self.through
        );
        self.through = event.position;
        if kind(event) != Some(StreamKind::Report) {
            return Ok(());
        }
        let report = entity_id(event, "report")?;
        let submitted = event.event_type == SUBMITTED;
        if !submitted && !self.reports.contains_key(&report) {
            // Submitted before the horizon, at no site, or final.
            return Ok(());
        }
        let decoded: ReportEvent =
            event
                .decode()
                .map_err(|error| ProjectionError::Undecodable {
                    position: event.position,
                    reason: error.to_string(),
                })?;
        match (&decoded, self.reports.get(&report).map(|held| held.state)) {
            (ReportEvent::ReportSubmitted(submission), None) => {
                let Place::Site { site, .. } = submission.place else {
                    return Ok(());
                };
                if submission.at.micros() >= self.horizon {
                    let held = Held {
                        site: site.0,
                        category: submission.category.as_str().to_string(),
                        submitted_at: submission.at.micros(),
                        submitted_position: event.position,
                        state: ReportState::Submitted,
                    };
                    self.hold(report, held);
                }
            }
            (_, Some(state)) => {
                let after = state.after(&decoded);
                if after.is_final() {
                    self.forget(report);
                } else if let Some(held) = self.reports.get_mut(&report) {
                    held.state = after;
                }
            }
            (_, None) => {}
        }
        Ok(())
    }

    fn hold(&mut self, report: Uuid, held: Held) {
        self.at_site
            .entry((held.site, held.category.clone()))
            .or_default()
            .insert((held.submitted_at, held.submitted_position, report));
        self.reports.insert(report, held);
    }

    fn forget(&mut self, report: Uuid) {
        let Some(held) = self.reports.remove(&report) else {
            return;
        };
        let key = (held.site, held.category);
        if let Some(reports) = self.at_site.get_mut(&key) {
            reports.remove(&(held.submitted_at, held.submitted_position, report));
            if reports.is_empty() {
                self.at_site.remove(&key);
            }
        }
    }

    /// Forgets the reports submitted before `horizon` once the window has
    /// moved well past the one held (a walk over all of them, so not on
    /// every lookup).
    fn prune(&mut self, horizon: i64) {
        if horizon < self.horizon.saturating_add(HORIZON_SLACK_MICROS) {
            return;
        }
        let old: Vec<Uuid> = self
            .reports
            .iter()
            .filter(|(_, held)| held.submitted_at < horizon)
            .map(|(report, _)| *report)
            .collect();
        for report in old {
            self.forget(report);
        }
        self.horizon = horizon;
    }

    fn newest_open(&self, asked: &OpenReportsAsked, other_than: Uuid) -> Option<Uuid> {
        let reports = self.at_site.get(&(asked.site, asked.category.clone()))?;
        reports
            .range((asked.since, i64::MIN, Uuid::nil())..)
            .rev()
            .map(|(_, _, report)| *report)
            .find(|report| {
                *report != other_than
                    && self
                        .reports
                        .get(report)
                        .is_some_and(|held| held.state.is_open())
            })
    }
}
