//! Random sequences of funding, grants, redemptions, cancellations,
//! expiries and reversals keep every balance at or above zero, the
//! community's accounts summing to zero, and each wallet's statement (the
//! balances its events carry) equal to its balance.

use std::collections::BTreeMap;

use cqrs_es::Aggregate;
use proptest::prelude::*;
use rust_decimal::Decimal;
use uuid::Uuid;

use super::redemption::Placement;
use super::wallet::ReversalReason;
use super::*;
use crate::values::{
    Actor, CentreId, ContentHash, GiftId, Points, RedemptionId, ReportId, Role, Timestamp,
};

const WALLETS: u128 = 3;
const REPORTS: u128 = 6;

#[derive(Clone, Debug)]
enum Op {
    Fund(i64),
    Grant {
        wallet: u128,
        report: u128,
        cents: i64,
        expires_in_hours: Option<u32>,
    },
    Place {
        wallet: u128,
        quantity: u32,
    },
    Complete(usize),
    Cancel(usize),
    Expire {
        wallet: u128,
        hours: u32,
    },
    Reverse {
        wallet: u128,
        report: u128,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (1_i64..50_000).prop_map(Op::Fund),
        (
            0..WALLETS,
            0..REPORTS,
            1_i64..5_000,
            proptest::option::of(1_u32..100)
        )
            .prop_map(|(wallet, report, cents, expires_in_hours)| Op::Grant {
                wallet,
                report,
                cents,
                expires_in_hours
            }),
        (0..WALLETS, 1_u32..4).prop_map(|(wallet, quantity)| Op::Place { wallet, quantity }),
        (0_usize..8).prop_map(Op::Complete),
        (0_usize..8).prop_map(Op::Cancel),
        (0..WALLETS, 0_u32..200).prop_map(|(wallet, hours)| Op::Expire { wallet, hours }),
        (0..WALLETS, 0..REPORTS).prop_map(|(wallet, report)| Op::Reverse { wallet, report }),
    ]
}

/// One community's points, held in memory: the aggregates, and every
/// event's movement and statement line.
#[derive(Default)]
struct Ledger {
    budget: Budget,
    wallets: BTreeMap<u128, Wallet>,
    gift: Gift,
    redemptions: Vec<(u128, RedemptionId, Redemption)>,
    accounts: BTreeMap<Account, Decimal>,
    /// Each wallet's statement: the balance after every event.
    statements: BTreeMap<u128, Vec<Decimal>>,
    now: i64,
}

fn admin() -> Actor {
    Actor {
        person: PersonId(Uuid::from_u128(1)),
        role: Role::Admin,
    }
}
fn clerk() -> Actor {
    Actor {
        person: PersonId(Uuid::from_u128(2)),
        role: Role::Clerk,
    }
}
fn resident(wallet: u128) -> PersonId {
    PersonId(Uuid::from_u128(1_000 + wallet))
}

impl Ledger {
    fn new() -> Self {
        let mut ledger = Ledger::default();
        let offered = ledger
            .gift
            .decide(GiftCommand::Offer {
                by: admin(),
                centre: CentreId(Uuid::from_u128(3)),
                name: "bag".into(),
                price: Points::parse(Decimal::new(350, 2)).unwrap(),
                stock: 6,
                at: Timestamp::from_micros(0),
            })
            .unwrap();
        ledger.gift.apply(offered);
        ledger
    }

    fn at(&mut self) -> Timestamp {
        self.now += Timestamp::MICROS_PER_HOUR;
        Timestamp::from_micros(self.now)
    }

    fn move_points(&mut self, movement: Option<Movement>) {
        if let Some(movement) = movement {
            *self.accounts.entry(movement.debit).or_default() -= movement.amount;
            *self.accounts.entry(movement.credit).or_default() += movement.amount;
        }
    }

    fn wallet_event(&mut self, wallet: u128, command: WalletCommand) -> Option<WalletEvent> {
        let state = self.wallets.entry(wallet).or_default();
        let event = state.decide(command).ok()?;
        state.apply(event.clone());
        self.statements
            .entry(wallet)
            .or_default()
            .push(event.balance_and_held().0);
        self.move_points(Movement::of_wallet(resident(wallet), &event));
        Some(event)
    }

    fn run(&mut self, op: Op) {
        let at = self.at();
        match op {
            Op::Fund(cents) => {
                let command = BudgetCommand::Fund {
                    by: admin(),
                    amount: Points::parse(Decimal::new(cents, 2)).unwrap(),
                    note: ContentHash::parse(&"b".repeat(64)).unwrap(),
                    at,
                };
                if let Ok(event) = self.budget.decide(command) {
                    self.move_points(Movement::of_budget(&event));
                    self.budget.apply(event);
                }
            }
            Op::Grant {
                wallet,
                report,
                cents,
                expires_in_hours,
            } => self.grant(wallet, report, cents, expires_in_hours, at),
            Op::Place { wallet, quantity } => self.place(wallet, quantity, at),
            Op::Complete(n) | Op::Cancel(n) if n >= self.redemptions.len() => {}
            Op::Complete(n) => self.finish(n, true, at),
            Op::Cancel(n) => self.finish(n, false, at),
            Op::Expire { wallet, hours } => {
                let at = Timestamp::from_micros(
                    at.micros() + i64::from(hours) * Timestamp::MICROS_PER_HOUR,
                );
                self.wallet_event(wallet, WalletCommand::Expire { at });
            }
            Op::Reverse { wallet, report } => {
                self.wallet_event(
                    wallet,
                    WalletCommand::Reverse {
                        report: ReportId(Uuid::from_u128(report)),
                        by: Some(admin()),
                        reason: ReversalReason::Fraudulent {
                            note: ContentHash::parse(&"c".repeat(64)).unwrap(),
                        },
                        at,
                    },
                );
            }
        }
    }

