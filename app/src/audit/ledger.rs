//! The points ledger's invariants, checked by folding the log in position
//! order, with nothing but the events: every movement is balanced and the
//! accounts sum to zero at every position; every wallet event carries the
//! balance and held points its movements give, never below zero and never
//! holding more than the balance; the budget is never overdrawn; no gift's
//! stock goes below zero; every hold is completed, cancelled or released
//! once its time has run out.

use domain::streams::StreamKind;
use std::collections::{BTreeMap, HashMap};

use domain::points::{
    Account, BudgetEvent, GiftEvent, GrantSource, Movement, RedemptionEvent, WalletEvent,
};
use domain::values::PersonId;
use rust_decimal::Decimal;
use serde::Serialize;
use store::RecordedEvent;
use uuid::Uuid;

/// How long past its time a hold may stay open before the sweeper's
/// release counts as missing. Time here is the commands' own (their `at`),
/// the clock holds run out by.
const HOLD_GRACE_MICROS: i64 = 10 * 60 * 1_000_000;

/// The first thing that did not hold.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Failure {
    pub position: i64,
    /// A stable name, one of [`FAILURES`].
    pub what: String,
    pub detail: String,
}

/// Every failure a verification can report, by its stable name, with what
/// it means: the one list docs/AUDIT.md and the GraphQL schema show (a
/// test holds all three alike).
pub const FAILURES: &[(&str, &str)] = &[
    (
        "missing_position",
        "a position is missing, or came out of order",
    ),
    (
        "broken_link",
        "an event's previous_hash is not the hash before it",
    ),
    (
        "hash_mismatch",
        "an event's hash is not the hash of its fields",
    ),
    (
        "head_mismatch",
        "the head names another hash than the log ends with",
    ),
    (
        "seal_mismatch",
        "the log no longer has the sealed hash at the seal's position",
    ),
    (
        "seal_tree_mismatch",
        "a seal's tree root is not the root of the tree of the events up to it",
    ),
    (
        "seal_beyond_log",
        "a seal names a position past the end of a complete log",
    ),
    (
        "seal_untrusted_key",
        "a seal is signed by another key than the one trusted",
    ),
    (
        "seal_signature_invalid",
        "a seal's signature does not hold, or is missing",
    ),
    (
        "erasure_mismatch",
        "a tombstone names another who or why than the chain's erasure",
    ),
    (
        "erasure_tombstone_missing",
        "the chain records an erasure that no tombstone shows",
    ),
    (
        "erasure_unrecorded",
        "a tombstone has no erasure in the chain (position 0)",
    ),
    (
        "unbalanced",
        "the accounts of the points ledger do not sum to zero",
    ),
    ("wallet_below_zero", "a wallet's balance went below zero"),
    ("wallet_overheld", "a wallet holds more than its balance"),
    (
        "wallet_balance_mismatch",
        "a wallet event's balance or held is not what its movements give",
    ),
    (
        "budget_overdrawn",
        "the community's issuing account went below zero",
    ),
    (
        "budget_balance_mismatch",
        "a budget event's balance is not what its movements give",
    ),
    (
        "hold_completed_late",
        "a redemption was completed after its hold ran out (by the commands' time)",
    ),
    (
        "hold_released_early",
        "a hold was released before it ran out",
    ),
    (
        "hold_not_finished",
        "a counter hold was neither completed nor released in time",
    ),
    (
        "bad_amount",
        "an amount is not positive or has more than two decimals",
    ),
    (
        "grant_unpaired",
        "a grant without its budget issue in its transaction, or an issue without its grant",
    ),
    (
        "stock_out_of_range",
        "a gift's stock went below zero or above its most",
    ),
    (
        "stock_mismatch",
        "a gift event's stock or held is not what the gift's events give",
    ),
    (
        "undecodable",
        "an event's payload is not what its type says",
    ),
    (
        "unanchored_start",
        "an export starts after position 1 without a trusted seal at the position before",
    ),
    (
        "malformed_line",
        "an export line is not JSON of its type (position: the next one expected)",
    ),
];

impl Failure {
    /// A failure named `what`, which must be one of [`FAILURES`].
    pub fn new(position: i64, what: &str, detail: impl Into<String>) -> Failure {
        assert!(
            FAILURES.iter().any(|(name, _)| *name == what),
            "`{what}` is not in the list of failures"
        );
        Failure {
            position,
            what: what.to_string(),
            detail: detail.into(),
        }
    }
}

