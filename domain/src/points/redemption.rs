//! A redemption at a centre's counter, in two phases: placing it holds the
//! resident's points and the gift's stock (appended together with the
//! wallet's and the gift's events); completing it hands the gift over;
//! cancelling it, or letting its hold run out, releases both.

use cqrs_es::DomainEvent;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::error::DomainError;
use crate::values::{Actor, CentreId, GiftId, PersonId, RedemptionId, Role, Timestamp};

/// Gifts of one kind handed over at once.
pub const QUANTITY_MAX: u32 = 20;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RedemptionStatus {
    #[default]
    New,
    Placed,
    Completed,
    Cancelled,
    /// Its hold ran out before it was completed.
    Released,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Placement {
    pub redemption: RedemptionId,
    pub resident: PersonId,
    pub gift: GiftId,
    pub centre: CentreId,
    pub quantity: u32,
    /// The gift's price times the quantity, when placed.
    pub points: Decimal,
    pub by: Actor,
    pub expires_at: Timestamp,
    pub at: Timestamp,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Redemption {
    pub status: RedemptionStatus,
    pub placement: Option<Placement>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum RedemptionCommand {
    Place(Box<Placement>),
    Complete {
        by: Actor,
        at: Timestamp,
    },
    Cancel {
        by: Actor,
        at: Timestamp,
    },
    /// From the hold sweeper, which reads the clock.
    Release {
        at: Timestamp,
    },
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum RedemptionEvent {
    RedemptionPlaced(Box<Placement>),
    RedemptionCompleted { by: Actor, at: Timestamp },
    RedemptionCancelled { by: Actor, at: Timestamp },
    RedemptionReleased { at: Timestamp },
}

impl DomainEvent for RedemptionEvent {
    fn event_type(&self) -> String {
        match self {
            RedemptionEvent::RedemptionPlaced(_) => "RedemptionPlaced",
            RedemptionEvent::RedemptionCompleted { .. } => "RedemptionCompleted",
            RedemptionEvent::RedemptionCancelled { .. } => "RedemptionCancelled",
            RedemptionEvent::RedemptionReleased { .. } => "RedemptionReleased",
        }
        .to_string()
    }

    fn event_version(&self) -> String {
        "1".to_string()
    }
}

aggregate!(Redemption, "Redemption", RedemptionCommand, RedemptionEvent);

impl Redemption {
    /// Applies an event; business rules live in `decide`.
    fn fold(&mut self, event: RedemptionEvent) {
        match event {
            RedemptionEvent::RedemptionPlaced(placement) => {
                self.status = RedemptionStatus::Placed;
                self.placement = Some(*placement);
            }
            RedemptionEvent::RedemptionCompleted { .. } => {
                self.status = RedemptionStatus::Completed
            }
            RedemptionEvent::RedemptionCancelled { .. } => {
                self.status = RedemptionStatus::Cancelled
            }
            RedemptionEvent::RedemptionReleased { .. } => self.status = RedemptionStatus::Released,
        }
    }

    pub(crate) fn decide(
        &self,
        command: RedemptionCommand,
    ) -> Result<RedemptionEvent, DomainError> {
        use RedemptionCommand::*;
        if let Place(placement) = command {
            return self.place(placement);
        }
        let Some(placement) = &self.placement else {
            return Err(DomainError::NotFound("redemption".into()));
        };
        if self.status != RedemptionStatus::Placed {
            let action = match command {
                Complete { .. } => "complete",
                Cancel { .. } => "cancel",
                _ => "release",
            };
            return Err(self.illegal(action));
        }
        match command {
            Place(_) => unreachable!("handled above"),
            Complete { by, at } => {
                require_counter_staff(by)?;
                if at > placement.expires_at {
                    return Err(DomainError::IllegalTransition {
                        action: "complete".into(),
                        state: "past its hold time (place it again)".into(),
                    });
                }
                Ok(RedemptionEvent::RedemptionCompleted { by, at })
            }
            Cancel { by, at } => {
                require_counter_staff(by)?;
                Ok(RedemptionEvent::RedemptionCancelled { by, at })
            }
            Release { at } => {
                if at <= placement.expires_at {
                    return Err(DomainError::validation("at", "the hold has not run out"));
                }
                Ok(RedemptionEvent::RedemptionReleased { at })
            }
        }
    }

    fn place(&self, placement: Box<Placement>) -> Result<RedemptionEvent, DomainError> {
        if self.status != RedemptionStatus::New {
            return Err(DomainError::AlreadyExists(format!(
                "redemption {}",
                placement.redemption
            )));
        }
        require_counter_staff(placement.by)?;
        if !(1..=QUANTITY_MAX).contains(&placement.quantity) {
            return Err(DomainError::validation(
                "quantity",
                format!("1 to {QUANTITY_MAX}"),
            ));
        }
        if placement.points <= Decimal::ZERO || placement.expires_at <= placement.at {
            return Err(DomainError::validation(
                "placement",
                "positive points and a hold that ends later",
            ));
        }
        Ok(RedemptionEvent::RedemptionPlaced(placement))
    }

    fn illegal(&self, action: &str) -> DomainError {
        DomainError::IllegalTransition {
            action: action.into(),
            state: crate::values::serialized_name(&self.status),
        }
    }
}

/// Clerks (at the redemption's centre, which the API checks) and admins
/// work the counter.
fn require_counter_staff(by: Actor) -> Result<(), DomainError> {
    if matches!(by.role, Role::Clerk | Role::Admin) {
        Ok(())
    } else {
        Err(DomainError::Forbidden(
            "only clerks and admins work the counter".into(),
        ))
    }
}
