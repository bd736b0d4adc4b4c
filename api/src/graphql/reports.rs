//! Reports: filing one from a QR page, every step on it after, and the
//! reads over them (lists, one report with its timeline, grid ledgers,
//! statistics). Every list is a Relay connection; every read accepts
//! `atLeast`, a position to read at least as fresh as. The rules are the
//! application's (`app::reports`).

use crate::error::{ApiError, ApiResult};
use crate::graphql::types::*;
use crate::graphql::{app, fresh, page_size, request, viewer};
use app::caller::Viewer;
use app::clock::to_datetime;
use app::content;
use app::reports::{ReportAction, ReportSubmission};
use async_graphql::connection::{Connection, Edge};
use async_graphql::{Context, Enum, InputObject, Object, SimpleObject};
use chrono::{DateTime, Utc};
use domain::report::{RejectionReason, ReportState as DomainState};
use domain::values::{DepartmentId, PersonId, ReportId};
use projections::reports::{
    CategoryMonth, GridLedger, ReportCursor, ReportFilter, ReportRow, TimelineEntry,
};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use store::CommunityId;
use uuid::Uuid;

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

    /// Staff resolve the report, with notes and up to 9 photos (https
    /// links, or ids of photos uploaded to the community).
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

    /// Removes the report's photos for good, resolution photos too: the
    /// links, and the bytes of uploaded photos and their thumbnails (they
    /// answer 410 Gone from then on).
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

#[derive(InputObject, Clone)]
pub struct ReportInput {
    /// The code of the site's QR code; or give coordinates instead.
    pub site_code: Option<String>,
    pub latitude_e6: Option<i64>,
    pub longitude_e6: Option<i64>,
    pub category: String,
    pub text: String,
    /// Up to 9 photos: https links, or ids of photos uploaded to the
    /// community (`POST /communities/{id}/photos`). An uploaded photo
    /// belongs to the one report that names it first.
    #[graphql(default)]
    pub photos: Vec<String>,
    /// Identifies the reporting device of an anonymous report (for rate
    /// limits); stored only as a hash.
    pub client_fingerprint: Option<String>,
}

#[derive(SimpleObject)]
pub struct SubmitReportPayload {
    pub report_id: Uuid,
    pub position: i64,
    /// For an anonymous report only, shown once: claim the report with it
    /// after signing up.
    pub claim_secret: Option<String>,
    /// An open report at the same site and category, likely the same problem.
    pub likely_duplicate_of: Option<Uuid>,
}

impl From<ReportInput> for ReportSubmission {
    fn from(input: ReportInput) -> Self {
        ReportSubmission {
            site_code: input.site_code,
            latitude_e6: input.latitude_e6,
            longitude_e6: input.longitude_e6,
            category: input.category,
            text: input.text,
            photos: input.photos,
            client_fingerprint: input.client_fingerprint,
        }
    }
}

/// A report's state. Open (waiting for work): SUBMITTED, ACCEPTED,
/// ASSIGNED, ESCALATED, IN_PROGRESS. RESOLVED waits for the reporter's (or
/// an inspector's) confirmation; CONFIRMED may be closed or reopened
/// (reopened, it is IN_PROGRESS again). Finished for good: REJECTED, CLOSED,
/// MERGED. Points: the category's on acceptance, the resolution bonus on
/// confirmation. Who moves each state: `docs/REPORTS.md`.
#[derive(Enum, Copy, Clone, Debug, Eq, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ReportState {
    Submitted,
    Accepted,
    Rejected,
    Assigned,
    Escalated,
    InProgress,
    Resolved,
    Confirmed,
    Closed,
    Merged,
}

#[derive(Enum, Copy, Clone, Debug, Eq, PartialEq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EscalationLevel {
    GridWorker,
    Level1GridLead,
    CommunityAdmin,
}

/// What every report mutation returns.
#[derive(SimpleObject)]
pub struct ReportPayload {
    pub report_id: Uuid,
    /// The log position this mutation wrote: pass it as `atLeast` to read
    /// your own write.
    pub position: i64,
    pub state: Option<ReportState>,
}