#[derive(Default)]
pub struct LedgerChecker {
    accounts: BTreeMap<Account, Decimal>,
    /// The sum over all accounts, kept as movements apply.
    total: Decimal,
    wallets: HashMap<Uuid, (Decimal, Decimal)>,
    budget: Decimal,
    /// Placed redemptions: when their hold runs out, and where they were placed.
    open_holds: HashMap<Uuid, (i64, i64)>,
    /// The latest command time seen (the time holds run out by).
    latest_micros: i64,
    /// Each gift's stock, held count and holds, by its events.
    gifts: HashMap<Uuid, GiftStock>,
    /// The grants and budget issues of the transaction being read that
    /// have not met their other half yet, and that transaction's time.
    unpaired: Vec<Unpaired>,
    transaction_at: Option<chrono::DateTime<chrono::Utc>>,
}

/// A grant or a budget issue waiting for its other half: whose, why, how
/// much, which of the two, and where.
struct Unpaired {
    resident: Uuid,
    source: String,
    amount: Decimal,
    issued: bool,
    position: i64,
}

/// A gift's shelf as its events build it: on the shelf and free, held for
/// redemptions, and each redemption's hold.
#[derive(Default)]
struct GiftStock {
    stock: u32,
    held: u32,
    holds: HashMap<Uuid, u32>,
}

impl LedgerChecker {
    /// Folds one event; the first broken invariant is the error.
    pub fn check(&mut self, event: &RecordedEvent) -> Result<(), Failure> {
        let position = event.position;
        if self.transaction_at != Some(event.recorded_at) {
            // A new transaction: the last one's grants and issues all met.
            self.paired()?;
            self.transaction_at = Some(event.recorded_at);
        }
        let undecodable =
            |error: store::StoreError| Failure::new(position, "undecodable", error.to_string());
        match projections::runner::kind(event) {
            Some(StreamKind::Budget) => {
                let budget_event = event.decode().map_err(undecodable)?;
                if let BudgetEvent::BudgetIssued {
                    resident,
                    source,
                    amount,
                    ..
                } = &budget_event
                {
                    self.pair(resident.0, source, *amount, true, position);
                }
                self.budget(position, &budget_event)
            }
            Some(StreamKind::Wallet) => {
                let resident = stream_uuid(event, "wallet")?;
                let wallet_event = event.decode().map_err(undecodable)?;
                if let WalletEvent::PointsGranted { source, amount, .. } = &wallet_event {
                    self.pair(resident, source, *amount, false, position);
                }
                self.wallet(position, resident, &wallet_event)
            }
            Some(StreamKind::Gift) => {
                let gift = stream_uuid(event, "gift")?;
                let stock = self.gifts.entry(gift).or_default();
                stock.check(position, &event.decode().map_err(undecodable)?)
            }
            Some(StreamKind::Redemption) => {
                let redemption = stream_uuid(event, "redemption")?;
                self.redemption(position, redemption, event.decode().map_err(undecodable)?)
            }
            _ => Ok(()),
        }
    }

    /// Every account's balance so far: the trial balance as of the last
    /// event folded.
    pub fn balances(&self) -> &BTreeMap<Account, Decimal> {
        &self.accounts
    }

    /// A grant (`issued` false) or a budget issue meets its other half of
    /// the same transaction, or waits for it.
    fn pair(
        &mut self,
        resident: Uuid,
        source: &GrantSource,
        amount: Decimal,
        issued: bool,
        position: i64,
    ) {
        let source = serde_json::to_string(source).unwrap_or_default();
        let other = self.unpaired.iter().position(|u| {
            (u.resident, &u.source, u.amount, u.issued) == (resident, &source, amount, !issued)
        });
        match other {
            Some(index) => {
                self.unpaired.remove(index);
            }
            None => self.unpaired.push(Unpaired {
                resident,
                source,
                amount,
                issued,
                position,
            }),
        }
    }

    /// Whether every grant and budget issue read so far met its other half.
    fn paired(&self) -> Result<(), Failure> {
        match self.unpaired.first() {
            None => Ok(()),
            Some(unpaired) => Err(Failure::new(
                unpaired.position,
                "grant_unpaired",
                if unpaired.issued {
                    "the budget issued points that no grant of its transaction received"
                } else {
                    "a grant whose transaction issued nothing from the budget"
                },
            )),
        }
    }