    fn grant(
        &mut self,
        wallet: u128,
        report: u128,
        cents: i64,
        expires: Option<u32>,
        at: Timestamp,
    ) {
        let grant = Grant {
            source: GrantSource::ReportAccepted {
                report: ReportId(Uuid::from_u128(report)),
            },
            amount: Points::parse(Decimal::new(cents, 2)).unwrap(),
            by: None,
            grid: None,
            budget_available: self.budget.balance,
            daily_limit: Some(Decimal::new(4_000, 2)),
            day: (at.micros() / (24 * Timestamp::MICROS_PER_HOUR)) as i32,
            expires_at: expires.map(|hours| at.plus_hours(hours)),
            at,
        };
        let source = grant.source.clone();
        if let Some(WalletEvent::PointsGranted { amount, .. }) =
            self.wallet_event(wallet, WalletCommand::Grant(Box::new(grant)))
        {
            let issued = self.budget.decide(BudgetCommand::Issue {
                resident: resident(wallet),
                source,
                amount,
                at,
            });
            self.budget
                .apply(issued.expect("a grant within the budget is issued"));
        }
    }

    /// Places through the counter's own command, as the desk does.
    fn place(&mut self, wallet: u128, quantity: u32, at: Timestamp) {
        let id = RedemptionId(Uuid::from_u128(10_000 + self.redemptions.len() as u128));
        let placement = Placement {
            redemption: id,
            resident: resident(wallet),
            gift: GiftId(Uuid::from_u128(4)),
            centre: CentreId(Uuid::from_u128(3)),
            quantity,
            points: self.gift.price * Decimal::from(quantity),
            by: clerk(),
            expires_at: at.plus_hours(1_000),
            at,
        };
        let mut redemption = Redemption::default();
        let state = self.wallets.entry(wallet).or_default().clone();
        // All three or none, as the one append of three streams.
        let Ok(decided) = counter::place(&redemption, &state, &self.gift, placement) else {
            return;
        };
        self.apply_counter(wallet, &mut redemption, decided);
        self.redemptions.push((wallet, id, redemption));
    }

    /// Completes or cancels through the counter's own command.
    fn finish(&mut self, n: usize, complete: bool, at: Timestamp) {
        let (wallet, mut redemption) = {
            let (wallet, _, redemption) = &self.redemptions[n];
            (*wallet, redemption.clone())
        };
        let finish = if complete {
            counter::Finish::Complete(clerk())
        } else {
            counter::Finish::Cancel(clerk())
        };
        let state = self.wallets.entry(wallet).or_default().clone();
        let decided = match counter::finish(&redemption, &state, &self.gift, finish, at) {
            Ok(decided) => decided,
            // Only a redemption that is no longer placed refuses: a placed
            // one's hold and stock are always there to finish.
            Err(error) => {
                assert_ne!(redemption.status, RedemptionStatus::Placed, "{error}");
                return;
            }
        };
        self.apply_counter(wallet, &mut redemption, decided);
        self.redemptions[n].2 = redemption;
    }

    fn apply_counter(
        &mut self,
        wallet: u128,
        redemption: &mut Redemption,
        decided: counter::CounterEvents,
    ) {
        redemption.apply(decided.redemption);
        self.gift.apply(decided.gift);
        let event = decided.wallet;
        self.wallets.entry(wallet).or_default().apply(event.clone());
        self.statements
            .entry(wallet)
            .or_default()
            .push(event.balance_and_held().0);
        self.move_points(Movement::of_wallet(resident(wallet), &event));
    }

    fn check(&self) {
        let total: Decimal = self.accounts.values().sum();
        assert_eq!(total, Decimal::ZERO, "the accounts sum to zero");
        assert!(
            self.accounts
                .get(&Account::Issuing)
                .copied()
                .unwrap_or_default()
                >= Decimal::ZERO
        );
        assert_eq!(
            self.accounts
                .get(&Account::Issuing)
                .copied()
                .unwrap_or_default(),
            self.budget.balance
        );
        for (n, wallet) in &self.wallets {
            assert!(wallet.balance >= Decimal::ZERO && wallet.held <= wallet.balance);
            let account = self
                .accounts
                .get(&Account::Wallet(resident(*n)))
                .copied()
                .unwrap_or_default();
            assert_eq!(account, wallet.balance, "the ledger agrees with the wallet");
            let statement = self.statements.get(n).and_then(|s| s.last()).copied();
            assert_eq!(
                statement.unwrap_or_default(),
                wallet.balance,
                "the statement's running balance is the wallet's"
            );
            let held: Decimal = wallet.holds.values().sum();
            assert_eq!(held, wallet.held);
        }
        let placed: u32 = self
            .redemptions
            .iter()
            .filter(|(_, _, r)| r.status == RedemptionStatus::Placed)
            .map(|(_, _, r)| r.placement.as_ref().map_or(0, |p| p.quantity))
            .sum();
        assert_eq!(
            placed, self.gift.held,
            "held stock is the placed redemptions'"
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]
    #[test]
    fn the_ledger_stays_balanced(ops in proptest::collection::vec(op(), 1..80)) {
        let mut ledger = Ledger::new();
        for op in ops {
            ledger.run(op);
            ledger.check();
        }
    }
}
