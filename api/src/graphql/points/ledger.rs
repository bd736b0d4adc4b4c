//! The ledger's system accounts: funding the budget, the trial balance,
//! and the flows per month.

use crate::error::{ApiError, ApiResult};
use crate::graphql::points::*;
use crate::graphql::types::*;
use crate::graphql::{app, fresh, request};
use async_graphql::{Context, Object, SimpleObject};
use rust_decimal::Decimal;
use store::CommunityId;
use uuid::Uuid;

/// The accounts besides wallets, as `trialBalance` lists them.
const SYSTEM_ACCOUNTS: [domain::points::Account; 5] = [
    domain::points::Account::Minted,
    domain::points::Account::Issuing,
    domain::points::Account::Redeemed,
    domain::points::Account::Expired,
    domain::points::Account::Reversed,
];

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

#[derive(Default)]
pub struct LedgerQuery;

#[Object]
impl LedgerQuery {
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
}

#[derive(Default)]
pub struct LedgerMutation;

#[Object]
impl LedgerMutation {
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
}