    /// After the last event: every grant met its budget issue; holds whose
    /// time ran out well before it and that were never finished.
    pub fn finish(&self) -> Result<(), Failure> {
        self.paired()?;
        let overdue = self
            .open_holds
            .values()
            .filter(|(expires_at, _)| expires_at + HOLD_GRACE_MICROS < self.latest_micros)
            .map(|(_, placed_at)| *placed_at)
            .min();
        match overdue {
            Some(position) => Err(Failure::new(
                position,
                "hold_not_finished",
                "a hold ran out and was never completed, cancelled or released",
            )),
            None => Ok(()),
        }
    }

    fn apply(&mut self, position: i64, movement: Movement) -> Result<(), Failure> {
        if movement.amount <= Decimal::ZERO || movement.amount.scale() > 2 {
            return Err(Failure::new(
                position,
                "bad_amount",
                format!(
                    "{} is not a positive amount with at most two decimals",
                    movement.amount
                ),
            ));
        }
        if movement.debit == movement.credit {
            return Err(Failure::new(
                position,
                "unbalanced",
                "a movement within one account",
            ));
        }
        *self.accounts.entry(movement.debit).or_default() -= movement.amount;
        *self.accounts.entry(movement.credit).or_default() += movement.amount;
        // Kept as movements apply (summing every account each time would
        // cost a pass over every wallet per event).
        self.total -= movement.amount;
        self.total += movement.amount;
        if !self.total.is_zero() {
            let total = self.total;
            return Err(Failure::new(
                position,
                "unbalanced",
                format!("the accounts sum to {total}"),
            ));
        }
        Ok(())
    }

    fn budget(&mut self, position: i64, event: &BudgetEvent) -> Result<(), Failure> {
        if let Some(movement) = Movement::of_budget(event) {
            self.apply(position, movement)?;
        }
        let carried = match event {
            BudgetEvent::BudgetFunded {
                amount, balance, ..
            } => {
                self.budget += amount;
                *balance
            }
            BudgetEvent::BudgetIssued {
                amount, balance, ..
            } => {
                self.budget -= amount;
                *balance
            }
        };
        if self.budget < Decimal::ZERO {
            return Err(Failure::new(
                position,
                "budget_overdrawn",
                format!("the budget is at {}", self.budget),
            ));
        }
        if carried != self.budget {
            return Err(Failure::new(
                position,
                "budget_balance_mismatch",
                format!("the event says {carried}, the ledger {}", self.budget),
            ));
        }
        Ok(())
    }

    fn wallet(
        &mut self,
        position: i64,
        resident: Uuid,
        event: &WalletEvent,
    ) -> Result<(), Failure> {
        self.latest_micros = self.latest_micros.max(event.at().micros());
        let movement = Movement::of_wallet(PersonId(resident), event);
        if let Some(movement) = movement {
            self.apply(position, movement)?;
        }
        let (balance, held) = self.wallets.entry(resident).or_default();
        match event {
            WalletEvent::PointsGranted { amount, .. } => *balance += amount,
            WalletEvent::PointsHeld { amount, .. } => *held += amount,
            WalletEvent::HoldReleased { amount, .. } => *held -= amount,
            WalletEvent::PointsRedeemed { amount, .. } => {
                *held -= amount;
                *balance -= amount;
            }
            WalletEvent::PointsExpired { amount, .. }
            | WalletEvent::PointsReversed { amount, .. } => *balance -= amount,
            WalletEvent::GrantWithheld { .. } => {}
        }
        let (balance, held) = (*balance, *held);
        if balance < Decimal::ZERO || held < Decimal::ZERO {
            return Err(Failure::new(
                position,
                "wallet_below_zero",
                format!("wallet {resident} at {balance}, held {held}"),
            ));
        }
        if held > balance {
            return Err(Failure::new(
                position,
                "wallet_overheld",
                format!("wallet {resident} holds {held} of {balance}"),
            ));
        }
        if event.balance_and_held() != (balance, held) {
            let (carried_balance, carried_held) = event.balance_and_held();
            return Err(Failure::new(
                position,
                "wallet_balance_mismatch",
                format!(
                    "wallet {resident}: the event says {carried_balance} (held {carried_held}), \
                     its movements {balance} (held {held})"
                ),
            ));
        }
        Ok(())
    }

