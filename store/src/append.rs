//! Checking an append before it reaches a writer: every bound, once.

use std::collections::HashSet;

use serde_json::{json, Value};

use crate::canonical::{canonical_json, canonical_metadata, check_payload, check_text, sha256};
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
    if request.streams.len() > limits::STREAMS_PER_APPEND_MAX {
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
    for stream in &request.streams {
        if !seen.insert(stream.stream_id.as_str()) {
            return Err(StoreError::invalid(
                "streams",
                format!("stream `{}` is named twice in one append", stream.stream_id),
            ));
        }
        stream.expected.validate()?;
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
    let request_hash = request_hash(&request);
    if let Some(key) = &request.idempotency_key {
        // The key travels with every event so an auditor sees which retries
        // collapsed into this append.
        for event in request.streams.iter_mut().flat_map(|s| s.events.iter_mut()) {
            event
                .metadata
                .insert("idempotency_key".into(), key.as_str().into());
        }
    }
    let encoded = request
        .streams
        .iter()
        .flat_map(|s| s.events.iter())
        .map(|event| EncodedEvent {
            payload: canonical_json(&event.payload),
            metadata: canonical_metadata(&event.metadata),
        })
        .collect();
    Ok(ValidatedAppend {
        request,
        request_hash,
        encoded,
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
    let payload_bytes = canonical_json(&event.payload).len();
    if payload_bytes > limits::PAYLOAD_BYTES_MAX {
        return Err(StoreError::invalid(
            "payload",
            format!(
                "{payload_bytes} bytes, at most {}; keep large content beside the log",
                limits::PAYLOAD_BYTES_MAX
            ),
        ));
    }
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

/// What makes two requests "the same" for an idempotency key: the streams,
/// expected versions, event types and payloads. Metadata (request ids,
/// timestamps of the client) may differ between retries.
fn request_hash(request: &AppendRequest) -> [u8; 32] {
    let streams: Vec<Value> = request
        .streams
        .iter()
        .map(|s| {
            let expected = match s.expected {
                ExpectedVersion::Any => json!("any"),
                ExpectedVersion::NoStream => json!("no_stream"),
                ExpectedVersion::Exact(v) => json!(v),
            };
            let events: Vec<Value> = s
                .events
                .iter()
                .map(|e| json!([e.event_type.as_str(), e.event_version, e.payload]))
                .collect();
            json!([
                s.stream_id.as_str(),
                s.stream_type.as_str(),
                expected,
                events
            ])
        })
        .collect();
    let community = request.community_id.to_string();
    sha256(&canonical_json(&json!([community, streams])))
}
