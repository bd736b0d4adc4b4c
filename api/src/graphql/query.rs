//! Reads: the community's set-up, reports, grid ledgers, statistics,
//! suggestions and patrol duty. Every list is a Relay connection; every
//! read accepts `atLeast`, a position to read at least as fresh as.

use async_graphql::connection::{Connection, Edge};
use async_graphql::{Context, InputObject, Object};
use domain::values::{Role, SiteCode};
use projections::reports::{ReportCursor, ReportFilter};
use projections::suggestions::SuggestionFilter;
use store::CommunityId;
use uuid::Uuid;

use super::types::*;
use super::{app, fresh, page_size, viewer};
use crate::error::{ApiError, ApiResult};
use app::caller::{Claims, Viewer};

#[derive(Default)]
pub struct CoreQuery;

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

#[derive(InputObject, Default)]
pub struct SuggestionFilterInput {
    pub site_id: Option<Uuid>,
    pub state: Option<String>,
    pub outcome: Option<String>,
    pub mine: Option<bool>,
}

fn encode_cursor(at: i64, id: Uuid) -> String {
    format!("{at}:{id}")
}

pub(super) fn decode_cursor(cursor: &str) -> ApiResult<(i64, Uuid)> {
    let parsed = cursor
        .split_once(':')
        .and_then(|(at, id)| Some((at.parse().ok()?, Uuid::parse_str(id).ok()?)));
    parsed.ok_or_else(|| ApiError::validation("after: not a cursor this list gave"))
}

/// Staff roles that see every report, hidden ones included.
fn sees_hidden(claims: &Claims) -> bool {
    is_report_staff(Some(claims))
}

#[Object]
impl CoreQuery {
    /// Who the caller is.
    async fn viewer(&self, ctx: &Context<'_>) -> ApiResult<ViewerNode> {
        match viewer(ctx) {
            Viewer::Anonymous => Ok(ViewerNode {
                signed_in: false,
                person_id: None,
                role: None,
                community_id: None,
            }),
            Viewer::Member(claims) => Ok(ViewerNode {
                signed_in: true,
                person_id: Some(claims.sub),
                role: Some(claims.role.into()),
                community_id: Some(claims.community),
            }),
            Viewer::Refused(error) => Err(error.clone().into()),
        }
    }

    /// The site behind a QR code: what a reporting page shows first. Open
    /// to anonymous callers.
    async fn site(&self, ctx: &Context<'_>, community_id: Uuid, code: String) -> ApiResult<Site> {
        if let Viewer::Refused(error) = viewer(ctx) {
            return Err(error.clone().into());
        }
        let app = app(ctx);
        let community = app
            .directory
            .community(&app.commands, CommunityId::new(community_id))
            .await?;
        let code = SiteCode::parse(&code)?;
        let (id, site) = community
            .site_by_code(&code)
            .ok_or_else(|| ApiError::not_found(format!("no active site with code {code}")))?;
        Ok(site_node(id.0, site))
    }

    /// The community's set-up: grids, sites, categories, departments (and
    /// staff, for staff and auditors).
    async fn community(&self, ctx: &Context<'_>, community_id: Uuid) -> ApiResult<CommunityNode> {
        let claims = viewer(ctx).member_of(community_id)?;
        let app = app(ctx);
        let community = app
            .directory
            .community(&app.commands, CommunityId::new(community_id))
            .await?;
        let staff_visible = claims.role != Role::Citizen;
        Ok(CommunityNode::new(community_id, community, staff_visible))
    }

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
        let pool = app(ctx).commands.store().pool();
        let mut rows = projections::reports::list_reports(pool, &query, cursor, limit + 1).await?;
        let has_next = rows.len() as i64 > limit;
        rows.truncate(limit as usize);
        let mut connection = Connection::new(after.is_some(), has_next);
        connection.edges.extend(rows.into_iter().map(|row| {
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
            app.commands.store().pool(),
            CommunityId::new(community_id),
            grid_id,
            now,
        )
        .await?;
        Ok(ledgers.into_iter().map(GridLedgerNode::from).collect())
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
            app(ctx).commands.store().pool(),
            CommunityId::new(community_id),
            from_month.as_deref(),
            to_month.as_deref(),
        )
        .await?;
        Ok(rows.into_iter().map(CategoryMonthNode::from).collect())
    }

