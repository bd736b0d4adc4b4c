//! A resident's wallet in one community. Its balance never goes below zero
//! and never below what is held for redemptions; each grant source is
//! granted at most once; points are spent and expire oldest first.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use cqrs_es::DomainEvent;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use super::GrantSource;
use crate::error::DomainError;
use crate::values::{Actor, ContentHash, GridId, Points, RedemptionId, ReportId, Role, Timestamp};

/// Points granted together, which expire together.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Lot {
    pub granted_at: Timestamp,
    pub expires_at: Option<Timestamp>,
    pub remaining: Decimal,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Wallet {
    /// Everything in the wallet, held points included.
    pub balance: Decimal,
    /// Points held for redemptions placed and not yet completed.
    pub held: Decimal,
    pub holds: BTreeMap<RedemptionId, Decimal>,
    /// Oldest first; their remainders add up to the balance.
    pub lots: VecDeque<Lot>,
    /// Every grant source seen (granted or withheld) and what it granted.
    pub sources: BTreeMap<String, Decimal>,
    /// Reports whose points were reversed: they earn nothing more.
    pub reversed_reports: BTreeSet<ReportId>,
    /// Automatic points granted on one day of the community's calendar.
    pub automatic_on_day: Option<(i32, Decimal)>,
}

/// Everything a grant needs, looked up by the caller: the community's
/// budget and rules, the day in its calendar, the grid it is earned in.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Grant {
    pub source: GrantSource,
    pub amount: Points,
    /// The admin or staff member; none for the earning process.
    pub by: Option<Actor>,
    pub grid: Option<GridId>,
    /// What the issuing account holds now.
    pub budget_available: Decimal,
    pub daily_limit: Option<Decimal>,
    /// Days since 1970-01-01 in the community's calendar.
    pub day: i32,
    pub expires_at: Option<Timestamp>,
    pub at: Timestamp,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WithheldReason {
    DailyLimit,
    BudgetExhausted,
    ReportReversed,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReleaseReason {
    Cancelled,
    /// Not completed in time.
    Expired,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReversalReason {
    /// An admin found the report fraudulent.
    Fraudulent { note: ContentHash },
    /// The report was merged into another: duplicates earn nothing.
    MergedDuplicate { original: ReportId },
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum WalletCommand {
    Grant(Box<Grant>),
    Hold {
        redemption: RedemptionId,
        amount: Points,
        at: Timestamp,
    },
    ReleaseHold {
        redemption: RedemptionId,
        reason: ReleaseReason,
        at: Timestamp,
    },
    Redeem {
        redemption: RedemptionId,
        at: Timestamp,
    },
    Expire {
        at: Timestamp,
    },
    Reverse {
        report: ReportId,
        by: Option<Actor>,
        reason: ReversalReason,
        at: Timestamp,
    },
}

/// Every event carries the wallet's balance and held points after it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum WalletEvent {
    PointsGranted {
        source: GrantSource,
        amount: Decimal,
        /// Less than `amount` asked for when the daily limit cut it.
        requested: Decimal,
        by: Option<Actor>,
        grid: Option<GridId>,
        day: i32,
        expires_at: Option<Timestamp>,
        balance: Decimal,
        held: Decimal,
        next_expiry: Option<Timestamp>,
        at: Timestamp,
    },
    GrantWithheld {
        source: GrantSource,
        requested: Decimal,
        reason: WithheldReason,
        by: Option<Actor>,
        balance: Decimal,
        held: Decimal,
        at: Timestamp,
    },
    PointsHeld {
        redemption: RedemptionId,
        amount: Decimal,
        balance: Decimal,
        held: Decimal,
        at: Timestamp,
    },
    HoldReleased {
        redemption: RedemptionId,
        amount: Decimal,
        reason: ReleaseReason,
        balance: Decimal,
        held: Decimal,
        at: Timestamp,
    },
    PointsRedeemed {
        redemption: RedemptionId,
        amount: Decimal,
        balance: Decimal,
        held: Decimal,
        next_expiry: Option<Timestamp>,
        at: Timestamp,
    },
    PointsExpired {
        amount: Decimal,
        balance: Decimal,
        held: Decimal,
        next_expiry: Option<Timestamp>,
        at: Timestamp,
    },
    PointsReversed {
        report: ReportId,
        amount: Decimal,
        /// What could not be taken back: it had been spent or was held.
        shortfall: Decimal,
        reason: ReversalReason,
        by: Option<Actor>,
        balance: Decimal,
        held: Decimal,
        next_expiry: Option<Timestamp>,
        at: Timestamp,
    },
}

impl WalletEvent {
    /// The wallet's balance and held points after this event.
    pub fn balance_and_held(&self) -> (Decimal, Decimal) {
        use WalletEvent::*;
        match self {
            PointsGranted { balance, held, .. }
            | GrantWithheld { balance, held, .. }
            | PointsHeld { balance, held, .. }
            | HoldReleased { balance, held, .. }
            | PointsRedeemed { balance, held, .. }
            | PointsExpired { balance, held, .. }
            | PointsReversed { balance, held, .. } => (*balance, *held),
        }
    }

    pub fn at(&self) -> Timestamp {
        use WalletEvent::*;
        match self {
            PointsGranted { at, .. }
            | GrantWithheld { at, .. }
            | PointsHeld { at, .. }
            | HoldReleased { at, .. }
            | PointsRedeemed { at, .. }
            | PointsExpired { at, .. }
            | PointsReversed { at, .. } => *at,
        }
    }
}

impl DomainEvent for WalletEvent {
    fn event_type(&self) -> String {
        use WalletEvent::*;
        match self {
            PointsGranted { .. } => "PointsGranted",
            GrantWithheld { .. } => "GrantWithheld",
            PointsHeld { .. } => "PointsHeld",
            HoldReleased { .. } => "HoldReleased",
            PointsRedeemed { .. } => "PointsRedeemed",
            PointsExpired { .. } => "PointsExpired",
            PointsReversed { .. } => "PointsReversed",
        }
        .to_string()
    }

    fn event_version(&self) -> String {
        "1".to_string()
    }
}

aggregate!(Wallet, "Wallet", WalletCommand, WalletEvent);

impl Wallet {
    /// What can be held or taken back now.
    pub fn available(&self) -> Decimal {
        self.balance - self.held
    }

    /// When the oldest points still in the wallet expire.
    pub fn next_expiry(&self) -> Option<Timestamp> {
        next_expiry(&self.lots)
    }

    /// What expires when, soonest first.
    pub fn expiring(&self) -> Vec<(Timestamp, Decimal)> {
        let mut due: BTreeMap<Timestamp, Decimal> = BTreeMap::new();
        for lot in &self.lots {
            if let Some(expires_at) = lot.expires_at {
                *due.entry(expires_at).or_default() += lot.remaining;
            }
        }
        due.into_iter().collect()
    }

    /// Applies an event; business rules live in `decide`.
    fn fold(&mut self, event: WalletEvent) {
        use WalletEvent::*;
        match event {
            PointsGranted {
                source,
                amount,
                day,
                expires_at,
                at,
                ..
            } => {
                self.balance += amount;
                self.lots.push_back(Lot {
                    granted_at: at,
                    expires_at,
                    remaining: amount,
                });
                if source.is_automatic() {
                    let before = match self.automatic_on_day {
                        Some((on, granted)) if on == day => granted,
                        _ => Decimal::ZERO,
                    };
                    self.automatic_on_day = Some((day, before + amount));
                }
                self.sources.insert(source.key(), amount);
            }
            GrantWithheld { source, .. } => {
                self.sources.insert(source.key(), Decimal::ZERO);
            }
            PointsHeld {
                redemption, amount, ..
            } => {
                self.holds.insert(redemption, amount);
                self.held += amount;
            }
            HoldReleased {
                redemption, amount, ..
            } => {
                self.holds.remove(&redemption);
                self.held -= amount;
            }
            PointsRedeemed {
                redemption, amount, ..
            } => {
                self.holds.remove(&redemption);
                self.held -= amount;
                self.balance -= amount;
                spend(&mut self.lots, amount, None);
            }
            PointsExpired { amount, at, .. } => {
                self.balance -= amount;
                spend(&mut self.lots, amount, Some(at));
            }
            PointsReversed { report, amount, .. } => {
                self.balance -= amount;
                spend(&mut self.lots, amount, None);
                self.reversed_reports.insert(report);
            }
        }
        assert!(
            self.held >= Decimal::ZERO && self.held <= self.balance,
            "a wallet holds no more than its balance, which is never negative"
        );
        assert_eq!(
            self.lots.iter().map(|lot| lot.remaining).sum::<Decimal>(),
            self.balance,
            "a wallet's lots add up to its balance"
        );
    }

    pub(crate) fn decide(&self, command: WalletCommand) -> Result<WalletEvent, DomainError> {
        use WalletCommand::*;
        match command {
            Grant(grant) => self.grant(*grant),
            Hold {
                redemption,
                amount,
                at,
            } => {
                if self.holds.contains_key(&redemption) {
                    return Err(DomainError::AlreadyExists(format!("hold for {redemption}")));
                }
                let amount = amount.amount();
                if amount > self.available() {
                    return Err(DomainError::InsufficientPoints(format!(
                        "{} available, {amount} needed",
                        self.available()
                    )));
                }
                Ok(WalletEvent::PointsHeld {
                    redemption,
                    amount,
                    balance: self.balance,
                    held: self.held + amount,
                    at,
                })
            }
            ReleaseHold {
                redemption,
                reason,
                at,
            } => {
                let amount = self.hold(redemption)?;
                Ok(WalletEvent::HoldReleased {
                    redemption,
                    amount,
                    reason,
                    balance: self.balance,
                    held: self.held - amount,
                    at,
                })
            }
            Redeem { redemption, at } => {
                let amount = self.hold(redemption)?;
                Ok(WalletEvent::PointsRedeemed {
                    redemption,
                    amount,
                    balance: self.balance - amount,
                    held: self.held - amount,
                    next_expiry: self.expiry_after_spending(amount, None),
                    at,
                })
            }
            Expire { at } => self.expire(at),
            Reverse {
                report,
                by,
                reason,
                at,
            } => self.reverse(report, by, reason, at),
        }
    }

    fn hold(&self, redemption: RedemptionId) -> Result<Decimal, DomainError> {
        self.holds
            .get(&redemption)
            .copied()
            .ok_or_else(|| DomainError::NotFound(format!("hold for {redemption}")))
    }

    fn grant(&self, grant: Grant) -> Result<WalletEvent, DomainError> {
        let automatic = grant.source.is_automatic();
        check_granter(&grant.source, grant.by)?;
        if self.sources.contains_key(&grant.source.key()) {
            return Err(DomainError::AlreadyExists(format!(
                "grant {}",
                grant.source.key()
            )));
        }
        let requested = grant.amount.amount();
        let withheld = |reason| WalletEvent::GrantWithheld {
            source: grant.source.clone(),
            requested,
            reason,
            by: grant.by,
            balance: self.balance,
            held: self.held,
            at: grant.at,
        };
        if grant
            .source
            .report()
            .is_some_and(|report| self.reversed_reports.contains(&report))
        {
            return Ok(withheld(WithheldReason::ReportReversed));
        }
        let mut amount = requested;
        if let (true, Some(limit)) = (automatic, grant.daily_limit) {
            let granted_today = match self.automatic_on_day {
                Some((day, granted)) if day == grant.day => granted,
                _ => Decimal::ZERO,
            };
            amount = amount.min((limit - granted_today).max(Decimal::ZERO));
            if amount.is_zero() {
                return Ok(withheld(WithheldReason::DailyLimit));
            }
        }
        if amount > grant.budget_available {
            if automatic {
                return Ok(withheld(WithheldReason::BudgetExhausted));
            }
            return Err(DomainError::InsufficientBudget(format!(
                "{} left, {amount} asked",
                grant.budget_available
            )));
        }
        // The new lot is the next to expire if nothing kept expires sooner.
        let next_expiry = next_expiry(&self.lots)
            .into_iter()
            .chain(grant.expires_at)
            .min();
        Ok(WalletEvent::PointsGranted {
            source: grant.source,
            amount,
            requested,
            by: grant.by,
            grid: grant.grid,
            day: grant.day,
            expires_at: grant.expires_at,
            balance: self.balance + amount,
            held: self.held,
            next_expiry,
            at: grant.at,
        })
    }

    fn expire(&self, at: Timestamp) -> Result<WalletEvent, DomainError> {
        let due: Decimal = self
            .lots
            .iter()
            .filter(|lot| lot.expires_at.is_some_and(|expires_at| expires_at <= at))
            .map(|lot| lot.remaining)
            .sum();
        // Held points wait for their redemption to finish.
        let amount = due.min(self.available());
        if amount.is_zero() {
            return Err(DomainError::validation("at", "no points are due to expire"));
        }
        Ok(WalletEvent::PointsExpired {
            amount,
            balance: self.balance - amount,
            held: self.held,
            next_expiry: self.expiry_after_spending(amount, Some(at)),
            at,
        })
    }

    fn reverse(
        &self,
        report: ReportId,
        by: Option<Actor>,
        reason: ReversalReason,
        at: Timestamp,
    ) -> Result<WalletEvent, DomainError> {
        let admin = by.is_some_and(|by| by.role == Role::Admin);
        match &reason {
            ReversalReason::Fraudulent { .. } if !admin => {
                return Err(DomainError::Forbidden(
                    "only the community's admin reverses points".into(),
                ))
            }
            ReversalReason::MergedDuplicate { .. } if by.is_some() => {
                return Err(DomainError::Forbidden(
                    "merged duplicates are reversed by the earning process".into(),
                ))
            }
            _ => {}
        }
        if self.reversed_reports.contains(&report) {
            return Err(DomainError::AlreadyExists(format!(
                "reversal of report {report}"
            )));
        }
        let granted: Decimal = [
            GrantSource::ReportAccepted { report },
            GrantSource::ReportResolved { report },
        ]
        .iter()
        .filter_map(|source| self.sources.get(&source.key()))
        .sum();
        let amount = granted.min(self.available());
        Ok(WalletEvent::PointsReversed {
            report,
            amount,
            shortfall: granted - amount,
            reason,
            by,
            balance: self.balance - amount,
            held: self.held,
            next_expiry: self.expiry_after_spending(amount, None),
            at,
        })
    }

    fn expiry_after_spending(
        &self,
        amount: Decimal,
        due_at: Option<Timestamp>,
    ) -> Option<Timestamp> {
        let lots = || self.lots.iter().map(|lot| (lot.expires_at, lot.remaining));
        lots()
            .zip(takings(lots(), amount, due_at))
            .filter(|((_, remaining), taken)| remaining > taken)
            .filter_map(|((expires_at, _), _)| expires_at)
            .min()
    }
}

/// Who may grant from which source: automatic grants come from the
/// earning process alone, volunteer service from staff, manual grants
/// from the admin.
fn check_granter(source: &GrantSource, by: Option<Actor>) -> Result<(), DomainError> {
    let role = by.map(|by| by.role);
    let allowed = match source {
        GrantSource::ReportAccepted { .. }
        | GrantSource::ReportResolved { .. }
        | GrantSource::SuggestionAdopted { .. } => role.is_none(),
        GrantSource::VolunteerService { .. } => {
            matches!(role, Some(Role::Admin | Role::GridWorker))
        }
        GrantSource::Manual { .. } => role == Some(Role::Admin),
    };
    if allowed {
        Ok(())
    } else {
        Err(DomainError::Forbidden(format!(
            "{} points are not granted by this role",
            source.kind()
        )))
    }
}

/// Takes `amount` out of the lots, oldest first; with `due_at`, only out of
/// lots expired by then.
/// What a spend of `amount` takes from each lot, in the lots' order
/// (oldest first): from any lot, or at an expiry due at `due_at` only from
/// lots due by then. Given as each lot's `(expires_at, remaining)`; the
/// read model applies the same rule to its own rows.
pub fn takings(
    lots: impl IntoIterator<Item = (Option<Timestamp>, Decimal)>,
    amount: Decimal,
    due_at: Option<Timestamp>,
) -> Vec<Decimal> {
    let mut left = amount;
    let taken = lots
        .into_iter()
        .map(|(expires_at, remaining)| {
            let eligible = match due_at {
                None => true,
                Some(at) => expires_at.is_some_and(|expires_at| expires_at <= at),
            };
            if !eligible || left.is_zero() {
                return Decimal::ZERO;
            }
            let taken = remaining.min(left);
            left -= taken;
            taken
        })
        .collect();
    assert!(left.is_zero(), "spent no more than the lots held");
    taken
}

fn spend(lots: &mut VecDeque<Lot>, amount: Decimal, due_at: Option<Timestamp>) {
    let taken = takings(
        lots.iter().map(|lot| (lot.expires_at, lot.remaining)),
        amount,
        due_at,
    );
    for (lot, taken) in lots.iter_mut().zip(taken) {
        lot.remaining -= taken;
    }
    lots.retain(|lot| !lot.remaining.is_zero());
}

fn next_expiry(lots: &VecDeque<Lot>) -> Option<Timestamp> {
    lots.iter().filter_map(|lot| lot.expires_at).min()
}
