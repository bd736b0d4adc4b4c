//! Audit reads for auditors.

use async_graphql::{Context, Object, SimpleObject};
use domain::values::Role;
use store::CommunityId;
use uuid::Uuid;

use super::{app, viewer};
use crate::error::ApiResult;
use app::caller::Viewer;

#[derive(Default)]
pub struct AuditQuery;

#[derive(SimpleObject)]
pub struct AuditFailure {
    pub position: i64,
    /// What failed, one of the names docs/AUDIT.md lists under "Failures":
    /// missing_position, broken_link, hash_mismatch, head_mismatch,
    /// seal_mismatch, seal_tree_mismatch, seal_beyond_log, seal_untrusted_key,
    /// seal_signature_invalid, erasure_mismatch, erasure_tombstone_missing,
    /// erasure_unrecorded, unbalanced, wallet_below_zero, wallet_overheld,
    /// wallet_balance_mismatch, budget_overdrawn, budget_balance_mismatch,
    /// hold_completed_late, hold_released_early, hold_not_finished,
    /// bad_amount, grant_unpaired, stock_out_of_range, stock_mismatch, undecodable,
    /// unanchored_start, malformed_line.
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
    /// Whether every erasure was matched with its `ContentErased` event in
    /// the chain (and every such event with a tombstone): only for a range
    /// from position 1 to the head.
    pub erasures_checked: bool,
    /// Seals checked against the events.
    pub seals_checked: i64,
    /// Seals whose Merkle tree root was recomputed from the events and
    /// matched (only a range from position 1 has the whole tree; seals
    /// made before the tree carry no root).
    pub tree_roots_checked: i64,
    /// Whether they were checked against the server's own key (here, the
    /// key `sealPublicKey` publishes).
    pub seals_trusted: bool,
    /// The first position where anything failed.
    pub first_failure: Option<AuditFailure>,
}

/// A piece of content beside the log: what residents typed or attached.
#[derive(SimpleObject)]
pub struct ContentPiece {
    /// Its SHA-256 (hex), as the events carry it.
    pub hash: String,
    /// Exactly the text hashed: a JSON object with its `salt` and its
    /// `text`, or its photo list (`photos`, `uploaded`). Null once erased.
    pub stored: Option<String>,
    pub erased_at: Option<chrono::DateTime<chrono::Utc>>,
    pub erased_by: Option<String>,
    pub erasure_reason: Option<String>,
}

/// A signed statement of a community's chain head.
#[derive(SimpleObject)]
pub struct SealNode {
    pub position: i64,
    /// The chain's hash at that position (hex).
    pub hash: String,
    /// The root (hex) of the log's Merkle tree of `position` events, which
    /// the seal signs too; null for seals made before the tree.
    pub tree_root: Option<String>,
    pub sealed_at: chrono::DateTime<chrono::Utc>,
    /// The Ed25519 public key (hex) that signed it.
    pub public_key: String,
    /// The signature (hex) over the message docs/AUDIT.md spells out.
    pub signature: String,
}

/// An event's receipt: the hashes that lead from its leaf to the root of
/// the Merkle tree a seal signed (docs/AUDIT.md, "Receipts and
/// extensions"). It shows hashes only.
#[derive(SimpleObject)]
pub struct InclusionProof {
    pub position: i64,
    /// The event's chain hash (hex): the leaf's data.
    pub event_hash: String,
    /// Events in the tree: the seal's position.
    pub tree_size: i64,
    /// The tree's root (hex), as the seal signs it.
    pub tree_root: String,
    /// Hashes (hex) from the leaf's sibling up: about log2(treeSize).
    pub path: Vec<String>,
    pub seal: SealNode,
    /// The receipt as one JSON object, as `civic-ledger audit check-proof`
    /// and docs/verify_proof.py read it: keep it to check later.
    pub document: String,
}

