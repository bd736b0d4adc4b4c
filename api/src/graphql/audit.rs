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

/// A signed statement of a community's chain head.
#[derive(SimpleObject)]
pub struct SealNode {
    pub position: i64,
    /// The chain's hash at that position (hex).
    pub hash: String,
    pub sealed_at: chrono::DateTime<chrono::Utc>,
    /// The Ed25519 public key (hex) that signed it.
    pub public_key: String,
    /// The signature (hex) over the message docs/AUDIT.md spells out.
    pub signature: String,
}

#[Object]
impl AuditQuery {
    /// The public key (hex) this server signs seals with.
    async fn seal_public_key(&self, ctx: &Context<'_>) -> String {
        hex::encode(app(ctx).sealer.public_key())
    }

    /// A community's seals, newest first: anyone may keep them, to check
    /// later that the log still extends them.
    async fn seals(
        &self,
        ctx: &Context<'_>,
        community_id: Uuid,
        #[graphql(default = 20)] first: i32,
    ) -> ApiResult<Vec<SealNode>> {
        if let crate::auth::Viewer::Refused(error) = viewer(ctx) {
            return Err(error.clone());
        }
        let limit = super::page_size(Some(first))?;
        let store = app(ctx).commands.store();
        let mut seals = crate::audit::all_seals(store, CommunityId::new(community_id)).await?;
        seals.reverse();
        seals.truncate(limit as usize);
        Ok(seals
            .into_iter()
            .map(|seal| SealNode {
                position: seal.position,
                hash: hex::encode(seal.hash),
                sealed_at: seal.sealed_at,
                public_key: hex::encode(seal.public_key),
                signature: hex::encode(&seal.signature),
            })
            .collect())
    }

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
        let app = app(ctx);
        let report = crate::audit::verify(
            app.commands.store(),
            CommunityId::new(community_id),
            from,
            to.unwrap_or(i64::MAX),
            Some(app.sealer.public_key()),
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
