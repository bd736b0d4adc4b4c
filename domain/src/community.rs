//! A community's set-up: its grids, the sites with QR codes, the categories
//! of problems with their deadlines and points, departments, and staff.

use std::collections::{BTreeMap, BTreeSet};

use cqrs_es::DomainEvent;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::error::DomainError;
use crate::values::{
    Actor, CategoryCode, CentreId, DepartmentId, GeoPoint, GridId, PersonId, Points, Role,
    SiteCode, SiteId, Timestamp,
};

pub const DEFAULT_TIME_ZONE: &str = "Asia/Shanghai";
const NAME_CHARS_MAX: usize = 100;
/// A year: no deadline is longer.
const DEADLINE_HOURS_MAX: u32 = 24 * 366;
const DUPLICATE_WINDOW_HOURS_MAX: u32 = 24 * 30;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SiteKind {
    RiverBank,
    Outfall,
    MicroSpace,
    ParkGate,
    StreetCorner,
}

impl SiteKind {
    /// Whether a suggestion box stands at such a site: at micro-spaces.
    pub fn has_suggestion_box(self) -> bool {
        self == SiteKind::MicroSpace
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Grid {
    pub name: String,
    /// Level 2 grids lie inside a level 1 grid.
    pub parent: Option<GridId>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Site {
    pub name: String,
    pub kind: SiteKind,
    pub code: SiteCode,
    pub grid: GridId,
    pub point: Option<GeoPoint>,
    pub active: bool,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Category {
    pub name: String,
    pub first_response_hours: u32,
    pub resolution_hours: u32,
    pub department: Option<DepartmentId>,
    /// Points a resident earns for an accepted report of this category.
    pub accepted_report_points: Decimal,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StaffMember {
    pub role: Role,
    /// The grids a grid worker works in.
    pub grids: BTreeSet<GridId>,
    /// The department a department's staff member works for.
    pub department: Option<DepartmentId>,
    /// The centre whose counter a clerk serves.
    #[serde(default)]
    pub centre: Option<CentreId>,
}

/// What residents earn, besides a category's points for an accepted report.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PointsRules {
    /// To the reporter when their report is confirmed resolved.
    pub resolved_report_bonus: Decimal,
    pub suggestion_adopted: Decimal,
    pub suggestion_partly_adopted: Decimal,
    /// Per hour of volunteer service recorded by staff.
    pub volunteer_hour: Decimal,
    /// The most automatic points one resident earns in one day of the
    /// community's calendar (anti-farming); none: no limit.
    pub daily_limit: Option<Decimal>,
    /// Points expire this many days after they were granted; none: never.
    pub expiry_days: Option<u32>,
    /// A redemption not completed within this many minutes is released.
    pub hold_minutes: u32,
    /// Whether staff earn for their own work: reports and suggestions they
    /// file acting in a staff role (a grid worker's patrol findings among
    /// them). Off by default: staff earn nothing for their own work. Either
    /// way, nobody earns for a report they accepted themselves.
    #[serde(default)]
    pub staff_earn: bool,
}

impl Default for PointsRules {
    fn default() -> Self {
        PointsRules {
            resolved_report_bonus: Decimal::ZERO,
            suggestion_adopted: Decimal::ZERO,
            suggestion_partly_adopted: Decimal::ZERO,
            volunteer_hour: Decimal::ZERO,
            daily_limit: None,
            expiry_days: None,
            hold_minutes: PointsRules::HOLD_MINUTES_DEFAULT,
            staff_earn: false,
        }
    }
}

impl PointsRules {
    pub const HOLD_MINUTES_DEFAULT: u32 = 15;

    /// Whether `earner` earns for a report or suggestion: not for one they
    /// filed acting in a staff role (unless `staff_earn`), and never for a
    /// report they accepted themselves.
    pub fn earns(
        &self,
        earner: PersonId,
        filed_as_staff: bool,
        accepted_by: Option<PersonId>,
    ) -> bool {
        if accepted_by == Some(earner) {
            return false;
        }
        self.staff_earn || !filed_as_staff
    }
    const HOLD_MINUTES_MAX: u32 = 24 * 60;
    const EXPIRY_DAYS_MAX: u32 = 3_650;

    fn check(&self) -> Result<(), DomainError> {
        let amounts = [
            self.resolved_report_bonus,
            self.suggestion_adopted,
            self.suggestion_partly_adopted,
            self.volunteer_hour,
        ];
        if amounts.iter().any(|amount| !rule_amount_ok(*amount)) {
            return Err(DomainError::validation(
                "points",
                "0 to a billion, at most two decimals",
            ));
        }
        if self
            .daily_limit
            .is_some_and(|limit| limit.is_zero() || !rule_amount_ok(limit))
        {
            return Err(DomainError::validation(
                "daily_limit",
                "more than 0, at most two decimals",
            ));
        }
        if self
            .expiry_days
            .is_some_and(|days| !(1..=Self::EXPIRY_DAYS_MAX).contains(&days))
        {
            return Err(DomainError::validation(
                "expiry_days",
                format!("1 to {}", Self::EXPIRY_DAYS_MAX),
            ));
        }
        if !(1..=Self::HOLD_MINUTES_MAX).contains(&self.hold_minutes) {
            return Err(DomainError::validation(
                "hold_minutes",
                format!("1 to {}", Self::HOLD_MINUTES_MAX),
            ));
        }
        Ok(())
    }
}

/// A rule's amount: zero (earns nothing) or a valid amount of points.
fn rule_amount_ok(amount: Decimal) -> bool {
    amount.is_zero() || Points::parse(amount).is_ok()
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum CommunityCommand {
    Register {
        by: Actor,
        name: String,
        time_zone: Option<String>,
        at: Timestamp,
    },
    AddGrid {
        by: Actor,
        grid: GridId,
        name: String,
        parent: Option<GridId>,
        at: Timestamp,
    },
    AddSite {
        by: Actor,
        site: SiteId,
        details: Site,
        at: Timestamp,
    },
    RetireSite {
        by: Actor,
        site: SiteId,
        at: Timestamp,
    },
    AddDepartment {
        by: Actor,
        department: DepartmentId,
        name: String,
        at: Timestamp,
    },
    DefineCategory {
        by: Actor,
        code: CategoryCode,
        category: Category,
        at: Timestamp,
    },
    AssignStaff {
        by: Actor,
        person: PersonId,
        member: StaffMember,
        at: Timestamp,
    },
    RemoveStaff {
        by: Actor,
        person: PersonId,
        at: Timestamp,
    },
    /// Corrects the community's time zone (an IANA name, looked up by the
    /// caller in the zone database the server ships).
    SetTimeZone {
        by: Actor,
        time_zone: String,
        at: Timestamp,
    },
    /// A fixed day of the month for patrols (1 to 28), or none.
    SetPatrolDay {
        by: Actor,
        day: Option<u8>,
        at: Timestamp,
    },
    SetDuplicateWindow {
        by: Actor,
        hours: u32,
        at: Timestamp,
    },
    AddCentre {
        by: Actor,
        centre: CentreId,
        name: String,
        at: Timestamp,
    },
    SetPointsRules {
        by: Actor,
        rules: PointsRules,
        at: Timestamp,
    },
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum CommunityEvent {
    CommunityRegistered {
        by: Actor,
        name: String,
        time_zone: String,
        at: Timestamp,
    },
    GridAdded {
        by: Actor,
        grid: GridId,
        name: String,
        parent: Option<GridId>,
        at: Timestamp,
    },
    SiteAdded {
        by: Actor,
        site: SiteId,
        details: Site,
        at: Timestamp,
    },
    SiteRetired {
        by: Actor,
        site: SiteId,
        at: Timestamp,
    },
    DepartmentAdded {
        by: Actor,
        department: DepartmentId,
        name: String,
        at: Timestamp,
    },
    CategoryDefined {
        by: Actor,
        code: CategoryCode,
        category: Category,
        at: Timestamp,
    },
    StaffAssigned {
        by: Actor,
        person: PersonId,
        member: StaffMember,
        at: Timestamp,
    },
    StaffRemoved {
        by: Actor,
        person: PersonId,
        at: Timestamp,
    },
    PatrolDaySet {
        by: Actor,
        day: Option<u8>,
        at: Timestamp,
    },
    /// From now on the community's calendar (months, days, weeks of the
    /// read models) is in this zone.
    TimeZoneSet {
        by: Actor,
        time_zone: String,
        at: Timestamp,
    },
    DuplicateWindowSet {
        by: Actor,
        hours: u32,
        at: Timestamp,
    },
    CentreAdded {
        by: Actor,
        centre: CentreId,
        name: String,
        at: Timestamp,
    },
    PointsRulesSet {
        by: Actor,
        rules: PointsRules,
        at: Timestamp,
    },
}

impl DomainEvent for CommunityEvent {
    fn event_type(&self) -> String {
        let name = match self {
            CommunityEvent::CommunityRegistered { .. } => "CommunityRegistered",
            CommunityEvent::GridAdded { .. } => "GridAdded",
            CommunityEvent::SiteAdded { .. } => "SiteAdded",
            CommunityEvent::SiteRetired { .. } => "SiteRetired",
            CommunityEvent::DepartmentAdded { .. } => "DepartmentAdded",
            CommunityEvent::CategoryDefined { .. } => "CategoryDefined",
            CommunityEvent::StaffAssigned { .. } => "StaffAssigned",
            CommunityEvent::StaffRemoved { .. } => "StaffRemoved",
            CommunityEvent::PatrolDaySet { .. } => "PatrolDaySet",
            CommunityEvent::TimeZoneSet { .. } => "TimeZoneSet",
            CommunityEvent::DuplicateWindowSet { .. } => "DuplicateWindowSet",
            CommunityEvent::CentreAdded { .. } => "CentreAdded",
            CommunityEvent::PointsRulesSet { .. } => "PointsRulesSet",
        };
        name.to_string()
    }

    fn event_version(&self) -> String {
        "1".to_string()
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Community {
    pub registered: bool,
    pub name: String,
    pub time_zone: String,
    pub grids: BTreeMap<GridId, Grid>,
    pub sites: BTreeMap<SiteId, Site>,
    pub departments: BTreeMap<DepartmentId, String>,
    pub categories: BTreeMap<CategoryCode, Category>,
    pub staff: BTreeMap<PersonId, StaffMember>,
    pub patrol_day: Option<u8>,
    pub duplicate_window_hours: u32,
    #[serde(default)]
    pub centres: BTreeMap<CentreId, String>,
    #[serde(default)]
    pub points_rules: PointsRules,
}

aggregate!(Community, "Community", CommunityCommand, CommunityEvent);

impl Community {
    /// Applies an event; business rules live in `decide`.
    fn fold(&mut self, event: CommunityEvent) {
        use CommunityEvent::*;
        match event {
            CommunityRegistered {
                name, time_zone, ..
            } => {
                self.registered = true;
                self.name = name;
                self.time_zone = time_zone;
                self.duplicate_window_hours = 24;
            }
            GridAdded {
                grid, name, parent, ..
            } => {
                self.grids.insert(grid, Grid { name, parent });
            }
            SiteAdded { site, details, .. } => {
                self.sites.insert(site, details);
            }
            SiteRetired { site, .. } => {
                if let Some(site) = self.sites.get_mut(&site) {
                    site.active = false;
                }
            }
            DepartmentAdded {
                department, name, ..
            } => {
                self.departments.insert(department, name);
            }
            CategoryDefined { code, category, .. } => {
                self.categories.insert(code, category);
            }
            StaffAssigned { person, member, .. } => {
                self.staff.insert(person, member);
            }
            StaffRemoved { person, .. } => {
                self.staff.remove(&person);
            }
            PatrolDaySet { day, .. } => self.patrol_day = day,
            TimeZoneSet { time_zone, .. } => self.time_zone = time_zone,
            DuplicateWindowSet { hours, .. } => self.duplicate_window_hours = hours,
            CentreAdded { centre, name, .. } => {
                self.centres.insert(centre, name);
            }
            PointsRulesSet { rules, .. } => self.points_rules = rules,
        }
    }

    /// The active site a QR code names.
    pub fn site_by_code(&self, code: &SiteCode) -> Option<(SiteId, &Site)> {
        self.sites
            .iter()
            .find(|(_, site)| site.active && site.code == *code)
            .map(|(id, site)| (*id, site))
    }

    /// The grids a grid worker may act in: theirs and, for a level 1 grid,
    /// the level 2 grids inside it.
    pub fn worker_grids(&self, person: PersonId) -> Vec<GridId> {
        let Some(member) = self
            .staff
            .get(&person)
            .filter(|m| m.role == Role::GridWorker)
        else {
            return Vec::new();
        };
        let mut grids: BTreeSet<GridId> = member.grids.clone();
        for (id, grid) in &self.grids {
            if grid
                .parent
                .is_some_and(|parent| member.grids.contains(&parent))
            {
                grids.insert(*id);
            }
        }
        grids.into_iter().collect()
    }

    fn decide(&self, command: CommunityCommand) -> Result<CommunityEvent, DomainError> {
        use CommunityCommand::*;
        if let Register {
            by,
            name,
            time_zone,
            at,
        } = command
        {
            return self.register(by, name, time_zone, at);
        }
        if !self.registered {
            return Err(DomainError::NotFound("community".into()));
        }
        let by = match &command {
            Register { by, .. }
            | AddGrid { by, .. }
            | AddSite { by, .. }
            | RetireSite { by, .. }
            | AddDepartment { by, .. }
            | DefineCategory { by, .. }
            | AssignStaff { by, .. }
            | RemoveStaff { by, .. }
            | SetPatrolDay { by, .. }
            | SetTimeZone { by, .. }
            | SetDuplicateWindow { by, .. }
            | AddCentre { by, .. }
            | SetPointsRules { by, .. } => *by,
        };
        if by.role != Role::Admin {
            return Err(DomainError::Forbidden(
                "only the community's admin sets it up".into(),
            ));
        }
        match command {
            Register { .. } => unreachable!("handled above"),
            AddGrid {
                by,
                grid,
                name,
                parent,
                at,
            } => self.add_grid(by, grid, name, parent, at),
            AddSite {
                by,
                site,
                details,
                at,
            } => self.add_site(by, site, details, at),
            RetireSite { by, site, at } => match self.sites.get(&site) {
                Some(existing) if existing.active => {
                    Ok(CommunityEvent::SiteRetired { by, site, at })
                }
                Some(_) => Err(DomainError::validation("site", "is retired already")),
                None => Err(DomainError::NotFound(format!("site {site}"))),
            },
            AddDepartment {
                by,
                department,
                name,
                at,
            } => {
                if self.departments.contains_key(&department) {
                    return Err(DomainError::AlreadyExists(format!(
                        "department {department}"
                    )));
                }
                let name = parse_name("name", &name)?;
                Ok(CommunityEvent::DepartmentAdded {
                    by,
                    department,
                    name,
                    at,
                })
            }
            DefineCategory {
                by,
                code,
                category,
                at,
            } => self.define_category(by, code, category, at),
            AssignStaff {
                by,
                person,
                member,
                at,
            } => self.assign_staff(by, person, member, at),
            RemoveStaff { by, person, at } => {
                if !self.staff.contains_key(&person) {
                    return Err(DomainError::NotFound(format!("staff member {person}")));
                }
                Ok(CommunityEvent::StaffRemoved { by, person, at })
            }
            SetTimeZone { by, time_zone, at } => {
                let time_zone = plausible_time_zone(Some(time_zone))?;
                Ok(CommunityEvent::TimeZoneSet { by, time_zone, at })
            }
            SetPatrolDay { by, day, at } => {
                if day.is_some_and(|d| !(1..=28).contains(&d)) {
                    return Err(DomainError::validation(
                        "day",
                        "1 to 28, so every month has it",
                    ));
                }
                Ok(CommunityEvent::PatrolDaySet { by, day, at })
            }
            SetDuplicateWindow { by, hours, at } => {
                if !(1..=DUPLICATE_WINDOW_HOURS_MAX).contains(&hours) {
                    return Err(DomainError::validation(
                        "hours",
                        format!("1 to {DUPLICATE_WINDOW_HOURS_MAX}"),
                    ));
                }
                Ok(CommunityEvent::DuplicateWindowSet { by, hours, at })
            }
            AddCentre {
                by,
                centre,
                name,
                at,
            } => {
                if self.centres.contains_key(&centre) {
                    return Err(DomainError::AlreadyExists(format!("centre {centre}")));
                }
                let name = parse_name("name", &name)?;
                Ok(CommunityEvent::CentreAdded {
                    by,
                    centre,
                    name,
                    at,
                })
            }
            SetPointsRules { by, rules, at } => {
                rules.check()?;
                Ok(CommunityEvent::PointsRulesSet { by, rules, at })
            }
        }
    }

    fn register(
        &self,
        by: Actor,
        name: String,
        time_zone: Option<String>,
        at: Timestamp,
    ) -> Result<CommunityEvent, DomainError> {
        if self.registered {
            return Err(DomainError::AlreadyExists("community".into()));
        }
        if by.role != Role::Admin {
            return Err(DomainError::Forbidden(
                "only an admin registers a community".into(),
            ));
        }
        let name = parse_name("name", &name)?;
        let time_zone = plausible_time_zone(time_zone)?;
        Ok(CommunityEvent::CommunityRegistered {
            by,
            name,
            time_zone,
            at,
        })
    }

    fn add_grid(
        &self,
        by: Actor,
        grid: GridId,
        name: String,
        parent: Option<GridId>,
        at: Timestamp,
    ) -> Result<CommunityEvent, DomainError> {
        if self.grids.contains_key(&grid) {
            return Err(DomainError::AlreadyExists(format!("grid {grid}")));
        }
        if let Some(parent) = parent {
            match self.grids.get(&parent) {
                None => return Err(DomainError::NotFound(format!("grid {parent}"))),
                Some(p) if p.parent.is_some() => {
                    return Err(DomainError::validation(
                        "parent",
                        "a level 2 grid lies inside a level 1 grid",
                    ))
                }
                Some(_) => {}
            }
        }
        let name = parse_name("name", &name)?;
        Ok(CommunityEvent::GridAdded {
            by,
            grid,
            name,
            parent,
            at,
        })
    }

    fn add_site(
        &self,
        by: Actor,
        site: SiteId,
        mut details: Site,
        at: Timestamp,
    ) -> Result<CommunityEvent, DomainError> {
        if self.sites.contains_key(&site) {
            return Err(DomainError::AlreadyExists(format!("site {site}")));
        }
        if self.sites.values().any(|s| s.code == details.code) {
            return Err(DomainError::AlreadyExists(format!(
                "site code {}",
                details.code
            )));
        }
        if !self.grids.contains_key(&details.grid) {
            return Err(DomainError::NotFound(format!("grid {}", details.grid)));
        }
        details.name = parse_name("name", &details.name)?;
        details.active = true;
        Ok(CommunityEvent::SiteAdded {
            by,
            site,
            details,
            at,
        })
    }

    fn define_category(
        &self,
        by: Actor,
        code: CategoryCode,
        mut category: Category,
        at: Timestamp,
    ) -> Result<CommunityEvent, DomainError> {
        category.name = parse_name("name", &category.name)?;
        let hours_ok = category.first_response_hours >= 1
            && category.resolution_hours >= category.first_response_hours
            && category.resolution_hours <= DEADLINE_HOURS_MAX;
        if !hours_ok {
            return Err(DomainError::validation(
                "deadlines",
                "1 hour ≤ first response ≤ resolution ≤ a year",
            ));
        }
        if let Some(department) = category.department {
            if !self.departments.contains_key(&department) {
                return Err(DomainError::NotFound(format!("department {department}")));
            }
        }
        // The same bounds as every rule amount, so that what a rule
        // promises can be granted.
        if !rule_amount_ok(category.accepted_report_points) {
            return Err(DomainError::validation(
                "points",
                "0 to a billion, at most two decimals",
            ));
        }
        Ok(CommunityEvent::CategoryDefined {
            by,
            code,
            category,
            at,
        })
    }

    fn assign_staff(
        &self,
        by: Actor,
        person: PersonId,
        member: StaffMember,
        at: Timestamp,
    ) -> Result<CommunityEvent, DomainError> {
        if !member.role.is_staff() && member.role != Role::Auditor {
            return Err(DomainError::validation("role", "residents are not staff"));
        }
        if member.role == Role::GridWorker && member.grids.is_empty() {
            return Err(DomainError::validation(
                "grids",
                "a grid worker works in at least one grid",
            ));
        }
        if let Some(grid) = member.grids.iter().find(|g| !self.grids.contains_key(g)) {
            return Err(DomainError::NotFound(format!("grid {grid}")));
        }
        match (member.role, member.centre) {
            (Role::Clerk, None) => {
                return Err(DomainError::validation(
                    "centre",
                    "a clerk serves the counter of one centre",
                ))
            }
            (Role::Clerk, Some(centre)) if !self.centres.contains_key(&centre) => {
                return Err(DomainError::NotFound(format!("centre {centre}")))
            }
            (_, Some(_)) if member.role != Role::Clerk => {
                return Err(DomainError::validation(
                    "centre",
                    "only clerks serve a centre",
                ))
            }
            _ => {}
        }
        match (member.role, member.department) {
            (Role::Department, None) => {
                return Err(DomainError::validation(
                    "department",
                    "department staff belong to one",
                ))
            }
            (_, Some(department)) if !self.departments.contains_key(&department) => {
                return Err(DomainError::NotFound(format!("department {department}")))
            }
            _ => {}
        }
        Ok(CommunityEvent::StaffAssigned {
            by,
            person,
            member,
            at,
        })
    }
}

/// A zone name of the IANA shape (`Area/Location`); that it is a zone the
/// server knows is looked up before the command.
fn plausible_time_zone(time_zone: Option<String>) -> Result<String, DomainError> {
    let time_zone = time_zone.unwrap_or_else(|| DEFAULT_TIME_ZONE.to_string());
    let (area, city) = time_zone.split_once('/').unwrap_or_default();
    let plausible = |part: &str| {
        !part.is_empty()
            && part
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_-+/".contains(&b))
    };
    if !plausible(area) || !plausible(city) || time_zone.len() > 64 {
        return Err(DomainError::validation(
            "time_zone",
            "an IANA name such as Asia/Shanghai",
        ));
    }
    Ok(time_zone)
}

fn parse_name(field: &str, name: &str) -> Result<String, DomainError> {
    crate::values::plain_text(field, name, crate::values::Lines::One, NAME_CHARS_MAX)
}

#[cfg(test)]
mod tests;
