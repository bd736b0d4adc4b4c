//! Reads of the points economy: wallets and statements, the trial balance
//! and monthly flows, gifts and redemptions, a clerk's day at the counter,
//! and the leaderboards. Residents see their own wallet; clerks their
//! centre; admins and auditors everything; leaderboards are public and
//! show display names or anonymised names, never phone numbers.

use async_graphql::connection::{Connection, Edge};
use async_graphql::{ComplexObject, Context, Enum, InputObject, Object, SimpleObject};
use chrono::{DateTime, NaiveDate, Utc};
use domain::points::wallet::ReversalReason;
use domain::points::{GrantSource, Wallet, WalletEvent};
use domain::values::{ContentHash, Role};
use projections::leaderboards::{Metric, Period};
use projections::points::{RedemptionFilter, RedemptionRow, StatementLine};
use rust_decimal::Decimal;
use sha2::{Digest, Sha256};
use store::CommunityId;
use uuid::Uuid;

use super::points::RedemptionStatus;

/// The accounts besides wallets, as `trialBalance` lists them.
const SYSTEM_ACCOUNTS: [domain::points::Account; 5] = [
    domain::points::Account::Minted,
    domain::points::Account::Issuing,
    domain::points::Account::Redeemed,
    domain::points::Account::Expired,
    domain::points::Account::Reversed,
];
use super::query::decode_cursor;
use super::{app, fresh, page_size, viewer};
use crate::error::{ApiError, ApiResult};
use app::caller::Claims;
use app::clock::to_datetime;
use app::directory::counter_centre;
use app::points::wallet_stream;

#[derive(Default)]
pub struct PointsQuery;

/// Days between 0001-01-01 and 1970-01-01, to turn a day count into a date.
const UNIX_EPOCH_DAYS_FROM_CE: i32 = 719_163;
/// Redemptions listed for one clerk's day at most.
const COUNTER_DAY_MAX: i64 = 500;
const LEADERBOARD_SIZE_MAX: i32 = 100;

#[derive(Enum, Copy, Clone, Debug, Eq, PartialEq)]
pub enum LeaderboardMetric {
    /// Points earned (granted, less what was reversed), not the balance.
    PointsEarned,
    AcceptedReports,
    AdoptedSuggestions,
    VolunteerHours,
}

#[derive(Enum, Copy, Clone, Debug, Eq, PartialEq)]
pub enum LeaderboardPeriod {
    AllTime,
    /// The calendar month, in the community's time zone.
    Month,
    /// The ISO week (Monday to Sunday), in the community's time zone.
    Week,
}

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
#[graphql(complex)]
pub struct WalletNode {
    pub resident_id: Uuid,
    /// Everything in the wallet, held points included (decimal strings).
    pub balance: String,
    /// Held for redemptions placed and not yet completed.
    pub held: String,
    /// What can be redeemed now.
    pub available: String,
    /// Granted, less what was reversed.
    pub earned: String,
    pub redeemed: String,
    /// What expires when, soonest first (none where points never expire).
    pub expiring: Vec<ExpiringPoints>,
    #[graphql(skip)]
    community_id: Uuid,
    #[graphql(skip)]
    statement_visible: bool,
}

#[derive(SimpleObject)]
pub struct ExpiringPoints {
    pub at: DateTime<Utc>,
    pub amount: String,
}

/// A line of a statement: one event of the wallet.
#[derive(SimpleObject)]
pub struct StatementLineNode {
    pub position: i64,
    /// granted, withheld, held, released, redeemed, expired, reversed
    pub kind: String,
    pub amount: String,
    /// The running balance after this line.
    pub balance: String,
    pub held: String,
    pub available: String,
    /// What the points were for: report_accepted, report_resolved,
    /// suggestion_adopted, volunteer_service, manual, redemption, expiry,
    /// fraudulent, merged_duplicate.
    pub reason: String,
    /// Why a grant was withheld: daily_limit, budget_exhausted, report_reversed.
    pub withheld_reason: Option<String>,
    pub report_id: Option<Uuid>,
    pub suggestion_id: Option<Uuid>,
    pub redemption_id: Option<Uuid>,
    /// The gift a redemption's line is for.
    pub gift_id: Option<Uuid>,
    pub gift_name: Option<String>,
    /// The admin's reason, for a manual grant or a fraudulent report's
    /// reversal (none once erased).
    pub note: Option<String>,
    pub grant_id: Option<Uuid>,
    pub hours: Option<String>,
    /// What a reversal could not take back.
    pub shortfall: Option<String>,
    /// The admin or staff member behind it; none for automatic lines.
    pub by: Option<Uuid>,
    pub at: DateTime<Utc>,
}

