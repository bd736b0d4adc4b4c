//! Live changes: `reportChanged` for a community or one grid, told after
//! the read model committed the change (so a query on hearing it sees it).

use async_graphql::{Context, SimpleObject, Subscription as SubscriptionTrait};
use futures::{Stream, StreamExt};
use tokio_stream::wrappers::BroadcastStream;
use uuid::Uuid;

use super::reports::ReportState;
use super::types::sees_reporter;
use super::{app, viewer};
use crate::error::ApiError;

pub struct Subscription;

#[derive(SimpleObject, Clone)]
pub struct ReportChange {
    pub report_id: Uuid,
    pub grid_id: Uuid,
    pub level1_grid_id: Uuid,
    pub position: i64,
    pub event_type: String,
    pub state: Option<ReportState>,
}

#[SubscriptionTrait]
impl Subscription {
    /// Every change to a report of the community, or of one grid (a level 1
    /// grid includes the grids inside it). A subscriber too slow to keep up
    /// misses changes rather than holding the server's memory; the lists
    /// tell the whole state.
    async fn report_changed(
        &self,
        ctx: &Context<'_>,
        community_id: Uuid,
        grid_id: Option<Uuid>,
    ) -> Result<impl Stream<Item = ReportChange>, ApiError> {
        let claims = viewer(ctx).member_of(community_id)?.clone();
        let app = app(ctx);
        let changes = BroadcastStream::new(app.runner.subscribe_changes());
        Ok(changes.filter_map(move |change| {
            let change = change.ok().filter(|change| {
                change.community.as_uuid() == community_id
                    && grid_id.is_none_or(|grid| change.grid == grid || change.level1_grid == grid)
                    // The same rule as the report lists: a hidden report
                    // only to staff and to its reporter.
                    && (!change.hidden || sees_reporter(Some(&claims), change.reporter))
            });
            async move {
                change.map(|change| ReportChange {
                    report_id: change.report,
                    grid_id: change.grid,
                    level1_grid_id: change.level1_grid,
                    position: change.position,
                    event_type: change.event_type,
                    state: serde_json::from_value(serde_json::Value::String(change.state)).ok(),
                })
            }
        }))
    }
}
