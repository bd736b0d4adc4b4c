//! Sealing: at an interval (every N events or T minutes), the server signs
//! the head of each community's chain, and the root of its Merkle tree
//! there, with its Ed25519 key and keeps the seal. Checking a seal needs only the seal, the log and the public key.

use std::time::Duration;

use chrono::Utc;
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};
use store::{CommunityId, EventStore, Seal, StoreError};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use projections::stalls::Stalls;

/// When to seal a community again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SealPolicy {
    pub every_events: i64,
    pub every: Duration,
}

impl Default for SealPolicy {
    fn default() -> Self {
        SealPolicy {
            every_events: 1_000,
            every: Duration::from_secs(15 * 60),
        }
    }
}

#[derive(Clone)]
pub struct Sealer {
    store: EventStore,
    key: SigningKey,
    policy: SealPolicy,
    stalls: Stalls,
}

pub const PROCESS: &str = "sealer";
/// The first pause before a community it is stuck in is tried again.
const STUCK_DELAY: Duration = Duration::from_secs(60);

/// The signing key a secret seeds.
pub fn signing_key(secret: &[u8]) -> SigningKey {
    SigningKey::from_bytes(&Sha256::digest(secret).into())
}

impl Sealer {
    pub fn new(store: EventStore, secret: &[u8], policy: SealPolicy) -> Self {
        Sealer {
            store,
            key: signing_key(secret),
            policy,
            stalls: Stalls::default(),
        }
    }

    /// Notes where it is stuck in `stalls` (the server shares one).
    pub fn with_stalls(self, stalls: Stalls) -> Self {
        Sealer { stalls, ..self }
    }

    pub fn public_key(&self) -> [u8; 32] {
        self.key.verifying_key().to_bytes()
    }

    /// Seals every community whose head moved far enough or long enough
    /// ago; returns how many it sealed.
    pub async fn tick(&self) -> Result<usize, StoreError> {
        let sealed = self
            .stalls
            .each_community(
                PROCESS,
                self.store.communities().await?,
                STUCK_DELAY,
                |community| self.tick_community(community),
            )
            .await;
        Ok(sealed.into_iter().filter(|sealed| *sealed).count())
    }

    /// Seals one community if it is due; true when it sealed.
    async fn tick_community(&self, community: CommunityId) -> Result<bool, StoreError> {
        {
            let head = self.store.head(community).await?;
            if head.position == 0 {
                return Ok(false);
            }
            let due = match self.store.latest_seal(community).await? {
                None => true,
                Some(last) if last.position >= head.position => false,
                Some(last) => {
                    let age = Utc::now() - last.sealed_at;
                    head.position - last.position >= self.policy.every_events
                        || age.to_std().is_ok_and(|age| age >= self.policy.every)
                }
            };
            if due {
                self.seal(community, head.position, head.hash).await?;
            }
            Ok(due)
        }
    }

    pub async fn seal(
        &self,
        community: CommunityId,
        position: i64,
        hash: [u8; 32],
    ) -> Result<Seal, StoreError> {
        // Microseconds, as PostgreSQL keeps them and the message shows them.
        let sealed_at = chrono::DateTime::from_timestamp_micros(Utc::now().timestamp_micros())
            .unwrap_or_default();
        // The tree of the sealed events, whatever was appended since.
        let tree_root = self.store.tree_root(community, position).await?;
        let message = Seal::message(community, position, &hash, Some(&tree_root), sealed_at);
        let seal = Seal {
            community_id: community,
            position,
            hash,
            tree_root: Some(tree_root),
            sealed_at,
            public_key: self.public_key(),
            signature: self.key.sign(&message).to_bytes().to_vec(),
        };
        self.store.insert_seal(&seal).await?;
        Ok(seal)
    }

    pub fn spawn(self, interval: Duration, mut shutdown: watch::Receiver<bool>) -> JoinHandle<()> {
        tokio::spawn(async move {
            while !*shutdown.borrow() {
                if let Err(error) = self.tick().await {
                    tracing::error!(%error, "sealing failed; retrying next tick");
                }
                tokio::select! {
                    _ = tokio::time::sleep(interval) => {}
                    _ = shutdown.changed() => {}
                }
            }
        })
    }
}

