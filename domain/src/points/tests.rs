//! Every points command, its success and each of its rejections.

use std::str::FromStr;

use cqrs_es::test::TestFramework;
use rust_decimal::Decimal;
use uuid::Uuid;

use super::wallet::{ReleaseReason, ReversalReason, WithheldReason};
use super::*;
use crate::error::DomainError;
use crate::points::redemption::Placement;
use crate::values::{
    Actor, CentreId, ContentHash, GiftId, GridId, Points, RedemptionId, Role, Timestamp,
};

fn id(n: u128) -> Uuid {
    Uuid::from_u128(n)
}
fn d(text: &str) -> Decimal {
    Decimal::from_str(text).unwrap()
}
fn points(text: &str) -> Points {
    Points::parse(d(text)).unwrap()
}
fn at() -> Timestamp {
    Timestamp::from_micros(1_800_000_000_000_000)
}
fn later(hours: u32) -> Timestamp {
    at().plus_hours(hours)
}
fn actor(role: Role) -> Actor {
    Actor {
        person: PersonId(id(role as u128 + 1)),
        role,
    }
}
fn hash() -> ContentHash {
    ContentHash::parse(&"a".repeat(64)).unwrap()
}
const REPORT: u128 = 100;
const REDEMPTION: u128 = 200;
fn report() -> ReportId {
    ReportId(id(REPORT))
}
fn redemption() -> RedemptionId {
    RedemptionId(id(REDEMPTION))
}

fn accepted_grant(amount: &str, budget: &str) -> Grant {
    Grant {
        source: GrantSource::ReportAccepted { report: report() },
        amount: points(amount),
        by: None,
        grid: Some(GridId(id(7))),
        budget_available: d(budget),
        daily_limit: None,
        day: 20_000,
        expires_at: None,
        at: at(),
    }
}

/// The event a grant leads to, as `decide` computes it.
fn granted(grant: Grant) -> WalletEvent {
    Wallet::default()
        .decide(WalletCommand::Grant(Box::new(grant)))
        .unwrap()
}

mod wallet {
    use super::*;

    type Given = TestFramework<Wallet>;

    fn with(amount: &str) -> Vec<WalletEvent> {
        vec![granted(accepted_grant(amount, "1000"))]
    }

    fn hold(amount: &str) -> WalletEvent {
        WalletEvent::PointsHeld {
            redemption: redemption(),
            amount: d(amount),
            balance: d("10"),
            held: d(amount),
            at: at(),
        }
    }

    #[test]
    fn an_automatic_grant_is_made_once() {
        let grant = accepted_grant("10", "1000");
        Given::with(())
            .given_no_previous_events()
            .when(WalletCommand::Grant(Box::new(grant.clone())))
            .then_expect_events(vec![WalletEvent::PointsGranted {
                source: grant.source.clone(),
                amount: d("10"),
                requested: d("10"),
                by: None,
                grid: grant.grid,
                day: grant.day,
                expires_at: None,
                balance: d("10"),
                held: d("0"),
                next_expiry: None,
                at: at(),
            }]);
        Given::with(())
            .given(with("10"))
            .when(WalletCommand::Grant(Box::new(grant)))
            .then_expect_error(DomainError::AlreadyExists(format!(
                "grant report-accepted:{}",
                report()
            )));
    }

    #[test]
    fn grants_check_who_grants() {
        let mut manual = accepted_grant("5", "100");
        manual.source = GrantSource::Manual {
            grant: crate::values::GrantId(id(9)),
            reason: hash(),
        };
        let mut automatic_by_admin = accepted_grant("5", "100");
        automatic_by_admin.by = Some(actor(Role::Admin));
        let mut volunteer_by_clerk = accepted_grant("5", "100");
        volunteer_by_clerk.source = GrantSource::VolunteerService {
            service: crate::values::GrantId(id(9)),
            hours: d("2"),
        };
        volunteer_by_clerk.by = Some(actor(Role::Clerk));
        for (what, grant) in [
            ("manual by nobody", manual.clone()),
            ("automatic by an admin", automatic_by_admin),
            ("volunteer by a clerk", volunteer_by_clerk),
        ] {
            let error = Wallet::default()
                .decide(WalletCommand::Grant(Box::new(grant)))
                .expect_err(what);
            assert_eq!(error.code(), "FORBIDDEN", "{what}");
        }
        manual.by = Some(actor(Role::Admin));
        assert!(Wallet::default()
            .decide(WalletCommand::Grant(Box::new(manual)))
            .is_ok());
    }

