//! The counter at a community centre: gifts and their stock, redemptions
//! (hold, then complete or cancel), and a clerk's day at the counter.

use crate::error::{ApiError, ApiResult};
use crate::graphql::points::*;
use crate::graphql::types::*;
use crate::graphql::{amount, app, fresh, meta, page_size, request, scoped, viewer};
use app::clock::to_datetime;
use app::directory::counter_centre;
use app::idempotency::ClientKey;
use app::points::service::{CounterOutcome, FinishKind, StockChange};
use async_graphql::connection::{Connection, Edge};
use async_graphql::{Context, Enum, InputObject, Object, SimpleObject};
use chrono::{DateTime, NaiveDate, Utc};
use domain::values::{CentreId, GiftId, PersonId, RedemptionId, Role};
use projections::points::{RedemptionFilter, RedemptionRow};
use rust_decimal::Decimal;
use store::CommunityId;
use uuid::Uuid;

/// Days between 0001-01-01 and 1970-01-01, to turn a day count into a date.
const UNIX_EPOCH_DAYS_FROM_CE: i32 = 719_163;

/// Redemptions listed for one clerk's day at most.
const COUNTER_DAY_MAX: i64 = 500;

#[derive(InputObject, Default)]
pub struct RedemptionFilterInput {
    pub centre_id: Option<Uuid>,
    pub resident_id: Option<Uuid>,
    /// The clerk (or admin) who placed them.
    pub placed_by: Option<Uuid>,
    /// A day of the community's calendar, `YYYY-MM-DD`.
    pub day: Option<String>,
}

#[derive(SimpleObject)]
pub struct GiftNode {
    pub gift_id: Uuid,
    pub centre_id: Uuid,
    pub name: String,
    pub price: String,
    /// On the shelf and free to redeem.
    pub stock: i32,
    /// Held for redemptions not yet completed.
    pub held: i32,
    pub handed_over: i32,
}

/// A change of a gift's stock.
#[derive(SimpleObject)]
pub struct GiftStockLine {
    pub position: i64,
    /// offered, added, corrected, held, released, handed_over
    pub kind: String,
    /// How many it moved (a correction's change may be negative).
    pub quantity: i32,
    /// The stock after it.
    pub stock: i32,
    pub by: Option<Uuid>,
    /// Why, for additions and corrections (none once erased).
    pub reason: Option<String>,
    pub redemption_id: Option<Uuid>,
    pub at: DateTime<Utc>,
}

#[derive(SimpleObject)]
pub struct GiftHistoryNode {
    pub gift: GiftNode,
    /// Newest first.
    pub lines: Vec<GiftStockLine>,
}

#[derive(SimpleObject)]
pub struct RedemptionNode {
    pub redemption_id: Uuid,
    pub centre_id: Uuid,
    pub gift_id: Uuid,
    pub resident_id: Uuid,
    pub placed_by: Uuid,
    pub quantity: i32,
    pub points: String,
    pub status: RedemptionStatus,
    pub placed_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    pub finished_by: Option<Uuid>,
}

impl From<RedemptionRow> for RedemptionNode {
    fn from(row: RedemptionRow) -> Self {
        let status = serde_json::from_value::<domain::points::RedemptionStatus>(
            serde_json::Value::String(row.status.clone()),
        )
        .unwrap_or_default();
        RedemptionNode {
            redemption_id: row.redemption_id,
            centre_id: row.centre_id,
            gift_id: row.gift_id,
            resident_id: row.resident_id,
            placed_by: row.placed_by,
            quantity: row.quantity,
            points: super::amount(row.points),
            status: status.into(),
            placed_at: to_datetime(row.placed_at),
            expires_at: to_datetime(row.expires_at),
            finished_at: row.finished_at.map(to_datetime),
            finished_by: row.finished_by,
        }
    }
}

/// One clerk's day at the counter.
#[derive(SimpleObject)]
pub struct CounterDayNode {
    pub day: String,
    pub clerk_id: Uuid,
    pub placed: i32,
    pub completed: i32,
    pub cancelled: i32,
    pub released: i32,
    /// Still held, waiting to be completed.
    pub open: i32,
    pub points_redeemed: String,
    pub gifts_handed_over: i32,
    pub redemptions: Vec<RedemptionNode>,
}

