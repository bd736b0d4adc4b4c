//! Audit: verifying the chain and the points ledger, from the database and
//! from an export alone, and naming the first position that fails.

use app::audit::export::{export, verify_export};
use app::audit::{verify, AuditReport};
use serde_json::{json, Value};
use store::{
    AppendRequest, CommunityId, EventType, ExpectedVersion, NewEvent, StreamId, StreamType,
};
use uuid::Uuid;

use crate::app::{accept, submit, TestApp};

/// A community with reports, grants, a redemption completed and one
/// cancelled; returns the app, its community and the head position.
async fn history() -> (TestApp, crate::points::Counter, i64) {
    let app = TestApp::spawn().await;
    let counter = app.counter().await;
    let f = &counter.f;
    let gift = app.gift(&counter, "3", 5).await;
    let (report, _) = submit(&app, f, &f.resident, "RB-01", "FLOATING-GARBAGE").await;
    let accepted = accept(&app, f, &f.admin, report).await;
    app.wallet(&f.resident, f.community, f.resident_id, accepted)
        .await;
    app.grant(f, f.resident_id, "20").await;
    for (key, finish) in [("a-1", "completeRedemption"), ("a-2", "cancelRedemption")] {
        let (redemption, _) = app
            .placed(&counter.clerk, f.community, f.resident_id, gift, key)
            .await;
        app.ok(
            Some(&counter.clerk),
            &format!("mutation($c: UUID!, $r: UUID!) {{ {finish}(communityId: $c, redemptionId: $r) {{ status }} }}"),
            json!({"c": f.community, "r": redemption}),
        )
        .await;
    }
    let head = app.head(f.community).await;
    (app, counter, head)
}

async fn exported(app: &TestApp, community: Uuid) -> String {
    let mut out = Vec::new();
    export(
        &app.store,
        CommunityId::new(community),
        1,
        i64::MAX,
        &mut out,
    )
    .await
    .unwrap();
    String::from_utf8(out).unwrap()
}

fn failure_of(report: &AuditReport) -> Option<(i64, String)> {
    report
        .first_failure
        .as_ref()
        .map(|failure| (failure.position, failure.what.clone()))
}

fn lines_edited(export: &str, edit: impl Fn(&mut Vec<String>)) -> String {
    let mut lines: Vec<String> = export.lines().map(str::to_string).collect();
    edit(&mut lines);
    lines.join("\n")
}

#[tokio::test]
async fn an_intact_history_verifies_from_the_database_and_from_its_export_alike() {
    let (app, counter, head) = history().await;
    let community = CommunityId::new(counter.f.community);
    let on_database = verify(&app.store, community, 1, i64::MAX, None)
        .await
        .unwrap();
    assert!(on_database.is_intact(), "{on_database:?}");
    assert_eq!(on_database.to_position, head);
    assert_eq!(on_database.events_checked, head);
    assert!(on_database.ledger_checked);

    let export = exported(&app, counter.f.community).await;
    assert_eq!(
        export.lines().count() as i64,
        head + 1,
        "every event and the head"
    );
    let first: Value = serde_json::from_str(export.lines().next().unwrap()).unwrap();
    for field in [
        "type",
        "community_id",
        "position",
        "stream_id",
        "stream_type",
        "stream_version",
        "event_type",
        "event_version",
        "payload",
        "metadata",
        "recorded_at",
        "previous_hash",
        "hash",
    ] {
        assert!(
            first.get(field).is_some(),
            "the export carries {field}: {first}"
        );
    }
    let from_export = verify_export(export.as_bytes(), None).unwrap();
    assert_eq!(
        from_export, on_database,
        "the same answer without a database"
    );

    // A range of the chain; the ledger is still folded from position 1.
    let range = verify(&app.store, community, 5, 9, None).await.unwrap();
    assert!(range.is_intact());
    assert_eq!(
        (range.from_position, range.to_position, range.events_checked),
        (5, 9, 5)
    );
}

#[tokio::test]
async fn an_edited_export_is_caught_at_the_position_edited() {
    let (app, counter, head) = history().await;
    let export = exported(&app, counter.f.community).await;
    let position_of = |line: &str| {
        serde_json::from_str::<Value>(line).unwrap()["position"]
            .as_i64()
            .unwrap()
    };
    // The last wallet event: a redemption's points.
    let (wallet_line, _) = export
        .lines()
        .enumerate()
        .filter(|(_, line)| line.contains("\"stream_type\":\"Wallet\""))
        .last()
        .unwrap();
    let wallet_position = position_of(export.lines().nth(wallet_line).unwrap());
    let cases: Vec<(&str, String, (i64, &str))> = vec![
        (
            "a payload edited",
            lines_edited(&export, |lines| {
                let mut event: Value = serde_json::from_str(&lines[wallet_line]).unwrap();
                let payload = event["payload"].as_object_mut().unwrap();
                let (_, fields) = payload.iter_mut().next().unwrap();
                fields["amount"] = json!("30");
                lines[wallet_line] = event.to_string();
            }),
            (wallet_position, "hash_mismatch"),
        ),
        (
            "an event deleted",
            lines_edited(&export, |lines| {
                lines.remove(4);
            }),
            (5, "missing_position"),
        ),
        (
            "two events swapped",
            lines_edited(&export, |lines| lines.swap(6, 7)),
            (7, "missing_position"),
        ),
        (
            "the last event dropped",
            lines_edited(&export, |lines| {
                lines.remove(lines.len() - 2);
            }),
            (head, "missing_position"),
        ),
    ];
    for (what, edited, expected) in cases {
        let verified = verify_export(edited.as_bytes(), None).unwrap();
        assert_eq!(
            failure_of(&verified),
            Some((expected.0, expected.1.to_string())),
            "{what}"
        );
    }
}

/// Appends one event through the store, so its hash is right and only the
/// ledger can tell what is wrong with it, and checks that the verifier, on
/// the database and on the export alike, names `what` at its position.
struct Forged<'a> {
    stream: String,
    stream_type: &'a str,
    expected: ExpectedVersion,
    event_type: &'a str,
    fields: Value,
}

async fn assert_forged_named(app: &TestApp, community: Uuid, forged: Forged<'_>, what: &str) {
    let head = app.head(community).await;
    let request = AppendRequest::new(CommunityId::new(community)).stream(
        StreamId::parse(forged.stream).unwrap(),
        StreamType::parse(forged.stream_type).unwrap(),
        forged.expected,
        vec![NewEvent::new(
            EventType::parse(forged.event_type).unwrap(),
            json!({ forged.event_type: forged.fields }),
        )],
    );
    app.store.append(request).await.unwrap();
    let verified = verify(&app.store, CommunityId::new(community), 1, i64::MAX, None)
        .await
        .unwrap();
    assert_eq!(
        failure_of(&verified),
        Some((head + 1, what.to_string())),
        "{}: {verified:?}",
        forged.event_type
    );
    let export = exported(app, community).await;
    assert_eq!(verify_export(export.as_bytes(), None).unwrap(), verified);
}

/// Well-chained wallet events the ledger refuses: a redemption of points
/// the wallet never had, and a grant the budget never issued.
#[tokio::test]
async fn a_well_chained_event_that_breaks_the_ledger_is_named() {
    let cases = [
        (
            "PointsRedeemed",
            json!({"redemption": Uuid::new_v4(), "amount": "500", "balance": "0", "held": "0",
                "next_expiry": null, "at": 1_800_000_000_000_000_i64}),
            "wallet_below_zero",
        ),
        (
            "PointsGranted",
            json!({"source": {"manual": {"grant": Uuid::new_v4(), "reason": "0".repeat(64)}},
                "amount": "50", "requested": "50", "by": null, "grid": null, "day": 20_800,
                "expires_at": null, "balance": "50", "held": "0", "next_expiry": null,
                "at": 1_800_000_000_000_000_i64}),
            "grant_unpaired",
        ),
    ];
    for (event_type, fields, what) in cases {
        let (app, counter, _) = history().await;
        let forged = Forged {
            stream: format!("wallet-{}", Uuid::new_v4()),
            stream_type: "Wallet",
            expected: ExpectedVersion::NoStream,
            event_type,
            fields,
        };
        assert_forged_named(&app, counter.f.community, forged, what).await;
    }
}