/// That the tree a newer seal signed extends the tree an older one signed:
/// every event under the older seal is still there, unchanged, in order.
#[derive(SimpleObject)]
pub struct ConsistencyProof {
    pub old_size: i64,
    pub old_root: String,
    pub new_size: i64,
    pub new_root: String,
    /// Hashes (hex), in the order RFC 6962's consistency proof gives.
    pub path: Vec<String>,
    pub old_seal: SealNode,
    pub new_seal: SealNode,
    /// The proof as one JSON object, as `civic-ledger audit check-proof`
    /// and docs/verify_proof.py read it.
    pub document: String,
}

#[Object]
impl AuditQuery {
    /// The receipt of the event at `position` (a mutation's `position`):
    /// against the seal at `sealPosition`, or by default the first seal
    /// that covers it. NOT_FOUND until a seal covers it.
    async fn inclusion_proof(
        &self,
        ctx: &Context<'_>,
        community_id: Uuid,
        position: i64,
        seal_position: Option<i64>,
    ) -> ApiResult<InclusionProof> {
        let receipt = app(ctx)
            .receipt(&super::request(ctx), community_id, position, seal_position)
            .await?;
        let document = serde_json::to_string(&receipt).map_err(app::error::AppError::internal)?;
        let proof = receipt.proof;
        Ok(InclusionProof {
            position: proof.position,
            event_hash: hex::encode(proof.event_hash),
            tree_size: proof.tree_size,
            tree_root: hex::encode(proof.tree_root),
            path: proof.path.iter().map(hex::encode).collect(),
            seal: receipt.seal.into(),
            document,
        })
    }

    /// That the seal at `newSealPosition` extends the seal at
    /// `oldSealPosition`, without reading the log.
    async fn consistency_proof(
        &self,
        ctx: &Context<'_>,
        community_id: Uuid,
        old_seal_position: i64,
        new_seal_position: i64,
    ) -> ApiResult<ConsistencyProof> {
        let extension = app(ctx)
            .extension(
                &super::request(ctx),
                community_id,
                old_seal_position,
                new_seal_position,
            )
            .await?;
        let document = serde_json::to_string(&extension).map_err(app::error::AppError::internal)?;
        let proof = extension.proof;
        Ok(ConsistencyProof {
            old_size: proof.old_size,
            old_root: hex::encode(proof.old_root),
            new_size: proof.new_size,
            new_root: hex::encode(proof.new_root),
            path: proof.path.iter().map(hex::encode).collect(),
            old_seal: extension.old_seal.into(),
            new_seal: extension.new_seal.into(),
            document,
        })
    }

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
        if let Viewer::Refused(error) = viewer(ctx) {
            return Err(error.clone().into());
        }
        let limit = super::page_size(Some(first))?;
        let store = app(ctx).commands.store();
        let mut seals = app::audit::all_seals(store, CommunityId::new(community_id)).await?;
        seals.reverse();
        seals.truncate(limit as usize);
        Ok(seals.into_iter().map(SealNode::from).collect())
    }

    /// A piece of content beside the log exactly as stored, for the
    /// community's auditors and admins: `stored` is the UTF-8 JSON text
    /// whose SHA-256 is the hash the events carry (its salt included), so
    /// anyone holding it can check that hash and read what was written.
    /// Null when no piece has that hash; an erased piece shows its
    /// tombstone instead.
    async fn content_piece(
        &self,
        ctx: &Context<'_>,
        community_id: Uuid,
        hash: String,
    ) -> ApiResult<Option<ContentPiece>> {
        let piece = app(ctx)
            .stored_piece(&super::request(ctx), community_id, &hash)
            .await?;
        Ok(piece.map(|piece| match piece {
            app::content::StoredPiece::Present(stored) => ContentPiece {
                hash: hash.to_ascii_lowercase(),
                stored: Some(stored),
                erased_at: None,
                erased_by: None,
                erasure_reason: None,
            },
            app::content::StoredPiece::Erased(tombstone) => ContentPiece {
                hash: hash.to_ascii_lowercase(),
                stored: None,
                erased_at: Some(tombstone.erased_at),
                erased_by: Some(tombstone.erased_by),
                erasure_reason: Some(tombstone.reason),
            },
        }))
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
        let report = app::audit::verify(
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
            erasures_checked: report.erasures_checked,
            seals_checked: report.seals_checked,
            tree_roots_checked: report.tree_roots_checked,
            seals_trusted: report.seals_trusted,
            first_failure: report.first_failure.map(|failure| AuditFailure {
                position: failure.position,
                what: failure.what,
                detail: failure.detail,
            }),
        })
    }
}

