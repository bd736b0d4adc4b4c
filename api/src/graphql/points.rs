//! The points economy's mutations. Admins fund the budget, grant, reverse
//! and manage gifts; staff record volunteer service; clerks keep their
//! centre's stock and work its counter, and cannot grant points.

use async_graphql::{Context, Enum, InputObject, Object, SimpleObject, ID};
use chrono::{DateTime, Utc};
use domain::points::redemption::Placement;
use domain::points::wallet::{ReversalReason, WithheldReason};
use domain::points::{GiftCommand, GrantSource, RedemptionStatus as DomainStatus, WalletEvent};
use domain::report::{Report, Reporter};
use domain::values::{
    Actor, CentreId, GiftId, GrantId, GridId, PersonId, Points, RedemptionId, ReportId, Role,
};
use store::CommunityId;
use uuid::Uuid;

use super::types::Written;
use super::{app, decimal, meta, new_id, retry_seed, scoped, viewer};
use crate::error::{ApiError, ApiResult};
use app::caller::Claims;
use app::clock::to_datetime;
use app::commands::{report_stream, Ran, RequestMeta};
use app::content;
use app::directory::{counter_centre, staff_scope};
use app::idempotency::ClientKey;
use app::points::{Finish, GrantRequest, PlaceRequest, Reversal};

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

fn placed_payload(
    placement: &Placement,
    status: DomainStatus,
    position: i64,
    replayed: bool,
) -> RedemptionPayload {
    RedemptionPayload {
        redemption_id: placement.redemption.0,
        position,
        status: status.into(),
        resident_id: placement.resident.0,
        gift_id: placement.gift.0,
        centre_id: placement.centre.0,
        quantity: placement.quantity,
        points: super::amount(placement.points),
        expires_at: to_datetime(placement.expires_at.micros()),
        replayed,
    }
}

/// The caller with one of `roles`, as an actor, and the request's meta.
fn acting(
    ctx: &Context<'_>,
    community_id: Uuid,
    roles: &[Role],
) -> ApiResult<(Claims, RequestMeta)> {
    let claims = viewer(ctx).with_role(community_id, roles)?.clone();
    let mut meta = meta(ctx);
    meta.actor = Some(claims.actor());
    Ok((claims, meta))
}

fn points(field: &str, text: &str) -> ApiResult<Points> {
    Ok(Points::parse(decimal(field, text)?)?)
}

async fn grant_payload(
    ctx: &Context<'_>,
    community: CommunityId,
    grant: Uuid,
    ran: Ran<WalletEvent>,
) -> ApiResult<GrantPayload> {
    let (outcome, event) = app(ctx).points.wallet_outcome(community, ran).await?;
    let (amount, withheld) = match &event {
        WalletEvent::PointsGranted { amount, .. } => (super::amount(*amount), None),
        WalletEvent::GrantWithheld { reason, .. } => {
            ("0".to_string(), Some(withheld_name(*reason)))
        }
        _ => {
            return Err(ApiError::new(
                "CONFLICT",
                "the idempotency key was used for another command",
            ))
        }
    };
    Ok(GrantPayload {
        grant_id: ID(grant.to_string()),
        position: outcome.last_position,
        amount,
        withheld,
        balance: super::amount(event.balance_and_held().0),
    })
}