/// Which reports to list; every field narrows the list.
#[derive(InputObject, Default)]
pub struct ReportFilterInput {
    pub grid_id: Option<Uuid>,
    pub site_id: Option<Uuid>,
    pub category: Option<String>,
    pub states: Option<Vec<ReportState>>,
    pub reporter_id: Option<Uuid>,
    /// Only the caller's own reports.
    pub mine: Option<bool>,
    pub assignee_id: Option<Uuid>,
    pub department_id: Option<Uuid>,
    pub submitted_from: Option<chrono::DateTime<chrono::Utc>>,
    pub submitted_before: Option<chrono::DateTime<chrono::Utc>>,
    /// Only reports past a deadline they still wait for.
    pub overdue: Option<bool>,
}

#[derive(Default)]
pub struct ReportQuery;

#[Object]
impl ReportQuery {
    /// Reports, newest first. Citizens see public fields, and hidden
    /// reports only when they are theirs.
    async fn reports(
        &self,
        ctx: &Context<'_>,
        community_id: Uuid,
        filter: Option<ReportFilterInput>,
        first: Option<i32>,
        after: Option<String>,
        at_least: Option<i64>,
    ) -> ApiResult<Connection<String, ReportNode>> {
        let viewer = viewer(ctx);
        let claims = viewer.member_of(community_id)?;
        let limit = page_size(first)?;
        let after = after.as_deref().map(decode_cursor).transpose()?;
        fresh(ctx, projections::reports::NAME, community_id, at_least).await?;
        let filter = filter.unwrap_or_default();
        let now = app(ctx).commands.clock().now().micros();
        let reporter = match filter.mine {
            Some(true) => Some(claims.sub),
            _ => filter.reporter_id,
        };
        if reporter.is_some_and(|r| r != claims.sub) && !sees_hidden(claims) {
            return Err(ApiError::forbidden("only staff list reports by reporter"));
        }
        let query = ReportFilter {
            community: Some(CommunityId::new(community_id)),
            grid: filter.grid_id,
            site: filter.site_id,
            category: filter.category,
            states: filter
                .states
                .map(|states| states.into_iter().map(name_of).collect()),
            reporter,
            assignee: filter.assignee_id,
            department: filter.department_id,
            submitted_from: filter.submitted_from.map(|t| t.timestamp_micros()),
            submitted_before: filter.submitted_before.map(|t| t.timestamp_micros()),
            overdue_at: filter.overdue.filter(|o| *o).map(|_| now),
            include_hidden: sees_hidden(claims),
            hidden_visible_to: Some(claims.sub),
        };
        let cursor = after.map(|(submitted_at, report_id)| ReportCursor {
            submitted_at,
            report_id,
        });
        let rows = projections::reports::list_reports(
            &app(ctx).reads,
            CommunityId::new(community_id),
            &query,
            cursor,
            limit + 1,
            at_least,
        )
        .await?;
        let has_next = rows.len() as i64 > limit;
        let mut connection = Connection::new(after.is_some(), has_next);
        connection
            .edges
            .extend((0..rows.len().min(limit as usize)).map(|index| {
                let row = SharedRow::of(&rows, index);
                let cursor = encode_cursor(row.submitted_at, row.report_id);
                Edge::new(cursor, ReportNode::new(row, viewer))
            }));
        Ok(connection)
    }

    /// One report with its timeline.
    async fn report(
        &self,
        ctx: &Context<'_>,
        community_id: Uuid,
        report_id: Uuid,
        at_least: Option<i64>,
    ) -> ApiResult<ReportNode> {
        let viewer = viewer(ctx);
        let claims = viewer.member_of(community_id)?;
        fresh(ctx, projections::reports::NAME, community_id, at_least).await?;
        let pool = app(ctx).commands.store().pool();
        let row = projections::reports::report(pool, CommunityId::new(community_id), report_id)
            .await?
            .filter(|row| !row.hidden || sees_hidden(claims) || row.reporter_id == Some(claims.sub))
            .ok_or_else(|| ApiError::not_found(format!("report {report_id}")))?;
        Ok(ReportNode::new(row, viewer))
    }

