use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::Value;
use uuid::Uuid;

use crate::error::StoreError;
use crate::limits;

/// The tenant: every event belongs to exactly one community's log.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct CommunityId(Uuid);

impl CommunityId {
    pub fn new(id: Uuid) -> Self {
        CommunityId(id)
    }
    pub fn random() -> Self {
        CommunityId(Uuid::new_v4())
    }
    pub fn as_uuid(&self) -> Uuid {
        self.0
    }
}

impl fmt::Display for CommunityId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Checks a short identifier: non-empty, bounded, printable ASCII without spaces.
fn parse_name(field: &'static str, value: &str, max_len: usize) -> Result<(), StoreError> {
    if value.is_empty() {
        return Err(StoreError::invalid(field, "must not be empty"));
    }
    if value.len() > max_len {
        return Err(StoreError::invalid(
            field,
            format!("{} bytes, at most {max_len}", value.len()),
        ));
    }
    if !value.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(StoreError::invalid(
            field,
            "only printable ASCII without spaces is allowed",
        ));
    }
    Ok(())
}

macro_rules! name_type {
    ($(#[$doc:meta])* $name:ident, $field:literal, $max:expr) => {
        $(#[$doc])*
        #[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            pub fn parse(value: impl Into<String>) -> Result<Self, StoreError> {
                let value = value.into();
                parse_name($field, &value, $max)?;
                Ok($name(value))
            }
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let raw = String::deserialize(d)?;
                $name::parse(raw).map_err(serde::de::Error::custom)
            }
        }
    };
}

name_type!(
    /// A stream inside one community, e.g. `report-5f0c…` or a wallet's id.
    StreamId,
    "stream_id",
    limits::STREAM_ID_BYTES_MAX
);
name_type!(
    /// The kind of aggregate a stream holds, e.g. `Report`.
    StreamType,
    "stream_type",
    limits::TYPE_NAME_BYTES_MAX
);
name_type!(
    /// The past-tense name of an event, e.g. `ReportSubmitted`.
    EventType,
    "event_type",
    limits::TYPE_NAME_BYTES_MAX
);
name_type!(
    /// A key a client sends so that a retried command is applied once.
    IdempotencyKey,
    "idempotency_key",
    limits::IDEMPOTENCY_KEY_BYTES_MAX
);

/// What the caller believes a stream's version to be before its append.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "version", rename_all = "snake_case")]
pub enum ExpectedVersion {
    /// Append whatever the stream's version is.
    Any,
    /// The stream must not exist yet (version 0).
    NoStream,
    /// The stream must be at exactly this version (0 means "no stream yet").
    Exact(i64),
}

impl ExpectedVersion {
    pub(crate) fn validate(self) -> Result<(), StoreError> {
        match self {
            ExpectedVersion::Exact(v) if v < 0 => Err(StoreError::invalid(
                "expected_version",
                format!("{v} is negative; versions start at 0 (no stream)"),
            )),
            _ => Ok(()),
        }
    }

    pub(crate) fn admits(self, actual: i64) -> bool {
        match self {
            ExpectedVersion::Any => true,
            ExpectedVersion::NoStream => actual == 0,
            ExpectedVersion::Exact(v) => actual == v,
        }
    }
}

impl fmt::Display for ExpectedVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExpectedVersion::Any => f.write_str("any version"),
            ExpectedVersion::NoStream => f.write_str("no stream"),
            ExpectedVersion::Exact(v) => write!(f, "version {v}"),
        }
    }
}

/// Who did it, on whose behalf, from where: string keys to string values.
/// Conventional keys: `actor_id`, `actor_role`, `correlation_id`,
/// `causation_id`, `request_id`, `idempotency_key`, `client`.
pub type Metadata = BTreeMap<String, String>;

/// An event to be appended.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NewEvent {
    pub event_type: EventType,
    /// The schema version of the payload, e.g. `1`.
    pub event_version: String,
    pub payload: Value,
    pub metadata: Metadata,
}

