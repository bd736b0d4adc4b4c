//! Content beside the log (docs/DESIGN.md §5): what residents type or attach is kept
//! here under its SHA-256, and events carry only the hash. Erasing removes the
//! body and leaves a tombstone; the log and its hash chain are untouched.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::canonical::{check_text, sha256};
use crate::error::StoreError;
use crate::limits;
use crate::store::EventStore;
use crate::types::CommunityId;

/// The SHA-256 of a piece of content, shown as 64 lowercase hex digits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ContentHash(#[serde(with = "crate::types::hex_bytes")] pub(crate) [u8; 32]);

impl ContentHash {
    pub fn of(body: &[u8]) -> Self {
        ContentHash(sha256(body))
    }

    pub fn parse(text: &str) -> Result<Self, StoreError> {
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(text, &mut bytes)
            .map_err(|_| StoreError::invalid("content_hash", "must be 64 hex digits"))?;
        Ok(ContentHash(bytes))
    }

    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl std::fmt::Display for ContentHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.to_hex())
    }
}

/// Who erased a piece of content, when and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tombstone {
    pub erased_at: DateTime<Utc>,
    pub erased_by: String,
    pub reason: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Content {
    Present { media_type: String, body: Vec<u8> },
    Erased(Tombstone),
}

/// Whether `body` of `media_type` may be stored: the bounds of every
/// content row, whether put alone or carried by an append.
pub(crate) fn check_content(media_type: &str, body: &[u8]) -> Result<(), StoreError> {
    if body.len() > limits::CONTENT_BYTES_MAX {
        return Err(StoreError::invalid(
            "content",
            format!(
                "{} bytes, at most {}",
                body.len(),
                limits::CONTENT_BYTES_MAX
            ),
        ));
    }
    if media_type.is_empty() || media_type.len() > limits::MEDIA_TYPE_BYTES_MAX {
        return Err(StoreError::invalid("media_type", "must be 1 to 100 bytes"));
    }
    check_text("media_type", media_type)?;
    Ok(())
}

/// Whether an erasure's who and why may be kept with its tombstone: the
/// bounds of every erasure, of content and of photos alike.
pub(crate) fn check_erasure(erased_by: &str, reason: &str) -> Result<(), StoreError> {
    if erased_by.is_empty() || erased_by.len() > limits::STREAM_ID_BYTES_MAX {
        return Err(StoreError::invalid("erased_by", "must be 1 to 200 bytes"));
    }
    if reason.trim().is_empty() || reason.len() > limits::ERASURE_REASON_BYTES_MAX {
        return Err(StoreError::invalid("reason", "must be 1 to 1000 bytes"));
    }
    check_text("erased_by", erased_by)?;
    check_text("reason", reason)
}

impl EventStore {
    /// Stores content and returns its hash; storing the same bytes twice is
    /// harmless and returns the same hash.
    pub async fn put_content(
        &self,
        community_id: CommunityId,
        media_type: &str,
        body: &[u8],
    ) -> Result<ContentHash, StoreError> {
        check_content(media_type, body)?;
        let hash = ContentHash::of(body);
        let client = self.inner.pool.get().await?;
        // One round trip on a cached statement: whether the community is
        // known, and the row put if it is. An erased hash stays erased:
        // putting the same bytes again must not bring back what an erasure
        // removed (the insert does nothing on a hash already there).
        let statement = client
            .prepare_cached(
                "WITH known AS (SELECT 1 FROM communities WHERE community_id = $1), \
                 put AS (INSERT INTO contents (community_id, content_hash, media_type, body) \
                     SELECT $1, $2, $3, $4 FROM known ON CONFLICT DO NOTHING RETURNING 1) \
                 SELECT EXISTS (SELECT 1 FROM known)",
            )
            .await?;
        let community_known: bool = client
            .query_one(
                &statement,
                &[&community_id.as_uuid(), &&hash.0[..], &media_type, &body],
            )
            .await?
            .get(0);
        if !community_known {
            return Err(StoreError::UnknownCommunity(community_id));
        }
        Ok(hash)
    }

    pub async fn get_content(
        &self,
        community_id: CommunityId,
        hash: ContentHash,
    ) -> Result<Content, StoreError> {
        let client = self.inner.pool.get().await?;
        let statement = client
            .prepare_cached(
                "SELECT media_type, body, erased_at, erased_by, erased_reason FROM contents \
                 WHERE community_id = $1 AND content_hash = $2",
            )
            .await?;
        let row = client
            .query_opt(&statement, &[&community_id.as_uuid(), &&hash.0[..]])
            .await?
            .ok_or_else(|| StoreError::ContentNotFound(hash.to_hex()))?;
        let body: Option<Vec<u8>> = row.get(1);
        Ok(match body {
            Some(body) => Content::Present {
                media_type: row.get(0),
                body,
            },
            None => Content::Erased(Tombstone {
                erased_at: row.get(2),
                erased_by: row.get(3),
                reason: row.get(4),
            }),
        })
    }

    /// Removes the body of a piece of content for good, keeping who, when and
    /// why. Erasing twice keeps the first tombstone.
    pub async fn erase_content(
        &self,
        community_id: CommunityId,
        hash: ContentHash,
        erased_by: &str,
        reason: &str,
    ) -> Result<Tombstone, StoreError> {
        check_erasure(erased_by, reason)?;
        let client = self.inner.pool.get().await?;
        client
            .execute(
                "UPDATE contents SET body = NULL, erased_at = now(), erased_by = $3, \
                     erased_reason = $4 \
                 WHERE community_id = $1 AND content_hash = $2 AND body IS NOT NULL",
                &[&community_id.as_uuid(), &&hash.0[..], &erased_by, &reason],
            )
            .await?;
        match self.get_content(community_id, hash).await? {
            Content::Erased(tombstone) => Ok(tombstone),
            Content::Present { .. } => Err(StoreError::Corrupt(format!(
                "content {hash} is still present after its erasure"
            ))),
        }
    }

    /// Every erased piece of a community's content with its tombstone, in
    /// the order they were erased (the export lists them).
    pub async fn erased_contents(
        &self,
        community_id: CommunityId,
    ) -> Result<Vec<(ContentHash, Tombstone)>, StoreError> {
        let client = self.inner.pool.get().await?;
        let rows = client
            .query(
                "SELECT content_hash, erased_at, erased_by, erased_reason FROM contents \
                 WHERE community_id = $1 AND erased_at IS NOT NULL \
                 ORDER BY erased_at, content_hash",
                &[&community_id.as_uuid()],
            )
            .await?;
        rows.iter()
            .map(|row| {
                let hash: Vec<u8> = row.get(0);
                let hash: [u8; 32] = hash
                    .try_into()
                    .map_err(|_| StoreError::Corrupt("a content hash is not 32 bytes".into()))?;
                Ok((
                    ContentHash(hash),
                    Tombstone {
                        erased_at: row.get(1),
                        erased_by: row.get::<_, Option<String>>(2).unwrap_or_default(),
                        reason: row.get::<_, Option<String>>(3).unwrap_or_default(),
                    },
                ))
            })
            .collect()
    }
}