    /// A hold, as the counter's rules have it: completed only while it
    /// holds (its command time at or before `expires_at`), released only
    /// after it ran out, cancelled at any time; and finished within the
    /// grace once it ran out (see [`LedgerChecker::finish`]).
    fn redemption(
        &mut self,
        position: i64,
        redemption: Uuid,
        event: RedemptionEvent,
    ) -> Result<(), Failure> {
        let expires_at = self.open_holds.get(&redemption).map(|(at, _)| *at);
        let late = |at: i64| expires_at.is_some_and(|expires| at > expires);
        let at = match event {
            RedemptionEvent::RedemptionPlaced(placement) => {
                self.open_holds
                    .insert(redemption, (placement.expires_at.micros(), position));
                placement.at
            }
            RedemptionEvent::RedemptionCompleted { at, .. } if late(at.micros()) => {
                return Err(Failure::new(
                    position,
                    "hold_completed_late",
                    format!("redemption {redemption} was completed after its hold ran out"),
                ));
            }
            RedemptionEvent::RedemptionReleased { at } if !late(at.micros()) => {
                return Err(Failure::new(
                    position,
                    "hold_released_early",
                    format!("redemption {redemption} was released before its hold ran out"),
                ));
            }
            RedemptionEvent::RedemptionCompleted { at, .. }
            | RedemptionEvent::RedemptionCancelled { at, .. }
            | RedemptionEvent::RedemptionReleased { at } => {
                self.open_holds.remove(&redemption);
                at
            }
        };
        self.latest_micros = self.latest_micros.max(at.micros());
        Ok(())
    }
}

impl GiftStock {
    /// The stock rules, as the gift's commands apply them: an offer sets
    /// the stock; an addition adds its quantity; a correction names the
    /// stock it replaces; a hold moves its quantity from the stock to
    /// held, never more than the stock; a release moves a hold back; a
    /// handing over takes a hold away. Each event carries the stock (and,
    /// for holds, the held count) after it, which must be what these give.
    fn check(&mut self, position: i64, event: &GiftEvent) -> Result<(), Failure> {
        use GiftEvent::*;
        let mismatch = |detail: String| Failure::new(position, "stock_mismatch", detail);
        let (stock, held) = match event {
            GiftOffered { stock, .. } => (*stock as i64, self.held as i64),
            GiftStockAdded {
                quantity, stock, ..
            } => {
                if *stock as i64 != self.stock as i64 + *quantity as i64 {
                    return Err(mismatch(format!(
                        "{} in stock and {quantity} added, the event says {stock}",
                        self.stock
                    )));
                }
                (*stock as i64, self.held as i64)
            }
            GiftStockCorrected {
                previous, stock, ..
            } => {
                if *previous != self.stock {
                    return Err(mismatch(format!(
                        "corrects {previous}, but {} was in stock",
                        self.stock
                    )));
                }
                (*stock as i64, self.held as i64)
            }
            GiftStockHeld {
                redemption,
                quantity,
                ..
            } => {
                if self.holds.insert(redemption.0, *quantity).is_some() {
                    return Err(mismatch(format!("redemption {} held twice", redemption.0)));
                }
                (
                    self.stock as i64 - *quantity as i64,
                    self.held as i64 + *quantity as i64,
                )
            }
            GiftStockReleased {
                redemption,
                quantity,
                ..
            }
            | GiftHandedOver {
                redemption,
                quantity,
                ..
            } => {
                if self.holds.remove(&redemption.0) != Some(*quantity) {
                    return Err(mismatch(format!(
                        "redemption {} had no hold of {quantity}",
                        redemption.0
                    )));
                }
                let back = matches!(event, GiftStockReleased { .. });
                let stock = self.stock as i64 + if back { *quantity as i64 } else { 0 };
                (stock, self.held as i64 - *quantity as i64)
            }
        };
        if !(0..=domain::points::gift::STOCK_MAX as i64).contains(&stock) {
            return Err(Failure::new(
                position,
                "stock_out_of_range",
                format!("a stock of {stock}"),
            ));
        }
        let (carried_stock, carried_held) = event.stock_and_held();
        let held_differs = carried_held.is_some_and(|carried| i64::from(carried) != held);
        if i64::from(carried_stock) != stock || held_differs {
            return Err(mismatch(format!(
                "the event says {carried_stock} in stock (held {carried_held:?}), \
                 the gift's events {stock} (held {held})"
            )));
        }
        (self.stock, self.held) = (stock as u32, held as u32);
        Ok(())
    }
}

fn stream_uuid(event: &RecordedEvent, prefix: &str) -> Result<Uuid, Failure> {
    projections::runner::entity_id(event, prefix)
        .map_err(|error| Failure::new(event.position, "undecodable", error.to_string()))
}