    #[test]
    fn a_grant_beyond_the_budget_is_refused_or_withheld() {
        let mut manual = accepted_grant("50", "20");
        manual.source = GrantSource::Manual {
            grant: crate::values::GrantId(id(9)),
            reason: hash(),
        };
        manual.by = Some(actor(Role::Admin));
        Given::with(())
            .given_no_previous_events()
            .when(WalletCommand::Grant(Box::new(manual)))
            .then_expect_error(DomainError::InsufficientBudget("20 left, 50 asked".into()));
        let automatic = accepted_grant("50", "20");
        Given::with(())
            .given_no_previous_events()
            .when(WalletCommand::Grant(Box::new(automatic.clone())))
            .then_expect_events(vec![WalletEvent::GrantWithheld {
                source: automatic.source,
                requested: d("50"),
                reason: WithheldReason::BudgetExhausted,
                by: None,
                balance: d("0"),
                held: d("0"),
                at: at(),
            }]);
    }

    #[test]
    fn the_daily_limit_cuts_then_withholds_automatic_grants() {
        let mut first = accepted_grant("8", "1000");
        first.daily_limit = Some(d("10"));
        let mut second = first.clone();
        second.source = GrantSource::ReportResolved { report: report() };
        let mut wallet = Wallet::default();
        let event = wallet
            .decide(WalletCommand::Grant(Box::new(first.clone())))
            .unwrap();
        cqrs_es::Aggregate::apply(&mut wallet, event);
        match wallet
            .decide(WalletCommand::Grant(Box::new(second.clone())))
            .unwrap()
        {
            WalletEvent::PointsGranted {
                amount, requested, ..
            } => assert_eq!((amount, requested), (d("2"), d("8"))),
            other => panic!("expected a cut grant, got {other:?}"),
        }
        let event = wallet
            .decide(WalletCommand::Grant(Box::new(second.clone())))
            .unwrap();
        cqrs_es::Aggregate::apply(&mut wallet, event);
        let mut third = first.clone();
        third.source = GrantSource::SuggestionAdopted {
            suggestion: crate::values::SuggestionId(id(5)),
            partly: false,
        };
        assert!(matches!(
            wallet.decide(WalletCommand::Grant(Box::new(third.clone()))),
            Ok(WalletEvent::GrantWithheld {
                reason: WithheldReason::DailyLimit,
                ..
            })
        ));
        third.day += 1;
        assert!(matches!(
            wallet.decide(WalletCommand::Grant(Box::new(third))),
            Ok(WalletEvent::PointsGranted { .. })
        ));
    }

    #[test]
    fn a_hold_takes_available_points_only() {
        Given::with(())
            .given(with("10"))
            .when(WalletCommand::Hold {
                redemption: redemption(),
                amount: points("10"),
                at: at(),
            })
            .then_expect_events(vec![hold("10")]);
        Given::with(())
            .given(with("10"))
            .when(WalletCommand::Hold {
                redemption: redemption(),
                amount: points("10.01"),
                at: at(),
            })
            .then_expect_error(DomainError::InsufficientPoints(
                "10 available, 10.01 needed".into(),
            ));
        let mut events = with("10");
        events.push(hold("6"));
        Given::with(())
            .given(events.clone())
            .when(WalletCommand::Hold {
                redemption: RedemptionId(id(201)),
                amount: points("5"),
                at: at(),
            })
            .then_expect_error(DomainError::InsufficientPoints(
                "4 available, 5 needed".into(),
            ));
        Given::with(())
            .given(events)
            .when(WalletCommand::Hold {
                redemption: redemption(),
                amount: points("1"),
                at: at(),
            })
            .then_expect_error(DomainError::AlreadyExists(format!(
                "hold for {}",
                redemption()
            )));
    }