/// A moment in a community's history: a position, or a time (the last
/// position recorded at or before it).
#[derive(async_graphql::InputObject)]
pub struct AsOfInput {
    pub position: Option<i64>,
    pub time: Option<chrono::DateTime<chrono::Utc>>,
}

#[derive(async_graphql::InputObject, Default)]
pub struct AuditTrailFilter {
    /// Who issued the commands.
    pub actor_id: Option<Uuid>,
    pub stream_id: Option<String>,
    pub event_type: Option<String>,
    /// Recorded at or after.
    pub from: Option<chrono::DateTime<chrono::Utc>>,
    /// Recorded before.
    pub to: Option<chrono::DateTime<chrono::Utc>>,
}

#[derive(SimpleObject)]
pub struct MetadataEntry {
    pub key: String,
    pub value: String,
}

/// An event as stored, with who did it, from where, and its hashes.
#[derive(SimpleObject)]
pub struct AuditEvent {
    pub position: i64,
    pub stream_id: String,
    pub stream_type: String,
    pub stream_version: i64,
    pub event_type: String,
    pub event_version: String,
    pub recorded_at: chrono::DateTime<chrono::Utc>,
    pub actor_id: Option<String>,
    pub actor_role: Option<String>,
    pub client: Option<String>,
    pub request_id: Option<String>,
    /// Every metadata entry (correlation and causation ids among them).
    pub metadata: Vec<MetadataEntry>,
    /// The payload's JSON text.
    pub payload: String,
    pub previous_hash: String,
    pub hash: String,
}

impl From<store::RecordedEvent> for AuditEvent {
    fn from(event: store::RecordedEvent) -> Self {
        let get = |key: &str| event.metadata.get(key).cloned();
        AuditEvent {
            position: event.position,
            actor_id: get("actor_id"),
            actor_role: get("actor_role"),
            client: get("client"),
            request_id: get("request_id"),
            metadata: event
                .metadata
                .iter()
                .map(|(key, value)| MetadataEntry {
                    key: key.clone(),
                    value: value.clone(),
                })
                .collect(),
            payload: event.payload.get().to_string(),
            previous_hash: hex::encode(event.previous_hash),
            hash: hex::encode(event.hash),
            stream_id: event.stream_id,
            stream_type: event.stream_type,
            stream_version: event.stream_version,
            event_type: event.event_type,
            event_version: event.event_version,
            recorded_at: event.recorded_at,
        }
    }
}

#[derive(SimpleObject)]
pub struct WalletAsOf {
    /// The position it is as of.
    pub position: i64,
    pub balance: String,
    pub held: String,
    pub available: String,
}

#[derive(SimpleObject)]
pub struct ReportAsOf {
    pub position: i64,
    /// `None` when the report did not exist yet.
    pub state: Option<String>,
    pub assignee_id: Option<Uuid>,
    pub escalated_to: Option<Uuid>,
    pub reopen_count: u32,
    pub hidden: bool,
}

#[derive(SimpleObject)]
pub struct TrialBalanceAsOf {
    pub position: i64,
    /// Every account, wallets one by one (`wallet:<id>`).
    pub accounts: Vec<AccountLine>,
    /// "0" when the books balance.
    pub total: String,
}

#[derive(SimpleObject)]
pub struct AccountLine {
    pub account: String,
    pub balance: String,
}

/// The trail a page at a time; `after` is a position.
#[derive(Default)]
pub struct AuditTrailQuery;