/// The gift stock rules, each broken by a well-chained event on the
/// gift's stream: named by both verifiers where it happened.
#[tokio::test]
async fn a_gift_event_that_breaks_the_stock_rules_is_named() {
    type Forge = fn(&Value, u64, u64) -> (&'static str, Value);
    let cases: [(&str, Forge, &str); 4] = [
        (
            "an addition that adds more than its quantity",
            |by, stock, _| {
                (
                    "GiftStockAdded",
                    json!({"by": by, "quantity": 2, "reason": "0".repeat(64),
                    "stock": stock + 5, "at": 1_800_000_000_000_000_i64}),
                )
            },
            "stock_mismatch",
        ),
        (
            "a correction of a stock that was not there",
            |by, stock, _| {
                (
                    "GiftStockCorrected",
                    json!({"by": by, "previous": stock + 1,
                    "reason": "0".repeat(64), "stock": 3, "at": 1_800_000_000_000_000_i64}),
                )
            },
            "stock_mismatch",
        ),
        (
            "a hold of more than the stock",
            |_, stock, held| {
                (
                    "GiftStockHeld",
                    json!({"redemption": Uuid::new_v4(), "quantity": stock + 1,
                    "stock": 0, "held": held + stock + 1, "at": 1_800_000_000_000_000_i64}),
                )
            },
            "stock_out_of_range",
        ),
        (
            "a handing over of a gift never held",
            |_, stock, held| {
                (
                    "GiftHandedOver",
                    json!({"redemption": Uuid::new_v4(), "quantity": 1,
                    "stock": stock, "held": held, "at": 1_800_000_000_000_000_i64}),
                )
            },
            "stock_mismatch",
        ),
    ];
    for (case, forge, what) in cases {
        let (app, counter, _) = history().await;
        let export = exported(&app, counter.f.community).await;
        let gift_events: Vec<Value> = export
            .lines()
            .map(|line| serde_json::from_str::<Value>(line).unwrap())
            .filter(|line| line["stream_type"] == "Gift")
            .collect();
        let last = gift_events.last().unwrap();
        let offered = &gift_events[0]["payload"]["GiftOffered"];
        let fields = last["payload"]
            .as_object()
            .unwrap()
            .values()
            .next()
            .unwrap();
        let stock = fields["stock"].as_u64().unwrap();
        let held = fields["held"].as_u64().unwrap_or(0);
        let (event_type, fields) = forge(&offered["by"], stock, held);
        let forged = Forged {
            stream: last["stream_id"].as_str().unwrap().to_string(),
            stream_type: "Gift",
            expected: ExpectedVersion::Exact(last["stream_version"].as_i64().unwrap()),
            event_type,
            fields,
        };
        eprintln!("{case}");
        assert_forged_named(&app, counter.f.community, forged, what).await;
    }
}

#[tokio::test]
async fn a_hold_left_open_past_its_time_is_named_until_it_is_released() {
    let (app, counter, _) = history().await;
    let f = &counter.f;
    let community = CommunityId::new(f.community);
    let gift = app.gift(&counter, "1", 5).await;
    let (_, placed) = app
        .placed(&counter.clerk, f.community, f.resident_id, gift, "open-1")
        .await;
    assert!(verify(&app.store, community, 1, i64::MAX, None)
        .await
        .unwrap()
        .is_intact());
    app.clock.advance_minutes(40);
    app.grant(f, f.resident_id, "1").await;
    let verified = verify(&app.store, community, 1, i64::MAX, None)
        .await
        .unwrap();
    // The placement appended the redemption's, the wallet's and the gift's
    // events; the failure names the redemption's, the first of the three.
    assert_eq!(
        failure_of(&verified),
        Some((placed - 2, "hold_not_finished".to_string()))
    );
    let head = app.head(f.community).await;
    app.wallet(&f.admin, f.community, f.resident_id, head).await;
    assert_eq!(app.sweeper.tick().await.unwrap().holds_released, 1);
    assert!(verify(&app.store, community, 1, i64::MAX, None)
        .await
        .unwrap()
        .is_intact());
}

#[tokio::test]
async fn auditors_verify_through_the_api() {
    let (app, counter, head) = history().await;
    let f = &counter.f;
    let query = "query($c: UUID!) { auditVerification(communityId: $c) {
        intact eventsChecked toPosition ledgerChecked firstFailure { position what } } }";
    let data = app
        .ok(Some(&f.auditor), query, json!({"c": f.community}))
        .await;
    assert_eq!(
        data["auditVerification"],
        json!({"intact": true, "eventsChecked": head, "toPosition": head, "ledgerChecked": true, "firstFailure": null})
    );
    for token in [&f.admin, &f.resident, &counter.clerk] {
        let refused = app.gql(Some(token), query, json!({"c": f.community})).await;
        assert_eq!(crate::app::code_of(&refused), "FORBIDDEN", "{refused}");
    }
}

