//! The read side (docs/DESIGN.md §6): the projection runner and every read model.
//!
//! A projection folds one community's events, in position order, into its
//! own tables; its checkpoint is written in the same transaction as the
//! change, so a crash never applies an event twice or skips one. Each
//! projection lives in one PostgreSQL schema per generation: a rebuild fills
//! a new generation while the live one keeps serving, then takes its place.
//!
//! Only this crate and `store` know SQL.

pub mod cache;
mod community_info;
pub mod error;
pub mod generation;
pub mod leaderboards;
pub mod patrols;
pub mod points;
pub mod progress;
pub mod reports;
pub mod runner;
mod sql;
pub mod stalls;
pub mod suggestions;

use std::sync::Arc;

pub use cache::{Answer, CacheLimits, Question, ReadCache};
pub use error::ProjectionError;
pub use progress::Progress;
pub use runner::{Change, ProjectionRunner, RunnerConfig};

use async_trait::async_trait;
use deadpool_postgres::{Pool, Transaction};
use domain::streams::StreamKind;
use store::RecordedEvent;

/// A read model: its tables, and how a batch of events changes them.
#[async_trait]
pub trait Projection: Send + Sync + 'static {
    /// A short lowercase name, used in schema names, metrics and the CLI.
    fn name(&self) -> &'static str;

    /// Creates the projection's tables in the schema named `{schema}`.
    fn tables_sql(&self) -> String;

    /// The version of the fold: raised whenever a change to the fold
    /// changes what it stores for the same events (a corrected figure). A
    /// runner that finds the live generation folded by an older version
    /// rebuilds it into a new generation while the old one serves.
    fn fold_version(&self) -> i32 {
        1
    }

    /// The kinds of stream whose events the fold reads; it leaves its
    /// tables as they were for a batch with none of them, so a runner
    /// moves the checkpoint past such a batch without folding it.
    fn streams(&self) -> &'static [StreamKind];

    /// Folds a batch of one community's events (in position order) into the
    /// tables in `schema`, inside the transaction that also moves the
    /// checkpoint. Report-level changes worth telling live subscribers about
    /// go into `changes`. A batch is folded as a whole: the tables must end
    /// as if its events had been folded one by one.
    async fn apply_batch(
        &self,
        transaction: &Transaction<'_>,
        schema: &str,
        events: &[RecordedEvent],
        changes: &mut Vec<Change>,
    ) -> Result<(), ProjectionError>;

    /// Folds a batch into a generation being filled from position zero
    /// (a rebuild's or a replay's), which nobody reads until
    /// [`Projection::finish_fill`]: a read model may stage what is cheaper
    /// to work out once, set-based, than batch by batch. The tables must
    /// end, once finished, as [`Projection::apply_batch`] would leave them.
    async fn fill_batch(
        &self,
        transaction: &Transaction<'_>,
        schema: &str,
        events: &[RecordedEvent],
    ) -> Result<(), ProjectionError> {
        self.apply_batch(transaction, schema, events, &mut Vec::new())
            .await
    }

    /// Completes a generation filled with [`Projection::fill_batch`], once
    /// the fill is complete, before its secondary indexes are built.
    async fn finish_fill(&self, _pool: &Pool, _schema: &str) -> Result<(), ProjectionError> {
        Ok(())
    }
}

/// Every projection of this build.
pub fn all() -> Vec<Arc<dyn Projection>> {
    vec![
        Arc::new(reports::ReportsProjection),
        Arc::new(suggestions::SuggestionsProjection),
        Arc::new(patrols::PatrolsProjection),
        Arc::new(points::PointsProjection),
        Arc::new(leaderboards::LeaderboardsProjection),
    ]
}

/// The projection with this name.
pub fn by_name(name: &str) -> Option<Arc<dyn Projection>> {
    all().into_iter().find(|p| p.name() == name)
}
