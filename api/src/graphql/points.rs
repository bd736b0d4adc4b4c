//! The points economy's mutations. Admins fund the budget, grant, reverse
//! and manage gifts; staff record volunteer service; clerks keep their
//! centre's stock and work its counter, and cannot grant points. The rules
//! are the application's (`app::points::service`).

use app::idempotency::ClientKey;
use app::points::service::{CounterOutcome, FinishKind, Granted, StockChange};
use async_graphql::{Context, Enum, InputObject, Object, SimpleObject, ID};
use chrono::{DateTime, Utc};
use domain::points::WalletEvent;
use domain::values::{CentreId, GiftId, GridId, PersonId, Points, RedemptionId, ReportId};
use uuid::Uuid;

use super::types::Written;
use super::{amount, app, decimal, meta, request, scoped};
use crate::error::ApiResult;
use app::clock::to_datetime;

#[derive(Default)]
pub struct PointsMutation;

#[derive(Enum, Copy, Clone, Debug, Eq, PartialEq)]
#[graphql(remote = "domain::points::RedemptionStatus")]
pub enum RedemptionStatus {
    New,
    Placed,
    Completed,
    Cancelled,
    Released,
}

#[derive(InputObject)]
pub struct PlaceRedemptionInput {
    pub resident_id: Uuid,
    pub gift_id: Uuid,
    #[graphql(default = 1)]
    pub quantity: u32,
    /// Chosen by the counter device for this redemption and sent again on
    /// every retry of it: a retry holds nothing twice. 1 to 100 printable
    /// ASCII characters without spaces (`!` to `~`), else `VALIDATION`;
    /// scoped to the clerk, like the `Idempotency-Key` header (the same key
    /// with another input is `CONFLICT`).
    pub idempotency_key: String,
}

/// What a grant did.
#[derive(SimpleObject)]
pub struct GrantPayload {
    pub grant_id: ID,
    pub position: i64,
    /// What was granted: a decimal string ("0" when withheld).
    pub amount: String,
    /// Why nothing was granted, when it was withheld.
    pub withheld: Option<String>,
    /// The wallet's balance after it.
    pub balance: String,
}

/// What a reversal took back.
#[derive(SimpleObject)]
pub struct ReversalPayload {
    pub resident_id: Uuid,
    pub position: i64,
    pub amount: String,
    /// What could not be taken back (spent or held already).
    pub shortfall: String,
    pub balance: String,
}

/// A redemption at a counter.
#[derive(SimpleObject)]
pub struct RedemptionPayload {
    pub redemption_id: Uuid,
    pub position: i64,
    pub status: RedemptionStatus,
    pub resident_id: Uuid,
    pub gift_id: Uuid,
    pub centre_id: Uuid,
    pub quantity: u32,
    pub points: String,
    /// When the hold is released unless completed.
    pub expires_at: DateTime<Utc>,
    /// True when this answers a retry with the first outcome.
    pub replayed: bool,
}

fn counter_payload(outcome: CounterOutcome) -> RedemptionPayload {
    let placement = &outcome.placement;
    RedemptionPayload {
        redemption_id: placement.redemption.0,
        position: outcome.position,
        status: outcome.status.into(),
        resident_id: placement.resident.0,
        gift_id: placement.gift.0,
        centre_id: placement.centre.0,
        quantity: placement.quantity,
        points: amount(placement.points),
        expires_at: to_datetime(placement.expires_at.micros()),
        replayed: outcome.replayed,
    }
}

fn points(field: &str, text: &str) -> ApiResult<Points> {
    Ok(Points::parse(decimal(field, text)?)?)
}

fn grant_payload(granted: Granted) -> GrantPayload {
    let (granted_amount, withheld) = match &granted.event {
        WalletEvent::GrantWithheld { reason, .. } => {
            ("0".to_string(), Some(super::types::name_of(*reason)))
        }
        WalletEvent::PointsGranted { amount: given, .. } => (amount(*given), None),
        _ => ("0".to_string(), None),
    };
    GrantPayload {
        grant_id: ID(granted.grant.0.to_string()),
        position: granted.position,
        amount: granted_amount,
        withheld,
        balance: amount(granted.event.balance_and_held().0),
    }
}

fn written(id: Uuid, position: i64) -> Written {
    Written {
        id: ID(id.to_string()),
        position,
    }
}

