//! Checking an append before it reaches a writer: every bound, once.

use std::collections::HashSet;

use sha2::{Digest, Sha256};

use crate::canonical::{canonical_json, canonical_metadata, check_payload, check_text};
use crate::error::StoreError;
use crate::limits;
use crate::types::{AppendRequest, ExpectedVersion};

/// An append whose every field is within bounds, with the hash that
/// identifies it for idempotency.
pub(crate) struct ValidatedAppend {
    pub request: AppendRequest,
    pub request_hash: [u8; 32],
    /// Canonical JSON of each event's payload and metadata, stream by stream
    /// in request order. Computed here, in the caller's task, so that the
    /// community's single writer only composes and hashes.
    pub encoded: Vec<EncodedEvent>,
    /// The hash of each of the request's contents, in order.
    pub content_hashes: Vec<[u8; 32]>,
    /// How this append's way to the log is known before its outcome is.
    pub landing: crate::Landing,
}

pub(crate) struct EncodedEvent {
    pub payload: Vec<u8>,
    pub metadata: Vec<u8>,
}

pub(crate) fn validate(mut request: AppendRequest) -> Result<ValidatedAppend, StoreError> {
    if request.streams.is_empty() {
        return Err(StoreError::invalid(
            "streams",
            "an append names at least one stream",
        ));
    }
    if request.streams.len() + request.conditions.len() > limits::STREAMS_PER_APPEND_MAX {
        return Err(StoreError::invalid(
            "streams",
            format!(
                "at most {} streams per append",
                limits::STREAMS_PER_APPEND_MAX
            ),
        ));
    }
    let event_count = request.event_count();
    if event_count > limits::EVENTS_PER_APPEND_MAX {
        return Err(StoreError::invalid(
            "events",
            format!(
                "{event_count} events, at most {} per append",
                limits::EVENTS_PER_APPEND_MAX
            ),
        ));
    }
    let mut seen = HashSet::new();
    for (stream_id, expected) in request.named_streams() {
        if !seen.insert(stream_id.as_str()) {
            return Err(StoreError::invalid(
                "streams",
                format!("stream `{stream_id}` is named twice in one append"),
            ));
        }
        expected.validate()?;
    }
    for stream in &request.streams {
        if stream.events.is_empty() {
            return Err(StoreError::invalid(
                "events",
                format!("stream `{}` has no events", stream.stream_id),
            ));
        }
        for event in &stream.events {
            check_event(event)?;
        }
    }
    if request.contents.len() > limits::CONTENTS_PER_APPEND_MAX {
        return Err(StoreError::invalid(
            "contents",
            format!(
                "at most {} pieces of content per append",
                limits::CONTENTS_PER_APPEND_MAX
            ),
        ));
    }
    let mut content_hashes = Vec::with_capacity(request.contents.len());
    for content in &request.contents {
        crate::content::check_content(&content.media_type, &content.body)?;
        content_hashes.push(crate::content::ContentHash::of(&content.body).0);
    }
    let encoded: Vec<EncodedEvent> = request
        .streams
        .iter()
        .flat_map(|s| s.events.iter())
        .map(|event| EncodedEvent {
            payload: canonical_json(&event.payload),
            metadata: Vec::new(),
        })
        .collect();
    if let Some(too_big) = encoded
        .iter()
        .find(|e| e.payload.len() > limits::PAYLOAD_BYTES_MAX)
    {
        return Err(StoreError::invalid(
            "payload",
            format!(
                "{} bytes, at most {}; keep large content beside the log",
                too_big.payload.len(),
                limits::PAYLOAD_BYTES_MAX
            ),
        ));
    }
    let request_hash = match &request.idempotency_key {
        Some(_) => request
            .request_fingerprint
            .unwrap_or_else(|| request_hash(&request, &encoded)),
        None => [0; 32],
    };
    if let Some(key) = &request.idempotency_key {
        // The key travels with every event so an auditor sees which retries
        // collapsed into this append.
        for event in request.streams.iter_mut().flat_map(|s| s.events.iter_mut()) {
            event
                .metadata
                .insert("idempotency_key".into(), key.as_str().into());
        }
    }
    let events = request.streams.iter().flat_map(|s| s.events.iter());
    let encoded = encoded
        .into_iter()
        .zip(events)
        .map(|(encoded, event)| EncodedEvent {
            payload: encoded.payload,
            metadata: canonical_metadata(&event.metadata),
        })
        .collect();
    Ok(ValidatedAppend {
        request,
        request_hash,
        encoded,
        content_hashes,
        landing: crate::Landing::default(),
    })
}

fn check_event(event: &crate::types::NewEvent) -> Result<(), StoreError> {
    if event.event_version.is_empty() || event.event_version.len() > limits::EVENT_VERSION_BYTES_MAX
    {
        return Err(StoreError::invalid(
            "event_version",
            format!("must be 1 to {} bytes", limits::EVENT_VERSION_BYTES_MAX),
        ));
    }
    check_text("event_version", &event.event_version)?;
    check_payload("payload", &event.payload)?;
    if event.metadata.len() > limits::METADATA_ENTRIES_MAX {
        return Err(StoreError::invalid(
            "metadata",
            format!("at most {} entries", limits::METADATA_ENTRIES_MAX),
        ));
    }
    let mut metadata_bytes = 0;
    for (key, value) in &event.metadata {
        check_text("metadata", key)?;
        check_text("metadata", value)?;
        metadata_bytes += key.len() + value.len();
    }
    if metadata_bytes > limits::METADATA_BYTES_MAX {
        return Err(StoreError::invalid(
            "metadata",
            format!(
                "{metadata_bytes} bytes, at most {}",
                limits::METADATA_BYTES_MAX
            ),
        ));
    }
    Ok(())
}

/// What makes two requests "the same" for an idempotency key: the community,
/// streams, expected versions, event types, schema versions and canonical
/// payloads. Metadata (request ids, client clocks) may differ between retries,
/// and so may conditions: they decide whether an append may land, not what
/// it writes.
fn request_hash(request: &AppendRequest, encoded: &[EncodedEvent]) -> [u8; 32] {
    let mut hasher = Sha256::new();
    // Every part is length-prefixed, so no two requests frame alike.
    let mut part = |bytes: &[u8]| {
        hasher.update((bytes.len() as u64).to_be_bytes());
        hasher.update(bytes);
    };
    part(request.community_id.as_uuid().as_bytes());
    let mut payloads = encoded.iter();
    for stream in &request.streams {
        part(stream.stream_id.as_str().as_bytes());
        part(stream.stream_type.as_str().as_bytes());
        let expected = match stream.expected {
            ExpectedVersion::Any => "any".to_string(),
            ExpectedVersion::NoStream => "no_stream".to_string(),
            ExpectedVersion::Exact(v) => v.to_string(),
        };
        part(expected.as_bytes());
        part(&(stream.events.len() as u64).to_be_bytes());
        for event in &stream.events {
            part(event.event_type.as_str().as_bytes());
            part(event.event_version.as_bytes());
            part(&payloads.next().expect("one encoding per event").payload);
        }
    }
    hasher.finalize().into()
}
