//! The NDJSON export (docs/AUDIT.md): one JSON object per line, streamed
//! in batches so memory stays flat for any history. Each event line is
//! every stored field with `"type": "event"`; the last line is the chain's
//! head (`"type": "head"`). Verifying reads the same lines back, without a
//! database.

use std::io::{BufRead, Write};

use serde::Deserialize;
use store::{CommunityId, EventStore, RecordedEvent};

use super::{AuditReport, ChainHead, Verifier, AUDIT_BATCH_SIZE};

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error(transparent)]
    Store(#[from] store::StoreError),
    #[error("could not write: {0}")]
    Io(#[from] std::io::Error),
    #[error("line {line}: {reason}")]
    Malformed { line: usize, reason: String },
}

/// Writes positions `from..=to` and the head.
pub async fn export(
    store: &EventStore,
    community: CommunityId,
    from_position: i64,
    to_position: i64,
    out: &mut impl Write,
) -> Result<i64, ExportError> {
    let head = store.head(community).await?;
    let to_position = to_position.min(head.position);
    // Seals first (few): a verifier checks each as it reaches its position.
    for seal in super::all_seals(store, community).await? {
        let mut line = serde_json::to_value(&seal).map_err(std::io::Error::other)?;
        line["type"] = "seal".into();
        // The characters the signed message holds, not a shorter form.
        line["sealed_at"] = store::canonical::timestamp_text(seal.sealed_at).into();
        writeln!(out, "{line}")?;
    }
    // Then what was erased, when, by whom and why: the events still name
    // it by hash.
    for (hash, tombstone) in store.erased_contents(community).await? {
        let line = serde_json::json!({
            "type": "erasure",
            "content_hash": hash.to_hex(),
            "erased_at": store::canonical::timestamp_text(tombstone.erased_at),
            "erased_by": tombstone.erased_by,
            "reason": tombstone.reason,
        });
        writeln!(out, "{line}")?;
    }
    let mut batches = store.log_batches(community, from_position, to_position, AUDIT_BATCH_SIZE);
    let mut written = 0;
    while let Some(batch) = batches.next().await? {
        for event in &batch {
            write_event(out, event)?;
            written += 1;
        }
        out.flush()?;
    }
    let head = ChainHead {
        position: head.position,
        hash: head.hash,
        checked_to: to_position,
        from_position: Some(from_position.max(1)),
    };
    let mut line = serde_json::to_value(&head).map_err(std::io::Error::other)?;
    line["type"] = "head".into();
    line["community_id"] = serde_json::to_value(community).map_err(std::io::Error::other)?;
    writeln!(out, "{line}")?;
    out.flush()?;
    Ok(written)
}

fn write_event(out: &mut impl Write, event: &RecordedEvent) -> Result<(), ExportError> {
    let mut json = serde_json::to_value(event).map_err(std::io::Error::other)?;
    // Exactly the characters hashed (six fractional digits, always): a
    // verifier copies the string as it is.
    json["recorded_at"] = store::canonical::timestamp_text(event.recorded_at).into();
    let json = json.to_string();
    // The type goes first; the rest is the event as serialized.
    writeln!(out, "{{\"type\":\"event\",{}", &json[1..])?;
    Ok(())
}

#[derive(Deserialize)]
struct Kind {
    #[serde(rename = "type")]
    kind: String,
}

/// Verifies an export from its lines alone; seals must be signed by
/// `trusted_key` when given. Whatever the lines hold, the answer is a
/// report: a line that is not JSON of its type is the failure
/// `malformed_line` (at the position expected next), a seal without its
/// signature is `seal_signature_invalid`. Only a file that cannot be read
/// is an error.
pub fn verify_export(
    input: impl BufRead,
    trusted_key: Option<[u8; 32]>,
) -> Result<AuditReport, ExportError> {
    verify_export_with(input, trusted_key, Vec::new())
}

/// [`verify_export`], also checking `collected`: seals the auditor kept
/// from earlier (the log must still extend every one, whatever seal lines
/// the export holds). An export that starts after position 1 holds only
/// when a seal signed by `trusted_key` covers the position before its
/// start with the hash its first event follows (`unanchored_start`).
pub fn verify_export_with(
    input: impl BufRead,
    trusted_key: Option<[u8; 32]>,
    collected: Vec<store::Seal>,
) -> Result<AuditReport, ExportError> {
    let mut expected = 0;
    match read_export(input, trusted_key, collected, &mut expected) {
        Err(ExportError::Malformed { line, reason }) => Ok(AuditReport {
            community_id: CommunityId::new(uuid::Uuid::nil()),
            ledger_checked: false,
            erasures_checked: false,
            seals_checked: 0,
            tree_roots_checked: 0,
            seals_trusted: trusted_key.is_some(),
            from_position: expected,
            to_position: expected - 1,
            events_checked: 0,
            first_failure: Some(super::Failure::new(
                expected,
                "malformed_line",
                format!("line {line}: {reason}"),
            )),
        }),
        other => other,
    }
}

/// A seal line as written; a missing or broken signature is kept as none,
/// for the seal check to name.
fn seal_of(line: &str) -> Result<store::Seal, String> {
    let mut value: serde_json::Value = serde_json::from_str(line).map_err(|e| e.to_string())?;
    super::seals::blank_unreadable_signature(&mut value);
    serde_json::from_value(value).map_err(|e| e.to_string())
}

fn read_export(
    input: impl BufRead,
    trusted_key: Option<[u8; 32]>,
    collected: Vec<store::Seal>,
    expected: &mut i64,
) -> Result<AuditReport, ExportError> {
    let mut verifier: Option<(CommunityId, Verifier)> = None;
    let mut seals: Vec<store::Seal> = collected;
    let mut unanchored: Option<super::Failure> = None;
    let mut tombstones: Vec<super::Tombstone> = Vec::new();
    let mut head = None;
    for (n, line) in input.lines().enumerate() {
        let line = line?;
        let malformed = |reason: String| ExportError::Malformed {
            line: n + 1,
            reason,
        };
        if line.trim().is_empty() {
            continue;
        }
        let kind: Kind = serde_json::from_str(&line).map_err(|e| malformed(e.to_string()))?;
        match kind.kind.as_str() {
            "event" => {
                let event: RecordedEvent =
                    serde_json::from_str(&line).map_err(|e| malformed(e.to_string()))?;
                *expected = event.position + 1;
                if verifier.is_none() && event.position > 1 {
                    unanchored = anchor(&seals, trusted_key, &event).err();
                }
                let (_, verifier) = verifier.get_or_insert_with(|| {
                    let start =
                        Verifier::starting_at(event.position, event.previous_hash, 1, i64::MAX)
                            .with_seals(std::mem::take(&mut seals), trusted_key)
                            .with_tombstones(std::mem::take(&mut tombstones));
                    (event.community_id, start)
                });
                verifier.check(&event);
            }
            "seal" if verifier.is_none() => seals.push(seal_of(&line).map_err(malformed)?),
            "seal" => return Err(malformed("seals come before the events".into())),
            // Tombstones of erased content, each to match its erasure's
            // event in the chain.
            "erasure" if verifier.is_none() => {
                tombstones.push(serde_json::from_str(&line).map_err(|e| malformed(e.to_string()))?);
            }
            "erasure" => return Err(malformed("erasures come before the events".into())),
            "head" => {
                head = Some(
                    serde_json::from_str::<ChainHead>(&line)
                        .map_err(|e| malformed(e.to_string()))?,
                );
            }
            other => return Err(malformed(format!("unknown line type `{other}`"))),
        }
    }
    let Some((community, verifier)) = verifier else {
        return Err(ExportError::Malformed {
            line: 0,
            reason: "no events".into(),
        });
    };
    let mut report = verifier.finish(community, head.as_ref());
    if let (None, Some(failure)) = (&report.first_failure, unanchored) {
        report.first_failure = Some(failure);
    }
    Ok(report)
}

/// Whether an export's first event, after position 1, follows a seal the
/// auditor trusts: signed by the pinned key, at the position before, with
/// the hash the event names as its previous one.
fn anchor(
    seals: &[store::Seal],
    trusted_key: Option<[u8; 32]>,
    first: &RecordedEvent,
) -> Result<(), super::Failure> {
    let before = first.position - 1;
    let anchored = trusted_key.is_some()
        && seals.iter().any(|seal| {
            seal.position == before
                && seal.hash == first.previous_hash
                && seal.community_id == first.community_id
                && super::seals::check_signature(seal, trusted_key.as_ref()).is_ok()
        });
    if anchored {
        return Ok(());
    }
    Err(super::Failure::new(
        first.position,
        "unanchored_start",
        format!(
            "the export starts at {}: only a seal signed by a pinned key at {before} \
             vouches for the hash it follows",
            first.position
        ),
    ))
}

#[cfg(test)]
mod example {
    //! The whole small export docs/AUDIT.md explains line by line
    //! (`docs/audit-example.ndjson`), made here from the domain's own
    //! events and kept true on every test run.

    use super::*;
    use domain::erasure::ErasureEvent;
    use domain::report::Reporter;
    use domain::suggestion::SuggestionEvent;
    use domain::values::{ContentHash, SiteId, SuggestionId, Timestamp};

    const COMMUNITY: &str = "3b1f8e2a-5c4d-4e6f-8a9b-0c1d2e3f4a5b";

    fn hash_of(text: &str) -> ContentHash {
        ContentHash::parse(&hex::encode(<sha2::Sha256 as sha2::Digest>::digest(text))).unwrap()
    }

    /// An event as stored, chained after `previous`.
    fn event(
        position: i64,
        stream: (&str, &str),
        event_type: &str,
        payload: serde_json::Value,
        metadata: serde_json::Value,
        recorded_at: &str,
        previous: [u8; 32],
    ) -> RecordedEvent {
        let text = serde_json::json!({
            "community_id": COMMUNITY, "position": position,
            "stream_id": stream.0, "stream_type": stream.1, "stream_version": 1,
            "event_type": event_type, "event_version": "1",
            "payload": payload, "metadata": metadata, "recorded_at": recorded_at,
            "previous_hash": hex::encode(previous), "hash": hex::encode([0_u8; 32]),
        })
        .to_string();
        let mut event: RecordedEvent = serde_json::from_str(&text).unwrap();
        event.hash = store::verify::recompute_hash(&event).unwrap();
        event
    }

    /// A suggestion dropped anonymously (position 1), its text erased on
    /// the submitter's request (position 2), the head sealed.
    fn export_text() -> (String, [u8; 32]) {
        let text_hash =
            hash_of("{\"salt\":\"00112233445566778899aabbccddeeff\",\"text\":\"多放几个垃圾桶\"}");
        let submitted = SuggestionEvent::SuggestionSubmitted {
            suggestion: SuggestionId(
                uuid::Uuid::parse_str("5d8c7b6a-1f2e-4d3c-9b8a-7f6e5d4c3b2a").unwrap(),
            ),
            site: SiteId(uuid::Uuid::parse_str("0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d").unwrap()),
            text: text_hash.clone(),
            submitter: Reporter::Anonymous {
                client: hash_of("203.0.113.7|"),
                claim_secret_hash: hash_of("a claim secret"),
            },
            at: Timestamp::from_micros(1_795_422_600_123_450),
        };
        let erased = ErasureEvent::ContentErased {
            content: text_hash.clone(),
            by: "admin:7f1d2c3b-4a59-4e68-9d7c-0b1a2c3d4e5f".into(),
            reason: "本人申请删除".into(),
            at: Timestamp::from_micros(1_795_426_200_000_000),
        };
        let first = event(
            1,
            (
                "suggestion-5d8c7b6a-1f2e-4d3c-9b8a-7f6e5d4c3b2a",
                "Suggestion",
            ),
            "SuggestionSubmitted",
            serde_json::to_value(&submitted).unwrap(),
            serde_json::json!({"client": "203.0.113.7", "request_id": "r-1"}),
            "2026-11-23T08:30:00.123450Z",
            store::canonical::GENESIS_HASH,
        );
        let second = event(
            2,
            (&domain::streams::erasure(text_hash.as_str()), "Erasure"),
            "ContentErased",
            serde_json::to_value(&erased).unwrap(),
            serde_json::json!({"actor_id": "7f1d2c3b-4a59-4e68-9d7c-0b1a2c3d4e5f",
                "actor_role": "admin", "request_id": "r-2"}),
            "2026-11-23T09:30:00.000000Z",
            first.hash,
        );
        let key = super::super::seals::signing_key(b"civic-ledger example seal key");
        let sealed_at = chrono::DateTime::parse_from_rfc3339("2026-11-23T09:30:01Z")
            .unwrap()
            .with_timezone(&chrono::Utc);
        let community = CommunityId::new(uuid::Uuid::parse_str(COMMUNITY).unwrap());
        let mut tree = store::merkle::Frontier::default();
        tree.push(&first.hash, |_, _| {});
        tree.push(&second.hash, |_, _| {});
        let tree_root = tree.root();
        let message = store::Seal::message(community, 2, &second.hash, Some(&tree_root), sealed_at);
        use ed25519_dalek::Signer;
        let seal = store::Seal {
            community_id: community,
            position: 2,
            hash: second.hash,
            tree_root: Some(tree_root),
            sealed_at,
            public_key: key.verifying_key().to_bytes(),
            signature: key.sign(&message).to_bytes().to_vec(),
        };
        let mut out = Vec::new();
        let mut line = serde_json::to_value(&seal).unwrap();
        line["type"] = "seal".into();
        line["sealed_at"] = store::canonical::timestamp_text(sealed_at).into();
        writeln!(out, "{line}").unwrap();
        let erasure = serde_json::json!({
            "type": "erasure", "content_hash": text_hash.as_str(),
            "erased_at": "2026-11-23T09:30:00.004210Z",
            "erased_by": "admin:7f1d2c3b-4a59-4e68-9d7c-0b1a2c3d4e5f", "reason": "本人申请删除",
        });
        writeln!(out, "{erasure}").unwrap();
        write_event(&mut out, &first).unwrap();
        write_event(&mut out, &second).unwrap();
        let head = ChainHead {
            position: 2,
            hash: second.hash,
            checked_to: 2,
            from_position: Some(1),
        };
        let mut line = serde_json::to_value(&head).unwrap();
        line["type"] = "head".into();
        line["community_id"] = COMMUNITY.into();
        writeln!(out, "{line}").unwrap();
        (
            String::from_utf8(out).unwrap(),
            key.verifying_key().to_bytes(),
        )
    }

    #[test]
    fn the_documented_export_holds_line_by_line() {
        let (text, key) = export_text();
        println!("{text}");
        assert_eq!(text, include_str!("../../../docs/audit-example.ndjson"));
        let report = verify_export(text.as_bytes(), Some(key)).unwrap();
        assert!(report.is_intact(), "{report:?}");
        assert!(report.erasures_checked && report.ledger_checked && report.seals_trusted);
        assert_eq!((report.seals_checked, report.events_checked), (1, 2));
        // And by the auditor's own script, with the example key pinned.
        let docs = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs");
        let output = std::process::Command::new("python3")
            .arg(docs.join("verify_export.py"))
            .arg(docs.join("audit-example.ndjson"))
            .arg(hex::encode(key))
            .output()
            .expect("python3 runs the auditor's script");
        assert_eq!(
            String::from_utf8(output.stdout).unwrap(),
            "intact: 2 events\n"
        );
    }
}
