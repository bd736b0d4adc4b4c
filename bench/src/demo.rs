//! `serve --demo`: a community along a river (modelled on the Huagonglu
//! community by the Changliu river in Chengdu's Qingbaijiang district), so
//! a new user sees a working system at once. Seeding is idempotent: the
//! ids are fixed, and a seeded community is left as it is.

use std::collections::BTreeSet;

use anyhow::Context;
use domain::community::{
    Category, Community, CommunityCommand, PointsRules, Site, SiteKind, StaffMember,
};
use domain::points::GiftCommand;
use domain::values::{
    Actor, CategoryCode, CentreId, DepartmentId, GeoPoint, GiftId, GridId, PersonId, Points, Role,
    SiteCode, SiteId, Timestamp,
};
use rust_decimal::Decimal;
use store::{CommunityId, StoreError};
use uuid::Uuid;

use app::commands::{RequestMeta, COMMUNITY_STREAM};
use app::points::PointsDesk;

pub const COMMUNITY: Uuid = Uuid::from_u128(0x0000_0000_0000_4000_8000_00c0_ffee_0001);
pub const ADMIN: Uuid = Uuid::from_u128(0x0000_0000_0000_4000_8000_00ad_0000_0001);
pub const RESIDENT: Uuid = Uuid::from_u128(0x0000_0000_0000_4000_8000_00e5_0000_0001);
pub const INSPECTOR: Uuid = Uuid::from_u128(0x0000_0000_0000_4000_8000_001a_0000_0001);
pub const CLERK: Uuid = Uuid::from_u128(0x0000_0000_0000_4000_8000_00c1_0000_0001);
pub const CENTRE: Uuid = Uuid::from_u128(0x0000_0000_0000_4000_8000_00ce_0000_0001);

/// Gifts at the centre's counter: name, price in points, stock.
const GIFTS: [(&str, i64, u32); 3] = [
    ("环保购物袋 reusable bag", 20, 50),
    ("护河毛巾 towel", 50, 30),
    ("河长制纪念水杯 cup", 120, 10),
];

const LEVEL1_GRIDS: u128 = 4;
const LEVEL2_PER_LEVEL1: u128 = 2;
const WORKERS: u128 = 12;
const SITES: u128 = 20;

fn id(kind: u128, n: u128) -> Uuid {
    Uuid::from_u128(0x0000_0000_0000_4000_8000_0000_0000_0000 | (kind << 32) | n)
}

pub fn level1_grid(n: u128) -> GridId {
    GridId(id(0x61, n))
}
pub fn level2_grid(n: u128) -> GridId {
    GridId(id(0x62, n))
}
pub fn worker(n: u128) -> PersonId {
    PersonId(id(0x77, n))
}
pub fn site_code(n: u128) -> String {
    format!("CLH-{n:02}")
}

const DEPARTMENTS: [(u128, &str); 3] = [
    (1, "城管执法 (city management)"),
    (2, "生态环境 (environment)"),
    (3, "水务 (water)"),
];

/// code, name, first-response hours, resolution hours, department, points.
type CategoryRow = (&'static str, &'static str, u32, u32, Option<u128>, i64);

const CATEGORIES: [CategoryRow; 7] = [
    (
        "FLOATING-GARBAGE",
        "河面漂浮物 floating garbage",
        4,
        48,
        None,
        5,
    ),
    (
        "SEWAGE-OUTFALL",
        "污水直排 sewage outfall",
        2,
        72,
        Some(2),
        10,
    ),
    (
        "ILLEGAL-FISHING",
        "违规垂钓 illegal fishing",
        2,
        24,
        Some(1),
        5,
    ),
    (
        "DROWNING-HAZARD",
        "溺水隐患 drowning hazard",
        1,
        24,
        Some(3),
        10,
    ),
    (
        "ILLEGAL-BUILDING",
        "违章搭建 illegal construction",
        8,
        168,
        Some(1),
        5,
    ),
    ("DUMPED-RUBBISH", "乱堆垃圾 dumped rubbish", 4, 48, None, 5),
    (
        "STREET-LIGHT",
        "路灯损坏 broken street light",
        8,
        72,
        Some(1),
        3,
    ),
];

