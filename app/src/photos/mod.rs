//! Photos residents and staff upload (docs/PHOTOS.md): made safe and small
//! by [`pipeline`], their bytes kept in an object store ([`PhotoStore`]:
//! a local directory, or an S3-compatible bucket), what the server knows
//! of them in the event store's `photos` table. A report, a resolution or
//! a patrol finding names uploaded photos by id; the content piece listing
//! them carries each photo's SHA-256, so the chain covers their bytes.
//! They are served only to those who may see the report that took them,
//! and erased with it.

pub mod pipeline;
pub mod samples;

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use domain::values::{AttachedPhotos, GeoPoint};
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use sha2::{Digest, Sha256};
use store::{CommunityId, NewPhoto};
use tokio::sync::Semaphore;
use uuid::Uuid;

use crate::caller::Viewer;
use crate::content::{self, Prepared};
use crate::error::{AppError, AppResult};
use crate::ratelimit::{SubmissionLimits, SubmissionRates};
use crate::reports::may_see;
use crate::services::{Request, Services};
use domain::values::Role;

pub use pipeline::{Processed, STORED_MEDIA_TYPE, UPLOAD_BYTES_MAX};

/// Uploads waiting for a processing slot, at most: past it an upload is
/// refused as busy rather than queued without bound.
const WAITING_MAX: usize = 32;

/// Where photo bytes live.
#[derive(Clone)]
pub struct PhotoStore {
    objects: Arc<dyn ObjectStore>,
    /// Where it is, for logs and the start-up line.
    pub describe: String,
}

/// An S3-compatible bucket. Credentials come from the environment
/// (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`), never from a file.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct S3Bucket {
    pub bucket: String,
    /// The service's URL; empty for AWS itself.
    pub endpoint: String,
    pub region: String,
    /// Whether the endpoint may be plain `http` (a bucket on the same
    /// host or network).
    pub allow_http: bool,
    /// Keys given here rather than by the environment (tests); `None`
    /// reads `AWS_ACCESS_KEY_ID` and `AWS_SECRET_ACCESS_KEY`.
    pub keys: Option<(String, String)>,
}

impl PhotoStore {
    /// Kept in this process's memory: for tests and benches.
    pub fn in_memory() -> Self {
        PhotoStore {
            objects: Arc::new(object_store::memory::InMemory::new()),
            describe: "memory".to_string(),
        }
    }

    /// Files under `directory`, made if missing.
    pub fn local(directory: &Path) -> Result<Self, String> {
        std::fs::create_dir_all(directory)
            .map_err(|e| format!("could not make {}: {e}", directory.display()))?;
        let objects = object_store::local::LocalFileSystem::new_with_prefix(directory)
            .map_err(|e| format!("could not use {}: {e}", directory.display()))?;
        Ok(PhotoStore {
            objects: Arc::new(objects),
            describe: format!("directory {}", directory.display()),
        })
    }

    /// An S3-compatible bucket.
    pub fn s3(bucket: &S3Bucket) -> Result<Self, String> {
        let mut builder = object_store::aws::AmazonS3Builder::from_env()
            .with_bucket_name(&bucket.bucket)
            .with_allow_http(bucket.allow_http);
        if !bucket.region.is_empty() {
            builder = builder.with_region(&bucket.region);
        }
        if !bucket.endpoint.is_empty() {
            builder = builder.with_endpoint(&bucket.endpoint);
        }
        if let Some((id, secret)) = &bucket.keys {
            builder = builder
                .with_access_key_id(id)
                .with_secret_access_key(secret);
        }
        let objects = builder
            .build()
            .map_err(|e| format!("the S3 bucket {}: {e}", bucket.bucket))?;
        Ok(PhotoStore {
            objects: Arc::new(objects),
            describe: format!("S3 bucket {}", bucket.bucket),
        })
    }

    fn key(community: CommunityId, photo: Uuid, variant: Variant) -> ObjectPath {
        let name = match variant {
            Variant::Photo => format!("{photo}.jpg"),
            Variant::Thumbnail => format!("{photo}-thumbnail.jpg"),
        };
        ObjectPath::from_iter([community.as_uuid().to_string(), name])
    }

    async fn put(
        &self,
        community: CommunityId,
        photo: Uuid,
        variant: Variant,
        bytes: Vec<u8>,
    ) -> AppResult<()> {
        self.objects
            .put(
                &Self::key(community, photo, variant),
                PutPayload::from(bytes),
            )
            .await
            .map_err(AppError::internal)?;
        Ok(())
    }