impl NewEvent {
    pub fn new(event_type: EventType, payload: Value) -> Self {
        NewEvent {
            event_type,
            event_version: "1".to_string(),
            payload,
            metadata: Metadata::new(),
        }
    }
}

/// Events for one stream inside an append, with the version the stream must be at.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StreamAppend {
    pub stream_id: StreamId,
    pub stream_type: StreamType,
    pub expected: ExpectedVersion,
    pub events: Vec<NewEvent>,
}

/// A stream an append writes nothing to but was decided from: the append
/// lands only while the stream is still at `expected`, so a decision made
/// from a cached state (a community's set-up) needs no read to be safe.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamCondition {
    pub stream_id: StreamId,
    pub expected: ExpectedVersion,
}

/// One atomic append to one or several streams of one community.
#[derive(Clone, Debug, PartialEq)]
pub struct AppendRequest {
    pub community_id: CommunityId,
    pub streams: Vec<StreamAppend>,
    /// Streams the append rests on without writing to them; a stream that
    /// moved refuses the append with `Conflict`, as a written one does.
    pub conditions: Vec<StreamCondition>,
    pub idempotency_key: Option<IdempotencyKey>,
    /// What a repeat with the same key must match to be answered with the
    /// first outcome. `None`: the hash of the request's events. A caller
    /// whose events differ between retries (they carry the time of the
    /// command) names the request itself instead: its operation and input.
    pub request_fingerprint: Option<[u8; 32]>,
    /// Content the events name by hash (texts, photo links), stored in the
    /// same transaction as the events: both land, or neither. Storing the
    /// same bytes again does nothing, and an erased hash stays erased.
    pub contents: Vec<NewContent>,
    /// Appends of this process this one was decided behind: it lands only
    /// if each of them does ([`crate::Landing`]).
    pub after: Vec<crate::Landing>,
}

/// A piece of content an append carries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewContent {
    pub media_type: String,
    pub body: Vec<u8>,
}

impl AppendRequest {
    pub fn new(community_id: CommunityId) -> Self {
        AppendRequest {
            community_id,
            streams: Vec::new(),
            conditions: Vec::new(),
            idempotency_key: None,
            request_fingerprint: None,
            contents: Vec::new(),
            after: Vec::new(),
        }
    }

    /// Lands only if the append `landing` stands for lands: this one was
    /// decided on the state that one leaves, before it committed.
    pub fn after(mut self, landing: crate::Landing) -> Self {
        if !self.after.contains(&landing) {
            self.after.push(landing);
        }
        self
    }

    /// Stores `body` with the events ([`AppendRequest::contents`]).
    pub fn with_content(mut self, media_type: impl Into<String>, body: Vec<u8>) -> Self {
        self.contents.push(NewContent {
            media_type: media_type.into(),
            body,
        });
        self
    }

    pub fn stream(
        mut self,
        stream_id: StreamId,
        stream_type: StreamType,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Self {
        self.streams.push(StreamAppend {
            stream_id,
            stream_type,
            expected,
            events,
        });
        self
    }

    /// Lands only while `stream_id` is at `expected` ([`StreamCondition`]).
    pub fn provided(mut self, stream_id: StreamId, expected: ExpectedVersion) -> Self {
        self.conditions.push(StreamCondition {
            stream_id,
            expected,
        });
        self
    }

    /// Every stream the append names: those it writes, then its conditions.
    pub(crate) fn named_streams(&self) -> impl Iterator<Item = (&StreamId, ExpectedVersion)> {
        let written = self.streams.iter().map(|s| (&s.stream_id, s.expected));
        written.chain(self.conditions.iter().map(|c| (&c.stream_id, c.expected)))
    }

    pub fn idempotent(mut self, key: IdempotencyKey) -> Self {
        self.idempotency_key = Some(key);
        self
    }

    /// Idempotent under `key`, a repeat matching when its `fingerprint`
    /// (the caller's digest of what was asked) is the same.
    pub fn idempotent_as(mut self, key: IdempotencyKey, fingerprint: [u8; 32]) -> Self {
        self.idempotency_key = Some(key);
        self.request_fingerprint = Some(fingerprint);
        self
    }

    pub fn event_count(&self) -> usize {
        self.streams.iter().map(|s| s.events.len()).sum()
    }
}

/// An idempotency key's first outcome, with the fingerprint of the request
/// that made it, so a repeat can be told from another request under the
/// same key.
#[derive(Clone, Debug, PartialEq)]
pub struct KeyedOutcome {
    pub request_hash: [u8; 32],
    pub outcome: AppendOutcome,
}

/// A stream's version after an append.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamVersion {
    pub stream_id: StreamId,
    pub version: i64,
}

