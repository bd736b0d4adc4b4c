//! The open reports at a site, looked up for many filings at once.
//!
//! Every report filed at a site asks the reports model which reports are
//! open there (the first half of the duplicate check). Asked one filing at a
//! time, that was a transaction per filing: under a load of filings the
//! check cost as much as everything else a filing does, and halved the
//! filing rate (docs/adr/0019). The lookups of one community are gathered
//! as the writer gathers appends: while one statement runs, the filings
//! that arrive wait for the next, which answers all of them from one
//! snapshot of the model. Nobody waits for company: a lookup with none
//! running starts at once.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use deadpool_postgres::Pool;
use store::CommunityId;
use tokio::sync::oneshot;
use uuid::Uuid;

use super::queries::{folded_checkpoint, OPEN_STATES};
use super::NAME;
use crate::error::ProjectionError;
use crate::generation::reading_schema;
use crate::sql::query_generic;

/// Lookups answered by one statement at most (the rest wait for the next).
const LOOKUPS_PER_STATEMENT_MAX: usize = 256;

/// One filing's question: the newest open reports (at most `limit`) at
/// `site` in `category` submitted at or after `since`.
#[derive(Clone, Debug, PartialEq)]
pub struct OpenReportsAsked {
    pub site: Uuid,
    pub category: String,
    pub since: i64,
    pub limit: i64,
}

/// The answer: the position the model had folded, and the open reports it
/// held then, newest first.
pub type OpenReportsFolded = (i64, Vec<Uuid>);

type Waiting = (
    OpenReportsAsked,
    oneshot::Sender<Result<OpenReportsFolded, ProjectionError>>,
);

/// Gathers the concurrent lookups of each community into one statement.
/// Clones share the gathering.
#[derive(Clone, Default)]
pub struct OpenReportLookups {
    /// Per community with a statement running, the lookups that wait for
    /// the next one. A community is here exactly while its task runs.
    waiting: Arc<Mutex<HashMap<CommunityId, Vec<Waiting>>>>,
}

impl OpenReportLookups {
    /// Answers `asked` with the lookups of the community that arrive while
    /// the statement before runs. Its own task runs the statements, so a
    /// caller that gives up (a client gone) leaves the others answered.
    pub async fn open_reports(
        &self,
        pool: &Pool,
        community: CommunityId,
        asked: OpenReportsAsked,
    ) -> Result<OpenReportsFolded, ProjectionError> {
        let (reply, answer) = oneshot::channel();
        let start = {
            let mut waiting = self.lock();
            match waiting.get_mut(&community) {
                Some(queue) => {
                    queue.push((asked, reply));
                    false
                }
                None => {
                    waiting.insert(community, vec![(asked, reply)]);
                    true
                }
            }
        };
        if start {
            let (lookups, pool) = (self.clone(), pool.clone());
            tokio::spawn(async move { lookups.answer_until_none_wait(&pool, community).await });
        }
        answer
            .await
            .map_err(|_| ProjectionError::Pool("the open-report lookup stopped".into()))?
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<CommunityId, Vec<Waiting>>> {
        self.waiting
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Runs one statement for everything waiting, then the next, until a
    /// turn finds nobody waiting.
    async fn answer_until_none_wait(&self, pool: &Pool, community: CommunityId) {
        // Whatever else ends this task (a panic), the community is left to
        // the next caller, and whoever still waits is answered (their
        // replies dropped: an error).
        let mut leave = Leave {
            lookups: self,
            community,
            armed: true,
        };
        loop {
            let batch: Vec<Waiting> = {
                let mut waiting = self.lock();
                let queue = waiting.entry(community).or_default();
                if queue.is_empty() {
                    // Under the lock: a caller after this starts a task of
                    // its own, whose entry this one must not take away.
                    waiting.remove(&community);
                    leave.armed = false;
                    return;
                }
                let take = queue.len().min(LOOKUPS_PER_STATEMENT_MAX);
                queue.drain(..take).collect()
            };
            let asked: Vec<&OpenReportsAsked> = batch.iter().map(|(asked, _)| asked).collect();
            match open_reports_folded_many(pool, community, &asked).await {
                Ok(answers) => {
                    for ((_, reply), answer) in batch.into_iter().zip(answers) {
                        // A caller that gave up is no one's concern.
                        let _ = reply.send(Ok(answer));
                    }
                }
                Err(error) => {
                    for (_, reply) in batch {
                        let _ = reply.send(Err(error.clone()));
                    }
                }
            }
        }
    }
}

/// Takes the community out of the gathering when its task ends other
/// than by finding nobody waiting (which takes it out itself, disarmed).
struct Leave<'a> {
    lookups: &'a OpenReportLookups,
    community: CommunityId,
    armed: bool,
}

impl Drop for Leave<'_> {
    fn drop(&mut self) {
        if self.armed {
            self.lookups.lock().remove(&self.community);
        }
    }
}

/// Each of `asked` answered from one snapshot of the reports model: the
/// position it had folded, and the reports it held open then at the site
/// in the category submitted at or after `since`, newest first. One
/// statement; each question probes the index of open reports by site
/// (`reports (community_id, site_id, category, submitted_at DESC) WHERE
/// state IN …`) once, on the statement's generic plan.
async fn open_reports_folded_many(
    pool: &Pool,
    community: CommunityId,
    asked: &[&OpenReportsAsked],
) -> Result<Vec<OpenReportsFolded>, ProjectionError> {
    let schema = reading_schema(NAME);
    let sql = format!(
        "WITH {} \
         SELECT f.position, a.i, o.report_id FROM folded f \
         CROSS JOIN unnest($2::int4[], $3::uuid[], $4::text[], $5::int8[], $6::int8[]) \
             AS a(i, site, category, since, at_most) \
         LEFT JOIN LATERAL (SELECT r.report_id, r.submitted_at FROM {schema}.reports r \
             WHERE r.community_id = $1 AND r.site_id = a.site AND r.category = a.category \
             AND r.submitted_at >= a.since AND r.state IN {OPEN_STATES} \
             ORDER BY r.submitted_at DESC LIMIT a.at_most) AS o ON true \
         ORDER BY a.i, o.submitted_at DESC",
        folded_checkpoint("$7")
    );
    let count = i32::try_from(asked.len()).map_err(|_| ProjectionError::Invalid {
        field: "lookups",
        reason: "too many at once".into(),
    })?;
    let numbers: Vec<i32> = (0..count).collect();
    let sites: Vec<Uuid> = asked.iter().map(|a| a.site).collect();
    let categories: Vec<&str> = asked.iter().map(|a| a.category.as_str()).collect();
    let since: Vec<i64> = asked.iter().map(|a| a.since).collect();
    let limits: Vec<i64> = asked.iter().map(|a| a.limit).collect();
    let rows = query_generic(
        pool,
        &sql,
        &[
            &community.as_uuid(),
            &numbers,
            &sites,
            &categories,
            &since,
            &limits,
            &NAME,
        ],
    )
    .await?;
    let mut answers: Vec<OpenReportsFolded> = vec![(0, Vec::new()); asked.len()];
    for row in &rows {
        let (folded, number): (i64, i32) = (row.get(0), row.get(1));
        let answer = &mut answers[number as usize];
        answer.0 = folded;
        if let Some(report) = row.get::<_, Option<Uuid>>(2) {
            answer.1.push(report);
        }
    }
    Ok(answers)
}