#[tokio::test]
async fn the_audit_commands_export_and_verify_with_exit_codes() {
    let (app, counter, head) = history().await;
    let community = counter.f.community.to_string();
    let url = app.db.url();
    let verified = crate::cli::civic_ledger()
        .args(["audit", "verify", "--community", &community])
        .env("DATABASE_URL", &url)
        .output()
        .unwrap();
    assert!(verified.status.success(), "{verified:?}");
    let report: Value = serde_json::from_slice(&verified.stdout).unwrap();
    assert_eq!(report["events_checked"], head);

    let exported = crate::cli::civic_ledger()
        .args(["audit", "export", "--community", &community])
        .env("DATABASE_URL", &url)
        .output()
        .unwrap();
    assert!(exported.status.success(), "{exported:?}");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("history.ndjson");
    std::fs::write(&file, &exported.stdout).unwrap();
    let offline = crate::cli::civic_ledger()
        .args(["audit", "verify", "--file", file.to_str().unwrap()])
        .env_remove("DATABASE_URL")
        .output()
        .unwrap();
    assert!(offline.status.success(), "{offline:?}");
    assert_eq!(
        serde_json::from_slice::<Value>(&offline.stdout).unwrap(),
        report,
        "the export verifies like the database"
    );

    let text = String::from_utf8(exported.stdout).unwrap();
    let tampered = lines_edited(&text, |lines| lines.swap(2, 3));
    std::fs::write(&file, tampered).unwrap();
    let caught = crate::cli::civic_ledger()
        .args(["audit", "verify", "--file", file.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(caught.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&caught.stderr);
    assert!(stderr.contains("position 3: missing_position"), "{stderr}");
}

/// Rewrites the payload of `position` and recomputes every hash after it
/// and the head, as someone with the database and our code could.
async fn rewrite_history(app: &TestApp, community: CommunityId, position: i64) {
    let client = app.db.client().await;
    client
        .batch_execute("ALTER TABLE events DISABLE TRIGGER events_append_only")
        .await
        .unwrap();
    let events = app
        .store
        .read_log(community, position, 10_000)
        .await
        .unwrap();
    let mut previous = events[0].previous_hash;
    for mut event in events {
        if event.position == position {
            let mut payload: Value = serde_json::from_str(event.payload.get()).unwrap();
            payload["forged"] = json!(true);
            event.payload = serde_json::value::to_raw_value(&payload).unwrap();
        }
        event.previous_hash = previous;
        let hash = store::verify::recompute_hash(&event).unwrap();
        client
            .execute(
                "UPDATE events SET payload = $1::text::jsonb, previous_hash = $2, hash = $3 \
                 WHERE community_id = $4 AND position = $5",
                &[
                    &event.payload.get(),
                    &&previous[..],
                    &&hash[..],
                    &community.as_uuid(),
                    &event.position,
                ],
            )
            .await
            .unwrap();
        previous = hash;
    }
    client
        .execute(
            "UPDATE community_heads SET last_hash = $1 WHERE community_id = $2",
            &[&&previous[..], &community.as_uuid()],
        )
        .await
        .unwrap();
}

#[tokio::test]
async fn seals_catch_a_history_rewritten_with_every_hash_recomputed() {
    let (app, counter, head) = history().await;
    let community = CommunityId::new(counter.f.community);
    let key = app.sealer.public_key();
    assert_eq!(app.sealer.tick().await.unwrap(), 1, "a first seal");
    assert_eq!(app.sealer.tick().await.unwrap(), 0, "nothing new to seal");
    app.grant(&counter.f, counter.f.resident_id, "1").await;
    let sealed = verify(&app.store, community, 1, i64::MAX, Some(key))
        .await
        .unwrap();
    assert!(sealed.is_intact(), "{sealed:?}");
    let published = app
        .ok(
            None,
            "query($c: UUID!) { sealPublicKey seals(communityId: $c) { position hash publicKey } }",
            json!({"c": counter.f.community}),
        )
        .await;
    assert_eq!(published["seals"][0]["position"], head);
    assert_eq!(
        published["seals"][0]["publicKey"],
        published["sealPublicKey"]
    );

    rewrite_history(&app, community, 3).await;
    let chain_only = app
        .store
        .verify_chain(community, 1, i64::MAX)
        .await
        .unwrap();
    assert!(chain_only.is_intact(), "the chain alone is fooled");
    let verified = verify(&app.store, community, 1, i64::MAX, Some(key))
        .await
        .unwrap();
    assert_eq!(
        failure_of(&verified),
        Some((head, "seal_mismatch".to_string()))
    );
    let export = exported(&app, counter.f.community).await;
    assert_eq!(
        verify_export(export.as_bytes(), Some(key)).unwrap(),
        verified,
        "and from the export"
    );
}

#[tokio::test]
async fn a_seal_without_its_signature_or_by_another_key_or_beyond_the_log_is_named() {
    let (app, counter, head) = history().await;
    let community = CommunityId::new(counter.f.community);
    let key = app.sealer.public_key();
    app.sealer.tick().await.unwrap();
    let export = exported(&app, counter.f.community).await;
    let stranger = [7_u8; 32];
    let untrusted = verify(&app.store, community, 1, i64::MAX, Some(stranger))
        .await
        .unwrap();
    assert_eq!(
        failure_of(&untrusted),
        Some((head, "seal_untrusted_key".to_string()))
    );

    let unsigned = lines_edited(&export, |lines| {
        let mut seal: Value = serde_json::from_str(&lines[0]).unwrap();
        seal["signature"] = json!("");
        lines[0] = seal.to_string();
    });
    let verified = verify_export(unsigned.as_bytes(), Some(key)).unwrap();
    assert_eq!(
        failure_of(&verified),
        Some((head, "seal_signature_invalid".to_string()))
    );

    // The last event cut off and the head row moved back to match.
    let client = app.db.client().await;
    let last = app
        .store
        .read_log(community, head - 1, 1)
        .await
        .unwrap()
        .remove(0);
    client
        .batch_execute("ALTER TABLE events DISABLE TRIGGER events_append_only")
        .await
        .unwrap();
    client
        .execute(
            "DELETE FROM events WHERE community_id = $1 AND position = $2",
            &[&community.as_uuid(), &head],
        )
        .await
        .unwrap();
    client
        .execute(
            "UPDATE community_heads SET last_position = $1, last_hash = $2 WHERE community_id = $3",
            &[&(head - 1), &&last.hash[..], &community.as_uuid()],
        )
        .await
        .unwrap();
    let truncated = verify(&app.store, community, 1, i64::MAX, Some(key))
        .await
        .unwrap();
    assert_eq!(
        failure_of(&truncated),
        Some((head, "seal_beyond_log".to_string()))
    );
}

#[tokio::test]
async fn the_trail_filters_by_actor_stream_type_and_time_and_the_past_is_folded_on_demand() {
    let app = TestApp::spawn().await;
    let counter = app.counter().await;
    let f = &counter.f;
    let gift = app.gift(&counter, "3", 5).await;
    let (report, _) = submit(&app, f, &f.resident, "RB-01", "FLOATING-GARBAGE").await;
    let accepted = accept(&app, f, &f.worker, report).await;
    let before_grant = app
        .wallet(&f.resident, f.community, f.resident_id, accepted)
        .await;
    let granted = app.grant(f, f.resident_id, "20").await;
    let (_, placed) = app
        .placed(&counter.clerk, f.community, f.resident_id, gift, "t-1")
        .await;
    let trial_then = app.trial_balance(f, placed).await;

    let trail = "query($c: UUID!, $f: AuditTrailFilter, $after: Int) {
        auditTrail(communityId: $c, filter: $f, first: 50, after: $after) {
            edges { node { position streamId eventType actorId actorRole client requestId hash } }
            pageInfo { hasNextPage } } }";
    let nodes = |data: &Value| -> Vec<Value> {
        data["auditTrail"]["edges"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["node"].clone())
            .collect()
    };
    let by_clerk = app
        .ok(
            Some(&f.auditor),
            trail,
            json!({"c": f.community, "f": {"actorId": counter.clerk_id}}),
        )
        .await;
    let clerk_events = nodes(&by_clerk);
    assert_eq!(
        clerk_events.len(),
        3,
        "the placement's three events: {by_clerk}"
    );
    assert!(clerk_events
        .iter()
        .all(|e| e["actorRole"] == "clerk" && e["position"].as_i64().unwrap() <= placed));
    let of_report = app
        .ok(
            Some(&f.auditor),
            trail,
            json!({"c": f.community, "f": {"streamId": format!("report-{report}")}}),
        )
        .await;
    let types: Vec<String> = nodes(&of_report)
        .iter()
        .map(|e| e["eventType"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(types, ["ReportSubmitted", "ReportAccepted"]);
    let grants = app
        .ok(
            Some(&f.auditor),
            trail,
            json!({"c": f.community, "f": {"eventType": "PointsGranted"}}),
        )
        .await;
    assert_eq!(
        nodes(&grants).len(),
        2,
        "the acceptance's grant and the admin's"
    );
    let page = app
        .ok(Some(&f.auditor), "query($c: UUID!) { auditTrail(communityId: $c, first: 2, after: 3) { edges { node { position } } pageInfo { hasNextPage } } }", json!({"c": f.community}))
        .await;
    assert_eq!(
        page["auditTrail"]["edges"],
        json!([{"node": {"position": 4}}, {"node": {"position": 5}}])
    );
    assert_eq!(page["auditTrail"]["pageInfo"]["hasNextPage"], true);
    let far_future = app
        .ok(
            Some(&f.auditor),
            trail,
            json!({"c": f.community, "f": {"from": "2099-01-01T00:00:00Z"}}),
        )
        .await;
    assert_eq!(nodes(&far_future), Vec::<Value>::new());
    let refused = app
        .gql(Some(&f.admin), trail, json!({"c": f.community}))
        .await;
    assert_eq!(crate::app::code_of(&refused), "FORBIDDEN");

    // More history, then the past as it was.
    app.grant(f, f.resident_id, "7").await;
    let wallet_as_of = "query($c: UUID!, $p: UUID!, $at: Int) { walletAsOf(communityId: $c, residentId: $p, asOf: {position: $at}) { position balance held } }";
    // Just before the admin's grant (two events: the wallet's, the budget's).
    let then = app
        .ok(
            Some(&f.resident),
            wallet_as_of,
            json!({"c": f.community, "p": f.resident_id, "at": granted - 2}),
        )
        .await;
    assert_eq!(then["walletAsOf"]["balance"], before_grant["balance"]);
    assert_eq!(then["walletAsOf"]["balance"], "5");
    let at_acceptance = app
        .ok(
            Some(&f.resident),
            wallet_as_of,
            json!({"c": f.community, "p": f.resident_id, "at": accepted}),
        )
        .await;
    assert_eq!(
        at_acceptance["walletAsOf"]["balance"], "0",
        "the earning came after"
    );
    let then = app
        .ok(
            Some(&f.auditor),
            wallet_as_of,
            json!({"c": f.community, "p": f.resident_id, "at": placed}),
        )
        .await;
    assert_eq!(
        then["walletAsOf"],
        json!({"position": placed, "balance": "25", "held": "3"})
    );
    let refused = app
        .gql(
            Some(&f.other_resident),
            wallet_as_of,
            json!({"c": f.community, "p": f.resident_id, "at": placed}),
        )
        .await;
    assert_eq!(crate::app::code_of(&refused), "FORBIDDEN");
    let report_as_of = "query($c: UUID!, $r: UUID!, $at: Int) { reportAsOf(communityId: $c, reportId: $r, asOf: {position: $at}) { state } }";
    let before = app
        .ok(
            Some(&f.auditor),
            report_as_of,
            json!({"c": f.community, "r": report, "at": accepted - 1}),
        )
        .await;
    assert_eq!(before["reportAsOf"]["state"], "submitted");
    let trial_as_of = "query($c: UUID!, $at: Int) { trialBalanceAsOf(communityId: $c, asOf: {position: $at}) { total accounts { account balance } } }";
    let folded = app
        .ok(
            Some(&f.auditor),
            trial_as_of,
            json!({"c": f.community, "at": placed}),
        )
        .await;
    assert_eq!(folded["trialBalanceAsOf"]["total"], "0");
    let issuing = |accounts: &Value| {
        accounts
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["account"] == "issuing")
            .unwrap()["balance"]
            .clone()
    };
    assert_eq!(
        issuing(&folded["trialBalanceAsOf"]["accounts"]),
        issuing(&trial_then["accounts"]),
        "the log folded to a position agrees with the read model at that position"
    );
    assert!(granted > accepted);
    let bad = app
        .gql(
            Some(&f.auditor),
            trial_as_of,
            json!({"c": f.community, "at": 1_000_000}),
        )
        .await;
    assert_eq!(crate::app::code_of(&bad), "VALIDATION");
}

#[tokio::test]
async fn a_replay_as_of_a_past_position_is_what_the_live_read_models_were_then() {
    let app = TestApp::spawn_quiet().await;
    let counter = app.counter().await;
    let f = &counter.f;
    let gift = app.gift(&counter, "2", 9).await;
    app.grant(f, f.resident_id, "30").await;
    let (report, _) = submit(&app, f, &f.resident, "RB-01", "FLOATING-GARBAGE").await;
    accept(&app, f, &f.admin, report).await;
    let (redemption, _) = app
        .placed(&counter.clerk, f.community, f.resident_id, gift, "r-1")
        .await;
    app.ok(
        Some(&counter.clerk),
        "mutation($c: UUID!, $r: UUID!) { completeRedemption(communityId: $c, redemptionId: $r) { status } }",
        json!({"c": f.community, "r": redemption}),
    )
    .await;
    let then = app.head(f.community).await;
    let community = CommunityId::new(f.community);
    let mut captured = std::collections::BTreeMap::new();
    for projection in projections::all() {
        let name = projection.name();
        assert!(projections::Progress::default()
            .wait_for(
                app.store.pool(),
                name,
                community,
                then,
                std::time::Duration::from_secs(10)
            )
            .await
            .unwrap());
        let live = projections::generation::live_schema(app.store.pool(), name)
            .await
            .unwrap();
        captured.insert(name, crate::projection_runner::dump(&app, &live).await);
    }

    // More history after the moment.
    app.grant(f, f.resident_id, "5").await;
    let (later, _) = submit(&app, f, &f.other_resident, "RB-02", "SEWAGE-OUTFALL").await;
    accept(&app, f, &f.admin, later).await;
    app.placed(&counter.clerk, f.community, f.resident_id, gift, "r-2")
        .await;

    let replayed = app::audit::replay::replay(&app.store, community, then)
        .await
        .unwrap();
    for projection in projections::all() {
        let name = projection.name();
        let schema = replayed.schema(name).unwrap();
        assert_eq!(
            crate::projection_runner::dump(&app, &schema).await,
            captured[name],
            "{name} replayed to {then} is what it was live at {then}"
        );
        // Only the live read model's tables and primary keys: a replay is
        // read once, by primary key or whole. Its tables are kept out of the
        // write-ahead log, as it is dropped after.
        let live = projections::generation::live_schema(app.store.pool(), name)
            .await
            .unwrap();
        let unlogged: Vec<String> = crate::projection_runner::layout(&app, &live)
            .await
            .into_iter()
            .filter(|line| {
                !line.starts_with("CREATE INDEX") && !line.starts_with("CREATE UNIQUE INDEX")
                    || line.contains("_pkey ")
            })
            .map(|line| {
                line.strip_suffix(" p")
                    .map_or(line.clone(), |t| format!("{t} u"))
            })
            .collect();
        assert_eq!(
            crate::projection_runner::layout(&app, &schema).await,
            unlogged,
            "{name}: replayed with the live tables and keys, unlogged"
        );
    }
    let summary = app::audit::replay::summary(&app.store, &replayed)
        .await
        .unwrap();
    assert_eq!(summary.trial_balance.total, "0");
    assert_eq!(
        summary.trial_balance.wallets, "28",
        "30 granted, 2 redeemed by then"
    );
    replayed.discard(&app.store).await.unwrap();
    let live = app.trial_balance(f, app.head(f.community).await).await;
    assert_eq!(
        live["wallets"], "33",
        "the live read models moved on, untouched"
    );

    let printed = crate::cli::civic_ledger()
        .args([
            "audit",
            "replay",
            "--community",
            &f.community.to_string(),
            "--to-position",
            &then.to_string(),
        ])
        .env("DATABASE_URL", app.db.url())
        .output()
        .unwrap();
    assert!(printed.status.success(), "{printed:?}");
    let printed: Value = serde_json::from_slice(&printed.stdout).unwrap();
    assert_eq!(printed["position"], then);
    assert_eq!(printed["trial_balance"]["wallets"], "28");
}

#[tokio::test]
async fn an_erased_resident_is_a_pseudonymous_id_and_the_history_still_verifies() {
    let app = TestApp::spawn().await;
    let counter = app.counter().await;
    let f = &counter.f;
    // A resident with a profile (display name, phone), who reports with
    // photos, comments, drops a suggestion and earns points.
    let phone = "+86 139-0013-9000";
    app.ok(
        None,
        "mutation($c: UUID!, $p: String!) { requestSignupCode(communityId: $c, phone: $p, displayName: \"王大爷\") { expiresInSeconds } }",
        json!({"c": f.community, "p": phone}),
    )
    .await;
    let code = app.codes.last_for("+8613900139000");
    let signed_in = app
        .ok(
            None,
            "mutation($c: UUID!, $p: String!, $k: String!) { verifySignupCode(communityId: $c, phone: $p, code: $k) { token personId } }",
            json!({"c": f.community, "p": phone, "k": code}),
        )
        .await;
    let token = signed_in["verifySignupCode"]["token"]
        .as_str()
        .unwrap()
        .to_string();
    let resident: Uuid = signed_in["verifySignupCode"]["personId"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let (report, _) = submit(&app, f, &token, "RB-01", "FLOATING-GARBAGE").await;
    crate::app::act(
        &app,
        f,
        &token,
        "commentOnReport(text: \"我家住在3号楼，电话13900139000\")",
        report,
    )
    .await;
    app.ok(
        Some(&token),
        "mutation($c: UUID!) { submitSuggestion(communityId: $c, siteCode: \"MS-01\", text: \"王大爷建议多装路灯\") { position } }",
        json!({"c": f.community}),
    )
    .await;
    let accepted = accept(&app, f, &f.admin, report).await;
    app.wallet(&token, f.community, resident, accepted).await;
    let community = CommunityId::new(f.community);
    let sealed = app.sealer.tick().await.unwrap();
    assert_eq!(sealed, 1);
    let totals_before = app.trial_balance(f, app.head(f.community).await).await;
    let head_before = app.store.head(community).await.unwrap();

    let erase = "mutation($c: UUID!, $p: UUID!) { eraseResident(communityId: $c, residentId: $p, reason: \"本人申请删除个人信息\") { contentsErased profileErased } }";
    let vars = json!({"c": f.community, "p": resident});
    for other in [&f.auditor, &counter.clerk, &token] {
        let refused = app.gql(Some(other), erase, vars.clone()).await;
        assert_eq!(crate::app::code_of(&refused), "FORBIDDEN", "{refused}");
    }
    let erased = app.ok(Some(&f.admin), erase, vars).await;
    assert_eq!(
        erased["eraseResident"],
        json!({"contentsErased": 4, "profileErased": true}),
        "the report's text and photos, the comment and the suggestion"
    );

    // What they wrote is gone; they are an id on the boards.
    let read = app
        .ok(
            Some(&f.admin),
            "query($c: UUID!, $r: UUID!) { report(communityId: $c, reportId: $r) { text photos } }",
            json!({"c": f.community, "r": report}),
        )
        .await;
    assert_eq!(read["report"], json!({"text": null, "photos": []}));
    // As fresh as the log: the grant came after the acceptance.
    let board = app
        .ok(None, "query($c: UUID!, $p: Int) { leaderboard(communityId: $c, by: POINTS_EARNED, period: ALL_TIME, atLeast: $p) { entries { name } } }", json!({"c": f.community, "p": app.head(f.community).await}))
        .await;
    let name = board["leaderboard"]["entries"][0]["name"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        name.starts_with("resident-"),
        "no display name after erasure: {name}"
    );
    let client = app.db.client().await;
    let profile = client
        .query_one(
            "SELECT phone, phone_hash, display_name, erased_at IS NOT NULL FROM profiles WHERE community_id = $1 AND person_id = $2",
            &[&f.community, &resident],
        )
        .await
        .unwrap();
    assert_eq!(profile.get::<_, Option<String>>(0), None);
    assert_eq!(profile.get::<_, Option<Vec<u8>>>(1), None);
    assert_eq!(profile.get::<_, Option<String>>(2), None);
    assert!(profile.get::<_, bool>(3));

    // The log, its hashes, its seal and every total are as they were; the
    // erasures themselves were appended to the chain, one event a piece.
    let head_after = app.store.head(community).await.unwrap();
    assert_eq!(head_after.position, head_before.position + 4);
    let recorded = app
        .store
        .read_log(community, head_before.position + 1, 10)
        .await
        .unwrap();
    assert_eq!(recorded.len(), 4);
    for event in &recorded {
        assert_eq!(event.event_type, "ContentErased");
        let payload = event.payload_value().unwrap();
        assert_eq!(payload["ContentErased"]["reason"], "本人申请删除个人信息");
        assert_eq!(
            event.metadata.get("actor_role").map(String::as_str),
            Some("admin")
        );
    }
    assert_eq!(
        recorded[0].previous_hash, head_before.hash,
        "appended after the history, which is as it was"
    );
    let verified = verify(
        &app.store,
        community,
        1,
        i64::MAX,
        Some(app.sealer.public_key()),
    )
    .await
    .unwrap();
    assert!(verified.is_intact(), "{verified:?}");
    let mut totals_after = app.trial_balance(f, head_before.position).await;
    let mut totals_before = totals_before;
    // The balance is read as fresh as the log, which the erasures moved on.
    totals_after["position"] = Value::Null;
    totals_before["position"] = Value::Null;
    assert_eq!(totals_after, totals_before);
    let export = exported(&app, f.community).await;
    let erasures: Vec<Value> = export
        .lines()
        .map(|line| serde_json::from_str::<Value>(line).unwrap())
        .filter(|line| line["type"] == "erasure")
        .collect();
    assert_eq!(erasures.len(), 4);
    assert!(erasures
        .iter()
        .all(|e| e["reason"] == "本人申请删除个人信息"
            && e["erased_by"].as_str().unwrap().starts_with("admin:")));
    assert!(
        !export.contains("13900139000") && !export.contains("王大爷"),
        "no personal data in the export"
    );
    assert_eq!(
        verify_export(export.as_bytes(), Some(app.sealer.public_key())).unwrap(),
        verified
    );
}

/// What `docs/verify_export.py` (the auditor's own tool, with no code of
/// ours) says of an export: its last line.
fn python_verdict(export: &str) -> String {
    python_verdict_with_key(export, "")
}

/// [`python_verdict`] with a pinned public key (hex; empty for none).
fn python_verdict_with_key(export: &str, key: &str) -> String {
    python_verdict_with_seals(export, key, "")
}

/// [`python_verdict_with_key`], also given the seals an auditor collected
/// (one JSON seal a line; empty for none).
fn python_verdict_with_seals(export: &str, key: &str, seals: &str) -> String {
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), export).unwrap();
    let seals_file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(seals_file.path(), seals).unwrap();
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/verify_export.py");
    let mut command = std::process::Command::new("python3");
    command.arg(script).arg(file.path());
    if !key.is_empty() {
        command.arg(key);
    }
    if !seals.is_empty() {
        command.arg("--seals").arg(seals_file.path());
    }
    let output = command.output().expect("python3 runs the auditor's script");
    String::from_utf8(output.stdout)
        .unwrap()
        .trim()
        .lines()
        .last()
        .unwrap_or_default()
        .to_string()
}

/// Every erasure is an event in the chain: an export's erasure lines are
/// checked against them, so a line edited, added or dropped is named by
/// our verifier and by the auditor's script alike; a tombstone written in
/// the database without its event is named too.
#[tokio::test]
async fn an_erasure_line_edited_added_or_dropped_is_named_by_both_verifiers() {
    let app = TestApp::spawn_quiet().await;
    let f = app.fixture().await;
    let (report, _) = crate::app::submit(&app, &f, &f.resident, "RB-01", "FLOATING-GARBAGE").await;
    let redact = crate::app::report_mutation("redactReportText", "position");
    let redacted = app
        .ok(
            Some(&f.admin),
            &redact,
            json!({"c": f.community, "r": report}),
        )
        .await;
    let erased_at = app.head(f.community).await;
    assert!(erased_at > redacted["redactReportText"]["position"].as_i64().unwrap());
    let export = exported(&app, f.community).await;
    let intact = verify_export(export.as_bytes(), None).unwrap();
    assert!(intact.is_intact() && intact.erasures_checked, "{intact:?}");
    assert!(
        python_verdict(&export).starts_with("intact"),
        "{}",
        python_verdict(&export)
    );
    let erasure_line = export
        .lines()
        .position(|l| l.contains("\"type\":\"erasure\""))
        .unwrap();
    let cases: [(&str, String, (i64, &str), &str); 3] = [
        (
            "an erasure line's reason edited",
            lines_edited(&export, |lines| {
                lines[erasure_line] =
                    lines[erasure_line].replace("redacted by a moderator", "asked by the resident");
            }),
            (erased_at, "erasure_mismatch"),
            "erasure mismatch",
        ),
        (
            "an erasure line dropped",
            lines_edited(&export, |lines| {
                lines.remove(erasure_line);
            }),
            (erased_at, "erasure_tombstone_missing"),
            "erasure tombstone missing",
        ),
        (
            "an erasure line added",
            lines_edited(&export, |lines| {
                let added = lines[erasure_line].replace(
                    &lines[erasure_line]
                        [lines[erasure_line].find("\"content_hash\":\"").unwrap() + 16..][..64],
                    &"7".repeat(64),
                );
                lines.insert(erasure_line, added);
            }),
            (0, "erasure_unrecorded"),
            "erasure unrecorded",
        ),
    ];
    for (what, edited, (position, name), words) in cases {
        let verified = verify_export(edited.as_bytes(), None).unwrap();
        assert_eq!(
            failure_of(&verified),
            Some((position, name.to_string())),
            "{what}"
        );
        let verdict = python_verdict(&edited);
        assert_eq!(
            verdict,
            format!("fails at position {position}: {words}"),
            "{what}"
        );
    }
    // A partial export cannot tell, and says so (anchored on a seal the
    // auditor pins, else it would not hold at all).
    let key = app.sealer.public_key();
    let sealed = app
        .ok(
            Some(&f.admin),
            "mutation($c: UUID!) { sealNow(communityId: $c) { position } }",
            json!({"c": f.community}),
        )
        .await;
    let sealed_at = sealed["sealNow"]["position"].as_i64().unwrap();
    let (after, _) = crate::app::submit(&app, &f, &f.resident, "RB-01", "FLOATING-GARBAGE").await;
    assert_ne!(after, report);
    let mut partial = Vec::new();
    export_range(&app, f.community, sealed_at + 1, &mut partial).await;
    let partial = String::from_utf8(partial).unwrap();
    let report = verify_export(partial.as_bytes(), Some(key)).unwrap();
    assert!(report.is_intact() && !report.erasures_checked, "{report:?}");
    assert!(python_verdict_with_key(&partial, &hex::encode(key)).starts_with("intact"));

    // A tombstone written straight into the database, with no event.
    let text = app
        .db
        .client()
        .await
        .query_one(
            "SELECT encode(content_hash, 'hex') FROM contents WHERE community_id = $1 AND erased_at IS NULL LIMIT 1",
            &[&f.community],
        )
        .await
        .unwrap()
        .get::<_, String>(0);
    let community = CommunityId::new(f.community);
    app.store
        .erase_content(
            community,
            store::ContentHash::parse(&text).unwrap(),
            "dba",
            "by hand",
        )
        .await
        .unwrap();
    let verified = verify(&app.store, community, 1, i64::MAX, None)
        .await
        .unwrap();
    assert_eq!(
        failure_of(&verified),
        Some((0, "erasure_unrecorded".to_string()))
    );
}

async fn export_range(app: &TestApp, community: Uuid, from: i64, out: &mut Vec<u8>) {
    export(&app.store, CommunityId::new(community), from, i64::MAX, out)
        .await
        .unwrap();
}

/// An admin asks for a seal now, whatever the policy; nobody else may.
#[tokio::test]
async fn an_admin_seals_the_head_now_and_no_one_else_may() {
    let app = TestApp::spawn_quiet().await;
    let f = app.fixture().await;
    let seal_now = "mutation($c: UUID!) { sealNow(communityId: $c) { position hash publicKey } }";
    let vars = json!({"c": f.community});
    for (who, token, code) in [
        ("an auditor", Some(&f.auditor), "FORBIDDEN"),
        ("a resident", Some(&f.resident), "FORBIDDEN"),
        (
            "another community's admin",
            Some(&f.foreign_admin),
            "FORBIDDEN",
        ),
        ("anyone", None, "UNAUTHENTICATED"),
    ] {
        let refused = app
            .gql(token.map(String::as_str), seal_now, vars.clone())
            .await;
        assert_eq!(crate::app::code_of(&refused), code, "{who}: {refused}");
    }
    let head = app.head(f.community).await;
    let sealed = app.ok(Some(&f.admin), seal_now, vars.clone()).await;
    assert_eq!(sealed["sealNow"]["position"], json!(head));
    assert_eq!(
        sealed["sealNow"]["publicKey"],
        json!(hex::encode(app.sealer.public_key()))
    );
    let again = app.ok(Some(&f.admin), seal_now, vars).await;
    assert_eq!(again, sealed, "the head is sealed already: the same seal");
    let community = CommunityId::new(f.community);
    let verified = verify(
        &app.store,
        community,
        1,
        i64::MAX,
        Some(app.sealer.public_key()),
    )
    .await
    .unwrap();
    assert!(verified.is_intact(), "{verified:?}");
    let seals = app::audit::all_seals(&app.store, community).await.unwrap();
    assert_eq!(seals.len(), 1);
    assert_eq!(seals[0].position, head);
}

/// One list of failures: the code's, the document's and the schema's are
/// the same names.
#[test]
fn every_failure_name_is_in_the_document_and_the_schema_and_no_other() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let document = std::fs::read_to_string(root.join("docs/AUDIT.md")).unwrap();
    let table = |heading: &str| -> std::collections::BTreeSet<(String, String)> {
        let section = &document[document.find(heading).unwrap()..];
        let section = &section[..section[3..].find("\n## ").unwrap()];
        section
            .lines()
            .filter_map(|line| line.strip_prefix("| `"))
            .filter_map(|line| {
                let (name, meaning) = line.split_once("` | ")?;
                Some((name.to_string(), meaning.trim_end_matches(" |").to_string()))
            })
            .collect()
    };
    let listed = |failures: &[(&str, &str)]| -> std::collections::BTreeSet<(String, String)> {
        failures
            .iter()
            .map(|(name, meaning)| (name.to_string(), meaning.to_string()))
            .collect()
    };
    assert_eq!(
        table("## Failures"),
        listed(app::audit::FAILURES),
        "docs/AUDIT.md's Failures table"
    );
    assert_eq!(
        table("## Receipts and extensions"),
        listed(app::audit::proofs::PROOF_FAILURES),
        "docs/AUDIT.md's table of what a proof check names"
    );
    let listed: std::collections::BTreeSet<&str> =
        app::audit::FAILURES.iter().map(|(name, _)| *name).collect();
    let schema = civic_ledger::graphql::sdl();
    let described = &schema[schema.find("type AuditFailure").unwrap()..];
    let described = &described[..described.find('}').unwrap()];
    let words: std::collections::BTreeSet<&str> = described
        .split(|c: char| !(c.is_ascii_lowercase() || c == '_'))
        .collect();
    for name in &listed {
        assert!(
            words.contains(name),
            "the schema's AuditFailure.what lacks {name}"
        );
    }
    for word in words.iter().filter(|word| word.contains('_')) {
        assert!(
            listed.contains(word),
            "the schema names {word}, which is no failure"
        );
    }
}

