//! What residents type or attach, kept beside the log (docs/DESIGN.md §5). Each
//! piece is stored with a random salt, so its hash in the log cannot be
//! matched against guessed texts, and two residents writing the same words
//! get separate pieces (erasing one leaves the other).

use domain::values::{AttachedPhotos, ContentHash, Photos, Text};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use store::{CommunityId, Content, EventStore};
use uuid::Uuid;

use domain::erasure::{Erasure, ErasureCommand};

use crate::commands::RequestMeta;
use crate::error::{AppError, AppResult};
use crate::services::Services;

const MEDIA_TYPE: &str = "application/json";

#[derive(Serialize, Deserialize)]
struct Stored {
    salt: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    text: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    photos: Vec<String>,
    /// Uploaded photos, each with the SHA-256 of its stored bytes: the
    /// list's hash is in the chain, so the bytes are too.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    uploaded: Vec<UploadedRef>,
}

#[derive(Serialize, Deserialize)]
struct UploadedRef {
    photo: Uuid,
    sha256: String,
}

/// Random, or from `seed` when a retried request must store the same bytes.
fn salt(seed: Option<[u8; 32]>) -> String {
    let mut salt = [0_u8; 16];
    match seed {
        Some(seed) => salt.copy_from_slice(&seed[..16]),
        None => rand::thread_rng().fill_bytes(&mut salt),
    }
    hex::encode(salt)
}

/// A piece of content ready to store: validated, its hash known, so a
/// command can be decided before anything is stored.
#[derive(Clone, Debug)]
pub struct Prepared {
    pub hash: ContentHash,
    body: Vec<u8>,
}

fn prepare(stored: &Stored) -> AppResult<Prepared> {
    let body = serde_json::to_vec(stored).map_err(AppError::internal)?;
    let hash = ContentHash::parse(&store::ContentHash::of(&body).to_hex())?;
    Ok(Prepared { hash, body })
}

/// Validates a text and prepares it for storing.
pub fn prepare_text(text: &str, seed: Option<[u8; 32]>) -> AppResult<Prepared> {
    let text = Text::parse(text)?;
    prepare(&Stored {
        salt: salt(seed),
        text: Some(text.as_str().to_string()),
        photos: Vec::new(),
        uploaded: Vec::new(),
    })
}

/// Validates a photo list (https links, and uploaded photos with the
/// SHA-256 of their bytes) and prepares it; an empty list is no content.
pub(crate) fn prepare_photo_list(
    urls: &[String],
    uploaded: &[(Uuid, [u8; 32])],
    seed: Option<[u8; 32]>,
) -> AppResult<Option<(Prepared, AttachedPhotos)>> {
    let refs: Vec<&str> = urls.iter().map(String::as_str).collect();
    let photos = Photos::parse(&refs)?;
    let count = photos.urls().len() + uploaded.len();
    if count == 0 {
        return Ok(None);
    }
    let prepared = prepare(&Stored {
        salt: salt(seed),
        text: None,
        photos: photos
            .urls()
            .iter()
            .map(|u| u.as_str().to_string())
            .collect(),
        uploaded: uploaded
            .iter()
            .map(|(photo, sha256)| UploadedRef {
                photo: *photo,
                sha256: hex::encode(sha256),
            })
            .collect(),
    })?;
    let attached = AttachedPhotos::counted(prepared.hash.clone(), count)?;
    Ok(Some((prepared, attached)))
}

impl Prepared {
    /// The append that names this piece carries it: stored with its events.
    pub fn carried_by(&self, request: store::AppendRequest) -> store::AppendRequest {
        request.with_content(MEDIA_TYPE, self.body.clone())
    }
}

async fn get(store: &EventStore, community: CommunityId, hash: &str) -> AppResult<Option<Stored>> {
    let hash = store::ContentHash::parse(hash)?;
    match store.get_content(community, hash).await {
        Ok(Content::Present { body, .. }) => Ok(Some(
            serde_json::from_slice(&body).map_err(AppError::internal)?,
        )),
        Ok(Content::Erased(_)) => Ok(None),
        Err(store::StoreError::ContentNotFound(_)) => Ok(None),
        Err(error) => Err(error.into()),
    }
}

/// A stored text; `None` once erased.
pub async fn text_of(
    store: &EventStore,
    community: CommunityId,
    hash: &str,
) -> AppResult<Option<String>> {
    Ok(get(store, community, hash).await?.and_then(|s| s.text))
}

