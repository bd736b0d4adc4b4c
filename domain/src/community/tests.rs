//! Every command, its success and each of its rejections.

use std::str::FromStr;

use cqrs_es::test::TestFramework;
use cqrs_es::Aggregate;
use uuid::Uuid;

use super::*;

type Given = TestFramework<Community>;

fn id(n: u128) -> Uuid {
    Uuid::from_u128(n)
}
fn at() -> Timestamp {
    Timestamp::from_micros(1_800_000_000_000_000)
}
fn admin() -> Actor {
    Actor {
        person: PersonId(id(1)),
        role: Role::Admin,
    }
}
fn worker() -> Actor {
    Actor {
        person: PersonId(id(2)),
        role: Role::GridWorker,
    }
}
const LEVEL1: u128 = 10;
const LEVEL2: u128 = 11;
const DEPARTMENT: u128 = 30;

fn registered() -> Vec<CommunityEvent> {
    vec![CommunityEvent::CommunityRegistered {
        by: admin(),
        name: "Riverside".into(),
        time_zone: DEFAULT_TIME_ZONE.into(),
        at: at(),
    }]
}
fn with_grids() -> Vec<CommunityEvent> {
    let mut events = registered();
    events.push(CommunityEvent::GridAdded {
        by: admin(),
        grid: GridId(id(LEVEL1)),
        name: "North bank".into(),
        parent: None,
        at: at(),
    });
    events.push(CommunityEvent::GridAdded {
        by: admin(),
        grid: GridId(id(LEVEL2)),
        name: "North bank, east".into(),
        parent: Some(GridId(id(LEVEL1))),
        at: at(),
    });
    events.push(CommunityEvent::DepartmentAdded {
        by: admin(),
        department: DepartmentId(id(DEPARTMENT)),
        name: "City management".into(),
        at: at(),
    });
    events
}
fn site(code: &str, grid: u128) -> Site {
    Site {
        name: "Outfall by the old bridge".into(),
        kind: SiteKind::Outfall,
        code: SiteCode::parse(code).unwrap(),
        grid: GridId(id(grid)),
        point: None,
        active: true,
    }
}
fn category(first: u32, resolution: u32, points: &str) -> Category {
    Category {
        name: "Sewage outfall".into(),
        first_response_hours: first,
        resolution_hours: resolution,
        department: Some(DepartmentId(id(DEPARTMENT))),
        accepted_report_points: Decimal::from_str(points).unwrap(),
    }
}

#[test]
fn register() {
    Given::with(())
        .given_no_previous_events()
        .when(CommunityCommand::Register {
            by: admin(),
            name: " Riverside ".into(),
            time_zone: None,
            at: at(),
        })
        .then_expect_events(registered());
    Given::with(())
        .given(registered())
        .when(CommunityCommand::Register {
            by: admin(),
            name: "Again".into(),
            time_zone: None,
            at: at(),
        })
        .then_expect_error(DomainError::AlreadyExists("community".into()));
    Given::with(())
        .given_no_previous_events()
        .when(CommunityCommand::Register {
            by: worker(),
            name: "Riverside".into(),
            time_zone: None,
            at: at(),
        })
        .then_expect_error(DomainError::Forbidden(
            "only an admin registers a community".into(),
        ));
    Given::with(())
        .given_no_previous_events()
        .when(CommunityCommand::Register {
            by: admin(),
            name: "Riverside".into(),
            time_zone: Some("Shanghai".into()),
            at: at(),
        })
        .then_expect_error(DomainError::validation(
            "time_zone",
            "an IANA name such as Asia/Shanghai",
        ));
    Given::with(())
        .given_no_previous_events()
        .when(CommunityCommand::Register {
            by: admin(),
            name: "x".repeat(101),
            time_zone: None,
            at: at(),
        })
        .then_expect_error(DomainError::validation(
            "name",
            "1 to 100 visible characters",
        ));
}

#[test]
fn nothing_is_set_up_before_registration_or_by_others() {
    Given::with(())
        .given_no_previous_events()
        .when(CommunityCommand::AddGrid {
            by: admin(),
            grid: GridId(id(LEVEL1)),
            name: "North".into(),
            parent: None,
            at: at(),
        })
        .then_expect_error(DomainError::NotFound("community".into()));
    Given::with(())
        .given(registered())
        .when(CommunityCommand::AddGrid {
            by: worker(),
            grid: GridId(id(LEVEL1)),
            name: "North".into(),
            parent: None,
            at: at(),
        })
        .then_expect_error(DomainError::Forbidden(
            "only the community's admin sets it up".into(),
        ));
}

