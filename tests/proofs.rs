//! Receipts and extensions (docs/AUDIT.md): an inclusion proof for every
//! event and a consistency proof for every pair of seals of a long
//! history, checked by our checker and by `docs/verify_proof.py` (the
//! auditor's own, sharing no code), and each tampering named by both; the
//! same proofs through GraphQL and the CLI.

use app::audit::proofs::{check_document, check_receipt, extension, Extension, Receipt};
use serde_json::{json, Value};
use store::{
    AppendRequest, CommunityId, EventType, ExpectedVersion, NewEvent, StreamId, StreamType,
};

use crate::app::{code_of, TestApp};

const EVENTS: i64 = 100_000;
const EVENTS_PER_APPEND: i64 = 100;
const EVENTS_PER_SEAL: i64 = 2_000;

/// Appends `count` events, `EVENTS_PER_APPEND` a time, sealing the head
/// every `EVENTS_PER_SEAL` events; the seals made.
async fn long_history(app: &TestApp, community: CommunityId, count: i64) -> Vec<store::Seal> {
    let mut seals = Vec::new();
    for append in 0..count / EVENTS_PER_APPEND {
        let events = (0..EVENTS_PER_APPEND)
            .map(|n| {
                NewEvent::new(
                    EventType::parse("PatrolLogged").unwrap(),
                    json!({"PatrolLogged": {"n": append * EVENTS_PER_APPEND + n, "river": "清水河"}}),
                )
            })
            .collect();
        let request = AppendRequest::new(community).stream(
            StreamId::parse(format!("patrol-log-{append}")).unwrap(),
            StreamType::parse("PatrolLog").unwrap(),
            ExpectedVersion::NoStream,
            events,
        );
        let outcome = app.store.append(request).await.unwrap();
        if outcome.last_position % EVENTS_PER_SEAL == 0 {
            let head = app.store.head(community).await.unwrap();
            seals.push(
                app.sealer
                    .seal(community, head.position, head.hash)
                    .await
                    .unwrap(),
            );
        }
    }
    seals
}

/// What `docs/verify_proof.py` prints of a file of documents (every line),
/// with the key pinned.
fn python_says(documents: &str, key: &[u8; 32]) -> Vec<String> {
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), documents).unwrap();
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/verify_proof.py");
    let output = std::process::Command::new("python3")
        .arg(script)
        .arg(file.path())
        .arg(hex::encode(key))
        .output()
        .expect("python3 runs the auditor's script");
    String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

fn lines<T: serde::Serialize>(documents: &[T]) -> String {
    documents
        .iter()
        .map(|d| serde_json::to_string(d).unwrap() + "\n")
        .collect()
}

/// Each document edited by `tamper`, and what both checkers must name.
fn tampered<T: serde::Serialize>(documents: &[T], tamper: impl Fn(&mut Value)) -> String {
    documents
        .iter()
        .map(|d| {
            let mut value = serde_json::to_value(d).unwrap();
            tamper(&mut value);
            value.to_string() + "\n"
        })
        .collect()
}

fn assert_both_name(documents: &str, key: &[u8; 32], what: &str) {
    let count = documents.lines().count();
    let ours: Vec<String> = documents
        .lines()
        .map(|line| check_document(line, Some(key)).unwrap_err())
        .collect();
    assert!(
        ours.iter().all(|name| name == what),
        "ours: {:?}",
        &ours[..3.min(count)]
    );
    let theirs = python_says(documents, key);
    let failing = theirs
        .iter()
        .filter(|l| l.ends_with(&format!("fails: {what}")))
        .count();
    assert_eq!(
        failing,
        count,
        "theirs: {:?}",
        &theirs[..3.min(theirs.len())]
    );
    assert_eq!(theirs.last().unwrap(), "0 proofs hold");
}

fn set_hex(value: &mut Value, pointer: &str, hex_text: String) {
    *value.pointer_mut(pointer).unwrap() = hex_text.into();
}

fn flipped(value: &Value, pointer: &str) -> String {
    let mut bytes = hex::decode(value.pointer(pointer).unwrap().as_str().unwrap()).unwrap();
    bytes[0] ^= 1;
    hex::encode(bytes)
}

