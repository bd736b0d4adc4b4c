//! Audit reads for auditors.

use async_graphql::{Context, Object, SimpleObject};
use domain::values::Role;
use store::CommunityId;
use uuid::Uuid;

use super::{app, viewer};
use crate::error::ApiResult;

#[derive(Default)]
pub struct AuditQuery;

#[derive(SimpleObject)]
pub struct AuditFailure {
    pub position: i64,
    /// hash_mismatch, broken_link, missing_position, head_mismatch,
    /// unbalanced, wallet_below_zero, wallet_overheld,
    /// wallet_balance_mismatch, budget_overdrawn, budget_balance_mismatch,
    /// hold_not_finished, bad_amount, stock_out_of_range, undecodable
    pub what: String,
    pub detail: String,
}

#[derive(SimpleObject)]
pub struct AuditVerification {
    pub intact: bool,
    pub from_position: i64,
    pub to_position: i64,
    pub events_checked: i64,
    pub ledger_checked: bool,
    /// The first position where anything failed.
    pub first_failure: Option<AuditFailure>,
}

#[Object]
impl AuditQuery {
    /// Recomputes the hash chain (positions `from` to `to`) and the points
    /// ledger's invariants (from position 1): what `civic-ledger audit
    /// verify` prints.
    async fn audit_verification(
        &self,
        ctx: &Context<'_>,
        community_id: Uuid,
        #[graphql(default = 1)] from: i64,
        to: Option<i64>,
    ) -> ApiResult<AuditVerification> {
        viewer(ctx).with_role(community_id, &[Role::Auditor])?;
        let store = app(ctx).commands.store();
        let report = crate::audit::verify(
            store,
            CommunityId::new(community_id),
            from,
            to.unwrap_or(i64::MAX),
        )
        .await?;
        Ok(AuditVerification {
            intact: report.is_intact(),
            from_position: report.from_position,
            to_position: report.to_position,
            events_checked: report.events_checked,
            ledger_checked: report.ledger_checked,
            first_failure: report.first_failure.map(|failure| AuditFailure {
                position: failure.position,
                what: failure.what,
                detail: failure.detail,
            }),
        })
    }
}