#[derive(SimpleObject)]
pub struct AccountBalance {
    /// One of minted, issuing, redeemed, expired, reversed: the trial
    /// balance lists all five, in that order, zero or not.
    pub account: String,
    pub balance: String,
}

#[derive(SimpleObject)]
pub struct TrialBalanceNode {
    pub accounts: Vec<AccountBalance>,
    /// The sum of every wallet's balance.
    pub wallets: String,
    pub wallet_count: i64,
    /// "0" when the books balance.
    pub total: String,
    /// The log position the figures are as of.
    pub position: i64,
}

#[derive(SimpleObject)]
pub struct MonthFlowsNode {
    /// `YYYY-MM` in the community's calendar.
    pub month: String,
    pub minted: String,
    pub granted: String,
    pub redeemed: String,
    pub expired: String,
    pub reversed: String,
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

#[derive(SimpleObject)]
pub struct LeaderboardEntry {
    /// 1 + residents with a higher score; tied residents share a rank.
    pub rank: i64,
    /// The resident's display name, or an anonymised name.
    pub name: String,
    pub score: String,
    /// Only admins and auditors see ids.
    pub resident_id: Option<Uuid>,
    pub is_you: bool,
}

#[derive(SimpleObject)]
pub struct LeaderboardNode {
    pub entries: Vec<LeaderboardEntry>,
    /// The caller's standing (or the resident's asked for), if on the board.
    pub standing: Option<LeaderboardEntry>,
}

#[derive(SimpleObject)]
pub struct GridStandingNode {
    pub rank: i64,
    pub grid_id: Uuid,
    pub name: String,
    pub received: i64,
    pub resolved: i64,
    /// Resolved over received, 0 to 1.
    pub resolution_rate: Option<f64>,
    pub median_resolution_hours: Option<f64>,
}

#[ComplexObject]
impl WalletNode {
    /// The wallet's lines, newest first; `after` is a position from a
    /// previous page.
    async fn statement(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
    ) -> ApiResult<Connection<String, StatementLineNode>> {
        if !self.statement_visible {
            return Err(ApiError::forbidden("clerks see a wallet's balance only"));
        }
        let limit = page_size(first)?;
        let before = after
            .as_deref()
            .map(|cursor| {
                cursor
                    .parse::<i64>()
                    .map_err(|_| ApiError::validation("after: not a cursor this list gave"))
            })
            .transpose()?;
        let store = app(ctx).commands.store();
        let pool = store.pool();
        let community = CommunityId::new(self.community_id);
        let mut lines =
            projections::points::statement(pool, community, self.resident_id, before, limit + 1)
                .await?;
        let has_next = lines.len() as i64 > limit;
        lines.truncate(limit as usize);
        let mut connection = Connection::new(before.is_some(), has_next);
        for line in lines {
            let cursor = line.position.to_string();
            let (mut node, note) = statement_line(line)?;
            if let Some(hash) = note {
                node.note = app::content::text_of(store, community, hash.as_str()).await?;
            }
            connection.edges.push(Edge::new(cursor, node));
        }
        Ok(connection)
    }
}

/// A statement line, and the hash of its admin's note if it has one.
fn statement_line(line: StatementLine) -> ApiResult<(StatementLineNode, Option<ContentHash>)> {
    let event: WalletEvent = serde_json::from_value(line.detail).map_err(ApiError::internal)?;
    let mut note = None;
    let mut node = StatementLineNode {
        position: line.position,
        kind: line.kind,
        amount: super::amount(line.amount),
        balance: super::amount(line.balance),
        held: super::amount(line.held),
        available: super::amount(line.balance - line.held),
        reason: String::new(),
        withheld_reason: None,
        report_id: None,
        suggestion_id: None,
        redemption_id: None,
        gift_id: line.gift.as_ref().map(|(id, _)| *id),
        gift_name: line.gift.map(|(_, name)| name),
        note: None,
        grant_id: None,
        hours: None,
        shortfall: None,
        by: None,
        at: to_datetime(line.at),
    };
    match event {
        WalletEvent::PointsGranted { source, by, .. } => {
            node.by = by.map(|by| by.person.0);
            describe_source(&mut node, &source);
            if let GrantSource::Manual { reason, .. } = source {
                note = Some(reason);
            }
        }
        WalletEvent::GrantWithheld {
            source, reason, by, ..
        } => {
            node.by = by.map(|by| by.person.0);
            node.withheld_reason = Some(super::types::name_of(reason));
            describe_source(&mut node, &source);
        }
        WalletEvent::PointsHeld { redemption, .. }
        | WalletEvent::HoldReleased { redemption, .. }
        | WalletEvent::PointsRedeemed { redemption, .. } => {
            node.reason = "redemption".into();
            node.redemption_id = Some(redemption.0);
        }
        WalletEvent::PointsExpired { .. } => node.reason = "expiry".into(),
        WalletEvent::PointsReversed {
            report,
            shortfall,
            reason,
            by,
            ..
        } => {
            node.report_id = Some(report.0);
            node.shortfall = Some(super::amount(shortfall));
            node.by = by.map(|by| by.person.0);
            node.reason = match reason {
                ReversalReason::Fraudulent { note: hash } => {
                    note = Some(hash);
                    "fraudulent".into()
                }
                ReversalReason::MergedDuplicate { .. } => "merged_duplicate".into(),
            };
        }
    }
    Ok((node, note))
}

fn describe_source(node: &mut StatementLineNode, source: &GrantSource) {
    node.reason = source.kind().to_string();
    match source {
        GrantSource::ReportAccepted { report } | GrantSource::ReportResolved { report } => {
            node.report_id = Some(report.0)
        }
        GrantSource::SuggestionAdopted { suggestion, .. } => {
            node.suggestion_id = Some(suggestion.0)
        }
        GrantSource::VolunteerService { service, hours } => {
            node.grant_id = Some(service.0);
            node.hours = Some(super::amount(*hours));
        }
        GrantSource::Manual { grant, .. } => node.grant_id = Some(grant.0),
    }
}

/// Admins and auditors read every part of the ledger.
fn bookkeeper(ctx: &Context<'_>, community_id: Uuid) -> ApiResult<()> {
    viewer(ctx).with_role(community_id, &[Role::Admin, Role::Auditor])?;
    Ok(())
}

/// The public side: anonymous callers and the community's members.
fn public_reader<'a>(ctx: &Context<'a>, community_id: Uuid) -> ApiResult<Option<&'a Claims>> {
    Ok(viewer(ctx).reader_of(community_id)?)
}

