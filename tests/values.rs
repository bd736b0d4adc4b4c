//! Values as hostile clients and careless operators type them: one rule for
//! text, one grammar for decimals in, one canonical form out.

use serde_json::{json, Value};

use crate::app::*;

const FUND: &str = "mutation($c: UUID!, $a: String!) { fundBudget(communityId: $c, amount: $a, note: \"预算\") { position } }";
const GRANT: &str = "mutation($c: UUID!, $p: UUID!, $a: String!) { grantPoints(communityId: $c, residentId: $p, amount: $a, reason: \"志愿服务\") { amount balance } }";

#[tokio::test]
async fn control_characters_invisible_names_and_bidi_overrides_are_refused_by_one_rule() {
    let app = TestApp::spawn_quiet().await;
    let f = app.fixture().await;
    let c = f.community;
    let report = |text: &str| json!({"c": c, "r": {"siteCode": "RB-01", "category": "FLOATING-GARBAGE", "text": text}});
    let grid = |name: &str| json!({"c": c, "name": name, "parent": null});
    let filter = "query($c: UUID!, $k: String) { reports(communityId: $c, filter: {category: $k}) { edges { cursor } } }";
    let literal_nul = "query($c: UUID!) { reports(communityId: $c, filter: {category: \"A\\u0000B\"}) { edges { cursor } } }";
    let signup = "mutation($c: UUID!, $n: String!) { requestSignupCode(communityId: $c, phone: \"13800138000\", displayName: $n) { expiresInSeconds } }";
    let resident = Some(f.resident.as_str());
    let admin = Some(f.admin.as_str());
    let before = app.db.event_count().await;
    let table: Vec<(&str, Option<&str>, &str, Value)> = vec![
        ("NUL in a report", resident, SUBMIT, report("垃圾\u{0}")),
        ("a bell in a report", resident, SUBMIT, report("垃圾\u{7}")),
        (
            "C1 control in a report",
            resident,
            SUBMIT,
            report("垃圾\u{85}x"),
        ),
        (
            "bidi override in a report",
            resident,
            SUBMIT,
            report("垃圾\u{202E}txt.exe"),
        ),
        (
            "only zero-width spaces",
            resident,
            SUBMIT,
            report("\u{200B}\u{200B}"),
        ),
        ("only a BOM", resident, SUBMIT, report("\u{FEFF}")),
        (
            "NUL in a filter",
            resident,
            filter,
            json!({"c": c, "k": "A\u{0}"}),
        ),
        (
            "NUL written in the query",
            resident,
            literal_nul,
            json!({"c": c}),
        ),
        ("a newline in a name", admin, SETUP_GRID, grid("Grid\n9")),
        ("a zero-width name", admin, SETUP_GRID, grid("\u{200D}")),
        (
            "a bidi-isolated name",
            admin,
            SETUP_GRID,
            grid("\u{2067}Grid"),
        ),
        (
            "a BOM-only display name",
            None,
            signup,
            json!({"c": c, "n": "\u{FEFF} "}),
        ),
        (
            "NUL in a display name",
            None,
            signup,
            json!({"c": c, "n": "王\u{0}"}),
        ),
    ];
    for (what, token, query, variables) in table {
        let answer = app.gql(token, query, variables).await;
        assert_eq!(code_of(&answer), "VALIDATION", "{what}: {answer}");
    }
    assert_eq!(app.db.event_count().await, before, "nothing was stored");
    // Tabs and line breaks stay allowed in texts; invisible edges are trimmed.
    let fine = app
        .gql(resident, SUBMIT, report("\u{FEFF}第一行\n\t第二行\u{200B}"))
        .await;
    assert_eq!(code_of(&fine), "OK", "{fine}");
    app.stop().await;
}

#[tokio::test]
async fn decimals_in_follow_one_grammar_and_leave_in_one_form() {
    let app = TestApp::spawn().await;
    let f = app.fixture().await;
    let c = f.community;
    let before = app.db.event_count().await;
    for bad in [
        "1e3",
        "1_000",
        "-5",
        "+5",
        "12.345",
        "1.",
        ".5",
        "1 000",
        "0x10",
        "99999999999",
        "",
        "1.2.3",
        "NaN",
    ] {
        let answer = app
            .gql(Some(&f.admin), FUND, json!({"c": c, "a": bad}))
            .await;
        assert_eq!(code_of(&answer), "VALIDATION", "{bad:?}: {answer}");
    }
    let category = "mutation($c: UUID!, $k: CategoryInput!) { defineCategory(communityId: $c, category: $k) { id } }";
    for points in ["999999999999", "1000000000.01", "-1", "1e2"] {
        let k = json!({"code": "DUMPING", "name": "倾倒垃圾", "firstResponseHours": 4,
            "resolutionHours": 48, "acceptedReportPoints": points});
        let answer = app
            .gql(Some(&f.admin), category, json!({"c": c, "k": k}))
            .await;
        assert_eq!(code_of(&answer), "VALIDATION", "{points}: {answer}");
    }
    assert_eq!(app.db.event_count().await, before, "nothing was stored");

    // The trial balance of a community with no points yet names every
    // account, each "0".
    let trial = app.trial_balance(&f, app.head(c).await).await;
    assert_eq!(
        trial["accounts"],
        json!([{"account": "minted", "balance": "0"}, {"account": "issuing", "balance": "0"},
            {"account": "redeemed", "balance": "0"}, {"account": "expired", "balance": "0"},
            {"account": "reversed", "balance": "0"}])
    );
    assert_eq!(trial["total"], "0");

    app.ok(Some(&f.admin), FUND, json!({"c": c, "a": "19246.00"}))
        .await;
    let granted = app
        .ok(
            Some(&f.admin),
            GRANT,
            json!({"c": c, "p": f.resident_id, "a": " 25.50 "}),
        )
        .await;
    assert_eq!(
        granted["grantPoints"],
        json!({"amount": "25.5", "balance": "25.5"})
    );
    app.ok(
        Some(&f.admin),
        GRANT,
        json!({"c": c, "p": f.resident_id, "a": "13"}),
    )
    .await;
    let head = app.head(c).await;
    let wallet = app.wallet(&f.admin, c, f.resident_id, head).await;
    assert_eq!(
        (wallet["balance"].as_str(), wallet["earned"].as_str()),
        (Some("38.5"), Some("38.5")),
        "{wallet}"
    );
    let trial = app.trial_balance(&f, head).await;
    let accounts: Vec<(&str, &str)> = trial["accounts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["account"].as_str().unwrap(),
                a["balance"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        accounts,
        [
            ("minted", "-19246"),
            ("issuing", "19207.5"),
            ("redeemed", "0"),
            ("expired", "0"),
            ("reversed", "0")
        ]
    );
    assert_eq!(
        (trial["wallets"].as_str(), trial["total"].as_str()),
        (Some("38.5"), Some("0"))
    );
    app.stop().await;
}
