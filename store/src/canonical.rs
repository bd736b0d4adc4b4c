//! The canonical byte form of an event and its chain hash, exactly as written
//! down in `docs/AUDIT.md`. An auditor's own tool must be able to recompute
//! every hash from an export, so this module changes only with that document.

use std::fmt::Write;

use chrono::{DateTime, Utc};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::error::StoreError;
use crate::limits;
use crate::types::{CommunityId, Metadata};

/// The previous hash of a community's first event.
pub const GENESIS_HASH: [u8; 32] = [0u8; 32];

/// `recorded_at` in the one textual form the hash uses: UTC, microseconds, `Z`.
pub fn timestamp_text(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}

/// The canonical JSON object of an event (RFC 8785 for our integer-only JSON).
pub fn canonical_event_bytes(
    header: &EventHeader<'_>,
    payload: &Value,
    metadata: &Metadata,
) -> Vec<u8> {
    compose_event(
        header,
        &canonical_json(payload),
        &canonical_metadata(metadata),
    )
}

/// The fields of an event that its hash covers, besides its payload and metadata.
pub struct EventHeader<'a> {
    pub community_id: CommunityId,
    pub position: i64,
    pub stream_id: &'a str,
    pub stream_type: &'a str,
    pub stream_version: i64,
    pub event_type: &'a str,
    pub event_version: &'a str,
    /// Already in [`timestamp_text`] form.
    pub recorded_at: &'a str,
}

/// Writes the canonical event object around an already canonical payload and
/// metadata. The keys are ASCII, so this fixed order is their RFC 8785 order.
pub fn compose_event(header: &EventHeader<'_>, payload: &[u8], metadata: &[u8]) -> Vec<u8> {
    let mut out = String::with_capacity(256 + payload.len() + metadata.len());
    out.push_str("{\"community_id\":\"");
    let _ = write!(out, "{}", header.community_id);
    out.push_str("\",\"event_type\":");
    write_string(header.event_type, &mut out);
    out.push_str(",\"event_version\":");
    write_string(header.event_version, &mut out);
    out.push_str(",\"metadata\":");
    let mut bytes = out.into_bytes();
    bytes.extend_from_slice(metadata);
    bytes.extend_from_slice(b",\"payload\":");
    bytes.extend_from_slice(payload);
    let mut out = String::with_capacity(160);
    let _ = write!(
        out,
        ",\"position\":{},\"recorded_at\":\"{}\",\"stream_id\":",
        header.position, header.recorded_at
    );
    write_string(header.stream_id, &mut out);
    out.push_str(",\"stream_type\":");
    write_string(header.stream_type, &mut out);
    let _ = write!(out, ",\"stream_version\":{}}}", header.stream_version);
    bytes.extend_from_slice(out.as_bytes());
    bytes
}

/// The canonical JSON object of string-to-string metadata.
pub fn canonical_metadata(metadata: &Metadata) -> Vec<u8> {
    let mut entries: Vec<(&String, &String)> = metadata.iter().collect();
    entries.sort_by(|a, b| a.0.encode_utf16().cmp(b.0.encode_utf16()));
    let mut out = String::with_capacity(128);
    out.push('{');
    for (i, (key, value)) in entries.into_iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        write_string(key, &mut out);
        out.push(':');
        write_string(value, &mut out);
    }
    out.push('}');
    out.into_bytes()
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
    fn composed_events_equal_the_canonical_form_of_the_whole_object() {
        let payload = json!({"z": "水", "a": [1, -2], "q": "\"\n"});
        let metadata: Metadata = [("\u{fb01}", "x"), ("actor_id", "a-1"), ("\u{1f600}", "y")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let at = DateTime::parse_from_rfc3339("2026-11-23T08:30:00.000042Z")
            .unwrap()
            .with_timezone(&Utc);
        let community = CommunityId::new(uuid::Uuid::nil());
        let header = EventHeader {
            community_id: community,
            position: 7,
            stream_id: "report-\"1",
            stream_type: "Report",
            stream_version: 3,
            event_type: "ReportSubmitted",
            event_version: "1",
            recorded_at: &timestamp_text(at),
        };
        let composed = canonical_event_bytes(&header, &payload, &metadata);
        let whole = json!({
            "community_id": community.to_string(), "event_type": "ReportSubmitted",
            "event_version": "1", "metadata": metadata, "payload": payload, "position": 7,
            "recorded_at": "2026-11-23T08:30:00.000042Z", "stream_id": "report-\"1",
            "stream_type": "Report", "stream_version": 3,
        });
        assert_eq!(
            String::from_utf8(composed).unwrap(),
            String::from_utf8(canonical_json(&whole)).unwrap()
        );
    }

    #[test]
    fn chain_hash_prefixes_the_previous_hash() {
        let expected: [u8; 32] = Sha256::digest([&[0u8; 32][..], b"{}"].concat()).into();
        assert_eq!(chain_hash(&GENESIS_HASH, b"{}"), expected);
    }
}

/// The worked example of docs/AUDIT.md: if this test fails, the document and
/// every auditor's tool built from it are wrong, so change both together.
#[cfg(test)]
mod audit_example {
    use super::*;
    use serde_json::json;

    pub(super) fn example() -> (Vec<u8>, [u8; 32], [u8; 32]) {
        let payload = json!({
            "category": "floating_garbage",
            "site_code": "RB-0042",
            "text_hash": "9f2c4b0e7c1a5d3e8f6b2a4c0d1e3f5a7b9c1d3e5f7a9b1c3d5e7f9a1b3c5d7e",
            "points": "5.00"
        });
        let metadata: Metadata = [
            ("actor_id", "7f1d2c3b-4a59-4e68-9d7c-0b1a2c3d4e5f"),
            ("actor_role", "citizen"),
            ("client", "qr-page"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let recorded_at = DateTime::parse_from_rfc3339("2026-11-23T08:30:00.123456Z")
            .unwrap()
            .with_timezone(&Utc);
        let community = CommunityId::new(
            uuid::Uuid::parse_str("3b1f8e2a-5c4d-4e6f-8a9b-0c1d2e3f4a5b").unwrap(),
        );
        let header = EventHeader {
            community_id: community,
            position: 1,
            stream_id: "report-8c5e1f20",
            stream_type: "Report",
            stream_version: 1,
            event_type: "ReportSubmitted",
            event_version: "1",
            recorded_at: &timestamp_text(recorded_at),
        };
        let bytes = canonical_event_bytes(&header, &payload, &metadata);
        let first = chain_hash(&GENESIS_HASH, &bytes);
        let second = chain_hash(&first, &bytes);
        (bytes, first, second)
    }

    #[test]
    fn the_documented_example_holds() {
        let (bytes, first, _) = example();
        let text = String::from_utf8(bytes).unwrap();
        println!("{text}\n{}", hex::encode(first));
        assert_eq!(
            text,
            include_str!("../../docs/audit-example.json").trim_end()
        );
        assert_eq!(
            hex::encode(first),
            include_str!("../../docs/audit-example.sha256").trim_end()
        );
    }
}