fn gift_node(gift: projections::points::GiftRow) -> GiftNode {
    GiftNode {
        gift_id: gift.gift_id,
        centre_id: gift.centre_id,
        name: gift.name,
        price: super::amount(gift.price),
        stock: gift.stock,
        held: gift.held,
        handed_over: gift.handed_over,
    }
}

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

#[derive(Default)]
pub struct CounterQuery;

#[Object]
impl CounterQuery {
    /// The gifts on offer, at one centre or all, with their stock.
    async fn gifts(
        &self,
        ctx: &Context<'_>,
        community_id: Uuid,
        centre_id: Option<Uuid>,
        at_least: Option<i64>,
    ) -> ApiResult<Vec<GiftNode>> {
        viewer(ctx).member_of(community_id)?;
        fresh(ctx, projections::points::NAME, community_id, at_least).await?;
        let pool = app(ctx).commands.store().pool();
        let gifts =
            projections::points::gifts(pool, CommunityId::new(community_id), centre_id).await?;
        Ok(gifts.into_iter().map(gift_node).collect())
    }

    /// A gift's stock history with who changed it and why: for its
    /// centre's clerks, admins and auditors. `before` is a position.
    async fn gift_history(
        &self,
        ctx: &Context<'_>,
        community_id: Uuid,
        gift_id: Uuid,
        first: Option<i32>,
        before: Option<i64>,
        at_least: Option<i64>,
    ) -> ApiResult<GiftHistoryNode> {
        let claims =
            viewer(ctx).with_role(community_id, &[Role::Clerk, Role::Admin, Role::Auditor])?;
        let limit = page_size(first)?;
        fresh(ctx, projections::points::NAME, community_id, at_least).await?;
        let app = app(ctx);
        let community = CommunityId::new(community_id);
        let store = app.commands.store();
        let (gift, lines) =
            projections::points::gift_history(store.pool(), community, gift_id, before, limit)
                .await?
                .ok_or_else(|| ApiError::not_found(format!("gift {gift_id}")))?;
        if claims.role == Role::Clerk {
            let setup = app.points.community(community).await?;
            if counter_centre(&setup, claims)?.map(|c| c.0) != Some(gift.centre_id) {
                return Err(ApiError::forbidden("the gift is offered at another centre"));
            }
        }
        let mut nodes = Vec::with_capacity(lines.len());
        for line in lines {
            let reason = match &line.reason_hash {
                Some(hash) => app::content::text_of(store, community, hash).await?,
                None => None,
            };
            nodes.push(GiftStockLine {
                position: line.position,
                kind: line.kind,
                quantity: line.quantity,
                stock: line.stock,
                by: line.by,
                reason,
                redemption_id: line.redemption_id,
                at: to_datetime(line.at),
            });
        }
        Ok(GiftHistoryNode {
            gift: gift_node(gift),
            lines: nodes,
        })
    }

    /// Redemptions, newest first: a clerk's centre's, a resident's own, or
    /// any for admins and auditors.
    async fn redemptions(
        &self,
        ctx: &Context<'_>,
        community_id: Uuid,
        filter: Option<RedemptionFilterInput>,
        first: Option<i32>,
        after: Option<String>,
        at_least: Option<i64>,
    ) -> ApiResult<Connection<String, RedemptionNode>> {
        let filter = self
            .narrowed(ctx, community_id, filter.unwrap_or_default())
            .await?;
        let limit = page_size(first)?;
        let after = after.as_deref().map(decode_cursor).transpose()?;
        fresh(ctx, projections::points::NAME, community_id, at_least).await?;
        let pool = app(ctx).commands.store().pool();
        let community = CommunityId::new(community_id);
        let mut rows =
            projections::points::redemptions(pool, community, &filter, after, limit + 1).await?;
        let has_next = rows.len() as i64 > limit;
        rows.truncate(limit as usize);
        let mut connection = Connection::new(after.is_some(), has_next);
        for row in rows {
            let cursor = format!("{}:{}", row.placed_at, row.redemption_id);
            connection.edges.push(Edge::new(cursor, row.into()));
        }
        Ok(connection)
    }