    /// Each grid's problem ledger (or one grid's).
    async fn grid_ledgers(
        &self,
        ctx: &Context<'_>,
        community_id: Uuid,
        grid_id: Option<Uuid>,
        at_least: Option<i64>,
    ) -> ApiResult<Vec<GridLedgerNode>> {
        viewer(ctx).member_of(community_id)?;
        fresh(ctx, projections::reports::NAME, community_id, at_least).await?;
        let app = app(ctx);
        let now = app.commands.clock().now().micros();
        let ledgers = projections::reports::grid_ledgers(
            &app.reads,
            CommunityId::new(community_id),
            grid_id,
            now,
            at_least,
        )
        .await?;
        Ok(ledgers.iter().cloned().map(GridLedgerNode::from).collect())
    }

    /// Received, accepted, resolved, escalated and reopened reports per
    /// category and month (`YYYY-MM`, the community's calendar).
    async fn statistics(
        &self,
        ctx: &Context<'_>,
        community_id: Uuid,
        from_month: Option<String>,
        to_month: Option<String>,
        at_least: Option<i64>,
    ) -> ApiResult<Vec<CategoryMonthNode>> {
        viewer(ctx).member_of(community_id)?;
        for month in [&from_month, &to_month].into_iter().flatten() {
            parse_month(month)?;
        }
        fresh(ctx, projections::reports::NAME, community_id, at_least).await?;
        let rows = projections::reports::statistics(
            &app(ctx).reads,
            CommunityId::new(community_id),
            from_month.as_deref(),
            to_month.as_deref(),
            at_least,
        )
        .await?;
        Ok(rows.iter().cloned().map(CategoryMonthNode::from).collect())
    }
}

#[derive(Default)]
pub struct SubmitReportMutation;

#[Object]
impl SubmitReportMutation {
    /// Reports a problem from a site's QR code (or at coordinates). Open to
    /// anonymous callers, who receive a claim secret.
    async fn submit_report(
        &self,
        ctx: &Context<'_>,
        community_id: Uuid,
        report: ReportInput,
    ) -> ApiResult<SubmitReportPayload> {
        let filed = app(ctx)
            .submit_report(&request(ctx), community_id, &report.into())
            .await?;
        Ok(SubmitReportPayload {
            report_id: filed.report.0,
            position: filed.position,
            claim_secret: filed.claim_secret,
            likely_duplicate_of: filed.likely_duplicate_of.map(|r| r.0),
        })
    }
}

/// A report as its viewer may see it.
pub struct ReportNode {
    pub row: SharedRow,
    /// The viewer may see who reported it.
    pub privileged: bool,
}

/// A report's row, shared with the page it came from: a kept page is shown
/// to many callers and is not copied for each of them.
pub struct SharedRow {
    rows: Arc<Vec<ReportRow>>,
    index: usize,
}

impl SharedRow {
    /// Row `index` of `rows`.
    pub fn of(rows: &Arc<Vec<ReportRow>>, index: usize) -> Self {
        assert!(index < rows.len(), "a row of the page");
        SharedRow {
            rows: rows.clone(),
            index,
        }
    }
}

impl From<ReportRow> for SharedRow {
    fn from(row: ReportRow) -> Self {
        SharedRow::of(&Arc::new(vec![row]), 0)
    }
}

impl std::ops::Deref for SharedRow {
    type Target = ReportRow;
    fn deref(&self) -> &ReportRow {
        &self.rows[self.index]
    }
}

impl ReportNode {
    pub fn new(row: impl Into<SharedRow>, viewer: &Viewer) -> Self {
        let row = row.into();
        let privileged = sees_reporter(claims_of(viewer), row.reporter_id);
        ReportNode { row, privileged }
    }