    /// The stored bytes; `None` if there are none.
    async fn get(
        &self,
        community: CommunityId,
        photo: Uuid,
        variant: Variant,
    ) -> AppResult<Option<Bytes>> {
        match self
            .objects
            .get(&Self::key(community, photo, variant))
            .await
        {
            Ok(found) => Ok(Some(found.bytes().await.map_err(AppError::internal)?)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(error) => Err(AppError::internal(error)),
        }
    }

    /// Removes a photo's bytes and its thumbnail's; removing what is not
    /// there is not an error (an erasure repeated).
    async fn delete(&self, community: CommunityId, photo: Uuid) -> AppResult<()> {
        for variant in [Variant::Photo, Variant::Thumbnail] {
            match self
                .objects
                .delete(&Self::key(community, photo, variant))
                .await
            {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(error) => return Err(AppError::internal(error)),
            }
        }
        Ok(())
    }
}

/// The photo itself or its thumbnail.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Variant {
    Photo,
    Thumbnail,
}

/// Everything uploads share: where the bytes go, how many are processed
/// at once, how fast each caller may upload.
pub struct Photos {
    pub store: PhotoStore,
    /// One processing slot per core: decoding is CPU-bound.
    work: Arc<Semaphore>,
    waiting: AtomicUsize,
    limits: SubmissionLimits,
}

/// Photos a caller may upload for each report or suggestion they may file.
const PHOTOS_PER_SUBMISSION: u32 = 3;

impl Photos {
    /// Uploads limited like submissions, with room for a few photos each.
    pub fn new(store: PhotoStore, rates: SubmissionRates) -> Self {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        Photos {
            store,
            work: Arc::new(Semaphore::new(cores)),
            waiting: AtomicUsize::new(0),
            limits: SubmissionLimits::new(rates.times(PHOTOS_PER_SUBMISSION)),
        }
    }

    /// Runs the pipeline on a processing slot, off the request threads.
    async fn process(&self, bytes: Bytes) -> AppResult<Processed> {
        if self.waiting.fetch_add(1, Ordering::SeqCst) >= WAITING_MAX {
            self.waiting.fetch_sub(1, Ordering::SeqCst);
            return Err(AppError::Unavailable(
                "too many photos are being processed; try again shortly".into(),
            ));
        }
        let permit = self.work.clone().acquire_owned().await;
        self.waiting.fetch_sub(1, Ordering::SeqCst);
        let permit = permit.map_err(AppError::internal)?;
        tokio::task::spawn_blocking(move || {
            let processed = pipeline::process(&bytes);
            drop(permit);
            processed
        })
        .await
        .map_err(AppError::internal)?
    }
}

/// An upload, stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UploadedPhoto {
    pub photo_id: Uuid,
    pub width: u32,
    pub height: u32,
    pub byte_count: usize,
    /// What was received, by its content: `jpeg`, `png` or `webp`.
    pub received: &'static str,
    /// Where the photo says it was taken, from its EXIF block before that
    /// was stripped: for the uploader's form, never stored.
    pub suggested_location: Option<GeoPoint>,
}

/// Photo bytes for a caller who may see them.
#[derive(Clone, Debug)]
pub struct ServedPhoto {
    pub bytes: Bytes,
    pub media_type: &'static str,
    /// The SHA-256 of the bytes, hex: an entity tag that never changes.
    pub sha256: String,
    /// Whether anyone may see it (its report is not hidden): caches
    /// shared between callers may keep it.
    pub public: bool,
}