/// Why a seal does not hold, if it does not: its signature, or a key that
/// is not the trusted one.
pub fn check_signature(seal: &Seal, trusted: Option<&[u8; 32]>) -> Result<(), &'static str> {
    if trusted.is_some_and(|trusted| *trusted != seal.public_key) {
        return Err("seal_untrusted_key");
    }
    let key = VerifyingKey::from_bytes(&seal.public_key).map_err(|_| "seal_signature_invalid")?;
    let signature = Signature::from_slice(&seal.signature).map_err(|_| "seal_signature_invalid")?;
    key.verify_strict(&seal.signed_message(), &signature)
        .map_err(|_| "seal_signature_invalid")
}

/// A seal as written (an export's line, a proof document's member) with a
/// missing or unreadable signature made empty: such a seal is one whose
/// signature does not hold (`seal_signature_invalid`), not a line that
/// cannot be read.
pub(crate) fn blank_unreadable_signature(seal: &mut serde_json::Value) {
    let readable = seal["signature"]
        .as_str()
        .is_some_and(|text| hex::decode(text).is_ok());
    if !readable && seal.is_object() {
        seal["signature"] = "".into();
    }
}

impl crate::services::Services {
    /// Seals the community's chain head now, for its admin (before an
    /// audit, after an incident): the seal at the head, or the one already
    /// there. An empty log has nothing to seal.
    pub async fn seal_now(
        &self,
        request: &crate::services::Request,
        community_id: uuid::Uuid,
    ) -> crate::error::AppResult<Seal> {
        request
            .viewer
            .with_role(community_id, &[domain::values::Role::Admin])?;
        let community = CommunityId::new(community_id);
        let store = self.commands.store();
        let head = store.head(community).await?;
        if head.position == 0 {
            return Err(crate::error::AppError::validation(
                "community",
                "its log is empty: nothing to seal",
            ));
        }
        if let Some(last) = store.latest_seal(community).await? {
            if last.position >= head.position {
                return Ok(last);
            }
        }
        Ok(self
            .sealer
            .seal(community, head.position, head.hash)
            .await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The worked example of docs/AUDIT.md, recomputed on every test run.
    #[test]
    fn the_documented_seal_example_holds() {
        let key = signing_key(b"civic-ledger example seal key");
        let community = CommunityId::new(
            uuid::Uuid::parse_str("3b1f8e2a-5c4d-4e6f-8a9b-0c1d2e3f4a5b").unwrap(),
        );
        let hash: [u8; 32] =
            hex::decode("021b8d3bdbd4653c37d486288a81fe03b086f1fda9a11168113879875f458207")
                .unwrap()
                .try_into()
                .unwrap();
        let sealed_at = chrono::DateTime::parse_from_rfc3339("2026-11-23T08:30:01Z")
            .unwrap()
            .with_timezone(&Utc);
        // The tree of one event is its leaf.
        let tree_root = store::merkle::leaf_hash(&hash);
        assert_eq!(
            hex::encode(tree_root),
            "57391a413ce777b8131b2dc846f71662f387b993e00b525468696f00d0783f2d"
        );
        let message = Seal::message(community, 1, &hash, Some(&tree_root), sealed_at);
        assert_eq!(
            String::from_utf8(message.clone()).unwrap(),
            "civic-ledger seal v2\n3b1f8e2a-5c4d-4e6f-8a9b-0c1d2e3f4a5b\n1\n\
             021b8d3bdbd4653c37d486288a81fe03b086f1fda9a11168113879875f458207\n\
             57391a413ce777b8131b2dc846f71662f387b993e00b525468696f00d0783f2d\n\
             2026-11-23T08:30:01.000000Z\n"
        );
        let seal = Seal {
            community_id: community,
            position: 1,
            hash,
            tree_root: Some(tree_root),
            sealed_at,
            public_key: key.verifying_key().to_bytes(),
            signature: key.sign(&message).to_bytes().to_vec(),
        };
        assert_eq!(
            hex::encode(seal.public_key),
            "2dfa6fc2d7d779fb22c91e1c6ce93f9c6369f9d08ec34a59a2cfa2027732727a"
        );
        assert_eq!(
            hex::encode(&seal.signature),
            "8b62801e9b0fc8ebf151cc822589245c4ed252cdeed81607140b90df49eeab24\
             036b9ca635c9e749fa4bee38cab55086b58cbe4edeecd4d0a37b490ee4758e0f"
        );
        assert_eq!(check_signature(&seal, Some(&seal.public_key)), Ok(()));
        let mut forged = seal.clone();
        forged.position = 2;
        assert_eq!(
            check_signature(&forged, None),
            Err("seal_signature_invalid")
        );
    }
}