fn withheld_name(reason: WithheldReason) -> String {
    super::types::name_of(reason)
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
        let (claims, meta) = acting(ctx, community_id, &[Role::Admin])?;
        let amount = points("amount", &amount)?;
        let note = content::prepare_text(&note, retry_seed(ctx, "note"))?;
        let outcome = app(ctx)
            .points
            .fund(
                CommunityId::new(community_id),
                &meta,
                claims.actor(),
                amount,
                note,
            )
            .await?;
        Ok(Written {
            id: ID(community_id.to_string()),
            position: outcome.last_position,
        })
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
        let (claims, meta) = acting(ctx, community_id, &[Role::Admin])?;
        let amount = points("amount", &amount)?;
        let reason = content::prepare_text(&reason, retry_seed(ctx, "reason"))?;
        let grant = new_id(ctx, "grant");
        let app = app(ctx);
        let request = GrantRequest {
            resident: PersonId(resident_id),
            source: GrantSource::Manual {
                grant: GrantId(grant),
                reason: reason.hash.clone(),
            },
            amount,
            by: Some(claims.actor()),
            grid: None,
            at: app.commands.clock().now(),
        };
        let community = CommunityId::new(community_id);
        let ran = app
            .points
            .grant(community, &meta, request, &[reason])
            .await?;
        grant_payload(ctx, community, grant, ran).await
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
        let (claims, meta) = acting(ctx, community_id, &[Role::Admin, Role::GridWorker])?;
        let hours = decimal("hours", &hours)?;
        if hours <= rust_decimal::Decimal::ZERO || hours.scale() > 2 || hours > 24.into() {
            return Err(ApiError::validation(
                "hours: more than 0, at most 24, two decimals",
            ));
        }
        let app = app(ctx);
        let community = CommunityId::new(community_id);
        let setup = app.points.community(community).await?;
        let scope = staff_scope(&setup, &claims)?;
        if claims.role == Role::GridWorker
            && !grid_id.is_some_and(|grid| scope.grids.contains(&GridId(grid)))
        {
            return Err(ApiError::forbidden(
                "a grid worker records service in one of their grids",
            ));
        }
        let amount = (hours * setup.points_rules.volunteer_hour).round_dp(2);
        let amount = Points::parse(amount).map_err(|_| {
            ApiError::validation("hours: the community's rules give no points for them")
        })?;
        let service = new_id(ctx, "service");
        let request = GrantRequest {
            resident: PersonId(resident_id),
            source: GrantSource::VolunteerService {
                service: GrantId(service),
                hours,
            },
            amount,
            by: Some(claims.actor()),
            grid: grid_id.map(GridId),
            at: app.commands.clock().now(),
        };
        let ran = app.points.grant(community, &meta, request, &[]).await?;
        grant_payload(ctx, community, service, ran).await
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
        let (claims, meta) = acting(ctx, community_id, &[Role::Admin])?;
        let reason = content::prepare_text(&reason, retry_seed(ctx, "reason"))?;
        let app = app(ctx);
        let community = CommunityId::new(community_id);
        let report = app
            .commands
            .load::<Report>(community, &report_stream(report_id))
            .await?;
        let resident = match report.state.submission.as_deref().map(|s| &s.reporter) {
            Some(Reporter::Resident(resident)) => *resident,
            Some(Reporter::Anonymous { .. }) => {
                return Err(ApiError::validation(
                    "reportId: an unclaimed anonymous report earned nothing",
                ))
            }
            None => return Err(ApiError::not_found(format!("report {report_id}"))),
        };
        let fraudulent = ReversalReason::Fraudulent {
            note: reason.hash.clone(),
        };
        let ran = app
            .points
            .reverse(
                community,
                &meta,
                Reversal {
                    resident,
                    report: ReportId(report_id),
                    by: Some(claims.actor()),
                    reason: fraudulent,
                },
                &[reason],
            )
            .await?;
        match app.points.wallet_outcome(community, ran).await? {
            (
                outcome,
                WalletEvent::PointsReversed {
                    amount,
                    shortfall,
                    balance,
                    ..
                },
            ) => Ok(ReversalPayload {
                resident_id: resident.0,
                position: outcome.last_position,
                amount: super::amount(amount),
                shortfall: super::amount(shortfall),
                balance: super::amount(balance),
            }),
            _ => Err(ApiError::new(
                "CONFLICT",
                "the idempotency key was used for another command",
            )),
        }
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
        let (claims, meta) = acting(ctx, community_id, &[Role::Admin])?;
        let price = points("price", &price)?;
        let community = CommunityId::new(community_id);
        let app = app(ctx);
        let setup = app.points.community(community).await?;
        if !setup.centres.contains_key(&CentreId(centre_id)) {
            return Err(ApiError::not_found(format!("centre {centre_id}")));
        }
        let gift = new_id(ctx, "gift");
        let at = app.commands.clock().now();
        let (outcome, _) = app
            .points
            .on_gift(community, &meta, GiftId(gift), None, &[], |_| {
                Ok(GiftCommand::Offer {
                    by: claims.actor(),
                    centre: CentreId(centre_id),
                    name: name.clone(),
                    price,
                    stock,
                    at,
                })
            })
            .await?;
        Ok(Written {
            id: ID(gift.to_string()),
            position: outcome.last_position,
        })
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
        stock_change(ctx, community_id, gift_id, &reason, |by, reason, at| {
            GiftCommand::AddStock {
                by,
                quantity,
                reason,
                at,
            }
        })
        .await
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
        stock_change(ctx, community_id, gift_id, &reason, |by, reason, at| {
            GiftCommand::CorrectStock {
                by,
                stock,
                reason,
                at,
            }
        })
        .await
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
        let (claims, mut meta) = acting(ctx, community_id, &[Role::Clerk, Role::Admin])?;
        // The counter device's key, by the same rule and scoped the same
        // way as the header's: to the clerk, this field and its input.
        let key = ClientKey::parse(input.idempotency_key.as_bytes())?;
        let idempotency = scoped(ctx, &meta, &key);
        let redemption = RedemptionId(app(ctx).derived_id(&idempotency, "redemption"));
        meta.idempotency = Some(idempotency);
        let app = app(ctx);
        let community = CommunityId::new(community_id);
        let setup = app.points.community(community).await?;
        let centre = counter_centre(&setup, &claims)?;
        let request = PlaceRequest {
            redemption,
            resident: PersonId(input.resident_id),
            gift: GiftId(input.gift_id),
            quantity: input.quantity,
            by: claims.actor(),
            centre,
        };
        match app.points.place(community, &meta, request).await? {
            Ran::Appended(outcome, placement) => Ok(placed_payload(
                &placement,
                DomainStatus::Placed,
                outcome.last_position,
                false,
            )),
            Ran::Repeated(outcome) => {
                let (status, placement) = app.points.redemption(community, redemption).await?;
                Ok(placed_payload(
                    &placement,
                    status,
                    outcome.last_position,
                    true,
                ))
            }
        }
    }

    /// The gift was handed over: the held points are redeemed.
    async fn complete_redemption(
        &self,
        ctx: &Context<'_>,
        community_id: Uuid,
        redemption_id: Uuid,
    ) -> ApiResult<RedemptionPayload> {
        finish(ctx, community_id, redemption_id, Finish::Complete).await
    }

    /// The resident changed their mind: points and stock are released.
    async fn cancel_redemption(
        &self,
        ctx: &Context<'_>,
        community_id: Uuid,
        redemption_id: Uuid,
    ) -> ApiResult<RedemptionPayload> {
        finish(ctx, community_id, redemption_id, Finish::Cancel).await
    }
}

