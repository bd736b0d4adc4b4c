//! Erasing a resident (docs/DESIGN.md §5): their profile and every piece of content
//! they typed or attached go; the log, its hashes, its seals and every total
//! stay, and they remain a pseudonymous id. Each erased piece keeps a
//! tombstone (when, by whom, why), which the export lists.

use domain::values::Role;
use serde::Serialize;
use serde_json::Value;
use store::{CommunityId, EventStore, RecordedEvent, StoreError, TrailFilter};
use uuid::Uuid;

use crate::error::AppResult;
use crate::services::{Request, Services};

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Erasure {
    pub contents_erased: usize,
    pub profile_erased: bool,
}

impl Services {
    /// Erases what `resident` wrote or attached in `community` on their
    /// request, for the community's admin: the content their own events
    /// name and the submission of every report they claimed (photos they
    /// uploaded with it too), then their profile.
    pub async fn erase_resident(
        &self,
        request: &Request,
        community_id: Uuid,
        resident: Uuid,
        reason: &str,
    ) -> AppResult<Erasure> {
        let claims = request.viewer.with_role(community_id, &[Role::Admin])?;
        let reason =
            domain::values::plain_text("reason", reason, domain::values::Lines::Many, 500)?;
        let erased_by = format!("admin:{}", claims.sub);
        let meta = crate::commands::RequestMeta {
            actor: Some(claims.actor()),
            ..request.meta.clone()
        };
        let community = CommunityId::new(community_id);
        let store = self.commands.store();
        let mut contents_erased = 0;
        for hash in contents_of(store, community, resident).await? {
            // Not content (a claim secret's hash, a client's) or never
            // stored: nothing to erase.
            if self
                .erase_content(&meta, community, &hash, &erased_by, &reason)
                .await?
            {
                contents_erased += 1;
            }
        }
        let profile_erased = store.erase_profile(community, resident).await?;
        Ok(Erasure {
            contents_erased,
            profile_erased,
        })
    }
}

/// Every content hash the resident's own events name, and those of the
/// submission of every report they claimed.
async fn contents_of(
    store: &EventStore,
    community: CommunityId,
    resident: Uuid,
) -> Result<Vec<domain::values::ContentHash>, StoreError> {
    let mut hashes = Vec::new();
    let filter = TrailFilter {
        actor: Some(resident.to_string()),
        ..TrailFilter::default()
    };
    let mut after = 0;
    loop {
        let page = store
            .audit_trail(community, &filter, after, store::trail::TRAIL_PAGE_MAX)
            .await?;
        let Some(last) = page.last() else { break };
        after = last.position;
        for event in &page {
            collect_hashes(&event.payload_value()?, &mut hashes);
            if event.event_type == "ReportClaimed" {
                if let Some(submitted) = first_event(store, community, &event.stream_id).await? {
                    collect_hashes(&submitted.payload_value()?, &mut hashes);
                }
            }
        }
    }
    hashes.sort();
    hashes.dedup();
    Ok(hashes
        .iter()
        .filter_map(|hash| domain::values::ContentHash::parse(hash).ok())
        .collect())
}

async fn first_event(
    store: &EventStore,
    community: CommunityId,
    stream_id: &str,
) -> Result<Option<RecordedEvent>, StoreError> {
    Ok(store.read_stream(community, stream_id, 1, 1).await?.pop())
}

/// Every string of 64 hex digits in a payload: content is named by its
/// SHA-256.
fn collect_hashes(value: &Value, into: &mut Vec<String>) {
    match value {
        Value::String(text) if text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit()) => {
            into.push(text.to_ascii_lowercase())
        }
        Value::Array(items) => items.iter().for_each(|item| collect_hashes(item, into)),
        Value::Object(fields) => fields
            .values()
            .for_each(|field| collect_hashes(field, into)),
        _ => {}
    }
}