    #[test]
    fn a_hold_is_redeemed_or_released() {
        let mut events = with("10");
        events.push(hold("6"));
        Given::with(())
            .given(events.clone())
            .when(WalletCommand::Redeem {
                redemption: redemption(),
                at: at(),
            })
            .then_expect_events(vec![WalletEvent::PointsRedeemed {
                redemption: redemption(),
                amount: d("6"),
                balance: d("4"),
                held: d("0"),
                next_expiry: None,
                at: at(),
            }]);
        Given::with(())
            .given(events)
            .when(WalletCommand::ReleaseHold {
                redemption: redemption(),
                reason: ReleaseReason::Cancelled,
                at: at(),
            })
            .then_expect_events(vec![WalletEvent::HoldReleased {
                redemption: redemption(),
                amount: d("6"),
                reason: ReleaseReason::Cancelled,
                balance: d("10"),
                held: d("0"),
                at: at(),
            }]);
        for command in [
            WalletCommand::Redeem {
                redemption: redemption(),
                at: at(),
            },
            WalletCommand::ReleaseHold {
                redemption: redemption(),
                reason: ReleaseReason::Expired,
                at: at(),
            },
        ] {
            Given::with(())
                .given(with("10"))
                .when(command)
                .then_expect_error(DomainError::NotFound(format!("hold for {}", redemption())));
        }
    }

    #[test]
    fn the_oldest_points_expire_first_and_held_points_wait() {
        let mut old = accepted_grant("5", "1000");
        old.expires_at = Some(later(24));
        let mut young = accepted_grant("7", "1000");
        young.source = GrantSource::ReportResolved { report: report() };
        young.at = later(1);
        young.expires_at = Some(later(48));
        let mut wallet = Wallet::default();
        for grant in [old, young] {
            let event = wallet
                .decide(WalletCommand::Grant(Box::new(grant)))
                .unwrap();
            cqrs_es::Aggregate::apply(&mut wallet, event);
        }
        assert_eq!(
            wallet.expiring(),
            vec![(later(24), d("5")), (later(48), d("7"))]
        );
        assert_eq!(
            wallet.decide(WalletCommand::Expire { at: later(23) }),
            Err(DomainError::validation("at", "no points are due to expire"))
        );
        let event = wallet
            .decide(WalletCommand::Expire { at: later(25) })
            .unwrap();
        assert_eq!(
            event,
            WalletEvent::PointsExpired {
                amount: d("5"),
                balance: d("7"),
                held: d("0"),
                next_expiry: Some(later(48)),
                at: later(25),
            }
        );
        cqrs_es::Aggregate::apply(&mut wallet, event);
        let event = wallet
            .decide(WalletCommand::Hold {
                redemption: redemption(),
                amount: points("4"),
                at: later(30),
            })
            .unwrap();
        cqrs_es::Aggregate::apply(&mut wallet, event);
        match wallet
            .decide(WalletCommand::Expire { at: later(49) })
            .unwrap()
        {
            WalletEvent::PointsExpired {
                amount,
                balance,
                held,
                ..
            } => assert_eq!((amount, balance, held), (d("3"), d("4"), d("4"))),
            other => panic!("expected an expiry, got {other:?}"),
        }
    }