/// Whatever an export holds, the verifier answers with a report.
#[tokio::test]
async fn a_broken_line_or_an_unsigned_seal_is_a_failure_in_the_report_not_a_refusal() {
    let (app, counter, _) = history().await;
    app.sealer.tick().await.unwrap();
    let export = exported(&app, counter.f.community).await;
    let seal_line = export
        .lines()
        .position(|l| l.contains("\"type\":\"seal\""))
        .unwrap();
    let seal: Value = serde_json::from_str(export.lines().nth(seal_line).unwrap()).unwrap();
    let sealed_at = seal["position"].as_i64().unwrap();
    let event_line = export
        .lines()
        .position(|l| l.contains("\"type\":\"event\""))
        .unwrap();
    let cases: [(&str, String, (i64, &str)); 4] = [
        (
            "a seal without its signature",
            lines_edited(&export, |lines| {
                let mut seal: Value = serde_json::from_str(&lines[seal_line]).unwrap();
                seal.as_object_mut().unwrap().remove("signature");
                lines[seal_line] = seal.to_string();
            }),
            (sealed_at, "seal_signature_invalid"),
        ),
        (
            "a seal whose signature is not hex",
            lines_edited(&export, |lines| {
                let mut seal: Value = serde_json::from_str(&lines[seal_line]).unwrap();
                seal["signature"] = json!("not hex");
                lines[seal_line] = seal.to_string();
            }),
            (sealed_at, "seal_signature_invalid"),
        ),
        (
            "an event line cut in half",
            lines_edited(&export, |lines| {
                let line = &lines[event_line + 3];
                lines[event_line + 3] = line[..line.len() / 2].to_string();
            }),
            (4, "malformed_line"),
        ),
        (
            "a line of an unknown type",
            lines_edited(&export, |lines| {
                lines.insert(event_line + 1, "{\"type\":\"note\"}".to_string());
            }),
            (2, "malformed_line"),
        ),
    ];
    for (what, edited, (position, name)) in cases {
        let report = verify_export(edited.as_bytes(), None).expect("a report, not a refusal");
        assert_eq!(
            failure_of(&report),
            Some((position, name.to_string())),
            "{what}"
        );
    }
}