    /// Suggestions with their public answers, newest first.
    async fn suggestions(
        &self,
        ctx: &Context<'_>,
        community_id: Uuid,
        filter: Option<SuggestionFilterInput>,
        first: Option<i32>,
        after: Option<String>,
        at_least: Option<i64>,
    ) -> ApiResult<Connection<String, SuggestionNode>> {
        let claims = viewer(ctx).member_of(community_id)?;
        let limit = page_size(first)?;
        let after = after.as_deref().map(decode_cursor).transpose()?;
        fresh(ctx, projections::suggestions::NAME, community_id, at_least).await?;
        let filter = filter.unwrap_or_default();
        let query = SuggestionFilter {
            site: filter.site_id,
            state: filter.state,
            outcome: filter.outcome,
            submitter: filter.mine.filter(|m| *m).map(|_| claims.sub),
        };
        let community = CommunityId::new(community_id);
        let pool = app(ctx).commands.store().pool();
        let mut rows =
            projections::suggestions::list_suggestions(pool, community, &query, after, limit + 1)
                .await?;
        let has_next = rows.len() as i64 > limit;
        rows.truncate(limit as usize);
        let mut connection = Connection::new(after.is_some(), has_next);
        connection.edges.extend(rows.into_iter().map(|row| {
            let privileged = sees_hidden(claims) || row.submitter_id == Some(claims.sub);
            Edge::new(
                encode_cursor(row.submitted_at, row.suggestion_id),
                SuggestionNode {
                    community,
                    row,
                    privileged,
                },
            )
        }));
        Ok(connection)
    }

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

    /// How far behind the log each read model is, for staff and auditors.
    async fn projection_lag(
        &self,
        ctx: &Context<'_>,
        community_id: Uuid,
    ) -> ApiResult<Vec<ProjectionLag>> {
        let claims = viewer(ctx).member_of(community_id)?;
        if claims.role == Role::Citizen {
            return Err(ApiError::forbidden("for staff and auditors"));
        }
        let app = app(ctx);
        let store = app.commands.store();
        let community = CommunityId::new(community_id);
        let head = store.head(community).await?.position;
        let stalls = app.runner.stalls().of(community);
        let mut names: Vec<&'static str> = projections::all().iter().map(|p| p.name()).collect();
        names.push(app::points::earning::NAME);
        let mut lags = Vec::new();
        for name in names {
            let checkpoint =
                projections::progress::live_checkpoint(store.pool(), name, community).await?;
            let stall = stalls.iter().find(|stall| stall.process == name);
            lags.push(ProjectionLag {
                name: name.to_string(),
                checkpoint,
                head,
                lag: head - checkpoint,
                stuck_at_position: stall.and_then(|stall| stall.position),
                failures: stall.map_or(0, |stall| stall.failures),
            });
        }
        Ok(lags)
    }
}

#[derive(async_graphql::SimpleObject)]
pub struct ProjectionLag {
    /// A read model's name, or `earning` (the earning process).
    pub name: String,
    /// The last position it folded in this community.
    pub checkpoint: i64,
    /// The community's last position.
    pub head: i64,
    /// head - checkpoint.
    pub lag: i64,
    /// Set while it cannot get past this community's event at this
    /// position: it retries with a growing pause, and every other
    /// community goes on. Null while it flows.
    pub stuck_at_position: Option<i64>,
    /// Failed tries at the stuck position in a row (0 while it flows).
    pub failures: u32,
}

fn parse_month(month: &str) -> ApiResult<()> {
    let valid = month.len() == 7
        && month.as_bytes()[4] == b'-'
        && month[..4].parse::<u16>().is_ok()
        && month[5..]
            .parse::<u8>()
            .is_ok_and(|m| (1..=12).contains(&m));
    if valid {
        Ok(())
    } else {
        Err(ApiError::validation("month: YYYY-MM"))
    }
}
