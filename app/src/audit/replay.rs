//! Replay: every read model rebuilt from position zero up to a past
//! position, into scratch generations that are never promoted (the live
//! read models are not touched), then read and dropped.

use projections::generation::{self, Building};
use projections::leaderboards::{Metric, Period};
use projections::{ProjectionError, ProjectionRunner, RunnerConfig};
use serde::Serialize;
use store::{CommunityId, EventStore};

/// The scratch generations of one replay, claimed by its builder until
/// they are discarded: a replay dropped half way (an error, an auditor's
/// interrupt, a killed process) leaves them to the next builder, which
/// drops them ([`generation::discard_abandoned`]).
pub struct Replayed {
    pub community: CommunityId,
    pub position: i64,
    generations: Vec<(&'static str, i32)>,
    builder: generation::Builder,
}

impl Replayed {
    /// The schema a read model was replayed into.
    pub fn schema(&self, projection: &str) -> Option<String> {
        self.generations
            .iter()
            .find(|(name, _)| *name == projection)
            .map(|(name, number)| generation::schema_name(name, *number))
    }

    pub async fn discard(self, store: &EventStore) -> Result<(), ProjectionError> {
        for (name, number) in self.generations {
            generation::discard(store.pool(), name, number).await?;
        }
        Ok(())
    }
}

/// Replays every read model of `community` up to `until` (clamped to the
/// head).
pub async fn replay(
    store: &EventStore,
    community: CommunityId,
    until: i64,
) -> Result<Replayed, ProjectionError> {
    let head = store.head(community).await?;
    let mut replayed = Replayed {
        community,
        position: until.clamp(0, head.position),
        generations: Vec::new(),
        builder: generation::Builder::new(store.pool()).await?,
    };
    for projection in projections::all() {
        let started = replayed
            .builder
            .start(&*projection, Building::Scratch)
            .await;
        match started {
            Ok(number) => replayed.generations.push((projection.name(), number)),
            Err(error) => {
                replayed.discard(store).await?;
                return Err(error);
            }
        }
    }
    // The log is read once; each read model folds on its own connection.
    let runner = ProjectionRunner::new(store.clone(), RunnerConfig::default());
    let folds: Vec<_> = projections::all()
        .into_iter()
        .zip(replayed.generations.iter().map(|(_, number)| *number))
        .collect();
    let filled = runner.fill_all_to(&folds, community, replayed.position, Building::Scratch);
    if let Err(error) = filled.await {
        replayed.discard(store).await?;
        return Err(error);
    }
    Ok(replayed)
}

/// What `audit replay` prints.
#[derive(Serialize)]
pub struct ReplaySummary {
    pub position: i64,
    pub trial_balance: TrialBalanceLine,
    /// The all-time points board, top 20 (resident ids).
    pub points_leaderboard: Vec<(uuid::Uuid, String, i64)>,
    /// Per month and category: received, accepted, resolved, escalated, reopened.
    pub statistics: Vec<(String, String, [i32; 5])>,
}

#[derive(Serialize)]
pub struct TrialBalanceLine {
    pub accounts: Vec<(String, String)>,
    pub wallets: String,
    pub total: String,
}

pub async fn summary(
    store: &EventStore,
    replayed: &Replayed,
) -> Result<ReplaySummary, ProjectionError> {
    let pool = store.pool();
    let client = pool.get().await?;
    let schema = |name| {
        replayed
            .schema(name)
            .ok_or_else(|| ProjectionError::UnknownProjection(name.to_string()))
    };
    let trial = projections::points::trial_balance_in(
        pool,
        &schema(projections::points::NAME)?,
        replayed.community,
    )
    .await?;
    let board = projections::leaderboards::top_in(
        &client,
        &schema(projections::leaderboards::NAME)?,
        replayed.community,
        (Metric::Points, None, Period::AllTime),
        20,
    )
    .await?;
    let statistics = projections::reports::statistics_in(
        &client,
        &schema(projections::reports::NAME)?,
        replayed.community,
        None,
        None,
    )
    .await?;
    Ok(ReplaySummary {
        position: replayed.position,
        trial_balance: TrialBalanceLine {
            accounts: trial
                .accounts
                .into_iter()
                .map(|(account, balance)| (account, balance.to_string()))
                .collect(),
            wallets: trial.wallets_total.to_string(),
            total: trial.total.to_string(),
        },
        points_leaderboard: board
            .into_iter()
            .map(|standing| {
                (
                    standing.resident_id,
                    standing.score.to_string(),
                    standing.rank,
                )
            })
            .collect(),
        statistics: statistics
            .into_iter()
            .map(|month| {
                (
                    month.month,
                    month.category,
                    [
                        month.received,
                        month.accepted,
                        month.resolved,
                        month.escalated,
                        month.reopened,
                    ],
                )
            })
            .collect(),
    })
}