/// 100,000 events, sealed every 2,000: every event's receipt and every
/// pair of seals' extension holds for both checkers; a changed event, a
/// wrong position and a forged root are named by both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_event_and_every_pair_of_seals_of_a_long_history_is_proved() {
    let app = TestApp::spawn_quiet().await;
    let f = app.fixture().await;
    let community = CommunityId::new(f.community);
    let before = app.store.head(community).await.unwrap().position;
    let mut seals = long_history(&app, community, EVENTS).await;
    let head = app.store.head(community).await.unwrap().position;
    assert_eq!(head, before + EVENTS);
    if seals.last().map(|s| s.position) != Some(head) {
        let last = app.store.head(community).await.unwrap();
        seals.push(
            app.sealer
                .seal(community, last.position, last.hash)
                .await
                .unwrap(),
        );
    }
    let key = app.sealer.public_key();

    // Every event's receipt, against the first seal that covers it.
    let mut receipts: Vec<Receipt> = Vec::with_capacity(head as usize);
    let mut from = 1;
    for seal in &seals {
        let positions: Vec<i64> = (from..=seal.position).collect();
        for chunk in positions.chunks(store::tree::PROOFS_PER_CALL_MAX) {
            let proofs = app
                .store
                .inclusion_proofs(community, seal.position, chunk)
                .await
                .unwrap();
            receipts.extend(proofs.into_iter().map(|proof| Receipt {
                proof,
                seal: seal.clone(),
            }));
        }
        from = seal.position + 1;
    }
    assert_eq!(receipts.len() as i64, head, "one receipt an event");
    let longest = receipts.iter().map(|r| r.proof.path.len()).max().unwrap();
    assert!(longest <= 17, "O(log n) hashes: {longest}");
    for receipt in &receipts {
        assert!(receipt.proof.holds(), "position {}", receipt.proof.position);
    }
    for receipt in receipts.iter().step_by(97) {
        assert_eq!(check_receipt(receipt, Some(&key)), Ok(()));
    }
    let documents = lines(&receipts);
    let theirs = python_says(&documents, &key);
    assert_eq!(theirs, vec![format!("{head} proofs hold")]);

    // Every pair of seals: the newer extends the older.
    let mut extensions: Vec<Extension> = Vec::new();
    for (i, old) in seals.iter().enumerate() {
        for new in &seals[i..] {
            extensions.push(
                extension(&app.store, community, old.position, new.position)
                    .await
                    .unwrap(),
            );
        }
    }
    let pairs = seals.len() * (seals.len() + 1) / 2;
    assert_eq!(extensions.len(), pairs);
    let documents = lines(&extensions);
    assert!(documents
        .lines()
        .all(|line| check_document(line, Some(&key)).is_ok()));
    assert_eq!(
        python_says(&documents, &key),
        vec![format!("{pairs} proofs hold")]
    );

    // Tampering, on a sample of receipts spread over the history.
    let sample: Vec<&Receipt> = receipts.iter().step_by(1_009).collect();
    let changed_event = tampered(&sample, |v| {
        set_hex(v, "/event_hash", flipped(v, "/event_hash"))
    });
    assert_both_name(&changed_event, &key, "proof_invalid");
    let wrong_position = tampered(&sample, |v| {
        let position = v["position"].as_i64().unwrap();
        let size = v["tree_size"].as_i64().unwrap();
        v["position"] = json!(if position < size {
            position + 1
        } else {
            position - 1
        });
    });
    assert_both_name(&wrong_position, &key, "proof_invalid");
    // A forged root: the proof's alone disagrees with the signed seal; the
    // seal's too breaks its signature; re-signed, it is not the pinned key.
    let forged = "9f".repeat(32);
    let root_only = tampered(&sample, |v| set_hex(v, "/tree_root", forged.clone()));
    assert_both_name(&root_only, &key, "seal_disagrees");
    let seal_too = tampered(&sample, |v| {
        set_hex(v, "/tree_root", forged.clone());
        set_hex(v, "/seal/tree_root", forged.clone());
    });
    assert_both_name(&seal_too, &key, "seal_signature_invalid");
    let forger = ed25519_dalek::SigningKey::from_bytes(&[7; 32]);
    let resigned = tampered(&sample, |v| {
        set_hex(v, "/tree_root", forged.clone());
        let mut seal: store::Seal = serde_json::from_value(v["seal"].clone()).unwrap();
        seal.tree_root = Some([0x9f; 32]);
        seal.public_key = forger.verifying_key().to_bytes();
        use ed25519_dalek::Signer;
        seal.signature = forger.sign(&seal.signed_message()).to_bytes().to_vec();
        v["seal"] = serde_json::to_value(&seal).unwrap();
        v["seal"]["sealed_at"] = store::canonical::timestamp_text(seal.sealed_at).into();
    });
    assert_both_name(&resigned, &key, "seal_untrusted_key");
    // Unpinned, the forger's seal is taken at its word, and the path still
    // does not lead to the forged root.
    assert!(resigned
        .lines()
        .all(|line| check_document(line, None) == Err("proof_invalid".into())));

    // Tampered extensions: a forged older root, a changed path hash.
    let spread: Vec<&Extension> = extensions
        .iter()
        .filter(|e| e.proof.old_size < e.proof.new_size)
        .step_by(53)
        .collect();
    let old_root = tampered(&spread, |v| {
        set_hex(v, "/old_root", flipped(v, "/old_root"));
        set_hex(v, "/old_seal/tree_root", flipped(v, "/old_seal/tree_root"));
    });
    assert_both_name(&old_root, &key, "seal_signature_invalid");
    let path = tampered(&spread, |v| set_hex(v, "/path/0", flipped(v, "/path/0")));
    assert_both_name(&path, &key, "proof_invalid");
}