/// The community's set-up as commands, in order.
fn set_up(by: Actor, at: Timestamp) -> Vec<CommunityCommand> {
    let mut list = vec![CommunityCommand::Register {
        by,
        name: "化工路社区 Huagonglu Community".to_string(),
        time_zone: None,
        at,
    }];
    for n in 1..=LEVEL1_GRIDS {
        list.push(CommunityCommand::AddGrid {
            by,
            grid: level1_grid(n),
            name: format!("第{n}网格 grid {n}"),
            parent: None,
            at,
        });
        for m in 1..=LEVEL2_PER_LEVEL1 {
            let k = (n - 1) * LEVEL2_PER_LEVEL1 + m;
            list.push(CommunityCommand::AddGrid {
                by,
                grid: level2_grid(k),
                name: format!("第{n}网格-{m} grid {n}.{m}"),
                parent: Some(level1_grid(n)),
                at,
            });
        }
    }
    for (n, name) in DEPARTMENTS {
        list.push(CommunityCommand::AddDepartment {
            by,
            department: DepartmentId(id(0xde, n)),
            name: name.to_string(),
            at,
        });
    }
    for (code, name, first, resolution, department, points) in CATEGORIES {
        list.push(CommunityCommand::DefineCategory {
            by,
            code: CategoryCode::parse(code).expect("a valid code"),
            category: Category {
                name: name.to_string(),
                first_response_hours: first,
                resolution_hours: resolution,
                department: department.map(|d| DepartmentId(id(0xde, d))),
                accepted_report_points: Decimal::new(points, 0),
            },
            at,
        });
    }
    list.extend(sites(by, at));
    list.extend(staff(by, at));
    list.push(CommunityCommand::SetPatrolDay {
        by,
        day: Some(15),
        at,
    });
    list
}

fn sites(by: Actor, at: Timestamp) -> Vec<CommunityCommand> {
    let kinds = [
        (SiteKind::RiverBank, "长流河岸 river bank"),
        (SiteKind::Outfall, "排口 outfall"),
        (SiteKind::MicroSpace, "微空间 micro-space"),
        (SiteKind::ParkGate, "公园门 park gate"),
        (SiteKind::StreetCorner, "街角 street corner"),
    ];
    (1..=SITES)
        .map(|n| {
            let (kind, name) = kinds[((n - 1) % 5) as usize];
            // Along the river, about 150 m apart.
            let point = GeoPoint::parse(
                30_878_000 + (n as i64) * 1_000,
                104_250_000 + (n as i64) * 1_200,
            )
            .expect("a valid point");
            CommunityCommand::AddSite {
                by,
                site: SiteId(id(0x5e, n)),
                details: Site {
                    name: format!("{name} {n}"),
                    kind,
                    code: SiteCode::parse(&site_code(n)).expect("a valid code"),
                    grid: level2_grid((n - 1) % (LEVEL1_GRIDS * LEVEL2_PER_LEVEL1) + 1),
                    point: Some(point),
                    active: true,
                },
                at,
            }
        })
        .collect()
}