    #[test]
    fn a_reversal_takes_back_what_it_can_and_records_the_shortfall() {
        let mut events = with("10");
        events.push(hold("6"));
        let fraudulent = ReversalReason::Fraudulent { note: hash() };
        Given::with(())
            .given(events.clone())
            .when(WalletCommand::Reverse {
                report: report(),
                by: Some(actor(Role::Admin)),
                reason: fraudulent.clone(),
                at: at(),
            })
            .then_expect_events(vec![WalletEvent::PointsReversed {
                report: report(),
                amount: d("4"),
                shortfall: d("6"),
                reason: fraudulent.clone(),
                by: Some(actor(Role::Admin)),
                balance: d("6"),
                held: d("6"),
                next_expiry: None,
                at: at(),
            }]);
        Given::with(())
            .given(events.clone())
            .when(WalletCommand::Reverse {
                report: report(),
                by: Some(actor(Role::Clerk)),
                reason: fraudulent.clone(),
                at: at(),
            })
            .then_expect_error(DomainError::Forbidden(
                "only the community's admin reverses points".into(),
            ));
        let mut wallet = Wallet::default();
        for event in events {
            cqrs_es::Aggregate::apply(&mut wallet, event);
        }
        let event = wallet
            .decide(WalletCommand::Reverse {
                report: report(),
                by: Some(actor(Role::Admin)),
                reason: fraudulent.clone(),
                at: at(),
            })
            .unwrap();
        cqrs_es::Aggregate::apply(&mut wallet, event);
        assert_eq!(
            wallet
                .decide(WalletCommand::Reverse {
                    report: report(),
                    by: Some(actor(Role::Admin)),
                    reason: fraudulent,
                    at: at(),
                })
                .unwrap_err()
                .code(),
            "CONFLICT"
        );
        let bonus = accepted_grant("3", "100");
        let bonus = Grant {
            source: GrantSource::ReportResolved { report: report() },
            ..bonus
        };
        assert!(matches!(
            wallet.decide(WalletCommand::Grant(Box::new(bonus))),
            Ok(WalletEvent::GrantWithheld {
                reason: WithheldReason::ReportReversed,
                ..
            })
        ));
    }

    #[test]
    fn merged_duplicates_are_reversed_by_the_earning_process_only() {
        let merged = ReversalReason::MergedDuplicate {
            original: ReportId(id(101)),
        };
        Given::with(())
            .given(with("10"))
            .when(WalletCommand::Reverse {
                report: report(),
                by: Some(actor(Role::Admin)),
                reason: merged.clone(),
                at: at(),
            })
            .then_expect_error(DomainError::Forbidden(
                "merged duplicates are reversed by the earning process".into(),
            ));
        Given::with(())
            .given(with("10"))
            .when(WalletCommand::Reverse {
                report: report(),
                by: None,
                reason: merged.clone(),
                at: at(),
            })
            .then_expect_events(vec![WalletEvent::PointsReversed {
                report: report(),
                amount: d("10"),
                shortfall: d("0"),
                reason: merged,
                by: None,
                balance: d("0"),
                held: d("0"),
                next_expiry: None,
                at: at(),
            }]);
    }
}

mod budget {
    use super::*;

    type Given = TestFramework<Budget>;

    fn funded(amount: &str) -> BudgetEvent {
        BudgetEvent::BudgetFunded {
            by: actor(Role::Admin),
            amount: d(amount),
            note: hash(),
            balance: d(amount),
            at: at(),
        }
    }

