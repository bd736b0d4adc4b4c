//! A gift offered at a centre: its price and its stock. Stock is what is on
//! the shelf and not held; it never goes below zero.

use std::collections::BTreeMap;

use cqrs_es::DomainEvent;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::error::DomainError;
use crate::values::{Actor, CentreId, ContentHash, Points, RedemptionId, Role, Timestamp};

const NAME_CHARS_MAX: usize = 100;
/// No counter keeps more of one gift.
pub const STOCK_MAX: u32 = 1_000_000;

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Gift {
    pub offered: bool,
    pub centre: Option<CentreId>,
    pub name: String,
    pub price: Decimal,
    /// On the shelf and free to hold.
    pub stock: u32,
    /// Held for redemptions placed and not yet completed.
    pub held: u32,
    pub holds: BTreeMap<RedemptionId, u32>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum GiftCommand {
    Offer {
        by: Actor,
        centre: CentreId,
        name: String,
        price: Points,
        stock: u32,
        at: Timestamp,
    },
    AddStock {
        by: Actor,
        quantity: u32,
        reason: ContentHash,
        at: Timestamp,
    },
    /// Sets the stock to what was counted on the shelf (holds aside).
    CorrectStock {
        by: Actor,
        stock: u32,
        reason: ContentHash,
        at: Timestamp,
    },
    HoldStock {
        redemption: RedemptionId,
        quantity: u32,
        at: Timestamp,
    },
    ReleaseStock {
        redemption: RedemptionId,
        at: Timestamp,
    },
    HandOver {
        redemption: RedemptionId,
        at: Timestamp,
    },
}

/// Every stock event carries the stock and held count after it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum GiftEvent {
    GiftOffered {
        by: Actor,
        centre: CentreId,
        name: String,
        price: Decimal,
        stock: u32,
        at: Timestamp,
    },
    GiftStockAdded {
        by: Actor,
        quantity: u32,
        reason: ContentHash,
        stock: u32,
        at: Timestamp,
    },
    GiftStockCorrected {
        by: Actor,
        previous: u32,
        reason: ContentHash,
        stock: u32,
        at: Timestamp,
    },
    GiftStockHeld {
        redemption: RedemptionId,
        quantity: u32,
        stock: u32,
        held: u32,
        at: Timestamp,
    },
    GiftStockReleased {
        redemption: RedemptionId,
        quantity: u32,
        stock: u32,
        held: u32,
        at: Timestamp,
    },
    GiftHandedOver {
        redemption: RedemptionId,
        quantity: u32,
        stock: u32,
        held: u32,
        at: Timestamp,
    },
}

impl GiftEvent {
    /// The stock after the event, and the held count for the events of
    /// holds (which carry it).
    pub fn stock_and_held(&self) -> (u32, Option<u32>) {
        use GiftEvent::*;
        match self {
            GiftOffered { stock, .. }
            | GiftStockAdded { stock, .. }
            | GiftStockCorrected { stock, .. } => (*stock, None),
            GiftStockHeld { stock, held, .. }
            | GiftStockReleased { stock, held, .. }
            | GiftHandedOver { stock, held, .. } => (*stock, Some(*held)),
        }
    }
}

impl DomainEvent for GiftEvent {
    fn event_type(&self) -> String {
        use GiftEvent::*;
        match self {
            GiftOffered { .. } => "GiftOffered",
            GiftStockAdded { .. } => "GiftStockAdded",
            GiftStockCorrected { .. } => "GiftStockCorrected",
            GiftStockHeld { .. } => "GiftStockHeld",
            GiftStockReleased { .. } => "GiftStockReleased",
            GiftHandedOver { .. } => "GiftHandedOver",
        }
        .to_string()
    }

    fn event_version(&self) -> String {
        "1".to_string()
    }
}

aggregate!(Gift, "Gift", GiftCommand, GiftEvent);

impl Gift {
    /// Applies an event; business rules live in `decide`.
    fn fold(&mut self, event: GiftEvent) {
        use GiftEvent::*;
        match event {
            GiftOffered {
                centre,
                name,
                price,
                stock,
                ..
            } => {
                self.offered = true;
                self.centre = Some(centre);
                self.name = name;
                self.price = price;
                self.stock = stock;
            }
            GiftStockAdded { stock, .. } | GiftStockCorrected { stock, .. } => self.stock = stock,
            GiftStockHeld {
                redemption,
                quantity,
                ..
            } => {
                self.stock -= quantity;
                self.held += quantity;
                self.holds.insert(redemption, quantity);
            }
            GiftStockReleased {
                redemption,
                quantity,
                ..
            } => {
                self.stock += quantity;
                self.held -= quantity;
                self.holds.remove(&redemption);
            }
            GiftHandedOver {
                redemption,
                quantity,
                ..
            } => {
                self.held -= quantity;
                self.holds.remove(&redemption);
            }
        }
        assert_eq!(
            self.holds.values().sum::<u32>(),
            self.held,
            "a gift's held count is its holds"
        );
    }