#[test]
fn grids_have_two_levels() {
    let level3 = CommunityCommand::AddGrid {
        by: admin(),
        grid: GridId(id(12)),
        name: "Too deep".into(),
        parent: Some(GridId(id(LEVEL2))),
        at: at(),
    };
    Given::with(())
        .given(with_grids())
        .when(level3)
        .then_expect_error(DomainError::validation(
            "parent",
            "a level 2 grid lies inside a level 1 grid",
        ));
    Given::with(())
        .given(with_grids())
        .when(CommunityCommand::AddGrid {
            by: admin(),
            grid: GridId(id(LEVEL1)),
            name: "Again".into(),
            parent: None,
            at: at(),
        })
        .then_expect_error(DomainError::AlreadyExists(format!("grid {}", id(LEVEL1))));
    Given::with(())
        .given(registered())
        .when(CommunityCommand::AddGrid {
            by: admin(),
            grid: GridId(id(12)),
            name: "Orphan".into(),
            parent: Some(GridId(id(99))),
            at: at(),
        })
        .then_expect_error(DomainError::NotFound(format!("grid {}", id(99))));
}

#[test]
fn sites_have_unique_codes_in_known_grids() {
    let add = |code: &str, grid: u128, site_id: u128| CommunityCommand::AddSite {
        by: admin(),
        site: SiteId(id(site_id)),
        details: site(code, grid),
        at: at(),
    };
    Given::with(())
        .given(with_grids())
        .when(add("rb-0042", LEVEL2, 20))
        .then_expect_events(vec![CommunityEvent::SiteAdded {
            by: admin(),
            site: SiteId(id(20)),
            details: site("RB-0042", LEVEL2),
            at: at(),
        }]);
    let mut with_site = with_grids();
    with_site.push(CommunityEvent::SiteAdded {
        by: admin(),
        site: SiteId(id(20)),
        details: site("RB-0042", LEVEL2),
        at: at(),
    });
    Given::with(())
        .given(with_site.clone())
        .when(add("RB-0042", LEVEL1, 21))
        .then_expect_error(DomainError::AlreadyExists("site code RB-0042".into()));
    Given::with(())
        .given(with_grids())
        .when(add("RB-0043", 99, 21))
        .then_expect_error(DomainError::NotFound(format!("grid {}", id(99))));
    Given::with(())
        .given(with_site.clone())
        .when(CommunityCommand::RetireSite {
            by: admin(),
            site: SiteId(id(20)),
            at: at(),
        })
        .then_expect_events(vec![CommunityEvent::SiteRetired {
            by: admin(),
            site: SiteId(id(20)),
            at: at(),
        }]);
    Given::with(())
        .given(with_grids())
        .when(CommunityCommand::RetireSite {
            by: admin(),
            site: SiteId(id(20)),
            at: at(),
        })
        .then_expect_error(DomainError::NotFound(format!("site {}", id(20))));
    with_site.push(CommunityEvent::SiteRetired {
        by: admin(),
        site: SiteId(id(20)),
        at: at(),
    });
    Given::with(())
        .given(with_site)
        .when(CommunityCommand::RetireSite {
            by: admin(),
            site: SiteId(id(20)),
            at: at(),
        })
        .then_expect_error(DomainError::validation("site", "is retired already"));
}

#[test]
fn categories_have_sane_deadlines_and_points() {
    let define = |c: Category| CommunityCommand::DefineCategory {
        by: admin(),
        code: CategoryCode::parse("OUTFALL").unwrap(),
        category: c,
        at: at(),
    };
    Given::with(())
        .given(with_grids())
        .when(define(category(4, 72, "5.00")))
        .then_expect_events(vec![CommunityEvent::CategoryDefined {
            by: admin(),
            code: CategoryCode::parse("OUTFALL").unwrap(),
            category: category(4, 72, "5.00"),
            at: at(),
        }]);
    let refused = [
        (
            category(0, 72, "5"),
            DomainError::validation("deadlines", "1 hour ≤ first response ≤ resolution ≤ a year"),
        ),
        (
            category(8, 4, "5"),
            DomainError::validation("deadlines", "1 hour ≤ first response ≤ resolution ≤ a year"),
        ),
        (
            category(4, 24 * 400, "5"),
            DomainError::validation("deadlines", "1 hour ≤ first response ≤ resolution ≤ a year"),
        ),
        (
            category(4, 72, "-1"),
            DomainError::validation("points", "0 to a billion, at most two decimals"),
        ),
        (
            category(4, 72, "0.001"),
            DomainError::validation("points", "0 to a billion, at most two decimals"),
        ),
        (
            category(4, 72, "999999999999"),
            DomainError::validation("points", "0 to a billion, at most two decimals"),
        ),
    ];
    for (bad, error) in refused {
        Given::with(())
            .given(with_grids())
            .when(define(bad))
            .then_expect_error(error);
    }
    Given::with(())
        .given(registered())
        .when(define(category(4, 72, "5")))
        .then_expect_error(DomainError::NotFound(format!(
            "department {}",
            id(DEPARTMENT)
        )));
}