    fn community(&self) -> CommunityId {
        CommunityId::new(self.row.community_id)
    }
}

#[Object(name = "Report")]
impl ReportNode {
    async fn id(&self) -> Uuid {
        self.row.report_id
    }
    async fn community_id(&self) -> Uuid {
        self.row.community_id
    }
    async fn grid_id(&self) -> Uuid {
        self.row.grid_id
    }
    /// The level 1 grid the report's grid lies in (itself for a level 1 grid).
    async fn level1_grid_id(&self) -> Uuid {
        self.row.level1_grid_id
    }
    async fn site_id(&self) -> Option<Uuid> {
        self.row.site_id
    }
    async fn site_code(&self) -> Option<&str> {
        self.row.site_code.as_deref()
    }
    async fn latitude_e6(&self) -> Option<i32> {
        self.row.latitude_e6
    }
    async fn longitude_e6(&self) -> Option<i32> {
        self.row.longitude_e6
    }
    async fn category(&self) -> &str {
        &self.row.category
    }
    async fn state(&self) -> Option<ReportState> {
        from_name(&self.row.state)
    }
    /// What the reporter wrote; null once redacted or erased.
    async fn text(&self, ctx: &Context<'_>) -> ApiResult<Option<String>> {
        if self.row.text_redacted {
            return Ok(None);
        }
        content::text_of(
            app(ctx).commands.store(),
            self.community(),
            &self.row.text_hash,
        )
        .await
        .map_err(ApiError::from)
    }
    /// The photos: their https links, then each uploaded photo's path on
    /// this server (`/photos/{id}`; its thumbnail at
    /// `/photos/{id}/thumbnail`). Empty once redacted or erased.
    async fn photos(&self, ctx: &Context<'_>) -> ApiResult<Vec<String>> {
        match (&self.row.photos_hash, self.row.photos_redacted) {
            (Some(hash), false) => {
                content::photos_of(app(ctx).commands.store(), self.community(), hash)
                    .await
                    .map_err(ApiError::from)
            }
            _ => Ok(Vec::new()),
        }
    }
    async fn photo_count(&self) -> i32 {
        self.row.photo_count
    }
    async fn text_redacted(&self) -> bool {
        self.row.text_redacted
    }
    async fn photos_redacted(&self) -> bool {
        self.row.photos_redacted
    }
    /// Hidden from public view by a moderator.
    async fn hidden(&self) -> bool {
        self.row.hidden
    }
    /// True when reported without an account (and not claimed since).
    async fn anonymous(&self) -> bool {
        self.row.anonymous
    }
    /// The reporter's pseudonymous id: for staff, auditors and the reporter.
    async fn reporter_id(&self) -> Option<Uuid> {
        self.row.reporter_id.filter(|_| self.privileged)
    }
    /// The reporter's display name, unless they hid it (or reported
    /// anonymously).
    async fn reporter_name(&self, ctx: &Context<'_>) -> ApiResult<Option<String>> {
        let Some(reporter) = self.row.reporter_id else {
            return Ok(None);
        };
        if self.row.reporter_name_hidden && !self.privileged {
            return Ok(None);
        }
        let names = app(ctx)
            .commands
            .store()
            .display_names(self.community(), &[reporter])
            .await?;
        Ok(names.get(&reporter).cloned())
    }
    async fn reporter_name_hidden(&self) -> bool {
        self.row.reporter_name_hidden
    }
    async fn assignee_id(&self) -> Option<Uuid> {
        self.row.assignee_id
    }
    async fn department_id(&self) -> Option<Uuid> {
        self.row.department_id
    }
    async fn escalation(&self) -> Option<EscalationLevel> {
        from_name(&self.row.escalation)
    }
    /// Residents who added their support ("me too").
    async fn supporters(&self) -> i32 {
        self.row.supporters
    }
    /// The reporter and the reporters of duplicates merged into it.
    async fn reporters(&self) -> i32 {
        self.row.reporters
    }
    async fn reopen_count(&self) -> i32 {
        self.row.reopen_count
    }
    async fn comment_count(&self) -> i32 {
        self.row.comments
    }
    /// An open report at the same site and category this one likely repeats.
    async fn likely_duplicate_of(&self, ctx: &Context<'_>) -> ApiResult<Option<ReportNode>> {
        self.related(ctx, self.row.likely_duplicate_of).await
    }
    async fn merged_into(&self, ctx: &Context<'_>) -> ApiResult<Option<ReportNode>> {
        self.related(ctx, self.row.merged_into).await
    }
    async fn submitted_at(&self) -> DateTime<Utc> {
        to_datetime(self.row.submitted_at)
    }
    async fn first_response_due(&self) -> DateTime<Utc> {
        to_datetime(self.row.first_response_due)
    }
    async fn resolution_due(&self) -> DateTime<Utc> {
        to_datetime(self.row.resolution_due)
    }
    async fn first_response_at(&self) -> Option<DateTime<Utc>> {
        self.row.first_response_at.map(to_datetime)
    }
    async fn resolved_at(&self) -> Option<DateTime<Utc>> {
        self.row.resolved_at.map(to_datetime)
    }
    async fn closed_at(&self) -> Option<DateTime<Utc>> {
        self.row.closed_at.map(to_datetime)
    }
    async fn first_response_missed(&self) -> bool {
        self.row.first_response_missed
    }
    async fn resolution_missed(&self) -> bool {
        self.row.resolution_missed
    }
    /// Past a deadline it is still waiting for, by the server's clock.
    async fn overdue(&self, ctx: &Context<'_>) -> bool {
        self.row
            .is_overdue(app(ctx).commands.clock().now().micros())
    }
    /// The position of the last event folded into this view.
    async fn position(&self) -> i64 {
        self.row.last_position
    }
    /// Every step, oldest first: who (for those who may see it), when, what.
    async fn timeline(&self, ctx: &Context<'_>) -> ApiResult<Vec<TimelineEntryNode>> {
        let pool = app(ctx).commands.store().pool();
        let entries =
            projections::reports::timeline(pool, self.community(), self.row.report_id).await?;
        let claims = claims_of(super::viewer(ctx));
        Ok(entries
            .into_iter()
            .map(|entry| {
                let actor_is_staff = entry
                    .actor_role
                    .as_deref()
                    .is_some_and(|role| !matches!(role, "citizen"));
                let shows_actor = self.privileged
                    || actor_is_staff
                    || (entry.actor_id.is_some() && entry.actor_id == claims.map(|c| c.sub));
                TimelineEntryNode {
                    community: self.community(),
                    shows_actor,
                    // Details name other residents (supporters, claimants):
                    // staff only, not even the reporter.
                    shows_detail: is_report_staff(claims),
                    entry,
                }
            })
            .collect())
    }
}