#[Object]
impl PointsQuery {
    /// A wallet: a resident's own, or any resident's for admins and
    /// auditors; clerks see the balance at their counter, not the
    /// statement. `atLeast` waits for the earning process and the ledger
    /// to have caught up with that position (e.g. a report's acceptance).
    async fn wallet(
        &self,
        ctx: &Context<'_>,
        community_id: Uuid,
        resident_id: Option<Uuid>,
        at_least: Option<i64>,
    ) -> ApiResult<WalletNode> {
        let claims = viewer(ctx).member_of(community_id)?;
        let resident = resident_id.unwrap_or(claims.sub);
        let statement_visible = match claims.role {
            Role::Admin | Role::Auditor => true,
            Role::Clerk => false,
            _ if resident == claims.sub => true,
            _ => return Err(ApiError::forbidden("residents see their own wallet only")),
        };
        let app = app(ctx);
        let community = CommunityId::new(community_id);
        if let Some(position) = at_least {
            fresh(
                ctx,
                app::points::earning::NAME,
                community_id,
                Some(position),
            )
            .await?;
            let head = app.commands.store().head(community).await?.position;
            fresh(ctx, projections::points::NAME, community_id, Some(head)).await?;
        }
        let pool = app.commands.store().pool();
        let row = projections::points::wallet(pool, community, resident).await?;
        let wallet = app
            .commands
            .load::<Wallet>(community, &wallet_stream(resident))
            .await?;
        let expiring = wallet
            .state
            .expiring()
            .into_iter()
            .map(|(at, amount)| ExpiringPoints {
                at: to_datetime(at.micros()),
                amount: super::amount(amount),
            })
            .collect();
        let (earned, redeemed) = row.map_or((Decimal::ZERO, Decimal::ZERO), |row| {
            (row.earned, row.redeemed)
        });
        Ok(WalletNode {
            resident_id: resident,
            balance: super::amount(wallet.state.balance),
            held: super::amount(wallet.state.held),
            available: super::amount(wallet.state.available()),
            earned: super::amount(earned),
            redeemed: super::amount(redeemed),
            expiring,
            community_id,
            statement_visible,
        })
    }

