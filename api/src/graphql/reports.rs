//! A report's lifecycle after submission: each mutation names a step
//! (`app::reports::ReportAction`); the application checks the role, the
//! caller's scope against the report, and the domain's rules.

use app::reports::ReportAction;
use async_graphql::{Context, Enum, InputObject, Object};
use domain::report::{RejectionReason, ReportState as DomainState};
use domain::values::{DepartmentId, PersonId, ReportId};
use uuid::Uuid;

use super::types::{ReportPayload, ReportState};
use super::{app, request};
use crate::error::{ApiError, ApiResult};

#[derive(Default)]
pub struct ReportMutation;

#[derive(Enum, Copy, Clone, Eq, PartialEq)]
pub enum RejectionKind {
    DuplicateOf,
    NotActionable,
    OutOfScope,
    Abusive,
}

#[derive(InputObject)]
pub struct RejectionInput {
    pub kind: RejectionKind,
    /// The original, when rejecting a duplicate.
    pub duplicate_of: Option<Uuid>,
}

/// Takes `action` on the report and answers with its new state.
async fn act(
    ctx: &Context<'_>,
    community_id: Uuid,
    report_id: Uuid,
    action: ReportAction,
) -> ApiResult<ReportPayload> {
    let acted = app(ctx)
        .act_on_report(&request(ctx), community_id, report_id, action)
        .await?;
    Ok(ReportPayload {
        report_id,
        position: acted.position,
        state: state_of(acted.report.state),
    })
}

fn state_of(state: DomainState) -> Option<ReportState> {
    serde_json::to_value(state)
        .ok()
        .and_then(|value| serde_json::from_value(value).ok())
}

#[Object]
impl ReportMutation {
    async fn accept_report(
        &self,
        ctx: &Context<'_>,
        community_id: Uuid,
        report_id: Uuid,
    ) -> ApiResult<ReportPayload> {
        act(ctx, community_id, report_id, ReportAction::Accept).await
    }

    async fn reject_report(
        &self,
        ctx: &Context<'_>,
        community_id: Uuid,
        report_id: Uuid,
        reason: RejectionInput,
    ) -> ApiResult<ReportPayload> {
        let reason = match (reason.kind, reason.duplicate_of) {
            (RejectionKind::DuplicateOf, Some(original)) => {
                RejectionReason::DuplicateOf(ReportId(original))
            }
            (RejectionKind::DuplicateOf, None) => {
                return Err(ApiError::validation("duplicate_of: name the original"))
            }
            (RejectionKind::NotActionable, _) => RejectionReason::NotActionable,
            (RejectionKind::OutOfScope, _) => RejectionReason::OutOfScope,
            (RejectionKind::Abusive, _) => RejectionReason::Abusive,
        };
        act(ctx, community_id, report_id, ReportAction::Reject(reason)).await
    }

    /// Assigns a grid worker of the report's grid.
    async fn assign_report(
        &self,
        ctx: &Context<'_>,
        community_id: Uuid,
        report_id: Uuid,
        worker_id: Uuid,
    ) -> ApiResult<ReportPayload> {
        act(
            ctx,
            community_id,
            report_id,
            ReportAction::Assign {
                worker: PersonId(worker_id),
            },
        )
        .await
    }

    /// Escalates to a department: the one named, or the category's.
    async fn escalate_report(
        &self,
        ctx: &Context<'_>,
        community_id: Uuid,
        report_id: Uuid,
        department_id: Option<Uuid>,
    ) -> ApiResult<ReportPayload> {
        act(
            ctx,
            community_id,
            report_id,
            ReportAction::Escalate {
                department: department_id.map(DepartmentId),
            },
        )
        .await
    }

    async fn start_work(
        &self,
        ctx: &Context<'_>,
        community_id: Uuid,
        report_id: Uuid,
    ) -> ApiResult<ReportPayload> {
        act(ctx, community_id, report_id, ReportAction::StartWork).await
    }