impl ReportNode {
    async fn related(
        &self,
        ctx: &Context<'_>,
        report: Option<Uuid>,
    ) -> ApiResult<Option<ReportNode>> {
        let Some(report) = report else {
            return Ok(None);
        };
        let pool = app(ctx).commands.store().pool();
        let row = projections::reports::report(pool, self.community(), report).await?;
        let viewer = super::viewer(ctx);
        let claims = claims_of(viewer);
        Ok(row
            .filter(|row| {
                !row.hidden || is_report_staff(claims) || sees_reporter(claims, row.reporter_id)
            })
            .map(|row| ReportNode::new(row, viewer)))
    }
}

pub struct TimelineEntryNode {
    community: CommunityId,
    entry: TimelineEntry,
    shows_actor: bool,
    shows_detail: bool,
}

#[Object(name = "TimelineEntry")]
impl TimelineEntryNode {
    async fn position(&self) -> i64 {
        self.entry.position
    }
    async fn event_type(&self) -> &str {
        &self.entry.event_type
    }
    async fn at(&self) -> DateTime<Utc> {
        to_datetime(self.entry.at)
    }
    async fn actor_role(&self) -> Option<&str> {
        self.entry.actor_role.as_deref()
    }
    /// Staff are named by pseudonymous id; residents only to those who may
    /// see the reporter.
    async fn actor_id(&self) -> Option<Uuid> {
        self.entry.actor_id.filter(|_| self.shows_actor)
    }
    /// The text that went with the step (a comment, notes, a reason), unless
    /// erased.
    async fn note(&self, ctx: &Context<'_>) -> ApiResult<Option<String>> {
        let hash = ["text", "notes", "reason"]
            .iter()
            .find_map(|field| self.entry.detail.get(field).and_then(|v| v.as_str()));
        let redaction = self.entry.event_type == "ReportTextRedacted";
        match hash {
            Some(hash) if !redaction && hash.len() == 64 => {
                content::text_of(app(ctx).commands.store(), self.community, hash)
                    .await
                    .map_err(ApiError::from)
            }
            _ => Ok(None),
        }
    }
    /// The event's stored fields, for staff and auditors.
    async fn detail(&self) -> Option<async_graphql::Json<serde_json::Value>> {
        self.shows_detail
            .then(|| async_graphql::Json(self.entry.detail.clone()))
    }
}