    #[test]
    fn admins_fund_and_grants_draw_within_the_budget() {
        Given::with(())
            .given_no_previous_events()
            .when(BudgetCommand::Fund {
                by: actor(Role::Admin),
                amount: points("100"),
                note: hash(),
                at: at(),
            })
            .then_expect_events(vec![funded("100")]);
        Given::with(())
            .given_no_previous_events()
            .when(BudgetCommand::Fund {
                by: actor(Role::Clerk),
                amount: points("100"),
                note: hash(),
                at: at(),
            })
            .then_expect_error(DomainError::Forbidden(
                "only the community's admin funds its budget".into(),
            ));
        let source = GrantSource::ReportAccepted { report: report() };
        Given::with(())
            .given(vec![funded("100")])
            .when(BudgetCommand::Issue {
                resident: PersonId(id(50)),
                source: source.clone(),
                amount: d("40"),
                at: at(),
            })
            .then_expect_events(vec![BudgetEvent::BudgetIssued {
                resident: PersonId(id(50)),
                source: source.clone(),
                amount: d("40"),
                balance: d("60"),
                at: at(),
            }]);
        Given::with(())
            .given(vec![funded("100")])
            .when(BudgetCommand::Issue {
                resident: PersonId(id(50)),
                source,
                amount: d("100.01"),
                at: at(),
            })
            .then_expect_error(DomainError::InsufficientBudget(
                "100 left, 100.01 asked".into(),
            ));
        Given::with(())
            .given(vec![funded("999999999")])
            .when(BudgetCommand::Fund {
                by: actor(Role::Admin),
                amount: points("2"),
                note: hash(),
                at: at(),
            })
            .then_expect_error(DomainError::validation(
                "amount",
                "the budget holds at most a billion points",
            ));
    }

    #[test]
    fn amounts_parse_strictly() {
        for bad in ["0", "-1", "0.001", "1000000000.01"] {
            assert_eq!(
                Points::parse(d(bad)).unwrap_err().code(),
                "VALIDATION",
                "{bad}"
            );
        }
        assert_eq!(Points::parse(d("12.50")).unwrap().amount(), d("12.5"));
        assert!(serde_json::from_str::<Points>("\"0.001\"").is_err());
        assert_eq!(serde_json::to_string(&points("3.25")).unwrap(), "\"3.25\"");
    }
}

mod gift {
    use super::*;

    type Given = TestFramework<Gift>;

    fn centre() -> CentreId {
        CentreId(id(300))
    }
    fn offered(stock: u32) -> GiftEvent {
        GiftEvent::GiftOffered {
            by: actor(Role::Admin),
            centre: centre(),
            name: "环保袋".into(),
            price: d("20"),
            stock,
            at: at(),
        }
    }

    #[test]
    fn admins_offer_gifts() {
        Given::with(())
            .given_no_previous_events()
            .when(GiftCommand::Offer {
                by: actor(Role::Admin),
                centre: centre(),
                name: " 环保袋 ".into(),
                price: points("20"),
                stock: 5,
                at: at(),
            })
            .then_expect_events(vec![offered(5)]);
        let refusals = [
            (actor(Role::Clerk), "bag", 5, "FORBIDDEN"),
            (actor(Role::Admin), " ", 5, "VALIDATION"),
            (
                actor(Role::Admin),
                "bag",
                crate::points::gift::STOCK_MAX + 1,
                "VALIDATION",
            ),
        ];
        for (by, name, stock, code) in refusals {
            let error = Gift::default()
                .decide(GiftCommand::Offer {
                    by,
                    centre: centre(),
                    name: name.into(),
                    price: points("1"),
                    stock,
                    at: at(),
                })
                .unwrap_err();
            assert_eq!(error.code(), code, "{name} {stock}");
        }
        Given::with(())
            .given(vec![offered(5)])
            .when(GiftCommand::Offer {
                by: actor(Role::Admin),
                centre: centre(),
                name: "bag".into(),
                price: points("1"),
                stock: 1,
                at: at(),
            })
            .then_expect_error(DomainError::AlreadyExists("gift".into()));
    }

