//! The canonical byte form of an event and its chain hash, exactly as written
//! down in `docs/AUDIT.md`. An auditor's own tool must be able to recompute
//! every hash from an export, so this module changes only with that document.

use std::fmt::Write;

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::error::StoreError;
use crate::limits;
use crate::types::{CommunityId, Metadata};

/// The previous hash of a community's first event.
pub const GENESIS_HASH: [u8; 32] = [0u8; 32];

/// The fields of a stored event that its hash covers.
pub struct HashedFields<'a> {
    pub community_id: CommunityId,
    pub position: i64,
    pub stream_id: &'a str,
    pub stream_type: &'a str,
    pub stream_version: i64,
    pub event_type: &'a str,
    pub event_version: &'a str,
    pub payload: &'a Value,
    pub metadata: &'a Metadata,
    pub recorded_at: DateTime<Utc>,
}

/// `recorded_at` in the one textual form the hash uses: UTC, microseconds, `Z`.
pub fn timestamp_text(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}

/// The canonical JSON object of an event (RFC 8785 for our integer-only JSON).
pub fn canonical_event_bytes(fields: &HashedFields<'_>) -> Vec<u8> {
    let metadata: Map<String, Value> = fields
        .metadata
        .iter()
        .map(|(k, v)| (k.clone(), Value::String(v.clone())))
        .collect();
    let mut object = Map::new();
    object.insert(
        "community_id".into(),
        Value::String(fields.community_id.to_string()),
    );
    object.insert("event_type".into(), fields.event_type.into());
    object.insert("event_version".into(), fields.event_version.into());
    object.insert("metadata".into(), Value::Object(metadata));
    object.insert("payload".into(), fields.payload.clone());
    object.insert("position".into(), fields.position.into());
    object.insert(
        "recorded_at".into(),
        Value::String(timestamp_text(fields.recorded_at)),
    );
    object.insert("stream_id".into(), fields.stream_id.into());
    object.insert("stream_type".into(), fields.stream_type.into());
    object.insert("stream_version".into(), fields.stream_version.into());
    canonical_json(&Value::Object(object))
}

/// `SHA-256(previous_hash ‖ canonical bytes)`.
pub fn chain_hash(previous_hash: &[u8; 32], canonical_bytes: &[u8]) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update(previous_hash);
    hasher.update(canonical_bytes);
    hasher.finalize().into()
}

pub fn sha256(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

/// RFC 8785 serialization of a value that passed [`check_payload`]: object
/// keys sorted by UTF-16 code units, no insignificant white space, integers in
/// plain decimal, strings with the minimal JSON escapes.
pub fn canonical_json(value: &Value) -> Vec<u8> {
    let mut out = String::with_capacity(256);
    write_canonical(value, &mut out);
    out.into_bytes()
}

fn write_canonical(value: &Value, out: &mut String) {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => {
            // check_payload admits integers only, so this is their exact form.
            let _ = write!(out, "{n}");
        }
        Value::String(s) => write_string(s, out),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(item, out);
            }
            out.push(']');
        }
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_by(|a, b| a.0.encode_utf16().cmp(b.0.encode_utf16()));
            out.push('{');
            for (i, (key, item)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_string(key, out);
                out.push(':');
                write_canonical(item, out);
            }
            out.push('}');
        }
    }
}

fn write_string(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Admits only JSON that every canonicalizer and PostgreSQL's `jsonb` agree
/// on: integers within ±(2^53−1) (amounts travel as strings), no NUL
/// characters, bounded nesting.
pub fn check_payload(field: &'static str, value: &Value) -> Result<(), StoreError> {
    check_value(field, value, 0)
}

fn check_value(field: &'static str, value: &Value, depth: usize) -> Result<(), StoreError> {
    if depth > limits::PAYLOAD_DEPTH_MAX {
        return Err(StoreError::invalid(
            field,
            format!("nested deeper than {}", limits::PAYLOAD_DEPTH_MAX),
        ));
    }
    match value {
        Value::Null | Value::Bool(_) => Ok(()),
        Value::Number(n) => {
            let safe = n
                .as_i64()
                .is_some_and(|i| i.abs() <= limits::SAFE_INTEGER_MAX);
            if safe {
                Ok(())
            } else {
                Err(StoreError::invalid(
                    field,
                    format!(
                        "number {n} is not an integer within ±(2^53−1); send amounts as strings"
                    ),
                ))
            }
        }
        Value::String(s) => check_text(field, s),
        Value::Array(items) => items
            .iter()
            .try_for_each(|item| check_value(field, item, depth + 1)),
        Value::Object(map) => map.iter().try_for_each(|(key, item)| {
            check_text(field, key)?;
            check_value(field, item, depth + 1)
        }),
    }
}

pub(crate) fn check_text(field: &'static str, text: &str) -> Result<(), StoreError> {
    if text.contains('\0') {
        return Err(StoreError::invalid(field, "contains a NUL character"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn objects_are_sorted_by_utf16_code_units_and_compact() {
        // U+1F600 is a surrogate pair (0xD83D…) and sorts before U+FB01 in
        // UTF-16, though after it in UTF-8 and in code points.
        let value = json!({"b": 1, "a": [true, null, "x"], "\u{fb01}": 2, "\u{1f600}": 3});
        let text = String::from_utf8(canonical_json(&value)).unwrap();
        assert_eq!(
            text,
            "{\"a\":[true,null,\"x\"],\"b\":1,\"\u{1f600}\":3,\"\u{fb01}\":2}"
        );
    }

    #[test]
    fn strings_use_minimal_escapes() {
        let value = json!("q\"b\\\n\t\u{1}\u{7f}é/");
        let text = String::from_utf8(canonical_json(&value)).unwrap();
        assert_eq!(text, "\"q\\\"b\\\\\\n\\t\\u0001\u{7f}é/\"");
    }

    #[test]
    fn payload_check_refuses_what_canonical_form_cannot_carry() {
        let refused = [
            json!({"amount": 1.5}),
            json!({"big": 9_007_199_254_740_992_i64}),
            json!({"nul": "a\u{0}b"}),
            json!({"k\u{0}": 1}),
        ];
        for value in refused {
            assert!(check_payload("payload", &value).is_err(), "{value}");
        }
        let mut deep = json!(1);
        for _ in 0..40 {
            deep = json!([deep]);
        }
        assert!(check_payload("payload", &deep).is_err());
        let admitted =
            json!({"amount": "12.50", "n": -9_007_199_254_740_991_i64, "ok": [1, {"x": null}]});
        assert!(check_payload("payload", &admitted).is_ok());
    }

    #[test]
    fn chain_hash_prefixes_the_previous_hash() {
        let expected: [u8; 32] = Sha256::digest([&[0u8; 32][..], b"{}"].concat()).into();
        assert_eq!(chain_hash(&GENESIS_HASH, b"{}"), expected);
    }
}