#[Object]
impl PointsMutation {
    /// Adds points to the community's budget (its issuing account).
    async fn fund_budget(
        &self,
        ctx: &Context<'_>,
        community_id: Uuid,
        #[graphql(
            desc = "A decimal string: 1 to 10 digits, optionally a point and 1 or 2 digits (12, 12.5, 12.50; no sign, exponent or underscore), more than 0, at most a billion."
        )]
        amount: String,
        note: String,
    ) -> ApiResult<Written> {
        let amount = points("amount", &amount)?;
        let position = app(ctx)
            .fund_budget(&request(ctx), community_id, amount, &note)
            .await?;
        Ok(written(community_id, position))
    }

    /// Grants points to a resident by hand, with a reason.
    async fn grant_points(
        &self,
        ctx: &Context<'_>,
        community_id: Uuid,
        resident_id: Uuid,
        #[graphql(
            desc = "A decimal string: 1 to 10 digits, optionally a point and 1 or 2 digits (12, 12.5, 12.50; no sign, exponent or underscore), more than 0, at most a billion."
        )]
        amount: String,
        reason: String,
    ) -> ApiResult<GrantPayload> {
        let amount = points("amount", &amount)?;
        let granted = app(ctx)
            .grant_points(
                &request(ctx),
                community_id,
                PersonId(resident_id),
                amount,
                &reason,
            )
            .await?;
        Ok(grant_payload(granted))
    }

    /// Records hours of volunteer service; they earn the community's rate
    /// per hour (rounded to cents) and count on the volunteer leaderboard.
    async fn record_volunteer_service(
        &self,
        ctx: &Context<'_>,
        community_id: Uuid,
        resident_id: Uuid,
        hours: String,
        grid_id: Option<Uuid>,
    ) -> ApiResult<GrantPayload> {
        let hours = decimal("hours", &hours)?;
        let granted = app(ctx)
            .record_volunteer_service(
                &request(ctx),
                community_id,
                PersonId(resident_id),
                hours,
                grid_id.map(GridId),
            )
            .await?;
        Ok(grant_payload(granted))
    }

    /// Takes back the points a report earned, found fraudulent, as far as
    /// the reporter's available points allow; the rest is recorded as a
    /// shortfall. The report earns nothing more.
    async fn reverse_report_points(
        &self,
        ctx: &Context<'_>,
        community_id: Uuid,
        report_id: Uuid,
        reason: String,
    ) -> ApiResult<ReversalPayload> {
        let reversed = app(ctx)
            .reverse_report_points(&request(ctx), community_id, ReportId(report_id), &reason)
            .await?;
        Ok(ReversalPayload {
            resident_id: reversed.resident.0,
            position: reversed.position,
            amount: amount(reversed.amount),
            shortfall: amount(reversed.shortfall),
            balance: amount(reversed.balance),
        })
    }

    /// Offers a gift at a centre, with its price and first stock.
    async fn offer_gift(
        &self,
        ctx: &Context<'_>,
        community_id: Uuid,
        centre_id: Uuid,
        name: String,
        #[graphql(
            desc = "A decimal string: 1 to 10 digits, optionally a point and 1 or 2 digits (12, 12.5, 12.50; no sign, exponent or underscore), more than 0, at most a billion."
        )]
        price: String,
        stock: u32,
    ) -> ApiResult<Written> {
        let price = points("price", &price)?;
        let (gift, position) = app(ctx)
            .offer_gift(
                &request(ctx),
                community_id,
                CentreId(centre_id),
                &name,
                price,
                stock,
            )
            .await?;
        Ok(written(gift.0, position))
    }

    /// Adds stock delivered to the centre.
    async fn add_gift_stock(
        &self,
        ctx: &Context<'_>,
        community_id: Uuid,
        gift_id: Uuid,
        quantity: u32,
        reason: String,
    ) -> ApiResult<Written> {
        let change = StockChange::Add(quantity);
        let position = app(ctx)
            .change_gift_stock(
                &request(ctx),
                community_id,
                GiftId(gift_id),
                change,
                &reason,
            )
            .await?;
        Ok(written(gift_id, position))
    }

    /// Sets the stock to what was counted on the shelf.
    async fn correct_gift_stock(
        &self,
        ctx: &Context<'_>,
        community_id: Uuid,
        gift_id: Uuid,
        stock: u32,
        reason: String,
    ) -> ApiResult<Written> {
        let change = StockChange::Correct(stock);
        let position = app(ctx)
            .change_gift_stock(
                &request(ctx),
                community_id,
                GiftId(gift_id),
                change,
                &reason,
            )
            .await?;
        Ok(written(gift_id, position))
    }

    /// Holds the resident's points and the gift's stock at the clerk's
    /// counter until the gift is handed over (`completeRedemption`), the
    /// redemption is cancelled, or its hold runs out.
    async fn place_redemption(
        &self,
        ctx: &Context<'_>,
        community_id: Uuid,
        input: PlaceRedemptionInput,
    ) -> ApiResult<RedemptionPayload> {
        // The counter device's key, by the same rule and scoped the same
        // way as the header's: to the clerk, this field and its input.
        let key = ClientKey::parse(input.idempotency_key.as_bytes())?;
        let idempotency = scoped(ctx, &meta(ctx), &key);
        let outcome = app(ctx)
            .place_redemption(
                &request(ctx),
                community_id,
                PersonId(input.resident_id),
                GiftId(input.gift_id),
                input.quantity,
                idempotency,
            )
            .await?;
        Ok(counter_payload(outcome))
    }

    /// The gift was handed over: the held points are redeemed.
    async fn complete_redemption(
        &self,
        ctx: &Context<'_>,
        community_id: Uuid,
        redemption_id: Uuid,
    ) -> ApiResult<RedemptionPayload> {
        let redemption = RedemptionId(redemption_id);
        let outcome = app(ctx)
            .finish_redemption(
                &request(ctx),
                community_id,
                redemption,
                FinishKind::Complete,
            )
            .await?;
        Ok(counter_payload(outcome))
    }

    /// The resident changed their mind: points and stock are released.
    async fn cancel_redemption(
        &self,
        ctx: &Context<'_>,
        community_id: Uuid,
        redemption_id: Uuid,
    ) -> ApiResult<RedemptionPayload> {
        let redemption = RedemptionId(redemption_id);
        let outcome = app(ctx)
            .finish_redemption(&request(ctx), community_id, redemption, FinishKind::Cancel)
            .await?;
        Ok(counter_payload(outcome))
    }
}
