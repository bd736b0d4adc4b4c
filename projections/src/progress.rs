//! How far each projection has folded each community, for queries that must
//! read at least as fresh as a position their client wrote.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use deadpool_postgres::Pool;
use store::CommunityId;
use tokio::sync::watch;

use crate::error::ProjectionError;

/// Re-checks the stored checkpoint this often while waiting, for runners in
/// other processes whose progress this process does not hear about.
const RECHECK_MS: u64 = 50;

/// The latest checkpoint per projection and community.
type Checkpoints = HashMap<(&'static str, CommunityId), watch::Sender<i64>>;

/// Checkpoints published by this process's runner, shared with the API.
#[derive(Clone, Default)]
pub struct Progress {
    checkpoints: Arc<Mutex<Checkpoints>>,
}

impl Progress {
    fn sender(&self, projection: &'static str, community: CommunityId) -> watch::Sender<i64> {
        let mut checkpoints = self
            .checkpoints
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        checkpoints
            .entry((projection, community))
            .or_insert_with(|| watch::channel(0).0)
            .clone()
    }

    pub(crate) fn publish(&self, projection: &'static str, community: CommunityId, position: i64) {
        self.sender(projection, community).send_replace(position);
    }

    /// Waits until the live generation of `projection` has folded
    /// `community` up to `position`, at most `timeout`. True when it has.
    pub async fn wait_for(
        &self,
        pool: &Pool,
        projection: &'static str,
        community: CommunityId,
        position: i64,
        timeout: Duration,
    ) -> Result<bool, ProjectionError> {
        let mut local = self.sender(projection, community).subscribe();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if *local.borrow_and_update() >= position
                || live_checkpoint(pool, projection, community).await? >= position
            {
                return Ok(true);
            }
            let recheck = tokio::time::sleep(Duration::from_millis(RECHECK_MS));
            tokio::select! {
                _ = local.changed() => {}
                _ = recheck => {}
                _ = tokio::time::sleep_until(deadline) => return Ok(false),
            }
        }
    }
}

/// The checkpoint of projection `$1`'s live generation for community `$2`
/// (no row when none).
pub(crate) const LIVE_CHECKPOINT: &str = "SELECT c.position FROM projection_checkpoints c \
    JOIN projection_generations g USING (projection, generation) \
    WHERE c.projection = $1 AND g.state = 'live' AND c.community_id = $2";

/// The stored checkpoint of the live generation (0 when none).
pub async fn live_checkpoint(
    pool: &Pool,
    projection: &str,
    community: CommunityId,
) -> Result<i64, ProjectionError> {
    let client = pool.get().await?;
    let statement = client.prepare_cached(LIVE_CHECKPOINT).await?;
    let row = client
        .query_opt(&statement, &[&projection, &community.as_uuid()])
        .await?;
    Ok(row.map_or(0, |row| row.get(0)))
}

/// Lag of each live projection: for every community, its head position
/// minus the checkpoint; the largest per projection.
pub async fn lag_by_projection(pool: &Pool) -> Result<Vec<(String, i64)>, ProjectionError> {
    let client = pool.get().await?;
    let rows = client
        .query(
            "SELECT g.projection, coalesce(max(h.last_position - coalesce(c.position, 0)), 0) \
             FROM projection_generations g \
             CROSS JOIN community_heads h \
             LEFT JOIN projection_checkpoints c ON c.projection = g.projection \
                 AND c.generation = g.generation AND c.community_id = h.community_id \
             WHERE g.state = 'live' GROUP BY g.projection ORDER BY g.projection",
            &[],
        )
        .await?;
    Ok(rows.iter().map(|row| (row.get(0), row.get(1))).collect())
}
