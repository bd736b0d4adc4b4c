//! The schema's output types.

use async_graphql::{ComplexObject, Context, Enum, Object, SimpleObject, ID};
use chrono::{DateTime, Utc};
use domain::community::Community;
use projections::patrols::PatrolDuty;
use projections::reports::{CategoryMonth, GridLedger, ReportRow, TimelineEntry};
use projections::suggestions::SuggestionRow;
use serde::{Deserialize, Serialize};
use store::CommunityId;
use uuid::Uuid;

use super::app;
use crate::error::{ApiError, ApiResult};
use app::caller::{Claims, Viewer};
use app::clock::to_datetime;
use app::content;
pub use app::reports::{is_report_staff, sees_reporter};

/// The read model's name of a schema enum value, e.g. `in_progress`.
pub fn name_of<T: Serialize>(value: T) -> String {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::String(name)) => name,
        _ => String::new(),
    }
}

/// Parses a read model's state name into a schema enum.
fn from_name<T: for<'de> Deserialize<'de>>(name: &str) -> Option<T> {
    serde_json::from_value(serde_json::Value::String(name.to_string())).ok()
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

#[derive(Enum, Copy, Clone, Debug, Eq, PartialEq)]
#[graphql(remote = "domain::values::Role")]
pub enum RoleName {
    Citizen,
    GridWorker,
    Department,
    Clerk,
    Admin,
    Auditor,
    Inspector,
}

#[derive(Enum, Copy, Clone, Debug, Eq, PartialEq)]
#[graphql(remote = "domain::community::SiteKind")]
pub enum SiteKindName {
    RiverBank,
    Outfall,
    MicroSpace,
    ParkGate,
    StreetCorner,
}

pub fn claims_of(viewer: &Viewer) -> Option<&Claims> {
    match viewer {
        Viewer::Member(claims) => Some(claims),
        _ => None,
    }
}

/// A report as its viewer may see it.
pub struct ReportNode {
    pub row: ReportRow,
    /// The viewer may see who reported it.
    pub privileged: bool,
}

impl ReportNode {
    pub fn new(row: ReportRow, viewer: &Viewer) -> Self {
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
    /// Photo links; empty once redacted or erased.
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
    /// Median seconds from submission to first response.
    pub median_first_response_seconds: Option<i64>,
    /// Median seconds from submission to resolution.
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

pub struct SuggestionNode {
    pub community: CommunityId,
    pub row: SuggestionRow,
    pub privileged: bool,
}

#[Object(name = "Suggestion")]
impl SuggestionNode {
    async fn id(&self) -> Uuid {
        self.row.suggestion_id
    }
    async fn site_id(&self) -> Uuid {
        self.row.site_id
    }
    async fn text(&self, ctx: &Context<'_>) -> ApiResult<Option<String>> {
        content::text_of(
            app(ctx).commands.store(),
            self.community,
            &self.row.text_hash,
        )
        .await
        .map_err(ApiError::from)
    }
    async fn anonymous(&self) -> bool {
        self.row.anonymous
    }
    async fn submitter_id(&self) -> Option<Uuid> {
        self.row.submitter_id.filter(|_| self.privileged)
    }
    /// `submitted`, `under_review` or `answered`.
    async fn state(&self) -> &str {
        &self.row.state
    }
    /// `adopted`, `partly_adopted` or `declined`, once answered.
    async fn outcome(&self) -> Option<&str> {
        self.row.outcome.as_deref()
    }
    /// The community's public answer.
    async fn answer(&self, ctx: &Context<'_>) -> ApiResult<Option<String>> {
        match &self.row.answer_hash {
            Some(hash) => content::text_of(app(ctx).commands.store(), self.community, hash)
                .await
                .map_err(ApiError::from),
            None => Ok(None),
        }
    }
    async fn submitted_at(&self) -> DateTime<Utc> {
        to_datetime(self.row.submitted_at)
    }
    async fn answered_at(&self) -> Option<DateTime<Utc>> {
        self.row.answered_at.map(to_datetime)
    }
    async fn position(&self) -> i64 {
        self.row.last_position
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

#[derive(SimpleObject)]
pub struct Grid {
    pub id: Uuid,
    pub name: String,
    pub parent_id: Option<Uuid>,
}

#[derive(SimpleObject)]
pub struct Site {
    pub id: Uuid,
    pub name: String,
    pub kind: SiteKindName,
    /// The short code printed in the site's QR code.
    pub code: String,
    pub grid_id: Uuid,
    pub latitude_e6: Option<i32>,
    pub longitude_e6: Option<i32>,
    pub active: bool,
}

#[derive(SimpleObject)]
pub struct Category {
    pub code: String,
    pub name: String,
    pub first_response_hours: u32,
    pub resolution_hours: u32,
    pub department_id: Option<Uuid>,
    /// Points for an accepted report, as a decimal string.
    pub accepted_report_points: String,
}

#[derive(SimpleObject)]
pub struct Department {
    pub id: Uuid,
    pub name: String,
}

#[derive(SimpleObject)]
pub struct StaffMember {
    pub person_id: Uuid,
    pub role: RoleName,
    pub grid_ids: Vec<Uuid>,
    pub department_id: Option<Uuid>,
}

#[derive(SimpleObject)]
#[graphql(complex, name = "Community")]
pub struct CommunityNode {
    pub id: Uuid,
    pub name: String,
    pub time_zone: String,
    pub patrol_day: Option<u8>,
    pub duplicate_window_hours: u32,
    pub grids: Vec<Grid>,
    pub sites: Vec<Site>,
    pub categories: Vec<Category>,
    pub departments: Vec<Department>,
    #[graphql(skip)]
    pub staff_visible: bool,
    #[graphql(skip)]
    pub community: std::sync::Arc<Community>,
}

#[ComplexObject]
impl CommunityNode {
    /// Staff by pseudonymous id: for staff and auditors.
    async fn staff(&self) -> Vec<StaffMember> {
        if !self.staff_visible {
            return Vec::new();
        }
        self.community
            .staff
            .iter()
            .map(|(person, member)| StaffMember {
                person_id: person.0,
                role: member.role.into(),
                grid_ids: member.grids.iter().map(|g| g.0).collect(),
                department_id: member.department.map(|d| d.0),
            })
            .collect()
    }
}

impl CommunityNode {
    pub fn new(id: Uuid, community: std::sync::Arc<Community>, staff_visible: bool) -> Self {
        let c = &community;
        CommunityNode {
            id,
            name: c.name.clone(),
            time_zone: c.time_zone.clone(),
            patrol_day: c.patrol_day,
            duplicate_window_hours: c.duplicate_window_hours,
            grids: c
                .grids
                .iter()
                .map(|(id, grid)| Grid {
                    id: id.0,
                    name: grid.name.clone(),
                    parent_id: grid.parent.map(|p| p.0),
                })
                .collect(),
            sites: c
                .sites
                .iter()
                .map(|(id, site)| site_node(id.0, site))
                .collect(),
            categories: c
                .categories
                .iter()
                .map(|(code, category)| Category {
                    code: code.to_string(),
                    name: category.name.clone(),
                    first_response_hours: category.first_response_hours,
                    resolution_hours: category.resolution_hours,
                    department_id: category.department.map(|d| d.0),
                    accepted_report_points: super::amount(category.accepted_report_points),
                })
                .collect(),
            departments: c
                .departments
                .iter()
                .map(|(id, name)| Department {
                    id: id.0,
                    name: name.clone(),
                })
                .collect(),
            staff_visible,
            community: community.clone(),
        }
    }
}

pub fn site_node(id: Uuid, site: &domain::community::Site) -> Site {
    Site {
        id,
        name: site.name.clone(),
        kind: site.kind.into(),
        code: site.code.to_string(),
        grid_id: site.grid.0,
        latitude_e6: site.point.map(|p| p.latitude_e6()),
        longitude_e6: site.point.map(|p| p.longitude_e6()),
        active: site.active,
    }
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

/// What a mutation that creates or changes something returns.
#[derive(SimpleObject)]
pub struct Written {
    /// The id of what was created or changed.
    pub id: ID,
    pub position: i64,
}

/// Who the caller is, as the server sees their token.
#[derive(SimpleObject)]
pub struct ViewerNode {
    pub signed_in: bool,
    pub person_id: Option<Uuid>,
    pub role: Option<RoleName>,
    pub community_id: Option<Uuid>,
}