#[test]
fn departments_and_staff() {
    Given::with(())
        .given(with_grids())
        .when(CommunityCommand::AddDepartment {
            by: admin(),
            department: DepartmentId(id(DEPARTMENT)),
            name: "Again".into(),
            at: at(),
        })
        .then_expect_error(DomainError::AlreadyExists(format!(
            "department {}",
            id(DEPARTMENT)
        )));
    let member = |role: Role, grids: &[u128], department: Option<u128>| StaffMember {
        role,
        grids: grids.iter().map(|g| GridId(id(*g))).collect(),
        department: department.map(|d| DepartmentId(id(d))),
        centre: None,
    };
    let assign = |m: StaffMember| CommunityCommand::AssignStaff {
        by: admin(),
        person: PersonId(id(2)),
        member: m,
        at: at(),
    };
    Given::with(())
        .given(with_grids())
        .when(assign(member(Role::GridWorker, &[LEVEL1], None)))
        .then_expect_events(vec![CommunityEvent::StaffAssigned {
            by: admin(),
            person: PersonId(id(2)),
            member: member(Role::GridWorker, &[LEVEL1], None),
            at: at(),
        }]);
    let refused = [
        (
            member(Role::Citizen, &[], None),
            DomainError::validation("role", "residents are not staff"),
        ),
        (
            member(Role::GridWorker, &[], None),
            DomainError::validation("grids", "a grid worker works in at least one grid"),
        ),
        (
            member(Role::GridWorker, &[99], None),
            DomainError::NotFound(format!("grid {}", id(99))),
        ),
        (
            member(Role::Department, &[], None),
            DomainError::validation("department", "department staff belong to one"),
        ),
        (
            member(Role::Department, &[], Some(98)),
            DomainError::NotFound(format!("department {}", id(98))),
        ),
    ];
    for (bad, error) in refused {
        Given::with(())
            .given(with_grids())
            .when(assign(bad))
            .then_expect_error(error);
    }
    Given::with(())
        .given(with_grids())
        .when(CommunityCommand::RemoveStaff {
            by: admin(),
            person: PersonId(id(2)),
            at: at(),
        })
        .then_expect_error(DomainError::NotFound(format!("staff member {}", id(2))));
}

#[test]
fn patrol_day_and_duplicate_window() {
    Given::with(())
        .given(registered())
        .when(CommunityCommand::SetPatrolDay {
            by: admin(),
            day: Some(15),
            at: at(),
        })
        .then_expect_events(vec![CommunityEvent::PatrolDaySet {
            by: admin(),
            day: Some(15),
            at: at(),
        }]);
    Given::with(())
        .given(registered())
        .when(CommunityCommand::SetPatrolDay {
            by: admin(),
            day: Some(31),
            at: at(),
        })
        .then_expect_error(DomainError::validation(
            "day",
            "1 to 28, so every month has it",
        ));
    Given::with(())
        .given(registered())
        .when(CommunityCommand::SetDuplicateWindow {
            by: admin(),
            hours: 48,
            at: at(),
        })
        .then_expect_events(vec![CommunityEvent::DuplicateWindowSet {
            by: admin(),
            hours: 48,
            at: at(),
        }]);
    Given::with(())
        .given(registered())
        .when(CommunityCommand::SetDuplicateWindow {
            by: admin(),
            hours: 0,
            at: at(),
        })
        .then_expect_error(DomainError::validation("hours", "1 to 720"));
}

#[test]
fn lookups_the_api_makes_before_report_commands() {
    let mut community = Community::default();
    let mut events = with_grids();
    events.push(CommunityEvent::SiteAdded {
        by: admin(),
        site: SiteId(id(20)),
        details: site("RB-0042", LEVEL2),
        at: at(),
    });
    events.push(CommunityEvent::StaffAssigned {
        by: admin(),
        person: PersonId(id(2)),
        member: StaffMember {
            role: Role::GridWorker,
            grids: [GridId(id(LEVEL1))].into(),
            department: None,
            centre: None,
        },
        at: at(),
    });
    for event in events {
        community.apply(event);
    }
    let code = SiteCode::parse("RB-0042").unwrap();
    assert_eq!(
        community.site_by_code(&code).map(|(id, _)| id),
        Some(SiteId(id(20)))
    );
    // A level 1 grid worker also works in the level 2 grids inside it.
    assert_eq!(
        community.worker_grids(PersonId(id(2))),
        vec![GridId(id(LEVEL1)), GridId(id(LEVEL2))]
    );
    assert!(community.worker_grids(PersonId(id(3))).is_empty());
    community.apply(CommunityEvent::SiteRetired {
        by: admin(),
        site: SiteId(id(20)),
        at: at(),
    });
    assert!(
        community.site_by_code(&code).is_none(),
        "a retired site takes no reports"
    );
}