#[Object]
impl AuditTrailQuery {
    /// Events by actor, stream, event type and time, oldest first, with
    /// their metadata; for auditors.
    async fn audit_trail(
        &self,
        ctx: &Context<'_>,
        community_id: Uuid,
        filter: Option<AuditTrailFilter>,
        first: Option<i32>,
        after: Option<i64>,
    ) -> ApiResult<async_graphql::connection::Connection<String, AuditEvent>> {
        viewer(ctx).with_role(community_id, &[Role::Auditor])?;
        let limit = super::page_size(first)?;
        let filter = filter.unwrap_or_default();
        let filter = store::TrailFilter {
            actor: filter.actor_id.map(|id| id.to_string()),
            stream_id: filter.stream_id,
            event_type: filter.event_type,
            from_time: filter.from,
            to_time: filter.to,
        };
        let store = app(ctx).commands.store();
        let mut events = store
            .audit_trail(
                CommunityId::new(community_id),
                &filter,
                after.unwrap_or(0),
                limit + 1,
            )
            .await?;
        let has_next = events.len() as i64 > limit;
        events.truncate(limit as usize);
        let mut connection = async_graphql::connection::Connection::new(after.is_some(), has_next);
        for event in events {
            let cursor = event.position.to_string();
            connection
                .edges
                .push(async_graphql::connection::Edge::new(cursor, event.into()));
        }
        Ok(connection)
    }

    /// A wallet as it was at a moment: its own, or any for auditors and admins.
    async fn wallet_as_of(
        &self,
        ctx: &Context<'_>,
        community_id: Uuid,
        resident_id: Uuid,
        as_of: AsOfInput,
    ) -> ApiResult<WalletAsOf> {
        let claims = viewer(ctx).member_of(community_id)?;
        let own = claims.role == Role::Citizen && claims.sub == resident_id;
        if !own && !matches!(claims.role, Role::Auditor | Role::Admin) {
            return Err(crate::error::ApiError::forbidden(
                "a wallet's past is its resident's, the admins' and the auditors'",
            ));
        }
        let community = CommunityId::new(community_id);
        let position = position_of(ctx, community, &as_of).await?;
        let wallet: domain::points::Wallet = fold_until(
            ctx,
            community,
            &app::points::wallet_stream(resident_id),
            position,
        )
        .await?;
        Ok(WalletAsOf {
            position,
            balance: super::amount(wallet.balance),
            held: super::amount(wallet.held),
            available: super::amount(wallet.available()),
        })
    }

    /// A report as it was at a moment; for auditors and admins.
    async fn report_as_of(
        &self,
        ctx: &Context<'_>,
        community_id: Uuid,
        report_id: Uuid,
        as_of: AsOfInput,
    ) -> ApiResult<ReportAsOf> {
        viewer(ctx).with_role(community_id, &[Role::Auditor, Role::Admin])?;
        let community = CommunityId::new(community_id);
        let position = position_of(ctx, community, &as_of).await?;
        let report: domain::report::Report = fold_until(
            ctx,
            community,
            &app::commands::report_stream(report_id),
            position,
        )
        .await?;
        Ok(ReportAsOf {
            position,
            state: report
                .submission
                .is_some()
                .then(|| super::types::name_of(report.state)),
            assignee_id: report.assignee.map(|p| p.0),
            escalated_to: report.escalated_to.map(|d| d.0),
            reopen_count: report.reopen_count,
            hidden: report.hidden,
        })
    }

