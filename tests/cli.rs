//! The binary's other commands: the demo as the README shows it, rebuilding
//! a projection while the server serves, tokens, and the schema.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use serde_json::{json, Value};

use crate::helpers::{data_dir, TestDb};

pub fn civic_ledger() -> Command {
    Command::new(env!("CARGO_BIN_EXE_civic-ledger"))
}

async fn post(url: &str, token: &str, query: &str, variables: Value) -> Value {
    reqwest::Client::new()
        .post(url)
        .bearer_auth(token)
        .json(&json!({"query": query, "variables": variables}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

#[tokio::test]
async fn the_demo_as_the_readme_shows_it_and_a_rebuild_while_serving() {
    let db = TestDb::new().await;
    let (_dir, data) = data_dir();
    let mut child = civic_ledger()
        .args([
            "--data-dir",
            data.to_str().unwrap(),
            "serve",
            "--demo",
            "--listen",
            "127.0.0.1:0",
        ])
        .env("DATABASE_URL", db.url())
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut printed = Vec::new();
    for line in BufReader::new(child.stdout.take().unwrap()).lines() {
        let line = line.unwrap();
        let done = line.contains("listening on");
        printed.push(line);
        if done {
            break;
        }
    }
    let value = |label: &str| -> String {
        let line = printed.iter().find(|l| l.contains(label)).expect(label);
        line.split_whitespace().nth(2).unwrap().to_string()
    };
    let resident = value("resident token:");
    let url = format!(
        "{}/graphql",
        printed.last().unwrap().rsplit(' ').next().unwrap()
    );
    let community = "00000000-0000-4000-8000-00c0ffee0001";

    let reported = post(
        &url,
        &resident,
        "mutation($c: UUID!) { submitReport(communityId: $c, report: {siteCode: \"CLH-03\", category: \"FLOATING-GARBAGE\", text: \"河面有垃圾\"}) { reportId position } }",
        json!({"c": community}),
    )
    .await;
    let position = reported["data"]["submitReport"]["position"]
        .as_i64()
        .expect("reported");
    let ledger_query =
        "query($c: UUID!, $p: Int) { gridLedgers(communityId: $c, atLeast: $p) { name open } }";
    let ledger = post(
        &url,
        &resident,
        ledger_query,
        json!({"c": community, "p": position}),
    )
    .await;
    let open: i64 = ledger["data"]["gridLedgers"]
        .as_array()
        .expect("ledgers")
        .iter()
        .map(|grid| grid["open"].as_i64().unwrap())
        .sum();
    assert_eq!(
        open, 2,
        "one report, counted in its level 2 grid and its level 1 grid: {ledger}"
    );
    assert_eq!(position, 68, "the README's position");
    let clerk = value("clerk token:");
    let gifts = post(
        &url,
        &clerk,
        "query($c: UUID!, $p: Int) { gifts(communityId: $c, atLeast: $p) { name price stock } }",
        json!({"c": community, "p": position}),
    )
    .await;
    assert_eq!(
        gifts["data"]["gifts"].as_array().map(Vec::len),
        Some(3),
        "the demo's counter has gifts: {gifts}"
    );

    let rebuilt = civic_ledger()
        .args(["project", "rebuild", "reports"])
        .env("DATABASE_URL", db.url())
        .output()
        .unwrap();
    assert!(rebuilt.status.success(), "{rebuilt:?}");
    assert_eq!(
        String::from_utf8_lossy(&rebuilt.stdout),
        "reports: generation 2 is live\n"
    );
    let after = post(
        &url,
        &resident,
        ledger_query,
        json!({"c": community, "p": position}),
    )
    .await;
    assert_eq!(after, ledger, "the rebuilt read model answers the same");
    let unknown = civic_ledger()
        .args(["project", "rebuild", "nonsense"])
        .env("DATABASE_URL", db.url())
        .output()
        .unwrap();
    assert!(!unknown.status.success());
    assert!(String::from_utf8_lossy(&unknown.stderr)
        .contains("there are: reports, suggestions, patrols"));
    let status = civic_ledger()
        .args(["project", "status"])
        .env("DATABASE_URL", db.url())
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&status.stdout)
        .contains("reports: generation Some(2), lag 0 events"));

    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    assert!(child.wait().unwrap().success());
}

#[test]
fn token_issue_signs_with_the_servers_key() {
    let (_dir, data) = data_dir();
    let community = uuid::Uuid::new_v4().to_string();
    let subject = uuid::Uuid::new_v4().to_string();
    let issued = civic_ledger()
        .args([
            "--data-dir",
            data.to_str().unwrap(),
            "token",
            "issue",
            "--role",
            "grid_worker",
        ])
        .args([
            "--subject",
            &subject,
            "--community",
            &community,
            "--ttl-hours",
            "2",
        ])
        .output()
        .unwrap();
    assert!(issued.status.success(), "{issued:?}");
    let token = String::from_utf8(issued.stdout).unwrap();
    let key = std::fs::read(data.join("secrets/token.key")).unwrap();
    let claims = civic_ledger::auth::Tokens::new(&key)
        .verify(token.trim())
        .unwrap();
    assert_eq!(claims.sub.to_string(), subject);
    assert_eq!(claims.community.to_string(), community);
    assert_eq!(claims.role, domain::values::Role::GridWorker);
    assert!(claims.exp - claims.iat == 7200);

    let refused = civic_ledger()
        .args([
            "--data-dir",
            data.to_str().unwrap(),
            "token",
            "issue",
            "--role",
            "mayor",
        ])
        .args(["--subject", &subject, "--community", &community])
        .output()
        .unwrap();
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("unknown role `mayor`"));
}

#[test]
fn schema_graphql_is_what_the_code_exports() {
    let exported = civic_ledger().arg("schema").output().unwrap();
    assert!(exported.status.success());
    let committed =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../schema.graphql")).unwrap();
    assert!(
        String::from_utf8(exported.stdout).unwrap() == committed,
        "schema.graphql drifted: run `civic-ledger schema > schema.graphql`"
    );
}

/// A careless operator's configuration stops the server before it starts,
/// naming the key, from the file and from the environment alike.
#[test]
fn serve_refuses_a_bad_configuration_naming_the_key() {
    let (_dir, data) = data_dir();
    let file = data.join("civic-ledger.toml");
    std::fs::create_dir_all(&data).unwrap();
    type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], &'a str);
    let cases: [Case; 3] = [
        (
            "[seals]\nevery_event = 10\n",
            &[],
            "unknown key seals.every_event",
        ),
        (
            "[database]\npool_size_max = 0\n",
            &[],
            "database.pool_size_max = 0",
        ),
        (
            "",
            &[("CIVIC_LEDGER_SEALS_EVERY_MINUTES", "later")],
            "seals.every_minutes must be a whole number",
        ),
    ];
    for (text, environment, expected) in cases {
        std::fs::write(&file, text).unwrap();
        let refused = civic_ledger()
            .args(["--data-dir", data.to_str().unwrap(), "serve", "--config"])
            .arg(&file)
            .envs(environment.iter().copied())
            .output()
            .unwrap();
        assert!(!refused.status.success(), "{expected}: {refused:?}");
        let stderr = String::from_utf8_lossy(&refused.stderr);
        assert!(stderr.contains(expected), "{expected:?} not in {stderr}");
    }
}