fn staff(by: Actor, at: Timestamp) -> Vec<CommunityCommand> {
    let mut list: Vec<CommunityCommand> = (1..=WORKERS)
        .map(|n| {
            // Workers 1–4 lead a level 1 grid; the others work a level 2 grid.
            let grid = if n <= LEVEL1_GRIDS {
                level1_grid(n)
            } else {
                level2_grid((n - LEVEL1_GRIDS - 1) % (LEVEL1_GRIDS * LEVEL2_PER_LEVEL1) + 1)
            };
            CommunityCommand::AssignStaff {
                by,
                person: worker(n),
                member: StaffMember {
                    role: Role::GridWorker,
                    grids: BTreeSet::from([grid]),
                    department: None,
                    centre: None,
                },
                at,
            }
        })
        .collect();
    for (n, _) in DEPARTMENTS {
        list.push(CommunityCommand::AssignStaff {
            by,
            person: PersonId(id(0xd5, n)),
            member: StaffMember {
                role: Role::Department,
                grids: BTreeSet::new(),
                department: Some(DepartmentId(id(0xde, n))),
                centre: None,
            },
            at,
        });
    }
    list.push(CommunityCommand::AssignStaff {
        by,
        person: PersonId(INSPECTOR),
        member: StaffMember {
            role: Role::Inspector,
            grids: BTreeSet::new(),
            department: None,
            centre: None,
        },
        at,
    });
    list.push(CommunityCommand::AddCentre {
        by,
        centre: CentreId(CENTRE),
        name: "化工路党群服务中心 community centre".into(),
        at,
    });
    list.push(CommunityCommand::AssignStaff {
        by,
        person: PersonId(CLERK),
        member: StaffMember {
            role: Role::Clerk,
            grids: BTreeSet::new(),
            department: None,
            centre: Some(CentreId(CENTRE)),
        },
        at,
    });
    list.push(CommunityCommand::SetPointsRules {
        by,
        rules: PointsRules {
            resolved_report_bonus: Decimal::from(5),
            suggestion_adopted: Decimal::from(20),
            suggestion_partly_adopted: Decimal::from(10),
            volunteer_hour: Decimal::from(10),
            daily_limit: Some(Decimal::from(100)),
            expiry_days: Some(365),
            hold_minutes: PointsRules::HOLD_MINUTES_DEFAULT,
            staff_earn: false,
        },
        at,
    });
    list
}

/// Seeds the demo community unless it exists; true when it seeded.
pub async fn seed(desk: &PointsDesk) -> anyhow::Result<bool> {
    let commands = desk.commands();
    let community = CommunityId::new(COMMUNITY);
    match commands
        .store()
        .create_community(community, "化工路社区 Huagonglu Community")
        .await
    {
        Ok(()) => {}
        Err(StoreError::CommunityExists(_)) => {
            let loaded = commands
                .load::<Community>(community, COMMUNITY_STREAM)
                .await?;
            if loaded.state.registered {
                return Ok(false);
            }
        }
        Err(error) => return Err(error).context("could not create the demo community"),
    }
    let by = Actor {
        person: PersonId(ADMIN),
        role: Role::Admin,
    };
    let meta = RequestMeta {
        request_id: "demo-seed".to_string(),
        client: Some("serve --demo".to_string()),
        actor: Some(by),
        ..RequestMeta::default()
    };
    let now = commands.clock().now();
    for command in set_up(by, now) {
        commands
            .execute::<Community>(community, COMMUNITY_STREAM, &meta, &[], |_| {
                Ok(command.clone())
            })
            .await
            .context("seeding the demo failed")?;
    }
    seed_points(desk, community, by, &meta)
        .await
        .context("seeding the demo failed")?;
    Ok(true)
}

/// A budget for the year and gifts at the centre's counter.
async fn seed_points(
    desk: &PointsDesk,
    community: CommunityId,
    by: Actor,
    meta: &RequestMeta,
) -> app::error::AppResult<()> {
    let note = app::content::prepare_text("2026 年度护水币预算 yearly budget", None)?;
    let budget = Points::parse(Decimal::from(100_000))?;
    desk.fund(community, meta, by, budget, note).await?;
    let at = desk.commands().clock().now();
    for (n, (name, price, stock)) in GIFTS.iter().enumerate() {
        let gift = GiftId(id(0x9f, n as u128 + 1));
        desk.on_gift(community, meta, gift, None, &[], |_| {
            Ok(GiftCommand::Offer {
                by,
                centre: CentreId(CENTRE),
                name: (*name).to_string(),
                price: Points::parse(Decimal::from(*price))?,
                stock: *stock,
                at,
            })
        })
        .await?;
    }
    Ok(())
}
