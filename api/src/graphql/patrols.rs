//! A grid worker's patrol: start, check in at sites by their QR codes,
//! record findings (one may open a report in the same append), end; and
//! patrol duty per month (`app::patrols`).

use crate::error::{ApiError, ApiResult};
use crate::graphql::types::*;
use crate::graphql::{app, fresh, request, viewer};
use app::patrols::{FindingReport, PatrolAction};
use async_graphql::{Context, InputObject, Object, SimpleObject, ID};
use domain::values::Role;
use projections::patrols::PatrolDuty;
use store::CommunityId;
use uuid::Uuid;

#[derive(Default)]
pub struct PatrolMutation;

/// The report a finding opens: the patrol's site (or coordinates), a
/// category, and photos; the finding's text becomes the report's text.
#[derive(InputObject)]
pub struct FindingReportInput {
    pub category: String,
    /// Up to 9 photos: https links, or ids of photos uploaded to the
    /// community.
    #[graphql(default)]
    pub photos: Vec<String>,
    pub latitude_e6: Option<i64>,
    pub longitude_e6: Option<i64>,
}

#[derive(SimpleObject)]
pub struct FindingPayload {
    pub patrol_id: Uuid,
    pub position: i64,
    /// The report the finding opened, if it opened one.
    pub report_id: Option<Uuid>,
}

impl From<FindingReportInput> for FindingReport {
    fn from(input: FindingReportInput) -> Self {
        FindingReport {
            category: input.category,
            photos: input.photos,
            latitude_e6: input.latitude_e6,
            longitude_e6: input.longitude_e6,
        }
    }
}

async fn act(
    ctx: &Context<'_>,
    community_id: Uuid,
    patrol_id: Uuid,
    action: PatrolAction,
) -> ApiResult<Written> {
    let position = app(ctx)
        .act_on_patrol(&request(ctx), community_id, patrol_id, action)
        .await?;
    Ok(Written {
        id: ID(patrol_id.to_string()),
        position,
    })
}

#[Object]
impl PatrolMutation {
    async fn start_patrol(&self, ctx: &Context<'_>, community_id: Uuid) -> ApiResult<Written> {
        let (patrol, position) = app(ctx).start_patrol(&request(ctx), community_id).await?;
        Ok(Written {
            id: ID(patrol.0.to_string()),
            position,
        })
    }

    /// Checks in at a site by the code of its QR code.
    async fn check_in_patrol(
        &self,
        ctx: &Context<'_>,
        community_id: Uuid,
        patrol_id: Uuid,
        site_code: String,
    ) -> ApiResult<Written> {
        act(
            ctx,
            community_id,
            patrol_id,
            PatrolAction::CheckIn { site_code },
        )
        .await
    }

    /// Records what the worker found; with `openReport`, the finding opens
    /// a report in the same append (both or neither).
    async fn record_patrol_finding(
        &self,
        ctx: &Context<'_>,
        community_id: Uuid,
        patrol_id: Uuid,
        text: String,
        site_code: Option<String>,
        open_report: Option<FindingReportInput>,
    ) -> ApiResult<FindingPayload> {
        let recorded = app(ctx)
            .record_patrol_finding(
                &request(ctx),
                community_id,
                patrol_id,
                &text,
                site_code.as_deref(),
                open_report.map(Into::into),
            )
            .await?;
        Ok(FindingPayload {
            patrol_id,
            position: recorded.position,
            report_id: recorded.report.map(|r| r.0),
        })
    }

    async fn end_patrol(
        &self,
        ctx: &Context<'_>,
        community_id: Uuid,
        patrol_id: Uuid,
    ) -> ApiResult<Written> {
        act(ctx, community_id, patrol_id, PatrolAction::End).await
    }
}

#[derive(Default)]
pub struct PatrolQuery;

#[Object]
impl PatrolQuery {
    /// Patrol duty per grid worker in a month (`YYYY-MM`): admins and
    /// auditors see every worker, a grid worker their own.
    async fn patrol_duty(
        &self,
        ctx: &Context<'_>,
        community_id: Uuid,
        month: String,
        worker_id: Option<Uuid>,
        at_least: Option<i64>,
    ) -> ApiResult<Vec<PatrolDutyNode>> {
        let claims = viewer(ctx).with_role(
            community_id,
            &[Role::Admin, Role::Auditor, Role::GridWorker],
        )?;
        parse_month(&month)?;
        let worker = match claims.role {
            Role::GridWorker if worker_id.is_some_and(|w| w != claims.sub) => {
                return Err(ApiError::forbidden("a grid worker sees their own duty"))
            }
            Role::GridWorker => Some(claims.sub),
            _ => worker_id,
        };
        fresh(ctx, projections::patrols::NAME, community_id, at_least).await?;
        let rows = projections::patrols::patrol_duty(
            app(ctx).commands.store().pool(),
            CommunityId::new(community_id),
            &month,
            worker,
        )
        .await?;
        Ok(rows.into_iter().map(PatrolDutyNode::from).collect())
    }
}

#[derive(SimpleObject)]
#[graphql(name = "PatrolDuty")]
pub struct PatrolDutyNode {
    pub worker_id: Uuid,
    pub month: String,
    pub patrols: i64,
    pub ended_patrols: i64,
    pub check_ins: i64,
    pub findings: i64,
    pub patrol_day: Option<i32>,
    /// Null when the community has no fixed patrol day.
    pub fixed_day_kept: Option<bool>,
}

impl From<PatrolDuty> for PatrolDutyNode {
    fn from(duty: PatrolDuty) -> Self {
        PatrolDutyNode {
            worker_id: duty.worker_id,
            month: duty.month,
            patrols: duty.patrols,
            ended_patrols: duty.ended_patrols,
            check_ins: duty.check_ins,
            findings: duty.findings,
            patrol_day: duty.patrol_day,
            fixed_day_kept: duty.fixed_day_kept,
        }
    }
}