/// A stored photo list: its links, then where each uploaded photo is
/// served (`/photos/{id}`); empty once erased.
pub async fn photos_of(
    store: &EventStore,
    community: CommunityId,
    hash: &str,
) -> AppResult<Vec<String>> {
    Ok(get(store, community, hash)
        .await?
        .map(|s| {
            let mut photos = s.photos;
            photos.extend(s.uploaded.iter().map(|u| format!("/photos/{}", u.photo)));
            photos
        })
        .unwrap_or_default())
}

/// A piece of content exactly as stored: the bytes whose SHA-256 the
/// events carry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StoredPiece {
    /// The JSON text hashed (`{"salt":…,"text":…}` and so on).
    Present(String),
    /// Erased: who, when, why.
    Erased(store::Tombstone),
}

impl Services {
    /// A piece of content exactly as stored, salt included, for the
    /// community's auditors and admins: with it anyone can check the hash
    /// an event carries (docs/AUDIT.md, "Content beside the log").
    pub async fn stored_piece(
        &self,
        request: &crate::services::Request,
        community_id: uuid::Uuid,
        hash: &str,
    ) -> AppResult<Option<StoredPiece>> {
        request.viewer.with_role(
            community_id,
            &[domain::values::Role::Auditor, domain::values::Role::Admin],
        )?;
        let hash = store::ContentHash::parse(hash)?;
        let community = CommunityId::new(community_id);
        match self.commands.store().get_content(community, hash).await {
            Ok(Content::Present { body, .. }) => Ok(Some(StoredPiece::Present(
                String::from_utf8(body).map_err(AppError::internal)?,
            ))),
            Ok(Content::Erased(tombstone)) => Ok(Some(StoredPiece::Erased(tombstone))),
            Err(store::StoreError::ContentNotFound(_)) => Ok(None),
            Err(error) => Err(error.into()),
        }
    }

    /// Removes a piece for good (a redaction or an erasure), and the
    /// uploaded photos it lists with it: those first, so that a failure
    /// half way leaves the list to find them again when it is repeated.
    /// Every erasure of content goes through here, and each is first
    /// recorded in the chain (`ContentErased`: what, by whom, why), so the
    /// fact stays under the seals when the content goes. True when there
    /// was such a piece (erased now or before).
    pub(crate) async fn erase_content(
        &self,
        meta: &RequestMeta,
        community: CommunityId,
        hash: &ContentHash,
        by: &str,
        reason: &str,
    ) -> AppResult<bool> {
        let store = self.commands.store();
        let key = store::ContentHash::parse(hash.as_str())?;
        // One read: whether there is such a piece, and what it lists.
        let photos: Vec<Uuid> = match store.get_content(community, key).await {
            Ok(Content::Present { body, .. }) => {
                let stored: Stored = serde_json::from_slice(&body).map_err(AppError::internal)?;
                stored.uploaded.iter().map(|u| u.photo).collect()
            }
            Ok(Content::Erased(_)) => Vec::new(),
            Err(store::StoreError::ContentNotFound(_)) => return Ok(false),
            Err(error) => return Err(error.into()),
        };
        self.record_erasure(meta, community, hash, by, reason)
            .await?;
        self.erase_photos(community, &photos, by, reason).await?;
        match store.erase_content(community, key, by, reason).await {
            Ok(_) => Ok(true),
            Err(store::StoreError::ContentNotFound(_)) => Ok(false),
            Err(error) => Err(error.into()),
        }
    }

    /// Appends `ContentErased` for the piece, once: a repeat finds it
    /// recorded (the stream is the piece's own). The append carries the
    /// request's caller but not its idempotency key, which names the
    /// request that asked for the erasure (a redaction's own event).
    async fn record_erasure(
        &self,
        meta: &RequestMeta,
        community: CommunityId,
        hash: &ContentHash,
        by: &str,
        reason: &str,
    ) -> AppResult<()> {
        let meta = RequestMeta {
            client_key: None,
            idempotency: None,
            setup_version: None,
            ..meta.clone()
        };
        let at = self.commands.clock().now();
        let recorded = self
            .commands
            .execute::<Erasure>(
                community,
                &domain::streams::erasure(hash.as_str()),
                &meta,
                &[],
                |_| {
                    Ok(ErasureCommand::Record {
                        content: hash.clone(),
                        by: by.to_string(),
                        reason: reason.to_string(),
                        at,
                    })
                },
            )
            .await;
        match recorded {
            // Recorded before: a repeated erasure.
            Ok(_) | Err(AppError::Conflict(_)) => Ok(()),
            Err(error) => Err(error),
        }
    }
}
