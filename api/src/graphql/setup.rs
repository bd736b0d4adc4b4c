//! Setting a community up: an admin of the community registers it, adds
//! grids, sites, departments, categories and staff.

use std::collections::BTreeSet;

use async_graphql::{Context, InputObject, Object, ID};
use domain::community::{Category, CommunityCommand, PointsRules, Site, StaffMember};
use domain::values::{
    Actor, CategoryCode, CentreId, DepartmentId, GridId, PersonId, SiteCode, SiteId, Timestamp,
};
use uuid::Uuid;

use super::types::{RoleName, SiteKindName, Written};
use super::{app, decimal, meta, request};
use crate::error::ApiResult;
use app::community::optional_point;

#[derive(Default)]
pub struct SetupMutation;

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

fn written(id: Uuid, position: i64) -> Written {
    Written {
        id: ID(id.to_string()),
        position,
    }
}

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
        let details = Site {
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
        let details = Category {
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
        let member = StaffMember {
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