fn sha256(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

impl Services {
    /// Stores a photo for a report or a resolution to name: open to
    /// anonymous callers under the anonymous limits (scaled for a few
    /// photos a report).
    pub async fn upload_photo(
        &self,
        request: &Request,
        community_id: Uuid,
        bytes: Bytes,
    ) -> AppResult<UploadedPhoto> {
        let community = CommunityId::new(community_id);
        // Before a budget is counted or a pixel decoded: a community
        // nobody registered costs the caller a lookup, not the server a
        // decode (nor a budget per made-up id).
        if let Viewer::Refused(error) = &request.viewer {
            return Err(error.clone());
        }
        let registered = self.directory.community(&self.commands, community).await?;
        if !registered.registered {
            return Err(AppError::not_found(format!("community {community_id}")));
        }
        match &request.viewer {
            Viewer::Member(_) => {
                let claims = request.viewer.member_of(community_id)?;
                if claims.role == Role::Auditor {
                    return Err(AppError::forbidden("auditors change nothing"));
                }
                self.photos.limits.member(community_id, claims.sub)?;
            }
            Viewer::Refused(error) => return Err(error.clone()),
            Viewer::Anonymous => {
                let address = request.meta.client.as_deref().unwrap_or("-");
                self.photos.limits.anonymous(community_id, address)?;
            }
        }
        let processed = self.photos.process(bytes).await?;
        let photo_id = Uuid::new_v4();
        let record = NewPhoto {
            photo_id,
            community_id: community,
            sha256: sha256(&processed.photo),
            thumbnail_sha256: sha256(&processed.thumbnail),
            width: processed.width,
            height: processed.height,
            byte_count: u32::try_from(processed.photo.len()).map_err(AppError::internal)?,
        };
        let byte_count = processed.photo.len();
        let store = &self.photos.store;
        store
            .put(community, photo_id, Variant::Photo, processed.photo)
            .await?;
        store
            .put(community, photo_id, Variant::Thumbnail, processed.thumbnail)
            .await?;
        if let Err(error) = self.commands.store().insert_photo(&record).await {
            // No row names the bytes: remove them rather than keep what
            // nobody can reach.
            store.delete(community, photo_id).await?;
            return Err(error.into());
        }
        Ok(UploadedPhoto {
            photo_id,
            width: processed.width,
            height: processed.height,
            byte_count,
            received: processed.received,
            suggested_location: processed.suggested_location,
        })
    }

    /// A photo (or its thumbnail) for the caller: only once a report has
    /// taken it, and only to those who may see that report (a hidden
    /// report's to report staff and its reporter). An erased photo is
    /// gone; one the caller may not see is not found, as if it were not
    /// there.
    pub async fn photo(
        &self,
        request: &Request,
        photo_id: Uuid,
        variant: Variant,
    ) -> AppResult<ServedPhoto> {
        let not_found = || AppError::not_found(format!("photo {photo_id}"));
        let gone = || AppError::Gone(format!("photo {photo_id} was erased"));
        let store = self.commands.store();
        let record = store.photo(photo_id).await?.ok_or_else(not_found)?;
        if record.erased_at.is_some() {
            return Err(gone());
        }
        // Taken by a report that is in the read model: a list whose event
        // never landed names a report nobody can find.
        let (_, report) = record.taken_by.ok_or_else(not_found)?;
        let community = record.community_id;
        let row = projections::reports::report(store.pool(), community, report)
            .await?
            .ok_or_else(not_found)?;
        if !may_see(&request.viewer, &row) {
            return Err(not_found());
        }
        let bytes = self
            .photos
            .store
            .get(community, photo_id, variant)
            .await?
            .ok_or_else(|| {
                AppError::internal(format!("photo {photo_id}: its bytes are missing"))
            })?;
        let sha256 = match variant {
            Variant::Photo => record.sha256,
            Variant::Thumbnail => record.thumbnail_sha256,
        };
        Ok(ServedPhoto {
            bytes,
            media_type: STORED_MEDIA_TYPE,
            sha256: hex::encode(sha256),
            public: !row.hidden,
        })
    }

    /// The photo list of a report's submission or resolution: `inputs`
    /// are https links and ids of photos uploaded to the community. The
    /// uploaded ones are taken by `report` before the list's event is
    /// appended; a retry takes them again harmlessly, while another
    /// report naming them is refused. No photos is no list.
    pub(crate) async fn photo_list(
        &self,
        community: CommunityId,
        report: Uuid,
        inputs: &[String],
        seed: Option<[u8; 32]>,
    ) -> AppResult<Option<(Prepared, AttachedPhotos)>> {
        let mut links = Vec::new();
        let mut ids = Vec::new();
        for input in inputs {
            match Uuid::try_parse(input.trim()) {
                Ok(id) if ids.contains(&id) => {
                    return Err(AppError::validation(
                        "photos",
                        format!("{id} is named twice"),
                    ))
                }
                Ok(id) => ids.push(id),
                Err(_) => links.push(input.clone()),
            }
        }
        if ids.is_empty() {
            return content::prepare_photo_list(&links, &[], seed);
        }
        let store = self.commands.store();
        let found = store.photos_in(community, &ids).await?;
        let mut uploaded = Vec::with_capacity(ids.len());
        for id in &ids {
            let record = found.iter().find(|r| r.photo_id == *id).ok_or_else(|| {
                AppError::validation("photos", format!("no photo {id} was uploaded here"))
            })?;
            if record.erased_at.is_some() {
                return Err(AppError::Gone(format!("photo {id} was erased")));
            }
            uploaded.push((*id, record.sha256));
        }
        let Some((prepared, attached)) = content::prepare_photo_list(&links, &uploaded, seed)?
        else {
            return Ok(None);
        };
        let hash = store::ContentHash::parse(prepared.hash.as_str())?;
        let refused = store.take_photos(community, &ids, hash, report).await?;
        if let Some(id) = refused.first() {
            return Err(AppError::conflict(format!(
                "photo {id} belongs to another report or list"
            )));
        }
        Ok(Some((prepared, attached)))
    }

    /// Erases uploaded photos: their rows become tombstones first (so
    /// they answer "gone" at once), then their bytes are removed. A
    /// repeat does it again harmlessly.
    pub(crate) async fn erase_photos(
        &self,
        community: CommunityId,
        photo_ids: &[Uuid],
        by: &str,
        reason: &str,
    ) -> AppResult<()> {
        if photo_ids.is_empty() {
            return Ok(());
        }
        self.commands
            .store()
            .erase_photos(community, photo_ids, by, reason)
            .await?;
        for photo in photo_ids {
            self.photos.store.delete(community, *photo).await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Stores, reads and deletes through the store's interface, as every
    /// caller uses it.
    async fn round_trip(store: &PhotoStore) {
        let community = CommunityId::new(Uuid::new_v4());
        let photo = Uuid::new_v4();
        store
            .put(community, photo, Variant::Photo, b"photo".to_vec())
            .await
            .unwrap();
        store
            .put(community, photo, Variant::Thumbnail, b"thumb".to_vec())
            .await
            .unwrap();
        let got = store
            .get(community, photo, Variant::Thumbnail)
            .await
            .unwrap();
        assert_eq!(got.as_deref(), Some(&b"thumb"[..]));
        let elsewhere = CommunityId::new(Uuid::new_v4());
        assert_eq!(
            store.get(elsewhere, photo, Variant::Photo).await.unwrap(),
            None
        );
        store.delete(community, photo).await.unwrap();
        store.delete(community, photo).await.unwrap();
        for variant in [Variant::Photo, Variant::Thumbnail] {
            assert_eq!(store.get(community, photo, variant).await.unwrap(), None);
        }
    }

    /// An S3-compatible service on this machine: `moto_server` (Python's
    /// `moto[server]`, which `.ci/run` installs), with a bucket made.
    struct LocalS3 {
        child: std::process::Child,
        endpoint: String,
    }

    impl Drop for LocalS3 {
        fn drop(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }

    async fn local_s3(bucket: &str) -> LocalS3 {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let program = std::env::var("MOTO_SERVER").unwrap_or_else(|_| "moto_server".into());
        let child = std::process::Command::new(&program)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("{program}: {e} (pip install 'moto[server]')"));
        let s3 = LocalS3 {
            child,
            endpoint: format!("http://127.0.0.1:{port}"),
        };
        let client = reqwest::Client::new();
        for _ in 0..200 {
            let made = client
                .put(format!("{}/{bucket}", s3.endpoint))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            if made {
                return s3;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        panic!("{program} did not start");
    }

    #[tokio::test]
    async fn an_s3_compatible_bucket_keeps_and_deletes_like_the_local_store() {
        let s3 = local_s3("civic-photos").await;
        let store = PhotoStore::s3(&S3Bucket {
            bucket: "civic-photos".into(),
            endpoint: s3.endpoint.clone(),
            region: "us-east-1".into(),
            allow_http: true,
            keys: Some(("testing".into(), "testing".into())),
        })
        .unwrap();
        round_trip(&store).await;
        round_trip(&PhotoStore::in_memory()).await;
    }

    /// The local store keeps each community's photos in a folder of its
    /// own, and a deletion removes the photo and its thumbnail.
    #[tokio::test]
    async fn the_local_store_keeps_deletes_and_says_what_is_missing() {
        let directory = tempfile::tempdir().unwrap();
        let store = PhotoStore::local(&directory.path().join("photos")).unwrap();
        round_trip(&store).await;
        // Each community's photos in a folder of its own, both variants.
        let community = CommunityId::new(Uuid::new_v4());
        let photo = Uuid::new_v4();
        for variant in [Variant::Photo, Variant::Thumbnail] {
            store
                .put(community, photo, variant, b"bytes".to_vec())
                .await
                .unwrap();
        }
        let folder = directory
            .path()
            .join("photos")
            .join(community.as_uuid().to_string());
        assert_eq!(std::fs::read_dir(&folder).unwrap().count(), 2);
        store.delete(community, photo).await.unwrap();
        assert_eq!(std::fs::read_dir(&folder).unwrap().count(), 0);
    }
}
