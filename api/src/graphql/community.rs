//! The community: its set-up (grids, sites, departments, centres,
//! categories, staff and rules, by its admin), what a QR page reads first
//! (the site, the community), who the caller is, and how far behind the
//! log each read model is.

use crate::error::{ApiError, ApiResult};
use crate::graphql::types::*;
use crate::graphql::{app, decimal, meta, request, viewer};
use app::caller::Viewer;
use app::community::optional_point;
use async_graphql::{ComplexObject, Context, Enum, InputObject, Object, SimpleObject, ID};
use domain::community::{Community, CommunityCommand, PointsRules};
use domain::values::{
    Actor, CategoryCode, CentreId, DepartmentId, GridId, PersonId, Role, SiteCode, SiteId,
    Timestamp,
};
use std::collections::BTreeSet;
use store::CommunityId;
use uuid::Uuid;

#[derive(InputObject)]
pub struct SiteInput {
    pub name: String,
    pub kind: SiteKindName,
    /// The short code for the QR code, e.g. `RB-0042`.
    pub code: String,
    pub grid_id: Uuid,
    pub latitude_e6: Option<i64>,
    pub longitude_e6: Option<i64>,
}

#[derive(InputObject)]
pub struct CategoryInput {
    pub code: String,
    pub name: String,
    pub first_response_hours: u32,
    pub resolution_hours: u32,
    /// Where reports of this category are escalated.
    pub department_id: Option<Uuid>,
    /// Points for an accepted report: a decimal string (digits, at most 2
    /// decimals, no sign or exponent), 0 to a billion, like every rule amount.
    pub accepted_report_points: String,
}

#[derive(InputObject)]
pub struct StaffInput {
    pub person_id: Uuid,
    pub role: RoleName,
    /// A grid worker's grids.
    #[graphql(default)]
    pub grid_ids: Vec<Uuid>,
    /// A department member's department.
    pub department_id: Option<Uuid>,
    /// A clerk's centre.
    pub centre_id: Option<Uuid>,
}

/// What residents earn besides a category's points for an accepted report.
/// Amounts are decimal strings by the one grammar of every decimal in: 1 to
/// 10 digits, optionally a point and 1 or 2 digits (`12`, `12.5`, `12.50`;
/// no sign, exponent or underscore), from 0 to a billion; "0" earns
/// nothing. Amounts go out in their shortest form (`12.5`, `0`).
#[derive(InputObject)]
pub struct PointsRulesInput {
    pub resolved_report_bonus: String,
    pub suggestion_adopted: String,
    pub suggestion_partly_adopted: String,
    pub volunteer_hour: String,
    /// The most automatic points a resident earns per day; none: no limit.
    pub daily_limit: Option<String>,
    /// Points expire this many days after they were granted; none: never.
    pub expiry_days: Option<u32>,
    /// Minutes a redemption holds points and stock before it is released.
    #[graphql(default = 15)]
    pub hold_minutes: u32,
    /// Whether staff earn for reports and suggestions they file acting in a
    /// staff role (patrol findings among them). Default false: staff earn
    /// nothing for their own work. Nobody ever earns for a report they
    /// accepted themselves.
    #[graphql(default = false)]
    pub staff_earn: bool,
}

