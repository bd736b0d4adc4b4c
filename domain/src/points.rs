//! The points economy (docs/DESIGN.md §5): a community's budget, residents' wallets,
//! gifts at centres and two-phase redemptions at their counters.
//!
//! Points move by double entry between accounts ([`Account`]): the minted
//! account (minus everything ever minted), the issuing account (the budget),
//! each resident's wallet, and the redeemed, expired and reversed sinks. The
//! sum over a community's accounts is zero after every event. Which event
//! is which movement is [`Movement::of_wallet`] and [`Movement::of_budget`].

pub mod budget;
pub mod counter;
pub mod gift;
pub mod redemption;
pub mod wallet;

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::values::{ContentHash, GrantId, PersonId, ReportId, SuggestionId};

pub use budget::{Budget, BudgetCommand, BudgetEvent};
pub use gift::{Gift, GiftCommand, GiftEvent};
pub use redemption::{Redemption, RedemptionCommand, RedemptionEvent, RedemptionStatus};
pub use wallet::{takings, Grant, Wallet, WalletCommand, WalletEvent};

/// An account of a community's points ledger.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Account {
    /// Where funded points come from; its balance is minus all ever minted.
    Minted,
    /// The community's budget: funded, not yet granted.
    Issuing,
    Wallet(PersonId),
    Redeemed,
    Expired,
    Reversed,
}

/// One double-entry movement: `amount` leaves `debit` and enters `credit`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Movement {
    pub debit: Account,
    pub credit: Account,
    pub amount: Decimal,
}

impl Movement {
    /// The movement a wallet event makes, if any (holds move nothing).
    pub fn of_wallet(resident: PersonId, event: &WalletEvent) -> Option<Movement> {
        let wallet = Account::Wallet(resident);
        let (debit, credit, amount) = match event {
            WalletEvent::PointsGranted { amount, .. } => (Account::Issuing, wallet, *amount),
            WalletEvent::PointsRedeemed { amount, .. } => (wallet, Account::Redeemed, *amount),
            WalletEvent::PointsExpired { amount, .. } => (wallet, Account::Expired, *amount),
            WalletEvent::PointsReversed { amount, .. } => (wallet, Account::Reversed, *amount),
            WalletEvent::GrantWithheld { .. }
            | WalletEvent::PointsHeld { .. }
            | WalletEvent::HoldReleased { .. } => return None,
        };
        (!amount.is_zero()).then_some(Movement {
            debit,
            credit,
            amount,
        })
    }

    /// The movement a budget event makes: funding mints points into the
    /// issuing account. (An issue is the wallet's grant seen from the
    /// budget's side; the wallet's event is the movement.)
    pub fn of_budget(event: &BudgetEvent) -> Option<Movement> {
        match event {
            BudgetEvent::BudgetFunded { amount, .. } => Some(Movement {
                debit: Account::Minted,
                credit: Account::Issuing,
                amount: *amount,
            }),
            BudgetEvent::BudgetIssued { .. } => None,
        }
    }
}

/// Why points were granted: the report, suggestion, service or admin
/// behind them. Each source is granted at most once per wallet.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GrantSource {
    ReportAccepted {
        report: ReportId,
    },
    ReportResolved {
        report: ReportId,
    },
    SuggestionAdopted {
        suggestion: SuggestionId,
        partly: bool,
    },
    VolunteerService {
        service: GrantId,
        /// Hours of service, at most two decimals.
        hours: Decimal,
    },
    Manual {
        grant: GrantId,
        reason: ContentHash,
    },
}

impl GrantSource {
    /// The key that makes a grant happen at most once.
    pub fn key(&self) -> String {
        match self {
            GrantSource::ReportAccepted { report } => format!("report-accepted:{report}"),
            GrantSource::ReportResolved { report } => format!("report-resolved:{report}"),
            GrantSource::SuggestionAdopted { suggestion, .. } => {
                format!("suggestion-adopted:{suggestion}")
            }
            GrantSource::VolunteerService { service, .. } => format!("volunteer:{service}"),
            GrantSource::Manual { grant, .. } => format!("manual:{grant}"),
        }
    }

    /// Automatic grants follow reports and suggestions; they count against
    /// the daily limit and are withheld (not refused) when they cannot be
    /// made, so the process that makes them never stalls.
    pub fn is_automatic(&self) -> bool {
        matches!(
            self,
            GrantSource::ReportAccepted { .. }
                | GrantSource::ReportResolved { .. }
                | GrantSource::SuggestionAdopted { .. }
        )
    }

    pub fn report(&self) -> Option<ReportId> {
        match self {
            GrantSource::ReportAccepted { report } | GrantSource::ReportResolved { report } => {
                Some(*report)
            }
            _ => None,
        }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            GrantSource::ReportAccepted { .. } => "report_accepted",
            GrantSource::ReportResolved { .. } => "report_resolved",
            GrantSource::SuggestionAdopted { .. } => "suggestion_adopted",
            GrantSource::VolunteerService { .. } => "volunteer_service",
            GrantSource::Manual { .. } => "manual",
        }
    }
}

#[cfg(test)]
mod properties;
#[cfg(test)]
mod tests;