    /// Every account's balance; the total is zero when the books balance.
    async fn trial_balance(
        &self,
        ctx: &Context<'_>,
        community_id: Uuid,
        at_least: Option<i64>,
    ) -> ApiResult<TrialBalanceNode> {
        bookkeeper(ctx, community_id)?;
        fresh(ctx, projections::points::NAME, community_id, at_least).await?;
        let pool = app(ctx).commands.store().pool();
        let trial =
            projections::points::trial_balance(pool, CommunityId::new(community_id)).await?;
        // Every system account the schema names, zero or not, in its order.
        let accounts = SYSTEM_ACCOUNTS
            .iter()
            .map(|account| {
                let name = projections::points::account_name(*account);
                let balance = trial
                    .accounts
                    .iter()
                    .find(|(stored, _)| *stored == name)
                    .map_or(Decimal::ZERO, |(_, balance)| *balance);
                AccountBalance {
                    account: name,
                    balance: super::amount(balance),
                }
            })
            .collect();
        Ok(TrialBalanceNode {
            accounts,
            wallets: super::amount(trial.wallets_total),
            wallet_count: trial.wallet_count,
            total: super::amount(trial.total),
            position: trial.position,
        })
    }

    /// Points minted, granted, redeemed, expired and reversed per month,
    /// newest first.
    async fn points_flows(
        &self,
        ctx: &Context<'_>,
        community_id: Uuid,
        #[graphql(default = 12)] months: i32,
        at_least: Option<i64>,
    ) -> ApiResult<Vec<MonthFlowsNode>> {
        bookkeeper(ctx, community_id)?;
        if !(1..=120).contains(&months) {
            return Err(ApiError::validation("months: 1 to 120"));
        }
        fresh(ctx, projections::points::NAME, community_id, at_least).await?;
        let pool = app(ctx).commands.store().pool();
        let flows =
            projections::points::flows(pool, CommunityId::new(community_id), i64::from(months))
                .await?;
        Ok(flows
            .into_iter()
            .map(|month| MonthFlowsNode {
                month: month.month,
                minted: super::amount(month.minted),
                granted: super::amount(month.granted),
                redeemed: super::amount(month.redeemed),
                expired: super::amount(month.expired),
                reversed: super::amount(month.reversed),
            })
            .collect())
    }

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