/// The export carries exactly the characters hashed: the auditor's script,
/// copying every string as it is, recomputes every hash of a long export,
/// timestamps ending in zeros included, and every seal's message.
#[tokio::test]
async fn every_hash_of_a_long_export_is_recomputed_from_its_strings_alone() {
    let app = TestApp::spawn_quiet().await;
    let f = app.fixture().await;
    let community = CommunityId::new(f.community);
    // One transaction each, so that each has a time of its own.
    for n in 0..400 {
        let request = AppendRequest::new(community).stream(
            StreamId::parse(format!("note-{n}")).unwrap(),
            StreamType::parse("Note").unwrap(),
            ExpectedVersion::NoStream,
            vec![NewEvent::new(
                EventType::parse("NoteWritten").unwrap(),
                json!({"NoteWritten": {"n": n, "text": "河长日志 ✓"}}),
            )],
        );
        app.store.append(request).await.unwrap();
    }
    app.sealer.tick().await.unwrap();
    let export = exported(&app, f.community).await;
    let times: Vec<String> = export
        .lines()
        .map(|line| serde_json::from_str::<Value>(line).unwrap())
        .filter_map(|line| {
            line["recorded_at"]
                .as_str()
                .or(line["sealed_at"].as_str())
                .map(str::to_string)
        })
        .collect();
    assert!(times.len() > 400);
    for time in &times {
        assert_eq!(time.len(), "2026-12-07T08:30:00.123456Z".len(), "{time}");
        assert!(time.ends_with('Z'), "{time}");
    }
    assert!(
        times.iter().any(|time| time.ends_with("0Z")),
        "some time ends in a zero the short form would have dropped"
    );
    let verdict = python_verdict(&export);
    assert!(verdict.starts_with("intact"), "{verdict}");
}

