//! Receipts and extensions: an inclusion proof of one event against a seal
//! (the resident's receipt), and a consistency proof between two seals (an
//! auditor's check that a newer seal extends one kept from before), each a
//! document that holds on its own, checked here and by
//! `docs/verify_proof.py` (docs/AUDIT.md, "Receipts and extensions").

use serde::{Deserialize, Serialize};
use store::{CommunityId, ConsistencyProof, EventStore, InclusionProof, Seal};

use crate::error::{AppError, AppResult};

/// An event's receipt: its inclusion proof, and the seal whose tree it
/// leads to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Receipt {
    #[serde(flatten)]
    pub proof: InclusionProof,
    pub seal: Seal,
}

/// That the tree `new_seal` signed extends the one `old_seal` signed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Extension {
    #[serde(flatten)]
    pub proof: ConsistencyProof,
    pub old_seal: Seal,
    pub new_seal: Seal,
}

/// Why a proof document does not hold, by stable name (docs/AUDIT.md).
pub const PROOF_FAILURES: &[(&str, &str)] = &[
    (
        "malformed_document",
        "the line is not a receipt or an extension as docs/AUDIT.md gives them",
    ),
    (
        "proof_invalid",
        "the path does not lead from the leaf (or the older root) to the root",
    ),
    (
        "seal_disagrees",
        "the seal is not over the proof's tree: another size, root or community",
    ),
    (
        "seal_untrusted_key",
        "a seal is signed by another key than the one trusted",
    ),
    (
        "seal_signature_invalid",
        "a seal's signature does not hold, or is missing",
    ),
];

/// The receipt of the event at `position`: against the seal at
/// `seal_position`, or the first seal with a tree that covers it.
pub async fn receipt(
    store: &EventStore,
    community: CommunityId,
    position: i64,
    seal_position: Option<i64>,
) -> AppResult<Receipt> {
    if position < 1 {
        return Err(AppError::validation("position", "positions start at 1"));
    }
    let seal = covering_seal(store, community, seal_position.unwrap_or(position)).await?;
    if seal_position.is_some_and(|wanted| wanted != seal.position) {
        return Err(AppError::NotFound(format!(
            "no seal with a tree at position {}",
            seal_position.unwrap_or_default()
        )));
    }
    if seal.position < position {
        return Err(AppError::validation(
            "seal_position",
            "the seal must be at or after the event",
        ));
    }
    let mut proofs = store
        .inclusion_proofs(community, seal.position, &[position])
        .await?;
    let proof = proofs.pop().ok_or(AppError::Internal)?;
    let receipt = Receipt { proof, seal };
    // Never hand out a receipt that does not hold: a stored node gone
    // wrong shows here, not at the resident's.
    check_receipt(&receipt, None).map_err(|what| {
        tracing::error!(%community, position, what, "a receipt made does not hold");
        AppError::Internal
    })?;
    Ok(receipt)
}

/// The extension from the seal at `old_position` to the seal at
/// `new_position`.
pub async fn extension(
    store: &EventStore,
    community: CommunityId,
    old_position: i64,
    new_position: i64,
) -> AppResult<Extension> {
    if old_position < 1 || old_position > new_position {
        return Err(AppError::validation(
            "old_seal_position",
            "must be at least 1 and at most the newer seal's position",
        ));
    }
    let old_seal = sealed_at(store, community, old_position).await?;
    let new_seal = sealed_at(store, community, new_position).await?;
    let proof = store
        .consistency_proof(community, old_position, new_position)
        .await?;
    let extension = Extension {
        proof,
        old_seal,
        new_seal,
    };
    check_extension(&extension, None).map_err(|what| {
        tracing::error!(%community, old_position, new_position, what, "an extension made does not hold");
        AppError::Internal
    })?;
    Ok(extension)
}

/// The seal at exactly `position`, with a tree.
async fn sealed_at(store: &EventStore, community: CommunityId, position: i64) -> AppResult<Seal> {
    let seal = covering_seal(store, community, position).await?;
    if seal.position != position {
        return Err(AppError::NotFound(format!(
            "no seal with a tree at position {position}"
        )));
    }
    Ok(seal)
}