#[test]
fn centres_clerks_and_points_rules() {
    let centre = CentreId(id(40));
    let centre_added = CommunityEvent::CentreAdded {
        by: admin(),
        centre,
        name: "Riverside centre".into(),
        at: at(),
    };
    Given::with(())
        .given(registered())
        .when(CommunityCommand::AddCentre {
            by: admin(),
            centre,
            name: " Riverside centre ".into(),
            at: at(),
        })
        .then_expect_events(vec![centre_added.clone()]);
    let mut events = registered();
    events.push(centre_added.clone());
    Given::with(())
        .given(events.clone())
        .when(CommunityCommand::AddCentre {
            by: admin(),
            centre,
            name: "Again".into(),
            at: at(),
        })
        .then_expect_error(DomainError::AlreadyExists(format!("centre {centre}")));
    let clerk = |centre: Option<CentreId>, role: Role| CommunityCommand::AssignStaff {
        by: admin(),
        person: PersonId(id(3)),
        member: StaffMember {
            role,
            grids: Default::default(),
            department: None,
            centre,
        },
        at: at(),
    };
    Given::with(())
        .given(events.clone())
        .when(clerk(Some(centre), Role::Clerk))
        .then_expect_events(vec![CommunityEvent::StaffAssigned {
            by: admin(),
            person: PersonId(id(3)),
            member: StaffMember {
                role: Role::Clerk,
                grids: Default::default(),
                department: None,
                centre: Some(centre),
            },
            at: at(),
        }]);
    for (command, code) in [
        (clerk(None, Role::Clerk), "VALIDATION"),
        (clerk(Some(CentreId(id(41))), Role::Clerk), "NOT_FOUND"),
        (clerk(Some(centre), Role::Admin), "VALIDATION"),
    ] {
        let mut community = Community::default();
        for event in events.clone() {
            community.apply(event);
        }
        assert_eq!(community.decide(command).unwrap_err().code(), code);
    }
    let rules = PointsRules {
        resolved_report_bonus: Decimal::from_str("5").unwrap(),
        daily_limit: Some(Decimal::from_str("50").unwrap()),
        expiry_days: Some(365),
        ..PointsRules::default()
    };
    Given::with(())
        .given(events.clone())
        .when(CommunityCommand::SetPointsRules {
            by: admin(),
            rules: rules.clone(),
            at: at(),
        })
        .then_expect_events(vec![CommunityEvent::PointsRulesSet {
            by: admin(),
            rules: rules.clone(),
            at: at(),
        }]);
    let bad_rules = [
        PointsRules {
            suggestion_adopted: Decimal::from_str("-1").unwrap(),
            ..rules.clone()
        },
        PointsRules {
            volunteer_hour: Decimal::from_str("0.001").unwrap(),
            ..rules.clone()
        },
        PointsRules {
            daily_limit: Some(Decimal::ZERO),
            ..rules.clone()
        },
        PointsRules {
            expiry_days: Some(0),
            ..rules.clone()
        },
        PointsRules {
            hold_minutes: 0,
            ..rules.clone()
        },
    ];
    let mut community = Community::default();
    for event in events.clone() {
        community.apply(event);
    }
    for rules in bad_rules {
        let field = bad_field(&rules);
        let error = community
            .decide(CommunityCommand::SetPointsRules {
                by: admin(),
                rules,
                at: at(),
            })
            .unwrap_err();
        assert!(
            matches!(&error, DomainError::Validation { field: f, .. } if f == field),
            "{error}"
        );
    }
    Given::with(())
        .given(events)
        .when(CommunityCommand::SetPointsRules {
            by: worker(),
            rules,
            at: at(),
        })
        .then_expect_error(DomainError::Forbidden(
            "only the community's admin sets it up".into(),
        ));
}

/// The field a rule check names first for these bad rules.
fn bad_field(rules: &PointsRules) -> &'static str {
    if rules.daily_limit == Some(Decimal::ZERO) {
        "daily_limit"
    } else if rules.expiry_days == Some(0) {
        "expiry_days"
    } else if rules.hold_minutes == 0 {
        "hold_minutes"
    } else {
        "points"
    }
}