    pub(crate) fn decide(&self, command: GiftCommand) -> Result<GiftEvent, DomainError> {
        use GiftCommand::*;
        if let Offer {
            by,
            centre,
            name,
            price,
            stock,
            at,
        } = command
        {
            return self.offer(by, centre, name, price, stock, at);
        }
        if !self.offered {
            return Err(DomainError::NotFound("gift".into()));
        }
        match command {
            Offer { .. } => unreachable!("handled above"),
            AddStock {
                by,
                quantity,
                reason,
                at,
            } => {
                require_stock_keeper(by)?;
                let stock = self.stock.checked_add(quantity).filter(|s| *s <= STOCK_MAX);
                match (quantity, stock) {
                    (1.., Some(stock)) => Ok(GiftEvent::GiftStockAdded {
                        by,
                        quantity,
                        reason,
                        stock,
                        at,
                    }),
                    _ => Err(DomainError::validation(
                        "quantity",
                        format!("at least 1, and at most {STOCK_MAX} in stock"),
                    )),
                }
            }
            CorrectStock {
                by,
                stock,
                reason,
                at,
            } => {
                require_stock_keeper(by)?;
                if stock > STOCK_MAX {
                    return Err(DomainError::validation(
                        "stock",
                        format!("0 to {STOCK_MAX}"),
                    ));
                }
                Ok(GiftEvent::GiftStockCorrected {
                    by,
                    previous: self.stock,
                    reason,
                    stock,
                    at,
                })
            }
            HoldStock {
                redemption,
                quantity,
                at,
            } => {
                if self.holds.contains_key(&redemption) {
                    return Err(DomainError::AlreadyExists(format!("hold for {redemption}")));
                }
                if quantity == 0 || quantity > self.stock {
                    return Err(DomainError::OutOfStock(format!(
                        "{} in stock, {quantity} asked",
                        self.stock
                    )));
                }
                Ok(GiftEvent::GiftStockHeld {
                    redemption,
                    quantity,
                    stock: self.stock - quantity,
                    held: self.held + quantity,
                    at,
                })
            }
            ReleaseStock { redemption, at } => {
                let quantity = self.hold(redemption)?;
                Ok(GiftEvent::GiftStockReleased {
                    redemption,
                    quantity,
                    stock: self.stock + quantity,
                    held: self.held - quantity,
                    at,
                })
            }
            HandOver { redemption, at } => {
                let quantity = self.hold(redemption)?;
                Ok(GiftEvent::GiftHandedOver {
                    redemption,
                    quantity,
                    stock: self.stock,
                    held: self.held - quantity,
                    at,
                })
            }
        }
    }

    fn hold(&self, redemption: RedemptionId) -> Result<u32, DomainError> {
        self.holds
            .get(&redemption)
            .copied()
            .ok_or_else(|| DomainError::NotFound(format!("hold for {redemption}")))
    }

    fn offer(
        &self,
        by: Actor,
        centre: CentreId,
        name: String,
        price: Points,
        stock: u32,
        at: Timestamp,
    ) -> Result<GiftEvent, DomainError> {
        if self.offered {
            return Err(DomainError::AlreadyExists("gift".into()));
        }
        if by.role != Role::Admin {
            return Err(DomainError::Forbidden(
                "only the community's admin offers gifts".into(),
            ));
        }
        let name =
            crate::values::plain_text("name", &name, crate::values::Lines::One, NAME_CHARS_MAX)?;
        if stock > STOCK_MAX {
            return Err(DomainError::validation(
                "stock",
                format!("0 to {STOCK_MAX}"),
            ));
        }
        Ok(GiftEvent::GiftOffered {
            by,
            centre,
            name,
            price: price.amount(),
            stock,
            at,
        })
    }
}

/// Clerks (at the gift's centre, which the API checks) and admins keep stock.
fn require_stock_keeper(by: Actor) -> Result<(), DomainError> {
    if matches!(by.role, Role::Admin | Role::Clerk) {
        Ok(())
    } else {
        Err(DomainError::Forbidden(
            "only clerks and admins change a gift's stock".into(),
        ))
    }
}