/// The receipt through GraphQL for anyone of the community's public side,
/// the extension too, both checked by the CLI without a database; before a
/// seal covers an event, NOT_FOUND; bad positions, VALIDATION.
#[tokio::test]
async fn receipts_come_from_graphql_and_are_checked_by_the_cli() {
    let app = TestApp::spawn_quiet().await;
    let f = app.fixture().await;
    let community = CommunityId::new(f.community);
    let receipt_query = "query($c: UUID!, $p: Int!, $s: Int) { inclusionProof(communityId: $c, \
        position: $p, sealPosition: $s) { position eventHash treeSize treeRoot path \
        seal { position treeRoot } document } }";
    let first = app.head(f.community).await;
    let unsealed = app
        .gql(None, receipt_query, json!({"c": f.community, "p": first}))
        .await;
    assert_eq!(code_of(&unsealed), "NOT_FOUND", "{unsealed}");
    let older = app.store.head(community).await.unwrap();
    app.sealer
        .seal(community, older.position, older.hash)
        .await
        .unwrap();
    long_history(&app, community, 1_000).await;
    let newer = app.store.head(community).await.unwrap();
    app.sealer
        .seal(community, newer.position, newer.hash)
        .await
        .unwrap();

    let mut documents = String::new();
    for (who, token) in [("anyone", None), ("a resident", Some(f.resident.as_str()))] {
        let answer = app
            .ok(token, receipt_query, json!({"c": f.community, "p": 1}))
            .await;
        let proof = &answer["inclusionProof"];
        assert_eq!(proof["treeSize"], json!(older.position), "{who}");
        assert_eq!(proof["seal"]["treeRoot"], proof["treeRoot"], "{who}");
        documents.push_str(proof["document"].as_str().unwrap());
        documents.push('\n');
    }
    let later = app
        .ok(
            None,
            receipt_query,
            json!({"c": f.community, "p": 1, "s": newer.position}),
        )
        .await;
    assert_eq!(later["inclusionProof"]["treeSize"], json!(newer.position));
    documents.push_str(later["inclusionProof"]["document"].as_str().unwrap());
    documents.push('\n');
    let consistency = app
        .ok(
            None,
            "query($c: UUID!, $o: Int!, $n: Int!) { consistencyProof(communityId: $c, \
             oldSealPosition: $o, newSealPosition: $n) { oldSize newSize path document } }",
            json!({"c": f.community, "o": older.position, "n": newer.position}),
        )
        .await;
    assert_eq!(
        consistency["consistencyProof"]["oldSize"],
        json!(older.position)
    );
    documents.push_str(
        consistency["consistencyProof"]["document"]
            .as_str()
            .unwrap(),
    );
    documents.push('\n');

    for (variables, code) in [
        (json!({"c": f.community, "p": 0}), "VALIDATION"),
        (
            json!({"c": f.community, "p": newer.position + 1}),
            "NOT_FOUND",
        ),
        (
            json!({"c": f.community, "p": 1, "s": newer.position - 1}),
            "NOT_FOUND",
        ),
        (
            json!({"c": f.community, "p": newer.position, "s": older.position}),
            "VALIDATION",
        ),
        (json!({"c": uuid::Uuid::new_v4(), "p": 1}), "NOT_FOUND"),
    ] {
        let refused = app.gql(None, receipt_query, variables.clone()).await;
        assert_eq!(code_of(&refused), code, "{variables}: {refused}");
    }
    let foreign = app
        .gql(
            Some(&f.foreign_admin),
            receipt_query,
            json!({"c": f.community, "p": 1}),
        )
        .await;
    assert_eq!(code_of(&foreign), "FORBIDDEN", "{foreign}");

    // The CLI checks them without a database, with the key pinned.
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), &documents).unwrap();
    let key = hex::encode(app.sealer.public_key());
    let check = |path: &std::path::Path| {
        crate::cli::civic_ledger()
            .args([
                "audit",
                "check-proof",
                "--file",
                path.to_str().unwrap(),
                "--seal-key",
                &key,
            ])
            .output()
            .unwrap()
    };
    let output = check(file.path());
    assert!(output.status.success(), "{output:?}");
    assert_eq!(
        String::from_utf8_lossy(&output.stdout).trim(),
        "4 proofs hold"
    );
    let broken = documents.replacen("\"position\":1,", "\"position\":2,", 1);
    std::fs::write(file.path(), broken).unwrap();
    let output = check(file.path());
    assert!(!output.status.success());
    assert_eq!(
        String::from_utf8_lossy(&output.stdout)
            .lines()
            .next()
            .unwrap(),
        "line 1: fails: proof_invalid"
    );
}