/// What an append wrote: its positions (first..=last) and new stream versions.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppendOutcome {
    pub community_id: CommunityId,
    pub first_position: i64,
    pub last_position: i64,
    pub streams: Vec<StreamVersion>,
    pub recorded_at: DateTime<Utc>,
    /// True when this is the stored outcome of an earlier append with the same
    /// idempotency key, and nothing new was written.
    #[serde(default)]
    pub replayed: bool,
}

/// An event as stored in a community's log.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RecordedEvent {
    pub community_id: CommunityId,
    pub position: i64,
    pub stream_id: String,
    pub stream_type: String,
    pub stream_version: i64,
    pub event_type: String,
    pub event_version: String,
    /// The payload's JSON text as stored: readers deserialize it straight
    /// into their own types with [`RecordedEvent::decode`].
    pub payload: Box<RawValue>,
    /// Shared, not copied, when an event is handed to several readers (the
    /// tail's followers each get the batch: copying each event's map was
    /// most of what that cost).
    pub metadata: Arc<Metadata>,
    pub recorded_at: DateTime<Utc>,
    #[serde(with = "hex_bytes")]
    pub previous_hash: [u8; 32],
    #[serde(with = "hex_bytes")]
    pub hash: [u8; 32],
}

impl RecordedEvent {
    /// The payload as `T`, e.g. a domain event.
    pub fn decode<T: DeserializeOwned>(&self) -> Result<T, StoreError> {
        serde_json::from_str(self.payload.get()).map_err(|e| {
            StoreError::Corrupt(format!("the payload at position {}: {e}", self.position))
        })
    }

    /// The payload as a JSON value.
    pub fn payload_value(&self) -> Result<Value, StoreError> {
        self.decode()
    }
}

/// A community's chain head: its last position and hash.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Head {
    pub community_id: CommunityId,
    pub position: i64,
    #[serde(with = "hex_bytes")]
    pub hash: [u8; 32],
}

/// A 32-byte hash from its 64 hex digits, for the `hex_*` serde modules.
fn hash_of_hex<E: serde::de::Error>(text: String) -> Result<[u8; 32], E> {
    let mut out = [0u8; 32];
    hex::decode_to_slice(text, &mut out).map_err(E::custom)?;
    Ok(out)
}

pub mod hex_bytes {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8; 32], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; 32], D::Error> {
        super::hash_of_hex(String::deserialize(d)?)
    }
}

/// A hash that may be absent, as hex or null.
pub mod hex_option {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &Option<[u8; 32]>, s: S) -> Result<S::Ok, S::Error> {
        match bytes {
            Some(bytes) => s.serialize_str(&hex::encode(bytes)),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<[u8; 32]>, D::Error> {
        Option::<String>::deserialize(d)?
            .map(super::hash_of_hex)
            .transpose()
    }
}

/// A list of hashes, each as hex.
pub mod hex_list {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(hashes: &[[u8; 32]], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(hashes.iter().map(hex::encode))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<[u8; 32]>, D::Error> {
        Vec::<String>::deserialize(d)?
            .into_iter()
            .map(super::hash_of_hex)
            .collect()
    }
}