    /// A clerk's day at the counter (today by default): what they placed,
    /// completed, cancelled and what is still held.
    async fn counter_day(
        &self,
        ctx: &Context<'_>,
        community_id: Uuid,
        day: Option<String>,
        clerk_id: Option<Uuid>,
        at_least: Option<i64>,
    ) -> ApiResult<CounterDayNode> {
        let claims =
            viewer(ctx).with_role(community_id, &[Role::Clerk, Role::Admin, Role::Auditor])?;
        let clerk = match (claims.role, clerk_id) {
            (Role::Clerk, Some(other)) if other != claims.sub => {
                return Err(ApiError::forbidden("a clerk sees their own day"))
            }
            (_, Some(clerk)) => clerk,
            (_, None) => claims.sub,
        };
        let app = app(ctx);
        let community = CommunityId::new(community_id);
        let day = match day {
            Some(day) => NaiveDate::parse_from_str(day.trim(), "%Y-%m-%d")
                .map_err(|_| ApiError::validation("day: YYYY-MM-DD"))?,
            None => {
                let setup = app.points.community(community).await?;
                let now = app.commands.clock().now().micros();
                let days = app
                    .commands
                    .store()
                    .local_day(app::calendar::zone_of(&setup), now)
                    .await?;
                NaiveDate::from_num_days_from_ce_opt(days + UNIX_EPOCH_DAYS_FROM_CE)
                    .ok_or_else(|| ApiError::internal("a day out of range"))?
            }
        };
        fresh(ctx, projections::points::NAME, community_id, at_least).await?;
        let filter = RedemptionFilter {
            placed_by: Some(clerk),
            day: Some(day.format("%Y-%m-%d").to_string()),
            ..RedemptionFilter::default()
        };
        let rows = projections::points::redemptions(
            app.commands.store().pool(),
            community,
            &filter,
            None,
            COUNTER_DAY_MAX,
        )
        .await?;
        let count = |status: &str| rows.iter().filter(|row| row.status == status).count() as i32;
        let completed = rows.iter().filter(|row| row.status == "completed");
        Ok(CounterDayNode {
            day: day.format("%Y-%m-%d").to_string(),
            clerk_id: clerk,
            placed: rows.len() as i32,
            completed: count("completed"),
            cancelled: count("cancelled"),
            released: count("released"),
            open: count("placed"),
            points_redeemed: completed
                .clone()
                .map(|row| row.points)
                .sum::<Decimal>()
                .normalize()
                .to_string(),
            gifts_handed_over: completed.map(|row| row.quantity).sum(),
            redemptions: rows.into_iter().map(RedemptionNode::from).collect(),
        })
    }
}

#[derive(Default)]
pub struct CounterMutation;

#[Object]
impl CounterMutation {
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

impl CounterQuery {
    /// The filter as the caller may use it: a clerk's own centre, a
    /// resident's own redemptions.
    async fn narrowed(
        &self,
        ctx: &Context<'_>,
        community_id: Uuid,
        input: RedemptionFilterInput,
    ) -> ApiResult<RedemptionFilter> {
        let claims = viewer(ctx).member_of(community_id)?;
        let mut filter = RedemptionFilter {
            centre: input.centre_id,
            placed_by: input.placed_by,
            resident: input.resident_id,
            day: input.day,
        };
        if let Some(day) = &filter.day {
            NaiveDate::parse_from_str(day, "%Y-%m-%d")
                .map_err(|_| ApiError::validation("day: YYYY-MM-DD"))?;
        }
        match claims.role {
            Role::Admin | Role::Auditor => {}
            Role::Clerk => {
                let app = app(ctx);
                let setup = app.points.community(CommunityId::new(community_id)).await?;
                let centre = counter_centre(&setup, claims)?.map(|c| c.0);
                if filter.centre.is_some_and(|asked| Some(asked) != centre) {
                    return Err(ApiError::forbidden("a clerk sees their own centre's"));
                }
                filter.centre = centre;
            }
            Role::Citizen => {
                if filter.resident.is_some_and(|asked| asked != claims.sub) {
                    return Err(ApiError::forbidden("residents see their own redemptions"));
                }
                filter.resident = Some(claims.sub);
            }
            _ => {
                return Err(ApiError::forbidden(
                    "redemptions are the counters' business",
                ))
            }
        }
        Ok(filter)
    }
}
