//! The counter's commands, each across three aggregates at once: a
//! redemption, the resident's wallet and the gift's stock. Written once
//! here and used by the desk that runs them and by the property test that
//! checks them, so the test checks the code that runs. Each decides all
//! three events or none; the caller appends them as one.

use super::redemption::Placement;
use super::wallet::ReleaseReason;
use super::{
    Gift, GiftCommand, GiftEvent, Redemption, RedemptionCommand, RedemptionEvent, Wallet,
    WalletCommand, WalletEvent,
};
use crate::error::DomainError;
use crate::values::{Actor, Points, Timestamp};

/// What one counter command decided, one event per aggregate.
#[derive(Clone, Debug, PartialEq)]
pub struct CounterEvents {
    pub redemption: RedemptionEvent,
    pub wallet: WalletEvent,
    pub gift: GiftEvent,
}

/// How a placed redemption ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Finish {
    /// The clerk handed the gift over: the held points are redeemed.
    Complete(Actor),
    /// The clerk or the resident called it off: points and stock are freed.
    Cancel(Actor),
    /// The hold ran out (the sweeper): points and stock are freed.
    Release,
}

/// Places a redemption: the placement, the wallet's hold of its points and
/// the gift's hold of its stock. Refused as a whole when any one is (the
/// redemption exists already, `INSUFFICIENT_POINTS`, `OUT_OF_STOCK`).
pub fn place(
    redemption: &Redemption,
    wallet: &Wallet,
    gift: &Gift,
    placement: Placement,
) -> Result<CounterEvents, DomainError> {
    let (id, quantity, at) = (placement.redemption, placement.quantity, placement.at);
    let amount = Points::parse(placement.points)?;
    let redemption = redemption.decide(RedemptionCommand::Place(Box::new(placement)))?;
    let wallet = wallet.decide(WalletCommand::Hold {
        redemption: id,
        amount,
        at,
    })?;
    let gift = gift.decide(GiftCommand::HoldStock {
        redemption: id,
        quantity,
        at,
    })?;
    Ok(CounterEvents {
        redemption,
        wallet,
        gift,
    })
}

/// Completes, cancels or releases a placed redemption: its points are
/// redeemed or released, and its stock handed over or released with them.
pub fn finish(
    redemption: &Redemption,
    wallet: &Wallet,
    gift: &Gift,
    finish: Finish,
    at: Timestamp,
) -> Result<CounterEvents, DomainError> {
    let id = redemption
        .placement
        .as_ref()
        .map(|placement| placement.redemption)
        .ok_or_else(|| DomainError::NotFound("redemption".into()))?;
    let release = |reason| WalletCommand::ReleaseHold {
        redemption: id,
        reason,
        at,
    };
    let (redemption_command, wallet_command, gift_command) = match finish {
        Finish::Complete(by) => (
            RedemptionCommand::Complete { by, at },
            WalletCommand::Redeem { redemption: id, at },
            GiftCommand::HandOver { redemption: id, at },
        ),
        Finish::Cancel(by) => (
            RedemptionCommand::Cancel { by, at },
            release(ReleaseReason::Cancelled),
            GiftCommand::ReleaseStock { redemption: id, at },
        ),
        Finish::Release => (
            RedemptionCommand::Release { at },
            release(ReleaseReason::Expired),
            GiftCommand::ReleaseStock { redemption: id, at },
        ),
    };
    Ok(CounterEvents {
        redemption: redemption.decide(redemption_command)?,
        wallet: wallet.decide(wallet_command)?,
        gift: gift.decide(gift_command)?,
    })
}