/// Cutting an export's front, stripping its seals after a rewrite, and
/// re-signing them with another key: each is named, by our verifier and
/// by the auditor's script, once the auditor pins the key or gives the
/// seals they collected.
#[tokio::test]
async fn a_cut_front_stripped_seals_and_seals_signed_by_another_key_are_named() {
    let (app, counter, head) = history().await;
    let community = counter.f.community;
    let key = app.sealer.public_key();
    let sealed = app
        .ok(
            Some(&counter.f.admin),
            "mutation($c: UUID!) { sealNow(communityId: $c) { position } }",
            json!({"c": community}),
        )
        .await;
    assert_eq!(sealed["sealNow"]["position"], json!(head));
    let export = exported(&app, community).await;
    let intact = verify_export(export.as_bytes(), Some(key)).unwrap();
    assert!(
        intact.is_intact() && intact.seals_trusted && intact.seals_checked == 1,
        "{intact:?}"
    );
    let unpinned = verify_export(export.as_bytes(), None).unwrap();
    assert!(
        unpinned.is_intact() && !unpinned.seals_trusted,
        "{unpinned:?}"
    );
    assert_eq!(
        python_verdict(&export),
        "intact: ".to_string() + &head.to_string() + " events"
    );
    let collected: Vec<store::Seal> = export
        .lines()
        .filter(|l| l.contains("\"type\":\"seal\""))
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let first_event = export
        .lines()
        .position(|l| l.contains("\"type\":\"event\""))
        .unwrap();

    // The first three events cut: the head line says the export starts at 1.
    let cut = lines_edited(&export, |lines| {
        lines.drain(first_event..first_event + 3);
    });
    assert_eq!(
        failure_of(&verify_export(cut.as_bytes(), Some(key)).unwrap()),
        Some((1, "missing_position".into()))
    );
    assert_eq!(
        python_verdict(&cut),
        "fails at position 1: missing position"
    );
    // ...and with the head line's start edited to match: unanchored.
    let cut_and_relabelled = cut.replace("\"from_position\":1", "\"from_position\":4");
    assert_eq!(
        failure_of(&verify_export(cut_and_relabelled.as_bytes(), Some(key)).unwrap()),
        Some((4, "unanchored_start".into()))
    );
    assert_eq!(
        python_verdict_with_key(&cut_and_relabelled, &hex::encode(key)),
        "fails at position 4: unanchored start"
    );

    // A rewrite of the last event with its hash and the head recomputed,
    // and the seal lines stripped: only the auditor's own seals catch it.
    let rewritten = rewrite_last_event(&export);
    let stripped = lines_edited(&rewritten, |lines| {
        lines.retain(|l| !l.contains("\"type\":\"seal\""))
    });
    let unseen = verify_export(stripped.as_bytes(), Some(key)).unwrap();
    assert!(unseen.is_intact(), "nothing to catch it with: {unseen:?}");
    let with_collected =
        app::audit::export::verify_export_with(stripped.as_bytes(), Some(key), collected.clone())
            .unwrap();
    assert_eq!(
        failure_of(&with_collected),
        Some((head, "seal_mismatch".into()))
    );
    let seal_lines: String = export
        .lines()
        .filter(|l| l.contains("\"type\":\"seal\""))
        .map(|l| l.to_string() + "\n")
        .collect();
    assert!(python_verdict_with_key(&stripped, &hex::encode(key)).starts_with("intact"));
    assert_eq!(
        python_verdict_with_seals(&stripped, &hex::encode(key), &seal_lines),
        format!("fails at position {head}: seal mismatch")
    );

    // The seals re-signed with another key over the rewritten head.
    let forger = ed25519_dalek::SigningKey::from_bytes(&[7; 32]);
    let resigned = lines_edited(&rewritten, |lines| {
        for line in lines.iter_mut().filter(|l| l.contains("\"type\":\"seal\"")) {
            let mut seal: store::Seal = serde_json::from_str(line).unwrap();
            let last: Value = serde_json::from_str(
                rewritten
                    .lines()
                    .rev()
                    .find(|l| l.contains("\"type\":\"event\""))
                    .unwrap(),
            )
            .unwrap();
            seal.hash = hex::decode(last["hash"].as_str().unwrap())
                .unwrap()
                .try_into()
                .unwrap();
            // A careful forger recomputes the tree's root too.
            let mut tree = store::merkle::Frontier::default();
            for event in rewritten
                .lines()
                .filter(|l| l.contains("\"type\":\"event\""))
            {
                let event: store::RecordedEvent = serde_json::from_str(event).unwrap();
                if event.position <= seal.position {
                    tree.push(&event.hash, |_, _| {});
                }
            }
            seal.tree_root = Some(tree.root());
            seal.public_key = forger.verifying_key().to_bytes();
            use ed25519_dalek::Signer;
            seal.signature = forger.sign(&seal.signed_message()).to_bytes().to_vec();
            let mut value = serde_json::to_value(&seal).unwrap();
            value["type"] = "seal".into();
            value["sealed_at"] = store::canonical::timestamp_text(seal.sealed_at).into();
            *line = value.to_string();
        }
    });
    assert!(
        verify_export(resigned.as_bytes(), None)
            .unwrap()
            .is_intact(),
        "unpinned, a forger's seal holds"
    );
    assert_eq!(
        failure_of(&verify_export(resigned.as_bytes(), Some(key)).unwrap()),
        Some((head, "seal_untrusted_key".into()))
    );
    assert_eq!(
        python_verdict_with_key(&resigned, &hex::encode(key)),
        format!("fails at position {head}: seal signature invalid or untrusted")
    );
}