    /// Every account's balance at a moment, folded from the log itself
    /// (not from a read model); for auditors and admins.
    async fn trial_balance_as_of(
        &self,
        ctx: &Context<'_>,
        community_id: Uuid,
        as_of: AsOfInput,
    ) -> ApiResult<TrialBalanceAsOf> {
        viewer(ctx).with_role(community_id, &[Role::Auditor, Role::Admin])?;
        let community = CommunityId::new(community_id);
        let position = position_of(ctx, community, &as_of).await?;
        let store = app(ctx).commands.store();
        let ledger = app::audit::ledger_as_of(store, community, position)
            .await?
            .map_err(|failure| {
                app::error::AppError::conflict(format!(
                    "the ledger does not hold at position {}: {}",
                    failure.position, failure.what
                ))
            })?;
        let balances = ledger.balances();
        Ok(TrialBalanceAsOf {
            position,
            total: super::amount(balances.values().sum::<rust_decimal::Decimal>()),
            accounts: balances
                .iter()
                .map(|(account, balance)| AccountLine {
                    account: projections::points::account_name(*account),
                    balance: super::amount(*balance),
                })
                .collect(),
        })
    }
}

/// The position a moment names, within the log.
async fn position_of(
    ctx: &Context<'_>,
    community: CommunityId,
    as_of: &AsOfInput,
) -> ApiResult<i64> {
    let store = app(ctx).commands.store();
    let head = store.head(community).await?.position;
    match (as_of.position, as_of.time) {
        (Some(position), None) if (0..=head).contains(&position) => Ok(position),
        (Some(_), None) => Err(crate::error::ApiError::validation(format!(
            "asOf.position: 0 to {head}"
        ))),
        (None, Some(time)) => Ok(store.position_at(community, time).await?),
        _ => Err(crate::error::ApiError::validation(
            "asOf: a position or a time, not both",
        )),
    }
}

/// An aggregate folded from its stream's events up to `position`.
async fn fold_until<A>(
    ctx: &Context<'_>,
    community: CommunityId,
    stream_id: &str,
    position: i64,
) -> ApiResult<A>
where
    A: cqrs_es::Aggregate + Default,
    A::Event: serde::de::DeserializeOwned,
{
    const BATCH: i64 = 1_000;
    let store = app(ctx).commands.store();
    let mut state = A::default();
    let mut version = 1;
    loop {
        let events = store
            .read_stream(community, stream_id, version, BATCH)
            .await?;
        let done = (events.len() as i64) < BATCH;
        for event in &events {
            if event.position > position {
                return Ok(state);
            }
            state.apply(event.decode::<A::Event>()?);
            version = event.stream_version + 1;
        }
        if done {
            return Ok(state);
        }
    }
}

impl From<store::Seal> for SealNode {
    fn from(seal: store::Seal) -> Self {
        SealNode {
            position: seal.position,
            hash: hex::encode(seal.hash),
            tree_root: seal.tree_root.map(hex::encode),
            sealed_at: seal.sealed_at,
            public_key: hex::encode(seal.public_key),
            signature: hex::encode(&seal.signature),
        }
    }
}

#[derive(Default)]
pub struct ErasureMutation;

#[derive(SimpleObject)]
pub struct ErasurePayload {
    pub resident_id: Uuid,
    /// Pieces of content erased (texts, photo lists).
    pub contents_erased: i32,
    pub profile_erased: bool,
}

#[Object]
impl ErasureMutation {
    /// Seals the community's chain head now, whatever the seal policy
    /// (`[seals]`: every so many events or minutes): the seal at the head,
    /// or the one already there. For the community's admin.
    async fn seal_now(&self, ctx: &Context<'_>, community_id: Uuid) -> ApiResult<SealNode> {
        Ok(app(ctx)
            .seal_now(&super::request(ctx), community_id)
            .await?
            .into())
    }

    /// Erases a resident on their request: their profile and everything
    /// they typed or attached. The log, its hashes and every total stay;
    /// they remain a pseudonymous id. For the community's admin.
    async fn erase_resident(
        &self,
        ctx: &Context<'_>,
        community_id: Uuid,
        resident_id: Uuid,
        reason: String,
    ) -> ApiResult<ErasurePayload> {
        let erased = app(ctx)
            .erase_resident(&super::request(ctx), community_id, resident_id, &reason)
            .await?;
        Ok(ErasurePayload {
            resident_id,
            contents_erased: erased.contents_erased as i32,
            profile_erased: erased.profile_erased,
        })
    }
}