#[derive(SimpleObject)]
#[graphql(name = "GridLedger")]
pub struct GridLedgerNode {
    pub grid_id: Uuid,
    pub parent_id: Option<Uuid>,
    pub name: String,
    /// Open reports of the grid (a level 1 grid counts the grids inside
    /// it): SUBMITTED, ACCEPTED, ASSIGNED, ESCALATED or IN_PROGRESS. A
    /// RESOLVED or CONFIRMED report waits for confirmation, not for work,
    /// and is not open.
    pub open: i64,
    /// SUBMITTED reports past their first-response deadline, and open
    /// reports past their resolution deadline.
    pub overdue: i64,
    /// Reports whose last resolution falls in the current month of the
    /// community's calendar (each report once).
    pub resolved_this_month: i64,
    /// Median seconds from submission to first response (acceptance or
    /// rejection), over the grid's reports that had one: the middle
    /// duration, or the mean of the two middle ones when their number is
    /// even, each in microseconds with the mean rounded down, then in
    /// whole seconds rounded down. None while no report had a response.
    pub median_first_response_seconds: Option<i64>,
    /// Median seconds from submission to the last resolution, over the
    /// grid's reports resolved and not reopened since; computed as the
    /// first-response median is.
    pub median_resolution_seconds: Option<i64>,
}

impl From<GridLedger> for GridLedgerNode {
    fn from(ledger: GridLedger) -> Self {
        GridLedgerNode {
            grid_id: ledger.grid_id,
            parent_id: ledger.parent_id,
            name: ledger.name,
            open: ledger.open,
            overdue: ledger.overdue,
            resolved_this_month: ledger.resolved_this_month,
            median_first_response_seconds: ledger.median_first_response_us.map(|us| us / 1_000_000),
            median_resolution_seconds: ledger.median_resolution_us.map(|us| us / 1_000_000),
        }
    }
}

#[derive(SimpleObject)]
#[graphql(name = "CategoryMonthStatistics")]
pub struct CategoryMonthNode {
    /// `YYYY-MM` in the community's time zone.
    pub month: String,
    pub category: String,
    /// Reports submitted in the month.
    pub received: i32,
    /// Reports accepted in the month.
    pub accepted: i32,
    /// Distinct reports resolved for the first time in the month: a
    /// resolution after a reopen is not counted again.
    pub resolved: i32,
    /// Escalations to a department and escalations for a missed deadline.
    pub escalated: i32,
    /// Reopenings in the month.
    pub reopened: i32,
}

impl From<CategoryMonth> for CategoryMonthNode {
    fn from(row: CategoryMonth) -> Self {
        CategoryMonthNode {
            month: row.month,
            category: row.category,
            received: row.received,
            accepted: row.accepted,
            resolved: row.resolved,
            escalated: row.escalated,
            reopened: row.reopened,
        }
    }
}