/// Runs a set-up command as the community's admin; returns the position.
async fn run(
    ctx: &Context<'_>,
    community_id: Uuid,
    command: impl Fn(Actor, Timestamp) -> CommunityCommand,
) -> ApiResult<i64> {
    Ok(app(ctx)
        .set_up_community(&request(ctx), community_id, command)
        .await?)
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

/// Who the caller is, as the server sees their token.
#[derive(SimpleObject)]
pub struct ViewerNode {
    pub signed_in: bool,
    pub person_id: Option<Uuid>,
    pub role: Option<RoleName>,
    pub community_id: Option<Uuid>,
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

#[derive(Default)]
pub struct CommunityQuery;

#[Object]
impl CommunityQuery {
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

#[derive(Default)]
pub struct SetupMutation;

#[Object]
impl SetupMutation {
    /// Registers the community the admin's token is for.
    async fn register_community(
        &self,
        ctx: &Context<'_>,
        community_id: Uuid,
        name: String,
        time_zone: Option<String>,
    ) -> ApiResult<Written> {
        let position = app(ctx)
            .register_community(&request(ctx), community_id, &name, time_zone.as_deref())
            .await?;
        Ok(written(community_id, position))
    }

    async fn add_grid(
        &self,
        ctx: &Context<'_>,
        community_id: Uuid,
        name: String,
        parent_id: Option<Uuid>,
    ) -> ApiResult<Written> {
        let grid = app(ctx).new_id(&meta(ctx), "grid");
        let position = run(ctx, community_id, |by, at| CommunityCommand::AddGrid {
            by,
            grid: GridId(grid),
            name: name.clone(),
            parent: parent_id.map(GridId),
            at,
        })
        .await?;
        Ok(written(grid, position))
    }

    async fn add_site(
        &self,
        ctx: &Context<'_>,
        community_id: Uuid,
        site: SiteInput,
    ) -> ApiResult<Written> {
        let point = optional_point(site.latitude_e6, site.longitude_e6)?;
        let details = domain::community::Site {
            name: site.name,
            kind: site.kind.into(),
            code: SiteCode::parse(&site.code)?,
            grid: GridId(site.grid_id),
            point,
            active: true,
        };
        let id = app(ctx).new_id(&meta(ctx), "site");
        let position = run(ctx, community_id, |by, at| CommunityCommand::AddSite {
            by,
            site: SiteId(id),
            details: details.clone(),
            at,
        })
        .await?;
        Ok(written(id, position))
    }

    async fn retire_site(
        &self,
        ctx: &Context<'_>,
        community_id: Uuid,
        site_id: Uuid,
    ) -> ApiResult<Written> {
        let position = run(ctx, community_id, |by, at| CommunityCommand::RetireSite {
            by,
            site: SiteId(site_id),
            at,
        })
        .await?;
        Ok(written(site_id, position))
    }

    async fn add_department(
        &self,
        ctx: &Context<'_>,
        community_id: Uuid,
        name: String,
    ) -> ApiResult<Written> {
        let id = app(ctx).new_id(&meta(ctx), "department");
        let position = run(ctx, community_id, |by, at| {
            CommunityCommand::AddDepartment {
                by,
                department: DepartmentId(id),
                name: name.clone(),
                at,
            }
        })
        .await?;
        Ok(written(id, position))
    }

    /// Adds a community centre with a gift counter.
    async fn add_centre(
        &self,
        ctx: &Context<'_>,
        community_id: Uuid,
        name: String,
    ) -> ApiResult<Written> {
        let id = app(ctx).new_id(&meta(ctx), "centre");
        let position = run(ctx, community_id, |by, at| CommunityCommand::AddCentre {
            by,
            centre: CentreId(id),
            name: name.clone(),
            at,
        })
        .await?;
        Ok(written(id, position))
    }

    async fn set_points_rules(
        &self,
        ctx: &Context<'_>,
        community_id: Uuid,
        rules: PointsRulesInput,
    ) -> ApiResult<Written> {
        let rules = PointsRules {
            resolved_report_bonus: decimal("resolvedReportBonus", &rules.resolved_report_bonus)?,
            suggestion_adopted: decimal("suggestionAdopted", &rules.suggestion_adopted)?,
            suggestion_partly_adopted: decimal(
                "suggestionPartlyAdopted",
                &rules.suggestion_partly_adopted,
            )?,
            volunteer_hour: decimal("volunteerHour", &rules.volunteer_hour)?,
            daily_limit: rules
                .daily_limit
                .as_deref()
                .map(|limit| decimal("dailyLimit", limit))
                .transpose()?,
            expiry_days: rules.expiry_days,
            hold_minutes: rules.hold_minutes,
            staff_earn: rules.staff_earn,
        };
        let position = run(ctx, community_id, |by, at| {
            CommunityCommand::SetPointsRules {
                by,
                rules: rules.clone(),
                at,
            }
        })
        .await?;
        Ok(written(community_id, position))
    }

    async fn define_category(
        &self,
        ctx: &Context<'_>,
        community_id: Uuid,
        category: CategoryInput,
    ) -> ApiResult<Written> {
        let code = CategoryCode::parse(&category.code)?;
        let points = decimal("acceptedReportPoints", &category.accepted_report_points)?;
        let details = domain::community::Category {
            name: category.name,
            first_response_hours: category.first_response_hours,
            resolution_hours: category.resolution_hours,
            department: category.department_id.map(DepartmentId),
            accepted_report_points: points,
        };
        let position = run(ctx, community_id, |by, at| {
            CommunityCommand::DefineCategory {
                by,
                code: code.clone(),
                category: details.clone(),
                at,
            }
        })
        .await?;
        Ok(Written {
            id: ID(code.to_string()),
            position,
        })
    }

    async fn assign_staff(
        &self,
        ctx: &Context<'_>,
        community_id: Uuid,
        staff: StaffInput,
    ) -> ApiResult<Written> {
        let member = domain::community::StaffMember {
            role: staff.role.into(),
            grids: staff
                .grid_ids
                .iter()
                .copied()
                .map(GridId)
                .collect::<BTreeSet<_>>(),
            department: staff.department_id.map(DepartmentId),
            centre: staff.centre_id.map(CentreId),
        };
        let position = run(ctx, community_id, |by, at| CommunityCommand::AssignStaff {
            by,
            person: PersonId(staff.person_id),
            member: member.clone(),
            at,
        })
        .await?;
        Ok(written(staff.person_id, position))
    }

    async fn remove_staff(
        &self,
        ctx: &Context<'_>,
        community_id: Uuid,
        person_id: Uuid,
    ) -> ApiResult<Written> {
        let position = run(ctx, community_id, |by, at| CommunityCommand::RemoveStaff {
            by,
            person: PersonId(person_id),
            at,
        })
        .await?;
        Ok(written(person_id, position))
    }

    /// Corrects the community's time zone (an IANA name the server knows,
    /// such as `Asia/Shanghai`): what it should have been all along. Events
    /// from now on fall in its calendar at once; the read models that keep
    /// months, weeks and days (reports, leaderboards, patrols, points) are
    /// rebuilt through new generations, in the background while the old
    /// ones serve, and then count the whole history in the corrected zone.
    async fn set_time_zone(
        &self,
        ctx: &Context<'_>,
        community_id: Uuid,
        time_zone: String,
    ) -> ApiResult<Written> {
        let position = app(ctx)
            .set_time_zone(&request(ctx), community_id, &time_zone)
            .await?;
        Ok(written(community_id, position))
    }

    /// A fixed day of the month (1 to 28) for patrols, or null for none.
    async fn set_patrol_day(
        &self,
        ctx: &Context<'_>,
        community_id: Uuid,
        day: Option<u8>,
    ) -> ApiResult<Written> {
        let position = run(ctx, community_id, |by, at| CommunityCommand::SetPatrolDay {
            by,
            day,
            at,
        })
        .await?;
        Ok(written(community_id, position))
    }

    /// How long a new report at the same site and category as an open one
    /// is flagged as its likely duplicate.
    async fn set_duplicate_window(
        &self,
        ctx: &Context<'_>,
        community_id: Uuid,
        hours: u32,
    ) -> ApiResult<Written> {
        let position = run(ctx, community_id, |by, at| {
            CommunityCommand::SetDuplicateWindow { by, hours, at }
        })
        .await?;
        Ok(written(community_id, position))
    }
}
