//! Seals: signed statements of a community's chain head, kept beside the
//! log. The store keeps and reads them; signing is the server's.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::canonical::timestamp_text;
use crate::error::StoreError;
use crate::store::EventStore;
use crate::types::{hex_bytes, CommunityId};

/// Seals read at most per call.
const SEALS_PER_READ_MAX: i64 = 10_000;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Seal {
    pub community_id: CommunityId,
    pub position: i64,
    #[serde(with = "hex_bytes")]
    pub hash: [u8; 32],
    /// The root of the log's Merkle tree of `position` events (message
    /// v2); seals made before the tree have none (v1).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "crate::types::hex_option"
    )]
    pub tree_root: Option<[u8; 32]>,
    pub sealed_at: DateTime<Utc>,
    #[serde(with = "hex_bytes")]
    pub public_key: [u8; 32],
    #[serde(with = "hex_vec")]
    pub signature: Vec<u8>,
}

impl Seal {
    /// The bytes signed (docs/AUDIT.md): lines of UTF-8, each ending in a
    /// line feed. With a tree root (v2), six: the version, the community,
    /// the position (also the tree's size), the chain's hash, the tree's
    /// root, the time. Without (v1, seals made before the tree), five.
    pub fn message(
        community: CommunityId,
        position: i64,
        hash: &[u8; 32],
        tree_root: Option<&[u8; 32]>,
        sealed_at: DateTime<Utc>,
    ) -> Vec<u8> {
        let (version, root_line) = match tree_root {
            Some(root) => ("v2", format!("{}\n", hex::encode(root))),
            None => ("v1", String::new()),
        };
        format!(
            "civic-ledger seal {version}\n{}\n{position}\n{}\n{root_line}{}\n",
            community.as_uuid(),
            hex::encode(hash),
            timestamp_text(sealed_at)
        )
        .into_bytes()
    }

    pub fn signed_message(&self) -> Vec<u8> {
        Seal::message(
            self.community_id,
            self.position,
            &self.hash,
            self.tree_root.as_ref(),
            self.sealed_at,
        )
    }
}

impl EventStore {
    pub async fn insert_seal(&self, seal: &Seal) -> Result<(), StoreError> {
        let client = self.pool().get().await?;
        client
            .execute(
                "INSERT INTO seals (community_id, position, hash, sealed_at, public_key, \
                 signature, tree_root) VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING",
                &[
                    &seal.community_id.as_uuid(),
                    &seal.position,
                    &&seal.hash[..],
                    &seal.sealed_at,
                    &&seal.public_key[..],
                    &seal.signature,
                    &seal.tree_root.as_ref().map(|root| &root[..]),
                ],
            )
            .await?;
        Ok(())
    }

    /// A community's seals in position order, from `from_position` on.
    pub async fn seals(
        &self,
        community_id: CommunityId,
        from_position: i64,
        limit: i64,
    ) -> Result<Vec<Seal>, StoreError> {
        let client = self.pool().get().await?;
        let rows = client
            .query(
                "SELECT position, hash, sealed_at, public_key, signature, tree_root FROM seals \
                 WHERE community_id = $1 AND position >= $2 ORDER BY position LIMIT $3",
                &[
                    &community_id.as_uuid(),
                    &from_position,
                    &limit.clamp(1, SEALS_PER_READ_MAX),
                ],
            )
            .await?;
        rows.iter()
            .map(|row| seal_of_row(community_id, row))
            .collect()
    }

    /// The first seal at or after `from_position` that signs a tree root
    /// (seals made before the tree sign none).
    pub async fn first_tree_seal(
        &self,
        community_id: CommunityId,
        from_position: i64,
    ) -> Result<Option<Seal>, StoreError> {
        let client = self.pool().get().await?;
        let row = client
            .query_opt(
                "SELECT position, hash, sealed_at, public_key, signature, tree_root FROM seals \
                 WHERE community_id = $1 AND position >= $2 AND tree_root IS NOT NULL \
                 ORDER BY position LIMIT 1",
                &[&community_id.as_uuid(), &from_position],
            )
            .await?;
        row.map(|row| seal_of_row(community_id, &row)).transpose()
    }

    /// The newest seal of a community.
    pub async fn latest_seal(&self, community_id: CommunityId) -> Result<Option<Seal>, StoreError> {
        let client = self.pool().get().await?;
        let row = client
            .query_opt(
                "SELECT position FROM seals WHERE community_id = $1 ORDER BY position DESC LIMIT 1",
                &[&community_id.as_uuid()],
            )
            .await?;
        match row {
            Some(row) => Ok(self.seals(community_id, row.get(0), 1).await?.pop()),
            None => Ok(None),
        }
    }
}

/// A seal from its row: position, hash, sealed_at, public_key, signature,
/// tree_root.
fn seal_of_row(community_id: CommunityId, row: &tokio_postgres::Row) -> Result<Seal, StoreError> {
    let bytes = |index: usize| -> Result<[u8; 32], StoreError> {
        let value: Vec<u8> = row.get(index);
        value
            .try_into()
            .map_err(|_| StoreError::Corrupt("a seal's key or hash is not 32 bytes".into()))
    };
    let has_root = row.get::<_, Option<&[u8]>>(5).is_some();
    Ok(Seal {
        community_id,
        position: row.get(0),
        hash: bytes(1)?,
        sealed_at: row.get(2),
        public_key: bytes(3)?,
        signature: row.get(4),
        tree_root: if has_root { Some(bytes(5)?) } else { None },
    })
}

mod hex_vec {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(bytes))
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        hex::decode(String::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}