/// The first seal with a tree at or after `position`.
async fn covering_seal(
    store: &EventStore,
    community: CommunityId,
    position: i64,
) -> AppResult<Seal> {
    store
        .first_tree_seal(community, position)
        .await?
        .ok_or_else(|| {
            AppError::NotFound(format!(
                "no seal with a tree covers position {position} yet: the next seal will \
                 (the seal policy, or an admin's sealNow)"
            ))
        })
}

/// Whether a receipt holds: its seal signed (by `trusted_key` when given)
/// over the proof's tree, and its path leading from the event's leaf to
/// that root. The name of what fails, one of [`PROOF_FAILURES`].
pub fn check_receipt(
    receipt: &Receipt,
    trusted_key: Option<&[u8; 32]>,
) -> Result<(), &'static str> {
    let (proof, seal) = (&receipt.proof, &receipt.seal);
    super::seals::check_signature(seal, trusted_key)?;
    if !seal_covers(seal, proof.community_id, proof.tree_size, &proof.tree_root) {
        return Err("seal_disagrees");
    }
    proof.holds().then_some(()).ok_or("proof_invalid")
}

/// Whether an extension holds: both seals signed over the proof's trees,
/// and the path proving the newer tree extends the older.
pub fn check_extension(
    extension: &Extension,
    trusted_key: Option<&[u8; 32]>,
) -> Result<(), &'static str> {
    let proof = &extension.proof;
    for (seal, size, root) in [
        (&extension.old_seal, proof.old_size, &proof.old_root),
        (&extension.new_seal, proof.new_size, &proof.new_root),
    ] {
        super::seals::check_signature(seal, trusted_key)?;
        if !seal_covers(seal, proof.community_id, size, root) {
            return Err("seal_disagrees");
        }
    }
    proof.holds().then_some(()).ok_or("proof_invalid")
}

/// Checks one proof document (a [`Receipt`] or an [`Extension`] as JSON),
/// naming what fails: one of [`PROOF_FAILURES`], or `malformed_document`.
pub fn check_document(line: &str, trusted_key: Option<&[u8; 32]>) -> Result<(), String> {
    let mut value: serde_json::Value =
        serde_json::from_str(line).map_err(|e| format!("malformed_document: {e}"))?;
    for seal in ["seal", "old_seal", "new_seal"] {
        if let Some(seal) = value.get_mut(seal) {
            super::seals::blank_unreadable_signature(seal);
        }
    }
    let checked = if value.get("old_seal").is_some() {
        let extension: Extension =
            serde_json::from_value(value).map_err(|e| format!("malformed_document: {e}"))?;
        check_extension(&extension, trusted_key)
    } else {
        let receipt: Receipt =
            serde_json::from_value(value).map_err(|e| format!("malformed_document: {e}"))?;
        check_receipt(&receipt, trusted_key)
    };
    checked.map_err(str::to_string)
}

fn seal_covers(seal: &Seal, community: CommunityId, size: i64, root: &[u8; 32]) -> bool {
    seal.community_id == community && seal.position == size && seal.tree_root.as_ref() == Some(root)
}

impl crate::services::Services {
    /// [`receipt`], for anyone who may read the community's public side:
    /// it shows hashes only, as the seals do.
    pub async fn receipt(
        &self,
        request: &crate::services::Request,
        community_id: uuid::Uuid,
        position: i64,
        seal_position: Option<i64>,
    ) -> AppResult<Receipt> {
        request.viewer.reader_of(community_id)?;
        receipt(
            self.commands.store(),
            CommunityId::new(community_id),
            position,
            seal_position,
        )
        .await
    }

    /// [`extension`], for anyone who may read the community's public side.
    pub async fn extension(
        &self,
        request: &crate::services::Request,
        community_id: uuid::Uuid,
        old_position: i64,
        new_position: i64,
    ) -> AppResult<Extension> {
        request.viewer.reader_of(community_id)?;
        extension(
            self.commands.store(),
            CommunityId::new(community_id),
            old_position,
            new_position,
        )
        .await
    }
}