    #[test]
    fn clerks_and_admins_add_and_correct_stock() {
        Given::with(())
            .given(vec![offered(5)])
            .when(GiftCommand::AddStock {
                by: actor(Role::Clerk),
                quantity: 3,
                reason: hash(),
                at: at(),
            })
            .then_expect_events(vec![GiftEvent::GiftStockAdded {
                by: actor(Role::Clerk),
                quantity: 3,
                reason: hash(),
                stock: 8,
                at: at(),
            }]);
        Given::with(())
            .given(vec![offered(5)])
            .when(GiftCommand::CorrectStock {
                by: actor(Role::Admin),
                stock: 2,
                reason: hash(),
                at: at(),
            })
            .then_expect_events(vec![GiftEvent::GiftStockCorrected {
                by: actor(Role::Admin),
                previous: 5,
                reason: hash(),
                stock: 2,
                at: at(),
            }]);
        let refusals = [
            (
                GiftCommand::AddStock {
                    by: actor(Role::Citizen),
                    quantity: 1,
                    reason: hash(),
                    at: at(),
                },
                "FORBIDDEN",
            ),
            (
                GiftCommand::AddStock {
                    by: actor(Role::Clerk),
                    quantity: 0,
                    reason: hash(),
                    at: at(),
                },
                "VALIDATION",
            ),
            (
                GiftCommand::AddStock {
                    by: actor(Role::Clerk),
                    quantity: u32::MAX,
                    reason: hash(),
                    at: at(),
                },
                "VALIDATION",
            ),
            (
                GiftCommand::CorrectStock {
                    by: actor(Role::GridWorker),
                    stock: 1,
                    reason: hash(),
                    at: at(),
                },
                "FORBIDDEN",
            ),
        ];
        for (command, code) in refusals {
            let mut gift = Gift::default();
            cqrs_es::Aggregate::apply(&mut gift, offered(5));
            assert_eq!(gift.decide(command).unwrap_err().code(), code);
        }
        Given::with(())
            .given_no_previous_events()
            .when(GiftCommand::HoldStock {
                redemption: redemption(),
                quantity: 1,
                at: at(),
            })
            .then_expect_error(DomainError::NotFound("gift".into()));
    }

    #[test]
    fn stock_is_held_then_handed_over_or_released() {
        let held = GiftEvent::GiftStockHeld {
            redemption: redemption(),
            quantity: 2,
            stock: 3,
            held: 2,
            at: at(),
        };
        Given::with(())
            .given(vec![offered(5)])
            .when(GiftCommand::HoldStock {
                redemption: redemption(),
                quantity: 2,
                at: at(),
            })
            .then_expect_events(vec![held.clone()]);
        Given::with(())
            .given(vec![offered(1)])
            .when(GiftCommand::HoldStock {
                redemption: redemption(),
                quantity: 2,
                at: at(),
            })
            .then_expect_error(DomainError::OutOfStock("1 in stock, 2 asked".into()));
        Given::with(())
            .given(vec![offered(5), held.clone()])
            .when(GiftCommand::HandOver {
                redemption: redemption(),
                at: at(),
            })
            .then_expect_events(vec![GiftEvent::GiftHandedOver {
                redemption: redemption(),
                quantity: 2,
                stock: 3,
                held: 0,
                at: at(),
            }]);
        Given::with(())
            .given(vec![offered(5), held])
            .when(GiftCommand::ReleaseStock {
                redemption: redemption(),
                at: at(),
            })
            .then_expect_events(vec![GiftEvent::GiftStockReleased {
                redemption: redemption(),
                quantity: 2,
                stock: 5,
                held: 0,
                at: at(),
            }]);
        Given::with(())
            .given(vec![offered(5)])
            .when(GiftCommand::HandOver {
                redemption: redemption(),
                at: at(),
            })
            .then_expect_error(DomainError::NotFound(format!("hold for {}", redemption())));
    }
}

mod redemption {
    use super::*;

    type Given = TestFramework<Redemption>;

    fn placement() -> Placement {
        Placement {
            redemption: redemption(),
            resident: PersonId(id(50)),
            gift: GiftId(id(400)),
            centre: CentreId(id(300)),
            quantity: 1,
            points: d("20"),
            by: actor(Role::Clerk),
            expires_at: later(1),
            at: at(),
        }
    }
    fn placed() -> RedemptionEvent {
        RedemptionEvent::RedemptionPlaced(Box::new(placement()))
    }