    async fn resolve_report(
        &self,
        ctx: &Context<'_>,
        community_id: Uuid,
        report_id: Uuid,
        notes: String,
        #[graphql(default)] photos: Vec<String>,
    ) -> ApiResult<ReportPayload> {
        act(
            ctx,
            community_id,
            report_id,
            ReportAction::Resolve { notes, photos },
        )
        .await
    }

    /// The reporter or an inspector confirms the problem is gone.
    async fn confirm_report(
        &self,
        ctx: &Context<'_>,
        community_id: Uuid,
        report_id: Uuid,
    ) -> ApiResult<ReportPayload> {
        act(ctx, community_id, report_id, ReportAction::Confirm).await
    }

    async fn reopen_report(
        &self,
        ctx: &Context<'_>,
        community_id: Uuid,
        report_id: Uuid,
        reason: String,
    ) -> ApiResult<ReportPayload> {
        act(
            ctx,
            community_id,
            report_id,
            ReportAction::Reopen { reason },
        )
        .await
    }

    async fn close_report(
        &self,
        ctx: &Context<'_>,
        community_id: Uuid,
        report_id: Uuid,
    ) -> ApiResult<ReportPayload> {
        act(ctx, community_id, report_id, ReportAction::Close).await
    }

    async fn comment_on_report(
        &self,
        ctx: &Context<'_>,
        community_id: Uuid,
        report_id: Uuid,
        text: String,
    ) -> ApiResult<ReportPayload> {
        act(ctx, community_id, report_id, ReportAction::Comment { text }).await
    }

    /// Links an anonymous report to the signed-in resident, with the
    /// secret its QR page received.
    async fn claim_report(
        &self,
        ctx: &Context<'_>,
        community_id: Uuid,
        report_id: Uuid,
        claim_secret: String,
    ) -> ApiResult<ReportPayload> {
        act(
            ctx,
            community_id,
            report_id,
            ReportAction::Claim {
                secret: claim_secret,
            },
        )
        .await
    }

    /// "Me too": a resident supports an open report instead of filing another.
    async fn support_report(
        &self,
        ctx: &Context<'_>,
        community_id: Uuid,
        report_id: Uuid,
    ) -> ApiResult<ReportPayload> {
        act(ctx, community_id, report_id, ReportAction::Support).await
    }

    /// Merges a duplicate into its original: the duplicate closes, the
    /// original counts one more reporter.
    async fn merge_report(
        &self,
        ctx: &Context<'_>,
        community_id: Uuid,
        report_id: Uuid,
        original_id: Uuid,
    ) -> ApiResult<ReportPayload> {
        act(
            ctx,
            community_id,
            report_id,
            ReportAction::MergeInto {
                original: ReportId(original_id),
            },
        )
        .await
    }

    async fn hide_report(
        &self,
        ctx: &Context<'_>,
        community_id: Uuid,
        report_id: Uuid,
        reason: String,
    ) -> ApiResult<ReportPayload> {
        act(ctx, community_id, report_id, ReportAction::Hide { reason }).await
    }

    async fn unhide_report(
        &self,
        ctx: &Context<'_>,
        community_id: Uuid,
        report_id: Uuid,
    ) -> ApiResult<ReportPayload> {
        act(ctx, community_id, report_id, ReportAction::Unhide).await
    }

    /// Removes the report's text for good (the event keeps its hash).
    async fn redact_report_text(
        &self,
        ctx: &Context<'_>,
        community_id: Uuid,
        report_id: Uuid,
    ) -> ApiResult<ReportPayload> {
        act(ctx, community_id, report_id, ReportAction::RedactText).await
    }

    /// Removes the report's photo links for good, resolution photos too.
    async fn redact_report_photos(
        &self,
        ctx: &Context<'_>,
        community_id: Uuid,
        report_id: Uuid,
    ) -> ApiResult<ReportPayload> {
        act(ctx, community_id, report_id, ReportAction::RedactPhotos).await
    }

    /// The reporter hides their name from the public.
    async fn hide_reporter_name(
        &self,
        ctx: &Context<'_>,
        community_id: Uuid,
        report_id: Uuid,
    ) -> ApiResult<ReportPayload> {
        act(ctx, community_id, report_id, ReportAction::HideReporterName).await
    }
}