async fn finish(
    ctx: &Context<'_>,
    community_id: Uuid,
    redemption_id: Uuid,
    finish: fn(Actor) -> Finish,
) -> ApiResult<RedemptionPayload> {
    let (claims, meta) = acting(ctx, community_id, &[Role::Clerk, Role::Admin])?;
    let app = app(ctx);
    let community = CommunityId::new(community_id);
    let setup = app.points.community(community).await?;
    let centre = counter_centre(&setup, &claims)?;
    let redemption = RedemptionId(redemption_id);
    let ran = app
        .points
        .finish(community, &meta, redemption, finish(claims.actor()), centre)
        .await?;
    let (status, placement) = app.points.redemption(community, redemption).await?;
    let (position, replayed) = match ran {
        Ran::Appended(outcome, _) => (outcome.last_position, false),
        Ran::Repeated(outcome) => (outcome.last_position, true),
    };
    Ok(placed_payload(&placement, status, position, replayed))
}

/// A stock change with a reason, by an admin or a clerk of the gift's centre.
async fn stock_change(
    ctx: &Context<'_>,
    community_id: Uuid,
    gift_id: Uuid,
    reason: &str,
    command: impl Fn(Actor, domain::values::ContentHash, domain::values::Timestamp) -> GiftCommand,
) -> ApiResult<Written> {
    let (claims, meta) = acting(ctx, community_id, &[Role::Clerk, Role::Admin])?;
    let reason = content::prepare_text(reason, retry_seed(ctx, "reason"))?;
    let hash = reason.hash.clone();
    let app = app(ctx);
    let community = CommunityId::new(community_id);
    let setup = app.points.community(community).await?;
    let centre = counter_centre(&setup, &claims)?;
    let at = app.commands.clock().now();
    let (outcome, _) = app
        .points
        .on_gift(community, &meta, GiftId(gift_id), centre, &[reason], |_| {
            Ok(command(claims.actor(), hash.clone(), at))
        })
        .await?;
    Ok(Written {
        id: ID(gift_id.to_string()),
        position: outcome.last_position,
    })
}