/// The export with its last event's payload changed and its hash and the
/// head's recomputed, as a writer with database access could.
fn rewrite_last_event(export: &str) -> String {
    let mut lines: Vec<String> = export.lines().map(str::to_string).collect();
    let at = lines
        .iter()
        .rposition(|l| l.contains("\"type\":\"event\""))
        .unwrap();
    let mut value: Value = serde_json::from_str(&lines[at]).unwrap();
    let kind = value["event_type"].as_str().unwrap().to_string();
    value["payload"][&kind]["rewritten"] = json!(true);
    let event: store::RecordedEvent = serde_json::from_value(value.clone()).unwrap();
    let hash = store::verify::recompute_hash(&event).unwrap();
    value["hash"] = json!(hex::encode(hash));
    lines[at] = value.to_string();
    let head_at = lines
        .iter()
        .position(|l| l.contains("\"type\":\"head\""))
        .unwrap();
    let mut head: Value = serde_json::from_str(&lines[head_at]).unwrap();
    head["hash"] = json!(hex::encode(hash));
    lines[head_at] = head.to_string();
    lines.join("\n")
}

/// A piece of content as stored, salt included, lets an auditor check the
/// hash an event carries, with the recipe docs/AUDIT.md gives (run here in
/// Python, apart from our code); residents may not read it.
#[tokio::test]
async fn an_auditor_checks_a_salted_content_hash_from_the_piece_as_stored() {
    let app = TestApp::spawn_quiet().await;
    let f = app.fixture().await;
    let text = "桥下有\"一堆\"垃圾\n第二行\t还有 \\ 反斜杠";
    let report = json!({"siteCode": "RB-01", "category": "FLOATING-GARBAGE", "text": text});
    let filed = app
        .ok(
            Some(&f.resident),
            crate::app::SUBMIT,
            json!({"c": f.community, "r": report}),
        )
        .await;
    let position = filed["submitReport"]["position"].as_i64().unwrap();
    let event = app
        .store
        .read_log(CommunityId::new(f.community), position, 1)
        .await
        .unwrap()
        .remove(0);
    let hash = event.payload_value().unwrap()["ReportSubmitted"]["text"]
        .as_str()
        .unwrap()
        .to_string();
    let query = "query($c: UUID!, $h: String!) { contentPiece(communityId: $c, hash: $h) { hash stored erasedBy } }";
    let vars = json!({"c": f.community, "h": hash});
    let refused = app.gql(Some(&f.resident), query, vars.clone()).await;
    assert_eq!(crate::app::code_of(&refused), "FORBIDDEN");
    let piece = app.ok(Some(&f.auditor), query, vars.clone()).await;
    let stored = piece["contentPiece"]["stored"]
        .as_str()
        .unwrap()
        .to_string();
    let parsed: Value = serde_json::from_str(&stored).unwrap();
    assert_eq!(parsed["text"], text);
    let salt = parsed["salt"].as_str().unwrap().to_string();
    assert_eq!(salt.len(), 32);
    // The recipe: the JSON object {"salt": …, "text": …}, in that order,
    // no spaces, non-ASCII as itself; its SHA-256 is the hash.
    let recipe = "import hashlib, json, sys\n\
        salt, text = sys.argv[1], sys.argv[2]\n\
        piece = json.dumps({'salt': salt, 'text': text}, ensure_ascii=False, separators=(',', ':'))\n\
        print(hashlib.sha256(piece.encode('utf-8')).hexdigest())";
    let output = std::process::Command::new("python3")
        .args(["-c", recipe, &salt, text])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8(output.stdout).unwrap().trim(), hash);

    let redact = crate::app::report_mutation("redactReportText", "position");
    let report_id = filed["submitReport"]["reportId"].as_str().unwrap();
    app.ok(
        Some(&f.admin),
        &redact,
        json!({"c": f.community, "r": report_id}),
    )
    .await;
    let erased = app.ok(Some(&f.auditor), query, vars).await;
    assert_eq!(erased["contentPiece"]["stored"], Value::Null);
    assert!(erased["contentPiece"]["erasedBy"].is_string(), "{erased}");
}

