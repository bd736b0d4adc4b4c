//! The points economy ("water-protection coins"): the counter (gifts,
//! stock, redemptions), wallets (grants, volunteer service, reversals,
//! statements), the ledger (the budget, the trial balance, flows) and the
//! leaderboards. Readers: `bookkeeper` for the ledger's internals,
//! `public_reader` for what residents may see. Amounts leave as decimal
//! strings in their shortest form (`amount`).

pub mod counter;
pub mod leaderboards;
pub mod ledger;
pub mod wallets;

use crate::error::ApiResult;
use crate::graphql::{amount, decimal, viewer};
use app::caller::Claims;
use async_graphql::Context;
use domain::values::{Points, Role};
use uuid::Uuid;

/// Admins and auditors read every part of the ledger.
fn bookkeeper(ctx: &Context<'_>, community_id: Uuid) -> ApiResult<()> {
    viewer(ctx).with_role(community_id, &[Role::Admin, Role::Auditor])?;
    Ok(())
}

/// The public side: anonymous callers and the community's members.
fn public_reader<'a>(ctx: &Context<'a>, community_id: Uuid) -> ApiResult<Option<&'a Claims>> {
    Ok(viewer(ctx).reader_of(community_id)?)
}

fn points(field: &str, text: &str) -> ApiResult<Points> {
    Ok(Points::parse(decimal(field, text)?)?)
}