    #[test]
    fn a_clerk_places_a_redemption_once() {
        Given::with(())
            .given_no_previous_events()
            .when(RedemptionCommand::Place(Box::new(placement())))
            .then_expect_events(vec![placed()]);
        Given::with(())
            .given(vec![placed()])
            .when(RedemptionCommand::Place(Box::new(placement())))
            .then_expect_error(DomainError::AlreadyExists(format!(
                "redemption {}",
                redemption()
            )));
        let mut by_citizen = placement();
        by_citizen.by = actor(Role::Citizen);
        let mut none = placement();
        none.quantity = 0;
        let mut many = placement();
        many.quantity = crate::points::redemption::QUANTITY_MAX + 1;
        let mut expired = placement();
        expired.expires_at = at();
        for (what, placement, code) in [
            ("citizen", by_citizen, "FORBIDDEN"),
            ("none", none, "VALIDATION"),
            ("many", many, "VALIDATION"),
            ("expired", expired, "VALIDATION"),
        ] {
            let error = Redemption::default()
                .decide(RedemptionCommand::Place(Box::new(placement)))
                .unwrap_err();
            assert_eq!(error.code(), code, "{what}");
        }
    }

    #[test]
    fn a_placed_redemption_completes_within_its_hold_or_is_released() {
        let clerk = actor(Role::Clerk);
        Given::with(())
            .given(vec![placed()])
            .when(RedemptionCommand::Complete {
                by: clerk,
                at: at(),
            })
            .then_expect_events(vec![RedemptionEvent::RedemptionCompleted {
                by: clerk,
                at: at(),
            }]);
        Given::with(())
            .given(vec![placed()])
            .when(RedemptionCommand::Complete {
                by: clerk,
                at: later(2),
            })
            .then_expect_error(DomainError::IllegalTransition {
                action: "complete".into(),
                state: "past its hold time (place it again)".into(),
            });
        Given::with(())
            .given(vec![placed()])
            .when(RedemptionCommand::Cancel {
                by: clerk,
                at: at(),
            })
            .then_expect_events(vec![RedemptionEvent::RedemptionCancelled {
                by: clerk,
                at: at(),
            }]);
        Given::with(())
            .given(vec![placed()])
            .when(RedemptionCommand::Release { at: at() })
            .then_expect_error(DomainError::validation("at", "the hold has not run out"));
        Given::with(())
            .given(vec![placed()])
            .when(RedemptionCommand::Release { at: later(2) })
            .then_expect_events(vec![RedemptionEvent::RedemptionReleased { at: later(2) }]);
        Given::with(())
            .given(vec![
                placed(),
                RedemptionEvent::RedemptionCompleted {
                    by: clerk,
                    at: at(),
                },
            ])
            .when(RedemptionCommand::Cancel {
                by: clerk,
                at: at(),
            })
            .then_expect_error(DomainError::IllegalTransition {
                action: "cancel".into(),
                state: "completed".into(),
            });
        Given::with(())
            .given(vec![placed()])
            .when(RedemptionCommand::Cancel {
                by: actor(Role::Citizen),
                at: at(),
            })
            .then_expect_error(DomainError::Forbidden(
                "only clerks and admins work the counter".into(),
            ));
        Given::with(())
            .given_no_previous_events()
            .when(RedemptionCommand::Complete {
                by: clerk,
                at: at(),
            })
            .then_expect_error(DomainError::NotFound("redemption".into()));
    }

    #[test]
    fn movements_are_double_entry() {
        let resident = PersonId(id(50));
        let event = granted(accepted_grant("10", "100"));
        assert_eq!(
            Movement::of_wallet(resident, &event),
            Some(Movement {
                debit: Account::Issuing,
                credit: Account::Wallet(resident),
                amount: d("10"),
            })
        );
        let held = WalletEvent::PointsHeld {
            redemption: redemption(),
            amount: d("3"),
            balance: d("10"),
            held: d("3"),
            at: at(),
        };
        assert_eq!(Movement::of_wallet(resident, &held), None);
    }
}