/// The counter's hold rules, as the domain applies them, are the rules the
/// ledger check applies: a completion after the hold ran out and a release
/// before it are named where they happened (the domain refuses both, so
/// they are forged here through the store).
#[tokio::test]
async fn a_hold_completed_late_or_released_early_is_named_where_it_happened() {
    for (late, event_type, name) in [
        (true, "RedemptionCompleted", "hold_completed_late"),
        (false, "RedemptionReleased", "hold_released_early"),
    ] {
        let (app, counter, _) = history().await;
        let f = &counter.f;
        let community = CommunityId::new(f.community);
        let gift = app.gift(&counter, "1", 5).await;
        let (redemption, placed) = app
            .placed(
                &counter.clerk,
                f.community,
                f.resident_id,
                gift,
                &format!("hold-{name}"),
            )
            .await;
        let redemption = redemption.as_str().unwrap().to_string();
        let placement = app
            .store
            .read_stream(community, &format!("redemption-{redemption}"), 1, 1)
            .await
            .unwrap()
            .remove(0);
        let expires_at = placement.payload_value().unwrap()["RedemptionPlaced"]["expires_at"]
            .as_i64()
            .unwrap();
        // Eleven minutes past the hold, or one before it ran out.
        let at = if late {
            expires_at + 11 * 60_000_000
        } else {
            expires_at - 60_000_000
        };
        let body = match event_type {
            "RedemptionCompleted" => json!({"RedemptionCompleted": {
                "by": {"person": Uuid::new_v4(), "role": "clerk"}, "at": at}}),
            _ => json!({"RedemptionReleased": {"at": at}}),
        };
        let request = AppendRequest::new(community).stream(
            StreamId::parse(format!("redemption-{redemption}")).unwrap(),
            StreamType::parse("Redemption").unwrap(),
            ExpectedVersion::Exact(1),
            vec![NewEvent::new(EventType::parse(event_type).unwrap(), body)],
        );
        let forged = app.store.append(request).await.unwrap().last_position;
        assert!(forged > placed);
        let verified = verify(&app.store, community, 1, i64::MAX, None)
            .await
            .unwrap();
        assert_eq!(
            failure_of(&verified),
            Some((forged, name.to_string())),
            "{event_type}"
        );
    }
}
