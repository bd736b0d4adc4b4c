//! What the server knows of each uploaded photo (docs/PHOTOS.md): its
//! community, the SHA-256 of its stored bytes and thumbnail, its size, the
//! content piece and report that took it, and its tombstone once erased. The
//! bytes themselves live in an object store the application holds; this
//! table never holds them.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::content::{check_erasure, ContentHash};
use crate::error::StoreError;
use crate::store::EventStore;
use crate::types::CommunityId;

/// A photo just uploaded: stored in the object store, taken by no report yet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewPhoto {
    pub photo_id: Uuid,
    pub community_id: CommunityId,
    pub sha256: [u8; 32],
    pub thumbnail_sha256: [u8; 32],
    pub width: u32,
    pub height: u32,
    pub byte_count: u32,
}

/// A photo as the server knows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PhotoRecord {
    pub photo_id: Uuid,
    pub community_id: CommunityId,
    pub sha256: [u8; 32],
    pub thumbnail_sha256: [u8; 32],
    pub width: u32,
    pub height: u32,
    pub uploaded_at: DateTime<Utc>,
    /// The content piece (a report's or a resolution's photo list) and the
    /// report that took it; `None` while no command has named it.
    pub taken_by: Option<(ContentHash, Uuid)>,
    pub erased_at: Option<DateTime<Utc>>,
}

const RECORD_COLUMNS: &str = "photo_id, community_id, sha256, thumbnail_sha256, width, height, \
     uploaded_at, content_hash, report_id, erased_at";

fn bytes32(field: &str, bytes: Vec<u8>) -> Result<[u8; 32], StoreError> {
    bytes
        .try_into()
        .map_err(|_| StoreError::Corrupt(format!("a photo's {field} is not 32 bytes")))
}

fn record(row: &tokio_postgres::Row) -> Result<PhotoRecord, StoreError> {
    let content: Option<Vec<u8>> = row.get(7);
    let report: Option<Uuid> = row.get(8);
    let taken_by = match (content, report) {
        (Some(content), Some(report)) => {
            Some((ContentHash(bytes32("content hash", content)?), report))
        }
        _ => None,
    };
    let width: i32 = row.get(4);
    let height: i32 = row.get(5);
    Ok(PhotoRecord {
        photo_id: row.get(0),
        community_id: CommunityId::new(row.get(1)),
        sha256: bytes32("sha256", row.get(2))?,
        thumbnail_sha256: bytes32("thumbnail sha256", row.get(3))?,
        width: u32::try_from(width).map_err(|_| StoreError::Corrupt("a photo's width".into()))?,
        height: u32::try_from(height)
            .map_err(|_| StoreError::Corrupt("a photo's height".into()))?,
        uploaded_at: row.get(6),
        taken_by,
        erased_at: row.get(9),
    })
}

fn as_i32(field: &'static str, value: u32) -> Result<i32, StoreError> {
    i32::try_from(value).map_err(|_| StoreError::invalid(field, "out of range"))
}

impl EventStore {
    /// Records a photo whose bytes were stored.
    pub async fn insert_photo(&self, photo: &NewPhoto) -> Result<(), StoreError> {
        let client = self.inner.pool.get().await?;
        let statement = client
            .prepare_cached(
                "INSERT INTO photos (photo_id, community_id, sha256, thumbnail_sha256, width, \
                     height, byte_count) \
                 SELECT $1, $2, $3, $4, $5, $6, $7 \
                 WHERE EXISTS (SELECT 1 FROM communities WHERE community_id = $2)",
            )
            .await?;
        let inserted = client
            .execute(
                &statement,
                &[
                    &photo.photo_id,
                    &photo.community_id.as_uuid(),
                    &&photo.sha256[..],
                    &&photo.thumbnail_sha256[..],
                    &as_i32("width", photo.width)?,
                    &as_i32("height", photo.height)?,
                    &as_i32("byte_count", photo.byte_count)?,
                ],
            )
            .await?;
        if inserted == 0 {
            return Err(StoreError::UnknownCommunity(photo.community_id));
        }
        Ok(())
    }

    /// The photo, in whatever community; `None` if it was never uploaded.
    pub async fn photo(&self, photo_id: Uuid) -> Result<Option<PhotoRecord>, StoreError> {
        let client = self.inner.pool.get().await?;
        let statement = client
            .prepare_cached(&format!(
                "SELECT {RECORD_COLUMNS} FROM photos WHERE photo_id = $1"
            ))
            .await?;
        client
            .query_opt(&statement, &[&photo_id])
            .await?
            .as_ref()
            .map(record)
            .transpose()
    }

    /// The community's photos among `photo_ids`, in no order: those never
    /// uploaded there are missing from the answer.
    pub async fn photos_in(
        &self,
        community_id: CommunityId,
        photo_ids: &[Uuid],
    ) -> Result<Vec<PhotoRecord>, StoreError> {
        let client = self.inner.pool.get().await?;
        let statement = client
            .prepare_cached(&format!(
                "SELECT {RECORD_COLUMNS} FROM photos \
                 WHERE community_id = $1 AND photo_id = ANY($2)"
            ))
            .await?;
        let rows = client
            .query(&statement, &[&community_id.as_uuid(), &photo_ids])
            .await?;
        rows.iter().map(record).collect()
    }

    /// Has the content piece `content` of report `report` take the photos:
    /// each must be the community's, not erased, and taken by no other
    /// report. The same report may take them again (a retry, which may
    /// make its list anew) and the newest list is kept. Returns the ids it
    /// could not take; all or none are taken.
    pub async fn take_photos(
        &self,
        community_id: CommunityId,
        photo_ids: &[Uuid],
        content: ContentHash,
        report: Uuid,
    ) -> Result<Vec<Uuid>, StoreError> {
        let mut client = self.inner.pool.get().await?;
        let transaction = client.transaction().await?;
        let taken: Vec<Uuid> = transaction
            .query(
                "UPDATE photos SET content_hash = $3, report_id = $4 \
                 WHERE community_id = $1 AND photo_id = ANY($2) AND erased_at IS NULL \
                     AND (report_id IS NULL OR report_id = $4) \
                 RETURNING photo_id",
                &[
                    &community_id.as_uuid(),
                    &photo_ids,
                    &&content.0[..],
                    &report,
                ],
            )
            .await?
            .iter()
            .map(|row| row.get(0))
            .collect();
        let refused: Vec<Uuid> = photo_ids
            .iter()
            .filter(|id| !taken.contains(id))
            .copied()
            .collect();
        if refused.is_empty() {
            transaction.commit().await?;
        }
        Ok(refused)
    }

    /// Marks the photos erased, keeping who, when and why; the first
    /// tombstone stays.
    pub async fn erase_photos(
        &self,
        community_id: CommunityId,
        photo_ids: &[Uuid],
        erased_by: &str,
        reason: &str,
    ) -> Result<(), StoreError> {
        check_erasure(erased_by, reason)?;
        let client = self.inner.pool.get().await?;
        client
            .execute(
                "UPDATE photos SET erased_at = now(), erased_by = $3, erased_reason = $4 \
                 WHERE community_id = $1 AND photo_id = ANY($2) AND erased_at IS NULL",
                &[&community_id.as_uuid(), &photo_ids, &erased_by, &reason],
            )
            .await?;
        Ok(())
    }
}
