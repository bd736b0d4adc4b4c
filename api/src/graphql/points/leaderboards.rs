//! Leaderboards: residents' scores per board and period (display names or
//! anonymised names, never phone numbers), and the grids' standing.

use crate::error::{ApiError, ApiResult};
use crate::graphql::points::*;
use crate::graphql::{app, fresh};
use async_graphql::{Context, Enum, Object, SimpleObject};
use chrono::{DateTime, Utc};
use domain::values::Role;
use projections::leaderboards::{Metric, Period};
use sha2::{Digest, Sha256};
use store::CommunityId;
use uuid::Uuid;

const LEADERBOARD_SIZE_MAX: i32 = 100;

#[derive(Enum, Copy, Clone, Debug, Eq, PartialEq)]
pub enum LeaderboardMetric {
    /// Points earned (granted, less what was reversed), not the balance.
    PointsEarned,
    AcceptedReports,
    AdoptedSuggestions,
    VolunteerHours,
}

#[derive(Enum, Copy, Clone, Debug, Eq, PartialEq)]
pub enum LeaderboardPeriod {
    AllTime,
    /// The calendar month, in the community's time zone.
    Month,
    /// The ISO week (Monday to Sunday), in the community's time zone.
    Week,
}

#[derive(SimpleObject)]
pub struct LeaderboardEntry {
    /// 1 + residents with a higher score; tied residents share a rank.
    pub rank: i64,
    /// The resident's display name, or an anonymised name.
    pub name: String,
    pub score: String,
    /// Only admins and auditors see ids.
    pub resident_id: Option<Uuid>,
    pub is_you: bool,
}

#[derive(SimpleObject)]
pub struct LeaderboardNode {
    pub entries: Vec<LeaderboardEntry>,
    /// The caller's standing (or the resident's asked for), if on the board.
    pub standing: Option<LeaderboardEntry>,
}

#[derive(SimpleObject)]
pub struct GridStandingNode {
    pub rank: i64,
    pub grid_id: Uuid,
    pub name: String,
    pub received: i64,
    pub resolved: i64,
    /// Resolved over received, 0 to 1.
    pub resolution_rate: Option<f64>,
    pub median_resolution_hours: Option<f64>,
}

/// A name for a resident without a display name that does not reveal
/// their id.
fn anonymised(resident: Uuid) -> String {
    let digest = Sha256::digest(resident.as_bytes());
    format!("resident-{}", &hex::encode(digest)[..6])
}

#[derive(Default)]
pub struct LeaderboardQuery;

#[Object]
impl LeaderboardQuery {
    /// Residents ranked on a board of the community (or of a grid). Public.
    #[allow(clippy::too_many_arguments)]
    async fn leaderboard(
        &self,
        ctx: &Context<'_>,
        community_id: Uuid,
        by: LeaderboardMetric,
        period: LeaderboardPeriod,
        grid_id: Option<Uuid>,
        #[graphql(desc = "A moment in the month or week wanted; now by default.")] at: Option<
            DateTime<Utc>,
        >,
        #[graphql(default = 20)] first: i32,
        #[graphql(desc = "Whose standing to show: admins and auditors may ask for anyone.")]
        resident_id: Option<Uuid>,
        at_least: Option<i64>,
    ) -> ApiResult<LeaderboardNode> {
        let claims = public_reader(ctx, community_id)?;
        if !(1..=LEADERBOARD_SIZE_MAX).contains(&first) {
            return Err(ApiError::validation(format!(
                "first: 1 to {LEADERBOARD_SIZE_MAX}"
            )));
        }
        let staff = claims.is_some_and(|c| matches!(c.role, Role::Admin | Role::Auditor));
        let standing_of = match (resident_id, claims) {
            (Some(resident), _) if staff => Some(resident),
            (Some(_), _) => {
                return Err(ApiError::forbidden(
                    "only admins and auditors ask for another resident's standing",
                ))
            }
            (None, Some(claims)) if claims.role == Role::Citizen => Some(claims.sub),
            (None, _) => None,
        };
        fresh(ctx, projections::leaderboards::NAME, community_id, at_least).await?;
        let app = app(ctx);
        let community = CommunityId::new(community_id);
        let at = at.map_or_else(
            || app.commands.clock().now().micros(),
            |at| at.timestamp_micros(),
        );
        let period = match period {
            LeaderboardPeriod::AllTime => Period::AllTime,
            LeaderboardPeriod::Month => Period::Month(at),
            LeaderboardPeriod::Week => Period::Week(at),
        };
        let metric = match by {
            LeaderboardMetric::PointsEarned => Metric::Points,
            LeaderboardMetric::AcceptedReports => Metric::AcceptedReports,
            LeaderboardMetric::AdoptedSuggestions => Metric::AdoptedSuggestions,
            LeaderboardMetric::VolunteerHours => Metric::VolunteerHours,
        };
        let board = projections::leaderboards::board(
            &app.reads,
            community,
            projections::leaderboards::BoardQuestion {
                metric,
                scope: grid_id,
                period,
                limit: i64::from(first),
                standing_of,
            },
            at_least,
        )
        .await?;
        let names = &board.names;
        let you = claims.map(|c| c.sub);
        let entry = |s: projections::leaderboards::Standing| LeaderboardEntry {
            rank: s.rank,
            name: names
                .get(&s.resident_id)
                .cloned()
                .unwrap_or_else(|| anonymised(s.resident_id)),
            score: super::amount(s.score),
            resident_id: staff.then_some(s.resident_id),
            is_you: you == Some(s.resident_id),
        };
        Ok(LeaderboardNode {
            entries: board.top.iter().cloned().map(entry).collect(),
            standing: board.standing.clone().map(entry),
        })
    }

    /// Grids ranked by resolution rate, then median resolution time
    /// ("cleanest street"), for reports received in the period. Public.
    async fn grid_leaderboard(
        &self,
        ctx: &Context<'_>,
        community_id: Uuid,
        period: LeaderboardPeriod,
        at: Option<DateTime<Utc>>,
        at_least: Option<i64>,
    ) -> ApiResult<Vec<GridStandingNode>> {
        public_reader(ctx, community_id)?;
        fresh(ctx, projections::reports::NAME, community_id, at_least).await?;
        let app = app(ctx);
        let at = at.map_or_else(
            || app.commands.clock().now().micros(),
            |at| at.timestamp_micros(),
        );
        let period = match period {
            LeaderboardPeriod::AllTime => "all",
            LeaderboardPeriod::Month => "month",
            LeaderboardPeriod::Week => "week",
        };
        let standings = projections::reports::grid_standings(
            app.commands.store().pool(),
            CommunityId::new(community_id),
            period,
            at,
        )
        .await?;
        Ok(standings
            .into_iter()
            .map(|grid| GridStandingNode {
                rank: grid.rank,
                grid_id: grid.grid_id,
                name: grid.name,
                received: grid.received,
                resolved: grid.resolved,
                resolution_rate: grid.resolution_rate,
                median_resolution_hours: grid
                    .median_resolution_us
                    .map(|us| us as f64 / 3_600_000_000.0),
            })
            .collect())
    }
}