    /// Residents ranked on a board of the community (or of a grid). Public.
    #[allow(clippy::too_many_arguments)]
    async fn leaderboard(
        &self,
        ctx: &Context<'_>,
        community_id: Uuid,
        by: LeaderboardMetric,
        period: LeaderboardPeriod,
        grid_id: Option<Uuid>,
        #[graphql(desc = "A moment in the month or week wanted; now by default.")] at: Option<
            DateTime<Utc>,
        >,
        #[graphql(default = 20)] first: i32,
        #[graphql(desc = "Whose standing to show: admins and auditors may ask for anyone.")]
        resident_id: Option<Uuid>,
        at_least: Option<i64>,
    ) -> ApiResult<LeaderboardNode> {
        let claims = public_reader(ctx, community_id)?;
        if !(1..=LEADERBOARD_SIZE_MAX).contains(&first) {
            return Err(ApiError::validation(format!(
                "first: 1 to {LEADERBOARD_SIZE_MAX}"
            )));
        }
        let staff = claims.is_some_and(|c| matches!(c.role, Role::Admin | Role::Auditor));
        let standing_of = match (resident_id, claims) {
            (Some(resident), _) if staff => Some(resident),
            (Some(_), _) => {
                return Err(ApiError::forbidden(
                    "only admins and auditors ask for another resident's standing",
                ))
            }
            (None, Some(claims)) if claims.role == Role::Citizen => Some(claims.sub),
            (None, _) => None,
        };
        fresh(ctx, projections::leaderboards::NAME, community_id, at_least).await?;
        let app = app(ctx);
        let community = CommunityId::new(community_id);
        let at = at.map_or_else(
            || app.commands.clock().now().micros(),
            |at| at.timestamp_micros(),
        );
        let period = match period {
            LeaderboardPeriod::AllTime => Period::AllTime,
            LeaderboardPeriod::Month => Period::Month(at),
            LeaderboardPeriod::Week => Period::Week(at),
        };
        let metric = match by {
            LeaderboardMetric::PointsEarned => Metric::Points,
            LeaderboardMetric::AcceptedReports => Metric::AcceptedReports,
            LeaderboardMetric::AdoptedSuggestions => Metric::AdoptedSuggestions,
            LeaderboardMetric::VolunteerHours => Metric::VolunteerHours,
        };
        let pool = app.commands.store().pool();
        let top = projections::leaderboards::top(
            pool,
            community,
            metric,
            grid_id,
            period,
            i64::from(first),
        )
        .await?;
        let standing = match standing_of {
            Some(resident) => {
                projections::leaderboards::rank_of(
                    pool, community, metric, grid_id, period, resident,
                )
                .await?
            }
            None => None,
        };
        let mut people: Vec<Uuid> = top.iter().map(|s| s.resident_id).collect();
        people.extend(standing.iter().map(|s| s.resident_id));
        let names = app
            .commands
            .store()
            .display_names(community, &people)
            .await?;
        let you = claims.map(|c| c.sub);
        let entry = |s: projections::leaderboards::Standing| LeaderboardEntry {
            rank: s.rank,
            name: names
                .get(&s.resident_id)
                .cloned()
                .unwrap_or_else(|| anonymised(s.resident_id)),
            score: super::amount(s.score),
            resident_id: staff.then_some(s.resident_id),
            is_you: you == Some(s.resident_id),
        };
        Ok(LeaderboardNode {
            entries: top.into_iter().map(entry).collect(),
            standing: standing.map(entry),
        })
    }

    /// Grids ranked by resolution rate, then median resolution time
    /// ("cleanest street"), for reports received in the period. Public.
    async fn grid_leaderboard(
        &self,
        ctx: &Context<'_>,
        community_id: Uuid,
        period: LeaderboardPeriod,
        at: Option<DateTime<Utc>>,
        at_least: Option<i64>,
    ) -> ApiResult<Vec<GridStandingNode>> {
        public_reader(ctx, community_id)?;
        fresh(ctx, projections::reports::NAME, community_id, at_least).await?;
        let app = app(ctx);
        let at = at.map_or_else(
            || app.commands.clock().now().micros(),
            |at| at.timestamp_micros(),
        );
        let period = match period {
            LeaderboardPeriod::AllTime => "all",
            LeaderboardPeriod::Month => "month",
            LeaderboardPeriod::Week => "week",
        };
        let standings = projections::reports::grid_standings(
            app.commands.store().pool(),
            CommunityId::new(community_id),
            period,
            at,
        )
        .await?;
        Ok(standings
            .into_iter()
            .map(|grid| GridStandingNode {
                rank: grid.rank,
                grid_id: grid.grid_id,
                name: grid.name,
                received: grid.received,
                resolved: grid.resolved,
                resolution_rate: grid.resolution_rate,
                median_resolution_hours: grid
                    .median_resolution_us
                    .map(|us| us as f64 / 3_600_000_000.0),
            })
            .collect())
    }
}

impl PointsQuery {
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

/// A name for a resident without a display name that does not reveal
/// their id.
fn anonymised(resident: Uuid) -> String {
    let digest = Sha256::digest(resident.as_bytes());
    format!("resident-{}", &hex::encode(digest)[..6])
}
